//! A worker's event loop: one mio `Poll`, created after fork (an epoll
//! instance shared across fork would corrupt both sides).
//!
//! Each turn: wait for readiness (at most a second, so timers run), drive
//! the connections that are ready, accept, run the per-second timers, flush the
//! access log, publish the heartbeat. Tokens: connections use their slab
//! index; the listeners, the signal pipe and the master pipe use reserved
//! tokens at the top of the range.
//!
//! # Accepting fairly
//! All workers wait on the same listening sockets. Registered the way mio
//! does it (no `EPOLLEXCLUSIVE`), every worker is woken for every new
//! connection and all but one fail their `accept4`: that herd cost shows in
//! `Connection: close` throughput. So listeners are registered with
//! `EPOLLEXCLUSIVE` (`register_exclusive`): the kernel wakes one idle
//! worker. Left alone it wakes the same one each time, so a burst of
//! connections would land on one worker (gunicorn's gthread lost 3-4x to
//! this). Three rules keep the load even:
//! - after accepting, a worker re-adds its listener, moving itself to the
//!   back of the socket's wait queue (round robin among idle workers);
//! - a worker accepts at most `ACCEPT_BATCH` connections per turn;
//! - a worker holding clearly more load than an idle peer (read from
//!   the shared scoreboard) leaves what is queued to that peer for up to
//!   `DEFER_MS`, then takes it itself, so nothing waits longer than that;
//!   it also steps to the back of the wait queue, so the next arrival wakes
//!   the peer, which then takes the queue (else, under connection churn,
//!   the same worker is woken again and the queue waits out `DEFER_MS`).
//!
//! The counts behind the last rule are taken after the turn's work: a turn
//! drives its ready connections first and accepts last. A connection that
//! was answered and closed in the turn then no longer counts, so the rule
//! weighs the connections that stay (kept alive, or mid-request), which are
//! the load that an uneven start would leave uneven for good. Counted before
//! the work, under `Connection: close` churn every worker looked loaded by
//! requests it was about to finish, and a worker deferred connections it
//! could have served at once while its peer was busy: the core sat idle
//! (Django view, `Connection: close`: +16% from this order alone; the
//! keep-alive spread stayed at 32-34 of 64 per worker).
//!
//! Accepting well only places new connections. A keep-alive connection
//! lives long, so an uneven start would last: a peer that was woken but
//! not given a core for longer than `DEFER_MS` (two cores shared with the
//! load generator), a worker started by TTIN or after a crash into a pool
//! of established proxy connections. So a worker holding far more
//! connections than a live peer (more than `SHED_SLACK` above it, or a
//! quarter) answers one keep-alive request per `SHED_CHECK_MS` with
//! `Connection: close`, as nginx's `keepalive_requests` does after a count.
//! The client reconnects, and the rules above send the new connection to
//! the peer. Nothing is lost: the request is answered, closing after a
//! response is always allowed in HTTP/1.1, and a connection with a further
//! request already buffered (pipelining) is not chosen, as closing it
//! would reset the client before it read its answer.
//!
//! A worker's load is its open connections less those idle for a second
//! or more ("dormant", counted by the once-a-second timer). An idle
//! connection costs no work; counted, it never moved and kept the deferral
//! rule on for as long as it stayed open (two workers holding 100 and 80
//! idle connections made half of all new clients wait the 3 ms). The rules
//! themselves are pure functions in [`crate::balance`].
//!
//! nginx's `ngx_accept_disabled` is the same idea as the deferral rule. On
//! kernels without `EPOLLEXCLUSIVE` the herd returns, and the deferral rule
//! and shedding alone keep the balance.
//!
//! # At `--worker-connections`
//! A full worker stops listening while a peer has a free slot. When every
//! worker is full, it closes its longest-idle connection (one that never
//! sent a byte, or an idle keep-alive one) for each queued connection it
//! admits, as nginx reuses its idle connections, instead of serving no one
//! until timeouts free a slot: connections that send nothing could
//! otherwise hold every slot. A request under way is never closed. Closing
//! is logged (`crate::incidents`), a line a second at most.
//!
//! # Writing in bursts
//! When a turn has several connections ready, their responses are queued
//! (`Next::Flush`) and written together after the app has answered them
//! all, not one by one between app calls. Each write wakes the client; one
//! written between two app calls wakes it while the worker still has work,
//! and on a busy machine the client then preempts the worker, whose caches
//! (a Python app's working set above all) it evicts. Written in a burst, the
//! client reads many responses per wake-up: under a 64-connection keep-alive
//! load on a Django view this halved the context switches per request and
//! gave 10-18% more requests/s. The wait is bounded: queued responses are
//! written before the next app call whenever that call (judged by the
//! recent cost of one) would hold the oldest of them past `COALESCE`, so a
//! slow app writes every response as soon as it is made, and a turn with a
//! single ready connection writes at once, as before.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::signal::Signal;

use crate::app::Peer;
use crate::balance::{self, BALANCE_SLACK, DEFER_MS, DORMANT_MS, Deferral, PeerLoad};
use crate::clock::{monotonic_ms, unix_secs};
use crate::conn::{Conn, ConnConfig, Ctx, Next, Stream};
use crate::dispatch::{ConnId, Dispatch, Event, Overdue};
use crate::hooks::Hooks;
use crate::http::Limits;
use crate::http::date::DateCache;
use crate::incidents::Incidents;
use crate::logging::AccessLog;
use crate::sys::{Scoreboard, SignalPipe};

const SIGNAL: Token = Token(usize::MAX - 1);
const MASTER: Token = Token(usize::MAX - 2);
/// How often a worker with an idle app thread looks at the listeners while
/// a peer's threads are all busy (see `run`).
const PEER_BUSY_MS: u64 = 50;
/// The dispatcher's waker: answers from app threads are ready.
const WAKER: Token = Token(usize::MAX - 3);
const LISTENER_BASE: usize = usize::MAX - 1024;
/// Connections accepted per listener per loop turn.
const ACCEPT_BATCH: usize = 8;
/// Freed connection buffers worth returning to the kernel at the next
/// timer sweep (`sys::release_free_heap`, a walk of the allocator's free
/// lists: not worth it for a few connections).
const RELEASE_TRIM_BYTES: usize = 1 << 20;
/// How often a worker compares its load with its peers' for shedding (a
/// scan of the scoreboard); at most one connection is shed per check.
const SHED_CHECK_MS: u64 = 10;
/// How long a worker that asked to be retired (--max-requests) keeps
/// serving while the master starts its replacement, before it drains on its
/// own (a master stopped or unable to fork). The drain's log line says 30 s.
const RETIRE_WAIT_MS: u64 = 30_000;
/// While draining, the loop wakes at least this often for its deadlines.
const DRAIN_TICK_MS: u64 = 100;

