//! The web side of the bridge: requests in flight and their replies, the dispatcher thread,
//! and the registry of authenticated WebSocket connections.
//!
//! A request takes a permit (at most `requests_max` in flight; none left: `503 WEB_BUSY`),
//! registers a oneshot under a fresh id, and goes onto the bridge's inbound queue. The
//! dispatcher thread drains the outbound queue: events of a request are gathered under its
//! id until its `Done`, which completes the oneshot; user-facing events are also turned into
//! JSON once and queued (bounded, never waiting) to the owner's WebSocket connections.
//!
//! Market data: the web edge keeps no builder of its own while nobody needs one. The first
//! reader (a REST market-data GET, a public WebSocket subscription) asks the gateway loop for a
//! copy of *its* builder ([`WebOp::MdSync`]); the loop copies it at one point of its output
//! stream and forwards every output after that point, which the dispatcher applies to the copy,
//! so the copy stays equal to the gateway's builder (the one the binary feed publishes). When
//! no public WebSocket subscription is left and no REST read came for [`MD_LINGER`], the
//! dispatcher turns the feed off again ([`WebBridge::md_off`]) and forgets the copy; the next
//! reader syncs anew. An idle web edge thus costs the gateway loop nothing per output.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringbook_engine::marketdata::MarketData;
use ringbook_engine::{Command, Config, Event, RejectCode};
use ringbook_gateway::server::bridge::{WebOp, WebOutKind, WebOutput, WebRequest};
use ringbook_gateway::server::{LoginCheck, Role, WebBridge};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::error::{ApiError, WebCode};
use crate::json;
use crate::metrics::Metrics;

/// How long a request waits for the gateway loop's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the market-data feed stays on after the last REST market-data read while no public
/// WebSocket subscription holds it (a client polling the book more often than this costs one
/// sync, not one per read).
pub const MD_LINGER: Duration = Duration::from_secs(10);

/// What a request got back.
#[derive(Debug)]
pub enum Outcome {
    /// The command was sequenced and processed (journaled): its events and sequence number.
    Done {
        /// Every event of the command, in order.
        events: Vec<Event>,
        /// Its sequence number.
        seq: u64,
    },
    /// Refused before sequencing (authorization).
    Rejected(RejectCode),
    /// A login's outcome.
    Login(LoginCheck),
}

struct Pending {
    events: Vec<Event>,
    tx: oneshot::Sender<Outcome>,
}

/// A command's kind, as a metric label.
pub fn command_kind(cmd: &Command) -> &'static str {
    use ringbook_engine::Query;
    match cmd {
        Command::NewOrder(_) => "new_order",
        Command::Cancel { .. } => "cancel",
        Command::Amend { .. } => "amend",
        Command::CancelOrder { .. } => "cancel_order",
        Command::AmendOrder { .. } => "amend_order",
        Command::MassCancel { .. } => "mass_cancel",
        Command::Deposit { .. } => "deposit",
        Command::Withdraw { .. } => "withdraw",
        Command::ApproveWithdrawal { .. } => "approve_withdrawal",
        Command::RejectWithdrawal { .. } => "reject_withdrawal",
        Command::Query(Query::Order { .. }) => "query_order",
        Command::Query(Query::OrderById { .. }) => "query_order_by_id",
        Command::Query(Query::OpenOrders { .. }) => "query_open_orders",
        Command::Query(Query::Balances { .. }) => "query_balances",
        Command::Query(Query::Book { .. }) => "query_book",
        Command::Tick => "tick",
    }
}

/// Private channel bits.
pub const CH_ORDERS: u8 = 1;
/// Fills.
pub const CH_FILLS: u8 = 2;
/// Balances.
pub const CH_BALANCES: u8 = 4;

