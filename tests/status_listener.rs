//! The status listener (`--status-bind`) with the real binary: every
//! endpoint, the counters moving as requests, refusals and worker exits
//! happen, readiness across HUP and a shutdown delay, `ferricorn status`,
//! and bad requests to the listener itself. Python-app cases (timeouts,
//! memory recycling, start-up readiness, the prometheus_client parser) are
//! in tests/observe_python.rs.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

struct Observed {
    server: Server,
    status: Addr,
}

fn start(args: &[&str]) -> Observed {
    // The status listener on a Unix socket in the server's directory: no
    // free-port race.
    let server = Server::builder()
        .status_listener()
        .args(args.iter().copied())
        .start();
    let status = server.status.clone().unwrap();
    Observed { server, status }
}

impl Observed {
    fn get(&self, target: &str) -> HttpResponse {
        get(&self.status, target).unwrap_or_else(|e| {
            panic!(
                "status listener: GET {target}: {e}; log:\n{}",
                self.server.log_text()
            )
        })
    }

    fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        r.body_str()
    }

    /// The `listener` label of the TCP listener (the test support passes it
    /// as `fd://3`, and the label is the --bind form).
    fn tcp_label(&self) -> String {
        self.metrics()
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("ferricorn_listen_queue_backlog{listener=\"")?;
                let name = rest.split('"').next()?;
                (!name.starts_with("unix:")).then(|| name.to_string())
            })
            .expect("a TCP listener in /metrics")
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }
}

fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn app_get(s: &Server, target: &str) -> HttpResponse {
    s.request(format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn endpoints_answer_and_requests_are_counted_by_method_and_class() {
    let o = start(&["-w", "2", "echo"]);
    let h = o.get("/healthz");
    assert_eq!((h.status, h.body_str().as_str()), (200, "ok\n"));
    assert!(wait_until(Duration::from_secs(30), || o
        .get("/readyz")
        .status
        == 200));
    let before = o.metrics();
    let base_get = metric_value(
        &before,
        "ferricorn_requests_total{method=\"GET\",status=\"2xx\"}",
    );

    for _ in 0..5 {
        assert_eq!(app_get(&o.server, "/x").status, 200);
    }
    let post = o.server.request(
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(post.status, 200);
    let del = o
        .server
        .request(b"DELETE /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(del.status, 200);
    // Refused by ferricorn itself: a malformed head (400), a too large one (431).
    let bad = o.server.exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert!(
        bad.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&bad)
    );
    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n\r\n");
    let r = o.server.exchange(&big);
    assert!(
        r.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&r)
    );

    let m = o.metrics();
    assert_eq!(
        metric_value(
            &m,
            "ferricorn_requests_total{method=\"GET\",status=\"2xx\"}"
        ),
        base_get + 5.0
    );
    assert_eq!(
        metric_value(
            &m,
            "ferricorn_requests_total{method=\"POST\",status=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "ferricorn_requests_total{method=\"DELETE\",status=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "ferricorn_requests_total{method=\"other\",status=\"4xx\"}"
        ),
        2.0
    );
    let total = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("ferricorn_requests_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    // Every answer went through both histograms (refusals with 0 app time).
    assert_eq!(
        metric_value(&m, "ferricorn_request_duration_seconds_count"),
        total(&m)
    );
    assert_eq!(
        metric_value(&m, "ferricorn_request_duration_seconds_bucket{le=\"+Inf\"}"),
        total(&m)
    );
    assert!(metric_value(&m, "ferricorn_response_bytes_total") > 0.0);
    assert_eq!(metric_value(&m, "ferricorn_workers_wanted"), 2.0);
    assert_eq!(metric_value(&m, "ferricorn_workers_alive"), 2.0);
    assert_eq!(metric_value(&m, "ferricorn_workers_ready"), 2.0);
    let app = o.tcp_label();
    assert!(
        m.contains(&format!(
            "ferricorn_listen_queue_depth{{listener=\"{app}\"}} 0\n"
        )),
        "{m}"
    );

    let s = o.get("/status");
    assert_eq!(s.header("content-type"), Some("application/json"));
    let j = s.body_str();
    assert!(j.contains("\"phase\":\"running\""), "{j}");
    assert!(j.contains("\"ready\":true"), "{j}");
    assert!(j.contains("\"workers_alive\":2"), "{j}");
    for pid in o.server.worker_pids() {
        assert!(
            j.contains(&format!("{{\"pid\":{pid},")),
            "{pid} missing: {j}"
        );
    }
    assert_eq!(o.get("/nope").status, 404);
}

#[test]
fn counters_survive_worker_replacement_and_exits_are_counted_by_cause() {
    let o = start(&["-w", "1", "--max-requests", "4", "hello"]);
    let count = |o: &Observed| o.metric("ferricorn_requests_total{method=\"GET\",status=\"2xx\"}");
    let first = count(&o);
    let mut last = first;
    for i in 1..=10 {
        assert_eq!(app_get(&o.server, "/").status, 200);
        let now = count(&o);
        assert!(now >= last, "went backwards: {last} -> {now}");
        last = now;
        assert_eq!(now, first + i as f64, "request {i}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || {
            o.metric("ferricorn_worker_exits_total{cause=\"max-requests\"}") >= 1.0
        }),
        "no max-requests exits counted:\n{}\nlog:\n{}",
        o.metrics(),
        o.server.log_text()
    );
    // The retired workers' requests are still in the total.
    assert_eq!(count(&o), first + 10.0);
    assert_eq!(
        o.metric("ferricorn_worker_exits_total{cause=\"crash\"}"),
        0.0
    );

    // TTOU below one is refused; TTIN then TTOU is a scale-down exit.
    o.server.signal(Signal::SIGTTIN);
    assert!(wait_until(Duration::from_secs(30), || o
        .metric("ferricorn_workers_ready")
        == 2.0));
    o.server.signal(Signal::SIGTTOU);
    assert!(wait_until(Duration::from_secs(20), || {
        o.metric("ferricorn_worker_exits_total{cause=\"scale-down\"}") == 1.0
    }));
    // HUP replaces the worker: a reload exit.
    o.server.signal(Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(20), || {
        o.metric("ferricorn_worker_exits_total{cause=\"reload\"}") == 1.0
    }));
    assert_eq!(count(&o), first + 10.0);
}

#[test]
fn readiness_holds_through_hup_and_turns_503_at_once_on_term_with_a_shutdown_delay() {
    // The delay is long enough for the checks below on a loaded machine
    // (they need well under a second); the stop is checked not to come
    // before it.
    let o = start(&["-w", "2", "--shutdown-delay", "8", "hello"]);
    assert!(wait_until(Duration::from_secs(30), || o
        .get("/readyz")
        .status
        == 200));
    o.server.signal(Signal::SIGHUP);
    // Through the whole reload, some worker accepts: /readyz never says 503.
    let until = Instant::now() + Duration::from_secs(20);
    while o.metric("ferricorn_worker_exits_total{cause=\"reload\"}") < 2.0 {
        assert_eq!(o.get("/readyz").status, 200, "not ready during HUP");
        assert!(Instant::now() < until, "reload did not finish");
    }

    let Addr::Tcp(app) = o.server.addr.clone() else {
        unreachable!()
    };
    let term_at = Instant::now();
    o.server.signal(Signal::SIGTERM);
    // The master handles TERM within its loop turn; /readyz says so at once
    // (the bound is for the failure case, within the delay).
    assert!(wait_until(Duration::from_secs(30), || o
        .get("/readyz")
        .status
        == 503));
    assert_eq!(o.get("/healthz").status, 200, "the master loop still runs");
    let j = o.get("/status").body_str();
    assert!(j.contains("\"phase\":\"shutdown-delay\""), "{j}");
    // A client opening new connections after TERM: none refused. A count,
    // not a duration: how many fit in a second depends on the machine.
    for served in 0..20 {
        let mut c = TcpStream::connect_timeout(&app, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("refused {:?} after TERM: {e}", term_at.elapsed()));
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "request {served}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let mut server = o.server;
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
    let log = server.log_text();
    let delayed = log.find("Shutdown delay: not ready").expect(&log);
    let stopped = log.find("Shutdown delay over").expect(&log);
    assert!(delayed < stopped);
    assert!(
        term_at.elapsed() >= Duration::from_secs(8),
        "stopped before the delay"
    );
}

#[test]
fn bad_requests_to_the_status_listener_never_hurt_it() {
    let o = start(&["hello"]);
    let st = o.status.clone();
    let raw = |bytes: &[u8]| -> String {
        let mut c = Client::connect(&st).unwrap();
        let _ = c.write_all(bytes);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw(b"GET /unknown HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(
        raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 1\r\n\r\nx").starts_with("HTTP/1.1 405")
    );
    assert!(raw(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    assert!(raw(&big).starts_with("HTTP/1.1 431"));
    let head = raw(b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    // A client that connects and says nothing is dropped after the
    // listener's deadline, and does not stop others meanwhile.
    let mut idle = Client::connect(&st).unwrap();
    let opened = Instant::now();
    let mut half = Client::connect(&st).unwrap();
    half.write_all(b"GET /heal").unwrap();
    assert_eq!(o.get("/healthz").status, 200);
    idle.set_timeout(Some(Duration::from_secs(60)));
    let mut buf = [0u8; 16];
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );
    let took = opened.elapsed();
    assert!(
        // The listener's deadline (5 s), not before; the upper bound is for
        // a listener that never drops it (the read timeout).
        took >= Duration::from_secs(4) && took < Duration::from_secs(60),
        "{took:?}"
    );
    // Many connections at once: beyond the limit they are closed, never a crash.
    let flood: Vec<Client> = (0..100).filter_map(|_| Client::connect(&st).ok()).collect();
    drop(flood);
    assert_eq!(o.get("/healthz").status, 200);
    assert_eq!(app_get(&o.server, "/").status, 200);
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(o.server.pid() as i32), None).is_ok()
    );
}

#[test]
fn status_command_prints_a_table_and_json_over_a_unix_socket() {
    let dir = TempDir::new("status-cli");
    let sock = dir.join("status.sock");
    let bind = format!("unix:{}", sock.display());
    let server = Server::start(&["-w", "2", "--status-bind", &bind, "hello"]);
    assert_eq!(app_get(&server, "/").status, 200);
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferricorn"))
            .arg("status")
            .args(["--status-bind", &bind])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(wait_until(Duration::from_secs(30), || run(&[]).contains(" READY")));
    let table = run(&[]);
    assert!(
        table.contains("workers: 2 wanted, 2 alive, 2 ready"),
        "{table}"
    );
    for pid in server.worker_pids() {
        assert!(table.contains(&format!("{pid:>8} ")), "{pid}: {table}");
    }
    let json = run(&["--json"]);
    assert!(json.starts_with("{\"version\":"), "{json}");
    assert!(json.contains("\"workers_ready\":2"), "{json}");
    // Without an address it says what it needs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferricorn"))
        .arg("status")
        .env_remove("FERRICORN_STATUS_BIND")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--status-bind"));
    drop(server);
}

/// The operator's `ferricorn status` finds the listener where the server
/// did: `status_bind` in the config file (`-c FILE`, or ./gunicorn.conf.py in
/// the directory it runs in), with nothing else on the command line.
#[test]
fn status_command_reads_status_bind_from_the_config_file() {
    let dir = TempDir::new("status-conf");
    let sock = dir.join("status.sock");
    let conf = dir.join("gunicorn.conf.py");
    std::fs::write(
        &conf,
        format!("status_bind = 'unix:{}'\nworkers = 1\n", sock.display()),
    )
    .unwrap();
    let server = Server::start(&["-c", &conf.display().to_string(), "hello"]);
    assert_eq!(app_get(&server, "/").status, 200);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferricorn"))
            .arg("status")
            .args(args)
            .current_dir(dir.path())
            .env_remove("FERRICORN_STATUS_BIND")
            .output()
            .unwrap()
    };
    let ready = |out: &std::process::Output| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 ready")
    };
    let conf_arg = conf.display().to_string();
    assert!(
        wait_until(Duration::from_secs(30), || ready(&run(&["-c", &conf_arg]))),
        "{:?}",
        run(&["-c", &conf_arg])
    );
    let out = run(&[]);
    assert!(ready(&out), "{out:?}");
    drop(server);
}

#[test]
fn status_bind_equal_to_a_public_bind_is_refused() {
    let port = free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferricorn"))
        .args(["-b", &format!("127.0.0.1:{port}")])
        .args(["--status-bind", &format!("127.0.0.1:{port}")])
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--status-bind") && err.contains("must not be public"),
        "{err}"
    );
}

#[test]
fn a_worker_past_its_lifetime_is_replaced_without_a_refused_request() {
    let o = start(&["-w", "1", "--max-worker-lifetime", "1", "hello"]);
    let first = o.server.worker_pids();
    let load = Load::start_for(&o.server.addr, 2, "/", Duration::from_secs(120));
    assert!(
        wait_until(Duration::from_secs(60), || {
            o.metric("ferricorn_worker_exits_total{cause=\"lifetime\"}") >= 1.0
        }),
        "{}",
        o.server.log_text()
    );
    let stats = load.stop();
    assert!(stats.clean(), "{stats:?}");
    assert!(stats.ok > 0);
    assert_ne!(o.server.worker_pids(), first);
    assert!(
        o.server
            .log_text()
            .contains("reached --max-worker-lifetime")
    );
}

#[test]
fn the_status_listener_survives_a_usr2_upgrade() {
    let d = TempDir::new("status-upg");
    let pidfile = d.join("app.pid");
    let sock = d.join("status.sock");
    let bind = format!("unix:{}", sock.display());
    let mut s = Server::start(&[
        "hello",
        "-w",
        "1",
        "--pid",
        pidfile.to_str().unwrap(),
        "--status-bind",
        &bind,
    ]);
    let status = Addr::Unix(sock.clone());
    let master_of = || {
        let j = get(&status, "/status").unwrap().body_str();
        j.split("\"master_pid\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let old = s.pid();
    assert_eq!(master_of(), old);
    s.signal(Signal::SIGUSR2);
    let mut new = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            new = read_pidfile(&pidfile).unwrap_or(0);
            new != 0 && new != old && workers_of(new).len() == 1
        }),
        "{}",
        s.log_text()
    );
    // The new master took the inherited listener over instead of failing
    // to bind the address the old one still holds.
    assert!(
        s.log_text()
            .contains(&format!("Status listener at: {bind} ({new})"))
    );
    send_signal(old, Signal::SIGWINCH);
    assert!(wait_until(Duration::from_secs(30), || workers_of(old).is_empty()));
    send_signal(old, Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0));
    // The old master left the socket file to the new one, which answers alone.
    assert!(sock.exists());
    assert_eq!(master_of(), new);
    assert_eq!(get(&status, "/readyz").unwrap().status, 200);
    send_signal(new, Signal::SIGQUIT);
    assert!(wait_gone(new, Duration::from_secs(30)));
    assert!(!sock.exists(), "the last master removes the socket file");
}

