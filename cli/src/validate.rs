//! `meshaudit validate`: checks plugin configurations before they are applied, with the filter's
//! own loader (`Plugin::load`), wherever they sit:
//!
//! - a JSON file: the plugin configuration itself, given to the loader byte for byte;
//! - Kubernetes YAML (several documents per file): the `pluginConfig` of a `WasmPlugin` or of a
//!   `TrafficExtension`'s `spec.wasm`, turned into JSON as istiod does (a protobuf Struct: keys
//!   sorted, every number a double written as Go writes a float64); the wasm filters inside an
//!   `EnvoyFilter`'s patches;
//! - an Envoy configuration (YAML or JSON, a bootstrap or an xDS response): the `configuration`
//!   of every wasm plugin whose `root_id` is `meshaudit` or whose code is a meshaudit module.
//!
//! Settings that name an environment variable (the hash key, collector credentials) are checked
//! with a placeholder value and reported as warnings, unless `--env NAME` supplies the value.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use meshaudit::config::{Config, ConfigError};
use meshaudit::plugin::Plugin;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// What the user asked for.
pub struct Options {
    pub inputs: Vec<String>,
    /// Variables whose values come from this process's environment instead of a placeholder.
    pub env: Vec<String>,
}

/// Exit codes: 0 valid, 1 invalid, 2 unreadable (or nothing to check).
pub const INVALID: u8 = 1;
pub const UNREADABLE: u8 = 2;

/// The value a variable the configuration needs gets when `--env` does not supply it: long
/// enough for a hash key, printable for a header.
const PLACEHOLDER: &[u8] = b"meshaudit-validate-placeholder-value";

const ROOT_ID: &str = "meshaudit";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// One line of the report.
struct Finding {
    line: usize,
    warning: bool,
    text: String,
}

/// The outcome of one file.
#[derive(Default)]
struct FileReport {
    configurations: usize,
    findings: Vec<Finding>,
}

impl FileReport {
    fn error(&mut self, line: usize, e: &ConfigError) {
        self.findings.push(Finding {
            line,
            warning: false,
            text: e.to_string(),
        });
    }

    fn invalid(&self) -> bool {
        self.findings.iter().any(|f| !f.warning)
    }
}

pub fn run(o: &Options) -> Result<u8, String> {
    let mut supplied = BTreeMap::new();
    for name in &o.env {
        let value = std::env::var_os(name)
            .ok_or_else(|| format!("--env {name}: not set in this environment"))?;
        supplied.insert(name.clone(), value.into_encoded_bytes());
    }
    let (mut code, mut configurations, mut invalid) = (0u8, 0usize, 0usize);
    let mut out = String::new();
    for path in &o.inputs {
        let report = match std::fs::read(path) {
            Err(e) => Err(format!("{e}")),
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(|text| check_file(&text, &supplied)),
        };
        match report {
            Err(why) => {
                eprintln!("{path}: {why}");
                code = UNREADABLE;
            }
            Ok(r) => {
                if r.configurations == 0 {
                    eprintln!("{path}: no meshaudit plugin configuration in it");
                }
                configurations += r.configurations;
                if r.invalid() {
                    invalid += 1;
                    code = code.max(INVALID);
                }
                for f in &r.findings {
                    let kind = if f.warning { "warning: " } else { "" };
                    let _ = writeln!(out, "{path}:{}: {kind}{}", f.line, f.text);
                }
            }
        }
    }
    print!("{out}");
    if configurations == 0 && code == 0 {
        eprintln!("meshaudit validate: no meshaudit plugin configuration found");
        return Ok(UNREADABLE);
    }
    eprintln!(
        "meshaudit validate: {configurations} plugin configuration(s) checked, {invalid} file(s) invalid"
    );
    Ok(code)
}

