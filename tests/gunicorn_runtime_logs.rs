//! gunicorn's runtime logging settings on the real binary, with the built-in
//! apps: `--log-syslog` (messages received by a Unix datagram socket bound
//! by the test), `-R/--enable-stdio-inheritance` with `--daemon`, and HUP
//! applying changed statsd and syslog settings.
//! The Python-side settings (statsd statuses, --capture-output, --reload,
//! --log-config) are in gunicorn_runtime_python.rs.

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::runtime::StatsdSink;
use support::*;

/// A syslog receiver: a Unix datagram socket in a temporary directory.
struct SyslogSink {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    got: Vec<Vec<u8>>,
    _dir: TempDir,
}

impl SyslogSink {
    fn new() -> SyslogSink {
        let dir = TempDir::new("syslog");
        let path = dir.join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        SyslogSink {
            sock,
            path,
            got: Vec::new(),
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Receive until a message satisfies `want` (returned), or panic after 20 s.
    fn wait_for(&mut self, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        if let Some(m) = self.got.iter().find(|m| want(m)) {
            return m.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = buf[..n].to_vec();
                self.got.push(m.clone());
                if want(&m) {
                    return m;
                }
            }
        }
        panic!("no syslog message {what}; got:\n{}", self.shown());
    }

    fn shown(&self) -> String {
        self.got
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(hay).contains(needle)
}

/// Error-log and access-log lines arrive as gunicorn's SysLogHandler sends
/// them: `<PRI>gunicorn.PREFIX.{error,access}: [PID] line\0`, PRI from the
/// facility (local0 = 16) and the level (info = 6).
#[test]
fn syslog_gets_error_and_access_lines_in_gunicorns_format() {
    let mut sink = SyslogSink::new();
    let s = Server::start(&[
        "--log-syslog",
        "--log-syslog-to",
        &sink.addr(),
        "--log-syslog-prefix",
        "svc",
        "--log-syslog-facility",
        "local0",
        "--workers",
        "1",
        "hello",
    ]);
    let master = s.pid();
    let started = sink.wait_for("'Using app'", |m| contains(m, "Using app"));
    assert_eq!(
        started,
        format!("<134>gunicorn.svc.error: [{master}] Using app: hello\0").into_bytes()
    );

    let r = s.request(b"GET /syslog-probe HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    let worker = s.worker_pids()[0];
    let access = sink.wait_for("for the request", |m| contains(m, "/syslog-probe"));
    let text = String::from_utf8(access).unwrap();
    let head = format!("<134>gunicorn.svc.access: [{worker}] 127.0.0.1 - - [");
    assert!(text.starts_with(&head), "{text:?}");
    assert!(
        text.ends_with("] \"GET /syslog-probe HTTP/1.1\" 200 13 \"-\" \"-\"\0"),
        "{text:?}"
    );
    // The error log file (stderr here) still gets every line.
    assert!(s.log_text().contains("Using app: hello"));
}

/// Without --log-syslog-prefix the name is --name (else the APP); the
/// default facility is `user` (PRI 14 for info); and
/// --disable-redirect-access-to-syslog keeps access lines out.
#[test]
fn syslog_defaults_and_access_lines_can_be_kept_out() {
    let mut sink = SyslogSink::new();
    let s = Server::start(&[
        "--log-syslog",
        "--log-syslog-to",
        &sink.addr(),
        "--disable-redirect-access-to-syslog",
        "-n",
        "my:name",
        "--workers",
        "1",
        "hello",
    ]);
    let master = s.pid();
    let started = sink.wait_for("'Using app'", |m| contains(m, "Using app"));
    assert_eq!(
        started,
        format!("<14>gunicorn.my.name.error: [{master}] Using app: hello\0").into_bytes()
    );
    let r = s.request(b"GET /not-to-syslog HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    // The worker sends its access line (if any) before the response is
    // written, so anything it sent is queued before the master's next line.
    s.signal(Signal::SIGTTIN);
    sink.wait_for("for TTIN", |m| contains(m, "Handling signal: ttin"));
    assert!(
        !sink.got.iter().any(|m| contains(m, ".access:")),
        "{}",
        sink.shown()
    );
}

/// A --log-syslog-to that cannot be reached stops start-up with one line.
#[test]
fn unreachable_syslog_socket_is_a_start_up_error() {
    let dir = TempDir::new("nosyslog");
    let to = format!("unix://{}", dir.join("absent.sock").display());
    let out = std::process::Command::new(BIN)
        .args(["--log-syslog", "--log-syslog-to", &to, "hello"])
        // A Unix socket in our directory: no port to race other tests for.
        .args(["--bind", &format!("unix:{}", dir.join("s.sock").display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Error: --log-syslog-to unix://") && err.lines().count() == 1,
        "{err}"
    );
}

/// -D -R: the daemon keeps the stdout it was started with (a file here), so
/// `--access-logfile -` still reaches it; plain -D points it at /dev/null
/// (tested in lifecycle_stop.rs).
#[test]
fn daemon_with_stdio_inheritance_keeps_its_stdout() {
    let dir = TempDir::new("inherit");
    let pidfile = dir.join("d.pid");
    let out_path = dir.join("out.log");
    // A Unix socket in our directory: no port to race other tests for (the
    // daemon binding a port itself is lifecycle_stop.rs's test).
    let addr = Addr::Unix(dir.join("s.sock"));
    let status = std::process::Command::new(BIN)
        .args([
            "hello",
            "-D",
            "-R",
            "--access-logfile",
            "-",
            "--workers",
            "1",
        ])
        .args(["--bind", &addr.bind_arg()])
        .arg("--pid")
        .arg(&pidfile)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run ferricorn -D -R");
    assert!(status.success());
    let daemon = read_pidfile(&pidfile).expect("pid file written before the launcher exits");
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
    let _reap = Reap(daemon);
    assert_eq!(
        std::fs::read_link(format!("/proc/{daemon}/fd/1")).unwrap(),
        out_path
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{daemon}/fd/0")).unwrap(),
        std::path::Path::new("/dev/null")
    );
    assert!(wait_until(Duration::from_secs(30), || get(
        &addr,
        "/inherit-probe"
    )
    .is_ok()));
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(
            &out_path
        )
        .unwrap_or_default()
        .contains("GET /inherit-probe")),
        "{:?}",
        std::fs::read_to_string(&out_path)
    );
    send_signal(daemon, Signal::SIGTERM);
    assert!(wait_gone(daemon, Duration::from_secs(30)));
}

/// HUP re-reads the config file and, as gunicorn's `Logger.setup` on
/// reload, applies the logging settings: the new workers send metrics with
/// the new prefix, and syslog, off before, gets the master's lines.
#[test]
fn hup_applies_changed_statsd_and_syslog_settings() {
    let statsd = StatsdSink::new();
    let mut syslog = SyslogSink::new();
    let dir = TempDir::new("huplog");
    let conf = dir.join("ferricorn.toml");
    let host = format!("statsd_host = \"127.0.0.1:{}\"\n", statsd.port);
    std::fs::write(&conf, format!("{host}statsd_prefix = \"one\"\n")).unwrap();
    let s = Server::start(&["-c", conf.to_str().unwrap(), "--workers", "1", "hello"]);
    assert_eq!(get(&s.addr, "/").unwrap().status, 200);
    statsd.wait_for("one.gunicorn.requests:1|c|@1.0");

    std::fs::write(
        &conf,
        format!(
            "{host}statsd_prefix = \"two\"\nsyslog = true\nsyslog_addr = \"{}\"\n",
            syslog.addr()
        ),
    )
    .unwrap();
    s.signal(Signal::SIGHUP);
    let master = s.pid();
    syslog.wait_for("after HUP", |m| {
        String::from_utf8_lossy(m).starts_with(&format!("<14>gunicorn.hello.error: [{master}] "))
    });
    assert!(
        wait_until(Duration::from_secs(20), || {
            assert_eq!(get(&s.addr, "/").unwrap().status, 200);
            statsd
                .lines()
                .iter()
                .any(|l| l == "two.gunicorn.requests:1|c|@1.0")
        }),
        "{:#?}\n{}",
        statsd.lines(),
        s.log_text()
    );
}

/// The other socket kinds: syslog over UDP (`udp://HOST:PORT`) and statsd
/// over a Unix datagram socket (`unix://PATH`).
#[test]
fn syslog_over_udp_and_statsd_over_a_unix_socket() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dir = TempDir::new("kinds");
    let statsd_path = dir.join("statsd.sock");
    let statsd = UnixDatagram::bind(&statsd_path).unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let s = Server::start(&[
        "--log-syslog",
        "--log-syslog-to",
        &format!("udp://127.0.0.1:{}", udp.local_addr().unwrap().port()),
        "--statsd-host",
        &format!("unix://{}", statsd_path.display()),
        "--workers",
        "1",
        "hello",
    ]);
    let want = format!("<14>gunicorn.hello.error: [{}] Using app: hello\0", s.pid());
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no syslog datagram over UDP");
        if let Ok(n) = udp.recv(&mut buf)
            && buf[..n] == *want.as_bytes()
        {
            break;
        }
    }
    // The readiness probe was a request: its packet is already queued (one
    // datagram, three lines: duration, request counter, status counter).
    loop {
        assert!(
            Instant::now() < deadline,
            "no statsd datagram on the Unix socket"
        );
        if let Ok(n) = statsd.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let lines: Vec<&str> = text.split('\n').collect();
            if lines.len() == 3 && lines[1] == "gunicorn.requests:1|c|@1.0" {
                assert!(lines[0].starts_with("gunicorn.request.duration:"), "{text}");
                assert_eq!(lines[2], "gunicorn.request.status.200:1|c|@1.0");
                break;
            }
        }
    }
}

/// `--enable-backlog-metric`: the master sends gunicorn's `gunicorn.backlog`
/// histogram, the connections waiting to be accepted. With the only worker
/// stopped, three connections wait in the listen queue and the metric says 3;
/// once the worker runs again they are served and it goes back to 0.
#[test]
fn backlog_metric_counts_connections_waiting_to_be_accepted() {
    let statsd = StatsdSink::new();
    let s = Server::start(&[
        "--statsd-host",
        &format!("127.0.0.1:{}", statsd.port),
        "--enable-backlog-metric",
        "--workers",
        "1",
        "hello",
    ]);
    statsd.wait_for("gunicorn.backlog:0|h");
    let worker = s.worker_pids()[0];
    let pid = nix::unistd::Pid::from_raw(worker as i32);
    // Stopped for sure before the connections come (kill returns before the
    // worker stops: a worker still running could accept one of them, and
    // the metric would never say 3).
    support::hardening::stop_process(worker);
    // Resumed even if an assertion fails, so the server stops cleanly.
    struct Cont(nix::unistd::Pid);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, Signal::SIGCONT);
        }
    }
    let cont = Cont(pid);
    let mut waiting: Vec<Client> = (0..3).map(|_| s.connect()).collect();
    statsd.wait_for("gunicorn.backlog:3|h");
    drop(cont);
    for c in &mut waiting {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let n = statsd.lines().len();
    assert!(
        wait_until(Duration::from_secs(20), || statsd.lines()[n..]
            .iter()
            .any(|l| l == "gunicorn.backlog:0|h")),
        "{:#?}",
        statsd.lines()
    );
}

