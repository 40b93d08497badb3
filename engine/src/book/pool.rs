//! The order pool: every live order in one pre-allocated array, addressed by `u32` slot.
//!
//! The pool has `next_pow2(orders_max)` slots and an order's id names its slot: slot
//! `id mod slots` (docs/matching.md, "Order ids": no two live orders share it). So finding an
//! order by id is one index, and a free slot is one whose id is 0. A two-level bitmap of free
//! slots gives the lowest free one, where the next order goes; freeing is O(1);
//! nothing touches the heap after construction. Live orders are
//! threaded on two intrusive doubly-linked lists: their price level's FIFO (`prev`/`next`) and
//! their owner's list of live orders (`user_prev`/`user_next`, for mass cancel).

use crate::types::{
    ClientOrderId, OrderId, OrderType, Price, Side, StpMode, SymbolId, TimeInForce, UserId,
};

/// The null slot index.
pub const NIL: u32 = u32::MAX;

/// A live order. Hot matching fields first.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    /// Previous order in the level FIFO (or `NIL`).
    pub prev: u32,
    /// Next order in the level FIFO (or `NIL`).
    pub next: u32,
    /// Open quantity: visible plus hidden.
    pub leaves: u64,
    /// Displayed quantity: equals `leaves` except for icebergs.
    pub visible: u64,
    /// The owner.
    pub user: UserId,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Buy or sell.
    pub side: Side,
    /// Order type as placed (stops keep their stop type after triggering).
    pub order_type: OrderType,
    /// Time in force.
    pub tif: TimeInForce,
    /// The symbol.
    pub symbol: SymbolId,
    /// Post-only instruction.
    pub post_only: bool,
    /// True while the order waits in the stop book.
    pub in_stop_book: bool,
    /// Limit or protection price.
    pub price: Price,
    /// Engine id; 0 while the slot is free.
    pub id: OrderId,
    /// The owner's id.
    pub client_order_id: ClientOrderId,
    /// Quantity filled so far.
    pub filled: u64,
    /// Iceberg display quantity (0: not an iceberg).
    pub display: u64,
    /// Stop trigger price (0 for non-stop orders).
    pub stop_price: Price,
    /// Previous order of the same user.
    pub user_prev: u32,
    /// Next order of the same user.
    pub user_next: u32,
    /// Next order in the client-order-id index's bucket chain (`book::index`); it fills what
    /// was padding, so the slot stays 96 bytes.
    pub index_next: u32,
}

impl Order {
    const EMPTY: Order = Order {
        prev: NIL,
        next: NIL,
        leaves: 0,
        visible: 0,
        user: UserId(0),
        stp: StpMode::None,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        symbol: SymbolId(0),
        post_only: false,
        in_stop_book: false,
        price: Price(0),
        id: OrderId(0),
        client_order_id: ClientOrderId(0),
        filled: 0,
        display: 0,
        stop_price: Price(0),
        user_prev: NIL,
        user_next: NIL,
        index_next: NIL,
    };

    /// The visible quantity an iceberg shows after a refill (or any order when it rests).
    #[inline]
    pub fn peak(&self) -> u64 {
        if self.display == 0 {
            self.leaves
        } else {
            self.display.min(self.leaves)
        }
    }
}

/// A fixed-capacity slab of orders, each in the slot its id names.
#[derive(Debug)]
pub struct OrderPool {
    slots: Vec<Order>,
    /// `slots.len() - 1`: a slot count is a power of two.
    mask: u64,
    live: u32,
    capacity: u32,
    /// One bit per slot, set while the slot is free — except slot 0, whose bit is never set
    /// (it comes last in placement order: [`OrderPool::placement_slot`]).
    free: Vec<u64>,
    /// One bit per word of `free`, set while that word has a bit set.
    free_words: Vec<u64>,
}

impl OrderPool {
    /// A pool with room for `capacity` live orders, in `next_pow2(capacity)` slots. Every slot
    /// is written (and so faulted in) here, not on the hot path.
    #[cfg(any(test, feature = "testing"))]
    pub fn new(capacity: u32) -> OrderPool {
        OrderPool::with_huge_pages(capacity, false)
    }

