//! `ringbook serve`: the gateway in front of the journaled pipeline.
//!
//! ```sh
//! cargo run --release -p ringbook-tools -- serve            # 127.0.0.1:7700, ./journal-data
//! ```
//!
//! Starts the pipeline (recovering from the journal directory), then the mio gateway, then the
//! web edge (HTTP/WebSocket on 127.0.0.1:8080 unless `--no-http`); runs until SIGINT or
//! SIGTERM, then stops the web edge, stops accepting, drains, flushes the journal and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args as ClapArgs;
use ringbook_engine::pipeline::{Layout, WaitStrategy};
use ringbook_engine::{Config, Pipeline};
use ringbook_gateway::server::{
    self, signal, EngineBackend, PipelineBackend, ServerConfig, Stats, WebBridge,
};
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
    /// Journal segment file size in bytes (a multiple of 4096, room for a 64 KiB record;
    /// default 64 MiB). Small segments make tests roll segments quickly.
    #[arg(long, value_name = "BYTES")]
    journal_segment_bytes: Option<u64>,
    /// Run the engine on the gateway thread without a journal (nothing survives a restart;
    /// for demos and tests).
    #[arg(long)]
    in_process: bool,
    /// Address of the web edge (REST, WebSocket, /metrics; docs/http-api.md).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Do not start the web edge.
    #[arg(long)]
    no_http: bool,
    /// Tokio worker threads of the web edge (never the engine's or the gateway's threads).
    #[arg(long, value_name = "N", default_value_t = 2)]
    http_threads: usize,
}

/// The web edge's listener and bridge, set up before the gateway starts.
struct WebPrep {
    listener: std::net::TcpListener,
    bridge: std::sync::Arc<WebBridge>,
}

/// Binds the web edge's port (before the journal is touched, like the gateway's) and makes the
/// bridge the gateway loop will serve.
fn web_prep(
    args: &Args,
    config: &Config,
    sc: &mut ServerConfig,
) -> Result<Option<WebPrep>, String> {
    if args.no_http {
        return Ok(None);
    }
    ringbook_web::check_config(&config.web)?;
    let listener = std::net::TcpListener::bind(args.http).map_err(|e| {
        format!(
            "cannot listen for HTTP on {}: {e} (another server on this port? --http ADDR or \
             --no-http)",
            args.http
        )
    })?;
    let bridge = WebBridge::new(config.web.requests_max, config.web.events_max);
    sc.web = Some(bridge.clone());
    Ok(Some(WebPrep { listener, bridge }))
}

/// Starts the web edge on its own runtime threads, once the gateway loop runs.
fn web_start(
    prep: Option<WebPrep>,
    args: &Args,
    config: &Config,
    stats: &std::sync::Arc<Stats>,
) -> Result<Option<ringbook_web::WebHandle>, String> {
    let Some(p) = prep else {
        return Ok(None);
    };
    let web = ringbook_web::start(ringbook_web::WebOptions {
        listener: p.listener,
        config: config.clone(),
        bridge: p.bridge,
        gateway_stats: stats.clone(),
        threads: args.http_threads,
    })?;
    eprintln!(
        "ringbook serve: web edge on http://{} ({} threads; token secret {})",
        web.local_addr(),
        args.http_threads.max(1),
        if web.generated_secret {
            "generated at start"
        } else {
            "from [web] jwt_secret"
        }
    );
    Ok(Some(web))
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
    let mut sc = ServerConfig::from_config(args.listen, &config.gateway);
    sc.currencies = config.currencies.len();
    // Bind before anything touches the journal directory: a start that fails on a busy port
    // leaves no journal file behind.
    let listener = server::Listener::bind(args.listen).map_err(|e| e.to_string())?;
    let web_prep = web_prep(&args, &config, &mut sc)?;
    if args.in_process {
        let backend = EngineBackend::new(&config).map_err(|e| e.to_string())?;
        let handle = server::start_on(listener, sc, backend).map_err(|e| e.to_string())?;
        eprintln!(
            "ringbook serve: listening on {} (in-process engine, no journal)",
            handle.local_addr()
        );
        let web = web_start(web_prep, &args, &config, handle.stats())?;
        wait_for_signal();
        if let Some(w) = web {
            w.shutdown();
        }
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
    let mut builder = Pipeline::builder(&config)
        .layout(args.layout)
        .wait(args.wait)
        .inline_output(args.inline_output)
        .journal(&args.journal, journal_config(&args));
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
    log_recovery(rec);
    let handle = match server::start_on(listener, sc, backend) {
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
    let web = web_start(web_prep, &args, &config, handle.stats())?;
    wait_for_signal();
    eprintln!("ringbook serve: shutting down (draining, flushing the journal)");
    if let Some(w) = web {
        w.shutdown();
    }
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

fn journal_config(args: &Args) -> JournalConfig {
    let mut journal = JournalConfig::default();
    if let Some(bytes) = args.journal_segment_bytes {
        journal.segment_len_bytes = bytes;
    }
    journal
}

/// Logs everything recovery cut or skipped: nothing is dropped without a line saying so.
fn log_recovery(rec: &ringbook_engine::pipeline::RecoveryInfo) {
    for cut in rec.journal.cuts() {
        eprintln!(
            "ringbook serve: journal recovery cut a torn final record: {} offset {}, {} byte(s) \
             discarded ({})",
            cut.path.display(),
            cut.offset,
            cut.bytes_discarded,
            cut.damage.map_or(
                "its length word was never written".to_string(),
                |d| format!("{d:?}")
            )
        );
    }
    for path in &rec.journal.removed_unused {
        eprintln!(
            "ringbook serve: journal recovery removed an unused pre-allocated segment {}",
            path.display()
        );
    }
    for (path, why) in &rec.skipped_snapshots {
        eprintln!(
            "ringbook serve: skipped invalid snapshot {}: {why}",
            path.display()
        );
    }
}

fn wait_for_signal() {
    while !signal::received() {
        std::thread::sleep(Duration::from_millis(50));
    }
}
