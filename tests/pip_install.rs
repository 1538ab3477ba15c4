//! The pip package (issue 12), driven as a user drives it: the wheel is
//! built by `pip wheel .` (python/build-wheel.sh, once per run: it is abi3),
//! installed with pip into fresh virtualenvs of the oldest and newest
//! supported CPython, and the `ferricorn` command it puts in the venv's
//! `bin/` runs the Django/gunicorn tutorial
//! (shared/design/tutorial-django-gunicorn.md) with `ferricorn` for
//! `gunicorn`, with an empty environment (no VIRTUAL_ENV, PYTHONHOME,
//! PYO3_PYTHON or activate; PATH without the venv).
//!
//! Needs the pyenv Pythons (3.8 for the refusal, 3.9 and 3.13), Debian's
//! /usr/bin/python3 with its venv module, network access to PyPI (maturin,
//! Django; cached under target/pip/cache), cargo and a C toolchain, and
//! systemd-analyze (.ci/run installs what is missing).
//! Every process started here is killed by pid (its process group) on drop.

// Only for `support::pass_as_fd3`: this file keeps its own small helpers.
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const OLDEST: &str = "3.9";
const NEWEST: &str = "3.13";
/// What a PATH looks like under systemd or cron: no venv, no pyenv shims.
const BARE_PATH: &str = "/usr/bin:/bin";
const WELCOME: &str = "The install worked successfully!";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir() -> PathBuf {
    repo().join("target/pip")
}

/// The distribution's own Python (Debian's /usr/bin/python3), for [`python`].
const SYSTEM: &str = "system";

/// The pyenv CPython `X.Y` (`$(pyenv root)/versions/X.Y.*/bin/pythonX.Y`),
/// or /usr/bin/python3 for [`SYSTEM`].
fn python(version: &str) -> PathBuf {
    if version == SYSTEM {
        let p = PathBuf::from("/usr/bin/python3");
        assert!(
            p.exists(),
            "no /usr/bin/python3 (apt-get install python3-venv)"
        );
        return p;
    }
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| {
            Command::new("pyenv")
                .arg("root")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(version)
                .is_some_and(|rest| rest.starts_with('.') && !rest.ends_with('t'))
        })
        .map(|e| e.path().join(format!("bin/python{version}")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "CPython {version} not found under {}/versions (install it: pyenv install {version})",
            root.display()
        )
    })
}

/// Run to completion; panics with the output if it did not succeed.
#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// pip with the shared download cache and nothing from the caller's venv.
fn pip(venv: &Path) -> Command {
    let mut c = Command::new(venv.join("bin/pip"));
    c.env("PIP_CACHE_DIR", work_dir().join("cache"))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONHOME")
        .env_remove("PYO3_PYTHON");
    c
}

/// The wheel, built once per run with `pip wheel .`.
fn wheel() -> &'static Path {
    static WHEEL: OnceLock<PathBuf> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let out = run_ok(Command::new(repo().join("python/build-wheel.sh")).arg(python(NEWEST)));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // One wheel for every CPython from 3.9 on.
        assert!(name.contains("-cp39-abi3-"), "{name}");
        // pyproject's version comes from pyext/Cargo.toml: it must follow ferricorn's.
        let version = format!("ferricorn-{}-", env!("CARGO_PKG_VERSION"));
        assert!(name.starts_with(&version), "{name}: bump pyext/Cargo.toml");
        path
    })
}

