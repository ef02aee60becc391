//! Values redaction has already read and left as they were.
//!
//! Most attribute values of an event repeat from request to request: `accept`, `content-type`,
//! `user-agent`, `origin`, `cache-control`, the response's `content-type`. Redacting one is a
//! pure function of the attribute key, its value, the active rules and the configuration, so
//! a value that came out unchanged, with no rule or detector firing, comes out unchanged again
//! under the same active rules. This table remembers such values (short ones only), so the
//! next event skips reading and scanning them.
//!
//! The table belongs to one redactor (one configuration): a new configuration starts empty.
//! It is direct-mapped and bounded: a value that collides replaces the one before it, and a
//! flood of distinct values only costs the lookups that miss. Entries are compared byte for
//! byte, never by hash alone, so a collision can only cost a miss, never skip a value.

/// Longest value remembered, in bytes. Longer values are rarely repeated headers.
pub const MAX_VALUE: usize = 256;

/// Longest attribute key remembered, in bytes.
const MAX_KEY: usize = 96;

/// Slots in the table (a power of two).
const SLOTS: usize = 256;

/// A remembered value: its attribute key and value, and the active rules it was read under.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The probe of a value met once and not remembered (yet): a value is remembered the
    /// second time it comes out unchanged, so values that never repeat (request ids, session
    /// cookies) cost a hash, never a copy, and do not push out values that do.
    seen: Probe,
    hash: u64,
    rules: u64,
    /// The key, a 0xFF byte (never in UTF-8), and the value.
    bytes: Vec<u8>,
}

impl Entry {
    fn holds(&self, hash: u64, rules: u64, key: &str, value: &str) -> bool {
        self.hash == hash
            && self.rules == rules
            && self.bytes.len() == key.len() + 1 + value.len()
            && self.bytes.get(..key.len()) == Some(key.as_bytes())
            && self.bytes.get(key.len() + 1..) == Some(value.as_bytes())
    }
}

/// The table of values read before and left unchanged.
#[derive(Debug, Clone, Default)]
pub struct CleanValues {
    slots: Vec<Entry>,
}

/// Where one value would sit in the table: computed once per lookup, reused to remember it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    hash: u64,
    rules: u64,
}

impl Probe {
    /// The active rules it was made for.
    pub fn rules(self) -> u64 {
        self.rules
    }
}

impl CleanValues {
    /// Where `key` = `value` would be, under the active rules `rules` (a fingerprint, see
    /// [`rules_fingerprint`]); `None` for values too long to remember.
    pub fn probe(key: &str, value: &str, rules: u64) -> Option<Probe> {
        if value.len() > MAX_VALUE || key.len() > MAX_KEY {
            return None;
        }
        let hash = mix(mix(SEED, key.as_bytes()), value.as_bytes());
        Some(Probe { hash, rules })
    }

    /// Whether `key` = `value` was read before under the same rules and left unchanged.
    pub fn contains(&self, p: Probe, key: &str, value: &str) -> bool {
        self.slots
            .get(slot(p.hash))
            .is_some_and(|e| e.holds(p.hash, p.rules, key, value))
    }

    /// Notes that `key` = `value` came out of redaction unchanged: remembered when its slot
    /// saw it come out unchanged just before.
    pub fn remember(&mut self, p: Probe, key: &str, value: &str) {
        if self.slots.is_empty() {
            // Each slot holds the longest key and value from the start: remembering never
            // allocates again.
            self.slots = (0..SLOTS)
                .map(|_| Entry {
                    bytes: Vec::with_capacity(MAX_KEY + 1 + MAX_VALUE),
                    ..Entry::default()
                })
                .collect();
        }
        if let Some(e) = self.slots.get_mut(slot(p.hash)) {
            if e.seen != p {
                e.seen = p;
                return;
            }
            e.hash = p.hash;
            e.rules = p.rules;
            e.bytes.clear();
            e.bytes.extend_from_slice(key.as_bytes());
            e.bytes.push(0xFF);
            e.bytes.extend_from_slice(value.as_bytes());
        }
    }
}

