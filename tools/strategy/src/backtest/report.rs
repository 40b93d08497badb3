//! The backtest report: JSON (byte-identical for the same inputs: nothing in it depends on the
//! clock, the machine or hash order) and the numbers behind the plot.
//!
//! Money is in the quote currency's minimal units (integers). Floats appear only in the
//! statistics: `return`, `max_drawdown`, `sharpe`, `win_rate`, `exposure_time`.
//!
//! - `sharpe`: mean / standard deviation of the per-candle equity returns, times
//!   √(candles per year) (365-day year: crypto venues trade every day); 0 when undefined.
//! - `max_drawdown`: the largest fall from a running peak of equity, as a fraction of that
//!   peak (`max_drawdown_amount`: the same in money).
//! - `win_rate`: round trips (the position back to zero) with positive realised PnL net of
//!   fees, over all round trips; 0 when there were none.
//! - `exposure_time`: the share of the strategy's candles that closed with a position.
//! - `fills`: every fill with its own slippage (adverse difference from the price the decision
//!   was made at, × lots; negative when the fill was better).

use serde::Serialize;

use super::{Run, Sim, Source};

/// What the flow replay did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FlowStats {
    /// Records read (messages or candles).
    pub messages: u64,
    /// Flow commands sent to the engine.
    pub commands: u64,
    /// Flow commands skipped or refused (their order was gone: often the strategy took it).
    pub skipped: u64,
    /// Hidden executions (LOBSTER type 5), which do not touch the visible book.
    pub hidden: u64,
}

/// Counts of the strategy's orders by final state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OrderCounts {
    /// Orders sent or refused in all.
    pub total: u64,
    /// Still working at the end.
    pub working: u64,
    /// Filled or cancelled.
    pub closed: u64,
    /// Refused (by risk or the engine).
    pub failed: u64,
}

/// One risk event.
#[derive(Clone, Debug, Serialize)]
pub struct RiskLine {
    /// Time (ms).
    pub ts: u64,
    /// Kind.
    pub kind: &'static str,
    /// Detail.
    pub detail: String,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Strategy name.
    pub strategy: String,
    /// The data file as given.
    pub data: String,
    /// `lobster` or `candles`.
    pub source: &'static str,
    /// Symbol traded.
    pub symbol: String,
    /// Candle interval (ms).
    pub interval_ms: u64,
    /// The synthesised book's seed.
    pub seed: u64,
    /// Window of candles the strategy traded (ms), if limited.
    pub window: Option<(u64, u64)>,
    /// Equity at the first candle.
    pub initial_equity: i64,
    /// Equity at the end.
    pub final_equity: i64,
    /// `final − initial`.
    pub pnl: i64,
    /// `pnl / initial`.
    #[serde(rename = "return")]
    pub ret: f64,
    /// Realised PnL before fees.
    pub realised: i64,
    /// Unrealised PnL at the last mark.
    pub unrealised: i64,
    /// Fees paid.
    pub fees: u64,
    /// Largest peak-to-trough fall, as a fraction of the peak.
    pub max_drawdown: f64,
    /// The same in money.
    pub max_drawdown_amount: i64,
    /// Annualised Sharpe ratio of per-candle returns.
    pub sharpe: f64,
    /// Winning round trips / round trips.
    pub win_rate: f64,
    /// Round trips.
    pub round_trips: u64,
    /// Fills of the strategy's orders.
    pub trades: u64,
    /// Share of candles closed with a position.
    pub exposure_time: f64,
    /// Σ slippage (ticks × lots; positive = worse than the decision price).
    pub slippage: i64,
    /// Position at the end (lots) and its average price.
    pub position: i64,
    /// Average price of the open position.
    pub avg_price: Option<i64>,
    /// Orders by state.
    pub orders: OrderCounts,
    /// Candles the strategy saw.
    pub candles: u64,
    /// Commands the engine processed (flow and strategy).
    pub engine_commands: u64,
    /// Trades in the engine in all.
    pub engine_trades: u64,
    /// The flow replay.
    pub flow: FlowStats,
    /// The engine's balances of the strategy equal the ledger's (cash and position).
    pub reconciled: bool,
    /// The engine's state hash at the end.
    pub state_hash: String,
    /// Risk refusals and breaches.
    pub risk_events: Vec<RiskLine>,
    /// Every fill of the strategy: time, order, side, price, lots, fee, slippage.
    pub fills: Vec<crate::ledger::FillRec>,
    /// `(time ms, equity)` per candle.
    pub equity_curve: Vec<(u64, i64)>,
}

/// Max drawdown `(fraction, amount)` of an equity series.
pub fn drawdown(equity: &[(u64, i64)]) -> (f64, i64) {
    let mut peak = i64::MIN;
    let (mut frac, mut amount) = (0.0f64, 0i64);
    for &(_, e) in equity {
        peak = peak.max(e);
        let dd = peak - e;
        if dd > amount {
            amount = dd;
        }
        if peak > 0 {
            frac = frac.max(dd as f64 / peak as f64);
        }
    }
    (frac, amount)
}