/// How long before the end of `--graceful-timeout` open WebSockets are sent
/// their 1001 close: the master's SIGKILL comes at its own deadline, which
/// began when it sent TERM (a moment before this worker's), so closing at
/// the worker's deadline would race the kill; a second (a quarter of a
/// short timeout) lets the close handshake finish and the worker exit on
/// its own. Until then the WebSockets stay open and served.
fn ws_close_lead(graceful_ms: u64) -> u64 {
    (graceful_ms / 4).min(1_000)
}

/// How long a finished response may wait for the rest of its turn's
/// responses before it is written (module docs: writing in bursts).
const COALESCE: Duration = Duration::from_millis(1);

/// Why a connection is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// Readiness: read, answer, write.
    Now,
    /// Readiness in a burst: read and answer, but leave the writing to the
    /// end of the burst (`Next::Flush`).
    Deferred,
    /// The per-second timer: deadlines only.
    Timer,
}

/// When to look at the listeners again, from most to least urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Retry {
    Now,
    Soon,
    Backoff,
    Idle,
}

/// Register a listening socket with `EPOLLEXCLUSIVE`, which mio does not
/// offer: the kernel then wakes one worker that is waiting in `epoll_wait`
/// per new connection instead of all of them (the thundering herd costs a
/// wake-up and a failed `accept4` in every other worker, which shows in
/// `Connection: close` throughput). A busy worker is not woken, so new
/// connections go to idle workers, which keeps the load even. The event's
/// data is the mio token, so mio reports it like any other readiness.
fn register_exclusive(
    epoll: &Epoll,
    listener: &impl std::os::fd::AsFd,
    token: Token,
) -> io::Result<()> {
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET | EpollFlags::EPOLLEXCLUSIVE;
    epoll
        .add(listener.as_fd(), EpollEvent::new(flags, token.0 as u64))
        .map_err(io::Error::from)
}

/// Outcome of one `accept(2)`.
enum Accepted {
    Conn(usize),
    /// Accepted and closed at once (not allowed), or the client was gone.
    Refused,
    /// Nothing queued.
    Empty,
}

enum AnyListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A client socket of either family.
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl io::Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for Sock {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        let mut off = *offset as nix::libc::off_t;
        let sent = match self {
            Sock::Tcp(s) => nix::sys::sendfile::sendfile(&*s, file, Some(&mut off), count),
            Sock::Unix(s) => nix::sys::sendfile::sendfile(&*s, file, Some(&mut off), count),
        };
        let n = sent.map_err(io::Error::from)?;
        *offset = off as u64;
        Ok(n)
    }
}

impl mio::event::Source for Sock {
    fn register(&mut self, r: &mio::Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(r, t, i),
            Sock::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &mio::Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(r, t, i),
            Sock::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(r),
            Sock::Unix(s) => s.deregister(r),
        }
    }
}

/// Settings the loop needs, copied out of `Config`.
pub struct LoopConfig {
    pub limits: Limits,
    pub keepalive_ms: u64,
    pub header_timeout_ms: u64,
    pub graceful_timeout_ms: u64,
    pub worker_connections: usize,
    /// Stop after this many requests (0 = never).
    pub max_requests: u64,
    /// `--timeout` in ms (0 = none): kept here, per request, when the app
    /// runs on threads (inline, the master watches the scoreboard).
    pub timeout_ms: u64,
    /// Proxy trust and body spooling, handed to each connection.
    pub conn: ConnConfig,
    /// `--proxy-allow-from`, when `--proxy-protocol` is on.
    pub proxy_allow: crate::proxy::TrustedProxies,
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Graceful stop finished (TERM, max-requests, master gone).
    Graceful,
    /// INT/QUIT: stop now.
    Quick,
}

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<Option<AnyListener>>,
    accept_pending: Vec<bool>,
    conns: Vec<Option<Conn<Sock>>>,
    free: Vec<usize>,
    active: usize,
    /// Connections that spent their round budget and need driving again.
    again: Vec<usize>,
    /// Reused list of connections to drive this turn.
    ready_buf: Vec<usize>,
    /// Connections whose responses wait for the end of the burst.
    to_flush: Vec<usize>,
    /// Running average of one `drive` that produced a response.
    drive_cost: Duration,
    /// Listeners are registered with EPOLLEXCLUSIVE (see `register_exclusive`).
    exclusive: bool,
    /// `poll`'s epoll instance, for the `epoll_ctl` calls mio does not make.
    epoll: Epoll,
    /// The listeners are in the epoll set (off while at `worker_connections`).
    listening: bool,
    /// Since when this worker leaves queued connections to a lighter peer.
    deferral: Deferral,
    /// Open connections idle for `DORMANT_MS` or more at the last timer sweep
    /// (not counted as load; `balance`).
    dormant: usize,
    /// Rejected requests and connections closed at capacity, for the log.
    incidents: Incidents,
    /// Bytes of idle connections' buffers freed since the last trim.
    released: usize,
    /// The next keep-alive response closes its connection instead
    /// (`Ctx::shed`).
    shed: bool,
    shed_checked_ms: u64,

    accept_retry: Retry,
    /// No accepts before this time (ms), after EMFILE and the like.
    accept_paused_until: u64,
    accept_error_logged: u64,
    signals: SignalPipe,
    master_fd: Option<OwnedFd>,
    scoreboard: Rc<Scoreboard>,
    slot: usize,
    cfg: LoopConfig,
    date: DateCache,
    requests: u64,
    /// Connections accepted so far: each gets a serial ([`ConnId`]).
    serials: u64,
    /// Connections holding a complete request that waits for an app thread,
    /// oldest first.
    parked: std::collections::VecDeque<ConnId>,
    /// App threads busy at the end of the last turn (part of the load).
    busy: u64,
    /// No idle app thread: leave new connections to peers.
    saturated: bool,
    /// A peer has every app thread busy (see `run`).
    peer_busy: bool,
    dispatch_events: Vec<Event>,
    /// Timeout reports (a thread's Python stack) being written by helper
    /// threads: a replaced worker waits for them (briefly) before exiting.
    reports: (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>),
    reports_pending: usize,
    events: Events,
    /// Connections closed, or shut by their peer, while their request was
    /// in the app: told to the dispatcher at the end of the turn.
    gone: Vec<ConnId>,
    /// When the per-second timers last ran (ms).
    last_timer: u64,
    /// When this worker asked the master to retire it (--max-requests).
    retire_asked: Option<u64>,
    /// Set once a graceful stop began: (when, deadline).
    draining: Option<(u64, u64)>,
    /// Open WebSockets were sent their 1001 close (graceful stop).
    ws_gone_away: bool,
    pub access_log: AccessLog,
    /// Called with each signal the worker does not handle itself (USR1...).
    pub on_reopen: Option<Box<dyn FnMut()>>,
}