#[test]
fn listen_queue_depth_is_reported_for_tcp_and_unix_listeners() {
    let d = TempDir::new("queues");
    let sock = d.join("app.sock");
    let o = start(&[
        "-w",
        "1",
        "--backlog",
        "64",
        "--bind",
        &format!("unix:{}", sock.display()),
        "hello",
    ]);
    let Addr::Tcp(tcp) = o.server.addr.clone() else {
        unreachable!()
    };
    let depth = |name: &str| {
        o.metric(&format!(
            "ferricorn_listen_queue_depth{{listener=\"{name}\"}}"
        ))
    };
    let unix_name = format!("unix:{}", sock.display());
    let tcp_name = o.tcp_label();
    assert_eq!(depth(&tcp_name), 0.0);
    assert_eq!(depth(&unix_name), 0.0);
    let m = o.metrics();
    assert!(
        m.contains(&format!(
            "ferricorn_listen_queue_backlog{{listener=\"{unix_name}\"}} 64\n"
        )),
        "{m}"
    );
    // With the only worker stopped, new connections wait in the queues.
    let worker = o.server.worker_pids()[0];
    // Stopped for sure (state T) before the connections come.
    support::hardening::stop_process(worker);
    let _tcp_conns: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(tcp).unwrap()).collect();
    let _unix_conns: Vec<std::os::unix::net::UnixStream> = (0..2)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(30), || depth(&tcp_name) == 3.0));
    assert_eq!(depth(&unix_name), 2.0);
    send_signal(worker, Signal::SIGCONT);
    assert!(wait_until(Duration::from_secs(30), || {
        depth(&tcp_name) == 0.0 && depth(&unix_name) == 0.0
    }));
}

