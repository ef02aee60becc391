//! Redaction actions: what happens to a value a rule or detector matched.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{ActionKind, ActionSpec};
use crate::hex;

/// The fixed marker of `mask`.
pub const MASK: &str = "[REDACTED]";
/// Prefix of `hash` tokens.
pub const HASH_PREFIX: &str = "hmac:";

/// A compiled action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    /// Characters kept by `partial` (at the end) and `truncate` (at the start).
    pub keep: usize,
}

impl Action {
    pub const MASK: Action = Action {
        kind: ActionKind::Mask,
        keep: 0,
    };

    pub fn new(kind: ActionKind, keep: Option<u32>) -> Action {
        let default_keep = match kind {
            ActionKind::Partial => 4,
            ActionKind::Truncate => 8,
            _ => 0,
        };
        let keep = keep.map_or(default_keep, |k| usize::try_from(k).unwrap_or(usize::MAX));
        Action { kind, keep }
    }

    pub fn from_spec(spec: &ActionSpec) -> Action {
        Action::new(spec.action, spec.keep)
    }

    /// The replacement for `value`, or `None` when the value is to be removed. The mask
    /// marker is borrowed: masking allocates nothing.
    pub fn apply(&self, value: &str, key: Option<&HashKey>) -> Option<Cow<'static, str>> {
        let mask = Some(Cow::Borrowed(MASK));
        match self.kind {
            ActionKind::Remove => None,
            ActionKind::Mask => mask,
            ActionKind::Partial => {
                let chars = value.chars().count();
                // Short values are masked whole: keeping `keep` of them would reveal too much.
                if chars <= self.keep.saturating_mul(2) {
                    return mask;
                }
                let tail: String = value.chars().skip(chars - self.keep).collect();
                Some(Cow::Owned(format!("****{tail}")))
            }
            ActionKind::Truncate => {
                // Like `partial`: a value of `2*keep` characters or fewer would be shown whole
                // or nearly (a PIN, a one-time code), so it is masked whole.
                if value.chars().count() <= self.keep.saturating_mul(2) {
                    return mask;
                }
                let head: String = value.chars().take(self.keep).collect();
                Some(Cow::Owned(format!("{head}…")))
            }
            ActionKind::Hash => match key {
                Some(k) => Some(Cow::Owned(k.token(value))),
                None => mask,
            },
        }
    }
}

/// The key of the `hash` action. Never printed.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    pub fn new(key: Vec<u8>) -> HashKey {
        HashKey(key)
    }

    /// `hmac:` and the first 128 bits of HMAC-SHA256(key, value), hex.
    pub fn token(&self, value: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return MASK.to_string();
        };
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!(
            "{HASH_PREFIX}{}",
            hex::encode(digest.get(..16).unwrap_or(&[]))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key() -> HashKey {
        HashKey::new(b"k3y".to_vec())
    }

    #[test]
    fn each_action() {
        let v = "4111111111111111";
        assert_eq!(Action::new(ActionKind::Remove, None).apply(v, None), None);
        assert_eq!(Action::MASK.apply(v, None).as_deref(), Some("[REDACTED]"));
        assert_eq!(
            Action::new(ActionKind::Partial, None)
                .apply(v, None)
                .as_deref(),
            Some("****1111")
        );
        assert_eq!(
            Action::new(ActionKind::Partial, Some(2))
                .apply(v, None)
                .as_deref(),
            Some("****11")
        );
        assert_eq!(
            Action::new(ActionKind::Truncate, Some(4))
                .apply(v, None)
                .as_deref(),
            Some("4111…")
        );
        assert_eq!(
            Action::new(ActionKind::Truncate, Some(40))
                .apply(v, None)
                .as_deref(),
            Some("[REDACTED]")
        );
    }

    #[test]
    fn truncate_never_keeps_a_short_value() {
        let a = Action::new(ActionKind::Truncate, None);
        for v in ["", "1234", "123456", "12345678", "1234567890123456"] {
            assert_eq!(a.apply(v, None).as_deref(), Some("[REDACTED]"), "{v}");
        }
        assert_eq!(
            a.apply("12345678901234567", None).as_deref(),
            Some("12345678…")
        );
    }

    #[test]
    fn partial_masks_short_values_whole() {
        let a = Action::new(ActionKind::Partial, None);
        assert_eq!(a.apply("12345678", None).as_deref(), Some("[REDACTED]"));
        assert_eq!(a.apply("ééééééééé", None).as_deref(), Some("****éééé"));
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = Action::new(ActionKind::Hash, None);
        let t1 = a.apply("alice@example.com", Some(&key())).unwrap();
        let t2 = a.apply("alice@example.com", Some(&key())).unwrap();
        let other = a
            .apply("alice@example.com", Some(&HashKey::new(b"other".to_vec())))
            .unwrap();
        assert_eq!(t1, t2);
        assert_ne!(t1, other);
        assert!(t1.starts_with("hmac:") && t1.len() == 5 + 32, "{t1}");
        assert!(!t1.contains("alice"));
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let rfc = HashKey::new(b"Jefe".to_vec()).token("what do ya want for nothing?");
        assert_eq!(rfc, "hmac:5bdcc146bf60754e6a042426089575c7");
        assert_eq!(format!("{:?}", key()), "HashKey(..)");
    }
}
