//! Proxy awareness without nginx: raw TCP from 127.0.0.1 to the real binary.
//!
//! - `--forwarded-allow-ips` (default 127.0.0.1,::1): a trusted peer's
//!   `X-Forwarded-For` / `X-Forwarded-Proto` are believed by the app (the
//!   echo app's `X-Echo-Remote-Addr` / `X-Echo-Scheme` headers) and by the
//!   access log; an untrusted peer's change nothing; `*` trusts everyone.
//! - `--proxy-protocol`: v1 and v2 headers set the client address; a
//!   malformed header, a peer outside `--proxy-allow-from`, or a plain request
//!   without the header get the connection closed without a response.

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

fn echo_with(args: &[&str]) -> (Server, TempDir) {
    let logs = TempDir::new("proxylog");
    let log = logs.join("access.log");
    let s = Server::builder()
        .args(["echo", "--workers", "1", "--access-logfile"])
        .arg(log.display().to_string())
        .args(args.iter().copied())
        .start();
    (s, logs)
}

/// The access log line for `path` (waits for the worker's flush).
#[track_caller]
fn log_line(logs: &TempDir, path: &str) -> String {
    let file = logs.join("access.log");
    let needle = format!("\"GET {path} ");
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = read_lines(&file).into_iter().find(|l| l.contains(&needle));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no access log line for {path}; log:\n{}",
            std::fs::read_to_string(&file).unwrap_or_default()
        )
    })
}

