//! Upbit's exchange API (signed requests): accounts, order chance, orders, cancels and
//! withdrawals. Every change and every read of engine state is an engine command sent through
//! the sequenced path ([`crate::edge::Edge::command`]), as for `/api/v1/*`; the replies are built
//! from the command's events and the web edge's order table ([`super::orders`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringbook_engine::book::OrderView;
use ringbook_engine::{
    ClientOrderId, Command, Event, FinishedOrder, NewOrder, OrderId, OrderStatus, OrderType, Price,
    Qty, Query as EngineQuery, RejectCode, Side, StpMode, TimeInForce, UserId,
};
use ringbook_gateway::server::Role;
use serde_json::{json, Value};

use super::auth::{self, Authed, Perm};
use super::decimal::{units, units_str, DecError};
use super::orders::{self, Rec, State as OState, WRec, WState};
use super::quotation::iso;
use super::{Market, Upbit, UpbitError};
use crate::error::ApiError;

/// Open orders one request returns at most.
pub const OPEN_MAX: usize = 100;
/// Closed orders one request returns at most.
pub const CLOSED_MAX: usize = 1000;
/// The longest `identifier`.
pub const IDENTIFIER_BYTES_MAX: usize = 64;
/// Orders one batch cancel handles at most (Upbit's limit).
pub const BATCH_CANCEL_MAX: usize = 300;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ok(a: &Authed<'_>, status: StatusCode, v: Value) -> Response {
    let mut r = (status, Json(v)).into_response();
    if let Ok(h) = HeaderValue::from_str(&a.remaining) {
        r.headers_mut().insert("remaining-req", h);
    }
    r
}

/// An error of the gateway or engine on the way (`bid`: which `insufficient_funds_*`).
fn api(e: ApiError, bid: bool) -> UpbitError {
    match RejectCode::ALL.iter().find(|c| c.code() == e.code) {
        Some(c) => UpbitError::reject(*c, bid),
        None => e.into(),
    }
}

fn first_reject(events: &[Event], bid: bool) -> Result<(), UpbitError> {
    for e in events {
        if let Event::Rejected { code, .. } | Event::OperatorRejected { code, .. } = *e {
            return Err(UpbitError::reject(code, bid));
        }
    }
    Ok(())
}

struct Ctx<'a> {
    up: &'a Upbit,
    a: Authed<'a>,
}

impl Ctx<'_> {
    fn user(&self) -> UserId {
        UserId(self.a.key.user)
    }

    fn role(&self) -> Role {
        Role::User(self.a.key.user)
    }

    async fn command(&self, cmd: Command, bid: bool) -> Result<Vec<Event>, UpbitError> {
        let (events, _) = self
            .up
            .st
            .edge
            .command(self.role(), cmd)
            .await
            .map_err(|e| api(e, bid))?;
        Ok(events)
    }

    fn err(&self, e: UpbitError) -> UpbitError {
        e.with_remaining(Some(self.a.remaining.clone()))
    }

    fn scale(&self, cur: ringbook_engine::CurrencyId) -> u32 {
        u32::from(self.up.config().currencies[cur.0 as usize].scale)
    }

    fn fee_bps(&self, m: &Market) -> (u32, u32) {
        let s = &self.up.config().symbols[m.sid.0 as usize];
        (s.maker_fee_bps, s.taker_fee_bps)
    }

    /// The user's balances: (currency, available, locked).
    async fn balances(&self) -> Result<Vec<(u16, u64, u64)>, UpbitError> {
        let events = match self
            .command(
                Command::Query(EngineQuery::Balances { user: self.user() }),
                true,
            )
            .await
        {
            Ok(e) => e,
            Err(e) if e.name == "insufficient_funds_bid" => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if events.iter().any(|e| {
            matches!(
                e,
                Event::Rejected {
                    code: RejectCode::UnknownUser,
                    ..
                }
            )
        }) {
            return Ok(Vec::new());
        }
        first_reject(&events, true)?;
        Ok(events
            .iter()
            .filter_map(|e| match *e {
                Event::Balance {
                    currency,
                    available,
                    locked,
                    ..
                } => Some((currency.0, available, locked)),
                _ => None,
            })
            .collect())
    }

    /// The user's live orders.
    async fn open(&self) -> Result<Vec<OrderView>, UpbitError> {
        let events = self
            .command(
                Command::Query(EngineQuery::OpenOrders {
                    user: self.user(),
                    limit: u32::MAX,
                }),
                true,
            )
            .await?;
        first_reject(&events, true)?;
        Ok(events
            .iter()
            .filter_map(|e| match e {
                Event::OpenOrder(v) => Some(*v),
                _ => None,
            })
            .collect())
    }

    /// The engine's status of a user's order by client order id: live view or finished record.
    async fn status(
        &self,
        coid: u64,
    ) -> Result<(Option<OrderView>, Option<FinishedOrder>), UpbitError> {
        let events = self
            .command(
                Command::Query(EngineQuery::Order {
                    user: self.user(),
                    client_order_id: ClientOrderId(coid),
                }),
                true,
            )
            .await?;
        for e in &events {
            if let Event::OrderStatus {
                order, finished, ..
            } = e
            {
                return Ok((*order, *finished));
            }
        }
        Ok((None, None))
    }
}