/// Every plugin configuration of one file, checked.
fn check_file(text: &str, env: &BTreeMap<String, Vec<u8>>) -> Result<FileReport, String> {
    let mut report = FileReport::default();
    let json = text.trim_start().starts_with('{');
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        // A JSON plugin configuration the YAML parser cannot read: the loader says why.
        Err(_) if json => {
            check(text.as_bytes(), &|_| 1, env, &mut report);
            return Ok(report);
        }
        Err(e) => return Err(format!("{}: not YAML: {}", e.marker().line(), e.info())),
    };
    for doc in &docs {
        if json && kubernetes_kind(doc).is_none() && wasm_plugins(doc).is_empty() && !envoy(doc) {
            // The plugin configuration itself: the loader reads the file as Envoy would.
            check(
                text.as_bytes(),
                &|field| locate(doc, field),
                env,
                &mut report,
            );
            return Ok(report);
        }
        match kubernetes_kind(doc) {
            Some("WasmPlugin") => istio_plugin(doc, get(doc, "spec"), text, env, &mut report),
            Some("TrafficExtension") => {
                let wasm = get(doc, "spec").and_then(|s| get(s, "wasm"));
                istio_plugin(doc, wasm, text, env, &mut report);
            }
            // EnvoyFilter, or an Envoy configuration: the wasm plugins anywhere in it.
            Some("EnvoyFilter") | None => {
                let mut seen = BTreeSet::new();
                for plugin in wasm_plugins(doc) {
                    // A YAML alias repeats a filter: check it once, where it is written.
                    if seen.insert(plugin.span.start.index()) {
                        envoy_plugin(plugin, text, env, &mut report);
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(report)
}

/// `kind` of a Kubernetes object (a document with `apiVersion` and `kind`).
fn kubernetes_kind<'a>(doc: &'a MarkedYaml) -> Option<&'a str> {
    get(doc, "apiVersion")?;
    get(doc, "kind").and_then(as_str)
}

/// Whether a document reads like an Envoy configuration or xDS response.
fn envoy(doc: &MarkedYaml) -> bool {
    [
        "static_resources",
        "dynamic_resources",
        "resources",
        "node",
        "admin",
    ]
    .iter()
    .any(|k| get(doc, k).is_some())
}

/// A WasmPlugin's spec or a TrafficExtension's `spec.wasm`: its `pluginConfig`, if the plugin
/// is meshaudit (`pluginName: meshaudit`, or a module URL that names meshaudit).
fn istio_plugin(
    doc: &MarkedYaml,
    wasm: Option<&MarkedYaml>,
    text: &str,
    env: &BTreeMap<String, Vec<u8>>,
    report: &mut FileReport,
) {
    let Some(wasm) = wasm else { return };
    let named = get(wasm, "pluginName").and_then(as_str) == Some(ROOT_ID);
    let url = get(wasm, "url").and_then(as_str).unwrap_or_default();
    if !named && !url.contains(ROOT_ID) {
        return;
    }
    let Some(pc) = get(wasm, "pluginConfig").filter(|pc| !is_null(pc)) else {
        // No pluginConfig: istiod sends no configuration, the filter runs on its defaults.
        check(b"", &|_| doc.span.start.line(), env, report);
        return;
    };
    match struct_json(pc, text) {
        Ok(json) => check(json.as_bytes(), &|field| locate(pc, field), env, report),
        Err((line, why)) => {
            report.configurations += 1;
            report.findings.push(Finding {
                line,
                warning: false,
                text: why,
            });
        }
    }
}

/// One Envoy wasm plugin (`name`, `root_id`, `vm_config`, `configuration`).
fn envoy_plugin(
    plugin: &MarkedYaml,
    text: &str,
    env: &BTreeMap<String, Vec<u8>>,
    report: &mut FileReport,
) {
    let line = plugin.span.start.line();
    let Some(cfg) = field(plugin, &["configuration"]).filter(|c| !is_null(c)) else {
        check(b"", &|_| line, env, report);
        return;
    };
    let type_url = get(cfg, "@type").and_then(as_str).unwrap_or_default();
    let value = get(cfg, "value");
    match (type_url, value) {
        (STRING_VALUE, Some(v)) => {
            let s = as_str(v).unwrap_or_default();
            // The JSON's own positions, mapped onto the file when it is a literal block (`|`)
            // whose lines are the file's; else the line where the string starts.
            let start = v.span.start;
            let before: String = text.chars().take(start.index()).collect();
            let indicator = before.trim_end().trim_end_matches(['-', '+']);
            let literal = indicator
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .ends_with('|');
            let inner = MarkedYaml::load_from_str(s).ok();
            // A block scalar's span starts at its first line of content.
            let locate_in = |f: &str| match inner.as_ref().and_then(|d| d.first()) {
                Some(doc) if literal => start.line() + locate(doc, f) - 1,
                _ => start.line(),
            };
            check(s.as_bytes(), &locate_in, env, report);
        }
        (STRUCT, Some(v)) => match struct_json(v, text) {
            Ok(json) => check(json.as_bytes(), &|f| locate(v, f), env, report),
            Err((line, why)) => {
                report.configurations += 1;
                report.findings.push(Finding {
                    line,
                    warning: false,
                    text: why,
                });
            }
        },
        _ => {
            report.configurations += 1;
            report.findings.push(Finding {
                line: cfg.span.start.line(),
                warning: false,
                text: format!(
                    "configuration: meshaudit reads JSON: a {STRING_VALUE} (or a Struct), not {type_url:?}"
                ),
            });
        }
    }
}

/// Every wasm plugin configuration in a document: a mapping with `vm_config` whose `root_id` is
/// meshaudit's, or whose module (a local file or a remote URL) is named meshaudit.
fn wasm_plugins<'a, 'i>(node: &'a MarkedYaml<'i>) -> Vec<&'a MarkedYaml<'i>> {
    let mut found = Vec::new();
    walk(node, &mut |n| {
        let Some(vm) = field(n, &["vm_config", "vmConfig"]) else {
            return;
        };
        let root = field(n, &["root_id", "rootId"]).and_then(as_str);
        let code = field(vm, &["code"]);
        let module = [
            code.and_then(|c| get(c, "local"))
                .and_then(|l| get(l, "filename")),
            code.and_then(|c| get(c, "remote"))
                .and_then(|r| field(r, &["http_uri", "httpUri"]))
                .and_then(|h| get(h, "uri")),
        ]
        .into_iter()
        .flatten()
        .filter_map(as_str)
        .any(|m| m.contains(ROOT_ID));
        if root == Some(ROOT_ID) || module {
            found.push(n);
        }
    });
    found
}

fn walk<'a, 'i>(node: &'a MarkedYaml<'i>, f: &mut impl FnMut(&'a MarkedYaml<'i>)) {
    f(node);
    match &node.data {
        YamlData::Mapping(m) => m.values().for_each(|v| walk(v, f)),
        YamlData::Sequence(s) => s.iter().for_each(|v| walk(v, f)),
        YamlData::Tagged(_, inner) => walk(inner, f),
        _ => {}
    }
}

/// Loads one configuration with the filter's own loader, reporting where it fails. A variable
/// the configuration needs gets a placeholder (and a warning) unless `--env` supplied it.
fn check(
    raw: &[u8],
    locate: &dyn Fn(&str) -> usize,
    supplied: &BTreeMap<String, Vec<u8>>,
    report: &mut FileReport,
) {
    report.configurations += 1;
    let env = RefCell::new(supplied.clone());
    let mut placeholders: Vec<(String, String)> = Vec::new();
    loop {
        let lookup = |name: &str| env.borrow().get(name).cloned();
        match Plugin::load(raw, lookup) {
            Ok(_) => {
                for (field, var) in &placeholders {
                    let shown = meshaudit::environment::shown(field, var);
                    report.findings.push(Finding {
                        line: locate(field),
                        warning: true,
                        text: format!(
                            "{field}: needs variable {shown} in the proxy's environment \
                             (Istio: vmConfig.env; Envoy: vm_config.environment_variables); checked with a placeholder, \
                             `--env {var}` checks the value"
                        ),
                    });
                }
                return;
            }
            Err(e) => {
                let var = needed_variable(raw, &e);
                match var {
                    Some(var) if !env.borrow().contains_key(&var) => {
                        env.borrow_mut().insert(var.clone(), PLACEHOLDER.to_vec());
                        placeholders.push((e.field.clone(), var));
                    }
                    _ => {
                        report.error(locate(&e.field), &e);
                        return;
                    }
                }
            }
        }
    }
}

/// The variable a refusal is about, when it is one the loader reads from the environment.
fn needed_variable(raw: &[u8], e: &ConfigError) -> Option<String> {
    let config = Config::parse(raw).ok()?;
    if e.field == "redaction.hash_key_env" {
        return Some(config.redaction.hash_key_env);
    }
    let header = e.field.strip_prefix("collector.headers.")?;
    config.collector.headers.get(header).cloned()
}

/// The line of the field a dotted path (`redaction.rules[1].action`) names, or of the nearest
/// enclosing one that is written; the node's own line for the empty path.
fn locate(node: &MarkedYaml, path: &str) -> usize {
    let mut line = node.span.start.line();
    let mut at = node;
    for segment in path_segments(path) {
        let next = match segment {
            Segment::Key(k) => entry(at, &k),
            Segment::Index(i) => match &at.data {
                YamlData::Sequence(s) => s.get(i).map(|v| (v.span.start.line(), v)),
                _ => None,
            },
        };
        match next {
            Some((l, n)) => {
                line = l;
                at = n;
            }
            None => break,
        }
    }
    line
}

enum Segment {
    Key(String),
    Index(usize),
}

fn path_segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Segment::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// A mapping entry by key: the line of its key, and its value.
fn entry<'a, 'i>(node: &'a MarkedYaml<'i>, key: &str) -> Option<(usize, &'a MarkedYaml<'i>)> {
    match &node.data {
        YamlData::Mapping(m) => m
            .iter()
            .find(|(k, _)| key_text(k).as_deref() == Some(key))
            .map(|(k, v)| (k.span.start.line(), v)),
        _ => None,
    }
}

fn get<'a, 'i>(node: &'a MarkedYaml<'i>, key: &str) -> Option<&'a MarkedYaml<'i>> {
    entry(node, key).map(|(_, v)| v)
}

/// The first of several spellings of a field (Envoy takes `snake_case` and `camelCase`).
fn field<'a, 'i>(node: &'a MarkedYaml<'i>, keys: &[&str]) -> Option<&'a MarkedYaml<'i>> {
    keys.iter().find_map(|k| get(node, k))
}

fn as_str<'a>(node: &'a MarkedYaml) -> Option<&'a str> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s),
        _ => None,
    }
}

