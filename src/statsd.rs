//! StatsD metrics (gunicorn `instrument/statsd.py`): `--statsd-host`,
//! `--statsd-prefix`, `--dogstatsd-tags`.
//!
//! gunicorn's metric names and line format:
//! - per request, from the worker that answered it (where the access log
//!   line is written), in one datagram of three lines (statsd's
//!   multi-metric packet, which every statsd server reads; gunicorn sends
//!   three datagrams): `gunicorn.request.duration:<ms>|ms`,
//!   `gunicorn.requests:1|c|@1.0` and `gunicorn.request.status.<code>:1|c|@1.0`;
//! - from the master, whenever the number of running workers changes:
//!   `gunicorn.workers:<n>|g`;
//! - per error-log record at warning level or above:
//!   `gunicorn.log.{critical,error,exception,warning}:1|c|@1.0`, the level
//!   as gunicorn would have logged the line ([`gunicorn_level`]).
//!
//! The socket is a connected datagram socket (UDP or a Unix datagram socket)
//! opened once in the master before the workers are forked, so every process
//! sends on the same one. It is non-blocking and a failed send is dropped
//! silently: metrics never stall a worker and never fill the error log
//! (gunicorn logs a warning per failure; a statsd daemon that is down would
//! double every log line).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

/// Where metrics go: `--statsd-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `HOST:PORT` (the port defaults to 8125), resolved when the socket is opened.
    Udp(String, u16),
    /// `unix://PATH` (or `unix:PATH`): a Unix datagram socket.
    Unix(PathBuf),
}

/// Parse `--statsd-host` as gunicorn does (`util.parse_address` with the
/// default port 8125): `HOST:PORT`, `HOST`, `[V6]:PORT`, `:PORT`,
/// `unix://PATH` or `unix:PATH`.
pub fn parse_target(v: &str) -> Result<Target, String> {
    if let Some(rest) = v.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err("a unix: address needs a path".into());
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let v = v.strip_prefix("udp://").unwrap_or(v);
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated [IPv6] address".to_string())?;
        (h, after.strip_prefix(':').unwrap_or(""))
    } else {
        match v.split_once(':') {
            Some((h, p)) => (h, p),
            None => (v, ""),
        }
    };
    let port = if port.is_empty() {
        8125
    } else {
        port.parse::<u16>()
            .map_err(|_| format!("'{port}' is not a valid port number"))?
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(Target::Udp(host.to_ascii_lowercase(), port))
}

/// gunicorn's prefix rule: trailing dots are replaced by exactly one dot.
/// (gunicorn's regex leaves a one-character prefix without its dot; a
/// prefix `a` gives `a.gunicorn.requests` here, not `agunicorn.requests`.)
pub fn normalize_prefix(p: &str) -> String {
    let base = p.trim_end_matches('.');
    if base.is_empty() {
        p.to_string()
    } else {
        format!("{base}.")
    }
}

/// A metric's kind and its statsd type suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `|c|@1.0`: gunicorn always writes the sampling rate.
    Counter,
    /// `|g`
    Gauge,
    /// `|ms`
    Timer,
    /// `|h` (gunicorn's `gunicorn.backlog`)
    Histogram,
}

/// One metric line: `{prefix}{name}:{value}|{type}` and `|#{tags}` when
/// dogstatsd tags are set.
pub fn line(prefix: &str, name: &str, value: &str, kind: Kind, tags: &str) -> String {
    let suffix = match kind {
        Kind::Counter => "c|@1.0",
        Kind::Gauge => "g",
        Kind::Timer => "ms",
        Kind::Histogram => "h",
    };
    let mut s = format!("{prefix}{name}:{value}|{suffix}");
    if !tags.is_empty() {
        s.push_str("|#");
        s.push_str(tags);
    }
    s
}

/// The per-request datagram: duration timer, request counter and status
/// counter, one metric per line.
pub fn request_packet(prefix: &str, tags: &str, status: u16, elapsed: Duration) -> String {
    let ms = millis(elapsed);
    let status = format!("gunicorn.request.status.{status}");
    [
        line(prefix, "gunicorn.request.duration", &ms, Kind::Timer, tags),
        line(prefix, "gunicorn.requests", "1", Kind::Counter, tags),
        line(prefix, &status, "1", Kind::Counter, tags),
    ]
    .join("\n")
}

