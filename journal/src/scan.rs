//! Reading frames out of a mapped segment, and telling a torn tail from corruption.
//!
//! [`read_frame`] decodes the frame at one offset through its commit word. When a segment's
//! frames stop — a zero length word, or a frame that fails its checks — [`classify_tail`]
//! decides what the rest of the segment is:
//!
//! - **clean**: every byte from there on is zero; the segment simply ends there.
//! - **torn**: non-zero bytes, but no valid frame among them at any aligned offset. This is what
//!   a writer dying mid-append leaves (its frame body written, its length word not yet, or a
//!   partial write after a power loss); recovery cuts it away and reports it.
//! - **corrupt**: a valid frame lies further on. The bad frame is not the last one, so the
//!   damage is in the middle of the data; it is a hard error, never skipped.
//!
//! `classify_tail` looks past the committed end of the segment, so it must not run while a
//! writer in this process appends to the same segment (see [`crate::mapping`]); recovery holds
//! the directory lock, and the sequential reader is for journals at rest. The tailing reader
//! never calls it.
//!
//! [`scan_segment`] drives both over a whole segment: recovery, the sequential reader and
//! `verify` share it.

use crate::format::{
    decode_frame, FrameError, FrameHeader, SegmentHeader, FLAG_END_OF_SEGMENT, FRAME_ALIGN,
    FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::mapping::Mapping;
use crate::record::Record;

/// The outcome of reading one frame.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FrameRead<'a> {
    /// A valid record frame.
    Record {
        header: FrameHeader,
        /// The whole frame; the payload is `frame[32..32 + payload_len]`.
        frame: &'a [u8],
    },
    /// A valid end-of-segment frame.
    End { header: FrameHeader },
    /// The length word is zero (or lies past the end of a short file): no frame here yet.
    Empty,
    /// Something is here, but not a valid frame.
    Invalid(FrameError),
}

/// Reads the frame at `offset` (a multiple of 8) of a segment whose header says it is
/// `logical_len` bytes long; `map` may be shorter (a truncated file), and bytes past it read as
/// zeros.
#[inline]
pub(crate) fn read_frame(map: &Mapping, offset: usize, logical_len: usize) -> FrameRead<'_> {
    debug_assert!(offset.is_multiple_of(FRAME_ALIGN) && offset >= SEGMENT_HEADER_LEN);
    if offset + FRAME_HEADER_LEN > logical_len {
        // The writer always leaves room for an end-of-segment frame.
        return FrameRead::Invalid(FrameError::NoRoom);
    }
    if offset + 4 > map.len() {
        return FrameRead::Empty;
    }
    let frame_len = map.load_u32_acquire(offset);
    if frame_len == 0 {
        return FrameRead::Empty;
    }
    let len = frame_len as usize;
    if len < FRAME_HEADER_LEN || !len.is_multiple_of(FRAME_ALIGN) || len > logical_len - offset {
        return FrameRead::Invalid(FrameError::BadLength { frame_len });
    }
    if len > map.len() - offset {
        return FrameRead::Invalid(FrameError::PastEndOfFile { frame_len });
    }
    // SAFETY: the length word is non-zero, so the frame is committed: the writer published it
    // with a Release store that our Acquire load observed, and never writes it again. (Or no
    // writer is active, in which case nothing writes it at all.)
    let frame = unsafe { map.bytes(offset, len) };
    match decode_frame(frame) {
        Err(e) => FrameRead::Invalid(e),
        Ok(header) if header.flags & FLAG_END_OF_SEGMENT != 0 => FrameRead::End { header },
        Ok(_) if offset + len + FRAME_HEADER_LEN > logical_len => {
            // A record that leaves no room for the end-of-segment frame: never written so.
            FrameRead::Invalid(FrameError::BadLength { frame_len })
        }
        Ok(header) => FrameRead::Record { header, frame },
    }
}

