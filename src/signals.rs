//! The signals ferricorn understands: one table, read by the master to
//! install its handlers and by the docs (`ferricorn --help-signals`).
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
        master: "reload: re-read the configuration, start new workers, retire each old worker once a new one accepts",
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
        master: "upgrade: re-execute the binary, handing over the listening sockets; the pid file becomes PIDFILE.oldbin",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGWINCH,
        name: "WINCH",
        master: "stop all workers gracefully, keep the master (step 2 of an upgrade); HUP brings them back",
        worker: "ignored",
    },
    SignalDoc {
        signal: Signal::SIGCHLD,
        name: "CHLD",
        master: "reap exited workers, log how they ended, replace them",
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
