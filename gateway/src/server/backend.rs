//! The engine side of the server: anything that sequences commands and hands back their events.
//!
//! [`EngineBackend`] runs the engine in-process on the gateway thread (single-threaded: tests,
//! small deployments). A threaded pipeline backend implements the same trait: `try_submit`
//! hands a command back when its ring is full (back-pressure, [`SubmitError::Full`]) or when
//! the pipeline has died ([`SubmitError::Failed`]: the server then stops, see
//! [`Backend::failed`]), and outputs arrive later, in sequence order, through
//! [`Backend::drain`]. Queries are commands too
//! ([`ringbook_engine::Command::Query`]): sequenced, and answered by events in the output
//! stream, so every backend answers them from a state consistent with what it has sent.

use std::collections::VecDeque;

pub use ringbook_engine::pipeline::SubmitError;
use ringbook_engine::{Command, Config, ConfigError, Engine, Event, Seq};

/// One item of a command's output: an event, or the end of the command's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendOutput {
    /// An event of the command.
    Event(Event),
    /// The command is fully processed (and journaled, for journaled backends); its time stamp
    /// (Unix nanoseconds, what the engine's time moved to), for the market-data builder.
    Done(u64),
}

/// The engine as the server sees it.
pub trait Backend {
    /// Sequences `cmd`, or hands it back: [`SubmitError::Full`] when the engine cannot take it
    /// now (a full ring: retry later), [`SubmitError::Failed`] when it never will (the engine
    /// has died: the server stops).
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, SubmitError>;
    /// Hands up to `max` of the outputs available so far to `f`, in sequence order; returns
    /// how many it handed (fewer than `max`: none is left for now). The bound lets the caller
    /// keep its buffers at a fixed size.
    fn drain(&mut self, max: usize, f: &mut dyn FnMut(Seq, BackendOutput)) -> usize;
    /// Called once, with the server's waker, before the loop starts; asynchronous backends
    /// wake the loop with it when outputs arrive.
    fn set_waker(&mut self, _waker: std::sync::Arc<mio::Waker>) {}
    /// Whether the engine has died for good (a pipeline thread panicked): the server loop looks
    /// at it every turn and stops (closing every connection) when it says so, so that the
    /// process can exit and be restarted instead of accepting orders nobody will answer.
    fn failed(&self) -> bool {
        false
    }
    /// The most commands this backend can hold in flight (submitted, `Done` not yet drained),
    /// if it knows: the server checks at start that its table of in-flight commands
    /// (`ServerConfig::in_flight_max`) is no smaller. (Whatever the answer, the server never
    /// has more in flight than that table holds.)
    fn in_flight_hint(&self) -> Option<usize> {
        None
    }
    /// The soonest expiry time of a live GTD or DAY order, Unix ns (`u64::MAX`: none). The
    /// server sends the engine a `Tick` once its clock passes it, so an order expires on time
    /// when no other command would bring the time (docs/matching.md, "Expiry").
    fn next_expiry_ns(&self) -> u64 {
        u64::MAX
    }
}

/// The engine on the gateway thread: commands are processed as they are submitted and their
/// outputs queued until the next [`Backend::drain`].
#[derive(Debug)]
pub struct EngineBackend {
    engine: Engine,
    outputs: VecDeque<(Seq, BackendOutput)>,
    outputs_max: usize,
    next_seq: u64,
}

impl EngineBackend {
    /// The most outputs queued before `try_submit` reports back-pressure (a mass cancel may go
    /// over; the queue then grows, which only the in-process backend allows).
    pub const OUTPUTS_MAX_DEFAULT: usize = 1 << 16;

    /// An engine with risk on, built from `config`.
    pub fn new(config: &Config) -> Result<EngineBackend, ConfigError> {
        Ok(EngineBackend::from_engine(
            Engine::new(config)?,
            Self::OUTPUTS_MAX_DEFAULT,
        ))
    }

    /// Wraps an existing engine; `outputs_max` bounds the queue between drains.
    pub fn from_engine(engine: Engine, outputs_max: usize) -> EngineBackend {
        EngineBackend {
            engine,
            outputs: VecDeque::with_capacity(outputs_max + 64),
            outputs_max,
            next_seq: 1,
        }
    }

    /// The engine (state hash, balances).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Unix nanoseconds now (0 if the clock is before 1970).
pub(crate) fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Backend for EngineBackend {
    fn try_submit(&mut self, cmd: Command) -> Result<Seq, SubmitError> {
        if self.outputs.len() >= self.outputs_max {
            return Err(SubmitError::Full(cmd));
        }
        let seq = Seq(self.next_seq);
        self.next_seq += 1;
        let outputs = &mut self.outputs;
        // Engine time is the wall clock's at submission, as the pipeline stamps it.
        let ts = wall_clock_ns();
        self.engine.process_at(ts, &cmd, &mut |e: &Event| {
            outputs.push_back((seq, BackendOutput::Event(*e)))
        });
        outputs.push_back((seq, BackendOutput::Done(ts)));
        Ok(seq)
    }

    fn next_expiry_ns(&self) -> u64 {
        self.engine.next_expiry_ns()
    }

    fn in_flight_hint(&self) -> Option<usize> {
        // Every command leaves at least its `Done` in the queue, which takes no command once
        // it holds `outputs_max` outputs.
        Some(self.outputs_max)
    }

    fn drain(&mut self, max: usize, f: &mut dyn FnMut(Seq, BackendOutput)) -> usize {
        let mut n = 0;
        while n < max {
            let Some((seq, out)) = self.outputs.pop_front() else {
                break;
            };
            f(seq, out);
            n += 1;
        }
        n
    }
}
