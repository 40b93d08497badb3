//! The loop's periodic work (every `TICK`): the engine's clock while no command brings the
//! time, heartbeats out, and the timeouts of silent, never-logged-in, stuck-closing and
//! slow-consuming connections.

use std::time::Instant;

use ringbook_engine::{Command, RejectCode};

use super::backend::{self, Backend};
use super::limits;
use super::{Core, Stats};

use crate::protocol::ServerMsg;

impl<B: Backend> Core<B> {
    /// The engine's clock while no command brings the time: once the wall clock passes the
    /// soonest expiry of a live GTD or DAY order, a `Tick` (sequenced and journaled like any
    /// command) moves engine time there, so the order expires now rather than at the next
    /// command (docs/matching.md, "Expiry"). One at a time; none while nothing expires, so an
    /// idle server without such orders journals nothing.
    fn tick_engine_clock(&mut self) {
        if self.clock_tick.is_some() {
            return;
        }
        let due = self.backend.next_expiry_ns();
        if due == u64::MAX || backend::wall_clock_ns() < due {
            return;
        }
        if let Ok(seq) = self.try_submit(Command::Tick) {
            Stats::inc(&self.stats.clock_ticks);
            self.note_pending(seq, None, &Command::Tick, 0, 0);
            self.clock_tick = Some(seq.0);
        }
    }

    /// The engine's clock, heartbeats out, and timeouts for silent or never-logged-in
    /// connections.
    pub(super) fn timers(&mut self, now: Instant) {
        self.tick_engine_clock();
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            if conn.stream.is_none() {
                continue;
            }
            if let Some(cl) = conn.closing {
                // Not read any more: it ends when its last frames are written, or now if that
                // takes longer than the drain timeout.
                if now.duration_since(cl.since) > self.config.drain_timeout {
                    self.finish_close(c, cl.code);
                }
                continue;
            }
            if conn.session.is_none() {
                if now.duration_since(conn.opened) > self.config.login_timeout {
                    Stats::inc(&self.stats.timeouts);
                    self.close(c, Some(RejectCode::HeartbeatTimeout));
                }
                continue;
            }
            if conn.paused {
                // We stopped reading it, so its silence is ours; what counts is whether it
                // takes our output.
                if conn.pending_out() {
                    // Linux reports a full socket writable again only once a good part of its
                    // send buffer (autotuned up to megabytes) has drained, so a client reading
                    // slowly but steadily can go seconds without a write of ours succeeding:
                    // the kernel's send queue shrinking by `slow_consumer_drain_bytes` since the last
                    // write or credit is taken output too (such a reader was cut off at ~2 s:
                    // a red-team finding). One that reads nothing leaves the queue as it is,
                    // and one that trickles less than that per timeout is still cut off. Looked
                    // at four times per timeout, not every tick (one system call per paused
                    // connection per look), and besides: at the first tick after a write or
                    // the start of a pause (where the queue stands then: the client's whole
                    // timeout counts), and when the cut is due (what it took until then).
                    let timeout = self.config.slow_consumer_timeout;
                    let drain_min = self.config.slow_consumer_drain_bytes;
                    if conn.kernel_queued == usize::MAX
                        || now.duration_since(conn.queue_looked) >= timeout / 4
                        || now.duration_since(conn.last_drain) > timeout
                    {
                        let queued = conn.stream.as_ref().and_then(limits::unacknowledged);
                        let conn = &mut self.conns[c];
                        conn.queue_looked = now;
                        match queued {
                            // The first look since a write (or ever): where the queue stands.
                            Some(q) if conn.kernel_queued == usize::MAX => conn.kernel_queued = q,
                            Some(q) if q + drain_min <= conn.kernel_queued => {
                                conn.last_drain = now;
                                conn.kernel_queued = q;
                            }
                            _ => {}
                        }
                    }
                    let conn = &self.conns[c];
                    if now.duration_since(conn.last_drain) > timeout {
                        Stats::inc(&self.stats.slow_consumers);
                        self.close(c, Some(RejectCode::SlowConsumer));
                    }
                }
                continue;
            }
            if now.duration_since(conn.last_recv) > conn.heartbeat * self.config.heartbeat_timeouts
            {
                Stats::inc(&self.stats.timeouts);
                self.close(c, Some(RejectCode::HeartbeatTimeout));
                continue;
            }
            if conn.pending_out() {
                // Output is waiting: the client hears from us as soon as its socket takes it,
                // so no heartbeat is queued behind it (one that did not fit in the full buffer
                // cut a live client off as a slow consumer within tenths of a second of short
                // heartbeats: a red-team finding). A peer that is gone stops sending and meets
                // the heartbeat timeout above; one that is alive but does not read is paused
                // once its backlog passes the high-water mark, and judged as such.
                continue;
            }
            if now.duration_since(conn.last_send) >= conn.heartbeat {
                let n = ServerMsg::Heartbeat.encode(&mut self.frame);
                let frame = self.frame;
                let conn = &mut self.conns[c];
                conn.last_send = now;
                // Nothing was waiting (above), so it fits.
                let queued = conn.push_out(&frame[..n]);
                debug_assert!(queued, "a heartbeat did not fit in an empty buffer");
                self.mark_dirty(c);
            }
        }
        self.flush_dirty();
    }
}
