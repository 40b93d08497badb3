//! An Upbit-compatible Open API on the web edge (docs/upbit-api.md): `/v1/…` REST and
//! `/websocket/v1`, so clients written for Upbit (ccxt's `upbit` driver, bots on Upbit's Open
//! API) trade on ringbook unchanged.
//!
//! - [`auth`]: Upbit's JWT scheme (HS256 with the key's secret; `access_key`, `nonce` with
//!   replay protection, `query_hash` = SHA-512 of the query string), API keys from
//!   `[[gateway.api_keys]]`, permissions, the per-account rate limit and `Remaining-Req`.
//! - [`decimal`]: exact display ↔ ticks/lots/minimal units conversion (refuse, never round).
//! - [`quotation`]: markets, tickers, order books, trades and candles from the web edge's
//!   market-data builder.
//! - [`exchange`]: accounts, orders and withdrawals through the sequenced path
//!   ([`crate::edge::Edge::command`]).
//! - [`orders`]: the web edge's table of Upbit orders (uuid, identifier, fills and fees).
//! - [`ws`]: `/websocket/v1` in Upbit's request format.

pub(crate) mod auth;
pub mod decimal;
mod exchange;
pub(crate) mod orders;
mod quotation;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ringbook_engine::{Config, CurrencyId, RejectCode, SymbolId};
use serde_json::json;

use crate::api::Shared;
use crate::error::ApiError;
use decimal::Scales;

/// One market as Upbit names it (`QUOTE-BASE`, e.g. `KRW-BTC` for ringbook's `BTC-KRW`).
#[derive(Clone, Debug)]
pub(crate) struct Market {
    pub sid: SymbolId,
    /// `QUOTE-BASE`.
    pub code: String,
    pub base: String,
    pub quote: String,
    pub base_cur: CurrencyId,
    pub quote_cur: CurrencyId,
    pub scales: Scales,
}

/// The markets the Upbit API offers: every symbol whose tick has an exact decimal price.
pub(crate) fn markets(config: &Config) -> Vec<Market> {
    config
        .symbols
        .iter()
        .filter_map(|s| {
            let scales = Scales::of(config, s)?;
            if !scales.displayable() {
                return None;
            }
            Some(Market {
                sid: SymbolId(s.id),
                code: format!("{}-{}", s.quote, s.base),
                base: s.base.clone(),
                quote: s.quote.clone(),
                base_cur: config.currency_id(&s.base)?,
                quote_cur: config.currency_id(&s.quote)?,
                scales,
            })
        })
        .collect()
}

/// The Upbit API's shared state.
#[derive(Debug)]
pub(crate) struct Upbit {
    pub st: Shared,
    pub keys: auth::Keys,
    pub markets: Vec<Market>,
    by_code: HashMap<String, usize>,
    /// One lock per user with an API key: a user's new orders are numbered and submitted one
    /// at a time, so the client order ids the web edge assigns reach the engine in increasing
    /// order (whichever of the user's keys or logins they come through).
    pub order_locks: HashMap<u32, tokio::sync::Mutex<()>>,
}

impl Upbit {
    pub(crate) fn new(st: Shared) -> Upbit {
        let config = &st.edge.config;
        let markets = markets(config);
        let by_code = markets
            .iter()
            .enumerate()
            .map(|(i, m)| (m.code.clone(), i))
            .collect();
        let keys = auth::Keys::new(config);
        let order_locks = config
            .gateway
            .accounts
            .iter()
            .filter_map(|a| a.user)
            .map(|u| (u, tokio::sync::Mutex::new(())))
            .collect();
        Upbit {
            st,
            keys,
            markets,
            by_code,
            order_locks,
        }
    }

    /// The market named by an Upbit code.
    pub(crate) fn market(&self, code: &str) -> Result<&Market, UpbitError> {
        self.by_code
            .get(code)
            .map(|i| &self.markets[*i])
            .ok_or_else(|| {
                UpbitError::new(
                    StatusCode::NOT_FOUND,
                    "market_not_found",
                    format!("unknown market {code:?} (see /v1/market/all)"),
                )
            })
    }

