//! The threaded pipeline: J → R → M → S on ring buffers, then an outbound ring to the
//! embedder's handler.
//!
//! ```text
//! submit ─▶ inbound ring ─▶ J: journal (append, end_batch) ─▶ R: risk ─▶ M: matching
//!     (seq, timestamp)                                              └─▶ M→S ring ─▶ S: settlement
//!                                              handler ◀─ outbound thread ◀─ outbound ring ◀─┘
//! ```
//!
//! The journal stage comes first (input journaling, as LMAX does): a command is on disk (by
//! the durability policy) before R sees it, so every event R, M and S produce may leave at once.
//! R, M and S run in lock-step per command (R(n) waits for S(n−1)), which keeps them exactly
//! the single-threaded [`Engine`]: every layout gives the same events and the same
//! `state_hash()` as [`Engine::process`]. docs/architecture.md ("The pipeline") has the
//! reasons and docs/embedding.md the manual.
//!
//! ```no_run
//! use ringbook_engine::pipeline::{Layout, OutputKind, Pipeline, WaitStrategy};
//! use ringbook_engine::prelude::*;
//!
//! let config = Config::default();
//! let mut pipeline = Pipeline::builder(&config)
//!     .layout(Layout::Fused)
//!     .wait(WaitStrategy::Yield)
//!     .journal("/tmp/ringbook-journal", ringbook_journal::JournalConfig::default())
//!     .on_output(|out| if let OutputKind::Event(e) = &out.kind { println!("{} {e:?}", out.seq) })
//!     .start()?;
//! let btc = config.currency_id("BTC").unwrap();
//! pipeline.submit(Command::Deposit { user: UserId(1), currency: btc, amount: 10 })?;
//! let report = pipeline.shutdown()?;
//! println!("state {}", report.state_hash);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Files, one per concept: [`layout`] (layouts, wait strategies, transports), `slot.rs` (the
//! messages), `queue.rs` (ring or channel behind one interface), `control.rs` (shared flags),
//! `shared.rs` (the split layout's shared engine and its SAFETY argument), `stages.rs` (every
//! thread's loop), `inline.rs` (the [`Layout::Inline`] layout: the stages on the caller's
//! thread), `recovery.rs` (also [`replay_journal`], the read-only replay),
//! `snapshots.rs`, `output.rs`, `error.rs`, `topology.rs` (the shape decided once from the
//! builder: inline, or which stage threads, outbound thread and pins, every start-up check)
//! and `wiring.rs` (a threaded shape's queues built per transport, then its threads spawned).
//! [`PipelineBuilder::start`] here runs the wiring steps, numbered once, in order.

mod bell;
mod control;
mod error;
mod inline;
pub mod layout;
mod output;
mod queue;
mod recovery;
#[allow(unsafe_code)]
mod shared;
#[allow(unsafe_code)]
mod slot;
mod snapshots;
#[allow(unsafe_code)]
mod stages;
mod topology;
mod wiring;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::TrySendError;
use disruptor::Producer;
use ringbook_journal::JournalConfig;

pub use bell::{PARK_GUARD, SPIN_STEPS, YIELD_FOR};
pub use error::{panic_message, PipelineError, SubmitError};
pub use layout::{Layout, ParseLayoutError, ParseWaitError, Transport, WaitStrategy};
pub use output::{Output, OutputKind};
pub use queue::BATCH_MAX;
pub use recovery::{
    replay_journal, replay_journal_outputs, RecoveryInfo, ReplayInfo, RECORD_TYPE_COMMAND_V1,
};
pub use snapshots::SnapshotStats;

pub use topology::{check_spinning, spinning_threads, RING_SLOTS_MAX, SLEEP_MAX};

use control::{BellId, Control, CASCADE_MESSAGE};

/// What an operator watches in a running pipeline, from any thread ([`Pipeline::gauges`]).
/// Every read is a relaxed load of a figure one pipeline thread keeps: cheap, and never
/// delays the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineGauges {
    control: Control,
}

impl PipelineGauges {
    /// The last sequence number handed out to a submitted command (the recovered last one
    /// before any).
    pub fn submitted_seq(&self) -> Seq {
        Seq(self.control.submitted())
    }

    /// Journal records and frame bytes (headers and padding included) appended since the
    /// pipeline started; zero without a journal.
    pub fn journal_written(&self) -> (u64, u64) {
        self.control.journal_totals()
    }

