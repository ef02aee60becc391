//! Compiling the redaction configuration: the built-in defaults, user rules, detectors and
//! the hash key, each checked with an error that names the rule at fault.

use regex::Regex;

use super::actions::{Action, HashKey};
use super::detectors::{Detector, DetectorSet};
use super::json::JsonPath;
use super::path::PathPattern;
use crate::config::{ActionKind, ConfigError, DetectorSetting, Redaction, Rule};
use crate::route::Route;

/// Credential headers redacted by default.
pub const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
    "x-amz-security-token",
];
/// Headers never emitted raw, even with the defaults off.
pub const ALWAYS_MASKED_HEADERS: &[&str] = &["authorization", "proxy-authorization"];
/// Query parameters (and form fields) redacted by default, compared case-insensitively.
pub const DEFAULT_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "auth",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];
/// JSON body fields redacted by default, at any depth.
pub const DEFAULT_JSON_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "api_key",
    "apikey",
    "cvv",
    "cvc",
];
/// Every cookie, in `cookie` and `set-cookie`.
pub const ALL_COOKIES: &str = "*";

/// Default action per built-in detector.
fn default_detector_action(d: Detector) -> Action {
    match d {
        Detector::Card | Detector::Iban => Action::new(ActionKind::Partial, Some(4)),
        _ => Action::MASK,
    }
}

/// A rule ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    pub route: Route,
    pub headers: Vec<String>,
    pub query: Vec<String>,
    pub cookies: Vec<String>,
    pub paths: Vec<PathPattern>,
    pub json: Vec<JsonPath>,
    pub form: Vec<String>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct CustomRegex {
    pub name: String,
    pub regex: Regex,
    pub action: Action,
}

/// Everything the redactor needs, compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// User rules first (they win), then the defaults.
    pub rules: Vec<CompiledRule>,
    pub detectors: DetectorSet,
    pub detector_actions: Vec<(Detector, Action)>,
    pub custom: Vec<CustomRegex>,
    pub hash_key: Option<HashKey>,
}

fn err(field: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// Compiles the redaction settings. `hash_key` is the value of the `hash_key_env` variable, if
/// it is set; it is required only when some rule or detector hashes.
pub fn compile(r: &Redaction, hash_key: Option<Vec<u8>>) -> Result<Compiled, ConfigError> {
    let mut rules = Vec::new();
    let mut uses_hash: Option<String> = None;
    let mut names = std::collections::HashSet::new();
    for (i, rule) in r.rules.iter().enumerate() {
        let field = format!("redaction.rules[{i}]");
        let compiled =
            compile_rule(rule).map_err(|e| err(format!("{field} ({:?})", rule.name), e))?;
        if !names.insert(rule.name.clone()) {
            return Err(err(
                format!("{field}.name"),
                format!("{:?} is used by two rules", rule.name),
            ));
        }
        if compiled.action.kind == ActionKind::Hash {
            uses_hash.get_or_insert(format!("rule {:?}", rule.name));
        }
        rules.push(compiled);
    }
    if r.defaults {
        rules.push(default_rule());
    } else {
        rules.push(credentials_rule());
    }

    let mut detectors = DetectorSet::all();
    let mut detector_actions: Vec<(Detector, Action)> = Detector::ALL
        .iter()
        .map(|&d| (d, default_detector_action(d)))
        .collect();
    for (name, setting) in &r.detectors {
        let field = format!("redaction.detectors.{name}");
        let Some(d) = Detector::from_name(name) else {
            let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            return Err(err(
                field,
                format!("unknown detector; known: {}", known.join(", ")),
            ));
        };
        match setting {
            DetectorSetting::Enabled(true) => {}
            DetectorSetting::Enabled(false) => detectors = detectors.without(d),
            DetectorSetting::Action(spec) => {
                let action = Action::from_spec(spec);
                if action.kind == ActionKind::Hash {
                    uses_hash.get_or_insert(format!("detector {name:?}"));
                }
                for entry in detector_actions.iter_mut().filter(|(x, _)| *x == d) {
                    entry.1 = action;
                }
            }
        }
    }
    detector_actions.retain(|(d, _)| detectors.contains(*d));

    let mut custom = Vec::new();
    for (i, c) in r.custom_detectors.iter().enumerate() {
        let field = format!("redaction.custom_detectors[{i}] ({:?})", c.name);
        if c.name.is_empty() {
            return Err(err(field, "needs a name"));
        }
        if c.pattern.is_empty() {
            return Err(err(field, "pattern is empty"));
        }
        let regex = regex::RegexBuilder::new(&c.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                err(
                    field.clone(),
                    format!("invalid regex: {}", first_line(&e.to_string())),
                )
            })?;
        if regex.is_match("") {
            return Err(err(field, "pattern matches the empty string"));
        }
        let action = Action::new(c.action.unwrap_or(ActionKind::Mask), c.keep);
        if action.kind == ActionKind::Hash {
            uses_hash.get_or_insert(format!("custom detector {:?}", c.name));
        }
        custom.push(CustomRegex {
            name: c.name.clone(),
            regex,
            action,
        });
    }

    let hash_key = match (uses_hash, hash_key) {
        (None, _) => None,
        (Some(user), None) => {
            return Err(err(
                "redaction.hash_key_env".into(),
                format!(
                    "environment variable {:?} is not set, and {user} uses the hash action",
                    r.hash_key_env
                ),
            ))
        }
        (Some(user), Some(k)) if k.len() < 16 => {
            return Err(err(
                "redaction.hash_key_env".into(),
                format!(
                    "the key in {:?} (used by {user}) must hold at least 16 bytes",
                    r.hash_key_env
                ),
            ))
        }
        (Some(_), Some(k)) => Some(HashKey::new(k)),
    };
    Ok(Compiled {
        rules,
        detectors,
        detector_actions,
        custom,
        hash_key,
    })
}

