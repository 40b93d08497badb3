//! Integration tests: the real server on a free loopback port, driven through the client.
//!
//! `cargo test -p ringbook-gateway --test server`
//!
//! Every wait is bounded (a read timeout that only fails a broken run); nothing depends on
//! wall-clock speed to pass.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringbook_client::{Client, ClientError, ReferenceData};
use ringbook_engine::config::SymbolConfig;
use ringbook_engine::prelude::*;
use ringbook_gateway::protocol::{ClientMsg, ServerMsg, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use ringbook_gateway::server::backend::SubmitError;
use ringbook_gateway::server::{
    self, Backend, BackendOutput, EngineBackend, ServerConfig, ServerError, ServerHandle,
};

const WAIT: Duration = Duration::from_secs(10);

fn start(edit: impl FnOnce(&mut ServerConfig)) -> (ServerHandle<EngineBackend>, SocketAddr) {
    let config = Config::default();
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    // A session silent for three heartbeat intervals is ended; the default (1 s) would let a
    // loaded CI box that stalls a test for 3 s cut off a client the test uses again later.
    sc.heartbeat_default = Duration::from_secs(60);
    edit(&mut sc);
    let h = server::start(sc, EngineBackend::new(&config).unwrap()).unwrap();
    let addr = h.local_addr();
    (h, addr)
}

fn login(addr: SocketAddr, who: &str, session: u32) -> Client {
    let mut c = Client::connect(addr).unwrap();
    c.login(who, &format!("{who}-demo"), session, false)
        .unwrap();
    c
}

/// Receives until `f` matches (skipping heartbeats and others), at most 10 000 messages.
fn until(c: &mut Client, mut f: impl FnMut(&ServerMsg) -> bool) -> ServerMsg {
    for _ in 0..10_000 {
        match c.recv_timeout(WAIT).unwrap() {
            Some(m) if f(&m) => return m,
            Some(_) => {}
            None => panic!("timed out waiting"),
        }
    }
    panic!("no matching message in 10 000");
}

/// The operator `ops` deposits `amount` of `currency` for `user` and waits for the reply.
fn deposit(ops: &mut Client, user: u32, currency: u16, amount: u64) {
    ops.send(
        &Command::Deposit {
            user: UserId(user),
            currency: CurrencyId(currency),
            amount,
        }
        .into(),
    )
    .unwrap();
    until(ops, |m| matches!(m, ServerMsg::Deposited { .. }));
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

#[test]
fn full_flow_deposits_trades_balances_withdrawal() {
    let (h, addr) = start(|_| {});
    let mut ops1 = login(addr, "ops1", 1);
    let mut ops2 = login(addr, "ops2", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    let (krw, btc) = (CurrencyId(0), CurrencyId(2));

    ops1.send(
        &Command::Deposit {
            user: UserId(1),
            currency: btc,
            amount: 100_000,
        }
        .into(),
    )
    .unwrap();
    ops1.send(
        &Command::Deposit {
            user: UserId(2),
            currency: krw,
            amount: 1_000_000,
        }
        .into(),
    )
    .unwrap();
    until(&mut ops1, |m| {
        matches!(m, ServerMsg::Deposited { user: 2, .. })
    });
    until(&mut alice, |m| {
        matches!(
            m,
            ServerMsg::BalanceUpdate {
                user: 1,
                currency: 2,
                available: 100_000,
                ..
            }
        )
    });

    alice.send(&order(1, 1, Side::Sell, 15_000, 5)).unwrap();
    until(&mut alice, |m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )
    });
    bob.send(&order(2, 1, Side::Buy, 15_000, 5)).unwrap();
    let fill = until(&mut bob, |m| matches!(m, ServerMsg::Fill { .. }));
    assert!(
        matches!(
            fill,
            ServerMsg::Fill {
                role: Liquidity::Taker,
                qty: 5,
                price: 15_000,
                leaves_qty: 0,
                fee: 75,
                ..
            }
        ),
        "{fill:?}"
    );
    let maker_fill = until(&mut alice, |m| {
        matches!(
            m,
            ServerMsg::Fill {
                role: Liquidity::Maker,
                qty: 5,
                fee: 38,
                ..
            }
        )
    });
    // Trade identity: both sides name the same trade (the symbol's first), at the same engine
    // time, and each names the other's order.
    let (
        ServerMsg::Fill {
            trade_id: t1,
            ts: ts1,
            order_id: taker_oid,
            contra_order_id: maker_oid_seen_by_taker,
            ..
        },
        ServerMsg::Fill {
            trade_id: t0,
            ts: ts0,
            order_id: maker_oid,
            contra_order_id: taker_oid_seen_by_maker,
            ..
        },
    ) = (fill, maker_fill)
    else {
        unreachable!()
    };
    assert_eq!((t0, t1), (1, 1));
    assert_eq!(ts0, ts1);
    assert!(ts0 > 0, "stamped with the wall clock");
    assert_eq!(maker_oid_seen_by_taker, maker_oid);
    assert_eq!(taker_oid_seen_by_maker, taker_oid);
    assert_ne!(maker_oid, taker_oid);

    alice
        .send(&ClientMsg::Balances {
            request_id: 9,
            user: UserId(1),
        })
        .unwrap();
    let mut krw_avail = None;
    loop {
        match until(&mut alice, |m| {
            matches!(
                m,
                ServerMsg::Balance { request_id: 9, .. } | ServerMsg::BalancesEnd { .. }
            )
        }) {
            ServerMsg::Balance {
                currency: 0,
                available,
                ..
            } => krw_avail = Some(available),
            ServerMsg::BalancesEnd { count, .. } => {
                assert_eq!(count, 5);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(krw_avail, Some(75_000 - 38));

    // Withdrawal: user requests, two distinct operators approve.
    alice
        .send(
            &Command::Withdraw {
                user: UserId(1),
                currency: btc,
                amount: 10_000,
            }
            .into(),
        )
        .unwrap();
    let ServerMsg::WithdrawalRequested { withdrawal_id, .. } = until(&mut alice, |m| {
        matches!(m, ServerMsg::WithdrawalRequested { .. })
    }) else {
        unreachable!()
    };
    ops1.send(
        &Command::ApproveWithdrawal {
            operator: OperatorId(900),
            withdrawal_id: WithdrawalId(withdrawal_id),
        }
        .into(),
    )
    .unwrap();
    until(&mut ops1, |m| {
        matches!(m, ServerMsg::WithdrawalApproved { approvals: 1, .. })
    });
    ops2.send(
        &Command::ApproveWithdrawal {
            operator: OperatorId(901),
            withdrawal_id: WithdrawalId(withdrawal_id),
        }
        .into(),
    )
    .unwrap();
    until(&mut ops2, |m| {
        matches!(m, ServerMsg::WithdrawalCompleted { amount: 10_000, .. })
    });
    until(&mut alice, |m| {
        matches!(m, ServerMsg::WithdrawalCompleted { .. })
    });

    let backend = h.shutdown().unwrap();
    assert_eq!(
        backend.engine().balance(UserId(1), btc).available,
        100_000 - 50_000 - 10_000
    );
}

/// The user a message is about, for the messages that name one.
fn user_of(m: &ServerMsg) -> Option<u32> {
    match *m {
        ServerMsg::Accepted { user, .. }
        | ServerMsg::Fill { user, .. }
        | ServerMsg::Cancelled { user, .. }
        | ServerMsg::Deposited { user, .. }
        | ServerMsg::BalanceUpdate { user, .. } => Some(user),
        _ => None,
    }
}

/// Every message up to the first that matches `f` (at most 10 000).
fn upto(c: &mut Client, mut f: impl FnMut(&ServerMsg) -> bool) -> Vec<ServerMsg> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let m = c.recv_timeout(WAIT).unwrap().expect("timed out waiting");
        got.push(m);
        if f(&m) {
            return got;
        }
    }
    panic!("no match in 10 000 messages");
}

#[test]
fn every_session_of_a_user_gets_its_events_and_no_one_elses() {
    // The user→sessions index: an event for a user reaches each of its sessions, attached or
    // detached, and no session of another user; an operator's action also reaches the operator.
    let (h, addr) = start(|_| {});
    let mut a1 = login(addr, "alice", 1);
    let mut a2 = login(addr, "alice", 2);
    let mut a3 = login(addr, "alice", 3);
    let mut bob = login(addr, "bob", 1);
    let mut ops = login(addr, "ops1", 1);
    // Session 3 goes away before anything happens: its events wait in its ring.
    a3.stream().shutdown(std::net::Shutdown::Both).unwrap();
    for (user, currency, amount) in [(1, 2, 100_000), (2, 0, 1_000_000)] {
        ops.send(
            &Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount,
            }
            .into(),
        )
        .unwrap();
    }
    let seen = upto(&mut ops, |m| {
        matches!(m, ServerMsg::Deposited { user: 2, .. })
    });
    assert!(seen
        .iter()
        .any(|m| matches!(m, ServerMsg::Deposited { user: 1, .. })));
    a1.send(&order(1, 1, Side::Sell, 15_000, 5)).unwrap();
    until(&mut a1, |m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )
    });
    bob.send(&order(2, 1, Side::Buy, 15_000, 5)).unwrap();
    let bobs = upto(&mut bob, |m| matches!(m, ServerMsg::Fill { .. }));
    assert!(bobs.iter().filter_map(user_of).all(|u| u == 2), "{bobs:?}");
    assert!(bobs
        .iter()
        .any(|m| matches!(m, ServerMsg::Deposited { user: 2, .. })));
    let maker_fill = |m: &ServerMsg| {
        matches!(
            m,
            ServerMsg::Fill {
                role: Liquidity::Maker,
                ..
            }
        )
    };
    let got = upto(&mut a1, maker_fill);
    assert!(got.iter().filter_map(user_of).all(|u| u == 1), "{got:?}");
    a3.reconnect().unwrap();
    for a in [&mut a2, &mut a3] {
        // Sessions 2 and 3 sent nothing, yet see the deposit, session 1's order and its fill.
        let got = upto(a, maker_fill);
        assert!(got.iter().filter_map(user_of).all(|u| u == 1), "{got:?}");
        assert!(got
            .iter()
            .any(|m| matches!(m, ServerMsg::Deposited { user: 1, .. })));
        assert!(got.iter().any(|m| matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )));
    }
    h.shutdown().unwrap();
}

