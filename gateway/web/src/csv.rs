//! The seed's CSV endpoints, for compatibility: `POST /deposit` (`userId,currencyId,amount`),
//! `POST /order` (`userId,symbolId,price,qty,side`, side 1 = buy, 2 = sell), `POST /cancel`
//! (`userId,orderId,symbolId`), `GET /orderbook?symbolId=N`.
//!
//! They are authenticated like the rest (bearer token) and go through the same sequenced path
//! and the same authorization: a user acts only for itself, deposits need an operator. Bodies
//! are one CSV data line (a header line of names may come first; a second data line refuses the
//! body whole); replies are CSV with a header line; errors are the usual JSON error.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ringbook_engine::{
    ClientOrderId, Command, CurrencyId, Event, NewOrder, Price, Qty, RejectCode, Side, SymbolId,
    UserId,
};

use crate::api::{book, next_csv_coid, order_reply, Authed, Shared};
use crate::error::ApiError;
use crate::json as j;

/// The numeric fields of the body's one data line, after an optional header line. A header
/// line names its fields (each starts with a letter); any other line is the data line, so a
/// malformed value is reported as that, never mistaken for a header. A body of more than one
/// data line is refused whole: each request carries one command, and a line the endpoint
/// would not act on must not be answered with 200.
fn fields<const N: usize>(b: &Bytes, names: &str) -> Result<[u64; N], ApiError> {
    let text = std::str::from_utf8(b).map_err(|_| ApiError::bad("body is not UTF-8"))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines
        .next()
        .ok_or_else(|| ApiError::bad(format!("empty body: expected {names}")))?;
    let header = |l: &str| {
        l.split(',')
            .all(|f| f.trim().starts_with(|c: char| c.is_ascii_alphabetic()))
    };
    if header(line) {
        line = lines
            .next()
            .ok_or_else(|| ApiError::bad(format!("no data line: expected {names}")))?;
    }
    if lines.next().is_some() {
        return Err(ApiError::bad(format!(
            "more than one data line: a request carries one {names} line"
        )));
    }
    let parts: Vec<&str> = line.split(',').map(str::trim).collect();
    if parts.len() != N {
        return Err(ApiError::bad(format!(
            "expected {N} fields ({names}), got {}",
            parts.len()
        )));
    }
    let mut out = [0u64; N];
    for (i, p) in parts.iter().enumerate() {
        out[i] = p.parse().map_err(|_| {
            ApiError::bad(format!(
                "field {} {p:?} is not a whole number from 0 to {} ({names})",
                i + 1,
                u64::MAX
            ))
        })?;
    }
    Ok(out)
}

fn csv(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
}

fn id16(v: u64, what: &str, code: RejectCode) -> Result<u16, ApiError> {
    u16::try_from(v).map_err(|_| ApiError::reject(code, format!("{what} {v} does not exist")))
}

fn id32(v: u64, what: &str) -> Result<u32, ApiError> {
    u32::try_from(v).map_err(|_| {
        ApiError::reject(
            RejectCode::UnknownUser,
            format!("{what} {v} does not exist"),
        )
    })
}

pub(crate) async fn deposit(
    State(st): State<Shared>,
    a: Authed,
    b: Bytes,
) -> Result<Response, ApiError> {
    let [user, currency, amount] = fields::<3>(&b, "userId,currencyId,amount")?;
    let currency = id16(currency, "currency", RejectCode::UnknownCurrency)?;
    let cmd = Command::Deposit {
        user: UserId(id32(user, "user")?),
        currency: CurrencyId(currency),
        amount,
    };
    let (events, _) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let (avail, locked) = events
        .iter()
        .find_map(|e| match *e {
            Event::BalanceUpdate {
                available, locked, ..
            } => Some((available, locked)),
            _ => None,
        })
        .unwrap_or((0, 0));
    Ok(csv(format!(
        "userId,currencyId,amount,available,locked\n{user},{currency},{amount},{avail},{locked}\n"
    )))
}

