//! A real nginx in front of ferricorn over loopback TCP, with the shipped
//! samples conf/nginx/ferricorn-tcp.conf and ferricorn-balanced.conf.
//!
//! Asserts: upstream keep-alive is really used (50 requests through nginx
//! cost ferricorn at most 4 TCP connections, against ~50 without the
//! `keepalive` directive, the control); with several instances, stopping one
//! (TERM) under load costs no request a non-200, nor does any GET after it;
//! errors come back as the configs document (ferricorn's 413 for a body over
//! its --limit-request-body, nginx's own 413 over client_max_body_size).

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

fn tcp_port(s: &Server) -> u16 {
    match &s.addr {
        Addr::Tcp(a) => a.port(),
        Addr::Unix(_) => unreachable!(),
    }
}

/// Send `n` sequential GETs through nginx; return how many distinct TCP
/// connections ferricorn's port saw during them.
fn connections_for(nginx: &Nginx, server: &Server, n: usize) -> usize {
    let port = tcp_port(server);
    let before = tcp_peer_ports(port);
    for i in 0..n {
        let r = nginx.get(&format!("/req/{i}"));
        assert_eq!(r.status, 200, "request {i}: {}", nginx.logs());
    }
    let after = tcp_peer_ports(port);
    after.difference(&before).count()
}

#[test]
fn upstream_keepalive_reuses_connections() {
    let server = Server::start(&["hello", "--workers", "2"]);
    let fills = [("PORT", tcp_port(&server).to_string())];
    let nginx = Nginx::start("ferricorn-tcp.conf", &fills);
    let used = connections_for(&nginx, &server, 50);
    eprintln!("with keepalive: 50 requests, {used} upstream connections");
    assert!(
        (1..=4).contains(&used),
        "50 requests through nginx used {used} upstream connections (keepalive 32)"
    );
    drop(nginx);

    // Control: the same without `keepalive` in the upstream block opens a
    // connection per request, so the count above really measures reuse.
    let nginx = Nginx::start_edited("ferricorn-tcp.conf", &fills, |t| {
        t.lines()
            .filter(|l| !l.trim_start().starts_with("keepalive"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let used = connections_for(&nginx, &server, 50);
    eprintln!("without keepalive: 50 requests, {used} upstream connections");
    assert!(
        used >= 45,
        "control without keepalive: expected ~50 connections, saw {used}"
    );
}

#[test]
fn over_limit_bodies_get_413_from_the_documented_side() {
    // ferricorn's limit (1000 B) below nginx's client_max_body_size (10m):
    // the configs call this a misconfiguration, but the answer must still be
    // a clean 413 (ferricorn's, passed through).
    let server = Server::start(&["echo", "--workers", "1", "--limit-request-body", "1000"]);
    let nginx = Nginx::start(
        "ferricorn-tcp.conf",
        &[("PORT", tcp_port(&server).to_string())],
    );
    let body = vec![b'x'; 5000];
    let mut req = format!(
        "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = nginx.request(&req);
    assert_eq!(r.status, 413, "{}\n{}", r.body_str(), nginx.logs());
    assert!(
        !r.body_str().contains("nginx"),
        "this 413 is ferricorn's: {}",
        r.body_str()
    );
    // Under the limit: fine, and the connection pool is still healthy.
    let r = nginx.request(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    // Over client_max_body_size (10m): nginx answers itself, from the
    // Content-Length alone (the body is never sent).
    let mut c = Client::connect(&nginx.addr()).unwrap();
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10485761\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 413);
    assert!(r.body_str().contains("nginx"), "{}", r.body_str());
}

#[test]
fn balanced_pool_survives_stopping_an_instance() {
    let logs = TempDir::new("balanced");
    let start = |name: &str| {
        Server::builder()
            .args(["hello", "--workers", "1", "--graceful-timeout", "5"])
            .arg("--access-logfile")
            .arg(logs.join(&format!("{name}.log")).display().to_string())
            .start()
    };
    let mut a = start("a");
    let b = start("b");
    let c = start("c");
    let nginx = Nginx::start(
        "ferricorn-balanced.conf",
        &[
            ("BACKEND_A", a.addr.bind_arg()),
            ("BACKEND_B", b.addr.bind_arg()),
            ("BACKEND_C", c.addr.bind_arg()),
        ],
    );
    for i in 0..30 {
        let r = nginx.get(&format!("/warm/{i}"));
        assert_eq!(r.status, 200, "{}", nginx.logs());
    }
    let count = |name: &str| {
        read_lines(&logs.join(&format!("{name}.log")))
            .iter()
            .filter(|l| l.contains("/warm/"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || count("a") > 0
            && count("b") > 0
            && count("c") > 0),
        "least_conn should spread 30 requests over the 3 instances: a={} b={} c={}",
        count("a"),
        count("b"),
        count("c")
    );

    // Stop instance A gracefully while 4 keep-alive clients load nginx.
    let load = Load::start_for(&nginx.addr(), 4, "/load", Duration::from_secs(120));
    load.wait_more(30);
    a.signal(nix::sys::signal::Signal::SIGTERM);
    let code = a.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "instance A did not stop:\n{}", a.log_text());
    load.wait_more(30); // served by B and C alone
    let stats = load.stop();
    eprintln!("load while instance A stopped: {stats:?}");
    assert!(
        stats.clean() && stats.ok > 0,
        "requests failed while an instance stopped: {stats:?}\n{}",
        nginx.logs()
    );

    // Every GET afterwards is still a 200 (nginx retries on B or C).
    for i in 0..40 {
        let r = nginx.get(&format!("/after/{i}"));
        assert_eq!(r.status, 200, "GET {i} after the stop:\n{}", nginx.logs());
    }
    let after = |name: &str| {
        read_lines(&logs.join(&format!("{name}.log")))
            .iter()
            .filter(|l| l.contains("/after/"))
            .count()
    };
    assert!(wait_until(Duration::from_secs(30), || after("b")
        + after("c")
        == 40));
    assert_eq!(after("a"), 0);
}