#[test]
fn a_session_acting_for_another_user_is_rejected() {
    let (h, addr) = start(|_| {});
    let mut alice = login(addr, "alice", 1);
    alice.send(&order(2, 1, Side::Buy, 100, 1)).unwrap();
    let m = until(&mut alice, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(matches!(m, ServerMsg::Rejected { code: 1010, .. }), "{m:?}");
    alice
        .send(
            &Command::Deposit {
                user: UserId(1),
                currency: CurrencyId(0),
                amount: 5,
            }
            .into(),
        )
        .unwrap();
    assert!(matches!(
        until(&mut alice, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected { code: 1011, .. }
    ));
    alice
        .send(&ClientMsg::Balances {
            request_id: 1,
            user: UserId(3),
        })
        .unwrap();
    assert!(matches!(
        until(&mut alice, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected { code: 1010, .. }
    ));
    let mut ops1 = login(addr, "ops1", 1);
    ops1.send(
        &Command::ApproveWithdrawal {
            operator: OperatorId(901),
            withdrawal_id: WithdrawalId(1),
        }
        .into(),
    )
    .unwrap();
    assert!(matches!(
        until(&mut ops1, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected { code: 1010, .. }
    ));
    // Bad credentials: rejected, counted.
    let mut bad = Client::connect(addr).unwrap();
    assert!(matches!(
        bad.login("alice", "wrong", 1, false),
        Err(ClientError::LoginRejected(1008, _))
    ));
    assert_eq!(
        h.stats()
            .login_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.shutdown().unwrap();
}

#[test]
fn reconnect_retransmits_missed_messages_and_ids_are_idempotent() {
    let (h, addr) = start(|_| {});
    let mut carol = login(addr, "carol", 5);
    let mut ops = login(addr, "ops1", 1);
    ops.send(
        &Command::Deposit {
            user: UserId(3),
            currency: CurrencyId(0),
            amount: 10_000_000,
        }
        .into(),
    )
    .unwrap();
    until(&mut carol, |m| {
        matches!(
            m,
            ServerMsg::Deposited { .. } | ServerMsg::BalanceUpdate { .. }
        )
    });
    for coid in 1..=3 {
        carol.send(&order(3, coid, Side::Buy, 100, 1)).unwrap();
    }
    until(&mut carol, |m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 1,
                ..
            }
        )
    });
    let seen = carol.last_seq();
    // Drop the connection without reading the rest; a second session of carol places more.
    carol.stream().shutdown(std::net::Shutdown::Both).unwrap();
    let mut carol2 = login(addr, "carol", 6);
    carol2.send(&order(3, 10, Side::Buy, 100, 1)).unwrap();
    until(&mut carol2, |m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 10,
                ..
            }
        )
    });
    // Reconnect session 5: everything after `seen` comes back, in order, nothing twice.
    let info = carol.reconnect().unwrap();
    assert!(info.last_seq >= seen + 3);
    let mut got = Vec::new();
    while got.len() < 3 {
        if let ServerMsg::Accepted {
            seq,
            client_order_id,
            ..
        } = until(&mut carol, |m| matches!(m, ServerMsg::Accepted { .. }))
        {
            assert!(seq > seen);
            got.push(client_order_id);
        }
    }
    assert_eq!(got, [2, 3, 10]);
    // Resending an old client order id is refused by the engine (per user, so also an id below
    // what carol's other session used), not executed twice.
    carol.send(&order(3, 3, Side::Buy, 100, 1)).unwrap();
    assert!(matches!(
        until(&mut carol, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected {
            code: 3009,
            client_order_id: 3,
            ..
        }
    ));
    h.shutdown().unwrap();
}

