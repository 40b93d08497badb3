//! `ringbook serve`: the gateway in front of the journaled pipeline.
//!
//! ```sh
//! cargo run --release -p ringbook-tools -- serve            # 127.0.0.1:7700, ./journal-data
//! ```
//!
//! Starts the pipeline (recovering from the journal directory, logging the recovered state
//! hash), then the mio gateway, then the web edge (HTTP/WebSocket on 127.0.0.1:8080 unless
//! `--no-http`); runs until SIGINT or SIGTERM, then stops the web edge, stops accepting, drains,
//! flushes the journal and exits 0. If a pipeline thread (a stage or the output thread) dies,
//! the gateway stops, the cause is logged and the process exits 3; a restart recovers from the
//! journal.
//!
//! Without `--layout`, the layout and wait strategy are chosen from the number of cores and
//! the durability policy ([`default_shape`]) and the choice is logged.
//!
//! The gateway publishes market data (docs/market-data.md) unless `--no-market-data`: before
//! the pipeline starts, the market data is rebuilt by replaying the journal from its first
//! record (read-only), so `md_seq`, candles, tape and ticker continue where they were; if the
//! first records were pruned, the book is seeded from the recovered state instead (`md_seq`
//! restarts at 0, history empty).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::pipeline::{
    replay_journal, replay_journal_outputs, FaultPoint, Layout, OutputKind, WaitStrategy,
};
use ringbook_engine::{Config, Pipeline, PipelineBuilder, RiskMode, Seq};
use ringbook_gateway::server::{
    self, sched, signal, EngineBackend, PipelineBackend, ServerConfig, Stats, WebBridge,
};
use ringbook_journal::{Durability, JournalConfig, SyncMethod};
use ringbook_web::withdrawals::PendingWithdrawals;

/// Exit status when the server stopped because a pipeline thread or the gateway died.
pub const EXIT_FAILED: u8 = 3;

/// Commands between snapshots unless `--snapshot-every` says otherwise.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 1_000_000;

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
    /// lowest latency when there are fewer cores than threads). Default: inline below 4 cores
    /// with `--durability none`, fused otherwise (logged at start).
    #[arg(long)]
    layout: Option<Layout>,
    /// Pipeline wait strategy: phased (spin, yield, then park until the next command: idle
    /// costs nothing), busy-spin, busy-spin-hint, yield, sleep:<µs>. Default: phased.
    #[arg(long)]
    wait: Option<WaitStrategy>,
    /// How the pipeline's output thread waits (default: the same as `--wait`). Ignored with
    /// `--inline-output`.
    #[arg(long)]
    output_wait: Option<WaitStrategy>,
    /// Run the output handler on the pipeline's last stage thread: no output thread (one
    /// thread fewer to schedule; the right choice on 2 cores).
    #[arg(long)]
    inline_output: bool,
    /// Pipeline inbound ring size in commands (a power of two, at most 4 194 304; default
    /// 16384). A small ring makes back-pressure easy to see (tests).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 22))]
    ring_size: Option<u64>,
    /// Journal segment file size in bytes (a multiple of 4096, room for a 64 KiB record, at
    /// most 4 GiB; default 64 MiB). Small segments make tests roll segments quickly.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    journal_segment_bytes: Option<u64>,
    /// Run the engine on the gateway thread without a journal (nothing survives a restart;
    /// for demos and tests).
    #[arg(long)]
    in_process: bool,
    /// When the journal is forced to disk before a command is acknowledged: none (the page
    /// cache: survives a crash of the process, not a power loss), batch (one msync per ring
    /// batch), record (one msync per command). `batch:fdatasync` / `record:fdatasync` sync
    /// with fdatasync instead. Costs in docs/operations.md.
    #[arg(long, default_value = "none", value_parser = parse_durability)]
    durability: Durability,
    /// Commands between snapshots (0: never). A restart replays only the journal after the
    /// newest snapshot.
    #[arg(long, default_value_t = SNAPSHOT_EVERY_DEFAULT)]
    snapshot_every: u64,
    /// Keep only the newest K snapshots, and remove the journal segments that only older ones
    /// needed (default: keep everything).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    keep_snapshots: Option<u64>,
    /// FAULT INJECTION, for tests of failure handling only: `business@N` or `output@N` makes
    /// that pipeline stage panic at command N, as a bug would.
    #[arg(long, hide = true, value_name = "POINT@SEQ", value_parser = parse_fault)]
    inject_panic: Option<(FaultPoint, Seq)>,
    /// Also run demo bots against this server (a market maker and two takers on BTC-KRW, as
    /// the default config's alice, bob and carol, funded by ops1; docs/strategies.md).
    #[arg(long)]
    demo: bool,
    /// Publish no market data (subscriptions are refused) and skip rebuilding it at start.
    #[arg(long)]
    no_market_data: bool,
    /// Connections at once (each has its buffers allocated at start); default: the config's
    /// `[gateway] conns_max`.
    #[arg(long)]
    conns_max: Option<usize>,
    /// Address of the web edge (REST, WebSocket, /metrics; docs/http-api.md).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Do not start the web edge.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
    /// Tokio worker threads of the web edge (never the engine's or the gateway's threads;
    /// 1 to 256).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    http_threads: u16,
    /// The gateway loop never sleeps in the kernel: it polls its sockets with a zero timeout
    /// in a loop, keeping one core busy even when idle (lowest round trip; measure with
    /// `loadgen --busy-poll`). Counted with the pipeline's busy-spinning threads against the
    /// cores.
    #[arg(long)]
    busy_poll: bool,
    /// Project the journal into this PostgreSQL database as it is written, on a thread of its
    /// own (docs/persistence.md): it reads the journal files, never the engine's threads, so a
    /// slow or unreachable database makes the projection lag, never trading.
    #[arg(long, value_name = "URL", conflicts_with = "in_process")]
    postgres: Option<String>,
    /// Scheduling class of the `--postgres` projection's threads. `idle` (Linux's SCHED_IDLE):
    /// beyond a sliver (~0.3 % of a core per competing thread) they get a core only when no
    /// ordinary thread wants it, and the gateway or a pipeline stage that wakes takes it from
    /// them at once, so while the machine is busy the projection lags rather than order entry
    /// (docs/persistence.md). `normal`: ordinary threads.
    #[arg(
        long,
        value_enum,
        value_name = "CLASS",
        default_value = "idle",
        requires = "postgres"
    )]
    projection_sched: ProjectionSched,
    /// CPUs the `--postgres` projection's threads run on (e.g. `3`, `2,3`, `2-5`; as `taskset`
    /// numbers them), to keep it off the cores order entry uses; with the class of
    /// `--projection-sched`. Default: wherever the kernel puts them.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list, requires = "postgres")]
    projection_cpus: Option<CpuList>,
}

