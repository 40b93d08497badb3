//! The expiry queue: every live GTD and DAY order, soonest expiry first (docs/matching.md,
//! "Expiry").
//!
//! An indexed binary min-heap keyed by `(expiry time, order id)` — the order expiries happen in —
//! over pool slots, with each slot's position in the heap kept beside it so that an order that
//! leaves early (filled, cancelled) is taken out in `O(log n)`. Both arrays are sized from the
//! order pool at start: nothing is allocated later. The soonest expiry is cached in
//! [`ExpiryQueue::next_ns`], so the check every command pays when nothing is due is one
//! comparison of engine time against it (`u64::MAX` when no order expires).

use crate::book::pool::NIL;

/// One queued order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Expiry time, Unix nanoseconds.
    at: u64,
    /// Order id: the tie-break between equal times.
    id: u64,
    /// Pool slot.
    slot: u32,
}

impl Entry {
    #[inline]
    fn key(&self) -> (u64, u64) {
        (self.at, self.id)
    }
}

/// The live orders that expire, soonest first.
#[derive(Debug)]
pub(crate) struct ExpiryQueue {
    heap: Vec<Entry>,
    /// Per pool slot: its index in `heap`, or `NIL` if its order does not expire.
    pos: Vec<u32>,
    /// The soonest expiry time (`u64::MAX`: none).
    next_ns: u64,
}

impl ExpiryQueue {
    /// The heap bytes [`ExpiryQueue::new`] allocates (`crate::memory`).
    pub(crate) fn bytes_for(slots: u32) -> u64 {
        slots as u64 * (std::mem::size_of::<Entry>() + std::mem::size_of_val(&NIL)) as u64
    }

    /// An empty queue for a pool of `slots` orders.
    pub(crate) fn new(slots: u32) -> ExpiryQueue {
        ExpiryQueue {
            heap: Vec::with_capacity(slots as usize),
            pos: vec![NIL; slots as usize],
            next_ns: u64::MAX,
        }
    }

    /// The soonest expiry time, `u64::MAX` when no live order expires.
    #[inline]
    pub(crate) fn next_ns(&self) -> u64 {
        self.next_ns
    }

    /// The slot of the order that expires first (soonest time, then lowest id).
    #[inline]
    pub(crate) fn first(&self) -> Option<u32> {
        self.heap.first().map(|e| e.slot)
    }

    /// The expiry time of the order in `slot` (0 if it is not queued).
    #[inline]
    pub(crate) fn expiry_of(&self, slot: u32) -> u64 {
        match self.pos[slot as usize] {
            NIL => 0,
            i => self.heap[i as usize].at,
        }
    }

    /// Queues the order in `slot` (id `id`) to expire at `at`. The heap has room: it holds at
    /// most one entry per pool slot, and its capacity is the pool's.
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32, id: u64, at: u64) {
        debug_assert_eq!(self.pos[slot as usize], NIL);
        debug_assert!(self.heap.len() < self.pos.len(), "one entry per slot");
        let i = self.heap.len();
        self.heap.push(Entry { at, id, slot });
        self.pos[slot as usize] = i as u32;
        self.up(i);
        self.next_ns = self.heap[0].at;
    }

    /// Takes the order in `slot` out of the queue (a no-op if it is not queued).
    #[inline]
    pub(crate) fn remove(&mut self, slot: u32) {
        let i = self.pos[slot as usize];
        if i == NIL {
            return;
        }
        let i = i as usize;
        self.pos[slot as usize] = NIL;
        let last = self.heap.pop().expect("a queued slot has an entry");
        if i < self.heap.len() {
            self.heap[i] = last;
            self.pos[last.slot as usize] = i as u32;
            self.down(i);
            self.up(i);
        }
        self.next_ns = self.heap.first().map_or(u64::MAX, |e| e.at);
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].key() <= self.heap[i].key() {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < n && self.heap[l].key() < self.heap[least].key() {
                least = l;
            }
            if r < n && self.heap[r].key() < self.heap[least].key() {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }

    #[inline]
    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].slot as usize] = a as u32;
        self.pos[self.heap[b].slot as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pops every entry in queue order.
    fn drain(q: &mut ExpiryQueue) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        while let Some(slot) = q.first() {
            let e = q.heap[0];
            assert_eq!(q.next_ns(), e.at);
            out.push((e.at, e.id));
            q.remove(slot);
        }
        assert_eq!(q.next_ns(), u64::MAX);
        out
    }

    #[test]
    fn orders_by_time_then_id_and_removes_from_the_middle() {
        let mut q = ExpiryQueue::new(8);
        assert_eq!(q.next_ns(), u64::MAX);
        // (slot, id, at)
        for (slot, id, at) in [
            (0, 10, 50),
            (1, 11, 20),
            (2, 12, 50),
            (3, 9, 50),
            (4, 13, 5),
        ] {
            q.insert(slot, id, at);
        }
        assert_eq!(q.next_ns(), 5);
        assert_eq!(q.expiry_of(2), 50);
        assert_eq!(q.expiry_of(7), 0);
        q.remove(1); // the 20 in the middle
        q.remove(1); // twice: a no-op
        assert_eq!(q.heap.len(), 4);
        assert_eq!(drain(&mut q), vec![(5, 13), (50, 9), (50, 10), (50, 12)]);
        // Capacity is the pool's: a full queue does not reallocate.
        let cap = q.heap.capacity();
        for slot in 0..8 {
            q.insert(slot, u64::from(100 - slot), 7 * u64::from(slot % 3));
        }
        assert_eq!(q.heap.capacity(), cap);
        let drained = drain(&mut q);
        let mut sorted = drained.clone();
        sorted.sort();
        assert_eq!(drained, sorted);
    }
}
