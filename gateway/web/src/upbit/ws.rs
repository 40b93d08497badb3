//! `/websocket/v1` (and `/websocket/v1/private`) in Upbit's WebSocket format.
//!
//! A request is a JSON array (text or binary frame): `{"ticket":…}`, then one or more
//! `{"type":"ticker"|"trade"|"orderbook"|"myOrder"|"myAsset","codes":[…],
//! "is_only_snapshot":bool,"is_only_realtime":bool}`, optionally `{"format":"DEFAULT"|"SIMPLE"}`.
//! Each request replaces the connection's subscriptions. Public types need no key; `myOrder`
//! and `myAsset` need the upgrade request signed as a REST request is (`Authorization: Bearer`
//! JWT with a fresh nonce; a key with `read`).
//!
//! Public data comes from the web edge's market-data copy through the same subscriptions as
//! `/ws` ([`crate::public::Subs`]): a `SNAPSHOT` first, then `REALTIME` messages — `trade` for
//! every trade, `orderbook` (the top levels, as Upbit sends them: whole) and `ticker` after every
//! change. A subscriber too slow for its queue is conflated to a fresh snapshot, as on `/ws`.
//! Private data comes from the dispatcher's per-user routing ([`crate::edge::WsConn`]): a
//! `myOrder` for each order event and each fill (`state` `wait`, `trade`, `done`, `cancel`), and a
//! `myAsset` after anything that changed the user's balances (read through the sequenced path).
//! Messages are sent as text frames.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use ringbook_engine::{Command, Event, Query as EngineQuery, SymbolId, UserId};
use ringbook_gateway::server::Role;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};

use super::auth::{self, Perm};
use super::decimal::units_str;
use super::exchange::order_json;
use super::quotation::{orderbook_json, prev_close};
use super::{orders, Market, Upbit, UpbitError};
use crate::edge::{WsConn, CH_BALANCES, CH_FILLS, CH_ORDERS};
use crate::public::{Channel, PubSub};
use crate::ws::{bounded, ping_allowed, ping_refused, received, WsSlot};

/// Order book units in a WebSocket `orderbook` message unless the code asks (`KRW-BTC.5`).
pub const WS_BOOK_LEVELS: usize = 15;
/// Subscriptions (type × code) one request may make.
pub const WS_SUBS_MAX: usize = 30;

const CLOSE_POLICY: u16 = 1008;
const CLOSE_AWAY: u16 = 1001;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Ticker,
    Trade,
    Orderbook,
    MyOrder,
    MyAsset,
}

#[derive(Clone, Debug)]
struct Sub {
    ty: Ty,
    /// Markets (index into `Upbit::markets`) with their order book depth; empty: every market
    /// (private types only).
    codes: Vec<(usize, usize)>,
    only_snapshot: bool,
    only_realtime: bool,
}

#[derive(Debug, Default)]
struct Subscription {
    subs: Vec<Sub>,
    simple: bool,
}

fn ws_err(name: &str, message: &str) -> String {
    json!({"error": {"name": name, "message": message}}).to_string()
}

