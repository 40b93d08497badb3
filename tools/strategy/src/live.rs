//! `ringbook bots`: strategies as clients of a running `ringbook serve`, each on its own
//! thread, connection and account, over the binary protocol (`ringbook-client`).
//!
//! # Market data
//!
//! Until the server publishes a market-data feed, each bot **polls the sequenced Book query**
//! once per `interval`: the mid of the best bid and ask (or the one side there is, or the bot's
//! `reference` price while the book is empty) is that step's price, and each step is one
//! candle (open = high = low = close = the polled price; volume 0) for the strategy. Its own
//! fills arrive as they happen and are applied at once.
//!
//! # A run
//!
//! 0. Before anything connects, [`load`] checks everything it can: the interval and symbol,
//!    no two bots with one name or one login, no login with a NUL byte or over 32 bytes (the
//!    wire's NUL-padded name32 would make it another account), each `reference` inside the symbol's band,
//!    funding amounts within 64 bits (per bot and per currency in total), each strategy's
//!    parameters and risk limits (the bot is built as its thread will build it). Errors name
//!    the file and the bot.
//! 1. Every bot logs in (cancel-on-disconnect on) and learns its user id; two bots on one
//!    user id (two logins of one account) stop the run.
//! 2. If `[funding]` names an operator login, it deposits each bot's `cash` (quote units) and
//!    `base` (lots) first.
//! 3. Each bot reads its balances: they are its starting cash and inventory (so earlier funds
//!    on the account are accounted for).
//! 4. `steps` times: poll the book, apply the updates that arrived, run the strategy (through
//!    its risk limits), send its orders, wait out the interval applying updates.
//! 5. Mass cancel, wait for it, read the balances again and **reconcile**: the server's quote
//!    balance must equal starting cash plus the ledger's cash flow, and the base balance the
//!    starting inventory plus the ledger's position (both with locks included).
//!
//! A status line per bot and step goes to the terminal as a table (or `--json` lines), then one
//! outcome per bot. The exit status is 1 if any bot failed to reconcile. A bot that fails (its
//! account has no deposits, the server disconnects it…) is reported as it fails, the others
//! run on and their outcomes are printed, and the run exits with status 2 naming every bot
//! that failed. If stdout closes, the process exits at once with status 2 (the server cancels
//! the bots' orders on disconnect).
//!
//! Every connection sends a heartbeat whenever it has sent nothing for a third of the
//! session's heartbeat interval, while it waits between steps too (the server ends a session
//! silent for three intervals).
//!
//! # Reference data
//!
//! The protocol has no reference-data query: the bots resolve `symbol` in *their* engine
//! configuration (`engine_config`, else the embedded default) and send only its numeric id. So
//! `engine_config` must be the server's own configuration whenever the server does not run the
//! default. A mismatch the bots can see stops the bot with a message saying so: the server
//! refuses the book query or an order as UNKNOWN_SYMBOL, shows a book level outside the
//! configured band, or refuses as PRICE_OUT_OF_BAND an order priced inside it. A mismatch
//! that changes nothing the bots can see (the same band, another lot size) goes unnoticed.
//!
//! Client order ids start from the wall clock in nanoseconds (as `ringbook loadgen`'s do),
//! because the engine requires each user's ids to increase (its high-water mark,
//! docs/matching.md "Client order ids"), and the mark outlives one run of the bots. Sessions
//! are reused between runs, so messages the server retransmits from an earlier run are skipped.
//!
//! # Proposals
//!
//! A bot may take its parameters from a sweep's proposal (`proposal = "FILE"`); it is used only
//! if a person approved it (`ringbook bots approve FILE`), it was not edited afterwards, and it
//! was swept on the bots' symbol. Configs and proposals must be regular files (a FIFO is
//! refused, not opened).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringbook_client::protocol::client::msg_type;
use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::{Client, ClientError, ReferenceData, Role};
use ringbook_engine::config::{CurrencyConfig, SymbolConfig};
use ringbook_engine::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backtest::sweep::Proposal;
use crate::bot::{Bot, RiskLimits};
use crate::candle::{parse_interval, Candle};
use crate::ledger::Update;
use crate::strategy::{self, Market};

/// The bots configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotsConfig {
    /// Symbol every bot trades.
    pub symbol: String,
    /// Step (poll) interval, e.g. `200ms`.
    pub interval: String,
    /// Steps per bot (0: until the server closes the connection).
    pub steps: u64,
    /// Engine configuration the server runs (for the symbol's reference data); the embedded
    /// default when omitted. A relative path is relative to this file. It must be the
    /// server's: the bots send the symbol's numeric id from it, and the protocol cannot ask
    /// the server what that id is.
    pub engine_config: Option<PathBuf>,
    /// An operator that funds the bots.
    pub funding: Option<Funding>,
    /// The bots.
    #[serde(rename = "bot")]
    pub bots: Vec<BotConfig>,
}

/// The funding operator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Funding {
    /// Operator login.
    pub login: String,
    /// Its password.
    pub password: String,
}

/// One bot.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// Name in the status table.
    pub name: String,
    /// Strategy.
    pub strategy: String,
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
    /// Quote units to deposit (with `[funding]`).
    #[serde(default)]
    pub cash: u64,
    /// Base lots to deposit (with `[funding]`).
    #[serde(default)]
    pub base: u64,
    /// Price used while the book is empty.
    pub reference: i64,
    /// Strategy parameters inline…
    pub params: Option<toml::Table>,
    /// …or from an approved proposal (its strategy parameters; `[risk]` below still applies).
    pub proposal: Option<PathBuf>,
    /// Risk limits.
    pub risk: RiskLimits,
}

/// A bot's state after a step.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Bot name.
    pub bot: String,
    /// Strategy.
    pub strategy: String,
    /// Step number (from 1).
    pub step: u64,
    /// Polled price.
    pub price: i64,
    /// Position (lots).
    pub position: i64,
    /// Average price.
    pub avg_price: Option<i64>,
    /// Equity at the polled price.
    pub equity: i64,
    /// Realised PnL before fees.
    pub realised: i64,
    /// Unrealised PnL.
    pub unrealised: i64,
    /// Fees paid.
    pub fees: u64,
    /// Working orders.
    pub orders: usize,
    /// Fills so far.
    pub fills: u64,
    /// Halted by risk.
    pub halted: bool,
}