/// A fresh virtualenv of CPython `version` with the wheel and Django
/// installed by pip (made once per run and version, shared by the tests).
fn venv(version: &'static str) -> &'static Path {
    static VENVS: Mutex<Vec<(&'static str, &'static Path)>> = Mutex::new(Vec::new());
    let mut venvs = VENVS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = venvs.iter().find(|(v, _)| *v == version) {
        return v;
    }
    let dir = work_dir().join(format!("venv-{version}"));
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(Command::new(python(version)).args(["-m", "venv"]).arg(&dir));
    run_ok(
        pip(&dir)
            .arg("install")
            .arg("-q")
            .arg(wheel())
            .arg("Django"),
    );
    let dir: &'static Path = Box::leak(dir.into_boxed_path());
    venvs.push((version, dir));
    dir
}

/// A private directory under target/pip, emptied first and removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = work_dir().join(format!("scratch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The installed `ferricorn` command, run as systemd would: by its path,
/// empty environment, bare PATH. Killed with its process group on drop.
struct Ferricorn {
    child: Option<Child>,
    log: PathBuf,
}

/// A listener on a port of our own, for `--bind fd://3` (or `bind =
/// 'fd://3'`): a port looked up free could be taken by another test before
/// ferricorn binds it.
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

impl Ferricorn {
    fn start(venv: &Path, cwd: &Path, args: &[&str]) -> Ferricorn {
        Ferricorn::start_on(venv, cwd, args, None)
    }

    /// With `listener` as the command's fd 3 (for `fd://3`).
    fn start_on(
        venv: &Path,
        cwd: &Path,
        args: &[&str],
        listener: Option<&TcpListener>,
    ) -> Ferricorn {
        let log = cwd.join(format!("ferricorn-{}.log", free_port()));
        let mut cmd = Command::new(venv.join("bin/ferricorn"));
        if let Some(l) = listener {
            support::pass_as_fd3(&mut cmd, l);
        }
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", BARE_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .process_group(0);
        let child = cmd.spawn().expect("spawn the installed ferricorn");
        Ferricorn {
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for the command to exit; its exit code.
    #[track_caller]
    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ferricorn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Addr<'a> {
    Tcp(u16),
    Unix(&'a Path),
}

/// `GET /` with `Connection: close`: (status, body), or None if not answered.
fn get(addr: &Addr<'_>) -> Option<(u16, String)> {
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut raw = Vec::new();
    match addr {
        Addr::Tcp(port) => {
            let mut s = TcpStream::connect(("127.0.0.1", *port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
            s.write_all(req).ok()?;
            s.read_to_end(&mut raw).ok()?;
        }
        Addr::Unix(path) => {
            let mut s = UnixStream::connect(path).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
            s.write_all(req).ok()?;
            s.read_to_end(&mut raw).ok()?;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Poll until the server answers `GET /` (workers import Django first).
#[track_caller]
fn wait_answer(server: &Ferricorn, addr: &Addr<'_>) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = get(addr) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no answer within 60 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ps -e -o pid=,ppid=,args=`: (pid, ppid, title) of every process.
fn ps() -> Vec<(u32, u32, String)> {
    let out = run_ok(Command::new("ps").args(["-e", "-o", "pid=,ppid=,args="]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let ppid = it.next()?.parse().ok()?;
            Some((pid, ppid, it.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// The tutorial, verbatim but for the address: `pip install` ferricorn and
/// Django into a fresh venv, `django-admin startproject app .`, then
/// `ferricorn --bind 127.0.0.1:PORT --workers 9 app.wsgi` in that directory.
fn tutorial(version: &'static str) {
    let venv = venv(version);
    let project = Scratch::new(&format!("tutorial-{version}"));
    run_ok(
        Command::new(venv.join("bin/django-admin"))
            .args(["startproject", "app", "."])
            .current_dir(&project.0)
            .env_clear()
            .env("PATH", BARE_PATH),
    );
    let (l, port) = listener();
    let mut server = Ferricorn::start_on(
        venv,
        &project.0,
        &["--bind", "fd://3", "--workers", "9", "app.wsgi"],
        Some(&l),
    );
    drop(l);
    let (status, body) = wait_answer(&server, &Addr::Tcp(port));
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert!(body.contains(WELCOME), "{body}");

    // `ps -ef | grep ferricorn`: one master and nine workers, with titles.
    let master = server.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let procs = ps();
        let title = procs.iter().find(|p| p.0 == master).map(|p| p.2.clone());
        let workers = procs
            .iter()
            .filter(|p| p.1 == master && p.2.starts_with("ferricorn: worker [app.wsgi]"))
            .count();
        let others = procs
            .iter()
            .filter(|p| p.1 == master && !p.2.starts_with("ferricorn: worker"))
            .count();
        if title
            .as_deref()
            .is_some_and(|t| t.starts_with("ferricorn: master [app.wsgi]"))
            && workers == 9
            && others == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "master {title:?}, {workers} titled workers, {others} others:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every worker serves the page (each imported Django itself).
    for _ in 0..20 {
        let (status, body) = get(&Addr::Tcp(port)).expect("answered");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(WELCOME));
    }

    // TERM: a graceful stop, exit code 0, as gunicorn.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        0,
        "{}",
        server.log()
    );
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

#[test]
fn tutorial_on_oldest_python() {
    tutorial(OLDEST);
}

#[test]
fn tutorial_on_newest_python() {
    tutorial(NEWEST);
}

/// The command serves the venv it was installed in, from any directory and
/// with no environment: sys.prefix, sys.executable and site-packages are
/// the venv's, and a package installed there imports. `extra` adds options.
fn serves_its_venv(version: &'static str, extra: &[&str]) {
    let venv = venv(version);
    let dir = Scratch::new(&format!("probe-{version}"));
    let code = dir.0.join("code");
    std::fs::create_dir(&code).unwrap();
    std::fs::write(
        code.join("probe.py"),
        "import os, random, site, sys\n\
         IMPORTED_IN, STATE = os.getpid(), random.getstate()\n\
         def app(environ, start_response):\n\
         \x20   import django\n\
         \x20   lines = [sys.prefix, sys.executable, site.getsitepackages()[0],\n\
         \x20            django.__file__, '%d.%d' % sys.version_info[:2],\n\
         \x20            str(os.getpid() != IMPORTED_IN), str(random.getstate() != STATE)]\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return ['\\n'.join(lines).encode()]\n",
    )
    .unwrap();
    let elsewhere = dir.0.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let (l, port) = listener();
    let pythonpath = code.to_string_lossy().into_owned();
    let mut args = vec!["--bind", "fd://3", "--pythonpath", &pythonpath];
    args.extend_from_slice(extra);
    args.push("probe:app");
    let mut server = Ferricorn::start_on(venv, &elsewhere, &args, Some(&l));
    drop(l);
    let (status, body) = wait_answer(&server, &Addr::Tcp(port));
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let venv_s = venv.canonicalize().unwrap().to_string_lossy().into_owned();
    let fields: Vec<&str> = body.lines().collect();
    assert_eq!(fields.len(), 7, "{body}");
    let canon = |p: &str| {
        Path::new(p)
            .canonicalize()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string())
    };
    assert_eq!(canon(fields[0]), venv_s, "sys.prefix: {body}");
    // Not resolved: the venv's own bin/pythonX.Y (pip's shebang), a symlink
    // to the base Python, exactly as when that python is run.
    let exe = Path::new(fields[1]);
    assert_eq!(exe.parent(), Some(venv.join("bin").as_path()), "{body}");
    assert!(
        exe.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python")),
        "sys.executable: {body}"
    );
    assert!(
        canon(fields[2]).starts_with(&venv_s),
        "site-packages: {body}"
    );
    assert!(canon(fields[3]).starts_with(&venv_s), "django: {body}");
    if version != SYSTEM {
        assert_eq!(fields[4], version, "{body}");
    }
    // Imported in the master (--preload), then forked: the fork bracket
    // (PyOS_AfterFork_Child) ran random's at-fork hook, so the worker's
    // generator is not the master's. Imported in the worker: untouched.
    let preload = extra.contains(&"--preload");
    let expect = if preload { "True" } else { "False" };
    assert_eq!((fields[5], fields[6]), (expect, expect), "{body}");

    let master = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM).unwrap();
    // The package and the command say the crate's version.
    let want = env!("CARGO_PKG_VERSION");
    let out = run_ok(
        Command::new(venv.join("bin/python"))
            .args(["-c", "import ferricorn; print(ferricorn.__version__)"])
            .env_clear(),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    let out = run_ok(
        Command::new(venv.join("bin/ferricorn"))
            .arg("--version")
            .env_clear(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ferricorn {want}")
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        0,
        "{}",
        server.log()
    );
}

#[test]
fn serves_its_venv_on_oldest_python() {
    serves_its_venv(OLDEST, &[]);
}

/// Debian's python3 (3.11 on this machine), a non-pyenv build.
#[test]
fn serves_its_venv_on_system_python() {
    serves_its_venv(SYSTEM, &[]);
}

/// With `--preload` the master imports the app into its interpreter and
/// forks three workers from it (the fork bracket, gc.freeze).
#[test]
fn serves_its_venv_on_newest_python_with_preload() {
    serves_its_venv(NEWEST, &["--preload", "--workers", "3"]);
}

/// A project whose app cannot load, for the error tests. Each worker's
/// import first waits until all nine have arrived (a file per pid), then
/// all are released at once (the last one opens a FIFO the others wait on):
/// they fail together, and without the report-once rule several would log
/// before the first failure stops the master.
fn broken_project(tag: &str) -> Scratch {
    let dir = Scratch::new(tag);
    let app = dir.0.join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("__init__.py"), "").unwrap();
    std::fs::write(
        app.join("barrier.py"),
        "import os\n\
         here = os.path.dirname(__file__)\n\
         arrived, go = os.path.join(here, 'arrived'), os.path.join(here, 'go')\n\
         os.makedirs(arrived, exist_ok=True)\n\
         try:\n\
         \x20   os.mkfifo(go)\n\
         except FileExistsError:\n\
         \x20   pass\n\
         open(os.path.join(arrived, str(os.getpid())), 'w').close()\n\
         if len(os.listdir(arrived)) >= 9:\n\
         \x20   os.close(os.open(go, os.O_WRONLY))\n\
         else:\n\
         \x20   fd = os.open(go, os.O_RDONLY)\n\
         \x20   os.read(fd, 1)\n\
         \x20   os.close(fd)\n",
    )
    .unwrap();
    std::fs::write(
        app.join("wsgi.py"),
        "import app.barrier\nimport nosuchmodule_xyz\n",
    )
    .unwrap();
    std::fs::write(
        app.join("notcall.py"),
        "import app.barrier\napplication = 42\n",
    )
    .unwrap();
    dir
}

/// Reset the barrier of [`broken_project`] for another start.
fn reset_barrier(project: &Scratch) {
    let _ = std::fs::remove_dir_all(project.0.join("app/arrived"));
    let _ = std::fs::remove_file(project.0.join("app/go"));
}

/// Start with nine workers an app that cannot load; the exit code and the
/// log's ERROR lines.
fn fails_to_load(venv: &Path, cwd: &Path, spec: &str) -> (i32, String, Vec<String>) {
    // A Unix socket in the scratch directory: no port to race others for.
    let bind = format!("unix:{}", cwd.join("s.sock").display());
    let mut server = Ferricorn::start(venv, cwd, &["--bind", &bind, "--workers", "9", spec]);
    let code = server.wait_exit(Duration::from_secs(60));
    let log = server.log();
    let errors = log
        .lines()
        .filter(|l| l.contains("[ERROR]"))
        .map(String::from)
        .collect();
    (code, log, errors)
}

/// A missing module: exit code 4 and one line naming the module and
/// sys.path, once for nine workers, no traceback.
#[test]
fn missing_module_is_one_line_once() {
    let venv = venv(NEWEST);
    let project = broken_project("missing");
    // Which worker fails first is a race; three starts make a second
    // report (the bug) show up even when one start happens to log once.
    for _ in 0..3 {
        reset_barrier(&project);
        let (code, log, errors) = fails_to_load(venv, &project.0, "app.wsgi");
        assert_eq!(code, 4, "{log}");
        assert!(!log.contains("Traceback"), "{log}");
        let named: Vec<&String> = errors
            .iter()
            .filter(|l| l.contains("nosuchmodule_xyz"))
            .collect();
        assert_eq!(named.len(), 1, "{log}");
        let line = named[0];
        assert!(
            line.contains("No module named 'nosuchmodule_xyz'") && line.contains("sys.path: ['"),
            "{line}"
        );
        assert!(line.contains(&*project.0.to_string_lossy()), "{line}");
        // The console script's own directory (the venv's bin/) is not searched.
        let bin = format!("'{}'", venv.join("bin").display());
        assert!(!line.contains(&bin), "{line}");
    }
}

/// Started outside the project: the module is named, with where to run it.
#[test]
fn app_outside_the_directory_is_one_line_once() {
    let venv = venv(NEWEST);
    let empty = Scratch::new("empty");
    let (code, log, errors) = fails_to_load(venv, &empty.0, "app.wsgi");
    assert_eq!(code, 4, "{log}");
    assert!(!log.contains("Traceback"), "{log}");
    let named: Vec<&String> = errors
        .iter()
        .filter(|l| l.contains("No module named 'app'"))
        .collect();
    assert_eq!(named.len(), 1, "{log}");
    assert!(named[0].contains("--chdir"), "{}", named[0]);
}

/// An app spec that is not callable: exit code 4 and gunicorn's sentence.
#[test]
fn app_not_callable_is_one_line() {
    let venv = venv(NEWEST);
    let project = broken_project("notcall");
    let (code, log, errors) = fails_to_load(venv, &project.0, "app.notcall");
    assert_eq!(code, 4, "{log}");
    assert!(!log.contains("Traceback"), "{log}");
    let named: Vec<&String> = errors
        .iter()
        .filter(|l| l.contains("Application object must be callable"))
        .collect();
    assert_eq!(named.len(), 1, "{log}");
    assert!(
        named[0].contains("app.notcall") && named[0].contains("int"),
        "{}",
        named[0]
    );
}

/// A Python the build cannot serve (3.8, below abi3-py39): pip refuses the
/// checkout and the wheel with one line each, and installs nothing.
#[test]
fn older_python_is_refused_by_pip() {
    let dir = Scratch::new("py38");
    let venv = dir.0.join("venv");
    run_ok(Command::new(python("3.8")).args(["-m", "venv"]).arg(&venv));
    let from_source = pip(&venv).arg("install").arg(repo()).output().unwrap();
    let err = String::from_utf8_lossy(&from_source.stderr);
    assert!(!from_source.status.success(), "{err}");
    assert!(
        err.contains("ERROR: Package 'ferricorn' requires a different Python: 3.8"),
        "{err}"
    );
    let from_wheel = pip(&venv).arg("install").arg(wheel()).output().unwrap();
    let err = String::from_utf8_lossy(&from_wheel.stderr);
    assert!(!from_wheel.status.success(), "{err}");
    assert!(err.contains("is not a supported wheel"), "{err}");
    assert!(!venv.join("bin/ferricorn").exists());
}

/// `systemd-analyze verify` on a unit; (passed, its output).
fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The tutorial's unit with the installed command, and conf/systemd's
/// Python variant, pass `systemd-analyze verify`; the variant's ExecStart,
/// run as written, serves the project on its Unix socket.
#[test]
fn systemd_units_verify_and_serve() {
    let venv = venv(NEWEST);
    let project = Scratch::new("systemd");
    run_ok(
        Command::new(venv.join("bin/django-admin"))
            .args(["startproject", "app", "."])
            .current_dir(&project.0)
            .env_clear()
            .env("PATH", BARE_PATH),
    );
    let exe = venv.join("bin/ferricorn");
    let sock = project.0.join("app.sock");
    // The tutorial's unit, as its reader fills it in.
    let tutorial_unit = format!(
        "[Unit]\nDescription=gunicorn daemon\nAfter=network.target\n\n\
         [Service]\nUser=root\nGroup=www-data\nWorkingDirectory={}\n\
         ExecStart={} --workers 9 --bind unix:{} app.wsgi:application --timeout 600\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        project.0.display(),
        exe.display(),
        sock.display()
    );
    let units = project.0.join("units");
    std::fs::create_dir(&units).unwrap();
    let path = units.join("ferricorn.service");
    std::fs::write(&path, &tutorial_unit).unwrap();
    let (ok, out) = verify(&path);
    assert!(ok, "{tutorial_unit}\n{out}");
    // The same unit with a command that is not there fails: verify checks it.
    std::fs::write(
        &path,
        tutorial_unit.replace("/bin/ferricorn", "/bin/nothere"),
    )
    .unwrap();
    assert!(!verify(&path).0);

    // conf/systemd's variant, with its paths pointed at this project.
    let shipped = std::fs::read_to_string(repo().join("conf/systemd/ferricorn-django.service"))
        .expect("conf/systemd/ferricorn-django.service");
    assert!(
        shipped.contains("ExecStart=/srv/app/venv/bin/ferricorn"),
        "{shipped}"
    );
    let unit = shipped
        .replace("/srv/app/venv", &venv.to_string_lossy())
        .replace("/srv/app", &project.0.to_string_lossy())
        .replace("/run/ferricorn/app.sock", &sock.to_string_lossy());
    let path = units.join("ferricorn-django.service");
    std::fs::write(&path, &unit).unwrap();
    let (ok, out) = verify(&path);
    assert!(ok, "{unit}\n{out}");

    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(Path::new(argv[0]), exe);
    // The app comes before --timeout, as in the tutorial: still applied.
    let mut print = argv[1..].to_vec();
    print.push("--print-config");
    let out = run_ok(
        Command::new(&exe)
            .args(&print)
            .current_dir(&project.0)
            .env_clear()
            .env("PATH", BARE_PATH),
    );
    let config = String::from_utf8_lossy(&out.stdout);
    // Each line ends with where the value came from (issue 14).
    assert!(
        config.lines().any(|l| l == "timeout = 600  # command line"),
        "{config}"
    );
    assert!(
        config.lines().any(|l| l == "workers = 9  # command line"),
        "{config}"
    );

    let server = Ferricorn::start(venv, &project.0, &argv[1..]);
    let (status, body) = wait_answer(&server, &Addr::Unix(&sock));
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert!(body.contains(WELCOME), "{body}");
}

/// `cargo run --release` / `cargo install --path .` build the root package
/// only: no pyo3 in its dependency graph unless `--features python`.
#[test]
fn cargo_builds_stay_pure_rust() {
    let tree = |features: &[&str]| {
        let out = run_ok(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
                .args(features)
                .current_dir(repo()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = tree(&[]);
    assert!(plain.starts_with("ferricorn v"), "{plain}");
    assert!(!plain.contains("pyo3"), "{plain}");
    assert!(!plain.contains("ferricorn-pyext"), "{plain}");
    // The check can fail: the python feature does pull pyo3 in.
    assert!(tree(&["--features", "python"]).contains("pyo3"));
}

/// A gunicorn.conf.py under the pip-installed command (the master already
/// runs inside the venv's interpreter): the file's settings, `wsgi_app`,
/// `raw_env` reaching the app, a hook writing a file, and a hook's
/// `server.log` line (issue 14).
#[test]
fn gunicorn_conf_py_under_the_installed_command() {
    let venv = venv(NEWEST);
    let dir = Scratch::new("gconf");
    std::fs::create_dir(dir.0.join("proj")).unwrap();
    std::fs::write(dir.0.join("proj/__init__.py"), "").unwrap();
    std::fs::write(
        dir.0.join("proj/wsgi.py"),
        "import os\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [os.environ.get('GCONF_FOO', '-').encode()]\n",
    )
    .unwrap();
    let (l, port) = listener();
    std::fs::write(
        dir.0.join("gunicorn.conf.py"),
        // The listener the test holds, passed as fd 3 (no free-port race).
        "import multiprocessing\n\
         bind = 'fd://3'\n\
         workers = min(multiprocessing.cpu_count(), 2)\n\
         wsgi_app = 'proj.wsgi'\n\
         raw_env = ['GCONF_FOO=from-conf']\n\
         def post_fork(server, worker):\n\
         \x20   open('forked-%d' % worker.age, 'w').write(str(worker.pid))\n\
         def when_ready(server):\n\
         \x20   server.log.info('when_ready from the config file')\n",
    )
    .unwrap();
    let mut server = Ferricorn::start_on(venv, &dir.0, &[], Some(&l));
    drop(l);
    let (status, body) = wait_answer(&server, &Addr::Tcp(port));
    assert_eq!(
        (status, body.as_str()),
        (200, "from-conf"),
        "{}",
        server.log()
    );
    // The worker that answered ran post_fork before it built the app.
    let forked = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("forked-"));
    assert!(forked, "{}", server.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("when_ready from the config file") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let master = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        0,
        "{}",
        server.log()
    );
}
