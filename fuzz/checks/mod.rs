//! What each fuzz target checks, as plain functions over the input bytes.
//!
//! Shared by the libFuzzer targets (`fuzz_targets/*.rs`, nightly or
//! coverage-instrumented builds) and by `tests/fuzz_replay.rs`, which feeds
//! every file of `fuzz/seeds/<target>/` and `fuzz/corpus/<target>/` through
//! the same function on the stable toolchain, in `cargo test`. A check fails
//! by panicking.

// Each fuzz binary uses one of the checks; the replay test uses them all.
#![allow(dead_code)]

use ferricorn::http::{BodyDecoder, Framing, Limits, ParseError, parse_head};
use ferricorn::ws::{self, Incoming, Message, Violation};

/// A check: panics if the input shows a bug.
pub type Check = fn(&[u8]);

/// The targets: name (= directory under `seeds/` and `corpus/`) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("parse_head", parse_head_input),
    ("body", body_input),
    ("ws_frames", ws_frames_input),
];

/// (request_line, fields, field_size, body, allow_connect); 0 = "default/unlimited" per `Limits`.
const LIMITS: &[(usize, usize, usize, u64, bool)] = &[
    (4094, 100, 8190, 1 << 30, false), // ferricorn's defaults
    (0, 0, 0, 0, true),                // every "0 means default/unlimited" path (heap header array)
    (16, 2, 16, 10, false),            // tiny: limit errors on almost everything
    (1, 1, 1, 1, true),                // smallest non-zero
    (8190, 64, 0, 0, false),           // exactly the stack header array
    (8190, 65, 0, 0, true),            // one more: the heap fallback
    (64, 8, 32, 1, false),
    (usize::MAX, usize::MAX, usize::MAX, u64::MAX, true), // overflow in the head-size arithmetic
];

/// `parse_head` on arbitrary bytes. Byte 0 picks one of `LIMITS`; the rest is
/// the buffer. Checked: no panic; `Ok(Some((head, n)))` => `0 < n <= len`, and
/// parsing `buf[..n]` alone gives the same `n` (pipelined data cannot change
/// how a head is framed); `path` + `query` come from `target` (never
/// invented); the target is ASCII (raw `0x80..=0xFF` is a 400); CONNECT only
/// gets through when allowed.
pub fn parse_head_input(data: &[u8]) {
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let (request_line, fields, field_size, body, allow_connect) =
        LIMITS[sel as usize % LIMITS.len()];
    // usize::MAX fields would make the heap fallback allocate without bound;
    // that is a configuration the settings table refuses (1..=32768).
    let fields = fields.min(32768);
    let limits = Limits {
        request_line,
        fields,
        field_size,
        body,
        allow_connect,
    };
    if let Ok(Some((head, n))) = parse_head(buf, &limits) {
        assert!(n > 0 && n <= buf.len(), "n = {n}, len = {}", buf.len());
        match parse_head(&buf[..n], &limits) {
            Ok(Some((_, n2))) => {
                assert_eq!(n2, n, "re-parse of buf[..n] gives another length")
            }
            other => panic!("re-parse of buf[..{n}] gives {other:?}"),
        }
        assert!(
            head.target.contains(head.path.as_str()) || head.path == "/" || head.path.is_empty()
        );
        assert!(head.target.is_ascii(), "non-ASCII target {:?}", head.target);
        assert!(allow_connect || head.method != "CONNECT");
    }
}

type Trailers = Vec<(String, Vec<u8>)>;

#[derive(Debug, PartialEq)]
enum Outcome {
    Err(ParseError),
    Ok {
        body: Vec<u8>,
        trailers: Trailers,
        consumed: usize,
        done: bool,
    },
}

