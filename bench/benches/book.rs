//! The mixed-workload harness: one operation list, three order books, one process.
//!
//! ```text
//! cargo bench -p ringbook-bench --bench book -- [--json] [--ops N] [--warmup N] [--rounds N]
//!     [--seed N] [--pool N[,N...]] [--pool-sweep] [--hugepages] [--no-thp] [--prefetch]
//!     [--resolved-ids] [--only ringbook|matchcore|lobster]
//! cargo bench -p ringbook-bench --bench book -- --resting 1000000 [--json]
//! ```
//!
//! `--json` prints exactly one JSON object on stdout (the report goes to stderr), starting with
//! `ringbook_ops_per_sec`, `matchcore_ops_per_sec`, `lobster_ops_per_sec`, `ringbook_p99_ns`.
//! `--pool` sets ringbook's order pool (default: the default config's 262 144, or the workload's
//! peak live orders + 1024 if more); `live` names that minimum. A list (`--pool
//! live,262144,1048576`) or `--pool-sweep` (262 144 / 1 048 576 / 4 194 304) runs ringbook once per
//! size on the same workload in the same run, interleaved with the peers round by round, and
//! reports each size's throughput and its ratio to the smallest size (text, and `pool_sweep` in
//! the JSON; the top-level `ringbook_*` keys are then the smallest size's). ringbook asks for
//! transparent huge pages for its pool and index itself (`[capacity] huge_pages`, default on);
//! `--no-thp` runs it with that off. `--hugepages` is an older experiment that asks for them on
//! every large allocation of all three engines (see the `hugepages` module); `--prefetch` tells
//! ringbook the next operation before each one (`Engine::prefetch`, as the pipeline does within
//! a batch; the peers take one operation at a time and have no such hint, so this is the
//! batch-aware path, not the like-for-like one); `--resolved-ids` hands ringbook and matchcore
//! cancels that already carry the id each gave the order, learned in an untimed pass of a
//! fresh book (as the pipeline's business stage receives decoded commands), instead of their
//! adapters reading it from their maps of workload ids in the timed loop (a random read both
//! paid alike; lobster's own id is the workload id, so it has no map to skip; not with
//! `--cancel-by-coid`); `--only` runs one engine, for profiling (no ratios, no JSON). Results and caveats: docs/benchmarks.md.
//!
//! Mixed mode: generates the workload ([`ringbook_bench::generate`]: a warm-up of `--warmup`
//! resting orders, then `--ops` timed adds / cancels / market orders), and for ringbook,
//! matchcore 0.4 and lobster 0.7:
//! 1. throughput: a fresh book, the warm-up applied untimed, then the whole timed list under one
//!    `Instant` pair — no per-op timers; `--rounds` times, engines interleaved, median reported;
//! 2. latency: a fresh book again, each timed op between its own two `Instant::now()` calls, into
//!    an HdrHistogram; the median cost of an empty `Instant::now()` pair (measured first, and
//!    printed) is subtracted from every sample.
//!
//! Every pass checks that the engine traded exactly the volume the generator's model predicts
//! (so the three agree with each other) and refused nothing; otherwise it exits non-zero.
//!
//! Resting mode (`--resting N`): ringbook only. Builds a book of N resting orders (pool sized to
//! N, band 1..=100 000 ticks) and reports VmRSS / VmHWM before and after, against the target of
//! 1M resting orders in under 256 MiB resident.

mod peers;

/// Opt-in (`--hugepages`) experiment: ask the kernel for transparent huge pages on every
/// allocation of 2 MiB or more (`madvise(MADV_HUGEPAGE)`, for hosts where THP is in `madvise`
/// mode), to see how much of an engine's time goes to TLB misses. Off by default; applies to
/// all three engines alike.
mod hugepages {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, Ordering};

    pub static ENABLED: AtomicBool = AtomicBool::new(false);

    #[derive(Debug)]
    pub struct Alloc;

    const MADV_HUGEPAGE: i32 = 14;
    const THRESHOLD: usize = 2 << 20;
    const PAGE: usize = 4096;

    extern "C" {
        fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
    }

    fn advise(p: *mut u8, size: usize) {
        if p.is_null() || size < THRESHOLD || !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let start = (p as usize).next_multiple_of(PAGE);
        let end = (p as usize + size) & !(PAGE - 1);
        if end > start {
            // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE only changes
            // how the kernel backs it, never its contents. Failure is harmless and ignored.
            unsafe { madvise(start as *mut u8, end - start, MADV_HUGEPAGE) };
        }
    }

    // SAFETY: every method forwards to `System` with the caller's arguments.
    unsafe impl GlobalAlloc for Alloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { System.alloc(layout) };
            advise(p, layout.size());
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { System.alloc_zeroed(layout) };
            advise(p, layout.size());
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(p, layout) }
        }
        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded contract.
            let q = unsafe { System.realloc(p, layout, new_size) };
            advise(q, new_size);
            q
        }
    }

    /// AnonHugePages of this process, KiB (from /proc/self/smaps_rollup).
    pub fn anon_huge_kib() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

