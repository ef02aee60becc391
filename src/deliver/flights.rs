//! Exports between the batcher and the collector: in flight (dispatched, their answer awaited
//! under the host's token) or waiting to be retried after a backoff; and what an export is.

use std::collections::{HashMap, VecDeque};

use crate::integrity::chain::Link;

/// A batch ready to go: the request body and what it holds.
#[derive(Debug, Clone)]
pub struct Export {
    pub body: Vec<u8>,
    pub meta: ExportMeta,
}

/// What an export holds, to settle it when the answer comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportMeta {
    pub events: u32,
    /// Encoded record bytes (what the batcher counts against its buffer).
    pub record_bytes: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Sends so far (0 for a first send).
    pub attempt: u32,
    /// The chain value of the last event (integrity on).
    pub last_chain: Option<Link>,
}

struct Waiting {
    export: Export,
    ready_at_ms: u64,
}

/// The exports that left the batcher and are not settled yet.
#[derive(Default)]
pub struct Flights {
    in_flight: HashMap<u32, Export>,
    retrying: VecDeque<Waiting>,
}

impl Flights {
    /// Dispatched; its answer will come under `token`.
    pub fn dispatched(&mut self, token: u32, export: Export) {
        self.in_flight.insert(token, export);
    }

    /// The export whose answer came under `token`, if it is still in flight.
    pub fn answered(&mut self, token: u32) -> Option<Export> {
        self.in_flight.remove(&token)
    }

    /// To be sent again at `ready_at_ms`.
    pub fn retry_at(&mut self, export: Export, ready_at_ms: u64) {
        self.retrying.push_back(Waiting {
            export,
            ready_at_ms,
        });
    }

    /// A retry whose time has come.
    pub fn due_retry(&mut self, now_ms: u64) -> Option<Export> {
        let i = self.retrying.iter().position(|w| w.ready_at_ms <= now_ms)?;
        self.retrying.remove(i).map(|w| w.export)
    }

    /// Every waiting retry is due now (drain).
    pub fn retry_all_now(&mut self) {
        for w in self.retrying.iter_mut() {
            w.ready_at_ms = 0;
        }
    }

    /// The first sequence number of the oldest waiting retry.
    pub fn oldest_retry_seq(&self) -> Option<u64> {
        self.retrying.iter().map(|w| w.export.meta.first_seq).min()
    }

    /// Takes the oldest waiting retry (by sequence) out.
    pub fn take_oldest_retry(&mut self) -> Option<Export> {
        let (i, _) = self
            .retrying
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.export.meta.first_seq)?;
        self.retrying.remove(i).map(|w| w.export)
    }

    /// Takes every in-flight export out (their answers will not be heard).
    pub fn take_in_flight(&mut self) -> Vec<Export> {
        self.in_flight.drain().map(|(_, e)| e).collect()
    }

    /// Every export held: waiting retries, then those in flight.
    pub fn held(&self) -> impl Iterator<Item = &Export> {
        self.retrying
            .iter()
            .map(|w| &w.export)
            .chain(self.in_flight.values())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn has_retries(&self) -> bool {
        !self.retrying.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn export(first_seq: u64) -> Export {
        Export {
            body: vec![1, 2, 3],
            meta: ExportMeta {
                last_chain: None,
                events: 1,
                record_bytes: 3,
                first_seq,
                last_seq: first_seq,
                attempt: 0,
            },
        }
    }

    #[test]
    fn exports_wait_for_their_answer_or_their_retry() {
        let mut f = Flights::default();
        f.dispatched(7, export(10));
        assert_eq!(f.in_flight(), 1);
        assert!(f.answered(8).is_none());
        assert_eq!(f.answered(7).map(|e| e.meta.first_seq), Some(10));
        f.retry_at(export(30), 500);
        f.retry_at(export(20), 900);
        assert!(f.has_retries() && f.due_retry(499).is_none());
        assert_eq!(f.oldest_retry_seq(), Some(20));
        assert_eq!(f.due_retry(500).map(|e| e.meta.first_seq), Some(30));
        f.retry_all_now();
        assert_eq!(f.due_retry(0).map(|e| e.meta.first_seq), Some(20));
        assert!(!f.has_retries());
    }

    #[test]
    fn the_oldest_retry_and_everything_held() {
        let mut f = Flights::default();
        f.retry_at(export(30), 0);
        f.retry_at(export(20), 0);
        f.dispatched(1, export(40));
        let mut held: Vec<u64> = f.held().map(|e| e.meta.first_seq).collect();
        held.sort_unstable();
        assert_eq!(held, [20, 30, 40]);
        assert_eq!(f.take_oldest_retry().map(|e| e.meta.first_seq), Some(20));
        assert_eq!(f.take_in_flight().len(), 1);
        assert_eq!(f.in_flight(), 0);
    }
}
