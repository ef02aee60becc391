//! The `json_walker` target: the token-stream JSON walker (`meshaudit::redact::json::redact`)
//! checked against serde_json on valid documents.
//!
//! The input is a recipe: its first bytes build one to three JSON paths (`.name`, `..name`,
//! `.*`, `[N]`, `[*]`, `['name']`, names from a list of word-model variants), the rest a
//! `serde_json::Value` (keys and strings with escapes, Unicode, word-model variants; numbers
//! with exponents; sometimes nesting around the 64-level limit). The document is written
//! compact, pretty and tab-indented; the expected result is computed independently, by walking
//! the parsed `Value` with the same path semantics (`.name` compares folded names whole,
//! `..name` by words, through `meshaudit::redact::names`; the first matching path wins; a
//! matched value is replaced or removed whole, nothing inside it is visited).
//!
//! Asserted for each writing:
//! 1. replacing every matched value with `"X"` (strings kept): the output parses, equals the
//!    expected value, and the walker reported each matched value in document order with the
//!    right path index and text (a string unescaped, anything else as written);
//! 2. removing every matched value: the output parses and equals the expected value (members
//!    and elements gone);
//! 3. with strings rewritten too (every key and unmatched string `s` becomes `~s`), with
//!    replacement or removal: the output parses and equals the expected value, and the walker
//!    said a string was `escaped` exactly when it was written with escapes;
//! 4. deeper than 64 containers is malformed, anything else is not;
//! 5. on prefixes of the document (a body cut at the capture limit) the walker never panics
//!    and never reports it malformed (cuts of the compact writing: its first 32 bytes one by
//!    one, then 32 more; 16 cuts of the pretty one).
//!
//! Documents the fuzzer writes itself: the bytes after the input's last NUL (valid JSON text
//! holds none), when serde_json reads them, are checked the same way (all four modes, 1 to 5),
//! with the paths of the recipe. Whatever their whitespace, escapes (`\u0061`, surrogate pairs,
//! `\/`), number forms and key order, the output parses and equals the expected value (keys,
//! array lengths and unmatched values kept, matched ones replaced or removed). Two checks are
//! weaker there: `escaped` need only be true for a string that needs escapes (one may be
//! written with escapes it does not need), and the reported matches are compared only when no
//! object has a key twice (serde_json keeps the last of duplicates; the output check holds
//! either way, as serde_json reads the output the same way). serde_json is built with
//! `preserve_order`, so a parsed document keeps its members in document order.

use std::cell::RefCell;

use meshaudit::redact::json::{self, matched_only, JsonPath, Matched, Visit};
use meshaudit::redact::names::{FieldName, NamePattern};
use serde_json::{Map, Value};

/// Reads a recipe; past its end every byte is 0.
struct Recipe<'a> {
    data: &'a [u8],
    at: usize,
    /// Values still allowed (documents stay small).
    budget: usize,
    deep_done: bool,
}

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }
}

/// Names of path steps: word-model variants of a few fields.
const STEP_NAMES: &[&str] = &[
    "password",
    "pass",
    "key",
    "token",
    "a",
    "b",
    "items",
    "card",
    "number",
    "cardNumber",
    "card_number",
    "ssn",
    "api_key",
    "apiKey",
    "x",
    "id",
    "secret",
    "PASSWORD",
    "v2",
    "é",
];

/// Keys of documents: the step names written other ways, and near misses.
const KEYS: &[&str] = &[
    "password",
    "Password",
    "newPassword",
    "user_password",
    "userpassword",
    "PASSWORD",
    "pass",
    "passwd",
    "key",
    "monkey",
    "keyId",
    "api-key",
    "X-API-KEY",
    "APIKey",
    "token",
    "csrftoken",
    "token[]",
    "a",
    "A",
    "b",
    "items",
    "card",
    "cardNumber",
    "card-number",
    "CARD_NUMBER",
    "number",
    "ssn",
    "SSN2",
    "x",
    "id",
    "secret",
    "",
    " ",
    "v2",
    "V_2",
    "é",
    "É",
    "pass\u{0}word",
    "pass\"word",
    "pass\\word",
    "pass\nword",
    "Ünïcode_Naïve",
    "password2",
    "card.number",
    "items[0]",
    "😀key",
];

