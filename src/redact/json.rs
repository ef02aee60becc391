//! JSON bodies: field redaction by path (`$.password`, `$.card.number`, `$..ssn`,
//! `$.items[*].token`, `$.items[0]`, `$.*`).
//!
//! The body is walked as a token stream, not parsed into a tree: a matched value is skipped
//! whole and replaced, so redaction costs one pass and works on truncated bodies (a body cut at
//! the capture limit is still redacted up to the cut). Input that is not JSON is cut at the
//! first byte that cannot be JSON, so nothing after a point of confusion can leak.
//!
//! Member names are compared by the word model of [`super::names`]: a path step (`.number`)
//! by its whole name, a descendant step (`..password`) by words, so `newPassword` and
//! `PASSWORD` are found too. Matching a location costs steps × depth², never more, however
//! many `..` a path has.

use std::borrow::Cow;

use super::names::{FieldName, NamePattern};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `.name` or `['name']`
    Child(NamePattern),
    /// `..name`: `name` at any depth below.
    Descendant(NamePattern),
    /// `.*`
    AnyMember,
    /// `[N]`
    Index(usize),
    /// `[*]`
    AnyIndex,
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

/// Where a value sits: member names and array indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Key(FieldName),
    Index(usize),
}

impl JsonPath {
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| Err(format!("JSON path {path:?}: {why}"));
        let Some(mut rest) = path.strip_prefix('$') else {
            return bad("must start with '$'");
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("..") {
                let (name, r) = take_name(r);
                if name.is_empty() {
                    return bad("'..' must be followed by a name");
                }
                steps.push(Step::Descendant(named(name)?));
                rest = r;
            } else if let Some(r) = rest.strip_prefix(".*") {
                steps.push(Step::AnyMember);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('.') {
                let (name, r) = take_name(r);
                if name.is_empty() {
                    return bad("'.' must be followed by a name");
                }
                steps.push(Step::Child(named(name)?));
                rest = r;
            } else if let Some(r) = rest.strip_prefix('[') {
                let Some((inner, r)) = r.split_once(']') else {
                    return bad("unclosed '['");
                };
                let quoted = |q: char| inner.strip_prefix(q).and_then(|i| i.strip_suffix(q));
                let step = if inner == "*" {
                    Step::AnyIndex
                } else if let Some(name) = quoted('\'').or_else(|| quoted('"')) {
                    Step::Child(named(name)?)
                } else if let Ok(n) = inner.parse::<usize>() {
                    Step::Index(n)
                } else {
                    return bad("brackets hold *, an index or a quoted name");
                };
                steps.push(step);
                rest = r;
            } else {
                return bad("expected '.', '..' or '['");
            }
        }
        if steps.is_empty() {
            return bad("the whole document cannot be a field");
        }
        Ok(JsonPath(steps))
    }

    /// Whether the path names the value at `loc`. The set of location prefixes a path's
    /// first steps can consume is carried step by step (a bit per prefix length: depth is at
    /// most [`MAX_DEPTH`]), so any number of `..` costs steps × depth².
    fn matches(&self, loc: &[Elem]) -> bool {
        let mut reach: u128 = 1;
        for step in &self.0 {
            let mut next: u128 = 0;
            for (at, elem) in loc.iter().enumerate().take(127) {
                let bit = 1u128 << at;
                // A descendant step may skip any elements before the one it names.
                let reachable = match step {
                    Step::Descendant(_) => reach & ((bit - 1) | bit) != 0,
                    _ => reach & bit != 0,
                };
                if reachable && step_matches(step, elem) {
                    next |= bit << 1;
                }
            }
            reach = next;
            if reach == 0 {
                return false;
            }
        }
        loc.len() < 128 && reach & (1u128 << loc.len()) != 0
    }
}

/// A step's name: it must hold a letter or digit.
fn named(name: &str) -> Result<NamePattern, String> {
    let p = NamePattern::new(name);
    if p.is_empty() {
        return Err(format!("JSON path step {name:?} names no field"));
    }
    Ok(p)
}

