//! Volatility breakout (Larry Williams).
//!
//! A *session* is `session` long (default one day), aligned to multiples of it. When a session
//! opens, the target is `open + k × (previous session's high − low)`; a stop-market buy waits at
//! the target, so the strategy buys the moment the price exceeds it. At the next session's open
//! the position is sold at market and the unfilled stop cancelled, and the new session's target
//! is armed.
//!
//! The session's open: in a 24-hour market the close of the last candle of one session is the
//! open of the next, so the target is armed right after that candle, at its close. When candles
//! are missing across a boundary (no trades), the first candle of the new session supplies the
//! open, and a breakout already inside that candle buys at market.
//!
//! Sizing: `fraction` of equity at the target price (default 0.95, leaving room for the fee and
//! the protection band the market order locks).

use ringbook_engine::Side;
use serde::Deserialize;

use super::{Ctx, Fixed, Intent, Note, Strategy};
use crate::candle::{parse_interval, Candle};

/// The stop (entry) order's key.
pub const ENTRY: u64 = 1;
/// The exit order's key.
pub const EXIT: u64 = 2;

/// Parameters (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The breakout multiple of yesterday's range.
    pub k: Fixed,
    /// Session length (`1d`, `4h`, …; default `1d`).
    #[serde(default = "one_day")]
    pub session: String,
    /// Share of equity put into each entry (default 0.95).
    #[serde(default = "default_fraction")]
    pub fraction: Fixed,
}

fn one_day() -> String {
    "1d".into()
}

fn default_fraction() -> Fixed {
    Fixed(9_500)
}

/// The session being traded: its statistics so far.
#[derive(Clone, Copy, Debug)]
struct Session {
    index: u64,
    /// `(high, low)` of the session's candles so far; `None` before its first candle.
    range: Option<(i64, i64)>,
}

/// The strategy's state.
#[derive(Debug)]
pub struct Breakout {
    k: Fixed,
    session_ms: u64,
    fraction: Fixed,
    session: Option<Session>,
    /// The previous session's `high − low`.
    prev_range: Option<i64>,
    /// The session whose target is armed.
    armed_for: Option<u64>,
}

impl Breakout {
    /// Validates the parameters.
    pub fn new(p: Params) -> Result<Breakout, String> {
        if p.k.0 < 0 {
            return Err(format!("breakout: k must not be negative (got {})", p.k));
        }
        if p.fraction.0 <= 0 || p.fraction.0 > Fixed::SCALE {
            return Err(format!(
                "breakout: fraction must be in (0, 1] (got {})",
                p.fraction
            ));
        }
        Ok(Breakout {
            k: p.k,
            session_ms: parse_interval(&p.session)
                .map_err(|e| format!("breakout: session: {e}"))?,
            fraction: p.fraction,
            session: None,
            prev_range: None,
            armed_for: None,
        })
    }

    /// The session ends: sell what is held, cancel the waiting stop, remember the range.
    fn end_session(&mut self, reference: i64, ctx: &Ctx, out: &mut Vec<Intent>) {
        out.push(Intent::Cancel { key: ENTRY });
        if ctx.position > 0 {
            out.push(Intent::Market {
                key: EXIT,
                side: Side::Sell,
                qty: ctx.position as u64,
                reference,
            });
        }
        if let Some((h, l)) = self.session.and_then(|s| s.range) {
            self.prev_range = Some(h - l);
        }
    }

    /// Arms session `index`'s entry at `open + k × range`. `high_so_far`: the highest price
    /// already seen in the session (a breakout in its first candle buys at market).
    fn arm(
        &mut self,
        index: u64,
        open: i64,
        high_so_far: Option<i64>,
        ctx: &Ctx,
        out: &mut Vec<Intent>,
    ) {
        self.armed_for = Some(index);
        let Some(range) = self.prev_range else { return };
        let target = ctx.market.clamp(open + self.k.scale(range));
        // Proceeds of the exit sold just before count towards the budget.
        let equity = ctx.cash + ctx.position.max(0) * open * ctx.market.tick_size as i64;
        let qty = ctx.market.lots_for(self.fraction.scale(equity), target);
        if qty == 0 {
            return;
        }
        if high_so_far.is_some_and(|h| h >= target) {
            out.push(Intent::Market {
                key: ENTRY,
                side: Side::Buy,
                qty,
                reference: target,
            });
        } else {
            out.push(Intent::Stop {
                key: ENTRY,
                side: Side::Buy,
                stop: target,
                qty,
            });
        }
    }

    /// The target of the armed session, for reports and tests.
    pub fn prev_range(&self) -> Option<i64> {
        self.prev_range
    }
}

