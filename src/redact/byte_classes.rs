//! The bytes of a 32-byte block that anchor a built-in detector, as bitmasks (bit `i`: byte
//! `i`). The detectors' scan looks closer only where a mask has a bit, so this is the part of
//! redaction that touches every byte of captured text.
//!
//! Three implementations, chosen at compile time, give the same masks: SSE2 on x86_64 (always
//! present there), SIMD128 on wasm32 when the module is built with it (`make wasm` does), and
//! 64-bit SWAR (eight bytes per word) everywhere else.

/// Which bytes of a block are in each class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    /// `0`–`9`.
    pub digit: u32,
    /// `A` (AWS access key ids).
    pub upper_a: u32,
    /// `b` or `B` (`Bearer`, `Basic`).
    pub b: u32,
    /// `@` (email).
    pub at: u32,
    /// `J` (the `eyJ` of a JWT).
    pub upper_j: u32,
    /// `-` (`-----BEGIN`).
    pub dash: u32,
    /// `c` and `C` (`ccess`, `CCESS`).
    pub c: u32,
    pub upper_c: u32,
}

/// The classes of the 32 bytes of a block, given as four little-endian words (see [`words`]
/// and [`padded_words`]).
pub fn classify(block: [u64; 4]) -> Classes {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86_64 baseline: every CPU this code runs on has it. The
    // intrinsics are `unsafe` only because they are marked with the target feature.
    return unsafe { sse2::classify(block) };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::classify(block);
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    return swar::classify(block);
}

/// The first 32 bytes of `b` (which has at least 32) as four little-endian words.
pub fn words(b: &[u8]) -> [u64; 4] {
    std::array::from_fn(|k| {
        let w = b.get(8 * k..8 * k + 8).and_then(|w| w.try_into().ok());
        u64::from_le_bytes(w.unwrap_or_default())
    })
}

/// The bytes of `b` (fewer than 32) as four little-endian words, padded with zeros. Built in
/// registers: copying into a zeroed buffer and loading it back costs a call and a stall.
pub fn padded_words(b: &[u8]) -> [u64; 4] {
    std::array::from_fn(|k| {
        let chunk = b.get(8 * k..).unwrap_or_default();
        match chunk.get(..8) {
            Some(w) => u64::from_le_bytes(w.try_into().unwrap_or_default()),
            None => chunk.iter().rev().fold(0, |w, &c| (w << 8) | u64::from(c)),
        }
    })
}

/// The classes of a block from those of its two 16-byte halves.
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
fn join(lo: Classes, hi: Classes) -> Classes {
    let join = |l: u32, h: u32| l | (h << 16);
    Classes {
        digit: join(lo.digit, hi.digit),
        upper_a: join(lo.upper_a, hi.upper_a),
        b: join(lo.b, hi.b),
        at: join(lo.at, hi.at),
        upper_j: join(lo.upper_j, hi.upper_j),
        dash: join(lo.dash, hi.dash),
        c: join(lo.c, hi.c),
        upper_c: join(lo.upper_c, hi.upper_c),
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x, _mm_sub_epi8,
    };

    use super::{join, Classes};

    #[target_feature(enable = "sse2")]
    pub fn classify(block: [u64; 4]) -> Classes {
        join(half(vector(block, 0)), half(vector(block, 1)))
    }

    /// Bytes `16 * h` to `16 * h + 16` of `block`.
    #[target_feature(enable = "sse2")]
    fn vector([w0, w1, w2, w3]: [u64; 4], h: usize) -> __m128i {
        let (lo, hi) = if h == 0 { (w0, w1) } else { (w2, w3) };
        _mm_set_epi64x(hi as i64, lo as i64)
    }

    #[target_feature(enable = "sse2")]
    fn half(v: __m128i) -> Classes {
        let splat = |c: u8| _mm_set1_epi8(c as i8);
        let bits = |m: __m128i| _mm_movemask_epi8(m) as u32 & 0xFFFF;
        let eq = |c: u8| bits(_mm_cmpeq_epi8(v, splat(c)));
        let t = _mm_sub_epi8(v, splat(b'0'));
        Classes {
            digit: bits(_mm_cmpeq_epi8(_mm_min_epu8(t, splat(9)), t)),
            upper_a: eq(b'A'),
            b: bits(_mm_cmpeq_epi8(_mm_or_si128(v, splat(0x20)), splat(b'b'))),
            at: eq(b'@'),
            upper_j: eq(b'J'),
            dash: eq(b'-'),
            c: eq(b'c'),
            upper_c: eq(b'C'),
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::{
        i64x2, u8x16_bitmask, u8x16_eq, u8x16_min, u8x16_splat, u8x16_sub, v128, v128_or,
    };

    use super::{join, Classes};

    pub fn classify(block: [u64; 4]) -> Classes {
        join(half(vector(block, 0)), half(vector(block, 1)))
    }

    fn vector([w0, w1, w2, w3]: [u64; 4], h: usize) -> v128 {
        let (lo, hi) = if h == 0 { (w0, w1) } else { (w2, w3) };
        i64x2(lo as i64, hi as i64)
    }

    fn half(v: v128) -> Classes {
        let bits = |m: v128| u32::from(u8x16_bitmask(m));
        let eq = |c: u8| bits(u8x16_eq(v, u8x16_splat(c)));
        let t = u8x16_sub(v, u8x16_splat(b'0'));
        Classes {
            digit: bits(u8x16_eq(u8x16_min(t, u8x16_splat(9)), t)),
            upper_a: eq(b'A'),
            b: bits(u8x16_eq(v128_or(v, u8x16_splat(0x20)), u8x16_splat(b'b'))),
            at: eq(b'@'),
            upper_j: eq(b'J'),
            dash: eq(b'-'),
            c: eq(b'c'),
            upper_c: eq(b'C'),
        }
    }
}

/// Eight bytes per `u64`: each test sets the high bit of the bytes it matches, exactly (no
/// borrow crosses bytes), then the high bits are gathered into one byte of the mask.
#[cfg_attr(
    any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ),
    allow(dead_code)
)]
mod swar {
    use super::Classes;

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// The high bit of each byte of `x` that is `c`.
    fn bytes_eq(x: u64, c: u8) -> u64 {
        let y = x ^ (LO * u64::from(c));
        !(((y & !HI) + !HI) | y) & HI
    }

