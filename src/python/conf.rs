//! gunicorn config files in Python (`-c gunicorn.conf.py`, `-c python:pkg.module`,
//! `./gunicorn.conf.py`), run by the interpreter in the master.
//!
//! The file is executed as gunicorn does (a module named `__config__` loaded
//! from the file, or an imported module), with the file's directory and the
//! working directory on `sys.path`, so `import multiprocessing`,
//! `os.environ.get(...)` and imports of the project's own modules work. Its
//! globals that are settings come back as [`Value`]s for the settings table;
//! callables named after server hooks are kept for [`super::hooks::PyHooks`].
//! Any error is one line naming the file and the line.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::config_gunicorn::HOOKS;
use crate::config_value::Value;

use super::interp;

/// Runs the file or imports the module and returns its globals. A module
/// imported before is reloaded, so SIGHUP sees the edited file.
const LOADER: &std::ffi::CStr = cr#"
def load(filename, module, dirs):
    import importlib, importlib.machinery, importlib.util, sys
    for d in reversed(dirs):
        if d not in sys.path:
            sys.path.insert(0, d)
    if module:
        if module in sys.modules:
            return vars(importlib.reload(sys.modules[module]))
        return vars(importlib.import_module(module))
    loader = importlib.machinery.SourceFileLoader("__config__", filename)
    spec = importlib.util.spec_from_file_location("__config__", filename, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = mod
    loader.exec_module(mod)
    return vars(mod)
"#;

/// Run `name` (a path, or `python:MODULE`) and return its settings. Starts the
/// interpreter in this process if it is not running yet.
pub fn load(name: &str, launch_dir: &Path) -> Result<Vec<(String, Value)>, String> {
    let venv = interp::venv_from_env()?;
    interp::initialize(venv.as_ref())?;
    let (filename, module) = match name.strip_prefix("python:") {
        Some(m) => (String::new(), m.to_string()),
        None => (name.to_string(), String::new()),
    };
    let mut dirs: Vec<String> = Vec::new();
    if !filename.is_empty()
        && let Some(parent) = Path::new(&filename).parent()
    {
        dirs.push(parent.to_string_lossy().into_owned());
    }
    dirs.push(launch_dir.to_string_lossy().into_owned());
    Python::attach(|py| {
        let ns = PyDict::new(py);
        py.run(LOADER, Some(&ns), Some(&ns))
            .map_err(|e| format!("config loader: {e}"))?;
        let globals = ns
            .get_item("load")
            .ok()
            .flatten()
            .ok_or("config loader: no load()")?
            .call1((filename.as_str(), module.as_str(), dirs))
            .map_err(|e| describe_error(py, &e, name, &filename))?;
        let globals = globals
            .cast::<PyDict>()
            .map_err(|e| format!("config file {name}: {e}"))?;
        let mut settings = Vec::new();
        let mut hooks = Vec::new();
        for (k, v) in globals.iter() {
            let Ok(key) = k.extract::<String>() else {
                continue;
            };
            if key.starts_with('_') {
                continue;
            }
            if let Some(hook) = HOOKS.iter().find(|h| **h == key) {
                if !v.is_callable() {
                    return Err(format!(
                        "invalid value for {key} in {name}: a server hook must be callable, got {}",
                        type_name(&v)
                    ));
                }
                hooks.push((*hook, v.unbind()));
                continue;
            }
            let known = crate::config::setting(&key).is_some()
                || crate::config_gunicorn::accepted(&key).is_some();
            if !known {
                continue;
            }
            let value = to_value(&v)
                .map_err(|t| format!("invalid value for {key} in {name}: unsupported type {t}"))?;
            settings.push((key, value));
        }
        super::hooks::stage(hooks);
        Ok(settings)
    })
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A Python value as a setting value; the error is the unsupported type's name.
fn to_value(v: &Bound<'_, PyAny>) -> Result<Value, String> {
    if v.is_none() {
        Ok(Value::None)
    } else if v.is_instance_of::<PyBool>() {
        Ok(Value::Bool(v.extract().map_err(|_| type_name(v))?))
    } else if v.is_instance_of::<PyInt>() {
        match v.extract::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::Str(v.str().map_err(|_| type_name(v))?.to_string())),
        }
    } else if v.is_instance_of::<PyFloat>() {
        Ok(Value::Float(v.extract().map_err(|_| type_name(v))?))
    } else if v.is_instance_of::<PyString>() {
        Ok(Value::Str(v.extract().map_err(|_| type_name(v))?))
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = v
            .try_iter()
            .map_err(|_| type_name(v))?
            .collect::<PyResult<_>>()
            .map_err(|_| type_name(v))?;
        items
            .iter()
            .map(to_value)
            .collect::<Result<_, _>>()
            .map(Value::List)
    } else if let Ok(d) = v.cast::<PyDict>() {
        let mut out = Vec::new();
        for (k, val) in d.iter() {
            let k: String = k.str().map_err(|_| type_name(v))?.to_string();
            out.push((k, to_value(&val)?));
        }
        Ok(Value::Map(out))
    } else {
        Err(type_name(v))
    }
}