async fn ctx<'a>(
    up: &'a Arc<Upbit>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    need: Perm,
) -> Result<Ctx<'a>, UpbitError> {
    let a = auth::verify(up, method, uri, headers, body, need)?;
    Ok(Ctx { up, a })
}

fn account_json(up: &Upbit, cur: u16, available: u64, locked: u64) -> Value {
    let c = &up.config().currencies[cur as usize];
    let scale = u32::from(c.scale);
    json!({
        "currency": c.code,
        "balance": units_str(u128::from(available), scale),
        "locked": units_str(u128::from(locked), scale),
        "avg_buy_price": "0",
        "avg_buy_price_modified": false,
        "unit_currency": up.markets.first().map_or("KRW", |m| m.quote.as_str()),
    })
}

/// `GET /v1/accounts`.
pub(crate) async fn accounts(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let b = c.balances().await.map_err(|e| c.err(e))?;
    // The currencies the user holds: the engine's account has every currency, and one the user
    // never touched (or has emptied) is not listed, as on Upbit.
    let v: Vec<Value> = b
        .iter()
        .filter(|(_, av, lo)| *av != 0 || *lo != 0)
        .map(|(cur, av, lo)| account_json(&up, *cur, *av, *lo))
        .collect();
    Ok(ok(&c.a, StatusCode::OK, Value::Array(v)))
}

fn bps(b: u32) -> String {
    units_str(u128::from(b), 4)
}

/// `GET /v1/orders/chance?market=KRW-BTC`.
pub(crate) async fn chance(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let m = up
        .market(c.a.params.need("market").map_err(|e| c.err(e))?)
        .map_err(|e| c.err(e))?;
    let b = c.balances().await.map_err(|e| c.err(e))?;
    let acct = |cur: u16| {
        let (av, lo) = b.iter().find(|x| x.0 == cur).map_or((0, 0), |x| (x.1, x.2));
        account_json(&up, cur, av, lo)
    };
    let (maker, taker) = c.fee_bps(m);
    let s = &up.config().symbols[m.sid.0 as usize];
    let min_total = units_str(
        s.price_min as u128 * u128::from(s.tick_size),
        c.scale(m.quote_cur),
    );
    let max_total = units_str(
        s.price_max as u128 * u128::from(s.tick_size) * u128::from(s.max_order_qty),
        c.scale(m.quote_cur),
    );
    let v = json!({
        "bid_fee": bps(taker), "ask_fee": bps(taker),
        "maker_bid_fee": bps(maker), "maker_ask_fee": bps(maker),
        "market": {
            "id": m.code, "name": format!("{}/{}", m.base, m.quote),
            "order_types": ["limit", "price", "market"], "order_sides": ["ask", "bid"],
            "bid_types": ["limit", "price", "ioc", "fok", "post_only"],
            "ask_types": ["limit", "market", "ioc", "fok", "post_only"],
            "bid": {"currency": m.quote, "price_unit": m.scales.price_str(1), "min_total": min_total},
            "ask": {"currency": m.base, "price_unit": m.scales.price_str(1), "min_total": min_total},
            "max_total": max_total, "state": "active",
        },
        "bid_account": acct(m.quote_cur.0),
        "ask_account": acct(m.base_cur.0),
    });
    Ok(ok(&c.a, StatusCode::OK, v))
}

/// The error for a refused decimal: `invalid` names a value off the market's units, `too_large`
/// one with too many digits or out of range (a price's is its `invalid_price_*`, a volume's
/// `volume_too_large`).
fn dec_err(e: DecError, what: &str, invalid: &'static str, too_large: &'static str) -> UpbitError {
    match e {
        DecError::Syntax => UpbitError::validation(format!("{what}: not a decimal number")),
        DecError::TooLarge => UpbitError::new(
            StatusCode::BAD_REQUEST,
            too_large,
            format!("{what}: too many digits, or a number too large or too small to convert"),
        ),
        DecError::NotMultiple => UpbitError::new(
            StatusCode::BAD_REQUEST,
            invalid,
            format!("{what} is not a whole number of the market's units (ticks or lots); ringbook refuses, never rounds"),
        ),
    }
}

/// `ord_type=price`: a market buy spending `price` of the quote currency — the engine's budget
/// market buy (`NewOrder::budget`, quote minimal units, taker fee included; what it does not
/// spend is refunded). Returns the budget in minimal units, converted exactly.
fn budget_units(c: &Ctx<'_>, m: &Market, amount: &str) -> Result<u64, UpbitError> {
    let units = units(amount, c.scale(m.quote_cur)).map_err(|e| {
        dec_err(
            e,
            "price (the amount to spend)",
            "invalid_funds",
            "invalid_funds",
        )
    })?;
    if units == 0 || u64::try_from(units).is_err() {
        return Err(UpbitError::new(
            StatusCode::BAD_REQUEST,
            "invalid_funds",
            "price (the amount to spend) must be positive and fit 64 bits of minimal units",
        ));
    }
    Ok(units as u64)
}

