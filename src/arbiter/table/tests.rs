//! The arbiter's decisions without a process in sight (gunicorn's
//! `tests/test_arbiter.py` style): every case here is slow or flaky when
//! driven through signals and forks.

use super::*;

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

const SEGV: WaitStatus = WaitStatus::Signaled(Pid::from_raw(0), Signal::SIGSEGV, false);

fn exited(code: i32) -> WaitStatus {
    WaitStatus::Exited(Pid::from_raw(0), code)
}

/// A table with `n` ready workers of the current generation, pids 100...
fn ready_table(n: i32) -> WorkerTable {
    let mut t = WorkerTable::new();
    for i in 0..n {
        fork(&mut t, 100 + i);
        t.mark_ready(pid(100 + i));
    }
    t
}

fn fork(t: &mut WorkerTable, p: i32) {
    let age = t.next_age();
    let slot = (0..).find(|&s| !t.slot_in_use(s)).unwrap();
    t.insert(pid(p), slot, age);
}

/// Carry out a plan as the arbiter does, forking pids from `next_pid`.
fn apply(t: &mut WorkerTable, plan: &[Action], next_pid: &mut i32, now: u64) {
    for a in plan {
        match *a {
            Action::Spawn => {
                fork(t, *next_pid);
                *next_pid += 1;
            }
            Action::Retire(p) => t.retire(p, now + 30_000),
        }
    }
}

fn spawns(plan: &[Action]) -> usize {
    plan.iter().filter(|a| **a == Action::Spawn).count()
}

fn retired(plan: &[Action]) -> Vec<i32> {
    plan.iter()
        .filter_map(|a| match a {
            Action::Retire(p) => Some(p.as_raw()),
            Action::Spawn => None,
        })
        .collect()
}

/// Ready, running workers of any generation: those accepting connections.
fn accepting(t: &WorkerTable) -> usize {
    t.iter()
        .filter(|(_, w)| w.was_ready && w.state == WorkerState::Running)
        .count()
}

#[test]
fn starts_the_target_number_of_workers() {
    let t = WorkerTable::new();
    assert_eq!(t.plan(3, 0), vec![Action::Spawn; 3]);
    let t = ready_table(3);
    assert!(t.plan(3, 0).is_empty());
    assert!(!t.settling(3));
}

#[test]
fn backoff_grows_then_resets_once_a_worker_accepts() {
    let mut t = WorkerTable::new();
    let mut next = 1;
    let mut now = 1_000;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let plan = t.plan(1, now);
        assert_eq!(plan, vec![Action::Spawn], "at {now}");
        apply(&mut t, &plan, &mut next, now);
        let dead = pid(next - 1);
        let e = t.exited(dead, &SEGV, false, now).unwrap();
        let Some(Backoff::Delay { delay_ms, .. }) = e.backoff else {
            panic!("{e:?}")
        };
        delays.push(delay_ms);
        // Nothing is forked before the delay is up, then one is.
        assert!(t.plan(1, now + delay_ms - 1).is_empty());
        now += delay_ms;
    }
    assert_eq!(delays, vec![200, 400, 800, 1600]);
    assert_eq!(t.boot_failures(), 4);

    // A worker that accepts ends the crash loop: the next failure starts
    // the back-off from its first step again.
    let plan = t.plan(1, now);
    apply(&mut t, &plan, &mut next, now);
    assert!(t.mark_ready(pid(next - 1)));
    assert_eq!(t.boot_failures(), 0);
    let e = t.exited(pid(next - 1), &exited(0), false, now).unwrap();
    assert_eq!(e.backoff, None, "a clean exit is no boot failure");
    let plan = t.plan(1, now);
    apply(&mut t, &plan, &mut next, now);
    let e = t.exited(pid(next - 1), &exited(1), false, now).unwrap();
    assert_eq!(
        e.backoff,
        Some(Backoff::Delay {
            failures: 1,
            delay_ms: 200
        })
    );
}

