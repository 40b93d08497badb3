//! History queries from the PostgreSQL projection (docs/persistence.md, docs/http-api.md
//! "History"): a user's orders, trades and ledger statement, newest first and paginated by an
//! opaque cursor, and candles beyond the in-memory window.
//!
//! These read the projection's tables, never the engine: the answer is as of the projection's
//! last committed sequence (`projected_seq` in every reply), which lags the engine by the
//! projection's lag. Enabled by [`enable_history`] (`ringbook serve --postgres URL`); without it
//! the routes answer `UNSUPPORTED`, and while the database is unreachable `NOT_READY`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use ringbook_engine::RejectCode;
use ringbook_gateway::server::Role;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use crate::api::{Authed, Shared};
use crate::error::{ApiError, WebCode};
use crate::json::{self as j, Named};

/// Rows per page when `limit` is not given.
pub const HISTORY_LIMIT_DEFAULT: i64 = 100;
/// The most rows per page: a `limit` outside `1..=HISTORY_LIMIT_MAX` is `400 BAD_REQUEST`.
pub const HISTORY_LIMIT_MAX: i64 = 1000;

struct History {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

static HISTORY: OnceLock<History> = OnceLock::new();

/// Serves the history routes from the projection in the PostgreSQL database at `url` (the one
/// `ringbook serve --postgres` projects into). Call before the web edge starts; later calls
/// change nothing.
pub fn enable_history(url: &str) {
    let _ = HISTORY.set(History {
        url: url.to_string(),
        client: tokio::sync::Mutex::new(None),
    });
}

/// The projection history is served from, or the 501 every history query gets without one
/// (asked first, so that a malformed parameter of a query that cannot be served anyway is not
/// reported as the reason).
fn history() -> Result<&'static History, ApiError> {
    HISTORY.get().ok_or_else(|| {
        ApiError::web(
            WebCode::Unsupported,
            "no history here: the server runs without a projection (serve --postgres URL)",
        )
    })
}

async fn client() -> Result<Arc<Client>, ApiError> {
    let h = history()?;
    let mut slot = h.client.lock().await;
    if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
        return Ok(Arc::clone(c));
    }
    let unreachable = |e: String| {
        ApiError::web(
            WebCode::NotReady,
            format!("the projection's database is unreachable ({e}); retry later"),
        )
    };
    let (c, conn) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&h.url, NoTls),
    )
    .await
    .map_err(|_| unreachable("connect timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let c = Arc::new(c);
    *slot = Some(Arc::clone(&c));
    Ok(c)
}

/// Runs a history query and returns its rows with the projected sequence they are complete
/// up to. `last_seq` is read first and, with `bounded`, passed as the query's last parameter
/// (one past `params`), which the query uses as `seq <= $n`: rows committed after it (the
/// projection goes on between the two statements) are left out, so a page never holds a row
/// beyond the `projected_seq` it reports, nor lacks one at or before it. (Read after the rows,
/// as it was, it could be ahead of them.)
async fn query(
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    bounded: bool,
) -> Result<(Vec<Row>, i64), ApiError> {
    let c = client().await?;
    let failed = |e: tokio_postgres::Error| {
        ApiError::web(
            WebCode::NotReady,
            format!("the projection's database failed ({e}); retry later"),
        )
    };
    let seq: i64 = c
        .query_one("SELECT last_seq FROM projection_state WHERE id = 1", &[])
        .await
        .map_err(failed)?
        .try_get(0)
        .map_err(failed)?;
    let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
    if bounded {
        all.push(&seq);
    }
    let rows = c.query(sql, &all).await.map_err(failed)?;
    Ok((rows, seq))
}

/// The token's user; a `user` parameter naming another is refused as everywhere else in the
/// API (it was ignored here, answering with the token's own history: a docs review finding).
fn user(a: &Authed, q: &HashMap<String, String>) -> Result<i64, ApiError> {
    let Role::User(u) = a.1 else {
        return Err(ApiError::reject(
            RejectCode::UserOnly,
            "history is a user's own: log in as a user",
        ));
    };
    match int(q, "user")? {
        Some(asked) if asked != i64::from(u) => Err(ApiError::reject(
            RejectCode::NotYourAccount,
            format!("user {asked}: history is a user's own (this token is user {u})"),
        )),
        _ => Ok(i64::from(u)),
    }
}

fn int(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad(format!("{key}: expected an integer, got {v:?}")))
        })
        .transpose()
}

