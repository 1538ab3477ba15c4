//! The error log and the access log (gunicorn `glogging.py`).
//!
//! The error log goes through the `log` crate with env_logger doing filtering
//! (`--log-level`, overridable with `RUST_LOG`) and a gunicorn-style line:
//! `[2026-11-25 15:35:18 +0000] [1234] [INFO] Booting worker with pid: 1235`.
//! Its file can be reopened (USR1, for logrotate) because the writer behind
//! env_logger is a shared handle that [`reopen_error_log`] swaps.
//!
//! The access log is written by the workers: lines are formatted into a
//! buffer and written once per event-loop turn with one `write(2)` of whole
//! lines to a file opened with `O_APPEND`, so lines of different workers never
//! interleave.
//!
//! Around those two, as gunicorn's `Logger` has them (see [`init`]):
//! - `--log-syslog`: every error-log record, and every access-log line unless
//!   `--disable-redirect-access-to-syslog`, is also sent as a syslog datagram
//!   in gunicorn's format (Python's `SysLogHandler`):
//!   `<PRI>gunicorn.NAME.error: [PID] message\0` ([`Syslog`]);
//! - `--statsd-host`: each error-log record at warning level or above and
//!   each request (where its access-log line is written) is counted
//!   ([`crate::statsd`]);
//! - `--capture-output`: the processes' stdout and stderr (fds 1 and 2, so
//!   whatever a Python app prints) go to the `--error-logfile` file, and are
//!   redirected again when USR1 reopens it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::app::{Peer, Request};
use crate::config::Config;

// ---------------------------------------------------------------------------
// Error log.

enum Sink {
    Stderr,
    File(String, File),
}

static ERROR_SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

struct ErrorWriter;

impl Write for ErrorWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sink = ERROR_SINK.get_or_init(|| Mutex::new(Sink::Stderr));
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *sink {
            Sink::Stderr => io::stderr().write_all(buf)?,
            Sink::File(_, f) => f.write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn open_append(path: &str) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Install the global logger. `errorlog` is `-` for stderr or a file path.
pub fn init_error_log(level: &str, errorlog: &str) -> io::Result<()> {
    let sink = if errorlog == "-" {
        Sink::Stderr
    } else {
        Sink::File(errorlog.to_string(), open_append(errorlog)?)
    };
    let cell = ERROR_SINK.get_or_init(|| Mutex::new(Sink::Stderr));
    *cell.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    let filter = match level {
        "debug" => log::LevelFilter::Debug,
        "warning" | "warn" => log::LevelFilter::Warn,
        "error" | "critical" => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(filter)
        .parse_env("RUST_LOG")
        .target(env_logger::Target::Pipe(Box::new(ErrorWriter)))
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Error => "ERROR",
                log::Level::Warn => "WARNING",
                log::Level::Info => "INFO",
                log::Level::Debug => "DEBUG",
                log::Level::Trace => "TRACE",
            };
            // A line written while a request is handled names it at the end
            // of its first line (a traceback follows on the next ones).
            if let Some(id) = crate::reqmeta::current() {
                let msg = record.args().to_string();
                let (first, rest) = msg.split_at(msg.find('\n').unwrap_or(msg.len()));
                return writeln!(
                    buf,
                    "[{}] [{}] [{}] {first} [request_id={id}]{rest}",
                    log_time(SystemTime::now()),
                    std::process::id(),
                    level,
                );
            }
            writeln!(
                buf,
                "[{}] [{}] [{}] {}",
                log_time(SystemTime::now()),
                std::process::id(),
                level,
                record.args()
            )
        });
    // A second call (HUP, or a test calling the library twice) replaces
    // the filter: the last configuration wins.
    let inner = builder.build();
    let max = inner.filter();
    *LOGGER.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(inner);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max);
    Ok(())
}

/// env_logger's filtering and line, plus the syslog copy and the statsd
/// counters of each record that passes the filter. The env_logger inside is
/// replaced when the settings are (HUP).
struct ErrorLogger {
    inner: RwLock<Option<env_logger::Logger>>,
}

static LOGGER: ErrorLogger = ErrorLogger {
    inner: RwLock::new(None),
};

