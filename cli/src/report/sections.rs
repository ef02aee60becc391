//! The report's sections, each computed from the cube.

use std::collections::{BTreeMap, BTreeSet};

use meshaudit::route::path::PathPattern;

use super::cube::{Counts, Cube, Key};
use super::fact::{Caller, CallerKind};
use super::period::{day_name, time_name, Side};
use super::table::{Cell, Chart, Section};

/// The cells of `side` grouped by `key`, in key order.
pub fn group<K: Ord>(
    cube: &Cube,
    side: Side,
    key: impl Fn(&Key) -> Option<K>,
) -> BTreeMap<K, Counts> {
    let mut out: BTreeMap<K, Counts> = BTreeMap::new();
    for (k, c) in cube.side(side) {
        if let Some(g) = key(k) {
            out.entry(g).and_modify(|sum| sum.add(c)).or_insert(*c);
        }
    }
    out
}

/// Who and what: the caller's type, id and the workload it came through, method, route.
fn who_what(caller: &Caller, method: &str, route: &str) -> [Cell; 5] {
    [
        caller.kind.name().into(),
        caller.id.as_str().into(),
        caller.via.as_str().into(),
        method.into(),
        route.into(),
    ]
}

fn seen(c: &Counts) -> [Cell; 2] {
    [time_name(c.first_ns).into(), time_name(c.last_ns).into()]
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Requests per day of the period, one series per caller kind.
fn daily_by_kind(cube: &Cube, days: &[u64]) -> Chart {
    let by = group(cube, Side::Period, |k| Some((k.caller.kind, k.day)));
    let series = [
        CallerKind::Workload,
        CallerKind::EndUser,
        CallerKind::Unauthenticated,
    ]
    .into_iter()
    .map(|kind| {
        let values = days
            .iter()
            .map(|d| by.get(&(kind, *d)).map_or(0, |c| c.requests))
            .collect();
        (kind.name().to_string(), values)
    })
    .collect();
    Chart {
        title: "Requests per day, by how the caller is known".into(),
        categories: days.iter().map(|d| day_name(*d)).collect(),
        series,
    }
}

pub fn access(cube: &Cube, days: &[u64]) -> Section {
    let by = group(cube, Side::Period, |k| {
        Some((
            k.service.clone(),
            k.caller.clone(),
            k.method.clone(),
            k.route.clone(),
        ))
    });
    let mut rows: Vec<(&(String, _, String, String), &Counts)> = by.iter().collect();
    rows.sort_by(|a, b| {
        a.0 .0
            .cmp(&b.0 .0)
            .then(b.1.requests.cmp(&a.1.requests))
            .then(a.0.cmp(b.0))
    });
    let services: BTreeSet<&String> = by.keys().map(|k| &k.0).collect();
    let callers: BTreeSet<_> = by.keys().map(|k| &k.1).collect();
    let total: u64 = by.values().map(|c| c.requests).sum();
    Section {
        id: "access",
        title: "Access by identity",
        criteria: "CC6.1, CC6.3",
        about: "Per service, every caller (its SPIFFE identity, the end user of a verified token and the workload it came through, or the address of an unauthenticated one), each operation it used (method and route template: ids in paths become {n}, {uuid}, {hex}, {id}), how often, how many were denied or failed (5xx), first and last seen.".into(),
        summary: vec![
            ("services".into(), thousands(services.len() as u64)),
            ("callers".into(), thousands(callers.len() as u64)),
            ("requests and connections".into(), thousands(total)),
        ],
        columns: vec!["service", "caller_type", "caller", "via", "method", "route", "requests", "denied", "errors", "first_seen", "last_seen"],
        rows: rows
            .into_iter()
            .map(|((service, caller, method, route), c)| {
                let mut row = vec![service.as_str().into()];
                row.extend(who_what(caller, method, route));
                row.extend([c.requests.into(), c.denied.into(), c.errors.into()]);
                row.extend(seen(c));
                row
            })
            .collect(),
        chart: Some(daily_by_kind(cube, days)),
        extra: None,
    }
}

pub fn unauthenticated(cube: &Cube) -> Section {
    let anonymous = |k: &Key| k.caller.kind == CallerKind::Unauthenticated;
    let by = group(cube, Side::Period, |k| {
        anonymous(k).then(|| (k.service.clone(), k.method.clone(), k.route.clone()))
    });
    let mut addresses: BTreeMap<(&str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (k, _) in cube.side(Side::Period).filter(|(k, _)| anonymous(k)) {
        addresses
            .entry((&k.service, &k.method, &k.route))
            .or_default()
            .insert(&k.caller.id);
    }
    let all: u64 = cube.side(Side::Period).map(|(_, c)| c.requests).sum();
    let total: u64 = by.values().map(|c| c.requests).sum();
    let mut rows: Vec<_> = by.iter().collect();
    rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
    Section {
        id: "unauthenticated",
        title: "Unauthenticated access",
        criteria: "CC6.6",
        about: "Requests and connections that carried neither a verified client certificate nor a verified token, per service and route: how many, from how many addresses, how many were denied.".into(),
        summary: vec![
            ("unauthenticated".into(), thousands(total)),
            ("of all requests".into(), percent(total, all)),
        ],
        columns: vec!["service", "method", "route", "requests", "denied", "addresses", "first_seen", "last_seen"],
        rows: rows
            .into_iter()
            .map(|((service, method, route), c)| {
                let n = addresses
                    .get(&(service.as_str(), method.as_str(), route.as_str()))
                    .map_or(0, |s| s.len() as u64);
                let [first, last] = seen(c);
                vec![
                    service.as_str().into(),
                    method.as_str().into(),
                    route.as_str().into(),
                    c.requests.into(),
                    c.denied.into(),
                    n.into(),
                    first,
                    last,
                ]
            })
            .collect(),
        chart: None,
        extra: None,
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

pub fn denied(cube: &Cube, days: &[u64]) -> Section {
    let by = group(cube, Side::Period, |k| {
        (!k.reason.is_empty())
            .then(|| (k.day, k.reason.clone(), k.policy.clone(), k.service.clone()))
    });
    let mut reasons: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((day, reason, _, _), c) in &by {
        let series = reasons.entry(reason).or_insert_with(|| vec![0; days.len()]);
        if let Some(slot) = days
            .iter()
            .position(|d| d == day)
            .and_then(|i| series.get_mut(i))
        {
            *slot += c.denied;
        }
        *totals.entry(reason).or_default() += c.denied;
    }
    let mut summary = vec![("denied".to_string(), thousands(totals.values().sum()))];
    summary.extend(
        totals
            .iter()
            .map(|(r, n)| (format!("reason {r}"), thousands(*n))),
    );
    Section {
        id: "denied",
        title: "Denied requests",
        criteria: "CC6.1",
        about: "Every denial by day, with its reason (rbac, jwt, ext_authz, rate_limit, fail_closed, no_route, csrf, tls) and the policy that denied it where Envoy names one, per service.".into(),
        summary,
        columns: vec!["day", "reason", "policy", "service", "denied"],
        rows: by
            .iter()
            .map(|((day, reason, policy, service), c)| {
                vec![
                    day_name(*day).into(),
                    reason.as_str().into(),
                    policy.as_str().into(),
                    service.as_str().into(),
                    c.denied.into(),
                ]
            })
            .collect(),
        chart: Some(Chart {
            title: "Denials per day, by reason".into(),
            categories: days.iter().map(|d| day_name(*d)).collect(),
            series: reasons
                .into_iter()
                .map(|(r, v)| (r.to_string(), v))
                .collect(),
        }),
        extra: None,
    }
}

pub fn privileged(cube: &Cube, patterns: &[(String, PathPattern)]) -> Section {
    let by = group(cube, Side::Period, |k| {
        let (pattern, _) = patterns.iter().find(|(_, p)| p.matches(&k.route))?;
        Some((
            pattern.clone(),
            k.service.clone(),
            k.caller.clone(),
            k.method.clone(),
            k.route.clone(),
        ))
    });
    let callers: BTreeSet<_> = by.keys().map(|k| &k.2).collect();
    let names: Vec<&str> = patterns.iter().map(|(n, _)| n.as_str()).collect();
    Section {
        id: "privileged",
        title: "Privileged routes",
        criteria: "CC6.1, CC6.3",
        about: format!(
            "Access to routes matching the privileged patterns ({}), by whom. A pattern matches the route template (`*` one segment, a final `**` the rest).",
            if names.is_empty() { "none given: use --privileged PATTERN".to_string() } else { names.join(", ") }
        ),
        summary: vec![
            ("patterns".into(), names.len().to_string()),
            ("callers".into(), thousands(callers.len() as u64)),
            ("requests".into(), thousands(by.values().map(|c| c.requests).sum())),
        ],
        columns: vec!["pattern", "service", "caller_type", "caller", "via", "method", "route", "requests", "denied", "first_seen", "last_seen"],
        rows: by
            .iter()
            .map(|((pattern, service, caller, method, route), c)| {
                let mut row = vec![pattern.as_str().into(), service.as_str().into()];
                row.extend(who_what(caller, method, route));
                row.extend([c.requests.into(), c.denied.into()]);
                row.extend(seen(c));
                row
            })
            .collect(),
        chart: None,
        extra: None,
    }
}

pub fn redaction(cube: &Cube) -> Section {
    let events: u64 = cube.side(Side::Period).map(|(_, c)| c.requests).sum();
    let mut rows: Vec<(&String, &(u64, u64))> = cube.redactions.iter().collect();
    rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    Section {
        id: "redaction",
        title: "Redaction evidence",
        criteria: "C1.1",
        about: "Which redaction rules and detectors fired in the period and how often, from each event's meshaudit.redaction.rules (names and counts only: the values never left the proxy).".into(),
        summary: vec![
            ("rules and detectors that fired".into(), rows.len().to_string()),
            ("events".into(), thousands(events)),
        ],
        columns: vec!["rule", "fired", "events"],
        rows: rows
            .iter()
            .map(|(name, (fired, n))| vec![name.as_str().into(), (*fired).into(), (*n).into()])
            .collect(),
        chart: Some(Chart {
            title: "Times fired, by rule or detector".into(),
            categories: rows.iter().map(|(n, _)| n.to_string()).collect(),
            series: vec![("fired".into(), rows.iter().map(|(_, (f, _))| *f).collect())],
        }),
        extra: None,
    }
}

pub use super::completeness::completeness;
