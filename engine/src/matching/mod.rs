//! The matching stage: price-time priority over the array books, every order type.
//!
//! One [`Matcher`] owns the books of all symbols, the shared order pool, the client-order-id
//! index and the per-user order lists. [`Matcher::process`] applies one command and reports what
//! happened to an [`EventSink`]; it never allocates, locks or formats. The rules it implements
//! are written down in docs/matching.md, and `book::reference` (the `testing` feature)
//! implements the same rules the simple way so property tests can compare the two.
//!
//! This file holds the state (the order store, the [`Matcher`]), engine time and expiry, and
//! [`Matcher::process`]'s dispatch; the command families live beside it:
//!
//! - `new_order.rs` — validating and placing new orders;
//! - `execute.rs` — the taker run new, triggered and re-priced orders share (matching, self-trade
//!   prevention, fill-or-kill, budget orders, iceberg refills);
//! - `stops.rs` — stop triggers and their cascade;
//! - `cancel.rs` — cancel, amend and mass cancel, and the amend checks R runs first;
//! - `queries.rs` — query answers, read-only accessors and the state hash;
//! - `restore.rs` — snapshot support;
//! - `stage.rs` — M as the engine and the pipeline run it (`match_stage`);
//! - `expiry.rs`, `finished.rs` — the expiry queue and the windows of finished orders.

use crate::book::array::ArrayBook;
use crate::book::index::ClientOrderIndex;
use crate::book::pool::{Order, OrderPool, NIL};
use crate::book::OrderView;
use crate::codes::{CancelReason, RejectCode};
use crate::command::{Command, NewOrder, Query};
use crate::config::{ClientOrderIdRule, Config};
use crate::event::{Event, EventSink};
use crate::types::{ClientOrderId, OrderId, Qty, TimeInForce, UserId};

mod cancel;
mod execute;
mod expiry;
mod finished;
mod new_order;
mod queries;
mod restore;
pub(crate) mod stage;
mod stops;

#[cfg(any(test, feature = "testing"))]
pub(crate) use execute::trade_notional;
use expiry::ExpiryQueue;
use finished::FinishedWindow;
pub use finished::{status_of, FinishedOrder, OrderStatus};

/// The latest engine time (Unix nanoseconds, in the year 2554): a later stamp counts as this.
/// `u64::MAX` itself means "never" (the expiry queue's empty mark, a GTD order that never
/// expires), so engine time never reaches it (a script clock or a caller's stamp of
/// `u64::MAX` panicked the expiry check: an operator red-team pass).
pub const TIME_MAX_NS: u64 = u64::MAX - 1;

/// The order-id modulus of a pool of `orders_max` orders: `orders_max` rounded up to a power of
/// two. No two live orders have ids equal modulo it (docs/matching.md, "Order ids"), and it is
/// the number of pool slots: an order lives in slot `id mod` it. A power of two, so that the
/// modulo is a mask, not a division.
pub(crate) fn order_id_modulus(orders_max: u32) -> u64 {
    u64::from(orders_max).next_power_of_two()
}

/// How a cancel or amend names its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderRef {
    /// By the owner's client order id.
    Client(ClientOrderId),
    /// By the engine's order id.
    Engine(OrderId),
}

/// Head and tail of one user's list of live orders (in acceptance order).
#[derive(Clone, Copy, Debug)]
struct UserList {
    head: u32,
    tail: u32,
}

/// Live orders: the pool (where an order's id names its slot) plus the two other ways to find
/// an order (client id, owner).
#[derive(Debug)]
struct OrderStore {
    pool: OrderPool,
    index: ClientOrderIndex,
    users: Vec<UserList>,
    /// Per user: whether the client-order-id index holds this user's live orders. Only a user
    /// who has named an order by client order id (cancel, amend, status query) is indexed — from
    /// then on — so a client that keeps the engine's order ids never pays for the index; under
    /// `unique_live` every user is, for the duplicate check (docs/architecture.md).
    indexed: Vec<bool>,
    /// Per pool slot: the notional the order in it has filled (quote minimal units).
    notional: Vec<u64>,
    /// Each user's recently finished orders (docs/matching.md, "Order status").
    finished: FinishedWindow,
    /// The live GTD and DAY orders, soonest expiry first (docs/matching.md, "Expiry").
    expiry: ExpiryQueue,
}

