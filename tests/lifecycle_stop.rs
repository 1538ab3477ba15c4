//! Stopping: TERM drains in-flight and queued connections, INT/QUIT stop
//! at once, the pid file comes and goes, a dead master takes its workers
//! along, a killed worker is replaced, `-D` detaches.
mod support;
use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

fn req(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// TERM while two requests sleep in the app and 20 more connections wait in
/// the listen backlog behind them: every one is answered, the master exits 0.
#[test]
fn term_serves_in_flight_and_backlog_then_exits_zero() {
    term_serves_in_flight_and_backlog(&[], 1);
}

/// The same with the app on threads (`--threads 4`), all four busy, so the
/// 20 connections wait in the backlog: what is in flight on the threads is
/// answered too.
#[test]
fn term_serves_in_flight_and_backlog_then_exits_zero_threads() {
    term_serves_in_flight_and_backlog(&["--threads", "4"], 4);
}

fn term_serves_in_flight_and_backlog(extra: &[&str], sleepers: usize) {
    let pid = TempDir::new("pid");
    let pidfile = pid.join("app.pid");
    let mut args = vec!["echo", "--workers", "1", "--pid", pidfile.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut s = Server::start(&args);
    assert_eq!(read_pidfile(&pidfile), Some(s.pid()));
    // An idle keep-alive connection: it must not hold the stop up.
    let mut idle = s.connect();
    idle.write_all(&req("/idle")).unwrap();
    assert_eq!(idle.read_response().unwrap().status, 200);

    let marks: Vec<Mark> = (0..sleepers)
        .map(|i| Mark::new(&s.dir, &format!("sleeper{i}")))
        .collect();
    let mut sleepers: Vec<Client> = marks
        .iter()
        .map(|inside| {
            let mut c = s.connect();
            c.write_all(&req(&format!("/?sleep=1&{}", inside.param())))
                .unwrap();
            c
        })
        .collect();
    for inside in &marks {
        inside.wait(); // the worker (each thread) is in the app now
    }
    let mut queued: Vec<Client> = (0..20)
        .map(|i| {
            let mut c = s.connect();
            c.write_all(&req(&format!("/queued/{i}"))).unwrap();
            c
        })
        .collect();
    let t0 = Instant::now();
    s.signal(Signal::SIGTERM);

    for sleeper in &mut sleepers {
        let r = sleeper.read_response().expect("in-flight request answered");
        assert_eq!(r.status, 200);
    }
    for (i, c) in queued.iter_mut().enumerate() {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("queued {i} lost: {e}\n{}", s.log_text()));
        assert_eq!(r.status, 200);
        assert!(
            r.body_str().contains(&format!("/queued/{i}")),
            "{}",
            r.body_str()
        );
        assert_eq!(r.header("Connection"), Some("close"));
    }
    // The idle connection is closed by the server, not left to time out.
    assert!(idle.read_to_end_lossy().is_empty());
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.log_text()
    );
    // Well before the 30 s graceful timeout (about 1 s of app call plus the
    // queue; a loaded machine stretches it).
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(!pidfile.exists(), "pid file removed at exit");
    let log = s.log_text();
    assert!(log.contains("Handling signal: term"), "{log}");
}

/// A request stuck longer than --graceful-timeout is cut off: exit 0 anyway,
/// in about graceful-timeout seconds.
#[test]
fn term_kills_what_outlives_graceful_timeout() {
    term_kills_what_outlives(&[]);
}

#[test]
fn term_kills_what_outlives_graceful_timeout_threads() {
    term_kills_what_outlives(&["--threads", "4"]);
}

fn term_kills_what_outlives(extra: &[&str]) {
    let mut args = vec!["echo", "--workers", "1", "--graceful-timeout", "1"];
    args.extend_from_slice(extra);
    let mut s = Server::start(&args);
    let mut c = s.connect();
    let inside = Mark::new(&s.dir, "stuck");
    c.write_all(&req(&format!("/?sleep=60&{}", inside.param())))
        .unwrap();
    inside.wait();
    let t0 = Instant::now();
    s.signal(Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        s.log_text()
    );
    // About 1 s; far from the app's 60 s (a loaded machine stretches it).
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(c.read_response().is_err());
    assert!(
        s.log_text().contains("graceful timeout"),
        "{}",
        s.log_text()
    );
}

/// INT and QUIT stop at once, even with a request in the app.
#[test]
fn int_and_quit_stop_quickly() {
    int_and_quit_stop(&[]);
}

#[test]
fn int_and_quit_stop_quickly_threads() {
    int_and_quit_stop(&["--threads", "4"]);
}

