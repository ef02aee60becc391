//! The canonical bytes of an event: what the chain hashes. Defined once, used by the filter to
//! chain and by `meshaudit verify` to check, and rebuilt from any store that keeps the event's
//! fields (docs/integrity.md#the-canonical-form).
//!
//! ```text
//! "meshaudit-event-v2"
//! str(event_name)  u64(start ns)  u64(observed ns)
//! opt(trace id, 16 bytes)  opt(span id, 8 bytes)  str(body)
//! var(attribute count)  then per attribute, sorted by key bytewise:
//!   var(bytes shared with the previous key)  str(rest of key)  tag  value
//!   tag: 's' str | 'i' i64 | 'b' u8 (0/1) | 'l' var(count) str…
//! str(x) = var(byte length) x;  var = unsigned LEB128, shortest;  integers big-endian;
//! opt(x) = 0x00 | 0x01 x
//! ```
//!
//! Keys are front-coded (the first key shares 0 bytes): sorted keys share long prefixes
//! (`http.request.header.`, `meshaudit.`), and every byte here is a byte SHA-256 hashes per
//! event. The key is still wholly inside: the previous key's prefix and the rest give it back.
//!
//! Inside: every record attribute except [`attr::CHAIN`] and except empty string lists (stores
//! drop those), plus meshaudit's own resource attributes ([`RESOURCE_KEYS`]). Outside: any other
//! resource attribute (a collector's Kubernetes metadata), severity, scope. A key that appears
//! twice counts once, with its last value: what a JSON store keeps of it.

use crate::event::{attr, Value};

/// The first bytes of every canonical form (the version of this layout).
pub const VERSION: &[u8] = b"meshaudit-event-v2";

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

/// What building a canonical form reuses from one event to the next: the key order of the last
/// event (the events of one stream come with their keys in nearly the same order, so sorting
/// starts from it and is mostly one comparison per key) and the positions written.
#[derive(Debug, Default, Clone)]
pub struct Order {
    order: Vec<u32>,
    kept: Vec<u32>,
}

impl Order {
    /// Sorts positions `0..n` by (key, position), starting from the last order: an insertion
    /// sort, linear when the order holds, then keeps each key's last inside position.
    fn sort<'a>(&mut self, n: usize, at: &impl Fn(usize) -> Option<(&'a str, &'a Value)>) {
        let key = |i: u32| at(i as usize).map_or("", |(k, _)| k);
        if self.order.len() != n {
            self.order.clear();
            self.order
                .extend((0..n).filter_map(|i| u32::try_from(i).ok()));
        }
        for i in 1..self.order.len() {
            let Some(&this) = self.order.get(i) else {
                break;
            };
            let mut j = i;
            while let Some(&before) = j.checked_sub(1).and_then(|p| self.order.get(p)) {
                if (key(before), before) <= (key(this), this) {
                    break;
                }
                if let Some(slot) = self.order.get_mut(j) {
                    *slot = before;
                }
                j -= 1;
            }
            if let Some(slot) = self.order.get_mut(j) {
                *slot = this;
            }
        }
        self.kept.clear();
        for (p, &i) in self.order.iter().enumerate() {
            let Some((k, v)) = at(i as usize) else {
                continue;
            };
            if !is_inside(k, v) {
                continue;
            }
            // A later inside position of the same key wins (the order is by key, then position).
            let later = self
                .order
                .iter()
                .skip(p + 1)
                .map_while(|&j| at(j as usize).filter(|(kj, _)| *kj == k));
            if later.into_iter().any(|(kj, vj)| is_inside(kj, vj)) {
                continue;
            }
            self.kept.push(i);
        }
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
    write_indexed(out, &mut Order::default(), envelope, attrs.len(), |i| {
        attrs.get(i).copied()
    });
}

/// [`write`] over attributes by position (`at(i)` for `i` in `0..n`), reusing `order` from the
/// last event: no allocation once `out` and `order` have grown to an event's size.
pub fn write_indexed<'a>(
    out: &mut Vec<u8>,
    order: &mut Order,
    envelope: &Envelope<'_>,
    n: usize,
    at: impl Fn(usize) -> Option<(&'a str, &'a Value)>,
) {
    order.sort(n, &at);
    out.extend_from_slice(VERSION);
    vstr(out, envelope.event_name);
    out.extend_from_slice(&envelope.start_ns.to_be_bytes());
    out.extend_from_slice(&envelope.observed_ns.to_be_bytes());
    opt(out, envelope.trace_id.map(|t| t.as_slice()));
    opt(out, envelope.span_id.map(|s| s.as_slice()));
    vstr(out, envelope.body);
    var(out, order.kept.len());
    let mut previous: &[u8] = &[];
    for &i in &order.kept {
        let Some((key, value)) = at(i as usize) else {
            continue;
        };
        let key = key.as_bytes();
        let shared = previous.iter().zip(key).take_while(|(a, b)| a == b).count();
        var(out, shared);
        let rest = key.get(shared..).unwrap_or_default();
        var(out, rest.len());
        out.extend_from_slice(rest);
        previous = key;
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
        let mut want = b"meshaudit-event-v2".to_vec();
        want.extend_from_slice(b"\x0emeshaudit.http");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.push(0);
        want.extend_from_slice(&[1, 7, 7, 7, 7, 7, 7, 7, 7]);
        want.extend_from_slice(b"\x09GET / 200");
        want.push(5);
        want.extend_from_slice(b"\0\x01as\x02\xc3\xa9");
        want.extend_from_slice(b"\0\x02l1l\x02\x01x\0");
        want.extend_from_slice(b"\x01\x01mb\x01"); // "lm" after "l1": 1 byte shared
        want.extend_from_slice(b"\0\x01vs\xc8\x01");
        want.extend_from_slice(&[b'x'; 200]);
        want.extend_from_slice(b"\0\x01zi\xff\xff\xff\xff\xff\xff\xff\xfe");
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

    #[test]
    fn a_reused_order_gives_what_a_fresh_one_gives() {
        let events: [Vec<(&str, Value)>; 4] = [
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
        ];
        let mut order = Order::default();
        for attrs in events.iter().chain(events.iter().rev()) {
            let mut fresh = Vec::new();
            write(&mut fresh, &envelope(), attrs.iter().map(|(k, v)| (*k, v)));
            let mut reused = Vec::new();
            write_indexed(&mut reused, &mut order, &envelope(), attrs.len(), |i| {
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