#[test]
fn cancel_on_disconnect_cancels_the_users_orders() {
    let (h, addr) = start(|_| {});
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 4, 0, 1_000_000);
    let mut d1 = Client::connect(addr).unwrap();
    d1.login("dave", "dave-demo", 1, true).unwrap();
    let mut d2 = login(addr, "dave", 2);
    d1.send(&order(4, 1, Side::Buy, 100, 1)).unwrap();
    until(&mut d1, |m| matches!(m, ServerMsg::Accepted { .. }));
    drop(d1);
    let m = until(&mut d2, |m| matches!(m, ServerMsg::Cancelled { .. }));
    // Reason 7: DISCONNECT (not 1, USER: nobody asked for this cancel).
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                client_order_id: 1,
                reason: CancelReason::Disconnect,
                ..
            }
        ),
        "{m:?}"
    );
    // An explicit mass cancel is the user's own: reason USER.
    d2.send(&order(4, 2, Side::Buy, 100, 1)).unwrap();
    until(&mut d2, |m| matches!(m, ServerMsg::Accepted { .. }));
    d2.send(
        &Command::MassCancel {
            user: UserId(4),
            symbol: None,
            on_disconnect: false,
        }
        .into(),
    )
    .unwrap();
    let m = until(&mut d2, |m| matches!(m, ServerMsg::Cancelled { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                client_order_id: 2,
                reason: CancelReason::User,
                ..
            }
        ),
        "{m:?}"
    );
    // A client cannot claim the gateway's flag: the wire has no such bit.
    d2.send(&order(4, 3, Side::Buy, 100, 1)).unwrap();
    until(&mut d2, |m| matches!(m, ServerMsg::Accepted { .. }));
    d2.send(
        &Command::MassCancel {
            user: UserId(4),
            symbol: None,
            on_disconnect: true,
        }
        .into(),
    )
    .unwrap();
    let m = until(&mut d2, |m| matches!(m, ServerMsg::Cancelled { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                reason: CancelReason::User,
                ..
            }
        ),
        "{m:?}"
    );
    assert_eq!(h.stats().cancel_on_disconnect.load(Ordering::Relaxed), 1);
    h.shutdown().unwrap();
}

#[test]
fn hostile_clients_are_cut_off_while_a_good_client_carries_on() {
    let (h, addr) = start(|c| {
        c.msgs_per_sec_max = 100_000;
        c.retransmit_msgs = 1024;
        c.out_bytes = 16 << 10;
        c.slow_consumer_timeout = Duration::from_millis(300);
    });
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 1, 0, 1_000_000_000);
    // Dave (the slow reader below) has an account, so each balances query is answered with
    // one message per currency plus an end: far more than the sockets' buffers hold.
    deposit(&mut ops, 4, 0, 1);
    let mut good = login(addr, "alice", 1);
    let mut coid = 0;
    let mut good_round = |good: &mut Client| {
        coid += 1;
        good.send(&order(1, coid, Side::Buy, 100, 1)).unwrap();
        until(
            good,
            |m| matches!(m, ServerMsg::Accepted { client_order_id, .. } if *client_order_id == coid),
        );
    };
    good_round(&mut good);

    // 1. Garbage bytes before login: a length far beyond the maximum closes the connection.
    let mut garbage = Client::connect(addr).unwrap();
    garbage
        .send_raw(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5])
        .unwrap();
    assert!(matches!(
        garbage.recv_timeout(WAIT),
        Err(ClientError::Disconnected(1002, _))
    ));
    good_round(&mut good);

    // 2. Unknown type and malformed body after login: rejected, session carries on.
    let mut weird = login(addr, "bob", 1);
    weird
        .send_raw(&[4, 0, 0, 0, 0x99, 0x99, PROTOCOL_VERSION as u8, 0])
        .unwrap();
    assert!(matches!(
        until(&mut weird, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected { code: 1003, .. }
    ));
    weird
        .send_raw(&[5, 0, 0, 0, 10, 0, PROTOCOL_VERSION as u8, 0, 7])
        .unwrap();
    assert!(matches!(
        until(&mut weird, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected { code: 1001, .. }
    ));
    // Oversized length after login: disconnected with a reason.
    weird
        .send_raw(&(FRAME_BYTES_MAX as u32).to_le_bytes())
        .unwrap();
    assert_eq!(disconnect_code(&mut weird), 1002);
    good_round(&mut good);

    // 3. Flood: far more than the allowed message rate in one burst.
    let mut flood = login(addr, "carol", 1);
    let mut burst = Vec::new();
    for _ in 0..300_000 {
        Client::encode_into(&ClientMsg::Heartbeat, &mut burst);
    }
    let _ = flood.send_raw(&burst); // the server may close before taking it all
    assert_eq!(disconnect_code(&mut flood), 1016);
    good_round(&mut good);

    // 4. A slow reader: asks for far more than it reads. Its queries are sequenced like any
    // command, so the server stops reading it at the high-water mark (back-pressure, nothing
    // dropped); when it still takes nothing for `slow_consumer_timeout` it is cut off. The
    // others never stall meanwhile.
    let mut slow = login(addr, "dave", 1);
    let mut asks = Vec::new();
    for i in 0..60_000u64 {
        Client::encode_into(
            &ClientMsg::Balances {
                request_id: i,
                user: UserId(4),
            },
            &mut asks,
        );
    }
    slow.send_raw(&asks).unwrap();
    good_round(&mut good);
    let slow_consumers = || h.stats().slow_consumers.load(Ordering::Relaxed);
    // Not reading until the server has given up on it (no fixed sleep: wait for the event).
    for round in 0.. {
        if slow_consumers() > 0 {
            break;
        }
        assert!(round < 3_000, "the slow reader was never cut off");
        good_round(&mut good);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server counted it as a slow consumer (above). Its reason frame is best effort: the
    // server stopped reading this client, so closing with its requests still unread may make
    // the kernel reset the connection before the client reads that far.
    match drain_to_end(&mut slow) {
        Ok(code) => assert_eq!(code, 1015),
        Err(ClientError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Err(e) => panic!("expected SLOW_CONSUMER or a reset, got {e}"),
    }
    good_round(&mut good);
    assert!(h.stats().protocol_disconnects.load(Ordering::Relaxed) >= 3);
    h.shutdown().unwrap();
}

/// Dave, through a socket with a 4 KB receive buffer, pipelines `asks` balances queries (each
/// answered with one message per currency and an end: far more than the sockets hold), then
/// reads the replies at his own pace: a pause of `pause` after every `step` bytes. Returns the
/// replies read before all of them came or `give_up` passed (`Ok`), or before the server
/// counted him a slow consumer (`Err`), and the server's counters then. The server's
/// `slow_consumer_timeout` is 1 s.
fn paused_reader(
    asks: u64,
    step: usize,
    pause: Duration,
    give_up: Duration,
) -> (Result<u64, u64>, u64, u64) {
    let (h, addr) = start(|c| {
        c.out_bytes = 16 << 10;
        c.slow_consumer_timeout = Duration::from_secs(1);
    });
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 4, 0, 1);

    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut slow = Client::from_stream(socket.into()).unwrap();
    slow.login("dave", "dave-demo", 1, false).unwrap();
    let mut requests = Vec::new();
    for i in 0..asks {
        Client::encode_into(
            &ClientMsg::Balances {
                request_id: i,
                user: UserId(4),
            },
            &mut requests,
        );
    }
    // From a thread: the server pauses reading at the high-water mark, so this blocks until
    // the reader below has taken enough (or fails once the server gives up on it).
    let mut sender = slow.stream().try_clone().unwrap();
    let send = std::thread::spawn(move || std::io::Write::write_all(&mut sender, &requests));
    let slow_consumers = || h.stats().slow_consumers.load(Ordering::Relaxed);
    let (mut ends, mut bytes) = (0u64, 0usize);
    let mut frame = [0u8; FRAME_BYTES_MAX];
    let give_up = std::time::Instant::now() + give_up;
    let read = loop {
        if ends == asks || std::time::Instant::now() > give_up {
            break Ok(ends);
        }
        if slow_consumers() > 0 {
            break Err(ends);
        }
        match slow.recv_timeout(WAIT) {
            Ok(Some(m)) => {
                bytes += m.encode(&mut frame);
                if matches!(m, ServerMsg::BalancesEnd { .. }) {
                    ends += 1;
                }
                if bytes >= step {
                    bytes = 0;
                    std::thread::sleep(pause);
                }
            }
            // Cut off: the reason frame, or a reset if the server closed with requests unread.
            Ok(None) | Err(_) if slow_consumers() > 0 => break Err(ends),
            other => panic!("after {ends} of {asks} replies: {other:?}"),
        }
    };
    drop(slow);
    let sent = send.join().unwrap();
    if read == Ok(asks) {
        // Every reply came, so every request went out without an error.
        sent.unwrap();
    }
    let stats = h.stats();
    let counters = (
        stats.slow_consumers.load(Ordering::Relaxed),
        stats.outbound_pauses.load(Ordering::Relaxed),
    );
    h.shutdown().unwrap();
    (read, counters.0, counters.1)
}

/// A client that asks for far more than its socket holds and then reads it slowly but steadily
/// is paused, not cut off: its small receive buffer keeps the server's send queue full for
/// seconds between writable events, but the queue shrinks at every read, and that counts as
/// taking output. (It was cut off after `slow_consumer_timeout` without a successful write: a
/// red-team finding, ~400 KB/s read in 16 KB steps cut at 2 s. This test's reader, ~800 KB/s in
/// 4 KB steps, was cut at ~1.2 s of its ~4 s in 4 runs of 4; with fewer requests, fewer than
/// the kernel's send buffer grew to hold, it was not, so the count matters.) Only a stall of
/// the test thread longer than the timeout (1 s) could make it fail: its pauses are 5 ms.
#[test]
fn a_paused_client_reading_slowly_but_steadily_is_not_cut_off() {
    let read = never_cut_off(Duration::from_millis(5), Duration::from_secs(20));
    assert_eq!(read, 12_000);
}

/// [`paused_reader`] in 4 KB steps: never cut off, and paused at least once. Returns the
/// replies read.
fn never_cut_off(pause: Duration, give_up: Duration) -> u64 {
    let (read, slow_consumers, pauses) = paused_reader(12_000, 4096, pause, give_up);
    assert_eq!(slow_consumers, 0, "cut off after {read:?} replies");
    assert!(pauses > 0, "never paused: the test did not test anything");
    read.unwrap()
}

/// A paused client reading half as much again as the floor — 4 KB every 160 ms, ~25 KB/s
/// against 16 KiB per 1 s timeout — is never cut off: the gateway looks at the queue at the
/// first tick after each write or the start of a pause, and once more when the cut is due, so
/// the client's whole timeout counts. (A review finding: with looks only every quarter of the
/// timeout, the first of them only recording where the queue stood, about half of it counted,
/// and this reader was cut at ~1.4 s in 4 runs of 4.) Six timeouts of it; only a stall of the
/// test thread of about a third of a second inside one could fail it.
#[test]
fn a_paused_client_reading_above_the_floor_is_not_cut_off() {
    never_cut_off(Duration::from_millis(160), Duration::from_secs(6));
}

/// A paused client that only trickles — 2 KB every 250 ms, 8 KB/s, under the 16 KiB per
/// timeout the gateway asks of it — is still cut off as a slow consumer, although its socket's
/// queue shrinks at every read (a review finding: any shrink counted, so a trickle held its
/// slot and ring for ever). A slower test thread only reads less: the outcome cannot flip.
#[test]
fn a_paused_client_that_only_trickles_is_cut_off() {
    let (read, slow_consumers, _) = paused_reader(
        12_000,
        2048,
        Duration::from_millis(250),
        Duration::from_secs(20),
    );
    assert!(
        read.is_err(),
        "not cut off within 20 s: replies read {read:?}"
    );
    assert_eq!(slow_consumers, 1);
}

#[test]
fn large_query_replies_pause_reading_instead_of_overrunning_the_ring() {
    // Each open-orders reply is 101 frames; 30 asked at once are three times the session's
    // ring. The server weighs each query by the frames it will produce, stops reading at the
    // high-water mark and resumes as the client reads: every reply arrives, nobody is cut off.
    let (h, addr) = start(|c| c.retransmit_msgs = 1024);
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 1, 2, 1_000_000_000);
    let mut alice = login(addr, "alice", 1);
    for coid in 1..=100 {
        alice
            .send(&order(1, coid, Side::Sell, 20_000 + coid as i64, 1))
            .unwrap();
    }
    until(&mut alice, |m| {
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 100,
                ..
            }
        )
    });
    let mut asks = Vec::new();
    for request_id in 1..=30 {
        Client::encode_into(
            &ClientMsg::OpenOrders {
                request_id,
                user: UserId(1),
            },
            &mut asks,
        );
    }
    alice.send_raw(&asks).unwrap();
    let (mut listed, mut ends) = (0, 0);
    while ends < 30 {
        match alice.recv_timeout(WAIT) {
            Ok(Some(ServerMsg::OpenOrder { .. })) => listed += 1,
            Ok(Some(ServerMsg::OpenOrdersEnd { count, .. })) => {
                assert_eq!(count, 100);
                ends += 1;
            }
            Ok(Some(_)) => {}
            other => panic!("after {ends} replies: {other:?}"),
        }
    }
    assert_eq!(listed, 30 * 100);
    let stats = h.stats();
    assert_eq!(stats.slow_consumers.load(Ordering::Relaxed), 0);
    assert!(stats.outbound_pauses.load(Ordering::Relaxed) >= 1);
    h.shutdown().unwrap();
}