/// Decode `input` delivered as `input[..split]` then the rest.
fn run(framing: Framing, limit: u64, input: &[u8], split: usize) -> Outcome {
    let mut d = BodyDecoder::new(framing);
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let mut pos = 0; // bytes consumed so far
    let mut done = false;
    for end in [split, input.len()] {
        if done || end < pos {
            continue;
        }
        let chunk = &input[pos..end];
        match d.decode(chunk, &mut body, &mut trailers, limit) {
            Err(e) => return Outcome::Err(e),
            Ok(r) => {
                assert!(
                    r.consumed <= chunk.len(),
                    "consumed {} of {}",
                    r.consumed,
                    chunk.len()
                );
                pos += r.consumed;
                done = r.done;
                assert_eq!(done, d.is_done());
            }
        }
    }
    if done {
        let again = d
            .decode(&input[pos..], &mut body, &mut trailers, limit)
            .unwrap();
        assert_eq!(
            (again.consumed, again.done),
            (0, true),
            "decoder went on after done"
        );
    }
    Outcome::Ok {
        body,
        trailers,
        consumed: pos,
        done,
    }
}

/// `BodyDecoder` for `Chunked` and `Length(n)`.
///
/// Input layout:
/// * byte 0: where the body bytes are split into two reads
///   (`byte0 % (len + 1)`); the second read carries what the first left
///   unconsumed plus the rest, as `conn.rs` does with its buffer;
/// * byte 1: bit 0 = framing (0 chunked, 1 length), bits 1-2 = limit
///   (0 = unlimited, 16, 4096, 1 MiB);
/// * bytes 2..4: the Content-Length (u16 LE) for the length framing;
/// * the rest: the bytes after the request head.
///
/// Checked: no panic; every `consumed <= input.len()`; a decoder that said
/// `done` consumes nothing more; and the split run ends exactly like one
/// decode of the whole input (byte-split independence): same error, or same
/// body, trailers, consumed count and `done`.
pub fn body_input(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (hdr, input) = data.split_at(4);
    let split = hdr[0] as usize % (input.len() + 1);
    let framing = if hdr[1] & 1 == 0 {
        Framing::Chunked
    } else {
        Framing::Length(u16::from_le_bytes([hdr[2], hdr[3]]) as u64)
    };
    let limit = [0, 16, 4096, 1 << 20][(hdr[1] as usize >> 1) & 3];

    let whole = run(framing, limit, input, input.len());
    let split_run = run(framing, limit, input, split);
    assert_eq!(whole, split_run, "split at {split} changes the outcome");
}

/// Decode `input` with a WebSocket frame decoder, `step` bytes arriving at
/// a time (0: all at once), keeping unconsumed bytes as `conn.rs` does.
fn ws_run(max: usize, input: &[u8], step: usize) -> (Vec<Incoming>, Option<Violation>) {
    let mut d = ws::Decoder::new(max);
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let step = if step == 0 { input.len().max(1) } else { step };
    for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&buf) {
                Err(v) => return (out, Some(v)),
                Ok((n, inc)) => {
                    assert!(n <= buf.len(), "consumed {n} of {}", buf.len());
                    buf.drain(..n);
                    let got = inc.is_some();
                    if let Some(i) = inc {
                        if let Incoming::Message(m) = &i {
                            let len = match m {
                                Message::Text(s) => s.len(),
                                Message::Binary(b) => b.len(),
                            };
                            assert!(max == 0 || len <= max, "message of {len} over {max}");
                        }
                        out.push(i);
                    }
                    if !got && (n == 0 || buf.is_empty()) {
                        break;
                    }
                }
            }
        }
    }
    (out, None)
}

/// `ws::Decoder` on client frames. Byte 0: bits 0-1 pick the message size
/// limit (0 = none, 8, 200, 70000), bits 2-7 the read size for the split
/// run (0 = whole); the rest is the byte stream after the handshake.
///
/// Checked: no panic; no message over the limit; what comes out (messages,
/// control frames, the violation's close code) does not depend on how the
/// bytes were split into reads; every close code sent back is one that may
/// be sent (1002, 1007 or 1009).
pub fn ws_frames_input(data: &[u8]) {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let max = [0, 8, 200, 70_000][(sel & 3) as usize];
    let step = (sel >> 2) as usize;
    let whole = ws_run(max, input, 0);
    let split = ws_run(max, input, step);
    assert_eq!(whole, split, "read size {step} changes the outcome");
    if let Some(v) = whole.1 {
        assert!(
            matches!(v.code, 1002 | 1007 | 1009),
            "close code {}",
            v.code
        );
    }
}
