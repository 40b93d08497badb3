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
use ringbook_engine::pipeline::{Layout, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_engine::Pipeline;
use ringbook_gateway::protocol::{name32, ServerMsg};
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
    let h = server::start(sc, PipelineBackend::start(builder).unwrap()).unwrap();
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
                        WebOutKind::Done(_) | WebOutKind::Rejected(_) | WebOutKind::Login(_)
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
