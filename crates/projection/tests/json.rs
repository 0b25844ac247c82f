//! The direct §7 writer (`Projection::write_json`) gives the bytes serde_json gives for the
//! `Serialize` derive: on arbitrary field values (here) and on projections of random event
//! streams (`model.rs`).

use arrears_core::id::{LoanId, Seq};
use arrears_core::money::Money;
use arrears_core::Date;
use arrears_projection::fold::PromiseStatus;
use arrears_projection::view::*;
use arrears_projection::{Projection, Stage};
use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

fn serde(p: &Projection) -> String {
    serde_json::to_string(p).unwrap()
}

fn check(p: &Projection) {
    let want = serde(p);
    assert_eq!(p.to_json(), want);
    // Appends: what is already in the buffer stays.
    let mut s = b"x".to_vec();
    p.write_json(&mut s);
    assert_eq!(&s[1..], want.as_bytes());
}

fn d(s: &str) -> Money {
    Money::new(s.parse().unwrap())
}

fn base() -> Projection {
    Projection {
        loan_id: LoanId::from(Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677)),
        as_of: Date::from_ymd(2024, 2, 10).unwrap(),
        known_at: None,
        version: Seq(1),
        policy: "default-v1".into(),
        currency: "CNY".into(),
        status: "active",
        outstanding: Outstanding {
            principal: d("1000.00"),
            interest: d("15.00"),
            penalty: d("7.60"),
            total: d("1022.60"),
        },
        overdue: Overdue {
            principal: d("1000.00"),
            interest: d("15.00"),
        },
        paid: Paid {
            principal: d("0.00"),
            interest: d("0.00"),
            penalty: d("0.00"),
        },
        waived: Waived {
            penalty: d("0.00"),
            interest: d("0.00"),
        },
        penalty_accrued: d("7.60"),
        overpaid: d("0.00"),
        days_past_due: 10,
        stage: Stage::Phone,
        class: "special_mention",
        bucket: "M1",
        extensions: 0,
        broken_promise: false,
        installments: vec![InstallmentView {
            n: 1,
            due_on: Date::from_ymd(2024, 1, 31).unwrap(),
            principal: d("1000.00"),
            interest: d("15.00"),
            paid_principal: d("0.00"),
            paid_interest: d("0.00"),
            status: InstallmentStatus::Overdue,
        }],
        anomalies: vec![Anomaly {
            kind: AnomalyKind::UnrecordedMiss,
            installment: 1,
        }],
        promise: None,
    }
}

#[test]
fn spec_example_bytes() {
    let p = base();
    assert_eq!(
        p.to_json(),
        r#"{"loan_id":"01234567-89ab-cdef-0011-223344556677","as_of":"2024-02-10","known_at":null,"version":1,"policy":"default-v1","currency":"CNY","status":"active","outstanding":{"principal":"1000.00","interest":"15.00","penalty":"7.60","total":"1022.60"},"overdue":{"principal":"1000.00","interest":"15.00"},"paid":{"principal":"0.00","interest":"0.00","penalty":"0.00"},"waived":{"penalty":"0.00","interest":"0.00"},"penalty_accrued":"7.60","overpaid":"0.00","days_past_due":10,"stage":"phone","class":"special_mention","bucket":"M1","extensions":0,"broken_promise":false,"installments":[{"n":1,"due_on":"2024-01-31","principal":"1000.00","interest":"15.00","paid_principal":"0.00","paid_interest":"0.00","status":"overdue"}],"anomalies":[{"kind":"unrecorded_miss","installment":1}]}"#
    );
    check(&p);
}

