//! Server hooks defined in a Python config file (`def post_fork(server,
//! worker): ...`), called at gunicorn's moments through [`PyHooks`].
//!
//! The arguments offer what gunicorn's objects are used for in practice:
//!
//! | argument | attributes |
//! |---|---|
//! | `server` | `pid`, `num_workers`, `address` (list of bind strings), `proc_name`, `cfg.workers`, `cfg.bind`, `log` |
//! | `worker` | `pid` (None in `pre_fork`), `ppid`, `age` (n-th worker forked), `alive`, `log` |
//! | `req` | `method`, `uri`, `path`, `query`, `version` (`(1, 1)`), `headers` (list of `(NAME, value)`, names upper-case as in gunicorn), `remote_addr`, `scheme` |
//! | `environ` | `REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `RAW_URI`, `SERVER_PROTOCOL` |
//! | `resp` | `status` (`"200 OK"`), `status_code` |
//!
//! `log` has `debug`, `info`, `warning`, `error`, `critical`, `exception` and
//! `log(level, ...)` with `%`-style arguments, and writes to ferricorn's error
//! log. A hook that raises is logged with its traceback; the server goes on.
//!
//! The callables of the last config file that was read successfully are
//! used: the loader stages them, and a configuration that parsed commits them
//! (so a file that fails on SIGHUP leaves the running hooks in place).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::app::Request;
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};

type HookList = Vec<(&'static str, Py<PyAny>)>;

static STAGED: Mutex<Option<HookList>> = Mutex::new(None);
static ACTIVE: Mutex<HookList> = Mutex::new(Vec::new());
/// ACTIVE is not empty: without a config file's hooks, the per-request hooks
/// cost one atomic load.
static ANY: AtomicBool = AtomicBool::new(false);
/// In a worker: who we are, for the hooks whose Rust call site does not say
/// (`pre_request`, `post_request`, `worker_exit`'s `server`).
static WORKER: Mutex<Option<(ServerInfo, WorkerInfo)>> = Mutex::new(None);

/// The loader found these hooks in the file it just ran.
pub(crate) fn stage(hooks: HookList) {
    *STAGED.lock().unwrap_or_else(|e| e.into_inner()) = Some(hooks);
}

/// The names of the hooks the loader just found (for `--print-config`).
pub fn staged_names() -> Vec<&'static str> {
    let staged = STAGED.lock().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&'static str> = staged.iter().flatten().map(|(n, _)| *n).collect();
    names.sort_by_key(|n| crate::config_gunicorn::HOOKS.iter().position(|h| h == n));
    names
}

/// The configuration that staged hooks parsed completely: use its hooks.
pub fn commit() {
    let staged = STAGED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = staged {
        ANY.store(!h.is_empty(), Ordering::Release);
        let old = std::mem::replace(&mut *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()), h);
        if !old.is_empty() {
            // Dropped attached, so the references go at once.
            Python::attach(|_| drop(old));
        }
    }
}

/// The configuration that staged hooks failed: keep the running ones.
pub fn discard() {
    let staged = STAGED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = staged {
        Python::attach(|_| drop(h));
    }
}

fn active(py: Python<'_>, name: &str) -> Option<Py<PyAny>> {
    let hooks = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    hooks
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f.clone_ref(py))
}

fn any_active(name: &str) -> bool {
    ANY.load(Ordering::Acquire)
        && ACTIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(n, _)| *n == name)
}

const HELPERS: &std::ffi::CStr = cr#"
import types

class Log:
    """The part of gunicorn's logger hooks use: server.log.info("...", args)."""
    def __init__(self, emit):
        self._emit = emit
    @staticmethod
    def _fmt(msg, args):
        msg = str(msg)
        return msg % args if args else msg
    def debug(self, msg, *args, **kw): self._emit(10, self._fmt(msg, args))
    def info(self, msg, *args, **kw): self._emit(20, self._fmt(msg, args))
    def warning(self, msg, *args, **kw): self._emit(30, self._fmt(msg, args))
    warn = warning
    def error(self, msg, *args, **kw): self._emit(40, self._fmt(msg, args))
    def critical(self, msg, *args, **kw): self._emit(50, self._fmt(msg, args))
    def exception(self, msg, *args, **kw):
        import traceback
        self._emit(40, self._fmt(msg, args) + "\n" + traceback.format_exc().rstrip())
    def log(self, lvl, msg, *args, **kw): self._emit(lvl, self._fmt(msg, args))

