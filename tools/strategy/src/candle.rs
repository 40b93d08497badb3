//! Candles: what the strategies see of the market, and the small aggregator that builds them.
//!
//! [`Candle`] is the strategies' input type: integer ticks and lots, never floats.
//!
//! [`TradeCandles`] turns trades into candles. **It stands in for the engine's market-data
//! builder** (candles 1m…1w and a trade tape built from the event stream, being added to
//! `ringbook-engine`): everything here reaches candles only through [`TradeCandles::on_trade`],
//! [`TradeCandles::on_time`] and [`TradeCandles::finish`], so the swap at merge touches this file
//! alone.

use std::path::Path;

/// One candle of one symbol: prices in ticks per lot, volume in lots, quote volume in the quote
/// currency's minimal units (`Σ price × qty × tick_size`), times in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Start of the interval (ms; a multiple of the interval).
    pub open_time: u64,
    /// First trade price.
    pub open: i64,
    /// Highest trade price.
    pub high: i64,
    /// Lowest trade price.
    pub low: i64,
    /// Last trade price.
    pub close: i64,
    /// Lots traded.
    pub volume: u64,
    /// Quote units traded.
    pub quote_volume: u128,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    /// A candle of one trade.
    pub fn first(open_time: u64, price: i64, qty: u64, quote: u128) -> Candle {
        Candle {
            open_time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: qty,
            quote_volume: quote,
            trades: 1,
        }
    }

    /// The range `high − low` in ticks.
    pub fn range(&self) -> i64 {
        self.high - self.low
    }
}

/// Builds candles of one interval from trades in time order.
///
/// The narrow interface the engine's market-data builder will replace (module doc): a trade
/// goes in with its time; a candle comes out once its interval has ended, which is known when a
/// trade or a time beyond it arrives. Intervals without trades produce no candle.
#[derive(Clone, Debug)]
pub struct TradeCandles {
    interval_ms: u64,
    current: Option<Candle>,
}

impl TradeCandles {
    /// An aggregator of `interval_ms` candles (> 0).
    pub fn new(interval_ms: u64) -> TradeCandles {
        assert!(interval_ms > 0, "candle interval must be positive");
        TradeCandles {
            interval_ms,
            current: None,
        }
    }

    /// The interval in ms.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Time has reached `ts` (ms): returns the current candle if its interval has ended.
    pub fn on_time(&mut self, ts: u64) -> Option<Candle> {
        match self.current {
            Some(c) if ts >= c.open_time + self.interval_ms => self.current.take(),
            _ => None,
        }
    }

    /// A trade at `ts`: returns the candle it closed, if any.
    pub fn on_trade(&mut self, ts: u64, price: i64, qty: u64, tick_size: u64) -> Option<Candle> {
        let closed = self.on_time(ts);
        let quote = price as u128 * qty as u128 * tick_size as u128;
        match &mut self.current {
            Some(c) => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.close = price;
                c.volume += qty;
                c.quote_volume += quote;
                c.trades += 1;
            }
            None => {
                let open_time = ts - ts % self.interval_ms;
                self.current = Some(Candle::first(open_time, price, qty, quote));
            }
        }
        closed
    }

    /// The end of the data: the candle in progress, if any.
    pub fn finish(&mut self) -> Option<Candle> {
        self.current.take()
    }
}

/// Parses an interval: a number followed by `ms`, `s`, `m`, `h`, `d` or `w` (`1m`, `4h`, `1w`).
pub fn parse_interval(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("interval {text:?} has no unit (ms, s, m, h, d, w)"))?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("interval {text:?} does not start with a number"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(format!(
                "interval {text:?}: unknown unit {unit:?} (ms, s, m, h, d, w)"
            ))
        }
    };
    match n.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!(
            "interval {text:?} must be positive and fit 64 bits"
        )),
    }
}

