//! Engine snapshots ([`ringbook_engine::snapshot`]): restored engines behave identically, and
//! corrupt snapshots are refused without panicking.
//!
//! - `restored_engines_behave_identically`: a random command stream (every command type, every
//!   order type and instruction, rejects, pool-full, withdrawals with approvals) runs into
//!   engine A; at a random point B is restored from A's snapshot, and later C from B's. From
//!   then on all of them get the same commands and must emit identical events and hashes after
//!   every command; at the end their snapshots are byte-identical. Risk on and off.
//! - `every_prefix_restores`: a snapshot taken after every command restores to the same hash
//!   and re-encodes to the same bytes.
//! - `mutated_snapshots_never_panic` / `every_truncation_fails`: damaged bytes give an error
//!   (or, if a mutation happens to leave a consistent state with the recorded hash, bytes that
//!   re-encode exactly), never a panic.
//! - targeted corruptions that keep the bytes well-formed but break a rule give the matching
//!   error.
//!
//! The command generator is adapted from `zero_alloc.rs` and `reference_props.rs`: a tiny
//! configuration (narrow bands, a 20-order pool, five users, three withdrawal slots) so books
//! fill, cross, stop and run out of room.

use proptest::prelude::*;
use ringbook_engine::config::ClientOrderIdRule;
use ringbook_engine::prelude::*;
use ringbook_engine::snapshot::{
    config_fingerprint, read_header, SnapshotError, ORDER_RECORD_BYTES, SNAPSHOT_HEADER_BYTES,
};
use ringbook_testkit::rng::Rng;

const USERS: u32 = 5;
const COIDS: u64 = 12;
const OPERATORS: [u32; 3] = [900, 901, 902];
/// `(price_min, price_max)` of the two symbols.
const BANDS: [(i64, i64); 2] = [(100, 129), (50, 130)];

const CONFIG: &str = r#"
[capacity]
orders_max = 20
users_max = 5
withdrawals_max = 3

[accounts]
operators = [900, 901, 902]

[[currencies]]
id = 0
code = "QQQ"
scale = 2

[[currencies]]
id = 1
code = "AAA"
scale = 0

[[currencies]]
id = 2
code = "BBB"
scale = 0

[[symbols]]
id = 0
name = "AAA-QQQ"
base = "AAA"
quote = "QQQ"
lot_size = 1
tick_size = 3
price_min = 100
price_max = 129
maker_fee_bps = 2
taker_fee_bps = 7
max_order_qty = 20

[[symbols]]
id = 1
name = "BBB-QQQ"
base = "BBB"
quote = "QQQ"
lot_size = 2
tick_size = 1
price_min = 50
price_max = 130
maker_fee_bps = 0
taker_fee_bps = 10
max_order_qty = 1000
"#;

/// The test configuration under the `unique_live` client-order-id rule, which the generator's
/// reused ids were written for.
fn config() -> Config {
    config_with(ClientOrderIdRule::UniqueLive)
}

fn config_with(rule: ClientOrderIdRule) -> Config {
    let mut c = Config::from_toml_str(CONFIG).expect("test config is valid");
    c.engine.client_order_ids = rule;
    c
}

/// Under the `increasing` rule, a new order's generated id `c` becomes `high + c` (fresh),
/// except about one in eight, which keeps an id at or below the user's mark (a resend).
fn adapt(cmd: &Command, engine: &Engine) -> Command {
    let m = engine.matcher();
    match *cmd {
        Command::NewOrder(mut o) if m.client_order_id_rule() == ClientOrderIdRule::Increasing => {
            let (c, high) = (o.client_order_id.0, m.client_order_id_high(o.user));
            o.client_order_id = ClientOrderId(if (o.price.0 as u64 + o.qty.0).is_multiple_of(8) {
                high.saturating_sub(c % 2)
            } else {
                high + c
            });
            Command::NewOrder(o)
        }
        other => other,
    }
}

// ------------------------------------------------------------------------------- generator

