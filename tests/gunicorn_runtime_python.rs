//! gunicorn's runtime settings with a WSGI app on the real binary
//! (`--features python`): StatsD packets received by a UDP socket in the
//! test, `--capture-output`, `--reload` and `--reload-extra-file` picking up
//! edited files, and `--log-config` / `--log-config-json` / `logconfig_dict`
//! applied to the app's Python logging.
//! Run: `cargo test --features python --test gunicorn_runtime_python`.
#![cfg(feature = "python")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::runtime::StatsdSink;
use support::*;

fn runtime_app(extra: &[&str]) -> Server {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(extra.iter().copied())
        .arg("runtime_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .start()
}

fn get_path(s: &Server, path: &str) -> HttpResponse {
    s.request(format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// gunicorn's metric lines: per request a duration timer, the request
/// counter and a counter per status (in that order, from the worker); the
/// worker gauge from the master when the count changes; an error-log
/// counter; the prefix gets its dot and the dogstatsd tags are appended.
#[test]
fn statsd_sends_gunicorns_metrics_with_prefix_and_tags() {
    let sink = StatsdSink::new();
    let s = runtime_app(&[
        "--statsd-host",
        &format!("127.0.0.1:{}", sink.port),
        "--statsd-prefix",
        "myapp",
        "--dogstatsd-tags",
        "env:test,role:web",
        "--workers",
        "2",
    ]);
    let tags = "|#env:test,role:web";
    sink.wait_for(&format!("myapp.gunicorn.workers:2|g{tags}"));

    assert_eq!(get_path(&s, "/").status, 200);
    assert_eq!(get_path(&s, "/missing").status, 404);
    assert_eq!(get_path(&s, "/boom").status, 500);
    sink.wait_for(&format!("myapp.gunicorn.request.status.500:1|c|@1.0{tags}"));
    // The app's exception is counted as gunicorn's log.exception would.
    sink.wait_for(&format!("myapp.gunicorn.log.exception:1|c|@1.0{tags}"));

    let lines = sink.lines();
    let count = |want: &str| lines.iter().filter(|l| *l == want).count();
    // Besides these three, the readiness probe (GET /__ready, 200) was
    // answered once, or more often if a probe timed out on a slow start.
    let ok = count(&format!("myapp.gunicorn.request.status.200:1|c|@1.0{tags}"));
    assert!(ok >= 2, "{lines:#?}");
    assert_eq!(
        count(&format!("myapp.gunicorn.request.status.404:1|c|@1.0{tags}")),
        1
    );
    assert_eq!(
        count(&format!("myapp.gunicorn.request.status.500:1|c|@1.0{tags}")),
        1
    );
    assert_eq!(
        count(&format!("myapp.gunicorn.requests:1|c|@1.0{tags}")),
        ok + 2,
        "{lines:#?}"
    );
    let request_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("myapp.gunicorn.request"))
        .collect();
    assert_eq!(request_lines.len(), 3 * (ok + 2), "{lines:#?}");
    for triple in request_lines.chunks(3) {
        let ms = triple[0]
            .strip_prefix("myapp.gunicorn.request.duration:")
            .and_then(|r| r.strip_suffix(&format!("|ms{tags}")))
            .unwrap_or_else(|| panic!("not a duration line: {triple:?}"));
        let (whole, frac) = ms.split_once('.').expect("milliseconds as a decimal");
        assert!(
            whole.parse::<u64>().is_ok() && frac.parse::<u64>().is_ok(),
            "{ms}"
        );
        assert_eq!(
            *triple[1],
            format!("myapp.gunicorn.requests:1|c|@1.0{tags}")
        );
        assert!(triple[2].starts_with("myapp.gunicorn.request.status."));
    }

    s.signal(Signal::SIGTTIN);
    sink.wait_for(&format!("myapp.gunicorn.workers:3|g{tags}"));
}

/// --capture-output: what the app writes to stdout and stderr ends up in
/// the --error-logfile file, also after USR1 reopened it.
#[test]
fn capture_output_sends_app_prints_to_the_error_log() {
    let dir = TempDir::new("capture");
    let errorlog = dir.join("error.log");
    let s = runtime_app(&[
        "--capture-output",
        "--error-logfile",
        errorlog.to_str().unwrap(),
    ]);
    assert_eq!(get_path(&s, "/print").status, 200);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let t = read(&errorlog);
            t.contains("captured-stdout-marker\n") && t.contains("captured-stderr-marker\n")
        }),
        "error log:\n{}\nstdout:\n{}",
        read(&errorlog),
        read(&s.dir.join("stdout.log"))
    );
    assert!(read(&errorlog).contains("Booting worker with pid"));
    assert!(!read(&s.dir.join("stdout.log")).contains("captured-stdout-marker"));

    // logrotate: the file is moved away and USR1 reopens it; the captured
    // output follows to the new file (the worker reopens when it handles
    // the USR1 the master forwards, so ask until it has).
    let rotated = dir.join("error.log.1");
    std::fs::rename(&errorlog, &rotated).unwrap();
    s.signal(Signal::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(30), || {
            assert_eq!(get_path(&s, "/print").status, 200);
            read(&errorlog).contains("captured-stdout-marker\n")
        }),
        "new error log:\n{}",
        read(&errorlog)
    );
    assert!(read(&rotated).contains("captured-stdout-marker\n"));
}