/// `limit`: absent, [`HISTORY_LIMIT_DEFAULT`]; otherwise 1 to [`HISTORY_LIMIT_MAX`], or 400
/// (never silently clamped: a client asking for 0 or 5000 rows has a bug worth hearing about).
fn limit(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match int(q, "limit")? {
        None => Ok(HISTORY_LIMIT_DEFAULT),
        Some(l) if (1..=HISTORY_LIMIT_MAX).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::bad(format!(
            "limit: {l} is out of range: 1 to {HISTORY_LIMIT_MAX}"
        ))),
    }
}

/// The paginated history endpoints, each with the tag that starts every cursor it issues.
///
/// A cursor is `<tag>-<part>-…`: the tag names the endpoint, the parts are the sort key of the
/// last row of the page (the next page starts after it), each a canonical decimal (digits
/// only, no sign, no leading zero) within the range of its column. An endpoint takes back only
/// its own cursors, unchanged: another endpoint's (trades and ledger keys have the same shape)
/// or one with a part out of range is `400 BAD_REQUEST`, never a page from somewhere else.
/// Clients treat cursors as opaque; the format may change between versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    Orders,
    Trades,
    Ledger,
}

impl Feed {
    const ALL: [Feed; 3] = [Feed::Orders, Feed::Trades, Feed::Ledger];

    fn tag(self) -> &'static str {
        match self {
            Feed::Orders => "o",
            Feed::Trades => "t",
            Feed::Ledger => "l",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Feed::Orders => "/api/v1/history/orders",
            Feed::Trades => "/api/v1/history/trades",
            Feed::Ledger => "/api/v1/history/ledger",
        }
    }

    /// `c` is not a cursor this endpoint issued.
    fn foreign(self, c: &str) -> ApiError {
        ApiError::bad(format!(
            "cursor: {c:?} is not a cursor {} returned (pass its next_cursor back unchanged)",
            self.path()
        ))
    }

    /// The `N` parts of `c`, a cursor this endpoint issued, or why it is not one.
    fn split<const N: usize>(self, c: &str) -> Result<[&str; N], ApiError> {
        let mut parts = c.split('-');
        let tag = parts.next().unwrap_or_default();
        if tag != self.tag() {
            return Err(match Feed::ALL.into_iter().find(|f| f.tag() == tag) {
                Some(other) => ApiError::bad(format!(
                    "cursor: {c:?} was returned by {}, not {}: a cursor pages only the \
                     endpoint that returned it",
                    other.path(),
                    self.path()
                )),
                None => self.foreign(c),
            });
        }
        <[&str; N]>::try_from(parts.collect::<Vec<_>>()).map_err(|_| self.foreign(c))
    }

    /// Part `name` of cursor `c`: `s`, a canonical decimal that fits `T` (the column's type:
    /// a part past it is refused, never wrapped into another row's key).
    fn part<T: std::str::FromStr>(self, c: &str, name: &str, s: &str) -> Result<T, ApiError> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return Err(self.foreign(c));
        }
        s.parse().map_err(|_| {
            ApiError::bad(format!(
                "cursor: {c:?}: its {name} {s} is out of range (pass a next_cursor back unchanged)"
            ))
        })
    }
}

/// Where a page of `/history/orders` ends: the last order's `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OrdersCursor {
    seq: i64,
}

impl OrdersCursor {
    fn parse(c: &str) -> Result<Self, ApiError> {
        let f = Feed::Orders;
        let [seq] = f.split(c)?;
        Ok(OrdersCursor {
            seq: f.part(c, "seq", seq)?,
        })
    }
}

impl std::fmt::Display for OrdersCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", Feed::Orders.tag(), self.seq)
    }
}