    /// The heap bytes a pool for `capacity` live orders allocates (`crate::memory`).
    pub(crate) fn bytes_for(capacity: u32) -> u64 {
        let n = (capacity as usize).next_power_of_two();
        let words = n.div_ceil(64);
        (n * std::mem::size_of::<Order>() + (words + words.div_ceil(64)) * 8) as u64
    }

    /// [`OrderPool::new`], backed by transparent huge pages where the OS offers them and `huge`
    /// asks for it (`book::huge`).
    pub fn with_huge_pages(capacity: u32, huge: bool) -> OrderPool {
        let n = (capacity as usize).next_power_of_two();
        let words = n.div_ceil(64);
        let mut free = vec![u64::MAX; words];
        if n < 64 {
            free[0] = (1u64 << n) - 1;
        }
        free[0] &= !1;
        let mut free_words = vec![0u64; words.div_ceil(64)];
        for (w, bits) in free.iter().enumerate() {
            if *bits != 0 {
                free_words[w / 64] |= 1 << (w % 64);
            }
        }
        OrderPool {
            slots: crate::book::huge::filled_vec(n, Order::EMPTY, huge),
            mask: n as u64 - 1,
            live: 0,
            capacity,
            free,
            free_words,
        }
    }

    /// The slot the next new order goes to (docs/matching.md, "Order ids"): the lowest free
    /// slot, counting slot 0 last (slots 1, 2, …, then 0), so that new orders reuse the slots
    /// of finished ones and the pool's working set follows the live orders, not the capacity.
    /// The summary words are scanned up to the first with a bit set (one word per 4 096 slots:
    /// the first, while fewer than 4 096 orders are live), then two bit scans find the slot.
    /// `None` only when every slot is taken.
    #[inline]
    pub fn placement_slot(&self) -> Option<u32> {
        for (i, &words) in self.free_words.iter().enumerate() {
            if words != 0 {
                let w = i * 64 + words.trailing_zeros() as usize;
                return Some((w * 64 + self.free[w].trailing_zeros() as usize) as u32);
            }
        }
        self.is_free(0).then_some(0)
    }

    #[inline]
    fn mark_taken(&mut self, slot: u32) {
        if slot == 0 {
            return;
        }
        let w = slot as usize / 64;
        self.free[w] &= !(1u64 << (slot % 64));
        if self.free[w] == 0 {
            self.free_words[w / 64] &= !(1u64 << (w % 64));
        }
    }

    #[inline]
    fn mark_free(&mut self, slot: u32) {
        if slot == 0 {
            return;
        }
        let w = slot as usize / 64;
        self.free[w] |= 1u64 << (slot % 64);
        self.free_words[w / 64] |= 1u64 << (w % 64);
    }

