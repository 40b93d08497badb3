//! The matching stage: price-time priority over the array books, every order type.
//!
//! One [`Matcher`] owns the books of all symbols, the shared order pool, the client-order-id
//! index and the per-user order lists. [`Matcher::process`] applies one command and reports what
//! happened to an [`EventSink`]; it never allocates, locks or formats. The rules it implements
//! are written down in docs/matching.md, and [`crate::book::reference`] implements the same rules
//! the simple way so property tests can compare the two.

use crate::book::array::ArrayBook;
use crate::book::index::ClientOrderIndex;
use crate::book::levels::SideLevels;
use crate::book::pool::{Order, OrderPool, NIL};
use crate::book::{checked_notional, fee, BookSection, OrderView};
use crate::codes::{CancelReason, RejectCode};
use crate::command::{Command, NewOrder, Query};
use crate::config::{ClientOrderIdRule, Config};
use crate::event::{Event, EventSink, Fill, Trade};
use crate::hash::{StateHash, StateHasher};
use crate::types::{
    ClientOrderId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId, TimeInForce, TradeId,
    UserId,
};

mod expiry;
pub mod finished;
pub(crate) mod stage;

use expiry::ExpiryQueue;
use finished::FinishedWindow;
pub use finished::{FinishedOrder, OrderStatus};

/// The order-id modulus of a pool of `orders_max` orders: `orders_max` rounded up to a power of
/// two. No two live orders have ids equal modulo it (docs/matching.md, "Order ids"), and it is
/// the size of the table that finds an order by id; a power of two, so that the modulo is a
/// mask, not a division.
pub fn order_id_modulus(orders_max: u32) -> u64 {
    u64::from(orders_max).next_power_of_two()
}

/// How a cancel or amend names its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderRef {
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

/// Live orders: the pool plus the three ways to find an order (client id, engine id, owner).
#[derive(Debug)]
struct OrderStore {
    pool: OrderPool,
    index: ClientOrderIndex,
    /// By order id: entry `id mod order_id_modulus` holds the slot of the live order with that id
    /// (`NIL` if none). Order ids are chosen so that no two live orders share an entry
    /// (docs/matching.md, "Order ids"), so a lookup is one index and one comparison.
    by_id: Vec<u32>,
    users: Vec<UserList>,
    /// Per pool slot: the notional the order in it has filled (quote minimal units).
    notional: Vec<u64>,
    /// Each user's recently finished orders (docs/matching.md, "Order status").
    finished: FinishedWindow,
    /// The live GTD and DAY orders, soonest expiry first (docs/matching.md, "Expiry").
    expiry: ExpiryQueue,
}

impl OrderStore {
    /// The `by_id` entry of an order id.
    #[inline]
    fn id_entry(&self, id: OrderId) -> usize {
        (id.0 & (self.by_id.len() as u64 - 1)) as usize
    }

