//! One event's redaction: each attribute is read by what it is (headers, cookies, the query,
//! the path, bodies, and inside them URLs, JSON, form pairs and multipart parts), field rules
//! act on the names they find, then detectors scan the text.

use std::borrow::Cow;

use super::actions::Action;
use super::clean::CleanValues;
use super::form::{maybe_encoded, percent_decode, rewrite, ListKind, Verdict};
use super::json::{self, Matched, Visit};
use super::multipart;
use super::names::NameSet;
use super::rules::CompiledRule;
use super::url;
use super::{detectors, is_scanned, Field, Fire, Fired, Hit, Redactor, Scratch, Source};
use crate::event::Value;

/// Most header names whose rules a redactor remembers.
const MAX_HEADER_NAMES: usize = 256;

/// How deep values are read inside values (a URL in a JSON string in a form field…): each
/// level reads its text once more, so the work stays linear in the text.
const MAX_NESTING: u8 = 3;

/// Which names of a rule a list's pairs are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// Query parameters (the query, `;` parameters, fragments, URLs).
    Query,
    /// Form fields (form bodies, multipart parts).
    Form,
    /// Pairs of text of unknown origin: either.
    Params,
    Cookie,
    Header,
}

impl Names {
    /// The rule's names of this kind (a second set for `Params`).
    fn sets(self, rule: &CompiledRule) -> (&NameSet, Option<&NameSet>) {
        match self {
            Names::Query => (&rule.query, None),
            Names::Form => (&rule.form, None),
            Names::Params => (&rule.query, Some(&rule.form)),
            Names::Cookie => (&rule.cookies, None),
            Names::Header => (&rule.headers, None),
        }
    }

    /// Whether the rule takes every field of this kind, whatever its name.
    fn all(self, rule: &CompiledRule) -> bool {
        self == Names::Cookie && rule.all_cookies
    }
}

/// One event's redaction.
pub(super) struct Pass<'r> {
    r: &'r Redactor,
    scratch: Scratch,
    fired: Fired,
}

