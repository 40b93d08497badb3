//! The position service: every order a bot sends and what became of it, and the position it
//! built — average price, realised and unrealised PnL, fees, slippage — in integers.
//!
//! Order states: `NEW` (sent, not yet acknowledged) → `OPEN` (accepted) → `PARTIAL` (some
//! filled) → `CLOSED` (filled, cancelled or expired) — or `FAILED` (refused by the venue or by
//! risk). A stop order is `OPEN` while it waits for its trigger.

use std::collections::BTreeMap;

use ringbook_engine::Side;

use crate::strategy::{Market, Note};

/// An order's life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    /// Sent, not yet acknowledged.
    New,
    /// Accepted, nothing filled.
    Open,
    /// Partly filled, still live.
    Partial,
    /// Done: filled, cancelled or expired.
    Closed,
    /// Refused.
    Failed,
}

impl OrderState {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            OrderState::New => "NEW",
            OrderState::Open => "OPEN",
            OrderState::Partial => "PARTIAL",
            OrderState::Closed => "CLOSED",
            OrderState::Failed => "FAILED",
        }
    }

    /// True while the order may still trade.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            OrderState::New | OrderState::Open | OrderState::Partial
        )
    }
}

/// What kind of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GTC limit.
    Limit,
    /// Market (IOC) with a protection price.
    Market,
    /// Stop-market.
    Stop,
}

/// One order the bot sent.
#[derive(Clone, Debug)]
pub struct OrderRec {
    /// Client order id (unique per bot run).
    pub coid: u64,
    /// The strategy's key for it.
    pub key: u64,
    /// Buy or sell.
    pub side: Side,
    /// Limit / market / stop.
    pub kind: Kind,
    /// Limit or protection price.
    pub price: i64,
    /// Lots ordered.
    pub qty: u64,
    /// Lots filled.
    pub filled: u64,
    /// State.
    pub state: OrderState,
    /// The price the decision was made at (slippage is measured from it).
    pub reference: i64,
    /// Fees paid (quote units).
    pub fees: u64,
    /// Σ adverse price difference × lots over its fills (ticks × lots; positive = worse than
    /// the reference).
    pub slippage: i64,
    /// The refusal code and name, for a failed order.
    pub failure: Option<(u16, String)>,
}

/// A change reported by the venue about one of the bot's orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Accepted.
    Accepted {
        /// Client order id.
        coid: u64,
    },
    /// Filled `qty` at `price`, `leaves` still open, `fee` charged.
    Fill {
        /// Client order id.
        coid: u64,
        /// Trade price.
        price: i64,
        /// Lots.
        qty: u64,
        /// Open lots left.
        leaves: u64,
        /// Fee (quote units).
        fee: u64,
    },
    /// Cancelled down to `leaves` open lots (0: gone).
    Cancelled {
        /// Client order id.
        coid: u64,
        /// Open lots left.
        leaves: u64,
    },
    /// A command about the order was refused.
    Rejected {
        /// Client order id.
        coid: u64,
        /// Reject code.
        code: u16,
        /// Its name.
        name: String,
    },
}

/// One fill, as the fill log keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FillRec {
    /// Time (ms) the ledger was told it happened.
    pub ts: u64,
    /// Client order id.
    pub coid: u64,
    /// Buy or sell.
    pub side: &'static str,
    /// Trade price (ticks).
    pub price: i64,
    /// Lots.
    pub qty: u64,
    /// Fee (quote units).
    pub fee: u64,
    /// This fill's slippage: adverse difference from the order's reference × lots.
    pub slippage: i64,
}

/// A position in one symbol, relative to where the bot started.
#[derive(Clone, Debug, Default)]
pub struct Position {
    /// Lots held (negative: sold more than bought).
    pub qty: i64,
    /// Cost of the open position in ticks × lots (same sign as `qty`).
    pub cost: i128,
    /// Realised PnL before fees (quote units).
    pub realised: i128,
    /// Fees paid (quote units).
    pub fees: u128,
    /// Quote units in minus out from trading, fees included.
    pub cash: i128,
    /// Completed round trips (the position returned to zero or flipped) and the winners.
    pub round_trips: u64,
    /// Round trips whose realised PnL net of fees was positive.
    pub wins: u64,
    /// Realised minus fees when the current round trip began.
    trip_start: i128,
}

