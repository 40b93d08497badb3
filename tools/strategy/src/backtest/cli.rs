//! What `ringbook backtest` does, minus argument parsing (tools/src/bots.rs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ringbook_engine::Config;

use super::sweep::{self, SweepSpec};
use super::{plot, ParamsFile, Run, Source};
use crate::strategy::Fixed;

/// `ringbook backtest` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Strategy name.
    pub strategy: String,
    /// Params file.
    pub params: PathBuf,
    /// Data file.
    pub data: PathBuf,
    /// Engine config (default: the embedded one).
    pub config: Option<PathBuf>,
    /// Report path (default `backtest-STRATEGY.json`); the plot goes beside it as `.svg`.
    pub out: Option<PathBuf>,
    /// `KEY=FROM..TO:STEP`.
    pub sweep: Option<String>,
    /// Ranking metric.
    pub rank: String,
    /// Training share of the time span.
    pub train: String,
    /// Proposal path (default `proposal-STRATEGY.json`).
    pub proposal: Option<PathBuf>,
    /// Sweep threads (default: the available cores).
    pub threads: Option<usize>,
}

/// The plot's path beside a report: same name, `.svg`.
pub fn svg_path(report: &Path) -> PathBuf {
    report.with_extension("svg")
}

/// Whether two paths name the same file: where both exist, the same device and inode (a hard
/// link or a symbolic link to a file is that file); otherwise, the same path once resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Refuses outputs that would overwrite an input, or each other (a report named `*.svg` is
/// its own plot's path): checked before anything is read or written, so nothing is lost.
fn check_outputs(o: &Options, outputs: &[(&str, PathBuf)]) -> Result<(), String> {
    let mut inputs = vec![("--params", o.params.clone()), ("--data", o.data.clone())];
    inputs.extend(o.config.clone().map(|c| ("--config", c)));
    for (i, (what, out)) in outputs.iter().enumerate() {
        // An existing output must be a regular file: writing to a FIFO would block the run
        // after all its work (a red-team finding), to a device or directory fail late.
        if std::fs::metadata(out).is_ok_and(|m| !m.is_file()) {
            return Err(format!(
                "{what} {}: not a regular file (a FIFO, device or directory is not written)",
                out.display()
            ));
        }
        if let Some((input, _)) = inputs.iter().find(|(_, p)| same_file(p, out)) {
            return Err(format!(
                "{what} {} is the {input} file: it would be overwritten",
                out.display()
            ));
        }
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| same_file(p, out)) {
            return Err(format!(
                "{what} {} is also {other}: one would overwrite the other",
                out.display()
            ));
        }
    }
    Ok(())
}

/// Runs the backtest (or sweep); returns the lines to print.
pub fn backtest(o: &Options) -> Result<String, String> {
    backtest_reconciled(o).map(|(text, _)| text)
}