/// A list of CPU numbers (`serve --projection-cpus`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CpuList(Vec<usize>);

/// `3`, `2,3`, `2-5`, `0,2-3`: CPU numbers, each below `CPU_SETSIZE` (1024: the kernel's
/// affinity set).
fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    const CPUS: usize = 1024; // glibc's CPU_SETSIZE
    let number = |t: &str| {
        t.trim()
            .parse::<usize>()
            .ok()
            .filter(|&c| c < CPUS)
            .ok_or_else(|| {
                format!(
                    "{s:?}: {t:?} is not a CPU number (0 to {}); a list is like 3, 2,3 or 2-5",
                    CPUS - 1
                )
            })
    };
    let mut cpus = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("{part:?}: a range runs low to high"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuList(cpus))
}

/// `serve --projection-sched`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ProjectionSched {
    /// SCHED_IDLE: only on an otherwise idle core.
    Idle,
    /// An ordinary thread, sharing the cores with the exchange's own.
    Normal,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    let (level, method) = s.split_once(':').unwrap_or((s, "msync"));
    let method = match method {
        "msync" => SyncMethod::Msync,
        "fdatasync" => SyncMethod::Fdatasync,
        m => {
            return Err(format!(
                "unknown sync method {m:?}: expected msync or fdatasync"
            ))
        }
    };
    match level {
        "none" if s == "none" => Ok(Durability::None),
        "batch" => Ok(Durability::Batch(method)),
        "record" => Ok(Durability::Record(method)),
        _ => Err(format!(
            "unknown durability {s:?}: expected none, batch or record (batch:fdatasync, \
             record:fdatasync)"
        )),
    }
}

fn parse_fault(s: &str) -> Result<(FaultPoint, Seq), String> {
    let (point, seq) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected POINT@SEQ, e.g. business@100"))?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| format!("{seq:?} is not a command sequence"))?;
    if seq == 0 {
        return Err("command sequences start at 1".into());
    }
    Ok((point.parse()?, Seq(seq)))
}

/// What `serve` runs when `--layout` is not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The pipeline layout.
    pub layout: Layout,
    /// How its threads wait (unless `--wait` says otherwise).
    pub wait: WaitStrategy,
    /// Whether the output handler runs on the stage thread (no output thread).
    pub inline_output: bool,
    /// Why, for the start-up log.
    pub why: &'static str,
}

/// The shape for a machine with `cores` cores and this durability policy.
///
/// Below 4 cores the gateway thread, a pipeline thread and an output thread cannot each have a
/// core: every hand-off then waits for the scheduler, so the inline layout (journal and engine
/// on the gateway thread) has the lowest latency, and an idle server runs only the gateway's
/// 20 ms timer. Except under a durability policy: inline syncs the journal once per command on
/// the event loop, where the fused thread syncs once per batch of up to 256 (measured in
/// docs/benchmarks.md), so then it is `fused`, its handler inline (one thread fewer). From 4
/// cores the fused pipeline takes the journal and engine off the gateway thread, with an output
/// thread. Threads wait `phased`: idle, they park instead of spinning.
pub fn default_shape(cores: usize, durability: Durability) -> Shape {
    match (cores < 4, durability == Durability::None) {
        (true, true) => Shape {
            layout: Layout::Inline,
            wait: WaitStrategy::Phased,
            inline_output: false,
            why: "fewer than 4 cores: no pipeline thread",
        },
        (true, false) => Shape {
            layout: Layout::Fused,
            wait: WaitStrategy::Phased,
            inline_output: true,
            why: "fewer than 4 cores and a durability policy: one pipeline thread, one sync per \
                  batch",
        },
        (false, _) => Shape {
            layout: Layout::Fused,
            wait: WaitStrategy::Phased,
            inline_output: false,
            why: "4 cores or more: the gateway, the pipeline and its output thread a core each",
        },
    }
}