/// Where a page of `/history/trades` ends: the last item's `(seq, symbol_id, trade_id,
/// taker)`, `taker` 1 for the user's taking side and 0 for its resting side (a self-trade is
/// both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TradesCursor {
    seq: i64,
    symbol: i16,
    trade_id: i64,
    taker: i16,
}

impl TradesCursor {
    fn parse(c: &str) -> Result<Self, ApiError> {
        let f = Feed::Trades;
        // A cursor of three parts was issued before self-trades showed both sides, when a trade
        // was one row: it resumes after both of that trade's sides (`taker` 0).
        let [seq, symbol, trade_id, taker] = match f.split::<3>(c) {
            Ok([seq, symbol, trade_id]) => [seq, symbol, trade_id, "0"],
            Err(_) => f.split(c)?,
        };
        let taker = f.part(c, "side", taker)?;
        if taker > 1 {
            return Err(f.foreign(c));
        }
        Ok(TradesCursor {
            seq: f.part(c, "seq", seq)?,
            symbol: f.part(c, "symbol id", symbol)?,
            trade_id: f.part(c, "trade id", trade_id)?,
            taker,
        })
    }
}

impl std::fmt::Display for TradesCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = Feed::Trades.tag();
        write!(
            f,
            "{t}-{}-{}-{}-{}",
            self.seq, self.symbol, self.trade_id, self.taker
        )
    }
}

/// Where a page of `/history/ledger` ends: the last leg's `(seq, entry, leg)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LedgerCursor {
    seq: i64,
    entry: i32,
    leg: i16,
}

impl LedgerCursor {
    fn parse(c: &str) -> Result<Self, ApiError> {
        let f = Feed::Ledger;
        let [seq, entry, leg] = f.split(c)?;
        Ok(LedgerCursor {
            seq: f.part(c, "seq", seq)?,
            entry: f.part(c, "entry", entry)?,
            leg: f.part(c, "leg", leg)?,
        })
    }
}

impl std::fmt::Display for LedgerCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = Feed::Ledger.tag();
        write!(f, "{t}-{}-{}-{}", self.seq, self.entry, self.leg)
    }
}

/// `cursor`, parsed by the endpoint's `parse`; absent: from the newest.
fn cursor<C>(
    q: &HashMap<String, String>,
    parse: fn(&str) -> Result<C, ApiError>,
) -> Result<Option<C>, ApiError> {
    q.get("cursor").map(|c| parse(c)).transpose()
}

fn symbol_filter(st: &Shared, q: &HashMap<String, String>) -> Result<Option<i16>, ApiError> {
    q.get("symbol")
        .map(|s| j::symbol(&st.edge.config, &Named::Name(s.clone())).map(|s| s.0 as i16))
        .transpose()
}

fn symbol_name(st: &Shared, id: i16) -> Value {
    st.edge
        .config
        .symbols
        .get(id as usize)
        .map_or(json!(id), |s| json!(s.name))
}

