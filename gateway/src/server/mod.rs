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
//!
//! Hostile clients (docs/protocol.md, "Limits"): connections that have not logged in live in a
//! budget of their own (`prelogin_max`, at most `prelogin_per_addr_max` per source address,
//! `login_timeout` to log in), so they can never take one of the `conns_max` slots of logged-in
//! sessions; a login may only displace a detached session of its own account; failed logins are
//! throttled per account and per address (`auth.rs`); every table is a fixed size whose bound is
//! checked against the others at [`start`]; counters are readable while running
//! ([`ServerHandle::stats`], and the operator-only `Stats` message).

mod auth;
pub mod backend;
pub mod bridge;
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
use ringbook_engine::config::{GatewayAccount, GatewayConfig};
use ringbook_engine::{Command, Event, Query, RejectCode, Seq, UserId};

use auth::Auth;
pub use auth::{authorize, LoginCheck, Role, ThrottleConfig};
pub use backend::{Backend, BackendOutput, EngineBackend};
pub use bridge::WebBridge;
use bridge::{WebOp, WebOutKind, WebOutput, WebRequest};
pub use marketdata::{CANDLE_HISTORY_SENT, MD_FLUSH_INTERVAL, TICKER_INTERVAL};
pub use pipeline_backend::PipelineBackend;
use ringbook_engine::marketdata::MarketData;
use session::{Closing, Conn, Session, Stalled};

use crate::protocol::client::msg_type as cmt;
use crate::protocol::marketdata::{self as mdp, MdRequest};
use crate::protocol::server::GatewayStats;
use crate::protocol::server::BOOK_LEVELS_PER_MSG;
use crate::protocol::{name32_str, split_frame, ClientMsg, OrderInfo, ServerMsg, FRAME_BYTES_MAX};

/// Frames decoded from one connection per loop turn before the loop moves on.
pub const FRAMES_PER_TURN: usize = 256;
/// Open-order messages one query returns at most (the end message carries the total).
pub const OPEN_ORDERS_REPLY_MAX: u32 = 256;
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONN_TOKEN_BASE: usize = 2;
const TICK: Duration = Duration::from_millis(20);
/// After a failed `accept` (e.g. out of file descriptors) the listener is left alone this long,
/// doubling per further failure up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(20);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// At most one log line per this interval and kind; the rest are counted and reported with the
/// next line.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
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
    /// Logged-in connections at once; a login beyond is refused with `SERVER_FULL`.
    pub conns_max: usize,
    /// Connections that have not logged in yet, at once (a budget apart from `conns_max`):
    /// when it is full a new connection displaces the oldest of them.
    pub prelogin_max: usize,
    /// Not-yet-logged-in connections one source address may hold; more are refused at once.
    pub prelogin_per_addr_max: usize,
    /// Sessions remembered at once (attached or awaiting reconnect).
    pub sessions_max: usize,
    /// Sessions one account may hold. A login that needs a new session when its account is at
    /// this limit, or when the table is full, displaces that account's longest-detached
    /// session, never another account's; with none detached it is refused (`SERVER_FULL`).
    pub sessions_per_account_max: usize,
    /// Commands in flight (submitted, outputs not all routed) at once: the size of the table
    /// that routes their replies (a power of two). At the limit reading pauses, as when the
    /// engine's ring is full.
    pub in_flight_max: usize,
    /// Failed-login throttling.
    pub throttle: ThrottleConfig,
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
    /// The web edge's queues into and out of the loop (`None`: no web edge).
    pub web: Option<Arc<WebBridge>>,
    /// Never sleep in the kernel: poll the sockets with a zero timeout, turn after turn. The
    /// loop's thread then keeps one core busy all the time, idle or not — for the lowest
    /// round-trip latency where a core can be given to it (`serve --busy-poll`). Off by
    /// default: an idle server costs nothing.
    pub busy_poll: bool,
}

impl ServerConfig {
    /// Defaults for `listen` with these accounts.
    pub fn new(listen: SocketAddr, accounts: Vec<GatewayAccount>) -> ServerConfig {
        ServerConfig {
            listen,
            accounts,
            conns_max: 64,
            prelogin_max: 16,
            prelogin_per_addr_max: 4,
            sessions_max: 128,
            sessions_per_account_max: 16,
            in_flight_max: 1 << 16,
            throttle: ThrottleConfig::default(),
            retransmit_msgs: 4096,
            in_bytes: 16 << 10,
            out_bytes: 256 << 10,
            heartbeat_default: Duration::from_secs(1),
            heartbeat_timeouts: 3,
            login_timeout: Duration::from_secs(2),
            msgs_per_sec_max: 2_000_000,
            slow_consumer_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(2),
            currencies: 16,
            web: None,
            busy_poll: false,
        }
    }

