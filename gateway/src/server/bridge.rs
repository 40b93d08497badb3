//! The web edge's way into the sequenced path: two fixed-capacity lock-free queues between the
//! web runtime's threads and the gateway's mio loop.
//!
//! ```text
//! web handler ─push─▶ inbound (ArrayQueue<WebRequest>) ─wake─▶ gateway loop: authorize,
//!    Backend::try_submit (same sequencing and journal as a binary session's command)
//! gateway loop ─push─▶ outbound (ArrayQueue<WebOutput>) ─unpark─▶ web dispatcher thread:
//!    replies to their requests, private events to WebSocket connections
//! ```
//!
//! - Nothing here allocates after [`WebBridge::new`]; the gateway loop pushes `Copy` values.
//! - A full inbound queue is the web caller's problem (503), never the gateway's.
//! - The outbound queue never drops: the gateway drains its backend only as far as the queue
//!   has room (each backend output becomes at most one web output), so a stuck dispatcher would
//!   pause the loop like a full ring does. The dispatcher only moves values between queues and
//!   never blocks, so in practice the queue stays short.
//! - Wake-ups are batched as in the pipeline backend: one `Waker::wake` per burst of requests
//!   (a flag the loop clears before it drains), one `unpark` per loop turn that produced output.
//! - Only what the web edge needs crosses (docs/architecture.md, "The web edge costs nothing
//!   while idle"): a web request's own events and end; user-facing events of the users the web
//!   edge *watches* ([`WebBridge::watch_add`]: a live WebSocket session, an Upbit-API order
//!   still open); withdrawal events (rare; the operators' list); and everything only while the
//!   market-data feed is on. The feed is off until the web edge asks for it
//!   ([`WebOp::MdSync`]): the loop then copies its own market-data builder into the bridge's
//!   slot at that point of the output stream and forwards every output after it, until the web
//!   edge turns the feed off again ([`WebBridge::md_off`]). An idle web edge gets nothing:
//!   [`BridgeStats::forwarded`] counts what crossed without answering a web request.

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;
use mio::Waker;
use ringbook_engine::marketdata::MarketData;
use ringbook_engine::{Command, Event, RejectCode};

use super::auth::{LoginCheck, Role};
use crate::protocol::Name32;

/// What the web edge asks the gateway loop to do.
#[derive(Clone, Copy, Debug)]
pub enum WebOp {
    /// Check a login against the gateway's accounts and throttling tables.
    Login {
        /// The source address (throttled per address like a binary login).
        ip: IpAddr,
        /// Login name.
        login: Name32,
        /// Password.
        password: Name32,
    },
    /// Authorize `cmd` for `role` ([`super::authorize`]) and sequence it.
    Command {
        /// Who the token says is asking.
        role: Role,
        /// The command or query.
        cmd: Command,
    },
    /// Copy the gateway's market-data builder into the bridge's slot ([`WebBridge::set_md_slot`])
    /// and turn the market-data feed on from this point of the output stream: answered with
    /// [`WebOutKind::MdSynced`], or `Rejected(UnknownSymbol)` where the gateway publishes no
    /// market data or no slot was given.
    MdSync,
}

/// One web request: `id` (never 0) names it in the outputs.
#[derive(Clone, Copy, Debug)]
pub struct WebRequest {
    /// The web edge's request id (non-zero).
    pub id: u64,
    /// What to do.
    pub op: WebOp,
}

/// What comes back.
#[derive(Clone, Copy, Debug)]
pub enum WebOutKind {
    /// An event of a web request's command (`request != 0`), or a user-facing event for the
    /// WebSocket listeners (`request == 0`).
    Event(Event),
    /// The request's command is fully processed and journaled; its sequence number.
    Done(u64),
    /// Sent instead of [`WebOutKind::Done`] while the web edge's market-data feed is on (after
    /// a [`WebOp::MdSync`], or [`WebBridge::enable_market_data`]): a command, from any origin,
    /// is fully processed (journaled); its sequence number and time stamp (Unix nanoseconds, for
    /// the web edge's copy of the market-data builder). With `request != 0` it also completes
    /// that web request.
    Ended {
        /// The command's sequence number.
        seq: u64,
        /// What the engine's time moved to (`BackendOutput::Done`'s).
        ts: u64,
    },
    /// The gateway refused the request's command before sequencing it (authorization).
    Rejected(RejectCode),
    /// The outcome of a login request.
    Login(LoginCheck),
    /// Answers [`WebOp::MdSync`]: the slot now holds a copy of the gateway's builder as it
    /// stood after every output before this one, and every output after it is forwarded (the
    /// feed is on). The number is the last command fully ended at that point.
    MdSynced(u64),
}

