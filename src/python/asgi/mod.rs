//! ASGI 3 apps (HTTP and lifespan): the third dispatcher.
//!
//! # Loops
//! One asyncio loop per worker (uvloop with `--asgi-loop uvloop`, or
//! `auto` when it imports), in the worker's only thread, and it is the
//! outer loop: ferricorn's mio loop is one of its readers. asyncio watches
//! the epoll descriptor of the mio loop ([`EventLoop::poll_fd`]); when it
//! is readable, or when the deadline the last turn asked for comes
//! ([`EventLoop::next_timeout`]: timers, heartbeat, accept retries), it
//! runs one turn of the mio loop with a zero timeout ([`Pump`]). So
//! neither loop starves the other: asyncio sleeps in its own `epoll_wait`
//! (the GIL released, so threads of `sync_to_async` run), and every turn
//! is short. uvloop's `add_reader` takes an epoll descriptor too.
//!
//! # A request
//! The connection hands over a complete request (head and whole body, as
//! for WSGI): the body was read by the event loop, within the limits,
//! spooled to disk when big, so a slow upload never holds a coroutine and
//! the app gets one `http.request` with `more_body: False` (the time an
//! upload takes is never time in the app, and `--timeout` counts only the
//! app). [`AsgiDispatch::submit`] builds the scope ([`scope`]) and runs
//! `app(scope, receive, send)` as an asyncio task started eagerly
//! ([`TaskStarter`]): its first step runs at once, inside the
//! turn, as the task (so `asyncio.current_task()`, `asyncio.timeout` and
//! anyio's cancel scopes work from the first line). `receive()` and
//! `send()` return awaitables that are already complete ([`Ready`])
//! unless there is something to wait for, so an app that never waits (a
//! hello, a JSON view without I/O) is done when that step returns: no
//! loop iteration, no waker, its answer back at once as an inline WSGI
//! call's. One that waits goes on as an ordinary task, and its answer
//! reaches the mio loop through the loop's waker (`Dispatch::poll`).
//! Python 3.12 has eager tasks (`eager_start=True`); on 3.9 to 3.11 the
//! first step the new task schedules (`loop.call_soon`, caught for that
//! one call) is run at once instead, on asyncio's loop and uvloop alike.
//! Stepping the bare coroutine from Rust was faster still, but left no
//! current task during the first step, which breaks anyio (FastAPI) and
//! `asyncio.wait_for` on 3.12.
//!
//! # Responses
//! `http.response.start` is held until the first body message: a body in
//! one message (`more_body` false) is sent with `Content-Length`; a body in
//! several is streamed, chunked on HTTP/1.1, through a [`Pipe`] the
//! connection pulls as the socket takes it. `send()` of a piece waits while
//! more than [`PIPE_HIGH`] bytes are unsent, so a slow reader holds the
//! coroutine, not the worker's memory. `http.response.pathsend` sends a
//! file with `sendfile(2)`. Trailers are refused: the app is told (an
//! exception from `send()`), the error is logged, and the connection is
//! closed without a response; `scope["extensions"]` lists only pathsend.
//!
//! # Disconnects and deadlines
//! `receive()` after the request body returns `http.disconnect` once the
//! response is complete, or when the client goes away while the app runs
//! (the event loop tells the dispatcher: `Dispatch::peer_gone`); a pending
//! `receive()` is woken then. `send()` after the connection closed raises
//! `OSError` (spec 2.4), so a streaming app stops. A request in its task
//! longer than `--timeout` is cancelled (`CancelledError` in the app), its
//! client gets a 504 and the log says `REQUEST TIMEOUT`; the worker serves
//! on. A loop blocked by synchronous code stops the worker's heartbeat and
//! the master replaces the worker, as for a stuck WSGI worker.
//!
//! # WebSockets
//! `ws.rs`: the `websocket` scope and its messages, through the
//! dispatcher's WebSocket seam (`crate::dispatch`); the connection frames.

mod scope;
mod ws;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Read};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::app::{Request, Response, ResponseBody};
use crate::config::Config;
use crate::dispatch::{Answer, ConnId, Dispatch, Env, Event, Outcome, Overdue, Runner};
use crate::event_loop::{EventLoop, Exit};
use crate::hooks::Hooks;

use super::response::log_exception;
use scope::ScopeBuilder;

const HELPERS_SRC: &str = include_str!("helpers.py");

/// A streamed response's `send()` waits while more than this is unsent.
pub(crate) const PIPE_HIGH: usize = 64 * 1024;

fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let ns = PyDict::new(py);
    let src = CString::new(HELPERS_SRC).expect("no NUL in helpers.py");
    py.run(&src, Some(&ns), Some(&ns))?;
    Ok(ns)
}

fn helper<'py>(ns: &Bound<'py, PyDict>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    ns.get_item(name)?
        .ok_or_else(|| PyRuntimeError::new_err(format!("helpers.py: {name} missing")))
}

/// `--interface`: does `app` get the ASGI worker? With the reason, for the
/// start-up line.
pub(crate) fn is_asgi(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    cfg: &Config,
) -> PyResult<(bool, &'static str)> {
    Ok(match cfg.interface.as_str() {
        "asgi" => (true, "--interface asgi"),
        "wsgi" => (false, "--interface wsgi"),
        _ if cfg.asgi_worker() => (true, "-k asgi"),
        _ => {
            let ns = helpers(py)?;
            if helper(&ns, "is_asgi")?.call1((app,))?.is_truthy()? {
                (true, "--interface auto: an async callable")
            } else {
                (false, "--interface auto: not an async callable")
            }
        }
    })
}

/// What the runner keeps from the configuration.
struct Settings {
    loop_kind: String,
    lifespan: String,
    graceful_timeout: u64,
    root_path: String,
}

/// The ASGI worker's [`Runner`]: its asyncio loop and the lifespan.
pub(crate) struct AsgiRunner {
    app: Py<PyAny>,
    settings: Settings,
    helpers: Py<PyDict>,
    event_loop: Option<Py<PyAny>>,
    lifespan: Option<Py<PyAny>>,
    state: Py<PyDict>,
}

