//! The batcher: encoded events go into an open batch; a batch is sealed when it reaches
//! `max_batch_events` or would pass `max_batch_bytes`, and is due for sending once sealed or
//! once its first event is `flush_interval_ms` old. Every byte held — open, sealed and in
//! flight — counts against `max_buffer_bytes`; an event that does not fit is refused.

use std::collections::VecDeque;

use crate::config::Config;
use crate::integrity::chain::Link;

/// A run of encoded events with consecutive sequence numbers (holes only where events were
/// refused).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub records: Vec<u8>,
    pub events: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The chain value of the last event (integrity on).
    pub last_chain: Option<Link>,
}

#[derive(Debug)]
pub struct Batcher {
    max_events: u32,
    max_bytes: usize,
    max_buffer_bytes: usize,
    flush_interval_ms: u64,
    open: Batch,
    opened_at_ms: u64,
    sealed: VecDeque<Batch>,
    /// Bytes of open, sealed and in-flight batches.
    buffered_bytes: usize,
    buffered_events: u64,
}

/// Why an event was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    BufferFull,
}

impl Batcher {
    pub fn new(config: &Config) -> Batcher {
        Batcher {
            max_events: config.max_batch_events,
            max_bytes: config.max_batch_bytes as usize,
            max_buffer_bytes: config.max_buffer_bytes as usize,
            flush_interval_ms: u64::from(config.flush_interval_ms),
            open: Batch::default(),
            opened_at_ms: 0,
            sealed: VecDeque::new(),
            buffered_bytes: 0,
            buffered_events: 0,
        }
    }

    /// Adds one encoded event (with its chain value, if chained). A record larger than
    /// `max_batch_bytes` travels alone.
    pub fn push(
        &mut self,
        record: &[u8],
        seq: u64,
        chain: Option<Link>,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if self.buffered_bytes.saturating_add(record.len()) > self.max_buffer_bytes {
            return Err(Refused::BufferFull);
        }
        if self.open.events > 0 && self.open.records.len() + record.len() > self.max_bytes {
            self.seal();
        }
        if self.open.events == 0 {
            self.opened_at_ms = now_ms;
            self.open.first_seq = seq;
            self.open.records.reserve(self.max_bytes.min(64 * 1024));
        }
        self.open.records.extend_from_slice(record);
        self.open.events += 1;
        self.open.last_seq = seq;
        self.open.last_chain = chain;
        self.buffered_bytes += record.len();
        self.buffered_events += 1;
        if self.open.events >= self.max_events || self.open.records.len() >= self.max_bytes {
            self.seal();
        }
        Ok(())
    }

    fn seal(&mut self) {
        if self.open.events > 0 {
            self.sealed.push_back(std::mem::take(&mut self.open));
        }
    }

    /// The next batch to send, if one is due. Its bytes stay counted until [`Batcher::release`].
    pub fn next_due(&mut self, now_ms: u64) -> Option<Batch> {
        if self.sealed.is_empty()
            && self.open.events > 0
            && now_ms.saturating_sub(self.opened_at_ms) >= self.flush_interval_ms
        {
            self.seal();
        }
        self.sealed.pop_front()
    }

    /// Whether an encoded event of `len` bytes fits the buffer now.
    pub fn fits(&self, len: usize) -> bool {
        self.buffered_bytes.saturating_add(len) <= self.max_buffer_bytes
    }

    /// The first sequence number of the oldest waiting batch (sealed, else open).
    pub fn oldest_seq(&self) -> Option<u64> {
        match self.sealed.front() {
            Some(b) => Some(b.first_seq),
            None => (self.open.events > 0).then_some(self.open.first_seq),
        }
    }

    /// Takes the oldest batch that is waiting (sealed, else the open one) out of the buffer, to
    /// make room (`drop_oldest`). Its bytes are released.
    pub fn evict_oldest(&mut self) -> Option<Batch> {
        if self.sealed.is_empty() {
            self.seal();
        }
        let batch = self.sealed.pop_front()?;
        self.release(batch.records.len(), batch.events);
        Some(batch)
    }