/// [`backtest`], and whether the run reconciled (the engine's balances of the strategy's
/// account equal its ledger; always true for a sweep, which refuses a run that does not):
/// `ringbook backtest` exits 1 when it did not, as `ringbook bots` does.
pub fn backtest_reconciled(o: &Options) -> Result<(String, bool), String> {
    let proposal = o
        .proposal
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("proposal-{}.json", o.strategy)));
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("backtest-{}.json", o.strategy)));
    if o.sweep.is_some() {
        check_outputs(o, &[("--proposal", proposal.clone())])?;
    } else {
        check_outputs(o, &[("--out", out.clone()), ("the plot", svg_path(&out))])?;
    }
    let (params, table) = ParamsFile::load(&o.params)?;
    let config = match &o.config {
        Some(p) => {
            crate::files::read_regular(p)?;
            Config::load(p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => Config::default(),
    };
    let run = Run {
        strategy: o.strategy.clone(),
        params,
        source: Source::from_path(&o.data)?,
        config,
        window: None,
    };
    if let Some(spec) = &o.sweep {
        let spec = SweepSpec::parse(spec)?;
        if o.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        let threads = o
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let train = Fixed::parse(&o.train).map_err(|e| format!("--train: {e}"))?;
        let started = Instant::now();
        let p = sweep::sweep(&run, &table, &spec, &o.rank, train, threads)?;
        let path = proposal;
        p.save(&path)?;
        let mut s = format!(
            "{} values of {} ranked by {} (train: first {} of the data, test: the rest), {} threads, {:.1} s\n",
            spec.values.len(),
            spec.key,
            o.rank,
            p.train_share,
            sweep::threads_used(spec.values.len(), threads),
            started.elapsed().as_secs_f64()
        );
        s += &format!(
            "{:>10} {:>12} {:>12} {:>12} {:>12}\n",
            spec.key, "train", "test", "train pnl", "test pnl"
        );
        for r in &p.ranking {
            s += &format!(
                "{:>10} {:>12.4} {:>12.4} {:>12} {:>12}\n",
                r.value, r.train.metric, r.test.metric, r.train.pnl, r.test.pnl
            );
        }
        s += &format!(
            "proposal {} = {} written to {} (pending: `ringbook bots approve {}` to use it)\n",
            spec.key,
            p.proposed_value,
            path.display(),
            path.display()
        );
        return Ok((s, true));
    }
    let started = Instant::now();
    let report = super::run(&run)?;
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(&out, report.json())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let svg = svg_path(&out);
    std::fs::write(&svg, plot::svg(&report)?)
        .map_err(|e| format!("cannot write {}: {e}", svg.display()))?;
    eprintln!(
        "ringbook backtest: {} engine commands in {:.3} s ({:.0} commands/s)",
        report.engine_commands,
        secs,
        report.engine_commands as f64 / secs.max(1e-9)
    );
    let text = format!(
        "{} on {} ({} candles): pnl {} ({:+.4}%), max drawdown {:.4}%, sharpe {:.3}, win rate {:.3} over {} round trips, {} fills, fees {}, exposure {:.3}, reconciled {}\nreport {}\nplot {}\n",
        report.strategy,
        report.data,
        report.candles,
        report.pnl,
        report.ret * 100.0,
        report.max_drawdown * 100.0,
        report.sharpe,
        report.win_rate,
        report.round_trips,
        report.trades,
        report.fees,
        report.exposure_time,
        report.reconciled,
        out.display(),
        svg.display()
    );
    Ok((text, report.reconciled))
}

/// `ringbook bots approve PROPOSAL`: checks the proposal ([`sweep::Proposal::approve`]),
/// shows the parameters being approved, and rewrites the file atomically.
pub fn approve(path: &Path) -> Result<String, String> {
    let mut p = sweep::Proposal::load(path)?;
    let how = p
        .approve()
        .map_err(|e| format!("{}: not approved: {e}", path.display()))?;
    p.save(path)?;
    let mut s = format!(
        "approved {}: {} {} = {} (digest {})\n",
        path.display(),
        p.strategy,
        p.key,
        p.proposed_value,
        p.approved_digest.as_deref().unwrap_or("")
    );
    match how {
        sweep::Approval::New => {}
        sweep::Approval::Again => s += "it was already approved with these parameters\n",
        sweep::Approval::Changed(old) => {
            s += &format!(
            "NOTE: re-approved: the proposal changed since the earlier approval (digest {old})\n"
        )
        }
    }
    s += "parameters approved:\n";
    for line in p.params.lines() {
        if !line.is_empty() {
            s += "  ";
            s += line;
        }
        s += "\n";
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--out` or `--proposal` naming an input, or a report named like its own plot, is
    /// refused before anything is written (it overwrote the params or data file, or the report
    /// with the plot: a red-team finding).
    #[test]
    fn outputs_that_would_overwrite_an_input_or_each_other_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let params = dir.path().join("p.toml");
        let data = dir.path().join("candles.csv");
        std::fs::write(&params, "kept").unwrap();
        std::fs::write(&data, "kept").unwrap();
        let o = |out: Option<PathBuf>, sweep: Option<&str>, proposal: Option<PathBuf>| Options {
            strategy: "breakout".into(),
            params: params.clone(),
            data: data.clone(),
            config: None,
            out,
            sweep: sweep.map(str::to_string),
            rank: "sharpe".into(),
            train: "0.7".into(),
            proposal,
            threads: None,
        };
        // Through another spelling of the same path, and a hard link, too.
        let aliased = dir.path().join(".").join("candles.csv");
        let linked = dir.path().join("linked.toml");
        std::fs::hard_link(&params, &linked).unwrap();
        let cases = [
            (o(Some(params.clone()), None, None), "is the --params file"),
            (o(Some(aliased), None, None), "is the --data file"),
            (o(Some(linked), None, None), "is the --params file"),
            (
                o(Some(dir.path().join("r.svg")), None, None),
                "is also --out",
            ),
            (
                o(None, Some("k=1..2:1"), Some(params.clone())),
                "--proposal",
            ),
        ];
        for (opts, says) in cases {
            let e = backtest(&opts).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&params).unwrap(), "kept");
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "a file was written"
        );
    }
}
