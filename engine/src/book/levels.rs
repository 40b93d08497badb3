//! One side of one symbol's book: an array of price levels indexed by price, each a FIFO of
//! pool slots, with a [`LevelBitmap`] of the non-empty ones and the best level cached.
//!
//! The same structure holds resting orders (keyed by limit price) and waiting stop orders
//! (keyed by stop price): bids and sell stops are served highest first, asks and buy stops
//! lowest first.

use super::bitmap::LevelBitmap;
use super::pool::{OrderPool, NIL};

/// A price level: a FIFO of orders and the quantities they show and hold.
#[derive(Clone, Copy, Debug)]
pub struct Level {
    /// Oldest order (first to trade), or `NIL`.
    pub head: u32,
    /// Newest order, or `NIL`.
    pub tail: u32,
    /// Sum of the orders' visible quantities (what market data shows).
    pub visible: u64,
    /// Sum of the orders' open quantities, hidden iceberg parts included.
    pub total: u64,
}

const EMPTY_LEVEL: Level = Level {
    head: NIL,
    tail: NIL,
    visible: 0,
    total: 0,
};

/// Which end of the price range is served first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Highest index first (bids, sell stops).
    Highest,
    /// Lowest index first (asks, buy stops).
    Lowest,
}

/// Price levels of one side.
#[derive(Debug)]
pub struct SideLevels {
    levels: Vec<Level>,
    occupied: LevelBitmap,
    priority: Priority,
    /// Index of the best non-empty level, or `NIL`.
    best: u32,
}

impl SideLevels {
    /// The heap bytes [`SideLevels::new`] allocates for `len` levels (`crate::memory`).
    pub(crate) fn bytes_for(len: usize) -> u64 {
        (len * std::mem::size_of_val(&EMPTY_LEVEL)) as u64 + LevelBitmap::bytes_for(len)
    }

    /// `len` empty levels.
    pub fn new(len: usize, priority: Priority) -> SideLevels {
        SideLevels {
            levels: vec![EMPTY_LEVEL; len],
            occupied: LevelBitmap::new(len),
            priority,
            best: NIL,
        }
    }

    /// The best non-empty level's index.
    #[inline]
    pub fn best(&self) -> Option<u32> {
        (self.best != NIL).then_some(self.best)
    }

    /// The level at `idx`.
    #[inline]
    pub fn level(&self, idx: u32) -> &Level {
        &self.levels[idx as usize]
    }

    /// The next non-empty level after `idx` in priority order.
    #[inline]
    pub fn next_after(&self, idx: u32) -> Option<u32> {
        let found = match self.priority {
            Priority::Highest => {
                if idx == 0 {
                    None
                } else {
                    self.occupied.next_at_or_below(idx as usize - 1)
                }
            }
            Priority::Lowest => self.occupied.next_at_or_above(idx as usize + 1),
        };
        found.map(|i| i as u32)
    }

    /// Appends `slot` at the back of level `idx`.
    #[inline]
    pub fn push_back(&mut self, pool: &mut OrderPool, idx: u32, slot: u32) {
        let (visible, leaves) = (pool[slot].visible, pool[slot].leaves);
        self.push_back_sized(pool, idx, slot, visible, leaves);
    }

    /// [`SideLevels::push_back`] for a caller that has just written the order's `visible` and
    /// `leaves` and passes them on: read back from the slot, the two fields become one 16-byte
    /// load over two 8-byte stores still in the store buffer, which cannot be forwarded and
    /// waits for them to reach the cache (a store-forwarding stall).
    #[inline]
    pub fn push_back_sized(
        &mut self,
        pool: &mut OrderPool,
        idx: u32,
        slot: u32,
        visible: u64,
        leaves: u64,
    ) {
        debug_assert_eq!((visible, leaves), (pool[slot].visible, pool[slot].leaves));
        let level = &mut self.levels[idx as usize];
        let tail = level.tail;
        pool[slot].prev = tail;
        pool[slot].next = NIL;
        if tail == NIL {
            level.head = slot;
            self.occupied.set(idx as usize);
            let better = match self.priority {
                Priority::Highest => self.best == NIL || idx > self.best,
                Priority::Lowest => self.best == NIL || idx < self.best,
            };
            if better {
                self.best = idx;
            }
        } else {
            pool[tail].next = slot;
        }
        level.tail = slot;
        level.visible += visible;
        level.total += leaves;
    }

    /// Unlinks `slot` from level `idx` (any position), keeping the level's sums right.
    #[inline]
    pub fn remove(&mut self, pool: &mut OrderPool, idx: u32, slot: u32) {
        let (prev, next, visible, leaves) = {
            let o = &pool[slot];
            (o.prev, o.next, o.visible, o.leaves)
        };
        let level = &mut self.levels[idx as usize];
        if prev == NIL {
            level.head = next;
        } else {
            pool[prev].next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            pool[next].prev = prev;
        }
        level.visible -= visible;
        level.total -= leaves;
        if level.head == NIL {
            debug_assert!(level.visible == 0 && level.total == 0);
            self.occupied.clear(idx as usize);
            if self.best == idx {
                self.best = self.next_after(idx).unwrap_or(NIL);
            }
        }
    }

    /// Records that an order at level `idx` lost `visible` shown and `total` open quantity in
    /// place (a fill or a reduce); the caller keeps the order linked.
    #[inline]
    pub fn reduce(&mut self, idx: u32, visible: u64, total: u64) {
        let level = &mut self.levels[idx as usize];
        level.visible -= visible;
        level.total -= total;
    }

    /// Non-empty levels in priority order, starting with the best.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Level)> + '_ {
        let mut cur = self.best();
        std::iter::from_fn(move || {
            let idx = cur?;
            cur = self.next_after(idx);
            Some((idx, &self.levels[idx as usize]))
        })
    }
}

/// Bytes of a price level, as docs/architecture.md and docs/configuration.md state (the test
/// `memory_sizes_are_the_ones_the_docs_state` in `book/mod.rs` holds the documents to it).
pub(crate) const LEVEL_BYTES: usize = 24;
const _: () = assert!(std::mem::size_of::<Level>() == LEVEL_BYTES);
