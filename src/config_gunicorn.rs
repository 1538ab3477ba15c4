//! gunicorn's settings that ferricorn does not need: accepted on the command
//! line, in `GUNICORN_CMD_ARGS` and in config files with a one-line warning
//! saying why, so a gunicorn deployment starts unchanged. A few are refused
//! with one line saying what to change, where ignoring them would serve
//! something else than the operator asked for (TLS, PasteDeploy).
//!
//! [`crate::config::SETTINGS`] is looked up first: a setting implemented
//! there (e.g. once `--threads` lands) shadows its row here.
//! [`GUNICORN_SETTINGS`] is gunicorn's own list (gunicorn 26.1's `config.py` at its 2026-08 head, plus gunicorn 27.0's `websocket_max_message_size`),
//! against which a unit test checks that every gunicorn name is covered.

/// How a gunicorn setting that ferricorn does not implement is treated.
#[derive(Debug, Clone, Copy)]
pub enum Treatment {
    /// Accepted, with a warning.
    Ignore,
    /// Start-up stops with the reason.
    Refuse,
    /// Depends on the value: `Ok(false)` accepted silently (what ferricorn
    /// does anyway), `Ok(true)` accepted with the warning, `Err` refused
    /// with that reason.
    ByValue(fn(&str) -> Result<bool, String>),
}

/// One gunicorn setting without a ferricorn row.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// gunicorn's name (the config-file key).
    pub name: &'static str,
    /// gunicorn's flags (none for file-only settings).
    pub flags: &'static [&'static str],
    /// The flag takes a value (`false`: a `store_true` switch).
    pub takes_value: bool,
    pub treatment: Treatment,
    /// Why it is not needed (Ignore) or what to do instead (Refuse).
    pub why: &'static str,
}

impl Accepted {
    /// The warning or error for this setting as `shown` (a flag or "name in FILE").
    pub fn message(&self, shown: &str) -> String {
        match self.treatment {
            Treatment::Refuse => format!("{shown} is not supported: {}", self.why),
            Treatment::Ignore | Treatment::ByValue(_) => {
                format!("{shown} is ignored: {}", self.why)
            }
        }
    }

    /// What to do with `value` given as `shown`: `Ok(None)` accept silently,
    /// `Ok(Some(warning))`, or `Err(reason)` to stop start-up.
    pub fn verdict(&self, shown: &str, value: &str) -> Result<Option<String>, String> {
        match self.treatment {
            Treatment::Ignore => Ok(Some(self.message(shown))),
            Treatment::Refuse => Err(self.message(shown)),
            Treatment::ByValue(check) => match check(value) {
                Ok(false) => Ok(None),
                Ok(true) => Ok(Some(self.message(shown))),
                Err(why) => Err(format!("invalid value for {shown}: '{value}' ({why})")),
            },
        }
    }

    fn refused(&self) -> bool {
        matches!(self.treatment, Treatment::Refuse)
    }
}

const fn ignore(
    name: &'static str,
    flags: &'static [&'static str],
    takes_value: bool,
    why: &'static str,
) -> Accepted {
    Accepted {
        name,
        flags,
        takes_value,
        treatment: Treatment::Ignore,
        why,
    }
}

const fn refuse(
    name: &'static str,
    flags: &'static [&'static str],
    takes_value: bool,
    why: &'static str,
) -> Accepted {
    Accepted {
        name,
        flags,
        takes_value,
        treatment: Treatment::Refuse,
        why,
    }
}

const NO_TLS: &str = "ferricorn does not speak TLS; nginx in front terminates it";
const NO_H2: &str = "ferricorn speaks HTTP/1.1; nginx in front speaks HTTP/2 and HTTP/3 to clients";
const STRICT: &str = "ferricorn's HTTP parser follows RFC 9112 strictly and is not loosened";
const NO_DIRTY: &str = "ferricorn has no dirty arbiters (gunicorn's separate pool for long tasks)";
const NO_GRACE: &str = "ferricorn tells an ASGI app of a disconnect at once (http.disconnect), \
     and a graceful stop waits --graceful-timeout for requests in flight";
const NO_CONTROL: &str =
    "ferricorn has no control socket; use signals (HUP, TTIN, TTOU, USR2; see docs/signals.md)";

