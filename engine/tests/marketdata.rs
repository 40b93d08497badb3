//! The market-data builder against the engine and against independent references.
//!
//! Mixed command streams (the shared generator: every order type and instruction, STP modes,
//! stops and cascades, icebergs, amends by client and engine id, mass cancels, rejects,
//! deposits, withdrawals, queries) run through the engine with risk on and off; the builder
//! consumes the events. After every command:
//! - a subscriber that took the snapshot at the start and applied every update, and one that
//!   joined mid-stream from a snapshot, both hold exactly the engine's visible book (per level:
//!   visible quantity and the number of resting orders), as does the builder's own depth, L1
//!   included, and that of a builder seeded mid-stream from the engine's state
//!   (`MarketData::from_engine`) and fed the events after it;
//! - every update's `md_seq` is the previous + 1 and its trades carry it.
//!
//! At the end the tape, every interval's candles and the 24h ticker equal references computed
//! here from the engine's trade list with plain arithmetic; the time stamps jump by
//! microseconds to hours (sometimes backwards), so candles and the window roll.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringbook_engine::book::BookSection;
use ringbook_engine::marketdata::{
    Candle, DepthUpdate, Interval, L2Book, LevelChange, MarketData, MdMessage, MdTrade,
};
use ringbook_engine::prelude::*;

type Levels = Vec<(Price, Qty, u32)>;

/// The engine's visible book of one side, best first, from its live orders.
fn engine_side(engine: &Engine, symbol: SymbolId, side: Side) -> Levels {
    let mut by_price: BTreeMap<i64, (u64, u32)> = BTreeMap::new();
    let want = match side {
        Side::Buy => BookSection::Bids,
        Side::Sell => BookSection::Asks,
    };
    engine.for_each_order(symbol, |section, o| {
        if section == want {
            let e = by_price.entry(o.price.0).or_default();
            e.0 += o.visible_qty.0;
            e.1 += 1;
        }
    });
    let mut v: Levels = by_price
        .into_iter()
        .map(|(p, (q, n))| (Price(p), Qty(q), n))
        .collect();
    if side == Side::Buy {
        v.reverse();
    }
    // The engine's own depth query agrees on quantities.
    let mut depth = Vec::new();
    engine.depth(symbol, side, usize::MAX, |p, q| depth.push((p, q)));
    assert_eq!(
        depth,
        v.iter().map(|&(p, q, _)| (p, q)).collect::<Vec<_>>(),
        "engine depth vs its orders"
    );
    v
}

fn builder_side(md: &MarketData, symbol: SymbolId, side: Side) -> Levels {
    let mut v = Vec::new();
    md.depth(symbol, side, usize::MAX, |p, q, n| v.push((p, q, n)));
    v
}

fn snapshot(md: &MarketData, symbol: SymbolId) -> L2Book {
    let mut levels = Vec::new();
    let seq = md.snapshot(symbol, usize::MAX, |c| levels.push(c));
    L2Book::from_snapshot(seq, &levels)
}

/// Owned copy of a message, for checking after the builder call.
#[derive(Clone, Debug)]
enum Msg {
    Trade(MdTrade),
    Depth {
        symbol: SymbolId,
        md_seq: u64,
        ts: u64,
        trades: u32,
        changes: Vec<LevelChange>,
    },
}

fn own(m: MdMessage<'_>) -> Msg {
    match m {
        MdMessage::Trade(t) => Msg::Trade(*t),
        MdMessage::Depth(&DepthUpdate {
            symbol,
            md_seq,
            ts,
            trades,
            changes,
        }) => Msg::Depth {
            symbol,
            md_seq,
            ts,
            trades,
            changes: changes.to_vec(),
        },
    }
}

