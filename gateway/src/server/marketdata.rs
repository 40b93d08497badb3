//! Market-data publication on the gateway thread (docs/market-data.md, "Publication"; the
//! messages are in `protocol::marketdata`).
//!
//! The server feeds every event it drains from the backend, and every command's `Done`, to a
//! [`MarketData`] builder; the builder's trades and depth updates go straight into the outbound
//! buffers of the connections subscribed to them, as unsequenced frames, while a connection has
//! room beyond a reserve kept for its session's own traffic. A connection without that room is
//! **conflated** instead of queued: for each symbol the publisher marks the levels changed since
//! what it last sent (one bit per price level and side), and when the connection has room again
//! it sends one depth message with the current state of every marked level, covering the
//! `md_seq` range it replaces. A subscription's snapshot is the same mechanism starting from an
//! empty book with every occupied level marked. Nothing here waits, nothing is queued without
//! bound, and nothing allocates after start-up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbook_engine::book::bitmap::LevelBitmap;
use ringbook_engine::marketdata::{Interval, LevelChange, MarketData, MdMessage};
use ringbook_engine::{Event, Price, RejectCode, Side, SymbolId};

use super::session::Conn;
use super::Stats;
use crate::protocol::marketdata::{
    Channel, DepthFrame, MdMsg, MdRequest, CANDLE_END, CANDLE_SNAPSHOT, DEPTH_END,
    DEPTH_LEVELS_PER_FRAME, DEPTH_SNAPSHOT,
};
use crate::protocol::FRAME_BYTES_MAX;

/// Market data given to a connection is written at most this often (the updates of the
/// meantime go out in one write).
pub const MD_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
/// Tickers and candles go out at most this often per subscription while they change.
pub const TICKER_INTERVAL: Duration = Duration::from_millis(100);
/// Candles sent when a candle subscription starts (the latest ones of the interval).
pub const CANDLE_HISTORY_SENT: usize = 100;
/// Depth frames of one update encoded once for all its subscribers (larger updates are encoded
/// per subscriber).
const ENCODED_FRAMES_MAX: usize = 8;

/// One connection's subscriptions to one symbol.
#[derive(Clone, Copy, Debug, Default)]
struct Sub {
    depth: bool,
    trades: bool,
    ticker: bool,
    /// Candle intervals subscribed (bit = `Interval as u8`).
    candles: u8,
    ticker_due: bool,
    /// Intervals whose current candle changed since it was last sent.
    candles_due: u8,
    /// Intervals whose history is still to be sent.
    candle_history_due: u8,
}

impl Sub {
    /// Subscribed to anything of the symbol: the connection is among its watchers.
    fn any(&self) -> bool {
        self.depth || self.trades || self.ticker || self.candles != 0
    }
}

/// Depth owed to one connection for one symbol: the levels changed since what it last got.
#[derive(Debug)]
struct Owed {
    active: bool,
    /// Starts from an empty book (a subscription's snapshot).
    snapshot: bool,
    /// The first update it replaces.
    first: u64,
    /// The symbol's lowest price: bit `i` of `marked` is price `price_min + i`.
    price_min: i64,
    /// Marked levels, bids and asks.
    marked: [LevelBitmap; 2],
}

/// The publisher: the builder, every connection's subscriptions and what it is owed.
pub(crate) struct Publisher {
    md: MarketData,
    symbols: usize,
    subs: Vec<Sub>,
    /// Per symbol, the connections subscribed to anything of it, each once: a message costs
    /// its symbol's subscribers, not the configured connection count (`conns_max` up to 4096).
    watchers: Vec<Vec<u32>>,
    /// Where connection `c` sits in `watchers[s]` (index `c * symbols + s`), or [`UNWATCHED`].
    watch_pos: Vec<u32>,
    owed: Vec<Owed>,
    /// Connections owed depth, and whether each is listed.
    pending: Vec<usize>,
    in_pending: Vec<bool>,
    /// Connections given market data since the last flush, and whether each is listed.
    md_dirty: Vec<usize>,
    in_md_dirty: Vec<bool>,
    last_flush: Instant,
    frame: [u8; FRAME_BYTES_MAX],
    last_tick: Instant,
    stats: Arc<Stats>,
}

/// `Publisher::watch_pos` of a connection not subscribed to the symbol.
const UNWATCHED: u32 = u32::MAX;

/// Lists connection `c` once.
fn mark(list: &mut Vec<usize>, listed: &mut [bool], c: usize) {
    if !listed[c] {
        listed[c] = true;
        list.push(c);
    }
}

