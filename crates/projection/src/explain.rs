//! The audit trail: every accrual stretch and every payment's allocation, so an auditor can
//! re-add every cent by hand (Σ stretch subtotals = `penalty_accrued`).

use serde::Serialize;

use arrears_core::event::Date;
use arrears_core::id::{LoanId, Seq};
use arrears_core::money::Money;

use crate::fold::{Loan, Stretch};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StretchView {
    pub from: Date,
    pub to: Date,
    pub days: i64,
    pub base: Money,
    pub daily_penalty: Money,
    pub subtotal: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartView {
    pub installment: u32,
    pub interest: Money,
    pub principal: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    pub seq: Seq,
    pub on: Date,
    pub amount: Money,
    pub penalty: Money,
    pub installments: Vec<PartView>,
    pub overpaid: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionView {
    pub seq: Seq,
    pub agreed_on: Date,
    pub waived_penalty: Money,
    pub waived_interest: Money,
    pub stage_before: crate::Stage,
}

/// The audit trail of one loan as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explain {
    pub loan_id: LoanId,
    pub as_of: Date,
    /// daily_rate × penalty_multiplier: each stretch's daily penalty is round(base × this).
    pub penalty_rate_daily: String,
    pub accrual: Vec<StretchView>,
    pub penalty_accrued: Money,
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
            base: Money::new(s.base),
            daily_penalty: Money::new(s.daily),
            subtotal: Money::new(s.subtotal),
        })
        .collect();
    Explain {
        loan_id: LoanId(loan.loan_id),
        as_of,
        penalty_rate_daily: loan.penalty_rate_daily.normalize().to_string(),
        penalty_accrued: Money::new(loan.accrued(as_of)),
        accrual,
        payments: loan
            .allocations
            .iter()
            .map(|a| PaymentView {
                seq: Seq(a.seq),
                on: a.on,
                amount: Money::new(a.amount),
                penalty: Money::new(a.penalty),
                installments: a
                    .installments
                    .iter()
                    .map(|p| PartView {
                        installment: p.n,
                        interest: Money::new(p.interest),
                        principal: Money::new(p.principal),
                    })
                    .collect(),
                overpaid: Money::new(a.overpaid),
            })
            .collect(),
        extensions: loan
            .extensions
            .iter()
            .map(|e| ExtensionView {
                seq: Seq(e.seq),
                agreed_on: e.agreed_on,
                waived_penalty: Money::new(e.waived_penalty),
                waived_interest: Money::new(e.waived_interest),
                stage_before: e.stage_before,
            })
            .collect(),
    }
}
