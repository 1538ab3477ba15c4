//! Request ids and queue time (issue 16).
//!
//! - `X-Request-Start`, set by a proxy when it received the request (nginx:
//!   `proxy_set_header X-Request-Start "t=${msec}";`), is believed only from
//!   a trusted peer (`--forwarded-allow-ips`); the queue time is "now"
//!   minus it, fed into `ferricorn_request_queue_seconds`, given to the app
//!   and logged.
//! - The request id (`--request-id-header`, default `X-Request-Id`) is
//!   passed through when the client or proxy sent a sane one, else
//!   generated; it is given to the app, logged in the access log, and
//!   appended to every error-log line written while the request is handled
//!   ([`current`]), and the master's WORKER TIMEOUT line names it (read from
//!   the worker's counters row).
//!
//! The parsing is pure; the per-worker state is two process-globals set in
//! a freshly forked worker (a worker handles one request at a time on its
//! loop thread).

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The request id header this worker reads (`None`: request ids off).
static HEADER: OnceLock<Option<String>> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The id of the request being handled on this thread, for log lines.
    /// (set?, id): the buffer is reused, so no allocation per request.
    static CURRENT: RefCell<(bool, String)> = const { RefCell::new((false, String::new())) };
}

/// In a freshly forked worker: the `--request-id-header` ("" = off).
pub fn configure(header: &str) {
    let _ = HEADER.set((!header.is_empty()).then(|| header.to_string()));
}

/// The configured header name, if request ids are on.
pub fn header() -> Option<&'static str> {
    HEADER.get().and_then(|h| h.as_deref())
}

/// A passed-through id is kept if it is 1..=128 visible ASCII characters
/// (no spaces: it goes into log lines unquoted).
pub fn valid_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len()) && v.iter().all(|b| b.is_ascii_graphic())
}

/// This process's half of every id it generates: 8 hex digits of the wall
/// clock (seconds) at first use and 8 of the pid, computed once per worker.
static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();

/// `v`'s low `out.len()` hex digits into `out`.
fn hex_into(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> ((n - 1 - i) * 4)) & 0xf) as usize];
    }
}

/// A fresh id, 32 hex digits: this worker's start second and pid, then a
/// per-process sequence number. Unique across workers and restarts, and
/// cheap (no clock read, no formatting machinery): it runs per request.
pub fn generate() -> String {
    let prefix = PREFIX.get_or_init(|| {
        let mut p = [0u8; 16];
        hex_into(&mut p[..8], unix_us() / 1_000_000);
        hex_into(&mut p[8..], std::process::id() as u64);
        p
    });
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(prefix);
    hex_into(&mut buf[16..], SEQ.fetch_add(1, Ordering::Relaxed));
    String::from_utf8_lossy(&buf).into_owned()
}

/// The id for a request with these headers: passed through or generated;
/// `None` when request ids are off.
pub fn request_id(headers: &[(String, Vec<u8>)]) -> Option<String> {
    let name = header()?;
    let sent = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice());
    Some(match sent {
        Some(v) if valid_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => generate(),
    })
}

/// `X-Request-Start` as Unix microseconds. Forms: `t=1700000000.123`
/// (nginx `${msec}`), seconds with or without a fraction, and integer
/// milliseconds, microseconds or nanoseconds (told apart by magnitude),
/// each with or without `t=`.
pub fn parse_request_start(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let s = s.strip_prefix("t=").unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if let Some((whole, frac)) = s.split_once('.') {
        let secs: u64 = whole.parse().ok()?;
        let mut digits = frac.bytes().take(6).map(|b| (b - b'0') as u64);
        let mut us = 0;
        for _ in 0..6 {
            us = us * 10 + digits.next().unwrap_or(0);
        }
        return secs.checked_mul(1_000_000)?.checked_add(us);
    }
    let n: u64 = s.parse().ok()?;
    Some(match n {
        0..100_000_000_000 => n.checked_mul(1_000_000)?, // seconds (to year 5138)
        100_000_000_000..100_000_000_000_000 => n * 1_000, // milliseconds
        100_000_000_000_000..100_000_000_000_000_000 => n, // microseconds
        _ => n / 1_000,                                  // nanoseconds
    })
}

