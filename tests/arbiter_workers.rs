//! The arbiter through the real binary, for what its unit tests
//! (src/arbiter/table/tests.rs) cannot show: --max-requests recycling never
//! leaves fewer accepting workers than --workers, and every worker's exit is
//! logged exactly once.
mod support;
use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// The pid in a log line's "(pid:N)", or in "with pid: N".
fn pid_in(line: &str) -> Option<u32> {
    let rest = line
        .split_once("(pid:")
        .map(|(_, r)| r)
        .or_else(|| line.split_once("with pid: ").map(|(_, r)| r))?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The accepting workers after each line of a debug log, from the master's
/// "is accepting" (it saw the worker's ready row) to the first sign the
/// worker stopped: its own "stops accepting", or its exit.
fn accepting_counts(log: &str) -> Vec<(usize, String)> {
    let mut accepting = BTreeSet::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(pid) = pid_in(line) else { continue };
        if line.contains("is accepting") {
            accepting.insert(pid);
        } else if line.contains("stops accepting")
            || line.contains("exited")
            || line.contains("was sent")
        {
            accepting.remove(&pid);
        } else {
            continue;
        }
        out.push((accepting.len(), line.to_string()));
    }
    out
}

#[test]
fn max_requests_recycles_without_losing_an_accepting_worker() {
    let workers = 2;
    let s = Server::start(&[
        "echo",
        "--workers",
        "2",
        "--max-requests",
        "40",
        "--log-level",
        "debug",
    ]);
    let load = Load::start_for(&s.addr, 4, "/", Duration::from_secs(150));
    // Four replacements booted and four workers gone, however they left.
    let recycled = |log: &str| {
        let exits = log
            .lines()
            .filter(|l| l.contains("exited") || l.contains("Worker exiting"))
            .count();
        log.matches("Booting worker with pid").count() >= workers + 4 && exits >= 4
    };
    let enough = wait_until(Duration::from_secs(120), || recycled(&s.log_text()));
    let st = load.stop();
    let log = s.log_text();
    assert!(enough, "fewer than 4 workers recycled:\n{log}");
    assert!(st.clean(), "{st:?}\n{log}");
    assert!(st.ok >= 160, "{st:?}");
    let counts = accepting_counts(&log);
    let first_full = counts
        .iter()
        .position(|(n, _)| *n >= workers)
        .unwrap_or_else(|| panic!("never {workers} accepting workers:\n{log}"));
    for (n, line) in &counts[first_full..] {
        assert!(
            *n >= workers,
            "only {n} accepting worker(s) after: {line}\n{log}"
        );
    }
    assert!(!log.contains("did not retire this worker"), "{log}");
    // Every worker that left was retired by the master at its request.
    for line in log.lines().filter(|l| l.contains("exited")) {
        assert!(
            line.contains("exited, status 0: retired at its request"),
            "{line}\n{log}"
        );
    }
}

#[test]
fn each_worker_exit_is_logged_once_by_the_master() {
    let mut s = Server::start(&["echo", "--workers", "2", "--log-level", "debug"]);
    let first = wait_workers(s.pid(), 2);
    // Retired by a reload.
    s.signal(Signal::SIGHUP);
    let replaced = |old: &[u32]| {
        wait_until(Duration::from_secs(30), || {
            let now = s.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        })
    };
    assert!(replaced(&first), "{}", s.log_text());
    // Killed from outside.
    let second = s.worker_pids();
    send_signal(second[0], Signal::SIGKILL);
    assert!(replaced(&second[..1]), "{}", s.log_text());
    // Stopped with the master.
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(20)), Some(0));
    let log = s.log_text();
    let booted: Vec<u32> = log
        .lines()
        .filter(|l| l.contains("Booting worker with pid"))
        .filter_map(pid_in)
        .collect();
    assert_eq!(booted.len(), 5, "{log}");
    for pid in booted {
        let exits: Vec<&str> = log
            .lines()
            .filter(|l| {
                (l.contains(&format!("(pid:{pid})")) || l.contains(&format!("(pid: {pid})")))
                    && (l.to_lowercase().contains("exit") || l.contains("was sent"))
            })
            .collect();
        assert_eq!(exits.len(), 1, "worker {pid}: {exits:#?}\n{log}");
        let line = exits[0];
        // The master's line (its pid in the log prefix) with cause and status.
        assert!(line.contains(&format!("[{}]", s.pid())), "{line}");
        assert!(
            line.contains("status 0: retired: replaced by a new generation")
                || line.contains("status 0: server stopping")
                || line.contains("was sent SIGKILL! Perhaps out of memory?"),
            "{line}"
        );
    }
}

/// A worker past --max-requests keeps serving while its master cannot act
/// (here: stopped), and drains on its own once the bound (30 s) is up.
#[test]
fn max_requests_worker_serves_on_until_the_master_acts_or_the_bound() {
    let s = Server::start(&["echo", "--workers", "1", "--max-requests", "5"]);
    let worker = wait_workers(s.pid(), 1)[0];
    s.signal(Signal::SIGSTOP);
    for i in 0..10 {
        let r = get(&s.addr, &format!("/{i}"))
            .unwrap_or_else(|e| panic!("request {i}: {e}\n{}", s.log_text()));
        assert_eq!(r.status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(60), || {
            s
            .log_text()
            .contains("stops accepting: max requests reached and the master did not retire this worker in 30 s")
        }),
        "{}",
        s.log_text()
    );
    assert!(
        wait_gone(worker, Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    s.signal(Signal::SIGCONT);
    assert_eq!(get(&s.addr, "/after").unwrap().status, 200);
    let log = s.log_text();
    assert!(
        log.contains(&format!(
            "Worker (pid:{worker}) exited, status 0: left on its own"
        )),
        "{log}"
    );
}
