//! The verifier engine behind `meshaudit verify`: reads a trail's events in any order, checks
//! each stream's chain in sequence order, its checkpoints' signatures, and what the gap events
//! and an optional witness say, and reports every violation with its stream and sequence.
//!
//! Memory is bounded: per stream, events wait for their predecessor in a reorder window of at
//! most `window` events (past it, the missing predecessor is declared deleted), and the digests
//! kept to recognise duplicates cover the last `window` sequences.
//! How each violation is told apart: docs/integrity.md#what-verify-reports.

pub mod json_line;
mod key_index;
pub mod record;
mod specials;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use super::chain::{self, Link};
use super::checkpoint::{Checkpoint, SignatureError};
use super::keys;
use crate::event::{attr, EventKind, Value};
pub use record::Record;

/// What is wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An event whose content does not match its chain value.
    Modified,
    /// Sequences missing that no gap event reports.
    Deleted,
    /// An event where the filter reported every event lost, that nothing links to.
    Inserted,
    /// Two events that each link in the other's position.
    Reordered,
    /// Two different events with one `log.record.uid`.
    DuplicateDifferentContent,
    /// The witness knows a checkpoint beyond the trail's end.
    Truncated,
    /// The witness knows a stream the trail lacks.
    MissingStream,
    /// A checkpoint signature that does not verify (or is missing while keys are given).
    BadSignature,
    /// A checkpoint signed by a key not given to the verifier.
    UnknownKey,
}

impl ViolationKind {
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::Modified => "modified",
            ViolationKind::Deleted => "deleted",
            ViolationKind::Inserted => "inserted",
            ViolationKind::Reordered => "reordered",
            ViolationKind::DuplicateDifferentContent => "duplicate_different_content",
            ViolationKind::Truncated => "truncated",
            ViolationKind::MissingStream => "missing_stream",
            ViolationKind::BadSignature => "bad_signature",
            ViolationKind::UnknownKey => "unknown_key",
        }
    }
}

/// One violation: its kind, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub stream_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub detail: String,
    /// Where the event was read (`FILE:LINE`), when one is involved.
    pub origin: Option<String>,
}

/// What one stream holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    pub stream_id: String,
    /// Distinct events read.
    pub events: u64,
    /// Events whose link was checked and holds.
    pub verified: u64,
    pub checkpoints: u64,
    pub checkpoints_valid: u64,
    /// Checkpoints without a signature (an unkeyed stream).
    pub checkpoints_unsigned: u64,
    /// Gap events, and the events they report lost.
    pub gaps: u64,
    pub lost: u64,
    /// Identical copies (at-least-once delivery): not tampering.
    pub duplicates: u64,
    /// Events after a reported loss whose predecessor is gone and that no gap head anchors.
    pub unanchored: u64,
    /// Events after the last checkpoint: a truncation there is not detectable without a witness.
    pub unsealed_tail: u64,
    /// Copies of sequences older than the window: not compared.
    pub late_unchecked: u64,
    /// The highest sequence read.
    pub last_sequence: Option<u64>,
}

/// The verdict on a trail.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub streams: Vec<StreamReport>,
    pub violations: Vec<Violation>,
    /// Records without a stream id and sequence (not meshaudit events; skipped).
    pub skipped: u64,
    /// Whether public keys were given (else signatures are not checked).
    pub keyed: bool,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Settings of a verification.
#[derive(Debug, Clone)]
pub struct Options {
    /// Trusted public keys (several: key rotation).
    pub keys: Vec<VerifyingKey>,
    /// Events per stream waiting for their predecessor, at most.
    pub window: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keys: Vec::new(),
            window: 100_000,
        }
    }
}

/// A gap event's report.
#[derive(Debug, Clone)]
struct Gap {
    first: u64,
    last: u64,
    /// Every sequence of the range was lost.
    complete: bool,
    head: Option<Link>,
}

