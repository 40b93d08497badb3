//! The pre-toucher: a helper thread that keeps page faults and file-system calls off the
//! writer's hot path.
//!
//! # Why a thread, and what it does
//!
//! A fresh page of a shared file mapping costs a page fault on first write (allocate a page
//! cache page, zero it, reserve the file block, map it): ~1–2 µs on this class of machine, once
//! per 4 KiB, i.e. 15–30 ns per 96-byte record on average but a multi-microsecond stall on the
//! unlucky record. Rolling to a new segment costs `open` + `ftruncate` + `mmap` (and `munmap` of
//! the old one): tens of microseconds. The writer must do neither. Two ways were considered:
//!
//! 1. *Pre-fault each whole segment when it is created* (Aeron pre-allocates its term buffers).
//!    Simple, but the pre-faulted pages are dirtied at once; if the writer is slow, the kernel
//!    writes them back (zeros) before the writer gets there and write-protects them again to
//!    track the next write, so the faults come back exactly where they hurt — and the whole
//!    segment sits in the page cache from the start.
//! 2. *Touch ahead of the writer* (Chronicle Queue's pre-toucher): keep a window of
//!    [`Pretouch::Ahead::ahead_bytes`](crate::Pretouch) faulted in ahead of the writer's
//!    position, whatever its pace.
//!
//! This module does (2), plus the next segment: one helper thread that every `poll_interval`
//!
//! - reads the writer's position (one `Relaxed`-cost atomic the writer updates every 64 KiB),
//! - faults in the current segment up to `position + ahead_bytes` with `MADV_POPULATE_WRITE`,
//!   which fills the page tables writable *without touching the bytes* — so it cannot race with
//!   the writer's stores even where the ranges meet,
//! - keeps the next segment ready: created at full length, mapped, its first window faulted in,
//!   and handed over through a one-slot mailbox (an `AtomicPtr`, `Release` on the helper side,
//!   `Acquire` on the writer's), and
//! - unmaps segments the writer has left (it holds the last reference to them).
//!
//! The helper sleeps between rounds (`park_timeout`): it never busy-spins, so it needs no core
//! of its own and fits the fused layout of a 2-core box. If the writer reaches the end of a
//! segment before the helper has the next one ready (only when a whole segment is written faster
//! than one `poll_interval` plus a file creation), it wakes the helper and yields until the
//! segment arrives: a counted stall, never a wrong result.

use std::io;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::{AppendError, JournalError};
use crate::format::SEGMENT_HEADER_LEN;
use crate::segment::Segment;

/// Offsets are packed into the low 40 bits of the published position, the segment index's low
/// 24 bits above them (enough to tell the current segment from the next).
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
const INDEX_MASK: u64 = (1 << (64 - OFFSET_BITS)) - 1;
const _: () = assert!(crate::config::SEGMENT_LEN_BYTES_MAX <= 1 << OFFSET_BITS);

/// The writer publishes its position when its offset crosses a multiple of this.
pub(crate) const PUBLISH_GRANULE_BYTES: usize = 64 << 10;

/// Faulting-in is done in pieces of this size so a stop request is seen promptly.
const POPULATE_CHUNK_BYTES: usize = 4 << 20;

/// Pads a value to its own pair of cache lines (prefetchers pull lines in pairs), so the
/// writer's position word shares a line with nothing the helper writes.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CachePadded<T>(T);

#[derive(Debug)]
struct Shared {
    /// The writer's `(segment index, offset)`, packed. Written by the writer only.
    position: CachePadded<AtomicU64>,
    /// The next segment, ready for the writer: `Arc::into_raw`, or null.
    next: AtomicPtr<Segment>,
    /// Set by the writer's `Drop`: the helper cleans up and exits.
    stop: AtomicBool,
    /// Set by the helper when it gives up (with `error` filled in first).
    failed: AtomicBool,
    /// Set by the helper when its thread is about to exit, for whatever reason.
    exited: AtomicBool,
    /// The helper's error. Locked only on the failure path.
    error: Mutex<Option<JournalError>>,
}

