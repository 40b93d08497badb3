//! The `inline` layout: no pipeline thread. The submitting thread journals each command and
//! runs R·M·S over it at once, then hands its outputs to the handler (or to the sink given to
//! [`crate::Pipeline::try_submit_with`]).
//!
//! The same stage code as `fused` (`stages::JournalStage`, `stages::process_one`, the
//! snapshot hook) on the caller's thread, so recovery, snapshots and determinism are the
//! pipeline's. The journal's batch is one command: under a durability policy each command is
//! synced before its outputs are released.

use super::output::Output;
use super::queue::Outbox;
use super::slot::InSlot;
use super::snapshots::Snapshots;
use super::stages::{injected_panic, process_one, BusinessEnd, JournalStage};
use super::Handler;
use crate::command::Command;
use crate::engine::Engine;
use crate::types::Seq;

/// Everything the one thread of the `inline` layout owns.
pub(crate) struct InlineCore {
    pub(crate) journal: JournalStage,
    pub(crate) engine: Engine,
    pub(crate) snapshots: Snapshots,
    pub(crate) handler: Handler,
    pub(crate) end: BusinessEnd,
    /// Fault injection: the outputs' consumer "panics" at this command's `Done` (0: never).
    pub(crate) output_panic_at: u64,
}

/// Any `FnMut(&Output)` as the stages' outbox.
struct SinkOutbox<'a>(&'a mut dyn FnMut(&Output));

impl Outbox<Output> for SinkOutbox<'_> {
    #[inline]
    fn push(&mut self, item: Output) {
        (self.0)(&item)
    }
}

impl InlineCore {
    /// J then R·M·S for one command; its outputs to `sink`, or to the handler if `None`.
    pub(crate) fn process(
        &mut self,
        seq: Seq,
        timestamp_ns: u64,
        cmd: Command,
        sink: Option<&mut dyn FnMut(&Output)>,
    ) {
        let slot = InSlot::new(seq, timestamp_ns, cmd);
        self.journal.journal(&[&slot]);
        let mut out = SinkOutbox(match sink {
            Some(sink) => sink,
            None => &mut *self.handler,
        });
        process_one(
            &mut self.engine,
            &mut out,
            &mut self.snapshots,
            &mut self.end,
            &slot,
        );
        self.end
            .expiry
            .publish(self.engine.next_expiry_ns(), &self.journal.control);
        if self.output_panic_at == seq.0 {
            injected_panic("output", seq);
        }
    }
}