    /// Defaults for `listen`, then the accounts and limits of the config's gateway section.
    pub fn from_config(listen: SocketAddr, gw: &GatewayConfig) -> ServerConfig {
        let mut c = ServerConfig::new(listen, gw.accounts.clone());
        c.conns_max = gw.conns_max;
        c.prelogin_max = gw.prelogin_max;
        c.prelogin_per_addr_max = gw.prelogin_per_addr_max;
        c.login_timeout = Duration::from_millis(gw.login_timeout_ms);
        c.sessions_max = gw.sessions_max;
        c.sessions_per_account_max = gw.sessions_per_account_max;
        c.throttle = ThrottleConfig {
            failures_free: gw.login_failures_free,
            backoff_first: Duration::from_millis(gw.login_backoff_first_ms),
            backoff_max: Duration::from_millis(gw.login_backoff_max_ms),
            addrs_tracked: gw.login_addrs_tracked,
        };
        c
    }

    /// Checks every relation the server's fixed tables rely on; the message names the fields.
    pub fn check(&self, in_flight_hint: Option<usize>) -> Result<(), String> {
        let need = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        need(self.conns_max >= 1, "conns_max must be at least 1".into())?;
        need(
            self.prelogin_max >= 1,
            "prelogin_max must be at least 1".into(),
        )?;
        need(
            (1..=self.prelogin_max).contains(&self.prelogin_per_addr_max),
            format!(
                "prelogin_per_addr_max = {} must be in 1..=prelogin_max ({})",
                self.prelogin_per_addr_max, self.prelogin_max
            ),
        )?;
        need(
            self.sessions_max >= self.conns_max,
            format!(
                "sessions_max = {} must be at least conns_max = {} (every logged-in connection \
                 holds a session)",
                self.sessions_max, self.conns_max
            ),
        )?;
        need(
            (1..=self.sessions_max).contains(&self.sessions_per_account_max),
            format!(
                "sessions_per_account_max = {} must be in 1..=sessions_max ({})",
                self.sessions_per_account_max, self.sessions_max
            ),
        )?;
        need(
            self.in_flight_max.is_power_of_two() && self.in_flight_max <= 1 << 24,
            format!(
                "in_flight_max = {} must be a power of two, at most 2^24",
                self.in_flight_max
            ),
        )?;
        if let Some(hint) = in_flight_hint {
            need(
                self.in_flight_max >= hint,
                format!(
                    "in_flight_max = {} is below the {hint} commands the engine can hold in \
                     flight",
                    self.in_flight_max
                ),
            )?;
        }
        let largest_reply = (OPEN_ORDERS_REPLY_MAX as usize + 1).max(self.currencies + 1);
        need(
            self.retransmit_msgs >= 2 * largest_reply,
            format!(
                "retransmit_msgs = {} must be at least twice the largest reply ({largest_reply} \
                 frames): a session pauses at half its ring",
                self.retransmit_msgs
            ),
        )?;
        need(
            self.in_bytes >= FRAME_BYTES_MAX && self.out_bytes >= 2 * FRAME_BYTES_MAX,
            format!(
                "in_bytes must hold a frame ({FRAME_BYTES_MAX}) and out_bytes two (in_bytes = \
                 {}, out_bytes = {})",
                self.in_bytes, self.out_bytes
            ),
        )?;
        need(
            !self.login_timeout.is_zero() && self.heartbeat_timeouts >= 1,
            "login_timeout and heartbeat_timeouts must be above zero".into(),
        )?;
        need(
            self.msgs_per_sec_max >= 1,
            "msgs_per_sec_max must be at least 1".into(),
        )?;
        need(
            self.throttle.failures_free >= 1
                && self.throttle.addrs_tracked >= 1
                && self.throttle.backoff_first <= self.throttle.backoff_max,
            "login_failures_free and login_addrs_tracked must be at least 1, and \
             login_backoff_first_ms at most login_backoff_max_ms"
                .into(),
        )?;
        Ok(())
    }
}