/// Every gunicorn setting ferricorn accepts without implementing it.
pub static ACCEPTED: &[Accepted] = &[
    // Worker Processes (`worker_class`, `threads`, `asgi_loop` and
    // `asgi_lifespan` are settings of their own: src/config.rs).
    ignore(
        "asgi_disconnect_grace_period",
        &["--asgi-disconnect-grace-period"],
        true,
        NO_GRACE,
    ),
    ignore(
        "http_parser",
        &["--http-parser"],
        true,
        "ferricorn has one HTTP parser (httparse with RFC 9112 framing)",
    ),
    // Debugging
    ignore(
        "spew",
        &["--spew"],
        false,
        "line tracing is not built in; use py-spy or sys.settrace in the app",
    ),
    // Server Mechanics
    ignore(
        "sendfile",
        &["--no-sendfile"],
        false,
        "file responses (wsgi.file_wrapper) always use sendfile(2)",
    ),
    ignore(
        "reuse_port",
        &["--reuse-port"],
        false,
        "the master binds each socket once and every worker accepts on it",
    ),
    ignore(
        "worker_tmp_dir",
        &["--worker-tmp-dir"],
        true,
        "no heartbeat files: workers report to the master through shared memory",
    ),
    ignore(
        "initgroups",
        &["--initgroups"],
        false,
        "with --user, the user's supplementary groups are always set (initgroups)",
    ),
    refuse(
        "paste",
        &["--paste", "--paster"],
        true,
        "PasteDeploy is not supported; give the WSGI app as MODULE:CALLABLE",
    ),
    refuse(
        "raw_paste_global_conf",
        &["--paste-global"],
        true,
        "PasteDeploy is not supported; give the WSGI app as MODULE:CALLABLE",
    ),
    ignore(
        "protocol",
        &["--protocol"],
        true,
        "ferricorn speaks HTTP only (no uwsgi protocol)",
    ),
    ignore(
        "uwsgi_allow_ips",
        &["--uwsgi-allow-from"],
        true,
        "ferricorn speaks HTTP only (no uwsgi protocol)",
    ),
    ignore(
        "permit_obsolete_folding",
        &["--permit-obsolete-folding"],
        false,
        STRICT,
    ),
    ignore(
        "strip_header_spaces",
        &["--strip-header-spaces"],
        false,
        STRICT,
    ),
    ignore(
        "permit_unconventional_http_method",
        &["--permit-unconventional-http-method"],
        false,
        STRICT,
    ),
    ignore(
        "permit_unconventional_http_version",
        &["--permit-unconventional-http-version"],
        false,
        STRICT,
    ),
    ignore(
        "casefold_http_method",
        &["--casefold-http-method"],
        false,
        STRICT,
    ),
    ignore(
        "forwarder_headers",
        &["--forwarder-headers"],
        true,
        "the forwarded headers believed from --forwarded-allow-ips are fixed \
         (X-Forwarded-For, X-Forwarded-Proto and --secure-scheme-headers)",
    ),
    ignore(
        "header_map",
        &["--header-map"],
        true,
        "headers whose names contain '_' never reach the WSGI environ",
    ),
    // Logging
    ignore(
        "logger_class",
        &["--logger-class"],
        true,
        "ferricorn's logger is built in (gunicorn's format)",
    ),
    // Process Naming
    ignore(
        "default_proc_name",
        &[],
        true,
        "set by the server itself; use proc_name",
    ),
    // SSL
    refuse("keyfile", &["--keyfile"], true, NO_TLS),
    refuse("certfile", &["--certfile"], true, NO_TLS),
    ignore("ssl_version", &["--ssl-version"], true, NO_TLS),
    ignore("cert_reqs", &["--cert-reqs"], true, NO_TLS),
    ignore("ca_certs", &["--ca-certs"], true, NO_TLS),
    ignore(
        "suppress_ragged_eofs",
        &["--suppress-ragged-eofs"],
        false,
        NO_TLS,
    ),
    ignore(
        "do_handshake_on_connect",
        &["--do-handshake-on-connect"],
        false,
        NO_TLS,
    ),
    ignore("ciphers", &["--ciphers"], true, NO_TLS),
    ignore("ssl_context", &[], true, NO_TLS),
    // HTTP/2
    ignore("http_protocols", &["--http-protocols"], true, NO_H2),
    ignore("http2_cleartext", &["--http2-cleartext"], true, NO_H2),
    ignore(
        "http2_max_concurrent_streams",
        &["--http2-max-concurrent-streams"],
        true,
        NO_H2,
    ),
    ignore(
        "http2_initial_window_size",
        &["--http2-initial-window-size"],
        true,
        NO_H2,
    ),
    ignore(
        "http2_max_frame_size",
        &["--http2-max-frame-size"],
        true,
        NO_H2,
    ),
    ignore(
        "http2_max_header_list_size",
        &["--http2-max-header-list-size"],
        true,
        NO_H2,
    ),
    // Dirty Arbiters
    ignore("dirty_apps", &["--dirty-app"], true, NO_DIRTY),
    ignore("dirty_workers", &["--dirty-workers"], true, NO_DIRTY),
    ignore("dirty_timeout", &["--dirty-timeout"], true, NO_DIRTY),
    ignore("dirty_threads", &["--dirty-threads"], true, NO_DIRTY),
    ignore(
        "dirty_graceful_timeout",
        &["--dirty-graceful-timeout"],
        true,
        NO_DIRTY,
    ),
    ignore("on_dirty_starting", &[], true, NO_DIRTY),
    ignore("dirty_post_fork", &[], true, NO_DIRTY),
    ignore("dirty_worker_init", &[], true, NO_DIRTY),
    ignore("dirty_worker_exit", &[], true, NO_DIRTY),
    // Control
    ignore("control_socket", &["--control-socket"], true, NO_CONTROL),
    ignore(
        "control_socket_mode",
        &["--control-socket-mode"],
        true,
        NO_CONTROL,
    ),
    ignore(
        "control_socket_disable",
        &["--no-control-socket"],
        false,
        NO_CONTROL,
    ),
];