impl OrderStore {
    /// The slot of the live order with id `id`: slot `id mod order_id_modulus`, if the order
    /// there has this id (docs/matching.md, "Order ids"). One index and one comparison.
    #[inline]
    fn slot_of(&self, id: OrderId) -> Option<u32> {
        let slot = self.pool.slot_of(id);
        (id.0 != 0 && self.pool[slot].id == id).then_some(slot)
    }

    /// The slot of the live order of `user` (in range) with client order id `coid`: from the
    /// index once the user is indexed, else by walking the user's live orders, newest first
    /// (only until the matching stage processes the user's first command that names an order
    /// by client order id: [`OrderStore::index_user`]).
    #[inline]
    fn by_client_id(&self, user: UserId, coid: ClientOrderId) -> Option<u32> {
        if self.indexed[user.0 as usize] {
            return self.index.get(user, coid, &self.pool);
        }
        let mut slot = self.users[user.0 as usize].tail;
        while slot != NIL {
            let o = &self.pool[slot];
            if o.client_order_id == coid {
                return Some(slot);
            }
            slot = o.user_prev;
        }
        None
    }

    /// Makes sure the client-order-id index holds `user`'s live orders, now and from now on:
    /// the first time, it indexes the user's live orders (one walk of their list).
    #[inline]
    fn index_user(&mut self, user: UserId) {
        if self.indexed.get(user.0 as usize) == Some(&false) {
            self.index_user_now(user);
        }
    }

    #[cold]
    #[inline(never)]
    fn index_user_now(&mut self, user: UserId) {
        self.indexed[user.0 as usize] = true;
        let mut slot = self.users[user.0 as usize].head;
        while slot != NIL {
            self.index.insert(slot, &mut self.pool);
            slot = self.pool[slot].user_next;
        }
    }

    /// A read-only copy of the live order in `slot`.
    #[inline]
    fn view(&self, slot: u32) -> OrderView {
        let o = &self.pool[slot];
        let expire_at = if o.tif.expires() {
            self.expiry.expiry_of(slot)
        } else {
            0
        };
        view(o, expire_at)
    }

    /// Puts a new live order into the slot its id names (free: the id was chosen so), indexes
    /// and links it; a GTD or DAY order (`expire_at` non-zero) joins the expiry queue. The pool
    /// has room (checked by the caller).
    #[inline]
    fn admit(&mut self, order: Order, expire_at: u64) -> u32 {
        let slot = self.pool.put(order);
        self.link_admitted(slot, order.user, order.id, expire_at);
        slot
    }

    /// The rest of [`OrderStore::admit`] for an order of `user` with `id` already written
    /// into `slot` ([`OrderPool::claim`]): indexes and links it.
    #[inline]
    fn link_admitted(&mut self, slot: u32, user: UserId, id: OrderId, expire_at: u64) {
        debug_assert!(self.pool.slot_of(id) == slot && self.pool[slot].id == id);
        debug_assert_eq!(self.pool[slot].user, user);
        self.notional[slot as usize] = 0;
        if self.indexed[user.0 as usize] {
            self.index.insert(slot, &mut self.pool);
        }
        if expire_at != 0 {
            self.expiry.insert(slot, id.0, expire_at);
        }
        let list = &mut self.users[user.0 as usize];
        let tail = list.tail;
        self.pool[slot].user_prev = tail;
        self.pool[slot].user_next = NIL;
        if tail == NIL {
            list.head = slot;
        } else {
            self.pool[tail].user_next = slot;
        }
        list.tail = slot;
    }

    /// Forgets an order that is no longer live (already unlinked from any level).
    #[inline]
    fn retire(&mut self, slot: u32) {
        let (user, prev, next, tif) = {
            let o = &self.pool[slot];
            (o.user, o.user_prev, o.user_next, o.tif)
        };
        if tif.expires() {
            self.expiry.remove(slot);
        }
        if self.indexed[user.0 as usize] {
            self.index.remove(slot, &mut self.pool);
        }
        let list = &mut self.users[user.0 as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.pool[prev].user_next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.pool[next].user_prev = prev;
        }
        self.pool.free(slot);
    }

