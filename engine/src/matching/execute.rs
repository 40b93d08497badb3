//! The taker run shared by new, triggered and re-priced orders: fill-or-kill and post-only
//! checks, matching against the opposite side with self-trade prevention and budget orders,
//! iceberg refills, then resting or cancelling what is left (docs/matching.md).

use crate::book::array::ArrayBook;
use crate::book::fee;
use crate::book::levels::SideLevels;
use crate::book::pool::{Order, OrderPool, NIL};
use crate::codes::CancelReason;
use crate::event::{Event, EventSink, Fill, Trade};
use crate::types::{Price, Qty, Side, StpMode, TimeInForce, TradeId};

use super::{cancelled, Matcher, OrderStatus, OrderStore};

impl Matcher {
    /// Runs an active order (new, triggered or re-priced) as a taker, then rests or cancels
    /// what is left. `budget`: a new budget order's quote budget (0: none).
    pub(super) fn execute<S: EventSink + ?Sized>(&mut self, slot: u32, budget: u64, sink: &mut S) {
        // Fields, not a copy of the order: the slot was written a moment ago, and a whole-order
        // copy reads it back in wider pieces than it was written, which stalls on the stores.
        let o = &self.store.pool[slot];
        let (post_only, fok) = (o.post_only, o.tif == TimeInForce::Fok);
        let book = &mut self.books[o.symbol.0 as usize];
        if post_only && book.crosses(o.side, o.price) {
            sink.on_event(&cancelled(
                &Order { leaves: 0, ..*o },
                o.leaves,
                CancelReason::PostOnly,
            ));
            let status = OrderStatus::Cancelled(CancelReason::PostOnly);
            self.store.finish(slot, status, self.now_ns);
            self.store.retire(slot);
            return;
        }
        if fok && !fok_feasible(book, &self.store.pool, o) {
            sink.on_event(&cancelled(
                &Order { leaves: 0, ..*o },
                o.leaves,
                CancelReason::Fok,
            ));
            let status = OrderStatus::Cancelled(CancelReason::Fok);
            self.store.finish(slot, status, self.now_ns);
            self.store.retire(slot);
            return;
        }
        match_incoming(book, &mut self.store, slot, self.now_ns, budget, sink);
        let now = self.now_ns;
        let o = &mut self.store.pool[slot];
        if o.leaves == 0 {
            self.store.retire(slot);
        } else if o.tif.rests() && !o.order_type.is_market() {
            let (visible, leaves) = (o.peak(), o.leaves);
            o.visible = visible;
            let (side, idx) = (o.side, book.idx(o.price));
            book.own(side)
                .push_back_sized(&mut self.store.pool, idx, slot, visible, leaves);
        } else {
            let left = o.leaves;
            o.leaves = 0;
            sink.on_event(&cancelled(o, left, CancelReason::Ioc));
            self.store
                .finish(slot, OrderStatus::Cancelled(CancelReason::Ioc), now);
            self.store.retire(slot);
        }
    }
}

/// True if price `p` of the opposite side is acceptable to an order of `side` at `limit`.
#[inline]
fn acceptable(side: Side, p: Price, limit: Price) -> bool {
    match side {
        Side::Buy => p <= limit,
        Side::Sell => p >= limit,
    }
}

/// Fill-or-kill feasibility (docs/matching.md): the open quantity at acceptable prices must
/// cover the order. Under self-trade prevention, the user's own resting orders do not count;
/// with CANCEL_NEWEST, CANCEL_BOTH or DECREMENT any own order on a level the order would reach
/// makes it infeasible (it would stop or shrink the order part-way).
fn fok_feasible(book: &ArrayBook, pool: &OrderPool, o: &Order) -> bool {
    let levels = book.opposite(o.side);
    let mut need = o.leaves;
    let mut cur = levels.best();
    while let Some(idx) = cur {
        if !acceptable(o.side, book.price(idx), o.price) {
            return false;
        }
        let level = levels.level(idx);
        let mut available = level.total;
        if o.stp != StpMode::None {
            let mut slot = level.head;
            while slot != NIL {
                let m = &pool[slot];
                if m.user == o.user {
                    if o.stp != StpMode::CancelOldest {
                        return false;
                    }
                    available -= m.leaves;
                }
                slot = m.next;
            }
        }
        if available >= need {
            return true;
        }
        need -= available;
        cur = levels.next_after(idx);
    }
    false
}

