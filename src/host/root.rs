//! The root context of one worker: configuration, the worker's pipeline, the flush tick, the
//! export calls to the collector and their answers, and the drain when the configuration goes.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;

use super::abi::{self, BufferType, EnvoyHost, MapType};
use super::attributes::AttributeReader;
use super::http::AuditHttp;
use super::metrics::Metrics;
use super::tcp::AuditTcp;
use crate::capture::body::BodyPolicy;
use crate::capture::budget::Budget;
use crate::capture::connection::ConnectionCache;
use crate::capture::tcp::{Phase, TcpConnection};
use crate::capture::{decode, node};
use crate::config::{Fallback, Mode, Protocol};
use crate::deliver::outcome::{classify, classify_grpc, Answer, Outcome};
use crate::encode::otlp;
use crate::event::{attr, AuditEvent};
use crate::pipeline::{Export, Pipeline};
use crate::plugin::{ExportRequest, Plugin};
use crate::route::Route;

/// Longest flush tick; a full batch waits at most this long for the next tick.
const MAX_TICK_MS: u32 = 100;
/// Connections whose facts are kept per worker.
const CONNECTION_CACHE: usize = 512;
/// Most of a collector's answer that is read (for OTLP partial success).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// What a worker's HTTP contexts share with its root context.
pub struct Worker {
    pub pipeline: Pipeline,
    /// Reads each request's attributes in one host call where the host can.
    pub attributes: AttributeReader,
    pub connections: ConnectionCache,
    pub wants_response_headers: bool,
    pub bodies: BodyPolicy,
    /// What the bodies being captured on this worker may hold at once, shared by all of them.
    pub body_budget: Budget,
    pub fail_closed: Vec<Route>,
    /// The request line and headers of every export, compiled with the configuration.
    pub export: ExportRequest,
    /// Open TCP connections (network filter), for interim events.
    pub connections_open: std::collections::HashMap<u32, Rc<RefCell<TcpConnection>>>,
    /// Whether a network-filter context was seen with HTTP-only settings (logged once).
    pub warned_http_only: bool,
    /// Whether the access logger was called with settings only the HTTP filter honours
    /// (logged once).
    pub warned_filter_only: bool,
    /// Whether the access logger was called for something that is not an HTTP request (logged
    /// once).
    pub warned_not_http: bool,
}

impl Worker {
    /// Hands a request's finished event to the pipeline.
    pub fn record(&mut self, event: AuditEvent) {
        let now_ms = event.observed_unix_nano / 1_000_000;
        self.pipeline.accept(event, now_ms);
        self.log_fallback();
    }

    /// Writes the fallback lines (events the buffer could not hold) to Envoy's log.
    pub fn log_fallback(&mut self) {
        for line in self.pipeline.take_fallback_lines() {
            warn!("{line}");
        }
    }
}

pub struct AuditRoot {
    worker: Rc<RefCell<Option<Worker>>>,
    metrics: Option<Metrics>,
    /// Set by `on_done`: the time by which the drain must end.
    drain_deadline_ms: Option<u64>,
    /// This root context's id: host calls act for it again after reading a connection's
    /// attributes (interim events).
    context_id: u32,
}

fn now_ms() -> u64 {
    abi::now_unix_nano() / 1_000_000
}

impl AuditRoot {
    pub fn new(context_id: u32) -> AuditRoot {
        AuditRoot {
            worker: Rc::new(RefCell::new(None)),
            metrics: None,
            drain_deadline_ms: None,
            context_id,
        }
    }

