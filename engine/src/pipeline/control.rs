//! State every pipeline thread shares: the failure flag, the start-up count, the snapshot
//! request, S's done-sequence that paces R in the split layout, and each thread's [`Bell`]
//! (how a parked thread of [`WaitStrategy::Phased`](super::WaitStrategy) is woken).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::bell::Bell;

/// Which thread a [`Bell`] wakes: the consumer of each queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BellId {
    /// The inbound ring's first consumer (J, or the fused thread); rung by `submit`.
    Inbound,
    /// The business thread after J (`J|RMS`'s RMS, split's R).
    Business,
    /// Split's M.
    Match,
    /// Split's S (the M → S ring's consumer).
    Settle,
    /// The outbound thread.
    Out,
}

const BELLS: usize = 5;

/// The message a thread panics with when it stops because another one failed.
pub(crate) const CASCADE_MESSAGE: &str = "stopped: another pipeline thread failed";

#[derive(Debug)]
struct Inner {
    /// Set when any pipeline thread panics; every wait loop checks it, so a failure stops the
    /// whole pipeline instead of leaving the others spinning forever (docs/overview.md §3: a panic in a
    /// stage is fatal and reported).
    failed: AtomicBool,
    /// Threads that finished starting (pinned, ready to poll).
    ready: AtomicUsize,
    /// Set by `Pipeline::request_snapshot`, cleared by the business thread that takes it.
    snapshot_requested: AtomicBool,
    /// The last sequence S finished (split layout): stored with `Release` by S after the
    /// command's last account write, loaded with `Acquire` by R before it touches the state
    /// for the next command. Alone on its cache line: S writes it once per command and R reads
    /// it in a loop.
    s_done: CachePadded<AtomicI64>,
    /// One per consumer thread, indexed by [`BellId`].
    bells: [Bell; BELLS],
    /// Whether the threads park (only [`WaitStrategy::Phased`](super::WaitStrategy) does):
    /// otherwise nobody rings, and publishing costs no fence.
    parking: bool,
    /// Set by the snapshot writer after it pruned old snapshots: the journal stage prunes
    /// the segments before this sequence at its next batch boundary (0: nothing to do).
    prune_before: CachePadded<AtomicU64>,
    /// What an operator watches ([`PipelineGauges`](super::PipelineGauges)): each cell has one
    /// writer thread and is stored `Relaxed` (a monitoring read needs no ordering).
    gauges: GaugeCells,
}

/// Monitoring figures, each written by one thread: the submitter, the journal stage, the
/// snapshot writer. Off the hot path's shared lines (the submitter's cell is its own line).
#[derive(Debug, Default)]
struct GaugeCells {
    /// The last sequence handed out by `submit` (0: none yet).
    submitted: CachePadded<AtomicU64>,
    /// Journal frame bytes appended since the pipeline started (headers and padding included).
    journal_bytes: AtomicU64,
    /// Journal records appended since the pipeline started.
    journal_records: AtomicU64,
    /// The sequence the newest snapshot covers (0: none).
    snapshot_seq: AtomicU64,
    /// That snapshot's engine time, Unix ns (0: none).
    snapshot_ts_ns: AtomicU64,
    /// The engine's soonest order expiry, Unix ns, plus one (0: none expires), as the business
    /// end last published it (once per batch, when it changed).
    next_expiry_plus_one: AtomicU64,
}

/// A handle on the shared control state (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Control(Arc<Inner>);

impl Control {
    pub(crate) fn new(s_done: i64, parking: bool) -> Control {
        Control(Arc::new(Inner {
            failed: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            snapshot_requested: AtomicBool::new(false),
            s_done: CachePadded::new(AtomicI64::new(s_done)),
            bells: Default::default(),
            parking,
            prune_before: CachePadded::new(AtomicU64::new(0)),
            gauges: GaugeCells::default(),
        }))
    }

    /// The engine's soonest order expiry changed to `ns` (`u64::MAX`: none).
    #[inline]
    pub(crate) fn note_next_expiry(&self, ns: u64) {
        self.0
            .gauges
            .next_expiry_plus_one
            .store(ns.wrapping_add(1), Ordering::Relaxed);
    }

    /// The engine's soonest order expiry as last published (`u64::MAX`: none).
    pub(crate) fn next_expiry(&self) -> u64 {
        self.0
            .gauges
            .next_expiry_plus_one
            .load(Ordering::Relaxed)
            .wrapping_sub(1)
    }

    /// The submitter handed out `seq`.
    #[inline]
    pub(crate) fn note_submitted(&self, seq: u64) {
        self.0.gauges.submitted.store(seq, Ordering::Relaxed);
    }

