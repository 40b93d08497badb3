//! The pipeline's shape as a value: which threads exist, how each waits, where it is pinned
//! and which queues join them — decided once, from the builder's settings, before anything is
//! started.
//!
//! [`Topology::plan`] runs every check that needs no resources (ring sizes, busy-spinning
//! threads against the cores, pins against the threads) and returns either
//! [`Topology::Inline`] (no thread at all) or a [`Threaded`] plan whose [`StageThreads`] has no
//! inline variant: the wiring (`wiring.rs`) matches on it once and has no impossible case to
//! rule out.

use super::error::PipelineError;
use super::layout::{Layout, Transport, WaitStrategy};
use super::output::Output;
use super::slot::{InSlot, SettleMsg};
use crate::config::ConfigError;

/// The stage threads of a threaded layout ([`Layout`] less [`Layout::Inline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StageThreads {
    /// `JRMS`: one thread.
    Fused,
    /// `J`, `RMS`.
    JournalThenBusiness,
    /// `J`, `R`, `M`, `S`.
    Split,
}

impl StageThreads {
    /// The threads of `layout`; `None` for [`Layout::Inline`], which has none.
    pub(crate) fn of(layout: Layout) -> Option<StageThreads> {
        match layout {
            Layout::Fused => Some(StageThreads::Fused),
            Layout::JournalThenBusiness => Some(StageThreads::JournalThenBusiness),
            Layout::Split => Some(StageThreads::Split),
            Layout::Inline => None,
        }
    }

    /// The layout these threads make.
    pub(crate) fn layout(self) -> Layout {
        match self {
            StageThreads::Fused => Layout::Fused,
            StageThreads::JournalThenBusiness => Layout::JournalThenBusiness,
            StageThreads::Split => Layout::Split,
        }
    }
}

/// Where the embedder's handler runs in a threaded layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// On an outbound thread of its own, fed by the outbound queue, waiting this way.
    Thread(WaitStrategy),
    /// On the thread that runs settlement (`inline_output`): no outbound queue or thread.
    OnStageThread,
}

/// A threaded pipeline's plan: everything the wiring needs besides the engine and the
/// handler.
#[derive(Debug)]
pub(crate) struct Threaded {
    pub(crate) stages: StageThreads,
    pub(crate) outbound: Outbound,
    /// How every stage thread waits.
    pub(crate) wait: WaitStrategy,
    pub(crate) transport: Transport,
    pub(crate) ring_slots: usize,
    pub(crate) outbound_ring_slots: usize,
    /// One per thread, in spawn order (stage threads, then the outbound thread).
    pub(crate) pins: Vec<Option<core_affinity::CoreId>>,
}

impl Threaded {
    /// Threads it spawns: the stage threads, then the outbound thread if there is one.
    pub(crate) fn thread_count(&self) -> usize {
        self.stages.layout().threads().len()
            + usize::from(matches!(self.outbound, Outbound::Thread(_)))
    }

    /// Whether any of its threads parks (so publishers must ring bells).
    pub(crate) fn parks(&self) -> bool {
        self.wait == WaitStrategy::Phased || self.outbound == Outbound::Thread(WaitStrategy::Phased)
    }
}

/// The pipeline's shape.
#[derive(Debug)]
pub(crate) enum Topology {
    /// No pipeline thread: the caller's thread journals, runs R·M·S and the handler.
    Inline,
    /// Stage threads joined by queues.
    Threaded(Threaded),
}

/// The builder's settings that decide the shape.
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) layout: Layout,
    pub(crate) wait: WaitStrategy,
    pub(crate) output_wait: Option<WaitStrategy>,
    pub(crate) inline_output: bool,
    pub(crate) cores: &'a [usize],
    pub(crate) transport: Transport,
    pub(crate) ring_slots: usize,
    pub(crate) outbound_ring_slots: usize,
}

