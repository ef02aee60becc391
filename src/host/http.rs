//! The HTTP context: one audit event per request, built once the request is complete.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};

use super::abi::{self, EnvoyHost, MapType};
use super::root::Worker;
use crate::capture::connection::ConnectionFacts;
use crate::capture::decode;

pub struct AuditHttp {
    pub(super) worker: Rc<RefCell<Option<Worker>>>,
}

impl Context for AuditHttp {}

impl HttpContext for AuditHttp {
    /// `on_log` runs for every request, including those Envoy answers itself (no route,
    /// upstream failure, local replies), after the response is complete.
    fn on_log(&mut self) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let connection_id = abi::property(&["connection", "id"])
            .and_then(|v| decode::int64(&v))
            .and_then(|id| u64::try_from(id).ok());
        let facts = worker
            .connections
            .get_or_read(connection_id, || ConnectionFacts::read(&EnvoyHost));
        let request_raw = abi::header_map(MapType::Request);
        let response_raw = if worker.wants_response_headers {
            abi::header_map(MapType::Response)
        } else {
            Vec::new()
        };
        let request = decode::map(&request_raw);
        let response = decode::map(&response_raw);
        let event = worker.pipeline.capture().build(
            &EnvoyHost,
            &facts,
            &request,
            &response,
            abi::now_unix_nano,
        );
        let now_ms = event.observed_unix_nano / 1_000_000;
        worker.pipeline.accept(event, now_ms);
    }
}
