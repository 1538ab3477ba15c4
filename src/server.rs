//! The public face: a builder that turns settings, an app factory and hooks
//! into a running pre-fork server.
//!
//! ```no_run
//! use ferricorn::{Response, Server};
//!
//! fn main() {
//!     let code = Server::new(|_ctx| |_req: &mut ferricorn::Request| Response::ok("text/plain", "hi\n"))
//!         .bind("127.0.0.1:8000")
//!         .workers(2)
//!         .run();
//!     std::process::exit(code);
//! }
//! ```

use crate::app::{App, AppFactory, WorkerContext};
use crate::arbiter::Arbiter;
use crate::bind::BindAddr;
use crate::config::Config;
use crate::hooks::{Bracketed, Hooks, NoHooks};

pub struct Server {
    cfg: Config,
    factory: AppFactory,
    hooks: Box<dyn Hooks>,
    /// An embedded runtime's fork protocol, kept apart from the user hooks.
    fork_bracket: Box<dyn Hooks>,
    errors: Vec<String>,
    /// `bind` was called: the first call replaces the default address.
    bound: bool,
    /// Settings came from the command line: HUP re-reads them.
    from_cli: bool,
}

impl Server {
    /// A server whose workers each build their app with `factory`, after
    /// fork: once per worker, or once per app thread with
    /// [`Server::threads`]. The app is `Send` because with threads it is
    /// built on the worker's main thread and then moved to its own thread;
    /// a per-thread app needs no locks (each thread owns its connections,
    /// caches, counters), and state shared by a worker's threads is the
    /// factory's to share (an `Arc` captured by the factory).
    pub fn new<F, A>(factory: F) -> Server
    where
        F: Fn(&WorkerContext) -> A + 'static,
        A: App + Send + 'static,
    {
        let factory: AppFactory =
            Box::new(move |ctx| Ok(Box::new(factory(ctx)) as Box<dyn App + Send>));
        let mut s = Server::with_factory(Config::default(), factory);
        s.from_cli = false;
        s
    }

    /// A server from resolved settings and a fallible factory (the binary's path).
    pub fn with_factory(cfg: Config, factory: AppFactory) -> Server {
        Server {
            cfg,
            factory,
            hooks: Box::new(NoHooks),
            fork_bracket: Box::new(NoHooks),
            errors: Vec::new(),
            bound: false,
            from_cli: true,
        }
    }

    /// Replace all settings.
    pub fn config(mut self, cfg: Config) -> Server {
        self.cfg = cfg;
        self
    }

    /// Add a `--bind` address (the first call replaces the default).
    pub fn bind(mut self, addr: &str) -> Server {
        match BindAddr::parse(addr) {
            Ok(a) => {
                if !self.bound {
                    self.cfg.bind.clear();
                    self.bound = true;
                }
                self.cfg.bind.push(a);
            }
            Err(e) => self
                .errors
                .push(format!("invalid value for --bind: '{addr}' ({e})")),
        }
        self
    }

    pub fn workers(mut self, n: usize) -> Server {
        self.cfg.workers = n.max(1);
        self
    }

    /// Run the app on `n` threads per worker (`--threads`; 1 = on the
    /// worker's event-loop thread). The factory then builds `n` apps per
    /// worker, one per thread. A request is handed to a thread only when
    /// one is idle; `--timeout` still limits each request.
    pub fn threads(mut self, n: usize) -> Server {
        self.cfg.threads = n.max(1);
        self
    }

    pub fn timeout(mut self, secs: u64) -> Server {
        self.cfg.timeout = secs;
        self
    }

    /// Pass CONNECT requests to the app. Off by default: the server makes no
    /// tunnel, and a 2xx to CONNECT switches the connection to one (RFC 9110
    /// §9.3.6), so an app that does not handle CONNECT must not see it; the
    /// client gets 501 Not Implemented instead.
    pub fn allow_connect(mut self, yes: bool) -> Server {
        self.cfg.allow_connect = yes;
        self
    }

    /// Add hooks: they run after those added before (see [`crate::hooks`]).
    pub fn hooks(mut self, hooks: impl Hooks + 'static) -> Server {
        let before = std::mem::replace(&mut self.hooks, Box::new(NoHooks));
        self.hooks = Box::new((before, hooks));
        self
    }

    /// Set the fork protocol of a runtime embedded in the master (the Python
    /// interpreter's): run closest to fork(2), around the user hooks.
    pub fn fork_bracket(mut self, bracket: impl Hooks + 'static) -> Server {
        self.fork_bracket = Box::new(bracket);
        self
    }

    /// Run the master until it stops; returns the process exit code.
    pub fn run(self) -> i32 {
        if let Some(e) = self.errors.first() {
            log::error!("{e}");
            return 1;
        }
        let nofile = crate::sys::raise_nofile_limit();
        let wanted = self.cfg.worker_connections as u64 + 64;
        if nofile > 0 && nofile < wanted {
            log::warn!(
                "open file limit {nofile} is below --worker-connections {} (+64): raise LimitNOFILE",
                self.cfg.worker_connections
            );
        }
        let mut arbiter = Arbiter::new(
            self.cfg,
            |k| std::env::var(k).ok(),
            self.factory,
            Box::new(Bracketed {
                bracket: self.fork_bracket,
                user: self.hooks,
            }),
        );
        arbiter.set_reloadable(self.from_cli);
        arbiter.run()
    }
}
