//! A trail's events as the verifier reads them back from a store: meshaudit's JSON lines,
//! OTLP/JSON (`ExportLogsServiceRequest`, one per line as the OpenTelemetry Collector's file
//! exporter writes) and OTLP protobuf export requests.

use std::borrow::Cow;

use chrono::DateTime;
use prost::Message;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::key_index::{Found, KeyIndex};
use crate::encode::otlp::proto;
use crate::event::{attr, Value};
use crate::integrity::canonical::{self, Envelope, RESOURCE_KEYS};
use crate::integrity::chain::{self, Link};

/// One event read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub event_name: String,
    pub start_ns: u64,
    pub observed_ns: u64,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub body: String,
    /// Record attributes and meshaudit's resource attributes (the chain value among them).
    pub attributes: Vec<(String, Value)>,
    /// Where it was read (`FILE:LINE`), for messages.
    pub origin: String,
    /// Where its keys are, when its reader knows ([`KeyIndex`]); else keys are searched.
    pub(super) index: KeyIndex,
}

/// A fixed list of keys looked up in many records: their positions are found once per key
/// index build (records of one build have the same keys at the same positions, see
/// [`KeyIndex`]), so each record's values are then read by position.
#[derive(Debug, Clone)]
pub struct KeyPositions<const N: usize> {
    keys: [&'static str; N],
    /// The build the positions were found for (0: none yet, or a record without an index).
    build: u64,
    at: [Option<usize>; N],
}

impl<const N: usize> KeyPositions<N> {
    pub fn new(keys: [&'static str; N]) -> KeyPositions<N> {
        KeyPositions {
            keys,
            build: 0,
            at: [None; N],
        }
    }

    /// The values of the keys in `r`, in the keys' order.
    pub fn values<'r>(&mut self, r: &'r Record) -> [Option<&'r Value>; N] {
        let build = r.index.build_number();
        if build == 0 || build != self.build {
            self.at = self.keys.map(|k| r.position(k));
            self.build = build;
        }
        self.at
            .map(|at| at.and_then(|i| r.attributes.get(i)).map(|(_, v)| v))
    }
}

/// JSON-lines fields that are the log record's own, not attributes (`json_line` relies on this
/// order: time, observed time, event name, body, trace id, span id).
pub(super) const ENVELOPE_FIELDS: [&str; 6] = [
    "time",
    "observed_time",
    "event_name",
    "body",
    "trace_id",
    "span_id",
];

impl Record {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key)
            .and_then(|i| self.attributes.get(i))
            .map(|(_, v)| v)
    }

    /// The position of `key` among the attributes (the last, when repeated, as in the
    /// canonical form).
    pub fn position(&self, key: &str) -> Option<usize> {
        let attrs = &self.attributes;
        let key_at = |i: usize| attrs.get(i).map(|(k, _)| k.as_str());
        match self.index.find(key, key_at, attrs.len()) {
            Found::At(i) => Some(i),
            Found::Absent => None,
            Found::Unknown => attrs.iter().rposition(|(k, _)| k == key),
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn stream_id(&self) -> Option<&str> {
        self.str(attr::STREAM_ID)
    }

    pub fn sequence(&self) -> Option<u64> {
        self.int(attr::SEQUENCE).and_then(|i| u64::try_from(i).ok())
    }

    /// The stored chain value (`None` when absent or not 64 hex digits).
    pub fn chain(&self) -> Option<Link> {
        self.str(attr::CHAIN).and_then(chain::from_hex)
    }

    /// Sets an attribute, replacing any of the same key.
    pub fn set(&mut self, key: &str, value: Value) {
        self.index = KeyIndex::default();
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key.to_string(), value)),
        }
    }

    /// Appends the canonical bytes.
    pub fn canonical(&self, out: &mut Vec<u8>) {
        self.canonical_with(out, &mut ShapeCache::default());
    }

    /// Appends the canonical bytes, reusing the shape `cache` holds: matched against this
    /// record's keys unless it was matched for the same key index build (see
    /// [`KeyIndex::build_number`]), whose records have the same keys at the same positions.
    pub fn canonical_with(&self, out: &mut Vec<u8>, cache: &mut ShapeCache) {
        let build = self.index.build_number();
        let attrs = &self.attributes;
        let at = |i: usize| attrs.get(i).map(|(k, v)| (k.as_str(), v));
        if build != 0 && build == cache.build {
            canonical::write_shaped(out, &cache.shape, &self.envelope(), at);
        } else {
            canonical::write_indexed(out, &mut cache.shape, &self.envelope(), attrs.len(), at);
            cache.build = build;
        }
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            event_name: &self.event_name,
            start_ns: self.start_ns,
            observed_ns: self.observed_ns,
            trace_id: self.trace_id.as_ref(),
            span_id: self.span_id.as_ref(),
            body: &self.body,
        }
    }
}

