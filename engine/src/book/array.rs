//! The fast book of one symbol: four arrays of price levels indexed by price.
//!
//! Level `i` of every side holds price `price_min + i` ticks. Resting orders sit in `bids` and
//! `asks`; untriggered stops sit in `buy_stops` / `sell_stops`, keyed by stop price, so the next
//! stop to trigger is the best level of its side — the same structure, reused.

use super::levels::{Priority, SideLevels};
use crate::config::SymbolConfig;
use crate::types::{Price, Side};

/// Per-symbol constants the hot path needs, copied out of the config.
#[derive(Clone, Copy, Debug)]
pub struct SymbolSpec {
    /// Lowest price in the band (level 0).
    pub price_min: i64,
    /// Highest price in the band.
    pub price_max: i64,
    /// Quote minimal units per tick per lot.
    pub tick_size: u64,
    /// Largest order quantity.
    pub max_order_qty: u64,
    /// Maker fee, bps.
    pub maker_fee_bps: u32,
    /// Taker fee, bps.
    pub taker_fee_bps: u32,
}

/// One symbol's book.
#[derive(Debug)]
pub struct ArrayBook {
    /// Constants.
    pub spec: SymbolSpec,
    /// Resting buys.
    pub bids: SideLevels,
    /// Resting sells.
    pub asks: SideLevels,
    /// Waiting buy stops (trigger when last ≥ stop: lowest first).
    pub buy_stops: SideLevels,
    /// Waiting sell stops (trigger when last ≤ stop: highest first).
    pub sell_stops: SideLevels,
    /// Price of the last trade, if any.
    pub last_price: Option<Price>,
    /// Id of the last trade (0 before the first): trade ids are dense per symbol.
    pub last_trade_id: u64,
}

impl ArrayBook {
    /// The heap bytes [`ArrayBook::new`] allocates for the symbol's band: four sides (bids,
    /// asks, and the two sides of stops), each a level per tick (`crate::memory`).
    pub(crate) fn bytes_for(cfg: &SymbolConfig) -> u64 {
        4 * SideLevels::bytes_for(cfg.price_levels() as usize)
    }

    /// An empty book covering the symbol's band.
    pub fn new(cfg: &SymbolConfig) -> ArrayBook {
        let len = cfg.price_levels() as usize;
        ArrayBook {
            spec: SymbolSpec {
                price_min: cfg.price_min,
                price_max: cfg.price_max,
                tick_size: cfg.tick_size,
                max_order_qty: cfg.max_order_qty,
                maker_fee_bps: cfg.maker_fee_bps,
                taker_fee_bps: cfg.taker_fee_bps,
            },
            bids: SideLevels::new(len, Priority::Highest),
            asks: SideLevels::new(len, Priority::Lowest),
            buy_stops: SideLevels::new(len, Priority::Lowest),
            sell_stops: SideLevels::new(len, Priority::Highest),
            last_price: None,
            last_trade_id: 0,
        }
    }

    /// The level index of an in-band price.
    #[inline]
    pub fn idx(&self, price: Price) -> u32 {
        debug_assert!(price.0 >= self.spec.price_min && price.0 <= self.spec.price_max);
        (price.0 - self.spec.price_min) as u32
    }

    /// The price of level `idx`.
    #[inline]
    pub fn price(&self, idx: u32) -> Price {
        Price(self.spec.price_min + i64::from(idx))
    }

    /// True if `price` is in the band.
    #[inline]
    pub fn in_band(&self, price: Price) -> bool {
        price.0 >= self.spec.price_min && price.0 <= self.spec.price_max
    }

    /// The resting side an order of `side` joins.
    #[inline]
    pub fn own(&mut self, side: Side) -> &mut SideLevels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The resting side an order of `side` trades against.
    #[inline]
    pub fn opposite(&self, side: Side) -> &SideLevels {
        match side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        }
    }

    /// The stop side a stop order of `side` waits in.
    #[inline]
    pub fn stops(&mut self, side: Side) -> &mut SideLevels {
        match side {
            Side::Buy => &mut self.buy_stops,
            Side::Sell => &mut self.sell_stops,
        }
    }

    /// True if an order of `side` at `limit` would trade with the best opposite level.
    #[inline]
    pub fn crosses(&self, side: Side, limit: Price) -> bool {
        match self.opposite(side).best() {
            None => false,
            Some(idx) => {
                let p = self.price(idx);
                match side {
                    Side::Buy => p <= limit,
                    Side::Sell => p >= limit,
                }
            }
        }
    }
}
