//! Reject codes and cancel reasons: stable numbers and names, published in the protocol.
//!
//! Codes are grouped by the stage that raises them: 1xxx gateway and session, 2xxx risk and
//! accounts, 3xxx order validation and matching. A published code is never renumbered; new codes
//! take the next free number in their range.

/// Why a command was rejected. `#[repr(u16)]`: the discriminant is the wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RejectCode {
    // ---- 1xxx: gateway and session ----
    /// A frame's body has the wrong length for its message type.
    MalformedFrame = 1001,
    /// A frame's length prefix is below the header size or above `FRAME_BYTES_MAX`; the connection is closed.
    FrameTooLarge = 1002,
    /// The message type is not one the client may send.
    UnknownMessageType = 1003,
    /// The frame's schema version is not one this server speaks.
    UnsupportedVersion = 1004,
    /// A field is out of range (an enum value, a flag bit, a non-zero padding byte, a bad name).
    InvalidField = 1005,
    /// The first message of a connection must be a login.
    NotLoggedIn = 1006,
    /// A second login on a logged-in connection, or a session id already attached elsewhere.
    AlreadyLoggedIn = 1007,
    /// Unknown login or wrong password (counted; repeated failures are slowed down).
    BadCredentials = 1008,
    /// Too many failed logins from this peer recently; try again later.
    LoginThrottled = 1009,
    /// The message names a user or operator id other than the session's own.
    NotYourAccount = 1010,
    /// Deposits and withdrawal approvals need an operator session.
    OperatorOnly = 1011,
    /// Orders, withdrawals and account queries need a user session.
    UserOnly = 1012,
    /// Reserved: the gateway's former per-session client-order-id check, no longer sent (the
    /// engine's per-user rule, [`RejectCode::DuplicateClientOrderId`], replaced it).
    ClientOrderIdNotIncreasing = 1013,
    /// Nothing arrived from the client for longer than the heartbeat timeout.
    HeartbeatTimeout = 1014,
    /// The session's outbound buffer filled: the client is not reading fast enough.
    SlowConsumer = 1015,
    /// The client sent more messages than the per-connection rate allows.
    Flood = 1016,
    /// No free connection or session slot.
    ServerFull = 1017,
    /// The requested retransmission starts before the oldest message the session still holds.
    RetransmitUnavailable = 1018,
    /// The server is shutting down.
    ShuttingDown = 1019,

    // ---- 2xxx: risk and accounts ----
    /// The user id is not below the configured `users_max`, or (with risk on) the user has no
    /// account yet: accounts open with their first deposit.
    UnknownUser = 2001,
    /// Available balance does not cover what the order or withdrawal must lock.
    InsufficientFunds = 2002,
    /// A deposit or withdrawal amount of zero.
    InvalidAmount = 2003,
    /// The currency id is not in the configuration.
    UnknownCurrency = 2004,
    /// Approving or rejecting a withdrawal needs an operator id listed in the config.
    NotAnOperator = 2005,
    /// This operator already approved this withdrawal; a second approval must come from another.
    DuplicateApproval = 2006,
    /// No pending withdrawal has this id.
    UnknownWithdrawal = 2007,
    /// The pending-withdrawal pool is full.
    WithdrawalPoolFull = 2008,
    /// The deposit would take the currency's total supply past the 64-bit range.
    AmountOverflow = 2009,
    /// Account commands on an engine running with risk off.
    AccountsDisabled = 2010,
    /// The user has `capacity.withdrawals_per_user` withdrawals awaiting approval already.
    WithdrawalLimit = 2011,

    // ---- 3xxx: order validation and matching ----
    /// The symbol id is not in the configuration.
    UnknownSymbol = 3001,
    /// Quantity is zero.
    InvalidQuantity = 3002,
    /// Quantity exceeds the symbol's `max_order_qty`.
    QuantityTooLarge = 3003,
    /// Limit or protection price outside the symbol's price band.
    PriceOutOfBand = 3004,
    /// Stop price missing on a stop order, outside the band, or present on a non-stop order.
    InvalidStopPrice = 3005,
    /// Display quantity larger than the order, or on an order that can never rest.
    InvalidDisplayQty = 3006,
    /// Time in force not allowed for this order (e.g. post-only with IOC or FOK).
    InvalidTimeInForce = 3007,
    /// Post-only on an order that can never rest (market, stop-market).
    InvalidPostOnly = 3008,
    /// The client order id was already used: under the `increasing` rule it is at or below the
    /// user's highest so far (a resend, whatever became of the original); under `unique_live`
    /// it names one of the user's live orders. Nothing was executed.
    DuplicateClientOrderId = 3009,
    /// No live order of this user with this client order id (or, by engine order id, no live
    /// order with this id) on this symbol.
    UnknownOrder = 3010,
    /// The order pool is full; the order was not accepted.
    OrderPoolFull = 3011,
    /// A replace of a post-only order would take liquidity; the original order is unchanged.
    PostOnlyWouldTake = 3012,
    /// price × qty × tick size does not fit the engine's 64-bit notional.
    NotionalOverflow = 3013,
    /// A cancel or amend by engine order id names a live order of another user; nothing is
    /// done to it (or said about it).
    NotYourOrder = 3014,
    /// A quote budget (`budget`) on an order that is not a market buy with time in force IOC,
    /// or (at the edges, where it can be told apart from "no budget") a budget of zero.
    InvalidBudget = 3015,
    /// An expiry time on an order whose time in force is not GTD, or a GTD order without one.
    InvalidExpiry = 3016,
    /// A GTD order whose expiry time is at or before the engine time of its command.
    ExpiryInPast = 3017,
    /// A DAY order, but no session end is configured (`[schedule] day_end_utc`).
    NoSessionEnd = 3018,
}