def server(log, pid, num_workers, address, proc_name):
    cfg = types.SimpleNamespace(workers=num_workers, bind=list(address), proc_name=proc_name)
    return types.SimpleNamespace(pid=pid, num_workers=num_workers, address=list(address),
                                 proc_name=proc_name, cfg=cfg, log=log)

def worker(log, pid, ppid, age):
    return types.SimpleNamespace(pid=pid, ppid=ppid, age=age, alive=True, log=log)

def request(method, uri, path, query, version, headers, remote_addr, scheme):
    return types.SimpleNamespace(method=method, uri=uri, path=path, query=query,
                                 version=version, headers=headers,
                                 remote_addr=remote_addr, scheme=scheme)

def response(status, status_code):
    return types.SimpleNamespace(status=status, status_code=status_code)
"#;

/// Python's logging levels onto the error log.
#[pyfunction]
fn emit(level: i32, text: &str) {
    let level = match level {
        l if l >= 40 => log::Level::Error,
        l if l >= 30 => log::Level::Warn,
        l if l >= 20 => log::Level::Info,
        _ => log::Level::Debug,
    };
    log::log!(level, "{text}");
}

struct Helpers {
    ns: Py<PyDict>,
    log: Py<PyAny>,
}

static HELPER_NS: PyOnceLock<Helpers> = PyOnceLock::new();

fn helpers(py: Python<'_>) -> PyResult<&Helpers> {
    HELPER_NS.get_or_try_init(py, || {
        let ns = PyDict::new(py);
        py.run(HELPERS, Some(&ns), Some(&ns))?;
        let emit = wrap_pyfunction!(emit, py)?;
        let log = ns
            .get_item("Log")?
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("Log missing"))?
            .call1((emit,))?
            .unbind();
        Ok(Helpers {
            ns: ns.unbind(),
            log,
        })
    })
}

fn make<'py>(
    py: Python<'py>,
    what: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let h = helpers(py)?;
    let f =
        h.ns.bind(py)
            .get_item(what)?
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err(format!("{what} missing")))?;
    f.call1(args)
}

fn server_obj<'py>(py: Python<'py>, s: &ServerInfo) -> PyResult<Bound<'py, PyAny>> {
    let log = helpers(py)?.log.clone_ref(py);
    let proc_name = WORKER_PROC_NAME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    make(
        py,
        "server",
        (log, s.pid, s.workers, s.binds.clone(), proc_name),
    )
}

/// `proc_name` for `server.proc_name` (set by the command from the settings).
static WORKER_PROC_NAME: Mutex<Option<String>> = Mutex::new(None);

/// Tell hooks the server's `proc_name`.
pub fn set_proc_name(name: Option<String>) {
    *WORKER_PROC_NAME.lock().unwrap_or_else(|e| e.into_inner()) = name;
}

fn worker_obj<'py>(py: Python<'py>, w: &WorkerInfo) -> PyResult<Bound<'py, PyAny>> {
    let log = helpers(py)?.log.clone_ref(py);
    let pid = (w.pid != 0).then_some(w.pid);
    let ppid = if w.pid == std::process::id() {
        nix::unistd::getppid().as_raw() as u32
    } else {
        std::process::id()
    };
    make(py, "worker", (log, pid, ppid, w.age))
}

fn this_worker<'py>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let me = WORKER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (s, w) = me.unwrap_or_else(|| {
        (
            ServerInfo {
                pid: nix::unistd::getppid().as_raw() as u32,
                workers: 0,
                binds: Vec::new(),
            },
            WorkerInfo {
                pid: std::process::id(),
                age: 0,
            },
        )
    });
    Ok((server_obj(py, &s)?, worker_obj(py, &w)?))
}

fn request_obj<'py>(py: Python<'py>, req: &Request) -> PyResult<Bound<'py, PyAny>> {
    let headers = PyList::empty(py);
    for (name, value) in req.headers() {
        headers.append((
            name.to_ascii_uppercase(),
            String::from_utf8_lossy(value).into_owned(),
        ))?;
    }
    let version = match req.version_str() {
        "HTTP/1.0" => (1, 0),
        _ => (1, 1),
    };
    make(
        py,
        "request",
        (
            req.method(),
            req.target(),
            req.path(),
            req.query(),
            version,
            headers,
            req.remote_addr().map(|a| a.to_string()),
            req.scheme(),
        ),
    )
}

