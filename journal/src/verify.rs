//! Verification: every segment, every record, every snapshot — and every problem, not just the
//! first.
//!
//! Where the [`crate::Reader`] stops at the first corruption, [`inspect`] checks each segment
//! on its own (header, every frame's checksum, sequences, the end-of-segment frame) and then the
//! chain between them (contiguous indices, each segment starting where the previous ended), and
//! the snapshots (checksums, and whether the newest valid one joins the journal). It collects
//! [`Problem`]s: an **error** means the journal is not sound (recovery would refuse it, or state
//! could not be rebuilt from it); a **warning** is something recovery handles by itself (a torn
//! tail, an unused pre-allocated segment, a damaged snapshot with a valid older one).
//!
//! It is meant for a journal at rest: with a live writer, its in-flight record can show up as a
//! torn tail.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::HeaderError;
use crate::record::{Record, RecordPosition};
use crate::recovery::short_segment;
use crate::scan::{scan_segment, SegmentEnd};
use crate::segment::ReadSegment;
use crate::snapshot::{check_snapshot, SnapshotDamage, SnapshotMeta};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Recovery deals with it by itself.
    Warning,
    /// The journal is not sound.
    Error,
}

/// One thing wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// How bad.
    pub severity: Severity,
    /// The file.
    pub path: PathBuf,
    /// Byte offset in the file, where it applies.
    pub offset: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match self.offset {
            Some(o) => write!(
                f,
                "{level}: {} at offset {o}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "{level}: {}: {}", self.path.display(), self.message),
        }
    }
}

/// How a segment ended, as inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Sealed by an end-of-segment frame.
    Sealed,
    /// Open: the writer's current segment (zeros after its last record).
    Open,
    /// Ends with torn bytes.
    Torn,
    /// Corrupt (see the problems).
    Corrupt,
    /// Never started (a zero header): pre-allocated and unused.
    Unused,
}

/// One segment, as inspected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Index.
    pub index: u64,
    /// File.
    pub path: PathBuf,
    /// File length.
    pub file_len_bytes: u64,
    /// Bytes in use: header and valid frames (end-of-segment frame included).
    pub used_bytes: u64,
    /// The header's first sequence (none if the header is bad or unwritten).
    pub first_sequence: Option<u64>,
    /// Valid records.
    pub records: u64,
    /// How it ends.
    pub state: SegmentState,
}

/// Everything [`inspect`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Every segment file, in index order.
    pub segments: Vec<SegmentSummary>,
    /// Valid records in all segments.
    pub records: u64,
    /// The lowest and highest sequence of a valid record.
    pub sequence_range: Option<(u64, u64)>,
    /// Every snapshot file, newest last, with its check.
    pub snapshots: Vec<(PathBuf, Result<SnapshotMeta, SnapshotDamage>)>,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

impl Inspection {
    /// No errors (warnings allowed).
    pub fn is_sound(&self) -> bool {
        self.problems.iter().all(|p| p.severity < Severity::Error)
    }

    /// Total bytes of the segment files.
    pub fn file_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.file_len_bytes).sum()
    }

    /// Bytes in use in the segments.
    pub fn used_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.used_bytes).sum()
    }

    fn problem(&mut self, severity: Severity, path: &Path, offset: Option<u64>, message: String) {
        self.problems.push(Problem {
            severity,
            path: path.to_path_buf(),
            offset,
            message,
        });
    }
}

/// Progress of an inspection, in segment bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of segment files done.
    pub done_bytes: u64,
    /// Bytes of all segment files.
    pub total_bytes: u64,
}