/// A bot's end.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Bot name.
    pub bot: String,
    /// Its user id.
    pub user: u32,
    /// Fills.
    pub fills: u64,
    /// Orders sent.
    pub orders: u64,
    /// Position (lots).
    pub position: i64,
    /// Server quote balance (available + locked) at the end.
    pub quote: u64,
    /// Server base balance at the end.
    pub base: u64,
    /// What the ledger says the quote balance must be.
    pub expected_quote: i128,
    /// What the ledger says the base balance must be.
    pub expected_base: i128,
    /// They agree.
    pub reconciled: bool,
    /// Orders refused (by risk or the server).
    pub failed: u64,
    /// The last refusal's code and name.
    pub last_failure: Option<String>,
    /// Risk events.
    pub risk_events: usize,
}

/// What a bot thread reports.
enum Report {
    Step(Status),
    Done(Outcome),
    Failed(Failure),
}

/// A bot that stopped without an outcome, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// Bot name.
    pub bot: String,
    /// Why (the bot's name first).
    pub error: String,
}

/// What [`run`] reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A bot's state after a step.
    Step(&'a Status),
    /// A bot failed; the others carry on.
    Failed(&'a Failure),
}

/// The end of a run: each bot's outcome, or why it has none.
#[derive(Clone, Debug, Default)]
pub struct Ended {
    /// The bots that finished, by name.
    pub outcomes: Vec<Outcome>,
    /// The bots that failed, by name.
    pub failures: Vec<Failure>,
}

const WAIT: Duration = Duration::from_secs(10);

fn client_err(what: &str) -> impl Fn(ClientError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// What the bots' configuration resolves to against the engine configuration.
#[derive(Clone, Debug)]
struct Setup {
    symbol: SymbolId,
    sc: ringbook_engine::config::SymbolConfig,
    base_ccy: CurrencyId,
    quote_ccy: CurrencyId,
    market: Market,
    interval: Duration,
}

/// Everything about the configuration that can be checked without a server, so that a bad
/// entry stops the run before anything connects or is deposited: the interval and symbol; no
/// two bots with one name or one login (their client order ids, both from the clock, would
/// collide); each bot's `reference` inside the symbol's band; its funding amounts (base lots
/// × lot size) and the funding total per currency within 64 bits; its strategy and risk limits
/// (the bot is built as its thread will build it).
fn validate(cfg: &BotsConfig, engine: &Config, params: &[toml::Table]) -> Result<Setup, String> {
    let interval = Duration::from_millis(parse_interval(&cfg.interval)?);
    let symbol = engine.symbol_id(&cfg.symbol).ok_or_else(|| {
        format!(
            "no symbol {} in the engine config ({})",
            cfg.symbol,
            if cfg.engine_config.is_some() {
                "engine_config"
            } else {
                "the embedded default: set engine_config to the server's"
            }
        )
    })?;
    let sc = engine.symbol(symbol).expect("configured").clone();
    let (base_ccy, quote_ccy) = (
        engine.currency_id(&sc.base).expect("validated"),
        engine.currency_id(&sc.quote).expect("validated"),
    );
    let market = Market::of(&sc);
    if cfg.bots.is_empty() {
        return Err("no [[bot]]".into());
    }
    if params.len() != cfg.bots.len() {
        return Err(format!(
            "{} parameter sets for {} bots",
            params.len(),
            cfg.bots.len()
        ));
    }
    let (mut names, mut logins) = (std::collections::BTreeSet::new(), BTreeMap::new());
    let (mut cash_total, mut base_total) = (0u64, 0u64);
    for (b, p) in cfg.bots.iter().zip(params) {
        let fail = |e: String| format!("bot {}: {e}", b.name);
        if !names.insert(b.name.as_str()) {
            return Err(format!(
                "two bots are named {:?}: names must differ",
                b.name
            ));
        }
        // The wire carries a login as 32 NUL-padded bytes: a NUL in it or a longer one would
        // name another account than the one written (and slip past the check below).
        if b.login.contains('\0') {
            return Err(fail(format!(
                "login {:?} contains a NUL byte (not allowed in a login)",
                b.login
            )));
        }
        if b.login.len() > 32 {
            return Err(fail(format!(
                "login {:?} is {} bytes: a login is at most 32",
                b.login,
                b.login.len()
            )));
        }
        if let Some(other) = logins.insert(b.login.as_str(), b.name.as_str()) {
            return Err(fail(format!(
                "login {} is also bot {other}'s: each bot needs an account of its own (their client order ids would collide)",
                b.login
            )));
        }
        if !sc.in_band(Price(b.reference)) {
            return Err(fail(format!(
                "reference {} is outside {}'s price band {}..={}",
                b.reference, cfg.symbol, sc.price_min, sc.price_max
            )));
        }
        let base_units = b.base.checked_mul(sc.lot_size).ok_or_else(|| {
            fail(format!(
                "base {} lots × lot size {} overflows 64 bits of {}",
                b.base, sc.lot_size, sc.base
            ))
        })?;
        if cfg.funding.is_some() {
            cash_total = cash_total.checked_add(b.cash).ok_or_else(|| {
                fail(format!(
                    "the bots' cash together overflows 64 bits of {}",
                    sc.quote
                ))
            })?;
            base_total = base_total.checked_add(base_units).ok_or_else(|| {
                fail(format!(
                    "the bots' base together overflows 64 bits of {}",
                    sc.base
                ))
            })?;
        }
        let strategy = strategy::build(&b.strategy, p).map_err(fail)?;
        Bot::new(
            strategy,
            b.risk.clone(),
            market,
            UserId(0),
            symbol,
            interval.as_millis() as u64,
            0,
            0,
        )
        .map_err(fail)?;
    }
    Ok(Setup {
        symbol,
        sc,
        base_ccy,
        quote_ccy,
        market,
        interval,
    })
}

/// Loads the configuration and resolves each bot's parameters (proposals must be approved),
/// and checks everything that can be checked before connecting ([`validate`]). Errors name
/// the file and the bot.
pub fn load(path: &Path) -> Result<(BotsConfig, Config, Vec<toml::Table>), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let text = crate::files::read_regular(path)?;
    let c: BotsConfig = toml::from_str(&text).map_err(|e| at(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let engine = match &c.engine_config {
        Some(p) => {
            let full = dir.join(p);
            crate::files::read_regular(&full).map_err(|e| at(format!("engine_config: {e}")))?;
            Config::load(&full).map_err(|e| at(format!("engine_config {}: {e}", p.display())))?
        }
        None => Config::default(),
    };
    let mut params = Vec::new();
    for b in &c.bots {
        let p = match (&b.params, &b.proposal) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => {
                let in_prop = |e: String| at(format!("bot {}: {}: {e}", b.name, f.display()));
                let prop = Proposal::load(&dir.join(f)).map_err(&in_prop)?;
                if prop.strategy != b.strategy {
                    return Err(in_prop(format!(
                        "the proposal is for {}, not {}",
                        prop.strategy, b.strategy
                    )));
                }
                prop.approved_params().map_err(&in_prop)?;
                let swept = prop.symbol().map_err(&in_prop)?;
                if swept != c.symbol {
                    return Err(in_prop(format!(
                        "the proposal was swept on {swept}, but the bots trade {}",
                        c.symbol
                    )));
                }
                prop.strategy_params().map_err(&in_prop)?
            }
            _ => {
                return Err(at(format!(
                    "bot {}: give exactly one of params and proposal",
                    b.name
                )))
            }
        };
        params.push(p);
    }
    validate(&c, &engine, &params).map_err(at)?;
    Ok((c, engine, params))
}

/// `ringbook bots`: runs every bot; prints statuses and outcomes; `Ok(true)` if all reconcile.
/// A bot that fails is reported as it fails; the others' outcomes are still printed, and the
/// run ends in an error naming every bot that failed, with its reason. If stdout cannot be
/// written (its reader went away), the process ends at once with status 2 ([`stdout_closed`]).
pub fn main(addr: SocketAddr, path: &Path, steps: Option<u64>, json: bool) -> Result<bool, String> {
    let (mut cfg, engine, params) = load(path)?;
    if let Some(s) = steps {
        cfg.steps = s;
    }
    let mut table: BTreeMap<String, Status> = BTreeMap::new();
    // Kept for the table: a redraw would wipe a failure reported only once.
    let mut failed: Vec<Failure> = Vec::new();
    let ended = run(addr, &cfg, &engine, params, |p| match p {
        Progress::Step(s) if json => out_line(&serde_json::to_string(s).expect("plain data")),
        Progress::Step(s) => {
            table.insert(s.bot.clone(), s.clone());
            print_table(&table, &failed);
        }
        Progress::Failed(f) => {
            if json {
                out_line(&serde_json::to_string(f).expect("plain data"));
            } else {
                failed.push(f.clone());
                print_table(&table, &failed);
            }
            let _ = writeln!(std::io::stderr(), "ringbook bots: {}", f.error);
        }
    })?;
    let mut ok = true;
    for o in &ended.outcomes {
        ok &= o.reconciled;
        if json {
            out_line(&serde_json::to_string(o).expect("plain data"));
        } else {
            out_line(&format!(
                "{}: user {}, {} orders, {} fills, position {}, quote {} (ledger {}), base {} (ledger {}): {}",
                o.bot,
                o.user,
                o.orders,
                o.fills,
                o.position,
                o.quote,
                o.expected_quote,
                o.base,
                o.expected_base,
                if o.reconciled { "reconciled" } else { "MISMATCH" }
            ));
        }
    }
    if !ended.failures.is_empty() {
        // Each failure was reported as it happened; the table's redraws would have hidden it,
        // so it is repeated after the outcomes, and every reason is in the error.
        if !json {
            for f in &ended.failures {
                out_line(&format!("{} FAILED: {}", f.bot, f.error));
            }
        }
        let reasons: Vec<&str> = ended.failures.iter().map(|f| f.error.as_str()).collect();
        return Err(format!(
            "{} of {} bots failed: {}",
            ended.failures.len(),
            cfg.bots.len(),
            reasons.join("; ")
        ));
    }
    Ok(ok)
}

/// One line to stdout, or [`stdout_closed`].
fn out_line(line: &str) {
    let mut so = std::io::stdout().lock();
    if let Err(e) = writeln!(so, "{line}").and_then(|()| so.flush()) {
        stdout_closed(e);
    }
}

/// Stdout's reader went away (`ringbook bots --json | head -1`): nothing could report the
/// bots any more, and returning would wait for their threads to trade on unreported. So the
/// process ends here, with status 2. That is safe for their orders: every bot logs in with
/// cancel-on-disconnect, so the server cancels its orders when the process's sockets close.
fn stdout_closed(e: std::io::Error) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "ringbook bots: stdout closed ({e}): stopping; the server cancels the bots' orders on disconnect"
    );
    std::process::exit(2)
}

