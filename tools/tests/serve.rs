//! `ringbook serve` end to end: the real binary with the journaled pipeline behind it, on a
//! free loopback port, driven through the client library.
//!
//! `cargo test -p ringbook-tools --test serve`
//!
//! - restart recovery: deposits, orders and trades; SIGTERM (exit 0, state hash logged);
//!   `ringbook journal replay` prints the same hash; a restart on the same journal carries on
//!   (the partly filled order is still on the book with its fill history, balances continue).
//! - queries: sent right behind orders without waiting, their replies already see those orders
//!   (order status, open orders, balances with the orders' locks, book levels); denied for
//!   another account; an unknown symbol is the engine's reject; replay = shutdown hash. Once
//!   with the fused pipeline, once in the `inline` layout (engine on the gateway thread).
//! - back-pressure: a tiny pipeline ring, one client floods, every order gets exactly one
//!   answer, the server counted ring-full pauses, and another client's order still completes.
//!
//! Every wait is bounded (a timeout that only fails a broken run); nothing passes or fails on
//! wall-clock speed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command as Proc, ExitStatus};
use std::time::{Duration, Instant};

use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::Client;
use ringbook_engine::prelude::*;

mod support;
use support::{state_hash, Server, BIN, WAIT};

/// `ringbook serve` on a free port with journal `journal`, its web edge on another free port
/// (never 8080: tests run in parallel), up and listening.
fn start(journal: &Path, extra: &[&str]) -> Server {
    let journal = journal.to_str().expect("a UTF-8 path");
    let mut args = vec!["serve", "--journal", journal, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(&["--http", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// SIGTERM, then the exit status, the state hash logged at shutdown, and the whole log.
fn terminate(srv: Server) -> (ExitStatus, String, Vec<String>) {
    let (status, log) = srv.terminate();
    (status, state_hash(&log), log)
}

/// A logged-in client.
struct Conn {
    c: Client,
}

impl Conn {
    fn send(&mut self, m: &ClientMsg) {
        self.c.send(m).unwrap();
    }

    /// Receives until `f` matches (skipping others), at most 100 000 messages.
    fn until(&mut self, mut f: impl FnMut(&ServerMsg) -> bool) -> ServerMsg {
        let mut skipped = Vec::new();
        for _ in 0..100_000 {
            match self.c.recv_timeout(WAIT) {
                Ok(Some(m)) => {
                    if f(&m) {
                        return m;
                    }
                    if skipped.len() < 32 {
                        skipped.push(m);
                    }
                }
                Ok(None) => panic!("timed out waiting; skipped {skipped:#?}"),
                Err(e) => panic!("{e:?}; skipped {skipped:#?}"),
            }
        }
        panic!("no matching message in 100 000");
    }
}

fn login(addr: SocketAddr, who: &str, session: u32) -> Conn {
    let mut c = Client::connect(addr).unwrap();
    support::login_patient(&mut c, who, session);
    Conn { c }
}

fn order(user: u32, coid: u64, side: Side, price: i64, qty: u64) -> ClientMsg {
    Command::NewOrder(NewOrder::limit(
        UserId(user),
        SymbolId(0),
        ClientOrderId(coid),
        side,
        Price(price),
        Qty(qty),
    ))
    .into()
}

/// `ringbook journal replay DIR`'s state hash.
fn replay_hash(dir: &Path) -> String {
    let out = Proc::new(BIN)
        .args(["journal", "replay"])
        .arg(dir)
        .output()
        .expect("run journal replay");
    assert!(
        out.status.success(),
        "journal replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""event":"state_hash""#))
        .expect("a state_hash line");
    line.split(r#""hash":""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn restart_recovers_books_and_balances_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let (krw, btc) = (0u16, 2u16);

    // Run 1: deposits, a resting sell partly filled, another resting sell.
    let srv = start(&journal, &[]);
    let addr = srv.addr;
    let mut ops = login(addr, "ops1", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    for (user, currency, amount) in [(1, btc, 1_000_000), (2, krw, 10_000_000)] {
        ops.send(
            &Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount,
            }
            .into(),
        );
        ops.until(|m| matches!(m, ServerMsg::Deposited { user: u, .. } if *u == user));
    }
    alice.send(&order(1, 1, Side::Sell, 15_000, 10));
    let ServerMsg::Accepted { order_id, .. } = alice.until(|m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )
    }) else {
        unreachable!()
    };
    alice.send(&order(1, 2, Side::Sell, 16_000, 3));
    alice.until(|m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 2,
                ..
            }
        )
    });
    bob.send(&order(2, 1, Side::Buy, 15_000, 4));
    bob.until(|m| {
        matches!(
            m,
            ServerMsg::Fill {
                qty: 4,
                leaves_qty: 0,
                ..
            }
        )
    });
    let ServerMsg::Fill { fee: fee1, .. } = alice.until(|m| {
        matches!(
            m,
            ServerMsg::Fill {
                client_order_id: 1,
                qty: 4,
                leaves_qty: 6,
                cum_qty: 4,
                ..
            }
        )
    }) else {
        unreachable!()
    };
    let (status, hash1, log) = terminate(srv);
    assert!(status.success(), "serve exited {status:?}; log: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("shutting down")),
        "the graceful path ran: {log:#?}"
    );
    assert_eq!(
        replay_hash(&journal),
        hash1,
        "journal replay = hash at shutdown"
    );
    drop((ops, alice, bob));

    // Run 2: same journal; the book and balances carry on.
    let srv = start(&journal, &[]);
    let rec = srv
        .log
        .iter()
        .find(|l| l.contains("recovered"))
        .cloned()
        .unwrap();
    assert!(rec.contains("records replayed"), "{rec}");
    assert!(!rec.contains(" 0 records replayed"), "{rec}");
    let addr = srv.addr;
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    // Bob takes the rest of alice's first order: it matches against the recovered book, with
    // its recovered fill history (cum_qty 10 of 10).
    bob.send(&order(2, 2, Side::Buy, 15_000, 6));
    bob.until(|m| {
        matches!(
            m,
            ServerMsg::Fill {
                qty: 6,
                price: 15_000,
                leaves_qty: 0,
                ..
            }
        )
    });
    let ServerMsg::Fill {
        fee: fee2,
        order_id: oid,
        ..
    } = alice.until(|m| {
        matches!(
            m,
            ServerMsg::Fill {
                client_order_id: 1,
                qty: 6,
                leaves_qty: 0,
                cum_qty: 10,
                ..
            }
        )
    })
    else {
        unreachable!()
    };
    assert_eq!(oid, order_id, "the same order, recovered");
    // The other recovered order can be cancelled.
    alice.send(
        &Command::Cancel {
            user: UserId(1),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(2),
        }
        .into(),
    );
    alice.until(|m| {
        matches!(
            m,
            ServerMsg::Cancelled {
                client_order_id: 2,
                qty: 3,
                ..
            }
        )
    });
    // Balances continued: alice can withdraw exactly what she should have, not a unit more
    // (BTC: 1 000 000 deposited, 10 lots of 10 000 sold; KRW: 10 lots at 15 000 less fees).
    let expect = [(btc, 1_000_000 - 100_000), (krw, 10 * 15_000 - fee1 - fee2)];
    for (currency, available) in expect {
        for (amount, ok) in [(available + 1, false), (available, true)] {
            alice.send(
                &Command::Withdraw {
                    user: UserId(1),
                    currency: CurrencyId(currency),
                    amount,
                }
                .into(),
            );
            let m = alice.until(|m| {
                matches!(
                    m,
                    ServerMsg::WithdrawalRequested { .. } | ServerMsg::Rejected { .. }
                )
            });
            assert_eq!(
                matches!(m, ServerMsg::WithdrawalRequested { amount: a, .. } if a == amount),
                ok,
                "withdraw {amount} of currency {currency}: {m:?}"
            );
        }
    }
    let (status, hash2, log) = terminate(srv);
    assert!(status.success(), "serve exited {status:?}; log: {log:#?}");
    assert_ne!(hash2, hash1);
    assert_eq!(replay_hash(&journal), hash2);
}

#[test]
fn a_full_ring_pauses_reading_loses_nothing_and_others_carry_on() {
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    // A 2-slot inbound ring and a pipeline that sleeps 1 ms whenever it finds it empty: the
    // gateway fills the ring long before the pipeline drains it.
    let srv = start(
        &journal,
        &[
            "--layout",
            "fused",
            "--ring-size",
            "2",
            "--wait",
            "sleep:1000",
        ],
    );
    let addr = srv.addr;
    let mut ops = login(addr, "ops1", 1);
    for user in [1, 2] {
        ops.send(
            &Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(0),
                amount: 1 << 40,
            }
            .into(),
        );
        ops.until(|m| matches!(m, ServerMsg::Deposited { user: u, .. } if *u == user));
    }
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    // Alice floods: every order in one go, from another thread, while this one reads.
    let mut bytes = Vec::new();
    for coid in 1..=N {
        Client::encode_into(
            &order(1, coid, Side::Buy, 100 + (coid % 50) as i64, 1),
            &mut bytes,
        );
    }
    let mut w = alice.c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    // Bob's order completes in the middle of the flood.
    bob.send(&order(2, 1, Side::Buy, 90, 1));
    bob.until(|m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )
    });
    let mut answers = vec![0u32; N as usize + 1];
    let mut answered = 0;
    while answered < N {
        let coid = match alice
            .until(|m| matches!(m, ServerMsg::Accepted { .. } | ServerMsg::Rejected { .. }))
        {
            ServerMsg::Accepted {
                client_order_id, ..
            }
            | ServerMsg::Rejected {
                client_order_id, ..
            } => client_order_id,
            _ => unreachable!(),
        };
        answers[coid as usize] += 1;
        answered += 1;
        if answered % 500 == 0 {
            alice.c.heartbeat().unwrap();
        }
    }
    writer.join().unwrap();
    assert!(
        answers[1..].iter().all(|&n| n == 1),
        "every order answered exactly once"
    );
    // Nothing more for alice (no duplicate answers) before a final round trip completes.
    alice.send(&order(1, N + 1, Side::Buy, 100, 1));
    let last =
        alice.until(|m| matches!(m, ServerMsg::Accepted { .. } | ServerMsg::Rejected { .. }));
    assert!(
        matches!(last, ServerMsg::Accepted { client_order_id, .. } if client_order_id == N + 1),
        "{last:?}"
    );
    let (status, _, log) = terminate(srv);
    assert!(status.success(), "{log:#?}");
    let line = log
        .iter()
        .find(|l| l.contains("back-pressure pauses"))
        .expect("gateway counters at shutdown");
    let pauses: u64 = line
        .split(" back-pressure pauses")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(pauses > 0, "the ring filled and reading paused: {line}");
}

