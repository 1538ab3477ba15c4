//! Real ASGI frameworks on ferricorn's ASGI worker (`--features python`):
//! a FastAPI/Starlette app (tests/python/apps/asgi_fastapi.py) and Django's
//! async views (tests/python/djangoapp, `djangoproject.asgi`), from PyPI,
//! driven with raw HTTP bytes.
//!
//! Asserts, route by route: routing and JSON (typed path parameters, 422 from
//! FastAPI's validation, 404), a multipart form upload arriving intact
//! (python-multipart), a streaming response (chunked, whole, in order, the
//! connection kept), `BackgroundTasks` run after the response (a file the
//! test waits for), a sync view on FastAPI's thread pool, a view that raises
//! (500, traceback in the log, the worker serves on), lifespan (startup state
//! in every request's scope, shutdown run on TERM by each worker), the
//! worker selected by `-k asgi`, by gunicorn's uvicorn spellings and by
//! `--interface auto`, context variables kept per request; Django's async
//! views on the worker's event loop, a request body, sync views under ASGI,
//! and the ORM through `sync_to_async` against a real PostgreSQL; and FastAPI
//! behind a real nginx with the sample config (conf/nginx/ferricorn-unix.conf).
//!
//! The app's WebSocket endpoint (`/ws`, Starlette's `WebSocket`) with the raw
//! client of tests/support/ws.rs: subprotocol, text, binary, a fragmented
//! message, the app's close code and reason.
//!
//! The venv comes from tests/python/setup-venv.sh (fastapi, starlette,
//! python-multipart, Django, psycopg pinned in tests/python/requirements.txt).
//! Run: `cargo test --features python --test asgi_frameworks`.
#![cfg(feature = "python")]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use support::postgres::Postgres;
use support::ws;
use support::*;

/// ferricorn serving `spec` from `dir` (relative to tests/python/) with
/// `extra` arguments, on a free TCP port; `env` added to its environment.
fn serve(dir: &str, spec: &str, extra: &[&str], env: &[(&str, String)]) -> Server {
    let mut b = Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python").join(dir).display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg(spec)
        .env("VIRTUAL_ENV", &venv().display().to_string());
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.start()
}

fn fastapi(extra: &[&str]) -> Server {
    serve("apps", "asgi_fastapi:app", extra, &[])
}

fn django(extra: &[&str], env: &[(&str, String)]) -> Server {
    serve("djangoapp", "djangoproject.asgi:application", extra, env)
}

fn send(c: &mut Client, raw: &[u8]) {
    c.write_all(raw).unwrap();
}

/// `GET path` on the connection `c` (kept alive) and its response.
#[track_caller]
fn get_on(s: &Server, c: &mut Client, path: &str) -> HttpResponse {
    send(
        c,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    );
    c.read_response()
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", s.log_text()))
}

/// `GET path` with `Host: localhost` (one of Django's ALLOWED_HOSTS) on a
/// new connection.
#[track_caller]
fn get_new(s: &Server, path: &str) -> HttpResponse {
    let mut c = s.connect();
    get_on(s, &mut c, path)
}

/// `POST path` with `body` on the connection `c` (kept alive).
#[track_caller]
fn post_on(s: &Server, c: &mut Client, path: &str, ctype: &str, body: &[u8]) -> HttpResponse {
    send(
        c,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ctype}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    send(c, body);
    c.read_response()
        .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", s.log_text()))
}

