//! The reference model of the whole engine with accounts: [`ReferenceBook`] for matching, plus
//! balances, locks, settlement, fees and withdrawals written the obvious way.
//!
//! [`ReferenceEngine`] implements docs/risk.md independently of the fast engine
//! ([`crate::Engine`], `settlement`, [`crate::risk::accounts`]): balances live in
//! a `BTreeMap<(UserId, CurrencyId), (available, locked)>` of `i128`s, pending withdrawals in a
//! `Vec`, and every amount is computed in `i128` from the document's formulas, with an assertion
//! after every change that nothing went negative or past `u64`. It also keeps its own record of
//! every live order's price and open quantity, taken from the events, so it can check — after
//! every command — that each user's locked amount is exactly what their live orders and pending
//! withdrawals can still spend, and that every currency is conserved.
//!
//! Matching is [`ReferenceBook`]'s. Where the risk stage must know whether matching would accept
//! a command before it locks anything (docs/risk.md: "the matching stage's validation first"), the
//! model asks a throw-away clone of the book. It exists to be the oracle of
//! `engine/tests/conservation_props.rs`: slow, allocating, and written to be read against
//! docs/risk.md rule by rule.

use std::collections::BTreeMap;

use crate::book::reference::ReferenceBook;
use crate::codes::RejectCode;
use crate::command::{Command, NewOrder, Query};
use crate::config::{Config, SymbolConfig};
use crate::event::{Event, EventSink, Trade};
use crate::hash::{StateHash, StateHasher};
use crate::matching::OrderRef;
use crate::risk::accounts::{Balance, PendingWithdrawal};
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, OrderId, Price, Side, SymbolId, UserId, WithdrawalId,
};

/// The largest amount any balance, lock, fee total or supply may reach.
const AMOUNT_MAX: i128 = u64::MAX as i128;

/// A symbol's reference data, as the accounts see it.
#[derive(Clone, Copy, Debug)]
struct Market {
    base: CurrencyId,
    quote: CurrencyId,
    lot_size: i128,
    tick_size: i128,
    maker_fee_bps: i128,
    taker_fee_bps: i128,
}

impl Market {
    fn new(config: &Config, s: &SymbolConfig) -> Market {
        let currency = |code: &str| config.currency_id(code).expect("validated config");
        Market {
            base: currency(&s.base),
            quote: currency(&s.quote),
            lot_size: i128::from(s.lot_size),
            tick_size: i128::from(s.tick_size),
            maker_fee_bps: i128::from(s.maker_fee_bps),
            taker_fee_bps: i128::from(s.taker_fee_bps),
        }
    }

    /// `unit_lock(p) = p × tick_size + ceil(p × tick_size × taker_fee_bps / 10 000)`.
    fn unit_lock(&self, price: Price) -> i128 {
        let per_lot = i128::from(price.0) * self.tick_size;
        per_lot + ceil_div(per_lot * self.taker_fee_bps, 10_000)
    }

    /// What an order of `qty` lots at `price` locks: base for sells, quote for buys; `None` if
    /// the amount does not fit 64 bits.
    fn lock(&self, side: Side, price: Price, qty: u64) -> Option<(CurrencyId, i128)> {
        let (currency, amount) = match side {
            Side::Sell => (self.base, i128::from(qty) * self.lot_size),
            Side::Buy => (self.quote, i128::from(qty) * self.unit_lock(price)),
        };
        (amount <= AMOUNT_MAX).then_some((currency, amount))
    }

    /// `ceil(notional × bps / 10 000)`.
    fn fee(&self, notional: i128, bps: i128) -> i128 {
        ceil_div(notional * bps, 10_000)
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    assert!(a >= 0 && b > 0);
    (a + b - 1) / b
}

/// What the model remembers of a live order: enough to recompute its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    user: UserId,
    symbol: SymbolId,
    side: Side,
    /// Limit (or protection) price: what the lock is sized by.
    price: Price,
    /// Open quantity.
    open: u64,
}