/// One output.
#[derive(Clone, Copy, Debug)]
pub struct WebOutput {
    /// The request it answers; 0 for events that answer no web request.
    pub request: u64,
    /// What it is.
    pub kind: WebOutKind,
}

/// Counters of the bridge (relaxed).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Web requests the gateway loop took.
    pub requests: AtomicU64,
    /// Web commands sequenced.
    pub commands: AtomicU64,
    /// Web commands refused by authorization.
    pub rejected: AtomicU64,
    /// Times the engine's ring was full for a web command (it waited, nothing was lost).
    pub backpressure: AtomicU64,
    /// Times the loop held back draining because the outbound queue was full.
    pub outbound_full: AtomicU64,
    /// Events pushed to the web side.
    pub outputs: AtomicU64,
    /// Outputs pushed that answer no web request: the market-data feed, watched users' events,
    /// withdrawal events. Stays 0 while the web edge is idle (no WebSocket session, no
    /// market-data reader), however busy the binary gateway is.
    pub forwarded: AtomicU64,
    /// Copies of the gateway's market-data builder handed to the web edge ([`WebOp::MdSync`]).
    pub md_syncs: AtomicU64,
    /// The highest sequence number whose `Done` the gateway has routed (journaled and
    /// acknowledged), any origin.
    pub last_done_seq: AtomicU64,
}

/// The queues and wake-up state shared by the web edge and the gateway loop.
#[derive(Debug)]
pub struct WebBridge {
    inbound: ArrayQueue<WebRequest>,
    outbound: ArrayQueue<WebOutput>,
    waker: OnceLock<Arc<Waker>>,
    wake_pending: AtomicBool,
    consumer: OnceLock<Thread>,
    /// Set by the loop when it stopped draining for lack of outbound room; the dispatcher
    /// wakes the loop once it has made room.
    out_blocked: AtomicBool,
    /// Authenticated WebSocket connections (a gauge; routing uses `watch`).
    listeners: AtomicU64,
    /// The users whose events the web edge wants, ascending (the accounts' users; empty: a
    /// bridge made without them, which forwards user events while `listeners > 0`).
    watch_users: Box<[u32]>,
    /// Per place in `watch_users`: the web edge's reasons to want that user's events.
    watch: Box<[AtomicU32]>,
    /// The market-data feed is on: the loop sends every event and an `Ended` for every
    /// command, whatever its origin. Set by the loop at an [`WebOp::MdSync`] (or by
    /// [`WebBridge::enable_market_data`]), cleared by the web edge ([`WebBridge::md_off`]).
    md_feed: AtomicBool,
    /// Where the loop copies its market-data builder for the web edge (preallocated by the
    /// web edge, so the copy allocates nothing; locked only at a sync and by the web edge).
    md_slot: Mutex<Option<MarketData>>,
    ready: AtomicBool,
    /// The web edge has stopped: the loop takes no more requests and pushes nothing more.
    closed: AtomicBool,
    /// Counters.
    pub stats: BridgeStats,
}

impl WebBridge {
    /// Queues of `requests_max` requests and `outputs_max` outputs (both at least 1).
    /// User events are forwarded while any WebSocket connection is authenticated (no per-user
    /// table; see [`WebBridge::with_users`]).
    pub fn new(requests_max: usize, outputs_max: usize) -> Arc<WebBridge> {
        WebBridge::with_users(requests_max, outputs_max, &[])
    }

