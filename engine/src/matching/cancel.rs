//! Cancel, amend and mass cancel: finding the order a command names (by client order id or by
//! engine order id), the amend checks the risk stage runs first, and applying them
//! (docs/matching.md, "Amend").

use crate::book::pool::NIL;
use crate::book::{checked_notional, OrderView};
use crate::codes::{CancelReason, RejectCode};
use crate::event::{Event, EventSink};
use crate::types::{ClientOrderId, OrderId, Price, Qty, SymbolId, UserId};

use super::{cancelled, reject, Matcher, OrderRef, OrderStatus};

impl Matcher {
    /// Finds a live order of `user` on `symbol`, or the reject that explains why not.
    fn find(&self, user: UserId, symbol: SymbolId, coid: ClientOrderId) -> Result<u32, RejectCode> {
        if user.0 as usize >= self.store.users.len() {
            return Err(RejectCode::UnknownUser);
        }
        if symbol.0 as usize >= self.books.len() {
            return Err(RejectCode::UnknownSymbol);
        }
        match self.store.by_client_id(user, coid) {
            Some(slot) if self.store.pool[slot].symbol == symbol => Ok(slot),
            _ => Err(RejectCode::UnknownOrder),
        }
    }

    /// Finds the live order with engine id `order_id` for a cancel or amend by `user` on
    /// `symbol`: the id names its pool slot (`id mod order_id_modulus`), so this is an array
    /// index and a comparison. An id that names no live order (never issued, or its order
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

    pub(super) fn cancel_live<S: EventSink + ?Sized>(
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

    pub(super) fn cancel<S: EventSink + ?Sized>(
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

    pub(super) fn amend<S: EventSink + ?Sized>(
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
            side: o.side,
            price,
            qty,
            prev_price: o.price,
            prev_qty: Qty(o.leaves),
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
                stops.push_back_sized(pool, idx, slot, qty.0, qty.0);
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
    pub(crate) fn check_amend(
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
    pub(crate) fn reject_client_order_id(&self, user: UserId, target: OrderRef) -> ClientOrderId {
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

    pub(super) fn mass_cancel<S: EventSink + ?Sized>(
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
}
