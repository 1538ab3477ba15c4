//! Response serialisation.
//!
//! This is on the hot path (one call per response, up to ~1M/s pipelined), so
//! it never allocates except to grow `out`: status lines for every known code
//! are compile-time constants, lengths are written with a small itoa, and the
//! app's headers are scanned in place.
//!
//! Framing is decided here, not by the app: any `Content-Length`,
//! `Transfer-Encoding` or `Connection` the app sets is dropped and replaced by
//! what `framing`/`keep_alive` say, so the bytes we send always delimit the
//! body the way the connection code will actually write it (a mismatch would
//! desynchronise the client, or a proxy's, view of the stream). `Date` and
//! `Server` are ours by default but the app may override them.
//!
//! We always answer with an `HTTP/1.1` status line, even to HTTP/1.0 clients:
//! RFC 9110 §6.2 / RFC 9112 §2.3 say a server sends its own highest
//! conformant minor version; for 1.0 clients keep-alive is then explicit.

use super::request::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n` is written.
    Length(u64),
    /// `Transfer-Encoding: chunked` is written.
    Chunked,
    /// Neither: body ends at connection close (HTTP/1.0 streaming).
    Close,
}

macro_rules! statuses {
    ($($code:literal => $reason:literal,)*) => {
        /// Reason phrase of every status code registered by RFC 9110 (plus
        /// 425, 428, 429, 431, 451, 511 from their RFCs); "Unknown" otherwise.
        pub fn reason_phrase(status: u16) -> &'static str {
            match status {
                $($code => $reason,)*
                _ => "Unknown",
            }
        }

        /// Precomputed `HTTP/1.1 <code> <reason>\r\n` for known codes.
        fn status_line(status: u16) -> Option<&'static [u8]> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

statuses! {
    100 => "Continue",
    101 => "Switching Protocols",
    200 => "OK",
    201 => "Created",
    202 => "Accepted",
    203 => "Non-Authoritative Information",
    204 => "No Content",
    205 => "Reset Content",
    206 => "Partial Content",
    300 => "Multiple Choices",
    301 => "Moved Permanently",
    302 => "Found",
    303 => "See Other",
    304 => "Not Modified",
    305 => "Use Proxy",
    306 => "Unused",
    307 => "Temporary Redirect",
    308 => "Permanent Redirect",
    400 => "Bad Request",
    401 => "Unauthorized",
    402 => "Payment Required",
    403 => "Forbidden",
    404 => "Not Found",
    405 => "Method Not Allowed",
    406 => "Not Acceptable",
    407 => "Proxy Authentication Required",
    408 => "Request Timeout",
    409 => "Conflict",
    410 => "Gone",
    411 => "Length Required",
    412 => "Precondition Failed",
    413 => "Content Too Large",
    414 => "URI Too Long",
    415 => "Unsupported Media Type",
    416 => "Range Not Satisfiable",
    417 => "Expectation Failed",
    421 => "Misdirected Request",
    422 => "Unprocessable Content",
    425 => "Too Early",
    426 => "Upgrade Required",
    428 => "Precondition Required",
    429 => "Too Many Requests",
    431 => "Request Header Fields Too Large",
    451 => "Unavailable For Legal Reasons",
    500 => "Internal Server Error",
    501 => "Not Implemented",
    502 => "Bad Gateway",
    503 => "Service Unavailable",
    504 => "Gateway Timeout",
    505 => "HTTP Version Not Supported",
    511 => "Network Authentication Required",
}

/// The decimal form of `n`, written into `buf` (no allocation).
pub fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// Append the decimal form of `n`.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_u64(n, &mut buf).as_bytes());
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    match status_line(status) {
        Some(line) => out.extend_from_slice(line),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            write_u64(out, u64::from(status));
            out.push(b' ');
            out.extend_from_slice(reason_phrase(status).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// True if `name: value` can be sent as is: a token name and a value without
/// CR, LF, NUL or other CTLs (except HTAB). Anything else would let an app
/// split the response or corrupt the stream.
pub fn valid_header(name: &str, value: &[u8]) -> bool {
    super::request::is_token(name.as_bytes())
        && value
            .iter()
            .all(|&b| matches!(b, b'\t' | b' '..=0x7e | 0x80..=0xff))
}

/// Status codes whose responses never have content (RFC 9110 §6.4.1), so no
/// Content-Length / Transfer-Encoding is written.
fn bodyless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Append a status line and headers to `out`.
///
/// Written in this order: status line, `Server` and `Date` (unless the app set
/// its own, which then appear in the app's position), the app's headers in
/// order (minus `Content-Length`, `Transfer-Encoding`, `Connection`, and any
/// header that is not valid on the wire, which is dropped with a warning), the
/// framing header, the `Connection` header, and the blank line.
pub fn write_head(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    headers: &[(String, Vec<u8>)],
    framing: ResponseFraming,
    keep_alive: bool,
    date: &[u8],
) {
    let mut app_server = false;
    let mut app_date = false;
    // Everything we write besides the app's fields fits in 192 bytes; one
    // reserve keeps the appends below from each re-checking capacity growth.
    let mut need = 192;
    for (name, value) in headers {
        need += name.len() + value.len() + 4;
        match name.len() {
            4 if name.eq_ignore_ascii_case("date") => app_date = true,
            6 if name.eq_ignore_ascii_case("server") => app_server = true,
            _ => {}
        }
    }
    out.reserve(need);
    write_status_line(out, status);
    if !app_server {
        out.extend_from_slice(b"Server: ferricorn\r\n");
    }
    if !app_date {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }

    for (name, value) in headers {
        let skip = match name.len() {
            10 => name.eq_ignore_ascii_case("connection"),
            14 => name.eq_ignore_ascii_case("content-length"),
            17 => name.eq_ignore_ascii_case("transfer-encoding"),
            _ => false,
        };
        if skip {
            continue;
        }
        if !valid_header(name, value) {
            log::warn!("dropping invalid response header {name:?}");
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }

    if !bodyless(status) {
        match framing {
            ResponseFraming::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                write_u64(out, n);
                out.extend_from_slice(b"\r\n");
            }
            ResponseFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            ResponseFraming::Close => {}
        }
    }

    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a complete small error response (`Connection: close`).
/// The body is the reason phrase and a newline, as `text/plain`.
pub fn write_error_response(out: &mut Vec<u8>, status: u16, date: &[u8]) {
    let reason = reason_phrase(status);
    write_status_line(out, status);
    out.extend_from_slice(b"Server: ferricorn\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    write_u64(out, reason.len() as u64 + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn head(
        version: Version,
        status: u16,
        headers: &[(&str, &str)],
        framing: ResponseFraming,
        keep_alive: bool,
    ) -> String {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut out = b"prefix|".to_vec();
        write_head(
            &mut out, version, status, &headers, framing, keep_alive, DATE,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reason_phrases() {
        let all = [
            100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 306, 307,
            308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
            416, 417, 421, 422, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 511,
        ];
        for s in all {
            assert_ne!(reason_phrase(s), "Unknown", "{s}");
            let line = status_line(s).unwrap();
            assert_eq!(
                line,
                format!("HTTP/1.1 {s} {}\r\n", reason_phrase(s)).as_bytes()
            );
        }
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        for s in [0, 99, 103, 207, 418, 420, 499, 599, 999, 1000] {
            assert_eq!(reason_phrase(s), "Unknown", "{s}");
        }
    }

    #[test]
    fn basic_head() {
        let h = head(
            Version::Http11,
            200,
            &[("Content-Type", "text/plain")],
            ResponseFraming::Length(5),
            true,
        );
        assert_eq!(
            h,
            "prefix|HTTP/1.1 200 OK\r\nServer: ferricorn\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn unknown_status() {
        let h = head(Version::Http11, 299, &[], ResponseFraming::Length(0), true);
        assert!(h.starts_with("prefix|HTTP/1.1 299 Unknown\r\n"), "{h}");
    }

    #[test]
    fn chunked_and_close_framing() {
        let h = head(Version::Http11, 200, &[], ResponseFraming::Chunked, true);
        assert!(
            h.ends_with("GMT\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{h}"
        );
        let h = head(Version::Http10, 200, &[], ResponseFraming::Close, false);
        assert!(h.ends_with("GMT\r\nConnection: close\r\n\r\n"), "{h}");
        assert!(h.starts_with("prefix|HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn connection_header() {
        let h = head(Version::Http11, 200, &[], ResponseFraming::Length(0), false);
        assert!(
            h.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
            "{h}"
        );
        let h = head(Version::Http10, 200, &[], ResponseFraming::Length(0), true);
        assert!(
            h.ends_with("Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"),
            "{h}"
        );
        let h = head(Version::Http11, 200, &[], ResponseFraming::Length(0), true);
        assert!(!h.contains("Connection"), "{h}");
    }

    #[test]
    fn app_framing_headers_dropped() {
        let h = head(
            Version::Http11,
            200,
            &[
                ("content-length", "99"),
                ("X-A", "1"),
                ("Transfer-Encoding", "gzip"),
                ("CONNECTION", "upgrade"),
                ("X-B", "2"),
            ],
            ResponseFraming::Length(3),
            true,
        );
        assert!(
            h.ends_with("GMT\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 3\r\n\r\n"),
            "{h}"
        );
    }

    #[test]
    fn app_date_and_server_win() {
        let h = head(
            Version::Http11,
            200,
            &[("X-A", "1"), ("server", "mine"), ("DATE", "yesterday")],
            ResponseFraming::Length(0),
            true,
        );
        assert_eq!(
            h,
            "prefix|HTTP/1.1 200 OK\r\nX-A: 1\r\nserver: mine\r\nDATE: yesterday\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn invalid_app_headers_dropped() {
        let h = head(
            Version::Http11,
            200,
            &[
                ("X-A", "1\r\nSet-Cookie: evil"),
                ("Bad Name", "x"),
                ("", "x"),
                ("X-B", "a\0b"),
                ("X-C", "ok\tfine"),
            ],
            ResponseFraming::Length(0),
            true,
        );
        assert!(
            h.ends_with("GMT\r\nX-C: ok\tfine\r\nContent-Length: 0\r\n\r\n"),
            "{h}"
        );
    }

    #[test]
    fn bodyless_statuses_have_no_framing() {
        for s in [100, 101, 199, 204, 304] {
            let h = head(Version::Http11, s, &[], ResponseFraming::Length(10), true);
            assert!(!h.contains("Content-Length"), "{s}: {h}");
            let h = head(Version::Http11, s, &[], ResponseFraming::Chunked, true);
            assert!(!h.contains("Transfer-Encoding"), "{s}: {h}");
        }
        let h = head(Version::Http11, 205, &[], ResponseFraming::Length(0), true);
        assert!(h.contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn itoa() {
        for n in [0u64, 1, 9, 10, 99, 100, 12345, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn error_response() {
        let mut out = Vec::new();
        write_error_response(&mut out, 431, DATE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nServer: ferricorn\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n\
             Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
        );
        let mut out = Vec::new();
        write_error_response(&mut out, 400, DATE);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(s.ends_with("Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"));
    }
}