impl Position {
    /// Average entry price (ticks, rounded towards zero).
    pub fn avg_price(&self) -> Option<i64> {
        (self.qty != 0).then(|| (self.cost / self.qty as i128) as i64)
    }

    /// Unrealised PnL at `mark` (quote units).
    pub fn unrealised(&self, mark: i64, tick: u64) -> i128 {
        (mark as i128 * self.qty as i128 - self.cost) * tick as i128
    }

    /// Applies a fill of `qty` lots on `side` at `price`, paying `fee`.
    pub fn fill(&mut self, side: Side, price: i64, qty: u64, fee: u64, tick: u64) {
        let q = qty as i64;
        let signed = if side == Side::Buy { q } else { -q };
        let notional = price as i128 * q as i128 * tick as i128;
        self.cash += if side == Side::Buy {
            -notional
        } else {
            notional
        } - fee as i128;
        self.fees += fee as u128;
        if self.qty == 0 {
            self.trip_start = self.realised - self.fees as i128 + fee as i128;
        }
        if self.qty == 0 || (self.qty > 0) == (signed > 0) {
            self.qty += signed;
            self.cost += price as i128 * signed as i128;
            return;
        }
        // Reducing (and perhaps flipping).
        let closing = signed.abs().min(self.qty.abs());
        let removed = self.cost * closing as i128 / self.qty.abs() as i128;
        let sign = self.qty.signum() as i128;
        self.realised += (price as i128 * closing as i128 * sign - removed) * tick as i128;
        self.cost -= removed;
        self.qty += signed.signum() * closing;
        let rest = signed.abs() - closing;
        if self.qty == 0 {
            self.cost = 0;
            self.round_trips += 1;
            if self.realised - self.fees as i128 > self.trip_start {
                self.wins += 1;
            }
            self.trip_start = self.realised - self.fees as i128;
            if rest > 0 {
                self.qty = signed.signum() * rest;
                self.cost = price as i128 * self.qty as i128;
            }
        }
    }
}

/// Every order of one bot and its position.
#[derive(Debug)]
pub struct Ledger {
    /// The symbol's reference data.
    pub market: Market,
    /// The position.
    pub position: Position,
    orders: BTreeMap<u64, OrderRec>,
    /// Key → the live order holding it.
    keys: BTreeMap<u64, u64>,
    next_coid: u64,
    /// Fills applied.
    pub fills: u64,
    /// Σ slippage over all fills (ticks × lots).
    pub slippage: i64,
    /// Orders opened in all, and those that failed (records of finished orders may be
    /// forgotten; these counts stay).
    pub orders_total: u64,
    /// Orders that failed.
    pub orders_failed: u64,
    /// The last failure: code and name.
    pub last_failure: Option<(u16, String)>,
    /// Every fill with its slippage, when enabled (backtests; a long-running bot keeps only
    /// the totals).
    pub fill_log: Option<Vec<FillRec>>,
    /// The time stamped on logged fills (ms).
    pub now: u64,
}

impl Ledger {
    /// An empty ledger; client order ids start at `first_coid`.
    pub fn new(market: Market, first_coid: u64) -> Ledger {
        Ledger {
            market,
            position: Position::default(),
            orders: BTreeMap::new(),
            keys: BTreeMap::new(),
            next_coid: first_coid,
            fills: 0,
            slippage: 0,
            orders_total: 0,
            orders_failed: 0,
            last_failure: None,
            fill_log: None,
            now: 0,
        }
    }

    /// Records a new order (state `NEW`) under `key` and returns its client order id. The key
    /// must be free ([`Ledger::key_live`]).
    pub fn open(
        &mut self,
        key: u64,
        side: Side,
        kind: Kind,
        price: i64,
        qty: u64,
        reference: i64,
    ) -> u64 {
        let coid = self.next_coid;
        self.next_coid += 1;
        self.orders_total += 1;
        self.orders.insert(
            coid,
            OrderRec {
                coid,
                key,
                side,
                kind,
                price,
                qty,
                filled: 0,
                state: OrderState::New,
                reference,
                fees: 0,
                slippage: 0,
                failure: None,
            },
        );
        self.keys.insert(key, coid);
        coid
    }