    /// As [`WebBridge::new`], with a per-user table for `users` (the accounts' users): a user
    /// event crosses only if the web edge watches one of the users it names.
    pub fn with_users(requests_max: usize, outputs_max: usize, users: &[u32]) -> Arc<WebBridge> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        Arc::new(WebBridge {
            inbound: ArrayQueue::new(requests_max.max(1)),
            outbound: ArrayQueue::new(outputs_max.max(1)),
            waker: OnceLock::new(),
            wake_pending: AtomicBool::new(false),
            consumer: OnceLock::new(),
            out_blocked: AtomicBool::new(false),
            listeners: AtomicU64::new(0),
            watch: users.iter().map(|_| AtomicU32::new(0)).collect(),
            watch_users: users.into_boxed_slice(),
            md_feed: AtomicBool::new(false),
            md_slot: Mutex::new(None),
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stats: BridgeStats::default(),
        })
    }

    // ------------------------------------------------------------------ web side

    /// Queues a request and wakes the loop; hands it back when the queue is full.
    pub fn submit(&self, req: WebRequest) -> Result<(), WebRequest> {
        self.inbound.push(req)?;
        fence(Ordering::SeqCst);
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Some(w) = self.waker.get() {
                let _ = w.wake();
            }
        }
        Ok(())
    }

    /// The next output, if any (the dispatcher thread).
    pub fn pop_output(&self) -> Option<WebOutput> {
        let out = self.outbound.pop();
        if out.is_some() && self.out_blocked.swap(false, Ordering::AcqRel) {
            if let Some(w) = self.waker.get() {
                let _ = w.wake();
            }
        }
        out
    }

    /// Registers the thread the loop unparks when it has pushed outputs.
    pub fn set_consumer(&self, t: Thread) {
        let _ = self.consumer.set(t);
    }

    /// One more (`+1`) or one fewer (`-1`) authenticated WebSocket connection.
    pub fn listeners_add(&self, delta: i64) {
        if delta >= 0 {
            self.listeners.fetch_add(delta as u64, Ordering::AcqRel);
        } else {
            self.listeners
                .fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// One more (`+1`) or one fewer (`-1`) reason to forward `user`'s events (a WebSocket
    /// session, an open order the web edge tracks). False if the bridge does not know the user
    /// (its events then never cross unless a web request or the feed carries them).
    pub fn watch_add(&self, user: u32, delta: i32) -> bool {
        let Ok(p) = self.watch_users.binary_search(&user) else {
            return false;
        };
        if delta >= 0 {
            self.watch[p].fetch_add(delta as u32, Ordering::AcqRel);
        } else {
            self.watch[p].fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
        true
    }

    /// Turns the market-data feed on for good: the loop sends every output (each event, and
    /// an [`WebOutKind::Ended`] with the time stamp for each command, in sequence order). For
    /// a consumer that keeps its own builder from the start (tests; call before the gateway
    /// starts). The web edge instead asks for a copy when it needs one ([`WebOp::MdSync`]).
    /// The outbound queue still never drops: the loop drains its backend only as far as the
    /// queue has room.
    pub fn enable_market_data(&self) {
        self.md_feed.store(true, Ordering::Release);
    }

    /// Whether the market-data feed is on now.
    pub fn market_data_enabled(&self) -> bool {
        self.md_feed.load(Ordering::Relaxed)
    }

    /// Turns the market-data feed off (the web edge, once nobody needs its copy): the loop
    /// forwards no further output that answers no request and names no watched user. Outputs
    /// already queued still arrive; a later [`WebOp::MdSync`] turns it on again.
    pub fn md_off(&self) {
        self.md_feed.store(false, Ordering::Release);
    }

    /// Gives the bridge the builder the loop copies into at a [`WebOp::MdSync`] (made for the
    /// same configuration as the gateway's, so the copy allocates nothing).
    pub fn set_md_slot(&self, md: MarketData) {
        *self.md_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(md);
    }

    /// Exchanges `md` with the slot's builder (the web edge, after [`WebOutKind::MdSynced`]):
    /// `md` becomes the copy, the slot keeps the old builder to copy into next time. False if
    /// the slot is empty.
    pub fn md_swap(&self, md: &mut MarketData) -> bool {
        let mut g = self.md_slot.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(slot) => {
                std::mem::swap(slot, md);
                true
            }
            None => false,
        }
    }

    /// The web edge has stopped (its dispatcher reads no more): the loop stops taking requests
    /// and pushing outputs, so it never waits for room that will not come.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Whether [`WebBridge::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the gateway loop is running and taking requests.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Requests queued and not yet taken by the loop.
    pub fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Outputs queued and not yet taken by the dispatcher.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    // ------------------------------------------------------------------ loop side

    /// Gives the bridge the loop's waker and marks it ready (the server does this at start;
    /// public for tests that stand in for the loop).
    pub fn attach(&self, waker: Arc<Waker>) {
        let _ = self.waker.set(waker);
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready
            .store(ready && !self.is_closed(), Ordering::Release);
    }

    /// Before draining the inbound queue: later requests must wake the loop again.
    pub(crate) fn rearm(&self) {
        self.wake_pending.store(false, Ordering::Release);
        fence(Ordering::SeqCst);
    }

    pub(crate) fn pop_request(&self) -> Option<WebRequest> {
        self.inbound.pop()
    }

    pub(crate) fn has_requests(&self) -> bool {
        !self.inbound.is_empty() && !self.is_closed()
    }

    /// Free outbound slots (only the loop pushes, so this is a lower bound until it does);
    /// unbounded once closed (nothing is pushed any more).
    pub(crate) fn room(&self) -> usize {
        if self.is_closed() {
            return usize::MAX;
        }
        self.outbound.capacity() - self.outbound.len()
    }

    pub(crate) fn block(&self) {
        self.stats.outbound_full.fetch_add(1, Ordering::Relaxed);
        self.out_blocked.store(true, Ordering::Release);
        // The dispatcher may have emptied the queue between `room` and the flag.
        if !self.outbound.is_full() && self.out_blocked.swap(false, Ordering::AcqRel) {
            if let Some(w) = self.waker.get() {
                let _ = w.wake();
            }
        }
    }

    /// Every output goes to the web edge (its market-data feed is on and it still reads).
    pub(crate) fn md_feed(&self) -> bool {
        self.md_feed.load(Ordering::Relaxed) && !self.is_closed()
    }

    /// Whether any WebSocket connection is authenticated (a gauge for tests and metrics).
    pub fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0 && !self.is_closed()
    }

    fn watched(&self, user: u32) -> bool {
        if self.watch_users.is_empty() {
            return self.listeners.load(Ordering::Relaxed) > 0;
        }
        self.watch_users
            .binary_search(&user)
            .is_ok_and(|p| self.watch[p].load(Ordering::Relaxed) > 0)
    }

    /// Whether an event that answers no web request crosses while the feed is off: a
    /// withdrawal event (rare; the operators' list of pending ones), or a user event of a
    /// watched user. A match and at most two binary searches; no lock.
    pub(crate) fn wants(&self, e: &Event) -> bool {
        if self.is_closed() {
            return false;
        }
        match e {
            Event::WithdrawalRequested { .. }
            | Event::WithdrawalApproved { .. }
            | Event::WithdrawalCompleted { .. }
            | Event::WithdrawalRejected { .. } => true,
            Event::Trade(t) => self.watched(t.maker.user.0) || self.watched(t.taker.user.0),
            Event::Accepted { user, .. }
            | Event::Cancelled { user, .. }
            | Event::Amended { user, .. }
            | Event::Triggered { user, .. }
            | Event::MassCancelled { user, .. }
            | Event::Deposited { user, .. }
            | Event::BalanceUpdate { user, .. } => self.watched(user.0),
            _ => false,
        }
    }

    /// At a [`WebOp::MdSync`]: copies `md` into the slot and turns the feed on. False (nothing
    /// changed) without a slot. The slot's lock is the web edge's only while it swaps.
    pub(crate) fn md_sync_from(&self, md: &MarketData) -> bool {
        let mut g = self.md_slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = g.as_mut() else {
            return false;
        };
        slot.copy_from(md);
        self.md_feed.store(true, Ordering::Release);
        self.stats.md_syncs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Pushes an output; the caller has checked `room`. False only if it had not, or once the
    /// bridge is closed (dropped: nobody reads).
    pub(crate) fn push(&self, out: WebOutput) -> bool {
        if self.is_closed() {
            return false;
        }
        let ok = self.outbound.push(out).is_ok();
        if ok {
            self.stats.outputs.fetch_add(1, Ordering::Relaxed);
            if out.request == 0 {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        ok
    }

    /// After a loop turn that pushed outputs.
    pub(crate) fn notify(&self) {
        if let Some(t) = self.consumer.get() {
            t.unpark();
        }
    }
}

/// Events that belong on a user's private WebSocket channels (the gateway sends them to the
/// web side only while some WebSocket connection is authenticated).
pub fn is_user_event(e: &Event) -> bool {
    matches!(
        e,
        Event::Accepted { .. }
            | Event::Trade(_)
            | Event::Cancelled { .. }
            | Event::Amended { .. }
            | Event::Triggered { .. }
            | Event::MassCancelled { .. }
            | Event::Deposited { .. }
            | Event::WithdrawalRequested { .. }
            | Event::WithdrawalApproved { .. }
            | Event::WithdrawalCompleted { .. }
            | Event::WithdrawalRejected { .. }
            | Event::BalanceUpdate { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{CurrencyId, UserId};

    fn out(request: u64) -> WebOutput {
        WebOutput {
            request,
            kind: WebOutKind::Done(request),
        }
    }

    #[test]
    fn queues_are_bounded_and_hand_back_what_does_not_fit() {
        let b = WebBridge::new(2, 2);
        let req = |id| WebRequest {
            id,
            op: WebOp::Command {
                role: Role::User(1),
                cmd: Command::Deposit {
                    user: UserId(1),
                    currency: CurrencyId(0),
                    amount: 1,
                },
            },
        };
        assert!(b.submit(req(1)).is_ok() && b.submit(req(2)).is_ok());
        assert_eq!(b.submit(req(3)).map_err(|r| r.id), Err(3));
        assert_eq!(b.pop_request().map(|r| r.id), Some(1));
        assert_eq!(b.room(), 2);
        assert!(b.push(out(1)) && b.push(out(2)));
        assert_eq!(b.room(), 0);
        assert!(
            !b.push(out(3)),
            "a full outbound queue refuses, it never overwrites"
        );
        assert_eq!(b.pop_output().map(|o| o.request), Some(1));
        assert_eq!(b.room(), 1);
    }

    #[test]
    fn a_closed_bridge_takes_and_pushes_nothing() {
        let b = WebBridge::new(2, 1);
        b.listeners_add(1);
        assert!(b.push(out(1)));
        assert_eq!(b.room(), 0);
        b.close();
        assert!(b.is_closed() && !b.ready() && !b.has_listeners());
        assert_eq!(
            b.room(),
            usize::MAX,
            "the loop never waits for a closed edge"
        );
        assert!(!b.push(out(2)));
        assert!(b
            .submit(WebRequest {
                id: 1,
                op: WebOp::Command {
                    role: Role::User(1),
                    cmd: Command::Query(ringbook_engine::Query::Balances {
                        user: ringbook_engine::UserId(1)
                    }),
                },
            })
            .is_ok());
        assert!(!b.has_requests());
    }

    #[test]
    fn only_watched_users_and_withdrawals_cross_while_the_feed_is_off() {
        use ringbook_engine::{ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId};
        let b = WebBridge::with_users(1, 1, &[7, 3, 5]);
        let accepted = |user| Event::Accepted {
            user: UserId(user),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(1),
            order_id: OrderId(1),
            side: Side::Buy,
            order_type: OrderType::Limit,
            price: Price(10),
            qty: Qty(1),
            display_qty: Qty(0),
        };
        let withdrawal = Event::WithdrawalRequested {
            withdrawal_id: ringbook_engine::WithdrawalId(1),
            user: UserId(9),
            currency: CurrencyId(0),
            amount: 1,
        };
        assert!(!b.wants(&accepted(3)) && !b.wants(&accepted(5)));
        assert!(b.wants(&withdrawal), "withdrawals always cross");
        assert!(b.watch_add(5, 1) && b.watch_add(5, 1));
        assert!(!b.watch_add(4, 1), "a user the bridge does not know");
        assert!(b.wants(&accepted(5)) && !b.wants(&accepted(3)));
        b.watch_add(5, -1);
        assert!(b.wants(&accepted(5)), "one reason left");
        b.watch_add(5, -1);
        assert!(!b.wants(&accepted(5)));
        assert!(!b.md_feed());
        b.enable_market_data();
        assert!(b.md_feed());
        b.md_off();
        assert!(!b.md_feed() && !b.market_data_enabled());
        b.close();
        assert!(!b.wants(&withdrawal), "nothing crosses once closed");
    }

    #[test]
    fn a_sync_copies_into_the_slot_and_turns_the_feed_on() {
        let config = ringbook_engine::Config::default();
        let b = WebBridge::new(1, 1);
        let src = MarketData::new(&config);
        assert!(!b.md_sync_from(&src), "no slot: nothing happens");
        assert!(!b.md_feed());
        b.set_md_slot(MarketData::new(&config));
        assert!(b.md_sync_from(&src));
        assert!(b.md_feed());
        assert_eq!(b.stats.md_syncs.load(Ordering::Relaxed), 1);
        let mut mine = MarketData::new(&config);
        assert!(b.md_swap(&mut mine));
    }

    #[test]
    fn listeners_count_up_and_down() {
        let b = WebBridge::new(1, 1);
        assert!(!b.has_listeners());
        b.listeners_add(1);
        b.listeners_add(1);
        b.listeners_add(-1);
        assert!(b.has_listeners());
        b.listeners_add(-1);
        assert!(!b.has_listeners());
    }
}
