//! One worker's filter state and its decisions, in plain Rust: the pipeline, the compiled
//! configuration's policies, the open TCP connections, the drain, and what is said once.
//!
//! The host layer reads from Envoy, calls a [`Worker`] method with plain values (header pairs,
//! the clock's reading, a [`Host`](crate::capture::Host) for attributes) and carries out what
//! comes back: an export [`Call`] to dispatch, a [`LocalReply`] to send, the end of a drain,
//! and [`Log`] lines, which the worker keeps until the host takes them ([`Worker::take_logs`]).
//!
//! - [`export`]: the next export call, what the host did with it, the collector's answer;
//! - [`drain`]: sending what is held before the configuration goes, within its timeout;
//! - [`http`]: fail-closed refusals, body capture of one request, request events;
//! - [`tcp`]: connection events (open, close, interim).

pub mod drain;
pub mod export;
pub mod http;
pub mod tcp;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub use drain::DrainEnd;
pub use export::{AnswerHeaders, Call};
pub use http::{Admission, Bodies, LocalReply};

use crate::audit::AuditPolicy;
use crate::capture::body::BodyPolicy;
use crate::capture::budget::Budget;
use crate::capture::connection::ConnectionCache;
use crate::capture::tcp::TcpConnection;
use crate::config::{Config, Mode};
use crate::deliver::stats::Stats;
use crate::event::{AuditEvent, Resource};
use crate::pipeline::Pipeline;
use crate::plugin::{ExportRequest, Plugin};
use crate::route::Route;

/// Longest flush tick; a full batch waits at most this long for the next tick.
const MAX_TICK_MS: u32 = 100;
/// Connections whose facts are kept per worker.
const CONNECTION_CACHE: usize = 512;

/// How loud a [`Log`] line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A line for Envoy's log, written by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: Level,
    pub message: String,
}

/// What kind of context a new one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// An HTTP stream (HTTP filter or access logger).
    Http,
    /// A connection (network filter).
    Stream,
}

/// Warnings given once per worker.
#[derive(Debug, Default)]
struct Warned {
    /// A network-filter context was seen with HTTP-only settings.
    http_only: bool,
    /// The access logger was called with settings only the HTTP filter honours.
    filter_only: bool,
    /// The access logger was called for something that is not an HTTP request.
    not_http: bool,
}

/// What the host publishes as Envoy metrics on each tick.
#[derive(Debug)]
pub struct Publication {
    /// Counter increments since the last publication.
    pub stats: Stats,
    /// Encoded events and bytes held now.
    pub buffered_events: u64,
    pub buffered_bytes: usize,
    /// The body-capture budget (bytes held, peak, bodies stopped for it).
    pub bodies: Budget,
}

/// One worker's filter: what its root, HTTP and TCP contexts share.
pub struct Worker {
    pipeline: Pipeline,
    connections: ConnectionCache,
    wants_response_headers: bool,
    bodies: BodyPolicy,
    audit: AuditPolicy,
    /// What the bodies being captured on this worker may hold at once, shared by all of them.
    body_budget: Budget,
    fail_closed: Vec<Route>,
    /// The request line and headers of every export, compiled with the configuration.
    export: Rc<ExportRequest>,
    /// Open TCP connections (network filter) by context id, for interim events.
    open: HashMap<u32, Rc<RefCell<TcpConnection>>>,
    warned: Warned,
    /// While draining: the time by which the drain must end.
    drain_deadline_ms: Option<u64>,
    /// Lines for Envoy's log, until the host takes them.
    logs: Vec<Log>,
}

