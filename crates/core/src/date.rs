//! Business dates and all the date arithmetic of the workspace, in one module.
//!
//! A business date is a calendar day in the policy's time zone, 0001-01-01 ..= 9999-12-31, on the
//! wire exactly `YYYY-MM-DD`. [`BusinessDate`] is the domain type; the functions below do the
//! arithmetic on the `NaiveDate` the event types still carry ([`crate::event::Date`]), and the
//! type's methods are the same functions, so there is one implementation of each.
//!
//! Every step stays inside chrono's range for dates the ledger accepts (≤ 9999-12-31 plus a few
//! centuries of days), so the day steps panic only on a broken invariant, never on input.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The last business date the ledger represents (dates print as four-digit years).
pub fn last_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date")
}

/// Parse `YYYY-MM-DD` exactly: four-digit year 0001–9999, two-digit month and day.
pub fn parse(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    (d >= NaiveDate::from_ymd_opt(1, 1, 1)?).then_some(d)
}

/// `d` plus `n` days.
pub fn add_days(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_days(Days::new(n as u64))
        .expect("dates stay far below chrono's range")
}

/// `d` plus `n` days, `n` of either sign.
pub fn plus_days(d: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        d.checked_add_days(Days::new(n as u64))
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
    }
    .expect("dates stay far inside chrono's range")
}

/// `d` minus `n` days, or `None` before chrono's first date.
pub fn sub_days(d: NaiveDate, n: u32) -> Option<NaiveDate> {
    d.checked_sub_days(Days::new(n as u64))
}

/// The day after `d`.
pub fn next_day(d: NaiveDate) -> NaiveDate {
    add_days(d, 1)
}

/// The day before `d`, or `None` before chrono's first date.
pub fn prev_day(d: NaiveDate) -> Option<NaiveDate> {
    d.pred_opt()
}

/// Days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

/// `on` plus `k` calendar months, the day clamped to the end of a shorter month
/// (2024-01-31 + 1 month = 2024-02-29); `None` past [`last_date`].
pub fn add_months(on: NaiveDate, k: u32) -> Option<NaiveDate> {
    on.checked_add_months(Months::new(k))
        .filter(|d| *d <= last_date())
}

/// The last day of `d`'s month.
pub fn month_end(d: NaiveDate) -> NaiveDate {
    let first = d.with_day(1).expect("every month has a first day");
    first
        .checked_add_months(Months::new(1))
        .and_then(|n| n.pred_opt())
        .unwrap_or_else(last_date)
}

/// Days from 0001-01-01 (CE): how the binary formats (event codec, snapshots) store a date.
pub fn days_from_ce(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// The inverse of [`days_from_ce`]; `None` outside chrono's range.
///
/// Decoding a store turns millions of day numbers into dates, nearly all within a few years of
/// each other, and chrono's conversion (a 400-year cycle, then the ordinal) is the decoders'
/// dearest step for a date. So each thread keeps the last date seen for each day number modulo
/// 1,024: any 2.8 years of dates fit without a collision, and a hit is an array read.
pub fn from_days_from_ce(n: i32) -> Option<NaiveDate> {
    const SLOTS: usize = 1024;
    thread_local! {
        static SEEN: std::cell::RefCell<[(i32, NaiveDate); SLOTS]> =
            const { std::cell::RefCell::new([(i32::MIN, NaiveDate::MIN); SLOTS]) };
    }
    if n == i32::MIN {
        // The empty slots' key; out of chrono's range anyway.
        return NaiveDate::from_num_days_from_ce_opt(n);
    }
    let slot = n.rem_euclid(SLOTS as i32) as usize;
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if seen[slot].0 == n {
            return Some(seen[slot].1);
        }
        let d = NaiveDate::from_num_days_from_ce_opt(n)?;
        seen[slot] = (n, d);
        Some(d)
    })
}

/// A business date (SPEC §1): `YYYY-MM-DD`, 0001-01-01 ..= 9999-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct BusinessDate(NaiveDate);

