//! systemd integration: sd_notify datagrams in the right order, and socket
//! activation (LISTEN_FDS/LISTEN_PID) with no --bind.
mod support;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// Collect datagrams until one contains `want` (or time runs out).
fn recv_until(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str, t: Duration) -> bool {
    let deadline = Instant::now() + t;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want || l.starts_with(want));
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn sd_notify_ready_reloading_stopping_in_order() {
    let d = TempDir::new("notify");
    let path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut s = Server::builder()
        .args(["hello", "--workers", "2"])
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000")
        .no_wait()
        .start();
    // WATCHDOG_PID is not set: the pings are for whoever got the socket.
    let mut seen = Vec::new();
    assert!(
        recv_until(&sock, &mut seen, "READY=1", Duration::from_secs(15)),
        "{seen:?}\n{}",
        s.log_text()
    );
    // READY=1 means every worker has booted: both are there the moment it
    // arrives (no waiting: a READY sent early would find fewer), and a
    // request is served.
    let at_ready = workers_of(s.pid());
    assert_eq!(at_ready.len(), 2, "workers at READY=1: {at_ready:?}");
    let r = get(&s.addr, "/").expect("served right after READY=1");
    assert_eq!(r.status, 200);
    let ready = seen.last().unwrap().clone();
    assert!(ready.contains("STATUS=Serving with 2 workers"), "{ready}");
    assert!(!ready.contains("MAINPID="), "{ready}");
    assert!(seen[0].starts_with("STATUS=Booting"), "{seen:?}");

    // Watchdog pings every half interval.
    let mut pings = Vec::new();
    assert!(
        // Every 200 ms; the bound is for a master that never pings.
        recv_until(&sock, &mut pings, "WATCHDOG=1", Duration::from_secs(20)),
        "{pings:?}"
    );

    s.signal(Signal::SIGHUP);
    let mut reload = Vec::new();
    assert!(
        recv_until(&sock, &mut reload, "RELOADING=1", Duration::from_secs(20)),
        "{reload:?}"
    );
    let msg = reload.last().unwrap();
    let usec: u64 = msg
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {msg:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(
        recv_until(&sock, &mut reload, "READY=1", Duration::from_secs(30)),
        "{reload:?}"
    );

    s.signal(Signal::SIGTERM);
    let mut stop = Vec::new();
    assert!(
        recv_until(&sock, &mut stop, "STOPPING=1", Duration::from_secs(20)),
        "{stop:?}"
    );
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0));
    // Nothing after STOPPING=1 but watchdog pings.
    let mut rest = Vec::new();
    recv_until(&sock, &mut rest, "READY=1", Duration::from_millis(200));
    assert!(rest.iter().all(|m| m == "WATCHDOG=1"), "{rest:?}");
}

/// The test binds a listener, hands it to ferricorn as fd 3 with
/// LISTEN_FDS=1 and LISTEN_PID set to ferricorn's own pid (via `sh`'s `$$`,
/// which `exec` keeps), and gives no --bind: ferricorn serves on it.
#[test]
fn socket_activation_serves_inherited_fd_without_bind() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(listener.local_addr().unwrap());
    let fd = listener.as_raw_fd();
    let dir = TempDir::new("activation");
    let log = dir.join("stderr.log");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .args([BIN, "hello", "--workers", "2"])
        .env_remove("FERRICORN_CMD_ARGS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("PORT")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    cmd.process_group(0);
    // SAFETY: between fork and exec only dup2(2)/fcntl(2), which are
    // async-signal-safe; they put our listener on fd 3 without FD_CLOEXEC,
    // as systemd does (dup2 onto itself would leave FD_CLOEXEC set).
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let s = Server {
        child: Some(child),
        addr: addr.clone(),
        dir,
        log,
        status: None,
    };
    drop(listener); // only ferricorn holds the socket now
    s.wait_ready();
    let r = get(&addr, "/").unwrap();
    assert_eq!(r.body, b"Hello, World!");
    wait_workers(s.pid(), 2);
    let text = s.log_text();
    assert!(
        text.contains(&format!("Listening at: {}", addr.bind_arg())),
        "{text}"
    );
    // The default 127.0.0.1:8000 was not bound instead.
    assert!(!text.contains("127.0.0.1:8000"), "{text}");
}
