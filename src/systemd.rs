//! sd_notify without libsystemd: datagrams to `$NOTIFY_SOCKET`.
//!
//! `READY=1` is sent only once every worker accepts (gunicorn reports ready
//! before its workers have booted), `RELOADING=1` on HUP, `STOPPING=1` on a
//! stop, `STATUS=` with worker counts, `MAINPID=` when a USR2 upgrade hands
//! the service over to a new master, and `WATCHDOG=1` when `WATCHDOG_USEC`
//! is set.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// Half the watchdog interval in ms, if systemd asked for pings.
    pub watchdog_ms: Option<u64>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET` (and `WATCHDOG_USEC` for our pid) from the environment.
    pub fn from_env() -> Notifier {
        let sock = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let addr = if let Some(abs) = path.strip_prefix('@') {
                SocketAddr::from_abstract_name(abs.as_bytes()).ok()?
            } else {
                SocketAddr::from_pathname(&path).ok()?
            };
            let s = UnixDatagram::unbound().ok()?;
            Some((s, addr))
        });
        let pid_ok = std::env::var("WATCHDOG_PID")
            .map(|p| p.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog_ms = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|_| pid_ok)
            .map(|us| (us / 2000).max(1));
        Notifier { sock, watchdog_ms }
    }

    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    pub fn notify(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock
            && let Err(e) = s.send_to_addr(msg.as_bytes(), addr)
        {
            log::debug!("sd_notify({msg:?}) failed: {e}");
        }
    }
}
