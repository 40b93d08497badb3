//! The single-threaded engine core: the pipeline's stages applied in order on one thread.
//!
//! ```text
//! Command ─▶ R: risk (validate, check funds, lock) ─▶ M: matching ─▶ S: settlement ─▶ EventSink
//! ```
//!
//! R is `risk::stage` (`risk/stage.rs`); M is `matching::stage` over the [`Matcher`]; S is
//! [`crate::settlement`], which consumes M's events as they are produced (moving funds on
//! trades, refunding locks on cancels) and passes them on. R hands M and S a `Plan`
//! (`plan.rs`). This file only composes the three.
//! Every way of running ringbook — embedded, threaded, replayed — goes through these stage
//! types, which is what makes their outputs identical. With [`RiskMode::Off`] R and S are
//! skipped and account commands are rejected (`ACCOUNTS_DISABLED`): the book alone, for
//! simulators and backtests.

use crate::book::{BookSection, OrderView};
use crate::command::Command;
use crate::config::{Config, ConfigError};
use crate::event::EventSink;
use crate::hash::{StateHash, StateHasher};
use crate::matching::stage::match_stage;
use crate::matching::Matcher;
use crate::plan::Plan;
use crate::risk::accounts::{Accounts, Balance};
use crate::risk::stage::risk_stage;
use crate::risk::RiskSpec;
use crate::settlement::{balances_reply, settlement};
use crate::types::{ClientOrderId, CurrencyId, OperatorId, Price, Qty, Side, SymbolId, UserId};

/// Whether the risk and settlement stages run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RiskMode {
    /// Pre-trade checks, locks, settlement and fees (the default).
    #[default]
    On,
    /// The book alone: no accounts, no locks, no settlement.
    Off,
}

/// Deterministic exchange core: apply commands, get events, hash the state.
///
/// ```
/// use ringbook_engine::prelude::*;
///
/// let config = Config::default();
/// let (btc, krw) = (SymbolId(0), config.currency_id("KRW").unwrap());
/// let mut engine = Engine::new(&config).unwrap();
/// let mut events = Vec::new();
/// let mut sink = |e: &Event| events.push(*e);
/// engine.process(&Command::Deposit { user: UserId(1), currency: config.currency_id("BTC").unwrap(), amount: 50_000 }, &mut sink);
/// engine.process(&Command::Deposit { user: UserId(2), currency: krw, amount: 1_000_000 }, &mut sink);
/// engine.process(&Command::NewOrder(NewOrder::limit(UserId(1), btc, ClientOrderId(1), Side::Sell, Price(15_000), Qty(5))), &mut sink);
/// engine.process(&Command::NewOrder(NewOrder::limit(UserId(2), btc, ClientOrderId(1), Side::Buy, Price(15_100), Qty(3))), &mut sink);
/// assert!(events.iter().any(|e| matches!(e, Event::Trade(t) if t.price == Price(15_000) && t.qty == Qty(3))));
/// assert_eq!(engine.best_ask(btc), Some((Price(15_000), Qty(2))));
/// // The buyer paid 45 000 KRW plus a 45 KRW taker fee.
/// assert_eq!(engine.balance(UserId(2), krw).available, 1_000_000 - 45_045);
/// ```
#[derive(Debug)]
pub struct Engine {
    config: Config,
    // `pub(crate)` for the split pipeline (`crate::pipeline::shared`), whose stage threads
    // reach these fields through a raw pointer, each only the fields its stage touches.
    pub(crate) risk: RiskMode,
    pub(crate) specs: Vec<RiskSpec>,
    pub(crate) accounts: Accounts,
    pub(crate) matcher: Matcher,
}

impl Engine {
    /// An engine with risk on. Validates `config` and allocates every pool and book it sizes.
    pub fn new(config: &Config) -> Result<Engine, ConfigError> {
        Engine::with_risk(config, RiskMode::On)
    }

    /// An engine with the given risk mode.
    pub fn with_risk(config: &Config, risk: RiskMode) -> Result<Engine, ConfigError> {
        config.validate()?;
        // Refused here rather than aborted on in an allocation below (or killed while filling
        // the tables): docs/configuration.md, "Memory".
        crate::memory::check(config, &crate::memory::Copies::engine())?;
        let operators: Vec<OperatorId> = config
            .accounts
            .operators
            .iter()
            .map(|&o| OperatorId(o))
            .collect();
        Ok(Engine {
            config: config.clone(),
            risk,
            specs: RiskSpec::all(config),
            accounts: Accounts::new(
                config.capacity.users_max,
                config.currencies.len(),
                (
                    config.capacity.withdrawals_max,
                    config.capacity.withdrawals_per_user,
                ),
                &operators,
            ),
            matcher: Matcher::new(config),
        })
    }

    /// A hint for the command after the one about to be processed: starts loading the cache
    /// lines `cmd` will need first (the order a cancel or amend by engine order id names), so
    /// that the miss overlaps the current command's work instead of stalling the next. It
    /// reads nothing the results depend on and changes no state: calling it or not, for any
    /// command, leaves every event and `state_hash()` as they were. The pipeline calls it for
    /// the next command of each batch (docs/embedding.md, "Prefetching the next command").
    #[inline]
    pub fn prefetch(&self, cmd: &Command) {
        self.matcher.prefetch(cmd);
    }

