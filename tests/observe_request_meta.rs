//! Request ids and `X-Request-Start` queue time with the real binary: in
//! the access log (an atom each, and the json format), in the queue-time
//! histogram, believed only from a trusted proxy. The Python side (WSGI
//! environ keys, error-log and WORKER TIMEOUT lines naming the request) is
//! in tests/observe_python.rs.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

fn logged(extra: &[&str], format: &str) -> (Server, TempDir, Addr) {
    let logs = TempDir::new("rid");
    let server = Server::builder()
        .args(extra.iter().copied())
        .status_listener()
        .arg("--access-logfile")
        .arg(logs.join("access.log").display().to_string())
        .arg("--access-logformat")
        .arg(format)
        .arg("hello")
        .start();
    let status = server.status.clone().unwrap();
    (server, logs, status)
}

#[track_caller]
fn line_with(logs: &TempDir, needle: &str) -> String {
    let file = logs.join("access.log");
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access log line with {needle:?}"))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn queue_count(status: &Addr) -> f64 {
    get(status, "/metrics")
        .unwrap()
        .body_str()
        .lines()
        .find_map(|l| l.strip_prefix("ferricorn_request_queue_seconds_count "))
        .map(|v| v.parse().unwrap())
        .unwrap()
}

#[test]
fn request_ids_are_passed_through_or_generated_and_queue_time_is_logged() {
    let (s, logs, status) = logged(&[], "%(U)s id=%(request_id)s queue=%(queue_time)s");
    let before = queue_count(&status);
    // Passed through.
    let r = s.request(
        b"GET /given HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(line_with(&logs, "/given "), "/given id=abc-123 queue=-");
    // Generated when absent, or when what was sent is not a sane id.
    s.request(b"GET /none HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let l = line_with(&logs, "/none ");
    let id = l.split("id=").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(id.len(), 32, "{l}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{l}");
    s.request(b"GET /spaced HTTP/1.1\r\nHost: t\r\nX-Request-Id: a b\r\nConnection: close\r\n\r\n");
    let l = line_with(&logs, "/spaced ");
    assert!(!l.contains("id=a "), "{l}");

    // nginx's t=${msec}, 250 ms ago, from a trusted peer (127.0.0.1).
    let t = now_ms() - 250;
    let req = format!(
        "GET /nginx HTTP/1.1\r\nHost: t\r\nX-Request-Start: t={}.{:03}\r\nConnection: close\r\n\r\n",
        t / 1000,
        t % 1000
    );
    s.request(req.as_bytes());
    let l = line_with(&logs, "/nginx ");
    let q: f64 = l.split("queue=").nth(1).unwrap().parse().unwrap();
    assert!((0.24..30.0).contains(&q), "{l}");
    // Milliseconds and microseconds forms.
    let req = format!(
        "GET /ms HTTP/1.1\r\nHost: t\r\nX-Request-Start: {}\r\nConnection: close\r\n\r\n",
        now_ms() - 100
    );
    s.request(req.as_bytes());
    let q: f64 = line_with(&logs, "/ms ")
        .split("queue=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.09..30.0).contains(&q), "{q}");
    let req = format!(
        "GET /us HTTP/1.1\r\nHost: t\r\nX-Request-Start: t={}\r\nConnection: close\r\n\r\n",
        (now_ms() - 100) * 1000
    );
    s.request(req.as_bytes());
    let q: f64 = line_with(&logs, "/us ")
        .split("queue=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.09..30.0).contains(&q), "{q}");
    assert_eq!(queue_count(&status), before + 3.0);
}

#[test]
fn queue_time_is_ignored_from_an_untrusted_peer_and_json_has_both() {
    // Nobody is trusted: X-Request-Start is the client's word, ignored.
    let (s, logs, status) = logged(&["--forwarded-allow-ips", "10.9.9.9"], "json");
    let req = format!(
        "GET /untrusted HTTP/1.1\r\nHost: t\r\nX-Request-Id: j-1\r\nX-Request-Start: t={}\r\nConnection: close\r\n\r\n",
        now_ms() - 5000
    );
    s.request(req.as_bytes());
    let l = line_with(&logs, "/untrusted");
    assert!(l.contains("\"request_id\": \"j-1\""), "{l}");
    assert!(!l.contains("queue_time_us"), "{l}");
    assert_eq!(queue_count(&status), 0.0);
    drop(s);

    let (s, logs, _status) = logged(&[], "json");
    let req = format!(
        "GET /trusted HTTP/1.1\r\nHost: t\r\nX-Request-Start: t={}\r\nConnection: close\r\n\r\n",
        now_ms() - 1000
    );
    s.request(req.as_bytes());
    let l = line_with(&logs, "/trusted");
    let us: u64 = l
        .split("\"queue_time_us\": ")
        .nth(1)
        .unwrap()
        .split(['}', ','])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((990_000..30_000_000).contains(&us), "{l}");
    assert!(l.contains("\"request_id\": \""), "{l}");
}

#[test]
fn request_ids_can_be_turned_off_or_read_from_another_header() {
    let (s, logs, _) = logged(&["--request-id-header", ""], "%(U)s id=%(request_id)s");
    s.request(b"GET /off HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc\r\nConnection: close\r\n\r\n");
    assert_eq!(line_with(&logs, "/off "), "/off id=-");
    drop(s);
    let (s, logs, _) = logged(
        &["--request-id-header", "X-Correlation-Id"],
        "%(U)s id=%(request_id)s",
    );
    s.request(
        b"GET /other HTTP/1.1\r\nHost: t\r\nX-Correlation-Id: corr-9\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(line_with(&logs, "/other "), "/other id=corr-9");
}
