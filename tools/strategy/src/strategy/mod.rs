//! The strategies: deterministic state machines fed candles and order notes, emitting
//! [`Intent`]s. No floats decide anything: prices are ticks, quantities lots, ratios
//! [`Fixed`] (ten-thousandths).
//!
//! Adding a strategy: implement [`Strategy`], give it a `Params` struct deserialised from TOML,
//! and add it to [`build`] (docs/strategies.md, "Adding a strategy").

pub mod breakout;
pub mod grid;
pub mod maker;
pub mod taker;
pub mod turtle;

use ringbook_engine::Side;
use serde::Deserialize;

use crate::candle::Candle;

/// A decimal parameter in fixed point: ten-thousandths (`0.5` is `Fixed(5_000)`).
///
/// TOML numbers (integer or float) and strings (`"0.35"`) are accepted and rounded to four
/// decimals once, when the parameters are read; all arithmetic after that is integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fixed(pub i64);

impl Fixed {
    /// The scale: 1.0 is `Fixed(SCALE)`.
    pub const SCALE: i64 = 10_000;

    /// `x × self`, rounded towards zero.
    pub fn scale(self, x: i64) -> i64 {
        ((x as i128 * self.0 as i128) / Self::SCALE as i128) as i64
    }

    /// Parses `"0.35"`, `"2"`, `"-1.5"` (at most four decimals).
    pub fn parse(text: &str) -> Result<Fixed, String> {
        let t = text.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let bad = || format!("{text:?} is not a decimal with at most 4 places");
        if int.is_empty() && frac.is_empty()
            || frac.len() > 4
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let i: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut f: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        for _ in frac.len()..4 {
            f *= 10;
        }
        let v = i
            .checked_mul(Self::SCALE)
            .and_then(|v| v.checked_add(f))
            .ok_or_else(bad)?;
        Ok(Fixed(if neg { -v } else { v }))
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let (i, d) = (a / Self::SCALE as u64, a % Self::SCALE as u64);
        let mut s = format!("{sign}{i}.{d:04}");
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
        f.write_str(&s)
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fixed, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            I(i64),
            F(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::I(i) => i
                .checked_mul(Fixed::SCALE)
                .map(Fixed)
                .ok_or_else(|| serde::de::Error::custom("decimal out of range")),
            // Read once at start-up, then never used as a float again.
            Raw::F(f) => Fixed::parse(&format!("{f:.4}")).map_err(serde::de::Error::custom),
            Raw::S(s) => Fixed::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// The market a strategy trades: one symbol's reference data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Market {
    /// Quote minimal units per tick per lot (a trade's notional is `price × qty × tick_size`).
    pub tick_size: u64,
    /// Lowest and highest valid price.
    pub price_min: i64,
    /// Highest valid price.
    pub price_max: i64,
    /// Largest order quantity.
    pub max_order_qty: u64,
}

impl Market {
    /// The market of a configured symbol.
    pub fn of(sc: &ringbook_engine::config::SymbolConfig) -> Market {
        Market {
            tick_size: sc.tick_size,
            price_min: sc.price_min,
            price_max: sc.price_max,
            max_order_qty: sc.max_order_qty,
        }
    }

    /// Lots that `budget` quote units buy at `price` (rounded down).
    pub fn lots_for(&self, budget: i64, price: i64) -> u64 {
        if budget <= 0 || price <= 0 {
            return 0;
        }
        let per_lot = price as i128 * self.tick_size as i128;
        ((budget as i128 / per_lot) as u64).min(self.max_order_qty)
    }

    /// `price` clamped into the symbol's band.
    pub fn clamp(&self, price: i64) -> i64 {
        price.clamp(self.price_min, self.price_max)
    }
}

/// What a strategy knows when it decides: its position and the top of the book.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The symbol's reference data.
    pub market: Market,
    /// The candle interval in ms.
    pub interval_ms: u64,
    /// Position in lots (positive long).
    pub position: i64,
    /// Average entry price of the position (ticks), when there is one.
    pub avg_price: Option<i64>,
    /// Equity in quote units at the last mark (cash + position at the mark price).
    pub equity: i64,
    /// Cash (quote units) not committed to the position.
    pub cash: i64,
    /// Best bid and ask (ticks) when known.
    pub best_bid: Option<i64>,
    /// Best ask.
    pub best_ask: Option<i64>,
}

/// An order a strategy wants. `key` names the order's role inside the strategy (a grid level,
/// "entry", "exit"…): at most one live order per key; notes about it come back with the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A GTC limit order.
    Limit {
        /// The order's role.
        key: u64,
        /// Buy or sell.
        side: Side,
        /// Limit price (ticks).
        price: i64,
        /// Lots.
        qty: u64,
    },
    /// A market order; `reference` is the price the decision was made at (slippage is
    /// measured from it, and the protection price is set around it by the risk settings).
    Market {
        /// The order's role.
        key: u64,
        /// Buy or sell.
        side: Side,
        /// Lots.
        qty: u64,
        /// Decision price (ticks).
        reference: i64,
    },
    /// A stop-market order: becomes a market order when the last trade reaches `stop`.
    Stop {
        /// The order's role.
        key: u64,
        /// Buy or sell.
        side: Side,
        /// Trigger price (ticks), also the slippage reference.
        stop: i64,
        /// Lots.
        qty: u64,
    },
    /// Cancel the live order with this key, if any.
    Cancel {
        /// The order's role.
        key: u64,
    },
}

