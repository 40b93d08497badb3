//! A counting global allocator: every heap operation is passed to the system allocator
//! unchanged and, while counting is on, counted.
//!
//! A test binary declares it once:
//!
//! ```ignore
//! use ringbook_testkit::alloc::CountingAlloc;
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc::new();
//! ```
//!
//! Two independent ways to count, both available at once:
//!
//! - **One thread** ([`CountingAlloc::start_this_thread`] / [`CountingAlloc::stop_this_thread`],
//!   or [`CountingAlloc::count_this_thread`]): only the operations the calling thread makes,
//!   so the test harness's other threads cannot disturb the figure.
//! - **Every thread** ([`CountingAlloc::start`] / [`CountingAlloc::stop`]): the operations of
//!   every thread of the process, for code that runs threads of its own (the pipeline, the
//!   server, the journal's pre-toucher). [`CountingAlloc::ignoring_main_thread`] leaves the
//!   process's main thread out (libtest runs each test on a thread of its own and prints
//!   progress from the main one). A binary that counts every thread should hold one test.
//!
//! Allocations (`alloc`, `alloc_zeroed`, `realloc`) and frees (`dealloc`) are counted apart
//! ([`Counts`]). With [`CountingAlloc::set_tracing`] on, the first [`TRACE_MAX`] operations
//! counted on every thread in a window are also recorded with a backtrace
//! ([`CountingAlloc::take_traces`]); what a thread allocates while capturing one is neither
//! counted nor traced.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// At most this many backtraces per every-thread window.
pub const TRACE_MAX: usize = 12;

/// Heap operations counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `alloc`, `alloc_zeroed` and `realloc` calls.
    pub allocs: u64,
    /// `dealloc` calls.
    pub frees: u64,
}

impl Counts {
    /// Every heap operation: allocations and frees.
    pub fn total(self) -> u64 {
        self.allocs + self.frees
    }
}

thread_local! {
    /// Whether this thread is being measured on its own.
    static THIS_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Operations this thread made while measured.
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static THREAD_FREES: Cell<u64> = const { Cell::new(0) };
    /// Set while this thread captures a backtrace: its own operations are neither counted nor
    /// traced (no recursion).
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// The counting allocator; see the [module docs](self).
#[derive(Debug)]
pub struct CountingAlloc {
    /// Counting every thread.
    all: AtomicBool,
    /// Every-thread counts. Relaxed: read after the measured work has been joined or fenced by
    /// the caller's own synchronisation.
    allocs: AtomicU64,
    frees: AtomicU64,
    /// Leave the process's main thread out of the every-thread counts.
    skip_main: bool,
    /// Capture backtraces of counted operations.
    trace: AtomicBool,
    /// Counted operations considered for tracing in this window.
    traced: AtomicUsize,
    traces: Mutex<Vec<String>>,
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl CountingAlloc {
    /// Counting off, no tracing, every thread included.
    pub const fn new() -> CountingAlloc {
        CountingAlloc {
            all: AtomicBool::new(false),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            skip_main: false,
            trace: AtomicBool::new(false),
            traced: AtomicUsize::new(0),
            traces: Mutex::new(Vec::new()),
        }
    }

    /// The every-thread counts leave out the process's main thread (Linux: the thread whose
    /// id is the process id; elsewhere nothing is left out).
    pub const fn ignoring_main_thread(mut self) -> CountingAlloc {
        self.skip_main = true;
        self
    }

    /// Starts counting every thread, from zero (the trace budget too).
    pub fn start(&self) {
        self.traced.store(0, Ordering::SeqCst);
        self.allocs.store(0, Ordering::SeqCst);
        self.frees.store(0, Ordering::SeqCst);
        self.all.store(true, Ordering::SeqCst);
    }

    /// Stops counting every thread; returns what was counted since [`start`](Self::start)
    /// and resets the counts to zero.
    pub fn stop(&self) -> Counts {
        self.all.store(false, Ordering::SeqCst);
        Counts {
            allocs: self.allocs.swap(0, Ordering::SeqCst),
            frees: self.frees.swap(0, Ordering::SeqCst),
        }
    }

    /// Starts counting the calling thread's operations, from zero.
    pub fn start_this_thread(&self) {
        THREAD_ALLOCS.with(|n| n.set(0));
        THREAD_FREES.with(|n| n.set(0));
        THIS_THREAD.with(|c| c.set(true));
    }

    /// Stops counting the calling thread; returns what it did since
    /// [`start_this_thread`](Self::start_this_thread).
    pub fn stop_this_thread(&self) -> Counts {
        THIS_THREAD.with(|c| c.set(false));
        Counts {
            allocs: THREAD_ALLOCS.with(Cell::get),
            frees: THREAD_FREES.with(Cell::get),
        }
    }

    /// Runs `f`, counting the calling thread's operations while it runs.
    pub fn count_this_thread<T>(&self, f: impl FnOnce() -> T) -> (T, Counts) {
        self.start_this_thread();
        let result = f();
        (result, self.stop_this_thread())
    }

    /// Whether to capture a backtrace of the first [`TRACE_MAX`] operations counted on every
    /// thread in each window (set it before counting starts).
    pub fn set_tracing(&self, on: bool) {
        self.trace.store(on, Ordering::SeqCst);
    }

    /// The backtraces captured so far (emptied).
    pub fn take_traces(&self) -> Vec<String> {
        std::mem::take(&mut *self.traces.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note(&self, free: bool, what: &'static str, bytes: usize) {
        // `try_with`: the thread-locals may be gone while a thread shuts down.
        if IN_TRACE.try_with(Cell::get).unwrap_or(false) {
            return;
        }
        if THIS_THREAD.try_with(Cell::get).unwrap_or(false) {
            let counter = if free { &THREAD_FREES } else { &THREAD_ALLOCS };
            let _ = counter.try_with(|n| n.set(n.get() + 1));
        }
        if !self.all.load(Ordering::Relaxed) || (self.skip_main && on_main_thread()) {
            return;
        }
        let counter = if free { &self.frees } else { &self.allocs };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.trace.load(Ordering::Relaxed)
            && self.traced.fetch_add(1, Ordering::Relaxed) < TRACE_MAX
        {
            self.capture(what, bytes);
        }
    }

    #[cold]
    fn capture(&self, what: &'static str, bytes: usize) {
        if IN_TRACE.try_with(|g| g.replace(true)).unwrap_or(true) {
            return;
        }
        let thread = std::thread::current();
        let text = format!(
            "{what} of {bytes} bytes on thread {:?}:\n{}",
            thread.name().unwrap_or("?"),
            Backtrace::force_capture()
        );
        self.traces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(text);
        let _ = IN_TRACE.try_with(|g| g.set(false));
    }
}

/// Whether the calling thread is the process's main thread. Linux: its id is the process id;
/// elsewhere always false.
#[cfg(target_os = "linux")]
pub fn on_main_thread() -> bool {
    extern "C" {
        fn gettid() -> i32;
    }
    // SAFETY: `gettid` takes nothing, cannot fail and touches no memory of ours.
    let tid = unsafe { gettid() };
    tid as u32 == std::process::id()
}

#[cfg(not(target_os = "linux"))]
pub fn on_main_thread() -> bool {
    false
}

// SAFETY: defers every operation to the system allocator unchanged; counting has no effect on
// the memory returned, and `note` allocates nothing except while capturing a backtrace, which
// it guards against re-entry.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note(false, "alloc", layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.note(true, "dealloc", layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note(false, "alloc_zeroed", layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(false, "realloc", new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
