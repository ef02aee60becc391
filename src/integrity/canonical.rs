//! The canonical bytes of an event: what the chain hashes. Defined once, used by the filter to
//! chain and by `meshaudit verify` to check, and rebuilt from any store that keeps the event's
//! fields (docs/integrity.md#the-canonical-form).
//!
//! ```text
//! "meshaudit-event-v3"
//! str(event_name)  u64(start ns)  u64(observed ns)
//! opt(trace id, 16 bytes)  opt(span id, 8 bytes)  str(body)
//! keys digest: SHA-256("meshaudit-keys-v1" var(count) str(key)…), keys sorted bytewise
//! then per key, in that order, its value:
//!   tag value   tag: 's' str | 'i' i64 | 'b' u8 (0/1) | 'l' var(count) str…
//! str(x) = var(byte length) x;  var = unsigned LEB128, shortest;  integers big-endian;
//! opt(x) = 0x00 | 0x01 x
//! ```
//!
//! The keys are inside through their digest: a typical request event's 66 keys are 1.5 KB, more
//! than its values, and the events of one stream nearly always have the same keys, so the
//! digest is computed when the set of keys changes, not per event ([`Shape`]). SHA-256 being
//! collision resistant, the digest binds the keys as firmly as their bytes would.
//!
//! Inside: every record attribute except [`attr::CHAIN`] and except empty string lists (stores
//! drop those), plus meshaudit's own resource attributes ([`RESOURCE_KEYS`]). Outside: any other
//! resource attribute (a collector's Kubernetes metadata), severity, scope. A key that appears
//! twice counts once, with its last value: what a JSON store keeps of it.

use sha2::{Digest, Sha256};

use crate::event::{attr, Value};

/// The first bytes of every canonical form (the version of this layout).
pub const VERSION: &[u8] = b"meshaudit-event-v3";

/// The first bytes hashed into a keys digest.
pub const KEYS_VERSION: &[u8] = b"meshaudit-keys-v1";

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

/// The shape of the last event a canonical form was built for: its keys by position and which
/// of them are inside, the positions written in key order, and the keys digest. An event with
/// the same keys at the same positions (the usual case within a stream) reuses all of it.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    /// The keys of the last event, by position, end to end; `ends[i]` closes position `i`.
    keys: String,
    ends: Vec<usize>,
    inside: Vec<bool>,
    /// Positions written, sorted by key; of a repeated key, its last inside position.
    kept: Vec<u32>,
    digest: [u8; 32],
}

impl Shape {
    /// Whether the event at `at` has this shape: the same key and the same insideness at every
    /// position.
    fn matches<'a>(&self, n: usize, at: &impl Fn(usize) -> Option<(&'a str, &'a Value)>) -> bool {
        if self.ends.len() != n {
            return false;
        }
        let mut begin = 0;
        for (i, (&end, &inside)) in self.ends.iter().zip(&self.inside).enumerate() {
            let Some((key, value)) = at(i) else {
                return false;
            };
            if self.keys.get(begin..end) != Some(key) || is_inside(key, value) != inside {
                return false;
            }
            begin = end;
        }
        true
    }

    /// Takes the shape of the event at `at`: keys, the order they are written in, the digest.
    fn rebuild<'a>(&mut self, n: usize, at: &impl Fn(usize) -> Option<(&'a str, &'a Value)>) {
        self.keys.clear();
        self.ends.clear();
        self.inside.clear();
        for i in 0..n {
            let (key, inside) = at(i).map_or(("", false), |(k, v)| (k, is_inside(k, v)));
            self.keys.push_str(key);
            self.ends.push(self.keys.len());
            self.inside.push(inside);
        }
        let key = |i: u32| at(i as usize).map_or("", |(k, _)| k);
        let mut order: Vec<u32> = (0..n).filter_map(|i| u32::try_from(i).ok()).collect();
        order.sort_by(|&a, &b| (key(a), a).cmp(&(key(b), b)));
        self.kept.clear();
        for (p, &i) in order.iter().enumerate() {
            if !self.inside.get(i as usize).copied().unwrap_or(false) {
                continue;
            }
            // A later inside position of the same key wins (the order is by key, then position).
            let later = order
                .iter()
                .skip(p + 1)
                .take_while(|&&j| key(j) == key(i))
                .any(|&j| self.inside.get(j as usize).copied().unwrap_or(false));
            if !later {
                self.kept.push(i);
            }
        }
        let mut keys = KEYS_VERSION.to_vec();
        var(&mut keys, self.kept.len());
        for &i in &self.kept {
            vstr(&mut keys, key(i));
        }
        self.digest = Sha256::digest(&keys).into();
    }
}

/// Appends the canonical bytes of an event to `out` (which is not cleared). `attrs` are the
/// record's attributes and meshaudit's resource attributes, in any order; those not inside
/// (see [`is_inside`]) are skipped.
pub fn write<'a>(
    out: &mut Vec<u8>,
    envelope: &Envelope<'_>,
    attrs: impl Iterator<Item = (&'a str, &'a Value)>,
) {
    let attrs: Vec<(&str, &Value)> = attrs.collect();
    write_indexed(out, &mut Shape::default(), envelope, attrs.len(), |i| {
        attrs.get(i).copied()
    });
}

/// [`write`] over attributes by position (`at(i)` for `i` in `0..n`), reusing `shape` from the
/// last event: no allocation and no key hashed once `out` and `shape` fit an event's shape.
pub fn write_indexed<'a>(
    out: &mut Vec<u8>,
    shape: &mut Shape,
    envelope: &Envelope<'_>,
    n: usize,
    at: impl Fn(usize) -> Option<(&'a str, &'a Value)>,
) {
    if !shape.matches(n, &at) {
        shape.rebuild(n, &at);
    }
    write_shaped(out, shape, envelope, at);
}

