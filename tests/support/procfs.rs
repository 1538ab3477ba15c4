//! What /proc says about processes and sockets: children of a master, its
//! workers, liveness, memory, TCP connections; and signals and limits.

use std::path::Path;
use std::time::Duration;

use super::wait_until;

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

/// Read a pid file (None if missing or not a number).
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Send `sig` to an arbitrary pid.
#[track_caller]
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

/// Wait until `master` has exactly `n` workers (a just-forked worker is
/// counted once it has set its title); returns their pids.
#[track_caller]
pub fn wait_workers(master: u32, n: usize) -> Vec<u32> {
    let mut last = Vec::new();
    if wait_until(Duration::from_secs(30), || {
        last = workers_of(master);
        last.len() == n
    }) {
        return last;
    }
    panic!("master {master}: expected {n} workers, have {last:?}");
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

/// Where the open file descriptors of `pid` point (`/proc/<pid>/fd/*`).
pub fn open_files(pid: u32) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect()
}

/// Bytes waiting in the receive queue of the IPv4 TCP socket with local
/// port `local` and remote port `remote` (/proc/net/tcp), None if there is
/// no such socket. On the server's side of a test connection, 0 after the
/// client wrote means the server has read what was sent.
pub fn tcp_rx_queue(local: u16, remote: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || port_of(f[1]) != Some(local) || port_of(f[2]) != Some(remote) {
            return None;
        }
        let (_, rx) = f[4].split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}