/// Why a server did not start or did not end cleanly.
#[derive(Debug)]
pub enum ServerError {
    /// Binding the listen address failed (busy port, no permission): the address and cause.
    Bind(SocketAddr, io::Error),
    /// Creating the poller or waker, or spawning the thread.
    Io(io::Error),
    /// The limits do not fit together (see [`ServerConfig::check`]).
    Config(String),
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
            ServerError::Config(m) => write!(f, "invalid gateway config: {m}"),
            ServerError::Panicked => write!(f, "the server thread panicked"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Counters a monitor reads while the server runs (relaxed: each is an independent tally), and
/// three gauges. An operator session reads the same through the `Stats` message.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at accept: their source address already held
    /// `prelogin_per_addr_max` connections that had not logged in.
    pub connections_refused: AtomicU64,
    /// Not-yet-logged-in connections closed to make room for a newer one (the pre-login budget
    /// was full).
    pub prelogin_displaced: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Successful logins.
    pub logins: AtomicU64,
    /// Failed logins (bad credentials).
    pub login_failures: AtomicU64,
    /// Logins refused while the account or the address was in back-off.
    pub logins_throttled: AtomicU64,
    /// Logins refused with `SERVER_FULL` (no logged-in slot, or no session to be had without
    /// displacing another account's).
    pub server_full: AtomicU64,
    /// Detached sessions forgotten to make room for a new session of the same account.
    pub sessions_displaced: AtomicU64,
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
    /// Gauge: connections open that have not logged in.
    pub conns_prelogin: AtomicU64,
    /// Gauge: logged-in connections.
    pub conns_logged_in: AtomicU64,
    /// Gauge: sessions held (attached or detached).
    pub sessions_in_use: AtomicU64,
    /// Market data: depth updates sent to a subscriber as they happened.
    pub md_depth_updates: AtomicU64,
    /// Market data: conflated depth messages sent (subscription snapshots included).
    pub md_conflated: AtomicU64,
    /// Market data: trades a subscriber missed because its buffer had no room.
    pub md_trades_dropped: AtomicU64,
    /// `Tick` commands sent because a live GTD or DAY order's expiry had come and no command
    /// brought the time (not in the `Stats` message; `/metrics` shows it).
    pub clock_ticks: AtomicU64,
}

impl Stats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn set(c: &AtomicU64, v: usize) {
        c.store(v as u64, Ordering::Relaxed);
    }

    /// Every counter and gauge, as the `Stats` message carries them.
    pub fn snapshot(&self) -> GatewayStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStats {
            connections: g(&self.connections),
            connections_refused: g(&self.connections_refused),
            prelogin_displaced: g(&self.prelogin_displaced),
            accept_errors: g(&self.accept_errors),
            logins: g(&self.logins),
            login_failures: g(&self.login_failures),
            logins_throttled: g(&self.logins_throttled),
            server_full: g(&self.server_full),
            sessions_displaced: g(&self.sessions_displaced),
            frames_in: g(&self.frames_in),
            msgs_out: g(&self.msgs_out),
            commands: g(&self.commands),
            backpressure: g(&self.backpressure),
            gateway_rejects: g(&self.gateway_rejects),
            protocol_disconnects: g(&self.protocol_disconnects),
            slow_consumers: g(&self.slow_consumers),
            outbound_pauses: g(&self.outbound_pauses),
            timeouts: g(&self.timeouts),
            cancel_on_disconnect: g(&self.cancel_on_disconnect),
            conns_prelogin: g(&self.conns_prelogin),
            conns_logged_in: g(&self.conns_logged_in),
            sessions_in_use: g(&self.sessions_in_use),
        }
    }
}

/// One kind of log line, at most one per [`LOG_INTERVAL`]; the lines in between are counted
/// and the count is reported with the next line that is printed.
#[derive(Debug, Default)]
struct RateLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    /// `Some(lines suppressed since the last one)` if a line may be printed now.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The rate-limited log lines, one limiter per kind.
#[derive(Debug, Default)]
struct Logs {
    login_failed: RateLog,
    login_throttled: RateLog,
    server_full: RateLog,
    refused: RateLog,
    displaced: RateLog,
    accept: RateLog,
}

/// ` (N similar suppressed)` when N > 0.
struct Suppressed(u64);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 0 {
            write!(f, " ({} similar suppressed)", self.0)
        } else {
            Ok(())
        }
    }
}

