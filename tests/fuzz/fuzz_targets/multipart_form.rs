//! Fuzz target: `pincer::fuzzing::multipart_form`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::multipart_form(data));
