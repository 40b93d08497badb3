//! What holds a command back, and what it holds in flight.
//!
//! - The in-flight table ([`Pending`], one entry per command whose outputs are not all routed,
//!   indexed by sequence number): full, or the engine's ring full, and the command is kept
//!   (`Conn::stalled`) and its socket's reading paused until there is room.
//! - A session's outbound backlog (frames not yet taken by its socket, plus what its commands in
//!   flight are expected to produce): above half the retransmission ring, its socket's reading
//!   pauses until the backlog is down to a quarter (`sockets.rs`, `flush`).
//! - Cancel-on-disconnect mass cancels that found the engine full wait in [`CodQueue`].

use ringbook_engine::{Command, Query, Seq, UserId};

use super::backend::{self, Backend};
use super::session::Stalled;
use super::{Core, Stats, NO_SESSION};
use crate::protocol::client::msg_type as cmt;
use crate::protocol::server::BOOK_LEVELS_PER_MSG;

/// Sequenced frames one order command in flight is assumed to produce for its own session when
/// weighing a session's outbound backlog (an order's `Accepted` plus fills or a cancel).
const FRAMES_PER_COMMAND: u64 = 3;

/// Frames a command in flight is expected to produce for its own session: a query's reply is
/// known in advance (at most), an order's is estimated.
fn frames_expected(cmd: &Command, currencies: usize) -> u64 {
    match *cmd {
        Command::Query(Query::Order { .. }) => 1,
        Command::Query(Query::OpenOrders { limit, .. }) => u64::from(limit) + 1,
        Command::Query(Query::Balances { .. }) => currencies as u64 + 1,
        Command::Query(Query::Book { depth, .. }) => {
            2 * u64::from(depth).div_ceil(BOOK_LEVELS_PER_MSG as u64) + 1
        }
        _ => FRAMES_PER_COMMAND,
    }
}

/// One command in flight: where its replies go, and what it counts in its session's backlog.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) session: u32,
    /// The session slot's generation when the command was sent: a reply for a slot since
    /// given to another session goes nowhere.
    pub(super) gen: u32,
    pub(super) msg_type: u16,
    /// A query's request id, echoed in its replies (0 for commands).
    pub(super) request_id: u64,
    /// What it added to its session's `in_flight` (`frames_expected`).
    pub(super) frames: u32,
}

/// Cancel-on-disconnect mass cancels waiting for room in the engine, one per user at most (a
/// later mass cancel covers everything an earlier one would have), so a fixed ring of one entry
/// per configured user never overflows.
#[derive(Debug)]
pub(super) struct CodQueue {
    users: Box<[u32]>,
    head: usize,
    pub(super) len: usize,
}

impl CodQueue {
    pub(super) fn new(capacity: usize) -> CodQueue {
        CodQueue {
            users: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub(super) fn contains(&self, user: u32) -> bool {
        (0..self.len).any(|i| self.users[(self.head + i) % self.users.len()] == user)
    }

    /// Queues `user` unless already queued; false if the ring is full (which the sizing rules
    /// out: one entry per configured user).
    pub(super) fn push(&mut self, user: u32) -> bool {
        if self.contains(user) {
            return true;
        }
        if self.len == self.users.len() {
            return false;
        }
        let i = (self.head + self.len) % self.users.len();
        self.users[i] = user;
        self.len += 1;
        true
    }

    pub(super) fn front(&self) -> Option<u32> {
        (self.len > 0).then(|| self.users[self.head])
    }

    pub(super) fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.users.len();
            self.len -= 1;
        }
    }
}

