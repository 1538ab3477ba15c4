//! ASGI WebSockets (`--features python`): the `websocket` scope and its
//! messages (connect, accept with subprotocol and headers, receive/send of
//! text and bytes, close with code and reason, disconnect with the client's
//! code, the `websocket.http.response` denial), errors before and after the
//! accept, bad frames (the app hears the server's close code, the worker
//! serves on), and a graceful stop. The apps are raw ASGI callables in
//! tests/python/apps/asgi_ws_app.py; the client is tests/support/ws.rs.
//!
//! Run: `cargo test --features python --test asgi_websocket`.
#![cfg(feature = "python")]

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::ws::*;
use support::*;

fn server(extra: &[&str]) -> Server {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
            "--workers".into(),
            "1".into(),
        ])
        .args(extra.iter().copied())
        .arg("asgi_ws_app:app")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .start()
}

/// Wait for the app to write `path` (what it observed), and read it.
#[track_caller]
fn observed(path: &std::path::Path) -> String {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "the app did not write {}",
        path.display()
    );
    std::fs::read_to_string(path).unwrap()
}

#[track_caller]
fn text(ws: &mut WsClient) -> String {
    String::from_utf8(ws.expect_message(TEXT)).unwrap()
}

#[test]
fn accept_with_subprotocol_and_headers_then_echo_text_and_bytes() {
    let s = server(&[]);
    let (resp, ws) = try_open(
        &s.addr,
        "/echo?x=1",
        "Sec-WebSocket-Protocol: chat, echo\r\n",
    );
    let mut ws = ws.unwrap_or_else(|| panic!("no 101: {resp:?}\n{}", s.log_text()));
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("echo"));
    assert_eq!(resp.header("x-asgi-ws"), Some("yes"));
    ws.send_text("héllo");
    assert_eq!(text(&mut ws), "héllo");
    let data: Vec<u8> = (0..70_000).map(|i| (i % 251) as u8).collect();
    ws.send(true, BINARY, &data);
    assert!(ws.expect_message(BINARY) == data);
    // Fragmented on the wire: one websocket.receive for the app.
    ws.send(false, TEXT, b"frag");
    ws.send(true, CONT, b"mented");
    assert_eq!(text(&mut ws), "fragmented");
    ws.send_text("scope");
    let scope = text(&mut ws);
    for want in [
        "\"type\": \"websocket\"",
        "\"scheme\": \"ws\"",
        "\"path\": \"/echo\"",
        "\"http_version\": \"1.1\"",
        "\"subprotocols\": [\"chat\", \"echo\"]",
        "\"query_string\": \"x=1\"",
        "\"has_method\": false",
        "\"extensions\": [\"websocket.http.response\"]",
        // The app runs as an asyncio task (anyio and asyncio.timeout need it).
        "\"in_task\": true",
    ] {
        assert!(scope.contains(want), "{want} not in {scope}");
    }
}

#[test]
fn messages_sent_from_an_asyncio_task_arrive_in_order() {
    let s = server(&[]);
    let mut ws = WsClient::open(&s.addr, "/echo");
    // `later` awaits asyncio.sleep: the app runs on as a task and its
    // sends reach the connection through the loop's waker.
    ws.send_text("later one");
    ws.send_text("burst 50");
    assert_eq!(text(&mut ws), "one");
    for i in 0..50 {
        assert_eq!(text(&mut ws), i.to_string());
    }
    // An app that accepts only after awaiting.
    let out = TempDir::new("asgi-ws");
    let file = out.join("code");
    let mut ws = WsClient::open(&s.addr, &format!("/late-accept?out={}", file.display()));
    assert_eq!(text(&mut ws), "accepted late");
    ws.send(true, CLOSE, &close_payload(4000, ""));
    assert_eq!(ws.expect_close().0, 4000);
    assert_eq!(observed(&file), "4000");
}

#[test]
fn the_client_close_code_reaches_the_app_as_websocket_disconnect() {
    let s = server(&[]);
    let out = TempDir::new("asgi-ws");
    let file = out.join("code");
    let mut ws = WsClient::open(&s.addr, &format!("/echo?out={}", file.display()));
    ws.send(true, CLOSE, &close_payload(4321, "bye"));
    assert_eq!(ws.expect_close().0, 4321);
    assert!(ws.closes_within(Duration::from_secs(10)));
    assert_eq!(observed(&file), "4321");
    // A client that just goes away: 1006.
    let file = out.join("gone");
    let ws = WsClient::open(&s.addr, &format!("/echo?out={}", file.display()));
    drop(ws);
    assert_eq!(observed(&file), "1006");
}

#[test]
fn websocket_close_sends_the_apps_code_and_reason() {
    let s = server(&[]);
    let mut ws = WsClient::open(&s.addr, "/echo");
    ws.send_text("close 4002 see you");
    assert_eq!(ws.expect_close(), (4002, "see you".into()));
    ws.send(true, CLOSE, &close_payload(4002, ""));
    assert!(ws.closes_within(Duration::from_secs(10)));
}

