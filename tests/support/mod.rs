//! Shared helpers for the integration tests: start the real `ferricorn`
//! binary on a free port or a temporary Unix socket, talk raw bytes to it,
//! and always stop it by pid (the guard's `Drop` runs even when a test fails).
#![allow(dead_code)]

pub mod hardening;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod postgres;

pub const BIN: &str = env!("CARGO_BIN_EXE_ferricorn");

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

/// A free TCP port on 127.0.0.1 (bound and released; ports are handed out
/// by the kernel, so concurrent tests do not collide in practice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    pub fn bind_arg(&self) -> String {
        match self {
            Addr::Tcp(a) => a.to_string(),
            Addr::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

/// A client connection of either family.
pub enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Client {
    pub fn connect(addr: &Addr) -> io::Result<Client> {
        let c = match addr {
            Addr::Tcp(a) => Client::Tcp(TcpStream::connect_timeout(a, Duration::from_secs(5))?),
            Addr::Unix(p) => Client::Unix(UnixStream::connect(p)?),
        };
        c.set_timeout(Some(Duration::from_secs(10)));
        Ok(c)
    }
    pub fn set_timeout(&self, t: Option<Duration>) {
        match self {
            Client::Tcp(s) => {
                s.set_read_timeout(t).unwrap();
                s.set_write_timeout(t).unwrap();
            }
            Client::Unix(s) => {
                s.set_read_timeout(t).unwrap();
                s.set_write_timeout(t).unwrap();
            }
        }
    }
    pub fn shutdown_write(&self) {
        let _ = match self {
            Client::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Client::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
    /// Read until EOF (or the read timeout), returning what arrived.
    pub fn read_to_end_lossy(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        out
    }
    /// Read exactly one HTTP response (head + Content-Length or chunked body).
    pub fn read_response(&mut self) -> io::Result<HttpResponse> {
        read_response(self, false)
    }
    /// Read the response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> io::Result<HttpResponse> {
        read_response(self, true)
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Tcp(s) => s.read(buf),
            Client::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Tcp(s) => s.write(buf),
            Client::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact bytes of this response as received.
    pub raw: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Buffered reader state is kept per call: tests read responses one at a
/// time, byte by byte where needed, so pipelined responses stay separate.
fn read_response(c: &mut impl Read, head_only: bool) -> io::Result<HttpResponse> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = c.read(&mut byte)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside response head: {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            ));
        }
        raw.push(byte[0]);
        if raw.len() > 1 << 20 {
            return Err(io::Error::other("response head too large"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    if !no_body {
        if let Some(len) = find("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::other("bad Content-Length"))?;
            body.resize(len, 0);
            c.read_exact(&mut body)?;
            raw.extend_from_slice(&body);
        } else if find("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut line = Vec::new();
                while !line.ends_with(b"\r\n") {
                    c.read_exact(&mut byte)?;
                    line.push(byte[0]);
                }
                raw.extend_from_slice(&line);
                let size_text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                        .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
                let mut chunk = vec![0u8; size + 2];
                c.read_exact(&mut chunk)?;
                raw.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            // Delimited by close.
            let mut rest = Vec::new();
            c.read_to_end(&mut rest)?;
            raw.extend_from_slice(&rest);
            body = rest;
        }
    }
    Ok(HttpResponse {
        status,
        status_line,
        headers,
        body,
        raw,
    })
}

/// A running ferricorn master, killed (with its process group) on drop.
pub struct Server {
    pub child: Option<Child>,
    pub addr: Addr,
    pub dir: TempDir,
    /// stderr of the server, written to a file in `dir`.
    pub log: PathBuf,
}

pub struct ServerBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    unix: bool,
    wait: bool,
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
    /// Do not wait for the server to answer before returning.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }
    pub fn start(self) -> Server {
        let dir = TempDir::new("srv");
        let addr = if self.unix {
            Addr::Unix(dir.join("s.sock"))
        } else {
            Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())))
        };
        let log = dir.join("stderr.log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--bind").arg(addr.bind_arg());
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
        let server = Server {
            child: Some(child),
            addr,
            dir,
            log,
        };
        if self.wait {
            server.wait_ready();
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
            wait: true,
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

    pub fn connect(&self) -> Client {
        Client::connect(&self.addr).expect("connect to ferricorn")
    }

    /// Wait until a connection succeeds (the master bound) and a request is
    /// answered (a worker accepts).
    #[track_caller]
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(&self.addr) {
                c.set_timeout(Some(Duration::from_secs(5)));
                if c.write_all(b"GET /__ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .is_ok()
                    && c.read_response().is_ok()
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("ferricorn did not become ready; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send raw bytes on a new connection and read one response.
    pub fn request(&self, raw: &[u8]) -> HttpResponse {
        let mut c = self.connect();
        c.write_all(raw).unwrap();
        c.read_response()
            .unwrap_or_else(|e| panic!("no response: {e}; log:\n{}", self.log_text()))
    }

    /// Send raw bytes, half-close, read everything until the server closes.
    pub fn exchange(&self, raw: &[u8]) -> Vec<u8> {
        let mut c = self.connect();
        c.write_all(raw).unwrap();
        c.read_to_end_lossy()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
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

    /// Pids of this master's worker processes (children named "worker").
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid())
            .into_iter()
            .filter(|p| cmdline(*p).contains("worker"))
            .collect()
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

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..])
            {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // f[0] = state, f[1] = ppid
                if f.get(1).and_then(|x| x.parse::<u32>().ok()) == Some(pid) && f[0] != "Z" {
                    out.push(p);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .map(|i| !s[i + 2..].starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

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

// ---- Helpers added for the tests/http_*.rs suites ----

/// Read until the server closes the connection, for at most `within`.
/// `Ok(bytes)` on a clean EOF (the bytes that arrived before it); `Err` if the
/// connection is still open at the deadline, or was reset.
pub fn read_to_eof(c: &mut Client, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let res = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!(
                "connection still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        c.set_timeout(Some(left));
        match c.read(&mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                break Err(format!(
                    "read failed ({e}) instead of EOF; got {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    };
    c.set_timeout(Some(Duration::from_secs(10)));
    res
}

/// True if nothing arrives and the connection stays open for `wait`.
pub fn stays_silent(c: &mut Client, wait: Duration) -> bool {
    c.set_timeout(Some(wait));
    let mut b = [0u8; 1];
    let silent = matches!(c.read(&mut b), Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));
    c.set_timeout(Some(Duration::from_secs(10)));
    silent
}

/// Resident set size of `pid` in KiB (`VmRSS` in /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raise this process's soft RLIMIT_NOFILE to at least `want` (capped at the
/// hard limit); children started afterwards inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= want {
        return soft;
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).unwrap();
    new
}

// ---------------------------------------------------------------------------
// Lifecycle helpers (tests/lifecycle_*.rs).

/// What a [`Load`] saw. A request counts as `failed` only if it was written
/// completely and no complete response came back; `write_errors` and
/// `connect_errors` are counted apart (a request that never left).
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    pub bad_status: u64,
    pub write_errors: u64,
    pub connect_errors: u64,
    /// Connections reopened after a `Connection: close` response.
    pub reconnects: u64,
    /// The first few failure descriptions.
    pub errors: Vec<String>,
}

impl LoadStats {
    pub fn merge(&mut self, o: LoadStats) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.bad_status += o.bad_status;
        self.write_errors += o.write_errors;
        self.connect_errors += o.connect_errors;
        self.reconnects += o.reconnects;
        for e in o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e);
            }
        }
    }
    /// No request of any kind went wrong.
    pub fn clean(&self) -> bool {
        self.failed == 0
            && self.bad_status == 0
            && self.write_errors == 0
            && self.connect_errors == 0
    }
}

/// Keep-alive clients sending `GET target` in a loop, as wrk does: a client
/// that gets `Connection: close` (or finds its idle connection closed before
/// writing) reconnects. Bounded: every thread stops after `max` at the latest.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<LoadStats>>,
    pub started: Instant,
}

impl Load {
    pub fn start(addr: &Addr, clients: usize, target: &str) -> Load {
        Load::start_for(addr, clients, target, Duration::from_secs(30))
    }

    pub fn start_for(addr: &Addr, clients: usize, target: &str, max: Duration) -> Load {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let addr = addr.clone();
                let req = format!("GET {target} HTTP/1.1\r\nHost: load\r\n\r\n").into_bytes();
                std::thread::spawn(move || load_client(&addr, &req, &stop, max))
            })
            .collect();
        Load {
            stop,
            threads,
            started: Instant::now(),
        }
    }

    /// Total successes so far are not tracked live; wait a little for traffic.
    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadStats::default();
        for t in self.threads {
            total.merge(t.join().expect("load thread panicked"));
        }
        total
    }
}

