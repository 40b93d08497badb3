//! The queues between stages, behind two small traits so that the stage code is written once.
//!
//! - [`Inbox`]: a stage's input. `poll(limit, f)` hands `f` up to `limit` waiting items as a
//!   batch of references; when `f` returns, the batch is released to the next stage. On a
//!   disruptor ring that is the `EventGuard` drop (a `Release` store of this stage's cursor,
//!   the next stage's poller reading the same slots in place); on a channel it is sending the
//!   items on to the next stage's channel, by value.
//! - [`Outbox`]: a stage's output into a queue whose items are plain `Copy` values (the M → S
//!   ring, the outbound ring). A full queue is waited out with the thread's wait strategy.
//!
//! Neither allocates after construction: the channel inbox stages a batch in a fixed
//! `ArrayVec`, the disruptor inbox collects `&T`s in one.

use arrayvec::ArrayVec;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use disruptor::{EventPoller, Polling, Producer, SingleConsumerBarrier, SingleProducerBarrier};

use super::control::{BellId, Control};
use super::layout::WaitStrategy;

/// The most items one `poll` hands a stage (and so the largest journal batch between syncs).
pub const BATCH_MAX: usize = 256;

/// What one poll found.
#[derive(Debug)]
pub(crate) enum Polled<R> {
    /// A batch was handled; `f` returned this.
    Items(R),
    /// Nothing waiting.
    Empty,
    /// The producer side is gone and everything was drained.
    Closed,
}

/// A stage's input.
pub(crate) trait Inbox<T> {
    /// Hands `f` up to `limit` (≤ [`BATCH_MAX`]) waiting items, then releases them downstream.
    fn poll<R>(&mut self, limit: usize, f: impl FnOnce(&[&T]) -> R) -> Polled<R>;
}

/// A disruptor poller as an inbox.
pub(crate) struct RingInbox<T, B> {
    poller: EventPoller<T, B>,
}

impl<T, B> std::fmt::Debug for RingInbox<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingInbox")
    }
}

impl<T, B> RingInbox<T, B> {
    pub(crate) fn new(poller: EventPoller<T, B>) -> Self {
        RingInbox { poller }
    }
}

// The disruptor's `Barrier` trait is not nameable outside the crate: one impl per barrier.
macro_rules! ring_inbox {
    ($barrier:ty) => {
        impl<T> Inbox<T> for RingInbox<T, $barrier> {
            #[inline]
            fn poll<R>(&mut self, limit: usize, f: impl FnOnce(&[&T]) -> R) -> Polled<R> {
                debug_assert!((1..=BATCH_MAX).contains(&limit));
                match self.poller.take(limit as u64) {
                    Ok(mut guard) => {
                        let batch: ArrayVec<&T, BATCH_MAX> = (&mut guard).collect();
                        let r = f(&batch);
                        drop(batch);
                        drop(guard); // releases the batch: Release store of this stage's cursor
                        Polled::Items(r)
                    }
                    Err(Polling::NoEvents) => Polled::Empty,
                    Err(Polling::Shutdown) => Polled::Closed,
                }
            }
        }
    };
}
ring_inbox!(SingleProducerBarrier);
ring_inbox!(SingleConsumerBarrier);

/// A bounded channel as an inbox; released items go on to `next`, if any.
#[derive(Debug)]
pub(crate) struct ChannelInbox<T> {
    rx: Receiver<T>,
    /// The next stage's channel and the bell of the thread that reads it.
    next: Option<(Sender<T>, BellId)>,
    /// Boxed: a batch of commands is tens of KiB, too much to move around on a stack.
    staged: Box<ArrayVec<T, BATCH_MAX>>,
    wait: WaitStrategy,
    control: Control,
}

impl<T> ChannelInbox<T> {
    pub(crate) fn new(
        rx: Receiver<T>,
        next: Option<(Sender<T>, BellId)>,
        wait: WaitStrategy,
        control: Control,
    ) -> Self {
        ChannelInbox {
            rx,
            next,
            staged: Box::new(ArrayVec::new()),
            wait,
            control,
        }
    }
}

