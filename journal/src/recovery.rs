//! Recovery: what the writer does to a journal directory before it appends.
//!
//! Under the directory lock, in this order:
//!
//! 1. **List** the segment files; their indices must be contiguous (a gap is corruption).
//! 2. **Drop unused trailing segments**: a last segment whose header was never written (the
//!    pre-toucher creates the next segment ahead of time) or is torn, *and* whose body is all
//!    zeros, holds nothing; it is removed and reported. A missing or torn header over a body
//!    that holds data is corruption.
//! 3. **Check the other headers**: valid, index as in the file name, length as the file's,
//!    first sequences non-decreasing. Their records are not read (that is what the sequential
//!    reader and `verify` do, checking every checksum): opening scans only the tail.
//! 4. **Scan the last segment** frame by frame from its first sequence. It ends
//!    - *clean*: appending resumes after the last record;
//!    - *sealed* (an end-of-segment frame): the next segment is started now;
//!    - *torn*: the bytes from the first bad frame to the segment's end are cut away (the file
//!      is truncated there and re-extended, so the cut range reads as zeros) and the cut is
//!      reported as a [`Truncation`];
//!    - *corrupt* (a bad frame followed by a valid one, a valid frame out of sequence, data
//!      after the end-of-segment frame): a hard [`JournalError::Corrupt`] naming file and offset.
//!
//! A file shorter than its header says (a torn extension) is first extended to its full length;
//! whatever record the cut went through is then torn, and handled as above.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::config::JournalConfig;
use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::{FrameError, HeaderError, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::scan::{last_non_zero_byte, scan_segment, SegmentEnd};
use crate::segment::{ReadSegment, Segment};

/// A torn tail that recovery cut away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Where the cut starts: the offset after the last complete record.
    pub offset: u64,
    /// Non-zero bytes discarded (from `offset` to the last non-zero byte).
    pub bytes_discarded: u64,
    /// What was at `offset`: `None` for a record whose length word was never written (a writer
    /// killed mid-append), otherwise why the frame there was rejected.
    pub damage: Option<FrameError>,
    /// The file's length before recovery, if it was shorter than its header says.
    pub short_file_len: Option<u64>,
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
    /// The last segment was sealed, so a new one was started.
    pub rolled_sealed_segment: bool,
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
            write!(
                f,
                "; torn tail cut at {} offset {} ({} byte(s) discarded, {})",
                t.path.display(),
                t.offset,
                t.bytes_discarded,
                match t.damage {
                    None => "record never committed".to_string(),
                    Some(e) => format!("{e:?}"),
                }
            )?;
        }
        for p in &self.removed_unused {
            write!(f, "; removed unused segment {}", p.display())?;
        }
        if self.rolled_sealed_segment {
            write!(f, "; last segment was sealed, started the next")?;
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

/// Recovers the journal in `dir` (the caller holds the lock) and returns where to append.
pub(crate) fn recover(dir: &Path, config: &JournalConfig) -> Result<Recovered, JournalError> {
    let durable = config.durability.method().is_some();
    let mut segments = dir::list(dir)?.segments;
    for pair in segments.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(JournalError::corrupt(
                &pair[1].1,
                0,
                CorruptionKind::IndexGap {
                    expected: pair[0].0 + 1,
                    found: pair[1].0,
                },
            ));
        }
    }
    let mut report = RecoveryReport::default();

    // 2. Unused trailing segments.
    let mut lowest_removed = None;
    while let Some((index, path)) = segments.last().cloned() {
        let seg = ReadSegment::open(&path, index)?;
        match seg.header() {
            Ok(_) => break,
            Err(
                HeaderError::Unwritten
                | HeaderError::BadChecksum { .. }
                | HeaderError::BadField { .. },
            ) => {
                let body_non_zero = match &seg.map {
                    Some(map) if map.len() > SEGMENT_HEADER_LEN => {
                        last_non_zero_byte(map, SEGMENT_HEADER_LEN, map.len())
                    }
                    _ => None,
                };
                if let Some(at) = body_non_zero {
                    return Err(JournalError::corrupt(
                        &path,
                        at as u64,
                        CorruptionKind::DataWithoutHeader,
                    ));
                }
                drop(seg);
                fs::remove_file(&path).map_err(|e| JournalError::io("remove", &path, e))?;
                report.removed_unused.push(path);
                lowest_removed = Some(index);
                segments.pop();
            }
            Err(e) => {
                return Err(JournalError::corrupt(&path, 0, CorruptionKind::Header(e)));
            }
        }
    }
    if durable && !report.removed_unused.is_empty() {
        dir::sync_dir(dir)?;
    }

    // A new journal.
    let Some((last_index, last_path)) = segments.last().cloned() else {
        if let Some(index) = lowest_removed.filter(|&i| i != 0) {
            // Only unused segments, and not from the start: the journal's data is gone.
            return Err(JournalError::corrupt(
                dir::segment_path(dir, index),
                0,
                CorruptionKind::UnwrittenSegment,
            ));
        }
        let segment = Segment::create(dir, 0, config.segment_len_bytes, durable)?;
        segment.write_header(config.first_sequence);
        report.created = true;
        report.segments = 1;
        report.first_sequence = config.first_sequence;
        report.next_sequence = config.first_sequence;
        return Ok(Recovered {
            segment,
            offset: SEGMENT_HEADER_LEN,
            next_sequence: config.first_sequence,
            report,
        });
    };

    // 3. Headers of the segments before the last.
    let mut previous_first = None;
    for (index, path) in &segments {
        let seg = ReadSegment::open(path, *index)?;
        let header = header_or_corrupt(&seg)?;
        check_header(&seg, &header, *index == last_index)?;
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
    report.segments = segments.len();

    // 4. The last segment.
    let read = ReadSegment::open(&last_path, last_index)?;
    let header = header_or_corrupt(&read)?;
    let short_file_len = (read.file_len < header.segment_len_bytes).then_some(read.file_len);
    drop(read);
    if short_file_len.is_some() {
        set_len(&last_path, header.segment_len_bytes, durable)?;
    }
    let segment = Segment::open_existing(&last_path, last_index)?;
    let scan = scan_segment(&segment.map, &header, |_, _, _| {});
    report.last_segment_records = scan.records;
    report.next_sequence = scan.next_sequence;
    match scan.end {
        SegmentEnd::Clean => Ok(Recovered {
            segment,
            offset: scan.end_offset,
            next_sequence: scan.next_sequence,
            report,
        }),
        SegmentEnd::Torn { torn_end, damage } => {
            report.truncated = Some(Truncation {
                path: last_path.clone(),
                offset: scan.end_offset as u64,
                bytes_discarded: torn_end.saturating_sub(scan.end_offset) as u64,
                damage,
                short_file_len,
            });
            drop(segment);
            // Cut and re-extend: the kernel zeroes the cut range, page cache included.
            set_len(&last_path, scan.end_offset as u64, false)?;
            set_len(&last_path, header.segment_len_bytes, durable)?;
            let segment = Segment::open_existing(&last_path, last_index)?;
            Ok(Recovered {
                segment,
                offset: scan.end_offset,
                next_sequence: scan.next_sequence,
                report,
            })
        }
        SegmentEnd::Sealed { next_sequence } => {
            drop(segment);
            let segment = Segment::create(dir, last_index + 1, config.segment_len_bytes, durable)?;
            segment.write_header(next_sequence);
            report.rolled_sealed_segment = true;
            report.segments += 1;
            Ok(Recovered {
                segment,
                offset: SEGMENT_HEADER_LEN,
                next_sequence,
                report,
            })
        }
        SegmentEnd::Corrupt { offset, kind } => {
            Err(JournalError::corrupt(&last_path, offset as u64, kind))
        }
    }
}

/// Header fields that must agree with the file: index and (except for a torn last segment,
/// which recovery extends) length.
pub(crate) fn check_header(
    seg: &ReadSegment,
    header: &SegmentHeader,
    is_last: bool,
) -> Result<(), JournalError> {
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
    let length_ok = if is_last {
        seg.file_len <= header.segment_len_bytes
    } else {
        seg.file_len == header.segment_len_bytes
    };
    if !length_ok {
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

fn set_len(path: &Path, len: u64, durable: bool) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io("open segment", path, e))?;
    file.set_len(len)
        .map_err(|e| JournalError::io("truncate segment", path, e))?;
    if durable {
        file.sync_all()
            .map_err(|e| JournalError::io("fsync segment", path, e))?;
    }
    Ok(())
}
