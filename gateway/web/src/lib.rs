//! # ringbook-web
//!
//! ringbook's web edge (docs/http-api.md): REST and WebSocket in front of the same sequenced,
//! journaled path as the binary gateway's sessions, with JWT logins for the gateway's accounts,
//! per-account and per-address rate limits, and Prometheus metrics.
//!
//! ```text
//! axum handlers (tokio runtime, own threads) ─▶ Edge::call ─▶ WebBridge inbound queue
//!     ─▶ gateway mio loop: authorize() + Backend::try_submit (sequenced, journaled)
//!     ─▶ WebBridge outbound queue ─▶ dispatcher thread ─▶ the request's oneshot
//!                                                     └▶ the user's WebSocket connections
//! ```
//!
//! The web edge never runs on the engine's or the gateway's threads, and never talks to the
//! engine except through the gateway loop: every HTTP or WebSocket command is sequenced and
//! journaled exactly once, like a binary session's. See docs/architecture.md, "The web edge".

mod api;
mod conns;
mod csv;
pub mod edge;
pub mod error;
mod history;
pub mod json;
pub mod limits;
pub mod metrics;
mod openapi;
mod public;
pub mod token;
mod ui;
pub mod upbit;
pub mod withdrawals;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringbook_engine::Config;
use ringbook_gateway::server::{Stats, WebBridge};
use tokio::sync::watch;

use crate::edge::Edge;
pub use crate::history::enable_history;
use crate::limits::{Limits, Rate};
use crate::token::Tokens;

/// What the web edge needs to start.
#[derive(Debug)]
pub struct WebOptions {
    /// A bound listener (bound early, so a busy port fails before anything else starts).
    pub listener: std::net::TcpListener,
    /// The engine configuration (symbols, currencies, accounts, `[web]`).
    pub config: Config,
    /// The bridge the gateway loop serves (the same one given to its `ServerConfig::web`).
    pub bridge: Arc<WebBridge>,
    /// The gateway's live counters (for `/metrics`).
    pub gateway_stats: Arc<Stats>,
    /// The pipeline's figures for `/metrics` (in-flight commands, journal bytes, snapshot
    /// age); `None` where no pipeline runs behind the gateway.
    pub pipeline: Option<ringbook_engine::PipelineGauges>,
    /// Tokio worker threads.
    pub threads: usize,
    /// Serve public market data (the gateway publishes it: `ringbook serve` without
    /// `--no-market-data`): from copies of the gateway's builder, taken through the bridge when
    /// a reader needs one ([`ringbook_gateway::server::bridge::WebOp::MdSync`]). False: no
    /// public market data beyond the sequenced book query.
    pub market_data: bool,
    /// The withdrawals pending at start, for operators' list (`None`: none; the journal's
    /// replay fills it, like `market_data`).
    pub withdrawals: Option<withdrawals::PendingWithdrawals>,
    /// Where `/metrics` reads the `serve --postgres` projection's progress (`None`: no
    /// projection runs in this process).
    pub projection: Option<ProjectionProbe>,
}

/// What `/metrics` shows of a projection running beside the server: figures its thread keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// The last journal sequence committed to PostgreSQL (0 until the projection has read
    /// it from its database).
    pub committed_seq: u64,
    /// Failed attempts to reach or write to PostgreSQL since start.
    pub db_errors: u64,
    /// False once the projection has stopped (an error it does not retry; its log says which).
    pub running: bool,
}

/// Reads a [`ProjectionStatus`] (relaxed loads of the projection's own counters: reading never
/// waits for it).
#[derive(Clone)]
pub struct ProjectionProbe(pub Arc<dyn Fn() -> ProjectionStatus + Send + Sync>);

impl std::fmt::Debug for ProjectionProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProjectionProbe").field(&(self.0)()).finish()
    }
}

/// The running web edge.
#[derive(Debug)]
pub struct WebHandle {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    /// The accept loop: done when every HTTP connection has ended.
    serving: Option<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    edge: Arc<Edge>,
    /// Connections, and the sockets lingering after them (shutdown waits for those too).
    conns: Arc<conns::Conns>,
    dispatcher: Option<JoinHandle<()>>,
    /// Whether the JWT secret was generated at start (not from the config).
    pub generated_secret: bool,
}

