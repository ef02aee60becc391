//! Decoding of the host's value encodings: strings, 8-byte little-endian integers, one-byte
//! booleans and proxy-wasm serialized maps (header maps).

use super::Anomalies;
pub use crate::event::MAX_VALUE_BYTES;
use crate::redact::cut::{cut_to, drop_partial_tail, CAPTURE_CEILING};

/// Bytes to a string: invalid UTF-8 is replaced with U+FFFD. A value longer than
/// [`MAX_VALUE_BYTES`] is noted as truncated under `field`: redaction cuts it once it has
/// redacted it whole. Beyond [`CAPTURE_CEILING`] it is cut here already, without what the cut
/// may have left of a secret.
pub fn string(bytes: Vec<u8>, field: &str, anomalies: &mut Anomalies) -> String {
    let mut s = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            anomalies.note("invalid_utf8", field);
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    if s.len() > MAX_VALUE_BYTES {
        anomalies.note("truncated", field);
        if cut_to(&mut s, CAPTURE_CEILING) {
            drop_partial_tail(&mut s);
        }
    }
    s
}

/// An int64/uint64 as Envoy encodes it: 8 little-endian bytes.
pub fn int64(bytes: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some(i64::from_le_bytes(arr))
}

/// A bool as Envoy encodes it: one byte.
pub fn boolean(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [b] => Some(*b != 0),
        _ => None,
    }
}

/// A proxy-wasm serialized map: u32 count, then count pairs of (u32 key length, u32 value
/// length), then each key and value followed by a NUL byte. Malformed input yields the pairs
/// that could be read before the fault.
pub fn map(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(256));
    let mut data = match count.checked_mul(8).and_then(|n| n.checked_add(4)) {
        Some(d) => d,
        None => return pairs,
    };
    for i in 0..count {
        let (Some(klen), Some(vlen)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let key = data.checked_add(klen).and_then(|end| bytes.get(data..end));
        let vstart = data.saturating_add(klen).saturating_add(1);
        let value = vstart
            .checked_add(vlen)
            .and_then(|end| bytes.get(vstart..end));
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        pairs.push((key, value));
        data = vstart.saturating_add(vlen).saturating_add(1);
    }
    pairs
}

#[cfg(test)]
pub(crate) fn encode_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(*v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn integers_and_booleans() {
        assert_eq!(int64(&42i64.to_le_bytes()), Some(42));
        assert_eq!(int64(&[1, 2, 3]), None);
        assert_eq!(boolean(&[1]), Some(true));
        assert_eq!(boolean(&[0]), Some(false));
        assert_eq!(boolean(&[]), None);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_noted() {
        let mut a = Anomalies::default();
        assert_eq!(string(b"ok".to_vec(), "f", &mut a), "ok");
        assert!(a.0.is_empty());
        assert_eq!(string(vec![b'a', 0xff], "url.path", &mut a), "a\u{fffd}");
        assert_eq!(a.0, vec!["invalid_utf8:url.path".to_string()]);
    }

    #[test]
    fn long_values_are_noted_and_kept_for_redaction_up_to_the_ceiling() {
        let mut a = Anomalies::default();
        let long = "é".repeat(MAX_VALUE_BYTES);
        let s = string(long.clone().into_bytes(), "h", &mut a);
        assert_eq!(s, long, "redaction sees it whole, then cuts it");
        assert_eq!(a.0, vec!["truncated:h".to_string()]);
        let huge = format!(
            "{} 4111 1111 1111 1111",
            "x ".repeat(CAPTURE_CEILING / 2 - 5)
        );
        let s = string(huge.into_bytes(), "h", &mut a);
        assert!(
            s.len() <= CAPTURE_CEILING && !s.contains("4111"),
            "{}",
            s.len()
        );
    }

    #[test]
    fn maps_round_trip() {
        let raw = encode_map(&[(":method", b"GET"), ("x-a", b""), ("bin", &[0xff, 0])]);
        let m = map(&raw);
        assert_eq!(
            m,
            vec![
                (&b":method"[..], &b"GET"[..]),
                (b"x-a", b""),
                (b"bin", &[0xff, 0][..])
            ]
        );
    }

    #[test]
    fn malformed_maps_never_panic() {
        let raw = encode_map(&[("a", b"1"), ("bb", b"22")]);
        for cut in 0..raw.len() {
            let _ = map(&raw[..cut]);
        }
        assert!(map(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        let mut huge = raw.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(map(&huge).is_empty());
    }
}
