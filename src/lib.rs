//! ferricorn: a pre-fork HTTP/1.1 application server, in the line of
//! gunicorn and unicorn, with a hand-written mio event loop in every worker.
//!
//! ```text
//!                 ┌──────────── master (arbiter) ────────────┐
//!  signals ─pipe─▶│ binds sockets · forks · reaps · reloads │
//!                 └───────┬──────────────┬───────────────────┘
//!              fork+inherit fds    scoreboard (shared memory: heartbeats)
//!                 ┌───────▼──┐    ┌──────▼───┐
//!                 │ worker 1 │ …  │ worker N │   each: mio loop → Conn → dispatch → App
//!                 └──────────┘    └──────────┘         (inline, or on --threads threads)
//! ```
//!
//! # Layout
//! Read in this order:
//! - [`server`]: the public builder (`Server::new(factory).bind(..).run()`).
//! - [`boot`]: binding, the pid file and privileges, before there is a worker.
//! - [`arbiter`]: the master loop; every signal's effect is one `handle_*` method;
//!   its decisions are pure functions in [`arbiter::table`].
//! - [`worker`]: a worker from fork to exit, set-up in a fixed order.
//! - [`event_loop`]: the mio loop: accept (fairly), drive connections, timers.
//! - [`balance`]: the loop's accept-balancing and capacity decisions, pure.
//! - [`incidents`]: rejected requests and shed connections, counted for the log.
//! - [`conn`]: one connection's state machine, independent of mio.
//! - [`http`]: request heads (httparse + RFC 9112 framing rules), bodies, responses.
//! - [`dispatch`]: the seam between a connection and the app (inline, or a
//!   thread pool with `--threads`); [`handoff`]: with `--threads`, the
//!   worker's own thread runs short calls and lends the loop to a stand-in
//!   while one waits.
//! - [`app`]: the `App` trait, `Request`, `Response`; [`apps`]: built-in apps.
//! - [`config`] and [`bind`]: the one settings table behind CLI, file and docs;
//!   [`config_value`]: what every source (argv, env, TOML, a gunicorn.conf.py)
//!   hands it; [`config_gunicorn`]: gunicorn's settings ferricorn does not need;
//!   [`cli`]: the command (binary and pip package) on top of it.
//! - [`signals`]: the signal table and the upgrade procedure.
//! - [`proxy`]: who the client is behind nginx (`X-Forwarded-*`, PROXY protocol).
//! - [`clock`]: the monotonic clock for every deadline, the wall clock for `Date` and logs.
//! - [`listener`], [`pidfile`], [`systemd`], [`logging`], [`hooks`]: edges;
//!   [`statsd`] (gunicorn's statsd metrics) and [`reload`] (`--reload`) beside them.
//! - [`scoreboard`]: per-worker counters in shared memory; [`metrics`]: their
//!   renderings; [`status`]: the master's status listener and `ferricorn
//!   status`; [`reqmeta`]: request ids and queue time; [`cgroup`]: `--workers auto`.
//!   `scoreboard::shm` maps the counters (one `unsafe` block each, with `SAFETY:`).
//! - [`sys`]: the only module allowed `unsafe` for syscalls (fork, signal
//!   handler, shared memory, environment). With the `python` feature,
//!   `python::interp` holds the few CPython FFI calls (interpreter start,
//!   the fork bracket), each with its own `SAFETY:` note. [`handoff`]'s
//!   one `unsafe impl Send` (the loop passed between two threads under a
//!   mutex) says why it is sound.
#![deny(unsafe_code)]

pub mod app;
pub mod apps;
pub mod arbiter;
pub mod balance;
pub mod bind;
pub mod boot;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_gunicorn;
pub mod config_value;
pub mod conn;
pub mod dispatch;
pub mod event_loop;
pub mod handoff;
pub mod hooks;
pub mod http;
pub mod incidents;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod pidfile;
pub mod proxy;
#[cfg(feature = "python")]
pub mod python;
pub mod reload;
pub mod reqmeta;
pub mod scoreboard;
pub mod server;
pub mod signals;
pub mod statsd;
pub mod status;
pub mod sys;
pub mod systemd;
pub mod worker;
pub mod ws;
pub mod ws_conn;

pub use app::{
    App, Body, FileBody, Peer, Request, Response, ResponseBody, StackReporter, ThreadScope,
    WorkerContext,
};
pub use config::Config;
pub use hooks::{Hooks, NoHooks, ServerInfo, WorkerInfo};
pub use server::Server;
