//! Request-head parsing with limits and RFC 9112 framing rules.
//!
//! The byte-level grammar (request line, header-field syntax, bare CR, CTLs,
//! whitespace before the colon, obs-fold) is checked by `httparse`; this module
//! adds what httparse leaves to the server:
//!
//! * **Limits** (gunicorn's `--limit-request-*`) that fire as soon as the bytes
//!   already received exceed them, even when the head is still incomplete. A
//!   server that waits for the end of the head before checking sizes lets a
//!   client make it buffer without bound.
//! * **Version policy**: HTTP/1.0 and HTTP/1.1 are served, and a higher minor
//!   version of 1 (`HTTP/1.2`) is processed as HTTP/1.1 (RFC 9110 §2.5: the
//!   client speaks at least 1.1); a well-formed `HTTP/x.y` of any other major
//!   version is a 505, anything else in that slot a 400.
//! * **Request-target characters** (RFC 9112 §3.2, RFC 3986): httparse lets
//!   bytes `0x80..=0xFF` through in the target (it tolerates raw UTF-8); the
//!   grammar has no place for them (non-ASCII must be percent-encoded), and
//!   nginx forwards such a target unchanged, so it is a 400 here. The method
//!   and field names are tokens (httparse refuses any non-tchar, high bytes
//!   included); field values keep obs-text (`0x80..=0xFF`, RFC 9110 §5.5).
//! * **Request-target forms** (RFC 9112 §3.2): origin, absolute, asterisk
//!   (OPTIONS only) and authority (CONNECT only).
//! * **CONNECT** (RFC 9110 §9.3.6) asks for a tunnel, which this server does
//!   not make: it is a 501 unless [`Limits::allow_connect`] is set (an app
//!   that handles CONNECT itself opts in with `Server::allow_connect`).
//! * **Message framing** (RFC 9112 §6): these rules are strict on purpose. When a
//!   proxy in front of us and this server disagree on where a body ends, an
//!   attacker can hide a second request inside the first one ("request
//!   smuggling"), so every ambiguous framing is refused rather than guessed.
//! * **Host** (RFC 9112 §3.2): an HTTP/1.1 request without exactly one Host is
//!   a 400, since virtual-host routing would otherwise be ambiguous.

use std::mem::MaybeUninit;

/// Limits a request head must respect (from the settings table).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Max bytes of the request line, CRLF excluded (`--limit-request-line`, 0 = 8190 cap... see docs).
    pub request_line: usize,
    /// Max number of header fields (`--limit-request-fields`).
    pub fields: usize,
    /// Max bytes of one header line `Name: value` (`--limit-request-field_size`, 0 = unlimited).
    pub field_size: usize,
    /// Max request body bytes (`--limit-request-body`, 0 = unlimited).
    pub body: u64,
    /// Pass CONNECT requests to the app; false: 501 (`Server::allow_connect`).
    pub allow_connect: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head. Header names keep their original case and order.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub path: String,
    pub query: String,
    pub version: Version,
    pub headers: Vec<(String, Vec<u8>)>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub framing: Framing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed syntax; the string names what was wrong (for the log).
    Bad(&'static str),
    RequestLineTooLong,
    TooManyHeaders,
    HeaderTooLarge,
    UnsupportedVersion,
    UnknownTransferCoding,
    BodyTooLarge,
    /// A method the server does not implement (CONNECT, unless allowed).
    MethodNotImplemented,
}

impl ParseError {
    /// The one place that turns a parse error into a status code.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Bad(_) => 400,
            ParseError::RequestLineTooLong => 414,
            ParseError::TooManyHeaders | ParseError::HeaderTooLarge => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnknownTransferCoding | ParseError::MethodNotImplemented => 501,
            ParseError::BodyTooLarge => 413,
        }
    }
}

/// Request line cap used when `Limits::request_line` is 0 (gunicorn's maximum).
pub const DEFAULT_REQUEST_LINE: usize = 8190;
/// Header count used when `Limits::fields` is 0 (gunicorn's `MAX_HEADERS`).
pub const MAX_FIELDS: usize = 32768;
/// Per-field size assumed for the total head cap when `Limits::field_size` is 0.
pub const DEFAULT_FIELD_SIZE: usize = 8190;

/// Header slots kept on the stack; more are only allocated when a request
/// actually has more than this many fields.
const STACK_HEADERS: usize = 64;

/// `Limits` with the "0 means default" conventions resolved.
#[derive(Clone, Copy)]
struct Eff {
    request_line: usize,
    fields: usize,
    /// 0 = unlimited.
    field_size: usize,
    /// Total head size cap.
    head: usize,
    body: u64,
    allow_connect: bool,
}

impl Eff {
    fn new(l: &Limits) -> Eff {
        let request_line = if l.request_line == 0 {
            DEFAULT_REQUEST_LINE
        } else {
            l.request_line
        };
        let fields = if l.fields == 0 { MAX_FIELDS } else { l.fields };
        let fs = if l.field_size == 0 {
            DEFAULT_FIELD_SIZE
        } else {
            l.field_size
        };
        let head = request_line
            .saturating_add(2)
            .saturating_add(fields.saturating_mul(fs.saturating_add(2)))
            .saturating_add(2);
        Eff {
            request_line,
            fields,
            field_size: l.field_size,
            head,
            body: l.body,
            allow_connect: l.allow_connect,
        }
    }
}

/// Parse a request head at the start of `buf`.
/// Ok(None): incomplete, read more (the caller enforces the overall head-size cap by
/// calling with the whole buffer; this function must itself return the limit errors as
/// soon as the bytes seen already exceed a limit, even when the head is incomplete).
/// Ok(Some((head, n))): head occupies `buf[..n]`.
///
/// Limits (see `Limits`): `request_line` 0 means 8190; `fields` 0 means 32768;
/// `field_size` 0 means unlimited (8190 is then assumed for the total head cap
/// `request_line + 2 + fields * (field_size + 2) + 2`). A header line's size is its
/// raw length from the first byte of the name to the last non-whitespace byte of
/// the value (so `Name: value` for the usual single space).
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, ParseError> {
    parse_head_reusing(buf, limits, &mut None)
}

