//! A throw-away PostgreSQL server (Debian's, /usr/lib/postgresql/*/bin) on a
//! Unix socket in a temporary directory, for tests whose app uses a
//! database. Started as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root); stopped by its PID when dropped, also when the
//! test fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{TempDir, wait_until};

pub struct Postgres {
    child: Option<Child>,
    pub dir: TempDir,
}

/// The newest installed server's bin directory.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install -y postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/postgres")
}

/// Run as `postgres` when we are root.
fn as_db_user(cmd: &mut Command) -> &mut Command {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres user (the Debian package creates it)");
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let bin = bin_dir();
        let data = dir.join("data");
        let out = as_db_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdin(Stdio::null()),
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        let child = as_db_user(
            Command::new(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "listen_addresses=", "-c", "fsync=off"])
                .args(["-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )
        .spawn()
        .expect("start postgres");
        let pg = Postgres {
            child: Some(child),
            dir,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            Command::new(bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(pg.socket_dir())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ready, "postgres did not start:\n{}", pg.log());
        pg
    }

    /// The directory holding the server's socket (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // SIGQUIT: immediate shutdown; the server ends its backends.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
            let gone = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !gone {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
