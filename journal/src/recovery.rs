//! Recovery: what the writer does to a journal directory before it appends.
//!
//! Recovery tells apart the two things a journal can suffer. A **crash** (the process killed,
//! or with a durability policy, the machine losing power) can only leave the *final* record
//! torn or missing, a next segment created but not started, or a sealed segment whose next one
//! is created but not started: recovery repairs those by itself and reports every cut.
//! Everything else is **damage** — bytes missing or changed where no crash writes — and
//! recovery refuses it with a [`JournalError::Corrupt`] naming the file and what is lost; an
//! operator accepts a known loss explicitly ([`crate::truncate()`]).
//!
//! Under the directory lock, recovery first *plans*, reading only, and then *applies*: every
//! check below runs before any file is changed, so a refused journal is left byte for byte as
//! it was.
//!
//! 1. **List** the segment files; their indices must be contiguous (a gap is damage).
//! 2. **Find unused trailing segments**: a last segment whose header was never written (the
//!    pre-toucher creates the next segment ahead of time) or is torn, *and* whose body is all
//!    zeros, holds nothing. A missing or torn header over a body that holds data is damage.
//! 3. **Check the started segments' headers**: valid, index as in the file name, file length
//!    exactly as the header says (segments are created at full length before their header is
//!    written, so a short file lost its end: damage), first sequences non-decreasing. Their
//!    records are not read (that is what the sequential reader and `verify` do, checking every
//!    checksum): opening scans only the tail.
//! 4. **Scan the last started segment** frame by frame from its first sequence. It ends
//!    - *clean*: appending resumes after the last record;
//!    - *sealed* (an end-of-segment frame): the writer creates the next segment's file before
//!      it seals, so that file must be there (unused): it is started now. If it is not there,
//!      the records from the sealed segment's end on were removed: damage;
//!    - *torn*: the bytes from the first bad frame to the last non-zero byte are overwritten
//!      with zeros in place (the file keeps its length, so a crash during recovery leaves a
//!      state recovery handles again) and the cut is reported as a [`Truncation`];
//!    - *corrupt* (a bad frame followed by a valid one, a valid frame out of sequence, data
//!      after the end-of-segment frame): damage, naming file and offset.
//! 5. **Check the newest valid snapshot** against the journal's end: a snapshot that covers a
//!    sequence the journal does not hold means records were lost: damage. Damaged snapshots
//!    newer than it are reported ([`RecoveryReport::skipped_snapshots`]).
//! 6. A directory with no started segment is a new journal — unless the journal's creation
//!    marker (`journal.created`) is there, or a snapshot: then its segments were removed.
//!
//! Then it applies the plan: removes the unused segments it does not start, zeroes the torn
//! tail, starts the next segment, or creates segment 0 (and the marker) for a new journal.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::JournalConfig;
use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::{FrameError, HeaderError, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::scan::{scan_segment, SegmentEnd, SegmentScan};
use crate::segment::{ReadSegment, Segment};
use crate::snapshot::{latest_valid, SnapshotDamage};

/// A torn tail that recovery cut away. Only the journal's final record can be torn by a crash,
/// so one recovery cuts at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Where the cut starts: the offset after the last complete record.
    pub offset: u64,
    /// Non-zero bytes discarded (from `offset` to the last non-zero byte), overwritten with
    /// zeros.
    pub bytes_discarded: u64,
    /// What was at `offset`: `None` for a record whose length word was never written (a writer
    /// killed mid-append), otherwise why the frame there was rejected.
    pub damage: Option<FrameError>,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "torn tail cut at {} offset {}: {} byte(s) discarded ({})",
            self.path.display(),
            self.offset,
            self.bytes_discarded,
            match self.damage {
                None => "a record never committed".to_string(),
                Some(e) => e.to_string(),
            }
        )
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no journal; a new one was started.
    pub created: bool,
    /// Started segments in the journal after recovery.
    pub segments: usize,
    /// The first sequence the journal holds (its oldest segment's first sequence).
    pub first_sequence: u64,
    /// The sequence the next `append` must carry.
    pub next_sequence: u64,
    /// Complete records found in the last segment.
    pub last_segment_records: u64,
    /// The torn tail that was cut away, if any.
    pub truncated: Option<Truncation>,
    /// Unused (never started) segment files that were removed.
    pub removed_unused: Vec<PathBuf>,
    /// The last segment was sealed, so the next one (created before the seal) was started.
    pub rolled_sealed_segment: bool,
    /// Snapshots newer than the newest valid one, skipped as damaged (newest first), each with
    /// what is wrong.
    pub skipped_snapshots: Vec<(PathBuf, SnapshotDamage)>,
    /// The newest valid snapshot's sequence, if any (it is at most the last record's).
    pub snapshot_sequence: Option<u64>,
}

