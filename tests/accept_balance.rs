//! Workers share the listening sockets and the kernel wakes one of them per
//! new connection (event_loop's "Accepting fairly"). What must hold: a burst
//! of keep-alive connections, such as wrk or a proxy's pool opens at start,
//! ends up spread over the workers, not on whichever was woken first, and
//! each connection stays with the worker that accepted it; and when one
//! worker holds them all anyway (its peer was not running), the load evens
//! out while the clients keep working, instead of lasting for the life of
//! the connections.
mod support;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use support::hardening::{continue_process, stop_process};
use support::*;

const CONNS: usize = 64;

/// The pid the welcome page says served the request.
fn served_by(resp: &HttpResponse) -> u32 {
    let body = resp.body_str();
    let tail = body
        .split("worker pid <strong>")
        .nth(1)
        .unwrap_or_else(|| panic!("no worker pid in the welcome page: {body}"));
    tail.split('<').next().unwrap().parse().unwrap()
}

/// Rounds, each with a fresh server: one uneven start is luck, so the
/// check runs a few (without the balance rule, 5 of 12 single rounds here
/// ended 42-58 of 64 on one worker).
const ROUNDS: usize = 4;

/// A round says nothing when the lighter worker waited this long for a CPU
/// during the burst (its run-queue time, /proc/PID/schedstat): a loaded
/// worker leaves connections to an idle peer for 3 ms only (DEFER_MS), so a
/// peer that cannot run takes none, whatever the balance rule (beside a full
/// suite run on 2 cores, 47 of 64 went to one worker).
const STARVED: Duration = Duration::from_millis(3);

#[test]
fn a_burst_of_keep_alive_connections_is_spread_over_the_workers() {
    let mut judged = Vec::new();
    let mut starved = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while judged.len() < ROUNDS && Instant::now() < deadline {
        let (busiest, waited) = one_burst();
        if waited >= STARVED {
            starved.push(format!(
                "{busiest} of {CONNS} (peer waited {waited:?} for a CPU)"
            ));
            continue;
        }
        // Even would be 32 each (and is 32-33 here in every round); 38 is
        // the 60% that the benchmarks hold the server to.
        assert!(
            busiest <= 38,
            "round {}: one worker holds {busiest} of {CONNS} connections (its peer waited \
             {waited:?} for a CPU); rounds without a CPU for the peer: {starved:?}",
            judged.len()
        );
        judged.push(format!("{busiest} of {CONNS} (peer waited {waited:?})"));
    }
    eprintln!("rounds judged: {judged:?}; not judged (peer without a CPU): {starved:?}");
    // A machine so loaded that no round could be judged in 2 minutes says
    // nothing either; that is a failure too, not a pass.
    assert!(
        !judged.is_empty(),
        "no round with a peer that could run: {starved:?}"
    );
}

