//! A resent order is never executed twice (docs/protocol.md, "Idempotency"), through the real
//! `ringbook serve` binary and its default configuration (`client_order_ids = "increasing"`).
//!
//! `cargo test -p ringbook-tools --test idempotency`
//!
//! - `a_resend_after_sigkill_and_restart_is_a_duplicate`: an IOC that fills, SIGKILL, a restart
//!   on the same journal (every gateway session is gone), the same order resent by a new
//!   session: `DUPLICATE_CLIENT_ORDER_ID`, no fill, balances and the maker's order unchanged;
//!   an id below the user's highest is refused too, the next id trades.
//! - `a_resend_after_recovery_from_a_snapshot_is_a_duplicate`: the fill happens in a journaled
//!   pipeline run that snapshots right after it (`ringbook scenario --pipeline --journal DIR
//!   --snapshot-every 4`, the IOC being command 4; `serve` cannot snapshot yet); `serve` then
//!   recovers from that snapshot with nothing to replay (so the user's mark comes from the
//!   snapshot, not from replaying the fill) and refuses the resend.
//!
//! - `a_resend_after_another_user_floods_the_session_table_is_a_duplicate`: the eviction attack
//!   (another user's 130 sessions, more than the session table holds); the victim's resend is a
//!   duplicate whether or not her session survived.
//!
//! Every wait is bounded (a timeout that only fails a broken run); nothing passes or fails on
//! wall-clock speed. The servers listen on 127.0.0.1 only.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command as Proc, Stdio};

use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::Client;
use ringbook_engine::prelude::*;

mod support;
use support::{Server, BIN, WAIT};

const KRW: u16 = 0;
const BTC: u16 = 2;
const DUPLICATE: u16 = 3009;

/// `ringbook serve` on a free port with journal `journal` and no web edge, up and listening.
fn start(journal: &Path) -> Server {
    let journal = journal.to_str().expect("a UTF-8 path");
    Server::start(&[
        "serve",
        "--no-http",
        "--journal",
        journal,
        "--listen",
        "127.0.0.1:0",
    ])
}

/// A logged-in client.
struct Conn {
    c: Client,
    next_request: u64,
}

impl Conn {
    fn login(addr: SocketAddr, who: &str, session: u32) -> Conn {
        Conn::login_info(addr, who, session).0
    }

    /// Logs in (with `last_seen_seq` 0) and returns the session's `last_seq` at login: every
    /// message numbered up to it is a retransmission.
    fn login_info(addr: SocketAddr, who: &str, session: u32) -> (Conn, u64) {
        let mut c = Client::connect(addr).unwrap();
        let info = support::login_patient(&mut c, who, session);
        (Conn { c, next_request: 1 }, info.last_seq)
    }

    fn send(&mut self, m: &ClientMsg) {
        self.c.send(m).unwrap();
    }

    /// Receives until `f` matches, keeping every message before it (at most 10 000).
    fn until(&mut self, mut f: impl FnMut(&ServerMsg) -> bool) -> (ServerMsg, Vec<ServerMsg>) {
        let mut before = Vec::new();
        for _ in 0..10_000 {
            match self.c.recv_timeout(WAIT) {
                Ok(Some(m)) if f(&m) => return (m, before),
                Ok(Some(m)) => before.push(m),
                Ok(None) => panic!("timed out waiting; got {before:#?}"),
                Err(e) => panic!("{e:?}; got {before:#?}"),
            }
        }
        panic!("no matching message in 10 000");
    }

    /// The user's balance of every currency, `(currency, available, locked)` in order.
    fn balances(&mut self, user: u32) -> Vec<(u16, u64, u64)> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.send(&ClientMsg::Balances {
            request_id,
            user: UserId(user),
        });
        let (_, before) = self.until(
            |m| matches!(m, ServerMsg::BalancesEnd { request_id: r, .. } if *r == request_id),
        );
        before
            .iter()
            .filter_map(|m| match *m {
                ServerMsg::Balance {
                    request_id: r,
                    currency,
                    available,
                    locked,
                    ..
                } if r == request_id => Some((currency, available, locked)),
                _ => None,
            })
            .collect()
    }

    /// `(status, detail, filled, filled notional)` of an order the engine knows, live or
    /// recently finished.
    fn order_status(&mut self, user: u32, coid: u64) -> Option<(u8, u16, u64, u64)> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.send(&ClientMsg::OrderStatus {
            request_id,
            user: UserId(user),
            client_order_id: ClientOrderId(coid),
        });
        let (m, _) = self.until(
            |m| matches!(m, ServerMsg::OrderStatus { request_id: r, .. } if *r == request_id),
        );
        match m {
            ServerMsg::OrderStatus {
                found: true,
                detail,
                order,
                filled_notional,
                ..
            } => Some((order.status, detail, order.filled_qty, filled_notional)),
            _ => None,
        }
    }

    /// `(leaves, filled)` of a live order, if it is live.
    fn live_order(&mut self, user: u32, coid: u64) -> Option<(u64, u64)> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.send(&ClientMsg::OrderStatus {
            request_id,
            user: UserId(user),
            client_order_id: ClientOrderId(coid),
        });
        let (m, _) = self.until(
            |m| matches!(m, ServerMsg::OrderStatus { request_id: r, .. } if *r == request_id),
        );
        match m {
            // Status 0 NEW, 1 PARTIALLY_FILLED: live; the others are finished orders.
            ServerMsg::OrderStatus {
                found: true, order, ..
            } if order.status <= 1 => Some((order.leaves_qty, order.filled_qty)),
            _ => None,
        }
    }
}