/// The active rules' indexes as one number: 0 when every rule is active; the set of indexes
/// itself as bits when they are below 63 (exact); a hash of the list beyond that.
pub fn rules_fingerprint(active: &[usize], all: bool) -> u64 {
    if all {
        return 0;
    }
    if active.iter().all(|&i| i < 63) {
        return active.iter().fold(1 << 63, |bits, &i| bits | 1 << i);
    }
    active.iter().fold(SEED, |h, &i| step(h, i as u64))
}

fn slot(hash: u64) -> usize {
    (hash >> 56) as usize % SLOTS
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;

/// One step of a multiply-rotate hash (the FxHash construction): fast on short values; only
/// spreads values over slots, equality is always checked byte for byte.
fn step(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
}

fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = step(h, u64::from_le_bytes(b));
    }
    let mut b = [0u8; 8];
    let rest = words.remainder();
    if let Some(head) = b.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    step(step(h, u64::from_le_bytes(b)), bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn remembered(c: &CleanValues, key: &str, value: &str, rules: u64) -> bool {
        CleanValues::probe(key, value, rules).is_some_and(|p| c.contains(p, key, value))
    }

    #[test]
    fn remembers_exactly_what_it_was_told() {
        let mut c = CleanValues::default();
        let key = "http.request.header.accept";
        assert!(!remembered(&c, key, "text/html", 0));
        let p = CleanValues::probe(key, "text/html", 0).unwrap();
        c.remember(p, key, "text/html");
        assert!(!remembered(&c, key, "text/html", 0), "met once: not yet");
        c.remember(p, key, "text/html");
        assert!(remembered(&c, key, "text/html", 0));
        // Another value, another key, other active rules: not remembered.
        assert!(!remembered(&c, key, "text/html ", 0));
        assert!(!remembered(&c, key, "text/htm", 0));
        assert!(!remembered(
            &c,
            "http.request.header.accep",
            "ttext/html",
            0
        ));
        assert!(!remembered(&c, key, "text/html", 7));
    }

    #[test]
    fn long_values_are_not_remembered() {
        let long = "a".repeat(MAX_VALUE + 1);
        assert!(CleanValues::probe("k", &long, 0).is_none());
        assert!(CleanValues::probe("k", &long[..MAX_VALUE], 0).is_some());
        assert!(CleanValues::probe(&long[..MAX_KEY + 1], "v", 0).is_none());
    }

    #[test]
    fn a_colliding_value_replaces_the_one_before() {
        let mut c = CleanValues::default();
        // Fill more values than there are slots: every one is either remembered exactly or
        // forgotten, never confused with another.
        let values: Vec<String> = (0..SLOTS * 3).map(|i| format!("v{i}")).collect();
        for v in &values {
            let p = CleanValues::probe("k", v, 0).unwrap();
            c.remember(p, "k", v);
            c.remember(p, "k", v);
            assert!(remembered(&c, "k", v, 0));
        }
        let kept = values.iter().filter(|v| remembered(&c, "k", v, 0)).count();
        assert!(kept <= SLOTS && kept > 0, "{kept}");
    }

    #[test]
    fn values_met_once_do_not_push_out_remembered_ones() {
        let mut c = CleanValues::default();
        let p = CleanValues::probe("k", "stable", 0).unwrap();
        c.remember(p, "k", "stable");
        c.remember(p, "k", "stable");
        for i in 0..SLOTS * 4 {
            let v = format!("unique-{i}");
            c.remember(CleanValues::probe("k", &v, 0).unwrap(), "k", &v);
        }
        assert!(remembered(&c, "k", "stable", 0));
    }

    #[test]
    fn fingerprints_tell_active_rule_sets_apart() {
        assert_eq!(rules_fingerprint(&[0, 1, 2], true), 0);
        let a = rules_fingerprint(&[0, 1], false);
        assert_ne!(a, rules_fingerprint(&[0, 2], false));
        assert_ne!(a, rules_fingerprint(&[0], false));
        assert_eq!(a, rules_fingerprint(&[0, 1], false));
        assert_ne!(rules_fingerprint(&[], false), 0);
        let many: Vec<usize> = (0..70).collect();
        assert_ne!(
            rules_fingerprint(&many, false),
            rules_fingerprint(&many[1..], false)
        );
    }
}
