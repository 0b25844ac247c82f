//! `compliance`: every contact that broke the policy's collection rules (docs/rules.md §R2), and
//! the loan over the cost cap (§R5). Pure: events and the policy in, findings out.
//!
//! Local time is the policy's business time zone. The stage a contact is judged against is the
//! stage at the *start* of its local day: the events dated before that day, projected to the day
//! (docs/decisions.md 31).

use arrears_core::date::prev_day;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::{Body, Channel, Contact, Date, Event, Outcome, Party};
use arrears_core::policy::Escalation;
use arrears_core::Policy;

use crate::stage::Stage;

/// The rule a finding names. Its wire name is the snake_case variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A call, message or visit outside the allowed local hours.
    ContactHours,
    /// More calls to the borrower on one local day than allowed.
    CallsPerDay,
    /// A third party or emergency contact reached while the borrower was not shown unreachable.
    ThirdPartyContact,
    /// A contact with a third party that disclosed the debt.
    ThirdPartyDisclosure,
    /// A visit before the stage that allows it.
    VisitBeforeStage,
    /// A hand-over to an outside agency before the stage that allows it.
    AgencyBeforeStage,
    /// A lawsuit filed before the legal stage.
    LegalFilingBeforeStage,
    /// Any contact after the loan was settled.
    ContactAfterSettlement,
    /// The loan's annualised total cost is over the cap.
    CostCap,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ContactHours => "contact_hours",
            Rule::CallsPerDay => "calls_per_day",
            Rule::ThirdPartyContact => "third_party_contact",
            Rule::ThirdPartyDisclosure => "third_party_disclosure",
            Rule::VisitBeforeStage => "visit_before_stage",
            Rule::AgencyBeforeStage => "agency_before_stage",
            Rule::LegalFilingBeforeStage => "legal_filing_before_stage",
            Rule::ContactAfterSettlement => "contact_after_settlement",
            Rule::CostCap => "cost_cap",
        }
    }
}

/// The contact a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactRef {
    pub seq: u64,
    pub event_id: Uuid,
    /// Local time in the policy's zone, RFC 3339 with its offset.
    pub at: String,
    pub channel: Channel,
    pub party: Party,
    pub outcome: Outcome,
    pub agent: String,
}

/// One broken rule. Field order is the JSON key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub loan_id: Uuid,
    pub rule: Rule,
    /// The contact, or `null` for a loan-level finding (the cost cap).
    pub contact: Option<ContactRef>,
    /// Why, in words a reviewer can check against the events.
    pub why: String,
}

/// The stage a contact is judged against: at the start of its local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageOnDay {
    pub stage: Stage,
    pub dpd: i64,
    pub settled: bool,
}

fn escalation_rank(e: Escalation) -> u8 {
    match e {
        Escalation::Reminder => Stage::Reminder.rank(),
        Escalation::Phone => Stage::Phone.rank(),
        Escalation::WrittenNotice => Stage::WrittenNotice.rank(),
        Escalation::Outsourced => Stage::Outsourced.rank(),
        Escalation::Legal => Stage::Legal.rank(),
    }
}

/// The local time of a contact in the policy's zone.
pub fn local(at: &DateTime<chrono::Utc>, tz: Tz) -> DateTime<Tz> {
    at.with_timezone(&tz)
}

/// RFC 3339 local time with its offset, seconds shown (`2024-02-03T22:15:00+08:00`).
pub fn fmt_local(t: &DateTime<Tz>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// The stage at the start of local day `day`: every event dated before it (business date),
/// projected to `day`. `None` before the disbursement counts.
pub fn stage_at_start_of(events: &[Event], day: Date, policy: &Policy) -> Option<StageOnDay> {
    let before = prev_day(day)?;
    let loan = crate::fold(events, before, None, policy)?;
    let p = crate::project(&loan, day, None, policy);
    Some(StageOnDay {
        stage: p.stage,
        dpd: p.days_past_due,
        settled: p.status == "settled",
    })
}

fn channel_word(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "an SMS",
        Channel::App => "an app message",
        Channel::Call => "a call",
        Channel::Email => "an email",
        Channel::Letter => "a letter",
        Channel::Visit => "a visit",
        Channel::AgencyHandover => "an agency hand-over",
        Channel::LegalFiling => "a legal filing",
    }
}

/// Channels the hours rule applies to: the ones that reach a person at a moment.
pub fn hours_apply(c: Channel) -> bool {
    matches!(
        c,
        Channel::Call | Channel::Sms | Channel::App | Channel::Email | Channel::Visit
    )
}

/// Whether a borrower contact shows the borrower reachable (it broke a run of failed calls).
fn reached(o: Outcome) -> bool {
    matches!(
        o,
        Outcome::Reached | Outcome::PromiseToPay | Outcome::Refused
    )
}

