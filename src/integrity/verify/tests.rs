//! Property tests: a random trail built by the real pipeline (gaps, duplicates, checkpoints,
//! a witness), then one mutation at a time; verify must name exactly that mutation, at its
//! position, and nothing on an untouched trail (shuffled or with duplicates).

// One signature for every mutation, some of which add or remove events.
#![allow(clippy::ptr_arg)]

use super::*;
use crate::config::{Config, Format, Integrity, Overflow, Witness};
use crate::deliver::outcome::Outcome;
use crate::event::{AuditEvent, EventKind};
use crate::integrity::checkpoint::WITNESS_PREFIX;
use crate::integrity::keys::Signer;
use crate::pipeline::{event_uid, Pipeline};
use crate::redact::Redactor;
use crate::test_rng::XorShift;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const STREAM: u64 = 0x5eed;

struct Trail {
    records: Vec<Record>,
    witness: Vec<Checkpoint>,
    signer: Signer,
}

fn pipeline(format: Format, signer: &Signer) -> Pipeline {
    let config = Config {
        format,
        max_batch_events: 4,
        max_buffer_bytes: 8 * 1024,
        max_batch_bytes: 2 * 1024,
        overflow: Overflow::DropNewest,
        integrity: Integrity {
            checkpoint_interval_ms: 1000,
            witness: Witness::Log,
            ..Integrity::default()
        },
        ..Config::default()
    };
    Pipeline::new(
        config,
        Redactor::compile(&Default::default(), None).unwrap(),
        &vec![
            ("service.name", "checkout".into()),
            ("k8s.namespace.name", "shop".into()),
        ],
        STREAM,
    )
    .with_signer(Some(signer.clone()))
}

fn http_event(rng: &mut XorShift, now_ms: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Http);
    e.start_unix_nano = now_ms * 1_000_000 + rng.below(1000) as u64;
    e.observed_unix_nano = e.start_unix_nano + 12_345;
    if rng.below(2) == 0 {
        e.trace_id = Some([rng.below(256) as u8; 16]);
        e.span_id = Some([7; 8]);
    }
    e.set(attr::HTTP_METHOD, Value::Str("GET".into()));
    e.set(
        attr::URL_PATH,
        Value::Str(format!("/orders/{}", rng.next() % 1000)),
    );
    e.set(attr::HTTP_STATUS, Value::Int(200 + rng.below(4) as i64));
    e.set(attr::MTLS, Value::Bool(rng.below(2) == 0));
    e.set(
        "meshaudit.peer.uri_sans",
        Value::StrList(vec!["spiffe://a/b".into()]),
    );
    e
}

fn parse(format: Format, body: &[u8], out: &mut Vec<Record>) {
    match format {
        Format::Json => {
            let mut reader = json_line::LineReader::default();
            for line in String::from_utf8_lossy(body).lines() {
                let general = record::from_json_line(line, "test").unwrap();
                assert_eq!(reader.read(line, "test").unwrap(), general.as_slice());
                assert!(
                    reader.fast_way(line),
                    "the filter's line goes the fast way: {line}"
                );
                out.extend(general);
            }
        }
        Format::Otlp => out.extend(record::from_otlp_proto(body, "test").unwrap()),
    }
}

/// Sends what is due and answers it: mostly delivered; some refused for good (a complete
/// loss), some partly refused (records dropped from the stored copy, the loss reported).
/// Batches that carry a gap event are not lost: a lost gap event takes its report with it
/// (a known limit, docs/integrity.md), and verify would rightly call that range deleted.
fn deliver(p: &mut Pipeline, rng: &mut XorShift, now: u64, format: Format, out: &mut Vec<Record>) {
    let mut token = 0;
    while let Some(export) = p.next_export(now) {
        token += 1;
        p.dispatched(token, export.clone());
        let mut stored = Vec::new();
        parse(format, &export.body, &mut stored);
        let carries_gap = stored.iter().any(|r| is(r, EventKind::Gap));
        let outcome = match rng.below(12) {
            _ if carries_gap => Outcome::Delivered { rejected: 0 },
            0 => Outcome::Rejected { status: 400 },
            1 if export.meta.events > 1 => {
                stored.pop();
                out.extend(stored);
                p.completed(token, Outcome::Delivered { rejected: 1 }, now);
                continue;
            }
            _ => Outcome::Delivered { rejected: 0 },
        };
        if matches!(outcome, Outcome::Delivered { .. }) {
            // At-least-once: now and then a batch is stored twice.
            if rng.below(10) == 0 {
                out.extend(stored.iter().cloned());
            }
            out.extend(stored);
        }
        p.completed(token, outcome, now);
    }
}

