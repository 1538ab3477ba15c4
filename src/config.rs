//! The settings table: one row per setting drives the command line, the TOML config
//! file, `FERRICORN_CMD_ARGS`, `--help`, `--print-config` and the reference docs.
//! Ancestor: gunicorn `config.py` (`Setting` classes). OWNER: config helper.
//!
//! [`SETTINGS`] is the only place a setting is described: its gunicorn name (which
//! is also its config-file key and its `Config` field), its flags, metavar, default,
//! help paragraph, and a validating setter plus a getter. Every front end — argv,
//! `FERRICORN_CMD_ARGS`, the `-c` TOML file, `--help`, `--print-config` and
//! [`reference_markdown`] — is a loop over this table, so a setting cannot be
//! accepted in one place and forgotten (or documented differently) in another.
//! Adding a setting means adding one row (and, usually, one `Config` field).

use crate::bind::BindAddr;
pub use crate::config_value::{Origin, Value};
use std::path::{Path, PathBuf};

/// Fully resolved settings. Field names are gunicorn's setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Never empty. A `--bind` from a source replaces the lower-precedence list.
    pub bind: Vec<BindAddr>,
    /// >= 1.
    pub workers: usize,
    /// `--threads`: app threads per worker, >= 1.
    pub threads: usize,
    /// `-k/--worker-class`: "sync" or "gthread".
    pub worker_class: String,
    /// 1..=65535.
    pub backlog: i32,
    /// Seconds a worker may spend inside the app on one request (0 = never killed).
    pub timeout: u64,
    pub graceful_timeout: u64,
    /// Idle keep-alive seconds (0 = no keep-alive: one request per connection).
    pub keepalive: u64,
    /// >= 1.
    pub worker_connections: usize,
    /// 0 = never restart a worker for its request count.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--workers auto`: `workers` is derived from the CPU and memory limits
    /// when parsing ends ([`crate::cgroup::auto_workers`]).
    pub workers_auto: bool,
    /// How `--workers auto` was derived (for the start-up log).
    pub workers_auto_reason: Option<String>,
    /// `--status-bind`: the status listener's address (None: off).
    pub status_bind: Option<BindAddr>,
    /// `--enable-backlog-metric`: statsd `gunicorn.backlog` from the master.
    pub enable_backlog_metric: bool,
    /// `--shutdown-delay`: seconds between TERM and the graceful stop.
    pub shutdown_delay: u64,
    /// `--request-id-header`: header carrying the request id ("" = off).
    pub request_id_header: String,
    /// `--max-worker-lifetime`: seconds (0 = never).
    pub max_worker_lifetime: u64,
    /// `--max-worker-memory`: MiB of RSS (0 = no limit).
    pub max_worker_memory: u64,
    /// 1..=8190 (a configured 0 is stored as the maximum, 8190).
    pub limit_request_line: usize,
    /// 1..=32768.
    pub limit_request_fields: usize,
    /// 0 = unlimited.
    pub limit_request_field_size: usize,
    /// Max body bytes, 0 = unlimited.
    pub limit_request_body: u64,
    /// Seconds a client has to send a complete request head (>= 1); then 408 and close.
    pub header_timeout: u64,
    /// One of `debug`, `info`, `warning`, `error`, `critical` (lowercase).
    pub loglevel: String,
    /// `-` = stderr.
    pub errorlog: String,
    /// None = no access log, `-` = stdout.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    /// `--log-syslog`: error-log records (and access lines) also go to syslog.
    pub syslog: bool,
    /// `--log-syslog-to`: `unix://PATH[#dgram|#stream]`, `udp://HOST:PORT`, `tcp://HOST:PORT`.
    /// None = [`crate::logging::default_syslog_addr`].
    pub syslog_addr: Option<String>,
    /// `--log-syslog-prefix`: the NAME in the `gunicorn.NAME.error` tag (default: proc_name/app).
    pub syslog_prefix: Option<String>,
    /// `--log-syslog-facility`: a facility name (`user`, `daemon`, `local0`..`local7`, ...).
    pub syslog_facility: String,
    /// `--disable-redirect-access-to-syslog`.
    pub disable_redirect_access_to_syslog: bool,
    /// `--statsd-host`: HOST:PORT or unix://PATH; None = no metrics.
    pub statsd_host: Option<String>,
    /// `--statsd-prefix` (a trailing `.` is added when sending).
    pub statsd_prefix: String,
    /// `--dogstatsd-tags`: appended to every metric as `|#TAGS`.
    pub dogstatsd_tags: String,
    /// `--capture-output`: fds 1 and 2 go to the --error-logfile file.
    pub capture_output: bool,
    /// `-R/--enable-stdio-inheritance`: --daemon keeps stdout/stderr.
    pub enable_stdio_inheritance: bool,
    /// `--log-config`: a Python logging fileConfig file for the app.
    pub logconfig: Option<String>,
    /// `logconfig_dict`: a Python logging dictConfig, as JSON text ("" = unset).
    pub logconfig_dict: String,
    /// `--log-config-json`: a JSON file for Python's dictConfig.
    pub logconfig_json: Option<String>,
    /// `--reload`: restart workers when a watched file changes.
    pub reload: bool,
    /// `--reload-engine`: `auto`, `inotify` (or `poll`, which means inotify).
    pub reload_engine: String,
    /// `--reload-extra-file`: more files to watch.
    pub reload_extra_files: Vec<String>,
    pub pidfile: Option<PathBuf>,
    /// <= 0o777.
    pub umask: u32,
    /// `-e/--env KEY=VALUE`: set in the master's environment before the app
    /// is loaded, so workers inherit it.
    pub raw_env: Vec<String>,
    /// Absolute (canonicalized) directory; it existed when the config was parsed.
    pub chdir: Option<PathBuf>,
    pub proc_name: Option<String>,
    pub daemon: bool,
    /// `--forwarded-allow-ips`: peers whose X-Forwarded-* headers are believed.
    pub forwarded_allow_ips: String,
    /// `--secure-scheme-headers`: `NAME=value,...` meaning https from a trusted peer.
    pub secure_scheme_headers: String,
    /// `--proxy-protocol`: expect a PROXY v1/v2 header on every connection.
    pub proxy_protocol: bool,
    /// `--proxy-allow-from`: peers allowed to send a PROXY header.
    pub proxy_allow_ips: String,
    /// `--tmp-upload-dir`: where bodies too big for memory are spooled (unlinked files).
    pub tmp_upload_dir: Option<PathBuf>,
    /// `--body-buffer-size`: request bodies up to this size stay in memory.
    pub body_buffer_size: u64,
    /// `--socket-mode`: permissions of Unix socket files (None: from the umask).
    pub socket_mode: Option<u32>,
    /// `--socket-group`: group owning Unix socket files.
    pub socket_group: Option<String>,
    /// `-u/--user`: run workers (and the master after binding) as this user.
    pub user: Option<String>,
    /// `-g/--group`: run workers (and the master after binding) as this group.
    pub group: Option<String>,
    /// `--pythonpath`: directories prepended to `sys.path` (Python apps only).
    pub pythonpath: Vec<String>,
    /// `--preload`: import the Python app in the master, before forking.
    pub preload_app: bool,
    /// `--ws-max-size`: bytes per WebSocket message (0 = unlimited).
    pub websocket_max_message_size: u64,
    /// `--ws-ping-interval`, in ms (0 = no pings).
    pub ws_ping_interval_ms: u64,
    /// `--ws-ping-timeout`, in ms (0 = wait for ever).
    pub ws_ping_timeout_ms: u64,
    /// `--root-path`: the WSGI `SCRIPT_NAME` the app is mounted at ("" or "/x", no trailing `/`).
    pub root_path: String,
    /// `--interface`: "auto", "asgi" or "wsgi".
    pub interface: String,
    /// `--asgi-loop`: "auto", "asyncio" or "uvloop".
    pub asgi_loop: String,
    /// `--asgi-lifespan`: "auto", "on" or "off".
    pub asgi_lifespan: String,
    /// The positional APP (default "welcome").
    pub app: String,
    /// The config file this came from, if any (re-read on HUP). Absolute.
    pub config_file: Option<PathBuf>,
    /// `--check-config` was given.
    pub check_config: bool,
    /// `--print-config` was given.
    pub print_config: bool,
    /// The original command-line args (without `argv[0]`), re-parsed by [`Config::reload`].
    pub args: Vec<String>,
    /// The working directory at startup: relative `-c`/`--chdir` paths are resolved
    /// against it, also on reload after the server has changed directory.
    pub launch_dir: PathBuf,
    /// gunicorn settings that were accepted and ignored, one line each, for the
    /// binary to log once logging is set up.
    pub warnings: Vec<String>,
    /// Pass CONNECT requests to the app (library only, `Server::allow_connect`;
    /// no setting, since no built-in app can make a tunnel): false = 501.
    pub allow_connect: bool,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Action {
    Run(Config),
    /// Print this text to stdout and exit 0 (`--help`, `--version`, `--print-config`).
    Print(String),
    /// `--check-config`: config is valid; exit 0.
    Check(Config),
}

/// One row of the settings table.
#[derive(Clone, Copy)]
pub struct Setting {
    /// gunicorn's setting name: the config-file key and the `Config` field.
    pub name: &'static str,
    /// Section heading in `--help` and the reference (gunicorn's sections).
    pub section: &'static str,
    /// Command-line flags; the first `--long` one is the canonical name used in errors.
    pub flags: &'static [&'static str],
    /// Placeholder for the value in help (`INT`, `ADDRESS`, ...); empty for boolean flags.
    pub metavar: &'static str,
    /// The default, as shown to humans.
    pub default: &'static str,
    /// One paragraph of help.
    pub help: &'static str,
    /// false = boolean flag (no value on the command line; `true`/`false` in the file).
    pub takes_value: bool,
    /// May be given several times, accumulating (`bind`). The first occurrence in a
    /// source (file, env, command line) replaces what lower-precedence sources set.
    pub repeatable: bool,
    /// Only meaningful on the command line / `FERRICORN_CMD_ARGS` (`config`,
    /// `check_config`, `print_config`): rejected in the file, left out of `--print-config`.
    pub cli_only: bool,
    /// Validate and store a value given in string form. The error is the reason only
    /// (e.g. "must be a positive integer"); callers add the flag and the value.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The current value as a TOML value (for `--print-config`).
    pub get: fn(&Config) -> String,
}

impl Setting {
    /// The canonical flag: the first `--long` flag.
    pub fn flag(&self) -> &'static str {
        self.flags
            .iter()
            .copied()
            .find(|f| f.starts_with("--"))
            .unwrap_or(self.flags[0])
    }

    /// `-w INT, --workers INT` (or `-D, --daemon`).
    pub fn synopsis(&self) -> String {
        self.flags
            .iter()
            .map(|f| {
                if self.takes_value {
                    format!("{f} {}", self.metavar)
                } else {
                    f.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Look a setting up by its name (config-file key).
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

fn by_flag(flag: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.flags.contains(&flag))
}

/// The built-in applications accepted as the positional APP.
pub const BUILTIN_APPS: &[&str] = &["welcome", "hello", "echo"];
/// The APP used when none is given.
pub const DEFAULT_APP: &str = "welcome";
/// gunicorn's default access log format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// Environment variable holding extra arguments (like `GUNICORN_CMD_ARGS`).
pub const CMD_ARGS_ENV: &str = "FERRICORN_CMD_ARGS";
/// Largest accepted request line (also what `--limit-request-line 0` means).
pub const MAX_REQUEST_LINE: usize = 8190;
/// Largest accepted `--limit-request-fields`.
pub const MAX_REQUEST_FIELDS: usize = 32768;
const LOG_LEVELS: &[&str] = &["debug", "info", "warning", "error", "critical"];

// ---------------------------------------------------------------------------
// Value helpers shared by the setters and getters.

const POSITIVE: &str = "must be a positive integer";
const NON_NEGATIVE: &str = "must be a non-negative integer";

fn digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn non_negative<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    if !digits(v) {
        return Err(NON_NEGATIVE.into());
    }
    v.parse().map_err(|_| "number too large".into())
}

fn positive<T: std::str::FromStr + PartialEq + Default>(v: &str) -> Result<T, String> {
    if !digits(v) {
        return Err(POSITIVE.into());
    }
    let n: T = v.parse().map_err(|_| "number too large".to_string())?;
    if n == T::default() {
        return Err(POSITIVE.into());
    }
    Ok(n)
}

fn in_range(v: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let why = || format!("must be an integer from {lo} to {hi}");
    if !digits(v) {
        return Err(why());
    }
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(why()),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

/// Seconds, decimals allowed (`20`, `0.5`), as milliseconds.
fn seconds_ms(v: &str) -> Result<u64, String> {
    let why = || "must be a non-negative number of seconds".to_string();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if !digits(int) || !(frac.is_empty() || digits(frac)) || v.ends_with('.') {
        return Err(why());
    }
    let whole: u64 = int.parse().map_err(|_| "number too large".to_string())?;
    let mut ms = 0;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms += u64::from(d - b'0') * [100, 10, 1][i];
    }
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(ms))
        .ok_or_else(|| "number too large".to_string())
}

/// Milliseconds as seconds, the way `seconds_ms` reads them back.
fn ms_seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

/// `1048576`, `512k`, `10m`, `1g` (powers of 1024; case-insensitive; optional `b`).
fn byte_size(v: &str) -> Result<u64, String> {
    let why = || "must be a number of bytes, optionally with a k, m or g suffix".to_string();
    let lower = v.to_ascii_lowercase();
    let s = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g') => (&s[..s.len() - 1], 1 << 30),
        _ if lower.ends_with('b') => return Err(why()),
        _ => (s, 1),
    };
    if !digits(num) {
        return Err(why());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| "number too large".to_string())
}

/// gunicorn parses the umask with Python's `int(x, 0)`: decimal, `0o`, `0x`, `0b`.
/// A leading `0` (`022`), an error in Python 3, is accepted here as octal, since
/// that is how every umask is written.
fn umask_value(v: &str) -> Result<u32, String> {
    let why = || "must be an integer: decimal, 0o/0x/0b-prefixed, or octal with a leading 0";
    let lower = v.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(why().into());
    }
    match u32::from_str_radix(digits, radix) {
        Ok(n) if n <= 0o777 => Ok(n),
        Ok(_) => Err("must be at most 0o777".into()),
        Err(_) => Err(why().into()),
    }
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_string())
    }
}

