//! The chain: each event's link is `SHA-256(previous link || canonical bytes)`; the first
//! event's previous link is the stream's genesis, which binds its stream id, key id and start
//! time. Links travel as lowercase hex in `meshaudit.chain`.

use sha2::{Digest, Sha256};

use super::canonical;
use crate::hex;

/// One chain value.
pub type Link = [u8; 32];

/// The previous link of a stream's first event.
pub fn genesis(stream_id: &str, key_id: &str, start_ns: u64) -> Link {
    let mut bytes = b"meshaudit-genesis-v1".to_vec();
    canonical::str(&mut bytes, stream_id);
    canonical::str(&mut bytes, key_id);
    bytes.extend_from_slice(&start_ns.to_be_bytes());
    Sha256::digest(&bytes).into()
}

/// The link of an event given the previous one and its canonical bytes.
pub fn link(prev: &Link, canonical: &[u8]) -> Link {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// A link as written in events.
pub fn to_hex(link: &Link) -> String {
    hex::encode(link)
}

/// A link read back from hex (either case); `None` unless exactly 64 hex digits.
pub fn from_hex(text: &str) -> Option<Link> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (hex::digit(*hi)?, hex::digit(*lo)?),
            _ => return None,
        };
        *o = (hi << 4) | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn links_are_sha256_of_previous_and_canonical() {
        let prev = [0u8; 32];
        // SHA-256 of 32 zero bytes followed by "abc", computed independently.
        let mut input = vec![0u8; 32];
        input.extend_from_slice(b"abc");
        let want: Link = Sha256::digest(&input).into();
        assert_eq!(link(&prev, b"abc"), want);
        assert_ne!(link(&prev, b"abd"), want);
        assert_ne!(link(&[1; 32], b"abc"), want);
    }

    #[test]
    fn genesis_binds_stream_key_and_start() {
        let g = genesis("00000000000000ab", "", 5);
        assert_ne!(g, genesis("00000000000000ac", "", 5));
        assert_ne!(g, genesis("00000000000000ab", "k", 5));
        assert_ne!(g, genesis("00000000000000ab", "", 6));
        // Length prefixes keep "ab"+"" apart from "a"+"b".
        assert_ne!(genesis("ab", "", 0), genesis("a", "b", 0));
        assert_eq!(g, genesis("00000000000000ab", "", 5));
    }

    #[test]
    fn hex_round_trip() {
        let l = link(&[3; 32], b"x");
        assert_eq!(from_hex(&to_hex(&l)), Some(l));
        assert_eq!(from_hex(&to_hex(&l).to_uppercase()), Some(l));
        assert_eq!(from_hex("ab"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }
}