/// [`parse_head`], refilling `spare` (a `Head` from an earlier request on the
/// same connection) instead of allocating: its strings and header entries
/// keep their capacity, so a keep-alive connection parses without touching
/// the allocator once warm. `spare` is consumed when a head is returned.
pub fn parse_head_reusing(
    buf: &[u8],
    limits: &Limits,
    spare: &mut Option<Head>,
) -> Result<Option<(Head, usize)>, ParseError> {
    let eff = Eff::new(limits);
    if eff.fields <= STACK_HEADERS {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        return parse_with(buf, &eff, &mut slots[..eff.fields], spare);
    }
    // Common case first: most requests fit in the stack array. Only when
    // httparse runs out of slots do we pay for a heap array of the full size.
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
    match parse_with(buf, &eff, &mut slots, spare) {
        Err(ParseError::TooManyHeaders) => {
            let mut heap = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); eff.fields];
            parse_with(buf, &eff, &mut heap, spare)
        }
        other => other,
    }
}

fn refill(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

fn parse_with<'b>(
    buf: &'b [u8],
    eff: &Eff,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    spare: &mut Option<Head>,
) -> Result<Option<(Head, usize)>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            scan_partial(buf, eff)?;
            return Ok(None);
        }
        Err(httparse::Error::Version) => {
            return match version_error(buf, eff)? {
                VersionError::Partial => Ok(None),
                VersionError::HigherMinor(at) => parse_as_http11(buf, at, eff, slots.len(), spare),
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(e) => {
            // A limit already exceeded by the bytes seen is reported first, so a
            // huge garbage line gets the same answer however it is split.
            scan_partial(buf, eff)?;
            return Err(ParseError::Bad(match e {
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                httparse::Error::NewLine => "invalid line ending",
                httparse::Error::Token => "invalid request line",
                _ => "malformed request head",
            }));
        }
    };
    // Complete: all of these were filled in by httparse.
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let version = if req.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };

    // ---- limits on a complete head (computed from offsets, no rescanning) ----
    if n > eff.head {
        return Err(ParseError::HeaderTooLarge);
    }
    let base = buf.as_ptr() as usize;
    let line_start = method.as_ptr() as usize - base;
    // method SP target SP "HTTP/1.x": the version is exactly 8 bytes.
    let line_end = target.as_ptr() as usize - base + target.len() + 1 + 8;
    if line_end - line_start > eff.request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    let headers = &*req.headers;
    if headers.len() > eff.fields {
        return Err(ParseError::TooManyHeaders);
    }
    if eff.field_size != 0 {
        for h in headers {
            if raw_field_len(buf, h) > eff.field_size {
                return Err(ParseError::HeaderTooLarge);
            }
        }
    }

    if !target.is_ascii() {
        return Err(ParseError::Bad("non-ASCII byte in request target"));
    }
    let (path, query) = split_target(method, target)?;
    if method == "CONNECT" && !eff.allow_connect {
        return Err(ParseError::MethodNotImplemented);
    }

    // ---- one pass over the fields: copy them out and collect framing facts ----
    let mut out = match spare {
        Some(h) => std::mem::take(&mut h.headers),
        None => Vec::with_capacity(headers.len()),
    };
    let mut used = 0usize;
    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te = TeState::default();
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name;
        let value = h.value;
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => hosts += 1,
            6 if name.eq_ignore_ascii_case("expect")
                && value.eq_ignore_ascii_case(b"100-continue") =>
            {
                expect_continue = true;
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for tok in list_elements(value) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                for el in value.split(|&b| b == b',') {
                    let v = parse_content_length(trim_ows(el))?;
                    match content_length {
                        Some(prev) if prev != v => {
                            return Err(ParseError::Bad("conflicting Content-Length values"));
                        }
                        _ => content_length = Some(v),
                    }
                }
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => te.add(value)?,
            _ => {}
        }
        match out.get_mut(used) {
            Some((n, v)) => {
                refill(n, name);
                v.clear();
                v.extend_from_slice(value);
            }
            None => out.push((name.to_owned(), value.to_vec())),
        }
        used += 1;
    }
    out.truncate(used);

    // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request that lacks
    // a Host field, and to any request with more than one Host field line.
    if hosts > 1 {
        return Err(ParseError::Bad("more than one Host header"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(ParseError::Bad("missing Host header"));
    }

    // ---- framing: RFC 9112 §6.1-6.3 ----
    // 1. Transfer-Encoding and Content-Length together: §6.1 says TE overrides
    //    CL and that such a message "ought to be handled as an error"; it is the
    //    textbook request-smuggling vector (a front end using CL and us using TE
    //    would disagree on where the body ends), so it is a 400.
    // 2. Transfer-Encoding in an HTTP/1.0 request: §6.1 says the framing is
    //    faulty (1.0 has no chunked coding); 400 and close.
    // 3. Transfer-Encoding: the codings listed across all TE field lines, in
    //    order. `chunked` MUST NOT be applied more than once (§7.1) -> 400.
    //    The final coding must be chunked or the length cannot be determined
    //    (§6.3 item 4); we implement no other coding, so any list other than
    //    exactly `chunked` (e.g. `gzip, chunked`, `gzip`, `identity`) is a 501
    //    "coding not understood" (§6.1).
    // 4. Content-Length: 1*DIGIT. A list (`5, 5`) or repeated field lines are
    //    accepted only if all values are equal (§6.3 item 5), otherwise 400;
    //    a value that does not fit in u64 is a 400. Over the body limit -> 413
    //    before any body byte is read.
    // 5. Neither: a request has no body (§6.3 item 7).
    let framing = if te.present {
        if content_length.is_some() {
            return Err(ParseError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if version == Version::Http10 {
            return Err(ParseError::Bad("Transfer-Encoding in HTTP/1.0 request"));
        }
        if te.chunked > 1 {
            return Err(ParseError::Bad("chunked applied more than once"));
        }
        if te.codings == 0 {
            return Err(ParseError::Bad("empty Transfer-Encoding"));
        }
        if te.codings != 1 || te.chunked != 1 {
            return Err(ParseError::UnknownTransferCoding);
        }
        Framing::Chunked
    } else if let Some(len) = content_length {
        if eff.body != 0 && len > eff.body {
            return Err(ParseError::BodyTooLarge);
        }
        Framing::Length(len)
    } else {
        Framing::None
    };

    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };

    let expect_continue = expect_continue && version == Version::Http11;
    let head = match spare.take() {
        Some(mut h) => {
            refill(&mut h.method, method);
            refill(&mut h.target, target);
            refill(&mut h.path, path);
            refill(&mut h.query, query);
            h.version = version;
            h.headers = out;
            h.keep_alive = keep_alive;
            h.expect_continue = expect_continue;
            h.framing = framing;
            h
        }
        None => Head {
            method: method.to_owned(),
            target: target.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            version,
            headers: out,
            keep_alive,
            expect_continue,
            framing,
        },
    };
    Ok(Some((head, n)))
}

/// Transfer-Encoding codings seen so far, across all TE field lines.
#[derive(Default)]
struct TeState {
    present: bool,
    codings: usize,
    chunked: usize,
}

impl TeState {
    fn add(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.present = true;
        for el in list_elements(value) {
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let name = trim_ows(el.split(|&b| b == b';').next().unwrap_or(el));
            if !is_token(name) {
                return Err(ParseError::Bad("invalid transfer coding"));
            }
            self.codings += 1;
            // `chunked` takes no parameters; `chunked;x=y` is an unknown coding.
            if el.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            }
        }
        Ok(())
    }
}

/// Non-empty, OWS-trimmed elements of a comma-separated list (RFC 9110 §5.6.1:
/// recipients ignore empty elements).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `Content-Length = 1*DIGIT`; anything else (sign, inner space, empty,
/// overflow) is a 400.
fn parse_content_length(s: &[u8]) -> Result<u64, ParseError> {
    if s.is_empty() {
        return Err(ParseError::Bad("empty Content-Length"));
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(ParseError::Bad("invalid Content-Length"));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::Bad("Content-Length overflow"))?;
    }
    Ok(v)
}