/// Reads until the server's `Disconnect` (at most 1 000 000 messages) and returns its code.
fn disconnect_code(c: &mut Client) -> u16 {
    drain_to_end(c).unwrap_or_else(|e| panic!("expected a disconnect reason, got {e}"))
}

/// Reads until the connection ends: the `Disconnect` code, or the error that ended it.
fn drain_to_end(c: &mut Client) -> Result<u16, ClientError> {
    for _ in 0..1_000_000 {
        match c.recv_timeout(WAIT) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("timed out waiting for a disconnect"),
            Err(ClientError::Disconnected(code, _)) => return Ok(code),
            Err(e) => return Err(e),
        }
    }
    panic!("no disconnect");
}

/// The in-process engine behind a gate: while `hold` is set, outputs stay queued (as a slow
/// pipeline would keep them), so a test can change sessions while replies are in flight.
struct Gated {
    inner: EngineBackend,
    hold: Arc<AtomicBool>,
}

impl Backend for Gated {
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, SubmitError> {
        self.inner.try_submit(cmd)
    }
    fn drain(&mut self, max: usize, f: &mut dyn FnMut(Seq, BackendOutput)) -> usize {
        if self.hold.load(Ordering::Acquire) {
            return 0;
        }
        self.inner.drain(max, f)
    }
    fn in_flight_hint(&self) -> Option<usize> {
        self.inner.in_flight_hint()
    }
}

