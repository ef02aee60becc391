//! The audit policy: ordered rules, first match wins, each picking how much of a request is
//! recorded, with Kubernetes' audit levels: `none` (no event), `metadata` (the event),
//! `request` and `request_response` (with the bodies of those sides). No rule matching is
//! `metadata`: without rules, every request is recorded as before.
//!
//! Bodies must be chosen when the request starts, before the response exists, so a rule that
//! matches the response's class may only pick `none`: the level a request starts with
//! ([`AuditPolicy::at_start`]) passes over those rules, and the level it ends with
//! ([`AuditPolicy::at_end`]) is `none` where one of them matched first, else the same.

use crate::capture::identity;
use crate::config::{AuditLevel, AuditRule, ConfigError, RouteMatch};
use crate::event::{attr, AuditEvent, EventKind, Value};
use crate::route::{RequestLine, Route};

/// Who called, as the policy matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// No verified client certificate.
    Unauthenticated,
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone)]
struct Rule {
    route: Route,
    path: Option<String>,
    caller: Option<Caller>,
    /// The hundreds digit of the status codes matched.
    response: Option<i64>,
    level: AuditLevel,
    max_bytes: u32,
}

/// The compiled `audit` rules.
#[derive(Debug, Clone, Default)]
pub struct AuditPolicy {
    rules: Vec<Rule>,
}

/// A request as the policy sees it: its line, whether its client presented a verified
/// certificate (mTLS), and the caller's SPIFFE id from it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub line: RequestLine<'a>,
    pub authenticated: bool,
    pub caller: Option<&'a str>,
}

/// A request's level when it starts, and the body limit of the rule that chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub level: AuditLevel,
    pub max_bytes: u32,
}

impl AuditPolicy {
    pub fn compile(rules: &[AuditRule]) -> Result<AuditPolicy, ConfigError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                compile_rule(r).map_err(|(field, reason)| ConfigError {
                    field: format!("audit[{i}]{field}"),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AuditPolicy { rules })
    }

    /// Whether there are no rules (every request at `metadata`).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a finished request's event is not recorded: its level is `none`. Read from the
    /// event itself (request line, mTLS, the peer's SPIFFE id, the status).
    pub fn skips(&self, e: &AuditEvent) -> bool {
        if self.rules.is_empty() || e.kind != EventKind::Http {
            return false;
        }
        let request = Request {
            line: RequestLine {
                method: e.get_str(attr::HTTP_METHOD).unwrap_or(""),
                host: e.get_str(attr::SERVER_ADDRESS).unwrap_or(""),
                path: e.get_str(attr::URL_PATH).unwrap_or(""),
            },
            authenticated: matches!(e.get(attr::MTLS), Some(Value::Bool(true))),
            caller: e.get_str(identity::PEER.spiffe_id),
        };
        let status = match e.get(attr::HTTP_STATUS) {
            Some(Value::Int(s)) => Some(*s),
            _ => None,
        };
        self.at_end(&request, status) == AuditLevel::None
    }

    /// Whether any rule reads the caller (so the caller must be known when a request starts).
    pub fn reads_caller(&self) -> bool {
        self.rules.iter().any(|r| r.caller.is_some())
    }

    /// Whether any rule captures bodies.
    pub fn captures_bodies(&self) -> bool {
        self.rules.iter().any(|r| r.level >= AuditLevel::Request)
    }

    /// The level a request starts with: the first rule that matches it, passing over rules on
    /// the response.
    pub fn at_start(&self, r: &Request<'_>) -> Start {
        self.rules
            .iter()
            .filter(|rule| rule.response.is_none())
            .find(|rule| rule.matches(r))
            .map_or(
                Start {
                    level: AuditLevel::Metadata,
                    max_bytes: 0,
                },
                |rule| Start {
                    level: rule.level,
                    max_bytes: rule.max_bytes,
                },
            )
    }

    /// The level a finished request is recorded at.
    pub fn at_end(&self, r: &Request<'_>, status: Option<i64>) -> AuditLevel {
        self.rules
            .iter()
            .find(|rule| {
                rule.matches(r)
                    && rule
                        .response
                        .is_none_or(|class| status.is_some_and(|s| s / 100 == class))
            })
            .map_or(AuditLevel::Metadata, |rule| rule.level)
    }
}

