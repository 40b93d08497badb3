//! M, the matching stage as the engine and the pipeline run it: the [`Matcher`] applied to
//! what R passed on.

use crate::command::Command;
use crate::event::EventSink;
use crate::matching::Matcher;
use crate::plan::Plan;

/// M: matches one command R passed on ([`Plan::Book`] or [`Plan::Settle`]); for a new order
/// R rejected ([`Plan::Rejected`]) it only records it: the client order id the reject
/// consumed (docs/protocol.md, "Idempotency") and the REJECTED entry of the owner's window
/// (docs/matching.md, "Order status"). Touches only the matcher.
#[inline]
pub(crate) fn match_stage<S: EventSink + ?Sized>(
    matcher: &mut Matcher,
    cmd: &Command,
    plan: Plan,
    sink: &mut S,
) {
    // Expiries first: every command's engine time may reach some (docs/matching.md, "Expiry").
    matcher.expire_due(sink);
    match (plan, cmd) {
        (Plan::Rejected(code), Command::NewOrder(o)) => matcher.note_rejected(o, code),
        (Plan::Done | Plan::Rejected(_) | Plan::Balances(_), _) => {}
        (Plan::Settle { place: true, .. }, Command::NewOrder(o)) => {
            matcher.place_validated(o, sink)
        }
        _ => matcher.process(cmd, sink),
    }
}
