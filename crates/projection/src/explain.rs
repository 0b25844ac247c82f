//! The audit trail: every accrual stretch and every payment's allocation, so an auditor can
//! re-add every cent by hand (Σ stretch subtotals = `penalty_accrued`).

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::Date;

use crate::fold::{Loan, Stretch};

use arrears_core::money::amount_str::serialize as amt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StretchView {
    pub from: Date,
    pub to: Date,
    pub days: i64,
    #[serde(serialize_with = "amt")]
    pub base: Decimal,
    #[serde(serialize_with = "amt")]
    pub daily_penalty: Decimal,
    #[serde(serialize_with = "amt")]
    pub subtotal: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartView {
    pub installment: u32,
    #[serde(serialize_with = "amt")]
    pub interest: Decimal,
    #[serde(serialize_with = "amt")]
    pub principal: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    pub seq: u64,
    pub on: Date,
    #[serde(serialize_with = "amt")]
    pub amount: Decimal,
    #[serde(serialize_with = "amt")]
    pub penalty: Decimal,
    pub installments: Vec<PartView>,
    #[serde(serialize_with = "amt")]
    pub overpaid: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionView {
    pub seq: u64,
    pub agreed_on: Date,
    #[serde(serialize_with = "amt")]
    pub waived_penalty: Decimal,
    #[serde(serialize_with = "amt")]
    pub waived_interest: Decimal,
    pub stage_before: crate::Stage,
}

/// The audit trail of one loan as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explain {
    pub loan_id: Uuid,
    pub as_of: Date,
    /// daily_rate × penalty_multiplier: each stretch's daily penalty is round(base × this).
    pub penalty_rate_daily: String,
    pub accrual: Vec<StretchView>,
    #[serde(serialize_with = "amt")]
    pub penalty_accrued: Decimal,
    pub payments: Vec<PaymentView>,
    pub extensions: Vec<ExtensionView>,
}

/// Build the trail from a loan folded to the end of `as_of`.
pub fn explain(loan: &Loan, as_of: Date) -> Explain {
    let accrual: Vec<StretchView> = loan
        .accrual_trail(as_of)
        .into_iter()
        .map(|s: Stretch| StretchView {
            from: s.from,
            to: s.to,
            days: s.days,
            base: s.base,
            daily_penalty: s.daily,
            subtotal: s.subtotal,
        })
        .collect();
    Explain {
        loan_id: loan.loan_id,
        as_of,
        penalty_rate_daily: loan.penalty_rate_daily.normalize().to_string(),
        penalty_accrued: loan.accrued(as_of),
        accrual,
        payments: loan
            .allocations
            .iter()
            .map(|a| PaymentView {
                seq: a.seq,
                on: a.on,
                amount: a.amount,
                penalty: a.penalty,
                installments: a
                    .installments
                    .iter()
                    .map(|p| PartView {
                        installment: p.n,
                        interest: p.interest,
                        principal: p.principal,
                    })
                    .collect(),
                overpaid: a.overpaid,
            })
            .collect(),
        extensions: loan
            .extensions
            .iter()
            .map(|e| ExtensionView {
                seq: e.seq,
                agreed_on: e.agreed_on,
                waived_penalty: e.waived_penalty,
                waived_interest: e.waived_interest,
                stage_before: e.stage_before,
            })
            .collect(),
    }
}