impl AsgiRunner {
    pub(crate) fn new(py: Python<'_>, app: Py<PyAny>, cfg: &Config) -> PyResult<AsgiRunner> {
        Ok(AsgiRunner {
            app,
            settings: Settings {
                loop_kind: cfg.asgi_loop.clone(),
                lifespan: cfg.asgi_lifespan.clone(),
                graceful_timeout: cfg.graceful_timeout,
                root_path: cfg.root_path.clone(),
            },
            helpers: helpers(py)?.unbind(),
            event_loop: None,
            lifespan: None,
            state: PyDict::new(py).unbind(),
        })
    }

    fn py_startup(&mut self, py: Python<'_>) -> Result<(), String> {
        let ns = self.helpers.bind(py);
        let made =
            helper(ns, "new_loop").and_then(|f| f.call1((self.settings.loop_kind.as_str(),)));
        let made = match made {
            Ok(m) => m,
            Err(e) if e.is_instance_of::<PyRuntimeError>(py) => {
                return Err(e.value(py).to_string());
            }
            Err(e) => return Err(format!("cannot create the asyncio loop: {e}")),
        };
        let (lp, name): (Bound<'_, PyAny>, String) =
            made.extract().map_err(|e: PyErr| e.to_string())?;
        py.import("asyncio")
            .and_then(|a| a.call_method1("set_event_loop", (&lp,)))
            .map_err(|e| format!("cannot set the asyncio loop: {e}"))?;
        log::debug!("worker {}: ASGI on the {name} loop", std::process::id());
        self.event_loop = Some(lp.clone().unbind());
        if self.settings.lifespan == "off" {
            return Ok(());
        }
        let ls = helper(ns, "Lifespan")
            .and_then(|c| {
                c.call1((
                    self.app.bind(py),
                    self.state.bind(py),
                    self.settings.lifespan.as_str(),
                ))
            })
            .map_err(|e| e.to_string())?;
        let res = ls
            .call_method0("startup")
            .and_then(|c| lp.call_method1("run_until_complete", (c,)))
            .and_then(|r| r.extract::<(String, String)>());
        self.lifespan = Some(ls.unbind());
        match res {
            Ok((level, msg)) if level == "error" => Err(msg),
            Ok((level, msg)) => {
                if level == "info" {
                    log::info!("{msg}");
                }
                Ok(())
            }
            Err(e) => Err(format!("ASGI lifespan startup: {e}")),
        }
    }
}

impl Runner for AsgiRunner {
    fn startup(&mut self) -> Result<(), String> {
        Python::attach(|py| self.py_startup(py))
    }

    fn run(&mut self, mut ev: EventLoop, hooks: Rc<dyn Hooks>) -> (EventLoop, Exit) {
        let Some(lp) = self.event_loop.as_ref() else {
            log::error!("the ASGI loop was not started");
            return (ev, Exit::Quick);
        };
        let waker = match ev.waker() {
            Ok(w) => w,
            Err(e) => {
                log::error!("cannot create the event loop's waker: {e}");
                return (ev, Exit::Quick);
            }
        };
        let fd = ev.poll_fd();
        let server_addr = ev.server_addr();
        Python::attach(|py| {
            let built = (|| -> PyResult<(Rc<Hub>, ScopeBuilder)> {
                let hub = Rc::new(Hub {
                    event_loop: lp.clone_ref(py),
                    waker,
                    events: RefCell::new(Vec::new()),
                    run_app: helper(self.helpers.bind(py), "run_app")?.unbind(),
                    starter: TaskStarter::new(py, lp.bind(py))?,
                    done: Py::new(py, Ready { value: None })?.into_any(),
                    state: self.state.clone_ref(py),
                    inflight: RefCell::new(HashMap::new()),
                });
                let scope = ScopeBuilder::new(py, &self.settings.root_path, server_addr.clone())?;
                Ok((hub, scope))
            })();
            let (hub, scope) = match built {
                Ok(x) => x,
                Err(e) => {
                    log::error!("cannot set up the ASGI dispatcher: {e}");
                    return (ev, Exit::Quick);
                }
            };
            let dispatch = AsgiDispatch {
                hub: hub.clone(),
                app: self.app.clone_ref(py),
                scope,
                ws: ws::Sessions::default(),
            };
            ev.begin();
            let pump = Pump {
                inner: RefCell::new(Some(PumpInner {
                    ev,
                    dispatch,
                    hooks,
                    timer: None,
                    soon: false,
                    exit: None,
                    panic: None,
                })),
                event_loop: lp.clone_ref(py),
            };
            let pump = match Bound::new(py, pump) {
                Ok(p) => p,
                Err(e) => panic!("cannot create the ASGI pump: {e}"),
            };
            let lp = lp.bind(py);
            let started = lp
                .call_method1("add_reader", (fd, &pump))
                .and_then(|_| lp.call_method1("call_soon", (&pump,)));
            if let Err(e) = started {
                log::error!("cannot watch the event loop from asyncio: {e}");
            } else if let Err(e) = lp.call_method0("run_forever") {
                log_exception(py, &e, &"the asyncio loop failed");
            }
            let _ = lp.call_method1("remove_reader", (fd,));
            let inner = pump.borrow().inner.borrow_mut().take();
            let mut inner = inner.expect("the pump is taken once");
            if let Some((_, h)) = &inner.timer {
                let _ = h.bind(py).call_method0("cancel");
            }
            if let Some(p) = inner.panic.take() {
                std::panic::resume_unwind(p);
            }
            (inner.ev, inner.exit.unwrap_or(Exit::Quick))
        })
    }