/// Marks connection `c` for writing.
fn mark_dirty(conns: &mut [Conn], dirty: &mut Vec<usize>, c: usize) {
    if !conns[c].in_dirty {
        conns[c].in_dirty = true;
        dirty.push(c);
    }
}

/// Room for market data in `c`'s outbound buffer: a quarter of the buffer stays free for the
/// session's own messages (replies, fills, heartbeats).
fn room(conns: &mut [Conn], c: usize) -> usize {
    let reserve = conns[c].out.len() / 4;
    conns[c].out_room().saturating_sub(reserve)
}

fn side_index(side: Side) -> usize {
    side as usize
}

impl Publisher {
    /// A publisher for `conns` connections around a builder (new, or rebuilt from the journal
    /// or the engine's state).
    pub(crate) fn new(md: MarketData, conns: usize, now: Instant, stats: Arc<Stats>) -> Publisher {
        let symbols = md.symbols();
        let mut owed = Vec::with_capacity(conns * symbols);
        for _ in 0..conns {
            for s in 0..symbols {
                let (price_min, levels) = md.band(SymbolId(s as u16));
                owed.push(Owed {
                    active: false,
                    snapshot: false,
                    first: 0,
                    price_min,
                    marked: [LevelBitmap::new(levels), LevelBitmap::new(levels)],
                });
            }
        }
        Publisher {
            md,
            symbols,
            subs: vec![Sub::default(); conns * symbols],
            watchers: (0..symbols).map(|_| Vec::with_capacity(conns)).collect(),
            watch_pos: vec![UNWATCHED; conns * symbols],
            owed,
            pending: Vec::with_capacity(conns),
            in_pending: vec![false; conns],
            md_dirty: Vec::with_capacity(conns),
            in_md_dirty: vec![false; conns],
            last_flush: now,
            frame: [0u8; FRAME_BYTES_MAX],
            last_tick: now,
            stats,
        }
    }

    /// The builder (the web edge copies it at a [`super::bridge::WebOp::MdSync`]).
    pub(crate) fn md(&self) -> &MarketData {
        &self.md
    }

    /// A connection opened or closed: it has no subscriptions and is owed nothing.
    pub(crate) fn reset_conn(&mut self, c: usize) {
        for s in 0..self.symbols {
            self.subs[c * self.symbols + s] = Sub::default();
            Self::clear_owed(&mut self.owed[c * self.symbols + s]);
            self.sync_watch(c, s);
        }
    }

    /// Lists connection `c` among symbol `s`'s watchers while it subscribes to anything of
    /// it, and only then (O(1) both ways; the lists were sized for every connection at start).
    fn sync_watch(&mut self, c: usize, s: usize) {
        let k = c * self.symbols + s;
        let listed = self.watch_pos[k] != UNWATCHED;
        let list = &mut self.watchers[s];
        if self.subs[k].any() && !listed {
            self.watch_pos[k] = list.len() as u32;
            list.push(c as u32);
        } else if !self.subs[k].any() && listed {
            let at = self.watch_pos[k] as usize;
            list.swap_remove(at);
            if let Some(&moved) = list.get(at) {
                self.watch_pos[moved as usize * self.symbols + s] = at as u32;
            }
            self.watch_pos[k] = UNWATCHED;
        }
    }

    /// The connections subscribed to anything of symbol `s`.
    #[cfg(test)]
    fn watchers(&self, s: usize) -> &[u32] {
        &self.watchers[s]
    }

    fn clear_owed(o: &mut Owed) {
        if o.active {
            for m in &mut o.marked {
                while let Some(i) = m.first() {
                    m.clear(i);
                }
            }
        }
        o.active = false;
        o.snapshot = false;
    }

    /// One event of the command being routed.
    pub(crate) fn on_event(&mut self, e: &Event, conns: &mut [Conn]) {
        self.feed(conns, |md, mut out| md.apply(e, &mut out));
    }

    /// The end of a command stamped `ts`.
    pub(crate) fn on_done(&mut self, ts: u64, conns: &mut [Conn]) {
        self.feed(conns, |md, mut out| md.end_command(ts, &mut out));
    }