fn trail(seed: u64, format: Format) -> Trail {
    let mut rng = XorShift(seed | 1);
    let signer = Signer::from_seed(&[seed as u8; 32]);
    let mut p = pipeline(format, &signer);
    let mut records = Vec::new();
    let mut now = 1_700_000_000_000;
    for _ in 0..80 + rng.below(60) {
        now += rng.below(400) as u64;
        let e = http_event(&mut rng, now);
        p.accept(e, now);
        // Now and then the collector is not asked for a while: the buffer fills, events are
        // lost before they leave (single-event losses, each complete with its chain head).
        if rng.below(3) == 0 {
            deliver(&mut p, &mut rng, now, format, &mut records);
        }
    }
    for _ in 0..10 {
        now += 10;
        p.flush_all();
        deliver(&mut p, &mut rng, now, format, &mut records);
        if !p.has_pending() && p.unreported_losses() == 0 && p.in_flight() == 0 {
            break;
        }
    }
    // The last checkpoint (drain) goes through for sure.
    p.flush_all();
    while let Some(export) = p.next_export(now) {
        parse(format, &export.body, &mut records);
        p.dispatched(999, export);
        p.completed(999, Outcome::Delivered { rejected: 0 }, now);
    }
    assert_eq!(p.unreported_losses(), 0);
    let witness = p
        .take_fallback_lines()
        .iter()
        .filter(|l| l.starts_with(WITNESS_PREFIX))
        .map(|l| Checkpoint::from_witness_line(l).unwrap().unwrap())
        .collect();
    Trail {
        records,
        witness,
        signer,
    }
}

fn verify(t: &Trail, records: &[Record]) -> Report {
    let mut v = Verifier::new(Options {
        keys: vec![t.signer.public()],
        window: 1 << 16,
    });
    for c in &t.witness {
        v.add_witness(c.clone());
    }
    for r in records {
        v.add(r);
    }
    v.finish()
}

fn seq(r: &Record) -> u64 {
    r.sequence().unwrap()
}

fn is(r: &Record, kind: EventKind) -> bool {
    r.event_name == kind.name()
}

/// The trail without its at-least-once copies, in sequence order.
fn distinct(records: &[Record]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut sorted = records.to_vec();
    sorted.sort_by_key(seq);
    for r in sorted {
        if out.last().is_none_or(|l| seq(l) != seq(&r)) {
            out.push(r);
        }
    }
    out
}

fn findings(report: &Report) -> Vec<(ViolationKind, u64)> {
    report
        .violations
        .iter()
        .map(|v| (v.kind, v.first_seq))
        .collect()
}

const SEEDS: u64 = 24;

#[test]
fn untouched_trails_verify_clean_in_any_order_and_with_duplicates() {
    let mut gaps = 0;
    let mut duplicates = 0;
    for seed in 0..SEEDS {
        for format in [Format::Json, Format::Otlp] {
            let t = trail(seed, format);
            let report = verify(&t, &t.records);
            assert!(report.is_clean(), "seed {seed}: {:?}", report.violations);
            let s = &report.streams[0];
            assert!(s.checkpoints_valid >= 1 && s.checkpoints_valid == s.checkpoints);
            assert_eq!(
                s.unsealed_tail, 0,
                "the drain's checkpoint seals the stream"
            );
            assert_eq!(
                s.verified + s.unanchored,
                s.events,
                "every event verified or counted"
            );
            gaps += s.gaps;
            duplicates += s.duplicates;
            let mut shuffled = t.records.clone();
            let mut rng = XorShift(seed + 99);
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i + 1));
            }
            let again = verify(&t, &shuffled);
            assert!(
                again.is_clean(),
                "seed {seed} shuffled: {:?}",
                again.violations
            );
            assert_eq!(again.streams, report.streams);
        }
    }
    assert!(
        gaps > 0 && duplicates > 0,
        "the trails hold losses and copies"
    );
}

/// Picks an element satisfying `ok`, at random.
fn pick<T: Clone>(rng: &mut XorShift, items: &[T], ok: impl Fn(&T) -> bool) -> Option<T> {
    let candidates: Vec<&T> = items.iter().filter(|i| ok(i)).collect();
    (!candidates.is_empty()).then(|| candidates[rng.below(candidates.len())].clone())
}

fn present(records: &[Record], s: u64) -> bool {
    records.iter().any(|r| seq(r) == s)
}

