//! The HTTP context: one audit event per request, built once the request is complete. Bodies,
//! where a route asks for them, are copied as they stream through, up to the limit, holding
//! their bytes from the worker's body-capture budget; the bytes go back when the body is
//! finished or when the context is dropped (a stream that never completes included).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi::{self, BufferType, EnvoyHost, MapType};
use super::root::Worker;
use crate::capture::body::{BodyState, Side};
use crate::capture::budget::Budget;
use crate::capture::connection::{ConnectionFacts, SocketAddr};
use crate::capture::{decode, Host};
use crate::config::BodyCapture;
use crate::event::AuditEvent;
use crate::pipeline::fail_closed;
use crate::route::RequestLine;

/// The body of the 503 a fail-closed route answers while the audit buffer is full.
const FAIL_CLOSED_BODY: &[u8] =
    b"audit log unavailable: this route is fail-closed and requests are refused until audit events can be delivered\n";

pub struct AuditHttp {
    worker: Rc<RefCell<Option<Worker>>>,
    /// Body capture settings of this request's route, if it has any.
    body_spec: Option<BodyCapture>,
    /// The worker's body-capture budget, when this request's route captures bodies.
    budget: Option<Budget>,
    request_body: Option<BodyState>,
    response_body: Option<BodyState>,
}

impl AuditHttp {
    pub fn new(worker: Rc<RefCell<Option<Worker>>>) -> AuditHttp {
        AuditHttp {
            worker,
            body_spec: None,
            budget: None,
            request_body: None,
            response_body: None,
        }
    }
}

/// `content-type` and `content-encoding` of a header map.
fn content_headers<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
    let find = |name: &[u8]| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    (find(b"content-type"), find(b"content-encoding"))
}

/// Copies what the body capture still wants from the current body chunk, once the budget
/// holds room for it (nothing is read from the host otherwise).
fn take_chunk(state: &mut Option<BodyState>, buffer: BufferType, size: usize) {
    if let Some(s) = state {
        let want = s.reserve(size);
        let bytes = if want > 0 {
            abi::buffer(buffer, 0, want).unwrap_or_default()
        } else {
            Vec::new()
        };
        s.push(&bytes, size);
    }
}

impl Context for AuditHttp {}

impl HttpContext for AuditHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return Action::Continue;
        };
        let Some(worker) = guard.as_mut() else {
            return Action::Continue;
        };
        if worker.bodies.is_empty() && worker.fail_closed.is_empty() {
            return Action::Continue;
        }
        let raw = abi::header_map(MapType::Request);
        let pairs = decode::map(&raw);
        let find = |name: &[u8]| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let path = find(b":path").unwrap_or("");
        let host = SocketAddr::parse(find(b":authority").unwrap_or("")).host;
        let line = RequestLine {
            method: find(b":method").unwrap_or(""),
            host: &host,
            path: path.split('?').next().unwrap_or(path),
        };
        if worker.pipeline.is_full() && fail_closed(&worker.fail_closed, &line) {
            worker.pipeline.count_fail_closed();
            drop(guard);
            let headers = vec![
                ("content-type", "text/plain"),
                ("x-meshaudit", "fail-closed"),
            ];
            let _ = hostcalls::send_http_response(503, headers, Some(FAIL_CLOSED_BODY));
            return Action::Pause;
        }
        if let Some(spec) = worker.bodies.for_request(&line) {
            // A message without a body gets no body attributes at all.
            if !end_of_stream {
                let (ct, ce) = content_headers(&pairs);
                self.request_body =
                    BodyState::start(spec, Side::Request, ct, ce, &worker.body_budget);
            }
            self.body_spec = Some(spec.clone());
            self.budget = Some(worker.body_budget.clone());
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, _: bool) -> Action {
        take_chunk(&mut self.request_body, BufferType::HttpRequestBody, size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let (Some(spec), Some(budget)) = (self.body_spec.as_ref(), self.budget.as_ref()) {
            if !end_of_stream {
                let raw = abi::header_map(MapType::Response);
                let pairs = decode::map(&raw);
                let (ct, ce) = content_headers(&pairs);
                self.response_body = BodyState::start(spec, Side::Response, ct, ce, budget);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
        take_chunk(&mut self.response_body, BufferType::HttpResponseBody, size);
        Action::Continue
    }

    /// `on_log` runs for every request, including those Envoy answers itself (no route,
    /// upstream failure, local replies), after the response is complete.
    fn on_log(&mut self) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let mut event = request_event(worker);
        if let Some(body) = self.request_body.take() {
            body.finish(Side::Request, &mut event);
        }
        if let Some(body) = self.response_body.take() {
            body.finish(Side::Response, &mut event);
        }
        worker.record(event);
    }
}

/// The event of the request being logged (body attributes aside).
pub fn request_event(worker: &mut Worker) -> AuditEvent {
    match worker.attributes.read() {
        Some(snapshot) => build_event(worker, &snapshot),
        None => build_event(worker, &EnvoyHost),
    }
}

/// The request's event, from its header maps and the host's attributes.
fn build_event(worker: &mut Worker, host: &impl Host) -> AuditEvent {
    let connection_id = host
        .int(&["connection", "id"])
        .and_then(|id| u64::try_from(id).ok());
    let facts = worker
        .connections
        .get_or_read(connection_id, || ConnectionFacts::read(host));
    let request_raw = abi::header_map(MapType::Request);
    let response_raw = if worker.wants_response_headers {
        abi::header_map(MapType::Response)
    } else {
        Vec::new()
    };
    let request = decode::map(&request_raw);
    let response = decode::map(&response_raw);
    worker
        .pipeline
        .capture()
        .build(host, &facts, &request, &response, abi::now_unix_nano)
}
