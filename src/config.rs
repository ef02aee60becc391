//! Plugin configuration: the JSON document given as Envoy's `configuration` string or rendered by
//! Istio from a `WasmPlugin`'s `pluginConfig`.
//!
//! Every field has a default. Parsing is strict: an unknown field, a wrong type or an impossible
//! value is an error that names the field, so Envoy refuses the filter instead of running it
//! half-configured. Istio renders every number as a double, so integers are accepted as `100.0`.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// The validated plugin configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where batches go.
    pub collector: Collector,
    /// How events are encoded on the wire.
    pub format: Format,
    /// A batch is sealed once it holds this many events.
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_batch_events: u32,
    /// A batch is sealed before it would grow past this many encoded bytes.
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1024)))]
    pub max_batch_bytes: u32,
    /// An open batch is sent at the latest this long after its first event.
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 10)))]
    pub flush_interval_ms: u32,
    /// Upper bound on encoded events held by one worker (open, sealed and in-flight batches).
    #[serde(deserialize_with = "integer")]
    pub max_buffer_bytes: u32,
    /// Request headers copied into events as `http.request.header.<name>`.
    #[serde(deserialize_with = "header_names")]
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = r"^[A-Za-z0-9_.:-]+$")))
    )]
    pub request_headers: Vec<String>,
    /// Response headers copied into events as `http.response.header.<name>`.
    #[serde(deserialize_with = "header_names")]
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = r"^[A-Za-z0-9_.:-]+$")))
    )]
    pub response_headers: Vec<String>,
    /// Which filter this configuration is for: detected from the host, or stated.
    pub mode: Mode,
    /// Network filter: an interim event every this many ms for a connection still open
    /// (0: off).
    #[serde(deserialize_with = "integer")]
    pub interim_interval_ms: u32,
    /// Network filter: an event as soon as a connection opens, as well as when it closes.
    pub emit_on_open: bool,
    /// OTLP over HTTP (`/v1/logs`) or over gRPC (`LogsService/Export`, HTTP/2 cluster).
    pub protocol: Protocol,
    /// Which events go when the buffer is full.
    pub overflow: Overflow,
    /// Where an event that would be dropped goes instead.
    pub fallback: Fallback,
    /// Backoff between attempts of a failed export.
    pub retry: Retry,
    /// On shutdown or reconfiguration, how long the old configuration may take to send what it
    /// holds.
    #[serde(deserialize_with = "integer")]
    pub drain_timeout_ms: u32,
    /// Per-route delivery settings (fail-closed).
    pub routes: Vec<RouteRule>,
    /// What is redacted before an event leaves the proxy.
    pub redaction: Redaction,
    /// Routes whose request and response bodies are captured (none by default).
    pub body_capture: Vec<BodyCapture>,
    /// Most bytes the bodies being captured may hold at once on one worker, across all its
    /// requests; a body the budget cannot cover is skipped or cut with a marker.
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 268_435_456)))]
    pub body_capture_budget_bytes: u32,
    /// The chain, signed checkpoints and the witness (docs/integrity.md).
    pub integrity: Integrity,
    /// Who is behind a request beyond its certificate: the end user of a verified token.
    pub identity: Identity,
    /// How much of each request is recorded: ordered rules, first match wins (none matching:
    /// `metadata`, today's event).
    pub audit: Vec<AuditRule>,
}

/// One rule of the audit policy (docs/configuration.md#audit-levels-audit).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditRule {
    /// What the rule applies to; empty: every request.
    #[serde(default, rename = "match")]
    pub when: AuditMatch,
    /// How much of a matching request is recorded.
    pub level: AuditLevel,
    /// With `request` or `request_response`: bytes kept per body (as `body_capture`).
    #[serde(default = "default_body_bytes", deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_048_576)))]
    pub max_bytes: u32,
}

