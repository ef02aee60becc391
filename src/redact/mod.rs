//! Redaction: every event passes through [`Redactor::redact`] before it is encoded, so no
//! secret from traffic reaches the collector.
//!
//! Two kinds of protection apply, in this order:
//! 1. field rules, by name: headers, cookies (each by name), query parameters, path segments
//!    (`/users/{id}`), JSON body paths and form fields, optionally scoped to routes; the
//!    built-in `default` rule covers the common credentials;
//! 2. detectors over all captured text: built-in ones (cards with Luhn, JWTs, bearer and basic
//!    credentials, AWS keys, private keys, emails, SSNs, IBANs) and user regexes. Text with
//!    percent-escapes is also scanned decoded.
//!
//! The event records which rules fired and how often (`meshaudit.redaction.rules`), never what
//! they removed.

pub mod actions;
pub mod byte_classes;
pub mod detectors;
pub mod form;
pub mod json;
pub mod path;
pub mod rules;

use std::borrow::Cow;

use actions::Action;
use detectors::{Detector, Finding};
use form::{maybe_encoded, percent_decode, rewrite, ListKind, Verdict};
use json::JsonPath;
use rules::{Compiled, CompiledRule, ALL_COOKIES};

use crate::config::{ConfigError, Redaction};
use crate::event::{attr, Attribute, AuditEvent, Value};
use crate::route::RequestLine;

/// Attribute key prefixes whose values Envoy or TLS derived, not text a client chose: never
/// scanned by detectors. meshaudit's own, after `meshaudit.`:
pub const NOT_SCANNED_OWN: &[&str] = &[
    "stream.id",
    "peer.",
    "local.",
    "upstream.",
    "envoy.",
    "tls.",
    "capture.",
    "redaction.",
    "request.body.type",
    "response.body.type",
    "request.body.capture",
    "response.body.capture",
];
/// The others.
pub const NOT_SCANNED_OTHER: &[&str] = &["log.record.uid", "tls.", "client.", "network."];

/// Whether detectors scan the value of attribute `key`: no prefix of [`NOT_SCANNED_OWN`]
/// (after `meshaudit.`) or [`NOT_SCANNED_OTHER`] matches. Only the prefixes sharing the first
/// byte are compared: a key is compared with two at most, most with none.
pub fn is_scanned(key: &str) -> bool {
    let (prefixes, rest) = match key.strip_prefix("meshaudit.") {
        Some(rest) => (NOT_SCANNED_OWN, rest),
        None => (NOT_SCANNED_OTHER, key),
    };
    let Some(first) = rest.as_bytes().first() else {
        return true;
    };
    !prefixes
        .iter()
        .any(|p| p.as_bytes().first() == Some(first) && rest.starts_with(p))
}

/// What the rules do with an attribute, known from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A request or response header: the header name starts at this byte of the key.
    Header(usize),
    Query,
    Path,
    /// A body, with the key of its type.
    Body(&'static str),
    /// Anything else: only scanned (or not, see [`is_scanned`]).
    Other,
}

impl Field {
    /// The first byte tells most keys apart before any comparison.
    fn of(key: &str) -> Field {
        let header = |prefix: &str| {
            key.starts_with(prefix)
                .then_some(Field::Header(prefix.len()))
        };
        match key.as_bytes().first() {
            Some(b'h') => header(attr::HTTP_REQUEST_HEADER)
                .or_else(|| header(attr::HTTP_RESPONSE_HEADER))
                .unwrap_or(Field::Other),
            Some(b'u') if key == attr::URL_QUERY => Field::Query,
            Some(b'u') if key == attr::URL_PATH => Field::Path,
            Some(b'm') if key == attr::REQUEST_BODY => Field::Body(attr::REQUEST_BODY_TYPE),
            Some(b'm') if key == attr::RESPONSE_BODY => Field::Body(attr::RESPONSE_BODY_TYPE),
            _ => Field::Other,
        }
    }
}

/// Which detector found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Builtin(Detector),
    Custom(usize),
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    source: Source,
}

/// What fired: a rule (by index), a detector, or the cut of malformed JSON. Named only when
/// the event's list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fire {
    Rule(usize),
    Detector(Source),
    MalformedJson,
}

/// Counts of fired rules, in the order they first fired.
#[derive(Default)]
struct Fired(Vec<(Fire, u32)>);

