//! HTTP requests: whether a request is refused (a fail-closed route while the audit buffer is
//! full), whether and how its bodies are captured, its event, and the access logger's events.

use super::{Level, Worker};
use crate::audit::{Request, Start};
use crate::capture::body::{BodyState, Side};
use crate::capture::budget::Budget;
use crate::capture::connection::{ConnectionFacts, SocketAddr};
use crate::capture::http::HeaderPairs;
use crate::capture::Host;
use crate::config::{AuditLevel, BodyCapture};
use crate::event::{attr, AuditEvent};
use crate::route::RequestLine;

/// The body of the 503 a fail-closed route answers while the audit buffer is full.
const FAIL_CLOSED_BODY: &[u8] =
    b"audit log unavailable: this route is fail-closed and requests are refused until audit events can be delivered\n";

/// A reply Envoy sends instead of passing the request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static [u8],
}

/// What becomes of a request once its headers are in.
#[derive(Debug)]
pub enum Admission {
    /// Refused with this reply (the request goes no further).
    Refuse(LocalReply),
    /// Passed on; its bodies are captured when its route asks for them.
    Pass(Option<Box<Bodies>>),
}

/// The body capture of one request whose route asks for it: the route's settings, the
/// worker's budget, and each body being copied.
#[derive(Debug)]
pub struct Bodies {
    spec: BodyCapture,
    budget: Budget,
    request: Option<BodyState>,
    response: Option<BodyState>,
}

/// `content-type` and `content-encoding` of a header map.
fn content_headers<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
    let find = |name: &[u8]| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    (find(b"content-type"), find(b"content-encoding"))
}

impl Bodies {
    /// The body of `side` being copied, if it is.
    pub fn body(&mut self, side: Side) -> Option<&mut BodyState> {
        match side {
            Side::Request => self.request.as_mut(),
            Side::Response => self.response.as_mut(),
        }
    }

    /// The response headers are in: decides whether the response body is captured. A message
    /// without a body gets no body attributes at all.
    pub fn response_headers(&mut self, pairs: &HeaderPairs<'_>, end_of_stream: bool) {
        if !end_of_stream {
            let (ct, ce) = content_headers(pairs);
            self.response = BodyState::start(&self.spec, Side::Response, ct, ce, &self.budget);
        }
    }

    /// Writes the bodies' attributes to the request's event (their bytes go back to the budget).
    pub fn finish(self, event: &mut AuditEvent) {
        if let Some(body) = self.request {
            body.finish(Side::Request, event);
        }
        if let Some(body) = self.response {
            body.finish(Side::Response, event);
        }
    }
}

/// The route-matching view of a request's headers.
fn with_request_line<R>(pairs: &HeaderPairs<'_>, f: impl FnOnce(&RequestLine<'_>) -> R) -> R {
    let find = |name: &[u8]| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let path = find(b":path").unwrap_or("");
    let host = SocketAddr::parse(find(b":authority").unwrap_or("")).host;
    f(&RequestLine {
        method: find(b":method").unwrap_or(""),
        host: &host,
        path: path.split('?').next().unwrap_or(path),
    })
}

impl Worker {
    /// Whether a request's headers are looked at before it goes on (fail-closed routes or body
    /// capture are configured); if not, the host need not read them.
    pub fn inspects_requests(&self) -> bool {
        !(self.bodies.is_empty() && self.fail_closed.is_empty() && !self.audit.captures_bodies())
    }

    /// The caller as the audit policy matches it when a request starts (read only when a rule
    /// needs it: the connection's facts, cached per connection).
    fn caller_at_start(&mut self, host: &impl Host) -> (bool, Option<String>) {
        if !self.audit.reads_caller() {
            return (false, None);
        }
        let id = host
            .int(&["connection", "id"])
            .and_then(|id| u64::try_from(id).ok());
        let facts = self
            .connections
            .get_or_read(id, || ConnectionFacts::read(host));
        let caller = facts.peer.spiffe().map(|s| s.id.to_string());
        (facts.mtls, caller)
    }