impl Strategy for Breakout {
    fn name(&self) -> &'static str {
        "breakout"
    }

    fn on_candle(&mut self, c: &Candle, ctx: &Ctx, out: &mut Vec<Intent>) {
        let index = c.open_time / self.session_ms;
        match self.session {
            Some(s) if s.index == index => {
                let (h, l) = s.range.unwrap_or((c.high, c.low));
                self.session = Some(Session {
                    index,
                    range: Some((h.max(c.high), l.min(c.low))),
                });
            }
            previous => {
                // A session began whose boundary was not seen (no candle closed it).
                if previous.is_some_and(|s| s.range.is_some()) {
                    self.end_session(c.open, ctx, out);
                }
                self.session = Some(Session {
                    index,
                    range: Some((c.high, c.low)),
                });
                if self.armed_for != Some(index) {
                    self.arm(index, c.open, Some(c.high), ctx, out);
                }
            }
        }
        // The last candle of the session: the next one opens at this close.
        let end = (index + 1) * self.session_ms;
        if c.open_time + ctx.interval_ms >= end {
            self.end_session(c.close, ctx, out);
            self.session = Some(Session {
                index: index + 1,
                range: None,
            });
            self.arm(index + 1, c.close, None, ctx, out);
        }
    }

    fn on_note(&mut self, _note: &Note, _ctx: &Ctx, _out: &mut Vec<Intent>) {}

    fn on_flatten(&mut self) {
        // Stay out until the next session arms a fresh entry.
        self.armed_for = self.session.map(|s| s.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::{candle, ctx};

    fn strat(k: &str) -> Breakout {
        Breakout::new(Params {
            k: Fixed::parse(k).unwrap(),
            session: "4m".into(),
            fraction: Fixed(9_500),
        })
        .unwrap()
    }

    #[test]
    fn arms_open_plus_k_range_and_exits_next_open() {
        let mut s = strat("0.5");
        let mut out = Vec::new();
        // Session 0: four 1-minute candles, high 110, low 95.
        let flat = ctx(0, 10_000);
        s.on_candle(&candle(0, 100, 104, 98, 102), &flat, &mut out);
        s.on_candle(&candle(60_000, 102, 110, 101, 108), &flat, &mut out);
        s.on_candle(&candle(120_000, 108, 109, 95, 97), &flat, &mut out);
        // No previous range yet: nothing but the session-end cancel.
        assert!(
            out.iter().all(|i| matches!(i, Intent::Cancel { .. })),
            "{out:?}"
        );
        out.clear();
        s.on_candle(&candle(180_000, 97, 105, 96, 104), &flat, &mut out);
        // Range 110 − 95 = 15; open 104 (this close); target 104 + 0.5 × 15 = 111.5 → 111;
        // 0.95 × 10 000 = 9 500 buys 85 lots at 111.
        assert_eq!(
            out,
            vec![
                Intent::Cancel { key: ENTRY },
                Intent::Stop {
                    key: ENTRY,
                    side: Side::Buy,
                    stop: 111,
                    qty: 85
                }
            ]
        );
        out.clear();
        // Session 1: the stop filled (85 held); nothing happens until its last candle.
        let long = ctx(85, 10_000 - 85 * 111);
        s.on_candle(&candle(240_000, 104, 112, 103, 111), &long, &mut out);
        s.on_candle(&candle(300_000, 111, 125, 110, 120), &long, &mut out);
        s.on_candle(&candle(360_000, 120, 121, 115, 118), &long, &mut out);
        assert!(out.is_empty(), "{out:?}");
        s.on_candle(&candle(420_000, 118, 122, 117, 120), &long, &mut out);
        // Exit 85 at market at the new open (120); range 125 − 103 = 22, target 120 + 11 = 131;
        // equity 10 000 − 9 435 + 85 × 120 = 10 765, × 0.95 = 10 226 → 78 lots at 131.
        assert_eq!(
            out,
            vec![
                Intent::Cancel { key: ENTRY },
                Intent::Market {
                    key: EXIT,
                    side: Side::Sell,
                    qty: 85,
                    reference: 120
                },
                Intent::Stop {
                    key: ENTRY,
                    side: Side::Buy,
                    stop: 131,
                    qty: 78
                }
            ]
        );
    }

    #[test]
    fn missed_boundary_uses_the_first_candle_and_buys_a_breakout_at_market() {
        let mut s = strat("0.3");
        let mut out = Vec::new();
        let flat = ctx(0, 1_000);
        s.on_candle(&candle(0, 50, 60, 40, 55), &flat, &mut out);
        out.clear();
        // Next candle is already in session 2 (no trades for a while): open 56, range 20,
        // target 56 + 6 = 62, and this candle reached 63 → market buy at reference 62.
        s.on_candle(&candle(480_000, 56, 63, 55, 61), &flat, &mut out);
        assert_eq!(
            out,
            vec![
                Intent::Cancel { key: ENTRY },
                Intent::Market {
                    key: ENTRY,
                    side: Side::Buy,
                    qty: 15,
                    reference: 62
                }
            ]
        );
    }

    #[test]
    fn rejects_bad_params() {
        assert!(Breakout::new(Params {
            k: Fixed(-1),
            session: "1d".into(),
            fraction: Fixed(1)
        })
        .is_err());
        assert!(Breakout::new(Params {
            k: Fixed(1),
            session: "1x".into(),
            fraction: Fixed(1)
        })
        .is_err());
        assert!(Breakout::new(Params {
            k: Fixed(1),
            session: "1d".into(),
            fraction: Fixed(0)
        })
        .is_err());
    }
}
