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
pub mod detectors;
pub mod form;
pub mod json;
pub mod path;
pub mod rules;

use std::borrow::Cow;

use actions::Action;
use detectors::{Detector, Finding};
use form::{percent_decode, rewrite, ListKind, Verdict};
use json::JsonPath;
use rules::{Compiled, CompiledRule, ALL_COOKIES};

use crate::config::{ConfigError, Redaction};
use crate::event::{attr, AuditEvent, Value};
use crate::route::RequestLine;

/// Attributes that hold values Envoy or TLS derived, not text a client chose: never scanned.
const NOT_SCANNED: &[&str] = &[
    "log.record.uid",
    "meshaudit.stream.id",
    "meshaudit.peer.",
    "meshaudit.local.",
    "meshaudit.upstream.",
    "meshaudit.envoy.",
    "meshaudit.tls.",
    "meshaudit.capture.",
    "meshaudit.redaction.",
    "meshaudit.request.body.type",
    "meshaudit.response.body.type",
    "meshaudit.request.body.capture",
    "meshaudit.response.body.capture",
    "tls.",
    "client.",
    "network.",
];

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

/// Counts of fired rules, by name.
#[derive(Default)]
struct Fired(Vec<(String, u32)>);

impl Fired {
    fn add(&mut self, name: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => self.0.push((name.to_string(), 1)),
        }
    }
}

