//! Events to rows: what one journaled command's events change in the tables.
//!
//! The [`Mapper`] holds what it needs between commands — the live orders, every balance, the
//! pending withdrawals, the open accounts — and appends each command's rows to a [`Batch`].
//! Orders, balances, withdrawals and candles are kept in the batch as their latest version
//! (one row each, upserted at commit); trades, ledger legs, approvals and new accounts are
//! appended. Everything is derived from the engine's events and the command, with the lock
//! arithmetic of the engine's risk stage ([`RiskSpec`]), so the ledger moves funds exactly as
//! the engine's risk and settlement stages do; the engine's own `BalanceUpdate` events are
//! checked against the ledger's balances as they pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use ringbook_engine::marketdata::Interval;
use ringbook_engine::risk::RiskSpec;
use ringbook_engine::{
    CancelReason, Command, Config, CurrencyId, Event, NewOrder, OrderType, Price, Qty, Side, Trade,
    UserId,
};

use crate::ProjectionError;

/// Order statuses as stored.
pub const LIVE_STATUSES: [&str; 2] = ["NEW", "PARTIALLY_FILLED"];

/// One row of `orders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub seq: u64,
    pub order_id: Option<u64>,
    pub user: u32,
    pub symbol: u16,
    pub client_order_id: u64,
    pub side: &'static str,
    pub order_type: &'static str,
    pub tif: &'static str,
    pub price: i64,
    pub stop_price: Option<i64>,
    pub qty: u64,
    pub display_qty: u64,
    pub post_only: bool,
    pub stp: &'static str,
    pub status: &'static str,
    pub leaves_qty: u64,
    pub filled_qty: u64,
    pub filled_notional: u64,
    pub fees: u64,
    pub reject_code: Option<u16>,
    pub reject_name: Option<&'static str>,
    pub cancel_reason: Option<&'static str>,
    pub triggered_ts: Option<u64>,
    pub created_ts: u64,
    pub updated_ts: u64,
    pub updated_seq: u64,
    /// A market buy's quote budget in minimal units (`None`: not a budget order).
    pub budget: Option<u64>,
    /// A GTD or DAY order's expiry, Unix ns (`None`: none).
    pub expire_at: Option<u64>,
    /// The side as the engine's type, for lock arithmetic (not stored).
    pub side_enum: Side,
}

/// One row of `trades`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    pub seq: u64,
    pub trade: Trade,
    pub notional: u64,
}

/// One entry of `ledger`: `amount` moves from one account to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    pub seq: u64,
    pub entry: u32,
    pub ts: u64,
    pub kind: &'static str,
    pub currency: u16,
    pub from_account: &'static str,
    pub from_user: Option<u32>,
    pub to_account: &'static str,
    pub to_user: Option<u32>,
    pub amount: i64,
    pub symbol: Option<u16>,
    pub order_id: Option<u64>,
    /// The `to` leg's order when it is not `order_id` (a trade's transfer: the paid
    /// counterparty's).
    pub to_order_id: Option<u64>,
    pub trade_id: Option<u64>,
    pub withdrawal_id: Option<u64>,
}

/// A user's balance of one currency, as the ledger has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceRow {
    pub available: i64,
    pub locked: i64,
    pub updated_seq: u64,
}

/// One row of `withdrawals`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WithdrawalRow {
    pub withdrawal_id: u64,
    pub user: u32,
    pub currency: u16,
    pub amount: u64,
    pub status: &'static str,
    pub approvals: u8,
    pub rejected_by: Option<u32>,
    pub requested_seq: u64,
    pub requested_ts: u64,
    pub finished_seq: Option<u64>,
    pub finished_ts: Option<u64>,
}

/// One row of `withdrawal_approvals`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalRow {
    pub withdrawal_id: u64,
    pub operator: u32,
    pub approvals: u8,
    pub seq: u64,
    pub ts: u64,
}

/// One row of `accounts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub user: u32,
    pub opened_seq: u64,
    pub opened_ts: u64,
}

/// A candle's trades within one batch; merged into the stored candle at commit (open kept,
/// high/low widened, close replaced, volumes and counts added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandleRow {
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: u64,
    pub quote_volume: u64,
    pub trades: u64,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
}