/// The bytes of the frame that [`read_frame`] accepted at `offset` (the caller keeps its
/// decoded header; this re-borrows the frame without checking it again).
#[inline]
pub(crate) fn accepted_frame(map: &Mapping, offset: usize, frame_len: u32) -> &[u8] {
    assert_eq!(
        map.load_u32_acquire(offset),
        frame_len,
        "an accepted frame changed"
    );
    // SAFETY: the frame was accepted by `read_frame`, so its length word is non-zero and
    // committed (checked again just above): the writer never writes these bytes again.
    unsafe { map.bytes(offset, frame_len as usize) }
}

/// The record inside a frame [`read_frame`] accepted.
#[inline]
pub(crate) fn record_of<'a>(header: &FrameHeader, frame: &'a [u8]) -> Record<'a> {
    Record {
        sequence: header.sequence,
        record_type: header.record_type,
        timestamp_ns: header.timestamp_ns,
        payload: &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.payload_len as usize],
    }
}

/// What the rest of a segment is, from the first offset that holds no valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// All zeros.
    Clean,
    /// Non-zero bytes up to `end` (exclusive), and no valid frame among them.
    Torn { end: usize },
    /// A valid frame at `valid_frame_at`: the damage is not at the tail.
    Corrupt { valid_frame_at: usize },
}

/// Classifies the bytes of a segment from `from` (where frames stopped) to its end. For
/// journals without a live writer in this process (see the module docs).
pub(crate) fn classify_tail(map: &Mapping, from: usize, logical_len: usize) -> Tail {
    let physical = map.len().min(logical_len);
    if from >= physical {
        return Tail::Clean;
    }
    let Some(last_non_zero) = last_non_zero_byte(map, from, physical) else {
        return Tail::Clean;
    };
    // Any valid frame at an aligned offset after `from`, up to the last non-zero byte? (A frame
    // starts with its non-zero length word, so none can start after that byte.)
    let mut at = from + FRAME_ALIGN;
    while at <= last_non_zero && at + FRAME_HEADER_LEN <= logical_len {
        if matches!(
            read_frame(map, at, logical_len),
            FrameRead::Record { .. } | FrameRead::End { .. }
        ) {
            return Tail::Corrupt { valid_frame_at: at };
        }
        at += FRAME_ALIGN;
    }
    Tail::Torn {
        end: last_non_zero + 1,
    }
}

/// The offset of the last non-zero byte in `from..to`, if any.
pub(crate) fn last_non_zero_byte(map: &Mapping, from: usize, to: usize) -> Option<usize> {
    debug_assert!(from <= to && to <= map.len());
    // SAFETY: no live writer in this process writes this segment (the contract of the callers:
    // recovery under the directory lock, readers of journals at rest).
    let bytes = unsafe { map.bytes(from, to - from) };
    const CHUNK: usize = 4096;
    let mut end = bytes.len();
    // Backwards, a page at a time: a clean tail is all zeros and this is a plain memory scan.
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &bytes[start..end];
        if !all_zero(chunk) {
            let i = chunk.iter().rposition(|&b| b != 0).unwrap_or(0);
            return Some(from + start + i);
        }
        end = start;
    }
    None
}

/// Whether every byte is zero: OR-folds 64-byte blocks as words (vectorizes), so a clean tail
/// of a large segment is scanned at memory speed.
fn all_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        let mut acc = 0u64;
        for word in block.chunks_exact(8) {
            acc |= u64::from_ne_bytes(word.try_into().expect("8-byte chunk"));
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// How a scanned segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentEnd {
    /// An end-of-segment frame at `end_offset`; the next segment starts at `next_sequence`.
    Sealed { next_sequence: u64 },
    /// No frame at `end_offset`, zeros after.
    Clean,
    /// Torn bytes from `end_offset` to `torn_end`; `damage` is what was at `end_offset`
    /// (`None`: a zero length word with data after it).
    Torn {
        torn_end: usize,
        damage: Option<FrameError>,
    },
    /// Hard corruption at `offset`.
    Corrupt {
        offset: usize,
        kind: crate::error::CorruptionKind,
    },
}

