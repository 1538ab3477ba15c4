//! The Python tests' virtualenv (tests/python/setup-venv.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo;

/// The Python tests' virtualenv, created on first use by
/// tests/python/setup-venv.sh (a no-op when it is up to date).
pub fn venv() -> &'static Path {
    static V: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(repo().join("tests/python/setup-venv.sh"))
            .output()
            .expect("run tests/python/setup-venv.sh");
        assert!(
            out.status.success(),
            "setup-venv.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}
