//! Arbitrary bytes as the traffic of one request, redacted with a configuration that has rules
//! of every kind and every detector: no panic, and planted secrets never survive.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshaudit_fuzz::redact(data));