/// Optional strings: the empty string means "not set" (that is how `--print-config`
/// writes an unset value, since TOML has no null).
fn optional(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

/// A TOML basic string.
pub fn toml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn q_opt(s: &Option<String>) -> String {
    toml_quote(s.as_deref().unwrap_or(""))
}

fn q_path(p: &Option<PathBuf>) -> String {
    toml_quote(
        &p.as_deref()
            .map(|p| p.to_string_lossy())
            .unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------
// The table.

/// Every setting, in `--help` / `--print-config` / reference order (grouped by section).
pub static SETTINGS: &[Setting] = &[
    // ----- Config File
    Setting {
        name: "config",
        section: "Config File",
        flags: &["-c", "--config"],
        metavar: "FILE",
        default: "None",
        help: "Load settings from this file: a gunicorn config file (Python: a name \
               ending in .py, or python:MODULE for an importable module), or TOML. \
               Without -c, ./ferricorn.conf.py or else ./gunicorn.conf.py is read if it \
               exists. A Python file is run by the embedded interpreter in the master \
               before anything is bound; its module-level names that are settings are \
               applied (others are ignored), `wsgi_app` names the app, and callables \
               named after gunicorn's server hooks (post_fork, when_ready, ...) are \
               called at the same moments. TOML keys are the setting names shown in \
               brackets in this help, e.g. `workers = 4`, \
               `bind = [\"127.0.0.1:8000\", \"unix:/run/app.sock\"]`. File values \
               override the built-in defaults and are overridden by GUNICORN_CMD_ARGS, \
               FERRICORN_CMD_ARGS and the command line. The file may also be named in \
               those variables. It is re-read on SIGHUP; a file that fails then leaves \
               the running configuration in place. A relative path is relative to the \
               directory ferricorn was started in.",
        takes_value: true,
        repeatable: false,
        cli_only: true,
        set: |c, v| {
            non_empty(v)?;
            c.config_file = Some(config_path(v, &c.launch_dir));
            Ok(())
        },
        get: |c| q_path(&c.config_file),
    },
    Setting {
        name: "check_config",
        section: "Config File",
        flags: &["--check-config"],
        metavar: "",
        default: "False",
        help: "Check the configuration (command line, FERRICORN_CMD_ARGS and config \
               file) and exit: status 0 if it is valid, 1 with an error message if not.",
        takes_value: false,
        repeatable: false,
        cli_only: true,
        set: |c, v| {
            c.check_config = boolean(v)?;
            Ok(())
        },
        get: |c| c.check_config.to_string(),
    },
    Setting {
        name: "print_config",
        section: "Config File",
        flags: &["--print-config"],
        metavar: "",
        default: "False",
        help: "Print the fully resolved configuration, one `name = value` line per \
               setting, and exit. The output is TOML and can be fed back with -c; an \
               unset optional setting is printed as \"\".",
        takes_value: false,
        repeatable: false,
        cli_only: true,
        set: |c, v| {
            c.print_config = boolean(v)?;
            Ok(())
        },
        get: |c| c.print_config.to_string(),
    },
    Setting {
        name: "wsgi_app",
        section: "Config File",
        flags: &["--wsgi-app"],
        metavar: "APP",
        default: "welcome",
        help: "The application, as the positional APP names it (which wins over this); \
               gunicorn's way of naming the app in a config file.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.app = non_empty(v)?;
            Ok(())
        },
        get: |c| toml_quote(&c.app),
    },
    // ----- Server Socket
    Setting {
        name: "bind",
        section: "Server Socket",
        flags: &["-b", "--bind"],
        metavar: "ADDRESS",
        default: "127.0.0.1:8000",
        help: "The socket to listen on. Repeat the flag to listen on several sockets; \
               a --bind replaces the default rather than adding to it. Forms: HOST:PORT \
               (HOST is an IPv4 address, `localhost`, or a host name, which is resolved \
               and its first address used), HOST alone (port 8000), [IPV6]:PORT or \
               [IPV6] (port 8000), unix:PATH (or unix://PATH) for a Unix domain socket, \
               and fd://N for an inherited, already listening file descriptor N. The \
               default is 127.0.0.1:8000, or 0.0.0.0:$PORT if the PORT environment \
               variable is set. In the config file, give a string or an array of strings.",
        takes_value: true,
        repeatable: true,
        cli_only: false,
        set: |c, v| {
            c.bind.push(BindAddr::parse(v)?);
            Ok(())
        },
        get: |c| {
            let items: Vec<String> = c.bind.iter().map(|b| toml_quote(&b.to_string())).collect();
            format!("[{}]", items.join(", "))
        },
    },
    Setting {
        name: "backlog",
        section: "Server Socket",
        flags: &["--backlog"],
        metavar: "INT",
        default: "2048",
        help: "The maximum number of pending connections (the listen(2) backlog). When \
               it is full, clients get connection errors. From 1 to 65535; the kernel \
               may cap it further (net.core.somaxconn).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.backlog = in_range(v, 1, 65535)? as i32;
            Ok(())
        },
        get: |c| c.backlog.to_string(),
    },
    // ----- Worker Processes
    Setting {
        name: "workers",
        section: "Worker Processes",
        flags: &["-w", "--workers"],
        metavar: "INT",
        default: "1",
        help: "The number of worker processes handling requests, a positive integer, \
               typically 2 to 4 times the number of cores, or `auto`: 2 x the CPUs this \
               process may use (cgroup CPU quota, cpuset, affinity) + 1, capped so that \
               --max-worker-memory (else 128 MiB) per worker fits a cgroup memory limit; \
               the start-up log says how it was derived. The default is the value of \
               the WEB_CONCURRENCY environment variable if set, else 1.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.workers_auto = v == "auto";
            c.workers = if c.workers_auto { 1 } else { positive(v)? };
            Ok(())
        },
        get: |c| {
            if c.workers_auto {
                toml_quote("auto")
            } else {
                c.workers.to_string()
            }
        },
    },
    Setting {
        name: "worker_class",
        section: "Worker Processes",
        flags: &["-k", "--worker-class"],
        metavar: "STRING",
        default: "sync",
        help: "The type of worker: `sync` calls the app on the worker's event-loop \
               thread, one request at a time per worker (the fastest choice for apps \
               that do not wait on I/O); `gthread` calls it on a pool of --threads \
               threads per worker, while the event loop goes on serving other \
               connections. As in gunicorn, `sync` with --threads above 1 means \
               `gthread`; `asgi` (also spelled `uvicorn.workers.UvicornWorker` or \
               `uvicorn_worker.UvicornWorker`) serves an ASGI app on an asyncio loop \
               per worker (see --interface). Other gunicorn worker classes (gevent, \
               eventlet, tornado) are not available.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            match v {
                "sync" | "gthread" => c.worker_class = v.to_string(),
                // gunicorn's native ASGI worker and the uvicorn ones.
                other if crate::config_gunicorn::is_asgi_worker_class(other) => {
                    c.worker_class = "asgi".to_string()
                }
                other => return Err(crate::config_gunicorn::worker_class_refusal(other)),
            }
            Ok(())
        },
        get: |c| toml_quote(&c.worker_class),
    },
    Setting {
        name: "threads",
        section: "Worker Processes",
        flags: &["--threads"],
        metavar: "INT",
        default: "1",
        help: "The number of threads per worker that run the app (the gthread worker): \
               while one request waits on a database or an API, the worker's other \
               threads serve others, and its event loop keeps reading, writing and \
               timing connections. When all threads are busy, further requests wait \
               in their connections (not in a queue), and new connections go to \
               workers with idle threads. --timeout still limits every request: one \
               that runs longer gets a 504 and its worker is replaced, its other \
               requests finishing first. The worker's own thread is one of the N: \
               while the app's calls are short it runs them itself, as -k sync does, \
               lending the event loop to a stand-in thread, so threads cost nothing \
               where they do not help. 1 (the default, with -k sync) calls the app \
               on the event loop thread. A Rust app needs `Send` to run on threads.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.threads = positive(v)?;
            Ok(())
        },
        get: |c| c.threads.to_string(),
    },
    Setting {
        name: "worker_connections",
        section: "Worker Processes",
        flags: &["--worker-connections"],
        metavar: "INT",
        default: "1000",
        help: "The maximum number of simultaneous client connections per worker. \
               A worker at the limit leaves new connections to a worker with room; \
               when every worker is full, it closes its longest-idle connections \
               (idle keep-alive, or never sent a byte) to admit new ones, as nginx \
               does, and logs a warning once a second while it does.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.worker_connections = positive(v)?;
            Ok(())
        },
        get: |c| c.worker_connections.to_string(),
    },
    Setting {
        name: "max_requests",
        section: "Worker Processes",
        flags: &["--max-requests"],
        metavar: "INT",
        default: "0",
        help: "Restart a worker after it has handled this many requests, a simple \
               guard against memory leaks. 0 disables these restarts.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.max_requests = non_negative(v)?;
            Ok(())
        },
        get: |c| c.max_requests.to_string(),
    },
    Setting {
        name: "max_requests_jitter",
        section: "Worker Processes",
        flags: &["--max-requests-jitter"],
        metavar: "INT",
        default: "0",
        help: "Add a random number of requests between 0 and this value to \
               --max-requests for each worker, so that workers do not all restart at \
               the same time.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.max_requests_jitter = non_negative(v)?;
            Ok(())
        },
        get: |c| c.max_requests_jitter.to_string(),
    },
    // --- Observability and orchestration (issue 16): one contiguous block.
    Setting {
        name: "status_bind",
        section: "Worker Processes",
        flags: &["--status-bind"],
        metavar: "ADDRESS",
        default: "None",
        help: "Serve the status listener on this address (unix:PATH or HOST:PORT): \
               GET /healthz, /readyz, /metrics (Prometheus; OpenMetrics when Accept asks) \
               and /status (JSON), answered by the master from the workers' shared \
               counters. Off by default; it must not be one of the --bind addresses. \
               `ferricorn status --status-bind ADDRESS` prints a table from it.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.status_bind = match optional(v) {
                Some(a) => match BindAddr::parse(&a)? {
                    BindAddr::Fd(_) => return Err("must be unix:PATH or HOST:PORT".into()),
                    b => Some(b),
                },
                None => None,
            };
            Ok(())
        },
        get: |c| {
            toml_quote(
                &c.status_bind
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            )
        },
    },
    Setting {
        name: "shutdown_delay",
        section: "Worker Processes",
        flags: &["--shutdown-delay"],
        metavar: "INT",
        default: "0",
        help: "On TERM, turn /readyz to 503 at once but keep the workers accepting and \
               serving for this many seconds before the graceful stop begins, so that a \
               load balancer (a Kubernetes Service) stops sending new connections first. \
               Replaces a `preStop: sleep` hook. A second TERM, or QUIT/INT, stops at once.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.shutdown_delay = non_negative(v)?;
            Ok(())
        },
        get: |c| c.shutdown_delay.to_string(),
    },
    Setting {
        name: "request_id_header",
        section: "Worker Processes",
        flags: &["--request-id-header"],
        metavar: "NAME",
        default: "X-Request-Id",
        help: "The request header carrying a request id. A sane id the client or proxy \
               sent (1 to 128 visible ASCII characters) is passed through, else one is \
               generated; the app gets it (Request::request_id, WSGI environ \
               `ferricorn.request_id`), the access log has it (`%(request_id)s`, and the \
               json format), and every error-log line about the request ends with \
               `[request_id=ID]`, the WORKER TIMEOUT line included. An empty value turns \
               request ids off.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err("must be a header name (letters, digits, '-', '_')".into());
            }
            c.request_id_header = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.request_id_header),
    },
    Setting {
        name: "max_worker_lifetime",
        section: "Worker Processes",
        flags: &["--max-worker-lifetime"],
        metavar: "INT",
        default: "0",
        help: "Replace a worker after it has run this many seconds (plus a random jitter \
               of up to 10%, so workers do not all go at once). Readiness-gated like HUP: \
               the replacement accepts before the old worker stops. 0 disables.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.max_worker_lifetime = non_negative(v)?;
            Ok(())
        },
        get: |c| c.max_worker_lifetime.to_string(),
    },
    Setting {
        name: "max_worker_memory",
        section: "Worker Processes",
        flags: &["--max-worker-memory"],
        metavar: "MIB",
        default: "0",
        help: "Replace a worker whose resident memory (sampled by the master from /proc \
               every second) stays above this many MiB for 3 samples in a row. \
               Readiness-gated like HUP. 0 disables.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.max_worker_memory = non_negative(v)?;
            Ok(())
        },
        get: |c| c.max_worker_memory.to_string(),
    },
    Setting {
        name: "timeout",
        section: "Worker Processes",
        flags: &["-t", "--timeout"],
        metavar: "INT",
        default: "30",
        help: "A worker that spends more than this many seconds inside the application \
               on one request is killed and restarted. Unlike gunicorn's sync worker, \
               whose timeout counts all the time since the worker last checked in \
               (including time spent waiting for a slow client), ferricorn counts only \
               the time spent inside the app; reading a request and idle keep-alive \
               connections are bounded separately by --header-timeout and --keep-alive. \
               0 disables the timeout.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.timeout = non_negative(v)?;
            Ok(())
        },
        get: |c| c.timeout.to_string(),
    },
    Setting {
        name: "graceful_timeout",
        section: "Worker Processes",
        flags: &["--graceful-timeout"],
        metavar: "INT",
        default: "30",
        help: "After a graceful shutdown or restart signal, workers get this many \
               seconds to finish the requests they are serving; workers still alive \
               after that are killed.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.graceful_timeout = non_negative(v)?;
            Ok(())
        },
        get: |c| c.graceful_timeout.to_string(),
    },
    Setting {
        name: "keepalive",
        section: "Worker Processes",
        flags: &["--keep-alive"],
        metavar: "INT",
        default: "75",
        help: "The number of seconds to wait for the next request on an idle keep-alive \
               connection. The default, 75, is deliberately longer than nginx's default \
               upstream keepalive_timeout of 60 seconds, so that nginx, not ferricorn, \
               closes idle upstream connections, and nginx never sends a request on a \
               connection ferricorn is in the middle of closing (seen as sporadic 502 \
               errors). gunicorn's 2-second default causes exactly those races behind \
               a proxy that keeps upstream connections alive. Keep it above your \
               proxy's idle timeout. 0 disables keep-alive (one request per connection).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.keepalive = non_negative(v)?;
            Ok(())
        },
        get: |c| c.keepalive.to_string(),
    },
    // ----- Security
    Setting {
        name: "limit_request_line",
        section: "Security",
        flags: &["--limit-request-line"],
        metavar: "INT",
        default: "4094",
        help: "The maximum size in bytes of the HTTP request line (method, URI and \
               version); a longer one is rejected. From 0 to 8190, where 0 means the \
               maximum, 8190. Limiting it guards against oversized-URI denial of service.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            let n = in_range(v, 0, MAX_REQUEST_LINE as u64)? as usize;
            c.limit_request_line = if n == 0 { MAX_REQUEST_LINE } else { n };
            Ok(())
        },
        get: |c| c.limit_request_line.to_string(),
    },
    Setting {
        name: "limit_request_fields",
        section: "Security",
        flags: &["--limit-request-fields"],
        metavar: "INT",
        default: "100",
        help: "The maximum number of header fields in a request; a request with more \
               is rejected. From 1 to 32768.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.limit_request_fields = in_range(v, 1, MAX_REQUEST_FIELDS as u64)? as usize;
            Ok(())
        },
        get: |c| c.limit_request_fields.to_string(),
    },
    Setting {
        name: "limit_request_field_size",
        section: "Security",
        flags: &["--limit-request-field_size", "--limit-request-field-size"],
        metavar: "INT",
        default: "8190",
        help: "The maximum size in bytes of one request header field (name and value); \
               a request with a bigger one is rejected. 0 means unlimited. The flag is \
               spelled --limit-request-field_size as in gunicorn; \
               --limit-request-field-size is accepted too.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.limit_request_field_size = non_negative(v)?;
            Ok(())
        },
        get: |c| c.limit_request_field_size.to_string(),
    },
    Setting {
        name: "limit_request_body",
        section: "Security",
        flags: &["--limit-request-body"],
        metavar: "BYTES",
        default: "1073741824",
        help: "The maximum size of a request body in bytes; a bigger body is rejected \
               with 413. Accepts the suffixes k, m and g (powers of 1024), e.g. 10m. \
               The default is 1 GiB; 0 means unlimited.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.limit_request_body = byte_size(v)?;
            Ok(())
        },
        get: |c| c.limit_request_body.to_string(),
    },
    Setting {
        name: "header_timeout",
        section: "Security",
        flags: &["--header-timeout"],
        metavar: "SECONDS",
        default: "10",
        help: "The number of seconds a client gets to send a complete request head \
               (request line and headers), counted from the connection's accept for its \
               first request and from the first byte of each later one (between \
               requests, --keep-alive applies). A client that is slower, or sends \
               nothing, gets 408 Request Timeout and the connection is closed, so slow \
               or silent clients (slowloris) cannot tie up connections. A positive \
               integer. (Not a gunicorn setting.)",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.header_timeout = positive(v)?;
            Ok(())
        },
        get: |c| c.header_timeout.to_string(),
    },
    // ----- Logging
    Setting {
        name: "accesslog",
        section: "Logging",
        flags: &["--access-logfile"],
        metavar: "FILE",
        default: "None",
        help: "The access log file to write to; `-` means stdout. By default no access \
               log is written.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.accesslog = optional(v);
            Ok(())
        },
        get: |c| q_opt(&c.accesslog),
    },
    Setting {
        name: "access_log_format",
        section: "Logging",
        flags: &["--access-logformat"],
        metavar: "STRING",
        default: DEFAULT_ACCESS_LOG_FORMAT,
        help: "The access log format, in gunicorn's %(atom)s syntax: h remote address, \
               l `-`, u user name, t date of the request, r request line, m method, \
               U path, q query string, H protocol, s status, b response length (`-` for \
               0), B response length, f referer, a user agent, T request time in \
               seconds, M in milliseconds, D in microseconds, L in decimal seconds, \
               p process id, {name}i a request header, {name}o a response header, \
               {name}e an environment variable. Or a named format: `combined` \
               (nginx's) or `json` (one JSON object per line, every value escaped).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            crate::logging::check_format(v)?;
            c.access_log_format = non_empty(v)?;
            Ok(())
        },
        get: |c| toml_quote(&c.access_log_format),
    },
    Setting {
        name: "errorlog",
        section: "Logging",
        flags: &["--error-logfile", "--log-file"],
        metavar: "FILE",
        default: "-",
        help: "The error log file to write to; `-` means stderr.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.errorlog = non_empty(v)?;
            Ok(())
        },
        get: |c| toml_quote(&c.errorlog),
    },
    Setting {
        name: "loglevel",
        section: "Logging",
        flags: &["--log-level"],
        metavar: "LEVEL",
        default: "info",
        help: "The granularity of error log output: debug, info, warning, error or \
               critical.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            let mut l = v.to_ascii_lowercase();
            if l == "warn" {
                // Python's logging knows WARN as WARNING.
                l = "warning".into();
            }
            if !LOG_LEVELS.contains(&l.as_str()) {
                return Err(format!("must be one of {}", LOG_LEVELS.join(", ")));
            }
            c.loglevel = l;
            Ok(())
        },
        get: |c| toml_quote(&c.loglevel),
    },
    // ----- Logging: syslog, statsd, captured output, the app's Python logging
    //       (and Debugging: --reload). Implemented in logging.rs, statsd.rs,
    //       reload.rs and python/runtime.rs.
    Setting {
        name: "capture_output",
        section: "Logging",
        flags: &["--capture-output"],
        metavar: "",
        default: "False",
        help: "Redirect the standard output and error of the server and its \
               workers (so whatever the app prints) to the --error-logfile file. \
               Without effect when the error log is stderr (`-`). Python buffers \
               its stdout when it is a file: print(..., flush=True) or set \
               PYTHONUNBUFFERED=1 to see lines at once.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.capture_output = boolean(v)?;
            Ok(())
        },
        get: |c| c.capture_output.to_string(),
    },
    Setting {
        name: "enable_stdio_inheritance",
        section: "Logging",
        flags: &["-R", "--enable-stdio-inheritance"],
        metavar: "",
        default: "False",
        help: "With --daemon, keep standard output and error where they point \
               unless they are a terminal (so `ferricorn -D -R app > out.log \
               2>&1` keeps writing to out.log) instead of sending them to \
               /dev/null. Standard input is /dev/null either way. To see Python \
               output unbuffered, set PYTHONUNBUFFERED=1.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.enable_stdio_inheritance = boolean(v)?;
            Ok(())
        },
        get: |c| c.enable_stdio_inheritance.to_string(),
    },
    Setting {
        name: "logconfig",
        section: "Logging",
        flags: &["--log-config"],
        metavar: "FILE",
        default: "None",
        help: "A Python logging configuration file (the logging.config.fileConfig \
               format), applied in every worker before a WSGI app is imported, with \
               existing loggers kept. It configures the app's Python logging; \
               ferricorn's own error and access logs are set by the other logging \
               settings. The file must exist.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !v.is_empty() && !c.launch_dir.join(v).is_file() {
                return Err("no such file".into());
            }
            c.logconfig = optional(v).map(|v| c.launch_dir.join(v).display().to_string());
            Ok(())
        },
        get: |c| q_opt(&c.logconfig),
    },
    Setting {
        name: "logconfig_dict",
        section: "Logging",
        flags: &["--logconfig-dict"],
        metavar: "JSON",
        default: "{}",
        help: "A Python logging configuration dictionary (logging.config.dictConfig), \
               applied like --log-config and taking precedence over it and \
               --log-config-json; gunicorn's default configuration fills in what it \
               leaves out, as in gunicorn. Usually set in a Python config file \
               (`logconfig_dict = {...}`); on the command line (--logconfig-dict is \
               ferricorn's: gunicorn has no flag for it) and in TOML it is JSON text.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            let t = v.trim();
            let is_dict = t.starts_with('{') && t.ends_with('}');
            if !t.is_empty() && !is_dict {
                return Err("must be a dictionary (JSON object)".into());
            }
            c.logconfig_dict = if t == "{}" {
                String::new()
            } else {
                t.to_string()
            };
            Ok(())
        },
        get: |c| {
            toml_quote(if c.logconfig_dict.is_empty() {
                "{}"
            } else {
                &c.logconfig_dict
            })
        },
    },
    Setting {
        name: "logconfig_json",
        section: "Logging",
        flags: &["--log-config-json"],
        metavar: "FILE",
        default: "None",
        help: "A JSON file holding a logging.config.dictConfig dictionary, applied \
               like --log-config (which it takes precedence over).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !v.is_empty() && !c.launch_dir.join(v).is_file() {
                return Err("no such file".into());
            }
            c.logconfig_json = optional(v).map(|v| c.launch_dir.join(v).display().to_string());
            Ok(())
        },
        get: |c| q_opt(&c.logconfig_json),
    },
    Setting {
        name: "syslog",
        section: "Logging",
        flags: &["--log-syslog"],
        metavar: "",
        default: "False",
        help: "Also send the error log, and the access log (see \
               --disable-redirect-access-to-syslog), to syslog, as gunicorn does: \
               one message per line, `<PRI>gunicorn.NAME.error: [PID] message` \
               (`.access` for access lines), NAME from --log-syslog-prefix.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.syslog = boolean(v)?;
            Ok(())
        },
        get: |c| c.syslog.to_string(),
    },
    Setting {
        name: "syslog_addr",
        section: "Logging",
        flags: &["--log-syslog-to"],
        metavar: "SYSLOG_ADDR",
        default: "None",
        help: "Where syslog messages go: unix://PATH (a datagram socket, else a \
               stream socket; #dgram or #stream after the path chooses), \
               udp://HOST:PORT or tcp://HOST:PORT (port 514 by default). The default \
               is unix:///dev/log where it exists, else udp://localhost:514 \
               (gunicorn's Linux default, which local syslog daemons usually do not \
               listen on).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !v.is_empty() {
                crate::logging::parse_syslog_addr(v)?;
            }
            c.syslog_addr = optional(v);
            Ok(())
        },
        get: |c| q_opt(&c.syslog_addr),
    },
    Setting {
        name: "syslog_prefix",
        section: "Logging",
        flags: &["--log-syslog-prefix"],
        metavar: "SYSLOG_PREFIX",
        default: "None",
        help: "The NAME in syslog tags (`gunicorn.NAME.error`, \
               `gunicorn.NAME.access`). By default the --name, else the APP, with \
               `:` replaced by `.`.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.syslog_prefix = optional(v);
            Ok(())
        },
        get: |c| q_opt(&c.syslog_prefix),
    },
    Setting {
        name: "syslog_facility",
        section: "Logging",
        flags: &["--log-syslog-facility"],
        metavar: "SYSLOG_FACILITY",
        default: "user",
        help: "The syslog facility name: auth, authpriv, cron, daemon, ftp, kern, \
               lpr, mail, news, syslog, user, uucp or local0 to local7.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if crate::logging::facility_code(v).is_none() {
                return Err("unknown syslog facility".into());
            }
            c.syslog_facility = v.to_ascii_lowercase();
            Ok(())
        },
        get: |c| toml_quote(&c.syslog_facility),
    },
    Setting {
        name: "disable_redirect_access_to_syslog",
        section: "Logging",
        flags: &["--disable-redirect-access-to-syslog"],
        metavar: "",
        default: "False",
        help: "With --log-syslog, keep access-log lines out of syslog.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.disable_redirect_access_to_syslog = boolean(v)?;
            Ok(())
        },
        get: |c| c.disable_redirect_access_to_syslog.to_string(),
    },
    Setting {
        name: "statsd_host",
        section: "Logging",
        flags: &["--statsd-host"],
        metavar: "STATSD_ADDR",
        default: "None",
        help: "Send StatsD metrics to HOST:PORT (UDP; port 8125 if left out) or \
               unix://PATH (a Unix datagram socket), with gunicorn's names: per \
               request gunicorn.request.duration (ms timer), gunicorn.requests and \
               gunicorn.request.status.CODE (counters); gunicorn.workers (gauge, \
               from the master, when the number of workers changes); \
               gunicorn.log.critical, .error, .exception and .warning (counters, \
               for the lines gunicorn logs at those levels). Sends never block; a \
               metric that cannot be sent is dropped.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !v.is_empty() {
                crate::statsd::parse_target(v)?;
            }
            c.statsd_host = optional(v);
            Ok(())
        },
        get: |c| q_opt(&c.statsd_host),
    },
    Setting {
        name: "statsd_prefix",
        section: "Logging",
        flags: &["--statsd-prefix"],
        metavar: "STATSD_PREFIX",
        default: "None",
        help: "A prefix for every metric name; a trailing `.` is added if missing.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.statsd_prefix = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.statsd_prefix),
    },
    Setting {
        name: "enable_backlog_metric",
        section: "Logging",
        flags: &["--enable-backlog-metric"],
        metavar: "",
        default: "False",
        help: "With --statsd-host, the master sends gunicorn.backlog (a histogram: \
               the connections waiting in the listen queues of all --bind sockets, \
               summed) every second, as gunicorn does. The status listener's \
               ferricorn_listen_queue_depth gauge has the same per listener, always.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.enable_backlog_metric = boolean(v)?;
            Ok(())
        },
        get: |c| c.enable_backlog_metric.to_string(),
    },
    Setting {
        name: "dogstatsd_tags",
        section: "Logging",
        flags: &["--dogstatsd-tags"],
        metavar: "DOGSTATSD_TAGS",
        default: "None",
        help: "Comma-separated DogStatsD tags appended to every metric \
               (`|#tag1:value1,tag2`).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.dogstatsd_tags = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.dogstatsd_tags),
    },
    Setting {
        name: "reload",
        section: "Debugging",
        flags: &["--reload"],
        metavar: "",
        default: "False",
        help: "Restart workers when code changes: each worker watches (inotify) the \
               files of the Python modules loaded once its app is imported, and the \
               --reload-extra-file files, and exits gracefully on a change; the \
               master starts a new one, which imports the new code. An app that \
               fails to import is served as a 500 page with the error and its \
               traceback until its files change, instead of stopping the server: \
               for development only. Without effect on the app's code with \
               --preload (the master holds it).",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.reload = boolean(v)?;
            Ok(())
        },
        get: |c| c.reload.to_string(),
    },
    Setting {
        name: "reload_engine",
        section: "Debugging",
        flags: &["--reload-engine"],
        metavar: "STRING",
        default: "auto",
        help: "How --reload watches files: `auto` and `inotify` both use inotify; \
               `poll` is accepted and uses inotify too, with a warning.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if !["auto", "inotify", "poll"].contains(&v) {
                return Err("must be auto, inotify or poll".into());
            }
            c.reload_engine = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.reload_engine),
    },
    Setting {
        name: "reload_extra_files",
        section: "Debugging",
        flags: &["--reload-extra-file"],
        metavar: "FILE",
        default: "[]",
        help: "With --reload, also restart workers when this file changes \
               (templates, configuration). Repeat the flag for several files; a \
               relative path is relative to the directory ferricorn was started in. \
               A file name with `*`, `?` or `[` is a glob pattern (`templates/*.html`), \
               which also matches files created later; ferricorn takes patterns in \
               the file name, not in directories (no `**`).",
        takes_value: true,
        repeatable: true,
        cli_only: false,
        set: |c, v| {
            // "" (how --print-config writes an empty list) or the shown
            // default "[]": none.
            if v.is_empty() || v == "[]" {
                return Ok(());
            }
            let p = c.launch_dir.join(v);
            c.reload_extra_files
                .push(std::path::absolute(&p).unwrap_or(p).display().to_string());
            Ok(())
        },
        get: |c| {
            if c.reload_extra_files.is_empty() {
                return toml_quote("");
            }
            let items: Vec<String> = c.reload_extra_files.iter().map(|f| toml_quote(f)).collect();
            format!("[{}]", items.join(", "))
        },
    },
    // ----- Process Naming
    Setting {
        name: "proc_name",
        section: "Process Naming",
        flags: &["-n", "--name"],
        metavar: "STRING",
        default: "None",
        help: "A name for the process titles and log messages, to tell several \
               ferricorn instances apart. By default the name is `ferricorn`.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.proc_name = optional(v);
            Ok(())
        },
        get: |c| q_opt(&c.proc_name),
    },
    // ----- Server Mechanics
    Setting {
        name: "chdir",
        section: "Server Mechanics",
        flags: &["--chdir"],
        metavar: "DIR",
        default: "None",
        help: "Change to this directory before loading the application. It must exist; \
               a relative path is relative to the directory ferricorn was started in.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if v.is_empty() {
                c.chdir = None;
                return Ok(());
            }
            let p = c.launch_dir.join(v);
            if !p.is_dir() {
                return Err("no such directory".into());
            }
            c.chdir = Some(p.canonicalize().map_err(|e| e.to_string())?);
            Ok(())
        },
        get: |c| q_path(&c.chdir),
    },
    Setting {
        name: "daemon",
        section: "Server Mechanics",
        flags: &["-D", "--daemon"],
        metavar: "",
        default: "False",
        help: "Detach from the terminal and run in the background.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.daemon = boolean(v)?;
            Ok(())
        },
        get: |c| c.daemon.to_string(),
    },
    Setting {
        name: "pidfile",
        section: "Server Mechanics",
        flags: &["-p", "--pid"],
        metavar: "FILE",
        default: "None",
        help: "Write the process id of the master process to this file. By default no \
               PID file is written.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.pidfile = optional(v).map(PathBuf::from);
            Ok(())
        },
        get: |c| q_path(&c.pidfile),
    },
    Setting {
        name: "umask",
        section: "Server Mechanics",
        flags: &["-m", "--umask"],
        metavar: "INT",
        default: "0",
        help: "The umask for files and sockets the server creates. Parsed like \
               gunicorn's int(x, 0): decimal, or 0o (octal), 0x (hex) or 0b (binary) \
               prefixed; in addition a leading 0 means octal, so 022, 0o22 and 18 are \
               the same. At most 0o777.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.umask = umask_value(v)?;
            Ok(())
        },
        get: |c| format!("0o{:03o}", c.umask),
    },
    Setting {
        name: "raw_env",
        section: "Server Mechanics",
        flags: &["-e", "--env"],
        metavar: "KEY=VALUE",
        default: "[]",
        help: "Set an environment variable in the master before the app is loaded \
               (workers inherit it), e.g. -e DJANGO_SETTINGS_MODULE=site.settings. \
               Repeat the flag for several variables. In a config file, a list of \
               KEY=VALUE strings. On SIGHUP the list is applied again, and a variable \
               it no longer names gets back the value it had before.",
        takes_value: true,
        repeatable: true,
        cli_only: false,
        set: |c, v| match v.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
                c.raw_env.push(v.to_string());
                Ok(())
            }
            _ => Err("must be KEY=VALUE".into()),
        },
        get: |c| {
            let items: Vec<String> = c.raw_env.iter().map(|e| toml_quote(e)).collect();
            format!("[{}]", items.join(", "))
        },
    },
    // ----- Proxies, uploads, sockets and privileges (behind nginx)
    Setting {
        name: "forwarded_allow_ips",
        section: "Proxies, Uploads and Privileges",
        flags: &["--forwarded-allow-ips"],
        metavar: "STRING",
        default: "127.0.0.1,::1",
        help: "Comma-separated addresses or networks (10.0.0.0/8) of front-end \
               proxies whose X-Forwarded-For and scheme headers (see \
               --secure-scheme-headers) are believed; '*' trusts every peer. Peers \
               on a Unix socket are always trusted. From any other peer those \
               headers change nothing. The client address is the rightmost \
               X-Forwarded-For entry that is not itself a trusted proxy, as nginx's \
               real_ip_recursive does; the app and the access log both see it.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            crate::proxy::TrustedProxies::parse(v)?;
            c.forwarded_allow_ips = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.forwarded_allow_ips),
    },
    Setting {
        name: "secure_scheme_headers",
        section: "Proxies, Uploads and Privileges",
        flags: &["--secure-scheme-headers"],
        metavar: "STRING",
        default: "X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on",
        help: "Headers, and their values, that tell a request from a trusted proxy \
               came in over https (gunicorn's secure_scheme_headers, as NAME=value \
               pairs separated by commas).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            crate::proxy::parse_scheme_headers(v)?;
            c.secure_scheme_headers = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.secure_scheme_headers),
    },
    Setting {
        name: "proxy_protocol",
        section: "Proxies, Uploads and Privileges",
        flags: &["--proxy-protocol"],
        metavar: "",
        default: "False",
        help: "Expect a PROXY protocol header (v1 or v2, as sent by HAProxy or \
               nginx's proxy_protocol on; in a stream block) at the start of every \
               connection, from the peers in --proxy-allow-from. A connection \
               without a valid header, or from another peer, is closed.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.proxy_protocol = boolean(v)?;
            Ok(())
        },
        get: |c| c.proxy_protocol.to_string(),
    },
    Setting {
        name: "proxy_allow_ips",
        section: "Proxies, Uploads and Privileges",
        flags: &["--proxy-allow-from"],
        metavar: "STRING",
        default: "127.0.0.1,::1",
        help: "Comma-separated addresses or networks allowed to send a PROXY \
               protocol header; '*' allows all.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            crate::proxy::TrustedProxies::parse(v)?;
            c.proxy_allow_ips = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.proxy_allow_ips),
    },
    Setting {
        name: "body_buffer_size",
        section: "Proxies, Uploads and Privileges",
        flags: &["--body-buffer-size"],
        metavar: "BYTES",
        default: "1048576",
        help: "Request bodies up to this size are kept in memory; larger ones are \
               spooled to an unlinked temporary file in --tmp-upload-dir as they \
               arrive, so a worker receiving a 1 GiB upload stays small. The app \
               reads the body as a stream either way. Suffixes k, m, g are accepted.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.body_buffer_size = byte_size(v)?;
            Ok(())
        },
        get: |c| c.body_buffer_size.to_string(),
    },
    Setting {
        name: "tmp_upload_dir",
        section: "Proxies, Uploads and Privileges",
        flags: &["--tmp-upload-dir"],
        metavar: "DIR",
        default: "None",
        help: "Directory for spooled request bodies (default: the system temporary \
               directory). Files are unlinked as soon as they are created.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if v.is_empty() {
                c.tmp_upload_dir = None;
                return Ok(());
            }
            if !Path::new(v).is_dir() {
                return Err("not an existing directory".into());
            }
            c.tmp_upload_dir = Some(PathBuf::from(v));
            Ok(())
        },
        get: |c| {
            toml_quote(
                &c.tmp_upload_dir
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
        },
    },
    Setting {
        name: "socket_mode",
        section: "Proxies, Uploads and Privileges",
        flags: &["--socket-mode"],
        metavar: "MODE",
        default: "None",
        help: "Permissions of Unix socket files, in octal (0660: the owner and the \
               --socket-group, e.g. www-data for nginx, may connect; nobody else). \
               Unset: what --umask leaves.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            if v.is_empty() {
                c.socket_mode = None;
                return Ok(());
            }
            let m = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                .map_err(|_| "must be an octal mode such as 0660".to_string())?;
            if m > 0o777 {
                return Err("must be at most 0777".into());
            }
            c.socket_mode = Some(m);
            Ok(())
        },
        get: |c| toml_quote(&c.socket_mode.map(|m| format!("0{m:o}")).unwrap_or_default()),
    },
    Setting {
        name: "socket_group",
        section: "Proxies, Uploads and Privileges",
        flags: &["--socket-group"],
        metavar: "GROUP",
        default: "None",
        help: "Group (name or id) to own Unix socket files, e.g. www-data so that \
               nginx can connect with --socket-mode 0660.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.socket_group = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        get: |c| toml_quote(c.socket_group.as_deref().unwrap_or("")),
    },
    Setting {
        name: "user",
        section: "Proxies, Uploads and Privileges",
        flags: &["-u", "--user"],
        metavar: "USER",
        default: "None",
        help: "Switch worker processes to run as this user (name or id). The master \
               binds the sockets first (so ports below 1024 work), then drops to the \
               same user; supplementary groups are set with initgroups.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.user = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        get: |c| toml_quote(c.user.as_deref().unwrap_or("")),
    },
    Setting {
        name: "group",
        section: "Proxies, Uploads and Privileges",
        flags: &["-g", "--group"],
        metavar: "GROUP",
        default: "None",
        help: "Switch worker processes (and the master after binding) to this group \
               (name or id). Default: the user's primary group.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.group = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        get: |c| toml_quote(c.group.as_deref().unwrap_or("")),
    },
    // ----- WebSockets (uvicorn's names)
    Setting {
        name: "websocket_max_message_size",
        section: "WebSockets",
        flags: &["--ws-max-size", "--websocket-max-message-size"],
        metavar: "BYTES",
        default: "16777216",
        help: "The largest WebSocket message a client may send, in bytes (all the \
               fragments of a message together); a bigger one closes the connection \
               with code 1009 as soon as its frame header announces it. 16 MiB, as in \
               uvicorn. Suffixes k, m, g are accepted; 0 means unlimited. \
               (--websocket-max-message-size is gunicorn 27's name.)",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.websocket_max_message_size = byte_size(v)?;
            Ok(())
        },
        get: |c| c.websocket_max_message_size.to_string(),
    },
    Setting {
        name: "ws_ping_interval",
        section: "WebSockets",
        flags: &["--ws-ping-interval"],
        metavar: "SECONDS",
        default: "20",
        help: "A WebSocket that has received nothing for this many seconds is sent a \
               ping (checked about once a second), so that dead peers and idle \
               proxies are noticed. Decimals are accepted; 0 turns pings off.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.ws_ping_interval_ms = seconds_ms(v)?;
            Ok(())
        },
        get: |c| ms_seconds(c.ws_ping_interval_ms),
    },
    Setting {
        name: "ws_ping_timeout",
        section: "WebSockets",
        flags: &["--ws-ping-timeout"],
        metavar: "SECONDS",
        default: "20",
        help: "A WebSocket whose peer has not answered the server's ping within this \
               many seconds is closed (code 1011). Decimals are accepted; 0 waits \
               for ever.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.ws_ping_timeout_ms = seconds_ms(v)?;
            Ok(())
        },
        get: |c| ms_seconds(c.ws_ping_timeout_ms),
    },
    // ----- Python (WSGI): used when APP is `module:callable` (build with --features python)
    Setting {
        name: "pythonpath",
        section: "Python (WSGI)",
        flags: &["--pythonpath"],
        metavar: "STRING",
        default: "None",
        help: "A comma-separated list of directories to add to the Python module \
               search path (sys.path) before the WSGI app is imported, e.g. \
               '/home/djangoprojects/myproject,/home/python/mylibrary'. The \
               working directory (see --chdir) is always searched first.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.pythonpath = v
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect();
            Ok(())
        },
        get: |c| toml_quote(&c.pythonpath.join(",")),
    },
    Setting {
        name: "preload_app",
        section: "Python (WSGI)",
        flags: &["--preload"],
        metavar: "",
        default: "False",
        help: "Import the WSGI app in the master before the workers are forked, so \
               that workers share its memory copy-on-write and start faster. The \
               master runs gc.freeze() before forking and every worker reseeds \
               `random`. Without it, each worker starts its own interpreter after \
               fork; that is the safer default (no state, threads or connections \
               are inherited across fork), and a code change is picked up by HUP.",
        takes_value: false,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            c.preload_app = boolean(v)?;
            Ok(())
        },
        get: |c| c.preload_app.to_string(),
    },
    Setting {
        name: "root_path",
        section: "Python (WSGI)",
        flags: &["--root-path"],
        metavar: "PATH",
        default: "None",
        help: "The URL prefix the app is mounted at behind a proxy that does not strip \
               it, e.g. /app: requests get SCRIPT_NAME=/app and PATH_INFO the rest of \
               the path; requests outside the prefix get 404. Empty (the default) \
               means the app is mounted at the root.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            let v = v.trim_end_matches('/');
            if !v.is_empty() && !v.starts_with('/') {
                return Err("must be empty or start with '/'".into());
            }
            c.root_path = v.to_string();
            Ok(())
        },
        get: |c| toml_quote(&c.root_path),
    },
    Setting {
        name: "interface",
        section: "Python (ASGI)",
        flags: &["--interface"],
        metavar: "STRING",
        default: "auto",
        help: "How the Python app is called: `wsgi` (PEP 3333), `asgi` (ASGI 3: \
               FastAPI, Starlette, Django's ASGI handler, Quart), or `auto` (the \
               default): ASGI when the callable is an `async def` function or an \
               object whose `__call__` is one, else WSGI; with `-k asgi` (or a \
               uvicorn worker class) `auto` means ASGI. The first worker says in the \
               log which interface it chose. ASGI apps run as coroutines on one \
               asyncio loop per worker (--asgi-loop), in the event loop's thread.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            match v {
                "auto" | "asgi" | "wsgi" => c.interface = v.to_string(),
                _ => return Err("must be auto, asgi or wsgi".into()),
            }
            Ok(())
        },
        get: |c| toml_quote(&c.interface),
    },
    Setting {
        name: "asgi_loop",
        section: "Python (ASGI)",
        flags: &["--asgi-loop", "--loop"],
        metavar: "STRING",
        default: "auto",
        help: "The asyncio event loop of an ASGI worker: `asyncio` (the standard \
               library's), `uvloop` (start-up fails with one line if it is not \
               installed), or `auto` (the default: uvloop when it can be imported, \
               else asyncio).",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            match v {
                "auto" | "asyncio" | "uvloop" => c.asgi_loop = v.to_string(),
                _ => return Err("must be auto, asyncio or uvloop".into()),
            }
            Ok(())
        },
        get: |c| toml_quote(&c.asgi_loop),
    },
    Setting {
        name: "asgi_lifespan",
        section: "Python (ASGI)",
        flags: &["--asgi-lifespan", "--lifespan"],
        metavar: "STRING",
        default: "auto",
        help: "The ASGI lifespan protocol: `on` runs the app's startup before the \
               worker accepts connections (a failed startup stops the worker with \
               exit code 3, and the master with it, as a boot error) and its \
               shutdown after a graceful stop has finished the requests in \
               flight; `off` never sends lifespan events; `auto` (the default) is \
               `on`, except that an app raising on the lifespan scope is taken as \
               not supporting it and served anyway. The `state` dict the startup \
               fills is copied into every request's scope.",
        takes_value: true,
        repeatable: false,
        cli_only: false,
        set: |c, v| {
            match v {
                "auto" | "on" | "off" => c.asgi_lifespan = v.to_string(),
                _ => return Err("must be auto, on or off".into()),
            }
            Ok(())
        },
        get: |c| toml_quote(&c.asgi_lifespan),
    },
];

