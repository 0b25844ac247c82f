//! One contract, every backend: seq without gaps, optimistic concurrency, idempotency (within a
//! loan, within a batch and across loans), recorded_at order and skew, the hash chain, all-or-
//! nothing batches, reopen, and tamper detection. A new backend adds one `backend_suite!` line.

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Body, Event, NewEvent, Payment};
use arrears_store::postgres::testing::TempDb;
use arrears_store::testing::log_entries;
use arrears_store::{
    chunk, AppendError, Backend, Gate, MemoryBackend, Mode, OpenGate, PostgresBackend, SealedBatch,
    SealedLoan, SledBackend, Store, StoreError,
};
use arrears_testkit::events::event;
use arrears_testkit::{payment, store_now};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

const LOAN: &str = "00000000-0000-0000-0000-0000000000aa";

fn loan() -> Uuid {
    LOAN.parse().unwrap()
}

fn disbursed_for(loan: Uuid) -> NewEvent {
    event(&arrears_testkit::disbursed(loan))
}

fn disbursed() -> NewEvent {
    disbursed_for(loan())
}

fn pay(extra: &str) -> NewEvent {
    event(&payment(LOAN, "2024-02-05", "10.00", extra))
}

fn pay_for(loan: Uuid) -> NewEvent {
    event(&payment(loan.to_string(), "2024-02-05", "10.00", ""))
}

/// Each loan's head seq from its full heads (the reference for `head_seqs`).
fn seqs_of_heads<B: Backend>(s: &Store<B>) -> Vec<(Uuid, u64)> {
    s.heads()
        .unwrap()
        .iter()
        .map(|(l, h)| (*l, h.seq))
        .collect()
}

fn chain_ok(events: &[Event]) -> bool {
    let mut prev = GENESIS;
    for (i, e) in events.iter().enumerate() {
        if e.seq.get() != i as u64 + 1 || e.prev_hash != prev || compute_hash(e) != e.hash {
            return false;
        }
        prev = e.hash;
    }
    true
}

/// How the suite makes, reopens and tampers with a store of one backend.
trait Fixture {
    type B: Backend;
    /// A new, empty store and whatever keeps it alive (a temp dir).
    fn fresh() -> (Store<Self::B>, Box<dyn std::any::Any>);
    /// The same store after the process let go of it; None for a store that lives in memory.
    fn reopen(s: Store<Self::B>, keep: &dyn std::any::Any) -> Option<Store<Self::B>>;
    /// Rewrite the bytes of `loan`'s chunk `i` (in seq order).
    fn tamper(s: &Store<Self::B>, loan: &Uuid, i: usize, f: &mut dyn FnMut(&mut Vec<u8>));
}

struct Memory;
impl Fixture for Memory {
    type B = MemoryBackend;
    fn fresh() -> (Store<MemoryBackend>, Box<dyn std::any::Any>) {
        (Store::new(MemoryBackend::new()), Box::new(()))
    }
    fn reopen(_: Store<MemoryBackend>, _: &dyn std::any::Any) -> Option<Store<MemoryBackend>> {
        None
    }
    fn tamper(s: &Store<MemoryBackend>, loan: &Uuid, i: usize, f: &mut dyn FnMut(&mut Vec<u8>)) {
        s.backend().tamper(loan, i, f)
    }
}

struct Sled;
impl Fixture for Sled {
    type B = SledBackend;
    fn fresh() -> (Store<SledBackend>, Box<dyn std::any::Any>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(SledBackend::open(&dir.path().join("db"), Mode::Create, None).unwrap());
        (s, Box::new(dir))
    }
    fn reopen(s: Store<SledBackend>, keep: &dyn std::any::Any) -> Option<Store<SledBackend>> {
        drop(s);
        let dir = keep.downcast_ref::<tempfile::TempDir>().unwrap();
        Some(Store::new(
            SledBackend::open(&dir.path().join("db"), Mode::Existing, None).unwrap(),
        ))
    }
    fn tamper(s: &Store<SledBackend>, loan: &Uuid, i: usize, f: &mut dyn FnMut(&mut Vec<u8>)) {
        let tree = s.backend().raw_tree();
        let mut prefix = vec![b'e'];
        prefix.extend_from_slice(loan.as_bytes());
        let (k, v) = tree.scan_prefix(prefix).nth(i).unwrap().unwrap();
        // Edit the events' bytes, not their LZ4 block.
        let mut bytes = arrears_store::chunk::uncompressed(&v).unwrap();
        f(&mut bytes);
        tree.insert(k, bytes).unwrap();
    }
}

