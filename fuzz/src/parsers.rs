//! The `parsers` target: any bytes through the redaction engine's text parsers one by one
//! (URLs, paths, queries, form and cookie lists, multipart bodies, field names, cuts), each
//! with callbacks that keep, replace or drop everything, and the properties that hold whatever
//! the text is.
//!
//! Input: fields split at `0xFF` bytes (read as UTF-8, lossily): the text, rule names (one a
//! line), a replacement value, and bytes whose length picks a cut limit.

use meshaudit::redact::cut::{cut_to, drop_partial_tail};
use meshaudit::redact::form::{self, ListKind, Verdict};
use meshaudit::redact::multipart;
use meshaudit::redact::names::{FieldName, NamePattern, NameSet, ANYWHERE_FROM};
use meshaudit::redact::url::{self, PASSWORD_MASK};

use crate::SEPARATOR;

/// The fields of a `parsers` input.
#[derive(Debug, Default)]
pub struct ParserInput {
    pub text: String,
    pub names: String,
    pub replacement: String,
    pub limit: usize,
}

impl ParserInput {
    pub fn parse(data: &[u8]) -> ParserInput {
        let mut parts = data.split(|&b| b == SEPARATOR);
        let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let text = next();
        let names = next();
        let replacement = next();
        let limit = next().len();
        ParserInput {
            text,
            names,
            replacement,
            limit,
        }
    }
}

/// The (name, value) pairs a rewrite shows its callback, in order.
type Seen = Vec<(String, String)>;

fn keep_all(seen: &mut Seen) -> impl FnMut(&str, &str) -> Verdict + '_ {
    |n, v| {
        seen.push((n.to_string(), v.to_string()));
        Verdict::Keep
    }
}

/// Checks that `out`, re-read with `read`, shows the same names as `before`, each with the
/// value `value`.
fn assert_replaced(what: &str, input: &str, out: &str, before: &Seen, after: &Seen, value: &str) {
    let names_before: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    let names_after: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names_before, names_after,
        "{what}: replacing every value changed the names\ninput: {input:?}\noutput: {out:?}"
    );
    assert!(
        after.iter().all(|(_, v)| v == value),
        "{what}: a value is not the replacement {value:?}\ninput: {input:?}\noutput: {out:?}\n\
         pairs: {after:?}"
    );
}

/// `parsers` target.
pub fn parsers(data: &[u8]) {
    let input = ParserInput::parse(data);
    let text = input.text.as_str();
    url_parsers(text, &input.replacement);
    lists(text, &input.replacement);
    multipart_bodies(text);
    names(text, &input.names);
    cuts(text, input.limit);
}

fn url_parsers(text: &str, replacement: &str) {
    let _ = url::looks_like_url(text);

    // Keeping every pair changes nothing but a user-information password.
    let mut passwords = 0;
    let mut seen = Seen::new();
    let out = url::rewrite_url(text, &mut keep_all(&mut seen), &mut || passwords += 1);
    assert!(
        passwords <= 1,
        "rewrite_url: {passwords} passwords in {text:?}"
    );
    match &out {
        None => assert_eq!(passwords, 0, "rewrite_url: password masked, None: {text:?}"),
        Some(o) => {
            assert_eq!(
                passwords, 1,
                "rewrite_url: changed with all-Keep: {text:?} -> {o:?}"
            );
            assert!(o.contains(PASSWORD_MASK), "rewrite_url: {text:?} -> {o:?}");
        }
    }
    for (what, f) in [
        (
            "rewrite_path",
            url::rewrite_path as fn(&str, &mut dyn FnMut(&str, &str) -> Verdict) -> _,
        ),
        ("rewrite_query", url::rewrite_query),
    ] {
        let mut seen = Seen::new();
        let out = f(text, &mut keep_all(&mut seen));
        assert!(
            out.is_none(),
            "{what}: changed with all-Keep: {text:?} -> {out:?}"
        );
    }

    // Replacing every value: re-read, the same names, each with the replacement.
    fn replace<'a>(seen: &'a mut Seen, r: &'a str) -> impl FnMut(&str, &str) -> Verdict + 'a {
        move |n, v| {
            seen.push((n.to_string(), v.to_string()));
            Verdict::Replace(r.to_string().into())
        }
    }
    {
        let (mut before, mut after) = (Seen::new(), Seen::new());
        let out = url::rewrite_query(text, &mut replace(&mut before, replacement));
        // A query has at least one pair (perhaps empty), so something changes.
        let out = out.unwrap_or_else(|| panic!("rewrite_query: all-Replace gave None: {text:?}"));
        let _ = url::rewrite_query(&out, &mut keep_all(&mut after));
        assert_replaced("rewrite_query", text, &out, &before, &after, replacement);
    }
    {
        let (mut before, mut after) = (Seen::new(), Seen::new());
        let out = url::rewrite_path(text, &mut replace(&mut before, replacement));
        if let Some(out) = out {
            let _ = url::rewrite_path(&out, &mut keep_all(&mut after));
            assert_replaced("rewrite_path", text, &out, &before, &after, replacement);
        } else {
            assert!(
                before.is_empty(),
                "rewrite_path: pairs seen, None: {text:?}"
            );
        }
    }
    {
        let (mut before, mut after) = (Seen::new(), Seen::new());
        let mut p = 0;
        let out = url::rewrite_url(text, &mut replace(&mut before, replacement), &mut || p += 1);
        if let Some(out) = out {
            let _ = url::rewrite_url(&out, &mut keep_all(&mut after), &mut || ());
            assert_replaced("rewrite_url", text, &out, &before, &after, replacement);
        } else {
            assert!(before.is_empty(), "rewrite_url: pairs seen, None: {text:?}");
        }
    }
    // Dropping everything never panics.
    let mut p = 0;
    let _ = url::rewrite_url(text, &mut |_, _| Verdict::Drop, &mut || p += 1);
    let _ = url::rewrite_path(text, &mut |_, _| Verdict::Drop);
    let _ = url::rewrite_query(text, &mut |_, _| Verdict::Drop);
}

