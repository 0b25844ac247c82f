//! Every stateless rejection rule of SPEC §1–§2 and §8, with the message it gives.

use arrears_core::validate::validate;
use arrears_core::{parse_event, Policy};

const LOAN: &str = "00000000-0000-0000-0000-0000000000aa";

fn disbursed(patch: &str) -> String {
    // `patch` replaces the default terms/principal fragment.
    format!(r#"{{"loan_id":"{LOAN}","type":"disbursed","on":"2024-01-01",{patch}}}"#)
}

/// SPEC §7's terms (`"terms":{…}`).
const TERMS: &str = arrears_testkit::BULLET_TERMS;

/// Parse and validate under the default policy; the error message.
fn err(line: &str) -> String {
    match parse_event(line) {
        Err(e) => e.to_string(),
        Ok((mut ev, _)) => match validate(&mut ev, &Policy::default()) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted: {line}"),
        },
    }
}

fn ok(line: &str) {
    let (mut ev, _) = parse_event(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    validate(&mut ev, &Policy::default()).unwrap_or_else(|e| panic!("{e}: {line}"));
}

fn payment(amount_json: &str) -> String {
    format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":{amount_json}}}"#)
}

#[test]
fn amounts() {
    ok(&payment(r#""120.00""#));
    ok(&payment(r#""120""#));
    ok(&payment(r#""0.5""#));
    assert_eq!(
        err(&payment(r#""10.000""#)),
        "amount: `10.000` has more than 2 decimal places (amounts are in cents)"
    );
    assert_eq!(
        err(&payment(r#""-5.00""#)),
        "amount: `-5.00` must not be negative"
    );
    assert_eq!(
        err(&payment(r#""0.00""#)),
        "amount: must be greater than zero"
    );
    assert_eq!(
        err(&payment("120.00")),
        "amount: expected a string, got a JSON number"
    );
    assert_eq!(
        err(&payment(r#""abc""#)),
        "amount: `abc` is not a decimal number"
    );
    assert_eq!(
        err(&payment(r#"".5""#)),
        "amount: `.5` is not a decimal number"
    );
    assert_eq!(
        err(&payment(r#""+5""#)),
        "amount: `+5` is not a decimal number"
    );
    assert_eq!(
        err(&payment(r#""1e3""#)),
        "amount: `1e3` is not a decimal number"
    );
    assert_eq!(
        err(&payment(r#""10000000000000000.00""#)),
        "amount: `10000000000000000.00` has more digits than the ledger accepts"
    );
    assert_eq!(err(&payment("null")), "amount: is required");
}

#[test]
fn envelope() {
    assert_eq!(
        err(r#"{"type":"payment","on":"2024-02-05","amount":"1.00"}"#),
        "loan_id: is required"
    );
    assert_eq!(
        err(r#"{"loan_id":"nope","type":"payment"}"#),
        "loan_id: `nope` is not a UUID"
    );
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"refund","on":"2024-02-05"}}"#
        )),
        "type: `refund` is not an event type (disbursed, payment, missed, negotiated_extension, contact)"
    );
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","memo":"x"}}"#
        )),
        "memo: is not a field of this event"
    );
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","amount":"2.00"}}"#
        )),
        "amount: appears twice in the object"
    );
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","seq":0}}"#
        )),
        "seq: must be between 1 and 9223372036854775807, got 0"
    );
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","recorded_at":"yesterday"}}"#
        )),
        "recorded_at: `yesterday` is not an RFC 3339 timestamp"
    );
    assert!(err("[1,2]").contains("an event must be a JSON object"));
    assert!(err("{").starts_with("not valid JSON"));
}

#[test]
fn dates() {
    let line =
        |d: &str| format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"{d}","amount":"1.00"}}"#);
    ok(&line("2024-02-29"));
    for bad in [
        "2023-02-29",
        "0000-00-00",
        "2024-1-05",
        "24-01-05",
        "2024-01-05T00:00:00Z",
        "+2024-01-05",
    ] {
        assert_eq!(
            err(&line(bad)),
            format!("on: `{bad}` is not a date (YYYY-MM-DD)")
        );
    }
}

#[test]
fn disbursement_rules() {
    ok(&disbursed(&format!(r#""principal":"1000.00",{TERMS}"#)));
    assert_eq!(
        err(&disbursed(&format!(r#""principal":"0.00",{TERMS}"#))),
        "principal: must be greater than zero"
    );
    assert_eq!(
        err(&disbursed(&format!(
            r#""principal":"1000.00","currency":"cny",{TERMS}"#
        ))),
        "currency: `cny` is not a currency code (3 capital letters)"
    );
    let terms = |t: &str| disbursed(&format!(r#""principal":"1000.00","terms":{t}"#));
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"0.9","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}"#
        )),
        "terms.penalty_multiplier: must be at least 1, got 0.9"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"-0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}"#
        )),
        "terms.daily_rate: `-0.0005` must not be negative"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":31,"compound":true,"repayment":{"kind":"bullet","days":30}}"#
        )),
        "terms.grace_days: must be between 0 and 30, got 31"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"1.5","compound":true,"repayment":{"kind":"bullet","days":30}}"#
        )),
        "terms.grace_days: is required"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":"yes","repayment":{"kind":"bullet","days":30}}"#
        )),
        "terms.compound: expected true or false, got a string"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":0}}"#
        )),
        "terms.repayment.days: must be between 1 and 36500, got 0"
    );
    assert_eq!(
        err(&terms(
            r#"{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"installments","count":3,"method":"balloon"}}"#
        )),
        "terms.repayment.method: `balloon` is not one of equal_installment, equal_principal"
    );
    // 0.001 × 1 × 365 = 0.365 > 0.36.
    assert_eq!(
        err(&terms(r#"{"daily_rate":"0.001","penalty_multiplier":"1","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}"#)),
        "terms.daily_rate: penalty APR daily_rate × penalty_multiplier × 365 = 0.365 exceeds the policy cap 0.36"
    );
    // The cap is inclusive: under a policy whose cap is exactly 0.365 the same terms pass.
    let p = Policy {
        apr_cap: "0.365".parse().unwrap(),
        ..Policy::default()
    };
    let (mut ev, _) = parse_event(&terms(r#"{"daily_rate":"0.001","penalty_multiplier":"1","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}"#)).unwrap();
    validate(&mut ev, &p).expect("an APR equal to the cap is allowed");
}

#[test]
fn supplied_schedule_rules() {
    let with = |s: &str| disbursed(&format!(r#""principal":"1000.00",{TERMS},"schedule":{s}"#));
    ok(&with(
        r#"[{"n":1,"due_on":"2024-01-31","principal":"1000.00","interest":"15.00"}]"#,
    ));
    assert_eq!(
        err(&with(
            r#"[{"n":2,"due_on":"2024-01-31","principal":"1000.00","interest":"15.00"}]"#
        )),
        "schedule[0].n: is 2, expected 1 (installments are numbered 1..N)"
    );
    assert_eq!(
        err(&with(
            r#"[{"n":1,"due_on":"2024-01-01","principal":"1000.00","interest":"15.00"}]"#
        )),
        "schedule[0].due_on: 2024-01-01 is not after the disbursement date 2024-01-01"
    );
    assert_eq!(
        err(&with(
            r#"[{"n":1,"due_on":"2024-02-01","principal":"500.00","interest":"0"},{"n":2,"due_on":"2024-02-01","principal":"500.00","interest":"0"}]"#
        )),
        "schedule[1].due_on: 2024-02-01 is not after the previous due date 2024-02-01"
    );
    assert_eq!(
        err(&with(
            r#"[{"n":1,"due_on":"2024-01-31","principal":"999.99","interest":"15.00"}]"#
        )),
        "schedule: installment principals sum to 999.99, not the principal 1000.00"
    );
    assert_eq!(err(&with("[]")), "schedule: must not be empty");
    assert_eq!(
        err(&with(
            r#"[{"n":1,"due_on":"2024-01-31","principal":1000,"interest":"15.00"}]"#
        )),
        "schedule[0].principal: expected a string, got a JSON number"
    );
}

#[test]
fn missed_and_extension_shape() {
    assert_eq!(
        err(&format!(
            r#"{{"loan_id":"{LOAN}","type":"missed","installment":"1","observed_on":"2024-02-02"}}"#
        )),
        "installment: expected a whole number, got a string"
    );
    let ext = |body: &str| {
        format!(
            r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"2024-02-20",{body}}}"#
        )
    };
    ok(&ext(
        r#""new_due_on":"2024-03-20","waive_penalty":"all","waive_interest":"5.00""#,
    ));
    assert_eq!(
        err(&ext(r#""waive_penalty":"all""#)),
        "new_due_on: give exactly one of `new_due_on` and `installments`"
    );
    assert_eq!(
        err(&ext(
            r#""new_due_on":"2024-03-20","installments":[{"due_on":"2024-03-20","principal":"1.00","interest":"0.00"}]"#
        )),
        "new_due_on: give exactly one of `new_due_on` and `installments`"
    );
    assert_eq!(
        err(&ext(r#""new_due_on":"2024-02-20""#)),
        "new_due_on: 2024-02-20 is not after agreed_on 2024-02-20"
    );
    assert_eq!(
        err(&ext(r#""new_due_on":"2024-03-20","waive_interest":"all""#)),
        "waive_interest: `all` is not a decimal number"
    );
    assert_eq!(
        err(&ext(r#""installments":[]"#)),
        "installments: must not be empty"
    );
    assert_eq!(
        err(&ext(
            r#""installments":[{"due_on":"2024-02-19","principal":"1.00","interest":"0.00"}]"#
        )),
        "installments[0].due_on: 2024-02-19 is not after agreed_on 2024-02-20"
    );
}

#[test]
fn contact_shape() {
    let c = |body: &str| format!(r#"{{"loan_id":"{LOAN}","type":"contact",{body}}}"#);
    let base =
        r#""at":"2024-02-03T10:15:00+08:00","channel":"call","party":"borrower","agent":"a-7""#;
    ok(&c(&format!(r#"{base},"outcome":"no_answer""#)));
    ok(&c(&format!(
        r#"{base},"outcome":"promise_to_pay","promise":{{"on":"2024-02-10","amount":"200.00"}}"#
    )));
    let (ev, _) = parse_event(&c(&format!(r#"{base},"outcome":"reached""#))).unwrap();
    let arrears_core::Body::Contact(contact) = &ev.body else {
        panic!("not a contact")
    };
    // Stored in UTC; the business date is the UTC date.
    assert_eq!(
        arrears_core::event::fmt_timestamp(&contact.at),
        "2024-02-03T02:15:00Z"
    );
    assert_eq!(ev.body.business_date().to_string(), "2024-02-03");
    let cases = [
        (
            r#""at":"2024-02-03 10:15","channel":"call","party":"borrower","outcome":"reached","agent":"a""#,
            "at: `2024-02-03 10:15` is not an RFC 3339 timestamp",
        ),
        (
            r#""at":"2024-02-03T10:15:00","channel":"call","party":"borrower","outcome":"reached","agent":"a""#,
            "at: `2024-02-03T10:15:00` is not an RFC 3339 timestamp",
        ),
        (
            r#""channel":"call","party":"borrower","outcome":"reached","agent":"a""#,
            "at: is required",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"fax","party":"borrower","outcome":"reached","agent":"a""#,
            "channel: `fax` is not one of sms, app, call, email, letter, visit, agency_handover, legal_filing",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"boss","outcome":"reached","agent":"a""#,
            "party: `boss` is not one of borrower, emergency_contact, third_party",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"paid","agent":"a""#,
            "outcome: `paid` is not one of reached, no_answer, promise_to_pay, refused, wrong_number",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached""#,
            "agent: is required",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached","agent":" ""#,
            "agent: must not be empty",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached","agent":7"#,
            "agent: expected a string, got a JSON number",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached","agent":"a","promise":{"on":"2024-02-10","amount":"1.00"}"#,
            "promise: is only given with outcome `promise_to_pay`",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a""#,
            "promise: is required",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a","promise":{"on":"2024-02-10","amount":200}"#,
            "promise.amount: expected a string, got a JSON number",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a","promise":{"on":"2024-02-10","amount":"0"}"#,
            "promise.amount: must be greater than zero",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a","promise":{"on":"2024-02-10","amount":"1.00","by":"x"}"#,
            "promise.by: is not a field of this event",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a","promise":{"on":"2024-02-02","amount":"1.00"}"#,
            "promise.on: 2024-02-02 is before the contact's date 2024-02-03 (UTC date of `at`)",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached","agent":"a","on":"2024-02-03""#,
            "on: is not a field of this event",
        ),
        (
            r#""at":"2024-02-03T10:15:00Z","channel":"call","party":"borrower","outcome":"reached","agent":"a","Agent":"b""#,
            "Agent: is not a field of this event",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(err(&c(body)), want, "{body}");
    }
}

#[test]
fn computed_schedule_is_stored_in_the_event() {
    let (mut ev, _) =
        parse_event(&disbursed(&format!(r#""principal":"1000.00",{TERMS}"#))).unwrap();
    validate(&mut ev, &Policy::default()).unwrap();
    let arrears_core::Body::Disbursed(d) = &ev.body else {
        panic!()
    };
    assert_eq!(d.schedule.len(), 1);
    assert_eq!(d.schedule[0].interest.to_string(), "15.00");
    assert_eq!(d.schedule[0].due_on.to_string(), "2024-01-31");
}
