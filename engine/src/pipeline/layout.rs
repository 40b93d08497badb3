//! Thread layouts, wait strategies and transports: the pipeline's shape, as configuration.
//!
//! A [`Layout`] says which stages share a thread. Three threaded shapes exist, because the
//! business stages R, M and S run in lock-step per command (docs/architecture.md, "The
//! pipeline"): splitting them further buys hand-offs, not parallelism, so only these are
//! offered, plus [`Layout::Inline`], which runs every stage on the submitting thread:
//!
//! | layout | threads (then the outbound thread) | strings |
//! |---|---|---|
//! | [`Layout::Fused`] | `JRMS` | `fused`, `JRMS` |
//! | [`Layout::JournalThenBusiness`] | `J`, `RMS` | `J|RMS` |
//! | [`Layout::Split`] | `J`, `R`, `M`, `S` | `split`, `J|R|M|S` |
//! | [`Layout::Inline`] | none (the caller's thread; no outbound thread) | `inline` |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which stages share a thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One thread: journal a batch, sync it, then risk, matching and settlement over it. For
    /// small machines (2 cores: this thread and the outbound one).
    #[default]
    Fused,
    /// A journal thread, and one business-logic thread running R, M and S.
    JournalThenBusiness,
    /// One thread per stage: J, R, M, S, each pinned to its own core.
    Split,
    /// No pipeline thread at all: [`crate::Pipeline::try_submit`] journals the command and runs
    /// R·M·S on the caller's thread, and the output handler runs there too. For callers that
    /// already own a thread per core (a gateway's event loop on a 2-core box): no hand-off, no
    /// wake-up, the same journal, recovery and snapshots. Not in [`Layout::ALL`].
    ///
    /// [`crate::Pipeline::try_submit_with`] sends one command's outputs to a sink of the
    /// caller's instead of the handler:
    ///
    /// ```
    /// use ringbook_engine::pipeline::{Layout, Output, OutputKind, Pipeline};
    /// use ringbook_engine::prelude::*;
    ///
    /// let config = Config::default();
    /// let btc = config.currency_id("BTC").unwrap();
    /// let dir = tempfile::tempdir()?;
    /// let mut exchange = Pipeline::builder(&config)
    ///     .layout(Layout::Inline) // no thread: try_submit journals and processes right here
    ///     .journal(dir.path(), ringbook_journal::JournalConfig::default())
    ///     .start()?;
    /// let mut outputs: Vec<Output> = Vec::with_capacity(1024); // the caller's own buffer
    /// let deposit = Command::Deposit { user: UserId(1), currency: btc, amount: 10 };
    /// let seq = exchange
    ///     .try_submit_with(deposit, &mut |out: &Output| outputs.push(*out))
    ///     .expect("the inline layout never hands a command back");
    /// // Journaled and processed before try_submit_with returned: its events, then Done.
    /// assert_eq!(outputs.last(), Some(&Output { seq, ts: outputs[0].ts, kind: OutputKind::Done }));
    /// let report = exchange.shutdown()?; // closes the journal; there is no thread to join
    /// assert_eq!(report.commands, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Inline,
}

impl Layout {
    /// Every layout, in order of thread count.
    pub const ALL: [Layout; 3] = [Layout::Fused, Layout::JournalThenBusiness, Layout::Split];

    /// The stage threads' names, in order (the outbound thread follows them).
    pub fn threads(self) -> &'static [&'static str] {
        match self {
            Layout::Fused => &["JRMS"],
            Layout::JournalThenBusiness => &["J", "RMS"],
            Layout::Split => &["J", "R", "M", "S"],
            Layout::Inline => &[],
        }
    }

    /// Parses a layout string (`"fused"`, `"J|RMS"`, `"split"`, …); the same as [`FromStr`].
    pub fn parse(s: &str) -> Result<Layout, ParseLayoutError> {
        s.parse()
    }

    /// The canonical string (what [`FromStr`] accepts and `Display` prints).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Fused => "fused",
            Layout::JournalThenBusiness => "J|RMS",
            Layout::Split => "split",
            Layout::Inline => "inline",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout string that names no layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLayoutError(pub String);

impl fmt::Display for ParseLayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown pipeline layout {:?}: expected one of \"fused\" (= \"JRMS\"), \"J|RMS\", \
             \"split\" (= \"J|R|M|S\"), \"inline\"",
            self.0
        )
    }
}

impl std::error::Error for ParseLayoutError {}

impl FromStr for Layout {
    type Err = ParseLayoutError;

    fn from_str(s: &str) -> Result<Layout, ParseLayoutError> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        match compact.to_ascii_lowercase().as_str() {
            "fused" | "jrms" => Ok(Layout::Fused),
            "j|rms" => Ok(Layout::JournalThenBusiness),
            "split" | "j|r|m|s" => Ok(Layout::Split),
            "inline" => Ok(Layout::Inline),
            _ => Err(ParseLayoutError(s.to_string())),
        }
    }
}