impl RecoveryReport {
    /// Every cut recovery made (file, offset, bytes): at most one, the torn final record.
    pub fn cuts(&self) -> impl Iterator<Item = &Truncation> {
        self.truncated.iter()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            write!(f, "new journal, first sequence {}", self.next_sequence)?;
        } else {
            write!(
                f,
                "{} segment(s), sequences {}..{} ({} record(s) in the last segment)",
                self.segments, self.first_sequence, self.next_sequence, self.last_segment_records
            )?;
        }
        if let Some(t) = &self.truncated {
            write!(f, "; {t}")?;
        }
        for p in &self.removed_unused {
            write!(f, "; removed unused segment {}", p.display())?;
        }
        if self.rolled_sealed_segment {
            write!(f, "; last segment was sealed, started the next")?;
        }
        for (p, why) in &self.skipped_snapshots {
            write!(f, "; skipped damaged snapshot {} ({why})", p.display())?;
        }
        Ok(())
    }
}

/// The writer's starting point.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segment: Segment,
    pub(crate) offset: usize,
    pub(crate) next_sequence: u64,
    pub(crate) report: RecoveryReport,
}

fn header_or_corrupt(seg: &ReadSegment) -> Result<SegmentHeader, JournalError> {
    seg.header().map_err(|e| {
        let kind = match e {
            HeaderError::Unwritten => CorruptionKind::UnwrittenSegment,
            e => CorruptionKind::Header(e),
        };
        JournalError::corrupt(&seg.path, 0, kind)
    })
}

/// The indices of `segments` must be contiguous.
pub(crate) fn check_contiguous(segments: &[(u64, PathBuf)]) -> Result<(), JournalError> {
    for pair in segments.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(JournalError::corrupt(
                dir::segment_path(pair[0].1.parent().unwrap_or(Path::new(".")), pair[0].0 + 1),
                0,
                CorruptionKind::IndexGap {
                    expected: pair[0].0 + 1,
                    found: pair[1].0,
                },
            ));
        }
    }
    Ok(())
}

/// What a last started segment's scan says to do.
enum Action {
    /// No started segment: create segment 0.
    New,
    /// Append after the last record.
    Resume,
    /// Zero the torn bytes `from..to`, then append at `from`.
    Cut { from: usize, to: usize },
    /// Start the unused segment after the sealed last one at `next_sequence`.
    StartNext { next_sequence: u64 },
}

/// Everything recovery decided, before it changes anything.
struct Plan {
    report: RecoveryReport,
    /// Unused trailing segments, lowest index first.
    unused: Vec<(u64, PathBuf)>,
    /// The last started segment and its scan.
    last: Option<(u64, PathBuf, SegmentScan)>,
    action: Action,
}

/// Recovers the journal in `dir` (the caller holds the lock) and returns where to append.
pub(crate) fn recover(dir: &Path, config: &JournalConfig) -> Result<Recovered, JournalError> {
    let plan = plan(dir, config)?;
    apply(dir, config, plan)
}