/// --log-config (fileConfig, with gunicorn's `here` default), and
/// --log-config-json / --logconfig-dict (dictConfig, here with a handler
/// class from the project): the app's logger writes where the
/// configuration says.
#[test]
fn log_config_configures_the_apps_python_logging() {
    let dir = TempDir::new("logcfg");
    let ini = dir.join("logging.ini");
    std::fs::write(
        &ini,
        "[loggers]\nkeys=root,app\n\n[handlers]\nkeys=file\n\n[formatters]\nkeys=plain\n\n\
         [logger_root]\nlevel=WARNING\nhandlers=\n\n\
         [logger_app]\nlevel=INFO\nhandlers=file\nqualname=runtime_app\npropagate=0\n\n\
         [handler_file]\nclass=FileHandler\nargs=('%(here)s/app.log', 'a')\nformatter=plain\n\n\
         [formatter_plain]\nformat=INI %(name)s %(levelname)s %(message)s\n",
    )
    .unwrap();
    let s = runtime_app(&["--log-config", ini.to_str().unwrap()]);
    assert_eq!(get_path(&s, "/log").status, 200);
    let app_log = dir.join("app.log");
    assert!(
        wait_until(Duration::from_secs(30), || read(&app_log)
            .contains("INI runtime_app WARNING app-log-marker\n")),
        "{}",
        s.log_text()
    );
    drop(s);

    let dict = |file: &Path, tag: &str, class: &str| {
        format!(
            // With its own "handlers", a dictionary needs its own "root" (the
            // defaults' root names a handler it replaced), as in gunicorn.
            r#"{{"version": 1, "root": {{"level": "WARNING", "handlers": []}}, "formatters": {{"f": {{"format": "{tag} %(name)s %(message)s"}}}},
               "handlers": {{"h": {{"class": "{class}", "filename": "{}", "formatter": "f"}}}},
               "loggers": {{"runtime_app": {{"handlers": ["h"], "level": "INFO", "propagate": false}}}}}}"#,
            file.display()
        )
    };
    let json_log = dir.join("json.log");
    let json_file = dir.join("logging.json");
    // A handler class from the project (the app's directory is on
    // sys.path before the configuration is applied).
    let tagged = "runtime_logging.TaggedFileHandler";
    std::fs::write(&json_file, dict(&json_log, "JSON", tagged)).unwrap();
    let s = runtime_app(&["--log-config-json", json_file.to_str().unwrap()]);
    assert_eq!(get_path(&s, "/log").status, 200);
    assert!(
        wait_until(Duration::from_secs(30), || read(&json_log)
            .contains("JSON runtime_app tagged app-log-marker\n")),
        "{}",
        s.log_text()
    );
    drop(s);

    // logconfig_dict wins over --log-config, as in gunicorn.
    let dict_log = dir.join("dict.log");
    let s = runtime_app(&[
        "--logconfig-dict",
        &dict(&dict_log, "DICT", "logging.FileHandler"),
        "--log-config",
        ini.to_str().unwrap(),
    ]);
    assert_eq!(get_path(&s, "/log").status, 200);
    assert!(wait_until(Duration::from_secs(30), || read(&dict_log)
        .contains("DICT runtime_app app-log-marker\n")));
}