/// The shape of the last record's canonical form, and the key index build it was matched for
/// (0: a record without an index).
#[derive(Debug, Default)]
pub struct ShapeCache {
    shape: canonical::Shape,
    build: u64,
}

/// What one line of text holds: meshaudit JSON line (one event) or an OTLP/JSON export
/// request (any number). Blank lines hold nothing.
pub fn from_json_line(line: &str, origin: &str) -> Result<Vec<Record>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    if !line.contains("\"resourceLogs\"") {
        let fields: Fields<'_> =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        return from_meshaudit_fields(fields.0, origin).map(|r| vec![r]);
    }
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    if obj.contains_key("resourceLogs") {
        return from_otlp_json(&v, origin);
    }
    let fields = obj
        .iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), field_of(v)))
        .collect();
    from_meshaudit_fields(fields, origin).map(|r| vec![r])
}

fn field_of(v: &serde_json::Value) -> Field<'_> {
    match v {
        serde_json::Value::String(s) => Field::Text(Cow::Borrowed(s.as_str())),
        serde_json::Value::Bool(b) => Field::Bool(*b),
        serde_json::Value::Number(n) => n.as_i64().map_or(Field::Other, Field::Int),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(Cow::Borrowed))
            .collect::<Option<_>>()
            .map_or(Field::Other, Field::List),
        _ => Field::Other,
    }
}

/// A JSON line's field value, borrowed from the line where it has no escapes.
#[derive(Debug)]
enum Field<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    List(Vec<Cow<'a, str>>),
    /// Any other JSON value (an unexpected type).
    Other,
}

/// A JSON object's fields in line order (a repeated key stays repeated: the last counts).
struct Fields<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

