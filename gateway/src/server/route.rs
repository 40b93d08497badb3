//! Engine outputs to their readers: each event, translated by the protocol
//! ([`crate::protocol::translate`]), goes to the sessions it concerns (the user→sessions index,
//! the session that sent the command), to the web edge and to market-data publication; each
//! command's end frees its in-flight entry.

use std::sync::atomic::Ordering;

use ringbook_engine::{Event, Seq};

use super::backend::{Backend, BackendOutput};
use super::backpressure::Pending;
use super::bridge::{self, WebOutKind, WebOutput};
use super::session::Session;
use super::{Core, Stats, WEB_SESSION};
use crate::protocol::translate::{translate, Audience, Cause};
use crate::protocol::ServerMsg;

impl<B: Backend> Core<B> {
    /// Appends a sequenced message to session `s` (and marks its connection for writing).
    pub(super) fn emit(&mut self, s: usize, msg: ServerMsg) {
        emit_into(&mut self.sessions[s], msg);
        Stats::inc(&self.stats.msgs_out);
        if let Some(c) = self.sessions[s].conn {
            self.mark_dirty(c);
        }
    }

    pub(super) fn route_outputs(&mut self) {
        let mut outs = std::mem::take(&mut self.outputs);
        // In rounds of at most the buffer's capacity, so it never grows.
        loop {
            // Each output becomes at most one web output: drain no more than the web queue
            // can take, so nothing is ever dropped on the way to the web edge.
            let web_room = self.web.as_ref().map_or(usize::MAX, |w| w.room());
            if web_room == 0 {
                if let Some(w) = &self.web {
                    w.block();
                }
                break;
            }
            let room = outs.capacity().min(web_room);
            let n = self.backend.drain(room, &mut |seq, o| outs.push((seq, o)));
            for &(seq, o) in &outs {
                match o {
                    BackendOutput::Event(e) => {
                        if matches!(e, Event::Trade(_)) {
                            Stats::inc(&self.stats.trades);
                        }
                        self.route(seq, &e);
                        if let Some(p) = self.md.as_mut() {
                            p.on_event(&e, &mut self.conns);
                        }
                    }
                    BackendOutput::Done(ts) => {
                        self.done(seq, ts);
                        if let Some(p) = self.md.as_mut() {
                            p.on_done(ts, &mut self.conns);
                        }
                    }
                }
            }
            outs.clear();
            if n < room {
                break;
            }
        }
        self.outputs = outs;
    }

    /// A command is fully processed (`ts`: its time stamp): it no longer counts in its
    /// session's backlog.
    pub(super) fn done(&mut self, seq: Seq, ts: u64) {
        if self.clock_tick == Some(seq.0) {
            self.clock_tick = None;
        }
        let i = (seq.0 as usize) & (self.pending.len() - 1);
        let p = self.pending[i];
        let known = p.seq == seq.0;
        if let Some(web) = &self.web {
            let request = if known && p.session == WEB_SESSION {
                p.request_id
            } else {
                0
            };
            if web.md_feed() {
                // The web edge's market-data copy sees every command's end (one output per
                // backend output, as `route_outputs` reserved room for).
                web.push(WebOutput {
                    request,
                    kind: WebOutKind::Ended { seq: seq.0, ts },
                });
                self.web_pushed = true;
            } else if request != 0 {
                web.push(WebOutput {
                    request,
                    kind: WebOutKind::Done(seq.0),
                });
                self.web_pushed = true;
            }
            if known {
                web.stats.last_done_seq.store(seq.0, Ordering::Relaxed);
            }
        }
        if !known {
            return;
        }
        // Free the entry (a sequence number 0 is never issued).
        self.pending[i].seq = 0;
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(s) = self.origin(&p) else {
            return;
        };
        let sess = &mut self.sessions[s];
        sess.in_flight = sess.in_flight.saturating_sub(u64::from(p.frames));
        if let Some(c) = sess.conn {
            if self.conns[c].paused || self.conns[c].closing.is_some() {
                self.mark_dirty(c);
            }
        }
    }

    /// The session an in-flight entry's replies go to: none if it had none, or if its slot has
    /// since been given to another session (a newer generation).
    pub(super) fn origin(&self, p: &Pending) -> Option<usize> {
        let s = p.session as usize;
        (s < self.sessions.len() && self.sessions[s].gen == p.gen).then_some(s)
    }

    /// Sends one event to the sessions it concerns: every session of each user it names, and
    /// the session that submitted the command (operators see their own actions' results).
    pub(super) fn route(&mut self, seq: Seq, e: &Event) {
        let p = self.pending[(seq.0 as usize) & (self.pending.len() - 1)];
        let origin = if p.seq == seq.0 {
            self.origin(&p)
        } else {
            None
        };
        if let Some(web) = &self.web {
            // A web request's events go to it; every event goes to the web edge while its
            // market-data feed is on; otherwise only events it asked for (a watched user's,
            // withdrawals). One output either way, none at all for an idle web edge.
            let request = if p.seq == seq.0 && p.session == WEB_SESSION {
                p.request_id
            } else {
                0
            };
            if request != 0 || web.md_feed() || web.wants(e) {
                web.push(WebOutput {
                    request,
                    kind: WebOutKind::Event(*e),
                });
                self.web_pushed = true;
            }
            if request != 0 {
                // Nothing else to route: no binary session asked.
                if !bridge::is_user_event(e) {
                    return;
                }
            }
        }
        let cause = if p.seq == seq.0 {
            Cause {
                msg_type: p.msg_type,
                request_id: p.request_id,
            }
        } else {
            Cause::default()
        };
        for (to, msg) in translate(e, cause, &mut self.book_levels) {
            match to {
                Audience::User(user) => self.send_to_user(user, None, msg),
                Audience::UserAndOrigin(user) => self.send_to_user(user, origin, msg),
                Audience::Origin => {
                    if let Some(s) = origin {
                        self.emit(s, msg);
                    }
                }
            }
        }
    }

    /// Emits `msg` to every session of `user` (the user→sessions index), and to `also` if
    /// that is not one of them.
    pub(super) fn send_to_user(&mut self, user: u32, also: Option<usize>, msg: ServerMsg) {
        let mut sent_also = false;
        let mut next = self.users.first(user);
        while let Some(s) = next {
            next = self.users.next(s);
            sent_also |= also == Some(s);
            self.emit(s, msg);
        }
        if let (Some(s), false) = (also, sent_also) {
            self.emit(s, msg);
        }
    }
}

/// Encodes `msg` with the session's next sequence number into its retransmission ring.
fn emit_into(sess: &mut Session, msg: ServerMsg) {
    let (seq, slot) = sess.next_slot();
    let n = msg.with_seq(seq).encode(slot);
    sess.commit(n);
}
