//! Unix socket permissions and privilege dropping, with real users.
//!
//! Runs as root (CI does) and uses only existing accounts: `www-data`,
//! `nobody`, `nogroup`. Nothing system-wide is created. Not root: every test
//! here fails loudly (see `require_root`) instead of passing by skipping.
//!
//! - `--socket-mode 0660 --socket-group www-data`: the socket file is
//!   srw-rw---- root:www-data; a client running as www-data connects and gets
//!   200, one running as nobody gets EACCES.
//! - `--umask 0o077` without --socket-mode: the socket is srwx------.
//! - `--user nobody --group nogroup`: every worker and the master (after
//!   binding) run with nobody's uid and nogroup's gid, without root's groups.
//! - A bad user or group name: exit code 1 and one clear line naming the flag.

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const CLIENT_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.split(b"\r\n")[0].decode())
"#;

/// Run the tiny Python client as `user` against the socket at `sock`;
/// returns its one line of output ("HTTP/1.1 200 OK" or "EACCES").
fn connect_as(user: &str, sock: &Path, dir: &TempDir) -> String {
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT_PY).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    // /usr/bin/python3, not a pyenv shim under /root that other users cannot read.
    let out = Command::new("timeout")
        .args(["20", "su", "-s", "/bin/sh", user, "-c"])
        .arg(format!(
            "/usr/bin/python3 {} {}",
            script.display(),
            sock.display()
        ))
        .output()
        .expect("run su");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "client as {user} failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn unix_path(s: &Server) -> std::path::PathBuf {
    match &s.addr {
        Addr::Unix(p) => p.clone(),
        Addr::Tcp(_) => unreachable!(),
    }
}

/// (real, effective, saved, fs) ids from a `Uid:` or `Gid:` line.
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn id_of(db: &str, name: &str) -> u32 {
    let out = Command::new("getent").args([db, name]).output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':')
        .nth(2)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("getent {db} {name}: {line:?} (this test needs that account)"))
}

#[test]
fn socket_mode_and_group_control_who_connects() {
    require_root("socket_mode_and_group_control_who_connects");
    let s = Server::builder()
        .args(["hello", "--workers", "1"])
        .args(["--socket-mode", "0660", "--socket-group", "www-data"])
        .unix()
        .start();
    let sock = unix_path(&s);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o660, "mode {:o}", meta.mode());
    assert_eq!(meta.gid(), id_of("group", "www-data"));
    assert_eq!(meta.uid(), 0);
    // The directory must let the clients reach the socket at all.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = TempDir::new("su-client");
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(connect_as("www-data", &sock, &scratch), "HTTP/1.1 200 OK");
    assert_eq!(connect_as("nobody", &sock, &scratch), "EACCES");
}

#[test]
fn umask_applies_to_the_socket_file() {
    require_root("umask_applies_to_the_socket_file");
    let s = Server::builder()
        .args(["hello", "--workers", "1", "--umask", "0o077"])
        .unix()
        .start();
    let meta = std::fs::metadata(unix_path(&s)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.mode() & 0o777,
        0o700,
        "srwx------ expected, got {:o}",
        meta.mode()
    );
    // And gunicorn's default umask 0 leaves it open to all (the docs tell
    // deployments to set --socket-mode or a umask).
    let s = Server::builder()
        .args(["hello", "--workers", "1"])
        .unix()
        .start();
    let meta = std::fs::metadata(unix_path(&s)).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o777, "mode {:o}", meta.mode());
}

