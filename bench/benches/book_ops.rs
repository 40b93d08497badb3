//! Criterion micro-benches of ringbook's book operations, and the mixed stream for all three
//! engines.
//!
//! ```text
//! cargo bench -p ringbook-bench --bench book_ops [-- FILTER]
//! ```
//!
//! Every bench times single operations against a prepared book with `iter_custom`: the book is
//! built (and rebuilt when the prepared operations run out) outside the timed sections, so each
//! reported time is the cost of one operation on a book of 20k (mixed, add) to 120k (cancel,
//! match) resting orders.
//!
//! - `add/ringbook`: a passive limit order that rests near the touch.
//! - `cancel/ringbook`: cancel of a resting order, chosen at random.
//! - `match/ringbook/qty_N`: a market order of N lots against a deep book (N = 10: one partial
//!   fill; N = 250: about five makers filled and removed).
//! - `mixed/{ringbook,matchcore,lobster}`: the `book` harness's operation stream (60 % add,
//!   30 % cancel, 10 % market), per operation.

mod peers;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use peers::{LobsterBook, MatchcoreBook};
use ringbook_bench::{
    apply_all, generate, ringbook_pool_for, time_throughput, BookAdapter, Op, RingbookBook, Side,
    SplitMix64, Workload, WorkloadSpec,
};

/// Resting orders in every prepared book.
const BASE: usize = 20_000;
/// Operations prepared per rebuild of the book.
const CHUNK: usize = 100_000;

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

/// A base book of `BASE` orders followed by `CHUNK` more passive adds, all generated in sequence
/// so every add is passive against the book it lands on.
fn base_and_adds() -> (Workload, Vec<Op>) {
    let w = generate(&WorkloadSpec {
        resting: BASE + CHUNK,
        ops: 0,
        ..WorkloadSpec::default()
    });
    let adds = w.warmup[BASE..].to_vec();
    (w, adds)
}

fn fresh_ringbook(base: &[Op]) -> RingbookBook {
    let mut book = RingbookBook::with_capacity(262_144);
    assert_eq!(apply_all(&mut book, base), 0);
    book
}

/// A prepared book and a list of operations to time on it, consumed in order across criterion's
/// calls; when the list runs out the book is rebuilt (untimed) and the list starts again. So a
/// rebuild — fresh memory, cold caches — happens once per list, as in the `book` harness, not
/// once per sample.
struct Stream<'a, A, F> {
    ops: &'a [Op],
    make: F,
    book: Option<A>,
    pos: usize,
}

impl<'a, A: BookAdapter, F: FnMut() -> A> Stream<'a, A, F> {
    fn new(ops: &'a [Op], make: F) -> Self {
        Stream {
            ops,
            make,
            book: None,
            pos: 0,
        }
    }

    /// Times the next `iters` operations.
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            if self.book.is_none() || self.pos == self.ops.len() {
                self.book = None; // drop the old book before building the next
                self.book = Some((self.make)());
                self.pos = 0;
            }
            let book = self.book.as_mut().unwrap();
            let n = left.min(self.ops.len() - self.pos);
            let (elapsed, _) = time_throughput(book, &self.ops[self.pos..self.pos + n]);
            assert_eq!(book.errors(), 0);
            total += elapsed;
            self.pos += n;
            left -= n;
        }
        total
    }
}

fn add(c: &mut Criterion) {
    let (w, adds) = base_and_adds();
    let base = &w.warmup[..BASE];
    let mut g = configure(c, "add");
    g.bench_function("ringbook", |b| {
        let mut stream = Stream::new(&adds, || fresh_ringbook(base));
        b.iter_custom(|iters| stream.run(iters))
    });
    g.finish();
}

fn cancel(c: &mut Criterion) {
    let (w, adds) = base_and_adds();
    // Cancel the CHUNK extra orders in a random order (Fisher-Yates with the bench PRNG).
    let mut ids: Vec<u64> = adds
        .iter()
        .map(|op| match op {
            Op::Add { id, .. } => *id,
            _ => unreachable!(),
        })
        .collect();
    let mut rng = SplitMix64::new(7);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let cancels: Vec<Op> = ids.into_iter().map(Op::cancel).collect();
    let mut g = configure(c, "cancel");
    g.bench_function("ringbook", |b| {
        let mut stream = Stream::new(&cancels, || fresh_ringbook(&w.warmup));
        b.iter_custom(|iters| stream.run(iters))
    });
    g.finish();
}

fn matching(c: &mut Criterion) {
    // A deep book: BASE + CHUNK resting orders of 50 lots on average.
    let (w, _) = base_and_adds();
    let mut g = configure(c, "match");
    for qty in [10u64, 250] {
        // Alternate sides; stop well before either side could run dry.
        let per_side = (BASE + CHUNK) as u64 * 50 / 2;
        let n = (per_side / qty / 2) as usize;
        let markets: Vec<Op> = (0..n)
            .map(|i| Op::Market {
                side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                qty,
            })
            .collect();
        g.bench_function(format!("ringbook/qty_{qty}"), |b| {
            let mut stream = Stream::new(&markets, || fresh_ringbook(&w.warmup));
            b.iter_custom(|iters| stream.run(iters))
        });
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let w = generate(&WorkloadSpec {
        resting: BASE,
        ops: 1_000_000,
        ..WorkloadSpec::default()
    });
    let mut g = configure(c, "mixed");
    g.bench_function("ringbook", |b| {
        let mut stream = Stream::new(&w.ops, || {
            let mut book = RingbookBook::with_capacity(ringbook_pool_for(&w));
            apply_all(&mut book, &w.warmup);
            book
        });
        b.iter_custom(|iters| stream.run(iters))
    });
    g.bench_function("matchcore", |b| {
        let mut stream = Stream::new(&w.ops, || {
            let mut book = MatchcoreBook::new(w.stats.max_id);
            apply_all(&mut book, &w.warmup);
            book
        });
        b.iter_custom(|iters| stream.run(iters))
    });
    g.bench_function("lobster", |b| {
        let mut stream = Stream::new(&w.ops, || {
            let mut book = LobsterBook::new(w.stats.max_id as usize + 1);
            apply_all(&mut book, &w.warmup);
            book
        });
        b.iter_custom(|iters| stream.run(iters))
    });
    g.finish();
}

criterion_group!(benches, add, cancel, matching, mixed);
criterion_main!(benches);
