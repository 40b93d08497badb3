//! Order book data structures: the fast array-indexed book and the reference model.
//!
//! - `array`: per symbol, four `levels::SideLevels` (bids, asks, buy stops, sell stops), each
//!   a pre-allocated array of price levels indexed by `price − price_min`, with a
//!   [`bitmap::LevelBitmap`] so the next non-empty level is found without scanning the band.
//! - `pool`: every live order in one pre-allocated slab, linked intrusively into its level's
//!   FIFO and its owner's list.
//! - `index`: `(user, client order id) → slot` for cancels and amends, chained through the
//!   pool, its buckets in use following the live orders (linear hashing).
//! - `reference` (with the `testing` feature): a deliberately simple model (BTreeMap +
//!   VecDeque) with the same semantics, used by property tests to hold the fast book honest.
//!
//! Public: [`OrderView`], [`BookSection`], [`checked_notional`] and [`bitmap::LevelBitmap`]; the
//! rest is the engine's own.

pub(crate) mod array;
pub mod bitmap;
pub(crate) mod huge;
pub(crate) mod index;
#[cfg(feature = "testing")]
pub mod levels;
#[cfg(not(feature = "testing"))]
pub(crate) mod levels;
#[cfg(feature = "testing")]
pub mod pool;
#[cfg(not(feature = "testing"))]
pub(crate) mod pool;
#[cfg(any(test, feature = "testing"))]
pub mod reference;

use crate::hash::StateHasher;
use crate::types::{
    ClientOrderId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId, TimeInForce, UserId,
};

/// Where a live order waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BookSection {
    /// Resting buy orders, best (highest) price first, FIFO within a level.
    Bids,
    /// Resting sell orders, best (lowest) price first, FIFO within a level.
    Asks,
    /// Untriggered buy stops, lowest stop price first (the order they trigger in).
    BuyStops,
    /// Untriggered sell stops, highest stop price first.
    SellStops,
}

impl BookSection {
    /// All sections in canonical order.
    pub const ALL: [BookSection; 4] = [
        BookSection::Bids,
        BookSection::Asks,
        BookSection::BuyStops,
        BookSection::SellStops,
    ];
}

/// A read-only copy of a live order, for queries, snapshots and the state hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Engine id.
    pub order_id: OrderId,
    /// Owner.
    pub user: UserId,
    /// Owner's id.
    pub client_order_id: ClientOrderId,
    /// Symbol.
    pub symbol: SymbolId,
    /// Side.
    pub side: Side,
    /// Type as placed.
    pub order_type: OrderType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit or protection price.
    pub price: Price,
    /// Stop price (0 if none).
    pub stop_price: Price,
    /// Open quantity.
    pub leaves_qty: Qty,
    /// Shown quantity.
    pub visible_qty: Qty,
    /// Filled so far.
    pub filled_qty: Qty,
    /// Iceberg display size (0 if none).
    pub display_qty: Qty,
    /// Post-only.
    pub post_only: bool,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Expiry time of a GTD or DAY order, Unix nanoseconds (0 for the others).
    pub expire_at: u64,
}

impl OrderView {
    /// Feeds every field, in a fixed order, to the state hasher.
    pub(crate) fn hash_into(&self, h: &mut StateHasher) {
        h.u64(self.order_id.0);
        h.u64(u64::from(self.user.0));
        h.u64(self.client_order_id.0);
        h.u64(u64::from(self.symbol.0));
        h.u64(self.side as u64);
        h.u64(self.order_type as u64);
        h.u64(self.tif as u64);
        h.i64(self.price.0);
        h.i64(self.stop_price.0);
        h.u64(self.leaves_qty.0);
        h.u64(self.visible_qty.0);
        h.u64(self.filled_qty.0);
        h.u64(self.display_qty.0);
        h.u64(u64::from(self.post_only));
        h.u64(self.stp as u64);
        // Only orders that expire have an expiry (their time in force, hashed above, says so),
        // so the digest of every other order is what it was before expiry existed.
        if self.tif.expires() {
            h.u64(self.expire_at);
        }
    }
}

