//! The bodies of meshaudit's fuzz targets, shared by the libFuzzer entry points
//! (`fuzz_targets/`, run by `cargo fuzz` on nightly) and the stable fallback
//! (`examples/smoke.rs`, a bounded randomized run used where no nightly toolchain exists).
//!
//! - [`config`]: any bytes as the plugin configuration. Loading never panics; a configuration
//!   that loads redacts a sample event without panicking.
//! - [`redact`]: any bytes, split at `0xFF` bytes, as the traffic of one request (headers,
//!   cookies, query, path, a JSON body, a form body, ...), redacted with [`REDACT_CONFIG`], which
//!   has rules of every kind and every detector. No panic, and two invariants:
//!   1. the `authorization` header is masked item by item (the built-in `default` rule);
//!   2. planted secrets never survive: a known card number and a `Bearer` token are planted
//!      between fuzz bytes (see [`plant`]). The check is differential, so it is a true
//!      invariant whatever the fuzz bytes hold: the same event is also built with decoys of
//!      the same shape in their place, and the redacted event with the secrets must not hold
//!      them more often than the redacted event with the decoys. The fuzz bytes may legitimately
//!      contain (or, through percent-decoding or a `remove` joining two pieces, produce) the
//!      secret in a form redaction keeps, such as `id4111111111111111`; both events then hold
//!      it equally often, and only a planted secret that survives makes the counts differ.
//!      The same holds for a token planted as the password of a URL in a header (`x-callback`).
//!
//!   The request body is JSON, text or multipart form data, the response body form pairs, text
//!   or multipart (picked by a field), and URLs come in headers (`referer`, `location`), so
//!   that redaction reads text by what it is.
//! - [`parsers`]: any bytes through the text parsers one by one (see [`parsers`](mod@parsers)).
//! - [`json_walker`]: the JSON walker checked against serde_json on valid documents (see
//!   [`json_walker`](mod@json_walker)).

pub mod json_walker;
pub mod parsers;

pub use json_walker::json_walker;
pub use parsers::parsers;

use std::cell::RefCell;

use meshaudit::event::{attr, AuditEvent, EventKind, Value};
use meshaudit::plugin::Plugin;
use meshaudit::redact::Redactor;
use meshaudit::route::RequestLine;

/// The value of every environment variable the configuration asks for (the `hash` key).
pub const HASH_KEY: &[u8] = b"0123456789abcdef0123";

/// The proxy's environment: the hash key (the default `redaction.hash_key_env`), and no signing
/// key (integrity unsigned: the fuzz targets are about redaction).
fn env(name: &str) -> Option<Vec<u8>> {
    (name == "MESHAUDIT_HASH_KEY").then(|| HASH_KEY.to_vec())
}

/// Splits a `redact` input into its fields.
pub const SEPARATOR: u8 = 0xFF;

/// The planted secrets, and decoys of the same shape that the same detectors find
/// (a Luhn-valid test card, another bearer token).
pub const CARD: &str = "4111111111111111";
pub const CARD_DECOY: &str = "5555555555554444";
pub const TOKEN: &str = "Zk9cAnArYt0k3nQx7w";
pub const TOKEN_DECOY: &str = "Pq3vDeCoYt0k3nRs5u";

/// A request event, without `http.request.header.`: the header that holds the planted
/// secrets. No rule names it, so only the detectors protect it.
pub const CANARY_HEADER: &str = "http.request.header.x-canary";

