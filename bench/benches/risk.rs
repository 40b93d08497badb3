//! Run: `cargo bench -p ringbook-bench --bench risk -- [--json] [--rounds N] [--ops N] [--only off|on]`
//!
//! The cost of the risk and settlement stages: the mixed order-book workload of the `book`
//! harness (passive limits near the touch, cancels of live orders, market orders) through
//! ringbook with risk off (the book alone) and with risk on (pre-trade check and lock, settlement
//! of every fill, refunds of every cancel and market remainder), in the same run, rounds
//! interleaved and the starting mode alternated so drift in the machine's load falls on both.
//! Prints ns/op for each mode, the difference (the cost of risk) and the ratio.
//! `--json` prints `{"risk_off_ns_per_op":…,"risk_on_ns_per_op":…,"risk_cost_ns_per_op":…,
//! "risk_overhead_ratio":…}`.

use std::process::ExitCode;

use ringbook_bench::{
    apply_all, generate, ringbook_pool_for, time_throughput, RingbookBook, WorkloadSpec,
};
use ringbook_engine::RiskMode;

fn main() -> ExitCode {
    let mut json = false;
    let mut rounds = 7usize;
    // `--only off|on`: time one mode alone (for profilers); no comparison is printed.
    let mut only: Option<usize> = None;
    let mut spec = WorkloadSpec::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--ops" => spec.ops = args.next().and_then(|v| v.parse().ok()).unwrap_or(spec.ops),
            "--only" => {
                only = match args.next().as_deref() {
                    Some("off") => Some(0),
                    Some("on") => Some(1),
                    other => {
                        eprintln!("risk: --only takes off or on, not {other:?}");
                        return ExitCode::from(2);
                    }
                }
            }
            "--bench" => {}
            other => {
                eprintln!(
                    "risk: unknown argument {other:?}; usage: risk [--json] [--rounds N] [--ops N] [--only off|on]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let w = generate(&spec);
    let config = RingbookBook::config(ringbook_pool_for(&w), 100_000);
    let mut ns_per_op = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let mode = (round + k) % 2;
            if only.is_some_and(|m| m != mode) {
                continue;
            }
            let risk = if mode == 0 {
                RiskMode::Off
            } else {
                RiskMode::On
            };
            let mut book = RingbookBook::with_risk(&config, risk);
            apply_all(&mut book, &w.warmup);
            let (elapsed, volume) = time_throughput(&mut book, &w.ops);
            if volume != w.volume || book_errors(&book) != 0 {
                eprintln!(
                    "risk: {risk:?} traded {volume} lots (expected {}) with {} rejects: the modes must do the same work",
                    w.volume,
                    book_errors(&book)
                );
                return ExitCode::FAILURE;
            }
            if risk == RiskMode::On {
                if let Err(e) = book.engine().accounts().check_conservation() {
                    eprintln!("risk: conservation broken: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ns_per_op[mode].push(elapsed.as_nanos() as f64 / w.ops.len() as f64);
        }
    }
    if let Some(m) = only {
        let v = &ns_per_op[m];
        println!(
            "risk {}: {:?} ns/op",
            if m == 0 { "off" } else { "on" },
            v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>()
        );
        return ExitCode::SUCCESS;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&mut ns_per_op[0]);
    let on = median(&mut ns_per_op[1]);
    if json {
        println!(
            r#"{{"risk_off_ns_per_op":{off:.1},"risk_on_ns_per_op":{on:.1},"risk_cost_ns_per_op":{:.1},"risk_overhead_ratio":{:.3},"ops":{},"rounds":{rounds}}}"#,
            on - off,
            on / off,
            w.ops.len()
        );
    } else {
        println!(
            "workload: {} timed ops after {} warm-up ops; {rounds} rounds per mode, interleaved",
            w.ops.len(),
            w.warmup.len()
        );
        println!(
            "risk off: {off:.1} ns/op (median)   rounds: {:?}",
            ns_per_op[0]
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
        );
        println!(
            "risk on:  {on:.1} ns/op (median)   rounds: {:?}",
            ns_per_op[1]
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
        );
        println!(
            "cost of risk: {:.1} ns/op, {:+.1}% (target, issue #17: <= +25%: {})",
            on - off,
            (on / off - 1.0) * 100.0,
            if on / off <= 1.25 { "met" } else { "MISSED" }
        );
    }
    ExitCode::SUCCESS
}

fn book_errors(book: &RingbookBook) -> u64 {
    use ringbook_bench::BookAdapter;
    book.errors()
}