fn print_table(t: &BTreeMap<String, Status>, failed: &[Failure]) {
    let mut out = String::from("\x1b[H\x1b[2J");
    out += &format!(
        "{:<10} {:<9} {:>6} {:>9} {:>9} {:>9} {:>14} {:>11} {:>11} {:>8} {:>6} {:>6} {}\n",
        "bot",
        "strategy",
        "step",
        "price",
        "position",
        "avg",
        "equity",
        "realised",
        "unrealised",
        "fees",
        "orders",
        "fills",
        "risk"
    );
    for s in t.values() {
        out += &format!(
            "{:<10} {:<9} {:>6} {:>9} {:>9} {:>9} {:>14} {:>11} {:>11} {:>8} {:>6} {:>6} {}\n",
            s.bot,
            s.strategy,
            s.step,
            s.price,
            s.position,
            s.avg_price.map_or("-".into(), |p| p.to_string()),
            s.equity,
            s.realised,
            s.unrealised,
            s.fees,
            s.orders,
            s.fills,
            if s.halted { "HALTED" } else { "ok" }
        );
    }
    for f in failed {
        out += &format!("{:<10} FAILED: {}\n", f.bot, f.error);
    }
    let mut so = std::io::stdout().lock();
    if let Err(e) = so.write_all(out.as_bytes()).and_then(|()| so.flush()) {
        stdout_closed(e);
    }
}

/// A connection with its heartbeats: whenever it has sent nothing for a third of the
/// session's heartbeat interval, a `Heartbeat` goes out, during every wait too (the server
/// ends a session silent for three intervals: a red-team pass saw every bot with an interval
/// of 3 s or more cut off with HEARTBEAT_TIMEOUT). Retransmissions of an earlier run's
/// messages (sequence number ≤ `replayed`) are skipped.
struct Conn {
    c: Client,
    /// The session's last sequence number at login: messages up to it are retransmissions of
    /// an earlier run's, not this run's.
    replayed: u64,
    beat: Duration,
    last_sent: Instant,
}

