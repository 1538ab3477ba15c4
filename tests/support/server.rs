//! Process control: start the real `ferricorn` binary on a free port, a
//! temporary Unix socket or a listener the test holds (`fd://3`), wait until it
//! answers, and always stop it by pid (the guard's `Drop` runs even when a
//! test fails).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Addr, Client, HttpResponse, TempDir, free_port, wait_until};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferricorn");

/// A running ferricorn master, killed (with its process group) on drop.
pub struct Server {
    pub child: Option<Child>,
    pub addr: Addr,
    pub dir: TempDir,
    /// stderr of the server, written to a file in `dir`.
    pub log: PathBuf,
    /// The status listener's address, with [`ServerBuilder::status_listener`].
    pub status: Option<Addr>,
}

#[derive(Clone)]
pub struct ServerBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    unix: bool,
    /// TCP: bind the port here and pass the listener as `--bind fd://3`.
    inherit: bool,
    wait: bool,
    /// A status listener on a Unix socket in the server's directory.
    status: bool,
}

impl ServerBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, it: I) -> Self {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Listen on a temporary Unix socket instead of TCP.
    pub fn unix(mut self) -> Self {
        self.unix = true;
        self
    }
    /// Let the server bind its TCP port itself (`--bind 127.0.0.1:PORT` on a
    /// port found free and released: another process may take it first,
    /// and then the server is started again on a fresh port). Default: the
    /// test binds the listener and passes it as `--bind fd://3`, so no other
    /// process can take the port in between.
    pub fn bind_port(mut self) -> Self {
        self.inherit = false;
        self
    }
    /// A status listener on a Unix socket in the server's private
    /// directory (`--status-bind unix:DIR/status.sock`): a TCP port looked
    /// up free could be taken by another test first, and `--status-bind`
    /// takes no `fd://`. Its address is [`Server::status`].
    pub fn status_listener(mut self) -> Self {
        self.status = true;
        self
    }
    /// Do not wait for the server to answer before returning.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }
    pub fn start(self) -> Server {
        if self.unix || self.inherit {
            return self.start_once();
        }
        // The server binds a port found free: if something took it in
        // between, it says so and exits, and it starts again elsewhere.
        for _ in 0..10 {
            let s = ServerBuilder {
                wait: false,
                ..self.clone()
            }
            .start_once();
            if !self.wait {
                return s;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if s.log_text().contains("Address already in use") {
                    break;
                }
                if s.answers() {
                    s.wait_workers(&self.args);
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "ferricorn did not become ready; log:\n{}",
                    s.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("every port tried was taken");
    }

    fn start_once(self) -> Server {
        let dir = TempDir::new("srv");
        let mut listener = None;
        let addr = if self.unix {
            Addr::Unix(dir.join("s.sock"))
        } else if self.inherit {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a test listener");
            // std listens with a backlog of 128; ferricorn binds with its
            // --backlog default, 2048, and tests open thousands of
            // connections at once (a full backlog drops SYNs: 1 s retries).
            socket2::SockRef::from(&l)
                .listen(2048)
                .expect("listen with the server's backlog");
            let a = l.local_addr().unwrap();
            listener = Some(l);
            Addr::Tcp(a)
        } else {
            Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())))
        };
        let log = dir.join("stderr.log");
        let mut cmd = Command::new(BIN);
        let status = self.status.then(|| Addr::Unix(dir.join("status.sock")));
        let mut pass = Vec::new();
        match &listener {
            Some(l) => {
                pass.push((l, 3));
                cmd.arg("--bind").arg("fd://3");
            }
            None => {
                cmd.arg("--bind").arg(addr.bind_arg());
            }
        }
        if let Some(st) = &status {
            cmd.arg("--status-bind").arg(st.bind_arg());
        }
        pass_fds(&mut cmd, &pass);
        cmd.args(&self.args);
        cmd.env_remove("FERRICORN_CMD_ARGS")
            .env_remove("PORT")
            .env_remove("WEB_CONCURRENCY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn ferricorn");
        // The child has its copy; ours would keep the port accepting (into
        // the backlog) after the server is gone.
        drop(listener);
        let server = Server {
            child: Some(child),
            addr,
            dir,
            log,
            status,
        };
        if self.wait {
            server.wait_ready();
            server.wait_workers(&self.args);
        }
        server
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            env: Vec::new(),
            unix: false,
            inherit: true,
            wait: true,
            status: false,
        }
    }

    /// Start with `args` on a free TCP port and wait until it answers.
    pub fn start(args: &[&str]) -> Server {
        Server::builder().args(args.iter().copied()).start()
    }

    pub fn start_unix(args: &[&str]) -> Server {
        Server::builder().args(args.iter().copied()).unix().start()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    #[track_caller]
    pub fn connect(&self) -> Client {
        Client::connect(&self.addr).expect("connect to ferricorn")
    }

    /// Wait until a connection succeeds (the master bound) and a request is
    /// answered (a worker accepts). The bound is for a server that never
    /// gets there: a loaded machine (suites in parallel, Python apps
    /// importing Django) takes seconds.
    #[track_caller]
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.answers() {
                return;
            }
            if Instant::now() > deadline {
                panic!("ferricorn did not become ready; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Does a request get a response now?
    fn answers(&self) -> bool {
        let Ok(mut c) = Client::connect(&self.addr) else {
            return false;
        };
        c.set_timeout(Some(Duration::from_secs(5)));
        c.write_all(b"GET /__ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .is_ok()
            && c.read_response().is_ok()
    }

    /// One worker answering is not all of them booted: on a loaded machine
    /// a test that read the worker list at once saw one of two. Wait for
    /// every worker `--workers N` in `args` asked for.
    #[track_caller]
    fn wait_workers(&self, args: &[String]) {
        if let Some(n) = workers_arg(args) {
            let pid = self.pid();
            assert!(
                wait_until(Duration::from_secs(60), || super::workers_of(pid).len()
                    >= n),
                "{n} workers did not boot; log:\n{}",
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send raw bytes on a new connection and read one response.
    #[track_caller]
    pub fn request(&self, raw: &[u8]) -> HttpResponse {
        let mut c = self.connect();
        c.write_all(raw).unwrap();
        c.read_response()
            .unwrap_or_else(|e| panic!("no response: {e}; log:\n{}", self.log_text()))
    }

    /// Send raw bytes, half-close, read everything until the server closes.
    #[track_caller]
    pub fn exchange(&self, raw: &[u8]) -> Vec<u8> {
        let mut c = self.connect();
        c.write_all(raw).unwrap();
        c.read_to_end_lossy()
    }

    #[track_caller]
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        super::send_signal(self.pid(), sig);
    }

    /// Wait for the master to exit; returns its exit status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until `n` workers are accepting (their scoreboard rows say
    /// ready: what a peer's balancing reads), from the status listener
    /// ([`ServerBuilder::status_listener`]). A worker that has set its title
    /// may still be booting: a burst that arrives then all goes to the
    /// other one.
    #[track_caller]
    pub fn wait_workers_ready(&self, n: usize) {
        let status = self
            .status
            .as_ref()
            .expect("wait_workers_ready needs ServerBuilder::status_listener");
        let want = format!("\"workers_ready\":{n},");
        assert!(
            wait_until(Duration::from_secs(60), || {
                super::get(status, "/status").is_ok_and(|r| r.body_str().contains(&want))
            }),
            "{n} workers not ready: {:?}; log:\n{}",
            super::get(status, "/status").map(|r| r.body_str()),
            self.log_text()
        );
    }

    /// Pids of this master's worker processes (children named "worker").
    pub fn worker_pids(&self) -> Vec<u32> {
        super::workers_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // The whole process group: master and workers (and a USR2 child).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wait for `needle` to appear in the server's log.
pub fn wait_log(s: &Server, needle: &str, timeout: Duration) -> bool {
    wait_until(timeout, || s.log_text().contains(needle))
}

/// A marker file the echo app creates as a request enters the app
/// (`?mark=PATH`, src/apps.rs): wait on it instead of sleeping and hoping
/// the request got there.
pub struct Mark(pub PathBuf);

impl Mark {
    /// A fresh marker path in `dir` (nothing is created).
    pub fn new(dir: &TempDir, name: &str) -> Mark {
        Mark(dir.join(&format!("{name}.mark")))
    }

    /// The query parameter to add to an echo request: `mark=PATH`.
    pub fn param(&self) -> String {
        format!("mark={}", self.0.display())
    }

    /// Wait until the app has been entered; returns the pid of the worker
    /// that entered it. Panics after 60 s (a loaded machine is slow, but not
    /// that slow).
    #[track_caller]
    pub fn wait(&self) -> u32 {
        let mut pid = None;
        let entered = wait_until(Duration::from_secs(60), || {
            pid = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        });
        assert!(
            entered,
            "no request entered the app ({} never appeared)",
            self.0.display()
        );
        pid.unwrap()
    }
}

/// A gate the echo app waits at (`?wait=PATH`, src/apps.rs): the app call
/// blocks until the test opens it, so a test holds a request in the app for
/// exactly as long as it needs, on a machine of any speed (instead of a
/// `sleep=S` chosen to outlast the test's steps).
pub struct Gate(pub PathBuf);

impl Gate {
    /// A closed gate in `dir` (nothing is created).
    pub fn new(dir: &TempDir, name: &str) -> Gate {
        Gate(dir.join(&format!("{name}.gate")))
    }

    /// The query parameter to add to an echo request: `wait=PATH`.
    pub fn param(&self) -> String {
        format!("wait={}", self.0.display())
    }

    /// Let every request waiting at this gate (and any later one) go on.
    pub fn open(&self) {
        std::fs::write(&self.0, b"").expect("open the gate");
    }
}

/// Make `listener` the child's fd 3 (for `--bind fd://3`). Our copy stays
/// close-on-exec, so concurrently spawned children do not inherit it.
pub fn pass_as_fd3(cmd: &mut Command, listener: &TcpListener) {
    pass_fds(cmd, &[(listener, 3)]);
}

/// Make each listener the child's descriptor numbered as given (for
/// `fd://N`, N below 10). Our copies stay close-on-exec, so concurrently
/// spawned children do not inherit them.
pub fn pass_fds(cmd: &mut Command, fds: &[(&TcpListener, i32)]) {
    if fds.is_empty() {
        return;
    }
    // Close-on-exec duplicates numbered 10 and up: dup2 onto a number below
    // 10 in the child then always makes a new descriptor, without
    // close-on-exec, and never overwrites another duplicate.
    let dups: Vec<(OwnedFd, i32)> = fds
        .iter()
        .map(|&(listener, to)| {
            assert!((0..10).contains(&to), "fd {to}: pass descriptors below 10");
            let high = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
                .expect("dup the test listener");
            // SAFETY: fcntl just returned `high`, a new descriptor nobody
            // else owns; the OwnedFd closes it when `cmd` (which keeps the
            // closure) drops.
            let dup = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) };
            (dup, to)
        })
        .collect();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it calls dup2 alone, with no
    // allocation and no lock (the Vec is only read); the duplicates are
    // open there (fork copied them).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            for (dup, to) in &dups {
                if nix::libc::dup2(dup.as_raw_fd(), *to) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The `N` of `--workers N`, `--workers=N` or `-w N` in `args`, if a number.
fn workers_arg(args: &[String]) -> Option<usize> {
    let mut it = args.iter();
    let mut found = None;
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--workers=") {
            found = v.parse().ok();
        } else if a == "--workers" || a == "-w" {
            found = it.next().and_then(|v| v.parse().ok());
        }
    }
    found
}
