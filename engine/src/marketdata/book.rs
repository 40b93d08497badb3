//! The subscriber's side: an L2 book rebuilt from a snapshot and the updates after it.

use std::collections::BTreeMap;
use std::fmt;

use super::LevelChange;
use crate::types::{Price, Qty, Side};

/// Why an update could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// Updates between the book's `md_seq` and the update's first were missed: resubscribe.
    Gap {
        /// The book's `md_seq`.
        have: u64,
        /// The first `md_seq` the update covers.
        first: u64,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Gap { have, first } => write!(
                f,
                "market-data gap: the book is at md_seq {have}, the update starts at {first}"
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

/// A subscriber's copy of one symbol's depth: `(visible qty, order count)` per price, and the
/// `md_seq` it is current at. Start it from a snapshot ([`L2Book::from_snapshot`]), then
/// [`L2Book::apply`] every update (or a conflated update covering a range) in order.
///
/// This is a client-side convenience (it allocates as levels appear); the builder itself is
/// [`super::MarketData`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Book {
    md_seq: u64,
    bids: BTreeMap<Price, (Qty, u32)>,
    asks: BTreeMap<Price, (Qty, u32)>,
}

impl L2Book {
    /// A book from a snapshot's levels, current at `md_seq`.
    pub fn from_snapshot(md_seq: u64, levels: &[LevelChange]) -> L2Book {
        let mut book = L2Book {
            md_seq,
            ..L2Book::default()
        };
        for c in levels {
            book.set(c);
        }
        book
    }

    /// The `md_seq` the book is current at.
    pub fn md_seq(&self) -> u64 {
        self.md_seq
    }

    fn set(&mut self, c: &LevelChange) {
        let side = match c.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if c.qty.0 == 0 && c.count == 0 {
            side.remove(&c.price);
        } else {
            side.insert(c.price, (c.qty, c.count));
        }
    }

    /// Applies an update covering `first ..= last` (`first == last` for a single update; a
    /// conflated one covers several): the latest state of every level they changed. An update
    /// wholly at or before the book's `md_seq` is ignored (`Ok(false)`); one that starts after
    /// `md_seq + 1` is a gap (the book is left unchanged).
    pub fn apply(
        &mut self,
        first: u64,
        last: u64,
        changes: &[LevelChange],
    ) -> Result<bool, ApplyError> {
        if last <= self.md_seq {
            return Ok(false);
        }
        if first > self.md_seq + 1 {
            return Err(ApplyError::Gap {
                have: self.md_seq,
                first,
            });
        }
        for c in changes {
            self.set(c);
        }
        self.md_seq = last;
        Ok(true)
    }

    /// Levels of one side, best first: `(price, visible qty, orders)`.
    pub fn levels(&self, side: Side) -> Vec<(Price, Qty, u32)> {
        let map = |(p, (q, n)): (&Price, &(Qty, u32))| (*p, *q, *n);
        match side {
            Side::Buy => self.bids.iter().rev().map(map).collect(),
            Side::Sell => self.asks.iter().map(map).collect(),
        }
    }

    /// Best bid `(price, visible qty)`.
    pub fn best_bid(&self) -> Option<(Price, Qty)> {
        self.bids.iter().next_back().map(|(p, (q, _))| (*p, *q))
    }

    /// Best ask `(price, visible qty)`.
    pub fn best_ask(&self) -> Option<(Price, Qty)> {
        self.asks.iter().next().map(|(p, (q, _))| (*p, *q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(side: Side, price: i64, qty: u64, count: u32) -> LevelChange {
        LevelChange {
            side,
            price: Price(price),
            qty: Qty(qty),
            count,
        }
    }

    #[test]
    fn updates_apply_in_order_and_gaps_are_refused() {
        let mut b = L2Book::from_snapshot(3, &[lc(Side::Buy, 10, 5, 1), lc(Side::Sell, 12, 7, 2)]);
        assert_eq!(b.apply(3, 3, &[lc(Side::Buy, 10, 0, 0)]), Ok(false));
        assert_eq!(b.best_bid(), Some((Price(10), Qty(5))));
        assert_eq!(
            b.apply(5, 5, &[]),
            Err(ApplyError::Gap { have: 3, first: 5 })
        );
        assert_eq!(
            b.apply(4, 4, &[lc(Side::Buy, 10, 0, 0), lc(Side::Buy, 9, 1, 1)]),
            Ok(true)
        );
        // A conflated update overlapping what the book has.
        assert_eq!(b.apply(3, 6, &[lc(Side::Sell, 11, 2, 1)]), Ok(true));
        assert_eq!(b.md_seq(), 6);
        assert_eq!(b.levels(Side::Buy), vec![(Price(9), Qty(1), 1)]);
        assert_eq!(
            b.levels(Side::Sell),
            vec![(Price(11), Qty(2), 1), (Price(12), Qty(7), 2)]
        );
        assert_eq!(b.best_ask(), Some((Price(11), Qty(2))));
    }
}