    /// The bodies a request's capture takes: its `body_capture` route's, with the sides its
    /// audit level adds (`request`, `request_response`); `none`: nothing.
    fn body_spec(&self, line: &RequestLine<'_>, start: Start) -> Option<BodyCapture> {
        let wanted = |spec: &mut BodyCapture| {
            spec.request |= start.level >= AuditLevel::Request;
            spec.response |= start.level >= AuditLevel::RequestResponse;
        };
        match (self.bodies.for_request(line), start.level) {
            (_, AuditLevel::None) => None,
            (Some(spec), _) => {
                let mut spec = spec.clone();
                wanted(&mut spec);
                Some(spec)
            }
            (None, AuditLevel::Metadata) => None,
            (None, _) => {
                let mut spec = BodyCapture::for_audit(start.max_bytes);
                wanted(&mut spec);
                Some(spec)
            }
        }
    }

    /// Whether request `line` is refused: its route is fail-closed and the audit buffer is full.
    fn refuses(&self, line: &RequestLine<'_>) -> bool {
        self.pipeline.is_full() && self.fail_closed.iter().any(|r| r.matches(line))
    }

    /// A request's headers are in (`end_of_stream`: it has no body): it is refused, or passed
    /// on with the body capture its route asks for.
    pub fn admit(
        &mut self,
        host: &impl Host,
        pairs: &HeaderPairs<'_>,
        end_of_stream: bool,
    ) -> Admission {
        let (authenticated, caller) = self.caller_at_start(host);
        with_request_line(pairs, |line| {
            if self.refuses(line) {
                self.pipeline.count_fail_closed();
                return Admission::Refuse(LocalReply {
                    status: 503,
                    headers: vec![
                        ("content-type", "text/plain"),
                        ("x-meshaudit", "fail-closed"),
                    ],
                    body: FAIL_CLOSED_BODY,
                });
            }
            let start = self.audit.at_start(&Request {
                line: *line,
                authenticated,
                caller: caller.as_deref(),
            });
            let Some(spec) = self.body_spec(line, start) else {
                return Admission::Pass(None);
            };
            let request = if end_of_stream {
                None
            } else {
                let (ct, ce) = content_headers(pairs);
                BodyState::start(&spec, Side::Request, ct, ce, &self.body_budget)
            };
            Admission::Pass(Some(Box::new(Bodies {
                spec,
                budget: self.body_budget.clone(),
                request,
                response: None,
            })))
        })
    }

    /// Whether events carry response headers (the host reads that map only then).
    pub fn wants_response_headers(&self) -> bool {
        self.wants_response_headers
    }

    /// The event of the request being logged (body attributes aside), from its header maps and
    /// the host's attributes. `now_unix_nano` is asked only when the host has no timing.
    pub fn request_event(
        &mut self,
        host: &impl Host,
        request: &HeaderPairs<'_>,
        response: &HeaderPairs<'_>,
        now_unix_nano: impl FnOnce() -> u64,
    ) -> AuditEvent {
        let connection_id = host
            .int(&["connection", "id"])
            .and_then(|id| u64::try_from(id).ok());
        let facts = self
            .connections
            .get_or_read(connection_id, || ConnectionFacts::read(host));
        self.pipeline
            .capture()
            .build(host, &facts, request, response, now_unix_nano)
    }

