//! Stop orders: the trigger rule and the cascade of triggered stops after a trade
//! (docs/matching.md, "Stop orders").

use crate::book::pool::Order;
use crate::event::{Event, EventSink};
use crate::types::{Price, Side, SymbolId};

use super::Matcher;

impl Matcher {
    /// Triggers waiting stops while the last trade price reaches them, one at a time, each run
    /// to completion before the next is looked for (so triggered orders enter in trigger order
    /// and cascades are seen).
    pub(super) fn fire_stops<S: EventSink + ?Sized>(&mut self, symbol: SymbolId, sink: &mut S) {
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
}

#[inline]
pub(super) fn triggered(o: &Order) -> Event {
    Event::Triggered {
        user: o.user,
        symbol: o.symbol,
        client_order_id: o.client_order_id,
        order_id: o.id,
    }
}

/// True if a stop of `side` at `stop` triggers at last trade price `last`.
#[inline]
pub(super) fn stop_reached(last: Option<Price>, side: Side, stop: Price) -> bool {
    match (last, side) {
        (None, _) => false,
        (Some(last), Side::Buy) => last >= stop,
        (Some(last), Side::Sell) => last <= stop,
    }
}
