//! `ringbook journal …`: look inside and maintain a journal directory (the format is
//! docs/journal-format.md).
//!
//! ```text
//! ringbook journal dump DIR [--json] [--from SEQ] [--limit N]
//! ringbook journal verify DIR
//! ringbook journal stats DIR [--json]
//! ringbook journal prune DIR --before SEQ [--dry-run]
//! ringbook journal truncate DIR --to SEQ [--dry-run]
//! ringbook journal replay DIR [--config FILE] [--no-risk] [--to SEQ] [--json] [--market-data]
//! ```
//!
//! - `dump` prints every record in sequence order: one line each, human-readable (payload shown
//!   as hex, the first 32 bytes), or with `--json` one object per line with the whole payload in
//!   hex: `{"sequence":S,"type":T,"timestamp_ns":N,"length":L,"segment":I,"offset":O,"payload":"…"}`.
//!   It stops at the first corruption (reported on stderr, status 1). How the journal ends (clean,
//!   sealed, torn tail) goes to stderr with `--json`, as a `#` line otherwise.
//! - `verify` checks every segment, record and snapshot and lists every problem, errors and
//!   warnings (a torn tail, which recovery cuts away, is a warning). Status 0: sound; 1: not.
//! - `stats` prints records, segments, bytes, the sequence range, the timestamp range and the
//!   count of records per type (with `--json`, one object).
//! - `prune` removes the segments whose records are all covered by the newest valid snapshot and
//!   below `--before`; never anything else, never the last segment. It takes the writer's lock,
//!   so it refuses while a writer has the journal open.
//! - `truncate` is the explicit, logged acceptance of a known loss (`ringbook serve` refuses a
//!   damaged journal rather than drop records by itself): it keeps every record up to and
//!   including `--to` (which must be intact, as must everything before it), removes every later
//!   segment and every snapshot beyond `--to`, and reopens the segment holding `--to` as the
//!   journal's last. It prints each thing it removes, then verifies the result. It takes the
//!   writer's lock. Status 0: done and the journal is sound; 1: done but still not sound (see
//!   the problems it lists); 2: refused (nothing changed).
//! - `replay` rebuilds the engine state the journal describes — the newest valid snapshot at or
//!   below `--to` (none: from the journal's first record), then every record after it up to
//!   `--to` inclusive (default: the last) — read-only (nothing in DIR is written, truncated or
//!   locked; a live or crashed journal can be replayed as it is), and prints the state exactly
//!   as `ringbook scenario --final` does: every book, (with risk on) every open account's
//!   balances and the fees, then `state_hash`. What was used (snapshot sequence, records
//!   replayed, last sequence, how the journal ends) goes to stderr, or with `--json` first on
//!   stdout as `{"event":"replay","snapshot_seq":S|null,"replayed":N,"last_seq":S|null,
//!   "later_snapshots":N,"damaged_snapshots":N,"end":"clean"|"sealed …"|"torn tail at …"|null}`.
//!   `--config` and `--no-risk` must be the ones the journal was written with. Status 1: the
//!   journal is corrupt (what `verify` calls unsound); 2: no journal, a record that does not
//!   replay, `--to` beyond the last record, or a snapshot that does not restore.
//!
//! These tools read the journal at rest; a live writer's in-flight record may show as a torn
//! tail. Long runs show a progress bar when stderr is a terminal. Exit status 2: the command
//! could not run (no such directory, I/O error, journal locked).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ringbook_engine::pipeline::{
    replay_journal, replay_journal_outputs, Output, OutputKind, PipelineError,
};
use ringbook_engine::prelude::{Config, RiskMode, Seq};
use ringbook_journal::{
    inspect, prune, truncate, Inspection, JournalConfig, JournalError, Reader, SegmentState,
    Severity, TailState,
};

use crate::printer::Printer;

const EXIT_PROBLEM: u8 = 1;
const EXIT_CANNOT_RUN: u8 = 2;

/// Bytes of payload the human-readable dump shows.
const DUMP_PAYLOAD_PREVIEW_BYTES: usize = 32;

/// `ringbook journal` arguments.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: JournalCmd,
}

#[derive(Debug, Subcommand)]
enum JournalCmd {
    /// Print every record, in sequence order.
    Dump(DumpArgs),
    /// Check every segment, record and snapshot; exit status 0 if the journal is sound.
    Verify(VerifyArgs),
    /// Records, segments, bytes, sequence and time ranges, records per type.
    Stats(StatsArgs),
    /// Remove segments fully covered by the newest valid snapshot.
    Prune(PruneArgs),
    /// Rebuild the engine state (read-only) and print books, balances, fees and state hash.
    Replay(ReplayArgs),
    /// Accept a known loss: keep records up to --to, remove everything after (logged).
    Truncate(TruncateArgs),
}

