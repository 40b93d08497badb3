//! The stages' code, written once for every layout and transport: each function here is one
//! thread's loop over an [`Inbox`], writing to an [`Outbox`].
//!
//! - [`run_journal`] — J alone (layouts `J|RMS`, `split`).
//! - [`run_fused`] — J, then R·M·S, on one thread (layout `fused`).
//! - [`run_business`] — R·M·S on one thread after J (layout `J|RMS`).
//! - [`run_risk`], [`run_match`], [`run_settle`] — R, M and S on their own threads (`split`).
//! - [`run_outbound`] — the embedder's handler.
//!
//! R, M and S are [`risk_stage`] (`crate::risk::stage`), [`match_stage`]
//! (`crate::matching::stage`) and [`settlement`] (`crate::settlement`), the
//! very functions `Engine::process` composes, so every layout computes what the
//! single-threaded engine computes.

use std::sync::Arc;

use ringbook_journal::Writer;

use super::bell::Idler;
use super::control::{BellId, Control};
use super::layout::WaitStrategy;
use super::output::{Output, OutputKind};
use super::queue::{Inbox, Outbox, Polled, BATCH_MAX};
use super::recovery::RECORD_TYPE_COMMAND_V1;
use super::shared::SharedEngine;
use super::slot::{InSlot, SettleKind, SettleMsg};
use super::snapshots::Snapshots;
use crate::codec::{self, COMMAND_BYTES_MAX};
use crate::engine::{Engine, RiskMode};
use crate::event::{Event, EventSink};
use crate::matching::stage::match_stage;
use crate::plan::Plan;
use crate::risk::stage::risk_stage;
use crate::settlement::{balances_reply, settlement};
use crate::types::Seq;

/// Events of command `seq` onto the outbound queue.
struct OutSink<'a, O> {
    out: &'a mut O,
    seq: Seq,
    ts: u64,
}

impl<O: Outbox<Output>> EventSink for OutSink<'_, O> {
    #[inline]
    fn on_event(&mut self, event: &Event) {
        self.out.push(Output {
            seq: self.seq,
            ts: self.ts,
            kind: OutputKind::Event(*event),
        });
    }
}

/// M's events of command `seq` onto the M → S queue.
struct SettleSink<'a, O> {
    out: &'a mut O,
    seq: Seq,
}

impl<O: Outbox<SettleMsg>> EventSink for SettleSink<'_, O> {
    #[inline]
    fn on_event(&mut self, event: &Event) {
        self.out.push(SettleMsg {
            seq: self.seq,
            kind: SettleKind::Event(*event),
        });
    }
}

/// What a business thread hands back when it stops.
#[derive(Debug, Default)]
pub(crate) struct BusinessEnd {
    /// The engine, when this thread owned it (`fused`, `J|RMS`).
    pub(crate) engine: Option<Engine>,
    pub(crate) snapshots: Option<Snapshots>,
    pub(crate) processed: u64,
    pub(crate) last_seq: Option<Seq>,
    /// Fault injection ([`crate::pipeline::PipelineBuilder::inject_panic`]): the business
    /// stage panics on reaching this command (0: never).
    pub(crate) panic_at: u64,
    /// The soonest order expiry this thread last published.
    pub(crate) expiry: ExpiryGauge,
}

/// Publishes the engine's soonest order expiry for the pipeline's owner (an idle server ticks
/// the engine's clock when it passes: `PipelineGauges::next_expiry_ns`): one store per batch
/// that changed it, none otherwise, so the shared line is not written per command.
#[derive(Debug, Default)]
pub(crate) struct ExpiryGauge {
    /// The last value published, plus one (0: nothing published yet).
    last_plus_one: u64,
}

impl ExpiryGauge {
    #[inline]
    pub(crate) fn publish(&mut self, next_ns: u64, control: &Control) {
        let v = next_ns.wrapping_add(1);
        if v != self.last_plus_one {
            self.last_plus_one = v;
            control.note_next_expiry(next_ns);
        }
    }
}

impl BusinessEnd {
    /// A business thread's start: nothing processed, the fault (if any) armed.
    pub(crate) fn new(panic_at: u64) -> BusinessEnd {
        BusinessEnd {
            panic_at,
            ..BusinessEnd::default()
        }
    }

    /// Fault injection: panics if this is the command the builder named.
    #[inline]
    fn fault(&self, seq: Seq) {
        if self.panic_at == seq.0 {
            injected_panic("business", seq);
        }
    }
}

/// The injected failure ([`crate::pipeline::PipelineBuilder::inject_panic`]).
#[cold]
#[inline(never)]
pub(crate) fn injected_panic(stage: &str, seq: Seq) -> ! {
    panic!("fault injection: the {stage} stage panics at command {seq}")
}

