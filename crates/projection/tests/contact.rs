//! The `contact` event through `decide` and the fold: accepted on a disbursed loan whatever rule it
//! breaks, rejected on an unknown loan or before the disbursement, and it moves no money.

mod common;

use arrears_core::event::Event;
use arrears_core::gate::Gate;
use arrears_core::Policy;
use arrears_projection::{replay, DecideGate};

use common::{lines, seal};

const DISBURSED: &str = r#"{"type":"disbursed","on":"2024-01-01","principal":"1000.00","terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}}"#;

/// Offer each event to the gate in turn; the rejection message of each refused one.
fn gate_all(events: &[Event]) -> Vec<Result<(), String>> {
    let policy = Policy::default();
    let mut gate = DecideGate::new(&policy);
    let mut history: Vec<Event> = Vec::new();
    events
        .iter()
        .map(|e| {
            let r = gate.check(&history, e).map_err(|e| e.to_string());
            if r.is_ok() {
                history.push(e.clone());
            }
            r
        })
        .collect()
}

fn d(s: &str) -> arrears_core::Date {
    s.parse().unwrap()
}

#[test]
fn a_contact_on_an_unknown_loan_is_rejected() {
    let evs = seal(&lines(&[
        r#"{"type":"contact","at":"2024-02-03T10:15:00+08:00","channel":"call","party":"borrower","outcome":"reached","agent":"a"}"#,
    ]));
    assert_eq!(
        gate_all(&evs),
        vec![Err(
            "type: the loan has no disbursement; its first event must be `disbursed`".into()
        )]
    );
}

#[test]
fn a_contact_before_the_disbursement_is_rejected_by_its_utc_date() {
    let evs = seal(&lines(&[
        DISBURSED,
        // 2024-01-01 07:00 in Shanghai is 2023-12-31 23:00 UTC: before the disbursement.
        r#"{"type":"contact","at":"2024-01-01T07:00:00+08:00","channel":"sms","party":"borrower","outcome":"reached","agent":"a"}"#,
        r#"{"type":"contact","at":"2024-01-01T08:00:00+08:00","channel":"sms","party":"borrower","outcome":"reached","agent":"a"}"#,
    ]));
    let r = gate_all(&evs);
    assert_eq!(r[0], Ok(()));
    assert_eq!(
        r[1],
        Err(
            "at: the contact on 2023-12-31 (UTC date) is before the disbursement on 2024-01-01"
                .into()
        )
    );
    assert_eq!(r[2], Ok(()));
}

#[test]
fn rule_breaking_contacts_are_recorded_and_move_no_money() {
    let with = seal(&lines(&[
        DISBURSED,
        r#"{"type":"contact","at":"2024-02-03T23:30:00+08:00","channel":"call","party":"third_party","outcome":"reached","agent":"a"}"#,
        r#"{"type":"contact","at":"2024-02-04T10:00:00+08:00","channel":"legal_filing","party":"borrower","outcome":"reached","agent":"a"}"#,
        r#"{"type":"payment","on":"2024-02-05","amount":"100.00"}"#,
    ]));
    assert!(gate_all(&with).iter().all(|r| r.is_ok()));
    let without = seal(&lines(&[
        DISBURSED,
        r#"{"type":"payment","on":"2024-02-05","amount":"100.00"}"#,
    ]));
    let policy = Policy::default();
    let a = replay(&with, d("2024-02-10"), None, &policy).unwrap();
    let b = replay(&without, d("2024-02-10"), None, &policy).unwrap();
    assert_eq!(a.version.get(), 4);
    assert_eq!(
        a.to_json().replace("\"version\":4", "\"version\":2"),
        b.to_json()
    );
}