/// Rules of every kind (headers, cookies, query, path, JSON, form; scoped by host, path prefix,
/// path pattern and method), every action, every detector (some with another action) and
/// custom regex detectors. Partial and truncate actions keep at most 4 characters, so none of
/// them can keep a planted secret whole.
pub const REDACT_CONFIG: &str = r#"{
  "redaction": {
    "detectors": {
      "email": {"action": "hash"},
      "ssn": {"action": "partial", "keep": 2},
      "iban": {"action": "truncate", "keep": 4},
      "jwt": {"action": "remove"},
      "card": true
    },
    "custom_detectors": [
      {"name": "emp", "pattern": "EMP-[0-9]{6}"},
      {"name": "msk", "pattern": "msk_(live|test)_[A-Za-z0-9]{24}", "action": "hash"},
      {"name": "ghp", "pattern": "ghp_[A-Za-z0-9]{8,}", "action": "remove"},
      {"name": "tok", "pattern": "tok_[a-z0-9]{6,}", "action": "truncate", "keep": 4},
      {"name": "acct", "pattern": "\\bACCT[0-9]{6,}\\b", "action": "partial", "keep": 2}
    ],
    "rules": [
      {"name": "user", "headers": ["x-user"], "action": "hash"},
      {"name": "tenant", "headers": ["x-tenant"], "action": "remove"},
      {"name": "trace", "headers": ["x-trace"], "action": "truncate", "keep": 4},
      {"name": "sessions", "cookies": ["session", "sid"], "action": "partial"},
      {"name": "search", "query": ["email", "q", "ref"], "action": "truncate", "keep": 3},
      {"name": "ids", "path": ["/users/{id}/cards/{card}", "/orgs/{org}/**", "/v1/*/tokens/{t}"],
       "action": "hash"},
      {"name": "gone", "path": ["/p/{x}"], "action": "remove"},
      {"name": "pay", "match": {"path_prefix": "/pay", "method": "POST"},
       "json": ["$.card.number", "$..iban", "$.items[*].token", "$.items[0]", "$['odd key']"],
       "form": ["pan"], "action": "partial", "keep": 4},
      {"name": "holder", "match": {"host": "*.example.com"},
       "json": ["$.card.holder", "$.billing.*"], "form": ["holder"], "action": "remove"},
      {"name": "everything", "match": {"path_pattern": "/a/{x}/b"}, "json": ["$.*"],
       "action": "mask"},
      {"name": "keyed", "match": {"host": "api.internal"}, "json": ["$..account"],
       "query": ["account"], "action": "hash"}
    ]
  }
}"#;

thread_local! {
    static REDACTOR: RefCell<Option<Redactor>> = const { RefCell::new(None) };
}

/// `config` target: any bytes as the plugin configuration.
pub fn config(data: &[u8]) {
    let Ok(mut loaded) = Plugin::load(data, env) else {
        return;
    };
    let mut e = sample_event();
    loaded.redactor.redact(&mut e);
    for path in ["/pay/1", "/", ""] {
        let line = RequestLine {
            method: "POST",
            host: "api.example.com",
            path,
        };
        let _ = loaded.bodies.for_request(&line);
    }
}

/// A small event with a value in every place redaction looks at.
fn sample_event() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Http);
    let s = |v: &str| Value::Str(v.to_string());
    let l = |v: &[&str]| Value::StrList(v.iter().map(|x| x.to_string()).collect());
    e.set(attr::HTTP_METHOD, s("POST"));
    e.set(attr::SERVER_ADDRESS, s("api.example.com"));
    e.set(attr::URL_PATH, s("/users/42/cards/7"));
    e.set(attr::URL_QUERY, s("api_key=k&page=2&email=a%40example.com"));
    e.set(
        "http.request.header.authorization",
        l(&["Bearer abcdefgh123"]),
    );
    e.set("http.request.header.cookie", l(&["session=1; lang=en"]));
    e.set("http.response.header.set-cookie", l(&["sid=2; Path=/"]));
    e.set("http.request.header.x-user", l(&["alice", "bob"]));
    e.set(
        attr::USER_AGENT,
        s("curl/8 alice@example.com 4111 1111 1111 1111"),
    );
    e.set(
        attr::REQUEST_BODY,
        s(r#"{"password":"p","card":{"number":"4000 0000 0000 0002"},"items":[{"token":"t"}]}"#),
    );
    e.set(attr::REQUEST_BODY_TYPE, s("json"));
    e.set(
        attr::RESPONSE_BODY,
        s("pan=5555555555554444&ok=1&password=x"),
    );
    e.set(attr::RESPONSE_BODY_TYPE, s("form"));
    e
}

/// The fields of a `redact` input, in input order; missing ones are empty.
#[derive(Debug, Default)]
pub struct Fields {
    pub header_x: String,
    pub query: String,
    pub path: String,
    pub json: String,
    pub form: String,
    pub cookie: String,
    pub set_cookie: String,
    pub authorization: String,
    pub canary_before: String,
    pub canary_after: String,
    pub method: String,
    pub host: String,
    pub named_headers: String,
    pub user_agent: String,
    pub request_id: String,
    pub peer_subject: String,
    /// `referer` (request) and `location` (response) header values, one a line.
    pub urls: String,
    /// The body kinds: the first byte picks the request body's (`json`, `text`, `multipart`),
    /// the second the response body's (`form`, `text`, `multipart`).
    pub kinds: String,
    /// After the planted password of the `x-callback` URL (path, query, fragment).
    pub callback: String,
}

