//! The sequential reader: replays a journal at rest, record by record, checking every
//! checksum and that sequences are contiguous within and across segments.
//!
//! It reads through the mapping without copying: each [`Record`] borrows the segment, and a
//! record's payload is valid until the next call to [`Reader::next`]. At the end it reports how
//! the journal ends ([`TailState`]); damage that cannot be a torn tail is an error naming the
//! file and offset (never skipped). To follow a journal that is being written, use
//! [`crate::Tailer`]; this reader looks past the committed end to classify the tail, which is
//! only meaningful when no writer is active (see [`crate::scan`]).

use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::{
    FrameError, FrameHeader, HeaderError, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::record::{Record, RecordPosition};
use crate::recovery::check_header;
use crate::scan::{
    accepted_frame, classify_tail, last_non_zero_byte, read_frame, record_of, FrameRead, Tail,
};
use crate::segment::ReadSegment;

/// How the journal ended, once [`Reader::next`] has returned `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TailState {
    /// The last segment ends cleanly: zeros after its last record.
    Clean,
    /// The last segment is sealed and the next one (its file created) has not started yet.
    Sealed,
    /// The last segment ends with torn bytes: a writer died mid-append (or the tail was
    /// damaged). The next writer to open the journal cuts them away.
    Torn {
        /// The segment file.
        path: PathBuf,
        /// Offset after the last complete record.
        offset: u64,
        /// Non-zero bytes after it.
        bytes: u64,
        /// What was at `offset` (`None`: a length word never written).
        damage: Option<FrameError>,
    },
}

/// Opens the started segment `index` of `dir`: `Ok(None)` if it does not exist or its header
/// was never written; an error if its header is bad or does not continue at `expected_first`.
pub(crate) fn open_started(
    dir: &Path,
    index: u64,
    expected_first: Option<u64>,
) -> Result<Option<(ReadSegment, SegmentHeader)>, JournalError> {
    let path = dir::segment_path(dir, index);
    let seg = match ReadSegment::open(&path, index) {
        Ok(seg) => seg,
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let header = match seg.header() {
        Ok(h) => h,
        Err(HeaderError::Unwritten) => return Ok(None),
        Err(e) => return Err(JournalError::corrupt(&path, 0, CorruptionKind::Header(e))),
    };
    check_header(&seg, &header)?;
    if let Some(expected) = expected_first {
        if header.first_sequence != expected {
            return Err(JournalError::corrupt(
                &path,
                0,
                CorruptionKind::FirstSequenceMismatch {
                    expected,
                    found: header.first_sequence,
                },
            ));
        }
    }
    Ok(Some((seg, header)))
}

/// Finds where to start reading `from_sequence`: the index and first sequence of the last
/// started segment whose first sequence is at most `from_sequence`. `Ok(None)`: no journal.
/// `from_sequence == 0` means the first record the journal still holds, pruned or not.
pub(crate) fn locate(
    dir: &Path,
    from_sequence: u64,
) -> Result<Option<(u64, SegmentHeader)>, JournalError> {
    let segments = dir::list(dir)?.segments;
    crate::recovery::check_contiguous(&segments)?;
    let mut chosen: Option<(u64, SegmentHeader)> = None;
    for (index, _) in &segments {
        let Some((_, header)) = open_started(dir, *index, None)? else {
            break; // an unstarted segment: only the last can be, and nothing follows it
        };
        match chosen {
            None if header.first_sequence > from_sequence && *index > 0 && from_sequence > 0 => {
                return Err(JournalError::Pruned {
                    requested: from_sequence,
                    first_available: header.first_sequence,
                });
            }
            None => chosen = Some((*index, header)),
            Some(_) if header.first_sequence <= from_sequence => chosen = Some((*index, header)),
            Some(_) => break,
        }
    }
    Ok(chosen)
}

struct Current {
    seg: ReadSegment,
    header: SegmentHeader,
    logical_len: usize,
    offset: usize,
}

enum Step {
    Yield { offset: usize, header: FrameHeader },
    Skip,
    NextSegment { first_sequence: u64 },
    End(TailState),
}

/// Reads a journal from its start, or from a given sequence, to its end.
pub struct Reader {
    dir: PathBuf,
    current: Option<Current>,
    /// The sequence the next record must carry.
    expected: u64,
    from_sequence: u64,
    tail: Option<TailState>,
    position: RecordPosition,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("dir", &self.dir)
            .field("segment", &self.current.as_ref().map(|c| c.seg.index))
            .field("expected", &self.expected)
            .field("tail", &self.tail)
            .finish()
    }
}

