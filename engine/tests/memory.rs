//! `memory::Footprint` against what the constructors really allocate, measured with a
//! byte-counting global allocator: the figure `ringbook serve` and `Engine::new` check a
//! configuration against must be the real one, so a table added or widened without its
//! `bytes_for` fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringbook_engine::config::Config;
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::memory::Footprint;
use ringbook_engine::prelude::*;

/// Bytes live on the measuring thread: allocations add their size, frees subtract it.
struct BytesAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add(bytes: i64) {
    // `try_with`: the allocator may run while the thread-local is being torn down.
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

// SAFETY: every call is passed to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for BytesAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: BytesAlloc = BytesAlloc;

/// The bytes `f`'s result holds on the heap (what it allocated and did not free).
fn held_by<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = LIVE.with(Cell::get);
    let value = f();
    let after = LIVE.with(Cell::get);
    (value, (after - before) as u64)
}

fn within(what: &str, measured: u64, estimated: u64) {
    let ratio = estimated as f64 / measured as f64;
    assert!(
        (0.99..=1.0).contains(&ratio),
        "{what}: estimated {estimated} bytes, the constructor allocated {measured} ({ratio:.3})"
    );
}

#[test]
fn the_footprint_is_what_the_constructors_allocate() {
    // Each configuration makes one dimension large, so small fixed parts (names, the config's
    // own copy) stay under the tolerance; the estimate may leave those out, never add to them.
    type Change = fn(&mut Config);
    let configs: [(&str, Change); 4] = [
        ("orders", |c| c.capacity.orders_max = 1 << 20),
        ("users", |c| c.capacity.users_max = 1 << 18),
        ("levels", |c| {
            let s = &mut c.symbols[0];
            s.price_max = s.price_min + (1 << 22) - 1;
        }),
        ("market data history", |c| {
            c.market_data.tape_len = 1 << 20;
            c.market_data.candles_history = 1 << 18;
        }),
    ];
    for (what, change) in configs {
        let mut config = Config::default();
        change(&mut config);
        config.validate().unwrap();
        let footprint = Footprint::of(&config);
        let (engine, engine_bytes) = held_by(|| Engine::new(&config).unwrap());
        within(&format!("{what}: engine"), engine_bytes, footprint.engine());
        let (md, md_bytes) = held_by(|| MarketData::new(&config));
        within(
            &format!("{what}: market data"),
            md_bytes,
            footprint.market_data(),
        );
        drop((engine, md));
    }
}
