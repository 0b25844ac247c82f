//! The credit-report (征信) history of a loan (docs/rules.md §R4): one status a month, from the
//! disbursement month to the month of the as-of date, in the convention of the PBoC personal
//! credit report, evaluated at each month's end with the policy's reporting tolerances.
//!
//! One pass: the loan is folded event by event and projected at each month end, so the cost is
//! O(events + months × installments).

use arrears_core::date::{month_end, next_day};
use chrono::Datelike;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::{Body, Date, Event};
use arrears_core::Policy;

use crate::fold::Loan;

/// One month of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    /// The day it was evaluated: the month's last day, or the as-of date in its month.
    pub on: Date,
    /// `N`, `1`–`7`, `C` or `*`.
    pub status: char,
    /// The days overdue as reported (0 when nothing is reported overdue).
    pub days_overdue: i64,
}

/// The history of one loan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditHistory {
    pub loan_id: Uuid,
    pub as_of: Date,
    pub policy: String,
    /// The statuses, oldest first, one character a month.
    pub history: String,
    pub months: Vec<Month>,
}

/// The status at the end of day `e` of a loan folded through `e`; `first` is the first day of
/// the month being evaluated.
fn status(loan: &Loan, e: Date, first: Date, policy: &Policy) -> (char, i64) {
    let p = crate::project(loan, e, None, policy);
    if p.status == "settled" {
        return ('C', 0);
    }
    let g = loan.grace_days.max(policy.credit_report.grace_days) as i64;
    let live = || loan.installments.iter().filter(|i| !i.removed);
    let mut amount = Decimal::ZERO;
    let mut days = 0i64;
    for i in live().filter(|i| i.is_unpaid() && i.due_on < e) {
        let d = (e - i.due_on).num_days();
        if d > g {
            amount += i.unpaid_principal() + i.unpaid_interest();
            days = days.max(d);
        }
    }
    if days > 0 && amount > policy.credit_report.tolerance {
        let digit = ((days + 29) / 30).min(7) as u32;
        return (char::from_digit(digit, 10).expect("1..=7"), days);
    }
    // `*` only when nothing fell due this month, nothing was paid, and nothing is past due (an
    // amount past due but inside the tolerances is reported normal, `N`).
    let due_in_month = live().any(|i| i.due_on >= first && i.due_on <= e);
    let past_due = live().any(|i| i.is_unpaid() && i.due_on < e);
    let paid_in_month = loan.allocations.iter().any(|a| a.on >= first && a.on <= e);
    (
        if due_in_month || past_due || paid_in_month {
            'N'
        } else {
            '*'
        },
        0,
    )
}

/// The history as of `as_of` (every known event dated on or before it); `None` when no
/// disbursement counts.
pub fn credit_history(events: &[Event], as_of: Date, policy: &Policy) -> Option<CreditHistory> {
    let counted = crate::counted(events, as_of, None);
    let (first, rest) = counted.split_first()?;
    let Body::Disbursed(d) = &first.body else {
        return None;
    };
    let mut loan = Loan::open_under(first, d, policy);
    let mut next = 0;
    let mut months = Vec::new();
    let mut start = d.on.with_day(1).expect("day 1 exists");
    while start <= as_of {
        let e = month_end(start).min(as_of);
        while next < rest.len() && rest[next].business_date() <= e {
            loan.apply(rest[next], policy);
            next += 1;
        }
        let (status, days_overdue) = status(&loan, e, start, policy);
        months.push(Month {
            month: start.format("%Y-%m").to_string(),
            on: e,
            status,
            days_overdue,
        });
        start = next_day(month_end(start));
    }
    Some(CreditHistory {
        loan_id: first.loan_id,
        as_of,
        policy: policy.name.clone(),
        history: months.iter().map(|m| m.status).collect(),
        months,
    })
}
