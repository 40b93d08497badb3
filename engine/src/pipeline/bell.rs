//! Parking an idle pipeline thread, and waking it: the last phase of
//! [`WaitStrategy::Phased`].
//!
//! A thread whose input stays empty spins briefly ([`SPIN_STEPS`] pause hints), then yields
//! for [`YIELD_FOR`], then parks ([`std::thread::park_timeout`], a futex wait on Linux) until
//! whoever publishes to its input rings its [`Bell`]. Under load it never gets as far as
//! parking: commands 20 µs apart (50k/s) keep it in the yield phase, so the wake-up path costs
//! nothing where latency matters, and an idle pipeline costs nothing at all.
//!
//! # No lost wake-up
//!
//! The classic race: the consumer finds its queue empty and decides to park; the producer
//! publishes and sees nobody asleep; the consumer parks, with an item waiting, for ever. The
//! protocol here is a store-buffering pair, each side a store, a `SeqCst` fence, then a load:
//!
//! - consumer: `sleeping = true` ([`Bell::arm`]); fence; **poll the queue again**; park only if
//!   that poll is still empty;
//! - producer: publish (the queue's `Release` store); fence ([`Bell::ring`]); load `sleeping`,
//!   and if it is set, clear it and `unpark` the thread.
//!
//! With a `SeqCst` fence between each side's store and load, at least one side sees the
//! other's store: either the consumer's second poll sees the item (it does not park), or the
//! producer sees `sleeping` and unparks it. `unpark` before `park` is not lost either: the
//! thread's park token makes the next `park` return at once. The failure flag and shutdown use
//! the same pairing ([`Bell::wake`] fences first). A guard timeout ([`PARK_GUARD`]) bounds the
//! damage of any bug here to a delay instead of a hang; `tests::stress_never_loses_a_wake_up`
//! parks with no timeout at all, so a lost wake-up there fails the test instead.
//!
//! Nothing here allocates: the thread handle is taken once, when the thread starts.
//!
//! [`WaitStrategy::Phased`]: super::WaitStrategy::Phased

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::layout::WaitStrategy;

/// Pause hints before the first yield (a few microseconds).
pub const SPIN_STEPS: u32 = 256;
/// How long an idle thread keeps yielding before it parks.
pub const YIELD_FOR: Duration = Duration::from_micros(500);
/// The longest a parked thread sleeps without being rung (a safety net only: every publish,
/// the end of every thread and every failure ring).
pub const PARK_GUARD: Duration = Duration::from_millis(100);

/// One consumer thread's doorbell.
#[derive(Debug, Default)]
pub(crate) struct Bell {
    /// Set by the consumer before its last look at the queue; cleared by whoever wakes it.
    sleeping: CachePadded<AtomicBool>,
    /// The consumer thread, registered when it starts.
    thread: OnceLock<Thread>,
    /// Times the consumer parked (monitoring, tests).
    parks: AtomicU64,
}

