//! Exact decimal conversion between Upbit's display numbers (decimal strings) and ringbook's
//! integers: prices in ticks per lot, volumes in lots, amounts in a currency's minimal units.
//!
//! A display value is parsed as `m / 10^d` (integers only) and multiplied by the symbol's exact
//! ratio; the result must be a whole number, else the value is refused — never rounded. Display
//! goes the other way and is exact too: a ratio whose reduced denominator divides a power of ten
//! prints as a terminating decimal (a symbol whose tick does not is not offered by the Upbit API).
//! No floating point is involved anywhere.

use ringbook_engine::config::SymbolConfig;
use ringbook_engine::Config;

/// A non-negative decimal `m / 10^d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec {
    /// The digits.
    pub m: u128,
    /// Decimal places.
    pub d: u32,
}

/// Why a value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecError {
    /// Not a plain non-negative decimal number.
    Syntax,
    /// Too many digits or too large to convert.
    TooLarge,
    /// Not a whole number of the unit (tick, lot, minimal unit).
    NotMultiple,
}

/// The most significant digits a value may have.
pub const DIGITS_MAX: usize = 36;

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn pow10(e: u32) -> Option<u128> {
    10u128.checked_pow(e)
}

/// Parses `123`, `0.5`, `1.50`, `1e-5`, `2.5E3` (no sign, no spaces).
pub fn parse(s: &str) -> Result<Dec, DecError> {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => {
            let t = &s[i + 1..];
            let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecError::Syntax);
            }
            // An exponent beyond i32 is out of range, not malformed: saturated, it is refused
            // below as too large (or too small) like any other exponent out of range.
            let e = t.parse::<i32>().unwrap_or(if t.starts_with('-') {
                i32::MIN
            } else {
                i32::MAX
            });
            (&s[..i], e)
        }
        None => (s, 0),
    };
    let (int, frac) = match mant.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mant, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (mant.contains('.') && (int.is_empty() || frac.is_empty()))
    {
        return Err(DecError::Syntax);
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > DIGITS_MAX {
        return Err(DecError::TooLarge);
    }
    let mut m: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| DecError::TooLarge)?
    };
    let mut d = frac.len() as i64 - i64::from(exp);
    if d < 0 {
        m = m
            .checked_mul(pow10((-d) as u32).ok_or(DecError::TooLarge)?)
            .ok_or(DecError::TooLarge)?;
        d = 0;
    }
    if d > 60 {
        return Err(DecError::TooLarge);
    }
    Ok(normalize(Dec { m, d: d as u32 }))
}

fn normalize(mut x: Dec) -> Dec {
    while x.d > 0 && x.m.is_multiple_of(10) {
        x.m /= 10;
        x.d -= 1;
    }
    if x.m == 0 {
        x.d = 0;
    }
    x
}

/// `x × num / den` when it is a whole number.
pub fn scale(x: Dec, num: u128, den: u128) -> Result<u128, DecError> {
    let x = normalize(x);
    let g = gcd(num, den).max(1);
    let (num, den) = (num / g, den / g);
    let p10 = pow10(x.d).ok_or(DecError::NotMultiple)?;
    // Reduce m / 10^d first so a long fraction that cancels out does not overflow.
    let g2 = gcd(x.m, p10).max(1);
    let (m, p10) = (x.m / g2, p10 / g2);
    let g3 = gcd(m, den).max(1);
    let (m, den) = (m / g3, den / g3);
    let g4 = gcd(num, p10).max(1);
    let (num, p10) = (num / g4, p10 / g4);
    let d = p10.checked_mul(den).ok_or(DecError::NotMultiple)?;
    if d != 1 {
        return Err(DecError::NotMultiple);
    }
    m.checked_mul(num).ok_or(DecError::TooLarge)
}

/// `num / den` as a terminating decimal string (`None` if it does not terminate), minimal form:
/// `0`, `12`, `0.0001`, `95000000`.
pub fn ratio_str(num: u128, den: u128) -> Option<String> {
    if den == 0 {
        return None;
    }
    let g = gcd(num, den).max(1);
    let (num, mut den) = (num / g, den / g);
    // den = 2^a 5^b; multiply up to 10^k.
    let (mut twos, mut fives) = (0u32, 0u32);
    while den % 2 == 0 {
        den /= 2;
        twos += 1;
    }
    while den % 5 == 0 {
        den /= 5;
        fives += 1;
    }
    if den != 1 && num != 0 {
        return None;
    }
    let k = twos.max(fives);
    let mul = 2u128
        .checked_pow(k - twos)?
        .checked_mul(5u128.checked_pow(k - fives)?)?;
    let digits = num.checked_mul(mul)?;
    Some(fmt(Dec { m: digits, d: k }))
}

