//! Market data: a deterministic projection of the engine's event stream (docs/market-data.md).
//!
//! [`MarketData`] consumes the events the engine produced for a command, in order, and then
//! [`MarketData::end_command`]; it never runs inside the risk, matching or settlement stages, so
//! it cannot slow them: whoever consumes events runs it (the scenario runner's printer, the
//! gateway thread, a journal replay, another thread with its own copy of the stream). Per symbol
//! it keeps:
//!
//! - a mirror of the **visible book**: per price level the visible quantity and the number of
//!   resting orders (an iceberg shows its current peak only; untriggered stops show nothing),
//!   in arrays indexed by `price − price_min` like the engine's, with an occupancy bitmap for
//!   the best level; and, for the orders the events alone do not describe — untriggered stops
//!   (not shown) and resting icebergs (showing less than their open quantity) — a record
//!   indexed by `order_id mod next_pow2(orders_max)` (the engine's order-id modulus, under
//!   which no two live orders collide), flagged in a bitset of one bit per slot. A plain
//!   resting order needs nothing per order: it shows its whole open quantity, and every event
//!   that changes it says where it rests;
//! - a per-symbol `md_seq`, +1 per update message;
//! - the **trade tape** (the last `tape_len` trades), **candles** for every [`Interval`]
//!   (the latest `candles_history` each; the 1m ring keeps at least 1441, the **24h
//!   ticker**'s window, which is summed from it on request).
//!
//! Everything is allocated in [`MarketData::new`]; applying events allocates nothing.
//!
//! # Messages
//!
//! While a command's events are applied, every trade is handed out at once as a
//! [`MdMessage::Trade`] stamped with the `md_seq` of the update it belongs to; at
//! [`MarketData::end_command`] each symbol the command touched gets one
//! [`MdMessage::Depth`] with that `md_seq`, the command's time and every level whose visible
//! quantity or order count changed (absolute values; quantity 0 = the level is gone). A command
//! that changed nothing visible and traded nothing sends nothing and takes no `md_seq`.
//!
//! # What the projection needs from the events
//!
//! Nothing but the events: `Accepted` (with its `display_qty`) creates the order as the active
//! (taking) order, or as an invisible stop; `Triggered` and a re-pricing or growing `Amended`
//! make an order active; the active order rests with its peak shown when the next one becomes
//! active or the command ends, unless it was filled or cancelled (every order that does not
//! rest ends with a `Cancelled`). Maker fills and self-trade decrements take from the peak; an
//! exhausted iceberg peak is refilled from its reserve like the engine does. A maker rests at
//! the trade price on the taker's opposite side; `Cancelled` carries the order's side and
//! price, and `Amended` its side and its price and open quantity before the amend.

mod book;
mod candles;

pub use book::{ApplyError, L2Book};
pub use candles::{Candle, Decimal, Interval, Ticker, VWAP_PLACES};

use crate::book::bitmap::LevelBitmap;
use crate::book::BookSection;
use crate::config::Config;
use crate::engine::Engine;
use crate::event::{Event, Trade};
use crate::types::{OrderId, Price, Qty, Side, SymbolId, TradeId};
use candles::{Ring, MINUTE_NS, WINDOW_MINUTES};

/// 1m candles kept at least, for the 24h ticker: the window's 1440 minutes, and one more for a
/// minute after the builder's engine time. A ticker read between the events of a command
/// (the web edge's lock is taken per output) can see the command's trades, stamped with its
/// time, before `end_command` moves engine time there; all of a command's trades share one
/// stamp, so there is at most one such minute.
const TICKER_MINUTES: usize = WINDOW_MINUTES + 1;

/// One changed price level: its new visible quantity and order count (0 and 0: gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelChange {
    /// Bid (`Buy`) or ask (`Sell`).
    pub side: Side,
    /// The level's price.
    pub price: Price,
    /// Visible quantity now at the level.
    pub qty: Qty,
    /// Resting orders now at the level.
    pub count: u32,
}

/// A public trade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MdTrade {
    /// The symbol.
    pub symbol: SymbolId,
    /// The update message this trade belongs to.
    pub md_seq: u64,
    /// The trade's id (per symbol, dense from 1).
    pub trade_id: TradeId,
    /// Engine time of the trade, Unix nanoseconds.
    pub ts: u64,
    /// Trade price.
    pub price: Price,
    /// Traded quantity.
    pub qty: Qty,
    /// The side of the incoming (taking) order.
    pub taker_side: Side,
}

/// The closing part of one command's update for one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthUpdate<'a> {
    /// The symbol.
    pub symbol: SymbolId,
    /// This update's sequence number (the previous update's + 1; the first is 1).
    pub md_seq: u64,
    /// Engine time of the command.
    pub ts: u64,
    /// How many [`MdMessage::Trade`]s with this `md_seq` came before.
    pub trades: u32,
    /// Levels that changed: bids best first, then asks best first.
    pub changes: &'a [LevelChange],
}

/// What the builder hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdMessage<'a> {
    /// A trade, as it happens.
    Trade(&'a MdTrade),
    /// The end of a command's update for a symbol: its changed levels.
    Depth(&'a DepthUpdate<'a>),
}

