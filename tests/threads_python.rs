//! `--threads` with WSGI apps (`--features python`): views run in parallel
//! on a worker's threads (distinct Python threads), the event loop answers
//! while a thread holds the GIL, an exception gives a 500 and the thread
//! serves on, a generator is pulled on its thread and closed, a view past
//! `--timeout` gets a 504 and its Python stack is logged, and a Django view
//! queries PostgreSQL from several threads, each on its own connection.
//! Quick views run on the worker's own thread, with no hand-over
//! (`handoff`), and one that waits there has the loop taken from it.
#![cfg(feature = "python")]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use support::postgres::Postgres;
use support::*;

fn threads_app(extra: &[&str]) -> Server {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg("threads_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .start()
}

fn send(c: &mut Client, raw: &str) {
    c.write_all(raw.as_bytes()).unwrap();
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Four views in the view at once: each waits at a gate the test opens
/// only once all four have marked (serial views would never get there).
#[test]
fn views_run_in_parallel_on_distinct_python_threads() {
    let s = threads_app(&["--workers", "1", "--threads", "4"]);
    let gate = Gate::new(&s.dir, "views");
    let marks: Vec<Mark> = (0..4)
        .map(|i| Mark::new(&s.dir, &format!("view{i}")))
        .collect();
    let mut cs: Vec<Client> = marks
        .iter()
        .map(|m| {
            let mut c = s.connect();
            c.set_timeout(Some(Duration::from_secs(60)));
            send(
                &mut c,
                &get_req(&format!("/hold?{}&{}", m.0.display(), gate.0.display())),
            );
            c
        })
        .collect();
    for m in &marks {
        m.wait();
    }
    gate.open();
    let idents: HashSet<String> = cs
        .iter_mut()
        .map(|c| {
            let r = c.read_response().unwrap();
            assert_eq!(r.status, 200, "{}", s.log_text());
            r.body_str()
        })
        .collect();
    assert_eq!(idents.len(), 4, "{idents:?}");
}

/// Quick views run on the worker's own thread (no hand-over to an app
/// thread and back). While one waits there, the stand-in drives the loop:
/// other requests go to the app threads and are answered, and a malformed
/// one gets its 400.
#[test]
fn quick_views_run_on_the_worker_thread_and_a_waiting_one_lends_the_loop() {
    let s = threads_app(&["--workers", "1", "--threads", "2"]);
    let mut c = s.connect();
    let mut on = Vec::new();
    for _ in 0..50 {
        send(&mut c, &get_req("/whoami"));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        on.push(r.body_str());
    }
    let own = on.iter().filter(|t| !t.starts_with("app-")).count();
    // A call is measured only when nothing else runs, and one preempted
    // on a busy machine is left on the worker's thread: all 50 run there
    // unless the stand-in took the loop from a call that waited.
    assert!(own >= 45, "{on:?}");
    // The next one waits at a gate: on the worker's thread (its calls are
    // quick), which lends the loop to the stand-in.
    let (inside, gate) = (Mark::new(&s.dir, "held"), Gate::new(&s.dir, "held"));
    send(
        &mut c,
        &get_req(&format!(
            "/hold?{}&{}",
            inside.0.display(),
            gate.0.display()
        )),
    );
    inside.wait();
    let r = get(&s.addr, "/whoami").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().starts_with("app-"), "{}", r.body_str());
    let bad = s.request(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    assert_eq!(bad.status, 400);
    gate.open();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.body_str().starts_with("app-"), "{}", r.body_str());
}

/// While an app thread holds the GIL (blocked in a C call that keeps it),
/// the event loop, which never takes the GIL, still answers what needs no
/// Python: a malformed request gets its 400. The hog holds the GIL until the
/// test writes to a FIFO, and the test writes only after the 400 arrived, so
/// a loop that waited for the GIL would never answer (read timeout: fail).
#[test]
fn the_event_loop_never_waits_for_the_gil() {
    let s = threads_app(&["--workers", "1", "--threads", "2"]);
    let dir = TempDir::new("gil");
    let fifo = dir.join("hog");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let mut hog = s.connect();
    hog.set_timeout(Some(Duration::from_secs(60)));
    send(&mut hog, &get_req(&format!("/gil?{}", fifo.display())));
    // Opening the FIFO for writing returns once the hog has opened it for
    // reading; a thread so that a hog that never comes fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(path));
    });
    let mut go = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the hog never opened the FIFO: {}", s.log_text()))
        .unwrap();
    let mut bad = s.connect();
    bad.set_timeout(Some(Duration::from_secs(10)));
    bad.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let answer = bad.read_response();
    // Release the hog whatever happened, so the server stops cleanly.
    go.write_all(b"x").unwrap();
    let answer = answer.expect("no 400 while an app thread held the GIL");
    assert_eq!(answer.status, 400);
    let r = hog.read_response().unwrap();
    assert_eq!(r.body_str(), "done");
}