fn lists(text: &str, replacement: &str) {
    for kind in [ListKind::Query, ListKind::Cookie] {
        let mut before = Seen::new();
        let out = form::rewrite(text, kind, keep_all(&mut before));
        assert!(
            out.is_none(),
            "form::rewrite {kind:?}: changed with all-Keep: {text:?}"
        );

        // Every value replaced: the same names, each with the replacement (a cookie value is
        // written as it is, so only replacements without separators read back whole).
        let plain = kind == ListKind::Query
            || !replacement
                .chars()
                .any(|c| c == ';' || c == '%' || c.is_whitespace());
        let r = if plain { replacement } else { "R" };
        let out = form::rewrite(text, kind, |_, _| Verdict::Replace(r.to_string().into()))
            .unwrap_or_else(|| panic!("form::rewrite {kind:?}: all-Replace gave None: {text:?}"));
        let mut after = Seen::new();
        let _ = form::rewrite(&out, kind, keep_all(&mut after));
        assert_replaced(
            &format!("form::rewrite {kind:?}"),
            text,
            &out,
            &before,
            &after,
            r,
        );

        let dropped = form::rewrite(text, kind, |_, _| Verdict::Drop);
        if kind == ListKind::Query {
            assert_eq!(
                dropped.as_deref(),
                Some(""),
                "form::rewrite Query: dropping every pair left text: {text:?}"
            );
        }
    }
    let _ = form::percent_decode(text, true);
    let _ = form::percent_decode(text, false);
    let encoded = percent_encode(text);
    assert_eq!(
        form::percent_decode(&encoded, true),
        text,
        "percent_encode does not round-trip"
    );
}

fn multipart_bodies(body: &str) {
    let _ = multipart::looks_like_multipart(body);
    let parts = multipart::parts(body);
    let range = body.as_ptr() as usize..=body.as_ptr() as usize + body.len();
    let mut last_end = 0;
    let mut content_bytes = 0;
    for p in &parts {
        let start = p.content.as_ptr() as usize;
        assert!(
            range.contains(&start) && range.contains(&(start + p.content.len())),
            "multipart::parts: content outside the body: {body:?}"
        );
        let offset = start - body.as_ptr() as usize;
        assert!(
            offset >= last_end,
            "multipart::parts: contents overlap or go back: {body:?}"
        );
        last_end = offset + p.content.len();
        content_bytes += p.content.len();
    }

    assert!(
        multipart::rewrite(body, |_| None).is_none(),
        "multipart::rewrite: changed keeping every part: {body:?}"
    );

    // Every content emptied: exactly the contents' bytes go, and the parts read back empty.
    let emptied = multipart::rewrite(body, |_| Some(String::new()));
    assert_eq!(emptied.is_some(), !parts.is_empty(), "{body:?}");
    if let Some(out) = &emptied {
        assert_eq!(
            out.len(),
            body.len() - content_bytes,
            "multipart::rewrite: emptying the parts removed other bytes: {body:?} -> {out:?}"
        );
    }
    // Every content replaced by a marker: the same parts, each holding the marker.
    if let Some(out) = multipart::rewrite(body, |_| Some("X".to_string())) {
        let again = multipart::parts(&out);
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let names_again: Vec<&str> = again.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names, names_again,
            "multipart::rewrite: parts changed\nbody: {body:?}\nout: {out:?}"
        );
        assert!(
            again.iter().all(|p| p.content == "X"),
            "multipart::rewrite: a part does not hold the marker\nbody: {body:?}\nout: {out:?}"
        );
    }
}

