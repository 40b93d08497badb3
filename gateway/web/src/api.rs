//! The REST API: routes, the rate-limit and token middleware, and the handlers.
//!
//! Every handler that changes or reads engine state builds an engine [`Command`] and sends it
//! through [`Edge::command`] (the gateway loop authorizes and sequences it); the reply is built
//! from the command's events. Adding an instruction is a field in [`OrderBody`] and a line in
//! [`OrderBody::to_command`]; adding a route is one handler of the same shape.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ringbook_engine::{
    ClientOrderId, Command, Event, NewOrder, OperatorId, Price, Qty, Query as EngineQuery,
    RejectCode, TimeInForce, UserId, WithdrawalId,
};
use ringbook_gateway::protocol::name32;
use ringbook_gateway::server::bridge::WebOp;
use ringbook_gateway::server::{LoginCheck, Role};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::edge::Outcome;
use crate::error::{ApiError, WebCode};
use crate::json::{self as j, Named};
use crate::limits::Limited;
use crate::token::Claims;
use crate::AppState;

pub(crate) type Shared = Arc<AppState>;

/// Request bodies above this are refused (413).
pub const BODY_BYTES_MAX: usize = 64 << 10;
/// Book depth when `depth` is not given, and the most levels per side one request may ask.
pub const BOOK_DEPTH_DEFAULT: u32 = 20;
/// The most levels per side.
pub const BOOK_DEPTH_MAX: u32 = 1000;
/// The most open orders one request returns.
pub const OPEN_ORDERS_MAX: u32 = 1000;

pub(crate) fn router(state: Shared, concurrency: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(crate::openapi::openapi))
        .route("/api/v1/symbols", get(symbols))
        .route("/api/v1/currencies", get(currencies))
        .route("/api/v1/orderbook/{symbol}", get(orderbook))
        .route("/api/v1/trades/{symbol}", get(crate::public::trades))
        .route("/api/v1/klines/{symbol}", get(crate::public::klines))
        .route("/api/v1/ticker/24hr", get(crate::public::ticker))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/orders", post(new_order).delete(mass_cancel))
        .route("/api/v1/orders/open", get(open_orders))
        .route(
            "/api/v1/orders/client/{client_order_id}",
            get(order_status).delete(cancel_order).patch(amend_order),
        )
        .route(
            "/api/v1/orders/{order_id}",
            get(order_by_id).delete(cancel_by_id).patch(amend_by_id),
        )
        .route("/api/v1/balances", get(balances))
        .route("/api/v1/withdrawals", post(withdraw))
        .route(
            "/api/v1/withdrawals/pending",
            get(crate::withdrawals::pending),
        )
        .route("/api/v1/withdrawals/{id}/approve", post(approve))
        .route("/api/v1/withdrawals/{id}/reject", post(reject))
        .route("/api/v1/deposits", post(deposit))
        .route("/api/v1/history/orders", get(crate::history::orders))
        .route("/api/v1/history/trades", get(crate::history::trades))
        .route("/api/v1/history/ledger", get(crate::history::ledger))
        .route(
            "/api/v1/history/klines/{symbol}",
            get(crate::history::klines),
        )
        .route("/deposit", post(crate::csv::deposit))
        .route("/order", post(crate::csv::order))
        .route("/cancel", post(crate::csv::cancel))
        .route("/orderbook", get(crate::csv::orderbook))
        .route("/ws", get(crate::ws::upgrade))
        .merge(crate::upbit::router(state.clone()))
        .merge(crate::ui::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), edge_layer))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrency))
        .with_state(state)
}

/// The verified token of a request (set by [`edge_layer`]).
#[derive(Clone, Debug)]
pub(crate) struct Authed(pub Claims, pub Role);

/// Why a request has no verified token.
#[derive(Clone, Debug)]
struct AuthFailure(ApiError);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Authed, ApiError> {
        if let Some(a) = parts.extensions.get::<Authed>() {
            return Ok(a.clone());
        }
        if let Some(f) = parts.extensions.get::<AuthFailure>() {
            return Err(f.0.clone());
        }
        Err(ApiError::web(
            WebCode::Unauthorized,
            "this endpoint needs `Authorization: Bearer <token>` (POST /api/v1/auth/login)",
        ))
    }
}

