//! WSGI (PEP 3333) applications: `ferricorn [OPTIONS] MODULE:CALLABLE`,
//! built with `--features python` (or `python-ext`, the pip package).
//!
//! In the binary, by default every worker starts its own interpreter after
//! fork, after its signal handlers are installed (Python installs none of
//! its own, so a view never gets KeyboardInterrupt), and imports the app;
//! nothing Python-side crosses a fork. With `--preload` the master imports the app once, freezes
//! the GC, and the fork hooks keep the interpreter consistent across fork.
//!
//! Per request ([`PythonApp::call`]): attach to the interpreter, build the
//! environ ([`environ`]), call the app with a fresh `start_response`, and
//! turn the result into a [`Response`] ([`response`]). The request body is
//! complete before the app runs, so `wsgi.input` is an `io.BytesIO`.
//!
//! Two hosts share this code: the binary embeds CPython (`--features
//! python`, see [`interp`]); the pip package's extension module runs it in
//! the venv interpreter that is already running the master (`python-ext`).
//!
//! A Python config file (gunicorn.conf.py) also needs the interpreter in
//! the master ([`conf`]: the binary starts it there); its server hooks are
//! [`hooks::PyHooks`]. Whenever the master has an interpreter,
//! [`ForkBracket`] keeps it consistent across fork; it is a no-op otherwise.
//!
//! Layout: [`interp`] (start-up, virtualenv, fork protocol: the only
//! `unsafe`), [`boot`] (load errors in one line, once), [`conf`], [`hooks`],
//! [`environ`], [`response`].

mod asgi;
mod boot;
pub mod conf;
mod environ;
pub mod hooks;
mod interp;
mod response;
mod runtime;

use std::io;
use std::path::Path;
use std::rc::Rc;

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::app::{App, AppFactory, Request, Response, WorkerContext};
use crate::config::Config;
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};

use environ::EnvironBuilder;
use response::{ErrorStream, StartResponse};

/// Split `pkg.module:callable` (`pkg.module` alone means `:application`).
fn split_spec(spec: &str) -> (&str, &str) {
    spec.split_once(':').unwrap_or((spec, "application"))
}

/// Import the app: `sys.path` gets the working directory, then
/// `--pythonpath`. The error is one line (see [`boot`]).
fn load(py: Python<'_>, spec: &str, pythonpath: &[String]) -> Result<Py<PyAny>, String> {
    let prepare = || -> PyResult<()> {
        let sys_path = py.import("sys")?.getattr("path")?;
        let sys_path = sys_path.cast::<PyList>()?;
        for dir in pythonpath.iter().rev() {
            let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.into());
            sys_path.insert(0, abs.to_string_lossy())?;
        }
        let cwd = std::env::current_dir()?;
        sys_path.insert(0, cwd.to_string_lossy())
    };
    prepare().map_err(|e| boot::describe(py, spec, &e))?;
    let (module, attr) = split_spec(spec);
    let mut obj = py
        .import(module)
        .map_err(|e| boot::describe(py, spec, &e))?
        .into_any();
    let (attr, call) = match attr.strip_suffix("()") {
        Some(a) => (a, true),
        None => (attr, false),
    };
    for part in attr.split('.') {
        obj = obj.getattr(part).map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) {
                // gunicorn's wording.
                format!("Failed to find attribute '{attr}' in '{module}'.")
            } else {
                boot::describe(py, spec, &e)
            }
        })?;
    }
    if call {
        obj = obj.call0().map_err(|e| boot::describe(py, spec, &e))?;
    }
    if !obj.is_callable() {
        let kind = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(format!(
            "Application object must be callable: {spec} is a {kind}"
        ));
    }
    Ok(obj.unbind())
}

/// Initialise the interpreter and import the app (in a worker, or in the
/// master with `--preload`). The error is one line.
fn start_and_load(
    venv: Option<&interp::Venv>,
    spec: &str,
    pythonpath: &[String],
) -> Result<Py<PyAny>, String> {
    interp::initialize(venv)?;
    Python::attach(|py| {
        if let Some(v) = venv {
            check_venv(py, v)?;
        }
        load(py, spec, pythonpath)
    })
}