/// A load client's connection: write half, buffered read half.
type LoadConn = (Box<dyn Write>, io::BufReader<Box<dyn Read>>);

fn load_client(
    addr: &Addr,
    req: &[u8],
    stop: &std::sync::atomic::AtomicBool,
    max: Duration,
) -> LoadStats {
    let mut st = LoadStats::default();
    let deadline = Instant::now() + max;
    let mut conn: Option<LoadConn> = None;
    let note = |st: &mut LoadStats, e: String| {
        if st.errors.len() < 10 {
            st.errors.push(e);
        }
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            let pair: io::Result<(Box<dyn Write>, Box<dyn Read>)> = match addr {
                Addr::Tcp(a) => {
                    TcpStream::connect_timeout(a, Duration::from_secs(5)).and_then(|s| {
                        s.set_read_timeout(Some(Duration::from_secs(15)))?;
                        s.set_write_timeout(Some(Duration::from_secs(15)))?;
                        s.set_nodelay(true)?;
                        let r = s.try_clone()?;
                        Ok((Box::new(s) as Box<dyn Write>, Box::new(r) as Box<dyn Read>))
                    })
                }
                Addr::Unix(p) => UnixStream::connect(p).and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(15)))?;
                    let r = s.try_clone()?;
                    Ok((Box::new(s) as Box<dyn Write>, Box::new(r) as Box<dyn Read>))
                }),
            };
            match pair {
                Ok((w, r)) => conn = Some((w, io::BufReader::new(r))),
                Err(e) => {
                    st.connect_errors += 1;
                    note(&mut st, format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let (w, r) = conn.as_mut().unwrap();
        if let Err(e) = w.write_all(req) {
            st.write_errors += 1;
            note(&mut st, format!("write: {e}"));
            conn = None;
            continue;
        }
        match read_response(r, false) {
            Ok(resp) => {
                if resp.status == 200 {
                    st.ok += 1;
                } else {
                    st.bad_status += 1;
                    note(&mut st, format!("status {}", resp.status_line));
                }
                if resp
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    st.reconnects += 1;
                    conn = None;
                }
            }
            Err(e) => {
                st.failed += 1;
                note(
                    &mut st,
                    format!("request written, no complete response: {e}"),
                );
                conn = None;
            }
        }
    }
    st
}