#[test]
fn an_exception_gives_500_and_the_thread_serves_on() {
    let s = threads_app(&["--workers", "1", "--threads", "2"]);
    for _ in 0..3 {
        let r = s.request(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 500);
    }
    let r = s.request(b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert!(
        wait_log(
            &s,
            "ValueError: boom from an app thread",
            Duration::from_secs(30)
        ),
        "{}",
        s.log_text()
    );
    assert_eq!(s.worker_pids().len(), 1);
}

/// A generator is pulled on its app thread, arrives whole and in order
/// (chunked), the connection goes on, and its close() runs.
#[test]
fn a_generator_is_pulled_on_its_thread_and_closed() {
    let s = threads_app(&["--workers", "1", "--threads", "2"]);
    let mut c = s.connect();
    send(&mut c, &get_req("/stream?200"));
    let r = c.read_response().unwrap();
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    let want: String = (0..200).map(|i| format!("piece {i}\n")).collect();
    assert_eq!(r.body_str(), want);
    // Both threads at once, and a HEAD whose body is dropped unread.
    send(&mut c, "HEAD /stream?5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_head_response().unwrap().status, 200);
    let closed = wait_until(Duration::from_secs(30), || {
        s.request(b"GET /closed HTTP/1.1\r\nHost: t\r\n\r\n")
            .body_str()
            == "2"
    });
    assert!(closed, "close() not called twice: {}", s.log_text());
}

/// A view past --timeout: 504 with Connection: close, and the log names the
/// request and shows the view's Python stack.
#[test]
fn a_view_past_the_timeout_gets_504_and_its_stack_is_logged() {
    let s = threads_app(&["--workers", "1", "--threads", "2", "--timeout", "2"]);
    let mut c = s.connect();
    send(&mut c, &get_req("/stuck"));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        wait_log(&s, "stuck_view_sleeps_forever", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    let log = s.log_text();
    assert!(
        log.contains("WORKER TIMEOUT (pid:") && log.contains("GET /stuck"),
        "{log}"
    );
    // The other thread still serves.
    assert_eq!(get(&s.addr, "/x").unwrap().status, 200);
}

/// A Django view querying PostgreSQL from four threads of one worker: the
/// queries run in parallel, each thread on its own connection, kept across
/// requests (Django's per-thread connections, CONN_MAX_AGE). Parallel is
/// proven in the database, not by a clock: each query waits until all four
/// are running at once (`?together=4`, a barrier on a sequence), so
/// serial queries would never be answered (the client's read timeout).
#[test]
fn django_uses_the_database_from_several_threads() {
    let pg = Postgres::start();
    let s = Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/djangoapp").display().to_string(),
        ])
        .args(["--workers", "1", "--threads", "4"])
        .arg("djangoproject.wsgi:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .env("FERRICORN_PG_HOST", &pg.socket_dir().display().to_string())
        .start();
    let round = || {
        let mut cs: Vec<Client> = (0..4)
            .map(|_| {
                let mut c = s.connect();
                c.set_timeout(Some(Duration::from_secs(45)));
                send(
                    &mut c,
                    "GET /db/?together=4 HTTP/1.1\r\nHost: localhost\r\n\r\n",
                );
                c
            })
            .collect();
        let answers: Vec<String> = cs
            .iter_mut()
            .map(|c| {
                let r = c.read_response().unwrap();
                assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.log_text());
                r.body_str()
            })
            .collect();
        answers
    };
    let first = round();
    let backends = |a: &[String]| -> HashSet<String> {
        a.iter()
            .map(|b| b.split(',').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(backends(&first).len(), 4, "{first:?}");
    let second = round();
    // The same four connections, reused by their threads.
    assert_eq!(backends(&second), backends(&first), "{second:?}");
    drop(s);
    drop(pg);
}
