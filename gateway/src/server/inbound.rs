//! What clients ask: a binary session's messages and logins, and the web edge's requests taken
//! from the bridge. Each command is authorized by the one rule ([`super::authorize`]) for
//! both, then handed to back-pressure and the engine (`backpressure.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringbook_engine::{Command, Query, RejectCode, Seq};

use super::auth::{authorize, authorize_stats, LoginCheck, Role};
use super::backend::Backend;
use super::backpressure::Pending;
use super::bridge::{WebBridge, WebOp, WebOutKind, WebOutput, WebRequest};
use super::limits::source_key;
use super::stats::Suppressed;
use super::{
    Core, Stats, HEARTBEAT_MAX, HEARTBEAT_MIN, OPEN_ORDERS_REPLY_MAX, REFERENCE_REPLY_MAX,
    WEB_SESSION,
};
use crate::protocol::marketdata::MdRequest;
use crate::protocol::{name32_str, ClientMsg, ReferenceData, ServerMsg};

/// Web requests taken from the bridge per loop turn (fairness with the sockets).
const WEB_PER_TURN: usize = 256;

impl<B: Backend> Core<B> {
    pub(super) fn handle(&mut self, c: usize, msg: ClientMsg) {
        let Some(s) = self.conns[c].session else {
            match msg {
                ClientMsg::Login(l) => self.login(c, &l),
                _ => {
                    Stats::inc(&self.stats.gateway_rejects);
                    self.close(c, Some(RejectCode::NotLoggedIn));
                }
            }
            return;
        };
        let msg_type = msg.msg_type();
        let role = self.sessions[s].role;
        match msg {
            ClientMsg::Login(_) => self.gateway_reject(c, msg_type, RejectCode::AlreadyLoggedIn, 0),
            ClientMsg::Logout => {
                // Every reply already sequenced for the session goes out first, then the
                // Disconnect (closed at once, a logout dropped what was not yet in the socket's
                // buffer: a red-team finding).
                self.conns[c].logged_out = true;
                self.close_after_replies(c, None);
            }
            ClientMsg::Heartbeat => {}
            // Everything the engine answers: one command or query, one authorization rule.
            ClientMsg::Command(cmd) => {
                // Client order ids are checked by the engine, per user, in sequence and across
                // restarts (DUPLICATE_CLIENT_ORDER_ID; docs/protocol.md, "Idempotency"): no
                // per-session check here that a restart or a new session would forget.
                self.authorize_and_submit(c, s, cmd, msg_type, 0);
            }
            ClientMsg::OrderStatus {
                request_id,
                user,
                client_order_id,
            } => {
                let q = Query::Order {
                    user,
                    client_order_id,
                };
                self.authorize_and_submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::OrderStatusById {
                request_id,
                user,
                order_id,
            } => {
                let q = Query::OrderById { user, order_id };
                self.authorize_and_submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::OpenOrders { request_id, user } => {
                let q = Query::OpenOrders {
                    user,
                    limit: OPEN_ORDERS_REPLY_MAX,
                };
                self.authorize_and_submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::Balances { request_id, user } => {
                let q = Query::Balances { user };
                self.authorize_and_submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::BookSnapshot {
                request_id,
                symbol,
                depth,
            } => {
                // Public data: any session may ask. The engine rejects an unknown symbol.
                let q = Query::Book {
                    symbol,
                    depth: u32::from(depth),
                };
                self.authorize_and_submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::Stats { request_id } => {
                if let Err(code) = authorize_stats(role) {
                    return self.gateway_reject(c, msg_type, code, 0);
                }
                let stats = self.stats.snapshot();
                self.emit(
                    s,
                    ServerMsg::Stats {
                        seq: 0,
                        request_id,
                        stats,
                    },
                );
            }
            ClientMsg::ReferenceData { request_id, first } => {
                self.reference_page(c, s, msg_type, request_id, first)
            }
        }
    }

    /// One page of reference data, answered by the gateway from the configuration it was given
    /// (public: any session may ask): the entries from `first`, at most
    /// [`REFERENCE_REPLY_MAX`], then the end with the next index. A `first` past the end is
    /// `INVALID_FIELD`. No frame is handled while the session is above its high-water mark
    /// (`service_read`), and the ring holds at least twice a page (`ServerConfig::check`), so
    /// a page always fits.
    fn reference_page(&mut self, c: usize, s: usize, msg_type: u16, request_id: u64, first: u32) {
        let first = first as usize;
        if first > self.reference.len() {
            return self.gateway_reject(c, msg_type, RejectCode::InvalidField, 0);
        }
        let n = (self.reference.len() - first).min(REFERENCE_REPLY_MAX as usize);
        for i in first..first + n {
            let msg = ReferenceData::for_request(self.reference[i], request_id);
            self.emit(s, msg);
        }
        let currencies = self.reference_currencies;
        let symbols = self.reference.len() - currencies;
        let end = ReferenceData::end_for(request_id, currencies, symbols, first + n);
        self.emit(s, end);
    }

    /// Authorizes a command or query for session `s`'s role ([`authorize`]) and submits it, or
    /// rejects it (echoing its client order id, if it names one).
    fn authorize_and_submit(
        &mut self,
        c: usize,
        s: usize,
        cmd: Command,
        msg_type: u16,
        request_id: u64,
    ) {
        if let Err(code) = authorize(&cmd, self.sessions[s].role) {
            let coid = match cmd {
                Command::NewOrder(o) => o.client_order_id.0,
                Command::Cancel {
                    client_order_id, ..
                }
                | Command::Amend {
                    client_order_id, ..
                }
                | Command::Query(Query::Order {
                    client_order_id, ..
                }) => client_order_id.0,
                _ => 0,
            };
            return self.gateway_reject(c, msg_type, code, coid);
        }
        self.submit(c, s, cmd, msg_type, request_id);
    }

    /// A market-data subscribe or unsubscribe: any logged-in session may ask (the data is
    /// public); refused with `UNKNOWN_SYMBOL` for a symbol not configured, or when the server
    /// publishes no market data.
    pub(super) fn handle_md(&mut self, c: usize, msg_type: u16, req: &MdRequest) {
        if self.conns[c].session.is_none() {
            Stats::inc(&self.stats.gateway_rejects);
            return self.close(c, Some(RejectCode::NotLoggedIn));
        }
        let result = match self.md.as_mut() {
            Some(p) => p.request(c, req, &mut self.conns, &mut self.dirty),
            None => Err(RejectCode::UnknownSymbol),
        };
        if let Err(code) = result {
            self.gateway_reject(c, msg_type, code, 0);
        }
    }

    /// Takes web requests from the bridge: logins are checked against the same accounts and
    /// throttling tables as binary logins; commands are authorized by the same rule and
    /// sequenced through the same backend. Every reply goes out on the bridge.
    pub(super) fn service_web(&mut self) {
        let Some(web) = self.web.clone() else { return };
        if web.is_closed() {
            return;
        }
        web.rearm();
        if let Some((id, cmd)) = self.web_stalled {
            match self.try_submit(cmd) {
                Ok(seq) => {
                    self.web_stalled = None;
                    self.web_submitted(&web, id, seq);
                }
                Err(_) => return,
            }
        }
        let mut taken = 0;
        // Room for the one output a refused login or command needs.
        while taken < WEB_PER_TURN && web.room() > 0 {
            let Some(WebRequest { id, op }) = web.pop_request() else {
                break;
            };
            taken += 1;
            web.stats.requests.fetch_add(1, Ordering::Relaxed);
            match op {
                WebOp::Login {
                    ip,
                    login,
                    password,
                } => {
                    let now = Instant::now();
                    let check = self.auth.check(source_key(ip), &login, &password, now);
                    match check {
                        LoginCheck::Ok(..) => Stats::inc(&self.stats.logins),
                        LoginCheck::Bad => Stats::inc(&self.stats.login_failures),
                        LoginCheck::Throttled => Stats::inc(&self.stats.logins_throttled),
                    }
                    web.push(WebOutput {
                        request: id,
                        kind: WebOutKind::Login(check),
                    });
                    self.web_pushed = true;
                }
                WebOp::MdSync => {
                    // The copy is of the builder after every output routed so far, and the
                    // feed is on for every output routed after this reply: the web edge's copy,
                    // fed those, stays equal to the gateway's builder.
                    let synced = self.md.as_ref().is_some_and(|p| web.md_sync_from(p.md()));
                    let kind = if synced {
                        WebOutKind::MdSynced(web.stats.last_done_seq.load(Ordering::Relaxed))
                    } else {
                        WebOutKind::Rejected(RejectCode::UnknownSymbol)
                    };
                    web.push(WebOutput { request: id, kind });
                    self.web_pushed = true;
                }
                WebOp::Command { role, cmd } => {
                    if let Err(code) = authorize(&cmd, role) {
                        web.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        Stats::inc(&self.stats.gateway_rejects);
                        web.push(WebOutput {
                            request: id,
                            kind: WebOutKind::Rejected(code),
                        });
                        self.web_pushed = true;
                        continue;
                    }
                    match self.try_submit(cmd) {
                        Ok(seq) => self.web_submitted(&web, id, seq),
                        Err(_) => {
                            // The ring is full: keep it, and take no later web request first.
                            web.stats.backpressure.fetch_add(1, Ordering::Relaxed);
                            Stats::inc(&self.stats.backpressure);
                            self.web_stalled = Some((id, cmd));
                            return;
                        }
                    }
                }
            }
        }
    }

    pub(super) fn web_submitted(&mut self, web: &WebBridge, id: u64, seq: Seq) {
        Stats::inc(&self.stats.commands);
        web.stats.commands.fetch_add(1, Ordering::Relaxed);
        self.hold_in_flight(Pending {
            seq: seq.0,
            session: WEB_SESSION,
            gen: 0,
            msg_type: 0,
            request_id: id,
            frames: 0,
        });
    }

    pub(super) fn login(&mut self, c: usize, l: &crate::protocol::client::Login) {
        let now = Instant::now();
        let reject = |core: &mut Self, code: RejectCode| {
            let n = ServerMsg::LoginRejected {
                code: code.code(),
                name: crate::protocol::name32(code.name()),
            }
            .encode(&mut core.frame);
            let frame = core.frame;
            core.conns[c].push_out(&frame[..n]);
            core.close_after_flush(c, code);
        };
        let peer = self.conns[c].peer;
        let (account, role) = match self.auth.check(peer, &l.login, &l.password, now) {
            LoginCheck::Ok(a, r) => (a, r),
            LoginCheck::Bad => {
                Stats::inc(&self.stats.login_failures);
                if let Some(n) = self.logs.login_failed.ready(now) {
                    eprintln!(
                        "gateway: login failed: {:?} from {peer} (BAD_CREDENTIALS){}",
                        name32_str(&l.login),
                        Suppressed(n)
                    );
                }
                return reject(self, RejectCode::BadCredentials);
            }
            LoginCheck::Throttled => {
                Stats::inc(&self.stats.logins_throttled);
                if let Some(n) = self.logs.login_throttled.ready(now) {
                    eprintln!(
                        "gateway: login throttled: {:?} from {peer} (LOGIN_THROTTLED: repeated \
                         failures for this account or address){}",
                        name32_str(&l.login),
                        Suppressed(n)
                    );
                }
                return reject(self, RejectCode::LoginThrottled);
            }
        };
        let existing = self
            .sessions
            .iter()
            .position(|s| s.in_use && s.account == account && s.session_id == l.session_id);
        let full = |core: &mut Self, why: &str| {
            Stats::inc(&core.stats.server_full);
            if let Some(n) = core.logs.server_full.ready(now) {
                eprintln!(
                    "gateway: login refused: {:?} session {} from {peer} (SERVER_FULL: {why}){}",
                    name32_str(&l.login),
                    l.session_id,
                    Suppressed(n)
                );
            }
            reject(core, RejectCode::ServerFull)
        };
        if existing.is_some_and(|s| self.sessions[s].conn.is_some()) {
            return reject(self, RejectCode::AlreadyLoggedIn);
        }
        if self.logged_in >= self.config.conns_max {
            return full(self, "every logged-in connection slot is taken");
        }
        let s = match existing {
            Some(s) => s,
            None => {
                // A new session: a free slot if the account is below its share, else the
                // account's own longest-detached session. Never another account's: their
                // sequence numbers and retransmission rings are theirs until they return.
                let own = (0..self.sessions.len())
                    .filter(|&i| self.sessions[i].in_use && self.sessions[i].account == account);
                let held = own.clone().count();
                let own_detached = own
                    .filter(|&i| self.sessions[i].conn.is_none())
                    .min_by_key(|&i| self.sessions[i].detached_at);
                let free = if held < self.config.sessions_per_account_max {
                    self.sessions.iter().position(|s| !s.in_use)
                } else {
                    None
                };
                let Some(s) = free.or(own_detached) else {
                    return full(
                        self,
                        if held >= self.config.sessions_per_account_max {
                            "the account holds sessions_per_account_max sessions, none detached"
                        } else {
                            "the session table is full and the account has no detached session"
                        },
                    );
                };
                if self.sessions[s].in_use {
                    Stats::inc(&self.stats.sessions_displaced);
                }
                self.sessions[s].reset(account, l.session_id, role);
                self.users.assign(s, self.sessions[s].user());
                Stats::set(
                    &self.stats.sessions_in_use,
                    self.sessions.iter().filter(|s| s.in_use).count(),
                );
                s
            }
        };
        Stats::inc(&self.stats.logins);
        self.prelogin -= 1;
        self.logged_in += 1;
        self.gauges();
        let sess = &mut self.sessions[s];
        sess.conn = Some(c);
        let heartbeat = if l.heartbeat_ms == 0 {
            self.config.heartbeat_default
        } else {
            Duration::from_millis(u64::from(l.heartbeat_ms)).clamp(HEARTBEAT_MIN, HEARTBEAT_MAX)
        };
        let conn = &mut self.conns[c];
        conn.session = Some(s);
        conn.heartbeat = heartbeat;
        conn.cancel_on_disconnect = l.cancel_on_disconnect;
        // Retransmit from what the client last saw (or from the oldest frame still held).
        conn.sent_upto = l
            .last_seen_seq
            .min(sess.last_seq)
            .max(sess.oldest_seq() - 1);
        let msg = ServerMsg::LoginAccepted {
            session_id: l.session_id,
            role,
            heartbeat_ms: heartbeat.as_millis() as u32,
            last_seq: sess.last_seq,
        };
        let n = msg.encode(&mut self.frame);
        let frame = self.frame;
        self.conns[c].push_out(&frame[..n]);
        self.mark_dirty(c);
    }

    pub(super) fn gateway_reject(&mut self, c: usize, msg_type: u16, code: RejectCode, coid: u64) {
        Stats::inc(&self.stats.gateway_rejects);
        match self.conns[c].session {
            Some(s) => {
                let user = match self.sessions[s].role {
                    Role::User(u) | Role::Operator(u) => u,
                    Role::MarketData => 0,
                };
                self.emit(s, ServerMsg::rejected(0, user, msg_type, code, coid));
            }
            // Before login every error ends the connection.
            None => self.close(c, Some(code)),
        }
    }
}