impl log::Log for ErrorLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.as_ref().is_some_and(|l| l.enabled(meta))
    }

    fn log(&self, record: &log::Record<'_>) {
        {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match inner.as_ref() {
                Some(l) if l.matches(record) => l.log(record),
                _ => return,
            }
        }
        let statsd = crate::statsd::enabled() && record.level() <= log::Level::Warn;
        let syslog = SYSLOG.read().unwrap_or_else(|p| p.into_inner());
        if !statsd && syslog.is_none() {
            return;
        }
        let message = record.args().to_string();
        let level = crate::statsd::gunicorn_level(record.level(), &message);
        crate::statsd::log_record(level);
        if let Some(s) = syslog.as_ref() {
            s.send("error", severity(level), &message);
        }
    }

    fn flush(&self) {}
}

/// Set up everything the error and access logs need from the settings, in
/// the master before anything is forked: the statsd socket, the syslog
/// socket, `--capture-output`, then the error log itself. The error is one
/// line naming the setting. Called again on HUP ([`reconfigure`]); workers
/// forked after that inherit the new set-up.
pub fn init(cfg: &Config) -> Result<(), String> {
    INITIALIZED.store(true, Ordering::Relaxed);
    crate::statsd::init(
        cfg.statsd_host.as_deref(),
        &cfg.statsd_prefix,
        &cfg.dogstatsd_tags,
    )?;
    if cfg.syslog {
        let name = cfg.syslog_prefix.clone().unwrap_or_else(|| {
            cfg.proc_name
                .clone()
                .unwrap_or_else(|| cfg.app.clone())
                .replace(':', ".")
        });
        let addr = cfg.syslog_addr.as_deref().unwrap_or(default_syslog_addr());
        let s = Syslog::open(
            addr,
            &cfg.syslog_facility,
            &name,
            !cfg.disable_redirect_access_to_syslog,
        )
        .map_err(|e| format!("--log-syslog-to {addr}: {e}"))?;
        *SYSLOG.write().unwrap_or_else(|p| p.into_inner()) = Some(s);
    } else {
        *SYSLOG.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
    let capture = cfg.capture_output && cfg.errorlog != "-";
    CAPTURE.store(capture, Ordering::Relaxed);
    if capture {
        capture_stdio(&cfg.errorlog)
            .map_err(|e| format!("--capture-output: cannot open {}: {e}", cfg.errorlog))?;
    }
    init_error_log(&cfg.loglevel, &cfg.errorlog)
        .map_err(|e| format!("cannot open --error-logfile {}: {e}", cfg.errorlog))
}

/// HUP: apply the re-read settings as gunicorn's `Logger.setup` does on
/// reload (level, error log file, syslog, statsd, captured output). A part
/// that fails is logged and keeps its previous set-up; the parts before it
/// in [`init`]'s order are already replaced.
pub fn reconfigure(cfg: &Config) {
    // Only where `init` set logging up (the binary): a library user's own
    // logger and level are not ours to replace.
    if !INITIALIZED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = init(cfg) {
        log::error!("reload: {e}; the rest of the logging set-up is unchanged");
    }
}

/// Whether `--daemon` keeps stdout and stderr (those that are not a
/// terminal) rather than pointing them at /dev/null: with
/// `--enable-stdio-inheritance` (gunicorn's meaning: `ferricorn -D -R >
/// out.log 2>&1` keeps writing to out.log), and with `--capture-output`,
/// whose redirection into the error log is already in place by then.
pub fn daemon_keeps_stdio(cfg: &Config) -> bool {
    cfg.enable_stdio_inheritance || (cfg.capture_output && cfg.errorlog != "-")
}

// ---------------------------------------------------------------------------
// --capture-output

static CAPTURE: AtomicBool = AtomicBool::new(false);
/// [`init`] ran (the binary's set-up), so HUP may redo it.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Point fds 1 and 2 at the (appended) error log file.
fn capture_stdio(errorlog: &str) -> io::Result<()> {
    let _ = io::stdout().flush();
    let file = open_append(errorlog)?;
    nix::unistd::dup2_stdout(&file).map_err(io::Error::from)?;
    nix::unistd::dup2_stderr(&file).map_err(io::Error::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Syslog (`--log-syslog`).

/// gunicorn's facility names (`glogging.SYSLOG_FACILITIES`).
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// Python's `SysLogHandler.mapPriority` of a record's gunicorn level
/// ([`crate::statsd::gunicorn_level`]; an exception is logged at error).
fn severity(level: &str) -> u8 {
    match level {
        "critical" => 2,
        "error" | "exception" => 3,
        "warning" => 4,
        "info" => 6,
        _ => 7,
    }
}

/// A parsed `--log-syslog-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    /// `unix://PATH`, optionally `#dgram` or `#stream`; None = datagram,
    /// else stream (Python's SysLogHandler tries them in that order).
    Unix(String, Option<Type>),
    /// `udp://HOST[:PORT]` (port 514, host `localhost` if empty).
    Udp(String, u16),
    /// `tcp://HOST[:PORT]`.
    Tcp(String, u16),
}

/// The default `--log-syslog-to`: `/dev/log` where it exists (the local
/// syslog daemon or journald on Linux), else gunicorn's Linux default
/// `udp://localhost:514`.
pub fn default_syslog_addr() -> &'static str {
    if std::path::Path::new("/dev/log").exists() {
        "unix:///dev/log"
    } else {
        "udp://localhost:514"
    }
}

/// Parse `--log-syslog-to` as gunicorn's `parse_syslog_address`.
pub fn parse_syslog_addr(addr: &str) -> Result<SyslogAddr, String> {
    if let Some(rest) = addr.strip_prefix("unix://") {
        let (path, ty) = match rest.split_once('#') {
            Some((p, "dgram")) => (p, Some(Type::DGRAM)),
            Some((p, "stream")) => (p, Some(Type::STREAM)),
            Some((_, other)) => {
                return Err(format!("unknown socket type '#{other}' (dgram or stream)"));
            }
            None => (rest, None),
        };
        if path.is_empty() {
            return Err("unix:// needs a path".into());
        }
        return Ok(SyslogAddr::Unix(path.to_string(), ty));
    }
    let (rest, tcp) = if let Some(r) = addr.strip_prefix("udp://") {
        (r, false)
    } else if let Some(r) = addr.strip_prefix("tcp://") {
        (r, true)
    } else {
        return Err("must be unix://PATH, udp://HOST:PORT or tcp://HOST:PORT".into());
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| "unterminated [IPv6] address".to_string())?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host = if host.is_empty() { "localhost" } else { host }.to_ascii_lowercase();
    let port = match port {
        None => 514,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("'{p}' is not a valid port number"))?,
    };
    Ok(if tcp {
        SyslogAddr::Tcp(host, port)
    } else {
        SyslogAddr::Udp(host, port)
    })
}