#[test]
fn a_recycled_session_slot_never_gets_the_previous_sessions_replies() {
    let config = Config::default();
    let hold = Arc::new(AtomicBool::new(false));
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    // One session per account: alice's second session takes her first one's slot.
    sc.sessions_per_account_max = 1;
    sc.heartbeat_default = Duration::from_secs(60); // as in `start`
    let backend = Gated {
        inner: EngineBackend::new(&config).unwrap(),
        hold: hold.clone(),
    };
    let h = server::start(sc, backend).unwrap();
    let addr = h.local_addr();
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 1, 0, 1_000);
    let mut first = login(addr, "alice", 1);
    // Replies held back: session 1 asks, then goes away before the answer comes. (A balances
    // reply goes to the asking session only, tagged with its request id.)
    hold.store(true, Ordering::Release);
    first
        .send(&ClientMsg::Balances {
            request_id: 77,
            user: UserId(1),
        })
        .unwrap();
    drop(first);
    // Session 2 of alice: the slot of session 1 (detached) is given to it.
    let mut second = Client::connect(addr).unwrap();
    // Wait until the server has seen the first connection go (bounded).
    let mut info = None;
    for _ in 0..2_000 {
        match second.login("alice", "alice-demo", 2, false) {
            Ok(i) => {
                info = Some(i);
                break;
            }
            Err(ClientError::LoginRejected(1017, _)) => {
                std::thread::sleep(Duration::from_millis(10));
                second = Client::connect(addr).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(info.expect("session 2 logged in").last_seq, 0);
    assert_eq!(h.stats().sessions_displaced.load(Ordering::Relaxed), 1);
    // Release the replies of session 1's commands, then ask something on session 2.
    hold.store(false, Ordering::Release);
    second
        .send(&ClientMsg::Balances {
            request_id: 78,
            user: UserId(1),
        })
        .unwrap();
    // Everything session 2 gets up to its own reply: nothing addressed to session 1.
    let mut balances = 0;
    loop {
        match second.recv_timeout(WAIT).unwrap().expect("a reply") {
            ServerMsg::BalancesEnd { request_id, .. } => {
                assert_eq!(request_id, 78, "session 2 got session 1's reply");
                break;
            }
            ServerMsg::Balance { request_id, .. } => {
                assert_eq!(request_id, 78, "session 2 got session 1's reply");
                balances += 1;
            }
            ServerMsg::Heartbeat => {}
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(balances, config.currencies.len());
    h.shutdown().unwrap();
}

#[test]
fn a_new_session_displaces_only_its_own_accounts_detached_sessions() {
    // A table of 8 sessions and no per-account share below it: alice can fill the table, but
    // her logins then displace her own detached sessions, never bob's.
    let (h, addr) = start(|c| {
        c.conns_max = 4;
        c.sessions_max = 8;
        c.sessions_per_account_max = 8;
    });
    let mut ops = login(addr, "ops1", 1);
    deposit(&mut ops, 2, 0, 1_000_000);
    drop(ops);
    let mut bob = login(addr, "bob", 1);
    bob.send(&order(2, 5, Side::Buy, 100, 1)).unwrap();
    until(&mut bob, |m| matches!(m, ServerMsg::Accepted { .. }));
    let bob_seq = bob.last_seq();
    assert!(bob_seq > 0);
    drop(bob);
    for session in 1..=20 {
        let mut a = login(addr, "alice", session);
        a.logout().unwrap();
        let _ = a.recv_timeout(WAIT);
    }
    // Bob's session kept its sequence numbers and its client order id high-water mark.
    let mut bob = login(addr, "bob", 1);
    let mut again = Client::connect(addr).unwrap();
    assert!(matches!(
        again.login("bob", "bob-demo", 1, false),
        Err(ClientError::LoginRejected(1007, _))
    ));
    bob.send(&order(2, 5, Side::Buy, 100, 1)).unwrap();
    assert!(matches!(
        until(&mut bob, |m| matches!(m, ServerMsg::Rejected { .. })),
        ServerMsg::Rejected {
            client_order_id: 5,
            ..
        }
    ));
    assert!(bob.last_seq() > bob_seq);
    // The table is full (ops, bob, six of alice's) and carol has no session to give up: her
    // login is SERVER_FULL — nobody else's session is taken for her.
    let mut carol = Client::connect(addr).unwrap();
    assert!(matches!(
        carol.login("carol", "carol-demo", 1, false),
        Err(ClientError::LoginRejected(1017, _))
    ));
    assert_eq!(h.stats().server_full.load(Ordering::Relaxed), 1);
    assert_eq!(h.stats().sessions_displaced.load(Ordering::Relaxed), 14);
    h.shutdown().unwrap();
}

#[test]
fn table_bounds_that_do_not_fit_are_refused_at_start() {
    let config = Config::default();
    let bad = |edit: &dyn Fn(&mut ServerConfig)| {
        let mut sc = ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            config.gateway.accounts.clone(),
        );
        edit(&mut sc);
        match server::start(sc, EngineBackend::new(&config).unwrap()) {
            Err(ServerError::Config(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(h) => {
                h.shutdown().unwrap();
                panic!("started");
            }
        }
    };
    assert!(bad(&|c| c.sessions_max = c.conns_max - 1).contains("sessions_max"));
    assert!(bad(&|c| c.in_flight_max = 1000).contains("power of two"));
    // The in-process engine can hold 65 536 commands' outputs: a smaller table is refused.
    assert!(bad(&|c| c.in_flight_max = 1 << 10).contains("in flight"));
    assert!(bad(&|c| c.prelogin_per_addr_max = c.prelogin_max + 1).contains("prelogin"));
    assert!(bad(&|c| c.retransmit_msgs = 300).contains("retransmit_msgs"));
    assert!(bad(&|c| c.sessions_per_account_max = 0).contains("sessions_per_account_max"));
    assert!(bad(&|c| c.retransmit_msgs = 1 << 21).contains("retransmit_msgs"));
    assert!(bad(&|c| c.out_bytes = 1 << 30).contains("out_bytes"));
    assert!(bad(&|c| c.in_bytes = 100).contains("in_bytes"));
    assert!(bad(&|c| c.heartbeat_default = Duration::from_millis(99))
        .contains("heartbeat_default_ms = 99"));
    assert!(
        bad(&|c| c.heartbeat_default = Duration::from_secs(61)).contains("heartbeat_default_ms")
    );
    assert!(
        bad(&|c| c.slow_consumer_timeout = Duration::ZERO).contains("slow_consumer_timeout_ms = 0")
    );
    assert!(bad(&|c| c.slow_consumer_drain_bytes = 0).contains("slow_consumer_drain_bytes = 0"));
    assert!(bad(&|c| c.drain_timeout = Duration::ZERO).contains("drain_timeout_ms = 0"));
    assert!(bad(&|c| c.msgs_per_sec_max = 0).contains("msgs_per_sec_max"));
    // Each bound's edge starts.
    let edges = |c: &mut ServerConfig| {
        c.heartbeat_default = Duration::from_millis(100);
        c.slow_consumer_timeout = Duration::from_millis(40);
        c.slow_consumer_drain_bytes = 1;
        c.drain_timeout = Duration::from_millis(20);
    };
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    edges(&mut sc);
    server::start(sc, EngineBackend::new(&config).unwrap())
        .unwrap()
        .shutdown()
        .unwrap();
}

#[test]
fn every_gateway_limit_comes_from_the_toml() {
    let toml = format!(
        "{}\n[gateway]\nretransmit_msgs = 5000\nin_bytes = 20000\nout_bytes = 300000\n\
         heartbeat_default_ms = 1500\nheartbeat_timeouts = 4\nmsgs_per_sec_max = 777\n\
         slow_consumer_timeout_ms = 2500\nslow_consumer_drain_bytes = 4096\n\
         drain_timeout_ms = 900\n",
        ringbook_engine::config::DEFAULT_CONFIG_TOML
    );
    let config = Config::from_toml_str(&toml).unwrap();
    let sc = ServerConfig::from_config("127.0.0.1:0".parse().unwrap(), &config.gateway);
    assert_eq!(
        (sc.retransmit_msgs, sc.in_bytes, sc.out_bytes),
        (5000, 20_000, 300_000)
    );
    assert_eq!(
        (
            sc.heartbeat_default,
            sc.heartbeat_timeouts,
            sc.msgs_per_sec_max
        ),
        (Duration::from_millis(1500), 4, 777)
    );
    assert_eq!(
        (
            sc.slow_consumer_timeout,
            sc.slow_consumer_drain_bytes,
            sc.drain_timeout
        ),
        (
            Duration::from_millis(2500),
            4096,
            Duration::from_millis(900)
        )
    );
    // The defaults of the config file are the server's own.
    let d = ServerConfig::from_config("127.0.0.1:0".parse().unwrap(), &Config::default().gateway);
    let n = ServerConfig::new("127.0.0.1:0".parse().unwrap(), d.accounts.clone());
    assert_eq!(
        (
            d.retransmit_msgs,
            d.in_bytes,
            d.out_bytes,
            d.heartbeat_default
        ),
        (
            n.retransmit_msgs,
            n.in_bytes,
            n.out_bytes,
            n.heartbeat_default
        )
    );
    assert_eq!(
        (
            d.heartbeat_timeouts,
            d.msgs_per_sec_max,
            d.slow_consumer_timeout
        ),
        (
            n.heartbeat_timeouts,
            n.msgs_per_sec_max,
            n.slow_consumer_timeout
        )
    );
    assert_eq!(
        (d.slow_consumer_drain_bytes, d.drain_timeout),
        (n.slow_consumer_drain_bytes, n.drain_timeout)
    );
}

#[test]
fn stats_are_an_operators_query() {
    let (h, addr) = start(|_| {});
    let mut alice = login(addr, "alice", 1);
    assert!(matches!(
        alice.stats(1),
        Err(ClientError::Rejected(1011, _))
    ));
    let mut bad = Client::connect(addr).unwrap();
    assert!(bad.login("bob", "nope", 1, false).is_err());
    let mut ops = login(addr, "ops1", 1);
    let s = ops.stats(9).unwrap();
    assert_eq!(s.logins, 2);
    assert_eq!(s.login_failures, 1);
    assert_eq!(s.conns_logged_in, 2);
    assert!(s.connections >= 3);
    assert_eq!(s.gateway_rejects, 1);
    assert_eq!(s.sessions_in_use, 2);
    // The reply is sequenced like any other, so it is retransmitted after a reconnect too.
    assert!(ops.last_seq() >= 1);
    assert_eq!(s, {
        let mut live = h.stats().snapshot();
        // Frames and messages moved on since (this request, its reply).
        live.frames_in = s.frames_in;
        live.msgs_out = s.msgs_out;
        live
    });
    h.shutdown().unwrap();
}

#[test]
fn cancel_and_amend_by_engine_order_id() {
    let (h, addr) = start(|_| {});
    let mut ops1 = login(addr, "ops1", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    ops1.send(
        &Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(2),
            amount: 100_000,
        }
        .into(),
    )
    .unwrap();
    until(&mut ops1, |m| {
        matches!(m, ServerMsg::Deposited { user: 1, .. })
    });
    alice.send(&order(1, 7, Side::Sell, 15_000, 5)).unwrap();
    let ServerMsg::Accepted { order_id, .. } =
        until(&mut alice, |m| matches!(m, ServerMsg::Accepted { .. }))
    else {
        unreachable!()
    };
    let by_id = |user: u32, qty: Option<u64>| -> ClientMsg {
        match qty {
            None => Command::CancelOrder {
                user: UserId(user),
                symbol: SymbolId(0),
                order_id: OrderId(order_id),
            },
            Some(q) => Command::AmendOrder {
                user: UserId(user),
                symbol: SymbolId(0),
                order_id: OrderId(order_id),
                price: Price(15_000),
                qty: Qty(q),
            },
        }
        .into()
    };
    // Bob names Alice's order as his own: NOT_YOUR_ORDER, and nothing about it (client order
    // id 0); as Alice's: the gateway's NOT_YOUR_ACCOUNT.
    bob.send(&by_id(2, None)).unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Rejected {
                code: 3014,
                client_order_id: 0,
                ref_msg_type: 14,
                ..
            }
        ),
        "{m:?}"
    );
    bob.send(&by_id(1, Some(2))).unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(matches!(m, ServerMsg::Rejected { code: 1010, .. }), "{m:?}");
    // Alice reduces it by id, then cancels it by id; a second cancel names a gone order.
    alice.send(&by_id(1, Some(2))).unwrap();
    let m = until(&mut alice, |m| matches!(m, ServerMsg::Amended { .. }));
    assert!(
        matches!(m, ServerMsg::Amended { client_order_id: 7, qty: 2, order_id: o, .. } if o == order_id),
        "{m:?}"
    );
    alice.send(&by_id(1, None)).unwrap();
    let m = until(&mut alice, |m| matches!(m, ServerMsg::Cancelled { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                client_order_id: 7,
                qty: 2,
                leaves_qty: 0,
                ..
            }
        ),
        "{m:?}"
    );
    alice.send(&by_id(1, None)).unwrap();
    let m = until(&mut alice, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Rejected {
                code: 3010,
                client_order_id: 0,
                ref_msg_type: 14,
                ..
            }
        ),
        "{m:?}"
    );
    h.shutdown().unwrap();
}

#[test]
fn budget_buys_and_gtd_orders_over_the_binary_protocol() {
    let (h, addr) = start(|_| {});
    let mut ops1 = login(addr, "ops1", 1);
    let mut alice = login(addr, "alice", 1);
    let mut bob = login(addr, "bob", 1);
    for (user, currency, amount) in [(1, 2, 100_000), (2, 0, 100_000)] {
        deposit(&mut ops1, user, currency, amount);
    }
    alice.send(&order(1, 1, Side::Sell, 15_000, 5)).unwrap();
    until(&mut alice, |m| matches!(m, ServerMsg::Accepted { .. }));
    // 40 000 KRW at 15 000 + ceil(15) a lot buys 2 lots (30 030); the rest of the order is
    // cancelled (reason 2, IOC).
    let budget = NewOrder::market_budget(
        UserId(2),
        SymbolId(0),
        ClientOrderId(1),
        Price(15_100),
        40_000,
    );
    bob.send(&Command::NewOrder(budget).into()).unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Fill { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Fill {
                qty: 2,
                price: 15_000,
                fee: 30,
                ..
            }
        ),
        "{m:?}"
    );
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Cancelled { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                reason: CancelReason::Ioc,
                leaves_qty: 0,
                ..
            }
        ),
        "{m:?}"
    );
    // GTD: an expiry in the past is refused (EXPIRY_IN_PAST), one far ahead rests.
    let gtd = |coid: u64, expire_at: u64| -> ClientMsg {
        Command::NewOrder(NewOrder::limit_gtd(
            UserId(2),
            SymbolId(0),
            ClientOrderId(coid),
            Side::Buy,
            Price(14_000),
            Qty(1),
            expire_at,
        ))
        .into()
    };
    bob.send(&gtd(2, 1)).unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Rejected {
                code: 3017,
                client_order_id: 2,
                ..
            }
        ),
        "{m:?}"
    );
    bob.send(&gtd(3, u64::MAX)).unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Accepted { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Accepted {
                client_order_id: 3,
                ..
            }
        ),
        "{m:?}"
    );
    h.shutdown().unwrap();
}