// ---------------------------------------------------------------------------
// Defaults.

impl Default for Config {
    /// The built-in defaults, ignoring the environment.
    fn default() -> Config {
        Config {
            bind: vec![BindAddr::Tcp(([127, 0, 0, 1], 8000).into())],
            workers: 1,
            threads: 1,
            worker_class: "sync".into(),
            backlog: 2048,
            timeout: 30,
            graceful_timeout: 30,
            keepalive: 75,
            worker_connections: 1000,
            max_requests: 0,
            max_requests_jitter: 0,
            workers_auto: false,
            workers_auto_reason: None,
            status_bind: None,
            enable_backlog_metric: false,
            shutdown_delay: 0,
            max_worker_lifetime: 0,
            request_id_header: "X-Request-Id".into(),
            max_worker_memory: 0,
            limit_request_line: 4094,
            limit_request_fields: 100,
            limit_request_field_size: 8190,
            limit_request_body: 1 << 30,
            header_timeout: 10,
            loglevel: "info".into(),
            errorlog: "-".into(),
            accesslog: None,
            access_log_format: DEFAULT_ACCESS_LOG_FORMAT.into(),
            syslog: false,
            syslog_addr: None,
            syslog_prefix: None,
            syslog_facility: "user".into(),
            disable_redirect_access_to_syslog: false,
            statsd_host: None,
            statsd_prefix: String::new(),
            dogstatsd_tags: String::new(),
            capture_output: false,
            enable_stdio_inheritance: false,
            logconfig: None,
            logconfig_dict: String::new(),
            logconfig_json: None,
            reload: false,
            reload_engine: "auto".into(),
            reload_extra_files: Vec::new(),
            pidfile: None,
            umask: 0,
            raw_env: Vec::new(),
            chdir: None,
            proc_name: None,
            daemon: false,
            forwarded_allow_ips: "127.0.0.1,::1".into(),
            secure_scheme_headers: crate::proxy::DEFAULT_SECURE_SCHEME_HEADERS.into(),
            proxy_protocol: false,
            proxy_allow_ips: "127.0.0.1,::1".into(),
            tmp_upload_dir: None,
            body_buffer_size: 1 << 20,
            websocket_max_message_size: 16 << 20,
            ws_ping_interval_ms: 20_000,
            ws_ping_timeout_ms: 20_000,
            socket_mode: None,
            socket_group: None,
            user: None,
            group: None,
            pythonpath: Vec::new(),
            preload_app: false,
            root_path: String::new(),
            interface: "auto".into(),
            asgi_loop: "auto".into(),
            asgi_lifespan: "auto".into(),
            app: DEFAULT_APP.into(),
            config_file: None,
            check_config: false,
            print_config: false,
            args: Vec::new(),
            launch_dir: PathBuf::from("."),
            warnings: Vec::new(),
            allow_connect: false,
        }
    }
}

