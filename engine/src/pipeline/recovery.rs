//! Start-up recovery: the newest valid snapshot, then every journal record after it.
//!
//! 1. [`Writer::open`] recovers the journal itself (a torn or corrupt final record is
//!    cut away and reported; damage, or a snapshot beyond the journal's end, is refused before
//!    any file changes) and says where the next sequence is.
//! 2. [`load_latest`] finds the newest snapshot whose checksums hold (falling back past
//!    damaged ones); [`Engine::from_snapshot`] restores it, checking its state hash.
//! 3. Every record after the snapshot's sequence is decoded and applied with
//!    [`Engine::process`] — the single-threaded engine, so recovery is exactly a replay.
//!    Records must be commands of a known format and their sequences contiguous, from the
//!    snapshot's sequence + 1 (or the journal's first sequence) to the writer's next sequence.
//!
//! [`replay_journal`] is the same replay without the writer: read-only (segments are mapped
//! read-only, nothing is truncated, no lock is taken), optionally stopping at a sequence, for
//! `ringbook journal replay` and anyone who wants the state a journal describes.

use std::path::{Path, PathBuf};

use ringbook_journal::snapshot::SnapshotDamage;
use ringbook_journal::{
    load_latest, read_snapshot, JournalConfig, Reader, RecoveryReport, TailState, Writer,
};

use super::error::PipelineError;
use super::output::{Output, OutputKind};
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
    /// That snapshot's timestamp (the engine time of the last command it covers), Unix ns.
    pub snapshot_timestamp_ns: Option<u64>,
    /// Newer snapshots skipped because they were damaged.
    pub damaged_snapshots: usize,
    /// Journal records replayed after the snapshot.
    pub replayed: u64,
    /// The sequence the next submitted command gets.
    pub next_seq: Seq,
    /// Whether the journal's own recovery truncated a torn or corrupt last record.
    pub journal_truncated: bool,
    /// What the journal's own recovery found and did: the cut it made, if any
    /// ([`RecoveryReport::cuts`]: file, offset, bytes), the unused segments it removed, the
    /// sealed segment it moved past. Damage it refused never gets here: recovery fails.
    pub journal: RecoveryReport,
    /// Snapshots skipped as invalid, newest first, with why (`damaged_snapshots` of them).
    pub skipped_snapshots: Vec<(PathBuf, SnapshotDamage)>,
}

/// Recovers the engine from `dir` and returns it with the journal writer, open and positioned
/// after the last record.
pub(crate) fn recover(
    config: &Config,
    risk: RiskMode,
    dir: &Path,
    journal: JournalConfig,
) -> Result<(Engine, Writer, RecoveryInfo), PipelineError> {
    // The journal's recovery checks everything — damage, and a snapshot beyond the journal's
    // end — before it changes any file, so a refused start leaves the directory as it was.
    let writer = Writer::open(dir, journal)?;
    let journal_truncated = writer.recovery().truncated.is_some();
    let latest = load_latest(dir)?;
    let mut info = RecoveryInfo {
        damaged_snapshots: latest.damaged.len(),
        journal_truncated,
        journal: writer.recovery().clone(),
        skipped_snapshots: latest.damaged.clone(),
        ..RecoveryInfo::default()
    };
    let (mut engine, mut expected, mut reader) = match latest.snapshot {
        Some(snapshot) => {
            let engine = restore(config, risk, &snapshot)?;
            info.snapshot_seq = Some(Seq(snapshot.meta.sequence));
            info.snapshot_timestamp_ns = Some(snapshot.meta.timestamp_ns);
            let from = after_snapshot(snapshot.meta.sequence)?;
            (engine, from, Reader::open_from(dir, from)?)
        }
        None => (
            Engine::with_risk(config, risk).map_err(PipelineError::Config)?,
            journal.first_sequence,
            Reader::open(dir)?,
        ),
    };
    info.replayed = apply(
        &mut engine,
        &mut reader,
        &mut expected,
        u64::MAX,
        &mut |_| {},
    )?;
    if expected != writer.next_sequence() {
        return Err(PipelineError::Replay(format!(
            "replay ended before sequence {expected} but the journal continues at {}",
            writer.next_sequence()
        )));
    }
    info.next_seq = Seq(expected);
    Ok((engine, writer, info))
}

/// Restores the engine a snapshot holds, after checking its state format.
fn restore(
    config: &Config,
    risk: RiskMode,
    snapshot: &ringbook_journal::Snapshot,
) -> Result<Engine, PipelineError> {
    if snapshot.meta.state_format != u32::from(SNAPSHOT_FORMAT_VERSION) {
        return Err(PipelineError::Replay(format!(
            "snapshot {} has state format {}, this engine reads {}",
            snapshot.meta.path.display(),
            snapshot.meta.state_format,
            SNAPSHOT_FORMAT_VERSION
        )));
    }
    Engine::from_snapshot(config, risk, &snapshot.state).map_err(PipelineError::Snapshot)
}

