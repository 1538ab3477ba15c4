//! A worker answers the connections that are ready in one turn and writes
//! their responses together (event_loop's "Writing in bursts"). What must
//! hold: every connection still gets its own responses, in order, and a slow
//! app's finished response is written before the next slow call, not held
//! for the rest of the turn.
mod support;
use std::io::Write;
use support::*;

#[test]
fn many_ready_connections_each_get_their_own_responses_in_order() {
    const CONNS: usize = 48;
    const PIPELINED: usize = 3;
    let s = Server::start(&["echo", "--workers", "1"]);
    let mut clients: Vec<Client> = (0..CONNS).map(|_| s.connect()).collect();
    // Keep the worker in the app (at a gate) until every request below is
    // queued, so that it finds them all when it next looks: one turn, many
    // ready connections, on a machine of any speed.
    let mut blocker = s.connect();
    let (inside, gate) = (Mark::new(&s.dir, "blocker"), Gate::new(&s.dir, "blocker"));
    blocker
        .write_all(
            format!(
                "GET /?{}&{} HTTP/1.1\r\nHost: h\r\n\r\n",
                inside.param(),
                gate.param()
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
    gate.open();
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
    const SLOW_S: f64 = 1.0;
    let s = Server::start(&["echo", "--workers", "1"]);
    let mut blocker = s.connect();
    let mut a = s.connect();
    let mut b = s.connect();
    let (inside, gate) = (Mark::new(&s.dir, "blocker"), Gate::new(&s.dir, "blocker"));
    blocker
        .write_all(
            format!(
                "GET /?{}&{} HTTP/1.1\r\nHost: h\r\n\r\n",
                inside.param(),
                gate.param()
            )
            .as_bytes(),
        )
        .unwrap();
    inside.wait();
    // Both arrive while the worker is busy (held at the gate until they
    // are queued): its next turn has both ready.
    let marks = [Mark::new(&s.dir, "a"), Mark::new(&s.dir, "b")];
    for (c, m) in [&mut a, &mut b].into_iter().zip(&marks) {
        let req = format!(
            "GET /?sleep={SLOW_S}&{} HTTP/1.1\r\nHost: h\r\n\r\n",
            m.param()
        );
        c.write_all(req.as_bytes()).unwrap();
    }
    gate.open();
    assert_eq!(blocker.read_response().unwrap().status, 200);

    // Once the second slow call has begun, the first one's response must
    // already be written: it sits in its client's receive queue. Held for
    // the end of the turn, it would only come after the second call. (No
    // clock in the check: on a loaded machine only a check that comes after
    // the whole second call could miss a regression, never fail a good build.)
    for m in &marks {
        m.wait();
    }
    let began = |m: &Mark| std::fs::metadata(&m.0).unwrap().modified().unwrap();
    let (first, second) = if began(&marks[0]) <= began(&marks[1]) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (Client::Tcp(t), Addr::Tcp(srv)) = (&*first, &s.addr) else {
        unreachable!()
    };
    let queued = tcp_rx_queue(t.local_addr().unwrap().port(), srv.port());
    assert!(
        queued.is_some_and(|n| n > 0),
        "the first slow call's response was not written before the second call began \
         (receive queue {queued:?})"
    );
    for c in [first, second] {
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}
