//! A bot: one strategy with its ledger (orders, position) and its risk limits, speaking engine
//! [`Command`]s out and [`Update`]s in. The backtest feeds it from an [`Engine`] in the same
//! process; `ringbook bots` from a server over the binary protocol. The bot does not know which.
//!
//! # Risk
//!
//! Checked before any order leaves the bot (a refusal is logged, the order is `FAILED` with
//! code [`RISK_CAPITAL`] or [`RISK_EXPOSURE`], and the strategy hears it ended):
//! - **capital**: for a buy, cost of the long position + open buy orders + this order (at
//!   its limit or reference price) ≤ `capital`;
//! - **exposure**: |position + open orders on this side + this order| × price × tick ≤
//!   `max_position`.
//!
//! Checked at every mark (candle close): **daily loss** — when equity has fallen
//! `max_daily_loss` or more below the day's first mark, every working order is cancelled, the
//! position is sold (or bought back) at market, the strategy is told to forget its state, and
//! it is halted until the next day. Each breach is logged.
//!
//! Market orders carry a protection price `max_slippage_bps` beyond their reference price
//! (clamped to the symbol's band): the worst they may trade at.
//!
//! [`Engine`]: ringbook_engine::Engine

use ringbook_engine::prelude::*;
use serde::Deserialize;

use crate::candle::{parse_interval, Candle};
use crate::ledger::{Kind, Ledger, Update};
use crate::strategy::{Ctx, Intent, Market, Note, Strategy};

/// Risk refusal: the order would pass the capital limit.
pub const RISK_CAPITAL: u16 = 9001;
/// Risk refusal: the order would pass the exposure limit.
pub const RISK_EXPOSURE: u16 = 9002;
/// Risk refusal: the bot is halted after a daily-loss breach.
pub const RISK_HALTED: u16 = 9003;
/// The key of the order risk sends to flatten a position.
pub const FLATTEN_KEY: u64 = u64::MAX;

/// The risk limits (the `[risk]` table of a params file or a bot's config). Amounts in the
/// quote currency's minimal units; 0 turns a limit off.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    /// Capital allocated to the bot.
    pub capital: u64,
    /// Largest position notional (either way).
    #[serde(default)]
    pub max_position: u64,
    /// Largest loss in one day before everything is flattened.
    #[serde(default)]
    pub max_daily_loss: u64,
    /// Protection band of market orders around their reference price (default 100 = 1%).
    #[serde(default = "d_slip")]
    pub max_slippage_bps: u32,
    /// Length of a risk day (default `1d`).
    #[serde(default = "d_day")]
    pub day: String,
}

fn d_slip() -> u32 {
    100
}
fn d_day() -> String {
    "1d".into()
}

/// `x` as an `i64`, clamped to its range (an amount beyond it is shown as the bound, never
/// wrapped into a wrong sign).
pub fn saturate(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Something risk did, for the report and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskEvent {
    /// When (ms).
    pub ts: u64,
    /// `capital`, `exposure`, `halted` (order refusals) or `daily_loss` (a breach).
    pub kind: &'static str,
    /// What happened, in words.
    pub detail: String,
}

/// One strategy trading one symbol for one user.
pub struct Bot {
    /// The strategy.
    pub strategy: Box<dyn Strategy>,
    /// Orders and position.
    pub ledger: Ledger,
    /// Limits.
    pub limits: RiskLimits,
    day_ms: u64,
    user: UserId,
    symbol: SymbolId,
    interval_ms: u64,
    /// Quote units the bot started with (for equity).
    pub cash0: i64,
    /// Base lots the bot started with (valued at the mark).
    pub base0: i64,
    /// Last mark price (ticks).
    pub mark: Option<i64>,
    best: (Option<i64>, Option<i64>),
    day: Option<u64>,
    day_start_equity: i64,
    halted: bool,
    /// Every risk event, in order.
    pub risk_events: Vec<RiskEvent>,
    now: u64,
    intents: Vec<Intent>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("strategy", &self.strategy.name())
            .field("user", &self.user)
            .field("position", &self.ledger.position)
            .finish()
    }
}

