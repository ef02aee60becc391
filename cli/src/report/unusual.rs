//! Unusual activity: each rule compares the period with the baseline (or with the period's other
//! identities) by a robust statistic, median and MAD, and every flag carries the numbers behind
//! it. Identities are authenticated callers (workloads and end users): unauthenticated access
//! has its own section.

use std::collections::{BTreeMap, BTreeSet};

use super::cube::{Counts, Cube, Key};
use super::fact::CallerKind;
use super::period::{day_name, Hours, Periods, Side, NS_PER_DAY};
use super::table::{Cell, Section};

/// MAD times this estimates a normal distribution's standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;
/// How many estimated standard deviations above the median a value must be.
const SIGMAS: f64 = 6.0;
/// A day's requests are a spike above median + max(6σ, half the median, this).
const MIN_VOLUME_RISE: f64 = 10.0;
/// A day's denial rate is a spike above median + max(6σ, this), with at least
/// [`MIN_DENIALS`] denials.
const MIN_RATE_RISE: f64 = 0.2;
const MIN_DENIALS: u64 = 10;
/// An identity reaches unusually many services above median + max(6σ, this) across identities.
const MIN_SERVICES_RISE: f64 = 3.0;

type Identity = (CallerKind, String);

fn identity(k: &Key) -> Option<Identity> {
    (k.caller.kind != CallerKind::Unauthenticated).then(|| (k.caller.kind, k.caller.id.clone()))
}

fn name(i: &Identity) -> String {
    format!("{}:{}", i.0.name(), i.1)
}

