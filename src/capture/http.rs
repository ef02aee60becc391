//! Building the audit event of one HTTP request from its header maps and the host's
//! attributes, read once the request has completed (`on_log`).

use super::connection::{read_identity, ConnectionFacts, SocketAddr};
use super::decision::Decision;
use super::decode;
use super::enduser::EndUser;
use super::identity;
use super::response_flags::response_flags;
use super::trace_context::{TraceContext, TraceHeaders};
use super::workload::{self, Workload};
use super::{Anomalies, Host};
use crate::config::Config;
use crate::event::{attr, AuditEvent, EventKind, Value};

/// A header name and the attribute it is recorded under.
#[derive(Debug, Clone)]
struct HeaderKey {
    name: String,
    key: &'static str,
}

/// What to capture from HTTP requests, prepared once per configuration.
#[derive(Debug, Clone)]
pub struct HttpCapture {
    request_headers: Vec<HeaderKey>,
    response_headers: Vec<HeaderKey>,
    /// The end user of a verified token (`identity.jwt`).
    enduser: Option<EndUser>,
}

/// One header map as the host gives it: name and value bytes.
pub type HeaderPairs<'a> = [(&'a [u8], &'a [u8])];

impl HttpCapture {
    pub fn new(config: &Config) -> HttpCapture {
        // Attribute keys are built once per configuration and live for the VM's life, so that
        // events carry `&'static str` keys instead of a fresh string per request.
        let keys = |names: &[String], prefix: &str| {
            names
                .iter()
                .map(|n| HeaderKey {
                    name: n.clone(),
                    key: Box::leak(format!("{prefix}{n}").into_boxed_str()),
                })
                .collect()
        };
        HttpCapture {
            request_headers: keys(&config.request_headers, attr::HTTP_REQUEST_HEADER),
            response_headers: keys(&config.response_headers, attr::HTTP_RESPONSE_HEADER),
            enduser: config
                .identity
                .jwt
                .then(|| EndUser::new(&config.identity.jwt_claims)),
        }
    }

    /// Builds the event. `now_unix_nano` is asked only when the host has no request timing.
    pub fn build(
        &self,
        host: &impl Host,
        conn: &ConnectionFacts,
        request: &HeaderPairs<'_>,
        response: &HeaderPairs<'_>,
        now_unix_nano: impl FnOnce() -> u64,
    ) -> AuditEvent {
        let mut a = conn.anomalies.clone();
        let mut e = AuditEvent::new(EventKind::Http);
        let line = RequestHeaders::read(request);
        line.write(&mut e, &mut a);
        write_timing(host, &mut e, now_unix_nano);
        write_response(host, line.grpc, &mut e, &mut a);
        write_routing(host, &mut e, &mut a);
        conn.write(&mut e, attr::TLS_SNI);
        write_workloads(host, conn, &line, response, &mut e, &mut a);
        if let Some(enduser) = &self.enduser {
            enduser.write(host, &mut e, &mut a);
        }
        if host.property(&["upstream", "tls_version"]).is_some() {
            read_identity(host, "upstream", "peer", &mut a).write(&identity::UPSTREAM_PEER, &mut e);
        }
        capture_headers(&self.request_headers, request, &mut e, &mut a);
        capture_headers(&self.response_headers, response, &mut e, &mut a);
        if !a.0.is_empty() {
            e.set(attr::ANOMALIES, Value::StrList(a.0));
        }
        e
    }
}

/// What the event takes from the request's headers whatever the allowlist: the request line,
/// the user agent, the request id and the trace context.
#[derive(Default)]
struct RequestHeaders<'h> {
    method: Option<&'h [u8]>,
    path: Option<&'h [u8]>,
    authority: Option<&'h [u8]>,
    scheme: Option<&'h [u8]>,
    user_agent: Option<&'h [u8]>,
    request_id: Option<&'h [u8]>,
    /// A gRPC request (`content-type: application/grpc…`).
    grpc: bool,
    trace: TraceHeaders<'h>,
    /// Istio's `x-envoy-peer-metadata`, where it is still there.
    peer_metadata: Option<&'h [u8]>,
}

