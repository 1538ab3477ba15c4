//! The seam between connections and the app: a complete request leaves its
//! connection ([`Dispatch::submit`]) and its answer comes back, at once or
//! later. The connection state machine (`conn.rs`) never calls the app; it
//! hands the request over and waits in its "in the app" state, and the event
//! loop goes on reading, writing, accepting and timing other connections.
//!
//! Two dispatchers:
//! - [`Inline`] (`-k sync`, `--threads 1`): calls the app on the loop's
//!   thread and answers at once, as the worker always did; the master's
//!   `--timeout` watch (the scoreboard's busy stamp) kills a stuck worker.
//! - [`Pool`] (`-k gthread`, `--threads N`): N threads, each with its own
//!   app (the factory runs once per thread). gunicorn's gthread worker
//!   queues every accepted connection for its pool; here nothing is queued:
//!   a request is handed over only when a thread is idle ([`Dispatch::room`]),
//!   so when all threads are busy further requests wait in their connections
//!   (one parsed request at most per connection, the rest unread in the
//!   kernel), and the loop stops accepting so that an idle peer takes new
//!   connections. Answers come back through a `mio::Waker`. A streamed body
//!   is pulled on the thread that made it (a Python generator never runs on
//!   the loop), one piece ahead of the socket: the same backpressure as the
//!   inline pull. `--timeout` is kept by the loop, per thread
//!   ([`Dispatch::overdue`]): an overdue request's client is answered 504 and
//!   the worker asks to be replaced, its other requests finishing first.
//!   Which thread is woken for a request: one per request for an app whose
//!   calls wait (a database, a sleep); for an app that computes, the thread
//!   already awake takes the requests in turn, and another is woken only if
//!   no job was taken for 1 ms (see `Shared::blocking_app`).
//!   With N > 1 threads the worker's own thread is one of the N (the
//!   [`Lane`]): while the app's calls are short it takes every request and
//!   calls the app after the loop's turn, as `-k sync` does, lending the loop
//!   to a stand-in thread meanwhile ([`crate::handoff`]); when they run long
//!   the pool's N - 1 threads take them, and the worker's thread one when
//!   all of those are busy. (The requests one turn took for the worker's
//!   thread and not yet started when a call ran long go to the app threads,
//!   queued if they are all busy: the one exception to "nothing queued",
//!   bounded by what one turn read.)
//!
//! A third, `python::asgi`'s, runs ASGI apps as coroutines on an asyncio
//! loop in the worker's thread (see [`Runner`]): requests are stepped from
//! the loop's turn and answered at once when they never wait, or later
//! from their asyncio task.
//!
//! # WebSockets
//! A dispatcher that speaks WebSocket ([`Dispatch::websockets`]) gets the
//! upgrade requests that passed the RFC 6455 checks ([`Dispatch::ws_open`]),
//! then each message the client sends ([`Dispatch::ws_message`]) and the end
//! ([`Dispatch::ws_closed`], once, whoever ended it). It gives back
//! [`WsAction`]s: first `Accept` (the 101, with a subprotocol and headers) or
//! `Deny` (an HTTP response), then `Send` and `Close`. Actions decided during
//! a call are pushed to its `out`; later ones (an ASGI task's) arrive through
//! [`Dispatch::poll`] as [`Event::Ws`]. The connection does the framing, the
//! pings and the close handshake (`ws_conn.rs`); a dispatcher sees messages
//! only. Backpressure both ways: a connection whose output is over
//! `conn::HIGH_WATER` reads no further frames (a client that does not read
//! stops being heard); an app that sends faster than its client reads is
//! held back until the output is written ([`Dispatch::ws_drained`]); an
//! app that does not take its messages says `Pause` (and later `Resume`),
//! and the client's frames wait in the kernel.

use std::any::Any;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::app::{
    App, FileBody, Request, Response, ResponseBody, StackReporter, WsOpen, WsSession,
};
use crate::hooks::Hooks;
use crate::sys::Slot;

/// A connection as the dispatcher knows it: its slot in the loop's table,
/// and a serial that tells a later connection in the same slot apart (an
/// answer for a connection that is gone is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub index: usize,
    pub serial: u64,
}

/// How the app answered.
pub enum Outcome {
    Response(Response),
    /// The app panicked (Rust) with this message; the client gets a 500.
    Panic(String),
    /// The app failed after it began a response (an ASGI app that raised
    /// after `http.response.start`; the dispatcher logged it): the
    /// connection is closed without a response.
    Abort,
}

/// The request back from the app, with its answer.
pub struct Answer {
    pub conn: ConnId,
    pub req: Request,
    pub outcome: Outcome,
}

/// What a dispatcher reports to the loop. (Moved once per request: boxing
/// the large variant would cost an allocation for nothing.)
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Answer(Answer),
    /// More of a streamed body is ready for this connection.
    Wake(ConnId),
    /// A WebSocket app's decision, made after the call that asked for it.
    Ws(ConnId, WsAction),
}

