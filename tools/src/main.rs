//! `ringbook`: the command-line face of ringbook.
//!
//! Subcommands:
//! - `scenario` — run a command script through the engine, one JSON event per line (SPEC §9).
//! - `lobster` — replay a LOBSTER message file and check the book against its orderbook file.
//!
//! `serve`, `loadgen` and `journal …` arrive with the gateway and journal issues.
#![forbid(unsafe_code)]

mod lobster;
mod scenario;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ringbook", version, about = "ringbook: an LMAX-style exchange core")]
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Scenario(args) => scenario::run(args),
        Cmd::Lobster(args) => lobster::run(args),
    }
}
