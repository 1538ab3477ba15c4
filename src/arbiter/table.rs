//! The arbiter's decisions, as pure functions of its worker table and the
//! time (gunicorn tests its `Arbiter` the same way, in `test_arbiter.py`):
//! what to start or retire now ([`WorkerTable::plan`]), which workers are
//! overdue ([`WorkerTable::overdue`]), what a worker's exit means
//! ([`classify_exit`]) and how the crash-loop back-off moves
//! ([`WorkerTable::exited`]). Nothing here forks, signals or reads a clock:
//! the arbiter feeds in what it observed and carries out the result, so
//! every case is a unit test instead of a process test.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::signals;
use crate::worker::WorkerExit;

/// Consecutive workers dying before they accept, before the master gives up.
pub const MAX_BOOT_FAILURES: u32 = 10;
/// Scoreboard rows: the most workers one master can run at once.
pub const MAX_WORKERS: usize = 1024;
/// How long an aborted (timed-out) worker gets before SIGKILL.
pub const ABORT_GRACE_MS: u64 = 2_000;
/// A worker whose loop has not turned for `--timeout` plus this long is
/// stuck outside the app (the loop stamps its row at least once a second).
const STALL_SLACK_MS: u64 = 2_000;
/// After a failed fork, wait this long before trying again.
const FORK_RETRY_MS: u64 = 1_000;

/// Why the master retires a worker (for the log line of its exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// An older generation (HUP), replaced by a ready new worker.
    Reload,
    /// Fewer workers wanted (TTOU, WINCH).
    Shrink,
    /// The worker asked (its scoreboard row's `retire` flag: --max-requests,
    /// or whatever else makes a worker want a fresh successor).
    Requested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Running,
    /// Sent TERM; will be SIGKILLed at the deadline.
    Retiring {
        deadline_ms: u64,
        why: Retire,
    },
    /// Sent SIGABRT for a timeout; SIGKILL at the deadline.
    Aborted {
        deadline_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEntry {
    pub age: u64,
    pub slot: usize,
    pub generation: u64,
    pub state: WorkerState,
    /// Has this worker ever reported ready (accepting)?
    pub was_ready: bool,
    /// Has it asked to be retired (scoreboard `retire` flag)?
    pub wants_retire: bool,
}

impl WorkerEntry {
    fn running(&self) -> bool {
        self.state == WorkerState::Running
    }
}

/// What the arbiter should do now to reach its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Spawn,
    Retire(Pid),
}

/// A worker's heartbeat, as read from its scoreboard row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Beat {
    /// When its current app call began; 0 when not in the app.
    pub busy_since_ms: u64,
    /// Its event loop's last turn.
    pub tick_ms: u64,
}

/// A worker past a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// Past its retire or abort deadline: SIGKILL.
    Kill(Pid),
    /// Past `--timeout`: SIGABRT (the table now holds it as `Aborted`).
    /// `in_app_ms` is how long it has been in the app; `None` when its
    /// event loop stopped turning outside the app.
    Abort {
        pid: Pid,
        age: u64,
        in_app_ms: Option<u64>,
    },
}

/// What a worker's exit means: the line to log and whether the master must
/// stop (exit codes 3 and 4 cannot be cured by forking again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    pub level: log::Level,
    pub message: String,
    /// Stop the master with this exit code.
    pub halt: Option<i32>,
    /// Exited with status 0.
    pub clean: bool,
}

/// The crash-loop back-off after a worker died before accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `failures` in a row: the next start waits `delay_ms`.
    Delay { failures: u32, delay_ms: u64 },
    /// Too many in a row: the master gives up with exit code 3.
    GiveUp { failures: u32 },
}

/// A reaped worker: its row as it was, what its exit means, and the back-off
/// it caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub entry: WorkerEntry,
    pub report: ExitReport,
    pub backoff: Option<Backoff>,
}

/// The master's workers, generations and crash-loop state.
#[derive(Debug, Default)]
pub struct WorkerTable {
    workers: BTreeMap<Pid, WorkerEntry>,
    generation: u64,
    age: u64,
    boot_failures: u32,
    next_spawn_ms: u64,
}