    /// Records that the order in `slot` finished with `status` at engine time `ts` (at the
    /// event that took its open quantity to zero: docs/matching.md, "Order status").
    /// Inlined at every call site, where `status` is a constant, so packing its code and
    /// detail costs nothing.
    #[inline(always)]
    fn finish(&mut self, slot: u32, status: OrderStatus, ts: u64) {
        let o = &self.pool[slot];
        self.finished.push(
            o.user,
            FinishedOrder {
                client_order_id: o.client_order_id,
                order_id: o.id,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                status,
                price: o.price,
                filled_qty: Qty(o.filled),
                filled_notional: self.notional[slot as usize],
                ts,
            },
        );
    }
}

/// The matching engine for every configured symbol.
#[derive(Debug)]
pub struct Matcher {
    books: Vec<ArrayBook>,
    store: OrderStore,
    /// The lowest id the next order may get (it gets the first id from here whose pool slot is
    /// free: docs/matching.md, "Order ids").
    next_order_id: u64,
    /// The client-order-id rule (`[engine] client_order_ids`).
    coid_rule: ClientOrderIdRule,
    /// Per user id: the highest client order id of any new order of that user sequenced so
    /// far, whatever its outcome (0: none). Kept under both rules; `Increasing` refuses a new
    /// order at or below it (docs/protocol.md, "Idempotency").
    coid_high: Vec<u64>,
    /// Engine time (Unix nanoseconds): the latest command timestamp seen; never goes back.
    now_ns: u64,
    /// The session end as nanoseconds after midnight UTC (`[schedule] day_end_utc`), when DAY
    /// orders expire; `None`: DAY orders are rejected.
    day_end_ns: Option<u64>,
}

#[inline]
fn cancelled(o: &Order, qty: u64, reason: CancelReason) -> Event {
    Event::Cancelled {
        user: o.user,
        symbol: o.symbol,
        client_order_id: o.client_order_id,
        order_id: o.id,
        side: o.side,
        price: o.price,
        qty: Qty(qty),
        leaves_qty: Qty(o.leaves),
        reason,
    }
}

#[inline]
fn reject(user: UserId, client_order_id: ClientOrderId, code: RejectCode) -> Event {
    Event::Rejected {
        user,
        client_order_id,
        code,
    }
}

fn view(o: &Order, expire_at: u64) -> OrderView {
    OrderView {
        expire_at,
        order_id: o.id,
        user: o.user,
        client_order_id: o.client_order_id,
        symbol: o.symbol,
        side: o.side,
        order_type: o.order_type,
        tif: o.tif,
        price: o.price,
        stop_price: o.stop_price,
        leaves_qty: Qty(o.leaves),
        visible_qty: Qty(o.visible),
        filled_qty: Qty(o.filled),
        display_qty: Qty(o.display),
        post_only: o.post_only,
        stp: o.stp,
    }
}

impl Matcher {
    /// The heap bytes [`Matcher::new`] allocates for a validated config, as (per order slot,
    /// per user, price levels) (`crate::memory`).
    pub(crate) fn bytes_for(config: &Config) -> (u64, u64, u64) {
        let cap = &config.capacity;
        let slots = order_id_modulus(cap.orders_max);
        let users = cap.users_max as usize;
        let per_user = std::mem::size_of::<UserList>()
            + std::mem::size_of::<bool>()
            + std::mem::size_of::<u64>();
        let orders = OrderPool::bytes_for(cap.orders_max)
            + ClientOrderIndex::bytes_for(cap.orders_max)
            + slots * std::mem::size_of::<u64>() as u64
            + ExpiryQueue::bytes_for(slots as u32);
        let users = (users * per_user) as u64
            + FinishedWindow::bytes_for(users, config.engine.finished_orders_per_user as usize);
        let levels = config.symbols.iter().map(ArrayBook::bytes_for).sum();
        (orders, users, levels)
    }

