//! Integrity: a trail an auditor can prove. Every event of a stream is chained (a SHA-256 over
//! the previous chain value and the event's canonical bytes), checkpoints sign the chain head
//! with Ed25519, and [`verify`] checks a trail read back from a store.
//!
//! - [`canonical`]: the canonical bytes of an event, rebuilt alike from the event the filter
//!   holds and from what a store keeps (JSON lines, OTLP);
//! - [`chain`]: the chain links and the first link's genesis;
//! - [`keys`]: signing and verifying keys, key ids;
//! - [`checkpoint`]: the signed checkpoint, as an event and as a witness line;
//! - [`stream`]: one stream's chaining and checkpoints, as the pipeline drives them;
//! - [`verify`]: the verifier engine behind `meshaudit verify`.
//!
//! Plain Rust: no host calls, no clock (times are handed in).

pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod keys;
pub mod stream;
pub mod verify;