#[global_allocator]
static GLOBAL: hugepages::Alloc = hugepages::Alloc;

use std::borrow::Cow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use peers::{LobsterBook, MatchcoreBook};
use ringbook_bench::{
    apply_all, generate, mem_status, resolve_handles, ringbook_pool_for, time_latency,
    time_throughput, timer_overhead, BookAdapter, Latency, Op, RestingOrders, RingbookBook,
    Workload, WorkloadSpec,
};

#[derive(Debug)]
struct Args {
    json: bool,
    ops: usize,
    warmup: usize,
    rounds: usize,
    seed: Option<u64>,
    resting: Option<u64>,
    /// Run only this engine (for profiling); no ratios.
    only: Option<String>,
    /// Experiment: madvise(MADV_HUGEPAGE) on big allocations.
    hugepages: bool,
    /// ringbook with `[capacity] huge_pages = false`.
    no_thp: bool,
    /// ringbook's `[engine] finished_orders_per_user` (default: the config's); 0 turns the
    /// finished-order window off, to measure what it costs.
    finished: Option<u32>,
    /// ringbook's cancels name orders by client order id (the engine's index maps them), as
    /// before issue 11, instead of by engine order id (the client's map does).
    cancel_by_coid: bool,
    /// ringbook is told the next operation before each (`RingbookBook::prefetching`).
    prefetch: bool,
    /// Cancels carry the engine's own id, resolved before timing (`resolve_handles`).
    resolved_ids: bool,
    /// ringbook's order pool sizes, one ringbook run per size (default: one, the default
    /// config's 262 144, or more if the workload needs it).
    pools: Vec<Pool>,
}

/// One requested pool size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    /// The least the workload needs: its peak live orders + 1024.
    Live,
    /// Exactly this many slots.
    Size(u32),
}

/// `--pool-sweep`: the sizes issue 17 names (the default config's, 4x, 16x).
const POOL_SWEEP: [u32; 3] = [262_144, 1_048_576, 4_194_304];

fn parse_pools(v: &str) -> Result<Vec<Pool>, String> {
    v.split(',')
        .map(|t| {
            let t = t.trim();
            if t == "live" {
                return Ok(Pool::Live);
            }
            match t.replace('_', "").parse::<u32>() {
                Ok(n) if n > 0 && n < u32::MAX => Ok(Pool::Size(n)),
                _ => Err(format!(
                    "--pool: {t:?} is not a pool size (1..{} or `live`)",
                    u32::MAX
                )),
            }
        })
        .collect()
}

const USAGE: &str = "usage: book [--json] [--ops N] [--warmup N] [--rounds N] [--seed N] \
                     [--pool N[,N...]|live] [--pool-sweep] [--hugepages] [--no-thp] [--finished N] \
                     [--cancel-by-coid] [--prefetch] [--resolved-ids] [--only ringbook|matchcore|lobster] | book --resting N [--json]";

