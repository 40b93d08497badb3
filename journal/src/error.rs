//! Errors: [`AppendError`] for the hot path (small, `Copy`, never allocates), [`JournalError`]
//! for everything else (opening, recovery, reading, snapshots, pruning), and [`Corruption`], the
//! hard error that names the file and byte offset of damage that cannot be a torn tail.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::format::{FrameError, HeaderError};

/// Why `append` refused a record. `Copy`, no allocation: safe to return on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// Sequences must be contiguous: the record's sequence is not the next one. Nothing was
    /// written. (A caller bug: the sequencer and the journal disagree.)
    SequenceNotNext {
        /// The sequence the journal expects.
        expected: u64,
        /// The sequence given.
        got: u64,
    },
    /// The payload exceeds the configured `payload_len_max_bytes`. Nothing was written.
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The configured bound.
        max: u32,
    },
    /// Creating the next segment, or syncing, failed with this I/O error. The writer is now
    /// failed: records it had acknowledged stay on disk, nothing more is accepted, and the
    /// process should stop and recover (docs/overview.md §3: a failing stage is fatal).
    Io {
        /// The I/O error's kind.
        kind: io::ErrorKind,
        /// The OS error code, when there is one.
        os_error: Option<i32>,
    },
    /// An earlier I/O error failed the writer; see [`AppendError::Io`].
    Failed,
}

impl AppendError {
    pub(crate) fn io(e: &io::Error) -> AppendError {
        AppendError::Io {
            kind: e.kind(),
            os_error: e.raw_os_error(),
        }
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AppendError::SequenceNotNext { expected, got } => {
                write!(f, "sequence {got} is not the next one ({expected})")
            }
            AppendError::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the maximum {max}")
            }
            AppendError::Io { kind, os_error } => match os_error {
                Some(code) => write!(f, "journal I/O failed: {kind} (os error {code})"),
                None => write!(f, "journal I/O failed: {kind}"),
            },
            AppendError::Failed => write!(f, "the journal writer failed earlier and is closed"),
        }
    }
}

impl std::error::Error for AppendError {}

/// What is wrong at a [`Corruption`]'s offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The segment header is invalid.
    Header(HeaderError),
    /// A frame is invalid, and the damage cannot be a torn tail: valid frames follow it, or a
    /// later segment has started.
    Frame(FrameError),
    /// A zero length word (no frame) where a frame must be: valid frames follow, or a later
    /// segment has started without this one being sealed.
    MissingFrame,
    /// A frame with a valid checksum whose sequence is not the next one.
    SequenceNotNext {
        /// The sequence the journal expected.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// The header's segment index is not the one in the file name.
    IndexMismatch {
        /// The index in the file name.
        expected: u64,
        /// The index in the header.
        found: u64,
    },
    /// A segment is missing: the indices of the segment files are not contiguous.
    IndexGap {
        /// The index expected next.
        expected: u64,
        /// The index of the next file present.
        found: u64,
    },
    /// The segment's first sequence does not continue the previous segment.
    FirstSequenceMismatch {
        /// The sequence the previous segment ends with (its end-of-segment frame).
        expected: u64,
        /// The header's first sequence.
        found: u64,
    },
    /// The file's length disagrees with its header (a sealed segment must be whole).
    LengthMismatch {
        /// The header's segment length.
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// Bytes after the end-of-segment frame are not zero.
    DataAfterEnd,
    /// A segment that is not the journal's last was never written (zero header).
    UnwrittenSegment,
    /// The last segment's header was never written or is torn, but its body holds data.
    DataWithoutHeader,
    /// A started segment's file is shorter than its header says. Segments are created at their
    /// full length before their header is written, and nothing shortens them, so no crash
    /// leaves one short: its end was cut off (damage), and the records there are lost.
    ShortSegment {
        /// The header's segment length.
        header_len: u64,
        /// The file's length.
        file_len: u64,
        /// Complete records left before the cut.
        records_intact: u64,
        /// The sequence after the last complete record (the header's first sequence if none).
        next_sequence: u64,
    },
    /// A sealed segment's end record names a next segment whose file is not there. The writer
    /// creates the next segment's file before it seals the current one, so no crash leaves
    /// this state: the file was removed, and every record from `first_sequence` on with it.
    MissingSegment {
        /// The missing segment's index.
        index: u64,
        /// The sequence the sealed segment's end record says it starts at.
        first_sequence: u64,
    },
    /// A valid snapshot covers sequences the journal does not hold: records were lost from
    /// the journal's end after the snapshot was taken.
    SnapshotBeyondEnd {
        /// The snapshot's sequence.
        snapshot_sequence: u64,
        /// The sequence after the journal's last complete record.
        next_sequence: u64,
    },
    /// The journal was created (its marker file exists) but no started segment is left: every
    /// segment was removed (or those left never got a header).
    NoSegments,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CorruptionKind::Header(h) => write!(f, "bad segment header: {h:?}"),
            CorruptionKind::Frame(e) => write!(f, "bad record frame: {e}"),
            CorruptionKind::MissingFrame => write!(
                f,
                "no record where one must be (later data exists, so this is not a torn tail)"
            ),
            CorruptionKind::SequenceNotNext { expected, found } => {
                write!(f, "record has sequence {found}, expected {expected}")
            }
            CorruptionKind::IndexMismatch { expected, found } => {
                write!(f, "header says segment {found}, file name says {expected}")
            }
            CorruptionKind::IndexGap { expected, found } => {
                let missing = found - expected;
                write!(
                    f,
                    "segment {expected} ({}) is missing{} (the next file is segment {found}): \
                     the records it held are lost",
                    crate::format::segment_file_name(expected),
                    if missing > 1 {
                        format!(", and {} more after it", missing - 1)
                    } else {
                        String::new()
                    }
                )
            }
            CorruptionKind::FirstSequenceMismatch { expected, found } => write!(
                f,
                "segment starts at sequence {found}, previous segment ends before {expected}"
            ),
            CorruptionKind::LengthMismatch { expected, found } => {
                write!(f, "file is {found} bytes, header says {expected}")
            }
            CorruptionKind::DataAfterEnd => write!(f, "data after the end-of-segment frame"),
            CorruptionKind::UnwrittenSegment => {
                write!(f, "segment never started, but later segments exist")
            }
            CorruptionKind::DataWithoutHeader => {
                write!(
                    f,
                    "segment header unwritten or torn, but the segment holds data"
                )
            }
            CorruptionKind::ShortSegment {
                header_len,
                file_len,
                records_intact,
                next_sequence,
            } => {
                write!(
                    f,
                    "file is {file_len} bytes but its header says {header_len}: the last {} \
                     bytes are missing; ",
                    header_len.saturating_sub(file_len)
                )?;
                if records_intact == 0 {
                    write!(f, "no complete record is left in it")?;
                } else {
                    write!(
                        f,
                        "{records_intact} complete record(s) are left, through sequence {}",
                        next_sequence - 1
                    )?;
                }
                write!(
                    f,
                    ", and every record after sequence {} in it is lost",
                    next_sequence.saturating_sub(1)
                )
            }
            CorruptionKind::MissingSegment {
                index,
                first_sequence,
            } => write!(
                f,
                "segment {index} ({}) is missing: the segment before it is sealed and says it \
                 starts at sequence {first_sequence}, so every record from {first_sequence} on \
                 is lost",
                crate::format::segment_file_name(index)
            ),
            CorruptionKind::SnapshotBeyondEnd {
                snapshot_sequence,
                next_sequence,
            } => write!(
                f,
                "snapshot covers up to sequence {snapshot_sequence}, but the journal ends before \
                 sequence {next_sequence}: records {next_sequence}..={snapshot_sequence} are \
                 missing from the journal"
            ),
            CorruptionKind::NoSegments => write!(
                f,
                "the journal was created here but no started segment is left (the files are gone, \
                 or none has a header): every record is lost"
            ),
        }
    }
}

