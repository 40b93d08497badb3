//! `ringbook`: the command-line face of ringbook.
//!
//! Subcommands:
//! - `scenario` — run a command script through the engine, one JSON event per line (docs/overview.md §9).
//! - `lobster` — replay a LOBSTER message file and check the book against its orderbook file.
//! - `journal dump | verify | stats | prune` — look inside and maintain a journal directory.
//!
//! - `serve` — the gateway server in front of the journaled pipeline.
//! - `loadgen` — the TCP load harness (loopback only).
//! - `backtest`, `bots` — strategies on the real engine and against a server (tools/strategy).
//! - `md` — a running server's market data for one symbol, live in the terminal or as JSON.
//! - `project` — the PostgreSQL projection of a journal (docs/persistence.md).
#![forbid(unsafe_code)]

mod bots;
/// The hiccup meter, shared with the bench harnesses as source (production crates never depend
/// on `ringbook-bench`).
#[path = "../../bench/src/hiccup.rs"]
#[allow(dead_code)] // the bench harnesses use parts that loadgen does not
mod hiccup;
mod journal;
mod loadgen;
mod lobster;
mod md;
mod printer;
mod project;
mod scenario;
mod serve;
mod webload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ringbook",
    version,
    about = "ringbook: an LMAX-style exchange core"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a command script through the engine and print one JSON object per event.
    Scenario(scenario::Args),
    /// Replay LOBSTER message data and compare the book with LOBSTER's after every message.
    Lobster(lobster::Args),
    /// Dump, verify, summarize or prune a journal directory.
    Journal(journal::Args),
    /// Run the gateway server in front of the journaled pipeline.
    Serve(serve::Args),
    /// Drive a server over TCP at a set rate and report latency percentiles.
    Loadgen(loadgen::Args),
    /// Backtest a strategy on the real engine (LOBSTER flow or candles), or sweep a parameter.
    Backtest(bots::BacktestArgs),
    /// Run strategy bots against a server, or approve a sweep's proposal.
    Bots(bots::BotsArgs),
    /// Show a running server's market data for one symbol (live book, trades, ticker).
    Md(md::Args),
    /// Project a journal into PostgreSQL (tables, ledger, history), or verify the projection.
    Project(project::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Scenario(args) => scenario::run(args),
        Cmd::Lobster(args) => lobster::run(args),
        Cmd::Journal(args) => journal::run(args),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Loadgen(args) => loadgen::run(args),
        Cmd::Backtest(args) => bots::backtest(args),
        Cmd::Bots(args) => bots::bots(args),
        Cmd::Md(args) => md::run(args),
        Cmd::Project(args) => project::run(args),
    }
}