/// Annualised Sharpe ratio of per-step returns of `equity`, `interval_ms` apart.
pub fn sharpe(equity: &[(u64, i64)], interval_ms: u64) -> f64 {
    let r: Vec<f64> = equity
        .windows(2)
        .filter(|w| w[0].1 > 0)
        .map(|w| (w[1].1 - w[0].1) as f64 / w[0].1 as f64)
        .collect();
    if r.len() < 2 {
        return 0.0;
    }
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    if var <= 0.0 {
        return 0.0;
    }
    let per_year = 365.0 * 86_400_000.0 / interval_ms as f64;
    mean / var.sqrt() * per_year.sqrt()
}

impl Report {
    /// The report of a finished simulation.
    pub fn new(run: &Run, sim: &Sim, interval_ms: u64, flow: FlowStats) -> Report {
        let bot = &sim.bot;
        let l = &bot.ledger;
        let p = &l.position;
        let mark = bot.mark.unwrap_or(0);
        let initial = sim.equity.first().map_or(bot.cash0, |e| e.1);
        let fin = bot.equity();
        let (dd, dd_amount) = drawdown(&sim.equity);
        let working = l.working().count() as u64;
        let orders = OrderCounts {
            total: l.orders_total,
            working,
            closed: l.orders_total - working - l.orders_failed,
            failed: l.orders_failed,
        };
        let sc = sim
            .engine
            .config()
            .symbol(sim.symbol())
            .expect("configured");
        let (quote, base) = sim.balances();
        let reconciled = quote as i128 == bot.cash0 as i128 + p.cash
            && base as i128 == (bot.base0 as i128 + p.qty as i128) * sc.lot_size as i128;
        let (data, source) = match &run.source {
            Source::Lobster(p) => (p.display().to_string(), "lobster"),
            Source::Candles(p) => (p.display().to_string(), "candles"),
            Source::Journal(p) => (p.display().to_string(), "journal"),
        };
        Report {
            strategy: run.strategy.clone(),
            data,
            source,
            symbol: sc.name.clone(),
            interval_ms,
            seed: run.params.backtest.seed,
            window: run.window,
            initial_equity: initial,
            final_equity: fin,
            pnl: fin - initial,
            ret: if initial != 0 {
                (fin - initial) as f64 / initial as f64
            } else {
                0.0
            },
            realised: p.realised as i64,
            unrealised: p.unrealised(mark, l.market.tick_size) as i64,
            fees: p.fees as u64,
            max_drawdown: dd,
            max_drawdown_amount: dd_amount,
            sharpe: sharpe(&sim.equity, interval_ms),
            win_rate: if p.round_trips > 0 {
                p.wins as f64 / p.round_trips as f64
            } else {
                0.0
            },
            round_trips: p.round_trips,
            trades: l.fills,
            exposure_time: if sim.candles_seen > 0 {
                sim.candles_exposed as f64 / sim.candles_seen as f64
            } else {
                0.0
            },
            slippage: l.slippage,
            position: p.qty,
            avg_price: p.avg_price(),
            orders,
            candles: sim.candles_seen,
            engine_commands: sim.commands,
            engine_trades: sim.trades,
            flow,
            reconciled,
            state_hash: sim.engine.state_hash().to_string(),
            risk_events: bot
                .risk_events
                .iter()
                .map(|e| RiskLine {
                    ts: e.ts,
                    kind: e.kind,
                    detail: e.detail.clone(),
                })
                .collect(),
            fills: l.fill_log.clone().unwrap_or_default(),
            equity_curve: sim.equity.clone(),
        }
    }

    /// The report as pretty JSON (with a final newline).
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plain data serialises");
        s.push('\n');
        s
    }

    /// A named metric, for ranking (`sharpe`, `return`, `pnl`, `max_drawdown`, `win_rate`):
    /// larger is better (drawdown is negated).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "sharpe" => self.sharpe,
            "return" => self.ret,
            "pnl" => self.pnl as f64,
            "max_drawdown" => -self.max_drawdown,
            "win_rate" => self.win_rate,
            _ => return None,
        })
    }
}

/// The metrics `--rank` accepts.
pub const METRICS: [&str; 5] = ["sharpe", "return", "pnl", "max_drawdown", "win_rate"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_and_sharpe_by_hand() {
        let e = [(0, 100), (1, 120), (2, 90), (3, 130), (4, 117)];
        // Peak 120 → 90: 30, a quarter of the peak; 130 → 117 is only 10%.
        assert_eq!(drawdown(&e), (0.25, 30));
        // Returns 0.2, −0.25, 0.4444…, −0.1.
        let r = [0.2, -0.25, 40.0 / 90.0, -0.1];
        let mean: f64 = r.iter().sum::<f64>() / 4.0;
        let sd = (r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0).sqrt();
        let want = mean / sd * 365f64.sqrt();
        assert!((sharpe(&e, 86_400_000) - want).abs() < 1e-12);
        assert_eq!(sharpe(&e[..2], 1), 0.0);
        assert_eq!(sharpe(&[(0, 5), (1, 5), (2, 5)], 1), 0.0);
    }
}
