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

/// Rows per page when `limit` is not given, and the most one request may ask.
pub const HISTORY_LIMIT_DEFAULT: i64 = 100;
/// The most rows per page.
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

async fn query(sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(Vec<Row>, i64), ApiError> {
    let c = client().await?;
    let failed = |e: tokio_postgres::Error| {
        ApiError::web(
            WebCode::NotReady,
            format!("the projection's database failed ({e}); retry later"),
        )
    };
    let rows = c.query(sql, params).await.map_err(failed)?;
    let seq: i64 = c
        .query_one("SELECT last_seq FROM projection_state", &[])
        .await
        .map_err(failed)?
        .get(0);
    Ok((rows, seq))
}

fn user(a: &Authed) -> Result<i64, ApiError> {
    match a.1 {
        Role::User(u) => Ok(i64::from(u)),
        _ => Err(ApiError::reject(
            RejectCode::UserOnly,
            "history is a user's own: log in as a user",
        )),
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

fn limit(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    Ok(int(q, "limit")?.map_or(HISTORY_LIMIT_DEFAULT, |l| l.clamp(1, HISTORY_LIMIT_MAX)))
}

/// A cursor: `n` integers joined by `-` (the last row's sort key); absent: from the newest.
fn cursor(q: &HashMap<String, String>, n: usize) -> Result<Option<Vec<i64>>, ApiError> {
    let Some(c) = q.get("cursor") else {
        return Ok(None);
    };
    let parts: Result<Vec<i64>, _> = c.split('-').map(str::parse).collect();
    match parts {
        Ok(p) if p.len() == n => Ok(Some(p)),
        _ => Err(ApiError::bad(format!(
            "cursor: {c:?} is not a cursor this endpoint returned"
        ))),
    }
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
    let user = user(&a)?;
    let symbol = symbol_filter(&st, &q)?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let after = cursor(&q, 1)?.map(|c| c[0]);
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT seq, order_id, symbol_id, client_order_id::text, side, order_type, tif, price,
                stop_price, qty, display_qty, post_only, stp, status, leaves_qty, filled_qty,
                filled_notional, fees, avg_price::text, reject_code, reject_name, cancel_reason,
                triggered_ts, created_ts, updated_ts
           FROM orders
          WHERE user_id = $1 AND ($2::smallint IS NULL OR symbol_id = $2)
            AND ($3::bigint IS NULL OR created_ts >= $3) AND ($4::bigint IS NULL OR created_ts < $4)
            AND ($5::bigint IS NULL OR seq < $5)
          ORDER BY seq DESC LIMIT $6",
        &[&user, &symbol, &from, &to, &after, &limit],
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
        .then(|| rows.last().map(|r| r.get::<_, i64>(0).to_string()))
        .flatten();
    Ok(Json(
        json!({"orders": items, "next_cursor": next, "projected_seq": seq}),
    ))
}

/// `GET /api/v1/history/trades?symbol=&from=&to=&cursor=&limit=`: the user's trades (as maker
/// or taker), newest first, in `[from, to)`.
pub(crate) async fn trades(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    history()?;
    let user = user(&a)?;
    let symbol = symbol_filter(&st, &q)?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let c = cursor(&q, 3)?;
    let (c_seq, c_sym, c_id) = match &c {
        Some(c) => (Some(c[0]), Some(c[1] as i16), Some(c[2])),
        None => (None, None, None),
    };
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT seq, symbol_id, trade_id, ts, price, qty, notional, aggressor_side,
                maker_order_id, maker_user_id, maker_fee, taker_order_id, taker_user_id, taker_fee
           FROM trades
          WHERE (maker_user_id = $1 OR taker_user_id = $1)
            AND ($2::smallint IS NULL OR symbol_id = $2)
            AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4)
            AND ($5::bigint IS NULL OR (seq, symbol_id, trade_id) < ($5, $6::smallint, $7))
          ORDER BY seq DESC, symbol_id DESC, trade_id DESC LIMIT $8",
        &[&user, &symbol, &from, &to, &c_seq, &c_sym, &c_id, &limit],
    )
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let taker = r.get::<_, i64>(12) == user;
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
                "order_id": if taker { r.get::<_, i64>(11) } else { r.get::<_, i64>(8) },
                "fee": if taker { r.get::<_, i64>(13) } else { r.get::<_, i64>(10) },
            })
        })
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| {
            rows.last().map(|r| {
                format!(
                    "{}-{}-{}",
                    r.get::<_, i64>(0),
                    r.get::<_, i16>(1),
                    r.get::<_, i64>(2)
                )
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
    let user = user(&a)?;
    let currency = q
        .get("currency")
        .map(|s| j::currency(&st.edge.config, &Named::Name(s.clone())).map(|c| c.0 as i16))
        .transpose()?;
    let (from, to) = (int(&q, "from")?, int(&q, "to")?);
    let c = cursor(&q, 3)?;
    let (c_seq, c_entry, c_leg) = match &c {
        Some(c) => (Some(c[0]), Some(c[1] as i32), Some(c[2] as i16)),
        None => (None, None, None),
    };
    let limit = limit(&q)?;
    let (rows, seq) = query(
        "SELECT seq, entry, leg, ts, kind, currency_id, account, amount, symbol_id, order_id,
                trade_id, withdrawal_id
           FROM ledger_legs
          WHERE user_id = $1 AND ($2::smallint IS NULL OR currency_id = $2)
            AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4)
            AND ($5::bigint IS NULL OR (seq, entry, leg) < ($5, $6::integer, $7::smallint))
          ORDER BY seq DESC, entry DESC, leg DESC LIMIT $8",
        &[
            &user, &currency, &from, &to, &c_seq, &c_entry, &c_leg, &limit,
        ],
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
                format!(
                    "{}-{}-{}",
                    r.get::<_, i64>(0),
                    r.get::<_, i32>(1),
                    r.get::<_, i16>(2)
                )
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