impl EventLoop {
    /// `listen_fds`: the inherited listening sockets. `master_fd`: read end of
    /// a pipe whose write end only the master holds (EOF = master died).
    pub fn new(
        listen_fds: Vec<socket2::Socket>,
        master_fd: Option<OwnedFd>,
        signals: SignalPipe,
        scoreboard: Rc<Scoreboard>,
        slot: usize,
        cfg: LoopConfig,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        // A duplicate of mio's epoll descriptor names the same epoll
        // instance; through it listeners get the flag mio does not offer.
        let epoll = Epoll(nix::unistd::dup(poll.registry().as_fd()).map_err(io::Error::from)?);
        let mut listeners = Vec::new();
        let mut all_exclusive = true;
        for (i, sock) in listen_fds.into_iter().enumerate() {
            let unix = sock.local_addr().map(|a| a.is_unix()).unwrap_or(false);
            let mut l = if unix {
                AnyListener::Unix(UnixListener::from_std(sock.into()))
            } else {
                AnyListener::Tcp(TcpListener::from_std(sock.into()))
            };
            let token = Token(LISTENER_BASE + i);
            let exclusive = match &l {
                AnyListener::Tcp(s) => register_exclusive(&epoll, s, token),
                AnyListener::Unix(s) => register_exclusive(&epoll, s, token),
            };
            all_exclusive &= exclusive.is_ok();
            if exclusive.is_err() {
                // Kernels before 4.5: every worker is woken for every connection.
                match &mut l {
                    AnyListener::Tcp(s) => {
                        poll.registry().register(s, token, Interest::READABLE)?
                    }
                    AnyListener::Unix(s) => {
                        poll.registry().register(s, token, Interest::READABLE)?
                    }
                }
            }
            listeners.push(Some(l));
        }
        poll.registry()
            .register(&mut SourceFd(&signals.fd()), SIGNAL, Interest::READABLE)?;
        if let Some(fd) = &master_fd {
            poll.registry()
                .register(&mut SourceFd(&fd.as_raw_fd()), MASTER, Interest::READABLE)?;
        }
        let n = listeners.len();
        Ok(EventLoop {
            poll,
            listeners,
            accept_pending: vec![true; n],
            conns: Vec::new(),
            free: Vec::new(),
            active: 0,
            again: Vec::new(),
            ready_buf: Vec::new(),
            to_flush: Vec::new(),
            drive_cost: Duration::ZERO,
            exclusive: all_exclusive,
            epoll,
            listening: true,
            deferral: Deferral::default(),
            dormant: 0,
            incidents: Incidents::new(),
            released: 0,
            shed: false,
            shed_checked_ms: 0,

            accept_retry: Retry::Idle,
            accept_paused_until: 0,
            accept_error_logged: 0,
            signals,
            master_fd,
            scoreboard,
            slot,
            cfg,
            date: DateCache::new(),
            requests: 0,
            serials: 0,
            parked: std::collections::VecDeque::new(),
            busy: 0,
            saturated: false,
            peer_busy: false,
            dispatch_events: Vec::new(),
            reports: std::sync::mpsc::channel(),
            reports_pending: 0,
            events: Events::with_capacity(256),
            gone: Vec::new(),
            last_timer: 0,
            retire_asked: None,
            draining: None,
            ws_gone_away: false,
            access_log: AccessLog::disabled(),
            on_reopen: None,
        })
    }