impl Conn {
    /// Connects and logs in.
    fn open(
        addr: SocketAddr,
        login: &str,
        password: &str,
        session: u32,
        cancel_on_disconnect: bool,
    ) -> Result<(Conn, Role), ClientError> {
        let mut c = Client::connect(addr)?;
        let info = c.login(login, password, session, cancel_on_disconnect)?;
        let hb = if info.heartbeat_ms == 0 {
            1_000
        } else {
            info.heartbeat_ms
        };
        Ok((
            Conn {
                c,
                replayed: info.last_seq,
                beat: Duration::from_millis((hb / 3).max(1) as u64),
                last_sent: Instant::now(),
            },
            info.role,
        ))
    }

    fn send(&mut self, m: &ClientMsg) -> Result<(), ClientError> {
        self.c.send(m)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// A heartbeat, if one is due.
    fn keep_alive(&mut self) -> Result<(), ClientError> {
        if self.last_sent.elapsed() >= self.beat {
            self.send(&ClientMsg::Heartbeat)?;
        }
        Ok(())
    }

    /// The next message that is not a retransmission, or `None` when nothing arrives within
    /// `timeout`; heartbeats go out meanwhile.
    fn recv_within(&mut self, timeout: Duration) -> Result<Option<ServerMsg>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.keep_alive()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let until_beat = self.beat.saturating_sub(self.last_sent.elapsed());
            let slice = left.min(until_beat).max(Duration::from_millis(1));
            match self.c.recv_timeout(slice)? {
                None => continue,
                Some(m) if m.seq() != 0 && m.seq() <= self.replayed => continue,
                Some(m) => return Ok(Some(m)),
            }
        }
    }

    fn recv(&mut self) -> Result<Option<ServerMsg>, ClientError> {
        self.recv_within(WAIT)
    }

    fn logout(&mut self) {
        let _ = self.c.logout();
    }
}

/// Compares the bots' symbol and its currencies, as `engine` (the bots' `engine_config`)
/// configures them, with the server's reference data; every difference is named. A server that
/// publishes none (a gateway embedded without it) is taken at its word that it runs `engine`.
fn check_reference(
    reference: &ReferenceData,
    cfg: &BotsConfig,
    engine: &Config,
    sc: &SymbolConfig,
) -> Result<(), String> {
    if reference.is_empty() {
        return Ok(());
    }
    let source = if cfg.engine_config.is_some() {
        "engine_config"
    } else {
        "the embedded default config (engine_config unset)"
    };
    let Some(theirs) = reference.symbol(&sc.name) else {
        return Err(format!(
            "the server has no symbol {} (it has {}): set engine_config to the server's configuration",
            sc.name,
            ReferenceData::names_of(&reference.symbols, 20)
        ));
    };
    let mut differences = Vec::new();
    let mut differ = |what: &str, ours: String, server: String| {
        if ours != server {
            differences.push(format!("{what} {ours} here, {server} on the server"));
        }
    };
    // Every field of the symbol's entry, by name (the pattern names them all, so a field added
    // to `SymbolConfig` fails to compile here until it is compared too).
    let SymbolConfig {
        id: _,
        name: _,
        base: _,
        quote: _,
        lot_size: _,
        tick_size: _,
        price_min: _,
        price_max: _,
        maker_fee_bps: _,
        taker_fee_bps: _,
        max_order_qty: _,
    } = sc;
    macro_rules! fields {
        ($($field:ident),*) => {
            $(differ(stringify!($field), sc.$field.to_string(), theirs.$field.to_string());)*
        };
    }
    fields!(
        id,
        base,
        quote,
        lot_size,
        tick_size,
        price_min,
        price_max,
        max_order_qty,
        maker_fee_bps,
        taker_fee_bps
    );
    for code in [&sc.base, &sc.quote] {
        let ours = engine.currencies.iter().find(|c| &c.code == code);
        let server = reference.currency(code);
        let show = |c: Option<&CurrencyConfig>| {
            c.map_or("absent".to_string(), |c| {
                format!("id {} scale {}", c.id, c.scale)
            })
        };
        differ(&format!("currency {code}"), show(ours), show(server));
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the server's reference data for {} differs from {source}: {}; set engine_config to the server's configuration",
        sc.name,
        differences.join("; ")
    ))
}

/// Heartbeats for every connection that needs one (while others are being set up).
fn keep_alive(conns: &mut [(Conn, UserId)]) -> Result<(), String> {
    for (c, _) in conns {
        c.keep_alive().map_err(client_err("heartbeat"))?;
    }
    Ok(())
}

