//! The journal harness: append throughput and latency, replay, and the cost of durability.
//!
//! ```text
//! cargo bench -p ringbook-bench --bench journal_append -- [--json] [--records-64 N]
//!     [--records-256 N] [--rounds N] [--dir PATH] [--ahead-mib N] [--poll-us N]
//!     [--paced-rate N] [--skip-durability]
//! ```
//!
//! 1. **Append, flat out**: 64- and 256-byte payloads (96- and 288-byte frames), durability
//!    `None`, 64 MiB segments, the pre-toucher on (`--ahead-mib`, `--poll-us`) and off: a fresh
//!    journal each round, every append under one `Instant` pair, segment rolls included,
//!    `--rounds` rounds, median reported as ns/record, records/s and GB/s of frame bytes. At
//!    GB/s the pre-toucher and the writer fault pages in the same file at once; see
//!    docs/benchmarks.md for what that costs on a small box.
//! 2. **Append into pre-touched pages**: the writer's own cost, with page faults out of the
//!    picture: one 1 GiB segment, faulted in whole when the writer opens (`ahead` = the segment),
//!    and a pause for the pre-toucher to finish preparing the next one; then the same timed loop.
//! 3. **Append latency**: each append between its own two `Instant::now()` calls, into an
//!    HdrHistogram, the median cost of an empty pair (printed) subtracted; flat out, and paced at
//!    `--paced-rate` records/s (default 1M/s, the pipeline's target rate), pre-toucher on and off.
//! 4. **Replay**: the sequential [`Reader`] over the journal just written (in the page cache),
//!    every checksum verified: records/s and GB/s.
//! 5. **Durability**: 64-byte records with `Batch` (100 records per batch) and `Record` policies,
//!    `msync` and `fdatasync`: ns/record and the latency of each batch.
//!
//! The journal lives under `--dir` (default: the system temp dir); each run's files are removed
//! when it ends. `--json` prints one JSON object on stdout (the report goes to stderr).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringbook_journal::{
    Durability, JournalConfig, Pretouch, Reader, SyncMethod, Writer, WriterStats,
};

struct Opts {
    json: bool,
    records_64: u64,
    records_256: u64,
    rounds: usize,
    dir: PathBuf,
    durability: bool,
    ahead_bytes: u64,
    poll: Duration,
    paced_rate: u64,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        json: false,
        records_64: 10_000_000,
        records_256: 4_000_000,
        rounds: 3,
        dir: std::env::temp_dir(),
        durability: true,
        ahead_bytes: 16 << 20,
        poll: Duration::from_micros(200),
        paced_rate: 1_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
                .parse()
                .unwrap_or_else(|_| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--json" => o.json = true,
            "--records-64" => o.records_64 = value("--records-64"),
            "--records-256" => o.records_256 = value("--records-256"),
            "--rounds" => o.rounds = value("--rounds") as usize,
            "--dir" => {
                o.dir = PathBuf::from(args.next().expect("--dir needs a path"));
            }
            "--skip-durability" => o.durability = false,
            "--ahead-mib" => o.ahead_bytes = value("--ahead-mib") << 20,
            "--poll-us" => o.poll = Duration::from_micros(value("--poll-us")),
            "--paced-rate" => o.paced_rate = value("--paced-rate"),
            // cargo bench passes --bench; ignore anything else of its own.
            _ => {}
        }
    }
    o
}

/// A journal directory that is removed when dropped.
struct TempJournal(PathBuf);

