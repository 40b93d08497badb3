//! The single-threaded engine core: the pipeline's stages applied in order on one thread.
//!
//! ```text
//! Command ─▶ R: risk (validate, check funds, lock) ─▶ M: matching ─▶ S: settlement ─▶ EventSink
//! ```
//!
//! R is [`crate::risk`]; M is [`Matcher`]; S is [`crate::settlement`], which consumes M's events
//! as they are produced (moving funds on trades, refunding locks on cancels) and passes them on.
//! Every way of running ringbook — embedded, threaded, replayed — goes through these stage
//! types, which is what makes their outputs identical. With [`RiskMode::Off`] R and S are
//! skipped and account commands are rejected (`ACCOUNTS_DISABLED`): the book alone, for
//! simulators and backtests.

use crate::book::{BookSection, OrderView};
use crate::codes::RejectCode;
use crate::command::{Command, NewOrder, Query};
use crate::config::{Config, ConfigError};
use crate::event::{Event, EventSink};
use crate::hash::{StateHash, StateHasher};
use crate::matching::{Matcher, OrderRef};
use crate::risk::accounts::{Accounts, Approval, Balance};
use crate::risk::RiskSpec;
use crate::settlement::Settlement;
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, Price, Qty, Side, SymbolId, UserId, WithdrawalId,
};

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

#[inline]
fn reject(user: UserId, client_order_id: ClientOrderId, code: RejectCode) -> Event {
    Event::Rejected {
        user,
        client_order_id,
        code,
    }
}

#[inline]
fn balance_update(user: UserId, currency: CurrencyId, b: Balance) -> Event {
    Event::BalanceUpdate {
        user,
        currency,
        available: b.available,
        locked: b.locked,
    }
}

impl Engine {
    /// An engine with risk on. Validates `config` and allocates every pool and book it sizes.
    pub fn new(config: &Config) -> Result<Engine, ConfigError> {
        Engine::with_risk(config, RiskMode::On)
    }

    /// An engine with the given risk mode.
    pub fn with_risk(config: &Config, risk: RiskMode) -> Result<Engine, ConfigError> {
        config.validate()?;
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
                config.capacity.withdrawals_max,
                &operators,
            ),
            matcher: Matcher::new(config),
        })
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

    /// What an order locks (currency and amount), by the same rule R applies.
    pub fn order_lock(&self, order: &OrderView) -> (CurrencyId, u64) {
        self.specs[order.symbol.0 as usize]
            .lock(order.side, order.price, order.leaves_qty)
            .expect("locked when placed")
    }

    /// A live order by its owner's client order id.
    pub fn order(&self, user: UserId, coid: ClientOrderId) -> Option<OrderView> {
        self.matcher.order(user, coid)
    }

    /// Level-2 depth `(price, visible qty)`, best first.
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        f: impl FnMut(Price, Qty),
    ) {
        self.matcher.depth(symbol, side, levels_max, f)
    }

    /// Every live order of a symbol in canonical order.
    pub fn for_each_order(&self, symbol: SymbolId, f: impl FnMut(BookSection, &OrderView)) {
        self.matcher.for_each_order(symbol, f)
    }

    /// Best bid.
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.matcher.best_bid(symbol)
    }

    /// Best ask.
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

