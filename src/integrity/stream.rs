//! One stream's integrity, as the pipeline drives it: each event is chained right after it is
//! sequenced, and checkpoints are due every `checkpoint_interval_ms` (and at drain) while
//! events were chained since the last one.

use super::canonical::{self, Envelope};
use super::chain::{self, Link};
use super::checkpoint::Checkpoint;
use super::keys::Signer;
use crate::config::{Integrity, Witness};
use crate::event::{attr, AuditEvent, Resource, Value};

/// The chain state of one stream.
#[derive(Debug)]
pub struct StreamIntegrity {
    stream_id: String,
    signer: Option<Signer>,
    interval_ms: u64,
    witness: bool,
    /// meshaudit's resource attributes, inside every event's canonical form.
    resource: Vec<(&'static str, Value)>,
    /// The last link; `None` before the first event.
    head: Option<Link>,
    /// The sequence number of the last chained event.
    last_chained: Option<u64>,
    /// The sequence number of the last checkpoint event.
    sealed_at: Option<u64>,
    last_checkpoint_ms: u64,
    previous_signature: String,
    checkpoints: u64,
    scratch: Vec<u8>,
    /// The shape of the last event's canonical form, and its body.
    shape: canonical::Shape,
    body: String,
    witness_lines: Vec<String>,
}

impl StreamIntegrity {
    pub fn new(stream_id: &str, resource: &Resource, settings: &Integrity) -> StreamIntegrity {
        StreamIntegrity {
            stream_id: stream_id.to_string(),
            signer: None,
            interval_ms: u64::from(settings.checkpoint_interval_ms),
            witness: settings.witness == Witness::Log,
            resource: resource
                .iter()
                .filter(|(k, _)| canonical::RESOURCE_KEYS.contains(k))
                .map(|(k, v)| (*k, Value::Str(v.clone())))
                .collect(),
            head: None,
            last_chained: None,
            sealed_at: None,
            last_checkpoint_ms: 0,
            previous_signature: String::new(),
            checkpoints: 0,
            scratch: Vec::with_capacity(4096),
            shape: canonical::Shape::default(),
            body: String::with_capacity(256),
            witness_lines: Vec::new(),
        }
    }

    /// Checkpoints are signed with this key from now on.
    pub fn set_signer(&mut self, signer: Option<Signer>) {
        self.signer = signer;
    }

    /// Chains a sequenced event (`meshaudit.stream.id`, `meshaudit.sequence` and
    /// `log.record.uid` already set): the stream's first event also gets the stream's start time
    /// and key id, then every event gets `meshaudit.chain`. Returns its link.
    pub fn chain(&mut self, event: &mut AuditEvent, seq: u64, now_ms: u64) -> Link {
        let prev = match self.head {
            Some(head) => head,
            None => {
                let start_ns = now_ms.saturating_mul(1_000_000);
                let key_id = self.signer.as_ref().map_or("", Signer::key_id).to_string();
                event.set(
                    attr::STREAM_START_TIME,
                    Value::Int(i64::try_from(start_ns).unwrap_or(i64::MAX)),
                );
                if !key_id.is_empty() {
                    event.set(attr::INTEGRITY_KEY_ID, Value::Str(key_id.clone()));
                }
                self.last_checkpoint_ms = now_ms;
                chain::genesis(&self.stream_id, &key_id, start_ns)
            }
        };
        let link = self.link_of(event, &prev);
        event.set(attr::CHAIN, Value::Str(chain::to_hex(&link)));
        self.head = Some(link);
        self.last_chained = Some(seq);
        link
    }

    /// The link of `event` after `prev` (the canonical form with this stream's resource).
    fn link_of(&mut self, event: &AuditEvent, prev: &Link) -> Link {
        self.body.clear();
        event.summary_into(&mut self.body);
        let envelope = Envelope {
            event_name: event.kind.name(),
            start_ns: event.start_unix_nano,
            observed_ns: event.observed_unix_nano,
            trace_id: event.trace_id.as_ref(),
            span_id: event.span_id.as_ref(),
            body: &self.body,
        };
        self.scratch.clear();
        let (record, resource) = (&event.attributes, &self.resource);
        canonical::write_indexed(
            &mut self.scratch,
            &mut self.shape,
            &envelope,
            record.len() + resource.len(),
            |i| match record.get(i) {
                Some(a) => Some((a.key.as_ref(), &a.value)),
                None => resource.get(i - record.len()).map(|(k, v)| (*k, v)),
            },
        );
        chain::link(prev, &self.scratch)
    }

    /// Whether a checkpoint is due: events were chained since the last one, and the interval
    /// has passed (or `drain`).
    pub fn checkpoint_due(&self, now_ms: u64, drain: bool) -> bool {
        let unsealed = self.last_chained.is_some() && self.last_chained != self.sealed_at;
        unsealed && (drain || now_ms.saturating_sub(self.last_checkpoint_ms) >= self.interval_ms)
    }

    /// The checkpoint event over everything chained so far, to be sequenced as `next_seq`
    /// (signed when there is a key; its witness line queued when the witness is on).
    pub fn checkpoint(&mut self, now_ms: u64, next_seq: u64) -> Option<AuditEvent> {
        let (last_sequence, chain_head) = (self.last_chained?, self.head?);
        let mut c = Checkpoint {
            stream_id: self.stream_id.clone(),
            last_sequence,
            chain_head,
            events: last_sequence.saturating_add(1),
            previous_signature: self.previous_signature.clone(),
            key_id: String::new(),
            signature: String::new(),
        };
        if let Some(signer) = &self.signer {
            c.sign(signer);
        }
        self.previous_signature = c.signature.clone();
        if self.witness {
            self.witness_lines.push(c.witness_line());
        }
        self.sealed_at = Some(next_seq);
        self.last_checkpoint_ms = now_ms;
        self.checkpoints += 1;
        Some(c.to_event(now_ms.saturating_mul(1_000_000)))
    }

    /// Witness lines for Envoy's log, taken by the host.
    pub fn take_witness_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.witness_lines)
    }

    /// Checkpoints emitted so far.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }
}
