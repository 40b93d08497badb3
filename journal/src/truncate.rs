//! Truncation: the operator's explicit way to accept a known loss.
//!
//! Recovery refuses damage (a segment cut short, a removed segment, a snapshot beyond the
//! journal's end) rather than guess what to drop. [`truncate()`] is the decision a person makes
//! instead: keep every record up to and including `to`, drop everything after it, and leave a
//! journal recovery accepts.
//!
//! Under the writer's lock, it first reads (nothing is changed if anything fails):
//!
//! - the segments from the first, each sealed and continuing the one before, up to the segment
//!   that holds record `to` — every record up to `to` must be intact (checksums, contiguous
//!   sequences); otherwise it fails, saying up to where the journal is intact;
//! - `to` may also be the sequence just before a segment's first: that segment is kept empty.
//!
//! Then, in an order where a crash part-way leaves a journal that recovery refuses or that a
//! second run finishes (never one that silently holds less than it should):
//!
//! 1. snapshots covering more than `to` are removed (newest first);
//! 2. every segment after the one holding `to` is removed (highest first);
//! 3. that segment is restored to its full length if it was cut short, and every byte after
//!    record `to` (later records, the end-of-segment frame, damage) is overwritten with zeros:
//!    it becomes the journal's open last segment, and the writer appends `to + 1` there.
//!
//! A directory where no segment holds a record (every segment file lost) can only be emptied,
//! with `to` 0: its snapshots, segment files and creation marker are removed, and the next
//! writer starts a new journal.
//!
//! With `dry_run`, it only reports what it would do.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, JournalError};
use crate::format::SEGMENT_HEADER_LEN;
use crate::recovery::{set_len, zero_range};
use crate::scan::{last_non_zero_byte, scan_segment, SegmentEnd};
use crate::segment::ReadSegment;

/// A segment file [`truncate()`] removed (or would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedSegment {
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub file_len: u64,
    /// The sequences of the intact records it held (as far as they could be read), if any.
    pub sequences: Option<(u64, u64)>,
}

/// What [`truncate()`] did (or, with `dry_run`, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncateReport {
    /// The last sequence kept.
    pub to: u64,
    /// The segment that now ends the journal; `None` when no segment held a record and the
    /// journal was emptied (`to` 0): the next writer starts a new one.
    pub last_segment: Option<PathBuf>,
    /// Where in it the cut is (after record `to`).
    pub cut_offset: u64,
    /// Non-zero bytes after the cut in that segment, overwritten with zeros.
    pub bytes_zeroed: u64,
    /// Intact records after `to` in that segment, dropped: their sequences.
    pub records_dropped_in_last: Option<(u64, u64)>,
    /// The segment's length before, if it was shorter than its header says (restored).
    pub restored_from_len: Option<u64>,
    /// Later segment files removed, in index order.
    pub removed_segments: Vec<RemovedSegment>,
    /// Snapshots covering more than `to`, removed, in sequence order.
    pub removed_snapshots: Vec<PathBuf>,
    /// Only reported, nothing changed.
    pub dry_run: bool,
}

impl TruncateReport {
    /// The highest sequence of an intact record that was dropped, if any: the loss accepted
    /// runs from `to + 1` to it (at least).
    pub fn last_dropped(&self) -> Option<u64> {
        self.removed_segments
            .iter()
            .filter_map(|s| s.sequences.map(|r| r.1))
            .chain(self.records_dropped_in_last.map(|r| r.1))
            .max()
    }
}