/// Fee in quote minimal units: `ceil(notional × bps / 10 000)`, rounded up in the fee
/// collector's favour. Both implementations call this one function so fee rounding has a single
/// definition.
#[inline]
pub(crate) fn fee(price: Price, qty: u64, tick_size: u64, bps: u32) -> u64 {
    // Fast path: when notional × bps fits in u64 the division by a constant compiles to a
    // multiply; the u128 path (a library call) is only for very large notionals.
    if let Some(scaled) = (price.0 as u64)
        .checked_mul(qty)
        .and_then(|n| n.checked_mul(tick_size))
        .and_then(|n| n.checked_mul(u64::from(bps)))
    {
        return scaled.div_ceil(10_000);
    }
    let notional = price.0 as u128 * u128::from(qty) * u128::from(tick_size);
    let fee = (notional * u128::from(bps)).div_ceil(10_000);
    debug_assert!(fee <= u128::from(u64::MAX));
    fee as u64
}

/// `price × qty × tick_size` if it fits in `i64` (the engine's notional range).
#[inline]
pub fn checked_notional(price: Price, qty: Qty, tick_size: u64) -> Option<i64> {
    let n = i128::from(price.0)
        .checked_mul(i128::from(qty.0))?
        .checked_mul(i128::from(tick_size))?;
    i64::try_from(n).ok()
}

#[cfg(test)]
mod doc_tests {
    use super::index::HEAD_BYTES;
    use super::levels::LEVEL_BYTES;
    use super::pool::ORDER_BYTES;
    use crate::config::Config;
    use ringbook_testkit::docs::Doc;

    /// Megabytes (10^6), rounded.
    fn mb(bytes: usize) -> usize {
        (bytes + 500_000) / 1_000_000
    }

    /// The memory sizes docs/architecture.md and docs/configuration.md state are the code's:
    /// the per-item sizes, and the default config's totals computed from them.
    #[test]
    fn memory_sizes_are_the_ones_the_docs_state() {
        let doc = Doc::new(
            "docs/architecture.md",
            include_str!("../../../docs/architecture.md"),
        );
        doc.assert_says(&format!("of {ORDER_BYTES}-byte slots"));
        doc.assert_says(&format!(
            "`next_pow2(orders_max) × {ORDER_BYTES} B` for the pool"
        ));
        doc.assert_says(&format!(
            "`2 × orders_max × {HEAD_BYTES} B` (rounded to a power of two) for the index"
        ));
        doc.assert_says(&format!("`4 × band × {LEVEL_BYTES} B` plus bitmaps"));

        let doc = Doc::new(
            "docs/configuration.md",
            include_str!("../../../docs/configuration.md"),
        );
        doc.assert_says(&format!(
            "| order pool | `next_pow2(orders_max) × {ORDER_BYTES} B` |"
        ));
        doc.assert_says(&format!(
            "| client-order-id index | `next_pow2(2 × orders_max) × {HEAD_BYTES} B` |"
        ));
        doc.assert_says(&format!(
            "`4 sides × (price_max − price_min + 1) × {LEVEL_BYTES} B`"
        ));
        // The default config's figures.
        let config = Config::default();
        let orders = config.capacity.orders_max as usize;
        let pool = orders.next_power_of_two() * ORDER_BYTES;
        let index = (2 * orders).next_power_of_two() * HEAD_BYTES;
        assert_eq!(
            index % (1 << 20),
            0,
            "the default index is a whole number of MiB"
        );
        let levels: usize = config
            .symbols
            .iter()
            .map(|s| 4 * (s.price_max - s.price_min + 1) as usize * LEVEL_BYTES)
            .sum();
        let mib = |b: usize| b >> 20;
        let notional = orders.next_power_of_two() * 8;
        doc.assert_says(&format!(
            "({} MiB pool, {} MiB index, {} MiB notional,",
            mib(pool),
            mib(index),
            mib(notional)
        ));
        doc.assert_says(&format!("about {} MiB levels)", mib(levels + 512 * 1024)));
        doc.assert_says(&format!(
            "| filled notional per order slot | `next_pow2(orders_max) × {} B` |",
            std::mem::size_of::<u64>()
        ));
        // The totals are what `serve` logs (`crate::memory::Footprint`, the check before start).
        let f = crate::memory::Footprint::of(&config);
        let engine = crate::memory::Bytes(f.engine()).to_string();
        let builder = crate::memory::Bytes(f.market_data()).to_string();
        doc.assert_says(&format!("The default config comes to {engine} per engine"));
        doc.assert_says(&format!(
            "1 engine(s) × {engine}, 1\nmarket-data builder(s) × {builder}"
        ));
        doc.assert_says(&format!("{builder} in\nall)."));
        // A million live orders.
        let orders = 1 << 20;
        doc.assert_says(&format!(
            "`orders_max = {orders}`: ~{} MB pool + {} MB index",
            mb(orders * ORDER_BYTES),
            mb((2 * orders).next_power_of_two() * HEAD_BYTES)
        ));
    }
}