/// What an audit rule matches: the request line, the caller, the response's class.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditMatch {
    /// Exact host (`:authority` without port), or `*.example.com`.
    pub host: Option<String>,
    /// Exact path (without the query), e.g. `/healthz`.
    pub path: Option<String>,
    /// Path prefix, e.g. `/admin/`.
    pub path_prefix: Option<String>,
    /// Path pattern, e.g. `/users/{id}/cards/*`.
    pub path_pattern: Option<String>,
    /// HTTP method, e.g. `POST`.
    pub method: Option<String>,
    /// The caller: its SPIFFE id, exact or ending in `*` (a prefix), or `"unauthenticated"`
    /// (no verified client certificate).
    pub caller: Option<String>,
    /// The response's class, `"1xx"` to `"5xx"` (only with level `none`).
    pub response: Option<String>,
}

/// Kubernetes' audit levels, per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    /// No event (counted in `meshaudit.events_unaudited`, never a loss).
    None,
    /// The event as it is without bodies (and with what `body_capture` captures).
    Metadata,
    /// Also the request body.
    Request,
    /// Also both bodies.
    RequestResponse,
}

/// Identity settings (docs/event-schema.md#the-end-user).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    /// Record the end user of a token Envoy's `jwt_authn` filter verified (its payload in
    /// dynamic metadata, `payload_in_metadata`): `enduser.id` (`sub`), issuer, audience. Off by
    /// default: testing each request's metadata for a payload is not free (docs/performance.md).
    pub jwt: bool,
    /// Claims of that token also recorded, as `meshaudit.enduser.claim.NAME`.
    #[cfg_attr(
        feature = "schema",
        schemars(length(max = 16), inner(regex(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")))
    )]
    pub jwt_claims: Vec<String>,
}

/// Most claims `identity.jwt_claims` may name.
pub const MAX_JWT_CLAIMS: usize = 16;

impl Identity {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| {
            Err(ConfigError {
                field: "identity.jwt_claims".into(),
                reason,
            })
        };
        if self.jwt_claims.len() > MAX_JWT_CLAIMS {
            return fail(format!("names at most {MAX_JWT_CLAIMS} claims"));
        }
        if !self.jwt && !self.jwt_claims.is_empty() {
            return fail("needs identity.jwt, which is false".into());
        }
        let bad = self.jwt_claims.iter().position(|c| {
            c.is_empty()
                || c.len() > 64
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        });
        if let Some(i) = bad {
            return fail(format!(
                "claim {i}: 1 to 64 letters, digits and _ . : - (a claim's name, not its value)"
            ));
        }
        Ok(())
    }
}

/// Integrity settings: every event chained, checkpoints signed with a key from the environment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Integrity {
    /// Events carry `meshaudit.chain`, and checkpoints are emitted.
    pub enabled: bool,
    /// Environment variable that holds the Ed25519 signing key (never the configuration).
    pub signing_key_env: String,
    /// A checkpoint at most this often while events are chained (and always at drain).
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1000, max = 86_400_000)))]
    pub checkpoint_interval_ms: u32,
    /// A second copy of every checkpoint.
    pub witness: Witness,
}

/// Smallest and largest `integrity.checkpoint_interval_ms`.
pub const CHECKPOINT_INTERVAL_MS: std::ops::RangeInclusive<u32> = 1000..=86_400_000;

impl Default for Integrity {
    fn default() -> Self {
        Integrity {
            enabled: true,
            signing_key_env: "MESHAUDIT_SIGNING_KEY".into(),
            checkpoint_interval_ms: 60_000,
            witness: Witness::None,
        }
    }
}

/// Where checkpoints are also written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Witness {
    /// Nowhere else.
    None,
    /// Envoy's log, one line each: `meshaudit-checkpoint {json}`.
    Log,
}

/// Largest `body_capture_budget_bytes`.
pub const MAX_BODY_CAPTURE_BUDGET: u32 = 256 << 20;

/// How the filter is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Told apart by the host: a context with an HTTP request is HTTP, else a connection.
    Auto,
    /// An HTTP filter (`envoy.filters.http.wasm`).
    Http,
    /// A network filter (`envoy.filters.network.wasm`, Istio `type: NETWORK`).
    Tcp,
    /// An access logger (`envoy.access_loggers.wasm` under an HTTP connection manager): one
    /// event per finished request without a context per request, the cheapest way to audit
    /// HTTP. It sees a request only once it is over: no bodies, nothing to refuse.
    #[serde(rename = "access_log")]
    AccessLog,
}

