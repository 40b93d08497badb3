//! `ringbook md`: subscribe to a running server's market data for one symbol and show it.
//!
//! ```text
//! ringbook md --addr 127.0.0.1:7700 --symbol BTC-KRW            # live book, tape, ticker
//! ringbook md --addr 127.0.0.1:7700 --symbol BTC-KRW --json     # one JSON object per message
//! ```
//!
//! Logs in (default: the demo market-data login `feed`), looks the symbol up in the server's
//! reference data (its local `--config` only against a gateway that publishes none), subscribes
//! to depth, trades and the ticker of the symbol, and keeps the book with the client library's `DepthBook` (snapshot,
//! updates, conflated updates; a gap resubscribes). The terminal view is redrawn in place at
//! most every 100 ms: the best `--levels` asks and bids with their order counts, the last
//! trades, and the 24h ticker. With `--json`, each market-data message is printed as it
//! arrives:
//!
//! ```text
//! {"event":"md_depth","symbol":"S","first":F,"md_seq":L,"ts":T,"snapshot":false,"end":true,"bids":[[P,Q,COUNT],…],"asks":[…]}
//! {"event":"md_trade","symbol":"S","trade_id":I,"ts":T,"price":P,"qty":Q,"taker_side":"BUY","md_seq":N}
//! {"event":"md_ticker","symbol":"S",…}                        # as in `ringbook scenario --market-data`
//! {"event":"md_book","symbol":"S","md_seq":N,"bids":[[P,Q,COUNT],…],"asks":[…]}   # after each complete depth message
//! ```
//!
//! `--max-messages N` stops after N market-data messages (depth frames, trades, tickers; the
//! subscriptions' acknowledgements are not counted) for scripts and tests. Exit status 0 only
//! when stopped that way; 2 when it cannot connect or log in, when a subscription is refused,
//! and when the server ends the session or the connection (a shutdown included). Each run logs
//! in to a session of its own.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use ringbook_client::protocol::marketdata::{
    Channel, DepthFrame, MdMsg, DEPTH_END, DEPTH_SNAPSHOT,
};
use ringbook_client::protocol::{name32_str, ServerMsg};
use ringbook_client::{Client, ClientError, DepthBook, Received, ReferenceData};
use ringbook_engine::config::SymbolConfig;
use ringbook_engine::marketdata::{Interval, MdMessage, MdTrade, Ticker};
use ringbook_engine::{Config, Side, SymbolId};

use crate::printer::{json_string, md_line, ticker_line};

/// Arguments of `ringbook md`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: SocketAddr,
    /// The symbol, by name (as the server's reference data names it) or id.
    #[arg(long)]
    symbol: String,
    /// Engine configuration, to resolve the symbol's name when the server publishes no
    /// reference data (the embedded default if absent).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Login name.
    #[arg(long, default_value = "feed")]
    login: String,
    /// Password.
    #[arg(long, default_value = "feed-demo")]
    password: String,
    /// One JSON object per message instead of the terminal view.
    #[arg(long)]
    json: bool,
    /// Levels per side in the terminal view.
    #[arg(long, default_value_t = 10)]
    levels: usize,
    /// Stop after this many market-data messages.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    match view(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbook md: {e}");
            ExitCode::from(2)
        }
    }
}

/// A session id of this run's own: a session `(login, id)` outlives its connection on the
/// server, so a fixed id (this used the process id: 1 in every container) would resume an
/// earlier run's session, replaying its messages — an earlier refusal included — or be refused
/// as `ALREADY_LOGGED_IN` beside a run still going (a red-team finding). A new session
/// displaces only the login's own longest-detached one (docs/protocol.md, "Sessions").
fn fresh_session_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed =
        (nanos as u64) ^ (nanos >> 64) as u64 ^ u64::from(std::process::id()).rotate_left(40);
    (mixed ^ (mixed >> 32)) as u32
}

/// `wanted` (a name, or an id) among `symbols` (`whose` they are, for the message): its id
/// and name. An id not among them is taken as it is (the server refuses the subscription if it
/// has no such symbol).
fn resolve_symbol(
    symbols: &[SymbolConfig],
    wanted: &str,
    whose: &str,
) -> Result<(SymbolId, String), String> {
    if let Some(s) = symbols.iter().find(|s| s.name == wanted) {
        return Ok((SymbolId(s.id), s.name.clone()));
    }
    let id: u16 = wanted.parse().map_err(|_| {
        let names = ReferenceData::names_of(symbols, 20);
        format!("unknown symbol {wanted:?} ({whose} has {names})")
    })?;
    let name = symbols
        .get(usize::from(id))
        .map_or_else(|| id.to_string(), |s| s.name.clone());
    Ok((SymbolId(id), name))
}

