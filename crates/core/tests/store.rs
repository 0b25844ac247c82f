//! The sled store: seq without gaps, optimistic concurrency, idempotency, recorded_at order,
//! the hash chain, durability across reopen, all-or-nothing batches.

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Body, Event, NewEvent, Payment};
use arrears_core::store::{AppendError, EventStore, Gate, OpenGate, SledStore, StoreError};
use arrears_core::{parse_event, validate::validate, Policy};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

const LOAN: &str = "00000000-0000-0000-0000-0000000000aa";

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
}

fn ev(line: &str) -> NewEvent {
    let (mut e, _) = parse_event(line).unwrap();
    validate(&mut e, &Policy::default()).unwrap();
    e
}

fn disbursed() -> NewEvent {
    ev(&format!(
        r#"{{"loan_id":"{LOAN}","type":"disbursed","on":"2024-01-01","principal":"1000.00","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{{"kind":"bullet","days":30}}}}}}"#
    ))
}

fn pay(extra: &str) -> NewEvent {
    ev(&format!(
        r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"10.00"{extra}}}"#
    ))
}

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir).unwrap()
}

fn chain_ok(events: &[Event]) -> bool {
    let mut prev = GENESIS;
    for (i, e) in events.iter().enumerate() {
        if e.seq != i as u64 + 1 || e.prev_hash != prev || compute_hash(e) != e.hash {
            return false;
        }
        prev = e.hash;
    }
    true
}

#[test]
fn seqs_are_contiguous_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let out = s
        .append(vec![disbursed(), pay(""), pay("")], &mut OpenGate, now())
        .unwrap();
    assert_eq!(
        out.iter().map(|a| a.event.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    s.append(vec![pay("")], &mut OpenGate, now()).unwrap();
    let stream = s.stream(LOAN.parse().unwrap(), None).unwrap();
    assert_eq!(
        stream.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(stream[0].prev_hash, GENESIS);
    assert!(chain_ok(&stream));
    let log = s.log(1, 100).unwrap();
    assert_eq!(
        log.iter().map(|e| (e.position, e.seq)).collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 3), (4, 4)]
    );
    assert_eq!(s.log(3, 1).unwrap()[0].seq, 3);
    let heads = s.heads().unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].1.seq, 4);
    assert_eq!(heads[0].1.hash, stream[3].hash.0);
}

