//! Upbit's quotation API (public, no key): markets, tickers, order books, the trade tape and
//! candles, all answered from the web edge's copy of the gateway's market-data builder (synced
//! on demand; the same state as the binary
//! feed and `/api/v1/*`). Prices and volumes are exact decimal conversions of ticks and lots,
//! written as JSON numbers as Upbit does (integers stay integers).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringbook_engine::marketdata::{Candle, Interval};
use ringbook_engine::Side;
use serde_json::{json, Value};

use super::decimal::{ratio_str, units_str};
use super::{Market, Upbit, UpbitError};
use crate::edge::WebMd;

/// Candles one request may ask for.
pub const CANDLES_MAX: usize = 200;
/// Trades one request may ask for.
pub const TRADES_MAX: usize = 500;
/// Order book levels per side (Upbit's default and most).
pub const BOOK_LEVELS: usize = 30;

const NS_PER_MS: u64 = 1_000_000;

type Q = Query<HashMap<String, String>>;

/// A decimal string as a JSON number (exact integers stay integers).
pub(crate) fn num(s: &str) -> Value {
    serde_json::from_str::<Value>(s).unwrap_or(Value::Null)
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds shifted by `offset_secs`.
pub(crate) fn datetime(secs: i64, offset_secs: i64) -> String {
    let t = secs + offset_secs;
    let (y, m, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Upbit's `created_at`: ISO 8601 with the offset (UTC here: `+00:00`).
pub(crate) fn iso(ms: u64) -> String {
    format!("{}+00:00", datetime((ms / 1000) as i64, 0))
}

const KST: i64 = 9 * 3600;

/// `HHmmss` or `HH:mm:ss`, a time of day: its seconds since midnight.
fn parse_hms(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    // Where the hours, minutes and seconds are.
    let at: [usize; 3] = match b.len() {
        6 => [0, 2, 4],
        8 if b[2] == b':' && b[5] == b':' => [0, 3, 6],
        _ => return None,
    };
    let n = |i: usize| -> Option<u64> {
        let d = b.get(i..i + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| u64::from(d[0] - b'0') * 10 + u64::from(d[1] - b'0'))
    };
    let (h, m, s) = (n(at[0])?, n(at[1])?, n(at[2])?);
    (h <= 23 && m <= 59 && s <= 59).then_some(h * 3600 + m * 60 + s)
}

/// Days in month `m` (1–12) of year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `to`: `YYYY-MM-DDTHH:MM:SS` or with a space, optional `Z` or `±HH:MM` (no offset:
/// UTC). Unix nanoseconds.
pub(crate) fn parse_time(s: &str) -> Option<u64> {
    // Fields are fixed-width runs of ASCII digits: no sign, no space, no other digit.
    fn digits(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
        let f = s.get(r)?;
        f.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| f.parse().ok())?
    }
    let s = s.trim();
    let (main, offset) = if let Some(x) = s.strip_suffix('Z') {
        (x, 0i64)
    } else if s.len() > 19 && (s.as_bytes()[19] == b'+' || s.as_bytes()[19] == b'-') {
        // `±HH:MM`, a real offset: hours to 23, minutes to 59.
        let o = &s[19..];
        let sign = if o.starts_with('-') { -1 } else { 1 };
        if o.len() != 6 || o.as_bytes()[3] != b':' {
            return None;
        }
        let (h, m) = (digits(o, 1..3)?, digits(o, 4..6)?);
        if h > 23 || m > 59 {
            return None;
        }
        (&s[..19], sign * (h * 3600 + m * 60))
    } else {
        (s, 0)
    };
    let b = main.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits(main, r);
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    // Unix time has no leap second: :60 is refused like any impossible time.
    if !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    let secs = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000)
}

fn no_md() -> UpbitError {
    UpbitError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_busy",
        "this server runs without market data (--no-market-data)",
    )
}

/// A quotation reply (`Remaining-Req` is added to every quotation reply by the router's layer,
/// `upbit::quotation_remaining`).
fn reply(v: Value) -> Response {
    Json(v).into_response()
}

fn price(m: &Market, ticks: i64) -> Value {
    m.scales.price_str(ticks).map_or(Value::Null, |s| num(&s))
}

fn volume(m: &Market, lots: u64) -> Value {
    num(&m.scales.volume_str(lots))
}

