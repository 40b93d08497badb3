//! Run: `cargo bench -p ringbook-bench --bench market_data -- [--json] [--rounds N] [--commands N]
//! [--warmup N] [--only off|on]`
//!
//! The cost of the market-data builder on the thread that consumes the engine's events: the
//! pipeline harness's command stream (`pipeline_workload`: passive limits near the touch,
//! cancels of recent orders, aggressive IOC limits and market orders over 64 users and every
//! configured symbol, with `orders_max` 2^20 as in the pipeline bench) through one engine on
//! one thread, its events either counted (off) or also applied to a `MarketData` builder with
//! `end_command` after each command (on) — what `pipeline --inline-output --market-data` does
//! on the business thread, without the rings, the producer thread and the clock reads.
//! Rounds interleave the two modes with the starting mode alternated, so drift in the
//! machine's speed falls on both; each round starts from a fresh engine (and builder) and
//! runs `--warmup` commands (default 1M) untimed before the timed `--commands` (default 2M),
//! so the timed part does not pay for first touches of the arrays' pages.
//! Prints ns/command for each mode, the difference (the builder's cost) and on/off as a
//! throughput ratio (issue 12's target: ≥ 0.9). `--json` prints `{"md_off_ns_per_command":…,
//! "md_on_ns_per_command":…,"md_cost_ns_per_command":…,"md_throughput_ratio":…,
//! "md_messages":…}`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use ringbook_bench::pipeline_workload;
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::prelude::{Command, Config, Engine, Event};

/// Engine time between commands: 1 µs (1M commands/s), so minutes and candles roll.
const STEP_NS: u64 = 1_000;
const START_NS: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

struct Round {
    ns: u128,
    events: u64,
    md_messages: u64,
}

fn round(
    config: &Config,
    deposits: &[Command],
    warmup: &[Command],
    commands: &[Command],
    md_on: bool,
) -> Round {
    let mut engine = Engine::new(config).expect("the default config is valid");
    let mut md = md_on.then(|| MarketData::new(config));
    let mut events = 0u64;
    let mut md_messages = 0u64;
    let mut ts = START_NS;
    for d in deposits {
        engine.process_at(ts, d, &mut |_: &Event| {});
    }
    // Untimed, with the builder fed too: books, pools and the builder's arrays get their pages.
    for cmd in warmup {
        ts += STEP_NS;
        match md.as_mut() {
            Some(md) => {
                engine.process_at(ts, cmd, &mut |e: &Event| md.apply(e, &mut |_| {}));
                md.end_command(ts, &mut |_| {});
            }
            None => engine.process_at(ts, cmd, &mut |_: &Event| {}),
        }
    }
    let t0 = Instant::now();
    for cmd in commands {
        ts += STEP_NS;
        match md.as_mut() {
            Some(md) => {
                engine.process_at(ts, cmd, &mut |e: &Event| {
                    events += 1;
                    md.apply(e, &mut |_| md_messages += 1);
                });
                md.end_command(ts, &mut |_| md_messages += 1);
            }
            None => engine.process_at(ts, cmd, &mut |e: &Event| {
                events += 1;
                black_box(e);
            }),
        }
    }
    let ns = t0.elapsed().as_nanos();
    black_box(&md);
    Round {
        ns,
        events,
        md_messages,
    }
}

fn main() -> ExitCode {
    let mut json = false;
    let mut rounds = 7usize;
    let mut n = 2_000_000usize;
    let mut warmup = 1_000_000usize;
    let mut only: Option<bool> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--commands" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n),
            "--warmup" => warmup = args.next().and_then(|v| v.parse().ok()).unwrap_or(warmup),
            "--only" => {
                only = match args.next().as_deref() {
                    Some("off") => Some(false),
                    Some("on") => Some(true),
                    other => {
                        eprintln!("market_data: --only takes off or on, not {other:?}");
                        return ExitCode::from(2);
                    }
                }
            }
            "--bench" => {}
            other => {
                eprintln!(
                    "market_data: unknown argument {other:?}; usage: market_data [--json] [--rounds N] [--commands N] [--warmup N] [--only off|on]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let mut config = Config::default();
    config.capacity.orders_max = 1 << 20;
    config.capacity.users_max = pipeline_workload::PIPELINE_USERS;
    let deposits = pipeline_workload::deposits(&config);
    let all = pipeline_workload::commands(&config, warmup + n, 42);
    let (warmup_commands, commands) = all.split_at(warmup);
    let mut ns = [Vec::new(), Vec::new()];
    let mut seen: [Option<(u64, u64)>; 2] = [None, None];
    for r in 0..rounds {
        for k in 0..2 {
            let on = (r + k) % 2 == 1;
            if only.is_some_and(|o| o != on) {
                continue;
            }
            let got = round(&config, &deposits, warmup_commands, commands, on);
            let key = (got.events, got.md_messages);
            // Every round does the same work: the same events (and messages) each time.
            if let Some(prev) = seen[on as usize].replace(key) {
                if prev != key {
                    eprintln!("market_data: round {r} produced {key:?}, an earlier one {prev:?}");
                    return ExitCode::FAILURE;
                }
            }
            ns[on as usize].push(got.ns as f64 / n as f64);
        }
    }
    let median = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let off = median(&mut ns[0]);
    let on = median(&mut ns[1]);
    let messages = seen[1].map_or(0, |s| s.1);
    match (off, on) {
        (Some(off), Some(on)) => {
            let ratio = off / on;
            if json {
                println!(
                    r#"{{"md_off_ns_per_command":{off:.1},"md_on_ns_per_command":{on:.1},"md_cost_ns_per_command":{:.1},"md_throughput_ratio":{ratio:.3},"md_messages":{messages},"commands":{n},"rounds":{rounds}}}"#,
                    on - off
                );
            } else {
                println!(
                    "{n} commands, {rounds} rounds per mode, medians: market data off {off:.1} ns/command, on {on:.1} ns/command"
                );
                println!(
                    "builder cost {:.1} ns/command; throughput on/off {ratio:.3} ({messages} market-data messages)",
                    on - off
                );
                println!(
                    "rounds, sorted, off: {:?}",
                    ns[0].iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>()
                );
                println!(
                    "rounds, sorted, on:  {:?}",
                    ns[1].iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>()
                );
            }
        }
        (Some(x), None) | (None, Some(x)) => println!("{x:.1} ns/command"),
        (None, None) => {}
    }
    ExitCode::SUCCESS
}