/// A duration in milliseconds as gunicorn prints it (a Python float:
/// `seconds * 1000 + microseconds / 1000`): `1.234`, `12.5`, `2000.0`.
pub fn millis(d: Duration) -> String {
    let us = d.as_micros();
    let (whole, frac) = (us / 1000, us % 1000);
    let mut f = format!("{frac:03}");
    while f.len() > 1 && f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f}")
}

/// A connected, non-blocking datagram socket and the line decorations.
pub struct Statsd {
    sock: Socket,
    prefix: String,
    tags: String,
}

impl Statsd {
    /// Open the socket. An unresolvable host is an error (a typo should stop
    /// start-up); a host that is resolvable but not listening is not (UDP).
    pub fn open(target: &Target, prefix: &str, tags: &str) -> std::io::Result<Statsd> {
        let (sock, addr) = match target {
            Target::Udp(host, port) => {
                let addr: SocketAddr = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{host}: no address")))?;
                let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
                (sock, SockAddr::from(addr))
            }
            Target::Unix(path) => (
                Socket::new(Domain::UNIX, Type::DGRAM, None)?,
                SockAddr::unix(path)?,
            ),
        };
        // socket2 opens it close-on-exec.
        sock.set_nonblocking(true)?;
        // A Unix socket that does not exist yet is not fatal: sends fail
        // until it does, as with an unanswered UDP port.
        let _ = sock.connect(&addr);
        Ok(Statsd {
            sock,
            prefix: normalize_prefix(prefix),
            tags: tags.to_string(),
        })
    }

    fn send(&self, name: &str, value: &str, kind: Kind) {
        let l = line(&self.prefix, name, value, kind, &self.tags);
        // Dropped on any error (EAGAIN, ECONNREFUSED from an earlier
        // datagram's ICMP reply, no such socket): see the module doc.
        let _ = self.sock.send(l.as_bytes());
    }

    pub fn increment(&self, name: &str) {
        self.send(name, "1", Kind::Counter);
    }

    pub fn gauge(&self, name: &str, value: u64) {
        self.send(name, &value.to_string(), Kind::Gauge);
    }

    pub fn timer(&self, name: &str, d: Duration) {
        self.send(name, &millis(d), Kind::Timer);
    }

    /// The three per-request metrics, in gunicorn's order, as one datagram
    /// of three lines (statsd's multi-metric packet: one `send(2)` per
    /// request instead of gunicorn's three).
    pub fn request(&self, status: u16, elapsed: Duration) {
        let _ = self
            .sock
            .send(request_packet(&self.prefix, &self.tags, status, elapsed).as_bytes());
    }
}

/// The process-wide client; replaced on HUP.
static CLIENT: RwLock<Option<Statsd>> = RwLock::new(None);
/// `CLIENT` is set: checked per request without taking the lock.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Open the process-wide client (in the master, before any fork; the
/// workers inherit it), replacing the one before (HUP). `host` is
/// `--statsd-host`; None turns metrics off.
pub fn init(host: Option<&str>, prefix: &str, tags: &str) -> Result<(), String> {
    let client = match host {
        Some(host) => {
            let target = parse_target(host).map_err(|e| format!("--statsd-host {host}: {e}"))?;
            Some(
                Statsd::open(&target, prefix, tags)
                    .map_err(|e| format!("--statsd-host {host}: {e}"))?,
            )
        }
        None => None,
    };
    ENABLED.store(client.is_some(), Ordering::Relaxed);
    *CLIENT.write().unwrap_or_else(|p| p.into_inner()) = client;
    // A new destination or prefix gets the gauge at once.
    LAST_WORKERS.store(usize::MAX, Ordering::Relaxed);
    Ok(())
}

/// `--statsd-host` is set.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn with_client(f: impl FnOnce(&Statsd)) {
    if !enabled() {
        return;
    }
    if let Some(c) = CLIENT.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        f(c);
    }
}

/// The per-request metrics (called where the access log line is written).
pub fn request(status: u16, elapsed: Duration) {
    with_client(|c| c.request(status, elapsed));
}

/// gunicorn's level for an error-log record: the `log` crate has no
/// critical or exception level, so the two lines gunicorn logs at those
/// levels are recognised by their words: `WORKER TIMEOUT` (its
/// `log.critical` in `murder_workers`) and `Error handling request` (its
/// `log.exception` in `handle_error`, here an app's exception or panic).
pub fn gunicorn_level(level: log::Level, message: &str) -> &'static str {
    match level {
        log::Level::Error if message.starts_with("WORKER TIMEOUT") => "critical",
        log::Level::Error if message.starts_with("Error handling request") => "exception",
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug | log::Level::Trace => "debug",
    }
}

