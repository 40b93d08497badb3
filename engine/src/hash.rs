//! `state_hash()`: a 64-bit FNV-1a digest of the engine's canonical state.
//!
//! Both the fast engine and the reference model feed the same canonical sequence of fields
//! (see [`crate::book::OrderView`] and `Matcher::state_hash`), so equal states hash equal across
//! implementations, processes and runs. FNV-1a is not cryptographic; it is a determinism check,
//! not a tamper seal (the journal's CRC32C and snapshot checksums cover integrity).

use std::fmt;

/// A finished state digest; prints as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateHash(pub u64);

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An FNV-1a hasher over little-endian integers.
#[derive(Clone, Copy, Debug)]
pub struct StateHasher(u64);

impl Default for StateHasher {
    fn default() -> StateHasher {
        StateHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StateHasher {
    /// Mixes in a `u64`, byte by byte, little-endian.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Mixes in an `i64`.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64)
    }

    /// The digest.
    pub fn finish(self) -> StateHash {
        StateHash(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_order_sensitivity() {
        // FNV-1a of the empty input is the offset basis.
        assert_eq!(
            StateHasher::default().finish().to_string(),
            "cbf29ce484222325"
        );
        let (mut a, mut b) = (StateHasher::default(), StateHasher::default());
        a.u64(1);
        a.u64(2);
        b.u64(2);
        b.u64(1);
        assert_ne!(a.finish(), b.finish());
    }
}
