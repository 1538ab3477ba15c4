//! HTTP/1.1 message handling per RFC 9112, against the real binary over TCP
//! and (for a representative subset) a Unix socket: persistence rules,
//! pipelining, HEAD, `Expect: 100-continue`, `Date`/`Server`, request-target
//! forms, the `hello` app, and requests that arrive one byte at a time.
mod support;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

fn expect_eof(c: &mut Client) {
    let rest = read_to_eof(c, EOF_WITHIN).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rest.is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

// ---------------------------------------------------------------- persistence

fn check_http11_persistent_until_close(s: &Server) {
    let mut c = s.connect();
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        // Persistent is the 1.1 default: nothing to announce.
        assert_eq!(r.header("Connection"), None, "{:?}", r.headers);
    }
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    expect_eof(&mut c);
}

#[test]
fn http11_is_persistent_until_connection_close_tcp() {
    check_http11_persistent_until_close(&Server::start(&["hello"]));
}

#[test]
fn http11_is_persistent_until_connection_close_unix() {
    check_http11_persistent_until_close(&Server::start_unix(&["hello"]));
}

#[test]
fn connection_close_among_other_tokens_is_honoured() {
    let s = Server::start(&["hello"]);
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    expect_eof(&mut c);
}

#[test]
fn http10_without_keep_alive_is_closed_after_the_response() {
    let s = Server::start(&["hello"]);
    let mut c = s.connect();
    // No Host needed in 1.0.
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    // We answer with our own version (RFC 9110 §6.2).
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.body, b"Hello, World!");
    expect_eof(&mut c);
}

#[test]
fn http10_with_keep_alive_stays_open_and_says_so() {
    let s = Server::start(&["hello"]);
    let mut c = s.connect();
    for _ in 0..2 {
        c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_eq!(r.header("Content-Length"), Some("13"));
        assert_eq!(r.body, b"Hello, World!");
    }
    // Still open: a final 1.0 request without keep-alive ends it.
    c.write_all(b"GET /json HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    expect_eof(&mut c);
}

// ---------------------------------------------------------------- pipelining

fn check_pipelined_in_order(s: &Server) {
    let mut c = s.connect();
    let mut batch = Vec::new();
    for i in 0..20 {
        match i {
            // A Content-Length body and a chunked body in the middle of the
            // pipeline: the framing must be found exactly for the rest to parse.
            7 => batch.extend_from_slice(
                b"POST /7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            ),
            13 => batch.extend_from_slice(
                b"POST /13 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            ),
            _ => {
                batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            }
        }
    }
    c.write_all(&batch).unwrap();
    for i in 0..20 {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "response {i}");
        let body = r.body_str();
        assert!(
            body.contains(&format!("\"target\": \"/{i}\"")),
            "response {i} out of order: {body}"
        );
        match i {
            7 => assert!(body.contains("\"body_base64\": \"aGVsbG8=\""), "{body}"),
            13 => {
                assert!(body.contains("\"body_base64\": \"YWJj\""), "{body}");
                assert!(body.contains("\"trailers\": [[\"X-T\",\"1\"]]"), "{body}");
            }
            _ => assert!(body.contains("\"body_base64\": \"\""), "{body}"),
        }
    }
    // Exactly 20 answers, and the connection is still usable: an extra
    // response would be read here instead of /last's.
    c.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(c.read_response().unwrap().body_str().contains("/last"));
}

#[test]
fn twenty_pipelined_requests_answered_in_order_tcp() {
    check_pipelined_in_order(&Server::start(&["echo"]));
}

#[test]
fn twenty_pipelined_requests_answered_in_order_unix() {
    check_pipelined_in_order(&Server::start_unix(&["echo"]));
}

#[test]
fn pipeline_ending_in_connection_close_stops_there() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert!(r.body_str().contains("\"target\": \"/a\""));
    let r = c.read_response().unwrap();
    assert!(r.body_str().contains("\"target\": \"/b\""));
    assert_eq!(r.header("Connection"), Some("close"));
    // /c comes after the close: never answered.
    expect_eof(&mut c);
}

// ---------------------------------------------------------------- HEAD

fn check_head(s: &Server) {
    let mut c = s.connect();
    // HEAD then GET in one write: if any body byte followed the HEAD
    // response, the GET response would not parse.
    c.write_all(
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("27"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let r = c.read_response().unwrap();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body, br#"{"message":"Hello, World!"}"#);
    // Nothing more came after it: stray bytes would be read here, before
    // the next response's status line.
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!"[..]));
}

#[test]
fn head_has_get_content_length_and_no_body_tcp() {
    check_head(&Server::start(&["hello"]));
}

#[test]
fn head_has_get_content_length_and_no_body_unix() {
    check_head(&Server::start_unix(&["hello"]));
}

// ---------------------------------------------------------------- Expect

fn check_expect_continue(s: &Server) {
    let mut c = s.connect();
    // A bound for the failure case only (no 100 ever comes).
    c.set_timeout(Some(Duration::from_secs(20)));
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    // The body is not sent until the interim response arrives.
    let r = c
        .read_response()
        .expect("no 100 Continue before the body was sent");
    assert_eq!(r.raw, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"hello").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body_str().contains("\"body_base64\": \"aGVsbG8=\""),
        "{}",
        r.body_str()
    );
    // Same for a chunked upload.
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.raw, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"2\r\nhi\r\n0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body_str().contains("\"body_base64\": \"aGk=\""),
        "{}",
        r.body_str()
    );
}

#[test]
fn expect_100_continue_before_body_tcp() {
    check_expect_continue(&Server::start(&["echo"]));
}

#[test]
fn expect_100_continue_before_body_unix() {
    check_expect_continue(&Server::start_unix(&["echo"]));
}