/// An authenticated WebSocket connection as the dispatcher sees it.
#[derive(Debug)]
pub struct WsConn {
    /// Unique id.
    pub id: u64,
    /// The user it belongs to.
    pub user: u32,
    /// The account (token `acct`) whose rate limit its messages count against.
    pub acct: usize,
    /// Subscribed private channels (`CH_*` bits).
    pub channels: AtomicU8,
    /// Messages for the connection (bounded).
    pub tx: mpsc::Sender<Arc<str>>,
    /// Set when its backlog overflowed; the connection closes with `SLOW_CONSUMER`.
    pub overflowed: AtomicBool,
    /// Wakes the connection's task: overflow, or (`revoked` set) a logout.
    pub kill: Notify,
    /// Authenticated with a login's token (the native `/ws`), so a logout ends it; an Upbit
    /// socket authenticates with an API key, which a logout does not touch.
    pub session: bool,
    /// Set by a logout of its account: the connection closes with `TOKEN_REVOKED`.
    pub revoked: AtomicBool,
    /// Wakes the connection's task: its balances changed (fills, cancels, deposits…).
    pub balances_dirty: Notify,
}

/// The web edge's copy of the gateway's market-data builder and what it has seen.
#[derive(Debug)]
pub struct WebMd {
    /// The copy: taken from the gateway's builder at a sync, then fed every engine event and
    /// every command's end after that point, in sequence order.
    pub md: MarketData,
    /// The sequence number of the last command it has seen end (at the sync, or since).
    pub seq: u64,
    /// The copy is current: synced, and the feed is on. False at start and after the feed was
    /// turned off (the contents are then stale and nobody reads them).
    pub live: bool,
}

/// The shared state of the web edge.
#[derive(Debug)]
pub struct Edge {
    /// The web edge's copy of the gateway's market-data builder (`None`: serve runs without
    /// market data). Written by the dispatcher thread only, read by public GETs and WebSocket
    /// subscriptions; the gateway loop never touches the lock.
    pub md: Option<RwLock<WebMd>>,
    /// `md`'s `live`, readable without the lock.
    md_live: AtomicBool,
    /// When a REST market-data read last needed the copy (milliseconds since `epoch`).
    md_need: AtomicU64,
    /// [`MD_LINGER`] (shorter in tests).
    md_linger_ms: u64,
    /// One sync at a time (readers that find the copy stale wait for the same one).
    md_sync_lock: tokio::sync::Mutex<()>,
    epoch: Instant,
    /// Public WebSocket subscriptions, fed from `md` by the dispatcher.
    pub(crate) subs: crate::public::Subs,
    /// Withdrawals awaiting approval, as seen in the gateway loop's output (operators' list).
    pub withdrawals: crate::withdrawals::PendingWithdrawals,
    /// The queues into and out of the gateway loop.
    pub bridge: Arc<WebBridge>,
    pending: Mutex<HashMap<u64, PendingDbg>>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    /// The web edge's counters.
    pub metrics: Metrics,
    /// The engine configuration (symbols, currencies).
    pub config: Config,
    ws: RwLock<HashMap<u32, Vec<Arc<WsConn>>>>,
    stop: AtomicBool,
    /// Orders placed through the Upbit API (their fills, from every event dispatched).
    pub(crate) upbit_orders: crate::upbit::orders::Tracker,
}

/// `Pending` with a `Debug` that shows only the count.
struct PendingDbg(Pending);

impl std::fmt::Debug for PendingDbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} events)", self.0.events.len())
    }
}