/// Inspects the journal in `dir`, calling `on_record` for every valid record and `on_progress`
/// now and then. Only an unreadable directory is an `Err`; everything else is a [`Problem`].
pub fn inspect(
    dir: impl AsRef<Path>,
    mut on_record: impl FnMut(&Record<'_>, RecordPosition),
    mut on_progress: impl FnMut(Progress),
) -> Result<Inspection, JournalError> {
    let dir = dir.as_ref();
    let listing = dir::list(dir)?;
    let mut out = Inspection::default();
    for path in &listing.other {
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".snapshot-") && n.ends_with(".rbs.tmp"))
        {
            out.problem(Severity::Warning, path, None, "not a journal file".into());
        }
    }
    for pair in listing.segments.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            let kind = CorruptionKind::IndexGap {
                expected: pair[0].0 + 1,
                found: pair[1].0,
            };
            let missing = dir::segment_path(dir, pair[0].0 + 1);
            out.problem(Severity::Error, &missing, None, kind.to_string());
        }
    }

    // Pass 1: open every segment and read its header, so each knows whether a started one
    // follows it.
    let mut opened = Vec::with_capacity(listing.segments.len());
    for (index, path) in &listing.segments {
        match ReadSegment::open(path, *index) {
            Ok(seg) => {
                let header = seg.header();
                opened.push((seg, header));
            }
            Err(e) => out.problem(Severity::Error, path, None, e.to_string()),
        }
    }
    let total_bytes: u64 = opened.iter().map(|(s, _)| s.file_len).sum();
    let last_started = opened.iter().rposition(|(_, h)| h.is_ok());

    // Pass 2: scan each.
    let mut done_bytes = 0u64;
    let mut expected_first: Option<u64> = None;
    for (i, (seg, header)) in opened.iter().enumerate() {
        let is_last = last_started.is_none_or(|l| i >= l);
        let mut summary = SegmentSummary {
            index: seg.index,
            path: seg.path.clone(),
            file_len_bytes: seg.file_len,
            used_bytes: 0,
            first_sequence: None,
            records: 0,
            state: SegmentState::Corrupt,
        };
        match header {
            Err(HeaderError::Unwritten) => {
                if let Some(at) = seg.data_without_header() {
                    let kind = CorruptionKind::DataWithoutHeader;
                    out.problem(
                        Severity::Error,
                        &seg.path,
                        Some(at as u64),
                        kind.to_string(),
                    );
                } else if is_last {
                    summary.state = SegmentState::Unused;
                    out.problem(
                        Severity::Warning,
                        &seg.path,
                        None,
                        "unused pre-allocated segment (started if the segment before it is \
                         sealed, removed otherwise, when the writer next opens)"
                            .into(),
                    );
                } else {
                    let kind = CorruptionKind::UnwrittenSegment;
                    out.problem(Severity::Error, &seg.path, Some(0), kind.to_string());
                }
                expected_first = None;
            }
            Err(e) => {
                let kind = CorruptionKind::Header(*e);
                out.problem(Severity::Error, &seg.path, Some(0), kind.to_string());
                expected_first = None;
            }
            Ok(h) => {
                summary.first_sequence = Some(h.first_sequence);
                if h.segment_index != seg.index {
                    let kind = CorruptionKind::IndexMismatch {
                        expected: seg.index,
                        found: h.segment_index,
                    };
                    out.problem(Severity::Error, &seg.path, Some(0), kind.to_string());
                }
                if seg.file_len < h.segment_len_bytes {
                    // Segments are created at full length before their header is written:
                    // a short one lost its end (damage, not a crash).
                    let kind = short_segment(seg, h);
                    out.problem(
                        Severity::Error,
                        &seg.path,
                        Some(seg.file_len),
                        kind.to_string(),
                    );
                } else if seg.file_len != h.segment_len_bytes {
                    let kind = CorruptionKind::LengthMismatch {
                        expected: h.segment_len_bytes,
                        found: seg.file_len,
                    };
                    out.problem(Severity::Error, &seg.path, None, kind.to_string());
                }
                if let Some(expected) = expected_first {
                    if h.first_sequence != expected {
                        let kind = CorruptionKind::FirstSequenceMismatch {
                            expected,
                            found: h.first_sequence,
                        };
                        out.problem(Severity::Error, &seg.path, Some(0), kind.to_string());
                    }
                }
                let map = seg.map.as_ref().expect("a started segment is mapped");
                map.prefault_read();
                let index = seg.index;
                let mut count = 0u64;
                let scan = scan_segment(map, h, |record, offset, frame_len| {
                    on_record(
                        record,
                        RecordPosition {
                            segment_index: index,
                            offset: offset as u64,
                            frame_len_bytes: frame_len,
                        },
                    );
                    count += 1;
                    if count.is_multiple_of(1 << 16) {
                        on_progress(Progress {
                            done_bytes: done_bytes + offset as u64,
                            total_bytes,
                        });
                    }
                });
                summary.records = scan.records;
                summary.used_bytes = scan.end_offset as u64;
                out.records += scan.records;
                if scan.records > 0 {
                    let (lo, hi) = (h.first_sequence, scan.next_sequence - 1);
                    out.sequence_range = Some(match out.sequence_range {
                        None => (lo, hi),
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                    });
                }
                expected_first = Some(scan.next_sequence);
                let at = Some(scan.end_offset as u64);
                match scan.end {
                    SegmentEnd::Sealed { next_sequence } => {
                        summary.state = SegmentState::Sealed;
                        summary.used_bytes += crate::format::FRAME_HEADER_LEN as u64;
                        let next = dir::segment_path(dir, seg.index + 1);
                        if is_last && !next.exists() {
                            // The writer creates the next file before it seals this one. (With
                            // later segments left, the gap is reported at the next one as a
                            // missing segment whose records are lost; this message, "every
                            // record from S on is lost", contradicted it: a review finding.)
                            let kind = CorruptionKind::MissingSegment {
                                index: seg.index + 1,
                                first_sequence: next_sequence,
                            };
                            out.problem(Severity::Error, &next, None, kind.to_string());
                        }
                    }
                    SegmentEnd::Clean if is_last => summary.state = SegmentState::Open,
                    SegmentEnd::Clean => {
                        out.problem(
                            Severity::Error,
                            &seg.path,
                            at,
                            "segment ends without an end-of-segment frame, but a later segment started"
                                .into(),
                        );
                    }
                    SegmentEnd::Torn { torn_end, damage } => {
                        summary.state = SegmentState::Torn;
                        let what = match damage {
                            None => "a record whose length word was never written".to_string(),
                            Some(e) => e.to_string(),
                        };
                        let bytes = torn_end.saturating_sub(scan.end_offset);
                        if is_last {
                            out.problem(
                                Severity::Warning,
                                &seg.path,
                                at,
                                format!(
                                    "torn tail: {bytes} byte(s), {what} (cut away when the writer next opens)"
                                ),
                            );
                        } else {
                            summary.state = SegmentState::Corrupt;
                            out.problem(
                                Severity::Error,
                                &seg.path,
                                at,
                                format!("{what}, but a later segment started"),
                            );
                        }
                    }
                    SegmentEnd::Corrupt { offset, kind } => {
                        out.problem(
                            Severity::Error,
                            &seg.path,
                            Some(offset as u64),
                            kind.to_string(),
                        );
                        expected_first = None;
                    }
                }
            }
        }
        done_bytes += seg.file_len;
        on_progress(Progress {
            done_bytes,
            total_bytes,
        });
        out.segments.push(summary);
    }

    // Snapshots, and whether the newest valid one joins the journal.
    for (_, path) in &listing.snapshots {
        out.snapshots.push((path.clone(), check_snapshot(path)));
    }
    check_snapshots(dir, &mut out);
    Ok(out)
}