/// What a WebSocket app tells its connection.
#[derive(Debug)]
pub enum WsAction {
    /// Complete the handshake: 101 with this subprotocol (one the client
    /// offered) and these extra headers.
    Accept {
        subprotocol: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Refuse the handshake with this HTTP response (the connection closes
    /// after it).
    Deny(Response),
    Send(crate::ws::Message),
    /// Start the close handshake (before `Accept`: refuse with 403).
    Close {
        code: u16,
        reason: String,
    },
    /// Stop reading the client's frames: the app has as many messages
    /// queued as it takes (its receive side is the backpressure).
    Pause,
    /// Read them again.
    Resume,
}

/// A dispatcher that runs its own event loop around the worker's (ASGI:
/// asyncio). The worker hands it the [`EventLoop`] instead of calling
/// [`EventLoop::run`]; it drives the loop's turns from its own loop
/// ([`EventLoop::turn`] when [`EventLoop::poll_fd`] is readable, and by the
/// deadline [`EventLoop::next_timeout`] gives) until a turn says stop.
pub trait Runner {
    /// Before the worker accepts (ASGI lifespan startup). `Err`: the
    /// worker cannot serve (one line for the log); it exits with code 3.
    fn startup(&mut self) -> Result<(), String>;
    /// Serve until the loop stops; gives the loop back with why it stopped.
    fn run(
        &mut self,
        ev: crate::event_loop::EventLoop,
        hooks: std::rc::Rc<dyn Hooks>,
    ) -> (crate::event_loop::EventLoop, crate::event_loop::Exit);
    /// After serving (ASGI lifespan shutdown on a graceful stop).
    fn shutdown(&mut self, exit: &crate::event_loop::Exit);
}

/// A request past `--timeout` in the app.
#[derive(Debug)]
pub struct Overdue {
    pub conn: ConnId,
    /// "METHOD /path".
    pub what: String,
    pub secs: u64,
    /// The app thread's `pthread_self()` (Python's `threading.get_ident()`).
    pub thread: u64,
    /// The app cannot give the worker back (a thread stuck in a call): the
    /// worker asks to be replaced. False when the dispatcher cancelled the
    /// request itself (an ASGI task): the worker serves on.
    pub replace: bool,
}

/// What the loop lends a dispatcher for one hand-over.
pub struct Env<'a> {
    pub hooks: &'a dyn Hooks,
    pub slot: Option<&'a Slot>,
    pub now_ms: u64,
}

/// One way of running the app.
pub trait Dispatch {
    /// How many more requests can be handed over now.
    fn room(&self) -> usize;
    /// Hand over a complete request: `Some` when answered at once (inline),
    /// `None` when the answer comes later through [`Dispatch::poll`].
    fn submit(&mut self, conn: ConnId, req: Request, env: &Env<'_>) -> Option<Answer>;
    /// Answers and wake-ups that arrived (after the loop's waker fired).
    fn poll(&mut self, _out: &mut Vec<Event>) {}
    /// App threads busy now (counted into the worker's load).
    fn busy(&self) -> usize {
        0
    }
    /// Requests in the app longer than `limit_ms`, each reported once.
    fn overdue(&mut self, _now_ms: u64, _limit_ms: u64, _out: &mut Vec<Overdue>) {}
    /// Called every loop turn: how soon the loop must call again (a request
    /// queued for a thread that must not wait long).
    fn tick(&mut self) -> Option<std::time::Duration> {
        None
    }
    /// Answers are waiting that no waker announced (the worker's own
    /// thread left them, see [`Lane`]): the turn takes them as if woken.
    fn due(&self) -> bool {
        false
    }
    /// Describes an app thread (its Python stack), for a timeout report.
    fn stack_reporter(&self) -> Option<StackReporter> {
        None
    }
    /// The client of a request in the app went away (closed, reset, or
    /// shut its sending side); the connection may already be closed. An
    /// ASGI app learns it as `http.disconnect`.
    fn peer_gone(&mut self, _conn: ConnId) {}
    /// Does the app take WebSockets? If not, an upgrade request is plain
    /// HTTP to it, as before (a WSGI app answers it like any request).
    fn websockets(&self) -> bool {
        false
    }
    /// A handshake that passed the RFC 6455 checks: answer `Accept` or
    /// `Deny`, in `out` now or later as [`Event::Ws`].
    fn ws_open(
        &mut self,
        _conn: ConnId,
        _req: &mut Request,
        _hs: &crate::ws::Handshake,
        _env: &Env<'_>,
        out: &mut Vec<WsAction>,
    ) {
        out.push(WsAction::Deny(Response::text(404, "Not Found\n")));
    }
    /// A message from the client of an accepted WebSocket.
    fn ws_message(
        &mut self,
        _conn: ConnId,
        _msg: crate::ws::Message,
        _env: &Env<'_>,
        _out: &mut Vec<WsAction>,
    ) {
    }
    /// The WebSocket (or the handshake waiting for `Accept`) ended: the
    /// client's close code, 1005 (none), 1006 (no close handshake), or the
    /// code the server closed with. Called once per `ws_open`.
    fn ws_closed(&mut self, _conn: ConnId, _code: u16, _env: &Env<'_>) {}
    /// Everything sent on this WebSocket has been written to the socket:
    /// an app whose sends wait for the client (a slow reader must not grow
    /// the worker's memory) may go on.
    fn ws_drained(&mut self, _conn: ConnId) {}
}

fn call(app: &mut dyn App, req: &mut Request, hooks: Option<&dyn Hooks>) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| {
        if let Some(h) = hooks {
            h.pre_request(req);
        }
        app.call(req)
    })) {
        Ok(resp) => Outcome::Response(resp),
        Err(panic) => Outcome::Panic(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into()),
        ),
    }
}

/// The app on the loop's thread: answered at once.
pub struct Inline {
    app: Box<dyn App + Send>,
    /// The app's open WebSockets.
    sessions: std::collections::HashMap<ConnId, Box<dyn WsSession + Send>>,
}

impl Inline {
    pub fn new(app: Box<dyn App + Send>) -> Inline {
        Inline {
            app,
            sessions: std::collections::HashMap::new(),
        }
    }
}