/// A mixed command stream around a moving mid price per symbol; a funding prelude first.
fn stream(seed: u64, len: usize) -> Vec<Command> {
    let mut r = Rng::new(seed);
    let mut cmds = Vec::with_capacity(len + 16);
    for user in 0..USERS {
        for currency in 0..3u16 {
            cmds.push(Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount: 20_000 + r.below(200_000),
            });
        }
    }
    let mut mids = [114i64, 90];
    let mut withdrawals = 0u64;
    while cmds.len() < len {
        let user = UserId(if r.chance(3) {
            USERS + r.below(2) as u32
        } else {
            r.below(u64::from(USERS)) as u32
        });
        let s = r.below(2) as usize;
        let symbol = SymbolId(if r.chance(2) { 7 } else { s as u16 });
        let (lo, hi) = BANDS[s];
        let mid = &mut mids[s];
        *mid = (*mid + r.below(5) as i64 - 2).clamp(lo + 12, hi - 12);
        let mid = *mid;
        let side = if r.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let toward = |p: i64| match side {
            Side::Buy => p,
            Side::Sell => -p,
        };
        let coid = ClientOrderId(1 + r.below(COIDS));
        let kind = r.below(100);
        let cmd = match kind {
            0..=49 => {
                let qty = Qty(if r.chance(5) { 0 } else { 1 + r.below(12) });
                let passive = Price(mid - toward(r.below(8) as i64));
                let aggressive = Price(mid + toward(r.below(6) as i64));
                let mut o = NewOrder::limit(user, symbol, coid, side, passive, qty);
                match r.below(14) {
                    0 => o.tif = TimeInForce::Ioc,
                    1 => {
                        o.tif = TimeInForce::Fok;
                        o.price = aggressive;
                    }
                    2 => o.post_only = true,
                    3 | 4 => o.display_qty = Qty(1 + r.below(qty.0.max(1))),
                    5 => {
                        o = NewOrder::market(user, symbol, coid, side, Price(mid + toward(8)), qty);
                    }
                    6..=8 => {
                        o.order_type = if r.chance(50) {
                            OrderType::StopLimit
                        } else {
                            OrderType::StopMarket
                        };
                        o.stop_price = Price(mid + toward(1 + r.below(4) as i64));
                        o.price = Price(mid + toward(2 + r.below(6) as i64));
                        if o.order_type == OrderType::StopMarket {
                            o.tif = TimeInForce::Ioc;
                        } else if r.chance(30) {
                            o.display_qty = Qty(1 + r.below(qty.0.max(1)));
                        }
                    }
                    9 | 10 => o.price = aggressive,
                    11 => o.price = Price(if r.chance(50) { lo - 1 } else { hi + 1 }),
                    12 => {
                        // Good till a time near the stream's (commands are 1 µs apart): some
                        // expire within the stream, some are already past (rejected).
                        o.tif = TimeInForce::Gtd;
                        o.expire_at = (cmds.len() as u64 + r.below(300)).saturating_sub(5) * 1_000;
                    }
                    13 => {
                        o = NewOrder::market_budget(
                            user,
                            symbol,
                            coid,
                            Price(mid + 8),
                            1 + r.below(2_000_000),
                        );
                        if r.chance(30) {
                            o.qty = Qty(1 + r.below(12));
                        }
                    }
                    _ => {}
                }
                o.stp = match r.below(8) {
                    0 => StpMode::CancelNewest,
                    1 => StpMode::CancelOldest,
                    2 => StpMode::CancelBoth,
                    3 => StpMode::Decrement,
                    _ => StpMode::None,
                };
                Command::NewOrder(o)
            }
            50..=64 => Command::Cancel {
                user,
                symbol,
                client_order_id: coid,
            },
            65..=76 => Command::Amend {
                user,
                symbol,
                client_order_id: coid,
                price: Price(mid - toward(r.below(8) as i64)),
                qty: Qty(r.below(14)),
            },
            77..=79 => Command::MassCancel {
                user,
                symbol: r.chance(50).then_some(symbol),
                on_disconnect: user.0 % 2 == 1,
            },
            80..=87 => Command::Deposit {
                user,
                currency: CurrencyId(r.below(4) as u16),
                amount: if r.chance(3) {
                    u64::MAX - r.below(10)
                } else {
                    r.below(50_000)
                },
            },
            88..=92 => {
                withdrawals += 1;
                Command::Withdraw {
                    user,
                    currency: CurrencyId(r.below(3) as u16),
                    amount: r.below(30_000),
                }
            }
            93..=97 => Command::ApproveWithdrawal {
                operator: OperatorId(OPERATORS[0] - 1 + r.below(4) as u32),
                withdrawal_id: WithdrawalId(1 + r.below(withdrawals + 1)),
            },
            98 => Command::Tick,
            _ => Command::RejectWithdrawal {
                operator: OperatorId(OPERATORS[r.below(3) as usize]),
                withdrawal_id: WithdrawalId(1 + r.below(withdrawals + 1)),
            },
        };
        cmds.push(cmd);
    }
    cmds
}

