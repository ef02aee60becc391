//! Exponential backoff with jitter: attempt `n` waits between half and all of
//! `initial * 2^n`, capped at `max`, and never less than the collector's `Retry-After`.

use crate::config::Retry;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    /// xorshift64 state for jitter.
    state: u64,
}

impl Backoff {
    pub fn new(config: &Retry, seed: u64) -> Backoff {
        Backoff {
            initial_ms: u64::from(config.initial_backoff_ms),
            max_ms: u64::from(config.max_backoff_ms),
            state: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// How long to wait before attempt `attempt + 1` (attempt 0 is the first send).
    pub fn delay_ms(&mut self, attempt: u32, retry_after_ms: Option<u64>) -> u64 {
        let exp = self
            .initial_ms
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.max_ms);
        let half = exp / 2;
        let jittered = half + self.next_random() % (exp - half + 1);
        jittered.max(retry_after_ms.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut b = Backoff::new(
            &Retry {
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            },
            42,
        );
        for attempt in 0..20 {
            let cap = (100u64 << attempt.min(10)).min(1000);
            for _ in 0..50 {
                let d = b.delay_ms(attempt, None);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "attempt {attempt}: {d} not in [{}, {cap}]",
                    cap / 2
                );
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(
            &Retry {
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            },
            7,
        );
        assert_eq!(b.delay_ms(0, Some(5000)), 5000);
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::new(&Retry::default(), 1);
        let delays: std::collections::HashSet<u64> = (0..20).map(|_| b.delay_ms(3, None)).collect();
        assert!(delays.len() > 5);
    }
}