    /// Asks the CPU to start loading `slot`'s cache lines (a 96-byte slot spans one or two
    /// 64-byte lines), so that a command processed soon after finds its order in cache. A hint:
    /// nothing is read or written, any slot index is fine (out of range: nothing happens), and
    /// on targets without a prefetch instruction it does nothing.
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        if let Some(order) = self.slots.get(slot as usize) {
            let first = (order as *const Order).cast::<u8>();
            prefetch_line(first);
            prefetch_line(first.wrapping_add(ORDER_BYTES - 1));
        }
    }

    /// The slot an order id names: `id mod slots`.
    #[inline]
    pub fn slot_of(&self, id: OrderId) -> u32 {
        (id.0 & self.mask) as u32
    }

    /// Whether `slot` holds no live order.
    #[inline]
    pub fn is_free(&self, slot: u32) -> bool {
        self.slots[slot as usize].id.0 == 0
    }

    /// Puts `order` (id non-zero) into its slot, which is free; the pool has room (checked by
    /// the caller against [`OrderPool::capacity`]).
    #[inline]
    pub fn put(&mut self, order: Order) -> u32 {
        debug_assert!(order.id.0 != 0);
        let slot = self.slot_of(order.id);
        *self.claim(slot) = order;
        slot
    }

    /// Takes free `slot` for a new order and hands it to the caller, who writes the whole
    /// order into it, with an id that names `slot`. The pool has room (checked by the caller
    /// against [`OrderPool::capacity`]). Writing the order in place, rather than building it
    /// elsewhere and copying it in, keeps a copy from reading back in wide pieces what was
    /// just written in narrow ones (a store-forwarding stall on the hot add path).
    #[inline]
    pub fn claim(&mut self, slot: u32) -> &mut Order {
        debug_assert!(self.live < self.capacity);
        debug_assert!(self.is_free(slot), "slot {slot} holds a live order");
        self.live += 1;
        self.mark_taken(slot);
        &mut self.slots[slot as usize]
    }

    /// Frees a slot.
    #[inline]
    pub fn free(&mut self, slot: u32) {
        debug_assert!(self.live > 0);
        let o = &mut self.slots[slot as usize];
        o.id = OrderId(0);
        o.leaves = 0;
        o.visible = 0;
        self.live -= 1;
        self.mark_free(slot);
    }

    /// Live orders.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// The most live orders (`orders_max`).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Slots: `capacity` rounded up to a power of two.
    pub fn slots(&self) -> u32 {
        self.slots.len() as u32
    }

    /// A blank order to fill in before `alloc`.
    pub fn blank() -> Order {
        Order::EMPTY
    }
}

impl std::ops::Index<u32> for OrderPool {
    type Output = Order;
    #[inline]
    fn index(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }
}

impl std::ops::IndexMut<u32> for OrderPool {
    #[inline]
    fn index_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}

/// Starts loading the cache line holding `p` into every cache level (`prefetcht0`).
#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch is a hint: it neither reads nor writes memory as the program sees it
    // and never faults, whatever the address. SSE is part of the x86-64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Bytes of a pool slot: the pool's memory budget, as docs/architecture.md and