/// gunicorn's server hooks: callables in a Python config file (see `python::hooks`).
pub const HOOKS: &[&str] = &[
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_int",
    "worker_abort",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
];

/// Look a setting up by its gunicorn name.
pub fn accepted(name: &str) -> Option<&'static Accepted> {
    ACCEPTED.iter().find(|a| a.name == name)
}

/// Look a setting up by one of its flags.
pub fn accepted_flag(flag: &str) -> Option<&'static Accepted> {
    ACCEPTED.iter().find(|a| a.flags.contains(&flag))
}

/// gunicorn's settings and flags (gunicorn 27.0, `gunicorn/config.py`), in its order.
pub static GUNICORN_SETTINGS: &[(&str, &[&str])] = &[
    ("config", &["-c", "--config"]),
    ("wsgi_app", &[]),
    ("bind", &["-b", "--bind"]),
    ("backlog", &["--backlog"]),
    ("workers", &["-w", "--workers"]),
    ("worker_class", &["-k", "--worker-class"]),
    ("threads", &["--threads"]),
    ("worker_connections", &["--worker-connections"]),
    ("max_requests", &["--max-requests"]),
    ("max_requests_jitter", &["--max-requests-jitter"]),
    ("timeout", &["-t", "--timeout"]),
    ("graceful_timeout", &["--graceful-timeout"]),
    ("keepalive", &["--keep-alive"]),
    ("limit_request_line", &["--limit-request-line"]),
    ("limit_request_fields", &["--limit-request-fields"]),
    ("limit_request_field_size", &["--limit-request-field_size"]),
    ("reload", &["--reload"]),
    ("reload_engine", &["--reload-engine"]),
    ("reload_extra_files", &["--reload-extra-file"]),
    ("spew", &["--spew"]),
    ("check_config", &["--check-config"]),
    ("print_config", &["--print-config"]),
    ("preload_app", &["--preload"]),
    ("sendfile", &["--no-sendfile"]),
    ("reuse_port", &["--reuse-port"]),
    ("chdir", &["--chdir"]),
    ("daemon", &["-D", "--daemon"]),
    ("raw_env", &["-e", "--env"]),
    ("pidfile", &["-p", "--pid"]),
    ("worker_tmp_dir", &["--worker-tmp-dir"]),
    ("user", &["-u", "--user"]),
    ("group", &["-g", "--group"]),
    ("umask", &["-m", "--umask"]),
    ("initgroups", &["--initgroups"]),
    ("tmp_upload_dir", &[]),
    ("secure_scheme_headers", &[]),
    ("forwarded_allow_ips", &["--forwarded-allow-ips"]),
    ("accesslog", &["--access-logfile"]),
    (
        "disable_redirect_access_to_syslog",
        &["--disable-redirect-access-to-syslog"],
    ),
    ("access_log_format", &["--access-logformat"]),
    ("errorlog", &["--error-logfile", "--log-file"]),
    ("loglevel", &["--log-level"]),
    ("capture_output", &["--capture-output"]),
    ("logger_class", &["--logger-class"]),
    ("logconfig", &["--log-config"]),
    ("logconfig_dict", &[]),
    ("logconfig_json", &["--log-config-json"]),
    ("syslog_addr", &["--log-syslog-to"]),
    ("syslog", &["--log-syslog"]),
    ("syslog_prefix", &["--log-syslog-prefix"]),
    ("syslog_facility", &["--log-syslog-facility"]),
    (
        "enable_stdio_inheritance",
        &["-R", "--enable-stdio-inheritance"],
    ),
    ("statsd_host", &["--statsd-host"]),
    ("dogstatsd_tags", &["--dogstatsd-tags"]),
    ("statsd_prefix", &["--statsd-prefix"]),
    ("enable_backlog_metric", &["--enable-backlog-metric"]),
    ("proc_name", &["-n", "--name"]),
    ("default_proc_name", &[]),
    ("pythonpath", &["--pythonpath"]),
    ("paste", &["--paste", "--paster"]),
    ("on_starting", &[]),
    ("on_reload", &[]),
    ("when_ready", &[]),
    ("pre_fork", &[]),
    ("post_fork", &[]),
    ("post_worker_init", &[]),
    ("worker_int", &[]),
    ("worker_abort", &[]),
    ("pre_exec", &[]),
    ("pre_request", &[]),
    ("post_request", &[]),
    ("child_exit", &[]),
    ("worker_exit", &[]),
    ("nworkers_changed", &[]),
    ("on_exit", &[]),
    ("ssl_context", &[]),
    ("proxy_protocol", &["--proxy-protocol"]),
    ("proxy_allow_ips", &["--proxy-allow-from"]),
    ("protocol", &["--protocol"]),
    ("uwsgi_allow_ips", &["--uwsgi-allow-from"]),
    ("keyfile", &["--keyfile"]),
    ("certfile", &["--certfile"]),
    ("ssl_version", &["--ssl-version"]),
    ("cert_reqs", &["--cert-reqs"]),
    ("ca_certs", &["--ca-certs"]),
    ("suppress_ragged_eofs", &["--suppress-ragged-eofs"]),
    ("do_handshake_on_connect", &["--do-handshake-on-connect"]),
    ("ciphers", &["--ciphers"]),
    ("http_protocols", &["--http-protocols"]),
    ("http2_cleartext", &["--http2-cleartext"]),
    (
        "http2_max_concurrent_streams",
        &["--http2-max-concurrent-streams"],
    ),
    (
        "http2_initial_window_size",
        &["--http2-initial-window-size"],
    ),
    ("http2_max_frame_size", &["--http2-max-frame-size"]),
    (
        "http2_max_header_list_size",
        &["--http2-max-header-list-size"],
    ),
    ("raw_paste_global_conf", &["--paste-global"]),
    ("permit_obsolete_folding", &["--permit-obsolete-folding"]),
    ("strip_header_spaces", &["--strip-header-spaces"]),
    (
        "permit_unconventional_http_method",
        &["--permit-unconventional-http-method"],
    ),
    (
        "permit_unconventional_http_version",
        &["--permit-unconventional-http-version"],
    ),
    ("casefold_http_method", &["--casefold-http-method"]),
    ("forwarder_headers", &["--forwarder-headers"]),
    ("header_map", &["--header-map"]),
    ("asgi_loop", &["--asgi-loop"]),
    ("asgi_lifespan", &["--asgi-lifespan"]),
    (
        "asgi_disconnect_grace_period",
        &["--asgi-disconnect-grace-period"],
    ),
    // New in gunicorn 27.0.
    (
        "websocket_max_message_size",
        &["--websocket-max-message-size"],
    ),
    ("http_parser", &["--http-parser"]),
    ("root_path", &["--root-path"]),
    ("dirty_apps", &["--dirty-app"]),
    ("dirty_workers", &["--dirty-workers"]),
    ("dirty_timeout", &["--dirty-timeout"]),
    ("dirty_threads", &["--dirty-threads"]),
    ("dirty_graceful_timeout", &["--dirty-graceful-timeout"]),
    ("on_dirty_starting", &[]),
    ("dirty_post_fork", &[]),
    ("dirty_worker_init", &[]),
    ("dirty_worker_exit", &[]),
    ("control_socket", &["--control-socket"]),
    ("control_socket_mode", &["--control-socket-mode"]),
    ("control_socket_disable", &["--no-control-socket"]),
];