/// `GET /api/v1/history/orders?symbol=&from=&to=&cursor=&limit=`: the user's orders, newest
/// first (by the sequence of the command that placed them), created in `[from, to)` (engine
/// time, Unix ns).
pub(crate) async fn orders(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    history()?;
    let user = user(&a, &q)?;
    let symbol = symbol_filter(&st, &q)?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let after = cursor(&q, OrdersCursor::parse)?.map(|c| c.seq);
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT seq, order_id, symbol_id, client_order_id::text, side, order_type, tif, price,
                stop_price, qty, display_qty, post_only, stp, status, leaves_qty, filled_qty,
                filled_notional, fees, avg_price::text, reject_code, reject_name, cancel_reason,
                triggered_ts, created_ts, updated_ts
           FROM orders
          WHERE user_id = $1 AND ($2::smallint IS NULL OR symbol_id = $2)
            AND ($3::bigint IS NULL OR created_ts >= $3) AND ($4::bigint IS NULL OR created_ts < $4)
            AND ($5::bigint IS NULL OR seq < $5) AND seq <= $7
          ORDER BY seq DESC LIMIT $6",
        &[&user, &symbol, &from, &to, &after, &limit],
        true,
    )
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.get::<_, i64>(0),
                "order_id": r.get::<_, Option<i64>>(1),
                "symbol": symbol_name(&st, r.get(2)),
                "client_order_id": r.get::<_, &str>(3).parse::<u64>().unwrap_or(0),
                "side": r.get::<_, &str>(4),
                "type": r.get::<_, &str>(5),
                "time_in_force": r.get::<_, &str>(6),
                "price": r.get::<_, i64>(7),
                "stop_price": r.get::<_, Option<i64>>(8),
                "qty": r.get::<_, i64>(9),
                "display_qty": r.get::<_, i64>(10),
                "post_only": r.get::<_, bool>(11),
                "stp": r.get::<_, &str>(12),
                "status": r.get::<_, &str>(13),
                "leaves_qty": r.get::<_, i64>(14),
                "filled_qty": r.get::<_, i64>(15),
                "filled_notional": r.get::<_, i64>(16),
                "fees": r.get::<_, i64>(17),
                "avg_price": r.get::<_, Option<&str>>(18),
                "reject_code": r.get::<_, Option<i32>>(19),
                "reject_name": r.get::<_, Option<&str>>(20),
                "cancel_reason": r.get::<_, Option<&str>>(21),
                "triggered_ts": r.get::<_, Option<i64>>(22),
                "created_ts": r.get::<_, i64>(23),
                "updated_ts": r.get::<_, i64>(24),
            })
        })
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|r| OrdersCursor { seq: r.get(0) }.to_string())
        })
        .flatten();
    Ok(Json(
        json!({"orders": items, "next_cursor": next, "projected_seq": seq}),
    ))
}

/// `GET /api/v1/history/trades?symbol=&from=&to=&cursor=&limit=`: the user's trades (as maker
/// or taker; a self-trade as both), newest first, in `[from, to)`.
pub(crate) async fn trades(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    history()?;
    let user = user(&a, &q)?;
    let symbol = symbol_filter(&st, &q)?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let c = cursor(&q, TradesCursor::parse)?;
    let (c_seq, c_sym, c_id) = (c.map(|c| c.seq), c.map(|c| c.symbol), c.map(|c| c.trade_id));
    let c_taker = c.map(|c| c.taker);
    let limit = limit(&q)?;
    // One row per side the user was on: a self-trade (the user's order took the user's own
    // resting one) is two, its taker side first.
    let (rows, seq) = query(
        "SELECT seq, symbol_id, trade_id, ts, price, qty, notional, aggressor_side, order_id,
                fee, taker
           FROM (SELECT seq, symbol_id, trade_id, ts, price, qty, notional, aggressor_side,
                        taker_order_id AS order_id, taker_fee AS fee, 1::smallint AS taker
                   FROM trades WHERE taker_user_id = $1
                 UNION ALL
                 SELECT seq, symbol_id, trade_id, ts, price, qty, notional, aggressor_side,
                        maker_order_id, maker_fee, 0::smallint
                   FROM trades WHERE maker_user_id = $1) AS mine
          WHERE ($2::smallint IS NULL OR symbol_id = $2)
            AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4)
            AND ($5::bigint IS NULL
                 OR (seq, symbol_id, trade_id, taker) < ($5, $6::smallint, $7, $8::smallint))
            AND seq <= $10
          ORDER BY seq DESC, symbol_id DESC, trade_id DESC, taker DESC LIMIT $9",
        &[
            &user, &symbol, &from, &to, &c_seq, &c_sym, &c_id, &c_taker, &limit,
        ],
        true,
    )
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let taker = r.get::<_, i16>(10) == 1;
            let aggressor: &str = r.get(7);
            let side = match (taker, aggressor) {
                (true, s) => s,
                (false, "BUY") => "SELL",
                (false, _) => "BUY",
            };
            json!({
                "seq": r.get::<_, i64>(0),
                "symbol": symbol_name(&st, r.get(1)),
                "trade_id": r.get::<_, i64>(2),
                "ts": r.get::<_, i64>(3),
                "price": r.get::<_, i64>(4),
                "qty": r.get::<_, i64>(5),
                "notional": r.get::<_, i64>(6),
                "aggressor_side": aggressor,
                "side": side,
                "liquidity": if taker { "TAKER" } else { "MAKER" },
                "order_id": r.get::<_, i64>(8),
                "fee": r.get::<_, i64>(9),
            })
        })
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| {
            rows.last().map(|r| {
                TradesCursor {
                    seq: r.get(0),
                    symbol: r.get(1),
                    trade_id: r.get(2),
                    taker: r.get(10),
                }
                .to_string()
            })
        })
        .flatten();
    Ok(Json(
        json!({"trades": items, "next_cursor": next, "projected_seq": seq}),
    ))
}

