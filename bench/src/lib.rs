//! ringbook's benchmarks: shared workload generators for the criterion benches and harnesses.
//!
//! - [`generate`] builds a deterministic, engine-independent operation list ([`Op`]): a warm-up
//!   prefix of passive limit orders that builds a book, then a timed mix of adds (~60 %),
//!   cancels of live orders (~30 %) and market orders (~10 %). The generator simulates a plain
//!   price-time FIFO book while it generates, so every cancel names an order that is live at that
//!   point (orders consumed by market orders are never cancelled) and the traded volume every
//!   correct engine must report is known in advance ([`Workload::volume`]).
//! - [`BookAdapter`] applies one [`Op`] to an engine and returns the traded volume;
//!   [`RingbookBook`] is ringbook's adapter (the peers' adapters live in the bench files, since
//!   the peers are dev-dependencies only).
//! - [`time_throughput`] and [`time_latency`] are the two measurement passes the `book` harness
//!   runs for every engine; [`mem_status`] reads resident memory for the 1M-resting-order check.
//!
//! - [`pipeline_workload`] is the command stream of the `pipeline` latency harness.
//! - [`hiccup`] is the hiccup meter the `pipeline` harness and `ringbook loadgen` run beside
//!   their measurements (the machine's own latency floor, measured in the same run).
//!
//! Nothing here depends on a peer crate, and no other crate depends on this one (production
//! crates never depend on bench): the `ringbook` CLI compiles `hiccup.rs` in as a module of its
//! own for `loadgen`'s meter.
#![forbid(unsafe_code)]

pub mod hiccup;
pub mod pipeline_workload;

use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringbook_engine::prelude::{
    ClientOrderId, Command, Config, Engine, Event, NewOrder, OrderId, Price, Qty, SymbolId, UserId,
};
use ringbook_testkit::rng::Rng;

// ------------------------------------------------------------------------------------- PRNG

/// SplitMix64: a tiny, fast, well-mixed 64-bit generator; fixed seed, so every run and every
/// engine sees the same operations. The stream is the tests' ([`ringbook_testkit::rng::Rng`]);
/// ranges here are multiply-shift, not modulo.
#[derive(Clone, Debug)]
pub struct SplitMix64(Rng);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(Rng::new(seed))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next()
    }

    /// Uniform in `0 .. n` (`n > 0`), by multiply-shift (bias below 2^-32 for our ranges).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

// ------------------------------------------------------------------------------- operations

/// Order side, independent of any engine's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy (rests on the bid side).
    Buy,
    /// Sell (rests on the ask side).
    Sell,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }
}

/// One book operation, engine-independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A passive GTC limit order (it never crosses when generated, so it rests).
    Add {
        /// Unique order id (1, 2, 3, … in generation order).
        id: u64,
        /// Side.
        side: Side,
        /// Limit price in ticks.
        price: i64,
        /// Quantity in lots.
        qty: u64,
    },
    /// Cancel of an order that is live at this point of the stream.
    Cancel {
        /// The workload id of the order (the `id` of its `Add`).
        id: u64,
        /// The id the engine under test gave the order, when the stream was resolved for that
        /// engine before timing ([`resolve_handles`]); [`UNRESOLVED`] otherwise, and the
        /// adapter maps `id` to it in the timed loop.
        handle: u64,
    },
    /// A market order: trades against the opposite side at any price, remainder cancelled.
    Market {
        /// Side of the aggressor.
        side: Side,
        /// Quantity in lots.
        qty: u64,
    },
}

/// [`Op::Cancel::handle`] of a stream not resolved for an engine.
pub const UNRESOLVED: u64 = u64::MAX;

impl Op {
    /// A cancel of workload id `id`, not resolved for any engine.
    pub fn cancel(id: u64) -> Op {
        Op::Cancel {
            id,
            handle: UNRESOLVED,
        }
    }

    /// 0 for adds, 1 for cancels, 2 for market orders (for per-kind statistics).
    #[inline]
    pub fn kind(&self) -> usize {
        match self {
            Op::Add { .. } => 0,
            Op::Cancel { .. } => 1,
            Op::Market { .. } => 2,
        }
    }

