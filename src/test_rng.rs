//! A small deterministic random generator for the property tests (xorshift64): the same
//! inputs on every run and on every target, natively and in wasm.

pub struct XorShift(pub u64);

impl XorShift {
    /// A generator seeded with the golden-ratio constant.
    pub fn seeded() -> XorShift {
        XorShift(0x9E37_79B9_7F4A_7C15)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
