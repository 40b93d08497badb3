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
//! This module does (2), plus the next segment: one helper thread that, at each look,
//!
//! - reads the writer's position (one `Relaxed`-cost atomic the writer updates every 64 KiB),
//! - once an eighth of the window is used, faults the current segment in up to
//!   `position + ahead_bytes` again with `MADV_POPULATE_WRITE`,
//!   which fills the page tables writable *without touching the bytes* — so it cannot race with
//!   the writer's stores even where the ranges meet,
//! - keeps the next segment ready: created at full length, mapped, its first window faulted in,
//!   and handed over through a one-slot mailbox (an `AtomicPtr`, `Release` on the helper side,
//!   `Acquire` on the writer's), and
//! - unmaps segments the writer has left (it holds the last reference to them), releasing their
//!   pages from the mapping first.
//!
//! **In steps.** All of that is done in steps ([`STEP_BYTES`], 64 KiB, faulted in;
//! [`RELEASE_STEP_BYTES`], 2 MiB, released), in turns of [`STEP_BUDGET`] (100 µs, checked after
//! each pass of a live-window step and a preparation step, so up to ~250 µs), with a sleep
//! (`park_timeout`) of `poll_interval` after every turn that worked — or turns of
//! [`URGENT_STEP_BUDGET`] (500 µs) and sleeps of [`URGENT_POLL_INTERVAL`] while the writer is
//! close to what is not done yet (less than half the window ahead of it, or past the middle of
//! its segment with no next one handed over). It never busy-spins and never holds a core for
//! long, so it needs no core of its own and fits the fused layout of a 2-core box, where it runs
//! by taking a core from a spinning stage: one 16 MiB `MADV_POPULATE_WRITE` of a fresh segment
//! in one go took 18–33 ms here, and the stage it displaced waited that long
//! (docs/benchmarks.md, "A pre-toucher that works in steps").
//!
//! **Few looks.** Every look is a wake-up, and on a 2-core box a context switch that a spinning
//! stage pays for. A turn that finds nothing to do doubles the sleep after it, up to
//! [`IDLE_POLL_MAX`] (5 ms), and the live window is refilled only once an eighth of it is used,
//! so the work comes in a few bursts per window. The writer wakes the helper when it rolls, so
//! the next segment's preparation starts at once. Looking every 200 µs whatever happened was
//! ~3 500 wake-ups a second, in an idle server too (docs/benchmarks.md, "Fewer looks").
//! Segments are mapped with readahead off, so a step faults what it names and no more.
//!
//! One step is not bounded by size: with a durability policy, creating a segment syncs the file
//! and the directory.
//!
//! If the writer reaches the end of a segment before the helper has the next one ready, it flags
//! that it waits, wakes the helper and yields until the segment arrives: the helper skips what is
//! left of releasing the old mapping and hands the next segment over in the step that creates it
//! (the writer then takes the faults of its first window itself). A
//! counted stall, never a wrong result.

use std::io;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

/// The most the helper faults in in one step (~70 µs of page faults here).
const STEP_BYTES: usize = 64 << 10;

/// The most the helper releases of a left segment's mapping in one step. Larger than
/// [`STEP_BYTES`]: dropping mapped pages costs a fraction of faulting them in, but every call
/// interrupts the other cores running this process to flush their TLBs (an inter-processor
/// interrupt, costly in a VM), so fewer calls are better.
const RELEASE_STEP_BYTES: usize = 2 << 20;

/// How long the helper works before it sleeps again while the writer is far from what is not
/// done yet (checked after each pass, which may do two steps): with the default
/// `poll_interval` and the timer's slack, a third to a half of a core at most.
const STEP_BUDGET: Duration = Duration::from_micros(100);

/// How long the helper works before it sleeps again while the writer is close to what is not
/// done yet: longer turns, fewer of the context switches that each turn costs a spinning stage.
/// With [`URGENT_POLL_INTERVAL`] and the timer's slack that is most of a core (~85–90 %), for as
/// long as the writer stays close.
const URGENT_STEP_BUDGET: Duration = Duration::from_micros(500);

/// The sleep between budgets while the writer may soon need what is not done yet. A sleep, not
/// `yield_now`: a yield gives the core back only if the scheduler picks another task, and it
/// kept picking the helper (which had slept, so its claim was the larger) for ~18 ms at a time.
const URGENT_POLL_INTERVAL: Duration = Duration::from_micros(20);

