//! The per-request cost of issue 16's accounting, no sockets: what a worker
//! adds to every request (request id, queue time, counters and histograms in
//! shared memory). Run: `cargo bench --bench observe`. Each case is calibrated to
//! about 0.2 s per sample; the median of 7 samples is printed.
#![cfg_attr(test, allow(dead_code))]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferricorn::{reqmeta, scoreboard};

const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(200);

fn bench(name: &str, mut f: impl FnMut()) {
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let e = t.elapsed();
        if e >= Duration::from_millis(10) {
            let per = e.as_nanos() as f64 / iters as f64;
            iters = ((SAMPLE_TIME.as_nanos() as f64 / per) as u64).max(1);
            break;
        }
        iters *= 2;
    }
    let mut ns: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    ns.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<44} {:8.1} ns/op (min {:8.1})",
        ns[SAMPLES / 2],
        ns[0]
    );
}

fn main() {
    // As in a worker: the shared table mapped, this process in row 0.
    scoreboard::table(4).expect("mmap");
    scoreboard::enter_worker(0);
    reqmeta::configure("X-Request-Id");
    let plain: Vec<(String, Vec<u8>)> = vec![
        ("Host".into(), b"localhost:8080".to_vec()),
        ("User-Agent".into(), b"wrk".to_vec()),
    ];
    let mut proxied = plain.clone();
    proxied.push(("X-Request-Id".into(), b"0123456789abcdef".to_vec()));
    proxied.push(("X-Request-Start".into(), b"t=1764000000.123".to_vec()));

    bench("counters only (count_request)", || {
        scoreboard::count_request(black_box("GET"), 200, 7, 11, 130);
    });
    bench("generate() alone", || {
        black_box(reqmeta::generate());
    });
    bench("set_current + clear", || {
        reqmeta::set_current(Some(black_box("0123456789abcdef0123456789abcdef")));
        reqmeta::set_current(None);
    });
    bench("scoreboard::set_request_id", || {
        scoreboard::set_request_id(black_box("0123456789abcdef0123456789abcdef"));
    });
    bench("request id generated (enter + leave)", || {
        black_box(reqmeta::enter(black_box(&plain), false));
        reqmeta::leave();
    });
    bench("id passed through + X-Request-Start (trusted)", || {
        black_box(reqmeta::enter(black_box(&proxied), true));
        reqmeta::leave();
    });
    bench("all of it, per hello request", || {
        let m = reqmeta::enter(black_box(&plain), true);
        scoreboard::count_request(black_box("GET"), 200, 7, 11, 130);
        reqmeta::leave();
        black_box(m);
    });
}
