//! The risk stage (R): pre-trade checks and locks, and the accounts they guard.
//!
//! Nothing reaches the book that its owner cannot pay for. Before an order is matched, R locks
//! exactly what the order can still spend:
//!
//! - a **sell** locks its base quantity: `qty × lot_size` base units;
//! - a **buy** locks `qty × unit_lock(limit)` quote units, where
//!   `unit_lock(p) = p × tick_size + ceil(p × tick_size × taker_fee_bps / 10 000)` is the most one
//!   lot can cost at limit (or protection) price `p`, taker fee included.
//!
//! Because every lock is `open qty × per-lot amount`, an order's lock is always derivable from
//! its price and open quantity; settlement (S) releases `qty × unit_lock` per fill and refunds
//! what the fill did not use (price improvement, a maker's lower fee, fee rounding), and every
//! cancel refunds `cancelled qty × unit_lock` at once. docs/risk.md has worked examples and the
//! reason for rounding the fee per lot.

pub mod accounts;
#[cfg(any(test, feature = "testing"))]
pub mod reference;
pub(crate) mod stage;

use crate::config::{Config, SymbolConfig};
use crate::types::{CurrencyId, Price, Qty, Side};

/// What R and S need to know about one symbol.
#[derive(Clone, Copy, Debug)]
pub struct RiskSpec {
    /// Base currency (what sells lock).
    pub base: CurrencyId,
    /// Quote currency (what buys lock and fees are paid in).
    pub quote: CurrencyId,
    /// Base units per lot.
    pub lot_size: u64,
    /// Quote units per tick per lot.
    pub tick_size: u64,
    /// Taker fee, bps (the fee a buy's lock provides for).
    pub taker_fee_bps: u32,
}

impl RiskSpec {
    /// The spec of every symbol of a validated config, in id order.
    pub fn all(config: &Config) -> Vec<RiskSpec> {
        config
            .symbols
            .iter()
            .map(|s| RiskSpec::new(config, s))
            .collect()
    }

    fn new(config: &Config, s: &SymbolConfig) -> RiskSpec {
        RiskSpec {
            base: config.currency_id(&s.base).expect("validated config"),
            quote: config.currency_id(&s.quote).expect("validated config"),
            lot_size: s.lot_size,
            tick_size: s.tick_size,
            taker_fee_bps: s.taker_fee_bps,
        }
    }

    /// The most one lot can cost a buyer at `price`, taker fee included (`None` past `u64`).
    #[inline]
    pub fn buy_unit_lock(&self, price: Price) -> Option<u64> {
        // Fast path in u64 (division by a constant becomes a multiply); u128 only when needed.
        if let Some(per_lot) = u64::try_from(price.0)
            .ok()
            .and_then(|p| p.checked_mul(self.tick_size))
        {
            if let Some(scaled) = per_lot.checked_mul(u64::from(self.taker_fee_bps)) {
                return per_lot.checked_add(scaled.div_ceil(10_000));
            }
        }
        let per_lot = u128::try_from(price.0).ok()? * u128::from(self.tick_size);
        let fee = (per_lot * u128::from(self.taker_fee_bps)).div_ceil(10_000);
        u64::try_from(per_lot + fee).ok()
    }

    /// The currency and amount an order of `qty` at `price` locks (`None` past `u64`).
    #[inline]
    pub fn lock(&self, side: Side, price: Price, qty: Qty) -> Option<(CurrencyId, u64)> {
        match side {
            Side::Buy => {
                let unit = self.buy_unit_lock(price)?;
                Some((self.quote, unit.checked_mul(qty.0)?))
            }
            Side::Sell => Some((self.base, self.lot_size.checked_mul(qty.0)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tick_size: u64, lot_size: u64, taker_fee_bps: u32) -> RiskSpec {
        RiskSpec {
            base: CurrencyId(2),
            quote: CurrencyId(0),
            lot_size,
            tick_size,
            taker_fee_bps,
        }
    }

    #[test]
    fn buy_lock_covers_fee_rounded_per_lot() {
        let s = spec(1, 10_000, 10);
        // 15 000 KRW per lot + 15 KRW fee (exact), per lot.
        assert_eq!(
            s.lock(Side::Buy, Price(15_000), Qty(3)),
            Some((CurrencyId(0), 3 * 15_015))
        );
        // 15 001 × 10 bps = 15.001 → 16 per lot.
        assert_eq!(s.buy_unit_lock(Price(15_001)), Some(15_017));
        assert_eq!(
            s.lock(Side::Sell, Price(15_000), Qty(3)),
            Some((CurrencyId(2), 30_000))
        );
    }

    #[test]
    fn lock_overflow_is_none() {
        let s = spec(u64::MAX / 2, 1, 10_000);
        assert_eq!(s.buy_unit_lock(Price(3)), None);
        assert_eq!(
            spec(1, u64::MAX, 0).lock(Side::Sell, Price(1), Qty(2)),
            None
        );
    }
}