    /// The market of a symbol.
    pub(crate) fn market_of(&self, sid: SymbolId) -> Option<&Market> {
        self.markets.iter().find(|m| m.sid == sid)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.st.edge.config
    }
}

/// An error in Upbit's shape: `{"error":{"name":"…","message":"…"}}`.
#[derive(Clone, Debug)]
pub(crate) struct UpbitError {
    pub status: StatusCode,
    pub name: &'static str,
    pub message: String,
    pub remaining: Option<String>,
}

impl UpbitError {
    pub(crate) fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        UpbitError {
            status,
            name,
            message: message.into(),
            remaining: None,
        }
    }

    /// `400 validation_error`.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        UpbitError::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    /// `404 order_not_found`.
    pub(crate) fn order_not_found() -> Self {
        UpbitError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "order not found (주문을 찾지 못했습니다)",
        )
    }

    /// An engine or gateway reject, in Upbit's names where Upbit has one. `bid`: the order was a
    /// buy (Upbit tells `insufficient_funds_bid` from `_ask`).
    pub(crate) fn reject(code: RejectCode, bid: bool) -> Self {
        use RejectCode::*;
        let (status, name) = match code {
            InsufficientFunds | UnknownUser if bid => {
                (StatusCode::BAD_REQUEST, "insufficient_funds_bid")
            }
            InsufficientFunds | UnknownUser => (StatusCode::BAD_REQUEST, "insufficient_funds_ask"),
            PriceOutOfBand if bid => (StatusCode::BAD_REQUEST, "invalid_price_bid"),
            PriceOutOfBand => (StatusCode::BAD_REQUEST, "invalid_price_ask"),
            QuantityTooLarge => (StatusCode::BAD_REQUEST, "volume_too_large"),
            InvalidQuantity | InvalidAmount => (StatusCode::BAD_REQUEST, "invalid_volume"),
            PostOnlyWouldTake => (StatusCode::BAD_REQUEST, "post_only_would_take"),
            UnknownOrder | NotYourOrder => (StatusCode::NOT_FOUND, "order_not_found"),
            UnknownSymbol => (StatusCode::NOT_FOUND, "market_not_found"),
            UnknownCurrency => (StatusCode::NOT_FOUND, "currency_not_found"),
            OrderPoolFull | ServerFull | ShuttingDown | WithdrawalPoolFull => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_busy")
            }
            DuplicateClientOrderId | ClientOrderIdNotIncreasing => {
                (StatusCode::BAD_REQUEST, "duplicate_identifier")
            }
            NotYourAccount | OperatorOnly | UserOnly | NotAnOperator => {
                (StatusCode::UNAUTHORIZED, "out_of_scope")
            }
            NotionalOverflow | AmountOverflow => (StatusCode::BAD_REQUEST, "invalid_funds"),
            WithdrawalLimit => (StatusCode::BAD_REQUEST, "withdraw_limit"),
            _ => (StatusCode::BAD_REQUEST, "create_order_error"),
        };
        UpbitError::new(
            status,
            name,
            format!("rejected by the engine: {} ({})", code.name(), code.code()),
        )
    }

    pub(crate) fn with_remaining(mut self, r: Option<String>) -> Self {
        self.remaining = r;
        self
    }
}

impl From<ApiError> for UpbitError {
    fn from(e: ApiError) -> Self {
        // Errors of the web edge itself (busy, not ready, timeout…): their stable name, lower
        // case, with the same status.
        let name = match e.reason {
            "WEB_BUSY" | "NOT_READY" => "server_busy",
            "TIMEOUT" => "server_timeout",
            "RATE_LIMITED" => "too_many_requests",
            _ => "server_error",
        };
        UpbitError::new(e.status, name, e.message)
    }
}

