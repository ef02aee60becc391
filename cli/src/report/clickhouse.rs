//! The report's cube computed by ClickHouse: the definitions of `fact.rs` and `cube.rs` written as
//! SQL over the shipped schema's `meshaudit.events` (examples/clickhouse/schema.sql), so the
//! aggregation runs where the trail is and only the cube's cells travel. `cli/tests` and
//! `tests/e2e/test_report.py` check that both give the same report.

use std::collections::BTreeMap;
use std::io::BufRead;

use super::cube::{Counts, Cube, Key, StreamStats};
use super::fact::{Caller, CallerKind};
use super::period::{Hours, Periods, Side, Window};
use crate::clickhouse;

/// The table the report aggregates (the schema's).
pub const DEFAULT_EVENTS_TABLE: &str = "meshaudit.events";

/// The events the report counts as accesses (`fact::of`).
const ACCESS: &str = "(`event_name` = 'meshaudit.http' OR (`event_name` = 'meshaudit.tcp' AND `meshaudit.tcp.phase` = 'close'))";

/// ns since the epoch, from the RFC 3339 text meshaudit writes (always nine fraction digits).
const NS: &str = "((toUInt64(toUInt32(toDate(substring(`time`, 1, 10)))) * 86400 + toUInt64(substring(`time`, 12, 2)) * 3600 + toUInt64(substring(`time`, 15, 2)) * 60 + toUInt64(substring(`time`, 18, 2))) * 1000000000 + toUInt64(substring(`time`, 21, 9)))";

const WORKLOAD: &str = "concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), multiIf(`service.name` != '', `service.name`, `meshaudit.workload.name` != '', `meshaudit.workload.name`, 'unknown'))";

/// `fact::template`, segment by segment.
const TEMPLATE: &str = "arrayStringConcat(arrayMap(s -> multiIf(\
match(s, '^[0-9]+$'), '{n}', \
match(s, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'), '{uuid}', \
length(s) >= 16 AND match(s, '^[0-9a-fA-F]+$'), '{hex}', \
length(s) >= 12 AND match(s, '^[0-9A-Za-z_=.-]+$') AND length(replaceRegexpAll(s, '[^0-9]', '')) >= 2 AND length(replaceRegexpAll(s, '[^0-9]', '')) < length(s), '{id}', \
s), splitByChar('/', if(`url.path` = '', '/', replaceRegexpOne(`url.path`, '[?#].*$', '')))), '/')";

fn window(w: Option<Window>) -> String {
    w.map_or("0".into(), |w| {
        format!("(ns_ >= {} AND ns_ < {})", w.from, w.to)
    })
}

/// The columns every query derives per row: `ns_`, `side_`, `workload_`.
fn derived(periods: &Periods) -> String {
    let period = match periods.period {
        Some(_) => window(periods.period),
        None => "1".into(),
    };
    format!(
        "{NS} AS ns_, multiIf({}, 'baseline', {period}, 'period', '') AS side_, {WORKLOAD} AS workload_",
        window(periods.baseline)
    )
}

fn off_hours(hours: Option<Hours>) -> String {
    let Some((start, end)) = hours.map(Hours::minutes) else {
        return "0".into();
    };
    let minute = "(toUInt32(substring(`time`, 12, 2)) * 60 + toUInt32(substring(`time`, 15, 2)))";
    if start < end {
        format!("NOT ({minute} >= {start} AND {minute} < {end})")
    } else {
        format!("NOT ({minute} >= {start} OR {minute} < {end})")
    }
}