/// The JSON of an order (Upbit's fields). `trades`: include the fills.
pub(crate) fn order_json(up: &Upbit, m: &Market, r: &Rec, trades: bool) -> Value {
    let scales = m.scales;
    let qscale = u32::from(up.config().currencies[m.quote_cur.0 as usize].scale);
    let s = &up.config().symbols[m.sid.0 as usize];
    let remaining = if r.state == OState::Wait {
        r.volume.saturating_sub(r.executed)
    } else {
        0
    };
    let funds: u128 = r.trades.iter().map(|t| t.funds).sum();
    let bid = r.side == Side::Buy;
    // The fee a buy's lock reserves, rounded up per lot as the risk stage locks it
    // (docs/risk.md, "Locks": `unit_lock(p) = p × tick_size + ceil(p × tick_size × bps / 10 000)`),
    // so that an open order's `locked` is what the account's `locked` holds for it.
    let fee_of = |lots: u64| {
        r.price.map_or(0u128, |p| {
            (p as u128 * u128::from(s.tick_size) * u128::from(s.taker_fee_bps)).div_ceil(10_000)
                * u128::from(lots)
        })
    };
    let notional = |lots: u64| {
        r.price.map_or(0u128, |p| {
            p as u128 * u128::from(lots) * u128::from(s.tick_size)
        })
    };
    let locked = if r.state != OState::Wait {
        "0".to_string()
    } else if bid {
        units_str(notional(remaining) + fee_of(remaining), qscale)
    } else {
        scales.volume_str(remaining)
    };
    let mut v = json!({
        "uuid": orders::uuid(r.order_id),
        "side": if bid { "bid" } else { "ask" },
        "ord_type": r.ord_type,
        // A buy by amount shows its amount as `price` and no volume, as Upbit does.
        "price": if r.ord_type == "price" {
            Some(units_str(u128::from(r.budget), qscale))
        } else {
            r.price.and_then(|p| scales.price_str(p))
        },
        "state": r.state.name(),
        "market": m.code,
        // An order placed another way (the binary gateway, the REST or CSV API) has no
        // creation time here: null, not 1970.
        "created_at": (r.created_ms != 0).then(|| iso(r.created_ms)),
        "volume": (r.ord_type != "price").then(|| scales.volume_str(r.volume)),
        "remaining_volume": (r.ord_type != "price").then(|| scales.volume_str(remaining)),
        "reserved_fee": units_str(if bid { fee_of(r.volume) } else { 0 }, qscale),
        "remaining_fee": units_str(if bid { fee_of(remaining) } else { 0 }, qscale),
        "paid_fee": units_str(r.fee, qscale),
        "locked": locked,
        "executed_volume": scales.volume_str(r.executed),
        "executed_funds": units_str(funds, qscale),
        "trades_count": r.trades_count,
        "time_in_force": r.tif,
        "identifier": r.identifier,
    });
    if trades {
        v["trades"] = Value::Array(
            r.trades
                .iter()
                .map(|t| {
                    let mut x = json!({
                        "market": m.code,
                        "uuid": format!("{:08x}-0000-4000-9000-{:012x}", m.sid.0, t.trade_id),
                        "price": scales.price_str(t.price),
                        "volume": scales.volume_str(t.qty),
                        "funds": units_str(t.funds, qscale),
                        "trend": if bid { "up" } else { "down" },
                        "created_at": iso(t.ts / 1_000_000),
                        "side": if bid { "bid" } else { "ask" },
                    });
                    x[if bid { "bid_fee" } else { "ask_fee" }] =
                        json!(units_str(u128::from(t.fee), qscale));
                    x
                })
                .collect(),
        );
    }
    v
}

/// A live engine order the table does not know (placed through another API, or before a
/// restart) as a table record.
fn rec_of_view(v: &OrderView) -> Rec {
    Rec {
        order_id: v.order_id.0,
        user: v.user.0,
        sid: v.symbol,
        side: v.side,
        ord_type: if v.order_type == OrderType::Market {
            "market"
        } else {
            "limit"
        },
        tif: match (v.tif, v.post_only) {
            (_, true) => Some("post_only"),
            (TimeInForce::Ioc, _) => Some("ioc"),
            (TimeInForce::Fok, _) => Some("fok"),
            _ => None,
        },
        price: Some(v.price.0),
        volume: v.leaves_qty.0 + v.filled_qty.0,
        budget: 0,
        coid: v.client_order_id.0,
        identifier: None,
        created_ms: 0,
        state: OState::Wait,
        executed: v.filled_qty.0,
        fee: 0,
        trades: Vec::new(),
        trades_count: 0,
    }
}

/// Brings a record up to the engine's view of the order (its state and filled quantity).
fn reconcile(r: &mut Rec, live: Option<OrderView>, finished: Option<FinishedOrder>) {
    if let Some(v) = live {
        r.state = OState::Wait;
        r.executed = r.executed.max(v.filled_qty.0);
    } else if let Some(f) = finished.filter(|f| f.order_id.0 == r.order_id) {
        r.executed = r.executed.max(f.filled_qty.0);
        r.state = match f.status {
            OrderStatus::Filled => OState::Done,
            _ => OState::Cancel,
        };
    }
}

/// `POST /v1/orders`.
pub(crate) async fn create_order(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Trade).await?;
    create(&c).await.map_err(|e| c.err(e))
}

