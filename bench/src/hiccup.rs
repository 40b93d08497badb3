//! A hiccup meter, as jHiccup does it: a thread that does nothing but read the clock in a busy
//! loop and notes every gap in its own progress. A gap the meter sees was not caused by the code
//! under test — the thread runs no project code — so it is the floor this machine (scheduler,
//! hypervisor, interrupts, other tenants) puts under any latency measured on the same cores in
//! the same run.
//!
//! # What is recorded
//!
//! Two views of the same gaps:
//!
//! - **Time-weighted hiccups** (`p50`, `p99`, … in [`HiccupStats`]): the meter places a virtual
//!   sample every `interval_ns` of wall time (the harness passes its offered inter-arrival time,
//!   e.g. 1 µs at 1M commands/s) and records, for each sample instant `s`, how long the meter
//!   then stayed stalled: `now − s` where `now` is the first clock reading at or after `s`. A
//!   stall of 1 ms at a 1 µs interval therefore records 1000 values (1000 µs, 999 µs, … 1 µs),
//!   exactly what a request arriving every microsecond during the stall would have waited. This
//!   is the view comparable to a coordinated-omission-corrected latency histogram at that rate
//!   (jHiccup's `recordValueWithExpectedInterval`, done sample by sample).
//! - **Raw gaps**: the longest gap between two consecutive clock readings (`max_ns`), and how many
//!   gaps exceeded 10 µs and 1 ms (stall counts, the "loses its core N times a second" figure).
//!
//! # Sharing cores
//!
//! The meter busy-loops, so on a machine with fewer spare cores than the measured threads need it
//! competes with them: during a run it measures the floor *as perturbed by the run* (its gaps
//! include the time the scheduler gave its core to a measured thread) and it slows the run a
//! little. Harnesses therefore report it twice: alone (before the run, nothing else of ours
//! running) and during the run. `duty` below 1 lowers the cost: the meter then busy-loops for a
//! window of `duty_window_ns` and sleeps for the rest of each cycle, and the time it sleeps is
//! not counted (a sampled view of the floor, not a continuous one).
//!
//! [`HiccupMeter`] is the pure accounting (fed clock readings, unit-tested with a scripted
//! clock); [`run_loop`] is the loop, generic over the clock; [`HiccupThread`] runs it on a
//! thread with [`Instant`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest hiccup the histogram holds exactly (larger values saturate to it): 60 s.
const HIGHEST_NS: u64 = 60_000_000_000;
/// A gap above this is a "stall" in the counts (10 µs).
pub const STALL_NS: u64 = 10_000;
/// A gap above this is a "long stall" (1 ms).
pub const LONG_STALL_NS: u64 = 1_000_000;

/// How the meter runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HiccupConfig {
    /// Spacing of the virtual samples in ns (the harness's offered inter-arrival time).
    pub interval_ns: u64,
    /// Fraction of the time the meter busy-loops, in (0, 1]; 1 = always.
    pub duty: f64,
    /// Length of one busy window when `duty < 1`.
    pub duty_window_ns: u64,
    /// Pin the meter's thread to this core (index into the OS's core list), if given.
    pub core: Option<usize>,
}

impl HiccupConfig {
    /// Continuous metering at `interval_ns`, unpinned.
    pub fn new(interval_ns: u64) -> HiccupConfig {
        HiccupConfig {
            interval_ns: interval_ns.max(1),
            duty: 1.0,
            duty_window_ns: 1_000_000,
            core: None,
        }
    }

    /// Checks the fields; the error names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ns == 0 {
            return Err("hiccup interval must be positive".into());
        }
        if !(self.duty > 0.0 && self.duty <= 1.0) {
            return Err(format!("hiccup duty must be in (0, 1], got {}", self.duty));
        }
        if self.duty_window_ns == 0 {
            return Err("hiccup duty window must be positive".into());
        }
        Ok(())
    }
}

/// The figures of one metering period, all in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HiccupStats {
    /// Time-weighted hiccup percentiles (see the module docs).
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// 99.99th percentile.
    pub p9999_ns: u64,
    /// Longest raw gap between two consecutive clock readings.
    pub max_ns: u64,
    /// Virtual samples recorded.
    pub samples: u64,
    /// Raw gaps longer than [`STALL_NS`].
    pub stalls_over_10us: u64,
    /// Raw gaps longer than [`LONG_STALL_NS`].
    pub stalls_over_1ms: u64,
    /// Wall time actually metered (busy windows only).
    pub metered_ns: u64,
}