    /// Applies one command at the current engine time ([`Engine::now_ns`]; see
    /// [`Engine::process_at`] to stamp it); every consequence goes to `sink`, in order.
    ///
    /// The three stages, composed: R (`risk_stage`) answers what it can itself and locks
    /// funds, M (`match_stage`) matches, and S (`settlement`) settles M's events as they
    /// are produced. The threaded pipeline (`crate::pipeline`) calls the same three functions,
    /// on one thread or on three.
    #[inline]
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        let plan = risk_stage(
            self.risk,
            &self.specs,
            &mut self.accounts,
            &self.matcher,
            self.matcher.now_ns(),
            cmd,
            sink,
        );
        if self.risk == RiskMode::Off {
            return match_stage(&mut self.matcher, cmd, plan, sink);
        }
        // With risk on S settles whatever M emits, whatever the plan: M expires due orders
        // (docs/matching.md, "Expiry") before any command, and their locks come back.
        let mut settle = settlement(&mut self.accounts, &self.specs, plan, sink);
        match_stage(&mut self.matcher, cmd, plan, &mut settle);
        if let Plan::Balances(user) = plan {
            balances_reply(&self.accounts, user, sink);
        }
    }

    /// Applies one command stamped `ts_ns` (Unix nanoseconds): engine time moves to `ts_ns`
    /// first (or stays where it is if `ts_ns` is earlier: time never goes backwards), then
    /// [`Engine::process`]. Every way of running ringbook stamps commands before R and
    /// journals the stamp, so replay reproduces the time exactly (docs/matching.md, "Engine
    /// time").
    #[inline]
    pub fn process_at<S: EventSink + ?Sized>(&mut self, ts_ns: u64, cmd: &Command, sink: &mut S) {
        self.matcher.advance(ts_ns);
        self.process(cmd, sink);
    }

    // ---------------------------------------------------------------- queries

    /// Engine time: the latest command timestamp processed (0 before any), Unix nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.matcher.now_ns()
    }

    /// The soonest expiry time of a live GTD or DAY order, Unix nanoseconds (`u64::MAX`: none
    /// expires). The first command stamped at or after it expires that order
    /// (docs/matching.md, "Expiry"); a server with no traffic sends a `Tick` then.
    pub fn next_expiry_ns(&self) -> u64 {
        self.matcher.next_expiry_ns()
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether risk and settlement run.
    pub fn risk_mode(&self) -> RiskMode {
        self.risk
    }

    /// The matching stage, for queries.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The accounts, for queries.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// A user's balance of one currency.
    pub fn balance(&self, user: UserId, currency: CurrencyId) -> Balance {
        self.accounts.balance(user, currency)
    }

    /// What an order locks (currency and amount), by the same rule R applies. `None` for an
    /// unknown symbol, or an amount beyond 64 bits: a view no live order has, or an order
    /// placed with risk off ([`RiskMode::Off`] does not check what an order would lock).
    pub fn order_lock(&self, order: &OrderView) -> Option<(CurrencyId, u64)> {
        self.specs
            .get(order.symbol.0 as usize)?
            .lock(order.side, order.price, order.leaves_qty)
    }

    /// A live order by its owner's client order id (`None`: no such live order, or an unknown
    /// user).
    pub fn order(&self, user: UserId, coid: ClientOrderId) -> Option<OrderView> {
        self.matcher.order(user, coid)
    }

    /// Level-2 depth `(price, visible qty)`, best first (nothing for an unknown symbol).
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        f: impl FnMut(Price, Qty),
    ) {
        self.matcher.depth(symbol, side, levels_max, f)
    }

    /// Every live order of a symbol in canonical order (none for an unknown symbol).
    pub fn for_each_order(&self, symbol: SymbolId, f: impl FnMut(BookSection, &OrderView)) {
        self.matcher.for_each_order(symbol, f)
    }

    /// Best bid (`None`: no bids, or an unknown symbol).
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.matcher.best_bid(symbol)
    }

    /// Best ask (`None`: no asks, or an unknown symbol).
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.matcher.best_ask(symbol)
    }

    /// Digest of the whole state — the books, then (with risk on) the accounts: equal states,
    /// equal hashes, across runs and implementations. With risk off it is the book's hash.
    pub fn state_hash(&self) -> StateHash {
        let mut h = StateHasher::default();
        self.matcher.hash_into(&mut h);
        if self.risk == RiskMode::On {
            self.accounts.hash_into(&mut h);
        }
        h.finish()
    }
}

impl Engine {
    /// Snapshot support ([`crate::snapshot`]): an engine over accounts and matching state that
    /// `crate::snapshot` restored and validated against `config` (already validated).
    pub(crate) fn from_parts(
        config: &Config,
        risk: RiskMode,
        accounts: Accounts,
        matcher: Matcher,
    ) -> Engine {
        Engine {
            config: config.clone(),
            risk,
            specs: RiskSpec::all(config),
            accounts,
            matcher,
        }
    }
}