#[test]
fn queries_through_the_journaled_pipeline_see_every_command_before_them() {
    queries_see_every_command_before_them(&["--layout", "fused"]);
}

#[test]
fn queries_and_orders_in_the_inline_layout_see_every_command_before_them() {
    // No pipeline thread: the gateway thread journals and processes each command itself.
    queries_see_every_command_before_them(&["--layout", "inline"]);
}

fn queries_see_every_command_before_them(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let btc = 2u16;
    let srv = start(&journal, flags);
    let addr = srv.addr;
    let mut ops = login(addr, "ops1", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    ops.send(
        &Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(btc),
            amount: 1_000_000,
        }
        .into(),
    );
    ops.until(|m| matches!(m, ServerMsg::Deposited { user: 1, .. }));

    // Two sells and, without waiting for their answers, four queries: queries are sequenced
    // behind the orders, so every reply must already see both orders.
    alice.send(&order(1, 1, Side::Sell, 15_000, 10));
    alice.send(&order(1, 2, Side::Sell, 16_000, 3));
    for q in [
        ClientMsg::OrderStatus {
            request_id: 1,
            user: UserId(1),
            client_order_id: ClientOrderId(2),
        },
        ClientMsg::OpenOrders {
            request_id: 2,
            user: UserId(1),
        },
        ClientMsg::Balances {
            request_id: 3,
            user: UserId(1),
        },
        ClientMsg::BookSnapshot {
            request_id: 4,
            symbol: SymbolId(0),
            depth: 5,
        },
        ClientMsg::OrderStatus {
            request_id: 5,
            user: UserId(1),
            client_order_id: ClientOrderId(77),
        },
    ] {
        alice.send(&q);
    }
    let mut replies = Vec::new();
    alice.until(|m| {
        let end = matches!(m, ServerMsg::OrderStatus { request_id: 5, .. });
        if !matches!(
            m,
            ServerMsg::Accepted { .. }
                | ServerMsg::Heartbeat
                | ServerMsg::Deposited { .. }
                | ServerMsg::BalanceUpdate { .. }
        ) {
            replies.push(*m);
        }
        end
    });
    let [ServerMsg::OrderStatus {
        request_id: 1,
        found: true,
        order: two,
        ..
    }, ServerMsg::OpenOrder {
        request_id: 2,
        order: first,
        ..
    }, ServerMsg::OpenOrder {
        request_id: 2,
        order: second,
        ..
    }, ServerMsg::OpenOrdersEnd {
        request_id: 2,
        count: 2,
        ..
    }, ref balances @ .., ServerMsg::BookLevels {
        request_id: 4,
        side: Side::Sell,
        count: 2,
        levels,
        ..
    }, ServerMsg::BookEnd {
        request_id: 4,
        bid_levels: 0,
        ask_levels: 2,
        ..
    }, ServerMsg::OrderStatus {
        request_id: 5,
        found: false,
        ..
    }] = replies[..]
    else {
        panic!("unexpected replies: {replies:#?}");
    };
    assert_eq!(
        (two.client_order_id, two.price, two.leaves_qty),
        (2, 16_000, 3)
    );
    assert_eq!((first.client_order_id, second.client_order_id), (1, 2));
    assert_eq!(levels[..2], [(15_000, 10), (16_000, 3)]);
    // Five currencies then the end; BTC holds the 13 lots (10 000 units each) the sells lock.
    assert_eq!(balances.len(), 6, "{balances:#?}");
    assert!(matches!(
        balances[btc as usize],
        ServerMsg::Balance {
            request_id: 3,
            available: 870_000,
            locked: 130_000,
            ..
        }
    ));
    assert!(matches!(
        balances[5],
        ServerMsg::BalancesEnd {
            request_id: 3,
            count: 5,
            ..
        }
    ));

    // A session asks only about its own account; an unknown symbol is the engine's reject.
    bob.send(&ClientMsg::Balances {
        request_id: 6,
        user: UserId(1),
    });
    let denied = bob.until(|m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(denied, ServerMsg::Rejected { code, .. } if code == RejectCode::NotYourAccount.code()),
        "{denied:?}"
    );
    bob.send(&ClientMsg::BookSnapshot {
        request_id: 7,
        symbol: SymbolId(99),
        depth: 5,
    });
    let unknown = bob.until(|m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(unknown, ServerMsg::Rejected { code, .. } if code == RejectCode::UnknownSymbol.code()),
        "{unknown:?}"
    );

    // Queries are journaled like any command and change nothing: replay gives the same hash.
    let (status, hash, log) = terminate(srv);
    assert!(status.success(), "serve exited {status:?}; log: {log:#?}");
    assert_eq!(replay_hash(&journal), hash);
    drop((ops, alice, bob));
}

