//! Binary upgrade (USR2 -> WINCH -> TERM old) and its rollback
//! (USR2 -> WINCH -> HUP old -> TERM new), under keep-alive load.
mod support;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

fn oldbin(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.oldbin", p.display()))
}

/// USR2 on `s`, then wait until the new master wrote the pid file and its
/// `n` workers serve. Returns the new master's pid.
fn upgrade(s: &Server, pidfile: &Path, n: usize) -> u32 {
    let old = s.pid();
    s.signal(Signal::SIGUSR2);
    let mut new = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            new = read_pidfile(pidfile).unwrap_or(0);
            new != 0 && new != old && workers_of(new).len() == n
        }),
        "no new master: pid file {:?}, oldbin {:?}\n{}",
        read_pidfile(pidfile),
        read_pidfile(&oldbin(pidfile)),
        s.log_text()
    );
    assert_eq!(read_pidfile(&oldbin(pidfile)), Some(old));
    assert!(
        cmdline(new).starts_with("ferricorn: master"),
        "{}",
        cmdline(new)
    );
    // The new master forked with every signal blocked; neither it nor its
    // workers may keep them blocked (a worker must die on SIGABRT).
    for p in std::iter::once(new).chain(workers_of(new)) {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let blk = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
        assert!(blk.ends_with("0000000000000000"), "pid {p}: {blk}");
    }
    // Both generations serve side by side now.
    assert_eq!(workers_of(old).len(), n);
    new
}

#[test]
fn usr2_winch_term_upgrades_without_failures() {
    usr2_winch_term_upgrades(&[]);
}

/// The same with the app on threads (`--threads 4`).
#[test]
fn usr2_winch_term_upgrades_without_failures_threads() {
    usr2_winch_term_upgrades(&["--threads", "4"]);
}

fn usr2_winch_term_upgrades(extra: &[&str]) {
    let d = TempDir::new("upg");
    let pidfile = d.join("app.pid");
    let mut args = vec![
        "hello",
        "--workers",
        "2",
        "--pid",
        pidfile.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut s = Server::start(&args);
    let old = s.pid();
    let old_workers = wait_workers(old, 2);
    let load = Load::start(&s.addr, 4, "/");
    load.wait_more(50);

    let new = upgrade(&s, &pidfile, 2);
    load.wait_more(50);
    send_signal(old, Signal::SIGWINCH);
    assert!(
        wait_until(Duration::from_secs(30), || workers_of(old).is_empty()),
        "old workers still there: {:?}\n{}",
        workers_of(old),
        s.log_text()
    );
    for w in &old_workers {
        assert!(wait_gone(*w, Duration::from_secs(30)));
    }
    load.wait_more(50); // the new master's workers alone
    send_signal(old, Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.log_text()
    );
    load.wait_more(50);
    let st = load.stop();

    assert!(st.clean(), "{st:?}\n{}", s.log_text());
    assert!(st.ok > 100, "{st:?}");
    assert_eq!(read_pidfile(&pidfile), Some(new));
    assert!(!oldbin(&pidfile).exists(), ".oldbin left behind");
    assert!(alive(new));
    assert_eq!(workers_of(new).len(), 2);
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
    // The new master is a full master: it stops cleanly and removes its pid file.
    send_signal(new, Signal::SIGTERM);
    assert!(wait_gone(new, Duration::from_secs(30)));
    assert!(!pidfile.exists());
}

#[test]
fn upgrade_rollback_brings_old_workers_back() {
    let d = TempDir::new("rollback");
    let pidfile = d.join("app.pid");
    let s = Server::start(&[
        "hello",
        "--workers",
        "2",
        "--pid",
        pidfile.to_str().unwrap(),
    ]);
    let old = s.pid();
    let first = wait_workers(old, 2);
    let load = Load::start(&s.addr, 4, "/");
    load.wait_more(50);

    let new = upgrade(&s, &pidfile, 2);
    send_signal(old, Signal::SIGWINCH);
    assert!(wait_until(Duration::from_secs(30), || workers_of(old).is_empty()));
    // The new binary is bad: roll back.
    send_signal(old, Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || workers_of(old).len() == 2),
        "old master did not bring workers back\n{}",
        s.log_text()
    );
    let back = workers_of(old);
    assert!(
        back.iter().all(|p| !first.contains(p)),
        "fresh workers: {back:?}"
    );
    send_signal(new, Signal::SIGTERM);
    assert!(
        wait_gone(new, Duration::from_secs(30)),
        "new master did not stop"
    );
    assert!(
        wait_until(Duration::from_secs(30), || read_pidfile(&pidfile)
            == Some(old)),
        "pid file: {:?}\n{}",
        read_pidfile(&pidfile),
        s.log_text()
    );
    assert!(!oldbin(&pidfile).exists());
    load.wait_more(50);
    let st = load.stop();
    assert!(st.clean(), "{st:?}\n{}", s.log_text());
    assert!(st.ok > 100, "{st:?}");
    assert_eq!(workers_of(old), back);
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
}

/// WINCH without a new master is refused (stopping every worker would be
/// an outage); the server keeps serving.
#[test]
fn winch_without_upgrade_is_ignored() {
    let s = Server::start(&["hello", "--workers", "2"]);
    let before = wait_workers(s.pid(), 2);
    s.signal(Signal::SIGWINCH);
    assert!(
        wait_log(&s, "WINCH ignored", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    // A barrier: once the master has handled a later signal, it is done
    // with the WINCH (which would have stopped the workers at once).
    s.signal(Signal::SIGUSR1);
    assert!(wait_log(
        &s,
        "Handling signal: usr1",
        Duration::from_secs(30)
    ));
    assert_eq!(s.worker_pids(), before);
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
}
