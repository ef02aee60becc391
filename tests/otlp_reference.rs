//! The hand-written encoders pinned to references, natively.
//!
//! - OTLP/protobuf (`src/encode/otlp.rs`): what meshaudit sends is decoded with the message types
//!   generated from the OpenTelemetry protocol's own `.proto` files (the `opentelemetry-proto`
//!   crate, not the hand-kept mirror in `encode::otlp::proto`), and every field is compared with
//!   the event that was encoded: the resource's attributes, the scope, both timestamps, severity,
//!   trace and span ids, `event_name`, the body, and every attribute of every value type (string,
//!   int, bool, string list, empty list). Lengths cross the varint boundaries (127/128 and
//!   16383/16384 bytes), and the whole path is covered: `Codec` directly, a `Pipeline`'s export
//!   body, and the gRPC frame around it.
//! - JSON lines (`src/encode/json.rs`; meshaudit has no OTLP/JSON): each line read by
//!   serde_json, its times by chrono's RFC 3339 reader, every field compared with the event.
#![cfg(not(target_arch = "wasm32"))]
// A test may panic: the crate's no-unwrap lints are for the filter itself (clippy's
// allow-*-in-tests covers `#[test]` functions, not this file's helpers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use chrono::DateTime;
use meshaudit::config::Format;
use meshaudit::encode::{otlp, Codec};
use meshaudit::event::{attr, AuditEvent, EventKind, Resource, Value, MAX_VALUE_BYTES};
use meshaudit::pipeline::Pipeline;
use meshaudit::plugin::Plugin;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Pv;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use prost::Message;

fn resource() -> Resource {
    vec![
        ("service.name", "checkout".to_string()),
        ("k8s.namespace.name", "payments".to_string()),
        ("k8s.pod.name", "checkout-7c9d8b6f5-x2x9q".to_string()),
        ("meshaudit.workload.name", "chéckout \"quoted\"".to_string()),
        ("empty", String::new()),
    ]
}

/// An HTTP event with every value type and lengths across the varint boundaries.
fn http_event() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Http);
    e.start_unix_nano = 1_700_000_000_000_000_001;
    e.observed_unix_nano = 1_700_000_000_500_000_999;
    e.trace_id = Some([
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ]);
    e.span_id = Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    e.set(attr::HTTP_METHOD, Value::Str("POST".into()));
    e.set(attr::URL_PATH, Value::Str("/v1/payments/ü€😀".into()));
    e.set(attr::URL_QUERY, Value::Str(String::new()));
    e.set(attr::HTTP_STATUS, Value::Int(201));
    e.set(attr::SEQUENCE, Value::Int(i64::MAX));
    e.set(attr::DURATION_NS, Value::Int(-1));
    e.set("test.int.min", Value::Int(i64::MIN));
    e.set("test.int.zero", Value::Int(0));
    e.set(attr::MTLS, Value::Bool(true));
    e.set(attr::TLS_HANDSHAKE, Value::Bool(false));
    e.set(
        "meshaudit.peer.uri_sans",
        Value::StrList(vec![
            "spiffe://cluster.local/ns/shop/sa/orders".into(),
            String::new(),
            "é".repeat(64),
        ]),
    );
    e.set("http.request.header.x-empty", Value::StrList(vec![]));
    e.set("test.len.127", Value::Str("a".repeat(127)));
    e.set("test.len.128", Value::Str("b".repeat(128)));
    e.set("test.len.16383", Value::Str("c".repeat(16383)));
    e.set("test.len.16384", Value::Str("d".repeat(16384)));
    e.set(
        "test.list.long",
        Value::StrList((0..200).map(|i| format!("item-{i}")).collect()),
    );
    e.set(
        attr::REQUEST_BODY,
        Value::Str("{\"card\":\"****\",\"nul\":\"\u{0}\"}".into()),
    );
    e
}

