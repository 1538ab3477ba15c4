//! ASGI WebSockets (the `websocket` scope, spec 2.4): the ASGI side of the
//! dispatcher's WebSocket seam (`crate::dispatch`, module docs). The
//! connection does the handshake checks, the framing, pings and the close
//! handshake; here a WebSocket is a coroutine fed ASGI messages.
//!
//! - [`open`]: a handshake that passed RFC 6455's checks. The scope is the
//!   HTTP one with `type: websocket`, `scheme` ws/wss, no `method`, and
//!   `subprotocols` in the client's order; `websocket.connect` waits in the
//!   inbox, and the coroutine runs as an eagerly started task, as an HTTP
//!   request's does.
//! - `send`: `websocket.accept` (subprotocol, headers) and
//!   `websocket.close` (code, reason; before the accept: a 403) become
//!   [`WsAction`]s for the connection; `websocket.send` (text or bytes)
//!   too; `websocket.http.response.start`/`body` (the denial extension)
//!   become the HTTP response that refuses the handshake. Messages are
//!   written in the order sent.
//! - `receive`: `websocket.connect`, then each `websocket.receive` (the
//!   connection calls [`message`]), then `websocket.disconnect` with the
//!   code ([`closed`]); a `receive()` with nothing queued waits on a future.
//! - The coroutine ending: without an accept, a 403 (an exception: 500, as
//!   uvicorn); after it, the server closes with 1000 (1011 after an
//!   exception), logged with the traceback.
//!
//! `--timeout` does not apply: a WebSocket lives as long as its client.
//! `send()` after the WebSocket ended raises `OSError` (spec 2.4's
//! "IOError subclass"), so an app that streams to a gone client stops.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::app::{Request, Response};
use crate::dispatch::{ConnId, Event, WsAction};
use crate::ws::{Handshake, Message, code};

use super::{Hub, ScopeBuilder, bytes_of, get, header_list, ready};

/// Messages queued for `receive()` before the connection stops reading the
/// client's frames (uvicorn's `--ws-max-queue` default).
const MAX_QUEUE: usize = 32;
/// Bytes the app may send ahead of the socket before `send()` waits for
/// the connection to write them (`Dispatch::ws_drained`).
const SEND_HIGH: usize = 256 * 1024;
use crate::python::response::log_exception;

/// Where the handshake and the WebSocket are, as the app drives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not accepted yet.
    Connecting,
    /// `websocket.http.response.start` received; the body follows.
    Denying,
    Open,
    /// Closed by the app, refused, or ended by the client.
    Closed,
}

/// One WebSocket's ASGI state.
pub(super) struct WsReq {
    conn: ConnId,
    /// "WEBSOCKET /path", for log lines.
    what: String,
    inbox: VecDeque<Py<PyAny>>,
    /// A `receive()` waiting for the next message.
    waiter: Option<Py<PyAny>>,
    phase: Phase,
    /// The client's side ended (`websocket.disconnect` is queued).
    gone: bool,
    deny_status: u16,
    deny_headers: Vec<(String, Vec<u8>)>,
    deny_body: Vec<u8>,
    /// Being stepped from the connection's call: actions go to `out`.
    eager: bool,
    out: Vec<WsAction>,
    task: Option<Py<PyAny>>,
    finished: bool,
    /// The connection was told to stop reading (`MAX_QUEUE`).
    paused: bool,
    /// Bytes sent since the connection last wrote everything out.
    unsent: usize,
    /// A `send()` waiting for that.
    drained: Option<Py<PyAny>>,
}

