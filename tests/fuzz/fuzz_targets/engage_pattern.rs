//! Fuzz target: `pincer::fuzzing::engage_pattern`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::engage_pattern(data));