#[test]
fn the_denial_extension_and_refusals_before_the_accept() {
    let s = server(&[]);
    let (resp, ws) = try_open(&s.addr, "/deny", "");
    assert!(ws.is_none());
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.body_str(), "no entry");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    // websocket.close before websocket.accept: 403.
    let (resp, _) = try_open(&s.addr, "/close-before-accept", "");
    assert_eq!(resp.status, 403, "{resp:?}");
    // An exception before the accept: 500, logged with the traceback.
    let (resp, _) = try_open(&s.addr, "/raise-before-accept", "");
    assert_eq!(resp.status, 500, "{resp:?}");
    assert!(
        wait_log(&s, "refusing by raising", Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    // Plain HTTP still goes to the app as http.
    let resp = s.request(b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.body_str(), "plain http");
}

#[test]
fn an_app_that_ends_after_the_accept_closes_1000_or_1011_after_an_exception() {
    let s = server(&[]);
    let mut ws = WsClient::open(&s.addr, "/return-after-accept");
    assert_eq!(ws.expect_close().0, 1000);
    let mut ws = WsClient::open(&s.addr, "/raise-after-accept");
    assert_eq!(ws.expect_close().0, 1011);
    assert!(wait_log(
        &s,
        "failing after the accept",
        Duration::from_secs(10)
    ));
}

#[test]
fn bad_frames_close_with_their_code_the_app_hears_it_and_the_worker_serves_on() {
    let s = server(&["--ws-max-size", "1k"]);
    let workers = s.worker_pids();
    let out = TempDir::new("asgi-ws");
    for (i, (bad, code)) in [
        (frame(true, TEXT, b"naked", false), 1002),
        (frame(true, TEXT, b"\xff", true), 1007),
        (frame(true, BINARY, &[0; 4096], true), 1009),
    ]
    .into_iter()
    .enumerate()
    {
        let file = out.join(&format!("code{i}"));
        let mut ws = WsClient::open(&s.addr, &format!("/echo?out={}", file.display()));
        ws.send_raw(&bad);
        assert_eq!(ws.expect_close().0, code);
        assert!(ws.closes_within(Duration::from_secs(10)));
        assert_eq!(observed(&file), code.to_string());
        let mut next = WsClient::open(&s.addr, "/echo");
        next.send_text("next");
        assert_eq!(text(&mut next), "next");
    }
    assert_eq!(s.worker_pids(), workers, "the worker changed");
}

#[test]
fn graceful_stop_closes_asgi_websockets_with_1001_and_the_app_hears_it() {
    let mut s = server(&["--graceful-timeout", "3", "--ws-ping-interval", "0"]);
    let out = TempDir::new("asgi-ws");
    let file = out.join("code");
    let mut ws = WsClient::open(&s.addr, &format!("/echo?out={}", file.display()));
    s.signal(Signal::SIGTERM);
    ws.send_text("still open");
    assert_eq!(text(&mut ws), "still open");
    assert_eq!(ws.expect_close().0, 1001);
    ws.send(true, CLOSE, &close_payload(1001, ""));
    assert!(ws.closes_within(Duration::from_secs(10)));
    assert_eq!(observed(&file), "1001");
    assert_eq!(
        s.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        s.log_text()
    );
}

#[test]
fn an_app_sending_to_a_client_that_does_not_read_waits_in_send() {
    let s = server(&[]);
    let out = TempDir::new("asgi-ws");
    let file = out.join("sent");
    let mut ws = WsClient::open(&s.addr, &format!("/flood?out={}", file.display()));
    let sent = || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(10), || sent() > 0));
    // 25 MiB would be queued in the worker within this time without
    // backpressure (the sends never wait): with it the app stops at what
    // the socket buffers and the 256 KiB allowance hold.
    assert!(
        !wait_until(Duration::from_secs(2), || sent() >= 400),
        "all 400 sends completed while the client read nothing"
    );
    for _ in 0..400 {
        assert_eq!(ws.expect_message(BINARY).len(), 65536);
    }
    assert_eq!(text(&mut ws), "done");
    assert_eq!(sent(), 400);
}

#[test]
fn a_client_sending_to_an_app_that_does_not_receive_is_held_back() {
    let s = server(&[]);
    let out = TempDir::new("asgi-ws");
    let go = out.join("go");
    let mut ws = WsClient::open(&s.addr, &format!("/slow-receiver?go={}", go.display()));
    let Client::Tcp(sock) = &ws.conn else {
        unreachable!()
    };
    let mut writer = sock.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    // 400 x 64 KiB: more than the kernel buffers hold.
    let t = std::thread::spawn(move || {
        use std::io::Write;
        let f = frame(true, BINARY, &[1; 65536], true);
        for _ in 0..400 {
            writer.write_all(&f).unwrap();
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // The app takes nothing: after its queue fills, the worker stops
    // reading, and the client's writes block.
    assert!(
        !wait_until(Duration::from_secs(2), || done
            .load(std::sync::atomic::Ordering::SeqCst)),
        "the worker read 25 MiB for an app that received nothing"
    );
    std::fs::write(&go, "").unwrap();
    t.join().unwrap();
    ws.send_text("count");
    assert_eq!(text(&mut ws), "400");
}
