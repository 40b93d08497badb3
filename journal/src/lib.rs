//! ringbook's journal: memory-mapped, checksummed, append-only segments and snapshots.
//!
//! Every accepted command is journaled before anyone is told it was accepted; from the journal
//! (and a snapshot) the engine's exact state can be rebuilt (docs/overview.md §6). This crate stores opaque
//! records — `(sequence, type, timestamp, payload)` — and opaque snapshot blobs; what the bytes
//! mean is the pipeline's business.
//!
//! # Pieces
//!
//! - [`Writer`] — the single writer: appends straight into a mapped segment (no allocation, no
//!   lock, no system call on the hot path), rolls segments by size, applies the [`Durability`]
//!   policy, and recovers the journal when it opens ([`RecoveryReport`]).
//! - the pre-toucher (`pretouch.rs`) — a helper thread that faults pages in ahead of the
//!   writer and prepares the next segment, so neither page faults nor file creation land on the
//!   hot path ([`Pretouch`]).
//! - [`Reader`] — sequential replay of a journal at rest, checking every checksum and sequence.
//! - [`Tailer`] — follows a live writer from another thread or process, non-blocking.
//! - [`snapshot`] — atomic, checksummed snapshot files; [`load_latest`] falls back past damaged
//!   ones.
//! - [`prune()`] — removes segments a snapshot covers; [`inspect`] — verifies everything and
//!   lists every problem; [`truncate()`] — the operator's explicit acceptance of a known loss
//!   (recovery refuses damage rather than drop records by itself).
//!
//! # In the pipeline
//!
//! At start-up: [`load_latest`] snapshot, [`Writer::open`] (recovers, reports in
//! [`Writer::recovery`]), [`Reader::open_from`] the snapshot's sequence + 1 to replay the tail
//! into the engine. The journal stage J then calls [`Writer::append_with`] per command (encoding
//! it straight into the mapped segment) and [`Writer::end_batch`] at the end of each ring batch,
//! before the batch's responses are released; with [`Durability::Batch`] that is the one sync
//! that makes the batch durable. Nothing on that path allocates, locks or blocks (with
//! `Durability::None`), which `tests/zero_alloc.rs` checks with a counting allocator. A replica
//! or a market-data process follows the journal with a [`Tailer`]; snapshots are written with
//! [`SnapshotWriter`] off the hot path and old segments dropped with [`Writer::prune`].
//!
//! The byte layout, versioning and recovery rules are in docs/journal-format.md; the module
//! docs of `format`, `mapping`, `scan` and `recovery` are the same rules next to the code.
//!
//! # Example
//!
//! ```
//! use ringbook_journal::{Durability, JournalConfig, Reader, Writer};
//!
//! let dir = tempfile::tempdir()?;
//! let config = JournalConfig {
//!     segment_len_bytes: 1 << 20,
//!     durability: Durability::None,
//!     ..JournalConfig::default()
//! };
//! let mut writer = Writer::open(dir.path(), config)?;
//! for i in 0..1000u64 {
//!     let seq = writer.next_sequence();
//!     writer.append(seq, 1, i, &i.to_le_bytes())?;
//! }
//! writer.end_batch()?;
//! drop(writer);
//!
//! // Replay after a snapshot at sequence 900: records 901.. only.
//! ringbook_journal::write_snapshot(dir.path(), 900, 0, 1, b"engine state")?;
//! let snapshot = ringbook_journal::load_latest(dir.path())?.snapshot.expect("a snapshot");
//! let mut reader = Reader::open_from(dir.path(), snapshot.meta.sequence + 1)?;
//! let mut replayed = 0;
//! while let Some(record) = reader.next()? {
//!     assert_eq!(record.sequence, 901 + replayed);
//!     replayed += 1;
//! }
//! assert_eq!(replayed, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Testing
//!
//! Unit tests sit next to the code (layout, config). `tests/` holds round trips across segment
//! rolls, every durability and pre-touch mode; crash tests that `SIGKILL` a writer *process*
//! mid-append (deterministically, inside a record's fill) and free-running, then recover; tests
//! that zero or flip every byte of the last record and check that recovery keeps exactly the
//! complete records; damage that must be a hard error naming the file and what is lost, with
//! no file changed (mid-segment corruption, a segment cut short at every offset of its last
//! record, a removed segment, a snapshot beyond the journal's end); [`truncate()`] accepting
//! such a loss; the tailer following a writer thread and a writer process; snapshots with damaged
//! newest files; pruning; and property tests that feed arbitrary and mutated segment files to
//! the readers and recovery (never a panic, never a record whose checksum does not match).
#![deny(missing_docs)]

mod config;
mod dir;
mod error;
pub mod format;
mod mapping;
mod pretouch;
mod prune;
mod reader;
mod record;
mod recovery;
mod scan;
mod segment;
pub mod snapshot;
mod tailer;
mod truncate;
mod verify;
mod writer;

pub use config::{
    ConfigError, Durability, JournalConfig, Pretouch, SyncMethod, FIRST_SEQUENCE_MAX,
    SEGMENT_LEN_BYTES_MAX,
};
pub use dir::{
    is_not_regular, list, open_regular, segment_path, snapshot_path, DirListing, CREATED_FILE_NAME,
    LOCK_FILE_NAME,
};
pub use error::{AppendError, Corruption, CorruptionKind, JournalError};
pub use prune::{prune, PruneReport};
pub use reader::{Reader, TailState};
pub use record::{Record, RecordPosition};
pub use recovery::{RecoveryReport, Truncation};
pub use snapshot::{
    latest_valid, load_latest, read_snapshot, write_snapshot, LatestSnapshot, Snapshot,
    SnapshotMeta, SnapshotWriter,
};
pub use tailer::Tailer;
pub use truncate::{truncate, RemovedSegment, TruncateReport};
pub use verify::{inspect, Inspection, Problem, Progress, SegmentState, SegmentSummary, Severity};
pub use writer::{Writer, WriterStats};