/// What a pipeline thread does while its input is empty (or its output full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitStrategy {
    /// Spin on the cursor: the lowest latency; owns a core.
    BusySpin,
    /// Spin with `std::hint::spin_loop` (PAUSE / YIELD): nearly as fast, kinder to a sibling
    /// hyper-thread; still owns a core.
    BusySpinHint,
    /// `std::thread::yield_now` between looks: shares cores, costs a system call per look.
    #[default]
    Yield,
    /// Sleep this long between looks: frees the core; adds up to the duration (plus timer
    /// slack) to latency.
    Sleep(Duration),
    /// Spin briefly, then yield, then park until the next command arrives (`pipeline/bell.rs`):
    /// under load it behaves like [`WaitStrategy::Yield`]; idle, its threads sleep and cost
    /// nothing. The price is a wake-up (a futex call by the publisher, then the scheduler's
    /// latency) for the first command after more than half a millisecond of silence.
    Phased,
}

impl WaitStrategy {
    /// Whether a thread waiting this way occupies a core completely.
    pub fn is_busy_spin(self) -> bool {
        matches!(self, WaitStrategy::BusySpin | WaitStrategy::BusySpinHint)
    }

    /// One idle step (for `Phased`, outside a thread's input wait, where it never parks: a
    /// yield).
    #[inline]
    pub(crate) fn idle(self) {
        match self {
            WaitStrategy::BusySpin => {}
            WaitStrategy::BusySpinHint => std::hint::spin_loop(),
            WaitStrategy::Yield | WaitStrategy::Phased => std::thread::yield_now(),
            WaitStrategy::Sleep(d) => std::thread::sleep(d),
        }
    }
}

/// A wait strategy string that names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseWaitError(pub String);

impl fmt::Display for ParseWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown wait strategy {:?}: expected \"busy-spin\", \"busy-spin-hint\", \"yield\", \
             \"phased\" or \"sleep:<microseconds>\"",
            self.0
        )
    }
}

impl std::error::Error for ParseWaitError {}

impl FromStr for WaitStrategy {
    type Err = ParseWaitError;

    fn from_str(s: &str) -> Result<WaitStrategy, ParseWaitError> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "busy-spin" | "busyspin" | "spin" => Ok(WaitStrategy::BusySpin),
            "busy-spin-hint" | "busyspinhint" | "spin-hint" => Ok(WaitStrategy::BusySpinHint),
            "yield" => Ok(WaitStrategy::Yield),
            "phased" | "park" => Ok(WaitStrategy::Phased),
            _ => lower
                .strip_prefix("sleep:")
                .and_then(|us| us.trim_end_matches("us").parse::<u64>().ok())
                .map(|us| WaitStrategy::Sleep(Duration::from_micros(us)))
                .ok_or_else(|| ParseWaitError(s.to_string())),
        }
    }
}

/// The queues joining the stages: the same stage code either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `disruptor` ring buffers: pre-allocated slots read in place, cursors as the only
    /// synchronisation.
    #[default]
    Disruptor,
    /// `crossbeam_channel::bounded` channels (messages copied through): the baseline.
    Crossbeam,
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Transport, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disruptor" => Ok(Transport::Disruptor),
            "crossbeam" => Ok(Transport::Crossbeam),
            _ => Err(format!(
                "unknown transport {s:?}: expected \"disruptor\" or \"crossbeam\""
            )),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Disruptor => "disruptor",
            Transport::Crossbeam => "crossbeam",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_from_their_strings() {
        for (s, l) in [
            ("fused", Layout::Fused),
            ("JRMS", Layout::Fused),
            ("J|RMS", Layout::JournalThenBusiness),
            ("split", Layout::Split),
            ("J|R|M|S", Layout::Split),
            (" j | r | m | s ", Layout::Split),
        ] {
            assert_eq!(s.parse::<Layout>(), Ok(l), "{s}");
            assert_eq!(l.name().parse::<Layout>(), Ok(l));
        }
        let err = "JR|MS".parse::<Layout>().unwrap_err();
        assert!(err.to_string().contains("J|RMS"), "{err}");
    }

    #[test]
    fn wait_strategies_parse() {
        assert_eq!("busy-spin".parse(), Ok(WaitStrategy::BusySpin));
        assert_eq!("busy-spin-hint".parse(), Ok(WaitStrategy::BusySpinHint));
        assert_eq!("yield".parse(), Ok(WaitStrategy::Yield));
        assert_eq!("phased".parse(), Ok(WaitStrategy::Phased));
        assert_eq!(
            "sleep:50".parse(),
            Ok(WaitStrategy::Sleep(Duration::from_micros(50)))
        );
        assert!("nap".parse::<WaitStrategy>().is_err());
    }
}
