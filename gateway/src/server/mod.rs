//! The server: one mio event loop on its own thread, in front of a [`Backend`].
//!
//! ```text
//! accept ─▶ conn (bounded in/out buffers) ─▶ decode (no allocation) ─▶ session checks
//!   ─▶ Backend::try_submit (full: keep the command, stop reading that socket, retry)
//!   ◀─ Backend::drain ─▶ route each event to its user's sessions (sequenced, retransmittable)
//!   ─▶ pump session ring into conn out buffer ─▶ write
//! ```
//!
//! Edge-triggered readiness: a readable socket is read until `WouldBlock`, but at most
//! [`FRAMES_PER_TURN`] frames per connection per loop turn, so one busy client cannot starve
//! the others; a connection with unread input stays on the ready list. Nothing in the loop
//! allocates after start-up except the in-process backend's output queue on mass cancels.

mod auth;
pub mod backend;
mod marketdata;
mod pipeline_backend;
mod session;
pub mod signal;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use ringbook_engine::config::GatewayAccount;
use ringbook_engine::{Command, Event, Query, RejectCode, Seq, UserId};

pub use auth::Role;
use auth::{Auth, LoginCheck};
pub use backend::{Backend, BackendOutput, EngineBackend};
pub use marketdata::{CANDLE_HISTORY_SENT, MD_FLUSH_INTERVAL, TICKER_INTERVAL};
pub use pipeline_backend::PipelineBackend;
use ringbook_engine::marketdata::MarketData;
use session::{Conn, Session, Stalled};

use crate::protocol::client::msg_type as cmt;
use crate::protocol::marketdata::{self as mdp, MdRequest};
use crate::protocol::server::BOOK_LEVELS_PER_MSG;
use crate::protocol::{split_frame, ClientMsg, OrderInfo, ServerMsg, FRAME_BYTES_MAX};

/// Frames decoded from one connection per loop turn before the loop moves on.
pub const FRAMES_PER_TURN: usize = 256;
/// Open-order messages one query returns at most (the end message carries the total).
pub const OPEN_ORDERS_REPLY_MAX: u32 = 256;
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONN_TOKEN_BASE: usize = 2;
const TICK: Duration = Duration::from_millis(20);
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

/// Limits and timings of a server. Every buffer is allocated once, at [`start`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Logins (from the config's `[[gateway.accounts]]`).
    pub accounts: Vec<GatewayAccount>,
    /// Connections at once; more are refused with `SERVER_FULL`.
    pub conns_max: usize,
    /// Sessions remembered at once (attached or awaiting reconnect); the longest-detached is
    /// forgotten first.
    pub sessions_max: usize,
    /// Sequenced frames each session keeps for retransmission (also how far a slow reader
    /// may fall behind before it is disconnected).
    pub retransmit_msgs: usize,
    /// Inbound buffer per connection.
    pub in_bytes: usize,
    /// Outbound buffer per connection.
    pub out_bytes: usize,
    /// Heartbeat interval when the client asks for none.
    pub heartbeat_default: Duration,
    /// Silence longer than this many heartbeat intervals ends the session.
    pub heartbeat_timeouts: u32,
    /// Time a new connection has to log in.
    pub login_timeout: Duration,
    /// Messages per second one connection may send (token bucket; burst = one second's worth).
    pub msgs_per_sec_max: u64,
    /// How long a connection may stay paused on its outbound backlog (reading stopped, the
    /// socket taking nothing) before it is disconnected as a slow consumer.
    pub slow_consumer_timeout: Duration,
    /// How long shutdown waits for outputs and buffered writes.
    pub drain_timeout: Duration,
    /// Currencies in the engine's configuration: a balances reply is one message per
    /// currency plus an end, which the server counts in a session's backlog before it asks.
    pub currencies: usize,
}

impl ServerConfig {
    /// Defaults for `listen` with these accounts.
    pub fn new(listen: SocketAddr, accounts: Vec<GatewayAccount>) -> ServerConfig {
        ServerConfig {
            listen,
            accounts,
            conns_max: 64,
            sessions_max: 128,
            retransmit_msgs: 4096,
            in_bytes: 16 << 10,
            out_bytes: 256 << 10,
            heartbeat_default: Duration::from_secs(1),
            heartbeat_timeouts: 3,
            login_timeout: Duration::from_secs(5),
            msgs_per_sec_max: 2_000_000,
            slow_consumer_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(2),
            currencies: 16,
        }
    }
}