/// Per-address limit, token verification and per-account limit, then the request's metric.
async fn edge_layer(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let route: &'static str = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| route_name(m.as_str()));
    let monitoring = matches!(route, "/health" | "/ready" | "/metrics");
    let now = Instant::now();
    // The Upbit API signs each request with its own JWT scheme (crate::upbit::auth), and has
    // its own error shape.
    let path = req.uri().path();
    let upbit = path == "/v1" || path.starts_with("/v1/") || path.starts_with("/websocket/v1");
    let resp = 'r: {
        if !monitoring {
            if let Err(l) = st.limits.address(peer.ip(), now) {
                let e = limited(&st, l);
                if upbit {
                    break 'r crate::upbit::address_limited(e, path);
                }
                break 'r e.into_response();
            }
        }
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|_| !upbit);
        if let Some(tok) = bearer {
            match st.tokens.verify(tok).and_then(|c| match c.role() {
                Some(r) => Ok(Authed(c, r)),
                None => Err(ApiError::web(
                    WebCode::Unauthorized,
                    "the token names no role",
                )),
            }) {
                Ok(a) => {
                    if let Err(l) = st.limits.account(a.0.acct, now) {
                        break 'r limited(&st, l).into_response();
                    }
                    req.extensions_mut().insert(a);
                }
                Err(e) => {
                    st.edge.metrics.inc(&st.edge.metrics.bad_tokens);
                    req.extensions_mut().insert(AuthFailure(e));
                }
            }
        }
        // A body announced over the limit is refused before any of it is read.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
            let mut r = StatusCode::PAYLOAD_TOO_LARGE.into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            break 'r r;
        }
        // The body is read whole, within the limit and in time, before any handler runs: a
        // handler that answers without reading it (a 401 for an expired token, say) leaves
        // nothing unread on the connection, which stays usable; and a slow POST holds no
        // handler for long.
        if !http_body::Body::is_end_stream(req.body()) {
            let (parts, body) = req.into_parts();
            let read = axum::body::to_bytes(body, BODY_BYTES_MAX);
            let mut refused = match tokio::time::timeout(st.body_timeout, read).await {
                Ok(Ok(bytes)) => {
                    let whole = Request::from_parts(parts, axum::body::Body::from(bytes));
                    break 'r next.run(whole).await;
                }
                // Over the limit without announcing it (a chunked body): 413.
                Ok(Err(e)) if over_limit(&e) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
                // Malformed chunked framing, or the client went away mid-body.
                Ok(Err(e)) => {
                    let message = format!("the request body could not be read: {e}");
                    if upbit {
                        crate::upbit::UpbitError::validation(message).into_response()
                    } else {
                        ApiError::bad(message).into_response()
                    }
                }
                Err(_) => {
                    let message = format!(
                        "the request body did not arrive whole within {} ms",
                        st.body_timeout.as_millis()
                    );
                    if upbit {
                        crate::upbit::UpbitError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "request_timeout",
                            message,
                        )
                        .into_response()
                    } else {
                        ApiError::web(WebCode::BodyTimeout, &message).into_response()
                    }
                }
            };
            // The rest of the body is not waited for.
            refused.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            break 'r refused;
        }
        next.run(req).await
    };
    let resp = json_error(resp, upbit).await;
    st.edge.metrics.http(route, resp.status().as_u16());
    if let Some(e) = resp.extensions().get::<crate::error::ErrorCode>() {
        st.edge.metrics.error(e.0, e.1);
    }
    resp
}

/// Whether reading a body failed because it passed [`BODY_BYTES_MAX`] (not because it broke off
/// or was malformed).
fn over_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Errors the router and its extractors answer themselves come as plain text or with no body:
/// 405 for a method a path does not take, 413 for a body over [`BODY_BYTES_MAX`], a refused
/// WebSocket upgrade. They get the JSON error shape here, with their status kept: the API's
/// (`BAD_REQUEST`, 4001) or, under `/v1/` and `/websocket/v1`, Upbit's
/// (`method_not_allowed`, `request_too_large`, else `validation_error`).
async fn json_error(resp: Response, upbit: bool) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this path does not take that method".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("the body is over {BODY_BYTES_MAX} bytes"),
        _ if !text.is_empty() => text,
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut r = if upbit {
        let name = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            _ => "validation_error",
        };
        crate::upbit::UpbitError::new(status, name, message).into_response()
    } else {
        ApiError {
            status,
            ..ApiError::bad(message)
        }
        .into_response()
    };
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k, v.clone());
        }
    }
    r
}

/// The route template as a `'static` label (bounded: only the router's own templates).
fn route_name(path: &str) -> &'static str {
    const ROUTES: [&str; 27] = [
        "/health",
        "/ready",
        "/metrics",
        "/api/openapi.json",
        "/api/v1/symbols",
        "/api/v1/currencies",
        "/api/v1/orderbook/{symbol}",
        "/api/v1/trades/{symbol}",
        "/api/v1/klines/{symbol}",
        "/api/v1/ticker/24hr",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/orders",
        "/api/v1/orders/open",
        "/api/v1/orders/client/{client_order_id}",
        "/api/v1/orders/{order_id}",
        "/api/v1/balances",
        "/api/v1/withdrawals",
        "/api/v1/withdrawals/{id}/approve",
        "/api/v1/withdrawals/{id}/reject",
        "/api/v1/deposits",
        "/deposit",
        "/order",
        "/cancel",
        "/orderbook",
        "/ws",
        "unmatched",
    ];
    ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}

