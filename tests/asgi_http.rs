//! ASGI 3 apps over HTTP (`--features python`), one test per conformance
//! point: selection (`-k asgi`, the uvicorn worker classes, `--interface`,
//! `--asgi-loop`), the scope, the request body, `http.disconnect`,
//! streaming with backpressure, trailers refused, pathsend, HEAD, errors
//! before and after `http.response.start`, lifespan state in the scope,
//! `--timeout` cancelling a task, and a blocked loop replacing the worker.
//! The apps are raw ASGI callables in tests/python/apps/asgi_apps.py.
//!
//! Run: `cargo test --features python --test asgi_http`.
#![cfg(feature = "python")]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;

fn asgi(app: &str, extra: &[&str], env: &[(&str, String)]) -> ServerBuilder {
    let mut b = Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg(app)
        .env("VIRTUAL_ENV", &venv().display().to_string());
    for (k, v) in env {
        b = b.env(k, v);
    }
    b
}

fn apps(extra: &[&str]) -> Server {
    asgi("asgi_apps:application", extra, &[]).start()
}

/// A server whose app writes its progress to a log file the test reads.
fn apps_logging(extra: &[&str], dir: &TempDir) -> Server {
    asgi(
        "asgi_apps:application",
        extra,
        &[("ASGI_TEST_LOG", dir.join("app.log").display().to_string())],
    )
    .start()
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
fn an_async_callable_is_served_as_asgi_and_the_log_says_so() {
    let s = apps(&["--workers", "2"]);
    let r = get(&s, "/hello");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.body_str(), "Hello, ASGI!\n");
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert!(
        wait_log(
            &s,
            "Serving asgi_apps:application with the ASGI interface (--interface auto: an async callable)",
            Duration::from_secs(10)
        ),
        "{}",
        s.log_text()
    );
    // One line for the start-up, not one per worker.
    assert_eq!(s.log_text().matches("with the ASGI interface").count(), 1);
}

#[test]
fn an_asgi3_class_instance_is_detected() {
    let s = asgi("asgi_apps:class_app", &[], &[]).start();
    assert_eq!(get(&s, "/").body_str(), "class app\n");
}

#[test]
fn a_wsgi_callable_stays_wsgi_under_interface_auto() {
    let s = asgi("asgi_apps:wsgi_app", &[], &[]).start();
    assert_eq!(get(&s, "/").body_str(), "wsgi\n");
    assert!(
        s.log_text()
            .contains("with the WSGI interface (--interface auto: not an async callable)"),
        "{}",
        s.log_text()
    );
}

#[test]
fn the_gunicorn_worker_class_spellings_select_asgi() {
    for k in [
        "asgi",
        "uvicorn.workers.UvicornWorker",
        "uvicorn_worker.UvicornWorker",
    ] {
        let s = apps(&["-k", k]);
        assert_eq!(get(&s, "/hello").status, 200, "-k {k}: {}", s.log_text());
        assert!(
            s.log_text().contains("with the ASGI interface (-k asgi)"),
            "{}",
            s.log_text()
        );
    }
}

#[test]
fn a_worker_class_in_a_gunicorn_config_file_selects_asgi() {
    let dir = TempDir::new("asgi-conf");
    let conf = dir.join("gunicorn.conf.py");
    std::fs::write(&conf, "worker_class = 'uvicorn.workers.UvicornWorker'\n").unwrap();
    let s = apps(&["-c", &conf.display().to_string()]);
    assert_eq!(get(&s, "/hello").status, 200);
    assert!(
        s.log_text().contains("with the ASGI interface (-k asgi)"),
        "{}",
        s.log_text()
    );
}

#[test]
fn interface_wsgi_forces_wsgi() {
    // An async callable called as WSGI returns a coroutine, not an
    // iterable of bytes: a 500, proving the interface was not guessed.
    let s = apps(&["--interface", "wsgi"]);
    assert_eq!(get(&s, "/hello").status, 500);
    assert!(
        s.log_text()
            .contains("with the WSGI interface (--interface wsgi)")
    );
}