/// ferricorn's status for a gunicorn setting, for docs/settings.md.
pub fn status(name: &str) -> String {
    if let Some(s) = crate::config::setting(name) {
        return format!("implemented (`{}`)", s.flag());
    }
    if HOOKS.contains(&name) {
        return "implemented: a callable of this name in a Python config file (server hook)".into();
    }
    match accepted(name) {
        Some(a) if a.refused() => format!("refused: {}", a.why),
        Some(a) => format!("accepted and ignored: {}", a.why),
        None => "unknown".into(),
    }
}

/// gunicorn's `-k asgi` and the uvicorn worker classes: ferricorn's ASGI worker.
pub fn is_asgi_worker_class(class: &str) -> bool {
    matches!(
        class,
        "asgi"
            | "uvicorn.workers.UvicornWorker"
            | "uvicorn_worker.UvicornWorker"
            | "uvicorn.workers.UvicornH11Worker"
            | "uvicorn_worker.UvicornH11Worker"
    )
}

/// Why a gunicorn worker class other than `sync`/`gthread` is refused, with
/// what to use instead (the reason part of "invalid value for --worker-class").
pub fn worker_class_refusal(class: &str) -> String {
    let c = class.to_ascii_lowercase();
    let base = c.rsplit('.').next().unwrap_or(&c);
    if c.starts_with("uvicorn") || c.contains("uvicornworker") {
        "unknown uvicorn worker class: use -k asgi (ferricorn's ASGI worker), also \
         spelled uvicorn.workers.UvicornWorker"
            .into()
    } else if [
        "gevent",
        "eventlet",
        "tornado",
        "geventwebsocket",
        "ggevent",
        "geventworker",
    ]
    .iter()
    .any(|g| c.starts_with(g) || base.starts_with(g))
    {
        format!(
            "ferricorn has no green-thread workers ({class}); for concurrent requests use \
             -k gthread --threads N (app threads per worker; slow clients never hold one)"
        )
    } else {
        "must be sync or gthread; for concurrent requests use --threads N".into()
    }
}