#[test]
fn crash_loop_without_exit_code_3_gives_up_with_3() {
    // Workers killed by a signal, or exiting 1, before they accept: the
    // master stops after MAX_BOOT_FAILURES in a row, with exit code 3.
    for death in [SEGV, exited(1), exited(134)] {
        let mut t = WorkerTable::new();
        let mut next = 1;
        let mut now = 0;
        let mut last = None;
        for i in 1..=MAX_BOOT_FAILURES {
            let plan = t.plan(1, now);
            assert_eq!(spawns(&plan), 1, "failure {i} of {death:?}");
            apply(&mut t, &plan, &mut next, now);
            let e = t.exited(pid(next - 1), &death, false, now).unwrap();
            if i < MAX_BOOT_FAILURES {
                assert_eq!(e.report.halt, None, "{death:?} {i}");
            }
            now += 10_000;
            last = Some(e);
        }
        let last = last.unwrap();
        assert_eq!(
            last.backoff,
            Some(Backoff::GiveUp {
                failures: MAX_BOOT_FAILURES
            })
        );
        assert_eq!(last.report.halt, Some(WORKER_BOOT_ERROR_CODE), "{death:?}");
    }
}

const WORKER_BOOT_ERROR_CODE: i32 = WorkerExit::BootError as i32;

#[test]
fn deaths_that_are_not_boot_failures() {
    let mut t = ready_table(1);
    // A worker that had accepted, then crashed: replaced at once.
    let e = t.exited(pid(100), &SEGV, false, 0).unwrap();
    assert_eq!(e.backoff, None);
    assert_eq!(t.plan(1, 0), vec![Action::Spawn]);
    // A booting worker the master retired (TTOU) or stopped.
    let mut t = WorkerTable::new();
    fork(&mut t, 1);
    fork(&mut t, 2);
    t.retire(pid(1), 100);
    let kill = WaitStatus::Signaled(pid(1), Signal::SIGKILL, false);
    assert_eq!(t.exited(pid(1), &kill, false, 200).unwrap().backoff, None);
    assert_eq!(t.exited(pid(2), &kill, true, 200).unwrap().backoff, None);
    assert_eq!(t.boot_failures(), 0);
    // Not ours.
    assert!(t.exited(pid(77), &SEGV, false, 0).is_none());
}

#[test]
fn boot_and_app_load_errors_halt_at_once() {
    for (code, text) in [(3, "Worker failed to boot."), (4, "App failed to load.")] {
        let mut t = WorkerTable::new();
        fork(&mut t, 1);
        let e = t.exited(pid(1), &exited(code), false, 0).unwrap();
        assert_eq!(e.report.halt, Some(code));
        assert!(e.report.message.contains(text), "{}", e.report.message);
        assert_eq!(e.report.level, log::Level::Error);
    }
}

#[test]
fn hup_rolls_generations_over_without_a_dip() {
    let mut t = ready_table(2);
    let mut next = 200;
    t.new_generation();
    // New workers are forked; no old one leaves before a new one accepts.
    let plan = t.plan(2, 0);
    assert_eq!(plan, vec![Action::Spawn; 2]);
    apply(&mut t, &plan, &mut next, 0);
    assert!(t.plan(2, 0).is_empty());
    assert!(t.settling(2));
    // Each new worker that accepts retires one old worker, the oldest first.
    assert!(t.mark_ready(pid(200)));
    let plan = t.plan(2, 0);
    assert_eq!(retired(&plan), vec![100]);
    apply(&mut t, &plan, &mut next, 0);
    assert_eq!(accepting(&t), 2);
    assert!(t.mark_ready(pid(201)));
    let plan = t.plan(2, 0);
    assert_eq!(retired(&plan), vec![101]);
    apply(&mut t, &plan, &mut next, 0);
    assert_eq!(accepting(&t), 2);
    assert!(t.plan(2, 0).is_empty());
    let w = t.get(pid(100)).unwrap();
    assert!(matches!(
        w.state,
        WorkerState::Retiring {
            why: Retire::Reload,
            ..
        }
    ));
}

#[test]
fn second_hup_before_the_first_one_is_ready_keeps_the_ready_workers() {
    let mut t = ready_table(2);
    let mut next = 200;
    t.new_generation();
    let plan = t.plan(2, 0);
    apply(&mut t, &plan, &mut next, 0); // 200, 201: booting
    t.new_generation();
    let plan = t.plan(2, 0);
    // The half-booted generation is retired; the ready one keeps serving.
    assert_eq!(spawns(&plan), 2);
    assert_eq!(retired(&plan), vec![200, 201]);
    apply(&mut t, &plan, &mut next, 0); // 202, 203
    assert_eq!(accepting(&t), 2);
    t.mark_ready(pid(202));
    let plan = t.plan(2, 0);
    assert_eq!(retired(&plan), vec![100]);
    apply(&mut t, &plan, &mut next, 0);
    assert_eq!(accepting(&t), 2);
}