fn int_and_quit_stop(extra: &[&str]) {
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        // A graceful stop would wait for the app (60 s) up to the graceful
        // timeout (30 s); a quick one takes about 1 s (the bound on a stuck
        // worker), which a loaded machine can stretch to a few (3.8 s seen).
        let mut args = vec!["echo", "--workers", "2", "--graceful-timeout", "30"];
        args.extend_from_slice(extra);
        let mut s = Server::start(&args);
        let workers = wait_workers(s.pid(), 2);
        let mut c = s.connect();
        let inside = Mark::new(&s.dir, "stuck");
        c.write_all(&req(&format!("/?sleep=60&{}", inside.param())))
            .unwrap();
        inside.wait();
        let t0 = Instant::now();
        s.signal(sig);
        assert_eq!(
            s.wait_exit(Duration::from_secs(30)),
            Some(0),
            "{sig}: {}",
            s.log_text()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{sig}: {:?}",
            t0.elapsed()
        );
        for w in workers {
            assert!(
                wait_gone(w, Duration::from_secs(20)),
                "{sig}: worker {w} survived"
            );
        }
    }
}

/// The master dies by SIGKILL: its workers notice (pipe EOF, and
/// PR_SET_PDEATHSIG while one is inside the app) and exit, the busy one
/// too, without waiting for its app call to return.
#[test]
fn workers_exit_when_master_is_killed() {
    workers_exit_when_master_is_killed_with(&[]);
}

#[test]
fn workers_exit_when_master_is_killed_threads() {
    workers_exit_when_master_is_killed_with(&["--threads", "2"]);
}

fn workers_exit_when_master_is_killed_with(extra: &[&str]) {
    let mut args = vec!["echo", "--workers", "2"];
    args.extend_from_slice(extra);
    let mut s = Server::start(&args);
    let workers = wait_workers(s.pid(), 2);
    // One worker is busy in the app for 5 minutes, and sees neither signal
    // nor pipe EOF until the call returns. The death signal used to be TERM,
    // a graceful stop that waited for the call: the worker outlived its
    // master by the whole call (the bound below is far from it).
    let mut c = s.connect();
    let inside = Mark::new(&s.dir, "busy");
    c.write_all(&req(&format!("/?sleep=300&{}", inside.param())))
        .unwrap();
    inside.wait();
    s.signal(Signal::SIGKILL);
    let _ = s.wait_exit(Duration::from_secs(20));
    for w in &workers {
        assert!(
            // Below the 30 s graceful timeout too: a --threads worker given
            // TERM waited that long for its app thread.
            wait_gone(*w, Duration::from_secs(20)),
            "worker {w} outlived its master"
        );
    }
}

/// kill -9 of a worker: reaped, logged in words, replaced.
#[test]
fn killed_worker_is_replaced() {
    let s = Server::start(&["hello", "--workers", "2"]);
    let before = wait_workers(s.pid(), 2);
    send_signal(before[0], Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = s.worker_pids();
            now.len() == 2 && !now.contains(&before[0])
        }),
        "workers: {:?}\n{}",
        s.worker_pids(),
        s.log_text()
    );
    assert!(get(&s.addr, "/").unwrap().status == 200);
    let log = s.log_text();
    assert!(
        log.contains(&format!(
            "Worker (pid:{}) was sent SIGKILL! Perhaps out of memory?",
            before[0]
        )),
        "{log}"
    );
    assert!(
        s.worker_pids().contains(&before[1]),
        "the other worker is untouched"
    );
}

/// -D: the launcher exits 0 once the daemon is bound, the pid file names
/// the daemon (not the launcher), the daemon serves with stdio on /dev/null
/// and removes the pid file when stopped.
#[test]
fn daemon_mode_detaches_and_writes_its_own_pid() {
    let dir = TempDir::new("daemon");
    let pidfile = dir.join("d.pid");
    // The daemon binds a port found free: should another process take it
    // first, the launcher says so, and it runs again on a fresh port.
    let (addr, out) = (0..10)
        .map(|_| {
            let addr = Addr::Tcp(([127, 0, 0, 1], free_port()).into());
            let out = std::process::Command::new(BIN)
                .args(["hello", "-D", "--workers", "1", "--bind", &addr.bind_arg()])
                .arg("--pid")
                .arg(&pidfile)
                .env_remove("NOTIFY_SOCKET")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run ferricorn -D");
            (addr, out)
        })
        .find(|(_, out)| !String::from_utf8_lossy(&out.stderr).contains("Address already in use"))
        .expect("every port tried was taken");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = read_pidfile(&pidfile).expect("pid file written before the launcher exits");
    // Kill the daemon's whole process group at the end, whatever happens.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0 as i32),
                Signal::SIGKILL,
            );
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), Signal::SIGKILL);
        }
    }
    let _reap = Reap(daemon);
    assert!(alive(daemon));
    // Detached: its own session, and stdio on /dev/null.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(daemon as i32))).unwrap();
    assert_ne!(sid, nix::unistd::getsid(None).unwrap());
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{daemon}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
    }
    assert!(wait_until(Duration::from_secs(30), || get(&addr, "/").is_ok()));
    assert_eq!(get(&addr, "/").unwrap().body, b"Hello, World!");
    assert!(
        cmdline(daemon).starts_with("ferricorn: master"),
        "{}",
        cmdline(daemon)
    );
    send_signal(daemon, Signal::SIGTERM);
    assert!(wait_gone(daemon, Duration::from_secs(30)));
    assert!(!pidfile.exists());

    // A daemon that cannot bind: the launcher reports it and exits 1.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "hello",
            "-D",
            "--bind",
            &blocker.local_addr().unwrap().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}
