//! Public market data over REST, answered from the web edge's copy of the gateway's
//! market-data builder ([`crate::edge::WebMd`]): the order book with `md_seq` and order counts,
//! the trade tape, candles and the 24-hour ticker. The copy is taken from the gateway's builder
//! at one point of its output stream and then fed every output after it in sequence order by
//! the dispatcher thread, so these answers equal the binary market-data feed's.
//!
//! A read finds the copy current (the feed is on), or first asks the gateway loop for a fresh
//! copy (one request through the bridge; [`crate::edge::Edge::md_fresh`]); it then takes the
//! copy's read lock for the time it takes to copy the answer out.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use ringbook_engine::marketdata::{Interval, Ticker};
use ringbook_engine::{Config, Side, SymbolId};
use serde_json::{json, Value};

use crate::api::{q_u64, Shared};
use crate::edge::WebMd;
use crate::error::{ApiError, WebCode};
use crate::json::{self as j, Named};

/// Trades or candles when `limit` is not given.
pub const LIMIT_DEFAULT: usize = 100;

/// The order book from the builder: `{symbol, md_seq, seq, bids, asks}`, levels best first as
/// `[price, visible qty, orders]`, at most `depth` per side.
pub(crate) fn book_json(config: &Config, md: &WebMd, sid: SymbolId, depth: usize) -> Value {
    let side = |s: Side| {
        let mut v = Vec::new();
        md.md
            .depth(sid, s, depth, |p, q, n| v.push(json!([p.0, q.0, n])));
        v
    };
    json!({
        "symbol": j::sym(config, sid),
        "md_seq": md.md.md_seq(sid),
        "seq": md.seq,
        "bids": side(Side::Buy),
        "asks": side(Side::Sell),
    })
}

fn no_md() -> ApiError {
    ApiError::web(
        WebCode::Unsupported,
        "this server runs without market data (--no-market-data)",
    )
}

/// `limit`: absent, [`LIMIT_DEFAULT`]; above what the ring keeps, all of it (a page asking for
/// the most there is, as the trading page does, gets it); 0 is `400` (it was served one row:
/// a docs review finding), as a history page's is.
fn limit(q: &HashMap<String, String>, max: u32) -> Result<usize, ApiError> {
    match q_u64(q, "limit")? {
        None => Ok(LIMIT_DEFAULT),
        Some(0) => Err(ApiError::bad(format!(
            "limit: 0 is out of range: 1 or more (at most {max} are kept)"
        ))),
        Some(l) => Ok(l.min(u64::from(max)) as usize),
    }
}

/// `GET /api/v1/trades/{symbol}?limit=N`: the latest trades, oldest first.
pub(crate) async fn trades(
    State(st): State<Shared>,
    Path(symbol): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let config = &st.edge.config;
    let sid = j::symbol(config, &Named::Name(symbol))?;
    let limit = limit(&q, config.market_data.tape_len)?;
    let md = st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let mut out = Vec::new();
    md.md.tape(sid, limit, |t| {
        out.push(json!({
            "trade_id": t.trade_id.0,
            "ts": t.ts,
            "price": t.price.0,
            "qty": t.qty.0,
            "taker_side": t.taker_side.name(),
            "md_seq": t.md_seq,
        }))
    });
    Ok(Json(Value::Array(out)))
}

/// `GET /api/v1/klines/{symbol}?interval=1m&limit=N`: the latest candles, oldest first (the
/// last may still be open).
pub(crate) async fn klines(
    State(st): State<Shared>,
    Path(symbol): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let config = &st.edge.config;
    let sid = j::symbol(config, &Named::Name(symbol))?;
    let name = q.get("interval").map_or("1m", String::as_str);
    let interval = Interval::from_name(name).ok_or_else(|| {
        ApiError::bad(format!(
            "interval {name:?}: expected one of 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w"
        ))
    })?;
    let limit = limit(&q, config.market_data.candles_history)?;
    let md = st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let tick = md.md.tick_size(sid);
    let mut out = Vec::new();
    md.md.candles(sid, interval, limit, |c| {
        out.push(json!({
            "open_time": c.open_time,
            "close_time": c.open_time + interval.nanos() - 1,
            "open": c.open.0,
            "high": c.high.0,
            "low": c.low.0,
            "close": c.close.0,
            "volume": c.volume,
            "quote_volume": c.quote_volume(tick),
            "trades": c.trades,
        }))
    });
    Ok(Json(Value::Array(out)))
}