/// One syslog message as Python's `SysLogHandler` sends it with gunicorn's
/// formatter: `<PRI>TAG: [PID] MESSAGE` and a NUL. No timestamp or host
/// name (the receiving daemon adds them, as it does for gunicorn).
pub fn syslog_message(facility: u8, severity: u8, tag: &str, pid: u32, msg: &str) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(severity);
    let mut out = format!("<{pri}>{tag}: [{pid}] {msg}").into_bytes();
    out.push(0);
    out
}

/// The syslog socket: connected, non-blocking; a message that cannot be
/// sent at once is dropped (a stalled syslog must not stall a worker).
pub struct Syslog {
    conn: SyslogConn,
    facility: u8,
    /// `gunicorn.NAME`: the tag is this plus `.error` or `.access`.
    base: String,
    /// Access-log lines go to syslog too.
    pub access: bool,
}

/// A datagram socket (Unix or UDP) stays connected for good: a restarted
/// daemon receives again at the same address. A TCP stream breaks when the
/// daemon restarts (gunicorn's SysLogHandler then logs nothing more until
/// ferricorn restarts); it is dropped on the first failed send and opened
/// again, without blocking, at most once a second.
enum SyslogConn {
    Fixed(Socket),
    Tcp(SockAddr, Mutex<TcpSyslog>),
}

struct TcpSyslog {
    sock: Option<Socket>,
    /// No connect before this (monotonic ms).
    retry_at: u64,
}

/// Between two attempts to reach a TCP syslog daemon.
const SYSLOG_RETRY_MS: u64 = 1000;