/// A TCP event without trace context.
fn tcp_event() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Tcp);
    e.start_unix_nano = 1;
    e.observed_unix_nano = u64::MAX;
    e.set(attr::TCP_PHASE, Value::Str("close".into()));
    e.set(attr::TCP_DOWNSTREAM_RECEIVED, Value::Int(4096));
    e.set(attr::TCP_UPSTREAM_SENT, Value::Int(4096));
    e
}

/// A gap event: its body is built from its attributes.
fn gap_event() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Gap);
    e.start_unix_nano = 1_700_000_001_000_000_000;
    e.observed_unix_nano = 1_700_000_001_000_000_000;
    e.set(attr::GAP_FIRST_SEQUENCE, Value::Int(10));
    e.set(attr::GAP_LAST_SEQUENCE, Value::Int(19));
    e.set(attr::GAP_EVENTS, Value::Int(10));
    e.set(attr::GAP_REASON, Value::Str("buffer_full".into()));
    e
}

/// The reference value of an attribute.
fn reference(v: &Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => Pv::StringValue(s.clone()),
        Value::Int(i) => Pv::IntValue(*i),
        Value::Bool(b) => Pv::BoolValue(*b),
        Value::StrList(items) => Pv::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(Pv::StringValue(s.clone())),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(Pv::StringValue(v.to_string())),
        }),
        // Profiles' string-table index: 0 (unset) outside profiles.
        key_strindex: 0,
    }
}

/// Asserts that `r` is `e`, field by field.
fn assert_record(r: &LogRecord, e: &AuditEvent) {
    let what = e.kind.name();
    assert_eq!(
        r.time_unix_nano, e.start_unix_nano,
        "{what}: time_unix_nano"
    );
    assert_eq!(
        r.observed_time_unix_nano, e.observed_unix_nano,
        "{what}: observed_time_unix_nano"
    );
    assert_eq!(
        r.severity_number,
        SeverityNumber::Info as i32,
        "{what}: severity_number"
    );
    assert_eq!(r.severity_text, "INFO", "{what}: severity_text");
    assert_eq!(r.event_name, e.kind.name(), "{what}: event_name");
    assert_eq!(
        r.body,
        Some(AnyValue {
            value: Some(Pv::StringValue(e.summary()))
        }),
        "{what}: body"
    );
    assert_eq!(
        r.trace_id,
        e.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        "{what}: trace_id"
    );
    assert_eq!(
        r.span_id,
        e.span_id.map(|s| s.to_vec()).unwrap_or_default(),
        "{what}: span_id"
    );
    assert_eq!(
        (r.flags, r.dropped_attributes_count),
        (0, 0),
        "{what}: flags"
    );
    let keys: Vec<&str> = r.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let want_keys: Vec<&str> = e.attributes.iter().map(|a| a.key.as_ref()).collect();
    assert_eq!(keys, want_keys, "{what}: attribute keys, in order");
    for (got, want) in r.attributes.iter().zip(&e.attributes) {
        assert_eq!(
            got.value.as_ref(),
            Some(&reference(&want.value)),
            "{what}: attribute {}",
            want.key
        );
    }
}

/// Decodes an export body and asserts the envelope: one resource with `resource`'s
/// attributes, one scope (meshaudit, this crate's version). Returns the records.
fn decode_export(body: &[u8], resource: &Resource) -> Vec<LogRecord> {
    let req = ExportLogsServiceRequest::decode(body).expect("an ExportLogsServiceRequest");
    assert_eq!(req.resource_logs.len(), 1, "one ResourceLogs");
    let rl = &req.resource_logs[0];
    let res = rl.resource.as_ref().expect("a resource");
    let want: Vec<KeyValue> = resource.iter().map(|(k, v)| string_kv(k, v)).collect();
    assert_eq!(res.attributes, want, "resource attributes");
    assert_eq!(res.dropped_attributes_count, 0);
    assert!(res.entity_refs.is_empty());
    assert_eq!(rl.schema_url, "https://opentelemetry.io/schemas/1.44.0");
    assert_eq!(rl.scope_logs.len(), 1, "one ScopeLogs");
    let sl = &rl.scope_logs[0];
    let scope = sl.scope.as_ref().expect("a scope");
    assert_eq!(scope.name, "meshaudit");
    assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
    assert!(scope.attributes.is_empty() && scope.dropped_attributes_count == 0);
    assert_eq!(sl.schema_url, "https://opentelemetry.io/schemas/1.44.0");
    sl.log_records.clone()
}