#[test]
fn an_idle_engine_backend_expires_a_gtd_order_by_the_servers_clock_tick() {
    let (h, addr) = start(|_| {});
    let mut ops1 = login(addr, "ops1", 1);
    let mut bob = login(addr, "bob", 1);
    deposit(&mut ops1, 2, 0, 100_000);
    let wall_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    assert_eq!(h.stats().clock_ticks.load(Ordering::Relaxed), 0);
    // 3 s ahead: an order whose expiry passed before the engine sequenced it would be refused
    // (EXPIRY_IN_PAST), and the open-orders query below must see it still resting, even when
    // a loaded CI box stalls this test for a while.
    let expire_at = wall_ns() + 3_000_000_000;
    bob.send(
        &Command::NewOrder(NewOrder::limit_gtd(
            UserId(2),
            SymbolId(0),
            ClientOrderId(1),
            Side::Buy,
            Price(14_000),
            Qty(1),
            expire_at,
        ))
        .into(),
    )
    .unwrap();
    until(&mut bob, |m| matches!(m, ServerMsg::Accepted { .. }));
    // The open-orders query shows when it expires (protocol 5).
    bob.send(
        &Command::Query(Query::OpenOrders {
            user: UserId(2),
            limit: 10,
        })
        .into(),
    )
    .unwrap();
    let m = until(&mut bob, |m| matches!(m, ServerMsg::OpenOrder { .. }));
    let ServerMsg::OpenOrder { order, .. } = m else {
        unreachable!()
    };
    assert_eq!(
        (order.tif, order.expire_at),
        (TimeInForce::Gtd, expire_at),
        "{m:?}"
    );
    // Nobody sends anything more: only the server's tick brings engine time to the expiry.
    let m = until(&mut bob, |m| matches!(m, ServerMsg::Cancelled { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Cancelled {
                reason: CancelReason::Expired,
                client_order_id: 1,
                ..
            }
        ),
        "{m:?}"
    );
    assert!(wall_ns() >= expire_at);
    assert!(h.stats().clock_ticks.load(Ordering::Relaxed) >= 1);
    h.shutdown().unwrap();
}

#[test]
fn reference_data_is_the_configuration_for_every_role() {
    let config = Config::default();
    let (h, addr) = start(|c| c.reference_data(&Config::default()));
    let want = ReferenceData::of(&config);
    assert_eq!(want.currencies, config.currencies);
    for (who, session) in [("alice", 1), ("ops1", 1), ("feed", 7)] {
        let mut c = login(addr, who, session);
        assert_eq!(c.reference_data(3).unwrap(), want, "as {who}");
        // The replies are sequenced: currencies, symbols, one end.
        assert_eq!(c.last_seq(), want.len() as u64 + 1);
    }
    // Past the end of the list.
    let mut alice = login(addr, "alice", 2);
    alice
        .send(&ClientMsg::ReferenceData {
            request_id: 4,
            first: want.len() as u32 + 1,
        })
        .unwrap();
    let m = until(&mut alice, |m| matches!(m, ServerMsg::Rejected { .. }));
    assert!(
        matches!(
            m,
            ServerMsg::Rejected {
                code: 1005,
                ref_msg_type: 25,
                ..
            }
        ),
        "{m:?}"
    );
    h.shutdown().unwrap();

    // A gateway given no reference data says so with empty lists.
    let (h, addr) = start(|_| {});
    let mut alice = login(addr, "alice", 1);
    assert_eq!(alice.reference_data(1).unwrap(), ReferenceData::default());
    h.shutdown().unwrap();
}

/// A server publishing 3 currencies and 600 symbols (603 entries: pages of 256, 256 and 91),
/// with retransmission rings of `ring` frames.
fn start_with_many_symbols(
    ring: usize,
) -> (ServerHandle<EngineBackend>, SocketAddr, Arc<ReferenceData>) {
    let mut data = ReferenceData::of(&Config::default());
    data.currencies.truncate(3);
    let template = data.symbols[0].clone();
    data.symbols = (0..600u16)
        .map(|i| SymbolConfig {
            id: i,
            name: format!("S{i}-KRW"),
            ..template.clone()
        })
        .collect();
    let data = Arc::new(data);
    let (h, addr) = start(|c| {
        c.retransmit_msgs = ring;
        c.reference = Some(data.clone());
    });
    (h, addr, data)
}

/// The frames of `msgs`, back to back (one write: pipelined).
fn frames(msgs: impl IntoIterator<Item = ClientMsg>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        Client::encode_into(&m, &mut out);
    }
    out
}

