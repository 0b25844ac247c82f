//! accrual_flat: projecting one loan 10 days overdue and 3,650 days overdue costs the same
//! (closed form: the cost follows events and due dates, not days).

use arrears_benches::*;
use arrears_core::Date;
use arrears_core::Policy;
use arrears_testkit::{disbursed, payment};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const LOAN: &str = "0f000000-0000-4000-8000-000000000001";

fn accrual(c: &mut Criterion) {
    let lines = [disbursed(LOAN), payment(LOAN, "2024-02-05", "500.00", "")];
    let dir = tempfile::tempdir().unwrap();
    let ledger = fill(dir.path(), &book_events(&lines), 10);
    let loan = lines[0][12..48].parse().unwrap();
    let events = ledger.store().stream(loan, None).unwrap();
    let policy = Policy::default();
    let d10 = Date::from_ymd(2024, 2, 10).unwrap();
    let d3650 = Date::from_ymd(2034, 1, 28).unwrap();
    let mut g = c.benchmark_group("accrual_flat");
    for (name, d) in [("10_days_overdue", d10), ("3650_days_overdue", d3650)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                arrears_projection::replay(black_box(&events), black_box(d), None, &policy).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, accrual);
criterion_main!(benches);
