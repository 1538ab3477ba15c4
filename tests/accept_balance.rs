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

#[test]
fn a_burst_of_keep_alive_connections_is_spread_over_the_workers() {
    for round in 0..ROUNDS {
        let busiest = one_burst();
        // Even would be 32 each (and is 32-33 here in every round); 38 is
        // the 60% that the benchmarks hold the server to.
        assert!(
            busiest <= 38,
            "round {round}: one worker holds {busiest} of {CONNS} connections"
        );
    }
}

/// Open a burst of connections to a fresh 2-worker server, serve two
/// requests on each, and return how many the busiest worker holds.
fn one_burst() -> usize {
    let s = Server::start(&["welcome", "--workers", "2"]);
    let workers = wait_workers(s.pid(), 2); // the second may still be booting
    assert_eq!(workers.len(), 2, "expected 2 workers, got {workers:?}");
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
    per_worker.values().copied().max().unwrap()
}

#[test]
fn connections_piled_on_one_worker_spread_out_while_in_use() {
    let s = Server::start(&["welcome", "--workers", "2"]);
    let workers = wait_workers(s.pid(), 2); // the second may still be booting
    assert_eq!(workers.len(), 2, "expected 2 workers, got {workers:?}");
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