    /// The newest snapshot on disk: the sequence it covers and its engine time (Unix ns) —
    /// the one recovery started from until this run writes one. `None`: no snapshot.
    pub fn last_snapshot(&self) -> Option<(Seq, u64)> {
        self.control.snapshot().map(|(s, ts)| (Seq(s), ts))
    }

    /// The soonest expiry time of a live GTD or DAY order, Unix ns (`u64::MAX`: none), as of
    /// the last batch the engine finished ([`Engine::next_expiry_ns`]). An idle server sends a
    /// `Tick` once the wall clock passes it, so the order expires without waiting for traffic.
    pub fn next_expiry_ns(&self) -> u64 {
        self.control.next_expiry()
    }
}
use inline::InlineCore;
use shared::SharedEngine;
use slot::InSlot;
use snapshots::{SnapshotThread, Snapshots};
use stages::{BusinessEnd, JournalStage};
use topology::{Settings, Topology};
use wiring::{Submitter, Thread, ThreadEnd};

use crate::codec::COMMAND_BYTES_MAX;
use crate::command::Command;
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, RiskMode};
use crate::hash::StateHash;
use crate::types::Seq;

/// Default inbound ring size (commands).
pub const RING_SLOTS_DEFAULT: usize = 1 << 14;
/// Default outbound (and M → S) ring size (outputs).
pub const OUTBOUND_RING_SLOTS_DEFAULT: usize = 1 << 16;
/// The first snapshot buffer's capacity; it grows to the state's size once and is reused.
const SNAPSHOT_BUFFER_BYTES_INITIAL: usize = 1 << 20;

/// The embedder's output handler, boxed once at build time.
type Handler = Box<dyn FnMut(&Output) + Send>;

/// Builds a [`Pipeline`]: `Pipeline::builder(&config)…start()`.
pub struct PipelineBuilder {
    config: Config,
    layout: Layout,
    wait: WaitStrategy,
    output_wait: Option<WaitStrategy>,
    inline_output: bool,
    cores: Vec<usize>,
    transport: Transport,
    ring_slots: usize,
    outbound_ring_slots: usize,
    risk: RiskMode,
    journal: Option<(PathBuf, JournalConfig)>,
    snapshot_every: u64,
    keep_snapshots: Option<usize>,
    fault: Option<(FaultPoint, Seq)>,
    handler: Option<Handler>,
}

/// Where [`PipelineBuilder::inject_panic`] makes the pipeline fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// The business stage (the thread running risk: `JRMS`, `RMS` or `R`; in the inline
    /// layout, the caller's thread), before it processes the command. The command is already
    /// journaled, so a restart replays it.
    Business,
    /// The output handler, when it receives the command's `Done` (the outbound thread; the
    /// last stage's thread with `inline_output`; the caller's thread in the inline layout).
    Output,
}

