//! The client-order-id index: `(user, client order id) → pool slot` for live orders.
//!
//! Client order ids are chosen by clients, so an array index cannot serve; this is a hash table
//! with separate chaining through the order pool and **linear hashing** (Litwin), so the part of
//! the table in use follows the number of live orders, not the configured capacity:
//!
//! - A bucket is a 4-byte head: the pool slot of the first order of its chain (`NIL`: empty).
//!   The chain continues through each order's `index_next` field, which lives in padding the pool
//!   slot had anyway, so a lookup reads the bucket and then the orders it names — the slot a
//!   cancel or amend reads next anyway — and an insert writes the new order's own (hot) slot.
//! - The heads are allocated at start for the most buckets the index can need
//!   (`next_pow2(2 × orders_max)`, load ≤ ½ at a full pool), but only the first `n` are in use:
//!   `n` grows by one bucket (the split of bucket `split` into itself and `split + 2^level`) while
//!   the live keys exceed `n / 2`, and shrinks by one (the reverse merge) while they are below
//!   `n / 8`. Each step moves one short chain, so no operation pays for a rehash, and the memory
//!   a lookup touches is about `2 × live orders × 4 B`: with 100 000 live orders about 800 KB,
//!   in cache, whether the pool holds 262 144 orders or 4 194 304 (docs/benchmarks.md).
//!
//! The matcher indexes only users who name orders by client order id (`matching::OrderStore`,
//! `indexed`); the others' orders never enter the table.
//!
//! Bucket addressing: with `n = 2^level + split`, a key whose hash is `h` lives in bucket
//! `h mod 2^level`, or `h mod 2^(level+1)` if that is below `split` (already split). The hash is
//! a fixed multiply-xorshift mix, and the index's shape depends only on the sequence of inserts
//! and removes, so it behaves identically run to run (and nothing observable depends on it).

use super::pool::{OrderPool, NIL};
use crate::types::{ClientOrderId, UserId};

/// Bytes of a bucket head, as docs/architecture.md and docs/configuration.md state (the test
/// `memory_sizes_are_the_ones_the_docs_state` in `book/mod.rs` holds the documents to it).
pub(crate) const HEAD_BYTES: usize = 4;
const _: () = assert!(std::mem::size_of::<u32>() == HEAD_BYTES);

/// The fewest buckets in use (`2^MIN_LEVEL`).
const MIN_LEVEL: u32 = 4;

/// A fixed-capacity map from `(user, client order id)` to pool slot.
#[derive(Debug)]
pub struct ClientOrderIndex {
    /// Bucket heads; the first `2^level + split` are in use, the rest stay `NIL`.
    heads: Vec<u32>,
    /// `log2` of the bucket count at the start of the current round of splits.
    level: u32,
    /// The next bucket to split; buckets below it are already split this round.
    split: usize,
    /// Keys indexed.
    len: usize,
}