    /// The slot of the live order with id `id`.
    #[inline]
    fn slot_of(&self, id: OrderId) -> Option<u32> {
        let slot = self.by_id[self.id_entry(id)];
        (slot != NIL && self.pool[slot].id == id).then_some(slot)
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

    /// Puts a new live order (whose id's `by_id` entry is free) into a free slot, indexes and
    /// links it; a GTD or DAY order (`expire_at` non-zero) joins the expiry queue. The pool has
    /// room (checked by the caller).
    #[inline]
    fn admit(&mut self, order: Order, expire_at: u64) -> u32 {
        let slot = self
            .pool
            .alloc(order)
            .expect("the caller checked the pool has room");
        let entry = self.id_entry(order.id);
        debug_assert_eq!(
            self.by_id[entry], NIL,
            "order id {} has a live twin",
            order.id
        );
        self.by_id[entry] = slot;
        self.notional[slot as usize] = 0;
        self.index.insert(order.user, order.client_order_id, slot);
        if expire_at != 0 {
            self.expiry.insert(slot, order.id.0, expire_at);
        }
        let list = &mut self.users[order.user.0 as usize];
        let tail = list.tail;
        self.pool[slot].user_prev = tail;
        self.pool[slot].user_next = NIL;
        if tail == NIL {
            list.head = slot;
        } else {
            self.pool[tail].user_next = slot;
        }
        list.tail = slot;
        slot
    }

    /// Forgets an order that is no longer live (already unlinked from any level).
    #[inline]
    fn retire(&mut self, slot: u32) {
        let (user, coid, prev, next, id, tif) = {
            let o = &self.pool[slot];
            (
                o.user,
                o.client_order_id,
                o.user_prev,
                o.user_next,
                o.id,
                o.tif,
            )
        };
        if tif.expires() {
            self.expiry.remove(slot);
        }
        let entry = self.id_entry(id);
        self.by_id[entry] = NIL;
        self.index.remove(user, coid, &self.pool);
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
    #[inline]
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
    /// The lowest id the next order may get (it gets the first id from here whose `by_id`
    /// entry is free: docs/matching.md, "Order ids").
    next_order_id: u64,
    /// The client-order-id rule (`[engine] client_order_ids`).
    coid_rule: ClientOrderIdRule,
    /// Per user id: the highest client order id of any new order of that user sequenced so
    /// far, whatever its outcome (0: none). Kept under both rules; `Increasing` refuses a new
    /// order at or below it (docs/protocol.md, "Idempotency").
    coid_high: Vec<u64>,
    /// `next_order_id mod order_id_modulus` (its `by_id` entry).
    next_entry: u32,
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
    /// Empty books for every symbol of a validated config; every pool and array is allocated
    /// here, none later.
    pub fn new(config: &Config) -> Matcher {
        let cap = &config.capacity;
        Matcher {
            books: config.symbols.iter().map(ArrayBook::new).collect(),
            store: OrderStore {
                pool: OrderPool::new(cap.orders_max),
                index: ClientOrderIndex::new(cap.orders_max),
                by_id: vec![NIL; order_id_modulus(cap.orders_max) as usize],
                users: vec![
                    UserList {
                        head: NIL,
                        tail: NIL
                    };
                    cap.users_max as usize
                ],
                notional: vec![0; cap.orders_max as usize],
                finished: FinishedWindow::new(
                    cap.users_max as usize,
                    config.engine.finished_orders_per_user as usize,
                ),
                expiry: ExpiryQueue::new(cap.orders_max),
            },
            next_order_id: 1,
            coid_rule: config.engine.client_order_ids,
            coid_high: vec![0; cap.users_max as usize],
            next_entry: 1,
            now_ns: 0,
            day_end_ns: config.schedule.day_end_offset_ns(),
        }
    }

    /// Moves engine time to `ts_ns` (Unix nanoseconds), the timestamp of the command about to
    /// be processed; a timestamp earlier than the current time leaves it where it is, so time
    /// never goes backwards (docs/matching.md, "Engine time").
    #[inline]
    pub fn advance(&mut self, ts_ns: u64) {
        if ts_ns > self.now_ns {
            self.now_ns = ts_ns;
        }
    }

    /// Engine time: the latest command timestamp processed (0 before any), Unix nanoseconds.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.now_ns
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
            } => self.cancel(user, symbol, OrderRef::Client(client_order_id), sink),
            Command::Amend {
                user,
                symbol,
                client_order_id,
                price,
                qty,
            } => self.amend(
                user,
                symbol,
                OrderRef::Client(client_order_id),
                price,
                qty,
                sink,
            ),
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
            Command::Query(ref q) => self.answer(q, sink),
        }
    }

    // ---------------------------------------------------------------- new orders

    /// The matching stage's validation of a new order (docs/matching.md), without side effects:
    /// the risk stage runs it first so an order's reject code never depends on balances.
    pub fn validate(&self, o: &NewOrder) -> Result<(), RejectCode> {
        self.validate_at(o, self.now_ns)
    }

    /// [`Matcher::validate`] at engine time `now_ns` (the risk stage of the split pipeline
    /// validates before the matching stage has moved engine time to the command's stamp).
    pub fn validate_at(&self, o: &NewOrder, now_ns: u64) -> Result<(), RejectCode> {
        if o.user.0 as usize >= self.store.users.len() {
            return Err(RejectCode::UnknownUser);
        }
        if self.coid_rule == ClientOrderIdRule::Increasing
            && o.client_order_id.0 <= self.coid_high[o.user.0 as usize]
        {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        let Some(book) = self.books.get(o.symbol.0 as usize) else {
            return Err(RejectCode::UnknownSymbol);
        };
        if o.budget != 0
            && (o.side != Side::Buy
                || o.order_type != OrderType::Market
                || o.tif != TimeInForce::Ioc)
        {
            return Err(RejectCode::InvalidBudget);
        }
        if o.qty.0 == 0 && o.budget == 0 {
            return Err(RejectCode::InvalidQuantity);
        }
        if o.qty.0 > book.spec.max_order_qty {
            return Err(RejectCode::QuantityTooLarge);
        }
        if !book.in_band(o.price) {
            return Err(RejectCode::PriceOutOfBand);
        }
        if o.order_type.is_stop() != (o.stop_price.0 != 0)
            || (o.order_type.is_stop() && !book.in_band(o.stop_price))
        {
            return Err(RejectCode::InvalidStopPrice);
        }
        if o.post_only && o.order_type.is_market() {
            return Err(RejectCode::InvalidPostOnly);
        }
        if (o.post_only && !o.tif.rests()) || (o.order_type == OrderType::Market && o.tif.expires())
        {
            return Err(RejectCode::InvalidTimeInForce);
        }
        if (o.tif == TimeInForce::Gtd) != (o.expire_at != 0) {
            return Err(RejectCode::InvalidExpiry);
        }
        if o.tif == TimeInForce::Gtd && o.expire_at <= now_ns {
            return Err(RejectCode::ExpiryInPast);
        }
        if o.tif == TimeInForce::Day && self.day_end_ns.is_none() {
            return Err(RejectCode::NoSessionEnd);
        }
        if o.display_qty.0 != 0
            && (o.display_qty > o.qty || o.order_type.is_market() || !o.tif.rests())
        {
            return Err(RejectCode::InvalidDisplayQty);
        }
        if checked_notional(o.price, o.qty, book.spec.tick_size).is_none() {
            return Err(RejectCode::NotionalOverflow);
        }
        if self
            .store
            .index
            .get(o.user, o.client_order_id, &self.store.pool)
            .is_some()
        {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        Ok(())
    }

    fn new_order<S: EventSink + ?Sized>(&mut self, o: &NewOrder, sink: &mut S) {
        match self.validate(o) {
            Ok(()) => self.place_validated(o, sink),
            Err(code) => {
                self.note_rejected(o, code);
                sink.on_event(&reject(o.user, o.client_order_id, code))
            }
        }
    }

    /// Records a new order either stage rejected with `code`: it consumes its client order id
    /// ([`Matcher::note_client_order_id`]) and finishes as REJECTED in its owner's window —
    /// except a `DUPLICATE_CLIENT_ORDER_ID`, whose id names an earlier order: a resend must not
    /// hide what became of the original (docs/matching.md, "Order status").
    #[inline]
    pub fn note_rejected(&mut self, o: &NewOrder, code: RejectCode) {
        self.note_client_order_id(o);
        if code == RejectCode::DuplicateClientOrderId {
            return;
        }
        self.store.finished.push(
            o.user,
            FinishedOrder {
                client_order_id: o.client_order_id,
                order_id: OrderId(0),
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                status: OrderStatus::Rejected(code),
                price: o.price,
                filled_qty: Qty(0),
                filled_notional: 0,
                ts: self.now_ns,
            },
        );
    }

    /// Raises the user's client-order-id high-water mark to `o`'s id: every sequenced new order
    /// of a known user consumes its id, whether it is accepted or rejected (by either stage), so
    /// a resend can turn neither into an execution. A no-op for an unknown user id.
    #[inline]
    pub fn note_client_order_id(&mut self, o: &NewOrder) {
        if let Some(high) = self.coid_high.get_mut(o.user.0 as usize) {
            *high = (*high).max(o.client_order_id.0);
        }
    }

    /// The highest client order id `user` has used (0: none, or an unknown user).
    pub fn client_order_id_high(&self, user: UserId) -> u64 {
        self.coid_high.get(user.0 as usize).copied().unwrap_or(0)
    }

    /// The client-order-id rule in force.
    pub fn client_order_id_rule(&self) -> ClientOrderIdRule {
        self.coid_rule
    }

    /// Places an order that [`Matcher::validate`] accepted, with nothing changed since: the
    /// risk stage validates before it locks and then calls this, so the order is validated (and
    /// its client order id looked up) once.
    pub fn place_validated<S: EventSink + ?Sized>(&mut self, o: &NewOrder, sink: &mut S) {
        debug_assert_eq!(self.validate(o), Ok(()));
        self.note_client_order_id(o);
        // A budget order without a lot cap is capped by the symbol's largest order.
        let qty = if o.qty.0 == 0 {
            self.books[o.symbol.0 as usize].spec.max_order_qty
        } else {
            o.qty.0
        };
        let expire_at = self.expiry_at(o, self.now_ns).expect("validated");
        let order = Order {
            leaves: qty,
            visible: qty,
            user: o.user,
            stp: o.stp,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            symbol: o.symbol,
            post_only: o.post_only,
            in_stop_book: false,
            price: o.price,
            id: OrderId(0),
            client_order_id: o.client_order_id,
            filled: 0,
            display: o.display_qty.0,
            stop_price: o.stop_price,
            ..OrderPool::blank()
        };
        if self.store.pool.live() == self.store.pool.capacity() {
            self.note_rejected(o, RejectCode::OrderPoolFull);
            sink.on_event(&reject(
                o.user,
                o.client_order_id,
                RejectCode::OrderPoolFull,
            ));
            return;
        }
        // The first id from `next_order_id` on whose `by_id` entry is free: the next one unless
        // a live order is `order_id_modulus` or more ids older (then skipped, once per such
        // order per wrap). The pool has room, so some entry is free.
        let cap = self.store.by_id.len() as u32;
        let (mut id, mut entry) = (self.next_order_id, self.next_entry);
        while self.store.by_id[entry as usize] != NIL {
            id += 1;
            entry = if entry + 1 == cap { 0 } else { entry + 1 };
        }
        let order = Order {
            id: OrderId(id),
            ..order
        };
        let slot = self.store.admit(order, expire_at);
        self.next_order_id = id + 1;
        self.next_entry = if entry + 1 == cap { 0 } else { entry + 1 };
        sink.on_event(&Event::Accepted {
            user: o.user,
            symbol: o.symbol,
            client_order_id: o.client_order_id,
            order_id: order.id,
            side: o.side,
            order_type: o.order_type,
            price: o.price,
            qty: Qty(qty),
            display_qty: o.display_qty,
        });
        let book = &mut self.books[o.symbol.0 as usize];
        if o.order_type.is_stop() && !stop_reached(book.last_price, o.side, o.stop_price) {
            let idx = book.idx(o.stop_price);
            self.store.pool[slot].in_stop_book = true;
            book.stops(o.side)
                .push_back(&mut self.store.pool, idx, slot);
            return;
        }
        if o.order_type.is_stop() {
            sink.on_event(&triggered(&self.store.pool[slot]));
        }
        self.execute(slot, o.budget, sink);
        self.fire_stops(o.symbol, sink);
    }

    /// Runs an active order (new, triggered or re-priced) as a taker, then rests or cancels
    /// what is left. `budget`: a new budget order's quote budget (0: none).
    fn execute<S: EventSink + ?Sized>(&mut self, slot: u32, budget: u64, sink: &mut S) {
        let o = self.store.pool[slot];
        let book = &mut self.books[o.symbol.0 as usize];
        if o.post_only && book.crosses(o.side, o.price) {
            sink.on_event(&cancelled(
                &Order { leaves: 0, ..o },
                o.leaves,
                CancelReason::PostOnly,
            ));
            let status = OrderStatus::Cancelled(CancelReason::PostOnly);
            self.store.finish(slot, status, self.now_ns);
            self.store.retire(slot);
            return;
        }
        if o.tif == TimeInForce::Fok && !fok_feasible(book, &self.store.pool, &o) {
            sink.on_event(&cancelled(
                &Order { leaves: 0, ..o },
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
            o.visible = o.peak();
            let (side, idx) = (o.side, book.idx(o.price));
            book.own(side).push_back(&mut self.store.pool, idx, slot);
        } else {
            let left = o.leaves;
            o.leaves = 0;
            sink.on_event(&cancelled(o, left, CancelReason::Ioc));
            self.store
                .finish(slot, OrderStatus::Cancelled(CancelReason::Ioc), now);
            self.store.retire(slot);
        }
    }

    /// Triggers waiting stops while the last trade price reaches them, one at a time, each run
    /// to completion before the next is looked for (so triggered orders enter in trigger order
    /// and cascades are seen).
    fn fire_stops<S: EventSink + ?Sized>(&mut self, symbol: SymbolId, sink: &mut S) {
        loop {
            let book = &mut self.books[symbol.0 as usize];
            let Some(last) = book.last_price else { return };
            let (side, idx) = match (book.buy_stops.best(), book.sell_stops.best()) {
                (Some(i), _) if book.price(i) <= last => (Side::Buy, i),
                (_, Some(i)) if book.price(i) >= last => (Side::Sell, i),
                _ => return,
            };
            let stops = book.stops(side);
            let slot = stops.level(idx).head;
            stops.remove(&mut self.store.pool, idx, slot);
            let o = &mut self.store.pool[slot];
            o.in_stop_book = false;
            sink.on_event(&triggered(o));
            self.execute(slot, 0, sink);
        }
    }

    // ---------------------------------------------------------------- cancel, amend

    /// Finds a live order of `user` on `symbol`, or the reject that explains why not.
    fn find(&self, user: UserId, symbol: SymbolId, coid: ClientOrderId) -> Result<u32, RejectCode> {
        if user.0 as usize >= self.store.users.len() {
            return Err(RejectCode::UnknownUser);
        }
        if symbol.0 as usize >= self.books.len() {
            return Err(RejectCode::UnknownSymbol);
        }
        match self.store.index.get(user, coid, &self.store.pool) {
            Some(slot) if self.store.pool[slot].symbol == symbol => Ok(slot),
            _ => Err(RejectCode::UnknownOrder),
        }
    }

    /// Finds the live order with engine id `order_id` for a cancel or amend by `user` on
    /// `symbol`: the id table's entry `id mod order_id_modulus` holds its slot, so this is an
    /// array index and a comparison. An id that names no live order (never issued, or its order
    /// is gone) is `UNKNOWN_ORDER`; another user's order is `NOT_YOUR_ORDER`; the user's order
    /// on another symbol is `UNKNOWN_ORDER`.
    fn find_by_id(
        &self,
        user: UserId,
        symbol: SymbolId,
        order_id: OrderId,
    ) -> Result<u32, RejectCode> {
        if user.0 as usize >= self.store.users.len() {
            return Err(RejectCode::UnknownUser);
        }
        if symbol.0 as usize >= self.books.len() {
            return Err(RejectCode::UnknownSymbol);
        }
        let Some(slot) = self.store.slot_of(order_id) else {
            return Err(RejectCode::UnknownOrder);
        };
        let o = &self.store.pool[slot];
        if o.user != user {
            Err(RejectCode::NotYourOrder)
        } else if o.symbol != symbol {
            Err(RejectCode::UnknownOrder)
        } else {
            Ok(slot)
        }
    }

    /// Finds the live order a cancel or amend names: by client order id or by engine order id.
    fn locate(&self, user: UserId, symbol: SymbolId, target: OrderRef) -> Result<u32, RejectCode> {
        match target {
            OrderRef::Client(coid) => self.find(user, symbol, coid),
            OrderRef::Engine(order_id) => self.find_by_id(user, symbol, order_id),
        }
    }

    /// The client order id a reject of a command naming `target` carries: the one named, or for
    /// an engine order id the order's own if it is a live order of `user` (0 otherwise, so that
    /// nothing is said about another user's order).
    fn reject_coid(&self, user: UserId, target: OrderRef) -> ClientOrderId {
        match target {
            OrderRef::Client(coid) => coid,
            OrderRef::Engine(order_id) => match self.store.slot_of(order_id) {
                Some(slot) if self.store.pool[slot].user == user => {
                    self.store.pool[slot].client_order_id
                }
                _ => ClientOrderId(0),
            },
        }
    }

    /// Unlinks a live order from whichever level holds it.
    fn unlink(&mut self, slot: u32) {
        let o = &self.store.pool[slot];
        let book = &mut self.books[o.symbol.0 as usize];
        let (levels, idx) = if o.in_stop_book {
            let idx = book.idx(o.stop_price);
            (book.stops(o.side), idx)
        } else {
            let idx = book.idx(o.price);
            (book.own(o.side), idx)
        };
        levels.remove(&mut self.store.pool, idx, slot);
    }

    fn cancel_live<S: EventSink + ?Sized>(
        &mut self,
        slot: u32,
        reason: CancelReason,
        sink: &mut S,
    ) {
        self.unlink(slot);
        let o = &mut self.store.pool[slot];
        let left = o.leaves;
        o.leaves = 0;
        sink.on_event(&cancelled(o, left, reason));
        self.store
            .finish(slot, OrderStatus::cancelled(reason), self.now_ns);
        self.store.retire(slot);
    }

    fn cancel<S: EventSink + ?Sized>(
        &mut self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        sink: &mut S,
    ) {
        match self.locate(user, symbol, target) {
            Ok(slot) => self.cancel_live(slot, CancelReason::User, sink),
            Err(code) => sink.on_event(&reject(user, self.reject_coid(user, target), code)),
        }
    }

    fn amend<S: EventSink + ?Sized>(
        &mut self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        price: Price,
        qty: Qty,
        sink: &mut S,
    ) {
        if qty.0 == 0 {
            return self.cancel(user, symbol, target, sink);
        }
        let slot = match self.check_amend_slot(user, symbol, target, price, qty) {
            Ok(slot) => slot,
            Err(code) => return sink.on_event(&reject(user, self.reject_coid(user, target), code)),
        };
        let o = self.store.pool[slot];
        let book = &mut self.books[symbol.0 as usize];
        let amended = Event::Amended {
            user,
            symbol,
            client_order_id: o.client_order_id,
            order_id: o.id,
            price,
            qty,
        };
        let pool = &mut self.store.pool;
        if o.in_stop_book {
            // A waiting stop keeps its place in the trigger queue unless its quantity grows.
            let idx = book.idx(o.stop_price);
            let stops = book.stops(o.side);
            if qty.0 > o.leaves {
                stops.remove(pool, idx, slot);
                pool[slot].leaves = qty.0;
                pool[slot].visible = qty.0;
                stops.push_back(pool, idx, slot);
            } else {
                stops.reduce(idx, o.leaves - qty.0, o.leaves - qty.0);
                pool[slot].leaves = qty.0;
                pool[slot].visible = qty.0;
            }
            pool[slot].price = price;
            return sink.on_event(&amended);
        }
        let idx = book.idx(o.price);
        if price == o.price && qty.0 <= o.leaves {
            // Reduce in place: keeps time priority.
            let visible = o.visible.min(qty.0);
            book.own(o.side)
                .reduce(idx, o.visible - visible, o.leaves - qty.0);
            pool[slot].leaves = qty.0;
            pool[slot].visible = visible;
            return sink.on_event(&amended);
        }
        // Re-price or grow: loses priority; trades as a taker if it now crosses.
        book.own(o.side).remove(pool, idx, slot);
        pool[slot].price = price;
        pool[slot].leaves = qty.0;
        pool[slot].visible = qty.0;
        sink.on_event(&amended);
        self.execute(slot, 0, sink);
        self.fire_stops(symbol, sink);
    }

    /// Checks an amend to a non-zero quantity without applying it (docs/matching.md, "Amend"),
    /// returning the order as it is now. The risk stage calls this before locking more.
    pub fn check_amend(
        &self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        price: Price,
        qty: Qty,
    ) -> Result<OrderView, RejectCode> {
        self.check_amend_slot(user, symbol, target, price, qty)
            .map(|slot| self.store.view(slot))
    }

    /// The client order id a reject of a cancel or amend naming `target` carries (see
    /// docs/matching.md, "Order ids"); the risk stage's rejects use it too.
    pub fn reject_client_order_id(&self, user: UserId, target: OrderRef) -> ClientOrderId {
        self.reject_coid(user, target)
    }

    fn check_amend_slot(
        &self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        price: Price,
        qty: Qty,
    ) -> Result<u32, RejectCode> {
        let slot = self.locate(user, symbol, target)?;
        let o = &self.store.pool[slot];
        let book = &self.books[symbol.0 as usize];
        // An order's total quantity (filled + open) never exceeds max_order_qty, which bounds
        // every quantity sum in the book (docs/configuration.md).
        if qty.0 == 0 || o.filled.saturating_add(qty.0) > book.spec.max_order_qty {
            return Err(if qty.0 == 0 {
                RejectCode::InvalidQuantity
            } else {
                RejectCode::QuantityTooLarge
            });
        }
        if !book.in_band(price) {
            return Err(RejectCode::PriceOutOfBand);
        }
        if checked_notional(price, qty, book.spec.tick_size).is_none() {
            return Err(RejectCode::NotionalOverflow);
        }
        if o.post_only && !o.in_stop_book && price != o.price && book.crosses(o.side, price) {
            return Err(RejectCode::PostOnlyWouldTake);
        }
        Ok(slot)
    }

    fn mass_cancel<S: EventSink + ?Sized>(
        &mut self,
        user: UserId,
        symbol: Option<SymbolId>,
        on_disconnect: bool,
        sink: &mut S,
    ) {
        let reason = if on_disconnect {
            CancelReason::Disconnect
        } else {
            CancelReason::User
        };
        if user.0 as usize >= self.store.users.len() {
            return sink.on_event(&reject(user, ClientOrderId(0), RejectCode::UnknownUser));
        }
        if symbol.is_some_and(|s| s.0 as usize >= self.books.len()) {
            return sink.on_event(&reject(user, ClientOrderId(0), RejectCode::UnknownSymbol));
        }
        let mut count = 0;
        let mut slot = self.store.users[user.0 as usize].head;
        while slot != NIL {
            let next = self.store.pool[slot].user_next;
            if symbol.is_none_or(|s| self.store.pool[slot].symbol == s) {
                self.cancel_live(slot, reason, sink);
                count += 1;
            }
            slot = next;
        }
        sink.on_event(&Event::MassCancelled {
            user,
            symbol,
            count,
        });
    }

    // ---------------------------------------------------------------- queries

    /// Answers a query about the book (order status, open orders, depth) with its reply events.
    /// Balances belong to the accounts: with risk on the engine's settlement stage answers
    /// them; the book alone answers nothing for them.
    pub fn answer<S: EventSink + ?Sized>(&self, q: &Query, sink: &mut S) {
        match *q {
            Query::Order {
                user,
                client_order_id,
            } => {
                let (order, finished, filled_notional) = self.order_status(user, client_order_id);
                sink.on_event(&Event::OrderStatus {
                    user,
                    client_order_id,
                    order,
                    finished,
                    filled_notional,
                })
            }
            Query::OpenOrders { user, limit } => {
                let mut count = 0u32;
                self.for_each_user_order(user, |o| {
                    if count < limit {
                        sink.on_event(&Event::OpenOrder(*o));
                    }
                    count += 1;
                });
                sink.on_event(&Event::OpenOrdersEnd { user, count });
            }
            Query::Book { symbol, depth } => {
                if symbol.0 as usize >= self.books.len() {
                    sink.on_event(&reject(
                        UserId(0),
                        ClientOrderId(0),
                        RejectCode::UnknownSymbol,
                    ));
                    return;
                }
                let mut levels = [0u32; 2];
                for (i, side) in [Side::Buy, Side::Sell].into_iter().enumerate() {
                    self.depth(symbol, side, depth as usize, |price, qty| {
                        levels[i] += 1;
                        sink.on_event(&Event::BookLevel {
                            symbol,
                            side,
                            price,
                            qty,
                        });
                    });
                }
                sink.on_event(&Event::BookEnd {
                    symbol,
                    bid_levels: levels[0],
                    ask_levels: levels[1],
                });
            }
            Query::Balances { .. } => {}
        }
    }

    /// The live order of `user` with this client order id.
    pub fn order(&self, user: UserId, coid: ClientOrderId) -> Option<OrderView> {
        if user.0 as usize >= self.store.users.len() {
            return None;
        }
        self.store
            .index
            .get(user, coid, &self.store.pool)
            .map(|slot| self.store.view(slot))
    }

    /// What a status query for `user`'s client order id `coid` answers: the live order, or
    /// else the newest finished order with that id in the user's window, with the notional
    /// the order filled (0 when neither: never placed, or out of the window).
    pub fn order_status(
        &self,
        user: UserId,
        coid: ClientOrderId,
    ) -> (Option<OrderView>, Option<FinishedOrder>, u64) {
        if user.0 as usize >= self.store.users.len() {
            return (None, None, 0);
        }
        if let Some(slot) = self.store.index.get(user, coid, &self.store.pool) {
            let notional = self.store.notional[slot as usize];
            return (Some(self.store.view(slot)), None, notional);
        }
        match self.store.finished.find(user, coid) {
            Some(f) => (None, Some(f), f.filled_notional),
            None => (None, None, 0),
        }
    }

    /// The live order with engine id `order_id`, whoever owns it: the id table's entry
    /// `order_id mod order_id_modulus` holds its slot, so this is an array index and a
    /// comparison.
    pub fn order_by_id(&self, order_id: OrderId) -> Option<OrderView> {
        self.store
            .slot_of(order_id)
            .map(|slot| self.store.view(slot))
    }

    /// Every live order of a symbol, section by section in canonical order (bids best first,
    /// asks best first, buy stops in trigger order, sell stops in trigger order), FIFO within a
    /// level.
    pub fn for_each_order(&self, symbol: SymbolId, mut f: impl FnMut(BookSection, &OrderView)) {
        let book = &self.books[symbol.0 as usize];
        for section in BookSection::ALL {
            let levels = match section {
                BookSection::Bids => &book.bids,
                BookSection::Asks => &book.asks,
                BookSection::BuyStops => &book.buy_stops,
                BookSection::SellStops => &book.sell_stops,
            };
            for (_, level) in levels.iter() {
                let mut slot = level.head;
                while slot != NIL {
                    f(section, &self.store.view(slot));
                    slot = self.store.pool[slot].next;
                }
            }
        }
    }

    /// Level-2 depth of one side: `(price, visible qty)` best first, at most `levels_max`.
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        mut f: impl FnMut(Price, Qty),
    ) {
        let book = &self.books[symbol.0 as usize];
        let levels: &SideLevels = match side {
            Side::Buy => &book.bids,
            Side::Sell => &book.asks,
        };
        for (idx, level) in levels.iter().take(levels_max) {
            f(book.price(idx), Qty(level.visible));
        }
    }

    /// Best bid `(price, visible qty)`.
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let book = &self.books[symbol.0 as usize];
        book.bids
            .best()
            .map(|i| (book.price(i), Qty(book.bids.level(i).visible)))
    }

    /// Best ask `(price, visible qty)`.
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let book = &self.books[symbol.0 as usize];
        book.asks
            .best()
            .map(|i| (book.price(i), Qty(book.asks.level(i).visible)))
    }

    /// Price of the symbol's last trade.
    pub fn last_trade_price(&self, symbol: SymbolId) -> Option<Price> {
        self.books[symbol.0 as usize].last_price
    }

    /// Id of the symbol's last trade (0 before its first): the next trade gets one more.
    pub fn last_trade_id(&self, symbol: SymbolId) -> TradeId {
        TradeId(self.books[symbol.0 as usize].last_trade_id)
    }

    /// Live orders across all symbols.
    pub fn live_orders(&self) -> u32 {
        self.store.pool.live()
    }

    /// Number of symbols.
    pub fn symbols(&self) -> usize {
        self.books.len()
    }

    /// The id the next accepted order will get.
    pub fn next_order_id(&self) -> OrderId {
        OrderId(self.next_order_id)
    }

    /// Feeds the matching state, canonically ordered, into `h` (see [`crate::hash`]).
    pub fn hash_into(&self, h: &mut StateHasher) {
        h.u64(self.next_order_id);
        h.u64(self.now_ns);
        for (s, book) in self.books.iter().enumerate() {
            h.u64(s as u64);
            h.i64(book.last_price.map_or(0, |p| p.0));
            h.u64(book.last_trade_id);
            let mut count = 0u64;
            let mut last_section = None;
            self.for_each_order(SymbolId(s as u16), |section, v| {
                if last_section != Some(section) {
                    h.u64(0x5ec7_1000 + section as u64);
                    last_section = Some(section);
                }
                v.hash_into(h);
                h.u64(self.filled_notional_of(v.order_id));
                count += 1;
            });
            h.u64(count);
        }
        // Client-order-id high-water marks: every user that has one, in id order.
        h.u64(0xc01d_0000);
        for (user, &high) in self.coid_high.iter().enumerate() {
            if high != 0 {
                h.u64(user as u64);
                h.u64(high);
            }
        }
        self.store.finished.hash_into(h);
    }

    /// The notional the live order `order_id` has filled (0 if it is not live).
    pub fn filled_notional_of(&self, order_id: OrderId) -> u64 {
        self.store
            .slot_of(order_id)
            .map_or(0, |slot| self.store.notional[slot as usize])
    }

    /// The digest of the whole matching state.
    pub fn state_hash(&self) -> StateHash {
        let mut h = StateHasher::default();
        self.hash_into(&mut h);
        h.finish()
    }
}