    /// The live order holding `key`, if any.
    pub fn key_live(&self, key: u64) -> Option<u64> {
        self.keys.get(&key).copied()
    }

    /// Frees `key` (its order is being cancelled; later notes about it still arrive).
    pub fn detach(&mut self, key: u64) -> Option<u64> {
        self.keys.remove(&key)
    }

    /// An order by client order id.
    pub fn order(&self, coid: u64) -> Option<&OrderRec> {
        self.orders.get(&coid)
    }

    /// Every order, by client order id.
    pub fn orders(&self) -> impl Iterator<Item = &OrderRec> {
        self.orders.values()
    }

    /// Live orders (NEW, OPEN, PARTIAL).
    pub fn working(&self) -> impl Iterator<Item = &OrderRec> {
        self.orders.values().filter(|o| o.state.is_live())
    }

    /// Drops finished orders' records (keeps memory bounded in long runs); their effect on
    /// the position and the counters stays.
    pub fn forget_finished(&mut self) {
        self.orders.retain(|_, o| o.state.is_live());
    }

    /// Marks an order refused before it reached the venue (risk).
    pub fn fail(&mut self, coid: u64, code: u16, name: &str) -> Option<Note> {
        let o = self.orders.get_mut(&coid)?;
        if o.state == OrderState::Failed {
            return None;
        }
        o.state = OrderState::Failed;
        self.orders_failed += 1;
        self.last_failure = Some((code, name.to_string()));
        o.failure = Some((code, name.to_string()));
        let key = o.key;
        if self.keys.get(&key) == Some(&coid) {
            self.keys.remove(&key);
        }
        Some(Note::Ended { key, filled: 0 })
    }