pub(crate) fn ticker_json(config: &Config, sid: SymbolId, t: &Ticker) -> Value {
    let level = |l: Option<(ringbook_engine::Price, ringbook_engine::Qty)>| {
        l.map_or(Value::Null, |(p, q)| json!([p.0, q.0]))
    };
    json!({
        "symbol": j::sym(config, sid),
        "open_time": t.open_time,
        "close_time": t.close_time,
        "open": t.open.map(|p| p.0),
        "high": t.high.map(|p| p.0),
        "low": t.low.map(|p| p.0),
        "last": t.last.map(|p| p.0),
        "change": t.change(),
        "change_pct": t.change_pct().to_string(),
        "vwap": t.vwap().map(|v| v.to_string()),
        "volume": t.volume,
        "quote_volume": t.quote_volume,
        "trades": t.trades,
        "best_bid": level(t.best_bid),
        "best_ask": level(t.best_ask),
    })
}

/// `GET /api/v1/ticker/24hr[?symbol=S]`: one symbol's 24-hour rolling statistics, or every
/// symbol's (an array, in symbol order).
pub(crate) async fn ticker(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let config = &st.edge.config;
    let one = match q.get("symbol") {
        Some(s) => Some(j::symbol(config, &Named::Name(s.clone()))?),
        None => None,
    };
    let md = st.edge.md_fresh().await?.ok_or_else(no_md)?;
    Ok(Json(match one {
        Some(sid) => ticker_json(config, sid, &md.md.ticker(sid)),
        None => Value::Array(
            (0..md.md.symbols())
                .map(|i| {
                    let sid = SymbolId(i as u16);
                    ticker_json(config, sid, &md.md.ticker(sid))
                })
                .collect(),
        ),
    }))
}

// ------------------------------------------------------------------ public WebSocket channels

/// [`Subs::subscribe`]'s answer when the market-data copy is not current (the caller makes it
/// current, [`crate::edge::Edge::md_ensure`], and tries again).
pub(crate) const NOT_LIVE: &str = "market data is resynchronising";

/// The most public subscriptions one WebSocket connection may hold.
pub const SUBS_PER_CONN_MAX: usize = 32;
/// Trades in a `trades` channel snapshot.
pub const TRADES_SNAPSHOT: usize = 50;

/// A public channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Level-2 depth: a snapshot, then every change (`md_seq` contiguous).
    Depth,
    /// Every trade.
    Trades,
    /// The current candle of an interval after each command that traded.
    Kline(Interval),
    /// The 24-hour ticker after each command that changed the symbol's book or traded.
    Ticker,
}

impl Channel {
    /// `depth`, `trades`, `ticker`, `kline:<interval>`.
    pub fn parse(name: &str) -> Option<Channel> {
        match name {
            "depth" => Some(Channel::Depth),
            "trades" => Some(Channel::Trades),
            "ticker" => Some(Channel::Ticker),
            _ => name
                .strip_prefix("kline:")
                .and_then(Interval::from_name)
                .map(Channel::Kline),
        }
    }

    /// The channel's name in messages.
    pub fn name(self) -> String {
        match self {
            Channel::Depth => "depth".into(),
            Channel::Trades => "trades".into(),
            Channel::Ticker => "ticker".into(),
            Channel::Kline(i) => format!("kline:{}", i.name()),
        }
    }
}

/// One connection's subscription to one public channel of one symbol.
#[derive(Debug)]
pub struct PubSub {
    /// The connection.
    pub conn: u64,
    /// The symbol.
    pub symbol: SymbolId,
    /// The channel.
    pub channel: Channel,
    /// The connection's bounded queue (shared with its private channels).
    pub tx: tokio::sync::mpsc::Sender<std::sync::Arc<str>>,
    /// An update did not fit the queue: no more updates until the connection has sent a fresh
    /// snapshot (conflation: a slow client skips to the current state instead of growing a
    /// backlog).
    pub stale: std::sync::atomic::AtomicBool,
    /// Wakes the connection's task to resend snapshots of its stale subscriptions.
    pub resync: std::sync::Arc<tokio::sync::Notify>,
}