fn quote_amount(up: &Upbit, m: &Market, units: u128) -> Value {
    let scale = up.config().currencies[m.quote_cur.0 as usize].scale;
    num(&units_str(units, u32::from(scale)))
}

/// `GET /v1/market/all[?isDetails=true]`.
pub(crate) async fn market_all(State(up): State<Arc<Upbit>>, Query(q): Q) -> Response {
    let details = q
        .get("isDetails")
        .or(q.get("is_details"))
        .is_some_and(|v| v == "true");
    let list: Vec<Value> = up
        .markets
        .iter()
        .map(|m| {
            let mut v = json!({"market": m.code, "korean_name": m.base, "english_name": m.base});
            if details {
                v["market_warning"] = json!("NONE");
                v["market_event"] = json!({"warning": false, "caution": {}});
            }
            v
        })
        .collect();
    reply(Value::Array(list))
}

fn markets_param<'a>(
    up: &'a Upbit,
    q: &HashMap<String, String>,
) -> Result<Vec<&'a Market>, UpbitError> {
    let s = q
        .get("markets")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| UpbitError::validation("markets is missing (required parameter)"))?;
    // Each market once, in the order first named: a list that repeats one market
    // thousands of times would otherwise multiply a small request into a reply of megabytes
    // (a red-team finding). So a reply has at most one entry per configured market.
    let mut ms: Vec<&Market> = Vec::new();
    for c in s.split(',') {
        let m = up.market(c.trim())?;
        if !ms.iter().any(|x| x.sid == m.sid) {
            ms.push(m);
        }
    }
    Ok(ms)
}

/// The day candle holding `now` and the one before it.
fn days(md: &WebMd, m: &Market) -> (Option<Candle>, Option<Candle>) {
    let mut v = Vec::new();
    md.md.candles(m.sid, Interval::D1, 2, |c| v.push(*c));
    let today = Interval::D1.open_time(md.md.now_ns());
    let cur = v.iter().rev().find(|c| c.open_time == today).copied();
    let prev = v.iter().rev().find(|c| c.open_time < today).copied();
    (cur, prev)
}

pub(crate) fn ticker_json(up: &Upbit, md: &WebMd, m: &Market) -> Value {
    let t = md.md.ticker(m.sid);
    let now_ms = md.md.now_ns() / NS_PER_MS;
    let (today, prev) = days(md, m);
    let last = t.last;
    let mut tape_last = None;
    md.md.tape(m.sid, 1, |x| tape_last = Some(*x));
    let prev_close = prev.map(|c| c.close).or(today.map(|c| c.open)).or(last);
    let last_p = last.map_or(0, |p| p.0);
    let pc = prev_close.map_or(0, |p| p.0);
    let change = last_p - pc;
    let rate = if pc > 0 {
        ratio_str(
            change.unsigned_abs() as u128 * 100_000_000 / pc as u128,
            100_000_000,
        )
        .unwrap_or_else(|| "0".into())
    } else {
        "0".into()
    };
    let signed = |s: &str| {
        if change < 0 {
            format!("-{s}")
        } else {
            s.to_string()
        }
    };
    let change_price = price(m, change.abs());
    let trade_ts_ms = tape_last.map_or(0, |x| x.ts / NS_PER_MS);
    let mut w52 = Vec::new();
    md.md.candles(m.sid, Interval::W1, 52, |c| w52.push(*c));
    let hi = w52.iter().max_by_key(|c| c.high.0);
    let lo = w52.iter().min_by_key(|c| c.low.0);
    let date = |ns: u64| datetime((ns / 1_000_000_000) as i64, 0)[..10].to_string();
    let tick = md.md.tick_size(m.sid);
    let (o, h, l) = match today {
        Some(c) => (c.open.0, c.high.0, c.low.0),
        None => (last_p, last_p, last_p),
    };
    json!({
        "market": m.code,
        "trade_date": datetime((trade_ts_ms / 1000) as i64, 0)[..10].replace('-', ""),
        "trade_time": datetime((trade_ts_ms / 1000) as i64, 0)[11..].replace(':', ""),
        "trade_date_kst": datetime((trade_ts_ms / 1000) as i64, KST)[..10].replace('-', ""),
        "trade_time_kst": datetime((trade_ts_ms / 1000) as i64, KST)[11..].replace(':', ""),
        "trade_timestamp": trade_ts_ms,
        "opening_price": price(m, o),
        "high_price": price(m, h),
        "low_price": price(m, l),
        "trade_price": price(m, last_p),
        "prev_closing_price": price(m, pc),
        "change": if change > 0 { "RISE" } else if change < 0 { "FALL" } else { "EVEN" },
        "change_price": change_price,
        "change_rate": num(&rate),
        "signed_change_price": num(&signed(&m.scales.price_str(change.abs()).unwrap_or_default())),
        "signed_change_rate": num(&signed(&rate)),
        "trade_volume": tape_last.map_or(json!(0), |x| volume(m, x.qty.0)),
        "acc_trade_price": quote_amount(up, m, today.map_or(0, |c| c.quote_volume(tick))),
        "acc_trade_price_24h": quote_amount(up, m, t.quote_volume),
        "acc_trade_volume": volume(m, today.map_or(0, |c| c.volume)),
        "acc_trade_volume_24h": volume(m, t.volume),
        "highest_52_week_price": hi.map_or(price(m, last_p), |c| price(m, c.high.0)),
        "highest_52_week_date": hi.map_or(Value::Null, |c| json!(date(c.open_time))),
        "lowest_52_week_price": lo.map_or(price(m, last_p), |c| price(m, c.low.0)),
        "lowest_52_week_date": lo.map_or(Value::Null, |c| json!(date(c.open_time))),
        "timestamp": now_ms,
    })
}