    /// Loaded as an access logger, the worker is told of every finished request: the same
    /// event as the HTTP filter's. Settings only the HTTP filter honours are said to be ignored
    /// (once); a tcp_proxy's access log tells of connections (no request, no protocol): those
    /// are the network filter's to audit, and are said to be so (once) and not recorded.
    pub fn log_request(&mut self, event: AuditEvent) {
        if !self.warned.filter_only {
            if let Some(field) = self.config().filter_only_field() {
                self.say(Level::Error, format!(
                    "meshaudit: invalid configuration for an access logger: {field}: needs the HTTP filter and is ignored here; set \"mode\": \"access_log\" to have such configurations refused at load"
                ));
            }
            self.warned.filter_only = true;
        }
        // (The method comes first in an event: the usual request pays one comparison.)
        if event.get(attr::HTTP_METHOD).is_none() && event.get(attr::PROTOCOL_NAME).is_none() {
            if !self.warned.not_http {
                self.say(Level::Error, "meshaudit: loaded as an access logger outside an HTTP connection manager: connections are not audited here; load meshaudit as a network filter (\"mode\": \"tcp\") for them".to_string());
                self.warned.not_http = true;
            }
            return;
        }
        self.record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{said, worker};
    use super::*;
    use crate::capture::fake::RecordedHost;
    use crate::event::{EventKind, Value};
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    type Pairs = Vec<(&'static [u8], &'static [u8])>;

    fn get(path: &'static str) -> Pairs {
        vec![
            (b":method", b"POST"),
            (b":authority", b"shop:8080"),
            (b":path", path.as_bytes()),
            (b"content-type", b"application/json"),
        ]
    }

    const FAIL_CLOSED: &str = r#"{"max_batch_events": 1000, "max_batch_bytes": 1024, "max_buffer_bytes": 4096,
        "routes": [{"match": {"host": "shop", "path_prefix": "/pay"}, "fail_closed": true}]}"#;

    fn fill(w: &mut Worker) {
        while !w.pipeline.is_full() {
            w.record(AuditEvent::new(EventKind::Http));
        }
    }

