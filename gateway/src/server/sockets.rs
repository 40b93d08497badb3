//! The connections' sockets: accept (with the pre-login budget), read and decode (a frame
//! budget per turn, a message-rate budget per connection), write (pumping each session's
//! sequenced frames into its connection's buffer), and close.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::{Interest, Token};
use ringbook_engine::RejectCode;

use super::backend::Backend;
use super::limits::source_key;
use super::session::Closing;
use super::stats::Suppressed;
use super::{
    Core, Stats, ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX, CONN_TOKEN_BASE, FRAMES_PER_TURN,
};
use crate::protocol::marketdata::{self as mdp, MdRequest};
use crate::protocol::{split_frame, ClientMsg, ServerMsg, FRAME_BYTES_MAX};

impl<B: Backend> Core<B> {
    pub(super) fn accept(&mut self, now: Instant) {
        if self.accept_resume.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    self.accept_backoff = Duration::ZERO;
                    Stats::inc(&self.stats.connections);
                    let _ = stream.set_nodelay(true);
                    let ip = source_key(peer.ip());
                    let from_ip = self
                        .conns
                        .iter()
                        .filter(|c| c.stream.is_some() && c.session.is_none() && c.peer == ip)
                        .count();
                    if from_ip >= self.config.prelogin_per_addr_max {
                        Stats::inc(&self.stats.connections_refused);
                        if let Some(n) = self.logs.refused.ready(now) {
                            eprintln!(
                                "gateway: refused a connection from {ip}: it already has {from_ip} \
                                 connections that have not logged in (prelogin_per_addr_max){}",
                                Suppressed(n)
                            );
                        }
                        refuse(&mut stream, RejectCode::ServerFull);
                        continue;
                    }
                    if self.prelogin >= self.config.prelogin_max {
                        // The pre-login budget is full: the oldest connection that has not
                        // logged in gives way (a real client logs in with its first frame).
                        let oldest = (0..self.conns.len())
                            .filter(|&i| {
                                self.conns[i].stream.is_some() && self.conns[i].session.is_none()
                            })
                            .min_by_key(|&i| self.conns[i].opened);
                        if let Some(o) = oldest {
                            Stats::inc(&self.stats.prelogin_displaced);
                            if let Some(n) = self.logs.displaced.ready(now) {
                                eprintln!(
                                    "gateway: pre-login budget full ({} connections): closed \
                                     the oldest, from {}, for a new one from {ip}{}",
                                    self.config.prelogin_max,
                                    self.conns[o].peer,
                                    Suppressed(n)
                                );
                            }
                            self.close(o, Some(RejectCode::ServerFull));
                        }
                    }
                    let Some(c) = self.conns.iter().position(|c| c.stream.is_none()) else {
                        // Unreachable by the sizing (`conns_max + prelogin_max` slots, at most
                        // `conns_max` logged in, fewer than `prelogin_max` not): refuse safely.
                        Stats::inc(&self.stats.connections_refused);
                        refuse(&mut stream, RejectCode::ServerFull);
                        continue;
                    };
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(c + CONN_TOKEN_BASE),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    let now = Instant::now();
                    let conn = &mut self.conns[c];
                    conn.stream = Some(stream);
                    conn.peer = ip;
                    conn.in_len = 0;
                    conn.out_start = 0;
                    conn.out_end = 0;
                    conn.session = None;
                    conn.sent_upto = 0;
                    conn.opened = now;
                    conn.last_recv = now;
                    conn.last_send = now;
                    conn.heartbeat = self.config.heartbeat_default;
                    conn.budget = self.config.msgs_per_sec_max;
                    conn.budget_at = now;
                    conn.stalled = None;
                    conn.cancel_on_disconnect = false;
                    conn.logged_out = false;
                    conn.closing = None;
                    conn.paused = false;
                    conn.last_drain = now;
                    conn.kernel_queued = usize::MAX;
                    conn.queue_looked = now;
                    self.prelogin += 1;
                    self.gauges();
                    if let Some(p) = self.md.as_mut() {
                        p.reset_conn(c);
                    }
                    self.mark_ready(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Typically EMFILE / ENFILE: out of descriptors. The connection stays in
                    // the kernel's queue; leave the listener alone for a while (doubling), then
                    // try again — edge-triggered readiness will not say so by itself.
                    Stats::inc(&self.stats.accept_errors);
                    self.accept_backoff =
                        (self.accept_backoff * 2).clamp(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX);
                    self.accept_resume = Some(now + self.accept_backoff);
                    if let Some(n) = self.logs.accept.ready(now) {
                        eprintln!(
                            "gateway: accept failed: {e}; retrying in {} ms{}",
                            self.accept_backoff.as_millis(),
                            Suppressed(n)
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Publishes the connection and session gauges.
    pub(super) fn gauges(&self) {
        Stats::set(&self.stats.conns_prelogin, self.prelogin);
        Stats::set(&self.stats.conns_logged_in, self.logged_in);
    }

    /// Stops handling connection `c`'s frames while its session's output backlog is above the
    /// high-water mark (`flush` resumes it). A pause that begins here starts the slow-consumer
    /// clock afresh (`timers`); returns whether it began.
    fn pause_on_backlog(&mut self, c: usize) -> bool {
        let conn = &mut self.conns[c];
        let began = !conn.paused;
        if began {
            conn.paused = true;
            conn.last_drain = Instant::now();
            conn.kernel_queued = usize::MAX;
        }
        began
    }

    /// Reads and handles up to FRAMES_PER_TURN frames; re-marks the connection ready if more
    /// may be waiting.
    pub(super) fn service_read(&mut self, c: usize) {
        if self.conns[c].stream.is_none() || self.conns[c].closing.is_some() {
            return;
        }
        if let Some(st) = self.conns[c].stalled {
            if self.over_high_water(c) {
                // Still paused on the outbound backlog: `flush` resumes it.
                self.pause_on_backlog(c);
                return;
            }
            self.conns[c].paused = false;
            match self.try_submit(st.cmd) {
                Ok(seq) => {
                    self.conns[c].stalled = None;
                    Stats::inc(&self.stats.commands);
                    let session = self.conns[c].session;
                    self.note_pending(seq, session, &st.cmd, st.msg_type, st.request_id);
                }
                Err(_) => {
                    self.mark_ready(c);
                    return;
                }
            }
        }
        let mut frames = 0;
        let mut consumed = 0;
        loop {
            // 1. Handle every complete frame in the buffer.
            loop {
                if frames == FRAMES_PER_TURN {
                    self.compact_in(c, consumed);
                    self.mark_ready(c);
                    return;
                }
                // Every frame may be answered at once by the gateway itself (a reject, stats,
                // a page of reference data): none is handled while the session's output
                // backlog is above half its ring. Reading stops, and `flush` resumes it at a
                // quarter (a client pipelining requests without reading overran its own ring
                // and was cut off: a red-team finding).
                if self.over_high_water(c) {
                    self.compact_in(c, consumed);
                    if self.pause_on_backlog(c) {
                        Stats::inc(&self.stats.outbound_pauses);
                    }
                    return;
                }
                self.conns[c].paused = false;
                let conn = &self.conns[c];
                let split = split_frame(&conn.inbuf[consumed..conn.in_len]);
                match split {
                    Ok(Some((h, body))) => {
                        let decoded = if mdp::is_client_type(h.msg_type) {
                            MdRequest::decode(h.msg_type, h.version, body).map(Incoming::Md)
                        } else {
                            ClientMsg::decode(h.msg_type, h.version, body).map(Incoming::Msg)
                        };
                        consumed += h.frame_len;
                        frames += 1;
                        self.conns[c].last_recv = Instant::now();
                        Stats::inc(&self.stats.frames_in);
                        if !self.take_budget(c) {
                            Stats::inc(&self.stats.protocol_disconnects);
                            self.close(c, Some(RejectCode::Flood));
                            return;
                        }
                        match decoded {
                            Ok(Incoming::Msg(msg)) => self.handle(c, msg),
                            Ok(Incoming::Md(req)) => self.handle_md(c, h.msg_type, &req),
                            Err(code) => self.gateway_reject(c, h.msg_type, code, 0),
                        }
                        if self.conns[c].stream.is_none() || self.conns[c].closing.is_some() {
                            return;
                        }
                        if self.conns[c].stalled.is_some() {
                            // The engine's ring or the in-flight table is full (`submit`).
                            self.compact_in(c, consumed);
                            Stats::inc(&self.stats.backpressure);
                            self.mark_ready(c);
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream cannot be resynchronised. The frames before this one were
                        // valid: their replies are delivered first (`close_after_replies`).
                        Stats::inc(&self.stats.protocol_disconnects);
                        self.compact_in(c, consumed);
                        self.close_after_replies(c, Some(e.code()));
                        return;
                    }
                }
            }
            self.compact_in(c, consumed);
            consumed = 0;
            // 2. Read more.
            let conn = &mut self.conns[c];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let in_len = conn.in_len;
            match stream.read(&mut conn.inbuf[in_len..]) {
                Ok(0) => {
                    self.close(c, None);
                    return;
                }
                Ok(n) => conn.in_len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(c, None);
                    return;
                }
            }
        }
    }

    pub(super) fn compact_in(&mut self, c: usize, consumed: usize) {
        let conn = &mut self.conns[c];
        if consumed > 0 {
            conn.inbuf.copy_within(consumed..conn.in_len, 0);
            conn.in_len -= consumed;
        }
    }

    pub(super) fn take_budget(&mut self, c: usize) -> bool {
        let max = self.config.msgs_per_sec_max;
        let conn = &mut self.conns[c];
        if conn.budget == 0 {
            let now = Instant::now();
            let elapsed_us = now.duration_since(conn.budget_at).as_micros() as u64;
            let refill = elapsed_us.saturating_mul(max) / 1_000_000;
            if refill == 0 {
                return false;
            }
            conn.budget = refill.min(max);
            conn.budget_at = now;
        }
        conn.budget -= 1;
        true
    }

    /// Moves session frames into each dirty connection's buffer and writes what the socket takes.
    pub(super) fn flush_dirty(&mut self) {
        std::mem::swap(&mut self.dirty, &mut self.dirty_work);
        for i in 0..self.dirty_work.len() {
            let c = self.dirty_work[i];
            self.conns[c].in_dirty = false;
            self.flush(c);
        }
        self.dirty_work.clear();
    }

    pub(super) fn flush(&mut self, c: usize) {
        if self.conns[c].stream.is_none() {
            return;
        }
        loop {
            self.pump_and_write(c);
            if self.conns[c].stream.is_none() {
                return;
            }
            let Some(cl) = self.conns[c].closing else {
                break;
            };
            if cl.notice {
                // Closing after a protocol error or a logout: first every reply to the frames
                // before it (the session's commands in flight), then the reason.
                let conn = &self.conns[c];
                let waiting = conn.session.is_some_and(|s| {
                    let sess = &self.sessions[s];
                    sess.in_flight > 0 || conn.sent_upto < sess.last_seq
                });
                if waiting || conn.pending_out() {
                    return;
                }
                let n = ServerMsg::disconnect(cl.code).encode(&mut self.frame);
                let frame = self.frame;
                let conn = &mut self.conns[c];
                conn.push_out(&frame[..n]);
                if let Some(cl) = conn.closing.as_mut() {
                    cl.notice = false;
                }
                continue;
            }
            if !self.conns[c].pending_out() {
                self.finish_close(c, cl.code);
            }
            return;
        }
        // Resume reading once the backlog is down to a quarter of the ring (hysteresis).
        if self.conns[c].paused && self.backlog(c) <= self.config.retransmit_msgs as u64 / 4 {
            self.mark_ready(c);
        }
    }

    /// Moves the session's frames into the connection's buffer and writes what the socket
    /// takes (closing the connection if the socket fails or the reader fell out of the ring).
    pub(super) fn pump_and_write(&mut self, c: usize) {
        loop {
            // Pump sequenced frames the connection has not been given yet.
            if let Some(s) = self.conns[c].session {
                let sess = &self.sessions[s];
                let conn = &mut self.conns[c];
                while conn.sent_upto < sess.last_seq {
                    let next = conn.sent_upto + 1;
                    let Some(frame) = sess.frame(next) else {
                        // The ring overwrote what this reader had not taken: a slow consumer.
                        Stats::inc(&self.stats.slow_consumers);
                        return self.close(c, Some(RejectCode::SlowConsumer));
                    };
                    if !conn.push_out(frame) {
                        break;
                    }
                    conn.sent_upto = next;
                }
            }
            let conn = &mut self.conns[c];
            if !conn.pending_out() {
                break;
            }
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.write(&conn.out[conn.out_start..conn.out_end]) {
                Ok(0) => return self.close(c, None),
                Ok(n) => {
                    conn.out_start += n;
                    conn.last_send = Instant::now();
                    conn.last_drain = conn.last_send;
                    // The queue grew: the next look starts from where it stands then.
                    conn.kernel_queued = usize::MAX;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(c, None),
            }
        }
    }

    /// Stops reading; closes once what is queued (a login refusal) is written.
    pub(super) fn close_after_flush(&mut self, c: usize, code: RejectCode) {
        self.conns[c].closing = Some(Closing {
            code: Some(code),
            notice: false,
            since: Instant::now(),
        });
        self.mark_dirty(c);
    }

    /// Stops reading; once the session's commands in flight are answered and every frame is
    /// written, sends `Disconnect(code)` (`None`: a logout) and closes. Before login there is
    /// nothing to wait for: it closes at once.
    pub(super) fn close_after_replies(&mut self, c: usize, code: Option<RejectCode>) {
        if self.conns[c].session.is_none() {
            return self.close(c, code);
        }
        self.conns[c].closing = Some(Closing {
            code,
            notice: true,
            since: Instant::now(),
        });
        self.mark_dirty(c);
    }

    /// Tells the client why (best effort), then closes at once.
    pub(super) fn close(&mut self, c: usize, code: Option<RejectCode>) {
        if self.conns[c].stream.is_none() {
            return;
        }
        if code.is_some() || self.conns[c].logged_out {
            let n = ServerMsg::disconnect(code).encode(&mut self.frame);
            let frame = self.frame;
            let conn = &mut self.conns[c];
            if conn.push_out(&frame[..n]) {
                if let Some(stream) = conn.stream.as_mut() {
                    let _ = stream.write(&conn.out[conn.out_start..conn.out_end]);
                }
            }
        }
        self.finish_close(c, code);
    }

    pub(super) fn finish_close(&mut self, c: usize, _code: Option<RejectCode>) {
        let conn = &mut self.conns[c];
        let Some(mut stream) = conn.stream.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut stream);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        drop(stream);
        conn.closing = None;
        conn.stalled = None;
        conn.paused = false;
        conn.in_len = 0;
        conn.out_start = 0;
        conn.out_end = 0;
        let cod = conn.cancel_on_disconnect && !conn.logged_out;
        if let Some(p) = self.md.as_mut() {
            p.reset_conn(c);
        }
        let conn = &mut self.conns[c];
        match conn.session.take() {
            Some(s) => {
                self.logged_in -= 1;
                let sess = &mut self.sessions[s];
                sess.conn = None;
                sess.detached_at = Instant::now();
                if let (true, Some(user)) = (cod, sess.user()) {
                    Stats::inc(&self.stats.cancel_on_disconnect);
                    let queued = self.cod.push(user);
                    debug_assert!(queued, "the cancel-on-disconnect queue holds every user");
                }
            }
            None => self.prelogin -= 1,
        }
        self.gauges();
    }
}

/// Tells a connection that gets no slot why (best effort; it is dropped right after).
fn refuse(stream: &mut mio::net::TcpStream, code: RejectCode) {
    let mut f = [0u8; FRAME_BYTES_MAX];
    let n = ServerMsg::disconnect(Some(code)).encode(&mut f);
    let _ = stream.write(&f[..n]);
}

/// A decoded client frame: a session or order message, or a market-data request.
enum Incoming {
    Msg(ClientMsg),
    Md(MdRequest),
}
