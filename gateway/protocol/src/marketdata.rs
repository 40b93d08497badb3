//! Market-data messages (docs/protocol.md, "Market data"): subscribe and unsubscribe from the
//! client; acknowledgements, depth (snapshot and update parts), trades, tickers and candles from
//! the server. Server market-data messages are **unsequenced** (they are not part of the
//! session's retransmittable stream): their order is given by each symbol's `md_seq`, and a
//! subscriber that misses something resubscribes.

use ringbook_engine::marketdata::{Candle, Interval, LevelChange, MdTrade, Ticker};
use ringbook_engine::{Price, Qty, RejectCode, Side, SymbolId, TradeId};

use super::{put_header, FRAME_BYTES_MAX, HEADER_BYTES, PROTOCOL_VERSION};
use ringbook_engine::le::{LeReader, LeWriter};

/// Message type numbers of the market-data messages.
pub mod msg_type {
    /// Client: subscribe to one channel of one symbol.
    pub const MD_SUBSCRIBE: u16 = 42;
    /// Client: unsubscribe from one channel of one symbol.
    pub const MD_UNSUBSCRIBE: u16 = 43;
    /// Server: a subscribe or unsubscribe took effect.
    pub const MD_SUBSCRIBED: u16 = 150;
    /// Server: one part of a depth snapshot or update.
    pub const MD_DEPTH: u16 = 151;
    /// Server: a public trade.
    pub const MD_TRADE: u16 = 152;
    /// Server: a 24h ticker.
    pub const MD_TICKER: u16 = 153;
    /// Server: a candle.
    pub const MD_CANDLE: u16 = 154;
}

/// True for the client message types of this module.
pub fn is_client_type(t: u16) -> bool {
    matches!(t, msg_type::MD_SUBSCRIBE | msg_type::MD_UNSUBSCRIBE)
}

/// True for the server message types of this module.
pub fn is_server_type(t: u16) -> bool {
    (msg_type::MD_SUBSCRIBED..=msg_type::MD_CANDLE).contains(&t)
}

/// Levels one depth frame carries at most.
pub const DEPTH_LEVELS_PER_FRAME: usize = 9;
const DEPTH_HEAD_BYTES: usize = 32;
const DEPTH_LEVEL_BYTES: usize = 24;
const _: () = assert!(
    HEADER_BYTES + DEPTH_HEAD_BYTES + DEPTH_LEVELS_PER_FRAME * DEPTH_LEVEL_BYTES <= FRAME_BYTES_MAX
);

/// `MdDepth` flag: the message (every frame up to the one with [`DEPTH_END`]) is a snapshot —
/// the receiver starts from an empty book.
pub const DEPTH_SNAPSHOT: u8 = 1;
/// `MdDepth` flag: the last frame of a message; the receiver's book is now at `last`.
pub const DEPTH_END: u8 = 2;
/// `MdCandle` flag: part of the history sent on subscribing.
pub const CANDLE_SNAPSHOT: u8 = 1;
/// `MdCandle` flag: the last candle of that history (an empty history sends no candle).
pub const CANDLE_END: u8 = 2;

/// A market-data channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channel {
    /// L2 depth: a snapshot, then updates (conflated for a slow reader).
    Depth = 0,
    /// Public trades.
    Trades = 1,
    /// The 24h ticker (with L1), at most every ticker interval while it changes.
    Ticker = 2,
    /// Candles of one interval: the recent history, then the current candle as it changes.
    Candles = 3,
}

impl Channel {
    /// From its wire value.
    pub fn from_u8(v: u8) -> Option<Channel> {
        [
            Channel::Depth,
            Channel::Trades,
            Channel::Ticker,
            Channel::Candles,
        ]
        .get(usize::from(v))
        .copied()
    }
}

/// Subscribe (or unsubscribe) one channel of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdRequest {
    /// Echoed in the acknowledgement.
    pub request_id: u64,
    /// The symbol.
    pub symbol: SymbolId,
    /// The channel.
    pub channel: Channel,
    /// The candle interval (`Channel::Candles` only; `Interval::M1` otherwise, sent as 0).
    pub interval: Interval,
    /// Subscribe (true) or unsubscribe.
    pub subscribe: bool,
}

const REQUEST_BODY_BYTES: usize = 16;