fn forwarded_get(s: &Server, path: &str, extra: &str) -> HttpResponse {
    s.request(
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.5\r\n\
             X-Forwarded-Proto: https\r\n{extra}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn default_trust_believes_loopback_proxy_headers() {
    let (s, logs) = echo_with(&[]);
    let r = forwarded_get(&s, "/trusted", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("203.0.113.5"));
    assert_eq!(r.header("X-Echo-Scheme"), Some("https"));
    let line = log_line(&logs, "/trusted");
    assert!(
        line.starts_with("203.0.113.5 "),
        "access log must show the forwarded client: {line}"
    );

    // Without the headers: the peer itself, plain http.
    let r = s.request(b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.1"));
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
    assert!(log_line(&logs, "/plain").starts_with("127.0.0.1 "));

    // A chain: the rightmost entry that is not a trusted proxy is the client
    // (the leftmost one was written by the client and proves nothing).
    let r = s.request(
        b"GET /chain HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.1\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("198.51.100.7"));

    // Scheme headers that contradict each other resolve to http: a proxy sets
    // X-Forwarded-Proto itself but passes a client's X-Forwarded-Ssl through.
    let r = s.request(
        b"GET /contra HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Ssl: on\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
}

#[test]
fn untrusted_peer_headers_are_ignored() {
    let (s, logs) = echo_with(&["--forwarded-allow-ips", "10.0.0.1"]);
    let r = forwarded_get(&s, "/untrusted", "X-Forwarded-Ssl: on\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.1"));
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
    let line = log_line(&logs, "/untrusted");
    assert!(line.starts_with("127.0.0.1 "), "{line}");
}

#[test]
fn star_trusts_every_peer() {
    let (s, logs) = echo_with(&["--forwarded-allow-ips", "*"]);
    let r = forwarded_get(&s, "/star", "");
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("203.0.113.5"));
    assert_eq!(r.header("X-Echo-Scheme"), Some("https"));
    assert!(log_line(&logs, "/star").starts_with("203.0.113.5 "));
}

#[test]
fn custom_secure_scheme_headers() {
    let (s, _logs) = echo_with(&["--secure-scheme-headers", "X-Scheme=https"]);
    let r = s.request(b"GET / HTTP/1.1\r\nHost: t\r\nX-Scheme: https\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("X-Echo-Scheme"), Some("https"));
    // The default headers are no longer consulted.
    let r = s.request(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("X-Echo-Scheme"), Some("http"));
}

// ---------------------------------------------------------------------------
// PROXY protocol.

fn proxy_server(extra: &[&str]) -> (Server, TempDir) {
    let logs = TempDir::new("pplog");
    let log = logs.join("access.log");
    // The harness's readiness probe is a plain request, which a
    // --proxy-protocol server must refuse: start without waiting and poll
    // with a PROXY header instead.
    let s = Server::builder()
        .args([
            "echo",
            "--workers",
            "1",
            "--proxy-protocol",
            "--access-logfile",
        ])
        .arg(log.display().to_string())
        .args(extra.iter().copied())
        .no_wait()
        .start();
    let ok = wait_until(Duration::from_secs(20), || {
        let Ok(mut c) = Client::connect(&s.addr) else {
            return false;
        };
        c.write_all(
            b"PROXY TCP4 192.0.2.9 192.0.2.2 1 80\r\nGET /__ready HTTP/1.1\r\nHost: t\r\n\
              Connection: close\r\n\r\n",
        )
        .is_ok()
            && c.read_response().is_ok()
    });
    assert!(ok, "server did not become ready:\n{}", s.log_text());
    (s, logs)
}

/// Send `bytes`, expect the server to close without writing anything.
#[track_caller]
fn expect_silent_close(s: &Server, bytes: &[u8]) {
    let mut c = s.connect();
    // The server may close before everything is written.
    let _ = c.write_all(bytes);
    match read_to_eof(&mut c, Duration::from_secs(5)) {
        Ok(got) => assert!(
            got.is_empty(),
            "expected a close without a response, got {:?}",
            String::from_utf8_lossy(&got)
        ),
        // A reset (unread bytes at close) is also a close without a response.
        Err(e) => assert!(
            e.contains("read failed") && e.ends_with("got \"\""),
            "expected the connection to be closed: {e}"
        ),
    }
}

#[test]
fn proxy_protocol_v1_sets_the_client() {
    let (s, logs) = proxy_server(&[]);
    let r = s.request(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET /v1 HTTP/1.1\r\nHost: t\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("192.0.2.1"));
    assert!(log_line(&logs, "/v1").starts_with("192.0.2.1 "));

    // IPv6 and keep-alive: the header is read once, then requests follow.
    let mut c = s.connect();
    c.write_all(
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("2001:db8::1"));
    c.write_all(b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("2001:db8::1"));

    // UNKNOWN (a health check): the real peer is kept.
    let r = s.request(b"PROXY UNKNOWN\r\nGET /u HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.1"));

    // The header may arrive in pieces.
    let mut c = s.connect();
    c.write_all(b"PROXY TCP4 192.0.2.").unwrap();
    // The server has read the first piece (its socket's receive queue is
    // empty) before the rest is sent: it really parsed a partial header.
    let (Client::Tcp(t), Addr::Tcp(srv)) = (&c, &s.addr) else {
        unreachable!()
    };
    let mine = t.local_addr().unwrap().port();
    assert!(wait_until(Duration::from_secs(30), || tcp_rx_queue(
        srv.port(),
        mine
    ) == Some(0)));
    c.write_all(
        b"77 192.0.2.2 5000 80\r\nGET /split HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("192.0.2.77"));
}

#[test]
fn proxy_protocol_v2_sets_the_client() {
    let (s, logs) = proxy_server(&[]);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    // version 2, PROXY; TCP over IPv4; 12 address bytes.
    v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
    v2.extend_from_slice(&[198, 51, 100, 23, 192, 0, 2, 2, 0x13, 0x88, 0, 80]);
    let mut req = v2.clone();
    req.extend_from_slice(b"GET /v2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = s.request(&req);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("198.51.100.23"));
    assert!(log_line(&logs, "/v2").starts_with("198.51.100.23 "));

    // TLVs after the addresses (length covers them) are skipped.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12 + 7]);
    v2.extend_from_slice(&[198, 51, 100, 24, 192, 0, 2, 2, 0x13, 0x88, 0, 80]);
    v2.extend_from_slice(&[0x02, 0, 4, b'h', b'o', b's', b't']);
    v2.extend_from_slice(b"GET /tlv HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = s.request(&v2);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("198.51.100.24"));

    // LOCAL command: the real peer.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    local.extend_from_slice(b"GET /local HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = s.request(&local);
    assert_eq!(r.header("X-Echo-Remote-Addr"), Some("127.0.0.1"));
}

#[test]
fn proxy_protocol_rejects_bad_or_missing_headers() {
    let (s, _logs) = proxy_server(&[]);
    // Malformed v1.
    expect_silent_close(
        &s,
        b"PROXY TCP4 not-an-ip 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    expect_silent_close(
        &s,
        b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    expect_silent_close(&s, b"PROXY TCP4 192.0.2.1 192.0.2.2 5000\r\n");
    // Malformed v2 (bad version nibble).
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x31, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    expect_silent_close(&s, &v2);
    // No header at all.
    expect_silent_close(
        &s,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    // The server is still fine afterwards.
    let r = s.request(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn proxy_protocol_only_from_allowed_peers() {
    // Not waiting on readiness with a PROXY header: 127.0.0.1 is not allowed,
    // so no request can ever succeed. Wait for the workers instead.
    let s = Server::builder()
        .args([
            "echo",
            "--workers",
            "1",
            "--proxy-protocol",
            "--proxy-allow-from",
            "10.0.0.1",
        ])
        .no_wait()
        .start();
    wait_workers(s.pid(), 1);
    assert!(
        wait_log(&s, "Booting worker", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    for _ in 0..2 {
        expect_silent_close(
            &s,
            b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\
              Connection: close\r\n\r\n",
        );
    }
    assert!(
        wait_log(&s, "not in --proxy-allow-from", Duration::from_secs(30)),
        "the refusal should be logged:\n{}",
        s.log_text()
    );
}