/// The rows of a run of consecutive commands, written in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    /// The first and last journal sequence it covers (0 when empty).
    pub first_seq: u64,
    pub last_seq: u64,
    /// Engine time of the first and last command.
    pub first_ts: u64,
    pub last_ts: u64,
    /// The digest of the last command's journal record ([`crate::record_digest`]).
    pub last_digest: u64,
    pub commands: u64,
    pub accounts: Vec<AccountRow>,
    pub orders: BTreeMap<u64, OrderRow>,
    pub trades: Vec<TradeRow>,
    pub ledger: Vec<LedgerRow>,
    pub balances: BTreeMap<(u32, u16), BalanceRow>,
    pub withdrawals: BTreeMap<u64, WithdrawalRow>,
    pub approvals: Vec<ApprovalRow>,
    /// Keyed by (symbol, interval index, open time).
    pub candles: BTreeMap<(u16, u8, u64), CandleRow>,
}

impl Batch {
    /// Rows the batch writes (upserted rows counted once).
    pub fn rows(&self) -> usize {
        self.accounts.len()
            + self.orders.len()
            + self.trades.len()
            + self.ledger.len()
            + self.balances.len()
            + self.withdrawals.len()
            + self.approvals.len()
            + self.candles.len()
    }

    /// No command in it.
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }
}

/// What the mapper carries from command to command.
#[derive(Debug)]
pub struct Mapper {
    specs: Vec<RiskSpec>,
    live: HashMap<u64, OrderRow>,
    balances: HashMap<(u32, u16), BalanceRow>,
    pending: HashMap<u64, WithdrawalRow>,
    accounts: HashSet<u32>,
}

/// Per-command context.
struct Cx {
    seq: u64,
    ts: u64,
    entry: u32,
    /// The budget market buy this command placed, while it executes: its lock is the budget,
    /// not `qty × unit lock` (engine/src/settlement.rs, docs/risk.md "Budget orders").
    budget: Option<BudgetLock>,
}

/// What is still locked of a budget order's budget.
#[derive(Clone, Copy, Debug)]
struct BudgetLock {
    order_id: u64,
    user: u32,
    currency: u16,
    left: u64,
}

fn amount(v: u64) -> Result<i64, ProjectionError> {
    i64::try_from(v).map_err(|_| {
        ProjectionError::Data(format!(
            "amount {v} does not fit a BIGINT (the projection stores amounts up to 2^63 - 1)"
        ))
    })
}

fn side_name(s: Side) -> &'static str {
    s.name()
}

fn reason_name(r: CancelReason) -> &'static str {
    r.name()
}

impl Mapper {
    /// A mapper for a projection that starts empty.
    pub fn new(config: &Config) -> Mapper {
        Mapper {
            specs: RiskSpec::all(config),
            live: HashMap::new(),
            balances: HashMap::new(),
            pending: HashMap::new(),
            accounts: HashSet::new(),
        }
    }

    /// Restores what a resumed projection carries, from the tables.
    pub fn restore(
        &mut self,
        live: Vec<OrderRow>,
        balances: Vec<((u32, u16), BalanceRow)>,
        pending: Vec<WithdrawalRow>,
        accounts: Vec<u32>,
    ) {
        self.live = live
            .into_iter()
            .filter_map(|o| o.order_id.map(|id| (id, o)))
            .collect();
        self.balances = balances.into_iter().collect();
        self.pending = pending.into_iter().map(|w| (w.withdrawal_id, w)).collect();
        self.accounts = accounts.into_iter().collect();
    }

    /// Live orders known (for tests and reports).
    pub fn live_orders(&self) -> usize {
        self.live.len()
    }

