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
//! 1. Every bot logs in (cancel-on-disconnect on) and learns its user id.
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
//! outcome per bot. The exit status is 1 if any bot failed to reconcile.
//!
//! Client order ids start from the wall clock in nanoseconds (as `ringbook loadgen`'s do),
//! because the engine requires each user's ids to increase (its high-water mark,
//! docs/matching.md "Client order ids"), and the mark outlives one run of the bots. Sessions
//! are reused between runs, so messages the server retransmits from an earlier run are skipped.
//!
//! # Proposals
//!
//! A bot may take its parameters from a sweep's proposal (`proposal = "FILE"`); it is used only
//! if a person approved it (`ringbook bots approve FILE`) and it was not edited afterwards.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::{Client, ClientError, Role};
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
    /// default when omitted. A relative path is relative to this file.
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
}

const WAIT: Duration = Duration::from_secs(10);

fn client_err(what: &str) -> impl Fn(ClientError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Loads the configuration and resolves each bot's parameters (proposals must be approved).
pub fn load(path: &Path) -> Result<(BotsConfig, Config, Vec<toml::Table>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let c: BotsConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let engine = match &c.engine_config {
        Some(p) => Config::load(&dir.join(p)).map_err(|e| format!("{}: {e}", p.display()))?,
        None => Config::default(),
    };
    if c.bots.is_empty() {
        return Err(format!("{}: no [[bot]]", path.display()));
    }
    let mut params = Vec::new();
    for b in &c.bots {
        let p = match (&b.params, &b.proposal) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => {
                let prop = Proposal::load(&dir.join(f))?;
                if prop.strategy != b.strategy {
                    return Err(format!(
                        "bot {}: the proposal is for {}, not {}",
                        b.name, prop.strategy, b.strategy
                    ));
                }
                let mut t = prop
                    .approved_params()
                    .map_err(|e| format!("bot {}: {}: {e}", b.name, f.display()))?;
                t.remove("risk");
                t.remove("backtest");
                t
            }
            _ => {
                return Err(format!(
                    "bot {}: give exactly one of params and proposal",
                    b.name
                ))
            }
        };
        // Fail before connecting if the parameters are wrong.
        strategy::build(&b.strategy, &p).map_err(|e| format!("bot {}: {e}", b.name))?;
        params.push(p);
    }
    Ok((c, engine, params))
}

/// `ringbook bots`: runs every bot; prints statuses and outcomes; `Ok(true)` if all reconcile.
pub fn main(addr: SocketAddr, path: &Path, steps: Option<u64>, json: bool) -> Result<bool, String> {
    let (mut cfg, engine, params) = load(path)?;
    if let Some(s) = steps {
        cfg.steps = s;
    }
    let mut table: BTreeMap<String, Status> = BTreeMap::new();
    let outcomes = run(addr, &cfg, &engine, params, |s| {
        if json {
            println!("{}", serde_json::to_string(s).expect("plain data"));
        } else {
            table.insert(s.bot.clone(), s.clone());
            print_table(&table);
        }
    })?;
    let mut ok = true;
    for o in &outcomes {
        ok &= o.reconciled;
        if json {
            println!("{}", serde_json::to_string(o).expect("plain data"));
        } else {
            println!(
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
            );
        }
    }
    Ok(ok)
}

fn print_table(t: &BTreeMap<String, Status>) {
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
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
}

