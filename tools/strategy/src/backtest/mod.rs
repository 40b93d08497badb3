//! Backtests on the real engine: a strategy's orders go into [`Engine`] (single-threaded, risk
//! on, the config's fees) beside the market's own flow, and match against the book that flow
//! builds. See docs/strategies.md, "Backtests".
//!
//! - [`journal`]: a recorded ringbook journal, every command applied again at its time;
//! - [`lobster`]: LOBSTER message files replayed as orders, cancels and executions;
//! - [`synth`]: candle CSVs, with a book synthesised around each candle.
//!
//! The strategy sees candles aggregated from the engine's trade events
//! ([`crate::candle::TradeCandles`], to be replaced by the engine's market-data builder), and
//! its orders are processed between the flow's commands, at the time of the flow command that
//! closed the candle.

pub mod cli;
pub mod journal;
pub mod lobster;
pub mod plot;
pub mod report;
pub mod sweep;
pub mod synth;

use std::path::{Path, PathBuf};

use ringbook_engine::prelude::*;
use serde::Deserialize;

use crate::bot::{Bot, RiskLimits};
use crate::candle::{parse_interval, Candle, TradeCandles};
use crate::ledger::Update;
use crate::strategy::{self, Market};
pub use report::Report;

/// The backtest's own settings (the `[backtest]` table of the params file).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Symbol traded (default: `AAPL-USD` for LOBSTER data, `BTC-KRW` for candles).
    pub symbol: Option<String>,
    /// Candle interval for the strategy (default `1s` for LOBSTER; a candle CSV's own).
    pub interval: Option<String>,
    /// Quote units deposited for the strategy.
    pub cash: u64,
    /// Base lots deposited for the strategy (default 0).
    #[serde(default)]
    pub base: u64,
    /// Seed of the synthesised book's depth (candle data; default 1).
    #[serde(default = "one")]
    pub seed: u64,
    /// Levels of synthesised depth on each side (candle data; default 5).
    #[serde(default = "five")]
    pub depth_levels: u32,
}

fn one() -> u64 {
    1
}
fn five() -> u32 {
    5
}

/// A parsed params file: the strategy's table, `[risk]`, `[backtest]`.
#[derive(Clone, Debug)]
pub struct ParamsFile {
    /// The strategy's own parameters.
    pub strategy: toml::Table,
    /// Risk limits.
    pub risk: RiskLimits,
    /// Backtest settings.
    pub backtest: Settings,
}

impl ParamsFile {
    /// Splits a params table into its three parts.
    pub fn from_table(mut t: toml::Table) -> Result<ParamsFile, String> {
        let risk = t
            .remove("risk")
            .ok_or("the params file has no [risk] table")?;
        let backtest = t
            .remove("backtest")
            .ok_or("the params file has no [backtest] table")?;
        Ok(ParamsFile {
            strategy: t,
            risk: risk.try_into().map_err(|e| format!("[risk]: {e}"))?,
            backtest: backtest
                .try_into()
                .map_err(|e| format!("[backtest]: {e}"))?,
        })
    }

    /// Reads a params file.
    pub fn load(path: &Path) -> Result<(ParamsFile, toml::Table), String> {
        let text = crate::files::read_regular(path)?;
        let t: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((ParamsFile::from_table(t.clone())?, t))
    }
}

/// Where the market data comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A LOBSTER message file (its orderbook file beside it, `message` → `orderbook`).
    Lobster(PathBuf),
    /// A candle CSV.
    Candles(PathBuf),
    /// A ringbook journal directory.
    Journal(PathBuf),
}

impl Source {
    /// A directory is a journal; `.csv` files whose name contains `_message_` are LOBSTER;
    /// other `.csv` files candles.
    pub fn from_path(p: &Path) -> Result<Source, String> {
        if p.is_dir() {
            return Ok(Source::Journal(p.to_path_buf()));
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".csv") {
            return Err(format!(
                "{}: --data must be a journal directory, a LOBSTER message file or a candle CSV (.csv)",
                p.display()
            ));
        }
        Ok(if name.contains("_message_") {
            Source::Lobster(p.to_path_buf())
        } else {
            Source::Candles(p.to_path_buf())
        })
    }

