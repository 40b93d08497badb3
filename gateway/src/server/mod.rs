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
//!
//! The server by concern, one file each:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | configuration, start and shutdown, the loop (`Core::run`) |
//! | `sockets.rs` | sockets: accept (pre-login budget), read and decode, write, close |
//! | `inbound.rs` | what clients ask: binary messages, logins, the web edge's requests |
//! | `auth.rs` | credentials, login throttling, and [`authorize`]: who may send which command |
//! | `backpressure.rs` | the in-flight table, the ring-full and outbound-backlog pauses |
//! | `route.rs` | engine outputs to sessions (via [`crate::protocol::translate`]), web, market data |
//! | `users.rs` | the user→sessions index the routing uses |
//! | `timers.rs` | the engine clock tick (GTD/DAY expiry while idle), heartbeats and timeouts |
//! | `session.rs` | the session and connection tables (fixed buffers) |
//! | `stats.rs` | counters, gauges and rate-limited log lines |
//! | `bridge.rs` | the web edge's queues into and out of the loop |
//! | `marketdata.rs` | market-data publication |

mod auth;
pub mod backend;
mod backpressure;
pub mod bridge;
mod inbound;
pub mod limits;
mod marketdata;
mod pipeline_backend;
mod route;
pub mod sched;
mod session;
pub mod signal;
mod sockets;
mod stats;
mod timers;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use ringbook_engine::config::{Config, GatewayAccount, GatewayConfig};
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::{Command, RejectCode, Seq};

use auth::Auth;
pub use auth::{authorize, authorize_stats, LoginCheck, Role, ThrottleConfig};
pub use backend::{Backend, BackendOutput, EngineBackend};
use backpressure::{CodQueue, Pending};
pub use bridge::WebBridge;
pub use marketdata::{CANDLE_HISTORY_SENT, MD_FLUSH_INTERVAL, TICKER_INTERVAL};
pub use pipeline_backend::PipelineBackend;
use session::{Conn, Session};
use stats::Logs;
pub use stats::Stats;
use users::UserIndex;

use crate::protocol::translate::BookLevelsAcc;
use crate::protocol::{ReferenceData, ServerMsg, FRAME_BYTES_MAX};

/// Frames decoded from one connection per loop turn before the loop moves on.
pub const FRAMES_PER_TURN: usize = 256;
/// Open-order messages one query returns at most (the end message carries the total).
pub const OPEN_ORDERS_REPLY_MAX: u32 = 256;
/// Currency and symbol messages one reference-data page holds at most (its end message says
/// where the next page starts).
pub const REFERENCE_REPLY_MAX: u32 = 256;
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONN_TOKEN_BASE: usize = 2;
const TICK: Duration = Duration::from_millis(20);
/// A turn held up this much longer than its poll's timeout (or this long after the poll) stood
/// still — the process was stopped, or had no CPU — and leaves its timers to the next turn,
/// which reads first (see the main loop). Half the shortest heartbeat interval (100 ms).
const STALL: Duration = Duration::from_millis(50);
/// After a failed `accept` (e.g. out of file descriptors) the listener is left alone this long,
/// doubling per further failure up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(20);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

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
    /// client taking nothing: no write succeeds and the socket's kernel send queue shrinks by
    /// less than `slow_consumer_drain_bytes`) before it is disconnected as a slow consumer.
    pub slow_consumer_timeout: Duration,
    /// What a paused client must take of its socket's queued bytes per
    /// `slow_consumer_timeout`, when no write of the gateway's succeeds meanwhile, not to be
    /// cut off (16 KiB).
    pub slow_consumer_drain_bytes: usize,
    /// How long shutdown waits for outputs and buffered writes.
    pub drain_timeout: Duration,
    /// Currencies in the engine's configuration: a balances reply is one message per
    /// currency plus an end, which the server counts in a session's backlog before it asks.
    pub currencies: usize,
    /// The currencies and symbols that answer a `ReferenceData` request (set from the engine's
    /// configuration with [`ServerConfig::reference_data`]). `None`: the server publishes no
    /// reference data, and answers such a request with an end message counting 0 and 0.
    pub reference: Option<Arc<ReferenceData>>,
    /// The web edge's queues into and out of the loop (`None`: no web edge).
    pub web: Option<Arc<WebBridge>>,
    /// Never sleep in the kernel: poll the sockets with a zero timeout, turn after turn. The
    /// loop's thread then keeps one core busy all the time, idle or not — for the lowest
    /// round-trip latency where a core can be given to it (`serve --busy-poll`). Off by
    /// default: an idle server costs nothing.
    pub busy_poll: bool,
}

