//! Run: `cargo run --release -p ringbook-engine --example embed`
//!
//! ringbook's matching core embedded in a program of your own: build an engine from the default
//! configuration, fund two accounts, place a few orders, read the events, the book and the
//! balances (directly, and as sequenced queries), print the state hash.

use ringbook_engine::prelude::*;

fn main() -> Result<(), ConfigError> {
    let config = Config::default();
    let btc = config.symbol_id("BTC-KRW").expect("in the default config");
    let mut engine = Engine::new(&config)?;
    let mut print = |e: &Event| println!("{e:?}");

    let (alice, bob) = (UserId(1), UserId(2));
    // Risk is on by default: fund the accounts first (deposits are operator actions).
    let (btc_units, krw) = (
        config.currency_id("BTC").unwrap(),
        config.currency_id("KRW").unwrap(),
    );
    engine.process(
        &Command::Deposit {
            user: alice,
            currency: btc_units,
            amount: 50_000,
        },
        &mut print,
    );
    engine.process(
        &Command::Deposit {
            user: bob,
            currency: krw,
            amount: 1_000_000,
        },
        &mut print,
    );
    // Alice offers 5 lots in two orders; Bob buys 7 with a limit that reaches both.
    let orders = [
        NewOrder::limit(
            alice,
            btc,
            ClientOrderId(1),
            Side::Sell,
            Price(15_000),
            Qty(3),
        ),
        NewOrder::limit(
            alice,
            btc,
            ClientOrderId(2),
            Side::Sell,
            Price(15_010),
            Qty(2),
        ),
        NewOrder::limit(bob, btc, ClientOrderId(1), Side::Buy, Price(15_020), Qty(7)),
    ];
    for order in orders {
        engine.process(&Command::NewOrder(order), &mut print);
    }
    // Bob's remaining 2 lots rest at his limit.
    engine.depth(btc, Side::Buy, 10, |price, qty| {
        println!("bid {price} x {qty}")
    });
    for (name, user) in [("alice", alice), ("bob", bob)] {
        let (b, k) = (engine.balance(user, btc_units), engine.balance(user, krw));
        println!(
            "{name}: {} sat (+{} locked), {} KRW (+{} locked)",
            b.available, b.locked, k.available, k.locked
        );
    }
    // The same reads as commands: sequenced, answered by reply events, nothing changed. This
    // is how a pipeline's caller asks (its engine lives on the pipeline's threads).
    let hash = engine.state_hash();
    for query in [
        Query::OpenOrders {
            user: bob,
            limit: 100,
        },
        Query::Book {
            symbol: btc,
            depth: 5,
        },
        Query::Balances { user: alice },
    ] {
        engine.process(&Command::Query(query), &mut |e: &Event| match e {
            Event::OpenOrder(o) => println!(
                "open order {} {:?} {} x {}",
                o.order_id, o.side, o.price, o.leaves_qty
            ),
            Event::BookLevel {
                side, price, qty, ..
            } => println!("level {side:?} {price} x {qty}"),
            Event::Balance {
                currency,
                available,
                locked,
                ..
            } => println!("alice currency {currency}: {available} (+{locked} locked)"),
            other => println!("{other:?}"),
        });
    }
    assert_eq!(engine.state_hash(), hash);
    println!("state hash {hash}");
    Ok(())
}