/// The market-data builder for a server starting on journal `dir`: rebuilt from every record,
/// or (when the first records were pruned) seeded from the state a snapshot-based replay
/// recovers.
///
/// With `web`, the withdrawals pending at the end of the replay (operators' list on the web
/// edge). The web edge's market data needs no replay of its own: it copies this builder from
/// the gateway when a reader needs it.
fn market_data_from_journal(
    config: &Config,
    dir: &Path,
    web: bool,
) -> Result<(MarketData, Option<WebSeed>), String> {
    let listing = ringbook_journal::list(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if listing.segments.is_empty() && listing.snapshots.is_empty() {
        return Ok((
            MarketData::new(config),
            web.then(|| PendingWithdrawals::new(config)),
        ));
    }
    let mut md = MarketData::new(config);
    let withdrawals = PendingWithdrawals::new(config);
    let first = JournalConfig::default().first_sequence;
    let full = replay_journal_outputs(
        config,
        RiskMode::On,
        dir,
        first,
        None,
        &mut |o| match o.kind {
            OutputKind::Event(ref e) => {
                md.apply(e, &mut |_| {});
                if web {
                    withdrawals.apply(e);
                }
            }
            OutputKind::Done => md.end_command(o.ts, &mut |_| {}),
        },
    );
    match full {
        Ok(_) => Ok((md, web.then_some(withdrawals))),
        Err(e) => {
            // (Said only once the recovered state is there: a journal that does not recover
            // at all is refused with that error alone.)
            let (engine, _) = replay_journal(config, RiskMode::On, dir, first, None)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            eprintln!(
                "ringbook serve: market data: the journal does not replay from its start ({e}); \
                 seeding the book from the recovered state, history empty"
            );
            Ok((
                MarketData::from_engine(&engine),
                web.then(|| PendingWithdrawals::from_engine(config, &engine)),
            ))
        }
    }
}

/// The web edge's listener and bridge, set up before the gateway starts.
struct WebPrep {
    listener: std::net::TcpListener,
    bridge: std::sync::Arc<WebBridge>,
    /// The web edge serves market data (copies of the gateway's builder; not with
    /// `--no-market-data`).
    md: bool,
    /// The withdrawals pending at start (from the gateway builder's replay).
    withdrawals: Option<PendingWithdrawals>,
}

/// What the journal's replay gives the web edge: the pending withdrawals.
type WebSeed = PendingWithdrawals;

impl WebPrep {
    /// The web edge serves market data, copied from the gateway's builder when needed.
    fn market_data(&mut self, on: bool) {
        self.md = on;
    }

    /// As [`WebPrep::market_data`], with the withdrawals pending at start.
    fn seed(&mut self, seed: Option<WebSeed>) {
        if let Some(w) = seed {
            self.market_data(true);
            self.withdrawals = Some(w);
        }
    }
}

/// Refuses a configuration whose tables do not fit in this machine's memory, before anything
/// is allocated from it: the engine's (and the projection's engine's), the market-data
/// builders' (the publisher's, and with the web edge, its copy and the slot it is refreshed
/// through), and the gateway's buffers. Logs what they take.
fn check_memory(args: &Args, config: &Config, sc: &ServerConfig) -> Result<(), String> {
    use ringbook_engine::memory::{self, Bytes, Copies};
    let copies = Copies {
        engines: 1 + u64::from(args.postgres.is_some()),
        market_data: match (args.no_market_data, args.no_http) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 3,
        },
        others: vec![(
            sc.buffer_bytes(),
            format!(
                "the gateway's buffers ([gateway] conns_max = {} + prelogin_max = {} \
                 connections, sessions_max = {} retransmission rings)",
                sc.conns_max, sc.prelogin_max, sc.sessions_max
            ),
        )],
    };
    let f = memory::check(config, &copies).map_err(|e| e.to_string())?;
    eprintln!(
        "ringbook serve: tables and buffers take {} ({} engine(s) × {}, {} market-data \
         builder(s) × {}, gateway buffers {})",
        Bytes(copies.bytes(&f)),
        copies.engines,
        Bytes(f.engine()),
        copies.market_data,
        Bytes(f.market_data()),
        Bytes(sc.buffer_bytes()),
    );
    Ok(())
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
    let listener = server::limits::listen(args.http).map_err(|e| {
        format!(
            "cannot listen for HTTP on {}: {e} (another server on this port? --http ADDR or \
             --no-http)",
            args.http
        )
    })?;
    // Per-user watching: a user event crosses only for a user the web edge wants (a live
    // WebSocket session, an open Upbit-API order).
    let users: Vec<u32> = config
        .gateway
        .accounts
        .iter()
        .filter_map(|a| a.user)
        .collect();
    let bridge = WebBridge::with_users(config.web.requests_max, config.web.events_max, &users);
    sc.web = Some(bridge.clone());
    Ok(Some(WebPrep {
        listener,
        bridge,
        md: false,
        withdrawals: None,
    }))
}

