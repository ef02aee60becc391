//! The promise, as a property: secrets planted at random places of random JSON, form,
//! multipart, cookie and URL structures never leave redaction, whole or as any 8-character
//! fragment, raw or encoded, wherever capture or redaction cuts the text.

use crate::capture::body::{BodyState, Side};
use crate::capture::decode;
use crate::capture::Anomalies;
use crate::config::{BodyCapture, Redaction};
use crate::event::{attr, AuditEvent, EventKind, Value};
use crate::redact::cut::CAPTURE_CEILING;
use crate::redact::Redactor;
use crate::test_rng::XorShift;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Names applications give to secret fields, each matched by a default rule.
const SECRET_NAMES: &[&str] = &[
    "password",
    "Password",
    "PASSWORD",
    "newPassword",
    "user[password]",
    "user.password",
    "password_confirmation",
    "client-secret",
    "accessToken",
    "api_key",
    "apiKey",
    "refresh_token",
    "token[]",
    "userpassword",
];

/// Names no rule knows.
const PLAIN_NAMES: &[&str] = &["note", "city", "comment", "title", "label", "memo"];

struct Gen {
    rng: XorShift,
    /// What was planted, to look for afterwards.
    planted: Vec<String>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: XorShift(seed | 1),
            planted: Vec::new(),
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.below(from.len())]
    }

    fn alnum(&mut self, n: usize) -> String {
        const A: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
        (0..n)
            .map(|_| char::from(A[self.rng.below(A.len())]))
            .collect()
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.rng.below(10) as u8))
            .collect()
    }

    fn card(&mut self) -> String {
        let mut d: Vec<u32> = std::iter::once(4)
            .chain((0..14).map(|_| self.rng.below(10) as u32))
            .collect();
        let sum: u32 = d
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &x)| {
                if i % 2 == 0 {
                    (x * 2) % 9 + if x == 9 { 9 } else { 0 }
                } else {
                    x
                }
            })
            .sum();
        d.push((10 - sum % 10) % 10);
        d.iter()
            .map(|x| char::from_digit(*x, 10).unwrap())
            .collect()
    }

    fn iban(&mut self) -> String {
        let bban = self.digits(18);
        let numeric = format!("{bban}131400");
        let rem = numeric
            .bytes()
            .fold(0u64, |r, b| (r * 10 + u64::from(b - b'0')) % 97);
        format!("DE{:02}{bban}", 98 - rem)
    }

    fn email(&mut self) -> String {
        format!(
            "{}@{}.com",
            self.alnum(8).to_lowercase(),
            self.alnum(6).to_lowercase()
        )
    }

    fn jwt(&mut self) -> String {
        format!(
            "eyJ{}.eyJ{}.{}",
            self.alnum(20),
            self.alnum(30),
            self.alnum(43)
        )
    }

    /// A secret a detector finds.
    fn detectable(&mut self) -> String {
        let s = match self.rng.below(5) {
            0 => self.card(),
            1 => self.iban(),
            2 => self.email(),
            3 => self.jwt(),
            _ => format!("AKIA{}", self.alnum(16).to_uppercase()),
        };
        self.planted.push(s.clone());
        s
    }

    /// A secret only its field's name gives away.
    fn field_secret(&mut self) -> String {
        let s = format!("S{}", self.alnum(14));
        self.planted.push(s.clone());
        s
    }

    fn filler(&mut self) -> String {
        let n = 3 + self.rng.below(12);
        self.alnum(n)
    }

    /// A JSON string literal holding `s`, sometimes written with escapes.
    fn json_string(&mut self, s: &str) -> String {
        match self.rng.below(3) {
            0 => serde_json::to_string(s).unwrap(),
            1 => format!(
                "\"{}\"",
                s.chars()
                    .map(|c| match c {
                        '@' | '.' | '-' => format!("\\u{:04x}", c as u32),
                        '/' => "\\/".to_string(),
                        c => c.to_string(),
                    })
                    .collect::<String>()
            ),
            _ => format!(
                "\"{}\"",
                s.chars()
                    .map(|c| format!("\\u{:04X}", c as u32))
                    .collect::<String>()
            ),
        }
    }

    fn json(&mut self, depth: usize) -> String {
        let members = 1 + self.rng.below(4);
        let mut out = Vec::new();
        for _ in 0..members {
            let member = match self.rng.below(6) {
                0 => {
                    let (name, secret) = (self.pick(SECRET_NAMES), self.field_secret());
                    format!(
                        "{}:{}",
                        serde_json::to_string(name).unwrap(),
                        self.json_string(&secret)
                    )
                }
                1 => {
                    let (name, secret) = (self.pick(PLAIN_NAMES), self.detectable());
                    format!(
                        "{}:{}",
                        serde_json::to_string(name).unwrap(),
                        self.json_string(&secret)
                    )
                }
                2 if depth < 3 => {
                    format!("\"{}\":{}", self.filler(), self.json(depth + 1))
                }
                3 if depth < 3 => {
                    let inner = self.json(depth + 1);
                    format!("\"payload\":{}", serde_json::to_string(&inner).unwrap())
                }
                4 => {
                    let url = self.url();
                    format!("\"next\":{}", self.json_string(&url))
                }
                _ => format!("\"{}\":\"{}\"", self.filler(), self.filler()),
            };
            out.push(member);
        }
        format!("{{{}}}", out.join(","))
    }

    fn url(&mut self) -> String {
        let (a, b, c) = (
            self.field_secret(),
            self.field_secret(),
            self.field_secret(),
        );
        let mail = self.detectable();
        format!(
            "https://shop.example/app;token={a}/x?q={}&access_token={b};note={}#id_token={c}",
            self.filler(),
            pct(&mail)
        )
    }

    fn form(&mut self) -> String {
        let n = 2 + self.rng.below(5);
        (0..n)
            .map(|_| match self.rng.below(3) {
                0 => {
                    let name = self.pick(SECRET_NAMES);
                    format!("{}={}", pct(name), pct(&self.field_secret()))
                }
                1 => {
                    let name = self.pick(PLAIN_NAMES);
                    format!("{name}={}", pct(&self.detectable()))
                }
                _ => format!("{}={}", self.filler(), self.filler()),
            })
            .collect::<Vec<_>>()
            .join(if self.rng.below(4) == 0 { ";" } else { "&" })
    }

    fn multipart(&mut self) -> String {
        let boundary = format!("----b{}", self.alnum(12));
        let mut out = String::new();
        for _ in 0..1 + self.rng.below(4) {
            let (name, ct, content) = match self.rng.below(3) {
                0 => (self.pick(SECRET_NAMES).to_string(), "", self.field_secret()),
                1 => (
                    "doc".into(),
                    "Content-Type: application/json\r\n",
                    self.json(1),
                ),
                _ => (
                    self.pick(PLAIN_NAMES).into(),
                    "",
                    format!("see {}", self.detectable()),
                ),
            };
            out.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{ct}\r\n{content}\r\n"
            ));
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        out
    }
}