/// Runs the bots; `status` is called on the calling thread as statuses arrive.
pub fn run(
    addr: SocketAddr,
    cfg: &BotsConfig,
    engine: &Config,
    params: Vec<toml::Table>,
    mut status: impl FnMut(&Status),
) -> Result<Vec<Outcome>, String> {
    let interval = Duration::from_millis(parse_interval(&cfg.interval)?);
    let symbol = engine
        .symbol_id(&cfg.symbol)
        .ok_or_else(|| format!("no symbol {} in the engine config", cfg.symbol))?;
    let sc = engine.symbol(symbol).expect("configured").clone();
    let (base_ccy, quote_ccy) = (
        engine.currency_id(&sc.base).expect("validated"),
        engine.currency_id(&sc.quote).expect("validated"),
    );
    let market = Market {
        tick_size: sc.tick_size,
        price_min: sc.price_min,
        price_max: sc.price_max,
        max_order_qty: sc.max_order_qty,
    };

    // 1. Log in.
    let mut clients = Vec::new();
    for (i, b) in cfg.bots.iter().enumerate() {
        let mut c = Client::connect(addr).map_err(client_err("connect"))?;
        let info = c
            .login(&b.login, &b.password, 100 + i as u32, true)
            .map_err(client_err(&format!("bot {} login", b.name)))?;
        let Role::User(user) = info.role else {
            return Err(format!(
                "bot {}: {} is not a user login ({:?})",
                b.name, b.login, info.role
            ));
        };
        clients.push((c, UserId(user), info.last_seq));
    }
    // 2. Fund.
    if let Some(f) = &cfg.funding {
        let mut ops = Client::connect(addr).map_err(client_err("connect"))?;
        let info = ops
            .login(&f.login, &f.password, 99, false)
            .map_err(client_err("funding login"))?;
        if !matches!(info.role, Role::Operator(_)) {
            return Err(format!("funding login {} is not an operator", f.login));
        }
        for (b, (_, user, _)) in cfg.bots.iter().zip(&clients) {
            for (currency, amount) in [(quote_ccy, b.cash), (base_ccy, b.base * sc.lot_size)] {
                if amount == 0 {
                    continue;
                }
                ops.send(
                    &Command::Deposit {
                        user: *user,
                        currency,
                        amount,
                    }
                    .into(),
                )
                .map_err(client_err("deposit"))?;
                loop {
                    match recv(&mut ops, info.last_seq).map_err(client_err("deposit"))? {
                        Some(ServerMsg::Deposited {
                            user: u,
                            currency: c,
                            ..
                        }) if u == user.0 && c == currency.0 => break,
                        Some(ServerMsg::Rejected { code, name, .. }) => {
                            return Err(format!(
                                "deposit for {} refused: {code} {}",
                                b.name,
                                ringbook_client::protocol::name32_str(&name)
                            ))
                        }
                        Some(_) => {}
                        None => return Err(format!("no answer to the deposit for {}", b.name)),
                    }
                }
            }
        }
        let _ = ops.logout();
    }
    // 3–5. Each bot on its own thread.
    let (tx, rx) = mpsc::channel();
    let outcomes = std::thread::scope(|s| -> Result<Vec<Outcome>, String> {
        let mut handles = Vec::new();
        for ((b, p), (client, user, replayed)) in cfg.bots.iter().zip(params).zip(clients) {
            let tx = tx.clone();
            let ctx = Live {
                cfg: b.clone(),
                params: p,
                market,
                symbol,
                user,
                quote_ccy,
                base_ccy,
                lot: sc.lot_size,
                interval,
                steps: cfg.steps,
                replayed,
            };
            handles.push(s.spawn(move || ctx.run(client, &tx)));
        }
        drop(tx);
        let mut outcomes = Vec::new();
        for r in rx {
            match r {
                Report::Step(st) => status(&st),
                Report::Done(o) => outcomes.push(o),
            }
        }
        for h in handles {
            h.join()
                .map_err(|_| "a bot thread panicked".to_string())??;
        }
        Ok(outcomes)
    })?;
    let mut outcomes = outcomes;
    outcomes.sort_by(|a, b| a.bot.cmp(&b.bot));
    Ok(outcomes)
}

/// One bot's run.
struct Live {
    cfg: BotConfig,
    params: toml::Table,
    market: Market,
    symbol: SymbolId,
    user: UserId,
    quote_ccy: CurrencyId,
    base_ccy: CurrencyId,
    lot: u64,
    interval: Duration,
    steps: u64,
    /// The session's last sequence number at login: messages up to it are retransmissions of
    /// an earlier run's, not this run's.
    replayed: u64,
}

/// The next message that is not a retransmission (sequence number ≤ `replayed`), or `None`
/// when nothing arrives within `timeout`.
fn recv_within(
    c: &mut Client,
    replayed: u64,
    timeout: Duration,
) -> Result<Option<ServerMsg>, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match c.recv_timeout(left)? {
            Some(m) if m.seq() != 0 && m.seq() <= replayed => continue,
            other => return Ok(other),
        }
    }
}