/// An event to be checked: borrowed from the reader while it is checked on arrival (the usual
/// case), owned while it waits for its predecessor.
struct Entry<'a> {
    record: Cow<'a, Record>,
    canonical: Cow<'a, [u8]>,
}

impl Entry<'_> {
    fn into_owned(self) -> Entry<'static> {
        Entry {
            record: Cow::Owned(self.record.into_owned()),
            canonical: Cow::Owned(self.canonical.into_owned()),
        }
    }

    /// What tells copies apart: the link of its canonical bytes after `anchor` (its
    /// predecessor's link when known, so this is the link the check computes anyway: one hash
    /// per event) and its stored chain value. Identical copies have the same; different
    /// content cannot, SHA-256 being collision resistant.
    fn fingerprint(&self, anchor: &Link) -> Fingerprint {
        (chain::link(anchor, &self.canonical), self.record.chain())
    }
}

type Fingerprint = (Link, Option<Link>);

/// A checked sequence, as a later copy is compared with it.
struct Done {
    anchor: Link,
    fingerprint: Fingerprint,
}

impl Done {
    /// The stored chain value of the event checked.
    fn stored(&self) -> Option<Link> {
        self.fingerprint.1
    }
}

/// A link that did not hold, classified at the end.
struct Failure {
    seq: u64,
    /// The stored chain value of the predecessor when it was checked.
    prev: Link,
    record: Record,
}

/// A checkpoint's claim, compared at the end with the chain value it names.
struct Claim {
    seq: u64,
    head: Link,
    /// The stored chain value of its predecessor.
    prev: Link,
}

/// How the predecessor of the next sequence is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Known(Link),
    /// Lost (a gap reports it) and not anchored.
    Lost,
    /// Declared deleted (already a violation).
    Deleted,
}

struct Stream {
    report: StreamReport,
    frontier: u64,
    prev: Prev,
    pending: BTreeMap<u64, Vec<Entry<'static>>>,
    pending_len: usize,
    /// Checked sequences (the last `window`).
    done: BTreeMap<u64, Done>,
    gaps: Vec<Gap>,
    failures: Vec<Failure>,
    claims: Vec<Claim>,
    last_checkpoint: Option<u64>,
    violations: Vec<Violation>,
}

/// The verifier: feed it records (any order) and witness checkpoints, then [`Verifier::finish`].
pub struct Verifier {
    keys: HashMap<String, VerifyingKey>,
    window: usize,
    streams: BTreeMap<String, Stream>,
    witness: Vec<Checkpoint>,
    skipped: u64,
    /// The shape of the last record's canonical form, and the key index build it was matched for.
    shape: record::ShapeCache,
    /// The canonical bytes of the record being added.
    scratch: Vec<u8>,
}

impl Verifier {
    pub fn new(options: Options) -> Verifier {
        Verifier {
            keys: options.keys.iter().map(|k| (keys::key_id(k), *k)).collect(),
            window: options.window.max(1),
            streams: BTreeMap::new(),
            witness: Vec::new(),
            skipped: 0,
            shape: record::ShapeCache::default(),
            scratch: Vec::with_capacity(4096),
        }
    }

    /// A checkpoint from the witness.
    pub fn add_witness(&mut self, checkpoint: Checkpoint) {
        self.witness.push(checkpoint);
    }

    /// One event of the trail (copied only when it must wait for its predecessor).
    pub fn add(&mut self, record: &Record) {
        let (Some(stream_id), Some(seq)) = (record.stream_id(), record.sequence()) else {
            self.skipped += 1;
            return;
        };
        if !self.streams.contains_key(stream_id) {
            self.streams
                .insert(stream_id.to_string(), Stream::new(stream_id));
        }
        let Some(stream) = self.streams.get_mut(stream_id) else {
            return;
        };
        self.scratch.clear();
        record.canonical_with(&mut self.scratch, &mut self.shape);
        let entry = Entry {
            record: Cow::Borrowed(record),
            canonical: Cow::Borrowed(&self.scratch),
        };
        stream.ingest(seq, entry, &self.keys, self.window);
    }