impl HiccupStats {
    /// Stalls over 10 µs per metered second.
    pub fn stalls_over_10us_per_s(&self) -> f64 {
        if self.metered_ns == 0 {
            return 0.0;
        }
        self.stalls_over_10us as f64 * 1e9 / self.metered_ns as f64
    }

    /// The figures as JSON members (no braces), every key prefixed with `prefix`
    /// (`"hiccup"` gives `"hiccup_p99_ns":…`).
    pub fn json_fields(&self, prefix: &str) -> String {
        format!(
            "\"{prefix}_p50_ns\":{},\"{prefix}_p99_ns\":{},\"{prefix}_p999_ns\":{},\"{prefix}_p9999_ns\":{},\"{prefix}_max_ns\":{},\"{prefix}_samples\":{},\"{prefix}_stalls_over_10us\":{},\"{prefix}_stalls_over_1ms\":{},\"{prefix}_metered_ns\":{}",
            self.p50_ns,
            self.p99_ns,
            self.p999_ns,
            self.p9999_ns,
            self.max_ns,
            self.samples,
            self.stalls_over_10us,
            self.stalls_over_1ms,
            self.metered_ns
        )
    }

    /// One line for a text report.
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  p99.99 {}  max {} ns; stalls > 10 µs: {} ({:.0}/s), > 1 ms: {}; {:.2} s metered",
            self.p50_ns,
            self.p99_ns,
            self.p999_ns,
            self.p9999_ns,
            self.max_ns,
            self.stalls_over_10us,
            self.stalls_over_10us_per_s(),
            self.stalls_over_1ms,
            self.metered_ns as f64 / 1e9
        )
    }
}

/// The meter's accounting, fed one clock reading at a time.
#[derive(Debug)]
pub struct HiccupMeter {
    hist: Histogram<u64>,
    interval_ns: u64,
    /// The last reading, once there is one.
    last_ns: Option<u64>,
    /// The next virtual sample instant.
    next_sample_ns: u64,
    max_gap_ns: u64,
    stalls: u64,
    long_stalls: u64,
    metered_ns: u64,
}

impl HiccupMeter {
    /// A meter placing a virtual sample every `interval_ns` (≥ 1).
    pub fn new(interval_ns: u64) -> HiccupMeter {
        HiccupMeter {
            hist: Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds"),
            interval_ns: interval_ns.max(1),
            last_ns: None,
            next_sample_ns: 0,
            max_gap_ns: 0,
            stalls: 0,
            long_stalls: 0,
            metered_ns: 0,
        }
    }

    /// One clock reading (monotonic ns). The first reading after [`HiccupMeter::new`] or
    /// [`HiccupMeter::pause`] only starts the period; each later one closes the gap since the
    /// previous reading. Allocation-free.
    #[inline]
    pub fn observe(&mut self, now_ns: u64) {
        let Some(last) = self.last_ns else {
            self.last_ns = Some(now_ns);
            self.next_sample_ns = now_ns.saturating_add(self.interval_ns);
            return;
        };
        let gap = now_ns.saturating_sub(last);
        self.metered_ns += gap;
        self.max_gap_ns = self.max_gap_ns.max(gap);
        if gap > STALL_NS {
            self.stalls += 1;
        }
        if gap > LONG_STALL_NS {
            self.long_stalls += 1;
        }
        while self.next_sample_ns <= now_ns {
            // The meter was stalled from this sample instant until `now_ns`.
            self.hist.saturating_record(now_ns - self.next_sample_ns);
            self.next_sample_ns += self.interval_ns;
        }
        self.last_ns = Some(now_ns.max(last));
    }

    /// The meter stops watching (it is about to sleep on purpose): the next reading starts a new
    /// period, and the time in between is neither a gap nor sampled.
    pub fn pause(&mut self) {
        self.last_ns = None;
    }

    /// The figures so far.
    pub fn stats(&self) -> HiccupStats {
        let q = |p: f64| {
            if self.hist.is_empty() {
                0
            } else {
                self.hist.value_at_quantile(p)
            }
        };
        HiccupStats {
            p50_ns: q(0.5),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            p9999_ns: q(0.9999),
            max_ns: self.max_gap_ns,
            samples: self.hist.len(),
            stalls_over_10us: self.stalls,
            stalls_over_1ms: self.long_stalls,
            metered_ns: self.metered_ns,
        }
    }
}

