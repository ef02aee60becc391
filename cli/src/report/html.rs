//! The report as one self-contained HTML page: inline CSS and SVG, no script, no network.

use std::fmt::Write as _;

use super::table::{Chart, Section};

/// Rows shown per table; the CSV and JSON files hold them all.
const MAX_ROWS: usize = 500;
/// Bar colours (Okabe-Ito: told apart by colour-blind readers and in print).
const COLOURS: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#999999",
];

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#222;margin:2em auto;max-width:1100px;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #0072B2;padding-bottom:.2em}\
.crit{font-size:.7em;background:#0072B2;color:#fff;border-radius:3px;padding:.1em .4em;margin-left:.5em;vertical-align:middle}\
.about{color:#555}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}dd{margin:0}\
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.8em 0}th,td{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top;overflow-wrap:break-word}\
th{background:#eef3f8}td.n{text-align:right;font-variant-numeric:tabular-nums}.more{color:#555;font-style:italic}\
svg{max-width:100%;height:auto}nav ol{columns:2}\
@media print{body{margin:0;max-width:none}h2{break-before:page}table{font-size:.75em}tr,svg{break-inside:avoid}nav{display:none}}";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: a header (`facts`: what was read, for which period), a contents list, the sections.
pub fn page(facts: &[(String, String)], sections: &[Section]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<title>meshaudit report</title><style>{STYLE}</style></head><body>\n<h1>meshaudit audit report</h1>\n"
    );
    definitions(&mut h, facts);
    h.push_str("<nav><ol>");
    for s in sections {
        let _ = write!(
            h,
            "<li><a href=\"#{}\">{}</a> ({})</li>",
            s.id,
            escape(s.title),
            s.criteria
        );
    }
    h.push_str("</ol></nav>\n");
    for s in sections {
        section(&mut h, s);
    }
    h.push_str("</body></html>\n");
    h
}

fn definitions(h: &mut String, items: &[(String, String)]) {
    h.push_str("<dl>");
    for (k, v) in items {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    h.push_str("</dl>\n");
}

fn section(h: &mut String, s: &Section) {
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{title}<span class=\"crit\">SOC 2 {crit}</span></h2>\n<p class=\"about\">{about}</p>\n",
        id = s.id,
        title = escape(s.title),
        crit = escape(s.criteria),
        about = escape(&s.about)
    );
    definitions(h, &s.summary);
    if let Some(c) = &s.chart {
        if c.total() > 0 {
            h.push_str(&chart(c));
        }
    }
    table(h, s);
    let _ = writeln!(
        h,
        "<p class=\"more\">All rows: {id}.csv, {id}.json</p></section>",
        id = s.id
    );
}

fn table(h: &mut String, s: &Section) {
    if s.rows.is_empty() {
        h.push_str("<p>None in the period.</p>\n");
        return;
    }
    h.push_str("<table><thead><tr>");
    for c in &s.columns {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr></thead><tbody>\n");
    for row in s.rows.iter().take(MAX_ROWS) {
        h.push_str("<tr>");
        for cell in row {
            let class = match cell {
                super::table::Cell::Text(_) => "",
                _ => " class=\"n\"",
            };
            // Long identities (SPIFFE ids, routes) may break after a slash.
            let text = escape(&cell.text()).replace('/', "/<wbr>");
            let _ = write!(h, "<td{class}>{text}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    if s.rows.len() > MAX_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"more\">{} of {} rows shown.</p>",
            MAX_ROWS,
            s.rows.len()
        );
    }
}

/// Stacked bars with a legend, scaled to the tallest bar.
pub fn chart(c: &Chart) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 60.0;
    let n = c.categories.len().max(1);
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            c.series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = (W - LEFT) / n as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        H + BOTTOM + 30.0,
        t = escape(&c.title)
    );
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"14\" font-size=\"13\" font-weight=\"600\">{}</text>",
        escape(&c.title)
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"34\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        LEFT - 6.0,
        max as u64
    );
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{W}\" y2=\"{}\" stroke=\"#999\"/>",
        H + 20.0,
        H + 20.0
    );
    for i in 0..n {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = H + 20.0;
        for (j, (name, values)) in c.series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let height = v as f64 / max * (H - 10.0);
            y -= height;
            let colour = COLOURS.get(j % COLOURS.len()).unwrap_or(&"#999");
            let _ = write!(
                s,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" fill=\"{colour}\"><title>{}: {}: {v}</title></rect>",
                escape(c.categories.get(i).map_or("", String::as_str)),
                escape(name)
            );
        }
        let every = n.div_ceil(15);
        if i % every == 0 {
            let label = c.categories.get(i).map_or("", String::as_str);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-40 {:.1} {})\">{}</text>",
                x + bar / 2.0,
                H + 34.0,
                x + bar / 2.0,
                H + 34.0,
                escape(label)
            );
        }
    }
    let mut lx = LEFT;
    for (j, (name, _)) in c.series.iter().enumerate() {
        let colour = COLOURS.get(j % COLOURS.len()).unwrap_or(&"#999");
        let y = H + BOTTOM + 20.0;
        let _ = write!(s, "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{y}\" font-size=\"11\">{}</text>", y - 9.0, lx + 14.0, escape(name));
        lx += 24.0 + 7.0 * name.chars().count() as f64;
    }
    s.push_str("</svg></figure>\n");
    s
}
