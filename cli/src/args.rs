//! Command-line arguments.

pub const USAGE: &str = "\
meshaudit: prove an audit trail, report on it, check the filter's configuration

USAGE:
  meshaudit verify [OPTIONS] [FILE...]   check a trail (files, or stdin when none or `-`)
  meshaudit keygen [--out PREFIX]        write PREFIX.key (private) and PREFIX.pub
  meshaudit validate [--env NAME] FILE... check plugin configurations (JSON, Istio or Envoy
                                         YAML): FILE:LINE: FIELD: REASON; exit 0 valid,
                                         1 invalid, 2 unreadable (docs/cli.md)
  meshaudit schema                       print the plugin configuration's JSON Schema
  meshaudit report [OPTIONS] [FILE...]   SOC 2 evidence from a trail: a folder with index.html
                                         and a CSV and JSON file per section (docs/report.md)
  meshaudit help

verify reads meshaudit JSON lines, OTLP/JSON export requests (one per line, as the
OpenTelemetry Collector's file exporter writes) and OTLP protobuf export requests (a file of
one request, or of 4-byte big-endian length-prefixed requests), in any order and mix.

verify OPTIONS:
  --public-key FILE   a trusted public key (PEM or base64); repeat for several (rotation)
  --witness FILE      Envoy's log (or any file) holding `meshaudit-checkpoint {json}` lines
  --clickhouse URL    also read the trail from ClickHouse's HTTP interface (http://HOST:8123,
                      credentials as user:password@ or ?user=&password=; never printed)
  --clickhouse-table T  the table of stored lines (meshaudit.trail; examples/clickhouse)
  --json              the report as one JSON object
  --window N          events per stream waiting for their predecessor, at most (100000)

Exit: 0 clean, 1 a violation, 2 usage or input error.

report OPTIONS (times: YYYY-MM-DD or RFC 3339, UTC):
  --from T --to T     the period, --to exclusive (default: every event outside the baseline)
  --baseline-from T --baseline-to T
                      the history unusual activity is measured against (default: as long a
                      window right before --from; none without --from)
  --privileged PATTERN  a privileged route template (/admin/**, /users/*/keys); repeat
  --hours HH:MM-HH:MM working hours (UTC): end users' requests outside them are flagged
                      (default: not evaluated)
  --public-key FILE, --witness FILE   as for verify (the completeness section)
  --out DIR           where the report goes (meshaudit-report)
  --clickhouse URL    the source instead of files: ClickHouse's HTTP interface; the sections
                      are aggregated there (--clickhouse-events T, meshaudit.events), verify
                      reads the stored lines (--clickhouse-table T, meshaudit.trail)
Exit: 0 written and the trail verifies, 1 written and verify found a violation, 2 usage or
input error.
";

pub enum Command {
    Help,
    Keygen { out: String },
    Verify(Verify),
    Validate(crate::validate::Options),
    Schema,
    Report(crate::report::Options),
}

pub struct Verify {
    pub inputs: Vec<String>,
    pub public_keys: Vec<String>,
    pub witness: Option<String>,
    pub clickhouse: Option<String>,
    pub clickhouse_table: String,
    pub json: bool,
    pub window: usize,
}

