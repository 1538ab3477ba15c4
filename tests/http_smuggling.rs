//! Request-smuggling defenses (RFC 9112 §6 framing, §5 field syntax): every
//! ambiguous or malformed request gets its error status AND the connection is
//! closed right after the response, so a request hidden behind the bad one is
//! never answered. Statuses are the ones documented in src/http/request.rs
//! and src/http/body.rs: 400, except 501 for a transfer coding we do not
//! implement (any Transfer-Encoding list other than exactly `chunked`).
mod support;
use std::io::Write;
use support::*;

/// Appended to every bad request: if the server misframes the bad one and
/// carries on, this one gets answered and the test sees the extra bytes.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Send `raw` + SMUGGLED, expect exactly one `status` response with
/// `Connection: close`, then EOF with nothing else.
fn expect_reject(s: &Server, what: &str, raw: &[u8], status: u16) {
    let mut c = s.connect();
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(SMUGGLED);
    c.write_all(&bytes).unwrap();
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
    assert_eq!(r.status, status, "{what}: {}", r.status_line);
    assert_eq!(r.header("Connection"), Some("close"), "{what}");
    assert_eq!(r.header("Content-Type"), Some("text/plain"), "{what}");
    let rest = read_to_eof(&mut c, EOF_WITHIN).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        rest.is_empty(),
        "{what}: bytes after the error response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

const POST: &str = "POST / HTTP/1.1\r\nHost: x\r\n";

fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let post = |rest: &str| [POST.as_bytes(), rest.as_bytes()].concat();
    let chunked = |body: &str| post(&format!("Transfer-Encoding: chunked\r\n\r\n{body}"));
    vec![
        // ---- Content-Length vs Transfer-Encoding
        (
            "CL then TE",
            post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "TE then CL",
            post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "TE gzip with CL",
            post("Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"),
            400,
        ),
        // ---- Content-Length values
        (
            "differing duplicate CL",
            post("Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            400,
        ),
        (
            "differing CL list",
            post("Content-Length: 5, 6\r\n\r\nhello!"),
            400,
        ),
        ("signed CL", post("Content-Length: +5\r\n\r\nhello"), 400),
        ("negative CL", post("Content-Length: -1\r\n\r\n"), 400),
        ("hex CL", post("Content-Length: 0x5\r\n\r\nhello"), 400),
        (
            "overflowing CL",
            post("Content-Length: 18446744073709551616\r\n\r\n"),
            400,
        ),
        // ---- Transfer-Encoding codings
        ("TE gzip", post("Transfer-Encoding: gzip\r\n\r\n"), 501),
        (
            "TE identity",
            post("Transfer-Encoding: identity\r\n\r\n"),
            501,
        ),
        (
            "TE chunked, gzip",
            post("Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "TE gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "TE split over two lines",
            post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "TE chunked with parameter",
            post("Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "TE chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        ("TE empty", post("Transfer-Encoding: \r\n\r\n"), 400),
        (
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        // ---- chunk framing
        ("chunk size zz", chunked("zz\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size -1", chunked("-1\r\nhello\r\n0\r\n\r\n"), 400),
        (
            "chunk size 17 hex digits",
            chunked("10000000000000000\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk size 0x5", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size empty", chunked("\r\nhello\r\n0\r\n\r\n"), 400),
        (
            "space inside chunk size",
            chunked("5 5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk data longer than its size",
            chunked("5\r\nhelloXX\r\n0\r\n\r\n"),
            400,
        ),
        (
            "bare LF after chunk size",
            chunked("5\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "bare LF ending the chunked body",
            chunked("5\r\nhello\r\n0\r\n\n"),
            400,
        ),
        (
            "obs-fold in trailer",
            chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
            400,
        ),
        (
            "space before colon in trailer",
            chunked("5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"),
            400,
        ),
        // ---- field syntax
        (
            "space before header colon",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "tab before header colon",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "space before Transfer-Encoding colon",
            post("Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"),
            400,
        ),
        (
            "bare CR in header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bare CR ending a header line",
            b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bare CR ending the request line",
            b"GET / HTTP/1.1\rHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nX\0A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "control byte in header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "DEL in header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n".to_vec(),
            400,
        ),
        (
            "control byte in header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "space in header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "obs-fold with tab",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n".to_vec(),
            400,
        ),
        (
            "obs-fold continuing Content-Length",
            post("Content-Length: \r\n 5\r\n\r\nhello"),
            400,
        ),
        (
            "whitespace line before the first header",
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n".to_vec(),
            400,
        ),
        // ---- Host
        (
            "missing Host on 1.1",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Host fields",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        // ---- request line
        (
            "garbage version",
            b"GET / HTTX/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "fragment in target",
            b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ]
}

#[test]
fn smuggling_vectors_are_rejected_and_closed_tcp() {
    let s = Server::start(&["echo"]);
    for (what, raw, status) in cases() {
        expect_reject(&s, what, &raw, status);
    }
    // The worker is fine afterwards.
    let r = s.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn smuggling_vectors_are_rejected_and_closed_unix() {
    let s = Server::start_unix(&["echo"]);
    let keep = [
        "CL then TE",
        "differing duplicate CL",
        "TE gzip",
        "TE chunked, gzip",
        "chunk size zz",
        "obs-fold",
        "bare CR in header value",
        "missing Host on 1.1",
    ];
    let all = cases();
    for name in keep {
        let (what, raw, status) = all.iter().find(|c| c.0 == name).unwrap();
        expect_reject(&s, what, raw, *status);
    }
}

#[test]
fn bad_request_after_good_ones_on_a_keep_alive_connection() {
    // Earlier good requests are answered, the bad one gets its 400, and
    // nothing after it is.
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("\"target\": \"/1\""));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Connection"), Some("close"));
    let rest = read_to_eof(&mut c, EOF_WITHIN).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn equal_duplicate_content_lengths_are_accepted() {
    // The one tolerated repetition (RFC 9112 §6.3 item 5): all values equal.
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello\
          POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("\"body_base64\": \"aGVsbG8=\""));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("\"body_base64\": \"YWJj\""));
}
