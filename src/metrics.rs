//! The master's view of the server ([`ServerStatus`]) and its renderings:
//! Prometheus text (0.0.4), OpenMetrics 1.0, JSON for `/status`, and the
//! table `ferricorn status` prints. Pure functions of a snapshot, so every
//! format is unit-tested without a process.
//!
//! Every metric is documented in the README ("Metrics"); a name changed here
//! must change there.

use std::fmt::Write;

use crate::scoreboard::{
    BUCKETS_US, CLASSES, CountersSnapshot, HistogramSnapshot, METHODS, WorkerStatus,
};

/// Why workers exit, as counted in `ferricorn_worker_exits_total{cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    Timeout,
    Crash,
    MaxRequests,
    Memory,
    Lifetime,
    Reload,
    ScaleDown,
    Shutdown,
}

impl ExitCause {
    pub const ALL: [ExitCause; 8] = [
        ExitCause::Timeout,
        ExitCause::Crash,
        ExitCause::MaxRequests,
        ExitCause::Memory,
        ExitCause::Lifetime,
        ExitCause::Reload,
        ExitCause::ScaleDown,
        ExitCause::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ExitCause::Timeout => "timeout",
            ExitCause::Crash => "crash",
            ExitCause::MaxRequests => "max-requests",
            ExitCause::Memory => "memory",
            ExitCause::Lifetime => "lifetime",
            ExitCause::Reload => "reload",
            ExitCause::ScaleDown => "scale-down",
            ExitCause::Shutdown => "shutdown",
        }
    }

    pub fn index(self) -> usize {
        ExitCause::ALL.iter().position(|c| *c == self).unwrap()
    }
}

/// One worker in `/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerView {
    /// The worker's number (1, 2, ... in fork order; gunicorn's `age`).
    pub age: u64,
    /// `booting`, `ready`, `retiring`, `aborted`.
    pub state: &'static str,
    /// Seconds since it was forked.
    pub uptime_s: f64,
    /// Resident set size from /proc (0 when unknown).
    pub rss_bytes: u64,
    /// Milliseconds since its loop last turned.
    pub heartbeat_age_ms: u64,
    /// How long the request in the app has been there (ms), 0 when idle.
    pub in_app_ms: u64,
    pub status: WorkerStatus,
}

/// A listening socket's accept queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenQueue {
    pub name: String,
    /// Connections waiting to be accepted (None where the kernel does not say).
    pub depth: Option<u64>,
    pub backlog: u64,
}

/// Everything the status listener shows, read by the master per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStatus {
    pub version: &'static str,
    pub master_pid: u32,
    pub uptime_s: f64,
    /// `running`, `shutdown-delay`, `stopping`.
    pub phase: &'static str,
    pub workers_wanted: u64,
    pub workers: Vec<WorkerView>,
    pub exits: [u64; 8],
    pub totals: CountersSnapshot,
    pub listeners: Vec<ListenQueue>,
}

impl ServerStatus {
    pub fn alive(&self) -> u64 {
        self.workers.len() as u64
    }

    pub fn ready(&self) -> u64 {
        self.workers.iter().filter(|w| w.state == "ready").count() as u64
    }

    /// `/readyz`: at least one worker accepts and no shutdown is under way.
    pub fn is_ready(&self) -> bool {
        self.phase == "running" && self.workers.iter().any(|w| w.status.ready)
    }
}

/// Which exposition format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics only when the `Accept` header asks for it.
    pub fn from_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

struct Out<'a> {
    s: &'a mut String,
    fmt: Format,
}

impl Out<'_> {
    /// `# HELP` and `# TYPE` for a family. OpenMetrics names a counter's
    /// family without `_total`; its samples keep it.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let fam = match (self.fmt, kind) {
            (Format::OpenMetrics, "counter") => name.trim_end_matches("_total"),
            _ => name,
        };
        let _ = writeln!(self.s, "# HELP {fam} {help}");
        let _ = writeln!(self.s, "# TYPE {fam} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.s, "{name} {value}");
        } else {
            let _ = writeln!(self.s, "{name}{{{labels}}} {value}");
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let cum = h.cumulative();
        for (i, c) in cum.iter().enumerate() {
            let le = match BUCKETS_US.get(i) {
                Some(us) => secs(*us),
                None => "+Inf".to_string(),
            };
            self.sample(&format!("{name}_bucket"), &format!("le=\"{le}\""), c);
        }
        self.sample(&format!("{name}_sum"), "", secs(h.sum_us));
        self.sample(&format!("{name}_count"), "", h.count());
    }
}