/// Recomputes the chain values from sequence `from` on, as someone with write access to the
/// store could (the chain has no key), up to the first missing sequence.
fn rechain(records: &mut [Record], from: u64) {
    let mut s = from;
    loop {
        let prev = records
            .iter()
            .find(|r| seq(r) + 1 == s)
            .and_then(Record::chain)
            .unwrap();
        let Some(r) = records.iter_mut().find(|r| seq(r) == s) else {
            return;
        };
        let mut canonical = Vec::new();
        r.canonical(&mut canonical);
        r.set(
            attr::CHAIN,
            Value::Str(chain::to_hex(&chain::link(&prev, &canonical))),
        );
        s += 1;
    }
}

type Mutation = fn(&mut XorShift, &mut Vec<Record>, &Trail) -> Option<Vec<(ViolationKind, u64)>>;

fn modify(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let s = seq(&pick(rng, rs, |r| !is(r, EventKind::Gap))?);
    // Every stored copy of it.
    for r in rs.iter_mut().filter(|r| seq(r) == s) {
        r.set(attr::HTTP_STATUS, Value::Int(999));
    }
    Some(vec![(ViolationKind::Modified, s)])
}

/// Whether a gap event's range holds `s`: inside a partial loss's range a deletion looks like
/// the loss (docs/integrity.md).
fn in_gap(rs: &[Record], s: u64) -> bool {
    rs.iter().any(|g| {
        is(g, EventKind::Gap)
            && g.int(attr::GAP_FIRST_SEQUENCE)
                .is_some_and(|f| f as u64 <= s)
            && g.int(attr::GAP_LAST_SEQUENCE)
                .is_some_and(|l| s <= l as u64)
    })
}

fn delete(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let last = rs.iter().map(seq).max()?;
    let victim = pick(rng, rs, |r| {
        !is(r, EventKind::Gap) && seq(r) < last && !in_gap(rs, seq(r))
    })?;
    rs.retain(|r| seq(r) != seq(&victim));
    Some(vec![(ViolationKind::Deleted, seq(&victim))])
}

fn insert(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let gap = pick(rng, rs, |r| {
        is(r, EventKind::Gap) && r.get(attr::GAP_CHAIN_HEAD).is_some()
    })?;
    let first = u64::try_from(gap.int(attr::GAP_FIRST_SEQUENCE)?).ok()?;
    let last = u64::try_from(gap.int(attr::GAP_LAST_SEQUENCE)?).ok()?;
    let at = first + rng.below((last - first + 1) as usize) as u64;
    let mut forged = pick(rng, rs, |r| is(r, EventKind::Http))?;
    forged.set(attr::SEQUENCE, Value::Int(at as i64));
    forged.set(attr::LOG_RECORD_UID, Value::Str(event_uid(STREAM, at)));
    forged.set(attr::URL_PATH, Value::Str("/forged".into()));
    forged.set(attr::CHAIN, Value::Str("ab".repeat(32)));
    rs.push(forged);
    Some(vec![(ViolationKind::Inserted, at)])
}

fn swap(rng: &mut XorShift, rs: &mut Vec<Record>, _: &Trail) -> Option<Vec<(ViolationKind, u64)>> {
    let d = distinct(rs);
    let ok = |r: &Record| is(r, EventKind::Http) && seq(r) > 0 && present(&d, seq(r) - 1);
    let a = seq(&pick(rng, &d, ok)?);
    let b = seq(&pick(rng, &d, |r| ok(r) && seq(r) != a)?);
    let (a, b) = (a.min(b), a.max(b));
    for r in rs.iter_mut() {
        let s = seq(r);
        let to = if s == a {
            b
        } else if s == b {
            a
        } else {
            continue;
        };
        r.set(attr::SEQUENCE, Value::Int(to as i64));
        r.set(attr::LOG_RECORD_UID, Value::Str(event_uid(STREAM, to)));
    }
    Some(vec![
        (ViolationKind::Reordered, a),
        (ViolationKind::Reordered, b),
    ])
}

fn duplicate_different(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let mut copy = pick(rng, rs, |r| is(r, EventKind::Http))?;
    copy.set(attr::URL_PATH, Value::Str("/other".into()));
    let s = seq(&copy);
    let at = rng.below(rs.len() + 1);
    rs.insert(at, copy);
    Some(vec![(ViolationKind::DuplicateDifferentContent, s)])
}

fn truncate(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    t: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let last_gap = rs
        .iter()
        .filter(|r| is(r, EventKind::Gap))
        .map(seq)
        .max()
        .unwrap_or(0);
    let sealed = t.witness.iter().map(|c| c.last_sequence).max()?;
    let d = distinct(rs);
    let cut = seq(&pick(rng, &d, |r| {
        seq(r) > last_gap + 1 && seq(r) <= sealed + 1
    })?);
    rs.retain(|r| seq(r) < cut);
    Some(vec![(ViolationKind::Truncated, cut)])
}