fn pct(s: &str) -> String {
    crate::redact::form::percent_encode(s)
}

fn redactor() -> Redactor {
    let r: Redaction = serde_json::from_value(serde_json::json!({})).unwrap();
    Redactor::compile(&r, None).unwrap()
}

/// The event of a request whose body `max_bytes` cuts, redacted.
fn body_event(r: &mut Redactor, media: &str, body: &str, max_bytes: usize) -> AuditEvent {
    let spec: BodyCapture = serde_json::from_value(serde_json::json!({
        "max_bytes": max_bytes,
        "content_types": [media]
    }))
    .unwrap();
    let budget = crate::capture::budget::Budget::new(usize::MAX);
    let mut state =
        BodyState::start(&spec, Side::Request, Some(media.as_bytes()), None, &budget).unwrap();
    let take = state.wants().min(body.len());
    state.push(&body.as_bytes()[..take], body.len());
    let mut e = AuditEvent::new(EventKind::Http);
    state.finish(Side::Request, &mut e);
    r.redact(&mut e);
    e
}

/// Every string of the event, as written and with JSON escapes and percent-escapes undone.
fn readings(e: &AuditEvent) -> Vec<String> {
    let mut all = String::new();
    for a in &e.attributes {
        match &a.value {
            Value::Str(s) => all.push_str(s),
            Value::StrList(l) => all.push_str(&l.join("\n")),
            _ => {}
        }
        all.push('\n');
    }
    let unescaped = unescape_json(&all);
    let decoded = crate::redact::form::percent_decode(&unescaped, true).into_owned();
    vec![all, unescaped, decoded]
}

