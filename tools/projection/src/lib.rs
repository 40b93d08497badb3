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

mod copy;
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
use ringbook_journal::{JournalError, Record, Tailer};

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
    /// Another projector holds this database (its lock, [`db::Conns::connect`]): transient, a
    /// following projector waits for it to go.
    Busy(String),
    /// The projection state is not where this projector's next batch starts: it moved while
    /// this projector was disconnected (another projector took the lock meanwhile) or by hand.
    /// [`run`] starts again from the database's state.
    StateMoved(String),
}

impl fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectionError::Usage(s)
            | ProjectionError::Journal(s)
            | ProjectionError::Data(s)
            | ProjectionError::Busy(s)
            | ProjectionError::StateMoved(s) => f.write_str(s),
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
        let e = match self {
            ProjectionError::Db(e) => e,
            ProjectionError::Busy(_) => return true,
            _ => return false,
        };
        match e.as_db_error() {
            // The connection broke, or never opened (an I/O error: refused, reset, timed
            // out). Not a value the client could not read (a column retyped by hand), a NULL,
            // or a row count: those are as fatal as the server refusing a statement.
            None => {
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
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
    /// Crash-test hooks.
    pub faults: Faults,
}

impl Options {
    /// Options with the defaults: 20 000 commands per batch at most (following, a batch is
    /// handed to the writer as soon as it is free, whatever its size).
    pub fn new(journal: impl Into<PathBuf>, postgres: impl Into<String>, config: Config) -> Self {
        Options {
            journal: journal.into(),
            postgres: postgres.into(),
            config,
            first_sequence: 1,
            once: false,
            rebuild: false,
            batch_commands: 20_000,
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
    pub lag_ns: std::sync::Mutex<LagHistogram>,
}

/// Lag samples in a fixed histogram (a following projector may commit hundreds of times a
/// second for days: no sample is kept). Buckets: exact below 16 ns, then 16 per power of two
/// (a quantile is reported as its bucket's upper bound: at most 1/16 above the true value);
/// the maximum is exact.
#[derive(Clone, Debug, Default)]
pub struct LagHistogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl LagHistogram {
    const SUB: u32 = 4;

    fn bucket(v: u64) -> usize {
        if v < 1 << Self::SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let m = (v >> (e - Self::SUB)) & ((1 << Self::SUB) - 1);
        (((e - Self::SUB + 1) << Self::SUB) as u64 + m) as usize
    }

    /// The largest value in bucket `b`.
    fn upper(b: usize) -> u64 {
        let b = b as u64;
        if b < 1 << Self::SUB {
            return b;
        }
        let e = (b >> Self::SUB) as u32 + Self::SUB - 1;
        let m = b & ((1 << Self::SUB) - 1);
        let low = (1u64 << e) | (m << (e - Self::SUB));
        low.saturating_add((1u64 << (e - Self::SUB)) - 1)
    }

    /// Adds one sample.
    pub fn record(&mut self, v: u64) {
        let b = Self::bucket(v);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    /// The `q` quantile (0..=1), at most the maximum; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((self.n - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(Self::upper(b).min(self.max));
            }
        }
        Some(self.max)
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Progress {
    /// The lag samples' 50th and 99th percentile and maximum, and their count.
    pub fn lag_summary(&self) -> Option<(u64, u64, u64, usize)> {
        let h = self.lag_ns.lock().ok()?;
        Some((h.quantile(0.5)?, h.quantile(0.99)?, h.max, h.len() as usize))
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
                    log("PostgreSQL reachable and this database free again; projecting");
                }
                return Ok(c);
            }
            Err(e) if e.is_transient() && !once_fail && !stop.load(Ordering::Relaxed) => {
                progress.db_errors.fetch_add(1, Ordering::Relaxed);
                if !logged {
                    log(&match e {
                        ProjectionError::Busy(_) => format!(
                            "{e}; waiting for it to stop (the projection lags, trading is \
                             unaffected)"
                        ),
                        _ => format!(
                            "cannot reach PostgreSQL ({e}); retrying (the projection lags, \
                             trading is unaffected)"
                        ),
                    });
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
///
/// Two threads: a mapper (journal, engine, rows: [`map_journal`]) builds batch N+1 while this
/// thread writes batch N; they meet at a rendezvous channel, so the mapper is at most one batch
/// ahead. `--once` cuts batches by count alone (deterministic boundaries, which the crash tests
/// rely on); following, a batch is also handed over as soon as the writer is free (group
/// commit: the batch is whatever arrived while the previous one was written), or when full.
/// `--once` into an empty projection is a bulk load: the secondary indexes are dropped first
/// and built once at the end (the same statements as the migration's, so the same tables).
///
/// A panic inside (a bug, or a table changed by hand so that a stored value no longer has the
/// type its column had) is caught and returned as [`ProjectionError::Data`], so a caller always
/// learns that the projection stopped (`serve`'s `ringbook_projection_running` went on saying 1
/// after one: a red-team finding).
///
/// When the projection state moved under it ([`ProjectionError::StateMoved`]: another
/// projector took the lock while this one was disconnected, and projected further), it starts
/// again from the database's state, as at start — once per batch it then commits; a state that
/// moves again before any commit is the error.
pub fn run(
    opts: &Options,
    stop: &AtomicBool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, ProjectionError> {
    caught("the projection", || {
        let counted = |p: &Progress| {
            (
                p.commands.load(Ordering::Relaxed),
                p.rows.load(Ordering::Relaxed),
                p.batches.load(Ordering::Relaxed),
            )
        };
        let at_start = counted(progress);
        let mut restarted = false;
        loop {
            let before = progress.batches.load(Ordering::Relaxed);
            let result = run_inner(opts, stop, progress, log);
            let progressed = progress.batches.load(Ordering::Relaxed) > before;
            match result {
                Err(ProjectionError::StateMoved(why)) if progressed || !restarted => {
                    log(&format!(
                        "{why}; starting again from the state the database holds"
                    ));
                    restarted = true;
                }
                // The last attempt's start and end; what every attempt wrote.
                Ok(s) => {
                    let now = counted(progress);
                    return Ok(Summary {
                        commands: now.0 - at_start.0,
                        rows: now.1 - at_start.1,
                        batches: now.2 - at_start.2,
                        ..s
                    });
                }
                Err(e) => return Err(e),
            }
        }
    })
}

/// Runs `f`, returning a panic inside as [`ProjectionError::Data`] naming `what` (a bug, or a
/// table changed by hand: a stored value of another type than its column had).
pub(crate) fn caught<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, ProjectionError>,
) -> Result<T, ProjectionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = ringbook_engine::pipeline::panic_message(&*payload);
        Err(ProjectionError::Data(format!(
            "{what} panicked ({message}): a bug, or a projection table changed by hand; \
             `ringbook project --verify` compares it with the journal, `--rebuild` rebuilds it"
        )))
    })
}

fn run_inner(
    opts: &Options,
    stop: &AtomicBool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, ProjectionError> {
    // Starting (connect, migrate, load, rebuild the engine) is retried like writing when
    // PostgreSQL fails transiently while following.
    let mut wait = Duration::from_millis(50);
    let mut failures = 0u64;
    let (conns, mapper, engine, resumed_at, bulk) = loop {
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
    let mut conns = Link {
        conns: Some(conns),
        stale: Vec::new(),
    };
    progress.committed_seq.store(resumed_at, Ordering::Relaxed);
    let tailer = Tailer::open(&opts.journal, resumed_at + 1)?;
    // "Caught up" is said once, and again after a failure was recovered from (said per idle
    // moment, a lightly loaded server logged it hundreds of times a second).
    let mut say_caught_up = true;
    let mut summary = Summary {
        resumed_at,
        last_seq: resumed_at,
        ..Summary::default()
    };
    let abort = AtomicBool::new(false);
    let abort_ref = &abort;
    let (to_writer, from_mapper) = std::sync::mpsc::sync_channel::<ToWriter>(0);
    let written = std::thread::scope(|scope| {
        let mapping = std::thread::Builder::new()
            .name("projection-map".into())
            .spawn_scoped(scope, move || {
                map_journal(
                    opts, engine, mapper, tailer, resumed_at, stop, abort_ref, progress, to_writer,
                )
            })
            .map_err(|e| ProjectionError::Usage(format!("starting the mapper thread: {e}")))?;
        let mut result = Ok(());
        for msg in &from_mapper {
            match msg {
                ToWriter::Batch(mut batch) => {
                    match flush(
                        &mut conns,
                        opts,
                        &mut batch,
                        stop,
                        progress,
                        &mut summary,
                        log,
                    ) {
                        Ok(recovered) => say_caught_up |= recovered,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                ToWriter::CaughtUp => {
                    if std::mem::take(&mut say_caught_up) {
                        log(&format!("caught up at sequence {}", summary.last_seq));
                    }
                }
            }
        }
        // The writer failed: stop the mapper (a blocked hand-over fails once the receiver is
        // gone) and report the writer's error; otherwise the mapper's.
        abort.store(true, Ordering::Relaxed);
        drop(from_mapper);
        let mapped = mapping.join().unwrap_or_else(|_| {
            Err(ProjectionError::Data(
                "the mapper thread panicked".to_string(),
            ))
        });
        result.and(mapped)
    });
    written?;
    if bulk {
        let started = Instant::now();
        let conns = match conns.conns.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => reconnect(&mut conns, &opts.postgres)?,
        };
        let created = db::ensure_secondary_indexes(conns)?;
        log(&format!(
            "built the {created} history index(es) in {:.3} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(summary)
}

/// What the mapper hands the writer. (Not boxed: a following mapper offers its batch after
/// every record and takes it back when the writer is busy — moving it is cheaper than boxing it
/// each time.)
#[allow(clippy::large_enum_variant)]
enum ToWriter {
    /// Write this batch.
    Batch(Batch),
    /// Every record the journal held has been handed over: say so once it is written.
    CaughtUp,
}

/// The mapper: reads the journal from `resumed_at + 1`, runs the engine, maps the events into
/// batches and hands them to the writer. Returns when the journal's end is handed over and
/// `once` or `stop`, or when the writer is gone (`abort`, or the channel closed).
#[allow(clippy::too_many_arguments)]
fn map_journal(
    opts: &Options,
    mut engine: Engine,
    mut mapper: Mapper,
    mut tailer: Tailer,
    resumed_at: u64,
    stop: &AtomicBool,
    abort: &AtomicBool,
    progress: &Progress,
    to_writer: std::sync::mpsc::SyncSender<ToWriter>,
) -> Result<(), ProjectionError> {
    let mut batch = Batch::default();
    let mut events: Vec<Event> = Vec::with_capacity(256);
    let mut expected = if resumed_at == 0 {
        None
    } else {
        Some(resumed_at + 1)
    };
    let mut idle = Duration::from_micros(200);
    let mut caught_up_sent = false;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let record = tailer.poll()?;
        let Some(record) = record else {
            if !batch.is_empty() && to_writer.send(ToWriter::Batch(take(&mut batch))).is_err() {
                return Ok(());
            }
            if !caught_up_sent {
                if to_writer.send(ToWriter::CaughtUp).is_err() {
                    return Ok(());
                }
                caught_up_sent = true;
            }
            if opts.once || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(idle);
            idle = (idle * 2).min(Duration::from_millis(10));
            continue;
        };
        idle = Duration::from_micros(200);
        caught_up_sent = false;
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
        mapper.apply(seq, ts, &cmd, &events, &mut batch)?;
        batch.last_digest = record_digest(&record);
        progress.read_seq.store(seq, Ordering::Relaxed);
        if batch.commands >= opts.batch_commands {
            if to_writer.send(ToWriter::Batch(take(&mut batch))).is_err() {
                return Ok(());
            }
        } else if !opts.once {
            // Following: hand the batch over the moment the writer is free (it takes it only
            // while waiting), otherwise keep adding to it.
            match to_writer.try_send(ToWriter::Batch(take(&mut batch))) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(ToWriter::Batch(b))) => batch = b,
                Err(_) => return Ok(()),
            }
        }
    }
}

/// A 64-bit digest of a journal record — its sequence, type, stamp and payload, as 64-bit
/// words, FNV-1a style — stored with the projected sequence (`projection_state.last_digest`),
/// so that a projection resumed, or verified, against another journal is refused instead of
/// mixing the two. An identity check, not a seal: the journal's CRC32C covers integrity.
pub fn record_digest(record: &Record<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |w: u64| h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    mix(record.sequence);
    mix(u64::from(record.record_type));
    mix(record.timestamp_ns);
    mix(record.payload.len() as u64);
    let mut words = record.payload.chunks_exact(8);
    for w in &mut words {
        mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(u64::from_le_bytes(tail));
    h
}

/// Refuses a projection of another journal: record `seq` of this journal must have the digest
/// the projection stored with it (`None`: stored before the digest existed, not checked). A
/// record the journal no longer holds (pruned, its segment covered by a snapshot) or does not
/// hold yet is not checked: a projection at that snapshot resumes from it, and a journal
/// shorter than the projection fails when the engine is rebuilt to the projected sequence.
/// Only record `seq` is compared: a journal rewritten after a truncation whose record `seq`
/// came out byte for byte the same (the same command at the same stamp) is not told apart.
fn check_journal_digest(
    opts: &Options,
    seq: u64,
    stored: Option<u64>,
) -> Result<(), ProjectionError> {
    let (Some(stored), true) = (stored, seq > 0) else {
        return Ok(());
    };
    // The record itself may be pruned (all of its segment at or below a snapshot) while the
    // records after it are there: a projection at that snapshot resumes all the same.
    let mut tailer = match Tailer::open(&opts.journal, seq) {
        Err(JournalError::Pruned { .. }) => return Ok(()),
        other => other?,
    };
    let record = match tailer.poll() {
        Ok(Some(record)) => record,
        Ok(None) | Err(JournalError::Pruned { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if record.sequence == seq && record_digest(&record) != stored {
        return Err(ProjectionError::Usage(format!(
            "this database holds a projection of another journal: record {seq} of {} is not \
             the record it projected as {seq}; project into another database, use this \
             database's journal, or --rebuild",
            opts.journal.display()
        )));
    }
    Ok(())
}

fn take(batch: &mut Batch) -> Batch {
    std::mem::take(batch)
}

/// Connects, migrates, checks the reference data, and rebuilds the engine and the mapper's
/// state at the projected sequence (nothing written but the migrations and the history
/// indexes: dropped for a bulk load — `--once` into an empty projection, the last value `true`
/// — otherwise built where a bulk load that did not finish left them out).
fn start(
    opts: &Options,
    stop: &AtomicBool,
    progress: &Progress,
    log: &mut dyn FnMut(&str),
) -> Result<(db::Conns, Mapper, Engine, u64, bool), ProjectionError> {
    let mut conns = connect_retrying(&opts.postgres, stop, opts.once, progress, log)?;
    let client = &mut conns.main;
    if opts.rebuild {
        db::drop_all(client)?;
        log("dropped every projection table (--rebuild)");
    }
    db::migrate(client)?;
    db::reference_data(client, &opts.config)?;
    let (resumed_at, _) = db::projected(client)?;
    check_journal_digest(opts, resumed_at, db::projected_digest(client)?)?;
    db::trim_ledger(client, resumed_at)?;
    // What the database holds is committed: say so now, not after the engine is rebuilt.
    progress.committed_seq.store(resumed_at, Ordering::Relaxed);
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
    let bulk = opts.once && resumed_at == 0;
    if bulk {
        db::drop_secondary_indexes(&mut conns.main)?;
        log("bulk load into an empty projection: the history indexes are built at the end");
    } else {
        let created = db::ensure_secondary_indexes(&mut conns)?;
        if created > 0 {
            log(&format!("built {created} missing history index(es)"));
        }
    }
    Ok((conns, mapper, engine, resumed_at, bulk))
}

/// Replaces the connections with a new pair, dropping the old ones first: the old main
/// connection may still hold the projector lock, which the new one must take (replaced the
/// other way round, a projector whose ledger connection alone broke locked itself out for
/// good: a red-team finding). On failure `conns` is `None`.
fn reconnect<'c>(link: &'c mut Link, url: &str) -> Result<&'c mut db::Conns, ProjectionError> {
    if let Some(old) = link.conns.take() {
        link.stale.extend(old.backends().iter().cloned());
    }
    let new = db::Conns::reconnect(&link.stale, url)?;
    link.stale.clear();
    Ok(link.conns.insert(new))
}

/// The projector's connections, and the server processes (pid and start time) of earlier ones
/// it dropped since it last had a pair: a reconnect that fails (the network still down) must
/// still know them at the next attempt, to end any of them still holding a projector lock.
struct Link {
    conns: Option<db::Conns>,
    stale: Vec<String>,
}

/// Writes the batch, retrying transient PostgreSQL failures (reconnecting) until it is
/// committed — or, once `stop` is set, giving up (the next run resumes). Returns whether a
/// failure was recovered from on the way.
fn flush(
    conns: &mut Link,
    opts: &Options,
    batch: &mut Batch,
    stop: &AtomicBool,
    progress: &Progress,
    summary: &mut Summary,
    log: &mut dyn FnMut(&str),
) -> Result<bool, ProjectionError> {
    let mut wait = Duration::from_millis(50);
    let mut failed = false;
    loop {
        let attempt = (|| {
            let c = match conns.conns.as_mut() {
                Some(c) if !c.is_closed() => c,
                _ => reconnect(conns, &opts.postgres)?,
            };
            db::write_batch(c, batch, opts.faults)
        })();
        match attempt {
            Ok(_) => break,
            // `--once` does not wait for another projector that took the lock meanwhile.
            Err(e)
                if e.is_transient()
                    && !(opts.once && matches!(e, ProjectionError::Busy(_)))
                    && !(stop.load(Ordering::Relaxed) && failed) =>
            {
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
                // A fresh pair for the next attempt (or none, tried again then).
                let _ = reconnect(conns, &opts.postgres);
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
            lag.record(now.saturating_sub(batch.first_ts));
        }
    }
    progress
        .commands
        .fetch_add(batch.commands, Ordering::Relaxed);
    progress.rows.fetch_add(rows, Ordering::Relaxed);
    *batch = Batch::default();
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::LagHistogram;

    /// The journal check of a resumed projection: a record held with another digest is another
    /// journal; a record held with its digest passes; a record pruned (the projection at a
    /// snapshot whose segments went) is not checked, so that projection still resumes.
    #[test]
    fn the_journal_digest_check_refuses_another_record_and_skips_a_pruned_one() {
        use ringbook_journal::{Durability, JournalConfig, Pretouch, Writer};
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            segment_len_bytes: 64 << 10,
            payload_len_max_bytes: 4096,
            durability: Durability::None,
            pretouch: Pretouch::Off,
            ..JournalConfig::default()
        };
        let mut writer = Writer::open(dir.path(), config).unwrap();
        for seq in 1..=3000u64 {
            writer
                .append(seq, 1, seq * 1_000, &seq.to_le_bytes().repeat(8))
                .unwrap();
        }
        let digest_of = |seq: u64| {
            let mut t = super::Tailer::open(dir.path(), seq).unwrap();
            let r = t.poll().unwrap().unwrap();
            assert_eq!(r.sequence, seq);
            super::record_digest(&r)
        };
        let held = digest_of(2900);
        let opts = super::Options::new(dir.path(), "", ringbook_engine::Config::default());
        assert!(super::check_journal_digest(&opts, 2900, Some(held)).is_ok());
        assert!(super::check_journal_digest(&opts, 2900, None).is_ok());
        let e = super::check_journal_digest(&opts, 2900, Some(held ^ 1)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("this database holds a projection of another journal: record 2900"),
            "{e}"
        );
        assert_ne!(digest_of(2899), held);
        ringbook_journal::write_snapshot(dir.path(), 2000, 0, 1, b"state").unwrap();
        let report = writer.prune(u64::MAX, false).unwrap();
        let first = report.first_sequence_after.unwrap();
        assert!(first > 1000, "{report:?}");
        assert!(super::check_journal_digest(&opts, first - 1, Some(12345)).is_ok());
    }

    #[test]
    fn the_lag_histogram_brackets_every_quantile_within_a_sixteenth() {
        for b in 0..=LagHistogram::bucket(u64::MAX) {
            let up = LagHistogram::upper(b);
            assert_eq!(LagHistogram::bucket(up), b, "bucket {b}");
            if up < u64::MAX {
                assert_eq!(LagHistogram::bucket(up + 1), b + 1, "bucket {b}");
            }
        }
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        // 1..=100 000 ms in ns: p50 = 50 000 ms, p99 = 99 000 ms (rank rounding aside).
        for v in 1..=100_000u64 {
            h.record(v * 1_000_000);
        }
        assert_eq!(h.len(), 100_000);
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        let true50 = 50_001 * 1_000_000;
        let true99 = 99_000 * 1_000_000;
        assert!(p50 >= true50 && p50 <= true50 + true50 / 16, "{p50}");
        assert!(p99 >= true99 && p99 <= true99 + true99 / 16, "{p99}");
        assert_eq!(h.quantile(1.0), Some(100_000 * 1_000_000));
        let mut one = LagHistogram::default();
        one.record(7);
        assert_eq!(one.quantile(0.99), Some(7));
    }
}
