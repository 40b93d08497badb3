//! The order pool: every live order in one pre-allocated array, addressed by `u32` slot.
//!
//! The matching stage picks the slot of a new order from its order id (`id mod capacity`, see
//! docs/matching.md, "Order ids"), so an order id names its slot and a lookup by id is an array
//! index. Free slots are kept in a [`LevelBitmap`], so a busy slot is skipped to the next free
//! one in O(log64 capacity), and allocation and release never touch the heap after
//! construction. Live orders are threaded on two intrusive
//! doubly-linked lists: their price level's FIFO (`prev`/`next`) and their owner's list of live
//! orders (`user_prev`/`user_next`, for mass cancel).

use crate::book::bitmap::LevelBitmap;
use crate::types::{
    ClientOrderId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId, TimeInForce, UserId,
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

    /// The order's quantity as an event field.
    #[inline]
    pub fn leaves_qty(&self) -> Qty {
        Qty(self.leaves)
    }
}

/// A fixed-capacity slab of orders.
#[derive(Debug)]
pub struct OrderPool {
    slots: Vec<Order>,
    /// A set bit marks a free slot.
    free: LevelBitmap,
    live: u32,
}

impl OrderPool {
    /// A pool with room for `capacity` live orders. Every slot is written (and so faulted in)
    /// here, not on the hot path.
    pub fn new(capacity: u32) -> OrderPool {
        let slots = vec![Order::EMPTY; capacity as usize];
        let mut free = LevelBitmap::new((capacity as usize).max(1));
        for i in 0..capacity as usize {
            free.set(i);
        }
        OrderPool {
            slots,
            free,
            live: 0,
        }
    }

    /// True if `slot` holds no live order.
    #[inline]
    pub fn is_free(&self, slot: u32) -> bool {
        self.free.get(slot as usize)
    }

    /// The first free slot at or after `from`, wrapping around past the end; `None` when the
    /// pool is full. `from` must be below the capacity.
    #[inline]
    pub fn free_from(&self, from: u32) -> Option<u32> {
        if self.is_free(from) {
            return Some(from);
        }
        self.free
            .next_at_or_above(from as usize)
            .or_else(|| self.free.first())
            .filter(|&i| i < self.slots.len())
            .map(|i| i as u32)
    }

    /// Puts `order` into the free slot `slot`.
    #[inline]
    pub fn alloc_at(&mut self, slot: u32, order: Order) {
        debug_assert!(self.is_free(slot), "slot {slot} is taken");
        self.free.clear(slot as usize);
        self.slots[slot as usize] = order;
        self.live += 1;
    }

    /// Puts `order` into the lowest free slot; `None` when the pool is full.
    #[inline]
    pub fn alloc(&mut self, order: Order) -> Option<u32> {
        let slot = self.free_from(0)?;
        self.alloc_at(slot, order);
        Some(slot)
    }

    /// Releases a slot.
    #[inline]
    pub fn free(&mut self, slot: u32) {
        debug_assert!(self.live > 0 && !self.is_free(slot));
        let o = &mut self.slots[slot as usize];
        o.leaves = 0;
        o.visible = 0;
        self.free.set(slot as usize);
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

// The pool's memory budget (docs/configuration.md) assumes this size; keep hot fields together.
const _: () = assert!(std::mem::size_of::<Order>() == 96);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_until_full_then_reuse() {
        let mut pool = OrderPool::new(3);
        assert_eq!(pool.free_from(1), Some(1));
        pool.alloc_at(1, OrderPool::blank());
        // Busy slots are skipped, wrapping around.
        assert_eq!(pool.free_from(1), Some(2));
        pool.alloc_at(2, OrderPool::blank());
        assert_eq!(pool.free_from(1), Some(0));
        assert_eq!(pool.free_from(2), Some(0));
        pool.alloc_at(0, OrderPool::blank());
        assert_eq!(pool.free_from(0), None);
        assert_eq!(pool.live(), 3);
        pool.free(2);
        assert!(pool.is_free(2) && !pool.is_free(1));
        assert_eq!(pool.free_from(0), Some(2));
        assert_eq!(pool.live(), 2);
        // A pool of 200 (a bitmap of two layers): the skip crosses words.
        let mut pool = OrderPool::new(200);
        for slot in 60..200 {
            pool.alloc_at(slot, OrderPool::blank());
        }
        assert_eq!(pool.free_from(70), Some(0));
        pool.free(130);
        assert_eq!(pool.free_from(70), Some(130));
        assert_eq!(OrderPool::new(0).free_from(0), None);
    }
}
