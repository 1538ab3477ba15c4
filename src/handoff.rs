//! `--threads`: the worker's own thread runs the app's short calls itself,
//! and a stand-in thread drives the event loop while one of them runs long.
//!
//! Handing every request to an app thread and its answer back costs two
//! context switches and, in Python, the GIL changing threads: for a Rust
//! `hello` that was 44% of the requests/s of `-k sync`, for a Django view
//! without I/O 28%, and for a Django view running one quick query on
//! PostgreSQL it made `--threads 8` half as fast as `--threads 1`. So the
//! worker's thread, which runs the loop, takes the requests whose calls are
//! short (the [`Lane`]: a running average of their wall time under
//! a millisecond) and calls the app itself after the turn that read them,
//! as a `sync` worker does. Calls that run longer go to the app threads as
//! before ([`Pool`]), and every 128th request tries the worker's thread
//! again, so the choice follows the app.
//!
//! What `--threads` promises still holds, because the worker's thread lends
//! the loop while it is in the app: the loop (the [`Parts`]) is put in the
//! baton before the calls and taken back after them. A call still running
//! after [`NUDGE`] finds the loop taken by the stand-in, a thread that
//! never runs the app: it drives the loop's turns (reads, writes, accepts,
//! 400s, timeouts, answers from the app threads, `--timeout` for the call
//! on the worker's thread too, which it answers 504) and gives requests to
//! the app threads, one fewer than `--threads` so that no more calls than
//! that run at once. When the worker's thread is back it asks for the loop
//! (a flag and the loop's waker) and the stand-in hands it over after its
//! turn. The loop therefore never waits on the app, or on the GIL, for
//! longer than [`NUDGE`], whichever thread the app blocks.
//!
//! A call past [`NUDGE`] is taken from only if the worker's thread is
//! waiting (its state in `/proc` is not "running"): one that is running,
//! computing or preempted on a busy machine, gets the loop no sooner from a
//! stand-in that would need a core too, and taking it costs a hand-over
//! both ways (on two cores shared with the load generator, Django views
//! preempted past a millisecond were taken from so often that `--threads 4`
//! lost 25% of `-k sync`'s requests/s). Past [`RUNNING_MAX`] it is taken
//! from anyway.
//!
//! The stand-in does not wait to be told of a lend (a wake-up per call is
//! what this saves): while the worker lends the loop often it looks now and
//! then, every [`NUDGE`] after it took the loop, less often (up to
//! [`LOOK_MAX`]) while it finds nothing to take, so a call that runs long
//! is caught within a few milliseconds; after [`IDLE`] without a lend it
//! sleeps until the next lend wakes it. Each look is a wake-up that
//! preempts whatever runs on that core: every millisecond, on a Django view
//! without I/O, they cost 5% of the requests/s.
//!
//! If the loop stops (a stop, the master gone) while the stand-in drives
//! it and the worker's thread is still in the app, the stand-in ends the
//! worker itself ([`Parts::finish`], then exit status 0), as the loop does
//! when an app thread is stuck: the worker's thread may never come back.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::dispatch::{Lane, Pool};
use crate::event_loop::{EventLoop, Exit};
use crate::hooks::Hooks;

/// How long a call on the worker's thread may keep the loop from its turns
/// before the stand-in takes them over.
pub const NUDGE: Duration = Duration::from_millis(1);
/// A call found running (computing, or preempted: not waiting) is left to
/// run this long before the stand-in takes the loop anyway.
const RUNNING_MAX: Duration = Duration::from_millis(20);
/// How often at most the stand-in looks while it finds nothing to take.
const LOOK_MAX: Duration = Duration::from_millis(4);
/// After this long without a lend, the stand-in sleeps until woken.
const IDLE: Duration = Duration::from_millis(100);

/// Ends the worker once its loop has stopped (hooks, access log).
pub type Finish = Box<dyn FnOnce(&mut EventLoop, Exit)>;

/// Everything a turn of the loop needs, held by one thread at a time.
pub struct Parts {
    pub ev: EventLoop,
    pub pool: Pool,
    pub hooks: Rc<dyn Hooks>,
    /// Ends the worker once the loop has stopped (the hooks, the access
    /// log), on whichever thread holds the loop then.
    pub finish: Finish,
}

impl Parts {
    /// The loop has stopped: end the worker on this thread.
    fn end(self: Box<Self>, exit: Exit) {
        let Parts { mut ev, finish, .. } = *self;
        finish(&mut ev, exit);
    }
}

