//! JSON bodies: field redaction by path (`$.password`, `$.card.number`, `$..ssn`,
//! `$.items[*].token`, `$.items[0]`, `$.*`).
//!
//! The body is walked as a token stream, not parsed into a tree: a matched value is skipped
//! whole and replaced, so redaction costs one pass and works on truncated bodies (a body cut at
//! the capture limit is still redacted up to the cut). Input that is not JSON is cut at the
//! first byte that cannot be JSON, so nothing after a point of confusion can leak.

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `.name` or `['name']`
    Child(String),
    /// `..name`: `name` at any depth below.
    Descendant(String),
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
    Key(String),
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
                steps.push(Step::Descendant(name.to_string()));
                rest = r;
            } else if let Some(r) = rest.strip_prefix(".*") {
                steps.push(Step::AnyMember);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('.') {
                let (name, r) = take_name(r);
                if name.is_empty() {
                    return bad("'.' must be followed by a name");
                }
                steps.push(Step::Child(name.to_string()));
                rest = r;
            } else if let Some(r) = rest.strip_prefix('[') {
                let Some((inner, r)) = r.split_once(']') else {
                    return bad("unclosed '['");
                };
                let quoted = |q: char| inner.strip_prefix(q).and_then(|i| i.strip_suffix(q));
                let step = if inner == "*" {
                    Step::AnyIndex
                } else if let Some(name) = quoted('\'').or_else(|| quoted('"')) {
                    Step::Child(name.to_string())
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

    fn matches(&self, loc: &[Elem]) -> bool {
        matches_from(&self.0, loc)
    }
}

fn take_name(s: &str) -> (&str, &str) {
    let end = s.find(['.', '[']).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

fn matches_from(steps: &[Step], loc: &[Elem]) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return loc.is_empty();
    };
    match step {
        Step::Descendant(name) => (0..loc.len()).any(|skip| {
            matches!(loc.get(skip), Some(Elem::Key(k)) if k == name)
                && matches_from(rest, loc.get(skip + 1..).unwrap_or(&[]))
        }),
        _ => {
            let Some((first, loc_rest)) = loc.split_first() else {
                return false;
            };
            let ok = match (step, first) {
                (Step::Child(n), Elem::Key(k)) => n == k,
                (Step::AnyMember, Elem::Key(_)) => true,
                (Step::Index(n), Elem::Index(i)) => n == i,
                (Step::AnyIndex, Elem::Index(_)) => true,
                _ => false,
            };
            ok && matches_from(rest, loc_rest)
        }
    }
}

/// A value the caller asked to redact: which path matched and the value's text (a string's
/// content without quotes and unescaped; other values as written).
pub struct Matched<'a> {
    pub path_index: usize,
    pub text: &'a str,
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

/// Walks `body`; for every value whose location matches one of `paths`, `decide` gives its
/// replacement JSON text (`None`: remove the member or element). Returns `None` when nothing
/// changed and the body is well formed (up to its end, which may be a truncation).
pub fn redact(
    body: &str,
    paths: &[JsonPath],
    mut decide: impl FnMut(Matched<'_>) -> Option<String>,
) -> Option<Redacted> {
    let b = body.as_bytes();
    let mut edits: Vec<(usize, usize, Option<String>)> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut loc: Vec<Elem> = Vec::new();
    let mut pos = 0;
    let mut malformed_at: Option<usize> = None;
    // Expecting a value (true) or, inside a container, a key / comma / close (false).
    let mut want_value = true;
    let mut member_start = 0;

    'walk: loop {
        pos = skip_ws(b, pos);
        let Some(&c) = b.get(pos) else { break };
        if want_value {
            let value_start = pos;
            if let Some(i) = paths.iter().position(|p| p.matches(&loc)) {
                let end = skip_value(b, pos);
                let raw = body.get(value_start..end).unwrap_or("");
                let text = string_content(raw);
                let replacement = decide(Matched {
                    path_index: i,
                    text: &text,
                });
                let start = if replacement.is_none() {
                    member_start
                } else {
                    value_start
                };
                if replacement.is_none() {
                    if let Some(f) = stack.last_mut() {
                        f.removed_member = Some(member_start);
                    }
                }
                edits.push((start, end, replacement));
                pos = end;
                want_value = false;
                continue;
            }
            match c {
                b'{' | b'[' => {
                    if stack.len() >= MAX_DEPTH {
                        malformed_at = Some(pos);
                        break;
                    }
                    let mut frame = Frame {
                        is_object: c == b'{',
                        count: 0,
                        has_member: false,
                        removed_member: None,
                        last_comma: None,
                    };
                    pos += 1;
                    want_value = false;
                    // Arrays: the next value is element 0 unless the array closes.
                    if c == b'[' {
                        let next = skip_ws(b, pos);
                        if b.get(next) != Some(&b']') && next < b.len() {
                            loc.push(Elem::Index(0));
                            frame.has_member = true;
                            member_start = next;
                            want_value = true;
                        }
                    }
                    stack.push(frame);
                }
                b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    let end = skip_value(b, pos);
                    if end == pos || !valid_scalar(body.get(pos..end).unwrap_or(""), end == b.len())
                    {
                        malformed_at = Some(pos);
                        break;
                    }
                    pos = end;
                    want_value = false;
                }
                _ => {
                    malformed_at = Some(pos);
                    break;
                }
            }
            continue;
        }
        // After a value, or just inside an object.
        let Some(frame) = stack.last_mut() else {
            // Trailing bytes after the top-level value.
            malformed_at = Some(pos);
            break;
        };
        if !frame.has_member {
            // Just inside an object (arrays start with element 0 or close at once).
            match c {
                b'"' if frame.is_object => {
                    if !read_key(body, &mut pos, &mut loc, &mut member_start) {
                        malformed_at = Some(pos);
                        break;
                    }
                    frame.has_member = true;
                    want_value = true;
                }
                b'}' | b']' if (c == b'}') == frame.is_object => {
                    stack.pop();
                    pos += 1;
                }
                _ => {
                    malformed_at = Some(pos);
                    break;
                }
            }
            continue;
        }
        match c {
            b'}' | b']' => {
                if (c == b'}') != frame.is_object {
                    malformed_at = Some(pos);
                    break;
                }
                if let (Some(member), Some(comma)) = (frame.removed_member, frame.last_comma) {
                    edits.push((comma, member, Some(String::new())));
                }
                loc.pop();
                stack.pop();
                pos += 1;
            }
            b',' => {
                if frame.removed_member.take().is_some() {
                    let next = skip_ws(b, pos + 1);
                    edits.push((pos, next, Some(String::new())));
                } else {
                    frame.last_comma = Some(pos);
                }
                frame.count += 1;
                pos += 1;
                loc.pop();
                pos = skip_ws(b, pos);
                if frame.is_object {
                    if !read_key(body, &mut pos, &mut loc, &mut member_start) {
                        malformed_at = Some(pos);
                        break 'walk;
                    }
                } else {
                    member_start = pos;
                    loc.push(Elem::Index(frame.count));
                }
                want_value = true;
            }
            _ => {
                malformed_at = Some(pos);
                break;
            }
        }
    }

    if edits.is_empty() && malformed_at.is_none() {
        return None;
    }
    let cut = malformed_at.unwrap_or(b.len());
    edits.sort_by_key(|e| e.0);
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
    Some(Redacted {
        text,
        malformed: malformed_at.is_some(),
    })
}

