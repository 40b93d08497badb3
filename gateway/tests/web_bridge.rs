//! The web edge's bridge into the server loop, driven directly (standing in for the web edge):
//! web logins meet the same throttling tables as binary logins; web commands are authorized by
//! the same rule, sequenced in the order they were queued, answered exactly once even when the
//! engine's ring is full, and their events reach the binary sessions of the users they concern.
//!
//! `cargo test -p ringbook-gateway --test web_bridge`
//!
//! Every wait is bounded (a deadline that only fails a broken run).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbook_client::{Client, ClientError};
use ringbook_engine::marketdata::{Interval, MarketData, MdMessage};
use ringbook_engine::pipeline::{replay_journal_outputs, Layout, OutputKind, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_engine::Pipeline;
use ringbook_gateway::protocol::{name32, ClientMsg, ServerMsg};
use ringbook_gateway::server::bridge::{WebOp, WebOutKind, WebOutput, WebRequest};
use ringbook_gateway::server::{
    self, LoginCheck, PipelineBackend, Role, ServerConfig, ServerHandle, WebBridge,
};
use ringbook_journal::JournalConfig;

const WAIT: Duration = Duration::from_secs(20);

fn start(
    dir: &std::path::Path,
    bridge: &Arc<WebBridge>,
) -> (ServerHandle<PipelineBackend>, SocketAddr) {
    start_md(dir, bridge, None)
}

/// [`start`], publishing market data built by `md`.
fn start_md(
    dir: &std::path::Path,
    bridge: &Arc<WebBridge>,
    md: Option<MarketData>,
) -> (ServerHandle<PipelineBackend>, SocketAddr) {
    let config = Config::default();
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    sc.web = Some(bridge.clone());
    // A session silent for three heartbeat intervals is ended; with the default (1 s) a loaded
    // CI box could cut off bob's binary session, which only reads at the end of a test.
    sc.heartbeat_default = Duration::from_secs(60);
    // A tiny inbound ring: a burst of web commands must meet a full ring.
    let builder = Pipeline::builder(&config)
        .layout(Layout::Fused)
        .wait(WaitStrategy::Yield)
        .inline_output(true)
        .ring_size(16)
        .journal(dir, JournalConfig::default());
    let h =
        server::start_with_market_data(sc, PipelineBackend::start(builder).unwrap(), md).unwrap();
    let addr = h.local_addr();
    (h, addr)
}

/// Pops outputs until `n` requests have ended (`Done`, `Rejected` or `Login`); returns every
/// output in order.
fn collect(bridge: &WebBridge, n: usize) -> Vec<WebOutput> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut ended = 0;
    while ended < n {
        assert!(
            Instant::now() < deadline,
            "{ended} of {n} requests answered"
        );
        match bridge.pop_output() {
            Some(o) => {
                if o.request != 0
                    && matches!(
                        o.kind,
                        WebOutKind::Done(_)
                            | WebOutKind::Ended { .. }
                            | WebOutKind::Rejected(_)
                            | WebOutKind::Login(_)
                            | WebOutKind::MdSynced(_)
                    )
                {
                    ended += 1;
                }
                out.push(o);
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    out
}

fn submit(bridge: &WebBridge, id: u64, op: WebOp) {
    let deadline = Instant::now() + WAIT;
    let mut req = WebRequest { id, op };
    while let Err(back) = bridge.submit(req) {
        assert!(
            Instant::now() < deadline,
            "the inbound queue never made room"
        );
        req = back;
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn login(ip: IpAddr, who: &str, password: &str) -> WebOp {
    WebOp::Login {
        ip,
        login: name32(who),
        password: name32(password),
    }
}

#[test]
fn web_logins_share_the_binary_throttling_tables() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = WebBridge::new(64, 1024);
    let (h, addr) = start(dir.path(), &bridge);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    submit(&bridge, 1, login(ip, "alice", "alice-demo"));
    submit(&bridge, 2, login(ip, "ops1", "ops1-demo"));
    let out = collect(&bridge, 2);
    let logins: Vec<_> = out
        .iter()
        .map(|o| match o.kind {
            WebOutKind::Login(c) => (o.request, c),
            k => panic!("{k:?}"),
        })
        .collect();
    assert!(
        matches!(logins[0], (1, LoginCheck::Ok(_, Role::User(1)))),
        "{logins:?}"
    );
    assert!(
        matches!(logins[1], (2, LoginCheck::Ok(_, Role::Operator(900)))),
        "{logins:?}"
    );
    // Three wrong passwords for bob over the web …
    for id in 3..6 {
        submit(&bridge, id, login(ip, "bob", "guess"));
    }
    let out = collect(&bridge, 3);
    assert!(out
        .iter()
        .all(|o| matches!(o.kind, WebOutKind::Login(LoginCheck::Bad))));
    // … and bob's right password is refused over the binary protocol too (the same tables).
    let mut c = Client::connect(addr).unwrap();
    match c.login("bob", "bob-demo", 1, false) {
        Err(ClientError::LoginRejected(1009, _)) => {}
        other => panic!("expected LOGIN_THROTTLED, got {other:?}"),
    }
    assert_eq!(
        h.stats()
            .login_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    let backend = h.shutdown().unwrap();
    backend.shutdown().unwrap();
}

#[test]
fn web_commands_are_authorized_sequenced_in_order_and_answered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = WebBridge::new(4096, 256);
    let (h, addr) = start(dir.path(), &bridge);
    // Bob on the binary protocol sees what the web does to his account.
    let mut bob = Client::connect(addr).unwrap();
    bob.login("bob", "bob-demo", 1, false).unwrap();

    let ops = Role::Operator(900);
    let deposit = |user: u32, currency: u16| WebOp::Command {
        role: ops,
        cmd: Command::Deposit {
            user: UserId(user),
            currency: CurrencyId(currency),
            amount: 1 << 40,
        },
    };
    submit(&bridge, 1, deposit(1, 0));
    submit(&bridge, 2, deposit(2, 2));
    // Refused by the shared rule: a user depositing, alice ordering for bob.
    submit(
        &bridge,
        3,
        WebOp::Command {
            role: Role::User(1),
            cmd: Command::Deposit {
                user: UserId(1),
                currency: CurrencyId(0),
                amount: 5,
            },
        },
    );
    let for_bob = NewOrder::limit(
        UserId(2),
        SymbolId(0),
        ClientOrderId(1),
        Side::Buy,
        Price(100),
        Qty(1),
    );
    submit(
        &bridge,
        4,
        WebOp::Command {
            role: Role::User(1),
            cmd: Command::NewOrder(for_bob),
        },
    );
    let out = collect(&bridge, 4);
    let ends: HashMap<u64, WebOutKind> = out
        .iter()
        .filter(|o| matches!(o.kind, WebOutKind::Done(_) | WebOutKind::Rejected(_)))
        .map(|o| (o.request, o.kind))
        .collect();
    assert!(matches!(ends[&1], WebOutKind::Done(_)));
    assert!(matches!(ends[&2], WebOutKind::Done(_)));
    assert!(matches!(
        ends[&3],
        WebOutKind::Rejected(RejectCode::OperatorOnly)
    ));
    assert!(matches!(
        ends[&4],
        WebOutKind::Rejected(RejectCode::NotYourAccount)
    ));

    // A burst far larger than the ring: bob rests 600 sells, alice takes them one by one.
    let n = 600u64;
    for i in 0..n {
        let sell = NewOrder::limit(
            UserId(2),
            SymbolId(0),
            ClientOrderId(i + 1),
            Side::Sell,
            Price(15_000),
            Qty(1),
        );
        let buy = NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(i + 1),
            Side::Buy,
            Price(15_000),
            Qty(1),
        );
        submit(
            &bridge,
            100 + 2 * i,
            WebOp::Command {
                role: Role::User(2),
                cmd: Command::NewOrder(sell),
            },
        );
        submit(
            &bridge,
            101 + 2 * i,
            WebOp::Command {
                role: Role::User(1),
                cmd: Command::NewOrder(buy),
            },
        );
    }
    let out = collect(&bridge, 2 * n as usize);
    let mut done_seq: Vec<(u64, u64)> = Vec::new();
    let mut accepted: HashMap<u64, u64> = HashMap::new();
    let mut trades = 0;
    for o in &out {
        match o.kind {
            WebOutKind::Done(seq) => done_seq.push((o.request, seq)),
            WebOutKind::Rejected(c) => panic!("request {} refused: {c:?}", o.request),
            WebOutKind::Event(Event::Rejected { code, .. }) => {
                panic!("request {} rejected: {code:?}", o.request)
            }
            WebOutKind::Event(Event::Accepted { .. }) => {
                *accepted.entry(o.request).or_default() += 1
            }
            WebOutKind::Event(Event::Trade(_)) => trades += 1,
            _ => {}
        }
    }
    // Exactly one Done per request, each after its own Accepted, in queue order, with
    // increasing sequence numbers: sequenced in the order they were queued.
    assert_eq!(done_seq.len(), 2 * n as usize);
    for (k, (req, _)) in done_seq.iter().enumerate() {
        assert_eq!(*req, 100 + k as u64);
        assert_eq!(accepted.get(req), Some(&1), "request {req}");
    }
    assert!(done_seq.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(trades, n);
    // Bob's binary session saw every one of his web orders accepted and filled.
    let deadline = Instant::now() + WAIT;
    let (mut acc, mut fills) = (0, 0);
    while acc < n || fills < n {
        assert!(
            Instant::now() < deadline,
            "binary session saw {acc} accepts, {fills} fills"
        );
        match bob.recv_timeout(WAIT).unwrap() {
            Some(ServerMsg::Accepted { user: 2, .. }) => acc += 1,
            Some(ServerMsg::Fill { user: 2, .. }) => fills += 1,
            Some(_) => {}
            None => panic!("binary session: nothing"),
        }
    }
    eprintln!(
        "web burst: {} ring-full waits, {} waits for output room",
        bridge
            .stats
            .backpressure
            .load(std::sync::atomic::Ordering::Relaxed),
        bridge
            .stats
            .outbound_full
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let backend = h.shutdown().unwrap();
    let report = backend.shutdown().unwrap();
    // Two deposits and 1 200 orders journaled; the refused requests never were.
    assert_eq!(report.commands, 2 + 2 * n);
}

/// Everything a reader can see of one symbol's market data, as text.
fn md_view(md: &MarketData, s: SymbolId) -> String {
    let mut out = format!("md_seq {} now {}", md.md_seq(s), md.now_ns());
    for side in [Side::Buy, Side::Sell] {
        md.depth(s, side, usize::MAX, |p, q, n| {
            out.push_str(&format!(" {side:?}:{}x{}/{n}", p.0, q.0))
        });
    }
    out.push_str(&format!(" {:?}", md.ticker(s)));
    md.tape(s, usize::MAX, |t| out.push_str(&format!(" {t:?}")));
    for i in Interval::ALL {
        md.candles(s, i, usize::MAX, |c| out.push_str(&format!(" {c:?}")));
    }
    out
}

/// Sends `n` crossing pairs on the binary protocol (bob sells, alice buys), plus one resting
/// bid of alice's at `rest` (so the book changes too), and waits until alice has all her fills.
fn binary_trades(alice: &mut Client, bob: &mut Client, coid: &mut u64, n: u64, rest: i64) {
    let order = |user: u32, coid: u64, side: Side, price: i64| {
        ClientMsg::Command(Command::NewOrder(NewOrder::limit(
            UserId(user),
            SymbolId(0),
            ClientOrderId(coid),
            side,
            Price(price),
            Qty(1),
        )))
    };
    for _ in 0..n {
        *coid += 1;
        bob.send(&order(2, *coid, Side::Sell, 15_000)).unwrap();
        alice.send(&order(1, *coid, Side::Buy, 15_000)).unwrap();
    }
    *coid += 1;
    alice.send(&order(1, *coid, Side::Buy, rest)).unwrap();
    let deadline = Instant::now() + WAIT;
    let (mut fills, mut rested) = (0, false);
    while fills < n || !rested {
        assert!(Instant::now() < deadline, "alice saw {fills} of {n} fills");
        match alice.recv_timeout(WAIT).unwrap() {
            Some(ServerMsg::Fill { user: 1, .. }) => fills += 1,
            Some(ServerMsg::Accepted {
                client_order_id, ..
            }) if client_order_id == *coid => rested = true,
            Some(_) => {}
            None => panic!("alice: nothing"),
        }
    }
}

/// Issue #13, "the web edge costs nothing while idle": with no watched user and the feed off,
/// binary trading sends the web side nothing at all (counted, not timed); a watched user's
/// events cross and nobody else's; a sync hands over a copy of the gateway's builder taken
/// mid-stream which, fed what crosses after it, ends equal to the journal's replay, with every
/// depth update's `md_seq` contiguous from the copy's.
#[test]
fn an_idle_web_edge_gets_nothing_and_a_sync_hands_over_an_exact_copy() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let bridge = WebBridge::with_users(64, 1 << 16, &[1, 2]);
    bridge.set_md_slot(MarketData::new(&config));
    let (h, addr) = start_md(dir.path(), &bridge, Some(MarketData::new(&config)));
    // Funds through the web (its own requests: answered, not forwarded).
    let ops = Role::Operator(900);
    let funding: Vec<(u32, u16)> = [1u32, 2]
        .into_iter()
        .flat_map(|u| (0..config.currencies.len() as u16).map(move |c| (u, c)))
        .collect();
    for (id, &(user, currency)) in funding.iter().enumerate() {
        submit(
            &bridge,
            id as u64 + 1,
            WebOp::Command {
                role: ops,
                cmd: Command::Deposit {
                    user: UserId(user),
                    currency: CurrencyId(currency),
                    amount: 1 << 40,
                },
            },
        );
    }
    let out = collect(&bridge, funding.len());
    assert!(out.iter().all(|o| o.request != 0), "{out:?}");
    assert!(
        !out.iter()
            .any(|o| matches!(o.kind, WebOutKind::Rejected(_))),
        "{out:?}"
    );
    assert_eq!(bridge.stats.forwarded.load(Relaxed), 0);

    let mut alice = Client::connect(addr).unwrap();
    alice.login("alice", "alice-demo", 1, false).unwrap();
    let mut bob = Client::connect(addr).unwrap();
    bob.login("bob", "bob-demo", 1, false).unwrap();
    let mut coid = 0;
    // Idle: 200 trades on the binary protocol, nothing crosses.
    binary_trades(&mut alice, &mut bob, &mut coid, 200, 14_000);
    assert_eq!(
        bridge.stats.forwarded.load(Relaxed),
        0,
        "an idle edge got outputs"
    );
    assert!(bridge.pop_output().is_none());

    // Alice watched (a WebSocket session): her events cross, bob's alone do not.
    bridge.watch_add(1, 1);
    binary_trades(&mut alice, &mut bob, &mut coid, 20, 14_001);
    let mut crossed = 0;
    while let Some(o) = bridge.pop_output() {
        crossed += 1;
        let WebOutKind::Event(e) = o.kind else {
            panic!("not an event: {o:?}");
        };
        let alices = match e {
            Event::Trade(t) => t.maker.user.0 == 1 || t.taker.user.0 == 1,
            Event::Accepted { user, .. }
            | Event::Cancelled { user, .. }
            | Event::BalanceUpdate { user, .. } => user.0 == 1,
            e => panic!("unexpected {e:?}"),
        };
        assert!(alices, "{e:?}");
    }
    assert!(
        crossed >= 41,
        "alice's 21 accepts and 20 trades, got {crossed}"
    );
    assert_eq!(bridge.stats.forwarded.load(Relaxed), crossed);
    bridge.watch_add(1, -1);

    // A sync mid-stream: the copy, fed every output after it, equals the replay at the end.
    submit(&bridge, 50, WebOp::MdSync);
    let out = collect(&bridge, 1);
    let WebOutKind::MdSynced(_) = out.last().unwrap().kind else {
        panic!("{out:?}");
    };
    assert!(bridge.market_data_enabled(), "the feed is on after a sync");
    let mut copy = MarketData::new(&config);
    assert!(bridge.md_swap(&mut copy));
    let mut md_seq = copy.md_seq(SymbolId(0));
    let mut check = |m: MdMessage<'_>| {
        if let MdMessage::Depth(d) = m {
            assert_eq!(d.md_seq, md_seq + 1, "contiguous from the copy's md_seq");
            md_seq = d.md_seq;
        }
    };
    binary_trades(&mut alice, &mut bob, &mut coid, 50, 14_002);
    let deadline = Instant::now() + WAIT;
    let mut last_seq = 0;
    // Until the feed has carried the end of the last command so far (one per deposit, two
    // per pair and one resting bid per batch).
    let commands = (funding.len() + 401 + 41 + 101) as u64;
    while last_seq < commands {
        assert!(Instant::now() < deadline, "the feed stalled");
        match bridge.pop_output() {
            Some(WebOutput {
                kind: WebOutKind::Event(e),
                ..
            }) => copy.apply(&e, &mut check),
            Some(WebOutput {
                kind: WebOutKind::Ended { seq, ts },
                ..
            }) => {
                copy.end_command(ts, &mut check);
                last_seq = seq;
            }
            Some(o) => panic!("{o:?}"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert!(md_seq > 50, "updates seen: md_seq {md_seq}");
    assert_eq!(bridge.stats.md_syncs.load(Relaxed), 1);
    // Off again: nothing more crosses.
    bridge.md_off();
    let forwarded = bridge.stats.forwarded.load(Relaxed);
    binary_trades(&mut alice, &mut bob, &mut coid, 10, 14_003);
    assert_eq!(bridge.stats.forwarded.load(Relaxed), forwarded);

    drop((alice, bob));
    let backend = h.shutdown().unwrap();
    backend.shutdown().unwrap();
    // The copy stopped at the last output it was fed; replay the journal as far.
    let mut replayed = MarketData::new(&config);
    replay_journal_outputs(
        &config,
        RiskMode::On,
        dir.path(),
        1,
        Some(Seq(last_seq)),
        &mut |o| match o.kind {
            OutputKind::Event(ref e) => replayed.apply(e, &mut |_| {}),
            OutputKind::Done => replayed.end_command(o.ts, &mut |_| {}),
        },
    )
    .unwrap();
    assert_eq!(md_view(&copy, SymbolId(0)), md_view(&replayed, SymbolId(0)));
}