impl<T> Inbox<T> for ChannelInbox<T> {
    #[inline]
    fn poll<R>(&mut self, limit: usize, f: impl FnOnce(&[&T]) -> R) -> Polled<R> {
        debug_assert!((1..=BATCH_MAX).contains(&limit));
        let mut closed = false;
        while self.staged.len() < limit {
            match self.rx.try_recv() {
                Ok(item) => self.staged.push(item),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if self.staged.is_empty() {
            return if closed {
                Polled::Closed
            } else {
                Polled::Empty
            };
        }
        let batch: ArrayVec<&T, BATCH_MAX> = self.staged.iter().collect();
        let r = f(&batch);
        drop(batch);
        match &self.next {
            Some((next, bell)) => {
                for item in self.staged.drain(..) {
                    send_waiting(next, *bell, item, self.wait, &self.control);
                }
            }
            None => self.staged.clear(),
        }
        Polled::Items(r)
    }
}

/// Sends on a bounded channel, waiting out a full one with `wait`; `consumer` is the bell of
/// the thread that reads it, rung before waiting (it may have parked before the channel
/// filled: the publisher rings only once per batch).
#[inline]
pub(crate) fn send_waiting<T>(
    tx: &Sender<T>,
    consumer: BellId,
    mut item: T,
    wait: WaitStrategy,
    control: &Control,
) {
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                item = back;
                control.ring(consumer);
                control.check();
                wait.idle();
            }
            // The consumer is gone: it panicked, and `control` says so; stop here too.
            Err(TrySendError::Disconnected(_)) => control.fail_downstream(),
        }
    }
}

/// A stage's output of `Copy` items.
pub(crate) trait Outbox<T: Copy> {
    /// Publishes `item`, waiting (with the thread's wait strategy) while the queue is full.
    fn push(&mut self, item: T);
}

/// A disruptor producer as an outbox.
pub(crate) struct RingOutbox<P> {
    producer: P,
    /// The bell of the thread that consumes this ring.
    consumer: BellId,
    wait: WaitStrategy,
    control: Control,
}

impl<P> std::fmt::Debug for RingOutbox<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingOutbox")
    }
}

impl<P> RingOutbox<P> {
    pub(crate) fn new(producer: P, consumer: BellId, wait: WaitStrategy, control: Control) -> Self {
        RingOutbox {
            producer,
            consumer,
            wait,
            control,
        }
    }
}

impl<T: Copy, P: Producer<T>> Outbox<T> for RingOutbox<P> {
    #[inline]
    fn push(&mut self, item: T) {
        while self.producer.try_publish(|slot| *slot = item).is_err() {
            // Full: the consumer may have parked before it filled (rings come per batch).
            self.control.ring(self.consumer);
            self.control.check();
            self.wait.idle();
        }
    }
}

/// A bounded channel as an outbox.
#[derive(Debug)]
pub(crate) struct ChannelOutbox<T> {
    tx: Sender<T>,
    /// The bell of the thread that reads the channel.
    consumer: BellId,
    wait: WaitStrategy,
    control: Control,
}

impl<T> ChannelOutbox<T> {
    pub(crate) fn new(
        tx: Sender<T>,
        consumer: BellId,
        wait: WaitStrategy,
        control: Control,
    ) -> Self {
        ChannelOutbox {
            tx,
            consumer,
            wait,
            control,
        }
    }
}

impl<T: Copy> Outbox<T> for ChannelOutbox<T> {
    #[inline]
    fn push(&mut self, item: T) {
        send_waiting(&self.tx, self.consumer, item, self.wait, &self.control);
    }
}

/// Where a stage's outputs go: the outbound queue (an outbound thread runs the handler), or the
/// handler itself, called inline on the stage's thread (no outbound thread at all: for small
/// machines, where every extra thread competes with the busy-spinning ones for a core).
pub(crate) enum OutputSink<OB> {
    /// Through the outbound queue.
    Queue(OB),
    /// Straight to the embedder's handler.
    Inline(Box<dyn FnMut(&crate::pipeline::Output) + Send>),
}

impl<OB> std::fmt::Debug for OutputSink<OB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputSink::Queue(_) => "OutputSink::Queue",
            OutputSink::Inline(_) => "OutputSink::Inline",
        })
    }
}

impl<OB: Outbox<crate::pipeline::Output>> Outbox<crate::pipeline::Output> for OutputSink<OB> {
    #[inline]
    fn push(&mut self, item: crate::pipeline::Output) {
        match self {
            OutputSink::Queue(queue) => queue.push(item),
            OutputSink::Inline(handler) => handler(&item),
        }
    }
}
