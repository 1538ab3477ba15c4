//! Only for `--features python`: record an rpath to the libpython that pyo3
//! links against, so the binary loads that same library at run time rather
//! than whatever libpython3.X.so the system loader finds first (e.g. a pyenv
//! or /opt build linked, and the distribution's /usr/lib copy loaded). The
//! default build does nothing here.
//!
//! The interpreter is chosen as pyo3's build does: PYO3_PYTHON, else
//! $VIRTUAL_ENV/bin/python, else python3 on PATH.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let python = std::env::var("PYO3_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            std::env::var("VIRTUAL_ENV")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{v}/bin/python"))
        })
        .unwrap_or_else(|| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; v = sysconfig.get_config_var; \
             print(v('Py_ENABLE_SHARED') or 0); print(v('LIBDIR') or '')",
        ])
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("cargo:warning=cannot run {python} to find libpython's directory; no rpath set");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let shared = lines.next().unwrap_or("0").trim() == "1";
    let libdir = lines.next().unwrap_or("").trim();
    if shared && !libdir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    }
}