    /// Names of the kinds, indexed by [`Op::kind`].
    pub const KIND_NAMES: [&'static str; 3] = ["add", "cancel", "market"];
}

// -------------------------------------------------------------------------------- generator

/// What to generate. `Default` is the workload the `book` harness reports.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// PRNG seed.
    pub seed: u64,
    /// Resting orders the warm-up builds (one add each; none of them trades).
    pub resting: usize,
    /// Timed operations after the warm-up.
    pub ops: usize,
    /// Price (ticks) the book is built around.
    pub center: i64,
    /// Prices are clamped to `center ± max_drift`.
    pub max_drift: i64,
    /// Warm-up adds go up to this many ticks behind the best price of their side.
    pub warmup_ticks: u64,
    /// Timed adds go up to this many ticks behind the best price of their side (the distance is
    /// the smaller of two uniform draws, so most land within a few ticks of the touch; a draw of
    /// zero improves the best price by one tick when the spread allows).
    pub near_ticks: u64,
    /// Order quantities are uniform in `1 ..= max_qty`.
    pub max_qty: u64,
    /// Percent of timed operations that are adds.
    pub add_pct: u64,
    /// Percent of timed operations that are cancels (the rest are market orders).
    pub cancel_pct: u64,
    /// One market order in `sweep_every` is a sweep that eats the best one to three levels.
    pub sweep_every: u64,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            seed: 0x5EED_B00C,
            resting: 20_000,
            ops: 1_000_000,
            center: 50_000,
            max_drift: 20_000,
            warmup_ticks: 256,
            near_ticks: 16,
            max_qty: 100,
            add_pct: 60,
            cancel_pct: 30,
            sweep_every: 500,
        }
    }
}

/// Facts about a generated workload.
#[derive(Clone, Debug, Default)]
pub struct WorkloadStats {
    /// Timed operations by kind: adds, cancels, market orders.
    pub counts: [u64; 3],
    /// Of the market orders, how many were sweeps.
    pub sweeps: u64,
    /// Fills (maker orders touched) by all timed market orders.
    pub fills: u64,
    /// The most fills one market order made.
    pub max_fills: u64,
    /// The most price levels one market order traded at.
    pub max_levels: u64,
    /// Mean live orders at the best level of the side a market order hits, sampled before each
    /// market order.
    pub mean_touch_orders: f64,
    /// Live orders at the end of the warm-up.
    pub live_after_warmup: usize,
    /// Most live orders at once.
    pub peak_live: usize,
    /// Live orders at the end.
    pub final_live: usize,
    /// Non-empty price levels (both sides) at the end.
    pub final_levels: usize,
    /// Lowest and highest price any order used.
    pub price_range: (i64, i64),
    /// Largest order id.
    pub max_id: u64,
}

impl WorkloadStats {
    fn note_price(&mut self, p: i64) {
        self.price_range.0 = self.price_range.0.min(p);
        self.price_range.1 = self.price_range.1.max(p);
    }
}

/// A generated workload: warm-up prefix, timed operations, and the expected results.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The spec it was generated from.
    pub spec: WorkloadSpec,
    /// Builds the book; run untimed.
    pub warmup: Vec<Op>,
    /// The timed operations.
    pub ops: Vec<Op>,
    /// Traded volume (lots) the timed operations must produce on any correct engine.
    pub volume: u64,
    /// Statistics.
    pub stats: WorkloadStats,
}

#[derive(Clone, Copy, Debug)]
struct SimOrder {
    side: Side,
    price: i64,
    /// Open quantity; 0 once gone.
    qty: u64,
    /// Position in `Sim::live`, or `u32::MAX` once gone.
    live_pos: u32,
}

#[derive(Debug, Default)]
struct SimLevel {
    /// FIFO of ids; cancelled ids stay until they reach the front (lazy deletion).
    queue: VecDeque<u64>,
    /// Open quantity of the live orders.
    qty: u64,
    /// Live orders.
    orders: u32,
}

/// A minimal price-time FIFO book: the model the generator uses to know what is live.
#[derive(Debug)]
struct Sim {
    rng: SplitMix64,
    orders: Vec<SimOrder>,
    /// Index 0: bids, 1: asks.
    levels: [BTreeMap<i64, SimLevel>; 2],
    live: Vec<u64>,
    lo: i64,
    hi: i64,
    center: i64,
}

impl Sim {
    fn best(&self, side: Side) -> Option<i64> {
        match side {
            Side::Buy => self.levels[0].keys().next_back().copied(),
            Side::Sell => self.levels[1].keys().next().copied(),
        }
    }

    /// A price `0 ..= ticks-1` behind the best of `side` (or improving it by a tick when the
    /// draw is 0 and the spread allows), never crossing.
    fn passive_price(&mut self, side: Side, ticks: u64) -> i64 {
        let k = self.rng.below(ticks).min(self.rng.below(ticks)) as i64;
        let (bid, ask) = (self.best(Side::Buy), self.best(Side::Sell));
        match side {
            Side::Buy => {
                let mut top = bid.map_or(self.center - 1, |b| b + 1);
                if let Some(a) = ask {
                    top = top.min(a - 1);
                }
                (top - k).clamp(self.lo, self.hi)
            }
            Side::Sell => {
                let mut top = ask.map_or(self.center + 1, |a| a - 1);
                if let Some(b) = bid {
                    top = top.max(b + 1);
                }
                (top + k).clamp(self.lo, self.hi)
            }
        }
    }

