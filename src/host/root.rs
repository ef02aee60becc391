//! The root context of one worker: configuration, the worker's pipeline, the flush tick and
//! the export calls to the collector.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::abi::{self, BufferType, EnvoyHost, MapType};
use super::http::AuditHttp;
use super::metrics::Metrics;
use crate::capture::body::BodyPolicy;
use crate::capture::connection::ConnectionCache;
use crate::capture::{decode, node};
use crate::config::Config;
use crate::deliver::outcome::{classify, Outcome};
use crate::pipeline::{self, Export, Pipeline};

/// Longest flush tick; a full batch waits at most this long for the next tick.
const MAX_TICK_MS: u32 = 100;
/// Connections whose facts are kept per worker.
const CONNECTION_CACHE: usize = 512;
/// Most of a collector's answer that is read (for OTLP partial success).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// What a worker's HTTP contexts share with its root context.
pub struct Worker {
    pub pipeline: Pipeline,
    pub connections: ConnectionCache,
    pub wants_response_headers: bool,
    pub bodies: BodyPolicy,
}

pub struct AuditRoot {
    worker: Rc<RefCell<Option<Worker>>>,
    metrics: Option<Metrics>,
}

impl AuditRoot {
    pub fn new() -> AuditRoot {
        AuditRoot {
            worker: Rc::new(RefCell::new(None)),
            metrics: None,
        }
    }

    fn publish_stats(&self, worker: &mut Worker) {
        if let Some(m) = &self.metrics {
            m.publish(&worker.pipeline.take_stats());
        }
    }

    /// Sends every batch that is due.
    fn send_due(&mut self, now_ms: u64) {
        loop {
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return;
            };
            let Some(worker) = guard.as_mut() else { return };
            let Some(export) = worker.pipeline.next_export(now_ms) else {
                return;
            };
            let config = worker.pipeline.config().clone_collector();
            let content_type = worker.pipeline.codec().content_type();
            drop(guard);
            let result = dispatch(&config, content_type, &export);
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return;
            };
            let Some(worker) = guard.as_mut() else { return };
            match result {
                Ok(token) => worker.pipeline.dispatched(token, export.meta),
                Err(reason) => {
                    warn!(
                        "meshaudit: could not send {} events to cluster {:?}: {reason}",
                        export.meta.events, config.cluster
                    );
                    worker.pipeline.dispatch_failed(export.meta);
                }
            }
        }
    }
}

/// The collector settings an export needs, copied out so no borrow is held over host calls.
pub struct CollectorTarget {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
}

impl Config {
    fn clone_collector(&self) -> CollectorTarget {
        CollectorTarget {
            cluster: self.collector.cluster.clone(),
            authority: self.collector.authority().to_string(),
            path: self.collector.path.clone(),
            timeout: Duration::from_millis(u64::from(self.collector.timeout_ms)),
        }
    }
}

fn dispatch(target: &CollectorTarget, content_type: &str, export: &Export) -> Result<u32, String> {
    let headers = vec![
        (":method", "POST"),
        (":path", target.path.as_str()),
        (":authority", target.authority.as_str()),
        ("content-type", content_type),
        (
            "user-agent",
            concat!("meshaudit/", env!("CARGO_PKG_VERSION")),
        ),
    ];
    hostcalls::dispatch_http_call(
        &target.cluster,
        headers,
        Some(&export.body),
        vec![],
        target.timeout,
    )
    .map_err(|status| format!("host refused the call ({status:?}); is the cluster defined?"))
}

/// A random id for this VM's event stream.
fn random_stream_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(abi::now_unix_nano());
    h.finish()
}

impl Context for AuditRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let status = if num_headers == 0 {
            None
        } else {
            let raw = abi::header_map(MapType::CallResponse);
            decode::map(&raw)
                .into_iter()
                .find(|(k, _)| *k == b":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u16>().ok())
        };
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let format = worker.pipeline.config().format;
        let body = match status {
            Some(200..=299) if body_size > 0 => abi::buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_RESPONSE_BODY),
            ),
            _ => None,
        };
        let outcome = classify(status, format, body.as_deref());
        if let Outcome::Failed { status } = outcome {
            warn!("meshaudit: collector did not accept a batch (status {status:?})");
        }
        worker.pipeline.completed(token, outcome);
    }
}

impl RootContext for AuditRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = abi::buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default();
        let env = |name: &str| std::env::var_os(name).map(|v| v.into_encoded_bytes());
        let pipeline::Loaded {
            config,
            redactor,
            bodies,
        } = match pipeline::load(&raw, env) {
            Ok(l) => l,
            Err(e) => {
                error!("meshaudit: invalid configuration: {e}");
                return false;
            }
        };
        let resource = node::resource(&EnvoyHost);
        let tick = config.flush_interval_ms.min(MAX_TICK_MS);
        let stream_id = random_stream_id();
        info!(
            "meshaudit: configured; stream {stream_id:016x}, {:?} to cluster {:?}, tick {tick} ms",
            config.format, config.collector.cluster
        );
        let worker = Worker {
            wants_response_headers: !config.response_headers.is_empty(),
            pipeline: Pipeline::new(config, redactor, &resource, stream_id),
            connections: ConnectionCache::new(CONNECTION_CACHE),
            bodies,
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

    fn on_tick(&mut self) {
        let now_ms = abi::now_unix_nano() / 1_000_000;
        self.send_due(now_ms);
        if let Ok(mut guard) = self.worker.try_borrow_mut() {
            if let Some(worker) = guard.as_mut() {
                self.publish_stats(worker);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuditHttp::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
