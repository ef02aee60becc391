//! Delivery decisions: batching, the bounded buffer, retry backoff, loss accounting and what a
//! collector's answer means. Pure state machines driven by the host layer's clock and
//! callbacks; they never call the host.

pub mod backoff;
pub mod batcher;
pub mod fallback;
pub mod flights;
pub mod loss;
pub mod outcome;
pub mod stats;