#[derive(Debug, ClapArgs)]
struct TruncateArgs {
    /// The journal directory.
    dir: PathBuf,
    /// The last sequence to keep; every record after it, and every snapshot beyond it, is
    /// removed.
    #[arg(long, value_name = "SEQ")]
    to: u64,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, ClapArgs)]
struct ReplayArgs {
    /// The journal directory.
    dir: PathBuf,
    /// Engine configuration the journal was written with (TOML); the embedded default if
    /// absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The journal was written with risk off (the order books alone).
    #[arg(long)]
    no_risk: bool,
    /// Stop after the record with this sequence (default: the last record).
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
    /// Print what was used as a leading JSON line (`"event":"replay"`) instead of on stderr.
    #[arg(long)]
    json: bool,
    /// Rebuild the market data from the journal's first record (snapshots are not used) and
    /// print it as `ringbook scenario --market-data --final` does: the `md_trade` and
    /// `md_depth` lines as the commands replay, then (after the `--json` line) the
    /// `md_candle` and `md_ticker` lines before the final state.
    #[arg(long)]
    market_data: bool,
}

#[derive(Debug, ClapArgs)]
struct DumpArgs {
    /// The journal directory.
    dir: PathBuf,
    /// One JSON object per record, whole payload in hex.
    #[arg(long)]
    json: bool,
    /// Start at this sequence.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    from: u64,
    /// Print at most this many records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

#[derive(Debug, ClapArgs)]
struct VerifyArgs {
    /// The journal directory.
    dir: PathBuf,
}

#[derive(Debug, ClapArgs)]
struct StatsArgs {
    /// The journal directory.
    dir: PathBuf,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, ClapArgs)]
struct PruneArgs {
    /// The journal directory.
    dir: PathBuf,
    /// Remove only records with a sequence below this (and covered by the newest snapshot).
    #[arg(long, value_name = "SEQ")]
    before: u64,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `ringbook journal …`.
pub fn run(args: Args) -> ExitCode {
    let stdout = io::stdout();
    let to_terminal = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match args.command {
        JournalCmd::Dump(a) => dump(&a, &mut out, to_terminal),
        JournalCmd::Verify(a) => verify(&a, &mut out),
        JournalCmd::Stats(a) => stats(&a, &mut out),
        JournalCmd::Prune(a) => prune_cmd(&a, &mut out),
        JournalCmd::Replay(a) => replay(&a, &mut out),
        JournalCmd::Truncate(a) => truncate_cmd(&a, &mut out),
    }
    .and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(message)) => {
            eprintln!("ringbook journal: {message}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

/// A reason the command could not run at all.
#[derive(Debug)]
struct Fatal(String);

impl From<JournalError> for Fatal {
    fn from(e: JournalError) -> Self {
        Fatal(e.to_string())
    }
}

impl From<io::Error> for Fatal {
    fn from(e: io::Error) -> Self {
        Fatal(format!("output: {e}"))
    }
}

fn require_dir(dir: &Path) -> Result<(), Fatal> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Fatal(format!("{}: not a directory", dir.display())))
    }
}

/// A directory that holds a journal, or held one: a segment, a snapshot or the creation
/// marker. Anything else is refused before it is read or locked (a lock file would be left
/// in a directory that is not a journal; `verify` would call any directory a sound, empty one).
fn require_journal(dir: &Path) -> Result<(), Fatal> {
    require_dir(dir)?;
    let listing = ringbook_journal::list(dir)?;
    let marker = dir.join(ringbook_journal::CREATED_FILE_NAME).exists();
    if listing.segments.is_empty() && listing.snapshots.is_empty() && !marker {
        return Err(Fatal(format!(
            "{}: no journal here (no segment, snapshot or {} file)",
            dir.display(),
            ringbook_journal::CREATED_FILE_NAME
        )));
    }
    Ok(())
}

