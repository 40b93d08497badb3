//! Parameter sweeps with a walk-forward split, and the proposals they write.
//!
//! `--sweep k=0.3..0.7:0.1` runs the strategy once per value (0.3, 0.4, … 0.7, inclusive) on
//! the *training* part of the data (the first `train` share of its time span) and once on the
//! *test* part (the rest: the book is built by the flow from the start, the strategy trades
//! only inside its window and is flattened at its end). Values are ranked by the chosen metric
//! on the training part; the test figures beside them show whether the winner holds up out
//! of sample (a large gap is over-fitting). Runs go in parallel on the available cores; the
//! results do not depend on the order they finish in.
//!
//! The proposal is the params file with the best value applied, and `"status": "pending"`.
//! `ringbook bots approve PROPOSAL` sets `"status": "approved"` and records a digest of the
//! proposed parameters; `ringbook bots` uses a proposal only when it is approved and the digest
//! still matches (an edited proposal needs approving again).
//!
//! Approval checks the proposal first ([`Proposal::approve`]): its status is `pending` (or
//! `approved`, to approve again), its params parse and build the named strategy the way the
//! bots build it, and `params[key]` is the `proposed_value`. A proposal with fields this
//! version does not know is refused (they would be lost on the rewrite). The file is rewritten
//! atomically ([`crate::files::write_atomic`]).
//!
//! The digest is an unkeyed FNV-1a of the params, kept in the same file: it catches accidental
//! edits after approval, not forgery (anyone who can edit the file can recompute it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{report::METRICS, time_span, Report, Run};
use crate::strategy::Fixed;

/// A parsed `KEY=FROM..TO:STEP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepSpec {
    /// The strategy parameter.
    pub key: String,
    /// The values, in order.
    pub values: Vec<Fixed>,
}

/// Most values one sweep may run.
const VALUES_MAX: usize = 1_000;

impl SweepSpec {
    /// Parses `k=0.3..0.7:0.1` (the end included when the steps reach it exactly).
    pub fn parse(text: &str) -> Result<SweepSpec, String> {
        let bad = |why: &str| {
            format!("--sweep {text:?}: {why} (expected KEY=FROM..TO:STEP, e.g. k=0.3..0.7:0.1)")
        };
        let (key, range) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (range, step) = range.split_once(':').ok_or_else(|| bad("no ':STEP'"))?;
        let (from, to) = range.split_once("..").ok_or_else(|| bad("no 'FROM..TO'"))?;
        let (from, to, step) = (
            Fixed::parse(from).map_err(|e| bad(&e))?,
            Fixed::parse(to).map_err(|e| bad(&e))?,
            Fixed::parse(step).map_err(|e| bad(&e))?,
        );
        if key.trim().is_empty() || matches!(key.trim(), "risk" | "backtest") {
            return Err(bad("KEY must name a strategy parameter"));
        }
        if step.0 <= 0 || to < from {
            return Err(bad("need STEP > 0 and FROM <= TO"));
        }
        // In i128: the span of two far-apart values overflows i64 (a red-team pass read a
        // wrapped count).
        let n = (i128::from(to.0) - i128::from(from.0)) / i128::from(step.0) + 1;
        if n > VALUES_MAX as i128 {
            return Err(bad(&format!("{n} values; at most {VALUES_MAX}")));
        }
        let n = n as usize;
        let values = (0..n as i64).map(|i| Fixed(from.0 + i * step.0)).collect();
        Ok(SweepSpec {
            key: key.trim().to_string(),
            values,
        })
    }
}

/// The figures of one run in a sweep.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// The ranking metric.
    pub metric: f64,
    /// PnL.
    pub pnl: i64,
    /// Return.
    #[serde(rename = "return")]
    pub ret: f64,
    /// Max drawdown (fraction).
    pub max_drawdown: f64,
    /// Sharpe.
    pub sharpe: f64,
    /// Fills.
    pub trades: u64,
}

impl Figures {
    fn of(r: &Report, metric: &str) -> Figures {
        Figures {
            metric: r.metric(metric).unwrap_or(0.0),
            pnl: r.pnl,
            ret: r.ret,
            max_drawdown: r.max_drawdown,
            sharpe: r.sharpe,
            trades: r.trades,
        }
    }
}

