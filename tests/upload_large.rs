//! Large and slow request bodies.
//!
//! - A 1 GiB upload streamed through a real nginx (conf/nginx/uploads.conf,
//!   `/upload/stream/`: proxy_request_buffering off) to ferricorn: the
//!   worker's RSS stays under 32 MiB all along (the body is spooled to an
//!   unlinked file) and the answer is 200.
//! - A body over --limit-request-body gets 413 from the head alone, before a
//!   byte of the body is sent (directly, and through nginx's streamed location).
//! - A slow upload does not hold up the worker: another client's `GET /` is
//!   answered within 200 ms while it trickles in.
//! - Spooled bodies (past --body-buffer-size) arrive intact, Content-Length
//!   and chunked, and the spool files are never visible in --tmp-upload-dir.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// The 1 GiB upload keeps both cores busy; the latency test must not run
/// beside it (the test harness runs tests in parallel).
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_path(s: &Server) -> String {
    match &s.addr {
        Addr::Unix(p) => p.display().to_string(),
        Addr::Tcp(_) => unreachable!(),
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn echoed_body_base64(r: &HttpResponse) -> String {
    let text = r.body_str();
    text.split("\"body_base64\": \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no body_base64 in {text:.200}"))
        .to_string()
}

#[test]
fn one_gib_streamed_through_nginx_keeps_the_worker_small() {
    // 1 GiB: the whole body, generated on the fly (no 1 GiB file is written
    // by the test; ferricorn spools it to an unlinked file, which is the
    // point). About 5-15 s on the 2-core CI machine with a debug build.
    const SIZE: u64 = 1 << 30;
    let _serial = heavy();
    let spool = TempDir::new("spool");
    let server = Server::builder()
        .args(["hello", "--workers", "1", "--limit-request-body", "2g"])
        .arg("--tmp-upload-dir")
        .arg(spool.path().display().to_string())
        .unix()
        .start();
    let nginx = Nginx::start("uploads.conf", &[("SOCKET", unix_path(&server))]);
    let worker = wait_workers(server.pid(), 1)[0];

    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(worker) {
                    max_rss.fetch_max(kib, Ordering::Relaxed);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };

    let started = Instant::now();
    let mut c = Client::connect(&nginx.addr()).unwrap();
    c.set_timeout(Some(Duration::from_secs(60)));
    c.write_all(
        format!(
            "POST /upload/stream/big HTTP/1.1\r\nHost: localhost\r\n\
             Content-Length: {SIZE}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let chunk = random_bytes(256 * 1024, 7);
    let mut sent = 0u64;
    while sent < SIZE {
        let n = chunk.len().min((SIZE - sent) as usize);
        c.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("upload cut at {sent} bytes: {e}\n{}", nginx.logs()));
        sent += n as u64;
        // A bound for a hung upload only (a stalled write fails sooner, at
        // the 60 s write timeout): seconds on an idle machine, many more
        // on a loaded one.
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "upload too slow: {sent} bytes in 600 s"
        );
    }
    let r = c.read_response().unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let max_kib = max_rss.load(Ordering::Relaxed);
    eprintln!(
        "1 GiB upload through nginx: {:.1} s, worker max RSS {} KiB over {samples} samples",
        elapsed.as_secs_f64(),
        max_kib
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), nginx.logs());
    assert_eq!(r.body_str(), "Hello, World!");
    assert!(samples > 10, "too few RSS samples ({samples})");
    assert!(
        max_kib < 32 * 1024,
        "worker RSS reached {max_kib} KiB during a 1 GiB upload"
    );
    // The spool file was unlinked at creation: nothing is left in the dir.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[test]
fn over_limit_body_is_refused_from_the_head() {
    let server = Server::builder()
        .args(["echo", "--workers", "1", "--limit-request-body", "1000"])
        .unix()
        .start();
    // Directly: no body byte is sent, the 413 arrives anyway.
    let mut c = server.connect();
    c.write_all(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    // Never sent, so a server waiting for it would never answer (the
    // client's read timeout fails the test): no clock needed.
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("Connection"), Some("close"));

    // Through nginx's streamed location (its own limit is 1g): nginx passes
    // the head on at once and ferricorn's 413 comes back, again before the
    // body is sent.
    let nginx = Nginx::start("uploads.conf", &[("SOCKET", unix_path(&server))]);
    let mut c = Client::connect(&nginx.addr()).unwrap();
    c.write_all(
        b"POST /upload/stream/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
    )
    .unwrap();
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.logs()));
    assert_eq!(r.status, 413, "{}", r.body_str());
    assert!(
        !r.body_str().contains("nginx"),
        "ferricorn's 413: {}",
        r.body_str()
    );
}

