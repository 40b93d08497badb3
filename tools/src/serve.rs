//! `ringbook serve`: the gateway in front of the journaled pipeline.
//!
//! ```sh
//! cargo run --release -p ringbook-tools -- serve            # 127.0.0.1:7700, ./journal-data
//! ```
//!
//! Starts the pipeline (recovering from the journal directory), then the mio gateway; runs until
//! SIGINT or SIGTERM, then stops accepting, drains, flushes the journal and exits 0.
//!
//! The gateway publishes market data (docs/market-data.md) unless `--no-market-data`: before
//! the pipeline starts, the market data is rebuilt by replaying the journal from its first
//! record (read-only), so `md_seq`, candles, tape and ticker continue where they were; if the
//! first records were pruned, the book is seeded from the recovered state instead (`md_seq`
//! restarts at 0, history empty).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args as ClapArgs;
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::pipeline::{
    replay_journal, replay_journal_outputs, Layout, OutputKind, WaitStrategy,
};
use ringbook_engine::{Config, Pipeline, RiskMode};
use ringbook_gateway::server::{self, signal, EngineBackend, PipelineBackend, ServerConfig};
use ringbook_journal::JournalConfig;

/// Arguments of `ringbook serve`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Engine configuration (TOML, with `[[gateway.accounts]]`); the embedded default (demo
    /// accounts alice/bob/carol/dave and operators ops1/ops2) when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Journal directory (created if missing; recovered from on start).
    #[arg(long, default_value = "./journal-data")]
    journal: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Pipeline thread layout: fused, j|rms, split, or inline (no pipeline thread: the gateway
    /// thread journals and processes each command itself — no hand-off, no wake-up; the
    /// lowest latency when there are fewer cores than threads).
    #[arg(long, default_value = "fused")]
    layout: Layout,
    /// Pipeline wait strategy: busy-spin, busy-spin-hint, yield, sleep.
    #[arg(long, default_value = "yield")]
    wait: WaitStrategy,
    /// How the pipeline's output thread waits (default: the same as `--wait`). Ignored with
    /// `--inline-output`.
    #[arg(long)]
    output_wait: Option<WaitStrategy>,
    /// Run the output handler on the pipeline's last stage thread: no output thread (one
    /// thread fewer to schedule; the right choice on 2 cores).
    #[arg(long)]
    inline_output: bool,
    /// Pipeline inbound ring size in commands (a power of two; default 16384). A small ring
    /// makes back-pressure easy to see (tests).
    #[arg(long)]
    ring_size: Option<usize>,
    /// Run the engine on the gateway thread without a journal (nothing survives a restart;
    /// for demos and tests).
    #[arg(long)]
    in_process: bool,
    /// Publish no market data (subscriptions are refused) and skip rebuilding it at start.
    #[arg(long)]
    no_market_data: bool,
    /// Connections at once (each has its buffers allocated at start).
    #[arg(long, default_value_t = 64)]
    conns_max: usize,
}