// ------------------------------------------------------------------------------- helpers

fn snapshot(engine: &Engine) -> Vec<u8> {
    let mut bytes = Vec::new();
    engine.write_snapshot(&mut bytes);
    bytes
}

fn step(engine: &mut Engine, cmd: &Command) -> Vec<Event> {
    let mut events = Vec::new();
    // Engine time moves 1 µs a command, so snapshots carry it (and trade ids) too.
    let ts = engine.now_ns() + 1_000;
    engine.process_at(ts, cmd, &mut |e: &Event| events.push(*e));
    events
}

/// Restores a copy of `engine` from its snapshot and checks the copy agrees at once.
fn restore(config: &Config, engine: &Engine) -> Engine {
    let bytes = snapshot(engine);
    let copy = Engine::from_snapshot(config, engine.risk_mode(), &bytes)
        .unwrap_or_else(|e| panic!("a fresh snapshot must restore: {e}"));
    assert_eq!(copy.state_hash(), engine.state_hash());
    assert_eq!(snapshot(&copy), bytes, "re-encoding differs");
    copy
}

/// Runs `cmds` into one engine, restoring copies at `cuts`, and requires every engine alive to
/// agree after every command.
fn run_with_restores(
    risk: RiskMode,
    rule: ClientOrderIdRule,
    cmds: &[Command],
    cuts: [usize; 2],
) -> Result<(), String> {
    let config = config_with(rule);
    let mut engines = vec![Engine::with_risk(&config, risk).unwrap()];
    for (i, cmd) in cmds.iter().enumerate() {
        let cmd = &adapt(cmd, &engines[0]);
        for &cut in &cuts {
            if cut == i {
                let last = engines.last().expect("one engine at least");
                let copy = restore(&config, last);
                engines.push(copy);
            }
        }
        let first = step(&mut engines[0], cmd);
        let hash = engines[0].state_hash();
        for (k, e) in engines.iter_mut().enumerate().skip(1) {
            let events = step(e, cmd);
            if events != first {
                return Err(format!(
                    "command {i} {cmd:?}: engine {k} emitted\n{events:#?}\nengine 0 emitted\n{first:#?}"
                ));
            }
            if e.state_hash() != hash {
                return Err(format!("command {i} {cmd:?}: engine {k}'s hash differs"));
            }
        }
        if risk == RiskMode::On {
            for e in &engines {
                e.accounts()
                    .check_conservation()
                    .map_err(|v| format!("command {i}: {v}"))?;
            }
        }
    }
    let reference = snapshot(&engines[0]);
    for (k, e) in engines.iter().enumerate().skip(1) {
        if snapshot(e) != reference {
            return Err(format!("final snapshot of engine {k} differs"));
        }
    }
    Ok(())
}

/// A state with something of everything in it (risk on), for the corruption tests.
fn busy_snapshot(seed: u64) -> (Config, Engine, Vec<u8>) {
    let config = config();
    let mut engine = Engine::new(&config).unwrap();
    for cmd in stream(seed, 400) {
        step(&mut engine, &cmd);
    }
    let bytes = snapshot(&engine);
    (config, engine, bytes)
}

