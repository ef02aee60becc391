//! Name/value lists — query strings, form bodies, cookies — and percent-encoding.

use std::borrow::Cow;

/// Percent-decodes `s`; with `plus_as_space`, `+` is a space (query strings and forms).
/// Malformed escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Cow<'_, str> {
    if !maybe_encoded(s, plus_as_space) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Whether `s` holds a percent-escape, or with `plus_as_space` a `+` (a space in query strings
/// and forms): whether decoding may change it. Byte searches, no searcher set up: most texts
/// hold neither.
pub fn maybe_encoded(s: &str, plus_as_space: bool) -> bool {
    let b = s.as_bytes();
    b.contains(&b'%') || (plus_as_space && b.contains(&b'+'))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode_into(s, &mut out);
    out
}

/// [`percent_encode`], appending to `out`.
fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let hex = |n: u8| char::from(HEX.get(usize::from(n & 15)).copied().unwrap_or(b'0'));
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*[]".contains(&b) {
            out.push(char::from(b));
        } else {
            out.extend(['%', hex(b >> 4), hex(b)]);
        }
    }
}

/// How a list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `a=1&b=2`, percent-encoded with `+` for spaces.
    Query,
    /// `a=1; b=2` (a `cookie` header).
    Cookie,
}

impl ListKind {
    fn separator(self) -> u8 {
        match self {
            ListKind::Query => b'&',
            ListKind::Cookie => b';',
        }
    }
}

/// The pieces of `s` between the ASCII byte `sep`, as `str::split` gives them, with a plain
/// byte loop: lists and their pairs are short, a searcher costs more than it saves.
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// What to do with one pair: keep it, replace its value, or drop it.
pub enum Verdict {
    Keep,
    Replace(Cow<'static, str>),
    Drop,
}

/// Rewrites a list, asking `decide(name, value)` (both decoded) about each pair.
/// Returns `None` when nothing changed.
pub fn rewrite(
    input: &str,
    kind: ListKind,
    mut decide: impl FnMut(&str, &str) -> Verdict,
) -> Option<String> {
    let plus = kind == ListKind::Query;
    let trim = |part| trim_pair(kind, part);
    // Written only from the first change on: most lists are kept as they are.
    let mut out: Option<String> = None;
    for (index, part) in split_ascii(input, kind.separator()).enumerate() {
        let trimmed = trim(part);
        let mut halves = split_ascii(trimmed, b'=');
        let raw_name = halves.next().unwrap_or(trimmed);
        let raw_value = trimmed.get(raw_name.len() + 1..).unwrap_or("");
        let name = percent_decode(raw_name, plus);
        let value = percent_decode(raw_value, plus);
        let verdict = decide(&name, &value);
        let out = match (&mut out, &verdict) {
            (Some(out), _) => out,
            (None, Verdict::Keep) => continue,
            (None, _) => {
                // The pairs before this one were all kept.
                let mut kept = String::with_capacity(input.len());
                for before in split_ascii(input, kind.separator()).take(index) {
                    push_pair(&mut kept, kind, trim(before));
                }
                out.insert(kept)
            }
        };
        match verdict {
            Verdict::Keep => push_pair(out, kind, trimmed),
            Verdict::Replace(v) => {
                push_pair(out, kind, raw_name);
                out.push('=');
                match kind {
                    ListKind::Query => percent_encode_into(&v, out),
                    ListKind::Cookie => out.push_str(&v),
                }
            }
            Verdict::Drop => {}
        }
    }
    out
}

/// A pair as written back: cookies lose the spaces around them.
fn trim_pair(kind: ListKind, part: &str) -> &str {
    match kind {
        ListKind::Cookie => part.trim(),
        ListKind::Query => part,
    }
}

/// Appends `piece` to the list being written, after a separator unless it is the first.
fn push_pair(out: &mut String, kind: ListKind, piece: &str) {
    if !out.is_empty() {
        out.push(char::from(kind.separator()));
        if kind == ListKind::Cookie {
            out.push(' ');
        }
    }
    out.push_str(piece);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rewrite_keeps_the_pairs_before_the_first_change() {
        let mask_b = |n: &str, _: &str| match n {
            "b" => Verdict::Replace("x y".into()),
            "d" => Verdict::Drop,
            _ => Verdict::Keep,
        };
        assert_eq!(rewrite("a=1&c=3", ListKind::Query, mask_b), None);
        assert_eq!(
            rewrite("a=1&&b=2&c=3", ListKind::Query, mask_b).as_deref(),
            Some("a=1&&b=x%20y&c=3")
        );
        assert_eq!(
            rewrite("d=4&a=1", ListKind::Query, mask_b).as_deref(),
            Some("a=1")
        );
        assert_eq!(
            rewrite("a=1&d=4", ListKind::Query, mask_b).as_deref(),
            Some("a=1")
        );
        assert_eq!(
            rewrite("a=1;c=3 ;b=2", ListKind::Cookie, mask_b).as_deref(),
            Some("a=1; c=3; b=x y")
        );
        assert_eq!(rewrite(" a=1;  c=3", ListKind::Cookie, mask_b), None);
    }

    #[test]
    fn split_ascii_splits_like_str_split() {
        for s in ["", "a", "a=1&b=2", "&&", "a&", "&a", "é=ü&ß", "x=1;y", "=="] {
            for sep in [b'&', b';', b'='] {
                let want: Vec<&str> = s.split(char::from(sep)).collect();
                assert_eq!(
                    split_ascii(s, sep).collect::<Vec<_>>(),
                    want,
                    "{s:?} by {sep}"
                );
            }
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%C3%A9", true), "é");
        assert_eq!(percent_decode("%FF", true), "\u{fffd}");
        assert!(matches!(percent_decode("plain", true), Cow::Borrowed(_)));
    }

    #[test]
    fn encoding_round_trips() {
        let s = "a b&c=d/é[REDACTED]";
        assert_eq!(percent_decode(&percent_encode(s), true), s);
        assert_eq!(percent_encode("[REDACTED]"), "[REDACTED]");
    }

    #[test]
    fn query_rewrite() {
        let out = rewrite(
            "a=1&api%5Fkey=s%65cret&b&c=",
            ListKind::Query,
            |n, v| match n {
                "api_key" => {
                    assert_eq!(v, "secret");
                    Verdict::Replace("[REDACTED]".into())
                }
                "c" => Verdict::Drop,
                _ => Verdict::Keep,
            },
        );
        assert_eq!(out.as_deref(), Some("a=1&api%5Fkey=[REDACTED]&b"));
        assert_eq!(
            rewrite("a=1&b=2", ListKind::Query, |_, _| Verdict::Keep),
            None
        );
    }

    #[test]
    fn cookie_rewrite() {
        let out = rewrite("session=abc; lang=en", ListKind::Cookie, |n, _| {
            if n == "session" {
                Verdict::Replace("[REDACTED]".into())
            } else {
                Verdict::Keep
            }
        });
        assert_eq!(out.as_deref(), Some("session=[REDACTED]; lang=en"));
    }
}