#[test]
fn hup_with_a_new_worker_count() {
    let mut t = ready_table(3);
    let mut next = 200;
    t.new_generation();
    // Down to 1: one new worker, and the old ones beyond one are surplus
    // at once; the newest old one serves until the new worker accepts.
    let plan = t.plan(1, 0);
    assert_eq!(spawns(&plan), 1);
    assert_eq!(retired(&plan), vec![100, 101]);
    apply(&mut t, &plan, &mut next, 0);
    assert_eq!(accepting(&t), 1);
    assert!(t.plan(1, 0).is_empty());
    t.mark_ready(pid(200));
    assert_eq!(t.plan(1, 0), vec![Action::Retire(pid(102))]);
}

#[test]
fn ttin_and_ttou_bounds() {
    assert_eq!(more_workers(1), 2);
    assert_eq!(more_workers(MAX_WORKERS - 1), MAX_WORKERS);
    assert_eq!(more_workers(MAX_WORKERS), MAX_WORKERS);
    assert_eq!(fewer_workers(3), 2);
    assert_eq!(fewer_workers(1), 1);
    // TTIN forks one more; TTOU retires the oldest.
    let mut t = ready_table(2);
    assert_eq!(t.plan(more_workers(2), 0), vec![Action::Spawn]);
    let plan = t.plan(fewer_workers(2), 0);
    assert_eq!(plan, vec![Action::Retire(pid(100))]);
    let mut next = 300;
    apply(&mut t, &plan, &mut next, 0);
    assert!(matches!(
        t.get(pid(100)).unwrap().state,
        WorkerState::Retiring {
            why: Retire::Shrink,
            ..
        }
    ));
    // WINCH (no workers): everything is retired.
    let t = ready_table(2);
    assert_eq!(retired(&t.plan(0, 0)), vec![100, 101]);
}

#[test]
fn timeout_during_a_reload() {
    let timeout = 5_000;
    let now = 100_000;
    let mut t = ready_table(2); // slots 0 and 1
    t.new_generation();
    let mut next = 200;
    let plan = t.plan(2, now);
    apply(&mut t, &plan, &mut next, now); // 200 (slot 2), 201 (slot 3): booting
    t.mark_ready(pid(200));
    let plan = t.plan(2, now);
    assert_eq!(retired(&plan), vec![100]);
    for a in &plan {
        if let Action::Retire(p) = a {
            t.retire(*p, now + 1_000);
        }
    }
    let beats = |slot: usize| match slot {
        // 100: retiring, still in a long app call.
        0 => Beat {
            busy_since_ms: now - 6_000,
            tick_ms: now - 6_000,
        },
        // 101: old, running, idle and turning.
        1 => Beat {
            busy_since_ms: 0,
            tick_ms: now - 500,
        },
        // 200: new, ready, in the app for exactly --timeout: not yet.
        2 => Beat {
            busy_since_ms: now - timeout,
            tick_ms: now - timeout,
        },
        // 201: new, still loading its app long past --timeout.
        _ => Beat {
            busy_since_ms: 0,
            tick_ms: now - timeout - 2_001,
        },
    };
    let mut over = t.overdue(now, timeout, beats);
    over.sort_by_key(|o| match o {
        Overdue::Kill(p) | Overdue::Abort { pid: p, .. } => p.as_raw(),
    });
    assert_eq!(
        over,
        vec![
            Overdue::Abort {
                pid: pid(100),
                age: 1,
                in_app_ms: Some(6_000)
            },
            Overdue::Abort {
                pid: pid(201),
                age: 4,
                in_app_ms: None
            },
        ]
    );
    // Aborted workers get SIGKILL after the grace, and only then (the
    // others meanwhile idle, their loops turning).
    let later = |_| Beat {
        busy_since_ms: 0,
        tick_ms: now + 1_000,
    };
    assert!(
        t.overdue(now + ABORT_GRACE_MS - 1, timeout, later)
            .is_empty()
    );
    let kills = t.overdue(now + ABORT_GRACE_MS, timeout, later);
    assert_eq!(
        kills,
        vec![Overdue::Kill(pid(100)), Overdue::Kill(pid(201))]
    );
    // The aborted new worker is replaced at once; the old ready one stays
    // until a second new worker accepts.
    let plan = t.plan(2, now);
    assert_eq!(plan, vec![Action::Spawn]);
    assert_eq!(accepting(&t), 2); // 101 and 200
}

