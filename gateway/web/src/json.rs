//! JSON shapes of engine events and views (the scenario runner's field names), and parsing of
//! names and ids in requests.

use ringbook_engine::book::OrderView;
use ringbook_engine::{
    Config, CurrencyId, Event, OrderType, RejectCode, Side, StpMode, SymbolId, TimeInForce, Trade,
    Vocab,
};
use ringbook_engine::{FinishedOrder, OrderStatus, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

/// A symbol or currency given by name or by id.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Named {
    /// By id.
    Id(u64),
    /// By name.
    Name(String),
}

/// The symbol a request names (by name or id): `UNKNOWN_SYMBOL` if none.
pub fn symbol(config: &Config, n: &Named) -> Result<SymbolId, ApiError> {
    let id = match n {
        Named::Id(i) => u16::try_from(*i)
            .ok()
            .filter(|i| (*i as usize) < config.symbols.len())
            .map(SymbolId),
        Named::Name(s) => config.symbol_id(s).or_else(|| {
            s.parse::<u16>()
                .ok()
                .filter(|i| (*i as usize) < config.symbols.len())
                .map(SymbolId)
        }),
    };
    id.ok_or_else(|| {
        ApiError::reject(
            RejectCode::UnknownSymbol,
            format!("unknown symbol {}", named_str(n)),
        )
    })
}

/// The currency a request names: `UNKNOWN_CURRENCY` if none.
pub fn currency(config: &Config, n: &Named) -> Result<CurrencyId, ApiError> {
    let id = match n {
        Named::Id(i) => u16::try_from(*i)
            .ok()
            .filter(|i| (*i as usize) < config.currencies.len())
            .map(CurrencyId),
        Named::Name(s) => config.currency_id(s).or_else(|| {
            s.parse::<u16>()
                .ok()
                .filter(|i| (*i as usize) < config.currencies.len())
                .map(CurrencyId)
        }),
    };
    id.ok_or_else(|| {
        ApiError::reject(
            RejectCode::UnknownCurrency,
            format!("unknown currency {}", named_str(n)),
        )
    })
}

fn named_str(n: &Named) -> String {
    match n {
        Named::Id(i) => i.to_string(),
        Named::Name(s) => format!("{s:?}"),
    }
}

/// The symbol's name (or its id as text).
pub fn sym(config: &Config, id: SymbolId) -> String {
    config
        .symbol(id)
        .map_or_else(|| id.0.to_string(), |s| s.name.clone())
}

/// The currency's code (or its id as text).
pub fn cur(config: &Config, id: CurrencyId) -> String {
    config
        .currencies
        .get(id.0 as usize)
        .map_or_else(|| id.0.to_string(), |c| c.code.clone())
}

/// The value of a vocabulary enum named `s` (its engine name, e.g. `GTC`), or a bad request
/// that lists the names in the engine's one table ([`Vocab::ALL`]).
fn parse_name<T: Vocab>(what: &str, s: &str, also_lowercase: bool) -> Result<T, ApiError> {
    let lower = also_lowercase && s.bytes().all(|b| b.is_ascii_lowercase());
    if let Some(v) = T::ALL
        .iter()
        .copied()
        .find(|v| v.name() == s || (lower && v.name().eq_ignore_ascii_case(s)))
    {
        return Ok(v);
    }
    let mut expected = String::new();
    for (i, v) in T::ALL.iter().enumerate() {
        if i > 0 {
            expected.push_str(if i + 1 == T::ALL.len() { " or " } else { ", " });
        }
        expected.push_str(v.name());
    }
    Err(ApiError::bad(format!("{what} {s:?}: expected {expected}")))
}

/// `BUY` / `SELL` (or `buy` / `sell`).
pub fn parse_side(s: &str) -> Result<Side, ApiError> {
    parse_name("side", s, true)
}

/// `LIMIT` / `MARKET` / `STOP_LIMIT` / `STOP_MARKET`.
pub fn parse_type(s: &str) -> Result<OrderType, ApiError> {
    parse_name("type", s, false)
}

/// `GTC` / `IOC` / `FOK` / `GTD` / `DAY`.
pub fn parse_tif(s: &str) -> Result<TimeInForce, ApiError> {
    parse_name("tif", s, false)
}

