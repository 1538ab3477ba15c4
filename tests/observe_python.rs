//! Observability with a Python app (`--features python`): /metrics parsed by
//! prometheus_client's own parsers (text and OpenMetrics), readiness during
//! a slow start-up, a timeout and a memory recycle counted by cause (the
//! recycle under load with zero failed requests), and conf/k8s/ validated
//! with kubernetes-validate against a pinned Kubernetes version.
#![cfg(feature = "python")]

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// The Kubernetes version conf/k8s/ is checked against.
const K8S_VERSION: &str = "1.34.0";

/// With a status listener the test binds (passed as fd://4: no free-port
/// race); its address is the started server's `status`.
fn observed(extra: &[&str]) -> ServerBuilder {
    Server::builder()
        .args([
            "--chdir".to_string(),
            repo().join("tests/python/apps").display().to_string(),
        ])
        .status_listener()
        .args(extra.iter().copied())
        .arg("observe_app:application")
        .env("VIRTUAL_ENV", &venv().display().to_string())
}

fn metric(status: &Addr, sample: &str) -> f64 {
    let body = get(status, "/metrics").unwrap().body_str();
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn raw_get(status: &Addr, target: &str, accept: &str) -> HttpResponse {
    let mut c = Client::connect(status).unwrap();
    c.set_timeout(Some(Duration::from_secs(10)));
    std::io::Write::write_all(
        &mut c,
        format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    c.read_response().unwrap()
}

/// Run `script` in the venv's python with `input` on stdin; its stdout.
fn python(script: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn metrics_parse_with_prometheus_client_in_both_formats() {
    let server = observed(&["-w", "2"]).start();
    let st = server.status.clone().unwrap();
    for _ in 0..3 {
        let r = server.request(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    assert!(wait_until(Duration::from_secs(20), || metric(
        &st,
        "ferricorn_workers_ready"
    ) == 2.0));
    let text = raw_get(&st, "/metrics", "text/plain");
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let families = python(
        "import sys\n\
         from prometheus_client.parser import text_string_to_metric_families as parse\n\
         fams = {f.name: f for f in parse(sys.stdin.read())}\n\
         reqs = sum(s.value for s in fams['ferricorn_requests'].samples)\n\
         h = fams['ferricorn_request_duration_seconds']\n\
         assert h.type == 'histogram', h.type\n\
         print(len(fams), int(reqs), fams['ferricorn_workers_ready'].samples[0].value)\n",
        &text.body,
    );
    let f: Vec<&str> = families.split_whitespace().collect();
    assert!(f[0].parse::<u32>().unwrap() >= 15, "{families}");
    assert!(f[1].parse::<u32>().unwrap() >= 3, "{families}");
    assert_eq!(f[2].parse::<f64>().unwrap(), 2.0, "{families}");

    let om = raw_get(
        &st,
        "/metrics",
        "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
    );
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.body_str().ends_with("# EOF\n"));
    let out = python(
        "import sys\n\
         from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
         fams = {f.name: f for f in parse(sys.stdin.read())}\n\
         assert fams['ferricorn_requests'].type == 'counter'\n\
         assert fams['ferricorn_request_app_duration_seconds'].type == 'histogram'\n\
         print(len(fams))\n",
        &om.body,
    );
    assert!(out.trim().parse::<u32>().unwrap() >= 15, "{out}");
}

#[test]
fn readyz_is_503_until_a_worker_accepts() {
    let dir = TempDir::new("hold");
    let hold = dir.join("hold");
    std::fs::write(&hold, b"").unwrap();
    let server = observed(&["-w", "2"])
        .env("OBSERVE_HOLD", &hold.display().to_string())
        .no_wait()
        .start();
    let st = server.status.clone().unwrap();
    // The master answers as soon as it is bound; the workers are importing.
    assert!(
        wait_until(Duration::from_secs(20), || get(&st, "/healthz").is_ok()),
        "{}",
        server.log_text()
    );
    let r = get(&st, "/readyz").unwrap();
    assert_eq!(r.status, 503, "ready while every worker is still importing");
    assert!(
        get(&st, "/status")
            .unwrap()
            .body_str()
            .contains("\"state\":\"booting\"")
    );
    std::fs::remove_file(&hold).unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        get(&st, "/readyz").is_ok_and(|r| r.status == 200)
    }));
    server.wait_ready();
}

#[test]
fn a_timeout_is_counted_and_the_request_in_the_app_is_shown() {
    let server = observed(&["-w", "1", "--timeout", "2"]).start();
    let st = server.status.clone().unwrap();
    let mut c = server.connect();
    std::io::Write::write_all(
        &mut c,
        b"GET /sleep?s=30 HTTP/1.1\r\nHost: t\r\nX-Request-Id: slow-1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // While it sleeps, /status shows the request and the in-flight gauge is 1.
    assert!(wait_until(Duration::from_secs(30), || {
        get(&st, "/status")
            .unwrap()
            .body_str()
            .contains("\"request\":\"GET /sleep\"")
    }));
    assert_eq!(metric(&st, "ferricorn_requests_in_flight"), 1.0);
    assert!(
        wait_until(Duration::from_secs(20), || {
            metric(&st, "ferricorn_worker_exits_total{cause=\"timeout\"}") == 1.0
        }),
        "{}",
        server.log_text()
    );
    assert_eq!(metric(&st, "ferricorn_requests_in_flight"), 0.0);
    assert_eq!(
        metric(&st, "ferricorn_worker_exits_total{cause=\"crash\"}"),
        0.0
    );
    // The master's timeout line names the request by its id.
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains("WORKER TIMEOUT")).unwrap();
    assert!(
        line.contains("handling GET /sleep [request_id=slow-1]"),
        "{line}"
    );
    server.wait_ready();
}

#[test]
fn the_app_gets_the_request_id_and_queue_time_and_error_lines_name_the_request() {
    request_id_and_queue_time(&["-w", "1"]);
}

/// The same on an app thread of `--threads`: the error line is written on
/// the pool's thread, not the loop's.
#[test]
fn with_threads_error_lines_name_the_request() {
    request_id_and_queue_time(&["-w", "1", "--threads", "2"]);
}

fn request_id_and_queue_time(args: &[&str]) {
    let server = observed(args).start();
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 200;
    let r = server.request(
        format!(
            "GET /meta HTTP/1.1\r\nHost: t\r\nX-Request-Id: py-7\r\nX-Request-Start: t={}.{:03}\r\nConnection: close\r\n\r\n",
            start_ms / 1000,
            start_ms % 1000
        )
        .as_bytes(),
    );
    let out = python(
        "import json, sys\n\
         m = json.loads(sys.stdin.read())\n\
         print(m['ferricorn.request_id'], m['ferricorn.request_start'], m['ferricorn.queue_time'])\n",
        &r.body,
    );
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f[0], "py-7", "{out}");
    let start: f64 = f[1].parse().unwrap();
    assert!((start - start_ms as f64 / 1000.0).abs() < 0.002, "{out}");
    let q: f64 = f[2].parse().unwrap();
    assert!((0.19..30.0).contains(&q), "{out}");

    let r = server.request(
        b"GET /boom HTTP/1.1\r\nHost: t\r\nX-Request-Id: boom-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 500);
    assert!(wait_log(
        &server,
        "[request_id=boom-1]",
        Duration::from_secs(30)
    ));
    let log = server.log_text();
    let tagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[request_id=boom-1]"))
        .collect();
    assert!(tagged.iter().any(|l| l.contains("[ERROR]")), "{log}");
    // Lines about other things name no request.
    assert!(
        log.lines()
            .filter(|l| l.contains("Booting worker"))
            .all(|l| !l.contains("request_id"))
    );
}

#[test]
fn a_leaking_app_is_recycled_for_memory_under_load_without_a_failed_request() {
    let server = observed(&["-w", "2", "--max-worker-memory", "60"]).start();
    let st = server.status.clone().unwrap();
    let load = Load::start_for(&server.addr, 4, "/leak", Duration::from_secs(150));
    let recycled = wait_until(Duration::from_secs(120), || {
        metric(&st, "ferricorn_worker_exits_total{cause=\"memory\"}") >= 2.0
    });
    let stats = load.stop();
    assert!(recycled, "no memory recycle:\n{}", server.log_text());
    assert!(stats.clean(), "{stats:?}");
    assert!(stats.ok > 100, "{stats:?}");
    assert!(
        server
            .log_text()
            .contains("above --max-worker-memory 60 MiB")
    );
    // Every request answered is still counted after the recycles.
    let counted = metric(
        &st,
        "ferricorn_requests_total{method=\"GET\",status=\"2xx\"}",
    );
    assert!(counted >= stats.ok as f64, "{counted} < {}", stats.ok);
}

#[test]
fn k8s_manifests_validate_against_a_pinned_kubernetes_version() {
    let validate = |files: &[std::path::PathBuf]| {
        Command::new(venv().join("bin/kubernetes-validate"))
            .args(["--strict", "-k", K8S_VERSION])
            .args(files)
            .output()
            .unwrap()
    };
    let dir = repo().join("conf/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does reject a wrong manifest (so the pass above means something).
    let tmp = TempDir::new("k8s");
    let bad = tmp.join("bad.yaml");
    let text = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    std::fs::write(&bad, text.replace("periodSeconds: 2", "periodSecond: 2")).unwrap();
    assert!(!validate(&[bad]).status.success());

    // Probes on the status listener, no preStop hack, and a grace period
    // above --shutdown-delay + --graceful-timeout.
    let num = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        num("terminationGracePeriodSeconds:")
            > num("--shutdown-delay=") + num("--graceful-timeout=")
    );
    assert!(!text.contains("preStop:") && !text.contains("lifecycle:"));
    assert!(text.contains("--status-bind=0.0.0.0:9100"));
    assert_eq!(text.matches("port: status").count(), 3);
    assert!(text.contains("path: /readyz") && text.contains("path: /healthz"));
}