/// Syslog over TCP survives a restart of the daemon: the stream that broke
/// is dropped and a new one opened, and later lines arrive on it (gunicorn's
/// SysLogHandler logs nothing more until it is restarted itself).
#[test]
fn tcp_syslog_reconnects_after_the_daemon_restarts() {
    use std::io::Read;
    use std::net::TcpListener;
    let daemon = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = format!("tcp://{}", daemon.local_addr().unwrap());
    let s = Server::start(&[
        "--log-syslog",
        "--log-syslog-to",
        &to,
        "--workers",
        "1",
        "hello",
    ]);
    let read_some = |c: &mut std::net::TcpStream| -> String {
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    };
    // Not a blocking accept: a server that never connects fails the test
    // instead of hanging the suite.
    daemon.set_nonblocking(true).unwrap();
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            first = daemon.accept().ok().map(|(c, _)| c);
            first.is_some()
        }),
        "the server never connected to the syslog daemon\n{}",
        s.log_text()
    );
    let mut first = first.unwrap();
    first.set_nonblocking(false).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || read_some(&mut first)
            .contains("gunicorn.hello.error")),
        "{}",
        s.log_text()
    );
    // The daemon restarts: this connection is gone.
    drop(first);
    let mut second = None;
    let mut got = String::new();
    // Each TTIN/TTOU makes the master log a line; the first ones after the
    // break are lost (they find the stream broken), a later one reconnects.
    let mut ttin = true;
    assert!(
        wait_until(Duration::from_secs(30), || {
            s.signal(if ttin {
                Signal::SIGTTIN
            } else {
                Signal::SIGTTOU
            });
            ttin = !ttin;
            if second.is_none()
                && let Ok((c, _)) = daemon.accept()
            {
                c.set_nonblocking(false).unwrap();
                second = Some(c);
            }
            if let Some(c) = second.as_mut() {
                got.push_str(&read_some(c));
            }
            got.contains("gunicorn.hello.error")
        }),
        "no line on a new connection: {got:?}\n{}",
        s.log_text()
    );
}