/// Runs the bots; `progress` is called on the calling thread as statuses (and failures)
/// arrive. An error is returned only for what stops every bot (the configuration, a login,
/// the funding); a bot that fails later is one of [`Ended::failures`], and the others run on.
pub fn run(
    addr: SocketAddr,
    cfg: &BotsConfig,
    engine: &Config,
    params: Vec<toml::Table>,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Ended, String> {
    let setup = validate(cfg, engine, &params)?;
    let sc = &setup.sc;

    // 1. Log in.
    let mut conns: Vec<(Conn, UserId)> = Vec::new();
    for (i, b) in cfg.bots.iter().enumerate() {
        let (c, role) = Conn::open(addr, &b.login, &b.password, 100 + i as u32, true)
            .map_err(client_err(&format!("bot {} login", b.name)))?;
        let Role::User(user) = role else {
            return Err(format!(
                "bot {}: {} is not a user login ({:?})",
                b.name, b.login, role
            ));
        };
        // Two logins the server resolves to one account (the check in `validate` compares
        // them as written).
        if let Some(j) = conns.iter().position(|(_, u)| u.0 == user) {
            return Err(format!(
                "bots {} and {} both log in to user {user} ({} and {}): each bot needs an account of its own (their client order ids would collide)",
                cfg.bots[j].name, b.name, cfg.bots[j].login, b.login
            ));
        }
        conns.push((c, UserId(user)));
        if conns.len() == 1 {
            // The server's reference data must be what the bots were configured with: the
            // symbol id they send, its lot, tick, band and fees, its currencies' scales.
            // Checked on the first login, before the others log in (with cancel-on-disconnect).
            let reference = conns[0]
                .0
                .c
                .reference_data(1)
                .map_err(client_err("reference data"))?;
            check_reference(&reference, cfg, engine, sc)?;
        }
        keep_alive(&mut conns)?;
    }
    // 2. Fund (the amounts were checked by `validate`: only the server can refuse now).
    if let Some(f) = &cfg.funding {
        let (mut ops, role) = Conn::open(addr, &f.login, &f.password, 99, false)
            .map_err(client_err("funding login"))?;
        if !matches!(role, Role::Operator(_)) {
            return Err(format!("funding login {} is not an operator", f.login));
        }
        for i in 0..cfg.bots.len() {
            let (b, user) = (&cfg.bots[i], conns[i].1);
            let base_units = b.base * sc.lot_size; // checked by `validate`
            for (currency, amount) in [(setup.quote_ccy, b.cash), (setup.base_ccy, base_units)] {
                if amount == 0 {
                    continue;
                }
                let what = format!("deposit for bot {}", b.name);
                ops.send(
                    &Command::Deposit {
                        user,
                        currency,
                        amount,
                    }
                    .into(),
                )
                .map_err(client_err(&what))?;
                loop {
                    match ops.recv().map_err(client_err(&what))? {
                        Some(ServerMsg::Deposited {
                            user: u,
                            currency: c,
                            ..
                        }) if u == user.0 && c == currency.0 => break,
                        Some(ServerMsg::Rejected { code, name, .. }) => {
                            return Err(format!(
                                "{what} refused: {code} {}",
                                ringbook_client::protocol::name32_str(&name)
                            ))
                        }
                        Some(_) => {}
                        None => return Err(format!("no answer to the {what}")),
                    }
                }
                keep_alive(&mut conns)?;
            }
        }
        ops.logout();
    }
    // 3–5. Each bot on its own thread.
    let (tx, rx) = mpsc::channel();
    let mut ended = Ended::default();
    std::thread::scope(|s| {
        for ((b, p), (conn, user)) in cfg.bots.iter().zip(params).zip(conns) {
            let tx = tx.clone();
            let ctx = Live {
                cfg: b.clone(),
                params: p,
                market: setup.market,
                symbol: setup.symbol,
                symbol_name: cfg.symbol.clone(),
                band: (sc.price_min, sc.price_max),
                user,
                quote_ccy: setup.quote_ccy,
                base_ccy: setup.base_ccy,
                lot: sc.lot_size,
                interval: setup.interval,
                steps: cfg.steps,
            };
            s.spawn(move || {
                let name = ctx.cfg.name.clone();
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run(conn, &tx)));
                let error = match r {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(payload) => format!(
                        "bot {name}: its thread panicked ({})",
                        ringbook_engine::pipeline::panic_message(&*payload)
                    ),
                };
                let _ = tx.send(Report::Failed(Failure { bot: name, error }));
            });
        }
        drop(tx);
        for r in rx {
            match r {
                Report::Step(st) => progress(Progress::Step(&st)),
                Report::Done(o) => ended.outcomes.push(o),
                Report::Failed(f) => {
                    progress(Progress::Failed(&f));
                    ended.failures.push(f);
                }
            }
        }
    });
    ended.outcomes.sort_by(|a, b| a.bot.cmp(&b.bot));
    ended.failures.sort_by(|a, b| a.bot.cmp(&b.bot));
    Ok(ended)
}

/// One bot's run.
struct Live {
    cfg: BotConfig,
    params: toml::Table,
    market: Market,
    symbol: SymbolId,
    symbol_name: String,
    /// The symbol's price band in the bots' engine config.
    band: (i64, i64),
    user: UserId,
    quote_ccy: CurrencyId,
    base_ccy: CurrencyId,
    lot: u64,
    interval: Duration,
    steps: u64,
}

/// Server messages about the bot's own orders, as ledger updates.
fn update_of(m: &ServerMsg) -> Option<Update> {
    Some(match *m {
        ServerMsg::Accepted {
            client_order_id, ..
        } => Update::Accepted {
            coid: client_order_id,
        },
        ServerMsg::Fill {
            client_order_id,
            price,
            qty,
            leaves_qty,
            fee,
            ..
        } => Update::Fill {
            coid: client_order_id,
            price,
            qty,
            leaves: leaves_qty,
            fee,
        },
        ServerMsg::Cancelled {
            client_order_id,
            leaves_qty,
            ..
        } => Update::Cancelled {
            coid: client_order_id,
            leaves: leaves_qty,
        },
        ServerMsg::Rejected {
            client_order_id,
            code,
            name,
            ..
        } if client_order_id != 0 => Update::Rejected {
            coid: client_order_id,
            code,
            name: ringbook_client::protocol::name32_str(&name).to_string(),
        },
        _ => return None,
    })
}

/// A bot's starting balances as the `i64`s its books hold: quote units and base lots,
/// saturated at `i64::MAX` (equity above it shows as the bound, never wrapped negative;
/// reconciliation uses the exact `u64`s).
fn starting_point(cash: u64, base: u64, lot: u64) -> (i64, i64) {
    (
        crate::bot::saturate(cash as i128),
        crate::bot::saturate((base / lot) as i128),
    )
}

impl Live {
    fn fail(&self, e: impl std::fmt::Display) -> String {
        format!("bot {}: {e}", self.cfg.name)
    }

    /// The server's symbol under our symbol's id is not the one configured here.
    fn mismatch(&self, what: &str) -> String {
        self.fail(format!(
            "{what}, but {} (symbol id {}) has the price band {}..={} in the bots' engine config: \
             the server's symbol {} is not the one configured here; the bots send symbol ids, so \
             set engine_config to the server's engine configuration",
            self.symbol_name, self.symbol.0, self.band.0, self.band.1, self.symbol.0
        ))
    }

    fn in_band(&self, p: i64) -> bool {
        p >= self.band.0 && p <= self.band.1
    }