    fn shutdown(&mut self, exit: &Exit) {
        Python::attach(|py| {
            let Some(lp) = self.event_loop.take() else {
                return;
            };
            let lp = lp.bind(py);
            if *exit == Exit::Graceful {
                let keep = self
                    .lifespan
                    .as_ref()
                    .and_then(|ls| ls.bind(py).getattr("task").ok())
                    .map_or_else(|| py.None(), |t| t.unbind());
                let left = helper(self.helpers.bind(py), "wait_tasks").and_then(|f| {
                    f.call1((lp, self.settings.graceful_timeout.max(1), keep))?
                        .extract::<usize>()
                });
                match left {
                    Ok(0) => {}
                    Ok(n) => log::warn!(
                        "graceful timeout: cancelling {n} ASGI task(s) still running after their responses"
                    ),
                    Err(e) => log::debug!("waiting for the ASGI tasks left: {e}"),
                }
            }
            if *exit == Exit::Graceful
                && let Some(ls) = self.lifespan.take()
            {
                let res = ls
                    .bind(py)
                    .call_method1("shutdown", (self.settings.graceful_timeout.max(1),))
                    .and_then(|c| lp.call_method1("run_until_complete", (c,)))
                    .and_then(|r| r.extract::<(String, String)>());
                match res {
                    Ok((level, msg)) if level == "error" => log::error!("{msg}"),
                    Ok(_) => {}
                    Err(e) => log::error!("ASGI lifespan shutdown: {e}"),
                }
            }
            if let Err(e) = helper(self.helpers.bind(py), "cancel_all").and_then(|f| f.call1((lp,)))
            {
                log::debug!("cancelling the ASGI tasks left: {e}");
            }
            let _ = lp.call_method0("close");
        });
    }
}

/// Runs the mio loop's turns from asyncio: called when the mio loop's
/// epoll descriptor is readable, soon (a turn left work), or at the
/// deadline the last turn asked for (`fire`).
#[pyclass(unsendable, module = "ferricorn")]
struct Pump {
    inner: RefCell<Option<PumpInner>>,
    event_loop: Py<PyAny>,
}

struct PumpInner {
    ev: EventLoop,
    dispatch: AsgiDispatch,
    hooks: Rc<dyn Hooks>,
    /// The pending `call_later` and when it fires.
    timer: Option<(Instant, Py<PyAny>)>,
    /// A `call_soon` is pending.
    soon: bool,
    exit: Option<Exit>,
    /// A panic in a turn, resumed once the asyncio loop has stopped.
    panic: Option<Box<dyn std::any::Any + Send>>,
}

impl Pump {
    fn turn(slf: &Bound<'_, Pump>, timer_fired: bool) -> PyResult<()> {
        let py = slf.py();
        let me = slf.borrow();
        // A turn never runs inside another (an app that runs the loop
        // recursively would get here): skip, the outer turn goes on.
        let Ok(mut guard) = me.inner.try_borrow_mut() else {
            return Ok(());
        };
        let Some(inner) = guard.as_mut() else {
            return Ok(());
        };
        if inner.exit.is_some() {
            return Ok(());
        }
        if timer_fired {
            inner.timer = None;
        }
        inner.soon = false;
        // A panic in the turn must not become a Python exception that
        // asyncio logs and carries on after: stop the loop, and `run`
        // resumes the panic outside Python, as the plain loop would panic.
        let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner
                .ev
                .turn(&mut inner.dispatch, &*inner.hooks, Duration::ZERO)
        }));
        let exit = match turned {
            Ok(exit) => exit,
            Err(panic) => {
                inner.panic = Some(panic);
                Some(Exit::Quick)
            }
        };
        if let Some(exit) = exit {
            inner.exit = Some(exit);
            me.event_loop.bind(py).call_method0("stop")?;
            return Ok(());
        }
        let t = inner.ev.next_timeout(&mut inner.dispatch);
        let lp = me.event_loop.bind(py);
        if t.is_zero() {
            if !inner.soon {
                lp.call_method1("call_soon", (slf,))?;
                inner.soon = true;
            }
            return Ok(());
        }
        let deadline = Instant::now() + t;
        match &inner.timer {
            // An earlier timer is pending: it runs a turn, which asks again.
            Some((at, _)) if *at <= deadline => {}
            _ => {
                if let Some((_, h)) = inner.timer.take() {
                    h.bind(py).call_method0("cancel")?;
                }
                let fire = slf.getattr("fire")?;
                let h = lp.call_method1("call_later", (t.as_secs_f64(), fire))?;
                inner.timer = Some((deadline, h.unbind()));
            }
        }
        Ok(())
    }
}

#[pymethods]
impl Pump {
    fn __call__(slf: &Bound<'_, Pump>) -> PyResult<()> {
        Pump::turn(slf, false)
    }

    fn fire(slf: &Bound<'_, Pump>) -> PyResult<()> {
        Pump::turn(slf, true)
    }
}

/// Starts a request's task eagerly: its first step runs in the caller, as
/// the task (module docs, "A request").
struct TaskStarter {
    /// `asyncio.Task`.
    task: Py<PyAny>,
    /// `{"loop": loop}`, with `eager_start=True` on Python 3.12+.
    kwargs: Py<PyDict>,
    /// Python 3.9-3.11, no eager tasks: the first step the new task
    /// schedules with `loop.call_soon` is caught here and run at once.
    capture: Option<Py<Capture>>,
}