/// Applies the reader's records to `engine` while their sequence is at most `to`: each must
/// carry `*expected` (advanced per record) and be a command of a known format. Returns how
/// many were applied.
fn apply(
    engine: &mut Engine,
    reader: &mut Reader,
    expected: &mut u64,
    to: u64,
    on_output: &mut dyn FnMut(&Output),
) -> Result<u64, PipelineError> {
    let mut applied = 0;
    while *expected <= to {
        let Some(record) = reader.next()? else {
            break;
        };
        if record.sequence != *expected {
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
        let (seq, ts) = (Seq(record.sequence), record.timestamp_ns);
        engine.process_at(ts, &cmd, &mut |e: &Event| {
            on_output(&Output {
                seq,
                ts,
                kind: OutputKind::Event(*e),
            })
        });
        on_output(&Output {
            seq,
            ts,
            kind: OutputKind::Done,
        });
        *expected += 1;
        applied += 1;
    }
    Ok(applied)
}

/// What [`replay_journal`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayInfo {
    /// The sequence covered by the snapshot the replay started from, if any.
    pub snapshot_seq: Option<Seq>,
    /// Snapshots skipped because they were damaged (checksums), newest first.
    pub damaged_snapshots: usize,
    /// Valid snapshots skipped because they cover more than the sequence asked for.
    pub later_snapshots: usize,
    /// Journal records applied after the snapshot.
    pub replayed: u64,
    /// The last sequence the state includes (the snapshot's, or the last record applied);
    /// `None` for the empty state.
    pub last_seq: Option<Seq>,
    /// The journal's last complete record, when the replay read to its end (`to` absent).
    pub journal_last_seq: Option<Seq>,
    /// How the journal ends, when the replay read to its end: a torn tail is what a writer
    /// that died mid-append leaves (a writer opening the journal cuts it away; this replay
    /// leaves it).
    pub tail: Option<TailState>,
}

/// Rebuilds, read-only, the engine state the journal in `dir` describes: the newest valid
/// snapshot whose sequence is at most `to` (or none: from the journal's `first_sequence`),
/// then every journal record after it up to `to` inclusive (`None`: to the end), through
/// [`Engine::process`] — the same replay as start-up recovery.
///
/// Nothing in `dir` is created, modified or truncated, and the writer's lock is not taken:
/// segments and snapshots are only read ([`Reader`], [`read_snapshot`]), so this may run on the
/// journal of a live or a crashed pipeline (a live writer's in-flight record reads as a torn
/// tail and is not applied). `first_sequence` is the journal's first sequence
/// ([`JournalConfig::first_sequence`], 1 by default), needed when no snapshot is used.
///
/// # Errors
///
/// [`PipelineError::Journal`] when the directory cannot be read or the journal is corrupt
/// (damage that is not a torn tail), or when the records needed were pruned and no snapshot
/// covers them; [`PipelineError::Snapshot`] when a snapshot's checksums hold but its state does
/// not restore; [`PipelineError::Replay`] for a gap, an unknown record type, a payload that does
/// not decode, or a `to` beyond the journal's last record.
pub fn replay_journal(
    config: &Config,
    risk: RiskMode,
    dir: &Path,
    first_sequence: u64,
    to: Option<Seq>,
) -> Result<(Engine, ReplayInfo), PipelineError> {
    check_first_sequence(first_sequence)?;
    let limit = to.map_or(u64::MAX, |s| s.0);
    let mut info = ReplayInfo::default();
    // 1. The newest snapshot at or below the limit whose checksums hold.
    let mut snapshot = None;
    let snapshots = ringbook_journal::list(dir)?.snapshots;
    for (sequence, path) in snapshots.iter().rev() {
        if *sequence > limit {
            // Counted only if valid: a damaged one would not have been used either way.
            match read_snapshot(path) {
                Ok(_) => info.later_snapshots += 1,
                Err(_) => info.damaged_snapshots += 1,
            }
            continue;
        }
        match read_snapshot(path) {
            Ok(s) => {
                snapshot = Some((s, path));
                break;
            }
            Err(_) => info.damaged_snapshots += 1,
        }
    }
    let snapshot_path = snapshot.as_ref().map(|(_, p)| p.to_path_buf());
    let snapshot = snapshot.map(|(s, _)| s);
    // 2. Restore it (or start empty) and open the journal after it.
    let (mut engine, mut expected, mut reader) = match snapshot {
        Some(snapshot) => {
            let engine = restore(config, risk, &snapshot)?;
            info.snapshot_seq = Some(Seq(snapshot.meta.sequence));
            let from = after_snapshot(snapshot.meta.sequence)?;
            (engine, from, Reader::open_from(dir, from)?)
        }
        None => {
            let reader = Reader::open_from(dir, first_sequence.max(1))?;
            (
                Engine::with_risk(config, risk).map_err(PipelineError::Config)?,
                first_sequence,
                reader,
            )
        }
    };
    // 3. The records after it, up to the limit.
    info.replayed = apply(&mut engine, &mut reader, &mut expected, limit, &mut |_| {})?;
    // 4. Read to its end, the journal must hold the snapshot's sequence: one that covers more
    // than the journal holds means records were lost (recovery refuses it the same way), and
    // the state it gives is not the journal's.
    if let (Some(path), Some(snapshot_seq), None) = (snapshot_path, info.snapshot_seq, to) {
        // (With no segment at all, a journal would start at its first sequence.)
        let next_sequence = reader.next_sequence().max(first_sequence.max(1));
        if next_sequence <= snapshot_seq.0 {
            return Err(PipelineError::Journal(
                ringbook_journal::JournalError::Corrupt(ringbook_journal::Corruption {
                    path,
                    offset: 0,
                    kind: ringbook_journal::CorruptionKind::SnapshotBeyondEnd {
                        snapshot_sequence: snapshot_seq.0,
                        next_sequence,
                    },
                }),
            ));
        }
    }
    finish(info, reader, expected, first_sequence, to).map(|info| (engine, info))
}

