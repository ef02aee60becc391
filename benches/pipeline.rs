//! Per-stage cost of one typical request (about 1 KB of headers, default configuration), so a
//! request's cost can be broken down:
//!
//! - `connection_read`: connection facts from the host (once per connection, then cached);
//! - `build`: `HttpCapture::build` from recorded host values and header maps (the host calls
//!   are a `HashMap` lookup and a copy here, so real host calls cost more);
//! - `event_clone`: the clone that the stages below pay outside their timing;
//! - `redact`: `Redactor::redact` with the default configuration;
//! - `encode_otlp`, `encode_json`: `Codec::encode` of the redacted event;
//! - `request`: build + redact + OTLP encode, what the filter computes per request in `on_log`
//!   (less the host calls and the batcher's copy);
//! - `frame_full_batch`: the one piece of work per batch on the worker thread, framing a full
//!   default batch (500 encoded events) as an OTLP request; a request that arrives meanwhile
//!   waits for it (docs/performance.md#latency).
//!
//! Run: `cargo bench --bench pipeline`.

// A benchmark is not production code: the crate's no-unwrap lints are for the filter itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::Case;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meshaudit::capture::connection::ConnectionFacts;
use meshaudit::capture::http::HttpCapture;
use meshaudit::config::Format;
use meshaudit::encode::Codec;
use meshaudit::event::Resource;

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

fn stages(c: &mut Criterion) {
    let mut loaded = common::load(Case::Default).expect("benchmark configuration loads");
    let host = common::host();
    let conn = ConnectionFacts::read(&host);
    let capture = HttpCapture::new(&loaded.config);
    let request = common::pairs(common::REQUEST);
    let response = common::pairs(common::RESPONSE);
    let template = capture.build(&host, &conn, &request, &response, || 0);
    let mut redacted = template.clone();
    loaded.redactor.redact(&mut redacted);
    let otlp = Codec::new(Format::Otlp, &resource());
    let json = Codec::new(Format::Json, &resource());

    let mut group = c.benchmark_group("pipeline");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: common::text_bytes(&template),
        });

    group.bench_function("connection_read", |b| {
        b.iter(|| ConnectionFacts::read(black_box(&host)))
    });
    group.bench_function("build", |b| {
        b.iter(|| capture.build(black_box(&host), &conn, &request, &response, || 0))
    });
    group.bench_function("event_clone", |b| {
        b.iter_batched(|| (), |()| template.clone(), BatchSize::SmallInput)
    });
    let redactor = &mut loaded.redactor;
    group.bench_function("redact", |b| {
        b.iter_batched(
            || template.clone(),
            |mut e| {
                redactor.redact(&mut e);
                e
            },
            BatchSize::SmallInput,
        )
    });
    let mut out = Vec::with_capacity(4096);
    group.bench_function("encode_otlp", |b| {
        b.iter(|| {
            out.clear();
            otlp.encode(black_box(&redacted), &mut out);
            out.len()
        })
    });
    group.bench_function("encode_json", |b| {
        b.iter(|| {
            out.clear();
            json.encode(black_box(&redacted), &mut out);
            out.len()
        })
    });
    group.bench_function("request", |b| {
        b.iter(|| {
            let mut e = capture.build(black_box(&host), &conn, &request, &response, || 0);
            redactor.redact(&mut e);
            out.clear();
            otlp.encode(&e, &mut out);
            out.len()
        })
    });
    // A full default batch: `max_batch_events` (500) of these records, about 1 MB.
    let mut records = Vec::new();
    for _ in 0..500 {
        otlp.encode(&redacted, &mut records);
    }
    group
        .throughput(Throughput::Bytes(records.len() as u64))
        .bench_function("frame_full_batch", |b| {
            b.iter(|| otlp.frame(black_box(&records)).len())
        });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