    /// The encoded records of the sealed batches and the open one, with each batch's first
    /// sequence number, oldest first.
    pub fn held_records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.sealed
            .iter()
            .chain(std::iter::once(&self.open).filter(|b| b.events > 0))
            .map(|b| (b.first_seq, b.records.as_slice()))
    }

    /// Seals whatever is open so that it is sent at once (shutdown, drain).
    pub fn flush_all(&mut self) {
        self.seal();
    }

    /// A batch handed out by [`Batcher::next_due`] has been delivered or given up.
    pub fn release(&mut self, bytes: usize, events: u32) {
        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
        self.buffered_events = self.buffered_events.saturating_sub(u64::from(events));
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    pub fn buffered_events(&self) -> u64 {
        self.buffered_events
    }

    /// Whether anything is waiting to be sent (open or sealed).
    pub fn has_pending(&self) -> bool {
        self.open.events > 0 || !self.sealed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn batcher(events: u32, bytes: u32, buffer: u32) -> Batcher {
        Batcher::new(&Config {
            max_batch_events: events,
            max_batch_bytes: bytes,
            max_buffer_bytes: buffer,
            flush_interval_ms: 1000,
            ..Config::default()
        })
    }

    #[test]
    fn seals_at_max_events() {
        let mut b = batcher(3, 1 << 20, 1 << 20);
        for seq in 0..7 {
            b.push(b"x", seq, None, 0).unwrap();
        }
        let first = b.next_due(0).unwrap();
        assert_eq!((first.events, first.first_seq, first.last_seq), (3, 0, 2));
        assert_eq!(b.next_due(0).unwrap().first_seq, 3);
        assert!(
            b.next_due(999).is_none(),
            "open batch is not due before the interval"
        );
        let last = b.next_due(1000).unwrap();
        assert_eq!((last.events, last.first_seq), (1, 6));
    }

    #[test]
    fn seals_before_passing_max_bytes() {
        let mut b = batcher(100, 1024, 1 << 20);
        b.push(&[0; 600], 0, None, 0).unwrap();
        b.push(&[0; 600], 1, None, 0).unwrap();
        let first = b.next_due(0).unwrap();
        assert_eq!(first.records.len(), 600);
        b.push(&[0; 5000], 2, None, 0).unwrap();
        assert_eq!(
            b.next_due(0).unwrap().records.len(),
            600,
            "the open 600-byte batch was sealed first"
        );
        assert_eq!(
            b.next_due(0).unwrap().records.len(),
            5000,
            "an oversized record travels alone"
        );
    }

    #[test]
    fn buffer_bound_counts_in_flight_batches() {
        let mut b = batcher(1, 1024, 2048);
        b.push(&[0; 1000], 0, None, 0).unwrap();
        b.push(&[0; 1000], 1, None, 0).unwrap();
        assert_eq!(b.push(&[0; 100], 2, None, 0), Err(Refused::BufferFull));
        let sent = b.next_due(0).unwrap();
        assert_eq!(
            b.push(&[0; 100], 3, None, 0),
            Err(Refused::BufferFull),
            "in flight still counts"
        );
        b.release(sent.records.len(), sent.events);
        assert!(b.push(&[0; 100], 4, None, 0).is_ok());
        assert_eq!(b.buffered_bytes(), 1100);
        assert_eq!(b.buffered_events(), 2);
    }

    #[test]
    fn evicts_the_oldest_waiting_batch() {
        let mut b = batcher(2, 1 << 20, 1 << 20);
        for seq in 0..5 {
            b.push(b"ab", seq, None, 0).unwrap();
        }
        assert_eq!(b.evict_oldest().unwrap().first_seq, 0);
        assert_eq!(b.evict_oldest().unwrap().first_seq, 2);
        assert_eq!(
            b.evict_oldest().unwrap().first_seq,
            4,
            "the open batch goes last"
        );
        assert!(b.evict_oldest().is_none());
        assert_eq!((b.buffered_bytes(), b.buffered_events()), (0, 0));
    }

    #[test]
    fn flush_all_seals_the_open_batch() {
        let mut b = batcher(10, 1 << 20, 1 << 20);
        b.push(b"a", 0, None, 0).unwrap();
        assert!(b.next_due(0).is_none());
        b.flush_all();
        assert_eq!(b.next_due(0).unwrap().events, 1);
        assert!(!b.has_pending());
    }
}