impl<'r> Pass<'r> {
    pub(super) fn new(r: &'r Redactor, mut scratch: Scratch) -> Pass<'r> {
        let mut fired = std::mem::take(&mut scratch.fired);
        fired.0.clear();
        Pass { r, scratch, fired }
    }

    pub(super) fn finish(self) -> (Fired, Scratch) {
        (self.fired, self.scratch)
    }

    /// [`Pass::attribute`], except for a value read before under the same rules and left
    /// unchanged (see [`CleanValues`]): that one is skipped.
    pub(super) fn attribute_or_remembered(
        &mut self,
        key: &str,
        field: Field,
        body_kind: Option<&str>,
        value: &mut Value,
    ) -> bool {
        if field == Field::Other && !is_scanned(key) {
            return true;
        }
        let probe = match field {
            Field::Body(_) => None,
            _ => only_str(value).and_then(|s| CleanValues::probe(key, s, self.scratch.rules)),
        };
        if let (Some(p), Some(s)) = (probe, only_str(value)) {
            if self.scratch.clean.contains(p, key, s) {
                return true;
            }
        }
        let fired = self.fired.total();
        let keep = self.attribute(key, field, body_kind, value);
        if let (true, Some(p), Some(s)) =
            (keep && self.fired.total() == fired, probe, only_str(value))
        {
            // Unchanged: the same value gives the same probe.
            if CleanValues::probe(key, s, p.rules()) == Some(p) {
                self.scratch.clean.remember(p, key, s);
            }
        }
        keep
    }

    /// Redacts one attribute's value; false when the attribute is to be removed.
    pub(super) fn attribute(
        &mut self,
        key: &str,
        field: Field,
        body_kind: Option<&str>,
        value: &mut Value,
    ) -> bool {
        let form_encoded = field == Field::Query || body_kind == Some("form");
        match field {
            Field::Header(prefix) => {
                let name = key.get(prefix..).unwrap_or_default();
                if !self.header(name, value) {
                    return false;
                }
            }
            Field::Query => each_str(value, |s| self.query(s)),
            Field::Path => each_str(value, |s| self.path(s)),
            Field::Body(_) => {
                let kind = body_kind.unwrap_or("text");
                each_str(value, |s| self.body(s, kind));
            }
            Field::Other if is_scanned(key) => each_str(value, |s| self.nested(s, 0)),
            Field::Other => return true,
        }
        each_str(value, |s| self.scan_text(s, form_encoded));
        true
    }

    /// The active rule at position `k` of the active list, with its index.
    fn active_rule(&self, k: usize) -> Option<(usize, &'r CompiledRule)> {
        let i = *self.scratch.active.get(k)?;
        Some((i, self.r.c.rules.get(i)?))
    }

    /// The first active rule that names field `name` among its `names`. The name is read
    /// only when a rule has names to compare it with.
    fn rule_naming(&mut self, name: &str, names: Names) -> Option<(usize, &'r CompiledRule)> {
        let mut read = false;
        for k in 0..self.scratch.active.len() {
            let Some((index, rule)) = self.active_rule(k) else {
                continue;
            };
            if names.all(rule) {
                return Some((index, rule));
            }
            let (first, second) = names.sets(rule);
            if first.is_empty() && second.is_none_or(NameSet::is_empty) {
                continue;
            }
            if !read {
                self.scratch.name.set(name);
                read = true;
            }
            let field = &self.scratch.name;
            if first.matches(field) || second.is_some_and(|s| s.matches(field)) {
                return Some((index, rule));
            }
        }
        None
    }

    /// The first active rule naming header `name`. Header names come from the configured
    /// allowlists, so which rules name each is remembered (up to [`MAX_HEADER_NAMES`] names).
    fn header_rule(&mut self, name: &str) -> Option<(usize, &'r CompiledRule)> {
        // Events list their headers in the same order: look after the last one found first.
        let headers = &self.scratch.headers;
        let hint = self.scratch.header_hint.min(headers.len());
        let after = headers.get(hint..).unwrap_or(&[]);
        let known = after
            .iter()
            .position(|(n, _)| n.as_str() == name)
            .map(|i| hint + i)
            .or_else(|| headers.iter().position(|(n, _)| n.as_str() == name));
        self.scratch.header_hint = known.map_or(0, |at| at + 1);
        let at = match known {
            Some(at) => at,
            None if self.scratch.headers.len() < MAX_HEADER_NAMES => {
                let rules = self.r.c.rules.iter().enumerate();
                self.scratch.name.set(name);
                let naming = rules
                    .filter(|(_, r)| r.headers.matches(&self.scratch.name))
                    .map(|(i, _)| i)
                    .collect();
                self.scratch.headers.push((name.to_string(), naming));
                self.scratch.headers.len() - 1
            }
            None => return self.rule_naming(name, Names::Header),
        };
        let (_, naming) = self.scratch.headers.get(at)?;
        let index = *naming.iter().find(|i| self.scratch.active.contains(i))?;
        Some((index, self.r.c.rules.get(index)?))
    }

    fn hash_key(&self) -> Option<&'r super::actions::HashKey> {
        self.r.c.hash_key.as_ref()
    }