impl Config {
    /// Whether workers run the app on a thread pool (`gthread`, or `--threads`
    /// above 1, which selects gthread as in gunicorn) rather than inline.
    pub fn threaded(&self) -> bool {
        !self.asgi_worker() && (self.threads > 1 || self.worker_class == "gthread")
    }

    /// `-k asgi` (or a uvicorn worker class): `--interface auto` means ASGI.
    pub fn asgi_worker(&self) -> bool {
        self.worker_class == "asgi"
    }

    /// Re-run [`parse`] on the stored command line (re-reading the config file and
    /// `FERRICORN_CMD_ARGS` from `env`), e.g. on SIGHUP. Relative paths resolve against
    /// the original [`Config::launch_dir`].
    pub fn reload(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        match parse_in(&self.args, env, &self.launch_dir)? {
            Action::Run(c) | Action::Check(c) => Ok(c),
            Action::Print(_) => Err("reload: the command line asks to print and exit".into()),
        }
    }

    /// The `--print-config` text: [`Config::to_toml`] with a comment after each
    /// line saying where the value came from (still TOML, so it can be fed back).
    pub fn to_toml_with_origins(&self, origins: &Origins) -> String {
        let mut out = String::from("# ferricorn configuration (TOML); feed back with -c\n");
        out.push_str(&format!("# APP: {}\n", self.app));
        for s in SETTINGS.iter().filter(|s| !s.cli_only) {
            let from = origins.get(s.name).cloned().unwrap_or(Origin::Default);
            out.push_str(&format!("{} = {}  # {from}\n", s.name, (s.get)(self)));
        }
        out
    }

