//! What an idle connection costs a worker (issue 11, point 1). Before, an
//! idle keep-alive connection kept its 4 KiB read buffer, the last
//! response's output buffer and the previous head: about 5 kB each (nginx:
//! about 0.5 kB). Now an idle connection gives its buffers back within a
//! couple of timer ticks and costs its state alone. The full-size figure (10,000
//! connections) is `benches/idle_memory.py`.
mod support;
use std::io::Write;
use std::time::Duration;
use support::*;

const N: usize = 2000;
/// Bytes of worker RSS per idle connection allowed: today's cost is about
/// 600 (the connection's state in the worker's table), the old one 5,160.
const MAX_PER_CONN: u64 = 1536;

#[test]
fn idle_keep_alive_connections_give_their_buffers_back() {
    let limit = raise_nofile(2 * N as u64 + 256);
    assert!(
        limit >= 2 * N as u64 + 100,
        "RLIMIT_NOFILE too low: {limit}"
    );
    let s = Server::start(&[
        "hello",
        "--workers",
        "1",
        "--worker-connections",
        &(N + 16).to_string(),
        "--keep-alive",
        "120",
    ]);
    let worker = s.worker_pids()[0];
    let before = rss_kib(worker).unwrap();
    let mut conns: Vec<Client> = (0..N).map(|_| s.connect()).collect();
    for c in conns.iter_mut() {
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    let per_conn = || (rss_kib(worker).unwrap().saturating_sub(before) * 1024) / N as u64;
    let busy = per_conn();
    // Every connection is idle now; within two or three timer ticks each
    // has given its buffers back.
    let ok = wait_until(Duration::from_secs(30), || per_conn() <= MAX_PER_CONN);
    let idle = per_conn();
    eprintln!(
        "{N} kept-alive connections: {busy} bytes each just after their request, {idle} idle \
         (worker RSS {before} KiB before)"
    );
    assert!(
        ok,
        "an idle connection costs {idle} bytes of worker RSS (at most {MAX_PER_CONN} allowed)"
    );
    // Still usable: each is served again.
    for (i, c) in conns.iter_mut().enumerate().step_by(50) {
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}, again: {e}"));
        assert_eq!(r.status, 200);
    }
}