/// Every finding for one loan's contacts with a local date on or before `as_of`, in (at, seq)
/// order, then rule order. `events` is the loan's stream (any order); a loan with no disbursement
/// has no findings.
pub fn check_contacts(events: &[Event], as_of: NaiveDate, policy: &Policy) -> Vec<Finding> {
    let tz = policy.time_zone;
    let rules = &policy.contact;
    let mut contacts: Vec<(&Event, &Contact)> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Contact(c) => Some((e, c)),
            _ => None,
        })
        .filter(|(_, c)| local(&c.at, tz).date_naive() <= as_of)
        .collect();
    contacts.sort_by_key(|(e, c)| (c.at, e.seq));
    let mut out = Vec::new();
    // Calls to the borrower per local day, and failed borrower calls since last reached.
    let mut calls_today: (Option<NaiveDate>, u32) = (None, 0);
    let mut failed_since_reached = 0u32;
    for (e, c) in &contacts {
        let lt = local(&c.at, tz);
        let day = lt.date_naive();
        let r = ContactRef {
            seq: e.seq,
            event_id: e.event_id,
            at: fmt_local(&lt),
            channel: c.channel,
            party: c.party,
            outcome: c.outcome,
            agent: c.agent.clone(),
        };
        let mut find = |rule: Rule, why: String| {
            out.push(Finding {
                loan_id: e.loan_id,
                rule,
                contact: Some(r.clone()),
                why,
            })
        };
        let what = channel_word(c.channel);
        let h = rules.hours;
        if hours_apply(c.channel) && !(h.from <= lt.time() && lt.time() < h.to) {
            find(
                Rule::ContactHours,
                format!(
                    "{what} at {} local time ({tz}); calls, messages and visits are allowed from {} to {}",
                    lt.format("%H:%M"),
                    h.from.format("%H:%M"),
                    h.to.format("%H:%M")
                ),
            );
        }
        if c.channel == Channel::Call && c.party == Party::Borrower {
            if calls_today.0 != Some(day) {
                calls_today = (Some(day), 0);
            }
            calls_today.1 += 1;
            if calls_today.1 > rules.max_calls_per_day {
                find(
                    Rule::CallsPerDay,
                    format!(
                        "call {} to the borrower on {day} (local); at most {} a day",
                        calls_today.1, rules.max_calls_per_day
                    ),
                );
            }
        }
        if c.party != Party::Borrower {
            let who = match c.party {
                Party::EmergencyContact => "an emergency contact",
                _ => "a third party",
            };
            if c.outcome == Outcome::PromiseToPay {
                find(
                    Rule::ThirdPartyDisclosure,
                    format!("{who} promised to pay: the debt was disclosed to them"),
                );
            } else if !matches!(c.channel, Channel::Call | Channel::Visit) {
                find(
                    Rule::ThirdPartyDisclosure,
                    format!(
                        "{what} to {who}: only a call or visit to ask where the borrower is is allowed"
                    ),
                );
            }
            if failed_since_reached < rules.third_party_after_failed_calls {
                find(
                    Rule::ThirdPartyContact,
                    format!(
                        "{what} to {who} after {failed_since_reached} failed call(s) to the borrower since last reached; others may be contacted, to locate the borrower, only after {}",
                        rules.third_party_after_failed_calls
                    ),
                );
            }
        } else if reached(c.outcome) {
            failed_since_reached = 0;
        } else if c.channel == Channel::Call {
            failed_since_reached += 1;
        }
        let Some(st) = stage_at_start_of(events, day, policy) else {
            continue;
        };
        if st.settled {
            find(
                Rule::ContactAfterSettlement,
                format!("{what} on {day} (local); the loan was settled before that day"),
            );
            continue;
        }
        let gate = match c.channel {
            Channel::Visit => Some((Rule::VisitBeforeStage, rules.visit_from)),
            Channel::AgencyHandover => Some((Rule::AgencyBeforeStage, rules.agency_handover_from)),
            Channel::LegalFiling => Some((Rule::LegalFilingBeforeStage, rules.legal_filing_from)),
            _ => None,
        };
        if let Some((rule, from)) = gate {
            if st.stage.rank() < escalation_rank(from) {
                find(
                    rule,
                    format!(
                        "{what} on {day} (local) in stage {} (DPD {} at the start of the day); allowed from stage {}",
                        st.stage.as_str(),
                        st.dpd,
                        from.as_str()
                    ),
                );
            }
        }
    }
    out
}

/// The loan-level finding of the cost cap (docs/rules.md §R5) on `as_of`, if the loan is over it.
pub fn check_cost(events: &[Event], as_of: NaiveDate, policy: &Policy) -> Option<Finding> {
    let loan = crate::fold(events, as_of, None, policy)?;
    let c = crate::cost::cost(&loan, as_of, policy);
    if !c.over_cap {
        return None;
    }
    let fmt = arrears_core::money::fmt_amount;
    Some(Finding {
        loan_id: loan.loan_id,
        rule: Rule::CostCap,
        contact: None,
        why: format!(
            "annualised cost {} = 365 × (interest {} + penalty {}) / {} principal-days is over the cap {}",
            c.annualised.map(|r| r.to_string()).unwrap_or_default(),
            fmt(c.interest),
            fmt(c.penalty),
            fmt(c.principal_days),
            c.cap.normalize()
        ),
    })
}