    /// Applies rule `index`'s action to `value`, counting it.
    fn act(&mut self, index: usize, action: Action, value: &str) -> Option<Cow<'static, str>> {
        self.fired.add(Fire::Rule(index));
        action.apply(value, self.hash_key())
    }

    /// Returns false when the header is to be removed.
    fn header(&mut self, name: &str, v: &mut Value) -> bool {
        if let Some((index, rule)) = self.header_rule(name) {
            let Value::StrList(items) = v else {
                return true;
            };
            items.retain_mut(|s| match self.act(index, rule.action, s) {
                Some(r) => {
                    *s = r.into_owned();
                    true
                }
                None => false,
            });
            return !items.is_empty();
        }
        match name {
            "cookie" => each_str(v, |s| self.list(s, ListKind::Cookie, Names::Cookie, 0)),
            "set-cookie" => each_str(v, |s| {
                let (pair, attrs) = s.split_once(';').map_or((s, None), |(p, a)| (p, Some(a)));
                let new = self.list(pair, ListKind::Cookie, Names::Cookie, 0)?;
                Some(match attrs {
                    Some(a) => format!("{new};{a}"),
                    None => new,
                })
            }),
            _ => each_str(v, |s| self.nested(s, 0)),
        }
        true
    }

    /// Query strings, form bodies, cookies, `;` parameters and fragments: each pair by name;
    /// a value no rule names is read by what it holds.
    fn list(&mut self, s: &str, kind: ListKind, names: Names, depth: u8) -> Option<String> {
        rewrite(s, kind, |name, value| self.pair(name, value, names, depth))
    }

    fn pair(&mut self, name: &str, value: &str, names: Names, depth: u8) -> Verdict {
        if let Some((index, rule)) = self.rule_naming(name, names) {
            return match self.act(index, rule.action, value) {
                Some(v) => Verdict::Replace(v),
                None => Verdict::Drop,
            };
        }
        if names == Names::Cookie {
            return Verdict::Keep;
        }
        match self.nested(value, depth + 1) {
            Some(new) => Verdict::Replace(Cow::Owned(new)),
            None => Verdict::Keep,
        }
    }

    fn query(&mut self, query: &str) -> Option<String> {
        url::rewrite_query(query, &mut |n, v| self.pair(n, v, Names::Query, 0))
    }

    /// Path rules (`/users/{id}`), then `;` parameters and a fragment.
    fn path(&mut self, path: &str) -> Option<String> {
        let by_rule = self.path_rules(path);
        let current = by_rule.as_deref().unwrap_or(path);
        url::rewrite_path(current, &mut |n, v| self.pair(n, v, Names::Query, 0)).or(by_rule)
    }

    fn path_rules(&mut self, path: &str) -> Option<String> {
        for k in 0..self.scratch.active.len() {
            let Some((index, rule)) = self.active_rule(k) else {
                continue;
            };
            for pattern in &rule.paths {
                let mut count = 0;
                let key = self.hash_key();
                let new = pattern.rewrite(path, |_, seg| {
                    count += 1;
                    rule.action.apply(seg, key).map(Cow::into_owned)
                });
                if let Some(new) = new {
                    for _ in 0..count {
                        self.fired.add(Fire::Rule(index));
                    }
                    return Some(new);
                }
            }
        }
        None
    }

    /// A body, by its kind; text is read by what it holds.
    fn body(&mut self, body: &str, kind: &str) -> Option<String> {
        match kind {
            "json" => self.json(body, 0, true),
            "form" => self.list(body, ListKind::Query, Names::Form, 0),
            "multipart" => self.multipart(body, 0),
            _ => self.nested(body, 0),
        }
    }

    /// Text of unknown form, read by what it holds: a URL, JSON, multipart form data, or form
    /// pairs. `None` when nothing changed (or it is none of these).
    fn nested(&mut self, text: &str, depth: u8) -> Option<String> {
        // Each reading rejects ordinary text by its first bytes: no pass over the text.
        if depth > MAX_NESTING || text.len() < 3 {
            return None;
        }
        match Shape::of(text) {
            Shape::Json => self
                .json(text, depth, false)
                .or_else(|| self.nested_pairs(text, depth)),
            Shape::Url => {
                let mut password = false;
                let out = url::rewrite_url(
                    text,
                    &mut |n, v| self.pair(n, v, Names::Query, depth),
                    &mut || password = true,
                );
                if password {
                    self.fired.add(Fire::UrlPassword);
                }
                out
            }
            Shape::Multipart => self.multipart(text, depth),
            Shape::Pairs => self.nested_pairs(text, depth),
            Shape::Plain => None,
        }
    }

    fn nested_pairs(&mut self, text: &str, depth: u8) -> Option<String> {
        if !looks_like_pairs(text) {
            return None;
        }
        self.list(text, ListKind::Query, Names::Params, depth)
    }

    /// A JSON document. `labelled`: a body labelled JSON is cut where it stops being JSON;
    /// other text is read as JSON only when it is JSON beyond its first byte.
    fn json(&mut self, text: &str, depth: u8, labelled: bool) -> Option<String> {
        let r = self.r;
        let out = json::redact(text, &r.json_paths, JsonVisitor { pass: self, depth })?;
        if out.malformed {
            if !labelled && out.text.trim().len() <= 1 {
                return None;
            }
            self.fired.add(Fire::MalformedJson);
        }
        Some(out.text)
    }

    fn multipart(&mut self, body: &str, depth: u8) -> Option<String> {
        multipart::rewrite(body, |part| {
            if let Some((index, rule)) = self.rule_naming(&part.name, Names::Form) {
                return Some(
                    self.act(index, rule.action, part.content)
                        .map(Cow::into_owned)
                        .unwrap_or_default(),
                );
            }
            let json = part
                .content_type
                .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
            if json {
                self.json(part.content, depth + 1, true)
            } else {
                self.nested(part.content, depth + 1)
            }
        })
    }

    /// Runs every detector over `text`; returns the redacted text when something was found.
    /// A secret may hide behind percent-escapes (even twice over), so what remains after the
    /// raw scan is decoded and scanned again; when that finds something, the decoded, redacted
    /// text replaces the value. In form encoding (query strings, form bodies) `+` is a space;
    /// elsewhere it stays, as it is part of base64 tokens.
    fn scan_text(&mut self, text: &str, form_encoded: bool) -> Option<String> {
        let mut result = self.scan_once(text);
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
            current = match self.scan_once(&decoded) {
                Some(out) => {
                    result = Some(out.clone());
                    out
                }
                None => decoded,
            };
        }
        result
    }

    fn scan_once(&mut self, text: &str) -> Option<String> {
        let c = &self.r.c;
        let Scratch { findings, hits, .. } = &mut self.scratch;
        findings.clear();
        hits.clear();
        detectors::scan(text, c.detectors, findings);
        hits.extend(findings.iter().map(|f| Hit {
            start: f.start,
            end: f.end,
            source: Source::Builtin(f.detector),
        }));
        for (i, custom) in c.custom.iter().enumerate() {
            hits.extend(custom.regex.find_iter(text).map(|m| Hit {
                start: m.start(),
                end: m.end(),
                source: Source::Custom(i),
            }));
        }
        if hits.is_empty() {
            return None;
        }
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits.iter() {
            if h.start < at {
                continue; // overlaps a hit already applied
            }
            self.fired.add(Fire::Detector(h.source));
            out.push_str(text.get(at..h.start).unwrap_or(""));
            let found = text.get(h.start..h.end).unwrap_or("");
            if let Some(r) = action_of(self.r, h.source).apply(found, c.hash_key.as_ref()) {
                out.push_str(&r);
            }
            at = h.end;
        }
        out.push_str(text.get(at..).unwrap_or(""));
        Some(out)
    }
}