pub fn parse(argv: &[String]) -> Result<Command, String> {
    let mut it = argv.iter();
    let usage = |why: &str| format!("{why}\n\n{USAGE}");
    match it.next().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => Ok(Command::Help),
        Some("keygen") => {
            let mut out = "meshaudit-signing".to_string();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--out" => out = value(&mut it, "--out")?,
                    other => return Err(usage(&format!("keygen: unknown argument {other:?}"))),
                }
            }
            Ok(Command::Keygen { out })
        }
        Some("verify") => {
            let mut v = Verify {
                inputs: Vec::new(),
                public_keys: Vec::new(),
                witness: None,
                clickhouse: None,
                clickhouse_table: crate::clickhouse::DEFAULT_TABLE.to_string(),
                json: false,
                window: 100_000,
            };
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--public-key" => v.public_keys.push(value(&mut it, "--public-key")?),
                    "--witness" => v.witness = Some(value(&mut it, "--witness")?),
                    "--clickhouse" => v.clickhouse = Some(value(&mut it, "--clickhouse")?),
                    "--clickhouse-table" => {
                        v.clickhouse_table = value(&mut it, "--clickhouse-table")?;
                    }
                    "--json" => v.json = true,
                    "--window" => {
                        let n = value(&mut it, "--window")?;
                        v.window =
                            n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                                format!("--window: {n:?} is not a positive number")
                            })?;
                    }
                    "-" => v.inputs.push("-".into()),
                    flag if flag.starts_with("--") => {
                        return Err(usage(&format!("verify: unknown option {flag:?}")))
                    }
                    path => v.inputs.push(path.to_string()),
                }
            }
            if v.inputs.is_empty() && v.clickhouse.is_none() {
                v.inputs.push("-".into());
            }
            Ok(Command::Verify(v))
        }
        Some("validate") => validate(it).map_err(|why| usage(&why)),
        Some("report") => report(it).map_err(|why| usage(&why)),
        Some("schema") => match it.next() {
            None => Ok(Command::Schema),
            Some(a) => Err(usage(&format!("schema: unknown argument {a:?}"))),
        },
        Some(other) => Err(usage(&format!("unknown command {other:?}"))),
    }
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<String, String> {
    it.next()
        .cloned()
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn validate<'a>(mut it: impl Iterator<Item = &'a String>) -> Result<Command, String> {
    let mut o = crate::validate::Options {
        inputs: Vec::new(),
        env: Vec::new(),
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--env" => o.env.push(value(&mut it, "--env")?),
            flag if flag.starts_with("--") => {
                return Err(format!("validate: unknown option {flag:?}"))
            }
            path => o.inputs.push(path.to_string()),
        }
    }
    if o.inputs.is_empty() {
        return Err("validate: name at least one file".into());
    }
    Ok(Command::Validate(o))
}

fn report<'a>(mut it: impl Iterator<Item = &'a String>) -> Result<Command, String> {
    use crate::report::period::{parse_time, Hours};
    let mut o = crate::report::Options {
        inputs: Vec::new(),
        from: None,
        to: None,
        baseline_from: None,
        baseline_to: None,
        privileged: Vec::new(),
        hours: None,
        public_keys: Vec::new(),
        witness: None,
        out: "meshaudit-report".into(),
        clickhouse: None,
        clickhouse_events: crate::report::DEFAULT_EVENTS_TABLE.into(),
        clickhouse_table: crate::clickhouse::DEFAULT_TABLE.into(),
    };
    while let Some(a) = it.next() {
        let flag = a.as_str();
        match flag {
            "--from" | "--to" | "--baseline-from" | "--baseline-to" => {
                let t = Some(parse_time(flag, &value(&mut it, flag)?)?);
                match flag {
                    "--from" => o.from = t,
                    "--to" => o.to = t,
                    "--baseline-from" => o.baseline_from = t,
                    _ => o.baseline_to = t,
                }
            }
            "--privileged" => o.privileged.push(value(&mut it, flag)?),
            "--hours" => o.hours = Some(Hours::parse(&value(&mut it, flag)?)?),
            "--public-key" => o.public_keys.push(value(&mut it, flag)?),
            "--witness" => o.witness = Some(value(&mut it, flag)?),
            "--out" => o.out = value(&mut it, flag)?,
            "--clickhouse" => o.clickhouse = Some(value(&mut it, flag)?),
            "--clickhouse-events" => o.clickhouse_events = value(&mut it, flag)?,
            "--clickhouse-table" => o.clickhouse_table = value(&mut it, flag)?,
            "-" => o.inputs.push("-".into()),
            f if f.starts_with("--") => return Err(format!("report: unknown option {f:?}")),
            path => o.inputs.push(path.to_string()),
        }
    }
    if o.clickhouse.is_some() && !o.inputs.is_empty() {
        return Err("report: one source, files or --clickhouse, not both".into());
    }
    if o.inputs.is_empty() && o.clickhouse.is_none() {
        o.inputs.push("-".into());
    }
    Ok(Command::Report(o))
}
