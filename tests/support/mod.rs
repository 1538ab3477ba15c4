//! Shared helpers for the integration tests, split by concept; every name is
//! re-exported here so that tests write `mod support; use support::*;`.
//!
//! - [`server`]: start/stop the real binary ([`Server`], [`ServerBuilder`]).
//! - [`client`]: the raw client ([`Client`], [`HttpResponse`], [`get`]).
//! - [`load`]: the keep-alive load generator ([`Load`]).
//! - [`nginx`]: a real nginx in front ([`Nginx`]).
//! - [`python`]: the virtualenv for the WSGI tests ([`venv`]).
//! - [`codec`]: base64 and CRC-32 written independently of the server.
//! - [`procfs`]: processes, signals, memory and sockets from /proc.
//!
//! Below: what every concept uses (temp dirs, free ports, polling a condition).
#![allow(dead_code)]

pub mod client;
pub mod codec;
pub mod hardening;
pub mod load;
pub mod nginx;
pub mod postgres;
pub mod procfs;
pub mod python;
pub mod runtime;
pub mod server;
pub mod ws;

// Each test crate uses some of these; the others would warn as unused.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use codec::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use procfs::*;
#[allow(unused_imports)]
pub use python::*;
#[allow(unused_imports)]
pub use server::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ferricorn-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 found free (bound and released), for a server
/// that must bind it itself. Racy by nature: prefer a listener passed as
/// `fd://3`, and start again on a fresh port when the server says the
/// port is taken ([`ServerBuilder::bind_port`] does). It is picked at random
/// below the kernel's ephemeral range (32768-60999), where every client
/// socket of every test gets its local port: a port from `bind(:0)` is
/// from that range, and under loopback load a connection took one in the
/// moment between the test's release and the server's bind.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for i in 0u64.. {
        let mut h = state.build_hasher();
        h.write_u64(i);
        let port = 10_000 + (h.finish() % 22_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    unreachable!()
}

/// How long to wait for a server to close a connection it should close now
/// (after an error response or `Connection: close`). A bound for a failing
/// test, not a speed: far below the 75 s `--keep-alive` default that a server
/// which forgot to close would hold the connection for, and far above what a
/// loaded 2-core machine needs.
pub const EOF_WITHIN: Duration = Duration::from_secs(20);

/// Poll `cond` until true or `timeout`; returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a file (empty if missing).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Fail loudly unless the tests run as root (CI does): privilege and
/// permission tests must never pass by skipping.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what}: this test must run as root (CI runs the suite as root); it \
         switches users and changes file ownership. Not skipped: failing."
    );
}

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
