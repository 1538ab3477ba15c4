//! One worker process, from fork to exit (gunicorn `workers/base.py`
//! `init_process`, unicorn `worker_loop`).
//!
//! Set-up happens in a fixed order, each step before anything that depends
//! on it: signals (so no signal is lost or kills us by default), title,
//! parent-death signal, the `post_fork` hook, the app (exit code 4 if it
//! cannot be built), `post_worker_init`, then the event loop.

use std::os::fd::OwnedFd;
use std::rc::Rc;

use nix::sys::signal::Signal;

use crate::app::{AppFactory, WorkerContext};
use crate::config::Config;
use crate::conn::ConnConfig;
use crate::dispatch::{Dispatch, Inline, Pool};
use crate::event_loop::{EventLoop, Exit, LoopConfig};
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};
use crate::http::Limits;
use crate::logging::AccessLog;
use crate::proxy::TrustedProxies;
use crate::signals;
use crate::sys::{self, Scoreboard, SignalPipe};

/// How a worker process ends: its exit status, which the master reads
/// (gunicorn's contract). A master whose worker exits with `BootError` or
/// `AppLoadError` stops with the same code: forking again cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum WorkerExit {
    Clean = 0,
    /// The worker could not set itself up (gunicorn's `WORKER_BOOT_ERROR`).
    BootError = 3,
    /// The app could not be built (gunicorn's `APP_LOAD_ERROR`).
    AppLoadError = 4,
}