    /// The high bit of each byte of `x` that is an ASCII digit.
    fn digits_of(x: u64) -> u64 {
        let y = x ^ (LO * 0x30);
        !(((y & !HI) + LO * 0x76) | y) & HI
    }

    /// The high bits of the 8 bytes as 8 bits, byte `k` to bit `k`.
    fn gather(high_bits: u64) -> u32 {
        ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }

    pub fn classify(block: [u64; 4]) -> Classes {
        let mut k = Classes::default();
        for (i, x) in block.into_iter().enumerate() {
            let put = |mask: &mut u32, high_bits: u64| *mask |= gather(high_bits) << (8 * i);
            put(&mut k.digit, digits_of(x));
            put(&mut k.upper_a, bytes_eq(x, b'A'));
            put(&mut k.b, bytes_eq(x | (LO * 0x20), b'b'));
            put(&mut k.at, bytes_eq(x, b'@'));
            put(&mut k.upper_j, bytes_eq(x, b'J'));
            put(&mut k.dash, bytes_eq(x, b'-'));
            put(&mut k.c, bytes_eq(x, b'c'));
            put(&mut k.upper_c, bytes_eq(x, b'C'));
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The classes byte by byte: what every implementation must agree with.
    fn by_byte(block: &[u8; 32]) -> Classes {
        let mut k = Classes::default();
        for (i, &c) in block.iter().enumerate() {
            let bit = 1u32 << i;
            let mask = match c {
                b'0'..=b'9' => &mut k.digit,
                b'A' => &mut k.upper_a,
                b'b' | b'B' => &mut k.b,
                b'@' => &mut k.at,
                b'J' => &mut k.upper_j,
                b'-' => &mut k.dash,
                b'c' => &mut k.c,
                b'C' => &mut k.upper_c,
                _ => continue,
            };
            *mask |= bit;
        }
        k
    }

    #[test]
    fn every_implementation_agrees_with_the_bytes() {
        let mut rng = XorShift::seeded();
        // Every byte value in every position, then random blocks biased to the classes.
        let mut blocks: Vec<[u8; 32]> = (0..=255u8)
            .map(|v| std::array::from_fn(|i| v.wrapping_add(i as u8)))
            .collect();
        let interesting = b"0123456789AbB@J-cC/:. aza\x80\xff\x00";
        for _ in 0..2000 {
            blocks.push(std::array::from_fn(|_| {
                let r = rng.next();
                match interesting.get((r % 40) as usize) {
                    Some(&c) => c,
                    None => (r >> 8) as u8,
                }
            }));
        }
        for block in &blocks {
            let want = by_byte(block);
            assert_eq!(swar::classify(words(block)), want, "swar on {block:?}");
            assert_eq!(classify(words(block)), want, "classify on {block:?}");
        }
    }

    #[test]
    fn padded_words_are_the_bytes_then_zeros() {
        let b: Vec<u8> = (1..=31).collect();
        for n in 0..32 {
            let mut block = [0u8; 32];
            block[..n].copy_from_slice(&b[..n]);
            assert_eq!(padded_words(&b[..n]), words(&block), "{n} bytes");
        }
    }
}