    fn add(&mut self, side: Side, price: i64, qty: u64) -> u64 {
        let id = self.orders.len() as u64;
        debug_assert!(match side {
            Side::Buy => self.best(Side::Sell).is_none_or(|a| price < a),
            Side::Sell => self.best(Side::Buy).is_none_or(|b| price > b),
        });
        self.orders.push(SimOrder {
            side,
            price,
            qty,
            live_pos: self.live.len() as u32,
        });
        self.live.push(id);
        let level = self.levels[side.index()].entry(price).or_default();
        level.queue.push_back(id);
        level.qty += qty;
        level.orders += 1;
        id
    }

    fn unlive(&mut self, id: u64) {
        let pos = self.orders[id as usize].live_pos as usize;
        self.live.swap_remove(pos);
        if let Some(&moved) = self.live.get(pos) {
            self.orders[moved as usize].live_pos = pos as u32;
        }
        let o = &mut self.orders[id as usize];
        o.live_pos = u32::MAX;
        o.qty = 0;
    }

    fn cancel(&mut self, id: u64) {
        let o = self.orders[id as usize];
        debug_assert!(o.qty > 0);
        let book = &mut self.levels[o.side.index()];
        let level = book.get_mut(&o.price).expect("a live order's level exists");
        level.qty -= o.qty;
        level.orders -= 1;
        if level.qty == 0 {
            book.remove(&o.price);
        }
        self.unlive(id);
    }

    /// Trades a market order; returns (volume, fills, levels touched).
    fn market(&mut self, side: Side, qty: u64) -> (u64, u64, u64) {
        let book_side = match side {
            Side::Buy => 1,
            Side::Sell => 0,
        };
        let (mut left, mut fills, mut levels) = (qty, 0, 0);
        while left > 0 {
            let best = match side {
                Side::Buy => self.levels[1].keys().next().copied(),
                Side::Sell => self.levels[0].keys().next_back().copied(),
            };
            let Some(price) = best else { break };
            levels += 1;
            loop {
                let level = self.levels[book_side].get_mut(&price).unwrap();
                let id = *level
                    .queue
                    .front()
                    .expect("a level with quantity has orders");
                let open = self.orders[id as usize].qty;
                if open == 0 {
                    level.queue.pop_front(); // cancelled earlier
                    continue;
                }
                let q = left.min(open);
                fills += 1;
                left -= q;
                level.qty -= q;
                let emptied = level.qty == 0;
                if q == open {
                    level.queue.pop_front();
                    level.orders -= 1;
                    self.unlive(id);
                } else {
                    self.orders[id as usize].qty -= q;
                }
                if emptied {
                    self.levels[book_side].remove(&price);
                    break;
                }
                if left == 0 {
                    break;
                }
            }
        }
        (qty - left, fills, levels)
    }

