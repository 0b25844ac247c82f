//! Money and rates: parsing from the wire grammar of SPEC §8 and the one place cents are rounded.
//!
//! Every cent value the ledger produces goes through [`round_cents`]. Nothing else in the
//! workspace calls `round*` on a `Decimal`.

use rust_decimal::{Decimal, RoundingStrategy};

/// The largest amount the ledger accepts: 10^16 − 0.01. Sixteen integer digits leave twelve
/// digits of `Decimal`'s 28 for rates and day counts, so a 10^15 principal carrying a century of
/// penalty (≈ 3.7·10^17) is computed exactly and nothing can overflow.
pub const MAX_INTEGER_DIGITS: usize = 16;
/// Rates carry at most this many fractional digits (`"0.0005"` has 4).
pub const MAX_RATE_FRACTION_DIGITS: usize = 18;
/// Rates carry at most this many integer digits.
pub const MAX_RATE_INTEGER_DIGITS: usize = 6;

/// Round to cents, half away from zero (四舍五入) — the one rounding rule of SPEC §1.
///
/// Worked example: the daily penalty on a base of 1015.00 at 0.0005 × 1.5 is
/// 1015.00 × 0.00075 = 0.76125 → **0.76**; 0.765 → **0.77**; −0.765 → **−0.77**
/// (`RoundingStrategy::MidpointAwayFromZero`, not banker's rounding, which would give 0.76).
/// The result always has scale 2, so it prints as `"0.77"`, `"1000.00"`.
pub fn round_cents(x: Decimal) -> Decimal {
    let mut r = x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    r
}

/// The largest whole-cent amount p ≥ 0 with `365 × p ≤ h`: the penalty left under the cost cap
/// when `h` is the cap's headroom scaled by 365 (docs/rules.md §R5). Exact: the candidate from the
/// (rounded) division is checked by multiplication and corrected. The only other place cents are
/// produced besides [`round_cents`]; it rounds down so the cap is never exceeded.
pub fn cents_within(h: Decimal) -> Decimal {
    let days = Decimal::from(365);
    if h <= Decimal::ZERO {
        return Decimal::new(0, 2);
    }
    let cent = Decimal::new(1, 2);
    let mut p = (h / days).round_dp_with_strategy(2, RoundingStrategy::ToZero);
    while p > Decimal::ZERO && days * p > h {
        p -= cent;
    }
    while days * (p + cent) <= h {
        p += cent;
    }
    p.rescale(2);
    p
}

/// Why a string is not an amount or a rate. The field name is attached by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberError {
    /// Matches the grammar but is below zero.
    Negative,
    /// `"10.000"`: more than two decimal places.
    TooManyDecimals,
    /// Not `-?[0-9]+(\.[0-9]{1,2})?` (amounts) or `[0-9]+(\.[0-9]+)?` (rates).
    NotANumber,
    /// More digits than the ledger computes exactly with.
    TooLarge,
}

impl std::fmt::Display for NumberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberError::Negative => write!(f, "must not be negative"),
            NumberError::TooManyDecimals => {
                write!(f, "has more than 2 decimal places (amounts are in cents)")
            }
            NumberError::NotANumber => write!(f, "is not a decimal number"),
            NumberError::TooLarge => write!(f, "has more digits than the ledger accepts"),
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parse an amount written as `-?[0-9]+(\.[0-9]{1,2})?` into a `Decimal` of scale 2.
/// Negative amounts match the grammar but are rejected: no amount on the wire may be negative.
pub fn parse_amount(s: &str) -> Result<Decimal, NumberError> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if !all_digits(int) {
        return Err(NumberError::NotANumber);
    }
    if let Some(f) = frac {
        if !all_digits(f) {
            return Err(NumberError::NotANumber);
        }
        if f.len() > 2 {
            return Err(NumberError::TooManyDecimals);
        }
    }
    if negative {
        return Err(NumberError::Negative);
    }
    if int.trim_start_matches('0').len() > MAX_INTEGER_DIGITS {
        return Err(NumberError::TooLarge);
    }
    let mut d: Decimal = body.parse().map_err(|_| NumberError::NotANumber)?;
    d.rescale(2);
    Ok(d)
}

/// Parse a rate written as `[0-9]+(\.[0-9]+)?`. The scale is kept as written.
pub fn parse_rate(s: &str) -> Result<Decimal, NumberError> {
    if let Some(rest) = s.strip_prefix('-') {
        if parse_rate(rest).is_ok() {
            return Err(NumberError::Negative);
        }
        return Err(NumberError::NotANumber);
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(NumberError::NotANumber);
    }
    if int.trim_start_matches('0').len() > MAX_RATE_INTEGER_DIGITS
        || frac.is_some_and(|f| f.len() > MAX_RATE_FRACTION_DIGITS)
    {
        return Err(NumberError::TooLarge);
    }
    s.parse().map_err(|_| NumberError::NotANumber)
}

