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
mod clean;
pub mod cut;
pub mod detectors;
pub mod form;
pub mod json;
#[cfg(test)]
mod leak_tests;
pub mod multipart;
pub mod names;
mod pass;
pub mod rules;
pub mod url;

use detectors::{Detector, Finding};
use json::JsonPath;
use pass::Pass;
use rules::Compiled;

use crate::config::{ConfigError, Redaction};
use crate::event::{attr, AuditEvent, Value, MAX_VALUE_BYTES};
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
    // allow/deny, a reason from a fixed set, and a policy name from Envoy's configuration.
    "decision",
    "request.body.type",
    "response.body.type",
    "request.body.capture",
    "response.body.capture",
];
/// The others.
pub const NOT_SCANNED_OTHER: &[&str] = &["log.record.uid", "tls.", "client.", "network."];

/// For each byte, the prefixes of `list` that start with it, as bits (bit `i`: `list[i]`).
const fn by_first_byte(list: &[&str]) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut slots: &mut [u16] = &mut table;
    let mut byte = 0;
    while let Some((slot, later)) = slots.split_first_mut() {
        let mut rest = list;
        let mut bit = 0;
        while let Some((p, tail)) = rest.split_first() {
            if let Some(&b) = p.as_bytes().first() {
                if b as usize == byte {
                    // More than 16 prefixes overflow: the build fails.
                    *slot |= 1 << bit;
                }
            }
            bit += 1;
            rest = tail;
        }
        byte += 1;
        slots = later;
    }
    table
}

const OWN_BY_FIRST_BYTE: [u16; 256] = by_first_byte(NOT_SCANNED_OWN);
const OTHER_BY_FIRST_BYTE: [u16; 256] = by_first_byte(NOT_SCANNED_OTHER);

/// Whether detectors scan the value of attribute `key`: no prefix of [`NOT_SCANNED_OWN`]
/// (after `meshaudit.`) or [`NOT_SCANNED_OTHER`] matches. Only the prefixes sharing the first
/// byte are compared (found in a table made at build time): a key is compared with two at
/// most, most with none.
pub fn is_scanned(key: &str) -> bool {
    let (prefixes, by_first_byte, rest) = match key.strip_prefix("meshaudit.") {
        Some(rest) => (NOT_SCANNED_OWN, &OWN_BY_FIRST_BYTE, rest),
        None => (NOT_SCANNED_OTHER, &OTHER_BY_FIRST_BYTE, key),
    };
    let Some(&first) = rest.as_bytes().first() else {
        return true;
    };
    let mut candidates = by_first_byte.get(usize::from(first)).copied().unwrap_or(0);
    while candidates != 0 {
        let i = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        if prefixes.get(i).is_some_and(|p| rest.starts_with(p)) {
            return false;
        }
    }
    true
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
    /// Anything else: read by what it holds and scanned (or not, see [`is_scanned`]).
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

/// What fired: a rule (by index), a detector, the password of a URL, or the cut of malformed
/// JSON. Named only when the event's list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fire {
    Rule(usize),
    Detector(Source),
    UrlPassword,
    MalformedJson,
}

/// Counts of fired rules, in the order they first fired.
#[derive(Default)]
struct Fired(Vec<(Fire, u32)>);

