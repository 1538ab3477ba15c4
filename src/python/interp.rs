//! The interpreter: start-up and the fork protocol. Every `unsafe` call of
//! the Python feature is in this file, each in a small item with a `SAFETY`
//! comment.
//!
//! Two ways in:
//! - embedded (`--features python`, the binary): CPython is started here,
//!   in each worker after fork (or once in the master with `--preload`),
//!   as the virtualenv named by `VIRTUAL_ENV` would run it;
//! - extension (`--features python-ext`, the pip package): the interpreter
//!   of the venv's `bin/ferricorn` script is already running in the master,
//!   so there is nothing to start; it is built for the stable ABI, where
//!   the `PyConfig` start-up calls do not exist.
//!
//! Either way, a master that holds an initialised interpreter brackets every
//! worker fork with `PyOS_BeforeFork` / `PyOS_AfterFork_*`.

use std::ffi::CStr;
#[cfg(not(feature = "python-ext"))]
use std::ffi::CString;
#[cfg(not(feature = "python-ext"))]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::ffi;

/// A virtualenv named by `VIRTUAL_ENV`.
#[derive(Debug, Clone)]
pub(crate) struct Venv {
    pub root: PathBuf,
    /// `bin/python` inside it: becomes `PyConfig.executable`, which makes
    /// CPython find `pyvenv.cfg` and set `sys.prefix` to the venv, exactly as
    /// when the venv's own `python` is run.
    #[cfg_attr(feature = "python-ext", allow(dead_code))]
    pub python: PathBuf,
}

/// `(major, minor)` of the libpython this binary is linked against.
pub(crate) fn linked_version() -> (u32, u32) {
    parse_version(linked_version_str()).unwrap_or((0, 0))
}

#[allow(unsafe_code)]
fn linked_version_str() -> &'static str {
    // SAFETY: Py_GetVersion is one of the functions documented as safe to call
    // before Py_Initialize; it returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    v.to_str().unwrap_or("")
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim().split(['.', ' ']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Read `VIRTUAL_ENV` and check it can work with the linked libpython.
pub(crate) fn venv_from_env() -> Result<Option<Venv>, String> {
    if cfg!(feature = "python-ext") {
        // The extension runs in the venv's own interpreter; a VIRTUAL_ENV
        // left in the environment (perhaps another venv's) is not followed.
        return Ok(None);
    }
    if let Some(home) = std::env::var_os("PYTHONHOME")
        && Path::new(&home).join("pyvenv.cfg").exists()
    {
        return Err(format!(
            "PYTHONHOME={} points to a virtualenv; unset PYTHONHOME and set VIRTUAL_ENV instead",
            Path::new(&home).display()
        ));
    }
    let Some(root) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let root = PathBuf::from(root);
    let cfg_path = root.join("pyvenv.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).map_err(|e| {
        format!(
            "VIRTUAL_ENV={} is not a virtualenv: cannot read {}: {e}",
            root.display(),
            cfg_path.display()
        )
    })?;
    let version = cfg
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| matches!(k.trim(), "version" | "version_info"))
        .and_then(|(_, v)| parse_version(v));
    let linked = linked_version();
    match version {
        Some(v) if v != linked => {
            return Err(format!(
                "VIRTUAL_ENV={} was created with Python {}.{}, but ferricorn is linked \
                 against libpython {}.{}; recreate the virtualenv with python{}.{} or \
                 rebuild ferricorn with PYO3_PYTHON=python{}.{}",
                root.display(),
                v.0,
                v.1,
                linked.0,
                linked.1,
                linked.0,
                linked.1,
                v.0,
                v.1
            ));
        }
        Some(_) => {}
        None => log::warn!(
            "{}: no Python version found; assuming it matches {}.{}",
            cfg_path.display(),
            linked.0,
            linked.1
        ),
    }
    let python = root.join("bin").join("python");
    if !python.exists() {
        return Err(format!(
            "VIRTUAL_ENV={}: {} does not exist",
            root.display(),
            python.display()
        ));
    }
    Ok(Some(Venv { root, python }))
}

