//! meshaudit turns every request that crosses an Envoy or Istio sidecar into a SOC 2 audit
//! event — who called (mTLS peer identity, SPIFFE ID), what, when, from where and with what
//! result — and ships the events in batches to an OpenTelemetry collector.
//!
//! Data flows one way, one module per step:
//!
//! - [`capture`]: host attributes and headers → an [`event::AuditEvent`];
//! - [`encode`]: events → OTLP protobuf or JSON lines;
//! - [`deliver`]: batching, buffering, exports in flight, what a collector's answer means, the
//!   delivery counters;
//! - [`redact`]: field rules and detectors, before anything is encoded;
//! - [`pipeline`]: moves one worker's events through those steps;
//! - [`worker`]: one worker's filter state and decisions (requests, refusals, connections,
//!   exports and their answers, the drain, what is said once), driven by the host layer with
//!   plain values and answering with plain values;
//! - [`config`]: the plugin configuration and its validation;
//! - [`plugin`]: a configuration compiled once (redactor, body policy, fail-closed routes, the
//!   export request);
//! - [`route`]: request matching (hosts, path prefixes and patterns, methods);
//! - [`audit`]: the audit policy (levels none, metadata, request, request_response per rule);
//! - [`hex`]: hex digits both ways, shared by capture, redaction and encoding;
//! - [`environment`]: settings that name an environment variable instead of holding a secret;
//! - [`integrity`]: canonical form, chain, signed checkpoints and the verifier engine (shared
//!   with the `meshaudit` command-line program in `cli/`).
//!
//! All of that is plain Rust, tested natively and in wasm. The `host` module (built only for
//! `wasm32-wasip1`) is the thin proxy-wasm layer: root, HTTP and TCP contexts that read from
//! Envoy, call the worker and carry out what it says; metrics; the host calls.

pub mod audit;
pub mod capture;
pub mod config;
pub mod deliver;
pub mod encode;
pub mod environment;
pub mod event;
pub mod hex;
pub mod integrity;
pub mod pipeline;
pub mod plugin;
pub mod redact;
pub mod route;
#[cfg(test)]
mod test_rng;
pub mod worker;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod host;