/// A full order record: the active order, and the stops and icebergs of `records`.
///
/// `repr(C)`, in an order where no two fields that sit side by side in an `Accepted` event
/// (order id, price, quantity, display quantity) sit side by side in the same order here:
/// otherwise the compiler copies such a pair with one 16-byte load, which cannot be forwarded
/// from the two 8-byte stores with which the engine has just written the event — a
/// store-forwarding stall on every new order (found with `perf annotate` of the
/// `market_data` bench).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct MdOrder {
    price: Price,
    visible: u64,
    leaves: u64,
    id: u64,
    display: u64,
    symbol: SymbolId,
    side: Side,
    /// An untriggered stop (in `records`): not shown.
    stop: bool,
}

impl MdOrder {
    /// What the order shows when it (re)joins a level: the engine's `Order::peak`.
    fn peak(&self) -> u64 {
        if self.display == 0 {
            self.leaves
        } else {
            self.display.min(self.leaves)
        }
    }
}

/// One price level of the mirror (16 bytes: one cache line holds four).
#[derive(Clone, Copy, Debug, Default)]
struct Level {
    /// Visible quantity.
    qty: u64,
    /// Resting orders.
    count: u32,
    /// Touched by the current command (listed in `SymbolMd::dirty`).
    dirty: bool,
}

/// One side's levels, indexed by `price − price_min`.
#[derive(Debug)]
struct Levels {
    lv: Vec<Level>,
    occupied: LevelBitmap,
}

impl Levels {
    fn new(n: usize) -> Levels {
        Levels {
            lv: vec![Level::default(); n],
            occupied: LevelBitmap::new(n),
        }
    }
}

/// A level touched by the current command, with its values before it.
#[derive(Clone, Copy, Debug, Default)]
struct Dirty {
    side: Side,
    idx: u32,
    qty: u64,
    count: u32,
}

#[derive(Debug)]
struct SymbolMd {
    price_min: i64,
    tick_size: u64,
    /// Bids and asks, indexed by `Side as usize`: picking a side is an index, not a branch
    /// (the side of the next level touched is as random as the order flow).
    sides: [Levels; 2],
    /// The levels touched by the current command: `dirty[..dirty_len]`. The vector has a
    /// slot for every level of both sides and one more, so [`SymbolMd::touch`] writes an entry
    /// unconditionally and counts it only if the level was clean — no branch on whether a
    /// command touches a level twice.
    dirty: Vec<Dirty>,
    dirty_len: usize,
    md_seq: u64,
    /// Trades handed out in the current command.
    pending_trades: u32,
    touched: bool,
    last_price: Option<Price>,
    tape: Ring<MdTrade>,
    /// One ring per interval. The 1m ring holds at least the 1440 minutes of the 24h ticker's
    /// window and one more (`TICKER_MINUTES`; queries still see at most `history` of it): the ticker is summed from it, so a
    /// trade updates one candle.
    candles: Vec<Ring<Candle>>,
    /// Candles a query sees per interval (`market_data.candles_history`).
    history: usize,
}

impl SymbolMd {
    /// Adds a finished minute's candle to every longer interval's newest candle, or opens the
    /// interval's next candle with it. Minute boundaries are boundaries of every interval, so
    /// this equals adding the minute's trades one by one.
    fn fold_minute(&mut self, minute: &Candle) {
        for interval in &Interval::ALL[1..] {
            let open = interval.open_time(minute.open_time);
            let ring = &mut self.candles[*interval as usize];
            match ring.last_mut() {
                Some(c) if c.open_time >= open => c.merge(minute),
                _ => ring.push(Candle {
                    open_time: open,
                    ..*minute
                }),
            }
        }
    }

    /// The newest candle of `interval` as a query sees it: the ring's newest merged with the
    /// open minute's candle (not folded yet), or that minute's alone when it opens a new
    /// interval. `None`: no trade yet, or `interval` is 1m (its ring is always current).
    fn open_candle(&self, interval: Interval) -> Option<(Candle, bool)> {
        if interval == Interval::M1 {
            return None;
        }
        let minute = self.candles[Interval::M1 as usize].last()?;
        let open = interval.open_time(minute.open_time);
        Some(match self.candles[interval as usize].last() {
            Some(c) if c.open_time >= open => {
                let mut c = *c;
                c.merge(minute);
                (c, false)
            }
            _ => (
                Candle {
                    open_time: open,
                    ..*minute
                },
                true,
            ),
        })
    }

    #[inline]
    fn idx(&self, price: Price) -> usize {
        (price.0 - self.price_min) as usize
    }

    #[inline]
    fn side(&mut self, side: Side) -> &mut Levels {
        &mut self.sides[side as usize]
    }

    /// Marks a level as changed by this command (remembering its values before) and returns it.
    #[inline]
    fn touch(&mut self, side: Side, idx: usize) -> &mut Levels {
        let lv = &mut self.sides[side as usize].lv[idx];
        let fresh = !lv.dirty;
        lv.dirty = true;
        self.dirty[self.dirty_len] = Dirty {
            side,
            idx: idx as u32,
            qty: lv.qty,
            count: lv.count,
        };
        self.dirty_len += usize::from(fresh);
        &mut self.sides[side as usize]
    }

