//! Where each key of a record is, so that looking a key up is a hash and one comparison instead
//! of a walk over some eighty attributes. The [`LineReader`](super::json_line::LineReader)
//! builds it when a line's keys differ from the last line's (within a stream they rarely do),
//! so the lines of a trail share one index; a record built any other way has none, and is
//! searched.

use std::sync::atomic::{AtomicU64, Ordering};

/// An open-addressing table from a key's hash to the key's last position (1-based; 0 empty).
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    slots: Vec<u32>,
    /// Which build this is (0: none). Records with the same build have the same keys at the
    /// same positions, each as inside the canonical form as the others' (see `LineReader`).
    build: u64,
    /// The number of attributes it was built for (a record with another number is searched).
    built_for: usize,
}

/// Builds so far, plus one: every build has its own number.
static BUILDS: AtomicU64 = AtomicU64::new(1);

/// What a lookup finds.
pub enum Found {
    At(usize),
    Absent,
    /// No index for these attributes: search them.
    Unknown,
}

impl KeyIndex {
    /// An index of `keys` (the record's attribute keys by position).
    pub fn build<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> KeyIndex {
        let n = keys.len();
        let size = (n * 2).next_power_of_two().max(8);
        let mut slots = vec![0u32; size];
        let mut placed: Vec<&str> = Vec::with_capacity(n);
        for (i, key) in keys.enumerate() {
            placed.push(key);
            let Ok(position) = u32::try_from(i + 1) else {
                return KeyIndex::default();
            };
            let mut at = hash(key) & (size - 1);
            loop {
                let Some(slot) = slots.get_mut(at) else {
                    return KeyIndex::default();
                };
                let occupant = (*slot as usize).checked_sub(1).and_then(|p| placed.get(p));
                match occupant {
                    // A repeated key: the later position is the one that counts.
                    Some(k) if *k == key => {
                        *slot = position;
                        break;
                    }
                    Some(_) => at = (at + 1) & (size - 1),
                    None => {
                        *slot = position;
                        break;
                    }
                }
            }
        }
        KeyIndex {
            slots,
            build: BUILDS.fetch_add(1, Ordering::Relaxed),
            built_for: n,
        }
    }

    /// Whether it was built (a default index knows nothing).
    pub fn is_built(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Which build this is: records with the same nonzero build share their shape.
    pub fn build_number(&self) -> u64 {
        self.build
    }

    /// Where `key` is among `keys` (the attribute keys the index was built for).
    pub fn find<'a>(
        &self,
        key: &str,
        key_at: impl Fn(usize) -> Option<&'a str>,
        n: usize,
    ) -> Found {
        if self.slots.is_empty() || n != self.built_for {
            return Found::Unknown;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash(key) & mask;
        for _ in 0..self.slots.len() {
            let Some(&slot) = self.slots.get(at) else {
                return Found::Unknown;
            };
            let Some(position) = (slot as usize).checked_sub(1) else {
                return Found::Absent;
            };
            match key_at(position) {
                Some(k) if k == key => return Found::At(position),
                Some(_) => at = (at + 1) & mask,
                None => return Found::Unknown,
            }
        }
        Found::Absent
    }
}

/// An index says where keys are, not what a record holds: records equal in content are equal
/// whether or not they carry one.
impl PartialEq for KeyIndex {
    fn eq(&self, _: &KeyIndex) -> bool {
        true
    }
}

/// FNV-1a (64-bit): short keys, no adversary to fear (a crafted key only costs its own lookups a
/// longer probe).
fn hash(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn find(keys: &[&str], key: &str) -> Option<usize> {
        let index = KeyIndex::build(keys.iter().copied());
        match index.find(key, |i| keys.get(i).copied(), keys.len()) {
            Found::At(i) => Some(i),
            Found::Absent => None,
            Found::Unknown => panic!("an index built for these keys knows them"),
        }
    }

    #[test]
    fn finds_the_last_position_of_every_key_and_nothing_else() {
        let keys: Vec<String> = (0..200).map(|i| format!("k{}", i % 150)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (i, k) in keys.iter().enumerate() {
            let last = keys.iter().rposition(|x| x == k);
            assert_eq!(find(&keys, k), last, "{k} at {i}");
        }
        assert_eq!(find(&keys, "k150"), None);
        assert_eq!(find(&keys, ""), None);
        assert_eq!(find(&[], "a"), None);
    }

    #[test]
    fn other_attributes_are_searched() {
        let index = KeyIndex::build(["a", "b"].into_iter());
        assert!(matches!(index.find("a", |_| Some("a"), 3), Found::Unknown));
        assert!(matches!(
            KeyIndex::default().find("a", |_| Some("a"), 0),
            Found::Unknown
        ));
    }
}
