//! The HTTP context: one audit event per request, built once the request is complete. Bodies,
//! where a route asks for them, are copied as they stream through, up to the limit, holding
//! their bytes from the worker's body-capture budget; the bytes go back when the body is
//! finished or when the context is dropped (a stream that never completes included).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::abi::{self, BufferType, EnvoyHost, MapType};
use super::shared::{Shared, Slot};
use crate::capture::body::Side;
use crate::capture::decision::Decision;
use crate::capture::decode;
use crate::event::AuditEvent;
use crate::worker::{Admission, Bodies};

pub struct AuditHttp {
    shared: Shared,
    /// This request's body capture, when its route asks for it.
    bodies: Option<Box<Bodies>>,
    /// meshaudit refused this request (a fail-closed route while the buffer was full).
    refused: bool,
}

impl AuditHttp {
    pub fn new(shared: Shared) -> AuditHttp {
        AuditHttp {
            shared,
            bodies: None,
            refused: false,
        }
    }

    /// Copies what the body capture still wants from the current body chunk, once the budget
    /// holds room for it (nothing is read from the host otherwise).
    fn take_chunk(&mut self, side: Side, buffer: BufferType, size: usize) {
        if let Some(state) = self.bodies.as_mut().and_then(|b| b.body(side)) {
            let want = state.reserve(size);
            let bytes = if want > 0 {
                abi::buffer(buffer, 0, want).unwrap_or_default()
            } else {
                Vec::new()
            };
            state.push(&bytes, size);
        }
    }
}

impl Context for AuditHttp {}

impl HttpContext for AuditHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let admission = self.shared.with_worker(|w| {
            if !w.inspects_requests() {
                return Admission::Pass(None);
            }
            let raw = abi::header_map(MapType::Request);
            w.admit(&EnvoyHost, &decode::map(&raw), end_of_stream)
        });
        match admission {
            Some(Admission::Refuse(reply)) => {
                self.refused = true;
                let _ =
                    hostcalls::send_http_response(reply.status, reply.headers, Some(reply.body));
                Action::Pause
            }
            Some(Admission::Pass(bodies)) => {
                self.bodies = bodies;
                Action::Continue
            }
            None => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, _: bool) -> Action {
        self.take_chunk(Side::Request, BufferType::HttpRequestBody, size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Some(bodies) = &mut self.bodies {
            if !end_of_stream {
                let raw = abi::header_map(MapType::Response);
                bodies.response_headers(&decode::map(&raw), end_of_stream);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
        self.take_chunk(Side::Response, BufferType::HttpResponseBody, size);
        Action::Continue
    }

    /// `on_log` runs for every request, including those Envoy answers itself (no route,
    /// upstream failure, local replies), after the response is complete.
    fn on_log(&mut self) {
        let bodies = self.bodies.take();
        let refused = self.refused;
        self.shared.with(|slot| {
            let mut event = request_event(slot);
            if refused {
                Decision::fail_closed().replace(&mut event);
            }
            if let Some(bodies) = bodies {
                (*bodies).finish(&mut event);
            }
            slot.worker.record(event);
        });
    }
}

/// The event of the request being logged (body attributes aside): its header maps, and its
/// attributes in one host call where the host can.
pub fn request_event(slot: &mut Slot) -> AuditEvent {
    let request_raw = abi::header_map(MapType::Request);
    let response_raw = if slot.worker.wants_response_headers() {
        abi::header_map(MapType::Response)
    } else {
        Vec::new()
    };
    let (request, response) = (decode::map(&request_raw), decode::map(&response_raw));
    match slot.attributes.read() {
        Some(snapshot) => {
            slot.worker
                .request_event(&snapshot, &request, &response, abi::now_unix_nano)
        }
        None => slot
            .worker
            .request_event(&EnvoyHost, &request, &response, abi::now_unix_nano),
    }
}