/// What the view keeps.
struct State {
    name: String,
    json_name: String,
    depth: DepthBook,
    md_seq: u64,
    tape: VecDeque<MdTrade>,
    ticker: Option<Ticker>,
    resubscribes: u64,
}

fn view(args: &Args) -> Result<(), String> {
    let mut client =
        Client::connect(args.addr).map_err(|e| format!("cannot connect to {}: {e}", args.addr))?;
    let session = fresh_session_id();
    client
        .login(&args.login, &args.password, session, false)
        .map_err(|e| format!("login as {}: {e}", args.login))?;
    // The symbol as the server names it: its reference data, or (a server that publishes none)
    // the local configuration.
    let resolved = client
        .reference_data(1)
        .map_err(|e| format!("reference data: {e}"))
        .and_then(|reference| {
            let published = !reference.is_empty();
            let symbols = if !published {
                match &args.config {
                    Some(p) => Config::load(p).map_err(|e| e.to_string())?,
                    None => Config::default(),
                }
                .symbols
            } else {
                reference.symbols
            };
            let whose = if published {
                "this server"
            } else {
                "the configuration (the server publishes no reference data)"
            };
            resolve_symbol(&symbols, &args.symbol, whose)
        });
    let (symbol, name) = match resolved {
        Ok(r) => r,
        Err(e) => {
            // The session is this run's own: ended, not left detached.
            let _ = client.logout();
            return Err(e);
        }
    };
    for (i, ch) in [Channel::Depth, Channel::Trades, Channel::Ticker]
        .into_iter()
        .enumerate()
    {
        client
            .subscribe(i as u64 + 1, symbol, ch, Interval::M1)
            .map_err(|e| e.to_string())?;
    }
    let mut st = State {
        json_name: json_string(&name),
        name,
        depth: DepthBook::new(),
        md_seq: 0,
        tape: VecDeque::with_capacity(16),
        ticker: None,
        resubscribes: 0,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let (mut messages, mut last_beat, mut last_draw) = (0u64, Instant::now(), Instant::now());
    let mut line = String::new();
    loop {
        if last_beat.elapsed() >= Duration::from_millis(300) {
            client.heartbeat().map_err(|e| e.to_string())?;
            last_beat = Instant::now();
        }
        let msg = match client.recv_any_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(ClientError::Disconnected(code, name)) => {
                return Err(format!("the server closed the session: {code} {name}"))
            }
            Err(ClientError::Closed) => {
                return Err("the server closed the connection (without a Disconnect)".to_string())
            }
            Err(e) => return Err(e.to_string()),
        };
        // A refused subscription (an unknown symbol, no market data on this server) comes
        // back as a session `Rejected`: said and stopped, not waited on forever.
        if let Some(Received::Session(ServerMsg::Rejected { code, name, .. })) = &msg {
            return Err(format!(
                "the server refused the subscription to {}: {code} {}",
                st.name,
                name32_str(name)
            ));
        }
        if let Some(Received::MarketData(m)) = msg {
            // A subscription's acknowledgement prints nothing: it is not one of the N.
            messages += u64::from(!matches!(m, MdMsg::Subscribed { .. }));
            line.clear();
            let complete = st.take(&m, &mut client, symbol, args.json.then_some(&mut line))?;
            if args.json {
                if complete {
                    book_line(&mut line, &st);
                }
                out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
            }
            if args.max_messages.is_some_and(|n| messages >= n) {
                if !args.json {
                    draw(&mut out, &st, args.levels).map_err(|e| e.to_string())?;
                }
                // Ends the session (its id is this run's own): not left detached to take a
                // place among the login's sessions.
                let _ = client.logout();
                return Ok(());
            }
        }
        if !args.json && last_draw.elapsed() >= Duration::from_millis(100) {
            draw(&mut out, &st, args.levels).map_err(|e| e.to_string())?;
            last_draw = Instant::now();
        }
    }
}

