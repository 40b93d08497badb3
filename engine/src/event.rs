//! Events: what comes out of the engine, with FIX execution-report semantics.
//!
//! Events are small `Copy` values handed to an [`EventSink`] by reference as they happen; the
//! engine never buffers or allocates them.

use crate::book::OrderView;
use crate::codes::{CancelReason, RejectCode};
#[cfg(doc)]
use crate::command::Query;
use crate::matching::FinishedOrder;
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, OrderId, OrderType, Price, Qty, Side, SymbolId, TradeId,
    UserId, WithdrawalId,
};

/// One side's view of a fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The order's owner.
    pub user: UserId,
    /// The owner's id for the order.
    pub client_order_id: ClientOrderId,
    /// The engine's id for the order.
    pub order_id: OrderId,
    /// The order's limit price (protection price for market orders): what its lock was sized
    /// by, so settlement can release it.
    pub limit_price: Price,
    /// Open quantity left after this fill (FIX LeavesQty).
    pub leaves_qty: Qty,
    /// Quantity filled so far, this fill included (FIX CumQty).
    pub cum_qty: Qty,
    /// Fee charged for this fill, in the quote currency's minimal units.
    pub fee: u64,
}

/// A trade between a resting (maker) and an incoming (taker) order, at the maker's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// The symbol.
    pub symbol: SymbolId,
    /// The trade's id: per symbol, dense, starting at 1.
    pub trade_id: TradeId,
    /// Engine time of the trade (the time of the command that caused it), Unix nanoseconds.
    pub ts: u64,
    /// Trade price (the maker's limit price).
    pub price: Price,
    /// Traded quantity.
    pub qty: Qty,
    /// The side of the incoming order.
    pub taker_side: Side,
    /// The resting order.
    pub maker: Fill,
    /// The incoming order.
    pub taker: Fill,
}

