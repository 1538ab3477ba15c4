//! Accept balancing must not make a new client wait when a worker could
//! serve it at once (issue 11, point 6). Before, a worker holding more
//! than 2 connections over an idle peer left each new connection it was
//! woken for to that peer for up to 3 ms; the peer hears of it only when
//! the next connection arrives, so about half of all new connections
//! waited the full 3 ms, and since idle connections never move, for as
//! long as they stayed open (100 and 80 idle connections: p50 3.1 ms
//! against 0.04 ms balanced). Now connections idle for a second do not
//! count as load, so idle ones cannot hold the deferral on.
mod support;
use std::io::Write;
use std::time::{Duration, Instant};

use support::hardening::{continue_process, stop_process};
use support::*;

/// The pid the welcome page says served the request.
fn served_by(resp: &HttpResponse) -> u32 {
    let body = resp.body_str();
    let tail = body
        .split("worker pid <strong>")
        .nth(1)
        .unwrap_or_else(|| panic!("no worker pid in the welcome page: {body}"));
    tail.split('<').next().unwrap().parse().unwrap()
}

/// Open `n` connections while only `to` runs (the other worker stopped),
/// each answered once and then left idle; returns them.
fn idle_on(s: &Server, to: u32, other: u32, n: usize) -> Vec<Client> {
    stop_process(other);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = s.connect();
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert_eq!(
            served_by(&r),
            to,
            "connection {i} went to the stopped worker"
        );
        conns.push(c);
    }
    continue_process(other);
    conns
}

/// One new connection's request, from connect to the end of its response.
fn new_client(s: &Server) -> Duration {
    let t = Instant::now();
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    t.elapsed()
}

#[test]
fn idle_connections_held_unevenly_do_not_delay_new_clients() {
    let s = Server::builder()
        .args(["welcome", "--workers", "2", "--keep-alive", "300"])
        .status_listener()
        .start();
    // Both workers: on a loaded machine the second may still be booting
    // when the first answers (seen in two full ./test.sh runs), and then
    // accepting, not just forked.
    let w = wait_workers(s.pid(), 2);
    s.wait_workers_ready(2);
    // The scenario: 100 idle connections on one worker, 80 on the
    // other.
    let _a = idle_on(&s, w[0], w[1], 100);
    let _b = idle_on(&s, w[1], w[0], 80);

    // A deferred connection waits for the deferral (DEFER_MS, 3 ms, on a
    // millisecond clock: 2 ms and more, as measured), so count the new
    // clients that took SLOW or more: deferring, a large share of them,
    // round after round (80-90 of 100 measured against the old code);
    // without, only those a busy machine slows down, and how many that is
    // depends on the machine and its load (this 2-core box shared with
    // other builds had half of all clients over 3 ms in some rounds). So
    // each new client is paired with one to a control server that cannot
    // defer (a single worker: no peer to leave connections to), measured
    // right after it under the same load. A round counts only if it was
    // quiet (at most QUIET slow control clients): then it passes if the
    // server had at most MARGIN more slow clients than the control, which
    // deferring does not get through. Noisy rounds say nothing either way;
    // the first second after the idle connections' last request still
    // defers (they count as load until idle for DORMANT_MS); so the
    // condition is waited for (60 s at most), not sampled once.
    let control = Server::start(&["welcome", "--workers", "1", "--keep-alive", "300"]);
    const ROUND: usize = 100;
    const QUIET: usize = ROUND / 10;
    const MARGIN: usize = ROUND / 10;
    const SLOW: Duration = Duration::from_micros(1500);
    let mut rounds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ok = loop {
        let (mut times, mut control_times) = (Vec::new(), Vec::new());
        for _ in 0..ROUND {
            times.push(new_client(&s));
            control_times.push(new_client(&control));
        }
        times.sort();
        control_times.sort();
        let slow = times.iter().filter(|&&t| t >= SLOW).count();
        let control_slow = control_times.iter().filter(|&&t| t >= SLOW).count();
        rounds.push(format!(
            "{slow} slow (control {control_slow}), p50 {:?} (control {:?})",
            times[ROUND / 2],
            control_times[ROUND / 2]
        ));
        if control_slow <= QUIET && slow <= control_slow + MARGIN {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let last = &rounds[rounds.len().saturating_sub(5)..];
    eprintln!(
        "{} rounds of {ROUND} new clients, the last: {last:?}",
        rounds.len()
    );
    assert!(
        ok,
        "new clients kept waiting for the deferral for {} rounds of {ROUND}; the last: {last:?}",
        rounds.len()
    );
}
