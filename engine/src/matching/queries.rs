//! Queries: the answers to query commands (order status, open orders, book depth) and the
//! read-only accessors the engine, snapshots and market data use, including the state hash.

use crate::book::levels::SideLevels;
use crate::book::pool::NIL;
use crate::book::{BookSection, OrderView};
use crate::codes::RejectCode;
use crate::command::Query;
use crate::event::{Event, EventSink};
use crate::hash::{StateHash, StateHasher};
use crate::types::{ClientOrderId, OrderId, Price, Qty, Side, SymbolId, TradeId, UserId};

use super::{reject, FinishedOrder, Matcher};

/// The `OrderStatus` reply of a status query: `(live order, finished order, filled notional)`
/// as [`Matcher::order_status`] answers; the client order id asked about, or for a query by
/// engine id (`None`) the found order's (0 when none).
pub(crate) fn status_event(
    user: UserId,
    client_order_id: Option<ClientOrderId>,
    (order, finished, filled_notional): (Option<OrderView>, Option<FinishedOrder>, u64),
) -> Event {
    let client_order_id = client_order_id
        .or(order.map(|o| o.client_order_id))
        .or(finished.map(|f| f.client_order_id))
        .unwrap_or(ClientOrderId(0));
    Event::OrderStatus {
        user,
        client_order_id,
        order,
        finished,
        filled_notional,
    }
}

impl Matcher {
    /// Answers a query about the book (order status, open orders, depth) with its reply events.
    /// Balances belong to the accounts: with risk on the engine's settlement stage answers
    /// them; the book alone answers nothing for them.
    pub fn answer<S: EventSink + ?Sized>(&self, q: &Query, sink: &mut S) {
        match *q {
            Query::Order {
                user,
                client_order_id,
            } => sink.on_event(&status_event(
                user,
                Some(client_order_id),
                self.order_status(user, client_order_id),
            )),
            Query::OrderById { user, order_id } => sink.on_event(&status_event(
                user,
                None,
                self.order_status_by_id(user, order_id),
            )),
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
            .by_client_id(user, coid)
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
        if let Some(slot) = self.store.by_client_id(user, coid) {
            let notional = self.store.notional[slot as usize];
            return (Some(self.store.view(slot)), None, notional);
        }
        match self.store.finished.find(user, coid) {
            Some(f) => (None, Some(f), f.filled_notional),
            None => (None, None, 0),
        }
    }

    /// [`Matcher::order_status`] by engine order id: `user`'s live order with this id, or else
    /// its newest finished order with it (a scan of the user's window); another user's order
    /// is neither.
    pub fn order_status_by_id(
        &self,
        user: UserId,
        order_id: OrderId,
    ) -> (Option<OrderView>, Option<FinishedOrder>, u64) {
        // Id 0 names no order (a rejected new order's window entry carries it).
        if user.0 as usize >= self.store.users.len() || order_id.0 == 0 {
            return (None, None, 0);
        }
        if let Some(slot) = self.store.slot_of(order_id) {
            if self.store.pool[slot].user == user {
                let notional = self.store.notional[slot as usize];
                return (Some(self.store.view(slot)), None, notional);
            }
            return (None, None, 0);
        }
        match self.store.finished.find_by_id(user, order_id) {
            Some(f) => (None, Some(f), f.filled_notional),
            None => (None, None, 0),
        }
    }

    /// The live order with engine id `order_id`, whoever owns it: the id names its pool slot
    /// (`order_id mod order_id_modulus`), so this is an array index and a comparison.
    pub fn order_by_id(&self, order_id: OrderId) -> Option<OrderView> {
        self.store
            .slot_of(order_id)
            .map(|slot| self.store.view(slot))
    }

    /// Every live order of a symbol, section by section in canonical order (bids best first,
    /// asks best first, buy stops in trigger order, sell stops in trigger order), FIFO within a
    /// level. An unknown symbol has none.
    pub fn for_each_order(&self, symbol: SymbolId, mut f: impl FnMut(BookSection, &OrderView)) {
        let Some(book) = self.books.get(symbol.0 as usize) else {
            return;
        };
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

    /// Level-2 depth of one side: `(price, visible qty)` best first, at most `levels_max`. An
    /// unknown symbol has no levels (`f` is not called).
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        mut f: impl FnMut(Price, Qty),
    ) {
        let Some(book) = self.books.get(symbol.0 as usize) else {
            return;
        };
        let levels: &SideLevels = match side {
            Side::Buy => &book.bids,
            Side::Sell => &book.asks,
        };
        for (idx, level) in levels.iter().take(levels_max) {
            f(book.price(idx), Qty(level.visible));
        }
    }

    /// Best bid `(price, visible qty)`; `None` for an empty side or an unknown symbol.
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let book = self.books.get(symbol.0 as usize)?;
        book.bids
            .best()
            .map(|i| (book.price(i), Qty(book.bids.level(i).visible)))
    }

    /// Best ask `(price, visible qty)`; `None` for an empty side or an unknown symbol.
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let book = self.books.get(symbol.0 as usize)?;
        book.asks
            .best()
            .map(|i| (book.price(i), Qty(book.asks.level(i).visible)))
    }

    /// Price of the symbol's last trade (`None` before its first, or for an unknown symbol).
    pub fn last_trade_price(&self, symbol: SymbolId) -> Option<Price> {
        self.books.get(symbol.0 as usize)?.last_price
    }

    /// Id of the symbol's last trade (0 before its first, and for an unknown symbol): the next
    /// trade gets one more.
    pub fn last_trade_id(&self, symbol: SymbolId) -> TradeId {
        TradeId(
            self.books
                .get(symbol.0 as usize)
                .map_or(0, |b| b.last_trade_id),
        )
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
    pub(crate) fn hash_into(&self, h: &mut StateHasher) {
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::matching::Matcher;
    use crate::types::{ClientOrderId, Side, SymbolId, UserId};

    /// One convention for lookups by an id the config does not know: they answer nothing
    /// (`None`, no callback, 0) and never panic, like `order` for an unknown user.
    #[test]
    fn unknown_symbol_answers_nothing() {
        let config = Config::default();
        let m = Matcher::new(&config);
        let unknown = SymbolId(config.symbols.len() as u16);
        assert_eq!(m.best_bid(unknown), None);
        assert_eq!(m.best_ask(unknown), None);
        assert_eq!(m.last_trade_price(unknown), None);
        assert_eq!(m.last_trade_id(unknown).0, 0);
        let mut calls = 0;
        m.depth(unknown, Side::Buy, 10, |_, _| calls += 1);
        m.depth(unknown, Side::Sell, 10, |_, _| calls += 1);
        m.for_each_order(unknown, |_, _| calls += 1);
        assert_eq!(calls, 0);
        assert_eq!(m.order(UserId(u32::MAX), ClientOrderId(1)), None);
    }
}
