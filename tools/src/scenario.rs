//! `ringbook scenario` (being written).

use std::process::ExitCode;

/// Arguments of `ringbook scenario`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("ringbook scenario: not implemented yet");
    ExitCode::FAILURE
}