fn check_snapshots(dir: &Path, out: &mut Inspection) {
    let newest_valid = out
        .snapshots
        .iter()
        .rev()
        .find_map(|(_, r)| r.as_ref().ok())
        .cloned();
    let damaged: Vec<(PathBuf, SnapshotDamage)> = out
        .snapshots
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|d| (p.clone(), *d)))
        .collect();
    for (path, damage) in damaged {
        let fallback = newest_valid.is_some();
        out.problem(
            if fallback {
                Severity::Warning
            } else {
                Severity::Error
            },
            &path,
            None,
            format!(
                "damaged snapshot: {damage}{}",
                if fallback {
                    " (recovery uses another)"
                } else {
                    " (no valid snapshot left)"
                }
            ),
        );
    }
    let first = out.segments.first();
    let journal_first = first.and_then(|s| s.first_sequence);
    let pruned = first.is_some_and(|s| s.index > 0);
    let journal_next = out.sequence_range.map(|(_, hi)| hi + 1).or(journal_first);
    match (&newest_valid, journal_first) {
        (None, Some(first_seq)) if pruned => out.problem(
            Severity::Error,
            dir,
            None,
            format!(
                "the journal starts at sequence {first_seq} (older segments pruned) and no valid \
                 snapshot covers what came before"
            ),
        ),
        (Some(s), Some(first_seq)) if pruned && s.sequence + 1 < first_seq => out.problem(
            Severity::Error,
            &s.path,
            None,
            format!(
                "newest valid snapshot covers up to {}, but the journal starts at {first_seq}: \
                 records in between are missing",
                s.sequence
            ),
        ),
        _ => {}
    }
    let started = out.segments.iter().any(|s| s.first_sequence.is_some());
    // A segment already reported as damaged is why none is started: said once, above.
    let damaged = out
        .segments
        .iter()
        .any(|s| s.state == SegmentState::Corrupt);
    if !started && !damaged && dir::has_marker(dir) {
        out.problem(
            Severity::Error,
            &dir::segment_path(dir, 0),
            None,
            CorruptionKind::NoSegments.to_string(),
        );
    }
    if let Some(s) = &newest_valid {
        // With no started segment, a new journal would start at sequence 1.
        let next = journal_next.unwrap_or(1);
        if s.sequence >= next {
            let kind = CorruptionKind::SnapshotBeyondEnd {
                snapshot_sequence: s.sequence,
                next_sequence: next,
            };
            out.problem(Severity::Error, &s.path, None, kind.to_string());
        }
    }
}
