//! Zero heap allocation on the hot path, proven with a counting global allocator.
//!
//! After `Engine::new` and a warm-up, a million mixed commands (every order type and
//! instruction, cancels, amends, mass cancels and rejects), with risk and settlement on and
//! off, must not allocate, reallocate or free once. Only heap operations made by the thread
//! under test while counting is switched on are
//! counted, per thread, so the test harness's own threads cannot disturb the figure.

use ringbook_engine::prelude::*;
use ringbook_testkit::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

mod common;

use common::{Workload, USERS};

#[derive(Default)]
struct Tally {
    events: u64,
    trades: u64,
    rejects: u64,
    duplicates: u64,
    triggers: u64,
    /// Cancels and amends by engine order id that found their order.
    by_id_done: u64,
    /// Status queries answered from a user's window of finished orders.
    finished_status: u64,
    /// GTD orders that expired.
    expired: u64,
    /// Budget buys placed (each locks its budget, spends it per fill, refunds the rest).
    budget_orders: u64,
}

/// Warms an engine up, then counts heap operations over a million mixed commands.
fn a_million_commands(risk: RiskMode) -> (Engine, Tally, u64) {
    let mut config = Config::default();
    config.capacity.orders_max = 50_000;
    config.capacity.users_max = USERS as u32;
    let mut engine = Engine::with_risk(&config, risk).unwrap();
    let mut tally = Tally::default();
    // Whether the command being processed is a cancel or amend by engine order id, and the
    // order the last command got accepted (fed back to the workload).
    let by_id = std::cell::Cell::new(false);
    let accepted = std::cell::Cell::new(None);
    let mut sink = |e: &Event| {
        tally.events += 1;
        match e {
            Event::Trade(_) => tally.trades += 1,
            Event::Rejected {
                code: RejectCode::DuplicateClientOrderId,
                ..
            } => {
                tally.rejects += 1;
                tally.duplicates += 1
            }
            Event::Rejected { .. } => tally.rejects += 1,
            Event::Cancelled {
                reason: CancelReason::Expired,
                ..
            } => tally.expired += 1,
            Event::Triggered { .. } => tally.triggers += 1,
            Event::Cancelled { .. } | Event::Amended { .. } if by_id.get() => {
                tally.by_id_done += 1;
                by_id.set(false);
            }
            Event::Accepted { .. } => accepted.set(Some(*e)),
            Event::OrderStatus {
                finished: Some(_), ..
            } => tally.finished_status += 1,
            _ => {}
        }
    };
    if risk == RiskMode::On {
        for user in 0..USERS {
            for currency in 0..config.currencies.len() {
                let deposit = Command::Deposit {
                    user: UserId(user as u32),
                    currency: CurrencyId(currency as u16),
                    amount: 1 << 50,
                };
                engine.process(&deposit, &mut sink);
            }
        }
    }
    let mut workload = Workload::new(0x5eed);
    for _ in 0..50_000 {
        let cmd = workload.command();
        engine.process(&cmd, &mut sink);
        if let Some(e) = accepted.take() {
            workload.observe(&e);
        }
    }

    ALLOC.start_this_thread();
    let mut last_new = None;
    let budget_orders = std::cell::Cell::new(0u64);
    for i in 0..1_000_000u64 {
        let cmd = workload.command();
        if matches!(cmd, Command::NewOrder(o) if o.budget != 0) {
            budget_orders.set(budget_orders.get() + 1);
        }
        // The workload's stamps (common::stamp): 1 µs a command from 1 s, so the GTD orders
        // it places expire within the run.
        let i = 1_000_000 + i;
        by_id.set(matches!(
            cmd,
            Command::CancelOrder { .. } | Command::AmendOrder { .. }
        ));
        // Stamped: engine time moves (and trades carry it and their ids) without allocating.
        engine.process_at(i * 1_000, &cmd, &mut sink);
        if let Some(e) = accepted.take() {
            workload.observe(&e);
        }
        // Now and then a resend of an earlier new order: the duplicate path (the default
        // config's `increasing` client-order-id rule) must not allocate either.
        if matches!(cmd, Command::NewOrder(_)) {
            if i % 50 == 0 {
                if let Some(old) = last_new {
                    engine.process_at(i * 1_000, &old, &mut sink);
                }
            }
            // And a status query for the previous new order, mostly finished by now: a scan
            // of its owner's window.
            if i % 20 == 0 {
                if let Some(Command::NewOrder(old)) = last_new {
                    let query = Command::Query(Query::Order {
                        user: old.user,
                        client_order_id: old.client_order_id,
                    });
                    engine.process_at(i * 1_000, &query, &mut sink);
                }
            }
            last_new = Some(cmd);
        }
    }
    let allocations = ALLOC.stop_this_thread().total();
    tally.budget_orders = budget_orders.get();
    (engine, tally, allocations)
}

