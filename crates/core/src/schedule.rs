//! Schedule computation (SPEC §2.1, §8): bullet, 等额本息 (equal_installment) and 等额本金
//! (equal_principal). Every amount goes through [`round_cents`]; `A` is not rounded.

use rust_decimal::Decimal;

use crate::event::{Date, Method, Repayment, ScheduledInstallment, Terms};
use crate::money::round_cents;

pub use crate::date::{add_months, last_date};

/// Why a schedule cannot be computed for these terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a due date would fall after 9999-12-31")]
    PastLastDate,
    #[error("the principal is too small to split into {0} installments of whole cents")]
    PrincipalTooSmall(u32),
    #[error("the interest arithmetic overflows; rate or term is out of range")]
    Overflow,
}

/// Compute the schedule for `principal` disbursed `on` under `terms`.
pub fn compute(
    on: Date,
    principal: Decimal,
    terms: &Terms,
) -> Result<Vec<ScheduledInstallment>, ScheduleError> {
    match terms.repayment {
        Repayment::Bullet { days } => {
            let due_on = Some(crate::date::add_days(on, days))
                .filter(|d| *d <= last_date())
                .ok_or(ScheduleError::PastLastDate)?;
            let interest = principal
                .checked_mul(terms.daily_rate)
                .and_then(|x| x.checked_mul(Decimal::from(days)))
                .ok_or(ScheduleError::Overflow)?;
            Ok(vec![ScheduledInstallment {
                n: 1,
                due_on,
                principal,
                interest: round_cents(interest),
            }])
        }
        Repayment::Installments { count, method } => {
            installments(on, principal, terms.daily_rate, count, method)
        }
    }
}