impl Mode {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::AccessLog => "access_log",
        }
    }
}

/// Export protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
}

/// Overflow policy of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// New events are refused while the buffer is full.
    DropNewest,
    /// The oldest waiting batch is dropped to make room.
    DropOldest,
}

/// Where events go that the buffer cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// They are dropped (and counted, and reported by a gap event).
    None,
    /// They are written to Envoy's log as one JSON line each, behind a fixed prefix.
    Log,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub initial_backoff_ms: u32,
    #[serde(deserialize_with = "integer")]
    pub max_backoff_ms: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

/// Delivery settings for the routes a rule matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    #[serde(default, rename = "match")]
    pub route: RouteMatch,
    /// While the buffer is full, requests on this route get a 503 instead of passing unaudited.
    #[serde(default)]
    pub fail_closed: bool,
}

/// Redaction settings. Rules are compiled (and checked) by `redact::Redactor::compile`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Redaction {
    /// The built-in credential rules (headers, cookies, query parameters, body fields).
    pub defaults: bool,
    /// Environment variable that holds the key of the `hash` action.
    pub hash_key_env: String,
    /// Built-in detectors by name: `false` turns one off, an action changes what it does.
    pub detectors: std::collections::BTreeMap<String, DetectorSetting>,
    /// Regex detectors run over all captured text, like the built-in ones.
    pub custom_detectors: Vec<CustomDetector>,
    /// Field rules, optionally scoped to routes.
    pub rules: Vec<Rule>,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            defaults: true,
            hash_key_env: "MESHAUDIT_HASH_KEY".into(),
            detectors: Default::default(),
            custom_detectors: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// How a built-in detector is set: on/off, or the action it applies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum DetectorSetting {
    Enabled(bool),
    Action(ActionSpec),
}

/// What a rule does to a value it matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub action: ActionKind,
    /// `partial`: characters kept at the end (default 4); `truncate`: kept at the start
    /// (default 8).
    #[serde(default, deserialize_with = "optional_integer")]
    #[cfg_attr(feature = "schema", schemars(with = "u32"))]
    pub keep: Option<u32>,
}

/// The redaction actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// The field is gone.
    Remove,
    /// The value is replaced by `[REDACTED]`.
    Mask,
    /// Only the last `keep` characters remain: `****1111`.
    Partial,
    /// Keyed HMAC-SHA256: the same value always gives the same token.
    Hash,
    /// Only the first `keep` characters remain.
    Truncate,
}

/// A user-defined regex detector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    pub name: String,
    pub pattern: String,
    /// Defaults to `mask`.
    #[serde(default)]
    pub action: Option<ActionKind>,
    #[serde(default, deserialize_with = "optional_integer")]
    #[cfg_attr(feature = "schema", schemars(with = "u32"))]
    pub keep: Option<u32>,
}

/// A field rule: which fields, on which routes, and what to do with them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub route: RouteMatch,
    /// Header names (request and response).
    #[serde(default, deserialize_with = "header_names")]
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = r"^[A-Za-z0-9_.:-]+$")))
    )]
    pub headers: Vec<String>,
    /// Query parameter names.
    #[serde(default)]
    pub query: Vec<String>,
    /// Cookie names (in `cookie` and `set-cookie`).
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Path patterns such as `/users/{id}`: the `{...}` segments are redacted.
    #[serde(default)]
    pub path: Vec<String>,
    /// JSON body paths: `$.password`, `$.card.number`, `$..ssn`, `$.items[*].token`.
    #[serde(default)]
    pub json: Vec<String>,
    /// Form body field names (`application/x-www-form-urlencoded`).
    #[serde(default)]
    pub form: Vec<String>,
    /// Defaults to `mask`.
    #[serde(default)]
    pub action: Option<ActionKind>,
    #[serde(default, deserialize_with = "optional_integer")]
    #[cfg_attr(feature = "schema", schemars(with = "u32"))]
    pub keep: Option<u32>,
}

