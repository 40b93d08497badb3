//! Newtypes for every identifier and fixed-point quantity the engine handles.
//!
//! Prices are integer ticks *per lot* of the symbol (see [`crate::config::SymbolConfig`]), so a
//! trade's notional in the quote currency's minimal units is `price × qty × tick_size`, computed
//! without division and checked in `i128`. Quantities are integer lots. No floats anywhere.

use std::fmt;

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// A price in ticks of the symbol (ticks per lot). Always within the symbol's price band.
    Price(i64)
);
newtype!(
    /// A quantity in lots of the symbol's base currency.
    Qty(u64)
);
newtype!(
    /// An order id, assigned by the engine in acceptance order, starting at 1.
    OrderId(u64)
);
newtype!(
    /// A user (account) id: an index below the configured `users_max`.
    UserId(u32)
);
newtype!(
    /// A symbol id: the symbol's dense index in the configuration.
    SymbolId(u16)
);
newtype!(
    /// A currency id: the currency's dense index in the configuration.
    CurrencyId(u16)
);
newtype!(
    /// The client's own id for an order; unique per user among the user's live orders.
    ClientOrderId(u64)
);
newtype!(
    /// An operator id (back-office staff who approve withdrawals), listed in the config.
    OperatorId(u32)
);
newtype!(
    /// A withdrawal request's id, assigned by the engine in request order, starting at 1.
    WithdrawalId(u64)
);
newtype!(
    /// A trade's id: per symbol, dense, starting at 1 (the symbol's first trade), in trade order.
    TradeId(u64)
);
newtype!(
    /// A command's sequence number, assigned before the risk stage and journaled.
    Seq(u64)
);

/// An enum of the shared vocabulary: every value with its one byte (the `#[repr(u8)]`
/// discriminant, used by the journal and the wire) and its one name (used by scenario scripts,
/// the JSON outputs and the web edge's requests).
pub trait Vocab: Copy + 'static {
    /// Every value, in byte order.
    const ALL: &'static [Self];
    /// The value's name.
    fn name(self) -> &'static str;
}

/// Declares the one table of a `#[repr(u8)]` vocabulary enum: each variant with its name.
/// Gives `name`, `from_name`, `from_u8`, `ALL` and the [`Vocab`] impl.
macro_rules! vocab {
    ($t:ident { $($v:ident = $name:literal),* $(,)? }) => {
        impl $t {
            /// Every value, in byte order.
            pub const ALL: [$t; [$($t::$v),*].len()] = [$($t::$v),*];

            /// The name used in scripts and JSON.
            pub fn name(self) -> &'static str {
                match self {
                    $($t::$v => $name,)*
                }
            }

            /// The value with this name (exactly as [`Self::name`] writes it), if any.
            pub fn from_name(name: &str) -> Option<$t> {
                match name {
                    $($name => Some($t::$v),)*
                    _ => None,
                }
            }

            /// The value with this byte (its `#[repr(u8)]` discriminant), if any.
            #[inline]
            pub const fn from_u8(v: u8) -> Option<$t> {
                $(if v == $t::$v as u8 {
                    return Some($t::$v);
                })*
                None
            }
        }

        impl $crate::types::Vocab for $t {
            const ALL: &'static [$t] = &$t::ALL;
            fn name(self) -> &'static str {
                $t::name(self)
            }
        }
    };
}
pub(crate) use vocab;

vocab!(Side { Buy = "BUY", Sell = "SELL" });
vocab!(OrderType {
    Limit = "LIMIT",
    Market = "MARKET",
    StopLimit = "STOP_LIMIT",
    StopMarket = "STOP_MARKET",
});
vocab!(TimeInForce { Gtc = "GTC", Ioc = "IOC", Fok = "FOK", Gtd = "GTD", Day = "DAY" });
vocab!(Liquidity { Maker = "MAKER", Taker = "TAKER" });
vocab!(StpMode {
    None = "NONE",
    CancelNewest = "CANCEL_NEWEST",
    CancelOldest = "CANCEL_OLDEST",
    CancelBoth = "CANCEL_BOTH",
    Decrement = "DECREMENT",
});

/// Which side of the book an order is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Buys base with quote; rests on the bid side (the default, for zeroed buffers).
    #[default]
    Buy = 0,
    /// Sells base for quote; rests on the ask side.
    Sell = 1,
}

impl Side {
    /// The other side.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Which part an order played in a trade: the resting order (maker) or the incoming one
/// (taker, the aggressor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Liquidity {
    /// The resting order (the default, for zeroed buffers).
    #[default]
    Maker = 0,
    /// The incoming order.
    Taker = 1,
}

/// How an order's price is interpreted and when it becomes active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    /// Trades at its limit price or better; a GTC remainder rests (the default, for zeroed
    /// buffers).
    #[default]
    Limit = 0,
    /// Trades immediately at any price up to its protection price; never rests.
    Market = 1,
    /// Waits for the last trade price to reach its stop price, then enters as a limit order.
    StopLimit = 2,
    /// Waits for the last trade price to reach its stop price, then enters as a market order.
    StopMarket = 3,
}

impl OrderType {
    /// True for the two stop types.
    #[inline]
    pub fn is_stop(self) -> bool {
        matches!(self, OrderType::StopLimit | OrderType::StopMarket)
    }

    /// True for the two types that trade as market orders once active.
    #[inline]
    pub fn is_market(self) -> bool {
        matches!(self, OrderType::Market | OrderType::StopMarket)
    }
}

/// Time in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled: a limit remainder rests (the default, for zeroed buffers).
    #[default]
    Gtc = 0,
    /// Immediate or cancel: the remainder is cancelled.
    Ioc = 1,
    /// Fill or kill: fills completely at once, or is cancelled without trading.
    Fok = 2,
    /// Good till date: like GTC, but a resting (or waiting stop) remainder expires at the
    /// order's `expire_at` (docs/matching.md, "Expiry").
    Gtd = 3,
    /// Day: like GTD, expiring at the next configured session end (`[schedule] day_end_utc`).
    Day = 4,
}

impl TimeInForce {
    /// True for the time in force values whose remainder rests: GTC, GTD and DAY.
    #[inline]
    pub fn rests(self) -> bool {
        matches!(self, TimeInForce::Gtc | TimeInForce::Gtd | TimeInForce::Day)
    }

    /// True for GTD and DAY: the order expires (docs/matching.md, "Expiry").
    #[inline]
    pub fn expires(self) -> bool {
        matches!(self, TimeInForce::Gtd | TimeInForce::Day)
    }
}

/// Self-trade prevention: what happens when an incoming order would trade with a resting order
/// of the same user. The incoming (taker) order's mode decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StpMode {
    /// No prevention: the two orders trade.
    #[default]
    None = 0,
    /// Cancel the incoming order's remainder; the resting order stays.
    CancelNewest = 1,
    /// Cancel the resting order and keep matching.
    CancelOldest = 2,
    /// Cancel both.
    CancelBoth = 3,
    /// Reduce both by the quantity that would have traded; whichever reaches zero is cancelled.
    Decrement = 4,
}

impl StpMode {}
