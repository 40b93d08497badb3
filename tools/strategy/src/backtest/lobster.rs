//! LOBSTER message files as the market's flow (see tools/data/lobster/README.md for the
//! format, and `ringbook lobster` for the exact replay that checks the book line by line).
//!
//! The starting book is the orderbook file's first line with message 1's effect undone, one
//! order per level (user 2). Then, message by message, at its time:
//! - type 1: a GTC limit order of user 1 (client order id = LOBSTER id);
//! - type 2: an amend of the order down by the size (keeps its priority);
//! - type 3: a cancel;
//! - type 4: what caused the execution — an IOC limit of user 3 on the other side at the
//!   message's price for its size. If the strategy's order is ahead in the queue, *it* fills,
//!   and the recorded order stays (the strategy's impact on the book persists);
//! - types 5 (hidden executions) and 7 (halts): counted, no effect.
//!
//! LOBSTER ids are unique while live but not increasing, so the engine runs with the
//! `unique_live` client-order-id rule here (docs/matching.md, "Client order ids").
//!
//! Ids never added (starting liquidity) act on the oldest starting order at their price and
//! side. A message naming an order that is no longer there — because the strategy took its
//! liquidity, or because it lived beyond the ten levels the file shows — is skipped and
//! counted (`flow_skipped`). Unlike `ringbook lobster`, levels coming into view from beyond
//! the tenth are not reconstructed: only the flow is replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ringbook_engine::prelude::*;

use super::report::FlowStats;
use super::Sim;

const BOOK: UserId = UserId(1);
const START: UserId = UserId(2);
const TAKER: UserId = UserId(3);

/// One message.
#[derive(Clone, Copy, Debug)]
struct Msg {
    ts: u64,
    kind: u8,
    id: u64,
    size: u64,
    price: i64,
    side: Side,
}

/// Seconds after midnight (`34200.004241176`) to ms, without floats.
fn millis(text: &str) -> Option<u64> {
    let (s, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u64 = s.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for (i, c) in frac.chars().chain("000".chars()).take(3).enumerate() {
        ms += (c as u64 - '0' as u64) * [100, 10, 1][i];
    }
    // Checked: a time past u64's milliseconds wrapped round to a small one (a red-team
    // finding); it is a malformed time.
    secs.checked_mul(1_000)?.checked_add(ms)
}

fn parse(path: &Path) -> Result<Vec<Msg>, String> {
    let text = crate::files::read_regular(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: &str| format!("{}:{}: {m}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(at(
                "expected 6 fields (time,type,order_id,size,price,direction)",
            ));
        }
        let ts = millis(f[0]).ok_or_else(|| at("bad time"))?;
        let kind: u8 = f[1].parse().map_err(|_| at("bad type"))?;
        let id: u64 = f[2].parse().map_err(|_| at("bad order id"))?;
        let size: u64 = f[3].parse().map_err(|_| at("bad size"))?;
        let raw: i64 = f[4].parse().map_err(|_| at("bad price"))?;
        let side = match f[5] {
            "1" => Side::Buy,
            "-1" => Side::Sell,
            _ if kind == 7 => Side::Buy,
            d => return Err(at(&format!("direction {d} must be 1 or -1"))),
        };
        if !matches!(kind, 1..=5 | 7) {
            return Err(at(&format!("unknown message type {kind}")));
        }
        if (1..=4).contains(&kind) && raw % 100 != 0 {
            return Err(at(&format!("price {raw} is not a whole number of cents")));
        }
        if out.last().is_some_and(|m: &Msg| m.ts > ts) {
            return Err(at("time goes backwards"));
        }
        out.push(Msg {
            ts,
            kind,
            id,
            size,
            price: raw / 100,
            side,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no messages", path.display()));
    }
    Ok(out)
}

/// The orderbook file beside a message file.
fn orderbook_path(p: &Path) -> Result<PathBuf, String> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ob = name.replacen("_message_", "_orderbook_", 1);
    let q = p.with_file_name(ob);
    if !q.exists() {
        return Err(format!(
            "{}: its orderbook file {} is missing",
            p.display(),
            q.display()
        ));
    }
    Ok(q)
}

/// The first orderbook line: `(side, price in cents, size)` per level.
fn first_book(path: &Path) -> Result<Vec<(Side, i64, u64)>, String> {
    let text = crate::files::read_regular(path)?;
    let line = text
        .lines()
        .next()
        .ok_or_else(|| format!("{}: empty", path.display()))?;
    let f: Vec<i64> = line
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<i64>()
                .map_err(|_| format!("{}:1: bad number {x:?}", path.display()))
        })
        .collect::<Result<_, _>>()?;
    if !f.len().is_multiple_of(4) {
        return Err(format!(
            "{}:1: fields are not a multiple of 4",
            path.display()
        ));
    }
    let mut out = Vec::new();
    for l in f.chunks(4) {
        for (side, p, q) in [(Side::Sell, l[0], l[1]), (Side::Buy, l[2], l[3])] {
            if q > 0 && p.abs() != 9_999_999_999 {
                if p % 100 != 0 {
                    return Err(format!(
                        "{}:1: price {p} is not whole cents",
                        path.display()
                    ));
                }
                out.push((side, p / 100, q as u64));
            }
        }
    }
    Ok(out)
}

