//! Candles, the 24-hour rolling ticker and exact decimal formatting of their ratios.

use std::fmt;

use crate::types::{Price, Qty};

/// One minute, one hour, one day in nanoseconds.
pub(crate) const MINUTE_NS: u64 = 60 * 1_000_000_000;
const HOUR_NS: u64 = 60 * MINUTE_NS;
const DAY_NS: u64 = 24 * HOUR_NS;
const WEEK_NS: u64 = 7 * DAY_NS;
/// 1970-01-05T00:00:00Z, the first Monday of Unix time: weeks start on Mondays.
const FIRST_MONDAY_NS: u64 = 4 * DAY_NS;
/// Minutes in the ticker's rolling window (24 hours).
pub(crate) const WINDOW_MINUTES: usize = 1440;

/// A candle interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Interval {
    /// One minute.
    M1 = 0,
    /// Five minutes.
    M5 = 1,
    /// Fifteen minutes.
    M15 = 2,
    /// Thirty minutes.
    M30 = 3,
    /// One hour.
    H1 = 4,
    /// Four hours.
    H4 = 5,
    /// One day (UTC midnight to midnight).
    D1 = 6,
    /// One week (Monday 00:00 UTC to the next).
    W1 = 7,
}

impl Interval {
    /// Every interval, shortest first (the order of their index).
    pub const ALL: [Interval; 8] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H4,
        Interval::D1,
        Interval::W1,
    ];

    /// The name used in JSON and on the command line (`1m`, `5m`, … `1d`, `1w`).
    pub fn name(self) -> &'static str {
        ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"][self as usize]
    }

    /// The interval with this name.
    pub fn from_name(name: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The interval with this wire code (its index, 0 = 1m … 7 = 1w).
    pub fn from_code(code: u8) -> Option<Interval> {
        Interval::ALL.get(usize::from(code)).copied()
    }

    /// Length in nanoseconds.
    pub fn nanos(self) -> u64 {
        match self {
            Interval::M1 => MINUTE_NS,
            Interval::M5 => 5 * MINUTE_NS,
            Interval::M15 => 15 * MINUTE_NS,
            Interval::M30 => 30 * MINUTE_NS,
            Interval::H1 => HOUR_NS,
            Interval::H4 => 4 * HOUR_NS,
            Interval::D1 => DAY_NS,
            Interval::W1 => WEEK_NS,
        }
    }

    /// Start of the candle holding time `ts` (Unix nanoseconds): the UTC boundary at or before
    /// it. Weeks start on Mondays; the week that began on Monday 1969-12-29 is clipped to start
    /// at 0, the earliest engine time.
    #[inline]
    pub fn open_time(self, ts: u64) -> u64 {
        match self {
            Interval::W1 if ts < FIRST_MONDAY_NS => 0,
            Interval::W1 => ts - (ts - FIRST_MONDAY_NS) % WEEK_NS,
            _ => ts - ts % self.nanos(),
        }
    }
}

/// One candle: the trades whose engine time falls in `[open_time, open_time + interval)`.
/// Intervals without trades have no candle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candle {
    /// Start of the interval, Unix nanoseconds.
    pub open_time: u64,
    /// First trade's price.
    pub open: Price,
    /// Highest trade price.
    pub high: Price,
    /// Lowest trade price.
    pub low: Price,
    /// Last trade's price.
    pub close: Price,
    /// Base volume, lots.
    pub volume: u64,
    /// Σ price × qty (ticks × lots): the quote volume is this times the symbol's tick size.
    pub notional_ticks: u128,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    /// A candle opened by one trade.
    pub(crate) fn first(open_time: u64, price: Price, qty: Qty) -> Candle {
        Candle {
            open_time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: qty.0,
            notional_ticks: price.0 as u128 * u128::from(qty.0),
            trades: 1,
        }
    }

    /// Adds the trades of `later`, a candle of trades that came after this one's: the same
    /// result as adding each of them in turn.
    #[inline]
    pub(crate) fn merge(&mut self, later: &Candle) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume = self.volume.saturating_add(later.volume);
        self.notional_ticks += later.notional_ticks;
        self.trades += later.trades;
    }

    /// Adds a later trade.
    #[inline]
    pub(crate) fn add(&mut self, price: Price, qty: Qty) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume = self.volume.saturating_add(qty.0);
        self.notional_ticks += price.0 as u128 * u128::from(qty.0);
        self.trades += 1;
    }

    /// Quote volume in the quote currency's minimal units (Σ price × qty × tick_size).
    pub fn quote_volume(&self, tick_size: u64) -> u128 {
        self.notional_ticks * u128::from(tick_size)
    }
}

