//! The settlement stage (S): moves funds for every trade and refunds locks for every cancel.
//!
//! S sits behind the matching stage as an [`EventSink`] adapter: it sees each event as matching
//! produces it, applies its effect on the accounts, and passes it on unchanged. Its rules are in
//! docs/risk.md; the lock arithmetic is [`RiskSpec`]'s, the same R used to lock.
//!
//! `settlement()` arms the adapter with R's `Plan` for one command; `balances_reply` is S's
//! answer to a balances query.

use crate::event::{Event, EventSink, Trade};
use crate::plan::Plan;
use crate::risk::accounts::{Accounts, TradeMoves};
use crate::risk::RiskSpec;
use crate::types::{CurrencyId, OrderId, Side, UserId};

/// A budget order's lock while it executes (docs/risk.md, "Budget orders").
#[derive(Clone, Copy, Debug)]
struct Budget {
    user: UserId,
    currency: CurrencyId,
    /// What is still locked of the budget.
    left: u64,
    /// The order's id, from its `Accepted` (0 before).
    order_id: OrderId,
}

/// Applies one command's matching events to the accounts, then forwards them.
#[derive(Debug)]
pub struct Settlement<'a, S: EventSink + ?Sized> {
    accounts: &'a mut Accounts,
    specs: &'a [RiskSpec],
    sink: &'a mut S,
    /// R's lock for the command, returned if matching rejects the command.
    undo: Option<(UserId, CurrencyId, u64)>,
    /// An amend's lock decrease, refunded when matching confirms the amend.
    refund: Option<(UserId, CurrencyId, u64)>,
    /// The budget order this command places, if it is one.
    budget: Option<Budget>,
}

impl<'a, S: EventSink + ?Sized> Settlement<'a, S> {
    /// Settlement of one command's events into `sink`.
    pub fn new(
        accounts: &'a mut Accounts,
        specs: &'a [RiskSpec],
        sink: &'a mut S,
    ) -> Settlement<'a, S> {
        Settlement {
            accounts,
            specs,
            sink,
            undo: None,
            refund: None,
            budget: None,
        }
    }

    /// R locked `amount` as the budget of the budget order this command places: each of its
    /// trades spends its notional and taker fee from it, and what is left comes back when the
    /// order finishes (or all of it, if matching rejects the order).
    pub fn spend_budget(&mut self, user: UserId, currency: CurrencyId, amount: u64) {
        self.undo = Some((user, currency, amount));
        self.budget = Some(Budget {
            user,
            currency,
            left: amount,
            order_id: OrderId(0),
        });
    }

    /// Whether `order_id` is this command's budget order.
    #[inline(always)]
    fn is_budget(&self, order_id: OrderId) -> bool {
        self.budget.is_some_and(|b| b.order_id == order_id)
    }

    /// A `Cancelled` of the budget order: its lock is its budget, not `qty × unit_lock`; what
    /// is left of it goes back once the order is done (a decrement leaves it live).
    #[cold]
    #[inline(never)]
    fn budget_cancelled(&mut self, leaves: u64) {
        if leaves == 0 {
            self.refund_budget();
        }
    }

    /// The budget order finished: what it did not spend goes back.
    #[cold]
    #[inline(never)]
    fn refund_budget(&mut self) {
        if let Some(b) = self.budget.take() {
            self.accounts.unlock(b.user, b.currency, b.left);
        }
    }

    /// The budget order's `Accepted`: its trades are known by this id from now on.
    #[cold]
    #[inline(never)]
    fn budget_accepted(&mut self, order_id: OrderId) {
        if let Some(b) = self.budget.as_mut().filter(|b| b.order_id.0 == 0) {
            b.order_id = order_id;
        }
    }

    /// A trade of the budget order spends `spent` (notional and taker fee) out of its budget;
    /// the budget's lock releases exactly that.
    #[cold]
    #[inline(never)]
    fn budget_spend(&mut self, spent: u64) -> u64 {
        let b = self.budget.as_mut().expect("a budget order's trade");
        b.left = b
            .left
            .checked_sub(spent)
            .expect("a budget order never spends past its budget");
        spent
    }

    /// Matching rejected the command: R's lock comes back.
    #[cold]
    #[inline(never)]
    fn undo(&mut self, (user, currency, amount): (UserId, CurrencyId, u64)) {
        self.accounts.unlock(user, currency, amount);
        self.budget = None;
    }

    /// R locked `amount` for this command: give it back if matching rejects the command.
    pub fn undo_on_reject(&mut self, user: UserId, currency: CurrencyId, amount: u64) {
        self.undo = Some((user, currency, amount));
    }

    /// An amend lowers the lock by `amount`: refund it when matching confirms the amend.
    pub fn refund_on_amend(&mut self, user: UserId, currency: CurrencyId, amount: u64) {
        self.refund = Some((user, currency, amount));
    }

    #[inline(always)]
    fn trade(&mut self, t: &Trade) {
        let spec = &self.specs[t.symbol.0 as usize];
        let (buyer, seller) = match t.taker_side {
            Side::Buy => (&t.taker, &t.maker),
            Side::Sell => (&t.maker, &t.taker),
        };
        // Fits: at most the buyer's lock for these lots, which fitted when it was taken.
        let notional = t.price.0 as u64 * t.qty.0 * spec.tick_size;
        let base = t.qty.0 * spec.lot_size;
        let cost = notional + buyer.fee;
        let budget = self.is_budget(t.taker.order_id);
        let released = if budget {
            // A budget order pays exactly what it spends out of its budget.
            self.budget_spend(cost)
        } else {
            spec.buy_unit_lock(buyer.limit_price)
                .expect("locked when placed")
                * t.qty.0
        };
        self.accounts.settle_trade(TradeMoves {
            quote: spec.quote,
            base: spec.base,
            buyer: buyer.user,
            seller: seller.user,
            released,
            unused: released
                .checked_sub(cost)
                .expect("a buy's lock covers every fill at or below its limit, fee included"),
            base_amount: base,
            proceeds: notional
                .checked_sub(seller.fee)
                .expect("a fee never exceeds the notional"),
            fees: buyer.fee + seller.fee,
        });
        if budget && t.taker.leaves_qty.0 == 0 {
            self.refund_budget();
        }
    }
}

impl<S: EventSink + ?Sized> EventSink for Settlement<'_, S> {
    // Always inlined: at each of matching's emission sites the event's variant is known, so
    // the match folds to that variant's arm and only the fields S and the sink read are built.
    #[inline(always)]
    fn on_event(&mut self, event: &Event) {
        match *event {
            Event::Trade(ref t) => self.trade(t),
            Event::Cancelled {
                order_id,
                leaves_qty,
                ..
            } if self.is_budget(order_id) => self.budget_cancelled(leaves_qty.0),
            Event::Cancelled {
                user,
                symbol,
                side,
                price,
                qty,
                ..
            } => {
                let (currency, amount) = self.specs[symbol.0 as usize]
                    .lock(side, price, qty)
                    .expect("locked when placed");
                self.accounts.unlock(user, currency, amount);
            }
            Event::Accepted { order_id, .. } => {
                self.undo = None;
                if self.budget.is_some() {
                    self.budget_accepted(order_id);
                }
            }
            Event::Amended { .. } => {
                self.undo = None;
                if let Some((user, currency, amount)) = self.refund.take() {
                    self.accounts.unlock(user, currency, amount);
                }
            }
            Event::Rejected { .. } => {
                if let Some(undo) = self.undo.take() {
                    self.undo(undo);
                }
            }
            _ => {}
        }
        self.sink.on_event(event);
    }
}

// ------------------------------------------------------------- the stage

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
