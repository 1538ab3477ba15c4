//! Fuzz `ferricorn::http::parse_head`: see `checks::parse_head_input` for the
//! input layout and what is checked (the same function replays the corpus in
//! `cargo test`, tests/fuzz_replay.rs).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::parse_head_input(data));