#[test]
fn slow_upload_does_not_block_the_worker() {
    let _serial = heavy();
    let server = Server::start(&["echo", "--workers", "1"]);
    let addr = server.addr.clone();
    const PIECES: usize = 60; // 1 KiB every 50 ms
    // The uploader sends half of the body at a slow client's pace, then
    // stops until the test has made its GETs, then sends the rest: the GETs
    // run while the body is incomplete, however fast or slow the machine,
    // and a worker that blocked reading it would never answer them (the
    // client's read timeout fails the test).
    let sent = Arc::new(AtomicU64::new(0));
    let resume = Arc::new(AtomicBool::new(false));
    let (sent_by_uploader, resume_uploader) = (sent.clone(), resume.clone());
    let uploader = std::thread::spawn(move || {
        let mut c = Client::connect(&addr).unwrap();
        c.set_timeout(Some(Duration::from_secs(60)));
        c.write_all(
            format!(
                "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                PIECES * 1024
            )
            .as_bytes(),
        )
        .unwrap();
        let piece = [b'z'; 1024];
        for i in 0..PIECES {
            if i == PIECES / 2 {
                // Bounded, so that a test that failed meanwhile ends.
                wait_until(Duration::from_secs(120), || {
                    resume_uploader.load(Ordering::SeqCst)
                });
            }
            c.write_all(&piece).unwrap();
            sent_by_uploader.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
        c.read_response().unwrap()
    });
    // The upload is under way (the worker holds a half-received body).
    assert!(wait_until(Duration::from_secs(20), || sent
        .load(Ordering::SeqCst)
        >= 2));
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        let r = get(&server.addr, "/")
            .unwrap_or_else(|e| panic!("GET {i} not answered during the upload: {e}"));
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = sent.load(Ordering::SeqCst);
    resume.store(true, Ordering::SeqCst);
    let r = uploader.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(echoed_body_base64(&r), base64(&[b'z'; PIECES * 1024]));
    eprintln!("10 GETs during the slow upload ({during} of {PIECES} KiB sent), slowest {worst:?}");
    assert!(
        (during as usize) < PIECES,
        "the upload was complete before the GETs ended"
    );
}

#[test]
fn spooled_bodies_arrive_intact() {
    let spool = TempDir::new("spool64k");
    let server = Server::builder()
        .args(["echo", "--workers", "1", "--body-buffer-size", "64k"])
        .arg("--tmp-upload-dir")
        .arg(spool.path().display().to_string())
        .start();
    let body = random_bytes(3 << 20, 42);
    let want = base64(&body);

    // Content-Length, written in odd-sized pieces.
    let mut c = server.connect();
    c.write_all(
        format!(
            "POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for piece in body.chunks(100_003) {
        c.write_all(piece).unwrap();
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        echoed_body_base64(&r) == want,
        "Content-Length body differs"
    );

    // Chunked, with chunks straddling the 64 KiB spill point.
    let mut c = server.connect();
    c.write_all(
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for piece in body.chunks(70_001) {
        c.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        c.write_all(piece).unwrap();
        c.write_all(b"\r\n").unwrap();
    }
    c.write_all(b"0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(echoed_body_base64(&r) == want, "chunked body differs");
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool files must be unlinked"
    );
}