/// `GET /websocket/v1` and `/websocket/v1/private`.
pub(crate) async fn upgrade(
    State(up): State<Arc<Upbit>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    place: Option<axum::Extension<crate::conns::ConnPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    let st = &up.st;
    let Some(slot) = WsSlot::take(&st.edge, st.ws_conns_max, place.map(|p| p.0)) else {
        let m = &st.edge.metrics;
        m.inc(&m.ws_refused);
        return UpbitError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many WebSocket connections",
        )
        .into_response();
    };
    let private = uri.path().ends_with("/private");
    let key = if headers.contains_key(axum::http::header::AUTHORIZATION) || private {
        match auth::check(
            &up.keys,
            &Method::GET,
            &uri,
            &headers,
            b"",
            Perm::Read,
            std::time::Instant::now(),
        ) {
            Ok((k, _)) => Some((k.user, k.acct)),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    bounded(ws, st.ws_write_max).on_upgrade(move |socket| run(up, socket, peer.ip(), key, slot))
}

fn parse_request(up: &Upbit, text: &str, authed: bool) -> Result<Subscription, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|_| ws_err("WRONG_FORMAT", "a JSON array"))?;
    let Value::Array(items) = v else {
        return Err(ws_err("WRONG_FORMAT", "a JSON array"));
    };
    if !items.iter().any(|x| x.get("ticket").is_some()) {
        return Err(ws_err("NO_TICKET", "a {\"ticket\":…} field is required"));
    }
    let mut s = Subscription::default();
    let mut count = 0;
    for x in &items {
        if let Some(f) = x.get("format") {
            s.simple = match f.as_str() {
                Some("DEFAULT") => false,
                Some("SIMPLE") => true,
                _ => return Err(ws_err("INVALID_PARAM", "format: DEFAULT or SIMPLE")),
            };
        }
        let Some(t) = x.get("type") else { continue };
        let ty = match t.as_str() {
            Some("ticker") => Ty::Ticker,
            Some("trade") => Ty::Trade,
            Some("orderbook") => Ty::Orderbook,
            Some("myOrder") => Ty::MyOrder,
            Some("myAsset") => Ty::MyAsset,
            _ => {
                return Err(ws_err(
                    "INVALID_PARAM",
                    "type: ticker, trade, orderbook, myOrder or myAsset",
                ))
            }
        };
        let private = matches!(ty, Ty::MyOrder | Ty::MyAsset);
        if private && !authed {
            return Err(ws_err(
                "INVALID_AUTH",
                "myOrder and myAsset need an authenticated connection (Authorization: Bearer JWT on the upgrade)",
            ));
        }
        let mut codes = Vec::new();
        for c in x
            .get("codes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let c = c
                .as_str()
                .ok_or_else(|| ws_err("INVALID_PARAM", "codes: strings"))?;
            let (code, depth) = match c.split_once('.') {
                Some((m, n)) if ty == Ty::Orderbook => (
                    m,
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=super::quotation::BOOK_LEVELS).contains(n))
                        .ok_or_else(|| ws_err("INVALID_PARAM", "orderbook depth: 1..=30"))?,
                ),
                _ => (c, WS_BOOK_LEVELS),
            };
            let i = up
                .markets
                .iter()
                .position(|m| m.code == code)
                .ok_or_else(|| ws_err("INVALID_PARAM", &format!("unknown code {code:?}")))?;
            codes.push((i, depth));
        }
        if codes.is_empty() && !private {
            return Err(ws_err("NO_CODES", "codes is required for public types"));
        }
        count += codes.len().max(1);
        if count > WS_SUBS_MAX {
            return Err(ws_err("INVALID_PARAM", "too many codes in one request"));
        }
        let flag = |k: &str| x.get(k).and_then(Value::as_bool).unwrap_or(false);
        s.subs.push(Sub {
            ty,
            codes,
            only_snapshot: flag("is_only_snapshot"),
            only_realtime: flag("is_only_realtime"),
        });
    }
    if s.subs.is_empty() {
        return Err(ws_err("NO_TYPE", "a {\"type\":…} field is required"));
    }
    Ok(s)
}

/// Upbit's SIMPLE abbreviations.
fn abbreviate(k: &str) -> &str {
    const M: &[(&str, &str)] = &[
        ("type", "ty"),
        ("code", "cd"),
        ("timestamp", "tms"),
        ("stream_type", "st"),
        ("opening_price", "op"),
        ("high_price", "hp"),
        ("low_price", "lp"),
        ("trade_price", "tp"),
        ("prev_closing_price", "pcp"),
        ("change", "c"),
        ("change_price", "cp"),
        ("signed_change_price", "scp"),
        ("change_rate", "cr"),
        ("signed_change_rate", "scr"),
        ("trade_volume", "tv"),
        ("acc_trade_volume", "atv"),
        ("acc_trade_volume_24h", "atv24h"),
        ("acc_trade_price", "atp"),
        ("acc_trade_price_24h", "atp24h"),
        ("trade_date", "tdt"),
        ("trade_time", "ttm"),
        ("trade_timestamp", "ttms"),
        ("ask_bid", "ab"),
        ("highest_52_week_price", "h52wp"),
        ("highest_52_week_date", "h52wdt"),
        ("lowest_52_week_price", "l52wp"),
        ("lowest_52_week_date", "l52wdt"),
        ("market_state", "ms"),
        ("market_warning", "mw"),
        ("sequential_id", "sid"),
        ("total_ask_size", "tas"),
        ("total_bid_size", "tbs"),
        ("orderbook_units", "obu"),
        ("ask_price", "ap"),
        ("bid_price", "bp"),
        ("ask_size", "as"),
        ("bid_size", "bs"),
        ("level", "lv"),
        ("uuid", "uid"),
        ("order_type", "ot"),
        ("state", "s"),
        ("trade_uuid", "tuid"),
        ("price", "p"),
        ("avg_price", "ap"),
        ("volume", "v"),
        ("remaining_volume", "rv"),
        ("executed_volume", "ev"),
        ("trades_count", "tc"),
        ("reserved_fee", "rsf"),
        ("remaining_fee", "rmf"),
        ("paid_fee", "pf"),
        ("locked", "l"),
        ("executed_funds", "ef"),
        ("trade_fee", "tf"),
        ("is_maker", "im"),
        ("identifier", "id"),
        ("time_in_force", "tif"),
        ("order_timestamp", "otms"),
        ("asset_uuid", "astuid"),
        ("assets", "ast"),
        ("currency", "cu"),
        ("balance", "b"),
        ("asset_timestamp", "asttms"),
    ];
    M.iter().find(|(a, _)| *a == k).map_or(k, |(_, b)| b)
}

