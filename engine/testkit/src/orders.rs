//! The proptest generators the engine's property tests share (`conservation_props`,
//! `reference_props`): the pieces of a generated order that both draw the same way. Each test
//! keeps what is its own (which users, how an order is broken, which steps) and builds on
//! these, so a change here changes both streams alike.
//!
//! Every strategy draws in a fixed order, so a test that composes them in the order it used to
//! write them out draws the same values from the same seed.

use proptest::prelude::*;
use ringbook_engine::config::ClientOrderIdRule;
use ringbook_engine::prelude::*;

/// The tiny market a property test generates orders for.
#[derive(Clone, Copy, Debug)]
pub struct Market {
    /// Valid symbols are `0 .. symbols`.
    pub symbols: u16,
    /// Client order ids in use are `1 ..= coids`.
    pub coids: u64,
    /// Price bands `(price_min, price_max)` per symbol.
    pub bands: &'static [(i64, i64)],
    /// Where the action is, per symbol: prices are generated in `window .. window + 30`.
    pub windows: &'static [i64],
}

impl Market {
    /// The band of `symbol` (symbol 0's for ids past the configured ones).
    pub fn band(&self, symbol: SymbolId) -> (i64, i64) {
        self.bands
            .get(symbol.0 as usize)
            .copied()
            .unwrap_or(self.bands[0])
    }

    /// The start of `symbol`'s price window (symbol 0's for ids past the configured ones).
    pub fn window(&self, symbol: SymbolId) -> i64 {
        self.windows
            .get(symbol.0 as usize)
            .copied()
            .unwrap_or(self.windows[0])
    }

    /// Mostly the symbol a client order id "lives" on (odd ids on symbol 1 of two), so cancels
    /// and amends usually name the right symbol; sometimes the next one (`roll` in `0..8`:
    /// 6 and 7 move).
    pub fn home(&self, coid: ClientOrderId, roll: u8) -> SymbolId {
        let home = (coid.0 % u64::from(self.symbols)) as u16;
        SymbolId(if roll < 6 {
            home
        } else {
            (home + 1) % self.symbols
        })
    }

    /// A client order id in `1 ..= coids`.
    pub fn coid(&self) -> impl Strategy<Value = ClientOrderId> {
        (1..=self.coids).prop_map(ClientOrderId)
    }

    /// The knobs of a new order for one of `users` (see [`Knobs::order`]).
    pub fn knobs(&self, users: impl Strategy<Value = UserId>) -> impl Strategy<Value = Knobs> {
        let ids = (users, 0u8..8, self.coid(), side());
        let kind = (0u8..16, 0u8..10, any::<bool>(), 0u8..8, stp());
        let numbers = (offset(), small_qty(), offset(), 1u64..=4);
        (ids, kind, numbers).prop_map(
            |(
                (user, symbol_roll, coid, side),
                (type_roll, tif_roll, post_only_roll, display_roll, stp),
                (price_off, qty, stop_off, display),
            )| Knobs {
                user,
                symbol_roll,
                coid,
                side,
                type_roll,
                tif_roll,
                post_only_roll,
                display_roll,
                stp,
                price_off,
                qty,
                stop_off,
                display,
            },
        )
    }
}

/// Either side, evenly.
pub fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

/// Mostly no self-trade prevention; each mode now and then.
pub fn stp() -> impl Strategy<Value = StpMode> {
    prop_oneof![
        8 => Just(StpMode::None),
        2 => Just(StpMode::CancelNewest),
        2 => Just(StpMode::CancelOldest),
        2 => Just(StpMode::CancelBoth),
        2 => Just(StpMode::Decrement),
    ]
}

/// A price offset into the window: mostly the middle, where the action is.
pub fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 8i64..22, 1 => 3i64..27]
}

/// An ordinary quantity.
pub fn small_qty() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 1u64..=6, 1 => 7u64..=15]
}