    fn random_side(&mut self) -> Side {
        if self.rng.next_u64() & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    /// Open quantity of the best `n` levels of `side`.
    fn top_qty(&self, side: Side, n: usize) -> u64 {
        match side {
            Side::Buy => self.levels[0].values().rev().take(n).map(|l| l.qty).sum(),
            Side::Sell => self.levels[1].values().take(n).map(|l| l.qty).sum(),
        }
    }
}

/// Generates the workload described by `spec`. Deterministic: same spec, same operations.
pub fn generate(spec: &WorkloadSpec) -> Workload {
    let mut sim = Sim {
        rng: SplitMix64::new(spec.seed),
        // Id 0 is never used, so ids start at 1.
        orders: vec![SimOrder {
            side: Side::Buy,
            price: 0,
            qty: 0,
            live_pos: u32::MAX,
        }],
        levels: [BTreeMap::new(), BTreeMap::new()],
        live: Vec::new(),
        lo: spec.center - spec.max_drift,
        hi: spec.center + spec.max_drift,
        center: spec.center,
    };
    let mut stats = WorkloadStats {
        price_range: (i64::MAX, i64::MIN),
        ..WorkloadStats::default()
    };

    let mut warmup = Vec::with_capacity(spec.resting);
    for _ in 0..spec.resting {
        let side = sim.random_side();
        let price = sim.passive_price(side, spec.warmup_ticks.max(1));
        let qty = 1 + sim.rng.below(spec.max_qty);
        let id = sim.add(side, price, qty);
        stats.note_price(price);
        warmup.push(Op::Add {
            id,
            side,
            price,
            qty,
        });
    }
    stats.live_after_warmup = sim.live.len();
    stats.peak_live = sim.live.len();

    let target = spec.resting.max(1) as f64;
    let mean_qty = (spec.max_qty + 1) as f64 / 2.0;
    let mut ops = Vec::with_capacity(spec.ops);
    let mut volume = 0;
    let mut touch_samples = 0.0;
    for _ in 0..spec.ops {
        let roll = sim.rng.below(100);
        let op = if roll < spec.add_pct || sim.live.is_empty() {
            let side = sim.random_side();
            let price = sim.passive_price(side, spec.near_ticks.max(1));
            let qty = 1 + sim.rng.below(spec.max_qty);
            let id = sim.add(side, price, qty);
            stats.note_price(price);
            Op::Add {
                id,
                side,
                price,
                qty,
            }
        } else if roll < spec.add_pct + spec.cancel_pct {
            let id = sim.live[sim.rng.below(sim.live.len() as u64) as usize];
            sim.cancel(id);
            Op::cancel(id)
        } else {
            let side = sim.random_side();
            let opposite = match side {
                Side::Buy => Side::Sell,
                Side::Sell => Side::Buy,
            };
            let qty = if spec.sweep_every > 0 && sim.rng.below(spec.sweep_every) == 0 {
                // A sweep: the best one to three levels, plus a bit of the next.
                stats.sweeps += 1;
                let n = 1 + sim.rng.below(3) as usize;
                sim.top_qty(opposite, n) + 1 + sim.rng.below(spec.max_qty)
            } else {
                // Sized to eat about three orders when the book is at its target size, more
                // when it is bigger, fewer when smaller: keeps the book near `resting` orders.
                let ratio = sim.live.len() as f64 / target;
                let orders = (3.0 * ratio * ratio).clamp(0.25, 64.0);
                1 + sim.rng.below((2.0 * orders * mean_qty) as u64)
            };
            touch_samples += f64::from(match opposite {
                Side::Buy => sim.levels[0].values().next_back().map_or(0, |l| l.orders),
                Side::Sell => sim.levels[1].values().next().map_or(0, |l| l.orders),
            });
            let (v, fills, levels) = sim.market(side, qty);
            volume += v;
            stats.fills += fills;
            stats.max_fills = stats.max_fills.max(fills);
            stats.max_levels = stats.max_levels.max(levels);
            Op::Market { side, qty }
        };
        stats.counts[op.kind()] += 1;
        stats.peak_live = stats.peak_live.max(sim.live.len());
        ops.push(op);
    }
    stats.mean_touch_orders = touch_samples / stats.counts[2].max(1) as f64;
    stats.final_live = sim.live.len();
    stats.final_levels = sim.levels[0].len() + sim.levels[1].len();
    stats.max_id = sim.orders.len() as u64 - 1;
    Workload {
        spec: spec.clone(),
        warmup,
        ops,
        volume,
        stats,
    }
}

/// A stream of `n` passive adds spread over `spread` ticks either side of `center` (bids below,
/// asks at or above), for building a very large book without keeping the operations (or a model)
/// in memory. Ids are `1 ..= n`.
#[derive(Clone, Debug)]
pub struct RestingOrders {
    rng: SplitMix64,
    next_id: u64,
    n: u64,
    center: i64,
    spread: u64,
    max_qty: u64,
}

impl RestingOrders {
    /// `n` orders around `center`, up to `spread` ticks away.
    pub fn new(seed: u64, n: u64, center: i64, spread: u64) -> RestingOrders {
        RestingOrders {
            rng: SplitMix64::new(seed),
            next_id: 1,
            n,
            center,
            spread: spread.max(1),
            max_qty: 100,
        }
    }
}

impl Iterator for RestingOrders {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        if self.next_id > self.n {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let k = self.rng.below(self.spread) as i64;
        let qty = 1 + self.rng.below(self.max_qty);
        let (side, price) = if self.rng.next_u64() & 1 == 0 {
            (Side::Buy, self.center - 1 - k)
        } else {
            (Side::Sell, self.center + k)
        };
        Some(Op::Add {
            id,
            side,
            price,
            qty,
        })
    }
}

// --------------------------------------------------------------------------------- adapters

/// An order book under test: applies one [`Op`] and returns the volume it traded.
pub trait BookAdapter {
    /// Short name for reports.
    const NAME: &'static str;

    /// Applies `op`; returns the traded quantity (lots).
    fn apply(&mut self, op: &Op) -> u64;

    /// Told the operation after the one about to be applied, before it is applied: a book
    /// that can warm its caches for `next` does so here. The default does nothing (the peers'
    /// APIs take one operation at a time and offer no such hint).
    #[inline]
    fn prefetch(&mut self, next: &Op) {
        let _ = next;
    }

    /// Operations the engine refused or could not apply (must stay 0 on a valid workload).
    fn errors(&self) -> u64;