#[test]
fn wrong_expected_seq_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.append(vec![disbursed()], &mut OpenGate, now()).unwrap();
    let e = s
        .append(vec![pay(r#","seq":3"#)], &mut OpenGate, now())
        .unwrap_err();
    assert!(
        matches!(
            e,
            AppendError::Conflict {
                expected: 3,
                head: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("seq: conflict: expected seq 3 but loan {LOAN} is at seq 1 (next is 2)")
    );
    assert_eq!(s.stream(LOAN.parse().unwrap(), None).unwrap().len(), 1);
    s.append(vec![pay(r#","seq":2"#)], &mut OpenGate, now())
        .unwrap();
}

#[test]
fn same_event_id_is_idempotent_and_other_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = "11111111-2222-4333-8444-555555555555";
    s.append(vec![disbursed()], &mut OpenGate, now()).unwrap();
    let first = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}""#))],
            &mut OpenGate,
            now(),
        )
        .unwrap();
    assert!(!first[0].existed);
    // Same content (and later clock): returns the stored event, writes nothing.
    let later = now() + chrono::Duration::hours(1);
    let again = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}""#))],
            &mut OpenGate,
            later,
        )
        .unwrap();
    assert!(again[0].existed);
    assert_eq!(again[0].event, first[0].event);
    assert_eq!(s.stream(LOAN.parse().unwrap(), None).unwrap().len(), 2);
    // A supplied seq equal to the stored one is still the same event.
    let again = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}","seq":2"#))],
            &mut OpenGate,
            later,
        )
        .unwrap();
    assert!(again[0].existed);
    // Other content: refused.
    let other = ev(&format!(
        r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"11.00","event_id":"{id}"}}"#
    ));
    let e = s.append(vec![other], &mut OpenGate, later).unwrap_err();
    assert!(matches!(e, AppendError::EventIdReused { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("event_id: {id} is already stored with different content (stored as a different payment event)"));
    let e = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}","seq":7"#))],
            &mut OpenGate,
            later,
        )
        .unwrap_err();
    assert!(e.to_string().ends_with("(stored at seq 2)"), "{e}");
    // Within one batch, the second copy is the first one.
    let id2 = "11111111-2222-4333-8444-666666666666";
    let out = s
        .append(
            vec![
                pay(&format!(r#","event_id":"{id2}""#)),
                pay(&format!(r#","event_id":"{id2}""#)),
            ],
            &mut OpenGate,
            later,
        )
        .unwrap();
    assert_eq!((out[0].existed, out[1].existed), (false, true));
    assert_eq!(s.stream(LOAN.parse().unwrap(), None).unwrap().len(), 3);
}

#[test]
fn recorded_at_must_not_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.append(vec![disbursed()], &mut OpenGate, now()).unwrap();
    let e = s
        .append(
            vec![pay(r#","recorded_at":"2024-03-01T11:59:59Z""#)],
            &mut OpenGate,
            now(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "recorded_at: 2024-03-01T11:59:59Z is earlier than the loan's previous event (2024-03-01T12:00:00Z)"
    );
    // Without recorded_at the store's clock is used, but never behind the previous event.
    let earlier_clock = now() - chrono::Duration::days(1);
    let out = s
        .append(vec![pay("")], &mut OpenGate, earlier_clock)
        .unwrap();
    assert_eq!(out[0].event.recorded_at, now());
    // known_at selects the prefix recorded by then.
    let out = s
        .append(
            vec![pay(r#","recorded_at":"2024-03-05T00:00:00+08:00""#)],
            &mut OpenGate,
            now(),
        )
        .unwrap();
    assert_eq!(
        arrears_core::event::fmt_timestamp(&out[0].event.recorded_at),
        "2024-03-04T16:00:00Z"
    );
    let t = Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap();
    assert_eq!(s.stream(LOAN.parse().unwrap(), Some(t)).unwrap().len(), 2);
}

struct RejectAmount(&'static str);
impl Gate for RejectAmount {
    fn check(
        &mut self,
        _: &[Event],
        c: &Event,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match &c.body {
            Body::Payment(Payment { amount, .. }) if amount.to_string() == self.0 => {
                Err("amount: refused by the gate".into())
            }
            _ => Ok(()),
        }
    }
}

#[test]
fn a_batch_with_one_bad_event_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let other_loan = Uuid::from_u128(9);
    let mut d2 = disbursed();
    d2.loan_id = other_loan;
    let bad = ev(&format!(
        r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"66.00"}}"#
    ));
    let e = s
        .append(
            vec![disbursed(), d2, pay(""), bad, pay("")],
            &mut RejectAmount("66.00"),
            now(),
        )
        .unwrap_err();
    assert_eq!(e.index(), Some(3));
    assert!(s.heads().unwrap().is_empty());
    assert!(s.log(1, 10).unwrap().is_empty());
    assert!(s.stream(LOAN.parse().unwrap(), None).unwrap().is_empty());
    assert!(s.stream(other_loan, None).unwrap().is_empty());
}

#[test]
fn one_append_writes_one_chunk_per_loan() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut d2 = disbursed();
    d2.loan_id = Uuid::from_u128(9);
    s.append(
        vec![disbursed(), pay(""), d2, pay("")],
        &mut OpenGate,
        now(),
    )
    .unwrap();
    s.append(vec![pay("")], &mut OpenGate, now()).unwrap();
    let chunks: Vec<_> = s
        .raw_tree()
        .scan_prefix([b'e'])
        .map(|kv| kv.unwrap())
        .collect();
    assert_eq!(chunks.len(), 3);
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|(_, v)| arrears_core::store::decode_chunk(v, "t").unwrap().len())
        .collect();
    assert_eq!(sizes, vec![1, 3, 1]);
    assert_eq!(
        s.event_at(&LOAN.parse().unwrap(), 2).unwrap().unwrap().seq,
        2
    );
    assert_eq!(
        s.event_at(&LOAN.parse().unwrap(), 4).unwrap().unwrap().seq,
        4
    );
    assert!(s.event_at(&LOAN.parse().unwrap(), 5).unwrap().is_none());
    let log: Vec<(u64, u64)> = s
        .log(1, 10)
        .unwrap()
        .iter()
        .map(|e| (e.position, e.seq))
        .collect();
    assert_eq!(log, vec![(1, 1), (2, 2), (3, 1), (4, 3), (5, 4)]);
    assert_eq!(s.log(4, 1).unwrap()[0].seq, 3);
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = open(dir.path());
        s.append(vec![disbursed(), pay("")], &mut OpenGate, now())
            .unwrap();
        s.stream(LOAN.parse().unwrap(), None).unwrap()
    };
    let s = open(dir.path());
    assert_eq!(s.stream(LOAN.parse().unwrap(), None).unwrap(), before);
    // The global log continues where it was.
    s.append(vec![pay("")], &mut OpenGate, now()).unwrap();
    assert_eq!(
        s.log(1, 10)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn a_flipped_byte_in_a_stored_value_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.append(vec![disbursed()], &mut OpenGate, now()).unwrap();
    s.append(vec![pay("")], &mut OpenGate, now()).unwrap();
    let tree = s.raw_tree();
    // Two appends, two chunks: the second holds the payment.
    let (k, v) = tree.scan_prefix([b'e']).nth(1).unwrap().unwrap();
    let mut bytes = v.to_vec();
    // Flip one bit of the stored amount (10.00 → 10.01): it still decodes, but the hash breaks.
    let amount = rust_decimal::Decimal::new(1000, 2).serialize();
    let pos = bytes.windows(16).position(|w| w == amount).unwrap();
    bytes[pos + 4] ^= 1;
    tree.insert(k, bytes).unwrap();
    let stream = s.stream(LOAN.parse().unwrap(), None).unwrap();
    assert!(!chain_ok(&stream));
    assert_ne!(compute_hash(&stream[1]), stream[1].hash);
    assert!(chain_ok(&stream[..1]));
}

#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    match SledStore::open(dir.path()) {
        Err(StoreError::NotAStore { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        SledStore::open(&file),
        Err(StoreError::NotAStore { .. })
    ));
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.raw_tree()
            .insert(b"mformat", &99u32.to_be_bytes())
            .unwrap();
        s.flush().unwrap();
    }
    let e = SledStore::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::FormatTooNew { found: 99, .. }));
    assert!(
        e.to_string()
            .contains("has on-disk format 99; this build reads format 1"),
        "{e}"
    );
}

