//! A hierarchical occupancy bitmap: which price levels are non-empty.
//!
//! Layer 0 has one bit per level; each bit of layer k+1 says whether the matching 64-bit word of
//! layer k is non-zero. The top layer is a single word. Finding the next set bit at or above
//! (or at or below) an index touches at most two words per layer, so the best level after a
//! level empties is found in O(log64 band) — four layers cover the 2^24-level maximum band —
//! without scanning the band. This is the van Emde Boas-flavoured bitmap used by fast books
//! (and by Linux's scheduler bitmaps); all layers are allocated once, at construction.

const WORD_BITS: usize = 64;

/// Occupancy bits for `len` indices.
#[derive(Debug, Clone)]
pub struct LevelBitmap {
    /// `layers[0]` is the finest; the last layer has exactly one word.
    layers: Vec<Vec<u64>>,
    len: usize,
}

impl LevelBitmap {
    /// An empty bitmap for indices `0 .. len`.
    pub fn new(len: usize) -> LevelBitmap {
        assert!(len > 0);
        let mut layers = Vec::new();
        let mut bits = len;
        loop {
            let words = bits.div_ceil(WORD_BITS);
            layers.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            bits = words;
        }
        LevelBitmap { layers, len }
    }

    /// The heap bytes [`LevelBitmap::new`] allocates for `len` indices (`crate::memory`).
    pub(crate) fn bytes_for(len: usize) -> u64 {
        let mut total = 0u64;
        let mut bits = len.max(1);
        loop {
            let words = bits.div_ceil(WORD_BITS);
            total += (words * std::mem::size_of::<u64>()) as u64;
            if words == 1 {
                return total;
            }
            bits = words;
        }
    }

    /// Number of indices covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no bit is set.
    pub fn is_empty(&self) -> bool {
        self.layers.last().is_some_and(|top| top[0] == 0)
    }

    /// True if bit `i` is set.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.layers[0][i / WORD_BITS] & (1 << (i % WORD_BITS)) != 0
    }

    /// Sets bit `i`.
    #[inline]
    pub fn set(&mut self, i: usize) {
        let mut i = i;
        for layer in self.layers.iter_mut() {
            let word = &mut layer[i / WORD_BITS];
            let was_empty = *word == 0;
            *word |= 1 << (i % WORD_BITS);
            if !was_empty {
                return;
            }
            i /= WORD_BITS;
        }
    }

    /// Clears bit `i`.
    #[inline]
    pub fn clear(&mut self, i: usize) {
        let mut i = i;
        for layer in self.layers.iter_mut() {
            let word = &mut layer[i / WORD_BITS];
            *word &= !(1 << (i % WORD_BITS));
            if *word != 0 {
                return;
            }
            i /= WORD_BITS;
        }
    }

    /// The lowest set index `>= from`, if any.
    #[inline]
    pub fn next_at_or_above(&self, from: usize) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        // Climb until a word holds a set bit at or above the position, then descend taking the
        // lowest set bit of each word.
        let mut i = from;
        let mut layer = 0;
        loop {
            let word = self.layers[layer][i / WORD_BITS] & (!0u64 << (i % WORD_BITS));
            if word != 0 {
                let mut idx = (i / WORD_BITS) * WORD_BITS + word.trailing_zeros() as usize;
                while layer > 0 {
                    layer -= 1;
                    idx = idx * WORD_BITS + self.layers[layer][idx].trailing_zeros() as usize;
                }
                return Some(idx);
            }
            i = i / WORD_BITS + 1;
            layer += 1;
            if layer == self.layers.len() || i >= self.layers[layer].len() * WORD_BITS {
                return None;
            }
        }
    }

    /// The highest set index `<= from`, if any.
    #[inline]
    pub fn next_at_or_below(&self, from: usize) -> Option<usize> {
        let mut i = from.min(self.len - 1);
        let mut layer = 0;
        loop {
            let shift = WORD_BITS - 1 - i % WORD_BITS;
            let word = self.layers[layer][i / WORD_BITS] & (!0u64 >> shift);
            if word != 0 {
                let mut idx =
                    (i / WORD_BITS) * WORD_BITS + (WORD_BITS - 1 - word.leading_zeros() as usize);
                while layer > 0 {
                    layer -= 1;
                    let w = self.layers[layer][idx];
                    idx = idx * WORD_BITS + (WORD_BITS - 1 - w.leading_zeros() as usize);
                }
                return Some(idx);
            }
            if i < WORD_BITS {
                return None;
            }
            i = i / WORD_BITS - 1;
            layer += 1;
            if layer == self.layers.len() {
                return None;
            }
        }
    }

    /// The lowest set index.
    #[inline]
    pub fn first(&self) -> Option<usize> {
        self.next_at_or_above(0)
    }

    /// The highest set index.
    #[inline]
    pub fn last(&self) -> Option<usize> {
        self.next_at_or_below(self.len - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn layers_cover_the_band() {
        assert_eq!(LevelBitmap::new(1).layers.len(), 1);
        assert_eq!(LevelBitmap::new(64).layers.len(), 1);
        assert_eq!(LevelBitmap::new(65).layers.len(), 2);
        assert_eq!(LevelBitmap::new(4096).layers.len(), 2);
        assert_eq!(LevelBitmap::new(4097).layers.len(), 3);
        assert_eq!(LevelBitmap::new(1 << 24).layers.len(), 4);
    }

    #[test]
    fn edges() {
        let mut b = LevelBitmap::new(300_000);
        assert!(b.is_empty());
        assert_eq!(b.first(), None);
        assert_eq!(b.last(), None);
        b.set(0);
        b.set(299_999);
        assert_eq!(b.first(), Some(0));
        assert_eq!(b.last(), Some(299_999));
        assert_eq!(b.next_at_or_above(1), Some(299_999));
        assert_eq!(b.next_at_or_below(299_998), Some(0));
        b.clear(0);
        assert_eq!(b.next_at_or_below(299_998), None);
        b.clear(299_999);
        assert!(b.is_empty());
    }

    proptest! {
        #[test]
        fn matches_a_btreeset(len in 1usize..20_000, ops in prop::collection::vec((any::<bool>(), any::<usize>(), any::<usize>()), 1..300)) {
            let mut b = LevelBitmap::new(len);
            let mut model = BTreeSet::new();
            for (set, i, q) in ops {
                let i = i % len;
                if set { b.set(i); model.insert(i); } else { b.clear(i); model.remove(&i); }
                let q = q % len;
                prop_assert_eq!(b.next_at_or_above(q), model.range(q..).next().copied());
                prop_assert_eq!(b.next_at_or_below(q), model.range(..=q).next_back().copied());
                prop_assert_eq!(b.get(i), model.contains(&i));
                prop_assert_eq!(b.is_empty(), model.is_empty());
            }
        }
    }
}