#[test]
fn amounts_with_zero_one_two_decimals_and_large() {
    let mut p = base();
    // Decimals as the fold may leave them: scale 0, 1 or 2 (serialised with two decimals).
    p.outstanding.principal = Money::new(Decimal::new(5, 0));
    p.outstanding.interest = Money::new(Decimal::new(76, 1));
    p.outstanding.penalty = Money::new(Decimal::new(5, 2));
    p.outstanding.total = Money::new(Decimal::ZERO);
    p.paid.principal = d("9999999999999999.99");
    p.paid.interest = d("370000000000000000.00");
    p.paid.penalty = d("0.1");
    p.penalty_accrued = d("123456789012345678901234.5");
    p.overpaid = d("-0.01");
    p.waived.interest = Money::new(Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, false, 2));
    check(&p);
    let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(v["outstanding"]["principal"], "5.00");
    assert_eq!(v["outstanding"]["interest"], "7.60");
    assert_eq!(v["outstanding"]["penalty"], "0.05");
    assert_eq!(v["outstanding"]["total"], "0.00");
    assert_eq!(v["paid"]["principal"], "9999999999999999.99");
}

#[test]
fn known_at_with_and_without_fractional_seconds() {
    let t = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap();
    for nanos in [0, 1, 1_000, 120_000, 5_000_000, 123_456_789, 999_999_999] {
        let mut p = base();
        p.known_at = Some(t + chrono::Duration::nanoseconds(nanos));
        check(&p);
    }
    let mut p = base();
    p.known_at = Some(t);
    assert!(p.to_json().contains(r#""known_at":"2024-03-05T07:08:09Z""#));
    p.known_at = Some(t + chrono::Duration::milliseconds(250));
    assert!(p
        .to_json()
        .contains(r#""known_at":"2024-03-05T07:08:09.250Z""#));
}

#[test]
fn policy_names_needing_escapes() {
    for name in [
        "say \"hi\"",
        "back\\slash",
        "政策 ✓ 🚀",
        "tab\tnl\ncr\r\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        "",
        "\u{2028}",
    ] {
        let mut p = base();
        p.policy = name.into();
        p.currency = name.into();
        check(&p);
    }
    let mut p = base();
    p.policy = "a\"b".into();
    assert!(p.to_json().contains(r#""policy":"a\"b""#));
}

#[test]
fn every_enum_variant_and_empty_lists() {
    let mut p = base();
    p.installments.clear();
    p.anomalies.clear();
    check(&p);
    for stage in Stage::ALL {
        let mut p = base();
        p.stage = stage;
        check(&p);
    }
    let mut p = base();
    p.installments = [
        InstallmentStatus::Paid,
        InstallmentStatus::Future,
        InstallmentStatus::Due,
        InstallmentStatus::Overdue,
    ]
    .into_iter()
    .enumerate()
    .map(|(k, status)| InstallmentView {
        n: k as u32 + 1,
        status,
        ..p.installments[0].clone()
    })
    .collect();
    p.anomalies = vec![
        Anomaly {
            kind: AnomalyKind::MissedButPaid,
            installment: 1,
        },
        Anomaly {
            kind: AnomalyKind::UnrecordedMiss,
            installment: u32::MAX,
        },
    ];
    p.broken_promise = true;
    p.status = "settled";
    p.version = Seq(u64::MAX);
    p.extensions = u32::MAX;
    p.days_past_due = i64::MIN;
    check(&p);
    p.days_past_due = i64::MAX;
    check(&p);
}

fn decimal() -> impl Strategy<Value = Money> {
    prop_oneof![
        // Cents as the ledger holds them.
        (0i64..100_000_000_000).prop_map(Money::from_cents),
        // Any sign and 96-bit mantissa at scale 2 (zero and negative zero included).
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>())
            .prop_map(|(lo, mid, hi, neg)| Money::new(Decimal::from_parts(lo, mid, hi, neg, 2))),
        // Scale 0, 1 or 2 as the fold may leave a sum: `Money::new` rescales to cents.
        (any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=2)
            .prop_map(|(lo, mid, neg, s)| Money::new(Decimal::from_parts(lo, mid, 0, neg, s))),
    ]
}

fn date() -> impl Strategy<Value = Date> {
    prop_oneof![
        4 => (0i32..=9999, 1u32..=366),
        1 => (-262_000i32..262_000, 1u32..=366),
    ]
    .prop_map(|(y, doy)| {
        Date::new(
            NaiveDate::from_yo_opt(y, doy).unwrap_or_else(|| NaiveDate::from_yo_opt(y, 1).unwrap()),
        )
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("default-v1".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,12}",
        any::<String>(),
        proptest::collection::vec(0u8..0x80, 0..16)
            .prop_map(|v| v.into_iter().map(char::from).collect()),
    ]
}

fn installment() -> impl Strategy<Value = InstallmentView> {
    (
        any::<u32>(),
        date(),
        (decimal(), decimal(), decimal(), decimal()),
        0usize..4,
    )
        .prop_map(|(n, due_on, (pr, int, pp, pi), s)| InstallmentView {
            n,
            due_on,
            principal: pr,
            interest: int,
            paid_principal: pp,
            paid_interest: pi,
            status: [
                InstallmentStatus::Paid,
                InstallmentStatus::Future,
                InstallmentStatus::Due,
                InstallmentStatus::Overdue,
            ][s],
        })
}

fn projection() -> impl Strategy<Value = Projection> {
    (
        (
            any::<u128>(),
            date(),
            proptest::option::of((
                -100_000_000_000i64..300_000_000_000,
                prop_oneof![
                    Just(0u32),
                    (0u32..1000).prop_map(|ms| ms * 1_000_000),
                    (0u32..1_000_000).prop_map(|us| us * 1_000),
                    0u32..1_000_000_000,
                    // Leap seconds (valid only at second 59; others give no known_at).
                    1_000_000_000u32..2_000_000_000,
                ],
            )),
            any::<u64>(),
            text(),
            text(),
            any::<bool>(),
        ),
        proptest::collection::vec(decimal(), 13),
        (
            any::<i64>(),
            0usize..9,
            any::<u32>(),
            any::<bool>(),
            0usize..5,
            0usize..8,
        ),
        proptest::collection::vec(installment(), 0..5),
        proptest::collection::vec((any::<bool>(), any::<u32>()), 0..4),
        proptest::option::of((date(), date(), decimal(), decimal(), 0usize..3)),
    )
        .prop_map(
            |(
                (id, as_of, known, version, policy, currency, settled),
                a,
                (dpd, stage, extensions, broken_promise, class, bucket),
                installments,
                anomalies,
                promise,
            )| Projection {
                loan_id: LoanId::from(Uuid::from_u128(id)),
                as_of,
                known_at: known.and_then(|(secs, nanos)| Utc.timestamp_opt(secs, nanos).single()),
                version: Seq(version),
                policy,
                currency,
                status: if settled { "settled" } else { "active" },
                outstanding: Outstanding {
                    principal: a[0],
                    interest: a[1],
                    penalty: a[2],
                    total: a[3],
                },
                overdue: Overdue {
                    principal: a[4],
                    interest: a[5],
                },
                paid: Paid {
                    principal: a[6],
                    interest: a[7],
                    penalty: a[8],
                },
                waived: Waived {
                    penalty: a[9],
                    interest: a[10],
                },
                penalty_accrued: a[11],
                overpaid: a[12],
                days_past_due: dpd,
                stage: Stage::ALL[stage],
                class: [
                    "normal",
                    "special_mention",
                    "substandard",
                    "doubtful",
                    "loss",
                ][class],
                bucket: ["M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7+"][bucket],
                extensions,
                broken_promise,
                installments,
                anomalies: anomalies
                    .into_iter()
                    .map(|(missed, installment)| Anomaly {
                        kind: if missed {
                            AnomalyKind::MissedButPaid
                        } else {
                            AnomalyKind::UnrecordedMiss
                        },
                        installment,
                    })
                    .collect(),
                promise: promise.map(|(made_on, on, amount, paid, status)| PromiseView {
                    made_on,
                    on,
                    amount,
                    paid,
                    status: [
                        PromiseStatus::Open,
                        PromiseStatus::Kept,
                        PromiseStatus::Broken,
                    ][status],
                }),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn write_json_equals_serde_on_arbitrary_fields(p in projection()) {
        let want = serde(&p);
        prop_assert_eq!(p.to_json(), want);
    }
}