/// The 24-hour rolling statistics of a symbol at engine time `close_time`.
///
/// The window is exact at minute granularity: it holds the trades of the 1440 UTC minutes
/// ending with the current one, `[open_time, close_time]` where `open_time` is the start of the
/// minute 1439 minutes before `close_time`'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticker {
    /// Start of the window, Unix nanoseconds.
    pub open_time: u64,
    /// Engine time the window ends at (the latest command's).
    pub close_time: u64,
    /// First trade price in the window (`None`: no trade in the window).
    pub open: Option<Price>,
    /// Highest trade price in the window.
    pub high: Option<Price>,
    /// Lowest trade price in the window.
    pub low: Option<Price>,
    /// The symbol's last trade price, in the window or before it (`None`: never traded).
    pub last: Option<Price>,
    /// Base volume in the window, lots.
    pub volume: u64,
    /// Σ price × qty in the window (ticks × lots).
    pub notional_ticks: u128,
    /// Quote volume in the window, quote minimal units.
    pub quote_volume: u128,
    /// Trades in the window.
    pub trades: u64,
    /// Best bid price and visible size.
    pub best_bid: Option<(Price, Qty)>,
    /// Best ask price and visible size.
    pub best_ask: Option<(Price, Qty)>,
}

impl Ticker {
    /// `last − open` in ticks (0 without a trade in the window).
    pub fn change(&self) -> i64 {
        match (self.open, self.last) {
            (Some(o), Some(l)) if self.trades > 0 => l.0 - o.0,
            _ => 0,
        }
    }

    /// `change / open × 100`, exact to two decimal places (truncated toward zero).
    pub fn change_pct(&self) -> Decimal {
        match self.open {
            Some(o) if self.trades > 0 && o.0 > 0 => {
                Decimal::ratio(i128::from(self.change()) * 100, o.0 as u128, 2)
            }
            _ => Decimal::ratio(0, 1, 2),
        }
    }

    /// Volume-weighted average price in ticks, `Σ price × qty / Σ qty`, exact to eight decimal
    /// places (truncated); `None` without volume.
    pub fn vwap(&self) -> Option<Decimal> {
        (self.volume > 0).then(|| {
            Decimal::ratio(
                self.notional_ticks as i128,
                u128::from(self.volume),
                VWAP_PLACES,
            )
        })
    }
}

/// Decimal places of a VWAP.
pub const VWAP_PLACES: u32 = 8;

/// A ratio of integers printed as a decimal with a fixed number of places, truncated toward
/// zero, computed in integers only (no floating point, no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    whole: u128,
    /// The fraction scaled by 10^places.
    frac: u128,
    places: u32,
}

