//! Workers share the listening sockets and the kernel wakes one of them per
//! new connection (event_loop's "Accepting fairly"). What must hold: a burst
//! of keep-alive connections, such as wrk or a proxy's pool opens at start,
//! ends up spread over the workers, not on whichever was woken first, and
//! each connection stays with the worker that accepted it.
mod support;
use std::collections::HashMap;
use std::io::Write;
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
    let workers = s.worker_pids();
    assert_eq!(workers.len(), 2, "expected 2 workers, got {workers:?}");
    // Connect all first, then send: every connection is queued before the
    // first request, as with a load generator's or a proxy's start.
    let mut clients: Vec<Client> = (0..CONNS).map(|_| s.connect()).collect();
    let mut owner = Vec::with_capacity(CONNS);
    for c in clients.iter_mut() {
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let resp = c.read_response().unwrap();
        assert_eq!(resp.status, 200, "connection {i}");
        owner.push(served_by(&resp));
    }
    // Kept alive: the second request on a connection is served by the same
    // worker.
    for (i, c) in clients.iter_mut().enumerate() {
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