/// Characters of generated strings and keys.
const CHARS: &[char] = &[
    'a', 'b', 'P', 'w', '1', '0', ' ', '-', '_', '.', '[', ']', '"', '\\', '/', '\n', '\t',
    '\u{0}', '\u{1f}', '\u{7f}', 'é', 'Ü', '€', '\u{2028}', '😀', '{', '}', ':', ',', '\'',
];

fn text(r: &mut Recipe<'_>) -> String {
    let len = r.below(12);
    (0..len)
        .map(|_| CHARS[usize::from(r.byte()) % CHARS.len()])
        .collect()
}

fn key(r: &mut Recipe<'_>) -> String {
    let k = usize::from(r.byte());
    match KEYS.get(k % (KEYS.len() + 8)) {
        Some(k) => (*k).to_string(),
        None => text(r),
    }
}

fn number(r: &mut Recipe<'_>) -> Value {
    let n = i16::from_le_bytes([r.byte(), r.byte()]);
    match r.below(6) {
        0 => Value::from(n),
        1 => Value::from(u64::MAX - u64::from(r.byte())),
        2 => Value::from(i64::MIN + i64::from(r.byte())),
        _ => {
            let exp = i32::from(r.below(80)) * 8 - 320;
            let f = f64::from(n) * 10f64.powi(exp) + f64::from(r.below(3)) / 4.0;
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    }
}

fn value(r: &mut Recipe<'_>, depth: usize) -> Value {
    if r.budget == 0 {
        return Value::Null;
    }
    r.budget -= 1;
    let op = if depth >= 8 { r.below(5) } else { r.below(10) };
    match op {
        0 => Value::Null,
        1 => Value::Bool(r.byte() & 1 == 1),
        2 => number(r),
        3 | 4 => Value::String(text(r)),
        5 | 6 => {
            let mut m = Map::new();
            for _ in 0..r.below(5) {
                let k = key(r);
                let v = value(r, depth + 1);
                m.insert(k, v);
            }
            Value::Object(m)
        }
        7 | 8 => Value::Array((0..r.below(5)).map(|_| value(r, depth + 1)).collect()),
        _ if r.deep_done => Value::Null,
        _ => {
            // Nesting around the walker's limit of 64 containers.
            r.deep_done = true;
            let levels = 56 + usize::from(r.below(14));
            let mut v = value(r, depth + 1);
            for i in 0..levels {
                v = if i % 3 == 0 {
                    let mut m = Map::new();
                    m.insert(key(r), v);
                    Value::Object(m)
                } else {
                    Value::Array(vec![v])
                };
            }
            v
        }
    }
}

/// A path step, as the expected result reads it.
#[derive(Debug, Clone)]
enum Step {
    Child(String),
    Descendant(String),
    AnyMember,
    Index(usize),
    AnyIndex,
}

fn paths(r: &mut Recipe<'_>) -> Vec<(String, Vec<Step>)> {
    let count = 1 + r.below(3);
    (0..count)
        .map(|_| {
            let mut text = String::from("$");
            let mut steps = Vec::new();
            for _ in 0..1 + r.below(4) {
                let name = STEP_NAMES[usize::from(r.byte()) % STEP_NAMES.len()];
                let step = match r.below(7) {
                    0 | 1 => {
                        text.push('.');
                        text.push_str(name);
                        Step::Child(name.to_string())
                    }
                    2 => {
                        text.push_str(&format!("['{name}']"));
                        Step::Child(name.to_string())
                    }
                    3 => {
                        text.push_str("..");
                        text.push_str(name);
                        Step::Descendant(name.to_string())
                    }
                    4 => {
                        text.push_str(".*");
                        Step::AnyMember
                    }
                    5 => {
                        let n = usize::from(r.below(4));
                        text.push_str(&format!("[{n}]"));
                        Step::Index(n)
                    }
                    _ => {
                        text.push_str("[*]");
                        Step::AnyIndex
                    }
                };
                steps.push(step);
            }
            (text, steps)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Loc {
    Key(String),
    Index(usize),
}

/// Whether `steps` name the location `loc` exactly (written from the path semantics, not from
/// the walker's bit sets).
fn path_matches(steps: &[Step], loc: &[Loc]) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return loc.is_empty();
    };
    match step {
        Step::Descendant(name) => {
            let p = NamePattern::new(name);
            (0..loc.len()).any(|i| match &loc[i] {
                Loc::Key(k) => p.matches(&FieldName::new(k)) && path_matches(rest, &loc[i + 1..]),
                Loc::Index(_) => false,
            })
        }
        _ => {
            let Some((first, more)) = loc.split_first() else {
                return false;
            };
            let ok = match (step, first) {
                (Step::Child(n), Loc::Key(k)) => NamePattern::new(n).equals(&FieldName::new(k)),
                (Step::AnyMember, Loc::Key(_)) => true,
                (Step::Index(n), Loc::Index(i)) => n == i,
                (Step::AnyIndex, Loc::Index(_)) => true,
                _ => false,
            };
            ok && path_matches(rest, more)
        }
    }
}

/// How the expected result is made.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode {
    /// Matched values become `"X"` (else they are removed).
    replace: bool,
    /// Keys and unmatched strings `s` become `~s`.
    rewrite_strings: bool,
}

/// What the walker should report and write.
struct Expected<'p> {
    paths: &'p [(String, Vec<Step>)],
    mode: Mode,
    /// (path index, value) of each matched value, in document order.
    matched: Vec<(usize, Value)>,
    malformed: bool,
}