    /// An order joins a level showing `visible`.
    fn join(&mut self, side: Side, price: Price, visible: u64, mark: bool) {
        let idx = self.idx(price);
        let l = if mark {
            self.touch(side, idx)
        } else {
            self.side(side)
        };
        l.lv[idx].qty += visible;
        l.lv[idx].count += 1;
        if l.lv[idx].count == 1 {
            l.occupied.set(idx);
        }
    }

    /// An order showing `visible` leaves a level. (Saturating: a plain order is not tracked
    /// per order, so a stream that names an order this builder never saw — a builder started
    /// with `new` beside an engine that already had orders, instead of `from_engine` — must
    /// not wrap a level around; such a builder's depth is wrong either way.)
    #[inline]
    fn leave(&mut self, side: Side, price: Price, visible: u64) {
        let idx = self.idx(price);
        let l = self.touch(side, idx);
        debug_assert!(l.lv[idx].qty >= visible && l.lv[idx].count > 0);
        l.lv[idx].qty = l.lv[idx].qty.saturating_sub(visible);
        l.lv[idx].count = l.lv[idx].count.saturating_sub(1);
        if l.lv[idx].count == 0 {
            debug_assert_eq!(l.lv[idx].qty, 0);
            // Zero whatever the stream said: a level without orders is empty (what
            // `copy_from` relies on).
            l.lv[idx].qty = 0;
            l.occupied.clear(idx);
        }
    }

    /// A plain resting order (showing its whole open quantity) shows `taken` less, and leaves
    /// its level if `gone`. One path for both, without a branch on which.
    #[inline]
    fn take(&mut self, side: Side, price: Price, taken: u64, gone: bool) {
        let idx = self.idx(price);
        let l = self.touch(side, idx);
        let lv = &mut l.lv[idx];
        debug_assert!(lv.qty >= taken && lv.count >= u32::from(gone));
        lv.qty = lv.qty.saturating_sub(taken);
        lv.count = lv.count.saturating_sub(u32::from(gone));
        if lv.count == 0 {
            debug_assert_eq!(lv.qty, 0);
            lv.qty = 0;
            l.occupied.clear(idx);
        }
    }

    /// A resting order's shown quantity goes from `from` to `to`.
    #[inline]
    fn reshow(&mut self, side: Side, price: Price, from: u64, to: u64) {
        if from != to {
            let idx = self.idx(price);
            let l = self.touch(side, idx);
            debug_assert!(l.lv[idx].qty >= from);
            l.lv[idx].qty = l.lv[idx].qty.saturating_sub(from) + to;
        }
    }

    fn best(&self, side: Side) -> Option<(Price, Qty)> {
        let l = &self.sides[side as usize];
        let i = match side {
            Side::Buy => l.occupied.last(),
            Side::Sell => l.occupied.first(),
        };
        i.map(|i| (Price(self.price_min + i as i64), Qty(l.lv[i].qty)))
    }

    /// Levels of one side best first, at most `max`.
    fn each_level(&self, side: Side, max: usize, mut f: impl FnMut(Price, Qty, u32)) {
        let l = &self.sides[side as usize];
        let mut cur = match side {
            Side::Buy => l.occupied.last(),
            Side::Sell => l.occupied.first(),
        };
        let mut n = 0;
        while let Some(i) = cur {
            if n == max {
                return;
            }
            f(
                Price(self.price_min + i as i64),
                Qty(l.lv[i].qty),
                l.lv[i].count,
            );
            n += 1;
            cur = match side {
                Side::Buy if i > 0 => l.occupied.next_at_or_below(i - 1),
                Side::Sell if i + 1 < l.lv.len() => l.occupied.next_at_or_above(i + 1),
                _ => None,
            };
        }
    }
}

impl Levels {
    /// Each occupied level's index, lowest first.
    fn each_occupied(&self, mut f: impl FnMut(usize)) {
        let mut cur = self.occupied.first();
        while let Some(i) = cur {
            f(i);
            cur = if i + 1 < self.lv.len() {
                self.occupied.next_at_or_above(i + 1)
            } else {
                None
            };
        }
    }
}

impl SymbolMd {
    /// Copies `src` (same band and capacities) without allocating, in time proportional to
    /// the levels either side holds, not to the band (a band may have millions of levels; the
    /// copy runs on the gateway thread). A level is not at its default (empty, clean) only
    /// while it is occupied (`count > 0`; a level whose last order leaves is zeroed, whatever
    /// the stream said) or touched by the current command (listed in `dirty`), so clearing
    /// those of `self` and copying those of `src` copies everything.
    fn copy_from(&mut self, src: &SymbolMd) {
        assert_eq!(
            (self.price_min, self.sides[0].lv.len(), self.candles.len()),
            (src.price_min, src.sides[0].lv.len(), src.candles.len()),
            "copy_from between builders of different configurations"
        );
        self.tick_size = src.tick_size;
        for d in &self.dirty[..self.dirty_len] {
            self.sides[d.side as usize].lv[d.idx as usize] = Level::default();
        }
        for (d, s) in self.sides.iter_mut().zip(&src.sides) {
            while let Some(i) = d.occupied.first() {
                d.lv[i] = Level::default();
                d.occupied.clear(i);
            }
            s.each_occupied(|i| {
                d.lv[i] = s.lv[i];
                d.occupied.set(i);
            });
        }
        for e in &src.dirty[..src.dirty_len] {
            let i = e.idx as usize;
            self.sides[e.side as usize].lv[i] = src.sides[e.side as usize].lv[i];
        }
        self.dirty[..src.dirty_len].copy_from_slice(&src.dirty[..src.dirty_len]);
        self.dirty_len = src.dirty_len;
        self.md_seq = src.md_seq;
        self.pending_trades = src.pending_trades;
        self.touched = src.touched;
        self.last_price = src.last_price;
        self.tape.copy_from(&src.tape);
        for (d, s) in self.candles.iter_mut().zip(&src.candles) {
            d.copy_from(s);
        }
    }
}