    /// Checks what is still waiting and returns the verdict.
    pub fn finish(mut self) -> Report {
        let mut report = Report {
            skipped: self.skipped,
            keyed: !self.keys.is_empty(),
            ..Report::default()
        };
        for stream in self.streams.values_mut() {
            stream.finish(&self.keys);
        }
        self.check_witness(&mut report);
        for (_, stream) in std::mem::take(&mut self.streams) {
            report.violations.extend(stream.violations);
            report.streams.push(stream.report);
        }
        report.violations.sort_by(|a, b| {
            (&a.stream_id, a.first_seq, a.kind).cmp(&(&b.stream_id, b.first_seq, b.kind))
        });
        report
    }

    fn check_witness(&mut self, report: &mut Report) {
        let mut furthest: BTreeMap<String, u64> = BTreeMap::new();
        for c in &self.witness {
            if let Err(e) = c.check(|id| self.keys.get(id)) {
                if let Some(v) = signature_violation(e, !self.keys.is_empty(), c, "witness") {
                    report.violations.push(v);
                }
            }
            let f = furthest.entry(c.stream_id.clone()).or_insert(0);
            *f = (*f).max(c.last_sequence);
        }
        for (stream_id, last) in furthest {
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                report.violations.push(Violation {
                    kind: ViolationKind::MissingStream,
                    stream_id,
                    first_seq: 0,
                    last_seq: last,
                    detail: "the witness holds checkpoints of this stream; the trail has none of its events".into(),
                    origin: None,
                });
                continue;
            };
            let have = stream.report.last_sequence.unwrap_or(0);
            // A witness checkpoint covers `last`, and is itself the event after it.
            let expected = last.saturating_add(1);
            if stream.report.last_sequence.is_none_or(|h| h < expected) {
                let first = stream.report.last_sequence.map_or(0, |h| h + 1);
                stream.violations.push(Violation {
                    kind: ViolationKind::Truncated,
                    stream_id: stream_id.clone(),
                    first_seq: first,
                    last_seq: expected,
                    detail: format!(
                        "the witness holds a checkpoint through sequence {last}; the trail ends at {have}"
                    ),
                    origin: None,
                });
            }
        }
    }
}

fn signature_violation(
    e: SignatureError,
    keyed: bool,
    c: &Checkpoint,
    what: &str,
) -> Option<Violation> {
    let (kind, detail) = match e {
        SignatureError::UnknownKey => (
            ViolationKind::UnknownKey,
            format!(
                "{what} checkpoint signed by key {:?}, which is not among the public keys given",
                c.key_id
            ),
        ),
        SignatureError::Bad => (
            ViolationKind::BadSignature,
            format!("{what} checkpoint's signature does not verify"),
        ),
        SignatureError::Unsigned if keyed => (
            ViolationKind::BadSignature,
            format!("{what} checkpoint is not signed, and public keys were given"),
        ),
        SignatureError::Unsigned => return None,
    };
    Some(Violation {
        kind,
        stream_id: c.stream_id.clone(),
        first_seq: c.last_sequence.saturating_add(1),
        last_seq: c.last_sequence.saturating_add(1),
        detail,
        origin: None,
    })
}