const MAX_DEPTH: usize = 64;

impl Expected<'_> {
    /// The expected rewrite of `v` at `loc`, inside `depth` containers; `None`: removed.
    fn walk(&mut self, v: &Value, loc: &mut Vec<Loc>, depth: usize) -> Option<Value> {
        if !loc.is_empty() {
            if let Some(i) = self.paths.iter().position(|(_, s)| path_matches(s, loc)) {
                self.matched.push((i, v.clone()));
                return self.mode.replace.then(|| Value::String("X".into()));
            }
        }
        let rewrite_strings = self.mode.rewrite_strings;
        let rewrite = |s: &str| {
            if rewrite_strings {
                format!("~{s}")
            } else {
                s.to_string()
            }
        };
        match v {
            Value::String(s) => Some(Value::String(rewrite(s))),
            Value::Object(m) => {
                if depth >= MAX_DEPTH {
                    self.malformed = true;
                }
                let mut out = Map::new();
                for (k, child) in m {
                    let new_key = rewrite(k);
                    loc.push(Loc::Key(k.clone()));
                    if let Some(c) = self.walk(child, loc, depth + 1) {
                        out.insert(new_key, c);
                    }
                    loc.pop();
                }
                Some(Value::Object(out))
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    self.malformed = true;
                }
                let mut out = Vec::new();
                for (i, child) in items.iter().enumerate() {
                    loc.push(Loc::Index(i));
                    out.extend(self.walk(child, loc, depth + 1));
                    loc.pop();
                }
                Some(Value::Array(out))
            }
            other => Some(other.clone()),
        }
    }
}

/// Whether serde_json writes `s` with escapes.
fn needs_escape(s: &str) -> bool {
    s.chars().any(|c| c == '"' || c == '\\' || c < ' ')
}

/// A visitor for mode 3: every string offered becomes `~s`; `escaped` is checked.
struct Rewriter<'a> {
    replace: bool,
    /// `escaped` must equal whether the string needs escapes (else: be true if it does).
    exact: bool,
    bad_escaped: &'a RefCell<Option<(String, bool)>>,
}

impl Visit for Rewriter<'_> {
    fn matched(&mut self, _: Matched<'_>) -> Option<String> {
        self.replace.then(|| "\"X\"".to_string())
    }

    fn string(&mut self, content: &str, escaped: bool) -> Option<String> {
        let needs = needs_escape(content);
        if escaped != needs && (self.exact || needs) {
            self.bad_escaped
                .borrow_mut()
                .get_or_insert((content.to_string(), escaped));
        }
        Some(format!("~{content}"))
    }
}

fn writings(doc: &Value) -> Vec<String> {
    let mut tabs = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut tabs, fmt);
    serde::Serialize::serialize(doc, &mut ser).expect("a Value serializes");
    vec![
        serde_json::to_string(doc).expect("a Value serializes"),
        serde_json::to_string_pretty(doc).expect("a Value serializes"),
        String::from_utf8(tabs).expect("serde_json writes UTF-8"),
    ]
}