/// Reads a candle CSV: a header line, then `open_time,open,high,low,close,volume` per line
/// (`open_time` in ms, prices in ticks per lot, volume in lots), strictly increasing times.
/// Errors name the file and line.
pub fn read_candle_csv(path: &Path, tick_size: u64) -> Result<Vec<Candle>, String> {
    // A regular file only: a FIFO given as data would block the run forever.
    let text = crate::files::read_regular(path)?;
    // A UTF-8 byte-order mark (spreadsheets write one) is no part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out: Vec<Candle> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if n == 1 && line.starts_with("open_time") {
            continue;
        }
        let at = |m: String| format!("{}:{n}: {m}", path.display());
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(at(format!(
                "expected 6 fields (open_time,open,high,low,close,volume), found {}",
                f.len()
            )));
        }
        let num = |k: usize, name: &str| -> Result<i64, String> {
            f[k].parse::<i64>()
                .map_err(|_| at(format!("{name} {:?} is not an integer", f[k])))
        };
        let t = num(0, "open_time")?;
        let (o, h, l, c, v) = (
            num(1, "open")?,
            num(2, "high")?,
            num(3, "low")?,
            num(4, "close")?,
            num(5, "volume")?,
        );
        if t < 0 || v < 0 {
            return Err(at("open_time and volume must not be negative".into()));
        }
        if l <= 0 || !(l <= o && l <= c && o <= h && c <= h) {
            return Err(at(format!(
                "prices must satisfy 0 < low <= open, close <= high (got {o},{h},{l},{c})"
            )));
        }
        if let Some(prev) = out.last() {
            if t as u64 <= prev.open_time {
                return Err(at(format!("open_time {t} is not after the line before")));
            }
        }
        out.push(Candle {
            open_time: t as u64,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v as u64,
            quote_volume: c as u128 * v as u128 * tick_size as u128,
            trades: 0,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no candles", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_trades_into_candles() {
        let mut a = TradeCandles::new(1_000);
        assert_eq!(a.on_trade(1_100, 100, 2, 1), None);
        assert_eq!(a.on_trade(1_500, 105, 1, 1), None);
        assert_eq!(a.on_trade(1_999, 98, 3, 1), None);
        let c = a
            .on_trade(3_000, 101, 1, 1)
            .expect("closes the first candle");
        assert_eq!(
            c,
            Candle {
                open_time: 1_000,
                open: 100,
                high: 105,
                low: 98,
                close: 98,
                volume: 6,
                quote_volume: 200 + 105 + 294,
                trades: 3
            }
        );
        assert_eq!(a.on_time(3_999), None);
        let c = a.on_time(4_000).expect("time closes the second");
        assert_eq!((c.open_time, c.open, c.volume), (3_000, 101, 1));
        assert_eq!(a.finish(), None);
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1m"), Ok(60_000));
        assert_eq!(parse_interval("250ms"), Ok(250));
        assert_eq!(parse_interval("1w"), Ok(604_800_000));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("3y").is_err());
    }

    #[test]
    fn candle_csv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(
            &p,
            "open_time,open,high,low,close,volume\n0,10,12,9,11,5\n0,10,12,9,11,5\n",
        )
        .unwrap();
        let e = read_candle_csv(&p, 1).unwrap_err();
        assert!(e.contains("c.csv:3") && e.contains("not after"), "{e}");
        std::fs::write(&p, "0,10,9,9,11,5\n").unwrap();
        assert!(read_candle_csv(&p, 1).unwrap_err().contains(":1:"));
        std::fs::write(&p, "0,10,12,9,11,5\n60000,11,13,10,12,4\n").unwrap();
        assert_eq!(read_candle_csv(&p, 1).unwrap().len(), 2);
        // A byte-order mark before the header is skipped (it made the header a bad row).
        std::fs::write(
            &p,
            "\u{feff}open_time,open,high,low,close,volume\n0,10,12,9,11,5\n",
        )
        .unwrap();
        assert_eq!(read_candle_csv(&p, 1).unwrap().len(), 1);
    }
}
