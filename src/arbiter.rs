//! The master process ("arbiter", after gunicorn's `arbiter.py`; unicorn's
//! `HttpServer#join`; nginx's `ngx_master_process_cycle`).
//!
//! The arbiter never touches a client socket. It owns the listening sockets,
//! the worker table and the scoreboard, and its loop reads aloud:
//!
//! ```text
//! loop {
//!     sleep until a signal arrives or a second passes
//!     handle each queued signal (one `handle_*` method per signal)
//!     reap exited workers          (reap_workers)
//!     kill workers stuck in the app (murder_workers)
//!     start or retire workers until the count is right (manage_workers)
//! }
//! ```
//!
//! Signal handlers only write the signal number into a self-pipe
//! ([`crate::sys::SignalPipe`]); everything else happens here, in one thread.
//!
//! # Reloads that lose nothing
//! On HUP the arbiter starts a new *generation* of workers and retires an
//! old worker only when a new one is accepting (its scoreboard row says
//! `ready`), so the number of accepting workers never drops. A retiring
//! worker stops accepting, serves what it accepted, and exits.
//!
//! # Exit codes (gunicorn's contract)
//! A worker that exits with [`WORKER_BOOT_ERROR`] (3) or [`APP_LOAD_ERROR`]
//! (4) stops the master with the same code: forking again cannot help.
//! Workers that die before becoming ready are restarted with a growing delay,
//! and after [`MAX_BOOT_FAILURES`] in a row the master gives up (exit 3).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::app::AppFactory;
use crate::config::Config;
use crate::event_loop::now_ms;
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};
use crate::listener::{self, BindOptions, Listener};
use crate::pidfile::PidFile;
use crate::signals;
use crate::sys::{self, Fork, Pid, Scoreboard, SignalPipe};
use crate::systemd::Notifier;
use crate::worker;

/// A worker could not boot (gunicorn's `WORKER_BOOT_ERROR`).
pub const WORKER_BOOT_ERROR: i32 = 3;
/// The app could not be loaded (gunicorn's `APP_LOAD_ERROR`).
pub const APP_LOAD_ERROR: i32 = 4;
/// Consecutive workers dying before they accept, before the master gives up.
pub const MAX_BOOT_FAILURES: u32 = 10;
/// Scoreboard rows: the most workers one master can run at once.
pub const MAX_WORKERS: usize = 1024;
/// How long an aborted (timed-out) worker gets before SIGKILL.
const ABORT_GRACE_MS: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Running,
    /// Sent TERM; will be SIGKILLed at the deadline.
    Retiring {
        deadline_ms: u64,
    },
    /// Sent SIGABRT for a timeout; SIGKILL at the deadline.
    Aborted {
        deadline_ms: u64,
    },
}

struct WorkerEntry {
    age: u64,
    slot: usize,
    generation: u64,
    state: WorkerState,
    /// Has this worker ever reported ready?
    was_ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stopping; SIGKILL whatever is left at the deadline.
    Stopping {
        graceful: bool,
        deadline_ms: u64,
    },
}

pub struct Arbiter {
    cfg: Config,
    env: fn(&str) -> Option<String>,
    factory: std::rc::Rc<AppFactory>,
    hooks: std::rc::Rc<dyn Hooks>,
    listeners: Vec<Listener>,
    /// The listeners came from systemd: never unlink their paths.
    systemd_sockets: bool,
    workers: BTreeMap<Pid, WorkerEntry>,
    scoreboard: Rc<Scoreboard>,
    signals: Option<SignalPipe>,
    /// Workers hold the read end; EOF tells them the master is gone.
    death_rx: Option<OwnedFd>,
    death_tx: Option<OwnedFd>,
    num_workers: usize,
    generation: u64,
    age: u64,
    phase: Phase,
    boot_failures: u32,
    next_spawn_ms: u64,
    /// Pid of the new master started by USR2, while it lives.
    reexec_pid: Option<Pid>,
    pidfile: Option<PidFile>,
    notifier: Notifier,
    announced_ready: bool,
    last_watchdog_ms: u64,
    launch_dir: PathBuf,
    argv: Vec<String>,
    exit_code: i32,
    /// Settings came from the command line and config file (HUP re-reads them).
    reloadable: bool,
}