    /// Runs one step of the builder, fanning every market-data message it produces out to the
    /// subscribers (one indirect call per message: this is the gateway thread, not the engine's).
    fn feed(
        &mut self,
        conns: &mut [Conn],
        step: impl FnOnce(&mut MarketData, &mut dyn FnMut(MdMessage<'_>)),
    ) {
        let Publisher {
            md,
            symbols,
            subs,
            watchers,
            owed,
            pending,
            in_pending,
            md_dirty,
            in_md_dirty,
            frame,
            stats,
            ..
        } = self;
        step(md, &mut |m| {
            publish(
                m,
                *symbols,
                subs,
                watchers,
                owed,
                pending,
                in_pending,
                frame,
                stats,
                conns,
                md_dirty,
                in_md_dirty,
            )
        });
    }

    /// A subscribe or unsubscribe from connection `c`: acknowledged at once; a depth snapshot,
    /// the candle history and the ticker follow (now, or as soon as the connection has room).
    pub(crate) fn request(
        &mut self,
        c: usize,
        req: &MdRequest,
        conns: &mut [Conn],
        dirty: &mut Vec<usize>,
    ) -> Result<(), RejectCode> {
        let s = req.symbol.0 as usize;
        if s >= self.symbols {
            return Err(RejectCode::UnknownSymbol);
        }
        let k = c * self.symbols + s;
        let sub = &mut self.subs[k];
        let bit = 1u8 << (req.interval as u8);
        match (req.channel, req.subscribe) {
            (Channel::Depth, true) => {
                sub.depth = true;
                // The snapshot: every occupied level owed, from an empty book.
                let o = &mut self.owed[k];
                Self::clear_owed(o);
                o.active = true;
                o.snapshot = true;
                o.first = 0;
                let md = &self.md;
                for side in [Side::Buy, Side::Sell] {
                    let (price_min, _) = md.band(req.symbol);
                    let m = &mut o.marked[side_index(side)];
                    md.depth(req.symbol, side, usize::MAX, |p, _, _| {
                        m.set((p.0 - price_min) as usize)
                    });
                }
                if !self.in_pending[c] {
                    self.in_pending[c] = true;
                    self.pending.push(c);
                }
            }
            (Channel::Depth, false) => {
                sub.depth = false;
                Self::clear_owed(&mut self.owed[k]);
            }
            (Channel::Trades, on) => sub.trades = on,
            (Channel::Ticker, on) => {
                sub.ticker = on;
                sub.ticker_due = on;
            }
            (Channel::Candles, true) => {
                sub.candles |= bit;
                sub.candle_history_due |= bit;
                sub.candles_due &= !bit;
            }
            (Channel::Candles, false) => {
                sub.candles &= !bit;
                sub.candle_history_due &= !bit;
                sub.candles_due &= !bit;
            }
        }
        self.sync_watch(c, s);
        let ack = MdMsg::Subscribed {
            request_id: req.request_id,
            symbol: req.symbol,
            channel: req.channel,
            interval: if req.channel == Channel::Candles {
                req.interval as u8
            } else {
                0
            },
            active: req.subscribe,
            md_seq: self.md.md_seq(req.symbol),
        };
        let n = ack.encode(&mut self.frame);
        // The acknowledgement uses the reserve if it must: it is one frame per request.
        if !conns[c].push_out(&self.frame[..n]) {
            return Err(RejectCode::SlowConsumer);
        }
        mark_dirty(conns, dirty, c);
        // Snapshot, history and ticker now if there is room.
        self.send_owed(c, conns);
        self.send_due(c, s, None, conns);
        Ok(())
    }

    fn mark_md(list: &mut Vec<usize>, listed: &mut [bool], c: usize) {
        mark(list, listed, c);
    }

    /// Whether the loop should come back within [`MD_FLUSH_INTERVAL`] (market data waits to be
    /// written, or is owed).
    pub(crate) fn wants_turn(&self) -> bool {
        !self.md_dirty.is_empty() || !self.pending.is_empty()
    }

    /// Once per loop turn: depth owed to connections that now have room; tickers and changed
    /// candles at most every [`TICKER_INTERVAL`]; and every [`MD_FLUSH_INTERVAL`], the
    /// connections given market data since the last time are marked for writing (so a burst of
    /// updates costs each subscriber one write, not one per loop turn).
    pub(crate) fn pump(&mut self, now: Instant, conns: &mut [Conn], dirty: &mut Vec<usize>) {
        if !self.md_dirty.is_empty() && now.duration_since(self.last_flush) >= MD_FLUSH_INTERVAL {
            for &c in &self.md_dirty {
                self.in_md_dirty[c] = false;
                mark_dirty(conns, dirty, c);
            }
            self.md_dirty.clear();
            self.last_flush = now;
        }
        let mut i = 0;
        while i < self.pending.len() {
            let c = self.pending[i];
            if self.send_owed(c, conns) {
                self.in_pending[c] = false;
                self.pending.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if now.duration_since(self.last_tick) < TICKER_INTERVAL {
            return;
        }
        self.last_tick = now;
        for s in 0..self.symbols {
            let mut ticker = None;
            for w in 0..self.watchers[s].len() {
                let c = self.watchers[s][w] as usize;
                let sub = self.subs[c * self.symbols + s];
                if sub.ticker_due || sub.candles_due != 0 || sub.candle_history_due != 0 {
                    let t = *ticker.get_or_insert_with(|| self.md.ticker(SymbolId(s as u16)));
                    self.send_due(c, s, Some(t), conns);
                }
            }
        }
    }

    /// Sends what connection `c` is owed of depth, as far as its room allows; true when it is
    /// owed nothing more.
    fn send_owed(&mut self, c: usize, conns: &mut [Conn]) -> bool {
        let mut done = true;
        for s in 0..self.symbols {
            let k = c * self.symbols + s;
            if !self.owed[k].active {
                continue;
            }
            if conns[c].stream.is_none() {
                Self::clear_owed(&mut self.owed[k]);
                continue;
            }
            done &= self.send_owed_symbol(c, s, conns);
        }
        done
    }

    fn send_owed_symbol(&mut self, c: usize, s: usize, conns: &mut [Conn]) -> bool {
        let symbol = SymbolId(s as u16);
        let (price_min, _) = self.md.band(symbol);
        let k = c * self.symbols + s;
        loop {
            if room(conns, c) < FRAME_BYTES_MAX {
                return false;
            }
            let o = &mut self.owed[k];
            // Up to a frame's worth of marked levels, bids then asks (not cleared until sent).
            let mut frame = DepthFrame {
                symbol,
                flags: if o.snapshot { DEPTH_SNAPSHOT } else { 0 },
                first: o.first,
                last: self.md.md_seq(symbol),
                ts: self.md.now_ns(),
                count: 0,
                levels: [LevelChange::default(); DEPTH_LEVELS_PER_FRAME],
            };
            let mut taken = [(0usize, 0usize); DEPTH_LEVELS_PER_FRAME];
            let mut more = false;
            'collect: for (si, side) in [Side::Buy, Side::Sell].into_iter().enumerate() {
                let mut from = 0;
                while let Some(i) = o.marked[si].next_at_or_above(from) {
                    if usize::from(frame.count) == DEPTH_LEVELS_PER_FRAME {
                        more = true;
                        break 'collect;
                    }
                    let price = Price(price_min + i as i64);
                    let (qty, count) = self.md.level(symbol, side, price);
                    taken[usize::from(frame.count)] = (si, i);
                    frame.levels[usize::from(frame.count)] = LevelChange {
                        side,
                        price,
                        qty,
                        count,
                    };
                    frame.count += 1;
                    if i + 1 >= o.marked[si].len() {
                        break;
                    }
                    from = i + 1;
                }
            }
            if !more {
                frame.flags |= DEPTH_END;
            }
            let n = MdMsg::Depth(frame).encode(&mut self.frame);
            if !conns[c].push_out(&self.frame[..n]) {
                return false;
            }
            Self::mark_md(&mut self.md_dirty, &mut self.in_md_dirty, c);
            for &(si, i) in &taken[..usize::from(frame.count)] {
                o.marked[si].clear(i);
            }
            if !more {
                o.active = false;
                o.snapshot = false;
                Stats::inc(&self.stats.md_conflated);
                return true;
            }
        }
    }

    /// Ticker, candle history and changed candles of symbol `s` owed to connection `c`, as far
    /// as its room allows (`ticker`: computed by the caller for this round, or here).
    fn send_due(
        &mut self,
        c: usize,
        s: usize,
        ticker: Option<ringbook_engine::marketdata::Ticker>,
        conns: &mut [Conn],
    ) {
        let k = c * self.symbols + s;
        let symbol = SymbolId(s as u16);
        if self.subs[k].ticker_due && room(conns, c) >= FRAME_BYTES_MAX {
            let t = ticker.unwrap_or_else(|| self.md.ticker(symbol));
            let n = MdMsg::Ticker { symbol, ticker: t }.encode(&mut self.frame);
            if conns[c].push_out(&self.frame[..n]) {
                self.subs[k].ticker_due = false;
                Self::mark_md(&mut self.md_dirty, &mut self.in_md_dirty, c);
            }
        }
        for interval in Interval::ALL {
            let bit = 1u8 << (interval as u8);
            if self.subs[k].candle_history_due & bit != 0 {
                let count = self
                    .md
                    .candle_count(symbol, interval)
                    .min(CANDLE_HISTORY_SENT);
                if room(conns, c) < (count + 1) * FRAME_BYTES_MAX {
                    continue;
                }
                let mut sent = 0;
                let (frame, pushed) = (&mut self.frame, &mut sent);
                self.md
                    .candles(symbol, interval, CANDLE_HISTORY_SENT, |candle| {
                        *pushed += 1;
                        let flags = CANDLE_SNAPSHOT | if *pushed == count { CANDLE_END } else { 0 };
                        let n = MdMsg::Candle {
                            symbol,
                            interval,
                            flags,
                            candle: *candle,
                        }
                        .encode(frame);
                        conns[c].push_out(&frame[..n]);
                    });
                self.subs[k].candle_history_due &= !bit;
                self.subs[k].candles_due &= !bit;
                Self::mark_md(&mut self.md_dirty, &mut self.in_md_dirty, c);
            } else if self.subs[k].candles_due & bit != 0 && room(conns, c) >= FRAME_BYTES_MAX {
                let mut latest = None;
                self.md.candles(symbol, interval, 1, |x| latest = Some(*x));
                if let Some(candle) = latest {
                    let n = MdMsg::Candle {
                        symbol,
                        interval,
                        flags: 0,
                        candle,
                    }
                    .encode(&mut self.frame);
                    if conns[c].push_out(&self.frame[..n]) {
                        Self::mark_md(&mut self.md_dirty, &mut self.in_md_dirty, c);
                    }
                }
                self.subs[k].candles_due &= !bit;
            }
        }
    }
}

/// Hands one builder message to its subscribers (see the module documentation).
#[allow(clippy::too_many_arguments)]
fn publish(
    m: MdMessage<'_>,
    symbols: usize,
    subs: &mut [Sub],
    watchers: &[Vec<u32>],
    owed: &mut [Owed],
    pending: &mut Vec<usize>,
    in_pending: &mut [bool],
    frame: &mut [u8; FRAME_BYTES_MAX],
    stats: &Stats,
    conns: &mut [Conn],
    md_dirty: &mut Vec<usize>,
    in_md_dirty: &mut [bool],
) {
    match m {
        MdMessage::Trade(t) => {
            let s = t.symbol.0 as usize;
            let n = MdMsg::Trade(*t).encode(frame);
            for &c in &watchers[s] {
                let c = c as usize;
                if !subs[c * symbols + s].trades {
                    continue;
                }
                if room(conns, c) >= n && conns[c].push_out(&frame[..n]) {
                    mark(md_dirty, in_md_dirty, c);
                } else {
                    Stats::inc(&stats.md_trades_dropped);
                }
            }
        }
        MdMessage::Depth(d) => {
            let s = d.symbol.0 as usize;
            let frames = d.changes.len().div_ceil(DEPTH_LEVELS_PER_FRAME).max(1);
            // The update's frames, encoded once for every subscriber (an update too large for
            // the scratch, a mass cancel's, is encoded per subscriber instead).
            let mut encoded = [0u8; ENCODED_FRAMES_MAX * FRAME_BYTES_MAX];
            let mut encoded_len = 0;
            let encode = |out: &mut [u8]| {
                let mut len = 0;
                for (i, chunk) in d
                    .changes
                    .chunks(DEPTH_LEVELS_PER_FRAME)
                    .chain(d.changes.is_empty().then_some(&[][..]))
                    .enumerate()
                {
                    let mut f = DepthFrame {
                        symbol: d.symbol,
                        flags: if i + 1 == frames { DEPTH_END } else { 0 },
                        first: d.md_seq,
                        last: d.md_seq,
                        ts: d.ts,
                        count: chunk.len() as u8,
                        levels: [LevelChange::default(); DEPTH_LEVELS_PER_FRAME],
                    };
                    f.levels[..chunk.len()].copy_from_slice(chunk);
                    let mut one = [0u8; FRAME_BYTES_MAX];
                    let n = MdMsg::Depth(f).encode(&mut one);
                    out[len..len + n].copy_from_slice(&one[..n]);
                    len += n;
                }
                len
            };
            if frames <= ENCODED_FRAMES_MAX {
                encoded_len = encode(&mut encoded);
            }
            let mut sent = 0u64;
            for &c in &watchers[s] {
                let c = c as usize;
                let k = c * symbols + s;
                let sub = &mut subs[k];
                sub.ticker_due |= sub.ticker;
                if d.trades > 0 {
                    sub.candles_due |= sub.candles;
                }
                if !sub.depth {
                    continue;
                }
                let o = &mut owed[k];
                if !o.active && room(conns, c) >= frames * FRAME_BYTES_MAX {
                    if encoded_len > 0 {
                        conns[c].push_out(&encoded[..encoded_len]);
                    } else {
                        // Frame by frame through the one-frame scratch.
                        let mut big = [0u8; FRAME_BYTES_MAX];
                        for (i, chunk) in d.changes.chunks(DEPTH_LEVELS_PER_FRAME).enumerate() {
                            let mut f = DepthFrame {
                                symbol: d.symbol,
                                flags: if i + 1 == frames { DEPTH_END } else { 0 },
                                first: d.md_seq,
                                last: d.md_seq,
                                ts: d.ts,
                                count: chunk.len() as u8,
                                levels: [LevelChange::default(); DEPTH_LEVELS_PER_FRAME],
                            };
                            f.levels[..chunk.len()].copy_from_slice(chunk);
                            let n = MdMsg::Depth(f).encode(&mut big);
                            conns[c].push_out(&big[..n]);
                        }
                    }
                    sent += 1;
                    mark(md_dirty, in_md_dirty, c);
                    continue;
                }
                // Conflate: remember which levels changed; their state goes out later.
                if !o.active {
                    o.active = true;
                    o.snapshot = false;
                    o.first = d.md_seq;
                }
                for ch in d.changes {
                    o.marked[side_index(ch.side)].set((ch.price.0 - o.price_min) as usize);
                }
                if !in_pending[c] {
                    in_pending[c] = true;
                    pending.push(c);
                }
            }
            if sent > 0 {
                stats.md_depth_updates.fetch_add(sent, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The publisher driven directly, with connections whose outbound buffers the test drains
    //! by hand (as a socket taking bytes would), so when a subscriber falls behind is decided
    //! by the test, not by the kernel's buffer sizes.

    use std::collections::BTreeMap;

    use ringbook_engine::marketdata::L2Book;
    use ringbook_engine::prelude::*;

    use super::*;
    use crate::protocol::split_frame;

    /// A connection with a real (idle) socket and an outbound buffer of `out_bytes`.
    fn conn(out_bytes: usize, keep: &mut Vec<std::net::TcpStream>) -> Conn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        keep.push(client);
        let mut c = Conn::new(1024, out_bytes, Instant::now());
        c.stream = Some(mio::net::TcpStream::from_std(server));
        c
    }

    /// A seeded xorshift generator: `rnd(n)` is in `0..n`.
    fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    /// What one subscriber has seen.
    #[derive(Default)]
    struct Seen {
        book: Option<L2Book>,
        partial: Vec<LevelChange>,
        snapshot: bool,
        conflated: u64,
        trades: Vec<u64>,
        tickers: u64,
        candles: u64,
        acks: u64,
    }

    /// Takes every frame out of the connection's buffer (as the socket would) and applies it.
    fn drain(conn: &mut Conn, seen: &mut Seen) {
        let mut at = conn.out_start;
        while let Some((h, body)) = split_frame(&conn.out[at..conn.out_end]).unwrap() {
            at += h.frame_len;
            match MdMsg::decode(h.msg_type, h.version, body).unwrap() {
                MdMsg::Depth(f) => {
                    if seen.partial.is_empty() {
                        seen.snapshot = f.flags & DEPTH_SNAPSHOT != 0;
                    }
                    seen.partial.extend_from_slice(f.levels());
                    if f.flags & DEPTH_END != 0 {
                        let levels = std::mem::take(&mut seen.partial);
                        if seen.snapshot {
                            seen.book = Some(L2Book::from_snapshot(f.last, &levels));
                        } else {
                            if f.first != f.last {
                                seen.conflated += 1;
                            }
                            let b = seen.book.as_mut().expect("a snapshot first");
                            assert_eq!(b.apply(f.first, f.last, &levels), Ok(true));
                        }
                    }
                }
                MdMsg::Trade(t) => seen.trades.push(t.trade_id.0),
                MdMsg::Ticker { .. } => seen.tickers += 1,
                MdMsg::Candle { .. } => seen.candles += 1,
                MdMsg::Subscribed { .. } => seen.acks += 1,
            }
        }
        conn.out_start = at;
    }

    fn engine_levels(engine: &Engine, symbol: SymbolId, side: Side) -> Vec<(Price, Qty, u32)> {
        let mut by: BTreeMap<i64, (u64, u32)> = BTreeMap::new();
        let want = match side {
            Side::Buy => ringbook_engine::book::BookSection::Bids,
            Side::Sell => ringbook_engine::book::BookSection::Asks,
        };
        engine.for_each_order(symbol, |section, o| {
            if section == want {
                let e = by.entry(o.price.0).or_default();
                e.0 += o.visible_qty.0;
                e.1 += 1;
            }
        });
        let mut v: Vec<_> = by
            .into_iter()
            .map(|(p, (q, n))| (Price(p), Qty(q), n))
            .collect();
        if side == Side::Buy {
            v.reverse();
        }
        v
    }

    #[test]
    fn a_slow_subscriber_is_conflated_and_a_late_one_snapshotted_and_both_converge() {
        let mut config = Config::default();
        config.capacity.orders_max = 4096;
        let symbol = SymbolId(0);
        let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
        let stats = Arc::new(Stats::default());
        let now = Instant::now();
        let mut keep = Vec::new();
        // 0: fast, 1: slow (a small buffer, drained rarely), 2: joins mid-stream.
        let mut conns = vec![
            conn(1 << 16, &mut keep),
            conn(4096, &mut keep),
            conn(1 << 16, &mut keep),
        ];
        let mut p = Publisher::new(MarketData::new(&config), 3, now, stats.clone());
        let mut dirty = Vec::new();
        let mut seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
        let req = |channel, subscribe| MdRequest {
            request_id: 1,
            symbol,
            channel,
            interval: Interval::M1,
            subscribe,
        };
        for c in 0..2 {
            for ch in [
                Channel::Depth,
                Channel::Trades,
                Channel::Ticker,
                Channel::Candles,
            ] {
                p.request(c, &req(ch, true), &mut conns, &mut dirty)
                    .unwrap();
            }
        }
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut live: Vec<OrderId> = Vec::new();
        for i in 0..3_000u64 {
            let user = UserId(rnd(4) as u32);
            let side = if rnd(2) == 0 { Side::Buy } else { Side::Sell };
            let cmd = match rnd(10) {
                0..=5 => {
                    let toward = if side == Side::Buy { 1 } else { -1 };
                    let price = Price(15_000 - toward * (rnd(30) as i64 - 5));
                    let mut o = NewOrder::limit(
                        user,
                        symbol,
                        ClientOrderId(i + 1),
                        side,
                        price,
                        Qty(1 + rnd(20)),
                    );
                    if rnd(5) == 0 {
                        o.display_qty = Qty(1 + rnd(o.qty.0));
                    }
                    Command::NewOrder(o)
                }
                6 => Command::NewOrder(NewOrder::market(
                    user,
                    symbol,
                    ClientOrderId(i + 1),
                    side,
                    Price(if side == Side::Buy { 16_000 } else { 14_000 }),
                    Qty(1 + rnd(30)),
                )),
                _ if !live.is_empty() => {
                    let id = live[rnd(live.len() as u64) as usize];
                    let owner = engine.matcher().order_by_id(id).map_or(user, |o| o.user);
                    Command::CancelOrder {
                        user: owner,
                        symbol,
                        order_id: id,
                    }
                }
                _ => Command::MassCancel {
                    user,
                    symbol: None,
                    on_disconnect: false,
                },
            };
            let ts = 1_700_000_000_000_000_000 + i * 7_000_000_000;
            let mut events = Vec::new();
            engine.process_at(ts, &cmd, &mut |e: &Event| events.push(*e));
            for e in &events {
                if let Event::Accepted { order_id, .. } = e {
                    live.push(*order_id);
                }
                p.on_event(e, &mut conns);
            }
            p.on_done(ts, &mut conns);
            p.pump(Instant::now(), &mut conns, &mut dirty);
            if i == 1_500 {
                p.request(2, &req(Channel::Depth, true), &mut conns, &mut dirty)
                    .unwrap();
            }
            drain(&mut conns[0], &mut seen[0]);
            drain(&mut conns[2], &mut seen[2]);
            if i % 97 == 0 {
                drain(&mut conns[1], &mut seen[1]);
            }
            // The fast subscriber is always exactly the engine's book.
            let b = seen[0].book.as_ref().unwrap();
            assert_eq!(b.md_seq(), p.md.md_seq(symbol));
            for side in [Side::Buy, Side::Sell] {
                assert_eq!(
                    b.levels(side),
                    engine_levels(&engine, symbol, side),
                    "command {i}"
                );
            }
        }
        // The slow one catches up once it reads again.
        for _ in 0..1_000 {
            drain(&mut conns[1], &mut seen[1]);
            p.pump(Instant::now(), &mut conns, &mut dirty);
            if p.pending.is_empty() {
                break;
            }
        }
        drain(&mut conns[1], &mut seen[1]);
        for s in &seen {
            let b = s.book.as_ref().unwrap();
            assert_eq!(b.md_seq(), p.md.md_seq(symbol));
            for side in [Side::Buy, Side::Sell] {
                assert_eq!(b.levels(side), engine_levels(&engine, symbol, side));
            }
        }
        assert!(
            seen[1].conflated > 10,
            "the slow subscriber was conflated {} times",
            seen[1].conflated
        );
        assert_eq!(seen[0].conflated, 0);
        assert!(
            stats
                .md_conflated
                .load(std::sync::atomic::Ordering::Relaxed)
                > 10
        );
        // Trades: the fast subscriber has every one, in order; the slow one a subset.
        let all = engine.matcher().last_trade_id(symbol).0;
        assert!(all > 500, "too few trades: {all}");
        assert_eq!(seen[0].trades, (1..=all).collect::<Vec<_>>());
        assert!(seen[1].trades.len() < all as usize);
        assert!(seen[1].trades.windows(2).all(|w| w[0] < w[1]));
        assert!(
            stats
                .md_trades_dropped
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        // Tickers and candles go out on the ticker interval's clock: a turn one interval later
        // sends the changed ones (whatever the speed of this run).
        p.pump(Instant::now() + 2 * TICKER_INTERVAL, &mut conns, &mut dirty);
        drain(&mut conns[0], &mut seen[0]);
        assert!(seen[0].tickers > 0 && seen[0].candles > 0 && seen[0].acks == 4);
    }

    /// The per-symbol watcher lists follow subscribe, unsubscribe and reset in any order, and
    /// a trade reaches exactly the connections subscribed to its symbol's trades — whatever the
    /// swaps the lists went through.
    #[test]
    fn watchers_are_exactly_the_subscribed_connections() {
        let mut config = Config::default();
        config.capacity.orders_max = 1024;
        let n = 7;
        let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
        let stats = Arc::new(Stats::default());
        let mut keep = Vec::new();
        let mut conns: Vec<Conn> = (0..n).map(|_| conn(1 << 16, &mut keep)).collect();
        let mut p = Publisher::new(MarketData::new(&config), n, Instant::now(), stats);
        let symbols = p.symbols;
        assert!(symbols >= 2, "the default config has two symbols");
        let mut dirty = Vec::new();
        let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
        let channels = [
            Channel::Depth,
            Channel::Trades,
            Channel::Ticker,
            Channel::Candles,
        ];
        for step in 0..2_000 {
            let c = rnd(n as u64) as usize;
            if rnd(12) == 0 {
                p.reset_conn(c);
            } else {
                let req = MdRequest {
                    request_id: 1,
                    symbol: SymbolId(rnd(symbols as u64) as u16),
                    channel: channels[rnd(4) as usize],
                    interval: Interval::ALL[rnd(Interval::ALL.len() as u64) as usize],
                    subscribe: rnd(2) == 0,
                };
                p.request(c, &req, &mut conns, &mut dirty).unwrap();
            }
            for conn in &mut conns {
                conn.out_start = conn.out_end;
            }
            for s in 0..symbols {
                let mut listed: Vec<usize> = p.watchers(s).iter().map(|&c| c as usize).collect();
                listed.sort_unstable();
                let want: Vec<usize> = (0..n).filter(|&c| p.subs[c * symbols + s].any()).collect();
                assert_eq!(listed, want, "symbol {s} after step {step}");
                for (at, &c) in p.watchers(s).iter().enumerate() {
                    assert_eq!(p.watch_pos[c as usize * symbols + s], at as u32);
                }
            }
        }
        // A trade on symbol 0 goes to its trade subscribers and nobody else.
        let symbol = SymbolId(0);
        let trading: Vec<bool> = (0..n).map(|c| p.subs[c * symbols].trades).collect();
        for (i, side) in [Side::Sell, Side::Buy].into_iter().enumerate() {
            let cmd = Command::NewOrder(NewOrder::limit(
                UserId(i as u32),
                symbol,
                ClientOrderId(1),
                side,
                Price(15_000),
                Qty(3),
            ));
            engine.process_at(1_700_000_000_000_000_000, &cmd, &mut |e: &Event| {
                p.on_event(e, &mut conns)
            });
            p.on_done(1_700_000_000_000_000_000, &mut conns);
        }
        for c in 0..n {
            // Everything before the trade was dropped after the last step.
            let mut seen = Seen::default();
            drain_all(&mut conns[c], &mut seen);
            assert_eq!(seen.trades.len(), usize::from(trading[c]), "connection {c}");
        }
    }

    /// Like [`drain`], for a subscriber that may have no snapshot yet: counts only trades.
    fn drain_all(conn: &mut Conn, seen: &mut Seen) {
        let mut at = conn.out_start;
        while let Some((h, body)) = split_frame(&conn.out[at..conn.out_end]).unwrap() {
            at += h.frame_len;
            if let MdMsg::Trade(t) = MdMsg::decode(h.msg_type, h.version, body).unwrap() {
                seen.trades.push(t.trade_id.0);
            }
        }
        conn.out_start = at;
    }
}