static SYSLOG: RwLock<Option<Syslog>> = RwLock::new(None);

impl Syslog {
    pub fn open(addr: &str, facility: &str, name: &str, access: bool) -> io::Result<Syslog> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let facility = facility_code(facility)
            .ok_or_else(|| invalid(format!("unknown syslog facility '{facility}'")))?;
        let resolve = |host: &str, port: u16| -> io::Result<SockAddr> {
            use std::net::ToSocketAddrs;
            (host, port)
                .to_socket_addrs()?
                .next()
                .map(SockAddr::from)
                .ok_or_else(|| io::Error::other(format!("{host}: no address")))
        };
        let conn = match parse_syslog_addr(addr).map_err(invalid)? {
            SyslogAddr::Unix(path, ty) => {
                let to = SockAddr::unix(&path)?;
                let connect = |ty: Type| -> io::Result<Socket> {
                    let s = Socket::new(Domain::UNIX, ty, None)?;
                    s.connect(&to)?;
                    Ok(s)
                };
                SyslogConn::Fixed(match ty {
                    Some(t) => connect(t)?,
                    None => connect(Type::DGRAM).or_else(|_| connect(Type::STREAM))?,
                })
            }
            SyslogAddr::Udp(host, port) => {
                let to = resolve(&host, port)?;
                let s = Socket::new(to.domain(), Type::DGRAM, None)?;
                s.connect(&to)?;
                SyslogConn::Fixed(s)
            }
            SyslogAddr::Tcp(host, port) => {
                // At start-up the daemon must be there (a typo should stop
                // the server); later it may come and go.
                let to = resolve(&host, port)?;
                let s = Socket::new(to.domain(), Type::STREAM, None)?;
                s.connect_timeout(&to, Duration::from_secs(5))?;
                s.set_nonblocking(true)?;
                let state = TcpSyslog {
                    sock: Some(s),
                    retry_at: 0,
                };
                SyslogConn::Tcp(to, Mutex::new(state))
            }
        };
        if let SyslogConn::Fixed(s) = &conn {
            s.set_nonblocking(true)?;
        }
        Ok(Syslog {
            conn,
            facility,
            base: format!("gunicorn.{name}"),
            access,
        })
    }

    /// Send one message; `kind` is `error` or `access`.
    fn send(&self, kind: &str, severity: u8, msg: &str) {
        let tag = format!("{}.{kind}", self.base);
        let m = syslog_message(self.facility, severity, &tag, std::process::id(), msg);
        match &self.conn {
            SyslogConn::Fixed(s) => {
                let _ = s.send(&m);
            }
            SyslogConn::Tcp(to, state) => {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                send_stream(&mut st, to, &m, crate::clock::monotonic_ms());
            }
        }
    }
}

/// One message on the TCP syslog stream, reconnecting if it broke. A message
/// that does not fit at once is dropped whole; one written in part ends the
/// connection, since the daemon would read the next message glued to the
/// rest of this one (messages are framed by their NUL).
fn send_stream(st: &mut TcpSyslog, to: &SockAddr, m: &[u8], now: u64) {
    if st.sock.is_none() && now >= st.retry_at {
        st.retry_at = now + SYSLOG_RETRY_MS;
        st.sock = Socket::new(to.domain(), Type::STREAM, None)
            .and_then(|s| {
                s.set_nonblocking(true)?;
                match s.connect(to) {
                    Ok(()) => Ok(s),
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(s),
                    Err(e) => Err(e),
                }
            })
            .ok();
    }
    let Some(sock) = &st.sock else { return };
    match sock.send_with_flags(m, nix::libc::MSG_NOSIGNAL) {
        Ok(n) if n == m.len() => {}
        // Still connecting, or the daemon is slow: this message is lost.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // Written in part, or the stream broke (EPIPE, ECONNRESET, ECONNREFUSED).
        _ => {
            st.sock = None;
            st.retry_at = st.retry_at.max(now);
        }
    }
}

/// Access-log lines go to syslog.
fn syslog_access() -> bool {
    SYSLOG
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|s| s.access)
}