#[test]
fn a_second_open_of_a_held_store_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(dir.path());
    let started = std::time::Instant::now();
    let e = SledStore::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    // A guard against waiting on the lock (a refusal is one failed `flock`), not a speed check.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn the_binary_encoding_round_trips_every_kind() {
    use arrears_core::store::{decode_chunk, encode_chunk};
    let lines = [
        format!(
            r#"{{"loan_id":"{LOAN}","type":"disbursed","on":"2024-01-31","principal":"1000.00","currency":"USD","borrower":"借款人-7","terms":{{"daily_rate":"0.00050","penalty_multiplier":"1.5","grace_days":3,"compound":false,"repayment":{{"kind":"installments","count":3,"method":"equal_installment"}}}}}}"#
        ),
        format!(
            r#"{{"loan_id":"{LOAN}","type":"disbursed","on":"2024-01-31","principal":"1000.00","terms":{{"daily_rate":"0","penalty_multiplier":"1","grace_days":0,"compound":true,"repayment":{{"kind":"installments","count":2,"method":"equal_principal"}}}}}}"#
        ),
        format!(
            r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"0.01","reference":"bank-1"}}"#
        ),
        format!(
            r#"{{"loan_id":"{LOAN}","type":"missed","installment":2,"observed_on":"9999-12-31"}}"#
        ),
        format!(
            r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"2024-02-20","new_due_on":"2024-03-20","waive_penalty":"all","waive_interest":"5.00"}}"#
        ),
        format!(
            r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"2024-02-20","waive_penalty":"1.25","installments":[{{"due_on":"2024-03-20","principal":"500.00","interest":"3.00"}}]}}"#
        ),
    ];
    for (i, line) in lines.iter().enumerate() {
        let new = ev(line);
        let mut e = Event {
            event_id: Uuid::from_u128(i as u128 + 1),
            loan_id: new.loan_id,
            seq: i as u64 + 1,
            recorded_at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            body: new.body,
            prev_hash: GENESIS,
            hash: GENESIS,
        };
        e.hash = compute_hash(&e);
        let bytes = encode_chunk(std::slice::from_ref(&e));
        assert_eq!(bytes[0], 2);
        let back = decode_chunk(&bytes, "test").unwrap().remove(0);
        assert_eq!(back, e);
        assert_eq!(
            back.to_json(),
            e.to_json(),
            "rates keep their written scale"
        );
        assert_eq!(compute_hash(&back), e.hash);
    }
}

#[test]
fn a_store_half_made_by_an_older_version_is_reported_and_then_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // What a kill during sled's own creation leaves: `blobs/` (and maybe `db`) without `conf`.
    std::fs::create_dir_all(path.join("blobs")).unwrap();
    std::fs::write(path.join("db"), b"").unwrap();
    let e = SledStore::open_existing(&path).err().unwrap();
    assert!(matches!(e, StoreError::HalfMade { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!(
            "`arrears --store {} append` finishes it",
            path.display()
        )),
        "{e}"
    );
    // The writer's open finishes it: a complete, empty store.
    let s = SledStore::open(&path).unwrap();
    assert!(s.heads().unwrap().is_empty());
    drop(s);
    assert!(SledStore::open_existing(&path).is_ok());
}

#[test]
fn a_missing_store_is_not_created_by_open_existing_and_foreign_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let e = SledStore::open_existing(&path).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "no arrears store at {} (append creates one)",
            path.display()
        )
    );
    assert!(!path.exists());
    // A directory with other files is never touched.
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        SledStore::open(&path).err().unwrap(),
        StoreError::NotAStore { .. }
    ));
    assert_eq!(
        std::fs::read_to_string(path.join("notes.txt")).unwrap(),
        "mine"
    );
}
