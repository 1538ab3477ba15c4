//! Fuzz `ferricorn::http::parse_head`: it must never panic, whatever the
//! bytes and the limits.
//!
//! Input layout: byte 0 picks one of the `LIMITS` below; the rest is the
//! buffer handed to `parse_head`.
//!
//! Checked on every input:
//! * no panic (and, under cargo-fuzz, no sanitizer report / timeout / OOM);
//! * `Ok(Some((head, n)))` => `0 < n <= buf.len()`, and parsing `buf[..n]`
//!   alone gives the same `n` (a complete head does not depend on the bytes
//!   after it, i.e. pipelined data cannot change how a head is framed);
//! * `path` + `query` are taken from `target` (never invented).
#![no_main]

use ferricorn::http::{Limits, parse_head};
use libfuzzer_sys::fuzz_target;

/// (request_line, fields, field_size, body); 0 = "default/unlimited" per `Limits`.
const LIMITS: &[(usize, usize, usize, u64)] = &[
    (4094, 100, 8190, 1 << 30), // ferricorn's defaults
    (0, 0, 0, 0),               // every "0 means default/unlimited" path (heap header array)
    (16, 2, 16, 10),            // tiny: limit errors on almost everything
    (1, 1, 1, 1),               // smallest non-zero
    (8190, 64, 0, 0),           // exactly the stack header array
    (8190, 65, 0, 0),           // one more: the heap fallback
    (64, 8, 32, 1),
    (usize::MAX, usize::MAX, usize::MAX, u64::MAX), // overflow in the head-size arithmetic
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let (request_line, fields, field_size, body) = LIMITS[sel as usize % LIMITS.len()];
    // usize::MAX fields would make the heap fallback allocate without bound;
    // that is a configuration the settings table refuses (1..=32768).
    let fields = fields.min(32768);
    let limits = Limits {
        request_line,
        fields,
        field_size,
        body,
    };
    if let Ok(Some((head, n))) = parse_head(buf, &limits) {
        assert!(n > 0 && n <= buf.len(), "n = {n}, len = {}", buf.len());
        match parse_head(&buf[..n], &limits) {
            Ok(Some((_, n2))) => assert_eq!(n2, n, "re-parse of buf[..n] gives another length"),
            other => panic!("re-parse of buf[..{n}] gives {other:?}"),
        }
        assert!(head.target.contains(head.path.as_str()) || head.path == "/" || head.path.is_empty());
    }
});
