//! Keys: the Ed25519 signing key a sidecar reads from its environment, the public keys a
//! verifier trusts, and key ids (the first 16 hex digits of SHA-256 over the public key).
//!
//! A private key is either the base64 of its 32-byte seed or a PKCS#8 PEM
//! (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519` writes); a public
//! key the base64 of its 32 bytes or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`). Both PEM forms
//! for Ed25519 are a fixed DER prefix and the 32 key bytes (RFC 8410), read here without a
//! general DER parser.

use base64::Engine;
/// A public key checkpoints are verified with.
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::hex;

/// RFC 8410 PKCS#8 `PrivateKeyInfo` for Ed25519, up to the seed.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// RFC 8410 `SubjectPublicKeyInfo` for Ed25519, up to the key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A signing key and its id.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id)
    }
}

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key());
        Signer { key, key_id }
    }

    /// Reads a private key (base64 seed or PKCS#8 PEM). The error never repeats the input.
    pub fn parse(text: &[u8]) -> Result<Signer, String> {
        let bytes = decode(text, "PRIVATE KEY")?;
        let seed = match bytes.len() {
            32 => bytes.as_slice(),
            48 if bytes.starts_with(&PKCS8_PREFIX) => bytes.get(16..).unwrap_or_default(),
            n => {
                return Err(format!(
                "is not an Ed25519 private key (expected the base64 of a 32-byte seed or a PKCS#8 PEM; got {n} bytes)"
            ))
            }
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| "is not an Ed25519 private key".to_string())?;
        Ok(Signer::from_seed(&seed))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The private key as PKCS#8 PEM (for `meshaudit keygen`).
    pub fn private_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.key.as_bytes());
        pem("PRIVATE KEY", &der)
    }
}

/// A public key as SPKI PEM.
pub fn public_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    pem("PUBLIC KEY", &der)
}

/// Reads a public key (base64 of 32 bytes or SPKI PEM).
pub fn parse_public(text: &[u8]) -> Result<VerifyingKey, String> {
    let bytes = decode(text, "PUBLIC KEY")?;
    let raw = match bytes.len() {
        32 => bytes.as_slice(),
        44 if bytes.starts_with(&SPKI_PREFIX) => bytes.get(12..).unwrap_or_default(),
        n => return Err(format!("is not an Ed25519 public key ({n} bytes)")),
    };
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| "is not an Ed25519 public key".to_string())?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "is not a valid Ed25519 point".to_string())
}

/// The id of a public key: the first 16 hex digits of SHA-256 over its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// Verifies an Ed25519 signature.
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

/// The bytes of base64 text or of a PEM block with `label`.
fn decode(text: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not text".to_string())?;
    let begin = format!("-----BEGIN {label}-----");
    let body: String = match text.find(&begin) {
        Some(at) => {
            let rest = text.get(at + begin.len()..).unwrap_or_default();
            let end = rest
                .find("-----END")
                .ok_or_else(|| format!("has no end line for its {label} PEM block"))?;
            rest.get(..end)
                .unwrap_or_default()
                .split_whitespace()
                .collect()
        }
        None if text.contains("-----BEGIN") => {
            return Err(format!("holds a PEM block that is not a {label}"))
        }
        None => text.split_whitespace().collect(),
    };
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "is neither base64 nor PEM".to_string())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn keys_read_from_base64_and_pem_and_sign() {
        let s = Signer::from_seed(&[7; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let from_b64 = Signer::parse(format!("{b64}\n").as_bytes()).unwrap();
        let from_pem = Signer::parse(s.private_pem().as_bytes()).unwrap();
        assert_eq!(from_b64.key_id(), s.key_id());
        assert_eq!(from_pem.key_id(), s.key_id());
        assert_eq!(s.key_id().len(), 16);
        let public = parse_public(public_pem(&s.public()).as_bytes()).unwrap();
        assert_eq!(key_id(&public), s.key_id());
        let sig = s.sign(b"m");
        assert!(verify(&public, b"m", &sig));
        assert!(!verify(&public, b"n", &sig));
        let mut bad = sig;
        bad[3] ^= 1;
        assert!(!verify(&public, b"m", &bad));
        assert!(!verify(&public, b"m", &sig[..63]));
        let other = Signer::from_seed(&[8; 32]);
        assert_ne!(other.key_id(), s.key_id());
        assert!(!verify(&other.public(), b"m", &sig));
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        for bad in [
            &b"c2VjcmV0LXNlY3JldA=="[..],
            b"not base64 at all!",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            b"-----BEGIN PRIVATE KEY-----\nAAAA",
        ] {
            let e = Signer::parse(bad).unwrap_err();
            assert!(!e.contains("c2Vj") && !e.contains("AAAA"), "{e}");
        }
        assert!(parse_public(b"AAAA").is_err());
    }
}
