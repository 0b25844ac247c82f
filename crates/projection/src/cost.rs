//! The annualised total cost of a loan against the policy's cap (docs/rules.md §R5).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::Date;
use arrears_core::money::amount_str::serialize as amt;
use arrears_core::Policy;

use crate::fold::Loan;

fn rate<S: serde::Serializer>(r: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_none(),
    }
}

fn cap<S: serde::Serializer>(r: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.normalize().to_string())
}

/// The cost measure on day D of a loan folded through D.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub loan_id: Uuid,
    pub as_of: Date,
    /// I(D − 1): interest charged by the end of the previous day (installments due by then, plus
    /// interest paid ahead on later ones).
    #[serde(serialize_with = "amt")]
    pub interest: Decimal,
    /// Pen(D): penalty accrued through D (before waivers).
    #[serde(serialize_with = "amt")]
    pub penalty: Decimal,
    /// PD(D) = Σ P(y) for days y from the disbursement to D − 1.
    #[serde(serialize_with = "amt")]
    pub principal_days: Decimal,
    /// 365 × (interest + penalty) / principal_days, half away from zero to 4 places; `null`
    /// when no principal-day has passed.
    #[serde(serialize_with = "rate")]
    pub annualised: Option<Decimal>,
    #[serde(serialize_with = "cap")]
    pub cap: Decimal,
    /// 365 × (interest + penalty) > cap × principal_days (exact, not the rounded rate).
    pub over_cap: bool,
    /// The penalty day the policy's switch stopped accrual on, if it did by D.
    pub penalty_stopped_on: Option<Date>,
}

/// The cost of a loan folded through `as_of`.
pub fn cost(loan: &Loan, as_of: Date, policy: &Policy) -> Cost {
    let days = Decimal::from(365);
    let st = loan.accrual(as_of);
    let interest = match arrears_core::date::prev_day(as_of) {
        Some(prev) if prev >= loan.disbursed_on => loan.principal_and_interest_at(prev).1,
        _ => Decimal::ZERO,
    };
    let pd = loan.principal_days(as_of);
    let total = interest + st.pen;
    let cap = policy.cost_cap.annual_rate;
    Cost {
        loan_id: loan.loan_id,
        as_of,
        interest,
        penalty: st.pen,
        principal_days: pd,
        annualised: (!pd.is_zero()).then(|| {
            let mut r = (days * total / pd)
                .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
            r.rescale(4);
            r
        }),
        cap,
        over_cap: days * total > cap * pd,
        penalty_stopped_on: st.stopped,
    }
}