impl Decimal {
    /// `num / den` to `places` decimal places (`den` > 0, `places` ≤ 18).
    pub fn ratio(num: i128, den: u128, places: u32) -> Decimal {
        assert!(den > 0 && places <= 18);
        let n = num.unsigned_abs();
        let whole = n / den;
        let frac = (n % den) * 10u128.pow(places) / den;
        Decimal {
            negative: num < 0 && (whole > 0 || frac > 0),
            whole,
            frac,
            places,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        if self.places == 0 {
            return write!(f, "{}", self.whole);
        }
        write!(
            f,
            "{}.{:0width$}",
            self.whole,
            self.frac,
            width = self.places as usize
        )
    }
}

/// A fixed-capacity ring: the latest `capacity` items, oldest first when iterated.
#[derive(Clone, Debug)]
pub(crate) struct Ring<T> {
    buf: Vec<T>,
    /// Where the next item goes.
    next: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Ring<T> {
        assert!(capacity > 0);
        Ring {
            buf: vec![T::default(); capacity],
            next: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        self.buf[self.next] = item;
        // A compare, not a division: the capacity is only known at run time.
        self.next = if self.next + 1 == self.buf.len() {
            0
        } else {
            self.next + 1
        };
        if self.len < self.buf.len() {
            self.len += 1;
        }
    }

    /// Where the newest item is, if any.
    #[inline]
    fn last_index(&self) -> Option<usize> {
        match (self.len, self.next) {
            (0, _) => None,
            (_, 0) => Some(self.buf.len() - 1),
            (_, next) => Some(next - 1),
        }
    }

    /// The newest item.
    #[inline]
    pub(crate) fn last(&self) -> Option<&T> {
        self.last_index().map(|i| &self.buf[i])
    }

    /// The newest item, to change.
    #[inline]
    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        self.last_index().map(|i| &mut self.buf[i])
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Copies `src` (same capacity) without allocating: its items only (the other entries are
    /// never read).
    pub(crate) fn copy_from(&mut self, src: &Ring<T>) {
        assert_eq!(
            self.buf.len(),
            src.buf.len(),
            "rings of different capacities"
        );
        // The items sit at `next - len .. next`, wrapping: at most two runs.
        let (next, len) = (src.next, src.len);
        if len <= next {
            self.buf[next - len..next].copy_from_slice(&src.buf[next - len..next]);
        } else {
            let cap = src.buf.len();
            self.buf[..next].copy_from_slice(&src.buf[..next]);
            self.buf[cap - (len - next)..].copy_from_slice(&src.buf[cap - (len - next)..]);
        }
        self.next = next;
        self.len = len;
    }

    /// The newest `limit` items (all if fewer), oldest first.
    pub(crate) fn for_each_latest(&self, limit: usize, mut f: impl FnMut(&T)) {
        let n = self.len.min(limit);
        let cap = self.buf.len();
        for k in 0..n {
            f(&self.buf[(self.next + cap - n + k) % cap]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_utc_and_weeks_start_on_monday() {
        // 2024-01-03T10:17:42.5Z, a Wednesday.
        let ts = 1_704_277_062_500_000_000u64;
        let s = 1_000_000_000u64;
        assert_eq!(Interval::M1.open_time(ts), 1_704_277_020 * s);
        assert_eq!(Interval::M5.open_time(ts), 1_704_276_900 * s);
        assert_eq!(Interval::M15.open_time(ts), 1_704_276_900 * s);
        assert_eq!(Interval::M30.open_time(ts), 1_704_276_000 * s);
        assert_eq!(Interval::H1.open_time(ts), 1_704_276_000 * s);
        assert_eq!(Interval::H4.open_time(ts), 1_704_268_800 * s);
        assert_eq!(Interval::D1.open_time(ts), 1_704_240_000 * s);
        // Monday 2024-01-01T00:00:00Z.
        assert_eq!(Interval::W1.open_time(ts), 1_704_067_200 * s);
        assert_eq!(Interval::W1.open_time(0), 0);
        assert_eq!(Interval::W1.open_time(4 * DAY_NS), 4 * DAY_NS);
        assert_eq!(Interval::W1.open_time(4 * DAY_NS - 1), 0);
        for i in Interval::ALL {
            assert_eq!(Interval::from_name(i.name()), Some(i));
            assert_eq!(Interval::from_code(i as u8), Some(i));
        }
        assert_eq!(Interval::from_name("2m"), None);
        assert_eq!(Interval::from_code(8), None);
    }

    #[test]
    fn decimals_are_exact_and_truncated() {
        assert_eq!(Decimal::ratio(1, 3, 8).to_string(), "0.33333333");
        assert_eq!(Decimal::ratio(200, 2, 8).to_string(), "100.00000000");
        assert_eq!(Decimal::ratio(-250, 100, 2).to_string(), "-2.50");
        assert_eq!(Decimal::ratio(-1, 1000, 2).to_string(), "0.00");
        assert_eq!(Decimal::ratio(7, 1, 0).to_string(), "7");
    }

    #[test]
    fn rings_keep_the_latest() {
        let mut r = Ring::<u32>::new(3);
        for i in 1..=5 {
            r.push(i);
        }
        let mut seen = Vec::new();
        r.for_each_latest(10, |&x| seen.push(x));
        assert_eq!(seen, [3, 4, 5]);
        seen.clear();
        r.for_each_latest(2, |&x| seen.push(x));
        assert_eq!(seen, [4, 5]);
        *r.last_mut().unwrap() = 9;
        seen.clear();
        r.for_each_latest(1, |&x| seen.push(x));
        assert_eq!(seen, [9]);
    }
}
