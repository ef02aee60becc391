//! Where a line's `"` and `\` are, found for the whole line in one pass: a bit per byte, 64
//! bytes a word, compared 16 at a time with SSE2 on x86_64 (always present there) and eight
//! at a time in a word elsewhere. The JSON-lines reader then finds each string's end with a
//! bit scan instead of a search per string (a line holds some 160 short strings).

/// The positions of `"` and `\` in the last line scanned.
#[derive(Debug, Default, Clone)]
pub struct Specials {
    /// Bit `i` of word `w`: byte `64 * w + i` is `"` or `\`.
    words: Vec<u64>,
}

impl Specials {
    /// Finds the specials of `line`.
    pub fn scan(&mut self, line: &[u8]) {
        self.words.clear();
        let mut chunks = line.chunks_exact(64);
        for chunk in &mut chunks {
            self.words.push(mask(&words(chunk)));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut padded = [0u8; 64];
            padded.iter_mut().zip(rest).for_each(|(p, b)| *p = *b);
            self.words.push(mask(&words(&padded)));
        }
    }

    /// The first special at or after `from`.
    pub fn next(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = self.words.get(w)? & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.words.get(w)?;
        }
    }
}

/// The 64 bytes of `chunk` (which has 64) as eight little-endian words.
fn words(chunk: &[u8]) -> [u64; 8] {
    std::array::from_fn(|k| {
        let w = chunk.get(8 * k..8 * k + 8).and_then(|w| w.try_into().ok());
        u64::from_le_bytes(w.unwrap_or_default())
    })
}

/// Bit `i`: byte `i` of the 64 is `"` or `\`.
fn mask(words: &[u64; 8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86_64 baseline: every CPU this code runs on has it. The
    // intrinsics are `unsafe` only because they are marked with the target feature.
    return unsafe { sse2::mask(words) };
    #[cfg(not(target_arch = "x86_64"))]
    return swar::mask(words);
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };

    #[target_feature(enable = "sse2")]
    pub fn mask(words: &[u64; 8]) -> u64 {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let mut out = 0u64;
        for (k, pair) in words.chunks_exact(2).enumerate() {
            let (lo, hi) = match pair {
                [lo, hi] => (*lo, *hi),
                _ => (0, 0),
            };
            let v = _mm_set_epi64x(hi as i64, lo as i64);
            let hits = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
            out |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * k);
        }
        out
    }
}

#[cfg(any(not(target_arch = "x86_64"), test))]
mod swar {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// The high bit of every zero byte of `v`, exactly (no borrow between bytes).
    fn zero_bytes(v: u64) -> u64 {
        !(((v & LOW7).wrapping_add(LOW7)) | v | LOW7)
    }

    pub fn mask(words: &[u64; 8]) -> u64 {
        let ones = 0x0101_0101_0101_0101u64;
        let mut out = 0u64;
        for (k, &w) in words.iter().enumerate() {
            let high = zero_bytes(w ^ (ones * u64::from(b'"')))
                | zero_bytes(w ^ (ones * u64::from(b'\\')));
            // The eight high bits gathered into one byte, byte 0's first.
            let bits = ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
            out |= bits << (8 * k);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn naive(line: &[u8], from: usize) -> Option<usize> {
        line.iter()
            .enumerate()
            .skip(from)
            .find(|(_, b)| matches!(b, b'"' | b'\\'))
            .map(|(i, _)| i)
    }

    #[test]
    fn finds_every_quote_and_backslash_and_nothing_else() {
        let mut rng = crate::test_rng::XorShift(7);
        let alphabet = [
            b'"',
            b'\\',
            b'a',
            b'#',
            b']',
            0x22 | 0x80,
            0x5c | 0x80,
            0,
            b'{',
        ];
        let mut s = Specials::default();
        for len in [0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 300] {
            for _ in 0..20 {
                let line: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                s.scan(&line);
                for from in 0..=len + 1 {
                    assert_eq!(s.next(from), naive(&line, from), "{line:?} from {from}");
                }
            }
        }
    }

    #[test]
    fn the_word_at_a_time_mask_is_the_vector_mask() {
        let mut rng = crate::test_rng::XorShift(11);
        for _ in 0..1000 {
            let chunk: [u64; 8] = std::array::from_fn(|_| {
                let mut w = rng.next();
                // Plant the two bytes often enough to matter.
                for b in 0..8 {
                    match rng.below(4) {
                        0 => w = (w & !(0xff << (8 * b))) | (u64::from(b'"') << (8 * b)),
                        1 => w = (w & !(0xff << (8 * b))) | (u64::from(b'\\') << (8 * b)),
                        _ => {}
                    }
                }
                w
            });
            assert_eq!(swar::mask(&chunk), mask(&chunk));
        }
    }
}