fn is_null(node: &MarkedYaml) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

/// A mapping key as Kubernetes' YAML-to-JSON conversion has it: scalars as text.
fn key_text(k: &MarkedYaml) -> Option<String> {
    match &k.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => go_number(f.0),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Null) => Some("null".into()),
        _ => None,
    }
}

/// YAML 1.1 booleans, which Kubernetes' YAML reader (go-yaml) takes for `true` and `false`
/// when unquoted: `emit_on_open: yes` reaches the filter as `true`.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// A YAML value as istiod hands it to Envoy: through a `google.protobuf.Struct` (every number
/// a double) to JSON (keys sorted, numbers as Go writes a float64: `500`, `0.5`, `1e+21`).
fn struct_json(node: &MarkedYaml, text: &str) -> Result<String, (usize, String)> {
    let mut out = String::new();
    write_struct_json(node, text, &mut out)?;
    Ok(out)
}

fn write_struct_json(
    node: &MarkedYaml,
    text: &str,
    out: &mut String,
) -> Result<(), (usize, String)> {
    let line = node.span.start.line();
    let fail = |why: &str| Err((line, why.to_string()));
    match &node.data {
        YamlData::Value(Scalar::Null) => out.push_str("null"),
        YamlData::Value(Scalar::Boolean(b)) => out.push_str(if *b { "true" } else { "false" }),
        // Every number becomes a double: an integer past 2^53 is rounded, as istiod does.
        #[allow(clippy::cast_precision_loss)]
        YamlData::Value(Scalar::Integer(i)) => {
            out.push_str(&go_number(*i as f64).unwrap_or_default())
        }
        YamlData::Value(Scalar::FloatingPoint(f)) => match go_number(f.0) {
            Some(n) => out.push_str(&n),
            None => return fail("pluginConfig: NaN and infinities have no JSON form"),
        },
        YamlData::Value(Scalar::String(s)) => {
            let quoted = matches!(text.chars().nth(node.span.start.index()), Some('"' | '\''));
            match yaml11_bool(s).filter(|_| !quoted) {
                Some(b) => out.push_str(if b { "true" } else { "false" }),
                None => out.push_str(&serde_json::Value::String(s.to_string()).to_string()),
            }
        }
        YamlData::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_struct_json(item, text, out)?;
            }
            out.push(']');
        }
        YamlData::Mapping(m) => {
            let mut sorted = BTreeMap::new();
            for (k, v) in m {
                let Some(key) = key_text(k) else {
                    return fail("pluginConfig: a mapping key must be a scalar");
                };
                sorted.insert(key, v);
            }
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k).to_string());
                out.push(':');
                write_struct_json(v, text, out)?;
            }
            out.push('}');
        }
        YamlData::Tagged(_, inner) => write_struct_json(inner, text, out)?,
        _ => return fail("pluginConfig: a value YAML cannot resolve"),
    }
    Ok(())
}

