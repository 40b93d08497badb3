//! Start-up recovery: the newest valid snapshot, then every journal record after it.
//!
//! 1. [`Writer::open`] recovers the journal itself (a torn or corrupt final record is
//!    truncated away) and says where the next sequence is.
//! 2. [`load_latest`] finds the newest snapshot whose checksums hold (falling back past
//!    damaged ones); [`Engine::from_snapshot`] restores it, checking its state hash.
//! 3. Every record after the snapshot's sequence is decoded and applied with
//!    [`Engine::process`] — the single-threaded engine, so recovery is exactly a replay.
//!    Records must be commands of a known format and their sequences contiguous, from the
//!    snapshot's sequence + 1 (or the journal's first sequence) to the writer's next sequence.

use std::path::Path;

use ringbook_journal::{load_latest, JournalConfig, Reader, Writer};

use super::error::PipelineError;
use crate::codec::{self, COMMAND_FORMAT_VERSION};
use crate::config::Config;
use crate::engine::{Engine, RiskMode};
use crate::event::Event;
use crate::snapshot::SNAPSHOT_FORMAT_VERSION;
use crate::types::Seq;

/// The journal record type of a command encoded with [`codec::encode`] in command format v1.
pub const RECORD_TYPE_COMMAND_V1: u16 = 1;
const _: () = assert!(
    COMMAND_FORMAT_VERSION == 1,
    "a new format needs a new record type"
);

/// What start-up recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// The sequence covered by the snapshot recovery started from, if any.
    pub snapshot_seq: Option<Seq>,
    /// Newer snapshots skipped because they were damaged.
    pub damaged_snapshots: usize,
    /// Journal records replayed after the snapshot.
    pub replayed: u64,
    /// The sequence the next submitted command gets.
    pub next_seq: Seq,
    /// Whether the journal's own recovery truncated a torn or corrupt last record.
    pub journal_truncated: bool,
}

/// Recovers the engine from `dir` and returns it with the journal writer, open and positioned
/// after the last record.
pub(crate) fn recover(
    config: &Config,
    risk: RiskMode,
    dir: &Path,
    journal: JournalConfig,
) -> Result<(Engine, Writer, RecoveryInfo), PipelineError> {
    let writer = Writer::open(dir, journal)?;
    let journal_truncated = writer.recovery().truncated.is_some();
    let latest = load_latest(dir)?;
    let mut info = RecoveryInfo {
        damaged_snapshots: latest.damaged.len(),
        journal_truncated,
        ..RecoveryInfo::default()
    };
    let (mut engine, mut expected, mut reader) = match latest.snapshot {
        Some(snapshot) => {
            if snapshot.meta.state_format != u32::from(SNAPSHOT_FORMAT_VERSION) {
                return Err(PipelineError::Replay(format!(
                    "snapshot {} has state format {}, this engine reads {}",
                    snapshot.meta.path.display(),
                    snapshot.meta.state_format,
                    SNAPSHOT_FORMAT_VERSION
                )));
            }
            let engine = Engine::from_snapshot(config, risk, &snapshot.state)
                .map_err(PipelineError::Snapshot)?;
            info.snapshot_seq = Some(Seq(snapshot.meta.sequence));
            let from = snapshot.meta.sequence + 1;
            (engine, from, Reader::open_from(dir, from)?)
        }
        None => (
            Engine::with_risk(config, risk).map_err(PipelineError::Config)?,
            journal.first_sequence,
            Reader::open(dir)?,
        ),
    };
    let mut ignore = |_: &Event| {};
    while let Some(record) = reader.next()? {
        if record.sequence != expected {
            return Err(PipelineError::Replay(format!(
                "expected record {expected}, found {}: the journal has a gap",
                record.sequence
            )));
        }
        if record.record_type != RECORD_TYPE_COMMAND_V1 {
            return Err(PipelineError::Replay(format!(
                "record {} has type {}, expected {RECORD_TYPE_COMMAND_V1} (command format v1)",
                record.sequence, record.record_type
            )));
        }
        let cmd = codec::decode(record.payload).map_err(|e| {
            PipelineError::Replay(format!("record {} does not decode: {e}", record.sequence))
        })?;
        engine.process(&cmd, &mut ignore);
        expected += 1;
        info.replayed += 1;
    }
    if expected != writer.next_sequence() {
        return Err(PipelineError::Replay(format!(
            "replay ended before sequence {expected} but the journal continues at {}",
            writer.next_sequence()
        )));
    }
    info.next_seq = Seq(expected);
    Ok((engine, writer, info))
}
