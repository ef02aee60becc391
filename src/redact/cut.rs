//! Cuts: redact first, cut second, and never leave part of a secret at a cut.
//!
//! A value is cut twice at most. Capture keeps more than an event holds (a body's `max_bytes`
//! and [`BODY_MARGIN`] beyond it; a header or attribute value up to [`CAPTURE_CEILING`]), and
//! where even that is cut, [`drop_partial_tail`] removes whatever at the cut could be the start
//! of a secret. Redaction then sees every secret of the captured text whole, and only the
//! redacted text is cut to what the event keeps ([`cut_to`]): that cut can split a marker or
//! ordinary text, never a secret.

/// Bytes captured beyond a body's `max_bytes`, so that a secret across the limit is seen whole
/// by redaction (and counted) before the redacted body is cut to the limit.
pub const BODY_MARGIN: usize = 256;

/// Most bytes of one header or attribute value read from the host before redaction; the
/// redacted value is then cut to [`crate::event::MAX_VALUE_BYTES`].
pub const CAPTURE_CEILING: usize = 4 * crate::event::MAX_VALUE_BYTES;

/// Longest run of short groups separated by spaces dropped at a cut: a payment card (19 digits
/// in up to 5 groups) or an IBAN (34 characters in groups of 4) written with spaces.
const MAX_GROUPED_TAIL: usize = 48;

/// Longest group of such a run.
const MAX_GROUP: usize = 8;

/// Cuts `s` to at most `max` bytes, at a character boundary. Returns whether it cut.
pub fn cut_to(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    true
}

/// Whether `c` ends a token: a secret (a card, a key, an email, a token, an encoded value)
/// does not hold it, so text before it is not part of a secret cut at the end.
fn ends_token(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '"' | '\''
                | '`'
                | '<'
                | '>'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | ','
                | ';'
                | '&'
                | '|'
        )
}

/// Removes what a cut at the end of `s` may have left of a secret: the last token (everything
/// after the last character that ends one), then short groups of letters and digits separated
/// by single spaces before it (a card number or an IBAN written in groups) when they hold a
/// digit, up to `MAX_GROUPED_TAIL` bytes. Call it only on text that was cut.
pub fn drop_partial_tail(s: &mut String) {
    let token_start = s
        .char_indices()
        .rev()
        .find(|&(_, c)| ends_token(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    s.truncate(token_start);
    let start = grouped_tail_start(s.as_bytes());
    if s.as_bytes()
        .get(start..)
        .is_some_and(|t| t.iter().any(u8::is_ascii_digit))
    {
        s.truncate(start);
    }
}

/// Where the run of short alphanumeric groups, each followed by one space, that ends `b`
/// starts (`b.len()` when `b` does not end with one).
fn grouped_tail_start(b: &[u8]) -> usize {
    let floor = b.len().saturating_sub(MAX_GROUPED_TAIL);
    let mut start = b.len();
    while let Some((&b' ', before)) = b.get(..start).and_then(<[u8]>::split_last) {
        let group = before
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        let group_start = before.len() - group;
        if group == 0 || group > MAX_GROUP || group_start < floor {
            break;
        }
        start = group_start;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn dropped(s: &str) -> String {
        let mut s = s.to_string();
        drop_partial_tail(&mut s);
        s
    }

    #[test]
    fn cut_to_keeps_whole_characters() {
        let mut s = "abcé".to_string();
        assert!(cut_to(&mut s, 4));
        assert_eq!(s, "abc");
        let mut s = "abc".to_string();
        assert!(!cut_to(&mut s, 3));
        assert_eq!(s, "abc");
    }

    #[test]
    fn the_token_at_a_cut_goes() {
        assert_eq!(
            dropped(r#"{"a":"x","card":"411111111111"#),
            r#"{"a":"x","card":""#
        );
        assert_eq!(dropped("mail alice@exa"), "mail ");
        assert_eq!(dropped("a=1&password=hun"), "a=1&");
        assert_eq!(dropped("4111-1111-1111-111"), "");
        assert_eq!(dropped(r"x \u0034\u0031\u0031"), "x ");
        assert_eq!(dropped("t=4111%201111%2011"), "");
        assert_eq!(dropped("words then a space "), "words then a space ");
        assert_eq!(dropped("no: 4111 1111 "), "no: ");
    }

    #[test]
    fn grouped_numbers_before_the_cut_go_too() {
        assert_eq!(dropped("card: 4111 1111 1111 11"), "card: ");
        assert_eq!(dropped("iban: GB29 NWBK 6016 1331 92"), "iban: ");
        // Words lose only the cut one; numbers lose at most the grouped tail's worth.
        assert_eq!(dropped("the quick brown fox ju"), "the quick brown fox ");
        let text = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26";
        let out = dropped(text);
        assert!(text.starts_with(&out));
        assert!(text.len() - out.len() <= MAX_GROUPED_TAIL + 2, "{out}");
    }

    #[test]
    fn never_panics_on_any_text() {
        for s in [
            "",
            " ",
            "  ",
            "é é",
            "\u{0}",
            "a b c d e f g h i j k l m n o p",
        ] {
            let _ = dropped(s);
        }
    }
}