impl Topology {
    /// Checks `settings` and decides the shape: ring sizes, then busy-spinning threads against
    /// the cores, then the pins (the order, and the errors, users see).
    pub(crate) fn plan(settings: &Settings<'_>) -> Result<Topology, PipelineError> {
        for (ring, slots) in [
            ("inbound", settings.ring_slots),
            ("outbound", settings.outbound_ring_slots),
        ] {
            if !(2..=RING_SLOTS_MAX).contains(&slots) || !slots.is_power_of_two() {
                return Err(PipelineError::RingSize { ring, slots });
            }
        }
        for wait in [Some(settings.wait), settings.output_wait]
            .into_iter()
            .flatten()
        {
            if let WaitStrategy::Sleep(sleep) = wait {
                if sleep > SLEEP_MAX {
                    return Err(PipelineError::SleepTooLong { sleep });
                }
            }
        }
        let Some(stages) = StageThreads::of(settings.layout) else {
            // The inline layout has no thread at all (its handler runs on the submitting
            // thread): nothing spins, and any core given is one too many.
            pins(settings.cores, 0)?;
            return Ok(Topology::Inline);
        };
        let outbound = if settings.inline_output {
            Outbound::OnStageThread
        } else {
            Outbound::Thread(settings.output_wait.unwrap_or(settings.wait))
        };
        // An inline handler has no thread of its own to spin.
        let counted_output_wait = match outbound {
            Outbound::Thread(wait) => wait,
            Outbound::OnStageThread => WaitStrategy::Yield,
        };
        let cores_available = std::thread::available_parallelism().map_or(1, |n| n.get());
        check_spinning(
            stages.layout(),
            settings.wait,
            counted_output_wait,
            cores_available,
        )?;
        let mut plan = Threaded {
            stages,
            outbound,
            wait: settings.wait,
            transport: settings.transport,
            ring_slots: settings.ring_slots,
            outbound_ring_slots: settings.outbound_ring_slots,
            pins: Vec::new(),
        };
        plan.pins = pins(settings.cores, plan.thread_count())?;
        plan.check_memory()?;
        Ok(Topology::Threaded(plan))
    }
}

/// The longest `WaitStrategy::Sleep` a pipeline takes (1 s).
pub const SLEEP_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The largest ring a pipeline takes, in slots (2^30); memory bounds it well before that on
/// most machines ([`Threaded::check_memory`]).
pub const RING_SLOTS_MAX: usize = 1 << 30;

impl Threaded {
    /// The bytes its rings allocate at start: the inbound ring (one shared by every stage on
    /// the disruptor, one channel per stage thread on crossbeam), the outbound ring when an
    /// output thread reads it, and the M→S ring of the split layout.
    pub(crate) fn ring_bytes(&self) -> u64 {
        // A crossbeam slot also holds its 8-byte stamp.
        let stamp = match self.transport {
            Transport::Disruptor => 0,
            Transport::Crossbeam => std::mem::size_of::<usize>(),
        };
        let slots = |n: usize, size: usize| (n as u64).saturating_mul((size + stamp) as u64);
        // Crossbeam: the submit channel and one between each pair of stage threads up to M
        // (fused 1, J|RMS 2, split 3: M→S has its own, below).
        let inbound_rings = match (self.transport, self.stages) {
            (Transport::Disruptor, _) => 1,
            (Transport::Crossbeam, StageThreads::Fused) => 1,
            (Transport::Crossbeam, StageThreads::JournalThenBusiness) => 2,
            (Transport::Crossbeam, StageThreads::Split) => 3,
        };
        let mut bytes =
            slots(self.ring_slots, std::mem::size_of::<InSlot>()).saturating_mul(inbound_rings);
        if matches!(self.outbound, Outbound::Thread(_)) {
            bytes = bytes.saturating_add(slots(
                self.outbound_ring_slots,
                std::mem::size_of::<Output>(),
            ));
        }
        if matches!(self.stages, StageThreads::Split) {
            bytes = bytes.saturating_add(slots(
                self.outbound_ring_slots,
                std::mem::size_of::<SettleMsg>(),
            ));
        }
        bytes
    }

    /// Refuses rings this process has no memory for (an allocation that large would abort the
    /// process instead of failing); where the limits cannot be read, nothing is refused.
    fn check_memory(&self) -> Result<(), PipelineError> {
        self.check_memory_against(crate::memory::available())
    }

    /// [`Threaded::check_memory`] against a given availability.
    pub(crate) fn check_memory_against(
        &self,
        available: Option<crate::memory::Available>,
    ) -> Result<(), PipelineError> {
        let need = self.ring_bytes();
        match available {
            Some(a) if need > a.bytes => Err(PipelineError::Config(ConfigError::Memory(format!(
                "the pipeline's rings (inbound {} slots, outbound {} slots) need {} but this \
                 process may take {} ({}): smaller ring_size / outbound_ring_size",
                self.ring_slots,
                self.outbound_ring_slots,
                crate::memory::Bytes(need),
                crate::memory::Bytes(a.bytes),
                a.limit
            )))),
            _ => Ok(()),
        }
    }
}

/// The busy-spinning threads a layout starts: every stage thread when the stage wait strategy
/// spins, plus the outbound thread when its own strategy spins (pass a strategy that parks as
/// `output_wait` when the output runs inline, on the last stage's thread).
pub fn spinning_threads(layout: Layout, wait: WaitStrategy, output_wait: WaitStrategy) -> usize {
    let stages = if wait.is_busy_spin() {
        layout.threads().len()
    } else {
        0
    };
    stages + usize::from(output_wait.is_busy_spin())
}