/// `num / den` rounded half up to `digits` decimal places, minimal form: for a quotient that
/// does not end in decimal (an average price over fills), where [`ratio_str`] has none.
pub fn ratio_rounded(num: u128, den: u128, digits: u32) -> String {
    if den == 0 {
        return "0".to_string();
    }
    let scale = 10u128.pow(digits);
    let (int, rem) = (num / den, num % den);
    // rem < den: rem × scale fits whenever den × scale does; otherwise give up digits.
    let frac = match rem.checked_mul(scale) {
        Some(r) => (r + den / 2) / den,
        None => 0,
    };
    match int.checked_mul(scale).and_then(|i| i.checked_add(frac)) {
        Some(m) => fmt(Dec { m, d: digits }),
        None => int.to_string(),
    }
}

/// A decimal in minimal form.
pub fn fmt(x: Dec) -> String {
    let x = normalize(x);
    let s = x.m.to_string();
    if x.d == 0 {
        return s;
    }
    let d = x.d as usize;
    if s.len() > d {
        format!("{}.{}", &s[..s.len() - d], &s[s.len() - d..])
    } else {
        format!("0.{}{}", "0".repeat(d - s.len()), s)
    }
}

/// The scales and sizes of one symbol, for its conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scales {
    /// Base currency decimal digits.
    pub base: u32,
    /// Quote currency decimal digits.
    pub quote: u32,
    /// Base minimal units per lot.
    pub lot: u64,
    /// Quote minimal units per tick per lot.
    pub tick: u64,
}

impl Scales {
    /// The scales of `s` in `config` (`None`: an unknown currency, which validation excludes).
    pub fn of(config: &Config, s: &SymbolConfig) -> Option<Scales> {
        let sc = |code: &str| {
            config
                .currencies
                .iter()
                .find(|c| c.code == code)
                .map(|c| u32::from(c.scale))
        };
        Some(Scales {
            base: sc(&s.base)?,
            quote: sc(&s.quote)?,
            lot: s.lot_size,
            tick: s.tick_size,
        })
    }

    /// Display price (quote per one base unit) → ticks per lot:
    /// `P × 10^quote × lot / (10^base × tick)`.
    pub fn price_num_den(&self) -> (u128, u128) {
        (
            10u128.pow(self.quote) * u128::from(self.lot),
            10u128.pow(self.base) * u128::from(self.tick),
        )
    }

    /// A display price in ticks.
    pub fn ticks(&self, s: &str) -> Result<i64, DecError> {
        let (n, d) = self.price_num_den();
        let t = scale(parse(s)?, n, d)?;
        i64::try_from(t).map_err(|_| DecError::TooLarge)
    }

    /// A display volume (base units) in lots.
    pub fn lots(&self, s: &str) -> Result<u64, DecError> {
        let l = scale(parse(s)?, 10u128.pow(self.base), u128::from(self.lot))?;
        u64::try_from(l).map_err(|_| DecError::TooLarge)
    }

    /// Ticks as a display price (`None`: the tick does not terminate in decimal).
    pub fn price_str(&self, ticks: i64) -> Option<String> {
        let (n, d) = self.price_num_den();
        ratio_str(u128::try_from(ticks).ok()? * d, n)
    }

    /// Lots as a display volume.
    pub fn volume_str(&self, lots: u64) -> String {
        units_str(u128::from(lots) * u128::from(self.lot), self.base)
    }

    /// Whether every price and volume of the symbol has an exact display form.
    pub fn displayable(&self) -> bool {
        let (n, d) = self.price_num_den();
        ratio_str(d, n).is_some()
    }
}

/// Minimal units of a currency with `scale` digits as a display amount.
pub fn units_str(units: u128, scale: u32) -> String {
    fmt(Dec { m: units, d: scale })
}

