//! A trail's JSON line through `meshaudit verify`'s fast reader and through the general one:
//! the same records, or the same error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshaudit_fuzz::trail_line(data));