fn drop_checkpoint(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let last = rs.iter().map(seq).max()?;
    let c = seq(&pick(rng, rs, |r| {
        is(r, EventKind::Checkpoint) && seq(r) < last && !in_gap(rs, seq(r))
    })?);
    rs.retain(|r| seq(r) != c);
    Some(vec![(ViolationKind::Deleted, c)])
}

/// A signature byte flipped, and the chain recomputed after it (so only the signature tells).
fn flip_signature(
    rng: &mut XorShift,
    rs: &mut Vec<Record>,
    _: &Trail,
) -> Option<Vec<(ViolationKind, u64)>> {
    let mut d = distinct(rs);
    let c = seq(&pick(rng, &d, |r| {
        is(r, EventKind::Checkpoint) && seq(r) > 0 && present(&d, seq(r) - 1)
    })?);
    // No later checkpoint before the rechained run ends (its signed head would differ too).
    let mut end = c + 1;
    while present(&d, end) {
        if is(d.iter().find(|r| seq(r) == end)?, EventKind::Checkpoint) {
            return None;
        }
        end += 1;
    }
    let r = d.iter_mut().find(|r| seq(r) == c)?;
    let mut sig = r.str(attr::CHECKPOINT_SIGNATURE)?.as_bytes().to_vec();
    let i = rng.below(sig.len());
    sig[i] = if sig[i] == b'0' { b'1' } else { b'0' };
    r.set(
        attr::CHECKPOINT_SIGNATURE,
        Value::Str(String::from_utf8(sig).unwrap()),
    );
    rechain(&mut d, c);
    *rs = d;
    Some(vec![(ViolationKind::BadSignature, c)])
}

#[test]
fn every_single_mutation_is_found_as_itself_at_its_position() {
    let trails: Vec<Trail> = (0..SEEDS)
        .map(|seed| {
            trail(
                seed,
                if seed % 2 == 0 {
                    Format::Json
                } else {
                    Format::Otlp
                },
            )
        })
        .collect();
    let mutations: [(&str, Mutation); 8] = [
        ("modify", modify),
        ("delete", delete),
        ("insert", insert),
        ("swap", swap),
        ("duplicate with different content", duplicate_different),
        ("truncate tail", truncate),
        ("drop a checkpoint", drop_checkpoint),
        ("flip a signature byte", flip_signature),
    ];
    for (name, mutate) in mutations {
        let mut tried = 0;
        for (seed, t) in (0..SEEDS).zip(&trails) {
            let mut rng = XorShift(seed * 31 + 7);
            let mut records = t.records.clone();
            let Some(mut want) = mutate(&mut rng, &mut records, t) else {
                continue;
            };
            tried += 1;
            let mut got = findings(&verify(t, &records));
            want.sort();
            got.sort();
            assert_eq!(got, want, "{name}, seed {seed}");
        }
        assert!(
            tried >= SEEDS / 3,
            "{name}: only {tried} trails could take it"
        );
    }
}

#[test]
fn without_a_witness_a_truncated_tail_is_an_unsealed_tail() {
    let t = trail(3, Format::Json);
    let d = distinct(&t.records);
    let last = seq(d.last().unwrap());
    let mut records = t.records.clone();
    records.retain(|r| seq(r) != last);
    let mut v = Verifier::new(Options {
        keys: vec![t.signer.public()],
        ..Options::default()
    });
    for r in records {
        v.add(&r);
    }
    let report = v.finish();
    assert!(report.is_clean(), "{:?}", report.violations);
    assert!(report.streams[0].unsealed_tail > 0);
}

#[test]
fn keys_decide_what_a_signature_proves() {
    let t = trail(5, Format::Json);
    // No key given: signatures are not checked, signed checkpoints are unknown keys.
    let mut v = Verifier::new(Options::default());
    for r in &t.records {
        v.add(r);
    }
    let report = v.finish();
    assert!(report
        .violations
        .iter()
        .all(|v| v.kind == ViolationKind::UnknownKey));
    assert!(!report.violations.is_empty());
    // Another key among those given (rotation): still verifies.
    let mut v = Verifier::new(Options {
        keys: vec![Signer::from_seed(&[200; 32]).public(), t.signer.public()],
        ..Options::default()
    });
    for r in &t.records {
        v.add(r);
    }
    assert!(v.finish().is_clean());
}

#[test]
fn a_witness_stream_the_trail_lacks_is_missing() {
    let t = trail(7, Format::Json);
    let mut v = Verifier::new(Options {
        keys: vec![t.signer.public()],
        ..Options::default()
    });
    for c in &t.witness {
        v.add_witness(c.clone());
    }
    let report = v.finish();
    assert_eq!(
        findings(&report).iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![ViolationKind::MissingStream]
    );
}