#[inline]
fn hash(user: UserId, coid: ClientOrderId) -> usize {
    let mut h = coid.0 ^ u64::from(user.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h as usize
}

#[inline]
fn key_of(pool: &OrderPool, slot: u32) -> (UserId, ClientOrderId) {
    let o = &pool[slot];
    (o.user, o.client_order_id)
}

impl ClientOrderIndex {
    /// Room for `orders_max` keys at a load factor of at most one half.
    #[cfg(test)]
    pub fn new(orders_max: u32) -> ClientOrderIndex {
        ClientOrderIndex::with_huge_pages(orders_max, false)
    }

    /// Bucket heads for `orders_max` keys.
    fn buckets_for(orders_max: u32) -> usize {
        (orders_max as usize * 2)
            .next_power_of_two()
            .max(1 << MIN_LEVEL)
    }

    /// The heap bytes an index for `orders_max` keys allocates (`crate::memory`).
    pub(crate) fn bytes_for(orders_max: u32) -> u64 {
        (ClientOrderIndex::buckets_for(orders_max) * std::mem::size_of_val(&NIL)) as u64
    }

    /// [`ClientOrderIndex::new`], backed by transparent huge pages where the OS offers them and
    /// `huge` asks for it (`book::huge`).
    pub fn with_huge_pages(orders_max: u32, huge: bool) -> ClientOrderIndex {
        let size = ClientOrderIndex::buckets_for(orders_max);
        ClientOrderIndex {
            heads: crate::book::huge::filled_vec(size, NIL, huge),
            level: MIN_LEVEL,
            split: 0,
            len: 0,
        }
    }

    /// Buckets in use.
    #[inline]
    fn buckets(&self) -> usize {
        (1 << self.level) + self.split
    }

    /// The bucket of a key's hash.
    #[inline]
    fn bucket(&self, h: usize) -> usize {
        let b = h & ((1 << self.level) - 1);
        if b < self.split {
            h & ((2 << self.level) - 1)
        } else {
            b
        }
    }

    /// The slot of a live order.
    #[inline]
    pub fn get(&self, user: UserId, coid: ClientOrderId, pool: &OrderPool) -> Option<u32> {
        let mut slot = self.heads[self.bucket(hash(user, coid))];
        while slot != NIL {
            let o = &pool[slot];
            if o.user == user && o.client_order_id == coid {
                return Some(slot);
            }
            slot = o.index_next;
        }
        None
    }

    /// Indexes the order in `slot` under its key; it is not indexed yet, and no other live
    /// order has its key.
    #[inline]
    pub fn insert(&mut self, slot: u32, pool: &mut OrderPool) {
        let (user, coid) = key_of(pool, slot);
        let b = self.bucket(hash(user, coid));
        pool[slot].index_next = self.heads[b];
        self.heads[b] = slot;
        self.len += 1;
        while 2 * self.len > self.buckets() && self.buckets() < self.heads.len() {
            self.split_one(pool);
        }
    }

    /// Removes the live, indexed order in `slot` (call before the slot is reused).
    #[inline]
    pub fn remove(&mut self, slot: u32, pool: &mut OrderPool) {
        let (user, coid) = key_of(pool, slot);
        let b = self.bucket(hash(user, coid));
        let next = pool[slot].index_next;
        let mut at = self.heads[b];
        if at == slot {
            self.heads[b] = next;
        } else {
            loop {
                assert!(at != NIL, "removing a key that is not in the index");
                let after = pool[at].index_next;
                if after == slot {
                    pool[at].index_next = next;
                    break;
                }
                at = after;
            }
        }
        self.len -= 1;
        while 8 * self.len < self.buckets() && self.buckets() > 1 << MIN_LEVEL {
            self.merge_one(pool);
        }
    }

    /// Splits bucket `split`: each key whose hash names the new bucket `split + 2^level` at the
    /// next level moves there.
    #[cold]
    fn split_one(&mut self, pool: &mut OrderPool) {
        let from = self.split;
        let to = from + (1 << self.level);
        let wide = (2 << self.level) - 1;
        let (mut stay, mut moved) = (NIL, NIL);
        let mut slot = self.heads[from];
        while slot != NIL {
            let next = pool[slot].index_next;
            let (user, coid) = key_of(pool, slot);
            if hash(user, coid) & wide == to {
                pool[slot].index_next = moved;
                moved = slot;
            } else {
                pool[slot].index_next = stay;
                stay = slot;
            }
            slot = next;
        }
        self.heads[from] = stay;
        self.heads[to] = moved;
        self.split += 1;
        if self.split == 1 << self.level {
            self.level += 1;
            self.split = 0;
        }
    }

    /// Merges the last bucket in use back into its buddy (the reverse of a split).
    #[cold]
    fn merge_one(&mut self, pool: &mut OrderPool) {
        if self.split == 0 {
            self.level -= 1;
            self.split = 1 << self.level;
        }
        self.split -= 1;
        let into = self.split;
        let from = into + (1 << self.level);
        let mut slot = std::mem::replace(&mut self.heads[from], NIL);
        while slot != NIL {
            let next = pool[slot].index_next;
            pool[slot].index_next = self.heads[into];
            self.heads[into] = slot;
            slot = next;
        }
    }

    /// Buckets in use (for tests and the docs' claims).
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.buckets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Puts an order with this key into the pool under the next id whose slot is free.
    fn place(pool: &mut OrderPool, next_id: &mut u64, user: UserId, coid: ClientOrderId) -> u32 {
        while !pool.is_free(pool.slot_of(crate::types::OrderId(*next_id))) {
            *next_id += 1;
        }
        *next_id += 1;
        pool.put(crate::book::pool::Order {
            id: crate::types::OrderId(*next_id - 1),
            user,
            client_order_id: coid,
            ..OrderPool::blank()
        })
    }

    proptest! {
        #[test]
        fn matches_a_hashmap(ops in prop::collection::vec((0u8..3, 0u32..4, 0u64..40), 1..400)) {
            let mut pool = OrderPool::new(32);
            let mut idx = ClientOrderIndex::new(32);
            let mut model: HashMap<(u32, u64), u32> = HashMap::new();
            let mut next_id = 1;
            for (op, user, coid) in ops {
                let (u, c) = (UserId(user), ClientOrderId(coid));
                match op {
                    0 if !model.contains_key(&(user, coid)) && model.len() < 32 => {
                        let slot = place(&mut pool, &mut next_id, u, c);
                        idx.insert(slot, &mut pool);
                        model.insert((user, coid), slot);
                    }
                    1 if model.contains_key(&(user, coid)) => {
                        let slot = model.remove(&(user, coid)).unwrap();
                        idx.remove(slot, &mut pool);
                        pool.free(slot);
                    }
                    _ => {}
                }
                for (&(mu, mc), &slot) in &model {
                    prop_assert_eq!(idx.get(UserId(mu), ClientOrderId(mc), &pool), Some(slot));
                }
                prop_assert_eq!(idx.get(u, c, &pool), model.get(&(user, coid)).copied());
                prop_assert!(idx.in_use() >= 16 && idx.in_use() <= 64);
            }
        }
    }

    /// The buckets in use follow the live keys up and back down, every key stays findable
    /// through every split and merge, and the table never outgrows its allocation.
    #[test]
    fn grows_and_shrinks_with_the_live_keys() {
        const N: u32 = 5_000;
        let mut pool = OrderPool::new(N);
        let mut idx = ClientOrderIndex::new(N);
        let key = |k: u32| (UserId(k % 7), ClientOrderId(u64::from(k) * 16));
        let mut slots = Vec::new();
        let mut next_id = 1;
        for k in 0..N {
            let (u, c) = key(k);
            let s = place(&mut pool, &mut next_id, u, c);
            idx.insert(s, &mut pool);
            slots.push(s);
            assert!(idx.in_use() >= 2 * (k as usize + 1) || idx.in_use() == idx.heads.len());
        }
        assert_eq!(idx.in_use(), 2 * N as usize, "two buckets per key");
        for (k, &s) in slots.iter().enumerate() {
            let (u, c) = key(k as u32);
            assert_eq!(idx.get(u, c, &pool), Some(s));
        }
        // Remove all but the last 100 keys: the table shrinks to a few hundred buckets.
        for k in 0..N - 100 {
            idx.remove(slots[k as usize], &mut pool);
            pool.free(slots[k as usize]);
        }
        assert!((200..=800).contains(&idx.in_use()), "{}", idx.in_use());
        for k in 0..N {
            let (u, c) = key(k);
            let expect = (k >= N - 100).then(|| slots[k as usize]);
            assert_eq!(idx.get(u, c, &pool), expect);
        }
        // Buckets beyond those in use were emptied by the merges.
        assert!(idx.heads[idx.in_use()..].iter().all(|&h| h == NIL));
        for k in N - 100..N {
            idx.remove(slots[k as usize], &mut pool);
        }
        assert_eq!(idx.in_use(), 16);
        assert!(idx.heads.iter().all(|&h| h == NIL));
    }
}