    fn publish(&mut self) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        worker.log_fallback();
        if let Some(m) = &mut self.metrics {
            let (events, bytes) = worker.pipeline.buffered();
            m.publish(&worker.pipeline.take_stats(), events, bytes);
            m.publish_bodies(&worker.body_budget);
        }
    }

    /// Sends every batch that is due. The worker is not borrowed over the dispatch call.
    fn send_due(&mut self, now_ms: u64) {
        loop {
            let (export, target) = {
                let Ok(mut guard) = self.worker.try_borrow_mut() else {
                    return;
                };
                let Some(worker) = guard.as_mut() else { return };
                let Some(export) = worker.pipeline.next_export(now_ms) else {
                    return;
                };
                (export, worker.export.clone())
            };
            let result = dispatch(&target, &export);
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return;
            };
            let Some(worker) = guard.as_mut() else { return };
            match result {
                Ok(token) => worker.pipeline.dispatched(token, export),
                Err(reason) => {
                    warn!(
                        "meshaudit: could not send {} events to cluster {:?}: {reason}",
                        export.meta.events, target.cluster
                    );
                    worker.pipeline.dispatch_failed(export, now_ms);
                    // Retried on a later tick, after the backoff.
                    return;
                }
            }
        }
    }

    /// Interim events for TCP connections open longer than `interim_interval_ms` since their
    /// last event. Each is read in its connection's own context (proxy-wasm's effective
    /// context), so that it carries what Envoy has at that moment (upstream, flags...); host
    /// calls act for the root again before anything is sent.
    fn emit_interim_events(&mut self) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let interval = worker.pipeline.config().interim_interval_ms;
        if interval == 0 || worker.connections_open.is_empty() {
            return;
        }
        let now = abi::now_unix_nano();
        let mut events = Vec::new();
        let mut switched = false;
        for (&context_id, conn) in &worker.connections_open {
            if let Ok(mut c) = conn.try_borrow_mut() {
                if c.interim_due(now, interval) {
                    let own = abi::set_effective_context(context_id);
                    switched |= own;
                    let host: Option<&dyn crate::capture::Host> =
                        if own { Some(&EnvoyHost) } else { None };
                    events.push(c.event(Phase::Interim, host, now));
                }
            }
        }
        if switched && !abi::set_effective_context(self.context_id) {
            warn!("meshaudit: could not switch back to the root context after interim events");
        }
        for e in events {
            worker.pipeline.accept(e, now / 1_000_000);
        }
    }

    /// Whether nothing is waiting to be sent or awaiting an answer.
    fn idle(&self) -> bool {
        match self.worker.try_borrow() {
            Ok(guard) => guard
                .as_ref()
                .is_none_or(|w| !w.pipeline.has_pending() && w.pipeline.in_flight() == 0),
            Err(_) => false,
        }
    }

    /// What is still held cannot be sent: it goes to the log fallback (when on) or is counted
    /// as lost, and the counters are published while the host still takes them.
    fn abandon(&mut self, why: &str) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let events = worker.pipeline.abandon();
        if events > 0 {
            let fate = if worker.pipeline.config().fallback == Fallback::Log {
                "written to the log fallback"
            } else {
                "lost (counted in events_dropped.drain)"
            };
            warn!("meshaudit: {why}; {events} events still held are {fate}");
        }
        drop(guard);
        self.publish();
    }

    /// Ends the drain once nothing is left, or its time is up.
    fn maybe_finish_drain(&mut self, now_ms: u64) {
        let Some(deadline) = self.drain_deadline_ms else {
            return;
        };
        let idle = self.idle();
        if idle || now_ms >= deadline {
            if !idle {
                self.abandon("drain timed out");
            }
            if let Some(m) = &mut self.metrics {
                m.withdraw();
            }
            self.drain_deadline_ms = None;
            let _ = hostcalls::done();
        }
    }
}

fn dispatch(target: &ExportRequest, export: &Export) -> Result<u32, String> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", target.path.as_str()),
        (":authority", target.authority.as_str()),
        ("content-type", target.content_type),
        (
            "user-agent",
            concat!("meshaudit/", env!("CARGO_PKG_VERSION")),
        ),
    ];
    let framed;
    let body: &[u8] = if target.grpc {
        headers.push(("te", "trailers"));
        framed = otlp::grpc_frame(&export.body);
        &framed
    } else {
        &export.body
    };
    hostcalls::dispatch_http_call(&target.cluster, headers, Some(body), vec![], target.timeout)
        .map_err(|status| format!("host refused the call ({status:?}); is the cluster defined?"))
}

