//! Grid: `levels` prices evenly spaced from `low` to `high` (step `(high − low) / (levels − 1)`
//! ticks, rounded down; the top level is `low + (levels − 1) × step`).
//!
//! Starting from cash: at the first candle, a buy of `qty` rests at every level below its
//! close. When the buy at level `i` fills completely, a sell of what it bought rests one level
//! up (`i + 1`); when that sell fills, the buy at level `i` is re-armed. Each filled pair earns
//! one step minus fees. A partly filled order that is cancelled still gets its counter-order
//! for the part that filled.
//!
//! Keys: `2 × level` for a level's buy, `2 × level + 1` for its sell.

use std::collections::BTreeMap;

use ringbook_engine::Side;
use serde::Deserialize;

use super::{Ctx, Intent, Note, Strategy};
use crate::candle::Candle;

/// Parameters (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Lowest level (ticks).
    pub low: i64,
    /// Highest level (ticks).
    pub high: i64,
    /// Number of levels (≥ 2).
    pub levels: u32,
    /// Lots per order.
    pub qty: u64,
}

/// The strategy's state.
#[derive(Debug)]
pub struct Grid {
    low: i64,
    step: i64,
    levels: u32,
    qty: u64,
    started: bool,
    /// Live orders: key → lots filled so far.
    live: BTreeMap<u64, u64>,
}

/// The key of a level's buy or sell.
pub fn key(level: u32, side: Side) -> u64 {
    2 * level as u64 + u64::from(side == Side::Sell)
}

impl Grid {
    /// Validates the parameters.
    pub fn new(p: Params) -> Result<Grid, String> {
        if p.levels < 2 {
            return Err(format!(
                "grid: levels must be at least 2 (got {})",
                p.levels
            ));
        }
        if p.low <= 0 || p.high <= p.low {
            return Err(format!(
                "grid: need 0 < low < high (got low {}, high {})",
                p.low, p.high
            ));
        }
        let step = (p.high - p.low) / (p.levels as i64 - 1);
        if step < 1 {
            return Err(format!(
                "grid: {} levels do not fit between {} and {} (step under one tick)",
                p.levels, p.low, p.high
            ));
        }
        if p.qty == 0 {
            return Err("grid: qty must be positive".into());
        }
        Ok(Grid {
            low: p.low,
            step,
            levels: p.levels,
            qty: p.qty,
            started: false,
            live: BTreeMap::new(),
        })
    }

    /// Level `i`'s price.
    pub fn price(&self, level: u32) -> i64 {
        self.low + level as i64 * self.step
    }

    fn place(&mut self, level: u32, side: Side, qty: u64, out: &mut Vec<Intent>) {
        let k = key(level, side);
        if level >= self.levels || qty == 0 || self.live.contains_key(&k) {
            return;
        }
        self.live.insert(k, 0);
        out.push(Intent::Limit {
            key: k,
            side,
            price: self.price(level),
            qty,
        });
    }

    /// The counter-order for `filled` lots of the order with key `k`.
    fn counter(&mut self, k: u64, filled: u64, out: &mut Vec<Intent>) {
        let level = (k / 2) as u32;
        if k.is_multiple_of(2) {
            self.place(level + 1, Side::Sell, filled, out);
        } else if level > 0 {
            self.place(level - 1, Side::Buy, filled, out);
        }
    }
}

impl Strategy for Grid {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn on_candle(&mut self, c: &Candle, _ctx: &Ctx, out: &mut Vec<Intent>) {
        if self.started {
            return;
        }
        self.started = true;
        for level in 0..self.levels {
            if self.price(level) < c.close {
                self.place(level, Side::Buy, self.qty, out);
            }
        }
    }

