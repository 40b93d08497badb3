//! State every pipeline thread shares: the failure flag, the start-up count, the snapshot
//! request, and S's done-sequence that paces R in the split layout.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

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
}

/// A handle on the shared control state (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Control(Arc<Inner>);

impl Control {
    pub(crate) fn new(s_done: i64) -> Control {
        Control(Arc::new(Inner {
            failed: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            snapshot_requested: AtomicBool::new(false),
            s_done: CachePadded::new(AtomicI64::new(s_done)),
        }))
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
        self.0.failed.store(true, Ordering::Relaxed);
        panic!("{CASCADE_MESSAGE}");
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

/// Marks the pipeline failed if its thread unwinds.
#[derive(Debug)]
pub(crate) struct PanicGuard(pub(crate) Control);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0 .0.failed.store(true, Ordering::Relaxed);
        }
    }
}