fn compile_rule(rule: &Rule) -> Result<CompiledRule, String> {
    if rule.name.is_empty() {
        return Err("a rule needs a name".into());
    }
    let route = Route::compile(&rule.route).map_err(|e| format!("match: {e}"))?;
    let paths = rule
        .path
        .iter()
        .map(|p| {
            let pattern = PathPattern::parse(p)?;
            if pattern.has_params() {
                Ok(pattern)
            } else {
                Err(format!(
                    "path pattern {p:?} has no {{name}} segment to redact"
                ))
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let json = rule
        .json
        .iter()
        .map(|p| JsonPath::parse(p))
        .collect::<Result<Vec<_>, String>>()?;
    let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
    let compiled = CompiledRule {
        name: rule.name.clone(),
        route,
        headers: lower(&rule.headers),
        query: lower(&rule.query),
        cookies: lower(&rule.cookies),
        paths,
        json,
        form: lower(&rule.form),
        action: Action::new(rule.action.unwrap_or(ActionKind::Mask), rule.keep),
    };
    let fields = compiled.headers.len()
        + compiled.query.len()
        + compiled.cookies.len()
        + compiled.paths.len()
        + compiled.json.len()
        + compiled.form.len();
    if fields == 0 {
        return Err("names no field (headers, query, cookies, path, json or form)".into());
    }
    Ok(compiled)
}

/// The built-in credential rule: on unless `redaction.defaults` is false.
pub fn default_rule() -> CompiledRule {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    CompiledRule {
        name: "default".into(),
        route: Route::default(),
        headers: strings(DEFAULT_HEADERS),
        query: strings(DEFAULT_PARAMS),
        cookies: vec![ALL_COOKIES.to_string()],
        paths: Vec::new(),
        json: DEFAULT_JSON_FIELDS
            .iter()
            .filter_map(|f| JsonPath::parse(&format!("$..{f}")).ok())
            .collect(),
        form: strings(DEFAULT_PARAMS),
        action: Action::MASK,
    }
}

/// The safety net that stays when the defaults are off: credential headers and cookies are
/// never emitted raw. A user rule naming them still decides first (e.g. `hash`).
pub fn credentials_rule() -> CompiledRule {
    CompiledRule {
        name: "credentials".into(),
        route: Route::default(),
        headers: ALWAYS_MASKED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        query: Vec::new(),
        cookies: vec![ALL_COOKIES.to_string()],
        paths: Vec::new(),
        json: Vec::new(),
        form: Vec::new(),
        action: Action::MASK,
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}