fn parse_args() -> Result<Args, String> {
    let defaults = WorkloadSpec::default();
    let mut args = Args {
        json: false,
        ops: defaults.ops,
        warmup: defaults.resting,
        rounds: 3,
        seed: None,
        resting: None,
        only: None,
        pools: Vec::new(),
        hugepages: false,
        no_thp: false,
        finished: None,
        cancel_by_coid: false,
        prefetch: false,
        resolved_ids: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--json" => args.json = true,
            "--hugepages" => args.hugepages = true,
            "--no-thp" => args.no_thp = true,
            "--cancel-by-coid" => args.cancel_by_coid = true,
            "--prefetch" => args.prefetch = true,
            "--resolved-ids" => args.resolved_ids = true,
            "--finished" => args.finished = Some(number("--finished")? as u32),
            "--ops" => args.ops = number("--ops")? as usize,
            "--warmup" => args.warmup = number("--warmup")? as usize,
            "--rounds" => args.rounds = (number("--rounds")? as usize).max(1),
            "--seed" => args.seed = Some(number("--seed")?),
            "--resting" => args.resting = Some(number("--resting")?),
            "--pool" => {
                let v = it.next().ok_or("--pool needs a value")?;
                args.pools.extend(parse_pools(&v)?);
            }
            "--pool-sweep" => args.pools.extend(POOL_SWEEP.map(Pool::Size)),
            "--only" => {
                let name = it.next().ok_or("--only needs an engine name")?;
                if !["ringbook", "matchcore", "lobster"].contains(&name.as_str()) {
                    return Err(format!("--only: unknown engine {name:?}"));
                }
                args.only = Some(name);
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.resolved_ids && args.cancel_by_coid {
        // ringbook would cancel through its client-order-id index and matchcore by resolved
        // ids: two different modes reported as one.
        return Err("--resolved-ids and --cancel-by-coid do not go together".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    hugepages::ENABLED.store(args.hugepages, std::sync::atomic::Ordering::Relaxed);
    let result = match args.resting {
        Some(n) => resting(n, args.json),
        None => mixed(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("book: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------ mixed mode

/// Median of a non-empty slice of durations.
fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

struct EngineResult {
    name: &'static str,
    /// ringbook's pool size for this result (None for the peers).
    pool: Option<u32>,
    /// Throughput passes, one per round.
    runs: Vec<Duration>,
    latency: Option<Latency>,
    /// With --hugepages: AnonHugePages while this engine's book was live.
    anon_huge_kib: Option<u64>,
}

impl EngineResult {
    fn ops_per_sec(&self, ops: usize) -> f64 {
        ops as f64 / median(&self.runs).as_secs_f64()
    }
    fn best_ops_per_sec(&self, ops: usize) -> f64 {
        ops as f64 / self.runs.iter().min().unwrap().as_secs_f64()
    }
    fn q(&self, q: f64) -> u64 {
        self.latency.as_ref().unwrap().all.value_at_quantile(q)
    }
    fn max(&self) -> u64 {
        self.latency.as_ref().unwrap().all.max()
    }
}

/// A fresh book of engine `A` with the warm-up applied (untimed), checked.
fn prepared<A: BookAdapter>(w: &Workload, make: &dyn Fn(&Workload) -> A) -> Result<A, String> {
    let mut book = make(w);
    let v = apply_all(&mut book, &w.warmup);
    if v != 0 || book.errors() != 0 {
        return Err(format!(
            "{}: warm-up traded {v} lots / {} errors; warm-up orders must all rest",
            A::NAME,
            book.errors()
        ));
    }
    Ok(book)
}

fn check<A: BookAdapter>(book: &A, pass: &str, volume: u64, w: &Workload) -> Result<(), String> {
    if volume != w.volume || book.errors() != 0 {
        return Err(format!(
            "{} {pass} pass: traded volume {volume} (expected {}, from the generator's model), \
             {} refused operations — the engines disagree",
            A::NAME,
            w.volume,
            book.errors()
        ));
    }
    Ok(())
}

/// The timed operations as engine `A` is handed them: the workload's own, or with
/// `resolve` each cancel carrying the id a fresh book of `A` gave its order (learned in one
/// untimed, checked pass: `resolve_handles`).
fn ops_for<'w, A: BookAdapter>(
    w: &'w Workload,
    make: &dyn Fn(&Workload) -> A,
    resolve: bool,
) -> Result<Cow<'w, [Op]>, String> {
    if !resolve {
        return Ok(Cow::Borrowed(&w.ops));
    }
    let mut book = prepared(w, make)?;
    let volume = apply_all(&mut book, &w.ops);
    check(&book, "id resolution", volume, w)?;
    Ok(Cow::Owned(resolve_handles(&book, &w.ops)))
}

fn throughput_round<A: BookAdapter>(
    w: &Workload,
    ops: &[Op],
    make: &dyn Fn(&Workload) -> A,
    out: &mut EngineResult,
) -> Result<(), String> {
    let mut book = prepared(w, make)?;
    let (elapsed, volume) = time_throughput(&mut book, ops);
    check(&book, "throughput", volume, w)?;
    out.runs.push(elapsed);
    drop(book);
    Ok(())
}

fn latency_pass<A: BookAdapter>(
    w: &Workload,
    ops: &[Op],
    make: &dyn Fn(&Workload) -> A,
    overhead_ns: u64,
    out: &mut EngineResult,
) -> Result<(), String> {
    let mut book = prepared(w, make)?;
    out.anon_huge_kib = hugepages::anon_huge_kib();
    let lat = time_latency(&mut book, ops, overhead_ns);
    check(&book, "latency", lat.volume, w)?;
    out.latency = Some(lat);
    Ok(())
}

/// ringbook with an order pool of `pool`, its map from workload ids sized up front like
/// matchcore's (or, under `--cancel-by-coid`, none); `--finished`: the finished-order window
/// per user, if not the config's.
fn make_ringbook(w: &Workload, pool: u32, huge_pages: bool, args: &Args) -> RingbookBook {
    let mut config = RingbookBook::config(pool, 100_000);
    config.capacity.huge_pages = huge_pages;
    if let Some(n) = args.finished {
        config.engine.finished_orders_per_user = n;
    }
    let mut book = RingbookBook::new(&config);
    if args.prefetch {
        book = book.prefetching();
    }
    if args.cancel_by_coid {
        book.cancelling_by_client_order_id()
    } else {
        book.with_ids(w.stats.max_id)
    }
}

fn make_matchcore(w: &Workload) -> MatchcoreBook {
    MatchcoreBook::new(w.stats.max_id)
}
fn make_lobster(w: &Workload) -> LobsterBook {
    LobsterBook::new(w.stats.max_id as usize + 1)
}

fn mixed(args: &Args) -> Result<(), String> {
    let mut spec = WorkloadSpec {
        ops: args.ops,
        resting: args.warmup,
        ..WorkloadSpec::default()
    };
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    let gen_start = Instant::now();
    let w = generate(&spec);
    let gen_time = gen_start.elapsed();
    let s = &w.stats;
    // Human-readable lines go to stdout, or to stderr under --json so stdout holds only JSON.
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "workload: seed {:#x}, warm-up {} resting orders, {} timed ops ({} add / {} cancel / {} \
         market, {} sweeps), generated in {:.2?}",
        spec.seed,
        spec.resting,
        spec.ops,
        s.counts[0],
        s.counts[1],
        s.counts[2],
        s.sweeps,
        gen_time
    ));
    say(format!(
        "          expected volume {} lots in {} fills (max {} fills / {} levels in one order), \
         live orders {} → {} (peak {}), touch level ~{:.0} orders, {} levels at end, prices {}..={}",
        w.volume,
        s.fills,
        s.max_fills,
        s.max_levels,
        s.live_after_warmup,
        s.final_live,
        s.peak_live,
        s.mean_touch_orders,
        s.final_levels,
        s.price_range.0,
        s.price_range.1
    ));

    let (overhead_ns, overhead) = timer_overhead(1_000_000);
    say(format!(
        "timer: Instant::now() pair costs p50 {overhead_ns} ns, p99 {} ns, max {} ns (clocksource \
         {}); the p50 is subtracted from every latency sample (floor 0); throughput uses no \
         per-op timers",
        overhead.value_at_quantile(0.99),
        overhead.max(),
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    ));

    let live_pool = ringbook_pool_for(&w);
    let mut pools: Vec<u32> = args
        .pools
        .iter()
        .map(|p| match p {
            Pool::Live => (s.peak_live as u64 + 1024).min(u64::from(u32::MAX - 1)) as u32,
            Pool::Size(n) => *n,
        })
        .collect();
    if pools.is_empty() {
        pools.push(live_pool);
    }
    pools.sort_unstable();
    pools.dedup();
    if pools[0] as usize <= s.peak_live {
        return Err(format!(
            "--pool {} is below the workload's peak of {} live orders (use `live` for the least \
             that fits)",
            pools[0], s.peak_live
        ));
    }
    for &pool in &pools {
        say(format!(
            "ringbook: order pool for {pool} orders ({} slots; index up to {} buckets, ~2 per \
             live order in use), band 1..=100000 ticks, huge pages {}, finished-order window {} \
             per user; cancels by {}; next operation told in advance: {}",
            pool.next_power_of_two(),
            (pool as usize * 2).next_power_of_two(),
            if args.no_thp {
                "off (--no-thp)"
            } else {
                "requested (madvise)"
            },
            args.finished.map_or_else(
                || format!(
                    "{} (the config's)",
                    RingbookBook::config(pool, 100_000)
                        .engine
                        .finished_orders_per_user
                ),
                |n| format!("{n} (--finished)")
            ),
            if args.cancel_by_coid {
                "client order id (--cancel-by-coid: the engine's index maps it)"
            } else if args.resolved_ids {
                "engine order id (resolved before timing: --resolved-ids)"
            } else {
                "engine order id (the adapter's map from workload ids)"
            },
            if args.prefetch {
                "yes (--prefetch: Engine::prefetch)"
            } else {
                "no"
            }
        ));
    }
    say(format!(
        "matchcore: {} for {} ids; lobster: arena of {} orders",
        if args.resolved_ids {
            "cancels resolved before timing (--resolved-ids), id map"
        } else {
            "id map"
        },
        s.max_id + 1,
        s.max_id + 1
    ));
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let slot = |name: &'static str| {
        wanted(name).then(|| EngineResult {
            name,
            pool: None,
            runs: Vec::new(),
            latency: None,
            anon_huge_kib: None,
        })
    };
    let mut rbs: Vec<EngineResult> = if wanted(RingbookBook::NAME) {
        pools
            .iter()
            .map(|&p| EngineResult {
                pool: Some(p),
                ..slot(RingbookBook::NAME).expect("wanted")
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut mc = slot(MatchcoreBook::NAME);
    let mut lb = slot(LobsterBook::NAME);

    let thp = !args.no_thp;
    let rb_ops = pools
        .iter()
        .take(rbs.len())
        .map(|&pool| {
            ops_for(
                &w,
                &|w| make_ringbook(w, pool, thp, args),
                args.resolved_ids,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mc_ops = match mc {
        Some(_) => ops_for(&w, &make_matchcore, args.resolved_ids)?,
        None => Cow::Borrowed(&[][..]),
    };
    // Throughput: engines (and ringbook's pool sizes) interleaved, starting one rotated per
    // round, so slow drift in the machine's load spreads over all of them.
    let entrants = rbs.len() + 2;
    for round in 0..args.rounds {
        for k in 0..entrants {
            match (round + k) % entrants {
                i if i < rbs.len() => {
                    let pool = pools[i];
                    let make = |w: &Workload| make_ringbook(w, pool, thp, args);
                    throughput_round(&w, &rb_ops[i], &make, &mut rbs[i])?
                }
                i if i == rbs.len() => {
                    if let Some(r) = &mut mc {
                        throughput_round(&w, &mc_ops, &make_matchcore, r)?
                    }
                }
                _ => {
                    if let Some(r) = &mut lb {
                        throughput_round(&w, &w.ops, &make_lobster, r)?
                    }
                }
            }
        }
    }
    for (i, r) in rbs.iter_mut().enumerate() {
        let pool = pools[i];
        let make = |w: &Workload| make_ringbook(w, pool, thp, args);
        latency_pass(&w, &rb_ops[i], &make, overhead_ns, r)?;
    }
    if let Some(r) = &mut mc {
        latency_pass(&w, &mc_ops, &make_matchcore, overhead_ns, r)?;
    }
    if let Some(r) = &mut lb {
        latency_pass(&w, &w.ops, &make_lobster, overhead_ns, r)?;
    }
    let engines: Vec<&EngineResult> = rbs.iter().chain([&mc, &lb].into_iter().flatten()).collect();
    let label = |e: &EngineResult| match e.pool {
        Some(p) if pools.len() > 1 => format!("{}@{p}", e.name),
        _ => e.name.to_string(),
    };
    for e in &engines {
        say(format!(
            "AnonHugePages with {}'s book live: {} KiB{}",
            label(e),
            e.anon_huge_kib.map_or("?".into(), |k| k.to_string()),
            if args.hugepages {
                " (--hugepages: MADV_HUGEPAGE on every allocation >= 2 MiB)"
            } else {
                ""
            }
        ));
    }

    let n = w.ops.len();
    say(format!(
        "\n{:<17} {:>14} {:>14} {:>8} {:>8} {:>8} {:>10} {:>12}",
        "engine",
        "ops/s (median)",
        "ops/s (best)",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "max ns",
        "volume"
    ));
    for e in &engines {
        say(format!(
            "{:<17} {:>14.0} {:>14.0} {:>8} {:>8} {:>8} {:>10} {:>12}",
            label(e),
            e.ops_per_sec(n),
            e.best_ops_per_sec(n),
            e.q(0.5),
            e.q(0.99),
            e.q(0.999),
            e.max(),
            e.latency.as_ref().unwrap().volume
        ));
    }
    say(format!(
        "(ops/s over {} rounds of {n} ops; latency from one further pass per engine; all \
         volumes equal the model's {})",
        args.rounds, w.volume
    ));
    for e in &engines {
        let each: Vec<String> = e
            .runs
            .iter()
            .map(|d| format!("{:.2}", n as f64 / d.as_secs_f64() / 1e6))
            .collect();
        say(format!(
            "  {:<17} rounds, M ops/s: {}",
            label(e),
            each.join(" ")
        ));
    }
    say("\nlatency by operation kind, ns (p50 / p99 / p99.9 / max):".to_string());
    for e in &engines {
        let lat = e.latency.as_ref().unwrap();
        let cells: Vec<String> = (0..3)
            .map(|k| {
                let h: &Histogram<u64> = &lat.by_kind[k];
                format!(
                    "{} {}/{}/{}/{}",
                    Op::KIND_NAMES[k],
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                )
            })
            .collect();
        say(format!("  {:<17} {}", label(e), cells.join("   ")));
    }
    let (Some(rb), Some(mc), Some(lb)) = (rbs.first(), &mc, &lb) else {
        say("(--only: no ratios)".to_string());
        return Ok(());
    };
    // The pool sweep: each size against the smallest and against matchcore, same run.
    let mut sweep_json = Vec::new();
    if rbs.len() > 1 {
        say(format!(
            "\npool sweep (same workload, same run, medians; peak live orders {}):",
            s.peak_live
        ));
        say(format!(
            "  {:>10} {:>14} {:>12} {:>14} {:>8}",
            "pool", "ops/s", "vs smallest", "vs matchcore", "p99 ns"
        ));
        for e in &rbs {
            let ops = e.ops_per_sec(n);
            let to_smallest = ops / rb.ops_per_sec(n);
            let to_mc = ops / mc.ops_per_sec(n);
            say(format!(
                "  {:>10} {:>14.0} {:>11.3}x {:>13.2}x {:>8}",
                e.pool.unwrap_or(0),
                ops,
                to_smallest,
                to_mc,
                e.q(0.99)
            ));
            sweep_json.push(format!(
                "{{\"pool\":{},\"ops_per_sec\":{ops:.0},\"ratio_to_smallest\":{to_smallest:.3},\
                 \"vs_matchcore\":{to_mc:.3},\"p50_ns\":{},\"p99_ns\":{}}}",
                e.pool.unwrap_or(0),
                e.q(0.5),
                e.q(0.99)
            ));
        }
        let worst = rbs
            .iter()
            .map(|e| e.ops_per_sec(n) / rb.ops_per_sec(n))
            .fold(f64::INFINITY, f64::min);
        let worst_mc = rbs
            .iter()
            .map(|e| e.ops_per_sec(n) / mc.ops_per_sec(n))
            .fold(f64::INFINITY, f64::min);
        say(format!(
            "targets: every size within 10% of the smallest: {} (worst {worst:.3}x); >= 2x \
             matchcore at every size: {} (worst {worst_mc:.2}x)",
            met(worst >= 0.9),
            met(worst_mc >= 2.0)
        ));
    }
    let r_mc = rb.ops_per_sec(n) / mc.ops_per_sec(n);
    let r_lb = rb.ops_per_sec(n) / lb.ops_per_sec(n);
    say(format!(
        "\nratios (same run, medians): ringbook/matchcore {r_mc:.2}x, ringbook/lobster {r_lb:.2}x"
    ));
    say(format!(
        "targets: ringbook >= 2x matchcore: {}; >= 10M ops/s: {} ({:.2}M); p99 <= 250 ns: {} ({} ns)",
        met(r_mc >= 2.0),
        met(rb.ops_per_sec(n) >= 10e6),
        rb.ops_per_sec(n) / 1e6,
        met(rb.q(0.99) <= 250),
        rb.q(0.99)
    ));

    if args.json {
        println!(
            "{{\"ringbook_ops_per_sec\":{:.0},\"matchcore_ops_per_sec\":{:.0},\
             \"lobster_ops_per_sec\":{:.0},\"ringbook_p99_ns\":{},\
             \"ringbook_p50_ns\":{},\"ringbook_p999_ns\":{},\"ringbook_max_ns\":{},\
             \"matchcore_p99_ns\":{},\"lobster_p99_ns\":{},\
             \"ringbook_vs_matchcore\":{:.3},\"ringbook_vs_lobster\":{:.3},\
             \"timer_overhead_ns\":{},\"ops\":{},\"warmup\":{},\"rounds\":{},\"volume\":{},\
             \"ringbook_pool\":{},\"peak_live\":{},\"prefetch\":{},\"resolved_ids\":{}{}}}",
            rb.ops_per_sec(n),
            mc.ops_per_sec(n),
            lb.ops_per_sec(n),
            rb.q(0.99),
            rb.q(0.5),
            rb.q(0.999),
            rb.max(),
            mc.q(0.99),
            lb.q(0.99),
            r_mc,
            r_lb,
            overhead_ns,
            n,
            spec.resting,
            args.rounds,
            w.volume,
            rb.pool.unwrap_or(0),
            s.peak_live,
            args.prefetch,
            args.resolved_ids,
            if sweep_json.is_empty() {
                String::new()
            } else {
                format!(",\"pool_sweep\":[{}]", sweep_json.join(","))
            }
        );
    }
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

// ---------------------------------------------------------------------------- resting mode

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn resting(n: u64, json: bool) -> Result<(), String> {
    const TARGET_MIB: f64 = 256.0;
    let orders_max = u32::try_from(n).map_err(|_| format!("--resting {n} is too large"))?;
    let before = mem_status().ok_or("cannot read /proc/self/status")?;
    let config = RingbookBook::config(orders_max.max(1), 100_000);
    let mut book = RingbookBook::new(&config);
    let after_new = mem_status().unwrap_or_default();
    let start = Instant::now();
    let mut volume = 0;
    // Streamed, not collected, so only the engine's memory grows.
    for op in RestingOrders::new(0x5EED, n, 50_000, 10_000) {
        volume += book.apply(&op);
    }
    let build = start.elapsed();
    let after = mem_status().unwrap_or_default();
    let live = book.engine().matcher().live_orders();
    if volume != 0 || book.errors() != 0 || u64::from(live) != n {
        return Err(format!(
            "resting build: {live} live of {n}, traded {volume}, {} refused",
            book.errors()
        ));
    }
    let order_bytes = std::mem::size_of::<ringbook_engine::book::pool::Order>();
    let level_bytes = std::mem::size_of::<ringbook_engine::book::levels::Level>();
    let ok = mib(after.hwm_kib) < TARGET_MIB;
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "resting: {n} resting orders on one symbol (pool sized to {orders_max}, band 1..=100000 \
         ticks, prices 50000±10000), built in {build:.2?} ({:.1}M adds/s)",
        n as f64 / build.as_secs_f64() / 1e6
    ));
    say(format!(
        "  VmRSS before engine   {:>8.1} MiB (VmHWM {:.1})",
        mib(before.rss_kib),
        mib(before.hwm_kib)
    ));
    say(format!(
        "  VmRSS after new()     {:>8.1} MiB (pool, index and levels are allocated and written up front)",
        mib(after_new.rss_kib)
    ));
    say(format!(
        "  VmRSS after {n} adds {:>8.1} MiB, VmHWM {:.1} MiB; engine's share {:.1} MiB",
        mib(after.rss_kib),
        mib(after.hwm_kib),
        mib(after.rss_kib.saturating_sub(before.rss_kib))
    ));
    say(format!(
        "  sizes: Order {order_bytes} B/slot, Level {level_bytes} B; target: 1M resting orders \
         < {TARGET_MIB} MiB resident (whole process, VmHWM): {}",
        met(ok)
    ));
    if json {
        println!(
            "{{\"resting\":{n},\"rss_before_kib\":{},\"rss_after_new_kib\":{},\
             \"rss_after_kib\":{},\"hwm_kib\":{},\"order_slot_bytes\":{order_bytes},\
             \"build_adds_per_sec\":{:.0},\"under_256_mib\":{ok}}}",
            before.rss_kib,
            after_new.rss_kib,
            after.rss_kib,
            after.hwm_kib,
            n as f64 / build.as_secs_f64()
        );
    }
    Ok(())
}