/// A number from flat JSON, compact (`"k":1`, FastAPI) or spaced (`"k": 1`,
/// Django).
fn json_num(body: &str, key: &str) -> Option<u64> {
    let k = format!("\"{key}\":");
    let i = body.find(&k)? + k.len();
    let rest = body[i..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Deterministic test data with every byte value, CR LF and `--` in it (what
/// a multipart parser must not take for a boundary).
fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 1000 {
            0 => b'\r',
            1 => b'\n',
            2 | 3 => b'-',
            _ => (i * 7 % 251) as u8,
        })
        .collect()
}

#[test]
fn fastapi_routing_and_json_on_one_kept_alive_connection() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let mut c = s.connect();
    let r = get_on(&s, &mut c, "/");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.body_str(), r#"{"hello":"world"}"#);

    let r = get_on(&s, &mut c, "/items/42?q=caf%C3%A9");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), r#"{"item_id":42,"q":"café"}"#);

    // FastAPI's validation: not an int.
    let r = get_on(&s, &mut c, "/items/forty-two");
    assert_eq!(r.status, 422, "{}", r.body_str());
    assert!(r.body_str().contains("int_parsing"), "{}", r.body_str());

    let r = get_on(&s, &mut c, "/no/such/route");
    assert_eq!(r.status, 404);

    let r = post_on(
        &s,
        &mut c,
        "/items",
        "application/json",
        br#"{"name": "widget", "price": 9.5, "tags": ["a", "b", "c"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(
        r.body_str(),
        r#"{"name":"widget","price":9.5,"tags":["a","b","c"],"n_tags":3}"#
    );
    // A body that is not the model: 422, and the connection goes on.
    let r = post_on(&s, &mut c, "/items", "application/json", br#"{"name": 1}"#);
    assert_eq!(r.status, 422, "{}", r.body_str());

    let r = get_on(&s, &mut c, "/text");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body_str(), "plain text from starlette");

    // What Starlette made of the scope.
    let r = get_on(&s, &mut c, "/request?a=1&b=%20");
    assert_eq!(r.status, 200);
    let v = r.body_str();
    for want in [
        r#""method":"GET""#,
        r#""scheme":"http""#,
        r#""path":"/request""#,
        r#""raw_path":"/request""#,
        r#""query":"a=1&b=%20""#,
        r#""root_path":"""#,
        r#""http_version":"1.1""#,
        r#""client":["127.0.0.1","#,
        r#"["host","localhost"]"#,
    ] {
        assert!(v.contains(want), "{want} not in {v}");
    }
}

#[test]
fn fastapi_multipart_form_upload_arrives_intact() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let file = data(300 * 1024);
    let boundary = "ferricornASGI0123456789";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello form\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut c = s.connect();
    let r = post_on(
        &s,
        &mut c,
        "/upload",
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.log_text());
    let v = r.body_str();
    assert!(v.contains(r#""filename":"data.bin""#), "{v}");
    assert!(v.contains(r#""note":"hello form""#), "{v}");
    assert_eq!(json_num(&v, "size"), Some(file.len() as u64), "{v}");
    assert_eq!(json_num(&v, "crc32"), Some(crc32(&file) as u64), "{v}");
    // The connection is still usable after the body was consumed.
    assert_eq!(get_on(&s, &mut c, "/").status, 200);
}

#[test]
fn fastapi_streaming_response_is_chunked_whole_and_in_order() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let mut c = s.connect();
    let r = get_on(&s, &mut c, "/stream?n=300&size=200");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.header("Content-Length"), None);
    let pad = "x".repeat(200);
    let want: String = (0..300).map(|i| format!("piece {i} {pad}\n")).collect();
    assert_eq!(r.body_str(), want);
    // Kept alive after the last chunk; a HEAD drops the body.
    send(
        &mut c,
        b"HEAD /stream?n=3 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(c.read_head_response().unwrap().status, 200);
    let r = get_on(&s, &mut c, "/stream?n=2");
    assert_eq!(r.body_str(), "piece 0 \npiece 1 \n");
}

/// BackgroundTasks run after the response was sent, in the same ASGI call:
/// the response comes, then the task's file appears.
#[test]
fn fastapi_background_task_runs_after_the_response() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let dir = TempDir::new("asgi-bg");
    let marker = dir.join("bg.done");
    let mut c = s.connect();
    let r = post_on(
        &s,
        &mut c,
        &format!("/background?path={}", marker.display()),
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.log_text());
    assert!(r.body_str().contains("queued"), "{}", r.body_str());
    let pid = s.worker_pids()[0];
    assert!(
        wait_until(Duration::from_secs(20), || marker.exists()),
        "the background task never wrote {}; log:\n{}",
        marker.display(),
        s.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        format!("background task ran in {pid}")
    );
    // The worker serves on, on the same connection.
    assert_eq!(get_on(&s, &mut c, "/").status, 200);
}

#[test]
fn fastapi_sync_view_runs_on_the_thread_pool_not_the_loop() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let mut c = s.connect();
    for _ in 0..3 {
        let r = get_on(&s, &mut c, "/sync");
        assert_eq!(r.status, 200, "{}", s.log_text());
        assert_eq!(r.body_str(), r#"{"on_loop_thread":false}"#);
    }
}

#[test]
fn fastapi_view_that_raises_gives_500_is_logged_and_the_worker_serves_on() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let before = s.worker_pids();
    for _ in 0..2 {
        let r = get(&s.addr, "/boom").unwrap();
        assert_eq!(r.status, 500, "{}", s.log_text());
    }
    assert!(
        wait_log(
            &s,
            "RuntimeError: fastapi view failed",
            Duration::from_secs(10)
        ),
        "no traceback in the log:\n{}",
        s.log_text()
    );
    assert!(s.log_text().contains("Traceback"), "{}", s.log_text());
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
    assert_eq!(s.worker_pids(), before, "the worker was replaced");
}