/// [`write_indexed`] for an event known to have the shape `shape` was last built or matched for
/// (the same keys at the same positions, each as inside as it was).
pub fn write_shaped<'a>(
    out: &mut Vec<u8>,
    shape: &Shape,
    envelope: &Envelope<'_>,
    at: impl Fn(usize) -> Option<(&'a str, &'a Value)>,
) {
    out.extend_from_slice(VERSION);
    vstr(out, envelope.event_name);
    out.extend_from_slice(&envelope.start_ns.to_be_bytes());
    out.extend_from_slice(&envelope.observed_ns.to_be_bytes());
    opt(out, envelope.trace_id.map(|t| t.as_slice()));
    opt(out, envelope.span_id.map(|s| s.as_slice()));
    vstr(out, envelope.body);
    out.extend_from_slice(&shape.digest);
    for &i in &shape.kept {
        if let Some((_, value)) = at(i as usize) {
            write_value(out, value);
        }
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            out.push(b's');
            vstr(out, s);
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
            var(out, items.len());
            for s in items {
                vstr(out, s);
            }
        }
    }
}

/// An unsigned LEB128 number, shortest form.
fn var(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A string with its LEB128 length.
fn vstr(out: &mut Vec<u8>, s: &str) {
    var(out, s.len());
    out.extend_from_slice(s.as_bytes());
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
            ("lm", Value::Bool(true)),
            ("l1", Value::StrList(vec!["x".into(), String::new()])),
            ("v", Value::Str("x".repeat(200))),
            ("e", Value::StrList(vec![])),
            (attr::CHAIN, Value::Str("ab".into())),
        ];
        let mut out = Vec::new();
        write(&mut out, &envelope(), attrs.iter().map(|(k, v)| (*k, v)));
        let mut want = b"meshaudit-event-v3".to_vec();
        want.extend_from_slice(b"\x0emeshaudit.http");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.push(0);
        want.extend_from_slice(&[1, 7, 7, 7, 7, 7, 7, 7, 7]);
        want.extend_from_slice(b"\x09GET / 200");
        // The keys digest, over the inside keys sorted: a, l1, lm, v, z.
        let keys: [u8; 32] =
            Sha256::digest(b"meshaudit-keys-v1\x05\x01a\x02l1\x02lm\x01v\x01z").into();
        want.extend_from_slice(&keys);
        want.extend_from_slice(b"s\x02\xc3\xa9");
        want.extend_from_slice(b"l\x02\x01x\0");
        want.extend_from_slice(b"b\x01");
        want.extend_from_slice(b"s\xc8\x01");
        want.extend_from_slice(&[b'x'; 200]);
        want.extend_from_slice(b"i\xff\xff\xff\xff\xff\xff\xff\xfe");
        assert_eq!(out, want);
    }

    #[test]
    fn keys_are_bound_through_their_digest() {
        let canon = |attrs: &[(&'static str, Value)]| {
            let mut out = Vec::new();
            write(&mut out, &envelope(), attrs.iter().map(|(k, v)| (*k, v)));
            out
        };
        // The same values under other keys, or a key moved to the other value, differ.
        let base = canon(&[("a", Value::Int(1)), ("b", Value::Int(2))]);
        assert_ne!(base, canon(&[("a", Value::Int(1)), ("c", Value::Int(2))]));
        assert_ne!(base, canon(&[("b", Value::Int(1)), ("c", Value::Int(2))]));
        assert_ne!(base, canon(&[("a", Value::Int(2)), ("b", Value::Int(1))]));
        // An empty list is outside, so it leaves the keys (and the digest) as they were.
        assert_eq!(
            base,
            canon(&[
                ("a", Value::Int(1)),
                ("b", Value::Int(2)),
                ("c", Value::StrList(vec![]))
            ])
        );
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

    #[test]
    fn a_reused_shape_gives_what_a_fresh_one_gives() {
        let events: [Vec<(&str, Value)>; 5] = [
            vec![
                ("b", Value::Int(1)),
                ("a", Value::Int(2)),
                ("c", Value::Int(3)),
            ],
            vec![
                ("c", Value::Int(3)),
                ("b", Value::Int(1)),
                ("a", Value::Int(2)),
            ],
            vec![("a", Value::Int(2)), ("a", Value::Int(5))],
            vec![
                ("b", Value::Int(9)),
                ("b", Value::StrList(vec![])),
                ("a", Value::Int(2)),
            ],
            // The keys of the one before, at the same positions, but the list is now inside.
            vec![
                ("b", Value::Int(9)),
                ("b", Value::StrList(vec!["x".into()])),
                ("a", Value::Int(2)),
            ],
        ];
        let mut shape = Shape::default();
        for attrs in events.iter().chain(events.iter().rev()) {
            let mut fresh = Vec::new();
            write(&mut fresh, &envelope(), attrs.iter().map(|(k, v)| (*k, v)));
            let mut reused = Vec::new();
            write_indexed(&mut reused, &mut shape, &envelope(), attrs.len(), |i| {
                attrs.get(i).map(|(k, v)| (*k, v))
            });
            assert_eq!(fresh, reused);
        }
        // An empty list does not hide the value before it.
        let mut one = Vec::new();
        write(&mut one, &envelope(), [("b", &Value::Int(9))].into_iter());
        let mut last = Vec::new();
        write(
            &mut last,
            &envelope(),
            events[3]
                .iter()
                .filter(|(k, _)| *k == "b")
                .map(|(k, v)| (*k, v)),
        );
        assert_eq!(one, last);
    }
}
