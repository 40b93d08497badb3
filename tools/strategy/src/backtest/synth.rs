//! Candle CSVs as the market's flow: a book synthesised around each candle, and trades that
//! walk its path, so that the strategy's orders meet real matching, fees and locks.
//!
//! **The path.** A candle is walked open → low → high → close when it closed at or above its
//! open, open → high → low → close otherwise (the usual assumption when only OHLC is known),
//! as four *legs* at times `open_time + j × interval / 4`.
//!
//! **One leg** from `a` to `b` (the first leg is the open alone, `a = b = open`):
//! 1. the synthetic maker (user 1) cancels everything it had;
//! 2. it posts the leg's *sweep* levels — every price from `a` to `b` on the side being
//!    taken, at most 20 of them evenly spread, `q` lots each — plus `depth_levels` levels of
//!    depth beyond `b` on that side and behind `a` on the other (one tick apart, `depth` lots
//!    each);
//! 3. the synthetic taker (user 2) sends an IOC limit of `q` lots at each sweep price in turn,
//!    so prints run from `a` to `b`, one command per level: stops waiting between `a` and `b`
//!    fire at the first print that reaches them (the engine fires stops after each command) and
//!    their market orders meet the sweep levels still ahead.
//!
//! A strategy order resting at a price the leg passes is ahead of the maker's sweep order at
//! that price (older), so it fills when the price trades at its level — an optimistic queue
//! position, and the main limit of this mode.
//!
//! **Between candles** (when the strategy decides), the maker leaves `depth_levels` bids below
//! and asks above the close, one tick apart: a market order pays at least one tick of spread.
//!
//! **Sizes.** `q = max(1, volume / sweep lots of the candle)`; depth per level is
//! `max(1, volume)` times a factor between 1 and 1.5 drawn from the seeded generator
//! (`[backtest] seed`), so the same seed gives the same book.

use std::path::Path;

use ringbook_engine::prelude::*;

use super::report::FlowStats;
use super::{Settings, Sim};
use crate::candle::{read_candle_csv, Candle};

const MAKER: UserId = UserId(1);
const TAKER: UserId = UserId(2);
/// Sweep levels per leg at most.
const SWEEP_MAX: i64 = 20;

/// The CSV's interval: the smallest gap between consecutive candles (1 day for one candle).
pub fn csv_interval(path: &Path) -> Result<u64, String> {
    let c = read_candle_csv(path, 1)?;
    Ok(c.windows(2)
        .map(|w| w[1].open_time - w[0].open_time)
        .min()
        .unwrap_or(86_400_000))
}

/// The first and last candle's open time.
pub fn time_span(path: &Path) -> Result<(u64, u64), String> {
    let c = read_candle_csv(path, 1)?;
    Ok((c[0].open_time, c[c.len() - 1].open_time))
}

struct Walker<'a> {
    sim: &'a mut Sim,
    symbol: SymbolId,
    next_coid: u64,
    rng: u64,
    levels: i64,
    stats: FlowStats,
}

