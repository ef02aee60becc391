//! The body-capture budget of one worker: every body the worker captures holds its buffer's
//! bytes from one shared [`Budget`], so that however many requests stream bodies at once, body
//! capture never holds more than `body_capture_budget_bytes` on that worker.
//!
//! A body holds its bytes through a [`Reservation`], which gives them back when it is dropped:
//! when the body is finished, and when the request's context goes away without finishing it
//! (an upload aborted mid-stream). A body that cannot get the bytes for its next chunk stops
//! capturing and is marked (`skipped:budget` or `truncated:budget`, see `capture::body`); the
//! request itself is never held back.
//!
//! A worker is one thread with one VM, so the budget is a plain `Rc<Cell<..>>` account.

use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug, Default)]
struct Account {
    /// Most bytes the worker's bodies may hold at once.
    limit: Cell<usize>,
    /// Bytes held now (the sum of every live reservation).
    held: Cell<usize>,
    /// The most bytes ever held at once.
    peak: Cell<usize>,
    /// Bodies stopped for the budget since the count was last taken.
    exhausted: Cell<u64>,
}

/// One worker's body-capture budget. Cloning gives another handle to the same account.
#[derive(Debug, Clone)]
pub struct Budget(Rc<Account>);

impl Budget {
    pub fn new(limit: usize) -> Budget {
        let account = Account::default();
        account.limit.set(limit);
        Budget(Rc::new(account))
    }

    /// Most bytes the worker's bodies may hold at once.
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.0.limit.get()
    }

    /// Changes the limit (a new configuration). Bytes already held stay held until their bodies
    /// are done; no new byte is handed out while more than the new limit is held.
    pub fn set_limit(&self, limit: usize) {
        self.0.limit.set(limit);
    }

    /// Bytes held now by the worker's bodies.
    pub fn held(&self) -> usize {
        self.0.held.get()
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.0.peak.get()
    }

    /// Bodies stopped for the budget since the last call (for a counter).
    pub fn take_exhausted(&self) -> u64 {
        self.0.exhausted.replace(0)
    }

    /// Counts one body stopped for the budget.
    pub fn note_exhausted(&self) {
        self.0
            .exhausted
            .set(self.0.exhausted.get().saturating_add(1));
    }

    /// An empty reservation against this budget.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Bytes held from a [`Budget`] by one buffer, given back when dropped. Not `Clone`: a copy
/// would give the same bytes back twice.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    bytes: usize,
}

impl Reservation {
    /// The budget it holds its bytes from.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Bytes this reservation holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `n` more bytes if the budget has them; else holds nothing more and says so.
    #[must_use]
    pub fn grow(&mut self, n: usize) -> bool {
        let account = &self.budget.0;
        match account.held.get().checked_add(n) {
            Some(total) if total <= account.limit.get() => {
                account.held.set(total);
                if total > account.peak.get() {
                    account.peak.set(total);
                }
                self.bytes += n;
                true
            }
            _ => false,
        }
    }

    /// Gives back `n` of the bytes held (all of them if it holds fewer).
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        let account = &self.budget.0;
        account.held.set(account.held.get().saturating_sub(n));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// Two reservations are alike when they hold as many bytes (lets a body state be compared).
impl PartialEq for Reservation {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Reservation {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reserves_and_returns() {
        let b = Budget::new(100);
        let mut r = b.reservation();
        assert!(r.grow(60));
        assert_eq!((b.held(), r.bytes()), (60, 60));
        let mut s = b.reservation();
        assert!(!s.grow(41), "more than what is left");
        assert_eq!((b.held(), s.bytes()), (60, 0));
        assert!(s.grow(40));
        assert_eq!(b.held(), 100);
        assert!(!s.grow(1));
        r.shrink(10);
        assert_eq!((b.held(), r.bytes()), (90, 50));
        drop(r);
        assert_eq!(b.held(), 40);
        drop(s);
        assert_eq!(b.held(), 0);
        assert_eq!(b.peak(), 100);
    }

    #[test]
    fn never_overflows() {
        let b = Budget::new(usize::MAX);
        let mut r = b.reservation();
        assert!(r.grow(usize::MAX - 1));
        let mut s = b.reservation();
        assert!(!s.grow(2));
        assert!(s.grow(1));
        assert!(!s.grow(1));
        drop(r);
        s.shrink(usize::MAX);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn a_lower_limit_hands_out_nothing_until_enough_is_back() {
        let b = Budget::new(100);
        let mut r = b.reservation();
        assert!(r.grow(80));
        b.set_limit(50);
        let mut s = b.reservation();
        assert!(!s.grow(1));
        drop(r);
        assert!(s.grow(50));
        assert!(!s.grow(1));
    }

    #[test]
    fn exhaustion_is_counted_once_taken() {
        let b = Budget::new(1);
        b.note_exhausted();
        b.note_exhausted();
        assert_eq!(b.take_exhausted(), 2);
        assert_eq!(b.take_exhausted(), 0);
    }

    #[test]
    fn random_reservations_never_hold_more_than_the_budget() {
        let mut rng = XorShift::seeded();
        let b = Budget::new(10_000);
        let mut live: Vec<Reservation> = Vec::new();
        for _ in 0..20_000 {
            match rng.below(4) {
                0 | 1 => {
                    let mut r = b.reservation();
                    let _ = r.grow(rng.below(3_000));
                    live.push(r);
                }
                2 if !live.is_empty() => {
                    let i = rng.below(live.len());
                    let n = rng.below(2_000);
                    let _ = live[i].grow(n);
                }
                _ if !live.is_empty() => {
                    live.swap_remove(rng.below(live.len()));
                }
                _ => {}
            }
            assert!(b.held() <= b.limit());
            assert_eq!(b.held(), live.iter().map(Reservation::bytes).sum::<usize>());
        }
        assert!(b.peak() <= b.limit());
        live.clear();
        assert_eq!(b.held(), 0);
    }
}
