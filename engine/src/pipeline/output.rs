//! What leaves the pipeline: one [`Output`] per event, then a `Done` per command.

use crate::event::Event;
use crate::types::Seq;

/// One item on the outbound ring, handed to the embedder's handler in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// The command this belongs to.
    pub seq: Seq,
    /// The command's time stamp (Unix nanoseconds, as journaled); engine time is the latest
    /// stamp so far (docs/matching.md, "Engine time"). Consumers that stamp their own output,
    /// such as the market-data builder, take it from here.
    pub ts: u64,
    /// An event of that command, or the end of its events.
    pub kind: OutputKind,
}

/// An event, or the mark that a command's events are complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// One of the command's events, in the order the engine produced them.
    Event(Event),
    /// The command is fully processed (and journaled): its acknowledgement point.
    Done,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            seq: Seq(0),
            ts: 0,
            kind: OutputKind::Done,
        }
    }
}