/// The longest sleep of a helper with nothing to do. Each idle look costs a spinning stage a
/// context switch on a 2-core box, so the sleep doubles from `poll_interval` up to this while
/// turns find nothing; a turn with any work sets it back. Safe at any writer pace that matters: a
/// writer at 1 GB/s takes 5 MB of a 16 MiB window in one such sleep, and the helper refills at
/// an eighth used.
const IDLE_POLL_MAX: Duration = Duration::from_millis(5);

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
    /// Set by the writer while it waits for the next segment: the helper hands it over as soon
    /// as it exists (the writer faults in the rest of its window itself).
    waiting: AtomicBool,
    /// Set by the writer's `Drop`: the helper cleans up and exits.
    stop: AtomicBool,
    /// Set by the helper when it gives up (with `error` filled in first).
    failed: AtomicBool,
    /// Set by the helper when its thread is about to exit, for whatever reason.
    exited: AtomicBool,
    /// The helper's error. Locked only on the failure path.
    error: Mutex<Option<JournalError>>,
}

impl Shared {
    /// With the writer at the packed `position`, nothing handed over, nothing flagged.
    fn new(position: u64) -> Shared {
        Shared {
            position: CachePadded(AtomicU64::new(position)),
            next: AtomicPtr::new(ptr::null_mut()),
            waiting: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }
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
        let shared = Arc::new(Shared::new(pack_position(current.index, offset)));
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

    /// Publishes the writer's position. `Release`, paired with the helper's `Acquire` load: a
    /// helper that sees the writer in a new segment also sees the writer's `waiting` cleared when
    /// it took that segment (otherwise, on a weakly ordered CPU, it could hand the following
    /// segment over in a hurry that is over). A plain store on x86, once every 64 KiB.
    #[inline]
    pub(crate) fn publish(&self, index: u64, offset: usize) {
        self.shared
            .position
            .0
            .store(pack_position(index, offset), Ordering::Release);
    }

    /// Wakes the helper: the writer has just moved to the next segment, so the one it left can
    /// be released and the following one prepared now rather than after an idle sleep (up to
    /// [`IDLE_POLL_MAX`]). Once per segment, on the roll.
    pub(crate) fn nudge(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
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
                if waited {
                    self.shared.waiting.store(false, Ordering::Relaxed);
                }
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
                self.shared.waiting.store(true, Ordering::Relaxed);
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
    let mut next = None;
    if let Err(e) = helper_loop(&plan, &shared, current, &mut next) {
        *shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        shared.failed.store(true, Ordering::Release);
    }
    // Reclaim a prepared segment the writer never took, and remove its file: it holds nothing
    // (its header was never written), and a clean shutdown leaves no unused segment behind.
    let p = shared.next.swap(ptr::null_mut(), Ordering::Acquire);
    let reclaimed = !p.is_null();
    if reclaimed {
        // SAFETY: as in `take_next`: the swap moved the slot's one reference to us.
        drop(unsafe { Arc::from_raw(p) });
    }
    discard_unused(next, reclaimed);
}

/// Removes the file of the next segment if the writer never took it: still being prepared, or
/// handed over and found back in the mailbox (`reclaimed`). A segment the writer took is the
/// writer's, header written or not (it takes it before sealing the old one and writes the
/// header after): never removed here.
fn discard_unused(next: Option<Next>, reclaimed: bool) {
    if let Some(n) = next {
        if !n.handed_over || reclaimed {
            let path = n.segment.path.clone();
            drop(n);
            // Best effort: if it stays, the next open removes it as an unused segment.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The next segment, while the helper prepares it and after it is handed over.
struct Next {
    segment: Arc<Segment>,
    /// Faulted in from the start up to here.
    touched: usize,
    /// In the mailbox (or taken by the writer).
    handed_over: bool,
}

fn helper_loop(
    plan: &PretouchPlan,
    shared: &Shared,
    mut current: Arc<Segment>,
    next: &mut Option<Next>,
) -> Result<(), JournalError> {
    // How far `current` is faulted in (the writer's open has faulted its first window).
    let mut live_window = LiveWindow::default();
    // The sleep after a turn that found nothing to do.
    let mut idle_sleep = plan.poll_interval;
    // The segment the writer left, and how far its mapping is released: it is released a step
    // at a time, then recycled as the next one (its allocation and path buffer reused: no heap
    // allocation per roll).
    let mut spare: Option<(Arc<Segment>, usize)> = None;
    while !shared.stop.load(Ordering::Acquire) {
        // Work in steps until the turn's budget is spent or nothing is left, then sleep: the
        // helper never holds a core for more than about one budget at a time.
        let started = Instant::now();
        // Whether any pass of this turn did something: such a turn is followed by the short
        // sleep and resets the back-off, even if its last pass found nothing left.
        let mut turn_worked = false;
        let urgent = loop {
            let (index, offset) = unpack_position(shared.position.0.load(Ordering::Acquire));
            // The writer moved on to the segment we handed over: the one it left has its last
            // reference here.
            if next
                .as_ref()
                .is_some_and(|n| n.handed_over && n.segment.index & INDEX_MASK == index)
            {
                let n = next.take().expect("checked");
                spare = Some((std::mem::replace(&mut current, n.segment), 0));
                live_window = LiveWindow {
                    touched: n.touched,
                    filling: false,
                };
            }
            // One step of each: the live window, and the next segment's preparation (the live
            // window alone has work at almost every look and would starve the preparation).
            let live = top_up(plan, (index, offset), &current, &mut live_window)?;
            let prep = prepare(plan, shared, (index, offset), &current, next, &mut spare)?;
            let urgent = live.urgent || prep.urgent;
            let budget = if urgent {
                URGENT_STEP_BUDGET
            } else {
                STEP_BUDGET
            };
            let worked = live.worked || prep.worked;
            turn_worked |= worked;
            if !worked || started.elapsed() >= budget || shared.stop.load(Ordering::Relaxed) {
                break urgent;
            }
        };
        let sleep;
        (sleep, idle_sleep) =
            sleeps_after_turn(plan.poll_interval, idle_sleep, turn_worked, urgent);
        thread::park_timeout(sleep);
    }
    Ok(())
}

/// The sleep after a turn, and the one to take after the next idle turn: a turn that worked
/// (in any of its passes) is followed by `poll_interval`, an urgent one by
/// [`URGENT_POLL_INTERVAL`], and both set the back-off back; an idle turn sleeps `idle_sleep`
/// and doubles it.
fn sleeps_after_turn(
    poll_interval: Duration,
    idle_sleep: Duration,
    turn_worked: bool,
    urgent: bool,
) -> (Duration, Duration) {
    let sleep = if urgent {
        URGENT_POLL_INTERVAL
    } else if turn_worked {
        poll_interval
    } else {
        idle_sleep
    };
    (
        sleep,
        next_idle_sleep(poll_interval, idle_sleep, turn_worked || urgent),
    )
}

/// The sleep after the next idle turn: `poll_interval` again once a turn worked, else twice the
/// last one, up to [`IDLE_POLL_MAX`] (or `poll_interval` if that is longer).
fn next_idle_sleep(poll_interval: Duration, last: Duration, worked: bool) -> Duration {
    if worked {
        poll_interval
    } else {
        last.saturating_mul(2).min(IDLE_POLL_MAX.max(poll_interval))
    }
}

/// How far the writer's segment is faulted in, and whether a refill is under way.
#[derive(Clone, Copy, Debug, Default)]
struct LiveWindow {
    /// Faulted in from the start up to here.
    touched: usize,
    /// Refilling: set when an eighth of the window is used (or less than half is left, or the
    /// window reaches the end of the segment), cleared when the window is full again.
    filling: bool,
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default)]
struct Step {
    /// Something was done (there may be more).
    worked: bool,
    /// The writer may soon need what is not done yet: sleep only briefly.
    urgent: bool,
}

/// Faults in at most [`STEP_BYTES`] more of the live window (`ahead_bytes` ahead of the
/// writer) while it refills. A refill starts once an eighth of the window is used (at least
/// one step), so that the helper works in a few bursts per window instead of one step per
/// [`PUBLISH_GRANULE_BYTES`] of writing, each a wake-up that takes a core from a spinning stage.
/// Urgent while less than half the window is left ahead of the writer.
fn top_up(
    plan: &PretouchPlan,
    (index, offset): (u64, usize),
    current: &Segment,
    window: &mut LiveWindow,
) -> Result<Step, JournalError> {
    if current.index & INDEX_MASK != index {
        return Ok(Step::default());
    }
    let target = offset.saturating_add(plan.ahead_bytes).min(current.len());
    window.touched = window.touched.max(offset);
    let half = offset
        .saturating_add(plan.ahead_bytes / 2)
        .min(current.len());
    let refill_at = (plan.ahead_bytes / 8).max(STEP_BYTES);
    if target.saturating_sub(window.touched) >= refill_at
        || window.touched < half
        || target == current.len()
    {
        window.filling = true;
    }
    let worked = window.filling && window.touched < target;
    if worked {
        let end = (window.touched + STEP_BYTES).min(target);
        populate(current, window.touched, end)?;
        window.touched = end;
    }
    if window.touched >= target {
        window.filling = false;
    }
    Ok(Step {
        worked,
        urgent: window.touched < half,
    })
}

/// Does one step of the next segment's preparation: release [`RELEASE_STEP_BYTES`] of the left
/// segment's mapping, create (or recycle) the next one, fault in [`STEP_BYTES`] of its first
/// window, or hand it over. Urgent while the writer is past the middle of its segment and the
/// next is not handed over yet.
fn prepare(
    plan: &PretouchPlan,
    shared: &Shared,
    (index, offset): (u64, usize),
    current: &Segment,
    next: &mut Option<Next>,
    spare: &mut Option<(Arc<Segment>, usize)>,
) -> Result<Step, JournalError> {
    if next.as_ref().is_some_and(|n| n.handed_over) {
        return Ok(Step::default());
    }
    // The writer waits for it: hand it over as soon as it exists.
    let hurry = shared.waiting.load(Ordering::Relaxed);
    let urgent = hurry || (current.index & INDEX_MASK == index && offset > current.len() / 2);
    let done = Step {
        worked: true,
        urgent,
    };
    // The left segment's pages, released a step at a time before it is recycled (not for a
    // writer that waits: the recycling's `munmap` then drops what is left in one go).
    if let Some((left, released)) = spare.as_mut() {
        if *released < left.len() && !hurry {
            let end = (*released + RELEASE_STEP_BYTES).min(left.len());
            release(left, *released, end);
            *released = end;
            return Ok(done);
        }
    }
    // The next segment: created (or the left one recycled), then its first window faulted in
    // a step at a time, then handed over (for a writer that waits, in the step that creates it).
    if next.is_none() {
        let index = current.index + 1;
        // Recycle the left segment when this is its last reference (the writer dropped its own
        // before publishing the position that moved us on); otherwise a new one.
        let recycled = spare
            .take()
            .and_then(|(mut s, _)| Arc::get_mut(&mut s).is_some().then_some(s));
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
        *next = Some(Next {
            segment,
            touched: 0,
            handed_over: false,
        });
        if !hurry {
            return Ok(done);
        }
    }
    let n = next.as_mut().expect("created above");
    let window = SEGMENT_HEADER_LEN
        .saturating_add(plan.ahead_bytes)
        .min(n.segment.len());
    if n.touched < window && !hurry {
        let end = (n.touched + STEP_BYTES).min(window);
        prefault_fresh(&n.segment, n.touched, end)?;
        n.touched = end;
    }
    if n.touched >= window || hurry {
        // Release: everything done to prepare the segment happens-before the writer's Acquire
        // swap that takes it.
        let raw = Arc::into_raw(Arc::clone(&n.segment)).cast_mut();
        let previous = shared.next.swap(raw, Ordering::Release);
        assert!(previous.is_null(), "pre-toucher mailbox overwritten");
        n.handed_over = true;
    }
    Ok(Step {
        worked: true,
        urgent: urgent && !n.handed_over,
    })
}

/// Drops a left segment's mapping of `from..to` (its pages stay in the page cache). Best
/// effort: it only spares the final `munmap` its work, and `MADV_DONTNEED` refuses locked pages
/// (`EINVAL` under `mlockall`), where the `munmap` then does it all.
fn release(segment: &Segment, from: usize, to: usize) {
    let _ = segment.map.release(from, to - from);
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

/// Faults in `from..to` of a segment no one has seen yet.
fn prefault_fresh(segment: &Segment, from: usize, to: usize) -> Result<(), JournalError> {
    match segment.map.populate_write(from, to - from) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(22) => {
            // SAFETY: the segment was just created by this thread and not yet handed over: no
            // other thread of this process can reach it, and it is all zeros.
            unsafe { segment.map.touch_pages_zero(from, to - from) };
            Ok(())
        }
        Err(e) => Err(JournalError::io("pre-touch", &segment.path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 4 << 20;
    const AHEAD: usize = 256 << 10;

    fn plan(dir: &std::path::Path) -> PretouchPlan {
        PretouchPlan {
            dir: dir.to_path_buf(),
            segment_len_bytes: SEGMENT,
            ahead_bytes: AHEAD,
            poll_interval: Duration::from_micros(200),
            durable: false,
        }
    }

    fn shared() -> Shared {
        Shared::new(0)
    }

    /// The helper's spare: a left segment and how much of its mapping is released.
    type Spare = Option<(Arc<Segment>, usize)>;

    /// The writer's segment 1, and the segment 0 it left (all of it faulted in, as written) as
    /// the helper's spare, nothing released yet, with its address to recognise it once
    /// recycled.
    fn writer_in_segment_1_after_segment_0(
        dir: &std::path::Path,
    ) -> (Segment, Spare, *const Segment) {
        let current = Segment::create(dir, 1, SEGMENT, false).unwrap();
        let left = Arc::new(Segment::create(dir, 0, SEGMENT, false).unwrap());
        left.map.populate_write(0, SEGMENT as usize).unwrap();
        let left_ptr = Arc::as_ptr(&left);
        (current, Some((left, 0)), left_ptr)
    }

    /// The left segment is released, the next created (recycling the left one's allocation),
    /// its first window faulted in and the segment handed over, each call doing one bounded
    /// step; urgent only once the writer is past the middle of its segment.
    #[test]
    fn the_next_segment_is_prepared_a_step_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, shared) = (plan(dir.path()), shared());
        let (current, mut spare, left_ptr) = writer_in_segment_1_after_segment_0(dir.path());
        let mut next: Option<Next> = None;
        let early = (1, SEGMENT_HEADER_LEN);
        let (mut releases, mut creates, mut prefaults) = (0, 0, 0);
        loop {
            let before = (
                spare.as_ref().map(|s| s.1),
                next.as_ref().map(|n| n.touched),
            );
            let step = prepare(&plan, &shared, early, &current, &mut next, &mut spare).unwrap();
            if !step.worked {
                break;
            }
            assert!(!step.urgent, "the writer is early in its segment");
            match (
                before,
                (
                    spare.as_ref().map(|s| s.1),
                    next.as_ref().map(|n| n.touched),
                ),
            ) {
                ((Some(a), None), (Some(b), None)) => {
                    assert!(b > a && b - a <= RELEASE_STEP_BYTES);
                    releases += 1;
                }
                ((Some(a), None), (None, Some(0))) => {
                    assert_eq!(a, SEGMENT as usize, "recycled only once released whole");
                    creates += 1;
                }
                ((None, Some(a)), (None, Some(b))) => {
                    assert!(b > a && b - a <= STEP_BYTES);
                    prefaults += 1;
                }
                other => panic!("unexpected step {other:?}"),
            }
            let handed = !shared.next.load(Ordering::Acquire).is_null();
            assert_eq!(handed, next.as_ref().is_some_and(|n| n.handed_over));
            assert_eq!(
                handed,
                next.as_ref()
                    .is_some_and(|n| n.touched >= SEGMENT_HEADER_LEN + AHEAD)
            );
        }
        assert_eq!(releases, (SEGMENT as usize).div_ceil(RELEASE_STEP_BYTES));
        assert_eq!(creates, 1);
        assert_eq!(prefaults, (SEGMENT_HEADER_LEN + AHEAD).div_ceil(STEP_BYTES));
        let raw = shared.next.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: the swap moved the mailbox's one reference to us.
        let handed = unsafe { Arc::from_raw(raw) };
        assert_eq!(handed.index, 2);
        assert_eq!(
            Arc::as_ptr(&handed),
            left_ptr,
            "the left segment is recycled"
        );
        assert!(matches!(
            handed.header(),
            Err(crate::format::HeaderError::Unwritten)
        ));

        // Past the middle with nothing handed over: urgent.
        std::fs::remove_file(&handed.path).unwrap();
        let mut spare = None;
        let mut next = None;
        let late = (1, SEGMENT as usize / 2 + 1);
        let step = prepare(&plan, &shared, late, &current, &mut next, &mut spare).unwrap();
        assert!(step.worked && step.urgent);
    }

    /// A writer waiting for the next segment gets it in one step: what is left of releasing the
    /// old mapping is skipped, and the recycled segment is handed over as it is created, its
    /// window not faulted in (the writer takes those faults itself).
    #[test]
    fn a_waiting_writer_gets_the_next_segment_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, shared) = (plan(dir.path()), shared());
        let (current, mut spare, left_ptr) = writer_in_segment_1_after_segment_0(dir.path());
        let mut next = None;
        shared.waiting.store(true, Ordering::Relaxed);
        let at_end = (1, SEGMENT as usize - 64);
        let step = prepare(&plan, &shared, at_end, &current, &mut next, &mut spare).unwrap();
        assert!(step.worked && !step.urgent);
        assert!(spare.is_none(), "recycled");
        let n = next.as_ref().unwrap();
        assert!(n.handed_over && n.touched == 0);
        let raw = shared.next.swap(ptr::null_mut(), Ordering::Acquire);
        assert_eq!(
            raw.cast_const(),
            left_ptr,
            "the left segment, recycled, in the mailbox"
        );
        // SAFETY: the swap moved the mailbox's one reference to us.
        let handed = unsafe { Arc::from_raw(raw) };
        assert_eq!(handed.index, 2);
        // Nothing more to do until the writer moves there.
        let step = prepare(&plan, &shared, at_end, &current, &mut next, &mut spare).unwrap();
        assert!(!step.worked && !step.urgent);
    }

    /// At exit the helper removes the next segment's file only if the writer never took it: a
    /// segment the writer took (handed over, not back in the mailbox) is the writer's even
    /// before its header is written.
    #[test]
    fn only_a_segment_the_writer_never_took_is_removed_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        for (index, handed_over, reclaimed, removed) in [
            (2, false, false, true),
            (3, true, true, true),
            (4, true, false, false),
        ] {
            let segment = Arc::new(Segment::create(dir.path(), index, SEGMENT, false).unwrap());
            let path = segment.path.clone();
            let next = Next {
                segment,
                touched: 0,
                handed_over,
            };
            discard_unused(Some(next), reclaimed);
            assert_eq!(
                !path.exists(),
                removed,
                "{index}: {handed_over} {reclaimed}"
            );
        }
    }

    /// Calls `top_up` until it finds nothing to do; returns whether each working call was
    /// urgent, checking that each grew the window by at most `STEP_BYTES`.
    fn top_up_until_idle(
        plan: &PretouchPlan,
        offset: usize,
        current: &Segment,
        window: &mut LiveWindow,
    ) -> Vec<bool> {
        let mut urgent = Vec::new();
        loop {
            let before = window.touched;
            let step = top_up(plan, (1, offset), current, window).unwrap();
            if !step.worked {
                assert!(!step.urgent && !window.filling);
                return urgent;
            }
            assert!(window.touched - before.max(offset) <= STEP_BYTES);
            urgent.push(step.urgent);
        }
    }

    /// The live window grows by at most `STEP_BYTES` a call, urgently while less than half of
    /// it is ahead of the writer.
    #[test]
    fn the_live_window_grows_a_step_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path());
        let current = Segment::create(dir.path(), 1, SEGMENT, false).unwrap();
        let offset = 4096;
        let mut window = LiveWindow::default();
        let urgent = top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(window.touched, offset + AHEAD);
        let steps = AHEAD / STEP_BYTES;
        let urgent_steps = (AHEAD / 2).div_ceil(STEP_BYTES) - 1;
        assert_eq!(urgent.len(), steps);
        assert!(urgent[..urgent_steps].iter().all(|&u| u));
        assert!(urgent[urgent_steps..].iter().all(|&u| !u));
        // Another segment's position: nothing to do here.
        let step = top_up(&plan, (2, offset), &current, &mut window).unwrap();
        assert!(!step.worked && !step.urgent);
    }