impl Walker<'_> {
    fn send(&mut self, ts: u64, cmd: Command) {
        self.stats.commands += 1;
        let rejected = self
            .sim
            .flow(ts, &cmd)
            .iter()
            .any(|e| matches!(e, Event::Rejected { .. }));
        if rejected {
            self.stats.skipped += 1;
        }
    }

    fn post(&mut self, ts: u64, side: Side, price: i64, qty: u64) {
        let m = self.sim.bot.ledger.market;
        if price < m.price_min || price > m.price_max || qty == 0 {
            return;
        }
        let coid = ClientOrderId(self.next_coid);
        self.next_coid += 1;
        self.send(
            ts,
            Command::NewOrder(NewOrder::limit(
                MAKER,
                self.symbol,
                coid,
                side,
                Price(price),
                Qty(qty),
            )),
        );
    }

    fn depth(&mut self, volume: u64) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let base = volume.max(1);
        base + base * (x % 51) / 100
    }

    fn clear(&mut self, ts: u64) {
        self.send(
            ts,
            Command::MassCancel {
                user: MAKER,
                symbol: Some(self.symbol),
                on_disconnect: false,
            },
        );
    }

    /// The leg `a → b`; `q` lots per sweep level.
    fn leg(&mut self, ts: u64, a: i64, b: i64, q: u64, volume: u64) {
        self.clear(ts);
        let up = b >= a;
        let (take, rest) = if up {
            (Side::Sell, Side::Buy)
        } else {
            (Side::Buy, Side::Sell)
        };
        let dir = if up { 1 } else { -1 };
        let prices = sweep(a, b);
        for &p in &prices {
            self.post(ts, take, p, q);
        }
        for i in 1..=self.levels {
            let d = self.depth(volume);
            self.post(ts, take, b + dir * i, d);
            let d = self.depth(volume);
            self.post(ts, rest, a - dir * i, d);
        }
        for &p in &prices {
            let coid = ClientOrderId(self.next_coid);
            self.next_coid += 1;
            let mut o = NewOrder::limit(TAKER, self.symbol, coid, rest, Price(p), Qty(q));
            o.tif = TimeInForce::Ioc;
            self.send(ts, Command::NewOrder(o));
        }
    }

    fn candle(&mut self, c: &Candle, interval: u64) {
        let path = if c.close >= c.open {
            [c.low, c.high]
        } else {
            [c.high, c.low]
        };
        let legs = [
            (c.open, c.open),
            (c.open, path[0]),
            (path[0], path[1]),
            (path[1], c.close),
        ];
        let lots: u64 = legs.iter().map(|&(a, b)| sweep(a, b).len() as u64).sum();
        let q = (c.volume / lots).max(1);
        for (j, &(a, b)) in legs.iter().enumerate() {
            let ts = c.open_time + j as u64 * interval / 4;
            self.leg(ts, a, b, q, c.volume);
        }
        // The resting book the strategy meets between candles.
        let ts = c.open_time + 3 * interval / 4;
        self.clear(ts);
        for i in 1..=self.levels {
            let d = self.depth(c.volume);
            self.post(ts, Side::Buy, c.close - i, d);
            let d = self.depth(c.volume);
            self.post(ts, Side::Sell, c.close + i, d);
        }
    }
}

/// The sweep prices from `a` (exclusive, unless `a == b`) to `b` (inclusive), at most
/// [`SWEEP_MAX`] of them, always ending at `b`.
fn sweep(a: i64, b: i64) -> Vec<i64> {
    if a == b {
        return vec![b];
    }
    let span = (b - a).abs();
    let n = span.min(SWEEP_MAX);
    let dir = (b - a).signum();
    (1..=n).map(|i| a + dir * (span * i / n)).collect()
}

/// Replays a candle CSV through the simulation.
pub fn replay(sim: &mut Sim, path: &Path, s: &Settings) -> Result<FlowStats, String> {
    let candles = read_candle_csv(path, sim.bot.ledger.market.tick_size)?;
    let interval = csv_interval(path)?;
    let symbol = sim.symbol();
    let m = sim.bot.ledger.market;
    let depth = s.depth_levels as i64;
    if let Some(c) = candles.iter().find(|c| {
        // Saturating: a price near i64::MAX wrapped past the check (a red-team finding).
        c.low.saturating_sub(depth) < m.price_min || c.high.saturating_add(depth) > m.price_max
    }) {
        return Err(format!(
            "{}: the candle at {} (low {}, high {}) with {} levels of depth leaves the symbol's price band {}..={}",
            path.display(),
            c.open_time,
            c.low,
            c.high,
            s.depth_levels,
            m.price_min,
            m.price_max
        ));
    }
    // The flow posts up to 1.5 × a candle's volume in one order (`Walker::depth`): every one
    // must be an order the engine takes, or the run would quietly lose its flow.
    if let Some(c) = candles
        .iter()
        .find(|c| c.volume.saturating_add(c.volume / 2) > m.max_order_qty)
    {
        return Err(format!(
            "{}: the candle at {} has volume {}: its flow would post orders of up to 1.5 × that, \
             above the symbol's max_order_qty {}",
            path.display(),
            c.open_time,
            c.volume,
            m.max_order_qty
        ));
    }
    let mut w = Walker {
        sim,
        symbol,
        next_coid: 1,
        rng: s.seed.max(1),
        levels: s.depth_levels as i64,
        stats: FlowStats::default(),
    };
    for c in &candles {
        w.stats.messages += 1;
        w.candle(c, interval);
    }
    let end = candles[candles.len() - 1].open_time + interval;
    w.sim.advance(end);
    Ok(w.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_levels() {
        assert_eq!(sweep(100, 100), vec![100]);
        assert_eq!(sweep(100, 103), vec![101, 102, 103]);
        assert_eq!(sweep(103, 100), vec![102, 101, 100]);
        let long = sweep(0, 100);
        assert_eq!((long.len(), long[0], long[19]), (20, 5, 100));
    }
}