/// One value's results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The value (decimal text).
    pub value: String,
    /// In sample.
    pub train: Figures,
    /// Out of sample.
    pub test: Figures,
}

/// A proposal file. Unknown fields are refused: a rewrite (approval) would drop them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// `pending` or `approved`.
    pub status: String,
    /// Strategy name.
    pub strategy: String,
    /// The data the sweep ran on.
    pub data: String,
    /// The parameter swept.
    pub key: String,
    /// The ranking metric.
    pub metric: String,
    /// Share of the time span used for training.
    pub train_share: String,
    /// The train/test boundary (ms).
    pub split_ms: u64,
    /// Rows, best first by the training metric.
    pub ranking: Vec<Row>,
    /// The proposed value.
    pub proposed_value: String,
    /// The full params file (TOML) with the proposed value applied.
    pub params: String,
    /// The digest of the approved proposal ([`Proposal::pinned`]) recorded at approval.
    pub approved_digest: Option<String>,
}

/// The threads a sweep of `values` values runs on when `requested` are asked for: one per
/// chunk of its `2 × values` backtests (a train and a test run per value), at most one per run.
pub fn threads_used(values: usize, requested: usize) -> usize {
    let jobs = (2 * values).max(1);
    jobs.div_ceil(jobs.div_ceil(requested.clamp(1, jobs)))
}

/// FNV-1a 64 of a text, as hex: the digest an approval pins.
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Runs a sweep and builds the proposal. `params` is the params file as a table.
pub fn sweep(
    base: &Run,
    params: &toml::Table,
    spec: &SweepSpec,
    metric: &str,
    train: Fixed,
    threads: usize,
) -> Result<Proposal, String> {
    if !METRICS.contains(&metric) {
        return Err(format!(
            "unknown metric {metric:?} (known: {})",
            METRICS.join(", ")
        ));
    }
    if train.0 <= 0 || train.0 >= Fixed::SCALE {
        return Err(format!("--train must be between 0 and 1 (got {train})"));
    }
    if !params.contains_key(&spec.key) {
        return Err(format!(
            "the params file has no strategy parameter {:?} to sweep",
            spec.key
        ));
    }
    let (t0, t1) = time_span(&base.source)?;
    let split = t0 + ((t1 - t0) as i128 * train.0 as i128 / Fixed::SCALE as i128) as u64;
    let runs: Vec<(Run, toml::Table)> = spec
        .values
        .iter()
        .map(|v| {
            let mut t = params.clone();
            let value = match params.get(&spec.key) {
                Some(toml::Value::Integer(_)) if v.0 % Fixed::SCALE == 0 => {
                    toml::Value::Integer(v.0 / Fixed::SCALE)
                }
                // A fraction where the file has a whole number: written as a decimal, for the
                // strategy to take (a decimal parameter written `k = 1`) or refuse naming the
                // parameter (an integer one); the literal's type said nothing of which (a
                // red-team finding).
                _ => toml::Value::String(v.to_string()),
            };
            t.insert(spec.key.clone(), value);
            let mut r = base.clone();
            r.params = super::ParamsFile::from_table(t.clone())?;
            Ok((r, t))
        })
        .collect::<Result<_, String>>()?;
    // Jobs: (value index, train?) — each a full backtest.
    let jobs: Vec<(usize, bool)> = (0..runs.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect();
    let threads = threads_used(runs.len(), threads);
    let mut results: Vec<Option<Result<Report, String>>> = vec![None; jobs.len()];
    std::thread::scope(|s| {
        let chunks: Vec<_> = results
            .chunks_mut(jobs.len().div_ceil(threads))
            .zip(jobs.chunks(jobs.len().div_ceil(threads)))
            .collect();
        for (slots, js) in chunks {
            let runs = &runs;
            s.spawn(move || {
                for (slot, &(i, is_train)) in slots.iter_mut().zip(js) {
                    let mut r = runs[i].0.clone();
                    r.window = Some(if is_train {
                        (t0, split)
                    } else {
                        (split, u64::MAX)
                    });
                    *slot = Some(super::run(&r));
                }
            });
        }
    });
    let mut rows = Vec::new();
    for (i, pair) in results.chunks(2).enumerate() {
        let get = |x: &Option<Result<Report, String>>| -> Result<Figures, String> {
            match x {
                // A run whose engine balances differ from its ledger measures nothing: the
                // sweep stops rather than rank it.
                Some(Ok(r)) if !r.reconciled => Err(format!(
                    "{} = {}: the engine's balances of the strategy's account differ from its \
                     ledger (reconciled false)",
                    spec.key, spec.values[i]
                )),
                Some(Ok(r)) => Ok(Figures::of(r, metric)),
                Some(Err(e)) => Err(e.clone()),
                None => Err("a sweep job did not run".into()),
            }
        };
        rows.push((
            i,
            Row {
                value: spec.values[i].to_string(),
                train: get(&pair[0])?,
                test: get(&pair[1])?,
            },
        ));
    }
    // Best first; ties keep the value order (stable sort).
    rows.sort_by(|a, b| b.1.train.metric.total_cmp(&a.1.train.metric));
    let best = rows[0].0;
    let params_text = toml::to_string(&runs[best].1).map_err(|e| e.to_string())?;
    Ok(Proposal {
        status: "pending".into(),
        strategy: base.strategy.clone(),
        data: match &base.source {
            super::Source::Lobster(p) | super::Source::Candles(p) | super::Source::Journal(p) => {
                p.display().to_string()
            }
        },
        key: spec.key.clone(),
        metric: metric.to_string(),
        train_share: train.to_string(),
        split_ms: split,
        proposed_value: spec.values[best].to_string(),
        ranking: rows.into_iter().map(|r| r.1).collect(),
        params: params_text,
        approved_digest: None,
    })
}

/// What an approval did, for the person who ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// A pending proposal, now approved.
    New,
    /// Already approved with these very params: nothing changed.
    Again,
    /// Approved earlier with other params (digest then): these replace them.
    Changed(String),
}