impl std::str::FromStr for FaultPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultPoint, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "business" | "stage" => Ok(FaultPoint::Business),
            "output" => Ok(FaultPoint::Output),
            _ => Err(format!(
                "unknown fault point {s:?}: expected \"business\" or \"output\""
            )),
        }
    }
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("layout", &self.layout)
            .field("wait", &self.wait)
            .field("output_wait", &self.output_wait)
            .field("inline_output", &self.inline_output)
            .field("cores", &self.cores)
            .field("transport", &self.transport)
            .field("ring_slots", &self.ring_slots)
            .field("outbound_ring_slots", &self.outbound_ring_slots)
            .field("risk", &self.risk)
            .field("journal", &self.journal)
            .field("snapshot_every", &self.snapshot_every)
            .field("keep_snapshots", &self.keep_snapshots)
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// The thread layout (default [`Layout::Fused`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The thread layout chosen so far (for code that wires itself to a builder it was given).
    pub fn chosen_layout(&self) -> Layout {
        self.layout
    }

    /// How every stage thread waits (default [`WaitStrategy::Yield`]); also the outbound
    /// thread's, unless [`output_wait`](Self::output_wait) sets that one apart.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// How the outbound thread (the one running the output handler) waits. On a small
    /// machine the stage thread busy-spins and the outbound thread yields, so the busy
    /// spinners fit the cores.
    pub fn output_wait(mut self, wait: WaitStrategy) -> Self {
        self.output_wait = Some(wait);
        self
    }

    /// Runs the output handler inline on the thread that runs settlement, with no outbound
    /// thread (default: off). On a 2-core machine this is what lets the fused layout's one
    /// busy-spinning thread and the producer have a core each; the price is that a slow
    /// handler slows the pipeline directly instead of through the outbound ring.
    pub fn inline_output(mut self, inline: bool) -> Self {
        self.inline_output = inline;
        self
    }

    /// Cores to pin to: one per stage thread, in layout order, then the outbound thread.
    /// Empty (the default): no pinning.
    pub fn cores(mut self, cores: Vec<usize>) -> Self {
        self.cores = cores;
        self
    }

    /// The queues between the stages (default [`Transport::Disruptor`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Inbound ring size in commands: a power of two (default [`RING_SLOTS_DEFAULT`]).
    pub fn ring_size(mut self, slots: usize) -> Self {
        self.ring_slots = slots;
        self
    }

    /// Outbound (and M → S) ring size in outputs: a power of two (default
    /// [`OUTBOUND_RING_SLOTS_DEFAULT`]).
    pub fn outbound_ring_size(mut self, slots: usize) -> Self {
        self.outbound_ring_slots = slots;
        self
    }

    /// Risk and settlement on (default) or off.
    pub fn risk(mut self, risk: RiskMode) -> Self {
        self.risk = risk;
        self
    }

    /// Journal every command into `dir` (recovering from it first). Without it there is no
    /// journal stage and no recovery: for tests and benchmarks.
    pub fn journal(mut self, dir: impl Into<PathBuf>, config: JournalConfig) -> Self {
        self.journal = Some((dir.into(), config));
        self
    }

    /// Snapshot every `commands` commands (0, the default: only on request). Needs a journal.
    pub fn snapshot_every(mut self, commands: u64) -> Self {
        self.snapshot_every = commands;
        self
    }

    /// After each snapshot it writes, keep only the newest `k` snapshot files (at least 1) and
    /// prune the journal segments that only older snapshots needed (every record up to the
    /// oldest kept snapshot; the segment being written is never removed). Default: keep every
    /// snapshot and every segment. The segments are removed by the journal stage at its next
    /// batch boundary (the writer holds the journal's lock): a pause there, once per snapshot.
    pub fn keep_snapshots(mut self, k: usize) -> Self {
        self.keep_snapshots = Some(k.max(1));
        self
    }

    /// **Fault injection, for tests of failure handling only:** makes the pipeline's `point`
    /// panic at command `seq`, as a bug would. The pipeline then fails as it would for a real
    /// panic: every thread stops, [`Pipeline::try_submit`] returns [`SubmitError::Failed`],
    /// and [`Pipeline::shutdown`] returns [`PipelineError::StagePanicked`] naming the thread
    /// and this message. Costs one comparison per command where it is checked; never set it in
    /// production.
    pub fn inject_panic(mut self, point: FaultPoint, seq: Seq) -> Self {
        self.fault = Some((point, seq));
        self
    }

    /// The handler every [`Output`] goes to, in order, on the outbound thread.
    pub fn on_output<F: FnMut(&Output) + Send + 'static>(mut self, handler: F) -> Self {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Checks the configuration, recovers from the journal (if any), starts every thread and
    /// returns once they are all running.
    pub fn start(self) -> Result<Pipeline, PipelineError> {
        // The wiring, in order. 1. The topology: every check that needs no resources, and the
        // shape (which threads, which queues) decided once.
        let topology = Topology::plan(&Settings {
            layout: self.layout,
            wait: self.wait,
            output_wait: self.output_wait,
            inline_output: self.inline_output,
            cores: &self.cores,
            transport: self.transport,
            ring_slots: self.ring_slots,
            outbound_ring_slots: self.outbound_ring_slots,
        })?;

        // The settings that need a journal, and a journal that can hold every command.
        match &self.journal {
            None if self.snapshot_every > 0 || self.keep_snapshots.is_some() => {
                return Err(PipelineError::Config(ConfigError::Invalid(
                    "snapshot_every and keep_snapshots need a journal (`journal(dir, config)`)"
                        .into(),
                )));
            }
            Some((_, jc)) if (jc.payload_len_max_bytes as usize) < COMMAND_BYTES_MAX => {
                return Err(PipelineError::Config(ConfigError::Invalid(format!(
                    "journal payload_len_max_bytes {} is below {COMMAND_BYTES_MAX}, the largest \
                     command's encoding",
                    jc.payload_len_max_bytes
                ))));
            }
            _ => {}
        }

        // 2. Recovery: snapshot + journal tail, or a fresh engine.
        let (engine, writer, recovery) = match &self.journal {
            Some((dir, journal)) => {
                let (engine, writer, info) =
                    recovery::recover(&self.config, self.risk, dir, *journal)?;
                (engine, Some(writer), info)
            }
            None => (
                Engine::with_risk(&self.config, self.risk).map_err(PipelineError::Config)?,
                None,
                RecoveryInfo {
                    next_seq: Seq(1),
                    ..RecoveryInfo::default()
                },
            ),
        };
        let recovered_state_hash = engine.state_hash();

        // 3. The threads' shared flags and bells, numbering from the recovered sequence.
        let parking = match &topology {
            Topology::Inline => false,
            Topology::Threaded(plan) => plan.parks(),
        };
        let control = Control::new(recovery.next_seq.0 as i64 - 1, parking);
        control.note_submitted(recovery.next_seq.0.saturating_sub(1));
        control.note_next_expiry(engine.next_expiry_ns());
        if let (Some(seq), Some(ts)) = (recovery.snapshot_seq, recovery.snapshot_timestamp_ns) {
            control.note_snapshot(seq.0, ts);
        }

        // 4. Snapshots: a background writer, when there is a directory to write to.
        let (snapshots, snapshot_thread) = match &self.journal {
            Some((dir, _)) => {
                let (s, t) = Snapshots::start(
                    dir.clone(),
                    self.snapshot_every,
                    self.keep_snapshots,
                    SNAPSHOT_BUFFER_BYTES_INITIAL,
                    control.clone(),
                )
                .map_err(PipelineError::Spawn)?;
                (s, Some(t))
            }
            None => (Snapshots::disabled(control.clone()), None),
        };

        // 5. The handler (armed with the injected output fault, if any) and the journal stage.
        let mut handler = self.handler.unwrap_or_else(|| Box::new(|_: &Output| {}));
        let (business_panic_at, output_panic_at) = match self.fault {
            Some((FaultPoint::Business, seq)) => (seq.0, 0),
            Some((FaultPoint::Output, seq)) => (0, seq.0),
            None => (0, 0),
        };
        if output_panic_at != 0 && matches!(topology, Topology::Threaded(_)) {
            // Fault injection only: the handler, wrapped, panics at the named command's Done
            // (the inline layout's core checks it itself, after the command's last output).
            let mut inner = handler;
            handler = Box::new(move |out: &Output| {
                if out.seq.0 == output_panic_at && out.kind == OutputKind::Done {
                    stages::injected_panic("output", out.seq);
                }
                inner(out)
            });
        }
        let journal = JournalStage {
            writer,
            control: control.clone(),
        };

        // 6. The stages: on the caller's thread (inline), or on threads joined by queues.
        let (started, threads) = match topology {
            Topology::Inline => {
                let core = InlineCore {
                    journal,
                    engine,
                    snapshots,
                    handler,
                    end: BusinessEnd::new(business_panic_at),
                    output_panic_at,
                };
                let started = wiring::Started {
                    submitter: Submitter::Inline(Box::new(core)),
                    threads: Vec::new(),
                    shared: None,
                };
                (started, 0)
            }
            Topology::Threaded(plan) => {
                let threads = plan.thread_count();
                let parts = wiring::Parts {
                    engine,
                    journal,
                    snapshots,
                    handler,
                    business_panic_at,
                };
                (wiring::start(plan, parts, &control)?, threads)
            }
        };
        let mut pipeline = Pipeline {
            layout: self.layout,
            submitter: Some(started.submitter),
            next_seq: recovery.next_seq.0,
            control: control.clone(),
            threads: started.threads,
            shared: started.shared,
            snapshot_thread,
            recovery,
            recovered_state_hash,
            wait: self.wait,
            inline_in_flight: 0,
        };

        // 7. Wait until every thread runs (pinned, polling): nothing allocates after this.
        while control.ready() < threads {
            if control.failed() {
                return Err(pipeline
                    .stop()
                    .err()
                    .unwrap_or(PipelineError::StagePanicked {
                        thread: "?".into(),
                        message: "a thread failed during start-up".into(),
                    }));
            }
            std::thread::yield_now();
        }
        Ok(pipeline)
    }
}