/// A pending withdrawal and the pool slot it occupies.
#[derive(Clone, Copy, Debug)]
struct RefWithdrawal {
    slot: usize,
    id: u64,
    user: UserId,
    currency: CurrencyId,
    amount: i128,
    first_approval: Option<OperatorId>,
}

/// The reference model of the engine with risk on (see the module docs).
#[derive(Clone, Debug)]
pub struct ReferenceEngine {
    book: ReferenceBook,
    markets: Vec<Market>,
    currencies: usize,
    users_max: u32,
    operators: Vec<OperatorId>,
    withdrawals_max: usize,
    withdrawals_per_user: usize,
    /// Users whose account a deposit has opened.
    opened: Vec<UserId>,
    /// `(available, locked)`; a missing entry is `(0, 0)`.
    balances: BTreeMap<(UserId, CurrencyId), (i128, i128)>,
    fees: BTreeMap<CurrencyId, i128>,
    /// Deposits minus completed withdrawals.
    supply: BTreeMap<CurrencyId, i128>,
    withdrawals: Vec<RefWithdrawal>,
    next_withdrawal_id: u64,
    /// Every live order, from the events.
    orders: BTreeMap<OrderId, Held>,
    /// The lock R took for the new order being processed: returned if matching rejects it.
    new_order_lock: Option<(UserId, CurrencyId, i128)>,
    /// The lock decrease of the amend being processed: refunded when the amend takes effect.
    amend_refund: Option<(UserId, CurrencyId, i128)>,
    /// The lock increase of the amend being processed: returned if matching rejects the amend
    /// (its order expired before it: docs/matching.md, "Expiry").
    amend_lock: Option<(UserId, CurrencyId, i128)>,
    /// The budget order being processed: its id once accepted, and what is left of its budget.
    budget: Option<(OrderId, UserId, CurrencyId, i128)>,
    /// Whether the command being processed has been through matching (which expires due
    /// orders first); if not, the expiries run after R's own events.
    matched: bool,
}

impl ReferenceEngine {
    /// An empty model of an engine with risk on, built from a valid `config`.
    pub fn new(config: &Config) -> ReferenceEngine {
        ReferenceEngine {
            book: ReferenceBook::new(config),
            markets: config
                .symbols
                .iter()
                .map(|s| Market::new(config, s))
                .collect(),
            currencies: config.currencies.len(),
            users_max: config.capacity.users_max,
            operators: config
                .accounts
                .operators
                .iter()
                .map(|&o| OperatorId(o))
                .collect(),
            withdrawals_max: config.capacity.withdrawals_max as usize,
            withdrawals_per_user: config.capacity.withdrawals_per_user as usize,
            opened: Vec::new(),
            balances: BTreeMap::new(),
            fees: BTreeMap::new(),
            supply: BTreeMap::new(),
            withdrawals: Vec::new(),
            next_withdrawal_id: 1,
            orders: BTreeMap::new(),
            new_order_lock: None,
            amend_refund: None,
            amend_lock: None,
            budget: None,
            matched: false,
        }
    }

    /// [`ReferenceEngine::process`] for a command stamped `ts_ns`: engine time (the book's)
    /// first moves to the later of `ts_ns` and the current time.
    pub fn process_at<S: EventSink + ?Sized>(&mut self, ts_ns: u64, cmd: &Command, sink: &mut S) {
        self.book.advance(ts_ns);
        self.process(cmd, sink);
    }

