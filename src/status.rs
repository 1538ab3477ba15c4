//! The status listener (`--status-bind`): a tiny HTTP/1.1 responder run by
//! the master in its own loop, on its own socket (never a client socket of
//! the workers): `GET /healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! It is deliberately small and defensive: one request per connection
//! (`Connection: close`), at most [`MAX_HEAD`] bytes of request head,
//! [`MAX_CONNS`] connections at once, each gone after [`DEADLINE_MS`]
//! whatever the client does; every socket is non-blocking, so a slow or
//! hostile client never stalls the master. Nothing here is per-request work
//! for the workers: the master reads the shared counters only when asked.
//!
//! Also here: `ferricorn status`, the operator's client ([`cli`]), and the
//! accept-queue reading of the listeners ([`listen_queues`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::Socket;

use crate::bind::BindAddr;
use crate::listener::{self, BindOptions, Listener};
use crate::metrics::{self, Format, ListenQueue, ServerStatus};

/// Longest request head accepted (then 431 and close).
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNS: usize = 32;
/// A connection's whole life, read to last byte written.
pub const DEADLINE_MS: u64 = 5_000;

struct StatusConn {
    sock: Socket,
    buf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    deadline_ms: u64,
}

/// What a request asks for, from its head alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics(Format),
    /// `/status`; `true` for the text table (`?format=text`).
    Status(bool),
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// Route a buffered request head. `None`: incomplete, read more.
pub fn route(buf: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Some(Route::TooLarge),
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(Route::TooLarge),
        Err(_) => return Some(Route::BadRequest),
    }
    if buf.len() > MAX_HEAD {
        return Some(Route::TooLarge);
    }
    let method = req.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Some(Route::MethodNotAllowed);
    }
    let target = req.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let accept = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("accept"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_default();
    Some(match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics(Format::from_accept(&accept)),
        "/status" => Route::Status(query.split('&').any(|kv| kv == "format=text")),
        _ => Route::NotFound,
    })
}

fn response(status: u16, ctype: &str, body: &str, head_only: bool) -> Vec<u8> {
    let reason = crate::http::reason_phrase(status);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The answer to `route`, rendering from `status()` only when needed.
pub fn answer(route: &Route, head_only: bool, status: &mut dyn FnMut() -> ServerStatus) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match route {
        Route::Healthz => response(200, TEXT, "ok\n", head_only),
        Route::Readyz => {
            if status().is_ready() {
                response(200, TEXT, "ready\n", head_only)
            } else {
                response(503, TEXT, "not ready\n", head_only)
            }
        }
        Route::Metrics(fmt) => response(
            200,
            fmt.content_type(),
            &metrics::render_metrics(&status(), *fmt),
            head_only,
        ),
        Route::Status(false) => response(
            200,
            "application/json",
            &metrics::render_json(&status()),
            head_only,
        ),
        Route::Status(true) => response(200, TEXT, &metrics::render_table(&status()), head_only),
        Route::NotFound => response(
            404,
            TEXT,
            "not found: try /healthz /readyz /metrics /status\n",
            head_only,
        ),
        Route::MethodNotAllowed => response(405, TEXT, "only GET and HEAD\n", head_only),
        Route::BadRequest => response(400, TEXT, "bad request\n", false),
        Route::TooLarge => response(431, TEXT, "request head too large\n", false),
    }
}

/// The master's status listener and its open connections.
pub struct StatusServer {
    listener: Listener,
    conns: Vec<StatusConn>,
}

/// Environment variable carrying the status listener's fd across a USR2
/// re-exec (next to [`listener::INHERIT_ENV`] for the public ones).
pub const INHERIT_ENV: &str = "FERRICORN_STATUS_FD";

/// The status listener handed over by the master that re-executed us, if
/// any (the variable is removed so that workers and later re-execs do not
/// see it).
pub fn inherited() -> Option<StatusServer> {
    let fd: i32 = std::env::var(INHERIT_ENV).ok()?.parse().ok()?;
    crate::sys::remove_env(INHERIT_ENV);
    let socket = crate::sys::adopt_listener(fd).ok()?;
    let name = listener::describe(&socket);
    let unix_path = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()));
    Some(StatusServer {
        listener: Listener {
            name,
            socket,
            unix_path,
            external: false,
        },
        conns: Vec::new(),
    })
}

impl StatusServer {
    /// Is this listener bound to `addr`?
    pub fn is_at(&self, addr: &BindAddr) -> bool {
        let Ok(local) = self.listener.socket.local_addr() else {
            return false;
        };
        match addr {
            BindAddr::Tcp(sa) => local.as_socket() == Some(*sa),
            BindAddr::Unix(p) => local.as_pathname() == Some(p.as_path()),
            BindAddr::Fd(_) => false,
        }
    }