/// The market-data builder for every configured symbol (see the module documentation).
#[derive(Debug)]
pub struct MarketData {
    symbols: Vec<SymbolMd>,
    /// Records, by slot, of the untriggered stops and resting icebergs; an entry is current
    /// while its bit in `held` is set (other entries are stale and never read).
    records: Vec<MdOrder>,
    /// One bit per slot: `records[slot]` is current. 128 KiB for 2^20 slots, where the
    /// records are 48 MiB: a fill or cancel of a plain order reads one bit of it.
    held: Vec<u64>,
    /// The command's active (taking) order: accepted, triggered or re-priced in this command,
    /// and not resting yet. None while its `leaves` is 0 (no order is accepted with nothing
    /// open, and one with nothing left will not rest): a plain struct, not an `Option`, so
    /// settling it or making another order active copies no tag-and-payload around.
    active: MdOrder,
    /// Symbols touched by the current command.
    touched: Vec<u16>,
    /// Scratch for one update's changed levels.
    changes: Vec<LevelChange>,
    /// Engine time: the latest command time seen.
    now_ns: u64,
}

impl MarketData {
    /// The heap bytes [`MarketData::new`] allocates for a validated config, as (per order
    /// slot, per symbol) ([`crate::memory`]).
    pub(crate) fn bytes_for(config: &Config) -> (u64, u64) {
        use std::mem::size_of;
        let md = &config.market_data;
        let history = md.candles_history as usize;
        let candles = Interval::ALL
            .iter()
            .map(|&i| match i {
                Interval::M1 => history.max(TICKER_MINUTES),
                _ => history,
            })
            .sum::<usize>()
            * size_of::<Candle>();
        let per_symbol = |n: usize| {
            (2 * n * size_of::<Level>()
                + (2 * n + 1) * size_of::<Dirty>()
                + md.tape_len as usize * size_of::<MdTrade>()
                + candles) as u64
                + 2 * LevelBitmap::bytes_for(n)
        };
        let levels = |s: &crate::config::SymbolConfig| s.price_levels() as usize;
        let changes_max = config.symbols.iter().map(|s| 2 * levels(s) + 1).max();
        let slots = crate::matching::order_id_modulus(config.capacity.orders_max) as usize;
        let orders = (slots * size_of::<MdOrder>() + slots.div_ceil(64) * size_of::<u64>()) as u64;
        let symbols = config
            .symbols
            .iter()
            .map(|s| per_symbol(levels(s)))
            .sum::<u64>()
            + (changes_max.unwrap_or(0) * size_of::<LevelChange>()) as u64;
        (orders, symbols)
    }

    /// An empty builder for a validated config: every array, ring and scratch buffer is
    /// allocated here, sized from the config (symbols' price bands, `capacity.orders_max`,
    /// `[market_data]`).
    pub fn new(config: &Config) -> MarketData {
        let md = &config.market_data;
        let symbols: Vec<SymbolMd> = config
            .symbols
            .iter()
            .map(|s| {
                let n = s.price_levels() as usize;
                SymbolMd {
                    price_min: s.price_min,
                    tick_size: s.tick_size,
                    sides: [Levels::new(n), Levels::new(n)],
                    dirty: vec![Dirty::default(); 2 * n + 1],
                    dirty_len: 0,
                    md_seq: 0,
                    pending_trades: 0,
                    touched: false,
                    last_price: None,
                    tape: Ring::new(md.tape_len as usize),
                    candles: Interval::ALL
                        .iter()
                        .map(|&i| {
                            let history = md.candles_history as usize;
                            Ring::new(match i {
                                Interval::M1 => history.max(TICKER_MINUTES),
                                _ => history,
                            })
                        })
                        .collect(),
                    history: md.candles_history as usize,
                }
            })
            .collect();
        let changes_max = symbols.iter().map(|s| s.dirty.len()).max().unwrap_or(0);
        // One entry per order-id residue: the engine never has two live orders whose ids are
        // equal modulo this (docs/matching.md, "Order ids"), so `id & mask` is a slot.
        let slots = crate::matching::order_id_modulus(config.capacity.orders_max) as usize;
        MarketData {
            touched: Vec::with_capacity(symbols.len()),
            symbols,
            // Zeroed, so the pages of slots that never hold a stop or an iceberg stay untouched.
            records: vec![MdOrder::default(); slots],
            held: vec![0; slots.div_ceil(64)],
            active: MdOrder::default(),
            changes: Vec::with_capacity(changes_max),
            now_ns: 0,
        }
    }