fn simple(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (abbreviate(&k).to_string(), simple(x)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(simple).collect()),
        x => x,
    }
}

fn finish(sub: &Subscription, mut v: Value, snapshot: bool) -> String {
    v["stream_type"] = json!(if snapshot { "SNAPSHOT" } else { "REALTIME" });
    if sub.simple {
        v = simple(v);
    }
    v.to_string()
}

/// The subscription of `ty` covering symbol `sid`, if any.
fn find<'a>(up: &Upbit, sub: &'a Subscription, ty: Ty, sid: SymbolId) -> Option<(&'a Sub, usize)> {
    sub.subs.iter().filter(|s| s.ty == ty).find_map(|s| {
        if s.codes.is_empty() {
            return Some((s, WS_BOOK_LEVELS));
        }
        s.codes
            .iter()
            .find(|(i, _)| up.markets[*i].sid == sid)
            .map(|(_, d)| (s, *d))
    })
}

fn market_named<'a>(up: &'a Upbit, name: &str) -> Option<&'a Market> {
    let sid = up.config().symbol_id(name)?;
    up.market_of(sid)
}

/// A message from the connection's queue (public channels in `/ws`'s format, private events),
/// in Upbit's format: zero or more messages.
fn convert(up: &Upbit, sub: &Subscription, raw: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return Vec::new();
    };
    let channel = v["channel"].as_str().unwrap_or("");
    let snapshot = v["type"] == "snapshot";
    let mut out = Vec::new();
    let public_ok = |s: &Sub| {
        if snapshot {
            !s.only_realtime
        } else {
            !s.only_snapshot
        }
    };
    match channel {
        "depth" | "ticker" | "trades" => {
            let Some(m) = v["symbol"].as_str().and_then(|n| market_named(up, n)) else {
                return out;
            };
            let ty = match channel {
                "depth" => Ty::Orderbook,
                "ticker" => Ty::Ticker,
                _ => Ty::Trade,
            };
            let Some((s, depth)) = find(up, sub, ty, m.sid) else {
                return out;
            };
            if !public_ok(s) {
                return out;
            }
            let Some(md) = up.st.edge.md_read() else {
                return out;
            };
            match ty {
                Ty::Orderbook => {
                    let mut b = orderbook_json(&md, m, depth);
                    if let Some(o) = b.as_object_mut() {
                        o.remove("market");
                    }
                    b["type"] = json!("orderbook");
                    b["code"] = json!(m.code);
                    out.push(finish(sub, b, snapshot));
                }
                Ty::Ticker => {
                    let t = super::quotation::ticker_json(up, &md, m);
                    let mut t = t;
                    if let Some(o) = t.as_object_mut() {
                        o.remove("market");
                    }
                    t["type"] = json!("ticker");
                    t["code"] = json!(m.code);
                    t["market_state"] = json!("ACTIVE");
                    t["market_warning"] = json!("NONE");
                    out.push(finish(sub, t, snapshot));
                }
                _ => {
                    let pc = prev_close(&md, m);
                    let trades: Vec<Value> = if snapshot {
                        v["trades"]
                            .as_array()
                            .and_then(|a| a.last())
                            .cloned()
                            .into_iter()
                            .collect()
                    } else {
                        vec![v["data"].clone()]
                    };
                    for t in trades {
                        let Some(ts) = t["ts"].as_u64() else { continue };
                        let mt = ringbook_engine::marketdata::MdTrade {
                            symbol: m.sid,
                            md_seq: t["md_seq"].as_u64().unwrap_or(0),
                            trade_id: ringbook_engine::TradeId(t["trade_id"].as_u64().unwrap_or(0)),
                            ts,
                            price: ringbook_engine::Price(t["price"].as_i64().unwrap_or(0)),
                            qty: ringbook_engine::Qty(t["qty"].as_u64().unwrap_or(0)),
                            taker_side: if t["taker_side"] == "SELL" {
                                ringbook_engine::Side::Sell
                            } else {
                                ringbook_engine::Side::Buy
                            },
                        };
                        let mut x = super::quotation::trade_json(m, &mt, pc);
                        let date = x["trade_date_utc"].clone();
                        let time = x["trade_time_utc"].clone();
                        if let Some(o) = x.as_object_mut() {
                            o.remove("market");
                            o.remove("trade_date_utc");
                            o.remove("trade_time_utc");
                        }
                        x["type"] = json!("trade");
                        x["code"] = json!(m.code);
                        x["trade_date"] = date;
                        x["trade_time"] = time;
                        x["trade_timestamp"] = x["timestamp"].clone();
                        x["change"] = json!(match mt.price.0.cmp(&pc) {
                            std::cmp::Ordering::Greater => "RISE",
                            std::cmp::Ordering::Less => "FALL",
                            std::cmp::Ordering::Equal => "EVEN",
                        });
                        out.push(finish(sub, x, snapshot));
                    }
                }
            }
        }
        "orders" | "fills" => {
            let d = &v["data"];
            let Some(order_id) = d["order_id"].as_u64() else {
                return out;
            };
            let Some(m) = d["symbol"].as_str().and_then(|n| market_named(up, n)) else {
                return out;
            };
            if find(up, sub, Ty::MyOrder, m.sid).is_none() {
                return out;
            }
            let now = d["ts"].as_u64().map_or_else(now_ms, |t| t / 1_000_000);
            let event = d["event"].as_str();
            let leaves = d["leaves_qty"].as_u64().unwrap_or(0);
            let cum = d["cum_qty"].as_u64();
            let state = match (channel, event) {
                ("orders", Some("accepted")) => "wait",
                ("orders", Some("cancelled")) if leaves == 0 => "cancel",
                ("fills", _) => "trade",
                _ => return out,
            };
            // The order as it stood right after this event (the table's record is already
            // past every event of the command: a taker's `wait` showed its fills), or, for an
            // order the table has no record of (placed through another API, or before a
            // restart), what the event itself says; fields it cannot know are null.
            let known = up.st.edge.upbit_orders.get(order_id);
            let Some((r, unknown)) = as_of_event(m, d, state, known) else {
                return out;
            };
            let base = |state: &str| {
                let mut o = order_json(up, m, &r, false);
                let obj = o.as_object_mut().expect("an object");
                let ask_bid = obj.remove("side").unwrap_or(Value::Null);
                let ot = obj.remove("ord_type").unwrap_or(Value::Null);
                obj.remove("market");
                obj.remove("created_at");
                for k in unknown {
                    obj.insert((*k).to_string(), Value::Null);
                }
                o["type"] = json!("myOrder");
                o["code"] = json!(m.code);
                o["ask_bid"] = json!(ask_bid.as_str().map(str::to_uppercase));
                o["order_type"] = ot;
                o["state"] = json!(state);
                o["order_timestamp"] = json!((r.created_ms != 0).then_some(r.created_ms));
                o["timestamp"] = json!(now);
                o
            };
            if state != "trade" {
                out.push(finish(sub, base(state), false));
                return out;
            }
            let mut o = base("trade");
            let qscale = u32::from(up.config().currencies[m.quote_cur.0 as usize].scale);
            // The fill this message reports: the record's last after `as_of_event`, or the
            // message's own fields.
            let fill = r.trades.last().copied().filter(|_| unknown.is_empty());
            let (trade_id, price, qty, fee, maker, ts) = match fill {
                Some(f) => (f.trade_id, f.price, f.qty, f.fee, f.maker, f.ts),
                None => (
                    d["trade_id"].as_u64().unwrap_or(0),
                    d["price"].as_i64().unwrap_or(0),
                    d["qty"].as_u64().unwrap_or(0),
                    d["fee"].as_u64().unwrap_or(0),
                    d["role"] == "MAKER",
                    d["ts"].as_u64().unwrap_or(0),
                ),
            };
            o["trade_uuid"] = json!(format!("{:08x}-0000-4000-9000-{:012x}", m.sid.0, trade_id));
            o["price"] = json!(m.scales.price_str(price));
            o["volume"] = json!(m.scales.volume_str(qty));
            o["trade_fee"] = json!(units_str(u128::from(fee), qscale));
            o["is_maker"] = json!(maker);
            o["trade_timestamp"] = json!(ts / 1_000_000);
            o["avg_price"] = if fill.is_some() && r.executed > 0 {
                let funds: u128 = r.trades.iter().map(|t| t.funds).sum();
                // Quote per base unit, exact; a quotient that does not end in decimal is
                // rounded to the quote currency's price digits and a few more.
                json!(super::decimal::ratio_str(
                    funds * 10u128.pow(m.scales.base),
                    u128::from(r.executed) * u128::from(m.scales.lot) * 10u128.pow(qscale),
                )
                .unwrap_or_else(|| super::decimal::ratio_rounded(
                    funds * 10u128.pow(m.scales.base),
                    u128::from(r.executed) * u128::from(m.scales.lot) * 10u128.pow(qscale),
                    AVG_PRICE_DIGITS,
                )))
            } else {
                Value::Null
            };
            out.push(finish(sub, o, false));
            if cum.is_some() && leaves == 0 {
                out.push(finish(sub, base("done"), false));
            }
        }
        _ => {}
    }
    out
}

