//! Stateless validation that needs the policy: the APR cap, the schedule (computed when omitted,
//! checked when supplied), and date ranges. Stateful rules (a `missed` must be unpaid, a waiver
//! must not exceed what is owed, …) belong to the projection crate's `decide`.

use rust_decimal::Decimal;

use crate::event::{Body, Disbursed, NewEvent};
use crate::money::Money;
use crate::parse::{InputError, Invalid};
use crate::policy::Policy;
use crate::schedule;

/// Check `ev` against the policy and fill in defaults (the computed schedule). After this the
/// body is exactly what is stored.
pub fn validate(ev: &mut NewEvent, policy: &Policy) -> Result<(), InputError> {
    if let Body::Disbursed(d) = &mut ev.body {
        validate_disbursed(d, policy)?;
    }
    Ok(())
}

fn validate_disbursed(d: &mut Disbursed, policy: &Policy) -> Result<(), InputError> {
    let apr = d.terms.penalty_rate_daily().decimal() * Decimal::from(365);
    if apr > policy.apr_cap {
        return Err(InputError::new(
            "terms.daily_rate",
            Invalid::AprAboveCap {
                apr: apr.normalize(),
                cap: policy.apr_cap,
            },
        ));
    }
    if d.schedule.is_empty() {
        d.schedule = schedule::compute(d.on, d.principal, &d.terms)
            .map_err(|e| InputError::new("terms.repayment", Invalid::BadSchedule(e.to_string())))?;
        return Ok(());
    }
    let mut sum = Money::ZERO;
    let mut prev = d.on;
    for (i, inst) in d.schedule.iter().enumerate() {
        let want = i as u32 + 1;
        if inst.n != want {
            return Err(InputError::new(
                format!("schedule[{i}].n"),
                Invalid::BadSchedule(format!(
                    "is {}, expected {want} (installments are numbered 1..N)",
                    inst.n
                )),
            ));
        }
        if inst.due_on <= prev {
            let what = if i == 0 {
                "the disbursement date"
            } else {
                "the previous due date"
            };
            return Err(InputError::new(
                format!("schedule[{i}].due_on"),
                Invalid::BadSchedule(format!("{} is not after {what} {prev}", inst.due_on)),
            ));
        }
        prev = inst.due_on;
        sum += inst.principal;
    }
    if sum != d.principal {
        return Err(InputError::new(
            "schedule",
            Invalid::BadSchedule(format!(
                "installment principals sum to {}, not the principal {}",
                sum, d.principal
            )),
        ));
    }
    Ok(())
}
