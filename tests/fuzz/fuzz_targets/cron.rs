//! Fuzz target: `pincer::fuzzing::cron`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::cron(data));