impl TaskStarter {
    fn new(py: Python<'_>, lp: &Bound<'_, PyAny>) -> PyResult<TaskStarter> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("loop", lp)?;
        let eager = py.version_info() >= (3, 12);
        if eager {
            kwargs.set_item("eager_start", true)?;
        }
        // A loop whose `call_soon` cannot be shadowed (no `__dict__`) gets
        // ordinary tasks: the first step in the next loop iteration.
        let name = pyo3::intern!(py, "call_soon");
        let capture = if eager {
            None
        } else if lp
            .setattr(name, py.None())
            .and_then(|_| lp.delattr(name))
            .is_ok()
        {
            Some(Py::new(py, Capture { step: None })?)
        } else {
            log::debug!("the asyncio loop's call_soon cannot be shadowed: ordinary tasks");
            None
        };
        Ok(TaskStarter {
            task: py.import("asyncio")?.getattr("Task")?.unbind(),
            kwargs: kwargs.unbind(),
            capture,
        })
    }

    fn start<'py>(
        &self,
        py: Python<'py>,
        lp: &Bound<'py, PyAny>,
        coro: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = self.kwargs.bind(py);
        let Some(capture) = &self.capture else {
            return self.task.bind(py).call((coro,), Some(kwargs));
        };
        // The task's constructor schedules its first step with
        // `loop.call_soon(step, context=ctx)`, a method looked up on the
        // loop: an instance attribute shadows it for that one call (asyncio's
        // loops and uvloop's are Python classes with a `__dict__`). Then the
        // step runs now, as the task's own step would in the next loop
        // iteration: no handle queued (and cancelled), no iteration more.
        let name = pyo3::intern!(py, "call_soon");
        lp.setattr(name, capture.bind(py))?;
        let task = self.task.bind(py).call((coro,), Some(kwargs));
        let restored = lp.delattr(name);
        let step = capture.borrow_mut(py).step.take();
        let task = task?;
        restored?;
        match step {
            Some((cb, Some(ctx))) => {
                ctx.bind(py).call_method1(pyo3::intern!(py, "run"), (cb,))?;
            }
            Some((cb, None)) => {
                cb.bind(py).call0()?;
            }
            None => {}
        }
        Ok(task)
    }
}

/// Stands in for `loop.call_soon` while a task is made (Python < 3.12).
#[pyclass(unsendable, module = "ferricorn")]
struct Capture {
    step: Option<(Py<PyAny>, Option<Py<PyAny>>)>,
}

#[pymethods]
impl Capture {
    #[pyo3(signature = (callback, *args, context = None))]
    fn __call__(
        &mut self,
        callback: Py<PyAny>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if !args.is_empty() || self.step.is_some() {
            return Err(PyRuntimeError::new_err(
                "ferricorn: unexpected loop.call_soon while starting a task",
            ));
        }
        self.step = Some((callback, context));
        Ok(())
    }
}

/// What the dispatcher and the per-request callables share.
struct Hub {
    event_loop: Py<PyAny>,
    waker: mio::Waker,
    /// Answers and wake-ups made outside a turn (in tasks), for `poll`.
    events: RefCell<Vec<Event>>,
    /// `helpers.py`: the request coroutine's wrapper, and how a task starts.
    run_app: Py<PyAny>,
    starter: TaskStarter,
    /// A complete awaitable of None: what `send()` returns when nothing
    /// waits, shared (it keeps no state), so no object per message.
    done: Py<PyAny>,
    /// The lifespan's `state`, copied into each scope.
    state: Py<PyDict>,
    /// Requests running in tasks, by connection slot.
    inflight: RefCell<HashMap<usize, Rc<RefCell<Req>>>>,
}

impl Hub {
    fn emit(&self, ev: Event) {
        let first = {
            let mut e = self.events.borrow_mut();
            e.push(ev);
            e.len() == 1
        };
        if first && let Err(e) = self.waker.wake() {
            log::error!("waking the event loop failed: {e}");
        }
    }

    fn future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.event_loop.bind(py).call_method0("create_future")
    }
}

/// Where a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet.
    Start,
    /// `http.response.start` received, held until the first body message.
    Started,
    /// The head went to the connection; more body comes through the pipe.
    Streaming,
    /// The response is complete (or abandoned).
    Done,
}

/// What kind of connection a request is (the seam for WebSockets: a
/// `WebSocket` variant with its state goes here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
}

/// One request's ASGI state, shared by its `receive`, `send` and the
/// dispatcher.
struct Req {
    #[allow(dead_code)]
    kind: Kind,
    conn: ConnId,
    /// "METHOD /target", for log lines.
    what: String,
    /// Handed back with the answer.
    request: Option<Request>,
    /// The body, until the app has received it.
    body: Option<Py<PyBytes>>,
    phase: Phase,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    pipe: Option<Rc<RefCell<Pipe>>>,
    /// The client went away (or shut its side): `receive()` says
    /// `http.disconnect`.
    gone: bool,
    /// A `receive()` waiting for the disconnect.
    waiter: Option<Py<PyAny>>,
    /// Being stepped from `submit`: an answer is returned, not queued.
    eager: bool,
    answer: Option<Answer>,
    task: Option<Py<PyAny>>,
    started_ms: u64,
    timed_out: bool,
    finished: bool,
    /// A refused message (trailers) was logged: the error that follows
    /// from it is not logged again.
    refused: bool,
}

/// Why a request in its task is past `--timeout`, and for how many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    /// Nothing sent yet: the client gets a 504.
    Unanswered(u64),
    /// A streamed response the app stopped feeding (not one held back by a
    /// slow reader): the connection is closed.
    Stalled(u64),
}

impl Req {
    /// Is this request past `--timeout` (`limit_ms`) at `now_ms`?
    fn late(&self, now_ms: u64, limit_ms: u64) -> Option<Late> {
        if self.timed_out || self.finished {
            return None;
        }
        if self.request.is_some() {
            let t = now_ms.saturating_sub(self.started_ms);
            return (t > limit_ms).then_some(Late::Unanswered(t / 1000));
        }
        if self.phase != Phase::Streaming {
            return None;
        }
        let p = self.pipe.as_ref()?.borrow();
        if p.drained.is_some() {
            // Held back by a slow reader: not the app's time.
            return None;
        }
        let t = now_ms.saturating_sub(p.active_ms);
        (t > limit_ms).then_some(Late::Stalled(t / 1000))
    }

    fn deliver(&mut self, hub: &Hub, outcome: Outcome) {
        let Some(req) = self.request.take() else {
            return;
        };
        let answer = Answer {
            conn: self.conn,
            req,
            outcome,
        };
        if self.eager {
            self.answer = Some(answer);
        } else {
            hub.emit(Event::Answer(answer));
        }
    }