/// Reopen the error log file at its path (USR1).
pub fn reopen_error_log() -> io::Result<()> {
    let Some(cell) = ERROR_SINK.get() else {
        return Ok(());
    };
    let mut sink = cell.lock().unwrap_or_else(|p| p.into_inner());
    if let Sink::File(path, file) = &mut *sink {
        *file = open_append(path)?;
        if CAPTURE.load(Ordering::Relaxed) {
            capture_stdio(path)?;
        }
    }
    Ok(())
}

/// `2026-11-25 15:35:18 +0000` (UTC: ferricorn carries no time-zone database).
fn log_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000")
}

/// Unix seconds to (year, month, day, hour, minute, second), proleptic Gregorian.
pub(crate) fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

// ---------------------------------------------------------------------------
// Access log.

/// gunicorn's default `--access-logformat`.
pub const DEFAULT_ACCESS_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// nginx's `combined` format, by name.
pub const COMBINED_FORMAT: &str = r#"%(h)s - %(u)s %(t)s "%(r)s" %(s)s %(B)s "%(f)s" "%(a)s""#;

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Host,
    Dash,
    User,
    Time,
    RequestLine,
    Status,
    BytesClf,
    Bytes,
    Referer,
    Agent,
    Method,
    Path,
    Query,
    Protocol,
    Secs,
    Millis,
    Micros,
    DecimalSecs,
    Pid,
    /// `%(request_id)s`: the request id (`--request-id-header`).
    RequestId,
    /// `%(queue_time)s`: X-Request-Start queue time, decimal seconds.
    QueueTime,
    ReqHeader(String),
    RespHeader(String),
    Env(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Atom(Atom),
}

/// What one access-log line is made of.
pub struct AccessRecord<'a> {
    pub peer: Peer,
    pub request: &'a Request,
    pub status: u16,
    pub body_bytes: u64,
    pub elapsed: Duration,
    pub response_headers: &'a [(String, Vec<u8>)],
}

/// Bytes a `write(2)` to a pipe delivers in one piece (POSIX PIPE_BUF on
/// Linux): two workers' writes of at most this much never interleave.
const PIPE_BUF: usize = 4096;

/// A worker's access log: buffered lines, written once per loop turn.
pub struct AccessLog {
    target: Option<(String, Option<File>)>,
    /// The target is not a regular file (stdout as a pipe under docker or
    /// systemd, a FIFO, a tty): writes are split at line ends into pieces of
    /// at most PIPE_BUF bytes, the most a pipe takes atomically.
    split_writes: bool,
    json: bool,
    pieces: Vec<Piece>,
    buf: Vec<u8>,
    /// `[25/Nov/2026:15:35:18 +0000]` for the current second, formatted once
    /// per second rather than once per line.
    clock: (u64, String),
    /// The line being formatted (kept for its capacity).
    line: String,
}

impl AccessLog {
    pub fn disabled() -> AccessLog {
        AccessLog {
            target: None,
            split_writes: false,
            json: false,
            pieces: Vec::new(),
            buf: Vec::new(),
            clock: (u64::MAX, String::new()),
            line: String::new(),
        }
    }

    /// `path` is `-` for stdout. `format` is gunicorn's `%(x)s` syntax, or
    /// the names `combined` or `json`.
    pub fn open(path: &str, format: &str) -> io::Result<AccessLog> {
        let file = if path == "-" {
            None
        } else {
            Some(open_append(path)?)
        };
        let (json, fmt) = match format {
            "json" => (true, ""),
            "combined" => (false, COMBINED_FORMAT),
            other => (false, other),
        };
        let split_writes = !is_regular_file(file.as_ref());
        Ok(AccessLog {
            target: Some((path.to_string(), file)),
            split_writes,
            json,
            pieces: parse_format(fmt)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            buf: Vec::with_capacity(4096),
            clock: (u64::MAX, String::new()),
            line: String::with_capacity(256),
        })
    }

    /// The access log the settings ask for: `--access-logfile` (none if
    /// unset), with the format parsed also when the lines only go to syslog.
    pub fn from_config(cfg: &Config) -> io::Result<AccessLog> {
        match &cfg.accesslog {
            Some(path) => AccessLog::open(path, &cfg.access_log_format),
            None if syslog_access() => {
                let mut log = AccessLog::open("-", &cfg.access_log_format)?;
                log.target = None;
                Ok(log)
            }
            None => Ok(AccessLog::disabled()),
        }
    }

