//! A real nginx in front of ferricorn, from the `conf/nginx/*.conf` fragments
//! (tests/nginx_*.rs, tests/upload_*.rs, tests/python_nginx.rs).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Addr, Client, HttpResponse, TempDir, free_port, wait_until};

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
        let static_root = dir.join("static");
        std::fs::create_dir_all(&static_root).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("conf/nginx")
            .join(fragment);
        let template = edit(
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())),
        );
        // nginx cannot take a listening socket from its environment, so it
        // gets a port looked up free, which another test may take before
        // nginx binds it: then nginx exits with EADDRINUSE and is started
        // again on a fresh port. Success is nginx's pid file (written once
        // its sockets are bound), not a connection that succeeds, which
        // could reach whoever else took the port.
        let pidfile = dir.join("nginx.pid");
        let mut dir = Some(dir);
        for attempt in 1..=5 {
            let port = free_port();
            let home = dir
                .take()
                .expect("the directory is back from the last attempt");
            let child = Nginx::spawn(&home, &template, fragment, fills, port, &static_root);
            // Owned by the guard from here: a panic stops nginx.
            let mut n = Nginx {
                child: Some(child),
                dir: home,
                port,
                static_root: static_root.clone(),
            };
            let mut exited = false;
            let up = wait_until(Duration::from_secs(30), || {
                exited = matches!(n.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
                exited || pidfile.exists()
            });
            if up && !exited {
                return n;
            }
            let logs = n.logs();
            if exited && logs.contains("Address already in use") && attempt < 5 {
                eprintln!("nginx: port {port} was taken before nginx bound it; again");
                if let Some(mut child) = n.child.take() {
                    let _ = child.wait();
                }
                // Keep the directory for the next attempt (the empty path
                // left behind is not removed by anyone's drop).
                dir = Some(std::mem::replace(&mut n.dir, TempDir(PathBuf::new())));
                continue;
            }
            panic!("nginx did not start:\n{logs}");
        }
        unreachable!()
    }

    /// Write the configuration for `port` into `dir` and start nginx on it.
    fn spawn(
        dir: &TempDir,
        template: &str,
        fragment: &str,
        fills: &[(&str, String)],
        port: u16,
        static_root: &Path,
    ) -> Child {
        let mut text = template.to_string();
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
        cmd.spawn().expect("spawn nginx")
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