fn action_of(r: &Redactor, s: Source) -> Action {
    match s {
        Source::Builtin(d) => {
            r.c.detector_actions
                .iter()
                .find(|(x, _)| *x == d)
                .map_or(Action::MASK, |(_, a)| *a)
        }
        Source::Custom(i) => r.c.custom.get(i).map_or(Action::MASK, |c| c.action),
    }
}

/// Whether `c` may be in a field name as pairs are written: letters, digits, `_ - . [ ]` and
/// `%` escapes.
fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'[' | b']' | b'%')
}

/// What a text may be, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Json,
    Url,
    Multipart,
    Pairs,
    Plain,
}

impl Shape {
    fn of(text: &str) -> Shape {
        let b = text.as_bytes();
        let first_non_space = b.iter().find(|c| !c.is_ascii_whitespace());
        match b.first() {
            _ if matches!(first_non_space, Some(b'{' | b'[')) => Shape::Json,
            Some(b'-') if multipart::looks_like_multipart(text) => Shape::Multipart,
            Some(b'/') | Some(b'a'..=b'z' | b'A'..=b'Z') if url::looks_like_url(text) => Shape::Url,
            Some(&c) if is_name_byte(c) => Shape::Pairs,
            _ => Shape::Plain,
        }
    }
}

/// Whether text reads as form pairs: it starts with a field name (letters, digits, `_ - . [ ]`
/// and percent-escapes) and `=` (so `text/html;q=0.9` does not), and holds no space: pieces
/// `name=value` joined by `&` or `;`.
fn looks_like_pairs(text: &str) -> bool {
    let b = text.as_bytes();
    let name = b.iter().take_while(|&&c| is_name_byte(c)).count();
    name > 0
        && b.get(name) == Some(&b'=')
        && !text
            .trim_end_matches(['\r', '\n'])
            .bytes()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
}