impl Bot {
    /// A bot for `user` on `symbol`; `cash0` quote units and `base0` lots deposited.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        strategy: Box<dyn Strategy>,
        limits: RiskLimits,
        market: Market,
        user: UserId,
        symbol: SymbolId,
        interval_ms: u64,
        cash0: i64,
        base0: i64,
    ) -> Result<Bot, String> {
        let day_ms = parse_interval(&limits.day).map_err(|e| format!("risk day: {e}"))?;
        Ok(Bot {
            strategy,
            ledger: Ledger::new(market, 1),
            limits,
            day_ms,
            user,
            symbol,
            interval_ms,
            cash0,
            base0,
            mark: None,
            best: (None, None),
            day: None,
            day_start_equity: 0,
            halted: false,
            risk_events: Vec::new(),
            now: 0,
            intents: Vec::new(),
        })
    }

    /// The user the bot trades for.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// True after a daily-loss breach, until the next day.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Equity at the mark: cash plus holdings at the mark price (quote units).
    pub fn equity(&self) -> i64 {
        let m = &self.ledger.market;
        let p = &self.ledger.position;
        let mark = self.mark.unwrap_or(0) as i128;
        saturate(
            self.cash0 as i128
                + p.cash
                + (self.base0 as i128 + p.qty as i128) * mark * m.tick_size as i128,
        )
    }

    fn ctx(&self) -> Ctx {
        let p = &self.ledger.position;
        Ctx {
            market: self.ledger.market,
            interval_ms: self.interval_ms,
            position: p.qty,
            avg_price: p.avg_price(),
            equity: self.equity(),
            cash: saturate(self.cash0 as i128 + p.cash),
            best_bid: self.best.0,
            best_ask: self.best.1,
        }
    }

    /// Sets the top of the book the strategy sees next.
    pub fn set_top(&mut self, best_bid: Option<i64>, best_ask: Option<i64>) {
        self.best = (best_bid, best_ask);
    }

    /// A candle closed at time `ts`: mark, check the daily loss, run the strategy. Commands to
    /// send go to `out`.
    pub fn on_candle(&mut self, ts: u64, c: &Candle, out: &mut Vec<Command>) {
        self.now = ts;
        self.mark = Some(c.close);
        self.check_day(ts, out);
        if self.halted {
            return;
        }
        let ctx = self.ctx();
        let mut intents = std::mem::take(&mut self.intents);
        self.strategy.on_candle(c, &ctx, &mut intents);
        self.send(&mut intents, out);
        self.intents = intents;
    }

    /// The venue reported `up` about one of the bot's orders.
    pub fn on_update(&mut self, up: &Update, out: &mut Vec<Command>) {
        let Some(note) = self.ledger.apply(up) else {
            return;
        };
        self.tell(note, out);
    }

    fn tell(&mut self, note: Note, out: &mut Vec<Command>) {
        let key = match note {
            Note::Fill { key, .. } | Note::Ended { key, .. } => key,
        };
        if key == FLATTEN_KEY || self.halted {
            return;
        }
        let ctx = self.ctx();
        let mut intents = std::mem::take(&mut self.intents);
        self.strategy.on_note(&note, &ctx, &mut intents);
        self.send(&mut intents, out);
        self.intents = intents;
    }

    fn check_day(&mut self, ts: u64, out: &mut Vec<Command>) {
        let day = ts / self.day_ms;
        let equity = self.equity();
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = equity;
            self.halted = false;
        }
        let loss = self.day_start_equity - equity;
        if !self.halted
            && self.limits.max_daily_loss > 0
            && loss >= self.limits.max_daily_loss as i64
        {
            self.halted = true;
            self.risk_events.push(RiskEvent {
                ts,
                kind: "daily_loss",
                detail: format!(
                    "equity {equity} is {loss} below the day's start {}: limit {}; cancelling {} working orders and flattening {} lots",
                    self.day_start_equity,
                    self.limits.max_daily_loss,
                    self.ledger.working().count(),
                    self.ledger.position.qty
                ),
            });
            self.flatten(out);
        }
    }

    /// Cancels every working order and closes the position at market.
    pub fn flatten(&mut self, out: &mut Vec<Command>) {
        let working: Vec<(u64, u64)> = self.ledger.working().map(|o| (o.coid, o.key)).collect();
        for (coid, key) in working {
            self.ledger.detach(key);
            out.push(Command::Cancel {
                user: self.user,
                symbol: self.symbol,
                client_order_id: ClientOrderId(coid),
            });
        }
        self.strategy.on_flatten();
        let qty = self.ledger.position.qty;
        if qty != 0 {
            let side = if qty > 0 { Side::Sell } else { Side::Buy };
            let reference = self.mark.unwrap_or(0);
            self.place(
                FLATTEN_KEY,
                side,
                Kind::Market,
                reference,
                qty.unsigned_abs(),
                reference,
                out,
            );
        }
    }

    /// Turns intents into commands, through the risk checks.
    fn send(&mut self, intents: &mut Vec<Intent>, out: &mut Vec<Command>) {
        for intent in intents.drain(..) {
            match intent {
                Intent::Cancel { key } => {
                    if let Some(coid) = self.ledger.detach(key) {
                        out.push(Command::Cancel {
                            user: self.user,
                            symbol: self.symbol,
                            client_order_id: ClientOrderId(coid),
                        });
                    }
                }
                Intent::Limit {
                    key,
                    side,
                    price,
                    qty,
                } => self.place(key, side, Kind::Limit, price, qty, price, out),
                Intent::Market {
                    key,
                    side,
                    qty,
                    reference,
                } => self.place(key, side, Kind::Market, reference, qty, reference, out),
                Intent::Stop {
                    key,
                    side,
                    stop,
                    qty,
                } => self.place(key, side, Kind::Stop, stop, qty, stop, out),
            }
        }
    }

    /// The protection price `max_slippage_bps` beyond `reference`.
    fn protection(&self, side: Side, reference: i64) -> i64 {
        let band =
            (reference as i128 * self.limits.max_slippage_bps as i128 / 10_000).max(1) as i64;
        let p = match side {
            Side::Buy => reference + band,
            Side::Sell => reference - band,
        };
        self.ledger.market.clamp(p)
    }

    /// A risk refusal, or `None` if the order may go.
    fn check(&self, side: Side, price: i64, qty: u64) -> Option<(u16, &'static str, String)> {
        let m = &self.ledger.market;
        let tick = m.tick_size as i128;
        let p = &self.ledger.position;
        let same_side: i128 = self
            .ledger
            .working()
            .filter(|o| o.side == side)
            .map(|o| (o.qty - o.filled) as i128)
            .sum();
        if side == Side::Buy && self.limits.capital > 0 {
            let held = if p.qty > 0 { p.cost * tick } else { 0 };
            let open: i128 = self
                .ledger
                .working()
                .filter(|o| o.side == Side::Buy)
                .map(|o| (o.qty - o.filled) as i128 * o.price as i128 * tick)
                .sum();
            let total = held + open + qty as i128 * price as i128 * tick;
            if total > self.limits.capital as i128 {
                return Some((
                    RISK_CAPITAL,
                    "capital",
                    format!(
                        "buy {qty} @ {price} would commit {total} of capital {}",
                        self.limits.capital
                    ),
                ));
            }
        }
        if self.limits.max_position > 0 {
            let signed = if side == Side::Buy { 1 } else { -1 };
            let after = p.qty as i128 + signed * (same_side + qty as i128);
            let notional = after.abs() * price as i128 * tick;
            // Orders that only reduce the position are always allowed.
            if notional > self.limits.max_position as i128 && after.abs() > (p.qty as i128).abs() {
                return Some((
                    RISK_EXPOSURE,
                    "exposure",
                    format!(
                        "{} {qty} @ {price} would make the position {after} lots ({notional}), limit {}",
                        side.name(),
                        self.limits.max_position
                    ),
                ));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        key: u64,
        side: Side,
        kind: Kind,
        price: i64,
        qty: u64,
        reference: i64,
        out: &mut Vec<Command>,
    ) {
        if qty == 0 {
            return;
        }
        if let Some(old) = self.ledger.detach(key) {
            // One live order per key: a new one replaces the old.
            out.push(Command::Cancel {
                user: self.user,
                symbol: self.symbol,
                client_order_id: ClientOrderId(old),
            });
        }
        let limit = match kind {
            Kind::Limit => price,
            Kind::Market | Kind::Stop => self.protection(side, reference),
        };
        let refusal = if key == FLATTEN_KEY {
            None
        } else if self.halted {
            Some((
                RISK_HALTED,
                "halted",
                "the bot is halted after a daily-loss breach".to_string(),
            ))
        } else {
            self.check(
                side,
                if kind == Kind::Limit {
                    price
                } else {
                    reference
                },
                qty,
            )
        };
        let coid = self.ledger.open(key, side, kind, limit, qty, reference);
        if let Some((code, kind, detail)) = refusal {
            self.risk_events.push(RiskEvent {
                ts: self.now,
                kind,
                detail,
            });
            if let Some(note) = self.ledger.fail(coid, code, kind) {
                self.tell(note, out);
            }
            return;
        }
        let mut order = match kind {
            Kind::Limit => NewOrder::limit(
                self.user,
                self.symbol,
                ClientOrderId(coid),
                side,
                Price(price),
                Qty(qty),
            ),
            Kind::Market => NewOrder::market(
                self.user,
                self.symbol,
                ClientOrderId(coid),
                side,
                Price(limit),
                Qty(qty),
            ),
            Kind::Stop => {
                let mut o = NewOrder::market(
                    self.user,
                    self.symbol,
                    ClientOrderId(coid),
                    side,
                    Price(limit),
                    Qty(qty),
                );
                o.order_type = OrderType::StopMarket;
                o.stop_price = Price(price);
                o
            }
        };
        order.stp = StpMode::CancelNewest;
        out.push(Command::NewOrder(order));
    }

    /// The update an engine event carries for this bot's user, if any.
    pub fn update_of(&self, e: &Event) -> Option<Update> {
        let me = self.user;
        match *e {
            Event::Accepted {
                user,
                client_order_id,
                ..
            } if user == me => Some(Update::Accepted {
                coid: client_order_id.0,
            }),
            Event::Rejected {
                user,
                client_order_id,
                code,
            } if user == me => Some(Update::Rejected {
                coid: client_order_id.0,
                code: code.code(),
                name: code.name().to_string(),
            }),
            Event::Cancelled {
                user,
                client_order_id,
                leaves_qty,
                ..
            } if user == me => Some(Update::Cancelled {
                coid: client_order_id.0,
                leaves: leaves_qty.0,
            }),
            _ => None,
        }
    }

    /// The updates of a trade for this bot's user (both sides, if it traded with itself).
    pub fn trade_updates(&self, t: &Trade, mut f: impl FnMut(Update)) {
        for fill in [t.maker, t.taker] {
            if fill.user == self.user {
                f(Update::Fill {
                    coid: fill.client_order_id.0,
                    price: t.price.0,
                    qty: t.qty.0,
                    leaves: fill.leaves_qty.0,
                    fee: fill.fee,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::grid;

    fn market() -> Market {
        Market {
            tick_size: 1,
            price_min: 1,
            price_max: 100_000,
            max_order_qty: 1_000_000,
        }
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            capital: 10_000,
            max_position: 0,
            max_daily_loss: 500,
            max_slippage_bps: 100,
            day: "1d".into(),
        }
    }

    fn candle(t: u64, c: i64) -> Candle {
        Candle {
            open_time: t,
            open: c,
            high: c,
            low: c,
            close: c,
            volume: 1,
            quote_volume: 0,
            trades: 1,
        }
    }

    fn grid_bot(limits: RiskLimits) -> Bot {
        let g = grid::Grid::new(grid::Params {
            low: 90,
            high: 130,
            levels: 5,
            qty: 30,
        })
        .unwrap();
        Bot::new(
            Box::new(g),
            limits,
            market(),
            UserId(5),
            SymbolId(0),
            60_000,
            10_000,
            0,
        )
        .unwrap()
    }

    #[test]
    fn capital_limit_refuses_orders_and_logs() {
        let mut b = grid_bot(limits());
        let mut out = Vec::new();
        // Buys at 90, 100, 110 of 30 each: 2 700 + 3 000 fit, the third (3 300) passes 10 000?
        // 2 700 + 3 000 + 3 300 = 9 000: all fit. With capital 5 000 only the first does.
        b.on_candle(0, &candle(0, 115), &mut out);
        assert_eq!(out.len(), 3);
        let mut b = grid_bot(RiskLimits {
            capital: 5_000,
            ..limits()
        });
        out.clear();
        b.on_candle(0, &candle(0, 115), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(b.risk_events.len(), 2);
        assert_eq!(b.risk_events[0].kind, "capital");
        assert!(
            b.risk_events[0].detail.contains("5700"),
            "{:?}",
            b.risk_events[0]
        );
        let failed: Vec<_> = b
            .ledger
            .orders()
            .filter(|o| o.failure.is_some())
            .map(|o| o.failure.clone().unwrap().0)
            .collect();
        assert_eq!(failed, vec![RISK_CAPITAL, RISK_CAPITAL]);
    }

    #[test]
    fn exposure_limit_allows_reducing_orders() {
        let mut b = grid_bot(RiskLimits {
            max_position: 5_000,
            ..limits()
        });
        b.ledger.position.fill(Side::Buy, 100, 60, 0, 1);
        assert!(b
            .check(Side::Buy, 100, 1)
            .is_some_and(|r| r.0 == RISK_EXPOSURE));
        assert!(b.check(Side::Sell, 100, 30).is_none());
    }

    #[test]
    fn daily_loss_breach_cancels_and_flattens() {
        let mut b = grid_bot(limits());
        let mut out = Vec::new();
        b.on_candle(0, &candle(0, 115), &mut out);
        let coids: Vec<u64> = b.ledger.working().map(|o| o.coid).collect();
        for &c in &coids {
            b.on_update(&Update::Accepted { coid: c }, &mut out);
        }
        // The 110 buy fills: the grid places its sell at 120.
        out.clear();
        b.on_update(
            &Update::Fill {
                coid: coids[2],
                price: 110,
                qty: 30,
                leaves: 0,
                fee: 0,
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let sell = b.ledger.key_live(grid::key(3, Side::Sell)).unwrap();
        b.on_update(&Update::Accepted { coid: sell }, &mut out);
        out.clear();
        // Same day, price 95: equity 10 000 − 3 300 + 30 × 95 = 9 550; the day began at
        // 10 000 (mark 115 with nothing held) → a loss of 450 < 500: nothing.
        b.on_candle(60_000, &candle(60_000, 95), &mut out);
        assert!(out.is_empty() && !b.halted());
        // Price 93: loss 510 ≥ 500 → cancel the three working orders, sell 30 at market.
        b.on_candle(120_000, &candle(120_000, 93), &mut out);
        assert!(b.halted());
        assert_eq!(b.risk_events.last().unwrap().kind, "daily_loss");
        let cancels = out
            .iter()
            .filter(|c| matches!(c, Command::Cancel { .. }))
            .count();
        assert_eq!(cancels, 3);
        let Some(&Command::NewOrder(o)) = out.last() else {
            panic!("{out:?}")
        };
        // Protection 1% under 93 → 92.
        assert_eq!(
            (o.side, o.order_type, o.qty, o.price),
            (Side::Sell, OrderType::Market, Qty(30), Price(92))
        );
        // Halted: candles do nothing, new orders are refused; the next day trades again.
        out.clear();
        b.on_candle(180_000, &candle(180_000, 90), &mut out);
        assert!(out.is_empty());
        b.on_update(
            &Update::Fill {
                coid: o.client_order_id.0,
                price: 93,
                qty: 30,
                leaves: 0,
                fee: 0,
            },
            &mut out,
        );
        assert_eq!(b.ledger.position.qty, 0);
        b.on_candle(86_400_000, &candle(86_400_000, 100), &mut out);
        assert!(!b.halted());
        assert!(!out.is_empty(), "the grid is laid again after the flatten");
    }
}
