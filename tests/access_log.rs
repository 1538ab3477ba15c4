//! The access log (`--access-logfile`, `--access-logformat`), end to end.
//!
//! - gunicorn's default format: the exact line shape.
//! - Every atom: h l u t r s m U q H b B f a T D M L p {header}i {header}o
//!   {variable}e, with values checked against the request.
//! - The named formats `combined` and `json` (every JSON line parsed by
//!   python3's json module; a User-Agent with quotes, backslashes, a tab and
//!   non-UTF-8 bytes round-trips).
//! - Two workers under concurrent load: every request logged exactly once and
//!   every line intact, to a file and to `-` (stdout) when stdout is a pipe.

mod support;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn start_logged(args: &[&str], format: Option<&str>) -> (Server, TempDir) {
    let logs = TempDir::new("alog");
    let mut b = Server::builder()
        .args(args.iter().copied())
        .arg("--access-logfile")
        .arg(logs.join("access.log").display().to_string());
    if let Some(f) = format {
        b = b.arg("--access-logformat").arg(f);
    }
    (b.start(), logs)
}

/// Wait for a line containing `needle` and return it.
#[track_caller]
fn line_with(logs: &TempDir, needle: &str) -> String {
    let file = logs.join("access.log");
    let mut found = None;
    wait_until(Duration::from_secs(20), || {
        found = read_lines(&file).into_iter().find(|l| l.contains(needle));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no line with {needle:?} in {:?}", read_lines(&file)))
}

fn head(s: &Server, raw: &[u8]) -> HttpResponse {
    let mut c = s.connect();
    c.write_all(raw).unwrap();
    c.read_head_response().unwrap()
}

/// `dd/Mon/yyyy:hh:mm:ss +zzzz`
fn is_clf_time(t: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    b.len() == 26
        && digits(0..2)
        && b[2] == b'/'
        && MONTHS.contains(&&t[3..6])
        && b[6] == b'/'
        && digits(7..11)
        && b[11] == b':'
        && digits(12..14)
        && b[14] == b':'
        && digits(15..17)
        && b[17] == b':'
        && digits(18..20)
        && b[20] == b' '
        && (b[21] == b'+' || b[21] == b'-')
        && digits(22..26)
}

/// Check a line against `prefix [TIME] suffix` with a CLF time in brackets.
#[track_caller]
fn assert_clf_line(line: &str, prefix: &str, suffix: &str) {
    let ok = line.len() == prefix.len() + 28 + suffix.len()
        && line.starts_with(prefix)
        && line.ends_with(suffix)
        && line.as_bytes()[prefix.len()] == b'['
        && line.as_bytes()[prefix.len() + 27] == b']'
        && is_clf_time(&line[prefix.len() + 1..prefix.len() + 27]);
    assert!(
        ok,
        "line {line:?} does not match {prefix:?}[TIME]{suffix:?}"
    );
}

#[test]
fn default_format_is_gunicorns() {
    let (s, logs) = start_logged(&["hello", "--workers", "1"], None);
    let r =
        s.request(b"GET /p?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: ua\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    // ^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /p\?q=1 HTTP/1\.1" 200 13 "-" "ua"$
    let line = line_with(&logs, "/p?q=1");
    assert_clf_line(
        &line,
        "127.0.0.1 - - ",
        r#" "GET /p?q=1 HTTP/1.1" 200 13 "-" "ua""#,
    );
    // HEAD: no body bytes, `-` for %(b)s; the referer is logged.
    let r = head(
        &s,
        b"HEAD /h HTTP/1.0\r\nReferer: http://r.example/x\r\nUser-Agent: ua2\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let line = line_with(&logs, "/h ");
    assert_clf_line(
        &line,
        "127.0.0.1 - - ",
        r#" "HEAD /h HTTP/1.0" 200 - "http://r.example/x" "ua2""#,
    );
}

#[test]
fn every_atom() {
    let format = "h=%(h)s|l=%(l)s|u=%(u)s|t=%(t)s|r=%(r)s|s=%(s)s|m=%(m)s|U=%(U)s|q=%(q)s|\
                  H=%(H)s|b=%(b)s|B=%(B)s|f=%(f)s|a=%(a)s|T=%(T)s|D=%(D)s|M=%(M)s|L=%(L)s|\
                  p=%(p)s|i=%({x-trace}i)s|o=%({content-type}o)s|e=%({FERRICORN_TEST_VAR}e)s|\
                  none=%({x-absent}i)s";
    let logs = TempDir::new("atoms");
    let s = Server::builder()
        .args(["echo", "--workers", "1", "--access-logformat", format])
        .arg("--access-logfile")
        .arg(logs.join("access.log").display().to_string())
        .env("FERRICORN_TEST_VAR", "from-env")
        .start();
    let worker = wait_workers(s.pid(), 1)[0];
    let r = s.request(
        b"GET /atoms/x?sleep=0.3&k=v HTTP/1.1\r\nHost: t\r\nUser-Agent: my agent\r\n\
          Referer: http://ref/\r\nX-Trace: abc-123\r\n\
          Authorization: Basic YWxpY2U6czNjcjN0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let line = line_with(&logs, "/atoms/x");
    let fields: std::collections::HashMap<&str, &str> = line
        .split('|')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    let f = |k: &str| *fields.get(k).unwrap_or_else(|| panic!("no {k} in {line}"));
    assert_eq!(f("h"), "127.0.0.1");
    assert_eq!(f("l"), "-");
    assert_eq!(f("u"), "alice", "Basic auth user (gunicorn): {line}");
    assert!(f("t").starts_with('[') && f("t").ends_with(']'));
    assert!(is_clf_time(&f("t")[1..f("t").len() - 1]), "{line}");
    assert_eq!(f("r"), "GET /atoms/x?sleep=0.3&k=v HTTP/1.1");
    assert_eq!(f("s"), "200");
    assert_eq!(f("m"), "GET");
    assert_eq!(f("U"), "/atoms/x");
    assert_eq!(f("q"), "sleep=0.3&k=v");
    assert_eq!(f("H"), "HTTP/1.1");
    let len = r.body.len().to_string();
    assert_eq!(f("b"), len);
    assert_eq!(f("B"), len);
    assert_eq!(f("f"), "http://ref/");
    assert_eq!(f("a"), "my agent");
    // The app slept 0.3 s: the durations agree with each other and with it.
    let us: u64 = f("D").parse().unwrap();
    let ms: u64 = f("M").parse().unwrap();
    let secs: f64 = f("L").parse().unwrap();
    assert!((300_000..5_000_000).contains(&us), "D={us}");
    assert_eq!(ms, us / 1000, "M vs D");
    assert!((secs - us as f64 / 1e6).abs() < 1e-5, "L={secs} D={us}");
    assert_eq!(
        f("L").split('.').nth(1).map(str::len),
        Some(6),
        "L has 6 decimals"
    );
    assert_eq!(f("T"), "0");
    assert_eq!(f("p"), format!("<{worker}>"));
    assert_eq!(f("i"), "abc-123");
    assert_eq!(f("o"), "application/json");
    assert_eq!(f("e"), "from-env");
    assert_eq!(f("none"), "-");
}

#[test]
fn combined_format() {
    let (s, logs) = start_logged(&["hello", "--workers", "1"], Some("combined"));
    s.request(
        b"GET /c HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\nUser-Agent: Mozilla/5.0 (X)\r\n\
          Authorization: Basic Ym9iOng=\r\nConnection: close\r\n\r\n",
    );
    let line = line_with(&logs, "GET /c ");
    assert_clf_line(
        &line,
        "127.0.0.1 - bob ",
        r#" "GET /c HTTP/1.1" 200 13 "http://r/" "Mozilla/5.0 (X)""#,
    );
    // nginx's combined logs 0 (not "-") for an empty body.
    head(
        &s,
        b"HEAD /c0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let line = line_with(&logs, "HEAD /c0 ");
    assert_clf_line(
        &line,
        "127.0.0.1 - - ",
        r#" "HEAD /c0 HTTP/1.1" 200 0 "-" "-""#,
    );
}

/// Parse JSON lines with python3; returns one compact re-encoding per line
/// (`ensure_ascii`, sorted keys) or panics naming the line that failed.
fn parse_json_lines(lines: &[String]) -> Vec<String> {
    let script = r#"
import json, sys
for n, line in enumerate(sys.stdin.buffer.read().decode('utf-8').split('\n')[:-1]):
    try:
        v = json.loads(line)
        assert isinstance(v, dict), 'not an object'
    except Exception as e:
        print('BAD %d %r: %s' % (n, line[:300], e))
        sys.exit(1)
    print(json.dumps(v, sort_keys=True))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut input = lines.join("\n");
    input.push('\n');
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 rejected a JSON line:\n{}\n{}",
        text.lines().last().unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(String::from).collect()
}

#[test]
fn json_format_round_trips_awkward_values() {
    let (s, logs) = start_logged(&["hello", "--workers", "1"], Some("json"));
    // Quotes, backslashes, a tab, UTF-8 and one raw Latin-1 byte (0xE9, not
    // UTF-8: read as Latin-1, like the echo app and WSGI).
    let mut req = b"GET /j?a=%22b%22 HTTP/1.1\r\nHost: t\r\nReferer: r\\ef\r\n\
                    User-Agent: say \"hi\" \\o/\tcaf\xc3\xa9\r\nConnection: close\r\n\r\n"
        .to_vec();
    let r = s.request(&req);
    assert_eq!(r.status, 200);
    req = b"GET /latin1 HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\xe9\r\nConnection: close\r\n\r\n"
        .to_vec();
    s.request(&req);
    line_with(&logs, "/latin1");
    let lines = read_lines(&logs.join("access.log"));
    let parsed = parse_json_lines(&lines);
    let j = parsed
        .iter()
        .find(|l| l.contains("\"/j?a=%22b%22\""))
        .unwrap_or_else(|| panic!("{parsed:?}"));
    // python's json.dumps escapes non-ASCII as \u00e9.
    assert!(
        j.contains(r#""user_agent": "say \"hi\" \\o/\tcaf\u00e9""#),
        "{j}"
    );
    assert!(j.contains(r#""referer": "r\\ef""#), "{j}");
    assert!(j.contains(r#""method": "GET""#), "{j}");
    assert!(j.contains(r#""path": "/j""#), "{j}");
    assert!(j.contains(r#""query": "a=%22b%22""#), "{j}");
    assert!(j.contains(r#""protocol": "HTTP/1.1""#), "{j}");
    assert!(j.contains(r#""remote_addr": "127.0.0.1""#), "{j}");
    assert!(j.contains(r#""status": 200"#), "numbers stay numbers: {j}");
    assert!(j.contains(r#""bytes": 13"#), "{j}");
    assert!(j.contains(r#""duration_us": "#), "{j}");
    let l = parsed.iter().find(|l| l.contains("/latin1")).unwrap();
    assert!(l.contains(r#""user_agent": "caf\u00e9""#), "{l}");
}

/// Long request targets make long lines (~2.6 KB in JSON: target and path),
/// under PIPE_BUF (4096), the most a pipe write keeps whole; a 64 KiB flush holds
/// many of them and any split write would show up as a broken line.
fn long_target(i: usize) -> String {
    format!("/load/{i}/{}", "x".repeat(1200))
}

#[test]
fn two_workers_under_load_never_interleave_in_a_file() {
    let (s, logs) = start_logged(&["hello", "--workers", "2"], Some("json"));
    wait_workers(s.pid(), 2);
    let mut total = LoadStats::default();
    let loads: Vec<Load> = (0..4)
        .map(|i| Load::start_for(&s.addr, 2, &long_target(i), Duration::from_secs(120)))
        .collect();
    let served = || loads.iter().map(Load::ok).sum::<u64>();
    // A number of requests, however long they take on this machine (the
    // load runs until stopped, within its generous bound).
    assert!(
        wait_until(Duration::from_secs(90), || served() > 600),
        "{}",
        served()
    );
    for l in loads {
        total.merge(l.stop());
    }
    assert!(total.clean() && total.ok > 500, "{total:?}");
    let file = logs.join("access.log");
    let count = || {
        read_lines(&file)
            .iter()
            .filter(|l| l.contains("/load/"))
            .count() as u64
    };
    assert!(
        wait_until(Duration::from_secs(20), || count() >= total.ok),
        "{} lines for {} requests",
        count(),
        total.ok
    );
    let lines = read_lines(&file);
    let parsed = parse_json_lines(&lines);
    let pids: std::collections::BTreeSet<&str> = parsed
        .iter()
        .filter_map(|l| l.split("\"pid\": \"").nth(1))
        .filter_map(|t| t.split('"').next())
        .collect();
    assert_eq!(pids.len(), 2, "both workers should have logged: {pids:?}");
    assert_eq!(count(), total.ok, "every request logged exactly once");
}

/// A ferricorn master whose stdout is a pipe read by the test (the usual
/// case under docker or systemd), killed with its process group on drop.
struct PipedServer {
    child: std::process::Child,
    addr: Addr,
    _dir: TempDir,
}

impl Drop for PipedServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stdout_dash_under_load_keeps_lines_whole_through_a_pipe() {
    let dir = TempDir::new("stdout-pipe");
    // Our listener, passed as fd 3: no free-port race.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(listener.local_addr().unwrap());
    let mut cmd = Command::new(BIN);
    pass_as_fd3(&mut cmd, &listener);
    cmd.args(["hello", "--workers", "2", "--access-logfile", "-"])
        .args(["--access-logformat", "json", "--bind", "fd://3"])
        .env_remove("FERRICORN_CMD_ARGS")
        .env_remove("WEB_CONCURRENCY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).unwrap(),
        ));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let stdout = child.stdout.take().unwrap();
    let server = PipedServer {
        child,
        addr: addr.clone(),
        _dir: dir,
    };
    // Read the pipe slowly (small reads) so the workers' writes find it full.
    let logged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let logged_by_reader = logged.clone();
    let reader = std::thread::spawn(move || {
        let mut r = std::io::BufReader::with_capacity(512, stdout);
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if line.contains("/load/") {
                        logged_by_reader.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    lines.push(line);
                }
            }
        }
        lines
    });
    assert!(
        wait_until(Duration::from_secs(20), || get(&addr, "/ready").is_ok()),
        "server did not start"
    );
    wait_workers(server.child.id(), 2);
    let mut total = LoadStats::default();
    let loads: Vec<Load> = (0..4)
        .map(|i| Load::start_for(&server.addr, 2, &long_target(i), Duration::from_secs(120)))
        .collect();
    let served = || loads.iter().map(Load::ok).sum::<u64>();
    // A number of requests, however long they take on this machine.
    assert!(
        wait_until(Duration::from_secs(90), || served() > 600),
        "{}",
        served()
    );
    for l in loads {
        total.merge(l.stop());
    }
    assert!(total.clean() && total.ok > 500, "{total:?}");
    // Every answered request's line has come through the pipe (or, if one
    // is missing, the count below says so after 10 s).
    let got = || logged.load(std::sync::atomic::Ordering::SeqCst);
    wait_until(Duration::from_secs(30), || got() >= total.ok);
    drop(server); // closes the pipe's write ends: the reader sees EOF
    let lines = reader.join().unwrap();
    let load_lines: Vec<String> = lines.into_iter().filter(|l| !l.is_empty()).collect();
    parse_json_lines(&load_lines);
    let n = load_lines.iter().filter(|l| l.contains("/load/")).count() as u64;
    assert_eq!(n, total.ok, "every request logged exactly once on stdout");
}