/// A random id for this VM's event stream.
fn random_stream_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(abi::now_unix_nano());
    h.finish()
}

impl Context for AuditRoot {
    /// The configuration is going away (replaced, or Envoy is stopping): send what is held
    /// before going, within `drain_timeout_ms`.
    fn on_done(&mut self) -> bool {
        let now = now_ms();
        let timeout = {
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return true;
            };
            let Some(worker) = guard.as_mut() else {
                return true;
            };
            worker.pipeline.flush_all();
            // Envoy stopping tears the VM down without waiting for the drain: with the log
            // fallback on, what is held is also written to the log now (receivers deduplicate
            // by log.record.uid should the drain also deliver it).
            let copied = worker.pipeline.copy_held_to_fallback();
            if copied > 0 {
                warn!("meshaudit: draining; {copied} events still held are also written to the log fallback");
            }
            worker.log_fallback();
            u64::from(worker.pipeline.config().drain_timeout_ms)
        };
        self.drain_deadline_ms = Some(now.saturating_add(timeout));
        self.send_due(now);
        self.publish();
        let idle = self.idle();
        if idle {
            if let Some(m) = &mut self.metrics {
                m.withdraw();
            }
            self.drain_deadline_ms = None;
        }
        idle
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let headers_raw = if num_headers > 0 {
            abi::header_map(MapType::CallResponse)
        } else {
            Vec::new()
        };
        let trailers_raw = if num_trailers > 0 {
            abi::header_map(MapType::CallResponseTrailers)
        } else {
            Vec::new()
        };
        let headers = decode::map(&headers_raw);
        let trailers = decode::map(&trailers_raw);
        let find = |name: &[u8]| {
            trailers
                .iter()
                .chain(headers.iter())
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        };
        let number = |v: &[u8]| std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok();
        let status = find(b":status")
            .and_then(number)
            .and_then(|s| u16::try_from(s).ok());
        let body = match status {
            Some(200..=299) if body_size > 0 => abi::buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_RESPONSE_BODY),
            ),
            _ => None,
        };
        let answer = Answer {
            status,
            grpc_status: find(b"grpc-status").and_then(number),
            retry_after: find(b"retry-after"),
            body: body.as_deref(),
        };
        let now = now_ms();
        {
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return;
            };
            let Some(worker) = guard.as_mut() else { return };
            let outcome = match worker.pipeline.config().protocol {
                Protocol::Grpc => classify_grpc(&answer),
                Protocol::Http => classify(&answer, worker.pipeline.config().format),
            };
            match outcome {
                Outcome::Delivered { .. } => {}
                Outcome::Retry { status, .. } => {
                    warn!(
                        "meshaudit: collector did not take a batch (status {status:?}); will retry"
                    )
                }
                Outcome::Rejected { status } => {
                    warn!("meshaudit: collector rejected a batch for good (status {status})")
                }
            }
            worker.pipeline.completed(token, outcome, now);
        }
        if self.drain_deadline_ms.is_some() {
            self.send_due(now);
            self.publish();
            self.maybe_finish_drain(now);
        }
    }
}

