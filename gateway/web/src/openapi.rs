//! `GET /api/openapi.json`: an OpenAPI 3.0 description of every route.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, auth: bool, params: Value, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            ok: {"description": "success"},
            "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    });
    if auth {
        o["security"] = json!([{"bearer": []}]);
    }
    if let Some(b) = body {
        let ct = if b == "csv" {
            "text/csv"
        } else {
            "application/json"
        };
        let schema = if b == "csv" {
            json!({"type": "string"})
        } else {
            json!({"$ref": format!("#/components/schemas/{b}")})
        };
        o["requestBody"] = json!({"required": true, "content": {ct: {"schema": schema}}});
    }
    o
}

fn path_param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}})
}

fn query_param(name: &str, ty: &str, required: bool) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": {"type": ty}})
}

/// The document.
pub fn document() -> Value {
    let none = json!([]);
    let int = |d: &str| json!({"type": "integer", "description": d});
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ringbook web edge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST and WebSocket API of ringbook. Prices are integer ticks and quantities integer lots of the symbol (scales in /api/v1/symbols). Every command is sequenced and journaled like a binary session's. Errors: {code, reason, message} with stable codes (1xxx gateway, 2xxx accounts, 3xxx orders, 4xxx web edge)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "reason", "message"], "properties": {
                    "code": int("stable numeric code"), "reason": s("stable name"), "message": s("for people")}},
                "Login": {"type": "object", "required": ["login", "password"], "properties": {
                    "login": s("gateway account login"), "password": s("its password")}},
                "Order": {"type": "object", "required": ["symbol", "client_order_id", "side"], "properties": {
                    "user": int("defaults to the token's user"),
                    "symbol": s("name or id"),
                    "client_order_id": int("the owner's id for the order (unique among its live orders)"),
                    "side": {"type": "string", "enum": ["BUY", "SELL"]},
                    "type": {"type": "string", "enum": ["LIMIT", "MARKET", "STOP_LIMIT", "STOP_MARKET"], "default": "LIMIT"},
                    "tif": {"type": "string", "enum": ["GTC", "IOC", "FOK", "GTD", "DAY"], "description": "default GTC (IOC for market types); GTD needs expire; DAY expires at the configured session end ([schedule] day_end_utc)"},
                    "price": int("limit price in ticks; for MARKET and STOP_MARKET the protection price"),
                    "qty": int("lots; required except with budget (then a cap in lots, absent: none)"),
                    "stop_price": int("trigger price of stop orders"),
                    "display_qty": int("iceberg display quantity"),
                    "post_only": {"type": "boolean"},
                    "stp": {"type": "string", "enum": ["NONE", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT"]},
                    "budget": int("market buy by quote amount: quote minimal units, taker fee included (type MARKET, side BUY, tif IOC; at least 1)"),
                    "expire": int("GTD expiry, Unix milliseconds (tif GTD only; after the engine time)")}},
                "Amend": {"type": "object", "required": ["symbol", "price", "qty"], "properties": {
                    "user": int("defaults to the token's user"), "symbol": s("name or id"),
                    "price": int("new price"), "qty": int("new open quantity (0 cancels)")}},
                "Funds": {"type": "object", "required": ["currency", "amount"], "properties": {
                    "user": int("deposits: the account to credit; withdrawals: defaults to the token's user"),
                    "currency": s("code or id"), "amount": int("minimal units of the currency")}}
            }
        },
        "paths": {
            "/health": {"get": op("process is up", false, none.clone(), None, "200")},
            "/ready": {"get": op("gateway loop running (recovery finished, pipeline up); 503 otherwise", false, none.clone(), None, "200")},
            "/metrics": {"get": op("Prometheus text exposition", false, none.clone(), None, "200")},
            "/api/openapi.json": {"get": op("this document", false, none.clone(), None, "200")},
            "/api/v1/symbols": {"get": op("symbols with their currencies' scales, tick and lot sizes, price bands, fees", false, none.clone(), None, "200")},
            "/api/v1/currencies": {"get": op("currencies with their scales", false, none.clone(), None, "200")},
            "/api/v1/orderbook/{symbol}": {"get": op("level-2 book from the market-data builder: {symbol, md_seq, seq, bids:[[price, qty, orders]], asks}", false,
                json!([path_param("symbol", "string"), query_param("depth", "integer", false)]), None, "200")},
            "/api/v1/trades/{symbol}": {"get": op("the trade tape, oldest first: [{trade_id, ts, price, qty, taker_side, md_seq}]", false,
                json!([path_param("symbol", "string"), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/klines/{symbol}": {"get": op("candles, oldest first: [{open_time, close_time, open, high, low, close, volume, quote_volume, trades}]", false,
                json!([path_param("symbol", "string"), query_param("interval", "string", false), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/ticker/24hr": {"get": op("24-hour rolling ticker of one symbol, or of every symbol (an array)", false,
                json!([query_param("symbol", "string", false)]), None, "200")},
            "/api/v1/auth/login": {"post": op("log in with a gateway account: {token, expires_at, role, id}", false, none.clone(), Some("Login"), "200")},
            "/api/v1/auth/logout": {"post": op("end every token of the caller's login issued until now, and its WebSockets: {logged_out, revoked_until_ms, sockets_closed}", true, none.clone(), None, "200")},
            "/api/v1/orders": {
                "post": op("new order: {order_id, status, filled_qty, leaves_qty, fills, seq}", true, none.clone(), Some("Order"), "201"),
                "delete": op("mass cancel (all symbols, or ?symbol=S): {cancelled, seq}", true, json!([query_param("symbol", "string", false)]), None, "200")},
            "/api/v1/orders/open": {"get": op("the user's live orders: {orders, total_open, seq}", true,
                json!([query_param("symbol", "string", false), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/orders/client/{client_order_id}": {
                "get": op("an order's status by client order id: live, or recently finished (FILLED, CANCELLED, EXPIRED, REJECTED)", true, json!([path_param("client_order_id", "integer")]), None, "200"),
                "delete": op("cancel by client order id", true, json!([path_param("client_order_id", "integer"), query_param("symbol", "string", true)]), None, "200"),
                "patch": op("amend by client order id (price and new open quantity)", true, json!([path_param("client_order_id", "integer")]), Some("Amend"), "200")},
            "/api/v1/orders/{order_id}": {
                "get": op("an order's status by engine order id: live, or recently finished; another user's is 404", true, json!([path_param("order_id", "integer")]), None, "200"),
                "delete": op("cancel by engine order id (engine CancelOrder); symbol optional", true, json!([path_param("order_id", "integer"), query_param("symbol", "string", false)]), None, "200"),
                "patch": op("amend by engine order id (engine AmendOrder): {price, qty, symbol?}", true, json!([path_param("order_id", "integer")]), Some("Amend"), "200")},
            "/api/v1/balances": {"get": op("the user's balances: {user, balances:[{currency, available, locked}], seq}", true, none.clone(), None, "200")},
            "/api/v1/withdrawals": {"post": op("request a withdrawal (locked until two operators approve): {withdrawal_id, status}", true, none.clone(), Some("Funds"), "201")},
            "/api/v1/withdrawals/pending": {"get": op("operators: withdrawals awaiting approval that the web edge saw requested since its start: {withdrawals:[{withdrawal_id, user, currency, amount, approved_by}]}", true, none.clone(), None, "200")},
            "/api/v1/withdrawals/{id}/approve": {"post": op("operator approval (two distinct operators complete it)", true, json!([path_param("id", "integer")]), None, "200")},
            "/api/v1/withdrawals/{id}/reject": {"post": op("operator rejection (unlocks the amount)", true, json!([path_param("id", "integer")]), None, "200")},
            "/api/v1/deposits": {"post": op("operator deposit", true, none.clone(), Some("Funds"), "200")},
            "/api/v1/history/orders": {"get": op("the user's orders from the PostgreSQL projection, newest first: {orders, next_cursor, projected_seq}", true,
                json!([query_param("symbol", "string", false), query_param("from", "integer", false), query_param("to", "integer", false), query_param("cursor", "string", false), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/history/trades": {"get": op("the user's trades from the projection, newest first: {trades, next_cursor, projected_seq}", true,
                json!([query_param("symbol", "string", false), query_param("from", "integer", false), query_param("to", "integer", false), query_param("cursor", "string", false), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/history/ledger": {"get": op("the user's ledger statement (signed legs) from the projection, newest first: {entries, next_cursor, projected_seq}", true,
                json!([query_param("currency", "string", false), query_param("from", "integer", false), query_param("to", "integer", false), query_param("cursor", "string", false), query_param("limit", "integer", false)]), None, "200")},
            "/api/v1/history/klines/{symbol}": {"get": op("stored candles from the projection, oldest first: {klines, next_from, projected_seq}", false,
                json!([path_param("symbol", "string"), query_param("interval", "string", false), query_param("from", "integer", false), query_param("to", "integer", false), query_param("limit", "integer", false)]), None, "200")},
            "/deposit": {"post": op("CSV: userId,currencyId,amount (operator)", true, none.clone(), Some("csv"), "200")},
            "/order": {"post": op("CSV: userId,symbolId,price,qty,side (1 buy, 2 sell); a GTC limit order", true, none.clone(), Some("csv"), "200")},
            "/cancel": {"post": op("CSV: userId,orderId,symbolId (the engine order id of one of the user's live orders)", true, none.clone(), Some("csv"), "200")},
            "/orderbook": {"get": op("CSV book: side,price,qty", true, json!([query_param("symbolId", "integer", true)]), None, "200")},
            "/ws": {"get": op("WebSocket: {op:auth,token}, {op:subscribe,channel:orders|fills|balances}, {op:subscribe,channel:depth|trades|kline:1m|ticker,symbol}, {op:ping}", false, none, None, "101")}
        }
    })
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described() {
        let d = super::document();
        let paths = d["paths"].as_object().unwrap();
        for p in [
            "/api/v1/orders",
            "/api/v1/orderbook/{symbol}",
            "/deposit",
            "/ws",
            "/metrics",
            "/api/v1/withdrawals/{id}/approve",
            "/api/v1/withdrawals/pending",
            "/api/v1/orders/client/{client_order_id}",
            "/api/v1/orders/{order_id}",
            "/api/v1/trades/{symbol}",
            "/api/v1/klines/{symbol}",
            "/api/v1/ticker/24hr",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        assert_eq!(d["openapi"], "3.0.3");
    }
}