/// Something that happened inside the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new order passed validation and was given an order id (FIX ExecType=New).
    Accepted {
        /// The owner.
        user: UserId,
        /// The symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
        /// The engine's id for the order.
        order_id: OrderId,
        /// Buy or sell.
        side: Side,
        /// The order type.
        order_type: OrderType,
        /// Limit or protection price.
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Iceberg display size (0: not an iceberg, the whole open quantity is shown). The
        /// market-data builder needs it to know what the order shows once it rests.
        display_qty: Qty,
    },
    /// A command was refused; nothing changed (FIX ExecType=Rejected / CancelReject).
    Rejected {
        /// The user the command acted for.
        user: UserId,
        /// The client order id the command named (0 for mass cancel and account commands).
        client_order_id: ClientOrderId,
        /// Why.
        code: RejectCode,
    },
    /// A fill (FIX ExecType=Trade for both sides).
    Trade(Trade),
    /// An order, or part of it, left without trading. `leaves_qty` > 0 means the order is still
    /// live (a self-trade-prevention decrement); 0 means it is gone.
    Cancelled {
        /// The owner.
        user: UserId,
        /// The symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
        /// The engine's id for the order.
        order_id: OrderId,
        /// The order's side.
        side: Side,
        /// The order's limit (or protection) price.
        price: Price,
        /// Quantity cancelled.
        qty: Qty,
        /// Open quantity that remains live.
        leaves_qty: Qty,
        /// Why.
        reason: CancelReason,
    },
    /// An amend took effect (FIX ExecType=Replaced): the order now has this price and open qty.
    Amended {
        /// The owner.
        user: UserId,
        /// The symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
        /// The engine's id for the order.
        order_id: OrderId,
        /// The order's side.
        side: Side,
        /// The new price.
        price: Price,
        /// The new open quantity.
        qty: Qty,
        /// The price before the amend. With `side` and `prev_qty` it tells the market-data
        /// builder which level the order leaves and how much it showed there, so the builder
        /// needs no per-order copy of price and open quantity (docs/market-data.md).
        prev_price: Price,
        /// The open quantity before the amend.
        prev_qty: Qty,
    },
    /// A stop order's trigger was reached; it now enters the book as a limit or market order.
    Triggered {
        /// The owner.
        user: UserId,
        /// The symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
        /// The engine's id for the order.
        order_id: OrderId,
    },
    /// The summary that closes a mass cancel (after one `Cancelled` per order).
    MassCancelled {
        /// The owner.
        user: UserId,
        /// The symbol, or `None` for all symbols.
        symbol: Option<SymbolId>,
        /// How many orders were cancelled.
        count: u32,
    },
    /// Funds were credited.
    Deposited {
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Amount in minimal units.
        amount: u64,
    },
    /// A withdrawal was requested; its amount is locked pending approval.
    WithdrawalRequested {
        /// Its id, for the approvals.
        withdrawal_id: WithdrawalId,
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Amount in minimal units.
        amount: u64,
    },
    /// An operator approved a withdrawal.
    WithdrawalApproved {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// The approving operator.
        operator: OperatorId,
        /// The requesting user.
        user: UserId,
        /// Distinct approvals so far (2 completes it).
        approvals: u8,
    },
    /// A withdrawal's second approval arrived: the funds have left the exchange.
    WithdrawalCompleted {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Amount in minimal units.
        amount: u64,
    },
    /// An operator refused a withdrawal; its amount is unlocked.
    WithdrawalRejected {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// The refusing operator.
        operator: OperatorId,
        /// The requesting user.
        user: UserId,
    },
    /// An operator's command was refused.
    OperatorRejected {
        /// The operator.
        operator: OperatorId,
        /// The withdrawal the command named.
        withdrawal_id: WithdrawalId,
        /// Why.
        code: RejectCode,
    },
    /// A balance after a deposit or withdrawal step (trading changes follow from `Trade` and
    /// `Cancelled`; see docs/risk.md).
    BalanceUpdate {
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Available amount.
        available: u64,
        /// Locked amount.
        locked: u64,
    },

    // ------------------------------------------------ replies to `Command::Query`
    /// Reply to [`Query::Order`]: the live order (status NEW or PARTIALLY_FILLED), or else the
    /// newest finished order with that client order id in the user's window of recently
    /// finished orders (FILLED, CANCELLED, EXPIRED, REJECTED), or neither when the engine
    /// knows no such order (never placed, or finished longer ago than the window reaches:
    /// docs/matching.md, "Order status").
    OrderStatus {
        /// The user asked about.
        user: UserId,
        /// The client order id asked about.
        client_order_id: ClientOrderId,
        /// The live order as it stands.
        order: Option<OrderView>,
        /// The finished order, when it is not live.
        finished: Option<FinishedOrder>,
        /// The notional the order has filled (quote minimal units; 0 when unknown): with the
        /// filled quantity, the exact average price.
        filled_notional: u64,
    },
    /// One live order, in reply to [`Query::OpenOrders`].
    OpenOrder(OrderView),
    /// The end of a [`Query::OpenOrders`] reply.
    OpenOrdersEnd {
        /// The user asked about.
        user: UserId,
        /// Live orders the user has in all (more than were sent when over the query's limit).
        count: u32,
    },
    /// One currency of a [`Query::Balances`] reply.
    Balance {
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Available amount.
        available: u64,
        /// Locked amount.
        locked: u64,
    },
    /// The end of a [`Query::Balances`] reply.
    BalancesEnd {
        /// The account.
        user: UserId,
        /// `Balance` events sent (the number of configured currencies).
        count: u32,
    },
    /// One price level of a [`Query::Book`] reply.
    BookLevel {
        /// The symbol.
        symbol: SymbolId,
        /// Bid (`Buy`) or ask (`Sell`).
        side: Side,
        /// The level's price.
        price: Price,
        /// Visible quantity at the level (iceberg reserves are not shown).
        qty: Qty,
    },
    /// The end of a [`Query::Book`] reply.
    BookEnd {
        /// The symbol.
        symbol: SymbolId,
        /// Bid levels sent.
        bid_levels: u32,
        /// Ask levels sent.
        ask_levels: u32,
    },
}

/// Receives events as the engine produces them. Any `FnMut(&Event)` is a sink.
pub trait EventSink {
    /// Called once per event, in order.
    fn on_event(&mut self, event: &Event);
}

impl<F: FnMut(&Event)> EventSink for F {
    #[inline]
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}