/// The result of scanning a segment's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// Valid records found.
    pub(crate) records: u64,
    /// The sequence after the last valid record (the header's first sequence if none).
    pub(crate) next_sequence: u64,
    /// Offset after the last valid record: where the end frame, the clean end, the torn bytes
    /// or the corruption lies.
    pub(crate) end_offset: usize,
    /// How the segment ends.
    pub(crate) end: SegmentEnd,
}

/// Scans every frame of a segment, checking sequences from the header's first sequence, and
/// calls `on_record` with each valid record and its offset. For journals without a live writer
/// in this process.
pub(crate) fn scan_segment(
    map: &Mapping,
    header: &SegmentHeader,
    mut on_record: impl FnMut(&Record<'_>, usize, u32),
) -> SegmentScan {
    let logical_len = usize::try_from(header.segment_len_bytes).unwrap_or(usize::MAX);
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next_sequence = header.first_sequence;
    let mut records = 0u64;
    // Bounded: every iteration advances `offset` by at least one frame header.
    let iterations_max = logical_len / FRAME_HEADER_LEN + 1;
    for _ in 0..iterations_max {
        let end = match read_frame(map, offset, logical_len) {
            FrameRead::Record { header: h, frame } => {
                if h.sequence != next_sequence {
                    SegmentEnd::Corrupt {
                        offset,
                        kind: crate::error::CorruptionKind::SequenceNotNext {
                            expected: next_sequence,
                            found: h.sequence,
                        },
                    }
                } else {
                    on_record(&record_of(&h, frame), offset, h.frame_len);
                    records += 1;
                    next_sequence += 1;
                    offset += h.frame_len as usize;
                    continue;
                }
            }
            FrameRead::End { header: h } => {
                if h.sequence != next_sequence {
                    SegmentEnd::Corrupt {
                        offset,
                        kind: crate::error::CorruptionKind::SequenceNotNext {
                            expected: next_sequence,
                            found: h.sequence,
                        },
                    }
                } else {
                    let after = offset + h.frame_len as usize;
                    let physical = map.len().min(logical_len);
                    match (after < physical)
                        .then(|| last_non_zero_byte(map, after, physical))
                        .flatten()
                    {
                        Some(at) => SegmentEnd::Corrupt {
                            offset: at,
                            kind: crate::error::CorruptionKind::DataAfterEnd,
                        },
                        None => SegmentEnd::Sealed { next_sequence },
                    }
                }
            }
            FrameRead::Empty => match classify_tail(map, offset, logical_len) {
                Tail::Clean => SegmentEnd::Clean,
                Tail::Torn { end } => SegmentEnd::Torn {
                    torn_end: end,
                    damage: None,
                },
                Tail::Corrupt { .. } => SegmentEnd::Corrupt {
                    offset,
                    kind: crate::error::CorruptionKind::MissingFrame,
                },
            },
            FrameRead::Invalid(e) => match classify_tail(map, offset, logical_len) {
                // `Clean` cannot happen (the invalid frame's length word is non-zero) unless the
                // bad frame lies past a short file's end; either way the tail is torn.
                Tail::Clean => SegmentEnd::Torn {
                    torn_end: offset,
                    damage: Some(e),
                },
                Tail::Torn { end } => SegmentEnd::Torn {
                    torn_end: end,
                    damage: Some(e),
                },
                Tail::Corrupt { .. } => SegmentEnd::Corrupt {
                    offset,
                    kind: crate::error::CorruptionKind::Frame(e),
                },
            },
        };
        return SegmentScan {
            records,
            next_sequence,
            end_offset: offset,
            end,
        };
    }
    unreachable!("segment scan exceeded its iteration bound")
}