/// Stamps that jump by 1 µs, 7 s, 61 s, 17 min or 5 h, and now and then go back 3 s (the
/// engine then keeps its time).
fn stamps(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed | 1;
    let mut t = 1_704_067_000_000_000_000u64; // 2023-12-31T23:56:40Z, a Sunday
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = 1_000_000_000u64;
            t = match x % 100 {
                0..=59 => t + 1_000,
                60..=79 => t + 7 * s,
                80..=91 => t + 61 * s,
                92..=96 => t + 17 * 60 * s,
                97 => t + 5 * 3600 * s,
                _ => t.saturating_sub(3 * s),
            };
            t
        })
        .collect()
}

// ------------------------------------------------------------- independent references

const SEC: u64 = 1_000_000_000;

/// Start of the candle holding `ts`, from calendar arithmetic: days since 1970-01-01 (a
/// Thursday), weekday with Monday = 0, Monday's midnight (clipped at 0).
fn reference_open(interval: &str, ts: u64) -> u64 {
    let secs = ts / SEC;
    let minute = |m: u64| secs / (60 * m) * (60 * m) * SEC;
    match interval {
        "1m" => minute(1),
        "5m" => minute(5),
        "15m" => minute(15),
        "30m" => minute(30),
        "1h" => minute(60),
        "4h" => minute(240),
        "1d" => minute(1440),
        "1w" => {
            let days = secs / 86_400;
            let weekday = (days + 3) % 7; // 1970-01-01 was a Thursday (3)
            days.saturating_sub(weekday) * 86_400 * SEC
        }
        _ => unreachable!(),
    }
}

fn reference_candles(trades: &[Trade], symbol: SymbolId, interval: &str) -> Vec<Candle> {
    let mut out: Vec<Candle> = Vec::new();
    for t in trades.iter().filter(|t| t.symbol == symbol) {
        let open = reference_open(interval, t.ts);
        let n = t.price.0 as u128 * u128::from(t.qty.0);
        match out.last_mut() {
            Some(c) if c.open_time == open => {
                c.high = c.high.max(t.price);
                c.low = c.low.min(t.price);
                c.close = t.price;
                c.volume += t.qty.0;
                c.notional_ticks += n;
                c.trades += 1;
            }
            _ => out.push(Candle {
                open_time: open,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: t.qty.0,
                notional_ticks: n,
                trades: 1,
            }),
        }
    }
    out
}