    fn default_symbol(&self) -> &'static str {
        match self {
            Source::Lobster(_) => "AAPL-USD",
            Source::Candles(_) | Source::Journal(_) => "BTC-KRW",
        }
    }
}

/// The symbol a backtest of `data` trades when `[backtest]` names none.
pub(crate) fn default_symbol_of(data: &Path) -> &'static str {
    Source::from_path(data).map_or("BTC-KRW", |s| s.default_symbol())
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Run {
    /// Strategy name.
    pub strategy: String,
    /// Parameters.
    pub params: ParamsFile,
    /// Data.
    pub source: Source,
    /// Engine configuration.
    pub config: Config,
    /// Only candles opening in `[from, to)` reach the strategy (ms); at `to` it is flattened.
    pub window: Option<(u64, u64)>,
}

/// The strategy's user in the backtest engine (for a journal: `users_max − 1` instead).
pub const STRATEGY_USER: UserId = UserId(10);

/// The simulation: engine, bot, candle aggregator, and the bookkeeping of a run.
pub struct Sim {
    /// The engine.
    pub engine: Engine,
    /// The bot.
    pub bot: Bot,
    symbol: SymbolId,
    candles: TradeCandles,
    tick: u64,
    now: u64,
    queue: Vec<Command>,
    events: Vec<Event>,
    pending: Vec<Candle>,
    window: (u64, u64),
    closed_window: bool,
    /// The time of the market's last flow command (`None`: none yet).
    flow_last: Option<u64>,
    /// When the strategy's orders cascaded past [`CASCADE_MAX`] commands in one step: the
    /// run stops there and fails ([`run`]) instead of panicking (params reach it: a grid of
    /// 150 000 levels did, a red-team finding).
    cascade: Option<u64>,
    /// Commands processed by the engine.
    pub commands: u64,
    /// `(time, equity)` at every candle the strategy saw, and the start.
    pub equity: Vec<(u64, i64)>,
    /// Candles the strategy saw, and those with a position open at their close.
    pub candles_seen: u64,
    /// Candles with a position.
    pub candles_exposed: u64,
    /// Trades in the engine (the flow's and the strategy's).
    pub trades: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("bot", &self.bot)
            .field("commands", &self.commands)
            .finish()
    }
}

/// The most commands one step may cascade into (a guard against a strategy that loops).
const CASCADE_MAX: usize = 100_000;

impl Sim {
    /// Builds the engine, funds the strategy, and the bot.
    pub fn new(run: &Run, interval_ms: u64) -> Result<Sim, String> {
        let b = &run.params.backtest;
        let name = b
            .symbol
            .clone()
            .unwrap_or_else(|| run.source.default_symbol().to_string());
        let mut config = run.config.clone();
        if matches!(run.source, Source::Lobster(_)) {
            // LOBSTER's order ids become client order ids: unique while live, not increasing
            // per user, so the replay uses the engine's `unique_live` rule (as `ringbook lobster`).
            config.engine.client_order_ids = ringbook_engine::config::ClientOrderIdRule::UniqueLive;
        }
        let config = &config;
        let symbol = config
            .symbol_id(&name)
            .ok_or_else(|| format!("the config has no symbol {name}"))?;
        let sc = config.symbol(symbol).expect("id from the config");
        let (base, quote) = (
            config.currency_id(&sc.base).expect("validated config"),
            config.currency_id(&sc.quote).expect("validated config"),
        );
        let market = Market::of(sc);
        let strategy = strategy::build(&run.strategy, &run.params.strategy)?;
        let journal = matches!(run.source, Source::Journal(_));
        let me = if journal {
            UserId(config.capacity.users_max - 1)
        } else {
            STRATEGY_USER
        };
        let bot = Bot::new(
            strategy,
            run.params.risk.clone(),
            market,
            me,
            symbol,
            interval_ms,
            b.cash as i64,
            b.base as i64,
        )?;
        let mut bot = bot;
        bot.ledger.fill_log = Some(Vec::new());
        let mut engine = Engine::new(config).map_err(|e| e.to_string())?;
        let mut deposit = |user, currency, amount| -> Result<(), String> {
            if amount == 0 {
                return Ok(());
            }
            let mut bad = None;
            engine.process(
                &Command::Deposit {
                    user,
                    currency,
                    amount,
                },
                &mut |e: &Event| {
                    if let Event::Rejected { code, .. } = e {
                        bad = Some(*code);
                    }
                },
            );
            bad.map_or(Ok(()), |c| {
                Err(format!("deposit for user {user} refused: {}", c.name()))
            })
        };
        deposit(me, quote, b.cash)?;
        // Checked as the bots check it: `base × lot_size` wrapped round to a few satoshi (a
        // red-team finding).
        let base_units = b.base.checked_mul(sc.lot_size).ok_or_else(|| {
            format!(
                "[backtest] base {} lots × lot size {} overflows 64 bits of {}",
                b.base, sc.lot_size, sc.base
            )
        })?;
        deposit(me, base, base_units)?;
        // The market's own participants: funded far beyond anything the data can spend (a
        // journal's users have their recorded deposits).
        if !journal {
            for u in FLOW_USERS {
                deposit(u, quote, FLOW_FUNDS)?;
                deposit(u, base, FLOW_FUNDS)?;
            }
        }
        Ok(Sim {
            engine,
            bot,
            symbol,
            candles: TradeCandles::new(interval_ms),
            tick: sc.tick_size,
            now: 0,
            queue: Vec::new(),
            events: Vec::new(),
            pending: Vec::new(),
            window: run.window.unwrap_or((0, u64::MAX)),
            closed_window: false,
            flow_last: None,
            cascade: None,
            commands: 0,
            equity: Vec::new(),
            candles_seen: 0,
            candles_exposed: 0,
            trades: 0,
        })
    }