    fn wake_waiter(&mut self, py: Python<'_>) {
        if let Some(w) = self.waiter.take() {
            let w = w.bind(py);
            if !w
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                let _ = disconnect_msg(py).and_then(|m| w.call_method1("set_result", (m,)));
            }
        }
    }

    /// The pipe has news for a connection that waits for it.
    fn wake_pipe(&self, hub: &Hub) {
        if let Some(p) = &self.pipe {
            let mut p = p.borrow_mut();
            if p.want && !self.eager {
                p.want = false;
                hub.emit(Event::Wake(self.conn));
            }
        }
    }
}

fn disconnect_msg(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        pyo3::intern!(py, "type"),
        pyo3::intern!(py, "http.disconnect"),
    )?;
    Ok(d)
}

/// A streamed body between `send()` and the connection.
struct Pipe {
    data: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The response cannot be finished: the connection is cut.
    failed: bool,
    /// The connection found nothing and waits for a `Wake`.
    want: bool,
    /// The connection dropped its end.
    closed: bool,
    /// A `send()` waiting for the pipe to drain.
    drained: Option<Py<PyAny>>,
    /// When the app last had the pipe's attention (a piece sent, or its
    /// `send()` let go after a drain): a stream is stalled, and cancelled
    /// at `--timeout`, when the app has sent nothing for that long while
    /// not held by a slow reader.
    active_ms: u64,
}

impl Pipe {
    fn unsent(&self) -> usize {
        self.data.len() - self.pos
    }

    fn push(&mut self, b: &[u8]) {
        self.active_ms = crate::clock::monotonic_ms();
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        } else if self.pos > PIPE_HIGH {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        self.data.extend_from_slice(b);
    }

    fn release(&mut self, py: Python<'_>) {
        if let Some(f) = self.drained.take() {
            self.active_ms = crate::clock::monotonic_ms();
            let f = f.bind(py);
            if !f
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                let _ = f.call_method1("set_result", (py.None(),));
            }
        }
    }
}

/// The connection's end of a [`Pipe`].
struct PipeReader {
    pipe: Rc<RefCell<Pipe>>,
    req: Weak<RefCell<Req>>,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut p = self.pipe.borrow_mut();
        if p.unsent() > 0 {
            let n = buf.len().min(p.unsent());
            let pos = p.pos;
            buf[..n].copy_from_slice(&p.data[pos..pos + n]);
            p.pos += n;
            if p.unsent() <= PIPE_HIGH / 2 && p.drained.is_some() {
                Python::attach(|py| p.release(py));
            }
            return Ok(n);
        }
        if p.failed {
            return Err(io::Error::other("the ASGI app did not finish its response"));
        }
        if p.eof {
            return Ok(0);
        }
        p.want = true;
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let done = {
            let mut p = self.pipe.borrow_mut();
            p.closed = true;
            p.eof && p.unsent() == 0
        };
        Python::attach(|py| {
            self.pipe.borrow_mut().release(py);
            if !done
                && let Some(r) = self.req.upgrade()
                && let Ok(mut r) = r.try_borrow_mut()
            {
                r.gone = true;
                r.wake_waiter(py);
            }
        });
    }
}

/// An awaitable that is already complete: `await` gives `value` at once,
/// without suspending the coroutine.
#[pyclass(module = "ferricorn")]
struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&mut self) -> PyResult<Option<Py<PyAny>>> {
        // Returning nothing ends the iteration with the value None, without
        // an exception object (the `send()` case); a value needs one.
        match self.value.take() {
            None => Ok(None),
            Some(v) => Err(PyStopIteration::new_err((v,))),
        }
    }
    /// Only a suspended awaitable is sent a value; this one never suspends,
    /// so `send` (called by hand) ends the iteration the explicit way.
    fn send(&mut self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let v = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((v,)))
    }
}

fn ready(py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, Ready { value })?.into_any())
}

/// The request's `receive` callable.
#[pyclass(unsendable, module = "ferricorn")]
struct Receiver {
    req: Rc<RefCell<Req>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl Receiver {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        on_receive(py, &self.req, &self.hub)
    }
}

fn on_receive(py: Python<'_>, req: &Rc<RefCell<Req>>, hub: &Hub) -> PyResult<Py<PyAny>> {
    let mut r = req.borrow_mut();
    // As uvicorn: once the response is complete or the client is gone,
    // that is all there is to say (an unread body is dropped).
    if r.gone || r.phase == Phase::Done {
        return ready(py, Some(disconnect_msg(py)?.into_any().unbind()));
    }
    if let Some(body) = r.body.take() {
        let d = PyDict::new(py);
        d.set_item(pyo3::intern!(py, "type"), pyo3::intern!(py, "http.request"))?;
        d.set_item(pyo3::intern!(py, "body"), body)?;
        d.set_item(pyo3::intern!(py, "more_body"), false)?;
        return ready(py, Some(d.into_any().unbind()));
    }
    let f = hub.future(py)?;
    r.waiter = Some(f.clone().unbind());
    Ok(f.unbind())
}

/// The request's `send` callable.
#[pyclass(unsendable, module = "ferricorn")]
struct Sender {
    req: Rc<RefCell<Req>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl Sender {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        on_send(py, &self.req, &self.hub, message)
    }
}

