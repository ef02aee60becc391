//! Shared fixtures of the benchmarks: a recorded host, a typical request, the configurations.
//!
//! The event is built the way the filter builds it in `on_log`: connection facts read once
//! (`ConnectionFacts::read`), then `HttpCapture::build` over the request and response header
//! maps and the host's attributes.

// Each bench file uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;

use meshaudit::capture::connection::ConnectionFacts;
use meshaudit::capture::http::HttpCapture;
use meshaudit::capture::Host;
use meshaudit::event::{AuditEvent, Value};
use meshaudit::plugin::Plugin;
use meshaudit::redact::detectors::Detector;

/// A host whose attributes were recorded: `request.time` → bytes, as Envoy encodes them.
#[derive(Default)]
pub struct RecordedHost(HashMap<String, Vec<u8>>);

impl RecordedHost {
    fn with(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.0.insert(path.to_string(), value.into());
        self
    }

    fn with_int(self, path: &str, value: i64) -> Self {
        self.with(path, value.to_le_bytes().to_vec())
    }
}

impl Host for RecordedHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.get(&path.join(".")).cloned()
    }
}

/// The attributes Envoy has for a completed inbound mTLS request in an Istio sidecar.
pub fn host() -> RecordedHost {
    RecordedHost::default()
        .with_int("request.time", 1_700_000_000_123_456_789)
        .with_int("request.duration", 3_250_000)
        .with("request.protocol", "HTTP/1.1")
        .with_int("response.code", 200)
        .with("response.code_details", "via_upstream")
        .with_int("request.total_size", 1_180)
        .with_int("request.size", 0)
        .with_int("response.size", 2_048)
        .with_int("response.total_size", 2_310)
        .with("upstream.address", "127.0.0.6:8080")
        .with("xds.cluster_name", "inbound|8080||")
        .with("xds.route_name", "default")
        .with("source.address", "10.44.3.17:51234")
        .with("destination.address", "10.44.1.9:8080")
        .with_int("xds.listener_direction", 1)
        .with("connection.tls_version", "TLSv1.3")
        .with(
            "connection.requested_server_name",
            "outbound_.8080_._.orders.shop.svc.cluster.local",
        )
        .with("connection.mtls", vec![1u8])
        .with("connection.subject_peer_certificate", "O=cluster.local")
        .with(
            "connection.sha256_peer_certificate_digest",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        )
        .with(
            "connection.uri_san_peer_certificate",
            "spiffe://cluster.local/ns/shop/sa/frontend",
        )
        .with(
            "connection.uri_san_local_certificate",
            "spiffe://cluster.local/ns/shop/sa/orders",
        )
}

/// The request headers of a typical browser-originated API call through an ingress: 19 pairs,
/// about 1.2 KB, with a bearer JWT, a cookie of five pairs and a query of four parameters.
pub const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (
        ":path",
        "/api/v1/orders/81723/items?page=2&limit=50&sort=-created_at&fields=id,total,status",
    ),
    (":authority", "orders.shop.example.com"),
    (":scheme", "https"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    (
        "authorization",
        "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Im9yZGVycy0yMDI2In0.\
         eyJzdWIiOiJ1c2VyLTQ4MjEiLCJzY29wZSI6Im9yZGVyczpyZWFkIiwiZXhwIjoxNzAwMDAzNjAwfQ.\
         c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1ub3QtYS1yZWFsLW9uZQ",
    ),
    (
        "cookie",
        "session=3f2a9c7e41b84d0f9a6e2b1c; csrftoken=Yk8pQ2vX7mN4rT6w; \
         _ga=GA1.2.1234567890.1700000000; theme=dark; lang=en-US",
    ),
    (
        "x-forwarded-for",
        "203.0.113.195, 70.41.3.18, 150.172.238.178",
    ),
    ("x-forwarded-proto", "https"),
    ("x-request-id", "6f1c2b9a-8d4e-4f3a-b2c1-0e9d8c7b6a5f"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("content-type", "application/json"),
    (
        "referer",
        "https://shop.example.com/account/orders?tab=open",
    ),
    ("origin", "https://shop.example.com"),
    ("cache-control", "no-cache"),
    ("x-envoy-attempt-count", "1"),
];

pub const RESPONSE: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "application/json; charset=utf-8"),
    ("content-length", "2048"),
    ("cache-control", "private, max-age=0"),
    ("x-envoy-upstream-service-time", "3"),
];

/// The configuration of the benchmarks before redaction settings: the typical headers are
/// allowlisted, so that the event carries about 1 KB of text.
const HEADERS: &str = r#""request_headers": ["content-type", "x-forwarded-proto", "accept",
  "accept-language", "accept-encoding", "authorization", "cookie", "x-forwarded-for",
  "referer", "origin", "cache-control", "x-envoy-attempt-count"],
  "response_headers": ["content-type", "content-length", "cache-control"]"#;

/// 20 custom detectors of the kind users write: vendor token formats and internal ids.
pub const CUSTOM_DETECTORS: [&str; 20] = [
    r"msk_(live|test)_[A-Za-z0-9]{24}",
    r"EMP-[0-9]{6}",
    r"ghp_[A-Za-z0-9]{36}",
    r"gho_[A-Za-z0-9]{36}",
    r"xox[baprs]-[A-Za-z0-9-]{10,48}",
    r"sk_live_[0-9a-zA-Z]{24,99}",
    r"rk_live_[0-9a-zA-Z]{24,99}",
    r"AIza[0-9A-Za-z_-]{35}",
    r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    r"glpat-[A-Za-z0-9_-]{20}",
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    r"shpat_[a-fA-F0-9]{32}",
    r"sq0atp-[0-9A-Za-z_-]{22}",
    r"\bCUST-[0-9]{8}\b",
    r"\bACCT[0-9]{10}\b",
    r"(?i)\bpassport[:= ]+[A-Z0-9]{9}\b",
    r"\b[A-Z]{2}[0-9]{6}[A-D]\b",
    r"hooks\.slack\.com/services/T[A-Z0-9]{8}/B[A-Z0-9]{8}/[A-Za-z0-9]{24}",
    r"(?i)x-internal-secret[:=][A-Za-z0-9]{16,}",
];

