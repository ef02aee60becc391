//! Name/value lists — query strings, form bodies, cookies — and percent-encoding.

use std::borrow::Cow;

/// Percent-decodes `s`; with `plus_as_space`, `+` is a space (query strings and forms).
/// Malformed escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Cow<'_, str> {
    if !maybe_encoded(s, plus_as_space) {
        return Cow::Borrowed(s);
    }
    let spaced: Cow<'_, str> = if plus_as_space && s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Whether `s` holds a percent-escape, or with `plus_as_space` a `+` (a space in query strings
/// and forms): whether decoding may change it. Byte searches, no searcher set up: most texts
/// hold neither.
pub fn maybe_encoded(s: &str, plus_as_space: bool) -> bool {
    let b = s.as_bytes();
    b.contains(&b'%') || (plus_as_space && b.contains(&b'+'))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
#[cfg(test)]
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
    /// `a=1&b=2` or `a=1;b=2` (query strings, forms, `;` parameters, fragments),
    /// percent-encoded with `+` for spaces.
    Query,
    /// `a=1; b=2` (a `cookie` header).
    Cookie,
}

impl ListKind {
    /// Where the next separator is in `b`.
    fn separator_in(self, b: &[u8]) -> Option<usize> {
        match self {
            ListKind::Query => find2(b, b'&', b';'),
            ListKind::Cookie => find2(b, b';', b';'),
        }
    }
}

/// The first byte of `b` that is `x` or `y`, eight bytes at a time: pairs are read on every
/// request (the cookie header, the query), a byte at a time cost most of their reading.
fn find2(b: &[u8], x: u8, y: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The zero bytes of a word, as their high bits. Only bytes above a zero byte can be
    // marked wrongly, so the lowest mark is always the first zero byte.
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let (xs, ys) = (ONES * u64::from(x), ONES * u64::from(y));
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        let marks = zeros(w ^ xs) | zeros(w ^ ys);
        if marks != 0 {
            return Some(at + marks.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = words.remainder();
    rest.iter().position(|&c| c == x || c == y).map(|i| at + i)
}

/// What to do with one pair: keep it, replace its value, or drop it.
pub enum Verdict {
    Keep,
    Replace(Cow<'static, str>),
    Drop,
}

/// One pair of a list: where it is and what it says.
struct Pair<'a> {
    /// The whole piece between separators.
    start: usize,
    end: usize,
    /// Where its value starts (after `=`), or its end when it has none.
    value_at: usize,
    has_value: bool,
    name: &'a str,
    value: &'a str,
}

/// The pairs of `input`, as written (cookies: spaces around a pair are not part of it).
fn pairs(input: &str, kind: ListKind) -> impl Iterator<Item = Pair<'_>> {
    let bytes = input.as_bytes();
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let s = start?;
        let rest = bytes.get(s..).unwrap_or(&[]);
        let end = kind.separator_in(rest).map_or(bytes.len(), |i| s + i);
        start = (end < bytes.len()).then_some(end + 1);
        let piece = input.get(s..end).unwrap_or("");
        let lead = match kind {
            ListKind::Cookie => piece.len() - piece.trim_ascii_start().len(),
            ListKind::Query => 0,
        };
        let pair = piece.get(lead..).unwrap_or("");
        let pair = match kind {
            ListKind::Cookie => pair.trim_ascii_end(),
            ListKind::Query => pair,
        };
        let (name, value, value_at) = match find2(pair.as_bytes(), b'=', b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or(""),
                pair.get(eq + 1..).unwrap_or(""),
                s + lead + eq + 1,
            ),
            None => (pair, "", s + lead + pair.len()),
        };
        Some(Pair {
            start: s,
            end: s + lead + pair.len(),
            value_at,
            has_value: name.len() < pair.len(),
            name,
            value,
        })
    })
}

/// Rewrites a list, asking `decide(name, value)` (both decoded) about each pair. Separators and
/// untouched pairs stay as written; a dropped pair goes with one separator. Returns `None`
/// when nothing changed.
pub fn rewrite(
    input: &str,
    kind: ListKind,
    mut decide: impl FnMut(&str, &str) -> Verdict,
) -> Option<String> {
    let plus = kind == ListKind::Query;
    // Most lists hold no escape at all: then no pair needs decoding.
    let encoded = maybe_encoded(input, plus);
    let decode = |s| {
        if encoded {
            percent_decode(s, plus)
        } else {
            Cow::Borrowed(s)
        }
    };
    // Written only from the first change on: most lists are kept as they are. Input before
    // `copied` is in `out` (or dropped).
    let mut out: Option<String> = None;
    let mut copied = 0;
    for pair in pairs(input, kind) {
        let verdict = decide(&decode(pair.name), &decode(pair.value));
        match verdict {
            Verdict::Keep => {}
            Verdict::Replace(v) => {
                let o = out.get_or_insert_with(|| String::with_capacity(input.len()));
                o.push_str(input.get(copied..pair.value_at).unwrap_or(""));
                if !pair.has_value {
                    o.push('=');
                }
                match kind {
                    ListKind::Query => percent_encode_into(&v, o),
                    ListKind::Cookie => o.push_str(&v),
                }
                copied = pair.end;
            }
            Verdict::Drop => {
                let o = out.get_or_insert_with(|| String::with_capacity(input.len()));
                if pair.start > copied {
                    // Drop the separator before it with it.
                    o.push_str(input.get(copied..pair.start - 1).unwrap_or(""));
                    copied = pair.end;
                } else {
                    // The first pair kept: drop the separator after it.
                    copied = (pair.end + 1).min(input.len()).max(copied);
                }
            }
        }
    }
    out.map(|mut o| {
        o.push_str(input.get(copied..).unwrap_or(""));
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn find2_finds_the_first_of_two_bytes() {
        let mut rng = crate::test_rng::XorShift::seeded();
        // Few distinct bytes, so that matches, near misses (x ± 1, borrows across bytes) and
        // runs of them are frequent; every length around the 8-byte words.
        let alphabet = [
            b'&', b';', b'=', b'%', b'\'', b'<', b':', 0, 0x80, 0xFF, b'a',
        ];
        for _ in 0..20_000 {
            let len = rng.below(40);
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            for (x, y) in [(b'&', b';'), (b';', b';'), (b'=', b'='), (0, 0xFF)] {
                let want = text.iter().position(|&c| c == x || c == y);
                assert_eq!(find2(&text, x, y), want, "{text:?} {x} {y}");
            }
        }
    }

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
            Some("a=1;c=3 ;b=x y")
        );
        assert_eq!(
            rewrite("d=4&d=5&a=1", ListKind::Query, mask_b).as_deref(),
            Some("a=1")
        );
        assert_eq!(
            rewrite("a=1&d=4;b=2#x", ListKind::Query, mask_b).as_deref(),
            Some("a=1;b=x%20y")
        );
        assert_eq!(
            rewrite("a=1; d=4", ListKind::Cookie, mask_b).as_deref(),
            Some("a=1")
        );
        assert_eq!(
            rewrite("b", ListKind::Query, mask_b).as_deref(),
            Some("b=x%20y")
        );
        assert_eq!(rewrite(" a=1;  c=3", ListKind::Cookie, mask_b), None);
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
