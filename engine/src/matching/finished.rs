//! Finished-order status: order status values, and each user's window of recently finished
//! orders (docs/matching.md, "Order status").
//!
//! An order *finishes* with the event that takes its open quantity to zero — the trade that
//! fills it, or the `Cancelled` that ends it — or, for a new order either stage refused, with
//! its `Rejected`. At that event the matching stage writes one [`FinishedOrder`] into the
//! owner's ring of `[engine] finished_orders_per_user` entries (the oldest is overwritten when
//! the ring is full). The rings are one flat array sized at start; a status query for an order
//! that is not live scans its owner's ring newest first, so its cost is at most that many
//! entry comparisons.

use crate::codes::{CancelReason, RejectCode};
use crate::hash::StateHasher;
use crate::types::{ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId, UserId};

/// Order status values (the product map's NEW, PARTIALLY_FILLED, FILLED, CANCELLED,
/// REJECTED, EXPIRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Live, nothing filled yet.
    New,
    /// Live, partly filled.
    PartiallyFilled,
    /// Finished: filled completely.
    Filled,
    /// Finished: cancelled (by its owner, or by a rule: IOC remainder, FOK, self-trade
    /// prevention, post-only, disconnect), with why.
    Cancelled(CancelReason),
    /// Finished: expired (a `Cancelled` with reason `EXPIRED`).
    Expired,
    /// Finished: refused when it arrived, with the reject code.
    Rejected(RejectCode),
}

impl OrderStatus {
    /// The status of a live order that has filled `filled` so far.
    #[inline]
    pub fn of_live(filled: Qty) -> OrderStatus {
        if filled.0 == 0 {
            OrderStatus::New
        } else {
            OrderStatus::PartiallyFilled
        }
    }

    /// The status of an order ended by a `Cancelled` with `reason`.
    #[inline]
    pub fn cancelled(reason: CancelReason) -> OrderStatus {
        if reason == CancelReason::Expired {
            OrderStatus::Expired
        } else {
            OrderStatus::Cancelled(reason)
        }
    }

    /// The stable wire number: NEW 1, PARTIALLY_FILLED 2, FILLED 3, CANCELLED 4, REJECTED 5,
    /// EXPIRED 6.
    pub fn code(self) -> u8 {
        match self {
            OrderStatus::New => 1,
            OrderStatus::PartiallyFilled => 2,
            OrderStatus::Filled => 3,
            OrderStatus::Cancelled(_) => 4,
            OrderStatus::Rejected(_) => 5,
            OrderStatus::Expired => 6,
        }
    }

    /// The detail number that goes with [`OrderStatus::code`]: the cancel reason of CANCELLED,
    /// the reject code of REJECTED, 0 otherwise.
    pub fn detail(self) -> u16 {
        match self {
            OrderStatus::Cancelled(r) => u16::from(r as u8),
            OrderStatus::Rejected(c) => c.code(),
            _ => 0,
        }
    }

    /// The status from its wire numbers ([`OrderStatus::code`], [`OrderStatus::detail`]).
    pub fn from_code(code: u8, detail: u16) -> Option<OrderStatus> {
        Some(match (code, detail) {
            (1, 0) => OrderStatus::New,
            (2, 0) => OrderStatus::PartiallyFilled,
            (3, 0) => OrderStatus::Filled,
            (4, d) => OrderStatus::Cancelled(cancel_reason(d)?),
            (5, d) => OrderStatus::Rejected(RejectCode::from_code(d)?),
            (6, 0) => OrderStatus::Expired,
            _ => return None,
        })
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::New => "NEW",
            OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
            OrderStatus::Filled => "FILLED",
            OrderStatus::Cancelled(_) => "CANCELLED",
            OrderStatus::Rejected(_) => "REJECTED",
            OrderStatus::Expired => "EXPIRED",
        }
    }
}

/// The status an `OrderStatus` reply reports: the live order's, else the finished order's,
/// else none (the engine knows no such order).
pub fn status_of(
    order: Option<&crate::book::OrderView>,
    finished: Option<&FinishedOrder>,
) -> Option<OrderStatus> {
    match (order, finished) {
        (Some(o), _) => Some(OrderStatus::of_live(o.filled_qty)),
        (None, Some(f)) => Some(f.status),
        (None, None) => None,
    }
}