/// J: every command, encoded, into the journal; then the batch's sync (`end_batch`).
#[derive(Debug)]
pub(crate) struct JournalStage {
    pub(crate) writer: Option<Writer>,
    /// Where the snapshot writer asks for segment pruning (`--keep-snapshots`).
    pub(crate) control: Control,
}

impl JournalStage {
    /// Appends the batch and applies the durability policy; only then may the caller release
    /// it. A journal that cannot be written is fatal: the thread panics, the pipeline stops.
    #[inline]
    pub(crate) fn journal(&mut self, batch: &[&InSlot]) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        for slot in batch {
            let mut buf = [0u8; COMMAND_BYTES_MAX];
            let len = codec::encode(&slot.cmd, &mut buf);
            if let Err(e) = writer.append_with(
                slot.seq.0,
                RECORD_TYPE_COMMAND_V1,
                slot.timestamp_ns,
                len,
                |payload| payload.copy_from_slice(&buf[..len]),
            ) {
                panic!("journal append of command {} failed: {e}", slot.seq);
            }
        }
        if let Err(e) = writer.end_batch() {
            panic!(
                "journal sync after command {} failed: {e}",
                batch[batch.len() - 1].seq
            );
        }
        let totals = writer.stats();
        self.control.note_journal(totals.records, totals.bytes);
        if let Some(before) = self.control.take_prune() {
            prune(writer, before);
        }
    }

    /// Closes the journal (a final sync under a durability policy).
    pub(crate) fn close(self) -> Result<(), String> {
        match self.writer {
            Some(w) => w.close().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// Removes the journal segments the snapshot writer no longer needs (rare: once per pruned
/// snapshot; a pause of this thread for a directory listing and a few unlinks). A failure is
/// reported and left for the operator: it loses nothing.
#[cold]
#[inline(never)]
fn prune(writer: &Writer, before: u64) {
    if let Err(e) = writer.prune(before, false) {
        eprintln!("ringbook pipeline: pruning journal segments before {before} failed: {e}");
    }
}

/// Polls `inbox` until it closes, calling `f` per batch of at most `limit` and idling with
/// `wait` (checking for a failed sibling) while it is empty. `me` is this thread's bell (it
/// parks on it under [`WaitStrategy::Phased`]); `next` the bell of the thread that consumes
/// what a batch releases, rung after each batch.
#[inline]
fn drain<T, I: Inbox<T>>(
    inbox: &mut I,
    limit: usize,
    wait: WaitStrategy,
    control: &Control,
    (me, next): (BellId, Option<BellId>),
    mut f: impl FnMut(&[&T]),
) {
    let mut idle = Idler::new(wait, Some(control.bell(me)));
    loop {
        match inbox.poll(limit, &mut f) {
            Polled::Items(()) => {
                idle.busy();
                if let Some(next) = next {
                    control.ring(next);
                }
            }
            Polled::Empty => {
                control.check();
                idle.idle();
            }
            Polled::Closed => return,
        }
    }
}

/// J alone: journal each batch, sync, release it to R (or R·M·S).
pub(crate) fn run_journal<I: Inbox<InSlot>>(
    mut inbox: I,
    mut journal: JournalStage,
    wait: WaitStrategy,
    control: Control,
) -> Result<(), String> {
    drain(
        &mut inbox,
        BATCH_MAX,
        wait,
        &control,
        (BellId::Inbound, Some(BellId::Business)),
        |batch| journal.journal(batch),
    );
    journal.close()
}

/// R·M·S for one command on one thread: `Engine::process`, then `Done`, then a snapshot if
/// one is due at this boundary.
#[inline]
pub(crate) fn process_one<O: Outbox<Output>>(
    engine: &mut Engine,
    out: &mut O,
    snapshots: &mut Snapshots,
    end: &mut BusinessEnd,
    slot: &InSlot,
) {
    let (seq, ts) = (slot.seq, slot.timestamp_ns);
    end.fault(seq);
    engine.process_at(ts, &slot.cmd, &mut OutSink { out, seq, ts });
    out.push(Output {
        seq,
        ts,
        kind: OutputKind::Done,
    });
    end.processed += 1;
    end.last_seq = Some(seq);
    snapshots.at_boundary(engine, seq, slot.timestamp_ns);
}

/// [`process_one`] over a batch, each command's order slot prefetched while the one before it
/// is processed ([`Engine::prefetch`]): a cancel of a cold order then finds it in cache.
#[inline]
fn process_batch<O: Outbox<Output>>(
    engine: &mut Engine,
    out: &mut O,
    snapshots: &mut Snapshots,
    end: &mut BusinessEnd,
    batch: &[&InSlot],
) {
    for (i, slot) in batch.iter().enumerate() {
        if let Some(next) = batch.get(i + 1) {
            engine.prefetch(&next.cmd);
        }
        process_one(engine, out, snapshots, end, slot);
    }
}

/// The fused layout's one thread: J over the whole batch, `end_batch`, then R·M·S over it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_fused<I: Inbox<InSlot>, O: Outbox<Output>>(
    mut inbox: I,
    mut journal: JournalStage,
    mut engine: Engine,
    mut out: O,
    mut snapshots: Snapshots,
    mut end: BusinessEnd,
    wait: WaitStrategy,
    control: Control,
) -> (BusinessEnd, Result<(), String>) {
    drain(
        &mut inbox,
        BATCH_MAX,
        wait,
        &control,
        (BellId::Inbound, Some(BellId::Out)),
        |batch| {
            journal.journal(batch);
            process_batch(&mut engine, &mut out, &mut snapshots, &mut end, batch);
            end.expiry.publish(engine.next_expiry_ns(), &control);
        },
    );
    end.engine = Some(engine);
    end.snapshots = Some(snapshots);
    (end, journal.close())
}

/// The `J|RMS` layout's business thread.
pub(crate) fn run_business<I: Inbox<InSlot>, O: Outbox<Output>>(
    mut inbox: I,
    mut engine: Engine,
    mut out: O,
    mut snapshots: Snapshots,
    mut end: BusinessEnd,
    wait: WaitStrategy,
    control: Control,
) -> BusinessEnd {
    drain(
        &mut inbox,
        BATCH_MAX,
        wait,
        &control,
        (BellId::Business, Some(BellId::Out)),
        |batch| {
            process_batch(&mut engine, &mut out, &mut snapshots, &mut end, batch);
            end.expiry.publish(engine.next_expiry_ns(), &control);
        },
    );
    end.engine = Some(engine);
    end.snapshots = Some(snapshots);
    end
}

/// R on its own thread (split): one command at a time; waits for S to finish the previous
/// one, takes a due snapshot at that boundary, then validates and locks, leaving its decision
/// in the slot for M.
pub(crate) fn run_risk<I: Inbox<InSlot>>(
    mut inbox: I,
    shared: Arc<SharedEngine>,
    mut snapshots: Snapshots,
    mut end: BusinessEnd,
    wait: WaitStrategy,
    control: Control,
) -> BusinessEnd {
    let mut last_timestamp_ns = 0;
    drain(
        &mut inbox,
        1,
        wait,
        &control,
        (BellId::Business, Some(BellId::Match)),
        |batch| {
            let slot = batch[0];
            let previous = slot.seq.0 as i64 - 1;
            // S is working on the previous command: this wait ends by its progress, so it spins
            // and yields but never parks.
            let mut idle = Idler::new(wait, None);
            while control.s_done() < previous {
                control.check();
                idle.idle();
            }
            if let Some(last) = end.last_seq {
                debug_assert_eq!(last.0 as i64, previous);
                // SAFETY: `s_done ≥ seq − 1` was loaded (Acquire) above and command `seq` is not
                // released yet: M and S are idle (shared.rs), nothing writes the engine.
                let engine = unsafe { shared.engine() };
                snapshots.at_boundary(engine, last, last_timestamp_ns);
            }
            end.fault(slot.seq);
            // SAFETY: as above, and only until this closure returns (the slot's release).
            let (risk, specs, accounts, matcher) = unsafe { shared.risk_parts() };
            // SAFETY: R holds the slot (J released it, R has not), see `InSlot::risk_mut`.
            let decision = unsafe { slot.risk_mut() };
            // M moves engine time to the stamp only after R: R validates at the stamp itself.
            let now_ns = matcher.now_ns().max(slot.timestamp_ns);
            decision.plan = risk_stage(
                risk,
                specs,
                accounts,
                matcher,
                now_ns,
                &slot.cmd,
                &mut *decision,
            );
            end.processed += 1;
            end.last_seq = Some(slot.seq);
            last_timestamp_ns = slot.timestamp_ns;
        },
    );
    end.snapshots = Some(snapshots);
    end
}

/// M on its own thread (split): one command at a time; forwards R's own events, matches, and
/// frames the command for S with `Begin(plan)` … `Done`.
pub(crate) fn run_match<I: Inbox<InSlot>, O: Outbox<SettleMsg>>(
    mut inbox: I,
    shared: Arc<SharedEngine>,
    mut out: O,
    wait: WaitStrategy,
    control: Control,
) {
    let mut expiry = ExpiryGauge::default();
    drain(
        &mut inbox,
        1,
        wait,
        &control,
        (BellId::Match, Some(BellId::Settle)),
        |batch| {
            let slot = batch[0];
            let seq = slot.seq;
            // SAFETY: R released this slot before M's poller could see it (cursor Release →
            // Acquire), and the producer will not reuse it before M releases it.
            let decision = unsafe { slot.risk() };
            let plan = decision.plan;
            out.push(SettleMsg {
                seq,
                kind: SettleKind::Begin(plan, slot.timestamp_ns),
            });
            for event in &decision.events {
                out.push(SettleMsg {
                    seq,
                    kind: SettleKind::Event(*event),
                });
            }
            // SAFETY: M holds command `seq` between R's release and its `Done` to S; S touches
            // only the accounts meanwhile and R waits for S (shared.rs).
            let matcher = unsafe { shared.matcher() };
            // Engine time moves with every command, whatever R decided (`Engine::process_at`).
            matcher.advance(slot.timestamp_ns);
            // Also for `Plan::Rejected`: a new order R rejected still consumes its client order
            // id and finishes as REJECTED in its owner's window.
            match_stage(
                matcher,
                &slot.cmd,
                plan,
                &mut SettleSink { out: &mut out, seq },
            );
            expiry.publish(matcher.next_expiry_ns(), &control);
            out.push(SettleMsg {
                seq,
                kind: SettleKind::Done,
            });
        },
    );
}

/// The next message on S's input, waiting for it; `None` once M is gone and all is drained.
#[inline]
fn next_settle<I: Inbox<SettleMsg>>(
    inbox: &mut I,
    wait: WaitStrategy,
    control: &Control,
) -> Option<SettleMsg> {
    let mut idle = Idler::new(wait, Some(control.bell(BellId::Settle)));
    loop {
        match inbox.poll(1, |batch| *batch[0]) {
            Polled::Items(msg) => {
                idle.busy();
                return Some(msg);
            }
            Polled::Empty => {
                control.check();
                idle.idle();
            }
            Polled::Closed => return None,
        }
    }
}

/// Feeds command `seq`'s events from S's input to `sink`, up to its `Done`.
#[inline]
fn forward_command<I: Inbox<SettleMsg>, S: EventSink>(
    inbox: &mut I,
    seq: Seq,
    sink: &mut S,
    wait: WaitStrategy,
    control: &Control,
) {
    loop {
        let msg = next_settle(inbox, wait, control)
            .unwrap_or_else(|| panic!("M stopped inside command {seq}"));
        debug_assert_eq!(msg.seq, seq);
        match msg.kind {
            SettleKind::Event(event) => sink.on_event(&event),
            SettleKind::Done => return,
            SettleKind::Begin(..) => panic!("command {} began inside {seq}", msg.seq),
        }
    }
}

/// S on its own thread (split): settles each command's events as M produces them, passes
/// them to the outbound queue, ends the command with `Done` and stores `s_done`.
pub(crate) fn run_settle<I: Inbox<SettleMsg>, O: Outbox<Output>>(
    mut inbox: I,
    shared: Arc<SharedEngine>,
    mut out: O,
    wait: WaitStrategy,
    control: Control,
) {
    while let Some(first) = next_settle(&mut inbox, wait, &control) {
        let SettleKind::Begin(plan, ts) = first.kind else {
            panic!(
                "S expected the start of command {}, got {first:?}",
                first.seq
            );
        };
        let seq = first.seq;
        let mut sink = OutSink {
            out: &mut out,
            seq,
            ts,
        };
        if shared.risk() == RiskMode::Off {
            forward_command(&mut inbox, seq, &mut sink, wait, &control);
        } else {
            // Whatever the plan, S settles what M emits: M expires due orders before any
            // command (docs/matching.md, "Expiry"), as `Engine::process` does.
            // SAFETY: from `Begin(seq)` to `Done(seq)` S alone touches the accounts: R
            // waits for `s_done ≥ seq` (stored below, after this borrow ends), M touches
            // only the matcher (shared.rs).
            let (specs, accounts) = unsafe { shared.settle_parts() };
            let mut settle = settlement(accounts, specs, plan, &mut sink);
            forward_command(&mut inbox, seq, &mut settle, wait, &control);
            if let Plan::Balances(user) = plan {
                balances_reply(accounts, user, &mut sink);
            }
        }
        out.push(Output {
            seq,
            ts,
            kind: OutputKind::Done,
        });
        control.set_s_done(seq.0);
        control.ring(BellId::Out);
    }
}

/// The outbound thread: the embedder's handler over every output, in order.
pub(crate) fn run_outbound<I: Inbox<Output>>(
    mut inbox: I,
    mut handler: Box<dyn FnMut(&Output) + Send>,
    wait: WaitStrategy,
    control: Control,
) {
    drain(
        &mut inbox,
        BATCH_MAX,
        wait,
        &control,
        (BellId::Out, None),
        |batch| {
            for output in batch {
                handler(output);
            }
        },
    );
}
