//! Per-event cost of `Redactor::redact` on typical requests (about 1 KB of headers; 1024 requests
//! in turn, whose request-specific values differ and whose client headers repeat), with
//! (a) the default configuration, (b) the defaults plus 20 user regex detectors, (c) no
//! redaction at all (`defaults: false`, every detector off) as the floor.
//!
//! `redact` mutates its event, so each iteration redacts a fresh clone of the next event
//! (`iter_batched`: the clone is made, and the redacted event dropped, outside the timed part);
//! `redact_parts/event_clone` times that clone alone. `redact` uses SmallInput batches, whose
//! thousands of clones are mostly out of cache; `redact_warm` uses batches of 16, closer to the
//! filter, which redacts the event it has just built. `detectors_scan` and `custom_regexes` time the two scanning parts on the same text, to
//! show where the time goes.
//!
//! Run: `make bench-redact` (prints a summary), or `cargo bench --bench redaction`.

// A benchmark is not production code: the crate's no-unwrap lints are for the filter itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::Case;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meshaudit::event::AuditEvent;
use meshaudit::redact::detectors::{self, DetectorSet};

/// A copy of `e` with room for the attributes the filter adds after capture, as an event the
/// filter builds has (it grows by doubling; a clone has no room to spare).
fn filter_built(e: &AuditEvent) -> AuditEvent {
    let mut copy = e.clone();
    copy.attributes.reserve(8);
    copy
}

/// Distinct requests the benchmark cycles through (see `common::events`): more than redaction's
/// table of unchanged values holds (256 entries), so a value that varies per request is never
/// found there again, as in a real stream; the client's headers repeat, as they do.
const EVENTS: usize = 1024;

fn redaction(c: &mut Criterion) {
    // `redact`: batches of SmallInput size (thousands of clones made ahead, so the events come
    // from memory, not cache). `redact_warm`: batches of 16 clones, which stay in cache, as the
    // event the filter has just built does.
    for (group_name, batch) in [
        ("redact", BatchSize::SmallInput),
        ("redact_warm", BatchSize::NumIterations(16)),
    ] {
        let mut group = c.benchmark_group(group_name);
        group
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        for case in Case::ALL {
            let mut loaded = common::load(case).expect("benchmark configuration loads");
            let templates = common::events(&loaded, EVENTS);
            let first = templates.first().expect("benchmark events are built");
            group.throughput(Throughput::ElementsAndBytes {
                elements: 1,
                bytes: common::text_bytes(first),
            });
            let redactor = &mut loaded.redactor;
            let mut next = templates.iter().cycle();
            group.bench_function(case.name(), |b| {
                b.iter_batched(
                    || filter_built(next.next().unwrap_or(first)),
                    |mut e| {
                        redactor.redact(&mut e);
                        e
                    },
                    batch,
                )
            });
        }
        group.finish();
    }
}

/// The parts: the clone every iteration above pays outside the timing, the built-in detectors'
/// scan alone, and the 20 custom regexes alone, over the texts the redactor scans.
fn parts(c: &mut Criterion) {
    let loaded = common::load(Case::Default).expect("benchmark configuration loads");
    let template = common::event(&loaded);
    let bytes = common::text_bytes(&template);
    let texts = common::scanned_texts(&template);
    let scanned: u64 = texts.iter().map(|t| t.len() as u64).sum();

    let mut group = c.benchmark_group("redact_parts");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes });
    group.bench_function("event_clone", |b| {
        b.iter_batched(|| (), |()| template.clone(), BatchSize::SmallInput)
    });

    group.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: scanned,
    });
    let mut findings = Vec::new();
    group.bench_function("detectors_scan", |b| {
        b.iter(|| {
            for t in &texts {
                findings.clear();
                detectors::scan(black_box(t), DetectorSet::all(), &mut findings);
            }
            findings.len()
        })
    });

    let regexes: Vec<regex::Regex> = common::CUSTOM_DETECTORS
        .iter()
        .map(|p| regex::Regex::new(p).expect("custom detector pattern compiles"))
        .collect();
    group.bench_function("custom_regexes_20", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &texts {
                for r in &regexes {
                    n += r.find_iter(black_box(t)).count();
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, redaction, parts);
criterion_main!(benches);