/// Read a pid file (None if missing or not a number).
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Send `sig` to an arbitrary pid.
pub fn send_signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Worker pids (children whose title says "worker") of any master pid.
pub fn workers_of(master: u32) -> Vec<u32> {
    children_of(master)
        .into_iter()
        .filter(|p| cmdline(*p).contains("worker"))
        .collect()
}

/// Wait until `pid` is gone (or a zombie).
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || !alive(pid))
}

/// Wait for `needle` to appear in the server's log.
pub fn wait_log(s: &Server, needle: &str, timeout: Duration) -> bool {
    wait_until(timeout, || s.log_text().contains(needle))
}

/// One `GET` on a fresh connection with `Connection: close`; the response or an error.
pub fn get(addr: &Addr, target: &str) -> io::Result<HttpResponse> {
    let mut c = Client::connect(addr)?;
    c.set_timeout(Some(Duration::from_secs(10)));
    c.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    c.read_response()
}

/// Wait until `master` has exactly `n` workers (a just-forked worker is
/// counted once it has set its title); returns their pids.
#[track_caller]
pub fn wait_workers(master: u32, n: usize) -> Vec<u32> {
    let mut last = Vec::new();
    if wait_until(Duration::from_secs(10), || {
        last = workers_of(master);
        last.len() == n
    }) {
        return last;
    }
    panic!("master {master}: expected {n} workers, have {last:?}");
}

// ---------------------------------------------------------------------------
// nginx helpers (tests/nginx_*.rs, tests/upload_*.rs).

pub const NGINX: &str = "/usr/sbin/nginx";

/// A real nginx (master + 1 worker) in front of ferricorn, running one of the
/// `conf/nginx/*.conf` fragments with its `{{PLACEHOLDERS}}` filled in, under
/// a private prefix in a temp dir. Stopped by pid (TERM, then KILL of its
/// process group) on drop, even when the test fails.
pub struct Nginx {
    child: Option<Child>,
    pub dir: TempDir,
    pub port: u16,
    /// `{{STATIC_ROOT}}`: `<dir>/static`, created empty.
    pub static_root: PathBuf,
}

impl Nginx {
    /// Start nginx with `conf/nginx/<fragment>`. `{{LISTEN}}` (a free port),
    /// `{{SERVER_NAME}}` (`localhost`) and `{{STATIC_ROOT}}` are filled in
    /// here; `fills` gives the others, e.g. `("SOCKET", "/tmp/x/s.sock")`.
    /// Panics if a placeholder is left over.
    #[track_caller]
    pub fn start(fragment: &str, fills: &[(&str, String)]) -> Nginx {
        Nginx::start_edited(fragment, fills, |t| t)
    }

