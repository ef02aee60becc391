//! `meshaudit report`: SOC 2 evidence from a trail. Events are read (files, or stdin) and
//! reduced to a [`cube::Cube`] of counts; every section is computed from the cube; the folder
//! gets `index.html` (self-contained) and one CSV and one JSON file per section
//! (docs/report.md).

mod clickhouse;
pub use clickhouse::DEFAULT_EVENTS_TABLE;
mod completeness;
pub mod cube;
pub mod fact;
mod html;
pub mod period;
mod sections;
mod table;
mod unusual;

use std::path::Path;

use meshaudit::integrity::verify::record::Record;
use meshaudit::integrity::verify::{self, Verifier};
use meshaudit::route::path::PathPattern;

use crate::{input, output};
use cube::Cube;
use fact::Fact;
use period::{day_name, time_name, Hours, Periods, Side};
use table::Section;

/// What `meshaudit report` was asked.
pub struct Options {
    pub inputs: Vec<String>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub baseline_from: Option<u64>,
    pub baseline_to: Option<u64>,
    pub privileged: Vec<String>,
    pub hours: Option<Hours>,
    pub public_keys: Vec<String>,
    pub witness: Option<String>,
    pub out: String,
    /// The source instead of files: ClickHouse's HTTP interface, its events table (aggregated
    /// there) and its trail table (read by verify).
    pub clickhouse: Option<String>,
    pub clickhouse_events: String,
    pub clickhouse_table: String,
}

/// Exit: 0 written and the trail verifies, 1 written and `verify` found a violation.
pub fn run(o: &Options) -> Result<u8, String> {
    let periods = Periods::new(o.from, o.to, o.baseline_from, o.baseline_to)?;
    let patterns = o
        .privileged
        .iter()
        .map(|p| {
            PathPattern::parse(p)
                .map(|c| (p.clone(), c))
                .map_err(|e| format!("--privileged: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut verifier = Verifier::new(verify::Options {
        keys: crate::public_keys(&o.public_keys)?,
        ..verify::Options::default()
    });
    if let Some(path) = &o.witness {
        input::read_witness(path, &mut verifier)?;
    }
    let (cube, events) = match &o.clickhouse {
        Some(url) => from_clickhouse(o, url, &periods, &mut verifier)?,
        None => from_files(o, &periods, &mut verifier)?,
    };
    let verified = verifier.finish();
    let days = period_days(&cube, &periods);
    let sections = vec![
        sections::access(&cube, &days),
        sections::unauthenticated(&cube),
        sections::denied(&cube, &days),
        sections::privileged(&cube, &patterns),
        unusual::unusual(&cube, &periods, o.hours),
        sections::completeness(&cube, &verified),
        sections::redaction(&cube),
    ];
    let facts = header(o, &periods, &days, events);
    write(Path::new(&o.out), &facts, &sections)?;
    println!(
        "meshaudit report: {} (and a CSV and a JSON file per section); trail {}",
        Path::new(&o.out).join("index.html").display(),
        if verified.is_clean() {
            "verified clean"
        } else {
            "NOT clean: see the completeness section"
        }
    );
    Ok(if verified.is_clean() { 0 } else { 1 })
}

/// The cube aggregated here, every event also verified.
fn from_files(
    o: &Options,
    periods: &Periods,
    verifier: &mut Verifier,
) -> Result<(Cube, u64), String> {
    let mut cube = Cube::default();
    let mut events = 0u64;
    let mut progress = output::Progress::new("reading");
    let mut keys = fact::Keys::default();
    let mut sink = |r: &Record| {
        events += 1;
        ingest(&mut cube, &mut keys, periods, o.hours, r);
        verifier.add(r);
    };
    for path in &o.inputs {
        input::read_trail(path, &mut sink, &mut progress)?;
    }
    progress.done();
    Ok((cube, events))
}

/// The cube aggregated by ClickHouse; the stored lines streamed through verify.
fn from_clickhouse(
    o: &Options,
    url: &str,
    periods: &Periods,
    verifier: &mut Verifier,
) -> Result<(Cube, u64), String> {
    let cube = clickhouse::cube(url, &o.clickhouse_events, periods, o.hours)?;
    let mut events = 0u64;
    let mut progress = output::Progress::new("verifying");
    let mut sink = |r: &Record| {
        events += 1;
        verifier.add(r);
    };
    crate::clickhouse::read_trail(url, &o.clickhouse_table, &mut sink, &mut progress)?;
    progress.done();
    Ok((cube, events))
}

fn ingest(
    cube: &mut Cube,
    keys: &mut fact::Keys,
    periods: &Periods,
    hours: Option<Hours>,
    r: &Record,
) {
    let fields = keys.of(r);
    let fact = fact::of(&fields);
    if let Some(stream) = r.stream_id() {
        let gap = match &fact {
            Fact::Gap { lost, reason } => Some((*lost, reason.as_str())),
            _ => None,
        };
        cube.add_stream_event(periods, stream, || fact::workload(&fields), r.start_ns, gap);
    }
    if let Fact::Access(a) = fact {
        cube.add_access(periods, hours, a);
    }
}

/// The period's days: the window's, or (with no window) the first to the last day with events.
fn period_days(cube: &Cube, periods: &Periods) -> Vec<u64> {
    if let Some(w) = periods.period {
        return w.days().collect();
    }
    let day = || cube.side(Side::Period).map(|(k, _)| k.day);
    match (day().min(), day().max()) {
        (Some(a), Some(b)) => (a..=b).collect(),
        _ => Vec::new(),
    }
}

fn header(o: &Options, periods: &Periods, days: &[u64], events: u64) -> Vec<(String, String)> {
    let window = |w: Option<period::Window>| {
        w.map_or("-".to_string(), |w| {
            format!("{} to {} (exclusive)", time_name(w.from), time_name(w.to))
        })
    };
    let period = match periods.period {
        Some(_) => window(periods.period),
        None => match (days.first(), days.last()) {
            (Some(a), Some(b)) => format!(
                "every event outside the baseline: {} to {}",
                day_name(*a),
                day_name(*b)
            ),
            _ => "every event outside the baseline (none)".into(),
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    vec![
        ("period".into(), period),
        ("baseline".into(), window(periods.baseline)),
        ("read".into(), source(o, events)),
        (
            "generated".into(),
            format!(
                "{} by meshaudit {}",
                time_name(now),
                env!("CARGO_PKG_VERSION")
            ),
        ),
    ]
}

/// What was read: the files, or the ClickHouse tables (its URL without the password).
fn source(o: &Options, events: u64) -> String {
    match &o.clickhouse {
        Some(url) => format!(
            "{events} events verified from ClickHouse at {} ({}; the sections aggregated there from {})",
            crate::clickhouse::redact(url),
            o.clickhouse_table,
            o.clickhouse_events
        ),
        None => format!("{events} events from {}", o.inputs.join(", ")),
    }
}

fn write(dir: &Path, facts: &[(String, String)], sections: &[Section]) -> Result<(), String> {
    let put = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for s in sections {
        put(&format!("{}.csv", s.id), &table::csv(s))?;
        let json = serde_json::to_string_pretty(&table::json(s)).unwrap_or_default();
        put(&format!("{}.json", s.id), &(json + "\n"))?;
    }
    put("index.html", &html::page(facts, sections))
}