pub(crate) fn limited(st: &AppState, l: Limited) -> ApiError {
    let m = &st.edge.metrics;
    match l {
        Limited::Account(secs) => {
            m.inc(&m.rate_limited_account);
            ApiError::web(WebCode::RateLimited, "this account's request rate limit")
                .retry_after(secs)
        }
        Limited::Address(secs) => {
            m.inc(&m.rate_limited_address);
            ApiError::web(WebCode::RateLimited, "this address's request rate limit")
                .retry_after(secs)
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::web(WebCode::NotFound, "no such route (see /api/openapi.json)")
}

/// Parses a JSON body with a clear 400 on any error.
pub(crate) fn body<T: serde::de::DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::bad(format!("body: {e}")))
}

fn user_of(a: &Authed, asked: Option<u32>) -> UserId {
    // A user acts for itself unless it names another (which authorization then refuses); an
    // operator has no user of its own (user endpoints refuse it with USER_ONLY).
    UserId(asked.unwrap_or(match a.1 {
        Role::User(u) => u,
        Role::Operator(_) | Role::MarketData => 0,
    }))
}

fn operator_of(a: &Authed) -> OperatorId {
    OperatorId(match a.1 {
        Role::Operator(o) | Role::User(o) => o,
        Role::MarketData => u32::MAX,
    })
}

// ---------------------------------------------------------------------------------- public

async fn health() -> Json<Value> {
    Json(json!({"status": "up"}))
}

async fn ready(State(st): State<Shared>) -> Response {
    if st.edge.bridge.ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::web(WebCode::NotReady, "the gateway loop is not running").into_response()
    }
}

async fn metrics(State(st): State<Shared>) -> Response {
    let mut text = st.edge.metrics.render(&st.gateway_stats, &st.edge.bridge);
    st.conns.render(&mut text);
    if let Some(g) = &st.pipeline {
        crate::metrics::render_pipeline(&mut text, g, &st.edge.bridge);
    }
    if st.edge.md.is_some() {
        crate::public::render_metrics(&mut text, &st.edge, &st.gateway_stats);
    }
    if let (Some(p), Some(g)) = (&st.projection, &st.pipeline) {
        crate::metrics::render_projection(&mut text, (p.0)(), g);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn symbols(State(st): State<Shared>) -> Json<Value> {
    let c = &st.edge.config;
    let scale = |code: &str| {
        c.currencies
            .iter()
            .find(|x| x.code == code)
            .map(|x| x.scale)
    };
    let list: Vec<Value> = c
        .symbols
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "name": s.name, "base": s.base, "quote": s.quote,
                "base_scale": scale(&s.base), "quote_scale": scale(&s.quote),
                "lot_size": s.lot_size, "tick_size": s.tick_size,
                "price_min": s.price_min, "price_max": s.price_max,
                "maker_fee_bps": s.maker_fee_bps, "taker_fee_bps": s.taker_fee_bps,
                "max_order_qty": s.max_order_qty,
            })
        })
        .collect();
    Json(json!(list))
}

async fn currencies(State(st): State<Shared>) -> Json<Value> {
    let list: Vec<Value> = st
        .edge
        .config
        .currencies
        .iter()
        .map(|c| json!({"id": c.id, "code": c.code, "scale": c.scale}))
        .collect();
    Json(json!(list))
}

pub(crate) fn q_u64(q: &HashMap<String, String>, k: &str) -> Result<Option<u64>, ApiError> {
    q.get(k)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad(format!("query parameter {k}={v:?}: expected a number")))
        })
        .transpose()
}

/// The sequenced book query shared by the JSON and CSV order book endpoints: bids and asks,
/// best first, and the query's sequence number.
pub(crate) async fn book(
    st: &AppState,
    symbol: ringbook_engine::SymbolId,
    depth: u32,
) -> Result<(Vec<(i64, u64)>, Vec<(i64, u64)>, u64), ApiError> {
    // Public data: the query is made as no one in particular (authorization lets any role
    // read a book).
    let (events, seq) = st
        .edge
        .command(
            Role::User(0),
            Command::Query(EngineQuery::Book { symbol, depth }),
        )
        .await?;
    j::first_reject(&events)?;
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for e in &events {
        if let Event::BookLevel {
            side, price, qty, ..
        } = *e
        {
            match side {
                ringbook_engine::Side::Buy => bids.push((price.0, qty.0)),
                ringbook_engine::Side::Sell => asks.push((price.0, qty.0)),
            }
        }
    }
    Ok((bids, asks, seq))
}