/// `GET /v1/ticker?markets=KRW-BTC,KRW-ETH`.
pub(crate) async fn ticker(
    State(up): State<Arc<Upbit>>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let ms = markets_param(&up, &q)?;
    let md = up.st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let v: Vec<Value> = ms.iter().map(|m| ticker_json(&up, &md, m)).collect();
    drop(md);
    Ok(reply(Value::Array(v)))
}

/// `GET /v1/ticker/all?quote_currencies=KRW,USD` (every market when absent).
pub(crate) async fn ticker_all(
    State(up): State<Arc<Upbit>>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let quotes: Option<Vec<&str>> = q
        .get("quote_currencies")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::trim).collect());
    let md = up.st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let v: Vec<Value> = up
        .markets
        .iter()
        .filter(|m| {
            quotes
                .as_ref()
                .is_none_or(|qs| qs.contains(&m.quote.as_str()))
        })
        .map(|m| ticker_json(&up, &md, m))
        .collect();
    drop(md);
    Ok(reply(Value::Array(v)))
}

/// One market's order book in Upbit's shape: units pair the i-th ask with the i-th bid; a side
/// with fewer levels is padded with zero price and size, as Upbit pads.
pub(crate) fn orderbook_json(md: &WebMd, m: &Market, levels: usize) -> Value {
    let side = |s: Side| {
        let mut v = Vec::new();
        md.md.depth(m.sid, s, levels, |p, q, _| v.push((p.0, q.0)));
        v
    };
    let (bids, asks) = (side(Side::Buy), side(Side::Sell));
    let n = bids.len().max(asks.len());
    let total = |v: &[(i64, u64)]| volume(m, v.iter().map(|x| x.1).sum());
    let units: Vec<Value> = (0..n)
        .map(|i| {
            let a = asks.get(i).copied();
            let b = bids.get(i).copied();
            json!({
                "ask_price": a.map_or(json!(0), |x| price(m, x.0)),
                "bid_price": b.map_or(json!(0), |x| price(m, x.0)),
                "ask_size": a.map_or(json!(0), |x| volume(m, x.1)),
                "bid_size": b.map_or(json!(0), |x| volume(m, x.1)),
            })
        })
        .collect();
    json!({
        "market": m.code,
        "timestamp": md.md.now_ns() / NS_PER_MS,
        "total_ask_size": total(&asks),
        "total_bid_size": total(&bids),
        "orderbook_units": units,
        "level": 0,
    })
}