impl Proposal {
    /// Reads a proposal file (a regular file; unknown fields are refused).
    pub fn load(path: &Path) -> Result<Proposal, String> {
        let text = crate::files::read_regular(path)?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a proposal: {e}", path.display()))
    }

    /// Writes it (pretty JSON), atomically: a failed write leaves the old file.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut s = serde_json::to_string_pretty(self).expect("plain data");
        s.push('\n');
        crate::files::write_atomic(path, s.as_bytes())
    }

    /// The params as a table (all of them: the strategy's, `[risk]` and `[backtest]`).
    pub fn params_table(&self) -> Result<toml::Table, String> {
        toml::from_str(&self.params).map_err(|e| format!("the proposal's params: {e}"))
    }

    /// The strategy parameters the bots run with (the params minus `[risk]` and
    /// `[backtest]`), checked by building the strategy from them, as the bots do.
    pub fn strategy_params(&self) -> Result<toml::Table, String> {
        let mut t = self.params_table()?;
        t.remove("risk");
        t.remove("backtest");
        crate::strategy::build(&self.strategy, &t)
            .map_err(|e| format!("the proposal's params do not build {}: {e}", self.strategy))?;
        Ok(t)
    }

    /// The symbol the sweep ran on: `[backtest] symbol`, else the backtest's default for the
    /// data (`AAPL-USD` for LOBSTER, `BTC-KRW` otherwise).
    pub fn symbol(&self) -> Result<String, String> {
        let t = self.params_table()?;
        match t.get("backtest").and_then(|b| b.get("symbol")) {
            Some(toml::Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(format!(
                "the proposal's [backtest] symbol is not a string: {v}"
            )),
            None => Ok(super::default_symbol_of(Path::new(&self.data)).to_string()),
        }
    }

    /// Checks what a person is asked to approve: the params build the strategy and hold the
    /// proposed value under `key`. Returns the strategy parameters.
    pub fn check(&self) -> Result<toml::Table, String> {
        let t = self.strategy_params()?;
        let v = t.get(&self.key).ok_or_else(|| {
            format!(
                "the proposal's params have no {:?}, the parameter it proposes",
                self.key
            )
        })?;
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => other.to_string(),
        };
        let same = match (Fixed::parse(&text), Fixed::parse(&self.proposed_value)) {
            (Ok(a), Ok(b)) => a == b,
            _ => text == self.proposed_value,
        };
        if !same {
            return Err(format!(
                "the proposal's params say {} = {text}, but its proposed_value is {}: it was edited; run the sweep again",
                self.key, self.proposed_value
            ));
        }
        Ok(t)
    }

    /// Marks it approved, pinning the parameters' digest, after [`Proposal::check`]; only a
    /// `pending` proposal, or an `approved` one (again), may be approved.
    pub fn approve(&mut self) -> Result<Approval, String> {
        let earlier = match self.status.as_str() {
            "pending" => None,
            "approved" => self.approved_digest.clone(),
            other => {
                return Err(format!(
                    "the proposal's status is {other:?}: only a pending (or approved) proposal can be approved"
                ))
            }
        };
        self.check()?;
        let d = self.pinned();
        let how = match earlier {
            None => Approval::New,
            Some(e) if e == d => Approval::Again,
            Some(e) => Approval::Changed(e),
        };
        self.status = "approved".into();
        self.approved_digest = Some(d);
        Ok(how)
    }

    /// The parameters, if a person approved exactly these; otherwise why not.
    pub fn approved_params(&self) -> Result<toml::Table, String> {
        if self.status != "approved" {
            return Err(format!(
                "the proposal is {:?}, not approved: a person must run `ringbook bots approve` on it first",
                self.status
            ));
        }
        if self.approved_digest.as_deref() != Some(self.pinned().as_str()) {
            return Err(
                "the proposal changed after it was approved (its parameters, data, ranking or \
                 anything but its status): approve it again"
                    .into(),
            );
        }
        self.params_table()
    }

    /// The digest an approval pins: of the whole proposal but its status and the digest
    /// itself, so the data (whose symbol the bots check), the key, the ranking and the
    /// proposed value are pinned with the params (only the params were: a proposal edited to
    /// name other data passed the symbol check, a red-team finding). Fields in declaration
    /// order, as JSON.
    pub fn pinned(&self) -> String {
        let mut p = self.clone();
        p.status.clear();
        p.approved_digest = None;
        digest(&serde_json::to_string(&p).expect("a proposal serializes"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn threads_used_are_the_chunks_a_sweep_runs() {
        assert_eq!(threads_used(5, 100_000), 10);
        assert_eq!(threads_used(5, 2), 2);
        assert_eq!(threads_used(5, 4), 4);
        // 10 runs in chunks of ceil(10/7) = 2: five threads, not seven.
        assert_eq!(threads_used(5, 7), 5);
        assert_eq!(threads_used(1, 1), 1);
    }

    #[test]
    fn sweep_specs() {
        let s = SweepSpec::parse("k=0.3..0.7:0.1").unwrap();
        assert_eq!(s.key, "k");
        assert_eq!(
            s.values,
            vec![
                Fixed(3_000),
                Fixed(4_000),
                Fixed(5_000),
                Fixed(6_000),
                Fixed(7_000)
            ]
        );
        assert_eq!(SweepSpec::parse("levels=4..10:3").unwrap().values.len(), 3);
        let e = SweepSpec::parse("k=-900000000000000..900000000000000:1").unwrap_err();
        assert!(e.contains("1800000000000001 values; at most 1000"), "{e}");
        for bad in [
            "k",
            "k=0.3..0.7",
            "k=0.7..0.3:0.1",
            "k=0.3..0.7:0",
            "risk=1..2:1",
            "k=a..b:c",
        ] {
            assert!(SweepSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// A pending grid proposal on BTC-KRW (the live bots' tests use it too).
    pub(crate) fn grid_proposal() -> Proposal {
        Proposal {
            status: "pending".into(),
            strategy: "grid".into(),
            data: "x.csv".into(),
            key: "qty".into(),
            metric: "sharpe".into(),
            train_share: "0.7".into(),
            split_ms: 0,
            ranking: vec![],
            proposed_value: "3".into(),
            params: "low = 49950\nhigh = 50050\nlevels = 3\nqty = 3\n\n[risk]\ncapital = 1\n\n[backtest]\ncash = 1\nsymbol = \"BTC-KRW\"\n".into(),
            approved_digest: None,
        }
    }

    #[test]
    fn approval_pins_the_parameters() {
        let mut p = grid_proposal();
        assert!(p.approved_params().unwrap_err().contains("not approved"));
        assert_eq!(p.approve().unwrap(), Approval::New);
        assert_eq!(p.approved_params().unwrap()["qty"].as_integer(), Some(3));
        p.params = p.params.replace("high = 50050", "high = 50060");
        assert!(p.approved_params().unwrap_err().contains("changed"));
        // Every other field is pinned too: the data (whose symbol the bots check), the key,
        // the ranking's boundary, the proposed value.
        let approved = {
            let mut q = grid_proposal();
            q.approve().unwrap();
            q
        };
        type Edit = Box<dyn Fn(&mut Proposal)>;
        let edits: Vec<Edit> = vec![
            Box::new(|q| q.data = "candles.csv".into()),
            Box::new(|q| q.key = "levels".into()),
            Box::new(|q| q.split_ms += 1),
            Box::new(|q| q.proposed_value = "4".into()),
            Box::new(|q| q.strategy = "maker".into()),
        ];
        for edit in edits {
            let mut q = approved.clone();
            assert!(q.approved_params().is_ok());
            edit(&mut q);
            assert!(
                q.approved_params().unwrap_err().contains("changed"),
                "{q:?}"
            );
        }
        // Approving the edited params again says that they changed since.
        let before = p.approved_digest.clone().unwrap();
        assert_eq!(p.approve().unwrap(), Approval::Changed(before));
        assert_eq!(p.approve().unwrap(), Approval::Again);
    }

    /// A red-team pass approved a rejected proposal, one whose params say something else than
    /// its proposed value, and ones whose params do not parse or build: each is refused now,
    /// and nothing is changed.
    #[test]
    fn approval_checks_the_proposal() {
        type Edit = Box<dyn Fn(&mut Proposal)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.status = "rejected".into()), "\"rejected\""),
            (
                Box::new(|p| p.params = p.params.replace("qty = 3", "qty = 300")),
                "qty = 300, but its proposed_value is 3",
            ),
            (
                Box::new(|p| p.params = "this is = = not toml".into()),
                "the proposal's params",
            ),
            (
                Box::new(|p| p.strategy = "nosuch".into()),
                "unknown strategy",
            ),
            (
                Box::new(|p| p.params = p.params.replace("levels = 3", "levels = 1")),
                "do not build grid",
            ),
            (
                Box::new(|p| p.key = "spacing".into()),
                "have no \"spacing\"",
            ),
        ];
        for (edit, says) in cases {
            let mut p = grid_proposal();
            edit(&mut p);
            let before = p.clone();
            let e = p.approve().unwrap_err();
            assert!(e.contains(says), "expected {says:?} in {e:?}");
            assert_eq!(p, before, "a refused approval changed the proposal");
        }
        // Decimal proposed values compare as numbers.
        let mut p = grid_proposal();
        p.strategy = "maker".into();
        p.key = "skew".into();
        p.proposed_value = "0.5".into();
        p.params = "half_spread = 3\nqty = 1\nskew = \"0.50\"\nmax_inventory = 10\n".into();
        p.approve().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        let mut v = serde_json::to_value(grid_proposal()).unwrap();
        v["comment"] = "reviewed by X".into();
        std::fs::write(&f, v.to_string()).unwrap();
        let e = Proposal::load(&f).unwrap_err();
        assert!(e.contains("unknown field `comment`"), "{e}");
    }

    #[test]
    fn the_swept_symbol() {
        let mut p = grid_proposal();
        assert_eq!(p.symbol().unwrap(), "BTC-KRW");
        p.params = p.params.replace("BTC-KRW", "ETH-KRW");
        assert_eq!(p.symbol().unwrap(), "ETH-KRW");
        p.params = p.params.replace("symbol = \"ETH-KRW\"\n", "");
        p.data = "AAPL_2012-06-21_34200000_57600000_message_10.csv".into();
        assert_eq!(p.symbol().unwrap(), "AAPL-USD");
    }
}