fn step_matches(step: &Step, elem: &Elem) -> bool {
    match (step, elem) {
        (Step::Descendant(n), Elem::Key(k)) => n.matches(k),
        (Step::Child(n), Elem::Key(k)) => n.equals(k),
        (Step::AnyMember, Elem::Key(_)) => true,
        (Step::Index(n), Elem::Index(i)) => n == i,
        (Step::AnyIndex, Elem::Index(_)) => true,
        _ => false,
    }
}

fn take_name(s: &str) -> (&str, &str) {
    let end = s.find(['.', '[']).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

/// A value the caller asked to redact: which path matched and the value's text (a string's
/// content without quotes and unescaped; other values as written).
pub struct Matched<'a> {
    pub path_index: usize,
    pub text: &'a str,
}

/// What the walker asks its caller.
pub trait Visit {
    /// The replacement JSON text of a value a path matched; `None` removes the member or
    /// element.
    fn matched(&mut self, m: Matched<'_>) -> Option<String>;
    /// The new content of a string (a member name or a value) no path matched, given its
    /// content unescaped; `None` keeps it. `escaped`: the string was written with escapes.
    fn string(&mut self, content: &str, escaped: bool) -> Option<String>;
}

/// A visitor of the matched values only, by a closure.
pub fn matched_only(f: impl FnMut(Matched<'_>) -> Option<String>) -> impl Visit {
    struct MatchedOnly<F>(F);
    impl<F: FnMut(Matched<'_>) -> Option<String>> Visit for MatchedOnly<F> {
        fn matched(&mut self, m: Matched<'_>) -> Option<String> {
            (self.0)(m)
        }

        fn string(&mut self, _: &str, _: bool) -> Option<String> {
            None
        }
    }
    MatchedOnly(f)
}

/// What became of a body.
#[derive(Debug, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// The input was not valid JSON up to its end; `text` stops where it went wrong.
    pub malformed: bool,
}

/// Nesting deeper than this is treated as malformed.
const MAX_DEPTH: usize = 64;

struct Frame {
    is_object: bool,
    count: usize,
    /// `loc` holds this container's current member or element.
    has_member: bool,
    /// Start of a removed member whose comma is still to be removed: the one after it, or at
    /// the close the one before it (with the space up to the member).
    removed_member: Option<usize>,
    last_comma: Option<usize>,
}

/// A replacement of `start..end` (`None`: remove it).
type Edit = (usize, usize, Option<String>);

/// The input is not JSON from this byte on.
struct Malformed(usize);

/// One walk over a body.
struct Walker<'b, 'p, V> {
    body: &'b str,
    b: &'b [u8],
    paths: &'p [JsonPath],
    visit: V,
    edits: Vec<Edit>,
    stack: Vec<Frame>,
    loc: Vec<Elem>,
    pos: usize,
    member_start: usize,
}

/// Walks `body`; for every value whose location matches one of `paths`, `visit.matched` gives
/// its replacement, and every other string is offered to `visit.string`. Returns `None` when
/// nothing changed and the body is well formed (up to its end, which may be a truncation).
pub fn redact(body: &str, paths: &[JsonPath], visit: impl Visit) -> Option<Redacted> {
    let mut w = Walker {
        body,
        b: body.as_bytes(),
        paths,
        visit,
        edits: Vec::new(),
        stack: Vec::new(),
        loc: Vec::new(),
        pos: 0,
        member_start: 0,
    };
    let malformed_at = w.walk().err().map(|Malformed(at)| at);
    if w.edits.is_empty() && malformed_at.is_none() {
        return None;
    }
    Some(Redacted {
        text: apply(body, w.edits, malformed_at.unwrap_or(body.len())),
        malformed: malformed_at.is_some(),
    })
}

/// `body` up to `cut` with the edits applied.
fn apply(body: &str, mut edits: Vec<Edit>, cut: usize) -> String {
    // Of edits that start together the widest goes first and the ones inside it are skipped: a
    // removed member wins over the rewrite of its key.
    edits.sort_by_key(|e| (e.0, std::cmp::Reverse(e.1)));
    let mut text = String::with_capacity(cut);
    let mut at = 0;
    for (start, end, replacement) in edits {
        if start < at || start >= cut {
            continue;
        }
        text.push_str(body.get(at..start).unwrap_or(""));
        if let Some(r) = replacement {
            text.push_str(&r);
        }
        at = end.min(cut);
    }
    text.push_str(body.get(at..cut).unwrap_or(""));
    text
}

impl<V: Visit> Walker<'_, '_, V> {
    fn bad<T>(&self) -> Result<T, Malformed> {
        Err(Malformed(self.pos))
    }

