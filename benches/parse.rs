//! Micro-benchmarks of the HTTP hot path: `parse_head` and `write_head`
//! (plus the chunked body decoder), no sockets.
//!
//! Needs in Cargo.toml:
//! ```toml
//! [[bench]]
//! name = "parse"
//! harness = false
//! ```
//! Run: `cargo bench --bench parse` (optionally `-- FILTER` to run only the
//! cases whose name contains FILTER). Each case is calibrated to about
//! 0.2 s per sample; 7 samples are taken and the median and the minimum
//! ns/op are printed.
// Under `cargo test --benches` without `harness = false` libtest supplies main.
#![cfg_attr(test, allow(dead_code))]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferricorn::http::body::Decoded;
use ferricorn::http::{
    BodyDecoder, Framing, Limits, ResponseFraming, Version, parse_head, write_head,
};

const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(200);

/// Time `f` and print ns/op (median and min over SAMPLES samples).
fn bench(name: &str, filter: Option<&str>, bytes_per_op: Option<usize>, mut f: impl FnMut()) {
    if filter.is_some_and(|flt| !name.contains(flt)) {
        return;
    }
    // Calibrate: double the iteration count until one batch takes >= 10 ms.
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
    let med = ns[SAMPLES / 2];
    let extra = match bytes_per_op {
        Some(b) => format!("  {:8.0} MB/s", b as f64 / med * 1e3),
        None => String::new(),
    };
    println!(
        "{name:<34} {med:9.1} ns/op (min {:9.1}, {iters} iters x {SAMPLES}){extra}",
        ns[0]
    );
}

/// ferricorn's default limits (`--limit-request-line 4094`,
/// `--limit-request-fields 100`, `--limit-request-field_size 8190`, body 1 GiB).
fn default_limits() -> Limits {
    Limits {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
        body: 1 << 30,
        allow_connect: false,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other non-flag argument is a filter.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let filter = filter.as_deref();
    let limits = default_limits();

    // What wrk sends for `wrk http://127.0.0.1:8080/`.
    let wrk: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
    // A typical browser request behind a proxy (13 fields, ~700 bytes).
    let browser: &[u8] = b"GET /articles/2024/some-slug?page=2&sort=new HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/articles/2024/\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
X-Forwarded-Proto: https\r\n\
X-Request-Start: t=1700000000.123\r\n\
Priority: u=0, i\r\n\r\n";
    let post: &[u8] =
        b"POST /api/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n";
    // Sanity: each input parses completely.
    for (name, input) in [("wrk", wrk), ("browser", browser), ("post", post)] {
        match parse_head(input, &limits) {
            Ok(Some((_, n))) => assert_eq!(n, input.len(), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }

    println!("ferricorn http micro-benchmarks (median of {SAMPLES} samples)");
    bench("parse_head wrk GET (40 B)", filter, Some(wrk.len()), || {
        let r = parse_head(black_box(wrk), black_box(&limits));
        black_box(r.ok());
    });
    bench(
        "parse_head browser GET (~700 B)",
        filter,
        Some(browser.len()),
        || {
            let r = parse_head(black_box(browser), black_box(&limits));
            black_box(r.ok());
        },
    );
    bench(
        "parse_head POST + Content-Length",
        filter,
        Some(post.len()),
        || {
            let r = parse_head(black_box(post), black_box(&limits));
            black_box(r.ok());
        },
    );
    let partial = &browser[..browser.len() / 2];
    bench("parse_head browser, incomplete", filter, None, || {
        let r = parse_head(black_box(partial), black_box(&limits));
        black_box(r.ok());
    });

    let date = b"Wed, 25 Nov 2026 12:00:00 GMT";
    let hello_headers = vec![("Content-Type".to_string(), b"text/plain".to_vec())];
    let mut out = Vec::with_capacity(512);
    bench("write_head hello (200, 1 header)", filter, None, || {
        out.clear();
        write_head(
            &mut out,
            black_box(Version::Http11),
            black_box(200),
            black_box(&hello_headers),
            ResponseFraming::Length(13),
            true,
            black_box(date),
        );
        black_box(&out);
    });
    let app_headers: Vec<(String, Vec<u8>)> = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "private, max-age=0"),
        (
            "Set-Cookie",
            "session=0123456789abcdef; Path=/; HttpOnly; Secure",
        ),
        ("X-Frame-Options", "DENY"),
        ("Vary", "Accept-Encoding"),
        ("Content-Length", "1234"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect();
    bench("write_head app (200, 6 headers)", filter, None, || {
        out.clear();
        write_head(
            &mut out,
            black_box(Version::Http11),
            black_box(200),
            black_box(&app_headers),
            ResponseFraming::Chunked,
            false,
            black_box(date),
        );
        black_box(&out);
    });

    // 64 KiB body in 4 KiB chunks, decoded from one buffer.
    let mut chunked = Vec::new();
    for _ in 0..16 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'x'; 4096]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut body = Vec::with_capacity(1 << 16);
    let mut trailers = Vec::new();
    bench(
        "BodyDecoder chunked 64 KiB/4 KiB",
        filter,
        Some(chunked.len()),
        || {
            body.clear();
            let mut d = BodyDecoder::new(Framing::Chunked);
            let r = d.decode(black_box(&chunked), &mut body, &mut trailers, 0);
            assert!(matches!(r, Ok(Decoded { done: true, .. })));
            black_box(&body);
        },
    );
}
