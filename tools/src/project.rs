//! `ringbook project`: the PostgreSQL projection of a journal (docs/persistence.md).
//!
//! ```text
//! ringbook project --journal DIR --postgres URL [--config FILE] [--once] [--rebuild]
//! ringbook project --journal DIR --postgres URL --verify
//! ```
//!
//! Without `--once` it follows the journal (a live server's) until SIGINT or SIGTERM, then
//! projects what the journal holds and exits 0. `--once` projects what the journal holds and
//! exits. `--rebuild` drops every projection table first and projects from the journal's start.
//! `--verify` writes nothing: it compares the tables with the engine state rebuilt from the
//! journal at the projected sequence and prints every difference; exit 0 only with none.
//!
//! Exit status: 0 done (verify: no difference); 1 verify found differences; 2 could not run
//! (bad arguments, unreachable database with `--once` or `--verify`, a journal that does not
//! replay, a database projected with another configuration).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use ringbook_engine::Config;
use ringbook_gateway::server::signal;
use ringbook_journal::JournalConfig;
use ringbook_projection::{Faults, Options, Progress};

/// Arguments of `ringbook project`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The journal directory.
    #[arg(long)]
    journal: PathBuf,
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/ringbook (the database must
    /// exist; the tables are created by the embedded migrations).
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// Engine configuration the journal was written with (TOML); the embedded default if
    /// absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Project what the journal holds now, then exit (otherwise follow it until a signal).
    #[arg(long)]
    once: bool,
    /// Drop every projection table and project from the journal's start.
    #[arg(long, conflicts_with = "verify")]
    rebuild: bool,
    /// Compare PostgreSQL with the engine state rebuilt from the journal; print every
    /// difference; write nothing. Exit 0 only with no difference.
    #[arg(long)]
    verify: bool,
    /// Commands per transaction at most.
    #[arg(long, value_name = "N", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// FAULT INJECTION, for crash tests only: hold each batch's transaction open this many
    /// milliseconds before committing (announced on stderr).
    #[arg(long, hide = true, value_name = "MS")]
    hold_batch_ms: Option<u64>,
}

/// Runs `ringbook project`.
pub fn run(args: Args) -> ExitCode {
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ringbook project: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let mut opts = Options::new(&args.journal, &args.postgres, config);
    opts.first_sequence = JournalConfig::default().first_sequence;
    opts.once = args.once;
    opts.rebuild = args.rebuild;
    opts.batch_commands = args.batch;
    opts.faults = Faults {
        hold_batch: args.hold_batch_ms.map(Duration::from_millis),
    };
    if !args.journal.is_dir() {
        eprintln!(
            "ringbook project: journal directory {} does not exist",
            args.journal.display()
        );
        return ExitCode::from(2);
    }
    if args.verify {
        return verify(&opts);
    }
    if !args.once {
        if let Err(e) = signal::install() {
            eprintln!("ringbook project: installing signal handlers: {e}");
            return ExitCode::from(2);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::default();
    let started = Instant::now();
    let watcher = (!args.once).then(|| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if signal::received() {
                    stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    });
    let result = ringbook_projection::run(&opts, &stop, &progress, &mut |line| {
        eprintln!("ringbook project: {line}")
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    match result {
        Ok(s) => {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "ringbook project: projected {} commands ({} rows, {} transactions) in {:.3} s: \
                 {:.0} commands/s, {:.0} rows/s; last sequence {} (resumed after {})",
                s.commands,
                s.rows,
                s.batches,
                secs,
                s.commands as f64 / secs,
                s.rows as f64 / secs,
                s.last_seq,
                s.resumed_at
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringbook project: {e}");
            ExitCode::from(2)
        }
    }
}

fn verify(opts: &Options) -> ExitCode {
    match ringbook_projection::verify(opts) {
        Ok(v) => {
            for line in &v.checked {
                println!("checked: {line}");
            }
            for d in &v.differences {
                println!("DIFFERENCE: {d}");
            }
            println!(
                "verify: projected sequence {}, journal's last {}; {} difference(s)",
                v.projected_seq,
                v.journal_last_seq
                    .map_or("none".to_string(), |s| s.to_string()),
                v.differences.len()
            );
            if v.differences.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ringbook project: verify: {e}");
            ExitCode::from(2)
        }
    }
}
