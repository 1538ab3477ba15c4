//! Helpers for tests/hardening_*.rs and tests/accept_balance.rs.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The scheduler state letter of `pid` (`R`, `S`, `T` stopped, ...).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// SIGSTOP `pid` and wait until it is stopped. `kill` returns before the
/// target stops: a worker sleeping in `epoll_wait` can still be woken for
/// the next connection, and then stop holding it, unaccepted, until SIGCONT.
#[track_caller]
pub fn stop_process(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    assert!(
        super::wait_until(Duration::from_secs(10), || proc_state(pid) == Some('T')),
        "{pid} did not stop: state {:?}",
        proc_state(pid)
    );
}

/// SIGCONT a process stopped by [`stop_process`].
pub fn continue_process(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
}