#[test]
fn hup_moves_the_status_listener_to_a_new_address() {
    let d = TempDir::new("status-hup");
    let conf = d.join("ferricorn.toml");
    // Unix sockets in a private directory: a TCP port looked up free could
    // be taken by another test before the HUP binds it.
    let first = Addr::Unix(d.join("first.sock"));
    let second = Addr::Unix(d.join("second.sock"));
    std::fs::write(&conf, format!("status_bind = \"{}\"\n", first.bind_arg())).unwrap();
    let s = Server::start(&["hello", "-c", conf.to_str().unwrap()]);
    assert_eq!(get(&first, "/healthz").unwrap().status, 200);
    std::fs::write(&conf, format!("status_bind = \"{}\"\n", second.bind_arg())).unwrap();
    s.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || get(&second, "/healthz").is_ok()),
        "{}",
        s.log_text()
    );
    assert!(
        get(&first, "/healthz").is_err(),
        "the old address still answers"
    );
    // Removed from the file: no status listener at all.
    std::fs::write(&conf, "").unwrap();
    s.signal(Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(30), || get(
        &second, "/healthz"
    )
    .is_err()));
    assert_eq!(app_get(&s, "/").status, 200);
}

#[test]
fn readme_documents_every_metric_and_status_key() {
    let o = start(&["-w", "1", "hello"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in o.metrics().lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README lacks metric {name}"
        );
    }
    let json = o.get("/status").body_str();
    let mut keys: Vec<&str> = json
        .split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| {
            w[1].starts_with(':') && w[0].bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(|w| w[0])
        .collect();
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 20, "{keys:?}");
    for k in keys {
        assert!(
            readme.contains(&format!("`{k}`")) || readme.contains(&format!(".{k}`")),
            "README's status JSON schema lacks {k}"
        );
    }
}