mod lent {
    /// [`super::Parts`] on its way between the worker's thread and the
    /// stand-in.
    pub struct Lent(pub Box<super::Parts>);

    // SAFETY: `Parts` is not `Send` because of the `Rc`s inside it (the
    // hooks, the scoreboard in the event loop, the closures that hold
    // them) and its `dyn` objects made on the worker's thread. Moving it
    // to another thread is sound here because (1) exactly one thread holds
    // the box at any time, and it passes between threads only through the
    // baton's mutex, which orders everything the giving thread did before
    // everything the taking thread does; (2) no clone of those `Rc`s is
    // used by another thread while this one holds the box: the worker's
    // thread, when it has lent the box, only runs `Lane::run` (the app
    // through its own `Box<dyn App + Send>`), and the clones left in its
    // stack frames (`worker::run`'s arguments, the arbiter's fields) are
    // used again only after it has taken the box back, or never, if the
    // stand-in ends the process; (3) the objects inside are not tied to a
    // thread: the Python hooks attach to the interpreter on whatever
    // thread calls them, and the event loop's thread-local request id is
    // set and cleared within one turn.
    #[allow(unsafe_code)]
    unsafe impl Send for Lent {}
}
use lent::Lent;

#[derive(Default)]
struct State {
    /// The loop, while lent and not taken (or given back).
    lent: Option<Lent>,
    /// When the worker's thread lent it, and which lend that is; `None`
    /// once the stand-in took it (so that it is not taken again when given
    /// back) or the worker's thread took it back.
    since: Option<(Instant, u64)>,
    lends: u64,
    last_lend: Option<Instant>,
    /// Why the loop stopped while the stand-in drove it.
    exit: Option<Exit>,
    /// The stand-in sleeps without a timeout: a lend must wake it.
    parked: bool,
    quit: bool,
}

#[derive(Default)]
struct Baton {
    state: Mutex<State>,
    /// Wakes the stand-in.
    to_stand_in: Condvar,
    /// Wakes the worker's thread waiting for the loop back.
    to_worker: Condvar,
    /// The stand-in holds the loop.
    taken: AtomicBool,
    /// The worker's thread is back from the app and waits for the loop.
    want_back: AtomicBool,
    /// The stand-in found the current call running past [`NUDGE`].
    ran: AtomicBool,
    /// The worker's thread's id, for its state in `/proc`.
    tid: std::sync::atomic::AtomicI32,
}

impl Baton {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lend(&self, parts: Box<Parts>) {
        let mut st = self.lock();
        let now = Instant::now();
        st.lent = Some(Lent(parts));
        st.lends += 1;
        st.since = Some((now, st.lends));
        st.last_lend = Some(now);
        self.ran.store(false, Ordering::Relaxed);
        if st.parked {
            self.to_stand_in.notify_one();
        }
    }