/// The interpreter found the venv through `PyConfig.executable`; if it did
/// not (an unusual layout), add its site-packages by hand.
fn check_venv(py: Python<'_>, v: &interp::Venv) -> Result<(), String> {
    let prefix: String = py
        .import("sys")
        .and_then(|s| s.getattr("prefix"))
        .and_then(|p| p.extract())
        .map_err(|e| e.to_string())?;
    if Path::new(&prefix) == v.root {
        return Ok(());
    }
    let (major, minor) = interp::linked_version();
    let site = v
        .root
        .join(format!("lib/python{major}.{minor}/site-packages"));
    log::warn!(
        "sys.prefix is {prefix}, not VIRTUAL_ENV={}; adding {} to sys.path",
        v.root.display(),
        site.display()
    );
    py.import("site")
        .and_then(|s| s.call_method1("addsitedir", (site.to_string_lossy(),)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A WSGI callable serving one worker's requests.
pub struct PythonApp {
    app: Py<PyAny>,
    environ: EnvironBuilder,
    /// The `wsgi.file_wrapper` class, to recognise its instances.
    file_wrapper: Py<PyAny>,
    /// An ASGI app (`--interface`): served by this runner, not `call`.
    asgi: Option<asgi::AsgiRunner>,
}

impl PythonApp {
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        cfg: &Config,
        ctx: &WorkerContext,
    ) -> PyResult<PythonApp> {
        let ns = pyo3::types::PyDict::new(py);
        py.run(response::FILE_WRAPPER_SRC, Some(&ns), Some(&ns))?;
        let file_wrapper = ns
            .get_item("FileWrapper")?
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("FileWrapper missing"))?;
        let errors = Bound::new(py, ErrorStream::default())?.into_any();
        let file_wrapper_class = file_wrapper.clone().unbind();
        let environ = EnvironBuilder::new(py, errors, file_wrapper, &cfg.root_path, &ctx.binds)?;
        let (is_asgi, why) = asgi::is_asgi(py, app.bind(py), cfg)?;
        announce(&format!(
            "Serving {} with the {} interface ({why})",
            cfg.app,
            if is_asgi { "ASGI" } else { "WSGI" }
        ));
        let asgi = if is_asgi {
            Some(asgi::AsgiRunner::new(py, app.clone_ref(py), cfg)?)
        } else {
            None
        };
        Ok(PythonApp {
            app,
            environ,
            file_wrapper: file_wrapper_class,
            asgi,
        })
    }

    fn call_in(&mut self, py: Python<'_>, req: &mut Request) -> Response {
        let environ = self.environ.build(py, req);
        let context = response::Context {
            method: req.method(),
            target: req.target(),
        };
        let environ = match environ {
            Ok(Some(env)) => env,
            Ok(None) => return Response::text(404, "Not Found\n"),
            Err(e) => {
                response::log_exception(py, &e, &format!("{context}: building the environ failed"));
                return response::internal_error();
            }
        };
        let sr = match Bound::new(py, StartResponse::default()) {
            Ok(sr) => sr,
            Err(e) => {
                response::log_exception(py, &e, &context);
                return response::internal_error();
            }
        };
        match self.app.bind(py).call1((environ, &sr)) {
            Ok(result) => {
                if result.get_type().is(self.file_wrapper.bind(py))
                    && let Some(resp) = response::file_response(py, &sr, &result, context)
                {
                    return resp;
                }
                response::finish(py, &sr, result, context)
            }
            Err(e) => {
                response::log_exception(py, &e, &format!("Error handling request {context}"));
                response::internal_error()
            }
        }
    }
}

impl App for PythonApp {
    fn call(&mut self, req: &mut Request) -> Response {
        // Attached (holding the GIL, on a GIL build) only for the call: an
        // app thread releases it whenever Python does (I/O, sleep), and the
        // event loop's thread never takes it.
        Python::attach(|py| self.call_in(py, req))
    }

    fn runner(&mut self) -> Option<Box<dyn crate::dispatch::Runner>> {
        self.asgi
            .take()
            .map(|r| Box::new(r) as Box<dyn crate::dispatch::Runner>)
    }

    fn thread_scope(&self) -> Option<crate::app::ThreadScope> {
        // Attach once for the thread's life, then detach (the GIL is
        // released, the thread state stays): each request's attach then
        // reuses this thread state instead of creating and deleting one,
        // which would also drop the thread's `threading.local` data.
        Some(Box::new(|life: Box<dyn FnOnce() + Send>| {
            Python::attach(|py| py.detach(life))
        }))
    }

    fn stack_reporter(&self) -> Option<crate::app::StackReporter> {
        Some(std::sync::Arc::new(|thread: u64| {
            Python::attach(|py| thread_stack(py, thread).ok().flatten())
        }))
    }
}

/// The Python stack of the thread whose `threading.get_ident()` is
/// `thread` (a pthread id, as the pool records it).
fn thread_stack(py: Python<'_>, thread: u64) -> PyResult<Option<String>> {
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let Some(frame) = frames.get_item(thread).ok() else {
        return Ok(None);
    };
    let lines = py
        .import("traceback")?
        .call_method1("format_stack", (frame,))?;
    Ok(Some(lines.extract::<Vec<String>>()?.concat()))
}

/// The fork protocol of an interpreter running in the master (`--preload`,
/// a Python config file, and always in the extension module): keep its
/// locks consistent across fork
/// (PyOS_BeforeFork / PyOS_AfterFork_*). Does nothing while the master has
/// no interpreter. Give it to [`crate::Server::fork_bracket`], never to the
/// user hooks, so that no user hook can replace it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForkBracket;

impl Hooks for ForkBracket {
    fn pre_fork(&self, _server: &ServerInfo, _worker: &WorkerInfo) {
        interp::before_fork();
    }
    fn post_fork_parent(&self, _server: &ServerInfo, _worker: &WorkerInfo) {
        interp::after_fork_parent();
    }
    fn post_fork(&self, _server: &ServerInfo, _worker: &WorkerInfo) {
        interp::after_fork_child();
    }
}

/// Made in the master before any fork: the first worker to claim it says
/// which interface the app is served with (one line, not one per worker).
static ANNOUNCE: std::sync::OnceLock<boot::ReportOnce> = std::sync::OnceLock::new();

fn announce(line: &str) {
    match ANNOUNCE.get() {
        Some(once) if !once.claim() => {}
        _ => log::info!("{line}"),
    }
}

/// Why [`setup`] failed: a bad environment (exit code 1), or an app that
/// cannot be imported under `--preload` (gunicorn's exit code 4).
#[derive(Debug)]
pub enum SetupError {
    Config(String),
    AppLoad(String),
}

/// Everything the command needs to serve the WSGI app named by `cfg.app`:
/// the per-worker factory (the fork protocol is [`ForkBracket`], given to
/// [`crate::Server::fork_bracket`]). Errors are reported before any worker is
/// forked (a bad virtualenv, an import error under `--preload`).
pub fn setup(cfg: &Config) -> Result<AppFactory, SetupError> {
    if ANNOUNCE.get().is_none()
        && let Ok(once) = boot::ReportOnce::new()
    {
        let _ = ANNOUNCE.set(once);
    }
    let venv = interp::venv_from_env().map_err(SetupError::Config)?;
    let spec = cfg.app.clone();
    let cfg_rc = Rc::new(cfg.clone());
    if cfg.preload_app {
        let app = runtime::load(venv.as_ref(), &spec, cfg)
            .map_err(|e| SetupError::AppLoad(format!("cannot load app '{spec}': {e}")))?;
        Python::attach(|py| -> PyResult<()> {
            // Objects that exist now are never collected: the GC does not
            // touch (and so un-share) their pages in the workers.
            let gc = py.import("gc")?;
            gc.call_method0("collect")?;
            gc.call_method0("freeze")?;
            Ok(())
        })
        .map_err(|e| SetupError::Config(format!("gc.freeze() failed: {e}")))?;
        let app = Rc::new(app);
        let factory: AppFactory = Box::new(move |ctx: &WorkerContext| {
            Python::attach(|py| {
                let app = app.clone_ref(py);
                PythonApp::new(py, app, &cfg_rc, ctx)
                    .map(|a| Box::new(a) as Box<dyn App + Send>)
                    .map_err(|e| io::Error::other(e.to_string()))
            })
        });
        return Ok(factory);
    }
    let once = boot::ReportOnce::new()
        .map_err(|e| SetupError::Config(format!("cannot create a pipe: {e}")))?;
    // With --threads the factory runs once per app thread: import once.
    let loaded: std::cell::RefCell<Option<Py<PyAny>>> = std::cell::RefCell::new(None);
    let factory: AppFactory = Box::new(move |ctx: &WorkerContext| {
        let cached = loaded
            .borrow()
            .as_ref()
            .map(|a| Python::attach(|py| a.clone_ref(py)));
        let app = match cached {
            Some(app) => app,
            None => match runtime::load(venv.as_ref(), &spec, &cfg_rc) {
                Ok(app) => {
                    *loaded.borrow_mut() = Some(Python::attach(|py| app.clone_ref(py)));
                    app
                }
                // Under --reload every worker serves the error (reload::failed_app).
                Err(e) if cfg_rc.reload => return Err(io::Error::other(e)),
                Err(e) if once.claim() => {
                    // The line worker.rs would write, then the losers may go.
                    log::error!(
                        "Exception in worker process: cannot load app '{}': {e}",
                        cfg_rc.app
                    );
                    once.reported();
                    crate::sys::exit_now(crate::worker::WorkerExit::AppLoadError.code());
                }
                Err(e) => {
                    // Another worker reports this; the master stops on our
                    // exit code all the same, once that line is written.
                    log::debug!("worker {}: {e}", ctx.pid);
                    once.wait_for_report();
                    crate::sys::exit_now(crate::worker::WorkerExit::AppLoadError.code());
                }
            },
        };
        Python::attach(|py| {
            PythonApp::new(py, app, &cfg_rc, ctx)
                .map(|a| Box::new(a) as Box<dyn App + Send>)
                .map_err(|e| io::Error::other(e.to_string()))
        })
    });
    Ok(factory)
}

/// `--check-config`: import the app as a worker would, in this process.
pub fn check_app(cfg: &Config) -> Result<(), String> {
    let venv = interp::venv_from_env()?;
    start_and_load(venv.as_ref(), &cfg.app, &cfg.pythonpath).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split() {
        assert_eq!(
            split_spec("app.wsgi:application"),
            ("app.wsgi", "application")
        );
        assert_eq!(split_spec("app.wsgi"), ("app.wsgi", "application"));
        assert_eq!(split_spec("m:create()"), ("m", "create()"));
    }
}
