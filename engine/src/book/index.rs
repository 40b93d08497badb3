//! The client-order-id index: `(user, client order id) → pool slot` for live orders.
//!
//! Client order ids are chosen by clients, so an array index cannot serve; this is an
//! open-addressing hash table with linear probing and backward-shift deletion (no tombstones),
//! sized at construction to a power of two at least twice the order pool, so its load factor
//! stays at or below one half and it never grows. The hash is a multiply-xorshift mix of the two
//! keys: fixed, so the table's behaviour is deterministic across runs.

use super::pool::NIL;
use crate::types::{ClientOrderId, UserId};

#[derive(Clone, Copy, Debug)]
struct Entry {
    client_order_id: u64,
    user: u32,
    /// `NIL` marks an empty entry.
    slot: u32,
}

const EMPTY: Entry = Entry {
    client_order_id: 0,
    user: 0,
    slot: NIL,
};

/// A fixed-capacity map from `(user, client order id)` to pool slot.
#[derive(Debug)]
pub struct ClientOrderIndex {
    entries: Vec<Entry>,
    mask: usize,
}

#[inline]
fn hash(user: u32, coid: u64) -> u64 {
    let mut h = coid ^ (u64::from(user)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h
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

    /// The slot of a live order.
    #[inline]
    pub fn get(&self, user: UserId, coid: ClientOrderId) -> Option<u32> {
        let mut i = hash(user.0, coid.0) as usize & self.mask;
        loop {
            let e = &self.entries[i];
            if e.slot == NIL {
                return None;
            }
            if e.user == user.0 && e.client_order_id == coid.0 {
                return Some(e.slot);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts a key that is not present (the caller has checked with `get`).
    #[inline]
    pub fn insert(&mut self, user: UserId, coid: ClientOrderId, slot: u32) {
        let mut i = hash(user.0, coid.0) as usize & self.mask;
        while self.entries[i].slot != NIL {
            debug_assert!(
                !(self.entries[i].user == user.0 && self.entries[i].client_order_id == coid.0)
            );
            i = (i + 1) & self.mask;
        }
        self.entries[i] = Entry {
            client_order_id: coid.0,
            user: user.0,
            slot,
        };
    }

    /// Removes a key that is present.
    #[inline]
    pub fn remove(&mut self, user: UserId, coid: ClientOrderId) {
        let mut i = hash(user.0, coid.0) as usize & self.mask;
        loop {
            let e = &self.entries[i];
            assert!(e.slot != NIL, "removing a key that is not in the index");
            if e.user == user.0 && e.client_order_id == coid.0 {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: pull later entries of the probe run into the hole when their
        // home position allows it, so lookups never need tombstones.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let e = self.entries[j];
            if e.slot == NIL {
                break;
            }
            let home = hash(e.user, e.client_order_id) as usize & self.mask;
            // Move `e` into the hole if its home is not cyclically within (hole, j].
            let dist_home_to_j = j.wrapping_sub(home) & self.mask;
            let dist_hole_to_j = j.wrapping_sub(hole) & self.mask;
            if dist_home_to_j >= dist_hole_to_j {
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
            let mut idx = ClientOrderIndex::new(32);
            let mut model: HashMap<(u32, u64), u32> = HashMap::new();
            for (n, (op, user, coid)) in ops.into_iter().enumerate() {
                let (u, c) = (UserId(user), ClientOrderId(coid));
                match op {
                    0 if !model.contains_key(&(user, coid)) && model.len() < 32 => {
                        idx.insert(u, c, n as u32);
                        model.insert((user, coid), n as u32);
                    }
                    1 if model.contains_key(&(user, coid)) => {
                        idx.remove(u, c);
                        model.remove(&(user, coid));
                    }
                    _ => {}
                }
                for (&(mu, mc), &slot) in &model {
                    prop_assert_eq!(idx.get(UserId(mu), ClientOrderId(mc)), Some(slot));
                }
                prop_assert_eq!(idx.get(u, c), model.get(&(user, coid)).copied());
            }
        }
    }
}
