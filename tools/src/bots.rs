//! `ringbook backtest` and `ringbook bots`: thin argument parsing in front of the
//! `ringbook-strategy` crate (tools/strategy), where the strategies, the backtest driver and
//! the bots runner live. docs/strategies.md explains them.

use std::path::PathBuf;
use std::process::ExitCode;

use ringbook_strategy::backtest::cli;
use ringbook_strategy::live;

/// Arguments of `ringbook backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Strategy: breakout, grid, turtle, maker or taker.
    #[arg(long)]
    strategy: String,
    /// Params file (TOML): the strategy's parameters, `[risk]` and `[backtest]`.
    #[arg(long)]
    params: PathBuf,
    /// Market data: a ringbook journal directory (recorded by `serve`), a LOBSTER message
    /// file (`…_message_N.csv`, its orderbook file beside it) or a candle CSV
    /// (`open_time,open,high,low,close,volume`).
    #[arg(long)]
    data: PathBuf,
    /// Engine configuration (symbols, fees); the embedded default when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Report path (JSON); the equity and drawdown plot is written beside it as .svg.
    /// Default: backtest-STRATEGY.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sweep one parameter, KEY=FROM..TO:STEP (e.g. k=0.3..0.7:0.1), with a walk-forward
    /// split; writes a proposal instead of a report.
    #[arg(long)]
    sweep: Option<String>,
    /// Metric the sweep ranks by: sharpe, return, pnl, max_drawdown, win_rate.
    #[arg(long, default_value = "sharpe")]
    rank: String,
    /// Share of the data's time span the sweep trains on (the rest tests).
    #[arg(long, default_value = "0.7")]
    train: String,
    /// Where the sweep writes its proposal (default proposal-STRATEGY.json).
    #[arg(long)]
    proposal: Option<PathBuf>,
    /// Sweep threads (default: the available cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `ringbook backtest`.
pub fn backtest(a: BacktestArgs) -> ExitCode {
    let o = cli::Options {
        strategy: a.strategy,
        params: a.params,
        data: a.data,
        config: a.config,
        out: a.out,
        sweep: a.sweep,
        rank: a.rank,
        train: a.train,
        proposal: a.proposal,
        threads: a.threads,
    };
    match cli::backtest_reconciled(&o) {
        Ok((s, reconciled)) => {
            print!("{s}");
            if reconciled {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "ringbook backtest: MISMATCH: the engine's balances of the strategy's account \
                     differ from its ledger (report written; docs/strategies.md)"
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => finish("backtest", Err(e)),
    }
}

/// Arguments of `ringbook bots`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BotsArgs {
    #[command(subcommand)]
    action: Option<BotsAction>,
    /// Server address (`ringbook serve --listen`).
    #[arg(long)]
    addr: Option<std::net::SocketAddr>,
    /// Bots configuration (TOML): symbol, interval, steps, funding, `[[bot]]` entries. Its
    /// `engine_config` must be the server's engine configuration unless the server runs the
    /// embedded default: the bots send the symbol's id from it (docs/strategies.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// One JSON object per line (status per step, then the outcomes) instead of the table.
    #[arg(long)]
    json: bool,
    /// Override the configuration's step count.
    #[arg(long)]
    steps: Option<u64>,
}

#[derive(Debug, clap::Subcommand)]
enum BotsAction {
    /// Approve a sweep's proposal so that bots may use it: checks that it is pending (or
    /// approved, to approve again), that its params build the strategy and hold the proposed
    /// value, prints them, and rewrites the file atomically.
    Approve {
        /// The proposal file.
        proposal: PathBuf,
    },
}

/// Runs `ringbook bots`.
pub fn bots(a: BotsArgs) -> ExitCode {
    if let Some(BotsAction::Approve { proposal }) = a.action {
        return finish("bots approve", cli::approve(&proposal));
    }
    let (Some(addr), Some(config)) = (a.addr, a.config) else {
        eprintln!(
            "ringbook bots: --addr and --config are required (or: ringbook bots approve PROPOSAL)"
        );
        return ExitCode::from(2);
    };
    match live::main(addr, &config, a.steps, a.json) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ringbook bots: {e}");
            ExitCode::from(2)
        }
    }
}

fn finish(what: &str, r: Result<String, String>) -> ExitCode {
    match r {
        Ok(s) => {
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringbook {what}: {e}");
            ExitCode::from(2)
        }
    }
}
