//! A worker answers the connections that are ready in one turn and writes
//! their responses together (event_loop's "Writing in bursts"). What must
//! hold: every connection still gets its own responses, in order, and a slow
//! app's finished response is written before the next slow call, not held
//! for the rest of the turn.
mod support;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn many_ready_connections_each_get_their_own_responses_in_order() {
    const CONNS: usize = 48;
    const PIPELINED: usize = 3;
    let s = Server::start(&["echo", "--workers", "1"]);
    let mut clients: Vec<Client> = (0..CONNS).map(|_| s.connect()).collect();
    // Keep the worker busy for a moment so that every request below is
    // already queued when it next looks: one turn, many ready connections.
    let mut blocker = s.connect();
    let inside = Mark::new(&s.dir, "blocker");
    blocker
        .write_all(
            format!(
                "GET /?sleep=0.5&{} HTTP/1.1\r\nHost: h\r\n\r\n",
                inside.param()
            )
            .as_bytes(),
        )
        .unwrap();
    inside.wait();
    for (c, client) in clients.iter_mut().enumerate() {
        let mut raw = Vec::new();
        for r in 0..PIPELINED {
            raw.extend_from_slice(format!("GET /c{c}/r{r} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
        client.write_all(&raw).unwrap();
    }
    assert_eq!(blocker.read_response().unwrap().status, 200);
    for (c, client) in clients.iter_mut().enumerate() {
        for r in 0..PIPELINED {
            let resp = client.read_response().unwrap();
            assert_eq!(resp.status, 200, "connection {c} request {r}");
            let want = format!("/c{c}/r{r}");
            let body = resp.body_str();
            assert!(
                body.contains(&format!("\"{want}\"")),
                "connection {c} request {r}: expected the echo of {want}, got {body}"
            );
        }
    }
}

#[test]
fn a_slow_apps_response_is_written_before_its_next_call() {
    const SLOW_S: f64 = 0.6;
    let s = Server::start(&["echo", "--workers", "1"]);
    let mut blocker = s.connect();
    let mut a = s.connect();
    let mut b = s.connect();
    let inside = Mark::new(&s.dir, "blocker");
    blocker
        .write_all(
            format!(
                "GET /?sleep=0.5&{} HTTP/1.1\r\nHost: h\r\n\r\n",
                inside.param()
            )
            .as_bytes(),
        )
        .unwrap();
    inside.wait();
    // Both arrive while the worker is busy: its next turn has both ready.
    let req = format!("GET /?sleep={SLOW_S} HTTP/1.1\r\nHost: h\r\n\r\n");
    a.write_all(req.as_bytes()).unwrap();
    b.write_all(req.as_bytes()).unwrap();
    assert_eq!(blocker.read_response().unwrap().status, 200);
    let t0 = Instant::now();

    // Whichever the worker took first is written when it is done, about
    // SLOW_S after the blocker; the other one SLOW_S later. Held for the
    // end of the turn, both would come at 2 x SLOW_S.
    let (tx, rx) = std::sync::mpsc::channel();
    for (name, mut c) in [("a", a), ("b", b)] {
        let tx = tx.clone();
        thread::spawn(move || {
            let resp = c.read_response();
            tx.send((name, resp.map(|r| r.status), Instant::now()))
                .unwrap();
        });
    }
    let (n1, s1, t1) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let (n2, s2, t2) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(s1.unwrap(), 200, "{n1}");
    assert_eq!(s2.unwrap(), 200, "{n2}");
    let first = t1.duration_since(t0).as_secs_f64();
    let gap = t2.duration_since(t1).as_secs_f64();
    assert!(
        first < 1.5 * SLOW_S,
        "the first slow response came {first:.3}s after the blocker's, \
         expected about {SLOW_S}s: it was held back for the next app call"
    );
    assert!(
        gap > 0.5 * SLOW_S,
        "the two slow responses came {gap:.3}s apart: not one after the other"
    );
}