/// The knobs of a new order, drawn by [`Market::knobs`] and turned into a consistent order by
/// [`Knobs::order`]; a test then breaks it (or not) its own way, from the same knobs.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    pub user: UserId,
    /// The symbol: [`Market::home`] of the client order id with this roll.
    pub symbol_roll: u8,
    pub coid: ClientOrderId,
    pub side: Side,
    /// `0..16`: limit (half), market, stop-limit, stop-market.
    pub type_roll: u8,
    /// `0..10`: mostly GTC for limit-like orders, mostly IOC for the others.
    pub tif_roll: u8,
    pub post_only_roll: bool,
    /// `0..8`: an iceberg below 2 (GTC limits only).
    pub display_roll: u8,
    pub stp: StpMode,
    /// The limit price's offset into the window.
    pub price_off: i64,
    pub qty: u64,
    /// The stop price's offset into the window (stop orders).
    pub stop_off: i64,
    /// An iceberg's display quantity (at most `qty`).
    pub display: u64,
}

impl Knobs {
    /// The consistent order these knobs describe: a valid type, time in force, display and
    /// post-only combination, priced inside the symbol's window. Resting orders bid a little
    /// lower than they ask, so books build up and the pool fills; orders that cannot rest lean
    /// the other way, so they mostly trade.
    pub fn order(&self, market: &Market) -> NewOrder {
        let symbol = market.home(self.coid, self.symbol_roll);
        let w = market.window(symbol);
        let order_type = match self.type_roll {
            0..=7 => OrderType::Limit,
            8..=10 => OrderType::Market,
            11..=13 => OrderType::StopLimit,
            _ => OrderType::StopMarket,
        };
        let limit_like = matches!(order_type, OrderType::Limit | OrderType::StopLimit);
        let tif = if limit_like {
            match self.tif_roll {
                0..=5 => TimeInForce::Gtc,
                6..=7 => TimeInForce::Ioc,
                _ => TimeInForce::Fok,
            }
        } else {
            match self.tif_roll {
                0..=6 => TimeInForce::Ioc,
                7..=8 => TimeInForce::Fok,
                _ => TimeInForce::Gtc, // market orders never rest, whatever the TIF
            }
        };
        let gtc_limit = limit_like && tif == TimeInForce::Gtc;
        NewOrder {
            user: self.user,
            symbol,
            client_order_id: self.coid,
            side: self.side,
            order_type,
            tif,
            price: Price(match (self.side, gtc_limit) {
                (Side::Buy, true) | (Side::Sell, false) => w + self.price_off - 3,
                (Side::Sell, true) | (Side::Buy, false) => w + self.price_off + 3,
            }),
            qty: Qty(self.qty),
            stop_price: if order_type.is_stop() {
                Price(w + self.stop_off)
            } else {
                Price(0)
            },
            display_qty: if gtc_limit && self.display_roll < 2 {
                Qty(self.display.min(self.qty))
            } else {
                Qty(0)
            },
            post_only: gtc_limit && self.post_only_roll && self.tif_roll.is_multiple_of(2),
            stp: self.stp,
            budget: 0,
            expire_at: 0,
        }
    }
}

/// What a new order's time in force and budget become (see [`lifecycle`]).
#[derive(Clone, Copy, Debug)]
pub enum Life {
    /// As generated.
    Plain,
    /// A market buy with this quote budget, capped at the generated quantity or not at all.
    Budget(u64, bool),
    /// GTD, expiring this many steps ahead (1: already past). The test turns steps into a
    /// time when the step runs.
    Gtd(u64),
    /// DAY: expires at the session end, which long `Tick` steps jump past.
    Day,
    /// Broken: a budget on a sell, on a limit, or on a FOK market buy.
    BadBudget(u8),
    /// Broken: GTD without an expiry, an expiry on GTC, a market GTD.
    BadExpiry(u8),
}

