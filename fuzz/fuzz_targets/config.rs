//! Arbitrary bytes as the plugin configuration: loading must never panic, and whatever loads
//! must redact an event without panicking.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshaudit_fuzz::config(data));