/// Self-trade prevention mode names.
pub fn parse_stp(s: &str) -> Result<StpMode, ApiError> {
    parse_name("stp", s, false)
}

/// A reject's message.
pub fn reject_text(code: RejectCode) -> String {
    format!("rejected by the engine or gateway: {}", code.name())
}

/// An order as it stands.
/// A finished order the engine still knows (its per-user window, docs/matching.md "Order
/// status"): status with its cancel reason or reject code, and the filled quantity and notional
/// (quote minimal units), from which the average price follows exactly.
pub fn finished_order(config: &Config, user: UserId, f: &FinishedOrder) -> Value {
    let (reason, code) = match f.status {
        OrderStatus::Cancelled(r) => (Some(r.name()), None),
        // Its own status, with the reason the docs promise (it was null: a docs review finding).
        OrderStatus::Expired => (Some(ringbook_engine::CancelReason::Expired.name()), None),
        OrderStatus::Rejected(c) => (Some(c.name()), Some(c.code())),
        _ => (None, None),
    };
    json!({
        "order_id": f.order_id.0,
        "user": user.0,
        "client_order_id": f.client_order_id.0,
        "symbol": sym(config, f.symbol),
        "side": f.side.name(),
        "type": f.order_type.name(),
        "price": f.price.0,
        "leaves_qty": 0,
        "filled_qty": f.filled_qty.0,
        "filled_notional": f.filled_notional,
        "status": f.status.name(),
        "reason": reason,
        "code": code,
        "finished_ts": f.ts,
    })
}

pub fn order_view(config: &Config, v: &OrderView) -> Value {
    json!({
        "order_id": v.order_id.0,
        "user": v.user.0,
        "client_order_id": v.client_order_id.0,
        "symbol": sym(config, v.symbol),
        "side": v.side.name(),
        "type": v.order_type.name(),
        "tif": v.tif.name(),
        "price": v.price.0,
        "stop_price": v.stop_price.0,
        "qty": v.leaves_qty.0 + v.filled_qty.0,
        "leaves_qty": v.leaves_qty.0,
        "visible_qty": v.visible_qty.0,
        "filled_qty": v.filled_qty.0,
        "display_qty": v.display_qty.0,
        "post_only": v.post_only,
        "stp": v.stp.name(),
        // GTD and DAY: when it expires, Unix ms (as `expire` is given); null otherwise.
        "expire": (v.expire_at != 0).then_some(v.expire_at / 1_000_000),
        "status": if v.filled_qty.0 > 0 { "PARTIALLY_FILLED" } else { "NEW" },
    })
}

/// A trade, as the scenario runner prints it.
pub fn trade(config: &Config, t: &Trade) -> Value {
    json!({
        "symbol": sym(config, t.symbol),
        "trade_id": t.trade_id.0,
        "ts": t.ts,
        "price": t.price.0,
        "qty": t.qty.0,
        "taker_side": t.taker_side.name(),
        "maker_user": t.maker.user.0,
        "maker_client_order_id": t.maker.client_order_id.0,
        "maker_order_id": t.maker.order_id.0,
        "taker_user": t.taker.user.0,
        "taker_client_order_id": t.taker.client_order_id.0,
        "taker_order_id": t.taker.order_id.0,
        "maker_fee": t.maker.fee,
        "taker_fee": t.taker.fee,
    })
}

/// One side's fill of a trade (for that side's owner).
pub fn fill(config: &Config, t: &Trade, maker: bool) -> Value {
    let (f, side) = if maker {
        (&t.maker, t.taker_side.opposite())
    } else {
        (&t.taker, t.taker_side)
    };
    json!({
        "symbol": sym(config, t.symbol),
        "user": f.user.0,
        "order_id": f.order_id.0,
        "client_order_id": f.client_order_id.0,
        "side": side.name(),
        "role": if maker { "MAKER" } else { "TAKER" },
        "price": t.price.0,
        "qty": t.qty.0,
        "fee": f.fee,
        "leaves_qty": f.leaves_qty.0,
        "cum_qty": f.cum_qty.0,
        "trade_id": t.trade_id.0,
        "ts": t.ts,
    })
}