/// docs/configuration.md state it (the test `memory_sizes_are_the_ones_the_docs_state` in
/// `book/mod.rs` holds the documents to it). Keep hot fields together.
pub(crate) const ORDER_BYTES: usize = 96;
const _: () = assert!(std::mem::size_of::<Order>() == ORDER_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: u64) -> Order {
        Order {
            id: OrderId(id),
            ..OrderPool::blank()
        }
    }

    #[test]
    fn prefetch_takes_any_slot_and_changes_nothing() {
        let mut pool = OrderPool::new(100);
        let slot = pool.put(with_id(129));
        for s in [0, slot, 127, 128, u32::MAX / 2, NIL] {
            pool.prefetch(s);
        }
        assert_eq!(pool.live(), 1);
        assert_eq!(pool[slot].id, OrderId(129));
        assert!(pool.is_free(0) && pool.is_free(127));
    }

    #[test]
    fn an_id_names_its_slot() {
        let mut pool = OrderPool::new(3);
        assert_eq!((pool.capacity(), pool.slots()), (3, 4));
        assert!((0..4).all(|s| pool.is_free(s)));
        assert_eq!(pool.put(with_id(1)), 1);
        assert_eq!(pool.put(with_id(6)), 2);
        assert_eq!(pool.put(with_id(8)), 0);
        assert_eq!(pool.live(), 3);
        assert!(!pool.is_free(2) && pool.is_free(3));
        pool.free(2);
        assert!(pool.is_free(2));
        assert_eq!(pool[2].id, OrderId(0));
        assert_eq!(pool.put(with_id(10)), 2);
        assert_eq!(pool.slot_of(OrderId(13)), 1);
        assert_eq!(OrderPool::new(0).slots(), 1);
    }

    #[test]
    fn new_orders_go_to_the_lowest_free_slot_slot_0_last() {
        // 256 slots: more than one word of the free-slot bitmap.
        let mut pool = OrderPool::new(256);
        let place = |pool: &mut OrderPool, id_base: u64| {
            let slot = pool.placement_slot().expect("room");
            pool.put(with_id(id_base * 256 + u64::from(slot)))
        };
        for expect in 1..=255 {
            assert_eq!(place(&mut pool, 1), expect);
        }
        assert_eq!(place(&mut pool, 1), 0, "slot 0 comes last");
        assert_eq!(pool.placement_slot(), None, "every slot taken");
        for s in [200, 70, 3, 0] {
            pool.free(s);
        }
        // Lowest first, across words; slot 0 only when nothing else is free.
        for expect in [3, 70, 200, 0] {
            assert_eq!(place(&mut pool, 2), expect);
        }
        pool.free(64);
        pool.free(0);
        assert_eq!(pool.placement_slot(), Some(64));
        // A pool smaller than one bitmap word never offers a slot it does not have.
        let mut small = OrderPool::new(4);
        let got: Vec<u32> = (0..4).map(|i| place(&mut small, i + 1)).collect();
        assert_eq!(got, [1, 2, 3, 0]);
        assert_eq!(small.placement_slot(), None);
    }

    /// Takes and frees over a pool of several summary words (16 384 slots: four words of
    /// 4 096), against the definition: the lowest free slot, slot 0 last. Phases fill the pool
    /// past whole summary words (the lowest free slot moves up), free a slot far below it (it
    /// must be placed next), and mix takes and random frees.
    #[test]
    fn placement_follows_the_lowest_free_slot_across_summary_words() {
        let mut pool = OrderPool::new(16_384);
        let n = pool.slots();
        let lowest = |pool: &OrderPool| {
            (1..n)
                .find(|&s| pool.is_free(s))
                .or_else(|| pool.is_free(0).then_some(0))
        };
        let mut live: Vec<u32> = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (rng >> 33) % bound
        };
        let mut id = 0u64;
        let mut take = |pool: &mut OrderPool, live: &mut Vec<u32>| {
            let slot = pool.placement_slot().expect("room");
            assert_eq!(Some(slot), lowest(pool));
            id += 1;
            pool.put(with_id(id * u64::from(n) + u64::from(slot)));
            live.push(slot);
        };
        for round in 0..3 {
            // Fill up to 10 000 live: the start passes two full summary words.
            while live.len() < 10_000 {
                take(&mut pool, &mut live);
            }
            // Free one low slot (in the first summary word): it must be placed next.
            let k = live
                .iter()
                .position(|&s| s < 4_096 && s != 0)
                .expect("a low slot");
            let low = live.swap_remove(k);
            pool.free(low);
            assert_eq!(pool.placement_slot(), Some(low), "round {round}");
            take(&mut pool, &mut live);
            // Mixed: random frees and takes, drifting down to 2 000 live.
            while live.len() > 2_000 {
                if next(100) < 35 {
                    take(&mut pool, &mut live);
                } else {
                    let k = next(live.len() as u64) as usize;
                    pool.free(live.swap_remove(k));
                    assert_eq!(pool.placement_slot(), lowest(&pool), "round {round}");
                }
            }
        }
        // Every slot, then slot 0 last.
        while live.len() < n as usize {
            take(&mut pool, &mut live);
        }
        assert_eq!(pool.placement_slot(), None);
    }

    /// Past 262 144 slots (a whole word of summary words): placement goes on in order, and a slot
    /// freed far below comes first again.
    #[test]
    fn placement_goes_on_past_262_144_slots() {
        let mut pool = OrderPool::new(600_000);
        assert_eq!(pool.slots(), 1 << 20);
        let n = u64::from(pool.slots());
        let mut id = 0u64;
        let mut place = |pool: &mut OrderPool| {
            let slot = pool.placement_slot().expect("room");
            id += 1;
            pool.put(with_id(id * n + u64::from(slot)))
        };
        for expect in 1..=300_000 {
            assert_eq!(place(&mut pool), expect);
        }
        for s in [270_000, 100, 299_999] {
            pool.free(s);
        }
        for expect in [100, 270_000, 299_999, 300_001] {
            assert_eq!(place(&mut pool), expect);
        }
    }
}