    pub fn bind(addr: &BindAddr) -> io::Result<StatusServer> {
        let mut ls = listener::bind_all(
            std::slice::from_ref(addr),
            &BindOptions { backlog: 64 },
            &mut Vec::new(),
        )?;
        Ok(StatusServer {
            listener: ls.remove(0),
            conns: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.listener.name
    }

    /// Remove the socket file of a Unix status listener.
    pub fn unlink(&self) {
        self.listener.unlink();
    }

    /// Sleep until `wake` (the signal pipe) or a status socket is ready, or
    /// `ms` pass.
    pub fn wait(&self, wake: BorrowedFd<'_>, ms: u16) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = Vec::with_capacity(2 + self.conns.len());
        fds.push(PollFd::new(wake, PollFlags::POLLIN));
        if self.conns.len() < MAX_CONNS {
            fds.push(PollFd::new(self.listener.socket.as_fd(), PollFlags::POLLIN));
        }
        for c in &self.conns {
            let ev = if c.out.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::POLLOUT
            };
            fds.push(PollFd::new(c.sock.as_fd(), ev));
        }
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }

    /// Accept, read and answer what can be done without blocking; close
    /// connections that are done or past their deadline.
    pub fn serve(&mut self, now_ms: u64, status: &mut dyn FnMut() -> ServerStatus) {
        // Accept only up to the limit: the rest wait in the kernel's queue
        // (and `wait` stops polling the listener meanwhile, so a full table
        // never makes the master spin).
        while self.conns.len() < MAX_CONNS {
            match self.listener.socket.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.conns.push(StatusConn {
                        sock,
                        buf: Vec::new(),
                        out: Vec::new(),
                        written: 0,
                        deadline_ms: now_ms + DEADLINE_MS,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut cached: Option<ServerStatus> = None;
        let mut get = || cached.get_or_insert_with(&mut *status).clone();
        self.conns.retain_mut(|c| {
            if now_ms >= c.deadline_ms {
                return false;
            }
            if c.out.is_empty() {
                let mut chunk = [0u8; 2048];
                loop {
                    match (&c.sock).read(&mut chunk) {
                        Ok(0) => return false,
                        Ok(n) => {
                            c.buf.extend_from_slice(&chunk[..n]);
                            if c.buf.len() > MAX_HEAD {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return false,
                    }
                }
                match route(&c.buf) {
                    None => return true,
                    Some(r) => {
                        let head_only = c.buf.starts_with(b"HEAD ");
                        c.out = answer(&r, head_only, &mut get);
                    }
                }
            }
            while c.written < c.out.len() {
                match (&c.sock).write(&c.out[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            false
        });
    }
}

/// The accept queue of each listener: the TCP depth from /proc/net/tcp{,6}
/// (for a listening socket, `rx_queue` is the queue's current length); the
/// backlog is `--backlog` as the kernel caps it (`net.core.somaxconn`).
/// Unix sockets: depth and backlog from the kernel's sock_diag netlink
/// interface (what `ss -xl` shows), when it answers.
pub fn listen_queues(listeners: &[Listener], backlog: u64) -> Vec<ListenQueue> {
    let unix = if listeners.iter().any(|l| l.is_unix()) {
        unix_listen_queues().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut table = String::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            table.push_str(&t);
        }
    }
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    listeners
        .iter()
        .map(|l| {
            let inode = nix::sys::stat::fstat(l.socket.as_fd())
                .map(|s| s.st_ino)
                .unwrap_or(0);
            if let Some(&(_, depth, limit)) = unix.iter().find(|(ino, _, _)| *ino == inode) {
                return ListenQueue {
                    name: l.name.clone(),
                    depth: Some(depth),
                    backlog: limit,
                };
            }
            ListenQueue {
                name: l.name.clone(),
                depth: proc_net_listen_queue(&table, inode),
                backlog: backlog.min(somaxconn),
            }
        })
        .collect()
}

/// `(inode, queued, backlog)` of every listening Unix stream socket, from a
/// `SOCK_DIAG_BY_FAMILY` dump with `UDIAG_SHOW_RQLEN` (for a listener,
/// rqueue is the accept queue's length and wqueue its limit).
fn unix_listen_queues() -> Option<Vec<(u64, u64, u64)>> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    const TCP_LISTEN: u32 = 10;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend(40u32.to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend(NLM_F_REQUEST_DUMP.to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // seq
    req.extend(0u32.to_ne_bytes()); // pid
    req.extend([nix::libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    req.extend((1u32 << TCP_LISTEN).to_ne_bytes()); // states
    req.extend(0u32.to_ne_bytes()); // ino: all
    req.extend(UDIAG_SHOW_RQLEN.to_ne_bytes());
    req.extend([0xff; 8]); // cookie: none
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    // A dump of a few thousand sockets at most; bounded in case the
    // kernel never says DONE.
    for _ in 0..256 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
        if n == 0 {
            return Some(out);
        }
        if parse_unix_diag(&buf[..n], &mut out)? {
            return Some(out);
        }
    }
    Some(out)
}

/// Parse one netlink datagram of unix_diag messages into `out`. `Some(true)`
/// at NLMSG_DONE, `None` on an error message.
pub fn parse_unix_diag(mut b: &[u8], out: &mut Vec<(u64, u64, u64)>) -> Option<bool> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const UNIX_DIAG_RQLEN: u16 = 4;
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let u16_at = |b: &[u8], i: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
    };
    while b.len() >= 16 {
        let len = u32_at(b, 0)? as usize;
        let kind = u16_at(b, 4)?;
        if len < 16 || len > b.len() {
            return None;
        }
        match kind {
            NLMSG_DONE => return Some(true),
            NLMSG_ERROR => return None,
            _ => {}
        }
        // unix_diag_msg: family, type, state, pad, ino (u32), cookie (8).
        let msg = &b[16..len];
        let ino = u32_at(msg, 4)? as u64;
        let mut attrs = msg.get(16..)?;
        while attrs.len() >= 4 {
            let alen = u16_at(attrs, 0)? as usize;
            let atype = u16_at(attrs, 2)?;
            if alen < 4 || alen > attrs.len() {
                break;
            }
            if atype == UNIX_DIAG_RQLEN && alen >= 12 {
                out.push((ino, u32_at(attrs, 4)? as u64, u32_at(attrs, 8)? as u64));
            }
            attrs = &attrs[(alen + 3) & !3..];
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Some(false)
}

/// Connections queued on the LISTEN socket with `inode` in a
/// /proc/net/tcp table.
pub fn proc_net_listen_queue(table: &str, inode: u64) -> Option<u64> {
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        if f.len() < 10 || f[3] != "0A" || f[9].parse::<u64>().ok()? != inode {
            return None;
        }
        let (_, rx) = f[4].split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Resident set size of `pid` in bytes, from /proc/PID/statm.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as u64)
        .unwrap_or(4096)
}

/// `ferricorn status [--status-bind ADDR] [-c FILE] [--json]`: print the
/// table (or the JSON) from a running master's status listener. The address
/// comes from the flag, else from `FERRICORN_STATUS_BIND`, else from the
/// config file the server reads (`-c FILE`, else `./ferricorn.conf.py` or
/// `./gunicorn.conf.py`, as the server finds it), so that an operator in the
/// project's directory types `ferricorn status` and nothing more. Returns
/// the exit code.
pub fn cli(args: &[String]) -> i32 {
    let mut addr = std::env::var("FERRICORN_STATUS_BIND").ok();
    let mut flag_addr = None;
    let mut config: Vec<String> = Vec::new();
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--status-bind" => flag_addr = it.next().cloned(),
            s if s.starts_with("--status-bind=") => {
                flag_addr = Some(s["--status-bind=".len()..].to_string())
            }
            "-c" | "--config" => match it.next() {
                Some(f) => config = vec!["--config".into(), f.clone()],
                None => {
                    eprintln!("Error: ferricorn status: {a} needs a FILE");
                    return 2;
                }
            },
            s if s.starts_with("--config=") => {
                config = vec!["--config".into(), s["--config=".len()..].to_string()]
            }
            "-h" | "--help" => {
                println!(
                    "usage: ferricorn status [--status-bind ADDR] [-c FILE] [--json]\n\n\
                     Show a running server's workers and counters, read from its status\n\
                     listener (ADDR as given to --status-bind: unix:PATH or HOST:PORT;\n\
                     default: $FERRICORN_STATUS_BIND, else status_bind in the config\n\
                     file: -c FILE, else ./ferricorn.conf.py or ./gunicorn.conf.py)."
                );
                return 0;
            }
            other => {
                eprintln!("Error: ferricorn status: unknown argument '{other}'");
                return 2;
            }
        }
    }
    if flag_addr.is_some() {
        addr = flag_addr;
    } else if addr.is_none() || !config.is_empty() {
        match status_bind_from_config(&config) {
            Ok(Some(a)) => addr = Some(a),
            Ok(None) => {}
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    }
    let Some(addr) = addr else {
        eprintln!(
            "Error: ferricorn status needs --status-bind ADDR (or FERRICORN_STATUS_BIND, \
             or status_bind in the config file)"
        );
        return 2;
    };
    let path = if json {
        "/status"
    } else {
        "/status?format=text"
    };
    match fetch(&addr, path) {
        Ok((200, body)) => {
            print!("{body}");
            0
        }
        Ok((code, body)) => {
            eprintln!("Error: {addr}{path} answered {code}: {}", body.trim_end());
            1
        }
        Err(e) => {
            eprintln!("Error: cannot read the status listener at {addr}: {e}");
            1
        }
    }
}

/// The `--status-bind` the server would read from its config file (`args`
/// is `--config FILE` or empty for the default files). The environment's
/// `*_CMD_ARGS` are not read: they are the server's command line, not the
/// operator's.
fn status_bind_from_config(args: &[String]) -> Result<Option<String>, String> {
    let action = crate::config::parse(args, &|_| None)?;
    Ok(match action {
        crate::config::Action::Run(cfg) | crate::config::Action::Check(cfg) => {
            cfg.status_bind.map(|b| b.to_string())
        }
        crate::config::Action::Print(_) => None,
    })
}

/// GET `path` from a status listener; (status code, body).
pub fn fetch(addr: &str, path: &str) -> io::Result<(u16, String)> {
    let bind = BindAddr::parse(addr).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let limit = std::time::Duration::from_secs(10);
    let timeout = Some(limit);
    let request = format!("GET {path} HTTP/1.1\r\nHost: ferricorn\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    match bind {
        BindAddr::Tcp(sa) => {
            let mut s = std::net::TcpStream::connect_timeout(&sa, limit)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut raw)?;
        }
        BindAddr::Unix(p) => {
            let mut s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut raw)?;
        }
        BindAddr::Fd(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fd://N is not an address a client can connect to",
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status code"))?;
    Ok((code, body.to_string()))
}

impl AsRawFd for StatusServer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /healthz HTTP/1.1\r\n\r\n"),
            Some(Route::Healthz)
        );
        assert_eq!(route(b"GET /readyz HTTP/1.0\r\n\r\n"), Some(Route::Readyz));
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"),
            Some(Route::Metrics(Format::OpenMetrics))
        );
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::Metrics(Format::Prometheus))
        );
        assert_eq!(
            route(b"GET /status HTTP/1.1\r\n\r\n"),
            Some(Route::Status(false))
        );
        assert_eq!(
            route(b"GET /status?format=text HTTP/1.1\r\n\r\n"),
            Some(Route::Status(true))
        );
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::MethodNotAllowed)
        );
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n"), None);
        assert_eq!(route(b"\x01\x02 garbage\r\n\r\n"), Some(Route::BadRequest));
        let mut big = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(route(&big), Some(Route::TooLarge));
    }

