//! Fuzz target: `pincer::fuzzing::ws_frames`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::ws_frames(data));
