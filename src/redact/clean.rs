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
//! It is bounded, two entries per hash: a third value that collides replaces the one of the
//! two used least recently, and a flood of distinct values only costs the lookups that miss. Entries are compared byte for
//! byte, never by hash alone, so a collision can only cost a miss, never skip a value.

/// Longest value remembered, in bytes. Longer values are rarely repeated headers.
pub const MAX_VALUE: usize = 256;

/// Longest attribute key remembered, in bytes.
const MAX_KEY: usize = 96;

/// Entries in the table, in sets of [`WAYS`] (a power of two).
const SLOTS: usize = 256;

/// Entries per set: a value may sit in either entry of its set, so two values that repeat
/// (two headers every request sends) can share a set without pushing each other out.
const WAYS: usize = 2;

/// Sets in the table.
const SETS: usize = SLOTS / WAYS;

/// A remembered value: its attribute key and value, and the active rules it was read under.
#[derive(Debug, Clone, Default)]
struct Entry {
    hash: u64,
    rules: u64,
    /// The key, a 0xFF byte (never in UTF-8), and the value; empty in an unused entry, which
    /// therefore holds nothing.
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

/// The entries one hash leads to.
#[derive(Debug, Clone, Default)]
struct Set {
    entries: [Entry; WAYS],
    /// The probes of the last values met once and not remembered (yet): a value is
    /// remembered the second time it comes out unchanged, so values that never repeat
    /// (request ids, session cookies) cost a hash, never a copy, and do not push out values
    /// that do. As many as entries, so that two values that repeat are both remembered.
    seen: [Probe; WAYS],
    /// Where in `seen` the next value met once goes.
    next_seen: usize,
    /// The entry found or written last: a new value replaces the other one.
    recent: usize,
}

/// The table of values read before and left unchanged.
#[derive(Debug, Clone, Default)]
pub struct CleanValues {
    sets: Vec<Set>,
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
        // Two independent hashes, so the processor computes them side by side.
        let hash = step(hash_bytes(key.as_bytes()), hash_bytes(value.as_bytes()));
        Some(Probe { hash, rules })
    }

    /// Whether `key` = `value` was read before under the same rules and left unchanged.
    pub fn contains(&mut self, p: Probe, key: &str, value: &str) -> bool {
        let Some(set) = self.sets.get_mut(set_of(p.hash)) else {
            return false;
        };
        let found = set
            .entries
            .iter()
            .position(|e| e.holds(p.hash, p.rules, key, value));
        if let Some(way) = found {
            set.recent = way;
        }
        found.is_some()
    }

