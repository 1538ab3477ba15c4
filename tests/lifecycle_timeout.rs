//! The heartbeat: a worker stuck in the app past --timeout is aborted and
//! replaced; a slow upload is not time in the app; a worker that cannot
//! boot stops the master with exit code 3 instead of a fork loop.
mod support;
use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn worker_stuck_in_app_is_aborted_and_replaced() {
    let s = Server::start(&["echo", "--workers", "1", "--timeout", "2"]);
    let before = s.worker_pids();
    assert_eq!(before.len(), 1);
    let mut c = s.connect();
    c.write_all(b"GET /stuck?sleep=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    // The client gets no response: the connection is closed under it, about
    // 2 s in (far from the app's 30 s; a loaded machine stretches it).
    c.set_timeout(Some(Duration::from_secs(20)));
    assert!(c.read_response().is_err());
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(wait_log(&s, "WORKER TIMEOUT", Duration::from_secs(20)));
    let log = s.log_text();
    let line = log.lines().find(|l| l.contains("WORKER TIMEOUT")).unwrap();
    assert!(
        line.contains(&format!("WORKER TIMEOUT (pid:{})", before[0])),
        "{line}"
    );
    assert!(line.contains("GET /stuck"), "{line}");
    // A new worker serves.
    assert!(wait_until(Duration::from_secs(20), || {
        let now = s.worker_pids();
        now.len() == 1 && now[0] != before[0]
    }));
    assert_eq!(get(&s.addr, "/after").unwrap().status, 200);
    // The replacement is started at the timeout; the aborted worker's exit
    // is logged when it is reaped, which may come after the new one serves.
    assert!(
        wait_log(&s, "SIGABRT", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
}

/// 40 KiB at 1 KiB per 100 ms (4 s) with --timeout 1: reading a body is not
/// time in the app, so the request succeeds and is echoed exactly.
#[test]
fn slow_upload_longer_than_timeout_succeeds() {
    let s = Server::start(&["echo", "--workers", "1", "--timeout", "1"]);
    let mut c = s.connect();
    let chunks = 40;
    let body: Vec<u8> = (0..chunks * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    c.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let t0 = Instant::now();
    for chunk in body.chunks(1024) {
        c.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t0.elapsed() >= Duration::from_secs(4));
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(r.status, 200);
    let text = r.body_str();
    // echo returns the body base64-encoded; compare against our own encoding.
    assert!(
        text.contains(&format!("\"body_base64\": \"{}\"", base64(&body))),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(!s.log_text().contains("WORKER TIMEOUT"), "{}", s.log_text());
}

/// A worker that cannot boot (its access log cannot be opened) makes the
/// master exit 3 with a clear message, after a bounded number of forks.
#[test]
fn boot_failure_stops_master_with_exit_3() {
    let mut s = Server::builder()
        .args([
            "hello",
            "--workers",
            "2",
            "--access-logfile",
            "/nonexistent-dir/x/access.log",
        ])
        .no_wait()
        .start();
    let code = s.wait_exit(Duration::from_secs(30));
    let log = s.log_text();
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("cannot open access log"), "{log}");
    assert!(log.contains("Worker failed to boot"), "{log}");
    assert!(
        log.contains("Shutting down: workers cannot run (exit code 3"),
        "{log}"
    );
    let forks = log.matches("Booting worker").count();
    assert!(forks <= 2, "forked {forks} workers:\n{log}");
}