/// Refuses a layout whose busy-spinning threads ([`spinning_threads`]) outnumber the cores.
pub fn check_spinning(
    layout: Layout,
    wait: WaitStrategy,
    output_wait: WaitStrategy,
    cores: usize,
) -> Result<(), PipelineError> {
    let spinning = spinning_threads(layout, wait, output_wait);
    if spinning > cores {
        return Err(PipelineError::TooManySpinningThreads {
            spinning,
            cores,
            layout,
        });
    }
    Ok(())
}

/// One core (or none) per thread, in spawn order; `cores` empty: no pinning.
fn pins(
    cores: &[usize],
    threads: usize,
) -> Result<Vec<Option<core_affinity::CoreId>>, PipelineError> {
    if cores.is_empty() {
        return Ok(vec![None; threads]);
    }
    if cores.len() != threads {
        return Err(PipelineError::Cores(format!(
            "{} cores given for {threads} threads (one per stage thread, then the outbound one)",
            cores.len()
        )));
    }
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    cores
        .iter()
        .map(|&c| {
            ids.iter()
                .find(|id| id.id == c)
                .map(|id| Some(*id))
                .ok_or_else(|| {
                    PipelineError::Cores(format!(
                        "core {c} is not available (this process may use {:?})",
                        ids.iter().map(|i| i.id).collect::<Vec<_>>()
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(layout: Layout) -> Settings<'static> {
        Settings {
            layout,
            wait: WaitStrategy::Yield,
            output_wait: None,
            inline_output: false,
            cores: &[],
            transport: Transport::Disruptor,
            ring_slots: 1024,
            outbound_ring_slots: 1024,
        }
    }

    #[test]
    fn every_threaded_layout_round_trips_and_inline_has_no_threads() {
        for layout in Layout::ALL {
            let stages = StageThreads::of(layout).expect("threaded");
            assert_eq!(stages.layout(), layout);
            let Ok(Topology::Threaded(plan)) = Topology::plan(&settings(layout)) else {
                panic!("{layout} plans threads");
            };
            assert_eq!(plan.thread_count(), layout.threads().len() + 1);
            assert_eq!(plan.pins.len(), plan.thread_count());
        }
        assert_eq!(StageThreads::of(Layout::Inline), None);
        assert!(matches!(
            Topology::plan(&settings(Layout::Inline)),
            Ok(Topology::Inline)
        ));
    }

    /// Rings this process has no memory for are refused (an allocation that large aborted
    /// the process), counted as `wiring.rs` allocates them.
    #[test]
    fn rings_beyond_the_memory_available_are_refused() {
        use crate::memory::Available;
        let mut s = settings(Layout::Split);
        s.transport = Transport::Crossbeam;
        let Ok(Topology::Threaded(plan)) = Topology::plan(&s) else {
            panic!("split plans threads");
        };
        let slot = |size: usize| 1024 * (size + 8) as u64;
        let need = 3 * slot(std::mem::size_of::<InSlot>())
            + slot(std::mem::size_of::<Output>())
            + slot(std::mem::size_of::<SettleMsg>());
        assert_eq!(plan.ring_bytes(), need);
        let room = |bytes| {
            Some(Available {
                bytes,
                limit: "test",
            })
        };
        assert!(plan.check_memory_against(room(need)).is_ok());
        let err = plan.check_memory_against(room(need - 1)).unwrap_err();
        assert!(
            matches!(&err, PipelineError::Config(ConfigError::Memory(m)) if m.contains("the pipeline's rings")),
            "{err:?}"
        );
        assert!(
            plan.check_memory_against(None).is_ok(),
            "limits unknown: nothing refused"
        );
    }

    #[test]
    fn the_output_thread_is_counted_only_when_it_exists() {
        let mut s = settings(Layout::Split);
        s.inline_output = true;
        s.output_wait = Some(WaitStrategy::Phased);
        let Ok(Topology::Threaded(plan)) = Topology::plan(&s) else {
            panic!("split plans threads");
        };
        assert_eq!(plan.outbound, Outbound::OnStageThread);
        assert_eq!(plan.thread_count(), 4);
        // An inline handler never parks: only the stage wait decides.
        assert!(!plan.parks());
        s.inline_output = false;
        let Ok(Topology::Threaded(plan)) = Topology::plan(&s) else {
            panic!("split plans threads");
        };
        assert_eq!(plan.outbound, Outbound::Thread(WaitStrategy::Phased));
        assert!(plan.parks());
    }

    #[test]
    fn checks_run_in_order_ring_sizes_first() {
        let mut s = settings(Layout::Inline);
        s.ring_slots = 3;
        s.cores = &[0];
        assert!(matches!(
            Topology::plan(&s),
            Err(PipelineError::RingSize {
                ring: "inbound",
                slots: 3
            })
        ));
        s.ring_slots = 4;
        let err = Topology::plan(&s).unwrap_err();
        assert!(
            err.to_string().contains("1 cores given for 0 threads"),
            "{err}"
        );
    }
}
