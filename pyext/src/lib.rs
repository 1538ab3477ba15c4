//! `ferricorn._ferricorn`: the pip package's way into ferricorn. The
//! `ferricorn` console script (python/ferricorn/cli.py) calls [`main`] with
//! its arguments, in the virtualenv's own interpreter: `sys.prefix`,
//! `sys.executable` and site-packages are the venv's by construction, so
//! nothing (VIRTUAL_ENV, PYTHONHOME, activate) has to point at it.

use pyo3::prelude::*;

#[pymodule]
mod _ferricorn {
    use pyo3::prelude::*;

    /// Run ferricorn as its binary would (`ferricorn ARGS...`) and return the
    /// exit code. The interpreter's lock is released for the whole run: the
    /// master and each worker take it only while they run Python code.
    #[pyfunction]
    fn main(py: Python<'_>, args: Vec<String>) -> i32 {
        py.detach(move || ferricorn::cli::main(&args))
    }

    /// ferricorn's version (`ferricorn.__version__`).
    #[pymodule_export]
    const VERSION: &str = ferricorn::cli::VERSION;
}