/// RFC 9110 §5.6.2 tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Size of a complete header line as received: first byte of the name through
/// the last byte of the value (httparse has trimmed OWS around the value), so
/// `Name: value` for the usual single space. `scan_partial` measures the same.
fn raw_field_len(buf: &[u8], h: &httparse::Header<'_>) -> usize {
    if h.value.is_empty() {
        // `Name:` (any whitespace after the colon is trailing OWS)
        return h.name.len() + 1;
    }
    let base = buf.as_ptr() as usize;
    let start = h.name.as_ptr() as usize - base;
    h.value.as_ptr() as usize - base + h.value.len() - start
}

/// Split the request-target into (path, query) according to its form
/// (RFC 9112 §3.2). The path is not percent-decoded.
fn split_target<'a>(method: &str, target: &'a str) -> Result<(&'a str, &'a str), ParseError> {
    if target.contains('#') {
        return Err(ParseError::Bad("fragment in request target"));
    }
    if method == "CONNECT" {
        // authority-form = uri-host ":" port, and only for CONNECT.
        return match target.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && !host.contains(['/', '?', '@']) =>
            {
                Ok(("", ""))
            }
            _ => Err(ParseError::Bad("CONNECT needs an authority-form target")),
        };
    }
    if target == "*" {
        // asterisk-form, only for a server-wide OPTIONS.
        return if method == "OPTIONS" {
            Ok(("*", ""))
        } else {
            Err(ParseError::Bad(
                "asterisk-form target only allowed for OPTIONS",
            ))
        };
    }
    if target.starts_with('/') {
        // origin-form
        return Ok(target.split_once('?').unwrap_or((target, "")));
    }
    // absolute-form: scheme "://" authority path-abempty [ "?" query ]
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(ParseError::Bad("invalid request target"));
    };
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(ParseError::Bad("invalid request target"));
    }
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if auth_end == 0 {
        return Err(ParseError::Bad("absolute-form target without authority"));
    }
    let rest = &rest[auth_end..];
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok((if path.is_empty() { "/" } else { path }, query))
}

/// Offset of the request line: httparse skips empty lines before it
/// (RFC 9112 §2.2 allows a server to ignore at least one).
fn request_line_start(buf: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        match &buf[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            _ => return pos,
        }
    }
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// Length of the line `buf[start..lf]` without a CR before the LF.
fn line_len(buf: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && buf[lf - 1] == b'\r' {
        lf - 1 - start
    } else {
        lf - start
    }
}

/// Check the limits against an incomplete (or malformed) head, so that they
/// fire before the head is complete. Cheap enough: only runs on the rare
/// partial reads, and the total cap bounds the rescanning.
fn scan_partial(buf: &[u8], eff: &Eff) -> Result<(), ParseError> {
    let start = request_line_start(buf);
    let Some(lf) = find_lf(buf, start) else {
        // Request line still in progress: allow for a CR we have not seen yet
        // being part of the terminator.
        let mut len = buf.len() - start;
        if buf.last() == Some(&b'\r') {
            len -= 1;
        }
        if len > eff.request_line {
            return Err(ParseError::RequestLineTooLong);
        }
        if buf.len() > eff.head {
            return Err(ParseError::HeaderTooLarge);
        }
        return Ok(());
    };
    if line_len(buf, start, lf) > eff.request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    let mut pos = lf + 1;
    let mut count = 0usize;
    while pos < buf.len() {
        if matches!(buf[pos], b'\r' | b'\n') {
            // End of the head (or its first byte): no more fields.
            break;
        }
        count += 1;
        if count > eff.fields {
            return Err(ParseError::TooManyHeaders);
        }
        match find_lf(buf, pos) {
            Some(lf) => {
                let mut len = line_len(buf, pos, lf);
                while len > 0 && matches!(buf[pos + len - 1], b' ' | b'\t') {
                    len -= 1;
                }
                if eff.field_size != 0 && len > eff.field_size {
                    return Err(ParseError::HeaderTooLarge);
                }
                pos = lf + 1;
            }
            None => {
                // Field line in progress: its bytes so far (minus a possible
                // CR and trailing OWS that may still turn out to end it).
                let mut len = buf.len() - pos;
                while len > 0 && matches!(buf[pos + len - 1], b' ' | b'\t' | b'\r') {
                    len -= 1;
                }
                if eff.field_size != 0 && len > eff.field_size {
                    return Err(ParseError::HeaderTooLarge);
                }
                break;
            }
        }
    }
    if buf.len() > eff.head {
        return Err(ParseError::HeaderTooLarge);
    }
    Ok(())
}