    /// Whether a request must be recorded at all: a file, syslog or statsd.
    pub fn enabled(&self) -> bool {
        self.target.is_some() || syslog_access() || crate::statsd::enabled()
    }

    pub fn log(&mut self, r: &AccessRecord<'_>) {
        crate::statsd::request(r.status, r.elapsed);
        let syslog = syslog_access();
        if self.target.is_none() && !syslog {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if self.clock.0 != now {
            self.clock = (now, clf_time(now));
        }
        let time = self.clock.1.as_str();
        let line = &mut self.line;
        line.clear();
        if self.json {
            format_json(line, r, time);
        } else {
            for piece in &self.pieces {
                match piece {
                    Piece::Lit(s) => line.push_str(s),
                    Piece::Atom(a) => render(line, a, r, time),
                }
            }
            line.push('\n');
        }
        if syslog && let Some(s) = SYSLOG.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            s.send("access", 6, line.trim_end_matches('\n'));
        }
        if self.target.is_none() {
            return;
        }
        self.buf.extend_from_slice(line.as_bytes());
        if self.buf.len() > 64 * 1024 {
            self.flush();
        }
    }

    /// Write the buffered lines (one write of whole lines).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some((_, file)) = &mut self.target {
            // A regular file is written with one write(2) of whole lines
            // (O_APPEND, or one shared offset: writes of several workers do
            // not interleave). A pipe only guarantees that for writes of at
            // most PIPE_BUF bytes: a 64 KiB buffer written to stdout under
            // docker arrived with other workers' lines spliced into it.
            let limit = if self.split_writes {
                PIPE_BUF
            } else {
                usize::MAX
            };
            let mut out: Box<dyn Write> = match file {
                Some(f) => Box::new(&*f),
                None => Box::new(io::stdout().lock()),
            };
            let mut rest = &self.buf[..];
            while !rest.is_empty() {
                let n = line_piece(rest, limit);
                if let Err(e) = out.write_all(&rest[..n]) {
                    log::warn!("access log write failed: {e}");
                    break;
                }
                rest = &rest[n..];
            }
        }
        self.buf.clear();
    }

    /// Reopen the file at its path (USR1 after logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush();
        if let Some((path, file @ Some(_))) = &mut self.target {
            *file = Some(open_append(path)?);
        }
        Ok(())
    }
}

/// Length of the first piece of `buf` to write: as many whole lines as fit in
/// `limit` bytes, or one whole line if even that one is longer.
fn line_piece(buf: &[u8], limit: usize) -> usize {
    if buf.len() <= limit {
        return buf.len();
    }
    match buf[..limit].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1),
    }
}

/// Whether the access log goes to a regular file (`None`: stdout).
fn is_regular_file(file: Option<&File>) -> bool {
    let stat = match file {
        Some(f) => nix::sys::stat::fstat(f),
        None => nix::sys::stat::fstat(io::stdout()),
    };
    stat.is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG)
}

/// Parse gunicorn's `%(name)s` access-log format.
fn parse_format(fmt: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = fmt;
    while let Some(i) = rest.find("%(") {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find(")s") else {
            return Err(format!("unterminated atom in access log format: {fmt:?}"));
        };
        let name = &after[..end];
        let atom = match name {
            "h" => Atom::Host,
            "l" => Atom::Dash,
            "u" => Atom::User,
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "s" => Atom::Status,
            "b" => Atom::BytesClf,
            "B" => Atom::Bytes,
            "f" => Atom::Referer,
            "a" => Atom::Agent,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "T" => Atom::Secs,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSecs,
            "p" => Atom::Pid,
            "request_id" => Atom::RequestId,
            "queue_time" => Atom::QueueTime,
            n if n.starts_with('{') && n.ends_with("}i") => {
                Atom::ReqHeader(n[1..n.len() - 2].to_string())
            }
            n if n.starts_with('{') && n.ends_with("}o") => {
                Atom::RespHeader(n[1..n.len() - 2].to_string())
            }
            n if n.starts_with('{') && n.ends_with("}e") => {
                Atom::Env(n[1..n.len() - 2].to_string())
            }
            other => return Err(format!("unknown access log atom %({other})s")),
        };
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Atom(atom));
        rest = &after[end + 2..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// Validate an access log format at start-up.
pub fn check_format(fmt: &str) -> Result<(), String> {
    match fmt {
        "json" | "combined" => Ok(()),
        f => parse_format(f).map(|_| ()),
    }
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

fn push_bytes_or_dash(out: &mut String, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => out.push_str(&String::from_utf8_lossy(v)),
        _ => out.push('-'),
    }
}

/// `[25/Nov/2026:15:35:18 +0000]`
fn clf_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "[{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000]",
        MONTHS[(mo - 1) as usize]
    )
}