fn unescape_json(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => out.push_str(&hex),
                }
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    out
}

/// The planted secrets (or 8-character pieces of them) the event still holds.
fn leaked(e: &AuditEvent, planted: &[String]) -> Vec<String> {
    let texts = readings(e);
    let mut found = Vec::new();
    for secret in planted {
        let chars: Vec<char> = secret.chars().collect();
        for w in chars.windows(8.min(chars.len())) {
            let piece: String = w.iter().collect();
            if texts.iter().any(|t| t.contains(&piece)) {
                found.push(format!("{piece} (of {secret})"));
                break;
            }
        }
    }
    found
}

fn check_every_cut(r: &mut Redactor, g: &Gen, media: &str, body: &str, step: usize) {
    for max_bytes in (1..=body.len() + 1).step_by(step) {
        let e = body_event(r, media, body, max_bytes);
        let leaks = leaked(&e, &g.planted);
        assert!(
            leaks.is_empty(),
            "{media}, max_bytes {max_bytes}: {leaks:?}\nbody: {body}\nevent: {:?}",
            e.get_str(attr::REQUEST_BODY)
        );
    }
}

#[test]
fn no_planted_secret_survives_in_bodies_at_any_cut() {
    let mut r = redactor();
    for seed in 0..24u64 {
        let mut g = Gen::new(0x5EED_0000 + seed);
        let (media, body) = match seed % 5 {
            0 => ("application/json", g.json(0)),
            1 => ("application/x-www-form-urlencoded", g.form()),
            2 => ("multipart/form-data", g.multipart()),
            3 => ("text/plain", g.json(0)),
            _ => ("text/plain", g.form()),
        };
        // Every cut for the first bodies of each kind, every third one after.
        check_every_cut(&mut r, &g, media, &body, if seed < 5 { 1 } else { 3 });
    }
}

#[test]
fn no_planted_secret_survives_in_headers_cookies_and_urls() {
    let mut r = redactor();
    for seed in 0..64u64 {
        let mut g = Gen::new(0xC00C_0000 + seed);
        let cookie = format!(
            "sid={}; theme=dark; {}={}",
            g.field_secret(),
            g.filler(),
            g.field_secret()
        );
        let referer = g.url();
        let note = g.json(1);
        let query = g.form();
        let path = format!("/app;token={}/items", g.field_secret());
        let mut e = AuditEvent::new(EventKind::Http);
        e.set("http.request.header.cookie", Value::StrList(vec![cookie]));
        e.set(
            "http.request.header.referer",
            Value::StrList(vec![referer.clone()]),
        );
        e.set(
            "http.response.header.location",
            Value::StrList(vec![referer]),
        );
        e.set(
            "http.request.header.x-audit-note",
            Value::StrList(vec![note]),
        );
        e.set(attr::URL_QUERY, Value::Str(query));
        e.set(attr::URL_PATH, Value::Str(path));
        r.redact(&mut e);
        let leaks = leaked(&e, &g.planted);
        assert!(leaks.is_empty(), "seed {seed}: {leaks:?}\n{e:?}");
    }
}

#[test]
fn no_planted_secret_survives_a_header_cut_at_the_capture_ceiling() {
    let mut r = redactor();
    let mut g = Gen::new(0xCE11);
    for offset in 0..40 {
        g.planted.clear();
        let secret = g.detectable();
        let pad = "x ".repeat((CAPTURE_CEILING - offset) / 2);
        let value = format!("{pad}{secret} tail");
        let mut anomalies = Anomalies::default();
        let captured = decode::string(value.into_bytes(), "x-audit-note", &mut anomalies);
        let mut e = AuditEvent::new(EventKind::Http);
        e.set(
            "http.request.header.x-audit-note",
            Value::StrList(vec![captured]),
        );
        r.redact(&mut e);
        let leaks = leaked(&e, &g.planted);
        assert!(leaks.is_empty(), "offset {offset}: {leaks:?}");
    }
}