/// Which requests a rule or body capture applies to; an empty match is every request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact host (`:authority` without port), or `*.example.com`.
    pub host: Option<String>,
    /// Path prefix, e.g. `/api/`.
    pub path_prefix: Option<String>,
    /// Path pattern, e.g. `/users/{id}/cards/*`.
    pub path_pattern: Option<String>,
    /// HTTP method, e.g. `POST`.
    pub method: Option<String>,
}

/// Body capture for the routes it matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BodyCapture {
    #[serde(default, rename = "match")]
    pub route: RouteMatch,
    /// Bytes kept per body; longer bodies are truncated in the event (never refused).
    #[serde(default = "default_body_bytes", deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1_048_576)))]
    pub max_bytes: u32,
    /// Media types captured; others are skipped with a marker.
    #[serde(default = "default_body_types")]
    pub content_types: Vec<String>,
    #[serde(default = "yes")]
    pub request: bool,
    #[serde(default = "yes")]
    pub response: bool,
}

impl BodyCapture {
    /// The body capture an audit level of `request` or `request_response` asks for, on a route
    /// without a `body_capture` entry: the default media types, no side yet.
    pub fn for_audit(max_bytes: u32) -> BodyCapture {
        BodyCapture {
            route: RouteMatch::default(),
            max_bytes,
            content_types: default_body_types(),
            request: false,
            response: false,
        }
    }
}

fn default_body_bytes() -> u32 {
    1024
}

fn default_body_types() -> Vec<String> {
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
    ]
    .map(String::from)
    .to_vec()
}

fn yes() -> bool {
    true
}

/// The Envoy cluster that leads to the collector, and how to address it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Collector {
    /// Envoy cluster name (in Istio: `outbound|4318||HOST`).
    pub cluster: String,
    /// `:authority` of the export request; the cluster name when empty.
    pub authority: String,
    /// Request path of the export request.
    pub path: String,
    /// How long one export may take before it counts as failed.
    #[serde(deserialize_with = "integer")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub timeout_ms: u32,
    /// Headers sent with every export: header name → the environment variable holding its
    /// value (a bearer token, an API key), read once at load; never the value itself.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Wire encoding of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OTLP `ExportLogsServiceRequest`, protobuf, for OTLP/HTTP receivers.
    Otlp,
    /// One JSON object per line (`application/x-ndjson`).
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collector: Collector::default(),
            format: Format::Otlp,
            max_batch_events: 500,
            max_batch_bytes: 1 << 20,
            flush_interval_ms: 1000,
            max_buffer_bytes: 8 << 20,
            mode: Mode::Auto,
            interim_interval_ms: 0,
            emit_on_open: false,
            protocol: Protocol::Http,
            overflow: Overflow::DropNewest,
            fallback: Fallback::None,
            retry: Retry::default(),
            drain_timeout_ms: 5000,
            routes: Vec::new(),
            request_headers: vec!["content-type".into(), "x-forwarded-proto".into()],
            response_headers: vec!["content-type".into()],
            redaction: Redaction::default(),
            body_capture: Vec::new(),
            body_capture_budget_bytes: 16 << 20,
            integrity: Integrity::default(),
            identity: Identity::default(),
            audit: Vec::new(),
        }
    }
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            cluster: "meshaudit_collector".into(),
            authority: String::new(),
            path: "/v1/logs".into(),
            timeout_ms: 5000,
            headers: std::collections::BTreeMap::new(),
        }
    }
}

impl Collector {
    /// The `:authority` to send: the configured one, else the cluster name.
    pub fn authority(&self) -> &str {
        if self.authority.is_empty() {
            &self.cluster
        } else {
            &self.authority
        }
    }
}