impl IntoResponse for UpbitError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({"error": {"name": self.name, "message": self.message}})),
        )
            .into_response();
        if let Some(v) = self.remaining.and_then(|v| HeaderValue::from_str(&v).ok()) {
            r.headers_mut().insert("remaining-req", v);
        }
        r
    }
}

/// A request to an Upbit route from an address over its rate limit (checked before anything
/// else, the key included): Upbit's error shape and `Remaining-Req` — the quotation group
/// (`market`) or the exchange group (`default`) by the route, with nothing left — besides the
/// edge's `Retry-After`. (It was answered in the `/api` shape, without `Remaining-Req`: a
/// docs review finding.)
pub(crate) fn address_limited(e: ApiError, path: &str) -> Response {
    let retry_after = e.retry_after;
    let quotation = [
        "/v1/market/",
        "/v1/ticker",
        "/v1/orderbook",
        "/v1/trades/",
        "/v1/candles/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || path == "/websocket/v1";
    let group = if quotation { "market" } else { "default" };
    let mut r = UpbitError::from(e)
        .with_remaining(Some(auth::remaining(group, 0)))
        .into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// The Upbit routes, mounted by [`crate::api::router`] with one `.merge`.
pub(crate) fn router(st: Shared) -> Router<Shared> {
    let up = Arc::new(Upbit::new(st));
    let quotation = Router::new()
        .route("/v1/market/all", get(quotation::market_all))
        .route("/v1/ticker", get(quotation::ticker))
        .route("/v1/ticker/all", get(quotation::ticker_all))
        .route("/v1/orderbook", get(quotation::orderbook))
        .route("/v1/trades/ticks", get(quotation::trades))
        .route(
            "/v1/candles/minutes/{unit}",
            get(quotation::candles_minutes),
        )
        .route("/v1/candles/{period}", get(quotation::candles_period))
        .route_layer(axum::middleware::from_fn_with_state(
            up.clone(),
            quotation_remaining,
        ));
    Router::new()
        .merge(quotation)
        .route("/v1/accounts", get(exchange::accounts))
        .route("/v1/orders/chance", get(exchange::chance))
        .route("/v1/orders", post(exchange::create_order))
        .route(
            "/v1/order",
            get(exchange::get_order).delete(exchange::cancel_order),
        )
        .route(
            "/v1/orders/open",
            get(exchange::open_orders).delete(exchange::cancel_open),
        )
        .route("/v1/orders/closed", get(exchange::closed_orders))
        .route("/v1/orders/uuids", get(exchange::orders_by_uuids))
        .route("/v1/withdraws/krw", post(exchange::withdraw_krw))
        .route("/v1/withdraws/coin", post(exchange::withdraw_coin))
        .route("/v1/withdraw", get(exchange::get_withdraw))
        .route("/v1/withdraws", get(exchange::list_withdraws))
        .route("/websocket/v1", get(ws::upgrade))
        .route("/websocket/v1/private", get(ws::upgrade))
        // Everything else under /v1 (the prefix itself too: `{*rest}` matches no empty rest).
        .route(
            "/v1/{*rest}",
            get(not_found).post(not_found).delete(not_found),
        )
        .route("/v1/", get(not_found).post(not_found).delete(not_found))
        .route("/v1", get(not_found).post(not_found).delete(not_found))
        .with_state(up)
}

/// Every quotation reply carries its address's `Remaining-Req` (`group=market`), errors
/// included (a 400 for a missing parameter had none: a red-team finding).
async fn quotation_remaining(
    axum::extract::State(up): axum::extract::State<Arc<Upbit>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut r = next.run(req).await;
    if let Ok(h) = HeaderValue::from_str(&auth::public_remaining(&up, peer.ip())) {
        r.headers_mut().insert("remaining-req", h);
    }
    r
}

async fn not_found() -> UpbitError {
    UpbitError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this Upbit endpoint is not offered by ringbook (docs/upbit-api.md)",
    )
}
