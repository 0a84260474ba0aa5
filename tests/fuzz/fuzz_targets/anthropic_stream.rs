//! Fuzz target: `pincer::fuzzing::anthropic_stream`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::anthropic_stream(data));
