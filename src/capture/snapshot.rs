//! Every per-request attribute in one host call.
//!
//! Reading an attribute costs a host call, and each value the host returns costs a second call
//! back into the VM to allocate it: about a microsecond in Envoy's V8, paid for each of the ~15
//! attributes an event needs. Envoy can instead evaluate a CEL expression (its `expr_create` /
//! `expr_evaluate` foreign functions): [`expression`] is one CEL list of all of them, compiled
//! once per worker, and evaluating it returns every value in one call (measured in `make bench`:
//! the `wasm_cel` against the `wasm_hostcalls` arm).
//!
//! An absent attribute fails the whole evaluation unless its element is guarded with `has()`;
//! a guarded element is `false` (one zero byte, a shape no integer or address takes) when
//! absent (see `request_attributes` for which list guards what). The list
//! comes back in proxy-wasm's pairs encoding with each element as a key; [`Snapshot`] decodes it
//! and answers the capture code's reads from it, passing any other path to the host.

pub use super::request_attributes::{expression, Guards, List, JWT_PAYLOAD_PRESENT, PATHS};
use super::{decode, Host};

/// What an absent element evaluates to: CEL `false`, serialized as one zero byte.
const ABSENT: &[u8] = &[0];

/// The evaluated list, answering reads of [`PATHS`]; other paths go to `fallback`.
pub struct Snapshot<'h, H: Host> {
    list: List,
    /// Per entry of the list: the value's byte range in `bytes`, `None` when absent.
    values: Vec<Option<(usize, usize)>>,
    bytes: Vec<u8>,
    fallback: &'h H,
}

impl<'h, H: Host> Snapshot<'h, H> {
    /// Decodes `expr_evaluate`'s result of `list`. `None` when it is not a list of its length
    /// (the caller then reads attribute by attribute).
    pub fn decode(bytes: Vec<u8>, list: List, fallback: &'h H) -> Option<Snapshot<'h, H>> {
        let base = bytes.as_ptr() as usize;
        let values: Vec<Option<(usize, usize)>> = decode::map(&bytes)
            .into_iter()
            .map(|(element, _)| {
                let start = (element.as_ptr() as usize).saturating_sub(base);
                (element != ABSENT).then_some((start, start + element.len()))
            })
            .collect();
        if values.len() != list.elements() {
            return None;
        }
        Some(Snapshot {
            list,
            values,
            bytes,
            fallback,
        })
    }
}

impl<H: Host> Snapshot<'_, H> {
    /// `Some(value)` for a path of the list (`Some(None)`: absent), `None` for any other path.
    fn listed(&self, path: &[&str]) -> Option<Option<&[u8]>> {
        let i = self.list.position(path)?;
        Some(
            self.values
                .get(i)
                .copied()
                .flatten()
                .and_then(|(start, end)| self.bytes.get(start..end)),
        )
    }
}