impl Fired {
    /// How many times anything fired.
    fn total(&self) -> u32 {
        self.0.iter().map(|&(_, c)| c).sum()
    }

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

/// Buffers a redaction pass reuses from event to event.
#[derive(Default)]
struct Scratch {
    /// The active rules' indexes of the event being redacted.
    active: Vec<usize>,
    /// The field name being compared with the rules.
    name: names::FieldName,
    /// Header names seen, with the indexes of the rules naming each.
    headers: Vec<(String, Vec<usize>)>,
    /// Where in `headers` the next header is looked for first.
    header_hint: usize,
    findings: Vec<Finding>,
    hits: Vec<Hit>,
    /// The active rules of the event being redacted, as [`clean::rules_fingerprint`].
    rules: u64,
    /// Values read before and left unchanged.
    clean: clean::CleanValues,
    /// What fired in the last event (kept for its allocation).
    fired: Fired,
}

/// The compiled redaction configuration.
pub struct Redactor {
    c: Compiled,
    /// JSON paths of all rules, flattened, with the index of the rule owning each.
    json_paths: Vec<JsonPath>,
    json_owner: Vec<usize>,
    any_scoped: bool,
    scratch: Scratch,
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
            scratch: Scratch::default(),
        })
    }

    /// Redacts one event in place, then cuts what is longer than the event keeps: redact
    /// first, cut second (see [`cut`]).
    pub fn redact(&mut self, e: &mut AuditEvent) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.active_rules(e, &mut scratch.active);
        scratch.rules = clean::rules_fingerprint(&scratch.active, !self.any_scoped);
        let limits = e.body_limits;
        let mut pass = Pass::new(self, scratch);
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
            let Some(a) = e.attributes.get_mut(i) else {
                break;
            };
            let limit = match field {
                Field::Body(attr::REQUEST_BODY_TYPE) => limits.request,
                Field::Body(_) => limits.response,
                _ => Some(MAX_VALUE_BYTES),
            };
            if !pass.attribute_or_remembered(&a.key, field, body_kind.as_deref(), &mut a.value) {
                e.attributes.remove(i);
                continue;
            }
            if let Some(limit) = limit {
                cut_value(&mut a.value, limit);
            }
            i += 1;
        }
        let (fired, mut scratch) = pass.finish();
        if !fired.0.is_empty() {
            let list = fired
                .0
                .iter()
                .map(|&(f, c)| name_count(self.fire_name(f), c))
                .collect();
            e.set(attr::REDACTION_RULES, Value::StrList(list));
        }
        scratch.fired = fired;
        self.scratch = scratch;
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

    /// The name a fired rule is listed under: the rule's name, `detector.<name>` for a
    /// built-in detector, the custom detector's name, `url.password`, or `malformed_json_cut`.
    fn fire_name(&self, f: Fire) -> &str {
        match f {
            Fire::Rule(i) => self.c.rules.get(i).map_or("rule", |r| &r.name),
            Fire::Detector(Source::Builtin(d)) => d.rule_name(),
            Fire::Detector(Source::Custom(i)) => self.c.custom.get(i).map_or("custom", |c| &c.name),
            Fire::UrlPassword => "url.password",
            Fire::MalformedJson => "malformed_json_cut",
        }
    }
}