/// A byte-count progress bar on stderr, only when stderr is a terminal (hidden otherwise).
fn progress_bar(total_bytes: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

/// Bytes of the segment files before each segment index, and in all.
fn segment_offsets(dir: &Path) -> Result<(BTreeMap<u64, u64>, u64), Fatal> {
    let mut offsets = BTreeMap::new();
    let mut total = 0u64;
    for (index, path) in ringbook_journal::list(dir)?.segments {
        offsets.insert(index, total);
        total += std::fs::metadata(&path)
            .map_err(|e| Fatal(format!("{}: {e}", path.display())))?
            .len();
    }
    Ok((offsets, total))
}

fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn describe_tail(tail: Option<&TailState>) -> String {
    match tail {
        None => "stopped".to_string(),
        Some(TailState::Clean) => "clean".to_string(),
        Some(TailState::Sealed) => "sealed (next segment not started)".to_string(),
        Some(TailState::Torn {
            path,
            offset,
            bytes,
            damage,
        }) => format!(
            "torn tail at {} offset {offset}: {bytes} byte(s), {} (cut away when a writer next opens the journal)",
            path.display(),
            damage.map_or("a record never committed".to_string(), |d| d.to_string())
        ),
    }
}

fn dump(args: &DumpArgs, out: &mut dyn Write, out_is_terminal: bool) -> Result<u8, Fatal> {
    require_journal(&args.dir)?;
    let (offsets, total) = segment_offsets(&args.dir)?;
    let mut reader = Reader::open_from(&args.dir, args.from)?;
    // A bar would tangle with records printed on the same terminal.
    let bar = if out_is_terminal {
        ProgressBar::hidden()
    } else {
        progress_bar(total, "dump")
    };
    let mut line = String::with_capacity(256);
    let mut printed = 0u64;
    let mut segment = None;
    let limit = args.limit.unwrap_or(u64::MAX);
    let status = loop {
        if printed >= limit {
            break Ok(());
        }
        let (pos, record) = match reader.next_positioned() {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        line.clear();
        if args.json {
            let _ = write!(
                line,
                "{{\"sequence\":{},\"type\":{},\"timestamp_ns\":{},\"length\":{},\"segment\":{},\"offset\":{},\"payload\":\"",
                record.sequence,
                record.record_type,
                record.timestamp_ns,
                record.payload.len(),
                pos.segment_index,
                pos.offset
            );
            hex(record.payload, &mut line);
            line.push_str("\"}");
        } else {
            if segment != Some(pos.segment_index) {
                segment = Some(pos.segment_index);
                let _ = writeln!(
                    line,
                    "# segment {} ({})",
                    pos.segment_index,
                    ringbook_journal::segment_path(&args.dir, pos.segment_index).display()
                );
            }
            let _ = write!(
                line,
                "seq={} type={} ts={} len={} payload=",
                record.sequence,
                record.record_type,
                record.timestamp_ns,
                record.payload.len()
            );
            let shown = record.payload.len().min(DUMP_PAYLOAD_PREVIEW_BYTES);
            hex(&record.payload[..shown], &mut line);
            if shown < record.payload.len() {
                line.push('…');
            }
        }
        writeln!(out, "{line}")?;
        printed += 1;
        if printed.is_multiple_of(4096) {
            bar.set_position(offsets.get(&pos.segment_index).copied().unwrap_or(0) + pos.offset);
        }
    };
    bar.finish_and_clear();
    let end = match &status {
        Ok(()) if printed >= limit => format!("stopped after {printed} record(s) (--limit)"),
        Ok(()) => format!("{printed} record(s); end: {}", describe_tail(reader.tail())),
        Err(e) => format!("{printed} record(s), then: {e}"),
    };
    if args.json {
        out.flush()?;
        eprintln!("{end}");
    } else {
        writeln!(out, "# {end}")?;
        out.flush()?;
    }
    Ok(if status.is_ok() { 0 } else { EXIT_PROBLEM })
}

/// Per-record figures gathered for `stats`.
struct Tally {
    per_type: Vec<u64>,
    timestamp_min_ns: u64,
    timestamp_max_ns: u64,
    payload_bytes: u64,
}

fn inspect_with_progress(
    dir: &Path,
    what: &str,
    mut on_record: impl FnMut(&ringbook_journal::Record<'_>),
) -> Result<Inspection, Fatal> {
    require_dir(dir)?;
    let (_, total) = segment_offsets(dir)?;
    let bar = progress_bar(total, what);
    let inspection = inspect(dir, |r, _| on_record(r), |p| bar.set_position(p.done_bytes))?;
    bar.finish_and_clear();
    Ok(inspection)
}

/// What the journal crate cannot judge, being blind to the engine's state encoding: a snapshot
/// whose state format this build does not read. Recovery and replay start from the newest valid
/// snapshot and refuse one of another format, so that one is an error; an older one is never
/// read while a newer one is valid, a warning. (`verify` called such a journal sound while
/// `serve` refused it: a docs review finding.)
fn snapshot_format_problems(inspection: &mut Inspection) {
    let format = u32::from(ringbook_engine::snapshot::SNAPSHOT_FORMAT_VERSION);
    let newest = inspection
        .snapshots
        .iter()
        .rev()
        .find_map(|(_, r)| r.as_ref().ok())
        .map(|m| m.path.clone());
    let mut found = Vec::new();
    for (path, r) in &inspection.snapshots {
        let Ok(m) = r else { continue };
        if m.state_format == format {
            continue;
        }
        let is_newest = newest.as_ref() == Some(path);
        found.push(ringbook_journal::Problem {
            severity: if is_newest {
                Severity::Error
            } else {
                Severity::Warning
            },
            path: path.clone(),
            offset: None,
            message: format!(
                "snapshot state format {}, this build reads {format}: {}",
                m.state_format,
                if is_newest {
                    "serve and replay start from this snapshot and refuse it (use the build that \
                     wrote it, or remove the snapshot to replay from the records)"
                } else {
                    "not read while a newer snapshot is valid"
                }
            ),
        });
    }
    inspection.problems.extend(found);
}

fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<u8, Fatal> {
    require_journal(&args.dir)?;
    let mut inspection = inspect_with_progress(&args.dir, "verify", |_| {})?;
    snapshot_format_problems(&mut inspection);
    for problem in &inspection.problems {
        writeln!(out, "{problem}")?;
    }
    let errors = inspection
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = inspection.problems.len() - errors;
    let range = inspection
        .sequence_range
        .map_or("no records".to_string(), |(a, b)| {
            format!("sequences {a}..={b}")
        });
    let snapshots = inspection.snapshots.iter().filter(|s| s.1.is_ok()).count();
    let summary = format!(
        "{} record(s) in {} segment(s), {range}; {snapshots} valid snapshot(s); {errors} error(s), {warnings} warning(s)",
        inspection.records,
        inspection.segments.len()
    );
    if inspection.is_sound() {
        writeln!(out, "sound: {summary}")?;
        Ok(0)
    } else {
        writeln!(out, "NOT SOUND: {summary}")?;
        Ok(EXIT_PROBLEM)
    }
}

fn stats(args: &StatsArgs, w: &mut dyn Write) -> Result<u8, Fatal> {
    let mut tally = Tally {
        per_type: vec![0; usize::from(u16::MAX) + 1],
        timestamp_min_ns: u64::MAX,
        timestamp_max_ns: 0,
        payload_bytes: 0,
    };
    let inspection = inspect_with_progress(&args.dir, "stats", |r| {
        tally.per_type[usize::from(r.record_type)] += 1;
        tally.timestamp_min_ns = tally.timestamp_min_ns.min(r.timestamp_ns);
        tally.timestamp_max_ns = tally.timestamp_max_ns.max(r.timestamp_ns);
        tally.payload_bytes += r.payload.len() as u64;
    })?;
    let count = |state| {
        inspection
            .segments
            .iter()
            .filter(|s| s.state == state)
            .count()
    };
    let types: Vec<(usize, u64)> = tally
        .per_type
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(t, &n)| (t, n))
        .collect();
    let time_range =
        (inspection.records > 0).then_some((tally.timestamp_min_ns, tally.timestamp_max_ns));
    let errors = inspection
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = inspection.problems.len() - errors;
    let mut out = String::new();
    if args.json {
        let opt_pair =
            |p: Option<(u64, u64)>| p.map_or("null".to_string(), |(a, b)| format!("[{a},{b}]"));
        let _ = write!(
            out,
            "{{\"records\":{},\"segments\":{},\"segments_sealed\":{},\"file_bytes\":{},\"used_bytes\":{},\"payload_bytes\":{},\"sequence_range\":{},\"timestamp_range_ns\":{},\"types\":{{",
            inspection.records,
            inspection.segments.len(),
            count(SegmentState::Sealed),
            inspection.file_bytes(),
            inspection.used_bytes(),
            tally.payload_bytes,
            opt_pair(inspection.sequence_range),
            opt_pair(time_range),
        );
        for (i, (t, n)) in types.iter().enumerate() {
            let _ = write!(out, "{}\"{t}\":{n}", if i > 0 { "," } else { "" });
        }
        let _ = write!(out, "}},\"errors\":{errors},\"warnings\":{warnings}}}");
    } else {
        let _ = writeln!(out, "journal    {}", args.dir.display());
        let _ = writeln!(
            out,
            "segments   {} ({} sealed, {} open, {} torn, {} corrupt, {} unused)",
            inspection.segments.len(),
            count(SegmentState::Sealed),
            count(SegmentState::Open),
            count(SegmentState::Torn),
            count(SegmentState::Corrupt),
            count(SegmentState::Unused),
        );
        let _ = writeln!(
            out,
            "bytes      {} in files, {} used, {} of payload",
            inspection.file_bytes(),
            inspection.used_bytes(),
            tally.payload_bytes
        );
        let _ = writeln!(out, "records    {}", inspection.records);
        let _ = match inspection.sequence_range {
            Some((a, b)) => writeln!(out, "sequences  {a}..={b}"),
            None => writeln!(out, "sequences  none"),
        };
        let _ = match time_range {
            Some((a, b)) => writeln!(
                out,
                "timestamps {a}..={b} ns (span {:.3} s)",
                (b - a) as f64 / 1e9
            ),
            None => writeln!(out, "timestamps none"),
        };
        let _ = write!(out, "types     ");
        if types.is_empty() {
            let _ = write!(out, " none");
        }
        for (t, n) in &types {
            let _ = write!(out, " {t}:{n}");
        }
        let _ = writeln!(out);
        let snapshots: Vec<String> = inspection
            .snapshots
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok().map(|m| m.sequence.to_string()))
            .collect();
        let _ = writeln!(
            out,
            "snapshots  {}",
            if snapshots.is_empty() {
                "none".to_string()
            } else {
                format!("at sequences {}", snapshots.join(", "))
            }
        );
        let _ = write!(
            out,
            "problems   {errors} error(s), {warnings} warning(s) (details: ringbook journal verify)"
        );
    }
    writeln!(w, "{out}")?;
    Ok(0)
}

fn prune_cmd(args: &PruneArgs, out: &mut dyn Write) -> Result<u8, Fatal> {
    require_journal(&args.dir)?;
    let report = match prune(&args.dir, args.before, args.dry_run) {
        Err(JournalError::Locked { path }) => {
            return Err(Fatal(format!(
            "a writer has the journal open ({} is locked); prune from the writer, or stop it first",
            path.display()
        )))
        }
        r => r?,
    };
    for (path, damage) in &report.damaged_snapshots {
        eprintln!("warning: {}: {damage}; skipped", path.display());
    }
    let Some(snapshot) = &report.snapshot else {
        writeln!(out, "no valid snapshot: nothing can be pruned")?;
        return Ok(0);
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for path in &report.removed {
        writeln!(out, "{verb} {}", path.display())?;
    }
    writeln!(
        out,
        "{verb} {} segment(s); snapshot covers up to sequence {}; the journal {} at sequence {}",
        report.removed.len(),
        snapshot.sequence,
        if args.dry_run {
            "would start"
        } else {
            "starts"
        },
        report
            .first_sequence_after
            .map_or("-".to_string(), |s| s.to_string())
    )?;
    Ok(0)
}

fn truncate_cmd(args: &TruncateArgs, out: &mut dyn Write) -> Result<u8, Fatal> {
    require_journal(&args.dir)?;
    let report = match truncate(&args.dir, args.to, args.dry_run) {
        Err(JournalError::Locked { path }) => {
            return Err(Fatal(format!(
                "a writer has the journal open ({} is locked); stop it first",
                path.display()
            )))
        }
        r => r?,
    };
    let (verb, prefix) = if args.dry_run {
        ("would remove", "dry run: ")
    } else {
        ("removed", "")
    };
    let range = |r: Option<(u64, u64)>| {
        r.map_or("no intact record".to_string(), |(a, b)| {
            format!("records {a}..={b}")
        })
    };
    for path in &report.removed_snapshots {
        writeln!(out, "{prefix}{verb} snapshot {}", path.display())?;
    }
    for seg in &report.removed_segments {
        writeln!(
            out,
            "{prefix}{verb} segment {} ({} bytes; {})",
            seg.path.display(),
            seg.file_len,
            range(seg.sequences)
        )?;
    }
    if let (Some(len), Some(last)) = (report.restored_from_len, &report.last_segment) {
        writeln!(
            out,
            "{prefix}{} {} to its full length (it was {len} bytes)",
            if args.dry_run {
                "would restore"
            } else {
                "restored"
            },
            last.display()
        )?;
    }
    match &report.last_segment {
        Some(last) => writeln!(
            out,
            "{prefix}{} {} after offset {}: {} non-zero byte(s) zeroed ({} dropped)",
            if args.dry_run { "would cut" } else { "cut" },
            last.display(),
            report.cut_offset,
            report.bytes_zeroed,
            range(report.records_dropped_in_last)
        )?,
        None => writeln!(
            out,
            "{prefix}no segment held a record: the journal {} empty",
            if args.dry_run { "would be" } else { "is" }
        )?,
    }
    writeln!(
        out,
        "{prefix}the journal {} at sequence {}; the next record is {}{}",
        if args.dry_run { "would end" } else { "ends" },
        args.to,
        args.to + 1,
        report.last_dropped().map_or(String::new(), |s| format!(
            "; intact records {}..={s} {}",
            args.to + 1,
            if args.dry_run {
                "would be lost"
            } else {
                "were dropped"
            }
        ))
    )?;
    if args.dry_run {
        return Ok(0);
    }
    let inspection = inspect_with_progress(&args.dir, "verify", |_| {})?;
    for problem in &inspection.problems {
        writeln!(out, "{problem}")?;
    }
    if inspection.is_sound() {
        writeln!(out, "sound: the journal is accepted as it is now")?;
        Ok(0)
    } else {
        writeln!(out, "NOT SOUND after truncating (see the errors above)")?;
        Ok(EXIT_PROBLEM)
    }
}

fn replay(args: &ReplayArgs, out: &mut dyn Write) -> Result<u8, Fatal> {
    require_dir(&args.dir)?;
    let listing = ringbook_journal::list(&args.dir)?;
    if listing.segments.is_empty() && listing.snapshots.is_empty() {
        return Err(Fatal(format!(
            "{}: no journal here (no segment or snapshot files)",
            args.dir.display()
        )));
    }
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Fatal(e.to_string()))?,
        None => Config::default(),
    };
    let risk = if args.no_risk {
        RiskMode::Off
    } else {
        RiskMode::On
    };
    let mut printer = Printer::new(out, &config);
    let replayed = if args.market_data {
        printer = printer.with_market_data(&config);
        replay_journal_outputs(
            &config,
            risk,
            &args.dir,
            JournalConfig::default().first_sequence,
            args.to.map(Seq),
            &mut |o: &Output| match o.kind {
                OutputKind::Event(ref e) => printer.market_data_event(e),
                OutputKind::Done => printer.command_done(o.ts),
            },
        )
    } else {
        replay_journal(
            &config,
            risk,
            &args.dir,
            JournalConfig::default().first_sequence,
            args.to.map(Seq),
        )
    };
    let (engine, info) = match replayed {
        Ok(r) => r,
        Err(PipelineError::Journal(e @ JournalError::Corrupt(_))) => {
            eprintln!("ringbook journal: replay stopped: {e} (see ringbook journal verify)");
            return Ok(EXIT_PROBLEM);
        }
        Err(e) => return Err(Fatal(format!("{}: {e}", args.dir.display()))),
    };
    let opt = |s: Option<Seq>| s.map_or("null".to_string(), |s| s.0.to_string());
    if args.json {
        printer.raw(&format!(
            "{{\"event\":\"replay\",\"snapshot_seq\":{},\"replayed\":{},\"last_seq\":{},\
             \"later_snapshots\":{},\"damaged_snapshots\":{},\"end\":{}}}\n",
            opt(info.snapshot_seq),
            info.replayed,
            opt(info.last_seq),
            info.later_snapshots,
            info.damaged_snapshots,
            // How the journal ends, as on stderr without --json (null with --to).
            if args.to.is_none() {
                serde_json::Value::from(describe_tail(info.tail.as_ref())).to_string()
            } else {
                "null".to_string()
            }
        ));
    } else {
        let mut note = format!(
            "replay: snapshot {}, {} record(s) replayed, last sequence {}",
            info.snapshot_seq
                .map_or("none".to_string(), |s| format!("at sequence {}", s.0)),
            info.replayed,
            info.last_seq
                .map_or("none".to_string(), |s| s.0.to_string()),
        );
        if info.later_snapshots > 0 {
            let _ = write!(
                note,
                "; {} newer snapshot(s) skipped (past --to)",
                info.later_snapshots
            );
        }
        if info.damaged_snapshots > 0 {
            let _ = write!(
                note,
                "; {} damaged snapshot(s) skipped",
                info.damaged_snapshots
            );
        }
        if args.to.is_none() {
            let _ = write!(note, "; end: {}", describe_tail(info.tail.as_ref()));
        }
        eprintln!("{note}");
    }
    printer.final_state(&engine);
    printer.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_journal::{write_snapshot, JournalConfig, Pretouch, Writer};

    fn journal(records: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            segment_len_bytes: 16 << 10,
            payload_len_max_bytes: 1024,
            pretouch: Pretouch::Off,
            ..JournalConfig::default()
        };
        let mut writer = Writer::open(dir.path(), config).unwrap();
        for seq in 1..=records {
            let payload: Vec<u8> = (0..seq % 50).map(|i| i as u8).collect();
            writer
                .append(seq, (seq % 3) as u16, 1_000 + seq, &payload)
                .unwrap();
        }
        dir
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn dump_prints_every_record_in_both_forms() {
        let dir = journal(500);
        let mut out = Vec::new();
        let args = DumpArgs {
            dir: dir.path().into(),
            json: true,
            from: 0,
            limit: None,
        };
        assert_eq!(dump(&args, &mut out, false).unwrap(), 0);
        let out = text(out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 500);
        assert_eq!(
            lines[2],
            "{\"sequence\":3,\"type\":0,\"timestamp_ns\":1003,\"length\":3,\"segment\":0,\"offset\":144,\"payload\":\"000102\"}"
        );
        let mut out = Vec::new();
        let args = DumpArgs {
            dir: dir.path().into(),
            json: false,
            from: 499,
            limit: Some(1),
        };
        assert_eq!(dump(&args, &mut out, false).unwrap(), 0);
        let out = text(out);
        assert!(
            out.contains("seq=499 type=1 ts=1499 len=49 payload=000102"),
            "{out}"
        );
        assert!(out.contains('…') && out.contains("--limit"), "{out}");
    }

    #[test]
    fn verify_and_dump_report_corruption() {
        let dir = journal(500);
        let mut out = Vec::new();
        let args = VerifyArgs {
            dir: dir.path().into(),
        };
        assert_eq!(verify(&args, &mut out).unwrap(), 0);
        assert!(text(out).starts_with("sound: 500 record(s)"));
        // Damage a record in the first segment.
        let path = ringbook_journal::segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[200] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut out = Vec::new();
        assert_eq!(verify(&args, &mut out).unwrap(), EXIT_PROBLEM);
        let out = text(out);
        assert!(
            out.contains("error: ")
                && out.contains("segment-00000000000000000000.rbj at offset 184"),
            "{out}"
        );
        assert!(out.contains("NOT SOUND"), "{out}");
        let dump_args = DumpArgs {
            dir: dir.path().into(),
            json: false,
            from: 0,
            limit: None,
        };
        assert_eq!(
            dump(&dump_args, &mut Vec::new(), false).unwrap(),
            EXIT_PROBLEM
        );
    }

    #[test]
    fn stats_counts_types_and_ranges() {
        let dir = journal(300);
        let mut out = Vec::new();
        let args = StatsArgs {
            dir: dir.path().into(),
            json: true,
        };
        assert_eq!(stats(&args, &mut out).unwrap(), 0);
        let out = text(out);
        assert!(out.contains("\"records\":300"), "{out}");
        assert!(out.contains("\"sequence_range\":[1,300]"), "{out}");
        assert!(out.contains("\"timestamp_range_ns\":[1001,1300]"), "{out}");
        assert!(
            out.contains("\"types\":{\"0\":100,\"1\":100,\"2\":100}"),
            "{out}"
        );
        let mut out = Vec::new();
        let args = StatsArgs {
            dir: dir.path().into(),
            json: false,
        };
        stats(&args, &mut out).unwrap();
        let out = text(out);
        assert!(
            out.contains("records    300") && out.contains("types      0:100 1:100 2:100"),
            "{out}"
        );
    }

    #[test]
    fn prune_needs_a_snapshot_and_the_lock() {
        let dir = journal(2000);
        let args = PruneArgs {
            dir: dir.path().into(),
            before: u64::MAX,
            dry_run: false,
        };
        let mut out = Vec::new();
        assert_eq!(prune_cmd(&args, &mut out).unwrap(), 0);
        assert!(text(out).contains("no valid snapshot"));
        write_snapshot(dir.path(), 1000, 0, ENGINE_FORMAT, b"state").unwrap();
        let before = ringbook_journal::list(dir.path()).unwrap().segments.len();
        let mut out = Vec::new();
        assert_eq!(prune_cmd(&args, &mut out).unwrap(), 0);
        let out = text(out);
        let after = ringbook_journal::list(dir.path()).unwrap().segments.len();
        assert!(after < before, "{out}");
        assert!(out.contains("snapshot covers up to sequence 1000"), "{out}");
        let mut out = Vec::new();
        let verify_args = VerifyArgs {
            dir: dir.path().into(),
        };
        assert_eq!(verify(&verify_args, &mut out).unwrap(), 0, "{}", text(out));
        // Dumping a pruned journal starts at the first record it still holds.
        let mut out = Vec::new();
        let dump_args = DumpArgs {
            dir: dir.path().into(),
            json: true,
            from: 0,
            limit: Some(1),
        };
        assert_eq!(dump(&dump_args, &mut out, false).unwrap(), 0);
        let out = text(out);
        assert!(
            !out.starts_with("{\"sequence\":1,") && out.starts_with("{\"sequence\":"),
            "{out}"
        );
        // A live writer holds the lock.
        let _writer = Writer::open(dir.path(), JournalConfig::default()).unwrap();
        let err = prune_cmd(&args, &mut Vec::new()).unwrap_err();
        assert!(err.0.contains("a writer has the journal open"), "{err:?}");
    }

    const ENGINE_FORMAT: u32 = ringbook_engine::snapshot::SNAPSHOT_FORMAT_VERSION as u32;

    #[test]
    fn verify_names_a_snapshot_of_a_state_format_this_build_does_not_read() {
        let dir = journal(300);
        let verify_args = VerifyArgs {
            dir: dir.path().into(),
        };
        let run = || {
            let mut out = Vec::new();
            let code = verify(&verify_args, &mut out).unwrap();
            (code, text(out))
        };
        // An older snapshot of another format is never read while a newer one is valid.
        write_snapshot(dir.path(), 100, 0, ENGINE_FORMAT - 1, b"state").unwrap();
        write_snapshot(dir.path(), 200, 0, ENGINE_FORMAT, b"state").unwrap();
        let (code, out) = run();
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!("snapshot state format {}", ENGINE_FORMAT - 1))
                && out.contains("not read while a newer snapshot is valid")
                && out.contains("0 error(s), 1 warning(s)"),
            "{out}"
        );
        // The newest valid one is where serve and replay start: an error.
        write_snapshot(dir.path(), 250, 0, ENGINE_FORMAT + 1, b"state").unwrap();
        let (code, out) = run();
        assert_eq!(code, EXIT_PROBLEM, "{out}");
        assert!(
            out.contains("NOT SOUND") && out.contains("refuse it"),
            "{out}"
        );
    }

    #[test]
    fn truncate_prints_what_it_removes_and_a_dry_run_removes_nothing() {
        let dir = journal(2000);
        write_snapshot(dir.path(), 1500, 0, 1, b"state").unwrap();
        let segments = ringbook_journal::list(dir.path()).unwrap().segments;
        assert!(segments.len() >= 3);
        let args = TruncateArgs {
            dir: dir.path().into(),
            to: 300,
            dry_run: true,
        };
        let mut out = Vec::new();
        assert_eq!(truncate_cmd(&args, &mut out).unwrap(), 0);
        let out = text(out);
        assert!(out.contains("dry run: would remove snapshot"), "{out}");
        assert!(out.contains("dry run: would remove segment"), "{out}");
        assert!(out.contains("records 301..=2000 would be lost"), "{out}");
        assert_eq!(
            ringbook_journal::list(dir.path()).unwrap().segments,
            segments
        );
        let args = TruncateArgs {
            dry_run: false,
            ..args
        };
        let mut out = Vec::new();
        assert_eq!(truncate_cmd(&args, &mut out).unwrap(), 0);
        let out = text(out);
        assert!(
            out.contains("removed segment") && out.contains("removed snapshot"),
            "{out}"
        );
        assert!(
            out.contains("the journal ends at sequence 300; the next record is 301"),
            "{out}"
        );
        assert!(out.contains("sound: the journal is accepted"), "{out}");
        let mut out = Vec::new();
        let verify_args = VerifyArgs {
            dir: dir.path().into(),
        };
        assert_eq!(verify(&verify_args, &mut out).unwrap(), 0);
        assert!(text(out).starts_with("sound: 300 record(s)"));
        // Beyond what is there: refused, nothing changed.
        let args = TruncateArgs {
            dir: dir.path().into(),
            to: 301,
            dry_run: false,
        };
        let err = truncate_cmd(&args, &mut Vec::new()).unwrap_err();
        assert!(
            err.0
                .contains("beyond the journal's end: its last record is sequence 300"),
            "{err:?}"
        );
    }

    /// A directory that holds no journal is refused by name — `verify` does not call it sound,
    /// `truncate` and `prune` leave no lock file in it.
    #[test]
    fn a_directory_without_a_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = || dir.path().to_path_buf();
        let errors = [
            verify(&VerifyArgs { dir: d() }, &mut Vec::new()).unwrap_err(),
            truncate_cmd(
                &TruncateArgs {
                    dir: d(),
                    to: 0,
                    dry_run: false,
                },
                &mut Vec::new(),
            )
            .unwrap_err(),
            prune_cmd(
                &PruneArgs {
                    dir: d(),
                    before: 5,
                    dry_run: false,
                },
                &mut Vec::new(),
            )
            .unwrap_err(),
        ];
        for e in errors {
            assert!(e.0.contains("no journal here"), "{e:?}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a file was left"
        );
    }

    #[test]
    fn a_missing_directory_cannot_run() {
        let args = VerifyArgs {
            dir: "/nonexistent/ringbook-journal".into(),
        };
        assert!(verify(&args, &mut Vec::new()).is_err());
    }
}