async fn create(c: &Ctx<'_>) -> Result<Response, UpbitError> {
    let p = &c.a.params;
    let m = c.up.market(p.need("market")?)?;
    let side = match p.get("side") {
        Some("bid") => Side::Buy,
        Some("ask") => Side::Sell,
        _ => {
            return Err(UpbitError::validation(
                "side is missing, side does not have a valid value",
            ))
        }
    };
    let bid = side == Side::Buy;
    let ord_type = p.get("ord_type").unwrap_or("limit");
    let tif = match p.get("time_in_force").filter(|t| !t.is_empty()) {
        None => None,
        Some("ioc") => Some("ioc"),
        Some("fok") => Some("fok"),
        Some("post_only") => Some("post_only"),
        Some(t) => {
            return Err(UpbitError::validation(format!(
                "time_in_force {t:?}: expected ioc, fok or post_only"
            )))
        }
    };
    let stp = match p.get("smp_type").filter(|t| !t.is_empty()) {
        None => StpMode::None,
        Some("cancel_maker") => StpMode::CancelOldest,
        Some("cancel_taker") => StpMode::CancelNewest,
        Some("reduce") => StpMode::Decrement,
        Some(t) => {
            return Err(UpbitError::validation(format!(
                "smp_type {t:?}: expected cancel_maker, cancel_taker or reduce"
            )))
        }
    };
    let identifier = match p.get("identifier").filter(|i| !i.is_empty()) {
        Some(i) if i.len() > IDENTIFIER_BYTES_MAX => {
            return Err(UpbitError::validation(format!(
                "identifier: at most {IDENTIFIER_BYTES_MAX} bytes"
            )))
        }
        Some(i) => Some(i.to_string()),
        None => None,
    };
    let s = &c.up.config().symbols[m.sid.0 as usize];
    // This side's names for a price and a volume off the market's units.
    let price_err = if bid {
        "invalid_price_bid"
    } else {
        "invalid_price_ask"
    };
    let volume_err = if bid {
        "invalid_volume_bid"
    } else {
        "invalid_volume_ask"
    };
    let (order_type, price, qty, budget) = match ord_type {
        "limit" => {
            let price = m
                .scales
                .ticks(p.need("price")?)
                .map_err(|e| dec_err(e, "price", price_err, price_err))?;
            let qty = m
                .scales
                .lots(p.need("volume")?)
                .map_err(|e| dec_err(e, "volume", volume_err, "volume_too_large"))?;
            if price <= 0 {
                return Err(UpbitError::new(
                    StatusCode::BAD_REQUEST,
                    price_err,
                    "price must be positive",
                ));
            }
            (OrderType::Limit, price, qty, 0)
        }
        "market" => {
            if bid {
                return Err(UpbitError::validation("ord_type=market is a sell by volume (side=ask); a market buy is ord_type=price"));
            }
            if p.get("price").is_some_and(|x| !x.is_empty()) {
                return Err(UpbitError::validation("ord_type=market takes no price"));
            }
            let qty = m
                .scales
                .lots(p.need("volume")?)
                .map_err(|e| dec_err(e, "volume", volume_err, "volume_too_large"))?;
            // The protection price of a market sell: the band's lowest.
            (OrderType::Market, s.price_min, qty, 0)
        }
        "price" => {
            if !bid {
                return Err(UpbitError::validation(
                    "ord_type=price is a buy by amount (side=bid)",
                ));
            }
            if p.get("volume").is_some_and(|x| !x.is_empty()) {
                return Err(UpbitError::validation("ord_type=price takes no volume"));
            }
            let budget = budget_units(c, m, p.need("price")?)?;
            // No price limit (the band's highest) and no quantity cap beyond the symbol's
            // maximum: the budget alone bounds it.
            (OrderType::Market, s.price_max, 0, budget)
        }
        "best" => {
            return Err(UpbitError::validation(
                "ord_type=best is not offered (docs/upbit-api.md)",
            ))
        }
        t => {
            return Err(UpbitError::validation(format!(
                "ord_type {t:?}: expected limit, price or market"
            )))
        }
    };
    if qty == 0 && budget == 0 {
        return Err(UpbitError::new(
            StatusCode::BAD_REQUEST,
            volume_err,
            "volume must be positive",
        ));
    }
    if tif == Some("post_only") && order_type != OrderType::Limit {
        return Err(UpbitError::validation(
            "time_in_force=post_only is for limit orders",
        ));
    }
    if tif == Some("post_only") && stp != StpMode::None {
        return Err(UpbitError::validation(
            "post_only and smp_type cannot be combined",
        ));
    }
    let engine_tif = match tif {
        Some("ioc") => TimeInForce::Ioc,
        Some("fok") => TimeInForce::Fok,
        _ if order_type == OrderType::Market => TimeInForce::Ioc,
        _ => TimeInForce::Gtc,
    };
    // One user's orders are numbered and submitted one at a time (increasing client order ids).
    let _turn = match c.up.order_locks.get(&c.a.key.user) {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    if let Some(i) = &identifier {
        if c.up.st.edge.upbit_orders.identifier_used(c.a.key.user, i) {
            return Err(UpbitError::validation(format!(
                "identifier {i:?} was used already"
            )));
        }
    }
    let coid = crate::api::next_csv_coid(&c.up.st);
    // Built on `NewOrder::limit` so fields the engine adds later take their defaults there.
    let o = NewOrder {
        order_type,
        tif: engine_tif,
        post_only: tif == Some("post_only"),
        stp,
        budget,
        ..NewOrder::limit(
            c.user(),
            m.sid,
            ClientOrderId(coid),
            side,
            Price(price),
            Qty(qty),
        )
    };
    let tracker = &c.up.st.edge.upbit_orders;
    tracker.submit(Rec {
        order_id: 0,
        user: c.a.key.user,
        sid: m.sid,
        side,
        ord_type: if budget > 0 {
            "price"
        } else if order_type == OrderType::Market {
            "market"
        } else {
            "limit"
        },
        tif,
        price: (order_type == OrderType::Limit).then_some(price),
        volume: qty,
        budget,
        coid,
        identifier,
        created_ms: now_ms(),
        state: OState::Wait,
        executed: 0,
        fee: 0,
        trades: Vec::new(),
        trades_count: 0,
    });
    let events = match c.command(Command::NewOrder(o), bid).await {
        Ok(e) => e,
        Err(e) => {
            tracker.abandon(c.a.key.user, coid);
            return Err(e);
        }
    };
    if let Err(e) = first_reject(&events, bid) {
        tracker.abandon(c.a.key.user, coid);
        return Err(e);
    }
    let Some(order_id) = events.iter().find_map(|e| match *e {
        Event::Accepted {
            client_order_id,
            order_id,
            ..
        } if client_order_id.0 == coid => Some(order_id.0),
        _ => None,
    }) else {
        tracker.abandon(c.a.key.user, coid);
        return Err(UpbitError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the engine neither accepted nor rejected the order",
        ));
    };
    // The dispatcher applied every event of the command before its reply arrived.
    let r = tracker.get(order_id).ok_or_else(|| {
        UpbitError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the accepted order is not in the table",
        )
    })?;
    Ok(ok(
        &c.a,
        StatusCode::CREATED,
        order_json(c.up, m, &r, false),
    ))
}

