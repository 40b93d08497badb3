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
//! A segment the tailer still needs can also be gone for good: pruned (oldest segments first)
//! while the tailer lagged behind. When the segment to open next has no file but a later
//! segment exists, the journal has moved past it, and `poll` fails with
//! [`JournalError::Pruned`] naming the first sequence the tailer needs and the first one the
//! journal still holds (a file missing between segments that remain is corruption,
//! [`CorruptionKind::IndexGap`]). Records the tailer skips anyway (before its `from_sequence`)
//! may go: it then moves on to the segment that holds its start. A segment the tailer has already mapped
//! stays readable to its end after its file is removed.
//!
//! Polling at a segment boundary before the next segment exists costs an `open` system call per
//! poll, plus a `stat` and a directory listing on the first such poll and every 64th after it
//! (to see whether the journal moved past the segment); everywhere else a poll that finds
//! nothing is one atomic load.

use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{CorruptionKind, JournalError};
use crate::format::{FrameHeader, SEGMENT_HEADER_LEN};
use crate::reader::{locate, open_started};
use crate::record::{Record, RecordPosition};
use crate::scan::{accepted_frame, read_frame, record_of, FrameRead};
use crate::segment::ReadSegment;

/// While the segment to open next does not exist, the tailer checks whether the journal moved
/// past it (pruned) at the first poll that finds it missing and then at every this many.
const MISSING_CHECK_EVERY: u32 = 64;

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
    /// Polls that found segment `next_index` not there (or not started) since one was opened.
    waits: u32,
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
            waits: 0,
        })
    }

    /// The next committed record, or `Ok(None)` if there is none yet. Fails on corruption, and
    /// with [`JournalError::Pruned`] when the journal no longer holds the next record it needs
    /// (see the module docs); it then keeps failing at later polls.
    ///
    /// `None` always means that: a poll steps over every record before `from_sequence` (at
    /// most the rest of the segment that holds it, once) and every segment end in one go. (It
    /// used to answer `None` after 65 536 such steps, which a caller could not tell from the
    /// journal's end: a projection resumed deep in a segment took itself for caught up.)
    pub fn poll(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        loop {
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
    }

    fn step(&mut self) -> Result<Step, JournalError> {
        if self.current.is_none() {
            let Some((seg, header)) = open_started(&self.dir, self.next_index, self.expected)?
            else {
                return self.segment_not_there();
            };
            self.waits = 0;
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

    /// Segment `next_index` is not there or not started. Usually the writer has not rolled yet
    /// ("nothing yet"); but if its file is missing and a later segment exists, the journal moved
    /// past it (pruned). Checked at the first such poll and then every [`MISSING_CHECK_EVERY`]th,
    /// so that waiting stays cheap.
    #[cold]
    fn segment_not_there(&mut self) -> Result<Step, JournalError> {
        let tick = self.waits;
        self.waits = self.waits.wrapping_add(1);
        if !tick.is_multiple_of(MISSING_CHECK_EVERY) {
            return Ok(Step::Nothing);
        }
        let result = self.check_moved_past();
        if result.is_err() {
            self.waits = 0; // the next poll checks again, and fails again
        }
        result
    }

    fn check_moved_past(&mut self) -> Result<Step, JournalError> {
        let path = dir::segment_path(&self.dir, self.next_index);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => return Ok(Step::Nothing), // created, header not written yet
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(JournalError::io("stat", path, e)),
        }
        let listing = dir::list(&self.dir)?;
        if !listing.segments.iter().any(|s| s.0 > self.next_index) {
            return Ok(Step::Nothing); // not created yet
        }
        // The journal moved past segment `next_index`. Pruning removes the oldest segments, so
        // the first sequence the tailer needs is either in a segment still there or gone.
        // `locate` reports a gap between the segments left (corruption) and a first segment
        // that starts after `needed` (`Pruned`).
        let needed = self
            .expected
            .map_or(self.from_sequence, |e| e.max(self.from_sequence));
        let Some((index, header)) = locate(&self.dir, needed)? else {
            return Ok(Step::Nothing); // no started segment left: nothing to read yet
        };
        if index <= self.next_index {
            return Ok(Step::Nothing); // the file appeared meanwhile: look again next poll
        }
        let first = header.first_sequence;
        if let Some(expected) = self.expected {
            if first < expected {
                return Err(JournalError::corrupt(
                    dir::segment_path(&self.dir, index),
                    0,
                    CorruptionKind::FirstSequenceMismatch {
                        expected,
                        found: first,
                    },
                ));
            }
            // Records `expected..first` are gone; acceptable only if all precede
            // `from_sequence` (`locate` checks this too, except for `needed == 0`).
            if first > expected && first > self.from_sequence {
                return Err(JournalError::Pruned {
                    requested: needed,
                    first_available: first,
                });
            }
        }
        // Only records the tailer skips were removed: go on from the segment holding `needed`.
        self.next_index = index;
        self.expected = Some(first);
        self.waits = 0;
        Ok(Step::Again)
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
