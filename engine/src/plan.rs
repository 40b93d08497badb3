//! The hand-off between the stages: what R decided about a command, for M and S.
//!
//! R ([`crate::risk::stage`]) returns a [`Plan`] for every command; M
//! ([`crate::matching::stage`]) and S ([`crate::settlement`]) act on it. In the threaded
//! pipeline the plan travels in the command's ring slot from R's thread to M's and S's.

use crate::codes::RejectCode;
use crate::types::{CurrencyId, UserId};

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
    /// command, answers it (R's own answers are bounded by
    /// [`RISK_EVENTS_MAX`](crate::risk::stage::RISK_EVENTS_MAX); a reply has one event per
    /// currency). M has nothing to do.
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
