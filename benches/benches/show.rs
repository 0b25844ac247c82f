//! show_one: one loan with 200 events, from a cold store open to printed JSON.

use arrears_benches::*;
use arrears_cli::ledger::Ledger;
use arrears_core::Date;
use arrears_core::Policy;
use arrears_testkit::{payment, Disbursed};
use criterion::{criterion_group, criterion_main, Criterion};

const LOAN: &str = "0f000000-0000-4000-8000-000000000001";

fn show(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    {
        // A 12-month loan with 199 more events: small payments and a few misses, appended one
        // event at a time as a servicer would.
        let mut lines = vec![Disbursed::new(LOAN)
            .principal("12000.00")
            .repayment(r#"{"kind":"installments","count":12,"method":"equal_installment"}"#)
            .to_string()];
        let start = Date::from_ymd(2024, 1, 2).unwrap();
        for k in 0..199u64 {
            let day = start.add_days(k as u32 * 2);
            let reference = format!(r#","reference":"r{k}""#);
            lines.push(payment(LOAN, &day.to_string(), "30.00", &reference));
        }
        let ledger = Ledger::open_sled(&store, Policy::default()).unwrap();
        for e in book_events(&lines) {
            ledger.append(vec![e], now()).unwrap();
        }
    }
    let as_of = Date::from_ymd(2025, 2, 28).unwrap();
    let loan = LOAN.parse().unwrap();
    c.bench_function("show_one/200_events_cold_open_to_json", |b| {
        b.iter(|| {
            let ledger = Ledger::open_sled(&store, Policy::default()).unwrap();
            let p = ledger.show(loan, as_of, None).unwrap();
            assert_eq!(p.version.get(), 200);
            p.to_json()
        })
    });
}

criterion_group!(benches, show);
criterion_main!(benches);