    /// The symbol traded.
    pub fn symbol(&self) -> SymbolId {
        self.symbol
    }

    /// Time moves to `ts` (ms): candles that ended before it are delivered.
    pub fn advance(&mut self, ts: u64) {
        if self.cascade.is_some() {
            return;
        }
        self.now = self.now.max(ts);
        if let Some(c) = self.candles.on_time(self.now) {
            self.pending.push(c);
        }
        self.deliver();
    }

    /// A command of the market's flow at time `ts`; returns its events.
    pub fn flow(&mut self, ts: u64, cmd: &Command) -> &[Event] {
        if self.cascade.is_some() {
            self.events.clear();
            return &self.events;
        }
        self.advance(ts);
        self.flow_last = Some(self.now);
        self.exec(cmd);
        let first = std::mem::take(&mut self.events);
        self.drain();
        self.events = first;
        self.deliver();
        &self.events
    }

    /// Processes one command and routes its events (no cascade).
    fn exec(&mut self, cmd: &Command) {
        self.events.clear();
        self.commands += 1;
        let events = &mut self.events;
        self.engine.process(cmd, &mut |e: &Event| events.push(*e));
        let mut updates: Vec<Update> = Vec::new();
        for e in &self.events {
            match e {
                Event::Trade(t) => {
                    self.trades += 1;
                    if let Some(c) = self
                        .candles
                        .on_trade(self.now, t.price.0, t.qty.0, self.tick)
                    {
                        self.pending.push(c);
                    }
                    self.bot.trade_updates(t, |u| updates.push(u));
                }
                e => updates.extend(self.bot.update_of(e)),
            }
        }
        let mut out = std::mem::take(&mut self.queue);
        self.bot.ledger.now = self.now;
        for u in &updates {
            self.bot.on_update(u, &mut out);
        }
        self.queue = out;
    }

    /// Processes the bot's queued commands and whatever they cause.
    fn drain(&mut self) {
        let mut n = 0;
        while !self.queue.is_empty() {
            let cmds = std::mem::take(&mut self.queue);
            for c in &cmds {
                self.exec(c);
                n += 1;
                if n >= CASCADE_MAX {
                    self.cascade = Some(self.now);
                    self.queue.clear();
                    return;
                }
            }
        }
    }

    /// Hands closed candles to the bot.
    fn deliver(&mut self) {
        while !self.pending.is_empty() {
            let candles = std::mem::take(&mut self.pending);
            for c in candles {
                self.on_candle(&c);
            }
        }
    }