/// The cancel reason with wire number `d` (except `EXPIRED`, which is a status of its own).
fn cancel_reason(d: u16) -> Option<CancelReason> {
    Some(match d {
        1 => CancelReason::User,
        2 => CancelReason::Ioc,
        3 => CancelReason::Fok,
        4 => CancelReason::SelfTrade,
        5 => CancelReason::PostOnly,
        7 => CancelReason::Disconnect,
        _ => return None,
    })
}

/// A finished order, as its owner's window remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FinishedOrder {
    /// The owner's client order id.
    pub client_order_id: ClientOrderId,
    /// The engine's order id (0 for a rejected order: it never got one).
    pub order_id: OrderId,
    /// The symbol (as sent, for a rejected order).
    pub symbol: SymbolId,
    /// The side.
    pub side: Side,
    /// The order type.
    pub order_type: OrderType,
    /// FILLED, CANCELLED (with reason), EXPIRED or REJECTED (with code).
    pub status: OrderStatus,
    /// Limit or protection price (its last, after amends).
    pub price: Price,
    /// Quantity filled in all.
    pub filled_qty: Qty,
    /// Notional filled in all, in quote minimal units (Σ trade price × qty × tick size): the
    /// average price in ticks is `filled_notional / (filled_qty × tick_size)`, exactly.
    pub filled_notional: u64,
    /// Engine time of the event that finished it (Unix nanoseconds).
    pub ts: u64,
}

impl FinishedOrder {
    /// An empty ring entry.
    pub(crate) const BLANK: FinishedOrder = FinishedOrder {
        client_order_id: ClientOrderId(0),
        order_id: OrderId(0),
        symbol: SymbolId(0),
        side: Side::Buy,
        order_type: OrderType::Limit,
        status: OrderStatus::New,
        price: Price(0),
        filled_qty: Qty(0),
        filled_notional: 0,
        ts: 0,
    };

    /// Feeds the entry into a state hash (the same in the reference model).
    pub fn hash_into(&self, h: &mut StateHasher) {
        h.u64(self.client_order_id.0);
        h.u64(self.order_id.0);
        h.u64(u64::from(self.symbol.0));
        h.u64(self.side as u64);
        h.u64(self.order_type as u64);
        h.u64(u64::from(self.status.code()));
        h.u64(u64::from(self.status.detail()));
        h.i64(self.price.0);
        h.u64(self.filled_qty.0);
        h.u64(self.filled_notional);
        h.u64(self.ts);
    }
}

/// One ring entry: a [`FinishedOrder`] packed into eight words, exactly one cache line.
///
/// Words: client order id, order id, price, filled quantity, filled notional, engine time,
/// then symbol | side << 32 | order type << 40 | status code << 48, and the status detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Line([u64; 8]);

impl Line {
    #[inline(always)]
    fn pack(f: &FinishedOrder) -> Line {
        Line([
            f.client_order_id.0,
            f.order_id.0,
            f.price.0 as u64,
            f.filled_qty.0,
            f.filled_notional,
            f.ts,
            u64::from(f.symbol.0)
                | (f.side as u64) << 32
                | (f.order_type as u64) << 40
                | (u64::from(f.status.code())) << 48,
            u64::from(f.status.detail()),
        ])
    }

    /// The entry back. Only [`Line::pack`] writes lines, so every byte decodes.
    #[inline]
    fn unpack(&self) -> FinishedOrder {
        let w = &self.0;
        let tags = w[6];
        FinishedOrder {
            client_order_id: ClientOrderId(w[0]),
            order_id: OrderId(w[1]),
            symbol: SymbolId(tags as u16),
            side: Side::from_u8((tags >> 32) as u8).expect("packed by Line::pack"),
            order_type: OrderType::from_u8((tags >> 40) as u8).expect("packed by Line::pack"),
            status: OrderStatus::from_code((tags >> 48) as u8, w[7] as u16)
                .expect("packed by Line::pack"),
            price: Price(w[2] as i64),
            filled_qty: Qty(w[3]),
            filled_notional: w[4],
            ts: w[5],
        }
    }