/// Like [`replay_journal`], but from the journal's first record whatever snapshots exist, and
/// every event and `Done` of every replayed command goes to `on_output` exactly as the pipeline
/// produced it (with its sequence and time stamp): what a consumer of the event stream, such as
/// the market-data builder, needs to rebuild its projection. Fails like [`replay_journal`], and
/// when the first records were pruned.
pub fn replay_journal_outputs(
    config: &Config,
    risk: RiskMode,
    dir: &Path,
    first_sequence: u64,
    to: Option<Seq>,
    on_output: &mut dyn FnMut(&Output),
) -> Result<(Engine, ReplayInfo), PipelineError> {
    check_first_sequence(first_sequence)?;
    let limit = to.map_or(u64::MAX, |s| s.0);
    let info = ReplayInfo::default();
    let mut reader = Reader::open_from(dir, first_sequence.max(1))?;
    let mut engine = Engine::with_risk(config, risk).map_err(PipelineError::Config)?;
    let mut expected = first_sequence;
    let info = ReplayInfo {
        replayed: apply(&mut engine, &mut reader, &mut expected, limit, on_output)?,
        ..info
    };
    finish(info, reader, expected, first_sequence, to).map(|info| (engine, info))
}

/// A replay's `first_sequence`, as a journal's configuration takes it (1 to 2^62): 0 would
/// make its "nothing replayed" sequence wrap.
fn check_first_sequence(first_sequence: u64) -> Result<(), PipelineError> {
    JournalConfig {
        first_sequence,
        ..JournalConfig::default()
    }
    .validate()
    .map_err(|e| PipelineError::Journal(ringbook_journal::JournalError::Config(e)))
}

/// The first record after a snapshot; no record follows one at the last sequence there is.
fn after_snapshot(sequence: u64) -> Result<u64, PipelineError> {
    sequence.checked_add(1).ok_or_else(|| {
        PipelineError::Replay(format!(
            "a snapshot at sequence {sequence}: no journal reaches it"
        ))
    })
}

/// Where a replay ended, checked against `to`.
fn finish(
    mut info: ReplayInfo,
    reader: Reader,
    expected: u64,
    first_sequence: u64,
    to: Option<Seq>,
) -> Result<ReplayInfo, PipelineError> {
    let reached = expected - 1;
    info.last_seq = (expected > first_sequence).then_some(Seq(reached));
    if let Some(to) = to.filter(|to| to.0 < reached) {
        // Only a journal that starts after `to` gets here (a snapshot after it is not used).
        return Err(PipelineError::Replay(format!(
            "sequence {} is before the journal's first record, {}",
            to.0, first_sequence
        )));
    }
    if let Some(to) = to {
        if reached < to.0 {
            return Err(PipelineError::Replay(format!(
                "sequence {} is beyond the journal's end: {}",
                to.0,
                match info.last_seq {
                    // Nothing read after the snapshot: its sequence is the state's end, and no
                    // record follows it (one past the records' end, a stray snapshot, was
                    // called "its last record": a docs review finding).
                    Some(s) if info.replayed == 0 && info.snapshot_seq == Some(s) => format!(
                        "its state ends at sequence {} with the newest snapshot, and no record \
                         follows it",
                        s.0
                    ),
                    Some(s) => format!("its last record is {}", s.0),
                    None => "its last record is none (it is empty)".to_string(),
                }
            )));
        }
    } else {
        info.journal_last_seq = info.last_seq;
        info.tail = reader.tail().cloned();
    }
    Ok(info)
}