/// The first and last message times (ms).
pub fn time_span(path: &Path) -> Result<(u64, u64), String> {
    let m = parse(path)?;
    Ok((m[0].ts, m[m.len() - 1].ts))
}

/// Replays the file through the simulation.
pub fn replay(sim: &mut Sim, path: &Path) -> Result<FlowStats, String> {
    let msgs = parse(path)?;
    let mut book = first_book(&orderbook_path(path)?)?;
    // Undo message 1 to get the book before it.
    let m1 = msgs[0];
    let undo: i64 = match m1.kind {
        1 => -(m1.size as i64),
        2..=4 => m1.size as i64,
        _ => 0,
    };
    if undo != 0 {
        match book
            .iter_mut()
            .find(|(s, p, _)| *s == m1.side && *p == m1.price)
        {
            Some(l) => l.2 = (l.2 as i64 + undo).max(0) as u64,
            None if undo > 0 => book.push((m1.side, m1.price, undo as u64)),
            None => {
                return Err(
                    "message 1 adds to a level the first orderbook line does not show".into(),
                )
            }
        }
    }
    let symbol = sim.symbol();
    let mut stats = FlowStats::default();
    let mut starts: BTreeMap<(u8, i64), Vec<u64>> = BTreeMap::new();
    let t0 = msgs[0].ts;
    for (coid, (side, price, qty)) in (1u64..).zip(book.into_iter().filter(|l| l.2 > 0)) {
        sim.flow(
            t0,
            &Command::NewOrder(NewOrder::limit(
                START,
                symbol,
                ClientOrderId(coid),
                side,
                Price(price),
                Qty(qty),
            )),
        );
        starts.entry((side as u8, price)).or_default().push(coid);
        stats.commands += 1;
    }
    let mut seen = BTreeSet::new();
    let mut next_taker = 1;
    for m in &msgs {
        stats.messages += 1;
        // The order a type 2/3/4 names: a book order, or the oldest live starting order.
        let target = |sim: &Sim| -> Option<(UserId, ClientOrderId, u64)> {
            if seen.contains(&m.id) {
                return sim
                    .engine
                    .order(BOOK, ClientOrderId(m.id))
                    .map(|o| (BOOK, ClientOrderId(m.id), o.leaves_qty.0));
            }
            starts.get(&(m.side as u8, m.price))?.iter().find_map(|&c| {
                sim.engine
                    .order(START, ClientOrderId(c))
                    .map(|o| (START, ClientOrderId(c), o.leaves_qty.0))
            })
        };
        let cmd = match m.kind {
            1 => {
                seen.insert(m.id);
                Some(Command::NewOrder(NewOrder::limit(
                    BOOK,
                    symbol,
                    ClientOrderId(m.id),
                    m.side,
                    Price(m.price),
                    Qty(m.size),
                )))
            }
            2 | 3 => match target(sim) {
                Some((user, coid, leaves)) if m.kind == 3 && user == BOOK => {
                    let _ = leaves;
                    Some(Command::Cancel {
                        user,
                        symbol,
                        client_order_id: coid,
                    })
                }
                Some((user, coid, leaves)) => Some(Command::Amend {
                    user,
                    symbol,
                    client_order_id: coid,
                    price: Price(m.price),
                    qty: Qty(leaves.saturating_sub(m.size)),
                }),
                None => None,
            },
            4 => {
                let coid = ClientOrderId(next_taker);
                next_taker += 1;
                let mut o = NewOrder::limit(
                    TAKER,
                    symbol,
                    coid,
                    m.side.opposite(),
                    Price(m.price),
                    Qty(m.size),
                );
                o.tif = TimeInForce::Ioc;
                Some(Command::NewOrder(o))
            }
            5 => {
                stats.hidden += 1;
                None
            }
            _ => None,
        };
        match cmd {
            Some(c) => {
                let events = sim.flow(m.ts, &c);
                stats.commands += 1;
                if events.iter().any(|e| matches!(e, Event::Rejected { .. })) {
                    stats.skipped += 1;
                }
            }
            None if matches!(m.kind, 2 | 3) => {
                sim.advance(m.ts);
                stats.skipped += 1;
            }
            None => sim.advance(m.ts),
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lobster_times_in_ms_without_floats() {
        assert_eq!(millis("34200.004241176"), Some(34_200_004));
        assert_eq!(millis("34249.1"), Some(34_249_100));
        assert_eq!(millis("5"), Some(5_000));
        assert_eq!(millis("5.x"), None);
        // Past u64 milliseconds: malformed, not wrapped round to 384 ms.
        assert_eq!(millis("18446744073709552.0"), None);
        assert_eq!(millis("18446744073709551.615"), Some(u64::MAX));
    }
}
