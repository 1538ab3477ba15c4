//! gunicorn deployments start unchanged: real gunicorn.conf.py files (module
//! imports from the project, `cpu_count()` arithmetic, `os.environ`, hooks
//! that write files), `-c python:MODULE`, the default ./gunicorn.conf.py,
//! GUNICORN_CMD_ARGS and precedence, errors naming file and line, SIGHUP with
//! a changed and with a broken file, `--check-config` importing the app,
//! `-e`, abbreviated options and gunicorn's `--bind` forms.
//!
//! Each test writes its own project into a temporary directory and runs the
//! binary there (its working directory is the project, as with gunicorn).
//! Run: `cargo test --features python --test gunicorn_config`.
// Without Python only the "needs Python" error is tested; the helpers idle.
#![cfg_attr(not(feature = "python"), allow(dead_code))]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A command for the binary in `dir`, without the caller's settings variables.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FERRICORN_CMD_ARGS")
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("PORT")
        .env_remove("WEB_CONCURRENCY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
    #[cfg(feature = "python")]
    cmd.env("VIRTUAL_ENV", venv());
    cmd
}

/// Run to exit (killed by pid after 60 s): (exit code, stdout, stderr).
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = TempDir::new("gconf-out");
    let mut cmd = command(dir, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::fs::File::create(out.join("o")).unwrap())
        .stderr(std::fs::File::create(out.join("e")).unwrap());
    let mut child = cmd.spawn().expect("spawn ferricorn");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferricorn {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |n| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    (code, read("o"), read("e"))
}