impl Fired {
    fn add(&mut self, what: Fire) {
        match self.0.iter_mut().find(|(f, _)| *f == what) {
            Some((_, c)) => *c += 1,
            None => self.0.push((what, 1)),
        }
    }
}

/// `name:count`, the form of one entry of `meshaudit.redaction.rules`.
fn name_count(name: &str, count: u32) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(name.len() + 11);
    s.push_str(name);
    // Writing into a String cannot fail.
    let _ = write!(s, ":{count}");
    s
}

/// The compiled redaction configuration.
pub struct Redactor {
    c: Compiled,
    /// JSON paths of all rules, flattened, with the index of the rule owning each.
    json_paths: Vec<JsonPath>,
    json_owner: Vec<usize>,
    any_scoped: bool,
    /// The active rules' indexes of the event being redacted (kept to reuse its allocation).
    active: Vec<usize>,
    /// Whether any rule names query parameters, cookies or form fields: lists are only parsed
    /// when some rule could act on them.
    any_query: bool,
    any_cookie: bool,
    any_form: bool,
    findings: Vec<Finding>,
    hits: Vec<Hit>,
}

impl Redactor {
    /// Compiles the settings; `hash_key` is the content of `hash_key_env`, when set.
    pub fn compile(r: &Redaction, hash_key: Option<Vec<u8>>) -> Result<Redactor, ConfigError> {
        let c = rules::compile(r, hash_key)?;
        let mut json_paths = Vec::new();
        let mut json_owner = Vec::new();
        for (i, rule) in c.rules.iter().enumerate() {
            for p in &rule.json {
                json_paths.push(p.clone());
                json_owner.push(i);
            }
        }
        let any_scoped = c.rules.iter().any(|r| !r.route.is_everything());
        let any_query = c.rules.iter().any(|r| !r.query.is_empty());
        let any_cookie = c.rules.iter().any(|r| !r.cookies.is_empty());
        let any_form = c.rules.iter().any(|r| !r.form.is_empty());
        Ok(Redactor {
            active: Vec::with_capacity(c.rules.len()),
            c,
            json_paths,
            json_owner,
            any_scoped,
            any_query,
            any_cookie,
            any_form,
            findings: Vec::new(),
            hits: Vec::new(),
        })
    }

    /// Redacts one event in place.
    pub fn redact(&mut self, e: &mut AuditEvent) {
        let mut active = std::mem::take(&mut self.active);
        self.active_rules(e, &mut active);
        let mut fired = Fired::default();
        let mut i = 0;
        while let Some(a) = e.attributes.get(i) {
            // Numbers and flags hold no text: neither rules nor detectors apply.
            if matches!(a.value, Value::Int(_) | Value::Bool(_)) {
                i += 1;
                continue;
            }
            let field = Field::of(&a.key);
            let body_kind = match field {
                Field::Body(type_key) => Some(e.get_str(type_key).unwrap_or("text").to_string()),
                _ => None,
            };
            let form_encoded = field == Field::Query || body_kind.as_deref() == Some("form");
            let Some(Attribute { key, value }) = e.attributes.get_mut(i) else {
                break;
            };
            let keep = match field {
                Field::Header(prefix) => {
                    let name = key.get(prefix..).unwrap_or_default();
                    self.header(name, value, &active, &mut fired)
                }
                Field::Query if self.any_query => {
                    self.with_str(value, |s, this| {
                        this.list(s, ListKind::Query, &active, |r| &r.query, &mut fired)
                    });
                    true
                }
                Field::Path => {
                    self.with_str(value, |s, this| this.path(s, &active, &mut fired));
                    true
                }
                Field::Body(_) => {
                    let kind = body_kind.as_deref().unwrap_or("text");
                    self.with_str(value, |s, this| this.body(s, kind, &active, &mut fired));
                    true
                }
                Field::Query | Field::Other => true,
            };
            if !keep {
                e.attributes.remove(i);
                continue;
            }
            // Headers, the query, the path and bodies are text a client chose: always scanned.
            if field != Field::Other || is_scanned(key) {
                self.with_str(value, |s, this| this.scan_text(s, form_encoded, &mut fired));
            }
            i += 1;
        }
        if !fired.0.is_empty() {
            let list = fired
                .0
                .iter()
                .map(|&(f, c)| name_count(self.fire_name(f), c))
                .collect();
            e.set(attr::REDACTION_RULES, Value::StrList(list));
        }
        self.active = active;
    }