/// The order a request names by `uuid` or `identifier`: its record, brought up to the engine's
/// state. `None`: no such order of this user.
async fn find(
    c: &Ctx<'_>,
    uuid: Option<&str>,
    identifier: Option<&str>,
) -> Result<Option<Rec>, UpbitError> {
    let tracker = &c.up.st.edge.upbit_orders;
    let id = match (uuid, identifier) {
        (Some(u), _) => match orders::order_id(u) {
            Some(id) => id,
            None => return Ok(None),
        },
        (None, Some(i)) => match tracker.by_identifier(c.a.key.user, i) {
            Some(id) => id,
            None => return Ok(None),
        },
        (None, None) => return Err(UpbitError::validation("uuid or identifier is required")),
    };
    match tracker.get(id).filter(|r| r.user == c.a.key.user) {
        Some(mut r) => {
            let (live, finished) = c.status(r.coid).await?;
            reconcile(&mut r, live.filter(|v| v.order_id.0 == id), finished);
            Ok(Some(r))
        }
        None => {
            let open = c.open().await?;
            Ok(open.iter().find(|v| v.order_id.0 == id).map(rec_of_view))
        }
    }
}

/// `GET /v1/order?uuid=…` or `?identifier=…`.
pub(crate) async fn get_order(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let p = c.a.params.clone();
    let r = find(&c, p.get("uuid"), p.get("identifier"))
        .await
        .map_err(|e| c.err(e))?
        .ok_or_else(|| c.err(UpbitError::order_not_found()))?;
    let m = up
        .market_of(r.sid)
        .ok_or_else(|| c.err(UpbitError::order_not_found()))?;
    Ok(ok(&c.a, StatusCode::OK, order_json(&up, m, &r, true)))
}

/// `DELETE /v1/order?uuid=…` or `?identifier=…`.
pub(crate) async fn cancel_order(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Trade).await?;
    let p = c.a.params.clone();
    let r = find(&c, p.get("uuid"), p.get("identifier"))
        .await
        .map_err(|e| c.err(e))?
        .ok_or_else(|| c.err(UpbitError::order_not_found()))?;
    if r.state != OState::Wait {
        return Err(c.err(UpbitError::order_not_found()));
    }
    let r = cancel_one(&c, r).await.map_err(|e| c.err(e))?;
    let m = up
        .market_of(r.sid)
        .ok_or_else(|| c.err(UpbitError::order_not_found()))?;
    Ok(ok(&c.a, StatusCode::OK, order_json(&up, m, &r, false)))
}

async fn cancel_one(c: &Ctx<'_>, mut r: Rec) -> Result<Rec, UpbitError> {
    let events = c
        .command(
            Command::CancelOrder {
                user: c.user(),
                symbol: r.sid,
                order_id: OrderId(r.order_id),
            },
            r.side == Side::Buy,
        )
        .await?;
    first_reject(&events, r.side == Side::Buy)?;
    if events.iter().any(|e| matches!(e, Event::Cancelled { .. })) {
        r.state = OState::Cancel;
    }
    Ok(c.up
        .st
        .edge
        .upbit_orders
        .get(r.order_id)
        .map_or(r.clone(), |mut t| {
            t.state = r.state;
            t
        }))
}