    /// Expecting a value (true) or, inside a container, a key / comma / close (false).
    fn walk(&mut self) -> Result<(), Malformed> {
        let mut want_value = true;
        loop {
            self.pos = skip_ws(self.b, self.pos);
            let Some(&c) = self.b.get(self.pos) else {
                return Ok(());
            };
            want_value = if want_value {
                self.value(c)?
            } else {
                self.after_value(c)?
            };
        }
    }

    /// At a value: a matched one is replaced, a container opened, a scalar passed. Returns
    /// whether a value comes next.
    fn value(&mut self, c: u8) -> Result<bool, Malformed> {
        if let Some(i) = self.paths.iter().position(|p| p.matches(&self.loc)) {
            self.replace_matched(i);
            return Ok(false);
        }
        match c {
            b'{' | b'[' => self.open(c),
            b'"' => {
                let end = skip_value(self.b, self.pos);
                self.offer_string(self.pos, end);
                self.pos = end;
                Ok(false)
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let end = skip_value(self.b, self.pos);
                let token = self.body.get(self.pos..end).unwrap_or("");
                if end == self.pos || !valid_scalar(token, end == self.b.len()) {
                    return self.bad();
                }
                self.pos = end;
                Ok(false)
            }
            _ => self.bad(),
        }
    }

    fn replace_matched(&mut self, path_index: usize) {
        let start = self.pos;
        let end = skip_value(self.b, start);
        let text = string_content(self.body.get(start..end).unwrap_or(""));
        let replacement = self.visit.matched(Matched {
            path_index,
            text: &text,
        });
        let from = match replacement {
            Some(_) => start,
            None => {
                if let Some(f) = self.stack.last_mut() {
                    f.removed_member = Some(self.member_start);
                }
                self.member_start
            }
        };
        self.edits.push((from, end, replacement));
        self.pos = end;
    }

    /// Offers the string at `start..end` to the visitor; a new content replaces it.
    fn offer_string(&mut self, start: usize, end: usize) {
        let raw = self.body.get(start..end).unwrap_or("");
        let escaped = raw.contains('\\');
        let content: Cow<'_, str> = if escaped {
            Cow::Owned(string_content(raw))
        } else {
            let inner = raw.strip_prefix('"').unwrap_or(raw);
            Cow::Borrowed(inner.strip_suffix('"').unwrap_or(inner))
        };
        if let Some(new) = self.visit.string(&content, escaped) {
            let text = serde_json::to_string(&new).unwrap_or_default();
            self.edits.push((start, end, Some(text)));
        }
    }

    fn open(&mut self, c: u8) -> Result<bool, Malformed> {
        if self.stack.len() >= MAX_DEPTH {
            return self.bad();
        }
        let mut frame = Frame {
            is_object: c == b'{',
            count: 0,
            has_member: false,
            removed_member: None,
            last_comma: None,
        };
        self.pos += 1;
        let mut want_value = false;
        // Arrays: the next value is element 0 unless the array closes.
        if c == b'[' {
            let next = skip_ws(self.b, self.pos);
            if self.b.get(next) != Some(&b']') && next < self.b.len() {
                self.loc.push(Elem::Index(0));
                frame.has_member = true;
                self.member_start = next;
                want_value = true;
            }
        }
        self.stack.push(frame);
        Ok(want_value)
    }

