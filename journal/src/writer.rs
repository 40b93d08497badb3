//! The writer: appends records to the mapped segment, rolls segments, applies the durability
//! policy.
//!
//! # The hot path
//!
//! [`Writer::append`] / [`Writer::append_with`] check the sequence and the length, write the
//! frame's fields and payload straight into the mapping, compute the CRC32C over the frame, and
//! publish it by storing its length word with `Release`. No allocation, no lock, no system call
//! (with [`Durability::None`] and pre-touching on): a handful of stores, a `memcpy` of the
//! payload, and a hardware CRC. Rolling to the next segment (once per segment) is a pointer swap
//! with the pre-toucher and a 64-byte header write.
//!
//! # Publication
//!
//! Readers in other threads or processes follow the writer through the length words: a frame's
//! bytes are written first, its length word last (`Release`), and readers `Acquire`-load the
//! length word before reading the frame (see [`crate::mapping`]). A segment's header is
//! published the same way, through its magic. The end-of-segment frame is published before the
//! next segment's header, so a reader that reaches it finds the next segment's header or
//! (briefly) a zero magic to wait on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Durability, JournalConfig, Pretouch, SyncMethod};
use crate::dir::{self, DirLock};
use crate::error::{AppendError, JournalError};
use crate::format::{
    encode_frame_fields, frame_checksum, frame_len_for, FLAG_END_OF_SEGMENT, FRAME_HEADER_LEN,
    F_CHECKSUM, F_LENGTH, SEGMENT_HEADER_LEN,
};
use crate::pretouch::{PretouchPlan, Pretoucher, PUBLISH_GRANULE_BYTES};
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;

/// Counters kept by the writer (plain integers on the writer's thread; read them there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended since open.
    pub records: u64,
    /// Frame bytes appended since open (headers and padding included).
    pub bytes: u64,
    /// Segments rolled to since open.
    pub rolls: u64,
    /// Rolls that had to wait for the pre-toucher to finish the next segment.
    pub roll_stalls: u64,
    /// `msync`/`fdatasync` calls made by the durability policy.
    pub syncs: u64,
}

/// The journal's single writer. Open one per directory (a lock file enforces it).
///
/// ```
/// use ringbook_journal::{JournalConfig, Reader, Writer};
///
/// let dir = tempfile::tempdir()?;
/// let mut writer = Writer::open(dir.path(), JournalConfig::default())?;
/// let seq = writer.next_sequence();
/// writer.append(seq, 7, 1_700_000_000_000_000_000, b"an encoded command")?;
/// writer.append_with(seq + 1, 7, 1_700_000_000_000_000_001, 8, |buf| {
///     buf.copy_from_slice(&42u64.to_le_bytes()) // encode in place, no intermediate buffer
/// })?;
/// writer.end_batch()?; // applies Durability::Batch; a no-op for the default (None)
/// drop(writer);
///
/// let mut reader = Reader::open(dir.path())?;
/// let first = reader.next()?.expect("one record");
/// assert_eq!((first.sequence, first.record_type), (seq, 7));
/// assert_eq!(first.payload, b"an encoded command");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Writer {
    /// Joined first on drop: it may hold the last references to retired segments.
    pretoucher: Option<Pretoucher>,
    segment: Arc<Segment>,
    /// Write position in `segment`: where the next frame goes.
    offset: usize,
    /// `segment`'s length.
    capacity: usize,
    next_sequence: u64,
    payload_len_max: usize,
    durability: Durability,
    /// Bytes of `segment` before this offset are synced (with a durability policy).
    synced_offset: usize,
    failed: bool,
    stats: WriterStats,
    dir: PathBuf,
    segment_len_bytes: u64,
    recovery: RecoveryReport,
    _lock: DirLock,
}