/// Applies `f` to each string of a string or string-list value; `f` returns the new text.
/// The one string of a value: a string, or a list of one (a header sent once).
fn only_str(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        Value::StrList(items) => match items.as_slice() {
            [s] => Some(s),
            _ => None,
        },
        Value::Int(_) | Value::Bool(_) => None,
    }
}

fn each_str(v: &mut Value, mut f: impl FnMut(&str) -> Option<String>) {
    match v {
        Value::Str(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::StrList(items) => {
            for s in items.iter_mut() {
                if let Some(new) = f(s) {
                    *s = new;
                }
            }
        }
        Value::Int(_) | Value::Bool(_) => {}
    }
}

/// What the JSON walker asks the pass: matched values get their rule's action; other strings
/// are read by what they hold, and scanned unescaped when they were written with escapes
/// (`\u0040`, `\/`), since the scan of the whole body sees them only as written.
struct JsonVisitor<'p, 'r> {
    pass: &'p mut Pass<'r>,
    depth: u8,
}

impl Visit for JsonVisitor<'_, '_> {
    fn matched(&mut self, m: Matched<'_>) -> Option<String> {
        let r = self.pass.r;
        let owner = r
            .json_owner
            .get(m.path_index)
            .copied()
            .unwrap_or(usize::MAX);
        let active = self.pass.scratch.active.contains(&owner);
        let Some(rule) = r.c.rules.get(owner).filter(|_| active) else {
            return Some(serde_json::to_string(m.text).unwrap_or_default());
        };
        self.pass
            .act(owner, rule.action, m.text)
            .map(|v| serde_json::to_string(&v).unwrap_or_default())
    }

    fn string(&mut self, content: &str, escaped: bool) -> Option<String> {
        let nested = self.pass.nested(content, self.depth + 1);
        if !escaped {
            return nested;
        }
        let current = nested.as_deref().unwrap_or(content);
        self.pass.scan_text(current, false).or(nested)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Redaction;
    use crate::event::{attr, AuditEvent, EventKind, Value};
    use crate::redact::Redactor;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn redactor(config: serde_json::Value) -> Redactor {
        let r: Redaction = serde_json::from_value(config).unwrap();
        Redactor::compile(&r, Some(b"0123456789abcdef".to_vec())).unwrap()
    }

    fn body(r: &mut Redactor, kind: &str, text: &str) -> String {
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(attr::REQUEST_BODY, Value::Str(text.into()));
        e.set(attr::REQUEST_BODY_TYPE, Value::Str(kind.into()));
        r.redact(&mut e);
        e.get_str(attr::REQUEST_BODY)
            .unwrap_or_default()
            .to_string()
    }

    fn header(r: &mut Redactor, name: &str, value: &str) -> String {
        let mut e = AuditEvent::new(EventKind::Http);
        let key = format!("http.request.header.{name}");
        e.set(key.clone(), Value::StrList(vec![value.into()]));
        r.redact(&mut e);
        match e.get(&key) {
            Some(Value::StrList(v)) => v.join(","),
            _ => String::new(),
        }
    }

    #[test]
    fn field_names_are_matched_the_way_applications_spell_them() {
        let mut r = redactor(serde_json::json!({}));
        for name in [
            "Password",
            "PASSWORD",
            "newPassword",
            "password_confirmation",
            "apiKey",
        ] {
            let out = body(&mut r, "json", &format!(r#"{{"{name}":"s3cr3t-value"}}"#));
            assert!(!out.contains("s3cr3t"), "{name}: {out}");
        }
        for name in [
            "user%5Bpassword%5D",
            "user[password]",
            "token[]",
            "user.password",
            "API_KEY",
        ] {
            let out = body(&mut r, "form", &format!("a=1&{name}=s3cr3t-value"));
            assert!(
                !out.contains("s3cr3t") && out.starts_with("a=1&"),
                "{name}: {out}"
            );
        }
        assert_eq!(header(&mut r, "x-csrf-token", "abc123"), "[REDACTED]");
        assert_eq!(header(&mut r, "x-goog-api-key", "abc123"), "[REDACTED]");
        assert_eq!(header(&mut r, "x-request-id", "abc123"), "abc123");
        assert_eq!(header(&mut r, "idempotency-key", "abc123"), "abc123");
    }

    #[test]
    fn text_is_read_by_what_it_is() {
        let mut r = redactor(serde_json::json!({}));
        let out = body(&mut r, "text", r#"{"password":"s3cr3t-a"}"#);
        assert_eq!(out, r#"{"password":"[REDACTED]"}"#);
        let out = body(&mut r, "text", "user=al&password=s3cr3t-b");
        assert_eq!(out, "user=al&password=[REDACTED]");
        assert_eq!(
            body(&mut r, "text", "[INFO] just words"),
            "[INFO] just words"
        );
        let mp = "--XX\r\nContent-Disposition: form-data; name=\"user[password]\"\r\n\r\ns3cr3t-c\r\n--XX--\r\n";
        for kind in ["multipart", "text"] {
            let out = body(&mut r, kind, mp);
            assert!(
                !out.contains("s3cr3t") && out.contains("[REDACTED]"),
                "{out}"
            );
        }
        let out = header(
            &mut r,
            "referer",
            "https://h/x?token=s3cr3t-d&a=1#access_token=s3cr3t-e",
        );
        assert_eq!(
            out,
            "https://h/x?token=[REDACTED]&a=1#access_token=[REDACTED]"
        );
        let escaped = r#"{"note":"mail alice\u0040example.com","u":"https:\/\/h\/cb?token=s3cr3t-f","n":"{\"password\":\"s3cr3t-g\"}"}"#;
        let out = body(&mut r, "json", escaped);
        assert!(!out.contains("alice") && !out.contains("s3cr3t"), "{out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn the_whole_url_grammar() {
        let mut r = redactor(serde_json::json!({
            "rules": [{"name": "session", "query": ["jsessionid"]}]
        }));
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(
            attr::URL_PATH,
            Value::Str("/app;jsessionid=s3cr3t-a/x#access_token=s3cr3t-b".into()),
        );
        e.set(
            attr::URL_QUERY,
            Value::Str("a=1;token=s3cr3t-c#id_token=s3cr3t-d".into()),
        );
        r.redact(&mut e);
        assert_eq!(
            e.get_str(attr::URL_PATH),
            Some("/app;jsessionid=[REDACTED]/x#access_token=[REDACTED]")
        );
        assert_eq!(
            e.get_str(attr::URL_QUERY),
            Some("a=1;token=[REDACTED]#id_token=[REDACTED]")
        );
    }

    #[test]
    fn a_cut_body_is_redacted_whole_then_cut() {
        let mut r = redactor(serde_json::json!({}));
        let text = format!("{} 4111 1111 1111 1111 and more", "x".repeat(39));
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(attr::REQUEST_BODY, Value::Str(text));
        e.set(attr::REQUEST_BODY_TYPE, Value::Str("text".into()));
        e.body_limits.request = Some(50);
        r.redact(&mut e);
        let out = e.get_str(attr::REQUEST_BODY).unwrap();
        assert_eq!(out.len(), 50);
        assert!(
            out.contains(" ****1111 ") && !out.contains("4111 "),
            "{out}"
        );
        let Some(Value::StrList(fired)) = e.get(attr::REDACTION_RULES) else {
            panic!("nothing fired")
        };
        assert_eq!(fired, &["detector.card:1"]);
    }

    #[test]
    fn what_reads_as_pairs() {
        for yes in ["a=1", "user[password]=x&b=2", "pass%77ord=x;y=1", "a=1\r\n"] {
            assert!(super::looks_like_pairs(yes), "{yes}");
        }
        for no in ["text/html;q=0.9", "=x", "a b=1", "a=1 b", "no equals", ""] {
            assert!(!super::looks_like_pairs(no), "{no}");
        }
    }

    #[test]
    fn many_descendant_steps_stay_cheap() {
        // Exponential matching would not finish this: 40 steps over 60 levels.
        let path = format!("${}", "..a".repeat(40));
        let mut r = redactor(serde_json::json!({"rules": [{"name": "deep", "json": [path]}]}));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(60), "}".repeat(60));
        let out = body(&mut r, "json", &deep);
        assert!(out.contains("[REDACTED]") && !out.contains(":1}"), "{out}");
    }
}