/// The cube's cells.
pub fn cells_sql(table: &str, periods: &Periods, hours: Option<Hours>) -> String {
    let tcp = "`event_name` = 'meshaudit.tcp'";
    format!(
        "SELECT side_, day_, service_, kind_, caller_, via_, method_, route_, reason_, policy_, \
count(), sum(denied_), sum(error_), sum(off_), min(ns_), max(ns_) FROM (SELECT {derived}, \
intDiv(ns_, {day}) AS day_, \
if(`meshaudit.envoy.listener_direction` = 'outbound' AND `server.address` != '', `server.address`, workload_) AS service_, \
multiIf(`enduser.id` != '', 'end_user', `meshaudit.peer.spiffe_id` != '', 'workload', 'unauthenticated') AS kind_, \
multiIf(`enduser.id` != '', `enduser.id`, `meshaudit.peer.spiffe_id` != '', `meshaudit.peer.spiffe_id`, `network.peer.address` != '', `network.peer.address`, 'unknown') AS caller_, \
if(`enduser.id` != '', `meshaudit.peer.spiffe_id`, '') AS via_, \
if({tcp}, 'TCP', if(`http.request.method` = '', '-', `http.request.method`)) AS method_, \
if({tcp}, if(`network.local.port` = 0, '', concat(':', toString(`network.local.port`))), {TEMPLATE}) AS route_, \
`meshaudit.decision` = 'deny' AS denied_, \
if(denied_, `meshaudit.decision.reason`, '') AS reason_, \
if(denied_, `meshaudit.decision.policy`, '') AS policy_, \
`http.response.status_code` >= 500 AS error_, \
{off} AS off_ \
FROM {table} WHERE {ACCESS}) WHERE side_ != '' \
GROUP BY side_, day_, service_, kind_, caller_, via_, method_, route_, reason_, policy_ FORMAT TabSeparated",
        derived = derived(periods),
        day = super::period::NS_PER_DAY,
        off = off_hours(hours),
    )
}

/// Redaction counts in the period: rule, times fired, events.
pub fn redactions_sql(table: &str, periods: &Periods) -> String {
    format!(
        "SELECT name_, sum(n_), count() FROM (SELECT {derived}, arrayJoin(`meshaudit.redaction.rules`) AS entry_, \
replaceRegexpOne(entry_, ':[^:]*$', '') AS name_, toUInt64OrZero(replaceRegexpOne(entry_, '^.*:', '')) AS n_ \
FROM {table} WHERE {ACCESS}) WHERE side_ = 'period' AND position(entry_, ':') > 0 GROUP BY name_ FORMAT TabSeparated",
        derived = derived(periods)
    )
}

/// Per stream in the period: workload, events, first and last, gap events, lost.
pub fn streams_sql(table: &str, periods: &Periods) -> String {
    format!(
        "SELECT `meshaudit.stream.id`, any(workload_), count(), min(ns_), max(ns_), countIf(gap_), sumIf(`meshaudit.gap.events`, gap_) \
FROM (SELECT {derived}, `event_name` = 'meshaudit.gap' AS gap_, `meshaudit.stream.id`, `meshaudit.gap.events` FROM {table}) \
WHERE side_ = 'period' AND `meshaudit.stream.id` != '' GROUP BY `meshaudit.stream.id` FORMAT TabSeparated",
        derived = derived(periods)
    )
}

/// Lost events per stream and reason in the period.
pub fn losses_sql(table: &str, periods: &Periods) -> String {
    format!(
        "SELECT `meshaudit.stream.id`, if(`meshaudit.gap.reason` = '', 'unknown', `meshaudit.gap.reason`) AS reason_, sum(`meshaudit.gap.events`) \
FROM (SELECT {derived}, `meshaudit.stream.id`, `meshaudit.gap.reason`, `meshaudit.gap.events` FROM {table} WHERE `event_name` = 'meshaudit.gap') \
WHERE side_ = 'period' AND `meshaudit.stream.id` != '' GROUP BY `meshaudit.stream.id`, reason_ FORMAT TabSeparated",
        derived = derived(periods)
    )
}