    /// After a value, or just inside an object. Returns whether a value comes next.
    fn after_value(&mut self, c: u8) -> Result<bool, Malformed> {
        let Some(frame) = self.stack.last() else {
            // Trailing bytes after the top-level value.
            return self.bad();
        };
        let (is_object, removed_member, last_comma) =
            (frame.is_object, frame.removed_member, frame.last_comma);
        if !frame.has_member {
            // Just inside an object (arrays start with element 0 or close at once).
            return match c {
                b'"' if is_object => {
                    self.read_key()?;
                    if let Some(f) = self.stack.last_mut() {
                        f.has_member = true;
                    }
                    Ok(true)
                }
                b'}' | b']' if (c == b'}') == is_object => {
                    self.stack.pop();
                    self.pos += 1;
                    Ok(false)
                }
                _ => self.bad(),
            };
        }
        match c {
            b'}' | b']' if (c == b'}') == is_object => {
                if let (Some(member), Some(comma)) = (removed_member, last_comma) {
                    self.edits.push((comma, member, Some(String::new())));
                }
                self.loc.pop();
                self.stack.pop();
                self.pos += 1;
                Ok(false)
            }
            b',' => self.next_member(),
            _ => self.bad(),
        }
    }

    /// At a comma between members or elements. Returns whether a value comes next.
    fn next_member(&mut self) -> Result<bool, Malformed> {
        let pos = self.pos;
        let Some(frame) = self.stack.last_mut() else {
            return self.bad();
        };
        let is_object = frame.is_object;
        let removed = frame.removed_member.take().is_some();
        if !removed {
            frame.last_comma = Some(pos);
        }
        frame.count += 1;
        let count = frame.count;
        if removed {
            let next = skip_ws(self.b, pos + 1);
            self.edits.push((pos, next, Some(String::new())));
        }
        self.loc.pop();
        self.pos = skip_ws(self.b, pos + 1);
        if is_object {
            self.read_key()?;
        } else {
            self.member_start = self.pos;
            self.loc.push(Elem::Index(count));
        }
        Ok(true)
    }

    /// Reads `"key"` and `:`; pushes the key onto `loc`. A body truncated inside a key ends
    /// here harmlessly.
    fn read_key(&mut self) -> Result<(), Malformed> {
        if self.pos >= self.b.len() {
            return Ok(());
        }
        if self.b.get(self.pos) != Some(&b'"') {
            return self.bad();
        }
        self.member_start = self.pos;
        let end = skip_value(self.b, self.pos);
        let key = string_content(self.body.get(self.pos..end).unwrap_or(""));
        let key_start = self.pos;
        self.pos = skip_ws(self.b, end);
        if self.b.get(self.pos) != Some(&b':') {
            if self.pos >= self.b.len() {
                return Ok(());
            }
            return self.bad();
        }
        self.offer_string(key_start, end);
        self.pos += 1;
        self.loc.push(Elem::Key(FieldName::new(&key)));
        Ok(())
    }
}

