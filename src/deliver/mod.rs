//! Delivery decisions: batching, buffering and what a collector's answer means. Pure state
//! machines driven by the host layer's clock and callbacks; they never call the host.

pub mod batcher;
pub mod outcome;
