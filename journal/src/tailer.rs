//! The tailing reader: follows a live writer, in another thread or another process.
//!
//! [`Tailer::poll`] never blocks and never waits: it returns the next committed record, or
//! `Ok(None)` if the writer has not committed one yet; the caller decides how to wait (spin,
//! yield, sleep — its wait strategy). It reads only committed frames: it `Acquire`-loads a
//! frame's length word and reads the frame only when that is non-zero, which the writer stores
//! last, with `Release`, after the frame's bytes. So a record is never seen half-written, and
//! the tailer never looks past the committed end (unlike [`crate::Reader`], which classifies a
//! torn tail at rest).
//!
//! At an end-of-segment frame it moves to the next segment, which may not exist yet, or exist
//! with a zero header (created ahead by the pre-toucher): both read as "nothing yet". A frame
//! whose length word is set but whose checksum fails is corruption, never skipped.
//!
//! Polling at a segment boundary before the next segment exists costs an `open` system call per
//! poll; everywhere else a poll that finds nothing is one atomic load.

use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::{FrameHeader, SEGMENT_HEADER_LEN};
use crate::reader::{locate, open_started};
use crate::record::{Record, RecordPosition};
use crate::scan::{accepted_frame, read_frame, record_of, FrameRead};
use crate::segment::ReadSegment;

/// Frames one `poll` may step over (records before `from_sequence`, segment ends) before it
/// returns `Ok(None)` to bound its latency; the next poll continues.
pub const POLL_STEPS_MAX: usize = 1 << 16;

struct Current {
    seg: ReadSegment,
    logical_len: usize,
    offset: usize,
}

enum Step {
    Yield { offset: usize, header: FrameHeader },
    Again,
    Nothing,
}

/// Follows a journal as it is written. See the module docs.
pub struct Tailer {
    dir: PathBuf,
    current: Option<Current>,
    /// The segment to open next when `current` is `None`.
    next_index: u64,
    /// The sequence the next record must carry; `None` until the first segment is found.
    expected: Option<u64>,
    from_sequence: u64,
    position: RecordPosition,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("dir", &self.dir)
            .field("segment", &self.current.as_ref().map(|c| c.seg.index))
            .field("next_index", &self.next_index)
            .field("expected", &self.expected)
            .finish()
    }
}

impl Tailer {
    /// Starts following the journal in `dir` (which must exist) from the first record whose
    /// sequence is at least `from_sequence` (0: from the first record it holds). The journal
    /// may still be empty.
    pub fn open(dir: impl AsRef<Path>, from_sequence: u64) -> Result<Tailer, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let (next_index, expected) = match locate(&dir, from_sequence)? {
            Some((index, header)) => (index, Some(header.first_sequence)),
            None => (dir::list(&dir)?.segments.first().map_or(0, |s| s.0), None),
        };
        Ok(Tailer {
            dir,
            current: None,
            next_index,
            expected,
            from_sequence,
            position: RecordPosition::default(),
        })
    }

    /// The next committed record, or `Ok(None)` if there is none yet.
    pub fn poll(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        for _ in 0..POLL_STEPS_MAX {
            match self.step()? {
                Step::Yield { offset, header } => {
                    let cur = self.current.as_ref().expect("a segment is being read");
                    let map = cur.seg.map.as_ref().expect("a started segment is mapped");
                    self.position = RecordPosition {
                        segment_index: cur.seg.index,
                        offset: offset as u64,
                        frame_len_bytes: header.frame_len,
                    };
                    let frame = accepted_frame(map, offset, header.frame_len);
                    return Ok(Some(record_of(&header, frame)));
                }
                Step::Again => {}
                Step::Nothing => return Ok(None),
            }
        }
        Ok(None)
    }

    fn step(&mut self) -> Result<Step, JournalError> {
        if self.current.is_none() {
            let Some((seg, header)) = open_started(&self.dir, self.next_index, self.expected)?
            else {
                return Ok(Step::Nothing);
            };
            self.expected.get_or_insert(header.first_sequence);
            self.current = Some(Current {
                logical_len: usize::try_from(header.segment_len_bytes).unwrap_or(usize::MAX),
                seg,
                offset: SEGMENT_HEADER_LEN,
            });
        }
        let cur = self.current.as_mut().expect("just opened");
        let expected = self.expected.expect("set with the segment");
        let Some(map) = cur.seg.map.as_ref() else {
            return Ok(Step::Nothing);
        };
        let offset = cur.offset;
        match read_frame(map, offset, cur.logical_len) {
            FrameRead::Empty => Ok(Step::Nothing),
            FrameRead::Record { header, .. } => {
                if header.sequence != expected {
                    return Err(JournalError::corrupt(
                        &cur.seg.path,
                        offset as u64,
                        CorruptionKind::SequenceNotNext {
                            expected,
                            found: header.sequence,
                        },
                    ));
                }
                cur.offset += header.frame_len as usize;
                self.expected = Some(expected + 1);
                if header.sequence < self.from_sequence {
                    Ok(Step::Again)
                } else {
                    Ok(Step::Yield { offset, header })
                }
            }
            FrameRead::End { header } => {
                if header.sequence != expected {
                    return Err(JournalError::corrupt(
                        &cur.seg.path,
                        offset as u64,
                        CorruptionKind::SequenceNotNext {
                            expected,
                            found: header.sequence,
                        },
                    ));
                }
                self.next_index = cur.seg.index + 1;
                self.current = None;
                Ok(Step::Again)
            }
            FrameRead::Invalid(e) => Err(JournalError::corrupt(
                &cur.seg.path,
                offset as u64,
                CorruptionKind::Frame(e),
            )),
        }
    }

    /// Where the last record returned lies.
    pub fn position(&self) -> RecordPosition {
        self.position
    }

    /// The sequence the next record will carry, once known.
    pub fn next_sequence(&self) -> Option<u64> {
        self.expected
    }
}