/// `GET /api/v1/history/ledger?currency=&from=&to=&cursor=&limit=`: the user's ledger
/// statement, newest first: every leg that moved one of its accounts (`available`, `locked`),
/// signed, with the entry's kind and references.
pub(crate) async fn ledger(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    history()?;
    let user = user(&a, &q)?;
    let currency = q
        .get("currency")
        .map(|s| j::currency(&st.edge.config, &Named::Name(s.clone())).map(|c| c.0 as i16))
        .transpose()?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let c = cursor(&q, LedgerCursor::parse)?;
    let (c_seq, c_entry, c_leg) = (c.map(|c| c.seq), c.map(|c| c.entry), c.map(|c| c.leg));
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT seq, entry, leg, ts, kind, currency_id, account, amount, symbol_id, order_id,
                trade_id, withdrawal_id
           FROM ledger_legs
          WHERE user_id = $1 AND ($2::smallint IS NULL OR currency_id = $2)
            AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4)
            AND ($5::bigint IS NULL OR (seq, entry, leg) < ($5, $6::integer, $7::smallint))
            AND seq <= $9
          ORDER BY seq DESC, entry DESC, leg DESC LIMIT $8",
        &[
            &user, &currency, &from, &to, &c_seq, &c_entry, &c_leg, &limit,
        ],
        true,
    )
    .await?;
    let config = &st.edge.config;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let cur: i16 = r.get(5);
            json!({
                "seq": r.get::<_, i64>(0),
                "entry": r.get::<_, i32>(1),
                "leg": r.get::<_, i16>(2),
                "ts": r.get::<_, i64>(3),
                "kind": r.get::<_, &str>(4),
                "currency": config.currencies.get(cur as usize).map_or(json!(cur), |c| json!(c.code)),
                "account": r.get::<_, &str>(6),
                "amount": r.get::<_, i64>(7),
                "symbol": r.get::<_, Option<i16>>(8).map(|s| symbol_name(&st, s)),
                "order_id": r.get::<_, Option<i64>>(9),
                "trade_id": r.get::<_, Option<i64>>(10),
                "withdrawal_id": r.get::<_, Option<i64>>(11),
            })
        })
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| {
            rows.last().map(|r| {
                LedgerCursor {
                    seq: r.get(0),
                    entry: r.get(1),
                    leg: r.get(2),
                }
                .to_string()
            })
        })
        .flatten();
    Ok(Json(
        json!({"entries": items, "next_cursor": next, "projected_seq": seq}),
    ))
}

