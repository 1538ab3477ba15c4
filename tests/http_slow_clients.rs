//! Clients that are slow on purpose: one that never reads its responses must
//! not grow the worker's memory (write backpressure), and a thousand idle or
//! dribbling connections must not keep one worker from serving a normal
//! client promptly.
mod support;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

fn tcp_addr(s: &Server) -> SocketAddr {
    match &s.addr {
        Addr::Tcp(a) => *a,
        Addr::Unix(_) => unreachable!(),
    }
}

#[test]
fn client_that_never_reads_is_held_back_and_worker_memory_stays_bounded() {
    const BODY: usize = 64 * 1024;
    const TRY_TOTAL: usize = 200 << 20;
    const MAX_WRITTEN: usize = 64 << 20;
    const MAX_RSS_KIB: u64 = 64 * 1024;

    let s = Server::start(&["echo", "--workers", "1"]);
    let worker = s.worker_pids()[0];
    let rss_before = rss_kib(worker).unwrap();

    // A small receive buffer on our side, so the kernel holds little of what
    // the server sends and the server's own buffering is what is tested.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 * 1024).unwrap();
    sock.connect(&tcp_addr(&s).into()).unwrap();
    let stream: TcpStream = sock.into();

    let mut req =
        format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'z', BODY));
    let req_len = req.len();

    // Push requests without reading, until no byte has been accepted for a
    // second (the server stopped reading: its output is past the high-water
    // mark and the socket buffers are full) or TRY_TOTAL bytes went out (or
    // 15 s passed: the failure case stays bounded too).
    let mut w = stream.try_clone().unwrap();
    w.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut written = 0usize;
    let mut last_progress = Instant::now();
    let mut off = 0;
    while written < TRY_TOTAL
        && last_progress.elapsed() < Duration::from_secs(1)
        && started.elapsed() < Duration::from_secs(15)
    {
        match w.write(&req[off..]) {
            Ok(n) => {
                written += n;
                off = (off + n) % req_len;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write failed: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    let rss = rss_kib(worker).unwrap();
    eprintln!(
        "wrote {} KiB of {} KiB tried in {:?}; worker RSS {rss_before} -> {rss} KiB",
        written >> 10,
        TRY_TOTAL >> 10,
        started.elapsed()
    );
    assert!(
        written < MAX_WRITTEN,
        "the server kept reading from a client that never reads: {written} bytes accepted"
    );
    assert!(rss < MAX_RSS_KIB, "worker RSS grew to {rss} KiB");
    assert!(alive(worker));

    // Now read: every complete request is answered, in order, in full.
    let mut c = Client::Tcp(stream);
    let complete = written / req_len;
    assert!(complete > 0);
    for i in 0..complete {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("response {i} of {complete}: {e}"));
        assert_eq!(r.status, 200, "response {i}");
        // 64 KiB of 'z' is 87382 base64 characters plus the JSON around them.
        assert!(
            r.body.len() > 87_382,
            "response {i}: {} bytes",
            r.body.len()
        );
        assert!(r.body.starts_with(b"{\"method\": \"POST\""));
    }
}

#[test]
fn a_thousand_dribbling_connections_do_not_starve_a_normal_client() {
    const N: usize = 1000;
    // The test holds N sockets and so does the server (it inherits our limit).
    let limit = raise_nofile(4 * N as u64 + 256);
    assert!(
        limit >= 2 * N as u64 + 100,
        "RLIMIT_NOFILE too low: {limit}"
    );
    let s = Server::start(&[
        "hello",
        "--workers",
        "1",
        "--worker-connections",
        "2000",
        // Beyond the whole test on a loaded machine: every held connection
        // must still be there to finish its request at the end.
        "--header-timeout",
        "120",
    ]);
    let addr = tcp_addr(&s);

    let prefix = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|_| {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            c.set_nodelay(true).unwrap();
            c
        })
        .collect();

    // Connected is not accepted: wait until the worker holds all N (its open
    // descriptors), so the probes below measure serving, not the drain of
    // the listen backlog.
    let worker = s.worker_pids()[0];
    let fds = || std::fs::read_dir(format!("/proc/{worker}/fd")).map_or(0, |d| d.count());
    let accept_start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || fds() >= N),
        "worker holds only {} descriptors",
        fds()
    );
    eprintln!("{N} connections accepted in {:?}", accept_start.elapsed());

    // Half of them dribble one byte every 200 ms; the other half stay idle
    // with nothing sent.
    let stop = Arc::new(AtomicBool::new(false));
    let dribbled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dribbler = {
        let (stop, dribbled) = (stop.clone(), dribbled.clone());
        let mut dribbling: Vec<TcpStream> = conns.drain(..N / 2).collect();
        std::thread::spawn(move || {
            let mut pos = 0;
            while !stop.load(Ordering::Relaxed) && pos < prefix.len() {
                for c in dribbling.iter_mut() {
                    c.write_all(&prefix[pos..pos + 1]).unwrap();
                }
                pos += 1;
                dribbled.store(pos, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
            (dribbling, pos)
        })
    };

    // A normal client, on new connections and on one kept-alive connection,
    // is answered promptly throughout: at least 10 probes, and on until the
    // dribblers have sent 10 bytes each (counts, not a duration: how much
    // fits in a second depends on the machine). A starved client would wait
    // for the 120 s header timeout of the connections ahead of it; 5 s is
    // far from that and far above a loaded machine's scheduling delays.
    let mut kept = s.connect();
    let mut worst = Duration::ZERO;
    let mut worst_connect = Duration::ZERO;
    let mut probes = 0;
    let started = Instant::now();
    while probes < 10 || dribbled.load(Ordering::SeqCst) < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{probes} probes, {} bytes dribbled in 120 s",
            dribbled.load(Ordering::SeqCst)
        );
        let t = Instant::now();
        let mut c = s.connect();
        let connect_took = t.elapsed();
        c.set_timeout(Some(Duration::from_secs(10)));
        c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let r = c.read_response().expect("normal client not answered");
        assert_eq!(r.body, b"Hello, World!");
        kept.write_all(b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        assert_eq!(kept.read_response().unwrap().status, 200);
        if t.elapsed() > worst {
            worst = t.elapsed();
            worst_connect = connect_took;
        }
        probes += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        worst < Duration::from_secs(5),
        "slowest probe took {worst:?} (connect: {worst_connect:?})"
    );
    eprintln!("{probes} probes, slowest {worst:?}");

    // All N connections were being held (not dropped): finish every request
    // and each one is answered.
    stop.store(true, Ordering::Relaxed);
    let (dribbling, pos) = dribbler.join().unwrap();
    assert!(pos >= 10, "dribbled only {pos} bytes");
    let mut finished = 0;
    for (i, c) in dribbling.into_iter().chain(conns).enumerate() {
        let mut c = Client::Tcp(c);
        let sent = if i < N / 2 { pos } else { 0 };
        let mut rest = prefix[sent..].to_vec();
        rest.extend_from_slice(b"x\r\nConnection: close\r\n\r\n");
        c.write_all(&rest).unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("held connection {i} not answered: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
        finished += 1;
    }
    assert_eq!(finished, N);
}