    /// A builder that starts from an engine's current state (after recovery from a snapshot):
    /// the visible book, the last trade prices and engine time. `md_seq` starts at 0; the tape,
    /// candles and ticker start empty (a replay of the whole journal rebuilds them instead).
    pub fn from_engine(engine: &Engine) -> MarketData {
        let mut md = MarketData::new(engine.config());
        md.now_ns = engine.now_ns();
        for s in 0..md.symbols.len() {
            let symbol = SymbolId(s as u16);
            md.symbols[s].last_price = engine.matcher().last_trade_price(symbol);
            engine.for_each_order(symbol, |section, v| {
                let stop = matches!(section, BookSection::BuyStops | BookSection::SellStops);
                let o = MdOrder {
                    id: v.order_id.0,
                    price: v.price,
                    leaves: v.leaves_qty.0,
                    visible: v.visible_qty.0,
                    display: v.display_qty.0,
                    symbol,
                    side: v.side,
                    stop,
                };
                if stop || o.display != 0 {
                    md.hold(o);
                }
                if !stop {
                    md.symbols[s].join(v.side, v.price, v.visible_qty.0, false);
                }
            });
        }
        md
    }

    /// Makes this builder an exact copy of `src` (same config: the same symbols, bands and
    /// capacities), without allocating, in time proportional to what either builder holds
    /// (occupied and touched levels, ring items, flagged records), not to its capacity. Used
    /// to hand the gateway's builder to the web edge at one point of the output stream, so that
    /// the web edge's copy, fed the outputs after that point, stays equal to it.
    ///
    /// Panics if the two were made for different configurations (other sizes).
    pub fn copy_from(&mut self, src: &MarketData) {
        assert_eq!(
            (self.symbols.len(), self.records.len()),
            (src.symbols.len(), src.records.len()),
            "copy_from between builders of different configurations"
        );
        for (d, s) in self.symbols.iter_mut().zip(&src.symbols) {
            d.copy_from(s);
        }
        self.held.copy_from_slice(&src.held);
        // Only the records whose bit is set are ever read.
        for (k, &word) in self.held.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let slot = k * 64 + bits.trailing_zeros() as usize;
                self.records[slot] = src.records[slot];
                bits &= bits - 1;
            }
        }
        self.active = src.active;
        self.touched.clear();
        self.touched.extend_from_slice(&src.touched);
        self.changes.clear();
        self.changes.extend_from_slice(&src.changes);
        self.now_ns = src.now_ns;
    }

    #[inline]
    fn slot(&self, id: OrderId) -> usize {
        // The engine's slot: no two live orders share it (docs/matching.md, "Order ids").
        (id.0 & (self.records.len() as u64 - 1)) as usize
    }

    /// The slot of the stop or resting iceberg with this id, if the mirror holds its record.
    #[inline]
    fn record_of(&self, id: OrderId) -> Option<usize> {
        let slot = self.slot(id);
        (self.held[slot / 64] & (1 << (slot % 64)) != 0 && self.records[slot].id == id.0)
            .then_some(slot)
    }

    /// Keeps the record of a stop or a resting iceberg.
    #[inline]
    fn hold(&mut self, o: MdOrder) {
        let slot = self.slot(OrderId(o.id));
        self.records[slot] = o;
        self.held[slot / 64] |= 1 << (slot % 64);
    }

    /// Whether the builder has this symbol (a builder made for a config with fewer symbols
    /// than the engine's ignores the others' events instead of panicking).
    #[inline]
    fn knows_symbol(&self, symbol: SymbolId) -> bool {
        (symbol.0 as usize) < self.symbols.len()
    }

    /// Drops a record: its order left, or became active.
    #[inline]
    fn release(&mut self, slot: usize) {
        self.held[slot / 64] &= !(1 << (slot % 64));
    }

    fn touch_symbol(&mut self, symbol: SymbolId) {
        let s = &mut self.symbols[symbol.0 as usize];
        if !s.touched {
            s.touched = true;
            self.touched.push(symbol.0);
        }
    }

    /// The active order rests (showing its peak) if anything is left of it. Inline: most
    /// calls find no active order (a cancel's command, or the first order of a command).
    #[inline(always)]
    fn settle_active(&mut self) {
        if self.active.leaves != 0 {
            let o = self.active;
            self.active.leaves = 0;
            self.rest(o);
        }
    }

    /// `o`, with something left, rests.
    fn rest(&mut self, mut o: MdOrder) {
        o.visible = o.peak();
        if o.display != 0 {
            self.hold(o);
        }
        self.symbols[o.symbol.0 as usize].join(o.side, o.price, o.visible, true);
        self.touch_symbol(o.symbol);
    }

    fn activate(&mut self, o: MdOrder) {
        self.settle_active();
        self.active = o;
    }

    /// Whether the order with this id is the active one.
    #[inline]
    fn is_active(&self, id: OrderId) -> bool {
        self.active.leaves != 0 && self.active.id == id.0
    }

    /// If `id` is the active order: it has `leaves` open now (gone at 0). Returns whether it was.
    #[inline]
    fn reduce_active(&mut self, id: OrderId, leaves: u64) -> bool {
        let active = self.is_active(id);
        if active {
            self.active.leaves = leaves;
        }
        active
    }

    /// A resting order showed `taken` less than it did and has `leaves` open: shrink what it
    /// shows, refill an exhausted iceberg peak, or take it off the book when nothing is left.
    /// `record`: its slot if it is an iceberg; a plain order showed its whole open quantity at
    /// `side`/`price`.
    #[inline]
    fn reduce_resting(
        &mut self,
        record: Option<usize>,
        (symbol, side, price): (SymbolId, Side, Price),
        taken: u64,
        leaves: u64,
    ) {
        let s = &mut self.symbols[symbol.0 as usize];
        match record {
            None => s.take(side, price, taken, leaves == 0),
            Some(slot) => {
                let o = &mut self.records[slot];
                debug_assert!(!o.stop && (o.side, o.price) == (side, price));
                let before = o.visible;
                o.leaves = leaves;
                if leaves == 0 {
                    s.leave(side, price, before);
                    self.release(slot);
                } else {
                    o.visible = before.saturating_sub(taken).min(leaves);
                    if o.visible == 0 {
                        o.visible = o.peak();
                    }
                    s.reshow(side, price, before, o.visible);
                }
            }
        }
        self.touch_symbol(symbol);
    }

    fn trade<F: FnMut(MdMessage<'_>)>(&mut self, t: &Trade, out: &mut F) {
        if !self.knows_symbol(t.symbol) {
            return;
        }
        // The maker rests (the engine's event order: the active order is always the taker)
        // at the trade price, on the taker's opposite side.
        debug_assert!(!self.is_active(t.maker.order_id));
        let record = self.record_of(t.maker.order_id);
        let at = (t.symbol, t.taker_side.opposite(), t.price);
        self.reduce_resting(record, at, t.qty.0, t.maker.leaves_qty.0);
        self.reduce_active(t.taker.order_id, t.taker.leaves_qty.0);
        self.touch_symbol(t.symbol);
        let s = &mut self.symbols[t.symbol.0 as usize];
        s.pending_trades += 1;
        s.last_price = Some(t.price);
        let m = MdTrade {
            symbol: t.symbol,
            md_seq: s.md_seq + 1,
            trade_id: t.trade_id,
            ts: t.ts,
            price: t.price,
            qty: t.qty,
            taker_side: t.taker_side,
        };
        s.tape.push(m);
        // A trade updates the 1m candle only. The longer intervals take each minute's candle
        // whole when the next minute opens (`SymbolMd::fold_minute`), a query adds the open
        // minute's (`MarketData::candles`), and the ticker sums the 1m ring: 1 candle update
        // per trade instead of 9.
        let open = Interval::M1.open_time(t.ts);
        let minutes = &mut s.candles[Interval::M1 as usize];
        match minutes.last_mut() {
            Some(c) if c.open_time >= open => c.add(t.price, t.qty),
            _ => {
                if let Some(&done) = minutes.last() {
                    s.fold_minute(&done);
                }
                s.candles[Interval::M1 as usize].push(Candle::first(open, t.price, t.qty));
            }
        }
        out(MdMessage::Trade(&m));
    }

    /// Applies one event of the current command; trades are handed to `out` at once.
    pub fn apply<F: FnMut(MdMessage<'_>)>(&mut self, event: &Event, out: &mut F) {
        match *event {
            Event::Accepted {
                symbol,
                order_id,
                side,
                order_type,
                price,
                qty,
                display_qty,
                ..
            } => {
                if !self.knows_symbol(symbol) {
                    return;
                }
                let o = MdOrder {
                    id: order_id.0,
                    price,
                    leaves: qty.0,
                    visible: 0,
                    display: display_qty.0,
                    symbol,
                    side,
                    stop: order_type.is_stop(),
                };
                if o.stop {
                    self.hold(o);
                } else {
                    self.activate(o);
                }
            }
            Event::Triggered { order_id, .. } => {
                if let Some(slot) = self.record_of(order_id) {
                    debug_assert!(self.records[slot].stop);
                    self.release(slot);
                    let o = MdOrder {
                        stop: false,
                        ..self.records[slot]
                    };
                    self.activate(o);
                }
            }
            Event::Trade(ref t) => self.trade(t, out),
            Event::Cancelled {
                symbol,
                order_id,
                side,
                price,
                qty,
                leaves_qty,
                ..
            } => {
                if self.reduce_active(order_id, leaves_qty.0) || !self.knows_symbol(symbol) {
                    return;
                }
                let record = self.record_of(order_id);
                match record {
                    Some(slot) if self.records[slot].stop => {
                        self.records[slot].leaves = leaves_qty.0;
                        if leaves_qty.0 == 0 {
                            self.release(slot);
                        }
                    }
                    _ => self.reduce_resting(record, (symbol, side, price), qty.0, leaves_qty.0),
                }
            }
            Event::Amended {
                symbol,
                order_id,
                side,
                price,
                qty,
                prev_price,
                prev_qty,
                ..
            } => {
                // An amend is the first event of its command: nothing is active yet.
                debug_assert!(!self.is_active(order_id));
                if self.is_active(order_id) {
                    self.active.price = price;
                    self.active.leaves = qty.0;
                    return;
                }
                if !self.knows_symbol(symbol) {
                    return;
                }
                let record = self.record_of(order_id);
                if let Some(slot) = record.filter(|&slot| self.records[slot].stop) {
                    let o = &mut self.records[slot];
                    o.price = price;
                    o.leaves = qty.0;
                    return;
                }
                // Resting: a plain order showed its whole open quantity.
                let shown = record.map_or(prev_qty.0, |slot| self.records[slot].visible);
                if price == prev_price && qty.0 <= prev_qty.0 {
                    // Reduced in place: keeps its place; shows at most the new quantity.
                    let visible = shown.min(qty.0);
                    if let Some(slot) = record {
                        let o = &mut self.records[slot];
                        o.leaves = qty.0;
                        o.visible = visible;
                    }
                    self.symbols[symbol.0 as usize].reshow(side, price, shown, visible);
                    self.touch_symbol(symbol);
                } else {
                    // Re-priced or grown: leaves its level and becomes active.
                    self.symbols[symbol.0 as usize].leave(side, prev_price, shown);
                    self.touch_symbol(symbol);
                    let display = record.map_or(0, |slot| self.records[slot].display);
                    if let Some(slot) = record {
                        self.release(slot);
                    }
                    self.activate(MdOrder {
                        id: order_id.0,
                        price,
                        leaves: qty.0,
                        visible: 0,
                        display,
                        symbol,
                        side,
                        stop: false,
                    });
                }
            }
            _ => {}
        }
    }

    /// Ends the current command, stamped `ts_ns` (engine time is the latest stamp so far):
    /// the active order rests if anything is left of it, and each symbol the command touched
    /// gets its [`MdMessage::Depth`] if any level changed or it traded.
    pub fn end_command<F: FnMut(MdMessage<'_>)>(&mut self, ts_ns: u64, out: &mut F) {
        self.settle_active();
        // Clamped as engine time is (`matching::TIME_MAX_NS`).
        self.now_ns = self.now_ns.max(ts_ns.min(crate::matching::TIME_MAX_NS));
        for k in 0..self.touched.len() {
            let symbol = self.touched[k];
            let s = &mut self.symbols[symbol as usize];
            s.touched = false;
            self.changes.clear();
            for d in &s.dirty[..s.dirty_len] {
                let l = &mut s.sides[d.side as usize];
                let i = d.idx as usize;
                l.lv[i].dirty = false;
                if l.lv[i].qty != d.qty || l.lv[i].count != d.count {
                    self.changes.push(LevelChange {
                        side: d.side,
                        price: Price(s.price_min + i as i64),
                        qty: Qty(l.lv[i].qty),
                        count: l.lv[i].count,
                    });
                }
            }
            s.dirty_len = 0;
            // Bids best (highest) first, then asks best (lowest) first.
            self.changes.sort_unstable_by_key(|c| match c.side {
                Side::Buy => (0, -c.price.0),
                Side::Sell => (1, c.price.0),
            });
            let trades = s.pending_trades;
            s.pending_trades = 0;
            // One test, not two: whether a command traded is as random as the order flow, while
            // an update with neither trades nor changed levels is rare.
            if (trades as usize | self.changes.len()) == 0 {
                continue;
            }
            s.md_seq += 1;
            out(MdMessage::Depth(&DepthUpdate {
                symbol: SymbolId(symbol),
                md_seq: s.md_seq,
                ts: self.now_ns,
                trades,
                changes: &self.changes,
            }));
        }
        self.touched.clear();
    }

    /// Applies a whole command: its events, then [`MarketData::end_command`].
    pub fn command<'e, F: FnMut(MdMessage<'_>)>(
        &mut self,
        ts_ns: u64,
        events: impl IntoIterator<Item = &'e Event>,
        out: &mut F,
    ) {
        for e in events {
            self.apply(e, out);
        }
        self.end_command(ts_ns, out);
    }

    // ------------------------------------------------------------------ queries

    /// Number of symbols.
    pub fn symbols(&self) -> usize {
        self.symbols.len()
    }

    /// Engine time as the builder has seen it (the latest command's).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The symbol's latest `md_seq` (0 before its first update). Panics on an unknown symbol.
    pub fn md_seq(&self, symbol: SymbolId) -> u64 {
        self.symbols[symbol.0 as usize].md_seq
    }

    /// Levels of one side, best first, at most `levels_max`: `(price, visible qty, orders)`.
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        f: impl FnMut(Price, Qty, u32),
    ) {
        self.symbols[symbol.0 as usize].each_level(side, levels_max, f);
    }

    /// A depth snapshot: every level (at most `levels_max` per side) as a [`LevelChange`],
    /// bids best first then asks best first; returns the `md_seq` it is current at, so a
    /// subscriber applies the updates after it.
    pub fn snapshot(
        &self,
        symbol: SymbolId,
        levels_max: usize,
        mut f: impl FnMut(LevelChange),
    ) -> u64 {
        let s = &self.symbols[symbol.0 as usize];
        for side in [Side::Buy, Side::Sell] {
            s.each_level(side, levels_max, |price, qty, count| {
                f(LevelChange {
                    side,
                    price,
                    qty,
                    count,
                })
            });
        }
        s.md_seq
    }

    /// One level now: `(visible qty, orders)`, `(0, 0)` if empty or outside the band.
    pub fn level(&self, symbol: SymbolId, side: Side, price: Price) -> (Qty, u32) {
        let s = &self.symbols[symbol.0 as usize];
        let l = &s.sides[side as usize];
        match usize::try_from(price.0 - s.price_min) {
            Ok(i) if i < l.lv.len() => (Qty(l.lv[i].qty), l.lv[i].count),
            _ => (Qty(0), 0),
        }
    }

    /// The symbol's price band: `(price_min, levels)`; level `i` is price `price_min + i`.
    pub fn band(&self, symbol: SymbolId) -> (i64, usize) {
        let s = &self.symbols[symbol.0 as usize];
        (s.price_min, s.sides[0].lv.len())
    }

    /// Best bid `(price, visible qty)` (L1).
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.symbols[symbol.0 as usize].best(Side::Buy)
    }

    /// Best ask `(price, visible qty)` (L1).
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.symbols[symbol.0 as usize].best(Side::Sell)
    }

    /// The symbol's last trade price.
    pub fn last_price(&self, symbol: SymbolId) -> Option<Price> {
        self.symbols[symbol.0 as usize].last_price
    }

    /// The latest `limit` trades of the tape (at most `tape_len`), oldest first.
    pub fn tape(&self, symbol: SymbolId, limit: usize, f: impl FnMut(&MdTrade)) {
        self.symbols[symbol.0 as usize]
            .tape
            .for_each_latest(limit, f);
    }

    /// The latest `limit` candles of an interval (at most `candles_history`), oldest first.
    /// The last one may still be open (more trades in its interval may follow).
    pub fn candles(
        &self,
        symbol: SymbolId,
        interval: Interval,
        limit: usize,
        mut f: impl FnMut(&Candle),
    ) {
        let s = &self.symbols[symbol.0 as usize];
        let ring = &s.candles[interval as usize];
        match s.open_candle(interval) {
            None => ring.for_each_latest(limit.min(s.history), f),
            Some((open, false)) => {
                // The ring's newest candle, with the open minute merged in, stands for it.
                let n = ring.len().min(limit);
                let mut k = 0;
                ring.for_each_latest(n, |c| {
                    k += 1;
                    f(if k == n { &open } else { c })
                });
            }
            Some((open, true)) => {
                // One candle more than the ring holds, the ring's oldest dropped when full.
                let n = (ring.len() + 1).min(ring.capacity()).min(limit);
                if n > 0 {
                    ring.for_each_latest(n - 1, &mut f);
                    f(&open);
                }
            }
        }
    }

    /// Candles kept for an interval now.
    pub fn candle_count(&self, symbol: SymbolId, interval: Interval) -> usize {
        let s = &self.symbols[symbol.0 as usize];
        let ring = &s.candles[interval as usize];
        match s.open_candle(interval) {
            Some((_, true)) => (ring.len() + 1).min(ring.capacity()),
            _ => ring.len().min(s.history),
        }
    }

    /// The symbol's tick size (quote volume = notional ticks × tick size).
    pub fn tick_size(&self, symbol: SymbolId) -> u64 {
        self.symbols[symbol.0 as usize].tick_size
    }

    /// The 24h rolling ticker at the builder's engine time (see [`Ticker`] for the window).
    pub fn ticker(&self, symbol: SymbolId) -> Ticker {
        let s = &self.symbols[symbol.0 as usize];
        let now = self.now_ns;
        let this_minute = now / MINUTE_NS * MINUTE_NS;
        let open_time = this_minute.saturating_sub((WINDOW_MINUTES as u64 - 1) * MINUTE_NS);
        let mut t = Ticker {
            open_time,
            close_time: now,
            last: s.last_price,
            best_bid: s.best(Side::Buy),
            best_ask: s.best(Side::Sell),
            ..Ticker::default()
        };
        // The 1m ring holds every minute with trades among the window's 1440 (it keeps at
        // least 1441 candles, one per minute that traded, and at most one of them is after
        // `now`: see `TICKER_MINUTES`), oldest first.
        s.candles[Interval::M1 as usize].for_each_latest(TICKER_MINUTES, |b| {
            if b.open_time < open_time || b.open_time > now {
                return;
            }
            if t.open.is_none() {
                t.open = Some(b.open);
            }
            t.high = Some(t.high.map_or(b.high, |h| h.max(b.high)));
            t.low = Some(t.low.map_or(b.low, |l| l.min(b.low)));
            t.volume = t.volume.saturating_add(b.volume);
            t.notional_ticks += b.notional_ticks;
            t.trades += b.trades;
        });
        t.quote_volume = t.notional_ticks * u128::from(s.tick_size);
        t
    }
}