/// A panic's message.
fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Stamp the worker busy (for the master's `--timeout` watch) around `f`.
fn busy<R>(env: &Env<'_>, f: impl FnOnce() -> R) -> R {
    if let Some(slot) = env.slot {
        slot.busy_since_ms
            .store(env.now_ms.max(1), Ordering::Relaxed);
    }
    let r = f();
    if let Some(slot) = env.slot {
        slot.busy_since_ms.store(0, Ordering::Relaxed);
    }
    r
}

impl Dispatch for Inline {
    fn room(&self) -> usize {
        usize::MAX
    }

    fn submit(&mut self, conn: ConnId, mut req: Request, env: &Env<'_>) -> Option<Answer> {
        if let Some(slot) = env.slot {
            // "METHOD /path" for a WORKER TIMEOUT line, assembled on the
            // stack: this runs for every request.
            let (m, p) = (req.method().as_bytes(), req.path().as_bytes());
            let mut what = [0u8; 64];
            let ml = m.len().min(63);
            what[..ml].copy_from_slice(&m[..ml]);
            what[ml] = b' ';
            let pl = p.len().min(63 - ml);
            what[ml + 1..ml + 1 + pl].copy_from_slice(&p[..pl]);
            slot.set_what(&what[..ml + 1 + pl]);
            slot.busy_since_ms
                .store(env.now_ms.max(1), Ordering::Relaxed);
        }
        let outcome = call(&mut *self.app, &mut req, Some(env.hooks));
        if let Some(slot) = env.slot {
            slot.busy_since_ms.store(0, Ordering::Relaxed);
        }
        Some(Answer { conn, req, outcome })
    }

    fn websockets(&self) -> bool {
        self.app.websockets()
    }

    fn ws_open(
        &mut self,
        conn: ConnId,
        req: &mut Request,
        hs: &crate::ws::Handshake,
        env: &Env<'_>,
        out: &mut Vec<WsAction>,
    ) {
        let app = &mut self.app;
        match busy(env, || {
            catch_unwind(AssertUnwindSafe(|| app.websocket(req, hs)))
        }) {
            Ok(WsOpen::Accept {
                subprotocol,
                headers,
                session,
            }) => {
                self.sessions.insert(conn, session);
                out.push(WsAction::Accept {
                    subprotocol,
                    headers,
                });
            }
            Ok(WsOpen::Deny(resp)) => out.push(WsAction::Deny(resp)),
            Err(panic) => {
                log::error!(
                    "Error handling WebSocket handshake {}: app panicked: {}",
                    req.target(),
                    panic_text(&*panic)
                );
                out.push(WsAction::Deny(Response::text(
                    500,
                    "Internal Server Error\n",
                )));
            }
        }
    }

    fn ws_message(
        &mut self,
        conn: ConnId,
        msg: crate::ws::Message,
        env: &Env<'_>,
        out: &mut Vec<WsAction>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let res = busy(env, || {
            catch_unwind(AssertUnwindSafe(|| session.on_message(msg, out)))
        });
        if let Err(panic) = res {
            log::error!(
                "Error handling a WebSocket message: app panicked: {}",
                panic_text(&*panic)
            );
            out.push(WsAction::Close {
                code: crate::ws::code::INTERNAL_ERROR,
                reason: String::new(),
            });
        }
    }

    fn ws_closed(&mut self, conn: ConnId, code: u16, env: &Env<'_>) {
        if let Some(mut session) = self.sessions.remove(&conn) {
            let res = busy(env, || {
                catch_unwind(AssertUnwindSafe(|| session.on_close(code)))
            });
            if let Err(panic) = res {
                log::error!(
                    "Error closing a WebSocket: app panicked: {}",
                    panic_text(&*panic)
                );
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind
    // (queues, flags): carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[allow(clippy::large_enum_variant)]
enum Job {
    Call {
        conn: ConnId,
        req: Request,
    },
    /// Something whose drop runs app code (a WSGI iterable's `close()` after
    /// a file body was sent): run on an app thread, never on the loop.
    Drop(#[allow(dead_code)] Box<dyn Any + Send>),
}

/// A response as it crosses from an app thread to the loop.
enum SendBody {
    Bytes(Vec<u8>),
    File(FileBody),
    Stream(Arc<StreamShared>),
}

/// A response as it crosses to the loop: status, headers, body.
type SendResponse = (u16, Vec<(String, Vec<u8>)>, SendBody);

#[allow(clippy::large_enum_variant)]
enum Done {
    Answer {
        conn: ConnId,
        req: Request,
        /// Err: the app panicked, with this message.
        outcome: Result<SendResponse, String>,
        /// Answered on the worker's own thread ([`Lane`]), which is not
        /// one of the pool's: no thread comes free.
        lane: bool,
    },
    Wake(ConnId),
    /// A thread finished a streamed body and is idle again.
    Released,
}

/// One app thread as the loop sees it.
struct ThreadInfo {
    /// When the current app call (or streamed-body pull) began, ms; 0 = idle.
    busy_since_ms: AtomicU64,
    /// `pthread_self()`, for the timeout report's stack.
    ident: AtomicU64,
    /// The request being served, for the timeout report.
    /// (`None` when idle; the name's buffer is kept for the next request.)
    job: Mutex<(Option<ConnId>, String)>,
}

/// Jobs not yet taken by a thread, and how many threads sleep waiting.
struct Queue {
    jobs: VecDeque<(std::time::Instant, Job)>,
    sleeping: usize,
}

struct Shared {
    jobs: Mutex<Queue>,
    job_ready: Condvar,
    /// Running average of the voluntary context switches one app call makes
    /// (x 16; racy updates: an estimate is all the wake policy needs).
    /// `u64::MAX` before the first call.
    waits_avg: AtomicU64,
    /// When a thread last took a job (monotonic µs).
    last_pickup_us: AtomicU64,
    done: Mutex<Vec<Done>>,
    waker: mio::Waker,
    /// The pool's threads, then the worker's own thread (the [`Lane`]).
    threads: Vec<ThreadInfo>,
    /// Does the worker's own thread take requests ([`LaneLearn`])?
    lane: Mutex<LaneLearn>,
    /// `lane`'s `takes_all()`, read per request without the lock.
    lane_takes_all: AtomicBool,
}

impl Shared {
    /// A call on the worker's thread ([`LaneLearn::record`]).
    fn record_lane(&self, us: u64, clean: bool, taken_over: bool, ran: bool) {
        let mut l = lock(&self.lane);
        l.record(us, clean, taken_over, ran);
        self.lane_takes_all.store(l.takes_all(), Ordering::Relaxed);
    }

    /// An app thread took a request while the lane could have.
    fn lane_skipped(&self) {
        // Counted only while the lane's calls run long (`LaneLearn::skipped`).
        if !self.lane_takes_all.load(Ordering::Relaxed) {
            let mut l = lock(&self.lane);
            l.skipped();
            self.lane_takes_all.store(l.takes_all(), Ordering::Relaxed);
        }
    }

    fn send(&self, d: Done) {
        let first = {
            let mut done = lock(&self.done);
            done.push(d);
            done.len() == 1
        };
        // The loop takes the whole list per wake-up: wake it only for the
        // first entry.
        if first && let Err(e) = self.waker.wake() {
            log::error!("waking the event loop failed: {e}");
        }
    }

    /// Queue a job, and wake a sleeping thread for it unless the threads
    /// already awake will get to it soon (see [`Shared::blocking_app`]).
    fn push_job(&self, job: Job) {
        let wake = {
            let mut q = lock(&self.jobs);
            q.jobs.push_back((std::time::Instant::now(), job));
            let awake = self.threads.len() - q.sleeping;
            q.sleeping > 0 && (awake == 0 || self.blocking_app())
        };
        if wake {
            self.job_ready.notify_one();
        }
    }

    /// Do app calls mostly wait (on a database, a sleep) rather than
    /// compute? Then each queued request gets a thread of its own at once
    /// (with a lazy wake, a Django view waiting 0.2 ms on PostgreSQL left
    /// the CPU idle: 20% fewer requests/s than granian, at less CPU).
    /// A call that waits gives up the CPU of its own accord (a voluntary
    /// context switch, counted by the kernel per thread); one that is only
    /// preempted on a busy machine does not, so time off the CPU, which
    /// includes waiting for a core, would misjudge a computing app.
    /// A computing app's requests are better taken one after another by the
    /// thread already running: waking a thread per request costs two
    /// context switches each (a third of the requests/s of a Rust hello on
    /// two cores) and, in Python, a thread fighting over the GIL, for no
    /// parallelism. Should one of its calls take long after all, the loop
    /// wakes another thread after `NUDGE` ([`Dispatch::tick`]).
    fn blocking_app(&self) -> bool {
        // At least one wait in every other call (and, before the first
        // call, assume so).
        self.waits_avg.load(Ordering::Relaxed) >= 8
    }

    fn record(&self, waits: u64) {
        let old = self.waits_avg.load(Ordering::Relaxed);
        let x = waits.min(1 << 20) * 16;
        let new = if old == u64::MAX {
            x
        } else {
            (old * 7 + x) / 8
        };
        self.waits_avg.store(new, Ordering::Relaxed);
    }
}

/// Calls on the worker's own thread that average longer than this go to
/// the app threads instead: each would otherwise leave the loop to the
/// stand-in ([`crate::handoff`]) for most of its length.
const LANE_MAX_US: u64 = 1000;
/// While they do, after this many requests on the app threads the worker's
/// thread tries again (a trial), so that the choice follows the app.
const LANE_RETRY: u64 = 128;
/// Clean calls a trial measures.
const LANE_TRIAL: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneMode {
    /// Calls are short: the worker's thread takes every request.
    Short,
    /// Calls run long: the app threads take the requests, the worker's
    /// thread one when they are all busy.
    Long,
    /// The worker's thread takes every request again, to measure them.
    Trial,
}

/// How the worker's own thread learns whether the app's calls are short.
/// The measure is a call's wall time on that thread, counted only when it
/// is clean: no app thread was in the app when it began (with Python, a
/// call on one thread among busy ones waits for the GIL, so a short call
/// would look long for as long as the threads are busy, and the choice
/// would never come back). A call the stand-in had to take the loop from
/// counts, clean or not: it ran past `handoff::NUDGE` either way. One such
/// call does not make the app's calls long (a call preempted for a few ms
/// on a busy machine is not a call that waits); two in a row do, and so
/// does one in a trial.
#[derive(Debug, Clone)]
struct LaneLearn {
    mode: LaneMode,
    /// Running average of clean calls, µs.
    avg_us: u64,
    /// Requests the app threads took since the worker's thread went long.
    skipped: u64,
    /// A trial's clean calls and their total, µs.
    trial: (u64, u64),
}

impl Default for LaneLearn {
    fn default() -> Self {
        LaneLearn {
            mode: LaneMode::Short,
            avg_us: 0,
            skipped: 0,
            trial: (0, 0),
        }
    }
}

impl LaneLearn {
    fn takes_all(&self) -> bool {
        self.mode != LaneMode::Long
    }

    /// An app thread took a request.
    fn skipped(&mut self) {
        if self.mode == LaneMode::Long {
            self.skipped += 1;
            if self.skipped >= LANE_RETRY {
                self.mode = LaneMode::Trial;
                self.trial = (0, 0);
            }
        }
    }

    /// A call on the worker's thread took `us`. `taken_over`: the stand-in
    /// took the loop during it. `ran`: the stand-in saw it past
    /// `handoff::NUDGE` but running (computing, or waiting for a core)
    /// and left it: long on a busy machine, not a call that waits.
    fn record(&mut self, us: u64, clean: bool, taken_over: bool, ran: bool) {
        if !taken_over && (!clean || ran) {
            return;
        }
        match self.mode {
            LaneMode::Short | LaneMode::Long => {
                self.avg_us = (self.avg_us * 7 + us.min(1 << 40)) / 8;
                if self.avg_us > LANE_MAX_US {
                    self.go_long();
                }
            }
            // A trial ends at the first call that ran long.
            LaneMode::Trial if taken_over => self.go_long(),
            LaneMode::Trial => {
                self.trial = (self.trial.0 + 1, self.trial.1 + us.min(1 << 40));
                if self.trial.0 >= LANE_TRIAL {
                    self.avg_us = self.trial.1 / self.trial.0;
                    if self.avg_us > LANE_MAX_US {
                        self.go_long();
                    } else {
                        self.mode = LaneMode::Short;
                    }
                }
            }
        }
    }

    fn go_long(&mut self) {
        self.mode = LaneMode::Long;
        self.skipped = 0;
    }
}

/// What the worker's own thread can take in this turn.
enum LaneRoom {
    /// Its calls are short: every request (it runs them one after another).
    Any,
    /// Its calls run long: one request, when the app threads are all busy.
    One,
    /// It is in the app, or has its one request already.
    None,
}

/// The app on `--threads` threads.
pub struct Pool {
    shared: Arc<Shared>,
    size: usize,
    /// Threads not serving a request or a stream (the loop's own count).
    /// Below zero for a moment when the lane passes requests on while
    /// every thread is busy (they queue until one is free).
    free: isize,
    /// Requests taken for the worker's own thread in this turn
    /// ([`Pool::next_lane_job`]).
    lane_jobs: VecDeque<(ConnId, Request)>,
    /// The worker's thread drives the loop and takes requests itself.
    lane_open: bool,
    /// The worker's thread is in an app call while the stand-in drives the
    /// loop (counted as busy).
    lane_busy: bool,
    /// The lane left answers without waking the loop.
    lane_answers: bool,
    /// Per thread, the busy stamp already reported overdue.
    reported: Vec<u64>,
    reporter: Option<StackReporter>,
}

impl Pool {
    /// Start one thread per app; answers wake the loop through `waker`.
    pub fn new(apps: Vec<Box<dyn App + Send>>, waker: mio::Waker) -> io::Result<Pool> {
        let reporter = apps.first().and_then(|a| a.stack_reporter());
        let size = apps.len();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Queue {
                jobs: VecDeque::new(),
                sleeping: 0,
            }),
            job_ready: Condvar::new(),
            waits_avg: AtomicU64::new(u64::MAX),
            last_pickup_us: AtomicU64::new(0),
            done: Mutex::new(Vec::new()),
            waker,
            lane: Mutex::new(LaneLearn::default()),
            lane_takes_all: AtomicBool::new(LaneLearn::default().takes_all()),
            threads: (0..=size)
                .map(|_| ThreadInfo {
                    busy_since_ms: AtomicU64::new(0),
                    ident: AtomicU64::new(0),
                    job: Mutex::new((None, String::new())),
                })
                .collect(),
        });
        for (i, app) in apps.into_iter().enumerate() {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("app-{i}"))
                .spawn(move || thread_main(i, shared, app))?;
        }
        Ok(Pool {
            shared,
            size,
            free: size as isize,
            lane_jobs: VecDeque::new(),
            lane_open: false,
            lane_busy: false,
            lane_answers: false,
            reported: vec![0; size + 1],
            reporter,
        })
    }

    /// Let the worker's own thread run calls too ([`Lane`]), with `app`:
    /// it counts as one of `--threads`, so a pool for N threads is made
    /// with N - 1 apps. [`crate::handoff::run`] drives it.
    pub fn lane(&mut self, app: Box<dyn App + Send>) -> Lane {
        self.lane_open = true;
        if self.reporter.is_none() {
            self.reporter = app.stack_reporter();
        }
        Lane {
            shared: self.shared.clone(),
            app,
            me: self.size,
        }
    }

    /// The next request taken for the worker's thread.
    pub(crate) fn next_lane_job(&mut self) -> Option<(ConnId, Request)> {
        self.lane_jobs.pop_front()
    }

    /// The stand-in took the loop (a call on the worker's thread ran
    /// long): the requests still waiting for the worker's thread go to the
    /// app threads instead (they queue if every thread is busy).
    pub(crate) fn pass_on_lane_jobs(&mut self) {
        while let Some((conn, req)) = self.lane_jobs.pop_front() {
            self.free -= 1;
            self.shared.push_job(Job::Call { conn, req });
        }
    }

    /// The worker's thread drives the loop (`true`) or the stand-in does
    /// while the worker's thread is in the app (`false`).
    pub(crate) fn set_driver(&mut self, worker_thread: bool) {
        self.lane_open = worker_thread;
        self.lane_busy = !worker_thread;
    }

    fn lane_room(&self) -> LaneRoom {
        if !self.lane_open {
            LaneRoom::None
        } else if self.shared.lane_takes_all.load(Ordering::Relaxed) {
            LaneRoom::Any
        } else if self.lane_jobs.is_empty() {
            LaneRoom::One
        } else {
            LaneRoom::None
        }
    }

    /// No calls on the worker's thread (it has no stand-in).
    pub(crate) fn close_lane(&mut self) {
        self.lane_open = false;
        self.lane_busy = false;
    }

    /// The lane left answers in `done` without waking the loop: the next
    /// turn takes them without waiting.
    pub(crate) fn lane_answered(&mut self) {
        self.lane_answers = true;
    }
}

impl Dispatch for Pool {
    fn room(&self) -> usize {
        let threads = self.free.max(0) as usize;
        match self.lane_room() {
            LaneRoom::Any => usize::MAX - 1,
            LaneRoom::One => threads + 1,
            LaneRoom::None => threads,
        }
    }

    fn submit(&mut self, conn: ConnId, req: Request, env: &Env<'_>) -> Option<Answer> {
        // Hooks are the worker's (not Send): pre_request runs here, just
        // before the hand-over; post_request when the answer is back.
        let _ = catch_unwind(AssertUnwindSafe(|| env.hooks.pre_request(&req)));
        let lane = match self.lane_room() {
            LaneRoom::Any => true,
            // Long calls: the worker's thread takes one when every app
            // thread is busy, so that `--threads` calls run at once.
            LaneRoom::One => self.free <= 0,
            LaneRoom::None => false,
        };
        if lane {
            self.lane_jobs.push_back((conn, req));
            return None;
        }
        self.free -= 1;
        if self.lane_open {
            self.shared.lane_skipped();
        }
        self.shared.push_job(Job::Call { conn, req });
        None
    }

    fn due(&self) -> bool {
        self.lane_answers
    }

    fn poll(&mut self, out: &mut Vec<Event>) {
        self.lane_answers = false;
        let done = std::mem::take(&mut *lock(&self.shared.done));
        for d in done {
            match d {
                Done::Answer {
                    conn,
                    req,
                    outcome,
                    lane,
                } => {
                    let freed = isize::from(!lane);
                    if let Err(_) | Ok((_, _, SendBody::Bytes(_) | SendBody::File(_))) = &outcome {
                        self.free += freed;
                    }
                    let outcome = match outcome {
                        Err(msg) => Outcome::Panic(msg),
                        Ok((status, headers, body)) => {
                            let body = match body {
                                SendBody::Bytes(b) => ResponseBody::Bytes(b),
                                SendBody::File(f) => ResponseBody::File(f),
                                // The thread stays with its stream until
                                // `Released`.
                                SendBody::Stream(s) => {
                                    ResponseBody::Stream(Box::new(ThreadStream { shared: s }))
                                }
                            };
                            Outcome::Response(Response {
                                status,
                                headers,
                                body,
                            })
                        }
                    };
                    out.push(Event::Answer(Answer { conn, req, outcome }));
                }
                Done::Wake(c) => out.push(Event::Wake(c)),
                Done::Released => self.free += 1,
            }
        }
        debug_assert!(self.free <= self.size as isize);
    }

    fn busy(&self) -> usize {
        // Requests queued beyond the threads (passed on by the lane) are
        // not threads.
        (self.size as isize - self.free).clamp(0, self.size as isize) as usize
            + usize::from(self.lane_busy)
    }

    fn tick(&mut self) -> Option<std::time::Duration> {
        if self.lane_answers {
            return Some(std::time::Duration::ZERO);
        }
        if self.free == self.size as isize {
            return None;
        }
        let q = lock(&self.shared.jobs);
        let (queued_at, _) = q.jobs.front()?;
        let waited = queued_at.elapsed();
        if waited < NUDGE {
            return Some(NUDGE - waited);
        }
        // Another thread only if the awake ones stopped taking jobs (a long
        // call, a stream): a computing app's thread working through the
        // queue is left to it, as a second thread would only contend for
        // the GIL.
        let since_pickup = crate::clock::monotonic_usec()
            .saturating_sub(self.shared.last_pickup_us.load(Ordering::Relaxed));
        let wake = since_pickup >= NUDGE.as_micros() as u64 && q.sleeping > 0;
        drop(q);
        if wake {
            // One per tick; a thread woken here and not yet running may be
            // woken again by the next one: harmless.
            self.shared.job_ready.notify_one();
        }
        Some(NUDGE)
    }

    fn overdue(&mut self, now_ms: u64, limit_ms: u64, out: &mut Vec<Overdue>) {
        for (i, t) in self.shared.threads.iter().enumerate() {
            let since = t.busy_since_ms.load(Ordering::Acquire);
            if since == 0 || self.reported[i] == since || now_ms.saturating_sub(since) <= limit_ms {
                continue;
            }
            self.reported[i] = since;
            let job = lock(&t.job);
            if let (Some(conn), what) = (job.0, job.1.clone()) {
                drop(job);
                out.push(Overdue {
                    conn,
                    what,
                    secs: (now_ms - since) / 1000,
                    thread: t.ident.load(Ordering::Relaxed),
                    replace: true,
                });
            }
        }
    }

    fn stack_reporter(&self) -> Option<StackReporter> {
        self.reporter.clone()
    }
}

fn thread_main(me: usize, shared: Arc<Shared>, app: Box<dyn App + Send>) {
    match app.thread_scope() {
        Some(scope) => scope(Box::new(move || serve(me, &shared, app))),
        None => serve(me, &shared, app),
    }
}

fn serve(me: usize, shared: &Arc<Shared>, mut app: Box<dyn App + Send>) {
    let info = &shared.threads[me];
    info.ident
        .store(nix::sys::pthread::pthread_self() as u64, Ordering::Relaxed);
    loop {
        let job = {
            let mut q = lock(&shared.jobs);
            loop {
                if let Some((_, j)) = q.jobs.pop_front() {
                    shared
                        .last_pickup_us
                        .store(crate::clock::monotonic_usec(), Ordering::Relaxed);
                    break j;
                }
                q.sleeping += 1;
                q = shared.job_ready.wait(q).unwrap_or_else(|e| e.into_inner());
                q.sleeping -= 1;
            }
        };
        let (conn, mut req) = match job {
            Job::Drop(g) => {
                drop(g);
                continue;
            }
            Job::Call { conn, req } => (conn, req),
        };
        let waits0 = voluntary_switches();
        let outcome = in_app(
            info,
            &mut *app,
            conn,
            &mut req,
            crate::clock::monotonic_ms(),
        );
        info.busy_since_ms.store(0, Ordering::Release);
        shared.record(voluntary_switches().saturating_sub(waits0));
        let (outcome, stream) = crossing(outcome, shared);
        shared.send(Done::Answer {
            conn,
            req,
            outcome,
            lane: false,
        });
        if let Some((reader, s)) = stream {
            pump(reader, &s, conn, info, shared);
            shared.send(Done::Released);
        }
        lock(&info.job).0 = None;
    }
}

/// Call the app for `req` on an app thread (or the worker's, as the lane),
/// marked in `info` as in the app since `now_ms` for the `--timeout` watch
/// and its report. The caller clears the marks when the body is done.
fn in_app(
    info: &ThreadInfo,
    app: &mut dyn App,
    conn: ConnId,
    req: &mut Request,
    now_ms: u64,
) -> Outcome {
    {
        // "METHOD /path", as the WORKER TIMEOUT line names the request,
        // written into the buffer the previous request left.
        let mut job = lock(&info.job);
        job.0 = Some(conn);
        job.1.clear();
        job.1.push_str(req.method());
        job.1.push(' ');
        job.1.push_str(req.path());
    }
    info.busy_since_ms.store(now_ms.max(1), Ordering::Release);
    // Error-log lines written while the app runs name the request: the
    // connection made its id current on the loop's thread (reqmeta::enter),
    // this thread needs it made current on its own.
    let tagged = crate::reqmeta::header().is_some();
    if tagged {
        crate::reqmeta::set_current(req.request_id());
    }
    let outcome = call(app, req, None);
    if tagged {
        crate::reqmeta::leave();
    }
    outcome
}

/// An app's outcome as it crosses to the loop, and the stream to pull if the
/// body is one (by the thread that made it).
#[allow(clippy::type_complexity)]
fn crossing(
    outcome: Outcome,
    shared: &Arc<Shared>,
) -> (
    Result<SendResponse, String>,
    Option<(Box<dyn Read>, Arc<StreamShared>)>,
) {
    let mut stream = None;
    let outcome = match outcome {
        Outcome::Panic(msg) => Err(msg),
        // `call` never makes it (an ASGI outcome).
        Outcome::Abort => Err("the app aborted the response".into()),
        Outcome::Response(resp) => {
            let body = match resp.body {
                ResponseBody::Bytes(b) => SendBody::Bytes(b),
                ResponseBody::File(mut f) => {
                    if let Some(g) = f._guard.take() {
                        f._guard = Some(Box::new(DropOnPool {
                            inner: Some(g),
                            shared: shared.clone(),
                        }));
                    }
                    SendBody::File(f)
                }
                ResponseBody::Stream(reader) => {
                    let s = Arc::new(StreamShared::default());
                    stream = Some((reader, s.clone()));
                    SendBody::Stream(s)
                }
            };
            Ok((resp.status, resp.headers, body))
        }
    };
    (outcome, stream)
}

/// The worker's own thread as one more app thread, for calls that are
/// short ([`crate::handoff`] has the whole story). The loop takes such
/// requests for it during a turn ([`Pool::next_lane_job`]); after the turn the
/// worker's thread lends the loop to the stand-in and runs them, as a `sync`
/// worker would, with no hand-over to another thread and back. Answers are
/// left in `done` for the loop's next turn.
pub struct Lane {
    shared: Arc<Shared>,
    app: Box<dyn App + Send>,
    /// Its entry in `Shared::threads`.
    me: usize,
}

impl Lane {
    /// Run one request. `seen` says what the stand-in saw of the call:
    /// whether it has the loop (the call ran long and waited; the answer
    /// then wakes it), and whether it found the call running past
    /// `handoff::NUDGE` (see [`LaneLearn::record`]). True if the answer
    /// was left without waking the loop (the worker's thread takes it on
    /// its next turn).
    pub(crate) fn call(
        &mut self,
        (conn, mut req): (ConnId, Request),
        seen: &dyn Fn() -> (bool, bool),
    ) -> bool {
        let shared = &self.shared;
        let info = &shared.threads[self.me];
        if info.ident.load(Ordering::Relaxed) == 0 {
            info.ident
                .store(nix::sys::pthread::pthread_self() as u64, Ordering::Relaxed);
        }
        let clean = shared.threads[..self.me]
            .iter()
            .all(|t| t.busy_since_ms.load(Ordering::Relaxed) == 0);
        let t0 = crate::clock::monotonic_usec();
        let outcome = in_app(info, &mut *self.app, conn, &mut req, t0 / 1000);
        let (outcome, stream) = crossing(outcome, shared);
        let answer = Done::Answer {
            conn,
            req,
            outcome,
            lane: true,
        };
        let quiet = stream.is_none() && !seen().0;
        if quiet {
            lock(&shared.done).push(answer);
        } else {
            shared.send(answer);
        }
        if let Some((reader, s)) = stream {
            // Pulled here, as an app thread would: the stand-in drives the
            // loop meanwhile.
            pump(reader, &s, conn, info, shared);
        }
        let us = crate::clock::monotonic_usec().saturating_sub(t0);
        let (taken, ran) = seen();
        shared.record_lane(us, clean, taken, ran);
        info.busy_since_ms.store(0, Ordering::Release);
        lock(&info.job).0 = None;
        quiet
    }

    /// Make the loop's `epoll_wait` return (the worker's thread wants the
    /// loop back from the stand-in).
    pub(crate) fn wake_loop(&self) {
        if let Err(e) = self.shared.waker.wake() {
            log::error!("waking the event loop failed: {e}");
        }
    }
}

/// Times this thread gave up the CPU to wait (`ru_nvcsw`).
fn voluntary_switches() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD)
        .map(|u| u.voluntary_context_switches() as u64)
        .unwrap_or(0)
}

