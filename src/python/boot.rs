//! Why an app did not load, in one line, and said once.
//!
//! Every worker imports the app after fork, so nine workers meeting the same
//! missing module would log the same traceback nine times. The first worker
//! to fail reports it (one line: the exception, the module it names and
//! `sys.path`); the others exit with the same code, quietly. The full
//! traceback goes to the debug log.

use std::io::{PipeReader, PipeWriter, Read, Write};

use pyo3::prelude::*;

/// A one-byte token, written by the master before any fork: the worker
/// that reads it is the one that reports. The write end is closed at once,
/// so every later read sees end-of-file instead of blocking.
///
/// The workers that lose wait until the winner has logged its line before
/// they exit: the master stops on the first exit code 4 it reaps and takes
/// the other workers down with it, and a loser exiting first would take the
/// winner down before its line was written (seen as a start that logged
/// nothing).
pub(crate) struct ReportOnce {
    token: PipeReader,
    reported_rx: PipeReader,
    reported_tx: PipeWriter,
}

/// How long a losing worker waits for the winner's line: a bound, in case
/// the winner dies without writing it.
const REPORT_WAIT_MS: u16 = 10_000;

impl ReportOnce {
    pub(crate) fn new() -> std::io::Result<ReportOnce> {
        let (token, mut tx) = std::io::pipe()?;
        tx.write_all(b"!")?;
        let (reported_rx, reported_tx) = std::io::pipe()?;
        Ok(ReportOnce {
            token,
            reported_rx,
            reported_tx,
        })
    }

    /// True for the first caller across all processes sharing the token.
    pub(crate) fn claim(&self) -> bool {
        let mut b = [0u8];
        matches!((&self.token).read(&mut b), Ok(1))
    }

    /// The winner has written its line: the losers may exit now.
    pub(crate) fn reported(&self) {
        let _ = (&self.reported_tx).write_all(b"!");
    }

    /// A loser: wait (bounded) until the winner has written its line. The
    /// byte is never read, so it wakes every loser.
    pub(crate) fn wait_for_report(&self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let deadline = crate::clock::monotonic_ms() + u64::from(REPORT_WAIT_MS);
        loop {
            let left = deadline.saturating_sub(crate::clock::monotonic_ms());
            if left == 0 {
                return;
            }
            let mut fds = [PollFd::new(self.reported_rx.as_fd(), PollFlags::POLLIN)];
            match poll(
                &mut fds,
                PollTimeout::from(left.min(u64::from(REPORT_WAIT_MS)) as u16),
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                _ => return,
            }
        }
    }
}

/// One line for an exception raised by importing `spec`: its type and
/// message; for a missing module the module and `sys.path`; otherwise the
/// file and line it was raised at. The traceback is logged at debug level.
pub(crate) fn describe(py: Python<'_>, spec: &str, err: &PyErr) -> String {
    if log::log_enabled!(log::Level::Debug) {
        let tb = err
            .traceback(py)
            .and_then(|t| t.format().ok())
            .unwrap_or_default();
        log::debug!("importing {spec} failed:\n{tb}{err}");
    }
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let head = if message.is_empty() {
        kind
    } else {
        format!("{kind}: {message}")
    };
    if err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
        let module: Option<String> = err
            .value(py)
            .getattr("name")
            .ok()
            .and_then(|n| n.extract().ok());
        let top = spec.split([':', '.']).next().unwrap_or(spec);
        let hint = if module.as_deref() == Some(top) {
            "; run ferricorn in the directory that holds it, or use --chdir or --pythonpath"
        } else {
            ""
        };
        return format!("{head} (sys.path: {}){hint}", sys_path(py));
    }
    match raised_at(py, err) {
        Some(at) => format!("{head} ({at}; --log-level debug shows the traceback)"),
        None => head,
    }
}

fn sys_path(py: Python<'_>) -> String {
    py.import("sys")
        .and_then(|s| s.getattr("path"))
        .and_then(|p| p.repr())
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `File "...", line N` of the innermost frame.
fn raised_at(py: Python<'_>, err: &PyErr) -> Option<String> {
    let tb = err.traceback(py)?;
    let frames = py
        .import("traceback")
        .and_then(|m| m.call_method1("extract_tb", (tb,)))
        .ok()?;
    let last = frames.get_item(-1).ok()?;
    let file: String = last.getattr("filename").ok()?.extract().ok()?;
    let line: u32 = last.getattr("lineno").ok()?.extract().ok()?;
    Some(format!("File \"{file}\", line {line}"))
}

#[cfg(test)]
mod tests {
    use super::ReportOnce;

    #[test]
    fn only_the_first_claim_reports() {
        let once = ReportOnce::new().unwrap();
        assert!(once.claim());
        // Forked workers share the pipe: every later claim, in any process,
        // reads end-of-file.
        assert!(!once.claim());
        assert!(!once.claim());
    }

    #[test]
    fn a_loser_waits_for_the_report() {
        let once = ReportOnce::new().unwrap();
        assert!(once.claim());
        let start = std::time::Instant::now();
        once.reported();
        once.wait_for_report();
        once.wait_for_report();
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