/// What happened to one of the strategy's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// A fill of `qty` at `price`; `done` when nothing is left open.
    Fill {
        /// The order's role.
        key: u64,
        /// The order's side.
        side: Side,
        /// Trade price.
        price: i64,
        /// Lots.
        qty: u64,
        /// The order is finished (fully filled).
        done: bool,
    },
    /// The order ended without filling all of it (cancelled, expired, killed) or was refused.
    Ended {
        /// The order's role.
        key: u64,
        /// Lots it filled in all.
        filled: u64,
    },
}

/// A deterministic trading strategy.
pub trait Strategy: Send {
    /// The strategy's name (as given to `--strategy`).
    fn name(&self) -> &'static str;
    /// A candle closed.
    fn on_candle(&mut self, candle: &Candle, ctx: &Ctx, out: &mut Vec<Intent>);
    /// One of its orders filled or ended.
    fn on_note(&mut self, note: &Note, ctx: &Ctx, out: &mut Vec<Intent>);
    /// Risk flattened the position and cancelled every order: forget positions and orders.
    fn on_flatten(&mut self);
}

/// The strategies by name.
pub const NAMES: [&str; 5] = ["breakout", "grid", "turtle", "maker", "taker"];

/// Builds strategy `name` from its parameters (the params file minus `[risk]` and
/// `[backtest]`).
pub fn build(name: &str, params: &toml::Table) -> Result<Box<dyn Strategy>, String> {
    fn parse<T: serde::de::DeserializeOwned>(name: &str, t: &toml::Table) -> Result<T, String> {
        toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e| format!("{name} parameters: {e}"))
    }
    Ok(match name {
        "breakout" => Box::new(breakout::Breakout::new(parse(name, params)?)?),
        "grid" => Box::new(grid::Grid::new(parse(name, params)?)?),
        "turtle" => Box::new(turtle::Turtle::new(parse(name, params)?)?),
        "maker" => Box::new(maker::Maker::new(parse(name, params)?)?),
        "taker" => Box::new(taker::Taker::new(parse(name, params)?)?),
        _ => {
            return Err(format!(
                "unknown strategy {name:?} (known: {})",
                NAMES.join(", ")
            ))
        }
    })
}

#[cfg(test)]
pub(crate) mod testkit {
    use super::*;

    pub fn market() -> Market {
        Market {
            tick_size: 1,
            price_min: 1,
            price_max: 1_000_000,
            max_order_qty: 1_000_000,
        }
    }

    pub fn ctx(position: i64, cash: i64) -> Ctx {
        Ctx {
            market: market(),
            interval_ms: 60_000,
            position,
            avg_price: None,
            equity: cash,
            cash,
            best_bid: None,
            best_ask: None,
        }
    }

    pub fn candle(t: u64, o: i64, h: i64, l: i64, c: i64) -> Candle {
        Candle {
            open_time: t,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 10,
            quote_volume: 0,
            trades: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_parsing() {
        assert_eq!(Fixed::parse("0.35"), Ok(Fixed(3_500)));
        assert_eq!(Fixed::parse("2"), Ok(Fixed(20_000)));
        assert_eq!(Fixed::parse("-1.5"), Ok(Fixed(-15_000)));
        assert_eq!(Fixed::parse(".5"), Ok(Fixed(5_000)));
        assert!(Fixed::parse("0.12345").is_err());
        assert!(Fixed::parse("abc").is_err());
        assert_eq!(Fixed(5_000).scale(20), 10);
        assert_eq!(Fixed(3_000).to_string(), "0.3");
        assert_eq!(Fixed(20_000).to_string(), "2");
        assert_eq!(Fixed(-5).to_string(), "-0.0005");
        #[derive(Deserialize)]
        struct P {
            a: Fixed,
            b: Fixed,
            c: Fixed,
        }
        let p: P = toml::from_str("a = 0.3\nb = 2\nc = \"0.0001\"").unwrap();
        assert_eq!((p.a, p.b, p.c), (Fixed(3_000), Fixed(20_000), Fixed(1)));
    }

    #[test]
    fn unknown_strategy_and_bad_params_are_clear_errors() {
        let e = build("nope", &toml::Table::new()).err().unwrap();
        assert!(e.contains("unknown strategy") && e.contains("grid"), "{e}");
        let t: toml::Table =
            toml::from_str("levels = 5\nlow = 100\nhigh = 200\nqty = 1\nbogus = 1").unwrap();
        let e = build("grid", &t).err().unwrap();
        assert!(e.contains("bogus"), "{e}");
    }
}