    fn run(self, mut c: Conn, tx: &mpsc::Sender<Report>) -> Result<(), String> {
        let name = self.cfg.name.clone();
        let mut request = 0u64;
        // The account is the bot's own: orders left working on it (a previous run killed with
        // its server, or placed by another client) would fill outside the bot's ledger and
        // break reconciliation, and the final mass cancel would take them anyway. So they go
        // first, said on stderr, before the starting point is read (a red-team finding).
        let left = self.cancel_all(&mut c, &mut |_| {})?;
        if left > 0 {
            eprintln!(
                "bot {name}: cancelled {left} order(s) left working on user {}'s {} before starting \
                 (a bot's account and symbol are its own)",
                self.user.0, self.symbol_name
            );
        }
        let (cash0, base0) = self.balances(&mut c, &mut request, &mut |_| {})?;
        let strategy =
            strategy::build(&self.cfg.strategy, &self.params).map_err(|e| self.fail(e))?;
        let (cash_start, lots_start) = starting_point(cash0, base0, self.lot);
        let mut bot = Bot::new(
            strategy,
            self.cfg.risk.clone(),
            self.market,
            self.user,
            self.symbol,
            self.interval.as_millis() as u64,
            cash_start,
            lots_start,
        )
        .map_err(|e| self.fail(e))?;
        // The engine wants each user's client order ids to increase, across runs too: start
        // from the wall clock in nanoseconds, the convention `ringbook loadgen` follows, so
        // either may run after the other on the same accounts.
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bot.ledger = crate::ledger::Ledger::new(self.market, unix_ns.max(1));
        let started = Instant::now();
        let mut out = Vec::new();
        let mut last_price = self.cfg.reference;
        let steps = if self.steps == 0 {
            u64::MAX
        } else {
            self.steps
        };
        for step in 1..=steps {
            let step_start = Instant::now();
            // Poll the book; apply whatever arrives meanwhile.
            request += 1;
            c.send(&ClientMsg::BookSnapshot {
                request_id: request,
                symbol: self.symbol,
                depth: 1,
            })
            .map_err(|e| self.fail(e))?;
            let (mut bid, mut ask) = (None, None);
            loop {
                let m = c
                    .recv()
                    .map_err(|e| self.fail(e))?
                    .ok_or_else(|| self.fail("no book reply"))?;
                match m {
                    ServerMsg::BookLevels {
                        request_id,
                        side,
                        count,
                        levels,
                        ..
                    } if request_id == request && count > 0 => {
                        let p = levels[0].0;
                        if !self.in_band(p) {
                            return Err(
                                self.mismatch(&format!("the server's book has a level at {p}"))
                            );
                        }
                        if side == Side::Buy {
                            bid = Some(p);
                        } else {
                            ask = Some(p);
                        }
                    }
                    ServerMsg::BookEnd { request_id, .. } if request_id == request => break,
                    ServerMsg::Rejected {
                        ref_msg_type: msg_type::BOOK_SNAPSHOT,
                        code,
                        name,
                        ..
                    } => {
                        return Err(self.mismatch(&format!(
                            "the server refused the book query: {code} {}",
                            ringbook_client::protocol::name32_str(&name)
                        )))
                    }
                    m => self.apply(&mut bot, &m, &mut c, &mut out)?,
                }
            }
            let price = match (bid, ask) {
                (Some(b), Some(a)) => (b + a) / 2,
                (Some(p), None) | (None, Some(p)) => p,
                (None, None) => last_price,
            };
            last_price = price;
            let ts = started.elapsed().as_millis() as u64;
            let candle = Candle {
                open_time: ts,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: 0,
                quote_volume: 0,
                trades: 0,
            };
            bot.set_top(bid, ask);
            bot.on_candle(ts, &candle, &mut out);
            self.send(&mut c, &mut out)?;
            // Wait out the interval, applying updates (heartbeats go out meanwhile).
            loop {
                let left = self.interval.saturating_sub(step_start.elapsed());
                if left.is_zero() {
                    break;
                }
                if let Some(m) = c.recv_within(left).map_err(|e| self.fail(e))? {
                    self.apply(&mut bot, &m, &mut c, &mut out)?;
                }
            }
            let l = &bot.ledger;
            let p = &l.position;
            let _ = tx.send(Report::Step(Status {
                bot: name.clone(),
                strategy: self.cfg.strategy.clone(),
                step,
                price,
                position: p.qty,
                avg_price: p.avg_price(),
                equity: bot.equity(),
                realised: crate::bot::saturate(p.realised),
                unrealised: crate::bot::saturate(p.unrealised(price, self.market.tick_size)),
                fees: u64::try_from(p.fees).unwrap_or(u64::MAX),
                orders: l.working().count(),
                fills: l.fills,
                halted: bot.halted(),
            }));
            bot.ledger.forget_finished();
        }
        // Cancel everything, wait for it, and reconcile. The ledger only sees what arrives
        // meanwhile: the strategy sends nothing more.
        self.cancel_all(&mut c, &mut |m| {
            if let Some(u) = update_of(&m) {
                bot.ledger.apply(&u);
            }
        })?;
        let mut stray = Vec::new();
        let (quote, base) = self.balances(&mut c, &mut request, &mut |m| stray.push(m))?;
        for m in stray {
            if let Some(u) = update_of(&m) {
                bot.ledger.apply(&u);
            }
        }
        let p = &bot.ledger.position;
        let expected_quote = cash0 as i128 + p.cash;
        let expected_base = base0 as i128 + p.qty as i128 * self.lot as i128;
        c.logout();
        let _ = tx.send(Report::Done(Outcome {
            bot: name.clone(),
            user: self.user.0,
            fills: bot.ledger.fills,
            orders: bot.ledger.orders_total,
            position: p.qty,
            quote,
            base,
            expected_quote,
            expected_base,
            reconciled: quote as i128 == expected_quote && base as i128 == expected_base,
            failed: bot.ledger.orders_failed,
            last_failure: bot
                .ledger
                .last_failure
                .as_ref()
                .map(|(c, n)| format!("{c} {n}")),
            risk_events: bot.risk_events.len(),
        }));
        Ok(())
    }

    /// Applies a message about the bot's orders, and sends what the strategy answers. A
    /// refusal that says the server's symbol is not ours (a price inside our band out of its
    /// band, an unknown symbol) stops the bot.
    fn apply(
        &self,
        bot: &mut Bot,
        m: &ServerMsg,
        c: &mut Conn,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        if let ServerMsg::Rejected {
            client_order_id,
            code,
            ..
        } = *m
        {
            if code == RejectCode::UnknownSymbol.code() {
                return Err(self.mismatch("the server refused an order as UNKNOWN_SYMBOL"));
            }
            if code == RejectCode::PriceOutOfBand.code() {
                if let Some(o) = bot.ledger.order(client_order_id) {
                    if self.in_band(o.price) {
                        return Err(self.mismatch(&format!(
                            "the server refused an order at {} as PRICE_OUT_OF_BAND",
                            o.price
                        )));
                    }
                }
            }
        }
        if let Some(u) = update_of(m) {
            bot.on_update(&u, out);
            self.send(c, out)?;
        }
        Ok(())
    }

