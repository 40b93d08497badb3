//! The user → sessions index: which session slots trade for each user, so that an event for a
//! user reaches its sessions without a scan of the whole session table.
//!
//! Users are the ones named by the configured logins, fixed at start: a user's *place* is its
//! rank among them (found by binary search, no hashing). Each place heads an intrusive list
//! threaded through one `next` link per session slot, kept in ascending slot order (the order
//! the sessions were visited in before the index existed). Every table is allocated once, at
//! start; a list changes only when a session slot is given to a session (a login that needed a
//! new one), never per event.

/// "No session" / "in no list".
const NONE: u32 = u32::MAX;

/// Session slots per user, as intrusive lists.
#[derive(Debug)]
pub(super) struct UserIndex {
    /// The users that have a login, ascending, without repeats.
    users: Box<[u32]>,
    /// Per place: the first (lowest) session slot of the user's list.
    first: Box<[u32]>,
    /// Per session slot: the next slot of the same user's list.
    next: Box<[u32]>,
    /// Per session slot: the place whose list holds it.
    place_of: Box<[u32]>,
}

impl UserIndex {
    /// An index of `sessions` slots, none in any list, for `users` (ascending, no repeats).
    pub(super) fn new(users: &[u32], sessions: usize) -> UserIndex {
        debug_assert!(
            users.windows(2).all(|w| w[0] < w[1]),
            "users sorted, unique"
        );
        UserIndex {
            users: users.into(),
            first: vec![NONE; users.len()].into_boxed_slice(),
            next: vec![NONE; sessions].into_boxed_slice(),
            place_of: vec![NONE; sessions].into_boxed_slice(),
        }
    }

    fn place(&self, user: u32) -> Option<usize> {
        self.users.binary_search(&user).ok()
    }

    /// Session slot `s` now belongs to `user` (`None`: to no user, e.g. an operator's session).
    /// Takes it out of its previous user's list first.
    pub(super) fn assign(&mut self, s: usize, user: Option<u32>) {
        self.unlink(s);
        let Some(p) = user.and_then(|u| self.place(u)) else {
            return;
        };
        // Insert in ascending slot order.
        let slot = s as u32;
        let mut prev = NONE;
        let mut cur = self.first[p];
        while cur != NONE && cur < slot {
            prev = cur;
            cur = self.next[cur as usize];
        }
        self.next[s] = cur;
        if prev == NONE {
            self.first[p] = slot;
        } else {
            self.next[prev as usize] = slot;
        }
        self.place_of[s] = p as u32;
    }

    fn unlink(&mut self, s: usize) {
        let p = std::mem::replace(&mut self.place_of[s], NONE);
        if p == NONE {
            return;
        }
        let slot = s as u32;
        let after = std::mem::replace(&mut self.next[s], NONE);
        let head = &mut self.first[p as usize];
        if *head == slot {
            *head = after;
            return;
        }
        let mut cur = *head;
        while cur != NONE {
            let n = self.next[cur as usize];
            if n == slot {
                self.next[cur as usize] = after;
                return;
            }
            cur = n;
        }
        debug_assert!(false, "session slot {s} not in its user's list");
    }

    /// The lowest session slot of `user`, if it has any.
    pub(super) fn first(&self, user: u32) -> Option<usize> {
        let p = self.place(user)?;
        let s = self.first[p];
        (s != NONE).then_some(s as usize)
    }

    /// The session slot after `s` in its user's list.
    pub(super) fn next(&self, s: usize) -> Option<usize> {
        let n = self.next[s];
        (n != NONE).then_some(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ix: &UserIndex, user: u32) -> Vec<usize> {
        let mut out = Vec::new();
        let mut s = ix.first(user);
        while let Some(i) = s {
            out.push(i);
            s = ix.next(i);
        }
        out
    }

    #[test]
    fn each_user_lists_its_sessions_in_slot_order() {
        let mut ix = UserIndex::new(&[1, 5, 9], 8);
        ix.assign(4, Some(5));
        ix.assign(1, Some(5));
        ix.assign(6, Some(5));
        ix.assign(2, Some(1));
        ix.assign(3, None);
        assert_eq!(list(&ix, 5), [1, 4, 6]);
        assert_eq!(list(&ix, 1), [2]);
        assert!(list(&ix, 9).is_empty());
        // A user without a login has no list.
        assert!(list(&ix, 2).is_empty());
        assert!(list(&ix, u32::MAX).is_empty());
    }

    #[test]
    fn a_reassigned_slot_leaves_its_old_list() {
        let mut ix = UserIndex::new(&[1, 5], 8);
        for s in [0, 3, 7] {
            ix.assign(s, Some(5));
        }
        ix.assign(3, Some(1)); // from the middle
        assert_eq!(list(&ix, 5), [0, 7]);
        assert_eq!(list(&ix, 1), [3]);
        ix.assign(0, None); // the head
        ix.assign(7, Some(5)); // the tail, to the same user again
        assert_eq!(list(&ix, 5), [7]);
        ix.assign(7, Some(1));
        assert!(list(&ix, 5).is_empty());
        assert_eq!(list(&ix, 1), [3, 7]);
    }

    #[test]
    fn it_agrees_with_a_scan_under_random_reassignments() {
        // A small deterministic generator (no dependency): slots handed to random users.
        let users = [0u32, 2, 3, 10, 11];
        let slots = 16;
        let mut ix = UserIndex::new(&users, slots);
        let mut owner: Vec<Option<u32>> = vec![None; slots];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % slots as u64) as usize;
            let u = match (x >> 32) % 7 {
                5 => None,
                6 => Some(4), // no login: in no list
                k => Some(users[k as usize % users.len()]),
            };
            ix.assign(s, u);
            owner[s] = u.filter(|u| users.contains(u));
            for &u in &users {
                let want: Vec<usize> = (0..slots).filter(|&i| owner[i] == Some(u)).collect();
                assert_eq!(list(&ix, u), want);
            }
        }
    }
}