/// Subscribes `feed` to depth and the 1m candles of symbol 0; returns the book once the
/// snapshot is complete, with the candles seen by then (the history follows the snapshot).
fn md_snapshot(
    feed: &mut Client,
) -> (
    ringbook_client::DepthBook,
    u64,
    Vec<ringbook_engine::marketdata::Candle>,
) {
    use ringbook_client::protocol::marketdata::{Channel, MdMsg, CANDLE_END};
    use ringbook_client::Received;
    use ringbook_engine::marketdata::Interval;
    feed.subscribe(1, SymbolId(0), Channel::Candles, Interval::M1)
        .unwrap();
    feed.subscribe(2, SymbolId(0), Channel::Depth, Interval::M1)
        .unwrap();
    let mut book = ringbook_client::DepthBook::new();
    let mut candles = Vec::new();
    let (mut seq, mut history_done) = (None, false);
    let deadline = Instant::now() + WAIT;
    while seq.is_none() || !history_done {
        assert!(Instant::now() < deadline, "no snapshot");
        match feed.recv_any_timeout(Duration::from_millis(200)).unwrap() {
            Some(Received::MarketData(MdMsg::Depth(f))) => {
                if let Some(s) = book.apply(&f).unwrap() {
                    seq = Some(s);
                }
            }
            Some(Received::MarketData(MdMsg::Candle { flags, candle, .. })) => {
                candles.push(candle);
                history_done |= flags & CANDLE_END != 0;
            }
            _ => {}
        }
    }
    (book, seq.unwrap(), candles)
}