    fn send(&self, c: &mut Conn, out: &mut Vec<Command>) -> Result<(), String> {
        for cmd in out.drain(..) {
            c.send(&cmd.into()).map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Mass-cancels the bot's orders on its symbol and waits for the reply: how many were
    /// cancelled. Other messages meanwhile go to `other`.
    fn cancel_all(&self, c: &mut Conn, other: &mut dyn FnMut(ServerMsg)) -> Result<u32, String> {
        c.send(
            &Command::MassCancel {
                user: self.user,
                symbol: Some(self.symbol),
                on_disconnect: false,
            }
            .into(),
        )
        .map_err(|e| self.fail(e))?;
        loop {
            let m = c
                .recv()
                .map_err(|e| self.fail(e))?
                .ok_or_else(|| self.fail("no mass-cancel reply"))?;
            match m {
                ServerMsg::MassCancelled { count, .. } => return Ok(count),
                // An account that never had a deposit has no orders (the balances query
                // says what is wrong with it).
                ServerMsg::Rejected {
                    ref_msg_type,
                    code,
                    client_order_id: 0,
                    name,
                    ..
                } if ref_msg_type == msg_type::MASS_CANCEL => {
                    if code == RejectCode::UnknownUser.code() {
                        return Ok(0);
                    }
                    return Err(self.fail(format!(
                        "the mass cancel was refused: {code} {}",
                        ringbook_client::protocol::name32_str(&name)
                    )));
                }
                m => other(m),
            }
        }
    }

    /// The account's `(quote, base)` totals, available + locked; other messages go to `other`.
    fn balances(
        &self,
        c: &mut Conn,
        request: &mut u64,
        other: &mut dyn FnMut(ServerMsg),
    ) -> Result<(u64, u64), String> {
        *request += 1;
        c.send(&ClientMsg::Balances {
            request_id: *request,
            user: self.user,
        })
        .map_err(|e| self.fail(e))?;
        let (mut quote, mut base) = (0, 0);
        loop {
            let Some(m) = c.recv().map_err(|e| self.fail(e))? else {
                return Err(self.fail("no answer to the balances query"));
            };
            match m {
                ServerMsg::Balance {
                    request_id,
                    currency,
                    available,
                    locked,
                    ..
                } if request_id == *request => {
                    if currency == self.quote_ccy.0 {
                        quote = available + locked;
                    } else if currency == self.base_ccy.0 {
                        base = available + locked;
                    }
                }
                ServerMsg::BalancesEnd { request_id, .. } if request_id == *request => {
                    return Ok((quote, base))
                }
                // The engine answers a balances query for an account that never had a deposit
                // with UNKNOWN_USER (and no order id).
                ServerMsg::Rejected {
                    ref_msg_type,
                    code,
                    client_order_id: 0,
                    name,
                    ..
                } if ref_msg_type == msg_type::BALANCES
                    || code == RejectCode::UnknownUser.code() =>
                {
                    return Err(if code == RejectCode::UnknownUser.code() {
                        self.fail(format!(
                            "account {} is not open (no deposits): fund it, or add [funding] with cash or base for this bot",
                            self.cfg.login
                        ))
                    } else {
                        self.fail(format!(
                            "the balances query was refused: {code} {}",
                            ringbook_client::protocol::name32_str(&name)
                        ))
                    });
                }
                m => other(m),
            }
        }
    }
}

/// The bots `ringbook serve --demo` runs against itself: a market maker and two noise takers
/// on BTC-KRW, logged in with the default config's demo accounts and funded by `ops1`, one
/// step every 250 ms until the server stops.
pub const DEMO_CONFIG: &str = r#"
symbol = "BTC-KRW"
interval = "250ms"
steps = 0

[funding]
login = "ops1"
password = "ops1-demo"

[[bot]]
name = "maker"
strategy = "maker"
login = "alice"
password = "alice-demo"
cash = 1000000000
base = 20000
reference = 50000
params = { half_spread = 5, qty = 20, skew = 0.02, max_inventory = 2000 }
[bot.risk]
capital = 1000000000
max_position = 500000000

[[bot]]
name = "taker-b"
strategy = "taker"
login = "bob"
password = "bob-demo"
cash = 1000000000
base = 20000
reference = 50000
params = { seed = 11, qty = 5, max_inventory = 500 }
[bot.risk]
capital = 1000000000

[[bot]]
name = "taker-c"
strategy = "taker"
login = "carol"
password = "carol-demo"
cash = 1000000000
base = 20000
reference = 50000
params = { seed = 29, qty = 3, every = 2, max_inventory = 500 }
[bot.risk]
capital = 1000000000
"#;

/// Starts the demo bots ([`DEMO_CONFIG`]) against the server at `addr` on a thread of their
/// own; they run until the server closes their connections. Failures are logged to stderr.
pub fn demo(addr: SocketAddr, engine: Config) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let cfg: BotsConfig = toml::from_str(DEMO_CONFIG).expect("the demo config is valid");
        let params = cfg
            .bots
            .iter()
            .map(|b| b.params.clone().unwrap_or_default())
            .collect();
        match run(addr, &cfg, &engine, params, |p| {
            if let Progress::Failed(f) = p {
                eprintln!("ringbook serve: demo bot stopped: {}", f.error);
            }
        }) {
            Ok(_) => eprintln!("ringbook serve: demo bots finished"),
            Err(e) => eprintln!("ringbook serve: demo bots stopped: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "[[bot]]\nname = \"mm\"\nstrategy = \"maker\"\nlogin = \"alice\"\npassword = \"alice-demo\"\ncash = 1000\nbase = 10\nreference = 50000\nparams = { half_spread = 3, qty = 1, skew = 0.05, max_inventory = 40 }\n[bot.risk]\ncapital = 0\n";

    /// A bots config: the header, `BOT` edited by `edit`, and `extra` after it.
    fn cfg_text(edit: impl Fn(String) -> String, extra: &str) -> String {
        format!(
            "symbol = \"BTC-KRW\"\ninterval = \"200ms\"\nsteps = 1\n[funding]\nlogin = \"ops1\"\npassword = \"ops1-demo\"\n{}{extra}",
            edit(BOT.to_string())
        )
    }

    fn load_text(dir: &Path, text: &str) -> Result<(BotsConfig, Config, Vec<toml::Table>), String> {
        let p = dir.join("bots.toml");
        std::fs::write(&p, text).unwrap();
        load(&p)
    }

    /// Everything a red-team pass found only after connecting and funding (or never) is
    /// refused by `load`, naming the file and the bot.
    #[test]
    fn load_refuses_what_it_can_check() {
        let dir = tempfile::tempdir().unwrap();
        let other = |login: &str, name: &str| {
            BOT.replace("\"mm\"", &format!("{name:?}"))
                .replace("\"alice\"", &format!("{login:?}"))
        };
        let cases: Vec<(String, &str)> = vec![
            // Two bots on one account: their clock-based order ids collide.
            (
                cfg_text(|b| b, &other("alice", "mm2")),
                "bot mm2: login alice is also bot mm's",
            ),
            (
                cfg_text(|b| b, &other("bob", "mm")),
                "two bots are named \"mm\"",
            ),
            // The wire's NUL-padded 32-byte name: "alice\0" is alice, and a longer login is
            // cut to 32 bytes.
            (
                cfg_text(
                    |b| b,
                    &BOT.replace("\"mm\"", "\"mm2\"")
                        .replace("\"alice\"", "\"alice\\u0000\""),
                ),
                "bot mm2: login \"alice\\0\" contains a NUL byte",
            ),
            (
                cfg_text(|b| b, &other(&"a".repeat(33), "long")),
                "bot long: login \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 33 bytes: a login is at most 32",
            ),
            // A bad risk day was found only inside the bot's thread, unnamed.
            (
                cfg_text(|b| b + "day = \"bogus\"\n", ""),
                "bot mm: risk day: interval \"bogus\"",
            ),
            // Base lots × lot size wrapped silently.
            (
                cfg_text(|b| b.replace("base = 10", "base = 1844674407370956"), ""),
                "bot mm: base 1844674407370956 lots × lot size 10000 overflows",
            ),
            (
                cfg_text(|b| b, &(other("bob", "t") + &other("carol", "u")))
                    .replace("cash = 1000", "cash = 9223372036854775807"),
                "bot u: the bots' cash together overflows",
            ),
            // A reference price outside the band.
            (
                cfg_text(|b| b.replace("reference = 50000", "reference = 100001"), ""),
                "bot mm: reference 100001 is outside BTC-KRW's price band 1..=100000",
            ),
            (
                cfg_text(|b| b.replace("reference = 50000", "reference = -5"), ""),
                "bot mm: reference -5 is outside",
            ),
            (
                cfg_text(
                    |b| b.replace("half_spread = 3", "half_spread = 3, speed = 1"),
                    "",
                ),
                "bot mm: maker parameters: unknown field `speed`",
            ),
            (
                cfg_text(|b| b, "").replace("BTC-KRW", "DOGE-KRW"),
                "no symbol DOGE-KRW in the engine config",
            ),
        ];
        for (text, want) in cases {
            let e = load_text(dir.path(), &text).unwrap_err();
            assert!(e.contains(want), "expected {want:?} in {e:?}");
            assert!(e.contains("bots.toml"), "the file is named: {e}");
        }
        // The unedited config loads.
        load_text(dir.path(), &cfg_text(|b| b, &other("bob", "t"))).unwrap();
    }

    /// A proposal swept on another symbol is not applied to these bots.
    #[test]
    fn a_proposal_swept_on_another_symbol_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = crate::backtest::sweep::tests::grid_proposal();
        p.params = "low = 1900\nhigh = 2100\nlevels = 3\nqty = 3\n[risk]\ncapital = 1\n[backtest]\ncash = 1\nsymbol = \"ETH-KRW\"\n".into();
        p.approve().unwrap();
        p.save(&dir.path().join("p.json")).unwrap();
        let text = cfg_text(
            |b| {
                b.replace("strategy = \"maker\"", "strategy = \"grid\"")
                    .replace(
                        "params = { half_spread = 3, qty = 1, skew = 0.05, max_inventory = 40 }",
                        "proposal = \"p.json\"",
                    )
            },
            "",
        );
        let e = load_text(dir.path(), &text).unwrap_err();
        assert!(
            e.contains(
                "bot mm: p.json: the proposal was swept on ETH-KRW, but the bots trade BTC-KRW"
            ),
            "{e}"
        );
        // The same proposal swept on BTC-KRW is used.
        p.params = p.params.replace("ETH-KRW", "BTC-KRW");
        p.approve().unwrap();
        p.save(&dir.path().join("p.json")).unwrap();
        let (_, _, params) = load_text(dir.path(), &text).unwrap();
        assert_eq!(params[0]["qty"].as_integer(), Some(3));
        assert!(!params[0].contains_key("backtest") && !params[0].contains_key("risk"));
    }

    /// A bots config or engine_config that is a FIFO is refused, not opened (it blocked).
    #[test]
    fn a_fifo_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        if !std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            eprintln!("mkfifo unavailable: skipped");
            return;
        }
        let e = load(&fifo).unwrap_err();
        assert!(e.contains("fifo.toml: not a regular file"), "{e}");
        let text = cfg_text(|b| b, "")
            .replace("steps = 1\n", "steps = 1\nengine_config = \"fifo.toml\"\n");
        let e = load_text(dir.path(), &text).unwrap_err();
        assert!(
            e.contains("engine_config") && e.contains("not a regular file"),
            "{e}"
        );
    }