impl WsReq {
    fn release(&mut self, py: Python<'_>) {
        if let Some(f) = self.drained.take() {
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

    fn act(&mut self, hub: &Hub, a: WsAction) {
        if self.eager {
            self.out.push(a);
        } else {
            hub.emit(Event::Ws(self.conn, a));
        }
    }

    /// Queue `msg` for `receive()`, handing it straight to a waiting one.
    fn push(&mut self, py: Python<'_>, msg: Py<PyAny>) {
        self.inbox.push_back(msg);
        if let Some(w) = self.waiter.take() {
            let w = w.bind(py);
            let pending = !w
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(true);
            if pending && let Some(m) = self.inbox.pop_front() {
                let _ = w.call_method1("set_result", (m,));
            }
        }
    }
}

/// The dispatcher's open WebSockets, by connection.
#[derive(Default)]
pub(super) struct Sessions {
    by_conn: HashMap<ConnId, Rc<RefCell<WsReq>>>,
}

fn msg<'py>(py: Python<'py>, t: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(pyo3::intern!(py, "type"), PyString::new(py, t))?;
    Ok(d)
}

/// The `websocket` scope from the HTTP one.
fn scope<'py>(
    py: Python<'py>,
    builder: &mut ScopeBuilder,
    req: &Request,
    hs: &Handshake,
    state: &Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(s) = builder.build(py, req, state)? else {
        return Ok(None);
    };
    s.set_item("type", "websocket")?;
    s.set_item("scheme", if req.scheme() == "https" { "wss" } else { "ws" })?;
    s.del_item("method")?;
    s.set_item("subprotocols", PyList::new(py, &hs.protocols)?)?;
    let ext = PyDict::new(py);
    ext.set_item("websocket.http.response", PyDict::new(py))?;
    s.set_item("extensions", ext)?;
    Ok(Some(s))
}

/// A handshake for the app: its first actions (the accept or the denial,
/// when the app decides at once) go to `out`, later ones through the hub.
#[allow(clippy::too_many_arguments)]
pub(super) fn open(
    py: Python<'_>,
    sessions: &mut Sessions,
    hub: &Rc<Hub>,
    app: &Py<PyAny>,
    builder: &mut ScopeBuilder,
    conn: ConnId,
    req: &Request,
    hs: &Handshake,
    out: &mut Vec<WsAction>,
) {
    let what = format!("WEBSOCKET {}", req.target());
    let state = hub.state.bind(py).clone();
    let scope = match scope(py, builder, req, hs, &state) {
        Ok(Some(s)) => s,
        Ok(None) => {
            out.push(WsAction::Deny(Response::text(404, "Not Found\n")));
            return;
        }
        Err(e) => {
            log_exception(py, &e, &format!("{what}: building the ASGI scope failed"));
            out.push(WsAction::Deny(crate::python::response::internal_error()));
            return;
        }
    };
    let ws = Rc::new(RefCell::new(WsReq {
        conn,
        what,
        inbox: VecDeque::new(),
        waiter: None,
        phase: Phase::Connecting,
        gone: false,
        deny_status: 0,
        deny_headers: Vec::new(),
        deny_body: Vec::new(),
        eager: true,
        out: Vec::new(),
        task: None,
        finished: false,
        paused: false,
        unsent: 0,
        drained: None,
    }));
    if let Ok(m) = msg(py, "websocket.connect") {
        ws.borrow_mut().inbox.push_back(m.into_any().unbind());
    }
    sessions.by_conn.insert(conn, ws.clone());
    // As for an HTTP request: an eagerly started task (mod.rs, "A request").
    let started = (|| -> PyResult<Bound<'_, PyAny>> {
        let receive = Py::new(
            py,
            WsReceive {
                ws: ws.clone(),
                hub: hub.clone(),
            },
        )?;
        let send = Py::new(
            py,
            WsSend {
                ws: ws.clone(),
                hub: hub.clone(),
            },
        )?;
        let fin = Py::new(
            py,
            WsFinished {
                ws: ws.clone(),
                hub: hub.clone(),
            },
        )?;
        let coro = app.bind(py).call1((scope, receive, send))?;
        let wrapped = hub.run_app.bind(py).call1((coro, fin))?;
        hub.starter.start(py, hub.event_loop.bind(py), wrapped)
    })();
    match started {
        Ok(task) => {
            if !ws.borrow().finished {
                ws.borrow_mut().task = Some(task.unbind());
            }
        }
        Err(e) => finish(py, &ws, hub, Some(e)),
    }
    let mut w = ws.borrow_mut();
    w.eager = false;
    out.append(&mut w.out);
}