    /// Maps one command's events (in order) into `batch`.
    pub fn apply(
        &mut self,
        seq: u64,
        ts: u64,
        cmd: &Command,
        events: &[Event],
        batch: &mut Batch,
    ) -> Result<(), ProjectionError> {
        if batch.commands == 0 {
            batch.first_seq = seq;
            batch.first_ts = ts;
        }
        batch.last_seq = seq;
        batch.last_ts = ts;
        batch.commands += 1;
        let mut cx = Cx {
            seq,
            ts,
            entry: 0,
            budget: None,
        };
        let new_order = match cmd {
            Command::NewOrder(o) => Some(o),
            _ => None,
        };
        let mut placed = false;
        for e in events {
            match *e {
                Event::Accepted {
                    order_id,
                    side,
                    order_type,
                    price,
                    qty,
                    display_qty,
                    ..
                } => {
                    let o = new_order.ok_or_else(|| {
                        ProjectionError::Data(format!(
                            "record {seq}: an order was accepted for a command that is not a new order"
                        ))
                    })?;
                    placed = true;
                    let mut row = order_row(seq, ts, o, "NEW");
                    row.order_id = Some(order_id.0);
                    row.side_enum = side;
                    row.side = side_name(side);
                    row.order_type = order_type.name();
                    row.price = price.0;
                    row.qty = qty.0;
                    row.leaves_qty = qty.0;
                    row.display_qty = display_qty.0;
                    let (currency, locked) = if o.budget > 0 {
                        // A budget buy locks its budget, in the quote currency.
                        let quote = self
                            .specs
                            .get(usize::from(o.symbol.0))
                            .ok_or_else(|| {
                                ProjectionError::Data(format!(
                                    "record {seq}: unknown symbol {}",
                                    o.symbol.0
                                ))
                            })?
                            .quote;
                        cx.budget = Some(BudgetLock {
                            order_id: order_id.0,
                            user: o.user.0,
                            currency: quote.0,
                            left: o.budget,
                        });
                        (quote, o.budget)
                    } else {
                        self.lock_of(o.symbol.0, side, price, qty, seq)?
                    };
                    self.entry(
                        &mut cx,
                        batch,
                        "lock",
                        currency,
                        &[("available", -amount(locked)?), ("locked", amount(locked)?)],
                        o.user.0,
                        Refs {
                            symbol: Some(o.symbol.0),
                            order_id: Some(order_id.0),
                            to_order_id: None,
                            ..Refs::default()
                        },
                    )?;
                    self.live.insert(order_id.0, row);
                    batch.orders.insert(seq, row);
                }
                Event::Rejected { code, .. } => {
                    if let (Some(o), false) = (new_order, placed) {
                        let mut row = order_row(seq, ts, o, "REJECTED");
                        row.leaves_qty = 0;
                        row.reject_code = Some(code.code());
                        row.reject_name = Some(code.name());
                        batch.orders.insert(seq, row);
                    }
                }
                Event::Trade(ref t) => self.trade(&mut cx, batch, t)?,
                Event::Cancelled {
                    order_id,
                    symbol,
                    user,
                    side,
                    price,
                    qty,
                    leaves_qty,
                    reason,
                    ..
                } => {
                    let (currency, unlocked) = match cx.budget {
                        // The budget order: what is left of its budget comes back when it
                        // ends (a decrement that leaves it live releases nothing).
                        Some(b) if b.order_id == order_id.0 => {
                            if leaves_qty.0 == 0 {
                                cx.budget = None;
                            }
                            (
                                CurrencyId(b.currency),
                                if leaves_qty.0 == 0 { b.left } else { 0 },
                            )
                        }
                        _ => self.lock_of(symbol.0, side, price, qty, seq)?,
                    };
                    if unlocked > 0 {
                        self.entry(
                            &mut cx,
                            batch,
                            "unlock",
                            currency,
                            &[
                                ("locked", -amount(unlocked)?),
                                ("available", amount(unlocked)?),
                            ],
                            user.0,
                            Refs {
                                symbol: Some(symbol.0),
                                order_id: Some(order_id.0),
                                to_order_id: None,
                                ..Refs::default()
                            },
                        )?;
                    }
                    let row = self.live_order(order_id.0, seq)?;
                    row.leaves_qty = leaves_qty.0;
                    row.cancel_reason = Some(reason_name(reason));
                    row.updated_ts = ts;
                    row.updated_seq = seq;
                    if leaves_qty.0 == 0 {
                        row.status = if reason == CancelReason::Expired {
                            "EXPIRED"
                        } else {
                            "CANCELLED"
                        };
                    }
                    let row = *row;
                    self.store_order(batch, row);
                }
                Event::Amended {
                    order_id,
                    symbol,
                    user,
                    price,
                    qty,
                    ..
                } => {
                    let row = *self.live_order(order_id.0, seq)?;
                    let (currency, old) = self.lock_of(
                        symbol.0,
                        row.side_enum,
                        Price(row.price),
                        Qty(row.leaves_qty),
                        seq,
                    )?;
                    let (_, new) = self.lock_of(symbol.0, row.side_enum, price, qty, seq)?;
                    let refs = Refs {
                        symbol: Some(symbol.0),
                        order_id: Some(order_id.0),
                        to_order_id: None,
                        ..Refs::default()
                    };
                    if new > old {
                        let d = amount(new - old)?;
                        let legs = [("available", -d), ("locked", d)];
                        self.entry(&mut cx, batch, "lock", currency, &legs, user.0, refs)?;
                    } else if old > new {
                        let d = amount(old - new)?;
                        let legs = [("locked", -d), ("available", d)];
                        self.entry(&mut cx, batch, "unlock", currency, &legs, user.0, refs)?;
                    }
                    let row = self.live_order(order_id.0, seq)?;
                    row.price = price.0;
                    row.leaves_qty = qty.0;
                    row.updated_ts = ts;
                    row.updated_seq = seq;
                    let row = *row;
                    self.store_order(batch, row);
                }
                Event::Triggered { order_id, .. } => {
                    let row = self.live_order(order_id.0, seq)?;
                    row.triggered_ts = Some(ts);
                    row.updated_ts = ts;
                    row.updated_seq = seq;
                    let row = *row;
                    self.store_order(batch, row);
                }
                Event::Deposited {
                    user,
                    currency,
                    amount: a,
                } => {
                    if self.accounts.insert(user.0) {
                        batch.accounts.push(AccountRow {
                            user: user.0,
                            opened_seq: seq,
                            opened_ts: ts,
                        });
                    }
                    let a = amount(a)?;
                    self.entry(
                        &mut cx,
                        batch,
                        "deposit",
                        currency,
                        &[("external", -a), ("available", a)],
                        user.0,
                        Refs::default(),
                    )?;
                }
                Event::WithdrawalRequested {
                    withdrawal_id,
                    user,
                    currency,
                    amount: a,
                } => {
                    let w = WithdrawalRow {
                        withdrawal_id: withdrawal_id.0,
                        user: user.0,
                        currency: currency.0,
                        amount: a,
                        status: "PENDING",
                        approvals: 0,
                        rejected_by: None,
                        requested_seq: seq,
                        requested_ts: ts,
                        finished_seq: None,
                        finished_ts: None,
                    };
                    let a = amount(a)?;
                    self.entry(
                        &mut cx,
                        batch,
                        "lock",
                        currency,
                        &[("available", -a), ("locked", a)],
                        user.0,
                        Refs {
                            withdrawal_id: Some(withdrawal_id.0),
                            ..Refs::default()
                        },
                    )?;
                    self.pending.insert(w.withdrawal_id, w);
                    batch.withdrawals.insert(w.withdrawal_id, w);
                }
                Event::WithdrawalApproved {
                    withdrawal_id,
                    operator,
                    approvals,
                    ..
                } => {
                    let w = self.pending_withdrawal(withdrawal_id.0, seq)?;
                    w.approvals = approvals;
                    let w = *w;
                    batch.withdrawals.insert(w.withdrawal_id, w);
                    batch.approvals.push(ApprovalRow {
                        withdrawal_id: withdrawal_id.0,
                        operator: operator.0,
                        approvals,
                        seq,
                        ts,
                    });
                }
                Event::WithdrawalCompleted {
                    withdrawal_id,
                    user,
                    currency,
                    amount: a,
                } => {
                    let mut w = *self.pending_withdrawal(withdrawal_id.0, seq)?;
                    self.pending.remove(&withdrawal_id.0);
                    w.status = "COMPLETED";
                    w.finished_seq = Some(seq);
                    w.finished_ts = Some(ts);
                    batch.withdrawals.insert(w.withdrawal_id, w);
                    let a = amount(a)?;
                    self.entry(
                        &mut cx,
                        batch,
                        "withdrawal",
                        currency,
                        &[("locked", -a), ("external", a)],
                        user.0,
                        Refs {
                            withdrawal_id: Some(withdrawal_id.0),
                            ..Refs::default()
                        },
                    )?;
                }
                Event::WithdrawalRejected {
                    withdrawal_id,
                    operator,
                    user,
                } => {
                    let mut w = *self.pending_withdrawal(withdrawal_id.0, seq)?;
                    self.pending.remove(&withdrawal_id.0);
                    w.status = "REJECTED";
                    w.rejected_by = Some(operator.0);
                    w.finished_seq = Some(seq);
                    w.finished_ts = Some(ts);
                    batch.withdrawals.insert(w.withdrawal_id, w);
                    let a = amount(w.amount)?;
                    self.entry(
                        &mut cx,
                        batch,
                        "unlock",
                        CurrencyId(w.currency),
                        &[("locked", -a), ("available", a)],
                        user.0,
                        Refs {
                            withdrawal_id: Some(withdrawal_id.0),
                            ..Refs::default()
                        },
                    )?;
                }
                Event::BalanceUpdate {
                    user,
                    currency,
                    available,
                    locked,
                } => {
                    // The engine says what the balance is after an account command: the
                    // ledger must agree, or the projection is wrong and must not go on.
                    let b = self
                        .balances
                        .get(&(user.0, currency.0))
                        .copied()
                        .unwrap_or_default();
                    if (b.available, b.locked) != (amount(available)?, amount(locked)?) {
                        return Err(ProjectionError::Data(format!(
                            "record {seq}: the engine reports user {} currency {} at \
                             available {available} locked {locked}, the ledger at available {} \
                             locked {}",
                            user.0, currency.0, b.available, b.locked
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn lock_of(
        &self,
        symbol: u16,
        side: Side,
        price: Price,
        qty: Qty,
        seq: u64,
    ) -> Result<(CurrencyId, u64), ProjectionError> {
        self.specs
            .get(usize::from(symbol))
            .and_then(|s| s.lock(side, price, qty))
            .ok_or_else(|| {
                ProjectionError::Data(format!(
                    "record {seq}: no lock for symbol {symbol} {side:?} {} x {}",
                    price.0, qty.0
                ))
            })
    }

    fn live_order(&mut self, order_id: u64, seq: u64) -> Result<&mut OrderRow, ProjectionError> {
        self.live.get_mut(&order_id).ok_or_else(|| {
            ProjectionError::Data(format!(
                "record {seq}: order {order_id} is not live in the projection"
            ))
        })
    }

    fn pending_withdrawal(
        &mut self,
        id: u64,
        seq: u64,
    ) -> Result<&mut WithdrawalRow, ProjectionError> {
        self.pending.get_mut(&id).ok_or_else(|| {
            ProjectionError::Data(format!(
                "record {seq}: withdrawal {id} is not pending in the projection"
            ))
        })
    }

    /// Records the order's new version; a finished order leaves the live set.
    fn store_order(&mut self, batch: &mut Batch, row: OrderRow) {
        if row.leaves_qty == 0 {
            if let Some(id) = row.order_id {
                self.live.remove(&id);
            }
        }
        batch.orders.insert(row.seq, row);
    }

    fn trade(&mut self, cx: &mut Cx, batch: &mut Batch, t: &Trade) -> Result<(), ProjectionError> {
        let seq = cx.seq;
        let spec = *self.specs.get(usize::from(t.symbol.0)).ok_or_else(|| {
            ProjectionError::Data(format!("record {seq}: unknown symbol {}", t.symbol.0))
        })?;
        let notional = u64::try_from(t.price.0)
            .ok()
            .and_then(|p| p.checked_mul(t.qty.0))
            .and_then(|n| n.checked_mul(spec.tick_size))
            .ok_or_else(|| ProjectionError::Data(format!("record {seq}: notional overflow")))?;
        batch.trades.push(TradeRow {
            seq,
            trade: *t,
            notional,
        });
        for fill in [&t.maker, &t.taker] {
            let row = self.live_order(fill.order_id.0, seq)?;
            row.leaves_qty = fill.leaves_qty.0;
            row.filled_qty = fill.cum_qty.0;
            row.filled_notional += notional;
            row.fees += fill.fee;
            row.status = if fill.leaves_qty.0 == 0 {
                "FILLED"
            } else {
                "PARTIALLY_FILLED"
            };
            row.updated_ts = cx.ts;
            row.updated_seq = seq;
            let row = *row;
            self.store_order(batch, row);
        }
        // Funds, as the settlement stage moves them (engine/src/settlement.rs).
        let (buyer, seller) = match t.taker_side {
            Side::Buy => (&t.taker, &t.maker),
            Side::Sell => (&t.maker, &t.taker),
        };
        let base = t.qty.0 * spec.lot_size;
        let budget = cx
            .budget
            .as_mut()
            .filter(|b| b.order_id == t.taker.order_id.0);
        let released = match budget {
            // A budget order pays exactly what it spends out of its budget.
            Some(b) => {
                let spent = notional + buyer.fee;
                b.left = b.left.checked_sub(spent).ok_or_else(|| {
                    ProjectionError::Data(format!(
                        "record {seq}: a budget order spent past its budget"
                    ))
                })?;
                spent
            }
            None => spec
                .buy_unit_lock(buyer.limit_price)
                .and_then(|u| u.checked_mul(t.qty.0))
                .ok_or_else(|| ProjectionError::Data(format!("record {seq}: lock overflow")))?,
        };
        let unused = released.checked_sub(notional + buyer.fee).ok_or_else(|| {
            ProjectionError::Data(format!(
                "record {seq}: a buy's lock does not cover its fill"
            ))
        })?;
        let refs = |order: u64| Refs {
            symbol: Some(t.symbol.0),
            order_id: Some(order),
            to_order_id: None,
            trade_id: Some(t.trade_id.0),
            withdrawal_id: None,
        };
        // A transfer between buyer and seller: each leg names its own user's order.
        let between = |from: u64, to: u64| Refs {
            to_order_id: Some(to),
            ..refs(from)
        };
        let n = amount(notional)?;
        let b = amount(base)?;
        // The quote leg: the buyer's locked funds pay the seller.
        self.entry2(
            cx,
            batch,
            "trade",
            spec.quote,
            [
                ("locked", Some(buyer.user), -n),
                ("available", Some(seller.user), n),
            ],
            between(buyer.order_id.0, seller.order_id.0),
        )?;
        // The base leg: the seller's locked base goes to the buyer.
        self.entry2(
            cx,
            batch,
            "trade",
            spec.base,
            [
                ("locked", Some(seller.user), -b),
                ("available", Some(buyer.user), b),
            ],
            between(seller.order_id.0, buyer.order_id.0),
        )?;
        // Fees: the buyer's from its lock, the seller's from its proceeds.
        if buyer.fee > 0 {
            let f = amount(buyer.fee)?;
            self.entry2(
                cx,
                batch,
                "fee",
                spec.quote,
                [("locked", Some(buyer.user), -f), ("fees", None, f)],
                refs(buyer.order_id.0),
            )?;
        }
        if seller.fee > 0 {
            let f = amount(seller.fee)?;
            self.entry2(
                cx,
                batch,
                "fee",
                spec.quote,
                [("available", Some(seller.user), -f), ("fees", None, f)],
                refs(seller.order_id.0),
            )?;
        }
        // What the buyer locked for these lots beyond what it paid (a better price, a lower
        // fee) comes back.
        if unused > 0 {
            let u = amount(unused)?;
            self.entry2(
                cx,
                batch,
                "unlock",
                spec.quote,
                [
                    ("locked", Some(buyer.user), -u),
                    ("available", Some(buyer.user), u),
                ],
                refs(buyer.order_id.0),
            )?;
        }
        // A budget order that filled its cap is done: the rest of its budget comes back.
        if let Some(b) = cx
            .budget
            .filter(|b| b.order_id == t.taker.order_id.0 && t.taker.leaves_qty.0 == 0)
        {
            cx.budget = None;
            if b.left > 0 {
                let l = amount(b.left)?;
                self.entry2(
                    cx,
                    batch,
                    "unlock",
                    CurrencyId(b.currency),
                    [
                        ("locked", Some(UserId(b.user)), -l),
                        ("available", Some(UserId(b.user)), l),
                    ],
                    refs(b.order_id),
                )?;
            }
        }
        // Candles of every interval.
        for interval in Interval::ALL {
            let key = (t.symbol.0, interval as u8, interval.open_time(t.ts));
            let c = batch.candles.entry(key).or_insert(CandleRow {
                open: t.price.0,
                high: t.price.0,
                low: t.price.0,
                close: t.price.0,
                volume: 0,
                quote_volume: 0,
                trades: 0,
                first_trade_id: t.trade_id.0,
                last_trade_id: t.trade_id.0,
            });
            c.high = c.high.max(t.price.0);
            c.low = c.low.min(t.price.0);
            c.close = t.price.0;
            c.volume += t.qty.0;
            c.quote_volume += notional;
            c.trades += 1;
            c.last_trade_id = t.trade_id.0;
        }
        Ok(())
    }

    /// An entry whose legs all belong to `user` (or to no user: fees, external).
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        cx: &mut Cx,
        batch: &mut Batch,
        kind: &'static str,
        currency: CurrencyId,
        legs: &[(&'static str, i64)],
        user: u32,
        refs: Refs,
    ) -> Result<(), ProjectionError> {
        let legs = [legs[0], legs[1]].map(|(account, a)| {
            let owner = matches!(account, "available" | "locked").then_some(UserId(user));
            (account, owner, a)
        });
        self.entry2(cx, batch, kind, currency, legs, refs)
    }

    /// An entry of two legs, the debited one first: `amount` moves from the first account to
    /// the second.
    fn entry2(
        &mut self,
        cx: &mut Cx,
        batch: &mut Batch,
        kind: &'static str,
        currency: CurrencyId,
        legs: [(&'static str, Option<UserId>, i64); 2],
        refs: Refs,
    ) -> Result<(), ProjectionError> {
        debug_assert!(legs[0].2 == -legs[1].2 && legs[1].2 >= 0, "from, then to");
        if legs[1].2 == 0 {
            return Ok(());
        }
        cx.entry += 1;
        for (account, user, a) in legs {
            if let Some(u) = user {
                let b = self.balances.entry((u.0, currency.0)).or_default();
                match account {
                    "available" => b.available += a,
                    _ => b.locked += a,
                }
                if b.available < 0 || b.locked < 0 {
                    return Err(ProjectionError::Data(format!(
                        "record {}: user {} currency {} would go negative ({kind})",
                        cx.seq, u.0, currency.0
                    )));
                }
                b.updated_seq = cx.seq;
                batch.balances.insert((u.0, currency.0), *b);
            }
        }
        let [(from_account, from_user, _), (to_account, to_user, amount)] = legs;
        batch.ledger.push(LedgerRow {
            seq: cx.seq,
            entry: cx.entry,
            ts: cx.ts,
            kind,
            currency: currency.0,
            from_account,
            from_user: from_user.map(|u| u.0),
            to_account,
            to_user: to_user.map(|u| u.0),
            amount,
            symbol: refs.symbol,
            order_id: refs.order_id,
            to_order_id: refs.to_order_id,
            trade_id: refs.trade_id,
            withdrawal_id: refs.withdrawal_id,
        });
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Refs {
    symbol: Option<u16>,
    /// The order of the paying (`from`) leg, and of the paid (`to`) leg when that is another's
    /// (a trade's transfer between buyer and seller).
    order_id: Option<u64>,
    to_order_id: Option<u64>,
    trade_id: Option<u64>,
    withdrawal_id: Option<u64>,
}

fn order_row(seq: u64, ts: u64, o: &NewOrder, status: &'static str) -> OrderRow {
    OrderRow {
        seq,
        order_id: None,
        user: o.user.0,
        symbol: o.symbol.0,
        client_order_id: o.client_order_id.0,
        side: side_name(o.side),
        order_type: o.order_type.name(),
        tif: o.tif.name(),
        price: o.price.0,
        stop_price: (o.order_type == OrderType::StopLimit || o.order_type == OrderType::StopMarket)
            .then_some(o.stop_price.0),
        qty: o.qty.0,
        display_qty: o.display_qty.0,
        post_only: o.post_only,
        stp: o.stp.name(),
        status,
        leaves_qty: o.qty.0,
        filled_qty: 0,
        filled_notional: 0,
        fees: 0,
        reject_code: None,
        reject_name: None,
        cancel_reason: None,
        triggered_ts: None,
        created_ts: ts,
        updated_ts: ts,
        updated_seq: seq,
        budget: (o.budget > 0).then_some(o.budget),
        expire_at: (o.expire_at > 0).then_some(o.expire_at),
        side_enum: o.side,
    }
}

/// The engine's side from its stored name.
pub fn side_from_name(s: &str) -> Option<Side> {
    match s {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::prelude::*;

    /// xorshift64*: deterministic commands without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn command(r: &mut Rng, coid: &mut [u64], withdrawals: u64) -> Command {
        let user = UserId(1 + r.below(5) as u32);
        let symbol = SymbolId(r.below(3) as u16);
        let mid = [15_000, 2_000, 19_000][symbol.0 as usize];
        let side = if r.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = Price(mid - 20 + r.below(41) as i64);
        match r.below(20) {
            0 => Command::Deposit {
                user,
                currency: CurrencyId(r.below(5) as u16),
                amount: 1 + r.below(10_000_000),
            },
            1 => Command::Withdraw {
                user,
                currency: CurrencyId(r.below(5) as u16),
                amount: 1 + r.below(10_000),
            },
            2 => Command::ApproveWithdrawal {
                operator: OperatorId(900 + r.below(3) as u32),
                withdrawal_id: WithdrawalId(1 + r.below(withdrawals.max(1))),
            },
            3 => Command::RejectWithdrawal {
                operator: OperatorId(900 + r.below(3) as u32),
                withdrawal_id: WithdrawalId(1 + r.below(withdrawals.max(1))),
            },
            4..=6 => Command::Cancel {
                user,
                symbol,
                client_order_id: ClientOrderId(coid[user.0 as usize].saturating_sub(r.below(6))),
            },
            7 | 8 => Command::Amend {
                user,
                symbol,
                client_order_id: ClientOrderId(coid[user.0 as usize].saturating_sub(r.below(6))),
                price,
                qty: Qty(r.below(15)),
            },
            9 => Command::MassCancel {
                user,
                symbol: None,
                on_disconnect: false,
            },
            _ => {
                coid[user.0 as usize] += 1;
                let c = ClientOrderId(coid[user.0 as usize]);
                let qty = Qty(1 + r.below(12));
                let mut o = NewOrder::limit(user, symbol, c, side, price, qty);
                match r.below(9) {
                    0 => {
                        o = NewOrder::market(
                            user,
                            symbol,
                            c,
                            side,
                            Price(if side == Side::Buy {
                                mid + 50
                            } else {
                                mid - 50
                            }),
                            qty,
                        )
                    }
                    1 => o.tif = TimeInForce::Ioc,
                    2 => o.tif = TimeInForce::Fok,
                    3 => o.post_only = true,
                    4 => o.stp = StpMode::Decrement,
                    5 => {
                        o.order_type = OrderType::StopLimit;
                        o.stop_price = Price(if side == Side::Buy { mid + 3 } else { mid - 3 });
                    }
                    6 => o.display_qty = Qty(2),
                    7 => {
                        o = NewOrder::market_budget(
                            user,
                            symbol,
                            c,
                            Price(mid + 50),
                            1 + r.below(mid as u64 * 20),
                        )
                    }
                    _ => {}
                }
                Command::NewOrder(o)
            }
        }
    }

    /// After every command, the ledger's balances are the engine's, for every user and
    /// currency, and the live orders are the engine's.
    #[test]
    fn the_ledger_moves_funds_exactly_as_the_engine() {
        let config = Config::default();
        for seed in 1..=4u64 {
            let mut mapper = Mapper::new(&config);
            let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut coid = vec![0u64; 8];
            let mut events = Vec::new();
            let mut batch = Batch::default();
            let mut withdrawals = 0;
            // Every user funded in every currency.
            let mut engine2 = Engine::new(&config).unwrap();
            let mut seq = 0;
            for u in 1..=5u32 {
                for c in 0..5u16 {
                    let cmd = Command::Deposit {
                        user: UserId(u),
                        currency: CurrencyId(c),
                        amount: 1_000_000_000,
                    };
                    seq += 1;
                    engine2.process_at(seq, &cmd, &mut |e: &Event| events.push(*e));
                    mapper.apply(seq, seq, &cmd, &events, &mut batch).unwrap();
                    events.clear();
                }
            }
            let mut engine = engine2;
            for _ in 0..3_000 {
                let cmd = command(&mut r, &mut coid, withdrawals);
                seq += 1;
                engine.process_at(seq * 1000, &cmd, &mut |e: &Event| events.push(*e));
                withdrawals += events
                    .iter()
                    .filter(|e| matches!(e, Event::WithdrawalRequested { .. }))
                    .count() as u64;
                mapper
                    .apply(seq, seq * 1000, &cmd, &events, &mut batch)
                    .unwrap_or_else(|e| panic!("seed {seed} seq {seq} {cmd:?}: {e}"));
                events.clear();
                for u in 1..=5u32 {
                    for c in 0..5u16 {
                        let e = engine.balance(UserId(u), CurrencyId(c));
                        let m = mapper.balances.get(&(u, c)).copied().unwrap_or_default();
                        assert_eq!(
                            (e.available as i64, e.locked as i64),
                            (m.available, m.locked),
                            "seed {seed} after {seq} {cmd:?}: user {u} currency {c}"
                        );
                    }
                }
                let mut live = 0;
                for s in 0..3u16 {
                    engine.for_each_order(SymbolId(s), |_, o| {
                        live += 1;
                        let m = mapper.live.get(&o.order_id.0).expect("live in the mapper");
                        assert_eq!(
                            (m.leaves_qty, m.filled_qty, m.price),
                            (o.leaves_qty.0, o.filled_qty.0, o.price.0)
                        );
                    });
                }
                assert_eq!(live, mapper.live_orders(), "seed {seed} after {seq}");
            }
            // Every entry moves a positive amount between two different accounts.
            for l in &batch.ledger {
                assert!(l.amount > 0, "{l:?}");
                assert_ne!(
                    (l.from_account, l.from_user),
                    (l.to_account, l.to_user),
                    "{l:?}"
                );
            }
            assert!(
                batch.trades.len() > 100,
                "seed {seed}: {} trades",
                batch.trades.len()
            );
        }
    }
}