/// A ContextVar set by one request is not seen by the next, on new
/// connections or a kept one: each request runs in a context of its own, as
/// an asyncio Task does. Apps keep request ids there, and Django's ASGI
/// handler its per-request thread for sync_to_async (asgiref's
/// ThreadSensitiveContext): leaked, the next request reused it.
#[test]
fn fastapi_context_variables_do_not_leak_between_requests() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let want = |rid: &str| format!(r#"{{"before":null,"after":"{rid}"}}"#);
    for rid in ["one", "two", "three"] {
        let r = get(&s.addr, &format!("/ctx/{rid}")).unwrap();
        assert_eq!(r.body_str(), want(rid), "{}", s.log_text());
    }
    let mut c = s.connect();
    for rid in ["four", "five"] {
        assert_eq!(
            get_on(&s, &mut c, &format!("/ctx/{rid}")).body_str(),
            want(rid)
        );
    }
}

/// FastAPI's WebSocket endpoint: the subprotocol the app chose from the
/// client's list, text (UTF-8) and binary echo, a message in two fragments,
/// the app's close code and reason, then the TCP close; the worker serves on.
#[test]
fn fastapi_websocket_echo_subprotocol_and_close() {
    let s = fastapi(&["-k", "asgi", "--workers", "1"]);
    let (resp, ws) = ws::try_open(&s.addr, "/ws", "Sec-WebSocket-Protocol: chat, echo\r\n");
    let mut ws = ws.unwrap_or_else(|| panic!("no 101: {resp:?}\n{}", s.log_text()));
    assert_eq!(ws.response.header("Sec-WebSocket-Protocol"), Some("echo"));
    ws.send_text("héllo");
    assert_eq!(ws.expect_message(ws::TEXT), "héllo".as_bytes());
    ws.send(true, ws::BINARY, &[0, 1, 2, 255]);
    assert_eq!(ws.expect_message(ws::BINARY), vec![0, 1, 2, 255]);
    ws.send(false, ws::TEXT, b"frag");
    ws.send(true, ws::CONT, b"mented");
    assert_eq!(ws.expect_message(ws::TEXT), b"fragmented");
    ws.send_text("close-me");
    assert_eq!(ws.expect_close(), (4000, "asked to".to_string()));
    assert!(
        ws.closes_within(Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
}

/// Lifespan with 2 workers, selected by gunicorn's spelling of the uvicorn
/// worker: each worker's startup state reaches its requests, and on TERM each
/// worker runs the shutdown half and the master exits 0.
#[test]
fn lifespan_state_reaches_requests_and_shutdown_runs_on_term() {
    let dir = TempDir::new("asgi-lifespan");
    let shutdown = dir.join("shutdown.txt");
    let mut s = serve(
        "apps",
        "asgi_fastapi:app",
        &["-k", "uvicorn_worker.UvicornWorker", "--workers", "2"],
        &[("ASGI_APP_SHUTDOWN_FILE", shutdown.display().to_string())],
    );
    let workers: HashSet<u32> = s.worker_pids().into_iter().collect();
    assert_eq!(workers.len(), 2);
    // Each answer names its worker and the pid that ran startup: the same.
    for _ in 0..10 {
        let r = get(&s.addr, "/state").unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.log_text());
        let v = r.body_str();
        assert!(
            v.contains(r#""startup_token":"fastapi-startup-ran""#),
            "{v}"
        );
        let pid = json_num(&v, "pid").unwrap() as u32;
        assert_eq!(json_num(&v, "started_pid"), Some(pid as u64), "{v}");
        assert!(workers.contains(&pid), "{pid} not in {workers:?}");
    }
    assert!(!shutdown.exists(), "shutdown ran before TERM");
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        s.log_text()
    );
    let ran: HashSet<u32> = read_lines(&shutdown)
        .iter()
        .map(|l| l.strip_prefix("shutdown ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(ran, workers, "{}", s.log_text());
}

/// No `-k`, no `--interface`: `auto` tells FastAPI's app (an object whose
/// `__call__` is `async def`) for ASGI. Served as WSGI, it could not answer.
#[test]
fn interface_auto_serves_fastapi_as_asgi() {
    let s = fastapi(&["--workers", "1"]);
    let r = get(&s.addr, "/items/7").unwrap();
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.body_str(), r#"{"item_id":7,"q":null}"#);
    let r = get(&s.addr, "/stream?n=3").unwrap();
    assert_eq!(r.body_str(), "piece 0 \npiece 1 \npiece 2 \n");
    // The start-up log says which interface auto chose, and why.
    assert!(
        wait_log(
            &s,
            "with the ASGI interface (--interface auto: an async callable)",
            Duration::from_secs(10)
        ),
        "{}",
        s.log_text()
    );
}

/// Django's ASGI handler with gunicorn's other spelling of the uvicorn
/// worker: async views run on the worker's event loop (in a task, on the
/// main thread), a request body reaches the view, sync views still work
/// (Django runs them through sync_to_async), and a failing view is Django's
/// 500.
#[test]
fn django_async_views_on_the_workers_event_loop() {
    let s = django(
        &["-k", "uvicorn.workers.UvicornWorker", "--workers", "1"],
        &[],
    );
    let mut c = s.connect();
    let r = get_on(&s, &mut c, "/async/hello/");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "Hello, World!"),
        "{}",
        s.log_text()
    );
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));

    let r = get_on(&s, &mut c, "/async/info/?x=1");
    assert_eq!(r.status, 200, "{}", s.log_text());
    let v = r.body_str();
    for want in [
        r#""path": "/async/info/""#,
        r#""query": {"x": "1"}"#,
        r#""host": "localhost""#,
        r#""scheme": "http""#,
        r#""remote_addr": "127.0.0.1""#,
        r#""in_task": true"#,
        r#""on_main_thread": true"#,
    ] {
        assert!(v.contains(want), "{want} not in {v}");
    }

    let body = data(200 * 1024);
    let r = post_on(
        &s,
        &mut c,
        "/async/echo/",
        "application/octet-stream",
        &body,
    );
    assert_eq!(r.status, 200, "{}", s.log_text());
    let v = r.body_str();
    assert_eq!(json_num(&v, "size"), Some(body.len() as u64), "{v}");
    assert_eq!(json_num(&v, "crc32"), Some(crc32(&body) as u64), "{v}");

    // A sync view and a Django template + CSRF token under ASGI.
    let r = get_on(&s, &mut c, "/hello/");
    assert_eq!((r.status, r.body_str().as_str()), (200, "Hello, World!"));
    let r = get_on(&s, &mut c, "/form/");
    assert_eq!(r.status, 200);
    assert!(
        r.body_str().contains("csrfmiddlewaretoken"),
        "{}",
        r.body_str()
    );

    let r = get_new(&s, "/boom/");
    assert_eq!(r.status, 500);
    assert!(
        wait_log(&s, "django view failed", Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    assert_eq!(get_on(&s, &mut c, "/async/hello/").status, 200);
}

/// The ORM from async views: each query runs through sync_to_async on a
/// thread of its own (not the loop's), so four slow queries from one worker
/// run at once, on four database connections.
#[test]
fn django_orm_through_sync_to_async_from_async_views() {
    let pg = Postgres::start();
    let s = django(
        &["-k", "asgi", "--workers", "1"],
        &[("FERRICORN_PG_HOST", pg.socket_dir().display().to_string())],
    );
    let t0 = Instant::now();
    let mut cs: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = s.connect();
            send(
                &mut c,
                b"GET /async/db/?sleep=2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            );
            c
        })
        .collect();
    let mut backends = HashSet::new();
    for c in cs.iter_mut() {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body_str(), s.log_text());
        let v = r.body_str();
        let loop_thread = json_num(&v, "loop_thread").unwrap();
        assert_ne!(json_num(&v, "query_thread"), Some(loop_thread), "{v}");
        backends.insert(json_num(&v, "backend_pid").unwrap());
    }
    // One after the other: 8 s at least; together: 2 s plus noise.
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "the queries did not overlap: {:?}",
        t0.elapsed()
    );
    assert_eq!(backends.len(), 4, "{backends:?}");
    // A quick one on a kept connection after the slow ones.
    let r = get_new(&s, "/async/db/");
    assert_eq!(r.status, 200, "{}", s.log_text());
}

