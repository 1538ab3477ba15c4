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
//!     note which workers accept, or ask to leave (note_ready_workers)
//!     reap exited workers          (reap_workers)
//!     kill workers stuck in the app (murder_workers)
//!     start or retire workers until the count is right (manage_workers)
//! }
//! ```
//!
//! The decisions themselves (what to start or retire, who is overdue, what
//! an exit means, the crash-loop back-off) are pure functions of the worker
//! table and the time, in [`table`], unit-tested without a process. Binding
//! and the pid file are done before, by [`crate::boot`].
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
//! A worker may also ask to be retired (its scoreboard row's `retire` flag,
//! set at `--max-requests`): the arbiter treats it like an old generation,
//! starting its replacement first.
//!
//! # Exit codes (gunicorn's contract)
//! A worker that exits with [`worker::WorkerExit::BootError`] (3) or
//! [`worker::WorkerExit::AppLoadError`] (4) stops the master with the same code:
//! forking again cannot help. Workers that die before becoming ready are
//! restarted with a growing delay, and after [`MAX_BOOT_FAILURES`] in a row
//! the master gives up (exit 3).
//!
//! Each worker's exit is logged once, here, with its pid, its cause as the
//! master knows it and its wait status ([`table::classify_exit`]).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::app::AppFactory;
use crate::clock::monotonic_ms;
use crate::config::Config;
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};
use crate::listener::{self, BindOptions, Listener};
use crate::metrics::{ExitCause, ServerStatus, WorkerView};
use crate::pidfile::PidFile;
use crate::signals;
use crate::sys::{self, Fork, Pid, Scoreboard, SignalPipe};
use crate::systemd::Notifier;
use crate::worker;

pub mod table;
use table::{Action, Backoff, Beat, Overdue, WorkerTable, describe};
pub use table::{MAX_BOOT_FAILURES, MAX_WORKERS, boot_backoff_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stopping; SIGKILL whatever is left at the deadline.
    Stopping {
        graceful: bool,
        deadline_ms: u64,
    },
    /// Workers cannot run (boot error, app load error, crash loop): kill
    /// them and exit with this code.
    Halting(i32),
}

pub struct Arbiter {
    cfg: Config,
    env: fn(&str) -> Option<String>,
    factory: std::rc::Rc<AppFactory>,
    hooks: std::rc::Rc<dyn Hooks>,
    listeners: Vec<Listener>,
    /// The listeners came from systemd: never unlink their paths.
    systemd_sockets: bool,
    workers: WorkerTable,
    scoreboard: Rc<Scoreboard>,
    signals: Option<SignalPipe>,
    /// Workers hold the read end; EOF tells them the master is gone.
    death_rx: Option<OwnedFd>,
    death_tx: Option<OwnedFd>,
    num_workers: usize,
    phase: Phase,
    /// Pid of the new master started by USR2, while it lives.
    reexec_pid: Option<Pid>,
    pidfile: Option<PidFile>,
    notifier: Notifier,
    announced_ready: bool,
    last_watchdog_ms: u64,
    /// When `gunicorn.backlog` was last sent (statsd).
    backlog_sent_ms: u64,
    launch_dir: PathBuf,
    argv: Vec<String>,
    /// Settings came from the command line and config file (HUP re-reads them).
    reloadable: bool,
    /// Status listener, metrics and recycling (issue 16).
    obs: Observer,
}

/// The master's observability state: the status listener, the shared
/// counters, exits by cause, and the memory/lifetime recycling samples.
#[derive(Default)]
struct Observer {
    status: Option<crate::status::StatusServer>,
    table: Option<&'static crate::scoreboard::Table>,
    started_ms: u64,
    exits: [u64; 8],
    /// When each worker was forked.
    forked_ms: std::collections::HashMap<Pid, u64>,
    /// Workers the master asked to leave, and why (memory, lifetime).
    recycling: std::collections::HashMap<Pid, ExitCause>,
    /// Consecutive samples above --max-worker-memory.
    over_memory: std::collections::HashMap<Pid, u32>,
    /// Last RSS sample of each worker.
    rss: std::collections::HashMap<Pid, u64>,
    last_sample_ms: u64,
    /// `--shutdown-delay`: TERM arrived; the graceful stop starts at this time.
    delay_until_ms: Option<u64>,
}

