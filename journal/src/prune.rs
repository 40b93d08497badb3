//! Pruning: removing old segments that a snapshot makes unnecessary.
//!
//! A segment may be removed only if every record in it is covered by the newest valid snapshot
//! (sequence ≤ the snapshot's) *and* is before the caller's bound (sequence < `before`). A
//! segment's last sequence is known without reading it: it is the next segment's first
//! sequence minus one, so the last started segment is never removed. Segments are removed
//! oldest first and only as a prefix, so the journal never has a hole, and a crash part-way
//! leaves a valid, shorter journal.
//!
//! Pruning against the newest snapshot means an older snapshot can no longer be used (the
//! records after it are gone): if the newest one is later damaged, recovery has nothing to fall
//! back to. Keep `before` at or below an older snapshot's sequence + 1 to keep that fallback.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, JournalError};
use crate::format::HeaderError;
use crate::segment::ReadSegment;
use crate::snapshot::{latest_valid, SnapshotDamage, SnapshotMeta};

/// What pruning did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The snapshot that bounded the pruning, if any valid one exists.
    pub snapshot: Option<SnapshotMeta>,
    /// Damaged snapshots newer than it.
    pub damaged_snapshots: Vec<(PathBuf, SnapshotDamage)>,
    /// Segment files removed (or that would be).
    pub removed: Vec<PathBuf>,
    /// The journal's first sequence afterwards.
    pub first_sequence_after: Option<u64>,
}

/// Prunes the journal in `dir`, taking the writer's lock ([`JournalError::Locked`] while a
/// writer is open: a live writer prunes with [`crate::Writer::prune`]).
pub fn prune(
    dir: impl AsRef<Path>,
    before: u64,
    dry_run: bool,
) -> Result<PruneReport, JournalError> {
    let dir = dir.as_ref();
    let _lock = DirLock::acquire(dir)?;
    prune_locked(dir, before, dry_run)
}

/// Prunes with the directory lock already held.
pub(crate) fn prune_locked(
    dir: &Path,
    before: u64,
    dry_run: bool,
) -> Result<PruneReport, JournalError> {
    let latest = latest_valid(dir)?;
    let mut report = PruneReport {
        snapshot: latest.snapshot.clone(),
        damaged_snapshots: latest.damaged,
        ..PruneReport::default()
    };
    // Started segments and their first sequences.
    let mut started: Vec<(PathBuf, u64)> = Vec::new();
    let listing = dir::list(dir)?;
    crate::recovery::check_contiguous(&listing.segments)?;
    for (index, path) in &listing.segments {
        let seg = ReadSegment::open(path, *index)?;
        match seg.header() {
            Ok(h) => started.push((path.clone(), h.first_sequence)),
            Err(HeaderError::Unwritten) => break,
            Err(e) => return Err(JournalError::corrupt(path, 0, CorruptionKind::Header(e))),
        }
    }
    report.first_sequence_after = started.first().map(|s| s.1);
    let Some(snapshot) = &latest.snapshot else {
        return Ok(report);
    };
    // Records with a sequence below `limit` may go.
    let limit = before.min(snapshot.sequence.saturating_add(1));
    let mut removable = 0;
    for pair in started.windows(2) {
        // pair[0] holds sequences pair[0].1 ..= pair[1].1 - 1.
        if pair[1].1 <= limit {
            removable += 1;
        } else {
            break;
        }
    }
    for (path, _) in &started[..removable] {
        if !dry_run {
            fs::remove_file(path).map_err(|e| JournalError::io("remove segment", path, e))?;
        }
        report.removed.push(path.clone());
    }
    report.first_sequence_after = started.get(removable).map(|s| s.1);
    if !dry_run && removable > 0 {
        dir::sync_dir(dir)?;
    }
    Ok(report)
}
