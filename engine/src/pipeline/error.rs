//! Why a pipeline could not start, or did not end cleanly.

use std::fmt;

use ringbook_journal::JournalError;

use crate::snapshot::SnapshotError;

/// A pipeline failure: each variant says what went wrong and what to change.
#[derive(Debug)]
pub enum PipelineError {
    /// The engine configuration is invalid.
    Config(crate::config::ConfigError),
    /// More busy-spinning threads than cores: they would starve each other. Use a smaller
    /// layout (`fused`), or a `Yield`/`Sleep` wait strategy.
    TooManySpinningThreads {
        /// Busy-spinning threads the layout asks for (stage threads plus the outbound thread).
        spinning: usize,
        /// `std::thread::available_parallelism()`.
        cores: usize,
        /// The layout asked for.
        layout: super::Layout,
    },
    /// A ring size is not a power of two from 2 to 2^30 ([`super::RING_SLOTS_MAX`]).
    RingSize {
        /// Which ring.
        ring: &'static str,
        /// The size given.
        slots: usize,
    },
    /// A `WaitStrategy::Sleep` longer than [`super::SLEEP_MAX`] (1 s): every look, and so
    /// shutdown, would wait that long.
    SleepTooLong {
        /// The duration given.
        sleep: std::time::Duration,
    },
    /// `cores` names a core this machine does not have, or gives the wrong number of cores.
    Cores(String),
    /// Opening, reading or writing the journal failed.
    Journal(JournalError),
    /// The journal's snapshot could not be restored.
    Snapshot(SnapshotError),
    /// The journal does not replay cleanly (a gap, an unknown record type, a bad payload).
    Replay(String),
    /// The journal could not be synced and closed at shutdown.
    JournalClose(String),
    /// A stage thread panicked; the pipeline stopped. Restart recovers from the journal.
    StagePanicked {
        /// The thread's name.
        thread: String,
        /// The panic message.
        message: String,
    },
    /// Spawning a thread failed.
    Spawn(std::io::Error),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Config(e) => write!(f, "invalid engine configuration: {e}"),
            PipelineError::TooManySpinningThreads {
                spinning,
                cores,
                layout,
            } => {
                // Never the layout already in use as the way out (a docs review finding: a
                // fused layout was told to use "fused").
                let fewer = if *layout == crate::pipeline::Layout::Fused {
                    ""
                } else {
                    "a layout with fewer threads (\"fused\"), "
                };
                write!(
                    f,
                    "layout {layout} would busy-spin {spinning} threads on {cores} cores: use \
                     {fewer}the output inline (no output thread) or a wait strategy that parks, \
                     yields or sleeps"
                )
            }
            PipelineError::RingSize { ring, slots } => write!(
                f,
                "{ring} ring size {slots} is not a power of two from 2 to 2^30"
            ),
            PipelineError::SleepTooLong { sleep } => write!(
                f,
                "wait strategy Sleep({sleep:?}) is longer than 1 s: each look, and shutdown, \
                 would wait that long (use Phased for a pipeline that is often idle)"
            ),
            PipelineError::Cores(m) => write!(f, "core pinning: {m}"),
            PipelineError::Journal(e) => write!(f, "journal: {e}"),
            PipelineError::Snapshot(e) => write!(f, "snapshot restore: {e}"),
            PipelineError::JournalClose(m) => write!(f, "closing the journal: {m}"),
            PipelineError::Replay(m) => write!(f, "journal replay: {m}"),
            PipelineError::StagePanicked { thread, message } => {
                write!(f, "pipeline thread {thread} panicked: {message}")
            }
            PipelineError::Spawn(e) => write!(f, "spawning a pipeline thread: {e}"),
        }
    }
}

impl std::error::Error for PipelineError {}

impl From<JournalError> for PipelineError {
    fn from(e: JournalError) -> Self {
        PipelineError::Journal(e)
    }
}

/// Why [`crate::Pipeline::try_submit`] (or [`crate::Pipeline::submit`]) handed a command back,
/// unnumbered and unjournaled — like `crossbeam_channel::TrySendError`, the command travels
/// in the error so nothing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The inbound ring is full: try again once the pipeline has caught up (back-pressure).
    /// `submit` waits this out and never returns it.
    Full(crate::command::Command),
    /// A pipeline thread has died (a stage or the output thread panicked): the pipeline will
    /// never take another command. Stop, call [`crate::Pipeline::shutdown`] to learn why
    /// ([`PipelineError::StagePanicked`]), and restart: recovery from the journal gets every
    /// journaled command back.
    Failed(crate::command::Command),
}

impl SubmitError {
    /// The command handed back.
    pub fn into_inner(self) -> crate::command::Command {
        match self {
            SubmitError::Full(cmd) | SubmitError::Failed(cmd) => cmd,
        }
    }

    /// Whether the ring was only full (retrying may succeed).
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::Full(_))
    }

    /// Whether the pipeline has failed (retrying never succeeds).
    pub fn is_failed(&self) -> bool {
        matches!(self, SubmitError::Failed(_))
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full(_) => f.write_str("the pipeline's inbound ring is full"),
            SubmitError::Failed(_) => f.write_str(
                "the pipeline has failed (a thread died): shut it down to see why, and restart",
            ),
        }
    }
}

impl std::error::Error for SubmitError {}

/// The message a panic carried (its payload, as `panic!` and `expect` make it: a `&str` or a
/// `String`), or `(no message)`: what a thread that caught or joined a panic reports.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