/// A display amount in a currency's minimal units.
pub fn units(s: &str, scale: u32) -> Result<u128, DecError> {
    self::scale(parse(s)?, 10u128.pow(scale), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn btc_krw() -> Scales {
        let c = Config::default();
        Scales::of(&c, &c.symbols[0]).unwrap()
    }

    #[test]
    fn the_default_symbols_convert_as_documented() {
        let s = btc_krw();
        // One tick is 10,000 KRW per BTC; one lot 0.0001 BTC.
        assert_eq!(s.ticks("95000000"), Ok(9500));
        assert_eq!(s.ticks("95000000.0"), Ok(9500));
        assert_eq!(s.ticks("95005000"), Err(DecError::NotMultiple));
        assert_eq!(s.ticks("9.5e7"), Ok(9500));
        // An exponent beyond 32 bits is out of range (too large), not malformed.
        assert_eq!(s.lots("1e99999999999"), Err(DecError::TooLarge));
        assert_eq!(s.lots("1e-99999999999"), Err(DecError::TooLarge));
        assert_eq!(s.ticks("1e+2147483648"), Err(DecError::TooLarge));
        assert_eq!(s.lots("1e"), Err(DecError::Syntax));
        assert_eq!(s.lots("1e+"), Err(DecError::Syntax));
        assert_eq!(s.lots("1e 5"), Err(DecError::Syntax));
        assert_eq!(s.lots("x1e99999999999"), Err(DecError::Syntax));
        assert_eq!(s.price_str(9500).as_deref(), Some("95000000"));
        assert_eq!(s.lots("0.0001"), Ok(1));
        assert_eq!(s.lots("1.5"), Ok(15000));
        assert_eq!(s.lots("0.00015"), Err(DecError::NotMultiple));
        assert_eq!(s.volume_str(15000), "1.5");
        assert_eq!(s.volume_str(0), "0");
        assert!(s.displayable());
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1,0", "0x10", "1e", "abc", " 1",
        ] {
            assert_eq!(parse(bad), Err(DecError::Syntax), "{bad:?}");
        }
        assert_eq!(units("1000", 0), Ok(1000));
        assert_eq!(units("0.5", 0), Err(DecError::NotMultiple));
        assert_eq!(units("0.00000001", 8), Ok(1));
        assert_eq!(ratio_str(1, 3), None);
        assert_eq!(ratio_str(1, 8).as_deref(), Some("0.125"));
        assert_eq!(ratio_rounded(1, 3, 8), "0.33333333");
        assert_eq!(ratio_rounded(2, 3, 8), "0.66666667");
        assert_eq!(ratio_rounded(291_030_000, 3, 8), "97010000");
        assert_eq!(ratio_rounded(291_030_001, 3, 2), "97010000.33");
        assert_eq!(ratio_rounded(5, 0, 8), "0");
    }

    fn scales() -> impl Strategy<Value = Scales> {
        (0u32..=18, 0u32..=18, 1u64..=1_000_000, 1u64..=1_000).prop_map(
            |(base, quote, lot, tick)| Scales {
                base,
                quote,
                lot,
                tick,
            },
        )
    }

    proptest! {
        // display → ticks/lots → display is the identity on valid values.
        #[test]
        fn display_ticks_display_is_the_identity(s in scales(), ticks in 0i64..=1 << 40, lots in 0u64..=1 << 40) {
            if let Some(p) = s.price_str(ticks) {
                prop_assert_eq!(s.ticks(&p), Ok(ticks));
                prop_assert_eq!(s.price_str(s.ticks(&p).unwrap()), Some(p));
            }
            let v = s.volume_str(lots);
            prop_assert_eq!(s.lots(&v), Ok(lots));
            prop_assert_eq!(s.volume_str(s.lots(&v).unwrap()), v.clone());
            // Trailing zeros and an exponent name the same value.
            prop_assert_eq!(s.lots(&format!("{}{}", v, if v.contains('.') { "000" } else { ".000" })), Ok(lots));
        }

        // Anything strictly between two consecutive lots or ticks is refused, never rounded.
        #[test]
        fn values_between_units_are_refused(s in scales(), lots in 0u64..=1 << 40, extra in 1u64..=9) {
            let v = s.volume_str(lots);
            // Append a digit beyond the base's precision: a fraction of a minimal unit.
            let finer = if v.contains('.') { format!("{v}{}{extra}", "0".repeat(s.base as usize)) }
                else { format!("{v}.{}{extra}", "0".repeat(s.base as usize)) };
            // Refused: not a whole lot (or, past 36 digits, too long to be one).
            prop_assert!(matches!(s.lots(&finer), Err(DecError::NotMultiple | DecError::TooLarge)), "{} accepted", finer);
            if s.lot > 1 {
                // One minimal unit above a whole lot is not a lot.
                let units = u128::from(lots) * u128::from(s.lot) + 1;
                prop_assert_eq!(s.lots(&units_str(units, s.base)), Err(DecError::NotMultiple));
            }
            if let Some(p) = s.price_str(2 * (lots as i64) + 1) {
                // Half a tick: (2n+1)/2 ticks.
                let (n, d) = s.price_num_den();
                if let Some(half) = ratio_str((2 * u128::from(lots) + 1) * d, 2 * n) {
                    prop_assert!(s.ticks(&half).is_err(), "{} accepted ({})", half, p);
                }
            }
        }

        // Garbage never converts.
        #[test]
        fn non_numbers_are_refused(t in "[^0-9]{1,8}") {
            prop_assert!(parse(&t).is_err());
        }
    }
}
