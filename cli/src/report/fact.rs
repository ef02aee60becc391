//! What the report needs of one event: who called which service, the operation, the outcome.
//! The same definitions are written as SQL for ClickHouse (docs/report.md#definitions).

use meshaudit::event::{attr, Value};
use meshaudit::integrity::verify::record::{KeyPositions, Record};

/// `meshaudit.peer.spiffe_id`: the caller's workload identity from its mTLS certificate.
const PEER_SPIFFE_ID: &str = "meshaudit.peer.spiffe_id";

/// How the caller is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallerKind {
    /// `enduser.id` of a token Envoy verified.
    EndUser,
    /// The SPIFFE id of a verified client certificate.
    Workload,
    /// Neither: the peer address stands for it.
    Unauthenticated,
}

impl CallerKind {
    pub fn name(self) -> &'static str {
        match self {
            CallerKind::EndUser => "end_user",
            CallerKind::Workload => "workload",
            CallerKind::Unauthenticated => "unauthenticated",
        }
    }

    /// The kind [`CallerKind::name`] names (anything else: unauthenticated).
    pub fn from_name(name: &str) -> CallerKind {
        match name {
            "end_user" => CallerKind::EndUser,
            "workload" => CallerKind::Workload,
            _ => CallerKind::Unauthenticated,
        }
    }
}

/// The caller: its kind, its id (user, SPIFFE id or address), and for an end user the workload
/// it came through (empty when none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caller {
    pub kind: CallerKind,
    pub id: String,
    pub via: String,
}

/// A request or connection, as the report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub time_ns: u64,
    pub service: String,
    pub caller: Caller,
    /// `GET`, … for HTTP; `TCP` for a connection.
    pub method: String,
    /// The path as a template (ids replaced, [`template`]); `:PORT` for a connection.
    pub route: String,
    pub denied: bool,
    /// Empty when allowed.
    pub reason: String,
    pub policy: String,
    /// A 5xx response.
    pub error: bool,
    /// `meshaudit.redaction.rules` as (name, count).
    pub redactions: Vec<(String, u64)>,
}

/// What an event is to the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Access(Access),
    /// A `meshaudit.gap` event: events lost, and why.
    Gap {
        lost: u64,
        reason: String,
    },
    /// A checkpoint, an open or interim TCP event, or a record the report does not count.
    Other,
}

/// The attributes the report reads, in [`K`]'s order.
const KEYS: [&str; 18] = [
    attr::TCP_PHASE,
    attr::LOCAL_PORT,
    attr::GAP_EVENTS,
    attr::GAP_REASON,
    attr::HTTP_METHOD,
    attr::URL_PATH,
    attr::DECISION,
    attr::DECISION_REASON,
    attr::DECISION_POLICY,
    attr::HTTP_STATUS,
    attr::LISTENER_DIRECTION,
    attr::SERVER_ADDRESS,
    "service.name",
    "meshaudit.workload.name",
    "k8s.namespace.name",
    PEER_SPIFFE_ID,
    attr::ENDUSER_ID,
    attr::PEER_ADDRESS,
];

/// An attribute the report reads: its place in [`KEYS`].
#[derive(Clone, Copy)]
enum K {
    TcpPhase,
    LocalPort,
    GapEvents,
    GapReason,
    HttpMethod,
    UrlPath,
    Decision,
    DecisionReason,
    DecisionPolicy,
    HttpStatus,
    ListenerDirection,
    ServerAddress,
    ServiceName,
    WorkloadName,
    Namespace,
    PeerSpiffeId,
    EnduserId,
    PeerAddress,
}

/// Where the report's attributes are in the records read (found once per shape of record).
pub struct Keys(KeyPositions<{ KEYS.len() }>);

impl Default for Keys {
    fn default() -> Keys {
        Keys(KeyPositions::new(KEYS))
    }
}