fn get<'py>(
    m: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match m.cast::<PyDict>() {
        Ok(d) => d.get_item(key),
        Err(_) => match m.get_item(key) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(m.py()) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// An ASGI message's `headers`: an iterable of `[name, value]` byte pairs
/// (HTTP responses, the WebSocket accept and its denial response).
pub(super) fn header_list(hs: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Vec<u8>)>> {
    let mut headers = Vec::new();
    for h in hs.try_iter()? {
        let h = h?;
        let name = bytes_of(Some(h.get_item(0)?), "a header name")?;
        let value = bytes_of(Some(h.get_item(1)?), "a header value")?;
        let name = String::from_utf8(name)
            .map_err(|_| PyTypeError::new_err("a header name must be ASCII"))?;
        headers.push((name, value));
    }
    Ok(headers)
}

fn bytes_of(v: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<u8>> {
    match v {
        None => Ok(Vec::new()),
        Some(v) => match v.cast::<PyBytes>() {
            Ok(b) => Ok(b.as_bytes().to_vec()),
            Err(_) => Err(PyTypeError::new_err(format!(
                "{what} must be bytes, not {}",
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))),
        },
    }
}

fn on_send(
    py: Python<'_>,
    req: &Rc<RefCell<Req>>,
    hub: &Hub,
    msg: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let t = get(msg, pyo3::intern!(py, "type"))?
        .ok_or_else(|| PyTypeError::new_err("ASGI message without 'type'"))?;
    let t = t
        .cast_into::<PyString>()
        .map_err(|_| PyTypeError::new_err("ASGI message 'type' must be a str"))?;
    // Borrowed from the str (its UTF-8 is cached), not copied per message.
    let t = t.to_cow()?;
    let mut r = req.borrow_mut();
    match t.as_ref() {
        "http.response.start" => {
            if r.phase != Phase::Start {
                return Err(PyRuntimeError::new_err(format!(
                    "ASGI message 'http.response.start' sent twice or after the body ({})",
                    r.what
                )));
            }
            let status = get(msg, pyo3::intern!(py, "status"))?
                .ok_or_else(|| PyTypeError::new_err("http.response.start without 'status'"))?
                .extract::<u16>()?;
            let headers = match get(msg, pyo3::intern!(py, "headers"))? {
                Some(hs) => header_list(&hs)?,
                None => Vec::new(),
            };
            if let Some(tr) = get(msg, pyo3::intern!(py, "trailers"))?
                && tr.is_truthy()?
            {
                r.refused = true;
                log::error!(
                    "ASGI app asked for response trailers handling {}: ferricorn does not \
                     support http.response.trailers (scope['extensions'] does not list it); \
                     closing the connection",
                    r.what
                );
                return Err(PyRuntimeError::new_err(
                    "http.response.trailers is not supported by this server",
                ));
            }
            r.status = status;
            r.headers = headers;
            r.phase = Phase::Started;
            Ok(hub.done.clone_ref(py))
        }
        "http.response.body" => {
            let body = get(msg, pyo3::intern!(py, "body"))?;
            let more = match get(msg, pyo3::intern!(py, "more_body"))? {
                Some(m) => m.is_truthy()?,
                None => false,
            };
            match r.phase {
                Phase::Start => Err(PyRuntimeError::new_err(format!(
                    "ASGI message 'http.response.body' before 'http.response.start' ({})",
                    r.what
                ))),
                Phase::Done => Err(PyRuntimeError::new_err(format!(
                    "ASGI message 'http.response.body' after the response completed ({})",
                    r.what
                ))),
                Phase::Started => {
                    let body = bytes_of(body, "'body'")?;
                    let headers = std::mem::take(&mut r.headers);
                    let status = r.status;
                    if !more {
                        r.phase = Phase::Done;
                        r.deliver(
                            hub,
                            Outcome::Response(Response {
                                status,
                                headers,
                                body: ResponseBody::Bytes(body),
                            }),
                        );
                        r.wake_waiter(py);
                        return Ok(hub.done.clone_ref(py));
                    }
                    let pipe = Rc::new(RefCell::new(Pipe {
                        data: body,
                        pos: 0,
                        eof: false,
                        failed: false,
                        want: false,
                        closed: false,
                        drained: None,
                        active_ms: crate::clock::monotonic_ms(),
                    }));
                    r.pipe = Some(pipe.clone());
                    r.phase = Phase::Streaming;
                    let reader = PipeReader {
                        pipe,
                        req: Rc::downgrade(req),
                    };
                    r.deliver(
                        hub,
                        Outcome::Response(Response {
                            status,
                            headers,
                            body: ResponseBody::Stream(Box::new(reader)),
                        }),
                    );
                    Ok(hub.done.clone_ref(py))
                }
                Phase::Streaming => {
                    let pipe = r.pipe.clone().expect("a streaming response has a pipe");
                    let wait = {
                        let mut p = pipe.borrow_mut();
                        if p.closed {
                            return Err(PyOSError::new_err("the client disconnected"));
                        }
                        if let Some(b) = &body {
                            match b.cast::<PyBytes>() {
                                Ok(b) => p.push(b.as_bytes()),
                                Err(_) => {
                                    return Err(PyTypeError::new_err("'body' must be bytes"));
                                }
                            }
                        }
                        if !more {
                            p.eof = true;
                        }
                        more && p.unsent() > PIPE_HIGH
                    };
                    if !more {
                        r.phase = Phase::Done;
                        r.wake_waiter(py);
                    }
                    r.wake_pipe(hub);
                    if wait {
                        let f = hub.future(py)?;
                        pipe.borrow_mut().drained = Some(f.clone().unbind());
                        return Ok(f.unbind());
                    }
                    Ok(hub.done.clone_ref(py))
                }
            }
        }
        "http.response.pathsend" => {
            if r.phase != Phase::Started {
                return Err(PyRuntimeError::new_err(format!(
                    "ASGI message 'http.response.pathsend' must follow 'http.response.start' ({})",
                    r.what
                )));
            }
            let path: String = get(msg, pyo3::intern!(py, "path"))?
                .ok_or_else(|| PyTypeError::new_err("http.response.pathsend without 'path'"))?
                .extract()?;
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            let headers = std::mem::take(&mut r.headers);
            let status = r.status;
            r.phase = Phase::Done;
            let mut resp = Response::new(status).file(file, 0, len);
            resp.headers = headers;
            r.deliver(hub, Outcome::Response(resp));
            r.wake_waiter(py);
            Ok(hub.done.clone_ref(py))
        }
        "http.response.trailers" => {
            r.refused = true;
            log::error!(
                "ASGI app sent http.response.trailers handling {}: not supported \
                 (scope['extensions'] does not list it); closing the connection",
                r.what
            );
            if let Some(p) = &r.pipe {
                p.borrow_mut().failed = true;
            }
            r.wake_pipe(hub);
            Err(PyRuntimeError::new_err(
                "http.response.trailers is not supported by this server",
            ))
        }
        other => Err(PyRuntimeError::new_err(format!(
            "unexpected ASGI message type {other:?} for an HTTP request ({})",
            r.what
        ))),
    }
}

/// Told by the task how the coroutine ended.
#[pyclass(unsendable, module = "ferricorn")]
struct Finished {
    req: Rc<RefCell<Req>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl Finished {
    fn __call__(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        let err = exc.filter(|e| !e.is_none()).map(PyErr::from_value);
        finish(py, &self.req, &self.hub, err);
    }
}

/// The coroutine ended, returning or raising `err`.
fn finish(py: Python<'_>, req: &Rc<RefCell<Req>>, hub: &Hub, err: Option<PyErr>) {
    let mut r = req.borrow_mut();
    if r.finished {
        return;
    }
    r.finished = true;
    {
        let mut inflight = hub.inflight.borrow_mut();
        if inflight
            .get(&r.conn.index)
            .is_some_and(|x| Rc::ptr_eq(x, req))
        {
            inflight.remove(&r.conn.index);
        }
    }
    r.task = None;
    if r.timed_out {
        // Cancelled at --timeout: the client has its 504 already.
        r.wake_waiter(py);
        return;
    }
    let phase = r.phase;
    r.phase = Phase::Done;
    r.wake_waiter(py);
    let what = r.what.clone();
    match err {
        Some(e) => {
            let disconnected = r.pipe.as_ref().is_some_and(|p| p.borrow().closed);
            if r.refused {
                // Logged when refused.
            } else if disconnected && e.is_instance_of::<PyOSError>(py) {
                log::debug!("{what}: the client went away while the response was streamed");
            } else {
                log_exception(py, &e, &format!("Exception in ASGI application ({what})"));
            }
            match phase {
                Phase::Start if !r.refused => {
                    r.deliver(hub, Outcome::Response(super::response::internal_error()))
                }
                Phase::Start | Phase::Started => r.deliver(hub, Outcome::Abort),
                Phase::Streaming => {
                    if let Some(p) = &r.pipe {
                        p.borrow_mut().failed = true;
                    }
                    r.wake_pipe(hub);
                }
                Phase::Done => {}
            }
        }
        None => match phase {
            Phase::Start | Phase::Started => {
                log::error!("ASGI app returned without completing its response ({what})");
                r.deliver(hub, Outcome::Response(super::response::internal_error()));
            }
            Phase::Streaming => {
                log::error!("ASGI app returned without completing its streamed response ({what})");
                if let Some(p) = &r.pipe {
                    p.borrow_mut().failed = true;
                }
                r.wake_pipe(hub);
            }
            Phase::Done => {}
        },
    }
}

/// The ASGI dispatcher: runs each request's coroutine (module docs).
struct AsgiDispatch {
    hub: Rc<Hub>,
    app: Py<PyAny>,
    scope: ScopeBuilder,
    /// Open WebSockets (`ws.rs`).
    ws: ws::Sessions,
}

impl AsgiDispatch {
    fn start(
        &mut self,
        py: Python<'_>,
        conn: ConnId,
        mut request: Request,
        now_ms: u64,
    ) -> Option<Answer> {
        let what = format!("{} {}", request.method(), request.target());
        let state = self.hub.state.bind(py).clone();
        let scope = match self.scope.build(py, &request, &state) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Some(Answer {
                    conn,
                    req: request,
                    outcome: Outcome::Response(Response::text(404, "Not Found\n")),
                });
            }
            Err(e) => {
                log_exception(py, &e, &format!("{what}: building the ASGI scope failed"));
                return Some(Answer {
                    conn,
                    req: request,
                    outcome: Outcome::Response(super::response::internal_error()),
                });
            }
        };
        let body = request.body();
        let len = body.len() as usize;
        let body = PyBytes::new_with(py, len, |buf| body.read_exact(buf).map_err(PyErr::from));
        let body = match body {
            Ok(b) => b.unbind(),
            Err(e) => {
                log::error!("{what}: reading the request body failed: {e}");
                return Some(Answer {
                    conn,
                    req: request,
                    outcome: Outcome::Response(super::response::internal_error()),
                });
            }
        };
        let req = Rc::new(RefCell::new(Req {
            kind: Kind::Http,
            conn,
            what,
            request: Some(request),
            body: Some(body),
            phase: Phase::Start,
            status: 0,
            headers: Vec::new(),
            pipe: None,
            gone: false,
            waiter: None,
            eager: true,
            answer: None,
            task: None,
            started_ms: now_ms,
            timed_out: false,
            finished: false,
            refused: false,
        }));
        let hub = &self.hub;
        // The coroutine runs as a task started eagerly: its first step runs
        // here (answered at once when it never waits), as the task, so
        // asyncio.current_task() is right for asyncio.timeout and anyio.
        let started = (|| -> PyResult<Bound<'_, PyAny>> {
            let receive = Py::new(
                py,
                Receiver {
                    req: req.clone(),
                    hub: hub.clone(),
                },
            )?;
            let send = Py::new(
                py,
                Sender {
                    req: req.clone(),
                    hub: hub.clone(),
                },
            )?;
            let fin = Py::new(
                py,
                Finished {
                    req: req.clone(),
                    hub: hub.clone(),
                },
            )?;
            let coro = self.app.bind(py).call1((scope, receive, send))?;
            let wrapped = hub.run_app.bind(py).call1((coro, fin))?;
            hub.starter.start(py, hub.event_loop.bind(py), wrapped)
        })();
        match started {
            Ok(task) => {
                if !req.borrow().finished {
                    req.borrow_mut().task = Some(task.unbind());
                    hub.inflight.borrow_mut().insert(conn.index, req.clone());
                }
            }
            Err(e) => finish(py, &req, hub, Some(e)),
        }
        let mut r = req.borrow_mut();
        r.eager = false;
        let answer = r.answer.take();
        // Streamed pieces sent in the same step are in the pipe already.
        answer
    }
}

