mod common;

use arrears_core::money::fmt_amount;
use arrears_core::Policy;
use arrears_projection::replay;
use common::*;

fn date(s: &str) -> arrears_core::Date {
    s.parse().unwrap()
}

const DISBURSED: &str = r#"{"type":"disbursed","on":"2024-01-01","principal":"1000.00","currency":"CNY","borrower":"b-17","terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}}"#;

#[test]
fn spec_worked_example_is_exact() {
    let evs = seal(&lines(&[DISBURSED]));
    let p = replay(&evs, date("2024-02-10"), None, &Policy::default()).unwrap();
    let expected = format!(
        r#"{{"loan_id":"{LOAN}","as_of":"2024-02-10","known_at":null,"version":1,"policy":"default-v1","currency":"CNY","status":"active","outstanding":{{"principal":"1000.00","interest":"15.00","penalty":"7.60","total":"1022.60"}},"overdue":{{"principal":"1000.00","interest":"15.00"}},"paid":{{"principal":"0.00","interest":"0.00","penalty":"0.00"}},"waived":{{"penalty":"0.00","interest":"0.00"}},"penalty_accrued":"7.60","overpaid":"0.00","days_past_due":10,"stage":"phone","class":"special_mention","bucket":"M1","extensions":0,"broken_promise":false,"installments":[{{"n":1,"due_on":"2024-01-31","principal":"1000.00","interest":"15.00","paid_principal":"0.00","paid_interest":"0.00","status":"overdue"}}],"anomalies":[{{"kind":"unrecorded_miss","installment":1}}]}}"#
    );
    assert_eq!(p.to_json(), expected);
}

#[test]
fn due_day_is_dpd_zero_and_due() {
    let evs = seal(&lines(&[DISBURSED]));
    let p = replay(&evs, date("2024-01-31"), None, &Policy::default()).unwrap();
    assert_eq!(p.days_past_due, 0);
    assert_eq!(p.stage.as_str(), "current");
    assert_eq!(fmt_amount(p.penalty_accrued), "0.00");
    let p = replay(&evs, date("2024-02-01"), None, &Policy::default()).unwrap();
    assert_eq!(
        (
            p.days_past_due,
            p.stage.as_str(),
            fmt_amount(p.penalty_accrued)
        ),
        (1, "reminder", "0.76".into())
    );
}

#[test]
fn payment_on_a_day_bears_that_days_penalty() {
    // Paid in full on 2024-02-05: penalty for 02-01..02-05 = 5 × 0.76 = 3.80 is owed first, so
    // 1018.80 settles the loan; nothing accrues after.
    let evs = seal(&lines(&[
        DISBURSED,
        r#"{"type":"payment","on":"2024-02-05","amount":"1018.80"}"#,
    ]));
    let p = replay(&evs, date("2024-03-01"), None, &Policy::default()).unwrap();
    assert_eq!(fmt_amount(p.penalty_accrued), "3.80");
    assert_eq!(p.status, "settled");
    assert_eq!(p.stage.as_str(), "settled");
    assert_eq!(fmt_amount(p.outstanding.total), "0.00");
}

#[test]
fn ten_days_and_ten_years_overdue_take_the_same_accrual_steps() {
    let evs = seal(&lines(&[
        DISBURSED,
        r#"{"type":"payment","on":"2024-02-05","amount":"500.00"}"#,
    ]));
    let policy = Policy::default();
    let short = arrears_projection::fold(&evs, date("2024-02-10"), None, &policy).unwrap();
    let long = arrears_projection::fold(&evs, date("2034-01-28"), None, &policy).unwrap();
    // Stretches: [01-01, 01-31) nothing due, [01-31, 02-05) base 1015.00, [02-05, end) base 518.80.
    assert_eq!(short.accrual_steps(date("2024-02-10")), 3);
    assert_eq!(long.accrual_steps(date("2034-01-28")), 3);
    // And the amounts are exact: 5 × 0.76 + (days − 5) × 0.39.
    let days = date("2024-01-31").days_until(date("2034-01-28"));
    assert_eq!(days, 3650);
    let p = arrears_projection::project(&long, date("2034-01-28"), None, &policy);
    assert_eq!(
        fmt_amount(p.penalty_accrued),
        fmt_amount(rust_decimal::Decimal::new(380 + (days - 5) * 39, 2))
    );
    assert_eq!(fmt_amount(p.penalty_accrued), "1425.35");
}