#[test]
fn retiring_worker_is_killed_at_its_deadline_even_without_timeout() {
    let mut t = ready_table(1);
    t.retire(pid(100), 5_000);
    assert!(t.overdue(4_999, 0, |_| Beat::default()).is_empty());
    assert_eq!(
        t.overdue(5_000, 0, |_| Beat::default()),
        vec![Overdue::Kill(pid(100))]
    );
}

#[test]
fn a_worker_asking_to_retire_is_replaced_first() {
    let mut t = ready_table(2);
    let mut next = 200;
    assert!(t.request_retire(pid(101)));
    assert!(!t.request_retire(pid(101)), "once is news");
    let plan = t.plan(2, 0);
    assert_eq!(plan, vec![Action::Spawn], "kept until replaced");
    apply(&mut t, &plan, &mut next, 0);
    assert!(t.plan(2, 0).is_empty());
    assert_eq!(accepting(&t), 2);
    t.mark_ready(pid(200));
    let plan = t.plan(2, 0);
    assert_eq!(plan, vec![Action::Retire(pid(101))]);
    apply(&mut t, &plan, &mut next, 0);
    assert_eq!(accepting(&t), 2);
    assert!(matches!(
        t.get(pid(101)).unwrap().state,
        WorkerState::Retiring {
            why: Retire::Requested,
            ..
        }
    ));
    let e = t.exited(pid(101), &exited(0), false, 0).unwrap();
    assert_eq!(
        e.report.message,
        "Worker (pid:101) exited, status 0: retired at its request"
    );
}

#[test]
fn classify_exit_names_the_cause() {
    let p = pid(42);
    let kill = WaitStatus::Signaled(p, Signal::SIGKILL, false);
    let running = WorkerState::Running;
    let aborted = WorkerState::Aborted { deadline_ms: 0 };
    let retiring = WorkerState::Retiring {
        deadline_ms: 0,
        why: Retire::Reload,
    };
    let r = classify_exit(p, &kill, running, false);
    assert_eq!(
        r.message,
        "Worker (pid:42) was sent SIGKILL! Perhaps out of memory?"
    );
    assert_eq!(r.level, log::Level::Error);
    // Our own SIGKILL at a deadline is not an out-of-memory kill.
    for (state, stopping) in [(retiring, false), (aborted, false), (running, true)] {
        let r = classify_exit(p, &kill, state, stopping);
        assert!(!r.message.contains("memory"), "{}", r.message);
        assert_eq!(r.level, log::Level::Warn);
    }
    let r = classify_exit(p, &exited(134), aborted, false);
    assert!(r.message.contains("SIGABRT after WORKER TIMEOUT"), "{r:?}");
    let core = WaitStatus::Signaled(p, Signal::SIGSEGV, true);
    assert_eq!(
        classify_exit(p, &core, running, false).message,
        "Worker (pid:42) was sent SIGSEGV! (core dumped)"
    );
    let r = classify_exit(p, &exited(0), running, true);
    assert_eq!(
        r.message,
        "Worker (pid:42) exited, status 0: server stopping"
    );
    assert!(r.clean && r.halt.is_none() && r.level == log::Level::Info);
    let r = classify_exit(p, &exited(0), retiring, false);
    assert!(r.message.ends_with("replaced by a new generation"), "{r:?}");
    let r = classify_exit(p, &exited(2), running, false);
    assert_eq!(
        r.message,
        "Worker (pid:42) exited with code 2 (left on its own)"
    );
    assert!(!r.clean && r.halt.is_none());
}

#[test]
fn crash_loop_backs_off_then_gives_up() {
    let delays: Vec<Option<u64>> = (1..=MAX_BOOT_FAILURES).map(boot_backoff_ms).collect();
    assert_eq!(delays[0], Some(200));
    assert_eq!(delays[1], Some(400));
    for w in delays.windows(2) {
        if let (Some(a), Some(b)) = (w[0], w[1]) {
            assert!(b >= a, "{delays:?}");
        }
    }
    assert!(delays.iter().flatten().all(|&d| d <= 5_000), "{delays:?}");
    assert_eq!(boot_backoff_ms(MAX_BOOT_FAILURES), None);
    assert_eq!(boot_backoff_ms(MAX_BOOT_FAILURES + 5), None);
    // The whole back-off before giving up is bounded (about half a minute).
    let total: u64 = (1..MAX_BOOT_FAILURES).filter_map(boot_backoff_ms).sum();
    assert!(total < 40_000, "{total}");
}