/// A float64 as Go's encoding/json writes it (what protojson gives istiod): the shortest form
/// that reads back, in exponent form below 1e-6 and from 1e21 on.
fn go_number(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e')?;
        // Go: `1e+21` (two digits at least), `1e-07` cleaned up to `1e-7`.
        return Some(match exp.strip_prefix('-') {
            Some(d) => format!("{mantissa}e-{d}"),
            None => format!("{mantissa}e+{exp:0>2}"),
        });
    }
    // Rust writes a whole double without a fraction (`500`), like Go; -0 is 0 in Go.
    Some(if f == 0.0 { "0".into() } else { format!("{f}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_go_writes_a_float64() {
        assert_eq!(go_number(500.0).as_deref(), Some("500"));
        assert_eq!(go_number(0.5).as_deref(), Some("0.5"));
        assert_eq!(go_number(1e21).as_deref(), Some("1e+21"));
        assert_eq!(go_number(1e-7).as_deref(), Some("1e-7"));
        assert_eq!(go_number(1.5e300).as_deref(), Some("1.5e+300"));
        assert_eq!(go_number(-0.0).as_deref(), Some("0"));
        assert_eq!(go_number(f64::NAN), None);
    }

    #[test]
    fn paths_split_into_keys_and_indexes() {
        let s = path_segments("redaction.rules[1].action");
        assert_eq!(s.len(), 4);
        assert!(matches!(&s[2], Segment::Index(1)));
    }
}