impl WorkerExit {
    pub fn from_code(code: i32) -> Option<WorkerExit> {
        match code {
            0 => Some(WorkerExit::Clean),
            3 => Some(WorkerExit::BootError),
            4 => Some(WorkerExit::AppLoadError),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

pub struct WorkerArgs<'a> {
    pub cfg: &'a Config,
    pub listeners: Vec<socket2::Socket>,
    pub master_fd: Option<OwnedFd>,
    pub scoreboard: Rc<Scoreboard>,
    pub slot: usize,
    pub age: u64,
    pub workers: usize,
    pub binds: Vec<String>,
    pub factory: Rc<AppFactory>,
    pub hooks: Rc<dyn Hooks>,
    pub server: ServerInfo,
    /// The master's signal mask from before the fork (signals stay blocked
    /// from fork until this worker's handlers are installed).
    pub sigmask: nix::sys::signal::SigSet,
}

/// Run a worker; returns how it ends (the process's exit status).
pub fn run(args: WorkerArgs<'_>) -> WorkerExit {
    let cfg = args.cfg;
    let pid = std::process::id();
    let me = WorkerInfo { pid, age: args.age };

    // Signals first: the master's handlers write into the master's pipe.
    sys::default_signals(&signals::master_signals());
    for &sig in signals::worker_ignored() {
        sys::ignore_signal(sig);
    }
    let sigpipe = match SignalPipe::install(signals::WORKER_HANDLED) {
        Ok(p) => p,
        Err(e) => {
            log::error!("worker {pid}: cannot install signal handlers: {e}");
            return WorkerExit::BootError;
        }
    };
    sys::install_abort_exit();
    // Backstop for the pipe: if the master dies while we block in the app,
    // the kernel still tells us. KILL, not TERM: TERM is a graceful stop,
    // which the loop handles only once the app call returns (a worker in a
    // long call outlived a SIGKILLed master by all of it), and with no
    // master left nothing would enforce --graceful-timeout. A master that
    // stops normally has stopped its workers before it exits, so only a
    // master that died abnormally ever sends this.
    sys::set_parent_death_signal(Signal::SIGKILL);
    // Whatever arrived since fork is delivered now, to our own handlers.
    sys::restore_signal_mask(&args.sigmask);
    // The master may have died before PR_SET_PDEATHSIG took effect.
    if nix::unistd::getppid().as_raw() as u32 != args.server.pid {
        log::warn!("worker {pid}: the master is gone before the worker started; exiting");
        return WorkerExit::Clean;
    }

    let name = cfg.proc_name.clone().unwrap_or_else(|| cfg.app.clone());
    sys::set_process_title(&format!("ferricorn: worker [{name}]"));

    args.hooks.post_fork(&args.server, &me);

    let ctx = WorkerContext {
        pid,
        age: args.age,
        workers: args.workers,
        binds: args.binds.clone(),
        name,
    };
    // One app per thread with --threads (the factory's contract; the
    // worker's own thread is one of them, see `handoff`), else one.
    let threads = if cfg.threaded() { cfg.threads } else { 1 };
    let mut apps = Vec::with_capacity(threads);
    for _ in 0..threads {
        match (args.factory)(&ctx) {
            Ok(app) => apps.push(app),
            // Development: serve the error until a fix is saved.
            Err(e) if cfg.reload => apps.push(crate::reload::failed_app(&cfg.app, &e)),
            Err(e) => {
                log::error!(
                    "Exception in worker process: cannot load app '{}': {e}",
                    cfg.app
                );
                return WorkerExit::AppLoadError;
            }
        }
    }

    // An ASGI app brings its own loop (asyncio), the worker's loop runs in it.
    let mut runner = apps.first_mut().and_then(|a| a.runner());
    if runner.is_some() && threads > 1 {
        log::warn!(
            "--threads {threads} is ignored for an ASGI app: it runs on the worker's asyncio loop"
        );
    }

    crate::reload::start(cfg);

    let access_log = match AccessLog::from_config(cfg) {
        Ok(l) => l,
        Err(e) => {
            let path = cfg.accesslog.as_deref().unwrap_or("-");
            log::error!("cannot open access log {path}: {e}");
            return WorkerExit::BootError;
        }
    };

    let jitter = if cfg.max_requests_jitter > 0 {
        // Spread restarts: no RNG dependency, the pid and clock are enough.
        (crate::clock::monotonic_ms() ^ (pid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            % (cfg.max_requests_jitter + 1)
    } else {
        0
    };
    let loop_cfg = LoopConfig {
        limits: Limits {
            request_line: cfg.limit_request_line,
            fields: cfg.limit_request_fields,
            field_size: cfg.limit_request_field_size,
            body: cfg.limit_request_body,
            allow_connect: cfg.allow_connect,
        },
        keepalive_ms: cfg.keepalive * 1000,
        header_timeout_ms: cfg.header_timeout * 1000,
        graceful_timeout_ms: cfg.graceful_timeout * 1000,
        worker_connections: cfg.worker_connections,
        max_requests: if cfg.max_requests > 0 {
            cfg.max_requests + jitter
        } else {
            0
        },
        timeout_ms: cfg.timeout * 1000,
        conn: ConnConfig {
            trusted: TrustedProxies::parse(&cfg.forwarded_allow_ips).unwrap_or_else(|_| {
                TrustedProxies::parse("127.0.0.1,::1").expect("constant list parses")
            }),
            scheme_headers: crate::proxy::parse_scheme_headers(&cfg.secure_scheme_headers)
                .unwrap_or_default(),
            proxy_protocol: cfg.proxy_protocol,
            memory_limit: cfg.body_buffer_size,
            tmp_dir: cfg.tmp_upload_dir.clone(),
            ws: crate::ws_conn::WsSettings {
                max_size: usize::try_from(cfg.websocket_max_message_size).unwrap_or(usize::MAX),
                ping_interval_ms: cfg.ws_ping_interval_ms,
                ping_timeout_ms: cfg.ws_ping_timeout_ms,
            },
        },
        proxy_allow: TrustedProxies::parse(&cfg.proxy_allow_ips).unwrap_or_else(|_| {
            TrustedProxies::parse("127.0.0.1,::1").expect("constant list parses")
        }),
    };
    let mut ev = match EventLoop::new(
        args.listeners,
        args.master_fd,
        sigpipe,
        args.scoreboard,
        args.slot,
        loop_cfg,
    ) {
        Ok(ev) => ev,
        Err(e) => {
            log::error!("worker {pid}: cannot start the event loop: {e}");
            return WorkerExit::BootError;
        }
    };
    ev.access_log = access_log;
    ev.on_reopen = Some(Box::new(|| {
        if let Err(e) = crate::logging::reopen_error_log() {
            log::error!("reopening the error log failed: {e}");
        }
    }));
    if let Some(r) = runner.as_mut() {
        // Lifespan startup: before the worker accepts a connection.
        if let Err(e) = r.startup() {
            log::error!("Worker (pid:{pid}) failed to boot: {e}");
            return WorkerExit::BootError;
        }
        args.hooks.post_worker_init(&me);
        let (mut ev, exit) = r.run(ev, args.hooks.clone());
        // Lifespan shutdown: after the requests in flight (graceful stop).
        r.shutdown(&exit);
        if exit == Exit::Quick {
            args.hooks.worker_int(&me);
        }
        ev.access_log.flush();
        args.hooks.worker_exit(&me);
        return WorkerExit::Clean;
    }
    // `--threads N`, N > 1: the worker's thread is one of the N (`handoff`).
    // With one thread it could not be: a sent file's WSGI `close()` must
    // run on an app thread, so that is a pool of one, as before.
    // How the worker ends once its loop stops, on whichever thread holds
    // the loop then (see `handoff`).
    let finish = {
        let (hooks, me) = (args.hooks.clone(), me.clone());
        move |ev: &mut EventLoop, exit: Exit| {
            if exit == Exit::Quick {
                hooks.worker_int(&me);
            }
            ev.access_log.flush();
            hooks.worker_exit(&me);
        }
    };
    if cfg.threaded() && threads > 1 {
        let lane_app = apps.pop().expect("one app per thread was built");
        let mut pool = match ev.waker().and_then(|w| Pool::new(apps, w)) {
            Ok(p) => p,
            Err(e) => {
                log::error!("worker {pid}: cannot start {threads} app threads: {e}");
                return WorkerExit::BootError;
            }
        };
        let lane = pool.lane(lane_app);
        args.hooks.post_worker_init(&me);
        crate::handoff::run(
            crate::handoff::Parts {
                ev,
                pool,
                hooks: args.hooks.clone(),
                finish: Box::new(finish),
            },
            lane,
        );
        return WorkerExit::Clean;
    }
    let mut dispatch: Box<dyn Dispatch> = if cfg.threaded() {
        match ev.waker().and_then(|w| Pool::new(apps, w)) {
            Ok(p) => Box::new(p),
            Err(e) => {
                log::error!("worker {pid}: cannot start an app thread: {e}");
                return WorkerExit::BootError;
            }
        }
    } else {
        Box::new(Inline::new(apps.pop().expect("one app was built")))
    };
    args.hooks.post_worker_init(&me);

    let exit = ev.run(&mut *dispatch, &*args.hooks);
    finish(&mut ev, exit);
    WorkerExit::Clean
}
