//! The pipeline of one worker: an event is stamped with its stream position, encoded into the
//! batcher, and later handed to the host as an export; the collector's answer settles it.
//! Counts everything it does in [`Stats`], which the host publishes as Envoy metrics.

use std::collections::HashMap;

use crate::capture::body::BodyPolicy;
use crate::capture::http::HttpCapture;
use crate::capture::node::Resource;
use crate::config::{Config, ConfigError};
use crate::deliver::batcher::Batcher;
use crate::deliver::outcome::Outcome;
use crate::encode::Codec;
use crate::event::{attr, AuditEvent, Value};
use crate::redact::Redactor;

/// A configuration, checked and compiled: what `on_configure` needs.
pub struct Loaded {
    pub config: Config,
    pub redactor: Redactor,
    pub bodies: BodyPolicy,
}

/// Parses and compiles a plugin configuration. `env` reads an environment variable (the hash
/// key lives in one, never in the configuration text).
pub fn load(raw: &[u8], env: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Loaded, ConfigError> {
    let config = Config::parse(raw)?;
    let key = env(&config.redaction.hash_key_env).filter(|k| !k.is_empty());
    let redactor = Redactor::compile(&config.redaction, key)?;
    let bodies = BodyPolicy::compile(&config.body_capture)?;
    Ok(Loaded {
        config,
        redactor,
        bodies,
    })
}

/// Counter increments not yet published to the host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events_captured: u64,
    pub events_sent: u64,
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub events_dropped: u64,
    pub events_rejected: u64,
    pub bytes_sent: u64,
}

/// A batch ready to go: the request body and what it holds.
#[derive(Debug)]
pub struct Export {
    pub body: Vec<u8>,
    pub meta: ExportMeta,
}

/// What an export in flight holds, to settle it when the answer comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportMeta {
    pub events: u32,
    /// Encoded record bytes (what the batcher counts against its buffer).
    pub record_bytes: usize,
    pub body_bytes: usize,
    pub first_seq: u64,
    pub last_seq: u64,
}

pub struct Pipeline {
    config: Config,
    capture: HttpCapture,
    codec: Codec,
    redactor: Redactor,
    batcher: Batcher,
    stream_id: u64,
    stream_hex: String,
    next_seq: u64,
    in_flight: HashMap<u32, ExportMeta>,
    stats: Stats,
    scratch: Vec<u8>,
}

