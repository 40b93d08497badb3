//! The client-order-id index: `(user, client order id) → pool slot` for live orders.
//!
//! Client order ids are chosen by clients, so an array index cannot serve; this is an
//! open-addressing hash table with linear probing and backward-shift deletion (no tombstones),
//! sized at construction to a power of two at least twice the order pool, so its load factor
//! stays at or below one half and it never grows.
//!
//! Each entry is 8 bytes: the pool slot and a 32-bit tag, the high half of the key's 64-bit
//! hash. The entry's home bucket is `tag & mask`, so deletion can find homes without touching
//! the orders, and a lookup compares tags first and confirms a match against the order in the
//! pool — the slot a cancel or amend reads next anyway. Keeping entries small matters more than
//! anything else here: the table is spread over `2 × orders_max` buckets, and on a large pool
//! each lookup is a cache miss (docs/benchmarks.md). The hash is a fixed multiply-xorshift mix,
//! so the table behaves identically run to run.

use super::pool::{OrderPool, NIL};
use crate::types::{ClientOrderId, UserId};

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// High 32 bits of the key's hash; its low bits are the home bucket.
    tag: u32,
    /// `NIL` marks an empty entry.
    slot: u32,
}

const EMPTY: Entry = Entry { tag: 0, slot: NIL };

/// Bytes of an index entry, as docs/architecture.md and docs/configuration.md state (the test
/// `memory_sizes_are_the_ones_the_docs_state` in `book/mod.rs` holds the documents to it).
pub(crate) const ENTRY_BYTES: usize = 8;
const _: () = assert!(std::mem::size_of::<Entry>() == ENTRY_BYTES);
// Homes come from the 32-bit tag, so the table may have at most 2^32 buckets.
const _: () = assert!((crate::config::ORDERS_MAX as u64) * 2 <= 1 << 32);

/// A fixed-capacity map from `(user, client order id)` to pool slot.
#[derive(Debug)]
pub struct ClientOrderIndex {
    entries: Vec<Entry>,
    mask: usize,
}

#[inline]
fn tag(user: UserId, coid: ClientOrderId) -> u32 {
    let mut h = coid.0 ^ u64::from(user.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    (h >> 32) as u32
}

#[inline]
fn is(pool: &OrderPool, slot: u32, user: UserId, coid: ClientOrderId) -> bool {
    let o = &pool[slot];
    o.user == user && o.client_order_id == coid
}

impl ClientOrderIndex {
    /// Room for `orders_max` keys at a load factor of at most one half.
    pub fn new(orders_max: u32) -> ClientOrderIndex {
        let size = (orders_max as usize * 2).next_power_of_two().max(16);
        ClientOrderIndex {
            entries: vec![EMPTY; size],
            mask: size - 1,
        }
    }

    /// The bucket of the live order `(user, coid)`, if indexed.
    #[inline]
    fn find(&self, user: UserId, coid: ClientOrderId, pool: &OrderPool) -> Option<usize> {
        let t = tag(user, coid);
        let mut i = t as usize & self.mask;
        loop {
            let e = self.entries[i];
            if e.slot == NIL {
                return None;
            }
            if e.tag == t && is(pool, e.slot, user, coid) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The slot of a live order.
    #[inline]
    pub fn get(&self, user: UserId, coid: ClientOrderId, pool: &OrderPool) -> Option<u32> {
        self.find(user, coid, pool).map(|i| self.entries[i].slot)
    }

    /// Indexes `slot`, whose order in the pool has this key and is not yet indexed.
    #[inline]
    pub fn insert(&mut self, user: UserId, coid: ClientOrderId, slot: u32) {
        let t = tag(user, coid);
        let mut i = t as usize & self.mask;
        while self.entries[i].slot != NIL {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = Entry { tag: t, slot };
    }

    /// Removes the key of a live, indexed order (call before its slot is reused).
    #[inline]
    pub fn remove(&mut self, user: UserId, coid: ClientOrderId, pool: &OrderPool) {
        let i = self
            .find(user, coid, pool)
            .expect("removing a key that is not in the index");
        // Backward-shift deletion: pull later entries of the probe run into the hole when their
        // home allows it, so lookups never need tombstones.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let e = self.entries[j];
            if e.slot == NIL {
                break;
            }
            let home = e.tag as usize & self.mask;
            // Move `e` into the hole unless its home lies cyclically within (hole, j].
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.entries[hole] = e;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.entries[hole] = EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn matches_a_hashmap(ops in prop::collection::vec((0u8..3, 0u32..4, 0u64..40), 1..400)) {
            let mut pool = OrderPool::new(32);
            let mut idx = ClientOrderIndex::new(32);
            let mut model: HashMap<(u32, u64), u32> = HashMap::new();
            for (op, user, coid) in ops {
                let (u, c) = (UserId(user), ClientOrderId(coid));
                match op {
                    0 if !model.contains_key(&(user, coid)) && model.len() < 32 => {
                        let slot = pool.alloc(crate::book::pool::Order { user: u, client_order_id: c, ..OrderPool::blank() }).unwrap();
                        idx.insert(u, c, slot);
                        model.insert((user, coid), slot);
                    }
                    1 if model.contains_key(&(user, coid)) => {
                        idx.remove(u, c, &pool);
                        pool.free(model.remove(&(user, coid)).unwrap());
                    }
                    _ => {}
                }
                for (&(mu, mc), &slot) in &model {
                    prop_assert_eq!(idx.get(UserId(mu), ClientOrderId(mc), &pool), Some(slot));
                }
                prop_assert_eq!(idx.get(u, c, &pool), model.get(&(user, coid)).copied());
            }
        }
    }

    #[test]
    fn colliding_homes_survive_deletion() {
        // A tiny table (16 buckets) with 8 keys forces long shared probe runs.
        let mut pool = OrderPool::new(8);
        let mut idx = ClientOrderIndex::new(8);
        let keys: Vec<_> = (0..8).map(|c| (UserId(1), ClientOrderId(c * 16))).collect();
        let slots: Vec<_> = keys
            .iter()
            .map(|&(u, c)| {
                let s = pool
                    .alloc(crate::book::pool::Order {
                        user: u,
                        client_order_id: c,
                        ..OrderPool::blank()
                    })
                    .unwrap();
                idx.insert(u, c, s);
                s
            })
            .collect();
        for (k, &(u, c)) in keys.iter().enumerate().step_by(2) {
            idx.remove(u, c, &pool);
            pool.free(slots[k]);
        }
        for (k, &(u, c)) in keys.iter().enumerate() {
            let expect = (k % 2 == 1).then_some(slots[k]);
            assert_eq!(idx.get(u, c, &pool), expect);
        }
    }
}
