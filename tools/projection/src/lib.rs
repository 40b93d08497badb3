//! # ringbook-projection
//!
//! The read side of ringbook: a PostgreSQL projection of the journal. The journal is the event
//! store; this crate follows it (the journal's [`Tailer`]), re-derives every command's events by
//! running its own [`Engine`] over the journaled commands (the same deterministic engine, so the
//! same events), maps them to rows ([`mapper`]) — currencies, symbols, accounts, orders with their
//! whole lifecycle, trades, a double-entry ledger, balances, withdrawals and their approvals,
//! candles — and writes them in batches, one transaction per batch, binary `COPY` for the rows,
//! with the last projected journal sequence updated in the same transaction ([`db`]). So a crash
//! of the projector or of PostgreSQL at any point leaves the tables at a batch boundary, and a
//! restart resumes right after it: no gap, no duplicate (docs/persistence.md).
//!
//! [`run`] projects (`ringbook project`, and `ringbook serve --postgres` on its own thread);
//! [`verify()`] compares the tables with the engine state rebuilt from the journal.
#![forbid(unsafe_code)]

pub mod db;
pub mod mapper;
pub mod schema;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringbook_engine::codec;
use ringbook_engine::pipeline::{replay_journal, PipelineError, RECORD_TYPE_COMMAND_V1};
use ringbook_engine::{Config, Engine, Event, RiskMode, Seq};
use ringbook_journal::{JournalError, Tailer};

pub use db::Faults;
pub use verify::{verify, Verification};

use mapper::{Batch, Mapper};

/// Why the projection stopped.
#[derive(Debug)]
pub enum ProjectionError {
    /// Bad arguments or a database that does not fit (schema, configuration).
    Usage(String),
    /// PostgreSQL failed.
    Db(postgres::Error),
    /// The journal could not be read.
    Journal(String),
    /// A record or an event the projection cannot map (a bug, or a journal written with
    /// another configuration).
    Data(String),
}

impl fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectionError::Usage(s) | ProjectionError::Journal(s) | ProjectionError::Data(s) => {
                f.write_str(s)
            }
            ProjectionError::Db(e) => match e.as_db_error() {
                Some(d) => write!(f, "PostgreSQL: {} ({})", d.message(), d.code().code()),
                None => match std::error::Error::source(e) {
                    Some(cause) => write!(f, "PostgreSQL: {e}: {cause}"),
                    None => write!(f, "PostgreSQL: {e}"),
                },
            },
        }
    }
}

impl std::error::Error for ProjectionError {}

impl From<postgres::Error> for ProjectionError {
    fn from(e: postgres::Error) -> Self {
        ProjectionError::Db(e)
    }
}

impl From<JournalError> for ProjectionError {
    fn from(e: JournalError) -> Self {
        ProjectionError::Journal(e.to_string())
    }
}

impl From<PipelineError> for ProjectionError {
    fn from(e: PipelineError) -> Self {
        ProjectionError::Journal(e.to_string())
    }
}

impl ProjectionError {
    /// Whether waiting and trying again may help: the server is unreachable, restarting, shut
    /// down, or the connection broke. A statement the server refused is not.
    pub fn is_transient(&self) -> bool {
        let ProjectionError::Db(e) = self else {
            return false;
        };
        match e.as_db_error() {
            None => true,
            Some(d) => {
                let code = d.code().code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
            }
        }
    }
}

/// What to project, from where, to where.
#[derive(Clone, Debug)]
pub struct Options {
    /// The journal directory.
    pub journal: PathBuf,
    /// The PostgreSQL URL (`postgres://user@host:port/db`).
    pub postgres: String,
    /// The engine configuration the journal was written with.
    pub config: Config,
    /// The journal's first sequence (1 unless configured otherwise).
    pub first_sequence: u64,
    /// Project what the journal holds, then return (otherwise follow it until `stop`).
    pub once: bool,
    /// Drop every projection table first and project from the journal's start.
    pub rebuild: bool,
    /// Commands per batch at most.
    pub batch_commands: u64,
    /// Following (not `once`), a batch is written once its first command is this old, even if
    /// not full.
    pub batch_age: Duration,
    /// Crash-test hooks.
    pub faults: Faults,
}

impl Options {
    /// Options with the defaults: 20 000 commands or 100 ms per batch.
    pub fn new(journal: impl Into<PathBuf>, postgres: impl Into<String>, config: Config) -> Self {
        Options {
            journal: journal.into(),
            postgres: postgres.into(),
            config,
            first_sequence: 1,
            once: false,
            rebuild: false,
            batch_commands: 20_000,
            batch_age: Duration::from_millis(100),
            faults: Faults::default(),
        }
    }
}

/// Live counters, readable from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// The last journal sequence committed to PostgreSQL.
    pub committed_seq: AtomicU64,
    /// Engine time of that command (Unix ns).
    pub committed_ts: AtomicU64,
    /// The last journal sequence read (and mapped) from the journal.
    pub read_seq: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commands committed.
    pub commands: AtomicU64,
    /// Rows written.
    pub rows: AtomicU64,
    /// Failed attempts to reach or write to PostgreSQL.
    pub db_errors: AtomicU64,
    /// Following: per committed batch, wall time of the commit minus the engine time of the
    /// batch's first command (ns) — the lag of the batch's oldest command, when engine time is
    /// the wall clock (as `serve` stamps it).
    pub lag_ns: std::sync::Mutex<Vec<u64>>,
}