/// `json_walker` target.
pub fn json_walker(data: &[u8]) {
    let mut r = Recipe {
        data,
        at: 0,
        budget: 150,
        deep_done: false,
    };
    let paths = paths(&mut r);
    let compiled: Vec<JsonPath> = paths
        .iter()
        .map(|(text, _)| {
            JsonPath::parse(text).unwrap_or_else(|e| panic!("a generated path is refused: {e}"))
        })
        .collect();
    let generated = value(&mut r, 0);
    let walk = Walk {
        paths: &paths,
        compiled: &compiled,
    };

    for (writing, body) in writings(&generated).into_iter().enumerate() {
        // Cuts of the compact writing (the first 32 bytes one by one, then 32 more), a sample of
        // the pretty one (whitespace at the cut); the walks dominate the target's time.
        let cuts = [(32, 32), (0, 16), (0, 0)][writing.min(2)];
        walk.check(
            &body,
            Checks {
                exact_escapes: true,
                matches: true,
                cuts,
            },
        );
    }

    // A document as the fuzzer wrote it: the bytes after the last NUL (which valid JSON text
    // never holds), when serde_json reads them as JSON. Whitespace, escapes, number forms and
    // duplicate keys come from the fuzzer, not from serde_json's writer. serde_json keeps the
    // last of duplicate keys, and so does it on the walker's output: the output checks hold;
    // the reported matches are compared only without duplicates. A string may be written with
    // escapes it does not need (`\u0061`): `escaped` must only be true for one that needs them.
    if let Some(nul) = data.iter().rposition(|&b| b == 0) {
        if let Ok(text) = std::str::from_utf8(&data[nul + 1..]) {
            if serde_json::from_str::<Value>(text).is_ok() {
                walk.check(
                    text,
                    Checks {
                        exact_escapes: false,
                        matches: !has_duplicate_keys(text),
                        cuts: (32, 16),
                    },
                );
            }
        }
    }

    // Whatever the path text, parsing never panics.
    let raw = String::from_utf8_lossy(data.get(r.at.min(data.len())..).unwrap_or_default());
    let _ = JsonPath::parse(&raw);
    let _ = JsonPath::parse(&format!("${raw}"));
}

/// The paths of one input, as the expected result reads them and as the walker does.
struct Walk<'p> {
    paths: &'p [(String, Vec<Step>)],
    compiled: &'p [JsonPath],
}

/// What [`Walk::check`] asserts besides the output.
struct Checks {
    /// `escaped` is true exactly for strings written with escapes (serde_json's writings: it
    /// escapes only what it must); else only: a string that needs escapes was said escaped.
    exact_escapes: bool,
    /// The reported matches (path index, text) are compared with the expected ones.
    matches: bool,
    /// Cuts: the first N bytes one by one, then M more spread over the body.
    cuts: (usize, usize),
}