/// Format an amount with exactly two decimals (`"7.60"`).
pub fn fmt_amount(d: impl Into<Decimal>) -> String {
    let mut d: Decimal = d.into();
    d.rescale(2);
    d.to_string()
}

/// serde adapter: amounts are JSON strings with two decimals.
pub mod amount_str {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        // Formatted straight into the output: no intermediate String per amount.
        let mut d = *d;
        d.rescale(2);
        s.collect_str(&d)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_amount(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: a `Decimal` of scale 2, on the wire a string with two decimals
/// (`"7.60"`). Made only by parsing the amount grammar, from whole cents, or by rounding
/// ([`Money::round`], the one rounding rule); sums and differences of amounts stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::from_parts(0, 0, 0, false, 2));

    /// An amount the ledger already holds in cents (scale ≤ 2, from the amount grammar or a
    /// rounding), at exactly scale 2. Not a rounding: digits beyond cents are a bug
    /// (debug-asserted); use [`Money::round`] to round.
    #[inline]
    pub fn new(d: Decimal) -> Money {
        if d.scale() == 2 {
            return Money(d);
        }
        if d.is_zero() {
            // The sums the fold and the view start from (`Decimal::ZERO`, scale 0): what
            // `rescale(2)` gives (the sign kept), without its loop.
            return Money(Decimal::from_parts(0, 0, 0, d.is_sign_negative(), 2));
        }
        let mut m = d;
        m.rescale(2);
        debug_assert_eq!(m, d, "{d} is not a whole number of cents");
        Money(m)
    }
    /// `cents` / 100.
    pub fn from_cents(cents: i64) -> Money {
        Money(Decimal::new(cents, 2))
    }
    /// Round any value to cents, half away from zero ([`round_cents`]).
    pub fn round(x: Decimal) -> Money {
        Money(round_cents(x))
    }
    /// The charge of `rate` on this amount, rounded to cents: `round(self × rate)` — the daily
    /// penalty `round(B × rate)` of SPEC §3.
    pub fn charge(self, rate: Rate) -> Money {
        Money::round(self.0 * rate.0)
    }
    /// This amount `n` times (a daily charge over `n` days): exact, no rounding.
    pub fn times(self, n: i64) -> Money {
        Money(self.0 * Decimal::from(n))
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
    pub const fn decimal(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Money {
    type Error = NumberError;
    /// A decimal with at most two decimal places (rescaled to exactly two).
    fn try_from(d: Decimal) -> Result<Money, NumberError> {
        if d.scale() > 2 && d.normalize().scale() > 2 {
            return Err(NumberError::TooManyDecimals);
        }
        let mut d = d;
        d.rescale(2);
        Ok(Money(d))
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        m.0
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, o: Money) -> Money {
        Money(self.0 - o.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        self.0 += o.0;
    }
}

impl std::ops::SubAssign for Money {
    fn sub_assign(&mut self, o: Money) {
        self.0 -= o.0;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(it: I) -> Money {
        it.fold(Money::ZERO, |a, b| a + b)
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Money {
    type Err = NumberError;
    /// The amount grammar (`parse_amount`): no sign, at most two decimals.
    fn from_str(s: &str) -> Result<Money, NumberError> {
        parse_amount(s).map(Money)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A rate (per day, a multiplier, an annual cap): a non-negative `Decimal` kept at the scale it
/// was written with, on the wire a string (`"0.0005"`). Never rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Rate(Decimal);

impl Rate {
    pub const ZERO: Rate = Rate(Decimal::ZERO);
    /// A rate the ledger already holds (parsed by the rate grammar or a policy), kept at its
    /// scale.
    pub const fn new(d: Decimal) -> Rate {
        Rate(d)
    }
    pub const fn decimal(self) -> Decimal {
        self.0
    }
    /// One rate applied on top of another (`daily_rate × penalty_multiplier`): exact.
    pub fn times(self, o: Rate) -> Rate {
        Rate(self.0 * o.0)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Rate {
    type Err = NumberError;
    /// The rate grammar (`parse_rate`).
    fn from_str(s: &str) -> Result<Rate, NumberError> {
        parse_rate(s).map(Rate)
    }
}

impl From<Rate> for Decimal {
    fn from(r: Rate) -> Decimal {
        r.0
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn new_gives_what_rescale_gives_for_zeros() {
        for z in [
            Decimal::ZERO,
            Decimal::from_parts(0, 0, 0, true, 0),
            d("0.0"),
            Decimal::from_parts(0, 0, 0, true, 1),
            d("0.00"),
        ] {
            let mut want = z;
            want.rescale(2);
            let got = Money::new(z).decimal();
            assert_eq!(got.serialize(), want.serialize(), "{z:?}");
        }
        assert_eq!(Money::new(Decimal::ZERO).to_string(), "0.00");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round_cents(d("0.76125")).to_string(), "0.76");
        assert_eq!(round_cents(d("0.765")).to_string(), "0.77");
        assert_eq!(round_cents(d("0.775")).to_string(), "0.78");
        assert_eq!(round_cents(d("-0.765")).to_string(), "-0.77");
        assert_eq!(round_cents(d("1000")).to_string(), "1000.00");
        assert_eq!(round_cents(d("0.004999")).to_string(), "0.00");
    }

    #[test]
    fn amount_grammar() {
        assert_eq!(parse_amount("1000.00").unwrap().to_string(), "1000.00");
        assert_eq!(parse_amount("5").unwrap().to_string(), "5.00");
        assert_eq!(parse_amount("0.5").unwrap().to_string(), "0.50");
        assert_eq!(parse_amount("10.000"), Err(NumberError::TooManyDecimals));
        assert_eq!(parse_amount(".5"), Err(NumberError::NotANumber));
        assert_eq!(parse_amount("+5"), Err(NumberError::NotANumber));
        assert_eq!(parse_amount("1e3"), Err(NumberError::NotANumber));
        assert_eq!(parse_amount("5."), Err(NumberError::NotANumber));
        assert_eq!(parse_amount(""), Err(NumberError::NotANumber));
        assert_eq!(parse_amount("-1.00"), Err(NumberError::Negative));
        assert_eq!(parse_amount("--1"), Err(NumberError::NotANumber));
        assert_eq!(parse_amount("١٢"), Err(NumberError::NotANumber));
        assert!(parse_amount("9999999999999999.99").is_ok());
        assert_eq!(
            parse_amount("10000000000000000"),
            Err(NumberError::TooLarge)
        );
    }

    #[test]
    fn rate_grammar() {
        assert_eq!(parse_rate("0.0005").unwrap().to_string(), "0.0005");
        assert_eq!(parse_rate("1").unwrap().to_string(), "1");
        assert_eq!(parse_rate("1.").unwrap_err(), NumberError::NotANumber);
        assert_eq!(parse_rate(".1").unwrap_err(), NumberError::NotANumber);
        assert_eq!(parse_rate("-0.1").unwrap_err(), NumberError::Negative);
        assert_eq!(parse_rate("1e-3").unwrap_err(), NumberError::NotANumber);
        assert_eq!(
            parse_rate("0.0000000000000000000000000001").unwrap_err(),
            NumberError::TooLarge
        );
    }

    #[test]
    fn money_type() {
        let m: Money = "1015".parse().unwrap();
        assert_eq!(m.to_string(), "1015.00");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert_eq!(Money::from_cents(-77).to_string(), "-0.77");
        let rate: Rate = "0.0005".parse().unwrap();
        let multiplier: Rate = "1.5".parse().unwrap();
        assert_eq!(m.charge(rate.times(multiplier)).to_string(), "0.76");
        assert_eq!(m.charge(rate).times(30).to_string(), "15.30");
        assert_eq!((m - Money::from_cents(15)).to_string(), "1014.85");
        let sum: Money = [m, m, Money::from_cents(1)].into_iter().sum();
        assert_eq!(sum.to_string(), "2030.01");
        assert_eq!("10.000".parse::<Money>(), Err(NumberError::TooManyDecimals));
        assert_eq!(Money::try_from(d("0.5")).unwrap().to_string(), "0.50");
        assert_eq!(Money::try_from(d("0.500")).unwrap().to_string(), "0.50");
        assert_eq!(
            Money::try_from(d("0.505")),
            Err(NumberError::TooManyDecimals)
        );
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"1015.00\"");
        assert_eq!(
            serde_json::from_str::<Money>("\"7.6\"")
                .unwrap()
                .to_string(),
            "7.60"
        );
        assert!(serde_json::from_str::<Money>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Money>("7.6").is_err());
    }

    #[test]
    fn rate_type() {
        let r: Rate = "0.00050".parse().unwrap();
        assert_eq!(r.to_string(), "0.00050");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"0.00050\"");
        assert_eq!(
            serde_json::from_str::<Rate>("\"0.1\"").unwrap().to_string(),
            "0.1"
        );
        assert!(serde_json::from_str::<Rate>("\"-0.1\"").is_err());
    }
}