fn installments(
    on: Date,
    principal: Decimal,
    daily_rate: Decimal,
    count: u32,
    method: Method,
) -> Result<Vec<ScheduledInstallment>, ScheduleError> {
    let n = Decimal::from(count);
    // Monthly rate r = daily_rate × 30.
    let r = daily_rate
        .checked_mul(Decimal::from(30))
        .ok_or(ScheduleError::Overflow)?;
    let payment_a = match method {
        Method::EqualPrincipal => None,
        Method::EqualInstallment if r.is_zero() => Some(principal / n),
        Method::EqualInstallment => {
            // A = P·r·(1+r)^N / ((1+r)^N − 1), unrounded.
            let mut growth = Decimal::ONE;
            let one_r = Decimal::ONE + r;
            for _ in 0..count {
                growth = growth.checked_mul(one_r).ok_or(ScheduleError::Overflow)?;
            }
            let num = principal
                .checked_mul(r)
                .and_then(|x| x.checked_mul(growth))
                .ok_or(ScheduleError::Overflow)?;
            Some(
                num.checked_div(growth - Decimal::ONE)
                    .ok_or(ScheduleError::Overflow)?,
            )
        }
    };
    let mut out = Vec::with_capacity(count as usize);
    let mut owed = principal; // O_k: principal still owed before installment k
    for k in 1..=count {
        let due_on = add_months(on, k).ok_or(ScheduleError::PastLastDate)?;
        let interest = round_cents(owed.checked_mul(r).ok_or(ScheduleError::Overflow)?);
        let part = if k == count {
            owed
        } else {
            match payment_a {
                None => round_cents(principal / n),
                Some(a) => round_cents(a - interest),
            }
        };
        if part.is_sign_negative() || part > owed {
            return Err(ScheduleError::PrincipalTooSmall(count));
        }
        out.push(ScheduledInstallment {
            n: k,
            due_on,
            principal: round_cents(part),
            interest,
        });
        owed -= part;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn date(s: &str) -> Date {
        Date::from_str(s).unwrap()
    }
    fn terms(rate: &str, repayment: Repayment) -> Terms {
        Terms {
            daily_rate: d(rate),
            penalty_multiplier: d("1.5"),
            grace_days: 0,
            compound: true,
            repayment,
        }
    }
    fn rows(s: &[ScheduledInstallment]) -> Vec<(u32, String, String, String)> {
        s.iter()
            .map(|i| {
                (
                    i.n,
                    i.due_on.to_string(),
                    i.principal.to_string(),
                    i.interest.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn bullet_spec_example() {
        let s = compute(
            date("2024-01-01"),
            d("1000.00"),
            &terms("0.0005", Repayment::Bullet { days: 30 }),
        )
        .unwrap();
        assert_eq!(
            rows(&s),
            vec![(1, "2024-01-31".into(), "1000.00".into(), "15.00".into())]
        );
    }

    #[test]
    fn bullet_interest_rounds_half_away() {
        // 333.33 × 0.0005 × 7 = 1.166655 → 1.17
        let s = compute(
            date("2024-03-01"),
            d("333.33"),
            &terms("0.0005", Repayment::Bullet { days: 7 }),
        )
        .unwrap();
        assert_eq!(
            rows(&s),
            vec![(1, "2024-03-08".into(), "333.33".into(), "1.17".into())]
        );
    }

    #[test]
    fn month_end_clamps() {
        assert_eq!(add_months(date("2024-01-31"), 1), Some(date("2024-02-29")));
        assert_eq!(add_months(date("2023-01-31"), 1), Some(date("2023-02-28")));
        assert_eq!(add_months(date("2024-01-31"), 2), Some(date("2024-03-31")));
        assert_eq!(add_months(date("2024-01-31"), 3), Some(date("2024-04-30")));
    }

    #[test]
    fn equal_principal_three_months() {
        // P = 1000.00, r = 0.0005 × 30 = 0.015; 1000/3 = 333.333… → 333.33
        // k=1: O=1000.00, interest 15.00; k=2: O=666.67, interest 10.00005 → 10.00;
        // k=3: O=333.34, interest 5.0001 → 5.00, principal takes the remainder 333.34.
        let t = terms(
            "0.0005",
            Repayment::Installments {
                count: 3,
                method: Method::EqualPrincipal,
            },
        );
        let s = compute(date("2024-01-31"), d("1000.00"), &t).unwrap();
        assert_eq!(
            rows(&s),
            vec![
                (1, "2024-02-29".into(), "333.33".into(), "15.00".into()),
                (2, "2024-03-31".into(), "333.33".into(), "10.00".into()),
                (3, "2024-04-30".into(), "333.34".into(), "5.00".into()),
            ]
        );
    }

    #[test]
    fn equal_installment_three_months() {
        // r = 0.015; (1.015)^3 = 1.045678375; A = 1000 × 0.015 × 1.045678375 / 0.045678375
        //   = 15.685175625 / 0.045678375 = 343.3829...
        // k=1: interest 15.00, principal round(343.3829 − 15.00) = 328.38, O → 671.62
        // k=2: interest round(671.62 × 0.015 = 10.0743) = 10.07, principal round(333.3129) = 333.31
        // k=3: O = 338.31, interest round(5.07465) = 5.07, principal 338.31 (remainder)
        let t = terms(
            "0.0005",
            Repayment::Installments {
                count: 3,
                method: Method::EqualInstallment,
            },
        );
        let s = compute(date("2024-01-15"), d("1000.00"), &t).unwrap();
        assert_eq!(
            rows(&s),
            vec![
                (1, "2024-02-15".into(), "328.38".into(), "15.00".into()),
                (2, "2024-03-15".into(), "333.31".into(), "10.07".into()),
                (3, "2024-04-15".into(), "338.31".into(), "5.07".into()),
            ]
        );
    }

    #[test]
    fn zero_rate_loan() {
        // A = P / N = 100.00 / 3 = 33.333… → 33.33, 33.33, remainder 33.34; no interest.
        let t = terms(
            "0",
            Repayment::Installments {
                count: 3,
                method: Method::EqualInstallment,
            },
        );
        let s = compute(date("2024-05-10"), d("100.00"), &t).unwrap();
        assert_eq!(
            rows(&s),
            vec![
                (1, "2024-06-10".into(), "33.33".into(), "0.00".into()),
                (2, "2024-07-10".into(), "33.33".into(), "0.00".into()),
                (3, "2024-08-10".into(), "33.34".into(), "0.00".into()),
            ]
        );
        let b = compute(
            date("2024-05-10"),
            d("100.00"),
            &terms("0", Repayment::Bullet { days: 14 }),
        )
        .unwrap();
        assert_eq!(
            rows(&b),
            vec![(1, "2024-05-24".into(), "100.00".into(), "0.00".into())]
        );
    }

    #[test]
    fn principal_too_small_is_refused() {
        // 0.06 / 12 = 0.005 → 0.01 each; eleven of them exceed 0.06.
        let t = terms(
            "0",
            Repayment::Installments {
                count: 12,
                method: Method::EqualPrincipal,
            },
        );
        assert_eq!(
            compute(date("2024-01-01"), d("0.06"), &t),
            Err(ScheduleError::PrincipalTooSmall(12))
        );
    }

    #[test]
    fn due_dates_past_9999_are_refused() {
        let t = terms("0.0005", Repayment::Bullet { days: 30 });
        assert_eq!(
            compute(date("9999-12-15"), d("1.00"), &t),
            Err(ScheduleError::PastLastDate)
        );
    }
}