impl Keys {
    /// The report's attributes of `r`.
    pub fn of<'r>(&mut self, r: &'r Record) -> Fields<'r> {
        Fields {
            record: r,
            values: self.0.values(r),
        }
    }
}

/// One record's attributes the report reads.
pub struct Fields<'r> {
    record: &'r Record,
    values: [Option<&'r Value>; KEYS.len()],
}

impl<'r> Fields<'r> {
    fn str(&self, k: K) -> Option<&'r str> {
        match self.values.get(k as usize).copied().flatten() {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn int(&self, k: K) -> Option<i64> {
        match self.values.get(k as usize).copied().flatten() {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The fact of one record.
pub fn of(f: &Fields<'_>) -> Fact {
    match f.record.event_name.as_str() {
        "meshaudit.http" => Fact::Access(access(f, http_operation(f))),
        "meshaudit.tcp" if f.str(K::TcpPhase) == Some("close") => {
            let port = f.int(K::LocalPort).map(|p| format!(":{p}"));
            Fact::Access(access(f, ("TCP".into(), port.unwrap_or_default())))
        }
        "meshaudit.gap" => Fact::Gap {
            lost: f
                .int(K::GapEvents)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            reason: f.str(K::GapReason).unwrap_or("unknown").to_string(),
        },
        _ => Fact::Other,
    }
}

fn http_operation(f: &Fields<'_>) -> (String, String) {
    let method = f.str(K::HttpMethod).unwrap_or("-").to_string();
    (method, template(f.str(K::UrlPath).unwrap_or("/")))
}

fn access(f: &Fields<'_>, (method, route): (String, String)) -> Access {
    let denied = f.str(K::Decision) == Some("deny");
    let text = |key| f.str(key).unwrap_or_default().to_string();
    Access {
        time_ns: f.record.start_ns,
        service: service(f),
        caller: caller(f),
        method,
        route,
        denied,
        reason: if denied {
            text(K::DecisionReason)
        } else {
            String::new()
        },
        policy: if denied {
            text(K::DecisionPolicy)
        } else {
            String::new()
        },
        error: f.int(K::HttpStatus).is_some_and(|s| s >= 500),
        redactions: redactions(f.record),
    }
}

/// The service accessed: on an outbound sidecar the authority it called, else the workload the
/// proxy serves (`namespace/service.name`).
fn service(f: &Fields<'_>) -> String {
    if f.str(K::ListenerDirection) == Some("outbound") {
        if let Some(host) = f.str(K::ServerAddress) {
            return host.to_string();
        }
    }
    workload(f)
}

/// The workload whose proxy recorded the event: `namespace/service.name` (or
/// `meshaudit.workload.name`), from the resource attributes.
pub fn workload(f: &Fields<'_>) -> String {
    let name = f
        .str(K::ServiceName)
        .or_else(|| f.str(K::WorkloadName))
        .unwrap_or("unknown");
    match f.str(K::Namespace) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn caller(f: &Fields<'_>) -> Caller {
    let workload = f.str(K::PeerSpiffeId).unwrap_or_default();
    if let Some(user) = f.str(K::EnduserId) {
        return Caller {
            kind: CallerKind::EndUser,
            id: user.to_string(),
            via: workload.to_string(),
        };
    }
    if !workload.is_empty() {
        return Caller {
            kind: CallerKind::Workload,
            id: workload.to_string(),
            via: String::new(),
        };
    }
    Caller {
        kind: CallerKind::Unauthenticated,
        id: f.str(K::PeerAddress).unwrap_or("unknown").to_string(),
        via: String::new(),
    }
}

fn redactions(r: &Record) -> Vec<(String, u64)> {
    let Some(Value::StrList(list)) = r.get(attr::REDACTION_RULES) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let (name, n) = entry.rsplit_once(':')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// A path as a route template: the query and fragment dropped, and each segment that is an id
/// replaced: digits `{n}`, a UUID `{uuid}`, 16 or more hex digits `{hex}`, and 12 or more
/// characters mixing letters and digits `{id}`. Redaction's markers stay as they are.
pub fn template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment_template(segment).unwrap_or(segment));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn segment_template(s: &str) -> Option<&'static str> {
    let hex = |c: char| c.is_ascii_hexdigit();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return Some("{n}");
    }
    if is_uuid(s) {
        return Some("{uuid}");
    }
    if s.len() >= 16 && s.chars().all(hex) {
        return Some("{hex}");
    }
    let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.');
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if s.len() >= 12 && s.chars().all(id_char) && digits >= 2 && digits < s.len() {
        return Some("{id}");
    }
    None
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_become_placeholders() {
        for (path, want) in [
            ("/users/42/orders", "/users/{n}/orders"),
            (
                "/v1/orders/3f2b6c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f?x=1",
                "/v1/orders/{uuid}",
            ),
            ("/blobs/0123456789abcdef0123", "/blobs/{hex}"),
            ("/sessions/a8Fk29dPq0Lm", "/sessions/{id}"),
            ("/api/v2/health-check", "/api/v2/health-check"),
            ("/admin/users", "/admin/users"),
            ("", "/"),
            ("/", "/"),
        ] {
            assert_eq!(template(path), want, "{path}");
        }
    }

    fn record(attributes: &[(&str, Value)]) -> Record {
        let mut r = Record::default();
        r.event_name = "meshaudit.http".into();
        r.start_ns = 7;
        r.observed_ns = 8;
        r.origin = "test".into();
        r.attributes = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        r
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn an_end_user_comes_before_the_workload_it_came_through() {
        let r = record(&[
            (PEER_SPIFFE_ID, s("spiffe://c/ns/edge/sa/gateway")),
            (attr::ENDUSER_ID, s("alice")),
            (attr::HTTP_METHOD, s("POST")),
            (attr::URL_PATH, s("/pay/991")),
            (attr::DECISION, s("deny")),
            (attr::DECISION_REASON, s("rbac")),
            (
                attr::DECISION_POLICY,
                s("ns[shop]-policy[deny-pay]-rule[0]"),
            ),
            (attr::HTTP_STATUS, Value::Int(403)),
            (
                attr::REDACTION_RULES,
                Value::StrList(vec!["default:2".into(), "detector.card:1".into()]),
            ),
            ("service.name", s("payments")),
            ("k8s.namespace.name", s("shop")),
        ]);
        let Fact::Access(a) = of(&Keys::default().of(&r)) else {
            unreachable!("an HTTP event is an access")
        };
        assert_eq!(a.caller.kind, CallerKind::EndUser);
        assert_eq!(
            (a.caller.id.as_str(), a.caller.via.as_str()),
            ("alice", "spiffe://c/ns/edge/sa/gateway")
        );
        assert_eq!(
            (a.service.as_str(), a.route.as_str()),
            ("shop/payments", "/pay/{n}")
        );
        assert!(a.denied && !a.error && a.reason == "rbac");
        assert_eq!(
            a.redactions,
            vec![("default".into(), 2), ("detector.card".into(), 1)]
        );
    }

    #[test]
    fn without_certificate_or_token_the_address_stands_for_the_caller() {
        let r = record(&[
            (attr::PEER_ADDRESS, s("10.1.2.3")),
            (attr::LISTENER_DIRECTION, s("outbound")),
            (attr::SERVER_ADDRESS, s("api.example.com")),
            (attr::HTTP_STATUS, Value::Int(503)),
            (attr::DECISION, s("allow")),
        ]);
        let Fact::Access(a) = of(&Keys::default().of(&r)) else {
            unreachable!("an HTTP event is an access")
        };
        assert_eq!(a.caller.kind, CallerKind::Unauthenticated);
        assert_eq!(a.caller.id, "10.1.2.3");
        assert_eq!(a.service, "api.example.com");
        assert!(a.error && !a.denied && a.reason.is_empty());
    }
}
