//! Reference pages built into the binary (`arrears reference events|policy`), so the event
//! schema and the policy file are documented where the program is, not only in `docs/`.

use arrears_core::Policy;

/// Every event kind, with one example each (SPEC §2 and docs/rules.md §R1).
pub const EVENTS: &str = r#"EVENTS — one JSON object per line; amounts and rates are strings ("120.00", "0.0005").

Envelope (every kind). Only loan_id and type are required on input:
  loan_id      UUID of the loan
  type         disbursed | payment | missed | negotiated_extension | contact
  event_id     UUID; give one and re-appending the same event is a no-op (safe re-runs)
  seq          the position you expect the event to take (optimistic concurrency); a
               different head is a conflict (exit 2, nothing written)
  recorded_at  RFC 3339 time the ledger learned the fact; default the store's clock; never
               earlier than the loan's previous event, never more than 5 minutes ahead
Stored events also carry prev_hash and hash (the SHA-256 chain); `arrears events LOAN` shows them.

disbursed (放款) — seq 1, exactly once. `schedule` may be left out: it is computed and stored.
  repayment: {"kind":"bullet","days":N} or
             {"kind":"installments","count":N,"method":"equal_installment"|"equal_principal"}
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"disbursed","on":"2024-01-01","principal":"1000.00","currency":"CNY","borrower":"b-17","terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}}

payment (还款) — money received; never too large (the excess is `overpaid`).
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"payment","on":"2024-02-05","amount":"120.00","reference":"bank-7781","event_id":"0b9d5a61-2f57-4c2e-8f0e-7c1d2e3f4a5b"}

missed (逾期记录) — the end-of-day job's record that an installment is past due beyond grace
(`arrears sweep` writes them). Refused unless the installment exists, observed_on is after
due_on + grace_days, it was unpaid at the end of that day, and no miss is recorded for it yet.
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"missed","installment":1,"observed_on":"2024-02-02"}

negotiated_extension (协商延期 / 分期 / 减免) — effective on agreed_on: optional waivers, then
either new_due_on (延期) or installments (分期, a new plan for the unpaid principal).
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"negotiated_extension","agreed_on":"2024-02-20","new_due_on":"2024-03-20","waive_penalty":"all","waive_interest":"5.00"}
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"negotiated_extension","agreed_on":"2024-02-20","installments":[{"due_on":"2024-03-20","principal":"500.00","interest":"3.00"},{"due_on":"2024-04-20","principal":"500.00","interest":"3.00"}]}

contact (催收记录) — what the collection desk did; moves no money. Checked by `arrears compliance`.
  channel: sms | app | call | email | letter | visit | agency_handover | legal_filing
  party:   borrower | emergency_contact | third_party
  outcome: reached | no_answer | promise_to_pay | refused | wrong_number
  promise: {"on":DATE,"amount":"…"} exactly when the outcome is promise_to_pay
  {"loan_id":"6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10","type":"contact","at":"2024-02-03T10:15:00+08:00","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a-17","promise":{"on":"2024-02-10","amount":"200.00"}}

The full contract: docs/SPEC.md and docs/rules.md in the source repository.
"#;

/// The policy file's fields, with `policy`'s values as the defaults shown.
pub fn policy_page(policy: &Policy) -> String {
    let json = serde_json::to_string_pretty(policy).unwrap_or_default();
    format!(
        r#"POLICY — a JSON file given with --policy FILE replaces the default policy `{name}`.
Its name is printed in every projection ("policy"), so outputs of different policies are never
mixed up. Sections after `stages` are optional; each left out keeps its defaults.

  name                      the policy's name, printed in every projection
  apr_cap                   the largest penalty APR (daily_rate × penalty_multiplier × 365),
                            inclusive; a disbursement above it is refused
  max_extensions            negotiated extensions allowed per loan (the next is refused)
  stages.*_from_dpd         the first days-past-due of phone, written_notice, outsourced and
                            legal collection (reminder starts at DPD 1); must increase
  time_zone                 IANA zone of business dates: dates left out are today there, and
                            the contact rules' hours are read there
  contact.hours             {{"from":"HH:MM","to":"HH:MM"}}: when calls, messages and visits are
                            allowed, local time, from inclusive, to exclusive
  contact.max_calls_per_day calls to the borrower per loan per local day
  contact.third_party_after_failed_calls
                            third parties may be contacted (to locate the borrower) only after
                            this many failed calls since the borrower was last reached
  contact.visit_from, agency_handover_from, legal_filing_from
                            the first stage allowing a visit, an agency handover, a lawsuit
  credit_report.grace_days  days past due before a month is reported overdue (征信)
  credit_report.tolerance   an overdue amount at or below this is not reported
  cost_cap.annual_rate      the annualised total-cost cap (interest + penalty over
                            principal-days × 365)
  cost_cap.stop_penalty     stop penalty accrual on the day the cap is reached

Sources for the defaults: docs/regulation.md. The default policy in full:

{json}
"#,
        name = policy.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_in_the_events_page_parses() {
        let mut n = 0;
        for line in EVENTS
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("{\"loan_id\""))
        {
            arrears_core::parse_event(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            n += 1;
        }
        assert_eq!(
            n, 6,
            "one example of each kind, two of negotiated_extension"
        );
    }

    #[test]
    fn the_policy_page_shows_a_policy_file_that_loads() {
        let page = policy_page(&Policy::default());
        let json = &page[page.find("\n{").unwrap()..];
        assert_eq!(Policy::from_json(json).unwrap(), Policy::default());
    }
}