/// Time `pid` has spent waiting on a run queue (second field of
/// /proc/PID/schedstat, ns).
fn run_delay(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let ns = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Open a burst of connections to a fresh 2-worker server, serve two
/// requests on each, and return how many the busiest worker holds, and how
/// long the other one waited for a CPU during the burst.
fn one_burst() -> (usize, Duration) {
    let s = Server::builder()
        .args(["welcome", "--workers", "2"])
        .status_listener()
        .start();
    let workers = wait_workers(s.pid(), 2);
    assert_eq!(workers.len(), 2, "expected 2 workers, got {workers:?}");
    // Both accepting, not just forked: a burst that came while the second
    // was still booting all went to the first (64 of 64, once in 10 runs
    // beside a full suite run).
    s.wait_workers_ready(2);
    let before: Vec<Duration> = workers.iter().map(|&w| run_delay(w)).collect();
    // Connect all first, then send: every connection is queued before the
    // first request, as with a load generator's or a proxy's start.
    let mut clients: Vec<Client> = (0..CONNS).map(|_| s.connect()).collect();
    let mut owner = Vec::with_capacity(CONNS);
    for c in clients.iter_mut() {
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    }
    let mut shed = Vec::with_capacity(CONNS);
    for (i, c) in clients.iter_mut().enumerate() {
        let resp = c.read_response().unwrap();
        assert_eq!(resp.status, 200, "connection {i}");
        owner.push(served_by(&resp));
        // A worker over the slack sheds (answers with Connection: close):
        // on a loaded machine that can happen during the burst itself.
        shed.push(resp.header("Connection") == Some("close"));
    }
    let waited: Vec<Duration> = workers
        .iter()
        .zip(&before)
        .map(|(&w, &b)| run_delay(w).saturating_sub(b))
        .collect();
    // Kept alive: the second request on a connection is served by the same
    // worker.
    for (i, c) in clients.iter_mut().enumerate() {
        if shed[i] {
            continue;
        }
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let resp = c.read_response().unwrap();
        assert_eq!(served_by(&resp), owner[i], "connection {i} changed worker");
    }
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    for pid in &owner {
        assert!(
            workers.contains(pid),
            "pid {pid} is not a worker of {workers:?}"
        );
        *per_worker.entry(*pid).or_default() += 1;
    }
    // Without the balance rule one worker often takes most of them: on 2
    // cores the second is woken but not yet running while the first
    // accepts everything.
    let busiest = per_worker.values().copied().max().unwrap();
    let lighter = workers
        .iter()
        .position(|w| per_worker.get(w).copied().unwrap_or(0) < busiest)
        .unwrap_or(1);
    (busiest, waited[lighter])
}

#[test]
fn connections_piled_on_one_worker_spread_out_while_in_use() {
    let s = Server::builder()
        .args(["welcome", "--workers", "2"])
        .status_listener()
        .start();
    let workers = wait_workers(s.pid(), 2);
    assert_eq!(workers.len(), 2, "expected 2 workers, got {workers:?}");
    s.wait_workers_ready(2);
    let stopped = workers[1];
    let mut reconnects = 0;
    // Two pipelined requests: a connection the server sheds must not be one
    // with a request still buffered (closing it would lose that answer), so
    // the first answer never says close and the second always arrives. A
    // connection the server closes (`Connection: close`) is opened again,
    // as clients and proxies do.
    let mut use_once = |c: &mut Client, i: usize| -> u32 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let first = c
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", s.log_text()));
        assert_eq!(first.status, 200, "connection {i}");
        assert_ne!(
            first.header("Connection"),
            Some("close"),
            "connection {i}: closed with a pipelined request behind"
        );
        let resp = c
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}, second request: {e}"));
        assert_eq!(resp.status, 200, "connection {i}");
        if resp.header("Connection") == Some("close") {
            *c = s.connect();
            reconnects += 1;
        }
        served_by(&resp)
    };
    // With one worker stopped, every connection lands on the other.
    stop_process(stopped);
    let mut clients: Vec<Client> = (0..CONNS).map(|_| s.connect()).collect();
    let mut owner: Vec<u32> = Vec::with_capacity(CONNS);
    for (i, c) in clients.iter_mut().enumerate() {
        owner.push(use_once(c, i));
    }
    assert!(
        owner.iter().all(|&p| p == workers[0]),
        "a stopped worker served requests: {owner:?}"
    );
    continue_process(stopped);
    // Keep every connection busy until the load is even (or time is up:
    // a bound for the failure case, a few rounds suffice on any machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    let busiest = loop {
        for (i, c) in clients.iter_mut().enumerate() {
            owner[i] = use_once(c, i);
        }
        let on_first = owner.iter().filter(|&&p| p == workers[0]).count();
        let busiest = on_first.max(CONNS - on_first);
        if busiest <= 40 || Instant::now() > deadline {
            break busiest;
        }
    };
    // 40 of 64: shedding stops at a difference of 8, or of a quarter.
    assert!(
        busiest <= 40,
        "still {busiest} of {CONNS} on one worker after 30 s ({reconnects} reconnects)"
    );
}