impl<'h> RequestHeaders<'h> {
    fn read(request: &HeaderPairs<'h>) -> RequestHeaders<'h> {
        let mut h = RequestHeaders::default();
        for &(name, value) in request {
            match name {
                b":method" => h.method = Some(value),
                b":path" => h.path = Some(value),
                b":authority" => h.authority = Some(value),
                b":scheme" => h.scheme = Some(value),
                b"user-agent" => h.user_agent = Some(value),
                b"x-request-id" => h.request_id = Some(value),
                b"content-type" => h.grpc = value.starts_with(b"application/grpc"),
                b"traceparent" => h.trace.traceparent = Some(value),
                b"b3" => h.trace.b3 = Some(value),
                b"x-b3-traceid" => h.trace.b3_trace_id = Some(value),
                b"x-b3-spanid" => h.trace.b3_span_id = Some(value),
                workload::PEER_METADATA_HEADER => h.peer_metadata = Some(value),
                _ => {}
            }
        }
        h
    }

    fn write(&self, e: &mut AuditEvent, a: &mut Anomalies) {
        let tc = TraceContext::from_headers(&self.trace);
        e.trace_id = tc.trace_id;
        e.span_id = tc.span_id;
        let text = |v: &[u8], field: &str, a: &mut Anomalies| decode::string(v.to_vec(), field, a);
        e.set_str(
            attr::HTTP_METHOD,
            self.method.map(|m| text(m, attr::HTTP_METHOD, a)),
        );
        e.set_str(
            attr::URL_SCHEME,
            self.scheme.map(|s| text(s, attr::URL_SCHEME, a)),
        );
        if let Some(p) = self.path {
            let (p, q) = match p.iter().position(|&b| b == b'?') {
                Some(at) => (p.get(..at).unwrap_or(p), p.get(at + 1..)),
                None => (p, None),
            };
            e.set(attr::URL_PATH, Value::Str(text(p, attr::URL_PATH, a)));
            e.set_str(attr::URL_QUERY, q.map(|q| text(q, attr::URL_QUERY, a)));
        }
        if let Some(auth) = self.authority {
            let addr = SocketAddr::parse(&text(auth, attr::SERVER_ADDRESS, a));
            e.set(attr::SERVER_ADDRESS, Value::Str(addr.host));
            e.set_int(attr::SERVER_PORT, addr.port);
        }
        e.set_str(
            attr::USER_AGENT,
            self.user_agent.map(|v| text(v, attr::USER_AGENT, a)),
        );
        e.set_str(
            attr::REQUEST_ID,
            self.request_id.map(|v| text(v, attr::REQUEST_ID, a)),
        );
    }
}

/// The calling workload (Istio's filter state for the connection, else the request's
/// `x-envoy-peer-metadata`) and, on an outbound listener, the called one (filter state
/// `upstream_peer`, else the response's header).
fn write_workloads(
    host: &impl Host,
    conn: &ConnectionFacts,
    request: &RequestHeaders<'_>,
    response: &HeaderPairs<'_>,
    e: &mut AuditEvent,
    a: &mut Anomalies,
) {
    let peer = match &conn.peer_workload {
        Some(w) => Some(std::borrow::Cow::Borrowed(w)),
        None => request
            .peer_metadata
            .and_then(|v| Workload::from_header(v, a))
            .map(std::borrow::Cow::Owned),
    };
    if let Some(w) = peer {
        conn.write_workload(&w, e, a);
    }
    if conn.direction != Some("outbound") {
        return;
    }
    let upstream = Workload::from_filter_state(host, workload::UPSTREAM_PEER, a).or_else(|| {
        response
            .iter()
            .find(|(name, _)| *name == workload::PEER_METADATA_HEADER)
            .and_then(|(_, v)| Workload::from_header(v, a))
    });
    if let Some(w) = upstream {
        w.write(&workload::DESTINATION_KEYS, None, e, a);
    }
}

/// Start, end and duration: from the host's request timing, else the clock.
fn write_timing(host: &impl Host, e: &mut AuditEvent, now_unix_nano: impl FnOnce() -> u64) {
    let start = host
        .int(&["request", "time"])
        .and_then(|t| u64::try_from(t).ok());
    let duration = host
        .int(&["request", "duration"])
        .and_then(|d| u64::try_from(d).ok());
    e.start_unix_nano = start.unwrap_or(0);
    e.observed_unix_nano = match (start, duration) {
        (Some(s), Some(d)) => s.saturating_add(d),
        _ => now_unix_nano(),
    };
    if e.start_unix_nano == 0 {
        e.start_unix_nano = e.observed_unix_nano;
    }
    e.set_int(
        attr::DURATION_NS,
        duration.and_then(|d| i64::try_from(d).ok()),
    );
}

/// gRPC's status codes by number, as `rpc.response.status_code` names them.
const GRPC_STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status code's name; a number gRPC does not define stays a number.
fn grpc_status_name(code: i64) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| GRPC_STATUS_NAMES.get(i))
        .map_or_else(|| code.to_string(), |n| (*n).to_string())
}

