//! `--threads` with the built-in `echo` app (its `?sleep=S` blocks in the
//! app): requests run in parallel on a worker's threads, the event loop
//! keeps serving while they run, a worker with every thread busy leaves new
//! connections to a peer, pipelined requests and HEAD keep their order and
//! framing, a slow upload never holds a thread, and a request past
//! `--timeout` gets a 504 while the worker's other requests are answered.
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

fn send(c: &mut Client, raw: &str) {
    c.write_all(raw.as_bytes()).unwrap();
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Four requests on one worker with four threads are in the app at once;
/// a quick request meanwhile is answered. No clock: each slow request waits
/// in the app at a gate the test opens only once all four are inside (their
/// marks), which serial calls would never reach; the quick one is answered
/// while three are held, which a blocked loop would never do.
#[test]
fn n_slow_requests_run_in_parallel_on_one_worker() {
    let s = Server::start(&["echo", "--workers", "1", "--threads", "4"]);
    let gate = Gate::new(&s.dir, "slow");
    let marks: Vec<Mark> = (0..4)
        .map(|i| Mark::new(&s.dir, &format!("slow{i}")))
        .collect();
    let slow_req = |i: usize| get_req(&format!("/slow{i}?{}&{}", marks[i].param(), gate.param()));
    let mut slow: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = s.connect();
            send(&mut c, &slow_req(i));
            c
        })
        .collect();
    for m in &marks[..3] {
        m.wait();
    }
    // The loop is not blocked and a thread is still idle: answered while
    // the three are held (never, if it waited for them).
    let quick = get(&s.addr, "/quick").unwrap();
    assert_eq!(quick.status, 200);
    let mut c4 = s.connect();
    send(&mut c4, &slow_req(3));
    slow.push(c4);
    marks[3].wait();
    gate.open();
    for c in &mut slow {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{}", s.log_text());
    }
    assert!(!s.log_text().contains("WORKER TIMEOUT"));
}

/// With every thread busy, further requests wait in their connections and
/// are answered once a thread frees up, in the order they became waiting.
#[test]
fn requests_beyond_the_threads_wait_and_are_answered() {
    let s = Server::start(&["echo", "--workers", "1", "--threads", "2"]);
    let t0 = Instant::now();
    let mut cs: Vec<Client> = (0..5)
        .map(|i| {
            let mut c = s.connect();
            send(&mut c, &get_req(&format!("/w{i}?sleep=0.6")));
            c
        })
        .collect();
    for c in &mut cs {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body_str().contains("\"path\": \"/w"), "{}", r.body_str());
    }
    // 5 requests on 2 threads: three rounds of 0.6 s at least.
    assert!(
        t0.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        t0.elapsed()
    );
}

/// Two workers with one thread each: while one worker's thread is held by a
/// slow request, new connections go to the other worker, and none waits for
/// the slow request.
#[test]
fn a_worker_with_every_thread_busy_leaves_new_connections_to_its_peer() {
    let s = Server::start(&["echo", "--workers", "2", "--threads", "1", "-k", "gthread"]);
    let workers = wait_workers(s.pid(), 2);
    assert_eq!(workers.len(), 2);
    // A kept-alive connection first, so its worker has it registered and
    // reads the held request the moment it is written. The held request
    // waits in the app at a gate opened only after the 12 others: one that
    // went behind the held thread is never answered (the client's read
    // timeout fails the test), whatever the machine's speed.
    let mut held = s.connect();
    held.set_timeout(Some(Duration::from_secs(30)));
    send(&mut held, &get_req("/warm"));
    assert_eq!(held.read_response().unwrap().status, 200);
    let (inside, gate) = (Mark::new(&s.dir, "held"), Gate::new(&s.dir, "held"));
    send(
        &mut held,
        &get_req(&format!("/held?{}&{}", inside.param(), gate.param())),
    );
    inside.wait();
    for i in 0..12 {
        let r = get(&s.addr, &format!("/n{i}"))
            .unwrap_or_else(|e| panic!("request {i} not answered (behind the held thread?): {e}"));
        assert_eq!(r.status, 200);
    }
    gate.open();
    let r = held.read_response().unwrap();
    assert_eq!(r.status, 200);
}

