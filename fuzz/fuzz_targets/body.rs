//! Fuzz `ferricorn::http::BodyDecoder` (chunked and Content-Length framings).
//!
//! Input layout:
//! * byte 0: where the body bytes are split into two reads
//!   (`byte0 % (len + 1)`); the second read carries what the first left
//!   unconsumed plus the rest, as `conn.rs` does with its buffer;
//! * byte 1: bit 0 = framing (0 chunked, 1 length), bits 1-2 = limit
//!   (0 = unlimited, 16, 4096, 1 MiB);
//! * bytes 2..4: the Content-Length (u16 LE) for the length framing;
//! * the rest: the bytes after the request head.
//!
//! Checked: no panic; every `consumed <= input.len()`; a decoder that said
//! `done` consumes nothing more; and the split run ends exactly like one
//! decode of the whole input (the module promises byte-split independence):
//! same error, or same body, trailers, consumed count and `done`.
#![no_main]

use ferricorn::http::{BodyDecoder, Framing, ParseError};
use libfuzzer_sys::fuzz_target;

type Trailers = Vec<(String, Vec<u8>)>;

#[derive(Debug, PartialEq)]
enum Outcome {
    Err(ParseError),
    Ok { body: Vec<u8>, trailers: Trailers, consumed: usize, done: bool },
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
                assert!(r.consumed <= chunk.len(), "consumed {} of {}", r.consumed, chunk.len());
                pos += r.consumed;
                done = r.done;
                assert_eq!(done, d.is_done());
            }
        }
    }
    if done {
        let again = d.decode(&input[pos..], &mut body, &mut trailers, limit).unwrap();
        assert_eq!((again.consumed, again.done), (0, true), "decoder went on after done");
    }
    Outcome::Ok { body, trailers, consumed: pos, done }
}

fuzz_target!(|data: &[u8]| {
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
});