fn want_states(p: &auth::Params, default: &[&'static str]) -> Result<Vec<String>, UpbitError> {
    let mut v: Vec<String> = p.all("states").iter().map(|s| s.to_string()).collect();
    if let Some(s) = p.get("state") {
        v.push(s.to_string());
    }
    if v.is_empty() {
        v = default.iter().map(|s| s.to_string()).collect();
    }
    Ok(v)
}

/// `order_by`: `asc` (true), `desc` or absent (false); anything else is a validation error.
fn ascending(p: &auth::Params) -> Result<bool, UpbitError> {
    match p.get("order_by") {
        None | Some("desc") => Ok(false),
        Some("asc") => Ok(true),
        Some(_) => Err(UpbitError::validation("order_by: asc or desc")),
    }
}

fn limit(p: &auth::Params, default: usize, max: usize) -> Result<usize, UpbitError> {
    match p.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| UpbitError::validation(format!("limit must be 1..={max}"))),
        None => Ok(default),
    }
}

/// `GET /v1/orders/open[?market=…][&limit=N][&page=P]`.
pub(crate) async fn open_orders(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let p = c.a.params.clone();
    let run = async {
        let market = p.get("market").map(|m| up.market(m)).transpose()?;
        let states = want_states(&p, &["wait"])?;
        if states.iter().any(|s| s != "wait" && s != "watch") {
            return Err(UpbitError::validation("state: wait or watch"));
        }
        let limit = limit(&p, OPEN_MAX, OPEN_MAX)?;
        let page = p.get("page").map_or(Ok(1), |x| {
            x.parse::<usize>()
                .ok()
                .filter(|x| *x >= 1)
                .ok_or_else(|| UpbitError::validation("page must be at least 1"))
        })?;
        let asc = ascending(&p)?;
        if !states.iter().any(|s| s == "wait") {
            return Ok(Vec::new());
        }
        let mut open = c.open().await?;
        open.retain(|v| market.is_none_or(|m| m.sid == v.symbol));
        open.sort_by_key(|v| v.order_id.0);
        if !asc {
            open.reverse();
        }
        let tracker = &up.st.edge.upbit_orders;
        Ok(open
            .iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .filter_map(|v| {
                let m = up.market_of(v.symbol)?;
                let mut r = tracker.get(v.order_id.0).unwrap_or_else(|| rec_of_view(v));
                reconcile(&mut r, Some(*v), None);
                Some(order_json(&up, m, &r, false))
            })
            .collect::<Vec<_>>())
    };
    let v = run.await.map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::OK, Value::Array(v)))
}

fn time_param(p: &auth::Params, k: &str) -> Result<Option<u64>, UpbitError> {
    match p.get(k).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .or_else(|| super::quotation::parse_time(s).map(|ns| ns / 1_000_000))
            .map(Some)
            .ok_or_else(|| UpbitError::validation(format!("{k}: Unix milliseconds or ISO 8601"))),
    }
}

/// `GET /v1/orders/closed[?market=…][&state=done|cancel][&start_time=…][&end_time=…][&limit=N]`:
/// the user's finished Upbit orders this server remembers (see [`super::orders`]).
pub(crate) async fn closed_orders(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let p = c.a.params.clone();
    let run = || -> Result<Vec<Value>, UpbitError> {
        let market = p.get("market").map(|m| up.market(m)).transpose()?;
        let states = want_states(&p, &["done", "cancel"])?;
        if states.iter().any(|s| s != "done" && s != "cancel") {
            return Err(UpbitError::validation("state: done or cancel"));
        }
        let limit = limit(&p, 100, CLOSED_MAX)?;
        let asc = ascending(&p)?;
        let (from, to) = (time_param(&p, "start_time")?, time_param(&p, "end_time")?);
        let mut v = up.st.edge.upbit_orders.finished(c.a.key.user, limit, |r| {
            market.is_none_or(|m| m.sid == r.sid)
                && states.iter().any(|s| s == r.state.name())
                && from.is_none_or(|f| r.created_ms >= f)
                && to.is_none_or(|t| r.created_ms <= t)
        });
        if asc {
            v.reverse();
        }
        Ok(v.iter()
            .filter_map(|r| Some(order_json(&up, up.market_of(r.sid)?, r, false)))
            .collect())
    };
    let v = run().map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::OK, Value::Array(v)))
}

/// `GET /v1/orders/uuids?uuids[]=…` or `?identifiers[]=…`.
pub(crate) async fn orders_by_uuids(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let p = c.a.params.clone();
    let run = async {
        let uuids = p.all("uuids");
        let idents = p.all("identifiers");
        if uuids.is_empty() == idents.is_empty() {
            return Err(UpbitError::validation(
                "give uuids[] or identifiers[] (one of them)",
            ));
        }
        if uuids.len() + idents.len() > 100 {
            return Err(UpbitError::validation("at most 100 orders"));
        }
        let market = p.get("market").map(|m| up.market(m)).transpose()?;
        let asc = ascending(&p)?;
        let mut out = Vec::new();
        for u in &uuids {
            if let Some(r) = find(&c, Some(u), None).await? {
                out.push(r);
            }
        }
        for i in &idents {
            if let Some(r) = find(&c, None, Some(i)).await? {
                out.push(r);
            }
        }
        out.retain(|r| market.is_none_or(|m| m.sid == r.sid));
        out.sort_by_key(|r| std::cmp::Reverse(r.order_id));
        // An order named twice (twice the uuid, or its uuid and its identifier) is listed once.
        out.dedup_by_key(|r| r.order_id);
        if asc {
            out.reverse();
        }
        Ok(out
            .iter()
            .filter_map(|r| Some(order_json(&up, up.market_of(r.sid)?, r, false)))
            .collect::<Vec<_>>())
    };
    let v = run.await.map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::OK, Value::Array(v)))
}