/// A broken logging configuration stops the worker with one error naming
/// it (and, as for any app that cannot load, the server).
#[test]
fn broken_log_config_is_reported() {
    let dir = TempDir::new("badlogcfg");
    let ini = dir.join("bad.ini");
    std::fs::write(&ini, "[loggers]\nkeys=root\n").unwrap();
    let mut s = Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .args(["--log-config", ini.to_str().unwrap()])
        .arg("runtime_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .no_wait()
        .start();
    assert!(s.wait_exit(Duration::from_secs(20)).is_some_and(|c| c != 0));
    assert!(
        s.log_text()
            .contains("cannot apply the logging configuration"),
        "{}",
        s.log_text()
    );
}

/// --reload: editing a module the app imported, then a --reload-extra-file,
/// gets a new worker that serves the new code / data; a syntax error is
/// served as a 500 until it is fixed; a glob extra file matches a file
/// created later. The app lives in a temporary
/// directory (the test edits it).
#[test]
fn reload_picks_up_an_edited_module_and_an_extra_file() {
    let dir = TempDir::new("reload");
    std::fs::write(
        dir.join("reload_app.py"),
        "import os\nimport reload_dep\n\n\
         with open(os.path.join(os.path.dirname(__file__), 'data.txt')) as f:\n    DATA = f.read().strip()\n\n\
         def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [('%s %s' % (reload_dep.VERSION, DATA)).encode()]\n",
    )
    .unwrap();
    // Each edit changes the size too: a .pyc is trusted when the source's
    // mtime (whole seconds) and size match, and the edit may come within
    // the second of the first write.
    std::fs::write(dir.join("reload_dep.py"), "VERSION = 'v1'\n").unwrap();
    std::fs::write(dir.join("data.txt"), "d1\n").unwrap();
    std::fs::create_dir(dir.join("tpl")).unwrap();
    let s = Server::builder()
        .args(["--chdir", dir.path().to_str().unwrap()])
        .args(["--reload", "--reload-extra-file"])
        .arg(dir.join("data.txt").display().to_string())
        .arg("--reload-extra-file")
        .arg(dir.join("tpl/*.html").display().to_string())
        .arg("reload_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .start();
    let body = |s: &Server| get_path(s, "/").body_str();
    assert_eq!(body(&s), "v1 d1");
    let first = s.worker_pids();

    std::fs::write(dir.join("reload_dep.py"), "VERSION = 'v2-edited'\n").unwrap();
    // One bound for the four reloads below, each a Python import on a
    // machine that may be loaded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while body(&s) != "v2-edited d1" {
        assert!(
            Instant::now() < deadline,
            "no reload; log:\n{}",
            s.log_text()
        );
    }
    // The new worker can be up before the old one's line reaches the log.
    assert!(
        wait_log(
            &s,
            &format!(
                "Worker reloading: {} modified",
                dir.join("reload_dep.py").display()
            ),
            Duration::from_secs(30)
        ),
        "{}",
        s.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(20), || !s
            .worker_pids()
            .iter()
            .any(|p| first.contains(p))),
        "old workers {first:?} still there: {:?}; log:\n{}",
        s.worker_pids(),
        s.log_text()
    );

    std::fs::write(dir.join("data.txt"), "d2-edited\n").unwrap();
    while body(&s) != "v2-edited d2-edited" {
        assert!(
            Instant::now() < deadline,
            "no reload; log:\n{}",
            s.log_text()
        );
    }

    // A typo: the server stays up, answers with the error, and picks up the fix.
    std::fs::write(dir.join("reload_dep.py"), "VERSION = 'v3\n").unwrap();
    loop {
        let r = get_path(&s, "/");
        if r.status == 500 && r.body_str().contains("SyntaxError") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error page; log:\n{}",
            s.log_text()
        );
    }
    std::fs::write(dir.join("reload_dep.py"), "VERSION = 'v3-fixed-again'\n").unwrap();
    while body(&s) != "v3-fixed-again d2-edited" {
        assert!(
            Instant::now() < deadline,
            "fix not picked up; log:\n{}",
            s.log_text()
        );
    }

    // A glob --reload-extra-file: a file created after start matches too.
    // Written again until a worker reports it: a worker that started just
    // after a write (the save above can still restart the worker while the
    // file is created) lists it as it is, not as modified.
    let mut n = 0;
    while !wait_log(&s, "tpl/page.html modified", Duration::from_secs(3)) {
        n += 1;
        std::fs::write(dir.join("tpl/page.html"), format!("<p>new {n}</p>\n")).unwrap();
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "no reload for tpl/page.html; log:\n{}",
            s.log_text()
        );
    }
}