impl Dispatch for AsgiDispatch {
    fn room(&self) -> usize {
        usize::MAX
    }

    fn submit(&mut self, conn: ConnId, req: Request, env: &Env<'_>) -> Option<Answer> {
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.hooks.pre_request(&req)));
        Python::attach(|py| self.start(py, conn, req, env.now_ms))
    }

    fn poll(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.hub.events.borrow_mut());
    }

    fn overdue(&mut self, now_ms: u64, limit_ms: u64, out: &mut Vec<Overdue>) {
        let late: Vec<(Rc<RefCell<Req>>, Late)> = self
            .hub
            .inflight
            .borrow()
            .values()
            .filter_map(|r| {
                let late = r.borrow().late(now_ms, limit_ms)?;
                Some((r.clone(), late))
            })
            .collect();
        if late.is_empty() {
            return;
        }
        Python::attach(|py| {
            for (req, late) in late {
                let mut r = req.borrow_mut();
                r.timed_out = true;
                if let Some(t) = &r.task {
                    let _ = t.bind(py).call_method0("cancel");
                }
                r.wake_waiter(py);
                let (what, secs) = match late {
                    Late::Unanswered(secs) => (r.what.clone(), secs),
                    Late::Stalled(secs) => {
                        // The head is out: the connection is closed (the
                        // loop's `timed_out`), so the client sees a body
                        // cut short, not one that looks complete.
                        if let Some(p) = &r.pipe {
                            p.borrow_mut().failed = true;
                        }
                        (format!("{} (its streamed response stalled)", r.what), secs)
                    }
                };
                out.push(Overdue {
                    conn: r.conn,
                    what,
                    secs,
                    thread: 0,
                    replace: false,
                });
            }
        });
    }

    fn websockets(&self) -> bool {
        true
    }

    fn ws_open(
        &mut self,
        conn: ConnId,
        req: &mut Request,
        hs: &crate::ws::Handshake,
        _env: &Env<'_>,
        out: &mut Vec<crate::dispatch::WsAction>,
    ) {
        Python::attach(|py| {
            ws::open(
                py,
                &mut self.ws,
                &self.hub,
                &self.app,
                &mut self.scope,
                conn,
                req,
                hs,
                out,
            )
        });
    }

    fn ws_message(
        &mut self,
        conn: ConnId,
        msg: crate::ws::Message,
        _env: &Env<'_>,
        out: &mut Vec<crate::dispatch::WsAction>,
    ) {
        Python::attach(|py| ws::message(py, &self.ws, conn, msg, out));
    }

    fn ws_drained(&mut self, conn: ConnId) {
        Python::attach(|py| ws::drained(py, &self.ws, conn));
    }

    fn ws_closed(&mut self, conn: ConnId, code: u16, _env: &Env<'_>) {
        Python::attach(|py| ws::closed(py, &mut self.ws, conn, code));
    }

    fn peer_gone(&mut self, conn: ConnId) {
        let req = self.hub.inflight.borrow().get(&conn.index).cloned();
        if let Some(req) = req
            && let Ok(mut r) = req.try_borrow_mut()
            && r.conn == conn
        {
            r.gone = true;
            Python::attach(|py| r.wake_waiter(py));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> Pipe {
        Pipe {
            data: Vec::new(),
            pos: 0,
            eof: false,
            failed: false,
            want: false,
            closed: false,
            drained: None,
            active_ms: 0,
        }
    }

    fn streaming(pipe: Pipe) -> Req {
        Req {
            kind: Kind::Http,
            conn: ConnId {
                index: 0,
                serial: 1,
            },
            what: "GET /".into(),
            request: None,
            body: None,
            phase: Phase::Streaming,
            status: 200,
            headers: Vec::new(),
            pipe: Some(Rc::new(RefCell::new(pipe))),
            gone: false,
            waiter: None,
            eager: false,
            answer: None,
            task: None,
            started_ms: 1_000,
            timed_out: false,
            finished: false,
            refused: false,
        }
    }

    #[test]
    fn a_stream_is_late_when_the_app_stopped_sending_not_when_its_reader_is_slow() {
        let mut p = pipe();
        p.active_ms = 50_000;
        let r = streaming(p);
        // Started long ago, but the last piece went 10 s ago: within 30 s.
        assert_eq!(r.late(60_000, 30_000), None);
        assert_eq!(r.late(90_000, 30_000), Some(Late::Stalled(40)));
        // (A send() held back by a slow reader, `drained`, is not the app
        // stalling: that needs a Python future, see tests/asgi_http.rs.)
        // Once cancelled, or finished, it is not late again.
        let mut r = streaming(pipe());
        r.timed_out = true;
        assert_eq!(r.late(90_000, 30_000), None);
        let mut r = streaming(pipe());
        r.phase = Phase::Done;
        assert_eq!(r.late(90_000, 30_000), None);
    }

    #[test]
    fn a_pipe_counts_unsent_bytes_and_reuses_its_buffer() {
        let mut p = pipe();
        p.push(b"abcdef");
        assert_eq!(p.unsent(), 6);
        p.pos = 6;
        // Drained: the next piece starts the buffer over.
        p.push(b"xy");
        assert_eq!((p.pos, p.data.as_slice()), (0, &b"xy"[..]));
        // Partly taken past the high mark: the taken part is dropped.
        let big = vec![7u8; PIPE_HIGH + 10];
        p.push(&big);
        p.pos = PIPE_HIGH + 5;
        p.push(b"z");
        assert_eq!(p.pos, 0);
        // 2 + PIPE_HIGH + 10 bytes, PIPE_HIGH + 5 taken, one more pushed.
        assert_eq!(p.unsent(), 7 + 1);
    }
}