/// The cube, aggregated by the server at `url` over `table`.
pub fn cube(
    url: &str,
    table: &str,
    periods: &Periods,
    hours: Option<Hours>,
) -> Result<Cube, String> {
    clickhouse::check_table(table)?;
    let mut cube = Cube::default();
    rows(
        url,
        "aggregating accesses",
        &cells_sql(table, periods, hours),
        16,
        |f| {
            let n = |i: usize| number(f, i);
            let key = Key {
                side: if text(f, 0) == "baseline" {
                    Side::Baseline
                } else {
                    Side::Period
                },
                day: n(1)?,
                service: text(f, 2),
                caller: Caller {
                    kind: CallerKind::from_name(&text(f, 3)),
                    id: text(f, 4),
                    via: text(f, 5),
                },
                method: text(f, 6),
                route: text(f, 7),
                reason: text(f, 8),
                policy: text(f, 9),
            };
            let counts = Counts {
                requests: n(10)?,
                denied: n(11)?,
                errors: n(12)?,
                off_hours: n(13)?,
                first_ns: n(14)?,
                last_ns: n(15)?,
            };
            cube.cells.insert(key, counts);
            Ok(())
        },
    )?;
    rows(
        url,
        "aggregating redactions",
        &redactions_sql(table, periods),
        3,
        |f| {
            cube.redactions
                .insert(text(f, 0), (number(f, 1)?, number(f, 2)?));
            Ok(())
        },
    )?;
    rows(
        url,
        "aggregating streams",
        &streams_sql(table, periods),
        7,
        |f| {
            let stats = StreamStats {
                service: text(f, 1),
                events: number(f, 2)?,
                first_ns: number(f, 3)?,
                last_ns: number(f, 4)?,
                gaps: number(f, 5)?,
                lost: number(f, 6)?,
                reasons: BTreeMap::new(),
            };
            cube.streams.insert(text(f, 0), stats);
            Ok(())
        },
    )?;
    rows(
        url,
        "aggregating losses",
        &losses_sql(table, periods),
        3,
        |f| {
            if let Some(s) = cube.streams.get_mut(&text(f, 0)) {
                s.reasons.insert(text(f, 1), number(f, 2)?);
            }
            Ok(())
        },
    )?;
    Ok(cube)
}

fn text(fields: &[String], i: usize) -> String {
    fields.get(i).cloned().unwrap_or_default()
}

fn number(fields: &[String], i: usize) -> Result<u64, String> {
    let f = fields.get(i).map_or("", String::as_str);
    f.parse()
        .map_err(|_| format!("column {}: {f:?} is not a count", i + 1))
}

/// Each TabSeparated row of the answer, its fields unescaped, to `each`.
fn rows(
    url: &str,
    what: &str,
    sql: &str,
    columns: usize,
    mut each: impl FnMut(&[String]) -> Result<(), String>,
) -> Result<(), String> {
    let reader = clickhouse::select(url, what, sql)?;
    let shown = clickhouse::redact(url);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("ClickHouse at {shown}, {what}: {e}"))?;
        let fields: Vec<String> = line.split('\t').map(unescape).collect();
        if fields.len() != columns {
            return Err(format!(
                "ClickHouse at {shown}, {what}: row {} has {} fields, not {columns} (an error in the middle of the answer?): {}",
                i + 1,
                fields.len(),
                line.chars().take(200).collect::<String>()
            ));
        }
        each(&fields).map_err(|e| format!("ClickHouse at {shown}, {what}: row {}: {e}", i + 1))?;
    }
    Ok(())
}

/// TabSeparated's escapes: `\\t`, `\\n`, `\\\\` and the rest.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_separated_fields_are_unescaped() {
        assert_eq!(unescape(r"a\tb\\c\nd\'"), "a\tb\\c\nd'");
    }

    #[test]
    fn the_period_and_baseline_become_conditions_on_the_time() {
        let p =
            Periods::new(Some(100), Some(200), None, None).unwrap_or_else(|e| unreachable!("{e}"));
        let sql = cells_sql("meshaudit.events", &p, None);
        assert!(sql.contains("multiIf((ns_ >= 0 AND ns_ < 100), 'baseline', (ns_ >= 100 AND ns_ < 200), 'period', '')"), "{sql}");
        assert!(sql.contains("0 AS off_"));
        let h = Hours::parse("22:00-06:00").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(off_hours(Some(h)).contains(">= 1320 OR"));
    }
}
