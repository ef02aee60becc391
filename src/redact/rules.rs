//! Compiling the redaction configuration: the built-in defaults, user rules, detectors and
//! the hash key, each checked with an error that names the rule at fault.

use regex::Regex;

use super::actions::{Action, HashKey};
use super::detectors::{Detector, DetectorSet};
use super::json::JsonPath;
use super::names::{NamePattern, NameSet};
use crate::config::{ActionKind, ConfigError, DetectorSetting, Redaction, Rule};
use crate::environment;
use crate::route::path::PathPattern;
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
    "x-goog-signature",
    "x-goog-credential",
    "credential",
    "authorization",
    "sessionid",
    "phpsessid",
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
    "authorization",
    "cookie",
    "private_key",
    "credential",
    "sessionid",
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

/// A rule ready to apply. Field names are matched by the word model of [`super::names`].
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    pub route: Route,
    pub headers: NameSet,
    pub query: NameSet,
    pub cookies: NameSet,
    /// The rule names every cookie (`"*"`).
    pub all_cookies: bool,
    pub paths: Vec<PathPattern>,
    pub json: Vec<JsonPath>,
    pub form: NameSet,
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
    // The first setting that uses the hash action, named for the error when no key is set.
    let mut uses_hash: Option<String> = None;
    let rules = compile_rules(r, &mut uses_hash)?;
    let (detectors, detector_actions) = compile_detectors(r, &mut uses_hash)?;
    let custom = compile_custom(r, &mut uses_hash)?;
    let hash_key = resolve_hash_key(r, uses_hash, hash_key)?;
    Ok(Compiled {
        rules,
        detectors,
        detector_actions,
        custom,
        hash_key,
    })
}

/// The user's rules in order, then the default rule (or the credentials rule without it).
fn compile_rules(
    r: &Redaction,
    uses_hash: &mut Option<String>,
) -> Result<Vec<CompiledRule>, ConfigError> {
    let mut rules = Vec::new();
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
    rules.push(if r.defaults {
        default_rule()
    } else {
        credentials_rule()
    });
    Ok(rules)
}

/// The built-in detectors left on, and the action of each.
fn compile_detectors(
    r: &Redaction,
    uses_hash: &mut Option<String>,
) -> Result<(DetectorSet, Vec<(Detector, Action)>), ConfigError> {
    let mut detectors = DetectorSet::all();
    let mut actions: Vec<(Detector, Action)> = Detector::ALL
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
                for entry in actions.iter_mut().filter(|(x, _)| *x == d) {
                    entry.1 = action;
                }
            }
        }
    }
    actions.retain(|(d, _)| detectors.contains(*d));
    Ok((detectors, actions))
}

