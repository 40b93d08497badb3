//! The writer's configuration: segment size, record bound, durability and pre-touching.
//!
//! Everything is fixed when the writer opens; [`JournalConfig::validate`] checks the relations
//! between the numbers so that a bad configuration fails at start-up, never on the hot path.

use std::time::Duration;

use crate::format::{
    frame_len_for, FRAME_HEADER_LEN, PAGE_SIZE, PAYLOAD_LEN_FORMAT_MAX, SEGMENT_HEADER_LEN,
};

/// The largest segment: offsets are published to the pre-toucher in 40 bits.
pub const SEGMENT_LEN_BYTES_MAX: u64 = 1 << 40;

/// How `msync`/`fsync` is used to make records durable (see docs/journal-format.md for the
/// measured cost of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMethod {
    /// `msync(MS_SYNC)` of the dirty byte range of the mapping (rounded to pages): writes back
    /// only the pages touched since the last sync.
    Msync,
    /// `fdatasync` on the segment file: writes back every dirty page of the file and the
    /// metadata needed to read it back.
    Fdatasync,
}

/// When appended records are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Never: records are in the page cache when `append` returns, so they survive the process
    /// dying (a crash, `SIGKILL`) but not the machine losing power. The writer makes no system
    /// call on the hot path.
    None,
    /// At the end of every batch ([`crate::Writer::end_batch`]): one sync covers every record
    /// appended since the previous one. The pipeline calls it at the end of each ring batch,
    /// before releasing that batch's responses.
    Batch(SyncMethod),
    /// After every record, before `append` returns.
    Record(SyncMethod),
}

impl Durability {
    /// The sync method, unless durability is `None`.
    pub fn method(self) -> Option<SyncMethod> {
        match self {
            Durability::None => None,
            Durability::Batch(m) | Durability::Record(m) => Some(m),
        }
    }
}

/// Pre-touching: faulting the segment's pages in ahead of the writer, off the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pretouch {
    /// No helper thread: the writer takes a page fault on the first write to every page, and
    /// creates, maps and unmaps segment files itself when it rolls. The baseline.
    Off,
    /// A helper thread keeps `ahead_bytes` of the current segment faulted in ahead of the writer
    /// (`MADV_POPULATE_WRITE`), and has the next segment created, sized, mapped and faulted in
    /// before the writer needs it; retired segments are unmapped on the helper too.
    Ahead {
        /// How far ahead of the writer pages are kept faulted in.
        ahead_bytes: u64,
        /// How often the helper looks at the writer's position while there is work: it sleeps
        /// in between and never busy-spins, so it costs no core of its own. Looks that find
        /// nothing to do back off, doubling the sleep up to 5 ms (or this, if longer).
        poll_interval: Duration,
    },
}

impl Pretouch {
    /// 16 MiB ahead, refilled once an eighth of it is used, checked every 200 µs while there is
    /// work and up to every 5 ms when there is none (the helper works in 64 KiB steps of at
    /// most ~100 µs a turn: docs/journal-format.md, "Pre-touching").
    pub const DEFAULT: Pretouch = Pretouch::Ahead {
        ahead_bytes: 16 << 20,
        poll_interval: Duration::from_micros(200),
    };
}

/// The writer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Bytes per segment file (a multiple of 4096); the writer rolls to a new segment when the
    /// next record would not fit. Default 64 MiB.
    pub segment_len_bytes: u64,
    /// The largest payload `append` accepts. Default 64 KiB.
    pub payload_len_max_bytes: u32,
    /// When records are forced to disk. Default [`Durability::None`].
    pub durability: Durability,
    /// Pre-touching. Default [`Pretouch::DEFAULT`].
    pub pretouch: Pretouch,
    /// The sequence of the first record of a new (empty) journal, 1 to
    /// [`FIRST_SEQUENCE_MAX`]. Default 1.
    pub first_sequence: u64,
}

/// The largest `first_sequence` (2^62): sequences count up from it, one per record, and 0 is
/// no record's (readers and the pipeline use it for "none").
pub const FIRST_SEQUENCE_MAX: u64 = 1 << 62;

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_len_bytes: 64 << 20,
            payload_len_max_bytes: 64 << 10,
            durability: Durability::None,
            pretouch: Pretouch::DEFAULT,
            first_sequence: 1,
        }
    }
}