    /// A plan with a live window of `ahead_bytes`, and the writer's segment 1.
    fn window_of(dir: &std::path::Path, ahead_bytes: usize) -> (PretouchPlan, Segment) {
        let plan = PretouchPlan {
            ahead_bytes,
            ..plan(dir)
        };
        (plan, Segment::create(dir, 1, SEGMENT, false).unwrap())
    }

    /// A full window is refilled only once an eighth of it (at least one step) is used, then
    /// all the way.
    #[test]
    fn the_live_window_is_refilled_once_an_eighth_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, current) = window_of(dir.path(), 1 << 20);
        let mut window = LiveWindow::default();
        let mut offset = 4096;
        top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(window.touched, offset + (1 << 20));
        // Less than an eighth used: nothing to do.
        offset += (1 << 17) - 4096;
        assert!(top_up_until_idle(&plan, offset, &current, &mut window).is_empty());
        // An eighth: refilled to the full window, none of it urgent.
        offset += 4096;
        let urgent = top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(urgent, vec![false; (1 << 17) / STEP_BYTES]);
        assert_eq!(window.touched, offset + (1 << 20));
    }

    /// A window that reaches the end of the segment is topped up to the end whatever is left,
    /// less than an eighth included.
    #[test]
    fn a_window_at_the_end_of_the_segment_is_topped_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, current) = window_of(dir.path(), 1 << 20);
        let end = SEGMENT as usize;
        let mut offset = end - (1 << 20) - 4096;
        let mut window = LiveWindow::default();
        top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(window.touched, end - 4096);
        // 4 KiB used, far less than an eighth, but the window now ends where the segment does.
        offset += 4096;
        assert_eq!(
            top_up_until_idle(&plan, offset, &current, &mut window),
            [false]
        );
        assert_eq!(window.touched, end);
    }

    /// A window smaller than two steps (here one) refills once less than half of it is left
    /// ahead of the writer, though less than its refill threshold (one step) is used.
    #[test]
    fn a_small_window_refills_at_half() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, current) = window_of(dir.path(), STEP_BYTES);
        let mut offset = 4096;
        let mut window = LiveWindow::default();
        top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(window.touched, offset + STEP_BYTES);
        // A quarter used: more than half left, nothing to do.
        offset += STEP_BYTES / 4;
        assert!(top_up_until_idle(&plan, offset, &current, &mut window).is_empty());
        // Past half: refilled at once, in one step (after which the window is full again).
        offset += STEP_BYTES / 4 + 4096;
        let urgent = top_up_until_idle(&plan, offset, &current, &mut window);
        assert_eq!(urgent, [false]);
        assert_eq!(window.touched, offset + STEP_BYTES);
    }

    /// Idle looks back off from `poll_interval` to `IDLE_POLL_MAX`; work sets them back.
    #[test]
    fn idle_looks_back_off_and_work_resets_them() {
        let poll = Duration::from_micros(200);
        let mut sleep = poll;
        let mut seen = vec![sleep];
        for _ in 0..8 {
            sleep = next_idle_sleep(poll, sleep, false);
            seen.push(sleep);
        }
        assert_eq!(seen[1], poll * 2);
        assert_eq!(*seen.last().unwrap(), IDLE_POLL_MAX);
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(next_idle_sleep(poll, IDLE_POLL_MAX, true), poll);
        // A poll interval above the ceiling stays as configured.
        let slow = Duration::from_millis(20);
        assert_eq!(next_idle_sleep(slow, slow, false), slow);
        assert_eq!(
            next_idle_sleep(Duration::MAX, Duration::MAX, false),
            Duration::MAX
        );
    }

    /// After a turn: idle turns sleep their backed-off sleep and double it; a turn that worked
    /// in any pass, or an urgent one, sleeps briefly and sets the back-off back.
    #[test]
    fn the_sleep_after_a_turn_follows_what_it_did() {
        let poll = Duration::from_micros(200);
        let backed_off = Duration::from_millis(2);
        assert_eq!(
            sleeps_after_turn(poll, backed_off, false, false),
            (backed_off, backed_off * 2)
        );
        assert_eq!(
            sleeps_after_turn(poll, backed_off, true, false),
            (poll, poll)
        );
        assert_eq!(
            sleeps_after_turn(poll, backed_off, true, true),
            (URGENT_POLL_INTERVAL, poll)
        );
    }
}
