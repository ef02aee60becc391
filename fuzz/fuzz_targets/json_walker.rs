//! The JSON walker checked against serde_json: a valid document and paths built from the
//! bytes, the walker's output compared with the expected result, and cut documents.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshaudit_fuzz::json_walker(data));
