//! Turtle (Donchian breakouts, long only: a spot venue cannot sell what it does not hold).
//!
//! - **N** is the average true range over `atr` candles: the mean of the first `atr` true
//!   ranges, then Wilder's smoothing `N = ((atr − 1) × N + TR) / atr`, kept in ten-thousandths
//!   of a tick. `TR = max(high − low, |high − prev close|, |low − prev close|)`.
//! - **Entry**: a close above the highest high of the previous `entry` candles (system 1) —
//!   skipped when the last trade was a winner, unless the close is also above the highest high
//!   of the previous `entry_long` candles (system 2). Decisions are taken at candle close and
//!   sent as market orders.
//! - **Unit**: `unit_risk × equity / (N × tick_size)` lots (one N move costs `unit_risk` of equity),
//!   capped by 95% of cash (a market buy locks at its protection price, fee included).
//! - **Pyramiding**: one more unit each time the close reaches the last fill + `add_n × N`, up
//!   to `units_max` units; every add moves the stop for the whole position.
//! - **Stop**: last fill − `stop_n × N`. **Exit**: a close at or below the stop, or below the
//!   lowest low of the previous `exit` candles; the whole position is sold at market.

use std::collections::VecDeque;

use ringbook_engine::Side;
use serde::Deserialize;

use super::{Ctx, Fixed, Intent, Note, Strategy};
use crate::candle::Candle;

/// Unit buys' key.
pub const UNIT: u64 = 1;
/// The exit's key.
pub const EXIT: u64 = 2;

/// Parameters (TOML); the classic values are the defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// System 1 breakout window (20).
    #[serde(default = "d20")]
    pub entry: usize,
    /// System 2 breakout window (55).
    #[serde(default = "d55")]
    pub entry_long: usize,
    /// Exit window (10).
    #[serde(default = "d10")]
    pub exit: usize,
    /// ATR window (20).
    #[serde(default = "d20")]
    pub atr: usize,
    /// Equity risked per N per unit (0.01; not `risk`, which names the `[risk]` table).
    #[serde(default = "d_risk")]
    pub unit_risk: Fixed,
    /// Most units held (4).
    #[serde(default = "d4")]
    pub units_max: u32,
    /// Stop distance in N (2).
    #[serde(default = "d_stop")]
    pub stop_n: Fixed,
    /// Pyramiding step in N (0.5).
    #[serde(default = "d_add")]
    pub add_n: Fixed,
}

fn d20() -> usize {
    20
}
fn d55() -> usize {
    55
}
fn d10() -> usize {
    10
}
fn d4() -> u32 {
    4
}
fn d_risk() -> Fixed {
    Fixed(100)
}
fn d_stop() -> Fixed {
    Fixed(20_000)
}
fn d_add() -> Fixed {
    Fixed(5_000)
}

/// The strategy's state.
#[derive(Debug)]
pub struct Turtle {
    p: Params,
    /// Previous candles' `(high, low)`, oldest first.
    history: VecDeque<(i64, i64)>,
    prev_close: Option<i64>,
    /// True ranges seen so far (until the first N) and their sum.
    tr_count: usize,
    tr_sum: i64,
    /// N in ten-thousandths of a tick.
    n: Option<i64>,
    units: u32,
    /// Last unit's fill price (ticks) and the stop (ten-thousandths of a tick).
    last_fill: i64,
    stop_x: i64,
    /// An order is in flight: no new decision until it is done.
    pending: bool,
    /// Lots filled by the unit order in flight.
    unit_filled: u64,
    last_winner: bool,
}

impl Turtle {
    /// Validates the parameters.
    pub fn new(p: Params) -> Result<Turtle, String> {
        if p.entry == 0 || p.entry_long == 0 || p.exit == 0 || p.atr == 0 {
            return Err("turtle: entry, entry_long, exit and atr must be at least 1".into());
        }
        if p.units_max == 0 || p.unit_risk.0 <= 0 || p.stop_n.0 <= 0 || p.add_n.0 <= 0 {
            return Err("turtle: units_max, unit_risk, stop_n and add_n must be positive".into());
        }
        Ok(Turtle {
            p,
            history: VecDeque::new(),
            prev_close: None,
            tr_count: 0,
            tr_sum: 0,
            n: None,
            units: 0,
            last_fill: 0,
            stop_x: 0,
            pending: false,
            unit_filled: 0,
            last_winner: false,
        })
    }

    /// N in ten-thousandths of a tick, once `atr` candles have been seen.
    pub fn n(&self) -> Option<i64> {
        self.n
    }

    /// Units held.
    pub fn units(&self) -> u32 {
        self.units
    }