/// `GET /api/v1/history/klines/{symbol}?interval=1m&from=&to=&limit=`: stored candles, oldest
/// first from `from` (the next page: `from` = the returned `next_from`). Public data.
pub(crate) async fn klines(
    State(st): State<Shared>,
    Path(symbol): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    history()?;
    let sym = j::symbol(&st.edge.config, &Named::Name(symbol))?.0 as i16;
    let interval = q.get("interval").map_or("1m", String::as_str);
    if !["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"].contains(&interval) {
        return Err(ApiError::bad(format!(
            "interval: {interval:?} is not one of 1m 5m 15m 30m 1h 4h 1d 1w"
        )));
    }
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT open_time, open, high, low, close, volume, quote_volume, trades
           FROM candles
          WHERE symbol_id = $1 AND interval = $2
            AND ($3::bigint IS NULL OR open_time >= $3) AND ($4::bigint IS NULL OR open_time < $4)
          ORDER BY open_time LIMIT $5",
        &[&sym, &interval, &from, &to, &limit],
        false,
    )
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "open_time": r.get::<_, i64>(0),
                "open": r.get::<_, i64>(1),
                "high": r.get::<_, i64>(2),
                "low": r.get::<_, i64>(3),
                "close": r.get::<_, i64>(4),
                "volume": r.get::<_, i64>(5),
                "quote_volume": r.get::<_, i64>(6),
                "trades": r.get::<_, i64>(7),
            })
        })
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.get::<_, i64>(0) + 1))
        .flatten();
    Ok(Json(
        json!({"klines": items, "next_from": next, "projected_seq": seq}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The 400 `r` must be, and its message.
    fn bad<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        let e = r.expect_err("a 400");
        assert_eq!(
            (e.status.as_u16(), e.code, e.reason),
            (400, 4001, "BAD_REQUEST"),
            "{e:?}"
        );
        e.message
    }

    #[test]
    fn limit_is_1_to_1000_and_anything_else_is_400() {
        assert_eq!(limit(&q(&[])).unwrap(), HISTORY_LIMIT_DEFAULT);
        assert_eq!(limit(&q(&[("limit", "1")])).unwrap(), 1);
        assert_eq!(limit(&q(&[("limit", "1000")])).unwrap(), 1000);
        // Out of range: refused, not clamped.
        for l in [
            "0",
            "-1",
            "1001",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            let m = bad(limit(&q(&[("limit", l)])));
            assert_eq!(m, format!("limit: {l} is out of range: 1 to 1000"));
        }
        for l in ["", "x", "1.5", "99999999999999999999"] {
            let m = bad(limit(&q(&[("limit", l)])));
            assert!(m.contains("expected an integer"), "{m}");
        }
    }

    #[test]
    fn cursors_round_trip_through_their_own_endpoint() {
        let o = OrdersCursor { seq: 9 };
        assert_eq!(o.to_string(), "o-9");
        assert_eq!(OrdersCursor::parse("o-9").unwrap(), o);
        let t = TradesCursor {
            seq: 9,
            symbol: 0,
            trade_id: 4,
            taker: 1,
        };
        assert_eq!(t.to_string(), "t-9-0-4-1");
        assert_eq!(TradesCursor::parse("t-9-0-4-1").unwrap(), t);
        // One issued before self-trades showed both sides resumes after both of that trade's.
        assert_eq!(
            TradesCursor::parse("t-9-0-4").unwrap(),
            TradesCursor { taker: 0, ..t }
        );
        let l = LedgerCursor {
            seq: 3,
            entry: 1,
            leg: 2,
        };
        assert_eq!(l.to_string(), "l-3-1-2");
        assert_eq!(LedgerCursor::parse("l-3-1-2").unwrap(), l);
        // The extremes of every column's type.
        for t in [
            TradesCursor {
                seq: 0,
                symbol: 0,
                trade_id: 0,
                taker: 0,
            },
            TradesCursor {
                seq: i64::MAX,
                symbol: i16::MAX,
                trade_id: i64::MAX,
                taker: 1,
            },
        ] {
            assert_eq!(TradesCursor::parse(&t.to_string()).unwrap(), t);
        }
        for l in [
            LedgerCursor {
                seq: 0,
                entry: 0,
                leg: 0,
            },
            LedgerCursor {
                seq: i64::MAX,
                entry: i32::MAX,
                leg: i16::MAX,
            },
        ] {
            assert_eq!(LedgerCursor::parse(&l.to_string()).unwrap(), l);
        }
        let o = OrdersCursor { seq: i64::MAX };
        assert_eq!(OrdersCursor::parse(&o.to_string()).unwrap(), o);
        // Absent: from the newest; present: parsed by the endpoint's parser.
        assert_eq!(cursor(&q(&[]), OrdersCursor::parse).unwrap(), None);
        assert_eq!(
            cursor(&q(&[("cursor", "l-3-1-2")]), LedgerCursor::parse).unwrap(),
            Some(l)
        );
    }

    #[test]
    fn a_part_out_of_its_columns_range_is_400_not_wrapped() {
        // The red team's cursors (4294967297 as i32 == 1, 65538 as i16 == 2, 70000 as i16 ==
        // 4464): each was a page somewhere else.
        for (c, part) in [
            ("l-4000-4294967297-2", "entry 4294967297"),
            ("l-4000-2147483648-2", "entry 2147483648"),
            ("l-4000-1-65538", "leg 65538"),
            ("l-4000-1-32768", "leg 32768"),
            ("l-9223372036854775808-1-2", "seq 9223372036854775808"),
        ] {
            let m = bad(LedgerCursor::parse(c));
            assert!(m.contains(part) && m.contains("out of range"), "{c}: {m}");
        }
        for (c, part) in [
            ("t-9-70000-4-1", "symbol id 70000"),
            ("t-9-32768-4-0", "symbol id 32768"),
            (
                "t-9-0-9223372036854775808-1",
                "trade id 9223372036854775808",
            ),
        ] {
            let m = bad(TradesCursor::parse(c));
            assert!(m.contains(part) && m.contains("out of range"), "{c}: {m}");
        }
        let m = bad(OrdersCursor::parse("o-99999999999999999999"));
        assert!(m.contains("out of range"), "{m}");
    }

    #[test]
    fn another_endpoints_cursor_is_400_naming_where_it_came_from() {
        let m = bad(TradesCursor::parse("l-3-1-2"));
        assert_eq!(
            m,
            "cursor: \"l-3-1-2\" was returned by /api/v1/history/ledger, not \
             /api/v1/history/trades: a cursor pages only the endpoint that returned it"
        );
        assert!(
            bad(LedgerCursor::parse("t-9-0-4-1")).contains("returned by /api/v1/history/trades")
        );
        assert!(
            bad(OrdersCursor::parse("t-9-0-4-1")).contains("returned by /api/v1/history/trades")
        );
        assert!(bad(TradesCursor::parse("o-9")).contains("returned by /api/v1/history/orders"));
        assert!(bad(LedgerCursor::parse("o-9")).contains("returned by /api/v1/history/orders"));
        // Through the query, as the handlers take it.
        let m = bad(cursor(&q(&[("cursor", "l-3-1-2")]), TradesCursor::parse));
        assert!(m.contains("returned by /api/v1/history/ledger"), "{m}");
    }

    #[test]
    fn anything_but_a_cursor_as_issued_is_400() {
        let not_ours = |m: String, path: &str| {
            assert_eq!(
                m.split(" is not a cursor ").nth(1),
                Some(&*format!(
                    "{path} returned (pass its next_cursor back unchanged)"
                )),
                "{m}"
            );
        };
        for c in [
            // Untagged: the old format, which trades and ledger shared.
            "9",
            "3-1-2",
            "4000-4294967297-2",
            "9-70000-4", // no parts, or too few or many
            "",
            "o",
            "o-",
            "o-9-1",
            "-9", // not decimal, signed, padded, spaced
            "o-x",
            "o-+9",
            "o--9",
            "o-09",
            "o-9 ",
            " o-9",
            "o-1e3",
            "O-9",
            "x-y",
        ] {
            not_ours(bad(OrdersCursor::parse(c)), "/api/v1/history/orders");
        }
        for c in [
            "3-1-2",
            "9-70000-4",
            "t-9-0",
            "t-9-0-4-1-5",
            "t-9-0-4-2", // the side is 0 (maker) or 1 (taker)
            "t-9-0-4-01",
            "t-9--4-1",
            "t-9-00-4-1",
            "t-9-0-+4-1",
            "t-9-0-4.0-1",
            "T-9-0-4-1",
            "tr-9-0-4-1",
        ] {
            not_ours(bad(TradesCursor::parse(c)), "/api/v1/history/trades");
        }
        for c in [
            "3-1-2",
            "4000-4294967297-2",
            "4000-1-65538",
            "l-3-1",
            "l-3-1-2-0",
            "l-3-01-2",
            "l-3-1-",
            "l-3-1-2\n",
        ] {
            not_ours(bad(LedgerCursor::parse(c)), "/api/v1/history/ledger");
        }
    }
}