    /// The id this engine gave the order added with workload id `id`, once its add has been
    /// applied, for an adapter that maps workload ids to the engine's own in the timed loop
    /// (`None`: it needs no map, or `id` was never added).
    #[inline]
    fn handle_of(&self, id: u64) -> Option<u64> {
        let _ = id;
        None
    }
}

/// `ops` with every cancel's [`Op::Cancel::handle`] set to the id `book` gave its order:
/// `book` is a fresh book of the engine under test that has applied the warm-up and `ops`
/// (engines are deterministic, so a fresh book given the same stream gives the same ids).
/// Timed on the result, the engine receives each cancel already naming its own id, as the
/// pipeline's business stage receives decoded commands, and the harness's random read of its
/// id map (a cache miss that both engines' adapters paid alike) leaves the timed loop.
pub fn resolve_handles<A: BookAdapter>(book: &A, ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .map(|op| match *op {
            Op::Cancel { id, .. } => Op::Cancel {
                id,
                handle: book.handle_of(id).unwrap_or(UNRESOLVED),
            },
            other => other,
        })
        .collect()
}

/// ringbook's adapter: one symbol of an [`Engine`] with the risk and settlement stages off
/// (`RiskMode::Off`: the book alone, as the peers are). Orders belong to `1000` users by id
/// (`user = id % 1000`, client order id = id, so each user's ids increase); market orders come
/// from a separate user (client order ids 1, 2, 3, …) with the protection price at the band
/// edge, so they behave as unlimited market orders. A cancel names its order by the engine's
/// order id, the handle a venue client keeps from the `Accepted` event (`CancelOrder`: an
/// array index, no hash): the cancel's resolved `handle` where the stream was resolved for
/// this engine ([`resolve_handles`]), else the adapter's map from workload ids, kept exactly as
/// the matchcore adapter keeps its map to matchcore's ids. The event sink is a closure summing trade quantities: no
/// allocation per operation.
#[derive(Debug)]
pub struct RingbookBook {
    engine: Engine,
    symbol: SymbolId,
    price_min: i64,
    price_max: i64,
    errors: u64,
    /// Workload id → the engine's order id (from its `Accepted` event).
    ids: Vec<u64>,
    /// Cancel by client order id (the workload id) instead of by engine order id: the
    /// client keeps no map, and the engine looks the id up in its client-order-id index, as
    /// every cancel did before issue 11 ([`RingbookBook::cancelling_by_client_order_id`]).
    cancel_by_client_order_id: bool,
    /// The market-order user's last client order id.
    taker_coid: u64,
    /// Pass the next operation's cancel to [`Engine::prefetch`] before each operation, as the
    /// pipeline's batch loop does ([`RingbookBook::prefetching`]).
    prefetch: bool,
}

/// Users the adapter spreads orders over.
pub const RINGBOOK_USERS: u64 = 1000;
const TAKER: UserId = UserId(RINGBOOK_USERS as u32);

impl RingbookBook {
    /// The engine order id a cancel of workload id `id` names: its resolved `handle`, else the
    /// adapter's map (0, an id no order has, for an id never added).
    #[inline]
    fn order_id(&self, id: u64, handle: u64) -> u64 {
        if handle != UNRESOLVED {
            handle
        } else {
            self.ids.get(id as usize).copied().unwrap_or(0)
        }
    }

    /// The default configuration's first symbol, with an order pool of `orders_max` and the
    /// price band widened to `1 ..= price_max`.
    pub fn config(orders_max: u32, price_max: i64) -> Config {
        let mut config = Config::default();
        config.capacity.orders_max = orders_max;
        config.capacity.users_max = config.capacity.users_max.max(RINGBOOK_USERS as u32 + 1);
        // The workload's ids become client order ids, increasing per user, and the market-order
        // user numbers its orders 1, 2, 3, …: the default `increasing` client-order-id rule
        // holds, as it does for a venue's clients.
        debug_assert_eq!(
            config.engine.client_order_ids,
            ringbook_engine::config::ClientOrderIdRule::Increasing
        );
        let s = &mut config.symbols[0];
        s.price_min = 1;
        s.price_max = price_max;
        s.max_order_qty = s.max_order_qty.max(1_000_000_000);
        config
    }

    /// An engine for symbol 0 of `config`, the book alone (risk off): what the peers are.
    pub fn new(config: &Config) -> RingbookBook {
        RingbookBook::with_risk(config, ringbook_engine::RiskMode::Off)
    }

    /// An engine for symbol 0 of `config` in the given risk mode. With risk on, every user the
    /// adapter uses (and the taker) is funded with `2^50` units of symbol 0's base and quote
    /// before anything is timed, so no order is refused for funds and the work matches risk off
    /// exactly, plus the checks, locks and settlement.
    pub fn with_risk(config: &Config, risk: ringbook_engine::RiskMode) -> RingbookBook {
        let mut engine = Engine::with_risk(config, risk).expect("valid benchmark config");
        if risk == ringbook_engine::RiskMode::On {
            let s = &config.symbols[0];
            let currencies =
                [&s.base, &s.quote].map(|c| config.currency_id(c).expect("configured"));
            for user in 0..=RINGBOOK_USERS {
                for currency in currencies {
                    let deposit = Command::Deposit {
                        user: UserId(user as u32),
                        currency,
                        amount: 1 << 50,
                    };
                    engine.process(&deposit, &mut |_: &Event| {});
                }
            }
        }
        let s = &config.symbols[0];
        RingbookBook {
            engine,
            symbol: SymbolId(0),
            price_min: s.price_min,
            price_max: s.price_max,
            errors: 0,
            ids: Vec::new(),
            cancel_by_client_order_id: false,
            taker_coid: 0,
            prefetch: false,
        }
    }