    /// Balances above `i64::MAX` saturate instead of wrapping into a negative equity.
    #[test]
    fn huge_balances_saturate() {
        assert_eq!(
            starting_point(10_000_000_000_000_000_000, 50, 10),
            (i64::MAX, 5)
        );
        let (cash, lots) = starting_point(u64::MAX, u64::MAX, 1);
        assert_eq!((cash, lots), (i64::MAX, i64::MAX));
        let mut bot = Bot::new(
            strategy::build(
                "taker",
                &toml::from_str("seed = 1\nqty = 1\nmax_inventory = 1").unwrap(),
            )
            .unwrap(),
            RiskLimits {
                capital: 0,
                max_position: 0,
                max_daily_loss: 0,
                max_slippage_bps: 100,
                day: "1d".into(),
            },
            Market {
                tick_size: 1,
                price_min: 1,
                price_max: 100_000,
                max_order_qty: 10,
            },
            UserId(1),
            SymbolId(0),
            1000,
            cash,
            10,
        )
        .unwrap();
        bot.mark = Some(50_000);
        assert_eq!(bot.equity(), i64::MAX);
    }

    #[test]
    fn the_demo_config_is_valid() {
        let cfg: BotsConfig = toml::from_str(DEMO_CONFIG).unwrap();
        assert_eq!(cfg.steps, 0);
        for b in &cfg.bots {
            strategy::build(&b.strategy, b.params.as_ref().unwrap()).unwrap();
        }
        let engine = Config::default();
        assert!(engine.symbol_id(&cfg.symbol).is_some());
        for b in &cfg.bots {
            assert!(
                engine.gateway.accounts.iter().any(|a| a.login == b.login),
                "{}",
                b.login
            );
        }
    }
}