/// Raises the open-files limit to its hard limit and, where the web edge's `conns_max` would
/// still not fit beside the gateway's connections and the server's own files (journal,
/// snapshots, threads' pipes: 256 kept; and the web edge's lingering closes, `ringbook_web::LINGER_SOCKETS_MAX`),
/// lowers it to what fits and says so: a full web edge
/// then answers 503 `TOO_MANY_CONNECTIONS` instead of failing to accept.
fn fit_open_files(config: &mut Config, sc: &ServerConfig, web: bool) {
    let Some(files) = server::limits::raise_open_files() else {
        return;
    };
    // The gateway's connection slots: logged in and not yet (docs/operations.md).
    let gateway = sc.conns_max + sc.prelogin_max;
    let fits = (files as usize)
        .saturating_sub(gateway + 256 + ringbook_web::LINGER_SOCKETS_MAX)
        .max(1);
    if web && config.web.conns_max > fits {
        eprintln!(
            "ringbook serve: [web] conns_max lowered from {} to {fits}: this process may open {files} \
             files (ulimit -n), and the gateway keeps {gateway} of them for its connections",
            config.web.conns_max
        );
        config.web.conns_max = fits;
        config.web.conns_per_addr = config.web.conns_per_addr.min(fits);
    }
}

/// Starts the web edge on its own runtime threads, once the gateway loop runs.
fn web_start(
    prep: Option<WebPrep>,
    args: &Args,
    config: &Config,
    stats: &std::sync::Arc<Stats>,
    pipeline: Option<ringbook_engine::PipelineGauges>,
    projection: Option<ringbook_web::ProjectionProbe>,
) -> Result<Option<ringbook_web::WebHandle>, String> {
    let Some(p) = prep else {
        return Ok(None);
    };
    let web = ringbook_web::start(ringbook_web::WebOptions {
        listener: p.listener,
        config: config.clone(),
        bridge: p.bridge,
        gateway_stats: stats.clone(),
        pipeline,
        threads: usize::from(args.http_threads),
        market_data: p.md,
        withdrawals: p.withdrawals,
        projection,
    })?;
    eprintln!(
        "ringbook serve: web edge on http://{} ({} threads; token secret {})",
        web.local_addr(),
        usize::from(args.http_threads),
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
        Err(Stop::Start(e)) => {
            eprintln!("ringbook serve: {e}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(e)) => {
            eprintln!("ringbook serve: FATAL: {e}; exiting (a restart recovers from the journal)");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Why `serve` ended without a clean shutdown.
#[derive(Debug)]
enum Stop {
    /// It could not start (bad configuration, busy port, unusable journal): exit 2.
    Start(String),
    /// It was running and a pipeline thread or the gateway died: exit [`EXIT_FAILED`].
    Failed(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Start(e)
    }
}

impl From<&str> for Stop {
    fn from(e: &str) -> Stop {
        Stop::Start(e.to_string())
    }
}

/// The pipeline's stage and output waits as the flags (or the shape chosen for the cores)
/// configure them: `None` for the inline layout, which has no pipeline thread. The output's
/// wait is one that parks when the output runs inline, on the business thread.
fn pipeline_waits(args: &Args, cores: usize) -> Option<(Layout, WaitStrategy, WaitStrategy)> {
    let (layout, wait, inline_output) = chosen_shape(args, cores);
    if layout == Layout::Inline {
        return None;
    }
    let output_wait = if inline_output {
        WaitStrategy::Yield
    } else {
        args.output_wait.unwrap_or(wait)
    };
    Some((layout, wait, output_wait))
}

/// `--busy-poll` keeps one core for the gateway loop: the pipeline's busy-spinning threads must
/// fit in the others (never more spinning threads than cores). The inline layout has no
/// pipeline thread: the loop is the only spinner.
fn check_busy_poll(args: &Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some((layout, wait, output_wait)) = pipeline_waits(args, cores) else {
        return Ok(());
    };
    ringbook_engine::pipeline::check_spinning(layout, wait, output_wait, cores.saturating_sub(1))
        .map_err(|e| {
            format!(
                "--busy-poll keeps one of the {cores} cores busy for the gateway loop, which \
                 leaves too few for this layout: {e} (use --layout inline, or a --wait that parks)"
            )
        })
}

/// The threads that never leave their core on a machine with `cores` cores: the pipeline's
/// busy-spinning stages and output, and the gateway loop under `--busy-poll`.
fn spinners(args: &Args, cores: usize) -> usize {
    let pipeline = pipeline_waits(args, cores).map_or(0, |(layout, wait, output_wait)| {
        ringbook_engine::pipeline::spinning_threads(layout, wait, output_wait)
    });
    pipeline + usize::from(args.busy_poll)
}

/// A warning when the projection runs in `SCHED_IDLE` on a machine its own spinners keep from
/// ever being idle: it then gets only the idle class's sliver of a core and falls behind
/// without bound (docs/persistence.md, "Lag").
fn idle_projection_warning(spinners: usize, cores: usize) -> Option<String> {
    (spinners >= cores).then(|| {
        format!(
            "ringbook serve: warning: the projection runs only on idle cores (--projection-sched \
             idle), but {spinners} busy-spinning thread(s) (the pipeline's --wait/--output-wait \
             and --busy-poll) keep all {cores} core(s) busy: it will get a sliver of a core and \
             fall behind (watch ringbook_projection_lag_commands on /metrics); give it a core \
             (a --wait that parks, fewer spinners) or use --projection-sched normal"
        )
    })
}

/// The layout, stage wait and whether the output runs inline, as the flags give them or the
/// shape chosen for `cores` fills them in.
fn chosen_shape(args: &Args, cores: usize) -> (Layout, WaitStrategy, bool) {
    let auto = default_shape(cores, args.durability);
    (
        args.layout.unwrap_or(auto.layout),
        args.wait.unwrap_or(auto.wait),
        args.inline_output || (args.layout.is_none() && auto.inline_output),
    )
}

fn pipeline_builder(args: &Args, config: &Config) -> (PipelineBuilder, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let auto = default_shape(cores, args.durability);
    let (layout, wait, inline_output) = chosen_shape(args, cores);
    let mut builder = Pipeline::builder(config)
        .layout(layout)
        .wait(wait)
        .inline_output(inline_output)
        .snapshot_every(args.snapshot_every)
        .journal(
            &args.journal,
            JournalConfig {
                durability: args.durability,
                ..journal_config(args)
            },
        );
    if let Some(w) = args.output_wait {
        builder = builder.output_wait(w);
    }
    // The inline layout has no ring (warned below): its size is not checked either.
    if let Some(n) = args.ring_size.filter(|_| layout != Layout::Inline) {
        builder = builder.ring_size(n as usize);
    }
    if let Some(k) = args.keep_snapshots {
        builder = builder.keep_snapshots(k as usize);
    }
    if let Some((point, seq)) = args.inject_panic {
        eprintln!(
            "ringbook serve: FAULT INJECTION: the {point:?} stage will panic at command {seq}"
        );
        builder = builder.inject_panic(point, seq);
    }
    if layout == Layout::Inline
        && (args.wait.is_some()
            || args.output_wait.is_some()
            || args.inline_output
            || args.ring_size.is_some())
    {
        eprintln!(
            "ringbook serve: warning: --wait, --output-wait, --inline-output and --ring-size \
             configure pipeline threads; the inline layout has none and ignores them"
        );
    }
    let chosen = if args.layout.is_some() {
        "given".to_string()
    } else {
        format!("chosen for {cores} cores: {}", auto.why)
    };
    let shape = if layout == Layout::Inline {
        format!("layout inline ({chosen})")
    } else {
        format!(
            "layout {layout} ({chosen}), wait {}, output {}",
            wait_name(wait),
            if inline_output {
                "inline".to_string()
            } else {
                format!(
                    "thread, wait {}",
                    wait_name(args.output_wait.unwrap_or(wait))
                )
            }
        )
    };
    let durability = match args.durability {
        Durability::None => "none".to_string(),
        Durability::Batch(m) => format!("batch ({m:?})"),
        Durability::Record(m) => format!("record ({m:?})"),
    };
    let snapshots = match (args.snapshot_every, args.keep_snapshots) {
        (0, _) => "snapshots off".to_string(),
        (n, None) => format!("a snapshot every {n} commands, all kept"),
        (n, Some(k)) => format!("a snapshot every {n} commands, newest {k} kept"),
    };
    (
        builder,
        format!("{shape}, durability {durability}, {snapshots}"),
    )
}

fn wait_name(w: WaitStrategy) -> String {
    match w {
        WaitStrategy::BusySpin => "busy-spin".into(),
        WaitStrategy::BusySpinHint => "busy-spin-hint".into(),
        WaitStrategy::Yield => "yield".into(),
        WaitStrategy::Phased => "phased".into(),
        WaitStrategy::Sleep(d) => format!("sleep:{}", d.as_micros()),
    }
}

fn serve(args: Args) -> Result<(), Stop> {
    let mut config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if config.gateway.accounts.is_empty() {
        return Err("the configuration has no [[gateway.accounts]]: nobody could log in".into());
    }
    signal::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let mut sc = ServerConfig::from_config(args.listen, &config.gateway);
    sc.reference_data(&config);
    sc.busy_poll = args.busy_poll;
    if let Some(n) = args.conns_max {
        if n == 0 || n > server::CONNS_MAX {
            return Err(format!("--conns-max must be 1..={}", server::CONNS_MAX).into());
        }
        sc.conns_max = n;
        sc.sessions_max = sc.sessions_max.max(n + 16);
    }
    // Every size is checked before anything is allocated from it or the journal is touched.
    sc.check(None)
        .map_err(|e| format!("invalid gateway config: {e}"))?;
    if !args.no_http {
        ringbook_web::check_config(&config.web)?;
    }
    check_memory(&args, &config, &sc)?;
    fit_open_files(&mut config, &sc, !args.no_http);
    // Bind before anything touches the journal directory: a start that fails on a busy port
    // leaves no journal file behind.
    let listener = server::Listener::bind(args.listen).map_err(|e| e.to_string())?;
    let mut web_prep = web_prep(&args, &config, &mut sc)?;
    if args.in_process {
        let backend = EngineBackend::new(&config).map_err(|e| e.to_string())?;
        let md = (!args.no_market_data).then(|| MarketData::from_engine(backend.engine()));
        if let Some(p) = web_prep.as_mut() {
            p.market_data(!args.no_market_data);
        }
        let handle = server::start_on(listener, sc, backend, md).map_err(|e| e.to_string())?;
        eprintln!(
            "ringbook serve: listening on {} (in-process engine, no journal)",
            handle.local_addr()
        );
        if args.demo {
            ringbook_strategy::live::demo(handle.local_addr(), config.clone());
        }
        let web = web_start(web_prep, &args, &config, handle.stats(), None, None)?;
        wait_for_signal(|| handle.is_finished());
        if let Some(w) = web {
            w.shutdown();
        }
        let backend = handle
            .shutdown()
            .map_err(|e| Stop::Failed(format!("gateway: {e}")))?;
        eprintln!(
            "ringbook serve: stopped; state hash {}",
            backend.engine().state_hash()
        );
        return Ok(());
    }
    if args.journal.exists() && !args.journal.is_dir() {
        return Err(format!("journal {} is not a directory", args.journal.display()).into());
    }
    // The journal's own settings too, before its directory is made (a bad
    // --journal-segment-bytes left an empty directory behind: a docs review finding).
    journal_config(&args)
        .validate()
        .map_err(|e| format!("--journal-segment-bytes: {e}"))?;
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
        let (md, web_md) = market_data_from_journal(&config, &args.journal, web_prep.is_some())?;
        if let Some(p) = web_prep.as_mut() {
            p.seed(web_md);
        }
        Some(md)
    };
    if args.busy_poll {
        check_busy_poll(&args)?;
    }
    let (builder, shape) = pipeline_builder(&args, &config);
    let backend =
        PipelineBackend::start(builder).map_err(|e| format!("starting the pipeline: {e}"))?;
    let pipeline = backend.pipeline();
    let rec = pipeline.recovery();
    eprintln!(
        "ringbook serve: journal {} recovered: {} records replayed{}, next sequence {}, state \
         hash {}",
        args.journal.display(),
        rec.replayed,
        rec.snapshot_seq
            .map_or(String::new(), |s| format!(" after the snapshot at {s}")),
        rec.next_seq,
        pipeline.recovered_state_hash()
    );
    log_recovery(rec);
    if let Some(p) = &web_prep {
        // Everything recovered was journaled and acknowledged before this run: the web edge's
        // acknowledged sequence (`/metrics`, and the sequence its market-data copy is taken at)
        // starts there, not at 0, so nothing reads as in flight after a restart.
        let recovered = rec.next_seq.0.saturating_sub(1);
        p.bridge
            .stats
            .last_done_seq
            .store(recovered, Ordering::Relaxed);
    }
    let gauges = pipeline.gauges();
    // The journal exists and is recovered: the projection follows it from here (and the web
    // edge answers history queries from it).
    if let Some(url) = &args.postgres {
        ringbook_web::enable_history(url);
    }
    // (With `--projection-cpus` the operator chose where it runs.)
    if args.postgres.is_some()
        && args.projection_sched == ProjectionSched::Idle
        && args.projection_cpus.is_none()
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(w) = idle_projection_warning(spinners(&args, cores), cores) {
            eprintln!("{w}");
        }
    }
    let projection = args
        .postgres
        .as_deref()
        .map(|url| {
            let idle = args.projection_sched == ProjectionSched::Idle;
            let cpus = args.projection_cpus.clone().map(|c| c.0);
            ProjectionThread::start(
                url,
                &config,
                &args.journal,
                journal_config(&args),
                idle,
                cpus,
            )
        })
        .transpose()?;
    let handle = match server::start_on(listener, sc, backend, md) {
        Ok(h) => h,
        Err(e) => return Err(e.to_string().into()),
    };
    eprintln!(
        "ringbook serve: listening on {} ({shape}, journal {})",
        handle.local_addr(),
        args.journal.display()
    );
    if args.demo {
        ringbook_strategy::live::demo(handle.local_addr(), config.clone());
    }
    let probe = projection.as_ref().map(ProjectionThread::probe);
    let web = web_start(
        web_prep,
        &args,
        &config,
        handle.stats(),
        Some(gauges),
        probe,
    )?;
    let failed = wait_for_signal(|| handle.is_finished());
    if failed {
        eprintln!("ringbook serve: the gateway stopped by itself; collecting the cause");
    } else {
        eprintln!("ringbook serve: shutting down (draining, flushing the journal)");
    }
    if let Some(w) = web {
        w.shutdown();
    }
    let stats = handle.stats().clone();
    let backend = handle
        .shutdown()
        .map_err(|e| Stop::Failed(format!("gateway: {e}")))?;
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
        .map_err(|e| Stop::Failed(format!("pipeline: {e}")))?;
    if let Some(p) = projection {
        p.stop();
    }
    if failed {
        // The gateway stops by itself only when the pipeline failed, which `shutdown` reports.
        return Err(Stop::Failed(
            "the gateway stopped, yet the pipeline reports no failure".into(),
        ));
    }
    eprintln!(
        "ringbook serve: stopped after {} commands; state hash {}",
        report.commands, report.state_hash
    );
    Ok(())
}

/// `serve --postgres`: the projection (ringbook-projection) on a thread of its own.
struct ProjectionThread {
    stop: Arc<AtomicBool>,
    progress: Arc<ringbook_projection::Progress>,
    /// Cleared when the projection returns (stopped on an error, or at shutdown).
    running: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ProjectionThread {
    fn start(
        url: &str,
        config: &Config,
        journal: &Path,
        jc: JournalConfig,
        idle: bool,
        cpus: Option<Vec<usize>>,
    ) -> Result<ProjectionThread, String> {
        let mut opts = ringbook_projection::Options::new(journal, url, config.clone());
        opts.first_sequence = jc.first_sequence;
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(ringbook_projection::Progress::default());
        let running = Arc::new(AtomicBool::new(true));
        let on_cpus = cpus.as_ref().map_or(String::new(), |c| format!(" {c:?}"));
        let (placed_tx, placed) = std::sync::mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            let progress = Arc::clone(&progress);
            let running = Arc::clone(&running);
            std::thread::Builder::new()
                .name("projection".into())
                .spawn(move || {
                    // Before the projection starts its own threads: they inherit the class
                    // and the CPUs. Whether the CPUs took goes back to `start`, which refuses
                    // to go on without them.
                    let confined = cpus
                        .as_ref()
                        .map_or(Ok(()), |c| sched::run_this_thread_on(c));
                    let failed = confined.is_err();
                    let _ = placed_tx.send(confined);
                    if failed {
                        running.store(false, Ordering::Relaxed);
                        return;
                    }
                    if idle {
                        if let Err(e) = sched::run_this_thread_when_idle() {
                            eprintln!(
                                "ringbook serve: projection: could not move it to SCHED_IDLE \
                                 ({e}); it runs as an ordinary thread"
                            );
                        }
                    }
                    let result = ringbook_projection::run(&opts, &stop, &progress, &mut |line| {
                        eprintln!("ringbook serve: projection: {line}")
                    });
                    running.store(false, Ordering::Relaxed);
                    match result {
                        Ok(s) => eprintln!(
                            "ringbook serve: projection stopped at sequence {} ({} commands \
                             projected by this run)",
                            s.last_seq, s.commands
                        ),
                        Err(e) => eprintln!(
                            "ringbook serve: projection STOPPED: {e}; trading goes on, the \
                             projection lags until `ringbook project` (or a restart) resumes it"
                        ),
                    }
                })
                .map_err(|e| format!("starting the projection thread: {e}"))?
        };
        if let Ok(Err(e)) = placed.recv() {
            let _ = thread.join();
            return Err(format!(
                "--projection-cpus: the projection cannot run on CPUs{on_cpus} ({e}; the CPUs \
                 that exist and are online: /sys/devices/system/cpu/online)"
            ));
        }
        eprintln!(
            "ringbook serve: projecting the journal into PostgreSQL on its own thread ({}{}{})",
            if idle {
                "asking for SCHED_IDLE: otherwise idle cores"
            } else {
                "an ordinary thread: --projection-sched normal"
            },
            if on_cpus.is_empty() { "" } else { ", on CPUs" },
            on_cpus
        );
        Ok(ProjectionThread {
            stop,
            progress,
            running,
            thread,
        })
    }

    /// What `/metrics` reads of its progress.
    fn probe(&self) -> ringbook_web::ProjectionProbe {
        let (progress, running) = (Arc::clone(&self.progress), Arc::clone(&self.running));
        ringbook_web::ProjectionProbe(Arc::new(move || ringbook_web::ProjectionStatus {
            committed_seq: progress.committed_seq.load(Ordering::Relaxed),
            db_errors: progress.db_errors.load(Ordering::Relaxed),
            running: running.load(Ordering::Relaxed),
        }))
    }

    /// After the journal's last record is written: lets the projection catch up with it (unless
    /// PostgreSQL is unreachable) and waits for the thread.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.running.load(Ordering::Relaxed) {
            // It may have a backlog (SCHED_IDLE on a busy machine): say what is being waited for.
            eprintln!(
                "ringbook serve: waiting for the projection to catch up with the journal \
                 (committed up to sequence {})",
                self.progress.committed_seq.load(Ordering::Relaxed)
            );
        }
        let _ = self.thread.join();
        if let Some((p50, p99, max, n)) = self.progress.lag_summary() {
            eprintln!(
                "ringbook serve: projection lag (a batch's oldest command, stamped → committed): \
                 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {n} transactions",
                p50 as f64 / 1e6,
                p99 as f64 / 1e6,
                max as f64 / 1e6
            );
        }
    }
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
            cut.damage
                .map_or("its length word was never written".to_string(), |d| d
                    .to_string())
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

/// Waits for SIGINT/SIGTERM, or for the server to stop by itself (`finished`: the backend
/// failed); returns whether it was the latter.
fn wait_for_signal(finished: impl Fn() -> bool) -> bool {
    loop {
        if signal::received() {
            return false;
        }
        if finished() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shape_follows_cores_and_durability() {
        let batch = Durability::Batch(SyncMethod::Msync);
        for cores in [1, 2, 3] {
            assert_eq!(
                default_shape(cores, Durability::None).layout,
                Layout::Inline
            );
            let s = default_shape(cores, batch);
            assert_eq!((s.layout, s.inline_output), (Layout::Fused, true));
        }
        for cores in [4, 16] {
            for d in [Durability::None, batch] {
                let s = default_shape(cores, d);
                assert_eq!((s.layout, s.inline_output), (Layout::Fused, false));
            }
        }
        // Every default parks when idle.
        assert_eq!(
            default_shape(2, Durability::None).wait,
            WaitStrategy::Phased
        );
        assert_eq!(default_shape(8, batch).wait, WaitStrategy::Phased);
    }

    fn serve_args(flags: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: Args,
        }
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .expect("valid flags")
            .serve
    }

    /// The spinners counted are the threads that never park: busy-spinning stages, a
    /// busy-spinning output thread (not an inline output) and the busy-polled gateway loop.
    #[test]
    fn spinners_are_counted_as_the_flags_start_them_and_an_idle_projection_is_warned() {
        let spinners = |flags: &[&str]| spinners(&serve_args(flags), 8);
        assert_eq!(spinners(&[]), 0, "the defaults park");
        assert_eq!(spinners(&["--busy-poll"]), 1);
        assert_eq!(spinners(&["--layout", "inline", "--wait", "busy-spin"]), 0);
        let fused = ["--layout", "fused", "--wait", "busy-spin"];
        assert_eq!(spinners(&fused), 2, "stage and output thread");
        assert_eq!(spinners(&[&fused[..], &["--inline-output"]].concat()), 1);
        assert_eq!(
            spinners(&[&fused[..], &["--output-wait", "phased", "--busy-poll"]].concat()),
            2
        );
        assert_eq!(
            spinners(&["--layout", "split", "--wait", "busy-spin-hint"]),
            5
        );
        assert!(idle_projection_warning(1, 2).is_none());
        assert!(idle_projection_warning(0, 1).is_none());
        for (spinners, cores) in [(1, 1), (2, 2), (5, 4)] {
            let w = idle_projection_warning(spinners, cores).expect("warned");
            assert!(w.contains(&format!("keep all {cores} core")), "{w}");
        }
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("3"), Ok(CpuList(vec![3])));
        assert_eq!(parse_cpu_list("3,1,1"), Ok(CpuList(vec![1, 3])));
        assert_eq!(parse_cpu_list("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        for bad in ["", "x", "-1", "4-2", "1024", "1,,2", "1-"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
        let a = serve_args(&["--postgres", "postgres://x/y", "--projection-cpus", "1"]);
        assert_eq!(a.projection_cpus, Some(CpuList(vec![1])));
    }

    /// Sizes that would have the server try to allocate or spawn without bound are refused
    /// by the argument parser, with the range in the message.
    #[test]
    fn sizes_on_the_command_line_are_bounded() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: Args,
        }
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("serve").chain(flags.iter().copied());
            <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.serve)
        };
        for bad in [
            &["--http-threads", "0"][..],
            &["--http-threads", "100000"],
            &["--ring-size", "0"],
            &["--ring-size", "1073741824"],
            &["--journal-segment-bytes", "1099511627776"],
        ] {
            let e = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.to_string().contains("not in"), "{bad:?}: {e}");
        }
        assert!(parse(&["--no-http", "--http", "127.0.0.1:1"]).is_err());
        assert!(parse(&["--no-http"]).unwrap().no_http);
        let a = parse(&["--http-threads", "256", "--ring-size", "4194304"]).unwrap();
        assert_eq!((a.http_threads, a.ring_size), (256, Some(1 << 22)));
    }

    #[test]
    fn durability_and_faults_parse() {
        assert_eq!(parse_durability("none"), Ok(Durability::None));
        assert_eq!(
            parse_durability("batch"),
            Ok(Durability::Batch(SyncMethod::Msync))
        );
        assert_eq!(
            parse_durability("record:fdatasync"),
            Ok(Durability::Record(SyncMethod::Fdatasync))
        );
        assert!(parse_durability("none:msync").is_err());
        assert!(parse_durability("always").is_err());
        assert_eq!(
            parse_fault("business@7"),
            Ok((FaultPoint::Business, Seq(7)))
        );
        assert!(parse_fault("output@0").is_err());
        assert!(parse_fault("matching@3").is_err());
    }
}
