//! Shared by the engine's integration tests: the mixed command generator (every order type and
//! instruction, cancels, amends, mass cancels, rejects; it never allocates while generating),
//! a stream with deposits and withdrawals around it, and a collecting pipeline output handler.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ringbook_engine::pipeline::{Output, OutputKind};
use ringbook_engine::prelude::*;
use ringbook_engine::Pipeline;
use ringbook_testkit::rng::Rng;

pub const USERS: u64 = 8;
const SYMBOLS: u64 = 3;
const TRACKED: usize = 4096;
const ACCEPTED: usize = 64;

/// Generates a mixed command stream around a moving mid price. Client order ids it hands out
/// are remembered in a fixed table so cancels and amends usually name live orders.
pub struct Workload {
    rng: Rng,
    next_coid: u64,
    tracked: Vec<(UserId, SymbolId, ClientOrderId)>,
    /// Orders the caller saw accepted ([`Workload::observe`]), for cancels and amends by id.
    accepted: Vec<(UserId, SymbolId, OrderId)>,
    accepted_next: usize,
    mids: [i64; SYMBOLS as usize],
    /// Commands generated so far.
    generated: u64,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            next_coid: 1,
            tracked: vec![(UserId(0), SymbolId(0), ClientOrderId(0)); TRACKED],
            accepted: vec![(UserId(0), SymbolId(0), OrderId(0)); ACCEPTED],
            accepted_next: 0,
            mids: [15_000, 5_000, 19_000],
            generated: 0,
        }
    }

    /// Remembers an accepted order (a caller that sees the events feeds them back), so that
    /// cancels and amends by engine order id name real orders.
    pub fn observe(&mut self, event: &Event) {
        if let Event::Accepted {
            user,
            symbol,
            order_id,
            ..
        } = *event
        {
            self.accepted[self.accepted_next] = (user, symbol, order_id);
            self.accepted_next = (self.accepted_next + 1) % ACCEPTED;
        }
    }

    pub fn command(&mut self) -> Command {
        self.generated += 1;
        let r = &mut self.rng;
        let user = UserId(r.below(USERS) as u32);
        let symbol = SymbolId(r.below(SYMBOLS) as u16);
        let mid = &mut self.mids[symbol.0 as usize];
        *mid = (*mid + r.below(3) as i64 - 1).clamp(1_000, 40_000);
        let side = if r.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let toward = |p: i64| match side {
            Side::Buy => p,
            Side::Sell => -p,
        };
        let kind = r.below(100);
        if kind < 60 {
            let coid = ClientOrderId(self.next_coid);
            self.next_coid += 1;
            let slot = r.below(TRACKED as u64) as usize;
            self.tracked[slot] = (user, symbol, coid);
            let passive = *mid - toward(r.below(20) as i64);
            let aggressive = *mid + toward(r.below(10) as i64);
            let qty = Qty(1 + r.below(50));
            let mut o = NewOrder::limit(user, symbol, coid, side, Price(passive), qty);
            match kind % 12 {
                0 => o.tif = TimeInForce::Ioc,
                1 => o.tif = TimeInForce::Fok,
                2 => o.post_only = true,
                3 => o.display_qty = Qty(1 + r.below(qty.0)),
                4 => {
                    o = NewOrder::market(
                        user,
                        symbol,
                        coid,
                        side,
                        Price(aggressive + toward(50)),
                        qty,
                    );
                }
                5 | 6 => {
                    o.order_type = if kind.is_multiple_of(2) {
                        OrderType::StopLimit
                    } else {
                        OrderType::StopMarket
                    };
                    o.stop_price = Price(*mid + toward(1 + r.below(5) as i64));
                    o.price = Price(aggressive);
                }
                7 => o.price = Price(aggressive),
                8 => o.qty = Qty(0), // a reject
                9 => {
                    // Good till a time around the stream's stamps ([`stamp`]: 1 µs a
                    // command): most expire within a few hundred commands, a few are past.
                    o.tif = TimeInForce::Gtd;
                    o.expire_at = 1_000_000_000 + (self.generated + r.below(600)) * 1_000;
                }
                10 => {
                    // DAY: the session ends at midnight, far after the stamps: they rest.
                    o.tif = TimeInForce::Day;
                }
                11 => {
                    // A market buy for a quote budget, capped in lots or not.
                    o = NewOrder::market_budget(
                        user,
                        symbol,
                        coid,
                        Price(*mid + 60),
                        1 + r.below(600_000),
                    );
                    if r.below(3) == 0 {
                        o.qty = qty;
                    }
                }
                _ => {}
            }
            o.stp = match r.below(6) {
                0 => StpMode::CancelNewest,
                1 => StpMode::CancelOldest,
                2 => StpMode::CancelBoth,
                3 => StpMode::Decrement,
                _ => StpMode::None,
            };
            Command::NewOrder(o)
        } else {
            let (user, symbol, client_order_id) = self.tracked[r.below(TRACKED as u64) as usize];
            // A quarter of cancels and amends name an engine order id instead: one of the
            // orders seen accepted lately (often still live, sometimes gone), usually by its
            // owner on its symbol, sometimes by another user; or, when nothing was observed, a
            // guess near the ids issued lately.
            let by_id = r.below(4) == 0;
            let (owner, home, order_id) = self.accepted[r.below(ACCEPTED as u64) as usize];
            let (id_user, id_symbol, order_id) = if order_id.0 == 0 {
                (
                    user,
                    symbol,
                    OrderId(self.next_coid.saturating_sub(r.below(64))),
                )
            } else if r.below(8) == 0 {
                (UserId((owner.0 + 1) % USERS as u32), home, order_id)
            } else {
                (owner, home, order_id)
            };
            match kind {
                60..=84 if by_id => Command::CancelOrder {
                    user: id_user,
                    symbol: id_symbol,
                    order_id,
                },
                85..=98 if by_id => Command::AmendOrder {
                    user: id_user,
                    symbol: id_symbol,
                    order_id,
                    price: Price(*mid - toward(r.below(15) as i64)),
                    qty: Qty(r.below(40)),
                },
                60..=84 => Command::Cancel {
                    user,
                    symbol,
                    client_order_id,
                },
                85..=98 => Command::Amend {
                    user,
                    symbol,
                    client_order_id,
                    price: Price(*mid - toward(r.below(15) as i64)),
                    qty: Qty(r.below(40)),
                },
                99 => Command::Tick,
                _ => Command::MassCancel {
                    user,
                    symbol: (r.below(2) == 0).then_some(symbol),
                    on_disconnect: user.0 % 2 == 1,
                },
            }
        }
    }
}