// ------------------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn restored_engines_behave_identically(
        seed in any::<u64>(),
        len in 40usize..500,
        a in 0.0f64..1.0,
        b in 0.0f64..1.0,
        risk_on in any::<bool>(),
        increasing in any::<bool>(),
    ) {
        let cmds = stream(seed, len);
        let (a, b) = ((a * len as f64) as usize, (b * len as f64) as usize);
        let risk = if risk_on { RiskMode::On } else { RiskMode::Off };
        let rule = if increasing {
            ClientOrderIdRule::Increasing
        } else {
            ClientOrderIdRule::UniqueLive
        };
        if let Err(diff) = run_with_restores(risk, rule, &cmds, [a.min(b), a.max(b)]) {
            prop_assert!(false, "seed {seed}, len {len}, cuts {a} {b}, {risk:?}, {rule:?}: {diff}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_snapshots_never_panic(
        seed in 0u64..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (config, _, mut bytes) = busy_snapshot(seed);
        for (at, flip) in edits {
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        match Engine::from_snapshot(&config, RiskMode::On, &bytes) {
            Ok(engine) => prop_assert_eq!(snapshot(&engine), bytes),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn every_prefix_restores() {
    for risk in [RiskMode::On, RiskMode::Off] {
        let config = config();
        let mut engine = Engine::with_risk(&config, risk).unwrap();
        restore(&config, &engine);
        for cmd in stream(0xfeed, 600) {
            step(&mut engine, &cmd);
            restore(&config, &engine);
        }
    }
}

#[test]
fn every_truncation_fails() {
    let (config, _, bytes) = busy_snapshot(1);
    for len in 0..bytes.len() {
        let err = Engine::from_snapshot(&config, RiskMode::On, &bytes[..len]).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Truncated { .. }),
            "cut at {len}: {err}"
        );
    }
}

/// The generator must reach the states worth snapshotting, or the properties mean little.
#[test]
fn generator_reaches_interesting_states() {
    let config = config();
    let (mut triggers, mut pool_full, mut trades, mut approvals) = (0, 0, 0, 0);
    let (mut waiting_stops, mut icebergs, mut half_approved, mut full_pool) = (0, 0, 0, 0);
    for seed in 0..8 {
        let mut engine = Engine::new(&config).unwrap();
        for cmd in stream(seed, 500) {
            for e in step(&mut engine, &cmd) {
                match e {
                    Event::Triggered { .. } => triggers += 1,
                    Event::Trade(_) => trades += 1,
                    Event::Rejected {
                        code: RejectCode::OrderPoolFull,
                        ..
                    } => pool_full += 1,
                    Event::WithdrawalCompleted { .. } => approvals += 1,
                    _ => {}
                }
            }
            for s in 0..2 {
                engine.for_each_order(SymbolId(s), |section, v| match section {
                    ringbook_engine::book::BookSection::BuyStops
                    | ringbook_engine::book::BookSection::SellStops => waiting_stops += 1,
                    _ if v.display_qty.0 != 0 => icebergs += 1,
                    _ => {}
                });
            }
            half_approved += engine
                .accounts()
                .pending_withdrawals()
                .filter(|w| w.first_approval.is_some())
                .count();
            if engine.matcher().live_orders() == config.capacity.orders_max {
                full_pool += 1;
            }
        }
    }
    let seen = [
        ("triggers", triggers),
        ("pool-full rejects", pool_full),
        ("trades", trades),
        ("completed withdrawals", approvals),
        ("states with waiting stops", waiting_stops),
        ("states with icebergs", icebergs),
        ("states with half-approved withdrawals", half_approved),
        ("states with a full pool", full_pool),
    ];
    for (what, n) in seen {
        assert!(n > 10, "the generator reached too few {what}: {n}");
    }
}

// ------------------------------------------------------------------------------- targeted

/// Offset of the first order record in a snapshot of the test config (two symbols): next order
/// id, engine time, symbol count, per symbol last price and last trade id, order count.
const FIRST_ORDER: usize = SNAPSHOT_HEADER_BYTES + 8 + 8 + 2 + 2 * 16 + 4;

fn order_count(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[FIRST_ORDER - 4..FIRST_ORDER].try_into().unwrap())
}

#[test]
fn rule_breaking_snapshots_are_refused() {
    let (config, engine, bytes) = busy_snapshot(2);
    assert!(order_count(&bytes) >= 2, "need orders to corrupt");
    let restore = |b: &[u8]| Engine::from_snapshot(&config, RiskMode::On, b).map(|_| ());
    assert_eq!(restore(&bytes), Ok(()));
    assert_eq!(read_header(&bytes).unwrap().state_hash, engine.state_hash());

    let invalid = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        restore(&b).unwrap_err()
    };
    let price = FIRST_ORDER + 28;
    // A price below the band.
    assert!(matches!(
        invalid(&|b| b[price..price + 8].copy_from_slice(&1i64.to_le_bytes())),
        SnapshotError::Invalid { .. }
    ));
    // An unknown section.
    assert!(matches!(
        invalid(&|b| b[FIRST_ORDER] = 9),
        SnapshotError::Invalid { .. }
    ));
    // Two orders swapped: out of canonical order, or a FIFO changed so the hash differs.
    let second = FIRST_ORDER + ORDER_RECORD_BYTES;
    let swapped = invalid(&|b| {
        let first: Vec<u8> = b[FIRST_ORDER..second].to_vec();
        b.copy_within(second..second + ORDER_RECORD_BYTES, FIRST_ORDER);
        b[second..second + ORDER_RECORD_BYTES].copy_from_slice(&first);
    });
    assert!(
        matches!(
            swapped,
            SnapshotError::Invalid { .. } | SnapshotError::HashMismatch { .. }
        ),
        "{swapped}"
    );
    // An order count beyond the pool: refused before anything is allocated for it.
    assert_eq!(
        invalid(&|b| b[FIRST_ORDER - 4..FIRST_ORDER].copy_from_slice(&u32::MAX.to_le_bytes())),
        SnapshotError::CountOutOfRange {
            what: "live orders",
            count: u64::from(u32::MAX),
            max: 20
        }
    );
    // Symbol 0 has traded: a last trade id of 0 contradicts its last price; another id is
    // consistent but not the state the hash was taken of.
    let trade_id = SNAPSHOT_HEADER_BYTES + 8 + 8 + 2 + 8;
    assert_ne!(
        &bytes[trade_id..trade_id + 8],
        &0u64.to_le_bytes(),
        "symbol 0 traded"
    );
    assert!(matches!(
        invalid(&|b| b[trade_id..trade_id + 8].copy_from_slice(&0u64.to_le_bytes())),
        SnapshotError::Invalid { .. }
    ));
    assert!(matches!(
        invalid(&|b| b[trade_id] ^= 1),
        SnapshotError::HashMismatch { .. }
    ));
    // Engine time is in the hash too.
    assert!(matches!(
        invalid(&|b| b[SNAPSHOT_HEADER_BYTES + 8] ^= 1),
        SnapshotError::HashMismatch { .. }
    ));
    // A config fingerprint that is not this config's.
    let fp = config_fingerprint(&config);
    assert_eq!(
        invalid(&|b| b[12..20].copy_from_slice(&(fp ^ 1).to_le_bytes())),
        SnapshotError::ConfigMismatch {
            snapshot: fp ^ 1,
            config: fp
        }
    );
}

#[test]
fn locks_must_match_orders() {
    // Moving one unit from a user's available to locked keeps conservation but breaks the lock
    // rule; find the accounts by writing a snapshot with no orders at all.
    let config = config();
    let mut engine = Engine::new(&config).unwrap();
    step(
        &mut engine,
        &Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(0),
            amount: 100,
        },
    );
    let bytes = snapshot(&engine);
    // Accounts section: currencies u16, open count u32, then user u32, available u64, locked u64.
    let user_row = FIRST_ORDER + 4 /* no user lists */ + 4 /* no client order id marks */
        + 4 /* no filled notionals */ + 4 /* no expiry times */
        + 4 /* no finished-order windows */ + 2 + 4;
    assert_eq!(&bytes[user_row..user_row + 4], &1u32.to_le_bytes());
    let mut b = bytes.clone();
    b[user_row + 4..user_row + 12].copy_from_slice(&99u64.to_le_bytes());
    b[user_row + 12..user_row + 20].copy_from_slice(&1u64.to_le_bytes());
    assert_eq!(
        Engine::from_snapshot(&config, RiskMode::On, &b).unwrap_err(),
        SnapshotError::Invalid {
            what: "a locked balance differs from what its orders and withdrawals lock"
        }
    );
    // Breaking conservation instead.
    let mut b = bytes.clone();
    b[user_row + 4..user_row + 12].copy_from_slice(&101u64.to_le_bytes());
    assert_eq!(
        Engine::from_snapshot(&config, RiskMode::On, &b).unwrap_err(),
        SnapshotError::Invalid {
            what: "balances plus fees do not add up to the supply"
        }
    );
}