#[test]
fn expect_100_continue_with_body_already_sent_gets_no_interim_response() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    // A 100 is allowed here by the RFC but we promise not to send one; either
    // way the final response must follow and be correct.
    if r.status == 100 {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
    } else {
        assert_eq!(r.status, 200);
        assert!(r.body_str().contains("aGVsbG8="));
    }
}

// ---------------------------------------------------------------- Date / Server

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// or None if the text is not exactly in that form.
fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || !s.ends_with(" GMT") {
        return None;
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let wd = days.iter().position(|d| *d == &s[0..3])? as i64;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let d = num(5..7)?;
    let m = months.iter().position(|x| *x == &s[8..11])? as i64 + 1;
    let y = num(12..16)?;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if &s[7..8] != " " || &s[11..12] != " " || &s[16..17] != " " || &s[19..20] != ":" {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since = era * 146097 + doe - 719468;
    // 1970-01-01 was a Thursday (index 3).
    if (days_since + 3).rem_euclid(7) != wd {
        return None;
    }
    Some(days_since * 86400 + hh * 3600 + mm * 60 + ss)
}

#[test]
fn date_and_server_headers_present_and_correct() {
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784111777)
    );
    let s = Server::start(&["hello"]);
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n", // an error response (400) has them too
    ] {
        let r = s.request(raw);
        assert_eq!(r.header("Server"), Some("ferricorn"), "{:?}", r.headers);
        let date = r.header("Date").expect("Date header");
        let t = parse_imf_fixdate(date).unwrap_or_else(|| panic!("bad Date {date:?}"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - t).abs() <= 5, "Date {date} vs now {now}");
    }
}

// ---------------------------------------------------------------- targets

#[test]
fn origin_and_absolute_form_targets() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    let cases: [(&str, &str, &str); 4] = [
        ("/p?x=1", "/p", "x=1"),
        ("http://h/p?x=1", "/p", "x=1"),
        ("http://h:8080", "/", ""),
        ("/a/b/", "/a/b/", ""),
    ];
    for (target, path, query) in cases {
        c.write_all(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{target}");
        let body = r.body_str();
        let want = format!(
            "{{\"method\": \"GET\", \"target\": \"{target}\", \"path\": \"{path}\", \"query\": \"{query}\", "
        );
        assert!(body.starts_with(&want), "{target}: {body}");
    }
    // OPTIONS * (asterisk-form) is fine; `*` for GET is not.
    c.write_all(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("\"path\": \"*\""));
    c.write_all(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 400);
    expect_eof(&mut c);
}

// ---------------------------------------------------------------- hello

#[test]
fn hello_plaintext_and_json() {
    let s = Server::start(&["hello"]);
    let r = s.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert_eq!(r.body, b"Hello, World!");
    let r = s.request(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.body, br#"{"message":"Hello, World!"}"#);
    // Exact head layout of a plain response.
    let head_end = r.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&r.raw[..head_end]).into_owned();
    let names: Vec<&str> = head
        .split("\r\n")
        .skip(1)
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Server", "Date", "Content-Type", "Content-Length"],
        "{head}"
    );
}

// ---------------------------------------------------------------- partial reads

fn send_byte_by_byte(c: &mut Client, bytes: &[u8]) {
    if let Client::Tcp(t) = c {
        t.set_nodelay(true).unwrap();
    }
    for b in bytes {
        c.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn check_byte_at_a_time(s: &Server) {
    let mut c = s.connect();
    let req = b"POST /p?x=1 HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n\
                2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\nX-T: 1\r\n\r\n";
    let started = Instant::now();
    send_byte_by_byte(&mut c, req);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        "{\"method\": \"POST\", \"target\": \"/p?x=1\", \"path\": \"/p\", \"query\": \"x=1\", \
         \"version\": \"HTTP/1.1\", \"headers\": [[\"Host\",\"example\"],[\"Transfer-Encoding\",\"chunked\"]], \
         \"body_base64\": \"aGVsbG8=\", \"trailers\": [[\"X-T\",\"1\"]]}"
    );
    // And a Content-Length one after it, on the same connection.
    send_byte_by_byte(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    );
    let r = c.read_response().unwrap();
    assert!(
        r.body_str().contains("\"body_base64\": \"YWJj\""),
        "{}",
        r.body_str()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn request_sent_one_byte_at_a_time_tcp() {
    check_byte_at_a_time(&Server::start(&["echo"]));
}

#[test]
fn request_sent_one_byte_at_a_time_unix() {
    check_byte_at_a_time(&Server::start_unix(&["echo"]));
}

// ---------------------------------------------------------------- odd but valid

#[test]
fn half_closed_client_still_gets_its_responses() {
    let s = Server::start(&["echo"]);
    let mut c = s.connect();
    c.write_all(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
    )
    .unwrap();
    c.shutdown_write();
    let r = c.read_response().unwrap();
    assert!(r.body_str().contains("\"target\": \"/1\""));
    let r = c.read_response().unwrap();
    assert!(r.body_str().contains("\"body_base64\": \"b2s=\""));
    expect_eof(&mut c);
}

#[test]
fn empty_lines_before_request_and_bare_lf_heads_are_tolerated() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    // the request line, and MAY accept a bare LF as a line terminator in the
    // head (src/http/body.rs documents that ferricorn does; bodies are strict).
    let s = Server::start(&["hello"]);
    let mut c = s.connect();
    c.write_all(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().body, b"Hello, World!");
    c.write_all(b"GET /json HTTP/1.1\nHost: x\n\n").unwrap();
    assert_eq!(
        c.read_response().unwrap().body,
        br#"{"message":"Hello, World!"}"#
    );
}