/// FastAPI over a Unix socket behind nginx with the shipped sample config:
/// JSON, the client nginx saw (X-Forwarded-For from a Unix peer is
/// believed), a streamed response re-framed by nginx, a JSON POST.
#[test]
fn fastapi_behind_nginx() {
    let s = Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(["-k", "asgi", "--workers", "2"])
        .arg("asgi_fastapi:app")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .unix()
        .start();
    let Addr::Unix(sock) = &s.addr else {
        unreachable!()
    };
    let nginx = Nginx::start_edited(
        "ferricorn-unix.conf",
        &[("SOCKET", sock.display().to_string())],
        |t| t.replace("{{SERVER_NAME}}", "_"),
    );
    let fail = || format!("{}\n--- ferricorn:\n{}", nginx.logs(), s.log_text());

    let r = nginx.get("/json");
    assert_eq!(r.status, 200, "{}", fail());
    assert!(
        r.header("Server").is_some_and(|v| v.starts_with("nginx")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body_str(), r#"{"message":"Hello, World!"}"#);

    let r = nginx.get("/request");
    assert_eq!(r.status, 200, "{}", fail());
    let v = r.body_str();
    assert!(v.contains(r#""client":["127.0.0.1","#), "{v}");
    assert!(v.contains(r#"["x-forwarded-for","127.0.0.1"]"#), "{v}");

    let r = nginx.get("/stream?n=100&size=50");
    assert_eq!(r.status, 200, "{}", fail());
    let pad = "x".repeat(50);
    let want: String = (0..100).map(|i| format!("piece {i} {pad}\n")).collect();
    assert_eq!(r.body_str(), want);

    let body = br#"{"name": "via nginx", "price": 1}"#;
    let r = nginx.request(
        format!(
            "POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            std::str::from_utf8(body).unwrap()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", fail());
    assert_eq!(
        r.body_str(),
        r#"{"name":"via nginx","price":1.0,"tags":[],"n_tags":0}"#
    );
}