/// What [`Pipeline::shutdown`] reports.
#[derive(Debug)]
pub struct ShutdownReport {
    /// Commands processed since start (recovery's replay not included).
    pub commands: u64,
    /// The last command's sequence, if any was processed since start.
    pub last_seq: Option<Seq>,
    /// The final state's hash.
    pub state_hash: StateHash,
    /// Snapshots taken, written, and the pauses they cost.
    pub snapshots: SnapshotStats,
    /// The engine in its final state, for queries.
    pub engine: Engine,
}

/// A running pipeline: submit commands, request snapshots, shut down.
pub struct Pipeline {
    layout: Layout,
    submitter: Option<Submitter>,
    next_seq: u64,
    control: Control,
    threads: Vec<Thread>,
    shared: Option<Arc<SharedEngine>>,
    snapshot_thread: Option<SnapshotThread>,
    recovery: RecoveryInfo,
    recovered_state_hash: StateHash,
    wait: WaitStrategy,
    /// `Layout::Inline`: the command being processed, 0 between submits; left set by a panic
    /// that unwound out of a submit (the pipeline is failed from then on).
    inline_in_flight: u64,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("next_seq", &self.next_seq)
            .field("threads", &self.threads.len())
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

#[inline]
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Pipeline {
    /// A builder with the defaults: fused layout, yield waits, disruptor rings, risk on, no
    /// journal, no pinning.
    pub fn builder(config: &Config) -> PipelineBuilder {
        PipelineBuilder {
            config: config.clone(),
            layout: Layout::default(),
            wait: WaitStrategy::default(),
            output_wait: None,
            inline_output: false,
            cores: Vec::new(),
            transport: Transport::default(),
            ring_slots: RING_SLOTS_DEFAULT,
            outbound_ring_slots: OUTBOUND_RING_SLOTS_DEFAULT,
            risk: RiskMode::On,
            journal: None,
            snapshot_every: 0,
            keep_snapshots: None,
            fault: None,
            handler: None,
        }
    }

    /// Submits a command, waiting while the inbound ring is full; returns its sequence.
    ///
    /// Fails only with [`SubmitError::Failed`] (the command handed back): a pipeline thread
    /// has died and the pipeline will never take the command. [`Pipeline::shutdown`] then
    /// says which thread and why.
    pub fn submit(&mut self, cmd: Command) -> Result<Seq, SubmitError> {
        let mut cmd = cmd;
        loop {
            match self.try_submit(cmd) {
                Ok(seq) => return Ok(seq),
                Err(SubmitError::Full(back)) => {
                    cmd = back;
                    if self.wait.is_busy_spin() {
                        std::hint::spin_loop();
                    } else {
                        self.wait.idle();
                    }
                }
                Err(failed) => return Err(failed),
            }
        }
    }

    /// Submits a command if the inbound ring has room; otherwise hands it back (nothing is
    /// dropped, nothing is numbered): [`SubmitError::Full`] when the ring is full (retry
    /// later), [`SubmitError::Failed`] when a pipeline thread has died (never retry: shut
    /// down and restart).
    ///
    /// In the [`Layout::Inline`] layout the command is journaled and processed before this
    /// returns, and the handler has seen all its outputs; it never hands a command back as
    /// `Full` (a stage's panic there unwinds through the caller).
    pub fn try_submit(&mut self, cmd: Command) -> Result<Seq, SubmitError> {
        self.submit_to(cmd, None, None)
    }

    /// [`Pipeline::try_submit`], except that in the [`Layout::Inline`] layout the command's
    /// outputs go to `sink` instead of the builder's handler (a caller on its own thread can
    /// keep them in its own buffers: no channel, no shared state). In every other layout
    /// `sink` is not used and the outputs reach the handler as usual.
    pub fn try_submit_with(
        &mut self,
        cmd: Command,
        sink: &mut dyn FnMut(&Output),
    ) -> Result<Seq, SubmitError> {
        self.submit_to(cmd, Some(sink), None)
    }

    /// [`Pipeline::submit`] with the caller's timestamp (Unix nanoseconds) instead of the
    /// wall clock's: the command's engine time (docs/matching.md, "Engine time"), journaled with
    /// it. For callers whose time is part of their input — a script's `clock` lines, a replayed
    /// feed, a test — so that a run is reproducible; a stamp earlier than the engine's time is
    /// processed at the engine's time. Fails as [`Pipeline::submit`] does.
    pub fn submit_at(&mut self, cmd: Command, timestamp_ns: u64) -> Result<Seq, SubmitError> {
        let mut cmd = cmd;
        loop {
            match self.try_submit_at(cmd, timestamp_ns) {
                Ok(seq) => return Ok(seq),
                Err(SubmitError::Full(back)) => {
                    cmd = back;
                    if self.wait.is_busy_spin() {
                        std::hint::spin_loop();
                    } else {
                        self.wait.idle();
                    }
                }
                Err(failed) => return Err(failed),
            }
        }
    }

    /// [`Pipeline::try_submit`] with the caller's timestamp (see [`Pipeline::submit_at`]).
    pub fn try_submit_at(&mut self, cmd: Command, timestamp_ns: u64) -> Result<Seq, SubmitError> {
        self.submit_to(cmd, None, Some(timestamp_ns))
    }

    /// Whether a pipeline thread has died (a stage or the output thread panicked): every
    /// submit now fails, and [`Pipeline::shutdown`] reports the cause. A relaxed load: for an
    /// embedder's loop to look at while it has nothing to submit.
    pub fn has_failed(&self) -> bool {
        self.control.failed() || self.inline_panicked()
    }

    fn submit_to(
        &mut self,
        cmd: Command,
        sink: Option<&mut dyn FnMut(&Output)>,
        stamp: Option<u64>,
    ) -> Result<Seq, SubmitError> {
        // A dead pipeline would take commands until its ring filled and answer none: refuse
        // at once. One relaxed load of a flag written only on failure.
        if self.control.failed() || self.inline_panicked() {
            return Err(SubmitError::Failed(cmd));
        }
        let seq = Seq(self.next_seq);
        let timestamp_ns = stamp.unwrap_or_else(now_ns);
        match self.submitter.as_mut() {
            Some(Submitter::Inline(core)) => {
                // A panic unwinds on the caller's thread, as documented, and leaves the command
                // marked in flight: the pipeline is failed from then on, as a threaded one is
                // when a stage dies (the command may be journaled and half applied, so no later
                // command may run after it). Two stores; `catch_unwind` here cost ~13 % of the
                // inline layout's throughput (docs/benchmarks.md).
                self.inline_in_flight = seq.0;
                core.process(seq, timestamp_ns, cmd, sink);
                self.inline_in_flight = 0;
            }
            Some(Submitter::Ring(p)) => {
                if p.try_publish(|slot| {
                    slot.seq = seq;
                    slot.timestamp_ns = timestamp_ns;
                    slot.cmd = cmd;
                })
                .is_err()
                {
                    return Err(self.refused(cmd));
                }
                self.control.ring(BellId::Inbound);
            }
            Some(Submitter::Channel(tx)) => {
                match tx.try_send(InSlot::new(seq, timestamp_ns, cmd)) {
                    Ok(()) => self.control.ring(BellId::Inbound),
                    Err(TrySendError::Full(s)) => return Err(self.refused(s.cmd)),
                    Err(TrySendError::Disconnected(s)) => {
                        // The consumer is gone: it died (its guard may not have said so yet).
                        self.control.mark_failed();
                        return Err(SubmitError::Failed(s.cmd));
                    }
                }
            }
            None => return Err(SubmitError::Failed(cmd)),
        }
        self.control.note_submitted(seq.0);
        self.next_seq += 1;
        Ok(seq)
    }

    /// `Layout::Inline`: whether a submit's stages panicked (the command stayed in flight).
    #[inline]
    fn inline_panicked(&self) -> bool {
        self.inline_in_flight != 0
    }

    /// `Layout::Inline`: what `shutdown` reports after a submit panicked.
    #[cold]
    fn inline_failure(&self) -> PipelineError {
        PipelineError::StagePanicked {
            thread: "inline".into(),
            message: format!(
                "command {} panicked on the submitting thread (the panic unwound out of \
                 try_submit, with its message)",
                self.inline_in_flight
            ),
        }
    }

    /// The ring refused `cmd`: full, unless the pipeline failed since the check above.
    #[cold]
    fn refused(&self, cmd: Command) -> SubmitError {
        if self.control.failed() {
            SubmitError::Failed(cmd)
        } else {
            SubmitError::Full(cmd)
        }
    }

    /// Asks for a snapshot at the next command boundary of the business thread (needs a
    /// journal directory; otherwise ignored).
    pub fn request_snapshot(&mut self) {
        self.control.request_snapshot();
    }

    /// Times its threads have parked so far (only [`WaitStrategy::Phased`] parks: after an
    /// idle spell of [`YIELD_FOR`]); for monitoring and tests.
    pub fn parks(&self) -> u64 {
        self.control.parks()
    }

    /// The thread layout it runs.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What start-up recovery did.
    pub fn recovery(&self) -> &RecoveryInfo {
        &self.recovery
    }

    /// The engine's `state_hash()` right after recovery, before any new command: compare it
    /// with the hash the previous run reported at shutdown (or with `ringbook journal replay`)
    /// to check that a restart rebuilt the same state.
    pub fn recovered_state_hash(&self) -> StateHash {
        self.recovered_state_hash
    }

    /// The sequence the next submitted command gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// The soonest expiry time of a live GTD or DAY order as of the last batch the engine
    /// finished (see [`PipelineGauges::next_expiry_ns`]).
    pub fn next_expiry_ns(&self) -> u64 {
        self.control.next_expiry()
    }

    /// A handle on the pipeline's monitoring figures, readable from any thread (e.g. a
    /// metrics endpoint) while the pipeline runs.
    pub fn gauges(&self) -> PipelineGauges {
        PipelineGauges {
            control: self.control.clone(),
        }
    }

    /// Drains every submitted command, syncs and closes the journal, joins every thread, and
    /// reports.
    pub fn shutdown(mut self) -> Result<ShutdownReport, PipelineError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<ShutdownReport, PipelineError> {
        let mut failure: Option<PipelineError> = None;
        let mut business = None;
        let mut journal_closed = Ok(());
        // The inline layout's stages are here, on this thread: nothing to drain or join.
        // Otherwise dropping the producer lets each stage drain and stop, in pipeline order.
        let inline = match self.submitter.take() {
            Some(Submitter::Inline(core)) => Some(core),
            _ => None, // the producer is dropped here: the stages drain and stop
        };
        // Every parked thread looks again: its input may be closed now.
        self.control.ring_all();
        if let Some(core) = inline {
            let core = *core;
            journal_closed = core.journal.close();
            business = Some(BusinessEnd {
                engine: Some(core.engine),
                snapshots: Some(core.snapshots),
                ..core.end
            });
        }
        if self.inline_panicked() {
            failure = Some(self.inline_failure());
        }
        for (name, handle) in self.threads.drain(..) {
            match handle.join() {
                Ok(ThreadEnd::Journal(r)) => journal_closed = r,
                Ok(ThreadEnd::Fused(end, r)) => {
                    business = Some(end);
                    journal_closed = r;
                }
                Ok(ThreadEnd::Business(end)) => business = Some(end),
                Ok(ThreadEnd::Nothing) => {}
                Err(payload) => {
                    let message = panic_message(&*payload);
                    let cascade = message == CASCADE_MESSAGE;
                    let replace = match &failure {
                        None => true,
                        Some(PipelineError::StagePanicked { message, .. }) => {
                            message == CASCADE_MESSAGE && !cascade
                        }
                        Some(_) => false,
                    };
                    if replace {
                        failure = Some(PipelineError::StagePanicked {
                            thread: name.to_string(),
                            message,
                        });
                    }
                }
            }
        }
        let mut stats = business
            .as_mut()
            .and_then(|b| b.snapshots.take())
            .map(Snapshots::finish)
            .unwrap_or_default();
        if let Some(t) = self.snapshot_thread.take() {
            t.join(&mut stats);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        journal_closed.map_err(PipelineError::JournalClose)?;
        let business = business.unwrap_or_default();
        let engine = match (business.engine, self.shared.take()) {
            (Some(engine), _) => engine,
            (None, Some(shared)) => Arc::try_unwrap(shared)
                .expect("every stage thread is joined")
                .into_engine(),
            (None, None) => unreachable!("one thread owns the engine"),
        };
        Ok(ShutdownReport {
            commands: business.processed,
            last_seq: business.last_seq,
            state_hash: engine.state_hash(),
            snapshots: stats,
            engine,
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.threads.is_empty() || matches!(self.submitter, Some(Submitter::Inline(_))) {
            let _ = self.stop();
        }
    }
}
