//! The lender's rules (docs/rules.md): `compliance` findings and the `credit-history` of a loan,
//! as values and as rendered text or JSON. Storage-free: callers pass each loan's events (in any
//! order), so the commands work over whatever store the CLI is wired to.

use std::fmt::Write as _;

use arrears_core::Date;

use arrears_core::event::Event;
use arrears_core::Policy;
use arrears_projection::compliance::{self, Finding};
pub use arrears_projection::credit::CreditHistory;

/// Every finding for one loan as of `as_of`: its contacts against the policy's collection rules,
/// then the cost cap. Empty for a loan with no disbursement.
pub fn compliance(events: &[Event], as_of: Date, policy: &Policy) -> Vec<Finding> {
    let mut out = compliance::check_contacts(events, as_of, policy);
    out.extend(compliance::check_cost(events, as_of, policy));
    out
}

/// The cost measure of one loan on `as_of` (docs/rules.md §R5); `None` when unknown then.
pub fn cost(
    events: &[Event],
    as_of: Date,
    policy: &Policy,
) -> Option<arrears_projection::cost::Cost> {
    let loan = arrears_projection::fold(events, as_of, None, policy)?;
    Some(arrears_projection::cost::cost(&loan, as_of, policy))
}

/// One finding as one JSON line (no newline).
pub fn finding_json(f: &Finding) -> String {
    serde_json::to_string(f).expect("findings always serialise")
}

/// A compliance run over one or many loans, fed one loan's events at a time (in `loan_id`
/// order for a stable output).
pub struct Report<'p> {
    pub as_of: Date,
    pub policy: &'p Policy,
    pub loans: u64,
    pub findings: Vec<Finding>,
}

impl<'p> Report<'p> {
    pub fn new(as_of: Date, policy: &'p Policy) -> Self {
        Report {
            as_of,
            policy,
            loans: 0,
            findings: Vec::new(),
        }
    }

    /// Check one loan; `false` when it has no disbursement (unknown), which adds nothing.
    pub fn add(&mut self, events: &[Event]) -> bool {
        if !events
            .iter()
            .any(|e| matches!(e.body, arrears_core::Body::Disbursed(_)))
        {
            return false;
        }
        self.loans += 1;
        self.findings
            .extend(compliance(events, self.as_of, self.policy));
        true
    }

    /// JSON lines (one finding per line), or a readable table.
    pub fn render(&self, json: bool) -> String {
        if json {
            self.json_lines()
        } else {
            self.text()
        }
    }

    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            s.push_str(&finding_json(f));
            s.push('\n');
        }
        s
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let loans_with = {
            let mut ids: Vec<_> = self.findings.iter().map(|f| f.loan_id).collect();
            ids.dedup();
            ids.len()
        };
        let _ = writeln!(
            s,
            "compliance as of {} (policy {}, local time {}): {} finding(s) in {} of {} loan(s)",
            self.as_of,
            self.policy.name,
            self.policy.time_zone,
            self.findings.len(),
            loans_with,
            self.loans
        );
        for f in &self.findings {
            let _ = writeln!(s);
            let _ = writeln!(s, "  loan   {}", f.loan_id);
            let _ = writeln!(s, "  rule   {}", f.rule.as_str());
            if let Some(c) = &f.contact {
                let _ = writeln!(
                    s,
                    "  event  seq {} ({}) at {}: {} to {}, {}, agent {}",
                    c.seq,
                    c.event_id,
                    c.at,
                    c.channel.as_str(),
                    c.party.as_str(),
                    c.outcome.as_str(),
                    c.agent
                );
            }
            let _ = writeln!(s, "  why    {}", f.why);
        }
        s
    }
}

/// The monthly credit-report history of one loan as of `as_of`; `None` when it is unknown then.
pub fn credit_history(events: &[Event], as_of: Date, policy: &Policy) -> Option<CreditHistory> {
    arrears_projection::credit::credit_history(events, as_of, policy)
}

/// The history as one JSON object (with a newline), or a readable table.
pub fn render_credit_history(h: &CreditHistory, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string(h).expect("histories always serialise");
        s.push('\n');
        return s;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "credit history of {} as of {} (policy {}): {}",
        h.loan_id, h.as_of, h.policy, h.history
    );
    let _ = writeln!(s, "  month    evaluated   status  days overdue");
    for m in &h.months {
        let _ = writeln!(
            s,
            "  {}  {}  {:<6}  {}",
            m.month, m.on, m.status, m.days_overdue
        );
    }
    let _ = writeln!(
        s,
        "  N normal · 1–7 overdue 1–30 … over 180 days · C settled · * nothing due (docs/rules.md §R4)"
    );
    s
}
