//! Weeks of a small mesh's traffic as a real trail: events built with the filter's own event
//! model, redacted, sequenced, chained and checkpointed by its own pipeline (one stream per
//! service), written as the JSON lines a collector stores. The last week can carry planted
//! anomalies; everything else is steady traffic with ±10% daily noise.

use meshaudit::config::{Config, Format, Integrity};
use meshaudit::deliver::outcome::Outcome;
use meshaudit::event::{attr, AuditEvent, EventKind, Value};
use meshaudit::integrity::keys::Signer;
use meshaudit::pipeline::Pipeline;
use meshaudit::redact::Redactor;

pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const NS_PER_MINUTE: u64 = 60 * 1_000_000_000;
/// 2026-10-12 (a Monday), 00:00 UTC: the first day of the trail.
pub const START_DAY: u64 = 20_738;
pub const BASELINE_DAYS: u64 = 21;
pub const PERIOD_DAYS: u64 = 7;

pub const SERVICES: [&str; 6] = [
    "catalog",
    "orders",
    "payments",
    "admin",
    "inventory",
    "reports",
];
pub const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
pub const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
pub const CATALOG: &str = "spiffe://cluster.local/ns/shop/sa/catalog";
pub const GATEWAY: &str = "spiffe://cluster.local/ns/istio-system/sa/ingressgateway";

/// What the last week carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Week {
    Quiet,
    Planted,
}

/// One request to generate.
struct Call<'a> {
    service: &'a str,
    workload: Option<&'a str>,
    user: Option<&'a str>,
    address: &'a str,
    method: &'a str,
    path: String,
    denied: Option<(&'a str, &'a str)>,
    minute: u64,
}

/// A small deterministic generator (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` ± 10%.
    fn around(&mut self, n: u64) -> u64 {
        let spread = n / 5 + 1;
        n - n / 10 + self.next() % spread
    }

    /// A minute of the working day (09:00-17:00 UTC).
    fn office_minute(&mut self) -> u64 {
        9 * 60 + self.next() % (8 * 60)
    }

    fn any_minute(&mut self) -> u64 {
        self.next() % (24 * 60)
    }
}

/// The trail, and what the period holds, for the tests' expectations.
pub struct Trail {
    pub lines: String,
    /// Requests in the period, and how many were denied.
    pub period_requests: u64,
    pub period_denied: u64,
    /// Events whose query carried a token the default rule redacts, in the period.
    pub period_redacted: u64,
}

pub fn generate(week: Week, signer: &Signer) -> Trail {
    let mut streams: Vec<Pipeline> = SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| pipeline(s, 0x5eed_0000 + i as u64, signer))
        .collect();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut out = Trail {
        lines: String::new(),
        period_requests: 0,
        period_denied: 0,
        period_redacted: 0,
    };
    for day in 0..BASELINE_DAYS + PERIOD_DAYS {
        let mut calls = steady_day(&mut noise);
        if week == Week::Planted && day >= BASELINE_DAYS {
            calls.extend(planted(day - BASELINE_DAYS, &mut noise));
        }
        calls.sort_by_key(|c| c.minute);
        for c in calls {
            let t = (START_DAY + day) * NS_PER_DAY + c.minute * NS_PER_MINUTE;
            if day >= BASELINE_DAYS {
                out.period_requests += 1;
                out.period_denied += u64::from(c.denied.is_some());
                out.period_redacted += u64::from(c.path.contains("token="));
            }
            let i = SERVICES.iter().position(|s| *s == c.service).unwrap_or(0);
            if let Some(p) = streams.get_mut(i) {
                p.accept(event(&c, t), t / 1_000_000);
                drain(p, t / 1_000_000, &mut out.lines);
            }
        }
    }
    for p in &mut streams {
        p.flush_all();
        drain(p, u64::MAX / 2_000_000, &mut out.lines);
    }
    out
}

fn pipeline(service: &str, stream: u64, signer: &Signer) -> Pipeline {
    let config = Config {
        format: Format::Json,
        integrity: Integrity {
            checkpoint_interval_ms: 6 * 3_600_000,
            ..Integrity::default()
        },
        ..Config::default()
    };
    let redactor = Redactor::compile(&config.redaction, None).expect("default rules compile");
    let resource = vec![
        ("service.name", service.to_string()),
        ("k8s.namespace.name", "shop".to_string()),
        ("meshaudit.workload.name", service.to_string()),
    ];
    Pipeline::new(config, redactor, &resource, stream).with_signer(Some(signer.clone()))
}

fn drain(p: &mut Pipeline, now_ms: u64, out: &mut String) {
    while let Some(export) = p.next_export(now_ms) {
        out.push_str(&String::from_utf8_lossy(&export.body));
        p.dispatched(1, export);
        p.completed(1, Outcome::Delivered { rejected: 0 }, now_ms);
    }
}