    #[test]
    fn head_answers_carry_no_body() {
        let mut st = || ServerStatus::default();
        let r = answer(&Route::Healthz, true, &mut st);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let r = String::from_utf8(answer(&Route::Readyz, false, &mut st)).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 "), "no worker: not ready");
    }

    #[test]
    fn unix_diag_messages() {
        let mut msg = Vec::new();
        // nlmsghdr: len 44, type 20, flags, seq, pid
        msg.extend(44u32.to_ne_bytes());
        msg.extend(20u16.to_ne_bytes());
        msg.extend(2u16.to_ne_bytes());
        msg.extend([0; 8]);
        // unix_diag_msg: family, type, state, pad, ino 777, cookie
        msg.extend([1, 1, 10, 0]);
        msg.extend(777u32.to_ne_bytes());
        msg.extend([0; 8]);
        // rtattr RQLEN: len 12, type 4, rqueue 3, wqueue 128
        msg.extend(12u16.to_ne_bytes());
        msg.extend(4u16.to_ne_bytes());
        msg.extend(3u32.to_ne_bytes());
        msg.extend(128u32.to_ne_bytes());
        // NLMSG_DONE
        msg.extend(20u32.to_ne_bytes());
        msg.extend(3u16.to_ne_bytes());
        msg.extend([0; 14]);
        let mut out = Vec::new();
        assert_eq!(parse_unix_diag(&msg, &mut out), Some(true));
        assert_eq!(out, vec![(777, 3, 128)]);
        assert_eq!(parse_unix_diag(&msg[..10], &mut Vec::new()), Some(false));
    }

    #[test]
    fn proc_net_tcp_listen_rows() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F40 00000000:0000 0A 00000800:00000003 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F41 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 123457 1\n";
        assert_eq!(proc_net_listen_queue(table, 123456), Some(3));
        assert_eq!(proc_net_listen_queue(table, 123457), None, "not LISTEN");
        assert_eq!(proc_net_listen_queue(table, 9), None);
    }
}
