//! Public market data over REST, answered from the web edge's own market-data builder
//! ([`crate::edge::WebMd`]): the order book with `md_seq` and order counts, the trade tape,
//! candles and the 24-hour ticker. The builder is fed every engine event in sequence order by
//! the dispatcher thread and was seeded from the journal exactly as the gateway's publisher, so
//! these answers equal the binary market-data feed's.
//!
//! Reads take the builder's read lock for the time it takes to copy the answer out; no request
//! goes through the gateway loop.

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

fn limit(q: &HashMap<String, String>, max: u32) -> Result<usize, ApiError> {
    Ok(q_u64(q, "limit")?.map_or(LIMIT_DEFAULT, |l| l.clamp(1, u64::from(max)) as usize))
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
    let md = st.edge.md_read().ok_or_else(no_md)?;
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
    let md = st.edge.md_read().ok_or_else(no_md)?;
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
    let md = st.edge.md_read().ok_or_else(no_md)?;
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