    /// Empty books for every symbol of a validated config; every pool and array is allocated
    /// here, none later.
    pub fn new(config: &Config) -> Matcher {
        let cap = &config.capacity;
        let slots = order_id_modulus(cap.orders_max) as usize;
        Matcher {
            books: config.symbols.iter().map(ArrayBook::new).collect(),
            store: OrderStore {
                pool: OrderPool::with_huge_pages(cap.orders_max, cap.huge_pages),
                index: ClientOrderIndex::with_huge_pages(cap.orders_max, cap.huge_pages),
                users: vec![
                    UserList {
                        head: NIL,
                        tail: NIL
                    };
                    cap.users_max as usize
                ],
                indexed: vec![
                    config.engine.client_order_ids == ClientOrderIdRule::UniqueLive;
                    cap.users_max as usize
                ],
                notional: crate::book::huge::filled_vec(slots, 0, cap.huge_pages),
                finished: FinishedWindow::new(
                    cap.users_max as usize,
                    config.engine.finished_orders_per_user as usize,
                ),
                expiry: ExpiryQueue::new(slots as u32),
            },
            next_order_id: 1,
            coid_rule: config.engine.client_order_ids,
            coid_high: vec![0; cap.users_max as usize],
            now_ns: 0,
            day_end_ns: config.schedule.day_end_offset_ns(),
        }
    }

    /// Moves engine time to `ts_ns` (Unix nanoseconds), the timestamp of the command about to
    /// be processed; a timestamp earlier than the current time leaves it where it is, so time
    /// never goes backwards, and one past [`TIME_MAX_NS`] counts as that (docs/matching.md,
    /// "Engine time").
    #[inline]
    pub fn advance(&mut self, ts_ns: u64) {
        let ts_ns = ts_ns.min(TIME_MAX_NS);
        if ts_ns > self.now_ns {
            self.now_ns = ts_ns;
        }
    }

    /// Engine time: the latest command timestamp processed (0 before any), Unix nanoseconds.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Starts loading what `cmd` will touch first and the cache may not hold: the pool slot of
    /// the order a cancel or amend names by engine order id. (A lookup by client order id
    /// would need the key hashed twice per command to prefetch its index bucket, and measured
    /// no faster; the levels, accounts and per-user records a command touches stay warm.) A
    /// hint that changes nothing.
    #[inline]
    pub fn prefetch(&self, cmd: &Command) {
        if let Command::CancelOrder { order_id, .. } | Command::AmendOrder { order_id, .. } = *cmd {
            self.store.pool.prefetch(self.store.pool.slot_of(order_id));
        }
    }

    /// The soonest expiry time of a live order (`u64::MAX`: none expires).
    #[inline]
    pub fn next_expiry_ns(&self) -> u64 {
        self.store.expiry.next_ns()
    }

    /// Expires every live order whose expiry time engine time has reached, soonest first
    /// (then lowest order id), each with a `Cancelled` of reason `EXPIRED`
    /// (docs/matching.md, "Expiry"). When nothing is due this is one comparison.
    #[inline]
    pub fn expire_due<S: EventSink + ?Sized>(&mut self, sink: &mut S) {
        if self.now_ns >= self.store.expiry.next_ns() {
            self.expire_slow(sink);
        }
    }

    #[cold]
    #[inline(never)]
    fn expire_slow<S: EventSink + ?Sized>(&mut self, sink: &mut S) {
        while self.now_ns >= self.store.expiry.next_ns() {
            let slot = self.store.expiry.first().expect("a due order is queued");
            self.cancel_live(slot, CancelReason::Expired, sink);
        }
    }

    /// The expiry time a new order gets at engine time `now`: its own for GTD, the first
    /// session end after `now` for DAY, 0 for the others. `None`: a DAY order with no session
    /// end configured.
    #[inline]
    fn expiry_at(&self, o: &NewOrder, now: u64) -> Option<u64> {
        match o.tif {
            TimeInForce::Gtd => Some(o.expire_at),
            TimeInForce::Day => self.day_end_ns.map(|end| {
                let midnight = now - now % crate::config::DAY_NS;
                let at = midnight.saturating_add(end);
                if at > now {
                    at
                } else {
                    at.saturating_add(crate::config::DAY_NS)
                }
            }),
            _ => Some(0),
        }
    }