/// Cuts each string of a value to `limit` bytes.
fn cut_value(v: &mut Value, limit: usize) {
    match v {
        Value::Str(s) => {
            cut::cut_to(s, limit);
        }
        Value::StrList(items) => {
            for s in items {
                cut::cut_to(s, limit);
            }
        }
        Value::Int(_) | Value::Bool(_) => {}
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
            "enduser.id",
            "meshaudit.enduser.claim.email",
            // What a peer says about its workload (Istio's metadata exchange): client text.
            "meshaudit.source.workload.name",
            "meshaudit.destination.app.version",
        ];
        let not_scanned = [
            "log.record.uid",
            "meshaudit.stream.id",
            "meshaudit.peer.spiffe_id",
            "meshaudit.request.body.type",
            "meshaudit.response.body.capture",
            "meshaudit.redaction.rules",
            "meshaudit.tls.mtls",
            "meshaudit.decision",
            "meshaudit.decision.policy",
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
    fn is_scanned_agrees_with_comparing_every_prefix() {
        let every = |key: &str| {
            let (prefixes, rest) = match key.strip_prefix("meshaudit.") {
                Some(rest) => (NOT_SCANNED_OWN, rest),
                None => (NOT_SCANNED_OTHER, key),
            };
            !prefixes.iter().any(|p| rest.starts_with(p))
        };
        let mut keys = vec![
            String::new(),
            "meshaudit.".to_string(),
            "meshaudit".to_string(),
        ];
        for p in NOT_SCANNED_OWN.iter().chain(NOT_SCANNED_OTHER) {
            for cut in 0..=p.len() {
                for tail in ["", "x", ".y", "\u{e9}"] {
                    let key = format!("{}{tail}", &p[..cut]);
                    keys.push(format!("meshaudit.{key}"));
                    keys.push(key);
                }
            }
        }
        for k in &keys {
            assert_eq!(is_scanned(k), every(k), "{k:?}");
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
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(attr::URL_QUERY, Value::Str("a=1&token=abc".into()));
        r.redact(&mut e);
        assert_eq!(e.get_str(attr::URL_QUERY), Some("a=1&token=abc"));
        let mut r = redactor(serde_json::json!({}));
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

    /// Values redaction left unchanged are remembered (see `clean`): a value remembered under
    /// one route's rules is still redacted on a route whose rules name it, and redacting the
    /// same event again gives the same result, counts included.
    #[test]
    fn remembered_values_follow_the_active_rules() {
        let mut r = redactor(serde_json::json!({
            "rules": [{"name": "pay", "match": {"path_prefix": "/pay"},
                       "headers": ["x-account"], "query": ["ref"]}]
        }));
        let on = |path: &str| {
            event(&[
                (attr::URL_PATH, s(path)),
                (
                    "http.request.header.x-account",
                    Value::StrList(vec!["acct-991".into()]),
                ),
                (attr::URL_QUERY, s("ref=abc")),
                (
                    "http.request.header.accept",
                    Value::StrList(vec!["text/html".into()]),
                ),
            ])
        };
        for _ in 0..3 {
            let mut e = on("/shop");
            r.redact(&mut e);
            assert_eq!(
                e.get("http.request.header.x-account"),
                Some(&Value::StrList(vec!["acct-991".into()]))
            );
            assert_eq!(e.get_str(attr::URL_QUERY), Some("ref=abc"));
            let mut e = on("/pay");
            r.redact(&mut e);
            assert_eq!(
                e.get("http.request.header.x-account"),
                Some(&Value::StrList(vec!["[REDACTED]".into()]))
            );
            assert_eq!(e.get_str(attr::URL_QUERY), Some("ref=[REDACTED]"));
            assert_eq!(
                e.get(attr::REDACTION_RULES),
                Some(&Value::StrList(vec!["pay:2".into()]))
            );
        }
    }

    #[test]
    fn signed_url_secrets_are_masked_and_cors_credentials_kept() {
        let mut r = redactor(serde_json::json!({}));
        let mut e = event(&[
            (
                attr::URL_QUERY,
                s("X-Goog-Credential=c&X-Goog-Signature=s&X-Amz-Credential=c&AWSAccessKeyId=a&sig=s&se=2026"),
            ),
            (
                "http.response.header.access-control-allow-credentials",
                Value::StrList(vec!["true".into()]),
            ),
        ]);
        r.redact(&mut e);
        assert_eq!(
            e.get_str(attr::URL_QUERY),
            Some("X-Goog-Credential=[REDACTED]&X-Goog-Signature=[REDACTED]&X-Amz-Credential=[REDACTED]&AWSAccessKeyId=[REDACTED]&sig=[REDACTED]&se=2026")
        );
        assert_eq!(
            e.get("http.response.header.access-control-allow-credentials"),
            Some(&Value::StrList(vec!["true".into()]))
        );
    }

    #[test]
    fn values_with_findings_are_redacted_every_time() {
        let mut r = redactor(serde_json::json!({}));
        for _ in 0..3 {
            let mut e = event(&[
                ("user_agent.original", s("mail me at x@example.org")),
                (
                    "http.request.header.accept",
                    Value::StrList(vec!["text/html".into()]),
                ),
            ]);
            r.redact(&mut e);
            assert_eq!(
                e.get_str("user_agent.original"),
                Some("mail me at [REDACTED]")
            );
            assert_eq!(
                e.get(attr::REDACTION_RULES),
                Some(&Value::StrList(vec!["detector.email:1".into()]))
            );
        }
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
            ("tls.client.subject", s("CN=a,emailAddress=ops@example.org")),
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
            e.get_str("tls.client.subject"),
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
