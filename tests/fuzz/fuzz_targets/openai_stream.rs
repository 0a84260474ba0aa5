//! Fuzz target: `pincer::fuzzing::openai_stream`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::openai_stream(data));
