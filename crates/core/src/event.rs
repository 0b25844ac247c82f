//! The event model of SPEC §2: an envelope and five kinds of body (the four of SPEC §2 and
//! `contact`, docs/rules.md §R1).
//!
//! Serialisation (`serde::Serialize`) produces exactly the wire format: amounts and rates as
//! strings, dates `YYYY-MM-DD`, timestamps RFC 3339 UTC with `Z`. Parsing lives in
//! [`crate::parse`], because it must name the offending field in every error.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

pub use crate::date::BusinessDate;
use crate::id::{EventId, LoanId, Seq};
use crate::money::{Money, Rate};

/// A business date (`"2024-01-31"`).
pub type Date = BusinessDate;
/// The moment the ledger learned a fact.
pub type Timestamp = DateTime<Utc>;

/// Serialise a timestamp as RFC 3339 UTC with `Z`, fractional seconds only when non-zero.
pub fn fmt_timestamp(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn ser_timestamp<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_timestamp(t))
}

/// How a loan is repaid (SPEC §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repayment {
    /// One installment `days` after disbursement.
    Bullet { days: u32 },
    /// `count` monthly installments.
    Installments { count: u32, method: Method },
}

/// Monthly amortisation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// 等额本息: a constant payment `A`.
    EqualInstallment,
    /// 等额本金: a constant principal part.
    EqualPrincipal,
}

/// The loan's pricing and repayment terms. Every field is required on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terms {
    pub daily_rate: Rate,
    pub penalty_multiplier: Rate,
    pub grace_days: u32,
    pub compound: bool,
    pub repayment: Repayment,
}

impl Terms {
    /// Penalty rate per day: `daily_rate × penalty_multiplier`.
    pub fn penalty_rate_daily(&self) -> Rate {
        self.daily_rate.times(self.penalty_multiplier)
    }
}

/// One installment of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledInstallment {
    pub n: u32,
    pub due_on: Date,
    pub principal: Money,
    pub interest: Money,
}

/// One installment of a restructure plan (numbered by the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanInstallment {
    pub due_on: Date,
    pub principal: Money,
    pub interest: Money,
}

/// `disbursed` (放款). After validation `schedule` is always present: computed when omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disbursed {
    pub on: Date,
    pub principal: Money,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub borrower: Option<String>,
    pub terms: Terms,
    pub schedule: Vec<ScheduledInstallment>,
}

/// `payment` (还款).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub on: Date,
    pub amount: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `missed` (逾期记录).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missed {
    pub installment: u32,
    pub observed_on: Date,
}

/// A penalty waiver: everything unpaid, or an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiver {
    All,
    Amount(Money),
}

impl Serialize for Waiver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Waiver::All => s.serialize_str("all"),
            Waiver::Amount(m) => m.serialize(s),
        }
    }
}

/// What an extension does to the schedule: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reschedule {
    /// 延期: unpaid installments due before this date move to it.
    NewDueOn(Date),
    /// 分期: unpaid installments are replaced by this plan.
    Restructure(Vec<PlanInstallment>),
}

/// `negotiated_extension` (协商延期 / 分期 / 减免).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub agreed_on: Date,
    pub waive_penalty: Option<Waiver>,
    pub waive_interest: Option<Money>,
    pub reschedule: Reschedule,
}

impl Serialize for Extension {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("agreed_on", &self.agreed_on)?;
        if let Reschedule::NewDueOn(d) = &self.reschedule {
            m.serialize_entry("new_due_on", d)?;
        }
        if let Some(w) = &self.waive_penalty {
            m.serialize_entry("waive_penalty", w)?;
        }
        if let Some(w) = &self.waive_interest {
            m.serialize_entry("waive_interest", w)?;
        }
        if let Reschedule::Restructure(plan) = &self.reschedule {
            m.serialize_entry("installments", plan)?;
        }
        m.end()
    }
}

/// How the desk reached out (docs/rules.md §R1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    App,
    Call,
    Email,
    Letter,
    Visit,
    AgencyHandover,
    LegalFiling,
}

/// Who was contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Borrower,
    EmergencyContact,
    ThirdParty,
}

/// What came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Reached,
    NoAnswer,
    PromiseToPay,
    Refused,
    WrongNumber,
}

macro_rules! wire_names {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Parse a wire name.
            pub fn from_name(s: &str) -> Option<$t> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
    };
}

wire_names!(Channel {
    Sms = "sms",
    App = "app",
    Call = "call",
    Email = "email",
    Letter = "letter",
    Visit = "visit",
    AgencyHandover = "agency_handover",
    LegalFiling = "legal_filing",
});
wire_names!(Party {
    Borrower = "borrower",
    EmergencyContact = "emergency_contact",
    ThirdParty = "third_party",
});
wire_names!(Outcome {
    Reached = "reached",
    NoAnswer = "no_answer",
    PromiseToPay = "promise_to_pay",
    Refused = "refused",
    WrongNumber = "wrong_number",
});

/// A promise to pay (承诺还款): `amount` by the end of `on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promise {
    pub on: Date,
    pub amount: Money,
}

/// `contact` (催收记录): what the collection desk did. It moves no money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// The moment of the contact, stored in UTC (given with any RFC 3339 offset).
    #[serde(serialize_with = "ser_timestamp")]
    pub at: Timestamp,
    pub channel: Channel,
    pub party: Party,
    pub outcome: Outcome,
    /// Who made the contact (an agent id, an agency name).
    pub agent: String,
    /// Present exactly when `outcome` is `promise_to_pay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promise: Option<Promise>,
}

impl Contact {
    /// The business date: the UTC date of `at` (docs/decisions.md 27), the same under every
    /// policy, so a stream replays identically whatever the business time zone.
    pub fn business_date(&self) -> Date {
        BusinessDate::new(self.at.date_naive())
    }
}

/// The body of an event; `type` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Disbursed(Disbursed),
    Payment(Payment),
    Missed(Missed),
    NegotiatedExtension(Extension),
    Contact(Contact),
}

impl Body {
    /// The business date the event is applied on (SPEC §3).
    #[inline]
    pub fn business_date(&self) -> Date {
        match self {
            Body::Disbursed(d) => d.on,
            Body::Payment(p) => p.on,
            Body::Missed(m) => m.observed_on,
            Body::NegotiatedExtension(e) => e.agreed_on,
            Body::Contact(c) => c.business_date(),
        }
    }

    /// The wire name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Disbursed(_) => "disbursed",
            Body::Payment(_) => "payment",
            Body::Missed(_) => "missed",
            Body::NegotiatedExtension(_) => "negotiated_extension",
            Body::Contact(_) => "contact",
        }
    }
}

/// An event as a caller submits it: envelope fields other than `loan_id` and the body optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Option<EventId>,
    pub loan_id: LoanId,
    /// The expected position (optimistic concurrency).
    pub seq: Option<Seq>,
    pub recorded_at: Option<Timestamp>,
    pub body: Body,
}

/// A stored event: envelope, body and its link in the loan's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event_id: EventId,
    pub loan_id: LoanId,
    pub seq: Seq,
    #[serde(serialize_with = "ser_timestamp")]
    pub recorded_at: Timestamp,
    #[serde(flatten)]
    pub body: Body,
    pub prev_hash: crate::chain::Digest32,
    pub hash: crate::chain::Digest32,
}

impl Event {
    /// The business date the event is applied on.
    #[inline]
    pub fn business_date(&self) -> Date {
        self.body.business_date()
    }

    /// The event as one JSON line (no trailing newline), keys in envelope-then-body order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialise")
    }
}