    /// Fills `active` with the indexes of the rules that apply to this request.
    fn active_rules(&self, e: &AuditEvent, active: &mut Vec<usize>) {
        active.clear();
        if !self.any_scoped {
            active.extend(0..self.c.rules.len());
            return;
        }
        let line = RequestLine {
            method: e.get_str(attr::HTTP_METHOD).unwrap_or(""),
            host: e.get_str(attr::SERVER_ADDRESS).unwrap_or(""),
            path: e.get_str(attr::URL_PATH).unwrap_or(""),
        };
        active.extend(
            (0..self.c.rules.len())
                .filter(|&i| self.c.rules.get(i).is_some_and(|r| r.route.matches(&line))),
        );
    }

    /// The active rules, in order, with their indexes.
    fn rules_in<'r>(
        &'r self,
        active: &'r [usize],
    ) -> impl Iterator<Item = (usize, &'r CompiledRule)> + 'r {
        active
            .iter()
            .filter_map(|&i| Some((i, self.c.rules.get(i)?)))
    }

    /// The first active rule `names` accepts, with its index.
    fn first_rule<'r>(
        &'r self,
        active: &'r [usize],
        mut names: impl FnMut(&'r CompiledRule) -> bool,
    ) -> Option<(usize, &'r CompiledRule)> {
        self.rules_in(active).find(|(_, r)| names(r))
    }

    /// Applies `f` to each string of a string or string-list value; `f` returns the new text.
    fn with_str(&mut self, v: &mut Value, mut f: impl FnMut(&str, &mut Self) -> Option<String>) {
        match v {
            Value::Str(s) => {
                if let Some(new) = f(s, self) {
                    *s = new;
                }
            }
            Value::StrList(items) => {
                for s in items.iter_mut() {
                    if let Some(new) = f(s, self) {
                        *s = new;
                    }
                }
            }
            _ => {}
        }
    }

    /// Returns false when the header is to be removed.
    fn header(&mut self, name: &str, v: &mut Value, active: &[usize], fired: &mut Fired) -> bool {
        if let Some((index, rule)) =
            self.first_rule(active, |r| r.headers.iter().any(|h| h == name))
        {
            let Value::StrList(items) = v else {
                return true;
            };
            let key = self.c.hash_key.as_ref();
            items.retain_mut(|s| {
                fired.add(Fire::Rule(index));
                match rule.action.apply(s, key) {
                    Some(r) => {
                        *s = r.into_owned();
                        true
                    }
                    None => false,
                }
            });
            return !items.is_empty();
        }
        if !self.any_cookie {
            return true;
        }
        match name {
            "cookie" => self.with_str(v, |s, this| {
                this.list(s, ListKind::Cookie, active, |r| &r.cookies, fired)
            }),
            "set-cookie" => self.with_str(v, |s, this| {
                let (pair, attrs) = s.split_once(';').map_or((s, None), |(p, a)| (p, Some(a)));
                let new = this.list(pair, ListKind::Cookie, active, |r| &r.cookies, fired)?;
                Some(match attrs {
                    Some(a) => format!("{new};{a}"),
                    None => new,
                })
            }),
            _ => {}
        }
        true
    }

    /// Query strings, form bodies and cookies: each pair by name.
    fn list(
        &self,
        s: &str,
        kind: ListKind,
        active: &[usize],
        names: impl Fn(&CompiledRule) -> &Vec<String>,
        fired: &mut Fired,
    ) -> Option<String> {
        rewrite(s, kind, |name, value| {
            let Some((index, rule)) = self.first_rule(active, |r| {
                names(r).iter().any(|n| {
                    n.eq_ignore_ascii_case(name) || (kind == ListKind::Cookie && n == ALL_COOKIES)
                })
            }) else {
                return Verdict::Keep;
            };
            fired.add(Fire::Rule(index));
            match rule.action.apply(value, self.c.hash_key.as_ref()) {
                Some(v) => Verdict::Replace(v),
                None => Verdict::Drop,
            }
        })
    }

    fn path(&self, path: &str, active: &[usize], fired: &mut Fired) -> Option<String> {
        for (index, rule) in self.rules_in(active) {
            for pattern in &rule.paths {
                let mut count = 0;
                let new = pattern.rewrite(path, |_, seg| {
                    count += 1;
                    rule.action
                        .apply(seg, self.c.hash_key.as_ref())
                        .map(Cow::into_owned)
                });
                if let Some(new) = new {
                    for _ in 0..count {
                        fired.add(Fire::Rule(index));
                    }
                    return Some(new);
                }
            }
        }
        None
    }

    fn body(&self, body: &str, kind: &str, active: &[usize], fired: &mut Fired) -> Option<String> {
        match kind {
            "json" => {
                let out = json::redact(body, &self.json_paths, |m| {
                    let owner = self
                        .json_owner
                        .get(m.path_index)
                        .copied()
                        .unwrap_or(usize::MAX);
                    let Some(rule) = self.c.rules.get(owner).filter(|_| active.contains(&owner))
                    else {
                        return Some(serde_json::to_string(m.text).unwrap_or_default());
                    };
                    fired.add(Fire::Rule(owner));
                    rule.action
                        .apply(m.text, self.c.hash_key.as_ref())
                        .map(|v| serde_json::to_string(&v).unwrap_or_default())
                })?;
                if out.malformed {
                    fired.add(Fire::MalformedJson);
                }
                Some(out.text)
            }
            "form" if self.any_form => self.list(body, ListKind::Query, active, |r| &r.form, fired),
            _ => None,
        }
    }

    /// Runs every detector over `text`; returns the redacted text when something was found.
    /// A secret may hide behind percent-escapes (even twice over), so what remains after the
    /// raw scan is decoded and scanned again; when that finds something, the decoded, redacted
    /// text replaces the value. In form encoding (query strings, form bodies) `+` is a space;
    /// elsewhere it stays, as it is part of base64 tokens.
    fn scan_text(&mut self, text: &str, form_encoded: bool, fired: &mut Fired) -> Option<String> {
        let mut result = self.scan_once(text, fired);
        let encoded = |t: &str| maybe_encoded(t, form_encoded);
        if !encoded(result.as_deref().unwrap_or(text)) {
            return result;
        }
        let mut current = result.clone().unwrap_or_else(|| text.to_string());
        for _ in 0..2 {
            if !encoded(&current) {
                break;
            }
            let Cow::Owned(decoded) = percent_decode(&current, form_encoded) else {
                break;
            };
            current = match self.scan_once(&decoded, fired) {
                Some(out) => {
                    result = Some(out.clone());
                    out
                }
                None => decoded,
            };
        }
        result
    }

    fn scan_once(&mut self, text: &str, fired: &mut Fired) -> Option<String> {
        self.findings.clear();
        self.hits.clear();
        detectors::scan(text, self.c.detectors, &mut self.findings);
        self.hits.extend(self.findings.iter().map(|f| Hit {
            start: f.start,
            end: f.end,
            source: Source::Builtin(f.detector),
        }));
        for (i, c) in self.c.custom.iter().enumerate() {
            self.hits.extend(c.regex.find_iter(text).map(|m| Hit {
                start: m.start(),
                end: m.end(),
                source: Source::Custom(i),
            }));
        }
        if self.hits.is_empty() {
            return None;
        }
        self.hits
            .sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in &self.hits {
            if h.start < at {
                continue; // overlaps a hit already applied
            }
            fired.add(Fire::Detector(h.source));
            let action = self.action_of(h.source);
            out.push_str(text.get(at..h.start).unwrap_or(""));
            let found = text.get(h.start..h.end).unwrap_or("");
            if let Some(r) = action.apply(found, self.c.hash_key.as_ref()) {
                out.push_str(&r);
            }
            at = h.end;
        }
        out.push_str(text.get(at..).unwrap_or(""));
        Some(out)
    }

    fn action_of(&self, s: Source) -> Action {
        match s {
            Source::Builtin(d) => self
                .c
                .detector_actions
                .iter()
                .find(|(x, _)| *x == d)
                .map_or(Action::MASK, |(_, a)| *a),
            Source::Custom(i) => self.c.custom.get(i).map_or(Action::MASK, |c| c.action),
        }
    }

    /// The name a fired rule is listed under: the rule's name, `detector.<name>` for a
    /// built-in detector, the custom detector's name, or `malformed_json_cut`.
    fn fire_name(&self, f: Fire) -> &str {
        match f {
            Fire::Rule(i) => self.c.rules.get(i).map_or("rule", |r| &r.name),
            Fire::Detector(Source::Builtin(d)) => d.rule_name(),
            Fire::Detector(Source::Custom(i)) => self.c.custom.get(i).map_or("custom", |c| &c.name),
            Fire::MalformedJson => "malformed_json_cut",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn is_scanned_follows_the_prefix_lists() {
        let scanned = [
            "",
            "log.other",
            "meshaudit.",
            "meshaudit.request.body",
            "meshaudit.response.body",
            "meshaudit.stream",
            "url.query",
            "http.request.header.cookie",
            "user_agent.original",
            "m",
            "t",
            "peer.x",
        ];
        let not_scanned = [
            "log.record.uid",
            "meshaudit.stream.id",
            "meshaudit.peer.spiffe_id",
            "meshaudit.request.body.type",
            "meshaudit.response.body.capture",
            "meshaudit.redaction.rules",
            "meshaudit.tls.mtls",
            "tls.protocol.version",
            "client.address",
            "network.protocol.name",
        ];
        for k in scanned {
            assert!(is_scanned(k), "{k}");
        }
        for k in not_scanned {
            assert!(!is_scanned(k), "{k}");
        }
        for p in NOT_SCANNED_OWN {
            assert!(!is_scanned(&format!("meshaudit.{p}")), "{p}");
        }
        for p in NOT_SCANNED_OTHER {
            assert!(!is_scanned(p), "{p}");
        }
    }

    #[test]
    fn fired_counts_are_written_in_decimal() {
        assert_eq!(name_count("default", 1), "default:1");
        assert_eq!(name_count("detector.card", 0), "detector.card:0");
        assert_eq!(name_count("x", 10), "x:10");
        assert_eq!(name_count("", u32::MAX), ":4294967295");
    }

    #[test]
    fn lists_are_left_alone_when_no_rule_names_their_pairs() {
        // With the defaults off only the credentials safety net is left: it names cookies
        // (all of them), no query parameter and no form field.
        let mut r = redactor(serde_json::json!({"defaults": false}));
        assert!(!r.any_query && r.any_cookie && !r.any_form);
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(attr::URL_QUERY, Value::Str("a=1&token=abc".into()));
        r.redact(&mut e);
        assert_eq!(e.get_str(attr::URL_QUERY), Some("a=1&token=abc"));
        let mut r = redactor(serde_json::json!({}));
        assert!(r.any_query && r.any_cookie);
        r.redact(&mut e);
        assert_ne!(e.get_str(attr::URL_QUERY), Some("a=1&token=abc"));
    }

    fn redactor(config: serde_json::Value) -> Redactor {
        let r: Redaction = serde_json::from_value(config).unwrap();
        Redactor::compile(&r, Some(b"0123456789abcdef".to_vec())).unwrap()
    }

    fn event(attrs: &[(&'static str, Value)]) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Http);
        for (k, v) in attrs {
            e.set(*k, v.clone());
        }
        e
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn encoded_secrets_are_found_next_to_raw_ones() {
        let mut r = redactor(serde_json::json!({}));
        let card = "4111111111111111";
        let encoded: String = card.bytes().map(|b| format!("%{b:02X}")).collect();
        let mut e = event(&[(
            attr::URL_QUERY,
            s(&format!(
                "a=alice@example.com&b={encoded}&c=bob%40example.com"
            )),
        )]);
        r.redact(&mut e);
        let q = e.get_str(attr::URL_QUERY).unwrap();
        assert!(
            !q.contains("alice")
                && !q.contains("bob")
                && !q.contains(&encoded)
                && !q.contains(card),
            "{q}"
        );
        let double = "x=carol%2540example.com";
        let mut e = event(&[(attr::URL_QUERY, s(double))]);
        r.redact(&mut e);
        assert!(
            !e.get_str(attr::URL_QUERY).unwrap().contains("carol"),
            "{:?}",
            e.get_str(attr::URL_QUERY)
        );
    }

    #[test]
    fn rules_then_detectors_with_counts() {
        let mut r = redactor(serde_json::json!({
            "rules": [{"name": "ids", "path": ["/users/{id}"], "action": "hash"},
                      {"name": "tenant", "headers": ["x-tenant"], "action": "remove"}]
        }));
        let mut e = event(&[
            (attr::URL_PATH, s("/users/alice")),
            (
                "http.request.header.x-tenant",
                Value::StrList(vec!["acme".into()]),
            ),
            (
                "http.request.header.authorization",
                Value::StrList(vec!["Bearer abc.def".into()]),
            ),
            (
                "http.request.header.cookie",
                Value::StrList(vec!["s=1; lang=en".into()]),
            ),
            ("user_agent.original", s("mail me at x@example.org")),
            (
                "meshaudit.peer.subject",
                s("CN=a,emailAddress=ops@example.org"),
            ),
        ]);
        r.redact(&mut e);
        let path = e.get_str(attr::URL_PATH).unwrap();
        assert!(
            path.starts_with("/users/hmac:") && path.len() == "/users/hmac:".len() + 32,
            "{path}"
        );
        assert!(e.get("http.request.header.x-tenant").is_none());
        assert_eq!(
            e.get("http.request.header.authorization"),
            Some(&Value::StrList(vec!["[REDACTED]".into()]))
        );
        assert_eq!(
            e.get("http.request.header.cookie"),
            Some(&Value::StrList(
                vec!["s=[REDACTED]; lang=[REDACTED]".into()]
            ))
        );
        assert_eq!(
            e.get_str("user_agent.original"),
            Some("mail me at [REDACTED]")
        );
        assert_eq!(
            e.get_str("meshaudit.peer.subject"),
            Some("CN=a,emailAddress=ops@example.org"),
            "identities are not scanned"
        );
        let Some(Value::StrList(fired)) = e.get(attr::REDACTION_RULES) else {
            panic!("no rules recorded")
        };
        for want in ["ids:1", "tenant:1", "default:3", "detector.email:1"] {
            assert!(fired.contains(&want.to_string()), "{fired:?} lacks {want}");
        }
    }

    #[test]
    fn route_scoped_rules_apply_only_on_their_route() {
        let mut r = redactor(serde_json::json!({
            "rules": [{"name": "pay", "match": {"path_prefix": "/pay"}, "query": ["ref"]}]
        }));
        let mut on = event(&[
            (attr::URL_PATH, s("/pay/1")),
            (attr::URL_QUERY, s("ref=42")),
        ]);
        let mut off = event(&[
            (attr::URL_PATH, s("/shop/1")),
            (attr::URL_QUERY, s("ref=42")),
        ]);
        r.redact(&mut on);
        r.redact(&mut off);
        assert_eq!(on.get_str(attr::URL_QUERY), Some("ref=[REDACTED]"));
        assert_eq!(off.get_str(attr::URL_QUERY), Some("ref=42"));
    }

    #[test]
    fn json_and_form_bodies() {
        let mut r = redactor(serde_json::json!({
            "rules": [{"name": "card", "json": ["$.card.number"], "form": ["pan"], "action": "partial"}]
        }));
        let mut e = event(&[
            (
                attr::REQUEST_BODY,
                s(
                    r#"{"password":"p","card":{"number":"4000 0000 0000 0002"},"items":[{"token":"t"}]}"#,
                ),
            ),
            (attr::REQUEST_BODY_TYPE, s("json")),
            (
                attr::RESPONSE_BODY,
                s("pan=5555555555554444&ok=1&password=x"),
            ),
            (attr::RESPONSE_BODY_TYPE, s("form")),
        ]);
        r.redact(&mut e);
        let body: serde_json::Value =
            serde_json::from_str(e.get_str(attr::REQUEST_BODY).unwrap()).unwrap();
        assert_eq!(body["password"], "[REDACTED]");
        assert_eq!(body["card"]["number"], "****0002");
        assert_eq!(body["items"][0]["token"], "[REDACTED]");
        assert_eq!(
            e.get_str(attr::RESPONSE_BODY),
            Some("pan=****4444&ok=1&password=[REDACTED]")
        );
    }

    #[test]
    fn defaults_can_be_turned_off() {
        let mut r =
            redactor(serde_json::json!({"defaults": false, "detectors": {"bearer": false}}));
        let mut e = event(&[(
            "http.request.header.x-api-key",
            Value::StrList(vec!["k-1".into()]),
        )]);
        r.redact(&mut e);
        assert_eq!(
            e.get("http.request.header.x-api-key"),
            Some(&Value::StrList(vec!["k-1".into()]))
        );
        assert!(e.get(attr::REDACTION_RULES).is_none());
    }
}
