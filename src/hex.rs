//! Hex digits, both ways: ids and digests written for events and redaction tokens, trace ids read
//! from headers. One helper for capture, redaction and encoding.

/// Lower-case hex of bytes.
pub fn encode(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

/// The value of one hex digit, either case.
pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn both_ways() {
        assert_eq!(encode(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(encode(&[]), "");
        let bytes: Vec<u8> = b"009fFF"
            .chunks(2)
            .map(|p| digit(p[0]).unwrap() << 4 | digit(p[1]).unwrap())
            .collect();
        assert_eq!(bytes, [0x00, 0x9f, 0xff]);
        assert_eq!(digit(b'g'), None);
    }
}