/// `true`, `false`, `null`, a number, or a string; a truncated last token passes.
fn valid_scalar(token: &str, at_end: bool) -> bool {
    if token.starts_with('"') {
        return true;
    }
    if at_end
        && ["true", "false", "null"]
            .iter()
            .any(|l| l.starts_with(token))
    {
        return true;
    }
    let number = |t: &str| t.parse::<f64>().is_ok() && !t.starts_with('+');
    // A number cut short (`-`, `1.`, `1e`, `-1E+`) is one once a digit follows.
    matches!(token, "true" | "false" | "null")
        || number(token)
        || (at_end && number(&format!("{token}0")))
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while matches!(b.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// The end of the value at `pos` (or the end of input when it is truncated).
fn skip_value(b: &[u8], pos: usize) -> usize {
    match b.get(pos) {
        Some(b'"') => {
            let mut i = pos + 1;
            while let Some(&c) = b.get(i) {
                match c {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            b.len()
        }
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = pos;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = skip_value(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut i = pos;
            while matches!(b.get(i), Some(c) if c.is_ascii_alphanumeric() || b"+-.".contains(c)) {
                i += 1;
            }
            i
        }
        None => pos,
    }
}

/// A JSON string's content, unescaped; other text as it is.
/// A string cut short (at the capture limit) is unescaped up to the cut, so what it holds is
/// read as well as a whole one; an escape cut in half is dropped.
fn string_content(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => match hex4(&mut chars) {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        let rest = chars.as_str();
                        let lo = rest
                            .strip_prefix("\\u")
                            .and_then(|r| u32::from_str_radix(r.get(..4)?, 16).ok())
                            .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                        match lo {
                            Some(lo) => {
                                chars = rest.get(6..).unwrap_or("").chars();
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                            }
                            None => out.push('\u{fffd}'),
                        }
                    }
                    Some(code) => out.push(char::from_u32(code).unwrap_or('\u{fffd}')),
                    None => break,
                },
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Four hex digits of a `\u` escape; `None` when the text ends (or breaks) first.
fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let rest = chars.as_str();
    let code = u32::from_str_radix(rest.get(..4)?, 16).ok()?;
    *chars = rest.get(4..)?.chars();
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(body: &str, paths: &[&str], replacement: Option<&str>) -> Option<Redacted> {
        let paths: Vec<JsonPath> = paths.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        redact(
            body,
            &paths,
            matched_only(|_| replacement.map(|r| format!("\"{r}\""))),
        )
    }

    fn text(body: &str, paths: &[&str], replacement: Option<&str>) -> String {
        run(body, paths, replacement)
            .map(|r| r.text)
            .unwrap_or_else(|| body.to_string())
    }

    #[test]
    fn strings_unescape_whole_or_cut() {
        assert_eq!(string_content(r#""a\"b\u0040c\/d""#), "a\"b@c/d");
        assert_eq!(string_content(r#""\ud83d\ude00x""#), "\u{1F600}x");
        assert_eq!(string_content(r#""cut \u00"#), "cut ");
        assert_eq!(string_content(r#""cut \"#), "cut ");
        assert_eq!(
            string_content(r#""\{\"password\":\"s"#),
            "{\"password\":\"s"
        );
        assert_eq!(string_content("42"), "42");
    }

    #[test]
    fn cuts_after_a_comma_or_inside_a_number_are_not_malformed() {
        for body in [
            "{\"a\":1,",
            "{\"a\":1, ",
            "[1,",
            "[1e",
            "{\"a\":-1E+",
            "[1.",
            "{\"a\":-",
        ] {
            let out = run(body, &["$.zzz"], Some("X"));
            assert!(
                out.as_ref().is_none_or(|o| !o.malformed),
                "{body}: {:?}",
                out
            );
        }
    }

    #[test]
    fn a_removed_member_goes_whole_even_when_its_key_was_rewritten() {
        struct RewriteKeys;
        impl Visit for RewriteKeys {
            fn matched(&mut self, _: Matched<'_>) -> Option<String> {
                None
            }
            fn string(&mut self, content: &str, _: bool) -> Option<String> {
                Some(content.replace("alice", "[REDACTED]"))
            }
        }
        let paths = [JsonPath::parse("$..password").unwrap()];
        let out = redact(r#"{"alice password":"hunter2","b":1}"#, &paths, RewriteKeys).unwrap();
        assert_eq!(out.text, r#"{"b":1}"#);
    }

    #[test]
    fn paths_parse() {
        for ok in [
            "$.a",
            "$.a.b",
            "$..ssn",
            "$.items[*].token",
            "$.items[0]",
            "$.*",
            "$['odd key']",
        ] {
            JsonPath::parse(ok).unwrap();
        }
        for bad in ["a.b", "$", "$.", "$..", "$[x]", "$[1", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_by_path() {
        let body = r#"{"user":"al","password":"hunter2","card":{"number":"4111","exp":"12/30"}}"#;
        assert_eq!(
            text(body, &["$.password", "$.card.number"], Some("X")),
            r#"{"user":"al","password":"X","card":{"number":"X","exp":"12/30"}}"#
        );
        assert_eq!(
            text(body, &["$.card"], Some("X")),
            r#"{"user":"al","password":"hunter2","card":"X"}"#
        );
        assert!(run(body, &["$.nope"], Some("X")).is_none());
    }

    #[test]
    fn descendants_and_arrays() {
        let body = r#"{"a":{"ssn":"1"},"b":[{"ssn":"2"},{"x":{"ssn":"3"}}],"items":[{"token":"t0"},{"token":"t1"}],"ssn":"4"}"#;
        let out = text(body, &["$..ssn", "$.items[*].token"], Some("X"));
        assert!(
            !out.contains("\"1\"")
                && !out.contains("\"2\"")
                && !out.contains("\"3\"")
                && !out.contains("\"4\""),
            "{out}"
        );
        assert!(!out.contains("t0") && !out.contains("t1"), "{out}");
        assert_eq!(text(r#"[1,2,3]"#, &["$[1]"], Some("X")), r#"[1,"X",3]"#);
        let out = text(
            r#"{"items":[{"token":"a"},{"token":"b"}]}"#,
            &["$.items[1].token"],
            Some("X"),
        );
        assert_eq!(out, r#"{"items":[{"token":"a"},{"token":"X"}]}"#);
    }

    #[test]
    fn removes_members_and_their_commas() {
        assert_eq!(
            text(r#"{"a":1,"p":"s","b":2}"#, &["$.p"], None),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(text(r#"{"a":1, "p":"s"}"#, &["$.p"], None), r#"{"a":1}"#);
        assert_eq!(text(r#"{"p":"s", "a":1}"#, &["$.p"], None), r#"{"a":1}"#);
        assert_eq!(text(r#"{"p":"s"}"#, &["$.p"], None), r#"{}"#);
        assert_eq!(text(r#"[1,2,3]"#, &["$[*]"], None), r#"[]"#);
        for body in [
            r#"{"a":1,"p":"s","b":2}"#,
            r#"{"p":{"x":[1,2]},"a":[{"p":1},{"q":2,"p":3}]}"#,
        ] {
            let out = text(body, &["$..p"], None);
            serde_json::from_str::<serde_json::Value>(&out)
                .unwrap_or_else(|e| panic!("{out}: {e}"));
            assert!(!out.contains("\"p\""), "{out}");
        }
    }

    #[test]
    fn escapes_and_whitespace() {
        let body = "{ \"pass\\u0077ord\" : \"a\\\"b\" , \"k\" : [ 1 , 2 ] }";
        let mut seen = String::new();
        let out = redact(
            body,
            &[JsonPath::parse("$.password").unwrap()],
            matched_only(|m| {
                seen = m.text.to_string();
                Some("\"X\"".into())
            }),
        )
        .unwrap();
        assert_eq!(seen, "a\"b");
        assert_eq!(
            out.text,
            "{ \"pass\\u0077ord\" : \"X\" , \"k\" : [ 1 , 2 ] }"
        );
    }

    #[test]
    fn truncated_bodies_are_still_redacted() {
        let body = r#"{"user":"al","password":"hunter2-and-more"#;
        let out = run(body, &["$.password"], Some("X")).unwrap();
        assert_eq!(out.text, r#"{"user":"al","password":"X""#);
        assert!(!out.malformed);
        let cut_in_key = r#"{"user":"al","passw"#;
        assert!(run(cut_in_key, &["$.password"], Some("X")).is_none());
    }

    #[test]
    fn malformed_bodies_are_cut() {
        let out = run(
            r#"{"a":1} trailing "password":"s""#,
            &["$.password"],
            Some("X"),
        )
        .unwrap();
        assert!(out.malformed);
        assert_eq!(out.text, r#"{"a":1} "#);
        let out = run("not json password=s", &["$.password"], Some("X")).unwrap();
        assert!(out.malformed && out.text.is_empty());
        let deep = "[".repeat(100);
        assert!(run(&deep, &["$.a"], Some("X")).unwrap().malformed);
    }

    #[test]
    fn never_panics_on_any_prefix_or_garbage() {
        let body = r#"{"a":[{"ssn":"1","b":{"c":[1,2,{"ssn":[true,null,-1.5e3]}]}}],"ssn":"x\"y"}"#;
        let paths: Vec<JsonPath> = ["$..ssn", "$.a[*].b", "$.a[0]"]
            .iter()
            .map(|p| JsonPath::parse(p).unwrap())
            .collect();
        for cut in 0..=body.len() {
            for decide in [Some("\"X\""), None] {
                let _ = redact(
                    &body[..cut],
                    &paths,
                    matched_only(|_| decide.map(String::from)),
                );
            }
        }
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..3000 {
            let bytes: Vec<u8> = (0..40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    {
                        let alphabet = b"{}[]\",:abc 01-\\sn";
                        alphabet[(x % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = redact(&s, &paths, matched_only(|_| None));
        }
    }
}