    fn on_candle(&mut self, c: &Candle) {
        if self.cascade.is_some() {
            return;
        }
        let (from, to) = self.window;
        if c.open_time < from || self.closed_window {
            return;
        }
        let ts = c.open_time + self.candles.interval_ms();
        let mut out = std::mem::take(&mut self.queue);
        if c.open_time >= to {
            self.closed_window = true;
            self.bot.mark = Some(c.open);
            self.bot.flatten(&mut out);
            self.queue = out;
            self.drain();
            self.record(ts);
            return;
        }
        let top = (
            self.engine.best_bid(self.symbol).map(|(p, _)| p.0),
            self.engine.best_ask(self.symbol).map(|(p, _)| p.0),
        );
        self.bot.set_top(top.0, top.1);
        if self.equity.is_empty() {
            self.bot.mark = Some(c.open);
            self.equity.push((c.open_time, self.bot.equity()));
        }
        self.bot.on_candle(ts, c, &mut out);
        self.candles_seen += 1;
        if self.bot.ledger.position.qty != 0 {
            self.candles_exposed += 1;
        }
        self.queue = out;
        self.drain();
        // After the orders the candle caused: what filled at once is in this point, so the
        // curve's last point is the final equity (recorded before, the fills at the data's
        // last candle were in neither: a red-team finding).
        self.record(ts);
        self.bot.ledger.forget_finished();
    }

    fn record(&mut self, ts: u64) {
        let e = self.bot.equity();
        match self.equity.last_mut() {
            Some(last) if last.0 == ts => last.1 = e,
            _ => self.equity.push((ts, e)),
        }
    }

    /// The end of the data: the last candle is delivered — unless it opened after the
    /// market's last flow command. Such a candle holds only the strategy's own fills against
    /// what the flow left resting (its orders on a CSV's last candle meet the synthetic book
    /// at the data's end): not a market candle. Delivered, the strategy traded on it again (a
    /// red-team finding: one CSV row gave two candles and a round trip after the data).
    pub fn finish(&mut self) {
        if let Some(c) = self.candles.finish() {
            if self.flow_last.is_some_and(|t| c.open_time <= t) {
                self.pending.push(c);
            }
        }
        self.deliver();
    }

    /// The strategy's engine balances `(quote, base)` in minimal units, locks included.
    pub fn balances(&self) -> (u64, u64) {
        let config = self.engine.config();
        let sc = config.symbol(self.symbol).expect("configured");
        let total = |code: &str| {
            let b = self.engine.balance(
                self.bot.user(),
                config.currency_id(code).expect("configured"),
            );
            b.available + b.locked
        };
        (total(&sc.quote), total(&sc.base))
    }
}

/// The market's own participants in a backtest engine.
pub const FLOW_USERS: [UserId; 4] = [UserId(1), UserId(2), UserId(3), UserId(4)];
/// What each of them is given of each currency.
const FLOW_FUNDS: u64 = 1 << 50;

/// Runs a backtest and reports.
pub fn run(run: &Run) -> Result<Report, String> {
    let interval = match (&run.source, &run.params.backtest.interval) {
        (_, Some(i)) => parse_interval(i)?,
        (Source::Lobster(_) | Source::Journal(_), None) => 1_000,
        (Source::Candles(p), None) => synth::csv_interval(p)?,
    };
    let mut sim = Sim::new(run, interval)?;
    let flow = match &run.source {
        Source::Lobster(p) => lobster::replay(&mut sim, p)?,
        Source::Candles(p) => synth::replay(&mut sim, p, &run.params.backtest)?,
        Source::Journal(p) => journal::replay(&mut sim, p)?,
    };
    sim.finish();
    if let Some(t) = sim.cascade {
        return Err(format!(
            "at {t} ms the strategy's orders cascaded past {CASCADE_MAX} engine commands in one \
             step (orders causing orders): its parameters ask for more than a backtest step \
             allows (a grid's levels, an order size); the run stops there"
        ));
    }
    Ok(Report::new(run, &sim, interval, flow))
}

/// The first and last time (ms) of a source's data.
pub fn time_span(source: &Source) -> Result<(u64, u64), String> {
    match source {
        Source::Lobster(p) => lobster::time_span(p),
        Source::Candles(p) => synth::time_span(p),
        Source::Journal(p) => journal::time_span(p),
    }
}
