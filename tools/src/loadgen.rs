//! `ringbook loadgen`: drives a ringbook server over loopback TCP and reports latencies.
//!
//! ```sh
//! cargo run --release -p ringbook-tools -- serve &
//! cargo run --release -p ringbook-tools -- loadgen --connections 4 --rate 50000 --seconds 10
//! ```
//!
//! Each connection logs in as one of the default config's demo users and sends an order mix
//! (passive limits, aggressive IOCs that trade, cancels) over two symbols.
//! Client order ids start above the wall clock in nanoseconds, so they keep increasing per user
//! across runs against the same server (docs/protocol.md, "Idempotency"); more connections than
//! the four demo users share users, and their interleaved ids are refused as duplicates. Latencies are taken
//! from each order's *intended* send time (start + i / rate), so a stalled server is charged
//! for every order it delayed (coordinated-omission corrected), and recorded in HdrHistogram.
//! `--echo-baseline` first measures a bare TCP echo with the same rate and connections.
//! Client order ids start above the wall clock in nanoseconds, so they keep increasing per user
//! across runs against the same server (docs/protocol.md, "Idempotency"); with more connections
//! than the four demo users, connections share users and their interleaved ids are refused as
//! duplicates.
//!
//! `--md-subscribers N` also keeps N market-data sessions (the `feed` login) subscribed to depth
//! and trades of both symbols for the whole run, read by one thread that polls their sockets
//! (the server needs `--conns-max` above N + connections + 1, and, since they all log in as
//! `feed`, `[gateway] sessions_per_account_max` of at least N: 16 by default).
//!
//! A hiccup meter (bench/src/hiccup.rs, compiled in as `crate::hiccup`: a thread busy-reading the clock, sampled at the
//! offered interval) measures this machine's own latency floor in the same run: `--hiccup alone`
//! for up to 1 s before the orders, `during` for the order run (it then competes for a core
//! with the server and the senders), `both` (the default) or `off`. Its percentiles are printed
//! beside the latencies and in the JSON (`hiccup_p99_ns`, …; `hiccup_alone_*` for the alone
//! figures). `--hiccup-duty F` busy-loops only F of the time during the run (the alone phase is
//! always continuous).

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hiccup::{self, HiccupConfig, HiccupStats, HiccupThread};
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;
use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::{Client, ClientError};
use ringbook_engine::prelude::*;

/// The most connections.
pub const CONNECTIONS_MAX: usize = 64;
/// The longest run.
pub const SECONDS_MAX: u64 = 600;
/// The most orders one connection sends in a run (bounds the per-order timestamp table).
pub const ORDERS_PER_CONN_MAX: u64 = 20_000_000;
const DEMO_USERS: [(&str, u32); 4] = [("alice", 1), ("bob", 2), ("carol", 3), ("dave", 4)];

/// Arguments of `ringbook loadgen`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: SocketAddr,
    /// Connections (1..=64).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Offered orders per second, over all connections.
    #[arg(long, default_value_t = 10_000, conflicts_with = "max")]
    rate: u64,
    /// Send as fast as the server takes them (latency then measured from actual send time).
    #[arg(long)]
    max: bool,
    /// Duration in seconds (1..=600).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also measure a bare TCP echo at the same rate and connections, for the ratio.
    #[arg(long)]
    echo_baseline: bool,
    /// Between due times, each sender thread yields its core (`sched_yield`) instead of
    /// spinning: on a 2-core machine a spinning sender takes a whole core from the server.
    #[arg(long)]
    sender_yield: bool,
    /// Market-data subscribers (depth and trades of both symbols) kept open during the run.
    #[arg(long, default_value_t = 0)]
    md_subscribers: usize,
    /// Hiccup meter (the machine's floor): alone before the run, during it, both, or off.
    #[arg(long, default_value = "both", value_parser = ["both", "during", "alone", "off"])]
    hiccup: String,
    /// Fraction of the time the hiccup meter busy-loops, in (0, 1] (1 ms windows).
    #[arg(long, default_value_t = 1.0)]
    hiccup_duty: f64,
    /// Pin the hiccup meter to this core.
    #[arg(long)]
    hiccup_core: Option<usize>,
    /// Drive each connection from one busy thread: send what is due, poll the socket for
    /// replies (non-blocking), never sleep or hand off — against `serve --busy-poll`, the
    /// lowest round trip this machine can show. The echo baseline (`--echo-baseline`) then
    /// busy-polls too, on both ends. One spinning thread per connection: keep connections
    /// within the cores left beside the server.
    #[arg(long)]
    busy_poll: bool,
    /// Load the web edge's REST API at this URL (`http://127.0.0.1:8080`) instead of the
    /// binary gateway: orders through `POST /api/v1/orders` (src/webload.rs).
    #[arg(long, value_name = "URL", conflicts_with = "ws")]
    http: Option<String>,
    /// WebSocket fan-out on the web edge at this URL: `--subscribers` to depth and trades
    /// while REST buyers trade (src/webload.rs).
    #[arg(long, value_name = "URL")]
    ws: Option<String>,
    /// WebSocket subscribers (`--ws`).
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Stop after this many trades (`--ws`; otherwise after `--seconds`).
    #[arg(long)]
    trades: Option<u64>,
    /// The symbol the web modes trade and watch.
    #[arg(long, default_value = "BTC-KRW")]
    symbol: String,
    /// The server's process id: `--ws` reports its peak and current resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The hiccup meter's figures of one run.