    /// Like [`Nginx::start`], with the fragment's text passed through `edit`
    /// first (for a control experiment, e.g. without `keepalive`).
    #[track_caller]
    pub fn start_edited(
        fragment: &str,
        fills: &[(&str, String)],
        edit: impl FnOnce(String) -> String,
    ) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} not found: these tests need nginx (apt-get install nginx-light)"
        );
        let dir = TempDir::new("nginx");
        let port = free_port();
        let static_root = dir.join("static");
        std::fs::create_dir_all(&static_root).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("conf/nginx")
            .join(fragment);
        let mut text = edit(
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())),
        );
        let mut all: Vec<(&str, String)> = vec![
            ("LISTEN", format!("127.0.0.1:{port}")),
            ("SERVER_NAME", "localhost".into()),
            ("STATIC_ROOT", static_root.display().to_string()),
        ];
        all.extend(fills.iter().cloned());
        for (k, v) in &all {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
        if let Some(i) = text.find("{{") {
            let end = text[i..].find("}}").map_or(text.len(), |e| i + e + 2);
            panic!(
                "{fragment}: placeholder {} not filled in by the test",
                &text[i..end]
            );
        }
        let filled = dir.join("fragment.conf");
        std::fs::write(&filled, text).unwrap();
        let d = dir.path().display().to_string();
        let mut conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\nhttp {{\n\
             access_log {d}/access.log;\n"
        );
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            conf.push_str(&format!("{t}_temp_path {d}/{t};\n"));
        }
        conf.push_str(&format!("include {};\n}}\n", filled.display()));
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(NGINX);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn nginx");
        let mut n = Nginx {
            child: Some(child),
            dir,
            port,
            static_root,
        };
        let addr = n.addr();
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(Ok(Some(_))) = n.child.as_mut().map(|c| c.try_wait()) {
                return true; // exited: reported below
            }
            TcpStream::connect(match &addr {
                Addr::Tcp(a) => *a,
                Addr::Unix(_) => unreachable!(),
            })
            .is_ok()
        });
        if !up || matches!(n.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_)))) {
            panic!("nginx did not start:\n{}", n.logs());
        }
        n
    }

    pub fn addr(&self) -> Addr {
        Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// nginx's stderr and error.log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- nginx stderr:\n{}\n--- nginx error.log:\n{}",
            std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
        )
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Send raw bytes on a new connection to nginx and read one response.
    #[track_caller]
    pub fn request(&self, raw: &[u8]) -> HttpResponse {
        let mut c = Client::connect(&self.addr()).expect("connect to nginx");
        c.write_all(raw).unwrap();
        c.read_response()
            .unwrap_or_else(|e| panic!("no response from nginx: {e}\n{}", self.logs()))
    }

    /// `GET target` with `Connection: close` through nginx.
    #[track_caller]
    pub fn get(&self, target: &str) -> HttpResponse {
        self.request(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            use nix::sys::signal::{Signal, kill, killpg};
            use nix::unistd::Pid;
            let pid = Pid::from_raw(child.id() as i32);
            // TERM: nginx's fast shutdown, which also stops its workers.
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Whatever is left of the group (a worker orphaned by a KILL).
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Connect to `addr` (TCP) from the local address `from` (e.g. 127.0.0.2,
/// so nginx sees a client that is not in ferricorn's trusted proxy list).
pub fn connect_from(from: std::net::IpAddr, addr: &Addr) -> io::Result<Client> {
    let Addr::Tcp(to) = addr else {
        return Err(io::Error::other("connect_from: TCP only"));
    };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&(*to).into(), Duration::from_secs(5))?;
    let c = Client::Tcp(s.into());
    c.set_timeout(Some(Duration::from_secs(10)));
    Ok(c)
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

/// The client-side ports of every TCP connection (any state, TIME_WAIT
/// included) to or from local port `port` on IPv4, from /proc/net/tcp.
pub fn tcp_peer_ports(port: u16) -> std::collections::BTreeSet<u16> {
    let mut out = std::collections::BTreeSet::new();
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (Some(l), Some(r)) = (port_of(f[1]), port_of(f[2])) else {
            continue;
        };
        if f[3] == "0A" {
            continue; // LISTEN
        }
        if l == port && r != 0 {
            out.insert(r);
        } else if r == port {
            out.insert(l);
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), written independently of the
/// server's encoder so that tests of the `echo` app check it, not trust it.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((bits >> (18 - 6 * k)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python tests' virtualenv, created on first use by
/// tests/python/setup-venv.sh (a no-op when it is up to date).
pub fn venv() -> &'static Path {
    static V: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(repo().join("tests/python/setup-venv.sh"))
            .output()
            .expect("run tests/python/setup-venv.sh");
        assert!(
            out.status.success(),
            "setup-venv.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// CRC-32 (IEEE), to check that an upload arrived intact.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}
