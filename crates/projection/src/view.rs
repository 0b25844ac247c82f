//! The SPEC §7 projection object, computed from a folded [`Loan`] at an as-of date.

use arrears_core::id::{LoanId, Seq};
use arrears_core::money::Money;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use arrears_core::event::{fmt_timestamp, Date, Timestamp};
use arrears_core::Policy;

use crate::fold::Loan;
use crate::json;
use crate::stage::{self, Stage, StageInput};

fn ts<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&fmt_timestamp(t)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outstanding {
    pub principal: Money,
    pub interest: Money,
    pub penalty: Money,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overdue {
    pub principal: Money,
    pub interest: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paid {
    pub principal: Money,
    pub interest: Money,
    pub penalty: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waived {
    pub penalty: Money,
    pub interest: Money,
}

/// Installment status on the as-of date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallmentStatus {
    Paid,
    Future,
    Due,
    Overdue,
}

impl InstallmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallmentStatus::Paid => "paid",
            InstallmentStatus::Future => "future",
            InstallmentStatus::Due => "due",
            InstallmentStatus::Overdue => "overdue",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallmentView {
    pub n: u32,
    pub due_on: Date,
    pub principal: Money,
    pub interest: Money,
    pub paid_principal: Money,
    pub paid_interest: Money,
    pub status: InstallmentStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    MissedButPaid,
    UnrecordedMiss,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::MissedButPaid => "missed_but_paid",
            AnomalyKind::UnrecordedMiss => "unrecorded_miss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub installment: u32,
}

/// The projection of one loan (SPEC §7). Field order is the output's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Projection {
    pub loan_id: LoanId,
    pub as_of: Date,
    #[serde(serialize_with = "ts")]
    pub known_at: Option<Timestamp>,
    pub version: Seq,
    pub policy: String,
    pub currency: String,
    pub status: &'static str,
    pub outstanding: Outstanding,
    pub overdue: Overdue,
    pub paid: Paid,
    pub waived: Waived,
    pub penalty_accrued: Money,
    pub overpaid: Money,
    pub days_past_due: i64,
    pub stage: Stage,
    pub class: &'static str,
    pub bucket: &'static str,
    pub extensions: u32,
    pub broken_promise: bool,
    pub installments: Vec<InstallmentView>,
    pub anomalies: Vec<Anomaly>,
    /// Added after SPEC §7 (docs/rules.md §R3): the promise to pay in force, when the loan has
    /// one; absent otherwise, so loans without promises print exactly the §7 object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promise: Option<PromiseView>,
}

/// The promise to pay in force on the as-of date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromiseView {
    pub made_on: Date,
    pub on: Date,
    pub amount: Money,
    /// Payments dated `made_on ..= min(on, as_of)` counted towards it (until it was kept).
    pub paid: Money,
    pub status: crate::fold::PromiseStatus,
}

impl Projection {
    /// The exact JSON object, one line: the bytes `serde_json::to_string(self)` gives, written
    /// directly by [`Projection::write_json`].
    pub fn to_json(&self) -> String {
        let mut v = Vec::with_capacity(self.json_len_hint());
        self.write_json(&mut v);
        String::from_utf8(v).expect("the writer writes UTF-8")
    }

    /// A capacity that holds the JSON object of most projections without growing.
    pub fn json_len_hint(&self) -> usize {
        640 + self.policy.len()
            + self.currency.len()
            + 160 * self.installments.len()
            + 48 * self.anomalies.len()
    }

