//! The built-in `echo` app's contract, byte for byte:
//! `{"method": M, "target": T, "path": P, "query": Q, "version": V,
//!   "headers": [[name,value],...], "body_base64": B, "trailers": [[name,value],...]}`
//! with headers in received order and names as received, `query` "" when
//! absent, `trailers` [] when none, served as application/json.
mod support;
use std::io::Write;
use support::*;

/// The JSON the echo app must produce, built independently of the server.
#[allow(clippy::too_many_arguments)]
fn expected(
    method: &str,
    target: &str,
    path: &str,
    query: &str,
    version: &str,
    headers: &[(&str, &str)],
    body_b64: &str,
    trailers: &[(&str, &str)],
) -> String {
    let pairs = |p: &[(&str, &str)]| {
        let items: Vec<String> = p
            .iter()
            .map(|(n, v)| format!("[\"{n}\",\"{v}\"]"))
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"method\": \"{method}\", \"target\": \"{target}\", \"path\": \"{path}\", \
         \"query\": \"{query}\", \"version\": \"{version}\", \"headers\": {}, \
         \"body_base64\": \"{body_b64}\", \"trailers\": {}}}",
        pairs(headers),
        pairs(trailers)
    )
}

/// Standard base64 decoding (RFC 4648 §4, padded), written here so the test
/// does not trust the server's encoder.
fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c:?}"),
        }
    };
    let b = s.as_bytes();
    assert_eq!(b.len() % 4, 0, "unpadded base64 {s:?}");
    let mut out = Vec::new();
    for q in b.chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in q {
            n = (n << 6) | if c == b'=' { 0 } else { val(c) };
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

fn body_base64_of(json: &str) -> &str {
    let start = json.find("\"body_base64\": \"").expect("body_base64") + 16;
    let len = json[start..].find('"').unwrap();
    &json[start..start + len]
}

fn check_json_response(r: &HttpResponse, want: &str) {
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.body_str(), want);
}

fn check_contract(s: &Server) {
    let mut c = s.connect();
    // The issue's example, Content-Length flavour.
    c.write_all(b"POST /p?x=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    check_json_response(
        &c.read_response().unwrap(),
        &expected(
            "POST",
            "/p?x=1",
            "/p",
            "x=1",
            "HTTP/1.1",
            &[("Host", "example"), ("Content-Length", "5")],
            "aGVsbG8=",
            &[],
        ),
    );
    // Chunked flavour, with trailers.
    c.write_all(
        b"POST /p?x=1 HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n\
          2\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\nx-other:  two words \r\n\r\n",
    )
    .unwrap();
    check_json_response(
        &c.read_response().unwrap(),
        &expected(
            "POST",
            "/p?x=1",
            "/p",
            "x=1",
            "HTTP/1.1",
            &[("Host", "example"), ("Transfer-Encoding", "chunked")],
            "aGVsbG8=",
            &[("X-T", "1"), ("x-other", "two words")],
        ),
    );
}

#[test]
fn echo_contract_tcp() {
    check_contract(&Server::start(&["echo"]));
}

#[test]
fn echo_contract_unix() {
    check_contract(&Server::start_unix(&["echo"]));
}

#[test]
fn echo_empty_bodies_no_query_no_trailers() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(b"GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    check_json_response(
        &c.read_response().unwrap(),
        &expected(
            "GET",
            "/a/b",
            "/a/b",
            "",
            "HTTP/1.1",
            &[("Host", "h")],
            "",
            &[],
        ),
    );
    c.write_all(b"POST /? HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    check_json_response(
        &c.read_response().unwrap(),
        &expected(
            "POST",
            "/?",
            "/",
            "",
            "HTTP/1.1",
            &[("Host", "h"), ("Content-Length", "0")],
            "",
            &[],
        ),
    );
    // A chunked body with no data and no trailers.
    c.write_all(b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    check_json_response(
        &c.read_response().unwrap(),
        &expected(
            "PUT",
            "/x",
            "/x",
            "",
            "HTTP/1.1",
            &[("Host", "h"), ("Transfer-Encoding", "chunked")],
            "",
            &[],
        ),
    );
    // HTTP/1.0, no Host.
    c.write_all(b"DELETE /z?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    check_json_response(
        &r,
        &expected(
            "DELETE",
            "/z?q",
            "/z",
            "q",
            "HTTP/1.0",
            &[("Connection", "keep-alive")],
            "",
            &[],
        ),
    );
}

