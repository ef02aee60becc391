//! The canonical bytes of an event: what the chain hashes. Defined once, used by the filter to
//! chain and by `meshaudit verify` to check, and rebuilt from any store that keeps the event's
//! fields (docs/integrity.md#the-canonical-form).
//!
//! ```text
//! "meshaudit-event-v1"
//! str(event_name)  u64(start ns)  u64(observed ns)
//! opt(trace id, 16 bytes)  opt(span id, 8 bytes)  str(body)
//! u32(attribute count)  then per attribute, sorted by key bytewise:
//!   str(key)  tag  value      tag: 's' str | 'i' i64 | 'b' u8 (0/1) | 'l' u32(count) str…
//! str(x) = u32(byte length) x;  integers big-endian;  opt(x) = 0x00 | 0x01 x
//! ```
//!
//! Inside: every record attribute except [`attr::CHAIN`] and except empty string lists (stores
//! drop those), plus meshaudit's own resource attributes ([`RESOURCE_KEYS`]). Outside: any other
//! resource attribute (a collector's Kubernetes metadata), severity, scope. A key that appears
//! twice counts once, with its last value: what a JSON store keeps of it.

use crate::event::{attr, Value};

/// The first bytes of every canonical form (the version of this layout).
pub const VERSION: &[u8] = b"meshaudit-event-v1";

/// The resource attributes meshaudit itself writes (`capture::node`), the only resource
/// attributes inside the canonical form.
pub const RESOURCE_KEYS: [&str; 9] = [
    "service.name",
    "service.version",
    "k8s.namespace.name",
    "k8s.pod.name",
    "meshaudit.workload.name",
    "k8s.cluster.name",
    "meshaudit.mesh.id",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
];

/// The log record fields outside the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub event_name: &'a str,
    pub start_ns: u64,
    pub observed_ns: u64,
    pub trace_id: Option<&'a [u8; 16]>,
    pub span_id: Option<&'a [u8; 8]>,
    pub body: &'a str,
}

/// Whether an attribute is inside the canonical form.
pub fn is_inside(key: &str, value: &Value) -> bool {
    key != attr::CHAIN && !matches!(value, Value::StrList(l) if l.is_empty())
}

/// Appends the canonical bytes of an event to `out` (which is not cleared). `attrs` are the
/// record's attributes and meshaudit's resource attributes, in any order; those not inside
/// (see [`is_inside`]) are skipped.
pub fn write<'a>(
    out: &mut Vec<u8>,
    envelope: &Envelope<'_>,
    attrs: impl Iterator<Item = (&'a str, &'a Value)>,
) {
    let mut sorted: Vec<(&str, &Value)> = attrs.filter(|(k, v)| is_inside(k, v)).collect();
    // Stable: of one key's values the last stays last, and only the last is written.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let repeated = |i: usize| {
        sorted
            .get(i + 1)
            .zip(sorted.get(i))
            .is_some_and(|(next, this)| next.0 == this.0)
    };
    let count = (0..sorted.len()).filter(|i| !repeated(*i)).count();
    out.reserve(256 + 64 * sorted.len());
    out.extend_from_slice(VERSION);
    str(out, envelope.event_name);
    out.extend_from_slice(&envelope.start_ns.to_be_bytes());
    out.extend_from_slice(&envelope.observed_ns.to_be_bytes());
    opt(out, envelope.trace_id.map(|t| t.as_slice()));
    opt(out, envelope.span_id.map(|s| s.as_slice()));
    str(out, envelope.body);
    len(out, count);
    for (i, (key, value)) in sorted.iter().enumerate() {
        if repeated(i) {
            continue;
        }
        str(out, key);
        match value {
            Value::Str(s) => {
                out.push(b's');
                str(out, s);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Bool(b) => {
                out.push(b'b');
                out.push(u8::from(*b));
            }
            Value::StrList(items) => {
                out.push(b'l');
                len(out, items.len());
                for s in items {
                    str(out, s);
                }
            }
        }
    }
}

/// A length as u32 big-endian (saturating: nothing meshaudit writes comes near).
pub(crate) fn len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// A length-prefixed string.
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
        None => out.push(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn envelope() -> Envelope<'static> {
        Envelope {
            event_name: "meshaudit.http",
            start_ns: 1,
            observed_ns: 0x0102,
            trace_id: None,
            span_id: Some(&[7; 8]),
            body: "GET / 200",
        }
    }

    #[test]
    fn stable_bytes_for_every_type() {
        let attrs = [
            ("z", Value::Int(-2)),
            ("a", Value::Str("é".into())),
            ("m", Value::Bool(true)),
            ("l", Value::StrList(vec!["x".into(), String::new()])),
            ("e", Value::StrList(vec![])),
            (attr::CHAIN, Value::Str("ab".into())),
        ];
        let mut out = Vec::new();
        write(&mut out, &envelope(), attrs.iter().map(|(k, v)| (*k, v)));
        let mut want = b"meshaudit-event-v1".to_vec();
        want.extend_from_slice(b"\0\0\0\x0emeshaudit.http");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.push(0);
        want.extend_from_slice(&[1, 7, 7, 7, 7, 7, 7, 7, 7]);
        want.extend_from_slice(b"\0\0\0\x09GET / 200");
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(b"\0\0\0\x01as\0\0\0\x02\xc3\xa9");
        want.extend_from_slice(b"\0\0\0\x01ll\0\0\0\x02\0\0\0\x01x\0\0\0\0");
        want.extend_from_slice(b"\0\0\0\x01mb\x01");
        want.extend_from_slice(b"\0\0\0\x01zi\xff\xff\xff\xff\xff\xff\xff\xfe");
        assert_eq!(out, want);
    }

    #[test]
    fn order_of_attributes_does_not_matter_but_every_field_does() {
        let a = [("b", Value::Int(1)), ("a", Value::Int(2))];
        let canon = |env: &Envelope<'_>, attrs: &[(&'static str, Value)]| {
            let mut out = Vec::new();
            write(&mut out, env, attrs.iter().map(|(k, v)| (*k, v)));
            out
        };
        let base = canon(&envelope(), &a);
        let rev = [a[1].clone(), a[0].clone()];
        assert_eq!(base, canon(&envelope(), &rev));
        let mut other = envelope();
        other.span_id = None;
        assert_ne!(base, canon(&other, &a));
        other = envelope();
        other.trace_id = Some(&[0; 16]);
        assert_ne!(base, canon(&other, &a));
        assert_ne!(base, canon(&envelope(), &[("b", Value::Int(1))]));
        // A string and an int of the same digits differ.
        assert_ne!(
            canon(&envelope(), &[("b", Value::Str("1".into()))]),
            canon(&envelope(), &[("b", Value::Int(1))])
        );
        // A repeated key counts once, with its last value.
        assert_eq!(
            canon(
                &envelope(),
                &[
                    ("b", Value::Int(9)),
                    ("a", Value::Int(2)),
                    ("b", Value::Int(1))
                ]
            ),
            base
        );
        // Lengths keep key/value boundaries apart.
        assert_ne!(
            canon(&envelope(), &[("ab", Value::Str("c".into()))]),
            canon(&envelope(), &[("a", Value::Str("bc".into()))])
        );
    }
}