/// A JSON string, borrowed where it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Field::Other, Field::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Field::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                let mut all_text = true;
                while let Some(item) = seq.next_element::<Field<'de>>()? {
                    match item {
                        Field::Text(t) => items.push(t),
                        _ => all_text = false,
                    }
                }
                Ok(if all_text {
                    Field::List(items)
                } else {
                    Field::Other
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(80));
                while let Some((k, v)) = map.next_entry::<Text<'de>, Field<'de>>()? {
                    out.push((k.0, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A meshaudit JSON line's record from its fields.
fn from_meshaudit_fields(
    fields: Vec<(Cow<'_, str>, Field<'_>)>,
    origin: &str,
) -> Result<Record, String> {
    let text = |k: &str| {
        fields
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| match v {
                Field::Text(t) => Some(t.as_ref()),
                _ => None,
            })
    };
    let time = |k: &str| -> Result<u64, String> {
        let t = text(k).ok_or_else(|| format!("no {k:?}"))?;
        parse_rfc3339(t).ok_or_else(|| format!("{k:?} is not an RFC 3339 time: {t:?}"))
    };
    let mut record = Record {
        event_name: text("event_name").ok_or("no \"event_name\"")?.to_string(),
        start_ns: time("time")?,
        observed_ns: time("observed_time")?,
        trace_id: hex_id(text("trace_id"))?,
        span_id: hex_id(text("span_id"))?,
        body: text("body").unwrap_or_default().to_string(),
        attributes: Vec::with_capacity(fields.len()),
        origin: origin.to_string(),
        index: KeyIndex::default(),
    };
    for (k, v) in fields {
        if ENVELOPE_FIELDS.contains(&k.as_ref()) {
            continue;
        }
        let value = match v {
            Field::Text(t) => Value::Str(t.into_owned()),
            Field::Int(i) => Value::Int(i),
            Field::Bool(b) => Value::Bool(b),
            Field::List(items) => Value::StrList(items.into_iter().map(Cow::into_owned).collect()),
            Field::Other => return Err(format!("field {k:?} has an unexpected type")),
        };
        record.attributes.push((k.into_owned(), value));
    }
    Ok(record)
}

/// RFC 3339 to Unix nanoseconds (lossless for the nanosecond times meshaudit writes).
pub fn parse_rfc3339(t: &str) -> Option<u64> {
    let d = DateTime::parse_from_rfc3339(t).ok()?;
    let secs = u64::try_from(d.timestamp()).ok()?;
    secs.checked_mul(1_000_000_000)?
        .checked_add(u64::from(d.timestamp_subsec_nanos()))
}

pub(super) fn hex_id<const N: usize>(text: Option<&str>) -> Result<Option<[u8; N]>, String> {
    let Some(t) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bytes =
        super::super::checkpoint::hex_bytes(t).ok_or_else(|| format!("{t:?} is not a hex id"))?;
    bytes
        .try_into()
        .map(Some)
        .map_err(|_| format!("{t:?} is not a {N}-byte id"))
}

/// The events of an OTLP/JSON `ExportLogsServiceRequest`.
fn from_otlp_json(v: &serde_json::Value, origin: &str) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let list = |v: &serde_json::Value, k: &str| -> Vec<serde_json::Value> {
        v.get(k)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    for rl in list(v, "resourceLogs") {
        let resource = rl
            .get("resource")
            .map(|r| otlp_json_attributes(r, true))
            .transpose()?
            .unwrap_or_default();
        for sl in list(&rl, "scopeLogs") {
            for r in list(&sl, "logRecords") {
                let mut attributes = otlp_json_attributes(&r, false)?;
                attributes.extend(resource.iter().cloned());
                let num = |k: &str| -> u64 {
                    match r.get(k) {
                        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                        Some(n) => n.as_u64().unwrap_or(0),
                        None => 0,
                    }
                };
                let text = |k: &str| r.get(k).and_then(|x| x.as_str());
                out.push(Record {
                    event_name: text("eventName").unwrap_or_default().to_string(),
                    start_ns: num("timeUnixNano"),
                    observed_ns: num("observedTimeUnixNano"),
                    trace_id: hex_id(text("traceId"))?,
                    span_id: hex_id(text("spanId"))?,
                    body: r
                        .get("body")
                        .and_then(|b| b.get("stringValue"))
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    attributes,
                    origin: origin.to_string(),
                    index: KeyIndex::default(),
                });
            }
        }
    }
    Ok(out)
}

/// `attributes` of an OTLP/JSON object; for a resource only meshaudit's own keys.
fn otlp_json_attributes(
    v: &serde_json::Value,
    resource: bool,
) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for kv in v
        .get("attributes")
        .and_then(|a| a.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = kv.get("key").and_then(|k| k.as_str()).unwrap_or_default();
        if resource && !RESOURCE_KEYS.contains(&key) {
            continue;
        }
        let Some(value) = kv.get("value").and_then(otlp_json_value) else {
            continue;
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn otlp_json_value(v: &serde_json::Value) -> Option<Value> {
    if let Some(s) = v.get("stringValue").and_then(|s| s.as_str()) {
        return Some(Value::Str(s.to_string()));
    }
    if let Some(b) = v.get("boolValue").and_then(serde_json::Value::as_bool) {
        return Some(Value::Bool(b));
    }
    if let Some(i) = v.get("intValue") {
        // proto3 JSON writes int64 as a string; accept a number too.
        return match i {
            serde_json::Value::String(s) => s.parse().ok().map(Value::Int),
            n => n.as_i64().map(Value::Int),
        };
    }
    if let Some(a) = v.get("arrayValue") {
        let items = a
            .get("values")
            .and_then(|x| x.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        return Some(Value::StrList(
            items
                .iter()
                .filter_map(|i| i.get("stringValue").and_then(|s| s.as_str()))
                .map(str::to_string)
                .collect(),
        ));
    }
    None
}

/// The events of one OTLP protobuf `ExportLogsServiceRequest`.
pub fn from_otlp_proto(bytes: &[u8], origin: &str) -> Result<Vec<Record>, String> {
    use proto::any_value::Value as Pv;
    let req = proto::ExportLogsServiceRequest::decode(bytes)
        .map_err(|e| format!("not an OTLP ExportLogsServiceRequest: {e}"))?;
    let value = |v: Option<proto::AnyValue>| -> Option<Value> {
        Some(match v?.value? {
            Pv::StringValue(s) => Value::Str(s),
            Pv::BoolValue(b) => Value::Bool(b),
            Pv::IntValue(i) => Value::Int(i),
            Pv::ArrayValue(a) => Value::StrList(
                a.values
                    .into_iter()
                    .filter_map(|v| match v.value {
                        Some(Pv::StringValue(s)) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
            Pv::DoubleValue(_) => return None,
        })
    };
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource: Vec<(String, Value)> = rl
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default()
            .into_iter()
            .filter(|kv| RESOURCE_KEYS.contains(&kv.key.as_str()))
            .filter_map(|kv| Some((kv.key, value(kv.value)?)))
            .collect();
        for sl in rl.scope_logs {
            for r in sl.log_records {
                let mut attributes: Vec<(String, Value)> = r
                    .attributes
                    .into_iter()
                    .filter_map(|kv| Some((kv.key, value(kv.value)?)))
                    .collect();
                attributes.extend(resource.iter().cloned());
                let body = match r.body.and_then(|b| b.value) {
                    Some(Pv::StringValue(s)) => s,
                    _ => String::new(),
                };
                out.push(Record {
                    event_name: r.event_name,
                    start_ns: r.time_unix_nano,
                    observed_ns: r.observed_time_unix_nano,
                    trace_id: r.trace_id.as_slice().try_into().ok(),
                    span_id: r.span_id.as_slice().try_into().ok(),
                    body,
                    attributes,
                    origin: origin.to_string(),
                    index: KeyIndex::default(),
                });
            }
        }
    }
    Ok(out)
}

/// Whether an attribute key is one of meshaudit's resource attributes.
pub fn is_resource_key(key: &str) -> bool {
    RESOURCE_KEYS.contains(&key)
}
