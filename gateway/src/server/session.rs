//! Sessions and connections: fixed buffers, allocated once at start-up.
//!
//! A *session* is `(login, session_id)`: it owns the server sequence numbers and a ring of the
//! last `retransmit_msgs` sequenced frames, and survives reconnects. A *connection* is a TCP
//! stream with a bounded inbound and outbound buffer, attached to at most one session.
//! Sequenced messages are written into the session's ring and pumped from there into the
//! connection's outbound buffer as it drains. A session whose backlog (frames not yet taken by
//! the socket, plus the expected output of its commands in flight) passes half the ring has its
//! socket's reading paused until the backlog halves, so a pipelining client is slowed by TCP flow
//! control; a connection that stays paused without draining for `slow_consumer_timeout`, or
//! whose ring is overwritten before it took the frames, is a slow consumer and is disconnected.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use ringbook_engine::{Command, RejectCode};

use super::auth::Role;
use crate::protocol::FRAME_BYTES_MAX;

/// One session's state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) in_use: bool,
    /// Bumped each time the slot is given to another session: an in-flight command remembers
    /// the generation it was sent under, and its late replies go nowhere once it changed.
    pub(crate) gen: u32,
    pub(crate) account: usize,
    pub(crate) session_id: u32,
    pub(crate) role: Role,
    pub(crate) conn: Option<usize>,
    pub(crate) last_seq: u64,
    /// Frames the commands submitted for this session (whose `Done` has not been routed yet)
    /// are expected to produce for it: see `frames_expected`.
    pub(crate) in_flight: u64,
    pub(crate) detached_at: Instant,
    frames: Box<[[u8; FRAME_BYTES_MAX]]>,
    lens: Box<[u16]>,
}

impl Session {
    pub(crate) fn new(retransmit_msgs: usize, now: Instant) -> Session {
        Session {
            in_use: false,
            gen: 0,
            account: 0,
            session_id: 0,
            role: Role::User(0),
            conn: None,
            last_seq: 0,
            in_flight: 0,
            detached_at: now,
            frames: vec![[0u8; FRAME_BYTES_MAX]; retransmit_msgs].into_boxed_slice(),
            lens: vec![0u16; retransmit_msgs].into_boxed_slice(),
        }
    }

    pub(crate) fn reset(&mut self, account: usize, session_id: u32, role: Role) {
        self.in_use = true;
        self.gen = self.gen.wrapping_add(1);
        self.account = account;
        self.session_id = session_id;
        self.role = role;
        self.conn = None;
        self.last_seq = 0;
        self.in_flight = 0;
    }

    pub(crate) fn user(&self) -> Option<u32> {
        match self.role {
            Role::User(u) => Some(u),
            Role::Operator(_) | Role::MarketData => None,
        }
    }

    /// The oldest sequence number still held.
    pub(crate) fn oldest_seq(&self) -> u64 {
        (self.last_seq + 1)
            .saturating_sub(self.frames.len() as u64)
            .max(1)
    }

    /// A slot to encode the next sequenced frame into; call [`Session::commit`] after.
    pub(crate) fn next_slot(&mut self) -> (u64, &mut [u8; FRAME_BYTES_MAX]) {
        let seq = self.last_seq + 1;
        let i = (seq % self.frames.len() as u64) as usize;
        (seq, &mut self.frames[i])
    }

    pub(crate) fn commit(&mut self, len: usize) {
        let seq = self.last_seq + 1;
        let i = (seq % self.frames.len() as u64) as usize;
        self.lens[i] = len as u16;
        self.last_seq = seq;
    }

    /// The frame with sequence number `seq`, if still held.
    pub(crate) fn frame(&self, seq: u64) -> Option<&[u8]> {
        if seq < self.oldest_seq() || seq > self.last_seq {
            return None;
        }
        let i = (seq % self.frames.len() as u64) as usize;
        Some(&self.frames[i][..self.lens[i] as usize])
    }
}

/// A command the engine could not take yet (back-pressure), kept until it can.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stalled {
    pub(crate) cmd: Command,
    pub(crate) msg_type: u16,
    pub(crate) request_id: u64,
}

/// A connection on its way out: reading has stopped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Closing {
    /// The reason (`None`: logout or a plain close).
    pub(crate) code: Option<RejectCode>,
    /// Send a `Disconnect` with `code` once every command the connection's session has in
    /// flight is answered and its frames are written (a protocol error after valid frames, a
    /// logout);
    /// false when the last frame is already queued (a login refusal).
    pub(crate) notice: bool,
    /// When closing began (a close that cannot finish within the drain timeout is forced).
    pub(crate) since: Instant,
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Option<TcpStream>,
    pub(crate) peer: IpAddr,
    pub(crate) inbuf: Box<[u8]>,
    pub(crate) in_len: usize,
    pub(crate) out: Box<[u8]>,
    pub(crate) out_start: usize,
    pub(crate) out_end: usize,
    pub(crate) session: Option<usize>,
    pub(crate) sent_upto: u64,
    pub(crate) opened: Instant,
    pub(crate) last_recv: Instant,
    pub(crate) last_send: Instant,
    pub(crate) heartbeat: Duration,
    pub(crate) budget: u64,
    pub(crate) budget_at: Instant,
    pub(crate) stalled: Option<Stalled>,
    pub(crate) cancel_on_disconnect: bool,
    pub(crate) logged_out: bool,
    pub(crate) closing: Option<Closing>,
    pub(crate) in_ready: bool,
    pub(crate) in_dirty: bool,
    /// Reading paused because the session's outbound backlog is above the high-water mark.
    pub(crate) paused: bool,
    /// Last time the client took outbound bytes: the socket took a write, or the kernel's
    /// send queue shrank between two ticks while the connection was paused.
    pub(crate) last_drain: Instant,
    /// The socket's unacknowledged bytes when a look while paused with output pending last
    /// credited the client with taking output, or first looked after a write (`usize::MAX`:
    /// not looked at since the last write); and when the last look was.
    pub(crate) kernel_queued: usize,
    pub(crate) queue_looked: Instant,
}

impl Conn {
    pub(crate) fn new(in_bytes: usize, out_bytes: usize, now: Instant) -> Conn {
        Conn {
            stream: None,
            peer: IpAddr::from([127, 0, 0, 1]),
            inbuf: vec![0u8; in_bytes].into_boxed_slice(),
            in_len: 0,
            out: vec![0u8; out_bytes].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            session: None,
            sent_upto: 0,
            opened: now,
            last_recv: now,
            last_send: now,
            heartbeat: Duration::from_secs(1),
            budget: 0,
            budget_at: now,
            stalled: None,
            cancel_on_disconnect: false,
            logged_out: false,
            closing: None,
            in_ready: false,
            in_dirty: false,
            paused: false,
            last_drain: now,
            kernel_queued: usize::MAX,
            queue_looked: now,
        }
    }

    pub(crate) fn out_room(&mut self) -> usize {
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
        if self.out.len() - self.out_end < FRAME_BYTES_MAX && self.out_start > 0 {
            self.out.copy_within(self.out_start..self.out_end, 0);
            self.out_end -= self.out_start;
            self.out_start = 0;
        }
        self.out.len() - self.out_end
    }

    /// Appends a frame if it fits; false if the outbound buffer is full.
    pub(crate) fn push_out(&mut self, frame: &[u8]) -> bool {
        if self.out_room() < frame.len() {
            return false;
        }
        self.out[self.out_end..self.out_end + frame.len()].copy_from_slice(frame);
        self.out_end += frame.len();
        true
    }

    pub(crate) fn pending_out(&self) -> bool {
        self.out_start != self.out_end
    }
}