/// A fill as a WebSocket message on the `fills` channel.
pub fn ws_fill(config: &Config, t: &Trade, maker: bool) -> String {
    json!({"channel": "fills", "data": fill(config, t, maker)}).to_string()
}

/// The owner and private channel of a user-facing event (trades are handled per side).
pub fn private_target(e: &Event) -> Option<(u32, &'static str)> {
    Some(match *e {
        Event::Accepted { user, .. }
        | Event::Cancelled { user, .. }
        | Event::Amended { user, .. }
        | Event::Triggered { user, .. }
        | Event::MassCancelled { user, .. } => (user.0, "orders"),
        Event::Deposited { user, .. }
        | Event::WithdrawalRequested { user, .. }
        | Event::WithdrawalApproved { user, .. }
        | Event::WithdrawalCompleted { user, .. }
        | Event::WithdrawalRejected { user, .. }
        | Event::BalanceUpdate { user, .. } => (user.0, "balances"),
        _ => return None,
    })
}

/// A user-facing event as a WebSocket message.
pub fn ws_private(config: &Config, e: &Event, channel: &str) -> String {
    json!({"channel": channel, "data": event(config, e)}).to_string()
}

/// Any event, with an `event` name and the scenario runner's field names.
pub fn event(config: &Config, e: &Event) -> Value {
    match *e {
        Event::Accepted {
            user,
            symbol,
            client_order_id,
            order_id,
            side,
            order_type,
            price,
            qty,
            display_qty,
        } => json!({"event": "accepted", "user": user.0, "symbol": sym(config, symbol),
            "client_order_id": client_order_id.0, "order_id": order_id.0, "side": side.name(),
            "type": order_type.name(), "price": price.0, "qty": qty.0,
            "display_qty": display_qty.0}),
        Event::Rejected {
            user,
            client_order_id,
            code,
        } => json!({"event": "rejected", "user": user.0, "client_order_id": client_order_id.0,
            "code": code.code(), "reason": code.name()}),
        Event::Trade(t) => {
            let mut v = trade(config, &t);
            v["event"] = json!("trade");
            v
        }
        Event::Cancelled {
            user,
            symbol,
            client_order_id,
            order_id,
            side,
            price,
            qty,
            leaves_qty,
            reason,
        } => json!({"event": "cancelled", "user": user.0, "symbol": sym(config, symbol),
            "client_order_id": client_order_id.0, "order_id": order_id.0, "side": side.name(),
            "price": price.0, "qty": qty.0, "leaves_qty": leaves_qty.0, "reason": reason.name()}),
        Event::Amended {
            user,
            symbol,
            client_order_id,
            order_id,
            price,
            qty,
            ..
        } => json!({"event": "amended", "user": user.0, "symbol": sym(config, symbol),
            "client_order_id": client_order_id.0, "order_id": order_id.0, "price": price.0,
            "qty": qty.0}),
        Event::Triggered {
            user,
            symbol,
            client_order_id,
            order_id,
        } => json!({"event": "triggered", "user": user.0, "symbol": sym(config, symbol),
            "client_order_id": client_order_id.0, "order_id": order_id.0}),
        Event::MassCancelled {
            user,
            symbol,
            count,
        } => json!({"event": "mass_cancelled", "user": user.0,
            "symbol": symbol.map(|s| sym(config, s)), "count": count}),
        Event::Deposited {
            user,
            currency,
            amount,
        } => json!({"event": "deposited", "user": user.0, "currency": cur(config, currency),
            "amount": amount}),
        Event::WithdrawalRequested {
            withdrawal_id,
            user,
            currency,
            amount,
        } => json!({"event": "withdrawal_requested", "withdrawal_id": withdrawal_id.0,
            "user": user.0, "currency": cur(config, currency), "amount": amount}),
        Event::WithdrawalApproved {
            withdrawal_id,
            operator,
            user,
            approvals,
        } => json!({"event": "withdrawal_approved", "withdrawal_id": withdrawal_id.0,
            "operator": operator.0, "user": user.0, "approvals": approvals}),
        Event::WithdrawalCompleted {
            withdrawal_id,
            user,
            currency,
            amount,
        } => json!({"event": "withdrawal_completed", "withdrawal_id": withdrawal_id.0,
            "user": user.0, "currency": cur(config, currency), "amount": amount}),
        Event::WithdrawalRejected {
            withdrawal_id,
            operator,
            user,
        } => json!({"event": "withdrawal_rejected", "withdrawal_id": withdrawal_id.0,
            "operator": operator.0, "user": user.0}),
        Event::OperatorRejected {
            operator,
            withdrawal_id,
            code,
        } => json!({"event": "operator_rejected", "operator": operator.0,
            "withdrawal_id": withdrawal_id.0, "code": code.code(), "reason": code.name()}),
        Event::BalanceUpdate {
            user,
            currency,
            available,
            locked,
        } => json!({"event": "balance", "user": user.0, "currency": cur(config, currency),
            "available": available, "locked": locked}),
        Event::OrderStatus {
            user,
            order,
            finished,
            ..
        } => json!({"event": "order_status",
            "order": order.map(|v| order_view(config, &v))
                .or_else(|| finished.map(|f| finished_order(config, user, &f)))}),
        Event::OpenOrder(v) => order_view(config, &v),
        Event::OpenOrdersEnd { user, count } => {
            json!({"event": "open_orders_end", "user": user.0, "count": count})
        }
        Event::Balance {
            user,
            currency,
            available,
            locked,
        } => json!({"event": "balance", "user": user.0, "currency": cur(config, currency),
            "available": available, "locked": locked}),
        Event::BalancesEnd { user, count } => {
            json!({"event": "balances_end", "user": user.0, "count": count})
        }
        Event::BookLevel {
            symbol,
            side,
            price,
            qty,
        } => json!({"event": "book_level", "symbol": sym(config, symbol), "side": side.name(),
            "price": price.0, "qty": qty.0}),
        Event::BookEnd {
            symbol,
            bid_levels,
            ask_levels,
        } => json!({"event": "book_end", "symbol": sym(config, symbol),
            "bid_levels": bid_levels, "ask_levels": ask_levels}),
    }
}