impl RootContext for AuditRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = abi::buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default();
        let env = |name: &str| std::env::var_os(name).map(|v| v.into_encoded_bytes());
        let Plugin {
            config,
            redactor,
            bodies,
            fail_closed,
            export,
            signer,
        } = match Plugin::load(&raw, env) {
            Ok(l) => l,
            Err(e) => {
                error!("meshaudit: invalid configuration: {e}");
                return false;
            }
        };
        let resource = node::resource(&EnvoyHost);
        let tick = config.flush_interval_ms.min(MAX_TICK_MS);
        let stream_id = random_stream_id();
        let budget_bytes = usize::try_from(config.body_capture_budget_bytes).unwrap_or(usize::MAX);
        // Bodies still streaming under a previous configuration keep holding (and give back)
        // their bytes from the same budget.
        let body_budget = match self.worker.try_borrow() {
            Ok(slot) => slot.as_ref().map(|w| w.body_budget.clone()),
            Err(_) => return false,
        };
        let body_budget = match body_budget {
            Some(b) => {
                b.set_limit(budget_bytes);
                b
            }
            None => Budget::new(budget_bytes),
        };
        info!(
            "meshaudit: configured; stream {stream_id:016x}, {:?} over {:?} to cluster {:?}, tick {tick} ms",
            config.format, config.protocol, config.collector.cluster
        );
        let worker = Worker {
            attributes: AttributeReader::new(),
            wants_response_headers: !config.response_headers.is_empty(),
            pipeline: Pipeline::new(config, redactor, &resource, stream_id).with_signer(signer),
            connections: ConnectionCache::new(CONNECTION_CACHE),
            bodies,
            body_budget,
            fail_closed,
            export,
            connections_open: std::collections::HashMap::new(),
            warned_http_only: false,
            warned_filter_only: false,
            warned_not_http: false,
        };
        match self.worker.try_borrow_mut() {
            Ok(mut slot) => *slot = Some(worker),
            Err(_) => return false,
        }
        if self.metrics.is_none() {
            self.metrics = Some(Metrics::define());
        }
        let _ = hostcalls::set_tick_period(Duration::from_millis(u64::from(tick)));
        true
    }

    /// Loaded as an access logger (`envoy.access_loggers.wasm`), the root context is told of
    /// every finished request: the same event as the HTTP filter's, without any HTTP context.
    fn on_log(&mut self) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        if !worker.warned_filter_only {
            if let Some(field) = worker.pipeline.config().filter_only_field() {
                error!(
                    "meshaudit: invalid configuration for an access logger: {field}: needs the HTTP filter and is ignored here; set \"mode\": \"access_log\" to have such configurations refused at load"
                );
            }
            worker.warned_filter_only = true;
        }
        let event = super::http::request_event(worker);
        // A tcp_proxy's access log tells of connections (no request, no protocol): those are
        // the network filter's to audit, not HTTP events without a request.
        // (The method comes first in an event: the usual request pays one comparison.)
        if event.get(attr::HTTP_METHOD).is_none() && event.get(attr::PROTOCOL_NAME).is_none() {
            if !worker.warned_not_http {
                error!("meshaudit: loaded as an access logger outside an HTTP connection manager: connections are not audited here; load meshaudit as a network filter (\"mode\": \"tcp\") for them");
                worker.warned_not_http = true;
            }
            return;
        }
        worker.record(event);
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.emit_interim_events();
        self.send_due(now);
        self.publish();
        self.maybe_finish_drain(now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuditHttp::new(self.worker.clone())))
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        if let Ok(mut guard) = self.worker.try_borrow_mut() {
            if let Some(w) = guard.as_mut().filter(|w| !w.warned_http_only) {
                if let Some(field) = w.pipeline.config().http_only_field() {
                    error!(
                        "meshaudit: invalid configuration for a network filter: {field}: is HTTP-only and is ignored here; set \"mode\": \"tcp\" to have such configurations refused at load"
                    );
                }
                w.warned_http_only = true;
            }
        }
        Some(Box::new(AuditTcp::new(self.worker.clone(), context_id)))
    }

    /// Asked as each new context is created. Envoy does not say whether the context is an HTTP
    /// stream or a connection, so unless `mode` says, the new context is asked: only an HTTP
    /// stream has a request protocol.
    fn get_type(&self) -> Option<ContextType> {
        let mode = match self.worker.try_borrow() {
            Ok(g) => g.as_ref().map_or(Mode::Auto, |w| w.pipeline.config().mode),
            Err(_) => Mode::Auto,
        };
        Some(match mode {
            Mode::Http | Mode::AccessLog => ContextType::HttpContext,
            Mode::Tcp => ContextType::StreamContext,
            Mode::Auto => {
                if abi::property(&["request", "protocol"]).is_some() {
                    ContextType::HttpContext
                } else {
                    ContextType::StreamContext
                }
            }
        })
    }
}
