//! The end user behind a request: the payload of a token Envoy's `jwt_authn` filter verified,
//! which it leaves in dynamic metadata (`payload_in_metadata`) under the filter's namespace,
//! keyed by the name the provider's configuration gives (Istio's `RequestAuthentication` uses
//! the issuer), so any key works. The request's dynamic metadata is read whole, in one host
//! call: Envoy 1.40 serializes `metadata` as the `envoy.config.core.v3.Metadata` message, which
//! keeps each value's type, where a path inside it comes back as proxy-wasm pairs that do not
//! (a number, a string and a list look alike). Only the payload is there: never the token.

use std::collections::BTreeMap;

use prost::Message;

use super::protobuf::{Kind, ProtoValue, Struct};
use super::request_attributes::JWT_PAYLOAD_PRESENT;
use super::{Anomalies, Host};
use crate::event::{attr, AuditEvent, Value};

/// The request's dynamic metadata.
pub const METADATA: [&str; 1] = ["metadata"];

/// The namespace `jwt_authn` puts verified payloads in.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

/// `envoy.config.core.v3.Metadata`, its `filter_metadata` (the typed one is skipped).
#[derive(Clone, PartialEq, Message)]
struct Metadata {
    #[prost(btree_map = "string, message", tag = "1")]
    filter_metadata: BTreeMap<String, Struct>,
}

/// What to record of a verified token, prepared once per configuration.
#[derive(Debug, Clone, Default)]
pub struct EndUser {
    /// `identity.jwt_claims`, each with its attribute key.
    claims: Vec<(String, &'static str)>,
}

impl EndUser {
    pub fn new(claims: &[String]) -> EndUser {
        EndUser {
            claims: claims
                .iter()
                .map(|c| {
                    let key = format!("{}{c}", attr::ENDUSER_CLAIM);
                    // One key per configured claim for the VM's life (as header keys are).
                    (c.clone(), &*Box::leak(key.into_boxed_str()))
                })
                .collect(),
        }
    }

