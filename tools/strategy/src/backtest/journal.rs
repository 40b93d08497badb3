//! A recorded ringbook journal as the market's flow: every command the server sequenced —
//! deposits, orders, cancels, amends, queries — is applied again, in order, at its recorded
//! time (the record's timestamp), with the strategy's orders in between.
//!
//! The engine must be configured as the recording server was (`--config`). The strategy trades
//! as the highest user id (`users_max − 1`), which the journal must not use; the recorded
//! users keep exactly the funds their recorded deposits gave them, so their orders are refused
//! just as they were (or, where the strategy changed the book, as they now must be: counted in
//! `flow.skipped`).

use std::path::Path;

use ringbook_engine::codec;
use ringbook_engine::pipeline::RECORD_TYPE_COMMAND_V1;
use ringbook_engine::prelude::*;
use ringbook_journal::Reader;

use super::report::FlowStats;
use super::Sim;

fn each(
    dir: &Path,
    mut f: impl FnMut(u64, u64, Command) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = Reader::open(dir).map_err(|e| format!("journal {}: {e}", dir.display()))?;
    let mut first = true;
    loop {
        let record = match reader.next() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("journal {}: {e}", dir.display())),
        };
        // The flow is every command from the first: a journal whose start was pruned
        // (`journal prune`) lacks the deposits and orders its later commands stand on, and
        // would replay as refusals and a flat, "reconciled" report (a red-team finding).
        if std::mem::take(&mut first) && record.sequence != 1 {
            return Err(format!(
                "journal {}: starts at sequence {} (the records before it were pruned): a \
                 backtest replays a journal from its first command, sequence 1",
                dir.display(),
                record.sequence
            ));
        }
        if record.record_type != RECORD_TYPE_COMMAND_V1 {
            return Err(format!(
                "journal {}: record {} has type {}, not a command (v1)",
                dir.display(),
                record.sequence,
                record.record_type
            ));
        }
        let cmd = codec::decode(record.payload).map_err(|e| {
            format!(
                "journal {}: record {} does not decode: {e}",
                dir.display(),
                record.sequence
            )
        })?;
        f(record.sequence, record.timestamp_ns / 1_000_000, cmd)?;
    }
}

/// The first and last record times (ms).
pub fn time_span(dir: &Path) -> Result<(u64, u64), String> {
    let mut span: Option<(u64, u64)> = None;
    each(dir, |_, ts, _| {
        span = Some(span.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
        Ok(())
    })?;
    span.ok_or_else(|| format!("journal {}: no records", dir.display()))
}

/// Replays the journal through the simulation.
pub fn replay(sim: &mut Sim, dir: &Path) -> Result<FlowStats, String> {
    let me = sim.bot.user();
    let mut stats = FlowStats::default();
    let mut last = 0;
    each(dir, |seq, ts, cmd| {
        if cmd.user() == Some(me) {
            return Err(format!(
                "journal record {seq} acts for user {me}, the id the backtest reserves for the strategy (users_max − 1)"
            ));
        }
        // Recorded times may step back a little (clock adjustments): never move time back.
        last = last.max(ts);
        stats.messages += 1;
        stats.commands += 1;
        if sim
            .flow(last, &cmd)
            .iter()
            .any(|e| matches!(e, Event::Rejected { .. }))
        {
            stats.skipped += 1;
        }
        Ok(())
    })?;
    if stats.messages == 0 {
        return Err(format!("journal {}: no records", dir.display()));
    }
    Ok(stats)
}