/// Runs one stream; returns how many trades and updates it saw (for the busy checks).
fn run(seed: u64, n: usize, risk: RiskMode, orders_max: u32) -> (usize, u64) {
    let mut config = common::config();
    config.capacity.orders_max = orders_max;
    config.market_data.tape_len = 16;
    config.market_data.candles_history = 24;
    let mut engine = Engine::with_risk(&config, risk).unwrap();
    let mut md = MarketData::new(&config);
    let symbols: Vec<SymbolId> = (0..config.symbols.len() as u16).map(SymbolId).collect();
    let mut subscriber: Vec<L2Book> = symbols.iter().map(|&s| snapshot(&md, s)).collect();
    let mut joiner: Vec<Option<L2Book>> = vec![None; symbols.len()];
    // A builder seeded from the engine's state mid-stream (as after recovery from a snapshot),
    // then fed the events after that point.
    let mut seeded: Option<MarketData> = None;
    let cmds = common::stream(seed, n);
    let ts = stamps(seed, cmds.len());
    let mut all_trades: Vec<Trade> = Vec::new();
    let mut updates = 0u64;
    let mut now = 0u64;
    for (i, cmd) in cmds.iter().enumerate() {
        let mut events = Vec::new();
        engine.process_at(ts[i], cmd, &mut |e: &Event| events.push(*e));
        now = now.max(ts[i]);
        let mut msgs = Vec::new();
        md.command(ts[i], &events, &mut |m| msgs.push(own(m)));
        if let Some(seeded) = &mut seeded {
            seeded.command(ts[i], &events, &mut |_| {});
        }
        let trades: Vec<Trade> = events
            .iter()
            .filter_map(|e| match e {
                Event::Trade(t) => Some(*t),
                _ => None,
            })
            .collect();
        // The trades come out as they happened, each stamped with its update's md_seq.
        let md_trades: Vec<MdTrade> = msgs
            .iter()
            .filter_map(|m| match m {
                Msg::Trade(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(md_trades.len(), trades.len());
        for (m, t) in md_trades.iter().zip(&trades) {
            assert_eq!(
                (m.symbol, m.trade_id, m.ts, m.price, m.qty, m.taker_side),
                (t.symbol, t.trade_id, t.ts, t.price, t.qty, t.taker_side)
            );
            assert_eq!(m.md_seq, subscriber[t.symbol.0 as usize].md_seq() + 1);
        }
        all_trades.extend(&trades);
        for m in &msgs {
            if let Msg::Depth {
                symbol,
                md_seq,
                ts: at,
                trades: nt,
                changes,
            } = m
            {
                updates += 1;
                let s = symbol.0 as usize;
                assert_eq!(*md_seq, subscriber[s].md_seq() + 1, "md_seq is dense");
                assert_eq!(*at, now, "stamped with engine time");
                assert_eq!(
                    *nt as usize,
                    md_trades.iter().filter(|t| t.symbol == *symbol).count()
                );
                assert!(!changes.is_empty() || *nt > 0, "an empty update");
                // Each level at most once, bids best (highest) first, then asks best first.
                let key = |c: &LevelChange| match c.side {
                    Side::Buy => (0, -c.price.0),
                    Side::Sell => (1, c.price.0),
                };
                assert!(
                    changes.windows(2).all(|w| key(&w[0]) < key(&w[1])),
                    "levels repeated or out of order: {changes:?}"
                );
                assert_eq!(subscriber[s].apply(*md_seq, *md_seq, changes), Ok(true));
                if let Some(j) = &mut joiner[s] {
                    assert_eq!(j.apply(*md_seq, *md_seq, changes), Ok(true));
                }
            }
        }
        if i == cmds.len() / 3 {
            for &s in &symbols {
                joiner[s.0 as usize] = Some(snapshot(&md, s));
            }
            seeded = Some(MarketData::from_engine(&engine));
        }
        for &s in &symbols {
            for side in [Side::Buy, Side::Sell] {
                let want = engine_side(&engine, s, side);
                assert_eq!(builder_side(&md, s, side), want, "builder, cmd {i} {cmd:?}");
                assert_eq!(
                    subscriber[s.0 as usize].levels(side),
                    want,
                    "subscriber, cmd {i} {cmd:?}"
                );
                if let Some(j) = &joiner[s.0 as usize] {
                    assert_eq!(j.levels(side), want, "mid-stream joiner, cmd {i}");
                }
                if let Some(seeded) = &seeded {
                    assert_eq!(
                        builder_side(seeded, s, side),
                        want,
                        "seeded builder, cmd {i}"
                    );
                }
            }
            assert_eq!(md.best_bid(s), engine.best_bid(s));
            assert_eq!(md.best_ask(s), engine.best_ask(s));
        }
    }
    // Tape, candles, ticker against the trade list.
    for &s in &symbols {
        let mine: Vec<&Trade> = all_trades.iter().filter(|t| t.symbol == s).collect();
        let mut tape = Vec::new();
        md.tape(s, usize::MAX, |t| tape.push(*t));
        let want: Vec<(TradeId, Price, Qty)> = mine
            .iter()
            .rev()
            .take(16)
            .rev()
            .map(|t| (t.trade_id, t.price, t.qty))
            .collect();
        assert_eq!(
            tape.iter()
                .map(|t| (t.trade_id, t.price, t.qty))
                .collect::<Vec<_>>(),
            want
        );
        for interval in Interval::ALL {
            let all = reference_candles(&all_trades, s, interval.name());
            let want = &all[all.len().saturating_sub(24)..];
            let mut got = Vec::new();
            md.candles(s, interval, usize::MAX, |c| got.push(*c));
            assert_eq!(got, want, "{} candles of symbol {s}", interval.name());
            let mut last3 = Vec::new();
            md.candles(s, interval, 3, |c| last3.push(*c));
            assert_eq!(last3, want[want.len().saturating_sub(3)..]);
        }
        // The 24h window: the 1440 minutes ending with the current one.
        let start = (now / (60 * SEC) - 1439) * 60 * SEC;
        let window: Vec<&&Trade> = mine.iter().filter(|t| t.ts >= start).collect();
        let t = md.ticker(s);
        assert_eq!((t.open_time, t.close_time), (start, now));
        assert_eq!(t.trades, window.len() as u64);
        assert_eq!(t.open, window.first().map(|t| t.price));
        assert_eq!(t.last, mine.last().map(|t| t.price));
        assert_eq!(t.high, window.iter().map(|t| t.price).max());
        assert_eq!(t.low, window.iter().map(|t| t.price).min());
        let volume: u64 = window.iter().map(|t| t.qty.0).sum();
        let notional: u128 = window
            .iter()
            .map(|t| t.price.0 as u128 * u128::from(t.qty.0))
            .sum();
        assert_eq!(t.volume, volume);
        assert_eq!(
            t.quote_volume,
            notional * u128::from(config.symbols[s.0 as usize].tick_size)
        );
        if volume > 0 {
            // VWAP to 8 places, truncated: compare against long division done differently.
            let scaled = notional * 100_000_000 / u128::from(volume);
            let text = format!("{}.{:08}", scaled / 100_000_000, scaled % 100_000_000);
            assert_eq!(t.vwap().unwrap().to_string(), text);
            let open = window[0].price.0;
            let change = mine.last().unwrap().price.0 - open;
            assert_eq!(t.change(), change);
            let bp = i128::from(change) * 10_000 / i128::from(open);
            let pct = format!(
                "{}{}.{:02}",
                if bp < 0 { "-" } else { "" },
                bp.abs() / 100,
                bp.abs() % 100
            );
            assert_eq!(t.change_pct().to_string(), pct);
        } else {
            assert!(t.vwap().is_none());
        }
        assert_eq!(t.best_bid, engine.best_bid(s));
        assert_eq!(t.best_ask, engine.best_ask(s));
    }
    // A builder started from the engine's state holds the same book.
    let seeded = MarketData::from_engine(&engine);
    for &s in &symbols {
        for side in [Side::Buy, Side::Sell] {
            assert_eq!(builder_side(&seeded, s, side), builder_side(&md, s, side));
        }
    }
    (all_trades.len(), updates)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn subscribers_hold_the_engines_visible_book(seed in any::<u64>(), risk_on in any::<bool>()) {
        let risk = if risk_on { RiskMode::On } else { RiskMode::Off };
        run(seed, 1_500, risk, common::config().capacity.orders_max);
    }

    /// A pool that is not a power of two and fills up: orders live while many newer ids pass
    /// (ids are skipped), so the builder's order table must find orders the way the engine does.
    #[test]
    fn a_small_odd_pool_keeps_the_mirror_exact(seed in any::<u64>(), risk_on in any::<bool>()) {
        let risk = if risk_on { RiskMode::On } else { RiskMode::Off };
        run(seed, 1_500, risk, 45);
    }
}

#[test]
fn a_long_stream_is_busy_and_exact() {
    let (trades, updates) = run(
        0x5eed,
        6_000,
        RiskMode::On,
        common::config().capacity.orders_max,
    );
    assert!(trades > 1_000, "too few trades: {trades}");
    assert!(updates > 1_500, "too few updates: {updates}");
}

/// Everything a reader can see of one symbol, as text (for equality checks).
fn view(md: &MarketData, s: SymbolId) -> String {
    let mut out = format!(
        "md_seq {} now {} bids {:?} asks {:?} ticker {:?}",
        md.md_seq(s),
        md.now_ns(),
        builder_side(md, s, Side::Buy),
        builder_side(md, s, Side::Sell),
        md.ticker(s)
    );
    md.tape(s, usize::MAX, |t| out.push_str(&format!(" {t:?}")));
    for i in Interval::ALL {
        md.candles(s, i, usize::MAX, |c| out.push_str(&format!(" {c:?}")));
    }
    out
}

/// `copy_from` (how the gateway hands its builder to the web edge) taken in the middle of a
/// command, into a builder that had seen another stream: fed the rest of the outputs, the copy
/// produces exactly the original's messages and ends in exactly its state.
#[test]
fn a_copy_taken_mid_command_and_fed_the_rest_equals_the_original() {
    let mut config = common::config();
    config.market_data.tape_len = 16;
    config.market_data.candles_history = 24;
    let symbols: Vec<SymbolId> = (0..config.symbols.len() as u16).map(SymbolId).collect();
    // The copy's target first learns a different stream: its stale state must all be replaced.
    let mut copy = MarketData::new(&config);
    {
        let mut other = Engine::with_risk(&config, RiskMode::Off).unwrap();
        let cmds = common::stream(7, 400);
        let ts = stamps(7, cmds.len());
        for (i, cmd) in cmds.iter().enumerate() {
            let mut events = Vec::new();
            other.process_at(ts[i], cmd, &mut |e: &Event| events.push(*e));
            copy.command(ts[i], &events, &mut |_| {});
        }
    }
    let mut engine = Engine::with_risk(&config, RiskMode::On).unwrap();
    let mut md = MarketData::new(&config);
    let cmds = common::stream(0xc0b1, 1_200);
    let ts = stamps(0xc0b1, cmds.len());
    let mut copied = false;
    let mut compared = 0usize;
    for (i, cmd) in cmds.iter().enumerate() {
        let mut events = Vec::new();
        engine.process_at(ts[i], cmd, &mut |e: &Event| events.push(*e));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (k, e) in events.iter().enumerate() {
            // Copy once, after the first event of a command that has at least two.
            if !copied && i >= cmds.len() / 3 && events.len() >= 2 && k == 1 {
                copy.copy_from(&md);
                copied = true;
            }
            md.apply(e, &mut |m| a.push(format!("{:?}", own(m))));
            if copied {
                copy.apply(e, &mut |m| b.push(format!("{:?}", own(m))));
            }
        }
        md.end_command(ts[i], &mut |m| a.push(format!("{:?}", own(m))));
        if copied {
            copy.end_command(ts[i], &mut |m| b.push(format!("{:?}", own(m))));
            assert_eq!(a, b, "command {i}: the copy produced other messages");
            compared += b.len();
        }
    }
    assert!(copied, "no command with two events after the first third");
    // For docs/architecture.md: what one copy of a default-config builder takes (printed only).
    let default = Config::default();
    let big = MarketData::new(&default);
    let mut into = MarketData::new(&default);
    let t = std::time::Instant::now();
    into.copy_from(&big);
    eprintln!("copy_from, default config: {:?}", t.elapsed());
    assert!(compared > 100, "too few messages compared: {compared}");
    for &s in &symbols {
        assert_eq!(view(&copy, s), view(&md, s), "symbol {s:?}");
    }
}

/// Each command's events and stamp for a stream run through a fresh engine (risk on).
fn recorded(config: &Config, seed: u64, n: usize) -> Vec<(u64, Vec<Event>)> {
    let mut engine = Engine::with_risk(config, RiskMode::On).unwrap();
    let cmds = common::stream(seed, n);
    let ts = stamps(seed, cmds.len());
    cmds.iter()
        .zip(ts)
        .map(|(cmd, t)| {
            let mut events = Vec::new();
            engine.process_at(t, cmd, &mut |e: &Event| events.push(*e));
            (t, events)
        })
        .collect()
}

/// `copy_from` copies only what either side holds (occupied and touched levels, ring items),
/// so every kind of stale state in the target must still be replaced: a target caught in the
/// middle of its own command (touched levels, an active order) and holding levels, tape and
/// candles of another stream, a source caught in the middle of one; at many cut points, the
/// copy then produces exactly the source's messages and ends in its state.
#[test]
fn a_copy_into_a_builder_caught_mid_command_replaces_all_of_it() {
    let mut config = common::config();
    config.market_data.tape_len = 16;
    config.market_data.candles_history = 24;
    let symbols: Vec<SymbolId> = (0..config.symbols.len() as u16).map(SymbolId).collect();
    let x = recorded(&config, 0x5eed, 700);
    let y = recorded(&config, 0xd1ff, 700);
    let feed = |md: &mut MarketData, cmds: &[(u64, Vec<Event>)]| {
        for (t, events) in cmds {
            md.command(*t, events, &mut |_| {});
        }
    };
    let mut cuts = 0;
    for cut in (40..640).step_by(23) {
        let (t, events) = &x[cut];
        let half = events.len() / 2;
        let mut src = MarketData::new(&config);
        feed(&mut src, &x[..cut]);
        for e in &events[..half] {
            src.apply(e, &mut |_| {});
        }
        let mut dst = MarketData::new(&config);
        feed(&mut dst, &y[..cut + 17]);
        let (_, other) = &y[cut + 17];
        for e in &other[..other.len().div_ceil(2)] {
            dst.apply(e, &mut |_| {});
        }
        dst.copy_from(&src);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for e in &events[half..] {
            src.apply(e, &mut |m| a.push(format!("{:?}", own(m))));
            dst.apply(e, &mut |m| b.push(format!("{:?}", own(m))));
        }
        src.end_command(*t, &mut |m| a.push(format!("{:?}", own(m))));
        dst.end_command(*t, &mut |m| b.push(format!("{:?}", own(m))));
        for (t, events) in &x[cut + 1..cut + 60] {
            src.command(*t, events, &mut |m| a.push(format!("{:?}", own(m))));
            dst.command(*t, events, &mut |m| b.push(format!("{:?}", own(m))));
        }
        assert!(!a.is_empty());
        assert_eq!(
            a, b,
            "cut at command {cut}: the copy produced other messages"
        );
        for &s in &symbols {
            assert_eq!(view(&dst, s), view(&src, s), "cut {cut}, symbol {s:?}");
        }
        cuts += 1;
    }
    assert!(cuts > 20);
}

/// The two ways a level that is empty but touched (emptied by the command under way) could
/// survive or be lost by a copy that looks only at occupied and touched levels: the target's
/// own such level must be cleaned (else a later change there goes unreported), and the
/// source's copied with its mark (else a second touch in the same command lists it twice).
#[test]
fn a_copy_carries_touched_empty_levels_exactly() {
    let config = Config::default();
    let symbol = SymbolId(0);
    let price = Price(config.symbols[0].price_min + 500);
    let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
    let mut run = |cmd: Command| {
        let mut events = Vec::new();
        engine.process(&cmd, &mut |e: &Event| events.push(*e));
        events
    };
    let sell = |coid: u64, qty: u64| {
        Command::NewOrder(NewOrder::limit(
            UserId(1),
            symbol,
            ClientOrderId(coid),
            Side::Sell,
            price,
            Qty(qty),
        ))
    };
    let accepted = |events: &[Event]| match events.first() {
        Some(&Event::Accepted { order_id, .. }) => order_id,
        _ => panic!("accepted first: {events:?}"),
    };
    let placed = run(sell(1, 5));
    let order_id = accepted(&placed);
    let cancelled = run(Command::CancelOrder {
        user: UserId(1),
        symbol,
        order_id,
    });
    let again = run(sell(2, 7));
    let order_id = accepted(&again);
    // Grown in place: leaves its level and rests there again, in one command.
    let grown = run(Command::AmendOrder {
        user: UserId(1),
        symbol,
        order_id,
        price,
        qty: Qty(9),
    });
    assert_eq!(grown.len(), 1, "one Amended: {grown:?}");
    let msgs = |md: &mut MarketData, events: &[Event], out: &mut Vec<String>| {
        for e in events {
            md.apply(e, &mut |m| out.push(format!("{:?}", own(m))));
        }
        md.end_command(0, &mut |m| out.push(format!("{:?}", own(m))));
    };
    // 1. The target is mid-cancel (its level empty and touched); the source is past it.
    let mut dst = MarketData::new(&config);
    dst.command(0, &placed, &mut |_| {});
    dst.apply(&cancelled[0], &mut |_| {});
    let mut src = MarketData::new(&config);
    src.command(0, &placed, &mut |_| {});
    src.command(0, &cancelled, &mut |_| {});
    dst.copy_from(&src);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    msgs(&mut src, &again, &mut a);
    msgs(&mut dst, &again, &mut b);
    assert_eq!(b, a, "the order joining the level the target had emptied");
    assert!(a.iter().any(|m| m.contains("Qty(7)")), "{a:?}");
    // 2. The source is mid-amend (the level empty and touched, the order about to rest there
    // again); the target is fresh.
    let mut src = MarketData::new(&config);
    for events in [&placed, &cancelled, &again] {
        src.command(0, events, &mut |_| {});
    }
    src.apply(&grown[0], &mut |_| {});
    let mut dst = MarketData::new(&config);
    dst.copy_from(&src);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    src.end_command(0, &mut |m| a.push(format!("{:?}", own(m))));
    dst.end_command(0, &mut |m| b.push(format!("{:?}", own(m))));
    assert_eq!(b, a, "the amended order resting again where it was");
    assert_eq!(
        a.iter().filter(|m| m.contains("Qty(9)")).count(),
        1,
        "{a:?}"
    );
}

/// With `orders_max` not a power of two, two live orders can have ids equal modulo
/// `orders_max` (ids are only kept apart modulo its next power of two: docs/matching.md, "Order
/// ids"); the builder's mirror of the orders must still keep them apart.
#[test]
fn orders_whose_ids_agree_modulo_orders_max_stay_apart() {
    let mut config = Config::default();
    config.capacity.orders_max = 3;
    let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
    let mut md = MarketData::new(&config);
    let symbol = SymbolId(0);
    let p = config.symbols[0].price_min;
    let user = UserId(1);
    let step = |engine: &mut Engine, md: &mut MarketData, cmd: Command| {
        let mut events = Vec::new();
        engine.process(&cmd, &mut |e: &Event| events.push(*e));
        md.command(0, &events, &mut |_| {});
        events
    };
    let buy = |coid: u64, price: i64| {
        Command::NewOrder(NewOrder::limit(
            user,
            symbol,
            ClientOrderId(coid),
            Side::Buy,
            Price(price),
            Qty(1),
        ))
    };
    let cancel = |coid: u64| Command::Cancel {
        user,
        symbol,
        client_order_id: ClientOrderId(coid),
    };
    for coid in 1..=3 {
        step(&mut engine, &mut md, buy(coid, p + coid as i64));
    }
    step(&mut engine, &mut md, cancel(2));
    let events = step(&mut engine, &mut md, buy(4, p + 4));
    // Ids 1, 2, 3 took slots 1, 2, 3 of 4; the fourth order takes the freed slot 2, as id 6
    // (the first id from 4 on that names slot 2). 6 and 3 agree modulo orders_max = 3.
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Accepted { order_id, .. } if order_id.0 == 6)));
    step(&mut engine, &mut md, cancel(3));
    assert_eq!(md.level(symbol, Side::Buy, Price(p + 3)), (Qty(0), 0));
    assert_eq!(md.level(symbol, Side::Buy, Price(p + 4)), (Qty(1), 1));
    assert_eq!(
        builder_side(&md, symbol, Side::Buy),
        engine_side(&engine, symbol, Side::Buy)
    );
}