/// Samples in a row above --max-worker-memory before a worker is replaced
/// (one sample can catch a short spike that the allocator gives back).
const MEMORY_SAMPLES: u32 = 3;

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
            workers: WorkerTable::new(),
            scoreboard: Rc::new(
                Scoreboard::new(MAX_WORKERS).expect("mmap() of the scoreboard failed"),
            ),
            signals: None,
            death_rx: rx,
            death_tx: tx,
            phase: Phase::Running,
            reexec_pid: None,
            pidfile: None,
            notifier: Notifier::from_env(),
            announced_ready: false,
            last_watchdog_ms: 0,
            backlog_sent_ms: 0,
            reloadable: true,
            obs: Observer {
                table: crate::scoreboard::table(MAX_WORKERS),
                started_ms: monotonic_ms(),
                ..Observer::default()
            },
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
        if let Some(s) = &self.obs.status {
            log::info!("Status listener at: {} ({})", s.name(), std::process::id());
        }
        log::info!("Using app: {}", self.cfg.app);
        if let Some(why) = &self.cfg.workers_auto_reason {
            log::info!("--workers auto: {why}");
        }
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
            self.serve_status();
            self.note_ready_workers();
            self.reap_workers();
            match self.phase {
                Phase::Halting(code) => {
                    self.halt(code);
                    return self.finish(code);
                }
                Phase::Stopping {
                    graceful,
                    deadline_ms,
                } => {
                    if self.stopped(graceful, deadline_ms) {
                        return self.finish(0);
                    }
                }
                Phase::Running => {
                    if self.obs.delay_until_ms.is_some_and(|t| monotonic_ms() >= t) {
                        log::info!("Shutdown delay over: stopping gracefully");
                        self.stop(true);
                        continue;
                    }
                    self.sample_workers();
                    self.murder_workers();
                    self.manage_workers();
                    crate::statsd::workers(
                        self.workers
                            .iter()
                            .filter(|(_, w)| w.state == table::WorkerState::Running)
                            .count(),
                    );
                    self.report_ready();
                    self.send_backlog();
                }
            }
        }
    }

    /// `--enable-backlog-metric`: statsd's `gunicorn.backlog`, the
    /// connections waiting in every listen queue, at most once a second.
    fn send_backlog(&mut self) {
        if !self.cfg.enable_backlog_metric || !crate::statsd::enabled() {
            return;
        }
        let now = monotonic_ms();
        if now < self.backlog_sent_ms + 1000 {
            return;
        }
        self.backlog_sent_ms = now;
        let queues = crate::status::listen_queues(&self.listeners, self.cfg.backlog as u64);
        crate::statsd::backlog(queues.iter().filter_map(|q| q.depth).sum());
    }

    /// Are all workers gone? SIGKILL what is left past the deadline.
    fn stopped(&mut self, graceful: bool, deadline_ms: u64) -> bool {
        if self.workers.is_empty() {
            return true;
        }
        if monotonic_ms() >= deadline_ms {
            if graceful {
                log::warn!("graceful timeout: killing {} worker(s)", self.workers.len());
            }
            self.kill_all(Signal::SIGKILL);
        }
        false
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
        let booted = crate::boot::prepare(&self.cfg)?;
        self.listeners = booted.listeners;
        self.systemd_sockets = booted.systemd_sockets;
        self.pidfile = booted.pidfile;
        // A master started by USR2 inherits the status listener (the old
        // master still listens on that address), as it inherits the others.
        let inherited = crate::status::inherited();
        if let Some(addr) = &self.cfg.status_bind {
            let server = match inherited {
                Some(s) if s.is_at(addr) => s,
                _ => crate::status::StatusServer::bind(addr)
                    .map_err(|e| format!("--status-bind: {e}"))?,
            };
            self.obs.status = Some(server);
        }
        Ok(())
    }

    /// Wait for a signal byte, at most until the next housekeeping is due.
    fn sleep(&self) {
        // Workers still to fork (first start, TTIN, replacements) or not yet
        // accepting: look again soon rather than after a full second.
        let booting = self.workers.settling(self.num_workers);
        let mut ms: u16 = if matches!(self.phase, Phase::Stopping { .. }) || booting {
            50
        } else {
            1000
        };
        if let Some(w) = self.notifier.watchdog_ms {
            ms = ms.min(w.clamp(10, 1000) as u16);
        }
        if let (Some(st), Some(s)) = (&self.obs.status, &self.signals) {
            st.wait(s.as_fd(), ms);
        } else if let Some(s) = &self.signals {
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
        let delay = self.cfg.shutdown_delay;
        if delay > 0 && self.obs.delay_until_ms.is_none() && self.phase == Phase::Running {
            // /readyz says 503 from now on; the workers keep accepting so
            // that nothing is refused while the load balancer catches up.
            log::info!("Shutdown delay: not ready; serving {delay} s more before stopping");
            self.obs.delay_until_ms = Some(monotonic_ms() + delay * 1000);
            return;
        }
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
            crate::clock::monotonic_usec()
        ));
        self.reload();
    }

    fn handle_ttin(&mut self) {
        log::info!("Handling signal: ttin");
        let old = self.num_workers;
        self.num_workers = table::more_workers(old);
        self.hooks
            .nworkers_changed(&self.info(), self.num_workers, old);
    }

    fn handle_ttou(&mut self) {
        log::info!("Handling signal: ttou");
        let old = self.num_workers;
        self.num_workers = table::fewer_workers(old);
        if self.num_workers != old {
            self.hooks
                .nworkers_changed(&self.info(), self.num_workers, old);
        }
    }

    fn handle_usr1(&mut self) {
        log::info!("Handling signal: usr1");
        if let Err(e) = crate::logging::reopen_error_log() {
            log::error!("reopening the error log failed: {e}");
        }
        for pid in self.workers.pids() {
            let _ = kill(pid, Signal::SIGUSR1);
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
        match self.phase {
            Phase::Stopping {
                graceful: already, ..
            } if !already || graceful => return,
            Phase::Halting(_) => return,
            _ => {}
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
            deadline_ms: monotonic_ms() + grace_ms,
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
        for pid in self.workers.pids() {
            let _ = kill(pid, sig);
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
                if let Err(e) = crate::config::apply_raw_env(&new.raw_env) {
                    log::error!("{e}");
                }
                self.rebind_status(&new);
                let old = self.num_workers;
                self.num_workers = new.workers;
                self.cfg = new;
                crate::logging::reconfigure(&self.cfg);
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
        self.workers.new_generation();
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
                if let Some(st) = &self.obs.status {
                    let _ = sys::set_cloexec(st.as_raw_fd(), false);
                    sys::set_env(crate::status::INHERIT_ENV, st.as_raw_fd().to_string());
                }
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
    fn halt(&mut self, code: i32) {
        log::error!("Shutting down: workers cannot run (exit code {code}; see the errors above)");
        if self.sole_master() {
            self.notifier.notify(&format!(
                "STOPPING=1\nSTATUS=Workers cannot run (exit code {code})"
            ));
        }
        self.kill_all(Signal::SIGKILL);
        while !self.workers.is_empty() {
            match waitpid(None, None) {
                Ok(status) => {
                    if let Some(w) = status.pid().and_then(|p| self.workers.remove(p)) {
                        self.scoreboard.slot(w.slot).pid.store(0, Ordering::Release);
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn finish(mut self, code: i32) -> i32 {
        self.close_listeners();
        // Like the other Unix sockets: the path stays while another
        // master (USR2) serves it.
        if let Some(s) = self.obs.status.take()
            && self.sole_master()
        {
            s.unlink();
        }
        if let Some(pf) = &self.pidfile {
            pf.remove(std::process::id());
        }
        self.hooks.on_exit(&self.info());
        log::info!("Shutting down: Master");
        code
    }

    // ---------------------------------------------------------------------
    // Housekeeping.

    /// Read every worker's readiness and retire request from its row.
    fn note_ready_workers(&mut self) {
        for (pid, w) in self
            .workers
            .iter()
            .map(|(p, w)| (p, w.slot))
            .collect::<Vec<_>>()
        {
            let row = self.scoreboard.slot(w);
            if row.is_ready() && self.workers.mark_ready(pid) {
                log::debug!("Worker (pid:{pid}) is accepting");
            }
            if row.retire_requested() && self.workers.request_retire(pid) {
                log::info!("Worker (pid:{pid}) asks to be retired: starting its replacement");
            }
        }
    }

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
            // It may have become ready since the last look.
            if let Some(w) = self.workers.get(pid)
                && self.scoreboard.slot(w.slot).is_ready()
            {
                self.workers.mark_ready(pid);
            }
            let stopping = matches!(self.phase, Phase::Stopping { .. });
            let Some(gone) = self.workers.exited(pid, &status, stopping, monotonic_ms()) else {
                // Not ours (we may be PID 1 in a container): just reaped.
                continue;
            };
            self.count_exit(pid, &gone, stopping);
            self.scoreboard
                .slot(gone.entry.slot)
                .pid
                .store(0, Ordering::Release);
            log::log!(gone.report.level, "{}", gone.report.message);
            match gone.backoff {
                Some(Backoff::Delay { failures, delay_ms }) => log::warn!(
                    "worker died before accepting ({failures} in a row); next start in {delay_ms} ms"
                ),
                Some(Backoff::GiveUp { failures }) => log::error!(
                    "Workers keep dying at boot ({failures} in a row): giving up. Check the error log above."
                ),
                None => {}
            }
            if let Some(code) = gone.report.halt
                && !matches!(self.phase, Phase::Halting(_))
            {
                self.phase = Phase::Halting(code);
            }
            self.hooks.child_exit(
                &self.info(),
                &WorkerInfo {
                    pid: pid.as_raw() as u32,
                    age: gone.entry.age,
                },
            );
        }
    }

    /// Kill workers that spent longer than `--timeout` inside the app, or
    /// whose loop stopped turning, and those past their retire or abort
    /// deadline.
    fn murder_workers(&mut self) {
        let scoreboard = &self.scoreboard;
        let overdue = self
            .workers
            .overdue(monotonic_ms(), self.cfg.timeout * 1000, |slot| {
                let row = scoreboard.slot(slot);
                Beat {
                    busy_since_ms: row.busy_since_ms.load(Ordering::Relaxed),
                    tick_ms: row.tick_ms.load(Ordering::Relaxed),
                }
            });
        for o in overdue {
            match o {
                Overdue::Kill(pid) => {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                Overdue::Abort {
                    pid,
                    age,
                    in_app_ms,
                } => {
                    let what = match (in_app_ms, self.workers.get(pid)) {
                        (Some(ms), Some(w)) => format!(
                            ", in the app for {} s handling {}{}",
                            ms / 1000,
                            self.scoreboard.slot(w.slot).what(),
                            self.obs
                                .table
                                .map(|t| t.row(w.slot).request_id())
                                .filter(|id| !id.is_empty())
                                .map(|id| format!(" [request_id={id}]"))
                                .unwrap_or_default()
                        ),
                        _ => ", its event loop stopped turning".to_string(),
                    };
                    log::error!("WORKER TIMEOUT (pid:{pid}){what}");
                    let _ = kill(pid, Signal::SIGABRT);
                    self.hooks.worker_abort(&WorkerInfo {
                        pid: pid.as_raw() as u32,
                        age,
                    });
                }
            }
        }
    }

    /// Start or retire workers until the current generation has
    /// `num_workers` of them and no older worker is needed any more
    /// ([`WorkerTable::plan`]).
    fn manage_workers(&mut self) {
        let now = monotonic_ms();
        for action in self.workers.plan(self.num_workers, now) {
            match action {
                Action::Spawn => {
                    if let Err(e) = self.spawn_worker() {
                        log::error!("fork() failed while spawning a worker: {e}");
                        self.workers.spawn_failed(now);
                    }
                }
                Action::Retire(pid) => self.retire(pid, now),
            }
        }
    }

    fn retire(&mut self, pid: Pid, now: u64) {
        self.workers
            .retire(pid, now + self.cfg.graceful_timeout * 1000);
        let _ = kill(pid, Signal::SIGTERM);
    }

    /// Tell systemd (and the `when_ready` hook) once every worker accepts.
    fn report_ready(&mut self) {
        let ready = self.workers.ready_current();
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
            let now = monotonic_ms();
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
                    && !self.workers.slot_in_use(i)
            })
            .ok_or_else(|| std::io::Error::other("no free scoreboard slot"))?;
        let age = self.workers.next_age();
        let now = monotonic_ms();
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
                self.workers.insert(pid, slot, age);
                self.obs.forked_ms.insert(pid, now);
                log::info!("Booting worker with pid: {pid}");
                Ok(())
            }
            Fork::Child => {
                // We are the worker now: drop what belongs to the master.
                self.signals = None;
                self.obs.status = None;
                crate::scoreboard::enter_worker(slot);
                crate::reqmeta::configure(&self.cfg.request_id_header);
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
                std::process::exit(code.code());
            }
        }
    }
}

// -------------------------------------------------------------------------
// Status listener, metrics and recycling (issue 16).

impl Arbiter {
    /// Answer the status listener's pending requests (non-blocking).
    fn serve_status(&mut self) {
        let Some(mut server) = self.obs.status.take() else {
            return;
        };
        server.serve(monotonic_ms(), &mut || self.server_status());
        self.obs.status = Some(server);
    }

    /// HUP changed `--status-bind`: listen on the new address (a failure is
    /// logged and keeps the old listener), or stop listening.
    fn rebind_status(&mut self, new: &Config) {
        if new.status_bind == self.cfg.status_bind {
            return;
        }
        let next = match &new.status_bind {
            Some(addr) => match crate::status::StatusServer::bind(addr) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("--status-bind {addr}: {e}; keeping the status listener as it was");
                    return;
                }
            },
            None => None,
        };
        if let Some(old) = std::mem::replace(&mut self.obs.status, next) {
            old.unlink();
        }
        if let Some(s) = &self.obs.status {
            log::info!("Status listener at: {} ({})", s.name(), std::process::id());
        }
    }

    /// Everything the status listener shows, read now.
    fn server_status(&self) -> ServerStatus {
        let now = monotonic_ms();
        let table = self.obs.table;
        let mut workers: Vec<WorkerView> = self
            .workers
            .iter()
            .map(|(pid, w)| {
                let row = self.scoreboard.slot(w.slot);
                let status =
                    crate::scoreboard::WorkerStatus::read(row, table.map(|t| t.row(w.slot)));
                let state = match w.state {
                    table::WorkerState::Aborted { .. } => "aborted",
                    table::WorkerState::Retiring { .. } => "retiring",
                    table::WorkerState::Running if w.was_ready || status.ready => "ready",
                    table::WorkerState::Running => "booting",
                };
                WorkerView {
                    age: w.age,
                    state,
                    uptime_s: now.saturating_sub(*self.obs.forked_ms.get(&pid).unwrap_or(&now))
                        as f64
                        / 1000.0,
                    rss_bytes: self
                        .obs
                        .rss
                        .get(&pid)
                        .copied()
                        .or_else(|| crate::status::rss_bytes(pid.as_raw()))
                        .unwrap_or(0),
                    heartbeat_age_ms: now.saturating_sub(status.tick_ms),
                    in_app_ms: if status.busy_since_ms != 0 {
                        now.saturating_sub(status.busy_since_ms)
                    } else {
                        0
                    },
                    status,
                }
            })
            .collect();
        workers.sort_by_key(|w| w.age);
        let mut totals = match table {
            Some(t) => t.totals(self.workers.iter().map(|(_, w)| w.slot)),
            None => Default::default(),
        };
        totals.in_flight = workers
            .iter()
            .filter(|w| w.status.busy_since_ms != 0)
            .count() as u64;
        ServerStatus {
            version: env!("CARGO_PKG_VERSION"),
            master_pid: std::process::id(),
            uptime_s: now.saturating_sub(self.obs.started_ms) as f64 / 1000.0,
            phase: match self.phase {
                Phase::Running if self.obs.delay_until_ms.is_some() => "shutdown-delay",
                Phase::Running => "running",
                _ => "stopping",
            },
            workers_wanted: self.num_workers as u64,
            workers,
            exits: self.obs.exits,
            totals,
            listeners: crate::status::listen_queues(&self.listeners, self.cfg.backlog as u64),
        }
    }

    /// A reaped worker: fold its counters into the retired totals (so no
    /// counter goes backwards) and count its exit by cause.
    fn count_exit(&mut self, pid: Pid, gone: &table::Exited, stopping: bool) {
        if let Some(t) = self.obs.table {
            t.fold(gone.entry.slot);
        }
        let asked = self.obs.recycling.remove(&pid);
        self.obs.forked_ms.remove(&pid);
        self.obs.over_memory.remove(&pid);
        self.obs.rss.remove(&pid);
        let cause = match gone.entry.state {
            table::WorkerState::Aborted { .. } => ExitCause::Timeout,
            table::WorkerState::Retiring { why, .. } => match why {
                table::Retire::Reload => ExitCause::Reload,
                table::Retire::Shrink => ExitCause::ScaleDown,
                table::Retire::Requested => asked.unwrap_or(ExitCause::MaxRequests),
            },
            _ if stopping => ExitCause::Shutdown,
            _ if gone.report.clean && gone.entry.wants_retire => ExitCause::MaxRequests,
            _ => ExitCause::Crash,
        };
        self.obs.exits[cause.index()] += 1;
    }

    /// Once a second: sample each running worker's RSS and age, and ask for
    /// the replacement of one above --max-worker-memory (for
    /// [`MEMORY_SAMPLES`] samples in a row) or past --max-worker-lifetime.
    /// The replacement is readiness-gated: the worker's `retire` flag makes
    /// the plan start a successor first, exactly like --max-requests.
    fn sample_workers(&mut self) {
        let now = monotonic_ms();
        if now < self.obs.last_sample_ms + 1000 {
            return;
        }
        self.obs.last_sample_ms = now;
        let limit = self.cfg.max_worker_memory * 1024 * 1024;
        let lifetime_ms = self.cfg.max_worker_lifetime * 1000;
        let sample_rss = limit > 0 || self.obs.status.is_some();
        for (pid, w) in self
            .workers
            .iter()
            .map(|(p, w)| (p, w.clone()))
            .collect::<Vec<_>>()
        {
            if w.state != table::WorkerState::Running || w.wants_retire {
                continue;
            }
            let mut cause = None;
            if sample_rss && let Some(rss) = crate::status::rss_bytes(pid.as_raw()) {
                self.obs.rss.insert(pid, rss);
                if limit > 0 {
                    let n = self.obs.over_memory.entry(pid).or_insert(0);
                    *n = if rss > limit { *n + 1 } else { 0 };
                    if *n >= MEMORY_SAMPLES {
                        log::warn!(
                            "Worker (pid:{pid}) uses {} MiB, above --max-worker-memory {} MiB: starting its replacement",
                            rss >> 20,
                            self.cfg.max_worker_memory
                        );
                        cause = Some(ExitCause::Memory);
                    }
                }
            }
            if cause.is_none()
                && lifetime_ms > 0
                && let Some(&born) = self.obs.forked_ms.get(&pid)
                && now >= born + lifetime_ms + lifetime_jitter_ms(pid, lifetime_ms)
            {
                log::info!(
                    "Worker (pid:{pid}) reached --max-worker-lifetime: starting its replacement"
                );
                cause = Some(ExitCause::Lifetime);
            }
            if let Some(c) = cause {
                self.obs.recycling.insert(pid, c);
                self.scoreboard.slot(w.slot).request_retire();
            }
        }
    }
}

/// Up to 10% of the lifetime, fixed per worker (from its pid), so that
/// workers started together do not all leave together.
fn lifetime_jitter_ms(pid: Pid, lifetime_ms: u64) -> u64 {
    let span = lifetime_ms / 10;
    if span == 0 {
        return 0;
    }
    // A multiplicative hash spreads consecutive pids over the span.
    (pid.as_raw() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % (span + 1)
}