/// Each test gets a new database on the test server (`$ARREARS_TEST_PG`, or the cluster of
/// `scripts/postgres.sh start`), dropped afterwards.
struct Postgres;
impl Fixture for Postgres {
    type B = PostgresBackend;
    fn fresh() -> (Store<PostgresBackend>, Box<dyn std::any::Any>) {
        let db = TempDb::new();
        let s = Store::new(PostgresBackend::open(&db.url, Mode::Create).unwrap());
        (s, Box::new(db))
    }
    fn reopen(
        s: Store<PostgresBackend>,
        keep: &dyn std::any::Any,
    ) -> Option<Store<PostgresBackend>> {
        drop(s);
        let db = keep.downcast_ref::<TempDb>().unwrap();
        Some(Store::new(
            PostgresBackend::open(&db.url, Mode::Existing).unwrap(),
        ))
    }
    fn tamper(s: &Store<PostgresBackend>, loan: &Uuid, i: usize, f: &mut dyn FnMut(&mut Vec<u8>)) {
        let mut c = s.backend().conn().unwrap();
        let row = c
            .query_one(
                "SELECT seq, chunk FROM arrears_events WHERE loan_id = $1 ORDER BY seq OFFSET $2 LIMIT 1",
                &[loan, &(i as i64)],
            )
            .unwrap();
        let seq: i64 = row.get(0);
        let mut bytes: Vec<u8> = row.get(1);
        f(&mut bytes);
        c.execute(
            "UPDATE arrears_events SET chunk = $3 WHERE loan_id = $1 AND seq = $2",
            &[loan, &seq, &bytes],
        )
        .unwrap();
    }
}

fn seqs_are_contiguous_and_the_chain_verifies<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let out = s
        .append(
            vec![disbursed(), pay(""), pay("")],
            &mut OpenGate,
            store_now(),
        )
        .unwrap();
    assert_eq!(
        out.iter().map(|a| a.event.seq.get()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    s.append(vec![pay("")], &mut OpenGate, store_now()).unwrap();
    let stream = s.stream(loan(), None).unwrap();
    assert_eq!(
        stream.iter().map(|e| e.seq.get()).collect::<Vec<_>>(),
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
    assert_eq!(s.log_len().unwrap(), 4);
    let heads = s.heads().unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].1.seq, 4);
    assert_eq!(heads[0].1.hash, stream[3].hash.0);
    assert_eq!(s.event_at(&loan(), 2).unwrap().unwrap().seq.get(), 2);
    assert!(s.event_at(&loan(), 5).unwrap().is_none());
    assert_eq!(s.verify().unwrap(), None);
}

