//! An ASGI app through the worker's life (`--features python`): lifespan
//! startup before accepting and shutdown after a graceful stop has
//! finished the requests in flight, a failed startup stopping the server
//! with exit code 3, `--asgi-lifespan auto|on|off`, TERM with a request in
//! flight, HUP replacing the workers (each running its startup), and
//! hooks, access log and max_requests as for WSGI.
//!
//! Run: `cargo test --features python --test asgi_lifecycle`.
#![cfg(feature = "python")]

mod support;

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

fn asgi(app: &str, extra: &[&str], dir: &TempDir) -> ServerBuilder {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg(app)
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .env("ASGI_TEST_LOG", &dir.join("app.log").display().to_string())
        .env("ASGI_TEST_FIFO", &dir.join("fifo").display().to_string())
}

fn app_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("app.log")).unwrap_or_default()
}

fn get(s: &Server, path: &str) -> HttpResponse {
    s.request(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn term_waits_for_the_request_in_flight_then_runs_the_lifespan_shutdown() {
    let dir = TempDir::new("asgi-term");
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut s = asgi("asgi_apps:application", &["--workers", "1"], &dir).start();
    assert_eq!(
        app_log(&dir).matches("startup").count(),
        1,
        "{}",
        app_log(&dir)
    );
    let mut c = s.connect();
    c.write_all(b"GET /fifo HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || app_log(&dir)
        .contains("fifo waiting")));
    s.signal(Signal::SIGTERM);
    // The worker drains: the request is still in the app (waiting on the
    // FIFO), so no shutdown yet.
    assert!(wait_log(
        &s,
        "Handling signal: term",
        Duration::from_secs(10)
    ));
    assert!(!app_log(&dir).contains("shutdown"), "{}", app_log(&dir));
    // The app finishes: its client gets the answer, then the shutdown runs.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("fifo"))
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.body_str(), "fifo said go\n");
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.log_text()
    );
    let log = app_log(&dir);
    assert!(log.ends_with("shutdown\n"), "{log}");
}

#[test]
fn a_graceful_stop_lets_work_after_the_response_finish_before_shutdown() {
    let dir = TempDir::new("asgi-bg");
    let mut s = asgi("asgi_apps:application", &["--workers", "1"], &dir).start();
    assert_eq!(get(&s, "/background").body_str(), "queued\n");
    s.signal(Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.log_text()
    );
    let log = app_log(&dir);
    assert!(log.ends_with("background done\nshutdown\n"), "{log}");
}

#[test]
fn hup_replaces_the_workers_and_each_runs_its_startup() {
    let dir = TempDir::new("asgi-hup");
    let s = asgi("asgi_apps:application", &["--workers", "2"], &dir).start();
    let first = s.worker_pids();
    assert!(wait_until(Duration::from_secs(10), || app_log(&dir)
        .matches("startup")
        .count()
        == 2));
    s.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = s.worker_pids();
            now.len() == 2 && now.iter().all(|p| !first.contains(p))
        }),
        "{}",
        s.log_text()
    );
    // Old workers ran their shutdown, new ones their startup.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let log = app_log(&dir);
            log.matches("startup").count() == 4 && log.matches("shutdown").count() == 2
        }),
        "{}",
        app_log(&dir)
    );
    assert_eq!(get(&s, "/state").status, 200);
}

#[test]
fn a_failed_lifespan_startup_stops_the_server_with_exit_code_3() {
    let dir = TempDir::new("asgi-lsfail");
    let mut s = asgi("asgi_apps:lifespan_fails", &["--workers", "2"], &dir)
        .no_wait()
        .start();
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(3),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text()
            .contains("ASGI lifespan startup failed: database is down"),
        "{}",
        s.log_text()
    );
}

#[test]
fn lifespan_auto_serves_an_app_that_raises_on_lifespan_on_refuses_it() {
    let dir = TempDir::new("asgi-lsauto");
    let s = asgi("asgi_apps:lifespan_raises", &[], &dir).start();
    assert_eq!(get(&s, "/").body_str(), "served without lifespan\n");
    assert!(
        s.log_text().contains("appears unsupported"),
        "{}",
        s.log_text()
    );
    drop(s);
    let mut s = asgi(
        "asgi_apps:lifespan_raises",
        &["--asgi-lifespan", "on"],
        &dir,
    )
    .no_wait()
    .start();
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(3),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text().contains("RuntimeError: no lifespan support"),
        "{}",
        s.log_text()
    );
}

#[test]
fn lifespan_off_sends_no_lifespan_events() {
    let dir = TempDir::new("asgi-lsoff");
    let s = asgi("asgi_apps:application", &["--lifespan", "off"], &dir).start();
    assert_eq!(get(&s, "/hello").status, 200);
    let r = get(&s, "/scope");
    assert!(r.body_str().contains(r#""state": {}"#), "{}", r.body_str());
    assert!(!app_log(&dir).contains("startup"));
}

/// The rest of the worker's life is the WSGI one: a gunicorn.conf.py's
/// `pre_request`/`post_request` hooks run for ASGI requests, the access log
/// has a line per request, and `max_requests` replaces the worker (its
/// replacement runs the lifespan startup) without a failed request.
#[test]
fn hooks_access_log_and_max_requests_work_as_for_wsgi() {
    let dir = TempDir::new("asgi-as-wsgi");
    let hooks = dir.join("hooks.log");
    let access = dir.join("access.log");
    let conf = dir.join("gunicorn.conf.py");
    std::fs::write(
        &conf,
        format!(
            "worker_class = 'uvicorn.workers.UvicornWorker'\n\
             workers = 1\n\
             max_requests = 4\n\
             accesslog = {access:?}\n\
             def pre_request(worker, req):\n    open({hooks:?}, 'a').write('pre %s\\n' % req.path)\n\
             def post_request(worker, req, environ, resp):\n    open({hooks:?}, 'a').write('post %s\\n' % req.path)\n",
            access = access.display().to_string(),
            hooks = hooks.display().to_string(),
        ),
    )
    .unwrap();
    let s = asgi(
        "asgi_apps:application",
        &["-c", &conf.display().to_string()],
        &dir,
    )
    .start();
    let first = s.worker_pids();
    for i in 0..10 {
        let r = get(&s, &format!("/hello?n={i}"));
        assert_eq!(r.status, 200, "request {i}: {}", s.log_text());
    }
    // (The test harness's readiness probe, /__ready, has its lines too.)
    let lines = || -> Vec<String> {
        read_lines(&hooks)
            .into_iter()
            .filter(|l| l.ends_with(" /hello"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || lines().len() == 20),
        "{:?}",
        lines()
    );
    assert_eq!(lines().iter().filter(|l| *l == "pre /hello").count(), 10);
    assert_eq!(lines().iter().filter(|l| *l == "post /hello").count(), 10);
    assert!(
        wait_until(Duration::from_secs(30), || read_lines(&access)
            .iter()
            .filter(|l| l.contains("\"GET /hello?n="))
            .count()
            == 10),
        "{:?}",
        read_lines(&access)
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = s.worker_pids();
            !now.is_empty() && now.iter().all(|p| !first.contains(p))
        }),
        "max_requests did not replace the worker: {}",
        s.log_text()
    );
    assert!(
        app_log(&dir).matches("startup").count() >= 2,
        "{}",
        app_log(&dir)
    );
}