pub(crate) fn pack_position(index: u64, offset: usize) -> u64 {
    debug_assert!(offset as u64 <= OFFSET_MASK);
    ((index & INDEX_MASK) << OFFSET_BITS) | offset as u64
}

fn unpack_position(word: u64) -> (u64, usize) {
    (word >> OFFSET_BITS, (word & OFFSET_MASK) as usize)
}

/// The writer's handle on the helper thread.
#[derive(Debug)]
pub(crate) struct Pretoucher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the helper needs to know.
pub(crate) struct PretouchPlan {
    pub(crate) dir: PathBuf,
    pub(crate) segment_len_bytes: u64,
    pub(crate) ahead_bytes: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) durable: bool,
}

impl Pretoucher {
    /// Starts the helper on `current` (the writer's segment, at `offset`).
    pub(crate) fn start(
        plan: PretouchPlan,
        current: Arc<Segment>,
        offset: usize,
    ) -> Result<Pretoucher, JournalError> {
        let shared = Arc::new(Shared {
            position: CachePadded(AtomicU64::new(pack_position(current.index, offset))),
            next: AtomicPtr::new(ptr::null_mut()),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        let helper_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("journal-pretouch".into())
            .spawn(move || helper(plan, helper_shared, current))
            .map_err(|e| JournalError::io("spawn pre-toucher", PathBuf::new(), e))?;
        Ok(Pretoucher {
            shared,
            thread: Some(thread),
        })
    }

    /// Publishes the writer's position. `Relaxed`: the helper only uses it as a hint of where
    /// to fault pages in; nothing it reads depends on what the writer wrote before.
    #[inline]
    pub(crate) fn publish(&self, index: u64, offset: usize) {
        self.shared
            .position
            .0
            .store(pack_position(index, offset), Ordering::Relaxed);
    }

    /// Takes the next segment, waiting (yielding) if the helper has not finished it. Returns an
    /// error if the helper failed. The loop is bounded by the helper's liveness: it either
    /// delivers, or sets `failed`/`exited`.
    pub(crate) fn take_next(&self, stalls: &mut u64) -> Result<Arc<Segment>, AppendError> {
        let mut waited = false;
        loop {
            // Acquire: pairs with the helper's Release store of the fully prepared segment, so
            // its file, mapping and faulted-in pages are all visible to us.
            let p = self.shared.next.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `Arc::into_raw` in the helper, and the swap moved that
                // one reference to us (the slot is null now), so it is reclaimed exactly once.
                return Ok(unsafe { Arc::from_raw(p) });
            }
            if self.shared.failed.load(Ordering::Acquire)
                || self.shared.exited.load(Ordering::Acquire)
            {
                let guard = self.shared.error.lock().unwrap_or_else(|e| e.into_inner());
                return Err(match &*guard {
                    Some(JournalError::Io { source, .. }) => AppendError::io(source),
                    _ => AppendError::Io {
                        kind: io::ErrorKind::Other,
                        os_error: None,
                    },
                });
            }
            if !waited {
                waited = true;
                *stalls += 1;
                if let Some(t) = &self.thread {
                    t.thread().unpark();
                }
            }
            thread::yield_now();
        }
    }
}

impl Drop for Pretoucher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A panic in the helper has already been reported by the panic hook; the writer is
            // being dropped, so there is nothing more to do with it.
            let _ = t.join();
        }
    }
}

/// Sets `exited` however the helper leaves (including by panic).
struct ExitFlag<'a>(&'a AtomicBool);

impl Drop for ExitFlag<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn helper(plan: PretouchPlan, shared: Arc<Shared>, current: Arc<Segment>) {
    let _exit = ExitFlag(&shared.exited);
    if let Err(e) = helper_loop(&plan, &shared, current) {
        *shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        shared.failed.store(true, Ordering::Release);
    }
    // Reclaim a prepared segment the writer never took, and remove its file: it holds nothing
    // (its header was never written), and a clean shutdown leaves no unused segment behind.
    let p = shared.next.swap(ptr::null_mut(), Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: as in `take_next`: the swap moved the slot's one reference to us.
        let unused = unsafe { Arc::from_raw(p) };
        let path = unused.path.clone();
        drop(unused);
        // Best effort: if it stays, the next open removes it as an unused segment.
        let _ = std::fs::remove_file(path);
    }
}