impl Worker {
    /// A worker for a loaded configuration. `stream_id` names its event stream (random per VM
    /// instance); `budget` is the previous configuration's body-capture budget, which bodies
    /// still streaming under it keep holding (and giving back) bytes from.
    pub fn new(
        plugin: Plugin,
        resource: &Resource,
        stream_id: u64,
        budget: Option<Budget>,
    ) -> Worker {
        let Plugin {
            config,
            redactor,
            bodies,
            audit,
            fail_closed,
            export,
            signer,
        } = plugin;
        let budget_bytes = usize::try_from(config.body_capture_budget_bytes).unwrap_or(usize::MAX);
        let body_budget = match budget {
            Some(b) => {
                b.set_limit(budget_bytes);
                b
            }
            None => Budget::new(budget_bytes),
        };
        let configured = format!(
            "meshaudit: configured; stream {stream_id:016x}, {:?} over {:?} to cluster {:?}, tick {} ms",
            config.format,
            config.protocol,
            config.collector.cluster,
            tick_period_ms(&config)
        );
        let mut worker = Worker {
            wants_response_headers: !config.response_headers.is_empty(),
            pipeline: Pipeline::new(config, redactor, resource, stream_id).with_signer(signer),
            connections: ConnectionCache::new(CONNECTION_CACHE),
            bodies,
            audit,
            body_budget,
            fail_closed,
            export: Rc::new(export),
            open: HashMap::new(),
            warned: Warned::default(),
            drain_deadline_ms: None,
            logs: Vec::new(),
        };
        worker.say(Level::Info, configured);
        worker
    }

    fn config(&self) -> &Config {
        self.pipeline.config()
    }

    fn say(&mut self, level: Level, message: String) {
        self.logs.push(Log { level, message });
    }

    /// The lines for Envoy's log said since the last call, oldest first.
    pub fn take_logs(&mut self) -> Vec<Log> {
        std::mem::take(&mut self.logs)
    }

    /// Moves the fallback lines (events the buffer could not hold) to the log.
    fn log_fallback(&mut self) {
        for line in self.pipeline.take_fallback_lines() {
            self.say(Level::Warn, line);
        }
    }

    /// The flush tick: the flush interval, at most `MAX_TICK_MS`.
    pub fn tick_period_ms(&self) -> u32 {
        tick_period_ms(self.config())
    }

    /// The body-capture budget, handed on to the next configuration's worker.
    pub fn body_budget(&self) -> &Budget {
        &self.body_budget
    }

    /// Hands a finished event to the pipeline.
    pub fn record(&mut self, event: AuditEvent) {
        if self.audit.skips(&event) {
            self.pipeline.count_unaudited();
            return;
        }
        let now_ms = event.observed_unix_nano / 1_000_000;
        self.pipeline.accept(event, now_ms);
        self.log_fallback();
    }

    /// What to publish as metrics now; the fallback lines go to the log first.
    pub fn publish(&mut self) -> Publication {
        self.log_fallback();
        let (buffered_events, buffered_bytes) = self.pipeline.buffered();
        Publication {
            stats: self.pipeline.take_stats(),
            buffered_events,
            buffered_bytes,
            bodies: self.body_budget.clone(),
        }
    }

    /// Whether nothing is waiting to be sent or awaiting an answer.
    pub fn idle(&self) -> bool {
        !self.pipeline.has_pending() && self.pipeline.in_flight() == 0
    }

    /// What a new context is. Envoy does not say whether it is an HTTP stream or a connection,
    /// so unless `mode` says, `has_request` asks the host (only an HTTP stream has a request
    /// protocol).
    pub fn context_kind(mode: Mode, has_request: impl FnOnce() -> bool) -> ContextKind {
        match mode {
            Mode::Http | Mode::AccessLog => ContextKind::Http,
            Mode::Tcp => ContextKind::Stream,
            Mode::Auto if has_request() => ContextKind::Http,
            Mode::Auto => ContextKind::Stream,
        }
    }

    /// The configured `mode`.
    pub fn mode(&self) -> Mode {
        self.config().mode
    }
}