/// A configuration error: the field at fault (a dotted path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `collector.timeout_ms`; empty for the document itself.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a configuration. Empty input (or only whitespace) gives the defaults.
    pub fn parse(input: &[u8]) -> Result<Config, ConfigError> {
        if input.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::default());
        }
        if input.trim_ascii_start().first() != Some(&b'{') {
            return Err(ConfigError {
                field: String::new(),
                reason: "the configuration must be a JSON object".into(),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(input);
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let reason = strip_position(&e.inner().to_string());
            ConfigError {
                field: if field == "." { String::new() } else { field },
                reason,
            }
        })?;
        de.end().map_err(|e| ConfigError {
            field: String::new(),
            reason: strip_position(&e.to_string()),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, reason: &str| {
            Err(ConfigError {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if self.collector.cluster.is_empty() {
            return fail("collector.cluster", "must name an Envoy cluster");
        }
        if !self.collector.path.starts_with('/') {
            return fail("collector.path", "must start with '/'");
        }
        if self.collector.timeout_ms == 0 {
            return fail("collector.timeout_ms", "must be at least 1");
        }
        if self.max_batch_events == 0 {
            return fail("max_batch_events", "must be at least 1");
        }
        if self.max_batch_bytes < 1024 {
            return fail("max_batch_bytes", "must be at least 1024");
        }
        if self.flush_interval_ms < 10 {
            return fail("flush_interval_ms", "must be at least 10");
        }
        if self.max_buffer_bytes < self.max_batch_bytes {
            return fail("max_buffer_bytes", "must be at least max_batch_bytes");
        }
        if let Some(field) = self.http_only_field().filter(|_| self.mode == Mode::Tcp) {
            return fail(field, "is HTTP-only, and mode is \"tcp\" (a network filter audits connections, not requests)");
        }
        if let Some(field) = self
            .filter_only_field()
            .filter(|_| self.mode == Mode::AccessLog)
        {
            return fail(field, "needs the HTTP filter, and mode is \"access_log\" (an access logger sees a request only once it is over: no body, nothing to refuse)");
        }
        if matches!(self.mode, Mode::Http | Mode::AccessLog)
            && (self.interim_interval_ms > 0 || self.emit_on_open)
        {
            let field = if self.emit_on_open {
                "emit_on_open"
            } else {
                "interim_interval_ms"
            };
            return fail(
                field,
                &format!(
                    "applies to network filters, and mode is \"{}\"",
                    self.mode.name()
                ),
            );
        }
        if self.interim_interval_ms > 0 && self.interim_interval_ms < 1000 {
            return fail("interim_interval_ms", "must be 0 (off) or at least 1000");
        }
        if self.protocol == Protocol::Grpc && self.format != Format::Otlp {
            return fail(
                "protocol",
                "\"grpc\" carries OTLP only; set format to \"otlp\"",
            );
        }
        if self.retry.initial_backoff_ms == 0 {
            return fail("retry.initial_backoff_ms", "must be at least 1");
        }
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            return fail(
                "retry.max_backoff_ms",
                "must be at least retry.initial_backoff_ms",
            );
        }
        for (i, b) in self.body_capture.iter().enumerate() {
            if b.max_bytes == 0 || b.max_bytes > 1 << 20 {
                return fail(
                    &format!("body_capture[{i}].max_bytes"),
                    "must be 1 to 1048576",
                );
            }
        }
        if self.body_capture_budget_bytes == 0
            || self.body_capture_budget_bytes > MAX_BODY_CAPTURE_BUDGET
        {
            return fail("body_capture_budget_bytes", "must be 1 to 268435456");
        }
        self.integrity.validate()?;
        self.identity.validate()?;
        // One body must fit: its `max_bytes` and the margin captured beyond it.
        let margin = u32::try_from(crate::redact::cut::BODY_MARGIN).unwrap_or(u32::MAX);
        if let Some(b) = self
            .body_capture
            .iter()
            .find(|b| b.max_bytes.saturating_add(margin) > self.body_capture_budget_bytes)
        {
            return fail(
                "body_capture_budget_bytes",
                &format!(
                    "must be at least the largest body_capture[].max_bytes plus {margin} ({})",
                    b.max_bytes.saturating_add(margin)
                ),
            );
        }
        Ok(())
    }
}

impl Integrity {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, reason: String| {
            Err(ConfigError {
                field: format!("integrity.{field}"),
                reason,
            })
        };
        if !CHECKPOINT_INTERVAL_MS.contains(&self.checkpoint_interval_ms) {
            return fail(
                "checkpoint_interval_ms",
                format!(
                    "must be {} to {} (1 s to 1 day)",
                    CHECKPOINT_INTERVAL_MS.start(),
                    CHECKPOINT_INTERVAL_MS.end()
                ),
            );
        }
        if self.signing_key_env.is_empty() {
            return fail(
                "signing_key_env",
                "must name an environment variable".into(),
            );
        }
        if !self.enabled && self.witness != Witness::None {
            return fail(
                "witness",
                "writes checkpoints, and integrity.enabled is false".into(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The first setting that only means something for HTTP requests, if any is set.
    pub fn http_only_field(&self) -> Option<&'static str> {
        let defaults = Config::default();
        if !self.body_capture.is_empty() {
            return Some("body_capture");
        }
        if self.body_capture_budget_bytes != defaults.body_capture_budget_bytes {
            return Some("body_capture_budget_bytes");
        }
        if !self.routes.is_empty() {
            return Some("routes");
        }
        if self.request_headers != defaults.request_headers {
            return Some("request_headers");
        }
        if self.response_headers != defaults.response_headers {
            return Some("response_headers");
        }
        if !self.redaction.rules.is_empty() {
            return Some("redaction.rules");
        }
        if self.identity.jwt {
            return Some("identity.jwt");
        }
        if !self.identity.jwt_claims.is_empty() {
            return Some("identity.jwt_claims");
        }
        if !self.audit.is_empty() {
            return Some("audit");
        }
        None
    }

    /// The first setting only the HTTP filter can honour (not an access logger), if any is set.
    pub fn filter_only_field(&self) -> Option<&'static str> {
        if !self.body_capture.is_empty() {
            return Some("body_capture");
        }
        if self.body_capture_budget_bytes != Config::default().body_capture_budget_bytes {
            return Some("body_capture_budget_bytes");
        }
        if self.routes.iter().any(|r| r.fail_closed) {
            return Some("routes");
        }
        if self.audit.iter().any(|r| r.level >= AuditLevel::Request) {
            return Some("audit");
        }
        None
    }
}

/// The JSON Schema of the plugin configuration (docs/plugin-config.schema.json), derived from
/// these types: `meshaudit schema` prints it.
#[cfg(feature = "schema")]
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(Config);
    schema.insert("title".into(), "meshaudit plugin configuration".into());
    let mut value = serde_json::Value::from(schema);
    drop_null_defaults(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `"default": null` of the optional integers (`keep`): absent is the default, null is refused.
#[cfg(feature = "schema")]
fn drop_null_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("default").is_some_and(serde_json::Value::is_null) {
                m.remove("default");
            }
            m.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

/// serde_json appends " at line 1 column 20"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

/// Accepts a non-negative integer written as `100` or as `100.0` (Istio renders numbers as doubles).
fn integer<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(de)?;
    if let Some(v) = n.as_u64() {
        return u32::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large")));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX) => {
            // The range and fraction checks above make this conversion exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u32)
        }
        _ => Err(D::Error::custom(format!(
            "expected a non-negative whole number, got {n}"
        ))),
    }
}

fn optional_integer<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    integer(de).map(Some)
}

/// Header names are matched case-insensitively, so they are stored lower-case.
fn header_names<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    let names = Vec::<String>::deserialize(de)?;
    names
        .into_iter()
        .map(|n| {
            let valid = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if valid {
                Ok(n.to_ascii_lowercase())
            } else {
                Err(D::Error::custom(format!("{n:?} is not a header name")))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(Config::parse(b"").unwrap(), Config::default());
        assert_eq!(Config::parse(b"{}").unwrap(), Config::default());
        assert_eq!(
            Config::default().collector.authority(),
            "meshaudit_collector"
        );
    }

    #[test]
    fn accepts_doubles_for_integers() {
        let c =
            Config::parse(br#"{"max_batch_events": 100.0, "collector": {"timeout_ms": 250.0}}"#)
                .unwrap();
        assert_eq!(c.max_batch_events, 100);
        assert_eq!(c.collector.timeout_ms, 250);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Config::parse(br#"{"max_batch_event": 5}"#).unwrap_err();
        assert!(e.to_string().contains("max_batch_event"), "{e}");
        let e = Config::parse(br#"{"collector": {"clustr": "x"}}"#).unwrap_err();
        assert!(e.to_string().starts_with("collector"), "{e}");
        assert!(e.to_string().contains("clustr"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::parse(br#"{"max_batch_events": "lots"}"#).unwrap_err();
        assert_eq!(e.field, "max_batch_events");
        let e = Config::parse(br#"{"max_batch_events": 2.5}"#).unwrap_err();
        assert_eq!(e.field, "max_batch_events");
        let e = Config::parse(br#"{"format": "xml"}"#).unwrap_err();
        assert_eq!(e.field, "format");
        let e = Config::parse(br#"{"request_headers": ["ok", "bad header"]}"#).unwrap_err();
        assert!(e.field.starts_with("request_headers"), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        for (doc, field) in [
            (r#"{"max_batch_events": 0}"#, "max_batch_events"),
            (r#"{"flush_interval_ms": 1}"#, "flush_interval_ms"),
            (r#"{"collector": {"cluster": ""}}"#, "collector.cluster"),
            (r#"{"collector": {"path": "v1/logs"}}"#, "collector.path"),
            (r#"{"max_buffer_bytes": 2048}"#, "max_buffer_bytes"),
            (r#"{"max_batch_events": -1}"#, "max_batch_events"),
            (r#"{"max_batch_events": 1e20}"#, "max_batch_events"),
        ] {
            assert_eq!(
                Config::parse(doc.as_bytes()).unwrap_err().field,
                field,
                "{doc}"
            );
        }
    }

    #[test]
    fn tcp_mode_refuses_http_only_settings() {
        let e = Config::parse(br#"{"mode": "tcp", "body_capture": [{}]}"#).unwrap_err();
        assert_eq!(e.field, "body_capture");
        assert!(e.reason.contains("HTTP-only"), "{e}");
        let e = Config::parse(br#"{"mode": "tcp", "request_headers": ["x-a"]}"#).unwrap_err();
        assert_eq!(e.field, "request_headers");
        let e = Config::parse(br#"{"mode": "http", "emit_on_open": true}"#).unwrap_err();
        assert_eq!(e.field, "emit_on_open");
        let e = Config::parse(br#"{"interim_interval_ms": 5}"#).unwrap_err();
        assert_eq!(e.field, "interim_interval_ms");
        let ok = Config::parse(
            br#"{"mode": "tcp", "interim_interval_ms": 60000.0, "emit_on_open": true}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.mode, ok.interim_interval_ms, ok.emit_on_open),
            (Mode::Tcp, 60000, true)
        );
        assert_eq!(Config::default().http_only_field(), None);
    }

    #[test]
    fn access_log_mode_refuses_what_only_the_http_filter_can_do() {
        let body = br#"{"mode": "access_log", "body_capture": [{"match": {"path_prefix": "/v1"}, "max_bytes": 1024}]}"#;
        let e = Config::parse(body).unwrap_err();
        assert_eq!(e.field, "body_capture");
        assert!(e.reason.contains("access logger"), "{e}");
        let e = Config::parse(
            br#"{"mode": "access_log", "routes": [{"match": {"path_prefix": "/pay"}, "fail_closed": true}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "routes");
        let e =
            Config::parse(br#"{"mode": "access_log", "interim_interval_ms": 60000}"#).unwrap_err();
        assert_eq!(e.field, "interim_interval_ms");
        assert!(e.reason.contains("\"access_log\""), "{e}");
        let ok = Config::parse(
            br#"{"mode": "access_log", "request_headers": ["x-a"], "routes": [{"match": {"path_prefix": "/pay"}}]}"#,
        )
        .unwrap();
        assert_eq!(ok.mode, Mode::AccessLog);
        assert_eq!(Config::default().filter_only_field(), None);
        let e = Config::parse(br#"{"mode": "access_log", "audit": [{"level": "request"}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "audit");
        assert!(Config::parse(br#"{"mode": "access_log", "audit": [{"level": "none"}]}"#).is_ok());
        let e = Config::parse(br#"{"mode": "tcp", "audit": [{"level": "none"}]}"#).unwrap_err();
        assert_eq!(e.field, "audit");
    }

    #[test]
    fn identity_claims_are_names_and_need_the_jwt_reader() {
        let d = Config::default().identity;
        assert!(!d.jwt && d.jwt_claims.is_empty());
        let ok = Config::parse(
            br#"{"identity": {"jwt": true, "jwt_claims": ["email", "groups", "x.y:z-1"]}}"#,
        )
        .unwrap();
        assert_eq!(ok.identity.jwt_claims.len(), 3);
        let secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        for (body, field, says) in [
            (
                format!(r#"{{"identity": {{"jwt": true, "jwt_claims": ["email", "{secret}="]}}}}"#),
                "identity.jwt_claims",
                "claim 1",
            ),
            (
                r#"{"identity": {"jwt_claims": ["email"]}}"#.to_string(),
                "identity.jwt_claims",
                "identity.jwt",
            ),
            (
                format!(
                    r#"{{"identity": {{"jwt": true, "jwt_claims": [{}]}}}}"#,
                    vec!["\"a\""; 17].join(",")
                ),
                "identity.jwt_claims",
                "at most 16",
            ),
            (
                r#"{"mode": "tcp", "identity": {"jwt": true}}"#.to_string(),
                "identity.jwt",
                "HTTP-only",
            ),
            (
                r#"{"identity": {"claims": ["email"]}}"#.to_string(),
                "identity.claims",
                "",
            ),
        ] {
            let e = Config::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
            assert!(e.reason.contains(says), "{body}: {e}");
            assert!(
                !e.to_string().contains(secret),
                "the refusal echoes the value: {e}"
            );
        }
    }

    #[test]
    fn body_capture_budget_is_checked() {
        assert_eq!(Config::default().body_capture_budget_bytes, 16 << 20);
        let c = Config::parse(
            br#"{"body_capture_budget_bytes": 1048576.0, "body_capture": [{"max_bytes": 65536}]}"#,
        )
        .unwrap();
        assert_eq!(c.body_capture_budget_bytes, 1 << 20);
        for doc in [
            r#"{"body_capture_budget_bytes": 0}"#,
            r#"{"body_capture_budget_bytes": 268435457}"#,
            r#"{"body_capture_budget_bytes": -1}"#,
            r#"{"body_capture_budget_bytes": 1.5}"#,
            r#"{"body_capture_budget_bytes": "16MiB"}"#,
            // One body (max_bytes and the 256-byte margin) must fit.
            r#"{"body_capture_budget_bytes": 65791, "body_capture": [{"max_bytes": 65536}]}"#,
        ] {
            let e = Config::parse(doc.as_bytes()).unwrap_err();
            assert_eq!(e.field, "body_capture_budget_bytes", "{doc}: {e}");
        }
        assert!(Config::parse(
            br#"{"body_capture_budget_bytes": 65792, "body_capture": [{"max_bytes": 65536}]}"#
        )
        .is_ok());
        assert!(Config::parse(br#"{"body_capture_budget_bytes": 268435456}"#).is_ok());
        // The default budget fits the largest body.
        assert!(Config::parse(br#"{"body_capture": [{"max_bytes": 1048576}]}"#).is_ok());
        for mode in ["tcp", "access_log"] {
            let doc = format!(r#"{{"mode": "{mode}", "body_capture_budget_bytes": 1048576}}"#);
            let e = Config::parse(doc.as_bytes()).unwrap_err();
            assert_eq!(e.field, "body_capture_budget_bytes", "{mode}");
        }
    }

    #[test]
    fn malformed_json_is_refused() {
        assert!(Config::parse(b"{").is_err());
        assert!(Config::parse(b"{} {}").is_err());
        assert!(Config::parse(b"[]").is_err());
    }

    #[test]
    fn header_names_are_lowercased() {
        let c = Config::parse(br#"{"request_headers": ["X-Tenant"]}"#).unwrap();
        assert_eq!(c.request_headers, vec!["x-tenant".to_string()]);
    }
}