/// How the server hooks of a Python config file are called.
const HOOKS_DOC: &str = "\
A Python config file may define gunicorn's server hooks as functions; they are \
called at gunicorn's moments, in the master or in the worker as in gunicorn \
(`worker_abort` runs in the master, after the stuck worker was killed). A hook \
that raises is logged with its traceback, and the server goes on. The arguments \
offer what gunicorn's objects are used for in practice:

| hook | arguments |
|---|---|
| `on_starting`, `when_ready`, `on_reload`, `pre_exec`, `on_exit` | `server` |
| `pre_fork`, `post_fork`, `child_exit`, `worker_exit` | `server`, `worker` |
| `post_worker_init`, `worker_int`, `worker_abort` | `worker` |
| `pre_request` | `worker`, `req` |
| `post_request` | `worker`, `req`, `environ`, `resp` |
| `nworkers_changed` | `server`, `new_value`, `old_value` |

- `server`: `pid`, `num_workers`, `address` (the bind addresses as strings), \
`proc_name`, `cfg.workers`, `cfg.bind`, `log`.
- `worker`: `pid` (`None` in `pre_fork`), `ppid`, `age` (the n-th worker this \
master forked), `alive`, `log`.
- `req`: `method`, `uri`, `path`, `query`, `version` (`(1, 1)`), `headers` (a list \
of `(NAME, value)`, names upper-case as in gunicorn), `remote_addr`, `scheme`.
- `environ`: `REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `RAW_URI`, `SERVER_PROTOCOL`.
- `resp`: `status` (`\"200 OK\"`), `status_code`.
- `log`: `debug`, `info`, `warning`, `error`, `critical`, `exception` and \
`log(level, msg, *args)`, with `%`-style arguments, writing to the error log.