#[test]
fn risk_off_snapshot_has_empty_accounts_and_restores_as_off_only() {
    let config = config();
    let mut engine = Engine::with_risk(&config, RiskMode::Off).unwrap();
    for cmd in stream(3, 200) {
        step(&mut engine, &cmd);
    }
    let bytes = snapshot(&engine);
    assert_eq!(read_header(&bytes).unwrap().risk, RiskMode::Off);
    assert!(matches!(
        Engine::from_snapshot(&config, RiskMode::On, &bytes),
        Err(SnapshotError::RiskModeMismatch { .. })
    ));
    let back = Engine::from_snapshot(&config, RiskMode::Off, &bytes).unwrap();
    assert_eq!(back.state_hash(), engine.state_hash());
}

// ------------------------------------------------------------------------------- client order ids

/// The offset of the client-order-id marks section of a snapshot with no live orders.
const EMPTY_BOOK_MARKS: usize = FIRST_ORDER + 4 /* no user lists */;

#[test]
fn client_order_id_marks_survive_a_restore_and_are_checked() {
    let config = config_with(ClientOrderIdRule::Increasing);
    let mut engine = Engine::new(&config).unwrap();
    for (user, currency) in [(1, 1), (2, 0)] {
        step(
            &mut engine,
            &Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount: 10_000,
            },
        );
    }
    let sell = NewOrder::limit(
        UserId(1),
        SymbolId(0),
        ClientOrderId(4),
        Side::Sell,
        Price(110),
        Qty(5),
    );
    let ioc = NewOrder {
        tif: TimeInForce::Ioc,
        ..NewOrder::limit(
            UserId(2),
            SymbolId(0),
            ClientOrderId(9),
            Side::Buy,
            Price(110),
            Qty(5),
        )
    };
    step(&mut engine, &Command::NewOrder(sell));
    assert!(step(&mut engine, &Command::NewOrder(ioc))
        .iter()
        .any(|e| matches!(e, Event::Trade(_))));
    assert_eq!(engine.matcher().live_orders(), 0);
    let bytes = snapshot(&engine);
    // Two marks (users 1 and 2), in user order.
    let at = EMPTY_BOOK_MARKS;
    assert_eq!(&bytes[at..at + 4], &2u32.to_le_bytes());
    assert_eq!(&bytes[at + 4..at + 8], &1u32.to_le_bytes());
    assert_eq!(&bytes[at + 8..at + 16], &4u64.to_le_bytes());
    assert_eq!(&bytes[at + 16..at + 20], &2u32.to_le_bytes());
    assert_eq!(&bytes[at + 20..at + 28], &9u64.to_le_bytes());

    // The restored engine refuses the resend of the finished order.
    let mut restored = Engine::from_snapshot(&config, RiskMode::On, &bytes).unwrap();
    assert_eq!(restored.matcher().client_order_id_high(UserId(2)), 9);
    let resend = step(&mut restored, &Command::NewOrder(ioc));
    assert!(
        matches!(
            resend[..],
            [Event::Rejected {
                code: RejectCode::DuplicateClientOrderId,
                ..
            }]
        ),
        "{resend:?}"
    );

    // Corrupt marks: a lowered mark changes the hash; zero, disorder and unknown users are
    // refused by name; a count beyond users_max before anything is read.
    let restore = |b: &[u8]| Engine::from_snapshot(&config, RiskMode::On, b).map(|_| ());
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        restore(&b).unwrap_err()
    };
    assert!(matches!(
        edit(&|b| b[at + 20..at + 28].copy_from_slice(&8u64.to_le_bytes())),
        SnapshotError::HashMismatch { .. }
    ));
    assert_eq!(
        edit(&|b| b[at + 20..at + 28].copy_from_slice(&0u64.to_le_bytes())),
        SnapshotError::Invalid {
            what: "a client order id mark is zero"
        }
    );
    assert_eq!(
        edit(&|b| b[at + 16..at + 20].copy_from_slice(&1u32.to_le_bytes())),
        SnapshotError::Invalid {
            what: "client order id marks are not in ascending user order"
        }
    );
    assert_eq!(
        edit(&|b| b[at + 16..at + 20].copy_from_slice(&USERS.to_le_bytes())),
        SnapshotError::Invalid {
            what: "a client order id mark names an unknown user"
        }
    );
    assert_eq!(
        edit(&|b| b[at..at + 4].copy_from_slice(&(USERS + 1).to_le_bytes())),
        SnapshotError::CountOutOfRange {
            what: "client order id marks",
            count: u64::from(USERS + 1),
            max: u64::from(USERS)
        }
    );
    // The rule is part of the configuration fingerprint: a snapshot taken under one rule does
    // not restore under the other.
    assert!(matches!(
        Engine::from_snapshot(
            &config_with(ClientOrderIdRule::UniqueLive),
            RiskMode::On,
            &bytes
        ),
        Err(SnapshotError::ConfigMismatch { .. })
    ));
}