/// The most logged-in connections (`conns_max`), and the most not yet logged in
/// (`prelogin_max`): each has its buffers allocated at start.
pub const CONNS_MAX: usize = 4096;
/// The most sessions remembered (`sessions_max`): each keeps a ring of `retransmit_msgs`
/// frames.
pub const SESSIONS_MAX: usize = 4 * CONNS_MAX;
/// The most source addresses with a failed-login tally of their own (`login_addrs_tracked`).
pub const LOGIN_ADDRS_TRACKED_MAX: usize = 1 << 20;
/// The most frames a session's retransmission ring holds (`retransmit_msgs`).
pub const RETRANSMIT_MSGS_MAX: usize = 1 << 20;
/// The largest inbound or outbound buffer of a connection, and the largest
/// `slow_consumer_drain_bytes`.
pub const BUFFER_BYTES_MAX: usize = 64 << 20;
/// The shortest and longest heartbeat interval a client may ask for at login (and the
/// server's default may be).
pub const HEARTBEAT_MIN: Duration = Duration::from_millis(100);
/// See [`HEARTBEAT_MIN`].
pub const HEARTBEAT_MAX: Duration = Duration::from_secs(60);
/// The longest slow-consumer and drain timeouts.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(3600);

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
            slow_consumer_drain_bytes: 16 << 10,
            drain_timeout: Duration::from_secs(2),
            currencies: 16,
            reference: None,
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
        c.retransmit_msgs = gw.retransmit_msgs;
        c.in_bytes = gw.in_bytes;
        c.out_bytes = gw.out_bytes;
        c.heartbeat_default = Duration::from_millis(gw.heartbeat_default_ms);
        c.heartbeat_timeouts = gw.heartbeat_timeouts;
        c.msgs_per_sec_max = gw.msgs_per_sec_max;
        c.slow_consumer_timeout = Duration::from_millis(gw.slow_consumer_timeout_ms);
        c.slow_consumer_drain_bytes = gw.slow_consumer_drain_bytes;
        c.drain_timeout = Duration::from_millis(gw.drain_timeout_ms);
        c.throttle = ThrottleConfig {
            failures_free: gw.login_failures_free,
            backoff_first: Duration::from_millis(gw.login_backoff_first_ms),
            backoff_max: Duration::from_millis(gw.login_backoff_max_ms),
            addrs_tracked: gw.login_addrs_tracked,
        };
        c
    }

    /// Publishes `engine`'s currencies and symbols as the server's reference data, and sizes
    /// balances replies for its currencies (`currencies`).
    pub fn reference_data(&mut self, engine: &Config) {
        self.currencies = engine.currencies.len();
        self.reference = Some(Arc::new(ReferenceData::of(engine)));
    }

    /// The bytes of the buffers the server allocates at start: input and output buffers for
    /// each of `conns_max + prelogin_max` connection slots, and a retransmission ring per
    /// session (docs/operations.md).
    pub fn buffer_bytes(&self) -> u64 {
        let conns = (self.conns_max as u64).saturating_add(self.prelogin_max as u64);
        let conn = (self.in_bytes as u64).saturating_add(self.out_bytes as u64);
        let session = (self.retransmit_msgs as u64).saturating_mul(FRAME_BYTES_MAX as u64 + 2);
        conns
            .saturating_mul(conn)
            .saturating_add((self.sessions_max as u64).saturating_mul(session))
    }

    /// Checks every relation the server's fixed tables rely on; the message names the fields.
    pub fn check(&self, in_flight_hint: Option<usize>) -> Result<(), String> {
        let need = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        need(
            (1..=CONNS_MAX).contains(&self.conns_max),
            format!("conns_max = {} must be in 1..={CONNS_MAX}", self.conns_max),
        )?;
        need(
            (1..=CONNS_MAX).contains(&self.prelogin_max),
            format!(
                "prelogin_max = {} must be in 1..={CONNS_MAX}",
                self.prelogin_max
            ),
        )?;
        need(
            self.sessions_max <= SESSIONS_MAX,
            format!(
                "sessions_max = {} must be at most {SESSIONS_MAX}",
                self.sessions_max
            ),
        )?;
        need(
            self.throttle.addrs_tracked <= LOGIN_ADDRS_TRACKED_MAX,
            format!(
                "login_addrs_tracked = {} must be at most {LOGIN_ADDRS_TRACKED_MAX}",
                self.throttle.addrs_tracked
            ),
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
        let largest_reply =
            (OPEN_ORDERS_REPLY_MAX.max(REFERENCE_REPLY_MAX) as usize + 1).max(self.currencies + 1);
        need(
            self.retransmit_msgs >= 2 * largest_reply,
            format!(
                "retransmit_msgs = {} must be at least twice the largest reply ({largest_reply} \
                 frames): a session pauses at half its ring",
                self.retransmit_msgs
            ),
        )?;
        need(
            self.retransmit_msgs <= RETRANSMIT_MSGS_MAX,
            format!(
                "retransmit_msgs = {} must be at most {RETRANSMIT_MSGS_MAX}",
                self.retransmit_msgs
            ),
        )?;
        need(
            (FRAME_BYTES_MAX..=BUFFER_BYTES_MAX).contains(&self.in_bytes),
            format!(
                "in_bytes = {} must be in {FRAME_BYTES_MAX}..={BUFFER_BYTES_MAX} (it holds a \
                 frame at least)",
                self.in_bytes
            ),
        )?;
        need(
            (2 * FRAME_BYTES_MAX..=BUFFER_BYTES_MAX).contains(&self.out_bytes),
            format!(
                "out_bytes = {} must be in {}..={BUFFER_BYTES_MAX} (it holds two frames at \
                 least)",
                self.out_bytes,
                2 * FRAME_BYTES_MAX
            ),
        )?;
        need(
            !self.login_timeout.is_zero() && self.heartbeat_timeouts >= 1,
            "login_timeout and heartbeat_timeouts must be above zero".into(),
        )?;
        need(
            (HEARTBEAT_MIN..=HEARTBEAT_MAX).contains(&self.heartbeat_default),
            format!(
                "heartbeat_default_ms = {} must be in {}..={} (the range a client may ask for)",
                self.heartbeat_default.as_millis(),
                HEARTBEAT_MIN.as_millis(),
                HEARTBEAT_MAX.as_millis()
            ),
        )?;
        need(
            (2 * TICK..=TIMEOUT_MAX).contains(&self.slow_consumer_timeout),
            format!(
                "slow_consumer_timeout_ms = {} must be in {}..={}",
                self.slow_consumer_timeout.as_millis(),
                (2 * TICK).as_millis(),
                TIMEOUT_MAX.as_millis()
            ),
        )?;
        need(
            (1..=BUFFER_BYTES_MAX).contains(&self.slow_consumer_drain_bytes),
            format!(
                "slow_consumer_drain_bytes = {} must be in 1..={BUFFER_BYTES_MAX}",
                self.slow_consumer_drain_bytes
            ),
        )?;
        need(
            (TICK..=TIMEOUT_MAX).contains(&self.drain_timeout),
            format!(
                "drain_timeout_ms = {} must be in {}..={}",
                self.drain_timeout.as_millis(),
                TICK.as_millis(),
                TIMEOUT_MAX.as_millis()
            ),
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
    Bind(SocketAddr, std::io::Error),
    /// Creating the poller or waker, or spawning the thread.
    Io(std::io::Error),
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
    /// Binds `addr` with a backlog of [`limits::LISTEN_BACKLOG`] ([`ServerError::Bind`] if it
    /// cannot).
    pub fn bind(addr: SocketAddr) -> Result<Listener, ServerError> {
        let bound = limits::listen(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(TcpListener::from_std(l))
        });
        bound.map(Listener).map_err(|e| ServerError::Bind(addr, e))
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
        users: UserIndex::new(&users, config.sessions_max),
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
        reference: config
            .reference
            .as_ref()
            .map_or_else(Vec::new, |r| r.messages())
            .into_boxed_slice(),
        reference_currencies: config.reference.as_ref().map_or(0, |r| r.currencies.len()),
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

/// The in-flight entry of a command no session sent (a cancel-on-disconnect).
const NO_SESSION: u32 = u32::MAX;
/// The in-flight entry of a web request's command: `request_id` is the web request's id.
const WEB_SESSION: u32 = u32::MAX - 1;

/// The loop's state: every table, sized at [`start_on`]. Its methods are spread by concern
/// over this module's files (see the table at the top).
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
    /// Which session slots trade for each user (kept at login; read per event).
    users: UserIndex,
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
    /// `config.reference` as messages (request id 0), made at start: a page is a copy of a
    /// slice of it. Empty: the server publishes no reference data.
    reference: Box<[ServerMsg]>,
    /// How many of `reference` are currencies (the rest are symbols).
    reference_currencies: usize,
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
        // The last turn left its timers to this one (see `STALL`).
        let mut timers_deferred = false;
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
            // A turn in which this process itself stood still — stopped and continued
            // (SIGSTOP, ^Z, a freezer: the poll comes back interrupted, with no events), or
            // held up longer than `STALL` in the poll or after it (no CPU, or stopped while
            // working) — leaves the timers for the next turn, which reads what the clients sent
            // meanwhile first: otherwise they judge every session silent for the time the
            // process stood still (all were closed with HEARTBEAT_TIMEOUT after a SIGSTOP: a
            // red-team finding). Never two turns in a row, so the timers cannot starve.
            let turn_start = Instant::now();
            let mut stood_still = false;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("gateway: poll failed: {e}");
                    break;
                }
                stood_still = true;
            }
            let polled = Instant::now();
            stood_still |= polled.duration_since(turn_start) > timeout + STALL;
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
            stood_still |= now.duration_since(polled) > STALL;
            let defer = stood_still && !timers_deferred;
            timers_deferred = defer;
            if !defer && now.duration_since(last_timers) >= TICK {
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
}
