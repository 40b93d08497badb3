//! Issue #6: after start, the server allocates nothing per message — on any thread.
//!
//! A counting global allocator counts every heap operation of every thread (the server loop,
//! the pipeline's threads, the journal's pre-toucher and this test's own threads) while two
//! traders and an operator, on raw `TcpStream`s with pre-allocated buffers and the crate's
//! encoders, drive the real server on a loopback port: resting orders, crossing orders that
//! trade, amends, cancels, mass cancels, queries and heartbeats. The server publishes market
//! data, and a `market_data` login subscribed to every channel of the traded symbol (depth,
//! trades, ticker, 1m candles) reads it on its own thread throughout (it must see every trade,
//! or the publisher must have counted it dropped). The window's end is deterministic: every
//! batch ends with a barrier command (a cancel of an order that does not exist), and the window closes once each trader has read its barrier's reject, which the
//! engine's sequencing puts after every output of the commands before it.
//!
//! The web edge's path through the loop is counted too: a stand-in for the web edge (a thread
//! that only pushes pre-built requests onto the [`WebBridge`] and pops its outputs, as the web
//! edge's dispatcher does) places and cancels orders for a third user and asks for balances
//! and books all through the window, and is an authenticated WebSocket listener, so every
//! user-facing event of the traders is pushed to it as well.
//!
//! Three backends: the threaded pipeline (fused layout, inline output, `Yield` waits for small
//! machines, a small inbound ring so bursts meet back-pressure, journal in a temporary
//! directory with the production defaults), the pipeline in the `inline` layout (journal and
//! engine on the server thread) and the in-process engine. One test in this binary,
//! so no other test's allocations are counted.
//!
//! Not covered: the window (about 20 000 commands) stays inside one 64 MiB journal segment.
//! A segment roll allocates (the next segment's path and its `Arc`, on the pre-toucher thread,
//! or on the journal thread with `Pretouch::Off`): once per segment, not per message.
//!
//! `RINGBOOK_ALLOC_TRACE=1 cargo test -p ringbook-gateway --test zero_alloc -- --nocapture`
//! prints a backtrace of the first few counted operations.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringbook_engine::marketdata::{Interval, MarketData};
use ringbook_engine::pipeline::{Layout, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_engine::Pipeline;
use ringbook_gateway::protocol::client::Login;
use ringbook_gateway::protocol::marketdata::{self as mdp, Channel, MdMsg, MdRequest};
use ringbook_gateway::protocol::{name32, split_frame, ClientMsg, ServerMsg, FRAME_BYTES_MAX};
use ringbook_gateway::server::bridge::{WebOp, WebOutKind, WebRequest};
use ringbook_gateway::server::{
    self, Backend, EngineBackend, PipelineBackend, Role, ServerConfig, WebBridge,
};
use ringbook_journal::JournalConfig;
use ringbook_testkit::alloc::CountingAlloc;

// ---------------------------------------------------------------------------------------------
// The counting allocator: every thread, allocations and frees apart, backtraces on request.

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

// ---------------------------------------------------------------------------------------------
// Raw protocol clients.

/// Only a hang guard for a broken run: nothing waits on the clock to pass.
const HANG: Duration = Duration::from_secs(300);
/// The client order id of barrier cancels: never used by an order, so always rejected.
const BARRIER_COID: u64 = u64::MAX - 1;
const SYMBOL: SymbolId = SymbolId(0);
/// The traders' reference price (BTC-KRW, band 1..=100 000).
const P: i64 = 15_000;
/// Steps per trader batch (each step is five messages).
const STEPS: u64 = 10;
/// Every `BURST_EVERY`th round alice also sends this many far-away sells and their cancels in
/// one write: more than the pipeline's small inbound ring holds, so commands meet a full ring
/// and wait in the server (its `backpressure` count, printed, is typically 20–70 per run). The
/// outbound-backlog pause (above half the retransmission ring) is not reached: the loop routes
/// outputs every turn of at most 256 frames per connection.
const BURST: u64 = 400;
const BURST_EVERY: u64 = 5;
const WARMUP_MSGS: u64 = 5_000;
const WINDOW_MSGS: u64 = 20_000;

/// What a client's reader thread has seen (written by the reader, read by the driver).
#[derive(Debug, Default)]
struct Tally {
    msgs: AtomicU64,
    logins: AtomicU64,
    login_rejected: AtomicU64,
    barriers: AtomicU64,
    /// Rejects other than barriers: the workload is built so there are none.
    rejects: AtomicU64,
    last_reject_code: AtomicU64,
    fills: AtomicU64,
    deposits: AtomicU64,
    /// Replies to `Stats` requests.
    stats: AtomicU64,
    /// Ends of reference-data pages.
    references: AtomicU64,
    /// Sequenced messages whose number was not the previous one plus one.
    gaps: AtomicU64,
    last_seq: AtomicU64,
    disconnect_code: AtomicU64,
    undecodable: AtomicU64,
    /// Market-data messages (depth frames, trades, tickers, candles, acknowledgements).
    md_msgs: AtomicU64,
    md_trades: AtomicU64,
    closed: AtomicBool,
}

impl Tally {
    fn note(&self, m: &ServerMsg) {
        self.msgs.fetch_add(1, Ordering::Relaxed);
        let seq = m.seq();
        if seq != 0 {
            if seq != self.last_seq.load(Ordering::Relaxed) + 1 {
                self.gaps.fetch_add(1, Ordering::Relaxed);
            }
            self.last_seq.store(seq, Ordering::Relaxed);
        }
        let counter = match *m {
            ServerMsg::LoginAccepted { .. } => &self.logins,
            ServerMsg::LoginRejected { .. } => &self.login_rejected,
            ServerMsg::Rejected {
                client_order_id: BARRIER_COID,
                ..
            } => &self.barriers,
            ServerMsg::Rejected { code, .. } => {
                self.last_reject_code
                    .store(u64::from(code), Ordering::Relaxed);
                &self.rejects
            }
            ServerMsg::Fill { .. } => &self.fills,
            ServerMsg::Deposited { .. } => &self.deposits,
            ServerMsg::Stats { .. } => &self.stats,
            ServerMsg::ReferenceEnd { .. } => &self.references,
            ServerMsg::Disconnect { code, .. } => {
                self.disconnect_code
                    .store(u64::from(code), Ordering::Relaxed);
                return;
            }
            _ => return,
        };
        // Release: the driver acts on what it saw before this count.
        counter.fetch_add(1, Ordering::Release);
    }
}

/// Reads frames until the server closes the connection, into a buffer allocated at start.
fn read_loop(mut stream: TcpStream, tally: Arc<Tally>) {
    let mut buf = vec![0u8; 64 << 10].into_boxed_slice();
    let mut end = 0;
    'read: loop {
        let mut start = 0;
        loop {
            match split_frame(&buf[start..end]) {
                Ok(Some((h, body))) => {
                    if mdp::is_server_type(h.msg_type) {
                        match MdMsg::decode(h.msg_type, h.version, body) {
                            Ok(m) => {
                                if let MdMsg::Trade(_) = m {
                                    tally.md_trades.fetch_add(1, Ordering::Relaxed);
                                }
                                tally.md_msgs.fetch_add(1, Ordering::Release);
                            }
                            Err(_) => {
                                tally.undecodable.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else {
                        match ServerMsg::decode(h.msg_type, h.version, body) {
                            Ok(m) => tally.note(&m),
                            Err(_) => {
                                tally.undecodable.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    start += h.frame_len;
                }
                Ok(None) => break,
                Err(_) => {
                    tally.undecodable.fetch_add(1, Ordering::Relaxed);
                    break 'read;
                }
            }
        }
        buf.copy_within(start..end, 0);
        end -= start;
        match stream.read(&mut buf[end..]) {
            Ok(0) => break,
            Ok(n) => end += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tally.closed.store(true, Ordering::Release);
}

/// One logged-in connection: the driver writes batches of frames, a reader thread counts what
/// comes back.
struct Peer {
    name: &'static str,
    stream: TcpStream,
    batch: Box<[u8]>,
    batch_len: usize,
    /// Frames sent.
    sent: u64,
    next_coid: u64,
    user: u32,
    tally: Arc<Tally>,
    reader: Option<JoinHandle<()>>,
}

impl Peer {
    fn login(addr: SocketAddr, name: &'static str, user: u32) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let tally = Arc::new(Tally::default());
        let (rs, rt) = (stream.try_clone().unwrap(), Arc::clone(&tally));
        let reader = std::thread::Builder::new()
            .name(format!("reader-{name}"))
            .spawn(move || read_loop(rs, rt))
            .unwrap();
        let mut peer = Peer {
            name,
            stream,
            batch: vec![0u8; 64 << 10].into_boxed_slice(),
            batch_len: 0,
            sent: 0,
            next_coid: 1,
            user,
            tally,
            reader: Some(reader),
        };
        peer.push(&ClientMsg::Login(Login {
            login: name32(name),
            password: name32(&format!("{name}-demo")),
            session_id: 1,
            last_seen_seq: 0,
            // The longest interval: the operator idles through the window.
            heartbeat_ms: 60_000,
            cancel_on_disconnect: false,
        }));
        peer.flush();
        peer.wait_for(|t| t.logins.load(Ordering::Acquire) == 1);
        peer
    }

    fn push(&mut self, msg: &ClientMsg) {
        let mut frame = [0u8; FRAME_BYTES_MAX];
        let n = msg.encode(&mut frame);
        if self.batch.len() - self.batch_len < n {
            self.flush();
        }
        self.batch[self.batch_len..self.batch_len + n].copy_from_slice(&frame[..n]);
        self.batch_len += n;
        self.sent += 1;
    }

    /// Subscribes to every channel of the traded symbol (1m candles).
    fn subscribe_all(&mut self) {
        for (i, channel) in [
            Channel::Depth,
            Channel::Trades,
            Channel::Ticker,
            Channel::Candles,
        ]
        .into_iter()
        .enumerate()
        {
            let mut frame = [0u8; FRAME_BYTES_MAX];
            let n = MdRequest {
                request_id: i as u64 + 1,
                symbol: SYMBOL,
                channel,
                interval: Interval::M1,
                subscribe: true,
            }
            .encode(&mut frame);
            self.batch[self.batch_len..self.batch_len + n].copy_from_slice(&frame[..n]);
            self.batch_len += n;
        }
        self.flush();
    }

    fn flush(&mut self) {
        self.stream
            .write_all(&self.batch[..self.batch_len])
            .unwrap();
        self.batch_len = 0;
    }

    fn coid(&mut self) -> ClientOrderId {
        self.next_coid += 1;
        ClientOrderId(self.next_coid)
    }

    fn order(&mut self, side: Side, price: i64, qty: u64) -> ClientOrderId {
        let coid = self.coid();
        self.push(&ClientMsg::Command(Command::NewOrder(NewOrder::limit(
            UserId(self.user),
            SYMBOL,
            coid,
            side,
            Price(price),
            Qty(qty),
        ))));
        coid
    }

    fn amend(&mut self, coid: ClientOrderId, price: i64, qty: u64) {
        self.push(&ClientMsg::Command(Command::Amend {
            user: UserId(self.user),
            symbol: SYMBOL,
            client_order_id: coid,
            price: Price(price),
            qty: Qty(qty),
        }));
    }

    fn cancel(&mut self, coid: ClientOrderId) {
        self.push(&ClientMsg::Command(Command::Cancel {
            user: UserId(self.user),
            symbol: SYMBOL,
            client_order_id: coid,
        }));
    }

    /// Ends a batch with a barrier, sends it and waits for the barrier's reject: by then this
    /// session has read every output of every command it sent before.
    fn barrier(&mut self) {
        let want = self.tally.barriers.load(Ordering::Relaxed) + 1;
        self.cancel(ClientOrderId(BARRIER_COID));
        self.flush();
        self.wait_for(|t| t.barriers.load(Ordering::Acquire) >= want);
    }

    /// Yields until `done`; panics (a broken run only) if the connection closes or on the hang
    /// guard.
    fn wait_for(&self, done: impl Fn(&Tally) -> bool) {
        let start = Instant::now();
        while !done(&self.tally) {
            let t = &self.tally;
            if t.closed.load(Ordering::Acquire)
                || t.login_rejected.load(Ordering::Relaxed) > 0
                || start.elapsed() > HANG
            {
                ALLOC.stop();
                panic!("{}: stuck or disconnected: {t:?}", self.name);
            }
            std::thread::yield_now();
        }
    }
}

/// The burst: `BURST` resting sells far from the market, then their cancels, in one write.
fn burst(alice: &mut Peer) {
    let first = alice.next_coid + 1;
    for i in 0..BURST {
        alice.order(Side::Sell, P + 1_000 + (i % 100) as i64, 1);
    }
    for coid in first..first + BURST {
        alice.cancel(ClientOrderId(coid));
    }
    alice.barrier();
}

/// One round: alice rests sells (one at `P` for bob to take, one further out that she amends
/// and cancels) and queries; bob takes her sells at `P`, rests and amends and cancels a bid,
/// mass-cancels (nothing) and queries. Both heartbeat. Every trade is alice's sell at `P` against
/// bob's buy at `P`, so the book is the same after every round.
fn round(alice: &mut Peer, bob: &mut Peer, n: u64) {
    if n % BURST_EVERY == BURST_EVERY - 1 {
        burst(alice);
    }
    for i in 0..STEPS {
        alice.order(Side::Sell, P, 3);
        let far = alice.order(Side::Sell, P + 100 + i as i64, 5);
        alice.amend(far, P + 200, 4);
        alice.cancel(far);
        alice.push(&ClientMsg::Heartbeat);
    }
    let last = ClientOrderId(alice.next_coid);
    alice.push(&ClientMsg::OrderStatus {
        request_id: 1,
        user: UserId(alice.user),
        client_order_id: last,
    });
    alice.push(&ClientMsg::Balances {
        request_id: 2,
        user: UserId(alice.user),
    });
    alice.push(&ClientMsg::BookSnapshot {
        request_id: 3,
        symbol: SYMBOL,
        depth: 10,
    });
    alice.barrier();

    for _ in 0..STEPS {
        bob.order(Side::Buy, P, 3);
        let bid = bob.order(Side::Buy, P - 100, 2);
        bob.amend(bid, P - 100, 1);
        bob.cancel(bid);
        bob.push(&ClientMsg::Heartbeat);
    }
    bob.push(&ClientMsg::Command(Command::MassCancel {
        user: UserId(bob.user),
        symbol: Some(SYMBOL),
        on_disconnect: false,
    }));
    bob.push(&ClientMsg::OpenOrders {
        request_id: 4,
        user: UserId(bob.user),
    });
    bob.barrier();
}

/// What the web stand-in has seen.
#[derive(Debug, Default)]
struct WebTally {
    dones: AtomicU64,
    outputs: AtomicU64,
    /// Gateway refusals and engine rejects: the workload has none.
    rejects: AtomicU64,
}

/// The web edge's stand-in: carol (user 3) gets BTC from an operator, then rests a far sell,
/// cancels it, and asks for her balances and the book, over and over, each batch waited for;
/// every output is popped (it is also a WebSocket listener); every 16th batch also asks for a
/// copy of the gateway's market-data builder (`MdSync`, copied into the bridge's preallocated
/// slot). Pushes and pops only.
fn web_driver(bridge: Arc<WebBridge>, stop: Arc<AtomicBool>, tally: Arc<WebTally>) {
    let carol = UserId(3);
    let mut id = 0u64;
    let mut coid = 0u64;
    let mut deposit = Some(WebOp::Command {
        role: Role::Operator(1),
        cmd: Command::Deposit {
            user: carol,
            currency: CurrencyId(2),
            amount: 1 << 50,
        },
    });
    let mut batches = 0u64;
    while !stop.load(Ordering::Acquire) {
        coid += 1;
        batches += 1;
        let sync = batches.is_multiple_of(16).then_some(WebOp::MdSync);
        let order = NewOrder::limit(
            carol,
            SYMBOL,
            ClientOrderId(coid),
            Side::Sell,
            Price(P + 5_000),
            Qty(1),
        );
        let batch = [
            deposit.take(),
            sync,
            Some(WebOp::Command {
                role: Role::User(3),
                cmd: Command::NewOrder(order),
            }),
            Some(WebOp::Command {
                role: Role::User(3),
                cmd: Command::Cancel {
                    user: carol,
                    symbol: SYMBOL,
                    client_order_id: ClientOrderId(coid),
                },
            }),
            Some(WebOp::Command {
                role: Role::User(3),
                cmd: Command::Query(Query::Balances { user: carol }),
            }),
            Some(WebOp::Command {
                role: Role::User(3),
                cmd: Command::Query(Query::Book {
                    symbol: SYMBOL,
                    depth: 10,
                }),
            }),
        ];
        let mut need = 0;
        for op in batch.into_iter().flatten() {
            id += 1;
            let mut req = WebRequest { id, op };
            while let Err(back) = bridge.submit(req) {
                req = back;
                std::thread::yield_now();
            }
            need += 1;
        }
        while need > 0 && !stop.load(Ordering::Acquire) {
            match bridge.pop_output() {
                Some(o) => {
                    tally.outputs.fetch_add(1, Ordering::Relaxed);
                    match o.kind {
                        // `Ended` (the market-data feed is on) also ends binary sessions'
                        // commands: only a web request's counts.
                        WebOutKind::Done(_)
                        | WebOutKind::Ended { .. }
                        | WebOutKind::MdSynced(_)
                            if o.request != 0 =>
                        {
                            need -= 1;
                            tally.dones.fetch_add(1, Ordering::Release);
                        }
                        WebOutKind::Rejected(_)
                        | WebOutKind::Event(Event::Rejected { .. })
                        | WebOutKind::Event(Event::OperatorRejected { .. }) => {
                            if o.request != 0 {
                                tally.rejects.fetch_add(1, Ordering::Relaxed);
                            }
                            if matches!(o.kind, WebOutKind::Rejected(_)) {
                                need -= 1;
                            }
                        }
                        _ => {}
                    }
                }
                None => std::thread::park_timeout(Duration::from_millis(1)),
            }
        }
    }
}

/// Logs in, funds, warms up, then counts heap operations over `WINDOW_MSGS` messages.
/// Returns `(allocations, frees, traces, backend)`.
fn allocations_after_start<B: Backend + Send + 'static>(
    label: &str,
    config: &Config,
    backend: B,
) -> (u64, u64, Vec<String>, B) {
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    // Small queues, so the loop also meets a full web output queue and waits for room.
    let bridge = WebBridge::new(64, 256);
    sc.web = Some(bridge.clone());
    sc.reference_data(config);
    // The web edge's market-data feed on: every output of every command crosses the bridge.
    bridge.enable_market_data();
    // Where an `MdSync` copies the gateway's builder (allocated here, before the window).
    bridge.set_md_slot(MarketData::new(config));
    // With market data: a feed subscribed to every channel of the traded symbol.
    let handle =
        server::start_with_market_data(sc, backend, Some(MarketData::new(config))).unwrap();
    let web_stop = Arc::new(AtomicBool::new(false));
    let web_tally = Arc::new(WebTally::default());
    bridge.listeners_add(1);
    let web_thread = {
        let (b, s, t) = (bridge.clone(), web_stop.clone(), web_tally.clone());
        std::thread::Builder::new()
            .name("web-stand-in".into())
            .spawn(move || web_driver(b, s, t))
            .unwrap()
    };
    bridge.set_consumer(web_thread.thread().clone());
    let addr = handle.local_addr();
    let mut feed = Peer::login(addr, "feed", 0);
    feed.subscribe_all();
    feed.wait_for(|t| t.md_msgs.load(Ordering::Acquire) >= 4);
    let mut ops = Peer::login(addr, "ops1", 0);
    let mut alice = Peer::login(addr, "alice", 1);
    let mut bob = Peer::login(addr, "bob", 2);

    for user in [alice.user, bob.user] {
        for currency in 0..config.currencies.len() {
            ops.push(&ClientMsg::Command(Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency as u16),
                amount: 1 << 50,
            }));
        }
    }
    ops.flush();
    let deposits = 2 * config.currencies.len() as u64;
    ops.wait_for(|t| t.deposits.load(Ordering::Acquire) == deposits);

    // The operator asks for the gateway's counters and the reference data once per round (both
    // answered on the gateway thread).
    let mut stats_asked = 0;
    let mut ask_stats = |ops: &mut Peer| {
        stats_asked += 1;
        ops.push(&ClientMsg::Stats {
            request_id: stats_asked,
        });
        ops.push(&ClientMsg::ReferenceData {
            request_id: stats_asked,
            first: 0,
        });
        ops.flush();
        stats_asked
    };
    let mut rounds = 0;
    while alice.sent + bob.sent < WARMUP_MSGS {
        round(&mut alice, &mut bob, rounds);
        ask_stats(&mut ops);
        rounds += 1;
    }
    alice.barrier();

    // The window.
    let sent_before = alice.sent + bob.sent;
    let web_dones_before = web_tally.dones.load(Ordering::Acquire);
    let syncs_before = bridge.stats.md_syncs.load(Ordering::Acquire);
    ALLOC.start();
    let mut asked = 0;
    while alice.sent + bob.sent - sent_before < WINDOW_MSGS {
        round(&mut alice, &mut bob, rounds);
        asked = ask_stats(&mut ops);
        rounds += 1;
    }
    // Bob's last orders filled alice's: her barrier comes after those fills.
    alice.barrier();
    ops.wait_for(|t| {
        t.stats.load(Ordering::Acquire) >= asked && t.references.load(Ordering::Acquire) >= asked
    });
    let web_dones = web_tally.dones.load(Ordering::Acquire) - web_dones_before;
    let counts = ALLOC.stop();
    let syncs = bridge.stats.md_syncs.load(Ordering::Acquire) - syncs_before;
    let (allocations, frees) = (counts.allocs, counts.frees);
    let traces = ALLOC.take_traces();
    let window = alice.sent + bob.sent - sent_before;
    let stats = handle.stats();

    for p in [&alice, &bob, &ops, &feed] {
        let t = &p.tally;
        assert_eq!(
            t.rejects.load(Ordering::Relaxed),
            0,
            "{label}: {} had unexpected rejects (last code {}): {t:?}",
            p.name,
            t.last_reject_code.load(Ordering::Relaxed)
        );
        assert_eq!(t.gaps.load(Ordering::Relaxed), 0, "{label}: {t:?}");
        assert_eq!(t.undecodable.load(Ordering::Relaxed), 0, "{label}: {t:?}");
    }
    let trades = STEPS * rounds;
    for p in [&alice, &bob] {
        assert_eq!(
            p.tally.fills.load(Ordering::Relaxed),
            trades,
            "{label}: {} fills",
            p.name
        );
    }
    eprintln!(
        "{label}: {window} messages in the window ({} sent in all, {trades} trades; \
         {} engine-ring back-pressure and {} outbound-backlog pauses in all): \
         {allocations} allocations, {frees} frees",
        alice.sent + bob.sent + ops.sent,
        stats.backpressure.load(Ordering::Relaxed),
        stats.outbound_pauses.load(Ordering::Relaxed),
    );

    // The feed saw the trades (every one, unless its reader fell behind and some were
    // dropped) and depth updates throughout. Market data is written at most every
    // MD_FLUSH_INTERVAL, so the last of it may still be on its way.
    feed.wait_for(|t| {
        t.md_trades.load(Ordering::Acquire) + stats.md_trades_dropped.load(Ordering::Relaxed)
            >= trades
    });
    let md_before = feed.tally.md_msgs.load(Ordering::Relaxed);
    let md_trades = feed.tally.md_trades.load(Ordering::Relaxed)
        + stats.md_trades_dropped.load(Ordering::Relaxed);
    assert_eq!(md_trades, trades, "{label}: market-data trades");
    assert!(
        md_before > 2 * trades,
        "{label}: the feed saw {md_before} market-data messages"
    );
    web_stop.store(true, Ordering::Release);
    web_thread.thread().unpark();
    web_thread.join().unwrap();
    assert!(
        web_dones > 0,
        "{label}: no web command completed in the window"
    );
    assert_eq!(
        web_tally.rejects.load(Ordering::Relaxed),
        0,
        "{label}: web rejects: {web_tally:?}"
    );
    eprintln!(
        "{label}: {web_dones} web commands and queries ({syncs} market-data syncs) in the \
         window, {} web outputs in all, {} waits for web output room",
        web_tally.outputs.load(Ordering::Relaxed),
        bridge.stats.outbound_full.load(Ordering::Relaxed)
    );
    let backend = handle.shutdown().unwrap();
    for p in [&mut alice, &mut bob, &mut ops, &mut feed] {
        p.reader.take().unwrap().join().unwrap();
    }
    (allocations, frees, traces, backend)
}

#[test]
fn the_server_allocates_nothing_per_message_on_any_thread() {
    ALLOC.set_tracing(std::env::var_os("RINGBOOK_ALLOC_TRACE").is_some_and(|v| v == "1"));
    // The counter works, on another thread too. (`join`, not a scope: a scoped thread may
    // still be freeing its closure after the scope returns, and count in the first window.)
    ALLOC.start();
    std::thread::spawn(|| drop(std::hint::black_box(Box::new(7u64))))
        .join()
        .unwrap();
    assert!(ALLOC.stop().allocs >= 1, "the counter counts nothing");
    ALLOC.take_traces();

    let config = Config::default();
    let dir = tempfile::tempdir().unwrap();
    let builder = Pipeline::builder(&config)
        .layout(Layout::Fused)
        .wait(WaitStrategy::Yield)
        .inline_output(true)
        // Small, so that bursts meet a full ring (the server's back-pressure path).
        .ring_size(256)
        .journal(dir.path(), JournalConfig::default());
    let pipeline = PipelineBackend::start(builder).unwrap();
    let (p_allocs, p_frees, p_traces, pipeline) =
        allocations_after_start("pipeline backend", &config, pipeline);
    let report = pipeline.shutdown().unwrap();
    assert!(report.commands > WARMUP_MSGS + WINDOW_MSGS / 2);

    // The inline layout: journal and engine on the server's own thread.
    let dir = tempfile::tempdir().unwrap();
    let builder = Pipeline::builder(&config)
        .layout(Layout::Inline)
        .journal(dir.path(), JournalConfig::default());
    let inline = PipelineBackend::start(builder).unwrap();
    let (i_allocs, i_frees, i_traces, inline) =
        allocations_after_start("inline pipeline backend", &config, inline);
    let report = inline.shutdown().unwrap();
    assert!(report.commands > WARMUP_MSGS + WINDOW_MSGS / 2);

    let engine = EngineBackend::new(&config).unwrap();
    let (e_allocs, e_frees, e_traces, _) =
        allocations_after_start("engine backend", &config, engine);

    for (label, traces) in [
        ("pipeline backend", &p_traces),
        ("inline pipeline backend", &i_traces),
        ("engine backend", &e_traces),
    ] {
        for t in traces.iter() {
            eprintln!("--- {label}: {t}");
        }
    }
    assert_eq!(
        (p_allocs, p_frees),
        (0, 0),
        "pipeline backend: (allocations, frees) after start \
         (RINGBOOK_ALLOC_TRACE=1 shows where)"
    );
    assert_eq!(
        (i_allocs, i_frees),
        (0, 0),
        "inline pipeline backend: (allocations, frees) after start \
         (RINGBOOK_ALLOC_TRACE=1 shows where)"
    );
    assert_eq!(
        (e_allocs, e_frees),
        (0, 0),
        "engine backend: (allocations, frees) after start \
         (RINGBOOK_ALLOC_TRACE=1 shows where)"
    );
}
