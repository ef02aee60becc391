//! A section of the report as data (a table, a summary, a chart) and its CSV and JSON forms.

use serde_json::{json, Map, Value};

/// One value of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(u64),
    Num(f64),
}

impl Cell {
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Num(x) => format!("{x:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Int(n) => json!(n),
            Cell::Num(x) => json!(x),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Int(n)
    }
}

impl From<f64> for Cell {
    fn from(x: f64) -> Cell {
        Cell::Num(x)
    }
}

/// Stacked bars: one bar per category, one segment per series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub categories: Vec<String>,
    pub series: Vec<(String, Vec<u64>)>,
}

impl Chart {
    pub fn total(&self) -> u64 {
        self.series.iter().flat_map(|(_, v)| v).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The file name (`ID.csv`, `ID.json`) and the HTML anchor.
    pub id: &'static str,
    pub title: &'static str,
    /// The SOC 2 criteria it serves.
    pub criteria: &'static str,
    /// What it shows and how it is computed.
    pub about: String,
    pub summary: Vec<(String, String)>,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    pub chart: Option<Chart>,
    /// More, for machines only (the verify report).
    pub extra: Option<Value>,
}

/// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled. A field a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
pub fn csv(s: &Section) -> String {
    let mut out = String::new();
    push_row(&mut out, s.columns.iter().map(|c| c.to_string()));
    for row in &s.rows {
        push_row(&mut out, row.iter().map(csv_field));
    }
    out
}

fn csv_field(c: &Cell) -> String {
    match c {
        Cell::Text(t) if t.starts_with(['=', '+', '-', '@']) => format!("'{t}"),
        other => other.text(),
    }
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
}

/// The section as one JSON object: rows as objects keyed by column.
pub fn json(s: &Section) -> Value {
    let rows: Vec<Value> = s
        .rows
        .iter()
        .map(|r| {
            let m: Map<String, Value> = s
                .columns
                .iter()
                .zip(r)
                .map(|(c, v)| (c.to_string(), v.json()))
                .collect();
            Value::Object(m)
        })
        .collect();
    let summary: Map<String, Value> = s
        .summary
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut v = json!({
        "id": s.id,
        "title": s.title,
        "criteria": s.criteria,
        "about": s.about,
        "summary": summary,
        "columns": s.columns,
        "rows": rows,
    });
    if let (Some(chart), Some(obj)) = (&s.chart, v.as_object_mut()) {
        let series: Map<String, Value> = chart
            .series
            .iter()
            .map(|(name, values)| (name.clone(), json!(values)))
            .collect();
        obj.insert(
            "chart".into(),
            json!({"title": chart.title, "categories": chart.categories, "series": series}),
        );
    }
    if let (Some(extra), Some(obj)) = (&s.extra, v.as_object_mut()) {
        obj.insert("verify".into(), extra.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let s = Section {
            id: "t",
            title: "T",
            criteria: "",
            about: String::new(),
            summary: Vec::new(),
            columns: vec!["a", "b", "c"],
            rows: vec![vec![
                Cell::from("x,\"y\""),
                Cell::from("=HYPERLINK(1)"),
                Cell::Num(0.25),
            ]],
            chart: None,
            extra: None,
        };
        assert_eq!(csv(&s), "a,b,c\r\n\"x,\"\"y\"\"\",'=HYPERLINK(1),0.25\r\n");
        assert_eq!(json(&s)["rows"][0]["c"], json!(0.25));
    }
}