/// Damage that is not a torn tail: the file and byte offset, and what is wrong there. Never
/// skipped; recovery stops with it, and `ringbook journal verify` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong there.
    pub kind: CorruptionKind,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.path.display(),
            self.offset,
            self.kind
        )
    }
}

/// Any error outside the hot path.
#[derive(Debug)]
pub enum JournalError {
    /// An I/O operation on `path` failed.
    Io {
        /// What was being done ("open", "map", "truncate", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The journal is damaged where a torn tail cannot explain it.
    Corrupt(Corruption),
    /// Another writer holds the journal's lock file.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The configuration is invalid.
    Config(ConfigError),
    /// The requested sequence is no longer in the journal (its segments were pruned).
    Pruned {
        /// The sequence asked for.
        requested: u64,
        /// The first sequence the journal still holds.
        first_available: u64,
    },
    /// [`crate::truncate()`] cannot keep the journal up to `to`.
    Truncate {
        /// The sequence asked for.
        to: u64,
        /// Why (up to where the journal is intact, and what stops it).
        reason: String,
    },
    /// A snapshot could not be written because its arguments are wrong (e.g. a snapshot for
    /// that sequence already exists).
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Self {
        JournalError::Corrupt(Corruption {
            path: path.into(),
            offset,
            kind,
        })
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            JournalError::Corrupt(c) => write!(f, "journal corrupt: {c}"),
            JournalError::Locked { path } => write!(
                f,
                "journal is locked by another writer ({})",
                path.display()
            ),
            JournalError::Config(c) => write!(f, "invalid journal config: {c}"),
            JournalError::Pruned {
                requested,
                first_available,
            } => write!(
                f,
                "sequence {requested} was pruned; the journal starts at {first_available}"
            ),
            JournalError::Snapshot { path, reason } => {
                write!(f, "snapshot {}: {reason}", path.display())
            }
            JournalError::Truncate { to, reason } => {
                write!(f, "cannot truncate to sequence {to}: {reason}")
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for JournalError {
    fn from(e: ConfigError) -> Self {
        JournalError::Config(e)
    }
}