#[test]
fn the_scope_is_complete() {
    let s = apps(&[]);
    let r = s.request(
        b"POST /scope/caf%C3%A9%20x?a=1&b=%20 HTTP/1.1\r\nHost: example.com:8080\r\nX-Mixed-Case: V\xe9\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 200, "{}", s.log_text());
    let body = r.body_str();
    for want in [
        r#""type": "http""#,
        r#""asgi": {"version": "3.0", "spec_version": "2.4"}"#,
        r#""http_version": "1.1""#,
        r#""method": "POST""#,
        r#""scheme": "http""#,
        // Percent-decoded, UTF-8.
        "\"path\": \"/scope/caf\\u00e9 x\"",
        r#""raw_path": "/scope/caf%C3%A9%20x""#,
        r#""query_string": "a=1&b=%20""#,
        r#""root_path": """#,
        // Names lower-cased, values as received (bytes).
        r#"["host", "example.com:8080"]"#,
        "[\"x-mixed-case\", \"V\\u00e9\"]",
        r#""client": ["127.0.0.1", "#,
        r#""server": ["127.0.0.1", "#,
        r#""extensions": {"http.response.pathsend": {}}"#,
        r#""state": {"started": "yes""#,
        r#""body": "abc""#,
    ] {
        assert!(body.contains(want), "missing {want} in {body}");
    }
    // HTTP/1.0
    let r = s.request(b"GET /scope HTTP/1.0\r\n\r\n");
    assert!(
        r.body_str().contains(r#""http_version": "1.0""#),
        "{}",
        r.body_str()
    );
}

#[test]
fn root_path_is_in_the_scope_and_requests_outside_it_get_404() {
    let s = apps(&["--root-path", "/app"]);
    let r = get(&s, "/app/scope");
    assert!(
        r.body_str().contains(r#""root_path": "/app""#),
        "{}",
        r.body_str()
    );
    assert!(
        r.body_str().contains(r#""path": "/app/scope""#),
        "{}",
        r.body_str()
    );
    assert_eq!(get(&s, "/elsewhere").status, 404);
}

#[test]
fn the_body_arrives_in_one_http_request_message() {
    let s = apps(&[]);
    let r = s.request(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    );
    assert_eq!(r.body_str(), "abcdefg");
    let big = vec![b'z'; 3 << 20];
    let mut c = s.connect();
    c.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.write_all(&big).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.body.len(), big.len());
}

#[test]
fn keep_alive_serves_eager_and_task_requests_in_order() {
    let s = apps(&[]);
    let mut c = s.connect();
    c.write_all(
        b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /sleep HTTP/1.1\r\nHost: t\r\n\r\nGET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let bodies: Vec<String> = (0..4)
        .map(|_| c.read_response().unwrap().body_str())
        .collect();
    assert_eq!(
        bodies,
        [
            "Hello, ASGI!\n",
            "slept\n",
            "piece 0\npiece 1\npiece 2\n",
            "Hello, ASGI!\n"
        ]
    );
}

#[test]
fn the_request_is_the_current_task_from_its_first_step() {
    let s = apps(&[]);
    assert_eq!(get(&s, "/current-task").body_str(), "True True\n");
}

#[test]
fn receive_after_the_response_says_disconnect() {
    let dir = TempDir::new("asgi-disc");
    let s = apps_logging(&[], &dir);
    assert_eq!(get(&s, "/disconnect-after").body_str(), "done\n");
    assert!(
        wait_until(Duration::from_secs(10), || app_log(&dir)
            .contains("after response: http.disconnect")),
        "{}",
        app_log(&dir)
    );
}

#[test]
fn a_client_that_goes_away_while_the_app_waits_gives_http_disconnect() {
    let dir = TempDir::new("asgi-gone");
    let s = apps_logging(&[], &dir);
    let mut c = s.connect();
    c.write_all(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || app_log(&dir)
        .contains("waiting for disconnect")));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || app_log(&dir)
            .contains("while running: http.disconnect")),
        "{}\n{}",
        app_log(&dir),
        s.log_text()
    );
    // The worker serves on.
    assert_eq!(get(&s, "/hello").status, 200);
}

#[test]
fn a_streamed_response_is_chunked() {
    let s = apps(&[]);
    let raw = s.exchange(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
    assert!(text.ends_with("\r\n0\r\n\r\n"), "{text}");
    let r = get(&s, "/stream");
    assert_eq!(r.body_str(), "piece 0\npiece 1\npiece 2\n");
    // HTTP/1.0: no chunked coding, the body ends at close.
    let raw = s.exchange(b"GET /stream HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.ends_with("\r\n\r\npiece 0\npiece 1\npiece 2\n"),
        "{text}"
    );
}

#[test]
fn a_client_that_does_not_read_holds_the_app_not_the_workers_memory() {
    // The app sends 64 MiB in 64 KiB pieces to a client that reads
    // nothing. Its send() must wait once a few pieces are unsent: when the
    // client goes away, the app has sent far less than 16 MiB and gets
    // OSError (spec 2.4). Without backpressure every send() returns at
    // once and the 64 MiB pile up in the worker.
    let dir = TempDir::new("asgi-bp");
    let s = apps_logging(&[], &dir);
    let mut c = s.connect();
    c.write_all(b"GET /big-stream?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || app_log(&dir)
        .contains("sent 1 MiB")));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || app_log(&dir)
            .contains("send raised OSError")),
        "{}\n{}",
        app_log(&dir),
        s.log_text()
    );
    let log = app_log(&dir);
    let pieces: usize = log
        .split("send raised OSError after ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(pieces < 16 * 16, "sent {pieces} pieces of 64 KiB: {log}");
    // No traceback for a client that went away.
    assert!(!s.log_text().contains("Traceback"), "{}", s.log_text());
    assert_eq!(get(&s, "/hello").status, 200);
}