impl BusinessDate {
    pub const fn new(d: NaiveDate) -> Self {
        BusinessDate(d)
    }
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(y, m, d).map(BusinessDate)
    }
    pub const fn naive(self) -> NaiveDate {
        self.0
    }
    pub fn add_days(self, n: u32) -> Self {
        BusinessDate(add_days(self.0, n))
    }
    pub fn plus_days(self, n: i64) -> Self {
        BusinessDate(plus_days(self.0, n))
    }
    pub fn sub_days(self, n: u32) -> Option<Self> {
        sub_days(self.0, n).map(BusinessDate)
    }
    pub fn next_day(self) -> Self {
        BusinessDate(next_day(self.0))
    }
    pub fn prev_day(self) -> Option<Self> {
        prev_day(self.0).map(BusinessDate)
    }
    /// Days from `self` to `to`.
    pub fn days_until(self, to: BusinessDate) -> i64 {
        days_between(self.0, to.0)
    }
    pub fn add_months(self, k: u32) -> Option<Self> {
        add_months(self.0, k).map(BusinessDate)
    }
    /// The first day of this date's month.
    pub fn month_start(self) -> Self {
        use chrono::Datelike;
        BusinessDate(self.0.with_day(1).expect("day 1 exists"))
    }
    pub fn month_end(self) -> Self {
        BusinessDate(month_end(self.0))
    }
}

impl From<NaiveDate> for BusinessDate {
    fn from(d: NaiveDate) -> Self {
        BusinessDate(d)
    }
}

impl From<BusinessDate> for NaiveDate {
    fn from(d: BusinessDate) -> Self {
        d.0
    }
}

impl fmt::Display for BusinessDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chrono prints `%Y-%m-%d` for NaiveDate; four digits for every accepted year.
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a string is not a business date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotADate;

impl fmt::Display for NotADate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "is not a date (YYYY-MM-DD)")
    }
}

impl std::error::Error for NotADate {}

impl FromStr for BusinessDate {
    type Err = NotADate;
    fn from_str(s: &str) -> Result<Self, NotADate> {
        parse(s).map(BusinessDate).ok_or(NotADate)
    }
}

impl Serialize for BusinessDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BusinessDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_convert_as_chrono_does_whatever_the_memo_holds() {
        // Every day number twice, in an order that makes slots collide (n and n ± 1024), the
        // edges of chrono's range, and the empty slots' key.
        let mut ns: Vec<i32> = (-3000..3000).chain(730_000..740_000).collect();
        ns.extend(ns.clone().iter().rev().map(|n| n + 1024));
        ns.extend([i32::MIN, i32::MAX, -1, 0, 1, 3_652_059, 3_652_060]);
        let min = NaiveDate::MIN.num_days_from_ce();
        let max = NaiveDate::MAX.num_days_from_ce();
        ns.extend([min - 1, min, max, max + 1]);
        for n in ns {
            assert_eq!(
                from_days_from_ce(n),
                NaiveDate::from_num_days_from_ce_opt(n),
                "{n}"
            );
            if let Some(d) = from_days_from_ce(n) {
                assert_eq!(days_from_ce(d), n);
            }
        }
    }

    fn day(s: &str) -> BusinessDate {
        s.parse().unwrap()
    }

    #[test]
    fn wire_form_is_strict() {
        assert_eq!(day("2024-02-29").to_string(), "2024-02-29");
        for bad in [
            "2024-2-29",
            "2023-02-29",
            "24-02-29",
            "0000-01-01",
            "2024-02-29T00",
            "",
        ] {
            assert_eq!(bad.parse::<BusinessDate>(), Err(NotADate), "{bad}");
        }
        let json = serde_json::to_string(&day("0001-01-01")).unwrap();
        assert_eq!(json, "\"0001-01-01\"");
        assert_eq!(
            serde_json::from_str::<BusinessDate>(&json).unwrap(),
            day("0001-01-01")
        );
        assert!(serde_json::from_str::<BusinessDate>("\"2024-13-01\"").is_err());
    }

    #[test]
    fn arithmetic() {
        let d = day("2024-01-31");
        assert_eq!(d.next_day(), day("2024-02-01"));
        assert_eq!(d.prev_day(), Some(day("2024-01-30")));
        assert_eq!(d.add_days(30), day("2024-03-01"));
        assert_eq!(d.plus_days(-31), day("2023-12-31"));
        assert_eq!(d.days_until(day("2024-03-01")), 30);
        assert_eq!(day("2024-03-01").days_until(d), -30);
        assert_eq!(d.add_months(1), Some(day("2024-02-29")));
        assert_eq!(day("2023-01-31").add_months(1), Some(day("2023-02-28")));
        assert_eq!(day("9999-12-01").add_months(1), None);
        assert_eq!(day("2024-02-10").month_end(), day("2024-02-29"));
        assert_eq!(day("9999-12-05").month_end(), day("9999-12-31"));
        assert_eq!(from_days_from_ce(days_from_ce(d.naive())), Some(d.naive()));
        assert_eq!(sub_days(NaiveDate::MIN, 1), None);
    }
}
