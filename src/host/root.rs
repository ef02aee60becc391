//! The root context of one worker: loads the configuration into a [`Worker`], runs the flush
//! tick, dispatches the worker's export calls and hands it their answers, publishes metrics,
//! and drains when the configuration goes. Every decision is the worker's.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use log::{error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;

use super::abi::{self, BufferType, EnvoyHost, MapType};
use super::attributes::AttributeReader;
use super::http::{request_event, AuditHttp};
use super::metrics::Metrics;
use super::shared::{write_logs, Shared, Slot};
use super::tcp::AuditTcp;
use crate::capture::snapshot::List;
use crate::capture::{decode, node};
use crate::config::Mode;
use crate::plugin::Plugin;
use crate::worker::{AnswerHeaders, ContextKind, DrainEnd, Worker};

pub struct AuditRoot {
    shared: Shared,
    metrics: Option<Metrics>,
    /// This root context's id: host calls act for it again after reading a connection's
    /// attributes (interim events).
    context_id: u32,
}

fn now_ms() -> u64 {
    abi::now_unix_nano() / 1_000_000
}

/// A random id for this VM's event stream.
fn random_stream_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(abi::now_unix_nano());
    h.finish()
}

impl AuditRoot {
    pub fn new(context_id: u32) -> AuditRoot {
        AuditRoot {
            shared: Shared::default(),
            metrics: None,
            context_id,
        }
    }

    fn publish(&mut self) {
        let metrics = &mut self.metrics;
        self.shared.with_worker(|w| {
            let publication = w.publish();
            if let Some(m) = metrics {
                m.publish(&publication);
            }
        });
    }

    /// Sends every call that is due. The worker is not borrowed over the dispatch.
    fn send_due(&mut self, now_ms: u64) {
        while let Some(call) = self.shared.with_worker(|w| w.next_call(now_ms)).flatten() {
            let target = &call.target;
            let sent = hostcalls::dispatch_http_call(
                &target.cluster,
                call.headers(),
                Some(call.body().as_ref()),
                vec![],
                target.timeout,
            )
            .map_err(|status| format!("{status:?}"));
            let go_on = self.shared.with_worker(|w| w.call_sent(call, sent, now_ms));
            if go_on != Some(true) {
                return;
            }
        }
    }

    /// Interim events of long TCP connections, each read in its connection's own context;
    /// host calls act for the root again before anything is sent.
    fn interim_events(&mut self) {
        let now = abi::now_unix_nano();
        let entered = self
            .shared
            .with_worker(|w| w.interim_events(now, &EnvoyHost, abi::set_effective_context));
        if entered == Some(true) && !abi::set_effective_context(self.context_id) {
            warn!("meshaudit: could not switch back to the root context after interim events");
        }
    }

    /// Ends the drain once the worker says it is over.
    fn finish_drain(&mut self, now_ms: u64) {
        match self
            .shared
            .with_worker(|w| w.finish_drain(now_ms))
            .flatten()
        {
            None => return,
            // The counters are published while the host still takes them.
            Some(DrainEnd::TimedOut) => self.publish(),
            Some(DrainEnd::Idle) => {}
        }
        self.withdraw();
        let _ = hostcalls::done();
    }

    fn withdraw(&mut self) {
        if let Some(m) = &mut self.metrics {
            m.withdraw();
        }
    }
}

impl Context for AuditRoot {
    /// The configuration is going away (replaced, or Envoy is stopping): send what is held
    /// before going, within `drain_timeout_ms`.
    fn on_done(&mut self) -> bool {
        let now = now_ms();
        if self.shared.with_worker(|w| w.start_drain(now)).is_none() {
            return true;
        }
        self.send_due(now);
        self.publish();
        let idle = self
            .shared
            .with_worker(Worker::end_drain_if_idle)
            .unwrap_or(true);
        if idle {
            self.withdraw();
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
        let read = |map, n| {
            if n > 0 {
                abi::header_map(map)
            } else {
                Vec::new()
            }
        };
        let headers_raw = read(MapType::CallResponse, num_headers);
        let trailers_raw = read(MapType::CallResponseTrailers, num_trailers);
        let (headers, trailers) = (decode::map(&headers_raw), decode::map(&trailers_raw));
        let maps = AnswerHeaders::new(&headers, &trailers);
        let body = maps
            .body_to_read(body_size)
            .and_then(|len| abi::buffer(BufferType::HttpCallResponseBody, 0, len));
        let answer = maps.answer(body.as_deref());
        let now = now_ms();
        let draining = self.shared.with_worker(|w| {
            w.settle(token, &answer, now);
            w.draining()
        });
        if draining == Some(true) {
            self.send_due(now);
            self.publish();
            self.finish_drain(now);
        }
    }
}

impl RootContext for AuditRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = abi::buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default();
        let env = |name: &str| std::env::var_os(name).map(|v| v.into_encoded_bytes());
        let plugin = match Plugin::load(&raw, env) {
            Ok(p) => p,
            Err(e) => {
                error!("meshaudit: invalid configuration: {e}");
                return false;
            }
        };
        let resource = node::resource(&EnvoyHost);
        let budget = self.shared.with_worker(|w| w.body_budget().clone());
        let list = List {
            jwt: plugin.config.identity.jwt,
        };
        let mut worker = Worker::new(plugin, &resource, random_stream_id(), budget);
        write_logs(worker.take_logs());
        let tick = worker.tick_period_ms();
        let slot = Slot {
            worker,
            attributes: AttributeReader::new(list),
        };
        if !self.shared.install(slot) {
            return false;
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
        self.shared.with(|slot| {
            let event = request_event(slot);
            slot.worker.log_request(event);
        });
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.interim_events();
        self.send_due(now);
        self.publish();
        self.finish_drain(now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuditHttp::new(self.shared.clone())))
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        self.shared.with_worker(Worker::stream_context_created);
        Some(Box::new(AuditTcp::new(self.shared.clone(), context_id)))
    }

    /// Asked as each new context is created (see [`Worker::context_kind`]).
    fn get_type(&self) -> Option<ContextType> {
        let mode = self.shared.with_worker(|w| w.mode()).unwrap_or(Mode::Auto);
        let has_request = || abi::property(&["request", "protocol"]).is_some();
        Some(match Worker::context_kind(mode, has_request) {
            ContextKind::Http => ContextType::HttpContext,
            ContextKind::Stream => ContextType::StreamContext,
        })
    }
}
