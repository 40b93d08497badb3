//! The threaded pipeline as the server's engine: commands go onto its inbound ring, outputs
//! come back from its output thread through a bounded channel, and the loop is woken on each
//! command's `Done` (its acknowledgement point: the command is journaled).

use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, OnceLock};

use mio::Waker;
use ringbook_engine::pipeline::{Output, OutputKind, ShutdownReport};
use ringbook_engine::{Command, Engine, Pipeline, PipelineBuilder, PipelineError, Seq};

use super::backend::{Backend, BackendOutput};

/// Outputs buffered between the pipeline's output thread and the server loop; when full, the
/// output thread waits, which fills the pipeline's rings, which makes `try_submit` hand
/// commands back: back-pressure all the way to the sockets.
pub const OUTPUTS_MAX: usize = 1 << 16;

/// The pipeline behind the server.
#[derive(Debug)]
pub struct PipelineBackend {
    pipeline: Pipeline,
    rx: Option<Receiver<Output>>,
    waker: Arc<OnceLock<Arc<Waker>>>,
}

impl PipelineBackend {
    /// Starts `builder` (configured by the caller: layout, wait strategy, journal) with this
    /// backend's output handler.
    pub fn start(builder: PipelineBuilder) -> Result<PipelineBackend, PipelineError> {
        let (tx, rx) = sync_channel::<Output>(OUTPUTS_MAX);
        let waker: Arc<OnceLock<Arc<Waker>>> = Arc::new(OnceLock::new());
        let w = waker.clone();
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
                            if let Some(w) = w.get() {
                                let _ = w.wake();
                            }
                            std::thread::yield_now();
                        }
                    }
                }
                if matches!(out.kind, OutputKind::Done) {
                    if let Some(w) = w.get() {
                        let _ = w.wake();
                    }
                }
            })
            .start()?;
        Ok(PipelineBackend {
            pipeline,
            rx: Some(rx),
            waker,
        })
    }

    /// The pipeline (recovery report, next sequence).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Stops the pipeline: drains its rings, flushes the journal, joins its threads.
    pub fn shutdown(mut self) -> Result<ShutdownReport, PipelineError> {
        // Nobody reads outputs any more; let the output thread finish instead of waiting.
        self.rx = None;
        self.pipeline.shutdown()
    }
}

impl Backend for PipelineBackend {
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, Command> {
        self.pipeline.try_submit(cmd)
    }

    fn drain(&mut self, f: &mut dyn FnMut(Seq, BackendOutput)) {
        let Some(rx) = self.rx.as_ref() else { return };
        while let Ok(out) = rx.try_recv() {
            let o = match out.kind {
                OutputKind::Event(e) => BackendOutput::Event(e),
                OutputKind::Done => BackendOutput::Done,
            };
            f(out.seq, o);
        }
    }

    fn view(&self) -> Option<&Engine> {
        None
    }

    fn set_waker(&mut self, waker: Arc<Waker>) {
        let _ = self.waker.set(waker);
    }
}
