//! Deadlines follow the monotonic clock: a step of the wall clock (NTP at
//! boot, a resumed VM, `date -s`) neither kills a busy worker, nor closes an
//! idle keep-alive connection, nor suspends the header timeout.
//!
//! The server runs under libfaketime with only its wall clock faked
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), read again on every call from a file
//! the test rewrites (`FAKETIME_NO_CACHE=1`, `FAKETIME_TIMESTAMP_FILE`).
mod support;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// libfaketime's preload library, from the Debian package's file list
/// (`libfaketime`, which the `faketime` package pulls in). Missing is a
/// failure, not a skip: CI installs the package (.ci/run).
fn libfaketime() -> PathBuf {
    let out = std::process::Command::new("dpkg")
        .args(["-L", "libfaketime", "faketime"])
        .output()
        .expect("dpkg -L libfaketime (install the Debian package `faketime`)");
    let list = String::from_utf8_lossy(&out.stdout);
    let lib = list
        .lines()
        .find(|l| l.ends_with("/libfaketime.so.1"))
        .map(PathBuf::from)
        .filter(|p| p.exists());
    lib.unwrap_or_else(|| {
        panic!("libfaketime.so.1 not found: install the Debian package `faketime` (dpkg -L said: {list})")
    })
}

/// A server whose wall clock is shifted by whatever `clock` holds.
fn start_faked(clock: &Path, args: &[&str]) -> Server {
    std::fs::write(clock, "+0\n").unwrap();
    Server::builder()
        .args(args.iter().copied())
        .env("LD_PRELOAD", libfaketime().to_str().unwrap())
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap())
        .start()
}

/// Step the server's wall clock (libfaketime's relative format, "+2h").
/// Written aside and renamed, so libfaketime never reads a half-written file.
fn step(clock: &Path, offset: &str) {
    let tmp = clock.with_extension("new");
    std::fs::write(&tmp, format!("{offset}\n")).unwrap();
    std::fs::rename(&tmp, clock).unwrap();
}

fn in_nanosleep(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
}

#[test]
fn step_forward_does_not_kill_a_busy_worker() {
    let tmp = TempDir::new("clock-a");
    let clock = tmp.join("faketime");
    // --timeout well beyond the 3 s call, also when a loaded machine
    // stretches it; the step (two hours) is far beyond both.
    let s = start_faked(&clock, &["echo", "--workers", "1", "--timeout", "15"]);
    let worker = s.worker_pids();
    assert_eq!(worker.len(), 1, "{}", s.log_text());
    let mut c = s.connect();
    c.set_timeout(Some(Duration::from_secs(30)));
    c.write_all(b"GET /slow?sleep=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Step only once the worker is inside the app's sleep: its busy stamp
    // was taken before the step.
    assert!(
        wait_until(Duration::from_secs(30), || in_nanosleep(worker[0])),
        "the worker never entered the app; log:\n{}",
        s.log_text()
    );
    step(&clock, "+2h");
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("no response after a +2h step: {e}; log:\n{}", s.log_text()));
    assert_eq!(r.status, 200);
    let log = s.log_text();
    assert!(!log.contains("WORKER TIMEOUT"), "{log}");
    assert_eq!(s.worker_pids(), worker, "{log}");
}

#[test]
fn step_forward_keeps_an_idle_keepalive_connection() {
    let tmp = TempDir::new("clock-b");
    let clock = tmp.join("faketime");
    let s = start_faked(&clock, &["echo", "--workers", "1", "--keep-alive", "30"]);
    let mut idle = s.connect();
    idle.set_timeout(Some(Duration::from_secs(10)));
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(idle.read_response().unwrap().status, 200);
    step(&clock, "+2h");
    // A request on another connection makes the (only) worker turn its loop
    // at the new wall time, and its timers run in that same turn.
    assert_eq!(get(&s.addr, "/other").unwrap().status, 200);
    idle.write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = idle.read_response().unwrap_or_else(|e| {
        panic!(
            "idle keep-alive connection closed by a +2h step: {e}; log:\n{}",
            s.log_text()
        )
    });
    assert_eq!(r.status, 200);
}

#[test]
fn step_backward_keeps_the_header_timeout() {
    let tmp = TempDir::new("clock-c");
    let clock = tmp.join("faketime");
    let s = start_faked(&clock, &["echo", "--workers", "1", "--header-timeout", "2"]);
    let mut slow = s.connect();
    // A clock that followed the step would answer in two hours.
    slow.set_timeout(Some(Duration::from_secs(60)));
    slow.write_all(b"GET /never-finished HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let t0 = Instant::now();
    // With one worker, a later connection's request is read in a later loop
    // turn than the partial head: once it is answered, the head's clock has
    // started before the step.
    assert_eq!(get(&s.addr, "/other").unwrap().status, 200);
    step(&clock, "-2h");
    let r = slow.read_response().unwrap_or_else(|e| {
        panic!(
            "no 408 after a -2h step: {e} ({:?}); log:\n{}",
            t0.elapsed(),
            s.log_text()
        )
    });
    assert_eq!(r.status, 408);
    // --header-timeout 2, checked by a once-a-second timer; the bound is the
    // read timeout's, far from the step's two hours, on a loaded machine.
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}

/// A graceful stop keeps its deadline across steps: a step forward does not
/// cut an in-flight request short, a step backward does not stretch the
/// stop past --graceful-timeout.
#[test]
fn graceful_stop_deadline_ignores_steps_both_ways() {
    let tmp = TempDir::new("clock-d");
    let clock = tmp.join("faketime");
    let mut s = start_faked(
        &clock,
        // Far beyond the 3 s call, also on a loaded machine.
        &["echo", "--workers", "1", "--graceful-timeout", "20"],
    );
    let worker = s.worker_pids()[0];
    let mut c = s.connect();
    c.set_timeout(Some(Duration::from_secs(15)));
    c.write_all(b"GET /slow?sleep=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || in_nanosleep(worker)),
        "{}",
        s.log_text()
    );
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_log(&s, "Handling signal: term", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    step(&clock, "+2h");
    let r = c.read_response().unwrap_or_else(|e| {
        panic!(
            "in-flight request cut short by a +2h step during a graceful stop: {e}\n{}",
            s.log_text()
        )
    });
    assert_eq!(r.status, 200);
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0));

    // Backward: a request that outlives --graceful-timeout is cut at the
    // deadline, not two hours later.
    let clock = tmp.join("faketime2");
    let mut s = start_faked(
        &clock,
        &["echo", "--workers", "1", "--graceful-timeout", "2"],
    );
    let worker = s.worker_pids()[0];
    let mut c = s.connect();
    c.write_all(b"GET /stuck?sleep=60 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || in_nanosleep(worker)),
        "{}",
        s.log_text()
    );
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_log(&s, "Handling signal: term", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    step(&clock, "-2h");
    // The app call lasts 60 s and the step two hours: 40 s tells a stop at
    // the 2 s deadline from either, on a loaded machine.
    let code = s.wait_exit(Duration::from_secs(40));
    assert!(
        code.is_some(),
        "master still running 40 s after TERM with --graceful-timeout 2\n{}",
        s.log_text()
    );
}
