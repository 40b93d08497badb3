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

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;
use mio::Waker;
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
    /// Sent instead of [`WebOutKind::Done`] while the web edge's market-data feed is on
    /// ([`WebBridge::enable_market_data`]): a command, from any origin, is fully processed
    /// (journaled); its sequence number and time stamp (Unix nanoseconds, for the web edge's own
    /// market-data builder). With `request != 0` it also completes that web request.
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
    /// Authenticated WebSocket connections: with none, the loop sends no broadcast events.
    listeners: AtomicU64,
    /// The web edge keeps its own market-data builder: the loop sends it every event and an
    /// `Ended` for every command, whatever its origin.
    md_feed: AtomicBool,
    ready: AtomicBool,
    /// The web edge has stopped: the loop takes no more requests and pushes nothing more.
    closed: AtomicBool,
    /// Counters.
    pub stats: BridgeStats,
}

impl WebBridge {
    /// Queues of `requests_max` requests and `outputs_max` outputs (both at least 1).
    pub fn new(requests_max: usize, outputs_max: usize) -> Arc<WebBridge> {
        Arc::new(WebBridge {
            inbound: ArrayQueue::new(requests_max.max(1)),
            outbound: ArrayQueue::new(outputs_max.max(1)),
            waker: OnceLock::new(),
            wake_pending: AtomicBool::new(false),
            consumer: OnceLock::new(),
            out_blocked: AtomicBool::new(false),
            listeners: AtomicU64::new(0),
            md_feed: AtomicBool::new(false),
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

    /// Asks the loop for every output (each event, and an [`WebOutKind::Ended`] with the time
    /// stamp for each command, in sequence order), to feed the web edge's own market-data
    /// builder. Call before the gateway starts, so the builder (seeded from the journal) misses
    /// nothing. The outbound queue still never drops: the loop drains its backend only as far
    /// as the queue has room.
    pub fn enable_market_data(&self) {
        self.md_feed.store(true, Ordering::Release);
    }

    /// Whether [`WebBridge::enable_market_data`] was called.
    pub fn market_data_enabled(&self) -> bool {
        self.md_feed.load(Ordering::Relaxed)
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

    pub(crate) fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0 && !self.is_closed()
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
