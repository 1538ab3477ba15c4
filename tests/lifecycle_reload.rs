//! Reloading in place: HUP rolls the workers over with no failed request,
//! TTIN/TTOU change the worker count, USR1 reopens the logs.
mod support;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// HUP twice under keep-alive load, the second time after the config file
/// changed `workers`: zero failed requests, all workers replaced.
#[test]
fn hup_reloads_config_and_replaces_workers_without_failures() {
    hup_reloads_config_and_replaces_workers(&[]);
}

/// The same with the app on threads (`--threads 4`).
#[test]
fn hup_reloads_config_and_replaces_workers_without_failures_threads() {
    hup_reloads_config_and_replaces_workers(&["--threads", "4"]);
}

fn hup_reloads_config_and_replaces_workers(extra: &[&str]) {
    let cfgdir = TempDir::new("hupcfg");
    let conf = cfgdir.join("ferricorn.toml");
    std::fs::write(&conf, "workers = 2\n").unwrap();
    let mut args = vec!["hello", "-c", conf.to_str().unwrap()];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    let first = wait_workers(s.pid(), 2);

    let load = Load::start(&s.addr, 4, "/");
    load.wait_more(50);
    s.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = s.worker_pids();
            now.len() == 2 && now.iter().all(|p| !first.contains(p))
        }),
        "workers after HUP: {:?} (before {first:?})\n{}",
        s.worker_pids(),
        s.log_text()
    );
    let second = s.worker_pids();
    std::fs::write(&conf, "workers = 3\n").unwrap();
    s.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = s.worker_pids();
            now.len() == 3 && now.iter().all(|p| !second.contains(p))
        }),
        "workers after the second HUP: {:?}\n{}",
        s.worker_pids(),
        s.log_text()
    );
    load.wait_more(50); // served by the new workers too
    let st = load.stop();
    assert!(st.clean(), "{st:?}\n{}", s.log_text());
    assert!(st.ok > 100, "{st:?}");
    assert!(
        st.reconnects > 0,
        "retired workers close with Connection: close: {st:?}"
    );
    let log = s.log_text();
    assert_eq!(log.matches("Handling signal: hup").count(), 2, "{log}");
}

/// TTIN adds a worker, TTOU removes one, never below one.
#[test]
fn ttin_ttou_follow_and_stop_at_one() {
    let s = Server::start(&["hello", "--workers", "2"]);
    let count = |n: usize| {
        assert!(
            wait_until(Duration::from_secs(30), || s.worker_pids().len() == n),
            "expected {n} workers, have {:?}\n{}",
            s.worker_pids(),
            s.log_text()
        )
    };
    count(2);
    s.signal(Signal::SIGTTIN);
    count(3);
    s.signal(Signal::SIGTTIN);
    count(4);
    // One at a time: standard signals coalesce, so two TTOUs sent before
    // the master handles the first would count as one.
    for n in [3, 2, 1] {
        s.signal(Signal::SIGTTOU);
        count(n);
    }
    // Two more at one worker: handled (logged), and ignored.
    let ttou = || s.log_text().matches("Handling signal: ttou").count();
    for seen in [4, 5] {
        s.signal(Signal::SIGTTOU);
        assert!(
            wait_until(Duration::from_secs(30), || ttou() >= seen),
            "TTOU not handled:\n{}",
            s.log_text()
        );
    }
    assert_eq!(s.worker_pids().len(), 1);
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
}

/// USR1 after logrotate moved the access log away: a new file is created
/// and written by the workers; the error log is reopened by the master.
#[test]
fn usr1_reopens_access_and_error_logs() {
    let d = TempDir::new("usr1");
    let access = d.join("access.log");
    let error = d.join("error.log");
    let s = Server::start(&[
        "hello",
        "--workers",
        "2",
        "--access-logfile",
        access.to_str().unwrap(),
        "--error-logfile",
        error.to_str().unwrap(),
    ]);
    assert_eq!(get(&s.addr, "/before").unwrap().status, 200);
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&access)
            .unwrap_or_default()
            .contains("/before")
    }));
    std::fs::rename(&access, d.join("access.log.1")).unwrap();
    std::fs::rename(&error, d.join("error.log.1")).unwrap();
    s.signal(Signal::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(30), || access.exists()
            && error.exists()),
        "logs not recreated"
    );
    // Each worker reopens on its own: wait until none holds the old file.
    let workers = wait_workers(s.pid(), 2);
    assert!(
        wait_until(Duration::from_secs(30), || workers.iter().all(|w| {
            let files = open_files(*w);
            files.contains(&access) && !files.iter().any(|f| f.ends_with("access.log.1"))
        })),
        "workers still write to the rotated access log"
    );
    // Several requests so that both workers write after their reopen.
    for i in 0..10 {
        assert_eq!(get(&s.addr, &format!("/after/{i}")).unwrap().status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&access)
                .unwrap_or_default()
                .matches("/after/")
                .count()
                == 10
        }),
        "new access log: {:?}",
        std::fs::read_to_string(&access)
    );
    let old = std::fs::read_to_string(d.join("access.log.1")).unwrap();
    assert!(!old.contains("/after/"), "{old}");
    let err = std::fs::read_to_string(d.join("error.log.1")).unwrap();
    assert!(err.contains("Handling signal: usr1"), "{err}");
}