/// `GET /v1/orderbook?markets=KRW-BTC[&count=N]`.
pub(crate) async fn orderbook(
    State(up): State<Arc<Upbit>>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let ms = markets_param(&up, &q)?;
    let count = match q.get("count") {
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=BOOK_LEVELS).contains(c))
            .ok_or_else(|| UpbitError::validation(format!("count must be 1..={BOOK_LEVELS}")))?,
        None => BOOK_LEVELS,
    };
    if q.get("level").is_some_and(|l| l != "0") {
        return Err(UpbitError::validation(
            "level: only 0 (no price grouping) is offered",
        ));
    }
    let md = up.st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let v: Vec<Value> = ms.iter().map(|m| orderbook_json(&md, m, count)).collect();
    drop(md);
    Ok(reply(Value::Array(v)))
}

/// A trade in Upbit's shape (REST `trades/ticks`).
pub(crate) fn trade_json(
    m: &Market,
    t: &ringbook_engine::marketdata::MdTrade,
    prev_close: i64,
) -> Value {
    let secs = (t.ts / 1_000_000_000) as i64;
    let dt = datetime(secs, 0);
    json!({
        "market": m.code,
        "trade_date_utc": &dt[..10],
        "trade_time_utc": &dt[11..],
        "timestamp": t.ts / NS_PER_MS,
        "trade_price": price(m, t.price.0),
        "trade_volume": volume(m, t.qty.0),
        "prev_closing_price": price(m, prev_close),
        "change_price": num(&{
            let c = t.price.0 - prev_close;
            let s = m.scales.price_str(c.abs()).unwrap_or_default();
            if c < 0 { format!("-{s}") } else { s }
        }),
        "ask_bid": match t.taker_side { Side::Sell => "ASK", Side::Buy => "BID" },
        "sequential_id": t.trade_id.0,
    })
}

pub(crate) fn prev_close(md: &WebMd, m: &Market) -> i64 {
    let (today, prev) = days(md, m);
    prev.map(|c| c.close.0)
        .or(today.map(|c| c.open.0))
        .unwrap_or(0)
}

/// `GET /v1/trades/ticks?market=KRW-BTC[&count=N][&cursor=ID][&to=HHmmss]`: newest first.
pub(crate) async fn trades(
    State(up): State<Arc<Upbit>>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let m = up.market(
        q.get("market")
            .ok_or_else(|| UpbitError::validation("market is missing (required parameter)"))?,
    )?;
    let count = count(&q, 1, TRADES_MAX)?;
    let cursor = q
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| UpbitError::validation("cursor: expected a sequential_id"))
        })
        .transpose()?;
    if q.get("daysAgo").is_some_and(|d| d != "0") {
        return Err(UpbitError::validation("daysAgo: only today's tape is kept"));
    }
    let md = up.st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let to_ns = match q.get("to").filter(|s| !s.is_empty()) {
        Some(t) => {
            let secs = parse_hms(t).ok_or_else(|| {
                UpbitError::validation(
                    "to: expected HHmmss or HH:mm:ss (UTC), 00:00:00 to 23:59:59",
                )
            })?;
            Some(Interval::D1.open_time(md.md.now_ns()) + secs * 1_000_000_000)
        }
        None => None,
    };
    let pc = prev_close(&md, m);
    let mut all = Vec::new();
    md.md.tape(m.sid, usize::MAX, |t| all.push(*t));
    let v: Vec<Value> = all
        .iter()
        .rev()
        .filter(|t| cursor.is_none_or(|c| t.trade_id.0 < c) && to_ns.is_none_or(|x| t.ts < x))
        .take(count)
        .map(|t| trade_json(m, t, pc))
        .collect();
    drop(md);
    Ok(reply(Value::Array(v)))
}

fn count(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, UpbitError> {
    match q.get("count") {
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=max).contains(c))
            .ok_or_else(|| UpbitError::validation(format!("count must be 1..={max}"))),
        None => Ok(default.min(max)),
    }
}

/// How an Upbit candle period is built from the builder's candles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    /// `unit` minutes from a source interval grouped `k` at a time.
    Minutes {
        unit: u32,
        src: Interval,
        k: u64,
    },
    Days,
    Weeks,
    Months,
}

fn merge(a: &mut Candle, b: &Candle) {
    a.high = a.high.max(b.high);
    a.low = a.low.min(b.low);
    a.close = b.close;
    a.volume += b.volume;
    a.notional_ticks += b.notional_ticks;
    a.trades += b.trades;
}

