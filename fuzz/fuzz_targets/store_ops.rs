//! Store operations against two backends at once: the same random appends (new loans, payments,
//! reused ids, expected seqs, supplied recorded_at) go to sled and to memory, and both must give
//! the same result for each append and the same streams, heads, log and digest at the end.
#![no_main]
use arrears_core::event::{Body, NewEvent, Payment};
use arrears_store::{MemoryBackend, Mode, OpenGate, SledBackend, Store};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fn disbursed(loan: Uuid) -> NewEvent {
    let line = format!(
        r#"{{"loan_id":"{loan}","type":"disbursed","on":"2024-01-01","principal":"1000.00","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{{"kind":"bullet","days":30}}}}}}"#
    );
    let (mut ev, _) = arrears_core::parse_event(&line).unwrap();
    arrears_core::validate::validate(&mut ev, &arrears_core::Policy::default()).unwrap();
    ev
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::new(SledBackend::open(&dir.path().join("db"), Mode::Create, None).unwrap());
    let mem = Store::new(MemoryBackend::new());
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
    for (i, op) in data.chunks(4).take(64).enumerate() {
        let [kind, loan, x, y] = [op[0], op.get(1).copied().unwrap_or(0), op.get(2).copied().unwrap_or(0), op.get(3).copied().unwrap_or(0)];
        let loan_id = Uuid::from_u128(1 + u128::from(loan % 4));
        let mut batch = Vec::new();
        for k in 0..=(kind % 3) {
            let mut ev = if x % 5 == 0 {
                disbursed(loan_id)
            } else {
                NewEvent {
                    event_id: None,
                    loan_id: loan_id.into(),
                    seq: None,
                    recorded_at: None,
                    body: Body::Payment(Payment {
                        on: arrears_core::Date::from_ymd(2024, 1, 2).unwrap(),
                        amount: amount_of(y),
                        reference: None,
                    }),
                }
            };
            // Ids are always given (a store-made UUIDv7 has random bits, which would differ
            // between the two stores); some are reused on purpose.
            ev.event_id = Some(
                if x & 0x10 != 0 {
                    Uuid::from_u128(100 + u128::from((y ^ k) % 8))
                } else {
                    Uuid::from_u128(1_000_000 + (i as u128) * 4 + u128::from(k))
                }
                .into(),
            );
            if x & 0x20 != 0 {
                ev.seq = Some(u64::from(y % 6).into());
            }
            if x & 0x40 != 0 {
                ev.recorded_at = Some(now + chrono::Duration::seconds(i64::from(y) * 7 - 600));
            }
            batch.push(ev);
        }
        let a = sled.append(batch.clone(), &mut OpenGate, now);
        let b = mem.append(batch, &mut OpenGate, now);
        match (&a, &b) {
            (Ok(x), Ok(y)) => assert_eq!(x, y),
            (Err(x), Err(y)) => assert_eq!(x.to_string().replace(&sled.describe(), "S"), y.to_string().replace(&mem.describe(), "S")),
            _ => panic!("backends disagree: {a:?} vs {b:?}"),
        }
    }
    assert_eq!(sled.heads().unwrap(), mem.heads().unwrap());
    assert_eq!(sled.log(1, usize::MAX).unwrap(), mem.log(1, usize::MAX).unwrap());
    assert_eq!(sled.digest().unwrap(), mem.digest().unwrap());
    assert_eq!(sled.verify().unwrap(), None);
});

fn amount_of(y: u8) -> arrears_core::money::Money {
    arrears_core::money::Money::from_cents(i64::from(y) + 1)
}
