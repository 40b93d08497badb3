//! Market data on the real server, through the client library: a `market_data` login that
//! subscribes before trading starts and one that joins mid-stream both end with exactly the
//! engine's visible book (price, visible quantity, order count), every trade, a ticker and
//! candles; the market-data login can place no order and sees no private message.
//!
//! (Conflation of a subscriber that stops reading is tested deterministically beside the
//! publisher, `server::marketdata::tests`, where the test decides when a buffer drains.)
//!
//! Every wait is bounded (a read timeout that only fails a broken run).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbook_client::protocol::marketdata::{Channel, MdMsg};
use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::{Client, DepthBook, Received};
use ringbook_engine::marketdata::{Interval, MarketData};
use ringbook_engine::prelude::*;
use ringbook_gateway::server::{self, EngineBackend, ServerConfig};

const WAIT: Duration = Duration::from_secs(10);

fn login(addr: SocketAddr, who: &str, session: u32) -> Client {
    let mut c = Client::connect(addr).unwrap();
    c.login(who, &format!("{who}-demo"), session, false)
        .unwrap();
    c
}

/// Sends `cmd`, then a query whose reply comes after every message of the command: once it
/// is in, the command is processed, so commands from several sessions are sequenced in the
/// order the test sends them. Returns the first reply to the command.
fn run(c: &mut Client, user: UserId, cmd: Command, request_id: &mut u64) -> ServerMsg {
    c.send(&cmd.into()).unwrap();
    *request_id += 1;
    let id = *request_id;
    c.send(&ClientMsg::OpenOrders {
        request_id: id,
        user,
    })
    .unwrap();
    let mut first = None;
    loop {
        match c.recv_timeout(WAIT).unwrap().expect("a reply") {
            ServerMsg::Heartbeat => {}
            ServerMsg::OpenOrdersEnd { request_id, .. } if request_id == id => {
                return first.expect("a reply to the command");
            }
            m => {
                first.get_or_insert(m);
            }
        }
    }
}

/// Sends `cmd` and returns its first reply (for a session that cannot query).
fn run_once(c: &mut Client, cmd: Command) -> ServerMsg {
    c.send(&cmd.into()).unwrap();
    loop {
        match c.recv_timeout(WAIT).unwrap().expect("a reply") {
            ServerMsg::Heartbeat => {}
            m => return m,
        }
    }
}

/// A subscriber: its depth book, trades, and whether it saw a ticker and candles.
#[derive(Default)]
struct Feed {
    depth: DepthBook,
    md_seq: u64,
    trades: Vec<u64>,
    tickers: u64,
    candles: u64,
    acks: u64,
    private: u64,
}

impl Feed {
    fn take(&mut self, r: Received) {
        match r {
            Received::MarketData(MdMsg::Depth(f)) => {
                if let Some(seq) = self.depth.apply(&f).expect("no gap") {
                    self.md_seq = seq;
                }
            }
            Received::MarketData(MdMsg::Trade(t)) => self.trades.push(t.trade_id.0),
            Received::MarketData(MdMsg::Ticker { .. }) => self.tickers += 1,
            Received::MarketData(MdMsg::Candle { .. }) => self.candles += 1,
            Received::MarketData(MdMsg::Subscribed { .. }) => self.acks += 1,
            Received::Session(ServerMsg::Heartbeat) => {}
            Received::Session(_) => self.private += 1,
        }
    }

    /// Reads until the book is at `md_seq` (bounded).
    fn until_seq(&mut self, c: &mut Client, md_seq: u64) {
        let deadline = Instant::now() + WAIT;
        while self.md_seq < md_seq {
            assert!(Instant::now() < deadline, "stuck at md_seq {}", self.md_seq);
            if let Some(r) = c.recv_any_timeout(Duration::from_millis(200)).unwrap() {
                self.take(r);
            }
        }
    }
}

fn subscribe_all(c: &mut Client, symbol: SymbolId) {
    for (i, ch) in [
        Channel::Depth,
        Channel::Trades,
        Channel::Ticker,
        Channel::Candles,
    ]
    .into_iter()
    .enumerate()
    {
        c.subscribe(i as u64 + 1, symbol, ch, Interval::M1).unwrap();
    }
}

