//! JSON lines: one flat JSON object per event, for HTTP receivers that take newline-delimited
//! JSON (ClickHouse `JSONEachRow`, Vector, Fluent Bit). Each line carries the resource
//! attributes too, so a line stands on its own in a store.

use chrono::{DateTime, SecondsFormat};

use crate::event::Resource;
use crate::event::{AuditEvent, Value};
use crate::hex;

#[derive(Debug, Clone)]
pub struct JsonCodec {
    /// `,"key":"value"` for every resource attribute, rendered once.
    resource_fields: Vec<u8>,
}

impl JsonCodec {
    pub fn new(resource: &Resource) -> JsonCodec {
        let mut resource_fields = Vec::new();
        for (k, v) in resource {
            field(&mut resource_fields, k);
            string(&mut resource_fields, v);
        }
        JsonCodec { resource_fields }
    }

    /// Appends the event as one line.
    pub fn encode(&self, e: &AuditEvent, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        string(out, &rfc3339(e.start_unix_nano));
        field(out, "observed_time");
        string(out, &rfc3339(e.observed_unix_nano));
        field(out, "event_name");
        string(out, e.kind.name());
        field(out, "body");
        string(out, &e.summary());
        if let Some(t) = &e.trace_id {
            field(out, "trace_id");
            string(out, &hex::encode(t));
        }
        if let Some(s) = &e.span_id {
            field(out, "span_id");
            string(out, &hex::encode(s));
        }
        for a in &e.attributes {
            field(out, &a.key);
            match &a.value {
                Value::Str(s) => string(out, s),
                Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
                Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::StrList(items) => {
                    out.push(b'[');
                    for (i, s) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        string(out, s);
                    }
                    out.push(b']');
                }
            }
        }
        out.extend_from_slice(&self.resource_fields);
        out.extend_from_slice(b"}\n");
    }
}

/// `,"key":`
fn field(out: &mut Vec<u8>, key: &str) {
    out.push(b',');
    string(out, key);
    out.push(b':');
}

/// A JSON string with serde_json's escaping (writing to a Vec cannot fail).
fn string(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// RFC 3339 with nanoseconds, UTC: `2023-11-14T22:13:20.000000001Z`.
pub fn rfc3339(unix_nano: u64) -> String {
    let secs = i64::try_from(unix_nano / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = u32::try_from(unix_nano % 1_000_000_000).unwrap_or(0);
    DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{attr, EventKind};
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn one_flat_object_per_line() {
        let codec = JsonCodec::new(&vec![("k8s.namespace.name", "payments".into())]);
        let mut e = AuditEvent::new(EventKind::Http);
        e.start_unix_nano = 1_700_000_000_000_000_001;
        e.observed_unix_nano = 1_700_000_000_000_000_002;
        e.trace_id = Some([0xab; 16]);
        e.set(attr::HTTP_METHOD, Value::Str("GET".into()));
        e.set(attr::URL_PATH, Value::Str("/a\"b\n\u{1}".into()));
        e.set(attr::HTTP_STATUS, Value::Int(503));
        e.set(attr::MTLS, Value::Bool(false));
        e.set(
            "meshaudit.peer.uri_sans",
            Value::StrList(vec!["x".into(), "y".into()]),
        );
        let mut out = Vec::new();
        codec.encode(&e, &mut out);
        codec.encode(&e, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000001Z");
        assert_eq!(v["event_name"], "meshaudit.http");
        assert_eq!(v["trace_id"], "ab".repeat(16));
        assert!(v.get("span_id").is_none());
        assert_eq!(v["url.path"], "/a\"b\n\u{1}");
        assert_eq!(v["http.response.status_code"], 503);
        assert_eq!(v["meshaudit.tls.mtls"], false);
        assert_eq!(v["meshaudit.peer.uri_sans"], serde_json::json!(["x", "y"]));
        assert_eq!(v["k8s.namespace.name"], "payments");
    }

    #[test]
    fn rfc3339_edges() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert!(!rfc3339(u64::MAX).is_empty());
    }
}