impl<B: Backend> Core<B> {
    /// Hands a checked command or query to the engine: held (and the socket's reading stopped
    /// until it goes in) while the engine's ring or the in-flight table is full. A session too
    /// far behind on output never gets here: `service_read` handles no frame of it while its
    /// backlog is above the high-water mark.
    pub(super) fn submit(
        &mut self,
        c: usize,
        s: usize,
        cmd: Command,
        msg_type: u16,
        request_id: u64,
    ) {
        debug_assert!(
            !self.over_high_water(c),
            "a frame was handled above the high-water mark"
        );
        match self.try_submit(cmd) {
            Ok(seq) => {
                Stats::inc(&self.stats.commands);
                self.note_pending(seq, Some(s), &cmd, msg_type, request_id);
            }
            Err(_) => {
                self.conns[c].stalled = Some(Stalled {
                    cmd,
                    msg_type,
                    request_id,
                })
            }
        }
    }

    /// The backend's `try_submit`, unless the in-flight table is full (then the command is
    /// handed back, as by a full ring).
    pub(super) fn try_submit(&mut self, cmd: Command) -> Result<Seq, backend::SubmitError> {
        if self.in_flight >= self.pending.len() {
            return Err(backend::SubmitError::Full(cmd));
        }
        self.backend.try_submit(cmd)
    }

    /// Frames session-owning connection `c` has yet to take (sequenced but not in its buffer),
    /// plus the expected output of its commands in flight.
    pub(super) fn backlog(&self, c: usize) -> u64 {
        let conn = &self.conns[c];
        conn.session.map_or(0, |s| {
            let sess = &self.sessions[s];
            sess.last_seq.saturating_sub(conn.sent_upto) + sess.in_flight
        })
    }

    /// Above half the retransmission ring: stop taking commands from this connection.
    pub(super) fn over_high_water(&self, c: usize) -> bool {
        self.backlog(c) > self.config.retransmit_msgs as u64 / 2
    }

    /// Enters a submitted command in the in-flight table (binary sessions and web requests).
    pub(super) fn hold_in_flight(&mut self, entry: Pending) {
        self.in_flight += 1;
        let mask = self.pending.len() - 1;
        let slot = &mut self.pending[(entry.seq as usize) & mask];
        debug_assert!(
            slot.seq == 0,
            "an in-flight entry overwritten before its Done"
        );
        *slot = entry;
    }

    /// Enters a binary session's (or cancel-on-disconnect's) command in the in-flight table,
    /// counting its expected frames in the session's backlog.
    pub(super) fn note_pending(
        &mut self,
        seq: Seq,
        session: Option<usize>,
        cmd: &Command,
        msg_type: u16,
        request_id: u64,
    ) {
        let frames = frames_expected(cmd, self.config.currencies);
        let gen = match session {
            Some(s) => {
                self.sessions[s].in_flight += frames;
                self.sessions[s].gen
            }
            None => 0,
        };
        self.hold_in_flight(Pending {
            seq: seq.0,
            session: session.map_or(NO_SESSION, |s| s as u32),
            gen,
            msg_type,
            request_id,
            frames: frames as u32,
        });
    }

    /// Cancel-on-disconnect mass cancels wait here while the engine is full.
    pub(super) fn retry_deferred(&mut self) {
        while let Some(user) = self.cod.front() {
            let cmd = Command::MassCancel {
                user: UserId(user),
                symbol: None,
                on_disconnect: true,
            };
            match self.try_submit(cmd) {
                Ok(seq) => {
                    self.cod.pop();
                    self.note_pending(seq, None, &cmd, cmt::MASS_CANCEL, 0);
                }
                Err(_) => {
                    Stats::inc(&self.stats.backpressure);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cancel_on_disconnect_ring_keeps_one_entry_per_user() {
        let mut q = CodQueue::new(2);
        assert!(q.push(7) && q.push(7) && q.push(9));
        assert_eq!(q.len, 2);
        assert!(!q.push(11), "full: a third user does not fit");
        assert_eq!(q.front(), Some(7));
        q.pop();
        assert!(q.push(7));
        assert_eq!(q.front(), Some(9));
        q.pop();
        assert_eq!(q.front(), Some(7));
        q.pop();
        assert_eq!(q.front(), None);
    }
}
