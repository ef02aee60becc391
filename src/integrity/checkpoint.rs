//! Checkpoints: a signed statement of a stream's chain head. Each is an event of its own
//! (`meshaudit.checkpoint`, sequenced and chained like every other) and, with
//! `integrity.witness: "log"`, also a line in Envoy's log for a second store.
//!
//! The signature is Ed25519 over [`Checkpoint::message`]:
//! `"meshaudit-checkpoint-v1" str(stream id) u64(last sequence) head(32 bytes) u64(events)
//! str(previous signature, hex) str(key id)` (strings length-prefixed, integers big-endian).

use super::canonical;
use super::chain::{self, Link};
use super::keys::{self, Signer};
use crate::event::{attr, AuditEvent, EventKind, Value};
use crate::hex;

/// The prefix of a witness line in Envoy's log; one JSON object follows.
pub const WITNESS_PREFIX: &str = "meshaudit-checkpoint ";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream_id: String,
    /// The sequence number of the last event it covers (the one before the checkpoint).
    pub last_sequence: u64,
    /// The chain value of that event.
    pub chain_head: Link,
    /// Events sequenced in the stream up to and including `last_sequence`.
    pub events: u64,
    /// The previous checkpoint's signature, hex; empty for the first (and when unkeyed).
    pub previous_signature: String,
    /// Empty when unkeyed.
    pub key_id: String,
    /// Hex Ed25519 signature; empty when unkeyed.
    pub signature: String,
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Signed, but by no key the verifier was given.
    UnknownKey,
    /// The signature does not verify (or is not hex).
    Bad,
    /// No signature.
    Unsigned,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn message(&self) -> Vec<u8> {
        let mut m = b"meshaudit-checkpoint-v1".to_vec();
        canonical::str(&mut m, &self.stream_id);
        m.extend_from_slice(&self.last_sequence.to_be_bytes());
        m.extend_from_slice(&self.chain_head);
        m.extend_from_slice(&self.events.to_be_bytes());
        canonical::str(&mut m, &self.previous_signature);
        canonical::str(&mut m, &self.key_id);
        m
    }

    /// Signs with `signer` (sets key id and signature).
    pub fn sign(&mut self, signer: &Signer) {
        self.key_id = signer.key_id().to_string();
        self.signature = hex::encode(&signer.sign(&self.message()));
    }

    /// Checks the signature against the trusted keys, found by key id.
    pub fn check<'k>(
        &self,
        trusted: impl Fn(&str) -> Option<&'k ed25519_dalek::VerifyingKey>,
    ) -> Result<(), SignatureError> {
        if self.signature.is_empty() {
            return Err(SignatureError::Unsigned);
        }
        let key = trusted(&self.key_id).ok_or(SignatureError::UnknownKey)?;
        let sig = hex_bytes(&self.signature).ok_or(SignatureError::Bad)?;
        if keys::verify(key, &self.message(), &sig) {
            Ok(())
        } else {
            Err(SignatureError::Bad)
        }
    }

    /// The checkpoint as an event (to be sequenced and chained by the pipeline).
    pub fn to_event(&self, now_ns: u64) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Checkpoint);
        e.start_unix_nano = now_ns;
        e.observed_unix_nano = now_ns;
        let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        e.set(attr::CHECKPOINT_LAST_SEQUENCE, int(self.last_sequence));
        e.set(
            attr::CHECKPOINT_CHAIN_HEAD,
            Value::Str(chain::to_hex(&self.chain_head)),
        );
        e.set(attr::CHECKPOINT_EVENTS, int(self.events));
        e.set(
            attr::CHECKPOINT_PREVIOUS_SIGNATURE,
            Value::Str(self.previous_signature.clone()),
        );
        e.set(attr::CHECKPOINT_KEY_ID, Value::Str(self.key_id.clone()));
        e.set(
            attr::CHECKPOINT_SIGNATURE,
            Value::Str(self.signature.clone()),
        );
        e
    }

    /// A checkpoint read back from an event's attributes (`get` finds one by key).
    pub fn from_attributes<'a>(
        stream_id: &str,
        get: impl Fn(&str) -> Option<&'a Value>,
    ) -> Option<Checkpoint> {
        let int = |k| match get(k) {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        };
        let text = |k| match get(k) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        Some(Checkpoint {
            stream_id: stream_id.to_string(),
            last_sequence: int(attr::CHECKPOINT_LAST_SEQUENCE)?,
            chain_head: chain::from_hex(&text(attr::CHECKPOINT_CHAIN_HEAD)?)?,
            events: int(attr::CHECKPOINT_EVENTS)?,
            previous_signature: text(attr::CHECKPOINT_PREVIOUS_SIGNATURE).unwrap_or_default(),
            key_id: text(attr::CHECKPOINT_KEY_ID).unwrap_or_default(),
            signature: text(attr::CHECKPOINT_SIGNATURE).unwrap_or_default(),
        })
    }

    /// The witness line: the prefix, then one JSON object.
    pub fn witness_line(&self) -> String {
        let json = serde_json::json!({
            "stream_id": self.stream_id,
            "last_sequence": self.last_sequence,
            "chain_head": chain::to_hex(&self.chain_head),
            "events": self.events,
            "previous_signature": self.previous_signature,
            "key_id": self.key_id,
            "signature": self.signature,
        });
        format!("{WITNESS_PREFIX}{json}")
    }

    /// A checkpoint from a line that holds a witness line anywhere (Envoy prefixes its own log
    /// fields). `None` when the line holds none; `Err` when it holds a broken one.
    pub fn from_witness_line(line: &str) -> Option<Result<Checkpoint, String>> {
        let at = line.find(WITNESS_PREFIX)?;
        let json = line.get(at + WITNESS_PREFIX.len()..)?.trim();
        Some(parse_witness_json(json))
    }
}

