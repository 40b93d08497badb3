//! New orders: validation (which the risk stage runs first), the record of a rejected new
//! order's client order id, and placing an order that passed (docs/matching.md).

use crate::book::checked_notional;
use crate::book::pool::{Order, OrderPool};
use crate::codes::RejectCode;
use crate::command::NewOrder;
use crate::config::ClientOrderIdRule;
use crate::event::{Event, EventSink};
use crate::types::{OrderId, OrderType, Qty, Side, TimeInForce, UserId};

use super::stops::{stop_reached, triggered};
use super::{reject, FinishedOrder, Matcher, OrderStatus};

impl Matcher {
    /// The matching stage's validation of a new order (docs/matching.md), without side effects:
    /// the risk stage runs it first so an order's reject code never depends on balances.
    pub(crate) fn validate(&self, o: &NewOrder) -> Result<(), RejectCode> {
        self.validate_at(o, self.now_ns)
    }

    /// [`Matcher::validate`] at engine time `now_ns` (the risk stage of the split pipeline
    /// validates before the matching stage has moved engine time to the command's stamp).
    pub(crate) fn validate_at(&self, o: &NewOrder, now_ns: u64) -> Result<(), RejectCode> {
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
        // Under `Increasing` the high-water mark (checked first) already excludes every live
        // order of the user — each was at or below the mark when it was placed — so only
        // `UniqueLive` (under which every user is indexed) looks the id up.
        debug_assert!(
            self.coid_rule == ClientOrderIdRule::UniqueLive
                || self.store.by_client_id(o.user, o.client_order_id).is_none()
        );
        if self.coid_rule == ClientOrderIdRule::UniqueLive
            && self.store.by_client_id(o.user, o.client_order_id).is_some()
        {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        Ok(())
    }

    pub(super) fn new_order<S: EventSink + ?Sized>(&mut self, o: &NewOrder, sink: &mut S) {
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
    pub(crate) fn note_rejected(&mut self, o: &NewOrder, code: RejectCode) {
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
    pub(crate) fn note_client_order_id(&mut self, o: &NewOrder) {
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
    pub(crate) fn place_validated<S: EventSink + ?Sized>(&mut self, o: &NewOrder, sink: &mut S) {
        debug_assert_eq!(self.validate(o), Ok(()));
        self.note_client_order_id(o);
        // A budget order without a lot cap is capped by the symbol's largest order.
        let qty = if o.qty.0 == 0 {
            self.books[o.symbol.0 as usize].spec.max_order_qty
        } else {
            o.qty.0
        };
        let expire_at = self.expiry_at(o, self.now_ns).expect("validated");
        if self.store.pool.live() == self.store.pool.capacity() {
            self.note_rejected(o, RejectCode::OrderPoolFull);
            sink.on_event(&reject(
                o.user,
                o.client_order_id,
                RejectCode::OrderPoolFull,
            ));
            return;
        }
        // The order goes to the lowest free slot (slot 0 last) and gets the first id from
        // `next_order_id` on that names it (docs/matching.md, "Order ids"). The pool has room.
        let slot = self.store.pool.placement_slot().expect("the pool has room");
        let id = OrderId(next_id_for_slot(
            self.next_order_id,
            slot,
            self.store.pool.slots(),
        ));
        *self.store.pool.claim(slot) = Order {
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
            id,
            client_order_id: o.client_order_id,
            filled: 0,
            display: o.display_qty.0,
            stop_price: o.stop_price,
            ..OrderPool::blank()
        };
        self.store.link_admitted(slot, o.user, id, expire_at);
        self.next_order_id = id.0 + 1;
        sink.on_event(&Event::Accepted {
            user: o.user,
            symbol: o.symbol,
            client_order_id: o.client_order_id,
            order_id: id,
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
                .push_back_sized(&mut self.store.pool, idx, slot, qty, qty);
            return;
        }
        if o.order_type.is_stop() {
            sink.on_event(&triggered(&self.store.pool[slot]));
        }
        self.execute(slot, o.budget, sink);
        self.fire_stops(o.symbol, sink);
    }
}

/// The first id at or above `from` that names `slot` of a pool of `slots` (a power of two): the
/// id congruent to `slot` modulo `slots`.
#[inline]
pub(crate) fn next_id_for_slot(from: u64, slot: u32, slots: u32) -> u64 {
    let mask = u64::from(slots) - 1;
    from + (u64::from(slot).wrapping_sub(from) & mask)
}