fn limit(user: u32, coid: u64, side: Side, price: i64, qty: u64) -> NewOrder {
    NewOrder::limit(
        UserId(user),
        SymbolId(0),
        ClientOrderId(coid),
        side,
        Price(price),
        Qty(qty),
    )
}

/// Bob's IOC buy of 4 lots at 15 000: it fills against alice's offer.
fn bob_ioc(coid: u64, qty: u64) -> ClientMsg {
    Command::NewOrder(NewOrder {
        tif: TimeInForce::Ioc,
        ..limit(2, coid, Side::Buy, 15_000, qty)
    })
    .into()
}

/// Sends `msg` and returns what answered it: the `Rejected`, or every message up to the IOC's
/// `Cancelled` / last `Fill`. Bounded: stops at the first reject or at a fill that leaves
/// nothing.
fn outcome(conn: &mut Conn, msg: &ClientMsg, coid: u64) -> Vec<ServerMsg> {
    outcome_after(conn, msg, coid, 0)
}

/// [`outcome`], ignoring messages numbered up to `after` (retransmissions after a login).
fn outcome_after(conn: &mut Conn, msg: &ClientMsg, coid: u64, after: u64) -> Vec<ServerMsg> {
    conn.send(msg);
    let (last, before) = conn.until(|m| {
        m.seq() > after
            && match *m {
                ServerMsg::Rejected {
                    client_order_id, ..
                } => client_order_id == coid,
                ServerMsg::Fill {
                    client_order_id,
                    role: Liquidity::Taker,
                    leaves_qty: 0,
                    ..
                } => client_order_id == coid,
                ServerMsg::Cancelled {
                    client_order_id, ..
                } => client_order_id == coid,
                _ => false,
            }
    });
    let mut answer: Vec<ServerMsg> = before.into_iter().filter(|m| m.seq() > after).collect();
    answer.push(last);
    answer
}

fn is_duplicate(msgs: &[ServerMsg], coid: u64) -> bool {
    matches!(
        msgs.last(),
        Some(ServerMsg::Rejected {
            code: DUPLICATE,
            client_order_id,
            ..
        }) if *client_order_id == coid
    ) && !msgs.iter().any(|m| matches!(m, ServerMsg::Fill { .. }))
}