async fn orderbook(
    State(st): State<Shared>,
    Path(symbol): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let sid = j::symbol(&st.edge.config, &Named::Name(symbol))?;
    let depth = q_u64(&q, "depth")?.map_or(BOOK_DEPTH_DEFAULT, |d| {
        d.min(u64::from(BOOK_DEPTH_MAX)) as u32
    });
    if let Some(md) = st.edge.md_fresh().await? {
        // From the web edge's copy of the gateway's builder: the book the binary feed publishes.
        return Ok(Json(crate::public::book_json(
            &st.edge.config,
            &md,
            sid,
            depth as usize,
        )));
    }
    let (bids, asks, seq) = book(&st, sid, depth).await?;
    Ok(Json(json!({
        "symbol": j::sym(&st.edge.config, sid),
        "seq": seq,
        "md_seq": Value::Null,
        "bids": bids.iter().map(|(p, q)| json!([p, q])).collect::<Vec<_>>(),
        "asks": asks.iter().map(|(p, q)| json!([p, q])).collect::<Vec<_>>(),
    })))
}

// ---------------------------------------------------------------------------------- login

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
}

async fn login(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let l: LoginBody = body(&b)?;
    let max = ringbook_engine::config::GATEWAY_CREDENTIAL_BYTES_MAX;
    // No NUL: the gateway compares credentials as fixed fields padded with NULs, so `alice\0`
    // would log in as `alice` and carry the NUL into its token's subject.
    let bad = |s: &str| s.is_empty() || s.len() > max || s.contains('\0');
    if bad(&l.login) || bad(&l.password) {
        return Err(ApiError::bad(format!(
            "login and password must be 1..={max} bytes, without NUL"
        )));
    }
    let m = &st.edge.metrics;
    let op = WebOp::Login {
        ip: peer.ip(),
        login: name32(&l.login),
        password: name32(&l.password),
    };
    match st.edge.call(op).await? {
        Outcome::Login(LoginCheck::Ok(acct, role)) => {
            m.inc(&m.logins_ok);
            let (token, expires_at) = st.tokens.issue(&l.login, acct, role)?;
            let (role_name, id) = match role {
                Role::User(u) => ("user", u),
                Role::Operator(o) => ("operator", o),
                Role::MarketData => ("market_data", 0),
            };
            Ok(Json(
                json!({"token": token, "expires_at": expires_at, "role": role_name, "id": id}),
            ))
        }
        Outcome::Login(LoginCheck::Bad) => {
            m.inc(&m.logins_failed);
            Err(ApiError::reject(
                RejectCode::BadCredentials,
                "unknown login or wrong password",
            ))
        }
        Outcome::Login(LoginCheck::Throttled) => {
            m.inc(&m.logins_throttled);
            Err(ApiError::reject(
                RejectCode::LoginThrottled,
                "too many failed logins for this account or address; try again later",
            )
            .retry_after(1))
        }
        _ => Err(ApiError::bad("unexpected reply to a login")),
    }
}

/// `POST /api/v1/auth/logout`: ends every token of the caller's login issued until now (this
/// one, other tabs', other devices') and closes the WebSockets authenticated with them.
async fn logout(State(st): State<Shared>, Authed(c, _): Authed) -> Json<Value> {
    let until = st.tokens.revoke(c.acct);
    let sockets = st.edge.ws_revoke(c.acct);
    Json(json!({"logged_out": c.sub, "revoked_until_ms": until, "sockets_closed": sockets}))
}

// ---------------------------------------------------------------------------------- orders

/// `POST /api/v1/orders`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderBody {
    #[serde(default)]
    user: Option<u32>,
    symbol: Named,
    client_order_id: u64,
    side: String,
    #[serde(rename = "type", default = "limit")]
    order_type: String,
    #[serde(default)]
    tif: Option<String>,
    #[serde(default)]
    price: Option<i64>,
    /// Lots; may be left out of a budget order (then only `max_order_qty` caps it).
    #[serde(default)]
    qty: Option<u64>,
    #[serde(default)]
    stop_price: Option<i64>,
    #[serde(default)]
    display_qty: Option<u64>,
    #[serde(default)]
    post_only: Option<bool>,
    #[serde(default)]
    stp: Option<String>,
    /// Market buy by quote amount (quote minimal units, taker fee included).
    #[serde(default)]
    budget: Option<u64>,
    /// GTD expiry, Unix milliseconds.
    #[serde(default)]
    expire: Option<u64>,
}

fn limit() -> String {
    "LIMIT".into()
}