impl Stream {
    fn new(stream_id: &str) -> Stream {
        Stream {
            report: StreamReport {
                stream_id: stream_id.to_string(),
                ..StreamReport::default()
            },
            frontier: 0,
            prev: Prev::Lost,
            pending: BTreeMap::new(),
            pending_len: 0,
            done: BTreeMap::new(),
            gaps: Vec::new(),
            failures: Vec::new(),
            claims: Vec::new(),
            last_checkpoint: None,
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, kind: ViolationKind, seq: u64, detail: String, origin: Option<&str>) {
        self.violations.push(Violation {
            kind,
            stream_id: self.report.stream_id.clone(),
            first_seq: seq,
            last_seq: seq,
            detail,
            origin: origin.map(str::to_string),
        });
    }

    fn ingest(
        &mut self,
        seq: u64,
        entry: Entry<'_>,
        keys: &HashMap<String, VerifyingKey>,
        window: usize,
    ) {
        self.report.last_sequence = Some(self.report.last_sequence.map_or(seq, |m| m.max(seq)));
        if seq < self.frontier {
            self.late(seq, &entry);
            return;
        }
        if entry.record.event_name == EventKind::Gap.name() {
            self.register_gap(&entry.record);
        }
        if seq == self.frontier && !self.pending.contains_key(&seq) {
            // Next in order with no copy waiting: checked now, without a copy.
            self.check(seq, vec![entry], keys);
            self.passed(seq, window);
        } else {
            self.pending
                .entry(seq)
                .or_default()
                .push(entry.into_owned());
            self.pending_len += 1;
        }
        self.advance(keys, window, false);
    }

    /// An event for a sequence already passed: a copy of one checked, or one inside a
    /// complete loss (checked against its predecessor, else inserted).
    fn late(&mut self, seq: u64, entry: &Entry<'_>) {
        match self.done.get(&seq) {
            Some(d) if entry.fingerprint(&d.anchor) == d.fingerprint => self.report.duplicates += 1,
            Some(_) => self.different_copy(seq, entry),
            None => match self.gap_at(seq).filter(|g| g.complete).cloned() {
                Some(gap) => {
                    let stored = entry.record.chain();
                    let prev = seq
                        .checked_sub(1)
                        .and_then(|p| self.done.get(&p))
                        .and_then(Done::stored);
                    let anchor = prev.unwrap_or([0; 32]);
                    let fingerprint = entry.fingerprint(&anchor);
                    let links = match (prev, stored) {
                        (Some(_), Some(c)) => fingerprint.0 == c,
                        (None, Some(c)) => seq == gap.last && gap.head == Some(c),
                        _ => false,
                    };
                    if links {
                        self.report.events += 1;
                        self.report.verified += 1;
                        self.done.insert(
                            seq,
                            Done {
                                anchor,
                                fingerprint,
                            },
                        );
                    } else {
                        self.violation(
                            ViolationKind::Inserted,
                            seq,
                            "a gap event reports this sequence lost, and nothing links to this event"
                                .into(),
                            Some(&entry.record.origin),
                        );
                    }
                }
                None => self.report.late_unchecked += 1,
            },
        }
    }

    /// A different event for a sequence already checked: one violation per sequence; when the
    /// one checked first did not link and this one does, this one is the genuine event.
    fn different_copy(&mut self, seq: u64, entry: &Entry<'_>) {
        let reported = self
            .violations
            .iter()
            .any(|v| v.kind == ViolationKind::DuplicateDifferentContent && v.first_seq == seq);
        if !reported {
            self.violation(
                ViolationKind::DuplicateDifferentContent,
                seq,
                "a second, different event with this log.record.uid".into(),
                Some(&entry.record.origin),
            );
        }
        let Some(at) = self.failures.iter().position(|f| f.seq == seq) else {
            return;
        };
        let links = match (self.failures.get(at), entry.record.chain()) {
            (Some(f), Some(c)) => chain::link(&f.prev, &entry.canonical) == c,
            _ => false,
        };
        if links {
            self.failures.remove(at);
            self.report.verified += 1;
        }
    }

    fn register_gap(&mut self, r: &Record) {
        let int = |k| r.int(k).and_then(|i| u64::try_from(i).ok());
        let (Some(first), Some(last), Some(events)) = (
            int(attr::GAP_FIRST_SEQUENCE),
            int(attr::GAP_LAST_SEQUENCE),
            int(attr::GAP_EVENTS),
        ) else {
            return;
        };
        let complete = last
            .checked_sub(first)
            .and_then(|d| d.checked_add(1))
            .is_some_and(|span| span == events);
        self.gaps.push(Gap {
            first,
            last,
            complete,
            head: r.str(attr::GAP_CHAIN_HEAD).and_then(chain::from_hex),
        });
    }

    fn gap_at(&self, seq: u64) -> Option<&Gap> {
        self.gaps.iter().find(|g| g.first <= seq && seq <= g.last)
    }

    /// Checks sequences in order while their predecessor is settled.
    fn advance(&mut self, keys: &HashMap<String, VerifyingKey>, window: usize, end: bool) {
        loop {
            let s = self.frontier;
            if let Some(entries) = self.pending.remove(&s) {
                self.pending_len = self.pending_len.saturating_sub(entries.len());
                self.check(s, entries, keys);
            } else if self.report.last_sequence.is_none_or(|m| s > m) {
                return;
            } else if let Some(gap) = self
                .gap_at(s)
                .filter(|g| g.complete || end || self.pending_len > window)
                .cloned()
            {
                // A partial loss's range also holds events that arrived: wait for them.
                self.prev = match gap.head {
                    Some(head) if gap.complete && s == gap.last => Prev::Known(head),
                    _ => Prev::Lost,
                };
            } else if end || self.pending_len > window {
                self.deleted(s);
                self.prev = Prev::Deleted;
            } else {
                return;
            }
            self.passed(s, window);
        }
    }

    /// Sequence `s` is settled: the frontier moves past it, and the oldest checked sequences
    /// beyond the window are forgotten.
    fn passed(&mut self, s: u64, window: usize) {
        self.frontier = s.saturating_add(1);
        while self.done.len() > window {
            self.done.pop_first();
        }
    }

    fn deleted(&mut self, s: u64) {
        if let Some(v) = self.violations.last_mut() {
            if v.kind == ViolationKind::Deleted && v.last_seq.checked_add(1) == Some(s) {
                v.last_seq = s;
                return;
            }
        }
        self.violation(
            ViolationKind::Deleted,
            s,
            "missing, and no gap event reports it lost".into(),
            None,
        );
    }

    /// The previous link expected for sequence `s` (the genesis for 0).
    fn expected_prev(&self, s: u64, r: &Record) -> Prev {
        if s > 0 {
            return self.prev;
        }
        match r
            .int(attr::STREAM_START_TIME)
            .and_then(|t| u64::try_from(t).ok())
        {
            Some(start) => Prev::Known(chain::genesis(
                &self.report.stream_id,
                r.str(attr::INTEGRITY_KEY_ID).unwrap_or_default(),
                start,
            )),
            None => Prev::Known([0; 32]),
        }
    }

    fn check(&mut self, s: u64, entries: Vec<Entry<'_>>, keys: &HashMap<String, VerifyingKey>) {
        let Some(first) = entries.first() else {
            return;
        };
        let prev = self.expected_prev(s, &first.record);
        let anchor = match prev {
            Prev::Known(p) => p,
            Prev::Lost | Prev::Deleted => [0; 32],
        };
        // Identical copies are one event.
        let mut versions: Vec<(Entry<'_>, Fingerprint)> = Vec::with_capacity(1);
        for e in entries {
            let fingerprint = e.fingerprint(&anchor);
            if versions.iter().any(|(_, f)| *f == fingerprint) {
                self.report.duplicates += 1;
            } else {
                versions.push((e, fingerprint));
            }
        }
        let links = |(link, stored): &Fingerprint| match (prev, stored) {
            (Prev::Known(_), Some(c)) => Some(link == c),
            _ => None,
        };
        let chosen = versions
            .iter()
            .position(|(_, f)| links(f) == Some(true))
            .unwrap_or(0);
        if versions.len() > 1 {
            let origin = versions.get(1).map(|(v, _)| v.record.origin.clone());
            self.violation(
                ViolationKind::DuplicateDifferentContent,
                s,
                format!(
                    "{} different events with this log.record.uid",
                    versions.len()
                ),
                origin.as_deref(),
            );
        }
        let Some((entry, fingerprint)) = versions.into_iter().nth(chosen) else {
            return;
        };
        self.report.events += 1;
        let gap = self.gap_at(s).cloned();
        let stored = fingerprint.1;
        match (prev, stored, links(&fingerprint)) {
            (_, None, _) => self.violation(
                ViolationKind::Modified,
                s,
                "no valid meshaudit.chain value".into(),
                Some(&entry.record.origin),
            ),
            (_, _, Some(true)) => self.report.verified += 1,
            (Prev::Known(p), Some(_), _) => self.failures.push(Failure {
                seq: s,
                prev: p,
                record: Record::clone(&entry.record),
            }),
            (Prev::Lost, Some(c), _) => match &gap {
                Some(g) if g.complete && s == g.last && g.head == Some(c) => {
                    self.report.verified += 1
                }
                Some(g) if g.complete => self.violation(
                    ViolationKind::Inserted,
                    s,
                    "a gap event reports this sequence lost, and nothing links to this event"
                        .into(),
                    Some(&entry.record.origin),
                ),
                _ => self.report.unanchored += 1,
            },
            (Prev::Deleted, Some(_), _) => {}
        }
        self.prev = stored.map_or(Prev::Deleted, Prev::Known);
        // The filter reported every event of this range lost, and the chain value of its last:
        // the chain resumes from that, whatever is found here.
        if let Some(head) = gap
            .filter(|g| g.complete && g.last == s)
            .and_then(|g| g.head)
        {
            self.prev = Prev::Known(head);
        }
        self.done.insert(
            s,
            Done {
                anchor,
                fingerprint,
            },
        );
        if entry.record.event_name == EventKind::Gap.name() {
            self.report.gaps += 1;
            self.report.lost += entry
                .record
                .int(attr::GAP_EVENTS)
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0);
        }
        if entry.record.event_name == EventKind::Checkpoint.name() {
            self.checkpoint(s, &entry.record, prev, keys);
        }
    }

    fn checkpoint(&mut self, s: u64, r: &Record, prev: Prev, keys: &HashMap<String, VerifyingKey>) {
        self.report.checkpoints += 1;
        let stream_id = self.report.stream_id.clone();
        let Some(c) = Checkpoint::from_attributes(&stream_id, |k| r.get(k)) else {
            self.violation(
                ViolationKind::Modified,
                s,
                "a checkpoint without its meshaudit.checkpoint.* fields".into(),
                Some(&r.origin),
            );
            return;
        };
        match c.check(|id| keys.get(id)) {
            Ok(()) => self.report.checkpoints_valid += 1,
            Err(SignatureError::Unsigned) if keys.is_empty() => {
                self.report.checkpoints_unsigned += 1
            }
            Err(e) => {
                if let Some(mut v) = signature_violation(e, !keys.is_empty(), &c, "the") {
                    v.first_seq = s;
                    v.last_seq = s;
                    v.origin = Some(r.origin.clone());
                    self.violations.push(v);
                }
            }
        }
        self.last_checkpoint = Some(s);
        if let Prev::Known(p) = prev {
            if c.last_sequence.checked_add(1) == Some(s) {
                self.claims.push(Claim {
                    seq: s,
                    head: c.chain_head,
                    prev: p,
                });
            }
        }
    }

    fn finish(&mut self, keys: &HashMap<String, VerifyingKey>) {
        self.advance(keys, usize::MAX, true);
        self.classify_failures();
        let sealed = self.last_checkpoint;
        self.report.unsealed_tail = match (self.report.last_sequence, sealed) {
            (Some(last), Some(c)) => last.saturating_sub(c),
            (Some(last), None) => last.saturating_add(1),
            (None, _) => 0,
        };
    }

    /// Links that did not hold: reordered (two events that each link in the other's place),
    /// a consequence of a reordering (dropped), inserted (inside a complete gap) or modified.
    fn classify_failures(&mut self) {
        let failures = std::mem::take(&mut self.failures);
        // The chain value that belongs at each reordered position.
        let mut genuine: HashMap<u64, Link> = HashMap::new();
        let mut reordered: Vec<(u64, u64)> = Vec::new();
        // Every pair while there are few failures; else each with its nearest (a trail that is
        // mostly broken must not take quadratic time).
        let reach = if failures.len() <= FULL_REORDER_SEARCH {
            failures.len()
        } else {
            NEAR_REORDER_SEARCH
        };
        for (i, a) in failures.iter().enumerate() {
            for b in failures.iter().skip(i + 1).take(reach) {
                if belongs_at(a, b) && belongs_at(b, a) {
                    reordered.push((a.seq, b.seq));
                    if let (Some(ca), Some(cb)) = (a.record.chain(), b.record.chain()) {
                        genuine.insert(a.seq, cb);
                        genuine.insert(b.seq, ca);
                    }
                }
            }
        }
        for f in &failures {
            if let Some((a, b)) = reordered.iter().find(|(a, b)| *a == f.seq || *b == f.seq) {
                let other = if *a == f.seq { *b } else { *a };
                let origin = f.record.origin.clone();
                self.violation(
                    ViolationKind::Reordered,
                    f.seq,
                    format!("holds the event that belongs at sequence {other}"),
                    Some(&origin),
                );
                continue;
            }
            let after_reordered = f.seq.checked_sub(1).and_then(|p| genuine.get(&p));
            if let (Some(g), Some(c)) = (after_reordered, f.record.chain()) {
                let mut canonical = Vec::new();
                f.record.canonical(&mut canonical);
                if chain::link(g, &canonical) == c {
                    self.report.verified += 1;
                    continue;
                }
            }
            let kind = match self.gap_at(f.seq) {
                Some(g) if g.complete => ViolationKind::Inserted,
                _ => ViolationKind::Modified,
            };
            let origin = f.record.origin.clone();
            self.violation(
                kind,
                f.seq,
                "its content does not match its chain value".into(),
                Some(&origin),
            );
        }
        for claim in std::mem::take(&mut self.claims) {
            let prev = claim
                .seq
                .checked_sub(1)
                .and_then(|p| genuine.get(&p))
                .copied()
                .unwrap_or(claim.prev);
            if prev != claim.head {
                self.violation(
                    ViolationKind::Modified,
                    claim.seq,
                    "the chain head this checkpoint signed differs from the trail's: events before it were changed and re-chained".into(),
                    None,
                );
            }
        }
    }
}

/// Link failures in a stream up to which every pair is tried as a reordering.
const FULL_REORDER_SEARCH: usize = 512;
/// Beyond that, each failure is tried with this many following ones.
const NEAR_REORDER_SEARCH: usize = 16;

/// Whether `other`'s event, moved to `at`'s position, links there.
fn belongs_at(at: &Failure, other: &Failure) -> bool {
    let Some(chain_value) = other.record.chain() else {
        return false;
    };
    // Adjacent: the predecessor of the later position is the other event, whose genuine
    // chain value is the one `at`'s current event carries.
    let prev = if at.seq.checked_sub(1) == Some(other.seq) {
        match at.record.chain() {
            Some(c) => c,
            None => return false,
        }
    } else {
        at.prev
    };
    let mut moved = other.record.clone();
    moved.set(
        attr::SEQUENCE,
        Value::Int(i64::try_from(at.seq).unwrap_or(i64::MAX)),
    );
    if let Some(stream) = moved
        .stream_id()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
    {
        moved.set(
            attr::LOG_RECORD_UID,
            Value::Str(crate::pipeline::event_uid(stream, at.seq)),
        );
    }
    let mut canonical = Vec::new();
    moved.canonical(&mut canonical);
    chain::link(&prev, &canonical) == chain_value
}
