//! The hot path allocates nothing: appends (segment rolls included, with the pre-toucher) and
//! batch ends, counted by a global allocator that counts only on the writer's thread (the
//! pre-toucher allocates when it prepares segments, by design, off the hot path).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use ringbook_journal::{Durability, SyncMethod, Writer};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
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
}