/// How long a queued request may wait for the awake threads before the
/// loop wakes another one for it (see [`Shared::blocking_app`]).
const NUDGE: std::time::Duration = std::time::Duration::from_millis(1);

/// Hands its contents to an app thread to drop.
struct DropOnPool {
    inner: Option<Box<dyn Any + Send>>,
    shared: Arc<Shared>,
}

impl Drop for DropOnPool {
    fn drop(&mut self) {
        if let Some(g) = self.inner.take() {
            self.shared.push_job(Job::Drop(g));
        }
    }
}

/// A streamed body between its app thread and the loop: at most one piece
/// waits here, so the app produces no faster than the client reads.
#[derive(Default)]
struct StreamShared {
    state: Mutex<StreamState>,
    changed: Condvar,
}

#[derive(Default)]
struct StreamState {
    data: Vec<u8>,
    pos: usize,
    eof: bool,
    error: Option<io::Error>,
    /// The loop found nothing to read and waits for a `Wake`.
    want: bool,
    /// The connection is gone: stop pulling.
    cancelled: bool,
}

/// Pull `reader` piece by piece as the loop takes the pieces.
fn pump(
    mut reader: Box<dyn Read>,
    s: &StreamShared,
    conn: ConnId,
    info: &ThreadInfo,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        {
            let mut st = lock(&s.state);
            while st.pos < st.data.len() && !st.cancelled {
                st = s.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.cancelled {
                break;
            }
        }
        info.busy_since_ms
            .store(crate::clock::monotonic_ms().max(1), Ordering::Release);
        let res = catch_unwind(AssertUnwindSafe(|| reader.read(&mut buf)));
        info.busy_since_ms.store(0, Ordering::Release);
        let mut st = lock(&s.state);
        let end = match res {
            Ok(Ok(0)) => {
                st.eof = true;
                true
            }
            Ok(Ok(n)) => {
                st.data.clear();
                st.pos = 0;
                st.data.extend_from_slice(&buf[..n]);
                false
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => {
                st.error = Some(e);
                true
            }
            Err(_) => {
                st.error = Some(io::Error::other("the streamed body panicked"));
                true
            }
        };
        let wake = std::mem::take(&mut st.want);
        drop(st);
        if wake {
            shared.send(Done::Wake(conn));
        }
        if end {
            break;
        }
    }
    // Dropped here, on the app's thread: a WSGI iterable's close() runs here.
    drop(reader);
}

/// The loop's end of a streamed body: never blocks (WouldBlock until the
/// app thread has the next piece; the `Wake` event says when).
struct ThreadStream {
    shared: Arc<StreamShared>,
}

impl Read for ThreadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = lock(&self.shared.state);
        if st.pos < st.data.len() {
            let n = buf.len().min(st.data.len() - st.pos);
            buf[..n].copy_from_slice(&st.data[st.pos..st.pos + n]);
            st.pos += n;
            if st.pos == st.data.len() {
                self.shared.changed.notify_one();
            }
            return Ok(n);
        }
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if st.eof {
            return Ok(0);
        }
        st.want = true;
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Drop for ThreadStream {
    fn drop(&mut self) {
        lock(&self.shared.state).cancelled = true;
        self.shared.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Body, Peer};
    use crate::hooks::NoHooks;
    use crate::http::parse_head_reusing;

    fn request(target: &str) -> Request {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let limits = crate::http::Limits {
            request_line: 8190,
            fields: 100,
            field_size: 8190,
            body: 1 << 20,
            allow_connect: false,
        };
        let (head, _) = parse_head_reusing(raw.as_bytes(), &limits, &mut None)
            .unwrap()
            .unwrap();
        Request::new(head, Peer::Unix, Body::empty())
    }

    fn pool(threads: usize, app: fn(&mut Request) -> Response) -> (Pool, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let apps = (0..threads)
            .map(|_| Box::new(app) as Box<dyn App + Send>)
            .collect();
        (Pool::new(apps, waker).unwrap(), poll)
    }

    /// Wait for the pool's events the way the loop does: on the waker.
    fn wait_events(pool: &mut Pool, poll: &mut mio::Poll, want: usize) -> Vec<Event> {
        let mut events = mio::Events::with_capacity(8);
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while out.len() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "no answer from the pool"
            );
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                .unwrap();
            pool.poll(&mut out);
        }
        out
    }

    fn env() -> Env<'static> {
        Env {
            hooks: &NoHooks,
            slot: None,
            now_ms: 1,
        }
    }

    #[test]
    fn a_pool_has_room_for_one_request_per_idle_thread() {
        let (mut pool, mut poll) = pool(2, |r| Response::ok("text/plain", r.path().to_string()));
        assert_eq!(pool.room(), 2);
        let id = |i| ConnId {
            index: i,
            serial: 7,
        };
        assert!(pool.submit(id(1), request("/a"), &env()).is_none());
        assert!(pool.submit(id(2), request("/b"), &env()).is_none());
        assert_eq!((pool.room(), pool.busy()), (0, 2));
        let events = wait_events(&mut pool, &mut poll, 2);
        let mut seen: Vec<(usize, Vec<u8>)> = events
            .into_iter()
            .map(|e| match e {
                Event::Answer(Answer {
                    conn,
                    outcome: Outcome::Response(r),
                    ..
                }) => match r.body {
                    ResponseBody::Bytes(b) => (conn.index, b),
                    _ => panic!("not bytes"),
                },
                _ => panic!("not an answer"),
            })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![(1, b"/a".to_vec()), (2, b"/b".to_vec())]);
        assert_eq!(pool.room(), 2);
    }

    #[test]
    fn a_streamed_body_is_pulled_on_the_thread_one_piece_ahead() {
        struct Pieces(u8);
        impl Read for Pieces {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 3 {
                    return Ok(0);
                }
                self.0 += 1;
                buf[0] = b'0' + self.0;
                Ok(1)
            }
        }
        let (mut pool, mut poll) = pool(1, |_| Response::new(200).stream(Pieces(0)));
        let conn = ConnId {
            index: 0,
            serial: 1,
        };
        pool.submit(conn, request("/"), &env());
        let mut events = wait_events(&mut pool, &mut poll, 1);
        let Some(Event::Answer(Answer {
            outcome: Outcome::Response(resp),
            ..
        })) = events.pop()
        else {
            panic!("no answer")
        };
        let ResponseBody::Stream(mut reader) = resp.body else {
            panic!("not a stream")
        };
        // The thread stays with the stream: no room until it ends.
        assert_eq!(pool.room(), 0);
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let woke = wait_events(&mut pool, &mut poll, 1);
                    assert!(matches!(woke[0], Event::Wake(c) if c == conn));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"123");
        drop(reader);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while pool.room() == 0 {
            assert!(std::time::Instant::now() < deadline, "thread not released");
            let mut events = mio::Events::with_capacity(8);
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                .unwrap();
            pool.poll(&mut Vec::new());
        }
    }

    #[test]
    fn an_overdue_request_is_reported_once_with_its_thread() {
        let (mut pool, _poll) = pool(1, |_| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Response::new(204)
        });
        let conn = ConnId {
            index: 3,
            serial: 9,
        };
        pool.submit(conn, request("/slow"), &env());
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while out.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never overdue");
            // A limit of 0 ms: overdue as soon as the thread is in the app.
            pool.overdue(crate::clock::monotonic_ms() + 1, 0, &mut out);
        }
        assert_eq!(out[0].conn, conn);
        assert_eq!(out[0].what, "GET /slow");
        assert_ne!(out[0].thread, 0);
        let mut again = Vec::new();
        pool.overdue(crate::clock::monotonic_ms() + 1, 0, &mut again);
        assert!(again.is_empty(), "reported twice: {again:?}");
    }

    #[test]
    fn the_lane_takes_short_calls_and_leaves_long_ones_to_the_threads() {
        let mut l = LaneLearn::default();
        assert!(l.takes_all(), "before any call: try the worker's thread");
        for _ in 0..50 {
            l.record(300, true, false, false);
        }
        assert!(l.takes_all(), "0.3 ms calls stay on the worker's thread");
        // A call preempted on a busy machine: the stand-in took the loop.
        l.record(4_000, true, true, false);
        assert!(l.takes_all(), "one slow call is not a slow app");
        l.record(20_000, true, true, false);
        assert!(!l.takes_all(), "two are");
        // Calls the stand-in found running, not waiting, say nothing
        // either (preempted on a busy machine).
        let mut busy = LaneLearn::default();
        for _ in 0..50 {
            busy.record(5_000, true, false, true);
        }
        assert!(busy.takes_all());
        // Calls measured while app threads were busy (GIL waits) say nothing.
        for _ in 0..50 {
            l.record(50, false, false, false);
        }
        assert!(!l.takes_all());
        // After LANE_RETRY requests on the threads, a trial.
        for _ in 0..LANE_RETRY {
            l.skipped();
        }
        assert_eq!(l.mode, LaneMode::Trial);
        assert!(l.takes_all());
        for _ in 0..LANE_TRIAL {
            l.record(200, true, false, false);
        }
        assert_eq!((l.mode, l.avg_us), (LaneMode::Short, 200));
    }

    #[test]
    fn a_trial_ends_at_the_first_long_call() {
        let mut l = LaneLearn::default();
        l.record(20_000, true, true, false);
        l.record(20_000, true, true, false);
        assert_eq!(l.mode, LaneMode::Long);
        for _ in 0..LANE_RETRY {
            l.skipped();
        }
        assert_eq!(l.mode, LaneMode::Trial);
        l.record(150, true, false, false);
        l.record(20_000, false, true, false);
        assert_eq!(l.mode, LaneMode::Long);
        // Requests the threads take while the lane is short do not count.
        let mut short = LaneLearn::default();
        for _ in 0..10 * LANE_RETRY {
            short.skipped();
        }
        assert_eq!(short.mode, LaneMode::Short);
    }

    #[test]
    fn a_panic_on_a_thread_gives_the_thread_back() {
        let (mut pool, mut poll) = pool(1, |_| panic!("boom"));
        let conn = ConnId {
            index: 0,
            serial: 1,
        };
        assert!(pool.submit(conn, request("/"), &env()).is_none());
        assert_eq!(pool.room(), 0);
        let events = wait_events(&mut pool, &mut poll, 1);
        assert!(matches!(
            &events[0],
            Event::Answer(Answer {
                outcome: Outcome::Panic(m),
                ..
            }) if m == "boom"
        ));
        assert_eq!(pool.room(), 1, "the slot came back");
    }

    #[test]
    fn an_app_that_waits_gets_a_thread_per_request_one_that_computes_does_not() {
        let (pool, _poll) = pool(1, |_| Response::new(204));
        let s = &pool.shared;
        assert!(s.blocking_app(), "before any call: assume it waits");
        for _ in 0..20 {
            s.record(0);
        }
        assert!(!s.blocking_app(), "no waits: computes");
        for _ in 0..20 {
            s.record(1);
        }
        assert!(s.blocking_app(), "a wait per call (a query)");
        // A wait now and then (a cache miss) does not make it a waiter.
        for _ in 0..40 {
            for w in [0, 0, 0, 1] {
                s.record(w);
            }
        }
        assert!(!s.blocking_app());
    }
}