/// Pipelined requests (a slow one first) come back in order, and a HEAD
/// among them has its framing headers and no body.
#[test]
fn pipelining_and_head_keep_order_with_threads() {
    let s = Server::start(&["echo", "--workers", "1", "--threads", "4"]);
    let mut c = s.connect();
    send(
        &mut c,
        "GET /first?sleep=0.5 HTTP/1.1\r\nHost: t\r\n\r\n\
         HEAD /second HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /third HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
         GET /fourth HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r1 = c.read_response().unwrap();
    assert!(r1.body_str().contains("\"target\": \"/first?sleep=0.5\""));
    let r2 = c.read_head_response().unwrap();
    assert_eq!(r2.status, 200);
    assert!(r2.header("Content-Length").is_some(), "{:?}", r2.headers);
    let r3 = c.read_response().unwrap();
    assert!(
        r3.body_str().contains("\"path\": \"/third\""),
        "{}",
        r3.body_str()
    );
    assert!(r3.body_str().contains("aGVsbG8="));
    let r4 = c.read_response().unwrap();
    assert!(
        r4.body_str().contains("\"path\": \"/fourth\""),
        "{}",
        r4.body_str()
    );
    // HEAD's body would have shown up as garbage before the third response.
    assert_eq!(r3.status, 200);
}

/// A client that takes 10 s to send its body holds no thread: with a single
/// app thread and `--timeout 2`, other requests are answered all along (a
/// thread held by the upload would answer them only once it is complete,
/// after the client's read timeout), no timeout fires, and the upload
/// arrives exactly.
#[test]
fn a_slow_upload_never_holds_a_thread() {
    let s = Server::start(&[
        "echo",
        "--workers",
        "1",
        "--threads",
        "1",
        "-k",
        "gthread",
        "--timeout",
        "2",
    ]);
    let body: Vec<u8> = (0..10 * 64).map(|i| b'a' + (i % 26) as u8).collect();
    let mut up = s.connect();
    up.set_timeout(Some(Duration::from_secs(60)));
    send(
        &mut up,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
    );
    let t0 = Instant::now();
    for (i, piece) in body.chunks(64).enumerate() {
        up.write_all(piece).unwrap();
        // The pace of a slow client (one piece a second), not a wait for
        // the server: every second the single thread must still be free.
        let start = Instant::now();
        let r = get(&s.addr, &format!("/during{i}"))
            .unwrap_or_else(|e| panic!("request {i} not answered during the upload: {e}"));
        assert_eq!(r.status, 200);
        let spent = start.elapsed();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(spent));
    }
    // Several --timeout 2 periods: the upload's time is not app time.
    assert!(t0.elapsed() >= Duration::from_secs(9));
    let r = up.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", s.log_text());
    assert!(r.body_str().contains(&base64(&body)));
    assert!(!s.log_text().contains("WORKER TIMEOUT"), "{}", s.log_text());
}

/// A request past --timeout: its client gets a 504 with Connection: close,
/// the log names it as WORKER TIMEOUT does, the worker's other request in
/// flight is answered, and the worker is replaced by one that serves.
#[test]
fn a_request_past_the_timeout_gets_504_and_the_others_finish() {
    let s = Server::start(&[
        "echo",
        "--workers",
        "1",
        "--threads",
        "4",
        "--timeout",
        "2",
        "--graceful-timeout",
        "20",
    ]);
    let old = s.worker_pids();
    assert_eq!(old.len(), 1);
    // A kept-alive connection to the old worker, for a request in flight
    // while it is being replaced.
    let mut other = s.connect();
    other.set_timeout(Some(Duration::from_secs(30)));
    send(&mut other, &get_req("/warm"));
    assert_eq!(other.read_response().unwrap().status, 200);
    let mut stuck = s.connect();
    // The app sleeps 10 minutes: the 504 can only come from --timeout.
    stuck.set_timeout(Some(Duration::from_secs(60)));
    let t0 = Instant::now();
    send(&mut stuck, &get_req("/stuck?sleep=600"));
    let r = stuck
        .read_response()
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(r.status, 504, "{}", s.log_text());
    assert_eq!(r.header("Connection"), Some("close"));
    let waited = t0.elapsed();
    // Not before --timeout (the server's clock starts after ours; 100 ms
    // for its timer's rounding); no upper bound but the read timeout.
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    // The connection is closed after the 504.
    assert!(read_to_eof(&mut stuck, EOF_WITHIN).is_ok());
    assert!(
        wait_log(&s, "WORKER TIMEOUT", Duration::from_secs(30)),
        "{}",
        s.log_text()
    );
    let log = s.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("WORKER TIMEOUT"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&format!("WORKER TIMEOUT (pid:{})", old[0])) && line.contains("GET /stuck"),
        "{line}"
    );
    // The replacement is on its way: a request in flight on the old worker
    // meanwhile (well within --timeout, also on a loaded machine) is
    // answered in full.
    send(&mut other, &get_req("/other?sleep=0.3"));
    let r = other.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().contains("/other"));
    // Replaced: a new worker serves, and the old one is gone.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = s.worker_pids();
            !now.contains(&old[0]) && now.len() == 1
        }),
        "not replaced: {:?}\n{}",
        s.worker_pids(),
        s.log_text()
    );
    assert_eq!(get(&s.addr, "/after").unwrap().status, 200);
}