pub(crate) async fn order(
    State(st): State<Shared>,
    a: Authed,
    b: Bytes,
) -> Result<Response, ApiError> {
    let [user, symbol, price, qty, side] = fields::<5>(&b, "userId,symbolId,price,qty,side")?;
    let side = match side {
        1 => Side::Buy,
        2 => Side::Sell,
        s => {
            return Err(ApiError::bad(format!(
                "side {s}: expected 1 (buy) or 2 (sell)"
            )))
        }
    };
    let symbol = id16(symbol, "symbol", RejectCode::UnknownSymbol)?;
    let price = i64::try_from(price)
        .map_err(|_| ApiError::reject(RejectCode::PriceOutOfBand, "price out of range"))?;
    let user = id32(user, "user")?;
    let coid = next_csv_coid(&st);
    let o = NewOrder::limit(
        UserId(user),
        SymbolId(symbol),
        ClientOrderId(coid),
        side,
        Price(price),
        Qty(qty),
    );
    let (events, seq) = st.edge.command(a.1, Command::NewOrder(o)).await?;
    let v = order_reply(&st, &o, &events, seq)?;
    let order_id = v["order_id"].as_u64().unwrap_or(0);
    Ok(csv(format!(
        "orderId,status,filledQty,leavesQty\n{order_id},{},{},{}\n",
        v["status"].as_str().unwrap_or(""),
        v["filled_qty"],
        v["leaves_qty"]
    )))
}

pub(crate) async fn cancel(
    State(st): State<Shared>,
    a: Authed,
    b: Bytes,
) -> Result<Response, ApiError> {
    let [user, order_id, symbol] = fields::<3>(&b, "userId,orderId,symbolId")?;
    let user = id32(user, "user")?;
    let symbol = id16(symbol, "symbol", RejectCode::UnknownSymbol)?;
    // By the engine's order id, as `/order` returned it: any live order of this user on this
    // symbol, however it was placed and whether or not this server has restarted since (the
    // engine refuses another user's live order, NOT_YOUR_ORDER, and an id that names no live
    // order of this symbol, UNKNOWN_ORDER — as for REST's DELETE).
    let cmd = Command::CancelOrder {
        user: UserId(user),
        symbol: SymbolId(symbol),
        order_id: ringbook_engine::OrderId(order_id),
    };
    let (events, _) = st.edge.command(a.1, cmd).await?;
    j::first_reject(&events)?;
    let qty = events
        .iter()
        .find_map(|e| match *e {
            Event::Cancelled { qty, .. } => Some(qty.0),
            _ => None,
        })
        .unwrap_or(0);
    Ok(csv(format!(
        "orderId,status,cancelledQty\n{order_id},CANCELLED,{qty}\n"
    )))
}

pub(crate) async fn orderbook(
    State(st): State<Shared>,
    _a: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let sid = q
        .get("symbolId")
        .ok_or_else(|| ApiError::bad("query parameter symbolId is required"))?;
    let sid = j::symbol(&st.edge.config, &j::Named::Name(sid.clone()))?;
    let (bids, asks, _) = book(&st, sid, crate::api::BOOK_DEPTH_MAX).await?;
    let mut out = String::from("side,price,qty\n");
    for (p, q) in &bids {
        out.push_str(&format!("1,{p},{q}\n"));
    }
    for (p, q) in &asks {
        out.push_str(&format!("2,{p},{q}\n"));
    }
    Ok(csv(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<[u64; 3], String> {
        fields::<3>(&Bytes::from(body.to_string()), "userId,currencyId,amount")
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn one_data_line_with_or_without_a_header() {
        assert_eq!(parse("1,0,7"), Ok([1, 0, 7]));
        assert_eq!(parse(" 1, 0 ,7 \n\n"), Ok([1, 0, 7]));
        assert_eq!(
            parse("userId,currencyId,amount\n2,2,100000"),
            Ok([2, 2, 100_000])
        );
    }

    #[test]
    fn a_second_data_line_refuses_the_whole_body() {
        for body in [
            "1,0,7\n2,0,7",
            "userId,currencyId,amount\n1,0,7\n2,0,7",
            "1,0,7\nx",
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains("more than one data line"), "{body:?}: {e}");
        }
    }

    #[test]
    fn a_bad_value_is_named_not_taken_for_a_header() {
        for (body, field) in [
            ("1,0,-5", "field 3 \\\"-5\\\""),
            ("1,0,18446744073709551616", "field 3"),
            ("1,x,5", "field 2"),
            ("1,0,1.5", "field 3"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(field), "{body:?}: {e}");
        }
        // A line of names only is a header, and then the data line is missing.
        assert!(parse("a,b,c").unwrap_err().contains("no data line"));
        assert!(parse("").unwrap_err().contains("empty body"));
        assert!(parse("1,0").unwrap_err().contains("expected 3 fields"));
    }
}