    /// The loop back on the worker's thread, and why it stopped if the
    /// stand-in saw it stop.
    fn take_back(&self, lane: &Lane) -> (Box<Parts>, Option<Exit>) {
        let mut st = self.lock();
        loop {
            if let Some(Lent(parts)) = st.lent.take() {
                st.since = None;
                self.want_back.store(false, Ordering::Relaxed);
                return (parts, st.exit.take());
            }
            if !self.want_back.load(Ordering::Relaxed) {
                // The stand-in is in a turn or in epoll_wait: it gives the
                // loop back after the turn, which the waker cuts short.
                self.want_back.store(true, Ordering::Release);
                lane.wake_loop();
            }
            st = self.to_worker.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, parts: Box<Parts>, exit: Option<Exit>) {
        let mut st = self.lock();
        st.lent = Some(Lent(parts));
        st.exit = exit;
        self.taken.store(false, Ordering::Release);
        self.to_worker.notify_one();
    }
}

/// Serve until the loop stops, then end the worker ([`Parts::finish`]).
/// `lane` runs the short calls on this thread; the pool was made with it.
pub fn run(parts: Parts, mut lane: Lane) {
    let mut parts = Box::new(parts);
    let baton = std::sync::Arc::new(Baton::default());
    let stand_in = {
        let baton = baton.clone();
        std::thread::Builder::new()
            .name("loop-stand-in".into())
            .spawn(move || stand_in(&baton))
    };
    let stand_in = match stand_in {
        Ok(h) => h,
        Err(e) => {
            // Without a stand-in the worker's thread must never be in the
            // app: every call goes to the app threads, as before.
            log::warn!(
                "cannot start the loop's stand-in thread ({e}): every call goes to the app threads"
            );
            parts.pool.close_lane();
            let exit = parts.ev.run(&mut parts.pool, &*parts.hooks);
            parts.end(exit);
            return;
        }
    };
    baton
        .tid
        .store(nix::unistd::gettid().as_raw(), Ordering::Relaxed);
    parts.ev.begin();
    let exit = loop {
        let timeout = parts.ev.next_timeout(&mut parts.pool);
        if let Some(exit) = parts.ev.turn(&mut parts.pool, &*parts.hooks, timeout) {
            break exit;
        }
        // The requests this turn took for the worker's thread, one lend
        // each: while one runs long, the stand-in passes the rest on to
        // the app threads.
        let mut stopped = None;
        while let Some(job) = parts.pool.next_lane_job() {
            parts.pool.set_driver(false);
            baton.lend(parts);
            let quiet = lane.call(job, &|| {
                (
                    baton.taken.load(Ordering::Acquire),
                    baton.ran.load(Ordering::Relaxed),
                )
            });
            let (back, exit) = baton.take_back(&lane);
            parts = back;
            parts.pool.set_driver(true);
            if quiet {
                parts.pool.lane_answered();
            }
            if exit.is_some() {
                stopped = exit;
                break;
            }
        }
        if let Some(exit) = stopped {
            break exit;
        }
    };
    baton.lock().quit = true;
    baton.to_stand_in.notify_one();
    let _ = stand_in.join();
    parts.end(exit);
}

fn stand_in(baton: &Baton) {
    let mut st = baton.lock();
    let mut look = NUDGE;
    loop {
        if st.quit {
            return;
        }
        if let (true, Some(lend)) = (st.lent.is_some(), st.since) {
            let waited = lend.0.elapsed();
            if waited < NUDGE {
                st = wait(&baton.to_stand_in, st, look.max(NUDGE - waited));
                look = (look * 2).min(LOOK_MAX);
                continue;
            }
            if waited < RUNNING_MAX {
                drop(st);
                let running = thread_running(baton.tid.load(Ordering::Relaxed));
                st = baton.lock();
                // Still the same lend? It may have ended while we looked.
                if st.since != Some(lend) || st.lent.is_none() {
                    continue;
                }
                if running {
                    baton.ran.store(true, Ordering::Relaxed);
                    st = wait(&baton.to_stand_in, st, NUDGE);
                    continue;
                }
            }
            look = NUDGE;
            let Some(Lent(parts)) = st.lent.take() else {
                continue;
            };
            st.since = None;
            baton.taken.store(true, Ordering::Release);
            drop(st);
            let mut parts = parts;
            parts.pool.pass_on_lane_jobs();
            drive(parts, baton);
            st = baton.lock();
            continue;
        }
        if st.last_lend.is_some_and(|t| t.elapsed() < IDLE) {
            st = wait(&baton.to_stand_in, st, look);
            look = (look * 2).min(LOOK_MAX);
        } else {
            st.parked = true;
            st = baton
                .to_stand_in
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
            st.parked = false;
        }
    }
}

/// Is this thread of ours running or runnable (state `R` in `/proc`),
/// rather than waiting?
fn thread_running(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            // "tid (comm) S ...": the comm may hold spaces and parentheses.
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state == 'R')
        })
        .unwrap_or(false)
}

fn wait<'a>(cv: &Condvar, st: MutexGuard<'a, State>, d: Duration) -> MutexGuard<'a, State> {
    cv.wait_timeout(st, d)
        .map(|(g, _)| g)
        .unwrap_or_else(|e| e.into_inner().0)
}

/// The stand-in's turns, until the worker's thread wants the loop back or
/// the loop stops.
fn drive(mut parts: Box<Parts>, baton: &Baton) {
    loop {
        let timeout = parts.ev.next_timeout(&mut parts.pool);
        if let Some(exit) = parts.ev.turn(&mut parts.pool, &*parts.hooks, timeout) {
            let st = baton.lock();
            if !baton.want_back.load(Ordering::Acquire) {
                // The worker's thread is still in the app and may stay
                // there: end the worker here. (It finds the loop gone and
                // waits in `take_back` until the process exits.)
                drop(st);
                parts.end(exit);
                std::process::exit(crate::worker::WorkerExit::Clean.code());
            }
            drop(st);
            baton.give_back(parts, Some(exit));
            return;
        }
        if baton.want_back.load(Ordering::Acquire) {
            baton.give_back(parts, None);
            return;
        }
    }
}