/// The word model, written again from its documentation (ASCII names): letters and digits,
/// lower-cased; a word starts after a separator, at a lower-to-upper hump, at the last upper
/// letter of a run followed by a lower one, and between letters and digits.
fn reference_words(name: &str) -> (String, Vec<bool>) {
    #[derive(Clone, Copy, PartialEq)]
    enum C {
        L,
        U,
        D,
        O,
    }
    let class = |b: Option<&u8>| match b {
        Some(b'a'..=b'z') => C::L,
        Some(b'A'..=b'Z') => C::U,
        Some(b'0'..=b'9') => C::D,
        _ => C::O,
    };
    let b = name.as_bytes();
    let (mut folded, mut starts) = (String::new(), Vec::new());
    for i in 0..b.len() {
        let now = class(b.get(i));
        if now == C::O {
            continue;
        }
        let prev = if i == 0 { C::O } else { class(b.get(i - 1)) };
        let next = class(b.get(i + 1));
        let start = match (prev, now) {
            (C::O, _) => true,
            (C::L, C::U) => true,
            (C::U, C::U) => next == C::L,
            (C::D, C::L | C::U) | (C::L | C::U, C::D) => true,
            _ => false,
        };
        starts.push(start || folded.len() >= 128);
        folded.push(char::from(b[i].to_ascii_lowercase()));
    }
    (folded, starts)
}

fn reference_matches(rule: &str, field: &str) -> bool {
    let (needle, _) = reference_words(rule);
    let (hay, starts) = reference_words(field);
    if needle.is_empty() {
        return false;
    }
    if needle.len() >= ANYWHERE_FROM {
        return hay.contains(&needle);
    }
    let boundary = |at: usize| at == hay.len() || starts.get(at).copied().unwrap_or(true);
    (0..=hay.len().saturating_sub(needle.len())).any(|at| {
        starts.get(at).copied().unwrap_or(false)
            && hay.get(at..at + needle.len()) == Some(needle.as_str())
            && boundary(at + needle.len())
    })
}

fn names(text: &str, rules: &str) {
    let field = FieldName::new(text);
    let mut reused = FieldName::new("some previous name");
    reused.set(text);
    assert_eq!(field, reused, "FieldName::set differs from FieldName::new");
    let own = NamePattern::new(text);
    assert!(own.equals(&field), "a name does not equal itself: {text:?}");
    assert_eq!(
        own.matches(&field),
        !own.is_empty(),
        "a name does not match itself: {text:?}"
    );
    let rule_names: Vec<&str> = rules.split('\n').collect();
    let set = NameSet::new(&rule_names);
    let mut any = false;
    for rule in &rule_names {
        let p = NamePattern::new(rule);
        let m = p.matches(&field);
        any |= m;
        if m {
            assert!(
                field.folded().contains(FieldName::new(rule).folded()),
                "{rule:?} matches {text:?} without its letters"
            );
        }
        if p.equals(&field) {
            assert_eq!(FieldName::new(rule).folded(), field.folded());
        }
        if rule.is_ascii() && text.is_ascii() {
            assert_eq!(
                m,
                reference_matches(rule, text),
                "the word model: rule {rule:?}, field {text:?}"
            );
        }
        // The field as a rule name and a rule as the field.
        let _ = NamePattern::new(text).matches(&FieldName::new(rule));
    }
    assert_eq!(set.matches(&field), any, "NameSet differs from its names");
}

fn cuts(text: &str, limit: usize) {
    for max in [limit, text.len() / 2, text.len().saturating_sub(1), 0] {
        let mut s = text.to_string();
        let cut = cut_to(&mut s, max);
        assert_eq!(cut, text.len() > max, "cut_to's answer: {text:?} at {max}");
        assert!(s.len() <= max || !cut, "cut_to exceeds its limit");
        assert!(text.starts_with(&s), "cut_to is not a prefix");
        if cut {
            assert!(
                s.len() + 4 > max,
                "cut_to cut more than a character: {text:?} at {max}"
            );
        }
        // The same cut as capture makes it, then what a cut may have left of a secret.
        let before = s.clone();
        drop_partial_tail(&mut s);
        assert!(before.starts_with(&s), "drop_partial_tail is not a prefix");
    }
    let mut s = text.to_string();
    drop_partial_tail(&mut s);
    assert!(text.starts_with(&s), "drop_partial_tail is not a prefix");
    // At most the last token and a grouped tail go.
    let token_start = text
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || "\"'`<>()[]{},;&|".contains(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    assert!(
        s.len() + 48 >= token_start,
        "drop_partial_tail dropped more than a token and a grouped tail: {text:?} -> {s:?}"
    );
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the fuzz target's own
/// encoder: the crate's is test-only).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