On SIGHUP the file is run again; if it fails, the running settings and hooks stay.
";

/// The docs/settings.md part about gunicorn: the hooks, then every gunicorn
/// setting with ferricorn's status.
pub fn reference_markdown() -> String {
    let mut out = String::from("## Server hooks (Python config file)\n\n");
    out.push_str(HOOKS_DOC);
    out.push_str(
        "\n## gunicorn's settings\n\nEvery setting of gunicorn (27.0), and what ferricorn \
         does with it. An ignored setting is accepted with a one-line warning at start-up; \
         a refused one stops start-up with the reason.\n\n\
         | gunicorn setting | flags | ferricorn |\n|---|---|---|\n",
    );
    for (name, flags) in GUNICORN_SETTINGS {
        let flags: Vec<String> = flags.iter().map(|f| format!("`{f}`")).collect();
        let flags = if flags.is_empty() {
            "(config file)".to_string()
        } else {
            flags.join(", ")
        };
        out.push_str(&format!("| `{name}` | {flags} | {} |\n", status(name)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SETTINGS, setting};

    #[test]
    fn every_gunicorn_setting_is_covered_with_its_flags() {
        for (name, flags) in GUNICORN_SETTINGS {
            if let Some(s) = setting(name) {
                for f in *flags {
                    assert!(
                        s.flags.contains(f),
                        "gunicorn's {f} is not a flag of ferricorn's {name}"
                    );
                }
            } else if HOOKS.contains(name) {
                assert!(flags.is_empty());
            } else {
                let a = accepted(name).unwrap_or_else(|| panic!("gunicorn's {name} is unknown"));
                assert_eq!(a.flags, *flags, "{name}");
            }
        }
        for a in ACCEPTED {
            assert!(
                GUNICORN_SETTINGS.iter().any(|(n, _)| *n == a.name),
                "{} is not a gunicorn setting",
                a.name
            );
            assert!(!a.why.is_empty() && !a.why.contains('\n'));
        }
    }

    #[test]
    fn accepted_flags_do_not_collide_with_ferricorn_flags() {
        for a in ACCEPTED.iter().filter(|a| setting(a.name).is_none()) {
            for f in a.flags {
                assert!(
                    !SETTINGS.iter().any(|s| s.flags.contains(f)),
                    "{f} of {} is also a ferricorn flag",
                    a.name
                );
            }
        }
    }

    #[test]
    fn worker_class_refusals_name_the_alternative() {
        for asgi in [
            "uvicorn.workers.UvicornWorker",
            "uvicorn_worker.UvicornWorker",
            "asgi",
        ] {
            assert!(is_asgi_worker_class(asgi), "{asgi}");
        }
        assert!(worker_class_refusal("uvicorn.workers.Other").contains("-k asgi"));
        for green in [
            "gevent",
            "eventlet",
            "tornado",
            "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
            "gunicorn.workers.ggevent.GeventWorker",
        ] {
            assert!(
                worker_class_refusal(green).contains("-k gthread"),
                "{green}"
            );
        }
        assert!(worker_class_refusal("bogus").starts_with("must be sync or gthread"));
    }

    #[test]
    fn worker_class_until_its_row_lands() {
        if setting("worker_class").is_some() {
            return; // the threads work's row decides
        }
        let a = accepted("worker_class").unwrap();
        assert_eq!(a.verdict("-k", "sync"), Ok(None));
        assert!(a.verdict("-k", "gthread").unwrap().is_some());
        let e = a
            .verdict("-k", "uvicorn.workers.UvicornWorker")
            .unwrap_err();
        assert!(e.starts_with("invalid value for -k: 'uvicorn.workers.UvicornWorker' (an ASGI"));
        assert!(
            a.verdict("-k", "gevent")
                .unwrap_err()
                .contains("-k gthread")
        );
    }

    #[test]
    fn statuses() {
        assert!(status("workers").starts_with("implemented"));
        assert!(status("post_fork").contains("hook"));
        assert!(status("worker_tmp_dir").contains("heartbeat"));
        assert!(status("certfile").starts_with("refused"));
        assert_eq!(
            accepted("certfile").unwrap().message("--certfile"),
            format!("--certfile is not supported: {NO_TLS}")
        );
    }
}
