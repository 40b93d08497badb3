//! Snapshot support ([`crate::snapshot`]): walking the matching state in canonical order and
//! rebuilding it from validated parts.

use crate::book::pool::{Order, NIL};
use crate::book::{BookSection, OrderView};
use crate::config::Config;
use crate::types::{OrderId, Price, UserId};

use super::{FinishedOrder, Matcher};

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
            entries.extend(self.store.finished.oldest_first(user));
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
            // Validated: the orders fit in the pool and no two ids share a slot.
            let order = orders[i as usize].1;
            assert!(order.id.0 != 0 && m.store.pool.is_free(m.store.pool.slot_of(order.id)));
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