#[test]
fn subscribers_from_the_start_and_mid_stream_hold_the_engines_book() {
    let config = Config::default();
    let symbol = SymbolId(0);
    let mut sc = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        config.gateway.accounts.clone(),
    );
    // The subscribers only read: a session silent for three intervals is ended, so the
    // interval is long enough that a loaded CI box cannot make the run outlast it.
    sc.heartbeat_default = Duration::from_secs(60);
    let h = server::start_with_market_data(
        sc,
        EngineBackend::new(&config).unwrap(),
        Some(MarketData::new(&config)),
    )
    .unwrap();
    let addr = h.local_addr();

    // A local copy of the engine and builder, fed the same commands, says what to expect.
    let mut engine = Engine::new(&config).unwrap();
    let mut md = MarketData::new(&config);
    let mut local = |cmd: &Command| {
        let mut events = Vec::new();
        engine.process(cmd, &mut |e: &Event| events.push(*e));
        md.command(0, &events, &mut |_| {});
    };

    let mut early = login(addr, "feed", 1);
    subscribe_all(&mut early, symbol);
    let mut ops = login(addr, "ops1", 1);
    let mut users = [login(addr, "alice", 1), login(addr, "bob", 1)];
    for (u, c) in [(1u32, 0u16), (1, 2), (2, 0), (2, 2)] {
        let cmd = Command::Deposit {
            user: UserId(u),
            currency: CurrencyId(c),
            amount: 1 << 40,
        };
        run_once(&mut ops, cmd);
        local(&cmd);
    }
    // Every deposit is in before the first order: each user has seen both balance updates.
    for c in &mut users {
        let mut updates = 0;
        while updates < 2 {
            if let ServerMsg::BalanceUpdate { .. } =
                c.recv_timeout(WAIT).unwrap().expect("a balance update")
            {
                updates += 1;
            }
        }
    }
    // The market-data login may not trade, and its refusal is its own private message.
    let mut late = login(addr, "feed", 2);
    let refused = run_once(
        &mut late,
        Command::NewOrder(NewOrder::limit(
            UserId(1),
            symbol,
            ClientOrderId(1),
            Side::Buy,
            Price(15_000),
            Qty(1),
        )),
    );
    assert!(
        matches!(refused, ServerMsg::Rejected { code, .. } if code == RejectCode::UserOnly.code()),
        "{refused:?}"
    );

    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut request_id = 0;
    let mut early_feed = Feed::default();
    let mut late_feed = Feed::default();
    for i in 0..600u64 {
        let who = rnd(2) as usize;
        let user = UserId(who as u32 + 1);
        let side = if rnd(2) == 0 { Side::Buy } else { Side::Sell };
        let toward = if side == Side::Buy { 1 } else { -1 };
        let coid = ClientOrderId(i + 1);
        let cmd = match rnd(8) {
            0 => Command::MassCancel {
                user,
                symbol: Some(symbol),
                on_disconnect: false,
            },
            1 => Command::Cancel {
                user,
                symbol,
                client_order_id: ClientOrderId(1 + rnd(i + 1)),
            },
            _ => {
                let price = Price(15_000 - toward * (rnd(20) as i64 - 4));
                let mut o = NewOrder::limit(user, symbol, coid, side, price, Qty(1 + rnd(10)));
                if rnd(4) == 0 {
                    o.display_qty = Qty(1 + rnd(o.qty.0));
                }
                Command::NewOrder(o)
            }
        };
        run(&mut users[who], user, cmd, &mut request_id);
        local(&cmd);
        if i == 300 {
            subscribe_all(&mut late, symbol);
        }
        // Keep the subscribers' sockets drained as the test goes.
        if i % 10 != 0 {
            continue;
        }
        for (feed, c) in [(&mut early_feed, &mut early), (&mut late_feed, &mut late)] {
            while let Some(r) = c.recv_any_timeout(Duration::from_millis(1)).unwrap() {
                feed.take(r);
            }
        }
    }
    let final_seq = md.md_seq(symbol);
    assert!(final_seq > 300, "too few updates: {final_seq}");
    early_feed.until_seq(&mut early, final_seq);
    late_feed.until_seq(&mut late, final_seq);
    for side in [Side::Buy, Side::Sell] {
        let mut want = Vec::new();
        md.depth(symbol, side, usize::MAX, |p, q, n| want.push((p, q, n)));
        let mut engine_depth = Vec::new();
        engine.depth(symbol, side, usize::MAX, |p, q| engine_depth.push((p, q)));
        assert_eq!(
            want.iter().map(|&(p, q, _)| (p, q)).collect::<Vec<_>>(),
            engine_depth
        );
        for (name, feed) in [("early", &early_feed), ("late", &late_feed)] {
            eprintln!(
                "{name}: md_seq {} trades {}",
                feed.md_seq,
                feed.trades.len()
            );
            assert_eq!(feed.depth.book().unwrap().levels(side), want, "{name}");
        }
    }
    let trades = engine.matcher().last_trade_id(symbol).0;
    assert!(trades > 50, "too few trades: {trades}");
    // The early subscriber has read every trade (its socket kept up).
    let deadline = Instant::now() + WAIT;
    while early_feed.trades.len() < trades as usize && Instant::now() < deadline {
        if let Some(r) = early.recv_any_timeout(Duration::from_millis(200)).unwrap() {
            early_feed.take(r);
        }
    }
    assert_eq!(early_feed.trades, (1..=trades).collect::<Vec<_>>());
    assert_eq!(early_feed.acks, 4);
    // The late subscriber got the 1m history on subscribing; the early one gets the current
    // candle on the next ticker interval.
    assert!(late_feed.candles > 0);
    let deadline = Instant::now() + WAIT;
    while early_feed.candles == 0 && Instant::now() < deadline {
        if let Some(r) = early.recv_any_timeout(Duration::from_millis(200)).unwrap() {
            early_feed.take(r);
        }
    }
    assert!(early_feed.candles > 0);
    // Tickers are paced; one arrived on subscribing at least.
    assert!(early_feed.tickers > 0 && late_feed.tickers > 0);
    // Nothing private reached the market-data sessions (the refused order's reject was the
    // late session's only session message).
    assert_eq!(early_feed.private, 0);
    assert_eq!(late_feed.private, 0);
    // The server's engine holds the same book as the local copy (its state hash differs: the
    // server stamps commands with the wall clock).
    let backend = h.shutdown().unwrap();
    for side in [Side::Buy, Side::Sell] {
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        backend
            .engine()
            .depth(symbol, side, usize::MAX, |p, q| theirs.push((p, q)));
        engine.depth(symbol, side, usize::MAX, |p, q| ours.push((p, q)));
        assert_eq!(theirs, ours);
    }
}