/// Matches the order in `slot` against the opposite side while it crosses. Leaves `leaves == 0`
/// if the order filled or was cancelled by self-trade prevention.
#[inline]
fn match_incoming<S: EventSink + ?Sized>(
    book: &mut ArrayBook,
    store: &mut OrderStore,
    slot: u32,
    now_ns: u64,
    budget: u64,
    sink: &mut S,
) {
    let taker = &store.pool[slot];
    let (side, limit, user, stp) = (taker.side, taker.price, taker.user, taker.stp);
    let (symbol, taker_coid, taker_id) = (taker.symbol, taker.client_order_id, taker.id);
    // A budget order's quote left to spend, taker fees included (docs/matching.md).
    let mut budget_left = budget;
    let spec = book.spec;
    let levels = match side {
        Side::Buy => &mut book.asks,
        Side::Sell => &mut book.bids,
    };
    while let Some(idx) = levels.best() {
        let level_price = Price(spec.price_min + i64::from(idx));
        if !acceptable(side, level_price, limit) {
            break;
        }
        let mut m = levels.level(idx).head;
        while m != NIL {
            let mut next = store.pool[m].next;
            let mut qty = store.pool[slot].leaves.min(store.pool[m].visible);
            // The budget pays for fewer lots than this fill would take: after it, not one
            // more lot fits the budget, here or at any worse price.
            let mut spent = false;
            if stp == StpMode::None || store.pool[m].user != user {
                if budget != 0 {
                    let fits = affordable(level_price, budget_left, &spec);
                    if fits == 0 {
                        return;
                    }
                    spent = fits < qty;
                    qty = qty.min(fits);
                    budget_left -= trade_notional(level_price, qty, spec.tick_size)
                        + fee(level_price, qty, spec.tick_size, spec.taker_fee_bps);
                }
                take(levels, &mut store.pool, idx, m, qty);
                store.pool[m].filled += qty;
                // Saturating, like the reference model (docs/matching.md, "Order status").
                let traded = trade_notional(level_price, qty, spec.tick_size);
                let n = &mut store.notional;
                n[m as usize] = n[m as usize].saturating_add(traded);
                n[slot as usize] = n[slot as usize].saturating_add(traded);
                let t = &mut store.pool[slot];
                t.leaves -= qty;
                t.filled += qty;
                let taker_fill = Fill {
                    user,
                    client_order_id: taker_coid,
                    order_id: taker_id,
                    limit_price: limit,
                    leaves_qty: Qty(t.leaves),
                    cum_qty: Qty(t.filled),
                    fee: fee(level_price, qty, spec.tick_size, spec.taker_fee_bps),
                };
                let mk = &store.pool[m];
                book.last_trade_id += 1;
                sink.on_event(&Event::Trade(Trade {
                    symbol,
                    trade_id: TradeId(book.last_trade_id),
                    ts: now_ns,
                    price: level_price,
                    qty: Qty(qty),
                    taker_side: side,
                    maker: Fill {
                        user: mk.user,
                        client_order_id: mk.client_order_id,
                        order_id: mk.id,
                        limit_price: mk.price,
                        leaves_qty: Qty(mk.leaves),
                        cum_qty: Qty(mk.filled),
                        fee: fee(level_price, qty, spec.tick_size, spec.maker_fee_bps),
                    },
                    taker: taker_fill,
                }));
                book.last_price = Some(level_price);
                if store.pool[m].leaves == 0 {
                    store.finish(m, OrderStatus::Filled, now_ns);
                }
                if store.pool[slot].leaves == 0 {
                    store.finish(slot, OrderStatus::Filled, now_ns);
                }
                next = settle_maker(levels, store, idx, m, next);
                if spent {
                    return;
                }
            } else {
                // Self-trade prevention; the taker's mode decides (docs/matching.md).
                match stp {
                    StpMode::CancelOldest | StpMode::CancelBoth => {
                        levels.remove(&mut store.pool, idx, m);
                        let left = store.pool[m].leaves;
                        store.pool[m].leaves = 0;
                        sink.on_event(&cancelled(&store.pool[m], left, CancelReason::SelfTrade));
                        store.finish(m, OrderStatus::Cancelled(CancelReason::SelfTrade), now_ns);
                        store.retire(m);
                    }
                    StpMode::Decrement => {
                        take(levels, &mut store.pool, idx, m, qty);
                        sink.on_event(&cancelled(&store.pool[m], qty, CancelReason::SelfTrade));
                        let stp = OrderStatus::Cancelled(CancelReason::SelfTrade);
                        if store.pool[m].leaves == 0 {
                            store.finish(m, stp, now_ns);
                        }
                        store.pool[slot].leaves -= qty;
                        sink.on_event(&cancelled(&store.pool[slot], qty, CancelReason::SelfTrade));
                        if store.pool[slot].leaves == 0 {
                            store.finish(slot, stp, now_ns);
                        }
                        next = settle_maker(levels, store, idx, m, next);
                    }
                    StpMode::CancelNewest | StpMode::None => {}
                }
                if matches!(stp, StpMode::CancelNewest | StpMode::CancelBoth) {
                    let left = store.pool[slot].leaves;
                    store.pool[slot].leaves = 0;
                    sink.on_event(&cancelled(&store.pool[slot], left, CancelReason::SelfTrade));
                    store.finish(
                        slot,
                        OrderStatus::Cancelled(CancelReason::SelfTrade),
                        now_ns,
                    );
                    return;
                }
            }
            if store.pool[slot].leaves == 0 {
                return;
            }
            m = next;
        }
    }
}