impl RejectCode {
    /// Every code, in numeric order (for docs and exhaustive tests).
    pub const ALL: [RejectCode; 48] = [
        RejectCode::MalformedFrame,
        RejectCode::FrameTooLarge,
        RejectCode::UnknownMessageType,
        RejectCode::UnsupportedVersion,
        RejectCode::InvalidField,
        RejectCode::NotLoggedIn,
        RejectCode::AlreadyLoggedIn,
        RejectCode::BadCredentials,
        RejectCode::LoginThrottled,
        RejectCode::NotYourAccount,
        RejectCode::OperatorOnly,
        RejectCode::UserOnly,
        RejectCode::ClientOrderIdNotIncreasing,
        RejectCode::HeartbeatTimeout,
        RejectCode::SlowConsumer,
        RejectCode::Flood,
        RejectCode::ServerFull,
        RejectCode::RetransmitUnavailable,
        RejectCode::ShuttingDown,
        RejectCode::UnknownUser,
        RejectCode::InsufficientFunds,
        RejectCode::InvalidAmount,
        RejectCode::UnknownCurrency,
        RejectCode::NotAnOperator,
        RejectCode::DuplicateApproval,
        RejectCode::UnknownWithdrawal,
        RejectCode::WithdrawalPoolFull,
        RejectCode::AmountOverflow,
        RejectCode::AccountsDisabled,
        RejectCode::WithdrawalLimit,
        RejectCode::UnknownSymbol,
        RejectCode::InvalidQuantity,
        RejectCode::QuantityTooLarge,
        RejectCode::PriceOutOfBand,
        RejectCode::InvalidStopPrice,
        RejectCode::InvalidDisplayQty,
        RejectCode::InvalidTimeInForce,
        RejectCode::InvalidPostOnly,
        RejectCode::DuplicateClientOrderId,
        RejectCode::UnknownOrder,
        RejectCode::OrderPoolFull,
        RejectCode::PostOnlyWouldTake,
        RejectCode::NotionalOverflow,
        RejectCode::NotYourOrder,
        RejectCode::InvalidBudget,
        RejectCode::InvalidExpiry,
        RejectCode::ExpiryInPast,
        RejectCode::NoSessionEnd,
    ];

