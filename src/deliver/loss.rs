//! Loss accounting: every event that does not reach the collector is recorded here, by stream
//! sequence range and reason, until a gap event has reported it.

use crate::integrity::chain::Link;

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The buffer was full (`overflow` policy).
    BufferFull,
    /// The collector refused the batch for good (a 4xx other than 429).
    CollectorRejected,
    /// The collector accepted the batch but rejected some records (OTLP partial success).
    PartialSuccess,
    /// The configuration went away (replaced, or Envoy stopping) before they could be sent.
    Drain,
}

impl LossReason {
    pub fn name(self) -> &'static str {
        match self {
            LossReason::BufferFull => "buffer_full",
            LossReason::CollectorRejected => "collector_rejected",
            LossReason::PartialSuccess => "collector_partial_success",
            LossReason::Drain => "drain",
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
    /// The chain value of `last_seq`'s event, when known.
    pub chain_head: Option<Link>,
}

impl Loss {
    /// The chain value a gap event reports: only when every sequence of the range was lost
    /// (then the chain resumes after `last_seq` from it).
    pub fn contiguous_head(&self) -> Option<Link> {
        let span = self.last_seq.checked_sub(self.first_seq)?.checked_add(1)?;
        self.chain_head.filter(|_| span == self.events)
    }
}

/// Losses not yet reported. A loss merges with an adjacent one of the same reason (so a run of
/// losses, in whatever order they are recorded, is one entry); the ledger holds at most
/// `MAX_ENTRIES` (beyond that, losses merge into the last entry: counts stay exact, ranges widen).
#[derive(Debug, Default, Clone)]
pub struct LossLedger {
    entries: Vec<Loss>,
}

const MAX_ENTRIES: usize = 64;

/// Same reason, and the ranges overlap or meet.
fn touches(a: &Loss, b: &Loss) -> bool {
    a.reason == b.reason
        && b.first_seq <= a.last_seq.saturating_add(1)
        && b.last_seq.saturating_add(1) >= a.first_seq
}

fn absorb(into: &mut Loss, other: &Loss) {
    if other.last_seq > into.last_seq {
        into.chain_head = other.chain_head;
    }
    into.first_seq = into.first_seq.min(other.first_seq);
    into.last_seq = into.last_seq.max(other.last_seq);
    into.events += other.events;
}

impl LossLedger {
    pub fn record(&mut self, new: Loss) {
        if new.events == 0 {
            return;
        }
        let full = self.entries.len() >= MAX_ENTRIES;
        // Merge with an adjacent loss of the same reason; when full, with the last one.
        let at = self
            .entries
            .iter()
            .position(|l| touches(l, &new))
            .or(if full {
                self.entries.len().checked_sub(1)
            } else {
                None
            });
        let Some(mut i) = at else {
            self.entries.push(new);
            return;
        };
        if let Some(l) = self.entries.get_mut(i) {
            absorb(l, &new);
        }
        // The widened entry may now touch others: fold them in.
        while let Some(j) = self
            .entries
            .iter()
            .enumerate()
            .position(|(j, l)| j != i && self.entries.get(i).is_some_and(|x| touches(l, x)))
        {
            let other = self.entries.remove(j);
            if j < i {
                i -= 1;
            }
            if let Some(l) = self.entries.get_mut(i) {
                absorb(l, &other);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn take(&mut self) -> Vec<Loss> {
        std::mem::take(&mut self.entries)
    }

    /// Total events recorded and not yet taken.
    #[cfg(test)]
    pub fn events(&self) -> u64 {
        self.entries.iter().map(|l| l.events).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(first_seq: u64, last_seq: u64, events: u64, reason: LossReason) -> Loss {
        Loss {
            first_seq,
            last_seq,
            events,
            reason,
            chain_head: None,
        }
    }
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn adjacent_losses_merge() {
        let mut l = LossLedger::default();
        for seq in 10..20 {
            l.record(loss(seq, seq, 1, LossReason::BufferFull));
        }
        l.record(loss(20, 29, 10, LossReason::BufferFull));
        l.record(loss(40, 49, 3, LossReason::PartialSuccess));
        l.record(loss(0, 0, 0, LossReason::BufferFull));
        assert_eq!(l.events(), 23);
        let taken = l.take();
        assert_eq!(
            taken,
            vec![
                Loss {
                    first_seq: 10,
                    last_seq: 29,
                    events: 20,
                    reason: LossReason::BufferFull,
                    chain_head: None
                },
                Loss {
                    first_seq: 40,
                    last_seq: 49,
                    events: 3,
                    reason: LossReason::PartialSuccess,
                    chain_head: None
                },
            ]
        );
        assert!(l.is_empty());
    }

    #[test]
    fn out_of_order_losses_merge() {
        let mut l = LossLedger::default();
        l.record(loss(10, 14, 5, LossReason::BufferFull));
        l.record(loss(30, 34, 5, LossReason::BufferFull));
        l.record(loss(0, 4, 5, LossReason::BufferFull));
        l.record(loss(5, 9, 5, LossReason::BufferFull));
        l.record(loss(15, 29, 15, LossReason::BufferFull));
        l.record(loss(50, 54, 5, LossReason::CollectorRejected));
        let buffer_full = Loss {
            first_seq: 0,
            last_seq: 34,
            events: 35,
            reason: LossReason::BufferFull,
            chain_head: None,
        };
        let rejected = Loss {
            first_seq: 50,
            last_seq: 54,
            events: 5,
            reason: LossReason::CollectorRejected,
            chain_head: None,
        };
        assert_eq!(l.take(), vec![buffer_full, rejected]);
    }

    #[test]
    fn merged_ranges_keep_the_higher_head_and_report_it_only_when_complete() {
        let mut l = LossLedger::default();
        let with = |first, last, events, head| Loss {
            chain_head: Some([head; 32]),
            ..loss(first, last, events, LossReason::BufferFull)
        };
        l.record(with(5, 9, 5, 2));
        l.record(with(0, 4, 5, 1));
        let merged = l.take();
        assert_eq!(merged[0].chain_head, Some([2; 32]));
        assert_eq!(merged[0].contiguous_head(), Some([2; 32]));
        // A partial success loses some of its range: the head cannot anchor the chain.
        assert_eq!(with(0, 9, 3, 1).contiguous_head(), None);
        assert_eq!(
            loss(0, 0, 1, LossReason::BufferFull).contiguous_head(),
            None
        );
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
            l.record(loss(i * 10, i * 10 + 1, 2, reason));
        }
        assert!(l.entries.len() <= MAX_ENTRIES);
        assert_eq!(l.events(), 2000, "nothing is forgotten");
    }
}