/// Why a server did not start or did not end cleanly.
#[derive(Debug)]
pub enum ServerError {
    /// Binding the listen address failed (busy port, no permission): the address and cause.
    Bind(SocketAddr, io::Error),
    /// Creating the poller or waker, or spawning the thread.
    Io(io::Error),
    /// The server thread panicked.
    Panicked,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Bind(a, e) => write!(
                f,
                "cannot listen on {a}: {e} (is another server running on this port?)"
            ),
            ServerError::Io(e) => write!(f, "server I/O: {e}"),
            ServerError::Panicked => write!(f, "the server thread panicked"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Counters a monitor reads while the server runs (relaxed: each is an independent tally).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Successful logins.
    pub logins: AtomicU64,
    /// Failed logins (bad credentials).
    pub login_failures: AtomicU64,
    /// Logins refused while the peer was in back-off.
    pub logins_throttled: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent (sequenced ones counted once, when sequenced).
    pub msgs_out: AtomicU64,
    /// Commands submitted to the engine.
    pub commands: AtomicU64,
    /// Times a command found the engine's ring full and reading paused.
    pub backpressure: AtomicU64,
    /// Messages rejected by the gateway (1xxx codes).
    pub gateway_rejects: AtomicU64,
    /// Disconnects for protocol violations (bad length, flood).
    pub protocol_disconnects: AtomicU64,
    /// Disconnects of slow readers.
    pub slow_consumers: AtomicU64,
    /// Times a connection's reading paused because its session's outbound backlog was above
    /// the high-water mark (a client pipelining faster than it reads).
    pub outbound_pauses: AtomicU64,
    /// Disconnects for heartbeat or login timeout.
    pub timeouts: AtomicU64,
    /// Cancel-on-disconnect mass cancels issued.
    pub cancel_on_disconnect: AtomicU64,
    /// Market data: depth updates sent to a subscriber as they happened.
    pub md_depth_updates: AtomicU64,
    /// Market data: conflated depth messages sent (subscription snapshots included).
    pub md_conflated: AtomicU64,
    /// Market data: trades a subscriber missed because its buffer had no room.
    pub md_trades_dropped: AtomicU64,
}

impl Stats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle<B> {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<B>>,
}

impl<B> ServerHandle<B> {
    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Graceful shutdown: stop accepting, stop reading, deliver outputs of commands already
    /// submitted, flush, tell every client `SHUTTING_DOWN`, close. Returns the backend (so the
    /// caller can shut a pipeline down and flush its journal).
    pub fn shutdown(mut self) -> Result<B, ServerError> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.thread.take().map_or(Err(ServerError::Panicked), |t| {
            t.join().map_err(|_| ServerError::Panicked)
        })
    }
}

/// Binds `config.listen` and starts the loop on its own thread, without market data (a
/// subscription is refused with `UNKNOWN_SYMBOL`).
pub fn start<B: Backend + Send + 'static>(
    config: ServerConfig,
    backend: B,
) -> Result<ServerHandle<B>, ServerError> {
    start_with_market_data(config, backend, None)
}

/// Like [`start`], publishing market data built by `md` from the backend's events
/// (docs/market-data.md, "Publication"). `md` must reflect the state the backend starts from:
/// `MarketData::new` for an empty engine, or one rebuilt from the journal
/// (`replay_journal_outputs`) or seeded from a recovered engine (`MarketData::from_engine`).
pub fn start_with_market_data<B: Backend + Send + 'static>(
    config: ServerConfig,
    mut backend: B,
    md: Option<MarketData>,
) -> Result<ServerHandle<B>, ServerError> {
    let mut listener =
        TcpListener::bind(config.listen).map_err(|e| ServerError::Bind(config.listen, e))?;
    let addr = listener.local_addr().map_err(ServerError::Io)?;
    let poll = Poll::new().map_err(ServerError::Io)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(ServerError::Io)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
    backend.set_waker(waker.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let now = Instant::now();
    let core = Core {
        conns: (0..config.conns_max)
            .map(|_| Conn::new(config.in_bytes, config.out_bytes, now))
            .collect(),
        sessions: (0..config.sessions_max)
            .map(|_| Session::new(config.retransmit_msgs, now))
            .collect(),
        auth: Auth::new(&config.accounts),
        pending: vec![Pending::default(); PENDING_MAX].into_boxed_slice(),
        book_levels: BookLevelsAcc::default(),
        ready: Vec::with_capacity(config.conns_max),
        ready_work: Vec::with_capacity(config.conns_max),
        dirty: Vec::with_capacity(config.conns_max),
        dirty_work: Vec::with_capacity(config.conns_max),
        deferred: Vec::with_capacity(config.conns_max),
        outputs: Vec::with_capacity(1 << 16),
        md: md.map(|md| marketdata::Publisher::new(md, config.conns_max, now, stats.clone())),
        stats: stats.clone(),
        config,
        backend,
        listener: Some(listener),
        poll,
        frame: [0u8; FRAME_BYTES_MAX],
    };
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ringbook-gateway".into())
        .spawn(move || core.run(&stop2))
        .map_err(ServerError::Io)?;
    Ok(ServerHandle {
        addr,
        stop,
        waker,
        stats,
        thread: Some(thread),
    })
}

/// In-flight commands remembered for routing their replies (indexed by sequence number).
const PENDING_MAX: usize = 1 << 16;
const NO_SESSION: u32 = u32::MAX;

/// Book levels of one side waiting to fill a `BookLevels` message.
#[derive(Clone, Copy, Debug, Default)]
struct BookLevelsAcc {
    symbol: u16,
    side: u8,
    count: usize,
    levels: [(i64, u64); BOOK_LEVELS_PER_MSG],
}

#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    seq: u64,
    session: u32,
    msg_type: u16,
    /// A query's request id, echoed in its replies (0 for commands).
    request_id: u64,
    /// What it added to its session's `in_flight` (`frames_expected`).
    frames: u32,
}

