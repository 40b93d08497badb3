//! A threaded [`Threaded`] plan made real: its queues built, its threads spawned.
//!
//! A transport ([`Queues`]: [`Ring`] or [`Channel`]) names the six queue ends the stages use as
//! associated types, and builds the queues a plan needs as one [`Wired`] value: a
//! [`StageQueues`] variant per threaded layout, holding exactly the queues that layout's
//! threads own (the split layout's R, M and M → S queues exist only in its variant), and the
//! outbound queue only when an outbound thread will read it. [`spawn`] then matches on that
//! value once: every variant's fields are there, none is optional, and no layout can reach the
//! wiring without its queues.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};
use disruptor::{
    build_single_producer, BusySpin, SingleConsumerBarrier, SingleProducer, SingleProducerBarrier,
};

use super::control::{BellId, Control, PanicGuard};
use super::error::PipelineError;
use super::inline::InlineCore;
use super::layout::{Transport, WaitStrategy};
use super::output::Output;
use super::queue::{ChannelInbox, ChannelOutbox, Inbox, Outbox, OutputSink, RingInbox, RingOutbox};
use super::shared::SharedEngine;
use super::slot::{InSlot, SettleMsg};
use super::snapshots::Snapshots;
use super::stages::{self, BusinessEnd, JournalStage};
use super::topology::{Outbound, StageThreads, Threaded};
use super::Handler;
use crate::engine::Engine;

/// The producer side of the inbound queue.
pub(crate) enum Submitter {
    Ring(SingleProducer<InSlot, SingleConsumerBarrier>),
    Channel(Sender<InSlot>),
    /// The `inline` layout: no queue, the stages themselves.
    Inline(Box<InlineCore>),
}

/// What a pipeline thread hands back when it ends.
#[derive(Debug)]
pub(crate) enum ThreadEnd {
    Journal(Result<(), String>),
    Business(BusinessEnd),
    Fused(BusinessEnd, Result<(), String>),
    Nothing,
}

