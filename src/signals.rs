//! The signals ferricorn understands: one table, read by the master to
//! install its handlers and by the docs: the table in `docs/signals.md` is
//! [`markdown`]'s output, kept current by a unit test (run it with
//! `FERRICORN_BLESS=1` to rewrite the section after editing a row).
//!
//! Meanings are gunicorn's (so systemd's TERM is a graceful stop), with the
//! nginx/unicorn upgrade sequence (USR2, WINCH, QUIT) on top.
//!
//! Upgrade procedure (zero refused connections):
//! 1. `kill -USR2 $(cat app.pid)`: the master renames `app.pid` to
//!    `app.pid.oldbin` and re-executes the binary with the listening sockets
//!    in `FERRICORN_FD`; the new master writes `app.pid` and forks its
//!    workers. Old and new workers now share the sockets.
//! 2. `kill -WINCH $(cat app.pid.oldbin)`: the old master stops its workers
//!    gracefully; only the new generation serves.
//! 3. `kill -TERM $(cat app.pid.oldbin)`: the old master exits.
//!
//! Rollback, instead of 3: `kill -HUP $(cat app.pid.oldbin)` brings the old
//! workers back, then `kill -TERM $(cat app.pid)` stops the new master.

use nix::sys::signal::Signal;

/// One row: the signal, and what master and worker do on it.
pub struct SignalDoc {
    pub signal: Signal,
    pub name: &'static str,
    pub master: &'static str,
    pub worker: &'static str,
}

pub const SIGNALS: &[SignalDoc] = &[
    SignalDoc {
        signal: Signal::SIGTERM,
        name: "TERM",
        master: "graceful stop: stop accepting, serve every accepted and queued connection, exit 0 within --graceful-timeout, then SIGKILL what is left",
        worker: "graceful stop: accept what is queued, finish in-flight and pipelined requests, close idle connections",
    },
    SignalDoc {
        signal: Signal::SIGINT,
        name: "INT",
        master: "quick stop: workers exit at once",
        worker: "exit at once",
    },
    SignalDoc {
        signal: Signal::SIGQUIT,
        name: "QUIT",
        master: "quick stop, like INT",
        worker: "exit at once",
    },
    SignalDoc {
        signal: Signal::SIGHUP,
        name: "HUP",
        master: "reload: re-read the configuration (-c file, FERRICORN_CMD_ARGS), start new workers, retire each old worker only once a new one accepts; after WINCH, brings the workers back (upgrade rollback)",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGTTIN,
        name: "TTIN",
        master: "one worker more",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGTTOU,
        name: "TTOU",
        master: "one worker fewer (never below one)",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGUSR1,
        name: "USR1",
        master: "reopen the log files and tell the workers to do the same",
        worker: "reopen the log files",
    },
    SignalDoc {
        signal: Signal::SIGUSR2,
        name: "USR2",
        master: "upgrade: re-execute the binary (argv[0]) with the listening sockets in FERRICORN_FD; the pid file becomes PIDFILE.oldbin and the new master writes PIDFILE; both masters serve until WINCH",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGWINCH,
        name: "WINCH",
        master: "stop all workers gracefully, keep the master and its sockets (step 2 of an upgrade); HUP brings them back. Ignored unless a USR2 child is running (set FERRICORN_ALLOW_WINCH=1 to allow it anyway): without a successor it would be an outage",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGCHLD,
        name: "CHLD",
        master: "reap exited workers, log how each ended in words (exit code, signal name, 'Perhaps out of memory?' on SIGKILL), replace them; workers dying before they accept are restarted with a growing delay, and after 10 in a row the master exits 3",
        worker: "default",
    },
];

/// Signals the master routes into its self-pipe.
pub fn master_signals() -> Vec<Signal> {
    SIGNALS.iter().map(|s| s.signal).collect()
}

/// Signals a worker handles itself (the rest it ignores, see [`worker_ignored`]).
pub const WORKER_HANDLED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
];

/// Signals a worker ignores: meant for the master (a process-group kill of
/// HUP must not stop workers).
pub const WORKER_IGNORED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub fn worker_ignored() -> &'static [Signal] {
    WORKER_IGNORED
}

/// The table as Markdown (README "Signals" section).
pub fn markdown() -> String {
    let mut s = String::from("| signal | master | worker |\n|---|---|---|\n");
    for row in SIGNALS {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            row.name, row.master, row.worker
        ));
    }
    s
}

/// "SIGKILL" etc. for logs.
pub fn name(sig: Signal) -> &'static str {
    sig.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- BEGIN signal table: generated from src/signals.rs -->\n";
    const END: &str = "<!-- END signal table -->";

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/signals.md")
    }

    #[test]
    fn docs_name_every_signal() {
        let doc = std::fs::read_to_string(doc_path()).expect("docs/signals.md");
        for row in SIGNALS {
            assert!(
                doc.contains(&format!("SIG{}", row.name))
                    && doc.contains(&format!("| {} |", row.name)),
                "docs/signals.md does not document {}",
                row.name
            );
        }
    }

    #[test]
    fn docs_table_is_current() {
        let path = doc_path();
        let doc = std::fs::read_to_string(&path).expect("docs/signals.md");
        let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = doc.find(END).expect("end marker");
        let table = markdown();
        if doc[start..end] != table {
            if std::env::var_os("FERRICORN_BLESS").is_some() {
                let new = format!("{}{}{}", &doc[..start], table, &doc[end..]);
                std::fs::write(&path, new).unwrap();
            } else {
                panic!("docs/signals.md is stale: rerun with FERRICORN_BLESS=1");
            }
        }
    }

    #[test]
    fn master_handles_and_workers_ignore_consistently() {
        for s in WORKER_IGNORED {
            assert!(!WORKER_HANDLED.contains(s));
            assert!(master_signals().contains(s));
        }
        for s in WORKER_HANDLED {
            assert!(master_signals().contains(s));
        }
    }
}
