//! Envoy metrics defined by the filter, visible in the admin `/stats` (Envoy shows them with
//! its `wasmcustom.` prefix). Counters are published from the pipeline's [`Stats`] on each tick,
//! not per request, so a request costs no metric host call.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::pipeline::Stats;

pub struct Metrics {
    events_captured: Option<u32>,
    events_sent: Option<u32>,
    batches_sent: Option<u32>,
    batches_failed: Option<u32>,
    events_dropped: Option<u32>,
    events_rejected: Option<u32>,
    bytes_sent: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            events_captured: counter("meshaudit.events_captured"),
            events_sent: counter("meshaudit.events_sent"),
            batches_sent: counter("meshaudit.batches_sent"),
            batches_failed: counter("meshaudit.batches_failed"),
            events_dropped: counter("meshaudit.events_dropped"),
            events_rejected: counter("meshaudit.events_rejected"),
            bytes_sent: counter("meshaudit.bytes_sent"),
        }
    }

    pub fn publish(&self, s: &Stats) {
        add(self.events_captured, s.events_captured);
        add(self.events_sent, s.events_sent);
        add(self.batches_sent, s.batches_sent);
        add(self.batches_failed, s.batches_failed);
        add(self.events_dropped, s.events_dropped);
        add(self.events_rejected, s.events_rejected);
        add(self.bytes_sent, s.bytes_sent);
    }
}

/// Increments a counter; zero is skipped (the host refuses non-positive offsets).
fn add(id: Option<u32>, n: u64) {
    if let (Some(id), Ok(n)) = (id, i64::try_from(n)) {
        if n > 0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}
