//! A simple market maker: one bid and one ask around the mid, skewed against inventory.
//!
//! At each candle: `mid` is the middle of the best bid and ask when both are known (without
//! its own quotes' effect only in that a maker usually sets them), else the candle's close.
//! With `inventory = position − target`, the quotes are
//! `bid = mid − half_spread − skew × inventory` and `ask = mid + half_spread − skew ×
//! inventory` (a long inventory lowers both, to sell more and buy less). A side whose fill
//! would take the inventory beyond `max_inventory` is not quoted. Quotes are replaced only when
//! their price changes.

use ringbook_engine::Side;
use serde::Deserialize;

use super::{Ctx, Fixed, Intent, Note, Strategy};
use crate::candle::Candle;

/// The bid's key.
pub const BID: u64 = 1;
/// The ask's key.
pub const ASK: u64 = 2;

/// Parameters (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Ticks from the mid to each quote (≥ 1).
    pub half_spread: i64,
    /// Lots per quote.
    pub qty: u64,
    /// Ticks the quotes move per lot of inventory.
    #[serde(default)]
    pub skew: Fixed,
    /// Largest inventory (lots, either way) a fill may create.
    pub max_inventory: i64,
    /// The inventory it aims at (lots).
    #[serde(default)]
    pub target: i64,
}

/// The strategy's state.
#[derive(Debug)]
pub struct Maker {
    p: Params,
    /// Prices of the live quotes.
    bid: Option<i64>,
    ask: Option<i64>,
}

impl Maker {
    /// Validates the parameters.
    pub fn new(p: Params) -> Result<Maker, String> {
        if p.half_spread < 1 || p.qty == 0 || p.max_inventory < 0 || p.skew.0 < 0 {
            return Err(
                "maker: need half_spread >= 1, qty > 0, max_inventory >= 0, skew >= 0".into(),
            );
        }
        Ok(Maker {
            p,
            bid: None,
            ask: None,
        })
    }

    /// The quotes for a mid and a position: `(bid, ask)`, each `None` when that side stays out.
    pub fn quotes(&self, mid: i64, position: i64, ctx: &Ctx) -> (Option<i64>, Option<i64>) {
        let inv = position - self.p.target;
        let shift = self.p.skew.scale(inv);
        let q = self.p.qty as i64;
        // Saturating: a half spread near i64::MAX wrapped the ask round to the band's bottom
        // (a sell at market every candle: a red-team finding); saturated it is the band's
        // edge, a quote that does not trade.
        let bid = (inv.saturating_add(q) <= self.p.max_inventory).then(|| {
            ctx.market
                .clamp(mid.saturating_sub(self.p.half_spread).saturating_sub(shift))
        });
        let ask = (inv.saturating_sub(q) >= -self.p.max_inventory).then(|| {
            ctx.market
                .clamp(mid.saturating_add(self.p.half_spread).saturating_sub(shift))
        });
        (bid, ask)
    }

    fn requote(&mut self, key: u64, side: Side, want: Option<i64>, out: &mut Vec<Intent>) {
        let live = if side == Side::Buy {
            &mut self.bid
        } else {
            &mut self.ask
        };
        if *live == want {
            return;
        }
        if live.is_some() {
            out.push(Intent::Cancel { key });
        }
        *live = want;
        if let Some(price) = want {
            out.push(Intent::Limit {
                key,
                side,
                price,
                qty: self.p.qty,
            });
        }
    }
}

impl Strategy for Maker {
    fn name(&self) -> &'static str {
        "maker"
    }

    fn on_candle(&mut self, c: &Candle, ctx: &Ctx, out: &mut Vec<Intent>) {
        let mid = match (ctx.best_bid, ctx.best_ask) {
            (Some(b), Some(a)) if b < a => (b + a) / 2,
            _ => c.close,
        };
        let (bid, ask) = self.quotes(mid, ctx.position, ctx);
        self.requote(BID, Side::Buy, bid, out);
        self.requote(ASK, Side::Sell, ask, out);
    }

    fn on_note(&mut self, note: &Note, _ctx: &Ctx, _out: &mut Vec<Intent>) {
        // A quote that is gone is re-placed at the next candle.
        let gone = match *note {
            Note::Fill {
                key, done: true, ..
            }
            | Note::Ended { key, .. } => key,
            _ => return,
        };
        match gone {
            BID => self.bid = None,
            ASK => self.ask = None,
            _ => {}
        }
    }

    fn on_flatten(&mut self) {
        self.bid = None;
        self.ask = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::{candle, ctx};

    fn maker() -> Maker {
        Maker::new(Params {
            half_spread: 2,
            qty: 5,
            skew: Fixed(5_000),
            max_inventory: 10,
            target: 0,
        })
        .unwrap()
    }

    #[test]
    fn quotes_around_mid_with_inventory_skew() {
        let mut m = maker();
        let mut out = Vec::new();
        let mut c = ctx(0, 10_000);
        c.best_bid = Some(99);
        c.best_ask = Some(103);
        // Mid 101, flat: 99 / 103.
        m.on_candle(&candle(0, 100, 100, 100, 100), &c, &mut out);
        assert_eq!(
            out,
            vec![
                Intent::Limit {
                    key: BID,
                    side: Side::Buy,
                    price: 99,
                    qty: 5
                },
                Intent::Limit {
                    key: ASK,
                    side: Side::Sell,
                    price: 103,
                    qty: 5
                },
            ]
        );
        out.clear();
        // Same mid, same position: nothing to do.
        m.on_candle(&candle(1, 100, 100, 100, 100), &c, &mut out);
        assert!(out.is_empty());
        // Long 4: shift 0.5 × 4 = 2 → 97 / 101.
        let mut long = c;
        long.position = 4;
        m.on_candle(&candle(2, 100, 100, 100, 100), &long, &mut out);
        assert_eq!(
            out,
            vec![
                Intent::Cancel { key: BID },
                Intent::Limit {
                    key: BID,
                    side: Side::Buy,
                    price: 97,
                    qty: 5
                },
                Intent::Cancel { key: ASK },
                Intent::Limit {
                    key: ASK,
                    side: Side::Sell,
                    price: 101,
                    qty: 5
                },
            ]
        );
        out.clear();
        // Long 8: another 5 would pass max_inventory 10, so no bid; the ask moves to 99.
        long.position = 8;
        m.on_candle(&candle(3, 100, 100, 100, 100), &long, &mut out);
        assert_eq!(
            out,
            vec![
                Intent::Cancel { key: BID },
                Intent::Cancel { key: ASK },
                Intent::Limit {
                    key: ASK,
                    side: Side::Sell,
                    price: 99,
                    qty: 5
                },
            ]
        );
        out.clear();
        // Without a two-sided book the close is the mid; a filled ask is re-placed.
        m.on_note(
            &Note::Fill {
                key: ASK,
                side: Side::Sell,
                price: 99,
                qty: 5,
                done: true,
            },
            &long,
            &mut out,
        );
        let mut none = ctx(3, 10_000);
        none.best_bid = None;
        m.on_candle(&candle(4, 50, 50, 50, 50), &none, &mut out);
        // shift 1.5 → 1 (rounded towards zero): 47 / 51.
        assert_eq!(
            out,
            vec![
                Intent::Limit {
                    key: BID,
                    side: Side::Buy,
                    price: 47,
                    qty: 5
                },
                Intent::Limit {
                    key: ASK,
                    side: Side::Sell,
                    price: 51,
                    qty: 5
                },
            ]
        );
    }
}
