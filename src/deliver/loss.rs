//! Loss accounting: every event that does not reach the collector is recorded here, by stream
//! sequence range and reason, until a gap event has reported it.

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The buffer was full (`overflow` policy).
    BufferFull,
    /// The collector refused the batch for good (a 4xx other than 429).
    CollectorRejected,
    /// The collector accepted the batch but rejected some records (OTLP partial success).
    PartialSuccess,
}

impl LossReason {
    pub fn name(self) -> &'static str {
        match self {
            LossReason::BufferFull => "buffer_full",
            LossReason::CollectorRejected => "collector_rejected",
            LossReason::PartialSuccess => "collector_partial_success",
        }
    }
}

/// Lost events: `events` of the sequence numbers `first_seq..=last_seq` (a partial success
/// loses some of its batch's range, not all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub first_seq: u64,
    pub last_seq: u64,
    pub events: u64,
    pub reason: LossReason,
}

/// Losses not yet reported. Adjacent losses with the same reason merge, so a long outage is
/// one entry; the ledger holds at most `MAX_ENTRIES` (older ones merge into the last).
#[derive(Debug, Default, Clone)]
pub struct LossLedger {
    entries: Vec<Loss>,
}

const MAX_ENTRIES: usize = 64;

impl LossLedger {
    pub fn record(&mut self, first_seq: u64, last_seq: u64, events: u64, reason: LossReason) {
        if events == 0 {
            return;
        }
        let full = self.entries.len() >= MAX_ENTRIES;
        if let Some(last) = self.entries.last_mut() {
            let adjacent = first_seq <= last.last_seq.saturating_add(1)
                && last_seq.saturating_add(1) >= last.first_seq;
            if last.reason == reason && (adjacent || full) {
                last.first_seq = last.first_seq.min(first_seq);
                last.last_seq = last.last_seq.max(last_seq);
                last.events += events;
                return;
            }
        }
        if full {
            if let Some(last) = self.entries.last_mut() {
                last.first_seq = last.first_seq.min(first_seq);
                last.last_seq = last.last_seq.max(last_seq);
                last.events += events;
                return;
            }
        }
        self.entries.push(Loss {
            first_seq,
            last_seq,
            events,
            reason,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn take(&mut self) -> Vec<Loss> {
        std::mem::take(&mut self.entries)
    }

    /// Total events recorded and not yet taken.
    pub fn events(&self) -> u64 {
        self.entries.iter().map(|l| l.events).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn adjacent_losses_merge() {
        let mut l = LossLedger::default();
        for seq in 10..20 {
            l.record(seq, seq, 1, LossReason::BufferFull);
        }
        l.record(20, 29, 10, LossReason::BufferFull);
        l.record(40, 49, 3, LossReason::PartialSuccess);
        l.record(0, 0, 0, LossReason::BufferFull);
        assert_eq!(l.events(), 23);
        let taken = l.take();
        assert_eq!(
            taken,
            vec![
                Loss {
                    first_seq: 10,
                    last_seq: 29,
                    events: 20,
                    reason: LossReason::BufferFull
                },
                Loss {
                    first_seq: 40,
                    last_seq: 49,
                    events: 3,
                    reason: LossReason::PartialSuccess
                },
            ]
        );
        assert!(l.is_empty());
    }

    #[test]
    fn bounded() {
        let mut l = LossLedger::default();
        for i in 0..1000u64 {
            let reason = if i % 2 == 0 {
                LossReason::BufferFull
            } else {
                LossReason::CollectorRejected
            };
            l.record(i * 10, i * 10 + 1, 2, reason);
        }
        assert!(l.entries.len() <= MAX_ENTRIES);
        assert_eq!(l.events(), 2000, "nothing is forgotten");
    }
}