    fn on_note(&mut self, note: &Note, _ctx: &Ctx, out: &mut Vec<Intent>) {
        match *note {
            Note::Fill { key, qty, done, .. } => {
                let Some(filled) = self.live.get_mut(&key) else {
                    return;
                };
                *filled += qty;
                if done {
                    let filled = *filled;
                    self.live.remove(&key);
                    self.counter(key, filled, out);
                }
            }
            Note::Ended { key, filled } => {
                if self.live.remove(&key).is_some() {
                    self.counter(key, filled, out);
                }
            }
        }
    }

    fn on_flatten(&mut self) {
        self.live.clear();
        self.started = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::{candle, ctx};

    fn grid() -> Grid {
        Grid::new(Params {
            low: 100,
            high: 140,
            levels: 5,
            qty: 2,
        })
        .unwrap()
    }

    #[test]
    fn buys_below_then_sells_one_level_up_and_rearms() {
        let mut g = grid();
        let mut out = Vec::new();
        let c = ctx(0, 10_000);
        g.on_candle(&candle(0, 130, 131, 122, 125), &c, &mut out);
        // Levels 100, 110, 120, 130, 140; close 125: buys at 100, 110, 120.
        assert_eq!(
            out,
            vec![
                Intent::Limit {
                    key: 0,
                    side: Side::Buy,
                    price: 100,
                    qty: 2
                },
                Intent::Limit {
                    key: 2,
                    side: Side::Buy,
                    price: 110,
                    qty: 2
                },
                Intent::Limit {
                    key: 4,
                    side: Side::Buy,
                    price: 120,
                    qty: 2
                },
            ]
        );
        out.clear();
        g.on_candle(&candle(60_000, 125, 126, 119, 121), &c, &mut out);
        assert!(out.is_empty(), "the grid is laid once");
        // The 120 buy fills in two parts; the sell at 130 comes after the second.
        g.on_note(
            &Note::Fill {
                key: 4,
                side: Side::Buy,
                price: 120,
                qty: 1,
                done: false,
            },
            &c,
            &mut out,
        );
        assert!(out.is_empty());
        g.on_note(
            &Note::Fill {
                key: 4,
                side: Side::Buy,
                price: 120,
                qty: 1,
                done: true,
            },
            &c,
            &mut out,
        );
        assert_eq!(
            out,
            vec![Intent::Limit {
                key: 7,
                side: Side::Sell,
                price: 130,
                qty: 2
            }]
        );
        out.clear();
        g.on_note(
            &Note::Fill {
                key: 7,
                side: Side::Sell,
                price: 130,
                qty: 2,
                done: true,
            },
            &c,
            &mut out,
        );
        assert_eq!(
            out,
            vec![Intent::Limit {
                key: 4,
                side: Side::Buy,
                price: 120,
                qty: 2
            }]
        );
        out.clear();
        // A cancelled buy that filled 1 gets a sell of 1; one that filled nothing gets none.
        g.on_note(&Note::Ended { key: 2, filled: 1 }, &c, &mut out);
        assert_eq!(
            out,
            vec![Intent::Limit {
                key: 5,
                side: Side::Sell,
                price: 120,
                qty: 1
            }]
        );
        out.clear();
        g.on_note(&Note::Ended { key: 0, filled: 0 }, &c, &mut out);
        assert!(out.is_empty());
        // The top level's sell has no level above: a buy at 140 filling places nothing.
        assert_eq!(g.price(4), 140);
    }

    #[test]
    fn uneven_range_rounds_the_step_down() {
        let g = Grid::new(Params {
            low: 100,
            high: 145,
            levels: 4,
            qty: 1,
        })
        .unwrap();
        assert_eq!((g.price(0), g.price(1), g.price(3)), (100, 115, 145));
        assert!(Grid::new(Params {
            low: 100,
            high: 102,
            levels: 4,
            qty: 1
        })
        .is_err());
        assert!(Grid::new(Params {
            low: 100,
            high: 90,
            levels: 4,
            qty: 1
        })
        .is_err());
        assert!(Grid::new(Params {
            low: 100,
            high: 190,
            levels: 1,
            qty: 1
        })
        .is_err());
    }
}