    /// Applies one command, reporting every consequence to `sink` in order; then checks the
    /// model's own invariants (conservation, and locks equal to what can still be spent).
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        let mut events = Vec::new();
        self.matched = false;
        match *cmd {
            Command::Tick => self.matching(cmd, &mut events),
            Command::NewOrder(ref o) => self.new_order(cmd, o, &mut events),
            Command::Amend {
                user,
                client_order_id,
                price,
                qty,
                ..
            } if qty.0 != 0 => self.amend(
                cmd,
                user,
                OrderRef::Client(client_order_id),
                price,
                qty.0,
                &mut events,
            ),
            Command::AmendOrder {
                user,
                order_id,
                price,
                qty,
                ..
            } if qty.0 != 0 => self.amend(
                cmd,
                user,
                OrderRef::Engine(order_id),
                price,
                qty.0,
                &mut events,
            ),
            Command::Amend { .. }
            | Command::Cancel { .. }
            | Command::AmendOrder { .. }
            | Command::CancelOrder { .. }
            | Command::MassCancel { .. } => self.matching(cmd, &mut events),
            Command::Deposit {
                user,
                currency,
                amount,
            } => self.deposit(user, currency, amount, &mut events),
            Command::Withdraw {
                user,
                currency,
                amount,
            } => self.withdraw(user, currency, amount, &mut events),
            Command::ApproveWithdrawal {
                operator,
                withdrawal_id,
            } => self.approve(operator, withdrawal_id, &mut events),
            Command::RejectWithdrawal {
                operator,
                withdrawal_id,
            } => self.reject_withdrawal(operator, withdrawal_id, &mut events),
            Command::Query(Query::Balances { user }) => {
                // Answered after the expiries (their refunds show), an unknown account's
                // reject before them (R's own answer).
                if self.is_open(user) {
                    self.matching(&Command::Tick, &mut events);
                }
                self.balances_reply(user, &mut events);
            }
            Command::Query(_) => self.matching(cmd, &mut events),
        }
        if !self.matched {
            // R answered the command itself: matching still expires what is due.
            self.matching(&Command::Tick, &mut events);
        }
        for e in &events {
            sink.on_event(e);
        }
        self.check();
    }

    // ------------------------------------------------------------------ balances

    fn get(&self, user: UserId, currency: CurrencyId) -> (i128, i128) {
        self.balances
            .get(&(user, currency))
            .copied()
            .unwrap_or((0, 0))
    }

    /// Adds `d_available` and `d_locked` to a balance; both parts must stay within `0 ..= u64`.
    fn change(&mut self, user: UserId, currency: CurrencyId, d_available: i128, d_locked: i128) {
        let b = self.balances.entry((user, currency)).or_insert((0, 0));
        b.0 += d_available;
        b.1 += d_locked;
        assert!(
            (0..=AMOUNT_MAX).contains(&b.0) && (0..=AMOUNT_MAX).contains(&b.1),
            "balance of user {user} currency {currency} out of range: {b:?}"
        );
    }

    fn balance_update(&self, user: UserId, currency: CurrencyId) -> Event {
        let b = self.balance(user, currency);
        Event::BalanceUpdate {
            user,
            currency,
            available: b.available,
            locked: b.locked,
        }
    }

    /// A balances query: every currency of an open account, then the count.
    fn balances_reply(&self, user: UserId, events: &mut Vec<Event>) {
        if !self.is_open(user) {
            return events.push(Event::Rejected {
                user,
                client_order_id: ClientOrderId(0),
                code: RejectCode::UnknownUser,
            });
        }
        for c in 0..self.currencies {
            let currency = CurrencyId(c as u16);
            let b = self.balance(user, currency);
            events.push(Event::Balance {
                user,
                currency,
                available: b.available,
                locked: b.locked,
            });
        }
        events.push(Event::BalancesEnd {
            user,
            count: self.currencies as u32,
        });
    }

    // ------------------------------------------------------------------ orders (R, M, S)

    /// Runs a command through the book and settles its events.
    fn matching(&mut self, cmd: &Command, events: &mut Vec<Event>) {
        self.matched = true;
        let mut out = Vec::new();
        self.book.process(cmd, &mut |e: &Event| out.push(*e));
        for e in &out {
            self.settle(e);
        }
        assert!(
            self.new_order_lock.is_none()
                && self.amend_refund.is_none()
                && self.amend_lock.is_none()
                && self.budget.is_none(),
            "a lock change was left unresolved by {cmd:?}"
        );
        events.extend(out);
    }

    /// What matching alone would answer first, without changing anything: its reject, if any.
    /// R checks a command before matching expires what engine time has reached, so the dry
    /// run does not expire anything either.
    fn dry_run_reject(&self, cmd: &Command) -> Option<Event> {
        self.book
            .dry_run(cmd)
            .first()
            .copied()
            .filter(|e| matches!(e, Event::Rejected { .. }))
    }

    /// The code of [`ReferenceEngine::dry_run_reject`].
    fn dry_run(&self, cmd: &Command) -> Option<RejectCode> {
        match self.dry_run_reject(cmd) {
            Some(Event::Rejected { code, .. }) => Some(code),
            _ => None,
        }
    }

    /// docs/risk.md, "Pre-trade check order for a new order".
    fn new_order(&mut self, cmd: &Command, o: &NewOrder, events: &mut Vec<Event>) {
        let (user, coid) = (o.user, o.client_order_id);
        let reject = |code| Event::Rejected {
            user,
            client_order_id: coid,
            code,
        };
        // The matching stage's validation first; the pool is only full once the order is paid.
        // A new order rejected here still consumes its client order id (docs/protocol.md).
        let checked = match self.dry_run(cmd) {
            Some(RejectCode::OrderPoolFull) | None => self.funds_check(o),
            Some(code) => Err(code),
        };
        let (currency, amount) = match checked {
            Ok(lock) => lock,
            Err(code) => {
                // Matching still runs: it expires what is due, then records the reject.
                events.push(reject(code));
                self.matching(&Command::Tick, events);
                self.book.note_rejected(o, code);
                return;
            }
        };
        self.change(user, currency, -amount, amount);
        self.new_order_lock = Some((user, currency, amount));
        if o.budget != 0 {
            self.budget = Some((OrderId(0), user, currency, amount));
        }
        self.matching(cmd, events);
    }

    /// R's own checks of a new order matching accepts: an open account, a lock that fits, the
    /// funds to cover it. The lock on success.
    fn funds_check(&self, o: &NewOrder) -> Result<(CurrencyId, i128), RejectCode> {
        if !self.is_open(o.user) {
            return Err(RejectCode::UnknownUser);
        }
        if o.budget != 0 {
            // docs/risk.md, "Budget orders": the lock is the budget.
            let quote = self.markets[o.symbol.0 as usize].quote;
            let budget = i128::from(o.budget);
            if self.get(o.user, quote).0 < budget {
                return Err(RejectCode::InsufficientFunds);
            }
            return Ok((quote, budget));
        }
        let Some((currency, amount)) =
            self.markets[o.symbol.0 as usize].lock(o.side, o.price, o.qty.0)
        else {
            return Err(RejectCode::NotionalOverflow);
        };
        if self.get(o.user, currency).0 < amount {
            return Err(RejectCode::InsufficientFunds);
        }
        Ok((currency, amount))
    }

    /// docs/risk.md, "Amend", for a non-zero quantity.
    fn amend(
        &mut self,
        cmd: &Command,
        user: UserId,
        target: OrderRef,
        price: Price,
        qty: u64,
        events: &mut Vec<Event>,
    ) {
        // Matching's own checks first (its reject names the client order id as it does).
        if let Some(rejected) = self.dry_run_reject(cmd) {
            return events.push(rejected);
        }
        let order = match target {
            OrderRef::Client(coid) => self.book.order(user, coid),
            OrderRef::Engine(id) => self.book.order_by_id(id),
        }
        .expect("matching found the order");
        let reject = |code| Event::Rejected {
            user,
            client_order_id: order.client_order_id,
            code,
        };
        let market = self.markets[order.symbol.0 as usize];
        let (currency, old) = market
            .lock(order.side, order.price, order.leaves_qty.0)
            .expect("it was locked when placed");
        let Some((_, new)) = market.lock(order.side, price, qty) else {
            return events.push(reject(RejectCode::NotionalOverflow));
        };
        if new > old {
            if self.get(user, currency).0 < new - old {
                return events.push(reject(RejectCode::InsufficientFunds));
            }
            self.change(user, currency, old - new, new - old);
            self.amend_lock = Some((user, currency, new - old));
        } else {
            self.amend_refund = Some((user, currency, old - new));
        }
        self.matching(cmd, events);
    }

    /// S: one matching event's effect on the accounts (docs/risk.md, "Settlement").
    fn settle(&mut self, e: &Event) {
        match *e {
            Event::Accepted {
                user,
                symbol,
                order_id,
                side,
                price,
                qty,
                ..
            } => {
                // R locked exactly this order's lock before matching accepted it.
                let locked = self.new_order_lock.take().expect("R locked the new order");
                if let Some(b) = self.budget.as_mut() {
                    // A budget order locked its budget.
                    assert_eq!((b.1, b.2, b.3), locked);
                    b.0 = order_id;
                } else {
                    let expected = self.markets[symbol.0 as usize].lock(side, price, qty.0);
                    assert_eq!(Some((locked.1, locked.2)), expected);
                }
                assert_eq!(locked.0, user);
                let held = Held {
                    user,
                    symbol,
                    side,
                    price,
                    open: qty.0,
                };
                assert!(self.orders.insert(order_id, held).is_none());
            }
            Event::Rejected { .. } => {
                // Matching refused an order R had already paid for: the lock goes back.
                if let Some((user, currency, amount)) = self.new_order_lock.take() {
                    self.change(user, currency, amount, -amount);
                    self.budget = None;
                }
                // An amend whose order expired first: its extra lock goes back, and there is
                // no decrease to refund.
                if let Some((user, currency, amount)) = self.amend_lock.take() {
                    self.change(user, currency, amount, -amount);
                }
                self.amend_refund = None;
            }
            Event::Trade(ref t) => self.trade(t),
            Event::Cancelled {
                order_id,
                user,
                side,
                price,
                qty,
                leaves_qty,
                ..
            } => {
                let held = self.reduce(order_id, qty.0, leaves_qty.0);
                assert_eq!((held.user, held.side, held.price), (user, side, price));
                if self.budget.is_some_and(|b| b.0 == order_id) {
                    // A budget order's lock is what is left of its budget, all of it
                    // returned when the order ends.
                    if leaves_qty.0 == 0 {
                        let (_, user, currency, left) = self.budget.take().expect("checked");
                        self.change(user, currency, left, -left);
                    }
                    return;
                }
                let (currency, amount) = self.markets[held.symbol.0 as usize]
                    .lock(side, price, qty.0)
                    .expect("part of a lock");
                self.change(user, currency, amount, -amount);
            }
            Event::Amended {
                order_id,
                price,
                qty,
                ..
            } => {
                let held = self.orders.get_mut(&order_id).expect("a live order");
                held.price = price;
                held.open = qty.0;
                self.amend_lock = None;
                if let Some((user, currency, amount)) = self.amend_refund.take() {
                    self.change(user, currency, amount, -amount);
                }
            }
            _ => {}
        }
    }

    /// Takes `qty` off a live order's open quantity, which must then be `leaves`; forgets the
    /// order when nothing is left. Returns the order as it was.
    fn reduce(&mut self, order_id: OrderId, qty: u64, leaves: u64) -> Held {
        let held = *self.orders.get(&order_id).expect("a live order");
        assert_eq!(held.open, qty + leaves, "open quantity of order {order_id}");
        if leaves == 0 {
            self.orders.remove(&order_id);
        } else {
            self.orders.get_mut(&order_id).expect("live").open = leaves;
        }
        held
    }

    fn trade(&mut self, t: &Trade) {
        let m = self.markets[t.symbol.0 as usize];
        let q = t.qty.0;
        let maker = self.reduce(t.maker.order_id, q, t.maker.leaves_qty.0);
        let taker = self.reduce(t.taker.order_id, q, t.taker.leaves_qty.0);
        assert_eq!(
            (maker.price, taker.price),
            (t.maker.limit_price, t.taker.limit_price)
        );
        assert_eq!(taker.side, t.taker_side);
        assert_eq!(maker.side, t.taker_side.opposite());
        let notional = i128::from(t.price.0) * i128::from(q) * m.tick_size;
        let maker_fee = m.fee(notional, m.maker_fee_bps);
        let taker_fee = m.fee(notional, m.taker_fee_bps);
        assert_eq!(
            (maker_fee, taker_fee),
            (i128::from(t.maker.fee), i128::from(t.taker.fee))
        );
        let ((buyer, fee_b), (seller, fee_s)) = match t.taker_side {
            Side::Buy => ((taker, taker_fee), (maker, maker_fee)),
            Side::Sell => ((maker, maker_fee), (taker, taker_fee)),
        };
        let budget = self.budget.filter(|b| b.0 == t.taker.order_id);
        let released = match budget {
            // A budget order pays its notional and fee out of its budget, nothing more.
            Some(_) => notional + fee_b,
            None => i128::from(q) * m.unit_lock(buyer.price),
        };
        let unused = released - notional - fee_b;
        assert!(unused >= 0, "a buy's lock covers the fill: {t:?}");
        let base = i128::from(q) * m.lot_size;
        self.change(buyer.user, m.quote, unused, -released);
        self.change(buyer.user, m.base, base, 0);
        self.change(seller.user, m.base, 0, -base);
        self.change(seller.user, m.quote, notional - fee_s, 0);
        *self.fees.entry(m.quote).or_insert(0) += fee_b + fee_s;
        if let Some((id, user, currency, left)) = budget {
            let left = left - released;
            assert!(left >= 0, "a budget order spent past its budget: {t:?}");
            self.budget = Some((id, user, currency, left));
            if t.taker.leaves_qty.0 == 0 {
                self.budget = None;
                self.change(user, currency, left, -left);
            }
        }
    }

    // ------------------------------------------------------------------ deposits, withdrawals

    fn deposit(
        &mut self,
        user: UserId,
        currency: CurrencyId,
        amount: u64,
        events: &mut Vec<Event>,
    ) {
        let code = if user.0 >= self.users_max {
            Some(RejectCode::UnknownUser)
        } else if currency.0 as usize >= self.currencies {
            Some(RejectCode::UnknownCurrency)
        } else if amount == 0 {
            Some(RejectCode::InvalidAmount)
        } else if self.supply(currency) as i128 + i128::from(amount) > AMOUNT_MAX {
            Some(RejectCode::AmountOverflow)
        } else {
            None
        };
        if let Some(code) = code {
            return events.push(Event::Rejected {
                user,
                client_order_id: ClientOrderId(0),
                code,
            });
        }
        *self.supply.entry(currency).or_insert(0) += i128::from(amount);
        if !self.is_open(user) {
            self.opened.push(user);
            self.opened.sort();
        }
        self.change(user, currency, i128::from(amount), 0);
        events.push(Event::Deposited {
            user,
            currency,
            amount,
        });
        events.push(self.balance_update(user, currency));
    }

    fn withdraw(
        &mut self,
        user: UserId,
        currency: CurrencyId,
        amount: u64,
        events: &mut Vec<Event>,
    ) {
        // The lowest free slot of the pending-withdrawal pool.
        let slot =
            (0..self.withdrawals_max).find(|s| self.withdrawals.iter().all(|w| w.slot != *s));
        let code = if !self.is_open(user) {
            Some(RejectCode::UnknownUser)
        } else if currency.0 as usize >= self.currencies {
            Some(RejectCode::UnknownCurrency)
        } else if amount == 0 {
            Some(RejectCode::InvalidAmount)
        } else if self.withdrawals.iter().filter(|w| w.user == user).count()
            >= self.withdrawals_per_user
        {
            Some(RejectCode::WithdrawalLimit)
        } else if slot.is_none() {
            Some(RejectCode::WithdrawalPoolFull)
        } else if self.get(user, currency).0 < i128::from(amount) {
            Some(RejectCode::InsufficientFunds)
        } else {
            None
        };
        if let Some(code) = code {
            return events.push(Event::Rejected {
                user,
                client_order_id: ClientOrderId(0),
                code,
            });
        }
        let amount_i = i128::from(amount);
        self.change(user, currency, -amount_i, amount_i);
        let id = self.next_withdrawal_id;
        self.next_withdrawal_id += 1;
        self.withdrawals.push(RefWithdrawal {
            slot: slot.expect("checked"),
            id,
            user,
            currency,
            amount: amount_i,
            first_approval: None,
        });
        events.push(Event::WithdrawalRequested {
            withdrawal_id: WithdrawalId(id),
            user,
            currency,
            amount,
        });
        events.push(self.balance_update(user, currency));
    }

    /// The position of pending withdrawal `id` in `self.withdrawals`, or the operator reject.
    fn find_withdrawal(&self, operator: OperatorId, id: WithdrawalId) -> Result<usize, RejectCode> {
        if !self.operators.contains(&operator) {
            return Err(RejectCode::NotAnOperator);
        }
        self.withdrawals
            .iter()
            .position(|w| w.id == id.0)
            .ok_or(RejectCode::UnknownWithdrawal)
    }

    fn approve(&mut self, operator: OperatorId, id: WithdrawalId, events: &mut Vec<Event>) {
        let operator_reject = |code| Event::OperatorRejected {
            operator,
            withdrawal_id: id,
            code,
        };
        let pos = match self.find_withdrawal(operator, id) {
            Ok(pos) => pos,
            Err(code) => return events.push(operator_reject(code)),
        };
        let w = self.withdrawals[pos];
        match w.first_approval {
            None => {
                self.withdrawals[pos].first_approval = Some(operator);
                events.push(Event::WithdrawalApproved {
                    withdrawal_id: id,
                    operator,
                    user: w.user,
                    approvals: 1,
                });
            }
            Some(first) if first == operator => {
                events.push(operator_reject(RejectCode::DuplicateApproval))
            }
            Some(_) => {
                // The second distinct operator: the locked amount leaves the system.
                self.withdrawals.remove(pos);
                self.change(w.user, w.currency, 0, -w.amount);
                let supply = self.supply.entry(w.currency).or_insert(0);
                *supply -= w.amount;
                assert!(*supply >= 0);
                events.push(Event::WithdrawalApproved {
                    withdrawal_id: id,
                    operator,
                    user: w.user,
                    approvals: 2,
                });
                events.push(Event::WithdrawalCompleted {
                    withdrawal_id: id,
                    user: w.user,
                    currency: w.currency,
                    amount: u64::try_from(w.amount).expect("in range"),
                });
                events.push(self.balance_update(w.user, w.currency));
            }
        }
    }

    fn reject_withdrawal(
        &mut self,
        operator: OperatorId,
        id: WithdrawalId,
        events: &mut Vec<Event>,
    ) {
        let pos = match self.find_withdrawal(operator, id) {
            Ok(pos) => pos,
            Err(code) => {
                return events.push(Event::OperatorRejected {
                    operator,
                    withdrawal_id: id,
                    code,
                })
            }
        };
        let w = self.withdrawals.remove(pos);
        self.change(w.user, w.currency, w.amount, -w.amount);
        events.push(Event::WithdrawalRejected {
            withdrawal_id: id,
            operator,
            user: w.user,
        });
        events.push(self.balance_update(w.user, w.currency));
    }

    // ------------------------------------------------------------------ invariants

    /// docs/risk.md's invariant, checked on the model itself: per currency
    /// `Σ(available + locked) + fees = supply`, and each user's `locked` is exactly the locks of
    /// their live orders plus their pending withdrawals; the model's orders are the book's.
    fn check(&self) {
        let mut expected: BTreeMap<(UserId, CurrencyId), i128> = BTreeMap::new();
        for held in self.orders.values() {
            let (currency, amount) = self.markets[held.symbol.0 as usize]
                .lock(held.side, held.price, held.open)
                .expect("it fitted when locked");
            *expected.entry((held.user, currency)).or_insert(0) += amount;
        }
        for w in &self.withdrawals {
            *expected.entry((w.user, w.currency)).or_insert(0) += w.amount;
        }
        for (&(user, currency), &(_, locked)) in &self.balances {
            let want = expected.remove(&(user, currency)).unwrap_or(0);
            assert_eq!(locked, want, "locked of user {user} currency {currency}");
        }
        assert!(
            expected.values().all(|&v| v == 0),
            "locks without a balance: {expected:?}"
        );
        for c in 0..self.currencies {
            let c = CurrencyId(c as u16);
            let held: i128 = self
                .balances
                .iter()
                .filter(|((_, currency), _)| *currency == c)
                .map(|(_, (a, l))| a + l)
                .sum();
            let fees = self.fees.get(&c).copied().unwrap_or(0);
            assert_eq!(
                held + fees,
                self.supply(c) as i128,
                "currency {c} not conserved"
            );
        }
        let mut live = BTreeMap::new();
        for s in 0..self.markets.len() {
            self.book.for_each_order(SymbolId(s as u16), |_, v| {
                live.insert(v.order_id, (v.user, v.side, v.price, v.leaves_qty.0));
            });
        }
        let mine: BTreeMap<_, _> = self
            .orders
            .iter()
            .map(|(id, h)| (*id, (h.user, h.side, h.price, h.open)))
            .collect();
        assert_eq!(live, mine, "the model's orders are not the book's");
    }

    // ------------------------------------------------------------------ queries

    /// The matching model.
    pub fn book(&self) -> &ReferenceBook {
        &self.book
    }

    /// A user's balance of one currency (zero for accounts never opened or unknown ids).
    pub fn balance(&self, user: UserId, currency: CurrencyId) -> Balance {
        let (available, locked) = self.get(user, currency);
        Balance {
            available: u64::try_from(available).expect("in range"),
            locked: u64::try_from(locked).expect("in range"),
        }
    }

    /// Fees collected in `currency`.
    pub fn fees(&self, currency: CurrencyId) -> u64 {
        let fees = self.fees.get(&currency).copied().unwrap_or(0);
        u64::try_from(fees).expect("in range")
    }

    /// Deposits minus completed withdrawals of `currency`.
    pub fn supply(&self, currency: CurrencyId) -> u64 {
        let supply = self.supply.get(&currency).copied().unwrap_or(0);
        u64::try_from(supply).expect("in range")
    }

    /// True once `user` has deposited.
    pub fn is_open(&self, user: UserId) -> bool {
        self.opened.contains(&user)
    }

    /// Pending withdrawals in pool-slot order (the engine reuses the lowest free slot).
    pub fn pending_withdrawals(&self) -> Vec<PendingWithdrawal> {
        let mut ws = self.withdrawals.clone();
        ws.sort_by_key(|w| w.slot);
        ws.iter()
            .map(|w| PendingWithdrawal {
                id: WithdrawalId(w.id),
                user: w.user,
                currency: w.currency,
                amount: u64::try_from(w.amount).expect("in range"),
                first_approval: w.first_approval,
            })
            .collect()
    }

    /// The digest of the whole state, fed in the same canonical sequence as
    /// `Engine::state_hash` with risk on: the book; then per open user (id order) every
    /// currency's available and locked; per currency fees and supply; the next withdrawal id;
    /// every pending withdrawal in slot order.
    pub fn state_hash(&self) -> StateHash {
        let mut h = StateHasher::default();
        self.book.hash_into(&mut h);
        for &user in &self.opened {
            h.u64(u64::from(user.0));
            for c in 0..self.currencies {
                let b = self.balance(user, CurrencyId(c as u16));
                h.u64(b.available);
                h.u64(b.locked);
            }
        }
        for c in 0..self.currencies {
            h.u64(self.fees(CurrencyId(c as u16)));
            h.u64(self.supply(CurrencyId(c as u16)));
        }
        h.u64(self.next_withdrawal_id);
        for w in self.pending_withdrawals() {
            h.u64(w.id.0);
            h.u64(u64::from(w.user.0));
            h.u64(u64::from(w.currency.0));
            h.u64(w.amount);
            h.u64(w.first_approval.map_or(u64::MAX, |o| u64::from(o.0)));
        }
        h.finish()
    }
}