/// What the builder produced for one event or command end, owned (the builder is borrowed
/// while it hands messages out, and kline/ticker messages read it afterwards).
#[derive(Debug, Default)]
pub(crate) struct Produced {
    trades: Vec<ringbook_engine::marketdata::MdTrade>,
    depth: Vec<(
        SymbolId,
        u64,
        u64,
        u32,
        Vec<ringbook_engine::marketdata::LevelChange>,
    )>,
}

impl Produced {
    pub(crate) fn take(&mut self, m: ringbook_engine::marketdata::MdMessage<'_>) {
        use ringbook_engine::marketdata::MdMessage;
        match m {
            MdMessage::Trade(t) => self.trades.push(*t),
            MdMessage::Depth(d) => {
                self.depth
                    .push((d.symbol, d.md_seq, d.ts, d.trades, d.changes.to_vec()))
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.depth.is_empty()
    }
}

/// The public subscriptions of every connection, indexed both ways: an update goes to its
/// own (symbol, channel)'s subscribers without looking at anyone else's (up to
/// `ws_conns_max` × [`SUBS_PER_CONN_MAX`] subscriptions in all, and a traded command sends on
/// up to eleven channels), and a connection's own requests see only its subscriptions.
#[derive(Debug, Default)]
struct Index {
    by_channel: HashMap<(SymbolId, Channel), Vec<std::sync::Arc<PubSub>>>,
    by_conn: HashMap<u64, Vec<std::sync::Arc<PubSub>>>,
    total: usize,
}

/// The public subscriptions of every connection.
#[derive(Debug, Default)]
pub struct Subs {
    index: std::sync::Mutex<Index>,
    count: std::sync::atomic::AtomicUsize,
    /// Times a subscription was conflated (an update did not fit; a snapshot follows).
    pub conflations: std::sync::atomic::AtomicU64,
    /// Public messages queued to connections.
    pub messages: std::sync::atomic::AtomicU64,
}

/// Queue slots public messages leave free for private ones.
fn reserve<T>(tx: &tokio::sync::mpsc::Sender<T>) -> usize {
    tx.max_capacity() / 4
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn trade_json(t: &ringbook_engine::marketdata::MdTrade) -> Value {
    json!({"trade_id": t.trade_id.0, "ts": t.ts, "price": t.price.0, "qty": t.qty.0,
        "taker_side": t.taker_side.name(), "md_seq": t.md_seq})
}

fn candle_json(c: &ringbook_engine::marketdata::Candle, interval: Interval, tick: u64) -> Value {
    json!({
        "open_time": c.open_time, "close_time": c.open_time + interval.nanos() - 1,
        "open": c.open.0, "high": c.high.0, "low": c.low.0, "close": c.close.0,
        "volume": c.volume, "quote_volume": c.quote_volume(tick), "trades": c.trades,
    })
}

/// A channel's snapshot message, current at the builder's state (`md_seq` of the symbol).
pub(crate) fn snapshot(config: &Config, md: &WebMd, sid: SymbolId, ch: Channel) -> String {
    let sym = j::sym(config, sid);
    let md_seq = md.md.md_seq(sid);
    let name = ch.name();
    match ch {
        Channel::Depth => {
            let mut v = book_json(config, md, sid, usize::MAX);
            v["channel"] = json!(name);
            v["type"] = json!("snapshot");
            if let Some(o) = v.as_object_mut() {
                o.remove("seq");
            }
            v
        }
        Channel::Trades => {
            let mut t = Vec::new();
            md.md.tape(sid, TRADES_SNAPSHOT, |x| t.push(trade_json(x)));
            json!({"channel": name, "symbol": sym, "type": "snapshot", "md_seq": md_seq, "trades": t})
        }
        Channel::Kline(i) => {
            let mut c = Value::Null;
            let tick = md.md.tick_size(sid);
            md.md.candles(sid, i, 1, |x| c = candle_json(x, i, tick));
            json!({"channel": name, "symbol": sym, "type": "snapshot", "md_seq": md_seq, "data": c})
        }
        Channel::Ticker => {
            json!({"channel": name, "symbol": sym, "type": "snapshot", "md_seq": md_seq,
                "data": ticker_json(config, sid, &md.md.ticker(sid))})
        }
    }
    .to_string()
}

impl Subs {
    /// Whether any connection holds a public subscription (else the dispatcher skips the work).
    pub(crate) fn any(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Subscribes: queues the snapshot and registers, both under the builder's read lock so no
    /// update falls between them (updates are published under its write lock). Returns the
    /// snapshot's `md_seq`, or an error if the connection holds too many subscriptions.
    pub(crate) fn subscribe(
        &self,
        config: &Config,
        md: &std::sync::RwLock<WebMd>,
        sub: PubSub,
    ) -> Result<u64, &'static str> {
        use std::sync::atomic::Ordering;
        let sid = sub.symbol;
        let g = md.read().unwrap_or_else(|p| p.into_inner());
        if !g.live {
            // The feed went off since the caller made the copy current: it syncs again.
            return Err(NOT_LIVE);
        }
        let mut index = lock(&self.index);
        let mine = index
            .by_conn
            .get(&sub.conn)
            .map_or(&[][..], |v| v.as_slice());
        if mine
            .iter()
            .any(|s| s.symbol == sub.symbol && s.channel == sub.channel)
        {
            return Err("already subscribed");
        }
        if mine.len() >= SUBS_PER_CONN_MAX {
            return Err("too many public subscriptions on this connection");
        }
        let snap: std::sync::Arc<str> = snapshot(config, &g, sub.symbol, sub.channel).into();
        if sub.tx.capacity() <= reserve(&sub.tx) || sub.tx.try_send(snap).is_err() {
            // No room even for the snapshot: the connection's task sends one when it can.
            sub.stale.store(true, Ordering::Release);
            sub.resync.notify_one();
        }
        let sub = std::sync::Arc::new(sub);
        index
            .by_channel
            .entry((sub.symbol, sub.channel))
            .or_default()
            .push(sub.clone());
        index.by_conn.entry(sub.conn).or_default().push(sub);
        index.total += 1;
        self.count.store(index.total, Ordering::Relaxed);
        Ok(g.md.md_seq(sid))
    }

    /// [`Subs::subscribe`] on a current copy: makes it current first ([`Edge::md_ensure`]),
    /// and again if the feed went off in between. The outer error: the copy could not be made
    /// current (gateway busy or stopping); the inner one: the subscription was refused.
    pub(crate) async fn subscribe_fresh(
        &self,
        edge: &crate::edge::Edge,
        md: &std::sync::RwLock<WebMd>,
        make: impl Fn() -> PubSub,
    ) -> Result<Result<u64, &'static str>, ApiError> {
        for _ in 0..3 {
            edge.md_ensure().await?;
            match self.subscribe(&edge.config, md, make()) {
                Err(NOT_LIVE) => continue,
                r => return Ok(r),
            }
        }
        Err(ApiError::web(WebCode::NotReady, NOT_LIVE).retry_after(1))
    }

    /// Removes one subscription (`Some`) or all of a connection's (`None`).
    pub(crate) fn unsubscribe(&self, conn: u64, which: Option<(SymbolId, Channel)>) -> bool {
        let mut index = lock(&self.index);
        let Index {
            by_channel,
            by_conn,
            total,
        } = &mut *index;
        let Some(mine) = by_conn.get_mut(&conn) else {
            return false;
        };
        let before = *total;
        mine.retain(|s| {
            let keep = which.is_some_and(|(sym, ch)| s.symbol != sym || s.channel != ch);
            if !keep {
                let key = (s.symbol, s.channel);
                if let Some(subs) = by_channel.get_mut(&key) {
                    subs.retain(|x| x.conn != conn);
                    if subs.is_empty() {
                        by_channel.remove(&key);
                    }
                }
                *total -= 1;
            }
            keep
        });
        if mine.is_empty() {
            by_conn.remove(&conn);
        }
        self.count
            .store(*total, std::sync::atomic::Ordering::Relaxed);
        *total < before
    }

    /// Fresh snapshots for a connection's stale subscriptions (clearing their flag), under the
    /// builder's read lock: updates after each snapshot's `md_seq` follow it on the queue.
    pub(crate) fn resync(
        &self,
        config: &Config,
        md: &std::sync::RwLock<WebMd>,
        conn: u64,
    ) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let g = md.read().unwrap_or_else(|p| p.into_inner());
        let index = lock(&self.index);
        let mut out = Vec::new();
        for s in index.by_conn.get(&conn).into_iter().flatten() {
            if s.stale.swap(false, Ordering::AcqRel) {
                out.push(snapshot(config, &g, s.symbol, s.channel));
            }
        }
        out
    }

    /// Fans what the builder produced out to the subscribers (the dispatcher, under the
    /// builder's write lock: `md` is the state after it).
    pub(crate) fn publish(&self, config: &Config, md: &WebMd, p: &Produced) {
        use std::sync::atomic::Ordering;
        let index = lock(&self.index);
        if index.total == 0 {
            return;
        }
        let send = |sid: SymbolId, ch: Channel, msg: &dyn Fn() -> String| {
            let mut built: Option<std::sync::Arc<str>> = None;
            for s in index.by_channel.get(&(sid, ch)).into_iter().flatten() {
                if s.stale.load(Ordering::Acquire) {
                    continue;
                }
                // The last quarter of the queue is left to private messages, so public data
                // never makes a private message overflow (which would close the connection).
                if s.tx.capacity() <= reserve(&s.tx) {
                    s.stale.store(true, Ordering::Release);
                    self.conflations.fetch_add(1, Ordering::Relaxed);
                    s.resync.notify_one();
                    continue;
                }
                let m = built.get_or_insert_with(|| msg().into()).clone();
                match s.tx.try_send(m) {
                    Ok(()) => {
                        self.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        // Conflate: drop updates until the connection resends a snapshot.
                        s.stale.store(true, Ordering::Release);
                        self.conflations.fetch_add(1, Ordering::Relaxed);
                        s.resync.notify_one();
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        };
        for t in &p.trades {
            send(t.symbol, Channel::Trades, &|| {
                json!({"channel": "trades", "symbol": j::sym(config, t.symbol), "type": "update",
                    "md_seq": t.md_seq, "data": trade_json(t)})
                .to_string()
            });
        }
        for (sid, md_seq, ts, trades, changes) in &p.depth {
            let (sid, md_seq) = (*sid, *md_seq);
            send(sid, Channel::Depth, &|| {
                let side = |want: Side| {
                    changes
                        .iter()
                        .filter(|c| c.side == want)
                        .map(|c| json!([c.price.0, c.qty.0, c.count]))
                        .collect::<Vec<_>>()
                };
                json!({"channel": "depth", "symbol": j::sym(config, sid), "type": "update",
                    "md_seq": md_seq, "ts": ts, "bids": side(Side::Buy), "asks": side(Side::Sell)})
                .to_string()
            });
            send(sid, Channel::Ticker, &|| {
                json!({"channel": "ticker", "symbol": j::sym(config, sid), "type": "update",
                    "md_seq": md_seq, "data": ticker_json(config, sid, &md.md.ticker(sid))})
                .to_string()
            });
            if *trades > 0 {
                let tick = md.md.tick_size(sid);
                for i in Interval::ALL {
                    send(sid, Channel::Kline(i), &|| {
                        let mut c = Value::Null;
                        md.md.candles(sid, i, 1, |x| c = candle_json(x, i, tick));
                        json!({"channel": Channel::Kline(i).name(), "symbol": j::sym(config, sid),
                            "type": "update", "md_seq": md_seq, "data": c})
                        .to_string()
                    });
                }
            }
        }
    }
}

/// The web edge's market-data metrics (Prometheus text), appended to `/metrics`.
pub(crate) fn render_metrics(
    o: &mut String,
    edge: &crate::edge::Edge,
    gateway: &ringbook_gateway::server::Stats,
) {
    use std::fmt::Write;
    use std::sync::atomic::Ordering;
    let subs = &edge.subs;
    let b = &edge.bridge.stats;
    let rows: [(&str, &str, &str, u64); 6] = [
        (
            "ringbook_trades_total",
            "counter",
            "trades the gateway routed since start (every origin)",
            gateway.trades.load(Ordering::Relaxed),
        ),
        (
            "ringbook_md_web_syncs_total",
            "counter",
            "copies of the gateway's market-data builder taken for the web edge",
            b.md_syncs.load(Ordering::Relaxed),
        ),
        (
            "ringbook_md_web_feed",
            "gauge",
            "1 while the gateway forwards every output to the web edge's market-data copy",
            edge.bridge.market_data_enabled() as u64,
        ),
        (
            "ringbook_md_ws_subscriptions",
            "gauge",
            "public WebSocket channel subscriptions (depth, trades, kline, ticker)",
            subs.count.load(Ordering::Relaxed) as u64,
        ),
        (
            "ringbook_md_ws_conflations_total",
            "counter",
            "public WebSocket subscriptions conflated to a fresh snapshot (a slow client)",
            subs.conflations.load(Ordering::Relaxed),
        ),
        (
            "ringbook_md_ws_messages_total",
            "counter",
            "public market-data messages queued to WebSocket connections",
            subs.messages.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in rows {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, RwLock};

    use ringbook_engine::marketdata::MarketData;
    use ringbook_engine::prelude::*;
    use tokio::sync::{mpsc, Notify};

    use super::*;

    fn sub(conn: u64, symbol: u16, channel: Channel) -> (PubSub, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(256);
        let s = PubSub {
            conn,
            symbol: SymbolId(symbol),
            channel,
            tx,
            stale: AtomicBool::new(false),
            resync: Arc::new(Notify::new()),
        };
        (s, rx)
    }

    /// The (channel, symbol) of every message waiting in `rx`.
    fn got(rx: &mut mpsc::Receiver<Arc<str>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            let v: Value = serde_json::from_str(&m).unwrap();
            out.push((
                v["channel"].as_str().unwrap().to_string(),
                v["symbol"].as_str().unwrap().to_string(),
            ));
        }
        out
    }

    /// The default config, an engine, a live market-data copy and no subscriptions.
    fn setup() -> (Config, Engine, RwLock<WebMd>, Subs) {
        let config = Config::default();
        let engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
        let md = RwLock::new(WebMd {
            md: MarketData::new(&config),
            seq: 0,
            live: true,
        });
        (config, engine, md, Subs::default())
    }

    /// Every public channel of a symbol.
    fn all_channels() -> impl Iterator<Item = Channel> {
        [Channel::Depth, Channel::Trades, Channel::Ticker]
            .into_iter()
            .chain(Interval::ALL.map(Channel::Kline))
    }

    /// One crossing pair on symbol 0 (a trade and a depth update), fed to the copy and fanned
    /// out.
    fn trade_and_publish(
        engine: &mut Engine,
        config: &Config,
        md: &RwLock<WebMd>,
        subs: &Subs,
        n: u64,
    ) {
        let mut g = md.write().unwrap();
        let mut produced = Produced::default();
        for (user, side) in [(1, Side::Sell), (2, Side::Buy)] {
            let cmd = Command::NewOrder(NewOrder::limit(
                UserId(user),
                SymbolId(0),
                ClientOrderId(n),
                side,
                Price(15_000),
                Qty(1),
            ));
            let ts = 1_700_000_000_000_000_000 + n;
            let mut events = Vec::new();
            engine.process_at(ts, &cmd, &mut |e: &Event| events.push(*e));
            for e in &events {
                g.md.apply(e, &mut |m| produced.take(m));
            }
            g.md.end_command(ts, &mut |m| produced.take(m));
        }
        subs.publish(config, &g, &produced);
    }

    /// An update reaches the subscribers of its own symbol and channel and nobody else, through
    /// subscribes and unsubscribes of one and of all of a connection's subscriptions.
    #[test]
    fn an_update_reaches_its_own_channels_subscribers_only() {
        let (config, mut engine, md, subs) = setup();
        let plan: [(u64, u16, Channel); 7] = [
            (1, 0, Channel::Trades),
            (1, 0, Channel::Depth),
            (2, 0, Channel::Trades),
            (2, 1, Channel::Trades),
            (3, 1, Channel::Depth),
            (3, 0, Channel::Kline(Interval::M1)),
            (4, 0, Channel::Ticker),
        ];
        let mut rx: Vec<mpsc::Receiver<Arc<str>>> = Vec::new();
        for &(conn, symbol, channel) in &plan {
            let (s, r) = sub(conn, symbol, channel);
            subs.subscribe(&config, &md, s).unwrap();
            rx.push(r);
        }
        let dup = sub(1, 0, Channel::Trades).0;
        assert_eq!(subs.subscribe(&config, &md, dup), Err("already subscribed"));
        assert_eq!(subs.count.load(std::sync::atomic::Ordering::Relaxed), 7);
        // Each subscription's snapshot, then nothing until an update.
        for r in &mut rx {
            assert_eq!(got(r).len(), 1);
        }
        let sym0 = j::sym(&config, SymbolId(0)).to_string();
        let one = |ch: &str| vec![(ch.to_string(), sym0.clone())];
        trade_and_publish(&mut engine, &config, &md, &subs, 1);
        let seen: Vec<_> = rx.iter_mut().map(got).collect();
        assert_eq!(seen[0], one("trades"));
        assert!(!seen[1].is_empty() && seen[1].iter().all(|m| *m == one("depth")[0]));
        assert_eq!(seen[2], one("trades"));
        assert_eq!(seen[3], vec![], "symbol 1's trades");
        assert_eq!(seen[4], vec![], "symbol 1's depth");
        assert_eq!(seen[5], one("kline:1m"));
        assert!(!seen[6].is_empty() && seen[6].iter().all(|m| *m == one("ticker")[0]));
        // One unsubscribed; then all of connection 2's.
        assert!(subs.unsubscribe(1, Some((SymbolId(0), Channel::Trades))));
        assert!(!subs.unsubscribe(1, Some((SymbolId(0), Channel::Trades))));
        assert!(subs.unsubscribe(2, None));
        assert!(!subs.unsubscribe(2, None));
        assert_eq!(subs.count.load(std::sync::atomic::Ordering::Relaxed), 4);
        trade_and_publish(&mut engine, &config, &md, &subs, 2);
        let seen: Vec<_> = rx.iter_mut().map(got).collect();
        assert_eq!(seen[0], vec![], "unsubscribed");
        assert!(!seen[1].is_empty(), "connection 1 keeps its depth");
        assert_eq!(
            (&seen[2], &seen[3]),
            (&vec![], &vec![]),
            "connection 2 left"
        );
        assert_eq!(seen[5], one("kline:1m"));
        // A connection holds at most SUBS_PER_CONN_MAX subscriptions.
        let mut keep = Vec::new();
        let mut k = 0;
        for symbol in 0..config.symbols.len() as u16 {
            for channel in all_channels() {
                let (s, r) = sub(9, symbol, channel);
                let r2 = subs.subscribe(&config, &md, s);
                assert_eq!(r2.is_ok(), k < SUBS_PER_CONN_MAX, "subscription {k}");
                keep.push(r);
                k += 1;
            }
        }
        assert!(
            k > SUBS_PER_CONN_MAX,
            "the config has enough channels to test the cap"
        );
    }

    /// A measurement, not a check (docs/benchmarks.md, "The web edge's public fan-out"):
    /// `cargo test --release -p ringbook-web --lib fanout_cost -- --ignored --nocapture`.
    /// 1000 connections hold every channel of the symbols that do not trade (22 each with the
    /// default config), 10 hold symbol 0's depth and trades; prints the time per traded pair of
    /// orders on symbol 0, builder and fan-out together.
    #[test]
    #[ignore]
    fn fanout_cost() {
        let (config, mut engine, md, subs) = setup();
        let mut idle = Vec::new();
        for conn in 0..1000u64 {
            for symbol in 1..config.symbols.len() as u16 {
                for channel in all_channels() {
                    let (s, r) = sub(conn, symbol, channel);
                    if subs.subscribe(&config, &md, s).is_ok() {
                        idle.push(r);
                    }
                }
            }
        }
        let mut watching = Vec::new();
        for conn in 5000..5010u64 {
            for channel in [Channel::Depth, Channel::Trades] {
                let (s, r) = sub(conn, 0, channel);
                subs.subscribe(&config, &md, s).unwrap();
                watching.push(r);
            }
        }
        let n = 2000;
        let t0 = std::time::Instant::now();
        for i in 1..=n {
            trade_and_publish(&mut engine, &config, &md, &subs, i);
            for r in &mut watching {
                while r.try_recv().is_ok() {}
            }
        }
        eprintln!(
            "fan-out: {:.1} µs per traded pair, {} subscriptions",
            t0.elapsed().as_secs_f64() * 1e6 / n as f64,
            subs.count.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}
