//! Snapshots while running: serialised by the business thread at a command boundary into a
//! reused buffer (the pause), written by a background thread (write, `fsync`, rename — the
//! journal's `SnapshotWriter`), never blocking the pipeline on I/O.
//!
//! Two hand-offs, both bounded channels of one buffer: the business thread sends the filled
//! buffer to the writer thread, which sends it back empty (its capacity kept) when the file is
//! in place. While the writer still holds the buffer, a due snapshot is deferred to the next
//! boundary (counted in [`SnapshotStats::deferred`]) rather than waited for.

use std::io::Write;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use ringbook_journal::SnapshotWriter;

use super::control::Control;

/// How long the snapshot thread waits on its (empty) job channel once at start (see
/// `Snapshots::start`); `start` waits for it.
const WARM_UP_WAIT: Duration = Duration::from_millis(50);
use crate::engine::Engine;
use crate::snapshot::SNAPSHOT_FORMAT_VERSION;
use crate::types::Seq;

/// What the pipeline's snapshots cost and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Snapshots serialised by the business thread.
    pub taken: u64,
    /// Snapshots the background thread wrote, synced and renamed into place.
    pub written: u64,
    /// Snapshots that were due while the previous one was still being written (taken later).
    pub deferred: u64,
    /// Longest pause of the business thread to serialise one, in nanoseconds.
    pub pause_ns_max: u64,
    /// Sum of the pauses, in nanoseconds.
    pub pause_ns_total: u64,
    /// Bytes of the last snapshot.
    pub bytes_last: u64,
    /// The sequence the last written snapshot covers.
    pub last_seq: Option<Seq>,
    /// Failed writes, and the last failure.
    pub errors: u64,
    /// Old snapshot files removed ([`crate::PipelineBuilder::keep_snapshots`]).
    pub pruned: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
}

struct Job {
    seq: Seq,
    timestamp_ns: u64,
    buf: Vec<u8>,
}

#[derive(Default)]
struct WriteStats {
    written: u64,
    errors: u64,
    pruned: u64,
    last_error: Option<String>,
    last_seq: Option<Seq>,
}

/// The business thread's side.
pub(crate) struct Snapshots {
    every: u64,
    control: Control,
    /// The reusable buffer, when the writer thread is not holding it.
    buf: Option<Vec<u8>>,
    to_writer: Option<Sender<Job>>,
    back: Option<Receiver<Vec<u8>>>,
    /// A due snapshot waits for the buffer.
    pending: bool,
    stats: SnapshotStats,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("every", &self.every)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The writer thread's handle.
pub(crate) struct SnapshotThread(JoinHandle<WriteStats>);

impl std::fmt::Debug for SnapshotThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotThread")
    }
}

impl Snapshots {
    /// Snapshots disabled (no journal directory): requests are ignored.
    pub(crate) fn disabled(control: Control) -> Snapshots {
        Snapshots {
            every: 0,
            control,
            buf: None,
            to_writer: None,
            back: None,
            pending: false,
            stats: SnapshotStats::default(),
        }
    }

