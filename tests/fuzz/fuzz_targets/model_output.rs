//! Fuzz target: `pincer::fuzzing::model_output`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pincer::fuzzing::model_output(data));