impl OrderBody {
    fn to_command(&self, st: &AppState, user: UserId) -> Result<NewOrder, ApiError> {
        // Zero is the engine's "no budget": a budget of zero said out loud is refused here.
        if self.budget == Some(0) {
            return Err(ApiError::reject(
                RejectCode::InvalidBudget,
                "budget must be at least 1 (quote minimal units)",
            ));
        }
        let qty = match (self.qty, self.budget) {
            (Some(q), _) => q,
            (None, Some(_)) => 0,
            (None, None) => return Err(ApiError::bad("qty is required (except with budget)")),
        };
        let expire_at = match self.expire {
            None => 0,
            Some(0) => {
                return Err(ApiError::reject(
                    RejectCode::InvalidExpiry,
                    "expire must be a Unix time in milliseconds",
                ))
            }
            Some(ms) => ms.checked_mul(1_000_000).ok_or_else(|| {
                ApiError::reject(RejectCode::InvalidExpiry, "expire is past the 64-bit range")
            })?,
        };
        let order_type = j::parse_type(&self.order_type)?;
        let tif = match &self.tif {
            Some(t) => j::parse_tif(t)?,
            None if order_type.is_market() => TimeInForce::Ioc,
            None => TimeInForce::Gtc,
        };
        let price = self.price.ok_or_else(|| {
            ApiError::bad("price is required (for MARKET and STOP_MARKET: the protection price)")
        })?;
        let stop_price = self.stop_price.unwrap_or(0);
        if order_type.is_stop() && self.stop_price.is_none() {
            return Err(ApiError::reject(
                RejectCode::InvalidStopPrice,
                "stop orders need stop_price",
            ));
        }
        Ok(NewOrder {
            user,
            symbol: j::symbol(&st.edge.config, &self.symbol)?,
            client_order_id: ClientOrderId(self.client_order_id),
            side: j::parse_side(&self.side)?,
            order_type,
            tif,
            price: Price(price),
            qty: Qty(qty),
            stop_price: Price(stop_price),
            display_qty: Qty(self.display_qty.unwrap_or(0)),
            post_only: self.post_only.unwrap_or(false),
            stp: match &self.stp {
                Some(s) => j::parse_stp(s)?,
                None => ringbook_engine::StpMode::None,
            },
            budget: self.budget.unwrap_or(0),
            expire_at,
        })
    }
}

/// The reply to a new order: its id and status, and the fills it caused.
pub(crate) fn order_reply(
    st: &AppState,
    o: &NewOrder,
    events: &[Event],
    seq: u64,
) -> Result<Value, ApiError> {
    j::first_reject(events)?;
    let mine = |u: UserId, c: ClientOrderId| u == o.user && c == o.client_order_id;
    let mut order_id = None;
    let (mut filled, mut cancelled, mut reason, mut triggered) = (0u64, false, None, false);
    let mut fills = Vec::new();
    let mut qty = o.qty.0;
    for e in events {
        match *e {
            Event::Accepted {
                user,
                client_order_id,
                order_id: id,
                qty: accepted,
                ..
            } if mine(user, client_order_id) => {
                order_id = Some(id.0);
                // A budget order without a lot cap is accepted with the symbol's largest.
                qty = accepted.0;
            }
            Event::Trade(t) => {
                if mine(t.taker.user, t.taker.client_order_id) {
                    filled += t.qty.0;
                    fills.push(j::fill(&st.edge.config, &t, false));
                } else if mine(t.maker.user, t.maker.client_order_id) {
                    filled += t.qty.0;
                    fills.push(j::fill(&st.edge.config, &t, true));
                }
            }
            Event::Cancelled {
                user,
                client_order_id,
                leaves_qty,
                reason: r,
                ..
            } if mine(user, client_order_id) && leaves_qty.0 == 0 => {
                cancelled = true;
                reason = Some(r);
            }
            Event::Triggered {
                user,
                client_order_id,
                ..
            } if mine(user, client_order_id) => triggered = true,
            _ => {}
        }
    }
    let status = if filled >= qty {
        "FILLED"
    } else if cancelled {
        if reason == Some(ringbook_engine::CancelReason::Expired) {
            "EXPIRED"
        } else {
            "CANCELLED"
        }
    } else if filled > 0 {
        "PARTIALLY_FILLED"
    } else {
        "NEW"
    };
    Ok(json!({
        "order_id": order_id,
        "user": o.user.0,
        "client_order_id": o.client_order_id.0,
        "symbol": j::sym(&st.edge.config, o.symbol),
        "side": o.side.name(),
        "type": o.order_type.name(),
        "tif": o.tif.name(),
        "price": o.price.0,
        "qty": qty,
        "budget": (o.budget != 0).then_some(o.budget),
        "expire": (o.expire_at != 0).then_some(o.expire_at / 1_000_000),
        "status": status,
        "filled_qty": filled,
        "leaves_qty": if cancelled { 0 } else { qty - filled.min(qty) },
        "cancel_reason": reason.map(|r| r.name()),
        "triggered": o.order_type.is_stop().then_some(triggered),
        "fills": fills,
        "seq": seq,
    }))
}

