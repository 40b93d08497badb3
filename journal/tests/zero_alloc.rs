//! The hot path allocates nothing: appends (segment rolls included, with the pre-toucher) and
//! batch ends, counted by a global allocator on the writer's thread; and once the pre-toucher
//! has a segment to recycle (after the first roll), segment rolls allocate nothing on any
//! thread either: the helper reuses the segment the writer left (its allocation and path).
//! One test function, so no other test of this binary allocates while every thread is counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use ringbook_journal::{Durability, SyncMethod, Writer};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Allocations on any thread while [`COUNT_ALL`] is set.
static ALLOCATIONS_ALL: AtomicU64 = AtomicU64::new(0);
static COUNT_ALL: AtomicBool = AtomicBool::new(false);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNT_ALL.load(Ordering::Relaxed) {
        ALLOCATIONS_ALL.fetch_add(1, Ordering::Relaxed);
    }
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    (result, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

#[test]
fn appends_and_rolls_allocate_nothing() {
    for durability in [Durability::None, Durability::Batch(SyncMethod::Msync)] {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), config(true, durability)).unwrap();
        let payloads: Vec<(u16, u64, Vec<u8>)> = (1..=20_000).map(record).collect();
        let (rolls, allocations) = counted(|| {
            for (i, (t, ts, payload)) in payloads.iter().enumerate() {
                let seq = i as u64 + 1;
                writer.append(seq, *t, *ts, payload).unwrap();
                if seq.is_multiple_of(64) {
                    writer.end_batch().unwrap();
                }
            }
            writer.stats().rolls
        });
        assert!(rolls > 20, "the run must cross segments ({rolls} rolls)");
        assert_eq!(allocations, 0, "{durability:?}: the hot path allocated");
        // The counter works: an allocation on this thread is seen.
        let (_, n) = counted(|| std::hint::black_box(vec![1u8; 10]));
        assert_eq!(n, 1);
    }
    rolls_allocate_nothing_on_any_thread();
}

/// With the pre-toucher warmed up (one roll done, so it holds a segment to recycle), rolls
/// allocate nothing on any thread: the writer's and the helper's.
fn rolls_allocate_nothing_on_any_thread() {
    for durability in [Durability::None, Durability::Batch(SyncMethod::Msync)] {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), config(true, durability)).unwrap();
        let payloads: Vec<(u16, u64, Vec<u8>)> = (1..=30_000).map(record).collect();
        let mut seq = 0u64;
        let mut append = |writer: &mut Writer, n: usize| {
            for (t, ts, payload) in payloads.iter().skip(seq as usize).take(n) {
                seq += 1;
                writer.append(seq, *t, *ts, payload).unwrap();
                if seq.is_multiple_of(64) {
                    writer.end_batch().unwrap();
                }
            }
        };
        // Warm up: past the first roll, and give the helper time to prepare the next segment
        // from the recycled one (bounded wait, then counting starts from a settled state).
        while writer.stats().rolls < 2 {
            append(&mut writer, 64);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let rolls_before = writer.stats().rolls;
        ALLOCATIONS_ALL.store(0, Ordering::Relaxed);
        COUNT_ALL.store(true, Ordering::Relaxed);
        append(&mut writer, 20_000);
        // Let the helper finish preparing the segment after the last roll inside the window.
        std::thread::sleep(std::time::Duration::from_millis(50));
        COUNT_ALL.store(false, Ordering::Relaxed);
        let rolls = writer.stats().rolls - rolls_before;
        assert!(rolls > 20, "the run must cross segments ({rolls} rolls)");
        assert_eq!(
            ALLOCATIONS_ALL.load(Ordering::Relaxed),
            0,
            "{durability:?}: {rolls} rolls allocated on some thread"
        );
        // The counter works on any thread.
        COUNT_ALL.store(true, Ordering::Relaxed);
        std::thread::spawn(|| std::hint::black_box(vec![1u8; 10]))
            .join()
            .unwrap();
        COUNT_ALL.store(false, Ordering::Relaxed);
        assert!(ALLOCATIONS_ALL.load(Ordering::Relaxed) >= 1);
        drop(writer);
    }
}
