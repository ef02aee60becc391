//! How a rule's field name matches the names applications write: one model for JSON members,
//! form fields, query and `;` parameters, fragments, cookies, headers and multipart parts.
//!
//! Names are compared case-insensitively and by words: a name is split at anything that is not
//! a letter or digit (`_ - . [ ]`, spaces), at camelCase humps (`newPassword`, `APIKey`) and
//! between letters and digits (`password2`). A rule name matches a field when its letters and
//! digits equal a run of whole words of the field (`api_key` matches `apiKey`, `X-API-KEY`,
//! `user[api_key]`, `apikey`); a rule name of [`ANYWHERE_FROM`] or more letters and digits
//! also matches inside a word (`password` in `userpassword`, `token` in `csrftoken`).
//!
//! Path steps of JSON rules (`$.card.number`) are compared whole instead: same letters and
//! digits, any case and separators (`cardNumber`, `card_number`, `CARD-NUMBER`).

/// Rule names at least this long (letters and digits) match inside words too.
pub const ANYWHERE_FROM: usize = 5;

/// A field name as rules see it: its letters and digits, lower-cased, and where its words
/// start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldName {
    folded: String,
    /// Bit `i`: a word starts at byte `i` of `folded`. Past [`STARTS_BITS`] bytes every byte
    /// counts as a start (names that long are rare; more starts only match more).
    starts: u128,
    /// The pairs of adjacent bytes of `folded`, hashed to one bit each: a rule name whose
    /// pairs are not all here cannot match, which most comparisons learn from one `and`.
    pairs: u64,
}

/// Bytes of a folded name whose word starts are kept exactly.
const STARTS_BITS: usize = 128;

/// The bit of a pair of adjacent bytes.
fn pair_bit(a: u8, b: u8) -> u64 {
    1 << ((u32::from(a).wrapping_mul(31) ^ u32::from(b)) % 64)
}

/// The pair bits of `s`.
fn pair_bits(s: &str) -> u64 {
    let b = s.as_bytes();
    b.iter()
        .zip(b.iter().skip(1))
        .fold(0, |m, (&x, &y)| m | pair_bit(x, y))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' => Class::Lower,
            'A'..='Z' => Class::Upper,
            '0'..='9' => Class::Digit,
            _ => Class::Other,
        };
    }
    if c.is_numeric() {
        Class::Digit
    } else if c.is_uppercase() {
        Class::Upper
    } else if c.is_alphabetic() {
        Class::Lower
    } else {
        Class::Other
    }
}

impl FieldName {
    pub fn new(name: &str) -> FieldName {
        let mut out = FieldName::default();
        out.set(name);
        out
    }

    /// The name folded as rules compare it (what the fuzz target checks matches against).
    pub fn folded(&self) -> &str {
        &self.folded
    }

    /// Makes this the field name `name`, reusing its buffer.
    pub fn set(&mut self, name: &str) {
        self.folded.clear();
        self.starts = 0;
        if name.is_ascii() {
            self.set_ascii(name.as_bytes());
        } else {
            self.set_chars(name);
        }
        self.pairs = pair_bits(&self.folded);
    }

    /// Whether a word starts at a letter or digit of class `now`, after one of class `prev`
    /// and before one of class `next`.
    fn starts_word(prev: Class, now: Class, next: Class) -> bool {
        match (prev, now) {
            (Class::Other, _) => true,
            (Class::Lower, Class::Upper) => true,
            // `APIKey`: the `K` starts `Key`.
            (Class::Upper, Class::Upper) => next == Class::Lower,
            (Class::Digit, Class::Lower | Class::Upper) => true,
            (Class::Lower | Class::Upper, Class::Digit) => true,
            _ => false,
        }
    }

    fn mark_start(&mut self) {
        if let Some(bit) = 1u128.checked_shl(u32::try_from(self.folded.len()).unwrap_or(u32::MAX)) {
            self.starts |= bit;
        }
    }

    fn set_ascii(&mut self, name: &[u8]) {
        let class_of = |b: Option<&u8>| b.map_or(Class::Other, |&b| class(char::from(b)));
        let mut prev = Class::Other;
        for (i, &b) in name.iter().enumerate() {
            let now = class(char::from(b));
            if now != Class::Other {
                if Self::starts_word(prev, now, class_of(name.get(i + 1))) {
                    self.mark_start();
                }
                self.folded.push(char::from(b.to_ascii_lowercase()));
            }
            prev = now;
        }
    }

    fn set_chars(&mut self, name: &str) {
        let mut prev = Class::Other;
        let mut chars = name.chars().peekable();
        while let Some(c) = chars.next() {
            let now = class(c);
            if now != Class::Other {
                let next = chars.peek().map_or(Class::Other, |&n| class(n));
                if Self::starts_word(prev, now, next) {
                    self.mark_start();
                }
                self.folded.extend(c.to_lowercase());
            }
            prev = now;
        }
    }