/// Answers from the list without copying the value where it can (integers, booleans).
impl<H: Host> Host for Snapshot<'_, H> {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match self.listed(path) {
            Some(value) => value.map(<[u8]>::to_vec),
            None => self.fallback.property(path),
        }
    }

    fn int(&self, path: &[&str]) -> Option<i64> {
        match self.listed(path) {
            Some(value) => value.and_then(decode::int64),
            None => self.fallback.int(path),
        }
    }

    fn evaluated(&self) -> bool {
        true
    }

    fn boolean(&self, path: &[&str]) -> Option<bool> {
        match self.listed(path) {
            Some(value) => value.and_then(decode::boolean),
            None => self.fallback.boolean(path),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::capture::fake::RecordedHost;

    /// A list as Envoy serializes one: pairs with each element as the key, empty values.
    fn list(elements: &[&[u8]]) -> Vec<u8> {
        let mut out = (elements.len() as u32).to_le_bytes().to_vec();
        for e in elements {
            out.extend((e.len() as u32).to_le_bytes());
            out.extend(0u32.to_le_bytes());
        }
        for e in elements {
            out.extend_from_slice(e);
            out.extend([0, 0]);
        }
        out
    }

    #[test]
    fn expression_guards_every_path_or_only_the_often_absent_ones() {
        let plain = List::default();
        let all = expression(Guards::All, plain);
        assert!(all.starts_with("[has(connection.id) ? connection.id : false, "));
        assert_eq!(all.matches("has(").count(), PATHS.len());
        assert!(all.ends_with("upstream.tls_version : false]"));
        let few = expression(Guards::OftenAbsent, plain);
        assert!(few.starts_with("[connection.id, request.time, "));
        assert_eq!(few.matches("has(").count(), 1);
        assert!(few.ends_with(", has(upstream.tls_version) ? upstream.tls_version : false]"));
        // With identity.jwt, the presence test of a jwt_authn payload comes last, unguarded.
        let jwt = "('envoy.filters.http.jwt_authn' in metadata.filter_metadata)]";
        let with = List { jwt: true };
        for guards in [Guards::All, Guards::OftenAbsent] {
            let e = expression(guards, with);
            assert!(
                e.ends_with(&format!("upstream.tls_version : false, {jwt}")),
                "{e}"
            );
        }
    }

    #[test]
    fn answers_from_the_list_and_treats_false_as_absent() {
        let with_jwt = List { jwt: true };
        let mut elements: Vec<Vec<u8>> = vec![ABSENT.to_vec(); with_jwt.elements()];
        elements[1] = 1_700_000_000_000_000_000i64.to_le_bytes().to_vec();
        elements[3] = b"HTTP/1.1".to_vec();
        elements[6] = Vec::new(); // present but empty
        elements[12] = b"127.0.0.1:8080\0with nul".to_vec();
        elements[PATHS.len()] = vec![1]; // the jwt_authn payload is there
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        let fallback = RecordedHost::default()
            .with("source.address", "10.0.0.1:5000")
            .with_int("xds.listener_direction", 1)
            .with("connection.mtls", vec![1u8]);
        let snap = Snapshot::decode(list(&refs), with_jwt, &fallback).unwrap();
        assert_eq!(
            snap.int(&["request", "time"]),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            snap.property(&["request", "protocol"]).as_deref(),
            Some(&b"HTTP/1.1"[..])
        );
        assert_eq!(
            snap.property(&["response", "code_details"]),
            Some(Vec::new())
        );
        assert_eq!(
            snap.property(&["upstream", "address"]).as_deref(),
            Some(&b"127.0.0.1:8080\0with nul"[..])
        );
        assert_eq!(snap.property(&["response", "code"]), None);
        assert_eq!(snap.int(&["response", "code"]), None);
        assert_eq!(snap.property(&["upstream", "tls_version"]), None);
        // A listed value of the wrong shape is no integer (and no boolean).
        assert_eq!(snap.int(&["response", "code_details"]), None);
        assert_eq!(snap.boolean(&["request", "protocol"]), None);
        // Not in the list: asked of the host.
        assert_eq!(
            snap.property(&["source", "address"]).as_deref(),
            Some(&b"10.0.0.1:5000"[..])
        );
        assert_eq!(snap.int(&["xds", "listener_direction"]), Some(1));
        assert_eq!(snap.boolean(&["connection", "mtls"]), Some(true));
        // It answers what is no Envoy attribute, and says it can.
        assert!(snap.evaluated() && !fallback.evaluated());
        assert_eq!(snap.boolean(JWT_PAYLOAD_PRESENT), Some(true));
    }

    #[test]
    fn a_list_of_another_length_or_garbage_is_refused() {
        let fallback = RecordedHost::default();
        let plain = List::default();
        assert!(Snapshot::decode(list(&[b"x"]), plain, &fallback).is_none());
        assert!(Snapshot::decode(Vec::new(), plain, &fallback).is_none());
        assert!(Snapshot::decode(vec![0xff; 7], plain, &fallback).is_none());
        // The list without the jwt element is one shorter: its result is refused for the other.
        let short = vec![ABSENT; PATHS.len()];
        assert!(Snapshot::decode(list(&short), List { jwt: true }, &fallback).is_none());
        assert!(Snapshot::decode(list(&short), plain, &fallback).is_some());
    }
}
