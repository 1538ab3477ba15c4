//! Listening sockets: bound once by the master, inherited by every worker.
//!
//! Ancestors: gunicorn `sock.py` (`create_sockets`, `UnixSocket`), unicorn
//! `socket_helper.rb`, tiny_http's `Listener {Tcp, Unix}`.
//!
//! A listener comes from one of three places, tried in this order:
//! 1. the fds a previous master handed over on a USR2 upgrade
//!    (`FERRICORN_FD=3,4`), matched to a `--bind` by address;
//! 2. systemd socket activation (`LISTEN_FDS`/`LISTEN_PID`), or `fd://N`;
//! 3. a fresh `bind(2)` + `listen(2)`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::bind::BindAddr;
use crate::sys;

/// Environment variable carrying listener fds across a USR2 re-exec.
pub const INHERIT_ENV: &str = "FERRICORN_FD";

/// A bound, listening socket.
pub struct Listener {
    /// What the operator asked for (`--bind` form), for logs and titles.
    pub name: String,
    pub socket: Socket,
    /// The Unix socket path we created (and may unlink at exit).
    pub unix_path: Option<PathBuf>,
    /// Came from systemd or an fd number: never unlink its path.
    pub external: bool,
}

impl Listener {
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub fn is_unix(&self) -> bool {
        matches!(
            self.socket.local_addr().ok().map(|a| a.is_unix()),
            Some(true)
        )
    }

    /// Remove our socket file (graceful exit, when no successor uses it).
    pub fn unlink(&self) {
        if let (Some(path), false) = (&self.unix_path, self.external) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Options that shape how sockets are bound.
pub struct BindOptions {
    pub backlog: i32,
}

/// Bind every address, preferring inherited fds. Returns listeners in `--bind` order.
pub fn bind_all(
    binds: &[BindAddr],
    opts: &BindOptions,
    inherited: &mut Vec<Socket>,
) -> io::Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(binds.len());
    for addr in binds {
        let name = addr.to_string();
        if let Some(sock) = take_matching(inherited, addr) {
            let unix_path = match addr {
                BindAddr::Unix(p) => Some(p.clone()),
                _ => None,
            };
            out.push(Listener {
                name,
                socket: sock,
                unix_path,
                external: matches!(addr, BindAddr::Fd(_)),
            });
            continue;
        }
        let listener = match addr {
            BindAddr::Tcp(sa) => Listener {
                name,
                socket: bind_tcp(*sa, opts.backlog).map_err(|e| annotate(e, addr))?,
                unix_path: None,
                external: false,
            },
            BindAddr::Unix(path) => Listener {
                name,
                socket: bind_unix(path, opts.backlog).map_err(|e| annotate(e, addr))?,
                unix_path: Some(path.clone()),
                external: false,
            },
            BindAddr::Fd(fd) => Listener {
                name,
                socket: sys::adopt_listener(*fd).map_err(|e| annotate(e, addr))?,
                unix_path: None,
                external: true,
            },
        };
        out.push(listener);
    }
    Ok(out)
}

fn annotate(e: io::Error, addr: &BindAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

/// Take an inherited socket whose local address is `addr`.
fn take_matching(inherited: &mut Vec<Socket>, addr: &BindAddr) -> Option<Socket> {
    let pos = inherited.iter().position(|s| {
        let Ok(local) = s.local_addr() else {
            return false;
        };
        match addr {
            BindAddr::Tcp(sa) => local.as_socket() == Some(*sa),
            BindAddr::Unix(p) => local.as_pathname() == Some(p.as_path()),
            // An fd passed down by an upgrading master (USR2) is the same
            // descriptor `--bind fd://N` names: adopting it a second time
            // would give two owners, and the first to close it breaks the other.
            BindAddr::Fd(n) => s.as_raw_fd() == *n,
        }
    })?;
    Some(inherited.remove(pos))
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting while old connections sit in TIME_WAIT must not fail.
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Bind a Unix socket. A stale socket file (nobody accepts on it) is removed;
/// a live one, or a path that is not a socket, is an error, never a deletion.
fn bind_unix(path: &Path, backlog: i32) -> io::Result<Socket> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        match probe.connect(&SockAddr::unix(path)?) {
            Ok(()) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is accepting on this socket",
                ));
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
                log::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.bind(&SockAddr::unix(path)?)?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Sockets handed over by a previous master (`FERRICORN_FD`) or by systemd
/// (`LISTEN_FDS` for our pid). The variables are removed from the environment
/// so that workers and later re-execs do not see them.
pub fn inherited_sockets() -> io::Result<(Vec<Socket>, bool)> {
    let mut socks = Vec::new();
    let mut systemd = false;
    if let Ok(list) = std::env::var(INHERIT_ENV) {
        sys::remove_env(INHERIT_ENV);
        for part in list.split(',').filter(|p| !p.is_empty()) {
            let fd: RawFd = part.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{INHERIT_ENV} holds a bad fd: {part:?}"),
                )
            })?;
            socks.push(sys::adopt_listener(fd)?);
        }
    }
    if let (Ok(pid), Ok(n)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) {
        if pid.parse::<u32>().ok() == Some(std::process::id()) {
            let n: i32 = n.parse().unwrap_or(0);
            for fd in 3..3 + n {
                socks.push(sys::adopt_listener(fd)?);
            }
            systemd = n > 0;
        }
        sys::remove_env("LISTEN_PID");
        sys::remove_env("LISTEN_FDS");
        sys::remove_env("LISTEN_FDNAMES");
    }
    Ok((socks, systemd))
}

/// Describe an inherited socket in `--bind` form.
pub fn describe(sock: &Socket) -> String {
    match sock.local_addr() {
        Ok(a) => {
            if let Some(sa) = a.as_socket() {
                sa.to_string()
            } else if let Some(p) = a.as_pathname() {
                format!("unix:{}", p.display())
            } else {
                format!("fd://{}", sock.as_raw_fd())
            }
        }
        Err(_) => format!("fd://{}", sock.as_raw_fd()),
    }
}

/// `--socket-mode` and `--socket-group` on the Unix sockets we created, so
/// that nginx (as www-data) can connect and nobody else can.
pub fn set_unix_permissions(
    listeners: &[Listener],
    mode: Option<u32>,
    group: Option<nix::unistd::Gid>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for l in listeners.iter().filter(|l| !l.external) {
        let Some(path) = &l.unix_path else { continue };
        if let Some(gid) = group {
            nix::unistd::chown(path.as_path(), None, Some(gid)).map_err(|e| {
                io::Error::other(format!(
                    "chown({}) for --socket-group failed: {e}",
                    path.display()
                ))
            })?;
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                io::Error::other(format!(
                    "chmod({}) for --socket-mode failed: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(())
}