/// `gunicorn.log.<level>` for an error-log record at warning level or
/// above; `level` is [`gunicorn_level`]'s.
pub fn log_record(level: &str) {
    if let "critical" | "error" | "exception" | "warning" = level {
        with_client(|c| c.increment(&format!("gunicorn.log.{level}")));
    }
}

static LAST_WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The master's `gunicorn.backlog` histogram: connections waiting in the
/// listen queues (`--enable-backlog-metric`; gunicorn sends it from
/// `manage_workers`, once a loop turn).
pub fn backlog(n: u64) {
    with_client(|c| c.send("gunicorn.backlog", &n.to_string(), Kind::Histogram));
}

/// The master's `gunicorn.workers` gauge, sent when the count changes (as
/// gunicorn's `manage_workers` does).
pub fn workers(n: usize) {
    with_client(|c| {
        if LAST_WORKERS.swap(n, Ordering::Relaxed) != n {
            c.gauge("gunicorn.workers", n as u64);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_gunicorn() {
        assert_eq!(
            parse_target("localhost:9125"),
            Ok(Target::Udp("localhost".into(), 9125))
        );
        assert_eq!(
            parse_target("Stats.Example"),
            Ok(Target::Udp("stats.example".into(), 8125))
        );
        assert_eq!(parse_target("[::1]:9"), Ok(Target::Udp("::1".into(), 9)));
        assert_eq!(parse_target(":9"), Ok(Target::Udp("0.0.0.0".into(), 9)));
        assert_eq!(
            parse_target("unix:///run/statsd.sock"),
            Ok(Target::Unix("/run/statsd.sock".into()))
        );
        assert_eq!(
            parse_target("unix:/run/s"),
            Ok(Target::Unix("/run/s".into()))
        );
        assert!(parse_target("host:port").is_err());
        assert!(parse_target("unix://").is_err());
    }

    #[test]
    fn prefix_gets_exactly_one_trailing_dot() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("app"), "app.");
        assert_eq!(normalize_prefix("app."), "app.");
        assert_eq!(normalize_prefix("app..."), "app.");
        assert_eq!(normalize_prefix("my.app"), "my.app.");
    }

    #[test]
    fn lines_match_gunicorns_format() {
        assert_eq!(
            line("", "gunicorn.requests", "1", Kind::Counter, ""),
            "gunicorn.requests:1|c|@1.0"
        );
        assert_eq!(
            line("p.", "gunicorn.workers", "3", Kind::Gauge, "env:prod,x"),
            "p.gunicorn.workers:3|g|#env:prod,x"
        );
        assert_eq!(
            line("", "gunicorn.request.duration", "1.5", Kind::Timer, ""),
            "gunicorn.request.duration:1.5|ms"
        );
    }

    #[test]
    fn gunicorns_critical_and_exception_lines_are_recognised() {
        use log::Level::*;
        assert_eq!(gunicorn_level(Error, "WORKER TIMEOUT (pid:7)"), "critical");
        assert_eq!(
            gunicorn_level(Error, "Error handling request GET /"),
            "exception"
        );
        assert_eq!(gunicorn_level(Error, "Worker (pid:7) exited"), "error");
        assert_eq!(gunicorn_level(Warn, "Error handling request"), "warning");
        assert_eq!(gunicorn_level(Info, "x"), "info");
    }

    #[test]
    fn a_request_is_one_packet_of_three_lines() {
        assert_eq!(
            request_packet("app.", "env:x", 404, Duration::from_micros(2500)),
            "app.gunicorn.request.duration:2.5|ms|#env:x\n\
             app.gunicorn.requests:1|c|@1.0|#env:x\n\
             app.gunicorn.request.status.404:1|c|@1.0|#env:x"
        );
    }

    #[test]
    fn millis_print_as_python_floats() {
        assert_eq!(millis(Duration::from_micros(1234)), "1.234");
        assert_eq!(millis(Duration::from_micros(12_500)), "12.5");
        assert_eq!(millis(Duration::from_secs(2)), "2000.0");
        assert_eq!(millis(Duration::from_nanos(999)), "0.0");
    }
}