/// A spawned pipeline thread, by name.
pub(crate) type Thread = (&'static str, JoinHandle<ThreadEnd>);

/// Everything the threads take ownership of.
pub(crate) struct Parts {
    pub(crate) engine: Engine,
    pub(crate) journal: JournalStage,
    pub(crate) snapshots: Snapshots,
    pub(crate) handler: Handler,
    /// Fault injection: the business stage panics at this command (0: never).
    pub(crate) business_panic_at: u64,
}

/// A started threaded pipeline.
pub(crate) struct Started {
    pub(crate) submitter: Submitter,
    /// In spawn order: the stage threads, then the outbound thread.
    pub(crate) threads: Vec<Thread>,
    /// The split layout's engine, shared by R, M and S.
    pub(crate) shared: Option<Arc<SharedEngine>>,
}

/// Builds `plan`'s queues and spawns its threads over them (each counts itself ready before
/// it runs; the caller waits for that).
pub(crate) fn start(
    mut plan: Threaded,
    parts: Parts,
    control: &Control,
) -> Result<Started, PipelineError> {
    let mut spawner = Spawner {
        control: control.clone(),
        pins: std::mem::take(&mut plan.pins).into_iter(),
        threads: Vec::with_capacity(plan.thread_count()),
    };
    let (submitter, shared) = match plan.transport {
        Transport::Disruptor => {
            let (producer, wired) = Ring::build(&plan, control);
            (
                Submitter::Ring(producer),
                spawn(&mut spawner, parts, wired)?,
            )
        }
        Transport::Crossbeam => {
            let (sender, wired) = Channel::build(&plan, control);
            (
                Submitter::Channel(sender),
                spawn(&mut spawner, parts, wired)?,
            )
        }
    };
    Ok(Started {
        submitter,
        threads: spawner.threads,
        shared,
    })
}

/// A transport: the types of the queue ends the stages read and write, and how to build the
/// queues a plan needs.
pub(crate) trait Queues: Sized {
    /// The producer side of the inbound queue (what `submit` publishes to).
    type Producer;
    /// The inbound queue as J, its first reader, sees it.
    type Head: Inbox<InSlot> + Send + 'static;
    /// The inbound queue as a later reader (R·M·S, or R, then M) sees it.
    type Follow: Inbox<InSlot> + Send + 'static;
    /// M → S, M's end.
    type SettleTx: Outbox<SettleMsg> + Send + 'static;
    /// M → S, S's end.
    type SettleRx: Inbox<SettleMsg> + Send + 'static;
    /// The outbound queue, the last stage's end.
    type OutTx: Outbox<Output> + Send + 'static;
    /// The outbound queue, the outbound thread's end.
    type OutRx: Inbox<Output> + Send + 'static;

    /// The queues `plan` needs, and the inbound queue's producer side.
    fn build(plan: &Threaded, control: &Control) -> (Self::Producer, Wired<Self>);
}

/// The stage threads of one threaded layout, each with the queues it owns.
pub(crate) enum StageQueues<Q: Queues> {
    /// `JRMS`: one thread over the inbound queue.
    Fused { jrms: Q::Head },
    /// `J`, then `RMS` behind it on the same inbound queue.
    JournalThenBusiness { j: Q::Head, rms: Q::Follow },
    /// `J`, `R`, `M` in turn on the inbound queue; M hands S its events over M → S.
    Split {
        j: Q::Head,
        r: Q::Follow,
        m: Q::Follow,
        ms_tx: Q::SettleTx,
        ms_rx: Q::SettleRx,
    },
}

/// Where the last stage's outputs go.
pub(crate) enum OutputQueue<Q: Queues> {
    /// Into the outbound queue, which the outbound thread (waiting this way) reads.
    Thread {
        tx: Q::OutTx,
        rx: Q::OutRx,
        wait: WaitStrategy,
    },
    /// Straight to the handler on the last stage's thread: no queue.
    OnStageThread,
}

/// A threaded layout's queues, built and not yet owned by any thread.
pub(crate) struct Wired<Q: Queues> {
    stages: StageQueues<Q>,
    out: OutputQueue<Q>,
    /// How every stage thread waits.
    wait: WaitStrategy,
}

/// `disruptor` rings.
pub(crate) struct Ring;

impl Queues for Ring {
    type Producer = SingleProducer<InSlot, SingleConsumerBarrier>;
    type Head = RingInbox<InSlot, SingleProducerBarrier>;
    type Follow = RingInbox<InSlot, SingleConsumerBarrier>;
    type SettleTx = RingOutbox<SingleProducer<SettleMsg, SingleConsumerBarrier>>;
    type SettleRx = RingInbox<SettleMsg, SingleProducerBarrier>;
    type OutTx = RingOutbox<SingleProducer<Output, SingleConsumerBarrier>>;
    type OutRx = RingInbox<Output, SingleProducerBarrier>;

    fn build(plan: &Threaded, control: &Control) -> (Self::Producer, Wired<Ring>) {
        let wait = plan.wait;
        let out = match plan.outbound {
            Outbound::Thread(output_wait) => {
                let (rx, b) =
                    build_single_producer(plan.outbound_ring_slots, Output::default, BusySpin)
                        .new_event_poller();
                OutputQueue::Thread {
                    tx: RingOutbox::new(b.build(), BellId::Out, wait, control.clone()),
                    rx: RingInbox::new(rx),
                    wait: output_wait,
                }
            }
            Outbound::OnStageThread => OutputQueue::OnStageThread,
        };
        // Each reader of the inbound ring is gated on the one before it (`and_then`).
        let (j, b) =
            build_single_producer(plan.ring_slots, InSlot::default, BusySpin).new_event_poller();
        let j = RingInbox::new(j);
        let (stages, producer) = match plan.stages {
            StageThreads::Fused => (StageQueues::Fused { jrms: j }, b.build()),
            StageThreads::JournalThenBusiness => {
                let (rms, b) = b.and_then().new_event_poller();
                let rms = RingInbox::new(rms);
                (StageQueues::JournalThenBusiness { j, rms }, b.build())
            }
            StageThreads::Split => {
                let (r, b) = b.and_then().new_event_poller();
                let (m, b) = b.and_then().new_event_poller();
                let (ms_rx, ms) =
                    build_single_producer(plan.outbound_ring_slots, SettleMsg::default, BusySpin)
                        .new_event_poller();
                let stages = StageQueues::Split {
                    j,
                    r: RingInbox::new(r),
                    m: RingInbox::new(m),
                    ms_tx: RingOutbox::new(ms.build(), BellId::Settle, wait, control.clone()),
                    ms_rx: RingInbox::new(ms_rx),
                };
                (stages, b.build())
            }
        };
        (producer, Wired { stages, out, wait })
    }
}

/// `crossbeam_channel::bounded` channels: a reader that is not the last passes each item on
/// to the next reader's channel.
pub(crate) struct Channel;

impl Queues for Channel {
    type Producer = Sender<InSlot>;
    type Head = ChannelInbox<InSlot>;
    type Follow = ChannelInbox<InSlot>;
    type SettleTx = ChannelOutbox<SettleMsg>;
    type SettleRx = ChannelInbox<SettleMsg>;
    type OutTx = ChannelOutbox<Output>;
    type OutRx = ChannelInbox<Output>;

    fn build(plan: &Threaded, control: &Control) -> (Self::Producer, Wired<Channel>) {
        let wait = plan.wait;
        let inbox = |rx, next| ChannelInbox::new(rx, next, wait, control.clone());
        let out = match plan.outbound {
            Outbound::Thread(output_wait) => {
                let (tx, rx) = bounded::<Output>(plan.outbound_ring_slots);
                OutputQueue::Thread {
                    tx: ChannelOutbox::new(tx, BellId::Out, wait, control.clone()),
                    rx: ChannelInbox::new(rx, None, output_wait, control.clone()),
                    wait: output_wait,
                }
            }
            Outbound::OnStageThread => OutputQueue::OnStageThread,
        };
        let (submit, j_rx) = bounded::<InSlot>(plan.ring_slots);
        let stages = match plan.stages {
            StageThreads::Fused => StageQueues::Fused {
                jrms: inbox(j_rx, None),
            },
            StageThreads::JournalThenBusiness => {
                let (jr_tx, jr_rx) = bounded::<InSlot>(plan.ring_slots);
                StageQueues::JournalThenBusiness {
                    j: inbox(j_rx, Some((jr_tx, BellId::Business))),
                    rms: inbox(jr_rx, None),
                }
            }
            StageThreads::Split => {
                let (jr_tx, jr_rx) = bounded::<InSlot>(plan.ring_slots);
                let (rm_tx, rm_rx) = bounded::<InSlot>(plan.ring_slots);
                let (ms_tx, ms_rx) = bounded::<SettleMsg>(plan.outbound_ring_slots);
                StageQueues::Split {
                    j: inbox(j_rx, Some((jr_tx, BellId::Business))),
                    r: inbox(jr_rx, Some((rm_tx, BellId::Match))),
                    m: inbox(rm_rx, None),
                    ms_tx: ChannelOutbox::new(ms_tx, BellId::Settle, wait, control.clone()),
                    ms_rx: ChannelInbox::new(ms_rx, None, wait, control.clone()),
                }
            }
        };
        (submit, Wired { stages, out, wait })
    }
}

struct Spawner {
    control: Control,
    pins: std::vec::IntoIter<Option<core_affinity::CoreId>>,
    threads: Vec<Thread>,
}

impl Spawner {
    /// Starts a pipeline thread: pinned (if configured), its bell registered, marked failed
    /// if it panics (and every parked thread woken when it ends), counted ready before it runs
    /// `body`.
    fn spawn(
        &mut self,
        name: &'static str,
        bell: BellId,
        body: impl FnOnce() -> ThreadEnd + Send + 'static,
    ) -> Result<(), PipelineError> {
        let control = self.control.clone();
        let pin = self.pins.next().flatten();
        let handle = std::thread::Builder::new()
            .name(format!("ringbook-{name}"))
            .spawn(move || {
                let _guard = PanicGuard(control.clone());
                if let Some(core) = pin {
                    core_affinity::set_for_current(core);
                }
                control.bell(bell).register();
                control.mark_ready();
                body()
            })
            .map_err(PipelineError::Spawn)?;
        self.threads.push((name, handle));
        Ok(())
    }
}

/// Spawns the stage threads over `wired`'s queues, in layout order, then the outbound thread
/// if there is one (the order the pins are given in); returns the split layout's shared
/// engine.
fn spawn<Q: Queues>(
    spawner: &mut Spawner,
    parts: Parts,
    wired: Wired<Q>,
) -> Result<Option<Arc<SharedEngine>>, PipelineError> {
    let Parts {
        engine,
        journal,
        snapshots,
        handler,
        business_panic_at,
    } = parts;
    let end = BusinessEnd::new(business_panic_at);
    let wait = wired.wait;
    let c = spawner.control.clone();
    let (out_tx, outbound) = match wired.out {
        OutputQueue::Thread { tx, rx, wait } => (OutputSink::Queue(tx), Some((rx, handler, wait))),
        OutputQueue::OnStageThread => (OutputSink::Inline(handler), None),
    };
    let mut shared = None;
    match wired.stages {
        StageQueues::Fused { jrms } => {
            let c1 = c.clone();
            spawner.spawn("JRMS", BellId::Inbound, move || {
                let (end, closed) =
                    stages::run_fused(jrms, journal, engine, out_tx, snapshots, end, wait, c1);
                ThreadEnd::Fused(end, closed)
            })?;
        }
        StageQueues::JournalThenBusiness { j, rms } => {
            let c1 = c.clone();
            spawner.spawn("J", BellId::Inbound, move || {
                ThreadEnd::Journal(stages::run_journal(j, journal, wait, c1))
            })?;
            let c2 = c.clone();
            spawner.spawn("RMS", BellId::Business, move || {
                ThreadEnd::Business(stages::run_business(
                    rms, engine, out_tx, snapshots, end, wait, c2,
                ))
            })?;
        }
        StageQueues::Split {
            j,
            r,
            m,
            ms_tx,
            ms_rx,
        } => {
            let engine = Arc::new(SharedEngine::new(engine));
            shared = Some(Arc::clone(&engine));
            let c1 = c.clone();
            spawner.spawn("J", BellId::Inbound, move || {
                ThreadEnd::Journal(stages::run_journal(j, journal, wait, c1))
            })?;
            let (c2, e2) = (c.clone(), Arc::clone(&engine));
            spawner.spawn("R", BellId::Business, move || {
                ThreadEnd::Business(stages::run_risk(r, e2, snapshots, end, wait, c2))
            })?;
            let (c3, e3) = (c.clone(), Arc::clone(&engine));
            spawner.spawn("M", BellId::Match, move || {
                stages::run_match(m, e3, ms_tx, wait, c3);
                ThreadEnd::Nothing
            })?;
            let (c4, e4) = (c.clone(), engine);
            spawner.spawn("S", BellId::Settle, move || {
                stages::run_settle(ms_rx, e4, out_tx, wait, c4);
                ThreadEnd::Nothing
            })?;
        }
    }
    if let Some((out_rx, handler, output_wait)) = outbound {
        spawner.spawn("out", BellId::Out, move || {
            stages::run_outbound(out_rx, handler, output_wait, c);
            ThreadEnd::Nothing
        })?;
    }
    Ok(shared)
}