#[inline]
fn operator_reject(operator: OperatorId, withdrawal_id: WithdrawalId, code: RejectCode) -> Event {
    Event::OperatorRejected {
        operator,
        withdrawal_id,
        code,
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

// ------------------------------------------------------------- the stages

/// What R decided about a command, for M and S: the hand-off between the stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Plan {
    /// R answered the command itself (an account command, or a reject): M and S have nothing
    /// to do.
    #[default]
    Done,
    /// R rejected a new order with this code (and emitted the reject): M records it
    /// (client order id consumed, REJECTED in the owner's window of finished orders); S has
    /// nothing to do.
    Rejected(RejectCode),
    /// M alone, no settlement: every command with risk off, and queries about the book.
    Book,
    /// A balances query R has checked: S, which owns the accounts once R is done with a
    /// command, answers it (R's own answers are bounded by [`RISK_EVENTS_MAX`]; a reply has one
    /// event per currency). M has nothing to do.
    Balances(UserId),
    /// M matches and S settles M's events.
    Settle {
        /// A new order that passed R: M places it without validating it again.
        place: bool,
        /// The new order is a budget order (docs/risk.md, "Budget orders"): `undo` is its
        /// budget, which S spends trade by trade and refunds the rest of when it finishes.
        budget: bool,
        /// R's lock for the command, returned if M rejects it.
        undo: Option<(UserId, CurrencyId, u64)>,
        /// An amend's lock decrease, refunded when M confirms the amend.
        refund: Option<(UserId, CurrencyId, u64)>,
    },
}

/// The most events R emits for one command itself (a completed withdrawal: approved,
/// completed, balance update). Sizes the pipeline's R→M slot; unused without that feature.
#[cfg_attr(not(feature = "pipeline"), allow(dead_code))]
pub(crate) const RISK_EVENTS_MAX: usize = 3;

/// R: validates, checks funds and locks them, and answers the commands it owns (account
/// commands, rejects) by emitting their events (at most [`RISK_EVENTS_MAX`]) into `sink`.
/// Reads the matcher (validation, amend checks) and writes the accounts.
pub(crate) fn risk_stage<S: EventSink + ?Sized>(
    risk: RiskMode,
    specs: &[RiskSpec],
    accounts: &mut Accounts,
    matcher: &Matcher,
    now_ns: u64,
    cmd: &Command,
    sink: &mut S,
) -> Plan {
    if risk == RiskMode::Off {
        match cmd {
            Command::Deposit { user, .. } | Command::Withdraw { user, .. } => sink.on_event(
                &reject(*user, ClientOrderId(0), RejectCode::AccountsDisabled),
            ),
            Command::ApproveWithdrawal {
                operator,
                withdrawal_id,
            }
            | Command::RejectWithdrawal {
                operator,
                withdrawal_id,
            } => sink.on_event(&Event::OperatorRejected {
                operator: *operator,
                withdrawal_id: *withdrawal_id,
                code: RejectCode::AccountsDisabled,
            }),
            Command::Query(Query::Balances { user }) => sink.on_event(&reject(
                *user,
                ClientOrderId(0),
                RejectCode::AccountsDisabled,
            )),
            _ => return Plan::Book,
        }
        return Plan::Done;
    }
    match *cmd {
        Command::NewOrder(ref o) => new_order(specs, accounts, matcher, now_ns, o, sink),
        Command::Tick => Plan::Done,
        Command::Amend {
            user,
            symbol,
            client_order_id,
            price,
            qty,
        } if qty.0 != 0 => amend(
            specs,
            accounts,
            matcher,
            user,
            symbol,
            OrderRef::Client(client_order_id),
            price,
            qty,
            sink,
        ),
        Command::AmendOrder {
            user,
            symbol,
            order_id,
            price,
            qty,
        } if qty.0 != 0 => amend(
            specs,
            accounts,
            matcher,
            user,
            symbol,
            OrderRef::Engine(order_id),
            price,
            qty,
            sink,
        ),
        Command::Query(Query::Balances { user }) => match accounts.check_user(user) {
            Ok(()) => Plan::Balances(user),
            Err(code) => {
                sink.on_event(&reject(user, ClientOrderId(0), code));
                Plan::Done
            }
        },
        Command::Query(_) => Plan::Book,
        Command::Amend { .. }
        | Command::Cancel { .. }
        | Command::AmendOrder { .. }
        | Command::CancelOrder { .. }
        | Command::MassCancel { .. } => Plan::Settle {
            place: false,
            budget: false,
            undo: None,
            refund: None,
        },
        Command::Deposit {
            user,
            currency,
            amount,
        } => {
            match accounts.deposit(user, currency, amount) {
                Ok(b) => {
                    sink.on_event(&Event::Deposited {
                        user,
                        currency,
                        amount,
                    });
                    sink.on_event(&balance_update(user, currency, b));
                }
                Err(code) => sink.on_event(&reject(user, ClientOrderId(0), code)),
            }
            Plan::Done
        }
        Command::Withdraw {
            user,
            currency,
            amount,
        } => {
            match accounts.request_withdrawal(user, currency, amount) {
                Ok((w, b)) => {
                    sink.on_event(&Event::WithdrawalRequested {
                        withdrawal_id: w.id,
                        user,
                        currency,
                        amount,
                    });
                    sink.on_event(&balance_update(user, currency, b));
                }
                Err(code) => sink.on_event(&reject(user, ClientOrderId(0), code)),
            }
            Plan::Done
        }
        Command::ApproveWithdrawal {
            operator,
            withdrawal_id,
        } => {
            match accounts.approve_withdrawal(operator, withdrawal_id) {
                Ok(Approval::First(w)) => sink.on_event(&Event::WithdrawalApproved {
                    withdrawal_id,
                    operator,
                    user: w.user,
                    approvals: 1,
                }),
                Ok(Approval::Completed(w)) => {
                    sink.on_event(&Event::WithdrawalApproved {
                        withdrawal_id,
                        operator,
                        user: w.user,
                        approvals: 2,
                    });
                    sink.on_event(&Event::WithdrawalCompleted {
                        withdrawal_id,
                        user: w.user,
                        currency: w.currency,
                        amount: w.amount,
                    });
                    sink.on_event(&balance_update(
                        w.user,
                        w.currency,
                        accounts.balance(w.user, w.currency),
                    ));
                }
                Err(code) => sink.on_event(&operator_reject(operator, withdrawal_id, code)),
            }
            Plan::Done
        }
        Command::RejectWithdrawal {
            operator,
            withdrawal_id,
        } => {
            match accounts.reject_withdrawal(operator, withdrawal_id) {
                Ok(w) => {
                    sink.on_event(&Event::WithdrawalRejected {
                        withdrawal_id,
                        operator,
                        user: w.user,
                    });
                    sink.on_event(&balance_update(
                        w.user,
                        w.currency,
                        accounts.balance(w.user, w.currency),
                    ));
                }
                Err(code) => sink.on_event(&operator_reject(operator, withdrawal_id, code)),
            }
            Plan::Done
        }
    }
}

/// R for a new order: validate, then lock what it can spend; M and S follow.
fn new_order<S: EventSink + ?Sized>(
    specs: &[RiskSpec],
    accounts: &mut Accounts,
    matcher: &Matcher,
    now_ns: u64,
    o: &NewOrder,
    sink: &mut S,
) -> Plan {
    let lock = matcher
        .validate_at(o, now_ns)
        .and_then(|()| accounts.check_user(o.user))
        .and_then(|()| {
            let spec = &specs[o.symbol.0 as usize];
            if o.budget != 0 {
                // A budget order locks its budget (docs/risk.md, "Budget orders").
                Ok((spec.quote, o.budget))
            } else {
                spec.lock(o.side, o.price, o.qty)
                    .ok_or(RejectCode::NotionalOverflow)
            }
        })
        .and_then(|(currency, amount)| {
            accounts
                .lock(o.user, currency, amount)
                .map(|()| (currency, amount))
        });
    match lock {
        Ok((currency, amount)) => Plan::Settle {
            place: true,
            budget: o.budget != 0,
            undo: Some((o.user, currency, amount)),
            refund: None,
        },
        Err(code) => {
            sink.on_event(&reject(o.user, o.client_order_id, code));
            Plan::Rejected(code)
        }
    }
}

/// R for an amend to a non-zero quantity: lock more first if the new order needs it; a
/// decrease is refunded when M confirms the amend.
#[allow(clippy::too_many_arguments)]
fn amend<S: EventSink + ?Sized>(
    specs: &[RiskSpec],
    accounts: &mut Accounts,
    matcher: &Matcher,
    user: UserId,
    symbol: SymbolId,
    target: OrderRef,
    price: Price,
    qty: Qty,
    sink: &mut S,
) -> Plan {
    let coid = matcher.reject_client_order_id(user, target);
    let current = match matcher.check_amend(user, symbol, target, price, qty) {
        Ok(current) => current,
        Err(code) => {
            sink.on_event(&reject(user, coid, code));
            return Plan::Done;
        }
    };
    let spec = &specs[symbol.0 as usize];
    let old = spec
        .lock(current.side, current.price, current.leaves_qty)
        .expect("locked when placed");
    let Some(new) = spec.lock(current.side, price, qty) else {
        sink.on_event(&reject(user, coid, RejectCode::NotionalOverflow));
        return Plan::Done;
    };
    let currency = old.0;
    if new.1 > old.1 {
        if let Err(code) = accounts.lock(user, currency, new.1 - old.1) {
            sink.on_event(&reject(user, coid, code));
            return Plan::Done;
        }
        Plan::Settle {
            place: false,
            budget: false,
            undo: Some((user, currency, new.1 - old.1)),
            refund: None,
        }
    } else {
        Plan::Settle {
            place: false,
            budget: false,
            undo: None,
            refund: Some((user, currency, old.1 - new.1)),
        }
    }
}

/// M: matches one command R passed on ([`Plan::Book`] or [`Plan::Settle`]); for a new order
/// R rejected ([`Plan::Rejected`]) it only records it: the client order id the reject
/// consumed (docs/protocol.md, "Idempotency") and the REJECTED entry of the owner's window
/// (docs/matching.md, "Order status"). Touches only the matcher.
#[inline]
pub(crate) fn match_stage<S: EventSink + ?Sized>(
    matcher: &mut Matcher,
    cmd: &Command,
    plan: Plan,
    sink: &mut S,
) {
    // Expiries first: every command's engine time may reach some (docs/matching.md, "Expiry").
    matcher.expire_due(sink);
    match (plan, cmd) {
        (Plan::Rejected(code), Command::NewOrder(o)) => matcher.note_rejected(o, code),
        (Plan::Done | Plan::Rejected(_) | Plan::Balances(_), _) => {}
        (Plan::Settle { place: true, .. }, Command::NewOrder(o)) => {
            matcher.place_validated(o, sink)
        }
        _ => matcher.process(cmd, sink),
    }
}

/// S's answer to a balances query R passed on ([`Plan::Balances`]): one `Balance` event per
/// configured currency, in currency order, then `BalancesEnd`. Reads only the accounts.
pub(crate) fn balances_reply<S: EventSink + ?Sized>(
    accounts: &Accounts,
    user: UserId,
    sink: &mut S,
) {
    let currencies = accounts.currencies();
    for c in 0..currencies {
        let currency = CurrencyId(c as u16);
        let b = accounts.balance(user, currency);
        sink.on_event(&Event::Balance {
            user,
            currency,
            available: b.available,
            locked: b.locked,
        });
    }
    sink.on_event(&Event::BalancesEnd {
        user,
        count: currencies as u32,
    });
}

/// S: the settlement adapter for one command's M events under `plan` (R's undo or refund
/// armed). Touches only the accounts.
#[inline]
pub(crate) fn settlement<'a, S: EventSink + ?Sized>(
    accounts: &'a mut Accounts,
    specs: &'a [RiskSpec],
    plan: Plan,
    sink: &'a mut S,
) -> Settlement<'a, S> {
    let mut settle = Settlement::new(accounts, specs, sink);
    if let Plan::Settle {
        undo,
        refund,
        budget,
        ..
    } = plan
    {
        if let Some((user, currency, amount)) = undo {
            if budget {
                settle.spend_budget(user, currency, amount);
            } else {
                settle.undo_on_reject(user, currency, amount);
            }
        }
        if let Some((user, currency, amount)) = refund {
            settle.refund_on_amend(user, currency, amount);
        }
    }
    settle
}