impl MdRequest {
    /// Encodes the whole frame into `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8; FRAME_BYTES_MAX]) -> usize {
        let mut w = LeWriter::new(&mut buf[..], HEADER_BYTES);
        let interval = if self.channel == Channel::Candles {
            self.interval as u8
        } else {
            0
        };
        w.u64(self.request_id)
            .u16(self.symbol.0)
            .u8(self.channel as u8)
            .u8(interval)
            .u32(0);
        let len = w.at();
        let t = if self.subscribe {
            msg_type::MD_SUBSCRIBE
        } else {
            msg_type::MD_UNSUBSCRIBE
        };
        put_header(buf, t, len - HEADER_BYTES);
        len
    }

    /// Decodes a subscribe or unsubscribe body. Never allocates, never panics.
    pub fn decode(t: u16, version: u16, body: &[u8]) -> Result<MdRequest, RejectCode> {
        if version != PROTOCOL_VERSION {
            return Err(RejectCode::UnsupportedVersion);
        }
        if !is_client_type(t) {
            return Err(RejectCode::UnknownMessageType);
        }
        if body.len() != REQUEST_BODY_BYTES {
            return Err(RejectCode::MalformedFrame);
        }
        let mut r = LeReader::new(body);
        let request_id = r.u64();
        let symbol = SymbolId(r.u16());
        let channel = Channel::from_u8(r.u8()).ok_or(RejectCode::InvalidField)?;
        let interval = r.u8();
        if r.u32() != 0 || (channel != Channel::Candles && interval != 0) {
            return Err(RejectCode::InvalidField);
        }
        let interval = Interval::from_code(interval).ok_or(RejectCode::InvalidField)?;
        Ok(MdRequest {
            request_id,
            symbol,
            channel,
            interval,
            subscribe: t == msg_type::MD_SUBSCRIBE,
        })
    }
}

/// One frame of a depth message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthFrame {
    /// The symbol.
    pub symbol: SymbolId,
    /// [`DEPTH_SNAPSHOT`], [`DEPTH_END`].
    pub flags: u8,
    /// The first update the message covers (a snapshot: 0, it starts from an empty book; an
    /// ordinary update: its `md_seq`; a conflated one: the first it replaces).
    pub first: u64,
    /// The `md_seq` the receiver's book is at once the message's last frame is applied.
    pub last: u64,
    /// Engine time of the latest update covered.
    pub ts: u64,
    /// Levels used in `levels`.
    pub count: u8,
    /// Changed levels, absolute (quantity 0 and count 0: gone).
    pub levels: [LevelChange; DEPTH_LEVELS_PER_FRAME],
}

impl DepthFrame {
    /// The levels this frame carries.
    pub fn levels(&self) -> &[LevelChange] {
        &self.levels[..usize::from(self.count)]
    }
}

/// Everything the server sends on market data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MdMsg {
    /// A subscribe (`active`) or unsubscribe (`!active`) took effect. For depth, `md_seq` is
    /// where the snapshot that follows starts from (informational: the snapshot's own frames
    /// carry it).
    Subscribed {
        /// From the request.
        request_id: u64,
        /// The symbol.
        symbol: SymbolId,
        /// The channel.
        channel: Channel,
        /// The candle interval (0 for other channels).
        interval: u8,
        /// Subscribed (true) or unsubscribed.
        active: bool,
        /// The symbol's `md_seq` now.
        md_seq: u64,
    },
    /// One frame of a depth snapshot or update.
    Depth(DepthFrame),
    /// A trade.
    Trade(MdTrade),
    /// A 24h ticker.
    Ticker {
        /// The symbol.
        symbol: SymbolId,
        /// The ticker.
        ticker: Ticker,
    },
    /// A candle.
    Candle {
        /// The symbol.
        symbol: SymbolId,
        /// Its interval.
        interval: Interval,
        /// [`CANDLE_SNAPSHOT`], [`CANDLE_END`].
        flags: u8,
        /// The candle (the latest may still be open).
        candle: Candle,
    },
}

fn opt_price(p: Option<Price>) -> i64 {
    p.map_or(0, |p| p.0)
}

fn price_opt(v: i64) -> Option<Price> {
    (v != 0).then_some(Price(v))
}

fn u128_parts(w: &mut LeWriter<'_>, v: u128) {
    w.u64(v as u64).u64((v >> 64) as u64);
}