/// --reload and an app that cannot be imported: every worker (here two)
/// serves the error instead of the server stopping, as it does without
/// --reload.
#[test]
fn reload_keeps_every_worker_up_on_a_broken_app() {
    let dir = TempDir::new("reloadbroken");
    std::fs::write(dir.join("broken_app.py"), "def application(:\n").unwrap();
    let s = Server::builder()
        .args(["--chdir", dir.path().to_str().unwrap()])
        .args(["--workers", "2", "--reload"])
        .arg("broken_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .no_wait()
        .start();
    assert!(
        wait_until(Duration::from_secs(30), || s
            .log_text()
            .matches("Exception in worker process")
            .count()
            == 2),
        "{}",
        s.log_text()
    );
    let r = get_path(&s, "/");
    assert_eq!(r.status, 500);
    assert!(r.body_str().contains("SyntaxError"), "{}", r.body_str());
    assert_eq!(s.worker_pids().len(), 2, "{}", s.log_text());
    assert!(!s.log_text().contains("Shutting down"), "{}", s.log_text());
}

/// A module saved while the app is still importing (before the worker's
/// watches exist) is not missed: its modification time gives it away. The
/// app signals that it is importing (a marker file) and waits for the test's
/// go-ahead, so the save lands exactly in that window.
#[test]
fn reload_catches_a_save_made_while_the_app_was_loading() {
    let dir = TempDir::new("reloadrace");
    std::fs::write(
        dir.join("slow_app.py"),
        "import os, time\nimport slow_dep\n\n\
         here = os.path.dirname(os.path.abspath(__file__))\n\
         open(os.path.join(here, 'loading'), 'w').close()\n\
         deadline = time.monotonic() + 30\n\
         while not os.path.exists(os.path.join(here, 'go')) and time.monotonic() < deadline:\n    \
         time.sleep(0.01)\n\n\
         def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [slow_dep.VERSION.encode()]\n",
    )
    .unwrap();
    std::fs::write(dir.join("slow_dep.py"), "VERSION = 'v1'\n").unwrap();
    let s = Server::builder()
        .args(["--chdir", dir.path().to_str().unwrap(), "--reload"])
        .arg("slow_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
        .no_wait()
        .start();
    assert!(
        wait_until(Duration::from_secs(30), || dir.join("loading").exists()),
        "{}",
        s.log_text()
    );
    // slow_dep is imported (v1); the app is not done loading yet.
    std::fs::write(
        dir.join("slow_dep.py"),
        "VERSION = 'v2-saved-while-loading'\n",
    )
    .unwrap();
    std::fs::write(dir.join("go"), "").unwrap();
    s.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_path(&s, "/").body_str() != "v2-saved-while-loading" {
        assert!(
            Instant::now() < deadline,
            "save missed; log:\n{}",
            s.log_text()
        );
    }
}
