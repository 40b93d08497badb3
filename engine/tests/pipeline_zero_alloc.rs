//! After `start()`, the whole pipeline — every thread — allocates nothing: a counting global
//! allocator counts every thread's heap operations while the commands flow (fused and split,
//! disruptor rings, journal on with durability none). Also with the phased wait, across idle
//! spells in which the threads park and are woken again. One test in this binary, so no other
//! test's allocations are counted.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{config, Workload, USERS};
use ringbook_engine::pipeline::{Layout, OutputKind, Pipeline, Transport, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_journal::{Durability, JournalConfig, Pretouch};
use ringbook_testkit::alloc::{on_main_thread, CountingAlloc};

/// Every thread but the test harness's own (the process's main thread: libtest runs each test
/// on a thread of its own), which is not part of the pipeline and allocates to print progress —
/// for one, its "has been running for over 60 seconds" warning on a slow, shared box.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new().ignoring_main_thread();

const COMMANDS: u64 = 100_000;
/// Fewer with the phased wait: its idle spells are what it adds.
const COMMANDS_PHASED: u64 = 40_000;

fn allocations_after_start(layout: Layout, wait: WaitStrategy) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let done = Arc::new(AtomicU64::new(0));
    let trades = Arc::new(AtomicU64::new(0));
    let (d, t) = (Arc::clone(&done), Arc::clone(&trades));
    let mut pipeline = Pipeline::builder(&config)
        .layout(layout)
        .transport(Transport::Disruptor)
        .wait(wait)
        .journal(
            dir.path(),
            JournalConfig {
                segment_len_bytes: 64 << 20, // no roll: ~100 bytes × 100k commands
                durability: Durability::None,
                pretouch: Pretouch::Off,
                ..JournalConfig::default()
            },
        )
        .on_output(move |o| match o.kind {
            OutputKind::Done => d.store(o.seq.0, Ordering::Release),
            OutputKind::Event(Event::Trade(_)) => {
                t.fetch_add(1, Ordering::Relaxed);
            }
            OutputKind::Event(_) => {}
        })
        .start()
        .unwrap();
    let mut workload = Workload::new(0xa110c);
    let mut submitted = 0;
    for user in 0..USERS {
        for currency in 0..config.currencies.len() {
            pipeline
                .submit(Command::Deposit {
                    user: UserId(user as u32),
                    currency: CurrencyId(currency as u16),
                    amount: 1 << 50,
                })
                .unwrap();
            submitted += 1;
        }
    }

    ALLOC.start();
    let commands = if wait == WaitStrategy::Phased {
        COMMANDS_PHASED
    } else {
        COMMANDS
    };
    for i in 0..commands {
        pipeline.submit(workload.command()).unwrap();
        submitted += 1;
        if wait == WaitStrategy::Phased && i % 10_000 == 0 {
            // An idle spell: let the threads park; the next submit wakes them.
            let parks = pipeline.parks();
            for _ in 0..2_000 {
                if pipeline.parks() > parks {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
    while done.load(Ordering::Acquire) < submitted {
        std::thread::yield_now();
    }
    let allocations = ALLOC.stop().total();

    let report = pipeline.shutdown().unwrap();
    assert_eq!(report.commands, submitted);
    assert!(
        trades.load(Ordering::Relaxed) > commands / 10,
        "too few trades to mean anything"
    );
    allocations
}

#[test]
fn the_running_pipeline_allocates_nothing_on_any_thread() {
    // The submitting thread (this one) is counted: it is not the exempt harness thread.
    assert!(
        !on_main_thread(),
        "the test runs on the harness's main thread"
    );
    // The counter works, on another thread too.
    ALLOC.start();
    std::thread::scope(|s| {
        s.spawn(|| drop(std::hint::black_box(Box::new(7u64))));
    });
    assert!(ALLOC.stop().total() >= 1, "the counter counts nothing");

    for wait in [WaitStrategy::Yield, WaitStrategy::Phased] {
        for layout in [Layout::Fused, Layout::JournalThenBusiness, Layout::Split] {
            let allocations = allocations_after_start(layout, wait);
            assert_eq!(
                allocations, 0,
                "{layout} {wait:?}: {allocations} heap operations after start"
            );
        }
    }
}
