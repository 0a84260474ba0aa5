//! Fuzz target: `pincer::fuzzing::http1_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::http1_request(data));