    #[test]
    fn a_fail_closed_route_is_refused_only_while_the_buffer_is_full() {
        let mut w = worker(FAIL_CLOSED);
        assert!(w.inspects_requests());
        assert!(matches!(
            w.admit(&RecordedHost::default(), &get("/pay/1"), true),
            Admission::Pass(None)
        ));
        fill(&mut w);
        let Admission::Refuse(reply) = w.admit(&RecordedHost::default(), &get("/pay/1?x=1"), true)
        else {
            panic!("refused");
        };
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.headers,
            [
                ("content-type", "text/plain"),
                ("x-meshaudit", "fail-closed")
            ]
        );
        assert!(reply.body.starts_with(b"audit log unavailable"));
        assert!(
            matches!(
                w.admit(&RecordedHost::default(), &get("/shop"), true),
                Admission::Pass(None)
            ),
            "another route"
        );
        assert_eq!(w.publish().stats.fail_closed_rejections, 1);
        assert!(!worker("{}").inspects_requests());
    }

    #[test]
    fn bodies_are_captured_where_the_route_asks() {
        let mut w = worker(
            r#"{"body_capture": [{"match": {"path_prefix": "/api"}, "request": true, "response": true}]}"#,
        );
        assert!(matches!(
            w.admit(&RecordedHost::default(), &get("/other"), false),
            Admission::Pass(None)
        ));
        let Admission::Pass(Some(mut bodies)) =
            w.admit(&RecordedHost::default(), &get("/api/orders"), false)
        else {
            panic!("captured");
        };
        let state = bodies.body(Side::Request).unwrap();
        let want = state.reserve(7);
        state.push(&b"{\"a\":1}"[..want], 7);
        assert!(bodies.body(Side::Response).is_none());
        let json: Pairs = vec![(b"content-type", b"application/json")];
        bodies.response_headers(&json, false);
        assert!(bodies.body(Side::Response).is_some());
        let mut event = AuditEvent::new(EventKind::Http);
        bodies.finish(&mut event);
        assert_eq!(event.get_str(attr::REQUEST_BODY), Some("{\"a\":1}"));
        assert!(
            event.get(attr::RESPONSE_BODY_CAPTURE).is_some()
                || event.get(attr::RESPONSE_BODY).is_some()
        );
        let Admission::Pass(Some(mut none)) =
            w.admit(&RecordedHost::default(), &get("/api/x"), true)
        else {
            panic!("captured");
        };
        assert!(
            none.body(Side::Request).is_none(),
            "a request without a body"
        );
    }

    #[test]
    fn audit_levels_pick_bodies_at_the_start_and_drop_none_at_the_end() {
        let mut w = worker(
            r#"{"audit": [
                {"match": {"path": "/healthz", "caller": "unauthenticated"}, "level": "none"},
                {"match": {"path_prefix": "/admin/"}, "level": "request_response", "max_bytes": 16},
                {"match": {"path_prefix": "/upload/"}, "level": "request"}
            ]}"#,
        );
        assert!(w.inspects_requests());
        let plain = RecordedHost::default().with_int("connection.id", 1);
        let Admission::Pass(Some(mut admin)) = w.admit(&plain, &get("/admin/users"), false) else {
            panic!("request_response captures bodies");
        };
        assert!(admin.body(Side::Request).is_some());
        let json: Pairs = vec![(b"content-type", b"application/json")];
        admin.response_headers(&json, false);
        assert!(admin.body(Side::Response).is_some());
        let Admission::Pass(Some(mut upload)) = w.admit(&plain, &get("/upload/x"), false) else {
            panic!("request captures the request body");
        };
        upload.response_headers(&json, false);
        assert!(upload.body(Side::Request).is_some() && upload.body(Side::Response).is_none());
        assert!(matches!(
            w.admit(&plain, &get("/healthz"), false),
            Admission::Pass(None)
        ));
        assert!(matches!(
            w.admit(&plain, &get("/orders"), false),
            Admission::Pass(None)
        ));

        let probe = w.request_event(&plain, &get("/healthz"), &Vec::new(), || 5);
        let order = w.request_event(&plain, &get("/orders"), &Vec::new(), || 5);
        w.record(probe);
        w.record(order);
        let stats = w.publish().stats;
        assert_eq!((stats.events_unaudited, stats.events_captured), (1, 1));
    }

    #[test]
    fn the_request_event_reads_the_connection_once() {
        let mut w = worker(r#"{"request_headers": ["content-type"]}"#);
        let host = RecordedHost::default()
            .with_int("connection.id", 9)
            .with("source.address", "10.0.0.1:5000");
        let e = w.request_event(&host, &get("/a"), &Vec::new(), || 5);
        assert_eq!(e.get(attr::HTTP_METHOD), Some(&Value::Str("POST".into())));
        let other = RecordedHost::default().with_int("connection.id", 9);
        let again = w.request_event(&other, &get("/b"), &Vec::new(), || 5);
        assert_eq!(
            again.get(attr::PEER_ADDRESS),
            e.get(attr::PEER_ADDRESS),
            "the facts of connection 9 are cached"
        );
        assert!(e.get(attr::PEER_ADDRESS).is_some());
    }

    #[test]
    fn the_access_logger_says_once_what_it_ignores_and_skips_connections() {
        let mut w =
            worker(r#"{"body_capture": [{"match": {"path_prefix": "/"}, "request": true}]}"#);
        let mut request = AuditEvent::new(EventKind::Http);
        request.set(attr::HTTP_METHOD, Value::Str("GET".into()));
        w.log_request(request.clone());
        w.log_request(request);
        let logs = w.take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Error);
        assert!(logs[0].message.contains("invalid configuration for an access logger: body_capture: needs the HTTP filter and is ignored here"));
        assert_eq!(w.publish().stats.events_captured, 2);
        w.log_request(AuditEvent::new(EventKind::Http));
        w.log_request(AuditEvent::new(EventKind::Http));
        let logs = said(&mut w);
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].contains("loaded as an access logger outside an HTTP connection manager"));
        assert_eq!(
            w.publish().stats.events_captured,
            0,
            "connections are not recorded"
        );
    }
}