    fn update_n(&mut self, c: &Candle) {
        let tr = match self.prev_close {
            Some(pc) => (c.high - c.low)
                .max((c.high - pc).abs())
                .max((c.low - pc).abs()),
            None => c.high - c.low,
        };
        let a = self.p.atr as i64;
        match self.n {
            Some(n) => self.n = Some((n * (a - 1) + tr * Fixed::SCALE) / a),
            None => {
                self.tr_count += 1;
                self.tr_sum += tr;
                if self.tr_count == self.p.atr {
                    self.n = Some(self.tr_sum * Fixed::SCALE / a);
                }
            }
        }
    }

    /// Highest high (or lowest low) of the last `w` candles, when there are that many.
    fn window(&self, w: usize, high: bool) -> Option<i64> {
        if self.history.len() < w {
            return None;
        }
        let it = self.history.iter().skip(self.history.len() - w);
        if high {
            it.map(|&(h, _)| h).max()
        } else {
            it.map(|&(_, l)| l).min()
        }
    }

    fn unit_qty(&self, n: i64, price: i64, ctx: &Ctx) -> u64 {
        let risk = self.p.unit_risk.scale(ctx.equity) as i128;
        let per_lot = n as i128 * ctx.market.tick_size as i128;
        if per_lot <= 0 {
            return 0;
        }
        let qty = (risk * Fixed::SCALE as i128 / per_lot).max(0) as u64;
        // 95% of cash: the market order locks at its protection price, taker fee included.
        qty.min(ctx.market.lots_for(ctx.cash - ctx.cash / 20, price))
    }

    fn decide(&mut self, c: &Candle, ctx: &Ctx, out: &mut Vec<Intent>) {
        let Some(n) = self.n else { return };
        let close_x = c.close * Fixed::SCALE;
        if ctx.position > 0 && self.units > 0 {
            let exit_low = self.window(self.p.exit, false);
            if close_x <= self.stop_x || exit_low.is_some_and(|l| c.close < l) {
                self.last_winner = ctx.avg_price.is_some_and(|a| c.close > a);
                self.pending = true;
                out.push(Intent::Market {
                    key: EXIT,
                    side: Side::Sell,
                    qty: ctx.position as u64,
                    reference: c.close,
                });
            } else if self.units < self.p.units_max
                && close_x >= self.last_fill * Fixed::SCALE + self.p.add_n.scale(n)
            {
                self.buy(n, c.close, ctx, out);
            }
        } else if ctx.position <= 0 {
            let s1 = self.window(self.p.entry, true).is_some_and(|h| c.close > h);
            let s2 = self
                .window(self.p.entry_long, true)
                .is_some_and(|h| c.close > h);
            if s2 || (s1 && !self.last_winner) {
                self.buy(n, c.close, ctx, out);
            } else if s1 {
                // The skipped breakout resets the filter.
                self.last_winner = false;
            }
        }
    }

    fn buy(&mut self, n: i64, price: i64, ctx: &Ctx, out: &mut Vec<Intent>) {
        let qty = self.unit_qty(n, price, ctx);
        if qty > 0 {
            self.pending = true;
            self.unit_filled = 0;
            out.push(Intent::Market {
                key: UNIT,
                side: Side::Buy,
                qty,
                reference: price,
            });
        }
    }

    fn unit_done(&mut self, filled: u64, price: i64) {
        self.pending = false;
        if filled > 0 {
            self.units += 1;
            self.last_fill = price;
            let n = self.n.unwrap_or(0);
            self.stop_x = price * Fixed::SCALE - self.p.stop_n.scale(n);
        }
    }
}