    /// Notes that `key` = `value` came out of redaction unchanged: remembered when its set
    /// saw it come out unchanged just before, in place of the entry of the set used least
    /// recently.
    pub fn remember(&mut self, p: Probe, key: &str, value: &str) {
        if self.sets.is_empty() {
            // Each entry holds the longest key and value from the start: remembering never
            // allocates again.
            let entry = || Entry {
                bytes: Vec::with_capacity(MAX_KEY + 1 + MAX_VALUE),
                ..Entry::default()
            };
            self.sets = (0..SETS)
                .map(|_| Set {
                    entries: std::array::from_fn(|_| entry()),
                    ..Set::default()
                })
                .collect();
        }
        let Some(set) = self.sets.get_mut(set_of(p.hash)) else {
            return;
        };
        let Some(at) = set.seen.iter().position(|&q| q == p) else {
            if let Some(q) = set.seen.get_mut(set.next_seen) {
                *q = p;
            }
            set.next_seen = (set.next_seen + 1) % WAYS;
            return;
        };
        // Met again: the next value met once may take its place.
        if let Some(q) = set.seen.get_mut(at) {
            *q = Probe::default();
        }
        let way = (set.recent + 1) % WAYS;
        set.recent = way;
        if let Some(e) = set.entries.get_mut(way) {
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

fn set_of(hash: u64) -> usize {
    (hash >> 56) as usize % SETS
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;

/// One step of a multiply-rotate hash (the FxHash construction): fast on short values; only
/// spreads values over slots, equality is always checked byte for byte.
fn step(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// The lanes' seeds: digits of pi.
const LANES: [u64; 4] = [
    SEED,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// 8 bytes as a little-endian word (0 if `w` is not 8 bytes long, which the callers rule out).
fn load8(w: &[u8]) -> u64 {
    u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))
}

/// 4 bytes as a little-endian word (0 if `w` is not 4 bytes long).
fn load4(w: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(w.try_into().unwrap_or([0; 4])))
}

/// The last `n` (1 to 7) bytes of `bytes` as one word, each byte once, without copying them
/// byte by byte: the last 8 bytes shifted right past those hashed already, or, in a text
/// shorter than 8, two overlapping loads (every byte is in one of them).
fn tail_word(bytes: &[u8], n: usize) -> u64 {
    let len = bytes.len();
    if let Some(last) = len.checked_sub(8).and_then(|from| bytes.get(from..)) {
        return load8(last) >> (8 * (8 - n.min(8)) % 64);
    }
    let at = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
    match len {
        4.. => {
            load4(bytes.get(..4).unwrap_or_default())
                | load4(bytes.get(len - 4..).unwrap_or_default()) << 32
        }
        1.. => at(0) | at(len / 2) << 8 | at(len - 1) << 16,
        0 => 0,
    }
}

/// A hash of `bytes` in four independent lanes (word `i` of each 32 bytes goes to lane `i`),
/// folded and mixed with the length at the end: a chain of [`step`]s over every word would
/// wait on one multiplication per 8 bytes; the lanes let four run at once.
#[inline]
fn hash_bytes(bytes: &[u8]) -> u64 {
    let [mut a, mut b, mut c, mut d] = LANES;
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        let mut w = block.chunks_exact(8).map(load8);
        a = step(a, w.next().unwrap_or(0));
        b = step(b, w.next().unwrap_or(0));
        c = step(c, w.next().unwrap_or(0));
        d = step(d, w.next().unwrap_or(0));
    }
    // The last words, the last one short (the length mixed in below tells it apart).
    let mut words = blocks.remainder().chunks_exact(8);
    if let Some(w) = words.next() {
        a = step(a, load8(w));
    }
    if let Some(w) = words.next() {
        b = step(b, load8(w));
    }
    if let Some(w) = words.next() {
        c = step(c, load8(w));
    }
    let n = words.remainder().len();
    if n > 0 {
        d = step(d, tail_word(bytes, n));
    }
    let folded = a ^ b.rotate_left(16) ^ c.rotate_left(32) ^ d.rotate_left(48);
    step(folded, bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn remembered(c: &mut CleanValues, key: &str, value: &str, rules: u64) -> bool {
        CleanValues::probe(key, value, rules).is_some_and(|p| c.contains(p, key, value))
    }

    #[test]
    fn remembers_exactly_what_it_was_told() {
        let mut c = CleanValues::default();
        let key = "http.request.header.accept";
        assert!(!remembered(&mut c, key, "text/html", 0));
        let p = CleanValues::probe(key, "text/html", 0).unwrap();
        c.remember(p, key, "text/html");
        assert!(
            !remembered(&mut c, key, "text/html", 0),
            "met once: not yet"
        );
        c.remember(p, key, "text/html");
        assert!(remembered(&mut c, key, "text/html", 0));
        // Another value, another key, other active rules: not remembered.
        assert!(!remembered(&mut c, key, "text/html ", 0));
        assert!(!remembered(&mut c, key, "text/htm", 0));
        assert!(!remembered(
            &mut c,
            "http.request.header.accep",
            "ttext/html",
            0
        ));
        assert!(!remembered(&mut c, key, "text/html", 7));
    }

    #[test]
    fn every_byte_changes_the_hash() {
        // Each byte is in one word of one lane, and each step is one-to-one in its state and
        // its word: changing any one byte changes the hash.
        for len in 0..=70 {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let h = hash_bytes(&text);
            for i in 0..len {
                let mut other = text.clone();
                other[i] ^= 0x20;
                assert_ne!(hash_bytes(&other), h, "len {len}, byte {i}");
            }
            let mut longer = text.clone();
            longer.push(0);
            assert_ne!(hash_bytes(&longer), h, "len {len}: a zero byte more");
        }
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
            assert!(remembered(&mut c, "k", v, 0));
        }
        let kept = values
            .iter()
            .filter(|v| remembered(&mut c, "k", v, 0))
            .count();
        assert!(kept <= SLOTS && kept > 0, "{kept}");
    }

    /// Values whose hashes lead to the same set.
    fn same_set(n: usize) -> Vec<String> {
        let set = |v: &str| CleanValues::probe("k", v, 0).map(|p| set_of(p.hash));
        let first = set("v0");
        (0..)
            .map(|i| format!("v{i}"))
            .filter(|v| set(v) == first)
            .take(n)
            .collect()
    }

    #[test]
    fn two_values_of_one_set_are_both_kept() {
        let mut c = CleanValues::default();
        let values = same_set(3);
        let remember = |c: &mut CleanValues, v: &str| {
            let p = CleanValues::probe("k", v, 0).unwrap();
            c.remember(p, "k", v);
        };
        // Met in turn, as two headers of every request are: both remembered the second time.
        for _ in 0..2 {
            remember(&mut c, &values[0]);
            remember(&mut c, &values[1]);
        }
        for _ in 0..3 {
            assert!(remembered(&mut c, "k", &values[0], 0));
            assert!(remembered(&mut c, "k", &values[1], 0));
        }
        // A third replaces the one found least recently.
        assert!(remembered(&mut c, "k", &values[0], 0));
        remember(&mut c, &values[2]);
        remember(&mut c, &values[2]);
        assert!(remembered(&mut c, "k", &values[2], 0));
        assert!(remembered(&mut c, "k", &values[0], 0));
        assert!(!remembered(&mut c, "k", &values[1], 0));
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
        assert!(remembered(&mut c, "k", "stable", 0));
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
