//! Arbitrary bytes through the text parsers of redaction (URLs, paths, queries, form and cookie
//! lists, multipart bodies, field names, cuts): no panic, and the properties of each.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshaudit_fuzz::parsers(data));