/// The most lots at `price` a budget of `budget` quote units pays for, taker fee included:
/// the largest `q` with `price × q × tick + ceil(price × q × tick × taker_bps / 10 000) ≤
/// budget` (docs/matching.md, "Budget orders"). Only budget orders pay for the division.
#[inline]
pub(crate) fn affordable(price: Price, budget: u64, spec: &crate::book::array::SymbolSpec) -> u64 {
    let unit = u128::from(price.0 as u64) * u128::from(spec.tick_size);
    if unit == 0 {
        return 0;
    }
    let cost = |q: u128| {
        let n = unit * q;
        n + (n * u128::from(spec.taker_fee_bps)).div_ceil(10_000)
    };
    // cost(q) ≥ unit × q × (10 000 + bps) / 10 000, so no q above `bound` fits; and
    // cost(bound − 1) ≤ budget, as the fee's rounding adds at most 1 ≤ unit.
    let bound = u128::from(budget) * 10_000 / (unit * (10_000 + u128::from(spec.taker_fee_bps)));
    let q = if cost(bound) <= u128::from(budget) {
        bound
    } else {
        bound - 1
    };
    u64::try_from(q).unwrap_or(u64::MAX)
}

/// The notional of one trade in quote minimal units (price × qty × tick size), saturating.
#[inline]
pub(crate) fn trade_notional(price: Price, qty: u64, tick_size: u64) -> u64 {
    (price.0 as u64)
        .saturating_mul(qty)
        .saturating_mul(tick_size)
}

/// Takes `qty` off a resting order's visible and open quantity, in place.
#[inline]
fn take(levels: &mut SideLevels, pool: &mut OrderPool, idx: u32, m: u32, qty: u64) {
    let o = &mut pool[m];
    o.visible -= qty;
    o.leaves -= qty;
    levels.reduce(idx, qty, qty);
}

/// After a fill or decrement of maker `m`: retires it if done, or refills an exhausted iceberg
/// peak at the back of its level. Returns the order to visit next.
#[inline]
fn settle_maker(
    levels: &mut SideLevels,
    store: &mut OrderStore,
    idx: u32,
    m: u32,
    next: u32,
) -> u32 {
    let (visible, leaves) = (store.pool[m].visible, store.pool[m].leaves);
    if visible > 0 {
        return next;
    }
    levels.remove(&mut store.pool, idx, m);
    if leaves == 0 {
        store.retire(m);
        return next;
    }
    // Iceberg refill: a new peak joins the back of the level and loses time priority.
    let peak = store.pool[m].peak();
    store.pool[m].visible = peak;
    levels.push_back_sized(&mut store.pool, idx, m, peak, leaves);
    if next == NIL {
        m
    } else {
        next
    }
}
