//! What only the PostgreSQL backend has: several handles (as several processes would have) on
//! one database racing with large, streamed batches; URL redaction. The behaviour every backend
//! shares is in `conformance.rs`.

use arrears_core::event::NewEvent;
use arrears_store::postgres::testing::TempDb;
use arrears_store::postgres::{redact, STREAM_MIN_EVENTS};
use arrears_store::{Mode, OpenGate, PgUrl, PostgresBackend, Store};
use arrears_testkit::events::event;
use arrears_testkit::{payment, store_now};
use uuid::Uuid;

fn disbursed(loan: &Uuid) -> NewEvent {
    event(&arrears_testkit::disbursed(loan))
}

fn pay(loan: &Uuid) -> NewEvent {
    event(&payment(loan, "2024-02-05", "1.00", ""))
}

/// Two handles append large batches (streamed while sealed) to the same loans at once, in
/// opposite loan orders, without expected seqs: every batch is stored once, whole; races and
/// the deadlocks opposite orders can cause are retried; the log is dense and verify passes.
#[test]
fn racing_streamed_batches_are_all_stored() {
    let db = TempDb::new();
    let now = store_now();
    let loans: Vec<Uuid> = (0..300).map(|i| Uuid::from_u128(0x9000 + i)).collect();
    let first = Store::new(PostgresBackend::open(&db.url, Mode::Create).unwrap());
    first
        .append(loans.iter().map(disbursed).collect(), &mut OpenGate, now)
        .unwrap();
    const ROUNDS: usize = 3;
    let per_batch = 5 * loans.len();
    assert!(per_batch >= STREAM_MIN_EVENTS);
    std::thread::scope(|scope| {
        for w in 0..2 {
            let (url, loans) = (&db.url, &loans);
            scope.spawn(move || {
                let s = Store::new(PostgresBackend::open(url, Mode::Existing).unwrap());
                for _ in 0..ROUNDS {
                    let mut order: Vec<&Uuid> = loans.iter().collect();
                    if w == 1 {
                        order.reverse();
                    }
                    let batch: Vec<NewEvent> =
                        order.iter().flat_map(|l| (0..5).map(|_| pay(l))).collect();
                    let out = s.append(batch, &mut OpenGate, now).unwrap();
                    assert_eq!(out.len(), per_batch);
                }
            });
        }
    });
    let total = (loans.len() + 2 * ROUNDS * per_batch) as u64;
    assert_eq!(first.log_len().unwrap(), total);
    assert_eq!(first.verify().unwrap(), None);
    for l in &loans {
        assert_eq!(
            first.stream(*l, None).unwrap().len(),
            1 + 2 * ROUNDS * 5,
            "loan {l}"
        );
    }
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact("postgres://u:s3cret@db:5432/ledger"),
        "postgres://u:***@db:5432/ledger"
    );
    assert_eq!(
        redact("postgresql://u:p%40ss@db/ledger?sslmode=prefer&password=x&application_name=a"),
        "postgresql://u:***@db/ledger?sslmode=prefer&password=***&application_name=a"
    );
    assert_eq!(redact("postgres://u@db/l"), "postgres://u@db/l");
    assert_eq!(redact("postgres://db/l"), "postgres://db/l");
    let url = PgUrl::new("postgres://u:s3cret@db/l");
    assert_eq!(url.to_string(), "postgres://u:***@db/l");
    assert_eq!(format!("{url:?}"), "PgUrl(postgres://u:***@db/l)");
}
