//! Integrity costs:
//!
//! - `chain`: `StreamIntegrity::chain` of one typical redacted request event (canonical bytes
//!   with the workload's resource attributes, SHA-256, the hex attribute) — the filter's cost per
//!   event; goal ≤ 1 µs; `chain` chains a fresh copy each call (cold in the cache),
//!   `chain_warm` the same event again (as the filter chains an event it has just built);
//! - `verify_jsonl`: `meshaudit verify`'s work per event from JSON lines — read the line (its
//!   reader, as `meshaudit verify` uses it),
//!   canonical form, link check, checkpoint signatures (one per 1000 events) — over a signed
//!   trail of 20,000 typical events; goal ≥ 300,000 events/s on one core.
//!
//! Run: `make bench-integrity` (`cargo bench --bench integrity`).

// A benchmark is not production code: the crate's no-unwrap lints are for the filter itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use common::Case;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meshaudit::capture::connection::ConnectionFacts;
use meshaudit::capture::http::HttpCapture;
use meshaudit::config::{Config, Format, Integrity};
use meshaudit::deliver::outcome::Outcome;
use meshaudit::event::{attr, Resource, Value};
use meshaudit::integrity::keys::Signer;
use meshaudit::integrity::stream::StreamIntegrity;
use meshaudit::integrity::verify::json_line::LineReader;
use meshaudit::integrity::verify::{Options, Verifier};
use meshaudit::pipeline::{event_uid, Pipeline};
use meshaudit::redact::Redactor;

fn resource() -> Resource {
    vec![
        ("service.name", "orders".to_string()),
        ("service.version", "v3".to_string()),
        ("k8s.namespace.name", "shop".to_string()),
        ("k8s.pod.name", "orders-7c9d8b6f5-x2x9q".to_string()),
        ("meshaudit.workload.name", "orders".to_string()),
        ("k8s.cluster.name", "Kubernetes".to_string()),
        ("telemetry.sdk.name", "meshaudit".to_string()),
        ("telemetry.sdk.version", "0.1.0".to_string()),
    ]
}

const TRAIL_EVENTS: u64 = 20_000;

fn integrity(c: &mut Criterion) {
    let mut loaded = common::load(Case::Default).expect("benchmark configuration loads");
    let host = common::host();
    let conn = ConnectionFacts::read(&host);
    let capture = HttpCapture::new(&loaded.config);
    let request = common::pairs(common::REQUEST);
    let response = common::pairs(common::RESPONSE);
    let unredacted = capture.build(&host, &conn, &request, &response, || 0);
    let mut event = unredacted.clone();
    loaded.redactor.redact(&mut event);
    event.set(attr::LOG_RECORD_UID, Value::Str(event_uid(1, 5)));
    event.set(attr::STREAM_ID, Value::Str(format!("{:016x}", 1)));
    event.set(attr::SEQUENCE, Value::Int(5));

    let mut stream = StreamIntegrity::new("0000000000000001", &resource(), &Integrity::default());
    stream.set_signer(Some(Signer::from_seed(&[1; 32])));
    let mut first = event.clone();
    stream.chain(&mut first, 0, 1);

    let mut group = c.benchmark_group("integrity");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    group.bench_function("chain", |b| {
        b.iter_batched(
            || event.clone(),
            |mut e| {
                stream.chain(&mut e, 5, 1);
                e
            },
            BatchSize::SmallInput,
        )
    });
    // The event as the filter chains it: just redacted and sequenced, so warm in the cache
    // (its chain value is taken off again for the next round).
    let mut warm = event.clone();
    warm.attributes.reserve(1);
    group.bench_function("chain_warm", |b| {
        b.iter(|| {
            let link = stream.chain(&mut warm, 5, 1);
            warm.attributes.pop();
            link
        })
    });

    let (lines, signer) = trail(&unredacted);
    group
        .throughput(Throughput::Elements(TRAIL_EVENTS))
        .sample_size(10);
    group.bench_function("verify_jsonl", |b| {
        b.iter(|| {
            let mut v = Verifier::new(Options {
                keys: vec![signer.public()],
                ..Options::default()
            });
            let (mut reader, mut origin) = (LineReader::default(), String::new());
            for (i, line) in lines.lines().enumerate() {
                // The origin string reused, as `meshaudit verify` does.
                origin.clear();
                write!(origin, "trail:{i}").unwrap();
                for r in reader.read(line, &origin).unwrap() {
                    v.add(r);
                }
            }
            let report = v.finish();
            assert!(report.is_clean(), "{:?}", report.violations.first());
            black_box(report)
        })
    });
    group.finish();
}

/// A signed trail of typical events as JSON lines, a checkpoint per 1000 events (the pipeline
/// redacts them, as the filter does).
fn trail(template: &meshaudit::event::AuditEvent) -> (String, Signer) {
    let signer = Signer::from_seed(&[9; 32]);
    let config = Config {
        format: Format::Json,
        integrity: Integrity {
            checkpoint_interval_ms: 1000,
            ..Integrity::default()
        },
        ..Config::default()
    };
    let redactor = Redactor::compile(&config.redaction, None).unwrap();
    let mut p = Pipeline::new(config, redactor, &resource(), 7).with_signer(Some(signer.clone()));
    let mut out = String::new();
    let mut now = 1_700_000_000_000u64;
    for _ in 0..TRAIL_EVENTS {
        now += 1;
        let mut e = template.clone();
        e.attributes.retain(|a| {
            a.key != attr::LOG_RECORD_UID && a.key != attr::STREAM_ID && a.key != attr::SEQUENCE
        });
        e.start_unix_nano = now * 1_000_000;
        e.observed_unix_nano = now * 1_000_000 + 500;
        p.accept(e, now);
        while let Some(export) = p.next_export(now) {
            out.push_str(std::str::from_utf8(&export.body).unwrap());
            p.dispatched(1, export);
            p.completed(1, Outcome::Delivered { rejected: 0 }, now);
        }
    }
    p.flush_all();
    while let Some(export) = p.next_export(now) {
        out.push_str(std::str::from_utf8(&export.body).unwrap());
        p.dispatched(1, export);
        p.completed(1, Outcome::Delivered { rejected: 0 }, now);
    }
    (out, signer)
}

criterion_group!(benches, integrity);
criterion_main!(benches);