#[test]
fn a_live_order_above_its_users_mark_is_refused() {
    let config = config_with(ClientOrderIdRule::Increasing);
    let mut engine = Engine::new(&config).unwrap();
    step(
        &mut engine,
        &Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(1),
            amount: 100,
        },
    );
    step(
        &mut engine,
        &Command::NewOrder(NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(7),
            Side::Sell,
            Price(110),
            Qty(1),
        )),
    );
    let bytes = snapshot(&engine);
    // One order record, one user list (user, count, one order id), then the marks.
    let at = FIRST_ORDER + ORDER_RECORD_BYTES + 4 + 4 + 4 + 8;
    assert_eq!(&bytes[at..at + 4], &1u32.to_le_bytes());
    assert_eq!(&bytes[at + 8..at + 16], &7u64.to_le_bytes());
    let mut b = bytes.clone();
    b[at + 8..at + 16].copy_from_slice(&6u64.to_le_bytes());
    assert_eq!(
        Engine::from_snapshot(&config, RiskMode::On, &b).unwrap_err(),
        SnapshotError::Invalid {
            what: "a live order's client order id is above its user's mark"
        }
    );
}

#[test]
fn version_1_to_4_snapshots_are_refused() {
    for old in [1u16, 2, 3, 4] {
        let (config, _, mut bytes) = busy_snapshot(3);
        bytes[8..10].copy_from_slice(&old.to_le_bytes());
        assert_eq!(
            Engine::from_snapshot(&config, RiskMode::On, &bytes).unwrap_err(),
            SnapshotError::UnsupportedVersion {
                found: old,
                supported: 5
            }
        );
    }
}

#[test]
fn finished_orders_survive_a_snapshot() {
    let (config, engine, bytes) = busy_snapshot(6);
    let restored = Engine::from_snapshot(&config, RiskMode::On, &bytes).unwrap();
    let (mut finished, mut live_filled) = (0, 0);
    for user in 0..config.capacity.users_max {
        let user = UserId(user);
        for coid in 0..=engine.matcher().client_order_id_high(user) {
            let before = engine.matcher().order_status(user, ClientOrderId(coid));
            assert_eq!(
                before,
                restored.matcher().order_status(user, ClientOrderId(coid))
            );
            finished += usize::from(before.1.is_some());
            live_filled += usize::from(before.0.is_some() && before.2 != 0);
        }
    }
    assert!(finished > 0, "the run finished no order");
    assert!(live_filled > 0, "no live order had filled anything");
}