    /// Applies a venue update; returns what the strategy should hear.
    pub fn apply(&mut self, up: &Update) -> Option<Note> {
        let tick = self.market.tick_size;
        match *up {
            Update::Accepted { coid } => {
                let o = self.orders.get_mut(&coid)?;
                if o.state == OrderState::New {
                    o.state = OrderState::Open;
                }
                None
            }
            Update::Fill {
                coid,
                price,
                qty,
                leaves,
                fee,
            } => {
                let o = self.orders.get_mut(&coid)?;
                o.filled += qty;
                o.fees += fee;
                let adverse = match o.side {
                    Side::Buy => price - o.reference,
                    Side::Sell => o.reference - price,
                };
                let slip = adverse * qty as i64;
                o.slippage += slip;
                o.state = if leaves == 0 {
                    OrderState::Closed
                } else {
                    OrderState::Partial
                };
                let (key, side, done) = (o.key, o.side, leaves == 0);
                self.slippage += slip;
                self.fills += 1;
                if let Some(log) = &mut self.fill_log {
                    log.push(FillRec {
                        ts: self.now,
                        coid,
                        side: side.name(),
                        price,
                        qty,
                        fee,
                        slippage: slip,
                    });
                }
                self.position.fill(side, price, qty, fee, tick);
                if done && self.keys.get(&key) == Some(&coid) {
                    self.keys.remove(&key);
                }
                Some(Note::Fill {
                    key,
                    side,
                    price,
                    qty,
                    done,
                })
            }
            Update::Cancelled { coid, leaves } => {
                let o = self.orders.get_mut(&coid)?;
                if leaves > 0 || !o.state.is_live() {
                    return None;
                }
                o.state = OrderState::Closed;
                let (key, filled) = (o.key, o.filled);
                if self.keys.get(&key) == Some(&coid) {
                    self.keys.remove(&key);
                }
                Some(Note::Ended { key, filled })
            }
            Update::Rejected {
                coid,
                code,
                ref name,
            } => {
                // A refused cancel of an order already gone names that order: only a NEW
                // order fails.
                if self.orders.get(&coid)?.state != OrderState::New {
                    return None;
                }
                self.fail(coid, code, name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market() -> Market {
        Market {
            tick_size: 10,
            price_min: 1,
            price_max: 1_000,
            max_order_qty: 1_000,
        }
    }

    #[test]
    fn average_price_realised_and_unrealised() {
        let mut p = Position::default();
        p.fill(Side::Buy, 100, 3, 5, 10);
        p.fill(Side::Buy, 110, 1, 2, 10);
        // Cost 410 ticks·lots: average 102 (102.5 rounded towards zero).
        assert_eq!((p.qty, p.cost, p.avg_price()), (4, 410, Some(102)));
        assert_eq!(p.unrealised(120, 10), (480 - 410) * 10);
        // Sell 2 at 120: removes half the cost (205); realised (240 − 205) × 10 = 350.
        p.fill(Side::Sell, 120, 2, 3, 10);
        assert_eq!((p.qty, p.cost, p.realised), (2, 205, 350));
        assert_eq!(p.round_trips, 0);
        // Sell 3 at 90: closes 2 (realised (180 − 205) × 10 = −250), opens short 1 at 90.
        p.fill(Side::Sell, 90, 3, 1, 10);
        assert_eq!((p.qty, p.cost, p.realised), (-1, -90, 100));
        assert_eq!(p.fees, 11);
        // Realised 100 − fees 11 > 0: one winning round trip.
        assert_eq!((p.round_trips, p.wins), (1, 1));
        assert_eq!(p.cash, -3_000 - 1_100 + 2_400 + 2_700 - 11);
        // Buy back the short at 95: realised (−95 + 90) × 10 = −50, a losing trip.
        p.fill(Side::Buy, 95, 1, 1, 10);
        assert_eq!((p.qty, p.realised, p.round_trips, p.wins), (0, 50, 2, 1));
    }

    #[test]
    fn order_states_and_slippage() {
        let mut l = Ledger::new(market(), 1);
        let a = l.open(7, Side::Buy, Kind::Market, 110, 5, 100);
        assert_eq!(l.order(a).unwrap().state, OrderState::New);
        assert_eq!(l.key_live(7), Some(a));
        assert_eq!(l.apply(&Update::Accepted { coid: a }), None);
        assert_eq!(l.order(a).unwrap().state, OrderState::Open);
        let n = l.apply(&Update::Fill {
            coid: a,
            price: 101,
            qty: 2,
            leaves: 3,
            fee: 1,
        });
        assert_eq!(
            n,
            Some(Note::Fill {
                key: 7,
                side: Side::Buy,
                price: 101,
                qty: 2,
                done: false
            })
        );
        assert_eq!(l.order(a).unwrap().state, OrderState::Partial);
        l.apply(&Update::Fill {
            coid: a,
            price: 103,
            qty: 1,
            leaves: 2,
            fee: 1,
        });
        // The IOC remainder is cancelled: CLOSED, the strategy hears it ended with 3 filled.
        let n = l.apply(&Update::Cancelled { coid: a, leaves: 0 });
        assert_eq!(n, Some(Note::Ended { key: 7, filled: 3 }));
        let o = l.order(a).unwrap();
        assert_eq!(
            (o.state, o.filled, o.fees, o.slippage),
            (OrderState::Closed, 3, 2, 2 + 3)
        );
        assert_eq!(l.slippage, 5);
        assert_eq!(l.key_live(7), None);
        // A refused new order fails; a refused cancel of a closed order changes nothing.
        let b = l.open(8, Side::Sell, Kind::Limit, 120, 1, 120);
        let n = l.apply(&Update::Rejected {
            coid: b,
            code: 2002,
            name: "INSUFFICIENT_FUNDS".into(),
        });
        assert_eq!(n, Some(Note::Ended { key: 8, filled: 0 }));
        assert_eq!(l.order(b).unwrap().state, OrderState::Failed);
        assert_eq!(
            l.apply(&Update::Rejected {
                coid: a,
                code: 3010,
                name: "UNKNOWN_ORDER".into()
            }),
            None
        );
        assert_eq!(l.order(a).unwrap().state, OrderState::Closed);
        // A sell limit filled better than its price has negative slippage.
        let c = l.open(9, Side::Sell, Kind::Limit, 120, 1, 120);
        l.apply(&Update::Accepted { coid: c });
        l.apply(&Update::Fill {
            coid: c,
            price: 122,
            qty: 1,
            leaves: 0,
            fee: 0,
        });
        assert_eq!(l.order(c).unwrap().slippage, -2);
        assert_eq!(l.working().count(), 0);
    }
}