/// The market-data builder for a server starting on journal `dir`: rebuilt from every record,
/// or (when the first records were pruned) seeded from the state a snapshot-based replay
/// recovers.
fn market_data_from_journal(config: &Config, dir: &Path) -> Result<MarketData, String> {
    let listing = ringbook_journal::list(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if listing.segments.is_empty() && listing.snapshots.is_empty() {
        return Ok(MarketData::new(config));
    }
    let mut md = MarketData::new(config);
    let first = JournalConfig::default().first_sequence;
    let full = replay_journal_outputs(
        config,
        RiskMode::On,
        dir,
        first,
        None,
        &mut |o| match o.kind {
            OutputKind::Event(ref e) => md.apply(e, &mut |_| {}),
            OutputKind::Done => md.end_command(o.ts, &mut |_| {}),
        },
    );
    match full {
        Ok(_) => Ok(md),
        Err(e) => {
            eprintln!(
                "ringbook serve: market data: the journal does not replay from its start ({e}); \
                 seeding the book from the recovered state, history empty"
            );
            let (engine, _) = replay_journal(config, RiskMode::On, dir, first, None)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(MarketData::from_engine(&engine))
        }
    }
}

/// Runs the server until a signal.
pub fn run(args: Args) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbook serve: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: Args) -> Result<(), String> {
    let config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if config.gateway.accounts.is_empty() {
        return Err("the configuration has no [[gateway.accounts]]: nobody could log in".into());
    }
    signal::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let mut sc = ServerConfig::new(args.listen, config.gateway.accounts.clone());
    sc.currencies = config.currencies.len();
    if args.conns_max == 0 || args.conns_max > 4096 {
        return Err("--conns-max must be 1..=4096".into());
    }
    sc.conns_max = args.conns_max;
    sc.sessions_max = sc.sessions_max.max(args.conns_max + 16);
    if args.in_process {
        let backend = EngineBackend::new(&config).map_err(|e| e.to_string())?;
        let md = (!args.no_market_data).then(|| MarketData::from_engine(backend.engine()));
        let handle = server::start_with_market_data(sc, backend, md).map_err(|e| e.to_string())?;
        eprintln!(
            "ringbook serve: listening on {} (in-process engine, no journal)",
            handle.local_addr()
        );
        wait_for_signal();
        let backend = handle.shutdown().map_err(|e| e.to_string())?;
        eprintln!(
            "ringbook serve: stopped; state hash {}",
            backend.engine().state_hash()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&args.journal)
        .map_err(|e| format!("journal directory {}: {e}", args.journal.display()))?;
    let probe = args.journal.join(".ringbook-write-probe");
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "journal directory {} is not writable: {e}",
            args.journal.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    let md = if args.no_market_data {
        None
    } else {
        Some(market_data_from_journal(&config, &args.journal)?)
    };
    let mut builder = Pipeline::builder(&config)
        .layout(args.layout)
        .wait(args.wait)
        .inline_output(args.inline_output)
        .journal(&args.journal, JournalConfig::default());
    if let Some(w) = args.output_wait {
        builder = builder.output_wait(w);
    }
    if let Some(n) = args.ring_size {
        builder = builder.ring_size(n);
    }
    let backend =
        PipelineBackend::start(builder).map_err(|e| format!("starting the pipeline: {e}"))?;
    let rec = backend.pipeline().recovery();
    eprintln!(
        "ringbook serve: journal {} recovered: {} records replayed, next sequence {}",
        args.journal.display(),
        rec.replayed,
        rec.next_seq
    );
    let handle = match server::start_with_market_data(sc, backend, md) {
        Ok(h) => h,
        Err(e) => return Err(e.to_string()),
    };
    eprintln!(
        "ringbook serve: listening on {} (layout {}, wait {:?}, output {}, journal {})",
        handle.local_addr(),
        args.layout,
        args.wait,
        if args.inline_output || args.layout == Layout::Inline {
            "inline".to_string()
        } else {
            format!("thread, wait {:?}", args.output_wait.unwrap_or(args.wait))
        },
        args.journal.display()
    );
    wait_for_signal();
    eprintln!("ringbook serve: shutting down (draining, flushing the journal)");
    let stats = handle.stats().clone();
    let backend = handle.shutdown().map_err(|e| e.to_string())?;
    eprintln!(
        "ringbook serve: gateway stopped: {} connections, {} commands, {} back-pressure pauses, \
         {} outbound-backlog pauses, {} loop wake-ups from the pipeline; disconnects: {} slow \
         consumers, {} protocol violations, {} timeouts",
        stats.connections.load(Ordering::Relaxed),
        stats.commands.load(Ordering::Relaxed),
        stats.backpressure.load(Ordering::Relaxed),
        stats.outbound_pauses.load(Ordering::Relaxed),
        backend.wakes(),
        stats.slow_consumers.load(Ordering::Relaxed),
        stats.protocol_disconnects.load(Ordering::Relaxed),
        stats.timeouts.load(Ordering::Relaxed),
    );
    let report = backend
        .shutdown()
        .map_err(|e| format!("pipeline shutdown: {e}"))?;
    eprintln!(
        "ringbook serve: stopped after {} commands; state hash {}",
        report.commands, report.state_hash
    );
    Ok(())
}

fn wait_for_signal() {
    while !signal::received() {
        std::thread::sleep(Duration::from_millis(50));
    }
}