/// Reads the journal and decides what to do; changes nothing.
fn plan(dir: &Path, config: &JournalConfig) -> Result<Plan, JournalError> {
    // 1. List.
    let segments = dir::list(dir)?.segments;
    check_contiguous(&segments)?;
    let mut report = RecoveryReport::default();

    // 2. Unused trailing segments.
    let mut started_count = segments.len();
    while let Some((index, path)) = started_count.checked_sub(1).map(|i| &segments[i]) {
        let seg = ReadSegment::open(path, *index)?;
        match seg.header() {
            Ok(_) => break,
            Err(_) if seg.unused() => started_count -= 1,
            Err(
                HeaderError::Unwritten
                | HeaderError::BadChecksum { .. }
                | HeaderError::BadField { .. },
            ) => {
                // Not unused: something follows the header.
                let at = seg.data_without_header().unwrap_or(0);
                return Err(JournalError::corrupt(
                    path,
                    at as u64,
                    CorruptionKind::DataWithoutHeader,
                ));
            }
            Err(e) => {
                return Err(JournalError::corrupt(path, 0, CorruptionKind::Header(e)));
            }
        }
    }
    let unused = segments[started_count..].to_vec();
    let started = &segments[..started_count];

    // 6. No started segment: a new journal, unless it had one.
    let Some((last_index, last_path)) = started.last().cloned() else {
        if let Some((_, path)) = unused.first().filter(|(i, _)| *i != 0) {
            // Only unused segments, and not from the start: the journal's data is gone.
            return Err(JournalError::corrupt(
                path,
                0,
                CorruptionKind::UnwrittenSegment,
            ));
        }
        if dir::has_marker(dir) {
            return Err(JournalError::corrupt(
                dir::segment_path(dir, 0),
                0,
                CorruptionKind::NoSegments,
            ));
        }
        report.created = true;
        report.segments = 1;
        report.first_sequence = config.first_sequence;
        report.next_sequence = config.first_sequence;
        check_snapshots(dir, &mut report)?;
        return Ok(Plan {
            report,
            unused,
            last: None,
            action: Action::New,
        });
    };

    // 3. The started segments' headers.
    let mut previous_first = None;
    for (index, path) in started {
        let seg = ReadSegment::open(path, *index)?;
        let header = header_or_corrupt(&seg)?;
        check_header(&seg, &header)?;
        if let Some(prev) = previous_first {
            if header.first_sequence < prev {
                return Err(JournalError::corrupt(
                    path,
                    0,
                    CorruptionKind::FirstSequenceMismatch {
                        expected: prev,
                        found: header.first_sequence,
                    },
                ));
            }
        } else {
            report.first_sequence = header.first_sequence;
        }
        previous_first = Some(header.first_sequence);
    }
    report.segments = started.len();

    // 4. The last started segment.
    let read = ReadSegment::open(&last_path, last_index)?;
    let header = header_or_corrupt(&read)?;
    check_header(&read, &header)?;
    let map = read
        .map
        .as_ref()
        .expect("a segment with a valid header is mapped");
    let scan = scan_segment(map, &header, |_, _, _| {});
    drop(read);
    report.last_segment_records = scan.records;
    report.next_sequence = scan.next_sequence;
    let action = match scan.end {
        SegmentEnd::Clean => Action::Resume,
        SegmentEnd::Torn { torn_end, damage } => {
            report.truncated = Some(Truncation {
                path: last_path.clone(),
                offset: scan.end_offset as u64,
                bytes_discarded: torn_end.saturating_sub(scan.end_offset) as u64,
                damage,
            });
            Action::Cut {
                from: scan.end_offset,
                to: torn_end,
            }
        }
        SegmentEnd::Sealed { next_sequence } => {
            if unused.first().map(|u| u.0) != Some(last_index + 1) {
                return Err(JournalError::corrupt(
                    dir::segment_path(dir, last_index + 1),
                    0,
                    CorruptionKind::MissingSegment {
                        index: last_index + 1,
                        first_sequence: next_sequence,
                    },
                ));
            }
            report.rolled_sealed_segment = true;
            report.segments += 1;
            Action::StartNext { next_sequence }
        }
        SegmentEnd::Corrupt { offset, kind } => {
            return Err(JournalError::corrupt(&last_path, offset as u64, kind));
        }
    };

    // 5. Snapshots.
    check_snapshots(dir, &mut report)?;
    Ok(Plan {
        report,
        unused,
        last: Some((last_index, last_path, scan)),
        action,
    })
}

/// The newest valid snapshot must not cover more than the journal holds; damaged newer ones
/// are reported.
fn check_snapshots(dir: &Path, report: &mut RecoveryReport) -> Result<(), JournalError> {
    let latest = latest_valid(dir)?;
    report.skipped_snapshots = latest.damaged;
    if let Some(s) = latest.snapshot {
        if s.sequence >= report.next_sequence {
            return Err(JournalError::corrupt(
                &s.path,
                0,
                CorruptionKind::SnapshotBeyondEnd {
                    snapshot_sequence: s.sequence,
                    next_sequence: report.next_sequence,
                },
            ));
        }
        report.snapshot_sequence = Some(s.sequence);
    }
    Ok(())
}

