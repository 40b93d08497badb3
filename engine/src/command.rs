//! Commands: what travels into the engine. One `Copy` type, fixed size, no heap.

use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId,
    TimeInForce, UserId, WithdrawalId,
};

/// A new order with every instruction the engine supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The owner.
    pub user: UserId,
    /// The symbol.
    pub symbol: SymbolId,
    /// The owner's id for the order; must not name another of the owner's live orders.
    pub client_order_id: ClientOrderId,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, stop-limit or stop-market.
    pub order_type: OrderType,
    /// GTC, IOC or FOK.
    pub tif: TimeInForce,
    /// Limit price; for market and stop-market orders the protection price (the worst price the
    /// order may trade at).
    pub price: Price,
    /// Quantity in lots.
    pub qty: Qty,
    /// Trigger price for stop orders; `Price(0)` for every other type.
    pub stop_price: Price,
    /// Iceberg display quantity; `Qty(0)` shows the whole order.
    pub display_qty: Qty,
    /// Never take liquidity: cancelled with reason `POST_ONLY` if it would.
    pub post_only: bool,
    /// Self-trade prevention mode (this order's mode applies when it is the taker).
    pub stp: StpMode,
    /// Quote budget of a market buy, in the quote currency's minimal units, taker fee
    /// included (Upbit's `ord_type=price`); 0: not a budget order. A budget order buys until
    /// the next lot would take its spend past the budget; `qty` caps it in lots (0: only
    /// `max_order_qty` does). docs/matching.md, "Budget orders"; docs/risk.md for its lock.
    pub budget: u64,
    /// Expiry time of a GTD order, Unix nanoseconds; 0 for every other time in force (DAY
    /// orders take theirs from the configured session end). docs/matching.md, "Expiry".
    pub expire_at: u64,
}

impl NewOrder {
    /// A plain limit order (GTC unless changed), the most common shape.
    pub fn limit(
        user: UserId,
        symbol: SymbolId,
        client_order_id: ClientOrderId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> NewOrder {
        NewOrder {
            user,
            symbol,
            client_order_id,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price,
            qty,
            stop_price: Price(0),
            display_qty: Qty(0),
            post_only: false,
            stp: StpMode::None,
            budget: 0,
            expire_at: 0,
        }
    }

    /// A market order that may trade up to (buy) or down to (sell) `protection` price.
    pub fn market(
        user: UserId,
        symbol: SymbolId,
        client_order_id: ClientOrderId,
        side: Side,
        protection: Price,
        qty: Qty,
    ) -> NewOrder {
        NewOrder {
            order_type: OrderType::Market,
            tif: TimeInForce::Ioc,
            ..NewOrder::limit(user, symbol, client_order_id, side, protection, qty)
        }
    }

    /// A market buy for at most `budget` quote minimal units, taker fee included, up to
    /// `protection` price (docs/matching.md, "Budget orders"); no lot cap but `max_order_qty`.
    pub fn market_budget(
        user: UserId,
        symbol: SymbolId,
        client_order_id: ClientOrderId,
        protection: Price,
        budget: u64,
    ) -> NewOrder {
        NewOrder {
            budget,
            ..NewOrder::market(user, symbol, client_order_id, Side::Buy, protection, Qty(0))
        }
    }

    /// A limit order good till `expire_at` (Unix nanoseconds).
    pub fn limit_gtd(
        user: UserId,
        symbol: SymbolId,
        client_order_id: ClientOrderId,
        side: Side,
        price: Price,
        qty: Qty,
        expire_at: u64,
    ) -> NewOrder {
        NewOrder {
            tif: TimeInForce::Gtd,
            expire_at,
            ..NewOrder::limit(user, symbol, client_order_id, side, price, qty)
        }
    }
}

/// Everything the engine can be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Place an order.
    NewOrder(NewOrder),
    /// Cancel one live order (resting, or a stop not yet triggered).
    Cancel {
        /// The owner.
        user: UserId,
        /// The order's symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
    },
    /// Change a live order's price and open quantity (see docs/matching.md for priority rules).
    Amend {
        /// The owner.
        user: UserId,
        /// The order's symbol.
        symbol: SymbolId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
        /// The new limit (or protection) price.
        price: Price,
        /// The new open quantity; zero cancels.
        qty: Qty,
    },
    /// Cancel one live order named by its engine order id (docs/matching.md, "Order ids").
    CancelOrder {
        /// The owner.
        user: UserId,
        /// The order's symbol.
        symbol: SymbolId,
        /// The engine's id for the order.
        order_id: OrderId,
    },
    /// [`Command::Amend`] of a live order named by its engine order id.
    AmendOrder {
        /// The owner.
        user: UserId,
        /// The order's symbol.
        symbol: SymbolId,
        /// The engine's id for the order.
        order_id: OrderId,
        /// The new limit (or protection) price.
        price: Price,
        /// The new open quantity; zero cancels.
        qty: Qty,
    },
    /// Cancel every live order of a user, or of a user on one symbol.
    MassCancel {
        /// The owner.
        user: UserId,
        /// Only this symbol, or all symbols when `None`.
        symbol: Option<SymbolId>,
        /// Issued by the gateway because the owner's cancel-on-disconnect session ended: the
        /// orders are cancelled with reason `DISCONNECT` instead of `USER`.
        on_disconnect: bool,
    },
    /// Credit funds to a user (an operator action at the gateway); opens the account.
    Deposit {
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Amount in the currency's minimal units.
        amount: u64,
    },
    /// Ask to withdraw funds: the amount is locked until two operators approve or one rejects.
    Withdraw {
        /// The account.
        user: UserId,
        /// The currency.
        currency: CurrencyId,
        /// Amount in the currency's minimal units.
        amount: u64,
    },
    /// An operator approves a pending withdrawal (two distinct operators release it).
    ApproveWithdrawal {
        /// The approving operator.
        operator: OperatorId,
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
    },
    /// An operator refuses a pending withdrawal; its amount is unlocked.
    RejectWithdrawal {
        /// The refusing operator.
        operator: OperatorId,
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
    },
    /// A read-only question about the state. It is sequenced like any other command, so its
    /// answer reflects exactly the commands before it; it changes nothing.
    Query(Query),
    /// Nothing but time: the command's stamp moves engine time, and the orders whose expiry it
    /// reaches expire (docs/matching.md, "Expiry"). A script's `clock` line is one.
    Tick,
}