/// Digits after the point of a `myOrder` `avg_price` whose quotient does not end in decimal.
const AVG_PRICE_DIGITS: u32 = 8;

/// What an order without a record cannot know from one fill: its type, sums over its earlier
/// fills and the lock of a limit price the fill does not carry.
const UNKNOWN_AT_FILL: &[&str] = &[
    "ord_type",
    "paid_fee",
    "executed_funds",
    "trades_count",
    "reserved_fee",
    "remaining_fee",
    "locked",
];

/// … and from its cancel: also how much it had filled.
const UNKNOWN_AT_CANCEL: &[&str] = &[
    "ord_type",
    "volume",
    "executed_volume",
    "paid_fee",
    "executed_funds",
    "trades_count",
    "reserved_fee",
    "remaining_fee",
];

/// A market order's acceptance: what it locks follows from its protection price and, for a
/// buy, its budget, neither of which the event says (nor a budget buy's quantity: the
/// symbol's largest).
const UNKNOWN_MARKET_SELL: &[&str] = &["locked", "reserved_fee", "remaining_fee"];
const UNKNOWN_MARKET_BUY: &[&str] = &[
    "locked",
    "reserved_fee",
    "remaining_fee",
    "volume",
    "remaining_volume",
];

/// The order of a native `orders`/`fills` message `d` as it stood right after that event, for
/// a `myOrder` message in `state` (`wait`, `trade` or `cancel`), and the fields it cannot know
/// (to be sent null). `known`: the table's record, already past every event of the command.
/// A record's fills up to the message's `cum_qty` are the order's state at that fill; an order
/// without a record (placed through another API, or before a restart) is built from the event.
fn as_of_event(
    m: &Market,
    d: &Value,
    state: &str,
    known: Option<orders::Rec>,
) -> Option<(orders::Rec, &'static [&'static str])> {
    use orders::State;
    let leaves = d["leaves_qty"].as_u64().unwrap_or(0);
    let after_fill = if leaves == 0 {
        State::Done
    } else {
        State::Wait
    };
    if let Some(mut r) = known {
        match state {
            "wait" => {
                r.state = State::Wait;
                r.executed = 0;
                r.fee = 0;
                r.trades.clear();
                r.trades_count = 0;
            }
            "trade" => {
                let cum = d["cum_qty"].as_u64()?;
                let mut sum = 0;
                let upto = r.trades.iter().position(|t| {
                    sum += t.qty;
                    sum == cum
                });
                r.state = after_fill;
                r.executed = cum;
                match upto {
                    Some(k) => {
                        r.trades.truncate(k + 1);
                        r.fee = r.trades.iter().map(|t| u128::from(t.fee)).sum();
                        r.trades_count = k as u64 + 1;
                    }
                    // Past the fills the record keeps: the fill from the message.
                    None => {
                        r.trades.clear();
                        return Some((r, UNKNOWN_AT_FILL));
                    }
                }
            }
            _ => r.state = State::Cancel,
        }
        return Some((r, &[]));
    }
    let side = if d["side"] == "SELL" {
        ringbook_engine::Side::Sell
    } else {
        ringbook_engine::Side::Buy
    };
    let mut r = orders::Rec {
        order_id: d["order_id"].as_u64()?,
        user: d["user"].as_u64().unwrap_or(0) as u32,
        sid: m.sid,
        side,
        ord_type: if d["type"] == "MARKET" {
            "market"
        } else {
            "limit"
        },
        tif: None,
        price: None,
        volume: 0,
        budget: 0,
        coid: d["client_order_id"].as_u64().unwrap_or(0),
        identifier: None,
        created_ms: 0,
        state: State::Wait,
        executed: 0,
        fee: 0,
        trades: Vec::new(),
        trades_count: 0,
    };
    let unknown = match state {
        "wait" => {
            r.volume = d["qty"].as_u64()?;
            if d["type"] == "MARKET" {
                if side == ringbook_engine::Side::Buy {
                    UNKNOWN_MARKET_BUY
                } else {
                    UNKNOWN_MARKET_SELL
                }
            } else {
                r.price = d["price"].as_i64();
                &[][..]
            }
        }
        "trade" => {
            r.executed = d["cum_qty"].as_u64()?;
            r.volume = r.executed + leaves;
            r.state = after_fill;
            UNKNOWN_AT_FILL
        }
        _ => {
            r.state = State::Cancel;
            UNKNOWN_AT_CANCEL
        }
    };
    Some((r, unknown))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn my_asset(up: &Upbit, user: u32, sub: &Subscription) -> Option<String> {
    let (events, _) = up
        .st
        .edge
        .command(
            Role::User(user),
            Command::Query(EngineQuery::Balances { user: UserId(user) }),
        )
        .await
        .ok()?;
    let assets: Vec<Value> = events
        .iter()
        .filter_map(|e| match *e {
            Event::Balance {
                currency,
                available,
                locked,
                ..
            } => {
                let c = up.config().currencies.get(currency.0 as usize)?;
                let s = u32::from(c.scale);
                Some(json!({"currency": c.code, "balance": units_str(u128::from(available), s), "locked": units_str(u128::from(locked), s)}))
            }
            _ => None,
        })
        .collect();
    let now = now_ms();
    Some(finish(
        sub,
        json!({"type": "myAsset", "asset_uuid": orders::uuid(u64::from(user)), "assets": assets,
            "asset_timestamp": now, "timestamp": now}),
        false,
    ))
}

async fn kill_wait(c: &Option<Arc<WsConn>>) {
    match c {
        Some(c) => c.kill.notified().await,
        None => std::future::pending().await,
    }
}

async fn dirty_wait(c: &Option<Arc<WsConn>>) {
    match c {
        Some(c) if c.channels.load(Ordering::Relaxed) & CH_BALANCES != 0 => {
            c.balances_dirty.notified().await
        }
        _ => std::future::pending().await,
    }
}

async fn run(
    up: Arc<Upbit>,
    socket: WebSocket,
    ip: std::net::IpAddr,
    key: Option<(u32, usize)>,
    _slot: WsSlot,
) {
    let st = up.st.clone();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(st.ws_queue_max);
    let conn_id = st.ws_next.fetch_add(1, Ordering::Relaxed);
    let resync = Arc::new(Notify::new());
    let mut private: Option<Arc<WsConn>> = None;
    let mut sub = Subscription::default();
    let mut shutdown = st.shutdown.clone();
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_string().into(),
        }))
    };
    'conn: loop {
        let mut send: Vec<String> = Vec::new();
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = received(msg, &mut sink).await else { break };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Ping(_) if !ping_allowed(&st, ip) => {
                        let _ = sink.send(ping_refused()).await;
                        break;
                    }
                    _ => continue,
                };
                if text.trim() == "PING" {
                    send.push(json!({"status": "UP"}).to_string());
                } else {
                    let now = std::time::Instant::now();
                    let limited = st.limits.address(ip, now).err().or_else(|| {
                        key.and_then(|(_, acct)| st.limits.account(acct, now).err())
                    });
                    if limited.is_some() {
                        send.push(ws_err("TOO_MANY_REQUESTS", "rate limit: retry shortly"));
                    } else {
                        match parse_request(&up, &text, key.is_some()) {
                            Err(e) => send.push(e),
                            Ok(s) => {
                                sub = s;
                                st.edge.subs.unsubscribe(conn_id, None);
                                // Public channels: register (each queues its snapshot first).
                                if let Some(md) = &st.edge.md {
                                    for s in &sub.subs {
                                        let ch = match s.ty {
                                            Ty::Ticker => Channel::Ticker,
                                            Ty::Trade => Channel::Trades,
                                            Ty::Orderbook => Channel::Depth,
                                            _ => continue,
                                        };
                                        for (i, _) in &s.codes {
                                            // On a current copy of the gateway's builder (a
                                            // sync first if the feed was off).
                                            let r = st.edge.subs.subscribe_fresh(&st.edge, md, || PubSub {
                                                conn: conn_id,
                                                symbol: up.markets[*i].sid,
                                                channel: ch,
                                                tx: tx.clone(),
                                                stale: AtomicBool::new(false),
                                                resync: resync.clone(),
                                            }).await;
                                            if let Err(e) = r {
                                                send.push(ws_err("SERVER_BUSY", &e.message));
                                            }
                                        }
                                    }
                                } else if sub.subs.iter().any(|s| !matches!(s.ty, Ty::MyOrder | Ty::MyAsset)) {
                                    send.push(ws_err("INVALID_PARAM", "this server runs without market data"));
                                }
                                // Private channels.
                                let mut bits = 0u8;
                                for s in &sub.subs {
                                    bits |= match s.ty {
                                        Ty::MyOrder => CH_ORDERS | CH_FILLS,
                                        Ty::MyAsset => CH_BALANCES,
                                        _ => 0,
                                    };
                                }
                                match (&private, key) {
                                    (Some(c), _) => c.channels.store(bits, Ordering::Relaxed),
                                    (None, Some((user, acct))) if bits != 0 => {
                                        let c = Arc::new(WsConn {
                                            id: conn_id,
                                            user,
                                            acct,
                                            channels: AtomicU8::new(bits),
                                            tx: tx.clone(),
                                            overflowed: AtomicBool::new(false),
                                            kill: Notify::new(),
                                            session: false,
                                            revoked: AtomicBool::new(false),
                                            balances_dirty: Notify::new(),
                                        });
                                        st.edge.ws_register(c.clone());
                                        private = Some(c);
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                if private.as_ref().is_some_and(|c| c.overflowed.load(Ordering::Acquire)) {
                    let _ = sink.send(close(CLOSE_POLICY, "SLOW_CONSUMER: private backlog overflowed")).await;
                    break;
                }
                send.extend(convert(&up, &sub, &out));
            }
            _ = resync.notified() => {
                if let Some(md) = &st.edge.md {
                    for s in st.edge.subs.resync(&st.edge.config, md, conn_id) {
                        send.extend(convert(&up, &sub, &s));
                    }
                }
            }
            _ = kill_wait(&private) => {
                let _ = sink.send(close(CLOSE_POLICY, "SLOW_CONSUMER: private backlog overflowed")).await;
                break;
            }
            _ = dirty_wait(&private) => {
                if let (Some((user, _)), true) = (key, sub.subs.iter().any(|s| s.ty == Ty::MyAsset)) {
                    if let Some(msg) = my_asset(&up, user, &sub).await {
                        send.push(msg);
                    }
                }
            }
            _ = shutdown.changed() => {
                let _ = sink.send(close(CLOSE_AWAY, "SHUTTING_DOWN")).await;
                break;
            }
        }
        for s in send {
            if sink.send(Message::Text(s.into())).await.is_err() {
                break 'conn;
            }
        }
    }
    st.edge.subs.unsubscribe(conn_id, None);
    if let Some(c) = private.take() {
        st.edge.ws_unregister(c.user, c.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fills: &[(u64, u64)]) -> orders::Rec {
        orders::Rec {
            order_id: 7,
            user: 1,
            sid: SymbolId(0),
            side: ringbook_engine::Side::Buy,
            ord_type: "limit",
            tif: None,
            price: Some(9_700),
            volume: 5,
            budget: 0,
            coid: 1,
            identifier: Some("mine".into()),
            created_ms: 1,
            state: orders::State::Done,
            executed: fills.iter().map(|f| f.0).sum(),
            fee: fills.iter().map(|f| u128::from(f.1)).sum(),
            trades: fills
                .iter()
                .enumerate()
                .map(|(k, &(qty, fee))| orders::Fill {
                    trade_id: k as u64 + 1,
                    ts: 0,
                    price: 9_700,
                    qty,
                    funds: u128::from(qty) * 9_700,
                    fee,
                    maker: false,
                })
                .collect(),
            trades_count: fills.len() as u64,
        }
    }

    /// A record already past the whole command is wound back to each event; an order without
    /// a record is built from the event, with what it cannot know named.
    #[test]
    fn an_order_as_of_each_event() {
        let m = &super::super::markets(&ringbook_engine::Config::default())[0];
        let done = rec(&[(1, 10), (3, 30), (1, 10)]);
        let (r, unknown) = as_of_event(m, &json!({}), "wait", Some(done.clone())).unwrap();
        assert_eq!(
            (r.executed, r.fee, r.trades_count, r.state),
            (0, 0, 0, orders::State::Wait)
        );
        assert!(r.trades.is_empty() && unknown.is_empty());
        let d = json!({"cum_qty": 4, "leaves_qty": 1});
        let (r, unknown) = as_of_event(m, &d, "trade", Some(done.clone())).unwrap();
        assert_eq!(
            (r.executed, r.fee, r.trades_count, r.state),
            (4, 40, 2, orders::State::Wait)
        );
        assert_eq!((r.trades.len(), unknown.len()), (2, 0));
        let d = json!({"cum_qty": 5, "leaves_qty": 0});
        let (r, _) = as_of_event(m, &d, "trade", Some(done.clone())).unwrap();
        assert_eq!((r.executed, r.fee, r.state), (5, 50, orders::State::Done));
        // Past the fills the record keeps: the sums are unknown, the fill is the message's.
        let d = json!({"cum_qty": 9, "leaves_qty": 0});
        let (r, unknown) = as_of_event(m, &d, "trade", Some(done)).unwrap();
        assert!(r.trades.is_empty());
        assert_eq!(unknown, UNKNOWN_AT_FILL);
        // No record: from the event alone.
        let d = json!({"order_id": 9, "user": 2, "side": "SELL", "type": "LIMIT", "price": 9_800,
            "qty": 6, "client_order_id": 3});
        let (r, unknown) = as_of_event(m, &d, "wait", None).unwrap();
        assert_eq!(
            (r.volume, r.price, r.side),
            (6, Some(9_800), ringbook_engine::Side::Sell)
        );
        assert!(unknown.is_empty() && r.identifier.is_none() && r.created_ms == 0);
        let d = json!({"order_id": 9, "side": "BUY", "type": "MARKET", "price": 9_800, "qty": 6});
        assert_eq!(
            as_of_event(m, &d, "wait", None).unwrap().1,
            UNKNOWN_MARKET_BUY
        );
        let d = json!({"order_id": 9, "side": "BUY", "cum_qty": 2, "leaves_qty": 4});
        let (r, unknown) = as_of_event(m, &d, "trade", None).unwrap();
        assert_eq!((r.executed, r.volume, unknown), (2, 6, UNKNOWN_AT_FILL));
        let d = json!({"order_id": 9, "side": "BUY", "leaves_qty": 0, "qty": 4});
        let (r, unknown) = as_of_event(m, &d, "cancel", None).unwrap();
        assert_eq!(
            (r.state, unknown),
            (orders::State::Cancel, UNKNOWN_AT_CANCEL)
        );
    }

    #[test]
    fn simple_format_abbreviates_nested_keys() {
        let v = json!({"type": "orderbook", "code": "KRW-BTC", "orderbook_units": [{"ask_price": 1, "bid_size": 2}]});
        assert_eq!(
            simple(v),
            json!({"ty": "orderbook", "cd": "KRW-BTC", "obu": [{"ap": 1, "bs": 2}]})
        );
    }
}
