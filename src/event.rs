//! The audit event: what one request (or connection) looked like, as a flat list of attributes
//! named after the OpenTelemetry semantic conventions, plus the few fields OTLP carries on the
//! log record itself (timestamps, trace context).
//!
//! Names we add where no convention exists start with `meshaudit.`; docs/event-schema.md (HTTP)
//! and docs/tcp.md (connections) list them all.

use std::borrow::Cow;

/// Resource attributes (the workload, its namespace, cluster, mesh), in a fixed order: read
/// once per configuration, sent once per batch, shared by the batch's events.
pub type Resource = Vec<(&'static str, String)>;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// One HTTP request and its response.
    Http,
    /// A report of events that were lost (see `meshaudit.gap.*`).
    Gap,
    /// A TCP connection: opened, still open (interim), or closed (`meshaudit.tcp.phase`).
    Tcp,
    /// A signed statement of the stream's chain head (see `meshaudit.checkpoint.*`).
    Checkpoint,
}

impl EventKind {
    /// The OTLP `event_name` of this kind.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Http => "meshaudit.http",
            EventKind::Gap => "meshaudit.gap",
            EventKind::Tcp => "meshaudit.tcp",
            EventKind::Checkpoint => "meshaudit.checkpoint",
        }
    }

    /// The kind an `event_name` names (an unknown name reads as HTTP).
    pub fn from_name(name: &str) -> EventKind {
        [EventKind::Gap, EventKind::Tcp, EventKind::Checkpoint]
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or(EventKind::Http)
    }
}

/// An attribute value. Only the types the encoders need.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    StrList(Vec<String>),
}

/// One named value.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: Cow<'static, str>,
    pub value: Value,
}

/// The OpenTelemetry semantic conventions release the attribute names follow
/// (docs/event-schema.md; checked against its registry by tests/semconv.rs).
pub const SEMCONV_VERSION: &str = "1.44.0";

/// [`SEMCONV_VERSION`]'s schema URL, in every OTLP export.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// Longest single header or attribute value an event keeps. Longer values are redacted whole
/// first, then cut (see `redact::cut`).
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Most bytes kept of each captured body: its route's `max_bytes`. Capture keeps a little more,
/// and redaction cuts the body to this once it has redacted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyLimits {
    pub request: Option<usize>,
    pub response: Option<usize>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub kind: EventKind,
    /// When the request started, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// When the event was built (the request's end), nanoseconds since the Unix epoch.
    pub observed_unix_nano: u64,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub attributes: Vec<Attribute>,
    /// Not encoded: how much of each body the event keeps.
    pub body_limits: BodyLimits,
}

impl AuditEvent {
    pub fn new(kind: EventKind) -> Self {
        AuditEvent {
            kind,
            start_unix_nano: 0,
            observed_unix_nano: 0,
            trace_id: None,
            span_id: None,
            attributes: Vec::with_capacity(40),
            body_limits: BodyLimits::default(),
        }
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: Value) {
        self.attributes.push(Attribute {
            key: key.into(),
            value,
        });
    }

    /// Adds a string attribute when there is a value; absent stays absent.
    pub fn set_str(&mut self, key: &'static str, value: Option<String>) {
        if let Some(v) = value {
            self.set(key, Value::Str(v));
        }
    }

    /// Adds an integer attribute when there is a value.
    pub fn set_int(&mut self, key: &'static str, value: Option<i64>) {
        if let Some(v) = value {
            self.set(key, Value::Int(v));
        }
    }

    /// The first attribute with this key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }

    /// The value of a string attribute.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A one-line human summary, used as the log record body: `GET /orders 200`.
    /// It holds only values that are also attributes (and so were redacted like them).
    pub fn summary(&self) -> String {
        if self.kind == EventKind::Gap {
            let int = |k| match self.get(k) {
                Some(Value::Int(i)) => *i,
                _ => -1,
            };
            return format!(
                "lost {} events, sequence {}..={} ({})",
                int(attr::GAP_EVENTS),
                int(attr::GAP_FIRST_SEQUENCE),
                int(attr::GAP_LAST_SEQUENCE),
                self.get_str(attr::GAP_REASON).unwrap_or("-")
            );
        }
        if self.kind == EventKind::Checkpoint {
            let int = |k| match self.get(k) {
                Some(Value::Int(i)) => *i,
                _ => -1,
            };
            return format!(
                "checkpoint through sequence {} ({} events)",
                int(attr::CHECKPOINT_LAST_SEQUENCE),
                int(attr::CHECKPOINT_EVENTS),
            );
        }
        if self.kind == EventKind::Tcp {
            let int = |k| match self.get(k) {
                Some(Value::Int(i)) => *i,
                _ => 0,
            };
            return format!(
                "TCP {} {} -> {} ({} bytes in, {} out)",
                self.get_str(attr::TCP_PHASE).unwrap_or("-"),
                self.get_str(attr::PEER_ADDRESS).unwrap_or("-"),
                self.get_str(attr::UPSTREAM_CLUSTER).unwrap_or("-"),
                int(attr::TCP_DOWNSTREAM_RECEIVED),
                int(attr::TCP_DOWNSTREAM_SENT),
            );
        }
        let mut s = String::with_capacity(64);
        self.http_summary(&mut s);
        s
    }