impl Edge {
    /// A new edge over `bridge`; `requests_max` requests in flight at once.
    pub fn new(bridge: Arc<WebBridge>, config: Config, requests_max: usize) -> Edge {
        Edge {
            md: None,
            md_live: AtomicBool::new(false),
            md_need: AtomicU64::new(0),
            md_linger_ms: MD_LINGER.as_millis() as u64,
            md_sync_lock: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
            subs: crate::public::Subs::default(),
            withdrawals: crate::withdrawals::PendingWithdrawals::new(&config),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(requests_max.max(1))),
            metrics: Metrics::default(),
            upbit_orders: crate::upbit::orders::Tracker::new(&config).watching(bridge.clone()),
            bridge,
            config,
            ws: RwLock::new(HashMap::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// Serves market data from copies of the gateway's builder: `md` and a second builder
    /// given to the bridge's slot are made here for `config` (so a sync allocates nothing on
    /// the gateway loop). The feed stays off until a reader asks.
    pub fn with_market_data(mut self) -> Edge {
        self.bridge.set_md_slot(MarketData::new(&self.config));
        self.md = Some(RwLock::new(WebMd {
            md: MarketData::new(&self.config),
            seq: 0,
            live: false,
        }));
        self
    }

    /// The market-data copy, read-locked as it is (`None`: no market data). Current only while
    /// something holds the feed on (a public WebSocket subscription); REST reads use
    /// [`Edge::md_fresh`].
    pub fn md_read(&self) -> Option<std::sync::RwLockReadGuard<'_, WebMd>> {
        self.md
            .as_ref()
            .map(|m| m.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The market-data copy, read-locked and current (synced with the gateway's builder first
    /// if it was not); `Ok(None)`: no market data.
    pub async fn md_fresh(
        &self,
    ) -> Result<Option<std::sync::RwLockReadGuard<'_, WebMd>>, ApiError> {
        let Some(lock) = &self.md else {
            return Ok(None);
        };
        self.md_touch();
        for _ in 0..3 {
            if self.md_live.load(Ordering::Acquire) {
                let g = lock.read().unwrap_or_else(|p| p.into_inner());
                if g.live {
                    return Ok(Some(g));
                }
            }
            self.md_sync().await?;
        }
        Err(ApiError::web(WebCode::NotReady, "market data is resynchronising").retry_after(1))
    }

    /// Makes the copy current (a sync if it is not) and keeps the feed on for [`MD_LINGER`].
    pub async fn md_ensure(&self) -> Result<(), ApiError> {
        self.md_fresh().await.map(|_| ())
    }

    fn md_touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.md_need.fetch_max(now, Ordering::Relaxed);
    }

    /// Whether the copy is current (synced and fed).
    pub fn md_live(&self) -> bool {
        self.md_live.load(Ordering::Acquire)
    }

    /// Asks the gateway loop for a copy of its builder; returns once the dispatcher has taken
    /// it (the copy is live).
    async fn md_sync(&self) -> Result<(), ApiError> {
        let _one = self.md_sync_lock.lock().await;
        if self.md_live.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.call(WebOp::MdSync).await? {
            Outcome::Done { .. } => Ok(()),
            Outcome::Rejected(code) => Err(ApiError::reject(code, json::reject_text(code))),
            Outcome::Login(_) => Err(ApiError::web(WebCode::BadRequest, "unexpected login reply")),
        }
    }

    /// The dispatcher, now and then: with no public WebSocket subscription and no REST read
    /// for [`MD_LINGER`], turns the feed off and marks the copy stale. Under the write lock, so
    /// no subscription registers (they do under the read lock, on a live copy) meanwhile, and
    /// the feed is off before the copy reads stale (a reader that then syncs turns it on again
    /// after this).
    fn md_linger(&self) {
        let Some(lock) = &self.md else { return };
        if !self.md_live.load(Ordering::Acquire) || self.subs.any() {
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(self.md_need.load(Ordering::Relaxed)) < self.md_linger_ms {
            return;
        }
        let mut g = lock.write().unwrap_or_else(|p| p.into_inner());
        if self.subs.any() {
            return;
        }
        self.bridge.md_off();
        g.live = false;
        self.md_live.store(false, Ordering::Release);
    }

    /// Sends `op` through the gateway loop and waits for its outcome.
    pub async fn call(&self, op: WebOp) -> Result<Outcome, ApiError> {
        if !self.bridge.ready() {
            return Err(
                ApiError::web(WebCode::NotReady, "the gateway is not running").retry_after(1),
            );
        }
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.inc(&self.metrics.busy);
            return Err(ApiError::web(
                WebCode::Busy,
                "too many web requests in flight (the queue into the gateway is full)",
            )
            .retry_after(1));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(
            id,
            PendingDbg(Pending {
                events: Vec::new(),
                tx,
            }),
        );
        if self.bridge.submit(WebRequest { id, op }).is_err() {
            self.lock_pending().remove(&id);
            self.metrics.inc(&self.metrics.busy);
            return Err(
                ApiError::web(WebCode::Busy, "the queue into the gateway is full").retry_after(1),
            );
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(o)) => Ok(o),
            _ => {
                self.lock_pending().remove(&id);
                self.metrics.inc(&self.metrics.timeouts);
                Err(ApiError::web(
                    WebCode::Timeout,
                    "no answer from the gateway in time; the command may have been sequenced",
                ))
            }
        }
    }

    /// Sends a command for `role`; its events and sequence number, or the gateway's refusal.
    pub async fn command(&self, role: Role, cmd: Command) -> Result<(Vec<Event>, u64), ApiError> {
        let t0 = Instant::now();
        self.metrics.command(command_kind(&cmd));
        match self.call(WebOp::Command { role, cmd }).await? {
            Outcome::Done { events, seq } => {
                if matches!(cmd, Command::NewOrder(_)) {
                    self.metrics.order_ack(t0.elapsed());
                }
                Ok((events, seq))
            }
            Outcome::Rejected(code) => Err(ApiError::reject(code, json::reject_text(code))),
            Outcome::Login(_) => Err(ApiError::web(WebCode::BadRequest, "unexpected login reply")),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PendingDbg>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an authenticated WebSocket connection.
    pub fn ws_register(&self, conn: Arc<WsConn>) {
        let mut m = self.ws.write().unwrap_or_else(|p| p.into_inner());
        self.bridge.watch_add(conn.user, 1);
        m.entry(conn.user).or_default().push(conn);
        self.bridge.listeners_add(1);
    }

    /// A logout of account `acct`: every WebSocket authenticated with one of its tokens closes
    /// with `TOKEN_REVOKED`. How many.
    pub fn ws_revoke(&self, acct: usize) -> usize {
        let m = self.ws.read().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for c in m.values().flatten() {
            if c.session && c.acct == acct && !c.revoked.swap(true, Ordering::AcqRel) {
                c.kill.notify_one();
                n += 1;
            }
        }
        n
    }

    /// Removes a connection (idempotent).
    pub fn ws_unregister(&self, user: u32, id: u64) {
        let mut m = self.ws.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = m.get_mut(&user) {
            let before = v.len();
            v.retain(|c| c.id != id);
            if v.len() < before {
                self.bridge.listeners_add(-1);
                self.bridge.watch_add(user, -1);
            }
            if v.is_empty() {
                m.remove(&user);
            }
        }
    }

    /// Starts the dispatcher thread.
    pub fn start_dispatcher(self: &Arc<Edge>) -> std::io::Result<JoinHandle<()>> {
        let edge = self.clone();
        let t = std::thread::Builder::new()
            .name("ringbook-web-dispatch".into())
            .spawn(move || edge.dispatch_loop())?;
        self.bridge.set_consumer(t.thread().clone());
        Ok(t)
    }

    /// Stops the dispatcher.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Pops and dispatches; when the queue is empty, sleeps until the gateway loop unparks it
    /// (it pushed outputs) or [`Edge::stop`]'s caller does. While the market-data copy is live
    /// it wakes every 50 ms as well, to turn the feed off after [`MD_LINGER`]; otherwise an
    /// idle web edge's dispatcher is never woken.
    fn dispatch_loop(&self) {
        // Registered before the first park, so no unpark can miss it (`start_dispatcher`
        // registers the same thread; the first registration wins).
        self.bridge.set_consumer(std::thread::current());
        while !self.stop.load(Ordering::Acquire) {
            let mut any = false;
            while let Some(out) = self.bridge.pop_output() {
                any = true;
                self.dispatch(out);
            }
            if !any {
                self.md_linger();
                if self.md_live.load(Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_millis(50));
                } else {
                    std::thread::park();
                }
            }
        }
    }

    fn dispatch(&self, out: WebOutput) {
        if let Some(md) = &self.md {
            // The builder learns every output; what it produces fans out to public WebSocket
            // subscribers (only collected while there are any), under the same write lock so a
            // subscription's snapshot never falls between an update's apply and its publish.
            let mut produced = crate::public::Produced::default();
            let live = self.subs.any();
            let mut g = md.write().unwrap_or_else(|p| p.into_inner());
            match out.kind {
                // A stale copy learns nothing (outputs queued before the feed went off).
                WebOutKind::Event(e) if g.live => g.md.apply(&e, &mut |m| {
                    if live {
                        produced.take(m)
                    }
                }),
                WebOutKind::Ended { seq, ts } if g.live => {
                    g.md.end_command(ts, &mut |m| {
                        if live {
                            produced.take(m)
                        }
                    });
                    g.seq = seq;
                }
                // The slot holds the gateway's builder as of this point of the stream.
                WebOutKind::MdSynced(seq) if self.bridge.md_swap(&mut g.md) => {
                    g.seq = seq;
                    g.live = true;
                    self.md_live.store(true, Ordering::Release);
                }
                _ => {}
            }
            if !produced.is_empty() {
                self.subs.publish(&self.config, &g, &produced);
            }
        }
        if out.request != 0 {
            let mut p = self.lock_pending();
            match out.kind {
                WebOutKind::Event(e) => {
                    if let Some(entry) = p.get_mut(&out.request) {
                        entry.0.events.push(e);
                    }
                }
                WebOutKind::Done(seq)
                | WebOutKind::Ended { seq, .. }
                | WebOutKind::MdSynced(seq) => {
                    if let Some(entry) = p.remove(&out.request) {
                        let _ = entry.0.tx.send(Outcome::Done {
                            events: entry.0.events,
                            seq,
                        });
                    }
                }
                WebOutKind::Rejected(code) => {
                    if let Some(entry) = p.remove(&out.request) {
                        let _ = entry.0.tx.send(Outcome::Rejected(code));
                    }
                }
                WebOutKind::Login(check) => {
                    if let Some(entry) = p.remove(&out.request) {
                        let _ = entry.0.tx.send(Outcome::Login(check));
                    }
                }
            }
        }
        if let WebOutKind::Event(e) = out.kind {
            self.upbit_orders.on_event(&e);
            self.withdrawals.apply(&e);
            if ringbook_gateway::server::bridge::is_user_event(&e) {
                self.route_private(&e);
            }
        }
    }

    /// Queues a user-facing event to its owners' WebSocket connections.
    fn route_private(&self, e: &Event) {
        let m = self.ws.read().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return;
        }
        match e {
            Event::Trade(t) => {
                for (fill, maker) in [(&t.maker, true), (&t.taker, false)] {
                    if let Some(conns) = m.get(&fill.user.0) {
                        let msg: Arc<str> = json::ws_fill(&self.config, t, maker).into();
                        self.send_all(conns, CH_FILLS, &msg, true);
                    }
                }
            }
            _ => {
                let Some((user, channel)) = json::private_target(e) else {
                    return;
                };
                if let Some(conns) = m.get(&user) {
                    let msg: Arc<str> = json::ws_private(&self.config, e, channel).into();
                    let ch = if channel == "balances" {
                        CH_BALANCES
                    } else {
                        CH_ORDERS
                    };
                    // Order events change locks; deposits and withdrawals change balances.
                    self.send_all(conns, ch, &msg, true);
                }
            }
        }
    }

    fn send_all(&self, conns: &[Arc<WsConn>], ch: u8, msg: &Arc<str>, balances_change: bool) {
        for c in conns {
            let subs = c.channels.load(Ordering::Relaxed);
            if c.revoked.load(Ordering::Relaxed) {
                continue;
            }
            if balances_change && subs & CH_BALANCES != 0 {
                c.balances_dirty.notify_one();
            }
            if subs & ch == 0
                || c.overflowed.load(Ordering::Relaxed)
                || c.revoked.load(Ordering::Relaxed)
            {
                continue;
            }
            match c.tx.try_send(msg.clone()) {
                Ok(()) => self.metrics.inc(&self.metrics.ws_messages),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !c.overflowed.swap(true, Ordering::AcqRel) {
                        self.metrics.inc(&self.metrics.ws_overflows);
                        c.kill.notify_one();
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId, UserId};

    fn accepted(user: u32) -> Event {
        Event::Accepted {
            user: UserId(user),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(1),
            order_id: OrderId(1),
            side: Side::Buy,
            order_type: OrderType::Limit,
            price: Price(10),
            qty: Qty(1),
            display_qty: Qty(0),
        }
    }

    fn conn(
        edge: &Edge,
        id: u64,
        user: u32,
        cap: usize,
    ) -> (Arc<WsConn>, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(cap);
        let c = Arc::new(WsConn {
            id,
            user,
            acct: 0,
            channels: AtomicU8::new(CH_ORDERS),
            tx,
            overflowed: AtomicBool::new(false),
            kill: Notify::new(),
            session: true,
            revoked: AtomicBool::new(false),
            balances_dirty: Notify::new(),
        });
        edge.ws_register(c.clone());
        (c, rx)
    }

    #[test]
    fn a_full_private_queue_closes_that_connection_only() {
        let edge = Edge::new(WebBridge::new(4, 4), Config::default(), 4);
        let (slow, mut slow_rx) = conn(&edge, 1, 1, 1);
        let (other, mut other_rx) = conn(&edge, 2, 1, 8);
        let ev = WebOutput {
            request: 0,
            kind: WebOutKind::Event(accepted(1)),
        };
        edge.dispatch(ev);
        assert!(!slow.overflowed.load(Ordering::Relaxed));
        edge.dispatch(ev);
        edge.dispatch(ev);
        assert!(
            slow.overflowed.load(Ordering::Relaxed),
            "the second message did not fit"
        );
        assert_eq!(
            edge.metrics.ws_overflows.load(Ordering::Relaxed),
            1,
            "counted once"
        );
        // The other connection of the same user got all three; the slow one its first.
        for _ in 0..3 {
            let m = other_rx.try_recv().unwrap();
            assert!(m.contains("\"accepted\""), "{m}");
        }
        assert!(slow_rx.try_recv().is_ok() && slow_rx.try_recv().is_err());
        // Another user's event reaches neither.
        edge.dispatch(WebOutput {
            request: 0,
            kind: WebOutKind::Event(accepted(2)),
        });
        assert!(other_rx.try_recv().is_err());
        edge.ws_unregister(1, 1);
        edge.ws_unregister(1, 2);
        edge.ws_unregister(1, 2);
        assert!(edge.ws.read().unwrap().is_empty());
        drop(other);
    }

    #[test]
    fn a_synced_copy_is_fed_until_nobody_reads_then_the_feed_goes_off() {
        use ringbook_engine::marketdata::MarketData;
        let config = Config::default();
        let bridge = WebBridge::new(4, 4);
        let mut edge = Edge::new(bridge.clone(), config.clone(), 4).with_market_data();
        edge.md_linger_ms = 0;
        assert!(
            !edge.md_live() && !bridge.market_data_enabled(),
            "off at start"
        );
        // What the loop does at an MdSync: copy its builder (one with alice's bid) into the
        // slot and turn the feed on; then the dispatcher takes the copy at MdSynced.
        let mut gw = MarketData::new(&config);
        gw.command(1, &[accepted(1)], &mut |_| {});
        assert_eq!(gw.md_seq(SymbolId(0)), 1);
        let mut slot = MarketData::new(&config);
        slot.copy_from(&gw);
        assert!(bridge.md_swap(&mut slot));
        bridge.enable_market_data();
        edge.dispatch(WebOutput {
            request: 0,
            kind: WebOutKind::MdSynced(7),
        });
        assert!(edge.md_live());
        {
            let g = edge.md_read().unwrap();
            assert_eq!((g.live, g.seq, g.md.md_seq(SymbolId(0))), (true, 7, 1));
        }
        let sub = |conn| {
            let (tx, rx) = mpsc::channel(8);
            let s = crate::public::PubSub {
                conn,
                symbol: SymbolId(0),
                channel: crate::public::Channel::Depth,
                tx,
                stale: AtomicBool::new(false),
                resync: Arc::new(Notify::new()),
            };
            (s, rx)
        };
        // A public subscription holds the feed on, however long nobody reads over REST.
        let (s1, _rx1) = sub(1);
        let md = edge.md.as_ref().unwrap();
        assert_eq!(edge.subs.subscribe(&config, md, s1), Ok(1));
        edge.md_linger();
        assert!(edge.md_live() && bridge.market_data_enabled());
        // Fed: the next command's events and end reach the copy.
        let mut second = accepted(1);
        if let Event::Accepted {
            order_id, price, ..
        } = &mut second
        {
            *order_id = OrderId(2);
            *price = Price(11);
        }
        edge.dispatch(WebOutput {
            request: 0,
            kind: WebOutKind::Event(second),
        });
        edge.dispatch(WebOutput {
            request: 0,
            kind: WebOutKind::Ended { seq: 8, ts: 2 },
        });
        assert_eq!(edge.md_read().unwrap().md.md_seq(SymbolId(0)), 2);
        // Unsubscribed and past the linger: the feed goes off, the copy is stale and learns
        // nothing more.
        assert!(edge.subs.unsubscribe(1, None));
        edge.md_linger();
        assert!(!edge.md_live() && !bridge.market_data_enabled());
        edge.dispatch(WebOutput {
            request: 0,
            kind: WebOutKind::Ended { seq: 9, ts: 3 },
        });
        {
            let g = edge.md_read().unwrap();
            assert_eq!((g.live, g.seq), (false, 8));
        }
        // A subscription on a stale copy is refused (the caller syncs first).
        let (s2, _rx2) = sub(2);
        assert_eq!(
            edge.subs.subscribe(&config, md, s2),
            Err(crate::public::NOT_LIVE)
        );
    }

    #[test]
    fn a_request_gathers_its_events_until_done() {
        let edge = Edge::new(WebBridge::new(4, 4), Config::default(), 4);
        let (tx, mut rx) = oneshot::channel();
        edge.lock_pending().insert(
            7,
            PendingDbg(Pending {
                events: Vec::new(),
                tx,
            }),
        );
        edge.dispatch(WebOutput {
            request: 7,
            kind: WebOutKind::Event(accepted(1)),
        });
        assert!(rx.try_recv().is_err(), "not before its Done");
        edge.dispatch(WebOutput {
            request: 7,
            kind: WebOutKind::Done(42),
        });
        match rx.try_recv().unwrap() {
            Outcome::Done { events, seq } => assert_eq!((events, seq), (vec![accepted(1)], 42)),
            o => panic!("{o:?}"),
        }
        assert!(edge.lock_pending().is_empty());
    }

    #[test]
    fn busy_and_not_ready_are_refused_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let bridge = WebBridge::new(8, 8);
        let edge = Edge::new(bridge.clone(), Config::default(), 1);
        let op = WebOp::Command {
            role: Role::User(1),
            cmd: Command::Query(ringbook_engine::Query::Balances { user: UserId(1) }),
        };
        rt.block_on(async {
            // No gateway loop yet.
            let e = edge.call(op).await.unwrap_err();
            assert_eq!(e.reason, "NOT_READY");
            let poll = mio::Poll::new().unwrap();
            let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
            bridge.attach(waker);
            // One request in flight (nobody answers it) takes the only permit.
            let first = edge.call(op);
            tokio::pin!(first);
            tokio::select! {
                biased;
                _ = &mut first => panic!("answered without a gateway loop"),
                _ = tokio::task::yield_now() => {}
            }
            assert_eq!(bridge.inbound_len(), 1);
            let e = edge.call(op).await.unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason, e.retry_after),
                (503, "WEB_BUSY", Some(1))
            );
            assert_eq!(edge.metrics.busy.load(Ordering::Relaxed), 1);
        });
    }
}