#[test]
fn trailers_are_refused_the_error_logged_and_the_connection_closed() {
    let s = apps(&[]);
    let raw = s.exchange(b"GET /trailers HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    assert!(
        wait_log(
            &s,
            "does not support http.response.trailers",
            Duration::from_secs(10)
        ),
        "{}",
        s.log_text()
    );
    assert_eq!(get(&s, "/hello").status, 200);
}

#[test]
fn pathsend_sends_the_file() {
    let dir = TempDir::new("asgi-pathsend");
    let file = dir.join("data.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let s = asgi(
        "asgi_apps:application",
        &[],
        &[("ASGI_TEST_FILE", file.display().to_string())],
    )
    .start();
    let r = get(&s, "/pathsend");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.header("Content-Length"), Some("300000"));
    assert!(r.body == data);
}

#[test]
fn head_gets_no_body() {
    let s = apps(&[]);
    let mut c = s.connect();
    c.write_all(b"HEAD /head HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("18"));
    // The next response follows at once: no body bytes in between.
    assert_eq!(c.read_response().unwrap().body_str(), "Hello, ASGI!\n");
    // A HEAD answered with the length and no body keeps the length.
    c.write_all(
        b"HEAD /head-len HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let r = c.read_head_response().unwrap();
    assert_eq!(r.header("Content-Length"), Some("1234"));
    assert_eq!(c.read_response().unwrap().body_str(), "Hello, ASGI!\n");
}

#[test]
fn an_exception_before_the_response_gives_500_with_the_traceback_logged() {
    let s = apps(&[]);
    let r = get(&s, "/raise-before");
    assert_eq!(r.status, 500);
    assert!(
        wait_log(&s, "ValueError: boom before start", Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text()
            .contains("Exception in ASGI application (GET /raise-before)")
    );
    assert!(s.log_text().contains("Traceback"));
}

#[test]
fn an_exception_after_the_response_start_closes_the_connection() {
    let s = apps(&[]);
    let raw = s.exchange(b"GET /raise-after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    assert!(wait_log(
        &s,
        "ValueError: boom after start",
        Duration::from_secs(10)
    ));
    // Mid-stream: what was sent stays, the body never ends properly.
    let raw = s.exchange(b"GET /raise-mid-stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("7\r\npartial\r\n"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(wait_log(
        &s,
        "ValueError: boom mid-stream",
        Duration::from_secs(10)
    ));
}

#[test]
fn an_app_that_returns_without_responding_gives_500() {
    let s = apps(&[]);
    assert_eq!(get(&s, "/no-response").status, 500);
    assert!(wait_log(
        &s,
        "ASGI app returned without completing its response (GET /no-response)",
        Duration::from_secs(10)
    ));
}

#[test]
fn lifespan_state_is_shared_into_every_scope() {
    let s = apps(&["--workers", "1"]);
    let a = get(&s, "/state").body_str();
    let b = get(&s, "/state").body_str();
    // A shallow copy per request: the dict is fresh, its values shared.
    assert_eq!(a, r#"{"started": "yes", "counter": 1}"#);
    assert_eq!(b, r#"{"started": "yes", "counter": 2}"#);
}

#[test]
fn a_request_past_timeout_is_cancelled_with_504_and_the_worker_serves_on() {
    let dir = TempDir::new("asgi-timeout");
    let s = apps_logging(&["--workers", "1", "--timeout", "2"], &dir);
    let pid = get(&s, "/pid").body_str();
    let r = get(&s, "/slow?s=60");
    assert_eq!(r.status, 504, "{}", s.log_text());
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(wait_until(Duration::from_secs(10), || app_log(&dir)
        .contains("slow cancelled")));
    assert!(
        s.log_text().contains("REQUEST TIMEOUT") && s.log_text().contains("GET /slow?s=60"),
        "{}",
        s.log_text()
    );
    // Same worker: a cancelled task does not cost the worker.
    assert_eq!(get(&s, "/pid").body_str(), pid);
}

#[test]
fn a_streamed_response_stalled_past_timeout_is_cancelled_and_its_connection_closed() {
    // The head and a first piece are out, then the app waits (for 3600 s
    // unless cancelled). Past --timeout its task gets CancelledError and the
    // connection is closed: no terminating chunk, so the client sees a cut
    // body. Before, only requests with nothing sent were cancelled: this one
    // held its task and the connection for the hour.
    let dir = TempDir::new("asgi-stall");
    let s = apps_logging(&["--workers", "1", "--timeout", "2"], &dir);
    let pid = get(&s, "/pid").body_str();
    let mut c = s.connect();
    c.set_timeout(Some(Duration::from_secs(60)));
    c.write_all(b"GET /stall-stream?s=3600 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}\n{}", s.log_text());
    assert!(text.contains("first\n"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(
        wait_until(Duration::from_secs(10), || app_log(&dir)
            .contains("stall cancelled")),
        "{}\n{}",
        app_log(&dir),
        s.log_text()
    );
    let log = s.log_text();
    assert!(
        log.contains("REQUEST TIMEOUT")
            && log.contains("GET /stall-stream?s=3600 (its streamed response stalled)"),
        "{log}"
    );
    // The worker serves on.
    assert_eq!(get(&s, "/pid").body_str(), pid);
}

#[test]
fn a_loop_blocked_past_timeout_gets_the_worker_replaced() {
    let s = apps(&["--workers", "1", "--timeout", "2"]);
    let pid = get(&s, "/pid").body_str();
    let mut c = s.connect();
    c.write_all(b"GET /block?s=120 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let replaced = wait_until(Duration::from_secs(30), || {
        get_fresh(&s).is_some_and(|p| p != pid)
    });
    assert!(replaced, "{}", s.log_text());
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
}

fn get_fresh(s: &Server) -> Option<String> {
    let mut c = s.connect();
    c.set_timeout(Some(Duration::from_secs(1)));
    c.write_all(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    c.read_response().ok().map(|r| r.body_str())
}

#[test]
fn asgi_loop_asyncio_and_a_missing_uvloop() {
    let s = apps(&["--asgi-loop", "asyncio"]);
    assert!(get(&s, "/loop").body_str().starts_with("asyncio"));
    drop(s);
    let has_uvloop = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", "import uvloop"])
        .status()
        .unwrap()
        .success();
    if has_uvloop {
        let s = apps(&["--loop", "uvloop"]);
        assert_eq!(get(&s, "/loop").body_str(), "uvloop");
        return;
    }
    let mut s = asgi("asgi_apps:application", &["--asgi-loop", "uvloop"], &[])
        .no_wait()
        .start();
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(3),
        "{}",
        s.log_text()
    );
    let log = s.log_text();
    assert_eq!(
        log.matches("--asgi-loop uvloop: uvloop cannot be imported")
            .count(),
        1,
        "{log}"
    );
}