/// A builder made for a config with fewer symbols than the engine's (an embedder who wants
/// one market only) ignores the other symbols' events — it used to panic on some of them —
/// and still holds its own symbols' books exactly.
#[test]
fn a_builder_with_fewer_symbols_ignores_the_others() {
    let config = common::config();
    assert!(
        config.symbols.len() > 1,
        "the shared config has several symbols"
    );
    let mut one = config.clone();
    one.symbols.truncate(1);
    let mut engine = Engine::with_risk(&config, RiskMode::On).unwrap();
    let mut md = MarketData::new(&one);
    let cmds = common::stream(7, 3_000);
    let ts = stamps(7, cmds.len());
    let mut others = 0usize;
    for (i, cmd) in cmds.iter().enumerate() {
        let mut events = Vec::new();
        engine.process_at(ts[i], cmd, &mut |e: &Event| events.push(*e));
        others += events
            .iter()
            .filter(|e| matches!(e, Event::Trade(t) if t.symbol.0 > 0))
            .count();
        md.command(ts[i], &events, &mut |_| {});
        for side in [Side::Buy, Side::Sell] {
            let want = engine_side(&engine, SymbolId(0), side);
            assert_eq!(builder_side(&md, SymbolId(0), side), want, "cmd {i}");
        }
    }
    assert!(others > 0, "the stream traded in another symbol");
}