/// The candles of a period, oldest first, every one starting before `to` (exclusive).
fn period_candles(md: &WebMd, m: &Market, p: Period, to: Option<u64>) -> Vec<Candle> {
    let (src, key): (Interval, Box<dyn Fn(u64) -> u64>) = match p {
        Period::Minutes { src, k, .. } => {
            let len = src.nanos() * k;
            (src, Box::new(move |t| t - t % len))
        }
        Period::Days => (Interval::D1, Box::new(|t| t)),
        Period::Weeks => (Interval::W1, Box::new(|t| t)),
        Period::Months => (
            Interval::D1,
            Box::new(|t| {
                let (y, mo, _) = civil((t / 86_400_000_000_000) as i64);
                days_from_civil(y, mo, 1) as u64 * 86_400_000_000_000
            }),
        ),
    };
    let mut out: Vec<Candle> = Vec::new();
    md.md.candles(m.sid, src, usize::MAX, |c| {
        let start = key(c.open_time);
        match out.last_mut() {
            Some(last) if last.open_time == start => merge(last, c),
            _ => out.push(Candle {
                open_time: start,
                ..*c
            }),
        }
    });
    if let Some(to) = to {
        out.retain(|c| c.open_time < to);
    }
    out
}

async fn candles(
    up: Arc<Upbit>,
    q: HashMap<String, String>,
    p: Period,
) -> Result<Response, UpbitError> {
    let m = up.market(
        q.get("market")
            .ok_or_else(|| UpbitError::validation("market is missing (required parameter)"))?,
    )?;
    let count = count(&q, 1, CANDLES_MAX)?;
    let to = match q.get("to").filter(|s| !s.is_empty()) {
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            UpbitError::validation("to: expected yyyy-MM-ddTHH:mm:ss with an optional Z or ±HH:mm")
        })?),
        None => None,
    };
    let md = up.st.edge.md_fresh().await?.ok_or_else(no_md)?;
    let cs = period_candles(&md, m, p, to);
    let tick = md.md.tick_size(m.sid);
    let n = cs.len();
    let v: Vec<Value> = cs
        .iter()
        .enumerate()
        .rev()
        .take(count)
        .map(|(i, c)| {
            let secs = (c.open_time / 1_000_000_000) as i64;
            let mut o = json!({
                "market": m.code,
                "candle_date_time_utc": datetime(secs, 0),
                "candle_date_time_kst": datetime(secs, KST),
                "opening_price": price(m, c.open.0),
                "high_price": price(m, c.high.0),
                "low_price": price(m, c.low.0),
                "trade_price": price(m, c.close.0),
                "timestamp": c.open_time / NS_PER_MS,
                "candle_acc_trade_price": quote_amount(&up, m, c.quote_volume(tick)),
                "candle_acc_trade_volume": volume(m, c.volume),
            });
            match p {
                Period::Minutes { unit, .. } => o["unit"] = json!(unit),
                Period::Days => {
                    let prev = if i > 0 { cs[i - 1].close.0 } else { c.open.0 };
                    let ch = c.close.0 - prev;
                    let s = m.scales.price_str(ch.abs()).unwrap_or_default();
                    o["prev_closing_price"] = price(m, prev);
                    o["change_price"] = num(&if ch < 0 { format!("-{s}") } else { s });
                    o["change_rate"] = num(&if prev > 0 {
                        let r = ratio_str(
                            ch.unsigned_abs() as u128 * 100_000_000 / prev as u128,
                            100_000_000,
                        )
                        .unwrap_or_else(|| "0".into());
                        if ch < 0 {
                            format!("-{r}")
                        } else {
                            r
                        }
                    } else {
                        "0".into()
                    });
                }
                Period::Weeks | Period::Months => {
                    o["first_day_of_period"] = json!(datetime(secs, 0)[..10].to_string());
                }
            }
            let _ = n;
            o
        })
        .collect();
    drop(md);
    Ok(reply(Value::Array(v)))
}

