//! The request line and field names byte by byte (RFC 9112 §3, RFC 3986),
//! the version policy (RFC 9110 §2.5) and CONNECT (RFC 9110 §9.3.6), through
//! the real server. Like tests/http_smuggling.rs, every rejected request has a
//! second request behind it that must never be answered: one error response,
//! `Connection: close`, then EOF.
mod support;
use std::io::Write;
use support::*;

const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Send `raw` + SMUGGLED, expect exactly one `status` response with
/// `Connection: close`, then EOF with nothing else.
#[track_caller]
fn expect_reject(s: &Server, what: &str, raw: &[u8], status: u16) {
    let mut c = s.connect();
    c.write_all(&[raw, SMUGGLED].concat()).unwrap();
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
    assert_eq!(r.status, status, "{what}: {}", r.status_line);
    assert_eq!(r.header("Connection"), Some("close"), "{what}");
    let rest = read_to_eof(&mut c, EOF_WITHIN).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        rest.is_empty(),
        "{what}: bytes after the error response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Bytes `0x80..=0xFF` where the grammar has no room for them: the target
/// (URI characters only; non-ASCII must be percent-encoded), the method and
/// field names (tokens), the version. All 400.
fn non_ascii_cases() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (
            "UTF-8 in an HTTP/1.0 target (the issue's case)",
            b"GET /\xc3\xa0%20k HTTP/1.0\r\n\r\n",
        ),
        (
            "UTF-8 in an HTTP/1.1 target",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 in the query",
            b"GET /?q=\xe2\x82\xac HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 in an absolute-form host",
            b"GET http://h\xc3\xa0/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "lone high byte in the target",
            b"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "0xFF in the target",
            b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 target with an unsupported version",
            b"GET /\xc3\xa0 HTTP/2.0\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 target with HTTP/1.2",
            b"GET /\xc3\xa0 HTTP/1.2\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 in the method",
            b"G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "high byte in the version",
            b"GET / HTTP/1.\xb1\r\nHost: x\r\n\r\n",
        ),
        (
            "UTF-8 in a field name",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa0: v\r\n\r\n",
        ),
    ]
}

#[test]
fn non_ascii_bytes_outside_field_values_are_400_and_closed() {
    let s = Server::start(&["echo"]);
    for (what, raw) in non_ascii_cases() {
        expect_reject(&s, what, raw, 400);
    }
    // obs-text stays allowed in a field value (RFC 9110 §5.5), and the app
    // gets the bytes as sent; the percent-encoded target is fine too.
    let r = s.request(b"GET /%C3%A0%20k HTTP/1.1\r\nHost: x\r\nX-V: caf\xc3\xa9\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(
        r.body_str().contains("\"target\": \"/%C3%A0%20k\""),
        "{}",
        r.body_str()
    );
    assert!(
        r.body_str().contains(r#"["X-V","café"]"#),
        "{}",
        r.body_str()
    );
}

#[test]
fn higher_minor_version_is_served_as_http11() {
    // RFC 9110 §2.5: a 1.1 server processes HTTP/1.2 as 1.1: answered (not
    // 505), persistent by default, answered in our own version.
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"GET /a HTTP/1.2\r\nHost: x\r\n\r\n\
          POST /b HTTP/1.9\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Connection"), None, "persistent, as 1.1");
    assert!(
        r.body_str().contains("\"target\": \"/a\""),
        "{}",
        r.body_str()
    );
    assert!(
        r.body_str().contains("\"version\": \"HTTP/1.1\""),
        "{}",
        r.body_str()
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body_str().contains("\"body_base64\": \"YWJj\""),
        "{}",
        r.body_str()
    );
    // Host is required, as for 1.1.
    expect_reject(&s, "HTTP/1.2 without Host", b"GET / HTTP/1.2\r\n\r\n", 400);
    // Other major versions are still 505.
    for v in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9"] {
        expect_reject(
            &s,
            v,
            format!("GET / {v}\r\nHost: x\r\n\r\n").as_bytes(),
            505,
        );
    }
}

#[test]
fn connect_is_501_and_never_reaches_the_app() {
    // RFC 9110 §9.3.6: a 2xx to CONNECT turns the connection into a tunnel
    // and MUST NOT carry Content-Length; the server makes no tunnels, so an
    // app that has not opted in never sees CONNECT.
    // The echo app answers 200 to anything it is given.
    let s = Server::start(&["echo"]);
    for raw in [
        &b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"[..],
        b"CONNECT example.com:443 HTTP/1.0\r\n\r\n",
    ] {
        expect_reject(&s, "CONNECT", raw, 501);
    }
    let r = s.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
}