impl Rule {
    /// Whether the request line and caller match (the response is the caller's to check).
    fn matches(&self, r: &Request<'_>) -> bool {
        if self.path.as_deref().is_some_and(|p| p != r.line.path) {
            return false;
        }
        let caller = match (&self.caller, r.caller) {
            (None, _) => true,
            (Some(Caller::Unauthenticated), _) => !r.authenticated,
            (Some(Caller::Exact(id)), Some(c)) => r.authenticated && id == c,
            (Some(Caller::Prefix(p)), Some(c)) => r.authenticated && c.starts_with(p.as_str()),
            (Some(_), None) => false,
        };
        caller && self.route.matches(&r.line)
    }
}

type RuleError = (&'static str, String);

fn compile_rule(r: &AuditRule) -> Result<Rule, RuleError> {
    let m = &r.when;
    let route = Route::compile(&RouteMatch {
        host: m.host.clone(),
        path_prefix: m.path_prefix.clone(),
        path_pattern: m.path_pattern.clone(),
        method: m.method.clone(),
    })
    .map_err(|e| (".match", e))?;
    if let Some(p) = &m.path {
        if !p.starts_with('/') {
            return Err((".match.path", "must start with '/'".into()));
        }
    }
    let caller = match m.caller.as_deref() {
        None => None,
        Some("unauthenticated") => Some(Caller::Unauthenticated),
        Some(c) if !c.starts_with("spiffe://") => return Err((
            ".match.caller",
            "must be a SPIFFE id (spiffe://…, a trailing * for a prefix) or \"unauthenticated\""
                .into(),
        )),
        Some(c) => match c.strip_suffix('*') {
            Some(prefix) => Some(Caller::Prefix(prefix.to_string())),
            None => Some(Caller::Exact(c.to_string())),
        },
    };
    let response = match m.response.as_deref() {
        None => None,
        Some(class) => match class.as_bytes() {
            [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Some(i64::from(d - b'0')),
            _ => {
                return Err((
                    ".match.response",
                    "must be a class: \"1xx\" to \"5xx\"".into(),
                ))
            }
        },
    };
    if response.is_some() && r.level != AuditLevel::None {
        return Err((
            ".level",
            "must be \"none\" with match.response: bodies are chosen when a request starts, before its response exists".into(),
        ));
    }
    if !(1..=1_048_576).contains(&r.max_bytes) {
        return Err((".max_bytes", "must be 1 to 1048576".into()));
    }
    Ok(Rule {
        route,
        path: m.path.clone(),
        caller,
        response,
        level: r.level,
        max_bytes: r.max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(json: &str) -> Result<AuditPolicy, ConfigError> {
        let c = Config::parse(format!(r#"{{"audit": {json}}}"#).as_bytes())?;
        AuditPolicy::compile(&c.audit)
    }

    fn req<'a>(method: &'a str, path: &'a str, caller: Option<&'a str>) -> Request<'a> {
        Request {
            line: RequestLine {
                method,
                host: "shop",
                path,
            },
            authenticated: caller.is_some(),
            caller,
        }
    }

    const PROM: &str = "spiffe://cluster.local/ns/monitoring/sa/prometheus";

    #[test]
    fn first_match_wins_and_no_match_is_metadata() {
        let p = policy(
            r#"[
                {"match": {"path": "/healthz", "caller": "unauthenticated"}, "level": "none"},
                {"match": {"path": "/metrics", "caller": "spiffe://cluster.local/ns/monitoring/*"}, "level": "none"},
                {"match": {"path_prefix": "/admin/", "method": "POST"}, "level": "request_response", "max_bytes": 4096},
                {"match": {"path_prefix": "/admin/"}, "level": "request"}
            ]"#,
        )
        .unwrap();
        let start = |m, path, caller| p.at_start(&req(m, path, caller)).level;
        assert_eq!(start("GET", "/healthz", None), AuditLevel::None);
        // The kubelet probes without a certificate; anyone else probing is recorded.
        assert_eq!(start("GET", "/healthz", Some(PROM)), AuditLevel::Metadata);
        assert_eq!(start("GET", "/healthz/x", None), AuditLevel::Metadata);
        assert_eq!(start("GET", "/metrics", Some(PROM)), AuditLevel::None);
        assert_eq!(start("GET", "/metrics", None), AuditLevel::Metadata);
        assert_eq!(
            p.at_start(&req("POST", "/admin/users", None)),
            Start {
                level: AuditLevel::RequestResponse,
                max_bytes: 4096
            }
        );
        assert_eq!(start("GET", "/admin/users", None), AuditLevel::Request);
        assert_eq!(start("GET", "/orders", None), AuditLevel::Metadata);
        assert!(p.reads_caller() && p.captures_bodies());
        assert!(!AuditPolicy::default().reads_caller());
    }

    #[test]
    fn a_response_rule_decides_at_the_end_only() {
        let p = policy(
            r#"[
                {"match": {"path_prefix": "/static/", "response": "2xx"}, "level": "none"},
                {"match": {"path_prefix": "/static/"}, "level": "request"}
            ]"#,
        )
        .unwrap();
        let r = req("GET", "/static/app.js", None);
        assert_eq!(p.at_start(&r).level, AuditLevel::Request);
        assert_eq!(p.at_end(&r, Some(200)), AuditLevel::None);
        assert_eq!(p.at_end(&r, Some(404)), AuditLevel::Request);
        assert_eq!(p.at_end(&r, None), AuditLevel::Request);
    }

    #[test]
    fn a_finished_events_level_is_read_from_the_event() {
        let p = policy(
            r#"[{"match": {"path": "/healthz", "caller": "unauthenticated", "response": "2xx"}, "level": "none"},
                {"match": {"path": "/metrics", "caller": "spiffe://cluster.local/ns/monitoring/*"}, "level": "none"}]"#,
        )
        .unwrap();
        let event = |path: &str, mtls: bool, caller: Option<&str>, status: i64| {
            let mut e = AuditEvent::new(EventKind::Http);
            e.set(attr::HTTP_METHOD, Value::Str("GET".into()));
            e.set(attr::URL_PATH, Value::Str(path.into()));
            e.set(attr::MTLS, Value::Bool(mtls));
            e.set_str(identity::PEER.spiffe_id, caller.map(str::to_string));
            e.set(attr::HTTP_STATUS, Value::Int(status));
            e
        };
        assert!(p.skips(&event("/healthz", false, None, 200)));
        assert!(
            !p.skips(&event("/healthz", false, None, 503)),
            "a failing probe is recorded"
        );
        assert!(!p.skips(&event("/healthz", true, Some(PROM), 200)));
        assert!(p.skips(&event("/metrics", true, Some(PROM), 200)));
        // A SPIFFE id without a verified certificate is no caller.
        assert!(!p.skips(&event("/metrics", false, Some(PROM), 200)));
        assert!(!p.skips(&AuditEvent::new(EventKind::Tcp)));
        assert!(!AuditPolicy::default().skips(&event("/healthz", false, None, 200)));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        for (rules, field) in [
            (
                r#"[{"level": "metadata"}, {"match": {"response": "2xx"}, "level": "request"}]"#,
                "audit[1].level",
            ),
            (
                r#"[{"match": {"response": "20x"}, "level": "none"}]"#,
                "audit[0].match.response",
            ),
            (
                r#"[{"match": {"caller": "prometheus"}, "level": "none"}]"#,
                "audit[0].match.caller",
            ),
            (
                r#"[{"match": {"path": "healthz"}, "level": "none"}]"#,
                "audit[0].match.path",
            ),
            (
                r#"[{"match": {"path_prefix": "admin"}, "level": "none"}]"#,
                "audit[0].match",
            ),
            (r#"[{"level": "everything"}]"#, "audit[0].level"),
            (
                r#"[{"match": {"user": "x"}, "level": "none"}]"#,
                "audit[0].match.user",
            ),
            (
                r#"[{"level": "request", "max_bytes": 0}]"#,
                "audit[0].max_bytes",
            ),
        ] {
            let e = policy(rules).unwrap_err();
            assert_eq!(e.field, field, "{rules}: {e}");
        }
    }
}