/// --max-requests with requests in flight on the threads: workers are
/// recycled under keep-alive load (20 ms requests, 8 clients on 2 workers x
/// 4 threads) and no request fails.
#[test]
fn max_requests_recycles_workers_with_threads_in_flight_losing_nothing() {
    let s = Server::start(&[
        "echo",
        "--workers",
        "2",
        "--threads",
        "4",
        "--max-requests",
        "40",
    ]);
    let first = wait_workers(s.pid(), 2);
    let load = Load::start_for(&s.addr, 8, "/?sleep=0.02", Duration::from_secs(90));
    let recycled = wait_until(Duration::from_secs(60), || {
        let now = s.worker_pids();
        !now.is_empty() && now.iter().all(|p| !first.contains(p))
    });
    let st = load.stop();
    assert!(
        recycled,
        "workers not recycled: {:?}\n{}",
        s.worker_pids(),
        s.log_text()
    );
    assert!(st.clean(), "{st:?}\n{}", s.log_text());
    // Both first workers served their 40 before they were replaced.
    assert!(st.ok >= 80, "{st:?}");
    assert!(st.reconnects > 0, "{st:?}");
}

/// A request parked for a thread gets the next free one before a newer
/// request: connection A holds the only thread with a pipelined request
/// behind it, B's request parks meanwhile; when A's first answer frees the
/// thread, B goes first (the access log's order is the answering order).
/// Driven among the turn's ready connections instead, A's pipelined request
/// took the thread and B went to the back again (seconds of wait under load).
#[test]
fn a_parked_request_gets_the_next_thread_before_a_newer_one() {
    let logs = TempDir::new("fifo");
    let access = logs.join("access.log");
    let s = Server::start(&[
        "echo",
        "--workers",
        "1",
        "-k",
        "gthread",
        "--access-logfile",
        access.to_str().unwrap(),
    ]);
    let (inside, gate) = (Mark::new(&s.dir, "hold"), Gate::new(&s.dir, "hold"));
    let mut a = s.connect();
    send(
        &mut a,
        &format!(
            "GET /hold?{}&{} HTTP/1.1\r\nHost: t\r\n\r\nGET /a2 HTTP/1.1\r\nHost: t\r\n\r\n",
            inside.param(),
            gate.param()
        ),
    );
    inside.wait();
    let mut b = s.connect();
    send(&mut b, &get_req("/b"));
    // The thread is held until /b is parked: the worker has read it (its
    // socket's receive queue is empty), not a guess of how long that takes.
    let (Addr::Tcp(server), Client::Tcp(bs)) = (&s.addr, &b) else {
        unreachable!()
    };
    let b_port = bs.local_addr().unwrap().port();
    assert!(
        wait_until(Duration::from_secs(20), || tcp_rx_queue(
            server.port(),
            b_port
        ) == Some(0)),
        "the worker never read /b"
    );
    gate.open();
    for _ in 0..2 {
        assert_eq!(a.read_response().unwrap().status, 200);
    }
    assert_eq!(b.read_response().unwrap().status, 200);
    let order = || {
        let log = std::fs::read_to_string(&access).unwrap_or_default();
        let at = |p: &str| log.find(&format!("GET {p} "));
        (at("/b"), at("/a2"))
    };
    assert!(wait_until(Duration::from_secs(30), || {
        let (b, a2) = order();
        b.is_some() && a2.is_some()
    }));
    let (b_at, a2_at) = order();
    assert!(
        b_at < a2_at,
        "the pipelined /a2 was answered before the parked /b:\n{}",
        std::fs::read_to_string(&access).unwrap()
    );
}