    /// Applies one command, reporting every consequence to `sink` in order: first the
    /// expiries engine time has reached ([`Matcher::expire_due`]), then the command.
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        self.expire_due(sink);
        match *cmd {
            Command::Tick => {}
            Command::NewOrder(ref o) => self.new_order(o, sink),
            Command::Cancel {
                user,
                symbol,
                client_order_id,
            } => {
                self.store.index_user(user);
                self.cancel(user, symbol, OrderRef::Client(client_order_id), sink)
            }
            Command::Amend {
                user,
                symbol,
                client_order_id,
                price,
                qty,
            } => {
                self.store.index_user(user);
                self.amend(
                    user,
                    symbol,
                    OrderRef::Client(client_order_id),
                    price,
                    qty,
                    sink,
                )
            }
            Command::CancelOrder {
                user,
                symbol,
                order_id,
            } => self.cancel(user, symbol, OrderRef::Engine(order_id), sink),
            Command::AmendOrder {
                user,
                symbol,
                order_id,
                price,
                qty,
            } => self.amend(user, symbol, OrderRef::Engine(order_id), price, qty, sink),
            Command::MassCancel {
                user,
                symbol,
                on_disconnect,
            } => self.mass_cancel(user, symbol, on_disconnect, sink),
            // Account commands belong to the risk stage (`Engine`); the book has nothing to do.
            Command::Deposit { .. }
            | Command::Withdraw { .. }
            | Command::ApproveWithdrawal { .. }
            | Command::RejectWithdrawal { .. } => {}
            Command::Query(ref q) => {
                if let Query::Order { user, .. } = *q {
                    self.store.index_user(user);
                }
                self.answer(q, sink)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Price, Side, SymbolId};

    fn place(m: &mut Matcher, user: UserId, coid: u64, price: i64) -> OrderId {
        let mut id = None;
        let o = NewOrder::limit(
            user,
            SymbolId(0),
            ClientOrderId(coid),
            Side::Buy,
            Price(price),
            Qty(1),
        );
        m.process(&Command::NewOrder(o), &mut |e: &Event| {
            if let Event::Accepted { order_id, .. } = e {
                id = Some(*order_id);
            }
        });
        id.expect("accepted")
    }

    fn cancelled(m: &mut Matcher, cmd: Command) -> Option<OrderId> {
        let mut id = None;
        m.process(&cmd, &mut |e: &Event| {
            if let Event::Cancelled { order_id, .. } = e {
                id = Some(*order_id);
            }
        });
        id
    }

    /// Engine time stops at `TIME_MAX_NS`: `u64::MAX` is the expiry queue's "never", and time
    /// reaching it ran the expiry loop on an empty queue (a panic).
    #[test]
    fn engine_time_stops_short_of_never() {
        let config = Config::default();
        let mut m = Matcher::new(&config);
        m.advance(u64::MAX);
        assert_eq!(m.now_ns(), TIME_MAX_NS);
        let price = config.symbols[0].price_min;
        let id = place(&mut m, UserId(3), 1, price);
        assert_eq!(m.next_expiry_ns(), u64::MAX, "a GTC order never expires");
        m.advance(u64::MAX);
        m.expire_due(&mut |e: &Event| panic!("nothing is due: {e:?}"));
        assert_eq!(status_by_id(&mut m, UserId(3), id.0), (1, true, None));
    }

    /// What a `Query::OrderById` answers: `(client order id, live?, finished status)`.
    fn status_by_id(m: &mut Matcher, user: UserId, id: u64) -> (u64, bool, Option<OrderStatus>) {
        let mut out = None;
        let q = Command::Query(Query::OrderById {
            user,
            order_id: OrderId(id),
        });
        m.process(&q, &mut |e: &Event| {
            if let Event::OrderStatus {
                client_order_id,
                order,
                finished,
                ..
            } = e
            {
                out = Some((
                    client_order_id.0,
                    order.is_some(),
                    finished.map(|f| f.status),
                ));
            }
        });
        out.expect("one OrderStatus")
    }

    /// An order's status by engine id: live, then finished (from the owner's window); never
    /// another user's; id 0 (what a rejected order's window entry carries) names nothing.
    #[test]
    fn status_by_engine_id_covers_live_and_finished_orders_of_the_owner_only() {
        let config = Config::default();
        let mut m = Matcher::new(&config);
        let price = config.symbols[0].price_min;
        let (u, v) = (UserId(3), UserId(4));
        let a = place(&mut m, u, 7, price);
        assert_eq!(status_by_id(&mut m, u, a.0), (7, true, None));
        assert_eq!(status_by_id(&mut m, v, a.0), (0, false, None));
        let cancel = Command::CancelOrder {
            user: u,
            symbol: SymbolId(0),
            order_id: a,
        };
        assert_eq!(cancelled(&mut m, cancel), Some(a));
        assert_eq!(
            status_by_id(&mut m, u, a.0),
            (7, false, Some(OrderStatus::Cancelled(CancelReason::User)))
        );
        assert_eq!(status_by_id(&mut m, v, a.0), (0, false, None));
        // A rejected order (quantity 0) finishes with id 0 in the window: not found by id 0.
        let bad = NewOrder::limit(
            u,
            SymbolId(0),
            ClientOrderId(8),
            Side::Buy,
            Price(price),
            Qty(0),
        );
        m.process(&Command::NewOrder(bad), &mut |_: &Event| {});
        assert_eq!(status_by_id(&mut m, u, 0), (0, false, None));
        assert_eq!(status_by_id(&mut m, u, a.0 + 100), (0, false, None));
    }

    /// Under `increasing` ids a user enters the client-order-id index at their first command
    /// naming an order by client order id, with every live order they have; lookups before
    /// (by walking their orders) and after (by the index) find the same orders, and orders
    /// placed and retired on either side of that moment leave the index consistent.
    #[test]
    fn a_user_is_indexed_at_their_first_client_id_command() {
        let config = Config::default();
        let mut m = Matcher::new(&config);
        let price = config.symbols[0].price_min;
        let (u, v) = (UserId(3), UserId(4));
        let a = place(&mut m, u, 1, price);
        let b = place(&mut m, u, 2, price);
        let c = place(&mut m, u, 3, price);
        place(&mut m, v, 1, price);
        assert!(!m.store.indexed[3] && !m.store.indexed[4]);
        // Found by walking, before any index.
        assert_eq!(m.order(u, ClientOrderId(2)).unwrap().order_id, b);
        assert_eq!(m.order(u, ClientOrderId(9)), None);
        // Retired while not indexed.
        let cancel_a = Command::CancelOrder {
            user: u,
            symbol: SymbolId(0),
            order_id: a,
        };
        assert_eq!(cancelled(&mut m, cancel_a), Some(a));
        // The first cancel by client order id indexes the user (and only that user).
        let by_coid = |coid| Command::Cancel {
            user: u,
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(coid),
        };
        assert_eq!(cancelled(&mut m, by_coid(2)), Some(b));
        assert!(m.store.indexed[3] && !m.store.indexed[4]);
        let d = place(&mut m, u, 4, price);
        assert_eq!(
            m.store.index.get(u, ClientOrderId(3), &m.store.pool),
            Some(m.store.pool.slot_of(c))
        );
        assert_eq!(
            m.store.index.get(u, ClientOrderId(4), &m.store.pool),
            Some(m.store.pool.slot_of(d))
        );
        assert_eq!(cancelled(&mut m, by_coid(1)), None, "already cancelled");
        assert_eq!(cancelled(&mut m, by_coid(4)), Some(d));
        assert_eq!(cancelled(&mut m, by_coid(3)), Some(c));
        assert_eq!(m.store.index.get(u, ClientOrderId(3), &m.store.pool), None);
        assert_eq!(m.live_orders(), 1);
        // Under `unique_live` everyone is indexed from the start.
        let mut config = Config::default();
        config.engine.client_order_ids = ClientOrderIdRule::UniqueLive;
        assert!(Matcher::new(&config).store.indexed.iter().all(|&i| i));
    }
}