/// What a [`Command::Query`] asks. Each is answered by the stage that owns the state it reads
/// (the book by M, balances by S), as events that end with an `…End` event or, for
/// [`Query::Order`] and [`Query::OrderById`], one [`crate::Event::OrderStatus`]. See docs/matching.md, "Queries".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// One live order by its owner's client order id: one `OrderStatus` event.
    Order {
        /// The owner.
        user: UserId,
        /// The owner's id for the order.
        client_order_id: ClientOrderId,
    },
    /// One order by its engine order id, live or among the owner's recently finished ones:
    /// one `OrderStatus` event (another user's order is not found: a user's queries see only
    /// its own orders).
    OrderById {
        /// The owner.
        user: UserId,
        /// The engine's id for the order.
        order_id: OrderId,
    },
    /// The user's live orders (all symbols, in acceptance order), at most `limit` of them as
    /// `OpenOrder` events, then `OpenOrdersEnd` with how many are live in all.
    OpenOrders {
        /// The owner.
        user: UserId,
        /// The most `OpenOrder` events to emit.
        limit: u32,
    },
    /// The user's balance of every configured currency (`Balance` events in currency order),
    /// then `BalancesEnd`. Needs risk on and an open account.
    Balances {
        /// The account.
        user: UserId,
    },
    /// Level-2 depth of a symbol: up to `depth` bid levels best first, then up to `depth` ask
    /// levels best first (`BookLevel` events), then `BookEnd`.
    Book {
        /// The symbol.
        symbol: SymbolId,
        /// Levels per side at most.
        depth: u32,
    },
}

impl Query {
    /// The user the query is about; `None` for a book query (public data).
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Query::Order { user, .. }
            | Query::OrderById { user, .. }
            | Query::OpenOrders { user, .. }
            | Query::Balances { user } => Some(user),
            Query::Book { .. } => None,
        }
    }
}

impl Command {
    /// The user the command acts for; `None` for operator commands.
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Command::NewOrder(o) => Some(o.user),
            Command::Cancel { user, .. }
            | Command::Amend { user, .. }
            | Command::CancelOrder { user, .. }
            | Command::AmendOrder { user, .. }
            | Command::MassCancel { user, .. }
            | Command::Deposit { user, .. }
            | Command::Withdraw { user, .. } => Some(user),
            Command::ApproveWithdrawal { .. }
            | Command::RejectWithdrawal { .. }
            | Command::Tick => None,
            Command::Query(q) => q.user(),
        }
    }
}
