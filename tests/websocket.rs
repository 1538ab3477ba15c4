//! WebSockets (RFC 6455) end to end: the built-in `echo` app answers
//! upgrades on `/ws` by echoing messages. A raw client (tests/support/ws.rs)
//! does the handshake, sends masked, fragmented and deliberately bad frames,
//! and reads the server's frames. After every bad frame the worker must
//! still serve (same worker pid, next WebSocket echoes).
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::ws::*;
use support::*;

fn echo_server(extra: &[&str]) -> Server {
    let mut args = vec!["echo", "--workers", "1"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The worker pid behind a fresh WebSocket, after checking it echoes.
#[track_caller]
fn healthy(s: &Server) -> String {
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send_text("still there?");
    assert_eq!(ws.expect_message(TEXT), b"still there?");
    ws.response.header("X-Echo-Pid").unwrap().to_string()
}

#[test]
fn the_handshake_gives_the_rfc_accept_key_and_the_offered_subprotocol() {
    let s = echo_server(&[]);
    let (resp, ws) = try_open(&s.addr, "/ws", "Sec-WebSocket-Protocol: chat, echo\r\n");
    assert!(ws.is_some(), "{resp:?}");
    assert_eq!(resp.status_line, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(resp.header("Upgrade"), Some("websocket"));
    assert_eq!(resp.header("Connection"), Some("Upgrade"));
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("echo"));
    assert!(resp.header("Content-Length").is_none(), "{resp:?}");
    // Nothing offered that the app speaks: no subprotocol header.
    let (resp, _) = try_open(&s.addr, "/ws", "Sec-WebSocket-Protocol: chat\r\n");
    assert_eq!(resp.status, 101);
    assert!(resp.header("Sec-WebSocket-Protocol").is_none(), "{resp:?}");
}

#[test]
fn bad_handshakes_are_refused_with_400_or_426() {
    let s = echo_server(&[]);
    let good = handshake("/ws", "");
    let cases = [
        (good.replace("Version: 13", "Version: 8"), 426),
        (good.replace(KEY, "c2hvcnQ="), 400),
        (
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
        ),
        (
            good.replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
        ),
        (good.replace("GET", "POST"), 400),
    ];
    for (raw, status) in cases {
        let resp = s.request(raw.as_bytes());
        assert_eq!(resp.status, status, "{raw}\n{resp:?}");
        if status == 426 {
            assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"), "{resp:?}");
        }
    }
    // A valid handshake where the app has no WebSocket: its denial (404).
    let (resp, ws) = try_open(&s.addr, "/elsewhere", "");
    assert!(ws.is_none());
    assert_eq!(resp.status, 404, "{resp:?}");
    // Plain HTTP is untouched.
    let resp = get(&s.addr, "/ws").unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.body_str().starts_with("{\"method\": \"GET\""),
        "{resp:?}"
    );
}

#[test]
fn text_and_binary_messages_are_echoed_at_every_length() {
    let s = echo_server(&[]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send_text("héllo");
    assert_eq!(ws.expect_message(TEXT), "héllo".as_bytes());
    for len in [0, 125, 126, 65_535, 65_536, 300_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        ws.send(true, BINARY, &data);
        assert!(ws.expect_message(BINARY) == data, "binary of {len} bytes");
    }
}

#[test]
fn a_fragmented_message_is_assembled_around_a_ping() {
    let s = echo_server(&[]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send(false, TEXT, b"frag");
    ws.send(true, PING, b"in between");
    ws.send(false, CONT, "mé".as_bytes());
    // A two-byte character cut across fragments.
    let tail = "ñt".as_bytes();
    ws.send(false, CONT, &tail[..1]);
    ws.send(true, CONT, &tail[1..]);
    let pong = ws.read_frame().unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"in between"[..])
    );
    assert_eq!(ws.expect_message(TEXT), "fragméñt".as_bytes());
}

#[test]
fn a_ping_gets_a_pong_with_its_payload() {
    let s = echo_server(&[]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send(true, PING, b"12345");
    let f = ws.read_frame().unwrap();
    assert_eq!((f.opcode, f.payload), (PONG, b"12345".to_vec()));
}

#[test]
fn a_client_close_is_echoed_and_the_connection_closed() {
    let s = echo_server(&[]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send(true, CLOSE, &close_payload(1000, "done"));
    assert_eq!(ws.expect_close().0, 1000);
    assert!(ws.closes_within(Duration::from_secs(10)));
    // The app closes: the server sends its close and ends the TCP
    // connection once the client answers.
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send_text("close 4001 bye now");
    assert_eq!(ws.expect_close(), (4001, "bye now".into()));
    ws.send(true, CLOSE, &close_payload(4001, ""));
    assert!(ws.closes_within(Duration::from_secs(10)));
}

/// Send `bad` on a fresh WebSocket: the server must close with `code`, end
/// the connection, and serve the next one from the same worker.
#[track_caller]
fn closes_with(s: &Server, bad: &[u8], code: u16) {
    let pid = healthy(s);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send_raw(bad);
    let (got, _) = ws.expect_close();
    assert_eq!(got, code);
    assert!(ws.closes_within(Duration::from_secs(10)), "not closed");
    assert_eq!(healthy(s), pid, "the worker changed");
}

#[test]
fn an_unmasked_client_frame_closes_with_1002() {
    let s = echo_server(&[]);
    closes_with(&s, &frame(true, TEXT, b"naked", false), 1002);
}

#[test]
fn protocol_errors_close_with_1002() {
    let s = echo_server(&[]);
    let mut rsv = frame(true, TEXT, b"x", true);
    rsv[0] |= 0x40;
    closes_with(&s, &rsv, 1002);
    closes_with(&s, &frame(true, 0x3, b"", true), 1002);
    closes_with(&s, &frame(true, CONT, b"orphan", true), 1002);
    closes_with(&s, &frame(true, PING, &[0; 126], true), 1002);
    closes_with(&s, &frame(false, PING, b"", true), 1002);
}

#[test]
fn a_bad_close_code_closes_with_1002() {
    let s = echo_server(&[]);
    for code in [999, 1005, 1006, 2000] {
        closes_with(
            &s,
            &frame(true, CLOSE, &close_payload(code, ""), true),
            1002,
        );
    }
}

#[test]
fn invalid_utf8_in_text_closes_with_1007() {
    let s = echo_server(&[]);
    closes_with(&s, &frame(true, TEXT, b"ok \xff\xfe", true), 1007);
    // Split across fragments and never completed.
    let mut bad = frame(false, TEXT, b"a\xce", true);
    bad.extend(frame(true, CONT, b"b", true));
    closes_with(&s, &bad, 1007);
    // In a close reason.
    let mut p = close_payload(1000, "");
    p.push(0xff);
    closes_with(&s, &frame(true, CLOSE, &p, true), 1007);
}

#[test]
fn a_message_over_ws_max_size_closes_with_1009() {
    let s = echo_server(&["--ws-max-size", "1k"]);
    // Exactly at the limit is fine.
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send(true, BINARY, &[7; 1024]);
    assert_eq!(ws.expect_message(BINARY).len(), 1024);
    // Over it in one frame (the client is still sending when the server
    // refuses: it must read the close, not a reset), and across fragments.
    closes_with(&s, &frame(true, BINARY, &[1; 64 * 1024], true), 1009);
    let mut frags = frame(false, TEXT, &[b'a'; 600], true);
    frags.extend(frame(true, CONT, &[b'b'; 600], true));
    closes_with(&s, &frags, 1009);
}

#[test]
fn an_idle_client_that_never_answers_the_ping_is_closed() {
    let s = echo_server(&["--ws-ping-interval", "1", "--ws-ping-timeout", "1"]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    let ping = ws.read_frame().unwrap();
    assert_eq!(ping.opcode, PING);
    // Not answered: the server gives up with 1011.
    assert_eq!(ws.expect_close().0, 1011);
    assert!(ws.closes_within(Duration::from_secs(10)));
    // A client that answers stays open through several pings.
    let mut ws = WsClient::open(&s.addr, "/ws");
    for _ in 0..3 {
        let ping = ws.read_frame().unwrap();
        assert_eq!(ping.opcode, PING);
        ws.send(true, PONG, &ping.payload);
    }
    ws.send_text("alive");
    // Pings may come in between; the echo follows.
    loop {
        let f = ws.read_frame().unwrap();
        if f.opcode == PING {
            continue;
        }
        assert_eq!((f.opcode, f.payload), (TEXT, b"alive".to_vec()));
        break;
    }
}

#[test]
fn keep_alive_and_header_timeout_do_not_apply_to_an_open_websocket() {
    let s = echo_server(&[
        "--keep-alive",
        "1",
        "--header-timeout",
        "1",
        "--ws-ping-interval",
        "0",
    ]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    // Three times both timeouts, silent on both sides.
    assert!(stays_silent(&mut ws.conn, Duration::from_secs(3)));
    ws.send_text("late");
    assert_eq!(ws.expect_message(TEXT), b"late");
}

#[test]
fn graceful_stop_closes_an_open_websocket_with_1001_near_the_graceful_timeout() {
    let mut s = echo_server(&["--graceful-timeout", "4", "--ws-ping-interval", "0"]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    let worker: u32 = ws.response.header("X-Echo-Pid").unwrap().parse().unwrap();
    let term = Instant::now();
    s.signal(Signal::SIGTERM);
    // The worker has stopped accepting (its listener is closed), and the
    // WebSocket is still served: it is not cut at TERM.
    assert!(
        wait_until(Duration::from_secs(10), || get(&s.addr, "/").is_err()),
        "still accepting after TERM"
    );
    ws.send_text("after TERM");
    assert_eq!(ws.expect_message(TEXT), b"after TERM");
    let (code, _) = ws.expect_close();
    let waited = term.elapsed();
    assert_eq!(code, 1001);
    // Sent a second before the 4 s are up (src/event_loop.rs
    // `ws_close_lead`), not at TERM: a lower bound only.
    assert!(waited >= Duration::from_secs(2), "closed after {waited:?}");
    ws.send(true, CLOSE, &close_payload(1001, ""));
    assert!(ws.closes_within(Duration::from_secs(10)));
    assert_eq!(
        s.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        s.log_text()
    );
    assert!(!alive(worker), "the worker is still alive");
    let log = s.log_text();
    assert!(!log.contains("killing"), "{log}");
}

#[test]
fn a_graceful_stop_does_not_wait_for_a_client_that_ignores_the_close() {
    let mut s = echo_server(&["--graceful-timeout", "2", "--ws-ping-interval", "0"]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    s.signal(Signal::SIGTERM);
    assert_eq!(ws.expect_close().0, 1001);
    // Never answered: the worker exits at its deadline anyway.
    assert!(ws.closes_within(Duration::from_secs(15)));
    assert!(s.wait_exit(Duration::from_secs(20)).is_some());
}

/// Open a WebSocket through `nginx`, echo both kinds of message, close.
#[track_caller]
fn echo_through(nginx: &Nginx) {
    let (resp, ws) = try_open(&nginx.addr(), "/ws", "Sec-WebSocket-Protocol: echo\r\n");
    let mut ws = ws.unwrap_or_else(|| panic!("no 101 through nginx: {resp:?}\n{}", nginx.logs()));
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("echo"));
    ws.send_text("through nginx");
    assert_eq!(ws.expect_message(TEXT), b"through nginx");
    let big: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
    ws.send(true, BINARY, &big);
    assert!(ws.expect_message(BINARY) == big);
    ws.send(true, PING, b"p");
    assert_eq!(ws.read_frame().unwrap().opcode, PONG);
    ws.send(true, CLOSE, &close_payload(1000, ""));
    assert_eq!(ws.expect_close().0, 1000);
    assert!(ws.closes_within(Duration::from_secs(10)));
    // Plain requests still go over kept-alive upstream connections.
    assert_eq!(nginx.get("/after").status, 200);
}

#[test]
fn the_echo_works_through_nginx_with_the_sample_tcp_config() {
    let s = echo_server(&[]);
    let port = match &s.addr {
        Addr::Tcp(a) => a.port(),
        Addr::Unix(_) => unreachable!(),
    };
    let nginx = Nginx::start("ferricorn-tcp.conf", &[("PORT", port.to_string())]);
    echo_through(&nginx);
}

#[test]
fn the_echo_works_through_nginx_with_the_sample_unix_config() {
    let s = Server::start_unix(&["echo", "--workers", "1"]);
    let Addr::Unix(path) = &s.addr else {
        unreachable!()
    };
    let nginx = Nginx::start(
        "ferricorn-unix.conf",
        &[("SOCKET", path.display().to_string())],
    );
    echo_through(&nginx);
}

#[test]
fn an_accepted_websocket_is_one_access_log_line_with_status_101() {
    let dir = TempDir::new("ws-log");
    let log = dir.join("access.log");
    let s = echo_server(&["--access-logfile", log.to_str().unwrap()]);
    let mut ws = WsClient::open(&s.addr, "/ws");
    ws.send_text("x");
    assert_eq!(ws.expect_message(TEXT), b"x");
    assert!(
        wait_until(Duration::from_secs(10), || read_lines(&log)
            .iter()
            .any(|l| l.contains("\"GET /ws HTTP/1.1\" 101"))),
        "{:?}",
        read_lines(&log)
    );
}