/// Microseconds as seconds, exactly (no float noise in `le` labels).
fn secs(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        format!("{whole}.0")
    } else {
        let f = format!("{frac:06}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

fn label_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics`.
pub fn render_metrics(st: &ServerStatus, fmt: Format) -> String {
    let mut s = String::with_capacity(8 * 1024);
    let mut o = Out { s: &mut s, fmt };
    let t = &st.totals;

    o.family(
        "ferricorn_requests_total",
        "counter",
        "Responses by method and status class, requests refused by ferricorn (400, 408, 413, 431) included.",
    );
    for (m, row) in t.requests.iter().enumerate() {
        for (c, n) in row.iter().enumerate() {
            o.sample(
                "ferricorn_requests_total",
                &format!("method=\"{}\",status=\"{}\"", METHODS[m], CLASSES[c]),
                n,
            );
        }
    }
    o.histogram(
        "ferricorn_request_app_duration_seconds",
        "Time spent inside the application per request.",
        &t.app,
    );
    o.histogram(
        "ferricorn_request_duration_seconds",
        "Time from a complete request to its response queued, per request.",
        &t.total,
    );
    o.histogram(
        "ferricorn_request_queue_seconds",
        "Queue time before a worker took the request, from X-Request-Start set by a trusted proxy.",
        &t.queue,
    );
    o.family(
        "ferricorn_requests_in_flight",
        "gauge",
        "Requests inside the application now.",
    );
    o.sample("ferricorn_requests_in_flight", "", t.in_flight);
    o.family(
        "ferricorn_connections_open",
        "gauge",
        "Client connections open in all workers.",
    );
    let conns: u64 = st.workers.iter().map(|w| w.status.connections).sum();
    o.sample("ferricorn_connections_open", "", conns);
    o.family(
        "ferricorn_response_bytes_total",
        "counter",
        "Response bytes (heads and bodies) queued for clients.",
    );
    o.sample("ferricorn_response_bytes_total", "", t.bytes_sent);

    o.family(
        "ferricorn_workers_wanted",
        "gauge",
        "Workers the master aims to run.",
    );
    o.sample("ferricorn_workers_wanted", "", st.workers_wanted);
    o.family(
        "ferricorn_workers_alive",
        "gauge",
        "Worker processes alive.",
    );
    o.sample("ferricorn_workers_alive", "", st.alive());
    o.family(
        "ferricorn_workers_ready",
        "gauge",
        "Workers accepting connections.",
    );
    o.sample("ferricorn_workers_ready", "", st.ready());
    o.family(
        "ferricorn_worker_exits_total",
        "counter",
        "Worker exits by cause.",
    );
    for c in ExitCause::ALL {
        o.sample(
            "ferricorn_worker_exits_total",
            &format!("cause=\"{}\"", c.label()),
            st.exits[c.index()],
        );
    }

    o.family(
        "ferricorn_listen_queue_depth",
        "gauge",
        "Connections waiting in a listening socket's accept queue.",
    );
    for l in &st.listeners {
        if let Some(d) = l.depth {
            o.sample(
                "ferricorn_listen_queue_depth",
                &format!("listener=\"{}\"", label_escape(&l.name)),
                d,
            );
        }
    }
    o.family(
        "ferricorn_listen_queue_backlog",
        "gauge",
        "The accept queue's limit (--backlog, as the kernel applied it).",
    );
    for l in &st.listeners {
        o.sample(
            "ferricorn_listen_queue_backlog",
            &format!("listener=\"{}\"", label_escape(&l.name)),
            l.backlog,
        );
    }

    o.family(
        "ferricorn_worker_requests",
        "gauge",
        "Requests answered by each live worker (resets when the worker is replaced; see ferricorn_requests_total).",
    );
    for w in &st.workers {
        o.sample(
            "ferricorn_worker_requests",
            &format!("worker=\"{}\"", w.age),
            w.status.counters.requests_total(),
        );
    }
    o.family(
        "ferricorn_worker_resident_memory_bytes",
        "gauge",
        "Resident set size of each live worker.",
    );
    for w in &st.workers {
        o.sample(
            "ferricorn_worker_resident_memory_bytes",
            &format!("worker=\"{}\"", w.age),
            w.rss_bytes,
        );
    }
    o.family(
        "ferricorn_master_uptime_seconds",
        "gauge",
        "Seconds since the master started.",
    );
    o.sample(
        "ferricorn_master_uptime_seconds",
        "",
        format!("{:.3}", st.uptime_s),
    );
    if fmt == Format::OpenMetrics {
        s.push_str("# EOF\n");
    }
    s
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_requests(out: &mut String, c: &CountersSnapshot) {
    out.push('{');
    let mut first = true;
    for (m, row) in c.requests.iter().enumerate() {
        for (k, n) in row.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "\"{} {}\":{}", METHODS[m], CLASSES[k], n);
        }
    }
    out.push('}');
}

/// `/status`: the schema is documented in the README ("Status JSON").
pub fn render_json(st: &ServerStatus) -> String {
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "{{\"version\":\"{}\",\"master_pid\":{},\"uptime_seconds\":{:.3},\"phase\":\"{}\",\"ready\":{},",
        st.version,
        st.master_pid,
        st.uptime_s,
        st.phase,
        st.is_ready()
    );
    let _ = write!(
        s,
        "\"workers_wanted\":{},\"workers_alive\":{},\"workers_ready\":{},",
        st.workers_wanted,
        st.alive(),
        st.ready()
    );
    let t = &st.totals;
    let _ = write!(
        s,
        "\"requests_total\":{},\"requests_in_flight\":{},\"response_bytes_total\":{},\"requests\":",
        t.requests_total(),
        t.in_flight,
        t.bytes_sent
    );
    json_requests(&mut s, t);
    s.push_str(",\"worker_exits\":{");
    for (i, c) in ExitCause::ALL.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{}\":{}", c.label(), st.exits[c.index()]);
    }
    s.push_str("},\"listeners\":[");
    for (i, l) in st.listeners.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"name\":");
        json_str(&mut s, &l.name);
        match l.depth {
            Some(d) => {
                let _ = write!(s, ",\"queue_depth\":{d}");
            }
            None => s.push_str(",\"queue_depth\":null"),
        }
        let _ = write!(s, ",\"backlog\":{}}}", l.backlog);
    }
    s.push_str("],\"workers\":[");
    for (i, w) in st.workers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"pid\":{},\"worker\":{},\"state\":\"{}\",\"age_seconds\":{:.3},\"requests\":{},\"connections\":{},\"rss_bytes\":{},\"heartbeat_age_ms\":{},\"current_request\":",
            w.status.pid,
            w.age,
            w.state,
            w.uptime_s,
            w.status.counters.requests_total(),
            w.status.connections,
            w.rss_bytes,
            w.heartbeat_age_ms,
        );
        if w.status.current_request.is_empty() {
            s.push_str("null");
        } else {
            s.push('{');
            s.push_str("\"request\":");
            json_str(&mut s, &w.status.current_request);
            let _ = write!(s, ",\"in_app_ms\":{}}}", w.in_app_ms);
        }
        s.push('}');
    }
    s.push_str("]}\n");
    s
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1}G", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1}M", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1}K", b as f64 / 1024.0)
    } else {
        format!("{b}B")
    }
}

/// `ferricorn status`: a table for an operator at a shell.
pub fn render_table(st: &ServerStatus) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ferricorn {}  master {}  up {:.0}s  {}  {}",
        st.version,
        st.master_pid,
        st.uptime_s,
        st.phase,
        if st.is_ready() { "READY" } else { "NOT READY" }
    );
    let _ = writeln!(
        s,
        "workers: {} wanted, {} alive, {} ready    requests: {} ({} in flight)    sent: {}",
        st.workers_wanted,
        st.alive(),
        st.ready(),
        st.totals.requests_total(),
        st.totals.in_flight,
        human_bytes(st.totals.bytes_sent)
    );
    let by_class: Vec<String> = CLASSES
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let n: u64 = st.totals.requests.iter().map(|r| r[c]).sum();
            format!("{name} {n}")
        })
        .collect();
    let _ = writeln!(s, "statuses: {}", by_class.join("  "));
    let exits: Vec<String> = ExitCause::ALL
        .iter()
        .filter(|c| st.exits[c.index()] > 0)
        .map(|c| format!("{} {}", c.label(), st.exits[c.index()]))
        .collect();
    let _ = writeln!(
        s,
        "worker exits: {}",
        if exits.is_empty() {
            "none".to_string()
        } else {
            exits.join("  ")
        }
    );
    for l in &st.listeners {
        let depth = l.depth.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "listener {}: queue {depth}/{}", l.name, l.backlog);
    }
    let _ = writeln!(
        s,
        "\n{:>8} {:>4} {:<9} {:>8} {:>9} {:>5} {:>8} {:>7}  CURRENT",
        "PID", "#", "STATE", "AGE", "REQUESTS", "CONNS", "RSS", "BEAT"
    );
    for w in &st.workers {
        let current = if w.status.current_request.is_empty() {
            "-".to_string()
        } else {
            format!("{} ({} ms)", w.status.current_request, w.in_app_ms)
        };
        let _ = writeln!(
            s,
            "{:>8} {:>4} {:<9} {:>7.0}s {:>9} {:>5} {:>8} {:>5}ms  {}",
            w.status.pid,
            w.age,
            w.state,
            w.uptime_s,
            w.status.counters.requests_total(),
            w.status.connections,
            human_bytes(w.rss_bytes),
            w.heartbeat_age_ms,
            current
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerStatus {
        let mut totals = CountersSnapshot::default();
        totals.requests[0][1] = 5;
        totals.requests[7][3] = 2;
        totals.total.buckets[0] = 4;
        totals.total.buckets[BUCKETS_US.len()] = 3;
        totals.total.sum_us = 1_500_000;
        ServerStatus {
            version: "0.1.0",
            master_pid: 42,
            uptime_s: 3.5,
            phase: "running",
            workers_wanted: 2,
            workers: vec![
                WorkerView {
                    age: 1,
                    state: "ready",
                    status: WorkerStatus {
                        pid: 100,
                        ready: true,
                        current_request: "GET /a\"b".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                WorkerView {
                    age: 2,
                    state: "booting",
                    ..Default::default()
                },
            ],
            exits: [1, 0, 0, 0, 0, 0, 0, 0],
            totals,
            listeners: vec![ListenQueue {
                name: "127.0.0.1:8000".into(),
                depth: Some(3),
                backlog: 2048,
            }],
        }
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(secs(1_000), "0.001");
        assert_eq!(secs(2_500), "0.0025");
        assert_eq!(secs(1_000_000), "1.0");
        assert_eq!(secs(60_000_000), "60.0");
        assert_eq!(secs(1_500_000), "1.5");
    }

    #[test]
    fn prometheus_text_has_cumulative_buckets_and_no_eof() {
        let text = render_metrics(&sample(), Format::Prometheus);
        assert!(text.contains("ferricorn_requests_total{method=\"GET\",status=\"2xx\"} 5\n"));
        assert!(text.contains("ferricorn_requests_total{method=\"other\",status=\"4xx\"} 2\n"));
        assert!(text.contains("ferricorn_request_duration_seconds_bucket{le=\"0.001\"} 4\n"));
        assert!(text.contains("ferricorn_request_duration_seconds_bucket{le=\"60.0\"} 4\n"));
        assert!(text.contains("ferricorn_request_duration_seconds_bucket{le=\"+Inf\"} 7\n"));
        assert!(text.contains("ferricorn_request_duration_seconds_count 7\n"));
        assert!(text.contains("ferricorn_request_duration_seconds_sum 1.5\n"));
        assert!(text.contains("# TYPE ferricorn_requests_total counter\n"));
        assert!(text.contains("ferricorn_worker_exits_total{cause=\"timeout\"} 1\n"));
        assert!(text.contains("ferricorn_workers_ready 1\n"));
        assert!(text.contains("ferricorn_listen_queue_depth{listener=\"127.0.0.1:8000\"} 3\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = render_metrics(&sample(), Format::OpenMetrics);
        assert!(text.contains("# TYPE ferricorn_requests counter\n"));
        assert!(text.contains("ferricorn_requests_total{method=\"GET\",status=\"2xx\"} 5\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            Format::from_accept("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept("*/*"), Format::Prometheus);
    }

    #[test]
    fn json_escapes_and_reports_readiness() {
        let j = render_json(&sample());
        assert!(j.starts_with("{\"version\":\"0.1.0\",\"master_pid\":42,"));
        assert!(j.contains("\"ready\":true"));
        assert!(j.contains("\"request\":\"GET /a\\\"b\""));
        assert!(j.contains("\"requests\":{\"GET 2xx\":5,\"other 4xx\":2}"));
        assert!(j.contains("\"current_request\":null"));
        let mut st = sample();
        st.phase = "shutdown-delay";
        assert!(!st.is_ready());
        assert!(render_json(&st).contains("\"ready\":false"));
    }

    #[test]
    fn readiness_needs_an_accepting_worker() {
        let mut st = sample();
        st.workers[0].status.ready = false;
        assert!(!st.is_ready());
    }

    #[test]
    fn table_lists_every_worker() {
        let t = render_table(&sample());
        assert!(t.contains("READY"));
        assert!(t.contains("     100    1 ready"));
        assert!(t.contains("timeout 1"));
        assert!(t.contains("listener 127.0.0.1:8000: queue 3/2048"));
    }
}