fn fills(msgs: &[ServerMsg]) -> u64 {
    msgs.iter()
        .map(|m| match *m {
            ServerMsg::Fill {
                role: Liquidity::Taker,
                qty,
                ..
            } => qty,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_resend_after_sigkill_and_restart_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");

    let srv = start(&journal);
    let mut ops = Conn::login(srv.addr, "ops1", 1);
    let mut alice = Conn::login(srv.addr, "alice", 1);
    let mut bob = Conn::login(srv.addr, "bob", 1);
    for (user, currency, amount) in [(1, BTC, 1_000_000), (2, KRW, 10_000_000)] {
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
    // Alice offers 10; bob's IOC (client order id 7) takes 4 of them.
    alice.send(&Command::NewOrder(limit(1, 1, Side::Sell, 15_000, 10)).into());
    alice.until(|m| matches!(m, ServerMsg::Accepted { .. }));
    let first = outcome(&mut bob, &bob_ioc(7, 4), 7);
    assert_eq!(fills(&first), 4, "{first:#?}");
    let bob_before = bob.balances(2);
    assert_eq!(alice.live_order(1, 1), Some((6, 4)));

    // SIGKILL, then a restart on the same journal: every session is gone.
    srv.kill();
    let mut srv = start(&journal);
    let recovered = srv.wait_line_seen("recovered:");
    assert!(recovered.contains("next sequence"), "{recovered}");
    let mut bob = Conn::login(srv.addr, "bob", 1);
    let mut alice = Conn::login(srv.addr, "alice", 2);

    // The resend, with 6 lots still on offer: refused, nothing trades, nothing moves.
    let again = outcome(&mut bob, &bob_ioc(7, 4), 7);
    assert!(is_duplicate(&again, 7), "{again:#?}");
    // A lower id bob never used is at or below his mark too.
    let lower = outcome(&mut bob, &bob_ioc(5, 4), 5);
    assert!(is_duplicate(&lower, 5), "{lower:#?}");
    assert_eq!(bob.balances(2), bob_before);
    assert_eq!(alice.live_order(1, 1), Some((6, 4)));
    // Bob learns what became of the order the resend named: FILLED (status 2), 4 lots at
    // 15 000 KRW — the duplicates did not hide it.
    assert_eq!(bob.order_status(2, 7), Some((2, 0, 4, 60_000)));
    // Id 5 was never an order: the engine knows none.
    assert_eq!(bob.order_status(2, 5), None);

    // From another session of bob as well.
    let mut bob2 = Conn::login(srv.addr, "bob", 2);
    let other = outcome(&mut bob2, &bob_ioc(7, 4), 7);
    assert!(is_duplicate(&other, 7), "{other:#?}");
    assert_eq!(alice.live_order(1, 1), Some((6, 4)));

    // The next id executes normally.
    let next = outcome(&mut bob, &bob_ioc(8, 1), 8);
    assert_eq!(fills(&next), 1, "{next:#?}");
    assert_eq!(alice.live_order(1, 1), Some((5, 5)));
}

#[test]
fn a_resend_after_recovery_from_a_snapshot_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");

    // The fill, in a journaled pipeline run that snapshots after every command.
    let script = "deposit,1,BTC,1000000\n\
                  deposit,2,KRW,10000000\n\
                  order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,10\n\
                  order,2,BTC-KRW,7,BUY,LIMIT,IOC,15000,4\n";
    let mut run = Proc::new(BIN)
        .args(["scenario", "--pipeline", "--journal"])
        .arg(&journal)
        .args(["--snapshot-every", "4", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringbook scenario");
    run.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(r#""event":"trade""#) && stdout.contains(r#""taker_client_order_id":7"#),
        "{stdout}"
    );
    // The IOC was command 4, the first (so never deferred) snapshot's boundary.
    let newest = std::fs::read_dir(&journal)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("snapshot-")?
                .strip_suffix(".rbs")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("a snapshot in the journal directory");
    assert_eq!(newest, 4, "the snapshot after the IOC");

    // serve recovers from that snapshot: the fill is not replayed, so bob's mark comes from it.
    let mut srv = start(&journal);
    let recovered = srv.wait_line_seen("recovered:");
    assert!(recovered.contains("0 records replayed"), "{recovered}");
    let mut bob = Conn::login(srv.addr, "bob", 1);
    let mut alice = Conn::login(srv.addr, "alice", 1);
    let before = bob.balances(2);
    // 4 lots bought: 40 000 sat; 60 000 KRW paid plus a 60 KRW taker fee (10 bps).
    assert_eq!(before[BTC as usize], (BTC, 40_000, 0));
    assert_eq!(before[KRW as usize], (KRW, 10_000_000 - 60_060, 0));
    let again = outcome(&mut bob, &bob_ioc(7, 4), 7);
    assert!(is_duplicate(&again, 7), "{again:#?}");
    assert_eq!(bob.balances(2), before);
    assert_eq!(alice.live_order(1, 1), Some((6, 4)));
    srv.kill();
}

/// The attack of issue 10, item 3: another user opens more sessions than the server's session
/// table holds (128), which used to evict the victim's detached session, so her reconnect found
/// no session state. Whatever the gateway keeps or evicts, the victim's resend is refused by
/// the engine and nothing executes twice.
#[test]
fn a_resend_after_another_user_floods_the_session_table_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let srv = start(&journal);
    let mut ops = Conn::login(srv.addr, "ops1", 1);
    for (user, currency, amount) in [(1, BTC, 1_000_000), (2, KRW, 10_000_000)] {
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
    let mut alice = Conn::login(srv.addr, "alice", 1);
    alice.send(&Command::NewOrder(limit(1, 1, Side::Sell, 15_000, 10)).into());
    alice.until(|m| matches!(m, ServerMsg::Accepted { .. }));
    {
        let mut bob = Conn::login(srv.addr, "bob", 1);
        let first = outcome(&mut bob, &bob_ioc(7, 4), 7);
        assert_eq!(fills(&first), 4, "{first:#?}");
        // Bob's connection drops; his session is detached.
    }
    // Carol opens 130 sessions one after another, each left detached.
    for session in 1000..1130 {
        drop(Conn::login(srv.addr, "carol", session));
    }
    // Bob comes back to session 1 and resends what he is unsure about.
    let (mut bob, last_seq) = Conn::login_info(srv.addr, "bob", 1);
    let again = outcome_after(&mut bob, &bob_ioc(7, 4), 7, last_seq);
    assert!(is_duplicate(&again, 7), "{again:#?}");
    assert_eq!(alice.live_order(1, 1), Some((6, 4)));
    let balances = bob.balances(2);
    assert_eq!(balances[BTC as usize], (BTC, 40_000, 0));
    assert_eq!(balances[KRW as usize], (KRW, 10_000_000 - 60_060, 0));
    srv.kill();
}
