//! A signed trail of typical events as JSON lines on stdout, streamed (nothing is kept): the
//! benchmarks' typical request event (benches/common), redacted, sequenced, chained and
//! checkpointed every 1000 events by the crate's own pipeline, as the filter does.
//!
//! `cargo run --release --example gen-trail -- EVENTS > trail.jsonl`; the public key to verify
//! with is the one of seed [9; 32] (printed to stderr as base64).
//! Used for the ten-million-event memory check in docs/performance.md#integrity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::io::Write;

use base64::Engine;
use common::Case;
use meshaudit::capture::connection::ConnectionFacts;
use meshaudit::capture::http::HttpCapture;
use meshaudit::config::{Config, Format, Integrity};
use meshaudit::deliver::outcome::Outcome;
use meshaudit::integrity::keys::Signer;
use meshaudit::pipeline::Pipeline;
use meshaudit::redact::Redactor;

fn main() {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let loaded = common::load(Case::Default).expect("benchmark configuration loads");
    let host = common::host();
    let conn = ConnectionFacts::read(&host);
    let capture = HttpCapture::new(&loaded.config);
    let template = capture.build(
        &host,
        &conn,
        &common::pairs(common::REQUEST),
        &common::pairs(common::RESPONSE),
        || 0,
    );
    let signer = Signer::from_seed(&[9; 32]);
    eprintln!(
        "public key: {}",
        base64::engine::general_purpose::STANDARD.encode(signer.public().as_bytes())
    );
    let config = Config {
        format: Format::Json,
        integrity: Integrity {
            checkpoint_interval_ms: 1000,
            ..Integrity::default()
        },
        ..Config::default()
    };
    let redactor = Redactor::compile(&config.redaction, None).unwrap();
    let resource = resource();
    let mut p = Pipeline::new(config, redactor, &resource, 7).with_signer(Some(signer));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut now = 1_700_000_000_000u64;
    let drain = |p: &mut Pipeline, now: u64, out: &mut dyn Write| {
        while let Some(export) = p.next_export(now) {
            out.write_all(&export.body).unwrap();
            p.dispatched(1, export);
            p.completed(1, Outcome::Delivered { rejected: 0 }, now);
        }
    };
    for _ in 0..events {
        now += 1;
        let mut e = template.clone();
        e.start_unix_nano = now * 1_000_000;
        e.observed_unix_nano = now * 1_000_000 + 500;
        p.accept(e, now);
        drain(&mut p, now, &mut out);
    }
    p.flush_all();
    drain(&mut p, now, &mut out);
    out.flush().unwrap();
}

/// The workload's resource attributes, as benches/integrity.rs has them.
fn resource() -> meshaudit::event::Resource {
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
