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
use crate::command::{Command, NewOrder};
use crate::config::{Config, ConfigError};
use crate::event::{Event, EventSink};
use crate::hash::{StateHash, StateHasher};
use crate::matching::Matcher;
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
    risk: RiskMode,
    specs: Vec<RiskSpec>,
    accounts: Accounts,
    matcher: Matcher,
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

    /// Applies one command; every consequence goes to `sink`, in order.
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        if self.risk == RiskMode::Off {
            return match cmd {
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
                _ => self.matcher.process(cmd, sink),
            };
        }
        match *cmd {
            Command::NewOrder(ref o) => self.new_order(o, sink),
            Command::Amend {
                user,
                symbol,
                client_order_id,
                price,
                qty,
            } if qty.0 != 0 => self.amend(cmd, user, symbol, client_order_id, price, qty, sink),
            Command::Amend { .. } | Command::Cancel { .. } | Command::MassCancel { .. } => {
                let mut settle = Settlement::new(&mut self.accounts, &self.specs, sink);
                self.matcher.process(cmd, &mut settle);
            }
            Command::Deposit {
                user,
                currency,
                amount,
            } => match self.accounts.deposit(user, currency, amount) {
                Ok(b) => {
                    sink.on_event(&Event::Deposited {
                        user,
                        currency,
                        amount,
                    });
                    sink.on_event(&balance_update(user, currency, b));
                }
                Err(code) => sink.on_event(&reject(user, ClientOrderId(0), code)),
            },
            Command::Withdraw {
                user,
                currency,
                amount,
            } => match self.accounts.request_withdrawal(user, currency, amount) {
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
            },
            Command::ApproveWithdrawal {
                operator,
                withdrawal_id,
            } => match self.accounts.approve_withdrawal(operator, withdrawal_id) {
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
                        self.accounts.balance(w.user, w.currency),
                    ));
                }
                Err(code) => sink.on_event(&operator_reject(operator, withdrawal_id, code)),
            },
            Command::RejectWithdrawal {
                operator,
                withdrawal_id,
            } => match self.accounts.reject_withdrawal(operator, withdrawal_id) {
                Ok(w) => {
                    sink.on_event(&Event::WithdrawalRejected {
                        withdrawal_id,
                        operator,
                        user: w.user,
                    });
                    sink.on_event(&balance_update(
                        w.user,
                        w.currency,
                        self.accounts.balance(w.user, w.currency),
                    ));
                }
                Err(code) => sink.on_event(&operator_reject(operator, withdrawal_id, code)),
            },
        }
    }

    /// R for a new order: validate, then lock what it can spend; M and S follow.
    fn new_order<S: EventSink + ?Sized>(&mut self, o: &NewOrder, sink: &mut S) {
        let lock = self
            .matcher
            .validate(o)
            .and_then(|()| self.accounts.check_user(o.user))
            .and_then(|()| {
                self.specs[o.symbol.0 as usize]
                    .lock(o.side, o.price, o.qty)
                    .ok_or(RejectCode::NotionalOverflow)
            })
            .and_then(|(currency, amount)| {
                self.accounts
                    .lock(o.user, currency, amount)
                    .map(|()| (currency, amount))
            });
        let (currency, amount) = match lock {
            Ok(lock) => lock,
            Err(code) => return sink.on_event(&reject(o.user, o.client_order_id, code)),
        };
        let mut settle = Settlement::new(&mut self.accounts, &self.specs, sink);
        settle.undo_on_reject(o.user, currency, amount);
        self.matcher.place_validated(o, &mut settle);
    }

    /// R for an amend to a non-zero quantity: lock more first if the new order needs it; a
    /// decrease is refunded when M confirms the amend.
    #[allow(clippy::too_many_arguments)]
    fn amend<S: EventSink + ?Sized>(
        &mut self,
        cmd: &Command,
        user: UserId,
        symbol: SymbolId,
        coid: ClientOrderId,
        price: Price,
        qty: Qty,
        sink: &mut S,
    ) {
        let current = match self.matcher.check_amend(user, symbol, coid, price, qty) {
            Ok(current) => current,
            Err(code) => return sink.on_event(&reject(user, coid, code)),
        };
        let spec = &self.specs[symbol.0 as usize];
        let old = spec
            .lock(current.side, current.price, current.leaves_qty)
            .expect("locked when placed");
        let Some(new) = spec.lock(current.side, price, qty) else {
            return sink.on_event(&reject(user, coid, RejectCode::NotionalOverflow));
        };
        let currency = old.0;
        if new.1 > old.1 {
            if let Err(code) = self.accounts.lock(user, currency, new.1 - old.1) {
                return sink.on_event(&reject(user, coid, code));
            }
        }
        let mut settle = Settlement::new(&mut self.accounts, &self.specs, sink);
        if new.1 > old.1 {
            settle.undo_on_reject(user, currency, new.1 - old.1);
        } else {
            settle.refund_on_amend(user, currency, old.1 - new.1);
        }
        self.matcher.process(cmd, &mut settle);
    }

    // ---------------------------------------------------------------- queries

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