/// The protocol, the response's status, flags and details, and the sizes.
fn write_response(host: &impl Host, grpc: bool, e: &mut AuditEvent, a: &mut Anomalies) {
    if let Some(p) = host.string(&["request", "protocol"], a) {
        e.set(attr::PROTOCOL_NAME, Value::Str("http".into()));
        let version = p.strip_prefix("HTTP/").unwrap_or(&p).to_string();
        e.set(attr::PROTOCOL_VERSION, Value::Str(version));
    }
    e.set_int(
        attr::HTTP_STATUS,
        host.int(&["response", "code"]).filter(|&c| c > 0),
    );
    let flags = host.int(&["response", "flags"]).unwrap_or(0);
    if flags != 0 {
        e.set(attr::RESPONSE_FLAGS, Value::Str(response_flags(flags)));
    }
    let details = host.string(&["response", "code_details"], a);
    Decision::from_envoy(flags, details.as_deref()).write(e);
    e.set_str(attr::RESPONSE_CODE_DETAILS, details);
    if grpc {
        if let Some(code) = host.int(&["response", "grpc_status"]) {
            e.set(attr::RPC_STATUS, Value::Str(grpc_status_name(code)));
        }
    }
    e.set_int(
        attr::HTTP_REQUEST_SIZE,
        host.int(&["request", "total_size"]),
    );
    e.set_int(attr::HTTP_REQUEST_BODY_SIZE, host.int(&["request", "size"]));
    e.set_int(
        attr::HTTP_RESPONSE_SIZE,
        host.int(&["response", "total_size"]),
    );
    e.set_int(
        attr::HTTP_RESPONSE_BODY_SIZE,
        host.int(&["response", "size"]),
    );
}

/// Where Envoy sent the request: the upstream address, the route and the cluster.
fn write_routing(host: &impl Host, e: &mut AuditEvent, a: &mut Anomalies) {
    e.set_str(
        attr::UPSTREAM_ADDRESS,
        host.string(&["upstream", "address"], a),
    );
    e.set_str(
        attr::ROUTE_NAME,
        host.string(&["xds", "route_name"], a)
            .filter(|s| !s.is_empty()),
    );
    e.set_str(
        attr::UPSTREAM_CLUSTER,
        host.string(&["xds", "cluster_name"], a),
    );
}