/// Median and MAD (`None` for no values).
pub fn median_mad(values: &[f64]) -> Option<(f64, f64)> {
    let med = median(values.to_vec())?;
    let dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    Some((med, median(dev)?))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

struct Flag {
    rule: &'static str,
    when: String,
    identity: String,
    service: String,
    observed: f64,
    median: Option<f64>,
    mad: Option<f64>,
    threshold: Option<f64>,
    why: String,
}

pub fn unusual(cube: &Cube, periods: &Periods, hours: Option<Hours>) -> Section {
    let baseline_days = baseline_days(cube, periods);
    let mut flags = Vec::new();
    let has_baseline = !baseline_days.is_empty();
    let (before, now) = (daily(cube, Side::Baseline), daily(cube, Side::Period));
    if has_baseline {
        new_pairs(cube, &mut flags);
        volume_spikes((&before, &now), &baseline_days, &mut flags);
    }
    denial_spikes((&before, &now), &baseline_days, &mut flags);
    if let Some(h) = hours {
        off_hours(cube, h, &mut flags);
    }
    many_services(cube, &mut flags);
    section(flags, has_baseline, &baseline_days, hours)
}

/// The baseline's days, from the first with any event (days before the trail began are not
/// quiet days).
fn baseline_days(cube: &Cube, periods: &Periods) -> Vec<u64> {
    let Some(window) = periods.baseline else {
        return Vec::new();
    };
    let Some(first) = cube.side(Side::Baseline).map(|(k, _)| k.day).min() else {
        return Vec::new();
    };
    window.days().filter(|d| *d >= first).collect()
}

/// Per identity and day, (requests, denied).
type Daily = BTreeMap<Identity, BTreeMap<u64, (u64, u64)>>;

/// The daily counts of one side.
fn daily(cube: &Cube, side: Side) -> Daily {
    let mut out = Daily::new();
    for (k, c) in cube.side(side) {
        if let Some(i) = identity(k) {
            let e = out.entry(i).or_default().entry(k.day).or_default();
            e.0 += c.requests;
            e.1 += c.denied;
        }
    }
    out
}

/// Per identity and service in the period, over the cells `count` numbers: (sum, first seen).
fn per_pair(
    cube: &Cube,
    count: impl Fn(&Key, &Counts) -> Option<u64>,
) -> BTreeMap<(Identity, &str), (u64, u64)> {
    let mut by: BTreeMap<(Identity, &str), (u64, u64)> = BTreeMap::new();
    for (k, c) in cube.side(Side::Period) {
        let (Some(i), Some(n)) = (identity(k), count(k, c)) else {
            continue;
        };
        let e = by.entry((i, k.service.as_str())).or_insert((0, c.first_ns));
        e.0 += n;
        e.1 = e.1.min(c.first_ns);
    }
    by
}

/// A flag on one identity and service, first seen at `first`.
fn pair_flag(
    rule: &'static str,
    (i, service): (Identity, &str),
    (n, first): (u64, u64),
    why: String,
) -> Flag {
    Flag {
        rule,
        when: day_name(first / NS_PER_DAY),
        identity: name(&i),
        service: service.to_string(),
        observed: n as f64,
        median: None,
        mad: None,
        threshold: None,
        why,
    }
}

fn new_pairs(cube: &Cube, flags: &mut Vec<Flag>) {
    let known: BTreeSet<(Identity, &str)> = cube
        .side(Side::Baseline)
        .filter_map(|(k, _)| Some((identity(k)?, k.service.as_str())))
        .collect();
    let new = per_pair(cube, |k, c| {
        let i = identity(k)?;
        (!known.contains(&(i, k.service.as_str()))).then_some(c.requests)
    });
    for ((i, service), counts) in new {
        let why = format!(
            "{} called {service} {} times in the period and never in the baseline",
            name(&i),
            counts.0
        );
        flags.push(pair_flag("new_pair", (i, service), counts, why));
    }
}

fn volume_spikes((before, now): (&Daily, &Daily), baseline_days: &[u64], flags: &mut Vec<Flag>) {
    for (i, days) in now {
        let Some(history) = before.get(i) else {
            continue;
        };
        let values: Vec<f64> = baseline_days
            .iter()
            .map(|d| history.get(d).map_or(0.0, |c| c.0 as f64))
            .collect();
        let Some((med, mad)) = median_mad(&values) else {
            continue;
        };
        let threshold = med
            + (SIGMAS * MAD_TO_SIGMA * mad)
                .max(med / 2.0)
                .max(MIN_VOLUME_RISE);
        for (&day, &(requests, _)) in days {
            if requests as f64 > threshold {
                flags.push(Flag {
                    rule: "volume_spike",
                    when: day_name(day),
                    identity: name(i),
                    service: String::new(),
                    observed: requests as f64,
                    median: Some(med),
                    mad: Some(mad),
                    threshold: Some(threshold),
                    why: format!("{requests} requests in a day against a baseline median of {med} (MAD {mad}); flagged above median + max(6 × 1.4826 × MAD, median / 2, 10) = {threshold:.1}"),
                });
            }
        }
    }
}

fn denial_spikes((before, now): (&Daily, &Daily), baseline_days: &[u64], flags: &mut Vec<Flag>) {
    for (i, days) in now {
        let rates: Vec<f64> = before
            .get(i)
            .map(|h| {
                baseline_days
                    .iter()
                    .filter_map(|d| {
                        h.get(d)
                            .filter(|c| c.0 > 0)
                            .map(|c| c.1 as f64 / c.0 as f64)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (med, mad) = median_mad(&rates).unwrap_or((0.0, 0.0));
        let threshold = med + (SIGMAS * MAD_TO_SIGMA * mad).max(MIN_RATE_RISE);
        for (&day, &(requests, denied)) in days {
            let rate = denied as f64 / requests.max(1) as f64;
            if denied >= MIN_DENIALS && rate > threshold {
                flags.push(Flag {
                    rule: "denial_spike",
                    when: day_name(day),
                    identity: name(i),
                    service: String::new(),
                    observed: rate,
                    median: Some(med),
                    mad: Some(mad),
                    threshold: Some(threshold),
                    why: format!("{denied} of {requests} requests denied ({:.1}%) against a baseline median rate of {:.1}% (MAD {:.3}, {} baseline days with traffic); flagged above median + max(6 × 1.4826 × MAD, 0.2) = {:.3} with at least {MIN_DENIALS} denials", rate * 100.0, med * 100.0, mad, rates.len(), threshold),
                });
            }
        }
    }
}

fn off_hours(cube: &Cube, hours: Hours, flags: &mut Vec<Flag>) {
    let outside = per_pair(cube, |k, c| {
        (k.caller.kind == CallerKind::EndUser && c.off_hours > 0).then_some(c.off_hours)
    });
    for (pair, counts) in outside {
        let why = format!(
            "{} requests outside the working hours ({})",
            counts.0,
            hours.describe()
        );
        flags.push(pair_flag("off_hours", pair, counts, why));
    }
}

fn many_services(cube: &Cube, flags: &mut Vec<Flag>) {
    let reach = |side| {
        let mut m: BTreeMap<Identity, BTreeSet<&str>> = BTreeMap::new();
        for (k, _) in cube.side(side) {
            if let Some(i) = identity(k) {
                m.entry(i).or_default().insert(&k.service);
            }
        }
        m
    };
    let (now, before) = (reach(Side::Period), reach(Side::Baseline));
    let counts: Vec<f64> = now.values().map(|s| s.len() as f64).collect();
    let Some((med, mad)) = median_mad(&counts) else {
        return;
    };
    let across = med + (SIGMAS * MAD_TO_SIGMA * mad).max(MIN_SERVICES_RISE);
    for (i, services) in &now {
        let own = before.get(i).map_or(0, BTreeSet::len) as f64;
        let threshold = across.max(own);
        let n = services.len() as f64;
        if n > threshold {
            flags.push(Flag {
                rule: "many_services",
                when: "period".into(),
                identity: name(i),
                service: String::new(),
                observed: n,
                median: Some(med),
                mad: Some(mad),
                threshold: Some(threshold),
                why: format!("reached {n} services against a median of {med} across {} identities (MAD {mad}) and {own} in its own baseline; flagged above max(median + max(6 × 1.4826 × MAD, 3), its baseline) = {threshold:.1}", counts.len()),
            });
        }
    }
}

fn section(
    flags: Vec<Flag>,
    has_baseline: bool,
    baseline_days: &[u64],
    hours: Option<Hours>,
) -> Section {
    let mut rules: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &flags {
        *rules.entry(f.rule).or_default() += 1;
    }
    let mut summary = vec![("flags".to_string(), flags.len().to_string())];
    summary.push((
        "baseline".into(),
        if has_baseline {
            format!(
                "{} days, {} to {}",
                baseline_days.len(),
                day_name(*baseline_days.first().unwrap_or(&0)),
                day_name(*baseline_days.last().unwrap_or(&0))
            )
        } else {
            "no events in the baseline: new pairs and volume spikes not evaluated".into()
        },
    ));
    summary.push((
        "working hours".into(),
        hours.map_or(
            "not given (--hours): off-hours access not evaluated".into(),
            Hours::describe,
        ),
    ));
    summary.extend(
        rules
            .iter()
            .map(|(r, n)| (format!("rule {r}"), n.to_string())),
    );
    let opt = |x: Option<f64>| x.map_or(Cell::Text(String::new()), Cell::Num);
    Section {
        id: "unusual",
        title: "Unusual activity",
        criteria: "CC7.2",
        about: "Rules, each with the numbers behind every flag: new_pair (an identity calling a service it never called in the baseline), volume_spike (a day's requests of an identity above its own baseline days' median + max(6 × 1.4826 × MAD, median / 2, 10)), denial_spike (a day's denial rate of an identity above its baseline median rate + max(6 × 1.4826 × MAD, 0.2), with at least 10 denials), off_hours (an end user's requests outside --hours), many_services (an identity reaching more services than the period's median across identities + max(6 × 1.4826 × MAD, 3) and than in its own baseline). Identities are workloads and end users.".into(),
        summary,
        columns: vec!["rule", "when", "identity", "service", "observed", "median", "mad", "threshold", "explanation"],
        rows: flags
            .into_iter()
            .map(|f| {
                vec![
                    f.rule.into(),
                    f.when.into(),
                    f.identity.into(),
                    f.service.into(),
                    Cell::Num(f.observed),
                    opt(f.median),
                    opt(f.mad),
                    opt(f.threshold),
                    f.why.into(),
                ]
            })
            .collect(),
        chart: None,
        extra: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_resist_an_outlier() {
        assert_eq!(median_mad(&[]), None);
        assert_eq!(median_mad(&[4.0]), Some((4.0, 0.0)));
        assert_eq!(median_mad(&[1.0, 2.0, 3.0, 4.0, 1000.0]), Some((3.0, 1.0)));
        assert_eq!(median_mad(&[1.0, 3.0]), Some((2.0, 1.0)));
    }
}