/// A config small enough for tests.
pub fn config() -> Config {
    let mut config = Config::default();
    config.capacity.orders_max = 50_000;
    config.capacity.users_max = 16;
    config.schedule.day_end_utc = Some("00:00".into());
    config
}

/// `n` generated commands after deposits for every user (risk on gets funds; risk off sees
/// them rejected), with a withdrawal, its approvals and a refused one mixed in every so often.
pub fn stream(seed: u64, n: usize) -> Vec<Command> {
    let config = config();
    let mut cmds = Vec::with_capacity(n + 64);
    for user in 0..USERS {
        for currency in 0..config.currencies.len() {
            cmds.push(Command::Deposit {
                user: UserId(user as u32),
                currency: CurrencyId(currency as u16),
                amount: 1 << (20 + (user as u32 % 3) * 10),
            });
        }
    }
    let mut workload = Workload::new(seed);
    let mut withdrawal = 0u64;
    for i in 0..n {
        if i % 97 == 50 {
            withdrawal += 1;
            cmds.push(Command::Withdraw {
                user: UserId((i % USERS as usize) as u32),
                currency: CurrencyId(0),
                amount: 1_000,
            });
            cmds.push(Command::ApproveWithdrawal {
                operator: OperatorId(900),
                withdrawal_id: WithdrawalId(withdrawal),
            });
            if withdrawal.is_multiple_of(2) {
                cmds.push(Command::ApproveWithdrawal {
                    operator: OperatorId(901),
                    withdrawal_id: WithdrawalId(withdrawal),
                });
            } else {
                cmds.push(Command::RejectWithdrawal {
                    operator: OperatorId(902),
                    withdrawal_id: WithdrawalId(withdrawal),
                });
            }
        }
        if i % 41 == 20 {
            // A query now and then: answered in sequence, by M (book) or S (balances).
            let user = UserId((i % USERS as usize) as u32);
            cmds.push(Command::Query(match (i / 41) % 5 {
                0 => Query::Balances { user },
                1 => Query::OpenOrders { user, limit: 8 },
                2 => Query::Book {
                    symbol: SymbolId((i % SYMBOLS as usize) as u16),
                    depth: 5,
                },
                3 => Query::Order {
                    user,
                    client_order_id: ClientOrderId(i as u64 / 2),
                },
                _ => Query::OrderById {
                    user,
                    order_id: OrderId(i as u64 / 3),
                },
            }));
        }
        cmds.push(workload.command());
    }
    cmds
}

/// Every output, in order, behind a mutex (the tests read it after shutdown).
pub type Collected = Arc<Mutex<Vec<Output>>>;

/// A handler that keeps every output.
pub fn collector() -> (Collected, impl FnMut(&Output) + Send + 'static) {
    let all: Collected = Arc::new(Mutex::new(Vec::new()));
    let mine = Arc::clone(&all);
    (all, move |o: &Output| mine.lock().unwrap().push(*o))
}

/// The timestamp the tests give command `seq` (Unix nanoseconds): 1 µs apart, except that
/// every seventh command is stamped 5 µs early, which the engine must process at its current
/// time (time never goes backwards).
pub fn stamp(seq: u64) -> u64 {
    let ts = 1_000_000_000 + seq * 1_000;
    if seq % 7 == 3 {
        ts - 5_000
    } else {
        ts
    }
}

/// Submits `cmd` stamped with [`stamp`] of the sequence it gets.
pub fn submit(pipeline: &mut Pipeline, cmd: Command) -> Seq {
    let seq = pipeline.next_seq();
    pipeline
        .submit_at(cmd, stamp(seq.0))
        .expect("the pipeline is running")
}

/// The single-threaded reference: outputs as the pipeline would produce them, each command
/// stamped with [`stamp`] of its sequence.
pub fn reference(
    config: &Config,
    risk: RiskMode,
    first_seq: u64,
    cmds: &[Command],
) -> (Vec<Output>, Engine) {
    let mut engine = Engine::with_risk(config, risk).unwrap();
    let mut out = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        process_stamped(&mut engine, Seq(first_seq + i as u64), cmd, &mut out);
    }
    (out, engine)
}

/// Processes `cmd` as command `seq`, stamped with [`stamp`], and appends its outputs to `out`
/// as the pipeline would produce them (its events, then `Done`).
pub fn process_stamped(engine: &mut Engine, seq: Seq, cmd: &Command, out: &mut Vec<Output>) {
    let ts = stamp(seq.0);
    engine.process_at(ts, cmd, &mut |e: &Event| {
        out.push(Output {
            seq,
            ts,
            kind: OutputKind::Event(*e),
        })
    });
    out.push(Output {
        seq,
        ts,
        kind: OutputKind::Done,
    });
}