impl Fields {
    pub fn parse(data: &[u8]) -> Fields {
        let mut parts = data
            .split(|&b| b == SEPARATOR)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let mut next = || parts.next().unwrap_or_default();
        Fields {
            header_x: next(),
            query: next(),
            path: next(),
            json: next(),
            form: next(),
            cookie: next(),
            set_cookie: next(),
            authorization: next(),
            canary_before: next(),
            canary_after: next(),
            method: next(),
            host: next(),
            named_headers: next(),
            user_agent: next(),
            request_id: next(),
            peer_subject: next(),
            urls: next(),
            kinds: next(),
            callback: next(),
        }
    }
}

/// The text with a card number and a bearer token between fuzz bytes. The fixed words around
/// them (`card: `, ` ; auth: Bearer `, ` ; `) keep their word boundaries whatever the fuzz bytes
/// are: no detector or custom pattern matches across `: ` or ` ; `, so nothing found in the fuzz
/// bytes can start before a planted secret and end inside it.
pub fn plant(before: &str, after: &str, card: &str, token: &str) -> String {
    format!("{before} card: {card} ; auth: Bearer {token} ; {after}")
}

fn list(s: &str) -> Value {
    Value::StrList(s.split('\n').map(str::to_string).collect())
}

/// A header that holds a URL whose user-information password is the planted token: no rule
/// names it, so only the URL reading (and detectors) protect it.
pub const CALLBACK_HEADER: &str = "http.request.header.x-callback";

/// The multipart boundary of multipart bodies.
pub const BOUNDARY: &str = "fuzzB0undary";

/// `parts` (name, content) as a multipart body; `cut`: the closing delimiter is missing.
pub fn multipart_body(parts: &[(&str, &str)], cut: bool) -> String {
    let mut out = String::new();
    for (name, content) in parts {
        let ct = if name.starts_with("json") {
            "\r\nContent-Type: application/json"
        } else {
            ""
        };
        out.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{ct}\r\n\r\n{content}\r\n"
        ));
    }
    if !cut {
        out.push_str(&format!("--{BOUNDARY}--\r\n"));
    }
    out
}