/// The compiled redaction configuration.
pub struct Redactor {
    c: Compiled,
    /// JSON paths of all rules, flattened, with the index of the rule owning each.
    json_paths: Vec<JsonPath>,
    json_owner: Vec<usize>,
    any_scoped: bool,
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
        Ok(Redactor {
            c,
            json_paths,
            json_owner,
            any_scoped,
            findings: Vec::new(),
            hits: Vec::new(),
        })
    }

    /// Redacts one event in place.
    pub fn redact(&mut self, e: &mut AuditEvent) {
        let active = self.active_rules(e);
        let mut fired = Fired::default();
        let mut i = 0;
        while let Some(a) = e.attributes.get_mut(i) {
            let key: &str = &a.key;
            let keep = if let Some(name) = key
                .strip_prefix(attr::HTTP_REQUEST_HEADER)
                .or_else(|| key.strip_prefix(attr::HTTP_RESPONSE_HEADER))
            {
                self.header(name, &mut a.value, &active, &mut fired)
            } else if key == attr::URL_QUERY {
                self.with_str(&mut a.value, |s, this| {
                    this.list(s, ListKind::Query, &active, |r| &r.query, &mut fired)
                });
                true
            } else if key == attr::URL_PATH {
                self.with_str(&mut a.value, |s, this| this.path(s, &active, &mut fired));
                true
            } else if key == attr::REQUEST_BODY || key == attr::RESPONSE_BODY {
                let type_key = if key == attr::REQUEST_BODY {
                    attr::REQUEST_BODY_TYPE
                } else {
                    attr::RESPONSE_BODY_TYPE
                };
                let kind = e.get_str(type_key).unwrap_or("text").to_string();
                if let Some(a) = e.attributes.get_mut(i) {
                    self.with_str(&mut a.value, |s, this| {
                        this.body(s, &kind, &active, &mut fired)
                    });
                }
                true
            } else {
                true
            };
            if !keep {
                e.attributes.remove(i);
                continue;
            }
            if let Some(a) = e.attributes.get_mut(i) {
                if !NOT_SCANNED.iter().any(|p| a.key.starts_with(p)) {
                    self.scan_value(&mut a.value, &mut fired);
                }
            }
            i += 1;
        }
        if !fired.0.is_empty() {
            let list = fired
                .0
                .into_iter()
                .map(|(n, c)| format!("{n}:{c}"))
                .collect();
            e.set(attr::REDACTION_RULES, Value::StrList(list));
        }
    }

    /// Indexes of the rules that apply to this request.
    fn active_rules(&self, e: &AuditEvent) -> Vec<usize> {
        if !self.any_scoped {
            return (0..self.c.rules.len()).collect();
        }
        let line = RequestLine {
            method: e.get_str(attr::HTTP_METHOD).unwrap_or(""),
            host: e.get_str(attr::SERVER_ADDRESS).unwrap_or(""),
            path: e.get_str(attr::URL_PATH).unwrap_or(""),
        };
        (0..self.c.rules.len())
            .filter(|&i| self.c.rules.get(i).is_some_and(|r| r.route.matches(&line)))
            .collect()
    }

    fn first_rule<'r>(
        &'r self,
        active: &[usize],
        mut names: impl FnMut(&'r CompiledRule) -> bool,
    ) -> Option<&'r CompiledRule> {
        active
            .iter()
            .filter_map(|&i| self.c.rules.get(i))
            .find(|r| names(r))
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
        if let Some(rule) = self.first_rule(active, |r| r.headers.iter().any(|h| h == name)) {
            let (action, rule_name) = (rule.action, rule.name.clone());
            let key = self.c.hash_key.clone();
            let Value::StrList(items) = v else {
                return true;
            };
            let mut kept = Vec::with_capacity(items.len());
            for s in items.iter() {
                fired.add(&rule_name);
                if let Some(r) = action.apply(s, key.as_ref()) {
                    kept.push(r);
                }
            }
            *items = kept;
            return !items.is_empty();
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
            let lower = name.to_ascii_lowercase();
            let Some(rule) = self.first_rule(active, |r| {
                names(r)
                    .iter()
                    .any(|n| *n == lower || (kind == ListKind::Cookie && n == ALL_COOKIES))
            }) else {
                return Verdict::Keep;
            };
            fired.add(&rule.name);
            match rule.action.apply(value, self.c.hash_key.as_ref()) {
                Some(v) => Verdict::Replace(v),
                None => Verdict::Drop,
            }
        })
    }

    fn path(&self, path: &str, active: &[usize], fired: &mut Fired) -> Option<String> {
        for rule in active.iter().filter_map(|&i| self.c.rules.get(i)) {
            for pattern in &rule.paths {
                let mut count = 0;
                let new = pattern.rewrite(path, |_, seg| {
                    count += 1;
                    rule.action.apply(seg, self.c.hash_key.as_ref())
                });
                if let Some(new) = new {
                    for _ in 0..count {
                        fired.add(&rule.name);
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
                    fired.add(&rule.name);
                    rule.action
                        .apply(m.text, self.c.hash_key.as_ref())
                        .map(|v| serde_json::to_string(&v).unwrap_or_default())
                })?;
                if out.malformed {
                    fired.add("malformed_json_cut");
                }
                Some(out.text)
            }
            "form" => self.list(body, ListKind::Query, active, |r| &r.form, fired),
            _ => None,
        }
    }

    fn scan_value(&mut self, v: &mut Value, fired: &mut Fired) {
        self.with_str(v, |s, this| this.scan_text(s, fired));
    }

    /// Runs every detector over `text`; returns the redacted text when something was found.
    fn scan_text(&mut self, text: &str, fired: &mut Fired) -> Option<String> {
        if let Some(out) = self.scan_once(text, fired) {
            return Some(out);
        }
        // A secret may hide behind percent-escapes: look at the decoded text too.
        if text.contains('%') {
            if let Cow::Owned(decoded) = percent_decode(text, true) {
                return self.scan_once(&decoded, fired);
            }
        }
        None
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
            let (name, action) = self.describe(h.source);
            fired.add(&name);
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

    fn describe(&self, s: Source) -> (String, Action) {
        match s {
            Source::Builtin(d) => {
                let action = self
                    .c
                    .detector_actions
                    .iter()
                    .find(|(x, _)| *x == d)
                    .map_or(Action::MASK, |(_, a)| *a);
                (format!("detector.{}", d.name()), action)
            }
            Source::Custom(i) => match self.c.custom.get(i) {
                Some(c) => (c.name.clone(), c.action),
                None => ("custom".into(), Action::MASK),
            },
        }
    }
}