    /// The `--print-config` text: every setting (except the command-line-only ones)
    /// as a `name = value` TOML line, in table order.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# ferricorn configuration (TOML); feed back with -c\n");
        out.push_str(&format!("# APP: {}\n", self.app));
        for s in SETTINGS.iter().filter(|s| !s.cli_only) {
            out.push_str(&format!("{} = {}\n", s.name, (s.get)(self)));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// One `setting = value` assignment taken from some source.
struct Assign {
    setting: &'static Setting,
    value: Value,
}

#[derive(Default)]
struct Tokens {
    assigns: Vec<Assign>,
    app: Option<String>,
    /// gunicorn options accepted and ignored, as warnings.
    warnings: Vec<String>,
}

/// Every long flag a command line may abbreviate, with what it stands for.
enum Flag {
    Setting(&'static Setting),
    Gunicorn(&'static crate::config_gunicorn::Accepted),
}

fn lookup_flag(flag: &str) -> Option<Flag> {
    by_flag(flag)
        .map(Flag::Setting)
        .or_else(|| crate::config_gunicorn::accepted_flag(flag).map(Flag::Gunicorn))
}

/// argparse's reading of a long option: an exact flag, else the one flag it is
/// an unambiguous prefix of (flags of one setting count once).
fn resolve_long(flag: &str) -> Result<Option<Flag>, String> {
    if let Some(f) = lookup_flag(flag) {
        return Ok(Some(f));
    }
    // (setting name, long flag) for every flag the prefix could stand for; a
    // gunicorn row shadowed by a ferricorn setting of the same name is left out.
    let settings = SETTINGS.iter().map(|s| (s.name, s.flags));
    let accepted = crate::config_gunicorn::ACCEPTED
        .iter()
        .filter(|a| setting(a.name).is_none())
        .map(|a| (a.name, a.flags));
    let candidates: Vec<(&str, &str)> = settings
        .chain(accepted)
        .flat_map(|(name, flags)| flags.iter().map(move |f| (name, *f)))
        .filter(|(_, f)| f.starts_with("--") && f.starts_with(flag))
        .collect();
    let mut names: Vec<&str> = candidates.iter().map(|(n, _)| *n).collect();
    names.dedup();
    match names.len() {
        0 => Ok(None),
        1 => Ok(lookup_flag(candidates[0].1)),
        _ => {
            let all: Vec<&str> = candidates.iter().map(|(_, f)| *f).collect();
            Err(format!(
                "ambiguous option: {flag} could match {}",
                all.join(", ")
            ))
        }
    }
}

/// Split an argument list into setting assignments and the positional APP.
/// `origin` is appended to errors (e.g. " in FERRICORN_CMD_ARGS").
fn tokenize(args: &[String], origin: &str) -> Result<Tokens, String> {
    let mut t = Tokens::default();
    let mut it = args.iter();
    let positional = |t: &mut Tokens, a: &str| {
        if let Some(prev) = &t.app {
            return Err(format!(
                "unexpected extra argument '{a}' (APP is already '{prev}'; only one APP is allowed){origin}"
            ));
        }
        t.app = Some(a.to_string());
        Ok(())
    };
    while let Some(arg) = it.next() {
        let arg = arg.as_str();
        if arg == "--" {
            for rest in it.by_ref() {
                positional(&mut t, rest)?;
            }
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            positional(&mut t, arg)?;
            continue;
        }
        // Split `--flag=value` / `-wVALUE` into the flag and an attached value.
        let (flag, attached) = if arg.starts_with("--") {
            match arg.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (arg, None),
            }
        } else {
            let cut = arg.char_indices().nth(2).map_or(arg.len(), |(i, _)| i);
            let (f, v) = arg.split_at(cut);
            (f, (!v.is_empty()).then_some(v))
        };
        let found = if flag.starts_with("--") {
            resolve_long(flag).map_err(|e| format!("{e}{origin}"))?
        } else {
            lookup_flag(flag)
        };
        let Some(found) = found else {
            let shown = if arg.starts_with("--") { flag } else { arg };
            return Err(format!(
                "unrecognized option '{shown}' (see --help){origin}"
            ));
        };
        let (takes_value, canonical, metavar) = match &found {
            Flag::Setting(s) => (s.takes_value, s.flag(), s.metavar),
            Flag::Gunicorn(a) => (
                a.takes_value,
                a.flags
                    .iter()
                    .copied()
                    .find(|f| f.starts_with("--"))
                    .unwrap_or(flag),
                "VALUE",
            ),
        };
        let value = if !takes_value {
            if attached.is_some() {
                return Err(format!("option {canonical} takes no value{origin}"));
            }
            "true".to_string()
        } else if let Some(v) = attached {
            v.to_string()
        } else if let Some(v) = it.next() {
            v.clone()
        } else {
            return Err(format!(
                "option {canonical} requires a value ({metavar}){origin}"
            ));
        };
        match found {
            Flag::Setting(s) => t.assigns.push(Assign {
                setting: s,
                value: Value::Str(value),
            }),
            Flag::Gunicorn(a) => match a.verdict(canonical, &value) {
                Ok(None) => {}
                Ok(Some(warning)) => t.warnings.push(format!("{warning}{origin}")),
                Err(e) => return Err(format!("{e}{origin}")),
            },
        }
    }
    Ok(t)
}

/// Settings whose value is one comma-separated string, which a Python file may
/// also give as a list (gunicorn accepts both for the IP lists).
const COMMA_LISTS: &[&str] = &["forwarded_allow_ips", "proxy_allow_ips", "pythonpath"];

/// The strings a setting's parser gets for one value from a file: one for a
/// scalar, one per item of a repeatable setting's list. `wrong(type)` is the
/// error for a value of the wrong type.
fn texts(s: &Setting, v: &Value, wrong: &dyn Fn(&str) -> String) -> Result<Vec<String>, String> {
    let scalar = |v: &Value| -> Result<String, String> {
        match v {
            Value::Int(_) if s.repeatable => Err(wrong("integer")),
            Value::Bool(_) if s.takes_value => Err(wrong("boolean")),
            Value::Float(_) | Value::List(_) | Value::Map(_) => Err(wrong(v.type_name())),
            v => Ok(v.scalar_text().unwrap_or_default()),
        }
    };
    let pairs = |m: &[(String, Value)]| -> Result<Vec<String>, String> {
        m.iter()
            .map(|(k, v)| Ok(format!("{k}={}", scalar(v)?)))
            .collect()
    };
    match v {
        Value::List(items) if s.repeatable => {
            // A list that may be empty has an empty default (`raw_env`); `bind` may not.
            if items.is_empty() && s.default != "[]" {
                return Err("empty array".into());
            }
            items.iter().map(scalar).collect()
        }
        Value::Map(m) if s.repeatable => pairs(m),
        Value::List(items) if COMMA_LISTS.contains(&s.name) => Ok(vec![
            items
                .iter()
                .map(scalar)
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
        ]),
        Value::Map(m) if s.name == "secure_scheme_headers" => Ok(vec![pairs(m)?.join(",")]),
        // A structure given as JSON text elsewhere (logconfig_dict).
        Value::Map(_) | Value::List(_) if s.metavar == "JSON" => Ok(vec![v.to_json()]),
        v => Ok(vec![scalar(v)?]),
    }
}

/// Apply assignments from one source. The first value of a repeatable setting in
/// this source replaces what earlier (lower-precedence) sources set.
fn apply(
    cfg: &mut Config,
    origins: &mut Origins,
    origin: &Origin,
    assigns: &[Assign],
    describe: &dyn Fn(&Setting) -> String,
) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    for a in assigns {
        let s = a.setting;
        let wrong = |what: &str| {
            format!(
                "invalid value for {}: expected {}, got {what}",
                describe(s),
                expected(s)
            )
        };
        let values = texts(s, &a.value, &wrong).map_err(|e| {
            if e.starts_with("invalid value") {
                e
            } else {
                format!("invalid value for {}: {e}", describe(s))
            }
        })?;
        if s.repeatable && !seen.contains(&s.name) {
            seen.push(s.name);
            reset_repeatable(cfg, s.name);
        }
        for v in values {
            (s.set)(cfg, &v)
                .map_err(|why| format!("invalid value for {}: '{v}' ({why})", describe(s)))?;
        }
        origins.insert(s.name, origin.clone());
    }
    Ok(())
}

fn reset_repeatable(cfg: &mut Config, name: &str) {
    match name {
        "bind" => cfg.bind.clear(),
        "raw_env" => cfg.raw_env.clear(),
        "reload_extra_files" => cfg.reload_extra_files.clear(),
        other => unreachable!("repeatable setting {other} has no reset"),
    }
}

/// Where each setting's value came from (absent: the default).
pub type Origins = std::collections::BTreeMap<&'static str, Origin>;

/// A config file's name: a Python file (`.py`, or `python:MODULE`) or TOML.
pub fn is_python_config(name: &str) -> bool {
    name.starts_with("python:") || name.ends_with(".py")
}

/// gunicorn runs any `-c FILE` as Python (`-c gunicorn.conf`, `-c config/web`):
/// a file with neither `.py` nor `.toml` is read as TOML if it is TOML, else
/// as Python (in a build with Python).
fn sniff_python(path: &Path) -> bool {
    let name = path.to_string_lossy();
    if is_python_config(&name) {
        return true;
    }
    if name.ends_with(".toml") || !cfg!(feature = "python") {
        return false;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().is_err(),
        // Unreadable: the TOML reader says so.
        Err(_) => false,
    }
}

/// Read a TOML config file as `(key, value)` pairs in file order.
fn read_toml(path: &Path) -> Result<Vec<(String, Value)>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("TOML syntax error in {shown} at line {line}, column {col}: {msg}")
            }
            None => format!("TOML syntax error in {shown}: {msg}"),
        }
    })?;
    fn value(v: &toml::Value) -> Value {
        match v {
            toml::Value::String(s) => Value::Str(s.clone()),
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Float(f) => Value::Float(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Array(items) => Value::List(items.iter().map(value).collect()),
            toml::Value::Table(t) => {
                Value::Map(t.iter().map(|(k, v)| (k.clone(), value(v))).collect())
            }
            // No setting takes a date: its text reaches the setter, which says why not.
            toml::Value::Datetime(d) => Value::Str(d.to_string()),
        }
    }
    Ok(table.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// A config file's `(key, value)` pairs as assignments, in table order (so
/// errors do not depend on the order of keys). A TOML file is strict: an unknown
/// key is an error. A Python file is a module whose other globals (imports,
/// helpers) are ignored, as gunicorn ignores them.
fn assigns_from_file(
    shown: &str,
    entries: Vec<(String, Value)>,
    python: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Assign>, String> {
    let mut out = Vec::new();
    for (key, value) in entries {
        let Some(s) = setting(&key) else {
            if let Some(a) = crate::config_gunicorn::accepted(&key) {
                let text = value.scalar_text().unwrap_or_default();
                if let Some(w) = a.verdict(&format!("{key} in {shown}"), &text)? {
                    warnings.push(w);
                }
                continue;
            }
            if python {
                continue;
            }
            let hint = closest(&key)
                .map(|n| format!(" (did you mean '{n}'?)"))
                .unwrap_or_default();
            return Err(format!("unknown setting '{key}' in {shown}{hint}"));
        };
        if s.cli_only {
            return Err(format!(
                "setting '{key}' in {shown} can only be given on the command line"
            ));
        }
        out.push(Assign { setting: s, value });
    }
    out.sort_by_key(|a| SETTINGS.iter().position(|s| std::ptr::eq(s, a.setting)));
    Ok(out)
}

fn expected(s: &Setting) -> &'static str {
    match (s.takes_value, s.repeatable, s.metavar) {
        (false, _, _) => "a boolean",
        (_, true, _) => "a string or an array of strings",
        (_, _, "INT" | "SECONDS" | "BYTES") => "an integer",
        _ => "a string",
    }
}

fn closest(key: &str) -> Option<&'static str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    SETTINGS
        .iter()
        .map(|s| (dist(key, s.name), s.name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

/// Run a Python config file (or `python:MODULE`) and return its globals that
/// are gunicorn or ferricorn settings.
#[cfg(feature = "python")]
fn read_python(name: &str, launch_dir: &Path) -> Result<Vec<(String, Value)>, String> {
    crate::python::conf::load(name, launch_dir)
}

#[cfg(not(feature = "python"))]
fn read_python(name: &str, _launch_dir: &Path) -> Result<Vec<(String, Value)>, String> {
    Err(format!(
        "config file {name} is Python: this ferricorn was built without Python support \
         (rebuild with --features python, or write the settings as TOML)"
    ))
}

/// The config file named by a source's `-c`, resolved: `python:MODULE` stays as
/// it is, a path becomes absolute against `launch_dir`.
fn config_path(value: &str, launch_dir: &Path) -> PathBuf {
    if value.starts_with("python:") {
        return PathBuf::from(value);
    }
    let p = launch_dir.join(value);
    std::path::absolute(&p).unwrap_or(p)
}

/// gunicorn reads `./gunicorn.conf.py` when no `-c` is given; ferricorn also
/// reads `./ferricorn.conf.py` (first).
pub const DEFAULT_CONFIG_FILES: &[&str] = &["ferricorn.conf.py", "gunicorn.conf.py"];

/// Environment variables holding extra arguments, lowest precedence first.
pub const CMD_ARGS_ENVS: &[&str] = &["GUNICORN_CMD_ARGS", CMD_ARGS_ENV];

/// Parse the command line `args` (without `argv[0]`) plus the environment
/// (`GUNICORN_CMD_ARGS`, `FERRICORN_CMD_ARGS`, `PORT`, `WEB_CONCURRENCY`) and the
/// config file (`-c`, else `./ferricorn.conf.py` or `./gunicorn.conf.py`).
/// Precedence (gunicorn's): defaults < config file < GUNICORN_CMD_ARGS <
/// FERRICORN_CMD_ARGS < command line. Errors are one line naming the setting,
/// e.g. "invalid value for --workers: '-1' (must be a positive integer)".
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Action, String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    parse_in(args, env, &cwd)
}

/// [`parse`] with relative `-c`/`--chdir` paths resolved against `launch_dir`.
pub fn parse_in(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    launch_dir: &Path,
) -> Result<Action, String> {
    parse_full(args, env, launch_dir).map(|(action, _)| action)
}

/// [`parse_in`], also returning where each value came from.
pub fn parse_full(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    launch_dir: &Path,
) -> Result<(Action, Origins), String> {
    let parsed = parse_sources(args, env, launch_dir);
    // A Python file's hooks take effect only with a configuration that parsed,
    // so a file that fails on SIGHUP leaves the running hooks in place.
    #[cfg(feature = "python")]
    match &parsed {
        Ok(_) => crate::python::hooks::commit(),
        Err(_) => crate::python::hooks::discard(),
    }
    parsed
}

fn parse_sources(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    launch_dir: &Path,
) -> Result<(Action, Origins), String> {
    let mut env_args: Vec<(&'static str, Vec<String>)> = Vec::new();
    for var in CMD_ARGS_ENVS {
        if let Some(text) = env(var) {
            let words = crate::config_value::shell_split(&text)
                .map_err(|e| format!("cannot split {var}: {e}"))?;
            env_args.push((var, words));
        }
    }
    // --help / --version win over everything else, as with argparse.
    let all_env = env_args.iter().flat_map(|(_, w)| w.iter());
    for a in args.iter().chain(all_env).take_while(|a| *a != "--") {
        match a.as_str() {
            "-h" | "--help" => return Ok((Action::Print(help_text()), Origins::new())),
            "-v" | "--version" => return Ok((Action::Print(version_text()), Origins::new())),
            _ => {}
        }
    }
    let cli = tokenize(args, "")?;
    let mut from_env: Vec<(&'static str, Tokens)> = Vec::new();
    for (var, words) in &env_args {
        from_env.push((var, tokenize(words, &format!(" in {var}"))?));
    }

    let mut cfg = Config {
        args: args.to_vec(),
        launch_dir: launch_dir.to_path_buf(),
        ..Config::default()
    };
    let mut origins = Origins::new();
    // Environment-derived defaults; a bad value only matters if nothing overrides it.
    let mut env_errors: Vec<(&str, String)> = Vec::new();
    if let Some(port) = env("PORT") {
        match BindAddr::parse(&format!("0.0.0.0:{port}")) {
            Ok(b) => {
                cfg.bind = vec![b];
                origins.insert("bind", Origin::EnvDefault("PORT"));
            }
            Err(why) => {
                env_errors.push(("bind", format!("invalid value for PORT: '{port}' ({why})")))
            }
        }
    }
    if let Some(n) = env("WEB_CONCURRENCY") {
        match (setting("workers").unwrap().set)(&mut cfg, &n) {
            Ok(()) => {
                origins.insert("workers", Origin::EnvDefault("WEB_CONCURRENCY"));
            }
            Err(why) => env_errors.push((
                "workers",
                format!("invalid value for WEB_CONCURRENCY: '{n}' ({why})"),
            )),
        }
    }

    // The config file named last on the command line, else in the environment
    // (FERRICORN_CMD_ARGS before GUNICORN_CMD_ARGS), else a default file.
    let named = std::iter::once(("", &cli))
        .chain(from_env.iter().rev().map(|(var, t)| (*var, t)))
        .find_map(|(var, t)| {
            t.assigns
                .iter()
                .rev()
                .find(|a| a.setting.name == "config")
                .map(|a| (var, a.value.scalar_text().unwrap_or_default()))
        });
    let file = match named {
        Some((var, value)) => {
            if value.is_empty() {
                let from = if var.is_empty() {
                    String::new()
                } else {
                    format!(" in {var}")
                };
                return Err(format!(
                    "invalid value for --config: '' (must not be empty){from}"
                ));
            }
            Some(config_path(&value, launch_dir))
        }
        None => DEFAULT_CONFIG_FILES
            .iter()
            .map(|f| launch_dir.join(f))
            .find(|p| p.is_file()),
    };
    let mut warnings = cli.warnings.clone();
    for (_, t) in &from_env {
        warnings.extend(t.warnings.iter().cloned());
    }
    let mut file_assigns = Vec::new();
    if let Some(path) = &file {
        let name = path.to_string_lossy().into_owned();
        let python = sniff_python(path);
        let entries = if python {
            read_python(&name, launch_dir)?
        } else {
            read_toml(path)?
        };
        let mut file_warnings = Vec::new();
        file_assigns = assigns_from_file(&name, entries, python, &mut file_warnings)?;
        warnings.splice(0..0, file_warnings);
        cfg.config_file = Some(path.clone());
        apply(
            &mut cfg,
            &mut origins,
            &Origin::File(path.clone()),
            &file_assigns,
            &|s| format!("{} in {name}", s.name),
        )?;
    }
    for (var, t) in &from_env {
        let env_flag = |s: &Setting| format!("{} (in {var})", s.flag());
        apply(
            &mut cfg,
            &mut origins,
            &Origin::CmdArgsEnv(var),
            &t.assigns,
            &env_flag,
        )?;
    }
    apply(
        &mut cfg,
        &mut origins,
        &Origin::CommandLine,
        &cli.assigns,
        &|s| s.flag().to_string(),
    )?;
    // The positional APP beats a `wsgi_app` from any source.
    let positional = std::iter::once(&cli)
        .chain(from_env.iter().rev().map(|(_, t)| t))
        .find_map(|t| t.app.clone());
    if let Some(app) = positional {
        cfg.app = app;
        origins.insert("wsgi_app", Origin::CommandLine);
    }

    for (name, err) in env_errors {
        let overridden = std::iter::once(&file_assigns)
            .chain(from_env.iter().map(|(_, t)| &t.assigns))
            .chain(std::iter::once(&cli.assigns))
            .any(|l| l.iter().any(|a| a.setting.name == name));
        if !overridden {
            return Err(err);
        }
    }
    cfg.warnings = warnings;

    if cfg.workers_auto {
        let mib = match cfg.max_worker_memory {
            0 => crate::cgroup::DEFAULT_WORKER_MIB,
            m => m,
        };
        let (n, why) = crate::cgroup::auto_workers(&crate::cgroup::read_limits(), mib);
        cfg.workers = n;
        cfg.workers_auto_reason = Some(why);
    }
    if let Some(sb) = &cfg.status_bind
        && cfg.bind.contains(sb)
    {
        return Err(format!(
            "invalid value for --status-bind: '{sb}' (it is also a --bind address; the status \
             listener must not be public)"
        ));
    }

    let action = if cfg.print_config {
        Action::Print(cfg.to_toml_with_origins(&origins) + &hooks_note(&cfg))
    } else if cfg.check_config {
        Action::Check(cfg)
    } else {
        Action::Run(cfg)
    };
    Ok((action, origins))
}

/// `--print-config`'s last line: the server hooks a Python config file defines.
#[cfg(feature = "python")]
fn hooks_note(cfg: &Config) -> String {
    let hooks = crate::python::hooks::staged_names();
    match &cfg.config_file {
        Some(file) if !hooks.is_empty() => format!(
            "# server hooks from {}: {}\n",
            file.display(),
            hooks.join(", ")
        ),
        _ => String::new(),
    }
}

#[cfg(not(feature = "python"))]
fn hooks_note(_cfg: &Config) -> String {
    String::new()
}

/// Set the `-e KEY=VALUE` variables in the master (at start and on SIGHUP, as
/// gunicorn does): in the process environment, and in the `os.environ` of an
/// interpreter running here (a copy Python took when it started). A variable
/// that an earlier configuration set and this one no longer does goes back
/// to what it was before ferricorn touched it (gunicorn leaves it set, so a
/// dropped `-e` stays in every later worker until a restart).
pub fn apply_raw_env(raw_env: &[String]) -> Result<(), String> {
    use std::sync::Mutex;
    // What each variable held before the first `-e` that set it.
    static ORIGINAL: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());
    let mut original = ORIGINAL.lock().unwrap_or_else(|p| p.into_inner());
    let changes = env_changes(&mut original, raw_env, &|k| std::env::var(k).ok());
    drop(original);
    #[cfg(feature = "python")]
    if crate::python::conf::set_environ(&changes)? {
        return Ok(());
    }
    for (k, v) in changes {
        match v {
            Some(v) => crate::sys::set_env(&k, v),
            None => crate::sys::remove_env(&k),
        }
    }
    Ok(())
}

/// What to do to the environment for `raw_env`: set each of its variables,
/// and restore those in `original` (variables set by an earlier call, with
/// their values from before it) that `raw_env` no longer names. `original`
/// is updated; `current` reads the environment as it is now.
fn env_changes(
    original: &mut Vec<(String, Option<String>)>,
    raw_env: &[String],
    current: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, Option<String>)> {
    let pairs: Vec<(&str, &str)> = raw_env.iter().filter_map(|kv| kv.split_once('=')).collect();
    let mut out = Vec::new();
    original.retain(|(k, before)| {
        let kept = pairs.iter().any(|(nk, _)| nk == k);
        if !kept {
            out.push((k.clone(), before.clone()));
        }
        kept
    });
    for (k, v) in pairs {
        if !original.iter().any(|(ok, _)| ok == k) {
            original.push((k.to_string(), current(k)));
        }
        out.push((k.to_string(), Some(v.to_string())));
    }
    out
}

// ---------------------------------------------------------------------------
// Generated text.

fn version_text() -> String {
    format!("ferricorn {}\n", env!("CARGO_PKG_VERSION"))
}

/// Greedy word wrap of `text` to `width` columns, each line prefixed by `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Sections in table order.
fn sections() -> Vec<&'static str> {
    let mut v: Vec<&str> = Vec::new();
    for s in SETTINGS {
        if !v.contains(&s.section) {
            v.push(s.section);
        }
    }
    v
}

const DESCRIPTION: &str = "A pre-fork HTTP/1.1 application server with gunicorn's command line.";
const APP_HELP: &str = "The application to serve. Built-in apps: `welcome` (the default; a \
                        welcome page), `hello` (answers \"Hello, World!\") and `echo` \
                        (echoes the request back). Built with --features python, a WSGI \
                        app: MODULE:CALLABLE, MODULE:FACTORY(), or MODULE alone (meaning \
                        MODULE:application).";
const SOURCES_HELP: &str = "Settings come from, in increasing precedence: built-in defaults, \
                            the config file (-c: a gunicorn.conf.py, python:MODULE or TOML; \
                            without -c, ./ferricorn.conf.py or ./gunicorn.conf.py if present), \
                            GUNICORN_CMD_ARGS, FERRICORN_CMD_ARGS (both split like a shell \
                            command line), and the command line. Long options may be \
                            abbreviated while unambiguous. The name in [brackets] is the \
                            config-file key. gunicorn's other settings are accepted with a \
                            warning saying why ferricorn does not need them (a few, such as \
                            --certfile, are refused with what to do instead); \
                            docs/settings.md lists them all.";

/// The `--help` text, generated from [`SETTINGS`].
pub fn help_text() -> String {
    let mut out = String::from("usage: ferricorn [OPTIONS] [APP]\n\n");
    out.push_str(DESCRIPTION);
    out.push_str("\n\n");
    out.push_str(&wrap(SOURCES_HELP, "", 79));
    out.push_str("\npositional arguments:\n  APP\n");
    out.push_str(&wrap(APP_HELP, "        ", 79));
    out.push_str("\noptions:\n  -h, --help\n        Show this help message and exit.\n");
    out.push_str("  -v, --version\n        Show the version and exit.\n");
    for section in sections() {
        out.push_str(&format!("\n{section}:\n"));
        for s in SETTINGS.iter().filter(|s| s.section == section) {
            out.push_str(&format!("  {}  [{}]\n", s.synopsis(), s.name));
            let text = format!("{} Default: {}.", s.help, s.default);
            out.push_str(&wrap(&text, "        ", 79));
        }
    }
    out
}

/// A Markdown reference of every setting (one `### --flag` entry each), for the README.
pub fn reference_markdown() -> String {
    let mut out = String::from(SOURCES_HELP);
    out.push_str("\n\nUsage: `ferricorn [OPTIONS] [APP]`. ");
    out.push_str(APP_HELP);
    out.push_str("\n\n");
    for section in sections() {
        out.push_str(&format!("## {section}\n\n"));
        for s in SETTINGS.iter().filter(|s| s.section == section) {
            let flags: Vec<String> = s.synopsis().split(", ").map(|f| format!("`{f}`")).collect();
            out.push_str(&format!("### {}\n\n", s.flag()));
            out.push_str(&format!(
                "* Flags: {}\n* Config file: {}\n* Default: `{}`\n\n",
                flags.join(", "),
                if s.cli_only {
                    "(command line only)".to_string()
                } else {
                    format!("`{}`", s.name)
                },
                s.default
            ));
            out.push_str(&s.help.split_whitespace().collect::<Vec<_>>().join(" "));
            out.push_str("\n\n");
        }
    }
    out.push_str(&crate::config_gunicorn::reference_markdown());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn run_env(a: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Config {
        match parse(&args(a), env) {
            Ok(Action::Run(c)) => c,
            Ok(other) => panic!("{a:?}: expected Run, got {other:?}"),
            Err(e) => panic!("{a:?}: {e}"),
        }
    }

    fn run(a: &[&str]) -> Config {
        run_env(a, &no_env)
    }

    fn err_env(a: &[&str], env: &dyn Fn(&str) -> Option<String>) -> String {
        match parse(&args(a), env) {
            Err(e) => {
                assert!(!e.contains('\n'), "error must be one line: {e}");
                e
            }
            Ok(x) => panic!("{a:?}: expected an error, got {x:?}"),
        }
    }

    fn err(a: &[&str]) -> String {
        err_env(a, &no_env)
    }

    fn printed(a: &[&str]) -> String {
        match parse(&args(a), &no_env) {
            Ok(Action::Print(t)) => t,
            other => panic!("{a:?}: expected Print, got {other:?}"),
        }
    }

    /// A fresh temporary directory per test.
    fn tmpdir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "ferricorn-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_toml(text: &str) -> PathBuf {
        let p = tmpdir().join("ferricorn.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn p(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    fn binds(c: &Config) -> Vec<String> {
        c.bind.iter().map(|b| b.to_string()).collect()
    }

    #[test]
    fn websocket_settings_take_uvicorn_style_seconds_and_sizes() {
        let c = run(&[
            "--ws-max-size",
            "1m",
            "--ws-ping-interval",
            "2.5",
            "--ws-ping-timeout",
            "0",
        ]);
        assert_eq!(c.websocket_max_message_size, 1 << 20);
        assert_eq!((c.ws_ping_interval_ms, c.ws_ping_timeout_ms), (2_500, 0));
        // gunicorn 27's name for the same setting.
        assert_eq!(
            run(&["--websocket-max-message-size", "2m"]).websocket_max_message_size,
            2 << 20
        );
        let d = run(&[]);
        assert_eq!(d.websocket_max_message_size, 16 << 20);
        assert_eq!(
            (d.ws_ping_interval_ms, d.ws_ping_timeout_ms),
            (20_000, 20_000)
        );
        for (v, ms) in [
            ("20", 20_000),
            ("0.05", 50),
            ("1.2345", 1_234),
            ("007", 7_000),
        ] {
            assert_eq!(seconds_ms(v), Ok(ms), "{v}");
            assert_eq!(seconds_ms(&ms_seconds(ms)), Ok(ms), "{v} round trip");
        }
        for bad in ["", ".5", "5.", "-1", "1e3", "x", "1.2.3"] {
            assert!(seconds_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]);
        let d = Config::default();
        assert_eq!(binds(&c), ["127.0.0.1:8000"]);
        assert_eq!(c.workers, 1);
        assert_eq!(c.backlog, 2048);
        assert_eq!(c.worker_connections, 1000);
        assert_eq!(c.timeout, 30);
        assert_eq!(c.graceful_timeout, 30);
        assert_eq!(c.keepalive, 75);
        assert_eq!(c.max_requests, 0);
        assert_eq!(c.max_requests_jitter, 0);
        assert_eq!(c.limit_request_line, 4094);
        assert_eq!(c.limit_request_fields, 100);
        assert_eq!(c.limit_request_field_size, 8190);
        assert_eq!(c.limit_request_body, 1 << 30);
        assert_eq!(c.header_timeout, 10);
        assert_eq!(c.loglevel, "info");
        assert_eq!(c.errorlog, "-");
        assert_eq!(c.accesslog, None);
        assert_eq!(
            c.access_log_format,
            r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#
        );
        assert_eq!(c.pidfile, None);
        assert_eq!(c.umask, 0);
        assert_eq!(c.chdir, None);
        assert_eq!(c.proc_name, None);
        assert!(!c.daemon);
        assert_eq!(c.app, "welcome");
        assert_eq!(c.config_file, None);
        assert!(c.args.is_empty());
        assert_eq!(c.workers, d.workers);
    }

    #[test]
    fn table_defaults_match_config_default() {
        // The shown default, run through the setter, gives the real default.
        for s in SETTINGS.iter().filter(|s| !s.cli_only) {
            let mut c = Config::default();
            let shown = match s.default {
                "None" => "",
                "False" => "false",
                d => d,
            };
            if s.repeatable {
                reset_repeatable(&mut c, s.name);
            }
            // An empty list default (`raw_env`) is just the reset.
            if shown != "[]" {
                (s.set)(&mut c, shown).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            assert_eq!(c, Config::default(), "default of {}", s.name);
        }
    }

    #[test]
    fn table_is_consistent() {
        let mut flags = Vec::new();
        for s in SETTINGS {
            assert!(!s.flags.is_empty(), "{}", s.name);
            assert!(s.flag().starts_with("--"), "{}", s.name);
            assert!(!s.help.is_empty() && !s.section.is_empty());
            assert_eq!(s.takes_value, !s.metavar.is_empty(), "{}", s.name);
            for f in s.flags {
                assert!(!flags.contains(f), "duplicate flag {f}");
                flags.push(f);
                assert!(f.starts_with("--") || f.len() == 2, "{f}");
            }
            if s.repeatable {
                reset_repeatable(&mut Config::default(), s.name);
            }
        }
        // Sections are contiguous.
        let mut order: Vec<&str> = SETTINGS.iter().map(|s| s.section).collect();
        order.dedup();
        assert_eq!(order, sections());
    }

    #[test]
    fn flag_syntaxes() {
        assert_eq!(run(&["-w", "4"]).workers, 4);
        assert_eq!(run(&["-w4"]).workers, 4);
        assert_eq!(run(&["--workers", "4"]).workers, 4);
        assert_eq!(run(&["--workers=4"]).workers, 4);
        assert_eq!(run(&["-b127.0.0.1:9"]).bind.len(), 1);
        assert_eq!(
            run(&["--access-logformat=%(h)s a=b"]).access_log_format,
            "%(h)s a=b"
        );
        assert!(run(&["-D"]).daemon);
        assert!(run(&["--daemon"]).daemon);
        assert_eq!(run(&["--timeout", "0"]).timeout, 0);
        assert_eq!(
            run(&["-t", "5", "--graceful-timeout", "7"]).graceful_timeout,
            7
        );
        assert_eq!(run(&["--keep-alive", "3"]).keepalive, 3);
        assert_eq!(run(&["--backlog", "64"]).backlog, 64);
        assert_eq!(run(&["--worker-connections", "5"]).worker_connections, 5);
        assert_eq!(run(&["--max-requests", "100"]).max_requests, 100);
        assert_eq!(
            run(&["--max-requests-jitter", "10"]).max_requests_jitter,
            10
        );
        assert_eq!(run(&["--header-timeout", "3"]).header_timeout, 3);
        assert_eq!(run(&["--log-level", "DEBUG"]).loglevel, "debug");
        assert_eq!(run(&["--log-file", "/tmp/e"]).errorlog, "/tmp/e");
        assert_eq!(run(&["--error-logfile", "-"]).errorlog, "-");
        assert_eq!(
            run(&["--access-logfile", "-"]).accesslog.as_deref(),
            Some("-")
        );
        assert_eq!(
            run(&["-p", "/tmp/x.pid"]).pidfile,
            Some("/tmp/x.pid".into())
        );
        assert_eq!(
            run(&["--pid=/tmp/y.pid"]).pidfile,
            Some("/tmp/y.pid".into())
        );
        assert_eq!(run(&["-n", "web"]).proc_name.as_deref(), Some("web"));
        assert_eq!(run(&["--name", "api"]).proc_name.as_deref(), Some("api"));
        // A value that looks like a flag is still taken as the value.
        assert!(err(&["-w", "-1"]).contains("--workers"));
    }

    #[test]
    fn later_flag_wins() {
        assert_eq!(run(&["-w", "2", "--workers=3"]).workers, 3);
    }

    #[test]
    fn positional_app_and_double_dash() {
        assert_eq!(run(&["hello"]).app, "hello");
        assert_eq!(run(&["-w", "2", "echo"]).app, "echo");
        assert_eq!(run(&["--", "-weird"]).app, "-weird");
        let c = run(&["echo", "-w", "2"]);
        assert_eq!((c.app.as_str(), c.workers), ("echo", 2));
        let e = err(&["hello", "echo"]);
        assert!(e.contains("'echo'"), "{e}");
        assert!(err(&["--", "a", "b"]).contains("'b'"));
    }

    #[test]
    fn unknown_and_missing() {
        assert_eq!(err(&["--foo"]), "unrecognized option '--foo' (see --help)");
        assert_eq!(
            err(&["--foo=1"]),
            "unrecognized option '--foo' (see --help)"
        );
        assert_eq!(err(&["-x"]), "unrecognized option '-x' (see --help)");
        let e = err(&["--workers"]);
        assert!(
            e.contains("--workers") && e.contains("requires a value"),
            "{e}"
        );
        let e = err(&["-b"]);
        assert!(e.contains("--bind"), "{e}");
        let e = err(&["--daemon=yes"]);
        assert!(e.contains("--daemon") && e.contains("no value"), "{e}");
    }

    #[test]
    fn every_error_names_its_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["-w", "0"], "--workers"),
            (&["-w", "x"], "--workers"),
            (&["--backlog", "0"], "--backlog"),
            (&["--backlog", "65536"], "--backlog"),
            (&["--worker-connections", "0"], "--worker-connections"),
            (&["-t", "-1"], "--timeout"),
            (&["--graceful-timeout", "x"], "--graceful-timeout"),
            (&["--keep-alive", "1.5"], "--keep-alive"),
            (&["--max-requests", "-3"], "--max-requests"),
            (&["--max-requests-jitter", "a"], "--max-requests-jitter"),
            (&["--limit-request-line", "8191"], "--limit-request-line"),
            (&["--limit-request-fields", "0"], "--limit-request-fields"),
            (
                &["--limit-request-fields", "32769"],
                "--limit-request-fields",
            ),
            (
                &["--limit-request-field-size", "-1"],
                "--limit-request-field_size",
            ),
            (&["--limit-request-body", "10x"], "--limit-request-body"),
            (
                &["--limit-request-body", "99999999999g"],
                "--limit-request-body",
            ),
            (&["--header-timeout", "0"], "--header-timeout"),
            (&["--log-level", "verbose"], "--log-level"),
            (&["--error-logfile", ""], "--error-logfile"),
            (&["--access-logformat", ""], "--access-logformat"),
            (&["-m", "0o1000"], "--umask"),
            (&["-m", "08"], "--umask"),
            (&["-m", "abc"], "--umask"),
            (&["--chdir", "/definitely/not/here"], "--chdir"),
            (&["-b", "localhost:http"], "--bind"),
            (&["-b", ""], "--bind"),
            (&["-c", ""], "--config"),
        ];
        for (a, flag) in cases {
            let e = err(a);
            assert!(e.contains(flag), "{a:?}: {e}");
            assert!(e.starts_with("invalid value for "), "{a:?}: {e}");
        }
        assert_eq!(
            err(&["-w", "-1"]),
            "invalid value for --workers: '-1' (must be a positive integer)"
        );
        assert!(
            err(&["--bind", "localhost:http"])
                .starts_with("invalid value for --bind: 'localhost:http' (")
        );
        let e = err(&["-k", "gevent"]);
        assert!(
            e.starts_with("invalid value for --worker-class: 'gevent' ("),
            "{e}"
        );
        assert!(err(&["--threads", "0"]).contains("--threads"));
    }

    #[test]
    fn threads_and_worker_class_pick_the_dispatch() {
        assert!(!run(&[]).threaded());
        assert!(!run(&["-k", "sync"]).threaded());
        assert!(run(&["--threads", "4"]).threaded());
        // gunicorn: sync with threads > 1 means gthread.
        assert!(run(&["-k", "sync", "--threads=2"]).threaded());
        let c = run(&["--worker-class", "gthread"]);
        assert!(c.threaded() && c.threads == 1);
        assert_eq!(run(&["--threads", "8", "-w", "2"]).threads, 8);
    }

    #[test]
    fn the_asgi_worker_classes_select_asgi_and_no_thread_pool() {
        for k in [
            "asgi",
            "uvicorn.workers.UvicornWorker",
            "uvicorn_worker.UvicornWorker",
        ] {
            let c = run(&["-k", k, "--threads", "4"]);
            assert_eq!(c.worker_class, "asgi", "{k}");
            assert!(c.asgi_worker() && !c.threaded(), "{k}");
        }
        let c = run(&[
            "--interface",
            "asgi",
            "--loop",
            "uvloop",
            "--lifespan",
            "off",
        ]);
        assert_eq!(
            (c.interface.as_str(), c.asgi_loop.as_str()),
            ("asgi", "uvloop")
        );
        assert_eq!(c.asgi_lifespan, "off");
        let c = run(&["--asgi-loop", "asyncio", "--asgi-lifespan", "on"]);
        assert_eq!(
            (c.asgi_loop.as_str(), c.asgi_lifespan.as_str()),
            ("asyncio", "on")
        );
        assert!(err(&["--interface", "rsgi"]).contains("must be auto, asgi or wsgi"));
        assert!(err(&["--lifespan", "maybe"]).contains("must be auto, on or off"));
        assert!(err(&["-k", "uvicorn.workers.Nope"]).contains("-k asgi"));
    }

    #[test]
    fn limits() {
        assert_eq!(run(&["--limit-request-line", "0"]).limit_request_line, 8190);
        assert_eq!(
            run(&["--limit-request-line", "8190"]).limit_request_line,
            8190
        );
        assert_eq!(
            run(&["--limit-request-line", "100"]).limit_request_line,
            100
        );
        assert_eq!(
            run(&["--limit-request-fields", "32768"]).limit_request_fields,
            32768
        );
        assert_eq!(
            run(&["--limit-request-field_size", "0"]).limit_request_field_size,
            0
        );
        assert_eq!(
            run(&["--limit-request-field-size", "100"]).limit_request_field_size,
            100
        );
        assert_eq!(
            run(&["--limit-request-field-size=7"]).limit_request_field_size,
            7
        );
        let body = |v: &str| run(&["--limit-request-body", v]).limit_request_body;
        assert_eq!(body("0"), 0);
        assert_eq!(body("1234"), 1234);
        assert_eq!(body("10k"), 10 << 10);
        assert_eq!(body("10m"), 10 << 20);
        assert_eq!(body("10M"), 10 << 20);
        assert_eq!(body("2g"), 2 << 30);
        assert_eq!(body("2GB"), 2 << 30);
        assert!(err(&["--limit-request-body", "m"]).contains("--limit-request-body"));
        assert!(err(&["--limit-request-body", "5b"]).contains("--limit-request-body"));
    }

    #[test]
    fn umask_forms() {
        let m = |v: &str| run(&["--umask", v]).umask;
        assert_eq!(m("0"), 0);
        assert_eq!(m("18"), 18);
        assert_eq!(m("0o22"), 0o22);
        assert_eq!(m("022"), 0o22);
        assert_eq!(m("0x12"), 0x12);
        assert_eq!(m("0b10010"), 0o22);
        assert_eq!(m("0o777"), 0o777);
        assert_eq!(run(&["-m", "0o077"]).umask, 0o77);
    }

    #[test]
    fn chdir_must_exist_and_is_absolute() {
        let d = tmpdir();
        std::fs::create_dir(d.join("sub")).unwrap();
        let c = run(&["--chdir", p(&d)]);
        assert_eq!(c.chdir, Some(d.canonicalize().unwrap()));
        // Relative to launch_dir, not the process cwd.
        match parse_in(&args(&["--chdir", "sub"]), &no_env, &d).unwrap() {
            Action::Run(c) => assert_eq!(c.chdir, Some(d.join("sub").canonicalize().unwrap())),
            other => panic!("{other:?}"),
        }
        let e = err(&["--chdir", p(&d.join("nope"))]);
        assert!(
            e.contains("--chdir") && e.contains("no such directory"),
            "{e}"
        );
    }

    #[test]
    fn bind_is_repeatable_and_replaces_default() {
        let c = run(&[
            "-b",
            "0.0.0.0:80",
            "--bind",
            "unix:/run/a.sock",
            "--bind=fd://3",
        ]);
        assert_eq!(binds(&c), ["0.0.0.0:80", "unix:/run/a.sock", "fd://3"]);
        assert_eq!(binds(&run(&["-b", "[::1]"])), ["[::1]:8000"]);
        assert_eq!(binds(&run(&["-b", "localhost"])), ["127.0.0.1:8000"]);
    }

    #[test]
    fn port_env() {
        let env = env_of(&[("PORT", "5000")]);
        assert_eq!(binds(&run_env(&[], &env)), ["0.0.0.0:5000"]);
        // An explicit --bind replaces the PORT default.
        assert_eq!(
            binds(&run_env(&["-b", "127.0.0.1:1"], &env)),
            ["127.0.0.1:1"]
        );
        let bad = env_of(&[("PORT", "http")]);
        let e = err_env(&[], &bad);
        assert!(e.contains("PORT") && e.contains("'http'"), "{e}");
        // ... but a bad PORT does not matter when --bind overrides it.
        assert_eq!(binds(&run_env(&["-b", "unix:x"], &bad)), ["unix:x"]);
    }

    #[test]
    fn web_concurrency_env() {
        let env = env_of(&[("WEB_CONCURRENCY", "6")]);
        assert_eq!(run_env(&[], &env).workers, 6);
        assert_eq!(run_env(&["-w", "2"], &env).workers, 2);
        let bad = env_of(&[("WEB_CONCURRENCY", "0")]);
        let e = err_env(&[], &bad);
        assert!(e.contains("WEB_CONCURRENCY"), "{e}");
        assert_eq!(run_env(&["-w3"], &bad).workers, 3);
    }

    #[test]
    fn cmd_args_env() {
        let env = env_of(&[(CMD_ARGS_ENV, "  -w 3\t--keep-alive=5  -D ")]);
        let c = run_env(&[], &env);
        assert_eq!((c.workers, c.keepalive, c.daemon), (3, 5, true));
        // The command line beats FERRICORN_CMD_ARGS.
        let c = run_env(&["-w", "9"], &env);
        assert_eq!((c.workers, c.keepalive), (9, 5));
        // Its errors say where they came from and name the flag.
        let e = err_env(&[], &env_of(&[(CMD_ARGS_ENV, "-w zero")]));
        assert!(e.contains("--workers") && e.contains(CMD_ARGS_ENV), "{e}");
        let e = err_env(&[], &env_of(&[(CMD_ARGS_ENV, "--nope")]));
        assert!(e.contains("'--nope'") && e.contains(CMD_ARGS_ENV), "{e}");
        // Command-line binds replace the env ones.
        let env = env_of(&[(CMD_ARGS_ENV, "-b 1.1.1.1:1 -b 2.2.2.2:2")]);
        assert_eq!(binds(&run_env(&[], &env)), ["1.1.1.1:1", "2.2.2.2:2"]);
        assert_eq!(binds(&run_env(&["-b", "3.3.3.3:3"], &env)), ["3.3.3.3:3"]);
    }

    #[test]
    fn precedence_defaults_file_env_cli() {
        let f = write_toml("workers = 2\nkeepalive = 11\ntimeout = 12\nbacklog = 13\n");
        let env = env_of(&[(CMD_ARGS_ENV, "--keep-alive 21 --timeout 22")]);
        let c = run_env(&["-c", p(&f), "--timeout", "32"], &env);
        assert_eq!(c.workers, 2); // file
        assert_eq!(c.keepalive, 21); // env beats file
        assert_eq!(c.timeout, 32); // cli beats env
        assert_eq!(c.backlog, 13); // file beats default
        assert_eq!(c.graceful_timeout, 30); // default
        assert_eq!(c.config_file.as_deref(), Some(f.as_path()));
        // The file beats WEB_CONCURRENCY / PORT (they only change defaults).
        let env = env_of(&[("WEB_CONCURRENCY", "8"), ("PORT", "9000")]);
        let c = run_env(&["-c", p(&f)], &env);
        assert_eq!(binds(&c), ["0.0.0.0:9000"]);
        assert_eq!(c.workers, 2);
    }

    #[test]
    fn config_file_named_in_env() {
        let f = write_toml("workers = 4\n");
        let env = env_of(&[(CMD_ARGS_ENV, &format!("-c {}", p(&f)))]);
        assert_eq!(run_env(&[], &env).workers, 4);
        // One on the command line wins.
        let g = write_toml("workers = 5\n");
        let c = run_env(&["--config", p(&g)], &env);
        assert_eq!(c.workers, 5);
        assert_eq!(c.config_file.as_deref(), Some(g.as_path()));
    }

    #[test]
    fn config_file_values() {
        let f = write_toml(
            r#"
bind = ["127.0.0.1:8000", "unix:/run/app.sock"]
workers = 4
keepalive = 75
daemon = true
umask = 0o22
limit_request_body = "10m"
loglevel = "warning"
accesslog = "-"
proc_name = "web"
"#,
        );
        let c = run(&["-c", p(&f)]);
        assert_eq!(binds(&c), ["127.0.0.1:8000", "unix:/run/app.sock"]);
        assert_eq!((c.workers, c.keepalive, c.daemon), (4, 75, true));
        assert_eq!(c.umask, 0o22);
        assert_eq!(c.limit_request_body, 10 << 20);
        assert_eq!(c.loglevel, "warning");
        assert_eq!(c.accesslog.as_deref(), Some("-"));
        assert_eq!(c.proc_name.as_deref(), Some("web"));
        // A single string for bind; the command line replaces the file's binds.
        let g = write_toml("bind = \"0.0.0.0:81\"\n");
        assert_eq!(binds(&run(&["-c", p(&g)])), ["0.0.0.0:81"]);
        assert_eq!(binds(&run(&["-c", p(&g), "-b", "fd://4"])), ["fd://4"]);
        // Numbers may also be given as strings.
        let h = write_toml("workers = \"3\"\n");
        assert_eq!(run(&["-c", p(&h)]).workers, 3);
    }

    #[test]
    fn config_file_errors() {
        let f = write_toml("wrokers = 4\n");
        assert_eq!(
            err(&["-c", p(&f)]),
            format!(
                "unknown setting 'wrokers' in {} (did you mean 'workers'?)",
                p(&f)
            )
        );
        let f = write_toml("frobnicate = 4\n");
        assert_eq!(
            err(&["-c", p(&f)]),
            format!("unknown setting 'frobnicate' in {}", p(&f))
        );

        let f = write_toml("workers = \"x\"\n");
        let e = err(&["-c", p(&f)]);
        assert!(
            e.contains("workers") && e.contains(p(&f)) && e.contains("positive"),
            "{e}"
        );
        let f = write_toml("workers = -1\n");
        let e = err(&["-c", p(&f)]);
        assert!(
            e.contains("workers") && e.contains(p(&f)) && e.contains("'-1'"),
            "{e}"
        );
        let f = write_toml("workers = 1.5\n");
        let e = err(&["-c", p(&f)]);
        assert!(
            e.contains("workers") && e.contains(p(&f)) && e.contains("float"),
            "{e}"
        );
        let f = write_toml("workers = [1]\n");
        assert!(err(&["-c", p(&f)]).contains("array"));
        let f = write_toml("bind = [80]\n");
        let e = err(&["-c", p(&f)]);
        assert!(e.contains("bind") && e.contains(p(&f)), "{e}");
        let f = write_toml("bind = true\n");
        assert!(
            err(&["-c", p(&f)]).contains("expected a string or an array of strings, got boolean")
        );
        let f = write_toml("loglevel = true\n");
        assert!(err(&["-c", p(&f)]).contains("loglevel"));
        let f = write_toml("bind = []\n");
        assert!(err(&["-c", p(&f)]).contains("bind"));
        let f = write_toml("[server]\nworkers = 1\n");
        assert!(err(&["-c", p(&f)]).contains("unknown setting 'server'"));
        let f = write_toml("daemon = \"yes\"\n");
        let e = err(&["-c", p(&f)]);
        assert!(e.contains("daemon") && e.contains("true or false"), "{e}");
        let f = write_toml("print_config = true\n");
        let e = err(&["-c", p(&f)]);
        assert!(
            e.contains("print_config") && e.contains("command line"),
            "{e}"
        );

        let f = write_toml("workers = 2\nkeepalive = = 3\n");
        let e = err(&["-c", p(&f)]);
        assert!(e.contains("TOML syntax error") && e.contains(p(&f)), "{e}");
        assert!(e.contains("line 2"), "{e}");

        let missing = tmpdir().join("missing.toml");
        let e = err(&["-c", p(&missing)]);
        assert!(
            e.contains("cannot read config file") && e.contains(p(&missing)),
            "{e}"
        );
    }

    #[test]
    fn relative_config_path_uses_launch_dir() {
        let f = write_toml("workers = 7\n");
        let dir = f.parent().unwrap();
        match parse_in(&args(&["-c", "ferricorn.toml"]), &no_env, dir).unwrap() {
            Action::Run(c) => {
                assert_eq!(c.workers, 7);
                assert_eq!(c.config_file.as_deref(), Some(f.as_path()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_version_print_check() {
        let h = printed(&["--help"]);
        assert!(h.starts_with("usage: ferricorn [OPTIONS] [APP]\n"));
        for needle in [
            "welcome",
            "hello",
            "echo",
            "APP",
            "Server Socket",
            "Security",
        ] {
            assert!(h.contains(needle), "{needle}");
        }
        for s in SETTINGS {
            for f in s.flags {
                assert!(h.contains(f), "help lacks {f}");
            }
        }
        assert!(h.lines().all(|l| l.len() <= 100), "help lines too long");
        assert_eq!(printed(&["-h", "--bogus"]), h);
        assert_eq!(printed(&["-w", "2", "-h"]), h);
        let v = format!("ferricorn {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(printed(&["--version"]), v);
        assert_eq!(printed(&["-v"]), v);

        let pc = printed(&["--print-config", "-w", "3"]);
        assert!(pc.contains("\nworkers = 3  # command line\n"), "{pc}");
        assert!(
            pc.contains("\nbind = [\"127.0.0.1:8000\"]  # default\n"),
            "{pc}"
        );
        assert!(pc.contains("\nloglevel = \"info\"  # default\n"), "{pc}");
        assert!(!pc.contains("print_config"));

        match parse(&args(&["--check-config", "-w", "2"]), &no_env).unwrap() {
            Action::Check(c) => assert_eq!(c.workers, 2),
            other => panic!("{other:?}"),
        }
        // --check-config still reports errors.
        assert!(err(&["--check-config", "-w", "0"]).contains("--workers"));
    }

    #[test]
    fn print_config_lists_every_setting_in_table_order() {
        let pc = printed(&["--print-config"]);
        let names: Vec<&str> = pc
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" = ").next().unwrap())
            .collect();
        let expected: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| !s.cli_only)
            .map(|s| s.name)
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn print_config_round_trips() {
        let d = tmpdir();
        let original = args(&[
            "-b",
            "0.0.0.0:80",
            "-b",
            "[::1]:81",
            "-b",
            "unix:/tmp/quote\"d.sock",
            "-b",
            "fd://3",
            "-w",
            "5",
            "--backlog",
            "100",
            "--worker-connections",
            "7",
            "-t",
            "0",
            "--graceful-timeout",
            "9",
            "--keep-alive",
            "0",
            "--max-requests",
            "1000",
            "--max-requests-jitter",
            "50",
            "--limit-request-line",
            "0",
            "--limit-request-fields",
            "10",
            "--limit-request-field-size",
            "0",
            "--limit-request-body",
            "10m",
            "--header-timeout",
            "4",
            "--log-level",
            "error",
            "--error-logfile",
            "/var/log/e.log",
            "--access-logfile",
            "-",
            "--access-logformat",
            "%(h)s \"%(r)s\" \\ %(s)s",
            "-p",
            "/run/f.pid",
            "-m",
            "022",
            "--chdir",
            p(&d),
            "-n",
            "api",
            "-D",
        ]);
        let first = match parse(&original, &no_env).unwrap() {
            Action::Run(c) => c,
            other => panic!("{other:?}"),
        };
        let mut with_print = original.clone();
        with_print.push("--print-config".into());
        let text = match parse(&with_print, &no_env).unwrap() {
            Action::Print(t) => t,
            other => panic!("{other:?}"),
        };
        let bare: String = text
            .lines()
            .map(|l| format!("{}\n", l.split("  # ").next().unwrap()))
            .collect();
        assert_eq!(bare, first.to_toml());
        let f = d.join("printed.toml");
        std::fs::write(&f, &text).unwrap();
        let mut second = run(&["-c", p(&f)]);
        assert_eq!(second.to_toml(), bare);
        second.args = first.args.clone();
        second.config_file = None;
        assert_eq!(second, first);

        // Defaults round-trip too (unset optionals are written as "").
        let text = Config::default().to_toml();
        let f = write_toml(&text);
        let mut c = run(&["-c", p(&f)]);
        c.args.clear();
        c.config_file = None;
        c.launch_dir = Config::default().launch_dir;
        assert_eq!(c, Config::default());
    }

    #[test]
    fn reference_markdown_covers_every_flag() {
        let md = reference_markdown();
        for s in SETTINGS {
            assert!(md.contains(&format!("\n### {}\n", s.flag())), "{}", s.name);
            for f in s.flags {
                assert!(md.contains(&format!("`{f}")), "{f}");
            }
            assert!(
                md.contains(&format!("Default: `{}`", s.default)),
                "{}",
                s.name
            );
        }
        for sec in sections() {
            assert!(md.contains(&format!("## {sec}\n")));
        }
        assert!(md.contains("nginx"));
    }

    #[test]
    fn long_options_abbreviate_as_with_argparse() {
        assert_eq!(run(&["--worker-conn", "7"]).worker_connections, 7);
        assert_eq!(run(&["--graceful=9"]).graceful_timeout, 9);
        assert!(run(&["--dae"]).daemon);
        // An exact flag wins over the longer ones it is a prefix of.
        assert_eq!(run(&["--timeout", "3"]).timeout, 3);
        let e = err(&["--work", "2"]);
        assert!(
            e.starts_with("ambiguous option: --work could match "),
            "{e}"
        );
        for f in [
            "--workers",
            "--worker-connections",
            "--worker-class",
            "--worker-tmp-dir",
        ] {
            assert_eq!(e.matches(f).count(), 1, "{e}");
        }
        // The two spellings of one setting are not ambiguous.
        assert_eq!(
            run(&["--limit-request-field-", "10"]).limit_request_field_size,
            10
        );
        assert!(err(&["--limit-request-field", "10"]).starts_with("ambiguous option"));
        assert!(err(&["--bogus"]).starts_with("unrecognized option '--bogus'"));
    }

    #[test]
    fn gunicorn_settings_without_a_row_warn_or_refuse() {
        let c = run(&["--worker-tmp-dir", "/dev/shm", "--reuse-port", "-w", "2"]);
        assert_eq!(c.workers, 2);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("--worker-tmp-dir is ignored: no heartbeat files"));
        assert!(c.warnings[1].starts_with("--reuse-port is ignored"));
        // Abbreviated and `=` forms too.
        assert_eq!(run(&["--worker-tmp=/dev/shm"]).warnings.len(), 1);
        let e = err(&["--certfile", "c.pem"]);
        assert!(
            e.starts_with("--certfile is not supported: ") && e.contains("nginx"),
            "{e}"
        );
        assert!(err(&["--keyfile=k.pem"]).contains("TLS"));
        assert!(err(&["--reuse-port=yes"]).contains("takes no value"));
        let f = write_toml("worker_tmp_dir = \"/dev/shm\"\nworkers = 3\n");
        let c = run(&["-c", p(&f)]);
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.warnings,
            [format!(
                "worker_tmp_dir in {} is ignored: no heartbeat files: workers report to \
                 the master through shared memory",
                p(&f)
            )]
        );
    }

    #[test]
    fn a_dropped_env_variable_gets_its_old_value_back() {
        let env = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let mut orig = Vec::new();
        let set = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        let first = env_changes(&mut orig, &["HOME=/srv".into(), "A=1".into()], &env);
        assert_eq!(first, [set("HOME", "/srv"), set("A", "1")]);
        // The next configuration drops both: HOME is restored, A removed.
        let second = env_changes(&mut orig, &["B=2".into()], &env);
        assert_eq!(
            second,
            [set("HOME", "/root"), ("A".to_string(), None), set("B", "2")]
        );
        // Kept across reloads: its original is the one from before the first.
        let third = env_changes(&mut orig, &["B=3".into()], &|_| Some("2".into()));
        assert_eq!(third, [set("B", "3")]);
        let fourth = env_changes(&mut orig, &[], &|_| Some("3".into()));
        assert_eq!(fourth, [("B".to_string(), None)]);
    }

    #[test]
    fn env_flag_sets_raw_env() {
        let c = run(&["-e", "A=1", "--env", "B=x=y", "--env=C="]);
        assert_eq!(c.raw_env, ["A=1", "B=x=y", "C="]);
        assert!(err(&["-e", "novalue"]).contains("KEY=VALUE"));
        assert!(err(&["-e", "=1"]).contains("--env"));
        let f = write_toml("raw_env = [\"X=1\"]\n");
        assert_eq!(run(&["-c", p(&f)]).raw_env, ["X=1"]);
        // The command line replaces the file's list, as with --bind.
        assert_eq!(run(&["-c", p(&f), "-e", "Y=2"]).raw_env, ["Y=2"]);
    }

    #[test]
    fn gunicorn_forms_of_values() {
        assert_eq!(run(&["--log-level", "warn"]).loglevel, "warning");
        assert_eq!(run(&["--log-level=WARN"]).loglevel, "warning");
        assert_eq!(binds(&run(&["--bind", ":8001"])), ["0.0.0.0:8001"]);
        assert_eq!(binds(&run(&["-b", "8002"])), ["0.0.0.0:8002"]);
        assert_eq!(
            binds(&run(&["--bind=tcp://127.0.0.1:8003"])),
            ["127.0.0.1:8003"]
        );
    }

    #[test]
    fn gunicorn_cmd_args_below_ferricorn_cmd_args() {
        let env = env_of(&[
            (
                "GUNICORN_CMD_ARGS",
                "-w 2 --timeout 5 --name 'my app' -b :81",
            ),
            (CMD_ARGS_ENV, "--timeout 6"),
        ]);
        let c = run_env(&["-b", ":82"], &env);
        assert_eq!(c.workers, 2);
        assert_eq!(c.timeout, 6);
        assert_eq!(c.proc_name.as_deref(), Some("my app"));
        assert_eq!(binds(&c), ["0.0.0.0:82"]);
        let e = err_env(&[], &env_of(&[("GUNICORN_CMD_ARGS", "-w 0")]));
        assert_eq!(
            e,
            "invalid value for --workers (in GUNICORN_CMD_ARGS): '0' (must be a positive integer)"
        );
        let e = err_env(&[], &env_of(&[("GUNICORN_CMD_ARGS", "--name 'open")]));
        assert!(
            e.contains("GUNICORN_CMD_ARGS") && e.contains("quote"),
            "{e}"
        );
        // The file beats neither; a config file may be named in GUNICORN_CMD_ARGS.
        let f = write_toml("workers = 4\ntimeout = 7\n");
        let env = env_of(&[("GUNICORN_CMD_ARGS", &format!("-c {} --timeout 8", p(&f)))]);
        let c = run_env(&[], &env);
        assert_eq!((c.workers, c.timeout), (4, 8));
    }

    #[test]
    fn print_config_says_where_each_value_came_from() {
        let f = write_toml("workers = 4\ntimeout = 7\nkeepalive = 9\n");
        let env = env_of(&[
            ("GUNICORN_CMD_ARGS", "--timeout 8"),
            (CMD_ARGS_ENV, "--keep-alive 10"),
            ("PORT", "9000"),
        ]);
        let a = args(&["-c", p(&f), "--backlog", "5", "--print-config", "echo"]);
        let Action::Print(t) = parse(&a, &env).unwrap() else {
            panic!()
        };
        let has = |l: &str| assert!(t.lines().any(|x| x == l), "no line {l:?} in\n{t}");
        has(&format!("workers = 4  # {}", p(&f)));
        has("timeout = 8  # GUNICORN_CMD_ARGS");
        has("keepalive = 10  # FERRICORN_CMD_ARGS");
        has("backlog = 5  # command line");
        has("bind = [\"0.0.0.0:9000\"]  # environment variable PORT");
        has("graceful_timeout = 30  # default");
        has("wsgi_app = \"echo\"  # command line");
    }

    #[test]
    fn wsgi_app_names_the_app_unless_a_positional_does() {
        let f = write_toml("wsgi_app = \"echo\"\n");
        assert_eq!(run(&["-c", p(&f)]).app, "echo");
        assert_eq!(run(&["-c", p(&f), "hello"]).app, "hello");
        assert_eq!(run(&[]).app, DEFAULT_APP);
    }

    #[test]
    fn default_config_file_is_looked_up_in_the_launch_dir() {
        let d = tmpdir();
        let act = |dir: &Path| parse_in(&[], &no_env, dir);
        assert!(matches!(act(&d), Ok(Action::Run(c)) if c.config_file.is_none()));
        std::fs::write(d.join("gunicorn.conf.py"), "workers = 3\n").unwrap();
        match act(&d) {
            #[cfg(feature = "python")]
            Ok(Action::Run(c)) => {
                assert_eq!(c.workers, 3);
                assert_eq!(c.config_file, Some(d.join("gunicorn.conf.py")));
            }
            #[cfg(not(feature = "python"))]
            Err(e) => assert!(
                e.contains("gunicorn.conf.py") && e.contains("--features python"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        // gunicorn's `-c FILE` without .py is Python too, unless it is TOML.
        std::fs::write(d.join("web.conf"), "import os\nworkers = 2\n").unwrap();
        match parse_in(&args(&["-c", "web.conf"]), &no_env, &d) {
            #[cfg(feature = "python")]
            Ok(Action::Run(c)) => assert_eq!(c.workers, 2),
            #[cfg(not(feature = "python"))]
            Err(e) => assert!(e.contains("TOML syntax error"), "{e}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(d.join("web.conf"), "workers = 4\n").unwrap();
        match parse_in(&args(&["-c", "web.conf"]), &no_env, &d) {
            Ok(Action::Run(c)) => assert_eq!(c.workers, 4),
            other => panic!("{other:?}"),
        }
        // An explicit -c wins over the default file.
        let f = d.join("x.toml");
        std::fs::write(&f, "workers = 5\n").unwrap();
        match parse_in(&args(&["-c", "x.toml"]), &no_env, &d) {
            Ok(Action::Run(c)) => assert_eq!(c.workers, 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn args_stored_and_reload_rereads_file() {
        let f = write_toml("workers = 2\n");
        let a = args(&["-c", p(&f), "--keep-alive", "9"]);
        let c = match parse(&a, &no_env).unwrap() {
            Action::Run(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.args, a);
        std::fs::write(&f, "workers = 6\nkeepalive = 1\n").unwrap();
        let r = c.reload(&no_env).unwrap();
        assert_eq!((r.workers, r.keepalive), (6, 9));
        assert_eq!(r.args, a);
        std::fs::write(&f, "workers = 0\n").unwrap();
        assert!(c.reload(&no_env).unwrap_err().contains("workers"));
    }

    #[test]
    fn help_mentions_timeout_and_keepalive_rationale() {
        let t = setting("timeout").unwrap().help;
        assert!(t.contains("only") && t.contains("inside the app") && t.contains("sync worker"));
        let k = setting("keepalive").unwrap().help;
        assert!(k.contains("nginx") && k.contains("60") && k.contains("2-second"));
    }
}