fn recv(c: &mut Client, replayed: u64) -> Result<Option<ServerMsg>, ClientError> {
    recv_within(c, replayed, WAIT)
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

impl Live {
    fn run(self, mut c: Client, tx: &mpsc::Sender<Report>) -> Result<(), String> {
        let name = self.cfg.name.clone();
        let err = |e: ClientError| format!("bot {name}: {e}");
        let mut request = 0u64;
        let (cash0, base0) = self
            .balances(&mut c, &mut request, &mut |_| {})
            .map_err(err)?;
        let strategy = strategy::build(&self.cfg.strategy, &self.params)?;
        let mut bot = Bot::new(
            strategy,
            self.cfg.risk.clone(),
            self.market,
            self.user,
            self.symbol,
            self.interval.as_millis() as u64,
            cash0 as i64,
            (base0 / self.lot) as i64,
        )?;
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
            .map_err(err)?;
            let (mut bid, mut ask) = (None, None);
            loop {
                let m = recv(&mut c, self.replayed)
                    .map_err(err)?
                    .ok_or_else(|| format!("bot {name}: no book reply"))?;
                match m {
                    ServerMsg::BookLevels {
                        request_id,
                        side,
                        count,
                        levels,
                        ..
                    } if request_id == request && count > 0 => {
                        if side == Side::Buy {
                            bid = Some(levels[0].0);
                        } else {
                            ask = Some(levels[0].0);
                        }
                    }
                    ServerMsg::BookEnd { request_id, .. } if request_id == request => break,
                    m => self.apply(&mut bot, &m, &mut c, &mut out).map_err(err)?,
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
            self.send(&mut c, &mut out).map_err(err)?;
            // Wait out the interval, applying updates.
            loop {
                let left = self.interval.saturating_sub(step_start.elapsed());
                if left.is_zero() {
                    break;
                }
                if let Some(m) = recv_within(&mut c, self.replayed, left).map_err(err)? {
                    self.apply(&mut bot, &m, &mut c, &mut out).map_err(err)?;
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
                realised: p.realised as i64,
                unrealised: p.unrealised(price, self.market.tick_size) as i64,
                fees: p.fees as u64,
                orders: l.working().count(),
                fills: l.fills,
                halted: bot.halted(),
            }));
            bot.ledger.forget_finished();
        }
        // Cancel everything, wait for it, and reconcile.
        c.send(
            &Command::MassCancel {
                user: self.user,
                symbol: Some(self.symbol),
                on_disconnect: false,
            }
            .into(),
        )
        .map_err(err)?;
        loop {
            let m = recv(&mut c, self.replayed)
                .map_err(err)?
                .ok_or_else(|| format!("bot {name}: no mass-cancel reply"))?;
            if matches!(m, ServerMsg::MassCancelled { .. }) {
                break;
            }
            // The ledger only: the strategy sends nothing more.
            if let Some(u) = update_of(&m) {
                bot.ledger.apply(&u);
            }
        }
        let mut stray = Vec::new();
        let (quote, base) = self
            .balances(&mut c, &mut request, &mut |m| stray.push(m))
            .map_err(err)?;
        for m in stray {
            if let Some(u) = update_of(&m) {
                bot.ledger.apply(&u);
            }
        }
        let p = &bot.ledger.position;
        let expected_quote = cash0 as i128 + p.cash;
        let expected_base = base0 as i128 + p.qty as i128 * self.lot as i128;
        let _ = c.logout();
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

    fn apply(
        &self,
        bot: &mut Bot,
        m: &ServerMsg,
        c: &mut Client,
        out: &mut Vec<Command>,
    ) -> Result<(), ClientError> {
        if let Some(u) = update_of(m) {
            bot.on_update(&u, out);
            self.send(c, out)?;
        }
        Ok(())
    }

    fn send(&self, c: &mut Client, out: &mut Vec<Command>) -> Result<(), ClientError> {
        for cmd in out.drain(..) {
            c.send(&cmd.into())?;
        }
        Ok(())
    }

    /// The account's `(quote, base)` totals, available + locked; other messages go to `other`.
    fn balances(
        &self,
        c: &mut Client,
        request: &mut u64,
        other: &mut dyn FnMut(ServerMsg),
    ) -> Result<(u64, u64), ClientError> {
        *request += 1;
        c.send(&ClientMsg::Balances {
            request_id: *request,
            user: self.user,
        })?;
        let (mut quote, mut base) = (0, 0);
        loop {
            let Some(m) = recv(c, self.replayed)? else {
                return Err(ClientError::Closed);
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
        match run(addr, &cfg, &engine, params, |_| {}) {
            Ok(_) => eprintln!("ringbook serve: demo bots finished"),
            Err(e) => eprintln!("ringbook serve: demo bots stopped: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