#[test]
fn otlp_codec_output_decodes_with_the_reference_types() {
    let resource = resource();
    let codec = Codec::new(Format::Otlp, &resource);
    let events = [http_event(), tcp_event(), gap_event()];
    let mut records = Vec::new();
    for e in &events {
        codec.encode(e, &mut records);
    }
    let body = codec.frame(&records);
    let got = decode_export(&body, &resource);
    assert_eq!(got.len(), events.len());
    for (r, e) in got.iter().zip(&events) {
        assert_record(r, e);
    }
    // The reference types write the same bytes back: meshaudit's encoding is the canonical one
    // (fields in number order but observed_time_unix_nano, lengths minimal, defaults omitted
    // except those meshaudit always writes). Re-encoded, then decoded again, nothing changes.
    let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    let again = ExportLogsServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(again, req);
}

#[test]
fn an_empty_batch_and_an_empty_resource_still_decode() {
    let codec = Codec::new(Format::Otlp, &vec![]);
    let got = decode_export(&codec.frame(&[]), &vec![]);
    assert!(got.is_empty());
    let mut records = Vec::new();
    let e = AuditEvent::new(EventKind::Http);
    codec.encode(&e, &mut records);
    let got = decode_export(&codec.frame(&records), &vec![]);
    assert_eq!(got.len(), 1);
    assert_record(&got[0], &e);
}

/// A pipeline (default configuration, redaction off) given events: its export body is what the
/// filter sends over OTLP/HTTP; over gRPC the same message inside a gRPC frame.
#[test]
fn a_pipeline_export_decodes_with_the_reference_types() {
    // Integrity off: this compares the encoding of the events given, not the chain's own
    // attributes and the drain's checkpoint (ordinary attributes and events to the encoder).
    let plugin = Plugin::load(
        br#"{"redaction": {"defaults": false}, "integrity": {"enabled": false}}"#,
        |_| None,
    )
    .expect("the configuration loads");
    assert_eq!(plugin.config.format, Format::Otlp);
    let resource = resource();
    let stream_id = 0x0123_4567_89ab_cdef;
    let mut pipeline = Pipeline::new(plugin.config, plugin.redactor, &resource, stream_id);
    // Within the pipeline's limit on a value (event::MAX_VALUE_BYTES; longer ones are cut).
    let mut http = http_event();
    http.attributes.retain(|a| match &a.value {
        Value::Str(s) => s.len() <= MAX_VALUE_BYTES,
        _ => true,
    });
    assert!(http.attributes.len() > 10);
    let sent = [http, tcp_event()];
    for e in &sent {
        pipeline.accept(e.clone(), 1_000);
    }
    pipeline.flush_all();
    let export = pipeline.next_export(1_000).expect("a batch is due");
    assert!(pipeline.next_export(1_000).is_none(), "one batch");

    let framed = otlp::grpc_frame(&export.body);
    assert_eq!(framed[0], 0, "gRPC frame: not compressed");
    let len = u32::from_be_bytes(framed[1..5].try_into().unwrap());
    assert_eq!(len as usize, export.body.len(), "gRPC frame: length");
    assert_eq!(&framed[5..], export.body.as_slice());

    let got = decode_export(&framed[5..], &resource);
    assert_eq!(got.len(), sent.len());
    for (seq, (r, e)) in got.iter().zip(&sent).enumerate() {
        // The pipeline gives each event its place in the stream: uid, stream id, sequence.
        let mut want = e.clone();
        want.set(
            attr::LOG_RECORD_UID,
            Value::Str(
                r.attributes
                    .iter()
                    .find(|kv| kv.key == attr::LOG_RECORD_UID)
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        Pv::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .expect("a log.record.uid string"),
            ),
        );
        want.set(attr::STREAM_ID, Value::Str(format!("{stream_id:016x}")));
        want.set(attr::SEQUENCE, Value::Int(seq as i64));
        assert_record(r, &want);
    }
    let uids: Vec<_> = got
        .iter()
        .map(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == attr::LOG_RECORD_UID)
                .cloned()
        })
        .collect();
    assert_ne!(uids[0], uids[1], "each record its own uid");
}