    /// [`AuditEvent::summary`] appended to `out`, without allocating for an HTTP event once
    /// `out` has grown (the chain builds it per event).
    pub fn summary_into(&self, out: &mut String) {
        match self.kind {
            EventKind::Gap | EventKind::Checkpoint | EventKind::Tcp => {
                out.push_str(&self.summary())
            }
            _ => self.http_summary(out),
        }
    }

    fn http_summary(&self, s: &mut String) {
        let method = self.get_str(attr::HTTP_METHOD).unwrap_or("-");
        let path = self.get_str(attr::URL_PATH).unwrap_or("-");
        s.push_str(method);
        s.push(' ');
        s.push_str(path);
        match self.get(attr::HTTP_STATUS) {
            Some(Value::Int(code)) => {
                use std::fmt::Write;
                let _ = write!(s, " {code}");
            }
            _ => s.push_str(" -"),
        }
    }
}

/// Attribute names. Semantic-convention names first, then ours.
pub mod attr {
    pub const LOG_RECORD_UID: &str = "log.record.uid";
    pub const HTTP_METHOD: &str = "http.request.method";
    pub const HTTP_STATUS: &str = "http.response.status_code";
    pub const HTTP_REQUEST_SIZE: &str = "http.request.size";
    pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
    pub const HTTP_RESPONSE_SIZE: &str = "http.response.size";
    pub const HTTP_RESPONSE_BODY_SIZE: &str = "http.response.body.size";
    pub const HTTP_REQUEST_HEADER: &str = "http.request.header.";
    pub const HTTP_RESPONSE_HEADER: &str = "http.response.header.";
    pub const URL_SCHEME: &str = "url.scheme";
    pub const URL_PATH: &str = "url.path";
    pub const URL_QUERY: &str = "url.query";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    /// The downstream peer (Envoy's `source.address`).
    pub const PEER_ADDRESS: &str = "network.peer.address";
    pub const PEER_PORT: &str = "network.peer.port";
    pub const LOCAL_ADDRESS: &str = "network.local.address";
    pub const LOCAL_PORT: &str = "network.local.port";
    pub const PROTOCOL_NAME: &str = "network.protocol.name";
    pub const PROTOCOL_VERSION: &str = "network.protocol.version";
    pub const USER_AGENT: &str = "user_agent.original";
    /// The gRPC status, by name (`OK`, `UNAVAILABLE`).
    pub const RPC_STATUS: &str = "rpc.response.status_code";
    pub const TLS_VERSION: &str = "tls.protocol.version";
    /// The SNI of an HTTP request's connection (`server.address` is its authority); a
    /// connection event has its SNI as `server.address`.
    pub const TLS_SNI: &str = "meshaudit.tls.server_name";

