//! The pipeline of one worker: an event is redacted, stamped with its stream position, encoded
//! into the batcher, and later handed to the host as an export; the collector's answer settles
//! it — delivered, retried with backoff, or lost and recorded. Losses are reported by gap events
//! once delivery works again. Counts everything it does in [`Stats`], which the host publishes
//! as Envoy metrics.

use crate::capture::http::HttpCapture;
use crate::config::{Config, Fallback, Overflow};
use crate::deliver::backoff::Backoff;
use crate::deliver::batcher::{Batch, Batcher};
use crate::deliver::fallback::LogFallback;
use crate::deliver::flights::{Export, ExportMeta, Flights};
use crate::deliver::loss::{Loss, LossLedger, LossReason};
use crate::deliver::outcome::Outcome;
use crate::deliver::stats::Stats;
use crate::encode::otlp;
use crate::encode::Codec;
use crate::event::Resource;
use crate::event::{attr, AuditEvent, EventKind, Value};
use crate::integrity::chain;
use crate::integrity::keys::Signer;
use crate::integrity::stream::StreamIntegrity;
use crate::redact::Redactor;

pub struct Pipeline {
    config: Config,
    capture: HttpCapture,
    codec: Codec,
    /// The log fallback, when it is on: JSON lines whatever the wire format.
    fallback: Option<LogFallback>,
    redactor: Redactor,
    batcher: Batcher,
    backoff: Backoff,
    stream_id: u64,
    stream_hex: String,
    next_seq: u64,
    flights: Flights,
    losses: LossLedger,
    /// The last sequence number already written to the log fallback by a drain's copy.
    copied_through: Option<u64>,
    stats: Stats,
    scratch: Vec<u8>,
    last_record_len: usize,
    /// The chain and checkpoints (`integrity.enabled`).
    integrity: Option<StreamIntegrity>,
    /// The latest time the pipeline was told (for a checkpoint at drain).
    now_ms: u64,
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
            fallback: (config.fallback == Fallback::Log).then(|| LogFallback::new(resource)),
            redactor,
            batcher: Batcher::new(&config),
            backoff: Backoff::new(&config.retry, stream_id),
            stream_hex: format!("{stream_id:016x}"),
            stream_id,
            next_seq: 0,
            flights: Flights::default(),
            losses: LossLedger::default(),
            copied_through: None,
            stats: Stats::default(),
            scratch: Vec::with_capacity(4096),
            last_record_len: 1024,
            integrity: config.integrity.enabled.then(|| {
                StreamIntegrity::new(&format!("{stream_id:016x}"), resource, &config.integrity)
            }),
            now_ms: 0,
            config,
        }
    }

    /// Checkpoints are signed with this key (`Plugin::signer`).
    pub fn with_signer(mut self, signer: Option<Signer>) -> Pipeline {
        if let Some(integrity) = &mut self.integrity {
            integrity.set_signer(signer);
        }
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn capture(&self) -> &HttpCapture {
        &self.capture
    }

    /// Takes one event: redacts it, gives it the next sequence number of this stream, encodes
    /// it and queues it. When the buffer is full the overflow policy decides what is lost; lost
    /// events go to the log fallback when it is on, else they are counted and recorded for a
    /// gap event.
    pub fn accept(&mut self, mut event: AuditEvent, now_ms: u64) {
        self.redactor.redact(&mut event);
        self.stats.events_captured += 1;
        self.enqueue(event, now_ms);
    }

    fn enqueue(&mut self, mut event: AuditEvent, now_ms: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        event.set(
            attr::LOG_RECORD_UID,
            Value::Str(event_uid(self.stream_id, seq)),
        );
        event.set(attr::STREAM_ID, Value::Str(self.stream_hex.clone()));
        event.set(
            attr::SEQUENCE,
            Value::Int(i64::try_from(seq).unwrap_or(i64::MAX)),
        );
        self.now_ms = self.now_ms.max(now_ms);
        let link = self
            .integrity
            .as_mut()
            .map(|i| i.chain(&mut event, seq, now_ms));
        self.scratch.clear();
        self.codec.encode(&event, &mut self.scratch);
        self.last_record_len = self.scratch.len();
        if self.config.overflow == Overflow::DropOldest {
            while !self.batcher.fits(self.scratch.len()) {
                match self.evict_oldest() {
                    Some(batch) => self.lose_batch(&batch, LossReason::BufferFull),
                    None => break,
                }
            }
        }
        if self.batcher.push(&self.scratch, seq, link, now_ms).is_err() {
            match &mut self.fallback {
                Some(fallback) => {
                    fallback.push_event(&event);
                    self.stats.fallback_lines += 1;
                }
                None => {
                    self.stats.lost(LossReason::BufferFull, 1);
                    self.losses.record(Loss {
                        first_seq: seq,
                        last_seq: seq,
                        events: 1,
                        reason: LossReason::BufferFull,
                        chain_head: link,
                    });
                }
            }
        }
    }

    /// The oldest batch not in flight, by sequence: a waiting retry or the batcher's oldest.
    fn evict_oldest(&mut self) -> Option<Batch> {
        let from_retries = match (self.flights.oldest_retry_seq(), self.batcher.oldest_seq()) {
            (Some(r), Some(b)) => r < b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_retries {
            let export = self.flights.take_oldest_retry()?;
            return Some(self.take_back(&export));
        }
        self.batcher.evict_oldest()
    }

    /// An export that will not be sent (again): its bytes leave the buffer and it becomes a
    /// batch of encoded records again (for the log fallback or the loss ledger).
    fn take_back(&mut self, export: &Export) -> Batch {
        let meta = export.meta;
        self.batcher.release(meta.record_bytes, meta.events);
        Batch {
            records: self.records_of(export),
            events: meta.events,
            first_seq: meta.first_seq,
            last_seq: meta.last_seq,
            last_chain: meta.last_chain,
        }
    }

    /// The encoded records inside a framed export (for the log fallback of evicted batches).
    fn records_of(&self, export: &Export) -> Vec<u8> {
        match self.codec {
            Codec::Json(_) => export.body.clone(),
            Codec::Otlp(_) => otlp::records_of(&export.body),
        }
    }

    /// A whole batch is lost: to the log fallback, or counted and recorded.
    fn lose_batch(&mut self, batch: &Batch, reason: LossReason) {
        if let Some(fallback) = &mut self.fallback {
            self.stats.fallback_lines += fallback.push_records(&self.codec, &batch.records);
            return;
        }
        self.stats.lost(reason, u64::from(batch.events));
        self.losses.record(Loss {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            events: u64::from(batch.events),
            reason,
            chain_head: batch.last_chain,
        });
    }

    /// Lines for Envoy's log (the fallback), taken by the host.
    /// With `integrity.witness: "log"` they include the checkpoints' witness lines.
    pub fn take_fallback_lines(&mut self) -> Vec<String> {
        let mut lines = self
            .fallback
            .as_mut()
            .map(LogFallback::take)
            .unwrap_or_default();
        if let Some(integrity) = &mut self.integrity {
            lines.extend(integrity.take_witness_lines());
        }
        lines
    }

    /// Emits a checkpoint event when one is due (`drain`: whenever events are unsealed).
    fn checkpoint(&mut self, now_ms: u64, drain: bool) {
        let Some(integrity) = &mut self.integrity else {
            return;
        };
        if !integrity.checkpoint_due(now_ms, drain) {
            return;
        }
        if let Some(event) = integrity.checkpoint(now_ms, self.next_seq) {
            self.stats.checkpoints += 1;
            self.enqueue(event, now_ms);
        }
    }

    /// Checkpoints emitted so far (integrity on).
    pub fn checkpoints(&self) -> u64 {
        self.integrity
            .as_ref()
            .map_or(0, StreamIntegrity::checkpoints)
    }

    /// The next batch due for sending: a retry whose time has come, else a new batch.
    pub fn next_export(&mut self, now_ms: u64) -> Option<Export> {
        self.now_ms = self.now_ms.max(now_ms);
        self.checkpoint(now_ms, false);
        if let Some(export) = self.flights.due_retry(now_ms) {
            return Some(export);
        }
        let batch = self.batcher.next_due(now_ms)?;
        let body = self.codec.frame(&batch.records);
        let meta = ExportMeta {
            events: batch.events,
            record_bytes: batch.records.len(),
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            attempt: 0,
            last_chain: batch.last_chain,
        };
        Some(Export { body, meta })
    }

    /// The configuration is going and cannot send any more: everything still held (open,
    /// sealed, waiting to retry, and in flight, whose answers will not be heard) goes to the log
    /// fallback when it is on, else is counted as lost. Returns how many events that was.
    /// In-flight batches may still have arrived: the log lines then duplicate them, each
    /// identifiable by its `log.record.uid`.
    pub fn abandon(&mut self) -> u64 {
        let mut batches = Vec::new();
        while let Some(batch) = self.evict_oldest() {
            batches.push(batch);
        }
        for export in self.flights.take_in_flight() {
            batches.push(self.take_back(&export));
        }
        batches.sort_by_key(|b| b.first_seq);
        let mut events = 0;
        for batch in &batches {
            events += u64::from(batch.events);
            let already_logged = self.copied_through.is_some_and(|seq| batch.last_seq <= seq);
            if !already_logged {
                self.lose_batch(batch, LossReason::Drain);
            }
        }
        events
    }

    /// Writes everything held (open, sealed, waiting to retry, in flight) to the log fallback,
    /// keeping it held and still to be sent: a copy for when the host may not let a drain finish.
    /// Seals the open batch.
    /// Returns how many lines that was (none when the log fallback is off).
    pub fn copy_held_to_fallback(&mut self) -> u64 {
        if self.fallback.is_none() {
            return 0;
        }
        // Sealed, so that events accepted later start a batch of their own.
        self.batcher.flush_all();
        let mut held: Vec<(u64, Vec<u8>)> = self
            .batcher
            .held_records()
            .map(|(first_seq, records)| (first_seq, records.to_vec()))
            .collect();
        for export in self.flights.held() {
            held.push((export.meta.first_seq, self.records_of(export)));
        }
        held.sort_by_key(|(seq, _)| *seq);
        self.copied_through = self.next_seq.checked_sub(1);
        let Some(fallback) = &mut self.fallback else {
            return 0;
        };
        let lines: u64 = held
            .iter()
            .map(|(_, records)| fallback.push_records(&self.codec, records))
            .sum();
        self.stats.fallback_lines += lines;
        lines
    }

    /// Seals the open batch so the next [`Pipeline::next_export`] returns it at once, and
    /// makes every waiting retry due (drain). A stream with events since its last checkpoint
    /// gets one now.
    pub fn flush_all(&mut self) {
        self.checkpoint(self.now_ms, true);
        self.batcher.flush_all();
        self.flights.retry_all_now();
    }

    /// The host dispatched an export; its answer will come under `token`.
    pub fn dispatched(&mut self, token: u32, export: Export) {
        self.flights.dispatched(token, export);
    }

    /// The host could not dispatch an export: it is retried like an unanswered one.
    pub fn dispatch_failed(&mut self, export: Export, now_ms: u64) {
        self.settle(
            export,
            Outcome::Retry {
                status: None,
                retry_after_ms: None,
            },
            now_ms,
        );
    }

    /// The answer to the export under `token` arrived (or it timed out).
    pub fn completed(&mut self, token: u32, outcome: Outcome, now_ms: u64) {
        if let Some(export) = self.flights.answered(token) {
            self.settle(export, outcome, now_ms);
        }
    }

    fn settle(&mut self, mut export: Export, outcome: Outcome, now_ms: u64) {
        let meta = export.meta;
        let events = u64::from(meta.events);
        match outcome {
            Outcome::Delivered { rejected } => {
                self.batcher.release(meta.record_bytes, meta.events);
                let rejected = rejected.min(events);
                self.stats.batches_sent += 1;
                self.stats.events_sent += events - rejected;
                self.stats.bytes_sent += export.body.len() as u64;
                if rejected > 0 {
                    self.stats.events_rejected += rejected;
                    self.stats.events_dropped += rejected;
                    self.losses.record(Loss {
                        first_seq: meta.first_seq,
                        last_seq: meta.last_seq,
                        events: rejected,
                        reason: LossReason::PartialSuccess,
                        chain_head: meta.last_chain,
                    });
                }
                self.report_gaps(now_ms);
            }
            Outcome::Retry { retry_after_ms, .. } => {
                self.stats.batches_failed += 1;
                self.stats.retries += 1;
                let delay = self.backoff.delay_ms(meta.attempt, retry_after_ms);
                export.meta.attempt = meta.attempt.saturating_add(1);
                self.flights.retry_at(export, now_ms.saturating_add(delay));
            }
            Outcome::Rejected { .. } => {
                self.stats.batches_failed += 1;
                let batch = self.take_back(&export);
                self.lose_batch(&batch, LossReason::CollectorRejected);
            }
        }
    }

    /// Delivery works: report recorded losses as gap events, while the buffer has room.
    fn report_gaps(&mut self, now_ms: u64) {
        if self.losses.is_empty() {
            return;
        }
        let losses = self.losses.take();
        for loss in losses {
            if !self.batcher.fits(self.last_record_len.saturating_mul(2)) {
                self.losses.record(loss);
                continue;
            }
            self.stats.gap_events += 1;
            self.enqueue(gap_event(&loss, now_ms), now_ms);
        }
    }

    /// Whether the buffer is full: a typical event would not fit (fail-closed routes refuse
    /// requests while this holds).
    pub fn is_full(&self) -> bool {
        !self.batcher.fits(self.last_record_len)
    }

    /// A request the audit policy records at level `none` was not recorded.
    pub fn count_unaudited(&mut self) {
        self.stats.events_unaudited += 1;
    }

    /// A request on a fail-closed route was refused while the buffer was full.
    pub fn count_fail_closed(&mut self) {
        self.stats.fail_closed_rejections += 1;
    }

    /// Exports awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.flights.in_flight()
    }

    /// Whether anything is still waiting to be sent (open, sealed, or waiting to retry).
    pub fn has_pending(&self) -> bool {
        self.batcher.has_pending() || self.flights.has_retries()
    }

    /// Encoded events and bytes held (open, sealed, retrying and in flight).
    pub fn buffered(&self) -> (u64, usize) {
        (
            self.batcher.buffered_events(),
            self.batcher.buffered_bytes(),
        )
    }

    /// Events lost and not yet reported by a gap event.
    #[cfg(test)]
    pub fn unreported_losses(&self) -> u64 {
        self.losses.events()
    }

    /// Counter increments since the last call.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }
}