/// Mostly [`Life::Plain`]; budgets (`budget_weight` in 187, amounts from `budgets`), GTD and
/// DAY orders now and then, and the broken kinds rarely (`bad_expiry_kinds` of the three
/// [`Life::BadExpiry`] kinds, in order).
pub fn lifecycle(
    budget_weight: u32,
    budgets: impl Strategy<Value = u64> + 'static,
    bad_expiry_kinds: u8,
) -> impl Strategy<Value = Life> {
    prop_oneof![
        160 => Just(Life::Plain),
        budget_weight => (budgets, any::<bool>()).prop_map(|(b, cap)| Life::Budget(b, cap)),
        8 => prop_oneof![1 => 1u64..4, 2 => 4u64..400, 3 => 400u64..100_000].prop_map(Life::Gtd),
        2 => Just(Life::Day),
        1 => (0u8..3).prop_map(Life::BadBudget),
        1 => (0u8..bad_expiry_kinds).prop_map(Life::BadExpiry),
    ]
}

impl Life {
    /// `o` with this life applied.
    pub fn apply(self, mut o: NewOrder) -> NewOrder {
        match self {
            Life::Plain => {}
            Life::Budget(budget, capped) => {
                o.side = Side::Buy;
                o.order_type = OrderType::Market;
                o.tif = TimeInForce::Ioc;
                o.stop_price = Price(0);
                o.post_only = false;
                o.display_qty = Qty(0);
                o.budget = budget;
                if !capped {
                    o.qty = Qty(0);
                }
            }
            Life::Gtd(steps) => {
                if o.order_type != OrderType::Market {
                    o.tif = TimeInForce::Gtd;
                    o.expire_at = steps;
                }
            }
            Life::Day => {
                if o.order_type != OrderType::Market {
                    o.tif = TimeInForce::Day;
                }
            }
            Life::BadBudget(k) => {
                o.budget = 1 + o.qty.0.wrapping_mul(1_000);
                match k {
                    0 => o.side = Side::Sell,
                    1 => o.order_type = OrderType::Limit,
                    _ => {
                        o.order_type = OrderType::Market;
                        o.side = Side::Buy;
                        o.tif = TimeInForce::Fok;
                    }
                }
            }
            Life::BadExpiry(k) => match k {
                0 => o.tif = TimeInForce::Gtd,
                1 => {
                    o.tif = TimeInForce::Gtc;
                    o.expire_at = 5;
                }
                _ => {
                    o.order_type = OrderType::Market;
                    o.stop_price = Price(0);
                    o.tif = TimeInForce::Gtd;
                    o.expire_at = 5;
                }
            },
        }
        o
    }
}

/// Generated orders with a generated [`Life`] applied.
pub fn with_life(
    orders: impl Strategy<Value = NewOrder>,
    lives: impl Strategy<Value = Life>,
) -> impl Strategy<Value = NewOrder> {
    (orders, lives).prop_map(|(o, life)| life.apply(o))
}

/// Under the `increasing` rule, turns the generator's small client order id `c` into a fresh
/// id above the user's high-water mark (`high + c`), except for about one order in ten, which
/// is resent with an id at or just below the mark (`high`, `high − 1`, `high − 2`): the
/// duplicate the rule must refuse (after a fill, a cancel or a reject alike). Under
/// `unique_live` the order is left alone.
pub fn increasing_id(
    mut o: NewOrder,
    high: impl Fn(UserId) -> u64,
    rule: ClientOrderIdRule,
) -> NewOrder {
    if rule == ClientOrderIdRule::Increasing {
        let (c, high) = (o.client_order_id.0, high(o.user));
        let resend = (o.price.0.unsigned_abs() + o.qty.0.wrapping_mul(7)).is_multiple_of(10);
        o.client_order_id = ClientOrderId(if resend {
            high.saturating_sub(c % 3)
        } else {
            high + c
        });
    }
    o
}