/// The 24h ticker read between the events of a command (the web edge reads between outputs)
/// when every minute of the window traded: the command's trade, stamped with its time, opens a
/// 1m candle after the builder's engine time (which moves at `end_command`). The sum must skip
/// that candle and still see all 1440 minutes of the window — the 1m ring keeps one candle more
/// than the window for it.
#[test]
fn a_ticker_read_mid_command_sees_the_whole_window() {
    let mut config = common::config();
    config.market_data.candles_history = 24;
    let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
    let mut md = MarketData::new(&config);
    let symbol = SymbolId(0);
    let p = config.symbols[0].price_min + 100;
    let order = |user: u32, coid: u64, side: Side, price: i64| {
        Command::NewOrder(NewOrder::limit(
            UserId(user),
            symbol,
            ClientOrderId(coid),
            side,
            Price(price),
            Qty(1 + coid % 3),
        ))
    };
    let mut trades: Vec<Trade> = Vec::new();
    let mut run = |engine: &mut Engine, md: &mut MarketData, ts: u64, cmd: Command| {
        let mut events = Vec::new();
        engine.process_at(ts, &cmd, &mut |e: &Event| events.push(*e));
        md.command(ts, &events, &mut |_| {});
        for e in &events {
            if let Event::Trade(t) = e {
                trades.push(*t);
            }
        }
    };
    // A crossing pair every 20 s for 5 000 pairs: every minute of more than a day trades.
    let start = 1_767_225_600 * SEC;
    let mut ts = start;
    for k in 0..5_000u64 {
        ts = start + k * 20 * SEC;
        let price = p + (k % 7) as i64;
        run(&mut engine, &mut md, ts, order(1, k + 1, Side::Sell, price));
        run(&mut engine, &mut md, ts, order(2, k + 1, Side::Buy, price));
    }
    // A resting sell, then, 150 s later, a buy that takes it: read the ticker after its trade.
    run(&mut engine, &mut md, ts, order(1, 9_001, Side::Sell, p + 3));
    assert_eq!(trades.len(), 5_000);
    let now = ts;
    let mut events = Vec::new();
    engine.process_at(
        now + 150 * SEC,
        &order(2, 9_001, Side::Buy, p + 3),
        &mut |e: &Event| events.push(*e),
    );
    let mut checked = false;
    for e in &events {
        md.apply(e, &mut |_| {});
        if matches!(e, Event::Trade(_)) {
            let window_open = (now / (60 * SEC) - 1439) * 60 * SEC;
            let in_window: Vec<&Trade> = trades
                .iter()
                .filter(|t| t.ts >= window_open && t.ts / (60 * SEC) <= now / (60 * SEC))
                .collect();
            let t = md.ticker(symbol);
            assert_eq!(t.close_time, now, "engine time moves at end_command");
            assert_eq!(t.trades, in_window.len() as u64);
            assert_eq!(t.volume, in_window.iter().map(|t| t.qty.0).sum::<u64>());
            assert_eq!(t.open, in_window.first().map(|t| t.price));
            assert_eq!(t.high, in_window.iter().map(|t| t.price).max());
            assert_eq!(t.low, in_window.iter().map(|t| t.price).min());
            checked = true;
        }
    }
    assert!(checked, "the buy did not trade");
    md.end_command(now + 150 * SEC, &mut |_| {});
}