    /// Overwrites `self` with `line` by streaming (non-temporal) stores on x86-64: the ring
    /// is written at every finish and read only by status queries and snapshots, so its lines
    /// go straight to memory instead of displacing the book's working set from the caches,
    /// and a store never waits for the line to be fetched first (docs/matching.md, "Order
    /// status"). This thread's later loads see the stores; another thread reads the rings
    /// only after a hand-off that orders them (a locked instruction or `mfence`, as every
    /// std channel, lock and thread join has).
    #[inline(always)]
    fn stream(&mut self, line: Line) {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        // SAFETY: `self` is a live, exclusively borrowed, 64-byte-aligned `Line`, so each of
        // the four 16-byte stores writes aligned memory inside it; `line` is a local of the
        // same size read by unaligned loads. SSE2 is part of the x86-64 baseline.
        unsafe {
            use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
            let dst = (self as *mut Line).cast::<__m128i>();
            let src = (&line as *const Line).cast::<__m128i>();
            for k in 0..4 {
                _mm_stream_si128(dst.add(k), _mm_loadu_si128(src.add(k)));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            *self = line;
        }
    }
}

/// Every user's ring of recently finished orders: one flat array of `users × per_user`
/// one-line entries plus a length and a write position per user, all allocated at start.
#[derive(Debug)]
pub(crate) struct FinishedWindow {
    per_user: usize,
    entries: Vec<Line>,
    /// Per user: (entries held, index of the next write).
    heads: Vec<(u8, u8)>,
}

impl FinishedWindow {
    /// The heap bytes [`FinishedWindow::new`] allocates (`crate::memory`).
    pub(crate) fn bytes_for(users: usize, per_user: usize) -> u64 {
        (users * per_user * std::mem::size_of::<Line>() + users * std::mem::size_of::<(u8, u8)>())
            as u64
    }

    /// Rings of `per_user` (at most 255) entries for `users` users.
    pub(crate) fn new(users: usize, per_user: usize) -> FinishedWindow {
        assert!(per_user <= u8::MAX as usize);
        FinishedWindow {
            per_user,
            entries: vec![Line::pack(&FinishedOrder::BLANK); users * per_user],
            heads: vec![(0, 0); users],
        }
    }

    /// Entries each user's ring holds.
    pub(crate) fn per_user(&self) -> usize {
        self.per_user
    }

    /// Remembers `f` as `user`'s newest finished order (dropping the oldest if the ring is
    /// full). A no-op for a user id out of range or a window of size 0.
    #[inline(always)]
    pub(crate) fn push(&mut self, user: UserId, f: FinishedOrder) {
        let n = self.per_user;
        let Some(head) = self.heads.get_mut(user.0 as usize) else {
            return;
        };
        if n == 0 {
            return;
        }
        let (len, next) = *head;
        self.entries[user.0 as usize * n + next as usize].stream(Line::pack(&f));
        let next = if next as usize + 1 == n { 0 } else { next + 1 };
        *head = ((len as usize + 1).min(n) as u8, next);
    }

    /// `user`'s ring entries, newest first.
    fn lines_newest_first(&self, user: UserId) -> impl Iterator<Item = &Line> {
        let n = self.per_user;
        let (len, next) = self.heads.get(user.0 as usize).copied().unwrap_or((0, 0));
        let base = user.0 as usize * n;
        (1..=len as usize).map(move |k| &self.entries[base + (next as usize + n - k) % n])
    }

    /// `user`'s newest finished order with this client order id.
    #[inline]
    pub(crate) fn find(&self, user: UserId, coid: ClientOrderId) -> Option<FinishedOrder> {
        self.lines_newest_first(user)
            .find(|l| l.0[0] == coid.0)
            .map(Line::unpack)
    }

    /// `user`'s finished order with this engine order id (ids are never reused).
    #[inline]
    pub(crate) fn find_by_id(&self, user: UserId, order_id: OrderId) -> Option<FinishedOrder> {
        self.lines_newest_first(user)
            .find(|l| l.0[1] == order_id.0)
            .map(Line::unpack)
    }

    /// `user`'s finished orders, oldest first.
    pub(crate) fn oldest_first(&self, user: UserId) -> impl Iterator<Item = FinishedOrder> + '_ {
        let n = self.per_user;
        let (len, next) = self.heads.get(user.0 as usize).copied().unwrap_or((0, 0));
        let base = user.0 as usize * n;
        (1..=len as usize)
            .rev()
            .map(move |k| self.entries[base + (next as usize + n - k) % n].unpack())
    }