/// Reads `"key"` and `:` at `pos`; pushes the key onto `loc`.
fn read_key(body: &str, pos: &mut usize, loc: &mut Vec<Elem>, member_start: &mut usize) -> bool {
    let b = body.as_bytes();
    if b.get(*pos) != Some(&b'"') {
        return false;
    }
    *member_start = *pos;
    let end = skip_value(b, *pos);
    let key = string_content(body.get(*pos..end).unwrap_or(""));
    *pos = skip_ws(b, end);
    if b.get(*pos) != Some(&b':') {
        // A body truncated inside a key ends here harmlessly.
        return *pos >= b.len();
    }
    *pos += 1;
    loc.push(Elem::Key(key));
    true
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
    matches!(token, "true" | "false" | "null")
        || (token.parse::<f64>().is_ok() && !token.starts_with('+'))
        || (at_end && token == "-")
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
fn string_content(raw: &str) -> String {
    if raw.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(raw) {
            return s;
        }
        return raw
            .trim_start_matches('"')
            .trim_end_matches('"')
            .to_string();
    }
    raw.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(body: &str, paths: &[&str], replacement: Option<&str>) -> Option<Redacted> {
        let paths: Vec<JsonPath> = paths.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        redact(body, &paths, |_| replacement.map(|r| format!("\"{r}\"")))
    }

    fn text(body: &str, paths: &[&str], replacement: Option<&str>) -> String {
        run(body, paths, replacement)
            .map(|r| r.text)
            .unwrap_or_else(|| body.to_string())
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
        let out = redact(body, &[JsonPath::parse("$.password").unwrap()], |m| {
            seen = m.text.to_string();
            Some("\"X\"".into())
        })
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
                let _ = redact(&body[..cut], &paths, |_| decide.map(String::from));
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
            let _ = redact(&s, &paths, |_| None);
        }
    }
}