impl WebHandle {
    /// The address it serves.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, WebSocket connections send their close
    /// frame (1001 `SHUTTING_DOWN`) and lingering closes drain (`conns::linger`), waiting at
    /// most [`SHUTDOWN_GRACE`] for them all, and stops the dispatcher. The gateway loop must
    /// still run meanwhile (it answers them).
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(rt) = self.runtime.take() {
            let serving = self.serving.take();
            let edge = self.edge.clone();
            let conns = self.conns.clone();
            rt.block_on(async move {
                let ended = async {
                    if let Some(s) = serving {
                        let _ = s.await;
                    }
                    let ws = &edge.metrics.ws_connections;
                    while ws.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // The closes, 1001 frames included, drain before the runtime goes (it
                    // would cancel them, and a cancelled linger is a plain close).
                    while conns.lingering.count() > 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, ended).await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        // Nobody will read the bridge any more: the gateway loop must not wait for it.
        self.edge.bridge.close();
        self.edge.stop();
        if let Some(t) = self.dispatcher.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// How long [`WebHandle::shutdown`] waits for requests in flight and WebSocket close frames.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) edge: Arc<Edge>,
    pub(crate) tokens: Tokens,
    pub(crate) limits: Limits,
    pub(crate) gateway_stats: Arc<Stats>,
    pub(crate) pipeline: Option<ringbook_engine::PipelineGauges>,
    pub(crate) projection: Option<ProjectionProbe>,
    pub(crate) csv_coid: AtomicU64,
    pub(crate) ws_next: AtomicU64,
    /// Open HTTP connections, against `conns_max` and `conns_per_addr`.
    pub(crate) conns: Arc<conns::Conns>,
    /// How long a request's body may take to arrive whole.
    pub(crate) body_timeout: Duration,
    pub(crate) ws_conns_max: usize,
    pub(crate) ws_queue_max: usize,
    /// What one WebSocket may have buffered for writing at most ([`ws::write_buffer_max`]).
    pub(crate) ws_write_max: usize,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Sockets the web edge may hold beyond `[web] conns_max` for lingering closes (served and
/// refused connections: `conns.rs`); `ringbook serve` keeps descriptors for them.
pub const LINGER_SOCKETS_MAX: usize = 160;

/// The most a `[web]` count may be (`requests_max`, `events_max`, `addrs_tracked`,
/// `conns_max`, `conns_per_addr`, `ws_conns_max`, `ws_queue_max`): some of the queues and
/// tables they size are allocated at start. (Rates and times are bounded by their types: the
/// edge saturates them.)
pub const WEB_COUNT_MAX: u64 = 1 << 20;

/// Checks the `[web]` settings (a secret of at least 32 bytes, every limit at least 1, every
/// count at most [`WEB_COUNT_MAX`]); the message names the key. `ringbook serve` calls it before
/// it starts anything.
pub fn check_config(wc: &ringbook_engine::config::WebConfig) -> Result<(), String> {
    if wc.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err("[web] jwt_secret must be at least 32 bytes".into());
    }
    let positive = [
        ("token_ttl_secs", wc.token_ttl_secs),
        ("account_rps", u64::from(wc.account_rps)),
        ("account_burst", u64::from(wc.account_burst)),
        ("addr_rps", u64::from(wc.addr_rps)),
        ("addr_burst", u64::from(wc.addr_burst)),
        ("header_timeout_ms", wc.header_timeout_ms),
        ("body_timeout_ms", wc.body_timeout_ms),
        ("send_timeout_ms", wc.send_timeout_ms),
    ];
    let counts = [
        ("addrs_tracked", wc.addrs_tracked),
        ("requests_max", wc.requests_max),
        ("events_max", wc.events_max),
        ("conns_max", wc.conns_max),
        ("conns_per_addr", wc.conns_per_addr),
        ("ws_conns_max", wc.ws_conns_max),
        ("ws_queue_max", wc.ws_queue_max),
    ]
    .map(|(k, v)| (k, v as u64));
    for (k, v) in positive.into_iter().chain(counts) {
        if v == 0 {
            return Err(format!("[web] {k} must be at least 1"));
        }
    }
    for (k, v) in counts {
        if v > WEB_COUNT_MAX {
            return Err(format!("[web] {k} = {v} must be at most {WEB_COUNT_MAX}"));
        }
    }
    Ok(())
}

/// Starts the web edge on its own tokio runtime.
pub fn start(opts: WebOptions) -> Result<WebHandle, String> {
    let wc = opts.config.web.clone();
    check_config(&wc)?;
    let (secret, generated_secret) = match &wc.jwt_secret {
        Some(s) => (s.as_bytes().to_vec(), false),
        None => (
            token::random_secret().map_err(|e| format!("generating a token secret: {e}"))?,
            true,
        ),
    };
    let addr = opts
        .listener
        .local_addr()
        .map_err(|e| format!("web listener: {e}"))?;
    opts.listener
        .set_nonblocking(true)
        .map_err(|e| format!("web listener: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .thread_name("ringbook-web")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("starting the web runtime: {e}"))?;
    let mut edge = Edge::new(opts.bridge, opts.config.clone(), wc.requests_max);
    if let Some(w) = opts.withdrawals {
        edge.withdrawals = w;
    }
    if opts.market_data {
        edge = edge.with_market_data();
    }
    let edge = Arc::new(edge);
    let dispatcher = edge
        .start_dispatcher()
        .map_err(|e| format!("starting the web dispatcher: {e}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let conns = conns::Conns::new(
        wc.conns_max,
        wc.conns_per_addr,
        Duration::from_millis(wc.send_timeout_ms),
    );
    let csv_base = (1u64 << 63) | (token::now_secs() << 24);
    let state = Arc::new(AppState {
        edge: edge.clone(),
        tokens: Tokens::new(
            &secret,
            wc.token_ttl_secs,
            opts.config.gateway.accounts.len(),
        ),
        limits: Limits::new(
            opts.config.gateway.accounts.len(),
            Rate {
                per_sec: u64::from(wc.account_rps),
                burst: u64::from(wc.account_burst),
            },
            Rate {
                per_sec: u64::from(wc.addr_rps),
                burst: u64::from(wc.addr_burst),
            },
            wc.addrs_tracked,
        ),
        gateway_stats: opts.gateway_stats,
        pipeline: opts.pipeline,
        projection: opts.projection,
        csv_coid: AtomicU64::new(csv_base),
        ws_next: AtomicU64::new(1),
        conns: conns.clone(),
        body_timeout: Duration::from_millis(wc.body_timeout_ms),
        ws_conns_max: wc.ws_conns_max,
        ws_queue_max: wc.ws_queue_max,
        ws_write_max: ws::write_buffer_max(opts.config.capacity.orders_max),
        shutdown: shutdown_rx.clone(),
    });
    let app = api::router(state, wc.requests_max.saturating_mul(4).max(64));
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(opts.listener)
            .map_err(|e| format!("web listener: {e}"))?
    };
    let timeouts = conns::Timeouts {
        header: Duration::from_millis(wc.header_timeout_ms),
        send: Duration::from_millis(wc.send_timeout_ms),
    };
    let serving = runtime.spawn(conns::serve(
        listener,
        app,
        conns.clone(),
        timeouts,
        shutdown_rx,
    ));
    Ok(WebHandle {
        addr,
        runtime: Some(runtime),
        serving: Some(serving),
        shutdown: shutdown_tx,
        edge,
        conns,
        dispatcher: Some(dispatcher),
        generated_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_settings_are_checked_by_key() {
        let mut wc = ringbook_engine::config::WebConfig::default();
        assert_eq!(check_config(&wc), Ok(()));
        wc.jwt_secret = Some("short".into());
        assert!(check_config(&wc).unwrap_err().contains("jwt_secret"));
        wc.jwt_secret = Some("x".repeat(32));
        wc.ws_queue_max = 0;
        assert!(check_config(&wc).unwrap_err().contains("ws_queue_max"));
    }
}