fn streams_and_the_log_interleave_loans<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let other = Uuid::from_u128(9);
    s.append(
        vec![disbursed(), pay(""), disbursed_for(other), pay("")],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    s.append(vec![pay("")], &mut OpenGate, store_now()).unwrap();
    let log = log_entries(&s, 10);
    assert_eq!(
        log,
        vec![
            (1, loan(), 1),
            (2, loan(), 2),
            (3, other, 1),
            (4, loan(), 3),
            (5, loan(), 4)
        ]
    );
    // Streams and heads come in loan_id order.
    let mut seen = Vec::new();
    s.for_each_stream(&mut |l, evs| {
        seen.push((l, evs.len()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(other, 1), (loan(), 4)]);
    let heads = seqs_of_heads(&s);
    assert_eq!(heads, vec![(other, 1), (loan(), 4)]);
    assert_eq!(s.head_seqs().unwrap(), heads);
    assert_eq!(s.verify().unwrap(), None);
    let d = s.digest().unwrap();
    assert!(d.starts_with("5-"), "{d}");
}

/// Head seqs come from anywhere in the log: a loan only in its first half, one only in its
/// second, and loans in both (sled reads the two halves on two threads).
fn head_seqs_cover_the_whole_log<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let [a, b, c, d] = [1, 2, 3, 4].map(Uuid::from_u128);
    let add = |events: Vec<NewEvent>| s.append(events, &mut OpenGate, store_now()).unwrap();
    add(vec![disbursed_for(a), disbursed_for(b), disbursed_for(d)]);
    add(vec![pay_for(a)]);
    add(vec![disbursed_for(c)]);
    add(vec![pay_for(b), pay_for(b)]);
    assert_eq!(s.log_len().unwrap(), 7);
    let heads = seqs_of_heads(&s);
    assert_eq!(heads, vec![(a, 2), (b, 3), (c, 1), (d, 1)]);
    assert_eq!(s.head_seqs().unwrap(), heads);
}

fn wrong_expected_seq_is_a_conflict_and_writes_nothing<F: Fixture>() {
    let (s, _keep) = F::fresh();
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    let e = s
        .append(vec![pay(r#","seq":3"#)], &mut OpenGate, store_now())
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
    assert_eq!(s.stream(loan(), None).unwrap().len(), 1);
    s.append(vec![pay(r#","seq":2"#)], &mut OpenGate, store_now())
        .unwrap();
}

fn same_event_id_is_idempotent_and_other_content_is_refused<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let id = "11111111-2222-4333-8444-555555555555";
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    let first = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}""#))],
            &mut OpenGate,
            store_now(),
        )
        .unwrap();
    assert!(!first[0].existed);
    // Same content (and a later clock): returns the stored event, writes nothing.
    let later = store_now() + chrono::Duration::hours(1);
    let again = s
        .append(
            vec![pay(&format!(r#","event_id":"{id}""#))],
            &mut OpenGate,
            later,
        )
        .unwrap();
    assert!(again[0].existed);
    assert_eq!(again[0].event, first[0].event);
    assert_eq!(s.stream(loan(), None).unwrap().len(), 2);
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
    let other = event(&payment(
        LOAN,
        "2024-02-05",
        "11.00",
        &format!(r#","event_id":"{id}""#),
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
    assert_eq!(s.stream(loan(), None).unwrap().len(), 3);
}

/// The suite's loan and another one disbursed, then a payment with event id `id` on the suite's
/// loan. Returns the other loan.
fn paid_with_id_beside_another_loan<B: Backend>(s: &Store<B>, id: &str) -> Uuid {
    let other = Uuid::from_u128(9);
    s.append(
        vec![disbursed(), disbursed_for(other)],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    s.append(
        vec![pay(&format!(r#","event_id":"{id}""#))],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    other
}

fn an_event_id_stored_under_another_loan_is_found<F: Fixture>() {
    let (s, keep) = F::fresh();
    let id = "11111111-2222-4333-8444-777777777777";
    let other = paid_with_id_beside_another_loan(&s, id);
    let s = F::reopen(s, keep.as_ref()).unwrap_or_else(|| {
        // Memory: nothing to reopen; make a new handle-less check on the same store.
        unreachable!()
    });
    let mut reused = event(&payment(
        other,
        "2024-02-05",
        "10.00",
        &format!(r#","event_id":"{id}""#),
    ));
    reused.loan_id = other.into();
    let e = s
        .append(vec![reused], &mut OpenGate, store_now())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("event_id: {id} is already stored with different content (stored for loan {LOAN})")
    );
    assert_eq!(s.stream(other, None).unwrap().len(), 1);
}

fn an_event_id_under_another_loan_is_found_in_the_same_process<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let id = "11111111-2222-4333-8444-888888888888";
    let other = paid_with_id_beside_another_loan(&s, id);
    let mut reused = pay(&format!(r#","event_id":"{id}""#));
    reused.loan_id = other.into();
    let e = s
        .append(vec![reused], &mut OpenGate, store_now())
        .unwrap_err();
    assert!(
        matches!(e, AppendError::EventIdReused { index: 0, .. }),
        "{e:?}"
    );
}

fn recorded_at_must_not_go_backwards_nor_far_ahead<F: Fixture>() {
    let (s, _keep) = F::fresh();
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    let e = s
        .append(
            vec![pay(r#","recorded_at":"2024-03-01T11:59:59Z""#)],
            &mut OpenGate,
            store_now(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "recorded_at: 2024-03-01T11:59:59Z is earlier than the loan's previous event (2024-03-01T12:00:00Z)"
    );
    // Ahead of the store's clock: up to 5 minutes of skew is accepted, more is refused.
    let e = s
        .append(
            vec![pay(r#","recorded_at":"2024-03-01T12:05:01Z""#)],
            &mut OpenGate,
            store_now(),
        )
        .unwrap_err();
    assert!(
        matches!(e, AppendError::RecordedAtInFuture { index: 0, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "recorded_at: 2024-03-01T12:05:01Z is in the future (the store's clock is 2024-03-01T12:00:00Z; at most 300 s of clock skew is accepted)"
    );
    s.append(
        vec![pay(r#","recorded_at":"2024-03-01T12:05:00Z""#)],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    // Without recorded_at the store's clock is used, but never behind the previous event.
    let out = s
        .append(
            vec![pay("")],
            &mut OpenGate,
            store_now() - chrono::Duration::days(1),
        )
        .unwrap();
    assert_eq!(
        arrears_core::event::fmt_timestamp(&out[0].event.recorded_at),
        "2024-03-01T12:05:00Z"
    );
    // known_at selects the prefix recorded by then.
    let t = Utc.with_ymd_and_hms(2024, 3, 1, 12, 1, 0).unwrap();
    assert_eq!(s.stream(loan(), Some(t)).unwrap().len(), 1);
    assert_eq!(s.stream(loan(), None).unwrap().len(), 3);
}

#[derive(Debug, thiserror::Error)]
#[error("amount: refused by the gate")]
struct Refused;

struct RejectAmount(&'static str);
impl Gate for RejectAmount {
    type Rejection = Refused;
    fn check(&mut self, _: &[Event], c: &Event) -> Result<(), Refused> {
        match &c.body {
            Body::Payment(Payment { amount, .. }) if amount.to_string() == self.0 => Err(Refused),
            _ => Ok(()),
        }
    }
    fn fork(&self) -> Self {
        RejectAmount(self.0)
    }
}

fn a_batch_with_one_bad_event_writes_nothing<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let other_loan = Uuid::from_u128(9);
    let bad = event(&payment(LOAN, "2024-02-05", "66.00", ""));
    let e = s
        .append(
            vec![
                disbursed(),
                disbursed_for(other_loan),
                pay(""),
                bad,
                pay(""),
            ],
            &mut RejectAmount("66.00"),
            store_now(),
        )
        .unwrap_err();
    assert_eq!(e.index(), Some(3));
    assert!(matches!(
        e,
        AppendError::Rejected {
            reason: Refused,
            ..
        }
    ));
    assert!(s.heads().unwrap().is_empty());
    assert!(s.log(1, 10).unwrap().is_empty());
    assert_eq!(s.log_len().unwrap(), 0);
    assert!(s.stream(loan(), None).unwrap().is_empty());
    assert!(s.stream(other_loan, None).unwrap().is_empty());
}

fn reopen_keeps_everything<F: Fixture>() {
    let (s, keep) = F::fresh();
    s.append(vec![disbursed(), pay("")], &mut OpenGate, store_now())
        .unwrap();
    s.put_snapshots(vec![(loan(), b"snap".to_vec())]).unwrap();
    let before = s.stream(loan(), None).unwrap();
    let Some(s) = F::reopen(s, keep.as_ref()) else {
        return; // a store in memory has nothing to reopen
    };
    assert_eq!(s.stream(loan(), None).unwrap(), before);
    assert_eq!(&*s.snapshot(loan()).unwrap().unwrap(), b"snap");
    // The global log continues where it was.
    s.append(vec![pay("")], &mut OpenGate, store_now()).unwrap();
    assert_eq!(
        s.log(1, 10)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(s.verify().unwrap(), None);
}

/// Snapshots against a map: batches of new and rewritten snapshots, in and out of loan order,
/// a loan twice in one batch (the last wins), sizes from empty to larger than a sled page;
/// every loan's snapshot and the whole scan, in loan order, equal the model, also after a reopen.
fn snapshots_are_what_was_last_put<F: Fixture>() {
    let (s, keep) = F::fresh();
    let mut model = std::collections::BTreeMap::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let check = |s: &Store<F::B>, model: &std::collections::BTreeMap<Uuid, Vec<u8>>| {
        let mut scanned = Vec::new();
        s.for_each_snapshot(&mut |loan, bytes| {
            scanned.push((loan, bytes.to_vec()));
            Ok(())
        })
        .unwrap();
        let want: Vec<_> = model.iter().map(|(l, b)| (*l, b.clone())).collect();
        assert_eq!(scanned.len(), want.len());
        assert!(scanned == want, "the scan differs from the model");
        for (loan, bytes) in model {
            assert_eq!(&*s.snapshot(*loan).unwrap().unwrap(), &bytes[..]);
        }
        assert!(s.snapshot(Uuid::from_u128(u128::MAX)).unwrap().is_none());
    };
    for round in 0..12u64 {
        let mut batch = Vec::new();
        for i in 0..400u64 {
            // Loans from a pool of 3,000: new ones, and rewrites of stored ones.
            let loan = Uuid::from_u128(((next() % 3000) as u128) << 64 | 1);
            let len = match next() % 100 {
                0 => 0,
                1 => 20_000, // larger than a sled snapshot page
                _ => 100 + (next() % 600) as usize,
            };
            let bytes: Vec<u8> = (0..len).map(|j| (j as u64 ^ round ^ i) as u8).collect();
            batch.push((loan, bytes));
        }
        if round % 2 == 1 {
            batch.reverse();
        }
        // The same loan twice in one batch: the later one is what is stored.
        let again = batch[0].0;
        batch.push((again, vec![round as u8; 7]));
        for (loan, bytes) in &batch {
            model.insert(*loan, bytes.clone());
        }
        s.put_snapshots(batch).unwrap();
        if round % 4 == 3 {
            check(&s, &model);
        }
    }
    check(&s, &model);
    if let Some(s) = F::reopen(s, keep.as_ref()) {
        check(&s, &model);
    }
}

fn tampering_is_detected<F: Fixture>() {
    let (s, _keep) = F::fresh();
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    s.append(vec![pay("")], &mut OpenGate, store_now()).unwrap();
    let digest = s.digest().unwrap();
    let (pos, hash) = digest.split_once('-').unwrap();
    assert_eq!(s.check_digest(pos.parse().unwrap(), hash).unwrap(), Ok(()));
    // Flip one bit of the stored amount (10.00 → 10.01): it still decodes, but the hash breaks.
    let amount = rust_decimal::Decimal::new(1000, 2).serialize();
    // The payment is in the loan's last chunk (a backend may or may not merge appends).
    let last = s.raw_stream(loan()).unwrap().len() - 1;
    F::tamper(&s, &loan(), last, &mut |bytes| {
        let pos = bytes.windows(16).rposition(|w| w == amount).unwrap();
        bytes[pos + 4] ^= 1;
    });
    let stream = s.stream(loan(), None).unwrap();
    assert!(!chain_ok(&stream));
    let broken = s.verify().unwrap().expect("verify sees the edit");
    assert_eq!(broken.at, format!("loan {LOAN} seq 2"));
    assert_eq!(
        broken.why,
        "hash does not match the event's content (the event was edited)"
    );
    // A cut chunk is named, not a panic.
    F::tamper(&s, &loan(), last, &mut |bytes| {
        bytes.truncate(bytes.len() - 3)
    });
    assert!(matches!(
        s.stream(loan(), None).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
    assert!(s.verify().unwrap().is_some());
}

fn a_digest_beyond_the_log_does_not_verify<F: Fixture>() {
    let (s, _keep) = F::fresh();
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    let d = s.digest().unwrap();
    let (_, hash) = d.split_once('-').unwrap();
    let e = s.check_digest(99_999, hash).unwrap().unwrap_err();
    assert_eq!(
        e,
        "the digest covers log position 99999 but this store's log ends at 1"
    );
}

/// A writer that sealed its batch before another writer's commit (it saw head 0; the store is
/// at seq 1) is refused with `Raced`, and nothing of its batch is written. In one process the
/// store's writer lock prevents this; across processes (PostgreSQL) the backend must.
fn a_commit_from_a_stale_head_is_refused<F: Fixture>() {
    let (s, _keep) = F::fresh();
    s.append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap();
    let elsewhere = Store::new(MemoryBackend::new());
    let ev = elsewhere
        .append(vec![disbursed()], &mut OpenGate, store_now())
        .unwrap()
        .remove(0)
        .event;
    let stale = SealedBatch {
        loans: vec![SealedLoan {
            loan: loan(),
            prev_seq: 0,
            bodies: chunk::encode_events(std::slice::from_ref(&ev)),
            head: chunk::head_of(&ev),
            events: vec![ev.clone()],
        }],
        runs: vec![(loan(), 1, 1)],
        ids: vec![(ev.event_id.uuid(), loan(), 1)],
    };
    stale.assert_sealed();
    let e = s.backend().commit(&stale).unwrap_err();
    assert!(
        matches!(e, StoreError::Raced { loan: l } if l == loan()),
        "{e:?}"
    );
    assert_eq!(s.log_len().unwrap(), 1);
    assert_eq!(s.stream(loan(), None).unwrap().len(), 1);
    assert_eq!(s.verify().unwrap(), None);
}

/// A large batch (a backend may stream it while it is sealed) is stored whole; a large batch
/// whose last event is refused writes nothing, and the store takes the next batch.
fn a_large_batch_is_all_or_nothing<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let loans: Vec<Uuid> = (0..400).map(|i| Uuid::from_u128(0x5000 + i)).collect();
    let mut batch: Vec<NewEvent> = Vec::new();
    for l in &loans {
        batch.push(disbursed_for(*l));
        for _ in 0..4 {
            let mut p = pay("");
            p.loan_id = (*l).into();
            batch.push(p);
        }
    }
    let mut bad = event(&payment(LOAN, "2024-02-05", "66.00", ""));
    bad.loan_id = loans[7].into();
    let mut refused = batch.clone();
    refused.push(bad);
    let e = s
        .append(refused, &mut RejectAmount("66.00"), store_now())
        .unwrap_err();
    assert_eq!(e.index(), Some(2000), "{e:?}");
    assert_eq!(s.log_len().unwrap(), 0);
    assert!(s.heads().unwrap().is_empty());
    assert!(s.head_seqs().unwrap().is_empty());
    let out = s.append(batch, &mut OpenGate, store_now()).unwrap();
    assert_eq!(out.len(), 2000);
    assert_eq!(s.log_len().unwrap(), 2000);
    assert_eq!(s.heads().unwrap().len(), 400);
    assert_eq!(
        s.head_seqs().unwrap(),
        loans.iter().map(|l| (*l, 5)).collect::<Vec<_>>()
    );
    assert_eq!(s.stream(loans[399], None).unwrap().len(), 5);
    assert_eq!(s.verify().unwrap(), None);
    // Appending it again: every event is already stored.
    let mut again: Vec<NewEvent> = Vec::new();
    for a in &out {
        let mut n = pay("");
        n.loan_id = a.event.loan_id;
        n.event_id = Some(a.event.event_id);
        n.body = a.event.body.clone();
        again.push(n);
    }
    let out = s.append(again, &mut OpenGate, store_now()).unwrap();
    assert!(out.iter().all(|a| a.existed));
    assert_eq!(s.log_len().unwrap(), 2000);
}

/// Loans are sealed in parallel, yet the failure reported is the first in input order, as if
/// the events were sealed one by one: a gate rejection before a conflict, a conflict before a
/// gate rejection. Over 1,000 events, so that PostgreSQL streams (`STREAM_MIN_EVENTS`) the
/// loans sealed before the failure, which must not be stored either.
fn the_first_failure_in_input_order_is_reported<F: Fixture>() {
    let (s, _keep) = F::fresh();
    let loans: Vec<Uuid> = (0..600).map(|i| Uuid::from_u128(0x7000 + i)).collect();
    let pay_for = |l: Uuid, amount: &str, extra: &str| {
        let mut p = event(&payment(LOAN, "2024-02-05", amount, extra));
        p.loan_id = l.into();
        p
    };
    let mut batch: Vec<NewEvent> = Vec::new();
    for l in &loans {
        batch.push(disbursed_for(*l));
        batch.push(pay_for(*l, "10.00", ""));
    }
    // Index 1200: refused by the gate (a loan sealed late or early, whichever thread takes it).
    let mut gate_first = batch.clone();
    gate_first.push(pay_for(loans[450], "66.00", ""));
    gate_first.push(pay_for(loans[3], "10.00", r#","seq":9"#));
    let e = s
        .append(gate_first, &mut RejectAmount("66.00"), store_now())
        .unwrap_err();
    assert!(
        matches!(e, AppendError::Rejected { index: 1200, .. }),
        "{e:?}"
    );
    // Index 1200: a conflict; the gate would refuse index 1201.
    let mut conflict_first = batch.clone();
    conflict_first.push(pay_for(loans[3], "10.00", r#","seq":9"#));
    conflict_first.push(pay_for(loans[450], "66.00", ""));
    let e = s
        .append(conflict_first, &mut RejectAmount("66.00"), store_now())
        .unwrap_err();
    assert!(
        matches!(
            e,
            AppendError::Conflict {
                index: 1200,
                expected: 9,
                head: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // A rejection early in one loan and late in another: the earlier is reported.
    let mut two = batch.clone();
    two[2 * 500 + 1] = pay_for(loans[500], "66.00", "");
    two[2 * 10 + 1] = pay_for(loans[10], "66.00", "");
    let e = s
        .append(two, &mut RejectAmount("66.00"), store_now())
        .unwrap_err();
    assert!(
        matches!(e, AppendError::Rejected { index: 21, .. }),
        "{e:?}"
    );
    assert_eq!(s.log_len().unwrap(), 0);
    assert!(s.head_seqs().unwrap().is_empty());
    let out = s
        .append(batch, &mut RejectAmount("66.00"), store_now())
        .unwrap();
    assert_eq!(out.len(), 1200);
    assert_eq!(s.log_len().unwrap(), 1200);
    assert_eq!(s.verify().unwrap(), None);
}

macro_rules! backend_suite {
    ($module:ident, $fixture:ty) => {
        mod $module {
            use super::*;
            #[test]
            fn seqs_and_chain() {
                seqs_are_contiguous_and_the_chain_verifies::<$fixture>()
            }
            #[test]
            fn interleaved_loans() {
                streams_and_the_log_interleave_loans::<$fixture>()
            }
            #[test]
            fn head_seqs_over_the_log() {
                head_seqs_cover_the_whole_log::<$fixture>()
            }
            #[test]
            fn conflicts() {
                wrong_expected_seq_is_a_conflict_and_writes_nothing::<$fixture>()
            }
            #[test]
            fn idempotency() {
                same_event_id_is_idempotent_and_other_content_is_refused::<$fixture>()
            }
            #[test]
            fn idempotency_across_loans() {
                an_event_id_under_another_loan_is_found_in_the_same_process::<$fixture>()
            }
            #[test]
            fn recorded_at() {
                recorded_at_must_not_go_backwards_nor_far_ahead::<$fixture>()
            }
            #[test]
            fn all_or_nothing() {
                a_batch_with_one_bad_event_writes_nothing::<$fixture>()
            }
            #[test]
            fn reopen() {
                reopen_keeps_everything::<$fixture>()
            }
            #[test]
            fn tamper() {
                tampering_is_detected::<$fixture>()
            }
            #[test]
            fn first_failure_in_input_order() {
                the_first_failure_in_input_order_is_reported::<$fixture>()
            }
            #[test]
            fn large_batch() {
                a_large_batch_is_all_or_nothing::<$fixture>()
            }
            #[test]
            fn stale_commit_is_raced() {
                a_commit_from_a_stale_head_is_refused::<$fixture>()
            }
            #[test]
            fn snapshots() {
                snapshots_are_what_was_last_put::<$fixture>()
            }
            #[test]
            fn digest_beyond_the_log() {
                a_digest_beyond_the_log_does_not_verify::<$fixture>()
            }
        }
    };
}

backend_suite!(memory, Memory);
backend_suite!(sled, Sled);
backend_suite!(postgres, Postgres);

#[test]
fn sled_finds_an_event_id_under_another_loan_after_a_reopen() {
    an_event_id_stored_under_another_loan_is_found::<Sled>()
}

#[test]
fn postgres_finds_an_event_id_under_another_loan_after_a_reopen() {
    an_event_id_stored_under_another_loan_is_found::<Postgres>()
}