/// Cancel-on-disconnect mass cancels waiting for room in the engine, one per user at most (a
/// later mass cancel covers everything an earlier one would have), so a fixed ring of one entry
/// per configured user never overflows.
#[derive(Debug)]
struct CodQueue {
    users: Box<[u32]>,
    head: usize,
    len: usize,
}

impl CodQueue {
    fn new(capacity: usize) -> CodQueue {
        CodQueue {
            users: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn contains(&self, user: u32) -> bool {
        (0..self.len).any(|i| self.users[(self.head + i) % self.users.len()] == user)
    }

    /// Queues `user` unless already queued; false if the ring is full (which the sizing rules
    /// out: one entry per configured user).
    fn push(&mut self, user: u32) -> bool {
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

    fn front(&self) -> Option<u32> {
        (self.len > 0).then(|| self.users[self.head])
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.users.len();
            self.len -= 1;
        }
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

    /// Whether the server loop has ended by itself (the backend failed, or the loop
    /// panicked): [`ServerHandle::shutdown`] then returns at once.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
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

/// A listening socket bound before [`start_on`]: a caller that binds first fails on a busy
/// port before it opens anything else (`ringbook serve` binds before it opens the journal).
#[derive(Debug)]
pub struct Listener(TcpListener);

impl Listener {
    /// Binds `addr` ([`ServerError::Bind`] if it cannot).
    pub fn bind(addr: SocketAddr) -> Result<Listener, ServerError> {
        TcpListener::bind(addr)
            .map(Listener)
            .map_err(|e| ServerError::Bind(addr, e))
    }
}

/// Binds `config.listen` and starts the loop on its own thread, without market data (a
/// subscription is refused with `UNKNOWN_SYMBOL`).
pub fn start<B: Backend + Send + 'static>(
    config: ServerConfig,
    backend: B,
) -> Result<ServerHandle<B>, ServerError> {
    start_on(Listener::bind(config.listen)?, config, backend, None)
}

/// Like [`start`], publishing market data built by `md` from the backend's events
/// (docs/market-data.md, "Publication"). `md` must reflect the state the backend starts from:
/// `MarketData::new` for an empty engine, or one rebuilt from the journal
/// (`replay_journal_outputs`) or seeded from a recovered engine (`MarketData::from_engine`).
pub fn start_with_market_data<B: Backend + Send + 'static>(
    config: ServerConfig,
    backend: B,
    md: Option<MarketData>,
) -> Result<ServerHandle<B>, ServerError> {
    start_on(Listener::bind(config.listen)?, config, backend, md)
}

/// Starts the loop on its own thread, accepting on `listener` (bound already; `config.listen`
/// is not used), publishing market data built by `md` when there is one (see
/// [`start_with_market_data`]).
pub fn start_on<B: Backend + Send + 'static>(
    listener: Listener,
    config: ServerConfig,
    mut backend: B,
    md: Option<MarketData>,
) -> Result<ServerHandle<B>, ServerError> {
    config
        .check(backend.in_flight_hint())
        .map_err(ServerError::Config)?;
    let mut listener = listener.0;
    let addr = listener.local_addr().map_err(ServerError::Io)?;
    let poll = Poll::new().map_err(ServerError::Io)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(ServerError::Io)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
    backend.set_waker(waker.clone());
    if let Some(web) = &config.web {
        web.attach(waker.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let now = Instant::now();
    // Slots for logged-in connections plus the separate pre-login budget: pre-login
    // connections never exceed theirs, so `conns_max` slots are always left for logins.
    let slots = config.conns_max + config.prelogin_max;
    let auth = Auth::new(&config.accounts, config.throttle);
    let mut users: Vec<u32> = auth
        .roles()
        .filter_map(|r| match r {
            Role::User(u) => Some(u),
            Role::Operator(_) | Role::MarketData => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    let core = Core {
        conns: (0..slots)
            .map(|_| Conn::new(config.in_bytes, config.out_bytes, now))
            .collect(),
        sessions: (0..config.sessions_max)
            .map(|_| Session::new(config.retransmit_msgs, now))
            .collect(),
        auth,
        pending: vec![Pending::default(); config.in_flight_max].into_boxed_slice(),
        in_flight: 0,
        book_levels: BookLevelsAcc::default(),
        ready: Vec::with_capacity(slots),
        ready_work: Vec::with_capacity(slots),
        dirty: Vec::with_capacity(slots),
        dirty_work: Vec::with_capacity(slots),
        cod: CodQueue::new(users.len()),
        prelogin: 0,
        logged_in: 0,
        accept_backoff: Duration::ZERO,
        accept_resume: None,
        logs: Logs::default(),
        outputs: Vec::with_capacity(1 << 16),
        md: md.map(|md| marketdata::Publisher::new(md, slots, now, stats.clone())),
        web: config.web.clone(),
        web_stalled: None,
        web_pushed: false,
        clock_tick: None,
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

const NO_SESSION: u32 = u32::MAX;
/// The in-flight entry of a web request's command: `request_id` is the web request's id.
const WEB_SESSION: u32 = u32::MAX - 1;
/// Web requests taken from the bridge per loop turn (fairness with the sockets).
const WEB_PER_TURN: usize = 256;

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
    /// The session slot's generation when the command was sent: a reply for a slot since
    /// given to another session goes nowhere.
    gen: u32,
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
    /// In-flight commands, indexed by sequence number modulo its (power-of-two) length; at
    /// most that many are in flight at once (`in_flight`), so no entry is overwritten early.
    pending: Box<[Pending]>,
    in_flight: usize,
    /// Levels of the book query being answered, gathered into `BookLevels` messages (one
    /// command's events are contiguous in the output, so one accumulator serves every session).
    book_levels: BookLevelsAcc,
    ready: Vec<usize>,
    ready_work: Vec<usize>,
    dirty: Vec<usize>,
    dirty_work: Vec<usize>,
    cod: CodQueue,
    /// Open connections that have not logged in, and logged-in ones.
    prelogin: usize,
    logged_in: usize,
    /// After a failed accept: the current back-off and when to try again.
    accept_backoff: Duration,
    accept_resume: Option<Instant>,
    logs: Logs,
    outputs: Vec<(Seq, BackendOutput)>,
    /// Market-data publication (docs/market-data.md), when enabled.
    md: Option<marketdata::Publisher>,
    /// The web edge's queues, if it runs.
    web: Option<Arc<WebBridge>>,
    /// A web command the engine could not take yet (its ring was full): retried first, and no
    /// further web request is taken meanwhile (order is kept).
    web_stalled: Option<(u64, Command)>,
    /// This turn pushed web outputs: unpark the dispatcher.
    web_pushed: bool,
    /// The sequence of the engine-clock `Tick` in flight, if any (`tick_engine_clock`).
    clock_tick: Option<u64>,
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
            let timeout = if self.config.busy_poll
                || !self.ready.is_empty()
                || self.cod.len > 0
                || self.web_stalled.is_some()
                || self.web.as_ref().is_some_and(|w| w.has_requests())
            {
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
                    LISTENER => self.accept(Instant::now()),
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
            if let Some(t) = self.accept_resume {
                let now = Instant::now();
                if now >= t {
                    // Retry a listener left alone after a failed accept: connections that
                    // queued meanwhile raised no new readiness event.
                    self.accept_resume = None;
                    self.accept(now);
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
                self.service_web();
            }
            self.route_outputs();
            if let Some(p) = self.md.as_mut() {
                p.pump(Instant::now(), &mut self.conns, &mut self.dirty);
            }
            if std::mem::take(&mut self.web_pushed) {
                if let Some(web) = &self.web {
                    web.notify();
                }
            }
            self.flush_dirty();
            let now = Instant::now();
            if now.duration_since(last_timers) >= TICK {
                last_timers = now;
                self.timers(now);
            }
            if self.backend.failed() {
                // The engine died: nothing submitted will be answered. Tell every client and
                // stop, so that the process exits and can be restarted (it recovers).
                eprintln!("gateway: the engine failed (a pipeline thread died): stopping");
                for c in 0..self.conns.len() {
                    if self.conns[c].stream.is_some() {
                        self.close(c, Some(RejectCode::ShuttingDown));
                    }
                }
                break;
            }
            if stop.load(Ordering::Acquire) || signal::received() {
                let started = *stopping.get_or_insert_with(|| {
                    if let Some(web) = &self.web {
                        web.set_ready(false);
                    }
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

    fn accept(&mut self, now: Instant) {
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
    fn gauges(&self) {
        Stats::set(&self.stats.conns_prelogin, self.prelogin);
        Stats::set(&self.stats.conns_logged_in, self.logged_in);
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
                        // The stream cannot be resynchronised. The frames before this one were
                        // valid: their replies are delivered first (`close_after_replies`).
                        Stats::inc(&self.stats.protocol_disconnects);
                        self.compact_in(c, consumed);
                        self.close_after_replies(c, e.code());
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
                let allowed = authorize(&cmd, role);
                if let Err(code) = allowed {
                    return self.gateway_reject(c, msg_type, code, coid);
                }
                // Client order ids are checked by the engine, per user, in sequence and across
                // restarts (DUPLICATE_CLIENT_ORDER_ID; docs/protocol.md, "Idempotency"): no
                // per-session check here that a restart or a new session would forget.
                self.submit(c, s, cmd, msg_type, 0);
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
                if let Err(code) = authorize(&Command::Query(q), role) {
                    return self.gateway_reject(c, msg_type, code, client_order_id.0);
                }
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::OpenOrders { request_id, user } => {
                let q = Query::OpenOrders {
                    user,
                    limit: OPEN_ORDERS_REPLY_MAX,
                };
                if let Err(code) = authorize(&Command::Query(q), role) {
                    return self.gateway_reject(c, msg_type, code, 0);
                }
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::Balances { request_id, user } => {
                let q = Query::Balances { user };
                if let Err(code) = authorize(&Command::Query(q), role) {
                    return self.gateway_reject(c, msg_type, code, 0);
                }
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::BookSnapshot {
                request_id,
                symbol,
                depth,
            } => {
                // Public data: any session may ask (`authorize`). The engine rejects an unknown
                // symbol.
                let q = Query::Book {
                    symbol,
                    depth: u32::from(depth),
                };
                self.submit(c, s, Command::Query(q), msg_type, request_id);
            }
            ClientMsg::Stats { request_id } => {
                // Server-wide activity (volumes, failed logins) is the operators' business.
                if !matches!(role, Role::Operator(_)) {
                    return self.gateway_reject(c, msg_type, RejectCode::OperatorOnly, 0);
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
        match self.try_submit(cmd) {
            Ok(seq) => {
                Stats::inc(&self.stats.commands);
                self.note_pending(seq, Some(s), &cmd, msg_type, request_id);
            }
            Err(_) => self.conns[c].stalled = Some(stalled),
        }
    }

    /// The backend's `try_submit`, unless the in-flight table is full (then the command is
    /// handed back, as by a full ring).
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, backend::SubmitError> {
        if self.in_flight >= self.pending.len() {
            return Err(backend::SubmitError::Full(cmd));
        }
        self.backend.try_submit(cmd)
    }

    /// Takes web requests from the bridge: logins are checked against the same accounts and
    /// throttling tables as binary logins; commands are authorized by the same rule and
    /// sequenced through the same backend. Every reply goes out on the bridge.
    fn service_web(&mut self) {
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

    fn web_submitted(&mut self, web: &WebBridge, id: u64, seq: Seq) {
        Stats::inc(&self.stats.commands);
        web.stats.commands.fetch_add(1, Ordering::Relaxed);
        self.in_flight += 1;
        let mask = self.pending.len() - 1;
        let slot = &mut self.pending[(seq.0 as usize) & mask];
        debug_assert!(
            slot.seq == 0,
            "an in-flight entry overwritten before its Done"
        );
        *slot = Pending {
            seq: seq.0,
            session: WEB_SESSION,
            gen: 0,
            msg_type: 0,
            request_id: id,
            frames: 0,
        };
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
        let gen = match session {
            Some(s) => {
                self.sessions[s].in_flight += frames;
                self.sessions[s].gen
            }
            None => 0,
        };
        self.in_flight += 1;
        let mask = self.pending.len() - 1;
        let slot = &mut self.pending[(seq.0 as usize) & mask];
        debug_assert!(
            slot.seq == 0,
            "an in-flight entry overwritten before its Done"
        );
        *slot = Pending {
            seq: seq.0,
            session: session.map_or(NO_SESSION, |s| s as u32),
            gen,
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
    fn done(&mut self, seq: Seq, ts: u64) {
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
                // The web edge's market-data builder sees every command's end (one output per
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
    fn origin(&self, p: &Pending) -> Option<usize> {
        let s = p.session as usize;
        (s < self.sessions.len() && self.sessions[s].gen == p.gen).then_some(s)
    }

    /// Sends one event to the sessions it concerns: every session of each user it names, and
    /// the session that submitted the command (operators see their own actions' results).
    fn route(&mut self, seq: Seq, e: &Event) {
        let p = self.pending[(seq.0 as usize) & (self.pending.len() - 1)];
        let origin = if p.seq == seq.0 {
            self.origin(&p)
        } else {
            None
        };
        let ref_type = if p.seq == seq.0 { p.msg_type } else { 0 };
        let request_id = if p.seq == seq.0 { p.request_id } else { 0 };
        if let Some(web) = &self.web {
            // A web request's events go to it; user-facing events go to the WebSocket
            // listeners (if any); every event goes to the web edge's market-data builder when
            // its feed is on. One output either way.
            let request = if p.seq == seq.0 && p.session == WEB_SESSION {
                p.request_id
            } else {
                0
            };
            if request != 0 || web.md_feed() || (web.has_listeners() && bridge::is_user_event(e)) {
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
            Event::OrderStatus {
                user,
                order,
                finished,
                filled_notional,
                ..
            } => {
                let (found, detail, info, finished_ts) = match (order, finished) {
                    (Some(v), _) => (1, 0, OrderInfo::from_view(&v), 0),
                    (None, Some(f)) => (
                        1,
                        f.status.detail(),
                        OrderInfo::from_finished(user.0, &f),
                        f.ts,
                    ),
                    (None, None) => (0, 0, OrderInfo::default(), 0),
                };
                self.reply(
                    origin,
                    ServerMsg::OrderStatus {
                        seq: 0,
                        request_id,
                        found,
                        detail,
                        order: info,
                        filled_notional,
                        finished_ts,
                    },
                )
            }
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
            self.pump_and_write(c);
            if self.conns[c].stream.is_none() {
                return;
            }
            let Some(cl) = self.conns[c].closing else {
                break;
            };
            if cl.notice {
                // Closing after a protocol error: first every reply to the valid frames
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
    fn pump_and_write(&mut self, c: usize) {
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
    }

    /// Stops reading; closes once what is queued (a login refusal) is written.
    fn close_after_flush(&mut self, c: usize, code: RejectCode) {
        self.conns[c].closing = Some(Closing {
            code: Some(code),
            notice: false,
            since: Instant::now(),
        });
        self.mark_dirty(c);
    }

    /// Stops reading; once the session's commands in flight are answered and every frame is
    /// written, sends `Disconnect(code)` and closes. Before login there is nothing to wait
    /// for: it closes at once.
    fn close_after_replies(&mut self, c: usize, code: RejectCode) {
        if self.conns[c].session.is_none() {
            return self.close(c, Some(code));
        }
        self.conns[c].closing = Some(Closing {
            code: Some(code),
            notice: true,
            since: Instant::now(),
        });
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

    /// Cancel-on-disconnect mass cancels wait here while the engine is full.
    fn retry_deferred(&mut self) {
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

    /// Heartbeats out, timeouts for silent or never-logged-in connections, and the engine's
    /// clock.
    fn timers(&mut self, now: Instant) {
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

/// The source a connection is counted under (pre-login cap, login throttling): its IPv4
/// address, or the /64 prefix of an IPv6 address (one host usually holds a whole /64).
fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
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

/// Encodes `msg` with the session's next sequence number into its retransmission ring.
fn emit_into(sess: &mut Session, msg: ServerMsg) {
    let (seq, slot) = sess.next_slot();
    let n = msg.with_seq(seq).encode(slot);
    sess.commit(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_slash_64s() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("127.0.0.2"), "127.0.0.2");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
    }

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

    #[test]
    fn log_lines_are_rate_limited_with_a_suppressed_count() {
        let mut l = RateLog::default();
        let t = Instant::now();
        assert_eq!(l.ready(t), Some(0));
        assert_eq!(l.ready(t + Duration::from_millis(10)), None);
        assert_eq!(l.ready(t + Duration::from_millis(999)), None);
        assert_eq!(l.ready(t + LOG_INTERVAL), Some(2));
        assert_eq!(l.ready(t + LOG_INTERVAL * 3), Some(0));
        assert_eq!(Suppressed(2).to_string(), " (2 similar suppressed)");
        assert_eq!(Suppressed(0).to_string(), "");
    }
}