fn helper_loop(
    plan: &PretouchPlan,
    shared: &Shared,
    mut current: Arc<Segment>,
) -> Result<(), JournalError> {
    let mut touched_until = 0usize; // of `current`; the writer's open has faulted its window.
    let mut next: Option<(Arc<Segment>, usize)> = None; // our reference, and how far touched.
                                                        // The segment the writer left, kept to be recycled as the next one (its allocation and path
                                                        // buffer reused: no heap allocation per roll).
    let mut spare: Option<Arc<Segment>> = None;
    while !shared.stop.load(Ordering::Acquire) {
        let (index, offset) = unpack_position(shared.position.0.load(Ordering::Relaxed));
        // The writer moved on: the segment it left has its last reference here; it is unmapped
        // on this thread when it is recycled below.
        if let Some((n, n_touched)) = next.take() {
            if n.index & INDEX_MASK == index {
                spare = Some(std::mem::replace(&mut current, n));
                touched_until = n_touched;
            } else {
                next = Some((n, n_touched));
            }
        }
        if current.index & INDEX_MASK == index {
            let target = (offset + plan.ahead_bytes).min(current.len());
            touched_until = touched_until.max(offset);
            while touched_until < target && !shared.stop.load(Ordering::Relaxed) {
                let end = (touched_until + POPULATE_CHUNK_BYTES).min(target);
                populate(&current, touched_until, end)?;
                touched_until = end;
            }
        }
        if next.is_none() {
            let index = current.index + 1;
            // Recycle the left segment when this is its last reference (the writer dropped its
            // own before publishing the position that moved us on); otherwise a new one.
            let recycled = spare
                .take()
                .and_then(|mut s| Arc::get_mut(&mut s).is_some().then_some(s));
            let segment = match recycled {
                Some(mut s) => {
                    Arc::get_mut(&mut s).expect("checked unique").recreate(
                        &plan.dir,
                        index,
                        plan.segment_len_bytes,
                        plan.durable,
                    )?;
                    s
                }
                None => Arc::new(Segment::create(
                    &plan.dir,
                    index,
                    plan.segment_len_bytes,
                    plan.durable,
                )?),
            };
            let window = (SEGMENT_HEADER_LEN + plan.ahead_bytes).min(segment.len());
            prefault_fresh(&segment, window)?;
            // Release: everything done to prepare the segment happens-before the writer's
            // Acquire swap that takes it.
            let raw = Arc::into_raw(Arc::clone(&segment)).cast_mut();
            let previous = shared.next.swap(raw, Ordering::Release);
            assert!(previous.is_null(), "pre-toucher mailbox overwritten");
            next = Some((segment, window));
        }
        thread::park_timeout(plan.poll_interval);
    }
    Ok(())
}

/// Faults in `from..to` of a segment the writer may be writing.
fn populate(segment: &Segment, from: usize, to: usize) -> Result<(), JournalError> {
    match segment.map.populate_write(from, to - from) {
        Ok(()) => Ok(()),
        // Kernels before 5.14 lack MADV_POPULATE_WRITE: the live segment is then not touched
        // (the next one still is, below); nothing is wrong, it is just slower.
        Err(e) if e.raw_os_error() == Some(22) => Ok(()),
        Err(e) => Err(JournalError::io("pre-touch", &segment.path, e)),
    }
}

/// Faults in `0..to` of a segment no one has seen yet.
fn prefault_fresh(segment: &Segment, to: usize) -> Result<(), JournalError> {
    match segment.map.populate_write(0, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(22) => {
            // SAFETY: the segment was just created by this thread and not yet handed over: no
            // other thread of this process can reach it, and it is all zeros.
            unsafe { segment.map.touch_pages_zero(0, to) };
            Ok(())
        }
        Err(e) => Err(JournalError::io("pre-touch", &segment.path, e)),
    }
}