impl Progress {
    /// The lag samples' 50th and 99th percentile and maximum, and their count.
    pub fn lag_summary(&self) -> Option<(u64, u64, u64, usize)> {
        let mut v = self.lag_ns.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99), v[v.len() - 1], v.len()))
    }
}

/// What a [`run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The sequence the projection started after (0: from the journal's start).
    pub resumed_at: u64,
    /// The last sequence committed (0: none).
    pub last_seq: u64,
    /// Commands projected by this run.
    pub commands: u64,
    /// Rows written by this run.
    pub rows: u64,
    /// Batches committed by this run.
    pub batches: u64,
}

/// Connects, retrying transient failures every `wait` (doubling up to 2 s) until `stop` —
/// unless `once_fail` (then the first failure is the answer).
fn connect_retrying(
    url: &str,
    stop: &AtomicBool,
    once_fail: bool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<db::Conns, ProjectionError> {
    let mut wait = Duration::from_millis(50);
    let mut logged = false;
    loop {
        match db::Conns::connect(url) {
            Ok(c) => {
                if logged {
                    log("PostgreSQL reachable again; projecting");
                }
                return Ok(c);
            }
            Err(e) if e.is_transient() && !once_fail && !stop.load(Ordering::Relaxed) => {
                progress.db_errors.fetch_add(1, Ordering::Relaxed);
                if !logged {
                    log(&format!(
                        "cannot reach PostgreSQL ({e}); retrying (the projection lags, trading \
                         is unaffected)"
                    ));
                    logged = true;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Projects the journal into PostgreSQL: migrates, resumes after the stored sequence (the
/// engine rebuilt to it from the newest snapshot at or below it plus the journal, nothing
/// written), then maps every later command into batches. With `once` it returns when the
/// journal's end is projected; otherwise it follows the journal until `stop` is set, then
/// projects what the journal holds and returns. PostgreSQL failures are retried (the
/// projection lags and catches up); everything else ends the run.
pub fn run(
    opts: &Options,
    stop: &AtomicBool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, ProjectionError> {
    // Starting (connect, migrate, load, rebuild the engine) is retried like writing when
    // PostgreSQL fails transiently while following.
    let mut wait = Duration::from_millis(50);
    let mut failures = 0u64;
    let (mut conns, mut mapper, mut engine, resumed_at) = loop {
        match start(opts, stop, progress, log) {
            Ok(started) => break started,
            Err(e) if e.is_transient() && !opts.once && !stop.load(Ordering::Relaxed) => {
                progress.db_errors.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if failures == 1 {
                    log(&format!("starting failed ({e}); retrying"));
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    };
    progress.committed_seq.store(resumed_at, Ordering::Relaxed);
    let mut tailer = Tailer::open(&opts.journal, resumed_at + 1)?;
    let mut summary = Summary {
        resumed_at,
        last_seq: resumed_at,
        ..Summary::default()
    };
    let mut batch = Batch::default();
    let mut batch_started = Instant::now();
    let mut events: Vec<Event> = Vec::with_capacity(256);
    let mut expected = if resumed_at == 0 {
        None
    } else {
        Some(resumed_at + 1)
    };
    let mut idle = Duration::from_micros(200);
    let mut caught_up_logged = false;
    loop {
        let record = tailer.poll()?;
        let Some(record) = record else {
            if !batch.is_empty() {
                flush(
                    &mut conns,
                    opts,
                    &mut batch,
                    stop,
                    progress,
                    &mut summary,
                    log,
                )?;
            }
            if !caught_up_logged {
                log(&format!("caught up at sequence {}", summary.last_seq));
                caught_up_logged = true;
            }
            if opts.once || stop.load(Ordering::Relaxed) {
                return Ok(summary);
            }
            std::thread::sleep(idle);
            idle = (idle * 2).min(Duration::from_millis(10));
            continue;
        };
        idle = Duration::from_micros(200);
        caught_up_logged = false;
        let seq = record.sequence;
        match expected {
            Some(e) if e != seq => {
                return Err(ProjectionError::Journal(format!(
                    "expected journal record {e}, found {seq}: the records in between were \
                     pruned (a projection needs every record after its last projected sequence)"
                )))
            }
            None if seq != opts.first_sequence => {
                return Err(ProjectionError::Journal(format!(
                    "the journal's first record is {seq}, not {}: the records before it were \
                     pruned, and a new projection starts from the journal's first record",
                    opts.first_sequence
                )))
            }
            _ => {}
        }
        expected = Some(seq + 1);
        if record.record_type != RECORD_TYPE_COMMAND_V1 {
            return Err(ProjectionError::Journal(format!(
                "record {seq} has type {}, expected {RECORD_TYPE_COMMAND_V1} (command format v1)",
                record.record_type
            )));
        }
        let cmd = codec::decode(record.payload)
            .map_err(|e| ProjectionError::Journal(format!("record {seq} does not decode: {e}")))?;
        let ts = record.timestamp_ns;
        events.clear();
        engine.process_at(ts, &cmd, &mut |e: &Event| events.push(*e));
        if batch.is_empty() {
            batch_started = Instant::now();
        }
        mapper.apply(seq, ts, &cmd, &events, &mut batch)?;
        progress.read_seq.store(seq, Ordering::Relaxed);
        // Following, a batch is also written once it is `batch_age` old (the lag stays low
        // under a steady stream); `--once` cuts batches by count alone (deterministic
        // boundaries, which the crash tests rely on).
        let aged = !opts.once && batch_started.elapsed() >= opts.batch_age;
        if batch.commands >= opts.batch_commands || aged {
            flush(
                &mut conns,
                opts,
                &mut batch,
                stop,
                progress,
                &mut summary,
                log,
            )?;
        }
    }
}

/// Connects, migrates, checks the reference data, and rebuilds the engine and the mapper's
/// state at the projected sequence (nothing written but the migrations).
fn start(
    opts: &Options,
    stop: &AtomicBool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<(db::Conns, Mapper, Engine, u64), ProjectionError> {
    let mut conns = connect_retrying(&opts.postgres, stop, opts.once, progress, log)?;
    let client = &mut conns.main;
    if opts.rebuild {
        db::drop_all(client)?;
        log("dropped every projection table (--rebuild)");
    }
    db::migrate(client)?;
    db::reference_data(client, &opts.config)?;
    db::trim_ledger(client)?;
    let (resumed_at, _) = db::projected(client)?;
    let mut mapper = Mapper::new(&opts.config);
    let engine = if resumed_at == 0 {
        Engine::with_risk(&opts.config, RiskMode::On)
            .map_err(|e| ProjectionError::Usage(format!("configuration: {e}")))?
    } else {
        let r = db::load_resumed(client)?;
        mapper.restore(r.live, r.balances, r.pending, r.accounts);
        let (engine, info) = replay_journal(
            &opts.config,
            RiskMode::On,
            &opts.journal,
            opts.first_sequence,
            Some(Seq(resumed_at)),
        )
        .map_err(|e| {
            ProjectionError::Journal(format!(
                "rebuilding the engine to the projected sequence {resumed_at}: {e}"
            ))
        })?;
        log(&format!(
            "resuming after sequence {resumed_at} (engine rebuilt from {}{} records, nothing \
             written)",
            info.snapshot_seq
                .map_or("the journal's start: ".to_string(), |s| format!(
                    "the snapshot at {s} + "
                )),
            info.replayed
        ));
        engine
    };
    Ok((conns, mapper, engine, resumed_at))
}

/// Writes the batch, retrying transient PostgreSQL failures (reconnecting) until it is
/// committed — or, once `stop` is set, giving up (the next run resumes).
fn flush(
    conns: &mut db::Conns,
    opts: &Options,
    batch: &mut Batch,
    stop: &AtomicBool,
    progress: &Progress,
    summary: &mut Summary,
    log: &mut dyn FnMut(&str),
) -> Result<(), ProjectionError> {
    let mut wait = Duration::from_millis(50);
    let mut failed = false;
    loop {
        let attempt = (|| {
            if conns.is_closed() {
                *conns = db::Conns::connect(&opts.postgres)?;
            }
            db::write_batch(conns, batch, opts.faults)
        })();
        match attempt {
            Ok(_) => break,
            Err(e) if e.is_transient() && !(stop.load(Ordering::Relaxed) && failed) => {
                progress.db_errors.fetch_add(1, Ordering::Relaxed);
                if !failed {
                    log(&format!(
                        "writing sequences {}..={} failed ({e}); retrying (the projection lags, \
                         trading is unaffected)",
                        batch.first_seq, batch.last_seq
                    ));
                    failed = true;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(2));
                if let Ok(c) = db::Conns::connect(&opts.postgres) {
                    *conns = c;
                }
            }
            Err(e) => return Err(e),
        }
    }
    if failed {
        log(&format!(
            "PostgreSQL back: sequences {}..={} written",
            batch.first_seq, batch.last_seq
        ));
    }
    let rows = batch.rows() as u64;
    summary.last_seq = batch.last_seq;
    summary.commands += batch.commands;
    summary.rows += rows;
    summary.batches += 1;
    progress
        .committed_seq
        .store(batch.last_seq, Ordering::Relaxed);
    progress
        .committed_ts
        .store(batch.last_ts, Ordering::Relaxed);
    progress.batches.fetch_add(1, Ordering::Relaxed);
    if !opts.once {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if let Ok(mut lag) = progress.lag_ns.lock() {
            lag.push(now.saturating_sub(batch.first_ts));
        }
    }
    progress
        .commands
        .fetch_add(batch.commands, Ordering::Relaxed);
    progress.rows.fetch_add(rows, Ordering::Relaxed);
    *batch = Batch::default();
    Ok(())
}