#[test]
fn echo_binary_bodies() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    // Every byte value, in a Content-Length body ...
    let all: Vec<u8> = (0..=255u8).collect();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        all.len()
    )
    .into_bytes();
    req.extend_from_slice(&all);
    c.write_all(&req).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(b64_decode(body_base64_of(&r.body_str())), all);
    // ... a small known vector (all three padding cases) ...
    for (bytes, b64) in [
        (&b"\x00\xff\x10"[..], "AP8Q"),
        (b"\xfb\xff", "+/8="),
        (b"\r", "DQ=="),
    ] {
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        )
        .into_bytes();
        req.extend_from_slice(bytes);
        c.write_all(&req).unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(body_base64_of(&r.body_str()), b64);
    }
    // ... and a larger pseudo-random chunked body whose data contains CRLFs
    // and things that look like chunk sizes.
    let mut x = 0x2545F491u32;
    let data: Vec<u8> = (0..70_000)
        .map(|i| {
            if i % 97 == 0 {
                b'\r'
            } else if i % 97 == 1 {
                b'\n'
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }
        })
        .collect();
    let mut req = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in data.chunks(10_000) {
        req.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.write_all(&req).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(b64_decode(body_base64_of(&r.body_str())), data);
}

#[test]
fn echo_keeps_header_names_order_and_duplicates_as_received() {
    let s = Server::start(&["echo"]);
    let r = s.request(
        b"GET / HTTP/1.1\r\nhOsT: h\r\nx-CUSTOM-header: 1\r\nX-A: first\r\n\
          ACCEPT:*/*\r\nX-A: second\r\nx-empty:\r\n\r\n",
    );
    check_json_response(
        &r,
        &expected(
            "GET",
            "/",
            "/",
            "",
            "HTTP/1.1",
            &[
                ("hOsT", "h"),
                ("x-CUSTOM-header", "1"),
                ("X-A", "first"),
                ("ACCEPT", "*/*"),
                ("X-A", "second"),
                ("x-empty", ""),
            ],
            "",
            &[],
        ),
    );
}

#[test]
fn echo_escapes_json_in_values() {
    let s = Server::start(&["echo"]);
    // Quotes, backslashes, a tab, and an obs-text byte (read as Latin-1).
    let r = s.request(
        b"GET /q?a=%22 HTTP/1.1\r\nHost: h\r\nX-Q: say \"hi\"\r\nX-B: C:\\dir\\\r\n\
          X-T: a\tb\r\nX-L: caf\xe9\r\n\r\n",
    );
    check_json_response(
        &r,
        &expected(
            "GET",
            "/q?a=%22",
            "/q",
            "a=%22",
            "HTTP/1.1",
            &[
                ("Host", "h"),
                ("X-Q", "say \\\"hi\\\""),
                ("X-B", "C:\\\\dir\\\\"),
                ("X-T", "a\\tb"),
                ("X-L", "caf\u{e9}"),
            ],
            "",
            &[],
        ),
    );
    // The same rules for trailers.
    let r = s.request(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
          1\r\n\"\r\n0\r\nX-Q: \"\\\"\r\n\r\n",
    );
    check_json_response(
        &r,
        &expected(
            "POST",
            "/",
            "/",
            "",
            "HTTP/1.1",
            &[("Host", "h"), ("Transfer-Encoding", "chunked")],
            "Ig==",
            &[("X-Q", "\\\"\\\\\\\"")],
        ),
    );
}