impl Bell {
    /// Called once on the consumer's own thread, before it polls.
    pub(crate) fn register(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// The producer's side, after it published: wakes the consumer if it is (about to be)
    /// parked. A fence and a load when it is not.
    #[inline]
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            self.unpark();
        }
    }

    /// [`Bell::ring`] for shutdown and failure (same protocol).
    pub(crate) fn wake(&self) {
        self.ring();
    }

    #[cold]
    fn unpark(&self) {
        if self.sleeping.swap(false, Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// The consumer announces it is about to park; it must look at its queue (and the failure
    /// flag) once more before [`Bell::park`].
    #[inline]
    pub(crate) fn arm(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The consumer found work after arming: no wake is needed any more.
    #[inline]
    pub(crate) fn disarm(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Parks until rung (or `guard` passes; `None`: no guard). Call only after [`Bell::arm`]
    /// and a look at the queue that found it empty.
    pub(crate) fn park(&self, guard: Option<Duration>) {
        self.parks.fetch_add(1, Ordering::Relaxed);
        match guard {
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
        self.disarm();
    }

    /// Times the consumer parked.
    pub(crate) fn parks(&self) -> u64 {
        self.parks.load(Ordering::Relaxed)
    }
}

/// One thread's progress through the phases of an idle spell.
#[derive(Debug)]
pub(crate) struct Idler<'a> {
    wait: WaitStrategy,
    /// The bell to park on; `None`: this wait never parks (a full output or R waiting for S:
    /// both end by another thread's progress, not by a publish anyone would ring for).
    bell: Option<&'a Bell>,
    guard: Option<Duration>,
    steps: u32,
    yield_since: Option<Instant>,
    armed: bool,
}

impl<'a> Idler<'a> {
    pub(crate) fn new(wait: WaitStrategy, bell: Option<&'a Bell>) -> Idler<'a> {
        Idler {
            wait,
            bell,
            guard: Some(PARK_GUARD),
            steps: 0,
            yield_since: None,
            armed: false,
        }
    }

    #[cfg(test)]
    fn without_guard(mut self) -> Self {
        self.guard = None;
        self
    }

    /// The input had work: the next idle spell starts from the spin phase.
    #[inline]
    pub(crate) fn busy(&mut self) {
        if self.steps != 0 {
            self.steps = 0;
            self.yield_since = None;
            if self.armed {
                self.armed = false;
                if let Some(b) = self.bell {
                    b.disarm();
                }
            }
        }
    }

    /// One idle step, after a look at the input found it empty (and the failure flag clear).
    /// In the park phase the first step arms the bell and returns, so that the caller looks
    /// once more; the next one parks.
    #[inline]
    pub(crate) fn idle(&mut self) {
        if self.wait != WaitStrategy::Phased {
            self.wait.idle();
            return;
        }
        self.phased();
    }

    fn phased(&mut self) {
        if self.steps < SPIN_STEPS {
            self.steps += 1;
            std::hint::spin_loop();
            return;
        }
        self.steps = SPIN_STEPS + 1;
        let since = *self.yield_since.get_or_insert_with(Instant::now);
        let bell = match self.bell {
            Some(b) if since.elapsed() >= YIELD_FOR => b,
            _ => {
                std::thread::yield_now();
                return;
            }
        };
        if self.armed {
            self.armed = false;
            bell.park(self.guard);
        } else {
            self.armed = true;
            bell.arm();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    /// A producer publishes a counter (the "queue") one item at a time, ringing after each,
    /// and waits until the consumer has seen the item before the next: every item is the last
    /// one for a while, so a single lost wake-up leaves the consumer parked (no guard timeout)
    /// and the producer's bounded wait fails the test instead of hanging it. Random pauses
    /// before each publish (spinning, yielding, sleeping past `YIELD_FOR`) make the publish
    /// land in every phase of the consumer's idle spell, the window between its last look and
    /// its park included.
    #[test]
    fn stress_never_loses_a_wake_up() {
        const ITEMS: u64 = 20_000;
        let published = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let bell = Arc::new(Bell::default());
        let (registered_tx, registered_rx) = mpsc::channel();
        let (p, s, b) = (Arc::clone(&published), Arc::clone(&seen), Arc::clone(&bell));
        // Detached: if it stays parked for ever, the test fails below and the process ends.
        std::thread::spawn(move || {
            b.register();
            registered_tx.send(()).unwrap();
            let mut idle = Idler::new(WaitStrategy::Phased, Some(&b)).without_guard();
            loop {
                let now = p.load(Ordering::Acquire);
                if now > s.load(Ordering::Relaxed) {
                    s.store(now, Ordering::Release);
                    idle.busy();
                    if now == ITEMS {
                        return;
                    }
                } else {
                    idle.idle();
                }
            }
        });
        registered_rx.recv().unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 1..=ITEMS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            match rng % 16 {
                // Long enough for the consumer to arm and park (or to be about to).
                0 => std::thread::sleep(YIELD_FOR + Duration::from_micros(rng % 500)),
                1..=3 => std::thread::yield_now(),
                n => {
                    for _ in 0..(rng >> 8) % (n * 64) {
                        std::hint::spin_loop();
                    }
                }
            }
            published.store(i, Ordering::Release);
            bell.ring();
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.load(Ordering::Acquire) < i {
                assert!(
                    Instant::now() < deadline,
                    "item {i}: the consumer stayed parked with work waiting (a lost wake-up)"
                );
                std::thread::yield_now();
            }
        }
        assert!(
            bell.parks() > 100,
            "the consumer parked {} times: the test proves little",
            bell.parks()
        );
    }

    #[test]
    fn other_strategies_never_park() {
        let bell = Bell::default();
        bell.register();
        let mut idle = Idler::new(WaitStrategy::Yield, Some(&bell));
        for _ in 0..10_000 {
            idle.idle();
        }
        assert_eq!(bell.parks(), 0);
    }
}