#[test]
fn user_and_group_apply_to_workers_and_master() {
    require_root("user_and_group_apply_to_workers_and_master");
    let uid = id_of("passwd", "nobody");
    let gid = id_of("group", "nogroup");
    let s = Server::start(&[
        "hello",
        "--workers",
        "2",
        "--user",
        "nobody",
        "--group",
        "nogroup",
    ]);
    let workers = wait_workers(s.pid(), 2);
    let r = get(&s.addr, "/").unwrap();
    assert_eq!(r.status, 200);
    for pid in workers.iter().copied().chain([s.pid()]) {
        let who = if pid == s.pid() { "master" } else { "worker" };
        assert_eq!(proc_ids(pid, "Uid:"), vec![uid; 4], "{who} {pid} uid");
        assert_eq!(proc_ids(pid, "Gid:"), vec![gid; 4], "{who} {pid} gid");
        let groups = proc_ids(pid, "Groups:");
        assert!(
            !groups.contains(&0),
            "{who} {pid} kept root's group: {groups:?}"
        );
    }
    assert!(
        s.log_text()
            .contains(&format!("Running as uid {uid} gid {gid}"))
    );
    // Still manageable after dropping privileges: HUP replaces the workers.
    s.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = workers_of(s.pid());
            now.len() == 2 && now.iter().all(|p| !workers.contains(p))
        }),
        "workers not replaced after HUP:\n{}",
        s.log_text()
    );
    for pid in workers_of(s.pid()) {
        assert_eq!(proc_ids(pid, "Uid:"), vec![uid; 4]);
    }
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
}

#[test]
fn user_alone_takes_the_users_primary_group() {
    require_root("user_alone_takes_the_users_primary_group");
    let s = Server::start(&["hello", "--workers", "1", "--user", "www-data"]);
    let w = wait_workers(s.pid(), 1)[0];
    assert_eq!(proc_ids(w, "Uid:"), vec![id_of("passwd", "www-data"); 4]);
    assert_eq!(proc_ids(w, "Gid:"), vec![id_of("group", "www-data"); 4]);
}

#[track_caller]
fn assert_fails_naming(args: &[&str], flag: &str, name: &str) {
    let mut s = Server::builder()
        .args(args.iter().copied())
        .no_wait()
        .start();
    let code = s.wait_exit(Duration::from_secs(30));
    let log = s.log_text();
    assert_eq!(code, Some(1), "exit code; log:\n{log}");
    let naming: Vec<&str> = log.lines().filter(|l| l.contains(flag)).collect();
    assert_eq!(naming.len(), 1, "one line naming {flag}:\n{log}");
    assert!(naming[0].contains(name), "{}", naming[0]);
    assert!(naming[0].contains("ERROR"), "{}", naming[0]);
    // Nothing was served: no worker was ever booted.
    assert!(!log.contains("Booting worker"), "{log}");
}

#[test]
fn bad_user_or_group_names_fail_clearly() {
    require_root("bad_user_or_group_names_fail_clearly");
    assert_fails_naming(
        &["hello", "--user", "no-such-user-fc"],
        "--user",
        "no-such-user-fc",
    );
    assert_fails_naming(
        &["hello", "--user", "nobody", "--group", "no-such-group-fc"],
        "--group",
        "no-such-group-fc",
    );
    assert_fails_naming(
        &["hello", "--socket-group", "no-such-group-fc"],
        "--socket-group",
        "no-such-group-fc",
    );
}

// ---------------------------------------------------------------------------
// Known bugs outside this suite's files (src/arbiter.rs, src/worker.rs),
// kept as ignored tests so they can be enabled once fixed.

#[test]
fn bad_user_leaves_no_socket_file() {
    require_root("bad_user_leaves_no_socket_file");
    let dir = TempDir::new("baduser");
    let sock = dir.join("s.sock");
    let mut s = Server::builder()
        .args(["hello", "--user", "no-such-user-fc", "--bind"])
        .arg(format!("unix:{}", sock.display()))
        .no_wait()
        .start();
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(1));
    assert!(!sock.exists(), "{} left behind", sock.display());
}

#[test]
fn access_log_in_a_root_owned_directory_with_user() {
    require_root("access_log_in_a_root_owned_directory_with_user");
    let dir = TempDir::new("rootlog");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("access.log");
    let s = Server::builder()
        .args(["hello", "--workers", "1", "--user", "nobody"])
        .arg("--access-logfile")
        .arg(log.display().to_string())
        .start();
    assert_eq!(get(&s.addr, "/x").unwrap().status, 200);
    // The readiness probe is logged too: look for this request's own line.
    assert!(
        wait_until(Duration::from_secs(30), || read_lines(&log)
            .iter()
            .any(|l| l.contains("\"GET /x HTTP/1.1\" 200"))),
        "no line for GET /x in {}: {:?}",
        log.display(),
        read_lines(&log)
    );
}