struct Core<B> {
    conns: Vec<Conn>,
    sessions: Vec<Session>,
    auth: Auth,
    pending: Box<[Pending]>,
    /// Levels of the book query being answered, gathered into `BookLevels` messages (one
    /// command's events are contiguous in the output, so one accumulator serves every session).
    book_levels: BookLevelsAcc,
    ready: Vec<usize>,
    ready_work: Vec<usize>,
    dirty: Vec<usize>,
    dirty_work: Vec<usize>,
    deferred: Vec<Command>,
    outputs: Vec<(Seq, BackendOutput)>,
    /// Market-data publication (docs/market-data.md), when enabled.
    md: Option<marketdata::Publisher>,
    stats: Arc<Stats>,
    config: ServerConfig,
    backend: B,
    listener: Option<TcpListener>,
    poll: Poll,
    frame: [u8; FRAME_BYTES_MAX],
}

impl<B: Backend> Core<B> {
    fn run(mut self, stop: &AtomicBool) -> B {
        let mut events = Events::with_capacity(1024);
        let mut last_timers = Instant::now();
        let mut stopping: Option<Instant> = None;
        loop {
            let timeout = if !self.ready.is_empty() || !self.deferred.is_empty() {
                Duration::ZERO
            } else if self.md.as_ref().is_some_and(|p| p.wants_turn()) {
                marketdata::MD_FLUSH_INTERVAL
            } else {
                TICK
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("gateway: poll failed: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let c = t - CONN_TOKEN_BASE;
                        if c < self.conns.len() && self.conns[c].stream.is_some() {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                self.mark_ready(c);
                            }
                            if ev.is_writable() {
                                self.mark_dirty(c);
                            }
                        }
                    }
                }
            }
            if stopping.is_none() {
                self.retry_deferred();
                // Serve last turn's ready list; connections that still have work re-mark
                // themselves onto `ready` (both lists are preallocated and swapped).
                std::mem::swap(&mut self.ready, &mut self.ready_work);
                for i in 0..self.ready_work.len() {
                    let c = self.ready_work[i];
                    self.conns[c].in_ready = false;
                }
                for i in 0..self.ready_work.len() {
                    let c = self.ready_work[i];
                    self.service_read(c);
                }
                self.ready_work.clear();
            }
            self.route_outputs();
            if let Some(p) = self.md.as_mut() {
                p.pump(Instant::now(), &mut self.conns, &mut self.dirty);
            }
            self.flush_dirty();
            let now = Instant::now();
            if now.duration_since(last_timers) >= TICK {
                last_timers = now;
                self.timers(now);
            }
            if stop.load(Ordering::Acquire) || signal::received() {
                let started = *stopping.get_or_insert_with(|| {
                    if let Some(mut l) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                    now
                });
                // Drain: outputs of submitted commands reach their sessions, buffers flush.
                let busy = self
                    .conns
                    .iter()
                    .any(|c| c.stream.is_some() && c.pending_out());
                if !busy || now.duration_since(started) >= self.config.drain_timeout {
                    for c in 0..self.conns.len() {
                        if self.conns[c].stream.is_some() {
                            self.close(c, Some(RejectCode::ShuttingDown));
                        }
                    }
                    break;
                }
            }
        }
        self.backend
    }

    fn mark_ready(&mut self, c: usize) {
        if !self.conns[c].in_ready {
            self.conns[c].in_ready = true;
            self.ready.push(c);
        }
    }

    fn mark_dirty(&mut self, c: usize) {
        if !self.conns[c].in_dirty {
            self.conns[c].in_dirty = true;
            self.dirty.push(c);
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    Stats::inc(&self.stats.connections);
                    let _ = stream.set_nodelay(true);
                    let Some(c) = self.conns.iter().position(|c| c.stream.is_none()) else {
                        let mut f = [0u8; FRAME_BYTES_MAX];
                        let n = ServerMsg::disconnect(Some(RejectCode::ServerFull)).encode(&mut f);
                        let _ = stream.write(&f[..n]);
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
                    conn.peer = peer.ip();
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
                    if let Some(p) = self.md.as_mut() {
                        p.reset_conn(c);
                    }
                    self.mark_ready(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Reads and handles up to FRAMES_PER_TURN frames; re-marks the connection ready if more
    /// may be waiting.
    fn service_read(&mut self, c: usize) {
        if self.conns[c].stream.is_none() || self.conns[c].closing.is_some() {
            return;
        }
        if let Some(st) = self.conns[c].stalled {
            if self.over_high_water(c) {
                // Still paused on the outbound backlog: `flush` resumes it.
                self.conns[c].paused = true;
                return;
            }
            self.conns[c].paused = false;
            match self.backend.try_submit(st.cmd) {
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
                            self.compact_in(c, consumed);
                            if self.conns[c].paused {
                                // Outbound back-pressure: `flush` re-marks it ready.
                                Stats::inc(&self.stats.outbound_pauses);
                            } else {
                                Stats::inc(&self.stats.backpressure);
                                self.mark_ready(c);
                            }
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        Stats::inc(&self.stats.protocol_disconnects);
                        self.close(c, Some(e.code()));
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

    fn compact_in(&mut self, c: usize, consumed: usize) {
        let conn = &mut self.conns[c];
        if consumed > 0 {
            conn.inbuf.copy_within(consumed..conn.in_len, 0);
            conn.in_len -= consumed;
        }
    }

    fn take_budget(&mut self, c: usize) -> bool {
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

    fn handle(&mut self, c: usize, msg: ClientMsg) {
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
                self.conns[c].logged_out = true;
                self.close(c, None);
            }
            ClientMsg::Heartbeat => {}
            ClientMsg::Command(cmd) => {
                let coid = match cmd {
                    Command::NewOrder(o) => o.client_order_id.0,
                    Command::Cancel {
                        client_order_id, ..
                    }
                    | Command::Amend {
                        client_order_id, ..
                    } => client_order_id.0,
                    _ => 0,
                };
                let allowed = match (cmd, role) {
                    (Command::Deposit { .. }, Role::User(_)) => Err(RejectCode::OperatorOnly),
                    (Command::Deposit { .. }, Role::Operator(_)) => Ok(()),
                    (
                        Command::ApproveWithdrawal { operator, .. }
                        | Command::RejectWithdrawal { operator, .. },
                        Role::Operator(op),
                    ) => {
                        if operator.0 == op {
                            Ok(())
                        } else {
                            Err(RejectCode::NotYourAccount)
                        }
                    }
                    (
                        Command::ApproveWithdrawal { .. } | Command::RejectWithdrawal { .. },
                        Role::User(_),
                    ) => Err(RejectCode::OperatorOnly),
                    (
                        Command::Deposit { .. }
                        | Command::ApproveWithdrawal { .. }
                        | Command::RejectWithdrawal { .. },
                        Role::MarketData,
                    ) => Err(RejectCode::OperatorOnly),
                    (_, Role::Operator(_) | Role::MarketData) => Err(RejectCode::UserOnly),
                    (_, Role::User(u)) => {
                        if cmd.user() == Some(UserId(u)) {
                            Ok(())
                        } else {
                            Err(RejectCode::NotYourAccount)
                        }
                    }
                };
                if let Err(code) = allowed {
                    return self.gateway_reject(c, msg_type, code, coid);
                }
                if let Command::NewOrder(o) = cmd {
                    let sess = &mut self.sessions[s];
                    if o.client_order_id.0 <= sess.coid_hwm {
                        return self.gateway_reject(
                            c,
                            msg_type,
                            RejectCode::ClientOrderIdNotIncreasing,
                            coid,
                        );
                    }
                    sess.coid_hwm = o.client_order_id.0;
                }
                self.submit(c, s, cmd, msg_type, 0);
            }
            ClientMsg::OrderStatus {
                request_id,
                user,
                client_order_id,
            } => {
                if role != Role::User(user.0) {
                    return self.gateway_reject(c, msg_type, query_denied(role), client_order_id.0);
                }
                let q = Query::Order {
                    user,
                    client_order_id,
                };
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::OpenOrders { request_id, user } => {
                if role != Role::User(user.0) {
                    return self.gateway_reject(c, msg_type, query_denied(role), 0);
                }
                let q = Query::OpenOrders {
                    user,
                    limit: OPEN_ORDERS_REPLY_MAX,
                };
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::Balances { request_id, user } => {
                if role != Role::User(user.0) {
                    return self.gateway_reject(c, msg_type, query_denied(role), 0);
                }
                let q = Query::Balances { user };
                self.submit(c, s, Command::Query(q), msg_type, request_id);
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
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
        }
    }

    /// A market-data subscribe or unsubscribe: any logged-in session may ask (the data is
    /// public); refused with `UNKNOWN_SYMBOL` for a symbol not configured, or when the server
    /// publishes no market data.
    fn handle_md(&mut self, c: usize, msg_type: u16, req: &MdRequest) {
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

    /// Hands a checked command or query to the engine: held (and the socket paused) while the
    /// session is too far behind on output or the engine's ring is full.
    fn submit(&mut self, c: usize, s: usize, cmd: Command, msg_type: u16, request_id: u64) {
        let stalled = Stalled {
            cmd,
            msg_type,
            request_id,
        };
        if self.over_high_water(c) {
            // The session is too far behind on output: hold the command and stop reading this
            // socket until the client has taken enough.
            self.conns[c].paused = true;
            self.conns[c].stalled = Some(stalled);
            return;
        }
        match self.backend.try_submit(cmd) {
            Ok(seq) => {
                Stats::inc(&self.stats.commands);
                self.note_pending(seq, Some(s), &cmd, msg_type, request_id);
            }
            Err(_) => self.conns[c].stalled = Some(stalled),
        }
    }

    fn login(&mut self, c: usize, l: &crate::protocol::client::Login) {
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
        let (account, role) = match self
            .auth
            .check(self.conns[c].peer, &l.login, &l.password, now)
        {
            LoginCheck::Ok(a, r) => (a, r),
            LoginCheck::Bad => {
                Stats::inc(&self.stats.login_failures);
                return reject(self, RejectCode::BadCredentials);
            }
            LoginCheck::Throttled => {
                Stats::inc(&self.stats.logins_throttled);
                return reject(self, RejectCode::LoginThrottled);
            }
        };
        let existing = self
            .sessions
            .iter()
            .position(|s| s.in_use && s.account == account && s.session_id == l.session_id);
        let s = match existing {
            Some(s) if self.sessions[s].conn.is_some() => {
                return reject(self, RejectCode::AlreadyLoggedIn)
            }
            Some(s) => s,
            None => {
                let free = self.sessions.iter().position(|s| !s.in_use).or_else(|| {
                    (0..self.sessions.len())
                        .filter(|&i| self.sessions[i].conn.is_none())
                        .min_by_key(|&i| self.sessions[i].detached_at)
                });
                let Some(s) = free else {
                    return reject(self, RejectCode::ServerFull);
                };
                self.sessions[s].reset(account, l.session_id, role);
                s
            }
        };
        Stats::inc(&self.stats.logins);
        let sess = &mut self.sessions[s];
        sess.conn = Some(c);
        let heartbeat = if l.heartbeat_ms == 0 {
            self.config.heartbeat_default
        } else {
            Duration::from_millis(u64::from(l.heartbeat_ms.clamp(100, 60_000)))
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
        let (role_n, id) = match role {
            Role::User(u) => (0, u),
            Role::Operator(o) => (1, o),
            Role::MarketData => (2, 0),
        };
        let msg = ServerMsg::LoginAccepted {
            session_id: l.session_id,
            role: role_n,
            id,
            heartbeat_ms: heartbeat.as_millis() as u32,
            last_seq: sess.last_seq,
        };
        let n = msg.encode(&mut self.frame);
        let frame = self.frame;
        self.conns[c].push_out(&frame[..n]);
        self.mark_dirty(c);
    }

    /// Frames session-owning connection `c` has yet to take (sequenced but not in its buffer),
    /// plus the expected output of its commands in flight.
    fn backlog(&self, c: usize) -> u64 {
        let conn = &self.conns[c];
        conn.session.map_or(0, |s| {
            let sess = &self.sessions[s];
            sess.last_seq.saturating_sub(conn.sent_upto) + sess.in_flight
        })
    }

    /// Above half the retransmission ring: stop taking commands from this connection.
    fn over_high_water(&self, c: usize) -> bool {
        self.backlog(c) > self.config.retransmit_msgs as u64 / 2
    }

    fn note_pending(
        &mut self,
        seq: Seq,
        session: Option<usize>,
        cmd: &Command,
        msg_type: u16,
        request_id: u64,
    ) {
        let frames = frames_expected(cmd, self.config.currencies);
        if let Some(s) = session {
            self.sessions[s].in_flight += frames;
        }
        let slot = &mut self.pending[(seq.0 as usize) % PENDING_MAX];
        *slot = Pending {
            seq: seq.0,
            session: session.map_or(NO_SESSION, |s| s as u32),
            msg_type,
            request_id,
            frames: frames as u32,
        };
    }

    fn gateway_reject(&mut self, c: usize, msg_type: u16, code: RejectCode, coid: u64) {
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

    /// Appends a sequenced message to session `s` (and marks its connection for writing).
    fn emit(&mut self, s: usize, msg: ServerMsg) {
        emit_into(&mut self.sessions[s], msg);
        Stats::inc(&self.stats.msgs_out);
        if let Some(c) = self.sessions[s].conn {
            self.mark_dirty(c);
        }
    }

    fn route_outputs(&mut self) {
        let mut outs = std::mem::take(&mut self.outputs);
        // In rounds of at most the buffer's capacity, so it never grows.
        loop {
            let room = outs.capacity();
            let n = self.backend.drain(room, &mut |seq, o| outs.push((seq, o)));
            for &(seq, o) in &outs {
                match o {
                    BackendOutput::Event(e) => {
                        self.route(seq, &e);
                        if let Some(p) = self.md.as_mut() {
                            p.on_event(&e, &mut self.conns);
                        }
                    }
                    BackendOutput::Done(ts) => {
                        self.done(seq);
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

    /// A command is fully processed: it no longer counts in its session's backlog.
    fn done(&mut self, seq: Seq) {
        let p = self.pending[(seq.0 as usize) % PENDING_MAX];
        if p.seq != seq.0 || p.session == NO_SESSION {
            return;
        }
        let sess = &mut self.sessions[p.session as usize];
        sess.in_flight = sess.in_flight.saturating_sub(u64::from(p.frames));
        if let Some(c) = sess.conn {
            if self.conns[c].paused {
                self.mark_dirty(c);
            }
        }
    }

    /// Sends one event to the sessions it concerns: every session of each user it names, and
    /// the session that submitted the command (operators see their own actions' results).
    fn route(&mut self, seq: Seq, e: &Event) {
        let p = self.pending[(seq.0 as usize) % PENDING_MAX];
        let origin = (p.seq == seq.0 && p.session != NO_SESSION).then_some(p.session as usize);
        let ref_type = if p.seq == seq.0 { p.msg_type } else { 0 };
        let request_id = if p.seq == seq.0 { p.request_id } else { 0 };
        match *e {
            Event::Accepted {
                user,
                symbol,
                client_order_id,
                order_id,
                side,
                order_type,
                price,
                qty,
                ..
            } => {
                self.send_to_user(
                    user.0,
                    None,
                    ServerMsg::Accepted {
                        seq: 0,
                        user: user.0,
                        symbol: symbol.0,
                        side: side as u8,
                        order_type: order_type as u8,
                        client_order_id: client_order_id.0,
                        order_id: order_id.0,
                        price: price.0,
                        qty: qty.0,
                    },
                );
            }
            Event::Rejected {
                user,
                client_order_id,
                code,
            } => {
                if let Some(s) = origin {
                    self.emit(
                        s,
                        ServerMsg::rejected(0, user.0, ref_type, code, client_order_id.0),
                    );
                }
            }
            Event::Trade(t) => {
                for (fill, role, side, contra) in [
                    (t.maker, 0u8, t.taker_side.opposite(), t.taker.order_id),
                    (t.taker, 1u8, t.taker_side, t.maker.order_id),
                ] {
                    self.send_to_user(
                        fill.user.0,
                        None,
                        ServerMsg::Fill {
                            seq: 0,
                            user: fill.user.0,
                            symbol: t.symbol.0,
                            side: side as u8,
                            role,
                            client_order_id: fill.client_order_id.0,
                            order_id: fill.order_id.0,
                            price: t.price.0,
                            qty: t.qty.0,
                            leaves_qty: fill.leaves_qty.0,
                            cum_qty: fill.cum_qty.0,
                            fee: fill.fee,
                            trade_id: t.trade_id.0,
                            ts: t.ts,
                            contra_order_id: contra.0,
                        },
                    );
                }
            }
            Event::Cancelled {
                user,
                symbol,
                client_order_id,
                order_id,
                side,
                price,
                qty,
                leaves_qty,
                reason,
            } => {
                self.send_to_user(
                    user.0,
                    None,
                    ServerMsg::Cancelled {
                        seq: 0,
                        user: user.0,
                        symbol: symbol.0,
                        side: side as u8,
                        reason: reason as u8,
                        client_order_id: client_order_id.0,
                        order_id: order_id.0,
                        price: price.0,
                        qty: qty.0,
                        leaves_qty: leaves_qty.0,
                    },
                );
            }
            Event::Amended {
                user,
                symbol,
                client_order_id,
                order_id,
                price,
                qty,
            } => {
                self.send_to_user(
                    user.0,
                    None,
                    ServerMsg::Amended {
                        seq: 0,
                        user: user.0,
                        symbol: symbol.0,
                        client_order_id: client_order_id.0,
                        order_id: order_id.0,
                        price: price.0,
                        qty: qty.0,
                    },
                );
            }
            Event::Triggered {
                user,
                symbol,
                client_order_id,
                order_id,
            } => {
                self.send_to_user(
                    user.0,
                    None,
                    ServerMsg::Triggered {
                        seq: 0,
                        user: user.0,
                        symbol: symbol.0,
                        client_order_id: client_order_id.0,
                        order_id: order_id.0,
                    },
                );
            }
            Event::MassCancelled {
                user,
                symbol,
                count,
            } => {
                self.send_to_user(
                    user.0,
                    None,
                    ServerMsg::MassCancelled {
                        seq: 0,
                        user: user.0,
                        symbol: symbol.map_or(u16::MAX, |s| s.0),
                        count,
                    },
                );
            }
            Event::Deposited {
                user,
                currency,
                amount,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::Deposited {
                        seq: 0,
                        user: user.0,
                        currency: currency.0,
                        amount,
                    },
                );
            }
            Event::WithdrawalRequested {
                withdrawal_id,
                user,
                currency,
                amount,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::WithdrawalRequested {
                        seq: 0,
                        withdrawal_id: withdrawal_id.0,
                        user: user.0,
                        currency: currency.0,
                        amount,
                    },
                );
            }
            Event::WithdrawalApproved {
                withdrawal_id,
                operator,
                user,
                approvals,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::WithdrawalApproved {
                        seq: 0,
                        withdrawal_id: withdrawal_id.0,
                        operator: operator.0,
                        user: user.0,
                        approvals,
                    },
                );
            }
            Event::WithdrawalCompleted {
                withdrawal_id,
                user,
                currency,
                amount,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::WithdrawalCompleted {
                        seq: 0,
                        withdrawal_id: withdrawal_id.0,
                        user: user.0,
                        currency: currency.0,
                        amount,
                    },
                );
            }
            Event::WithdrawalRejected {
                withdrawal_id,
                operator,
                user,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::WithdrawalRejected {
                        seq: 0,
                        withdrawal_id: withdrawal_id.0,
                        operator: operator.0,
                        user: user.0,
                    },
                );
            }
            Event::OperatorRejected {
                operator,
                withdrawal_id,
                code,
            } => {
                if let Some(s) = origin {
                    self.emit(
                        s,
                        ServerMsg::OperatorRejected {
                            seq: 0,
                            withdrawal_id: withdrawal_id.0,
                            operator: operator.0,
                            code: code.code(),
                            name: crate::protocol::name32(code.name()),
                        },
                    );
                }
            }
            Event::BalanceUpdate {
                user,
                currency,
                available,
                locked,
            } => {
                self.send_to_user(
                    user.0,
                    origin,
                    ServerMsg::BalanceUpdate {
                        seq: 0,
                        user: user.0,
                        currency: currency.0,
                        available,
                        locked,
                    },
                );
            }
            // Query replies: to the asking session only, with its request id.
            Event::OrderStatus { order, .. } => self.reply(
                origin,
                ServerMsg::OrderStatus {
                    seq: 0,
                    request_id,
                    found: order.is_some() as u8,
                    order: order.map(|v| OrderInfo::from_view(&v)).unwrap_or_default(),
                },
            ),
            Event::OpenOrder(v) => self.reply(
                origin,
                ServerMsg::OpenOrder {
                    seq: 0,
                    request_id,
                    order: OrderInfo::from_view(&v),
                },
            ),
            Event::OpenOrdersEnd { count, .. } => self.reply(
                origin,
                ServerMsg::OpenOrdersEnd {
                    seq: 0,
                    request_id,
                    count,
                },
            ),
            Event::Balance {
                currency,
                available,
                locked,
                ..
            } => self.reply(
                origin,
                ServerMsg::Balance {
                    seq: 0,
                    request_id,
                    currency: currency.0,
                    available,
                    locked,
                },
            ),
            Event::BalancesEnd { count, .. } => self.reply(
                origin,
                ServerMsg::BalancesEnd {
                    seq: 0,
                    request_id,
                    count,
                },
            ),
            Event::BookLevel {
                symbol,
                side,
                price,
                qty,
            } => {
                let acc = &mut self.book_levels;
                if acc.count > 0 && (acc.side != side as u8 || acc.count == BOOK_LEVELS_PER_MSG) {
                    self.flush_book_levels(origin, request_id);
                }
                let acc = &mut self.book_levels;
                acc.symbol = symbol.0;
                acc.side = side as u8;
                acc.levels[acc.count] = (price.0, qty.0);
                acc.count += 1;
            }
            Event::BookEnd {
                symbol,
                bid_levels,
                ask_levels,
            } => {
                self.flush_book_levels(origin, request_id);
                self.reply(
                    origin,
                    ServerMsg::BookEnd {
                        seq: 0,
                        request_id,
                        symbol: symbol.0,
                        bid_levels,
                        ask_levels,
                    },
                );
            }
        }
    }

    /// A query reply to the session that asked (dropped if it has gone).
    fn reply(&mut self, origin: Option<usize>, msg: ServerMsg) {
        if let Some(s) = origin {
            self.emit(s, msg);
        }
    }

    /// Sends the book levels gathered so far (one side, at most `BOOK_LEVELS_PER_MSG`) as one
    /// `BookLevels` message.
    fn flush_book_levels(&mut self, origin: Option<usize>, request_id: u64) {
        let acc = std::mem::take(&mut self.book_levels);
        if acc.count == 0 {
            return;
        }
        self.reply(
            origin,
            ServerMsg::BookLevels {
                seq: 0,
                request_id,
                symbol: acc.symbol,
                side: acc.side,
                count: acc.count as u8,
                levels: acc.levels,
            },
        );
    }

    /// Emits `msg` to every session of `user`, and to `also` if that is not one of them.
    fn send_to_user(&mut self, user: u32, also: Option<usize>, msg: ServerMsg) {
        let mut sent_also = false;
        for s in 0..self.sessions.len() {
            let sess = &self.sessions[s];
            if sess.in_use && sess.role == Role::User(user) {
                sent_also |= also == Some(s);
                self.emit(s, msg);
            }
        }
        if let (Some(s), false) = (also, sent_also) {
            self.emit(s, msg);
        }
    }

    /// Moves session frames into each dirty connection's buffer and writes what the socket takes.
    fn flush_dirty(&mut self) {
        std::mem::swap(&mut self.dirty, &mut self.dirty_work);
        for i in 0..self.dirty_work.len() {
            let c = self.dirty_work[i];
            self.conns[c].in_dirty = false;
            self.flush(c);
        }
        self.dirty_work.clear();
    }

    fn flush(&mut self, c: usize) {
        if self.conns[c].stream.is_none() {
            return;
        }
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
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(c, None),
            }
        }
        if let Some(code) = self.conns[c].closing {
            if !self.conns[c].pending_out() {
                self.finish_close(c, code);
            }
            return;
        }
        // Resume reading once the backlog is down to a quarter of the ring (hysteresis).
        if self.conns[c].paused && self.backlog(c) <= self.config.retransmit_msgs as u64 / 4 {
            self.mark_ready(c);
        }
    }

    fn close_after_flush(&mut self, c: usize, code: RejectCode) {
        self.conns[c].closing = Some(Some(code));
        self.mark_dirty(c);
    }

    /// Tells the client why (best effort), then closes at once.
    fn close(&mut self, c: usize, code: Option<RejectCode>) {
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

    fn finish_close(&mut self, c: usize, _code: Option<RejectCode>) {
        let conn = &mut self.conns[c];
        let Some(mut stream) = conn.stream.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut stream);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        drop(stream);
        conn.closing = None;
        conn.stalled = None;
        conn.in_len = 0;
        conn.out_start = 0;
        conn.out_end = 0;
        let cod = conn.cancel_on_disconnect && !conn.logged_out;
        if let Some(p) = self.md.as_mut() {
            p.reset_conn(c);
        }
        let conn = &mut self.conns[c];
        if let Some(s) = conn.session.take() {
            let sess = &mut self.sessions[s];
            sess.conn = None;
            sess.detached_at = Instant::now();
            if let (true, Some(user)) = (cod, sess.user()) {
                Stats::inc(&self.stats.cancel_on_disconnect);
                self.deferred.push(Command::MassCancel {
                    user: UserId(user),
                    symbol: None,
                });
            }
        }
    }

    /// Cancel-on-disconnect mass cancels wait here while the engine is full.
    fn retry_deferred(&mut self) {
        while let Some(&cmd) = self.deferred.first() {
            match self.backend.try_submit(cmd) {
                Ok(seq) => {
                    self.deferred.remove(0);
                    self.note_pending(seq, None, &cmd, cmt::MASS_CANCEL, 0);
                }
                Err(_) => {
                    Stats::inc(&self.stats.backpressure);
                    break;
                }
            }
        }
    }

    /// Heartbeats out, and timeouts for silent or never-logged-in connections.
    fn timers(&mut self, now: Instant) {
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            if conn.stream.is_none() {
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
                if conn.pending_out()
                    && now.duration_since(conn.last_drain) > self.config.slow_consumer_timeout
                {
                    Stats::inc(&self.stats.slow_consumers);
                    self.close(c, Some(RejectCode::SlowConsumer));
                }
                continue;
            }
            if now.duration_since(conn.last_recv) > conn.heartbeat * self.config.heartbeat_timeouts
            {
                Stats::inc(&self.stats.timeouts);
                self.close(c, Some(RejectCode::HeartbeatTimeout));
                continue;
            }
            if now.duration_since(conn.last_send) >= conn.heartbeat {
                let n = ServerMsg::Heartbeat.encode(&mut self.frame);
                let frame = self.frame;
                let conn = &mut self.conns[c];
                conn.last_send = now;
                if !conn.push_out(&frame[..n]) {
                    Stats::inc(&self.stats.slow_consumers);
                    self.close(c, Some(RejectCode::SlowConsumer));
                    continue;
                }
                self.mark_dirty(c);
            }
        }
        self.flush_dirty();
    }
}

/// A decoded client frame: a session or order message, or a market-data request.
enum Incoming {
    Msg(ClientMsg),
    Md(MdRequest),
}

fn query_denied(role: Role) -> RejectCode {
    match role {
        Role::User(_) => RejectCode::NotYourAccount,
        Role::Operator(_) | Role::MarketData => RejectCode::UserOnly,
    }
}

/// Encodes `msg` with the session's next sequence number into its retransmission ring.
fn emit_into(sess: &mut Session, msg: ServerMsg) {
    let (seq, slot) = sess.next_slot();
    let n = msg.with_seq(seq).encode(slot);
    sess.commit(n);
}