/// gunicorn's `%(u)s`: the user name of HTTP Basic authentication (the part
/// of the decoded credentials before the first `:`), if any.
fn basic_auth_user(req: &Request) -> Option<String> {
    let value = std::str::from_utf8(req.header("Authorization")?).ok()?;
    let (scheme, cred) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(cred.trim())?;
    let user = decoded.split(|&b| b == b':').next()?;
    Some(String::from_utf8_lossy(user).into_owned())
}

/// Standard base64 (padding optional); None if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Append `atom` for `r`; `time` is the current `%(t)s`.
fn render(out: &mut String, atom: &Atom, r: &AccessRecord<'_>, time: &str) {
    use std::fmt::Write as _;
    let req = r.request;
    match atom {
        Atom::Host => match req.remote_addr() {
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push('-'),
        },
        Atom::Dash => out.push('-'),
        Atom::User => match basic_auth_user(req) {
            Some(u) if !u.is_empty() => out.push_str(&u),
            _ => out.push('-'),
        },
        Atom::Time => out.push_str(time),
        Atom::RequestLine => {
            let _ = write!(
                out,
                "{} {} {}",
                req.method(),
                req.target(),
                req.version_str()
            );
        }
        Atom::Status => {
            let _ = write!(out, "{}", r.status);
        }
        Atom::BytesClf => {
            if r.body_bytes == 0 {
                out.push('-');
            } else {
                let _ = write!(out, "{}", r.body_bytes);
            }
        }
        Atom::Bytes => {
            let _ = write!(out, "{}", r.body_bytes);
        }
        Atom::Referer => push_bytes_or_dash(out, req.header("Referer")),
        Atom::Agent => push_bytes_or_dash(out, req.header("User-Agent")),
        Atom::Method => out.push_str(req.method()),
        Atom::Path => out.push_str(req.path()),
        Atom::Query => out.push_str(req.query()),
        Atom::Protocol => out.push_str(req.version_str()),
        Atom::Secs => {
            let _ = write!(out, "{}", r.elapsed.as_secs());
        }
        Atom::Millis => {
            let _ = write!(out, "{}", r.elapsed.as_millis());
        }
        Atom::Micros => {
            let _ = write!(out, "{}", r.elapsed.as_micros());
        }
        Atom::DecimalSecs => {
            let _ = write!(out, "{:.6}", r.elapsed.as_secs_f64());
        }
        Atom::Pid => {
            let _ = write!(out, "<{}>", std::process::id());
        }
        Atom::RequestId => match req.request_id() {
            Some(id) => out.push_str(id),
            None => out.push('-'),
        },
        Atom::QueueTime => match req.queue_time() {
            Some(q) => {
                let _ = write!(out, "{:.6}", q.as_secs_f64());
            }
            None => out.push('-'),
        },
        Atom::ReqHeader(name) => push_bytes_or_dash(out, req.header(name)),
        Atom::RespHeader(name) => push_bytes_or_dash(out, header(r.response_headers, name)),
        Atom::Env(name) => match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => out.push('-'),
        },
    }
}