/// Keeps every record up to and including `to` in the journal in `dir`, and removes everything
/// after it (see the module docs). Takes the writer's lock ([`JournalError::Locked`] while a
/// writer is open). Errors: the journal does not hold record `to` intact (a
/// [`JournalError::Corrupt`] or [`JournalError::Pruned`] saying why), or I/O.
pub fn truncate(
    dir: impl AsRef<Path>,
    to: u64,
    dry_run: bool,
) -> Result<TruncateReport, JournalError> {
    let dir = dir.as_ref();
    let _lock = DirLock::acquire(dir)?;
    let listing = dir::list(dir)?;
    let segments = &listing.segments;

    let started = segments
        .iter()
        .any(|(index, path)| ReadSegment::open(path, *index).is_ok_and(|seg| seg.header().is_ok()));
    if !started {
        return empty(dir, to, &listing, dry_run);
    }

    // 1. Find the segment holding `to`, checking everything before it.
    let mut target = None;
    let mut expected_first: Option<u64> = None;
    // The last intact sequence so far, for the error.
    let mut intact_through: Option<u64> = None;
    let mut stop: Option<JournalError> = None;
    // The journal ended (clean, or a torn final record) before `to`.
    let mut ended = false;
    for (i, (index, path)) in segments.iter().enumerate() {
        if i > 0 && *index != segments[i - 1].0 + 1 {
            stop = crate::recovery::check_contiguous(&segments[i - 1..=i]).err();
            break;
        }
        let seg = ReadSegment::open(path, *index)?;
        let header = match seg.header() {
            Ok(h) => h,
            Err(e) => {
                stop = Some(JournalError::corrupt(path, 0, CorruptionKind::Header(e)));
                break;
            }
        };
        if header.segment_index != *index || seg.file_len > header.segment_len_bytes {
            stop = crate::recovery::check_header(&seg, &header).err();
            break;
        }
        match expected_first {
            Some(e) if header.first_sequence != e => {
                stop = Some(JournalError::corrupt(
                    path,
                    0,
                    CorruptionKind::FirstSequenceMismatch {
                        expected: e,
                        found: header.first_sequence,
                    },
                ));
                break;
            }
            None if to < header.first_sequence.saturating_sub(1) => {
                return Err(JournalError::Pruned {
                    requested: to,
                    first_available: header.first_sequence,
                });
            }
            _ => {}
        }
        let map = seg.map.as_ref().expect("a segment with a header is mapped");
        let mut cut = (header.first_sequence == to.wrapping_add(1)).then_some(SEGMENT_HEADER_LEN);
        let scan = scan_segment(map, &header, |record, offset, frame_len| {
            if record.sequence == to {
                cut = Some(offset + frame_len as usize);
            }
        });
        if let Some(cut) = cut {
            let physical = map.len();
            let zero_to = if cut < physical {
                last_non_zero_byte(map, cut, physical).map_or(cut, |at| at + 1)
            } else {
                cut
            };
            let dropped =
                (scan.next_sequence > to.wrapping_add(1)).then(|| (to + 1, scan.next_sequence - 1));
            target = Some((
                i,
                path.clone(),
                cut,
                zero_to,
                dropped,
                (seg.file_len < header.segment_len_bytes)
                    .then_some((seg.file_len, header.segment_len_bytes)),
            ));
            break;
        }
        if scan.records > 0 {
            intact_through = Some(scan.next_sequence - 1);
        }
        let SegmentEnd::Sealed { next_sequence } = scan.end else {
            let whole = seg.file_len == header.segment_len_bytes;
            // Only the last started segment may end unsealed (those after it never started).
            let last = segments[i + 1..]
                .iter()
                .all(|(index, path)| ReadSegment::open(path, *index).is_ok_and(|s| s.unused()));
            if whole && last && matches!(scan.end, SegmentEnd::Clean | SegmentEnd::Torn { .. }) {
                ended = true;
                break;
            }
            stop = Some(match scan.end {
                SegmentEnd::Corrupt { offset, kind } => {
                    JournalError::corrupt(path, offset as u64, kind)
                }
                _ if seg.file_len < header.segment_len_bytes => JournalError::corrupt(
                    path,
                    seg.file_len,
                    crate::recovery::short_segment(&seg, &header),
                ),
                _ => JournalError::corrupt(
                    path,
                    scan.end_offset as u64,
                    CorruptionKind::MissingFrame,
                ),
            });
            break;
        };
        if seg.file_len != header.segment_len_bytes {
            stop = crate::recovery::check_header(&seg, &header).err();
            break;
        }
        expected_first = Some(next_sequence);
    }
    let Some((target_pos, last_segment, cut, zero_to, dropped, short)) = target else {
        let through = intact_through.map_or("no record".to_string(), |s| format!("sequence {s}"));
        if ended {
            let last = intact_through.unwrap_or(0);
            let snapshot_beyond = listing.snapshots.iter().any(|(s, _)| *s > last);
            return Err(JournalError::Truncate {
                to,
                reason: match intact_through {
                    Some(_) => format!(
                        "record {to} is beyond the journal's end: its last record is {through}{}",
                        if snapshot_beyond {
                            format!(" (a snapshot covers more: --to {last} removes it)")
                        } else {
                            String::new()
                        }
                    ),
                    None => format!("record {to} is beyond the journal's end: it holds no record"),
                },
            });
        }
        let why = match stop {
            Some(e) => format!("; then: {e}"),
            None => String::new(),
        };
        return Err(JournalError::Truncate {
            to,
            reason: format!(
                "record {to} is not in the journal intact: it is intact through {through}{why}"
            ),
        });
    };

    // 2. What goes.
    let mut report = TruncateReport {
        to,
        last_segment: Some(last_segment.clone()),
        cut_offset: cut as u64,
        bytes_zeroed: zero_to.saturating_sub(cut) as u64,
        records_dropped_in_last: dropped,
        restored_from_len: short.map(|s| s.0),
        removed_segments: Vec::new(),
        removed_snapshots: Vec::new(),
        dry_run,
    };
    for (index, path) in &segments[target_pos + 1..] {
        let file_len = fs::metadata(path)
            .map_err(|e| JournalError::io("stat segment", path, e))?
            .len();
        let sequences = ReadSegment::open(path, *index).ok().and_then(|seg| {
            let header = seg.header().ok()?;
            let scan = scan_segment(seg.map.as_ref()?, &header, |_, _, _| {});
            (scan.records > 0).then(|| (header.first_sequence, scan.next_sequence - 1))
        });
        report.removed_segments.push(RemovedSegment {
            path: path.clone(),
            file_len,
            sequences,
        });
    }
    report.removed_snapshots = listing
        .snapshots
        .iter()
        .filter(|(s, _)| *s > to)
        .map(|(_, p)| p.clone())
        .collect();
    if dry_run {
        return Ok(report);
    }

    // 3. Remove, then cut.
    for path in report.removed_snapshots.iter().rev() {
        fs::remove_file(path).map_err(|e| JournalError::io("remove snapshot", path, e))?;
    }
    for removed in report.removed_segments.iter().rev() {
        fs::remove_file(&removed.path)
            .map_err(|e| JournalError::io("remove segment", &removed.path, e))?;
    }
    dir::sync_dir(dir)?;
    if let Some((_, header_len)) = short {
        set_len(&last_segment, header_len, false)?;
    }
    zero_range(&last_segment, cut as u64, zero_to as u64, true)?;
    if !dir::has_marker(dir) {
        dir::write_marker(dir, true)?;
    }
    Ok(report)
}