    /// Sizes the map from workload ids to engine order ids for ids up to `max_id` up front (as
    /// the matchcore adapter's is), so that no timed operation grows it.
    pub fn with_ids(mut self, max_id: u64) -> RingbookBook {
        self.ids = vec![0; max_id as usize + 1];
        self
    }

    /// Cancels name their order by client order id (`Command::Cancel`), the way the adapter
    /// cancelled before engine order ids existed: the engine, not the client, maps the id to
    /// the order. For comparing with builds from before issue 11 on equal terms.
    pub fn cancelling_by_client_order_id(mut self) -> RingbookBook {
        self.cancel_by_client_order_id = true;
        self
    }

    /// Before each operation, hands the next one's cancel to [`Engine::prefetch`] (the
    /// engine starts loading the order's pool slot while it processes the current operation),
    /// as the pipeline does within each batch of commands it takes from its ring. A book that
    /// sees its input one operation at a time, as the peers do, has no next to look at: this
    /// is the batch-aware path, measured beside the default one.
    pub fn prefetching(mut self) -> RingbookBook {
        self.prefetch = true;
        self
    }

    /// An engine whose pool holds `orders_max` orders and whose band is `1 ..= 100_000`.
    pub fn with_capacity(orders_max: u32) -> RingbookBook {
        RingbookBook::new(&RingbookBook::config(orders_max, 100_000))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    #[inline]
    fn side(side: Side) -> ringbook_engine::Side {
        match side {
            Side::Buy => ringbook_engine::Side::Buy,
            Side::Sell => ringbook_engine::Side::Sell,
        }
    }
}

impl BookAdapter for RingbookBook {
    const NAME: &'static str = "ringbook";

    #[inline]
    fn apply(&mut self, op: &Op) -> u64 {
        let mut added = 0;
        let cmd = match *op {
            Op::Add {
                id,
                side,
                price,
                qty,
            } => {
                added = id;
                Command::NewOrder(NewOrder::limit(
                    UserId((id % RINGBOOK_USERS) as u32),
                    self.symbol,
                    ClientOrderId(id),
                    Self::side(side),
                    Price(price),
                    Qty(qty),
                ))
            }
            Op::Cancel { id, .. } if self.cancel_by_client_order_id => Command::Cancel {
                user: UserId((id % RINGBOOK_USERS) as u32),
                symbol: self.symbol,
                client_order_id: ClientOrderId(id),
            },
            Op::Cancel { id, handle } => Command::CancelOrder {
                user: UserId((id % RINGBOOK_USERS) as u32),
                symbol: self.symbol,
                order_id: OrderId(self.order_id(id, handle)),
            },
            Op::Market { side, qty } => {
                let protection = match side {
                    Side::Buy => self.price_max,
                    Side::Sell => self.price_min,
                };
                self.taker_coid += 1;
                Command::NewOrder(NewOrder::market(
                    TAKER,
                    self.symbol,
                    ClientOrderId(self.taker_coid),
                    Self::side(side),
                    Price(protection),
                    Qty(qty),
                ))
            }
        };
        let mut volume = 0;
        let mut order_id = 0;
        let errors = &mut self.errors;
        self.engine.process(&cmd, &mut |e: &Event| match e {
            Event::Trade(t) => volume += t.qty.0,
            Event::Accepted { order_id: id, .. } => order_id = id.0,
            Event::Rejected { .. } => *errors += 1,
            _ => {}
        });
        if added != 0 && !self.cancel_by_client_order_id {
            if added as usize >= self.ids.len() {
                self.ids.resize((added as usize + 1).next_power_of_two(), 0);
            }
            self.ids[added as usize] = order_id;
        }
        volume
    }

