//! Fuzz `ferricorn::ws::Decoder` (WebSocket client frames): see
//! `checks::ws_frames_input` for the input layout and what is checked (the
//! same function replays the corpus in `cargo test`, tests/fuzz_replay.rs).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ws_frames_input(data));