/// The meter's loop: read `clock` and feed it to `meter` until `stop()` says so. With
/// `config.duty < 1` it busy-loops for `duty_window_ns` of clock time, then calls
/// `sleep(off_ns)` and resumes (the sleep is not counted). `stop` is checked every 64 readings.
pub fn run_loop(
    meter: &mut HiccupMeter,
    config: &HiccupConfig,
    mut clock: impl FnMut() -> u64,
    mut stop: impl FnMut() -> bool,
    mut sleep: impl FnMut(u64),
) {
    let off_ns = if config.duty >= 1.0 {
        0
    } else {
        (config.duty_window_ns as f64 * (1.0 - config.duty) / config.duty) as u64
    };
    let mut window_start: Option<u64> = None;
    let mut i = 0u32;
    loop {
        i = i.wrapping_add(1);
        if i.is_multiple_of(64) && stop() {
            return;
        }
        let now = clock();
        meter.observe(now);
        if off_ns > 0 {
            let start = *window_start.get_or_insert(now);
            if now.saturating_sub(start) >= config.duty_window_ns {
                meter.pause();
                sleep(off_ns);
                window_start = None;
            }
        }
    }
}

/// A meter running on its own thread until [`HiccupThread::stop`].
#[derive(Debug)]
pub struct HiccupThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<HiccupStats>,
}

impl HiccupThread {
    /// Starts the meter (allocates its histogram and thread here, nothing afterwards).
    pub fn start(config: HiccupConfig) -> Result<HiccupThread, String> {
        config.validate()?;
        let core = match config.core {
            Some(i) => {
                let ids = core_affinity::get_core_ids().unwrap_or_default();
                Some(*ids.get(i).ok_or(format!(
                    "hiccup core {i} does not exist ({} cores)",
                    ids.len()
                ))?)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let mut meter = HiccupMeter::new(config.interval_ns);
        let handle = std::thread::Builder::new()
            .name("hiccup".into())
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let origin = Instant::now();
                run_loop(
                    &mut meter,
                    &config,
                    || origin.elapsed().as_nanos() as u64,
                    || flag.load(Ordering::Relaxed),
                    |ns| std::thread::sleep(Duration::from_nanos(ns)),
                );
                meter.stats()
            })
            .map_err(|e| format!("starting the hiccup meter: {e}"))?;
        Ok(HiccupThread { stop, handle })
    }

    /// Stops the meter and returns its figures.
    pub fn stop(self) -> Result<HiccupStats, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| "the hiccup meter panicked".to_string())
    }
}