impl State {
    /// Applies one message (printing it as JSON into `json` if given); true when a depth
    /// message completed.
    fn take(
        &mut self,
        m: &MdMsg,
        client: &mut Client,
        symbol: SymbolId,
        json: Option<&mut String>,
    ) -> Result<bool, String> {
        match m {
            MdMsg::Depth(f) => {
                if let Some(l) = json {
                    depth_line(l, &self.json_name, f);
                }
                match self.depth.apply(f) {
                    Ok(Some(seq)) => {
                        self.md_seq = seq;
                        Ok(true)
                    }
                    Ok(None) => Ok(false),
                    Err(e) => {
                        // A gap: start again from a fresh snapshot.
                        eprintln!("ringbook md: {e}; resubscribing");
                        self.resubscribes += 1;
                        self.depth = DepthBook::new();
                        client
                            .subscribe(
                                100 + self.resubscribes,
                                symbol,
                                Channel::Depth,
                                Interval::M1,
                            )
                            .map_err(|e| e.to_string())?;
                        Ok(false)
                    }
                }
            }
            MdMsg::Trade(t) => {
                if let Some(l) = json {
                    md_line(l, &self.json_name, MdMessage::Trade(t));
                    l.push('\n');
                }
                if self.tape.len() == 15 {
                    self.tape.pop_front();
                }
                self.tape.push_back(*t);
                Ok(false)
            }
            MdMsg::Ticker { ticker, .. } => {
                if let Some(l) = json {
                    ticker_line(l, &self.json_name, ticker);
                    l.push('\n');
                }
                self.ticker = Some(*ticker);
                Ok(false)
            }
            MdMsg::Subscribed {
                symbol: s,
                channel: Channel::Depth,
                ..
            } if *s == symbol => {
                // Ends a depth message in progress unfinished (a resubscribe after a gap).
                self.depth.subscribed();
                Ok(false)
            }
            MdMsg::Candle { .. } | MdMsg::Subscribed { .. } => Ok(false),
        }
    }
}

fn levels_json(l: &mut String, levels: impl Iterator<Item = (i64, u64, u32)>) {
    let mut first = true;
    for (p, q, n) in levels {
        let comma = if first { "" } else { "," };
        first = false;
        let _ = write!(l, "{comma}[{p},{q},{n}]");
    }
}

fn depth_line(l: &mut String, name: &str, f: &DepthFrame) {
    let _ = write!(
        l,
        r#"{{"event":"md_depth","symbol":{name},"first":{},"md_seq":{},"ts":{},"snapshot":{},"end":{},"bids":["#,
        f.first,
        f.last,
        f.ts,
        f.flags & DEPTH_SNAPSHOT != 0,
        f.flags & DEPTH_END != 0,
    );
    for (key, side) in [("", Side::Buy), (r#"],"asks":["#, Side::Sell)] {
        l.push_str(key);
        levels_json(
            l,
            f.levels()
                .iter()
                .filter(|c| c.side == side)
                .map(|c| (c.price.0, c.qty.0, c.count)),
        );
    }
    l.push_str("]}\n");
}

fn book_line(l: &mut String, st: &State) {
    let Some(b) = st.depth.book() else { return };
    let _ = write!(
        l,
        r#"{{"event":"md_book","symbol":{},"md_seq":{},"bids":["#,
        st.json_name,
        b.md_seq()
    );
    for (key, side) in [("", Side::Buy), (r#"],"asks":["#, Side::Sell)] {
        l.push_str(key);
        levels_json(l, b.levels(side).into_iter().map(|(p, q, n)| (p.0, q.0, n)));
    }
    l.push_str("]}\n");
}

/// Redraws the terminal view in place.
fn draw(out: &mut impl Write, st: &State, levels: usize) -> io::Result<()> {
    let mut s = String::new();
    s.push_str("\x1b[H\x1b[2J");
    let _ = writeln!(s, "{}  md_seq {}", st.name, st.md_seq);
    let (bids, asks) = st.depth.book().map_or((Vec::new(), Vec::new()), |b| {
        (b.levels(Side::Buy), b.levels(Side::Sell))
    });
    let _ = writeln!(s, "{:>12} {:>14} {:>7}", "price", "qty", "orders");
    for (p, q, n) in asks.iter().take(levels).rev() {
        let _ = writeln!(s, "\x1b[31m{:>12} {:>14} {:>7}\x1b[0m", p.0, q.0, n);
    }
    let _ = writeln!(s, "{:->35}", "");
    for (p, q, n) in bids.iter().take(levels) {
        let _ = writeln!(s, "\x1b[32m{:>12} {:>14} {:>7}\x1b[0m", p.0, q.0, n);
    }
    let _ = writeln!(s, "\ntrades (newest first)");
    for t in st.tape.iter().rev() {
        let _ = writeln!(
            s,
            "  #{:<8} {:>12} x {:<10} {}",
            t.trade_id.0,
            t.price.0,
            t.qty.0,
            t.taker_side.name()
        );
    }
    if let Some(t) = &st.ticker {
        let p = |x: Option<ringbook_engine::Price>| x.map_or("-".to_string(), |p| p.0.to_string());
        let _ = writeln!(
            s,
            "\n24h  open {}  high {}  low {}  last {}  change {} ({}%)  volume {}  vwap {}  trades {}",
            p(t.open),
            p(t.high),
            p(t.low),
            p(t.last),
            t.change(),
            t.change_pct(),
            t.volume,
            t.vwap().map_or("-".to_string(), |v| v.to_string()),
            t.trades
        );
    }
    out.write_all(s.as_bytes())?;
    out.flush()
}