#[derive(Debug, Default)]
struct Hiccups {
    alone: Option<HiccupStats>,
    during: Option<HiccupStats>,
}

/// The most market-data subscribers.
pub const MD_SUBSCRIBERS_MAX: usize = 1024;

/// What the market-data subscribers saw.
#[derive(Default)]
struct MdOutcome {
    messages: u64,
    conflated: u64,
    errors: u64,
}

/// Logs in `n` market-data sessions, subscribes each to depth and trades of symbols 0 and 1,
/// and reads them all from one thread (non-blocking sockets, polled in turn; heartbeats every
/// half second) until `stop`.
fn md_subscribers(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<MdOutcome>, String> {
    use ringbook_client::protocol::marketdata::{Channel, MdMsg};
    use ringbook_client::Received;
    use ringbook_engine::marketdata::Interval;
    let base = (std::process::id() % 1_000_000) * 100 + 50_000_000;
    let mut clients = Vec::with_capacity(n);
    for k in 0..n {
        let mut c = Client::connect(addr).map_err(|e| format!("md subscriber {k}: {e}"))?;
        c.login("feed", "feed-demo", base + k as u32, false)
            .map_err(|e| match e {
                ClientError::LoginRejected(code, _) if code == RejectCode::ServerFull as u16 => {
                    format!(
                        "md subscriber {k}: {e}: every subscriber logs in as `feed`, and the \
                         server allows `[gateway] sessions_per_account_max` sessions per \
                         account (16 by default): raise it (and `sessions_max`, `--conns-max`) \
                         for {n} subscribers (docs/benchmarks.md, \"100 subscribers\")"
                    )
                }
                e => format!("md subscriber {k}: {e}"),
            })?;
        for symbol in [SymbolId(0), SymbolId(1)] {
            for ch in [Channel::Depth, Channel::Trades] {
                c.subscribe(1, symbol, ch, Interval::M1)
                    .map_err(|e| format!("md subscriber {k}: {e}"))?;
            }
        }
        c.stream()
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        clients.push(c);
    }
    Ok(std::thread::spawn(move || {
        let mut out = MdOutcome::default();
        let mut alive = vec![true; clients.len()];
        let mut last_beat = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut any = false;
            for (c, ok) in clients.iter_mut().zip(alive.iter_mut()) {
                // At most a few hundred messages per client per pass, so every client is read
                // (and heartbeats go out) however busy the feed is.
                let mut budget = 256;
                while *ok && budget > 0 {
                    budget -= 1;
                    match c.recv_any() {
                        Ok(Received::MarketData(m)) => {
                            any = true;
                            out.messages += 1;
                            if let MdMsg::Depth(f) = m {
                                if f.first < f.last {
                                    out.conflated += 1;
                                }
                            }
                        }
                        Ok(Received::Session(_)) => any = true,
                        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            break
                        }
                        Err(_) => {
                            out.errors += 1;
                            *ok = false;
                        }
                    }
                }
            }
            if last_beat.elapsed() > Duration::from_millis(500) {
                last_beat = Instant::now();
                for (c, ok) in clients.iter_mut().zip(&alive) {
                    if *ok {
                        let _ = c.heartbeat();
                    }
                }
            }
            if !any {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for c in &mut clients {
            let _ = c.logout();
        }
        out
    }))
}

#[derive(Default)]
struct Outcome {
    accepted: Option<Histogram<u64>>,
    trade: Option<Histogram<u64>>,
    sent: u64,
    received: u64,
    errors: u64,
    /// When the last acknowledgement arrived, in ns after the start.
    last_ack_ns: u64,
}

impl Outcome {
    /// Counts one reply of the order mix, received `now_ns` after the start: an acknowledgement
    /// records its order's latency from its intended send time (`intended(k)`: 1 + ns, 0 for
    /// none; `k` is the client order id less `coid_base`), a taker's first fill its trade
    /// latency, a reject an error (cancels of orders that already traded are expected in the
    /// mix). Returns whether it acknowledged one of this run's orders.
    fn reply(
        &mut self,
        m: &ServerMsg,
        now_ns: u64,
        coid_base: u64,
        intended: impl Fn(usize) -> u64,
        traded: &mut [bool],
    ) -> bool {
        self.received += 1;
        match *m {
            ServerMsg::Accepted {
                client_order_id, ..
            } => {
                let t = intended(client_order_id.wrapping_sub(coid_base) as usize);
                if t > 0 {
                    let h = self.accepted.as_mut().expect("histogram");
                    let _ = h.record(now_ns.saturating_sub(t - 1).max(1));
                    self.last_ack_ns = self.last_ack_ns.max(now_ns);
                    return true;
                }
            }
            ServerMsg::Fill {
                role: Liquidity::Taker,
                client_order_id,
                ..
            } => {
                let k = client_order_id.wrapping_sub(coid_base) as usize;
                if k < traded.len() && !traded[k] {
                    traded[k] = true;
                    let t = intended(k);
                    if t > 0 {
                        let h = self.trade.as_mut().expect("histogram");
                        let _ = h.record(now_ns.saturating_sub(t - 1).max(1));
                    }
                }
            }
            ServerMsg::Rejected { code, .. } if code != RejectCode::UnknownOrder.code() => {
                self.errors += 1
            }
            _ => {}
        }
        false
    }
}

/// When a connection stops sending. A paced run is bounded by its count: every message due
/// within `--seconds` goes out even when the sender fell behind the clock (stopping at the clock
/// would drop the backlog and hide its latency, and make the count depend on scheduling). Only
/// `--max`, which has no count, stops at the clock.
fn send_deadline(start: Instant, seconds: u64, max: bool) -> Option<Instant> {
    max.then(|| start + Duration::from_secs(seconds))
}

/// Appends to `buf` the echo messages due by `now`, from message `i` on (at most 200 in the
/// buffer, `total` in all): each its intended send time in ns after `start`, then its index.
/// `per_conn_rate` 0 is `--max`: every message is due at once. Returns the next index.
fn due_echoes(
    buf: &mut Vec<u8>,
    mut i: u64,
    total: u64,
    now: Instant,
    start: Instant,
    per_conn_rate: u64,
) -> u64 {
    while i < total && buf.len() < 16 * 200 {
        let due = (i * 1_000_000_000)
            .checked_div(per_conn_rate)
            .map_or(now, |ns| start + Duration::from_nanos(ns));
        if due > now {
            break;
        }
        buf.extend_from_slice(&(due.duration_since(start).as_nanos() as u64).to_le_bytes());
        buf.extend_from_slice(&i.to_le_bytes());
        i += 1;
    }
    i
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Runs the harness.
pub fn run(args: Args) -> ExitCode {
    match load(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbook loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn load(args: Args) -> Result<(), String> {
    if let Some(url) = args.http.as_deref().or(args.ws.as_deref()) {
        return web_load(&args, url);
    }
    if !args.addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address: loadgen only targets this machine",
            args.addr
        ));
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        return Err(format!("--connections must be 1..={CONNECTIONS_MAX}"));
    }
    if args.seconds == 0 || args.seconds > SECONDS_MAX {
        return Err(format!("--seconds must be 1..={SECONDS_MAX}"));
    }
    if !args.max && (args.rate == 0 || args.rate > 10_000_000) {
        return Err("--rate must be 1..=10000000".into());
    }
    let echo = if args.echo_baseline && args.busy_poll {
        Some(run_echo_busy(&args)?)
    } else if args.echo_baseline {
        Some(run_echo(&args)?)
    } else {
        None
    };
    if args.md_subscribers > MD_SUBSCRIBERS_MAX {
        return Err(format!("--md-subscribers must be 0..={MD_SUBSCRIBERS_MAX}"));
    }
    prepare(args.addr).map_err(|e| format!("preparing accounts on {}: {e}", args.addr))?;
    let md_stop = Arc::new(AtomicBool::new(false));
    let md = if args.md_subscribers > 0 {
        Some(md_subscribers(
            args.addr,
            args.md_subscribers,
            md_stop.clone(),
        )?)
    } else {
        None
    };
    let hiccup_config = HiccupConfig {
        duty: args.hiccup_duty,
        core: args.hiccup_core,
        ..HiccupConfig::new(if args.max {
            1_000
        } else {
            (1e9 / args.rate as f64).max(1.0) as u64
        })
    };
    hiccup_config.validate()?;
    let mut hiccups = Hiccups::default();
    if matches!(args.hiccup.as_str(), "both" | "alone") {
        hiccups.alone = Some(hiccup::measure_alone(
            // Alone, nothing of ours competes: always continuous.
            HiccupConfig {
                duty: 1.0,
                ..hiccup_config
            },
            Duration::from_secs(1),
        )?);
    }
    let meter = if matches!(args.hiccup.as_str(), "both" | "during") {
        Some(HiccupThread::start(hiccup_config)?)
    } else {
        None
    };
    let out = if args.busy_poll {
        run_orders_busy(&args)
    } else {
        run_orders(&args)
    };
    hiccups.during = meter.map(HiccupThread::stop).transpose()?;
    let out = out?;
    md_stop.store(true, Ordering::Relaxed);
    let md = match md {
        Some(t) => Some(t.join().map_err(|_| "the market-data reader panicked")?),
        None => None,
    };
    report(&args, &out, echo.as_ref(), md.as_ref(), &hiccups);
    Ok(())
}

/// `--http` / `--ws`: the web edge (src/webload.rs).
fn web_load(args: &Args, url: &str) -> Result<(), String> {
    if args.seconds == 0 || args.seconds > SECONDS_MAX {
        return Err(format!("--seconds must be 1..={SECONDS_MAX}"));
    }
    if !args.max && (args.rate == 0 || args.rate > 1_000_000) {
        return Err("--rate must be 1..=1000000 for the web modes".into());
    }
    let w = crate::webload::WebLoad {
        base: crate::webload::loopback_base(url)?,
        connections: args.connections,
        rate: args.rate.max(1),
        max: args.max,
        seconds: args.seconds,
        symbol: args.symbol.clone(),
        subscribers: args.subscribers,
        trades: args.trades,
        server_pid: args.server_pid,
        json: args.json,
    };
    if args.http.is_some() {
        crate::webload::run_http(&w)
    } else {
        crate::webload::run_ws(&w)
    }
}

/// Deposits ample funds for the demo users and cancels their leftovers.
fn prepare(addr: SocketAddr) -> Result<(), ClientError> {
    let mut ops = Client::connect(addr)?;
    ops.login("ops1", "ops1-demo", std::process::id(), false)?;
    for &(_, user) in &DEMO_USERS {
        for currency in 0..5u16 {
            ops.send(
                &Command::Deposit {
                    user: UserId(user),
                    currency: CurrencyId(currency),
                    amount: 1 << 50,
                }
                .into(),
            )?;
        }
    }
    let mut deposits = 0;
    while deposits < DEMO_USERS.len() * 5 {
        match ops.recv_timeout(Duration::from_secs(10))? {
            Some(ServerMsg::Deposited { .. }) => deposits += 1,
            Some(ServerMsg::Rejected { code, name, .. }) => {
                return Err(ClientError::LoginRejected(
                    code,
                    ringbook_client::protocol::name32_str(&name).into(),
                ))
            }
            Some(_) => {}
            None => return Err(ClientError::Closed),
        }
    }
    let _ = ops.logout();
    Ok(())
}

fn order_for(i: u64, user: u32, coid: u64) -> (ClientMsg, bool) {
    let symbol = SymbolId((i % 2) as u16);
    let side = if (i / 2).is_multiple_of(2) {
        Side::Buy
    } else {
        Side::Sell
    };
    let spread = (i % 50) as i64;
    match i % 10 {
        0..=4 => {
            let price = if side == Side::Buy {
                9_000 - spread
            } else {
                11_000 + spread
            };
            let o = NewOrder::limit(
                UserId(user),
                symbol,
                ClientOrderId(coid),
                side,
                Price(price),
                Qty(1),
            );
            (Command::NewOrder(o).into(), true)
        }
        5..=6 => {
            let price = if side == Side::Buy { 11_100 } else { 8_900 };
            let mut o = NewOrder::limit(
                UserId(user),
                symbol,
                ClientOrderId(coid),
                side,
                Price(price),
                Qty(1),
            );
            o.tif = TimeInForce::Ioc;
            (Command::NewOrder(o).into(), true)
        }
        _ => {
            // Cancel a passive order placed a few messages ago (it may have traded already).
            let target = coid.saturating_sub(5).max(1);
            (
                Command::Cancel {
                    user: UserId(user),
                    symbol: SymbolId(((i - 5) % 2) as u16),
                    client_order_id: ClientOrderId(target),
                }
                .into(),
                false,
            )
        }
    }
}

fn run_orders(args: &Args) -> Result<Outcome, String> {
    let per_conn_rate = if args.max {
        0
    } else {
        (args.rate / args.connections as u64).max(1)
    };
    let per_conn_orders = if args.max {
        ORDERS_PER_CONN_MAX
    } else {
        (per_conn_rate * args.seconds).min(ORDERS_PER_CONN_MAX)
    };
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let session_base = (std::process::id() % 1_000_000) * 100;
    // Client order ids must increase per user across runs too (the server's default
    // `increasing` rule remembers each user's highest, even across restarts): this run's ids are
    // `coid_base + 1, + 2, …`, from the wall clock in nanoseconds, above any earlier run's. With
    // more connections than demo users, connections share a user and their ids interleave: the
    // server refuses the ones that arrive below that user's highest (counted as errors), so use
    // at most 4 connections, or a server config with `client_order_ids = "unique_live"`.
    let coid_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now() + Duration::from_millis(200);
    let mut threads = Vec::new();
    for c in 0..args.connections {
        let (login, user) = DEMO_USERS[c % DEMO_USERS.len()];
        let addr = args.addr;
        let (progress, stop) = (progress.clone(), stop.clone());
        let max = args.max;
        let seconds = args.seconds;
        let sender_yield = args.sender_yield;
        threads.push(std::thread::spawn(move || -> Result<Outcome, String> {
            let mut client = Client::connect(addr).map_err(|e| e.to_string())?;
            client
                .login(
                    login,
                    &format!("{login}-demo"),
                    session_base + c as u32,
                    false,
                )
                .map_err(|e| e.to_string())?;
            let mut writer = client.stream().try_clone().map_err(|e| e.to_string())?;
            let intended: Arc<Vec<AtomicU64>> = Arc::new(
                (0..per_conn_orders.min(50_000_000) + 1)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            );
            let sent_count = Arc::new(AtomicU64::new(0));
            let done_sending = Arc::new(AtomicBool::new(false));
            // This connection's receiver stops its own sender (the connection was lost, or is
            // finished); `stop`, the run's, only when the whole run overstays. (One flag for
            // both let the first connection to finish cut the others' last orders off: a
            // paced run sent 99 955 of 100 000, a docs review finding.)
            let halt = Arc::new(AtomicBool::new(false));
            // Sender: one order at each intended time, or back to back with --max.
            let sender = {
                let (intended, sent_count, done_sending, progress) = (
                    intended.clone(),
                    sent_count.clone(),
                    done_sending.clone(),
                    progress.clone(),
                );
                let (stop, halt) = (stop.clone(), halt.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::with_capacity(64 * 256);
                    let end = send_deadline(start, seconds, max);
                    let mut i = 0u64;
                    let mut last_write = Instant::now();
                    while i < per_conn_orders
                        && !stop.load(Ordering::Relaxed)
                        && !halt.load(Ordering::Relaxed)
                    {
                        let now = Instant::now();
                        if end.is_some_and(|e| now >= e) {
                            break;
                        }
                        buf.clear();
                        // This thread is the socket's only writer while it runs (a second
                        // writer could split a frame of a partial write), so it also sends the
                        // heartbeats.
                        if now.duration_since(last_write) > Duration::from_millis(500) {
                            Client::encode_into(&ClientMsg::Heartbeat, &mut buf);
                        }
                        // Everything due by now goes out in one write (pipelining).
                        while i < per_conn_orders && buf.len() < 64 * 200 {
                            let due = if max {
                                now
                            } else {
                                start + Duration::from_nanos(i * 1_000_000_000 / per_conn_rate)
                            };
                            if due > now {
                                break;
                            }
                            let coid = coid_base + i + 1;
                            let (msg, _) = order_for(i, user, coid);
                            intended[(i + 1) as usize].store(
                                due.duration_since(start).as_nanos() as u64 + 1,
                                Ordering::Relaxed,
                            );
                            Client::encode_into(&msg, &mut buf);
                            i += 1;
                        }
                        if buf.is_empty() {
                            if sender_yield {
                                std::thread::yield_now();
                            } else {
                                std::hint::spin_loop();
                            }
                            continue;
                        }
                        if writer.write_all(&buf).is_err() {
                            break;
                        }
                        last_write = now;
                        sent_count.store(i, Ordering::Relaxed);
                        progress.fetch_add(0, Ordering::Relaxed);
                    }
                    done_sending.store(true, Ordering::Release);
                })
            };
            let mut out = Outcome {
                accepted: Some(hist()),
                trade: Some(hist()),
                ..Outcome::default()
            };
            let mut traded = vec![false; intended.len()];
            let mut last_progress = Instant::now();
            loop {
                let sending_done = done_sending.load(Ordering::Acquire);
                match client.recv_timeout(Duration::from_millis(if sending_done {
                    1000
                } else {
                    200
                })) {
                    Ok(Some(m)) => {
                        let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
                        let at =
                            |k: usize| intended.get(k).map_or(0, |a| a.load(Ordering::Relaxed));
                        if out.reply(&m, now_ns, coid_base, at, &mut traded) {
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => {
                        if sending_done {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("ringbook loadgen: connection {c} ({login}) lost: {e}");
                        out.errors += 1;
                        break;
                    }
                }
                // Heartbeats from here only once the sender has stopped writing.
                if sending_done && last_progress.elapsed() > Duration::from_millis(500) {
                    last_progress = Instant::now();
                    let _ = client.heartbeat();
                }
                if sending_done
                    && out.accepted.as_ref().unwrap().len()
                        >= sent_count.load(Ordering::Relaxed) * 7 / 10
                    && out.received > 0
                {
                    // Every new order (7 in 10 messages) is acknowledged: finished.
                    if out.accepted.as_ref().unwrap().len()
                        >= expected_new_orders(sent_count.load(Ordering::Relaxed))
                    {
                        break;
                    }
                }
            }
            halt.store(true, Ordering::Relaxed);
            let _ = sender.join();
            out.sent = sent_count.load(Ordering::Relaxed);
            let _ = client.logout();
            Ok(out)
        }));
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(args.seconds);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
                .expect("valid template"),
        );
        b
    });
    let t0 = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(b) = &bar {
            b.set_position(t0.elapsed().as_secs().min(args.seconds));
            b.set_message(format!("{} acks", progress.load(Ordering::Relaxed)));
        }
        if t0.elapsed() > Duration::from_secs(args.seconds + 30) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    join_outcomes(threads)
}

/// `--busy-poll`: each connection is one thread that sends what is due and polls its
/// non-blocking socket for replies, spinning — no sender thread, no blocking read, no hand-off.
fn run_orders_busy(args: &Args) -> Result<Outcome, String> {
    let per_conn_rate = if args.max {
        0
    } else {
        (args.rate / args.connections as u64).max(1)
    };
    let per_conn_orders = if args.max {
        ORDERS_PER_CONN_MAX
    } else {
        (per_conn_rate * args.seconds).min(ORDERS_PER_CONN_MAX)
    };
    let session_base = (std::process::id() % 1_000_000) * 100 + 10;
    let coid_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now() + Duration::from_millis(200);
    let mut threads = Vec::new();
    for c in 0..args.connections {
        let (login, user) = DEMO_USERS[c % DEMO_USERS.len()];
        let (addr, max, seconds) = (args.addr, args.max, args.seconds);
        threads.push(std::thread::spawn(move || -> Result<Outcome, String> {
            let mut client = Client::connect(addr).map_err(|e| e.to_string())?;
            client
                .login(
                    login,
                    &format!("{login}-demo"),
                    session_base + c as u32,
                    false,
                )
                .map_err(|e| e.to_string())?;
            client
                .stream()
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let mut writer = client.stream().try_clone().map_err(|e| e.to_string())?;
            let slots = (per_conn_orders.min(50_000_000) + 1) as usize;
            let mut intended = vec![0u64; slots];
            let mut traded = vec![false; slots];
            let mut out = Outcome {
                accepted: Some(hist()),
                trade: Some(hist()),
                ..Outcome::default()
            };
            let mut pending: Vec<u8> = Vec::with_capacity(64 * 256);
            let mut written = 0usize;
            let mut i = 0u64;
            let end = send_deadline(start, seconds, max);
            let mut last_write = Instant::now();
            let mut finished_sending: Option<Instant> = None;
            loop {
                let now = Instant::now();
                // 1. Send: everything due by now, appended to what the socket did not take yet.
                if finished_sending.is_none() {
                    if written == pending.len() {
                        pending.clear();
                        written = 0;
                    }
                    if now.duration_since(last_write) > Duration::from_millis(500) {
                        Client::encode_into(&ClientMsg::Heartbeat, &mut pending);
                    }
                    let past_end = end.is_some_and(|e| now >= e);
                    while i < per_conn_orders && !past_end && pending.len() < 64 * 200 {
                        let due = if max {
                            now
                        } else {
                            start + Duration::from_nanos(i * 1_000_000_000 / per_conn_rate)
                        };
                        if due > now {
                            break;
                        }
                        let (msg, _) = order_for(i, user, coid_base + i + 1);
                        intended[(i + 1) as usize] =
                            due.duration_since(start).as_nanos() as u64 + 1;
                        Client::encode_into(&msg, &mut pending);
                        i += 1;
                    }
                    if i >= per_conn_orders || past_end {
                        finished_sending = Some(now);
                    }
                }
                while written < pending.len() {
                    match writer.write(&pending[written..]) {
                        Ok(n) => {
                            written += n;
                            last_write = now;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("connection {c} ({login}): {e}")),
                    }
                }
                // 2. Poll for replies until the socket has nothing more.
                loop {
                    match client.recv() {
                        Ok(m) => {
                            let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
                            let at = |k: usize| intended.get(k).copied().unwrap_or(0);
                            out.reply(&m, now_ns, coid_base, at, &mut traded);
                        }
                        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            break
                        }
                        Err(e) => {
                            eprintln!("ringbook loadgen: connection {c} ({login}) lost: {e}");
                            out.errors += 1;
                            out.sent = i;
                            return Ok(out);
                        }
                    }
                }
                // 3. Done when every new order is acknowledged, or 30 s after the last send.
                if let Some(t) = finished_sending {
                    if written == pending.len()
                        && out.accepted.as_ref().unwrap().len() >= expected_new_orders(i)
                    {
                        break;
                    }
                    if t.elapsed() > Duration::from_secs(30) {
                        out.errors += 1;
                        break;
                    }
                }
                std::hint::spin_loop();
            }
            out.sent = i;
            let _ = client.stream().set_nonblocking(false);
            let _ = client.logout();
            Ok(out)
        }));
    }
    join_outcomes(threads)
}