/// A message from the client: `websocket.receive` for the app. A full
/// queue pauses the connection's reading (`out`: `Pause`).
pub(super) fn message(
    py: Python<'_>,
    sessions: &Sessions,
    conn: ConnId,
    m: Message,
    out: &mut Vec<WsAction>,
) {
    let Some(ws) = sessions.by_conn.get(&conn) else {
        return;
    };
    let built = (|| -> PyResult<Py<PyAny>> {
        let d = msg(py, "websocket.receive")?;
        match m {
            Message::Text(t) => {
                d.set_item("text", t)?;
                d.set_item("bytes", py.None())?;
            }
            Message::Binary(b) => {
                d.set_item("bytes", PyBytes::new(py, &b))?;
                d.set_item("text", py.None())?;
            }
        }
        Ok(d.into_any().unbind())
    })();
    let mut w = ws.borrow_mut();
    match built {
        Ok(d) => w.push(py, d),
        Err(e) => log::error!("building a websocket.receive message failed: {e}"),
    }
    if w.inbox.len() >= MAX_QUEUE && !w.paused {
        w.paused = true;
        out.push(WsAction::Pause);
    }
}

/// The connection wrote everything: a waiting `send()` goes on.
pub(super) fn drained(py: Python<'_>, sessions: &Sessions, conn: ConnId) {
    if let Some(ws) = sessions.by_conn.get(&conn)
        && let Ok(mut w) = ws.try_borrow_mut()
    {
        w.unsent = 0;
        if w.drained.is_some() {
            w.release(py);
        }
    }
}

/// The WebSocket ended: `websocket.disconnect` with `code`.
pub(super) fn closed(py: Python<'_>, sessions: &mut Sessions, conn: ConnId, close_code: u16) {
    let Some(ws) = sessions.by_conn.remove(&conn) else {
        return;
    };
    let mut w = ws.borrow_mut();
    w.gone = true;
    w.phase = Phase::Closed;
    w.release(py);
    let built = msg(py, "websocket.disconnect").and_then(|d| {
        d.set_item("code", close_code)?;
        d.set_item("reason", "")?;
        Ok(d.into_any().unbind())
    });
    if let Ok(d) = built {
        w.push(py, d);
    }
}

#[pyclass(unsendable, module = "ferricorn")]
struct WsReceive {
    ws: Rc<RefCell<WsReq>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl WsReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut w = self.ws.borrow_mut();
        if let Some(m) = w.inbox.pop_front() {
            if w.paused && w.inbox.len() <= MAX_QUEUE / 2 && !w.gone {
                w.paused = false;
                w.act(&self.hub, WsAction::Resume);
            }
            return ready(py, Some(m));
        }
        if w.gone || w.finished {
            // Asked again after the disconnect: say it again.
            let d = msg(py, "websocket.disconnect")?;
            d.set_item("code", code::ABNORMAL)?;
            return ready(py, Some(d.into_any().unbind()));
        }
        let f = self.hub.future(py)?;
        w.waiter = Some(f.clone().unbind());
        Ok(f.unbind())
    }
}

#[pyclass(unsendable, module = "ferricorn")]
struct WsSend {
    ws: Rc<RefCell<WsReq>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl WsSend {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        on_send(py, &self.ws, &self.hub, message)?;
        let mut w = self.ws.borrow_mut();
        if w.unsent > SEND_HIGH && !w.gone {
            // Sent far ahead of the client: wait until it is written.
            let f = self.hub.future(py)?;
            w.release(py);
            w.drained = Some(f.clone().unbind());
            return Ok(f.unbind());
        }
        Ok(self.hub.done.clone_ref(py))
    }
}