/// One JSON line for `r` into `s`; `time` is the current `%(t)s`.
fn format_json(s: &mut String, r: &AccessRecord<'_>, time: &str) {
    let req = r.request;
    let field = |s: &mut String, key: &str, val: &[u8], first: bool| {
        if !first {
            s.push_str(", ");
        }
        crate::apps::json_str(s, key.as_bytes());
        s.push_str(": ");
        crate::apps::json_str(s, val);
    };
    s.push('{');
    let remote = req
        .remote_addr()
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    field(s, "remote_addr", remote.as_bytes(), true);
    field(
        s,
        "time",
        time.trim_matches(|c| c == '[' || c == ']').as_bytes(),
        false,
    );
    field(s, "method", req.method().as_bytes(), false);
    field(s, "target", req.target().as_bytes(), false);
    field(s, "path", req.path().as_bytes(), false);
    field(s, "query", req.query().as_bytes(), false);
    field(s, "protocol", req.version_str().as_bytes(), false);
    s.push_str(&format!(
        ", \"status\": {}, \"bytes\": {}, \"duration_us\": {}",
        r.status,
        r.body_bytes,
        r.elapsed.as_micros()
    ));
    field(s, "referer", req.header("Referer").unwrap_or(b""), false);
    field(
        s,
        "user_agent",
        req.header("User-Agent").unwrap_or(b""),
        false,
    );
    field(s, "pid", std::process::id().to_string().as_bytes(), false);
    if let Some(id) = req.request_id() {
        field(s, "request_id", id.as_bytes(), false);
    }
    if let Some(q) = req.queue_time() {
        s.push_str(&format!(", \"queue_time_us\": {}", q.as_micros()));
    }
    s.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_messages_are_gunicorns() {
        assert_eq!(
            syslog_message(1, 3, "gunicorn.app.error", 42, "boom"),
            b"<11>gunicorn.app.error: [42] boom\0"
        );
        assert_eq!(
            syslog_message(facility_code("local7").unwrap(), 6, "t", 1, "x"),
            b"<190>t: [1] x\0"
        );
        assert_eq!(facility_code("LOCAL0"), Some(16));
        assert_eq!(facility_code("nope"), None);
        assert_eq!(severity("warning"), 4);
        assert_eq!(severity("critical"), 2);
        assert_eq!(severity("exception"), 3);
    }

    #[test]
    fn syslog_addresses_parse_like_gunicorn() {
        assert_eq!(
            parse_syslog_addr("unix:///dev/log"),
            Ok(SyslogAddr::Unix("/dev/log".into(), None))
        );
        assert_eq!(
            parse_syslog_addr("unix:///x#dgram"),
            Ok(SyslogAddr::Unix("/x".into(), Some(Type::DGRAM)))
        );
        assert_eq!(
            parse_syslog_addr("udp://Example:1514"),
            Ok(SyslogAddr::Udp("example".into(), 1514))
        );
        assert_eq!(
            parse_syslog_addr("udp://"),
            Ok(SyslogAddr::Udp("localhost".into(), 514))
        );
        assert_eq!(
            parse_syslog_addr("tcp://[::1]:9"),
            Ok(SyslogAddr::Tcp("::1".into(), 9))
        );
        assert!(parse_syslog_addr("localhost:514").is_err());
        assert!(parse_syslog_addr("udp://h:x").is_err());
        assert!(parse_syslog_addr("unix:///x#raw").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_795_621_518), (2026, 11, 25, 15, 45, 18));
    }

    #[test]
    fn pipe_writes_are_split_at_line_ends() {
        assert_eq!(line_piece(b"ab\ncd\n", 100), 6);
        assert_eq!(line_piece(b"ab\ncd\nef\n", 7), 6);
        assert_eq!(line_piece(b"abcdef\ngh\n", 4), 7, "a long line goes alone");
    }

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(base64_decode("YWxpY2U6czNjcjN0").unwrap(), b"alice:s3cr3t");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn default_format_parses_every_atom() {
        let p = parse_format(DEFAULT_ACCESS_FORMAT).unwrap();
        assert_eq!(p[0], Piece::Atom(Atom::Host));
        assert!(parse_format("%(h)s %({x-real-ip}i)s %({server}o)s %(zz)s").is_err());
        let all = "%(h)s %(l)s %(u)s %(t)s %(r)s %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s %(f)s %(a)s %(T)s %(D)s %(M)s %(L)s %(p)s %({a}i)s %({b}o)s %({c}e)s";
        assert_eq!(parse_format(all).unwrap().len(), 22 * 2 - 1);
    }
}