fn environ_obj<'py>(py: Python<'py>, req: &Request) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("REQUEST_METHOD", req.method())?;
    d.set_item("PATH_INFO", req.path())?;
    d.set_item("QUERY_STRING", req.query())?;
    d.set_item("RAW_URI", req.target())?;
    d.set_item("SERVER_PROTOCOL", req.version_str())?;
    Ok(d)
}

/// Call hook `name` if the config file defined it; log what it raises.
fn call<F>(name: &str, args: F)
where
    F: for<'a> FnOnce(Python<'a>) -> PyResult<Vec<Bound<'a, PyAny>>>,
{
    if !any_active(name) {
        return;
    }
    Python::attach(|py| {
        let Some(f) = active(py, name) else {
            return;
        };
        let result = args(py).and_then(|a| {
            let t = PyTuple::new(py, a)?;
            f.bind(py).call1(t)
        });
        if let Err(e) = result {
            let tb = e
                .traceback(py)
                .and_then(|t| t.format().ok())
                .unwrap_or_default();
            log::error!("Exception in {name} hook: {}{e}", tb);
        }
    });
}

/// The hooks of a Python config file.
#[derive(Debug, Default, Clone, Copy)]
pub struct PyHooks;

impl Hooks for PyHooks {
    fn on_starting(&self, server: &ServerInfo) {
        call("on_starting", |py| Ok(vec![server_obj(py, server)?]));
    }
    fn when_ready(&self, server: &ServerInfo) {
        call("when_ready", |py| Ok(vec![server_obj(py, server)?]));
    }
    fn on_reload(&self, server: &ServerInfo) {
        call("on_reload", |py| Ok(vec![server_obj(py, server)?]));
    }
    fn pre_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        call("pre_fork", |py| {
            Ok(vec![server_obj(py, server)?, worker_obj(py, worker)?])
        });
    }
    fn post_fork(&self, server: &ServerInfo, worker: &WorkerInfo) {
        *WORKER.lock().unwrap_or_else(|e| e.into_inner()) = Some((server.clone(), worker.clone()));
        call("post_fork", |py| {
            Ok(vec![server_obj(py, server)?, worker_obj(py, worker)?])
        });
    }
    fn post_worker_init(&self, worker: &WorkerInfo) {
        call("post_worker_init", |py| Ok(vec![worker_obj(py, worker)?]));
    }
    fn worker_int(&self, worker: &WorkerInfo) {
        call("worker_int", |py| Ok(vec![worker_obj(py, worker)?]));
    }
    fn worker_abort(&self, worker: &WorkerInfo) {
        call("worker_abort", |py| Ok(vec![worker_obj(py, worker)?]));
    }
    fn pre_request(&self, req: &Request) {
        call("pre_request", |py| {
            let (_, w) = this_worker(py)?;
            Ok(vec![w, request_obj(py, req)?])
        });
    }
    fn post_request(&self, req: &Request, status: u16) {
        call("post_request", |py| {
            let (_, w) = this_worker(py)?;
            let line = format!("{status} {}", crate::http::reason_phrase(status));
            Ok(vec![
                w,
                request_obj(py, req)?,
                environ_obj(py, req)?.into_any(),
                make(py, "response", (line, status))?,
            ])
        });
    }
    fn child_exit(&self, server: &ServerInfo, worker: &WorkerInfo) {
        call("child_exit", |py| {
            Ok(vec![server_obj(py, server)?, worker_obj(py, worker)?])
        });
    }
    fn worker_exit(&self, worker: &WorkerInfo) {
        call("worker_exit", |py| {
            let (s, _) = this_worker(py)?;
            Ok(vec![s, worker_obj(py, worker)?])
        });
    }
    fn nworkers_changed(&self, server: &ServerInfo, new_value: usize, old_value: usize) {
        call("nworkers_changed", |py| {
            Ok(vec![
                server_obj(py, server)?,
                new_value.into_pyobject(py)?.into_any(),
                old_value.into_pyobject(py)?.into_any(),
            ])
        });
    }
    fn pre_exec(&self, server: &ServerInfo) {
        call("pre_exec", |py| Ok(vec![server_obj(py, server)?]));
    }
    fn on_exit(&self, server: &ServerInfo) {
        call("on_exit", |py| Ok(vec![server_obj(py, server)?]));
    }
}