impl WorkerTable {
    pub fn new() -> WorkerTable {
        WorkerTable::default()
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub fn get(&self, pid: Pid) -> Option<&WorkerEntry> {
        self.workers.get(&pid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Pid, &WorkerEntry)> {
        self.workers.iter().map(|(p, w)| (*p, w))
    }

    pub fn pids(&self) -> Vec<Pid> {
        self.workers.keys().copied().collect()
    }

    pub fn boot_failures(&self) -> u32 {
        self.boot_failures
    }

    /// Is a scoreboard row taken by a worker of this table?
    pub fn slot_in_use(&self, slot: usize) -> bool {
        self.workers.values().any(|w| w.slot == slot)
    }

    /// The age the next forked worker gets (1, 2, ...).
    pub fn next_age(&mut self) -> u64 {
        self.age += 1;
        self.age
    }

    /// A worker was forked into `slot`.
    pub fn insert(&mut self, pid: Pid, slot: usize, age: u64) {
        self.workers.insert(
            pid,
            WorkerEntry {
                age,
                slot,
                generation: self.generation,
                state: WorkerState::Running,
                was_ready: false,
                wants_retire: false,
            },
        );
    }

    /// Forget a worker without judging its exit (the master is halting).
    pub fn remove(&mut self, pid: Pid) -> Option<WorkerEntry> {
        self.workers.remove(&pid)
    }

    /// HUP: workers forked from now on belong to a new generation; the old
    /// ones are retired as new ones become ready.
    pub fn new_generation(&mut self) {
        self.generation += 1;
    }

    /// The worker's row says it accepts. The first time, the crash loop is
    /// over: the back-off starts again from its first step. Returns whether
    /// this is news.
    pub fn mark_ready(&mut self, pid: Pid) -> bool {
        match self.workers.get_mut(&pid) {
            Some(w) if !w.was_ready => {
                w.was_ready = true;
                self.boot_failures = 0;
                true
            }
            _ => false,
        }
    }

    /// The worker's row asks for retirement. Returns whether this is news.
    pub fn request_retire(&mut self, pid: Pid) -> bool {
        match self.workers.get_mut(&pid) {
            Some(w) if !w.wants_retire => {
                w.wants_retire = true;
                true
            }
            _ => false,
        }
    }

    /// Ready, running workers of the current generation that did not ask to
    /// leave: the ones that count towards the target.
    pub fn ready_current(&self) -> usize {
        self.workers
            .values()
            .filter(|w| self.is_current(w) && w.was_ready)
            .count()
    }

    /// Is anything still on its way (a worker to fork, one not accepting yet,
    /// one leaving)? The master then looks again soon.
    pub fn settling(&self, target: usize) -> bool {
        self.workers.values().filter(|w| self.is_current(w)).count() != target
            || self
                .workers
                .values()
                .any(|w| !w.was_ready || !w.running() || w.wants_retire)
    }

    fn is_current(&self, w: &WorkerEntry) -> bool {
        w.generation == self.generation && w.running() && !w.wants_retire
    }

    /// What to start or retire now so that `target` workers of the current
    /// generation run, and no older (or retiring-by-request) worker is kept
    /// once a ready current one can take its place:
    /// - fork up to `target` current workers, unless the crash-loop back-off
    ///   says to wait;
    /// - retire the oldest current workers beyond `target` (TTOU, WINCH);
    /// - retire an old worker only for each ready current one, so the number
    ///   of accepting workers never drops during a reload or a recycle.
    pub fn plan(&self, target: usize, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut current: Vec<(u64, Pid, bool)> = self
            .workers
            .iter()
            .filter(|(_, w)| self.is_current(w))
            .map(|(p, w)| (w.age, *p, w.was_ready))
            .collect();
        current.sort();
        if current.len() < target && now_ms >= self.next_spawn_ms {
            actions.extend((current.len()..target).map(|_| Action::Spawn));
        }
        let extra = current.len().saturating_sub(target);
        actions.extend(current[..extra].iter().map(|(_, p, _)| Action::Retire(*p)));
        let ready_current = current[extra..].iter().filter(|(_, _, r)| *r).count();

        // Old workers that never became ready serve no one: retire them
        // first (a second HUP before the first one's workers were ready).
        // Of the ready ones, keep the newest as long as they are needed.
        let mut old: Vec<(bool, u64, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.running() && !self.is_current(w))
            .map(|(p, w)| (w.was_ready, w.age, *p))
            .collect();
        old.sort();
        let ready_old = old.iter().filter(|(r, _, _)| *r).count();
        let keep_old = target.saturating_sub(ready_current).min(ready_old);
        let retire = old.len() - keep_old;
        actions.extend(old[..retire].iter().map(|(_, _, p)| Action::Retire(*p)));
        actions
    }

    /// The master sent TERM to `pid`, to be SIGKILLed at `deadline_ms`.
    pub fn retire(&mut self, pid: Pid, deadline_ms: u64) {
        let generation = self.generation;
        if let Some(w) = self.workers.get_mut(&pid) {
            let why = if w.wants_retire {
                Retire::Requested
            } else if w.generation != generation {
                Retire::Reload
            } else {
                Retire::Shrink
            };
            w.state = WorkerState::Retiring { deadline_ms, why };
        }
    }

    /// fork() failed: try again a little later.
    pub fn spawn_failed(&mut self, now_ms: u64) {
        self.next_spawn_ms = now_ms + FORK_RETRY_MS;
    }

    /// Workers past a deadline at `now_ms`: retiring or aborted ones past
    /// theirs (kill), and running or retiring ones in the app for longer
    /// than `timeout_ms`, or whose loop stopped turning (abort; 0 disables).
    /// Time reading a slow upload is not time in the app, so it never counts.
    pub fn overdue(
        &mut self,
        now_ms: u64,
        timeout_ms: u64,
        beat: impl Fn(usize) -> Beat,
    ) -> Vec<Overdue> {
        let mut out = Vec::new();
        for (&pid, w) in self.workers.iter_mut() {
            match w.state {
                WorkerState::Aborted { deadline_ms }
                | WorkerState::Retiring { deadline_ms, .. }
                    if now_ms >= deadline_ms =>
                {
                    out.push(Overdue::Kill(pid));
                    continue;
                }
                WorkerState::Aborted { .. } => continue,
                _ => {}
            }
            if timeout_ms == 0 {
                continue;
            }
            let b = beat(w.slot);
            let in_app = (b.busy_since_ms != 0).then(|| now_ms.saturating_sub(b.busy_since_ms));
            let stuck_in_app = in_app.is_some_and(|ms| ms > timeout_ms);
            let loop_stalled =
                in_app.is_none() && now_ms.saturating_sub(b.tick_ms) > timeout_ms + STALL_SLACK_MS;
            if stuck_in_app || loop_stalled {
                w.state = WorkerState::Aborted {
                    deadline_ms: now_ms + ABORT_GRACE_MS,
                };
                out.push(Overdue::Abort {
                    pid,
                    age: w.age,
                    in_app_ms: in_app,
                });
            }
        }
        out
    }

    /// `pid` was reaped with `status` at `now_ms`. Removes it, judges the
    /// exit and moves the crash-loop back-off: a worker that dies before it
    /// ever accepted (while the master runs, and not because the master
    /// retired it) is a boot failure; `None` for a pid not in the table.
    pub fn exited(
        &mut self,
        pid: Pid,
        status: &WaitStatus,
        stopping: bool,
        now_ms: u64,
    ) -> Option<Exited> {
        let entry = self.workers.remove(&pid)?;
        let mut report = classify_exit(pid, status, entry.state, stopping);
        let retired = matches!(entry.state, WorkerState::Retiring { .. });
        let mut backoff = None;
        if !entry.was_ready && !report.clean && !retired && !stopping {
            self.boot_failures += 1;
            backoff = Some(match boot_backoff_ms(self.boot_failures) {
                Some(delay_ms) => {
                    self.next_spawn_ms = now_ms + delay_ms;
                    Backoff::Delay {
                        failures: self.boot_failures,
                        delay_ms,
                    }
                }
                None => {
                    report.halt.get_or_insert(WorkerExit::BootError as i32);
                    Backoff::GiveUp {
                        failures: self.boot_failures,
                    }
                }
            });
        }
        Some(Exited {
            entry,
            report,
            backoff,
        })
    }
}

/// One worker more (TTIN), up to the scoreboard's size.
pub fn more_workers(n: usize) -> usize {
    (n + 1).min(MAX_WORKERS)
}

/// One worker fewer (TTOU), never below one.
pub fn fewer_workers(n: usize) -> usize {
    if n > 1 { n - 1 } else { n }
}

/// Delay before the next worker start after `failures` workers in a row
/// died before accepting: 200 ms, doubling, at most 5 s; `None` once
/// [`MAX_BOOT_FAILURES`] is reached and the master should give up.
pub fn boot_backoff_ms(failures: u32) -> Option<u64> {
    if failures >= MAX_BOOT_FAILURES {
        return None;
    }
    Some((100u64 << failures.min(6)).min(5_000))
}

/// What a worker's wait status means, given what the master knew of it:
/// the one log line of its exit (the worker does not log its own exit) and
/// whether the master must stop.
pub fn classify_exit(
    pid: Pid,
    status: &WaitStatus,
    state: WorkerState,
    stopping: bool,
) -> ExitReport {
    use log::Level::{Error, Info, Warn};
    let aborted = matches!(state, WorkerState::Aborted { .. });
    let killed_by_us = match state {
        WorkerState::Aborted { .. } | WorkerState::Retiring { .. } => true,
        WorkerState::Running => stopping,
    };
    let why = match state {
        WorkerState::Retiring { why, .. } => match why {
            Retire::Reload => "retired: replaced by a new generation",
            Retire::Shrink => "retired: fewer workers wanted",
            Retire::Requested => "retired at its request",
        },
        WorkerState::Aborted { .. } => "aborted after WORKER TIMEOUT",
        WorkerState::Running if stopping => "server stopping",
        WorkerState::Running => "left on its own",
    };
    let (level, message, halt) = match *status {
        WaitStatus::Exited(_, 0) => (
            Info,
            format!("Worker (pid:{pid}) exited, status 0: {why}"),
            None,
        ),
        WaitStatus::Exited(_, 134) if aborted => (
            Error,
            format!("Worker (pid:{pid}) was sent SIGABRT after WORKER TIMEOUT (status 134)"),
            None,
        ),
        WaitStatus::Exited(_, code) => match WorkerExit::from_code(code) {
            Some(e @ (WorkerExit::BootError | WorkerExit::AppLoadError)) => (
                Error,
                format!(
                    "Worker (pid:{pid}) exited with code {code}: {}",
                    if e == WorkerExit::AppLoadError {
                        "App failed to load."
                    } else {
                        "Worker failed to boot."
                    }
                ),
                Some(code),
            ),
            _ => (
                Error,
                format!("Worker (pid:{pid}) exited with code {code} ({why})"),
                None,
            ),
        },
        WaitStatus::Signaled(_, Signal::SIGKILL, _) if killed_by_us => (
            Warn,
            format!("Worker (pid:{pid}) was sent SIGKILL by the master: {why}, past its deadline"),
            None,
        ),
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => (
            Error,
            format!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?"),
            None,
        ),
        WaitStatus::Signaled(_, sig, core) => (
            Error,
            format!(
                "Worker (pid:{pid}) was sent {}!{}",
                signals::name(sig),
                if core { " (core dumped)" } else { "" }
            ),
            None,
        ),
        ref other => (Warn, format!("Worker (pid:{pid}) ended: {other:?}"), None),
    };
    ExitReport {
        level,
        message,
        halt,
        clean: matches!(status, WaitStatus::Exited(_, 0)),
    }
}

/// A wait status in words, for processes that are not workers (the new
/// master of an upgrade).
pub fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exit code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("killed by {}", signals::name(*s)),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