/// JSON lines: every field of the line against the event.
#[test]
fn json_lines_read_back_with_serde_json_and_chrono() {
    let resource = resource();
    let codec = Codec::new(Format::Json, &resource);
    let events = [http_event(), tcp_event(), gap_event()];
    let mut out = Vec::new();
    for e in &events {
        codec.encode(e, &mut out);
    }
    assert_eq!(codec.frame(&out), out, "JSON lines are sent as they are");
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), events.len());
    for (line, e) in lines.iter().zip(&events) {
        let what = e.kind.name();
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{what}: not JSON: {err}"));
        let nanos = |key: &str| {
            let s = v[key]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {key} a string"));
            let t =
                DateTime::parse_from_rfc3339(s).unwrap_or_else(|err| panic!("{what}: {s}: {err}"));
            assert!(s.ends_with('Z'), "{what}: {key} in UTC");
            u64::try_from(t.timestamp()).unwrap() * 1_000_000_000
                + u64::from(t.timestamp_subsec_nanos())
        };
        assert_eq!(nanos("time"), e.start_unix_nano, "{what}: time");
        assert_eq!(
            nanos("observed_time"),
            e.observed_unix_nano,
            "{what}: observed_time"
        );
        let mut want = serde_json::Map::new();
        want.insert("time".into(), v["time"].clone());
        want.insert("observed_time".into(), v["observed_time"].clone());
        want.insert("event_name".into(), e.kind.name().into());
        want.insert("body".into(), e.summary().into());
        if let Some(t) = e.trace_id {
            let hex: String = t.iter().map(|b| format!("{b:02x}")).collect();
            want.insert("trace_id".into(), hex.into());
        }
        if let Some(s) = e.span_id {
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            want.insert("span_id".into(), hex.into());
        }
        for a in &e.attributes {
            let value = match &a.value {
                Value::Str(s) => serde_json::Value::from(s.as_str()),
                Value::Int(i) => serde_json::Value::from(*i),
                Value::Bool(b) => serde_json::Value::from(*b),
                Value::StrList(items) => serde_json::Value::from(items.clone()),
            };
            want.insert(a.key.to_string(), value);
        }
        for (k, val) in &resource {
            want.insert((*k).to_string(), val.as_str().into());
        }
        assert_eq!(v, want, "{what}: the whole line");
        // Field order: the envelope first, then the attributes, then the resource.
        let ordered: OrderedMap = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = ordered.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), want.len(), "{what}: no member twice");
        let mut order: Vec<&str> = vec!["time", "observed_time", "event_name", "body"];
        order.extend(e.trace_id.map(|_| "trace_id"));
        order.extend(e.span_id.map(|_| "span_id"));
        order.extend(e.attributes.iter().map(|a| a.key.as_ref()));
        order.extend(resource.iter().map(|(k, _)| *k));
        assert_eq!(keys, order, "{what}: member order");
    }
}

/// A JSON object's members in the order they are written (serde_json's `Map` sorts them).
struct OrderedMap(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OrderedMap, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V)
    }
}
