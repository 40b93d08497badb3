//! R, the risk stage: validates, checks funds and locks them, and answers the commands it owns
//! (account commands, rejects) itself. It hands M and S a [`Plan`].

use crate::codes::RejectCode;
use crate::command::{Command, NewOrder, Query};
use crate::engine::RiskMode;
use crate::event::{Event, EventSink};
use crate::matching::{Matcher, OrderRef};
use crate::plan::Plan;
use crate::risk::accounts::{Accounts, Approval, Balance};
use crate::risk::RiskSpec;
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, Price, Qty, SymbolId, UserId, WithdrawalId,
};

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

#[inline]
fn operator_reject(operator: OperatorId, withdrawal_id: WithdrawalId, code: RejectCode) -> Event {
    Event::OperatorRejected {
        operator,
        withdrawal_id,
        code,
    }
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