/// Meters for `duration` with nothing else of ours running (the "alone" figure).
pub fn measure_alone(config: HiccupConfig, duration: Duration) -> Result<HiccupStats, String> {
    let t = HiccupThread::start(config)?;
    std::thread::sleep(duration);
    t.stop()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `readings` to a fresh meter through [`run_loop`] (the scripted clock stops the loop
    /// when it runs out).
    fn scripted(interval: u64, config: HiccupConfig, readings: &[u64]) -> (HiccupStats, u32) {
        let mut meter = HiccupMeter::new(interval);
        let next = std::cell::Cell::new(0usize);
        let mut sleeps = 0u32;
        let mut script = readings.to_vec();
        // The loop checks `stop` every 64 readings: pad with the last value plus nothing, so
        // the padding adds zero-length gaps only.
        let last = *script.last().unwrap();
        script.extend(std::iter::repeat_n(last, 64));
        let n = script.len();
        run_loop(
            &mut meter,
            &config,
            || {
                let v = script[next.get().min(n - 1)];
                next.set(next.get() + 1);
                v
            },
            || next.get() >= readings.len(),
            |_| sleeps += 1,
        );
        (meter.stats(), sleeps)
    }

    #[test]
    fn steady_progress_records_small_hiccups_once_per_interval() {
        // A reading every 10 ns for 10 µs at a 1 µs interval: 10 samples, each ≤ 10 ns late.
        let readings: Vec<u64> = (0..=1000).map(|i| i * 10).collect();
        let (s, _) = scripted(1000, HiccupConfig::new(1000), &readings);
        assert_eq!(s.samples, 10);
        assert_eq!(s.max_ns, 10);
        assert_eq!(s.stalls_over_10us, 0);
        assert_eq!(s.metered_ns, 10_000);
        assert!(s.p99_ns <= 10, "{s:?}");
    }

    #[test]
    fn a_stall_is_recorded_for_every_sample_it_covers() {
        let mut m = HiccupMeter::new(1000);
        m.observe(0);
        m.observe(100);
        // Stalled from 100 ns to 5_100 ns: samples at 1000, 2000, 3000, 4000, 5000 each wait
        // until 5_100.
        m.observe(5_100);
        let s = m.stats();
        assert_eq!(s.samples, 5);
        assert_eq!(s.max_ns, 5_000);
        assert_eq!(s.stalls_over_10us, 0);
        // Recorded: 4100, 3100, 2100, 1100, 100 (hdr precision 3 digits).
        assert!((4_090..=4_110).contains(&s.p99_ns), "{s:?}");
        assert!((2_090..=2_110).contains(&s.p50_ns), "{s:?}");
    }

    #[test]
    fn stall_counts_use_raw_gaps() {
        let mut m = HiccupMeter::new(1_000_000);
        let mut t = 0;
        m.observe(t);
        for gap in [5, 10_001, 20, 2_000_000, 10_000] {
            t += gap;
            m.observe(t);
        }
        let s = m.stats();
        assert_eq!(
            s.stalls_over_10us, 2,
            "10_001 and 2_000_000; 10_000 is not over"
        );
        assert_eq!(s.stalls_over_1ms, 1);
        assert_eq!(s.max_ns, 2_000_000);
        assert_eq!(s.metered_ns, t);
        // Samples at 1 ms and 2 ms, both inside the 2 ms gap ending at 2_010_026.
        assert_eq!(s.samples, 2);
    }

    #[test]
    fn pause_leaves_the_sleep_out() {
        let mut m = HiccupMeter::new(1000);
        m.observe(0);
        m.observe(500);
        m.pause();
        m.observe(1_000_000); // after a deliberate sleep: starts a new period
        m.observe(1_000_200);
        let s = m.stats();
        assert_eq!(s.max_ns, 500);
        assert_eq!(s.metered_ns, 700);
        assert_eq!(s.stalls_over_10us, 0);
        assert_eq!(
            s.samples, 0,
            "no sample instant fell inside a metered stretch"
        );
    }

    #[test]
    fn a_clock_going_backwards_is_no_gap() {
        let mut m = HiccupMeter::new(1000);
        m.observe(1_000);
        m.observe(900);
        m.observe(1_100);
        let s = m.stats();
        assert_eq!(
            s.max_ns, 100,
            "the reading after the backwards one counts from 1_000"
        );
        assert_eq!(s.stalls_over_10us, 0);
    }

    #[test]
    fn duty_cycle_sleeps_and_skips_the_sleep() {
        // 25 % duty with a 1 µs window: busy 1 µs, sleep 3 µs (the scripted clock jumps 3 µs
        // after each sleep, as a real one would).
        let config = HiccupConfig {
            duty: 0.25,
            duty_window_ns: 1_000,
            ..HiccupConfig::new(100)
        };
        let mut readings = Vec::new();
        let mut t = 0u64;
        for _ in 0..4 {
            for _ in 0..=10 {
                readings.push(t);
                t += 100;
            }
            t += 3_000;
        }
        let (s, sleeps) = scripted(100, config, &readings);
        assert!(sleeps >= 3, "slept {sleeps} times");
        assert_eq!(s.max_ns, 100, "the sleeps are not gaps: {s:?}");
        assert_eq!(s.stalls_over_10us, 0);
    }

    #[test]
    fn json_fields_name_every_figure() {
        let s = HiccupStats {
            p50_ns: 1,
            p99_ns: 2,
            p999_ns: 3,
            p9999_ns: 4,
            max_ns: 5,
            samples: 6,
            stalls_over_10us: 7,
            stalls_over_1ms: 8,
            metered_ns: 9,
        };
        let j = s.json_fields("hiccup");
        for key in [
            "\"hiccup_p50_ns\":1",
            "\"hiccup_p99_ns\":2",
            "\"hiccup_p999_ns\":3",
            "\"hiccup_p9999_ns\":4",
            "\"hiccup_max_ns\":5",
            "\"hiccup_stalls_over_10us\":7",
        ] {
            assert!(j.contains(key), "{j}");
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut c = HiccupConfig::new(1000);
        c.duty = 0.0;
        assert!(c.validate().unwrap_err().contains("duty"));
        c.duty = 1.5;
        assert!(c.validate().unwrap_err().contains("duty"));
        c.duty = 0.5;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_thread_meters_real_time() {
        let s = measure_alone(HiccupConfig::new(1000), Duration::from_millis(20)).unwrap();
        assert!(s.samples > 0 && s.metered_ns > 0, "{s:?}");
    }
}