impl Strategy for Turtle {
    fn name(&self) -> &'static str {
        "turtle"
    }

    fn on_candle(&mut self, c: &Candle, ctx: &Ctx, out: &mut Vec<Intent>) {
        self.update_n(c);
        if !self.pending {
            self.decide(c, ctx, out);
        }
        self.history.push_back((c.high, c.low));
        let keep = self.p.entry.max(self.p.entry_long).max(self.p.exit);
        while self.history.len() > keep {
            self.history.pop_front();
        }
        self.prev_close = Some(c.close);
    }

    fn on_note(&mut self, note: &Note, _ctx: &Ctx, _out: &mut Vec<Intent>) {
        match *note {
            Note::Fill {
                key: UNIT,
                price,
                qty,
                done,
                ..
            } => {
                self.unit_filled += qty;
                self.last_fill = price;
                if done {
                    self.unit_done(self.unit_filled, price);
                }
            }
            Note::Ended { key: UNIT, filled } => {
                let last = self.last_fill;
                self.unit_done(filled, last);
            }
            Note::Fill {
                key: EXIT,
                done: true,
                ..
            } => {
                self.units = 0;
                self.pending = false;
            }
            Note::Ended { key: EXIT, .. } => self.pending = false,
            _ => {}
        }
    }

    fn on_flatten(&mut self) {
        self.units = 0;
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::{candle, ctx};

    #[test]
    fn breakout_unit_sizing_pyramid_and_stop() {
        let mut t = Turtle::new(Params {
            entry: 3,
            entry_long: 5,
            exit: 2,
            atr: 2,
            unit_risk: Fixed(100),
            units_max: 2,
            stop_n: Fixed(20_000),
            add_n: Fixed(5_000),
        })
        .unwrap();
        let mut out = Vec::new();
        let flat = ctx(0, 100_000);
        // TRs 4, 4 → N 4.0; then 2 → 3.0; 4 → 3.5.
        t.on_candle(&candle(0, 100, 102, 98, 100), &flat, &mut out);
        t.on_candle(&candle(1, 100, 103, 99, 101), &flat, &mut out);
        assert_eq!(t.n(), Some(40_000));
        t.on_candle(&candle(2, 101, 102, 100, 101), &flat, &mut out);
        assert_eq!(t.n(), Some(30_000));
        // Close 103 is not above the previous 3 highs' 103.
        t.on_candle(&candle(3, 101, 104, 100, 103), &flat, &mut out);
        assert_eq!(t.n(), Some(35_000));
        assert!(out.is_empty(), "{out:?}");
        // TR 3 → N 3.25; close 105 > max(103, 102, 104): a unit of 1% × 100 000 / 3.25 = 307.
        t.on_candle(&candle(4, 103, 106, 103, 105), &flat, &mut out);
        assert_eq!(t.n(), Some(32_500));
        assert_eq!(
            out,
            vec![Intent::Market {
                key: UNIT,
                side: Side::Buy,
                qty: 307,
                reference: 105
            }]
        );
        out.clear();
        t.on_note(
            &Note::Fill {
                key: UNIT,
                side: Side::Buy,
                price: 106,
                qty: 307,
                done: true,
            },
            &flat,
            &mut out,
        );
        assert_eq!(t.units(), 1);
        // Stop 106 − 2 × 3.25 = 99.5. Next: TR 4 → N 3.625; close 108 ≥ 106 + 1.8125: add
        // 1 000 / 3.625 = 275 lots.
        let mut long = ctx(307, 100_000);
        long.avg_price = Some(106);
        t.on_candle(&candle(5, 105, 108, 104, 108), &long, &mut out);
        assert_eq!(
            out,
            vec![Intent::Market {
                key: UNIT,
                side: Side::Buy,
                qty: 275,
                reference: 108
            }]
        );
        out.clear();
        t.on_note(
            &Note::Fill {
                key: UNIT,
                side: Side::Buy,
                price: 108,
                qty: 275,
                done: true,
            },
            &long,
            &mut out,
        );
        assert_eq!(t.units(), 2);
        // Stop 108 − 2 × 3.625 = 100.75; a close at 100 sells everything (582 lots).
        let mut long = ctx(582, 100_000);
        long.avg_price = Some(107);
        t.on_candle(&candle(6, 108, 109, 100, 100), &long, &mut out);
        assert_eq!(
            out,
            vec![Intent::Market {
                key: EXIT,
                side: Side::Sell,
                qty: 582,
                reference: 100
            }]
        );
        out.clear();
        // Pending exit: no new decision until it is done.
        t.on_candle(&candle(7, 100, 120, 100, 120), &long, &mut out);
        assert!(out.is_empty());
        t.on_note(
            &Note::Fill {
                key: EXIT,
                side: Side::Sell,
                price: 100,
                qty: 582,
                done: true,
            },
            &flat,
            &mut out,
        );
        assert_eq!(t.units(), 0);
    }

    #[test]
    fn a_winner_skips_the_next_short_breakout_unless_long_confirms() {
        let mut t = Turtle::new(Params {
            entry: 2,
            entry_long: 4,
            exit: 2,
            atr: 1,
            unit_risk: Fixed(100),
            units_max: 1,
            stop_n: Fixed(20_000),
            add_n: Fixed(5_000),
        })
        .unwrap();
        t.last_winner = true;
        let mut out = Vec::new();
        let flat = ctx(0, 100_000);
        for (i, h) in [110, 105, 104, 100].into_iter().enumerate() {
            t.on_candle(&candle(i as u64, h - 2, h, h - 4, h - 1), &flat, &mut out);
        }
        assert!(out.is_empty());
        // Close 106 beats the last 2 highs (104, 100) but not the last 4 (110): skipped.
        t.on_candle(&candle(4, 101, 107, 100, 106), &flat, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The skip reset the filter: the next system-1 breakout is taken.
        t.on_candle(&candle(5, 106, 109, 105, 108), &flat, &mut out);
        assert!(
            matches!(
                out[..],
                [Intent::Market {
                    key: UNIT,
                    side: Side::Buy,
                    ..
                }]
            ),
            "{out:?}"
        );
    }
}