/// No segment holds a record: only emptying the directory (`to` 0) is possible.
fn empty(
    dir: &Path,
    to: u64,
    listing: &dir::DirListing,
    dry_run: bool,
) -> Result<TruncateReport, JournalError> {
    if to != 0 {
        return Err(JournalError::Truncate {
            to,
            reason: "no segment file holds a record; only --to 0 (an empty journal) is possible"
                .to_string(),
        });
    }
    let mut report = TruncateReport {
        to,
        last_segment: None,
        cut_offset: 0,
        bytes_zeroed: 0,
        records_dropped_in_last: None,
        restored_from_len: None,
        removed_segments: Vec::new(),
        removed_snapshots: listing.snapshots.iter().map(|(_, p)| p.clone()).collect(),
        dry_run,
    };
    for (_, path) in &listing.segments {
        let file_len = fs::metadata(path)
            .map_err(|e| JournalError::io("stat segment", path, e))?
            .len();
        report.removed_segments.push(RemovedSegment {
            path: path.clone(),
            file_len,
            sequences: None,
        });
    }
    if dry_run {
        return Ok(report);
    }
    for path in report.removed_snapshots.iter().rev() {
        fs::remove_file(path).map_err(|e| JournalError::io("remove snapshot", path, e))?;
    }
    for removed in report.removed_segments.iter().rev() {
        fs::remove_file(&removed.path)
            .map_err(|e| JournalError::io("remove segment", &removed.path, e))?;
    }
    let marker = dir.join(dir::CREATED_FILE_NAME);
    if marker.exists() {
        fs::remove_file(&marker).map_err(|e| JournalError::io("remove marker", &marker, e))?;
    }
    dir::sync_dir(dir)?;
    Ok(report)
}
