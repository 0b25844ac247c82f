//! `decide`: the stateful rules an event must pass before it is stored (SPEC §2.2–§2.4, §8).
//! Every rejection is its own variant with a message a servicer understands.

use rust_decimal::Decimal;

use arrears_core::event::{Body, Date, Event, Reschedule, Waiver};
use arrears_core::money::fmt_amount;
use arrears_core::Policy;

use crate::fold::Loan;
use arrears_core::date::add_days;

/// Why an event was refused in the light of the loan's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("type: the loan has no disbursement; its first event must be `disbursed`")]
    NotDisbursed,
    #[error(
        "type: the loan is already disbursed (a `disbursed` event must be seq 1, exactly once)"
    )]
    AlreadyDisbursed,
    #[error("on: payment on {on} is before the disbursement on {disbursed_on}")]
    PaymentBeforeDisbursement { on: Date, disbursed_on: Date },
    #[error("agreed_on: {agreed_on} is before the disbursement on {disbursed_on}")]
    AgreedBeforeDisbursement { agreed_on: Date, disbursed_on: Date },
    #[error("at: the contact on {on} (UTC date) is before the disbursement on {disbursed_on}")]
    ContactBeforeDisbursement { on: Date, disbursed_on: Date },
    #[error("installment: the loan has no installment {n} on {on}")]
    NoSuchInstallment { n: u32, on: Date },
    #[error("observed_on: installment {n} is due {due_on} with {grace_days} grace days; a miss can be observed from {first_day}, not {observed_on}")]
    NotBeyondGrace {
        n: u32,
        due_on: Date,
        grace_days: u32,
        first_day: Date,
        observed_on: Date,
    },
    #[error("installment: installment {n} was fully paid by the end of {observed_on}")]
    InstallmentPaid { n: u32, observed_on: Date },
    #[error("installment: a miss of installment {n} under due date {due_on} is already recorded")]
    DuplicateMiss { n: u32, due_on: Date },
    #[error("agreed_on: the loan is settled on {agreed_on}; there is nothing to negotiate")]
    LoanSettled { agreed_on: Date },
    #[error("type: the loan already has {count} extensions; the policy allows {max}")]
    TooManyExtensions { count: usize, max: u32 },
    #[error("waive_penalty: {asked} is more than the unpaid penalty {unpaid} through {agreed_on}")]
    WaivePenaltyExceeds {
        asked: String,
        unpaid: String,
        agreed_on: Date,
    },
    #[error("waive_interest: {asked} is more than the unpaid interest {unpaid}")]
    WaiveInterestExceeds { asked: String, unpaid: String },
    #[error(
        "installments: the plan's principals sum to {plan}, but the unpaid principal is {unpaid}"
    )]
    PlanPrincipalMismatch { plan: String, unpaid: String },
}

/// Check `ev` against `loan`, the state at the end of `ev`'s business date with every other known
/// event of that date applied (`ev` carries the highest seq, so it is applied last that day).
/// `known_extensions` counts every stored extension, whatever its date.
pub fn decide(
    loan: &Loan,
    ev: &Event,
    known_extensions: usize,
    policy: &Policy,
) -> Result<(), Rejection> {
    match &ev.body {
        Body::Disbursed(_) => Err(Rejection::AlreadyDisbursed),
        Body::Payment(p) => {
            if p.on < loan.disbursed_on {
                return Err(Rejection::PaymentBeforeDisbursement {
                    on: p.on,
                    disbursed_on: loan.disbursed_on,
                });
            }
            Ok(())
        }
        Body::Missed(m) => {
            let Some(inst) = loan
                .installments
                .iter()
                .find(|i| i.n == m.installment && !i.removed)
            else {
                return Err(Rejection::NoSuchInstallment {
                    n: m.installment,
                    on: m.observed_on,
                });
            };
            let last_grace_day = add_days(inst.due_on, loan.grace_days);
            if m.observed_on <= last_grace_day {
                return Err(Rejection::NotBeyondGrace {
                    n: inst.n,
                    due_on: inst.due_on,
                    grace_days: loan.grace_days,
                    first_day: add_days(last_grace_day, 1),
                    observed_on: m.observed_on,
                });
            }
            if !inst.is_unpaid() {
                return Err(Rejection::InstallmentPaid {
                    n: inst.n,
                    observed_on: m.observed_on,
                });
            }
            if loan
                .misses
                .iter()
                .any(|r| r.installment == inst.n && r.due_on == Some(inst.due_on))
            {
                return Err(Rejection::DuplicateMiss {
                    n: inst.n,
                    due_on: inst.due_on,
                });
            }
            Ok(())
        }
        // A contact is a fact about what the desk did: it is recorded even when it broke a rule
        // (that is what `compliance` reports), so only its date is checked.
        Body::Contact(c) => {
            let on = c.business_date();
            if on < loan.disbursed_on {
                return Err(Rejection::ContactBeforeDisbursement {
                    on,
                    disbursed_on: loan.disbursed_on,
                });
            }
            Ok(())
        }
        Body::NegotiatedExtension(x) => {
            let day = x.agreed_on;
            if day < loan.disbursed_on {
                return Err(Rejection::AgreedBeforeDisbursement {
                    agreed_on: day,
                    disbursed_on: loan.disbursed_on,
                });
            }
            if known_extensions >= policy.max_extensions as usize {
                return Err(Rejection::TooManyExtensions {
                    count: known_extensions,
                    max: policy.max_extensions,
                });
            }
            let live = || loan.installments.iter().filter(|i| !i.removed);
            let unpaid_principal: Decimal = live().map(|i| i.unpaid_principal()).sum();
            let unpaid_interest: Decimal = live().map(|i| i.unpaid_interest()).sum();
            let unpaid_penalty = loan.unpaid_penalty(day);
            if unpaid_principal.is_zero()
                && unpaid_interest.is_zero()
                && unpaid_penalty <= Decimal::ZERO
            {
                return Err(Rejection::LoanSettled { agreed_on: day });
            }
            if let Some(Waiver::Amount(a)) = x.waive_penalty {
                if a > unpaid_penalty {
                    return Err(Rejection::WaivePenaltyExceeds {
                        asked: fmt_amount(a),
                        unpaid: fmt_amount(unpaid_penalty),
                        agreed_on: day,
                    });
                }
            }
            if let Some(w) = x.waive_interest {
                if w > unpaid_interest {
                    return Err(Rejection::WaiveInterestExceeds {
                        asked: fmt_amount(w),
                        unpaid: fmt_amount(unpaid_interest),
                    });
                }
            }
            if let Reschedule::Restructure(plan) = &x.reschedule {
                let sum: Decimal = plan.iter().map(|p| p.principal).sum();
                if sum != unpaid_principal {
                    return Err(Rejection::PlanPrincipalMismatch {
                        plan: fmt_amount(sum),
                        unpaid: fmt_amount(unpaid_principal),
                    });
                }
            }
            Ok(())
        }
    }
}

/// Used by the store's gate when the loan has no events yet.
pub fn decide_first(ev: &Event) -> Result<(), Rejection> {
    match ev.body {
        Body::Disbursed(_) => Ok(()),
        _ => Err(Rejection::NotDisbursed),
    }
}