fn tick_period_ms(config: &Config) -> u32 {
    config.flush_interval_ms.min(MAX_TICK_MS)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Workers for tests.
    use super::Worker;
    use crate::plugin::Plugin;

    /// A worker of configuration `json`, its start-up lines taken.
    pub fn worker(json: &str) -> Worker {
        let plugin = Plugin::load(json.as_bytes(), |_| None).unwrap();
        let mut w = Worker::new(
            plugin,
            &vec![("service.name", "checkout".into())],
            0xabc,
            None,
        );
        w.take_logs();
        w
    }

    /// The messages of the lines said since the last call.
    pub fn said(w: &mut Worker) -> Vec<String> {
        w.take_logs().into_iter().map(|l| l.message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{said, worker};
    use super::*;
    use crate::event::EventKind;
    use crate::plugin::Plugin;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_new_worker_says_what_it_is_configured_for_and_its_tick() {
        let plugin = Plugin::load(br#"{"flush_interval_ms": 1000}"#, |_| None).unwrap();
        let mut w = Worker::new(plugin, &Vec::new(), 0x1f, None);
        assert_eq!(w.tick_period_ms(), 100, "the tick is at most 100 ms");
        let logs = w.take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Info);
        assert!(
            logs[0].message.starts_with(
                "meshaudit: configured; stream 000000000000001f, Otlp over Http to cluster "
            ) && logs[0].message.ends_with(", tick 100 ms"),
            "{}",
            logs[0].message
        );
        assert!(w.take_logs().is_empty(), "taken once");
        let w = worker(r#"{"flush_interval_ms": 20}"#);
        assert_eq!(w.tick_period_ms(), 20);
    }

    #[test]
    fn the_body_budget_carries_over_to_the_next_configuration() {
        let first = worker(r#"{"body_capture_budget_bytes": 1000}"#);
        let plugin = Plugin::load(br#"{"body_capture_budget_bytes": 5000}"#, |_| None).unwrap();
        let next = Worker::new(plugin, &Vec::new(), 1, Some(first.body_budget().clone()));
        assert_eq!(
            first.body_budget().limit(),
            5000,
            "one budget, its new limit"
        );
        assert_eq!(next.body_budget().limit(), 5000);
    }

    #[test]
    fn recorded_events_are_published_with_what_is_held() {
        let mut w = worker(r#"{"max_batch_events": 10}"#);
        assert!(w.idle());
        w.record(AuditEvent::new(EventKind::Http));
        assert!(!w.idle());
        let p = w.publish();
        assert_eq!((p.stats.events_captured, p.buffered_events), (1, 1));
        assert!(p.buffered_bytes > 0);
        assert_eq!(
            w.publish().stats,
            Stats::default(),
            "counters are increments"
        );
    }

    #[test]
    fn events_the_buffer_cannot_hold_go_to_the_log_with_the_fallback_on() {
        let mut w = worker(
            r#"{"max_batch_events": 5, "max_batch_bytes": 1024, "max_buffer_bytes": 4096, "fallback": "log"}"#,
        );
        for _ in 0..100 {
            w.record(AuditEvent::new(EventKind::Http));
        }
        let logs = w.take_logs();
        assert!(!logs.is_empty());
        assert!(logs
            .iter()
            .all(|l| l.level == Level::Warn && l.message.starts_with("meshaudit-fallback: ")));
        assert_eq!(w.publish().stats.fallback_lines, logs.len() as u64);
        assert!(said(&mut w).is_empty());
    }

    #[test]
    fn the_context_kind_follows_the_mode_else_the_host() {
        let never = || -> bool { unreachable!("the mode says") };
        assert_eq!(Worker::context_kind(Mode::Http, never), ContextKind::Http);
        assert_eq!(
            Worker::context_kind(Mode::AccessLog, never),
            ContextKind::Http
        );
        assert_eq!(Worker::context_kind(Mode::Tcp, never), ContextKind::Stream);
        assert_eq!(Worker::context_kind(Mode::Auto, || true), ContextKind::Http);
        assert_eq!(
            Worker::context_kind(Mode::Auto, || false),
            ContextKind::Stream
        );
        assert_eq!(worker(r#"{"mode": "tcp"}"#).mode(), Mode::Tcp);
    }
}
