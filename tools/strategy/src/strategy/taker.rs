//! A noise taker for demos, load and tests: every `every` candles it buys or sells `qty` at
//! market, the side drawn from a seeded xorshift generator (the same seed, the same trades),
//! never letting its position pass `max_inventory` lots either way.

use ringbook_engine::Side;
use serde::Deserialize;

use super::{Ctx, Intent, Note, Strategy};
use crate::candle::Candle;

/// Its orders' key.
pub const TAKE: u64 = 1;

/// Parameters (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Generator seed (non-zero).
    pub seed: u64,
    /// Lots per order.
    pub qty: u64,
    /// Trade every this many candles (default 1).
    #[serde(default = "one")]
    pub every: u64,
    /// Largest position either way (lots).
    pub max_inventory: i64,
}

fn one() -> u64 {
    1
}

/// The strategy's state.
#[derive(Debug)]
pub struct Taker {
    p: Params,
    state: u64,
    count: u64,
}

impl Taker {
    /// Validates the parameters.
    pub fn new(p: Params) -> Result<Taker, String> {
        if p.seed == 0 || p.qty == 0 || p.every == 0 {
            return Err("taker: seed, qty and every must be non-zero".into());
        }
        Ok(Taker {
            state: p.seed,
            p,
            count: 0,
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

impl Strategy for Taker {
    fn name(&self) -> &'static str {
        "taker"
    }

    fn on_candle(&mut self, c: &Candle, ctx: &Ctx, out: &mut Vec<Intent>) {
        self.count += 1;
        if !self.count.is_multiple_of(self.p.every) {
            return;
        }
        let q = self.p.qty as i64;
        let want_buy = self.next() & 1 == 0;
        let side = match (
            want_buy,
            ctx.position + q <= self.p.max_inventory,
            ctx.position - q >= -self.p.max_inventory,
        ) {
            (true, true, _) | (false, _, false) => Side::Buy,
            _ => Side::Sell,
        };
        let reference = match side {
            Side::Buy => ctx.best_ask.unwrap_or(c.close),
            Side::Sell => ctx.best_bid.unwrap_or(c.close),
        };
        out.push(Intent::Market {
            key: TAKE,
            side,
            qty: self.p.qty,
            reference,
        });
    }

    fn on_note(&mut self, _note: &Note, _ctx: &Ctx, _out: &mut Vec<Intent>) {}

    fn on_flatten(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::{candle, ctx};

    #[test]
    fn seeded_sides_and_inventory_bound() {
        let run = |seed| {
            let mut t = Taker::new(Params {
                seed,
                qty: 2,
                every: 2,
                max_inventory: 2,
            })
            .unwrap();
            let mut pos = 0i64;
            let mut sides = Vec::new();
            for i in 0..40 {
                let mut out = Vec::new();
                t.on_candle(&candle(i, 10, 10, 10, 10), &ctx(pos, 1_000), &mut out);
                assert!(out.len() <= 1);
                if i % 2 == 0 {
                    assert!(out.is_empty(), "trades every second candle");
                }
                for o in out {
                    let Intent::Market { side, qty, .. } = o else {
                        panic!()
                    };
                    pos += if side == Side::Buy {
                        qty as i64
                    } else {
                        -(qty as i64)
                    };
                    assert!(pos.abs() <= 2);
                    sides.push(side);
                }
            }
            sides
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert_eq!(run(7).len(), 20);
    }
}
