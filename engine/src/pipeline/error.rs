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
    /// A ring size is not a power of two (or is zero / too small).
    RingSize {
        /// Which ring.
        ring: &'static str,
        /// The size given.
        slots: usize,
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
            } => write!(
                f,
                "layout {layout} would busy-spin {spinning} threads on {cores} cores: use a \
                 layout with fewer threads (\"fused\") or a yield/sleep wait strategy"
            ),
            PipelineError::RingSize { ring, slots } => write!(
                f,
                "{ring} ring size {slots} is not a power of two of at least 2"
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