    /// Snapshots into `dir`, every `every` commands (0: only on request), with a first buffer
    /// of `capacity` bytes; starts the writer thread. With `keep: Some(k)`, after each write
    /// the writer removes all but the newest `k` snapshots and asks the journal stage to prune
    /// the segments only the removed ones needed.
    pub(crate) fn start(
        dir: PathBuf,
        every: u64,
        keep: Option<usize>,
        capacity: usize,
        control: Control,
    ) -> std::io::Result<(Snapshots, SnapshotThread)> {
        let (to_writer, jobs) = bounded::<Job>(1);
        let (give_back, back) = bounded::<Vec<u8>>(1);
        let prune_control = control.clone();
        let (started, is_started) = bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name("ringbook-snapshot".into())
            .spawn(move || {
                let mut stats = WriteStats::default();
                // Crossbeam allocates a thread's wait context (and its waiter entry) the first
                // time the thread blocks on a channel: block once now, before `start` returns,
                // so that it never happens after the pipeline's zero-allocation point (a loaded
                // machine may not run this thread until much later otherwise). The timeout is
                // long enough that crossbeam's spin-then-yield phase, slow under load, ends
                // before it and the wait really blocks.
                let first = match jobs.recv_timeout(WARM_UP_WAIT) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return stats,
                };
                let _ = started.send(());
                for job in first.into_iter().chain(jobs.iter()) {
                    let written = SnapshotWriter::create(
                        &dir,
                        job.seq.0,
                        job.timestamp_ns,
                        u32::from(SNAPSHOT_FORMAT_VERSION),
                    )
                    .map_err(|e| e.to_string())
                    .and_then(|mut w| {
                        w.write_all(&job.buf).map_err(|e| e.to_string())?;
                        w.finish().map_err(|e| e.to_string())
                    });
                    match written {
                        Ok(meta) => {
                            stats.written += 1;
                            stats.last_seq = Some(Seq(meta.sequence));
                            prune_control.note_snapshot(meta.sequence, meta.timestamp_ns);
                            if let Some(k) = keep {
                                prune_snapshots(&dir, k, &prune_control, &mut stats);
                            }
                        }
                        Err(e) => {
                            stats.errors += 1;
                            stats.last_error = Some(e);
                        }
                    }
                    let mut buf = job.buf;
                    buf.clear();
                    if give_back.send(buf).is_err() {
                        break;
                    }
                }
                stats
            })?;
        // The thread has blocked once (above) or ended.
        let _ = is_started.recv();
        Ok((
            Snapshots {
                every,
                control,
                buf: Some(Vec::with_capacity(capacity)),
                to_writer: Some(to_writer),
                back: Some(back),
                pending: false,
                stats: SnapshotStats::default(),
            },
            SnapshotThread(handle),
        ))
    }

    /// At a command boundary where `engine` covers every command up to `seq`: takes a
    /// snapshot if one is due (every N, requested, or deferred) and the buffer is free.
    #[inline]
    pub(crate) fn at_boundary(&mut self, engine: &Engine, seq: Seq, timestamp_ns: u64) {
        let due = self.control.take_snapshot_request()
            || (self.every != 0 && seq.0.is_multiple_of(self.every))
            || self.pending;
        if due && self.to_writer.is_some() {
            self.take(engine, seq, timestamp_ns);
        }
    }

    #[cold]
    fn take(&mut self, engine: &Engine, seq: Seq, timestamp_ns: u64) {
        if self.buf.is_none() {
            self.buf = self.back.as_ref().and_then(|b| b.try_recv().ok());
        }
        let Some(mut buf) = self.buf.take() else {
            // The previous snapshot is still being written: try again at the next boundary.
            if !self.pending {
                self.stats.deferred += 1;
            }
            self.pending = true;
            return;
        };
        self.pending = false;
        let started = Instant::now();
        buf.clear();
        engine.write_snapshot(&mut buf);
        let pause_ns = started.elapsed().as_nanos() as u64;
        self.stats.taken += 1;
        self.stats.pause_ns_max = self.stats.pause_ns_max.max(pause_ns);
        self.stats.pause_ns_total += pause_ns;
        self.stats.bytes_last = buf.len() as u64;
        let job = Job {
            seq,
            timestamp_ns,
            buf,
        };
        if let Some(tx) = &self.to_writer {
            // Capacity 1 and we hold no buffer: the channel is empty, this never blocks.
            let _ = tx.send(job);
        }
    }

    /// Closes the writer side and returns this side's figures.
    pub(crate) fn finish(mut self) -> SnapshotStats {
        self.to_writer = None;
        self.stats
    }
}

/// Removes all but the newest `keep` snapshot files in `dir`, then asks the journal stage to
/// prune the segments before the oldest one kept (a restart may still fall back to any kept
/// snapshot). Runs on the writer thread, off the pipeline.
fn prune_snapshots(dir: &std::path::Path, keep: usize, control: &Control, stats: &mut WriteStats) {
    let snapshots = match ringbook_journal::list(dir) {
        Ok(listing) => listing.snapshots,
        Err(e) => {
            stats.errors += 1;
            stats.last_error = Some(format!("listing snapshots to prune: {e}"));
            return;
        }
    };
    if snapshots.len() <= keep {
        return;
    }
    let (old, kept) = snapshots.split_at(snapshots.len() - keep);
    for (_, path) in old {
        match std::fs::remove_file(path) {
            Ok(()) => stats.pruned += 1,
            Err(e) => {
                stats.errors += 1;
                stats.last_error = Some(format!("removing {}: {e}", path.display()));
            }
        }
    }
    if let Some((oldest_kept, _)) = kept.first() {
        control.request_prune(oldest_kept.saturating_add(1));
    }
}

impl SnapshotThread {
    /// Waits for the writer to finish what it was given and folds its figures into `stats`.
    pub(crate) fn join(self, stats: &mut SnapshotStats) {
        match self.0.join() {
            Ok(w) => {
                stats.written = w.written;
                stats.errors = w.errors;
                stats.pruned = w.pruned;
                stats.last_error = w.last_error;
                stats.last_seq = w.last_seq;
            }
            Err(_) => {
                stats.errors += 1;
                stats.last_error = Some("the snapshot writer thread panicked".into());
            }
        }
    }
}
