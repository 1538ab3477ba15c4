//! What a worker (or the `--preload` master) does around importing the WSGI
//! app for the runtime settings: the app's Python logging (`--log-config`,
//! `--log-config-json`, `logconfig_dict`, as gunicorn's `Logger.setup`)
//! before the import, and the module files for `--reload` after it.

use std::ffi::CStr;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::interp;
use crate::config::Config;

/// gunicorn's `glogging.CONFIG_DEFAULTS` and its three ways of applying a
/// logging configuration, in its order of precedence: dict, JSON, file.
const LOGGING_SRC: &CStr = cr#"
import json, logging.config, os

CONFIG_DEFAULTS = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"],
                           "propagate": True, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"],
                            "propagate": True, "qualname": "gunicorn.access"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic",
                    "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic",
                          "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
                    "class": "logging.Formatter"},
    },
}

def setup(dict_json, json_file, ini_file, paths):
    # The project's own handler or filter classes must be importable, as
    # they are under gunicorn (which sets sys.path up before logging).
    import sys
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    if dict_json:
        config = dict(CONFIG_DEFAULTS)
        config.update(json.loads(dict_json))
        logging.config.dictConfig(config)
    elif json_file:
        config = dict(CONFIG_DEFAULTS)
        with open(json_file) as f:
            config.update(json.load(f))
        logging.config.dictConfig(config)
    elif ini_file:
        defaults = dict(CONFIG_DEFAULTS)
        defaults["__file__"] = ini_file
        defaults["here"] = os.path.dirname(ini_file)
        logging.config.fileConfig(ini_file, defaults=defaults,
                                  disable_existing_loggers=False)

def module_files():
    import sys
    return [m.__file__ for m in list(sys.modules.values())
            if isinstance(getattr(m, "__file__", None), str)]

def failed_import_files(module):
    # The import failed, and a failed module leaves sys.modules: import it
    # again to learn, from the exception, which files to watch for the fix.
    import importlib, traceback
    files = module_files()
    try:
        importlib.import_module(module)
    except BaseException as e:
        if isinstance(e, SyntaxError) and e.filename:
            files.append(e.filename)
        files.extend(f.filename for f in traceback.extract_tb(e.__traceback__))
    return [f for f in files if os.path.isfile(f)]
"#;

fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let ns = PyDict::new(py);
    py.run(LOGGING_SRC, Some(&ns), Some(&ns))?;
    Ok(ns)
}

/// Start the interpreter, apply the logging configuration, import the app
/// (as `start_and_load`), then hand its module files to `--reload`.
pub(crate) fn load(
    venv: Option<&interp::Venv>,
    spec: &str,
    cfg: &Config,
) -> Result<Py<PyAny>, String> {
    // Not with --preload: the workers would inherit the master's time and
    // restart for every later change, forever (they keep its code anyway).
    if cfg.reload && !cfg.preload_app {
        crate::reload::loading();
    }
    let wants_logging =
        !cfg.logconfig_dict.is_empty() || cfg.logconfig_json.is_some() || cfg.logconfig.is_some();
    if wants_logging {
        interp::initialize(venv)?;
        // sys.path as `super::load` will set it: the working directory, then
        // --pythonpath.
        let mut paths = vec![std::env::current_dir().map_err(|e| e.to_string())?];
        paths.extend(
            cfg.pythonpath
                .iter()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.into())),
        );
        let paths: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        Python::attach(|py| -> PyResult<()> {
            helpers(py)?.get_item("setup")?.expect("defined").call1((
                cfg.logconfig_dict.as_str(),
                cfg.logconfig_json.as_deref(),
                cfg.logconfig.as_deref(),
                paths,
            ))?;
            Ok(())
        })
        .map_err(|e| format!("cannot apply the logging configuration: {e}"))?;
    }
    let app = match super::start_and_load(venv, spec, &cfg.pythonpath) {
        Ok(app) => app,
        Err(e) => {
            if cfg.reload && interp::initialize(venv).is_ok() {
                watch_failed_import(spec);
            }
            return Err(e);
        }
    };
    if cfg.reload && cfg.preload_app {
        // As in gunicorn: workers restart, but are forked from the master's
        // copy of the app, so they keep the old code.
        log::warn!(
            "--reload with --preload: workers restart on a change but keep the code the master preloaded"
        );
    }
    if cfg.reload {
        let files = Python::attach(|py| -> PyResult<Vec<String>> {
            helpers(py)?
                .get_item("module_files")?
                .expect("defined")
                .call0()?
                .extract()
        })
        .map_err(|e| format!("--reload: cannot list the app's modules: {e}"))?;
        crate::reload::add_files(files.into_iter().map(PathBuf::from));
    }
    Ok(app)
}

/// `--reload` and an app that failed to import: watch its files anyway (the
/// worker serves the error until one of them is saved again).
fn watch_failed_import(spec: &str) {
    let module = super::split_spec(spec).0;
    let files = Python::attach(|py| -> PyResult<Vec<String>> {
        helpers(py)?
            .get_item("failed_import_files")?
            .expect("defined")
            .call1((module,))?
            .extract()
    });
    match files {
        Ok(files) => crate::reload::add_files(files.into_iter().map(PathBuf::from)),
        Err(e) => log::warn!("--reload: cannot list the files of the failed import: {e}"),
    }
}
