//! Fuzz `ferricorn::http::BodyDecoder` (chunked and Content-Length framings):
//! see `checks::body_input` for the input layout and what is checked (the
//! same function replays the corpus in `cargo test`, tests/fuzz_replay.rs).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::body_input(data));