/// Carries out a plan.
fn apply(dir: &Path, config: &JournalConfig, plan: Plan) -> Result<Recovered, JournalError> {
    let durable = config.durability.method().is_some();
    let Plan {
        mut report,
        unused,
        last,
        action,
    } = plan;
    // The unused segments that are not started now go, highest first (so no gap appears).
    let keep = usize::from(matches!(action, Action::StartNext { .. }));
    for (_, path) in unused[keep.min(unused.len())..].iter().rev() {
        fs::remove_file(path).map_err(|e| JournalError::io("remove", path, e))?;
        report.removed_unused.push(path.clone());
    }
    report.removed_unused.reverse();
    if durable && !report.removed_unused.is_empty() {
        dir::sync_dir(dir)?;
    }
    let Some((last_index, last_path, scan)) = last else {
        let segment = Segment::create(dir, 0, config.segment_len_bytes, durable)?;
        segment.write_header(config.first_sequence);
        if durable {
            segment
                .map
                .flush_range(0, SEGMENT_HEADER_LEN)
                .map_err(|e| JournalError::io("fsync segment", &segment.path, e))?;
        }
        dir::write_marker(dir, durable)?;
        return Ok(Recovered {
            segment,
            offset: SEGMENT_HEADER_LEN,
            next_sequence: config.first_sequence,
            report,
        });
    };
    if !dir::has_marker(dir) {
        // A journal written before the marker existed: mark it now.
        dir::write_marker(dir, durable)?;
    }
    match action {
        Action::New => unreachable!("a journal with a started segment is not new"),
        Action::Resume => {}
        Action::Cut { from, to } => {
            zero_range(&last_path, from as u64, to as u64, durable)?;
        }
        Action::StartNext { next_sequence } => {
            let (index, path) = unused.first().cloned().expect("checked by the plan");
            // Re-create it in place, all zeros and at the configured length: the file exists
            // throughout, so a crash here leaves the same state as before.
            set_len(&path, 0, false)?;
            set_len(&path, config.segment_len_bytes, durable)?;
            let segment = Segment::open_existing(&path, index)?;
            segment.write_header(next_sequence);
            if durable {
                segment
                    .map
                    .flush_range(0, SEGMENT_HEADER_LEN)
                    .map_err(|e| JournalError::io("fsync segment", &path, e))?;
            }
            return Ok(Recovered {
                segment,
                offset: SEGMENT_HEADER_LEN,
                next_sequence,
                report,
            });
        }
    }
    let segment = Segment::open_existing(&last_path, last_index)?;
    Ok(Recovered {
        segment,
        offset: scan.end_offset,
        next_sequence: scan.next_sequence,
        report,
    })
}

/// Header fields that must agree with the file: index and length. A file shorter than its
/// header says lost its end; the error says how many complete records are left before the cut.
pub(crate) fn check_header(seg: &ReadSegment, header: &SegmentHeader) -> Result<(), JournalError> {
    if header.segment_index != seg.index {
        return Err(JournalError::corrupt(
            &seg.path,
            0,
            CorruptionKind::IndexMismatch {
                expected: seg.index,
                found: header.segment_index,
            },
        ));
    }
    if seg.file_len < header.segment_len_bytes {
        return Err(JournalError::corrupt(
            &seg.path,
            seg.file_len,
            short_segment(seg, header),
        ));
    }
    if seg.file_len != header.segment_len_bytes {
        return Err(JournalError::corrupt(
            &seg.path,
            0,
            CorruptionKind::LengthMismatch {
                expected: header.segment_len_bytes,
                found: seg.file_len,
            },
        ));
    }
    Ok(())
}

/// What is left of a segment whose file is shorter than its header says.
pub(crate) fn short_segment(seg: &ReadSegment, header: &SegmentHeader) -> CorruptionKind {
    let (records_intact, next_sequence) = match &seg.map {
        Some(map) => {
            let scan = scan_segment(map, header, |_, _, _| {});
            (scan.records, scan.next_sequence)
        }
        None => (0, header.first_sequence),
    };
    CorruptionKind::ShortSegment {
        header_len: header.segment_len_bytes,
        file_len: seg.file_len,
        records_intact,
        next_sequence,
    }
}

pub(crate) fn set_len(path: &Path, len: u64, durable: bool) -> Result<(), JournalError> {
    let file = crate::dir::open_regular(path, OpenOptions::new().write(true))
        .map_err(|e| JournalError::io("open segment", path, e))?;
    file.set_len(len)
        .map_err(|e| JournalError::io("resize segment", path, e))?;
    if durable {
        file.sync_all()
            .map_err(|e| JournalError::io("fsync segment", path, e))?;
    }
    Ok(())
}

/// Overwrites `from..to` of the file with zeros, in place (the file keeps its length).
pub(crate) fn zero_range(
    path: &Path,
    from: u64,
    to: u64,
    durable: bool,
) -> Result<(), JournalError> {
    if to <= from {
        return Ok(());
    }
    let file = crate::dir::open_regular(path, OpenOptions::new().write(true))
        .map_err(|e| JournalError::io("open segment", path, e))?;
    let zeros = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| JournalError::io("zero torn tail", path, e))?;
        at += n as u64;
    }
    if durable {
        file.sync_data()
            .map_err(|e| JournalError::io("fsync segment", path, e))?;
    }
    Ok(())
}