/// `DELETE /v1/orders/open[?pairs=KRW-BTC,…][&excluded_pairs=…][&quote_currencies=KRW,…]
/// [&count=N][&order_by=desc]`: cancels the user's live orders (at most 300).
pub(crate) async fn cancel_open(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Trade).await?;
    let p = c.a.params.clone();
    let run = async {
        let list = |k: &str| -> Result<Option<Vec<&Market>>, UpbitError> {
            p.get(k)
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|x| up.market(x.trim())).collect())
                .transpose()
        };
        let pairs = list("pairs")?;
        let excluded = list("excluded_pairs")?;
        if pairs.is_some() && (excluded.is_some() || p.get("quote_currencies").is_some()) {
            return Err(UpbitError::validation(
                "pairs cannot be combined with excluded_pairs or quote_currencies",
            ));
        }
        let quotes: Option<Vec<&str>> = p
            .get("quote_currencies")
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').collect());
        let count = match p.get("count") {
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=BATCH_CANCEL_MAX).contains(n))
                .ok_or_else(|| {
                    UpbitError::validation(format!("count must be 1..={BATCH_CANCEL_MAX}"))
                })?,
            None => BATCH_CANCEL_MAX,
        };
        let asc = ascending(&p)?;
        let mut open = c.open().await?;
        open.sort_by_key(|v| v.order_id.0);
        if !asc {
            open.reverse();
        }
        let keep = |v: &OrderView| {
            let Some(m) = up.market_of(v.symbol) else {
                return false;
            };
            pairs
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|x| x.sid == m.sid))
                && excluded
                    .as_ref()
                    .is_none_or(|ps| !ps.iter().any(|x| x.sid == m.sid))
                && quotes
                    .as_ref()
                    .is_none_or(|qs| qs.contains(&m.quote.as_str()))
        };
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for v in open.iter().filter(|v| keep(v)).take(count) {
            let m = up
                .market_of(v.symbol)
                .map_or(String::new(), |m| m.code.clone());
            let ident = up
                .st
                .edge
                .upbit_orders
                .get(v.order_id.0)
                .and_then(|r| r.identifier);
            let entry =
                json!({"uuid": orders::uuid(v.order_id.0), "market": m, "identifier": ident});
            match cancel_one(&c, rec_of_view(v)).await {
                Ok(_) => done.push(entry),
                Err(_) => failed.push(entry),
            }
        }
        Ok(json!({
            "success": {"count": done.len(), "orders": done},
            "failed": {"count": failed.len(), "orders": failed},
        }))
    };
    let v = run.await.map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::OK, v))
}

fn withdrawal_json(up: &Upbit, w: &WRec) -> Value {
    let c = &up.config().currencies[w.currency as usize];
    json!({
        "type": "withdraw",
        "uuid": orders::withdrawal_uuid(w.id),
        "currency": c.code,
        "net_type": w.net_type,
        "txid": Value::Null,
        "state": w.state.name(),
        "created_at": iso(w.created_ms),
        "done_at": (w.done_ms != 0).then(|| iso(w.done_ms)),
        "amount": units_str(u128::from(w.amount), u32::from(c.scale)),
        "fee": "0",
        "transaction_type": "default",
        "approvals": w.approvals,
        "address": w.address,
    })
}

/// The longest withdrawal `address` or `net_type` kept (bytes): longer than any chain's
/// address, short enough that the withdrawal records (`upbit_orders`) stay small.
const WITHDRAW_TEXT_MAX: usize = 256;

async fn withdraw(
    c: &Ctx<'_>,
    currency: &str,
    address: Option<String>,
    net_type: Option<String>,
) -> Result<Value, UpbitError> {
    for (name, v) in [("address", &address), ("net_type", &net_type)] {
        if v.as_ref().is_some_and(|v| v.len() > WITHDRAW_TEXT_MAX) {
            return Err(UpbitError::validation(format!(
                "{name}: at most {WITHDRAW_TEXT_MAX} bytes"
            )));
        }
    }
    let p = &c.a.params;
    let cur = c.up.config().currency_id(currency).ok_or_else(|| {
        UpbitError::new(
            StatusCode::NOT_FOUND,
            "currency_not_found",
            format!("unknown currency {currency:?}"),
        )
    })?;
    let amount = units(p.need("amount")?, c.scale(cur)).map_err(|e| match e {
        DecError::NotMultiple => UpbitError::new(
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "amount is finer than the currency's minimal unit",
        ),
        _ => UpbitError::validation("amount: a positive decimal number"),
    })?;
    let amount = u64::try_from(amount)
        .ok()
        .filter(|a| *a > 0)
        .ok_or_else(|| {
            UpbitError::new(
                StatusCode::BAD_REQUEST,
                "invalid_amount",
                "amount must be positive and fit 64 bits of minimal units",
            )
        })?;
    let events = c
        .command(
            Command::Withdraw {
                user: c.user(),
                currency: cur,
                amount,
            },
            false,
        )
        .await?;
    for e in &events {
        if let Event::Rejected { code, .. } = *e {
            return Err(match code {
                RejectCode::InsufficientFunds | RejectCode::UnknownUser => UpbitError::new(
                    StatusCode::BAD_REQUEST,
                    "insufficient_funds_withdraw",
                    "the available balance is below the amount",
                ),
                c => UpbitError::reject(c, false),
            });
        }
    }
    let id = events
        .iter()
        .find_map(|e| match *e {
            Event::WithdrawalRequested { withdrawal_id, .. } => Some(withdrawal_id.0),
            _ => None,
        })
        .ok_or_else(|| {
            UpbitError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "no withdrawal requested event",
            )
        })?;
    let w = WRec {
        id,
        user: c.a.key.user,
        currency: cur.0,
        amount,
        address,
        net_type,
        state: WState::Waiting,
        created_ms: now_ms(),
        approvals: 0,
        done_ms: 0,
    };
    c.up.st.edge.upbit_orders.withdrawal(w.clone());
    Ok(withdrawal_json(c.up, &w))
}

