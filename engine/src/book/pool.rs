//! The order pool: every live order in one pre-allocated array, addressed by `u32` slot.
//!
//! Free slots form a singly-linked free list through `next`, so allocation and release are O(1)
//! and never touch the heap after construction. Live orders are threaded on two intrusive
//! doubly-linked lists: their price level's FIFO (`prev`/`next`) and their owner's list of live
//! orders (`user_prev`/`user_next`, for mass cancel).

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
    /// Next order in the level FIFO, or the next free slot while free (or `NIL`).
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
    /// Engine id.
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

/// A fixed-capacity slab of orders.
#[derive(Debug)]
pub struct OrderPool {
    slots: Vec<Order>,
    free_head: u32,
    live: u32,
}

impl OrderPool {
    /// A pool with room for `capacity` live orders. Every slot is written (and so faulted in)
    /// here, not on the hot path.
    pub fn new(capacity: u32) -> OrderPool {
        let mut slots = vec![Order::EMPTY; capacity as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.next = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        OrderPool {
            slots,
            free_head: if capacity > 0 { 0 } else { NIL },
            live: 0,
        }
    }

    /// Takes a free slot, or `None` when the pool is full.
    #[inline]
    pub fn alloc(&mut self, order: Order) -> Option<u32> {
        let slot = self.free_head;
        if slot == NIL {
            return None;
        }
        self.free_head = self.slots[slot as usize].next;
        self.slots[slot as usize] = order;
        self.live += 1;
        Some(slot)
    }

    /// Returns a slot to the free list.
    #[inline]
    pub fn free(&mut self, slot: u32) {
        debug_assert!(self.live > 0);
        let o = &mut self.slots[slot as usize];
        o.leaves = 0;
        o.visible = 0;
        o.next = self.free_head;
        self.free_head = slot;
        self.live -= 1;
    }

    /// Live orders.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// Capacity.
    pub fn capacity(&self) -> u32 {
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

/// Bytes of a pool slot: the pool's memory budget, as docs/architecture.md and
/// docs/configuration.md state it (the test `memory_sizes_are_the_ones_the_docs_state` in
/// `book/mod.rs` holds the documents to it). Keep hot fields together.
pub(crate) const ORDER_BYTES: usize = 96;
const _: () = assert!(std::mem::size_of::<Order>() == ORDER_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_until_full_then_reuse() {
        let mut pool = OrderPool::new(3);
        let a = pool.alloc(OrderPool::blank()).unwrap();
        let b = pool.alloc(OrderPool::blank()).unwrap();
        let c = pool.alloc(OrderPool::blank()).unwrap();
        assert_eq!(pool.alloc(OrderPool::blank()), None);
        assert_eq!(pool.live(), 3);
        pool.free(b);
        assert_eq!(pool.alloc(OrderPool::blank()), Some(b));
        assert!(a != c);
        assert_eq!(OrderPool::new(0).alloc(OrderPool::blank()), None);
    }
}