    /// A waker for a dispatcher whose answers arrive from other threads.
    pub fn waker(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), WAKER)
    }

    /// Run until a stop. `dispatch` runs this worker's application.
    pub fn run(&mut self, dispatch: &mut dyn Dispatch, hooks: &dyn Hooks) -> Exit {
        self.begin();
        loop {
            let timeout = self.next_timeout(dispatch);
            if let Some(exit) = self.turn(dispatch, hooks, timeout) {
                return exit;
            }
        }
    }

    /// The worker is ready: say so on the scoreboard and start the clocks.
    /// (An ASGI worker runs its lifespan startup before this.)
    pub fn begin(&mut self) {
        let s = self.scoreboard.slot(self.slot);
        s.tick_ms.store(monotonic_ms(), Ordering::Relaxed);
        s.ready.store(1, Ordering::Release);
        self.last_timer = monotonic_ms();
        self.date.refresh(unix_secs());
    }

    /// The epoll instance the loop waits on: readable when a turn has
    /// work. An outer loop (asyncio, for ASGI) watches it and runs
    /// [`EventLoop::turn`] with a zero timeout when it is readable.
    pub fn poll_fd(&self) -> std::os::fd::RawFd {
        self.epoll.0.as_raw_fd()
    }

    /// The first listener's address, as an ASGI scope's `server`:
    /// `(host, Some(port))`, or `(path, None)` for a Unix socket.
    pub fn server_addr(&self) -> Option<(String, Option<u16>)> {
        match self.listeners.first()?.as_ref()? {
            AnyListener::Tcp(l) => l
                .local_addr()
                .ok()
                .map(|a| (a.ip().to_string(), Some(a.port()))),
            AnyListener::Unix(l) => l.local_addr().ok().map(|a| {
                let path = a
                    .as_pathname()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                (path, None)
            }),
        }
    }

    /// How long the next turn may wait for readiness: until the next timer,
    /// accept retry or dispatcher tick (zero when work is left over).
    pub fn next_timeout(&mut self, dispatch: &mut dyn Dispatch) -> Duration {
        let timeout = if !self.again.is_empty() {
            Duration::ZERO
        } else {
            match self.accept_retry {
                // The batch limit cut an accept loop short: the rest of the
                // queue is waiting, and no new edge will announce it.
                Retry::Now if self.accept_pending.iter().any(|&p| p) => Duration::ZERO,
                Retry::Now => Duration::from_millis(1000),
                // Left connections to a less loaded worker: take them
                // ourselves once DEFER_MS is up if it has not.
                Retry::Soon => Duration::from_millis(DEFER_MS),
                Retry::Backoff => Duration::from_millis(100),
                Retry::Idle => Duration::from_millis(1000),
            }
        };
        // A request queued for an app thread is checked on soon.
        let timeout = dispatch.tick().map_or(timeout, |t| timeout.min(t));
        let timeout = if self.peer_busy {
            timeout.min(Duration::from_millis(PEER_BUSY_MS))
        } else {
            timeout
        };
        // Draining: the deadlines (the WebSockets' 1001 above all) are
        // checked at least every DRAIN_TICK_MS.
        if self.draining.is_some() {
            timeout.min(Duration::from_millis(DRAIN_TICK_MS))
        } else {
            timeout
        }
    }

    /// One turn: wait up to `timeout` for readiness, then do the work it
    /// brought (connections, answers, accepting, timers, heartbeat).
    /// `Some` when the worker must stop.
    pub fn turn(
        &mut self,
        dispatch: &mut dyn Dispatch,
        hooks: &dyn Hooks,
        timeout: Duration,
    ) -> Option<Exit> {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            log::error!("epoll_wait() failed: {e}");
            return Some(Exit::Quick);
        }
        let now = monotonic_ms();
        self.date.refresh(unix_secs());
        self.scoreboard
            .slot(self.slot)
            .tick_ms
            .store(now, Ordering::Relaxed);

        let mut ready = std::mem::take(&mut self.ready_buf);
        ready.clear();
        ready.append(&mut self.again);
        let mut woken = false;
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            match ev.token() {
                WAKER => woken = true,
                SIGNAL => {
                    for sig in self.signals.drain() {
                        match sig {
                            Signal::SIGTERM => self.begin_drain(now, "received TERM"),
                            Signal::SIGINT | Signal::SIGQUIT => return Some(Exit::Quick),
                            Signal::SIGUSR1 => {
                                if let Err(e) = self.access_log.reopen() {
                                    log::error!("reopening the access log failed: {e}");
                                }
                                if let Some(f) = &mut self.on_reopen {
                                    f();
                                }
                            }
                            _ => {}
                        }
                    }
                }
                MASTER => self.begin_drain(now, "master went away"),
                Token(t) if t >= LISTENER_BASE => {
                    if let Some(p) = self.accept_pending.get_mut(t - LISTENER_BASE) {
                        *p = true;
                    }
                }
                Token(i) => {
                    if let Some(Some(c)) = self.conns.get_mut(i) {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            c.peer_shut = true;
                            if c.in_app() {
                                self.gone.push(c.id);
                            }
                        }
                        ready.push(i);
                    }
                }
            }
        }
        self.events = events;
        self.notify_gone(dispatch);

        if woken || dispatch.due() {
            self.answers(dispatch, hooks, now, &mut ready);
        }
        ready.sort_unstable();
        ready.dedup();
        if now >= self.shed_checked_ms + SHED_CHECK_MS {
            self.shed_checked_ms = now;
            let mine = self.load();
            self.shed = self.draining.is_none()
                && balance::lighter_peer(mine, balance::shed_margin(mine), self.peers(), now);
        }
        self.drive_ready(&ready, dispatch, hooks, now);
        self.busy = dispatch.busy() as u64;
        // Every app thread busy while a peer has an idle one: out of the
        // listeners' wait queue now, before sleeping in epoll_wait, so
        // the kernel wakes that peer for the next connection (an
        // exclusive wake-up spent on this worker would leave it queued
        // here). When every worker is busy, new connections are taken
        // as usual and their requests wait behind the parked ones: left
        // in the backlog, one would wait for as long as this worker's
        // connections keep its threads busy (wrk timeouts, Django view).
        let room = dispatch.room();
        // Spare: an app thread idle now.
        let spare = room != usize::MAX && room > 0;
        self.scoreboard
            .slot(self.slot)
            .spare
            .store(u64::from(spare), Ordering::Relaxed);
        self.saturated = room == 0 && self.spare_peer(now);
        // A peer with every thread busy may have spent the kernel's one
        // exclusive wake-up for a connection it then left queued (it
        // became busy in the same turn): nobody else hears of that
        // connection. While a peer is busy and this worker has a thread
        // idle, look at the listeners every turn (an accept that finds
        // nothing costs one EAGAIN) and at least every PEER_BUSY_MS.
        self.peer_busy = room > 0 && room != usize::MAX && self.busy_peer(now);
        if self.peer_busy && self.draining.is_none() && self.listening {
            self.accept_pending.fill(true);
        }
        if self.saturated {
            self.set_listening(false);
        } else if self.draining.is_none() && self.active < self.cfg.worker_connections {
            self.set_listening(true);
        }
        // Accept after the turn's work, not before: the balance rule then
        // counts only connections that outlived their request (module
        // docs), and nothing is lost, as a new connection's first bytes
        // are reported by the next poll either way.
        self.accept(monotonic_ms());
        self.ready_buf = ready;
        if now >= self.last_timer + 1000 || self.draining.is_some() && now >= self.last_timer + 100
        {
            self.last_timer = now;
            self.timers(dispatch, hooks, now);
        }
        self.access_log.flush();
        for line in self.incidents.report(now, self.cfg.worker_connections) {
            log::warn!("{line}");
        }
        let slot = self.scoreboard.slot(self.slot);
        slot.active.store(self.active as u64, Ordering::Relaxed);
        slot.dormant.store(self.dormant as u64, Ordering::Relaxed);
        slot.busy_threads.store(self.busy, Ordering::Relaxed);
        self.notify_gone(dispatch);

        if self.cfg.max_requests > 0
            && self.requests >= self.cfg.max_requests
            && self.draining.is_none()
        {
            // Ask the master to replace us and keep serving: it sends TERM
            // once the replacement accepts, so the number of accepting
            // workers never dips. Drain on our own only if it does not.
            let asked = *self.retire_asked.get_or_insert_with(|| {
                log::info!(
                    "Worker (pid:{}) served {} requests (--max-requests): asking for a replacement",
                    std::process::id(),
                    self.requests
                );
                self.scoreboard.slot(self.slot).request_retire();
                now
            });
            if now >= asked + RETIRE_WAIT_MS {
                self.begin_drain(
                    now,
                    "max requests reached and the master did not retire this worker in 30 s",
                );
            }
        }
        if let Some((_, deadline)) = self.draining {
            if self.active == 0 {
                self.wait_for_reports();
                return Some(Exit::Graceful);
            }
            if !self.ws_gone_away && now + ws_close_lead(self.cfg.graceful_timeout_ms) >= deadline {
                self.ws_gone_away = true;
                self.close_websockets(dispatch, hooks, now);
            }
            if now >= deadline {
                log::warn!(
                    "graceful timeout: closing {} connection(s) still open",
                    self.active
                );
                self.wait_for_reports();
                return Some(Exit::Graceful);
            }
        }
        None
    }

    fn ctx<'a>(
        &'a mut self,
        dispatch: &'a mut dyn Dispatch,
        hooks: &'a dyn Hooks,
        now: u64,
        how: Drive,
    ) -> (Ctx<'a>, &'a mut Vec<Option<Conn<Sock>>>) {
        let slot = self.scoreboard.slot(self.slot);
        (
            Ctx {
                dispatch,
                hooks,
                limits: &self.cfg.limits,
                date: self.date.get(),
                now_ms: now,
                keepalive_ms: self.cfg.keepalive_ms,
                header_timeout_ms: self.cfg.header_timeout_ms,
                draining: self.draining.is_some(),
                drain_idle_ms: 1000,
                slot: Some(slot),
                uploads: &self.cfg.conn,
                access_log: &mut self.access_log,
                requests: &mut self.requests,
                defer_flush: how == Drive::Deferred,
                shed: &mut self.shed,
                incidents: &mut self.incidents,
                released: &mut self.released,
            },
            &mut self.conns,
        )
    }

    fn drive(
        &mut self,
        i: usize,
        dispatch: &mut dyn Dispatch,
        hooks: &dyn Hooks,
        now: u64,
        how: Drive,
    ) {
        let (mut ctx, conns) = self.ctx(dispatch, hooks, now, how);
        let Some(Some(conn)) = conns.get_mut(i) else {
            return;
        };
        let next = if how == Drive::Timer {
            conn.on_timer(&mut ctx)
        } else {
            conn.drive(&mut ctx)
        };
        // TCP_NODELAY only once a connection is kept alive past its first
        // response (nginx's tcp_nodelay does the same): a one-request
        // connection never has a write waiting behind an unacknowledged one,
        // so the setsockopt would be a wasted syscall per connection.
        // (`Flush` is not a verdict yet: the connection may still close.)
        if matches!(next, Next::Wait | Next::Again)
            && !conn.nodelay
            && conn.served() > 0
            && let Sock::Tcp(s) = &conn.stream
        {
            let _ = s.set_nodelay(true);
            conn.nodelay = true;
        }
        self.after(i, next);
    }

    fn after(&mut self, i: usize, next: Next) {
        match next {
            Next::Wait => {}
            Next::Again => self.again.push(i),
            Next::Close => self.close(i),
            Next::Flush => self.to_flush.push(i),
            Next::Park => {
                if let Some(Some(c)) = self.conns.get_mut(i)
                    && !c.parked
                {
                    c.parked = true;
                    self.parked.push_back(c.id);
                }
            }
        }
    }

    /// Take the dispatcher's answers: each is queued on its connection,
    /// which is then driven with this turn's ready ones; parked requests
    /// get the threads that came free, oldest first.
    fn answers(
        &mut self,
        dispatch: &mut dyn Dispatch,
        hooks: &dyn Hooks,
        now: u64,
        ready: &mut Vec<usize>,
    ) {
        let mut events = std::mem::take(&mut self.dispatch_events);
        dispatch.poll(&mut events);
        for ev in events.drain(..) {
            let id = match &ev {
                Event::Answer(a) => a.conn,
                Event::Wake(id) | Event::Ws(id, _) => *id,
            };
            let i = id.index;
            if !matches!(self.conns.get(i), Some(Some(c)) if c.id == id) {
                continue; // the connection is gone: drop the answer
            }
            let (mut ctx, conns) = self.ctx(dispatch, hooks, now, Drive::Now);
            if let Some(Some(c)) = conns.get_mut(i) {
                match ev {
                    Event::Answer(a) => c.respond(a, &mut ctx),
                    Event::Ws(_, action) => c.ws_action(action, &mut ctx),
                    Event::Wake(_) => {}
                }
            }
            ready.push(i);
        }
        self.dispatch_events = events;
        // Parked requests first, oldest first, driven now: were they merely
        // queued with this turn's ready connections, a newer request could
        // take the thread and send them to the back again, and under load
        // some waited seconds. Room only grows here, so after this either
        // nothing is parked or every thread is taken, and later requests
        // park behind the earlier ones: first come, first served.
        while dispatch.room() > 0 {
            let Some(id) = self.parked.pop_front() else {
                break;
            };
            if let Some(Some(c)) = self.conns.get_mut(id.index)
                && c.id == id
            {
                c.parked = false;
                if c.is_parked() {
                    self.drive(id.index, dispatch, hooks, now, Drive::Now);
                }
            }
        }
    }

    /// Graceful stop: close every open WebSocket with 1001. Those whose
    /// clients answer the close end before the deadline, and the worker
    /// exits as soon as none is left.
    fn close_websockets(&mut self, dispatch: &mut dyn Dispatch, hooks: &dyn Hooks, now: u64) {
        for i in 0..self.conns.len() {
            let (mut ctx, conns) = self.ctx(dispatch, hooks, now, Drive::Now);
            let Some(Some(c)) = conns.get_mut(i) else {
                continue;
            };
            let next = c.ws_going_away(&mut ctx);
            self.after(i, next);
        }
    }

    /// Before exiting, give the timeout reports under way up to 3 s: a
    /// replacement takes over fast, and the report (which waits for the
    /// GIL) would otherwise die with this process unwritten.
    fn wait_for_reports(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while self.reports_pending > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.reports.1.recv_timeout(left).is_err() {
                log::warn!("exiting before a timeout report (the app thread's stack) was written");
                return;
            }
            self.reports_pending -= 1;
        }
    }

    /// `--timeout` under threads: answer each overdue request 504, log it
    /// as the master logs a WORKER TIMEOUT (with the thread's stack when
    /// the app can tell it), and ask the master for a replacement; this
    /// worker serves on until the replacement accepts and it is told to
    /// stop, so its other requests are answered.
    fn deadlines(&mut self, dispatch: &mut dyn Dispatch, hooks: &dyn Hooks, now: u64) {
        if self.cfg.timeout_ms == 0 {
            return;
        }
        let mut overdue: Vec<Overdue> = Vec::new();
        dispatch.overdue(now, self.cfg.timeout_ms, &mut overdue);
        if overdue.is_empty() {
            return;
        }
        let pid = std::process::id();
        for o in overdue {
            if !o.replace {
                // Cancelled by the dispatcher (an ASGI task): the worker is
                // fine, only this request is answered 504.
                log::error!(
                    "REQUEST TIMEOUT (pid:{pid}), in the app for {} s handling {}; cancelled",
                    o.secs,
                    o.what
                );
            } else {
                log::error!(
                    "WORKER TIMEOUT (pid:{pid}), in the app for {} s handling {}; replacing the worker",
                    o.secs,
                    o.what
                );
            }
            if o.replace
                && let Some(report) = dispatch.stack_reporter()
            {
                // The stack needs the app's lock (the GIL), which the stuck
                // thread may hold: ask from a helper thread, never the loop.
                let what = o.what.clone();
                let thread = o.thread;
                let done = self.reports.0.clone();
                let spawned = std::thread::Builder::new()
                    .name("timeout-report".into())
                    .spawn(move || {
                        if let Some(stack) = report(thread) {
                            log::error!(
                                "WORKER TIMEOUT (pid:{pid}): stack of the thread handling {what}:\n{}",
                                stack.trim_end()
                            );
                        }
                        let _ = done.send(());
                    });
                self.reports_pending += usize::from(spawned.is_ok());
            }
            if o.replace {
                self.scoreboard.slot(self.slot).request_retire();
            }
            let i = o.conn.index;
            let (mut ctx, conns) = self.ctx(dispatch, hooks, now, Drive::Now);
            let next = match conns.get_mut(i) {
                Some(Some(c)) if c.id == o.conn => c.timed_out(&mut ctx),
                _ => continue,
            };
            self.after(i, next);
        }
    }

    /// Drive this turn's ready connections, writing their responses in
    /// bursts (module docs).
    fn drive_ready(
        &mut self,
        ready: &[usize],
        dispatch: &mut dyn Dispatch,
        hooks: &dyn Hooks,
        now: u64,
    ) {
        if ready.len() < 2 {
            // Nothing to batch with: write at once.
            for &i in ready {
                self.drive(i, dispatch, hooks, now, Drive::Now);
            }
            return;
        }
        let mut oldest: Option<Instant> = None;
        for &i in ready {
            let start = Instant::now();
            if let Some(t0) = oldest
                && start.duration_since(t0) + self.drive_cost >= COALESCE
            {
                self.flush_queued(dispatch, hooks, now);
                oldest = None;
            }
            let queued = self.to_flush.len();
            self.drive(i, dispatch, hooks, now, Drive::Deferred);
            if self.to_flush.len() > queued {
                let end = Instant::now();
                self.drive_cost = (self.drive_cost * 7 + end.duration_since(start)) / 8;
                oldest.get_or_insert(end);
            }
        }
        self.flush_queued(dispatch, hooks, now);
    }

    /// Write the responses queued in this burst, oldest first.
    fn flush_queued(&mut self, dispatch: &mut dyn Dispatch, hooks: &dyn Hooks, now: u64) {
        if self.to_flush.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.to_flush);
        for &i in &queued {
            self.drive(i, dispatch, hooks, now, Drive::Now);
        }
        self.to_flush = queued;
        self.to_flush.clear();
    }

    /// Tell the dispatcher about clients that went away while their
    /// request was in the app (an ASGI app's `http.disconnect`).
    fn notify_gone(&mut self, dispatch: &mut dyn Dispatch) {
        for id in self.gone.drain(..) {
            dispatch.peer_gone(id);
        }
    }

    fn close(&mut self, i: usize) {
        // Closing the socket removes it from the epoll set (it is never
        // duplicated), so no EPOLL_CTL_DEL is needed.
        if let Some(c) = self.conns[i].take() {
            if c.in_app() {
                self.gone.push(c.id);
            }
            self.active -= 1;
            // A slot freed: connections left queued at the limit can come in.
            if self.draining.is_none() && self.accept_pending.iter().any(|&p| p) {
                self.accept_retry = Retry::Now;
            }
            if self.draining.is_none()
                && self.active < self.cfg.worker_connections
                && !self.saturated
            {
                self.set_listening(true);
            }
            self.free.push(i);
        }
    }

    /// Accept what the kernel queued, within the batch and balance limits,
    /// and decide when to look at the listeners again (`accept_retry`).
    fn accept(&mut self, now: u64) {
        self.accept_retry = Retry::Idle;
        if self.draining.is_some() || now < self.accept_paused_until {
            if self.draining.is_none() {
                self.accept_retry = Retry::Backoff;
            }
            return;
        }
        for li in 0..self.listeners.len() {
            if !self.accept_pending[li] {
                continue;
            }
            let mut batch = 0;
            let mut stepped_back = false;
            loop {
                let full = self.active >= self.cfg.worker_connections;
                // Full: admit the next connection in place of the idlest one.
                let victim = if full { self.shed_candidate(now) } else { None };
                if self.saturated || (full && victim.is_none()) {
                    // Full, and a peer has room or nothing here is idle: a
                    // closing connection re-arms accepting (`close`), and so
                    // does the timer once closing an idle one would help.
                    // With exclusive wake-ups, also stop being the one the
                    // kernel wakes, so new connections go to other workers
                    // (gunicorn's gthread unregisters its listeners too).
                    // Likewise with every app thread busy: a peer with an
                    // idle thread serves the connection sooner.
                    self.set_listening(false);
                    break;
                }
                let was_deferring = self.deferral.active();
                // (Full: every peer is full too, and room was made here.)
                if !full && !self.my_turn(now) {
                    self.accept_retry = self.accept_retry.min(Retry::Soon);
                    // Just began leaving the queue to a peer: step to the back
                    // of the wait queue too, or the next arrival wakes this
                    // worker again and the peer never hears of the queue.
                    stepped_back = !was_deferring;
                    break;
                }
                if batch == ACCEPT_BATCH {
                    self.accept_retry = Retry::Now;
                    break;
                }
                match self.accept_one(li, now) {
                    Ok(Accepted::Conn(_)) => {
                        batch += 1;
                        // Closed only now that a connection came in: the
                        // queue may have been empty (a stale edge).
                        if let Some(v) = victim {
                            self.shed_idle(v, now);
                        }
                    }
                    Ok(Accepted::Refused) => batch += 1,
                    Ok(Accepted::Empty) => {
                        self.accept_pending[li] = false;
                        self.deferral.clear();
                        break;
                    }
                    Err(e) => {
                        // EMFILE and friends: the connection stays queued. Pause
                        // accepting briefly instead of spinning on the error,
                        // and say so once per pause, not once per attempt.
                        if now >= self.accept_error_logged + 10_000 {
                            log::error!(
                                "accept() failed: {e} (open connections: {}); pausing accepts",
                                self.active
                            );
                            self.accept_error_logged = now;
                        }
                        self.accept_paused_until = now + 100;
                        self.accept_retry = Retry::Backoff;
                        break;
                    }
                }
            }
            if self.exclusive && (batch > 0 || stepped_back) {
                self.rotate(li);
            }
        }
    }

    /// Whether this worker should take the next connection (see module docs).
    fn my_turn(&mut self, now: u64) -> bool {
        let lighter = balance::lighter_peer(self.load(), BALANCE_SLACK, self.peers(), now);
        self.deferral.my_turn(lighter, self.exclusive, now)
    }

    /// This worker's load: open connections less dormant ones (`balance`),
    /// plus busy app threads: a worker whose threads are all busy is
    /// heavier than one with the same connections and idle threads.
    fn load(&self) -> u64 {
        balance::load(self.active, self.dormant) + self.busy
    }

    /// Is a peer that could accept now spare (an idle app thread, or no
    /// request waiting for one)?
    fn spare_peer(&self, now: u64) -> bool {
        let sb = &self.scoreboard;
        (0..sb.len())
            .take_while(|&j| j <= self.slot + 64 || sb.slot(j).pid.load(Ordering::Relaxed) != 0)
            .filter(|&j| j != self.slot)
            .map(|j| sb.slot(j))
            .filter(|s| s.pid.load(Ordering::Relaxed) != 0)
            .any(|s| {
                s.spare.load(Ordering::Relaxed) > 0
                    && s.ready.load(Ordering::Relaxed) == 1
                    && now.saturating_sub(s.tick_ms.load(Ordering::Relaxed)) < 1500
            })
    }

    /// Has a live threaded peer no spare app thread?
    fn busy_peer(&self, now: u64) -> bool {
        // Every turn of a threaded worker: stop past a long run of free
        // rows as `peers` does (all 1024 rows cost 2% of a Rust hello's CPU
        // under --threads, more than the rest of the turn).
        let sb = &self.scoreboard;
        (0..sb.len())
            .take_while(|&j| j <= self.slot + 64 || sb.slot(j).pid.load(Ordering::Relaxed) != 0)
            .filter(|&j| j != self.slot)
            .map(|j| sb.slot(j))
            .filter(|s| s.pid.load(Ordering::Relaxed) != 0)
            .any(|s| {
                s.spare.load(Ordering::Relaxed) == 0
                    && s.busy_threads.load(Ordering::Relaxed) > 0
                    && s.ready.load(Ordering::Relaxed) == 1
                    && now.saturating_sub(s.tick_ms.load(Ordering::Relaxed)) < 1500
            })
    }

    /// The other workers' rows of the scoreboard.
    fn peers(&self) -> impl Iterator<Item = PeerLoad> + '_ {
        let sb = &self.scoreboard;
        let me = self.slot;
        // Rows are used from the front; past a long run of free rows, stop.
        (0..sb.len())
            .take_while(move |&j| j <= me + 64 || sb.slot(j).pid.load(Ordering::Relaxed) != 0)
            .filter(move |&j| j != me && sb.slot(j).pid.load(Ordering::Relaxed) != 0)
            .map(move |j| {
                let s = sb.slot(j);
                let open = s.active.load(Ordering::Relaxed);
                PeerLoad {
                    load: open.saturating_sub(s.dormant.load(Ordering::Relaxed))
                        + s.busy_threads.load(Ordering::Relaxed),
                    open,
                    ready: s.ready.load(Ordering::Relaxed) == 1,
                    in_app: s.busy_since_ms.load(Ordering::Relaxed) != 0,
                    tick_ms: s.tick_ms.load(Ordering::Relaxed),
                }
            })
    }

    /// At `--worker-connections` with connections queued: the connection
    /// to close to admit one (the one idle the longest: never sent a byte,
    /// or kept alive between requests), as nginx does when it runs out of
    /// connections. Otherwise every slot could be held by clients that send
    /// nothing, and the server would serve no one until their timeouts ran
    /// out. None while a peer has a free slot (it takes the connection
    /// without closing anything) or when nothing here is idle.
    fn shed_candidate(&self, now: u64) -> Option<usize> {
        if balance::peer_has_room(self.cfg.worker_connections, self.peers(), now) {
            return None;
        }
        let idle = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.as_ref()?.idle_since()?)));
        balance::longest_idle(idle, 1).first().copied()
    }

    /// Close idle connection `i` to make room for a new one (`shed_candidate`).
    fn shed_idle(&mut self, i: usize, now: u64) {
        let since = self.conns[i].as_ref().and_then(|c| c.idle_since());
        let idle_ms = since.map_or(0, |t| now.saturating_sub(t));
        if idle_ms >= DORMANT_MS {
            self.dormant = self.dormant.saturating_sub(1);
        }
        log::debug!("closing an idle connection (idle {idle_ms} ms) to admit a new one");
        self.incidents.shed(idle_ms);
        self.close(i);
    }

    /// With exclusive wake-ups the kernel wakes the first *idle* worker in
    /// the listening socket's wait queue, which is always the same one when
    /// several are idle: a burst would all go to it. Re-adding the listener
    /// after accepting moves this worker to the back of that queue, so the
    /// next connection goes to another idle worker (round robin at the cost
    /// of two `epoll_ctl` per wake-up, cheaper than waking every worker).
    /// A listener with a non-empty queue is reported ready again on re-add,
    /// so nothing is stranded.
    fn rotate(&mut self, li: usize) {
        if !self.listening {
            return;
        }
        let token = Token(LISTENER_BASE + li);
        let epoll = &self.epoll;
        let readd = |fd: std::os::fd::BorrowedFd<'_>| {
            epoll.delete(fd).map_err(io::Error::from)?;
            register_exclusive(epoll, &fd, token)
        };
        let res = match &self.listeners[li] {
            Some(AnyListener::Tcp(s)) => readd(s.as_fd()),
            Some(AnyListener::Unix(s)) => readd(s.as_fd()),
            None => Ok(()),
        };
        if let Err(e) = res {
            log::error!("re-adding a listener to epoll failed: {e}");
        }
    }

    /// Take the listeners out of (or put them back into) this worker's
    /// epoll set; only with exclusive registration, where it matters who is
    /// woken. Re-adding reports a non-empty queue at once.
    fn set_listening(&mut self, on: bool) {
        if !self.exclusive || self.listening == on {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let token = Token(LISTENER_BASE + i);
            let res = match (l, on) {
                (Some(AnyListener::Tcp(s)), true) => register_exclusive(&self.epoll, s, token),
                (Some(AnyListener::Unix(s)), true) => register_exclusive(&self.epoll, s, token),
                (Some(AnyListener::Tcp(s)), false) => {
                    self.epoll.delete(s.as_fd()).map_err(io::Error::from)
                }
                (Some(AnyListener::Unix(s)), false) => {
                    self.epoll.delete(s.as_fd()).map_err(io::Error::from)
                }
                (None, _) => Ok(()),
            };
            if let Err(e) = res {
                log::error!("updating a listener's epoll registration failed: {e}");
            }
        }
        self.listening = on;
    }

    fn accept_one(&mut self, li: usize, now: u64) -> io::Result<Accepted> {
        let accepted = match &self.listeners[li] {
            Some(AnyListener::Tcp(l)) => l.accept().map(|(s, a)| (Sock::Tcp(s), Peer::Tcp(a))),
            Some(AnyListener::Unix(l)) => l.accept().map(|(s, _)| (Sock::Unix(s), Peer::Unix)),
            None => return Ok(Accepted::Empty),
        };
        let (mut sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Accepted::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Accepted::Refused),
            // The client gave up while queued: not our error.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return Ok(Accepted::Refused),
            Err(e) => return Err(e),
        };
        if self.cfg.conn.proxy_protocol {
            let allowed = match &peer {
                Peer::Tcp(a) => self.cfg.proxy_allow.trusts_ip(a.ip()),
                Peer::Unix => true,
            };
            if !allowed {
                log::warn!("closing connection from {peer}: not in --proxy-allow-from");
                return Ok(Accepted::Refused);
            }
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.poll.registry().register(
            &mut sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut conn = Conn::new(sock, peer, now);
        self.serials += 1;
        conn.id = ConnId {
            index: i,
            serial: self.serials,
        };
        conn.awaiting_proxy_header = self.cfg.conn.proxy_protocol;
        // Do not read yet: the request usually arrives a moment after the
        // handshake, and a read now would mostly return EAGAIN (two in five
        // under `Connection: close` load). Registering reports the socket
        // readable as soon as it is, including data already there.
        conn.readable = false;
        self.conns[i] = Some(conn);
        self.active += 1;
        Ok(Accepted::Conn(i))
    }

    /// Deadlines for every connection; then count the dormant ones (idle
    /// for `DORMANT_MS`, not load), and listen again if this worker stopped
    /// when full but could now make room by closing an idle connection.
    fn timers(&mut self, dispatch: &mut dyn Dispatch, hooks: &dyn Hooks, now: u64) {
        let (mut dormant, mut idle) = (0, 0);
        for i in 0..self.conns.len() {
            if self.conns[i].is_some() {
                self.drive(i, dispatch, hooks, now, Drive::Timer);
            }
            if let Some(since) = self.conns[i].as_ref().and_then(|c| c.idle_since()) {
                idle += 1;
                dormant += usize::from(now >= since + DORMANT_MS);
            }
        }
        self.dormant = dormant;
        // Idle connections gave their buffers back (`Conn::on_timer`); among
        // live allocations that memory stays resident until trimmed.
        if self.released >= RELEASE_TRIM_BYTES {
            self.released = 0;
            crate::sys::release_free_heap();
        }
        if !self.listening
            && self.draining.is_none()
            && !self.saturated
            && idle > 0
            && self.active >= self.cfg.worker_connections
            && !balance::peer_has_room(self.cfg.worker_connections, self.peers(), now)
        {
            self.set_listening(true);
        }
        self.deadlines(dispatch, hooks, now);
    }

    /// Stop accepting and let open connections finish. Whatever the kernel
    /// already queued on the listeners is accepted and served first: those
    /// clients connected before we stopped, and closing the last copy of a
    /// listening socket would reset them (nginx reports that as 502).
    fn begin_drain(&mut self, now: u64, why: &str) {
        if self.draining.is_some() {
            return;
        }
        // The master logs this worker's exit, with its cause; the worker says
        // only what the master cannot know (why it stops when not told to).
        let level = if why == "received TERM" {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "Worker (pid:{}) stops accepting: {why}",
            std::process::id()
        );
        for li in 0..self.listeners.len() {
            loop {
                match self.accept_one(li, now) {
                    Ok(Accepted::Conn(i)) => self.again.push(i),
                    Ok(Accepted::Refused) => {}
                    _ => break,
                }
            }
        }
        for l in self.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = match &mut l {
                    AnyListener::Tcp(s) => self.poll.registry().deregister(s),
                    AnyListener::Unix(s) => self.poll.registry().deregister(s),
                };
            }
        }
        if let Some(fd) = self.master_fd.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        // Idle keep-alive connections get a moment to send one more request,
        // which is answered with `Connection: close`, instead of being closed
        // under a client that is about to reuse them.
        self.draining = Some((now, now + self.cfg.graceful_timeout_ms));
        self.scoreboard
            .slot(self.slot)
            .ready
            .store(0, Ordering::Relaxed);
        for c in self.conns.iter_mut().flatten() {
            c.touch(now);
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
}