/// The event of a `redact` input, with the planted secrets or their decoys.
pub fn event(f: &Fields, card: &str, token: &str) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Http);
    let s = |v: &str| Value::Str(v.to_string());
    let planted = plant(&f.canary_before, &f.canary_after, card, token);
    e.set(attr::HTTP_METHOD, s(&f.method));
    e.set(attr::URL_PATH, s(&f.path));
    e.set(attr::URL_QUERY, s(&f.query));
    e.set(attr::SERVER_ADDRESS, s(&f.host));
    e.set(attr::USER_AGENT, s(&f.user_agent));
    e.set("http.request.header.x", list(&f.header_x));
    e.set("http.request.header.authorization", list(&f.authorization));
    e.set("http.request.header.cookie", list(&f.cookie));
    e.set("http.response.header.set-cookie", list(&f.set_cookie));
    let mut named = f.named_headers.split('\n');
    for name in ["x-user", "x-tenant", "x-trace"] {
        let value = named.next().unwrap_or_default();
        e.set(format!("http.request.header.{name}"), list(value));
    }
    e.set(CANARY_HEADER, Value::StrList(vec![planted.clone()]));
    // The JSON body: the planted text in a member no rule names, then the fuzz bytes as they
    // are (often not JSON: redaction cuts it there, after the planted member).
    let note = serde_json::Value::String(planted.clone()).to_string();
    let json = format!(r#"{{"note":{note},"data":{}}}"#, f.json);
    let mut kinds = f.kinds.bytes();
    let (request_kind, response_kind) = (kinds.next().unwrap_or(0), kinds.next().unwrap_or(0));
    let cut = kinds.next().unwrap_or(0) & 1 == 1;
    let (request_body, request_type) = match request_kind % 3 {
        0 => (json, "json"),
        1 => (json, "text"),
        // The planted text in a part no rule names, then the fuzz bytes as a JSON part and as
        // a part named by a form rule (`pan`).
        _ => (
            multipart_body(
                &[("note", &planted), ("json-data", &f.json), ("pan", &f.form)],
                cut,
            ),
            "multipart",
        ),
    };
    e.set(attr::REQUEST_BODY, s(&request_body));
    e.set(attr::REQUEST_BODY_TYPE, s(request_type));
    let (response_body, response_type) = match response_kind % 3 {
        0 => (f.form.clone(), "form"),
        1 => (f.form.clone(), "text"),
        _ => (
            multipart_body(&[("holder", &f.form), ("data", &f.json)], cut),
            "multipart",
        ),
    };
    e.set(attr::RESPONSE_BODY, s(&response_body));
    e.set(attr::RESPONSE_BODY_TYPE, s(response_type));
    let mut urls = f.urls.split('\n');
    e.set(
        "http.request.header.referer",
        list(urls.next().unwrap_or_default()),
    );
    e.set(
        "http.response.header.location",
        list(urls.next().unwrap_or_default()),
    );
    // The planted token as a URL's password: the authority is fixed, the fuzz bytes follow it.
    e.set(
        CALLBACK_HEADER,
        Value::StrList(vec![format!(
            "https://svc:{token}@hooks.example.com/{}",
            f.callback
        )]),
    );
    e.set("meshaudit.peer.subject", s(&f.peer_subject));
    e.set(attr::REQUEST_ID, s(&f.request_id));
    e
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// `redact` target: any bytes as one request's traffic.
pub fn redact(data: &[u8]) {
    let fields = Fields::parse(data);
    let mut planted = event(&fields, CARD, TOKEN);
    let mut decoy = event(&fields, CARD_DECOY, TOKEN_DECOY);
    REDACTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let redactor =
            slot.get_or_insert_with(|| match Plugin::load(REDACT_CONFIG.as_bytes(), env) {
                Ok(l) => l.redactor,
                Err(e) => panic!("REDACT_CONFIG does not load: {e}"),
            });
        redactor.redact(&mut planted);
        redactor.redact(&mut decoy);
    });

    // The `default` rule masks every authorization value, whatever it holds.
    if let Some(Value::StrList(items)) = planted.get("http.request.header.authorization") {
        assert!(
            items.iter().all(|v| v == "[REDACTED]"),
            "authorization not masked: {items:?}"
        );
    }

    // The header with the planted secrets is never removed: no rule names it.
    assert!(
        planted.get(CANARY_HEADER).is_some(),
        "{CANARY_HEADER} removed"
    );

    let (p, d) = (format!("{planted:?}"), format!("{decoy:?}"));
    for secret in [CARD, TOKEN] {
        assert!(
            count(&p, secret) <= count(&d, secret),
            "planted secret {secret:?} survived redaction\nfields: {fields:?}\n\
             {CANARY_HEADER} after redaction: {:?}\nrules fired: {:?}\nrequest body after \
             redaction: {:?}",
            planted.get(CANARY_HEADER),
            planted.get(attr::REDACTION_RULES),
            planted.get(attr::REQUEST_BODY),
        );
    }
}

/// A line of a trail through `meshaudit verify`'s reader and through the general JSON reader:
/// the same records (every key looked up the same, the same canonical bytes), or the same
/// error.
pub fn trail_line(data: &[u8]) {
    use meshaudit::integrity::verify::json_line::LineReader;
    use meshaudit::integrity::verify::record::from_json_line;
    let line = String::from_utf8_lossy(data);
    let mut reader = LineReader::default();
    // Twice: the second read refills the record the first one left.
    for _ in 0..2 {
        let general = from_json_line(&line, "fuzz");
        let fast = reader.read(&line, "fuzz").map(<[_]>::to_vec);
        match (&fast, &general) {
            (Ok(f), Ok(g)) => {
                assert_eq!(f.len(), g.len());
                for (f, g) in f.iter().zip(g) {
                    let (mut fc, mut gc) = (Vec::new(), Vec::new());
                    f.canonical(&mut fc);
                    g.canonical(&mut gc);
                    assert_eq!(fc, gc, "canonical bytes of {line}");
                    for (key, _) in f.attributes.iter().chain(&g.attributes) {
                        assert_eq!(f.get(key), g.get(key), "{key} in {line}");
                    }
                }
            }
            (Err(f), Err(g)) => assert_eq!(f, g),
            _ => panic!("{line}: fast {fast:?}, general {general:?}"),
        }
    }
}