/// `POST /v1/withdraws/krw` (`amount`, `two_factor_type` ignored): a withdrawal of the quote
/// currency of the first market, awaiting two operators' approvals.
pub(crate) async fn withdraw_krw(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Withdraw).await?;
    let v = withdraw(&c, "KRW", None, None)
        .await
        .map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::CREATED, v))
}

/// `POST /v1/withdraws/coin` (`currency`, `net_type`, `amount`, `address`, …).
pub(crate) async fn withdraw_coin(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Withdraw).await?;
    let run = async {
        let p = c.a.params.clone();
        let cur = p.need("currency")?.to_string();
        let address = p.need("address")?.to_string();
        let net = p.get("net_type").map(str::to_string);
        withdraw(&c, &cur, Some(address), net).await
    };
    let v = run.await.map_err(|e| c.err(e))?;
    Ok(ok(&c.a, StatusCode::CREATED, v))
}

/// `GET /v1/withdraw?uuid=…`.
pub(crate) async fn get_withdraw(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let not_found = || {
        c.err(UpbitError::new(
            StatusCode::NOT_FOUND,
            "withdraw_not_found",
            "withdrawal not found",
        ))
    };
    let uuid = c.a.params.need("uuid").map_err(|e| c.err(e))?;
    let w = orders::withdrawal_id(uuid)
        .and_then(|id| up.st.edge.upbit_orders.get_withdrawal(id))
        .filter(|w| w.user == c.a.key.user)
        .ok_or_else(not_found)?;
    Ok(ok(&c.a, StatusCode::OK, withdrawal_json(&up, &w)))
}

/// Withdrawal states a list may filter by (any case): Upbit's, of which this server's records
/// are only ever `WAITING` (awaiting approval), `DONE` and `REJECTED`; the others match none.
const WITHDRAW_STATES: [&str; 10] = [
    "WAITING",
    "SUBMITTING",
    "SUBMITTED",
    "ALMOST_ACCEPTED",
    "ACCEPTED",
    "PROCESSING",
    "DONE",
    "REJECTED",
    "CANCELED",
    "FAILED",
];

/// `GET /v1/withdraws[?currency=…][&state=…][&uuids[]=…][&limit=N][&order_by=asc|desc]`: newest
/// first unless `order_by=asc`; an unknown currency is `currency_not_found`, as for a withdrawal.
pub(crate) async fn list_withdraws(
    State(up): State<Arc<Upbit>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UpbitError> {
    let c = ctx(&up, &method, &uri, &headers, &body, Perm::Read).await?;
    let p = c.a.params.clone();
    let lim = limit(&p, 100, 100).map_err(|e| c.err(e))?;
    if let Some(s) = p.get("state") {
        if !WITHDRAW_STATES.iter().any(|k| k.eq_ignore_ascii_case(s)) {
            let e = UpbitError::validation(format!("state: one of {}", WITHDRAW_STATES.join(", ")));
            return Err(c.err(e));
        }
    }
    let asc = ascending(&p).map_err(|e| c.err(e))?;
    let currency = match p.get("currency") {
        Some(code) => Some(up.config().currency_id(code).ok_or_else(|| {
            c.err(UpbitError::new(
                StatusCode::NOT_FOUND,
                "currency_not_found",
                format!("unknown currency {code:?}"),
            ))
        })?),
        None => None,
    };
    let uuids = p.all("uuids");
    let mut all = up.st.edge.upbit_orders.withdrawals(c.a.key.user);
    if asc {
        all.reverse();
    }
    let v: Vec<Value> = all
        .iter()
        .filter(|w| currency.is_none_or(|cur| cur.0 == w.currency))
        .filter(|w| {
            p.get("state")
                .is_none_or(|s| s.eq_ignore_ascii_case(w.state.name()))
        })
        .filter(|w| uuids.is_empty() || uuids.contains(&orders::withdrawal_uuid(w.id).as_str()))
        .take(lim)
        .map(|w| withdrawal_json(&up, w))
        .collect();
    Ok(ok(&c.a, StatusCode::OK, Value::Array(v)))
}