    #[inline]
    fn prefetch(&mut self, next: &Op) {
        if let Op::Cancel { id, handle } = *next {
            if self.prefetch && !self.cancel_by_client_order_id {
                self.engine.prefetch(&Command::CancelOrder {
                    user: UserId((id % RINGBOOK_USERS) as u32),
                    symbol: self.symbol,
                    order_id: OrderId(self.order_id(id, handle)),
                });
            }
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn handle_of(&self, id: u64) -> Option<u64> {
        if self.cancel_by_client_order_id {
            return None;
        }
        self.ids
            .get(id as usize)
            .copied()
            .filter(|&order_id| order_id != 0)
    }
}

/// Pool size that fits a workload on ringbook (its peak live orders plus the one market order
/// in flight), rounded up, at least the default config's.
pub fn ringbook_pool_for(w: &Workload) -> u32 {
    ((w.stats.peak_live as u64 + 1024).max(262_144)).min(u64::from(u32::MAX - 1)) as u32
}

// ----------------------------------------------------------------------------- measurement

/// Applies every op in order, untimed; returns the traded volume.
pub fn apply_all<A: BookAdapter>(book: &mut A, ops: &[Op]) -> u64 {
    ops.iter().map(|op| book.apply(op)).sum()
}

/// Throughput pass: one `Instant` pair around the whole list, no per-op timers; each op is
/// preceded by [`BookAdapter::prefetch`] of the next. Returns (elapsed, traded volume).
pub fn time_throughput<A: BookAdapter>(book: &mut A, ops: &[Op]) -> (Duration, u64) {
    let start = Instant::now();
    let mut volume = 0;
    for (i, op) in ops.iter().enumerate() {
        if let Some(next) = ops.get(i + 1) {
            book.prefetch(next);
        }
        volume += book.apply(black_box(op));
    }
    let elapsed = start.elapsed();
    (elapsed, black_box(volume))
}

/// Per-operation latency histograms of one pass.
#[derive(Debug)]
pub struct Latency {
    /// All operations, timer overhead subtracted (ns).
    pub all: Histogram<u64>,
    /// By kind ([`Op::kind`]), overhead subtracted (ns).
    pub by_kind: [Histogram<u64>; 3],
    /// Traded volume of the pass.
    pub volume: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// The cost of one `Instant::now()` pair with nothing between, in ns: the median of `n`
/// back-to-back samples (also the value [`time_latency`] subtracts), and the full histogram.
pub fn timer_overhead(n: usize) -> (u64, Histogram<u64>) {
    let mut h = histogram();
    for _ in 0..n {
        let t0 = Instant::now();
        let t1 = Instant::now();
        h.saturating_record(t1.duration_since(t0).as_nanos() as u64);
    }
    (h.value_at_quantile(0.5), h)
}

/// Latency pass: each op timed with its own `Instant::now()` pair (the
/// [`BookAdapter::prefetch`] of the next op inside it); `overhead_ns` (see
/// [`timer_overhead`]) is subtracted from every sample, floored at 0.
pub fn time_latency<A: BookAdapter>(book: &mut A, ops: &[Op], overhead_ns: u64) -> Latency {
    let mut all = histogram();
    let mut by_kind = [histogram(), histogram(), histogram()];
    let mut volume = 0;
    for (i, op) in ops.iter().enumerate() {
        let t0 = Instant::now();
        if let Some(next) = ops.get(i + 1) {
            book.prefetch(next);
        }
        volume += book.apply(black_box(op));
        let t1 = Instant::now();
        let ns = (t1.duration_since(t0).as_nanos() as u64).saturating_sub(overhead_ns);
        all.saturating_record(ns);
        by_kind[op.kind()].saturating_record(ns);
    }
    Latency {
        all,
        by_kind,
        volume,
    }
}

/// Resident memory of this process, from /proc/self/status (Linux only).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemStatus {
    /// VmRSS: resident set now, KiB.
    pub rss_kib: u64,
    /// VmHWM: peak resident set, KiB.
    pub hwm_kib: u64,
}

/// Reads VmRSS and VmHWM; `None` where /proc is unavailable.
pub fn mem_status() -> Option<MemStatus> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(MemStatus {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WorkloadSpec {
        WorkloadSpec {
            resting: 2_000,
            ops: 50_000,
            ..WorkloadSpec::default()
        }
    }

    #[test]
    fn deterministic() {
        let a = generate(&small());
        let b = generate(&small());
        assert_eq!(a.warmup, b.warmup);
        assert_eq!(a.ops, b.ops);
        assert_eq!(a.volume, b.volume);
        assert!(a.volume > 0);
    }

    #[test]
    fn mix_is_roughly_as_specified() {
        let w = generate(&small());
        let [adds, cancels, markets] = w.stats.counts;
        let n = w.ops.len() as f64;
        assert!((adds as f64 / n - 0.60).abs() < 0.02, "{:?}", w.stats);
        assert!((cancels as f64 / n - 0.30).abs() < 0.02, "{:?}", w.stats);
        assert!((markets as f64 / n - 0.10).abs() < 0.02, "{:?}", w.stats);
        assert!(
            w.stats.sweeps > 0 && w.stats.max_levels > 1,
            "{:?}",
            w.stats
        );
    }

    #[test]
    fn ringbook_agrees_with_the_model_and_rejects_nothing() {
        let w = generate(&small());
        let mut book = RingbookBook::with_capacity(ringbook_pool_for(&w));
        assert_eq!(
            apply_all(&mut book, &w.warmup),
            0,
            "warm-up adds are passive"
        );
        assert_eq!(
            book.engine().matcher().live_orders() as usize,
            w.stats.live_after_warmup
        );
        assert_eq!(apply_all(&mut book, &w.ops), w.volume);
        assert_eq!(book.errors(), 0);
        assert_eq!(
            book.engine().matcher().live_orders() as usize,
            w.stats.final_live
        );
    }

    /// The timed passes, with ringbook told each next operation (`--prefetch`), trade the
    /// model's volume and end in the state of a book told nothing.
    #[test]
    fn prefetching_ringbook_agrees_with_the_model() {
        let w = generate(&small());
        let pool = ringbook_pool_for(&w);
        let mut told = RingbookBook::with_capacity(pool)
            .with_ids(w.stats.max_id)
            .prefetching();
        let mut plain = RingbookBook::with_capacity(pool).with_ids(w.stats.max_id);
        for book in [&mut told, &mut plain] {
            assert_eq!(time_throughput(book, &w.warmup).1, 0);
            assert_eq!(time_throughput(book, &w.ops).1, w.volume);
            assert_eq!(book.errors(), 0);
        }
        assert_eq!(told.engine().state_hash(), plain.engine().state_hash());
        let mut told = RingbookBook::with_capacity(pool)
            .with_ids(w.stats.max_id)
            .prefetching();
        apply_all(&mut told, &w.warmup);
        assert_eq!(time_latency(&mut told, &w.ops, 0).volume, w.volume);
        assert_eq!(told.errors(), 0);
    }

    /// A stream resolved for ringbook (`--resolved-ids`) names every cancelled order by the
    /// id a fresh book gives it, so a fresh book timed on it trades the model's volume, refuses
    /// nothing and ends in the state of a book that mapped the ids itself; a handle off by one
    /// is refused, so the bench's refusal check catches a stream resolved wrongly (its volume
    /// check need not: the wrong cancels take no liquidity), and so does a stream resolved for
    /// another pool size (ids name slots modulo the pool).
    #[test]
    fn a_stream_resolved_for_ringbook_cancels_the_same_orders() {
        let w = generate(&small());
        let pool = ringbook_pool_for(&w);
        let fresh = || {
            let mut book = RingbookBook::with_capacity(pool).with_ids(w.stats.max_id);
            assert_eq!(apply_all(&mut book, &w.warmup), 0);
            book
        };
        let mut mapped = fresh();
        assert_eq!(apply_all(&mut mapped, &w.ops), w.volume);
        let resolved = resolve_handles(&mapped, &w.ops);
        let cancels = resolved
            .iter()
            .filter(|op| matches!(op, Op::Cancel { .. }))
            .count();
        assert!(cancels > 100, "the stream has cancels to resolve");
        assert!(resolved
            .iter()
            .all(|op| !matches!(op, Op::Cancel { handle, .. } if *handle == UNRESOLVED)));
        let mut timed = fresh();
        assert_eq!(time_throughput(&mut timed, &resolved).1, w.volume);
        assert_eq!(timed.errors(), 0);
        assert_eq!(timed.engine().state_hash(), mapped.engine().state_hash());

        let broken: Vec<Op> = resolved
            .iter()
            .map(|op| match *op {
                Op::Cancel { id, handle } => Op::Cancel {
                    id,
                    handle: handle + 1,
                },
                other => other,
            })
            .collect();
        let mut wrong = fresh();
        apply_all(&mut wrong, &broken);
        assert!(wrong.errors() > 0, "cancels of the wrong ids are refused");

        let mut other_pool = RingbookBook::with_capacity(4 * pool).with_ids(w.stats.max_id);
        assert_eq!(apply_all(&mut other_pool, &w.warmup), 0);
        apply_all(&mut other_pool, &resolved);
        assert!(
            other_pool.errors() > 0,
            "ids resolved for another pool are refused"
        );
    }

    #[test]
    fn resting_orders_never_cross() {
        let mut book = RingbookBook::with_capacity(10_000);
        let volume = apply_all(
            &mut book,
            &RestingOrders::new(1, 10_000, 50_000, 1_000).collect::<Vec<_>>(),
        );
        assert_eq!(volume, 0);
        assert_eq!(book.errors(), 0);
        assert_eq!(book.engine().matcher().live_orders(), 10_000);
    }

    #[test]
    #[ignore]
    fn print_default_stats() {
        let w = generate(&WorkloadSpec::default());
        println!("{:#?} volume {}", w.stats, w.volume);
    }

    #[test]
    fn mem_status_reads_proc() {
        if std::path::Path::new("/proc/self/status").exists() {
            let m = mem_status().unwrap();
            assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        }
    }
}
