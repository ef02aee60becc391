//! Envoy metrics defined by the filter, visible in the admin `/stats` (Envoy shows them with
//! its `wasmcustom.` prefix). Counters are published from the pipeline's [`Stats`] on each tick,
//! not per request, so a request costs no metric host call. Gauges are moved by deltas, so
//! each worker adds its own share and the gauge is the sum over workers.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::capture::budget::Budget;
use crate::deliver::stats::Stats;
use crate::worker::Publication;

/// A counter and the [`Stats`] field it publishes.
type Counter = (Option<u32>, fn(&Stats) -> u64);

pub struct Metrics {
    counters: Vec<Counter>,
    buffered_events: Option<u32>,
    buffered_bytes: Option<u32>,
    published_events: i64,
    published_bytes: i64,
    /// Bodies skipped or cut because the body-capture budget was spent.
    bodies_over_budget: Option<u32>,
    body_capture_bytes: Option<u32>,
    body_capture_peak_bytes: Option<u32>,
    published_body_bytes: i64,
    published_body_peak: i64,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        let counter = |name: &str| define(MetricType::Counter, name);
        let counters: Vec<Counter> = vec![
            (counter("meshaudit.events_captured"), |s| s.events_captured),
            (counter("meshaudit.events_sent"), |s| s.events_sent),
            (counter("meshaudit.batches_sent"), |s| s.batches_sent),
            (counter("meshaudit.batches_failed"), |s| s.batches_failed),
            (counter("meshaudit.retries"), |s| s.retries),
            (counter("meshaudit.events_dropped"), |s| s.events_dropped),
            (counter("meshaudit.events_dropped.buffer_full"), |s| {
                s.dropped_buffer_full
            }),
            (
                counter("meshaudit.events_dropped.collector_rejected"),
                |s| s.dropped_rejected,
            ),
            (counter("meshaudit.events_dropped.drain"), |s| {
                s.dropped_drain
            }),
            (counter("meshaudit.events_rejected"), |s| s.events_rejected),
            (counter("meshaudit.gap_events"), |s| s.gap_events),
            (counter("meshaudit.fallback_lines"), |s| s.fallback_lines),
            (counter("meshaudit.fail_closed_rejections"), |s| {
                s.fail_closed_rejections
            }),
            (counter("meshaudit.events_unaudited"), |s| {
                s.events_unaudited
            }),
            (counter("meshaudit.bytes_sent"), |s| s.bytes_sent),
            (counter("meshaudit.checkpoints"), |s| s.checkpoints),
        ];
        Metrics {
            counters,
            buffered_events: define(MetricType::Gauge, "meshaudit.buffered_events"),
            buffered_bytes: define(MetricType::Gauge, "meshaudit.buffered_bytes"),
            published_events: 0,
            published_bytes: 0,
            bodies_over_budget: counter("meshaudit.bodies_over_budget"),
            body_capture_bytes: define(MetricType::Gauge, "meshaudit.body_capture_bytes"),
            body_capture_peak_bytes: define(MetricType::Gauge, "meshaudit.body_capture_peak_bytes"),
            published_body_bytes: 0,
            published_body_peak: 0,
        }
    }

    /// Publishes the body-capture budget: bodies stopped for it since the last tick, bytes
    /// held now, and the most ever held at once.
    fn publish_bodies(&mut self, budget: &Budget) {
        let over = i64::try_from(budget.take_exhausted()).unwrap_or(i64::MAX);
        if let (Some(id), true) = (self.bodies_over_budget, over > 0) {
            let _ = hostcalls::increment_metric(id, over);
        }
        let held = i64::try_from(budget.held()).unwrap_or(i64::MAX);
        let peak = i64::try_from(budget.peak()).unwrap_or(i64::MAX);
        move_gauge(
            self.body_capture_bytes,
            &mut self.published_body_bytes,
            held,
        );
        move_gauge(
            self.body_capture_peak_bytes,
            &mut self.published_body_peak,
            peak,
        );
    }

    /// Publishes a worker's counters, what it holds, and its body-capture budget.
    pub fn publish(&mut self, p: &Publication) {
        self.publish_stats(&p.stats, p.buffered_events, p.buffered_bytes);
        self.publish_bodies(&p.bodies);
    }

    fn publish_stats(&mut self, s: &Stats, buffered_events: u64, buffered_bytes: usize) {
        for (id, get) in &self.counters {
            if let (Some(id), Ok(n)) = (id, i64::try_from(get(s))) {
                // Zero is skipped: the host refuses non-positive counter increments.
                if n > 0 {
                    let _ = hostcalls::increment_metric(*id, n);
                }
            }
        }
        let events = i64::try_from(buffered_events).unwrap_or(i64::MAX);
        let bytes = i64::try_from(buffered_bytes).unwrap_or(i64::MAX);
        move_gauge(self.buffered_events, &mut self.published_events, events);
        move_gauge(self.buffered_bytes, &mut self.published_bytes, bytes);
    }

    /// Takes this worker's share out of the gauges (its root context is going away).
    pub fn withdraw(&mut self) {
        move_gauge(self.buffered_events, &mut self.published_events, 0);
        move_gauge(self.buffered_bytes, &mut self.published_bytes, 0);
        move_gauge(self.body_capture_bytes, &mut self.published_body_bytes, 0);
        move_gauge(
            self.body_capture_peak_bytes,
            &mut self.published_body_peak,
            0,
        );
    }
}

fn move_gauge(id: Option<u32>, published: &mut i64, now: i64) {
    let delta = now - *published;
    if let (Some(id), true) = (id, delta != 0) {
        if hostcalls::increment_metric(id, delta).is_ok() {
            *published = now;
        }
    }
}
