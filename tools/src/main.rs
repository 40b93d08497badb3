//! `ringbook`: the command-line face of ringbook.
//!
//! Subcommands:
//! - `scenario` — run a command script through the engine, one JSON event per line (SPEC §9).
//! - `lobster` — replay a LOBSTER message file and check the book against its orderbook file.
//! - `journal dump | verify | stats | prune` — look inside and maintain a journal directory.
//!
//! `serve`, `loadgen` and `journal replay` arrive with the gateway and pipeline issues.
#![forbid(unsafe_code)]

mod journal;
mod lobster;
mod scenario;

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Scenario(args) => scenario::run(args),
        Cmd::Lobster(args) => lobster::run(args),
        Cmd::Journal(args) => journal::run(args),
    }
}