    /// Reads the verified payloads and records the first (by key) as the end user. Where the
    /// request's attributes were evaluated as one list, it says whether there is a payload,
    /// and a request without one costs no host call.
    pub fn write(&self, host: &impl Host, e: &mut AuditEvent, a: &mut Anomalies) {
        if host.evaluated() && host.boolean(JWT_PAYLOAD_PRESENT) != Some(true) {
            return;
        }
        let Some(bytes) = host.property(&METADATA) else {
            return;
        };
        let Ok(metadata) = Metadata::decode(bytes.as_slice()) else {
            a.note("undecodable", "metadata");
            return;
        };
        let Some(namespace) = metadata.filter_metadata.get(JWT_AUTHN) else {
            return;
        };
        let Some(payload) = namespace.fields.values().find_map(|v| match &v.kind {
            Some(Kind::Object(s)) => Some(s),
            _ => None,
        }) else {
            return;
        };
        let text = |name: &str| match payload.fields.get(name).and_then(|v| v.kind.as_ref()) {
            Some(Kind::Text(s)) => Some(s.clone()),
            _ => None,
        };
        e.set_str(attr::ENDUSER_ID, text("sub"));
        e.set_str(attr::ENDUSER_ISSUER, text("iss"));
        match payload.fields.get("aud").and_then(|v| v.kind.as_ref()) {
            Some(Kind::Text(s)) => e.set(attr::ENDUSER_AUDIENCE, Value::StrList(vec![s.clone()])),
            Some(Kind::List(l)) => e.set(
                attr::ENDUSER_AUDIENCE,
                Value::StrList(l.values.iter().map(scalar).collect()),
            ),
            _ => {}
        }
        for (name, key) in &self.claims {
            if let Some(value) = payload.fields.get(name).and_then(claim) {
                e.set(*key, value);
            }
        }
    }
}

/// A claim as an attribute: text as it is, a list as a list of its items' text, a number or
/// a boolean as its JSON text, an object as compact JSON; null is absent.
fn claim(v: &ProtoValue) -> Option<Value> {
    match v.kind.as_ref()? {
        Kind::Null(_) => None,
        Kind::List(l) => Some(Value::StrList(l.values.iter().map(scalar).collect())),
        _ => Some(Value::Str(scalar(v))),
    }
}

/// A value's text: a string as it is, anything else as JSON.
fn scalar(v: &ProtoValue) -> String {
    match &v.kind {
        Some(Kind::Text(s)) => s.clone(),
        _ => to_json(v).to_string(),
    }
}

fn to_json(v: &ProtoValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::Null(_)) => J::Null,
        Some(Kind::Number(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            J::from(*n as i64)
        }
        Some(Kind::Number(n)) => J::from(*n),
        Some(Kind::Text(s)) => J::from(s.as_str()),
        Some(Kind::Bool(b)) => J::from(*b),
        Some(Kind::Object(s)) => J::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Some(Kind::List(l)) => J::Array(l.values.iter().map(to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    use crate::capture::protobuf::ListValue;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn text(s: &str) -> ProtoValue {
        ProtoValue::text(s)
    }

    fn object(fields: Vec<(&str, ProtoValue)>) -> ProtoValue {
        ProtoValue {
            kind: Some(Kind::Object(Struct {
                fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            })),
        }
    }

    fn host_with(namespace: Vec<(&str, ProtoValue)>) -> RecordedHost {
        let Some(Kind::Object(s)) = object(namespace).kind else {
            unreachable!()
        };
        let mut filter_metadata = BTreeMap::new();
        filter_metadata.insert(JWT_AUTHN.to_string(), s);
        // Another filter's metadata beside it, as RBAC leaves.
        filter_metadata.insert(
            "envoy.filters.http.rbac".into(),
            Struct {
                fields: [("shadow".to_string(), text("allowed"))].into(),
            },
        );
        RecordedHost::default().with("metadata", Metadata { filter_metadata }.encode_to_vec())
    }

    #[test]
    fn the_verified_payload_names_the_end_user() {
        let payload = object(vec![
            ("sub", text("alice")),
            ("iss", text("https://issuer.example")),
            (
                "aud",
                ProtoValue {
                    kind: Some(Kind::List(ListValue {
                        values: vec![text("orders"), text("billing")],
                    })),
                },
            ),
            ("email", text("alice@example.com")),
            (
                "level",
                ProtoValue {
                    kind: Some(Kind::Number(3.0)),
                },
            ),
            ("org", object(vec![("id", text("o-1"))])),
        ]);
        // Istio keys the payload by the issuer.
        let host = host_with(vec![("https://issuer.example", payload)]);
        let claims = [
            "email".to_string(),
            "level".into(),
            "org".into(),
            "absent".into(),
        ];
        let mut e = AuditEvent::new(EventKind::Http);
        let mut a = Anomalies::default();
        EndUser::new(&claims).write(&host, &mut e, &mut a);
        assert_eq!(e.get_str(attr::ENDUSER_ID), Some("alice"));
        assert_eq!(
            e.get_str(attr::ENDUSER_ISSUER),
            Some("https://issuer.example")
        );
        assert_eq!(
            e.get(attr::ENDUSER_AUDIENCE),
            Some(&Value::StrList(vec!["orders".into(), "billing".into()]))
        );
        assert_eq!(
            e.get_str("meshaudit.enduser.claim.email"),
            Some("alice@example.com")
        );
        assert_eq!(e.get_str("meshaudit.enduser.claim.level"), Some("3"));
        assert_eq!(
            e.get_str("meshaudit.enduser.claim.org"),
            Some(r#"{"id":"o-1"}"#)
        );
        assert_eq!(e.get("meshaudit.enduser.claim.absent"), None);
        assert!(a.0.is_empty());
    }

    /// A host whose attributes were evaluated as one list: it says whether a payload is there.
    struct Evaluated(RecordedHost, bool);

    impl Host for Evaluated {
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            if path == JWT_PAYLOAD_PRESENT {
                return Some(vec![u8::from(self.1)]);
            }
            self.0.property(path)
        }
        fn evaluated(&self) -> bool {
            true
        }
    }

    #[test]
    fn the_metadata_is_read_only_when_the_list_says_a_payload_is_there() {
        for (present, read) in [(true, true), (false, false)] {
            let host = Evaluated(
                host_with(vec![("p", object(vec![("sub", text("alice"))]))]),
                present,
            );
            let mut e = AuditEvent::new(EventKind::Http);
            EndUser::new(&[]).write(&host, &mut e, &mut Anomalies::default());
            assert_eq!(e.get_str(attr::ENDUSER_ID).is_some(), read);
        }
    }

    #[test]
    fn no_token_no_end_user_and_bad_bytes_are_noted_not_fatal() {
        let mut e = AuditEvent::new(EventKind::Http);
        let mut a = Anomalies::default();
        EndUser::new(&[]).write(&RecordedHost::default(), &mut e, &mut a);
        assert!(e.attributes.is_empty() && a.0.is_empty());
        let bad = RecordedHost::default().with("metadata", vec![0xff, 0xff]);
        EndUser::new(&[]).write(&bad, &mut e, &mut a);
        assert!(e.attributes.is_empty());
        assert_eq!(a.0, vec!["undecodable:metadata".to_string()]);
        // A single-string audience is a list of one.
        let host = host_with(vec![("p", object(vec![("aud", text("orders"))]))]);
        EndUser::new(&[]).write(&host, &mut e, &mut a);
        assert_eq!(
            e.get(attr::ENDUSER_AUDIENCE),
            Some(&Value::StrList(vec!["orders".into()]))
        );
        assert_eq!(e.get(attr::ENDUSER_ID), None);
    }
}
