//! `ringbook lobster` (being written).

use std::process::ExitCode;

/// Arguments of `ringbook lobster`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("ringbook lobster: not implemented yet");
    ExitCode::FAILURE
}