impl Writer {
    /// Opens (creating if needed) the journal in `dir`, recovers it (the rules are in
    /// docs/journal-format.md, "Recovery"; what was done is in [`Writer::recovery`]), faults in
    /// the first pages, and starts the pre-toucher. Everything the hot path needs is allocated
    /// here.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Writer, JournalError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        dir::ensure_dir(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        let recovered = recovery::recover(&dir, &config)?;
        let segment = Arc::new(recovered.segment);
        // Recovery has read it; from here on it is only written through this mapping (see
        // `Mapping::no_readahead`).
        segment.map.no_readahead();
        let offset = recovered.offset;
        assert!(offset >= SEGMENT_HEADER_LEN && offset + FRAME_HEADER_LEN <= segment.len());
        assert_eq!(
            segment.header().map(|h| h.segment_index),
            Ok(segment.index),
            "recovered segment has no valid header"
        );
        let pretoucher = match config.pretouch {
            Pretouch::Off => None,
            Pretouch::Ahead {
                ahead_bytes,
                poll_interval,
            } => {
                let ahead = usize::try_from(ahead_bytes).unwrap_or(usize::MAX);
                // Start-up, not the hot path: fault in the first window here and now.
                let end = offset.saturating_add(ahead).min(segment.len());
                segment
                    .map
                    .populate_write(offset, end - offset)
                    .or_else(|e| {
                        if e.raw_os_error() == Some(22) {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| JournalError::io("pre-touch", &segment.path, e))?;
                let plan = PretouchPlan {
                    dir: dir.clone(),
                    segment_len_bytes: config.segment_len_bytes,
                    ahead_bytes: ahead,
                    poll_interval,
                    durable: config.durability.method().is_some(),
                };
                Some(Pretoucher::start(plan, Arc::clone(&segment), offset)?)
            }
        };
        Ok(Writer {
            pretoucher,
            capacity: segment.len(),
            segment,
            offset,
            next_sequence: recovered.next_sequence,
            payload_len_max: config.payload_len_max_bytes as usize,
            durability: config.durability,
            synced_offset: offset,
            failed: false,
            stats: WriterStats::default(),
            dir,
            segment_len_bytes: config.segment_len_bytes,
            recovery: recovered.report,
            _lock: lock,
        })
    }

    /// What recovery found and did when this writer opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The sequence the next record must carry.
    #[inline]
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index of the segment being written.
    pub fn segment_index(&self) -> u64 {
        self.segment.index
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Appends one record. `sequence` must be [`next_sequence`](Self::next_sequence). With
    /// `Durability::Record`, it is synced before this returns.
    #[inline]
    pub fn append(
        &mut self,
        sequence: u64,
        record_type: u16,
        timestamp_ns: u64,
        payload: &[u8],
    ) -> Result<(), AppendError> {
        self.append_with(sequence, record_type, timestamp_ns, payload.len(), |buf| {
            buf.copy_from_slice(payload)
        })
    }

    /// Appends one record whose `payload_len`-byte payload `fill` writes in place, straight
    /// into the mapped segment. The buffer is 8-byte aligned and zeroed (segments start as
    /// zeros and recovery re-zeroes what it cuts), unless an earlier `fill` panicked. If `fill`
    /// panics, nothing is published: the bytes it wrote lie past the journal's end, and are
    /// overwritten by the next append or cut away as a torn tail by the next recovery (a panic
    /// in the journal stage is fatal anyway, docs/overview.md §3).
    #[inline]
    pub fn append_with(
        &mut self,
        sequence: u64,
        record_type: u16,
        timestamp_ns: u64,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), AppendError> {
        if self.failed {
            return Err(AppendError::Failed);
        }
        if sequence != self.next_sequence {
            return Err(AppendError::SequenceNotNext {
                expected: self.next_sequence,
                got: sequence,
            });
        }
        if payload_len > self.payload_len_max {
            return Err(AppendError::PayloadTooLarge {
                len: payload_len,
                max: self.payload_len_max as u32,
            });
        }
        let frame_len = frame_len_for(payload_len);
        // Every frame leaves room for the end-of-segment frame after it.
        if self.offset + frame_len + FRAME_HEADER_LEN > self.capacity {
            self.roll()?;
        }
        let offset = self.offset;
        assert!(offset + frame_len + FRAME_HEADER_LEN <= self.capacity);
        {
            // SAFETY: this writer is the journal's only one (directory lock) and `&mut self`
            // makes this call its only writing activity; `offset..offset + frame_len` lies past
            // the last committed frame, so no reader references it (readers reference a frame
            // only after seeing its non-zero length word, which is stored below, after this
            // borrow ends); the mapping is read-write. The slice starts after the length word,
            // which is only ever accessed atomically.
            let frame = unsafe { self.segment.map.bytes_mut(offset + 4, frame_len - 4) };
            let (fields, payload_and_pad) = frame.split_at_mut(FRAME_HEADER_LEN - 4);
            encode_frame_fields(
                &mut fields[4..],
                sequence,
                timestamp_ns,
                record_type,
                0,
                payload_len as u32,
            );
            let (payload, pad) = payload_and_pad.split_at_mut(payload_len);
            fill(payload);
            pad.fill(0);
            let checksum = frame_checksum(&frame[4..]);
            frame[F_CHECKSUM - 4..F_CHECKSUM].copy_from_slice(&checksum.to_le_bytes());
        }
        // Publish: Release orders every store above before the length word becomes visible.
        self.segment
            .map
            .store_u32_release(offset + F_LENGTH, frame_len as u32);
        debug_assert!(matches!(
            crate::scan::read_frame(&self.segment.map, offset, self.capacity),
            crate::scan::FrameRead::Record { header, .. } if header.sequence == sequence
        ));
        let new_offset = offset + frame_len;
        self.offset = new_offset;
        self.next_sequence = sequence + 1;
        self.stats.records += 1;
        self.stats.bytes += frame_len as u64;
        if let Some(p) = &self.pretoucher {
            if (offset ^ new_offset) >= PUBLISH_GRANULE_BYTES {
                p.publish(self.segment.index, new_offset);
            }
        }
        if let Durability::Record(method) = self.durability {
            self.sync_with(method)?;
        }
        Ok(())
    }

    /// Ends a batch: with `Durability::Batch`, syncs every record appended since the last sync
    /// (one system call for the batch); otherwise does nothing.
    #[inline]
    pub fn end_batch(&mut self) -> Result<(), AppendError> {
        match self.durability {
            Durability::Batch(method) => self.sync_with(method),
            Durability::None | Durability::Record(_) => Ok(()),
        }
    }

    /// Syncs every record appended so far, whatever the policy (`msync` unless the policy
    /// names `fdatasync`). Blocks on I/O: not for the hot path of a `None` journal.
    pub fn sync(&mut self) -> Result<(), AppendError> {
        let method = self.durability.method().unwrap_or(SyncMethod::Msync);
        self.sync_with(method)
    }

    /// Prunes segments covered by the newest valid snapshot and before `before` (see
    /// [`crate::prune()`]); this writer holds the lock, so the standalone function cannot run.
    /// Off the hot path: it reads headers and removes files.
    pub fn prune(&self, before: u64, dry_run: bool) -> Result<crate::PruneReport, JournalError> {
        crate::prune::prune_locked(&self.dir, before, dry_run)
    }

    /// Syncs (with the policy's method, if any) and closes the writer.
    pub fn close(mut self) -> Result<(), AppendError> {
        if self.durability.method().is_some() {
            self.sync()?;
        }
        Ok(())
    }

    fn sync_with(&mut self, method: SyncMethod) -> Result<(), AppendError> {
        if self.failed {
            return Err(AppendError::Failed);
        }
        if self.synced_offset >= self.offset {
            return Ok(());
        }
        let result = match method {
            SyncMethod::Msync => self
                .segment
                .map
                .flush_range(self.synced_offset, self.offset - self.synced_offset),
            SyncMethod::Fdatasync => self.segment.file.sync_data(),
        };
        if let Err(e) = result {
            // After a failed sync the kernel may have dropped the dirty pages: what is on disk
            // is unknown. Fail for good rather than acknowledge anything more.
            self.failed = true;
            return Err(AppendError::io(&e));
        }
        self.stats.syncs += 1;
        self.synced_offset = self.offset;
        Ok(())
    }

    /// Seals the current segment and moves to the next. Cold: once per segment.
    #[cold]
    #[inline(never)]
    fn roll(&mut self) -> Result<(), AppendError> {
        let result = self.roll_inner();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn roll_inner(&mut self) -> Result<(), AppendError> {
        // 1. The next segment's file: ready-made by the pre-toucher, or created here — before
        //    the seal, so that a sealed segment always has its successor's file (a sealed
        //    segment without one lost it: recovery calls that damage, not a crash).
        let next = match &self.pretoucher {
            Some(p) => p.take_next(&mut self.stats.roll_stalls)?,
            None => Arc::new(
                Segment::create(
                    &self.dir,
                    self.segment.index + 1,
                    self.segment_len_bytes,
                    self.durability.method().is_some(),
                )
                .map_err(|e| match e {
                    JournalError::Io { source, .. } => AppendError::io(&source),
                    _ => AppendError::Failed,
                })?,
            ),
        };
        // 2. Seal: the end-of-segment frame carries the next segment's first sequence.
        let offset = self.offset;
        assert!(offset + FRAME_HEADER_LEN <= self.capacity);
        {
            // SAFETY: as in `append_with`: past the last committed frame, exclusively ours.
            let frame = unsafe { self.segment.map.bytes_mut(offset + 4, FRAME_HEADER_LEN - 4) };
            encode_frame_fields(
                &mut frame[4..],
                self.next_sequence,
                0,
                0,
                FLAG_END_OF_SEGMENT,
                0,
            );
            let checksum = frame_checksum(&frame[4..]);
            frame[..4].copy_from_slice(&checksum.to_le_bytes());
        }
        self.segment
            .map
            .store_u32_release(offset + F_LENGTH, FRAME_HEADER_LEN as u32);
        self.offset = offset + FRAME_HEADER_LEN;
        // 3. With a durability policy, the sealed segment is synced whole before the next one
        //    starts, so the order of segments on disk is the order of the journal.
        if let Some(method) = self.durability.method() {
            self.sync_with(method)?;
        }
        assert_eq!(next.index, self.segment.index + 1, "segments out of order");
        // 4. Start it.
        next.write_header(self.next_sequence);
        debug_assert_eq!(
            next.header().map(|h| h.first_sequence),
            Ok(self.next_sequence)
        );
        if self.durability.method().is_some() {
            next.map
                .flush_range(0, SEGMENT_HEADER_LEN)
                .map_err(|e| AppendError::io(&e))?;
        }
        // The old segment: with a pre-toucher, it holds the last reference and unmaps it.
        self.capacity = next.len();
        self.segment = next;
        self.offset = SEGMENT_HEADER_LEN;
        self.synced_offset = SEGMENT_HEADER_LEN;
        self.stats.rolls += 1;
        if let Some(p) = &self.pretoucher {
            p.publish(self.segment.index, self.offset);
            p.nudge();
        }
        Ok(())
    }
}