/// Queue time in µs from a trusted `X-Request-Start` (0 when the proxy's
/// clock is ahead of ours).
pub fn queue_us(start_unix_us: u64, now_unix_us: u64) -> u64 {
    now_unix_us.saturating_sub(start_unix_us)
}

/// The wall clock in µs since the epoch (X-Request-Start is wall time).
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What a request carries besides its head (see [`crate::Request::request_id`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub id: Option<String>,
    /// `X-Request-Start` from a trusted proxy, Unix µs.
    pub start_us: Option<u64>,
    /// Now minus `start_us`, µs.
    pub queue_us: Option<u64>,
}

/// Everything about one request as it enters the app, in one call from the
/// connection: its id (also made current for log lines and published for
/// the master's timeout line) and its queue time (also counted).
pub fn enter(headers: &[(String, Vec<u8>)], trusted_peer: bool) -> RequestMeta {
    let id = request_id(headers);
    // The clock is read only when a trusted proxy sent X-Request-Start.
    let start_us = if trusted_peer {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Request-Start"))
            .and_then(|(_, v)| parse_request_start(v))
    } else {
        None
    };
    let queue = start_us.map(|s| queue_us(s, unix_us()));
    if let Some(q) = queue {
        crate::scoreboard::count_queue_time(q);
    }
    if let Some(id) = &id {
        crate::scoreboard::set_request_id(id);
        set_current(Some(id));
    }
    RequestMeta {
        id,
        start_us,
        queue_us: queue,
    }
}

/// The request is answered: log lines no longer name it.
pub fn leave() {
    if header().is_some() {
        set_current(None);
    }
}

/// Set (or clear) the id of the request handled now on this thread.
pub fn set_current(id: Option<&str>) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.0 = id.is_some();
        c.1.clear();
        c.1.push_str(id.unwrap_or(""));
    });
}

/// The id of the request handled now on this thread, for log lines.
pub fn current() -> Option<String> {
    CURRENT.with(|c| {
        let c = c.borrow();
        c.0.then(|| c.1.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_start_forms() {
        let t = 1_764_000_000_123_000; // µs
        assert_eq!(parse_request_start(b"t=1764000000.123"), Some(t));
        assert_eq!(parse_request_start(b"1764000000.123"), Some(t));
        assert_eq!(parse_request_start(b"t=1764000000123"), Some(t));
        assert_eq!(parse_request_start(b"1764000000123000"), Some(t));
        assert_eq!(parse_request_start(b"t=1764000000123000000"), Some(t));
        assert_eq!(
            parse_request_start(b"1764000000"),
            Some(1_764_000_000_000_000)
        );
        assert_eq!(
            parse_request_start(b" t=1764000000.1234567 "),
            Some(1_764_000_000_123_456)
        );
        assert_eq!(parse_request_start(b"t=abc"), None);
        assert_eq!(parse_request_start(b"t=-5"), None);
        assert_eq!(parse_request_start(b""), None);
        assert_eq!(queue_us(t, t + 2_500), 2_500);
        assert_eq!(queue_us(t + 10, t), 0, "proxy clock ahead: 0, not a wrap");
    }

    #[test]
    fn ids_pass_through_only_when_sane() {
        assert!(valid_id(b"abc-123_XYZ"));
        assert!(!valid_id(b""));
        assert!(!valid_id(b"has space"));
        assert!(!valid_id(b"nl\n"));
        assert!(!valid_id(&[b'a'; 129]));
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16], "same process, same prefix");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        let mut h = [0u8; 4];
        hex_into(&mut h, 0xab);
        assert_eq!(&h, b"00ab");
    }
}