fn parse_witness_json(json: &str) -> Result<Checkpoint, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("witness line is not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let int = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let missing = |k: &str| format!("witness line has no valid {k:?}");
    Ok(Checkpoint {
        stream_id: text("stream_id").ok_or_else(|| missing("stream_id"))?,
        last_sequence: int("last_sequence").ok_or_else(|| missing("last_sequence"))?,
        chain_head: text("chain_head")
            .and_then(|h| chain::from_hex(&h))
            .ok_or_else(|| missing("chain_head"))?,
        events: int("events").ok_or_else(|| missing("events"))?,
        previous_signature: text("previous_signature").unwrap_or_default(),
        key_id: text("key_id").unwrap_or_default(),
        signature: text("signature").unwrap_or_default(),
    })
}

/// Bytes of an even-length hex string.
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => Some((hex::digit(*hi)? << 4) | hex::digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            stream_id: "00000000000000ab".into(),
            last_sequence: 41,
            chain_head: [5; 32],
            events: 42,
            previous_signature: String::new(),
            key_id: String::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn signed_checkpoints_verify_and_any_change_breaks_them() {
        let signer = Signer::from_seed(&[1; 32]);
        let public = signer.public();
        let trusted = |id: &str| (id == signer.key_id()).then_some(&public);
        let mut c = checkpoint();
        assert_eq!(c.check(trusted), Err(SignatureError::Unsigned));
        c.sign(&signer);
        assert_eq!(c.check(trusted), Ok(()));
        let mutations: [fn(&mut Checkpoint); 6] = [
            |c| c.last_sequence += 1,
            |c| c.chain_head[0] ^= 1,
            |c| c.events -= 1,
            |c| c.previous_signature = "00".into(),
            |c| c.stream_id.push('0'),
            |c| {
                let mut b = hex_bytes(&c.signature).unwrap();
                b[10] ^= 0x80;
                c.signature = hex::encode(&b);
            },
        ];
        for m in mutations {
            let mut bad = c.clone();
            m(&mut bad);
            assert_eq!(bad.check(trusted), Err(SignatureError::Bad), "{bad:?}");
        }
        let other = Signer::from_seed(&[2; 32]);
        let mut foreign = checkpoint();
        foreign.sign(&other);
        assert_eq!(foreign.check(trusted), Err(SignatureError::UnknownKey));
    }

    #[test]
    fn event_and_witness_line_round_trip() {
        let mut c = checkpoint();
        c.sign(&Signer::from_seed(&[1; 32]));
        let e = c.to_event(9);
        assert_eq!(e.kind.name(), "meshaudit.checkpoint");
        let back = Checkpoint::from_attributes(&c.stream_id, |k| e.get(k)).unwrap();
        assert_eq!(back, c);
        let line = format!("[2026-01-01][info] wasm log: {}", c.witness_line());
        assert_eq!(Checkpoint::from_witness_line(&line), Some(Ok(c)));
        assert_eq!(Checkpoint::from_witness_line("other"), None);
        assert!(matches!(
            Checkpoint::from_witness_line("meshaudit-checkpoint {\"stream_id\":\"a\"}"),
            Some(Err(_))
        ));
    }
}