impl TempJournal {
    fn new(base: &Path, name: &str) -> TempJournal {
        let path = base.join(format!(
            "ringbook-journal-bench-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create bench dir");
        TempJournal(path)
    }
}

impl Drop for TempJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(segment_len_bytes: u64, pretouch: Pretouch, durability: Durability) -> JournalConfig {
    JournalConfig {
        segment_len_bytes,
        payload_len_max_bytes: 4096,
        durability,
        pretouch,
        first_sequence: 1,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// Appends records `1..=records` under one timer.
fn timed_appends(writer: &mut Writer, payload: &[u8], records: u64) -> Duration {
    let first = writer.next_sequence();
    let start = Instant::now();
    for seq in first..first + records {
        writer.append(seq, 1, seq, payload).expect("append");
    }
    start.elapsed()
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

/// The median cost of an empty `Instant::now()` pair, and its histogram.
fn timer_overhead() -> (u64, Histogram<u64>) {
    let mut h = new_histogram();
    for _ in 0..1_000_000 {
        let a = Instant::now();
        let b = Instant::now();
        h.saturating_record((b - a).as_nanos() as u64);
    }
    (h.value_at_quantile(0.5), h)
}

/// Per-append latency; with `rate_per_sec`, appends are paced (busy-waiting) at that rate.
fn append_latency(
    writer: &mut Writer,
    payload: &[u8],
    records: u64,
    overhead_ns: u64,
    rate_per_sec: Option<u64>,
) -> Histogram<u64> {
    let mut h = new_histogram();
    let interval_ns = rate_per_sec.map(|r| 1_000_000_000 / r.max(1));
    let start = Instant::now();
    for i in 0..records {
        if let Some(interval) = interval_ns {
            let due = Duration::from_nanos(i * interval);
            while start.elapsed() < due {
                std::hint::spin_loop();
            }
        }
        let seq = writer.next_sequence();
        let a = Instant::now();
        writer.append(seq, 1, seq, payload).expect("append");
        let b = Instant::now();
        h.saturating_record(
            ((b - a).as_nanos() as u64)
                .saturating_sub(overhead_ns)
                .max(1),
        );
    }
    h
}

fn replay(dir: &Path, expected: u64) -> Duration {
    let start = Instant::now();
    let mut reader = Reader::open(dir).expect("open reader");
    let mut count = 0u64;
    let mut bytes = 0u64;
    while let Some(r) = reader.next().expect("read") {
        count += 1;
        bytes += r.payload.len() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(count, expected, "replayed {count} of {expected}");
    std::hint::black_box(bytes);
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {} ns, p99 {} ns, p99.9 {} ns, p99.99 {} ns, max {} ns",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.value_at_quantile(0.9999),
        h.max()
    )
}

fn percentiles_json(h: &Histogram<u64>) -> String {
    format!(
        "{{\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"p9999_ns\":{},\"max_ns\":{}}}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.value_at_quantile(0.9999),
        h.max()
    )
}

/// Prints and records one throughput figure.
fn report_throughput(
    json: &mut Vec<String>,
    key: &str,
    label: &str,
    t: Duration,
    records: u64,
    stats: &WriterStats,
) {
    let ns = t.as_nanos() as f64 / records as f64;
    let rps = records as f64 / t.as_secs_f64();
    let gbps = stats.bytes as f64 / t.as_secs_f64() / 1e9;
    eprintln!(
        "{label:<40}: {ns:6.1} ns/record, {:6.2} M records/s, {gbps:5.2} GB/s ({records} records, {} rolls, {} roll stalls)",
        rps / 1e6,
        stats.rolls,
        stats.roll_stalls
    );
    json.push(format!(
        "\"{key}\":{{\"ns_per_record\":{ns:.2},\"records_per_sec\":{rps:.0},\"gb_per_sec\":{gbps:.3},\"records\":{records},\"rolls\":{},\"roll_stalls\":{}}}",
        stats.rolls, stats.roll_stalls
    ));
}

fn main() {
    let o = parse_opts();
    let ahead = Pretouch::Ahead {
        ahead_bytes: o.ahead_bytes,
        poll_interval: o.poll,
    };
    let mut json = Vec::<String>::new();
    const SEGMENT: u64 = 64 << 20;

    // 1 and 4. Flat out, then replay of what was written.
    eprintln!(
        "== 1. append flat out (durability none, 64 MiB segments, pre-toucher {} MiB ahead every {} µs; median of {} rounds)",
        o.ahead_bytes >> 20,
        o.poll.as_micros(),
        o.rounds
    );
    let mut replays = Vec::new();
    for (payload_len, records) in [(64usize, o.records_64), (256, o.records_256)] {
        let p = payload(payload_len);
        for (mode, pretouch) in [("pretouch", ahead), ("no_pretouch", Pretouch::Off)] {
            let mut times = Vec::new();
            let mut stats = WriterStats::default();
            let mut replay_times = Vec::new();
            for round in 0..o.rounds {
                let j = TempJournal::new(&o.dir, &format!("flat-{payload_len}-{mode}-{round}"));
                let mut writer =
                    Writer::open(&j.0, config(SEGMENT, pretouch, Durability::None)).expect("open");
                times.push(timed_appends(&mut writer, &p, records));
                stats = writer.stats();
                drop(writer);
                if mode == "no_pretouch" {
                    replay_times.push(replay(&j.0, records));
                }
            }
            report_throughput(
                &mut json,
                &format!("append_{payload_len}_{mode}"),
                &format!("append {payload_len} B, flat out, {mode}"),
                median(times),
                records,
                &stats,
            );
            if !replay_times.is_empty() {
                replays.push((payload_len, records, stats.bytes, median(replay_times)));
            }
        }
    }

    // 2. Into pre-touched pages.
    eprintln!("== 2. append into pre-touched pages (one 1 GiB segment faulted in at open; median of {} rounds)", o.rounds);
    for (payload_len, records) in [(64usize, o.records_64), (256, o.records_256)] {
        const BIG: u64 = 1 << 30;
        let frame = ringbook_journal::format::frame_len_for(payload_len) as u64;
        let records = records.min((BIG - 4096) / frame);
        let p = payload(payload_len);
        let mut times = Vec::new();
        let mut stats = WriterStats::default();
        for round in 0..o.rounds {
            let j = TempJournal::new(&o.dir, &format!("touched-{payload_len}-{round}"));
            let whole = Pretouch::Ahead {
                ahead_bytes: BIG,
                poll_interval: o.poll,
            };
            let mut writer =
                Writer::open(&j.0, config(BIG, whole, Durability::None)).expect("open");
            // Let the pre-toucher finish preparing the next segment, so the loop has the
            // machine to itself: this measures the writer, not the kernel.
            std::thread::sleep(Duration::from_secs(3));
            times.push(timed_appends(&mut writer, &p, records));
            stats = writer.stats();
        }
        report_throughput(
            &mut json,
            &format!("append_{payload_len}_pretouched"),
            &format!("append {payload_len} B, pre-touched pages"),
            median(times),
            records,
            &stats,
        );
    }

    // 3. Latency.
    let (overhead_ns, overhead) = timer_overhead();
    eprintln!(
        "== 3. append latency, 64 B (Instant::now() pair costs p50 {overhead_ns} ns, p99 {} ns: subtracted)",
        overhead.value_at_quantile(0.99)
    );
    let p = payload(64);
    for (pace, rate) in [("flat_out", None), ("paced", Some(o.paced_rate))] {
        for (mode, pretouch) in [("pretouch", ahead), ("no_pretouch", Pretouch::Off)] {
            let j = TempJournal::new(&o.dir, &format!("lat-{pace}-{mode}"));
            let mut writer =
                Writer::open(&j.0, config(SEGMENT, pretouch, Durability::None)).expect("open");
            let records = if rate.is_some() {
                o.records_64.min(5 * o.paced_rate)
            } else {
                o.records_64
            };
            let h = append_latency(&mut writer, &p, records, overhead_ns, rate);
            let label = match rate {
                Some(r) => format!("{pace} at {r}/s, {mode}"),
                None => format!("{pace}, {mode}"),
            };
            eprintln!("latency {label:<31}: {}", percentiles(&h));
            json.push(format!(
                "\"latency_64_{pace}_{mode}\":{}",
                percentiles_json(&h)
            ));
        }
    }

    // 4. Replay (journals of section 1).
    eprintln!("== 4. replay (sequential reader, journal in the page cache, checksums verified)");
    for (payload_len, records, bytes, t) in replays {
        let rps = records as f64 / t.as_secs_f64();
        let gbps = bytes as f64 / t.as_secs_f64() / 1e9;
        eprintln!(
            "replay {payload_len} B{:<30}: {:6.1} ns/record, {:6.2} M records/s, {gbps:5.2} GB/s",
            "",
            t.as_nanos() as f64 / records as f64,
            rps / 1e6
        );
        json.push(format!(
            "\"replay_{payload_len}\":{{\"records_per_sec\":{rps:.0},\"gb_per_sec\":{gbps:.3}}}"
        ));
    }

    // 5. Durability.
    if o.durability {
        eprintln!("== 5. durability (64 B, pre-toucher on; per batch: its appends and its syncs)");
        let runs = [
            (
                "batch100_msync",
                Durability::Batch(SyncMethod::Msync),
                100,
                200_000,
            ),
            (
                "batch100_fdatasync",
                Durability::Batch(SyncMethod::Fdatasync),
                100,
                200_000,
            ),
            (
                "record_msync",
                Durability::Record(SyncMethod::Msync),
                1,
                20_000,
            ),
            (
                "record_fdatasync",
                Durability::Record(SyncMethod::Fdatasync),
                1,
                20_000,
            ),
        ];
        for (name, durability, batch, records) in runs {
            let j = TempJournal::new(&o.dir, name);
            let mut writer = Writer::open(&j.0, config(SEGMENT, ahead, durability)).expect("open");
            let mut batches = new_histogram();
            let start = Instant::now();
            for _ in 0..records / batch {
                let t = Instant::now();
                for _ in 0..batch {
                    let seq = writer.next_sequence();
                    writer.append(seq, 1, seq, &p).expect("append");
                }
                writer.end_batch().expect("sync");
                batches.saturating_record(t.elapsed().as_nanos() as u64);
            }
            let ns = start.elapsed().as_nanos() as f64 / records as f64;
            let us = |q: f64| batches.value_at_quantile(q) as f64 / 1e3;
            eprintln!(
                "{name:<19}: {ns:8.0} ns/record; batch of {batch}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({records} records, {} syncs)",
                us(0.5),
                us(0.99),
                batches.max() as f64 / 1e3,
                writer.stats().syncs
            );
            json.push(format!(
                "\"durability_{name}\":{{\"ns_per_record\":{ns:.0},\"batch\":{batch},\"batch_p50_us\":{:.1},\"batch_p99_us\":{:.1},\"batch_max_us\":{:.1}}}",
                us(0.5),
                us(0.99),
                batches.max() as f64 / 1e3
            ));
        }
    }
    if o.json {
        println!("{{{}}}", json.join(","));
    }
}