/// Start CPython in this process (once): Python's own signal handlers are
/// not installed (`Py_InitializeEx(0)` semantics), so ferricorn's handlers,
/// installed before, stay in place and a view never sees KeyboardInterrupt.
/// The GIL is released on return; callers attach with `Python::attach`.
#[cfg(not(feature = "python-ext"))]
pub(crate) fn initialize(venv: Option<&Venv>) -> Result<(), String> {
    let exe = match venv {
        Some(v) => Some(
            CString::new(v.python.as_os_str().as_bytes())
                .map_err(|_| "VIRTUAL_ENV contains a NUL byte".to_string())?,
        ),
        None => None,
    };
    init_from_config(exe.as_deref())
}

/// The extension module runs inside the interpreter that imported it.
#[cfg(feature = "python-ext")]
pub(crate) fn initialize(_venv: Option<&Venv>) -> Result<(), String> {
    if is_initialized() {
        Ok(())
    } else {
        Err("the ferricorn extension module runs without a Python interpreter".into())
    }
}

/// An interpreter runs in this process: the extension's always, the
/// embedded one once started (in the master only with `--preload`).
#[allow(unsafe_code)]
pub(crate) fn is_initialized() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time, before
    // Py_Initialize and without the GIL; it reads one runtime flag.
    unsafe { ffi::Py_IsInitialized() != 0 }
}

#[cfg(not(feature = "python-ext"))]
#[allow(unsafe_code)]
fn init_from_config(executable: Option<&CStr>) -> Result<(), String> {
    // SAFETY: single-threaded start-up. PyConfig is initialised by
    // PyConfig_InitPythonConfig before any field is read or written, cleared
    // exactly once, and the strings passed in outlive the calls. After a
    // successful Py_InitializeFromConfig this thread holds the GIL, which
    // PyEval_SaveThread releases (pyo3 re-acquires it with PyGILState_Ensure).
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        if let Some(exe) = executable {
            let st =
                ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, exe.as_ptr());
            if ffi::PyStatus_Exception(st) != 0 {
                ffi::PyConfig_Clear(&mut config);
                return Err(status_message(st));
            }
        }
        let st = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(st) != 0 {
            return Err(status_message(st));
        }
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

#[cfg(not(feature = "python-ext"))]
#[allow(unsafe_code)]
fn status_message(st: ffi::PyStatus) -> String {
    if st.err_msg.is_null() {
        return "Python initialisation failed".into();
    }
    // SAFETY: a non-null err_msg of a PyStatus is a static C string.
    let msg = unsafe { CStr::from_ptr(st.err_msg) };
    format!("Python initialisation failed: {}", msg.to_string_lossy())
}

thread_local! {
    static FORK_GIL: std::cell::Cell<Option<ffi::PyGILState_STATE>> =
        const { std::cell::Cell::new(None) };
}

/// Master, just before fork (when it holds an interpreter: `--preload`, or
/// always in the extension): take the GIL and Python's internal locks so the
/// child starts with them in a consistent state.
#[allow(unsafe_code)]
pub(crate) fn before_fork() {
    if !is_initialized() || FORK_GIL.get().is_some() {
        return;
    }
    // SAFETY: the interpreter is initialised (checked above); the GIL is
    // taken with PyGILState_Ensure as PyOS_BeforeFork requires, and given
    // back by after_fork_parent / after_fork_child on each side.
    unsafe {
        let g = ffi::PyGILState_Ensure();
        ffi::PyOS_BeforeFork();
        FORK_GIL.set(Some(g));
    }
}

/// Master, after fork: release what `before_fork` took.
#[allow(unsafe_code)]
pub(crate) fn after_fork_parent() {
    if let Some(g) = FORK_GIL.take() {
        // SAFETY: paired with before_fork on this thread, which holds the GIL.
        unsafe {
            ffi::PyOS_AfterFork_Parent();
            ffi::PyGILState_Release(g);
        }
    }
}

/// Worker, right after fork: reinitialise the interpreter's locks and thread
/// state, run `os.register_at_fork(after_in_child=...)` callbacks (this is
/// what reseeds `random`), then release the GIL.
#[allow(unsafe_code)]
pub(crate) fn after_fork_child() {
    if let Some(g) = FORK_GIL.take() {
        // SAFETY: paired with before_fork, which ran on this (the only) thread
        // before fork, so this thread holds the GIL as PyOS_AfterFork_Child requires.
        unsafe {
            ffi::PyOS_AfterFork_Child();
            ffi::PyGILState_Release(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("3.11.7 (main, May 9 2026)"), Some((3, 11)));
        assert_eq!(parse_version(" 3.12.1.final.0"), Some((3, 12)));
        assert_eq!(parse_version("x"), None);
    }
}