impl Walk<'_> {
    /// The walker on `body` (valid JSON) in each mode against the expected result, then on
    /// prefixes of it.
    fn check(&self, body: &str, checks: Checks) {
        let paths = self.paths;
        let compiled = self.compiled;
        let path_texts: Vec<&str> = paths.iter().map(|(t, _)| t.as_str()).collect();
        // The expected result is built from the body as serde_json reads it, so both sides read
        // every number from the same text (serde_json's float parsing does not round-trip).
        let doc: Value = serde_json::from_str(body).expect("the body is JSON");
        let ctx = || format!("paths: {path_texts:?}\nbody: {body}");
        for mode in [
            Mode {
                replace: true,
                rewrite_strings: false,
            },
            Mode {
                replace: false,
                rewrite_strings: false,
            },
            Mode {
                replace: true,
                rewrite_strings: true,
            },
            Mode {
                replace: false,
                rewrite_strings: true,
            },
        ] {
            let mut expected = Expected {
                paths: &paths,
                mode,
                matched: Vec::new(),
                malformed: false,
            };
            let want = expected.walk(&doc, &mut Vec::new(), 0);
            let mut seen: Vec<(usize, String)> = Vec::new();
            let bad_escaped = RefCell::new(None);
            let b = body;
            let out = {
                if mode.rewrite_strings {
                    json::redact(
                        b,
                        &compiled,
                        Rewriter {
                            replace: mode.replace,
                            exact: checks.exact_escapes,
                            bad_escaped: &bad_escaped,
                        },
                    )
                } else {
                    json::redact(
                        b,
                        &compiled,
                        matched_only(|m: Matched<'_>| {
                            seen.push((m.path_index, m.text.to_string()));
                            mode.replace.then(|| "\"X\"".to_string())
                        }),
                    )
                }
            };
            let malformed = out.as_ref().is_some_and(|o| o.malformed);
            assert_eq!(
                malformed,
                expected.malformed,
                "malformed is {malformed}, expected {}\n{}",
                expected.malformed,
                ctx()
            );
            if let Some((content, escaped)) = bad_escaped.borrow().as_ref() {
                panic!(
                    "string {content:?} offered with escaped={escaped}, written {}\n{}",
                    if *escaped {
                        "without escapes"
                    } else {
                        "with escapes"
                    },
                    ctx()
                );
            }
            if expected.malformed {
                continue;
            }
            let text = out.map_or_else(|| body.to_string(), |o| o.text);
            let got: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!(
                        "the output is not JSON ({e}); replace={} rewrite_strings={}\n{}\noutput: {text}",
                        mode.replace,
                        mode.rewrite_strings,
                        ctx()
                    )
                });
            assert_eq!(
                Some(&got),
                want.as_ref(),
                "the output differs from the expected; replace={} rewrite_strings={}\n{}\n\
                     output: {text}",
                mode.replace,
                mode.rewrite_strings,
                ctx()
            );
            if !mode.rewrite_strings && checks.matches {
                assert_eq!(
                    seen.len(),
                    expected.matched.len(),
                    "matched {} values, expected {}\n{}",
                    seen.len(),
                    expected.matched.len(),
                    ctx()
                );
                for ((index, text), (want_index, want)) in seen.iter().zip(&expected.matched) {
                    assert_eq!(index, want_index, "path index of {want}\n{}", ctx());
                    match want {
                        Value::String(s) => {
                            assert_eq!(text, s, "matched text of a string\n{}", ctx())
                        }
                        other => {
                            let read: Result<Value, _> = serde_json::from_str(text);
                            assert_eq!(
                                read.ok().as_ref(),
                                Some(other),
                                "matched text {text:?}\n{}",
                                ctx()
                            );
                        }
                    }
                }
            }
        }

        // Prefixes: a body cut anywhere (at a character boundary) is never malformed.
        let deep = {
            let mut e = Expected {
                paths: &paths,
                mode: Mode {
                    replace: true,
                    rewrite_strings: false,
                },
                matched: Vec::new(),
                malformed: false,
            };
            e.walk(&doc, &mut Vec::new(), 0);
            e.malformed
        };
        let (first, samples) = checks.cuts;
        if samples == 0 {
            return;
        }
        let step = (body.len() / samples).max(1);
        let mut cut = 0;
        while cut < body.len() {
            if body.is_char_boundary(cut) {
                let prefix = &body[..cut];
                for replace in [true, false] {
                    let out = json::redact(
                        prefix,
                        &compiled,
                        matched_only(|_| replace.then(|| "\"X\"".to_string())),
                    );
                    if !deep {
                        assert!(
                            !out.as_ref().is_some_and(|o| o.malformed),
                            "a cut body is malformed: {prefix:?}\npaths: {path_texts:?}\n\
                                 output: {:?}",
                            out.map(|o| o.text)
                        );
                    }
                }
            }
            cut += if cut < first { 1 } else { step };
        }
    }
}

/// Whether a JSON text has an object with a key twice (serde_json's `Value` keeps the last).
fn has_duplicate_keys(text: &str) -> bool {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::Cell;

    thread_local! {
        static FOUND: Cell<bool> = const { Cell::new(false) };
    }

    struct Any;
    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Any, D::Error> {
            d.deserialize_any(AnyVisitor)
        }
    }
    struct AnyVisitor;
    impl<'de> Visitor<'de> for AnyVisitor {
        type Value = Any;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_str<E>(self, _: &str) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_unit<E>(self) -> Result<Any, E> {
            Ok(Any)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
            while seq.next_element::<Any>()?.is_some() {}
            Ok(Any)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any, A::Error> {
            let mut keys = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if !keys.insert(k) {
                    FOUND.with(|f| f.set(true));
                }
                map.next_value::<Any>()?;
            }
            Ok(Any)
        }
    }

    FOUND.with(|f| f.set(false));
    let _ = serde_json::from_str::<Any>(text);
    FOUND.with(Cell::get)
}