fn str_field(m: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<String>> {
    let py = m.py();
    match get(m, &PyString::new(py, key))? {
        Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
        _ => Ok(None),
    }
}

fn on_send(
    py: Python<'_>,
    ws: &Rc<RefCell<WsReq>>,
    hub: &Hub,
    m: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let t =
        str_field(m, "type")?.ok_or_else(|| PyTypeError::new_err("ASGI message without 'type'"))?;
    let mut w = ws.borrow_mut();
    let wrong = |w: &WsReq| {
        Err(PyRuntimeError::new_err(format!(
            "unexpected ASGI message {t:?} in state {:?} ({})",
            w.phase, w.what
        )))
    };
    match (t.as_str(), w.phase) {
        (_, Phase::Closed) if w.gone => Err(PyOSError::new_err("the WebSocket is closed")),
        ("websocket.accept", Phase::Connecting) => {
            let subprotocol = str_field(m, "subprotocol")?;
            let headers = match get(m, pyo3::intern!(py, "headers"))? {
                Some(hs) if !hs.is_none() => header_list(&hs)?,
                _ => Vec::new(),
            };
            w.phase = Phase::Open;
            w.act(
                hub,
                WsAction::Accept {
                    subprotocol,
                    headers,
                },
            );
            Ok(())
        }
        ("websocket.send", Phase::Open) => {
            let text = str_field(m, "text")?;
            let out = match text {
                Some(t) => Message::Text(t),
                None => match get(m, pyo3::intern!(py, "bytes"))? {
                    Some(b) if !b.is_none() => Message::Binary(bytes_of(Some(b), "'bytes'")?),
                    _ => {
                        return Err(PyTypeError::new_err(
                            "websocket.send needs 'text' or 'bytes'",
                        ));
                    }
                },
            };
            w.unsent += match &out {
                Message::Text(t) => t.len(),
                Message::Binary(b) => b.len(),
            };
            w.act(hub, WsAction::Send(out));
            Ok(())
        }
        ("websocket.close", Phase::Connecting | Phase::Open) => {
            let c = match get(m, pyo3::intern!(py, "code"))? {
                Some(c) if !c.is_none() => c.extract::<u16>()?,
                _ => code::NORMAL,
            };
            let reason = str_field(m, "reason")?.unwrap_or_default();
            w.phase = Phase::Closed;
            w.act(hub, WsAction::Close { code: c, reason });
            Ok(())
        }
        ("websocket.http.response.start", Phase::Connecting) => {
            let status = get(m, pyo3::intern!(py, "status"))?
                .ok_or_else(|| {
                    PyTypeError::new_err("websocket.http.response.start without 'status'")
                })?
                .extract::<u16>()?;
            let headers = match get(m, pyo3::intern!(py, "headers"))? {
                Some(hs) if !hs.is_none() => header_list(&hs)?,
                _ => Vec::new(),
            };
            w.deny_status = status;
            w.deny_headers = headers;
            w.phase = Phase::Denying;
            Ok(())
        }
        ("websocket.http.response.body", Phase::Denying) => {
            let body = bytes_of(get(m, pyo3::intern!(py, "body"))?, "'body'")?;
            w.deny_body.extend_from_slice(&body);
            let more = match get(m, pyo3::intern!(py, "more_body"))? {
                Some(v) => v.is_truthy()?,
                None => false,
            };
            if !more {
                let resp = Response {
                    status: w.deny_status,
                    headers: std::mem::take(&mut w.deny_headers),
                    body: crate::app::ResponseBody::Bytes(std::mem::take(&mut w.deny_body)),
                };
                w.phase = Phase::Closed;
                w.act(hub, WsAction::Deny(resp));
            }
            Ok(())
        }
        _ => wrong(&w),
    }
}

#[pyclass(unsendable, module = "ferricorn")]
struct WsFinished {
    ws: Rc<RefCell<WsReq>>,
    hub: Rc<Hub>,
}

#[pymethods]
impl WsFinished {
    fn __call__(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        let err = exc.filter(|e| !e.is_none()).map(PyErr::from_value);
        finish(py, &self.ws, &self.hub, err);
    }
}

/// The coroutine ended, returning or raising `err`.
fn finish(py: Python<'_>, ws: &Rc<RefCell<WsReq>>, hub: &Hub, err: Option<PyErr>) {
    let mut w = ws.borrow_mut();
    if w.finished {
        return;
    }
    w.finished = true;
    w.task = None;
    w.release(py);
    let what = w.what.clone();
    let failed = err.is_some();
    if let Some(e) = err {
        if w.gone && e.is_instance_of::<PyOSError>(py) {
            log::debug!("{what}: the client went away");
        } else {
            log_exception(py, &e, &format!("Exception in ASGI application ({what})"));
        }
    }
    match w.phase {
        Phase::Connecting | Phase::Denying => {
            let resp = if failed {
                crate::python::response::internal_error()
            } else {
                Response::text(403, "Forbidden\n")
            };
            w.phase = Phase::Closed;
            w.act(hub, WsAction::Deny(resp));
        }
        Phase::Open => {
            w.phase = Phase::Closed;
            let c = if failed {
                code::INTERNAL_ERROR
            } else {
                code::NORMAL
            };
            w.act(
                hub,
                WsAction::Close {
                    code: c,
                    reason: String::new(),
                },
            );
        }
        Phase::Closed => {}
    }
}