/// What [`version_error`] found in the version slot when it is not an error.
enum VersionError {
    /// A prefix of `HTTP/d.d` on an unfinished line: read more.
    Partial,
    /// `HTTP/1.d` with `d >= 2`, whose minor digit is at this offset.
    HigherMinor(usize),
}

/// httparse reports `Error::Version` for any version other than `HTTP/1.0` or
/// `HTTP/1.1`, including garbage in that slot. Tell them apart: `HTTP/1.d`
/// (d >= 2) is served as 1.1, any other well-formed `HTTP/d.d` is 505,
/// anything else 400; a prefix of `HTTP/d.d` on an unfinished line means
/// "read more". A non-ASCII target is a 400 before the version is looked at,
/// as it is when the version is one we serve.
fn version_error(buf: &[u8], eff: &Eff) -> Result<VersionError, ParseError> {
    scan_partial(buf, eff)?;
    let start = request_line_start(buf);
    let lf = find_lf(buf, start);
    let line = match lf {
        Some(lf) => &buf[start..start + line_len(buf, start, lf)],
        // A trailing CR may be the start of the terminator.
        None => buf[start..].strip_suffix(b"\r").unwrap_or(&buf[start..]),
    };
    // httparse already accepted `method SP target SP`; the version follows the
    // second space.
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(t), Some(v)) => (t, v),
        _ => return Err(ParseError::Bad("invalid request line")),
    };
    if !target.is_ascii() {
        return Err(ParseError::Bad("non-ASCII byte in request target"));
    }
    let matches_pattern = |v: &[u8]| {
        v.iter().zip(b"HTTP/d.d").all(|(&b, &p)| match p {
            b'd' => b.is_ascii_digit(),
            _ => b == p,
        })
    };
    match lf {
        None if version.len() <= 8 && matches_pattern(version) => Ok(VersionError::Partial),
        Some(_) if version.len() == 8 && matches_pattern(version) => {
            if version[5] == b'1' {
                // httparse took 1.0 and 1.1, so the minor digit is 2..=9.
                let at = version.as_ptr() as usize - buf.as_ptr() as usize + 7;
                Ok(VersionError::HigherMinor(at))
            } else {
                Err(ParseError::UnsupportedVersion)
            }
        }
        _ => Err(ParseError::Bad("invalid HTTP version")),
    }
}

