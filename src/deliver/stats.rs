//! Delivery counters: what a worker's pipeline captured, sent, retried and lost since the host
//! last published them as Envoy metrics.

use crate::deliver::loss::LossReason;

/// Counter increments not yet published to the host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events_captured: u64,
    pub events_sent: u64,
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub retries: u64,
    /// Events lost for good, all reasons.
    pub events_dropped: u64,
    pub dropped_buffer_full: u64,
    pub dropped_rejected: u64,
    pub dropped_drain: u64,
    /// Events the collector refused in an OTLP partial success (also in `events_dropped`).
    pub events_rejected: u64,
    pub gap_events: u64,
    pub fallback_lines: u64,
    pub fail_closed_rejections: u64,
    /// Requests the audit policy records at level `none` (not a loss).
    pub events_unaudited: u64,
    pub bytes_sent: u64,
    /// Checkpoint events emitted (integrity on).
    pub checkpoints: u64,
}

impl Stats {
    /// `events` were lost for good, for `reason` (a partial success is counted where it is
    /// settled, in `events_rejected`).
    pub fn lost(&mut self, reason: LossReason, events: u64) {
        self.events_dropped += events;
        match reason {
            LossReason::BufferFull => self.dropped_buffer_full += events,
            LossReason::CollectorRejected => self.dropped_rejected += events,
            LossReason::PartialSuccess => {}
            LossReason::Drain => self.dropped_drain += events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_loss_counts_in_the_total_and_under_its_reason() {
        let mut s = Stats::default();
        s.lost(LossReason::BufferFull, 2);
        s.lost(LossReason::CollectorRejected, 3);
        s.lost(LossReason::Drain, 4);
        s.lost(LossReason::PartialSuccess, 5);
        assert_eq!(
            (
                s.events_dropped,
                s.dropped_buffer_full,
                s.dropped_rejected,
                s.dropped_drain,
                s.events_rejected
            ),
            (14, 2, 3, 4, 0)
        );
    }
}