/// Copies allowlisted headers (every value of a repeated header) into the event.
fn capture_headers(
    keys: &[HeaderKey],
    headers: &HeaderPairs<'_>,
    e: &mut AuditEvent,
    a: &mut Anomalies,
) {
    for k in keys {
        let values: Vec<String> = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(k.name.as_bytes()))
            .map(|(_, v)| decode::string(v.to_vec(), k.key, a))
            .collect();
        if !values.is_empty() {
            e.set(k.key, Value::StrList(values));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn pairs<'a>(h: &'a [(&'a str, &'a str)]) -> Vec<(&'a [u8], &'a [u8])> {
        h.iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect()
    }

    fn completed_request() -> RecordedHost {
        RecordedHost::default()
            .with_int("request.time", 1_700_000_000_123_456_789)
            .with_int("request.duration", 2_000_000)
            .with("request.protocol", "HTTP/1.1")
            .with_int("response.code", 200)
            .with_int("request.total_size", 180)
            .with_int("request.size", 0)
            .with_int("response.size", 5)
            .with_int("response.total_size", 120)
            .with("upstream.address", "127.0.0.1:8080")
            .with("xds.cluster_name", "inbound|8080||")
            .with("xds.route_name", "")
    }

    #[test]
    fn builds_the_request_fields() {
        let cfg = Config {
            request_headers: vec!["x-tenant".into()],
            ..Config::default()
        };
        let req = pairs(&[
            (":method", "POST"),
            (":path", "/orders/7?expand=items&x=1"),
            (":authority", "checkout:8080"),
            (":scheme", "http"),
            ("x-request-id", "req-1"),
            ("user-agent", "curl/8"),
            ("x-tenant", "a"),
            ("x-tenant", "b"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        let e = HttpCapture::new(&cfg).build(
            &completed_request(),
            &ConnectionFacts::default(),
            &req,
            &[],
            || 0,
        );
        assert_eq!(e.get_str(attr::HTTP_METHOD), Some("POST"));
        assert_eq!(e.get_str(attr::URL_PATH), Some("/orders/7"));
        assert_eq!(e.get_str(attr::URL_QUERY), Some("expand=items&x=1"));
        assert_eq!(e.get_str(attr::SERVER_ADDRESS), Some("checkout"));
        assert_eq!(e.get(attr::SERVER_PORT), Some(&Value::Int(8080)));
        assert_eq!(e.get_str(attr::PROTOCOL_VERSION), Some("1.1"));
        assert_eq!(e.get(attr::HTTP_STATUS), Some(&Value::Int(200)));
        assert_eq!(e.get_str(attr::REQUEST_ID), Some("req-1"));
        assert_eq!(e.start_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(e.observed_unix_nano, 1_700_000_000_125_456_789);
        assert!(e.trace_id.is_some() && e.span_id.is_some());
        assert_eq!(
            e.get("http.request.header.x-tenant"),
            Some(&Value::StrList(vec!["a".into(), "b".into()]))
        );
        assert!(
            e.get(attr::ROUTE_NAME).is_none(),
            "empty route name is absent"
        );
        assert!(e.get(attr::RESPONSE_FLAGS).is_none());
        assert!(e.get(attr::RPC_STATUS).is_none());
        assert!(e.get(attr::ANOMALIES).is_none());
    }

    #[test]
    fn local_replies_without_timing_still_make_an_event() {
        let host = RecordedHost::default()
            .with_int("response.code", 404)
            .with_int("response.flags", 1 << 8);
        let e = HttpCapture::new(&Config::default()).build(
            &host,
            &ConnectionFacts::default(),
            &[],
            &[],
            || 42,
        );
        assert_eq!(e.get(attr::HTTP_STATUS), Some(&Value::Int(404)));
        assert_eq!(e.get_str(attr::RESPONSE_FLAGS), Some("NR"));
        assert_eq!((e.start_unix_nano, e.observed_unix_nano), (42, 42));
        assert!(e.get(attr::HTTP_METHOD).is_none());
    }

    #[test]
    fn invalid_utf8_is_marked() {
        let req: Vec<(&[u8], &[u8])> = vec![(b":path", b"/a\xff\xfe")];
        let e = HttpCapture::new(&Config::default()).build(
            &completed_request(),
            &ConnectionFacts::default(),
            &req,
            &[],
            || 0,
        );
        assert_eq!(e.get_str(attr::URL_PATH), Some("/a\u{fffd}\u{fffd}"));
        assert_eq!(
            e.get(attr::ANOMALIES),
            Some(&Value::StrList(vec!["invalid_utf8:url.path".into()]))
        );
    }

    #[test]
    fn grpc_status_only_for_grpc() {
        let host = completed_request().with_int("response.grpc_status", 14);
        let req = pairs(&[("content-type", "application/grpc+proto")]);
        let e = HttpCapture::new(&Config::default()).build(
            &host,
            &ConnectionFacts::default(),
            &req,
            &[],
            || 0,
        );
        assert_eq!(e.get_str(attr::RPC_STATUS), Some("UNAVAILABLE"));
        assert_eq!(grpc_status_name(0), "OK");
        assert_eq!(grpc_status_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_status_name(99), "99");
    }

    #[test]
    fn response_flag_names() {}
}