fn event(c: &Call, t: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Http);
    e.start_unix_nano = t;
    e.observed_unix_nano = t + 2_000_000;
    let (path, query) = match c.path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (c.path.clone(), None),
    };
    e.set(attr::HTTP_METHOD, Value::Str(c.method.into()));
    e.set(attr::URL_PATH, Value::Str(path));
    e.set_str(attr::URL_QUERY, query);
    e.set(
        attr::SERVER_ADDRESS,
        Value::Str(format!("{}.shop.svc", c.service)),
    );
    e.set(attr::PEER_ADDRESS, Value::Str(c.address.into()));
    e.set(attr::LISTENER_DIRECTION, Value::Str("inbound".into()));
    e.set(attr::MTLS, Value::Bool(c.workload.is_some()));
    if let Some(w) = c.workload {
        e.set("meshaudit.peer.spiffe_id", Value::Str(w.into()));
    }
    if let Some(u) = c.user {
        e.set(attr::ENDUSER_ID, Value::Str(u.into()));
        e.set(
            attr::ENDUSER_ISSUER,
            Value::Str("https://login.example.com".into()),
        );
    }
    let status = match c.denied {
        Some((reason, policy)) => {
            e.set(attr::DECISION, Value::Str("deny".into()));
            e.set(attr::DECISION_REASON, Value::Str(reason.into()));
            if !policy.is_empty() {
                e.set(attr::DECISION_POLICY, Value::Str(policy.into()));
            }
            if reason == "jwt" {
                401
            } else {
                403
            }
        }
        None => {
            e.set(attr::DECISION, Value::Str("allow".into()));
            200
        }
    };
    e.set(attr::HTTP_STATUS, Value::Int(status));
    e
}

fn call<'a>(
    service: &'a str,
    workload: Option<&'a str>,
    user: Option<&'a str>,
    path: String,
    minute: u64,
) -> Call<'a> {
    Call {
        service,
        workload,
        user,
        address: if workload.is_some() {
            "10.8.0.12"
        } else {
            "203.0.113.7"
        },
        method: "GET",
        path,
        denied: None,
        minute,
    }
}

/// A workload's charge to payments.
fn charge(workload: &'static str, minute: u64) -> Call<'static> {
    let mut c = call("payments", Some(workload), None, "/charges".into(), minute);
    c.method = "POST";
    c
}

/// Every day's traffic: workloads around the clock, end users in office hours, health checks
/// without authentication, a few denials.
fn steady_day(n: &mut Noise) -> Vec<Call<'static>> {
    let mut v = Vec::new();
    for _ in 0..n.around(200) {
        let (item, m) = (n.next() % 900, n.any_minute());
        v.push(call(
            "catalog",
            Some(FRONTEND),
            None,
            format!("/items/{item}"),
            m,
        ));
    }
    for _ in 0..n.around(100) {
        let (order, m) = (n.next() % 90_000, n.any_minute());
        v.push(call(
            "orders",
            Some(FRONTEND),
            None,
            format!("/orders/{order}"),
            m,
        ));
    }
    for _ in 0..n.around(80) {
        let m = n.any_minute();
        v.push(charge(ORDERS, m));
    }
    for user in ["alice", "bob", "carol", "dave"] {
        for _ in 0..n.around(30) {
            let (order, m) = (n.next() % 90_000, n.office_minute());
            v.push(call(
                "orders",
                Some(GATEWAY),
                Some(user),
                format!("/orders/{order}?token=s3cr3t-{order}"),
                m,
            ));
        }
    }
    for _ in 0..n.around(5) {
        let (id, m) = (n.next() % 500, n.office_minute());
        v.push(call(
            "admin",
            Some(GATEWAY),
            Some("root-admin"),
            format!("/admin/users/{id}"),
            m,
        ));
    }
    for _ in 0..n.around(48) {
        let m = n.any_minute();
        v.push(call("catalog", None, None, "/healthz".into(), m));
    }
    for _ in 0..n.around(4) {
        let m = n.any_minute();
        let mut c = call("orders", None, None, "/orders".into(), m);
        c.denied = Some(("jwt", ""));
        v.push(c);
    }
    v
}

/// The last week's anomalies, one kind per day.
fn planted(day: u64, n: &mut Noise) -> Vec<Call<'static>> {
    let mut v = Vec::new();
    match day {
        // A workload calling a service it never called: catalog -> payments.
        1 => {
            for _ in 0..12 {
                let m = n.any_minute();
                v.push(charge(CATALOG, m));
            }
        }
        // frontend's calls to catalog, ten times a day's volume.
        2 => {
            for _ in 0..2000 {
                let (item, m) = (n.next() % 900, n.any_minute());
                v.push(call(
                    "catalog",
                    Some(FRONTEND),
                    None,
                    format!("/items/{item}"),
                    m,
                ));
            }
        }
        // orders denied by RBAC: 25 more calls to payments, all refused (a quarter of the day's).
        3 => {
            for _ in 0..25 {
                let m = n.any_minute();
                let mut c = charge(ORDERS, m);
                c.denied = Some(("rbac", "ns[shop]-policy[payments-callers]-rule[0]"));
                v.push(c);
            }
        }
        // bob at half past two in the morning.
        4 => {
            let mut c = call(
                "orders",
                Some(GATEWAY),
                Some("bob"),
                "/orders/77".into(),
                150,
            );
            c.method = "DELETE";
            v.push(c);
        }
        // dave, who only ever read orders, reaches every service.
        5 => {
            for service in SERVICES {
                let m = n.office_minute();
                v.push(call(service, Some(GATEWAY), Some("dave"), "/".into(), m));
            }
        }
        _ => {}
    }
    v
}