impl Pipeline {
    /// `stream_id` names this worker's event stream; it should be random per VM instance.
    pub fn new(
        config: Config,
        redactor: Redactor,
        resource: &Resource,
        stream_id: u64,
    ) -> Pipeline {
        Pipeline {
            capture: HttpCapture::new(&config),
            codec: Codec::new(config.format, resource),
            redactor,
            batcher: Batcher::new(&config),
            stream_hex: format!("{stream_id:016x}"),
            stream_id,
            next_seq: 0,
            in_flight: HashMap::new(),
            stats: Stats::default(),
            scratch: Vec::with_capacity(4096),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn capture(&self) -> &HttpCapture {
        &self.capture
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Takes one event: redacts it, gives it the next sequence number of this stream, encodes
    /// it and queues it. An event that does not fit the buffer is dropped and counted.
    pub fn accept(&mut self, mut event: AuditEvent, now_ms: u64) {
        self.redactor.redact(&mut event);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.events_captured += 1;
        event.set(
            attr::LOG_RECORD_UID,
            Value::Str(event_uid(self.stream_id, seq)),
        );
        event.set(attr::STREAM_ID, Value::Str(self.stream_hex.clone()));
        event.set(
            attr::SEQUENCE,
            Value::Int(i64::try_from(seq).unwrap_or(i64::MAX)),
        );
        self.scratch.clear();
        self.codec.encode(&event, &mut self.scratch);
        if self.batcher.push(&self.scratch, seq, now_ms).is_err() {
            self.stats.events_dropped += 1;
        }
    }

    /// The next batch due for sending, framed for the wire.
    pub fn next_export(&mut self, now_ms: u64) -> Option<Export> {
        let batch = self.batcher.next_due(now_ms)?;
        let body = self.codec.frame(&batch.records);
        let meta = ExportMeta {
            events: batch.events,
            record_bytes: batch.records.len(),
            body_bytes: body.len(),
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
        };
        Some(Export { body, meta })
    }

    /// Seals the open batch so the next [`Pipeline::next_export`] returns it at once.
    pub fn flush_all(&mut self) {
        self.batcher.flush_all();
    }

    /// The host dispatched an export; its answer will come under `token`.
    pub fn dispatched(&mut self, token: u32, meta: ExportMeta) {
        self.in_flight.insert(token, meta);
    }

    /// The host could not dispatch an export at all.
    pub fn dispatch_failed(&mut self, meta: ExportMeta) {
        self.settle(meta, Outcome::Failed { status: None });
    }

    /// The answer to the export under `token` arrived (or it timed out).
    pub fn completed(&mut self, token: u32, outcome: Outcome) {
        if let Some(meta) = self.in_flight.remove(&token) {
            self.settle(meta, outcome);
        }
    }

    fn settle(&mut self, meta: ExportMeta, outcome: Outcome) {
        self.batcher.release(meta.record_bytes, meta.events);
        match outcome {
            Outcome::Delivered { rejected } => {
                let rejected = rejected.min(u64::from(meta.events));
                self.stats.batches_sent += 1;
                self.stats.events_sent += u64::from(meta.events) - rejected;
                self.stats.events_rejected += rejected;
                self.stats.bytes_sent += meta.body_bytes as u64;
            }
            Outcome::Failed { .. } => {
                self.stats.batches_failed += 1;
                self.stats.events_dropped += u64::from(meta.events);
            }
        }
    }

    /// Whether any export awaits an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether anything is still waiting to be sent.
    pub fn has_pending(&self) -> bool {
        self.batcher.has_pending()
    }

    /// Counter increments since the last call.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }
}

/// `0123456789abcdef…`: the event id of a stream position, as [`Pipeline::accept`] writes it.
pub fn event_uid(stream_id: u64, seq: u64) -> String {
    format!("{stream_id:016x}{seq:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::otlp::proto::ExportLogsServiceRequest;
    use crate::event::EventKind;
    use prost::Message;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn redactor() -> Redactor {
        Redactor::compile(&Default::default(), None).unwrap()
    }

    fn pipeline(max_batch_events: u32) -> Pipeline {
        let config = Config {
            max_batch_events,
            ..Config::default()
        };
        Pipeline::new(
            config,
            redactor(),
            &vec![("service.name", "checkout".into())],
            0xabc,
        )
    }

    #[test]
    fn events_get_consecutive_sequence_numbers_and_unique_ids() {
        let mut p = pipeline(2);
        for _ in 0..2 {
            p.accept(AuditEvent::new(EventKind::Http), 0);
        }
        let export = p.next_export(0).unwrap();
        assert_eq!(
            (
                export.meta.events,
                export.meta.first_seq,
                export.meta.last_seq
            ),
            (2, 0, 1)
        );
        let req = ExportLogsServiceRequest::decode(export.body.as_slice()).unwrap();
        let records = &req.resource_logs[0].scope_logs[0].log_records;
        let uid = |i: usize| {
            records[i]
                .attributes
                .iter()
                .find(|a| a.key == attr::LOG_RECORD_UID)
                .unwrap()
                .value
                .clone()
        };
        assert_ne!(uid(0), uid(1));
        assert_eq!(
            format!("{:?}", uid(1)),
            format!(
                "{:?}",
                Some(crate::encode::otlp::proto::AnyValue {
                    value: Some(crate::encode::otlp::proto::any_value::Value::StringValue(
                        event_uid(0xabc, 1)
                    ))
                })
            )
        );
    }

    #[test]
    fn answers_settle_the_counters() {
        let mut p = pipeline(1);
        for _ in 0..3 {
            p.accept(AuditEvent::new(EventKind::Http), 0);
        }
        let a = p.next_export(0).unwrap();
        let b = p.next_export(0).unwrap();
        let c = p.next_export(0).unwrap();
        p.dispatched(1, a.meta);
        p.dispatched(2, b.meta);
        p.dispatch_failed(c.meta);
        assert_eq!(p.in_flight(), 2);
        p.completed(1, Outcome::Delivered { rejected: 0 });
        p.completed(2, Outcome::Failed { status: Some(503) });
        p.completed(99, Outcome::Delivered { rejected: 0 });
        let s = p.take_stats();
        assert_eq!(s.events_captured, 3);
        assert_eq!(s.events_sent, 1);
        assert_eq!(s.batches_sent, 1);
        assert_eq!(s.batches_failed, 2);
        assert_eq!(s.events_dropped, 2);
        assert_eq!(s.bytes_sent, a.meta.body_bytes as u64);
        assert_eq!(p.take_stats(), Stats::default(), "taking resets");
        assert!(!p.has_pending());
    }

    #[test]
    fn events_are_redacted_before_encoding() {
        let mut p = pipeline(1);
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(
            "http.request.header.authorization",
            Value::StrList(vec!["Bearer canary-token-123".into()]),
        );
        e.set(
            attr::URL_QUERY,
            Value::Str("api_key=canary-key&page=2".into()),
        );
        p.accept(e, 0);
        let body = p.next_export(0).unwrap().body;
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("canary"), "{text}");
        assert!(
            text.contains("page=2") && text.contains("default:2"),
            "{text}"
        );
    }

    #[test]
    fn load_names_the_field_at_fault() {
        let no_env = |_: &str| None;
        let e = load(
            br#"{"redaction": {"rules": [{"name": "r1", "query": ["a"], "action": "shred"}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("redaction.rules[0]"), "{e}");
        let e = load(
            br#"{"redaction": {"custom_detectors": [{"name": "emp", "pattern": "EMP-("}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("\"emp\"") && e.to_string().contains("invalid regex"),
            "{e}"
        );
        let e = load(
            br#"{"redaction": {"rules": [{"name": "j", "json": ["$."]}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("\"j\"") && e.to_string().contains("JSON path"),
            "{e}"
        );
        let e = load(br#"{"redaction": {"rules": [{"name": "h", "headers": ["x-user"], "action": "hash"}]}}"#, no_env).err().unwrap();
        assert_eq!(e.field, "redaction.hash_key_env");
        assert!(
            e.to_string().contains("MESHAUDIT_HASH_KEY") && e.to_string().contains("\"h\""),
            "{e}"
        );
        let with_key =
            |name: &str| (name == "MESHAUDIT_HASH_KEY").then(|| b"0123456789abcdef".to_vec());
        assert!(load(br#"{"redaction": {"rules": [{"name": "h", "headers": ["x-user"], "action": "hash"}]}}"#, with_key).is_ok());
        let e = load(br#"{"redaction": {"detectors": {"cards": false}}}"#, no_env)
            .err()
            .unwrap();
        assert_eq!(e.field, "redaction.detectors.cards");
        let e = load(
            br#"{"body_capture": [{"match": {"path_pattern": "x"}}]}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "body_capture[0].match");
    }

    #[test]
    fn overflow_is_counted() {
        let config = Config {
            max_batch_bytes: 1024,
            max_buffer_bytes: 1024,
            ..Config::default()
        };
        let mut p = Pipeline::new(config, redactor(), &vec![], 1);
        for _ in 0..50 {
            p.accept(AuditEvent::new(EventKind::Http), 0);
        }
        let s = p.take_stats();
        assert_eq!(s.events_captured, 50);
        assert!(s.events_dropped > 0 && s.events_dropped < 50, "{s:?}");
    }
}