/// The first engine reject among a command's events, as an error.
pub fn first_reject(events: &[Event]) -> Result<(), ApiError> {
    for e in events {
        match *e {
            Event::Rejected { code, .. } | Event::OperatorRejected { code, .. } => {
                return Err(ApiError::reject(code, reject_text(code)))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_resolve_and_unknowns_are_the_engine_codes() {
        let c = Config::default();
        assert_eq!(
            symbol(&c, &Named::Name("ETH-KRW".into())).unwrap(),
            SymbolId(1)
        );
        assert_eq!(symbol(&c, &Named::Id(2)).unwrap(), SymbolId(2));
        assert_eq!(symbol(&c, &Named::Name("0".into())).unwrap(), SymbolId(0));
        let e = symbol(&c, &Named::Name("DOGE-KRW".into())).unwrap_err();
        assert_eq!((e.code, e.reason), (3001, "UNKNOWN_SYMBOL"));
        assert_eq!(symbol(&c, &Named::Id(99)).unwrap_err().code, 3001);
        assert_eq!(
            currency(&c, &Named::Name("BTC".into())).unwrap(),
            CurrencyId(2)
        );
        assert_eq!(
            currency(&c, &Named::Name("XYZ".into())).unwrap_err().code,
            2004
        );
        assert_eq!(parse_tif("GTD").unwrap(), TimeInForce::Gtd);
        assert_eq!(parse_tif("DAY").unwrap(), TimeInForce::Day);
        assert_eq!(parse_tif("GTT").unwrap_err().reason, "BAD_REQUEST");
        assert_eq!(parse_side("UP").unwrap_err().reason, "BAD_REQUEST");
        assert_eq!(parse_stp("DECREMENT").unwrap(), StpMode::Decrement);
        assert_eq!(parse_side("sell").unwrap(), Side::Sell);
        assert_eq!(
            parse_side("Sell").unwrap_err().message,
            "side \"Sell\": expected BUY or SELL"
        );
        assert_eq!(
            parse_stp("X").unwrap_err().message,
            "stp \"X\": expected NONE, CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH or DECREMENT"
        );
        assert_eq!(
            parse_type("limit").unwrap_err().message,
            "type \"limit\": expected LIMIT, MARKET, STOP_LIMIT or STOP_MARKET"
        );
    }
}