/// A configuration that cannot work, with the rule it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `segment_len_bytes` is not a multiple of 4096, or above 2^40.
    SegmentLength {
        /// The configured value.
        segment_len_bytes: u64,
    },
    /// The largest record plus the segment header and an end-of-segment frame does not fit one
    /// segment: make segments larger or records smaller.
    RecordTooLargeForSegment {
        /// The configured payload bound.
        payload_len_max_bytes: u32,
        /// The configured segment size.
        segment_len_bytes: u64,
    },
    /// `payload_len_max_bytes` exceeds what the format can describe.
    PayloadLengthMax {
        /// The configured value.
        payload_len_max_bytes: u32,
    },
    /// `Pretouch::Ahead` with `ahead_bytes` below one page or a zero poll interval.
    Pretouch,
    /// `first_sequence` is 0 or above [`FIRST_SEQUENCE_MAX`].
    FirstSequence {
        /// The configured value.
        first_sequence: u64,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ConfigError::SegmentLength { segment_len_bytes } => write!(
                f,
                "segment_len_bytes {segment_len_bytes} must be a multiple of {PAGE_SIZE} and at most 2^40"
            ),
            ConfigError::RecordTooLargeForSegment {
                payload_len_max_bytes,
                segment_len_bytes,
            } => write!(
                f,
                "a {payload_len_max_bytes}-byte payload does not fit a {segment_len_bytes}-byte segment \
                 (header, frame and end-of-segment frame included)"
            ),
            ConfigError::PayloadLengthMax {
                payload_len_max_bytes,
            } => write!(
                f,
                "payload_len_max_bytes {payload_len_max_bytes} exceeds the format's {PAYLOAD_LEN_FORMAT_MAX}"
            ),
            ConfigError::Pretouch => {
                write!(f, "pretouch ahead_bytes must be at least {PAGE_SIZE} and poll_interval non-zero")
            }
            ConfigError::FirstSequence { first_sequence } => write!(
                f,
                "first_sequence {first_sequence} must be from 1 to 2^62"
            ),
        }
    }
}

impl JournalConfig {
    /// Checks the relations between the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let seg = self.segment_len_bytes;
        if seg == 0 || !seg.is_multiple_of(PAGE_SIZE as u64) || seg > SEGMENT_LEN_BYTES_MAX {
            return Err(ConfigError::SegmentLength {
                segment_len_bytes: seg,
            });
        }
        let payload_max = self.payload_len_max_bytes as usize;
        if payload_max > PAYLOAD_LEN_FORMAT_MAX {
            return Err(ConfigError::PayloadLengthMax {
                payload_len_max_bytes: self.payload_len_max_bytes,
            });
        }
        let needed = (SEGMENT_HEADER_LEN + frame_len_for(payload_max) + FRAME_HEADER_LEN) as u64;
        if needed > seg {
            return Err(ConfigError::RecordTooLargeForSegment {
                payload_len_max_bytes: self.payload_len_max_bytes,
                segment_len_bytes: seg,
            });
        }
        if self.first_sequence == 0 || self.first_sequence > FIRST_SEQUENCE_MAX {
            return Err(ConfigError::FirstSequence {
                first_sequence: self.first_sequence,
            });
        }
        if let Pretouch::Ahead {
            ahead_bytes,
            poll_interval,
        } = self.pretouch
        {
            if ahead_bytes < PAGE_SIZE as u64 || poll_interval.is_zero() {
                return Err(ConfigError::Pretouch);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_ones_are_named() {
        assert_eq!(JournalConfig::default().validate(), Ok(()));
        let c = JournalConfig {
            segment_len_bytes: 5000,
            ..JournalConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SegmentLength { .. })
        ));
        let c = JournalConfig {
            segment_len_bytes: 4096,
            payload_len_max_bytes: 4096,
            ..JournalConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RecordTooLargeForSegment { .. })
        ));
        // Exactly fits: header 64 + frame (32 + 3968) + end-of-segment frame 32 = 4096.
        let c = JournalConfig {
            segment_len_bytes: 4096,
            payload_len_max_bytes: 4096 - 64 - 32 - 32,
            ..JournalConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let c = JournalConfig {
            pretouch: Pretouch::Ahead {
                ahead_bytes: 1,
                poll_interval: Duration::from_millis(1),
            },
            ..JournalConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Pretouch));
        for first_sequence in [0, FIRST_SEQUENCE_MAX + 1, u64::MAX] {
            let c = JournalConfig {
                first_sequence,
                ..JournalConfig::default()
            };
            assert_eq!(
                c.validate(),
                Err(ConfigError::FirstSequence { first_sequence })
            );
        }
        let c = JournalConfig {
            first_sequence: FIRST_SEQUENCE_MAX,
            ..JournalConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }
}