    /// Each user that has finished orders, in user id order.
    pub(crate) fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        (0..self.heads.len())
            .filter(|&u| self.heads[u].0 != 0)
            .map(|u| UserId(u as u32))
    }

    /// Feeds every ring into a state hash: each user that has entries, in id order, its count
    /// and its entries oldest first (the reference model hashes the same).
    pub(crate) fn hash_into(&self, h: &mut StateHasher) {
        h.u64(0xf1_0000);
        for user in self.users() {
            h.u64(u64::from(user.0));
            let mut count = 0u64;
            for e in self.oldest_first(user) {
                e.hash_into(h);
                count += 1;
            }
            h.u64(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(coid: u64, status: OrderStatus) -> FinishedOrder {
        FinishedOrder {
            client_order_id: ClientOrderId(coid),
            status,
            ..FinishedOrder::BLANK
        }
    }

    #[test]
    fn a_ring_keeps_the_newest_entries_and_finds_the_newest_match() {
        let mut w = FinishedWindow::new(3, 2);
        let (u, v) = (UserId(1), UserId(2));
        w.push(u, entry(1, OrderStatus::Filled));
        w.push(
            u,
            entry(2, OrderStatus::Rejected(RejectCode::InsufficientFunds)),
        );
        assert_eq!(
            w.find(u, ClientOrderId(1)).unwrap().status,
            OrderStatus::Filled
        );
        assert_eq!(w.find(v, ClientOrderId(1)), None, "another user's ring");
        // A third entry overwrites the oldest.
        w.push(u, entry(2, OrderStatus::cancelled(CancelReason::User)));
        assert_eq!(w.find(u, ClientOrderId(1)), None);
        assert_eq!(
            w.find(u, ClientOrderId(2)).unwrap().status,
            OrderStatus::Cancelled(CancelReason::User),
            "the newest of two entries with one id"
        );
        let oldest: Vec<u64> = w.oldest_first(u).map(|f| f.client_order_id.0).collect();
        assert_eq!(oldest, [2, 2]);
        assert_eq!(w.users().collect::<Vec<_>>(), [u]);
        // Out of range and size 0: nothing kept, nothing found.
        w.push(UserId(9), entry(7, OrderStatus::Filled));
        assert_eq!(w.find(UserId(9), ClientOrderId(7)), None);
        let mut none = FinishedWindow::new(3, 0);
        none.push(u, entry(1, OrderStatus::Filled));
        assert_eq!(none.find(u, ClientOrderId(1)), None);
        assert_eq!(none.users().count(), 0);
    }

    #[test]
    fn a_ring_line_packs_every_field_and_unpacks_it_unchanged() {
        let statuses = [
            OrderStatus::New,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Cancelled(CancelReason::Disconnect),
            OrderStatus::Expired,
            OrderStatus::Rejected(RejectCode::OrderPoolFull),
        ];
        for (k, status) in statuses.into_iter().enumerate() {
            let f = FinishedOrder {
                client_order_id: ClientOrderId(u64::MAX - k as u64),
                order_id: OrderId((1 << 53) + k as u64),
                symbol: SymbolId(u16::MAX - k as u16),
                side: if k % 2 == 0 { Side::Buy } else { Side::Sell },
                order_type: OrderType::ALL[k % OrderType::ALL.len()],
                status,
                price: Price(if k % 2 == 0 { i64::MAX } else { -7 }),
                filled_qty: Qty(u64::MAX),
                filled_notional: u64::MAX - 1,
                ts: 1_767_225_600_000_000_000 + k as u64,
            };
            let line = Line::pack(&f);
            assert_eq!(std::mem::size_of_val(&line), 64);
            assert_eq!(line.unpack(), f);
            // Written by streaming stores, read back by this thread.
            let mut w = FinishedWindow::new(2, 3);
            w.push(UserId(1), f);
            assert_eq!(w.oldest_first(UserId(1)).collect::<Vec<_>>(), [f]);
            assert_eq!(w.find_by_id(UserId(1), f.order_id), Some(f));
        }
    }

    #[test]
    fn status_wire_numbers_round_trip() {
        let all = [
            OrderStatus::New,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Cancelled(CancelReason::SelfTrade),
            OrderStatus::Expired,
            OrderStatus::Rejected(RejectCode::UnknownSymbol),
        ];
        for s in all {
            assert_eq!(OrderStatus::from_code(s.code(), s.detail()), Some(s));
        }
        assert_eq!(
            OrderStatus::cancelled(CancelReason::Expired),
            OrderStatus::Expired
        );
        assert_eq!(
            OrderStatus::from_code(4, 6),
            None,
            "EXPIRED is its own status"
        );
        assert_eq!(OrderStatus::from_code(7, 0), None);
    }
}