#[inline]
fn triggered(o: &Order) -> Event {
    Event::Triggered {
        user: o.user,
        symbol: o.symbol,
        client_order_id: o.client_order_id,
        order_id: o.id,
    }
}

/// True if a stop of `side` at `stop` triggers at last trade price `last`.
#[inline]
fn stop_reached(last: Option<Price>, side: Side, stop: Price) -> bool {
    match (last, side) {
        (None, _) => false,
        (Some(last), Side::Buy) => last >= stop,
        (Some(last), Side::Sell) => last <= stop,
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
    let taker = store.pool[slot];
    // A budget order's quote left to spend, taker fees included (docs/matching.md).
    let mut budget_left = budget;
    let (side, limit, user, stp) = (taker.side, taker.price, taker.user, taker.stp);
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
                    client_order_id: taker.client_order_id,
                    order_id: taker.id,
                    limit_price: taker.price,
                    leaves_qty: Qty(t.leaves),
                    cum_qty: Qty(t.filled),
                    fee: fee(level_price, qty, spec.tick_size, spec.taker_fee_bps),
                };
                let mk = &store.pool[m];
                book.last_trade_id += 1;
                sink.on_event(&Event::Trade(Trade {
                    symbol: taker.symbol,
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
pub fn affordable(price: Price, budget: u64, spec: &crate::book::array::SymbolSpec) -> u64 {
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
pub fn trade_notional(price: Price, qty: u64, tick_size: u64) -> u64 {
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
    levels.push_back(&mut store.pool, idx, m);
    if next == NIL {
        m
    } else {
        next
    }
}

// ---------------------------------------------------------------- snapshot support

impl Matcher {
    /// Snapshot support ([`crate::snapshot`]): each live order of `user` in acceptance order,
    /// the order mass cancel visits them in. A user id out of range has none.
    pub(crate) fn for_each_user_order(&self, user: UserId, mut f: impl FnMut(&OrderView)) {
        let Some(list) = self.store.users.get(user.0 as usize) else {
            return;
        };
        let mut slot = list.head;
        while slot != NIL {
            f(&self.store.view(slot));
            slot = self.store.pool[slot].user_next;
        }
    }

    /// Snapshot support ([`crate::snapshot`]): each user's client-order-id high-water mark,
    /// in user id order, for the users that have one.
    pub(crate) fn for_each_client_order_id_high(&self, mut f: impl FnMut(UserId, u64)) {
        for (user, &high) in self.coid_high.iter().enumerate() {
            if high != 0 {
                f(UserId(user as u32), high);
            }
        }
    }

    /// Snapshot support ([`crate::snapshot`]): each user's window of finished orders, in user
    /// id order, oldest first, for the users that have one.
    pub(crate) fn for_each_finished_window(&self, mut f: impl FnMut(UserId, &[FinishedOrder])) {
        let mut entries = Vec::with_capacity(self.store.finished.per_user());
        for user in self.store.finished.users() {
            entries.clear();
            entries.extend(self.store.finished.oldest_first(user).copied());
            f(user, &entries);
        }
    }

    /// Snapshot support ([`crate::snapshot`]): rebuilds the matching state of `config` from
    /// parts that `crate::snapshot` has validated. `orders` are the live orders in canonical
    /// book order (symbol, section, level best first, FIFO within a level) with their links
    /// unset; `acceptance` lists indices into `orders` so that each user's orders appear in
    /// that user's acceptance order. Allocating in `acceptance` order rebuilds the pool, the
    /// client-order-id index and the user lists; pushing in `orders` order rebuilds every
    /// level FIFO, level sum, occupancy bitmap and cached best level.
    ///
    /// `coid_high` lists the users' client-order-id high-water marks; `expiries` the expiry
    /// time of every live GTD and DAY order.
    ///
    /// Panics if the parts break the rules `crate::snapshot` checks (more orders than the
    /// pool, a symbol, price or user out of range, `acceptance` not a permutation).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        config: &Config,
        next_order_id: u64,
        now_ns: u64,
        last_prices: &[Option<Price>],
        last_trade_ids: &[u64],
        orders: &[(BookSection, Order)],
        acceptance: &[u32],
        coid_high: &[(UserId, u64)],
        notionals: &[(OrderId, u64)],
        expiries: &[(OrderId, u64)],
        finished: &[(UserId, Vec<FinishedOrder>)],
    ) -> Matcher {
        assert_eq!(acceptance.len(), orders.len());
        let mut m = Matcher::new(config);
        m.next_order_id = next_order_id;
        m.next_entry = (next_order_id % order_id_modulus(config.capacity.orders_max)) as u32;
        m.now_ns = now_ns;
        for &(user, high) in coid_high {
            m.coid_high[user.0 as usize] = high;
        }
        for ((book, &last), &trade_id) in m.books.iter_mut().zip(last_prices).zip(last_trade_ids) {
            book.last_price = last;
            book.last_trade_id = trade_id;
        }
        let mut slots = vec![NIL; orders.len()];
        for &i in acceptance {
            assert_eq!(slots[i as usize], NIL, "acceptance lists an order twice");
            // Validated: the orders fit in the pool and no two ids share a `by_id` entry.
            let order = orders[i as usize].1;
            assert!(
                m.store.slot_of(order.id).is_none()
                    && m.store.by_id[m.store.id_entry(order.id)] == NIL
            );
            slots[i as usize] = m.store.admit(order, 0);
        }
        for &(id, n) in notionals {
            let slot = m.store.slot_of(id).expect("validated: a live order");
            m.store.notional[slot as usize] = n;
        }
        for &(id, at) in expiries {
            let slot = m.store.slot_of(id).expect("validated: a live order");
            assert!(m.store.pool[slot].tif.expires() && at != 0);
            m.store.expiry.insert(slot, id.0, at);
        }
        for (user, entries) in finished {
            for f in entries {
                m.store.finished.push(*user, *f);
            }
        }
        for (&(section, o), &slot) in orders.iter().zip(&slots) {
            let book = &mut m.books[o.symbol.0 as usize];
            let levels = match section {
                BookSection::Bids => &mut book.bids,
                BookSection::Asks => &mut book.asks,
                BookSection::BuyStops => &mut book.buy_stops,
                BookSection::SellStops => &mut book.sell_stops,
            };
            let price = if o.in_stop_book {
                o.stop_price
            } else {
                o.price
            };
            assert!(price.0 >= book.spec.price_min && price.0 <= book.spec.price_max);
            let idx = (price.0 - book.spec.price_min) as u32;
            levels.push_back(&mut m.store.pool, idx, slot);
        }
        m
    }
}