/// `GET /v1/candles/minutes/{unit}` for 1, 3, 5, 10, 15, 30, 60, 240.
pub(crate) async fn candles_minutes(
    State(up): State<Arc<Upbit>>,
    Path(unit): Path<String>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let p = match unit.as_str() {
        "1" => Period::Minutes {
            unit: 1,
            src: Interval::M1,
            k: 1,
        },
        "3" => Period::Minutes {
            unit: 3,
            src: Interval::M1,
            k: 3,
        },
        "5" => Period::Minutes {
            unit: 5,
            src: Interval::M5,
            k: 1,
        },
        "10" => Period::Minutes {
            unit: 10,
            src: Interval::M5,
            k: 2,
        },
        "15" => Period::Minutes {
            unit: 15,
            src: Interval::M15,
            k: 1,
        },
        "30" => Period::Minutes {
            unit: 30,
            src: Interval::M30,
            k: 1,
        },
        "60" => Period::Minutes {
            unit: 60,
            src: Interval::H1,
            k: 1,
        },
        "240" => Period::Minutes {
            unit: 240,
            src: Interval::H4,
            k: 1,
        },
        _ => {
            return Err(UpbitError::validation(
                "unit must be one of 1, 3, 5, 10, 15, 30, 60, 240",
            ))
        }
    };
    candles(up, q, p).await
}

/// `GET /v1/candles/days|weeks|months`.
pub(crate) async fn candles_period(
    State(up): State<Arc<Upbit>>,
    Path(period): Path<String>,
    Query(q): Q,
) -> Result<Response, UpbitError> {
    let p = match period.as_str() {
        "days" => Period::Days,
        "weeks" => Period::Weeks,
        "months" => Period::Months,
        _ => return Err(UpbitError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "candles: minutes/{unit}, days, weeks or months (seconds and years are not offered)",
        )),
    };
    candles(up, q, p).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_convert_both_ways() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19782);
        assert_eq!(civil(19782), (2024, 2, 29));
        for d in [-1000i64, 0, 59, 60, 10_000, 20_000, 30_000] {
            let (y, m, dd) = civil(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(datetime(1_542_894_924, 0), "2018-11-22T13:55:24");
        assert_eq!(datetime(1_542_894_924, KST), "2018-11-22T22:55:24");
        assert_eq!(iso(1_542_894_924_397), "2018-11-22T13:55:24+00:00");
        let ns = 1_542_894_924 * 1_000_000_000;
        assert_eq!(parse_time("2018-11-22T13:55:24"), Some(ns));
        assert_eq!(parse_time("2018-11-22 13:55:24"), Some(ns));
        assert_eq!(parse_time("2018-11-22T13:55:24Z"), Some(ns));
        assert_eq!(parse_time("2018-11-22T22:55:24+09:00"), Some(ns));
        assert_eq!(parse_time("2018-11-22T13:55"), None);
        // Offsets and times that do not exist, signs and spaces inside fields.
        for bad in [
            "2018-11-22T13:55:24+99:99",
            "2018-11-22T13:55:24+24:00",
            "2018-11-22T13:55:24+09:60",
            "2018-11-22T13:55:24+9:00",
            "2018-11-22T13:55:24+09:00:00",
            "2018-11-22T13:55:24+999999999999999999:00",
            "2018-11-22T23:59:60",
            "+018-11-22T13:55:24",
            "2018-+1-22T13:55:24",
            "2018-11-22T13:+5:24",
            "2018-11-22T13 55 24",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(parse_time("2018-11-22T04:25:24-09:30"), Some(ns));
        assert_eq!(parse_time("2018-13-22T13:55:24"), None);
        assert_eq!(
            parse_time("2018-02-31T13:55:24"),
            None,
            "no 31st of February"
        );
        assert_eq!(parse_time("2023-02-29T00:00:00"), None);
        assert!(parse_time("2024-02-29T00:00:00").is_some(), "a leap day");
        assert_eq!(parse_time("2018-11-22T24:00:00"), None);
        assert_eq!(parse_hms("13:55:24"), Some(13 * 3600 + 55 * 60 + 24));
        assert_eq!(parse_hms("135524"), parse_hms("13:55:24"));
        assert_eq!(parse_hms("23:59:59"), Some(86_399));
        for bad in [
            "25:00:00", "12:60:00", "12:00:60", "1:2:3", "12:0000", "ab:cd:ef", "1355240", "",
            "12:3::56", "::::::::", "1:::::::", "+1:00:00", "12:00:0+", "１２",
        ] {
            assert_eq!(parse_hms(bad), None, "{bad}");
        }
        assert_eq!(num("95000000"), json!(95000000u64));
        assert_eq!(num("0.0001"), json!(0.0001));
        assert_eq!(num("-5"), json!(-5));
    }
}