    /// The journal stage's running totals after a batch.
    #[inline]
    pub(crate) fn note_journal(&self, records: u64, bytes: u64) {
        self.0
            .gauges
            .journal_records
            .store(records, Ordering::Relaxed);
        self.0.gauges.journal_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A snapshot covering `seq`, taken at engine time `ts_ns`, is on disk.
    pub(crate) fn note_snapshot(&self, seq: u64, ts_ns: u64) {
        self.0.gauges.snapshot_ts_ns.store(ts_ns, Ordering::Relaxed);
        self.0.gauges.snapshot_seq.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn submitted(&self) -> u64 {
        self.0.gauges.submitted.load(Ordering::Relaxed)
    }

    pub(crate) fn journal_totals(&self) -> (u64, u64) {
        let g = &self.0.gauges;
        (
            g.journal_records.load(Ordering::Relaxed),
            g.journal_bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn snapshot(&self) -> Option<(u64, u64)> {
        let g = &self.0.gauges;
        let seq = g.snapshot_seq.load(Ordering::Relaxed);
        (seq != 0).then(|| (seq, g.snapshot_ts_ns.load(Ordering::Relaxed)))
    }

    /// The bell of thread `id`.
    #[inline]
    pub(crate) fn bell(&self, id: BellId) -> &Bell {
        &self.0.bells[id as usize]
    }

    /// After publishing to the queue that thread `id` consumes: wakes it if it is parked
    /// (nothing but a branch unless the threads park).
    #[inline]
    pub(crate) fn ring(&self, id: BellId) {
        if self.0.parking {
            self.bell(id).ring();
        }
    }

    /// Wakes every parked thread (shutdown, failure): each then looks at its queue and at
    /// the failure flag.
    pub(crate) fn ring_all(&self) {
        for bell in &self.0.bells {
            bell.wake();
        }
    }

    /// Times any pipeline thread parked.
    pub(crate) fn parks(&self) -> u64 {
        self.0.bells.iter().map(Bell::parks).sum()
    }

    /// Asks the journal stage to prune the segments before `seq` (snapshot writer).
    pub(crate) fn request_prune(&self, before: u64) {
        self.0.prune_before.store(before, Ordering::Relaxed);
    }

    /// Takes a pending prune request (journal stage, once per batch): one plain load when
    /// there is none.
    #[inline]
    pub(crate) fn take_prune(&self) -> Option<u64> {
        if self.0.prune_before.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.0.prune_before.swap(0, Ordering::Relaxed) {
            0 => None,
            before => Some(before),
        }
    }

    /// Panics (stopping this thread) if another pipeline thread failed. `Relaxed`: the flag
    /// carries no data, and a late look only delays the stop by one more wait step.
    #[inline]
    pub(crate) fn check(&self) {
        if self.0.failed.load(Ordering::Relaxed) {
            panic!("{CASCADE_MESSAGE}");
        }
    }

    /// Whether a pipeline thread failed.
    pub(crate) fn failed(&self) -> bool {
        self.0.failed.load(Ordering::Relaxed)
    }

    /// A downstream queue's consumer is gone, which only happens when it panicked.
    pub(crate) fn fail_downstream(&self) -> ! {
        self.mark_failed();
        panic!("{CASCADE_MESSAGE}");
    }

    /// Records that a pipeline thread is gone (the submitter found the inbound channel's
    /// consumer dropped, possibly before the dying thread's own guard set the flag), so that
    /// `has_failed` agrees with the `Failed` just returned.
    pub(crate) fn mark_failed(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
        self.ring_all();
    }

    pub(crate) fn mark_ready(&self) {
        self.0.ready.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn ready(&self) -> usize {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Asks the business thread for a snapshot at its next command boundary.
    pub(crate) fn request_snapshot(&self) {
        self.0.snapshot_requested.store(true, Ordering::Relaxed);
    }

    /// Takes a pending snapshot request. A plain load first: the common case (no request)
    /// costs no read-modify-write.
    #[inline]
    pub(crate) fn take_snapshot_request(&self) -> bool {
        self.0.snapshot_requested.load(Ordering::Relaxed)
            && self.0.snapshot_requested.swap(false, Ordering::Relaxed)
    }

    /// S finished command `seq`: every account write it made is visible to whoever loads
    /// `seq` (or later) from here with `Acquire`.
    #[inline]
    pub(crate) fn set_s_done(&self, seq: u64) {
        self.0.s_done.store(seq as i64, Ordering::Release);
    }

    /// The last command S finished; `Acquire` pairs with [`Control::set_s_done`].
    #[inline]
    pub(crate) fn s_done(&self) -> i64 {
        self.0.s_done.load(Ordering::Acquire)
    }
}

/// Marks the pipeline failed if its thread unwinds, and in any case wakes every parked
/// thread as its thread ends (a finished stage closes its consumers' input; a failed one
/// must stop them).
#[derive(Debug)]
pub(crate) struct PanicGuard(pub(crate) Control);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0 .0.failed.store(true, Ordering::SeqCst);
        }
        self.0.ring_all();
    }
}