/// One line for a failed config file: "error in FILE, line N: Type: message".
/// The line is the syntax error's, or the deepest traceback frame in the file.
fn describe_error(py: Python<'_>, e: &PyErr, name: &str, filename: &str) -> String {
    let value = e.value(py);
    let kind = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let mut line: Option<i64> = None;
    let mut file = name.to_string();
    if e.is_instance_of::<pyo3::exceptions::PySyntaxError>(py) {
        line = value.getattr("lineno").and_then(|l| l.extract()).ok();
        if let Ok(f) = value
            .getattr("filename")
            .and_then(|f| f.extract::<String>())
        {
            file = f;
        }
        let msg: String = value
            .getattr("msg")
            .and_then(|m| m.extract())
            .unwrap_or_else(|_| value.to_string());
        return one_line(&file, line, &format!("{kind}: {msg}"));
    }
    // Walk the traceback: the last frame in the config file, else the last frame.
    let mut tb = e.traceback(py);
    let mut last: Option<(String, i64)> = None;
    let mut in_file: Option<(String, i64)> = None;
    while let Some(t) = tb {
        let frame_file: Option<String> = t
            .getattr("tb_frame")
            .and_then(|f| f.getattr("f_code"))
            .and_then(|c| c.getattr("co_filename"))
            .and_then(|n| n.extract())
            .ok();
        let lineno: Option<i64> = t.getattr("tb_lineno").and_then(|l| l.extract()).ok();
        if let (Some(f), Some(l)) = (frame_file, lineno)
            && !f.starts_with('<')
        {
            if !filename.is_empty() && Path::new(&f) == Path::new(filename) {
                in_file = Some((f.clone(), l));
            }
            last = Some((f, l));
        }
        tb = t
            .getattr("tb_next")
            .ok()
            .and_then(|n| n.cast_into::<pyo3::types::PyTraceback>().ok());
    }
    if let Some((f, l)) = in_file.or(last) {
        file = f;
        line = Some(l);
    }
    one_line(&file, line, &format!("{kind}: {value}"))
}

fn one_line(file: &str, line: Option<i64>, what: &str) -> String {
    let what = what.replace('\n', " ");
    match line {
        Some(l) => format!("error in config file {file}, line {l}: {what}"),
        None => format!("error in config file {file}: {what}"),
    }
}

/// `-e/--env`: with an interpreter in this process, set the variables through
/// `os.environ` (which also calls putenv), since Python copied the environment
/// when it started and the app reads `os.environ`. Returns false (nothing
/// done) when the process has no interpreter.
pub fn set_environ(changes: &[(String, Option<String>)]) -> Result<bool, String> {
    if !interp::is_initialized() {
        return Ok(false);
    }
    Python::attach(|py| -> PyResult<()> {
        let environ = py.import("os")?.getattr("environ")?;
        for (k, v) in changes {
            match v {
                // os.environ's setitem/pop also call putenv/unsetenv.
                Some(v) => environ.set_item(k, v)?,
                None => {
                    environ.call_method1("pop", (k, py.None()))?;
                }
            }
        }
        Ok(())
    })
    .map_err(|e| format!("cannot set the environment: {e}"))?;
    Ok(true)
}