    fn is_start(&self, at: usize) -> bool {
        at >= STARTS_BITS || self.starts & (1 << at) != 0
    }

    fn is_boundary(&self, at: usize) -> bool {
        at == self.folded.len() || self.is_start(at)
    }
}

/// A rule's field name, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    folded: String,
    anywhere: bool,
    /// [`FieldName::pairs`] of the rule name: all must be in a name it matches.
    pairs: u64,
}

impl NamePattern {
    pub fn new(name: &str) -> NamePattern {
        let folded = FieldName::new(name).folded;
        let anywhere = folded.chars().count() >= ANYWHERE_FROM;
        let pairs = pair_bits(&folded);
        NamePattern {
            folded,
            anywhere,
            pairs,
        }
    }

    /// Whether the rule name names nothing (no letter or digit): such a name is refused.
    pub fn is_empty(&self) -> bool {
        self.folded.is_empty()
    }

    /// Whether `name` is this field, by the word model.
    pub fn matches(&self, name: &FieldName) -> bool {
        if self.folded.is_empty() || name.pairs & self.pairs != self.pairs {
            return false;
        }
        let (hay, needle) = (name.folded.as_bytes(), self.folded.as_bytes());
        if self.anywhere {
            // Names are short: comparing windows beats setting up a substring searcher.
            return hay.windows(needle.len()).any(|w| w == needle);
        }
        (0..hay.len().saturating_sub(needle.len()) + 1).any(|at| {
            name.is_start(at)
                && hay.get(at..at + needle.len()) == Some(needle)
                && name.is_boundary(at + needle.len())
        })
    }

    /// Whether `name` is this field, compared whole (JSON path steps).
    pub fn equals(&self, name: &FieldName) -> bool {
        self.folded == name.folded
    }
}

/// The rule names of one kind of field, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet(Vec<NamePattern>);

impl NameSet {
    pub fn new<S: AsRef<str>>(names: &[S]) -> NameSet {
        NameSet(names.iter().map(|n| NamePattern::new(n.as_ref())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether any name of the set matches `name`.
    pub fn matches(&self, name: &FieldName) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn words(name: &str) -> Vec<String> {
        let f = FieldName::new(name);
        let mut ends: Vec<usize> = (0..f.folded.len()).filter(|&i| f.is_start(i)).collect();
        ends.push(f.folded.len());
        ends.windows(2)
            .map(|w| f.folded[w[0]..w[1]].to_string())
            .collect()
    }

    #[test]
    fn names_split_into_words() {
        assert_eq!(words("newPassword"), ["new", "password"]);
        assert_eq!(words("APIKey"), ["api", "key"]);
        assert_eq!(words("user[password]"), ["user", "password"]);
        assert_eq!(words("token[]"), ["token"]);
        assert_eq!(words("X-Api-Key"), ["x", "api", "key"]);
        assert_eq!(words("password2"), ["password", "2"]);
        assert_eq!(words("user.password"), ["user", "password"]);
        assert_eq!(words("CLIENT_SECRET"), ["client", "secret"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("Ünïcode_Naïve"), ["ünïcode", "naïve"]);
    }

    fn hit(rule: &str, name: &str) -> bool {
        NamePattern::new(rule).matches(&FieldName::new(name))
    }

    #[test]
    fn the_word_model() {
        for name in [
            "password",
            "Password",
            "PASSWORD",
            "newPassword",
            "password_confirmation",
            "user[password]",
            "user.password",
            "userpassword",
            "Password2",
        ] {
            assert!(hit("password", name), "{name}");
        }
        for name in [
            "api_key",
            "apiKey",
            "APIKEY",
            "x-api-key",
            "user[api_key]",
            "ApiKeyId",
        ] {
            assert!(hit("api_key", name), "{name}");
            assert!(hit("apikey", name), "{name}");
        }
        for name in ["key", "Key", "cache_key", "keyId", "key[]"] {
            assert!(hit("key", name), "{name}");
        }
        for name in ["monkey", "keyboard", "hotkeys", ""] {
            assert!(!hit("key", name), "{name}");
        }
        assert!(hit("token", "csrftoken") && hit("token", "token[]"));
        assert!(hit("sig", "X-Sig") && !hit("sig", "signal"));
        assert!(!hit("", "anything") && !hit("--", "anything"));
    }

    #[test]
    fn steps_compare_whole_names() {
        let p = NamePattern::new("card_number");
        for name in ["card_number", "cardNumber", "CARD-NUMBER", "card.number"] {
            assert!(p.equals(&FieldName::new(name)), "{name}");
        }
        assert!(!p.equals(&FieldName::new("card_number2")));
    }
}