/// The stream must really exercise the engine for a zero to mean anything.
fn assert_busy(engine: &Engine, tally: &Tally) {
    assert!(tally.trades > 100_000, "too few trades: {}", tally.trades);
    assert!(tally.rejects > 10_000, "too few rejects: {}", tally.rejects);
    assert!(
        tally.duplicates > 5_000,
        "too few duplicates: {}",
        tally.duplicates
    );
    assert!(
        tally.triggers > 1_000,
        "too few stop triggers: {}",
        tally.triggers
    );
    assert!(
        tally.by_id_done > 1_000,
        "too few cancels and amends by order id found their order: {}",
        tally.by_id_done
    );
    assert!(
        tally.finished_status > 1_000,
        "too few status queries found a finished order: {}",
        tally.finished_status
    );
    assert!(tally.expired > 1_000, "too few expiries: {}", tally.expired);
    assert!(
        tally.budget_orders > 1_000,
        "too few budget buys: {}",
        tally.budget_orders
    );
    assert!(engine.matcher().live_orders() > 100, "book drained");
}

#[test]
fn a_million_mixed_commands_allocate_nothing_with_risk_on() {
    let (engine, tally, allocations) = a_million_commands(RiskMode::On);
    assert_busy(&engine, &tally);
    engine.accounts().check_conservation().unwrap();
    assert_eq!(allocations, 0, "the hot path allocated {allocations} times");
}

#[test]
fn a_million_mixed_commands_allocate_nothing_with_risk_off() {
    let (engine, tally, allocations) = a_million_commands(RiskMode::Off);
    assert_busy(&engine, &tally);
    assert_eq!(allocations, 0, "the hot path allocated {allocations} times");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that cannot fail.
    let ((), counts) = ALLOC.count_this_thread(|| {
        let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
        drop(v);
    });
    assert!(counts.allocs >= 1 && counts.frees >= 1, "{counts:?}");
}

#[test]
fn the_market_data_builder_allocates_nothing() {
    use ringbook_engine::marketdata::{MarketData, MdMessage};
    let mut config = Config::default();
    config.capacity.orders_max = 50_000;
    config.capacity.users_max = USERS as u32;
    let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
    let mut md = MarketData::new(&config);
    let (mut trades, mut updates, mut levels) = (0u64, 0u64, 0u64);
    let mut workload = Workload::new(0xfeed);
    let mut clock = 0u64;
    let mut run = |n: u64, engine: &mut Engine, md: &mut MarketData, workload: &mut Workload| {
        for _ in 0..n {
            clock += 1;
            let cmd = workload.command();
            let accepted = std::cell::Cell::new(None);
            let mut out = |m: MdMessage<'_>| match m {
                MdMessage::Trade(_) => trades += 1,
                MdMessage::Depth(d) => {
                    updates += 1;
                    levels += d.changes.len() as u64;
                }
            };
            // Engine time moves a second per command: candles of every interval roll, the
            // 24h window wraps its ring (a million seconds is eleven days).
            let ts = 1_704_067_200_000_000_000 + clock * 1_000_000_000;
            engine.process_at(ts, &cmd, &mut |e: &Event| {
                if let Event::Accepted { .. } = e {
                    accepted.set(Some(*e));
                }
                md.apply(e, &mut out);
            });
            md.end_command(ts, &mut out);
            if let Some(e) = accepted.take() {
                workload.observe(&e);
            }
        }
    };
    run(50_000, &mut engine, &mut md, &mut workload);
    ALLOC.start_this_thread();
    run(1_000_000, &mut engine, &mut md, &mut workload);
    // Queries off the builder allocate nothing either.
    let mut seen = 0u64;
    for s in 0..3u16 {
        let symbol = SymbolId(s);
        md.snapshot(symbol, usize::MAX, |_| seen += 1);
        md.tape(symbol, usize::MAX, |_| seen += 1);
        md.candles(
            symbol,
            ringbook_engine::marketdata::Interval::M1,
            100,
            |_| seen += 1,
        );
        seen += md.ticker(symbol).trades;
    }
    let allocations = ALLOC.stop_this_thread().total();
    assert!(seen > 0);
    assert!(trades > 100_000, "too few trades: {trades}");
    // The workload's budget orders and ticks change no depth: a little fewer than there are commands.
    assert!(updates > 250_000, "too few updates: {updates}");
    assert!(levels > updates, "too few level changes: {levels}");
    assert_eq!(allocations, 0, "the builder allocated {allocations} times");
}