/// A request for the first page of reference data.
fn first_page(request_id: u64) -> ClientMsg {
    ClientMsg::ReferenceData {
        request_id,
        first: 0,
    }
}

#[test]
fn reference_data_comes_in_pages_and_pipelined_requests_never_overrun_the_ring() {
    // Twenty requests for the first page (257 frames each) and 3 000 for the counters, sent at
    // once without reading, are many times the session's ring (1 024 frames). The gateway
    // answers these itself; no frame is handled, and reading pauses, while the session's
    // backlog is above half the ring, resuming as the client reads (answered regardless, they
    // overran the ring and the client was cut off as a slow consumer: a red-team finding).
    let (h, addr, data) = start_with_many_symbols(1024);
    let mut ops = login(addr, "ops1", 1);
    let asks = frames(
        (1..=20)
            .map(first_page)
            .chain((21..=3020).map(|request_id| ClientMsg::Stats { request_id })),
    );
    ops.send_raw(&asks).unwrap();
    let mut page = 0u32;
    for request_id in 1..=20 {
        loop {
            match ops.recv_timeout(WAIT).unwrap() {
                Some(ServerMsg::CurrencyInfo {
                    request_id: r,
                    currency,
                    ..
                }) => {
                    assert_eq!((r, u32::from(currency)), (request_id, page));
                    page += 1;
                }
                Some(ServerMsg::SymbolInfo {
                    request_id: r,
                    symbol,
                    ..
                }) => {
                    assert_eq!((r, u32::from(symbol) + 3), (request_id, page));
                    page += 1;
                }
                Some(ServerMsg::ReferenceEnd {
                    request_id: r,
                    currencies: 3,
                    symbols: 600,
                    next,
                    ..
                }) => {
                    assert_eq!((r, page, next), (request_id, 256, 256));
                    page = 0;
                    break;
                }
                other => panic!("request {request_id}: {other:?}"),
            }
        }
    }
    for request_id in 21..=3020 {
        match ops.recv_timeout(WAIT).unwrap() {
            Some(ServerMsg::Stats { request_id: r, .. }) => assert_eq!(r, request_id),
            other => panic!("stats {request_id}: {other:?}"),
        }
    }
    let stats = h.stats();
    assert_eq!(stats.slow_consumers.load(Ordering::Relaxed), 0);
    // The client's loop reads all three pages.
    assert_eq!(ops.reference_data(3021).unwrap(), *data);
    h.shutdown().unwrap();
}