#[test]
fn market_data_is_rebuilt_from_the_journal_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let srv = start(&journal, &[]);
    let addr = srv.addr;
    let mut ops = login(addr, "ops1", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    for (user, currency, amount) in [(1, 2u16, 1_000_000), (2, 0u16, 10_000_000)] {
        ops.send(
            &Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount,
            }
            .into(),
        );
        ops.until(|m| matches!(m, ServerMsg::Deposited { user: u, .. } if *u == user));
    }
    for (coid, price, qty) in [(1, 15_000, 10), (2, 16_000, 3)] {
        alice.send(&order(1, coid, Side::Sell, price, qty));
        alice.until(|m| matches!(m, ServerMsg::Accepted { client_order_id: c, .. } if *c == coid));
    }
    bob.send(&order(2, 1, Side::Buy, 15_000, 4));
    bob.until(|m| matches!(m, ServerMsg::Fill { qty: 4, .. }));
    let mut feed = login(addr, "feed", 1);
    let (book, seq, candles) = md_snapshot(&mut feed.c);
    let asks = vec![(Price(15_000), Qty(6), 1), (Price(16_000), Qty(3), 1)];
    assert_eq!(book.book().unwrap().levels(Side::Sell), asks);
    assert!(book.book().unwrap().levels(Side::Buy).is_empty());
    // Two orders rested, one trade: three updates.
    assert_eq!(seq, 3);
    assert_eq!(candles.len(), 1);
    assert_eq!((candles[0].volume, candles[0].trades), (4, 1));
    // The market-data login places nothing.
    feed.send(&order(1, 9, Side::Buy, 15_000, 1));
    feed.until(
        |m| matches!(m, ServerMsg::Rejected { code, .. } if *code == RejectCode::UserOnly.code()),
    );
    // `ringbook md --json`: the snapshot, the ticker; the book it rebuilt. The subscriptions'
    // three acknowledgements print nothing and are not counted (they were, and
    // `--max-messages 1` printed nothing at all).
    let out = Proc::new(BIN)
        .args([
            "md",
            "--addr",
            &addr.to_string(),
            "--symbol",
            "BTC-KRW",
            "--json",
        ])
        .args(["--max-messages", "2"])
        .output()
        .expect("run ringbook md");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Depth, its book line, the ticker.
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains(
            r#"{"event":"md_book","symbol":"BTC-KRW","md_seq":3,"bids":[],"asks":[[15000,6,1],[16000,3,1]]}"#
        ),
        "{text}"
    );
    assert!(text.contains(r#""snapshot":true,"end":true"#), "{text}");
    assert!(
        text.contains(r#"{"event":"md_ticker","symbol":"BTC-KRW""#)
            && text.contains(r#""vwap":"15000.00000000""#),
        "{text}"
    );
    // A symbol the server does not have: refused by the server, said, exit 2 (it waited
    // forever: a red-team finding).
    let out = Proc::new(BIN)
        .args(["md", "--addr", &addr.to_string(), "--symbol", "7", "--json"])
        .output()
        .expect("run ringbook md");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused the subscription to 7: 3001 UNKNOWN_SYMBOL"),
        "{stderr}"
    );
    // A `ringbook md` following when the server shuts down exits 2 with the reason (it
    // exited 0 on a connection closed without a word: a red-team finding).
    let mut follower = Proc::new(BIN)
        .args([
            "md",
            "--addr",
            &addr.to_string(),
            "--symbol",
            "BTC-KRW",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ringbook md");
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(follower.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(r#""snapshot":true"#), "{first}");
    drop((ops, alice, bob, feed));
    let (status, _, _) = terminate(srv);
    assert!(status.success());
    let out = follower.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the server closed the session: ")
            || stderr.contains("the server closed the connection"),
        "{stderr}"
    );

    // Restarted on the same journal: the same book at the same md_seq, the same candle.
    let srv = start(&journal, &[]);
    let mut feed = login(srv.addr, "feed", 1);
    let (book2, seq2, candles2) = md_snapshot(&mut feed.c);
    assert_eq!(book2.book().unwrap().levels(Side::Sell), asks);
    assert_eq!(seq2, seq);
    assert_eq!(candles2, candles);
    drop(feed);
    let (status, _, _) = terminate(srv);
    assert!(status.success());
}

#[test]
fn ringbook_md_names_symbols_as_the_server_does() {
    // A server whose first symbol is not the embedded default's: `ringbook md` resolves the
    // name from the server's reference data, without being given its configuration (it looked
    // the name up in the embedded default, so "XBT-KRW" was unknown and "BTC-KRW" subscribed
    // to whatever the server's symbol 0 was).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("xbt.toml");
    let text = ringbook_engine::config::DEFAULT_CONFIG_TOML
        .replace("name = \"BTC-KRW\"", "name = \"XBT-KRW\"");
    assert_ne!(text, ringbook_engine::config::DEFAULT_CONFIG_TOML);
    std::fs::write(&config, text).unwrap();
    let srv = start(
        &dir.path().join("journal"),
        &["--config", config.to_str().unwrap()],
    );
    let addr = srv.addr.to_string();
    let md = |symbol: &str| {
        Proc::new(BIN)
            .args(["md", "--addr", &addr, "--symbol", symbol, "--json"])
            .args(["--max-messages", "1"])
            .output()
            .expect("run ringbook md")
    };
    let out = md("XBT-KRW");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#"{"event":"md_depth","symbol":"XBT-KRW""#)
            && stdout.contains(r#""snapshot":true"#),
        "{stdout}"
    );
    let out = md("BTC-KRW");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"unknown symbol "BTC-KRW" (this server has XBT-KRW, ETH-KRW, AAPL-USD)"#),
        "{stderr}"
    );
    let (status, _, _) = terminate(srv);
    assert!(status.success());
}

/// Unix nanoseconds now.
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Bob (funded once) places a GTD buy that expires `after` from now; returns its client id.
fn gtd_buy(bob: &mut Conn, coid: u64, after: Duration) -> u64 {
    let expire_at = wall_ns() + after.as_nanos() as u64;
    bob.send(
        &Command::NewOrder(NewOrder::limit_gtd(
            UserId(2),
            SymbolId(0),
            ClientOrderId(coid),
            Side::Buy,
            Price(14_000),
            Qty(1),
            expire_at,
        ))
        .into(),
    );
    bob.until(
        |m| matches!(m, ServerMsg::Accepted { client_order_id, .. } if *client_order_id == coid),
    );
    expire_at
}

/// Waits for the expiry of bob's order `coid` (no command of anyone's brings the time: only
/// the server's clock tick can) and checks that it came no earlier than `expire_at`.
fn expect_expired(bob: &mut Conn, coid: u64, expire_at: u64) {
    let m = bob.until(
        |m| matches!(m, ServerMsg::Cancelled { client_order_id, .. } if *client_order_id == coid),
    );
    let ServerMsg::Cancelled {
        reason, leaves_qty, ..
    } = m
    else {
        unreachable!()
    };
    assert_eq!((reason, leaves_qty), (CancelReason::Expired, 0), "{m:?}");
    assert!(wall_ns() >= expire_at, "expired before its time: {m:?}");
}

#[test]
fn an_idle_server_expires_gtd_orders_on_time_in_every_layout_and_after_a_restart() {
    for layout in ["inline", "fused", "split"] {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let srv = start(&journal, &["--layout", layout]);
        let mut ops = login(srv.addr, "ops1", 1);
        let mut bob = login(srv.addr, "bob", 1);
        ops.send(
            &Command::Deposit {
                user: UserId(2),
                currency: CurrencyId(0),
                amount: 1_000_000,
            }
            .into(),
        );
        ops.until(|m| matches!(m, ServerMsg::Deposited { .. }));
        // Expires while the server is idle. The lifetimes are generous on purpose: an order
        // whose expiry passed before the engine sequenced it is rejected (EXPIRY_IN_PAST), and
        // order 2 must outlive a shutdown, a restart and a recovery, even on a loaded box.
        let at = gtd_buy(&mut bob, 1, Duration::from_secs(2));
        expect_expired(&mut bob, 1, at);
        // Still live at shutdown: the restarted server recovers it and expires it on time.
        let at = gtd_buy(&mut bob, 2, Duration::from_secs(10));
        drop((ops, bob));
        let (status, hash, log) = terminate(srv);
        assert!(status.success(), "{layout}: {log:#?}");
        let srv = start(&journal, &["--layout", layout]);
        let mut bob = login(srv.addr, "bob", 2);
        expect_expired(&mut bob, 2, at);
        drop(bob);
        let (status, hash2, log) = terminate(srv);
        assert!(status.success(), "{layout}: {log:#?}");
        assert_ne!(hash, hash2, "{layout}: the expiry changed the state");
        // The ticks were journaled: a replay expires the same orders at the same commands.
        assert_eq!(replay_hash(&journal), hash2, "{layout}");
    }
}
