//! The hot path allocates nothing: appends (segment rolls included, with the pre-toucher) and
//! batch ends, counted by a global allocator on the writer's thread; and once the pre-toucher
//! has a segment to recycle (after the first roll), segment rolls allocate nothing on any
//! thread either: the helper reuses the segment the writer left (its allocation and path).
//! One test function, so no other test of this binary allocates while every thread is counted.

mod common;

use common::*;
use ringbook_journal::{Durability, SyncMethod, Writer};
use ringbook_testkit::alloc::CountingAlloc;

/// The tests below look at allocations (`alloc`, `alloc_zeroed`, `realloc`), not at frees.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Runs `f`, counting the allocations the calling thread makes.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let (result, counts) = ALLOC.count_this_thread(f);
    (result, counts.allocs)
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
        ALLOC.start();
        append(&mut writer, 20_000);
        // Let the helper finish preparing the segment after the last roll inside the window.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let allocations = ALLOC.stop().allocs;
        let rolls = writer.stats().rolls - rolls_before;
        assert!(rolls > 20, "the run must cross segments ({rolls} rolls)");
        assert_eq!(
            allocations, 0,
            "{durability:?}: {rolls} rolls allocated on some thread"
        );
        // The counter works on any thread.
        ALLOC.start();
        std::thread::spawn(|| std::hint::black_box(vec![1u8; 10]))
            .join()
            .unwrap();
        assert!(ALLOC.stop().allocs >= 1);
        drop(writer);
    }
}
