//! The pipeline as the server's engine: commands go onto its inbound ring, outputs come back
//! from its output thread through a bounded channel, and the loop is woken when a command's
//! `Done` (its acknowledgement point: the command is journaled) arrives. In the `inline`
//! layout there is no pipeline thread: `try_submit` journals and processes the command on the
//! server's thread and its outputs wait in a local queue for the next drain (no channel, no
//! wake-up).
//!
//! Wakes are batched: a `wake pending` flag is set by the output thread when it wakes the loop
//! and cleared by the loop when it starts draining, so a burst of outputs that arrives while
//! the loop has not drained yet costs one `Waker::wake` (one `eventfd` write), not one per
//! command. Lost wake-ups are impossible: the output thread publishes the output and then
//! tests the flag; the loop clears the flag and then drains (a `SeqCst` fence on each side),
//! so either the drain sees the output or the output thread sees the flag clear and wakes.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, OnceLock};

use mio::Waker;
use ringbook_engine::pipeline::{Layout, Output, OutputKind, ShutdownReport};
use ringbook_engine::{Command, Pipeline, PipelineBuilder, PipelineError, Seq};

use super::backend::{Backend, BackendOutput, SubmitError};

/// Outputs buffered between the pipeline's output thread and the server loop; when full, the
/// output thread waits, which fills the pipeline's rings, which makes `try_submit` hand
/// commands back: back-pressure all the way to the sockets.
pub const OUTPUTS_MAX: usize = 1 << 16;
/// Room the inline layout's local queue keeps above [`OUTPUTS_MAX`] for the command that
/// crosses it (one command's events are all queued before `try_submit` returns).
const LOCAL_SLACK: usize = 1 << 12;

/// The pipeline behind the server.
#[derive(Debug)]
pub struct PipelineBackend {
    pipeline: Pipeline,
    /// The inline layout's outputs, produced by `try_submit` on the server thread.
    local: Option<VecDeque<Output>>,
    rx: Option<Receiver<Output>>,
    waker: Arc<OnceLock<Arc<Waker>>>,
    wake: Arc<WakeFlag>,
}

/// The loop's wake-up state shared with the output thread.
#[derive(Debug, Default)]
struct WakeFlag {
    /// Set when a wake has been issued and the loop has not started draining since.
    pending: AtomicBool,
    /// `Waker::wake` calls made (for tests and monitoring).
    wakes: AtomicU64,
}

impl WakeFlag {
    /// After publishing an output: wake the loop unless a wake is already pending.
    fn wake(&self, w: &OnceLock<Arc<Waker>>) {
        fence(Ordering::SeqCst);
        if !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(w) = w.get() {
                self.wakes.fetch_add(1, Ordering::Relaxed);
                let _ = w.wake();
            }
        }
    }

    /// Before draining: later outputs must wake the loop again.
    fn rearm(&self) {
        self.pending.store(false, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

impl PipelineBackend {
    /// Starts `builder` (configured by the caller: layout, wait strategy, journal) with this
    /// backend's output handler.
    pub fn start(builder: PipelineBuilder) -> Result<PipelineBackend, PipelineError> {
        let waker: Arc<OnceLock<Arc<Waker>>> = Arc::new(OnceLock::new());
        let wake = Arc::new(WakeFlag::default());
        if builder.chosen_layout() == Layout::Inline {
            // The inline layout runs on the server's own thread: `try_submit` keeps its outputs
            // in a local queue (sized once; only a single command with more events than it
            // holds grows it). No channel, no handler, no wake-up.
            return Ok(PipelineBackend {
                pipeline: builder.start()?,
                local: Some(VecDeque::with_capacity(OUTPUTS_MAX + LOCAL_SLACK)),
                rx: None,
                waker,
                wake,
            });
        }
        let (tx, rx) = sync_channel::<Output>(OUTPUTS_MAX);
        let w = waker.clone();
        let flag = wake.clone();
        let pipeline = builder
            .on_output(move |out: &Output| {
                let mut item = *out;
                loop {
                    match tx.try_send(item) {
                        Ok(()) => break,
                        // The server has gone (shutdown): nothing to deliver to.
                        Err(TrySendError::Disconnected(_)) => return,
                        Err(TrySendError::Full(back)) => {
                            item = back;
                            flag.wake(&w);
                            std::thread::yield_now();
                        }
                    }
                }
                if matches!(out.kind, OutputKind::Done) {
                    flag.wake(&w);
                }
            })
            .start()?;
        Ok(PipelineBackend {
            pipeline,
            local: None,
            rx: Some(rx),
            waker,
            wake,
        })
    }

    /// The pipeline (recovery report, next sequence).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// `Waker::wake` calls the output thread has made so far (at most one per loop drain).
    pub fn wakes(&self) -> u64 {
        self.wake.wakes.load(Ordering::Relaxed)
    }

    /// Stops the pipeline: drains its rings, flushes the journal, joins its threads.
    pub fn shutdown(mut self) -> Result<ShutdownReport, PipelineError> {
        // Nobody reads outputs any more; let the output thread finish instead of waiting.
        self.rx = None;
        self.pipeline.shutdown()
    }
}

impl Backend for PipelineBackend {
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, SubmitError> {
        match self.local.as_mut() {
            // Inline: processed now, on this thread; its outputs wait here for `drain`.
            Some(local) if local.len() >= OUTPUTS_MAX => Err(SubmitError::Full(cmd)),
            Some(local) => self
                .pipeline
                .try_submit_with(cmd, &mut |out: &Output| local.push_back(*out)),
            None => self.pipeline.try_submit(cmd),
        }
    }

    fn drain(&mut self, max: usize, f: &mut dyn FnMut(Seq, BackendOutput)) -> usize {
        let mut n = 0;
        let mut hand = |out: Output| {
            let o = match out.kind {
                OutputKind::Event(e) => BackendOutput::Event(e),
                OutputKind::Done => BackendOutput::Done(out.ts),
            };
            f(out.seq, o);
        };
        if let Some(local) = self.local.as_mut() {
            while n < max {
                let Some(out) = local.pop_front() else { break };
                hand(out);
                n += 1;
            }
            return n;
        }
        let Some(rx) = self.rx.as_ref() else { return 0 };
        self.wake.rearm();
        while n < max {
            let Ok(out) = rx.try_recv() else { break };
            hand(out);
            n += 1;
        }
        n
    }

    fn set_waker(&mut self, waker: Arc<Waker>) {
        let _ = self.waker.set(waker);
    }

    fn failed(&self) -> bool {
        self.pipeline.has_failed()
    }

    fn next_expiry_ns(&self) -> u64 {
        self.pipeline.next_expiry_ns()
    }

    fn in_flight_hint(&self) -> Option<usize> {
        // Inline: every command leaves at least its `Done` in the local queue, which takes no
        // command once it holds `OUTPUTS_MAX`. Threaded: bounded by the ring and the output
        // channel, which the server does not see; its own table bounds it.
        self.local.as_ref().map(|_| OUTPUTS_MAX)
    }
}