impl Arbiter {
    pub fn new(
        cfg: Config,
        env: fn(&str) -> Option<String>,
        factory: AppFactory,
        hooks: Box<dyn Hooks>,
    ) -> Arbiter {
        let (rx, tx) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok((rx, tx)) => (Some(rx), Some(tx)),
            Err(e) => {
                log::warn!("pipe() failed, workers will not notice a master crash: {e}");
                (None, None)
            }
        };
        Arbiter {
            num_workers: cfg.workers,
            launch_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            argv: std::env::args().collect(),
            cfg,
            env,
            factory: std::rc::Rc::new(factory),
            hooks: std::rc::Rc::from(hooks),
            listeners: Vec::new(),
            systemd_sockets: false,
            workers: BTreeMap::new(),
            scoreboard: Rc::new(
                Scoreboard::new(MAX_WORKERS).expect("mmap() of the scoreboard failed"),
            ),
            signals: None,
            death_rx: rx,
            death_tx: tx,
            generation: 0,
            age: 0,
            phase: Phase::Running,
            boot_failures: 0,
            next_spawn_ms: 0,
            reexec_pid: None,
            pidfile: None,
            notifier: Notifier::from_env(),
            announced_ready: false,
            last_watchdog_ms: 0,
            exit_code: 0,
            reloadable: true,
        }
    }

    /// Whether HUP re-reads the command line and config file.
    pub fn set_reloadable(&mut self, yes: bool) {
        self.reloadable = yes;
    }

    fn info(&self) -> ServerInfo {
        ServerInfo {
            pid: std::process::id(),
            workers: self.num_workers,
            binds: self.listeners.iter().map(|l| l.name.clone()).collect(),
        }
    }

    fn title(&self) -> String {
        match &self.cfg.proc_name {
            Some(n) => format!("ferricorn: master [{n}]"),
            None => format!("ferricorn: master [{}]", self.cfg.app),
        }
    }

    /// Bind, fork the workers and supervise them until told to stop.
    /// Returns the process exit code.
    pub fn run(mut self) -> i32 {
        self.hooks.on_starting(&self.info());
        // Daemonize before binding (gunicorn's order), but not again in a
        // master re-executed by USR2: it must stay the old master's child.
        let mut daemon = None;
        if self.cfg.daemon && !self.is_upgrade_child() {
            if self.notifier.enabled() {
                log::warn!(
                    "--daemon under systemd (NOTIFY_SOCKET is set): use Type=notify without --daemon"
                );
            }
            match sys::daemonize(crate::logging::daemon_keeps_stdio(&self.cfg)) {
                Ok(d) => daemon = Some(d),
                Err(e) => {
                    log::error!("cannot daemonize: {e}");
                    return 1;
                }
            }
        }
        let result = self.setup();
        if let Some(d) = &mut daemon {
            d.report(&result);
        }
        if let Err(e) = result {
            log::error!("{e}");
            return 1;
        }
        log::info!("Starting ferricorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            log::info!("Listening at: {} ({})", l.name, std::process::id());
        }
        log::info!("Using app: {}", self.cfg.app);
        sys::set_process_title(&self.title());
        self.notifier
            .notify(&format!("STATUS=Booting {} workers", self.num_workers));
        // Fork the first workers now, not after the loop's first sleep: the
        // time from exec to the first answered request is what users see.
        self.manage_workers();

        loop {
            self.sleep();
            self.ping_watchdog();
            let queued = self.signals.as_ref().map(|s| s.drain()).unwrap_or_default();
            for sig in queued {
                self.handle_signal(sig);
            }
            self.reap_workers();
            if self.exit_code != 0 {
                self.halt();
                break;
            }
            if let Phase::Stopping {
                graceful,
                deadline_ms,
            } = self.phase
            {
                if self.workers.is_empty() {
                    break;
                }
                if now_ms() >= deadline_ms {
                    if graceful {
                        log::warn!("graceful timeout: killing {} worker(s)", self.workers.len());
                    }
                    self.kill_all(Signal::SIGKILL);
                }
                continue;
            }
            self.murder_workers();
            self.manage_workers();
            crate::statsd::workers(
                self.workers
                    .values()
                    .filter(|w| w.state == WorkerState::Running)
                    .count(),
            );
            self.report_ready();
        }
        self.finish()
    }

    fn setup(&mut self) -> Result<(), String> {
        let signals = SignalPipe::install(&signals::master_signals())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        self.signals = Some(signals);
        // A master re-executed by USR2 starts with the mask its parent held
        // while forking it (everything blocked); handlers are in place now,
        // and its workers must not inherit a blocked SIGABRT.
        sys::unblock_all_signals();
        sys::ignore_signal(Signal::SIGPIPE);
        // Check names before anything is created: a bad --user must not
        // leave a socket file behind.
        let identity = sys::resolve_identity(self.cfg.user.as_deref(), self.cfg.group.as_deref())?;
        let socket_gid = match &self.cfg.socket_group {
            Some(g) => Some(sys::resolve_group(g)?),
            None => None,
        };
        let (mut inherited, systemd) = listener::inherited_sockets()
            .map_err(|e| format!("cannot use inherited sockets: {e}"))?;
        self.systemd_sockets = systemd;
        let binds = self.cfg.bind.clone();
        let mut listeners = if systemd
            && !self
                .cfg
                .args
                .iter()
                .any(|a| a.starts_with("-b") || a.starts_with("--bind"))
        {
            // Socket activation with no explicit --bind: serve what systemd gave.
            let socks = std::mem::take(&mut inherited);
            socks
                .into_iter()
                .map(|s| Listener {
                    name: listener::describe(&s),
                    socket: s,
                    unix_path: None,
                    external: true,
                })
                .collect()
        } else {
            let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
                self.cfg.umask as nix::libc::mode_t,
            ));
            let res = listener::bind_all(
                &binds,
                &BindOptions {
                    backlog: self.cfg.backlog,
                },
                &mut inherited,
            );
            nix::sys::stat::umask(old);
            res.map_err(|e| e.to_string())?
        };
        if systemd {
            for l in listeners.iter_mut() {
                l.external = true;
            }
        }
        // Inherited sockets no --bind asked for are closed: the operator
        // dropped that address from the configuration.
        drop(inherited);
        self.listeners = listeners;
        listener::set_unix_permissions(&self.listeners, self.cfg.socket_mode, socket_gid)
            .map_err(|e| e.to_string())?;
        if let Some(path) = &self.cfg.pidfile {
            self.pidfile =
                Some(PidFile::create(path, std::process::id()).map_err(|e| e.to_string())?);
        }
        // Log files are opened by the workers, after they dropped to --user:
        // create them now and hand them to that user (gunicorn chowns its
        // logs the same way), so a root-owned log directory still works.
        if let Some(id) = &identity {
            let logs = [
                Some(self.cfg.errorlog.as_str()),
                self.cfg.accesslog.as_deref(),
            ];
            for path in logs.into_iter().flatten().filter(|p| *p != "-") {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open log file {path}: {e}"))?;
                nix::unistd::chown(path, Some(id.uid), Some(id.gid))
                    .map_err(|e| format!("chown({path}) for --user failed: {e}"))?;
            }
        }
        // Everything that needs root (low ports, socket ownership, the pid
        // file in /run) is done: run as --user/--group from here on.
        if let Some(id) = &identity {
            sys::drop_privileges(id).map_err(|e| e.to_string())?;
            log::info!("Running as uid {} gid {}", id.uid, id.gid);
        }
        Ok(())
    }

    /// Wait for a signal byte, at most until the next housekeeping is due.
    fn sleep(&self) {
        // Workers still to fork (first start, TTIN, replacements) or not yet
        // accepting: look again soon rather than after a full second.
        let booting = self.workers.len() < self.num_workers
            || self
                .workers
                .values()
                .any(|w| !w.was_ready || !matches!(w.state, WorkerState::Running));
        let mut ms: u16 = if matches!(self.phase, Phase::Stopping { .. }) || booting {
            50
        } else {
            1000
        };
        if let Some(w) = self.notifier.watchdog_ms {
            ms = ms.min(w.clamp(10, 1000) as u16);
        }
        if let Some(s) = &self.signals {
            s.wait(ms);
        } else {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
    }

    // ---------------------------------------------------------------------
    // Signals: one method per signal, found by name (gunicorn's handle_<name>).

    fn handle_signal(&mut self, sig: Signal) {
        match sig {
            Signal::SIGCHLD => {} // reaped right after, in every turn
            Signal::SIGTERM => self.handle_term(),
            Signal::SIGINT | Signal::SIGQUIT => self.handle_quit(sig),
            Signal::SIGHUP => self.handle_hup(),
            Signal::SIGTTIN => self.handle_ttin(),
            Signal::SIGTTOU => self.handle_ttou(),
            Signal::SIGUSR1 => self.handle_usr1(),
            Signal::SIGUSR2 => self.handle_usr2(),
            Signal::SIGWINCH => self.handle_winch(),
            other => log::debug!("ignoring {}", signals::name(other)),
        }
    }

    fn handle_term(&mut self) {
        log::info!("Handling signal: term");
        self.stop(true);
    }

    fn handle_quit(&mut self, sig: Signal) {
        log::info!(
            "Handling signal: {}",
            signals::name(sig).trim_start_matches("SIG").to_lowercase()
        );
        self.stop(false);
    }

    fn handle_hup(&mut self) {
        log::info!("Handling signal: hup");
        if matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        self.notifier.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading",
            sys::monotonic_usec()
        ));
        self.reload();
    }

    fn handle_ttin(&mut self) {
        log::info!("Handling signal: ttin");
        let old = self.num_workers;
        self.num_workers = (self.num_workers + 1).min(MAX_WORKERS);
        self.hooks
            .nworkers_changed(&self.info(), self.num_workers, old);
    }

    fn handle_ttou(&mut self) {
        log::info!("Handling signal: ttou");
        if self.num_workers > 1 {
            let old = self.num_workers;
            self.num_workers -= 1;
            self.hooks
                .nworkers_changed(&self.info(), self.num_workers, old);
        }
    }

    fn handle_usr1(&mut self) {
        log::info!("Handling signal: usr1");
        if let Err(e) = crate::logging::reopen_error_log() {
            log::error!("reopening the error log failed: {e}");
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGUSR1);
        }
    }

    fn handle_usr2(&mut self) {
        log::info!("Handling signal: usr2");
        self.reexec();
    }

    fn handle_winch(&mut self) {
        log::info!("Handling signal: winch");
        if self.reexec_pid.is_none() && std::env::var_os("FERRICORN_ALLOW_WINCH").is_none() {
            // Without a successor, stopping all workers is an outage; nginx and
            // unicorn allow it only when daemonized. Say so instead of doing it.
            log::warn!("WINCH ignored: no new master is running (send USR2 first)");
            return;
        }
        log::info!("Stopping all workers; HUP brings them back");
        let old = self.num_workers;
        self.num_workers = 0;
        self.hooks.nworkers_changed(&self.info(), 0, old);
    }

    // ---------------------------------------------------------------------
    // Lifecycle verbs.

    fn stop(&mut self, graceful: bool) {
        // A second TERM changes nothing; QUIT during a graceful stop hurries it.
        if let Phase::Stopping {
            graceful: already, ..
        } = self.phase
            && (!already || graceful)
        {
            return;
        }
        if self.sole_master() {
            // After a USR2 hand-over (or during a rollback) the service's
            // main process is the other master: do not tell systemd we stop.
            self.notifier.notify("STOPPING=1\nSTATUS=Stopping");
        }
        let grace_ms = if graceful {
            self.cfg.graceful_timeout * 1000
        } else {
            // Workers exit at once on QUIT; this only bounds a stuck one.
            1000
        };
        self.phase = Phase::Stopping {
            graceful,
            deadline_ms: now_ms() + grace_ms,
        };
        // The master's copies of the listeners are closed now; the workers
        // keep theirs until they drained what the kernel had queued.
        self.close_listeners();
        self.kill_all(if graceful {
            Signal::SIGTERM
        } else {
            Signal::SIGQUIT
        });
    }

    /// This master was started by a USR2 upgrade and its parent (the old
    /// master) is still alive.
    fn is_upgrade_child(&self) -> bool {
        std::env::var("FERRICORN_PARENT_MASTER")
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
            .map(Pid::from_raw)
            == Some(nix::unistd::getppid())
    }

    /// No other master shares our sockets (no USR2 child, no live parent).
    fn sole_master(&self) -> bool {
        self.reexec_pid.is_none() && !self.is_upgrade_child()
    }

    fn close_listeners(&mut self) {
        // A Unix socket path is removed only by the last master using it:
        // during an upgrade or a rollback the other master still serves it.
        let unlink = self.sole_master() && !self.systemd_sockets;
        for l in self.listeners.drain(..) {
            if unlink {
                l.unlink();
            }
        }
    }

    fn kill_all(&mut self, sig: Signal) {
        for pid in self.workers.keys() {
            let _ = kill(*pid, sig);
        }
    }

    /// HUP: re-read the configuration and roll the workers over to it.
    fn reload(&mut self) {
        let reread = if self.reloadable {
            self.cfg.reload(&self.env)
        } else {
            // Settings given through the library API: nothing to re-read.
            Ok(self.cfg.clone())
        };
        match reread {
            Ok(new) => {
                if new.bind != self.cfg.bind && !self.systemd_sockets {
                    let mut keep: Vec<socket2::Socket> =
                        self.listeners.drain(..).map(|l| l.socket).collect();
                    match listener::bind_all(
                        &new.bind,
                        &BindOptions {
                            backlog: new.backlog,
                        },
                        &mut keep,
                    ) {
                        Ok(ls) => {
                            self.listeners = ls;
                            for l in &self.listeners {
                                log::info!("Listening at: {} ({})", l.name, std::process::id());
                            }
                        }
                        Err(e) => {
                            log::error!("reload failed, keeping the running configuration: {e}");
                            return;
                        }
                    }
                }
                let old = self.num_workers;
                self.num_workers = new.workers;
                self.cfg = new;
                if old != self.num_workers {
                    self.hooks
                        .nworkers_changed(&self.info(), self.num_workers, old);
                }
            }
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                // Still bring workers back after a WINCH.
                if self.num_workers == 0 {
                    self.num_workers = self.cfg.workers;
                }
            }
        }
        self.generation += 1;
        self.announced_ready = false;
        self.hooks.on_reload(&self.info());
    }

    /// USR2: start a new master from the binary on disk, handing it the
    /// listening sockets. This master keeps serving until told otherwise.
    fn reexec(&mut self) {
        if let Some(pid) = self.reexec_pid {
            log::warn!("USR2 ignored: the new master (pid {pid}) is still running");
            return;
        }
        if self.is_upgrade_child() {
            log::warn!("USR2 ignored: the old master is still running (send it TERM first)");
            return;
        }
        if let Some(pf) = &mut self.pidfile
            && let Err(e) = pf.rename_to_oldbin()
        {
            log::error!("USR2 ignored: cannot rename the pid file: {e}");
            return;
        }
        let fds: Vec<String> = self.listeners.iter().map(|l| l.fd().to_string()).collect();
        let info = self.info();
        // Signals stay blocked in the child across exec; the new master
        // unblocks them once its own handlers are installed.
        let mask = sys::block_all_signals();
        let forked = sys::fork();
        if !matches!(forked, Ok(Fork::Child)) {
            sys::restore_signal_mask(&mask);
        }
        match forked {
            Ok(Fork::Parent(pid)) => {
                log::info!("Started new master (pid {pid}) for the upgrade");
                self.reexec_pid = Some(pid);
            }
            Ok(Fork::Child) => {
                sys::default_signals(&signals::master_signals());
                self.hooks.pre_exec(&info);
                for l in &self.listeners {
                    let _ = sys::set_cloexec(l.fd(), false);
                }
                sys::set_env(listener::INHERIT_ENV, fds.join(","));
                sys::set_env("FERRICORN_PARENT_MASTER", std::process::id().to_string());
                let _ = std::env::set_current_dir(&self.launch_dir);
                let argv: Vec<CString> = self
                    .argv
                    .iter()
                    .filter_map(|a| CString::new(a.as_bytes()).ok())
                    .collect();
                if let Some(prog) = argv.first() {
                    let e = nix::unistd::execvp(prog, &argv).unwrap_err();
                    log::error!("execvp({:?}) failed: {e}", self.argv[0]);
                }
                sys::exit_now(1);
            }
            Err(e) => {
                log::error!("fork() failed for the upgrade: {e}");
                if let Some(pf) = &mut self.pidfile {
                    let _ = pf.rename_back();
                }
            }
        }
    }

    /// Exit because workers cannot run (boot error, app load error, crash loop).
    fn halt(&mut self) {
        log::error!(
            "Shutting down: workers cannot run (exit code {}; see the errors above)",
            self.exit_code
        );
        if self.sole_master() {
            self.notifier.notify(&format!(
                "STOPPING=1\nSTATUS=Workers cannot run (exit code {})",
                self.exit_code
            ));
        }
        self.kill_all(Signal::SIGKILL);
        while !self.workers.is_empty() {
            match waitpid(None, None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.forget(pid);
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn finish(mut self) -> i32 {
        self.close_listeners();
        if let Some(pf) = &self.pidfile {
            pf.remove(std::process::id());
        }
        self.hooks.on_exit(&self.info());
        log::info!("Shutting down: Master");
        self.exit_code
    }

    // ---------------------------------------------------------------------
    // Housekeeping.

    fn reap_workers(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { return };
            if Some(pid) == self.reexec_pid {
                log::warn!("The new master (pid {pid}) exited: {}", describe(&status));
                self.reexec_pid = None;
                if let Some(pf) = &mut self.pidfile {
                    let _ = pf.rename_back();
                }
                continue;
            }
            let Some(w) = self.workers.get(&pid) else {
                // Not ours (we may be PID 1 in a container): just reaped.
                continue;
            };
            let (age, was_ready, state) = (w.age, w.was_ready, w.state);
            match status {
                WaitStatus::Exited(_, 0) => log::info!("Worker exiting (pid: {pid})"),
                WaitStatus::Exited(_, 134) if matches!(state, WorkerState::Aborted { .. }) => {
                    log::error!("Worker (pid:{pid}) was sent SIGABRT after WORKER TIMEOUT")
                }
                WaitStatus::Exited(_, code) => {
                    log::error!("Worker (pid:{pid}) exited with code {code}")
                }
                WaitStatus::Signaled(_, Signal::SIGKILL, _)
                    if !matches!(state, WorkerState::Aborted { .. }) =>
                {
                    log::error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
                }
                WaitStatus::Signaled(_, sig, core) => log::error!(
                    "Worker (pid:{pid}) was sent {}!{}",
                    signals::name(sig),
                    if core { " (core dumped)" } else { "" }
                ),
                _ => {}
            }
            if let WaitStatus::Exited(_, code @ (WORKER_BOOT_ERROR | APP_LOAD_ERROR)) = status {
                log::error!(
                    "{}",
                    if code == APP_LOAD_ERROR {
                        "App failed to load."
                    } else {
                        "Worker failed to boot."
                    }
                );
                self.exit_code = code;
            }
            let clean_exit = matches!(status, WaitStatus::Exited(_, 0));
            if !was_ready && !clean_exit && matches!(self.phase, Phase::Running) {
                self.boot_failures += 1;
                let delay = boot_backoff_ms(self.boot_failures);
                self.next_spawn_ms = now_ms() + delay.unwrap_or(0);
                if let Some(delay) = delay {
                    log::warn!(
                        "worker died before accepting ({} in a row); next start in {} ms",
                        self.boot_failures,
                        delay
                    );
                } else if self.exit_code == 0 {
                    log::error!(
                        "Workers keep dying at boot ({} in a row): giving up. Check the error log above.",
                        self.boot_failures
                    );
                    self.exit_code = WORKER_BOOT_ERROR;
                }
            }
            self.forget(pid);
            self.hooks.child_exit(
                &self.info(),
                &WorkerInfo {
                    pid: pid.as_raw() as u32,
                    age,
                },
            );
        }
    }

    fn forget(&mut self, pid: Pid) {
        if let Some(w) = self.workers.remove(&pid) {
            self.scoreboard.slot(w.slot).pid.store(0, Ordering::Release);
        }
    }

    /// Kill workers that spent longer than `--timeout` inside the app, or
    /// whose loop stopped turning. Time spent reading a slow upload is not in
    /// the app, so it never counts.
    fn murder_workers(&mut self) {
        let now = now_ms();
        let timeout_ms = self.cfg.timeout * 1000;
        let mut aborted = Vec::new();
        for (&pid, w) in self.workers.iter_mut() {
            let slot = self.scoreboard.slot(w.slot);
            if !w.was_ready && slot.ready.load(Ordering::Acquire) == 1 {
                w.was_ready = true;
                self.boot_failures = 0;
            }
            match w.state {
                WorkerState::Aborted { deadline_ms } | WorkerState::Retiring { deadline_ms }
                    if now >= deadline_ms =>
                {
                    let _ = kill(pid, Signal::SIGKILL);
                    continue;
                }
                WorkerState::Aborted { .. } => continue,
                _ => {}
            }
            if timeout_ms == 0 {
                continue;
            }
            let busy = slot.busy_since_ms.load(Ordering::Relaxed);
            let tick = slot.tick_ms.load(Ordering::Relaxed);
            let stuck_in_app = busy != 0 && now.saturating_sub(busy) > timeout_ms;
            let loop_stalled = busy == 0 && now.saturating_sub(tick) > timeout_ms + 2_000;
            if stuck_in_app || loop_stalled {
                let what = if stuck_in_app {
                    format!(
                        ", in the app for {} s handling {}",
                        (now - busy) / 1000,
                        slot.what()
                    )
                } else {
                    ", its event loop stopped turning".to_string()
                };
                log::error!("WORKER TIMEOUT (pid:{pid}){what}");
                let _ = kill(pid, Signal::SIGABRT);
                w.state = WorkerState::Aborted {
                    deadline_ms: now + ABORT_GRACE_MS,
                };
                aborted.push(WorkerInfo {
                    pid: pid.as_raw() as u32,
                    age: w.age,
                });
            }
        }
        for w in aborted {
            self.hooks.worker_abort(&w);
        }
    }

    /// Start or retire workers until the current generation has
    /// `num_workers` of them and no older worker is needed any more.
    fn manage_workers(&mut self) {
        let now = now_ms();
        let generation_now = self.generation;
        let current: Vec<Pid> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == generation_now && w.state == WorkerState::Running)
            .map(|(p, _)| *p)
            .collect();
        // Grow (respecting the crash-loop back-off).
        if current.len() < self.num_workers && now >= self.next_spawn_ms {
            for _ in current.len()..self.num_workers {
                if let Err(e) = self.spawn_worker() {
                    log::error!("fork() failed while spawning a worker: {e}");
                    self.next_spawn_ms = now + 1000;
                    break;
                }
            }
        }
        // Shrink: retire the oldest workers of this generation (TTOU, WINCH).
        if current.len() > self.num_workers {
            let extra = current.len() - self.num_workers;
            let mut by_age: Vec<(u64, Pid)> =
                current.iter().map(|p| (self.workers[p].age, *p)).collect();
            by_age.sort();
            for (_, pid) in by_age.into_iter().take(extra) {
                self.retire(pid);
            }
        }
        // Roll over: an old-generation worker leaves only when a new one
        // accepts in its place.
        let ready_current = self
            .workers
            .values()
            .filter(|w| {
                w.generation == generation_now && w.was_ready && w.state == WorkerState::Running
            })
            .count();
        let mut old: Vec<(u64, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation != generation_now && w.state == WorkerState::Running)
            .map(|(p, w)| (w.age, *p))
            .collect();
        old.sort();
        let keep_old = self.num_workers.saturating_sub(ready_current);
        let retire = old.len().saturating_sub(keep_old);
        for (_, pid) in old.into_iter().take(retire) {
            self.retire(pid);
        }
    }

    fn retire(&mut self, pid: Pid) {
        let deadline_ms = now_ms() + self.cfg.graceful_timeout * 1000;
        if let Some(w) = self.workers.get_mut(&pid) {
            w.state = WorkerState::Retiring { deadline_ms };
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    /// Tell systemd (and the `when_ready` hook) once every worker accepts.
    fn report_ready(&mut self) {
        let generation_now = self.generation;
        let ready = self
            .workers
            .values()
            .filter(|w| {
                w.generation == generation_now && w.was_ready && w.state == WorkerState::Running
            })
            .count();
        if !self.announced_ready && ready >= self.num_workers && self.num_workers > 0 {
            self.announced_ready = true;
            let mut msg = format!("READY=1\nSTATUS=Serving with {ready} workers");
            // A master started by USR2 takes the service over; an old master
            // whose workers came back on HUP (rollback) takes it back.
            if std::env::var_os("FERRICORN_PARENT_MASTER").is_some() || self.reexec_pid.is_some() {
                msg.push_str(&format!("\nMAINPID={}", std::process::id()));
            }
            self.notifier.notify(&msg);
            self.hooks.when_ready(&self.info());
        }
    }

    /// `WATCHDOG=1` every half interval, in every phase (a long graceful
    /// stop must not be mistaken for a hang).
    fn ping_watchdog(&mut self) {
        if let Some(interval) = self.notifier.watchdog_ms {
            let now = now_ms();
            if now >= self.last_watchdog_ms + interval {
                self.last_watchdog_ms = now;
                self.notifier.notify("WATCHDOG=1");
            }
        }
    }

    fn spawn_worker(&mut self) -> std::io::Result<()> {
        let slot = (0..self.scoreboard.len())
            .find(|&i| {
                self.scoreboard.slot(i).pid.load(Ordering::Acquire) == 0
                    && !self.workers.values().any(|w| w.slot == i)
            })
            .ok_or_else(|| std::io::Error::other("no free scoreboard slot"))?;
        self.age += 1;
        let age = self.age;
        let now = now_ms();
        self.scoreboard.slot(slot).reset(u32::MAX, now);
        let info = self.info();
        self.hooks.pre_fork(&info, &WorkerInfo { pid: 0, age });
        // Blocked until the worker has its own handlers (see block_all_signals).
        let mask = sys::block_all_signals();
        let forked = sys::fork();
        if !matches!(forked, Ok(Fork::Child)) {
            sys::restore_signal_mask(&mask);
        }
        match forked? {
            Fork::Parent(pid) => {
                self.hooks.post_fork_parent(
                    &info,
                    &WorkerInfo {
                        pid: pid.as_raw() as u32,
                        age,
                    },
                );
                self.scoreboard
                    .slot(slot)
                    .pid
                    .store(pid.as_raw() as u64, Ordering::Release);
                self.workers.insert(
                    pid,
                    WorkerEntry {
                        age,
                        slot,
                        generation: self.generation,
                        state: WorkerState::Running,
                        was_ready: false,
                    },
                );
                log::info!("Booting worker with pid: {pid}");
                Ok(())
            }
            Fork::Child => {
                // We are the worker now: drop what belongs to the master.
                self.signals = None;
                self.death_tx = None;
                let code = worker::run(worker::WorkerArgs {
                    cfg: &self.cfg,
                    // Moved, not duplicated: a copy left open here would keep
                    // the socket queueing connections after the worker stopped
                    // accepting, and they would be reset at exit.
                    binds: self.listeners.iter().map(|l| l.name.clone()).collect(),
                    listeners: std::mem::take(&mut self.listeners)
                        .into_iter()
                        .map(|l| l.socket)
                        .collect(),
                    master_fd: self.death_rx.take(),
                    scoreboard: self.scoreboard.clone(),
                    slot,
                    age,
                    workers: self.num_workers,
                    factory: self.factory.clone(),
                    hooks: self.hooks.clone(),
                    server: info,
                    sigmask: mask,
                });
                std::process::exit(code);
            }
        }
    }
}

/// Delay before the next worker start after `failures` workers in a row
/// died before accepting: 200 ms, doubling, at most 5 s; `None` once
/// [`MAX_BOOT_FAILURES`] is reached and the master should give up.
pub fn boot_backoff_ms(failures: u32) -> Option<u64> {
    if failures >= MAX_BOOT_FAILURES {
        return None;
    }
    Some((100u64 << failures.min(6)).min(5_000))
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exit code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("killed by {}", signals::name(*s)),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backs_off_then_gives_up() {
        let delays: Vec<Option<u64>> = (1..=MAX_BOOT_FAILURES).map(boot_backoff_ms).collect();
        assert_eq!(delays[0], Some(200));
        assert_eq!(delays[1], Some(400));
        for w in delays.windows(2) {
            if let (Some(a), Some(b)) = (w[0], w[1]) {
                assert!(b >= a, "{delays:?}");
            }
        }
        assert!(delays.iter().flatten().all(|&d| d <= 5_000), "{delays:?}");
        assert_eq!(boot_backoff_ms(MAX_BOOT_FAILURES), None);
        assert_eq!(boot_backoff_ms(MAX_BOOT_FAILURES + 5), None);
        // The whole back-off before giving up is bounded (about half a minute).
        let total: u64 = (1..MAX_BOOT_FAILURES).filter_map(boot_backoff_ms).sum();
        assert!(total < 40_000, "{total}");
    }
}