/// Waits until the server has seen every logged-in connection close (a dropped client's
/// session is detached only then: a login to it before is `ALREADY_LOGGED_IN`).
fn detached(h: &ServerHandle<EngineBackend>) {
    let deadline = std::time::Instant::now() + WAIT;
    while h.stats().conns_logged_in.load(Ordering::Relaxed) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a closed connection still logged in"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn reference_data_after_a_resumed_session_is_the_new_reply() {
    // A session resumed from `last_seen_seq` 0 gets its held messages again first: earlier
    // reference pages with the same request id, the oldest held starting in the middle of one
    // (the ring is 514 frames; a full read is 606). The request sent right behind the login
    // waits for that replay (it filled the ring: the reply overran it and the session was cut
    // off), and the client takes only the new reply (it mixed the old pages in and failed:
    // "out of order"; red-team findings).
    let (h, addr, data) = start_with_many_symbols(514);
    let mut alice = login(addr, "alice", 7);
    assert_eq!(alice.reference_data(1).unwrap(), *data);
    let sent = alice.last_seq();
    assert_eq!(sent, 606);
    drop(alice);
    detached(&h);
    let mut again = Client::connect(addr).unwrap();
    let info = again.login("alice", "alice-demo", 7, false).unwrap();
    assert_eq!(info.last_seq, sent);
    assert_eq!(again.reference_data(1).unwrap(), *data);
    // The replay came first, from the oldest frame held, then the new reply.
    assert_eq!(again.last_seq(), 2 * sent);
    // The retransmitted messages are not lost: kept, in order, for `recv` (they were thrown
    // away: a review finding).
    let mut kept = Vec::new();
    while kept.len() < 514 {
        let m = again.recv_timeout(WAIT).unwrap().expect("a kept message");
        if m.seq() != 0 {
            kept.push(m.seq());
        }
    }
    assert_eq!(kept, (sent - 513..=sent).collect::<Vec<u64>>());
    // A login and a request in one write: the replay fills the ring, the request waits.
    let mut raw = Client::connect(addr).unwrap();
    let mut bytes = Vec::new();
    Client::encode_into(
        &ClientMsg::Login(ringbook_gateway::protocol::client::Login {
            login: ringbook_gateway::protocol::name32("alice"),
            password: ringbook_gateway::protocol::name32("alice-demo"),
            session_id: 7,
            last_seen_seq: 0,
            heartbeat_ms: 60_000,
            cancel_on_disconnect: false,
        }),
        &mut bytes,
    );
    Client::encode_into(
        &ClientMsg::ReferenceData {
            request_id: 2,
            first: 0,
        },
        &mut bytes,
    );
    drop(again);
    detached(&h);
    raw.send_raw(&bytes).unwrap();
    let mut replayed = 0;
    let end = loop {
        match raw.recv_timeout(WAIT).unwrap() {
            Some(ServerMsg::LoginAccepted { .. }) => {}
            Some(ServerMsg::ReferenceEnd {
                request_id: 2,
                next,
                ..
            }) => break next,
            Some(m) if m.seq() <= 2 * sent => replayed += 1,
            Some(_) => {}
            other => panic!("after {replayed} replayed: {other:?}"),
        }
    };
    assert_eq!(end, 256);
    assert_eq!(replayed, 514);
    assert_eq!(h.stats().slow_consumers.load(Ordering::Relaxed), 0);
    h.shutdown().unwrap();
}

#[test]
fn a_gateway_older_than_the_request_has_no_reference_data() {
    // A protocol-6 gateway from before reference data refuses the request as
    // UNKNOWN_MESSAGE_TYPE: the client reads that as "none published", so `ringbook md` and the
    // bots fall back to their own configuration instead of stopping (a red-team finding). The
    // old gateway is played by a socket that answers as one did.
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let old = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let read_type = |s: &mut std::net::TcpStream| -> Option<u16> {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).ok()?;
            let mut rest = vec![0u8; u32::from_le_bytes(len) as usize];
            s.read_exact(&mut rest).ok()?;
            Some(u16::from_le_bytes([rest[0], rest[1]]))
        };
        let write = |s: &mut std::net::TcpStream, m: ServerMsg| {
            let mut f = [0u8; FRAME_BYTES_MAX];
            let n = m.encode(&mut f);
            s.write_all(&f[..n]).unwrap();
        };
        assert_eq!(read_type(&mut s), Some(1));
        write(
            &mut s,
            ServerMsg::LoginAccepted {
                session_id: 1,
                role: ringbook_gateway::protocol::Role::User(1),
                heartbeat_ms: 60_000,
                last_seq: 0,
            },
        );
        assert_eq!(read_type(&mut s), Some(25));
        write(
            &mut s,
            ServerMsg::rejected(1, 0, 25, RejectCode::UnknownMessageType, 0),
        );
        // Until the client hangs up.
        while read_type(&mut s).is_some() {}
    });
    let mut c = Client::connect(addr).unwrap();
    c.login("alice", "alice-demo", 1, false).unwrap();
    assert_eq!(c.reference_data(1).unwrap(), ReferenceData::default());
    drop(c);
    old.join().unwrap();
}

#[test]
fn pipelined_rejects_and_a_logout_behind_them_lose_nothing() {
    // Rejects are answered by the gateway at once, like stats: 3 000 of them sent without
    // reading are three times the ring, and reading pauses above its high-water mark instead
    // (they overran it: SLOW_CONSUMER). A logout behind twenty reference pages delivers all of
    // them, then the Disconnect (it closed at once and dropped what was not yet in the socket's
    // buffer). Red-team findings.
    let (h, addr, _) = start_with_many_symbols(1024);
    let mut alice = login(addr, "alice", 1);
    // A user session may not ask for the counters: OPERATOR_ONLY.
    let asks = frames(
        (1..=3000)
            .map(|request_id| ClientMsg::Stats { request_id })
            .chain((1..=20).map(first_page))
            .chain([ClientMsg::Logout]),
    );
    alice.send_raw(&asks).unwrap();
    let (mut rejects, mut pages) = (0, 0);
    loop {
        match alice.recv_timeout(WAIT) {
            Ok(Some(ServerMsg::Rejected { code: 1011, .. })) => rejects += 1,
            Ok(Some(ServerMsg::ReferenceEnd { .. })) => pages += 1,
            Ok(Some(_)) => {}
            Err(ClientError::Disconnected(0, name)) => {
                assert_eq!(name, "LOGOUT");
                break;
            }
            other => panic!("after {rejects} rejects and {pages} pages: {other:?}"),
        }
    }
    assert_eq!((rejects, pages), (3000, 20));
    assert_eq!(h.stats().slow_consumers.load(Ordering::Relaxed), 0);
    // A logout right behind queries the engine answers: their replies are routed after the
    // logout is read, and still delivered before the Disconnect.
    let mut bob = login(addr, "bob", 1);
    let mut asks = Vec::new();
    for request_id in 1..=10 {
        Client::encode_into(
            &ClientMsg::BookSnapshot {
                request_id,
                symbol: SymbolId(0),
                depth: 5,
            },
            &mut asks,
        );
    }
    Client::encode_into(&ClientMsg::Logout, &mut asks);
    bob.send_raw(&asks).unwrap();
    let mut books = 0;
    loop {
        match bob.recv_timeout(WAIT) {
            Ok(Some(ServerMsg::BookEnd { .. })) => books += 1,
            Ok(Some(_)) => {}
            Err(ClientError::Disconnected(0, _)) => break,
            other => panic!("after {books} books: {other:?}"),
        }
    }
    assert_eq!(books, 10);
    h.shutdown().unwrap();
}