fn read_u128(r: &mut LeReader<'_>) -> u128 {
    let lo = r.u64();
    let hi = r.u64();
    u128::from(lo) | (u128::from(hi) << 64)
}

impl MdMsg {
    /// The message type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            MdMsg::Subscribed { .. } => msg_type::MD_SUBSCRIBED,
            MdMsg::Depth(_) => msg_type::MD_DEPTH,
            MdMsg::Trade(_) => msg_type::MD_TRADE,
            MdMsg::Ticker { .. } => msg_type::MD_TICKER,
            MdMsg::Candle { .. } => msg_type::MD_CANDLE,
        }
    }

    /// Encodes the whole frame into `buf`; returns its length. Never allocates.
    pub fn encode(&self, buf: &mut [u8; FRAME_BYTES_MAX]) -> usize {
        let mut w = LeWriter::new(&mut buf[..], HEADER_BYTES);
        match *self {
            MdMsg::Subscribed {
                request_id,
                symbol,
                channel,
                interval,
                active,
                md_seq,
            } => {
                w.u64(request_id)
                    .u16(symbol.0)
                    .u8(channel as u8)
                    .u8(interval)
                    .u8(active as u8)
                    .u8(0)
                    .u16(0)
                    .u64(md_seq);
            }
            MdMsg::Depth(ref d) => {
                w.u16(d.symbol.0)
                    .u8(d.flags)
                    .u8(d.count)
                    .u32(0)
                    .u64(d.first)
                    .u64(d.last)
                    .u64(d.ts);
                for l in d.levels() {
                    w.u8(l.side as u8)
                        .u8(0)
                        .u16(0)
                        .u32(l.count)
                        .i64(l.price.0)
                        .u64(l.qty.0);
                }
            }
            MdMsg::Trade(t) => {
                w.u16(t.symbol.0)
                    .u8(t.taker_side as u8)
                    .u8(0)
                    .u32(0)
                    .u64(t.md_seq)
                    .u64(t.trade_id.0)
                    .u64(t.ts)
                    .i64(t.price.0)
                    .u64(t.qty.0);
            }
            MdMsg::Ticker { symbol, ticker: t } => {
                w.u16(symbol.0).u16(0).u32(0);
                w.u64(t.open_time)
                    .u64(t.close_time)
                    .i64(opt_price(t.open))
                    .i64(opt_price(t.high))
                    .i64(opt_price(t.low))
                    .i64(opt_price(t.last))
                    .u64(t.volume)
                    .u64(t.trades);
                u128_parts(&mut w, t.notional_ticks);
                u128_parts(&mut w, t.quote_volume);
                for b in [t.best_bid, t.best_ask] {
                    w.i64(b.map_or(0, |(p, _)| p.0))
                        .u64(b.map_or(0, |(_, q)| q.0));
                }
            }
            MdMsg::Candle {
                symbol,
                interval,
                flags,
                candle: c,
            } => {
                w.u16(symbol.0).u8(interval as u8).u8(flags).u32(0);
                w.u64(c.open_time)
                    .i64(c.open.0)
                    .i64(c.high.0)
                    .i64(c.low.0)
                    .i64(c.close.0)
                    .u64(c.volume)
                    .u64(c.trades);
                u128_parts(&mut w, c.notional_ticks);
            }
        }
        let len = w.at();
        put_header(buf, self.msg_type(), len - HEADER_BYTES);
        len
    }

    /// Decodes one server market-data body. Never allocates, never panics.
    pub fn decode(t: u16, version: u16, body: &[u8]) -> Result<MdMsg, RejectCode> {
        if version != PROTOCOL_VERSION {
            return Err(RejectCode::UnsupportedVersion);
        }
        let bad = RejectCode::InvalidField;
        let expected = match t {
            msg_type::MD_SUBSCRIBED => 24,
            msg_type::MD_DEPTH => {
                let count = usize::from(*body.get(3).ok_or(RejectCode::MalformedFrame)?);
                if count > DEPTH_LEVELS_PER_FRAME {
                    return Err(bad);
                }
                DEPTH_HEAD_BYTES + count * DEPTH_LEVEL_BYTES
            }
            msg_type::MD_TRADE => 48,
            msg_type::MD_TICKER => 136,
            msg_type::MD_CANDLE => 80,
            _ => return Err(RejectCode::UnknownMessageType),
        };
        if body.len() != expected {
            return Err(RejectCode::MalformedFrame);
        }
        let mut r = LeReader::new(body);
        let msg = match t {
            msg_type::MD_SUBSCRIBED => {
                let request_id = r.u64();
                let symbol = SymbolId(r.u16());
                let channel = Channel::from_u8(r.u8()).ok_or(bad)?;
                let interval = r.u8();
                let active = r.u8();
                if active > 1 || r.u8() != 0 || r.u16() != 0 {
                    return Err(bad);
                }
                MdMsg::Subscribed {
                    request_id,
                    symbol,
                    channel,
                    interval,
                    active: active == 1,
                    md_seq: r.u64(),
                }
            }
            msg_type::MD_DEPTH => {
                let symbol = SymbolId(r.u16());
                let flags = r.u8();
                let count = r.u8();
                if flags > (DEPTH_SNAPSHOT | DEPTH_END) || r.u32() != 0 {
                    return Err(bad);
                }
                let mut d = DepthFrame {
                    symbol,
                    flags,
                    first: r.u64(),
                    last: r.u64(),
                    ts: r.u64(),
                    count,
                    levels: [LevelChange::default(); DEPTH_LEVELS_PER_FRAME],
                };
                for l in d.levels.iter_mut().take(usize::from(count)) {
                    let s = r.get::<Side>("side")?;
                    if r.u8() != 0 || r.u16() != 0 {
                        return Err(bad);
                    }
                    let c = r.u32();
                    *l = LevelChange {
                        side: s,
                        count: c,
                        price: Price(r.i64()),
                        qty: Qty(r.u64()),
                    };
                }
                MdMsg::Depth(d)
            }
            msg_type::MD_TRADE => {
                let symbol = SymbolId(r.u16());
                let taker_side = r.get::<Side>("side")?;
                if r.u8() != 0 || r.u32() != 0 {
                    return Err(bad);
                }
                MdMsg::Trade(MdTrade {
                    symbol,
                    taker_side,
                    md_seq: r.u64(),
                    trade_id: TradeId(r.u64()),
                    ts: r.u64(),
                    price: Price(r.i64()),
                    qty: Qty(r.u64()),
                })
            }
            msg_type::MD_TICKER => {
                let symbol = SymbolId(r.u16());
                if r.u16() != 0 || r.u32() != 0 {
                    return Err(bad);
                }
                let mut t = Ticker {
                    open_time: r.u64(),
                    close_time: r.u64(),
                    open: price_opt(r.i64()),
                    high: price_opt(r.i64()),
                    low: price_opt(r.i64()),
                    last: price_opt(r.i64()),
                    volume: r.u64(),
                    trades: r.u64(),
                    ..Ticker::default()
                };
                t.notional_ticks = read_u128(&mut r);
                t.quote_volume = read_u128(&mut r);
                let mut best = [None, None];
                for b in &mut best {
                    let (p, q) = (r.i64(), r.u64());
                    *b = (p != 0).then_some((Price(p), Qty(q)));
                }
                t.best_bid = best[0];
                t.best_ask = best[1];
                MdMsg::Ticker { symbol, ticker: t }
            }
            _ => {
                // MD_CANDLE (the length table admitted no other).
                let symbol = SymbolId(r.u16());
                let interval = Interval::from_code(r.u8()).ok_or(bad)?;
                let flags = r.u8();
                if flags > (CANDLE_SNAPSHOT | CANDLE_END) || r.u32() != 0 {
                    return Err(bad);
                }
                let mut c = Candle {
                    open_time: r.u64(),
                    open: Price(r.i64()),
                    high: Price(r.i64()),
                    low: Price(r.i64()),
                    close: Price(r.i64()),
                    volume: r.u64(),
                    trades: r.u64(),
                    ..Candle::default()
                };
                c.notional_ticks = read_u128(&mut r);
                MdMsg::Candle {
                    symbol,
                    interval,
                    flags,
                    candle: c,
                }
            }
        };
        if !r.exact() {
            return Err(RejectCode::MalformedFrame);
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split_frame;

    fn round_trip(m: MdMsg) {
        let mut buf = [0u8; FRAME_BYTES_MAX];
        let n = m.encode(&mut buf);
        let (h, body) = split_frame(&buf[..n]).unwrap().unwrap();
        assert_eq!(h.frame_len, n);
        assert!(is_server_type(h.msg_type));
        assert_eq!(MdMsg::decode(h.msg_type, h.version, body), Ok(m));
        // Every shorter body is refused, never a panic.
        for cut in 0..body.len() {
            assert!(MdMsg::decode(h.msg_type, h.version, &body[..cut]).is_err());
        }
    }

    #[test]
    fn every_message_round_trips() {
        let lc = |side, p, q, c| LevelChange {
            side,
            price: Price(p),
            qty: Qty(q),
            count: c,
        };
        let mut levels = [LevelChange::default(); DEPTH_LEVELS_PER_FRAME];
        levels[0] = lc(Side::Buy, 100, 5, 2);
        levels[1] = lc(Side::Sell, 101, 0, 0);
        for count in [0u8, 2, 9] {
            let mut levels = levels;
            for (i, l) in levels.iter_mut().enumerate().skip(2) {
                *l = lc(Side::Sell, 200 + i as i64, 1, 1);
            }
            for l in levels.iter_mut().skip(usize::from(count)) {
                *l = LevelChange::default();
            }
            round_trip(MdMsg::Depth(DepthFrame {
                symbol: SymbolId(2),
                flags: DEPTH_END,
                first: 3,
                last: 7,
                ts: 99,
                count,
                levels,
            }));
        }
        round_trip(MdMsg::Subscribed {
            request_id: 9,
            symbol: SymbolId(1),
            channel: Channel::Candles,
            interval: 6,
            active: true,
            md_seq: 44,
        });
        round_trip(MdMsg::Trade(MdTrade {
            symbol: SymbolId(0),
            md_seq: 3,
            trade_id: TradeId(8),
            ts: 5,
            price: Price(15_000),
            qty: Qty(2),
            taker_side: Side::Sell,
        }));
        round_trip(MdMsg::Ticker {
            symbol: SymbolId(0),
            ticker: Ticker {
                open_time: 1,
                close_time: 2,
                open: Some(Price(3)),
                high: None,
                low: Some(Price(4)),
                last: Some(Price(5)),
                volume: 6,
                notional_ticks: u128::from(u64::MAX) * 3,
                quote_volume: 7,
                trades: 8,
                best_bid: Some((Price(9), Qty(10))),
                best_ask: None,
            },
        });
        round_trip(MdMsg::Candle {
            symbol: SymbolId(0),
            interval: Interval::W1,
            flags: CANDLE_SNAPSHOT,
            candle: Candle {
                open_time: 1,
                open: Price(2),
                high: Price(3),
                low: Price(1),
                close: Price(2),
                volume: 4,
                notional_ticks: 5,
                trades: 6,
            },
        });
    }

    #[test]
    fn requests_round_trip_and_bad_fields_are_refused() {
        let mut buf = [0u8; FRAME_BYTES_MAX];
        for (channel, interval, subscribe) in [
            (Channel::Depth, Interval::M1, true),
            (Channel::Candles, Interval::H4, false),
        ] {
            let req = MdRequest {
                request_id: 5,
                symbol: SymbolId(1),
                channel,
                interval,
                subscribe,
            };
            let n = req.encode(&mut buf);
            let (h, body) = split_frame(&buf[..n]).unwrap().unwrap();
            assert!(is_client_type(h.msg_type));
            assert_eq!(MdRequest::decode(h.msg_type, h.version, body), Ok(req));
        }
        let mut body = [0u8; REQUEST_BODY_BYTES];
        body[10] = 4; // no such channel
        assert_eq!(
            MdRequest::decode(msg_type::MD_SUBSCRIBE, PROTOCOL_VERSION, &body),
            Err(RejectCode::InvalidField)
        );
        body[10] = 3;
        body[11] = 8; // no such interval
        assert_eq!(
            MdRequest::decode(msg_type::MD_SUBSCRIBE, PROTOCOL_VERSION, &body),
            Err(RejectCode::InvalidField)
        );
        body[10] = 0;
        body[11] = 1; // an interval on a channel without one
        assert_eq!(
            MdRequest::decode(msg_type::MD_SUBSCRIBE, PROTOCOL_VERSION, &body),
            Err(RejectCode::InvalidField)
        );
        assert_eq!(
            MdRequest::decode(msg_type::MD_SUBSCRIBE, PROTOCOL_VERSION, &body[..15]),
            Err(RejectCode::MalformedFrame)
        );
    }
}