    /// Append the JSON object to `out`, byte for byte what the `Serialize` derive gives through
    /// serde_json (UTF-8), with no allocation besides `out` growing.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"loan_id\":");
        json::uuid(out, &self.loan_id.uuid());
        out.extend_from_slice(b",\"as_of\":");
        json::date(out, self.as_of);
        out.extend_from_slice(b",\"known_at\":");
        match &self.known_at {
            Some(t) => json::timestamp(out, t),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"version\":");
        json::uint(out, self.version.get());
        out.extend_from_slice(b",\"policy\":");
        json::string(out, &self.policy);
        out.extend_from_slice(b",\"currency\":");
        json::string(out, &self.currency);
        out.extend_from_slice(b",\"status\":");
        json::name(out, self.status);
        let o = &self.outstanding;
        out.extend_from_slice(b",\"outstanding\":{\"principal\":");
        json::amount(out, o.principal.decimal());
        out.extend_from_slice(b",\"interest\":");
        json::amount(out, o.interest.decimal());
        out.extend_from_slice(b",\"penalty\":");
        json::amount(out, o.penalty.decimal());
        out.extend_from_slice(b",\"total\":");
        json::amount(out, o.total.decimal());
        out.extend_from_slice(b"},\"overdue\":{\"principal\":");
        json::amount(out, self.overdue.principal.decimal());
        out.extend_from_slice(b",\"interest\":");
        json::amount(out, self.overdue.interest.decimal());
        out.extend_from_slice(b"},\"paid\":{\"principal\":");
        json::amount(out, self.paid.principal.decimal());
        out.extend_from_slice(b",\"interest\":");
        json::amount(out, self.paid.interest.decimal());
        out.extend_from_slice(b",\"penalty\":");
        json::amount(out, self.paid.penalty.decimal());
        out.extend_from_slice(b"},\"waived\":{\"penalty\":");
        json::amount(out, self.waived.penalty.decimal());
        out.extend_from_slice(b",\"interest\":");
        json::amount(out, self.waived.interest.decimal());
        out.extend_from_slice(b"},\"penalty_accrued\":");
        json::amount(out, self.penalty_accrued.decimal());
        out.extend_from_slice(b",\"overpaid\":");
        json::amount(out, self.overpaid.decimal());
        out.extend_from_slice(b",\"days_past_due\":");
        json::int(out, self.days_past_due);
        out.extend_from_slice(b",\"stage\":");
        json::name(out, self.stage.as_str());
        out.extend_from_slice(b",\"class\":");
        json::name(out, self.class);
        out.extend_from_slice(b",\"bucket\":");
        json::name(out, self.bucket);
        out.extend_from_slice(b",\"extensions\":");
        json::uint(out, self.extensions.into());
        out.extend_from_slice(b",\"broken_promise\":");
        json::boolean(out, self.broken_promise);
        out.extend_from_slice(b",\"installments\":[");
        for (k, i) in self.installments.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"n\":");
            json::uint(out, i.n.into());
            out.extend_from_slice(b",\"due_on\":");
            json::date(out, i.due_on);
            out.extend_from_slice(b",\"principal\":");
            json::amount(out, i.principal.decimal());
            out.extend_from_slice(b",\"interest\":");
            json::amount(out, i.interest.decimal());
            out.extend_from_slice(b",\"paid_principal\":");
            json::amount(out, i.paid_principal.decimal());
            out.extend_from_slice(b",\"paid_interest\":");
            json::amount(out, i.paid_interest.decimal());
            out.extend_from_slice(b",\"status\":");
            json::name(out, i.status.as_str());
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"anomalies\":[");
        for (k, a) in self.anomalies.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"kind\":");
            json::name(out, a.kind.as_str());
            out.extend_from_slice(b",\"installment\":");
            json::uint(out, a.installment.into());
            out.push(b'}');
        }
        out.push(b']');
        if let Some(p) = &self.promise {
            out.extend_from_slice(b",\"promise\":{\"made_on\":");
            json::date(out, p.made_on);
            out.extend_from_slice(b",\"on\":");
            json::date(out, p.on);
            out.extend_from_slice(b",\"amount\":");
            json::amount(out, p.amount.decimal());
            out.extend_from_slice(b",\"paid\":");
            json::amount(out, p.paid.decimal());
            out.extend_from_slice(b",\"status\":");
            json::name(out, p.status.as_str());
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// Project a loan whose counted events are all applied to the end of day `as_of`.
pub fn project(
    loan: &Loan,
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: &Policy,
) -> Projection {
    let grace_days = loan.grace_days;
    let penalty_accrued = loan.accrued(as_of);
    let outstanding_penalty = penalty_accrued - loan.penalty.paid - loan.penalty.waived;

    let mut outstanding_principal = Decimal::ZERO;
    let mut outstanding_interest = Decimal::ZERO;
    let mut overdue_principal = Decimal::ZERO;
    let mut overdue_interest = Decimal::ZERO;
    let mut paid_principal = Decimal::ZERO;
    let mut paid_interest = Decimal::ZERO;
    let mut dpd = 0i64;
    let mut anomalies = Vec::new();
    let mut installments = Vec::with_capacity(loan.installments.len());

    for i in loan.installments.iter().filter(|i| !i.removed) {
        paid_principal += i.paid_principal;
        paid_interest += i.paid_interest;
        let unpaid = i.is_unpaid();
        let status = if !unpaid {
            InstallmentStatus::Paid
        } else if i.due_on > as_of {
            InstallmentStatus::Future
        } else if as_of <= i.due_on.add_days(grace_days) {
            InstallmentStatus::Due
        } else {
            InstallmentStatus::Overdue
        };
        if unpaid {
            outstanding_principal += i.unpaid_principal();
            outstanding_interest += i.unpaid_interest();
            if i.due_on < as_of {
                dpd = dpd.max(i.due_on.days_until(as_of));
            }
        }
        if status == InstallmentStatus::Overdue {
            overdue_principal += i.unpaid_principal();
            overdue_interest += i.unpaid_interest();
            let recorded = loan
                .misses
                .iter()
                .any(|m| m.installment == i.n && m.due_on == Some(i.due_on));
            if !recorded {
                anomalies.push(Anomaly {
                    kind: AnomalyKind::UnrecordedMiss,
                    installment: i.n,
                });
            }
        }
        installments.push(InstallmentView {
            n: i.n,
            due_on: i.due_on,
            principal: Money::new(i.principal),
            interest: Money::new(i.interest),
            paid_principal: Money::new(i.paid_principal),
            paid_interest: Money::new(i.paid_interest),
            status,
        });
    }
    for m in &loan.misses {
        let Some(due) = m.due_on else { continue };
        let paid_in_time = loan
            .installments
            .iter()
            .find(|i| i.n == m.installment)
            .and_then(|i| i.paid_on)
            .is_some_and(|p| p <= due.add_days(grace_days));
        if paid_in_time {
            anomalies.push(Anomaly {
                kind: AnomalyKind::MissedButPaid,
                installment: m.installment,
            });
        }
    }
    anomalies.sort_by_key(|a| (a.installment, a.kind));
    anomalies.dedup();
    installments.sort_by_key(|i| i.n);

    let settled = outstanding_principal.is_zero()
        && outstanding_interest.is_zero()
        && outstanding_penalty.is_zero();
    let extended = !loan.extensions.is_empty();
    let (stage, broken_promise) = stage::stage(
        &StageInput {
            dpd,
            grace_days,
            settled,
            extended,
            stage_before_last_extension: loan.extensions.last().map(|e| e.stage_before),
            broken_promise_to_pay: loan.broken_promise_at(as_of),
        },
        policy,
    );
    Projection {
        loan_id: loan.loan_id,
        as_of,
        known_at,
        version: loan.version,
        policy: policy.name.clone(),
        currency: loan.currency.clone(),
        status: if settled { "settled" } else { "active" },
        outstanding: Outstanding {
            principal: Money::new(outstanding_principal),
            interest: Money::new(outstanding_interest),
            penalty: Money::new(outstanding_penalty),
            total: Money::new(outstanding_principal + outstanding_interest + outstanding_penalty),
        },
        overdue: Overdue {
            principal: Money::new(overdue_principal),
            interest: Money::new(overdue_interest),
        },
        paid: Paid {
            principal: Money::new(paid_principal),
            interest: Money::new(paid_interest),
            penalty: Money::new(loan.penalty.paid),
        },
        waived: Waived {
            penalty: Money::new(loan.penalty.waived),
            interest: Money::new(loan.waived_interest),
        },
        penalty_accrued: Money::new(penalty_accrued),
        overpaid: Money::new(loan.overpaid),
        days_past_due: dpd,
        stage,
        class: stage::class(dpd, extended, settled),
        bucket: stage::bucket(dpd),
        extensions: loan.extensions.len() as u32,
        broken_promise,
        installments,
        anomalies,
        promise: loan.promise_at(as_of).map(|p| PromiseView {
            made_on: p.made_on,
            on: p.on,
            amount: Money::new(p.amount),
            paid: Money::new(p.paid),
            status: p.status_at(as_of),
        }),
    }
}