/// The plugin configuration of one benchmark case, as JSON text.
pub fn config_json(case: Case) -> String {
    let redaction = match case {
        Case::Default => String::new(),
        Case::Custom20 => {
            let detectors: Vec<String> = CUSTOM_DETECTORS
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    format!(
                        r#"{{"name": "custom-{i}", "pattern": {}}}"#,
                        serde_json::Value::String((*p).to_string())
                    )
                })
                .collect();
            format!(
                r#", "redaction": {{"custom_detectors": [{}]}}"#,
                detectors.join(", ")
            )
        }
        Case::Off => {
            let off: Vec<String> = Detector::ALL
                .iter()
                .map(|d| format!(r#""{}": false"#, d.name()))
                .collect();
            format!(
                r#", "redaction": {{"defaults": false, "detectors": {{{}}}}}"#,
                off.join(", ")
            )
        }
    };
    format!("{{{HEADERS}{redaction}}}")
}

/// The three redaction configurations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Built-in `default` rule and every built-in detector.
    Default,
    /// The defaults plus [`CUSTOM_DETECTORS`].
    Custom20,
    /// `defaults: false` and every detector off: the floor (walking the attributes).
    Off,
}

impl Case {
    pub const ALL: [Case; 3] = [Case::Default, Case::Custom20, Case::Off];

    pub fn name(self) -> &'static str {
        match self {
            Case::Default => "default",
            Case::Custom20 => "default+20_custom",
            Case::Off => "off",
        }
    }
}

/// Loads a case's configuration as `on_configure` does. `None` if it does not load (a bug in
/// this fixture: the benchmarks then report it and stop).
pub fn load(case: Case) -> Option<Plugin> {
    // The hash key only: any other variable (the checkpoint signing key) is unset.
    let key = |name: &str| (name == "MESHAUDIT_HASH_KEY").then(|| b"0123456789abcdef0123".to_vec());
    match Plugin::load(config_json(case).as_bytes(), key) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("benchmark configuration {:?} refused: {e}", case.name());
            None
        }
    }
}

/// Header pairs as the host hands them over.
pub fn pairs(h: &'static [(&'static str, &'static str)]) -> Vec<(&'static [u8], &'static [u8])> {
    h.iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect()
}

/// The typical event, unredacted, built as the filter builds it.
pub fn event(loaded: &Plugin) -> AuditEvent {
    let host = host();
    let conn = ConnectionFacts::read(&host);
    let capture = HttpCapture::new(&loaded.config);
    capture.build(&host, &conn, &pairs(REQUEST), &pairs(RESPONSE), || 0)
}

/// `n` typical events as a stream of requests brings them: the values one request has and the
/// next does not (the order id in the path, the query's page, the session cookie, the token's
/// signature, the client address, the referring page, the request id) differ from event to event; the values
/// a client sends every time (`accept`, `user-agent`, `content-type`…) repeat.
pub fn events(loaded: &Plugin, n: usize) -> Vec<AuditEvent> {
    let host = host();
    let conn = ConnectionFacts::read(&host);
    let capture = HttpCapture::new(&loaded.config);
    let response = pairs(RESPONSE);
    (0..n)
        .map(|i| {
            let request: Vec<(String, String)> = REQUEST
                .iter()
                .map(|&(k, v)| (k.to_string(), vary(k, v, i)))
                .collect();
            let request: Vec<(&[u8], &[u8])> = request
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            capture.build(&host, &conn, &request, &response, || 0)
        })
        .collect()
}

/// Request `i`'s value of header `name` (typical value `v`).
fn vary(name: &str, v: &str, i: usize) -> String {
    match name {
        ":path" => v.replacen("81723", &(81723 + i).to_string(), 1).replacen(
            "page=2",
            &format!("page={}", i % 7 + 1),
            1,
        ),
        "authorization" => format!("{v}{i:04}"),
        "cookie" => v
            .replacen("3f2a9c7e41b84d0f", &format!("3f2a9c7e41b8{i:04x}"), 1)
            .replacen("Yk8pQ2vX", &format!("Yk8p{i:04}"), 1),
        "x-forwarded-for" => v.replacen("203.0.113.195", &format!("203.0.113.{}", i % 250), 1),
        "referer" => format!("{v}&page={i}"),
        "x-request-id" => format!("{}{i:04x}", v.get(..32).unwrap_or(v)),
        _ => v.to_string(),
    }
}

/// Bytes of text in the event's string values: what redaction walks and scans.
pub fn text_bytes(e: &AuditEvent) -> u64 {
    let n: usize = e
        .attributes
        .iter()
        .map(|a| match &a.value {
            Value::Str(s) => s.len(),
            Value::StrList(l) => l.iter().map(String::len).sum(),
            _ => 0,
        })
        .sum();
    n as u64
}

/// The string values the redactor scans with detectors (every string value except those it
/// never scans: identities, addresses, ids it generates), for timing `detectors::scan` alone.
pub fn scanned_texts(e: &AuditEvent) -> Vec<String> {
    let mut out = Vec::new();
    for a in &e.attributes {
        if !meshaudit::redact::is_scanned(&a.key) {
            continue;
        }
        match &a.value {
            Value::Str(s) => out.push(s.clone()),
            Value::StrList(l) => out.extend(l.iter().cloned()),
            _ => {}
        }
    }
    out
}