/// Start a server in `project` (its working directory) on a listener the
/// test binds and passes as fd 3 (no free-port race); the support guard
/// kills it (and its workers) by pid on drop.
fn serve_in(project: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(listener.local_addr().unwrap());
    let log = project.join("stderr.log");
    let mut cmd = command(project.path(), args);
    pass_as_fd3(&mut cmd, &listener);
    cmd.arg("--bind").arg("fd://3");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::fs::File::create(project.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().expect("spawn ferricorn");
    drop(listener);
    let server = Server {
        child: Some(child),
        addr,
        dir: project,
        log,
        status: None,
    };
    server.wait_ready();
    server
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn get(s: &Server, path: &str) -> HttpResponse {
    s.request(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[cfg(not(feature = "python"))]
#[test]
fn python_config_without_python_is_one_error_line() {
    let d = TempDir::new("gconf-nopy");
    write(d.path(), "gunicorn.conf.py", "workers = 2\n");
    for args in [&[][..], &["-c", "gunicorn.conf.py"][..]] {
        let (code, _, err) = run_in(d.path(), args, &[]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("gunicorn.conf.py") && err.contains("--features python"),
            "{err}"
        );
    }
}

/// A project as gunicorn users lay it out: a package with settings and the
/// WSGI module, the config file importing from it.
#[cfg(feature = "python")]
fn project(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    write(d.path(), "myproj/__init__.py", "");
    write(
        d.path(),
        "myproj/settings.py",
        "WORKERS = 2\nNAME = 'from-project'\n",
    );
    write(
        d.path(),
        "myproj/wsgi.py",
        r#"import os

def application(environ, start_response):
    body = ("env=%s path=%s" % (os.environ.get("GCONF_FOO", "-"), environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#,
    );
    d
}

/// Hooks that append `name pid ...` lines to `hooks.log` in the project.
#[cfg(feature = "python")]
const HOOKS: &str = r#"
import os
_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")

def _mark(*words):
    with open(_LOG, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")

def on_starting(server):
    _mark("on_starting", server.pid, server.num_workers, server.proc_name)

def when_ready(server):
    _mark("when_ready", server.pid, ",".join(server.address))
    server.log.info("when_ready says %s", "hello")
    raise RuntimeError("a hook that raises")

def pre_fork(server, worker):
    _mark("pre_fork", worker.pid, worker.age)

def post_fork(server, worker):
    _mark("post_fork", worker.pid, worker.age, worker.ppid == server.pid)

def post_worker_init(worker):
    _mark("post_worker_init", worker.pid)

def pre_request(worker, req):
    _mark("pre_request", worker.pid, req.method, req.path, dict(req.headers).get("X-TAG"))

def post_request(worker, req, environ, resp):
    _mark("post_request", req.path, environ["QUERY_STRING"], resp.status)

def nworkers_changed(server, new_value, old_value):
    _mark("nworkers_changed", new_value, old_value)

def on_reload(server):
    _mark("on_reload", server.pid)

def worker_exit(server, worker):
    _mark("worker_exit", worker.pid)

def child_exit(server, worker):
    _mark("child_exit", worker.pid)

def on_exit(server):
    _mark("on_exit", server.pid)
"#;

#[cfg(feature = "python")]
#[test]
fn gunicorn_conf_py_settings_imports_and_hooks() {
    let d = project("gconf-hooks");
    write(
        d.path(),
        "conf/gunicorn.conf.py",
        &format!(
            r#"import multiprocessing, os
from myproj.settings import WORKERS, NAME   # the project, from the working directory
from conf_helper import TIMEOUT             # the config file's own directory
workers = WORKERS
timeout = TIMEOUT
proc_name = NAME
wsgi_app = "myproj.wsgi"                      # a bare module: myproj.wsgi:application
raw_env = ["GCONF_FOO=" + os.environ.get("GCONF_SEED", "unset")]
keepalive = int(os.environ.get("KEEPALIVE", "5"))
cores = multiprocessing.cpu_count()           # not a setting: ignored
worker_tmp_dir = "/dev/shm"                   # gunicorn's, not needed: one warning
{HOOKS}"#
        ),
    );
    write(d.path(), "conf/conf_helper.py", "TIMEOUT = 17\n");
    let hooks = d.join("conf/hooks.log");
    let mut s = serve_in(
        d,
        &["-c", "conf/gunicorn.conf.py"],
        &[("GCONF_SEED", "seeded")],
    );
    let pid = s.pid();
    assert!(wait_until(WAIT, || {
        lines(&hooks).iter().any(|l| l.starts_with("when_ready"))
    }));
    // Settings from the file, the app named by wsgi_app, -e-style raw_env.
    let r = s.request(b"GET /x?q=1 HTTP/1.1\r\nHost: h\r\nX-Tag: t1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert_eq!(r.body_str(), "env=seeded path=/x");
    assert_eq!(s.worker_pids().len(), 2, "{}", s.log_text());
    assert!(cmdline(pid).contains("from-project"), "{}", cmdline(pid));
    let log = s.log_text();
    assert!(
        log.contains("worker_tmp_dir in ") && log.contains("is ignored: no heartbeat files"),
        "{log}"
    );
    // The raising hook was logged with its traceback (once it has returned:
    // wait for the line), and the master lives on.
    assert!(
        wait_until(WAIT, || s
            .log_text()
            .contains("RuntimeError: a hook that raises")),
        "{}",
        s.log_text()
    );
    let log = s.log_text();
    assert!(log.contains("Exception in when_ready hook"), "{log}");
    assert!(log.contains("when_ready says hello"), "{log}");
    assert!(wait_until(WAIT, || {
        lines(&hooks)
            .iter()
            .any(|l| l.starts_with("post_request /x q=1 200 OK"))
    }));
    // Both workers have run their hooks (the second may still be booting).
    assert!(
        wait_until(WAIT, || lines(&hooks)
            .iter()
            .filter(|l| l.starts_with("post_worker_init "))
            .count()
            == 2),
        "{:?}",
        lines(&hooks)
    );
    let seen = lines(&hooks);
    let has = |p: &str| seen.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(
        has(&format!("on_starting {pid} 2 from-project")),
        1,
        "{seen:?}"
    );
    assert_eq!(has("pre_fork None "), 2, "{seen:?}");
    assert_eq!(has("post_fork "), 2, "{seen:?}");
    assert!(
        seen.iter()
            .filter(|l| l.starts_with("post_fork "))
            .all(|l| l.ends_with(" True"))
    );
    assert_eq!(has("post_worker_init "), 2, "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("pre_request ") && l.ends_with(" GET /x t1"))
    );

    // TTIN: nworkers_changed; TERM: worker_exit, child_exit, on_exit.
    s.signal(nix::sys::signal::Signal::SIGTTIN);
    assert!(wait_until(WAIT, || {
        lines(&hooks).iter().any(|l| l == "nworkers_changed 3 2")
    }));
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(s.wait_exit(WAIT), Some(0), "{}", s.log_text());
    let seen = lines(&hooks);
    let count = |p: &str| seen.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("worker_exit "), 3, "{seen:?}");
    assert_eq!(count("child_exit "), 3, "{seen:?}");
    assert_eq!(seen.last().unwrap(), &format!("on_exit {pid}"), "{seen:?}");
}

#[cfg(feature = "python")]
#[test]
fn default_gunicorn_conf_py_and_python_module_configs() {
    let d = project("gconf-default");
    write(
        d.path(),
        "gunicorn.conf.py",
        "import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1\n\
         wsgi_app = 'myproj.wsgi:application'\n",
    );
    let cores = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import multiprocessing; print(multiprocessing.cpu_count())",
        ])
        .output()
        .unwrap();
    let cores: usize = String::from_utf8_lossy(&cores.stdout)
        .trim()
        .parse()
        .unwrap();
    let (code, out, err) = run_in(d.path(), &["--print-config"], &[]);
    assert_eq!(code, 0, "{err}");
    let file = d.join("gunicorn.conf.py");
    assert!(
        out.lines()
            .any(|l| l == format!("workers = {}  # {}", cores * 2 + 1, file.display())),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l
            == format!(
                "wsgi_app = \"myproj.wsgi:application\"  # {}",
                file.display()
            )),
        "{out}"
    );
    write(
        d.path(),
        "hooked.py",
        "def post_fork(server, worker): pass\ndef on_starting(server): pass\n",
    );
    let (_, out, _) = run_in(d.path(), &["-c", "hooked.py", "--print-config"], &[]);
    assert!(
        out.ends_with(&format!(
            "\n# server hooks from {}: on_starting, post_fork\n",
            d.join("hooked.py").display()
        )),
        "{out}"
    );
    // ferricorn.conf.py is read first when both exist.
    write(d.path(), "ferricorn.conf.py", "workers = 4\n");
    let (_, out, _) = run_in(d.path(), &["--print-config"], &[]);
    assert!(out.contains("\nworkers = 4  # "), "{out}");
    // python:MODULE imports a module from the project.
    write(d.path(), "myproj/gconf.py", "workers = 3\nbacklog = 77\n");
    let (code, out, err) = run_in(
        d.path(),
        &["-c", "python:myproj.gconf", "--print-config"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\nworkers = 3  # python:myproj.gconf\n")
            && out.contains("\nbacklog = 77  # python:myproj.gconf\n"),
        "{out}"
    );
}

#[cfg(feature = "python")]
#[test]
fn precedence_file_then_gunicorn_cmd_args_then_command_line() {
    let d = project("gconf-prec");
    write(
        d.path(),
        "gunicorn.conf.py",
        "workers = 2\ntimeout = 11\nkeepalive = 12\nbacklog = 13\n\
         secure_scheme_headers = {'X-FORWARDED-PROTO': 'https'}\n\
         forwarded_allow_ips = ['10.0.0.1', '127.0.0.1']\n\
         accesslog = None\numask = 0o022\ndaemon = False\npreload_app = True\n\
         raw_env = ('A=1', 'B=2')\n\
         logconfig_dict = {'version': 1, 'root': {'level': 'INFO'}}\n",
    );
    let (code, out, err) = run_in(
        d.path(),
        &["--keep-alive", "32", "--print-config"],
        &[
            (
                "GUNICORN_CMD_ARGS",
                "--timeout 21 --keep-alive=22 --name 'a b'",
            ),
            ("FERRICORN_CMD_ARGS", "--timeout 23"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let file = d.join("gunicorn.conf.py");
    for want in [
        format!("workers = 2  # {}", file.display()),
        format!("backlog = 13  # {}", file.display()),
        "timeout = 23  # FERRICORN_CMD_ARGS".to_string(),
        "keepalive = 32  # command line".to_string(),
        "proc_name = \"a b\"  # GUNICORN_CMD_ARGS".to_string(),
        "graceful_timeout = 30  # default".to_string(),
        format!(
            "secure_scheme_headers = \"X-FORWARDED-PROTO=https\"  # {}",
            file.display()
        ),
        format!(
            "forwarded_allow_ips = \"10.0.0.1,127.0.0.1\"  # {}",
            file.display()
        ),
        format!("accesslog = \"\"  # {}", file.display()),
        format!("umask = 0o022  # {}", file.display()),
        format!("daemon = false  # {}", file.display()),
        format!("preload_app = true  # {}", file.display()),
        format!("raw_env = [\"A=1\", \"B=2\"]  # {}", file.display()),
        format!(
            "logconfig_dict = \"{{\\\"version\\\": 1, \\\"root\\\": {{\\\"level\\\": \\\"INFO\\\"}}}}\"  # {}",
            file.display()
        ),
    ] {
        assert!(out.lines().any(|l| l == want), "no {want:?} in\n{out}");
    }
}

#[cfg(feature = "python")]
#[test]
fn config_errors_are_one_line_with_file_and_line() {
    let d = project("gconf-errors");
    let cases: &[(&str, &str, &str)] = &[
        (
            "syntax.py",
            "workers = 2\nbind = (\n",
            "line 2: SyntaxError",
        ),
        (
            "raises.py",
            "import os\n\nworkers = int(os.environ['GCONF_MISSING'])\n",
            "line 3: KeyError: 'GCONF_MISSING'",
        ),
        (
            "badimport.py",
            "from myproj.nothing import X\n",
            "line 1: ModuleNotFoundError",
        ),
        (
            "badvalue.py",
            "workers = 'many'\n",
            "invalid value for workers in",
        ),
        (
            "badtype.py",
            "workers = [2]\n",
            "expected an integer, got array",
        ),
        ("tls.py", "certfile = 'c.pem'\n", "certfile in"),
    ];
    for (name, text, want) in cases {
        write(d.path(), name, text);
        for extra in [&[][..], &["--check-config"][..]] {
            let mut args = vec!["-c", name];
            args.extend_from_slice(extra);
            let (code, out, err) = run_in(d.path(), &args, &[]);
            assert_eq!(code, 1, "{name}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "{name}: one line:\n{err}");
            let file = d.join(name);
            assert!(
                err.contains(&file.display().to_string()) && err.contains(want),
                "{name}: {err}"
            );
        }
    }
}

#[cfg(feature = "python")]
#[test]
fn check_config_imports_the_app() {
    let d = project("gconf-check");
    write(d.path(), "gunicorn.conf.py", "wsgi_app = 'myproj.wsgi'\n");
    let (code, out, err) = run_in(d.path(), &["--check-config"], &[]);
    assert_eq!((code, out.trim()), (0, "Configuration OK"), "{err}");
    let (code, _, err) = run_in(d.path(), &["--check-config", "myproj.missing"], &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("myproj.missing"), "{err}");
    let (code, _, err) = run_in(d.path(), &["--check-config", "myproj.wsgi:nope"], &[]);
    assert_eq!(code, 4, "{err}");
}

#[cfg(feature = "python")]
#[test]
fn hup_rereads_the_file_and_keeps_running_when_it_breaks() {
    let d = project("gconf-hup");
    let conf = d.join("gunicorn.conf.py");
    let hooks = d.join("hooks.log");
    let hooks_src = "import os\n_LOG = os.path.join(os.path.dirname(__file__), 'hooks.log')\n\
                     def on_reload(server):\n    open(_LOG, 'a').write('reload %s\\n' % TAG)\n\
                     raw_env = ['GCONF_FOO=' + TAG]\n";
    std::fs::write(
        &conf,
        format!("workers = 1\nTAG = 'one'\nwsgi_app = 'myproj.wsgi'\n{hooks_src}"),
    )
    .unwrap();
    let s = serve_in(d, &[], &[]);
    assert_eq!(get(&s, "/").body_str(), "env=one path=/");
    assert_eq!(wait_workers(s.pid(), 1).len(), 1);

    // A changed file: two workers and the new hook.
    std::fs::write(
        &conf,
        format!("workers = 2\nTAG = 'two'\nwsgi_app = 'myproj.wsgi'\n{hooks_src}"),
    )
    .unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(WAIT, || lines(&hooks) == ["reload two"]),
        "{:?}",
        lines(&hooks)
    );
    assert!(
        wait_until(WAIT, || s.worker_pids().len() == 2),
        "{}",
        s.log_text()
    );
    // -e/raw_env is applied again, as gunicorn does: the new workers see it.
    assert!(
        wait_until(WAIT, || get(&s, "/").body_str() == "env=two path=/"),
        "{}",
        s.log_text()
    );

    // A broken file: the running configuration (and hooks) stay, and the log says so.
    std::fs::write(&conf, "workers = 5\nTAG = 'three'\nbind = (\n").unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(WAIT, || {
            s.log_text().contains(&format!(
            "reload failed, keeping the running configuration: error in config file {}, line 3: SyntaxError",
            conf.display()
        ))
        }),
        "{}",
        s.log_text()
    );
    assert!(wait_until(WAIT, || lines(&hooks).len() == 2));
    assert_eq!(lines(&hooks), ["reload two", "reload two"]);
    assert!(
        wait_until(WAIT, || s.worker_pids().len() == 2),
        "{}",
        s.log_text()
    );
    assert_eq!(get(&s, "/").status, 200);

    // A file that runs but holds a bad value: its new hook is not taken either.
    std::fs::write(
        &conf,
        format!("workers = 'many'\nTAG = 'four'\nwsgi_app = 'myproj.wsgi'\n{hooks_src}"),
    )
    .unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(WAIT, || {
            s.log_text().contains(&format!(
            "reload failed, keeping the running configuration: invalid value for workers in {}: 'many'",
            conf.display()
        ))
        }),
        "{}",
        s.log_text()
    );
    assert!(wait_until(WAIT, || lines(&hooks).len() == 3));
    assert_eq!(lines(&hooks), ["reload two", "reload two", "reload two"]);
    assert!(
        wait_until(WAIT, || s.worker_pids().len() == 2),
        "{}",
        s.log_text()
    );
    assert_eq!(get(&s, "/").status, 200);

    // A file without raw_env: GCONF_FOO, set by -e before, is gone for the
    // new workers (gunicorn keeps it until a restart).
    std::fs::write(&conf, "workers = 1\nwsgi_app = 'myproj.wsgi'\n").unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(WAIT, || s.worker_pids().len() == 1
            && get(&s, "/").body_str() == "env=- path=/"),
        "{}",
        s.log_text()
    );
}

/// With --preload the app is imported in the master too: the interpreter's
/// fork bracket and the file's fork hooks both run. The bracket's
/// PyOS_AfterFork_Child runs `random`'s at-fork hook, so a worker's generator
/// is not the master's (it is with the bracket dropped: this test then fails).
/// Workers forked while an app thread runs Python still boot and serve.
#[cfg(feature = "python")]
#[test]
fn preload_with_python_hooks_keeps_the_fork_bracket() {
    let d = project("gconf-preload");
    write(
        d.path(),
        "myproj/threaded.py",
        r#"import random, threading, time
STATE = random.getstate()

def application(environ, start_response):
    body = ("reseeded=%s" % (random.getstate() != STATE)).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

def _spin():
    while True:
        sum(range(1000))   # holds the GIL often, as a busy app thread does
        time.sleep(0)

threading.Thread(target=_spin, daemon=True).start()
"#,
    );
    write(
        d.path(),
        "gunicorn.conf.py",
        r#"import os
preload_app = True
workers = 3
wsgi_app = "myproj.threaded:application"
_LOG = os.path.join(os.path.dirname(__file__), "forks.log")
def pre_fork(server, worker):
    open(_LOG, "a").write("pre %s\n" % worker.age)
def post_fork(server, worker):
    open(_LOG, "a").write("post %s\n" % worker.age)
"#,
    );
    let forks = d.join("forks.log");
    let s = serve_in(d, &[], &[]);
    assert_eq!(wait_workers(s.pid(), 3).len(), 3);
    assert!(
        wait_until(WAIT, || lines(&forks).len() == 6),
        "{:?}",
        lines(&forks)
    );
    for _ in 0..6 {
        assert_eq!(get(&s, "/p").body_str(), "reseeded=True");
    }
    // TTIN: one more fork while the app thread runs.
    s.signal(nix::sys::signal::Signal::SIGTTIN);
    assert_eq!(wait_workers(s.pid(), 4).len(), 4, "{}", s.log_text());
    assert!(
        wait_until(WAIT, || lines(&forks).len() == 8),
        "{:?}",
        lines(&forks)
    );
}

#[cfg(feature = "python")]
#[test]
fn env_flag_and_gunicorn_command_line_forms() {
    let d = project("gconf-cli");
    // `--bind :PORT` (every interface; the test talks to it on loopback),
    // abbreviated options, `--opt=value`, `--log-level warn`, -e, a bare module APP.
    let (code, _, err) = run_in(d.path(), &["--work=1"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("ambiguous option: --work could match --workers"),
        "{err}"
    );
    // The point is the `:PORT` form, so ferricorn binds a port looked up
    // free, which another test may take first: then it exits ("cannot
    // listen") and is started again on a fresh port. Ready means our
    // answer (-e's variable), not any server's on that port.
    let mut attempt = 0;
    let s = loop {
        attempt += 1;
        let port = free_port();
        let bind = format!(":{port}");
        let logs = TempDir::new("gconf-cli-log");
        let log = logs.join("stderr.log");
        let mut cmd = command(
            d.path(),
            &[
                "--bind",
                &bind,
                "--workers=1",
                "--worker-conn",
                "50",
                "--log-level",
                "warn",
                "-e",
                "GCONF_FOO=from-e",
                "--worker-tmp-dir",
                "/dev/shm",
                "myproj.wsgi",
            ],
        );
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut s = Server {
            child: Some(cmd.spawn().expect("spawn ferricorn")),
            addr: Addr::Tcp(([127, 0, 0, 1], port).into()),
            dir: logs,
            log,
            status: None,
        };
        let mut exited = false;
        let ours = |s: &Server| {
            support::get(&s.addr, "/e").is_ok_and(|r| r.body_str() == "env=from-e path=/e")
        };
        let up = wait_until(WAIT, || {
            exited = s.child.as_mut().unwrap().try_wait().unwrap().is_some();
            exited || ours(&s)
        });
        if exited && s.log_text().contains("cannot listen") && attempt < 5 {
            continue;
        }
        assert!(up && !exited, "not serving:\n{}", s.log_text());
        break s;
    };
    assert_eq!(get(&s, "/e").body_str(), "env=from-e path=/e");
    let text = s.log_text();
    assert!(
        text.contains("--worker-tmp-dir is ignored: no heartbeat files"),
        "{text}"
    );
    // warn level: no INFO lines (Booting worker ...).
    assert!(!text.contains("[INFO]"), "{text}");
}

/// `worker_abort` after --timeout kills a worker stuck in the app (in the
/// master: the stuck worker cannot run code), `worker_int` on a quick stop.
#[cfg(feature = "python")]
#[test]
fn worker_abort_and_worker_int_hooks() {
    let d = project("gconf-abort");
    write(
        d.path(),
        "myproj/slow.py",
        r#"import time
from myproj.wsgi import application as fast

def application(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        time.sleep(60)
    return fast(environ, start_response)
"#,
    );
    write(
        d.path(),
        "gunicorn.conf.py",
        r#"import os
timeout = 1
wsgi_app = "myproj.slow"
_LOG = os.path.join(os.path.dirname(__file__), "hooks.log")
def worker_abort(worker):
    open(_LOG, "a").write("worker_abort %s %s\n" % (worker.pid, worker.ppid == os.getpid()))
def worker_int(worker):
    open(_LOG, "a").write("worker_int %s\n" % worker.pid)
"#,
    );
    let hooks = d.join("hooks.log");
    let mut s = serve_in(d, &[], &[]);
    let stuck = wait_workers(s.pid(), 1)[0];
    let mut c = s.connect();
    std::io::Write::write_all(&mut c, b"GET /stuck HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert!(
        wait_until(WAIT, || lines(&hooks)
            == [format!("worker_abort {stuck} True")]),
        "{:?}\n{}",
        lines(&hooks),
        s.log_text()
    );
    let mut fresh = 0;
    assert!(wait_until(WAIT, || {
        let w = workers_of(s.pid());
        fresh = w.first().copied().unwrap_or(stuck);
        w.len() == 1 && fresh != stuck
    }));
    assert_eq!(get(&s, "/ok").status, 200);
    s.signal(nix::sys::signal::Signal::SIGINT);
    assert!(s.wait_exit(WAIT).is_some(), "{}", s.log_text());
    assert!(
        lines(&hooks).contains(&format!("worker_int {fresh}")),
        "{:?}\n{}",
        lines(&hooks),
        s.log_text()
    );
}