/// The echo baseline with `--busy-poll`: both ends spin on non-blocking sockets, each
/// connection's client is one thread that sends when due and reads what has come back.
fn run_echo_busy(args: &Args) -> Result<Histogram<u64>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let conns = args.connections;
    std::thread::spawn(move || {
        for s in listener.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            let _ = s.set_nonblocking(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut off = 0;
                            while off < n {
                                match s.write(&buf[off..n]) {
                                    Ok(k) => off += k,
                                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                        std::hint::spin_loop()
                                    }
                                    Err(_) => return,
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::hint::spin_loop()
                        }
                        Err(_) => break,
                    }
                }
            });
        }
    });
    let per_conn_rate = if args.max {
        0
    } else {
        (args.rate / conns as u64).max(1)
    };
    let (seconds, max) = (args.seconds.min(10), args.max);
    let start = Instant::now() + Duration::from_millis(100);
    let mut threads = Vec::new();
    for _ in 0..conns {
        threads.push(std::thread::spawn(
            move || -> Result<Histogram<u64>, String> {
                let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                let total = if max {
                    u64::MAX
                } else {
                    per_conn_rate * seconds
                };
                let end = send_deadline(start, seconds, max);
                let (mut i, mut received) = (0u64, 0u64);
                let mut out: Vec<u8> = Vec::with_capacity(16 * 256);
                let mut written = 0usize;
                let mut inbuf = [0u8; 4096];
                let mut have = 0usize;
                let mut h = hist();
                let mut sending = true;
                let mut finished_sending = Instant::now();
                while sending || received < i {
                    let now = Instant::now();
                    if written == out.len() {
                        out.clear();
                        written = 0;
                    }
                    if sending {
                        if i >= total || end.is_some_and(|e| now >= e) {
                            sending = false;
                            finished_sending = now;
                        } else {
                            i = due_echoes(&mut out, i, total, now, start, per_conn_rate);
                        }
                    }
                    while written < out.len() {
                        match s.write(&out[written..]) {
                            Ok(n) => written += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    match s.read(&mut inbuf[have..]) {
                        Ok(0) => break,
                        Ok(n) => {
                            have += n;
                            let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
                            let whole = have / 16 * 16;
                            for m in inbuf[..whole].chunks_exact(16) {
                                let t = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
                                let _ = h.record(now_ns.saturating_sub(t).max(1));
                                received += 1;
                            }
                            inbuf.copy_within(whole..have, 0);
                            have -= whole;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.to_string()),
                    }
                    if !sending && now.duration_since(finished_sending) > Duration::from_secs(10) {
                        break;
                    }
                    std::hint::spin_loop();
                }
                Ok(h)
            },
        ));
    }
    let mut total = hist();
    for t in threads {
        let h = t.join().map_err(|_| "echo thread panicked".to_string())??;
        total.add(&h).ok();
    }
    Ok(total)
}

/// Joins the connection threads and sums what they saw.
fn join_outcomes(
    threads: Vec<std::thread::JoinHandle<Result<Outcome, String>>>,
) -> Result<Outcome, String> {
    let mut total = Outcome {
        accepted: Some(hist()),
        trade: Some(hist()),
        ..Outcome::default()
    };
    for t in threads {
        let o = t
            .join()
            .map_err(|_| "a connection thread panicked".to_string())??;
        let add = |into: &mut Option<Histogram<u64>>, from: &Option<Histogram<u64>>| {
            if let (Some(i), Some(f)) = (into.as_mut(), from.as_ref()) {
                let _ = i.add(f);
            }
        };
        add(&mut total.accepted, &o.accepted);
        add(&mut total.trade, &o.trade);
        total.sent += o.sent;
        total.received += o.received;
        total.errors += o.errors;
        total.last_ack_ns = total.last_ack_ns.max(o.last_ack_ns);
    }
    Ok(total)
}

fn expected_new_orders(sent: u64) -> u64 {
    (0..10)
        .filter(|k| *k < 7)
        .map(|k| if sent > k { (sent - k).div_ceil(10) } else { 0 })
        .sum()
}

/// A bare TCP echo at the same rate and connections: 16-byte messages, latency from intended
/// send time.
fn run_echo(args: &Args) -> Result<Histogram<u64>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let conns = args.connections;
    std::thread::spawn(move || {
        for s in listener.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let per_conn_rate = if args.max {
        0
    } else {
        (args.rate / conns as u64).max(1)
    };
    let seconds = args.seconds.min(10);
    let max = args.max;
    let sender_yield = args.sender_yield;
    let start = Instant::now() + Duration::from_millis(100);
    let mut threads = Vec::new();
    for _ in 0..conns {
        threads.push(std::thread::spawn(
            move || -> Result<Histogram<u64>, String> {
                let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                let mut w = s.try_clone().map_err(|e| e.to_string())?;
                let total = if max {
                    u64::MAX
                } else {
                    per_conn_rate * seconds
                };
                let sender = std::thread::spawn(move || {
                    let end = send_deadline(start, seconds, max);
                    let mut i = 0u64;
                    let mut buf = Vec::with_capacity(16 * 256);
                    while i < total {
                        let now = Instant::now();
                        if end.is_some_and(|e| now >= e) {
                            break;
                        }
                        buf.clear();
                        i = due_echoes(&mut buf, i, total, now, start, per_conn_rate);
                        if buf.is_empty() {
                            if sender_yield {
                                std::thread::yield_now();
                            } else {
                                std::hint::spin_loop();
                            }
                            continue;
                        }
                        if w.write_all(&buf).is_err() {
                            break;
                        }
                    }
                    let _ = w.shutdown(std::net::Shutdown::Write);
                });
                let mut h = hist();
                let mut r = s;
                let mut msg = [0u8; 16];
                while r.read_exact(&mut msg).is_ok() {
                    let t = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
                    let now = Instant::now().duration_since(start).as_nanos() as u64;
                    let _ = h.record(now.saturating_sub(t).max(1));
                }
                let _ = sender.join();
                Ok(h)
            },
        ));
    }
    let mut total = hist();
    for t in threads {
        let h = t.join().map_err(|_| "echo thread panicked".to_string())??;
        total.add(&h).ok();
    }
    Ok(total)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn report(
    args: &Args,
    out: &Outcome,
    echo: Option<&Histogram<u64>>,
    md: Option<&MdOutcome>,
    hiccups: &Hiccups,
) {
    let h = out.accepted.as_ref().expect("histogram");
    let t = out.trade.as_ref().expect("histogram");
    let offered = if args.max { 0 } else { args.rate };
    // Acknowledged orders over the run's span: `--seconds`, or longer when the server fell
    // behind and the last acknowledgement came later (a paced run sends its whole count).
    let span_s = (args.seconds as f64).max(out.last_ack_ns as f64 / 1e9);
    let achieved = h.len() as f64 / span_s * 10.0 / 7.0;
    if args.json {
        let mut s = format!(
            "{{\"connections\":{},\"offered_per_sec\":{},\"achieved_per_sec\":{:.0},\"p50_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2},\"p9999_us\":{:.2},\"max_us\":{:.2},\"errors\":{},\"orders_acked\":{},\"trade_p50_us\":{:.2},\"trade_p99_us\":{:.2}",
            args.connections, offered, achieved,
            us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99)), us(h.value_at_quantile(0.999)), us(h.value_at_quantile(0.9999)), us(h.max()),
            out.errors, h.len(), us(t.value_at_quantile(0.5)), us(t.value_at_quantile(0.99)),
        );
        s += &format!(",\"sent\":{},\"busy_poll\":{}", out.sent, args.busy_poll);
        if let Some(m) = md {
            s += &format!(
                ",\"md_subscribers\":{},\"md_messages\":{},\"md_conflated\":{},\"md_errors\":{}",
                args.md_subscribers, m.messages, m.conflated, m.errors
            );
        }
        if let Some(e) = echo {
            s += &format!(
                ",\"echo_count\":{},\"echo_p50_us\":{:.2},\"echo_p99_us\":{:.2},\"echo_p999_us\":{:.2}",
                e.len(),
                us(e.value_at_quantile(0.5)),
                us(e.value_at_quantile(0.99)),
                us(e.value_at_quantile(0.999))
            );
        }
        if let Some(f) = &hiccups.during {
            s += &format!(",{}", f.json_fields("hiccup"));
        }
        if let Some(f) = &hiccups.alone {
            s += &format!(",{}", f.json_fields("hiccup_alone"));
        }
        println!("{s}}}");
        return;
    }
    println!(
        "connections {}  offered {}/s  achieved {:.0} msgs/s  sent {}  received {}  errors {}",
        args.connections,
        if args.max {
            "max".to_string()
        } else {
            offered.to_string()
        },
        achieved,
        out.sent,
        out.received,
        out.errors
    );
    println!(
        "{:<22}{:>10}{:>10}{:>10}{:>10}{:>10}{:>12}",
        "latency (µs)", "p50", "p99", "p99.9", "p99.99", "max", "count"
    );
    let row = |name: &str, h: &Histogram<u64>| {
        println!(
            "{:<22}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>12}",
            name,
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.value_at_quantile(0.9999)),
            us(h.max()),
            h.len()
        );
    };
    row("order → accepted", h);
    row("order → trade", t);
    let floor_row = |name: &str, f: &HiccupStats| {
        println!(
            "{:<22}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>12}",
            name,
            us(f.p50_ns),
            us(f.p99_ns),
            us(f.p999_ns),
            us(f.p9999_ns),
            us(f.max_ns),
            f.samples
        );
    };
    if let Some(f) = &hiccups.alone {
        floor_row("hiccup meter, alone", f);
    }
    if let Some(f) = &hiccups.during {
        floor_row("hiccup meter, during", f);
    }
    for (when, f) in [("alone", &hiccups.alone), ("during", &hiccups.during)] {
        if let Some(f) = f {
            println!(
                "hiccup meter {when}: {} stalls > 10 µs ({:.0}/s), {} > 1 ms in {:.2} s",
                f.stalls_over_10us,
                f.stalls_over_10us_per_s(),
                f.stalls_over_1ms,
                f.metered_ns as f64 / 1e9
            );
        }
    }
    if let Some(m) = md {
        println!(
            "market data: {} subscribers, {} messages read, {} conflated depth messages, {} errors",
            args.md_subscribers, m.messages, m.conflated, m.errors
        );
    }
    if let Some(e) = echo {
        row("tcp echo baseline", e);
        if e.value_at_quantile(0.99) > 0 {
            println!(
                "p99 ratio (accepted / echo): {:.2}",
                h.value_at_quantile(0.99) as f64 / e.value_at_quantile(0.99) as f64
            );
        }
    }
}