async fn new_order(State(st): State<Shared>, a: Authed, b: Bytes) -> Result<Response, ApiError> {
    let ob: OrderBody = body(&b)?;
    let o = ob.to_command(&st, user_of(&a, ob.user))?;
    let (events, seq) = st.edge.command(a.1, Command::NewOrder(o)).await?;
    let v = order_reply(&st, &o, &events, seq)?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn events_json(st: &AppState, events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| j::event(&st.edge.config, e))
        .collect()
}

fn parse_id(s: &str, what: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad(format!("{what} {s:?}: expected a number")))
}

fn need_symbol(
    st: &AppState,
    q: &HashMap<String, String>,
) -> Result<ringbook_engine::SymbolId, ApiError> {
    let s = q
        .get("symbol")
        .ok_or_else(|| ApiError::bad("query parameter symbol is required"))?;
    j::symbol(&st.edge.config, &Named::Name(s.clone()))
}

async fn cancel_order(
    State(st): State<Shared>,
    a: Authed,
    Path(coid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let coid = parse_id(&coid, "client order id")?;
    let symbol = need_symbol(&st, &q)?;
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let cmd = Command::Cancel {
        user,
        symbol,
        client_order_id: ClientOrderId(coid),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let mut out = json!({"client_order_id": coid, "status": "CANCELLED", "seq": seq});
    for e in &events {
        if let Event::Cancelled {
            order_id,
            qty,
            reason,
            ..
        } = *e
        {
            out["order_id"] = json!(order_id.0);
            out["cancelled_qty"] = json!(qty.0);
            out["reason"] = json!(reason.name());
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendBody {
    #[serde(default)]
    user: Option<u32>,
    symbol: Named,
    price: i64,
    qty: u64,
}

async fn amend_order(
    State(st): State<Shared>,
    a: Authed,
    Path(coid): Path<String>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let coid = parse_id(&coid, "client order id")?;
    let ab: AmendBody = body(&b)?;
    let cmd = Command::Amend {
        user: user_of(&a, ab.user),
        symbol: j::symbol(&st.edge.config, &ab.symbol)?,
        client_order_id: ClientOrderId(coid),
        price: Price(ab.price),
        qty: Qty(ab.qty),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let status = amend_status(&events);
    Ok(Json(json!({
        "client_order_id": coid, "status": status, "seq": seq, "events": events_json(&st, &events),
    })))
}

async fn mass_cancel(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let symbol = match q.get("symbol") {
        Some(s) => Some(j::symbol(&st.edge.config, &Named::Name(s.clone()))?),
        None => None,
    };
    let cmd = Command::MassCancel {
        user: user_of(&a, q_u64(&q, "user")?.map(|u| u as u32)),
        symbol,
        on_disconnect: false,
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let count = events.iter().find_map(|e| match e {
        Event::MassCancelled { count, .. } => Some(*count),
        _ => None,
    });
    Ok(Json(json!({"cancelled": count.unwrap_or(0), "seq": seq})))
}

async fn open_orders(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let symbol = match q.get("symbol") {
        Some(s) => Some(j::symbol(&st.edge.config, &Named::Name(s.clone()))?),
        None => None,
    };
    let limit = q_u64(&q, "limit")?.map_or(OPEN_ORDERS_MAX, |l| {
        l.min(u64::from(OPEN_ORDERS_MAX)) as u32
    });
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let (events, seq) = st
        .edge
        .command(a.1, Command::Query(EngineQuery::OpenOrders { user, limit }))
        .await?;
    j::first_reject(&events)?;
    let mut orders = Vec::new();
    let mut total = 0;
    for e in &events {
        match e {
            Event::OpenOrder(v) if symbol.is_none_or(|s| s == v.symbol) => {
                orders.push(j::order_view(&st.edge.config, v))
            }
            Event::OpenOrdersEnd { count, .. } => total = *count,
            _ => {}
        }
    }
    Ok(Json(
        json!({"orders": orders, "total_open": total, "seq": seq}),
    ))
}

async fn order_status(
    State(st): State<Shared>,
    a: Authed,
    Path(coid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let coid = parse_id(&coid, "client order id")?;
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let query = EngineQuery::Order {
        user,
        client_order_id: ClientOrderId(coid),
    };
    match status_of(&st, a.1, query).await? {
        (Some(out), _) => Ok(Json(out)),
        (None, _) => Err(ApiError::reject(
            RejectCode::UnknownOrder,
            "no live order with this client order id, and none among the user's recently \
             finished orders",
        )),
    }
}

/// One sequenced order-status query (by client order id or by engine order id) and its
/// answer as JSON: the live order, or the recently finished one, or `None`; with the query's
/// sequence number.
async fn status_of(
    st: &AppState,
    role: Role,
    query: EngineQuery,
) -> Result<(Option<Value>, u64), ApiError> {
    let (events, seq) = st.edge.command(role, Command::Query(query)).await?;
    j::first_reject(&events)?;
    let status = events.iter().find_map(|e| match e {
        Event::OrderStatus {
            user,
            order,
            finished,
            ..
        } => Some(match (order, finished) {
            (Some(v), _) => Some(j::order_view(&st.edge.config, v)),
            (None, Some(f)) => Some(j::finished_order(&st.edge.config, *user, f)),
            (None, None) => None,
        }),
        _ => None,
    });
    match status {
        Some(found) => Ok((found, seq)),
        None => Err(ApiError::reject(
            RejectCode::UnknownOrder,
            "no order status in the reply",
        )),
    }
}

/// The user's live order with this engine order id (one sequenced `Query::OrderById`, an
/// array index in the engine): `None` when it is not live (finished, never existed, or
/// another user's: a user's query never sees other users' orders).
async fn live_order(
    st: &AppState,
    role: Role,
    user: UserId,
    order_id: u64,
) -> Result<(Option<ringbook_engine::book::OrderView>, u64), ApiError> {
    let query = Command::Query(EngineQuery::OrderById {
        user,
        order_id: ringbook_engine::OrderId(order_id),
    });
    let (events, seq) = st.edge.command(role, query).await?;
    j::first_reject(&events)?;
    let found = events.iter().find_map(|e| match e {
        Event::OrderStatus { order, .. } => *order,
        _ => None,
    });
    Ok((found, seq))
}

/// The symbol of an order named by engine id: the `symbol` given (query or body), or else the
/// one the user's live order has (one extra sequenced query).
async fn symbol_of_order(
    st: &AppState,
    a: &Authed,
    user: UserId,
    order_id: u64,
    given: Option<ringbook_engine::SymbolId>,
) -> Result<ringbook_engine::SymbolId, ApiError> {
    if let Some(s) = given {
        return Ok(s);
    }
    match live_order(st, a.1, user, order_id).await? {
        (Some(v), _) => Ok(v.symbol),
        // Not one of the user's live orders: the command still goes to the engine, which
        // answers `NOT_YOUR_ORDER` for another user's live order and `UNKNOWN_ORDER` for an id
        // that names no live order, whatever the symbol (its id table is checked first).
        (None, _) => Ok(ringbook_engine::SymbolId(0)),
    }
}

async fn order_by_id(
    State(st): State<Shared>,
    a: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "order id")?;
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let query = EngineQuery::OrderById {
        user,
        order_id: ringbook_engine::OrderId(id),
    };
    match status_of(&st, a.1, query).await? {
        (Some(mut out), seq) => {
            out["seq"] = json!(seq);
            Ok(Json(out))
        }
        (None, _) => Err(ApiError::reject(
            RejectCode::UnknownOrder,
            "no order of yours with this order id, live or among your recently finished orders",
        )),
    }
}

async fn cancel_by_id(
    State(st): State<Shared>,
    a: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "order id")?;
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let given = match q.get("symbol") {
        Some(s) => Some(j::symbol(&st.edge.config, &Named::Name(s.clone()))?),
        None => None,
    };
    let symbol = symbol_of_order(&st, &a, user, id, given).await?;
    let cmd = Command::CancelOrder {
        user,
        symbol,
        order_id: ringbook_engine::OrderId(id),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let mut out = json!({"order_id": id, "status": "CANCELLED", "seq": seq});
    for e in &events {
        if let Event::Cancelled {
            client_order_id,
            qty,
            reason,
            ..
        } = *e
        {
            out["client_order_id"] = json!(client_order_id.0);
            out["cancelled_qty"] = json!(qty.0);
            out["reason"] = json!(reason.name());
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendByIdBody {
    #[serde(default)]
    user: Option<u32>,
    #[serde(default)]
    symbol: Option<Named>,
    price: i64,
    qty: u64,
}

async fn amend_by_id(
    State(st): State<Shared>,
    a: Authed,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "order id")?;
    let ab: AmendByIdBody = body(&b)?;
    let user = user_of(&a, ab.user);
    let given = match &ab.symbol {
        Some(s) => Some(j::symbol(&st.edge.config, s)?),
        None => None,
    };
    let symbol = symbol_of_order(&st, &a, user, id, given).await?;
    let cmd = Command::AmendOrder {
        user,
        symbol,
        order_id: ringbook_engine::OrderId(id),
        price: Price(ab.price),
        qty: Qty(ab.qty),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    Ok(Json(json!({
        "order_id": id, "status": amend_status(&events), "seq": seq,
        "events": events_json(&st, &events),
    })))
}

fn amend_status(events: &[Event]) -> &'static str {
    if events.iter().any(|e| matches!(e, Event::Amended { .. })) {
        "AMENDED"
    } else if events
        .iter()
        .any(|e| matches!(e, Event::Cancelled { leaves_qty, .. } if leaves_qty.0 == 0))
    {
        "CANCELLED"
    } else {
        "UNCHANGED"
    }
}

async fn balances(
    State(st): State<Shared>,
    a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&a, q_u64(&q, "user")?.map(|u| u as u32));
    let (v, seq) = balances_of(&st, a.1, user).await?;
    Ok(Json(json!({"user": user.0, "balances": v, "seq": seq})))
}

/// A user's balances, through the sequenced path.
pub(crate) async fn balances_of(
    st: &AppState,
    role: Role,
    user: UserId,
) -> Result<(Vec<Value>, u64), ApiError> {
    let (events, seq) = st
        .edge
        .command(role, Command::Query(EngineQuery::Balances { user }))
        .await?;
    j::first_reject(&events)?;
    let v = events
        .iter()
        .filter_map(|e| match *e {
            Event::Balance {
                currency,
                available,
                locked,
                ..
            } => Some(json!({"currency": j::cur(&st.edge.config, currency), "available": available, "locked": locked})),
            _ => None,
        })
        .collect();
    Ok((v, seq))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FundsBody {
    #[serde(default)]
    user: Option<u32>,
    currency: Named,
    amount: u64,
}

async fn withdraw(State(st): State<Shared>, a: Authed, b: Bytes) -> Result<Response, ApiError> {
    let fb: FundsBody = body(&b)?;
    let cmd = Command::Withdraw {
        user: user_of(&a, fb.user),
        currency: j::currency(&st.edge.config, &fb.currency)?,
        amount: fb.amount,
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let id = events.iter().find_map(|e| match e {
        Event::WithdrawalRequested { withdrawal_id, .. } => Some(withdrawal_id.0),
        _ => None,
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"withdrawal_id": id, "status": "PENDING", "seq": seq, "events": events_json(&st, &events)})),
    )
        .into_response())
}

async fn deposit(State(st): State<Shared>, a: Authed, b: Bytes) -> Result<Json<Value>, ApiError> {
    let fb: FundsBody = body(&b)?;
    let user = fb
        .user
        .ok_or_else(|| ApiError::bad("user is required (the account to credit)"))?;
    let cmd = Command::Deposit {
        user: UserId(user),
        currency: j::currency(&st.edge.config, &fb.currency)?,
        amount: fb.amount,
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let mut out = json!({"user": user, "currency": j::cur(&st.edge.config, match cmd {
        Command::Deposit { currency, .. } => currency,
        _ => ringbook_engine::CurrencyId(0),
    }), "amount": fb.amount, "seq": seq});
    for e in &events {
        if let Event::BalanceUpdate {
            available, locked, ..
        } = *e
        {
            out["available"] = json!(available);
            out["locked"] = json!(locked);
        }
    }
    Ok(Json(out))
}

async fn approve(
    State(st): State<Shared>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "withdrawal id")?;
    let cmd = Command::ApproveWithdrawal {
        operator: operator_of(&a),
        withdrawal_id: WithdrawalId(id),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let approvals = events.iter().find_map(|e| match e {
        Event::WithdrawalApproved { approvals, .. } => Some(*approvals),
        _ => None,
    });
    let completed = events
        .iter()
        .any(|e| matches!(e, Event::WithdrawalCompleted { .. }));
    Ok(Json(json!({
        "withdrawal_id": id, "approvals": approvals,
        "status": if completed { "COMPLETED" } else { "PENDING" }, "seq": seq,
    })))
}

async fn reject(
    State(st): State<Shared>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "withdrawal id")?;
    let cmd = Command::RejectWithdrawal {
        operator: operator_of(&a),
        withdrawal_id: WithdrawalId(id),
    };
    let (events, seq) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    Ok(Json(
        json!({"withdrawal_id": id, "status": "REJECTED", "seq": seq}),
    ))
}

/// The next client order id for an order the web edge names itself (CSV `/order`).
pub(crate) fn next_csv_coid(st: &AppState) -> u64 {
    st.csv_coid.fetch_add(1, Ordering::Relaxed)
}