    pub const STREAM_ID: &str = "meshaudit.stream.id";
    pub const SEQUENCE: &str = "meshaudit.sequence";
    pub const REQUEST_ID: &str = "meshaudit.request.id";
    pub const DURATION_NS: &str = "meshaudit.duration_ns";
    pub const RESPONSE_FLAGS: &str = "meshaudit.envoy.response_flags";
    pub const RESPONSE_CODE_DETAILS: &str = "meshaudit.envoy.response_code_details";
    /// The end user: the `sub` of a token Envoy's jwt_authn verified (capture::enduser).
    pub const ENDUSER_ID: &str = "enduser.id";
    pub const ENDUSER_ISSUER: &str = "meshaudit.enduser.issuer";
    pub const ENDUSER_AUDIENCE: &str = "meshaudit.enduser.audience";
    /// The prefix of `identity.jwt_claims`' attributes.
    pub const ENDUSER_CLAIM: &str = "meshaudit.enduser.claim.";
    /// `allow` or `deny` (capture::decision).
    pub const DECISION: &str = "meshaudit.decision";
    /// Why it was denied: rbac, jwt, ext_authz, rate_limit, fail_closed, no_route, csrf, tls.
    pub const DECISION_REASON: &str = "meshaudit.decision.reason";
    /// The policy that denied it, where Envoy names one (RBAC).
    pub const DECISION_POLICY: &str = "meshaudit.decision.policy";
    pub const ROUTE_NAME: &str = "meshaudit.envoy.route_name";
    pub const UPSTREAM_CLUSTER: &str = "meshaudit.envoy.upstream_cluster";
    pub const LISTENER_DIRECTION: &str = "meshaudit.envoy.listener_direction";
    pub const UPSTREAM_ADDRESS: &str = "meshaudit.upstream.address";
    pub const MTLS: &str = "meshaudit.tls.mtls";
    pub const TLS_HANDSHAKE: &str = "meshaudit.tls.handshake";
    pub const ANOMALIES: &str = "meshaudit.capture.anomalies";
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    pub const CONNECTION_ID: &str = "meshaudit.connection.id";
    pub const TCP_PHASE: &str = "meshaudit.tcp.phase";
    pub const TCP_DOWNSTREAM_RECEIVED: &str = "meshaudit.tcp.downstream.received_bytes";
    pub const TCP_DOWNSTREAM_SENT: &str = "meshaudit.tcp.downstream.sent_bytes";
    pub const TCP_UPSTREAM_RECEIVED: &str = "meshaudit.tcp.upstream.received_bytes";
    pub const TCP_UPSTREAM_SENT: &str = "meshaudit.tcp.upstream.sent_bytes";
    pub const TCP_CLOSED_BY: &str = "meshaudit.tcp.closed_by";
    pub const TCP_INTERIM_EVENTS: &str = "meshaudit.tcp.interim_events";
    pub const TERMINATION_DETAILS: &str = "meshaudit.envoy.termination_details";
    pub const TRANSPORT_FAILURE: &str = "meshaudit.connection.transport_failure_reason";
    pub const UPSTREAM_FAILURE: &str = "meshaudit.upstream.transport_failure_reason";
    pub const GAP_FIRST_SEQUENCE: &str = "meshaudit.gap.first_sequence";
    pub const GAP_LAST_SEQUENCE: &str = "meshaudit.gap.last_sequence";
    pub const GAP_EVENTS: &str = "meshaudit.gap.events";
    pub const GAP_REASON: &str = "meshaudit.gap.reason";
    /// The chain value of the last lost event, when every sequence of the range was lost.
    pub const GAP_CHAIN_HEAD: &str = "meshaudit.gap.chain_head";
    /// Integrity (docs/integrity.md): every event's chain value, hex SHA-256.
    pub const CHAIN: &str = "meshaudit.chain";
    /// The stream's first event: when the stream started (ns) and the id of its signing key.
    pub const STREAM_START_TIME: &str = "meshaudit.stream.start_time";
    pub const INTEGRITY_KEY_ID: &str = "meshaudit.integrity.key_id";
    pub const CHECKPOINT_LAST_SEQUENCE: &str = "meshaudit.checkpoint.last_sequence";
    pub const CHECKPOINT_CHAIN_HEAD: &str = "meshaudit.checkpoint.chain_head";
    pub const CHECKPOINT_EVENTS: &str = "meshaudit.checkpoint.events";
    pub const CHECKPOINT_PREVIOUS_SIGNATURE: &str = "meshaudit.checkpoint.previous_signature";
    pub const CHECKPOINT_KEY_ID: &str = "meshaudit.checkpoint.key_id";
    pub const CHECKPOINT_SIGNATURE: &str = "meshaudit.checkpoint.signature";
    pub const REDACTION_RULES: &str = "meshaudit.redaction.rules";
    pub const REQUEST_BODY: &str = "meshaudit.request.body";
    pub const REQUEST_BODY_TYPE: &str = "meshaudit.request.body.type";
    pub const REQUEST_BODY_CAPTURE: &str = "meshaudit.request.body.capture";
    pub const RESPONSE_BODY: &str = "meshaudit.response.body";
    pub const RESPONSE_BODY_TYPE: &str = "meshaudit.response.body.type";
    pub const RESPONSE_BODY_CAPTURE: &str = "meshaudit.response.body.capture";
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn absent_values_add_nothing() {
        let mut e = AuditEvent::new(EventKind::Http);
        e.set_str(attr::URL_QUERY, None);
        e.set_int(attr::HTTP_STATUS, None);
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn summary_uses_method_path_status() {
        let mut e = AuditEvent::new(EventKind::Http);
        assert_eq!(e.summary(), "- - -");
        e.set_str(attr::HTTP_METHOD, Some("GET".into()));
        e.set_str(attr::URL_PATH, Some("/orders".into()));
        e.set_int(attr::HTTP_STATUS, Some(200));
        assert_eq!(e.summary(), "GET /orders 200");
        assert_eq!(e.get_str(attr::HTTP_METHOD), Some("GET"));
    }
}