/// The user's regex detectors: named, non-empty, valid, and unable to match the empty string.
fn compile_custom(
    r: &Redaction,
    uses_hash: &mut Option<String>,
) -> Result<Vec<CustomRegex>, ConfigError> {
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
        if can_match_empty(&c.pattern) {
            return Err(err(
                field,
                "pattern can match the empty string (e.g. \\b, x?, a*): it would mark every text",
            ));
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
    Ok(custom)
}

/// The hash key, when something hashes: it must be set and hold at least 16 bytes.
fn resolve_hash_key(
    r: &Redaction,
    uses_hash: Option<String>,
    hash_key: Option<Vec<u8>>,
) -> Result<Option<HashKey>, ConfigError> {
    environment::check_name("redaction.hash_key_env", &r.hash_key_env)?;
    let var = environment::shown("redaction.hash_key_env", &r.hash_key_env);
    match (uses_hash, hash_key) {
        (None, _) => Ok(None),
        (Some(user), None) => Err(err(
            "redaction.hash_key_env".into(),
            format!("environment variable {var} is not set, and {user} uses the hash action"),
        )),
        (Some(user), Some(k)) if k.len() < 16 => Err(err(
            "redaction.hash_key_env".into(),
            format!("the key in {var} (used by {user}) must hold at least 16 bytes"),
        )),
        (Some(_), Some(k)) => Ok(Some(HashKey::new(k))),
    }
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
    for (kind, names) in [
        ("headers", &rule.headers),
        ("query", &rule.query),
        ("cookies", &rule.cookies),
        ("form", &rule.form),
    ] {
        if let Some(bad) = names
            .iter()
            .find(|n| n.as_str() != ALL_COOKIES && NamePattern::new(n).is_empty())
        {
            return Err(format!("{kind}: {bad:?} holds no letter or digit"));
        }
    }
    let all_cookies = rule.cookies.iter().any(|c| c == ALL_COOKIES);
    let cookies: Vec<&String> = rule.cookies.iter().filter(|c| *c != ALL_COOKIES).collect();
    let compiled = CompiledRule {
        name: rule.name.clone(),
        route,
        headers: NameSet::new(&rule.headers),
        query: NameSet::new(&rule.query),
        cookies: NameSet::new(&cookies),
        all_cookies,
        paths,
        json,
        form: NameSet::new(&rule.form),
        action: Action::new(rule.action.unwrap_or(ActionKind::Mask), rule.keep),
    };
    let fields = compiled.headers.len()
        + compiled.query.len()
        + compiled.cookies.len()
        + usize::from(compiled.all_cookies)
        + compiled.paths.len()
        + compiled.json.len()
        + compiled.form.len();
    if fields == 0 {
        return Err("names no field (headers, query, cookies, path, json or form)".into());
    }
    Ok(compiled)
}

/// Default parameter names too generic to mask headers by: `idempotency-key`,
/// `x-auth-request-user` and `x-sig-version` are no credentials.
const PARAMS_NOT_FOR_HEADERS: &[&str] = &["key", "sig", "auth", "credential"];

/// The built-in credential rule: on unless `redaction.defaults` is false. Its header names are
/// the credential headers and the default parameter names but the generic
/// `PARAMS_NOT_FOR_HEADERS`, by the word model: `x-csrf-token` and `x-goog-api-key` are
/// credentials too.
pub fn default_rule() -> CompiledRule {
    let headers: Vec<&str> = DEFAULT_HEADERS
        .iter()
        .chain(
            DEFAULT_PARAMS
                .iter()
                .filter(|p| !PARAMS_NOT_FOR_HEADERS.contains(p)),
        )
        .copied()
        .collect();
    CompiledRule {
        name: "default".into(),
        route: Route::default(),
        headers: NameSet::new(&headers),
        query: NameSet::new(DEFAULT_PARAMS),
        cookies: NameSet::default(),
        all_cookies: true,
        paths: Vec::new(),
        json: DEFAULT_JSON_FIELDS
            .iter()
            .filter_map(|f| JsonPath::parse(&format!("$..{f}")).ok())
            .collect(),
        form: NameSet::new(DEFAULT_PARAMS),
        action: Action::MASK,
    }
}

/// The safety net that stays when the defaults are off: credential headers and cookies are
/// never emitted raw. A user rule naming them still decides first (e.g. `hash`).
pub fn credentials_rule() -> CompiledRule {
    CompiledRule {
        name: "credentials".into(),
        route: Route::default(),
        headers: NameSet::new(ALWAYS_MASKED_HEADERS),
        query: NameSet::default(),
        cookies: NameSet::default(),
        all_cookies: true,
        paths: Vec::new(),
        json: Vec::new(),
        form: NameSet::default(),
        action: Action::MASK,
    }
}

/// Whether a pattern can match the empty string anywhere (`\b`, `x?`, `a*`, `^`): the
/// shortest text it matches, from the parser the regex crate uses, is empty.
fn can_match_empty(pattern: &str) -> bool {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map_or(true, |hir| hir.properties().minimum_len().unwrap_or(0) == 0)
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn refusal(config: serde_json::Value, key: Option<&[u8]>) -> ConfigError {
        let r: Redaction = serde_json::from_value(config).unwrap();
        compile(&r, key.map(<[u8]>::to_vec)).err().unwrap()
    }

    #[test]
    fn a_key_pasted_for_its_variable_is_refused_unseen() {
        let hash = serde_json::json!([{"name": "h", "headers": ["x-user"], "action": "hash"}]);
        for pasted in [
            "q8Zr+4kT/9mWcYv2xLbN7sPqRt0uVwXy1zA3bC5dE6f=",
            "3f9a1c0e7b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a",
            "0123456789ABCDEF0123456789ABCDEF",
        ] {
            let e = refusal(
                serde_json::json!({"hash_key_env": pasted, "rules": hash}),
                None,
            );
            assert_eq!(e.field, "redaction.hash_key_env");
            assert!(!e.to_string().contains(pasted), "{e}");
        }
        let e = refusal(
            serde_json::json!({"hash_key_env": "AUDIT_KEY", "rules": hash}),
            None,
        );
        assert!(e.to_string().contains("\"AUDIT_KEY\" is not set"), "{e}");
    }

    #[test]
    fn patterns_that_can_match_nothing_are_refused() {
        for pattern in [r"\b", "(?:x)?", "a*", "^", "x|", r"\B\d*"] {
            let e = refusal(
                serde_json::json!({"custom_detectors": [{"name": "c", "pattern": pattern}]}),
                None,
            );
            assert!(
                e.field.starts_with("redaction.custom_detectors[0]"),
                "{pattern}: {e}"
            );
            assert!(e.reason.contains("empty"), "{pattern}: {e}");
        }
        let r: Redaction = serde_json::from_value(
            serde_json::json!({"custom_detectors": [{"name": "c", "pattern": r"\bmsk_[a-z]{4}\b"}]}),
        )
        .unwrap();
        assert!(compile(&r, None).is_ok());
    }

    #[test]
    fn names_without_letters_are_refused() {
        let e = refusal(
            serde_json::json!({"rules": [{"name": "r", "query": ["--"]}]}),
            None,
        );
        assert!(e.to_string().contains("no letter or digit"), "{e}");
    }
}