impl Reader {
    /// Opens the journal in `dir` to read from its first record (after pruning: the first one
    /// it still holds).
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader, JournalError> {
        Reader::open_from(dir, 0)
    }

    /// Opens the journal in `dir` to read from the first record whose sequence is at least
    /// `from_sequence` ([`JournalError::Pruned`] if the journal no longer holds it; 0 means
    /// from the first record it holds).
    pub fn open_from(dir: impl AsRef<Path>, from_sequence: u64) -> Result<Reader, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let mut reader = Reader {
            dir,
            current: None,
            expected: 0,
            from_sequence,
            tail: None,
            position: RecordPosition::default(),
        };
        match locate(&reader.dir, from_sequence)? {
            // No started segment, in a journal that had one (the marker is written after the
            // first segment's header): its records are gone. Recovery refuses this too; reading
            // it as an empty journal would report an empty exchange as the state.
            None if dir::has_marker(&reader.dir) => {
                return Err(JournalError::corrupt(
                    dir::segment_path(&reader.dir, 0),
                    0,
                    CorruptionKind::NoSegments,
                ))
            }
            None => reader.tail = Some(TailState::Clean),
            Some((index, header)) => {
                let (seg, header) = open_started(&reader.dir, index, Some(header.first_sequence))?
                    .ok_or_else(|| {
                        JournalError::corrupt(
                            dir::segment_path(&reader.dir, index),
                            0,
                            CorruptionKind::Header(HeaderError::Unwritten),
                        )
                    })?;
                reader.start_segment(seg, header);
            }
        }
        Ok(reader)
    }

    fn start_segment(&mut self, seg: ReadSegment, header: SegmentHeader) {
        // Replay reads the whole segment: fault it in with one call rather than page by page.
        if let Some(map) = &seg.map {
            map.prefault_read();
        }
        self.expected = header.first_sequence;
        self.current = Some(Current {
            logical_len: usize::try_from(header.segment_len_bytes).unwrap_or(usize::MAX),
            seg,
            header,
            offset: SEGMENT_HEADER_LEN,
        });
    }

    /// The next record, `Ok(None)` at the end of the journal (then see [`tail`](Self::tail)),
    /// or the corruption that stopped the reader.
    #[allow(clippy::should_implement_trait)] // a lending iterator: records borrow the reader
    #[inline]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        Ok(self.next_positioned()?.map(|(_, r)| r))
    }

    /// Like [`next`](Self::next), with where the record lies.
    pub fn next_positioned(
        &mut self,
    ) -> Result<Option<(RecordPosition, Record<'_>)>, JournalError> {
        loop {
            if self.tail.is_some() {
                return Ok(None);
            }
            match self.step()? {
                Step::Yield { offset, header } => {
                    let cur = self.current.as_ref().expect("a segment is being read");
                    let map = cur
                        .seg
                        .map
                        .as_ref()
                        .expect("a segment with frames is mapped");
                    self.position = RecordPosition {
                        segment_index: cur.seg.index,
                        offset: offset as u64,
                        frame_len_bytes: header.frame_len,
                    };
                    let frame = accepted_frame(map, offset, header.frame_len);
                    return Ok(Some((self.position, record_of(&header, frame))));
                }
                Step::Skip => {}
                Step::NextSegment { first_sequence } => {
                    let index = self.current.as_ref().map_or(0, |c| c.seg.index) + 1;
                    self.current = None;
                    match open_started(&self.dir, index, Some(first_sequence))? {
                        Some((seg, header)) => self.start_segment(seg, header),
                        None if !dir::segment_path(&self.dir, index).exists() => {
                            // The writer creates the next segment's file before it seals:
                            // without it, the records from `first_sequence` on were removed.
                            return Err(JournalError::corrupt(
                                dir::segment_path(&self.dir, index),
                                0,
                                CorruptionKind::MissingSegment {
                                    index,
                                    first_sequence,
                                },
                            ));
                        }
                        None => {
                            self.expected = first_sequence;
                            self.tail = Some(TailState::Sealed);
                        }
                    }
                }
                Step::End(state) => self.tail = Some(state),
            }
        }
    }

    /// One frame of the current segment. Borrows nothing past its return.
    fn step(&mut self) -> Result<Step, JournalError> {
        let cur = self.current.as_mut().expect("a segment is being read");
        let Some(map) = cur.seg.map.as_ref() else {
            return Ok(Step::End(TailState::Clean));
        };
        let offset = cur.offset;
        let corrupt = |kind| Err(JournalError::corrupt(&cur.seg.path, offset as u64, kind));
        let damage = match read_frame(map, offset, cur.logical_len) {
            FrameRead::Record { header, .. } => {
                if header.sequence != self.expected {
                    return corrupt(CorruptionKind::SequenceNotNext {
                        expected: self.expected,
                        found: header.sequence,
                    });
                }
                cur.offset += header.frame_len as usize;
                self.expected += 1;
                if header.sequence < self.from_sequence {
                    return Ok(Step::Skip);
                }
                return Ok(Step::Yield { offset, header });
            }
            FrameRead::End { header } => {
                if header.sequence != self.expected {
                    return corrupt(CorruptionKind::SequenceNotNext {
                        expected: self.expected,
                        found: header.sequence,
                    });
                }
                let after = offset + FRAME_HEADER_LEN;
                let physical = map.len().min(cur.logical_len);
                if after < physical {
                    if let Some(at) = last_non_zero_byte(map, after, physical) {
                        return Err(JournalError::corrupt(
                            &cur.seg.path,
                            at as u64,
                            CorruptionKind::DataAfterEnd,
                        ));
                    }
                }
                return Ok(Step::NextSegment {
                    first_sequence: header.sequence,
                });
            }
            FrameRead::Empty => None,
            FrameRead::Invalid(e) => Some(e),
        };
        // Frames stop here. If a later segment has started, this one should have been sealed.
        let later_started = open_started(&self.dir, cur.seg.index + 1, None)?.is_some();
        let tail = classify_tail(map, offset, cur.logical_len);
        let kind = damage.map_or(CorruptionKind::MissingFrame, CorruptionKind::Frame);
        match tail {
            Tail::Corrupt { .. } => corrupt(kind),
            _ if later_started => corrupt(kind),
            Tail::Clean => Ok(Step::End(TailState::Clean)),
            Tail::Torn { end } => Ok(Step::End(TailState::Torn {
                path: cur.seg.path.clone(),
                offset: offset as u64,
                bytes: (end - offset) as u64,
                damage,
            })),
        }
    }

    /// How the journal ended; `None` until [`next`](Self::next) has returned `Ok(None)`.
    pub fn tail(&self) -> Option<&TailState> {
        self.tail.as_ref()
    }

    /// Where the last record returned lies.
    pub fn position(&self) -> RecordPosition {
        self.position
    }

    /// The sequence the next record will carry (after the end: the journal's next sequence).
    pub fn next_sequence(&self) -> u64 {
        self.expected
    }

    /// The header of the segment being read, if any.
    pub fn segment_header(&self) -> Option<SegmentHeader> {
        self.current.as_ref().map(|c| c.header)
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