/// The event that reports a loss.
fn gap_event(loss: &Loss, now_ms: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Gap);
    let now_ns = now_ms.saturating_mul(1_000_000);
    e.start_unix_nano = now_ns;
    e.observed_unix_nano = now_ns;
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    e.set(attr::GAP_FIRST_SEQUENCE, int(loss.first_seq));
    e.set(attr::GAP_LAST_SEQUENCE, int(loss.last_seq));
    e.set(attr::GAP_EVENTS, int(loss.events));
    e.set(attr::GAP_REASON, Value::Str(loss.reason.name().into()));
    if let Some(head) = loss.contiguous_head() {
        e.set(attr::GAP_CHAIN_HEAD, Value::Str(chain::to_hex(&head)));
    }
    e
}

/// `0123456789abcdef…`: the event id of a stream position, as [`Pipeline::accept`] writes it.
pub fn event_uid(stream_id: u64, seq: u64) -> String {
    let mut uid = String::with_capacity(32);
    for v in [stream_id, seq] {
        for shift in (0..16).rev() {
            let digit = ((v >> (shift * 4)) & 0xf) as u32;
            uid.push(char::from_digit(digit, 16).unwrap_or('0'));
        }
    }
    uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::fallback::FALLBACK_PREFIX;
    use crate::encode::otlp::proto::{any_value, ExportLogsServiceRequest, LogRecord};
    use prost::Message;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn redactor() -> Redactor {
        Redactor::compile(&Default::default(), None).unwrap()
    }

    fn pipeline_with(config: Config) -> Pipeline {
        Pipeline::new(
            config,
            redactor(),
            &vec![("service.name", "checkout".into())],
            0xabc,
        )
    }

    fn pipeline(max_batch_events: u32) -> Pipeline {
        pipeline_with(Config {
            max_batch_events,
            ..Config::default()
        })
    }

    fn http_event(path: &str) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(attr::URL_PATH, Value::Str(path.into()));
        e
    }

    fn records(export: &Export) -> Vec<LogRecord> {
        let req = ExportLogsServiceRequest::decode(export.body.as_slice()).unwrap();
        req.resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect()
    }

    fn int_attr(r: &LogRecord, key: &str) -> Option<i64> {
        r.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| match a.value.as_ref()?.value {
                Some(any_value::Value::IntValue(i)) => Some(i),
                _ => None,
            })
    }

    /// Sends everything due and answers each export with `outcome`.
    fn drive(p: &mut Pipeline, now: u64, outcome: Outcome) -> Vec<Export> {
        let mut sent = Vec::new();
        let mut token = 1000;
        while let Some(e) = p.next_export(now) {
            token += 1;
            p.dispatched(token, e.clone());
            p.completed(token, outcome, now);
            sent.push(e);
        }
        sent
    }

    const OK: Outcome = Outcome::Delivered { rejected: 0 };
    const DOWN: Outcome = Outcome::Retry {
        status: None,
        retry_after_ms: None,
    };

    #[test]
    fn events_get_consecutive_sequence_numbers_and_unique_ids() {
        let mut p = pipeline(2);
        p.accept(http_event("/a"), 0);
        p.accept(http_event("/b"), 0);
        let export = p.next_export(0).unwrap();
        assert_eq!(
            (
                export.meta.events,
                export.meta.first_seq,
                export.meta.last_seq
            ),
            (2, 0, 1)
        );
        let recs = records(&export);
        assert_eq!(int_attr(&recs[1], attr::SEQUENCE), Some(1));
        let uid = |r: &LogRecord| {
            format!(
                "{:?}",
                r.attributes.iter().find(|a| a.key == attr::LOG_RECORD_UID)
            )
        };
        assert_ne!(uid(&recs[0]), uid(&recs[1]));
        assert!(uid(&recs[1]).contains(&event_uid(0xabc, 1)));
    }

    #[test]
    fn events_are_redacted_before_encoding() {
        let mut p = pipeline(1);
        let mut e = http_event("/x");
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
    fn failed_exports_are_retried_with_backoff_and_the_same_events() {
        let mut p = pipeline_with(Config {
            max_batch_events: 1,
            retry: crate::config::Retry {
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            },
            ..Config::default()
        });
        p.accept(http_event("/a"), 0);
        let first = p.next_export(0).unwrap();
        p.dispatched(1, first.clone());
        p.completed(
            1,
            Outcome::Retry {
                status: Some(503),
                retry_after_ms: None,
            },
            0,
        );
        assert!(
            p.next_export(49).is_none(),
            "backoff is at least half the initial delay"
        );
        let again = p.next_export(100).unwrap();
        assert_eq!(
            (again.body.clone(), again.meta.attempt),
            (first.body.clone(), 1)
        );
        p.dispatch_failed(again, 100);
        assert!(p.next_export(199).is_none());
        let third = p.next_export(300).unwrap();
        assert_eq!(third.meta.attempt, 2);
        p.dispatched(3, third);
        p.completed(
            3,
            Outcome::Retry {
                status: Some(429),
                retry_after_ms: Some(5000),
            },
            300,
        );
        assert!(p.next_export(5299).is_none(), "Retry-After is honoured");
        assert_eq!(drive(&mut p, 5300, OK).len(), 1);
        let s = p.take_stats();
        assert_eq!(
            (s.events_sent, s.retries, s.events_dropped, s.batches_sent),
            (1, 3, 0, 1)
        );
        assert_eq!(p.buffered(), (0, 0));
    }

    #[test]
    fn rejected_batches_are_lost_and_reported_by_a_gap_event() {
        let mut p = pipeline(2);
        for i in 0..4 {
            p.accept(http_event(&format!("/{i}")), 0);
        }
        let a = p.next_export(0).unwrap();
        p.dispatched(1, a);
        p.completed(1, Outcome::Rejected { status: 400 }, 0);
        let s = p.take_stats();
        assert_eq!((s.events_dropped, s.dropped_rejected, s.retries), (2, 2, 0));
        assert_eq!(p.unreported_losses(), 2);
        // The next delivery succeeds: a gap event reports sequences 0..=1.
        drive(&mut p, 0, OK);
        p.flush_all();
        let sent = drive(&mut p, 0, OK);
        let gap = sent
            .iter()
            .flat_map(records)
            .find(|r| r.event_name == "meshaudit.gap")
            .unwrap();
        assert_eq!(int_attr(&gap, attr::GAP_FIRST_SEQUENCE), Some(0));
        assert_eq!(int_attr(&gap, attr::GAP_LAST_SEQUENCE), Some(1));
        assert_eq!(int_attr(&gap, attr::GAP_EVENTS), Some(2));
        assert_eq!(p.take_stats().gap_events, 1);
        assert_eq!(p.unreported_losses(), 0);
    }

    /// A buffer of a few chained events (about 300 bytes each in OTLP): 17 fit, 5 to a batch.
    const SMALL_BUFFER: u32 = 6144;
    const SMALL_BATCH: u32 = 2048;

    fn small_buffer(overflow: Overflow, fallback: Fallback) -> Pipeline {
        pipeline_with(Config {
            max_batch_events: 5,
            max_batch_bytes: SMALL_BATCH,
            max_buffer_bytes: SMALL_BUFFER,
            overflow,
            fallback,
            ..Config::default()
        })
    }

    #[test]
    fn drop_newest_counts_every_refused_event_and_never_passes_the_bound() {
        let mut p = small_buffer(Overflow::DropNewest, Fallback::None);
        let mut max_seen = 0;
        for i in 0..200 {
            p.accept(http_event(&format!("/{i}")), 0);
            max_seen = max_seen.max(p.buffered().1);
            // The collector is down: every export is answered with a retry.
            if i % 10 == 0 {
                drive(&mut p, u64::MAX / 2, DOWN);
            }
        }
        assert!(max_seen <= SMALL_BUFFER as usize, "{max_seen}");
        let s = p.take_stats();
        let held = p.buffered().0;
        assert_eq!(s.events_captured, 200);
        assert_eq!(s.events_dropped, s.dropped_buffer_full);
        // Checkpoints (due at each drive, its clock being far ahead) are sequenced events too.
        assert!(p.checkpoints() > 0);
        assert_eq!(
            s.events_dropped + held,
            200 + p.checkpoints(),
            "every event is held or counted as dropped"
        );
        assert_eq!(p.unreported_losses(), s.events_dropped);
        assert!(p.is_full());
    }

    #[test]
    fn drop_oldest_evicts_the_oldest_batches_and_keeps_the_newest() {
        let mut p = small_buffer(Overflow::DropOldest, Fallback::None);
        for i in 0..100 {
            p.accept(http_event(&format!("/{i}")), 0);
        }
        assert!(p.buffered().1 <= SMALL_BUFFER as usize);
        let before = p.take_stats().events_dropped;
        assert!(before > 0);
        // The drain's checkpoint (sequence 100) may evict once more.
        p.flush_all();
        let dropped = before + p.take_stats().events_dropped;
        let kept: Vec<i64> = drive(&mut p, 0, OK)
            .iter()
            .flat_map(records)
            .filter_map(|r| int_attr(&r, attr::SEQUENCE))
            .collect();
        assert_eq!(p.checkpoints(), 1);
        assert!(kept.contains(&99), "the newest event is kept");
        assert!(kept.contains(&100), "the drain's checkpoint is kept");
        assert!(!kept.contains(&0), "the oldest event was evicted");
        assert_eq!(kept.len() as u64 + dropped, 101);
    }

    /// Events held in every state a drain can leave them: in flight, waiting to retry, sealed
    /// and open.
    fn held_everywhere(fallback: Fallback) -> Pipeline {
        let mut p = small_buffer(Overflow::DropNewest, fallback);
        for i in 0..5 {
            p.accept(http_event(&format!("/retrying/{i}")), 0);
        }
        drive(&mut p, 0, DOWN); // one batch waiting to retry
        for i in 0..5 {
            p.accept(http_event(&format!("/in-flight/{i}")), 0);
        }
        let flying = p.next_export(0).unwrap(); // sealed at 5 events: sent, no answer yet
        p.dispatched(7, flying);
        for i in 0..7 {
            p.accept(http_event(&format!("/held/{i}")), 0); // one sealed batch, one open
        }
        assert_eq!(p.buffered().0, 17);
        p.take_stats();
        p
    }

    #[test]
    fn abandon_writes_everything_held_to_the_log_fallback() {
        let mut p = held_everywhere(Fallback::Log);
        assert_eq!(p.abandon(), 17);
        assert_eq!(p.buffered(), (0, 0));
        assert_eq!(p.in_flight(), 0);
        assert!(!p.has_pending());
        let lines = p.take_fallback_lines();
        let seqs: Vec<i64> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l.strip_prefix(FALLBACK_PREFIX).unwrap()).unwrap();
                v[attr::SEQUENCE].as_i64().unwrap()
            })
            .collect();
        assert_eq!(
            seqs,
            (0..17).collect::<Vec<_>>(),
            "each held event once, in order"
        );
        let s = p.take_stats();
        assert_eq!((s.fallback_lines, s.events_dropped), (17, 0));
    }

    #[test]
    fn a_drain_copy_is_not_logged_twice_when_the_drain_times_out() {
        let mut p = held_everywhere(Fallback::Log);
        assert_eq!(p.copy_held_to_fallback(), 17);
        assert_eq!(
            p.buffered().0,
            17,
            "the copy keeps them held, still to be sent"
        );
        assert_eq!(p.take_fallback_lines().len(), 17);
        p.accept(http_event("/late"), 0); // a request that ends during the drain
        assert_eq!(p.abandon(), 18);
        let late = p.take_fallback_lines();
        assert_eq!(late.len(), 1, "only what the copy did not hold: {late:?}");
        assert!(late[0].contains("/late"));
    }

    #[test]
    fn abandon_without_fallback_counts_the_loss() {
        let mut p = held_everywhere(Fallback::None);
        assert_eq!(p.abandon(), 17);
        let s = p.take_stats();
        assert_eq!((s.events_dropped, s.dropped_drain), (17, 17));
        assert_eq!(p.unreported_losses(), 17);
        assert!(p.take_fallback_lines().is_empty());
    }

    #[test]
    fn fallback_log_writes_what_would_be_dropped() {
        let mut p = small_buffer(Overflow::DropNewest, Fallback::Log);
        for i in 0..100 {
            p.accept(http_event(&format!("/fallback/{i}")), 0);
        }
        let lines = p.take_fallback_lines();
        let s = p.take_stats();
        assert_eq!(s.events_dropped, 0);
        assert_eq!(s.fallback_lines as usize, lines.len());
        assert_eq!(lines.len() as u64 + p.buffered().0, 100);
        for line in &lines {
            let json = line.strip_prefix(FALLBACK_PREFIX).unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(v["url.path"].as_str().unwrap().starts_with("/fallback/"));
            assert_eq!(v["service.name"], "checkout");
        }
        let mut oldest = small_buffer(Overflow::DropOldest, Fallback::Log);
        for i in 0..100 {
            oldest.accept(http_event(&format!("/o/{i}")), 0);
        }
        let lines = oldest.take_fallback_lines();
        assert!(!lines.is_empty());
        assert!(lines[0].contains("\"/o/0\""), "{}", lines[0]);
        assert_eq!(oldest.unreported_losses(), 0);
    }

    #[test]
    fn partial_success_is_counted_and_reported() {
        let mut p = pipeline(3);
        for i in 0..3 {
            p.accept(http_event(&format!("/{i}")), 0);
        }
        drive(&mut p, 0, Outcome::Delivered { rejected: 2 });
        let s = p.take_stats();
        assert_eq!(
            (
                s.events_sent,
                s.events_rejected,
                s.events_dropped,
                s.gap_events
            ),
            (1, 2, 2, 1)
        );
    }
}