    /// The stable numeric code.
    #[inline]
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The stable name (SCREAMING_SNAKE_CASE), as printed by the scenario runner.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::MalformedFrame => "MALFORMED_FRAME",
            RejectCode::FrameTooLarge => "FRAME_TOO_LARGE",
            RejectCode::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            RejectCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            RejectCode::InvalidField => "INVALID_FIELD",
            RejectCode::NotLoggedIn => "NOT_LOGGED_IN",
            RejectCode::AlreadyLoggedIn => "ALREADY_LOGGED_IN",
            RejectCode::BadCredentials => "BAD_CREDENTIALS",
            RejectCode::LoginThrottled => "LOGIN_THROTTLED",
            RejectCode::NotYourAccount => "NOT_YOUR_ACCOUNT",
            RejectCode::OperatorOnly => "OPERATOR_ONLY",
            RejectCode::UserOnly => "USER_ONLY",
            RejectCode::ClientOrderIdNotIncreasing => "CLIENT_ORDER_ID_NOT_INCREASING",
            RejectCode::HeartbeatTimeout => "HEARTBEAT_TIMEOUT",
            RejectCode::SlowConsumer => "SLOW_CONSUMER",
            RejectCode::Flood => "FLOOD",
            RejectCode::ServerFull => "SERVER_FULL",
            RejectCode::RetransmitUnavailable => "RETRANSMIT_UNAVAILABLE",
            RejectCode::ShuttingDown => "SHUTTING_DOWN",
            RejectCode::UnknownUser => "UNKNOWN_USER",
            RejectCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            RejectCode::InvalidAmount => "INVALID_AMOUNT",
            RejectCode::UnknownCurrency => "UNKNOWN_CURRENCY",
            RejectCode::NotAnOperator => "NOT_AN_OPERATOR",
            RejectCode::DuplicateApproval => "DUPLICATE_APPROVAL",
            RejectCode::UnknownWithdrawal => "UNKNOWN_WITHDRAWAL",
            RejectCode::WithdrawalPoolFull => "WITHDRAWAL_POOL_FULL",
            RejectCode::AmountOverflow => "AMOUNT_OVERFLOW",
            RejectCode::AccountsDisabled => "ACCOUNTS_DISABLED",
            RejectCode::WithdrawalLimit => "WITHDRAWAL_LIMIT",
            RejectCode::UnknownSymbol => "UNKNOWN_SYMBOL",
            RejectCode::InvalidQuantity => "INVALID_QUANTITY",
            RejectCode::QuantityTooLarge => "QUANTITY_TOO_LARGE",
            RejectCode::PriceOutOfBand => "PRICE_OUT_OF_BAND",
            RejectCode::InvalidStopPrice => "INVALID_STOP_PRICE",
            RejectCode::InvalidDisplayQty => "INVALID_DISPLAY_QTY",
            RejectCode::InvalidTimeInForce => "INVALID_TIME_IN_FORCE",
            RejectCode::InvalidPostOnly => "INVALID_POST_ONLY",
            RejectCode::DuplicateClientOrderId => "DUPLICATE_CLIENT_ORDER_ID",
            RejectCode::UnknownOrder => "UNKNOWN_ORDER",
            RejectCode::OrderPoolFull => "ORDER_POOL_FULL",
            RejectCode::PostOnlyWouldTake => "POST_ONLY_WOULD_TAKE",
            RejectCode::NotionalOverflow => "NOTIONAL_OVERFLOW",
            RejectCode::NotYourOrder => "NOT_YOUR_ORDER",
            RejectCode::InvalidBudget => "INVALID_BUDGET",
            RejectCode::InvalidExpiry => "INVALID_EXPIRY",
            RejectCode::ExpiryInPast => "EXPIRY_IN_PAST",
            RejectCode::NoSessionEnd => "NO_SESSION_END",
        }
    }

    /// The code with this number, if any.
    pub fn from_code(code: u16) -> Option<RejectCode> {
        RejectCode::ALL.iter().copied().find(|c| c.code() == code)
    }
}

/// Why an order (or part of it) left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner cancelled it (cancel, mass cancel, or an amend to quantity zero).
    User = 1,
    /// The unfilled remainder of an IOC or market order.
    Ioc = 2,
    /// A fill-or-kill order that could not fill completely.
    Fok = 3,
    /// Self-trade prevention.
    SelfTrade = 4,
    /// A post-only order that would have taken liquidity.
    PostOnly = 5,
    /// Expired: a GTD or DAY order reached its expiry time (docs/matching.md, "Expiry").
    Expired = 6,
    /// The owner's session disconnected with cancel-on-disconnect set.
    Disconnect = 7,
}

crate::types::vocab!(CancelReason {
    User = "USER",
    Ioc = "IOC",
    Fok = "FOK",
    SelfTrade = "STP",
    PostOnly = "POST_ONLY",
    Expired = "EXPIRED",
    Disconnect = "DISCONNECT",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_sorted_and_round_trip() {
        for pair in RejectCode::ALL.windows(2) {
            assert!(
                pair[0].code() < pair[1].code(),
                "{:?} not before {:?}",
                pair[0],
                pair[1]
            );
        }
        for code in RejectCode::ALL {
            assert_eq!(RejectCode::from_code(code.code()), Some(code));
            assert!(code
                .name()
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert_eq!(RejectCode::from_code(9999), None);
    }
}