/// Parse a head whose request line says `HTTP/1.d` (d >= 2) as HTTP/1.1
/// (RFC 9110 §2.5): a copy of `buf` with the minor digit at `at` replaced
/// by `1`, same length, so every offset and limit is unchanged. Rare enough
/// that the copy does not matter; the `Head` owns its strings, so nothing
/// borrows from the copy afterwards.
fn parse_as_http11(
    buf: &[u8],
    at: usize,
    eff: &Eff,
    nslots: usize,
    spare: &mut Option<Head>,
) -> Result<Option<(Head, usize)>, ParseError> {
    let mut copy = buf.to_vec();
    copy[at] = b'1';
    let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); nslots];
    parse_with(&copy, eff, &mut slots, spare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            body: 0,
            allow_connect: false,
        }
    }

    fn parse(s: &[u8]) -> Result<Option<(Head, usize)>, ParseError> {
        parse_head(s, &lim())
    }

    fn ok(s: &[u8]) -> Head {
        let (h, n) = parse(s).unwrap().expect("complete");
        assert_eq!(n, s.len(), "whole input is the head");
        h
    }

    fn err(s: &[u8]) -> ParseError {
        parse(s).expect_err("should fail")
    }

    fn bad(s: &[u8]) {
        let e = err(s);
        assert!(matches!(e, ParseError::Bad(_)), "{e:?} for {s:?}");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn simple_get() {
        let h = ok(b"GET /p/a%20b?x=1&y HTTP/1.1\r\nHost: a\r\nX-Foo: bar \r\n\r\n");
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/p/a%20b?x=1&y");
        assert_eq!(h.path, "/p/a%20b");
        assert_eq!(h.query, "x=1&y");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(
            h.headers,
            vec![
                ("Host".to_string(), b"a".to_vec()),
                ("X-Foo".to_string(), b"bar".to_vec())
            ]
        );
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.framing, Framing::None);
    }

    #[test]
    fn head_length_excludes_body() {
        let (h, n) = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET")
            .unwrap()
            .unwrap();
        assert_eq!(n, 47);
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn incomplete_at_every_split() {
        let req = b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";
        for i in 0..req.len() {
            assert_eq!(parse(&req[..i]).unwrap().map(|x| x.1), None, "split {i}");
        }
        assert!(parse(req).unwrap().is_some());
    }

    #[test]
    fn leading_empty_lines_skipped() {
        let h = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path, "/");
    }

    #[test]
    fn bare_lf_line_endings_accepted_in_head() {
        let h = ok(b"GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(h.headers.len(), 1);
    }

    #[test]
    fn keeps_header_case_and_order() {
        let h = ok(b"GET / HTTP/1.1\r\nx-B: 1\r\nHost: a\r\nX-b: 2\r\n\r\n");
        let names: Vec<_> = h.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-B", "Host", "X-b"]);
    }

    #[test]
    fn empty_header_value() {
        let h = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:   \r\n\r\n");
        assert_eq!(h.headers[1], ("X-Empty".to_string(), Vec::new()));
    }

    #[test]
    fn obs_text_in_value_allowed() {
        let h = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n");
        assert_eq!(h.headers[1].1, b"caf\xc3\xa9");
    }

    // ---- versions ----

    #[test]
    fn http10() {
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, Version::Http10);
        assert!(!h.keep_alive);
    }

    #[test]
    fn unsupported_versions_are_505() {
        for v in [
            "HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9", "HTTP/2.1", "HTTP/0.1",
        ] {
            let req = format!("GET / {v}\r\nHost: a\r\n\r\n");
            assert_eq!(err(req.as_bytes()), ParseError::UnsupportedVersion, "{v}");
            assert_eq!(err(req.as_bytes()).status(), 505);
            // Also when the rest of the head has not arrived yet.
            let line = format!("GET / {v}\r\n");
            assert_eq!(err(line.as_bytes()), ParseError::UnsupportedVersion, "{v}");
        }
    }

    #[test]
    fn partial_unsupported_version_waits() {
        assert!(parse(b"GET / HTTP/2").unwrap().is_none());
        assert!(parse(b"GET / HTTP/2.").unwrap().is_none());
        assert!(parse(b"GET / HTTP/2.0").unwrap().is_none());
        assert!(parse(b"GET / HTTP/2.0\r").unwrap().is_none());
    }

    #[test]
    fn garbage_versions_are_400() {
        bad(b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/11.1\r\nHost: a\r\n\r\n");
        bad(b"GET / http/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / FOO/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/2.0x\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/a.b\r\n");
        bad(b"GET / XTTP");
        bad(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET /\r\n\r\n");
    }

    #[test]
    fn garbage_request_lines_are_400() {
        bad(b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
        bad(b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"hello world\r\n\r\n");
    }

    #[test]
    fn higher_minor_versions_of_1_are_served_as_http11() {
        // RFC 9110 §2.5: a recipient that implements 1.1 processes 1.x (x > 1)
        // as 1.1: persistent by default, Host required, chunked allowed.
        for v in ["HTTP/1.2", "HTTP/1.9"] {
            let req = format!("POST /a?b {v}\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
            let h = ok(req.as_bytes());
            assert_eq!(h.version, Version::Http11, "{v}");
            assert_eq!((h.method.as_str(), h.target.as_str()), ("POST", "/a?b"));
            assert_eq!((h.path.as_str(), h.query.as_str()), ("/a", "b"));
            assert!(h.keep_alive, "{v}");
            assert_eq!(h.framing, Framing::Chunked);
            assert_eq!(h.headers[0], ("Host".to_string(), b"a".to_vec()));
            bad(format!("GET / {v}\r\n\r\n").as_bytes()); // no Host
            let close = format!("GET / {v}\r\nHost: a\r\nConnection: close\r\n\r\n");
            assert!(!ok(close.as_bytes()).keep_alive);
            // Incomplete: read more, at every split.
            let full = format!("GET / {v}\r\nHost: a\r\n\r\n");
            for i in 0..full.len() {
                assert!(
                    parse(&full.as_bytes()[..i]).unwrap().is_none(),
                    "{v} split {i}"
                );
            }
        }
        // The head length is that of the original bytes; pipelined data after it stays.
        let (h, n) = parse(b"GET / HTTP/1.2\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.version, n), (Version::Http11, 27));
        // Limits still apply to the original line.
        let l = Limits {
            request_line: 13,
            ..lim()
        };
        assert_eq!(
            parse_head(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", &l).unwrap_err(),
            ParseError::RequestLineTooLong
        );
        // More fields than the stack array: the heap fallback works too.
        let mut many = String::from("GET / HTTP/1.3\r\nHost: a\r\n");
        for i in 0..80 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let h = ok(many.as_bytes());
        assert_eq!((h.version, h.headers.len()), (Version::Http11, 81));
    }

    #[test]
    fn non_ascii_in_the_request_target_is_400() {
        // RFC 9112 §3.2 / RFC 3986: non-ASCII must be percent-encoded. httparse
        // alone lets these through (it tolerates raw UTF-8 in the path).
        for t in [
            &b"/\xc3\xa0%20k"[..],
            b"/\x80",
            b"/\xff",
            b"/a?q=\xc3\xa9",
            b"http://h\xc3\xa0st/",
            b"http://h/\xe2\x82\xac",
        ] {
            for v in ["HTTP/1.0", "HTTP/1.1", "HTTP/1.2", "HTTP/2.0"] {
                let req = [b"GET ", t, b" ", v.as_bytes(), b"\r\nHost: a\r\n\r\n"].concat();
                // Invalid UTF-8 is already refused by httparse, valid UTF-8 here.
                bad(&req);
            }
        }
        assert_eq!(
            err(b"GET /\xc3\xa0%20k HTTP/1.0\r\n\r\n"),
            ParseError::Bad("non-ASCII byte in request target")
        );
        // Percent-encoded, the same target is fine and is not decoded.
        let h = ok(b"GET /%C3%A0%20k HTTP/1.0\r\n\r\n");
        assert_eq!(h.path, "/%C3%A0%20k");
    }

    #[test]
    fn non_ascii_in_method_version_and_field_names_is_400() {
        bad(b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"\xffGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET\xa0/ HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.\xb1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP\xc2\xa0/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa0: v\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\n\x80: v\r\n\r\n");
        // obs-text stays allowed in field values (RFC 9110 §5.5).
        let h = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: \xc3\xa0\xff\x80\r\n\r\n");
        assert_eq!(h.headers[1].1, b"\xc3\xa0\xff\x80");
    }

    #[test]
    fn connect_is_501_unless_allowed() {
        let req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let e = err(req);
        assert_eq!(e, ParseError::MethodNotImplemented);
        assert_eq!(e.status(), 501);
        let allow = Limits {
            allow_connect: true,
            ..lim()
        };
        let (h, _) = parse_head(req, &allow).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("CONNECT", "example.com:443")
        );
        assert_eq!((h.path.as_str(), h.query.as_str()), ("", ""));
        // Only the exact method (methods are case-sensitive, RFC 9110 §9.1).
        let h = ok(b"connect / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, "connect");
        // A malformed CONNECT is still a 400 either way.
        bad(b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn methods_kept_as_given() {
        let h = ok(b"pAtCh / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, "pAtCh");
        let h = ok(b"X-CUSTOM~ / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, "X-CUSTOM~");
    }

    // ---- header syntax ----

    #[test]
    fn whitespace_before_colon_is_400() {
        bad(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n");
    }

    #[test]
    fn bare_cr_is_400() {
        bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n");
    }

    #[test]
    fn control_bytes_are_400() {
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: a\r\n\r\n");
        // long values exercise the SIMD paths of httparse
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        req.extend_from_slice(&[b'a'; 100]);
        req.push(0x7f);
        req.extend_from_slice(&[b'a'; 100]);
        req.extend_from_slice(b"\r\n\r\n");
        bad(&req);
        // HTAB is allowed in values
        let h = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n");
        assert_eq!(h.headers[1].1, b"a\tb");
    }

    #[test]
    fn non_token_header_names_are_400() {
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\"Y: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX/Y: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
    }

    #[test]
    fn obs_fold_is_400() {
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n");
    }

    #[test]
    fn host_rules() {
        bad(b"GET / HTTP/1.1\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nX: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
        bad(b"GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n");
        // HTTP/1.0 may omit Host
        ok(b"GET / HTTP/1.0\r\n\r\n");
        // absolute-form still needs Host in 1.1
        bad(b"GET http://a/ HTTP/1.1\r\n\r\n");
        ok(b"GET / HTTP/1.1\r\nhOsT: a\r\n\r\n");
    }

    // ---- targets ----

    fn target(method: &str, t: &str) -> Result<(String, String), ParseError> {
        let req = format!("{method} {t} HTTP/1.1\r\nHost: a\r\n\r\n");
        // Target forms only; whether CONNECT is served is tested on its own.
        let l = Limits {
            allow_connect: true,
            ..lim()
        };
        parse_head(req.as_bytes(), &l).map(|r| {
            let h = r.unwrap().0;
            assert_eq!(h.target, t);
            (h.path, h.query)
        })
    }

    fn pq(p: &str, q: &str) -> Result<(String, String), ParseError> {
        Ok((p.to_string(), q.to_string()))
    }

    #[test]
    fn origin_form() {
        assert_eq!(target("GET", "/"), pq("/", ""));
        assert_eq!(target("GET", "/a/b"), pq("/a/b", ""));
        assert_eq!(target("GET", "/a?"), pq("/a", ""));
        assert_eq!(target("GET", "/a?b?c=d"), pq("/a", "b?c=d"));
        assert_eq!(target("GET", "/%2F%20x"), pq("/%2F%20x", ""));
        assert_eq!(target("GET", "//x"), pq("//x", ""));
    }

    #[test]
    fn absolute_form() {
        assert_eq!(target("GET", "http://h:8080/p?x=1"), pq("/p", "x=1"));
        assert_eq!(target("GET", "http://h"), pq("/", ""));
        assert_eq!(target("GET", "http://h?x"), pq("/", "x"));
        assert_eq!(target("GET", "HTTPS://h/a/b"), pq("/a/b", ""));
        assert_eq!(target("OPTIONS", "http://h"), pq("/", ""));
        assert!(matches!(
            target("GET", "http:///p"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            target("GET", "1http://h/"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            target("GET", "ht tp://h/"),
            Err(ParseError::Bad(_))
        ));
    }

    #[test]
    fn asterisk_form() {
        assert_eq!(target("OPTIONS", "*"), pq("*", ""));
        assert!(matches!(target("GET", "*"), Err(ParseError::Bad(_))));
        assert!(matches!(target("OPTIONS", "*x"), Err(ParseError::Bad(_))));
    }

    #[test]
    fn authority_form() {
        assert_eq!(target("CONNECT", "example.com:443"), pq("", ""));
        assert_eq!(target("CONNECT", "[::1]:443"), pq("", ""));
        assert!(matches!(target("CONNECT", "/x"), Err(ParseError::Bad(_))));
        assert!(matches!(
            target("CONNECT", "example.com"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(target("CONNECT", "h:x"), Err(ParseError::Bad(_))));
        assert!(matches!(
            target("CONNECT", "u@h:1"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            target("GET", "example.com:443"),
            Err(ParseError::Bad(_))
        ));
    }

    #[test]
    fn other_targets_are_400() {
        for t in ["x", "?a", "a/b", "/a#frag", "http://h/#f"] {
            assert!(matches!(target("GET", t), Err(ParseError::Bad(_))), "{t}");
        }
    }

    // ---- framing ----

    fn framing(headers: &str) -> Result<Framing, ParseError> {
        let req = format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        parse(req.as_bytes()).map(|r| r.unwrap().0.framing)
    }

    fn is_bad<T: std::fmt::Debug>(r: Result<T, ParseError>) -> bool {
        matches!(r, Err(ParseError::Bad(_)))
    }

    #[test]
    fn content_length() {
        assert_eq!(framing("Content-Length: 0\r\n"), Ok(Framing::Length(0)));
        assert_eq!(framing("Content-Length: 10\r\n"), Ok(Framing::Length(10)));
        assert_eq!(framing("content-length:007\r\n"), Ok(Framing::Length(7)));
        assert_eq!(framing("Content-Length: 5, 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(
            framing("Content-Length: 5,5 ,  5\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("Content-Length: 18446744073709551615\r\n"),
            Ok(Framing::Length(u64::MAX))
        );
    }

    #[test]
    fn bad_content_length() {
        for v in [
            "",
            "-1",
            "+1",
            "1 2",
            "0x10",
            "1.0",
            "abc",
            "5, 6",
            "5,",
            ",5",
            "5,,5",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert!(
                is_bad(framing(&format!("Content-Length: {v}\r\n"))),
                "{v:?}"
            );
        }
        assert!(is_bad(framing(
            "Content-Length: 5\r\nContent-Length: 6\r\n"
        )));
    }

    #[test]
    fn body_limit() {
        let l = Limits { body: 10, ..lim() };
        let r = parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
            &l,
        );
        assert_eq!(r.unwrap_err(), ParseError::BodyTooLarge);
        assert_eq!(ParseError::BodyTooLarge.status(), 413);
        let r = parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
            &l,
        );
        assert_eq!(r.unwrap().unwrap().0.framing, Framing::Length(10));
        // chunked bodies are limited by the decoder
        let r = parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            &l,
        );
        assert_eq!(r.unwrap().unwrap().0.framing, Framing::Chunked);
    }

    #[test]
    fn transfer_encoding() {
        assert_eq!(
            framing("Transfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("transfer-encoding: CHUNKED \r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("Transfer-Encoding: , chunked\r\n"),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn te_and_cl_is_400() {
        assert_eq!(
            framing("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
            Err(ParseError::Bad("both Content-Length and Transfer-Encoding"))
        );
        assert!(is_bad(framing(
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"
        )));
        assert!(is_bad(framing(
            "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n"
        )));
    }

    #[test]
    fn te_chunked_twice_is_400() {
        assert!(is_bad(framing("Transfer-Encoding: chunked, chunked\r\n")));
        assert!(is_bad(framing(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        )));
        assert!(is_bad(framing(
            "Transfer-Encoding: chunked, gzip, chunked\r\n"
        )));
    }

    #[test]
    fn te_other_codings_are_501() {
        for v in [
            "gzip",
            "deflate",
            "compress",
            "identity",
            "x-unknown",
            "gzip, chunked",
            "chunked, gzip",
            "chunked;foo=bar",
            "gzip;q=1",
        ] {
            let r = framing(&format!("Transfer-Encoding: {v}\r\n"));
            assert_eq!(r, Err(ParseError::UnknownTransferCoding), "{v}");
        }
        assert_eq!(
            framing("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Err(ParseError::UnknownTransferCoding)
        );
        assert_eq!(ParseError::UnknownTransferCoding.status(), 501);
    }

    #[test]
    fn te_malformed_is_400() {
        assert!(is_bad(framing("Transfer-Encoding:\r\n")));
        assert!(is_bad(framing("Transfer-Encoding: ,\r\n")));
        assert!(is_bad(framing("Transfer-Encoding: chun ked\r\n")));
        assert!(is_bad(framing("Transfer-Encoding: \"chunked\"\r\n")));
    }

    #[test]
    fn te_in_http10_is_400() {
        bad(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    }

    // ---- connection / expect ----

    fn conn(version: &str, headers: &str) -> Head {
        let req = format!("GET / {version}\r\nHost: a\r\n{headers}\r\n");
        parse(req.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn keep_alive_rules() {
        assert!(conn("HTTP/1.1", "").keep_alive);
        assert!(!conn("HTTP/1.1", "Connection: close\r\n").keep_alive);
        assert!(!conn("HTTP/1.1", "Connection: Upgrade, CLOSE\r\n").keep_alive);
        assert!(!conn("HTTP/1.1", "Connection: x\r\nConnection: close\r\n").keep_alive);
        assert!(conn("HTTP/1.1", "Connection: keep-alive\r\n").keep_alive);
        assert!(conn("HTTP/1.1", "Connection: closed\r\n").keep_alive);
        assert!(!conn("HTTP/1.0", "").keep_alive);
        assert!(conn("HTTP/1.0", "Connection: Keep-Alive\r\n").keep_alive);
        assert!(conn("HTTP/1.0", "Connection: foo , keep-alive\r\n").keep_alive);
        assert!(!conn("HTTP/1.0", "Connection: close\r\n").keep_alive);
        assert!(!conn("HTTP/1.0", "Connection: keep-alive, close\r\n").keep_alive);
    }

    #[test]
    fn expect_continue() {
        assert!(conn("HTTP/1.1", "Expect: 100-continue\r\n").expect_continue);
        assert!(conn("HTTP/1.1", "expect: 100-Continue\r\n").expect_continue);
        assert!(!conn("HTTP/1.1", "Expect: 200-ok\r\n").expect_continue);
        assert!(!conn("HTTP/1.0", "Expect: 100-continue\r\n").expect_continue);
        assert!(!conn("HTTP/1.1", "").expect_continue);
    }

    // ---- limits ----

    #[test]
    fn request_line_limit() {
        let l = Limits {
            request_line: 20,
            ..lim()
        };
        // "GET /xxxxxxxxxxxxxx HTTP/1.1" with target length chosen for 20/21 bytes
        let line20 = format!("GET /{} HTTP/1.1", "x".repeat(6));
        assert_eq!(line20.len(), 20);
        let ok20 = format!("{line20}\r\nHost: a\r\n\r\n");
        assert!(parse_head(ok20.as_bytes(), &l).unwrap().is_some());
        let line21 = format!("GET /{} HTTP/1.1", "x".repeat(7));
        let bad21 = format!("{line21}\r\nHost: a\r\n\r\n");
        assert_eq!(
            parse_head(bad21.as_bytes(), &l).unwrap_err(),
            ParseError::RequestLineTooLong
        );
        assert_eq!(ParseError::RequestLineTooLong.status(), 414);
        // incomplete: fires once more than 20 (+CR) bytes without LF arrived
        assert!(parse_head(line20.as_bytes(), &l).unwrap().is_none());
        assert!(
            parse_head(format!("{line20}\r").as_bytes(), &l)
                .unwrap()
                .is_none()
        );
        let long = format!("GET /{}", "x".repeat(100));
        assert_eq!(
            parse_head(long.as_bytes(), &l).unwrap_err(),
            ParseError::RequestLineTooLong
        );
        // a complete but too long line, rest of head incomplete
        assert_eq!(
            parse_head(format!("{line21}\r\n").as_bytes(), &l).unwrap_err(),
            ParseError::RequestLineTooLong
        );
    }

    #[test]
    fn request_line_zero_means_8190() {
        let l = Limits {
            request_line: 0,
            ..lim()
        };
        let ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(8190 - 14));
        assert!(parse_head(ok.as_bytes(), &l).unwrap().is_some());
        let bad = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(8191 - 14));
        assert_eq!(
            parse_head(bad.as_bytes(), &l).unwrap_err(),
            ParseError::RequestLineTooLong
        );
    }

    fn with_n_headers(n: usize) -> Vec<u8> {
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..n {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    }

    #[test]
    fn field_count_limit() {
        for fields in [1, 5, 64, 65, 100, 200] {
            let l = Limits { fields, ..lim() };
            let (h, _) = parse_head(&with_n_headers(fields), &l).unwrap().unwrap();
            assert_eq!(h.headers.len(), fields);
            let req = with_n_headers(fields + 1);
            assert_eq!(
                parse_head(&req, &l).unwrap_err(),
                ParseError::TooManyHeaders,
                "{fields}"
            );
            // incomplete: the (fields+1)th line has begun
            let cut = req.len() - 4;
            assert_eq!(
                parse_head(&req[..cut], &l).unwrap_err(),
                ParseError::TooManyHeaders,
                "{fields} incomplete"
            );
            // incomplete, exactly `fields` complete lines: still fine
            let req = with_n_headers(fields);
            assert!(parse_head(&req[..req.len() - 1], &l).unwrap().is_none());
        }
        assert_eq!(ParseError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn field_count_zero_means_32768() {
        let l = Limits { fields: 0, ..lim() };
        let (h, _) = parse_head(&with_n_headers(300), &l).unwrap().unwrap();
        assert_eq!(h.headers.len(), 300);
    }

    #[test]
    fn field_size_limit() {
        let l = Limits {
            field_size: 10,
            ..lim()
        };
        // "X-A: 12345" is 10 bytes
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 12345   \r\n\r\n";
        assert!(parse_head(ok, &l).unwrap().is_some());
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nX-Abcdefg:\r\n\r\n";
        assert!(parse_head(ok, &l).unwrap().is_some());
        let bad = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\n\r\n";
        assert_eq!(parse_head(bad, &l).unwrap_err(), ParseError::HeaderTooLarge);
        let bad = b"GET / HTTP/1.1\r\nHost: a\r\nX-Abcdefghijk: 1\r\n\r\n";
        assert_eq!(parse_head(bad, &l).unwrap_err(), ParseError::HeaderTooLarge);
        // incomplete head, the too-long line complete
        let bad = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\n";
        assert_eq!(parse_head(bad, &l).unwrap_err(), ParseError::HeaderTooLarge);
        // incomplete head, the line still in progress
        let bad = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456";
        assert_eq!(parse_head(bad, &l).unwrap_err(), ParseError::HeaderTooLarge);
        let fine = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 12345\r";
        assert!(parse_head(fine, &l).unwrap().is_none());
        // every split of an acceptable head is Ok(None), of a bad one never
        // anything but Ok(None) or HeaderTooLarge
        for i in 0..ok.len() {
            assert!(parse_head(&ok[..i], &l).unwrap().is_none(), "{i}");
        }
        // 0 = unlimited
        let l = Limits {
            field_size: 0,
            ..lim()
        };
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(20000)
        );
        assert!(parse_head(big.as_bytes(), &l).unwrap().is_some());
    }

    #[test]
    fn total_head_cap() {
        // field_size 0 (unlimited) -> 8190 assumed: cap = 30 + 2 + 2*(8192) + 2
        let l = Limits {
            request_line: 30,
            fields: 2,
            field_size: 0,
            body: 0,
            allow_connect: false,
        };
        let cap = 30 + 2 + 2 * 8192 + 2;
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        req.resize(cap + 1, b'v');
        assert_eq!(
            parse_head(&req, &l).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        req.truncate(cap);
        assert!(parse_head(&req, &l).unwrap().is_none());
        // a flood of empty lines before the request line is capped too
        let blank = b"\r\n".repeat(cap);
        assert_eq!(
            parse_head(&blank, &l).unwrap_err(),
            ParseError::HeaderTooLarge
        );
    }

    #[test]
    fn byte_at_a_time_never_errors_on_valid_head() {
        let l = Limits {
            request_line: 40,
            fields: 3,
            field_size: 20,
            body: 100,
            allow_connect: false,
        };
        let req = b"POST /abc?d HTTP/1.1\r\nHost: example\r\nContent-Length: 100\r\nX: y\r\n\r\n";
        for i in 0..req.len() {
            assert!(parse_head(&req[..i], &l).unwrap().is_none(), "{i}");
        }
        let (h, n) = parse_head(req, &l).unwrap().unwrap();
        assert_eq!(n, req.len());
        assert_eq!(h.framing, Framing::Length(100));
    }

    #[test]
    fn reusing_a_spare_head_leaves_nothing_stale() {
        let lim = Limits {
            request_line: 8190,
            fields: 100,
            field_size: 8190,
            body: 0,
            allow_connect: false,
        };
        let first = b"POST /a/long/path?x=1 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nX-Two: 2\r\nContent-Length: 0\r\n\r\n";
        let (head, _) = parse_head(first, &lim).unwrap().unwrap();
        let mut spare = Some(head);
        let second = b"GET /b HTTP/1.0\r\nHost: z\r\n\r\n";
        let (h, n) = parse_head_reusing(second, &lim, &mut spare)
            .unwrap()
            .unwrap();
        assert!(spare.is_none());
        assert_eq!(n, second.len());
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("GET", "/b", "")
        );
        assert_eq!(h.headers, vec![("Host".to_string(), b"z".to_vec())]);
        assert_eq!(h.framing, Framing::None);
        assert_eq!(h.version, Version::Http10);
        assert!(!h.keep_alive);
    }
}
