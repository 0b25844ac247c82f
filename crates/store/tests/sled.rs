//! What only the sled backend has: creation and opening of a store directory, its lock, its
//! on-disk format (segments, fingerprints) and the upgrade from format 1. The behaviour every
//! backend shares is in `conformance.rs`.

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Event, NewEvent};
use arrears_store::sled_backend::{fingerprint, upgrade, FORMAT_VERSION, SEGMENT_LIMIT};
use arrears_store::testing::{log_entries, write_sled_format1};
use arrears_store::{chunk, Mode, OpenGate, SledBackend, Store, StoreError};
use arrears_testkit::events::event;
use arrears_testkit::{payment, store_now, temp_store};
use chrono::{TimeZone, Utc};
use std::path::Path;
use uuid::Uuid;

const LOAN: &str = "00000000-0000-0000-0000-0000000000aa";

fn disbursed(loan: &Uuid) -> NewEvent {
    event(&arrears_testkit::disbursed(loan))
}

fn pay(loan: &Uuid, reference: &str) -> NewEvent {
    let reference = format!(r#","reference":"{reference}""#);
    event(&payment(loan, "2024-02-05", "10.00", &reference))
}

fn create(dir: &Path) -> Store<SledBackend> {
    Store::new(SledBackend::open(dir, Mode::Create, None).unwrap())
}

fn existing(dir: &Path) -> Result<Store<SledBackend>, StoreError> {
    SledBackend::open(dir, Mode::Existing, None).map(Store::new)
}

#[test]
fn an_append_writes_one_segment_per_loan_and_later_appends_extend_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = create(&dir.path().join("db"));
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    s.append(
        vec![disbursed(&a), pay(&a, "1"), disbursed(&b)],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    s.append(vec![pay(&a, "2")], &mut OpenGate, store_now())
        .unwrap();
    let segments: Vec<_> = s
        .backend()
        .raw_tree()
        .scan_prefix([b'e'])
        .map(|kv| kv.unwrap())
        .collect();
    // One segment per loan: the second append rewrote loan a's segment.
    assert_eq!(segments.len(), 2);
    let sizes: Vec<usize> = segments
        .iter()
        .map(|(_, v)| chunk::decode(v).unwrap().len())
        .collect();
    assert_eq!(sizes, vec![3, 1]);
    // No per-event index values: the tree holds metadata, segments, log and fingerprint runs.
    let prefixes: std::collections::BTreeMap<u8, usize> =
        s.backend()
            .raw_tree()
            .iter()
            .fold(Default::default(), |mut m, kv| {
                *m.entry(kv.unwrap().0[0]).or_default() += 1;
                m
            });
    assert_eq!(
        prefixes,
        [(b'e', 2), (b'f', 2), (b'l', 2), (b'm', 2)]
            .into_iter()
            .collect()
    );
}

#[test]
fn a_long_stream_continues_in_a_new_segment_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = create(&dir.path().join("db"));
    let a = Uuid::from_u128(1);
    s.append(vec![disbursed(&a)], &mut OpenGate, store_now())
        .unwrap();
    let mut n = 1;
    while s.backend().raw_tree().scan_prefix([b'e']).count() < 3 {
        s.append(vec![pay(&a, &"x".repeat(200))], &mut OpenGate, store_now())
            .unwrap();
        n += 1;
        assert!(n < 10_000);
    }
    for kv in s.backend().raw_tree().scan_prefix([b'e']) {
        assert!(kv.unwrap().1.len() <= SEGMENT_LIMIT);
    }
    assert_eq!(s.stream(a, None).unwrap().len(), n);
    assert_eq!(s.heads().unwrap()[0].1.seq, n as u64);
    assert_eq!(s.verify().unwrap(), None);
}

#[test]
fn fingerprint_runs_are_merged_past_the_limit_and_still_find_ids() {
    let (_dir, path) = temp_store();
    let s = create(&path);
    s.backend().set_fp_run_limit(32);
    let ids: Vec<Uuid> = (0..40u128).map(|i| Uuid::from_u128(1000 + i)).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut d = disbursed(&Uuid::from_u128(i as u128 + 1));
        d.event_id = Some((*id).into());
        s.append(vec![d], &mut OpenGate, store_now()).unwrap();
    }
    let runs = s.backend().raw_tree().scan_prefix([b'f']).count();
    assert!(runs <= 32, "{runs} runs");
    drop(s);
    let s = existing(&path).unwrap();
    // Every id is still found under its own loan when reused for another.
    for (i, id) in ids.iter().enumerate().step_by(7) {
        let mut d = disbursed(&Uuid::from_u128(999));
        d.event_id = Some((*id).into());
        let e = s.append(vec![d], &mut OpenGate, store_now()).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "stored for loan {}",
                Uuid::from_u128(i as u128 + 1)
            )),
            "{e}"
        );
    }
    assert_ne!(fingerprint(&ids[0]), fingerprint(&ids[1]));
}

#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    for mode in [Mode::Create, Mode::Existing] {
        let e = SledBackend::open(dir.path(), mode, None).err().unwrap();
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "hello"
    );
    // A store path under a regular file is named as such.
    let under = dir.path().join("notes.txt").join("db");
    let e = SledBackend::open(&under, Mode::Create, None).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a parent of this path is a file, not a directory",
            under.display()
        )
    );
}

#[test]
fn newer_and_older_formats_are_refused_with_what_to_do() {
    let (_dir, path) = temp_store();
    {
        let s = create(&path);
        s.backend()
            .raw_tree()
            .insert(b"mformat", &99u32.to_be_bytes())
            .unwrap();
        s.backend().flush().unwrap();
    }
    let e = existing(&path).err().unwrap();
    assert!(matches!(e, StoreError::FormatTooNew { found: 99, .. }));
    assert!(
        e.to_string().contains(&format!(
            "has on-disk format 99; this build reads format {FORMAT_VERSION}"
        )),
        "{e}"
    );
    {
        let db = arrears_store::sled_backend::open_raw(&path).unwrap();
        db.open_tree("arrears")
            .unwrap()
            .insert(b"mformat", &1u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = existing(&path).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "the store at {p} has the older on-disk format 1; convert it once with `arrears --store {p} upgrade` (the original is kept beside it)",
            p = path.display()
        )
    );
}

#[test]
fn a_second_open_of_a_held_store_fails_at_once_naming_the_holder() {
    let (_dir, path) = temp_store();
    let _held = create(&path);
    let started = std::time::Instant::now();
    let e = existing(&path).err().unwrap();
    // A guard against waiting on the lock (a refusal is one failed `flock`), not a speed check.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    match &e {
        StoreError::Locked {
            holder: Some(h), ..
        } => {
            assert!(
                h.starts_with(&format!("pid {}: ", std::process::id())),
                "{h}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("retry, or pass --wait SECONDS"),
        "{e}"
    );
}

#[test]
fn upgrade_converts_format_1_keeping_ids_seqs_hashes_and_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    // Build the streams with a current store (memory), then lay them out as format 1.
    let mem = Store::new(arrears_store::MemoryBackend::new());
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    mem.append(
        vec![disbursed(&a), pay(&a, "1")],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    mem.append(vec![disbursed(&b)], &mut OpenGate, store_now())
        .unwrap();
    let streams = vec![mem.stream(a, None).unwrap(), mem.stream(b, None).unwrap()];
    let path = dir.path().join("db");
    write_sled_format1(&path, &streams);
    assert!(matches!(
        existing(&path).err().unwrap(),
        StoreError::FormatTooOld { found: 1, .. }
    ));
    let done = upgrade(&path).unwrap();
    assert_eq!((done.loans, done.events), (2, 3));
    let kept = done.kept.expect("format 1 is rebuilt beside the original");
    assert_eq!(kept, dir.path().join("db.format1"));
    assert!(kept.join("conf").exists());
    let s = existing(&path).unwrap();
    assert_eq!(s.verify().unwrap(), None);
    assert_eq!(s.stream(a, None).unwrap(), streams[0]);
    assert_eq!(s.stream(b, None).unwrap(), streams[1]);
    // The log keeps its positions (a's two events, then b's); the digest is the same as the
    // same streams give in any store.
    let log = log_entries(&s, 10);
    assert_eq!(log, vec![(1, a, 1), (2, a, 2), (3, b, 1)]);
    assert_eq!(s.digest().unwrap(), mem.digest().unwrap());
    // Ids stay idempotent after the upgrade, within and across loans.
    let again = NewEvent {
        event_id: Some(streams[0][1].event_id),
        ..pay(&a, "1")
    };
    assert!(s.append(vec![again], &mut OpenGate, store_now()).unwrap()[0].existed);
    let across = NewEvent {
        event_id: Some(streams[0][1].event_id),
        ..pay(&b, "1")
    };
    assert!(s.append(vec![across], &mut OpenGate, store_now()).is_err());
    // Upgrading twice is refused clearly.
    drop(s);
    assert!(upgrade(&path)
        .unwrap_err()
        .to_string()
        .contains("nothing to upgrade"));
}

#[test]
fn the_binary_encoding_round_trips_every_kind() {
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
        let new = event(line);
        let mut e = Event {
            event_id: Uuid::from_u128(i as u128 + 1).into(),
            loan_id: new.loan_id,
            seq: (i as u64 + 1).into(),
            recorded_at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            body: new.body,
            prev_hash: GENESIS,
            hash: GENESIS,
        };
        e.hash = compute_hash(&e);
        let one = std::slice::from_ref(&e);
        // Encoding 4 (sled's segments) and 3 (PostgreSQL, memory, sled format 2).
        let four = chunk::encode(one);
        let three = chunk::seal(&chunk::head_of(&e), &chunk::encode_events(one));
        for (bytes, encoding) in [(four, 4), (three, 3)] {
            assert_eq!(bytes[0], encoding);
            assert_eq!(chunk::header(&bytes).unwrap(), Some(chunk::head_of(&e)));
            let back = chunk::decode(&bytes).unwrap().remove(0);
            assert_eq!(back, e);
            assert_eq!(
                back.to_json(),
                e.to_json(),
                "rates keep their written scale"
            );
            assert_eq!(compute_hash(&back), e.hash);
        }
    }
}

#[test]
fn a_store_half_made_by_an_older_version_is_reported_and_then_finished() {
    let (_dir, path) = temp_store();
    // What a kill during sled's own creation leaves: `blobs/` (and maybe `db`) without `conf`.
    std::fs::create_dir_all(path.join("blobs")).unwrap();
    std::fs::write(path.join("db"), b"").unwrap();
    let e = existing(&path).err().unwrap();
    assert!(matches!(e, StoreError::HalfMade { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!(
            "`arrears --store {} append` finishes it",
            path.display()
        )),
        "{e}"
    );
    // The writer's open finishes it: a complete, empty store.
    let s = create(&path);
    assert!(s.heads().unwrap().is_empty());
    drop(s);
    assert!(existing(&path).is_ok());
}

#[test]
fn a_missing_store_is_not_created_by_a_reader_and_foreign_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let e = existing(&path).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "no arrears store at {} (append creates one)",
            path.display()
        )
    );
    assert!(!path.exists());
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        SledBackend::open(&path, Mode::Create, None).err().unwrap(),
        StoreError::NotAStore { .. }
    ));
    assert_eq!(
        std::fs::read_to_string(path.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn creation_leaves_no_temporary_directory_behind() {
    let (dir, path) = temp_store();
    drop(create(&path));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["db".to_owned()]);
    let _ = LOAN;
}

/// A store of two loans (a: 2 events, b: 1) as format 2 wrote it: segments of encoding 3.
/// Its digest.
fn format_2_store(path: &Path, a: Uuid, b: Uuid) -> String {
    let s = create(path);
    s.append(
        vec![disbursed(&a), pay(&a, "1"), disbursed(&b)],
        &mut OpenGate,
        store_now(),
    )
    .unwrap();
    // Rewrite it as format 2 would have stored it.
    let tree = s.backend().raw_tree();
    for kv in tree.scan_prefix([b'e']) {
        let (k, v) = kv.unwrap();
        let evs = chunk::decode(&v).unwrap();
        let three = chunk::seal(
            &chunk::head_of(evs.last().unwrap()),
            &chunk::encode_events(&evs),
        );
        tree.insert(k, three).unwrap();
    }
    tree.insert(b"mformat", &2u32.to_be_bytes()).unwrap();
    s.backend().flush().unwrap();
    s.digest().unwrap()
}

fn encodings(s: &Store<SledBackend>) -> Vec<u8> {
    s.backend()
        .raw_tree()
        .scan_prefix([b'e'])
        .map(|kv| kv.unwrap().1[0])
        .collect()
}

/// `upgrade` rebuilds a format-2 store beside it (compact; the original kept as DIR.format2).
#[test]
fn upgrade_rebuilds_a_format_2_store_with_the_same_events_and_digest() {
    let (dir, path) = temp_store();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let digest = format_2_store(&path, a, b);
    let done = upgrade(&path).unwrap();
    assert_eq!((done.loans, done.events, done.segments), (2, 3, 2));
    let kept = done.kept.expect("rebuilt beside the original");
    assert_eq!(kept, dir.path().join("db.format2"));
    let s = existing(&path).unwrap();
    assert_eq!(encodings(&s), vec![4, 4]);
    assert_eq!(s.verify().unwrap(), None);
    assert_eq!(s.digest().unwrap(), digest);
    // The upgraded store takes appends and finds ids across loans (one fingerprint run).
    s.append(vec![pay(&b, "1")], &mut OpenGate, store_now())
        .unwrap();
    assert_eq!(s.stream(b, None).unwrap().len(), 2);
}

/// Format 2 is read and appended to; the first append marks it format 3 and writes encoding 4;
/// `upgrade` then rewrites the rest in place. Events, verify and digest agree throughout.
#[test]
fn a_format_2_store_is_read_appended_to_and_upgraded_in_place() {
    let (_dir, path) = temp_store();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let digest = format_2_store(&path, a, b);
    let format = |s: &Store<SledBackend>| s.backend().raw_tree().get(b"mformat").unwrap().unwrap();
    {
        let s = existing(&path).unwrap();
        assert_eq!(encodings(&s), vec![3, 3]);
        assert_eq!(s.verify().unwrap(), None);
        assert_eq!(s.digest().unwrap(), digest);
        assert_eq!(s.stream(a, None).unwrap().len(), 2);
        s.append(vec![pay(&a, "2")], &mut OpenGate, store_now())
            .unwrap();
        assert_eq!(
            encodings(&s),
            vec![4, 3],
            "the rewritten segment is encoding 4"
        );
        assert_eq!(format(&s).as_ref(), &3u32.to_be_bytes());
        assert_eq!(s.verify().unwrap(), None);
    }
    let after_append = existing(&path).unwrap().digest().unwrap();
    let done = upgrade(&path).unwrap();
    assert_eq!((done.loans, done.events, done.segments), (2, 4, 1));
    assert_eq!(done.kept, None);
    let s = existing(&path).unwrap();
    assert_eq!(encodings(&s), vec![4, 4]);
    assert_eq!(s.verify().unwrap(), None);
    assert_eq!(s.digest().unwrap(), after_append);
    assert_eq!(s.stream(a, None).unwrap().len(), 3);
    drop(s);
    let again = upgrade(&path).unwrap_err().to_string();
    assert!(again.contains("already in format 3"), "{again}");
}

/// Every stored snapshot, as text, in the order the scan gives them.
fn snapshots(s: &Store<SledBackend>) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    s.for_each_snapshot(&mut |loan, bytes| {
        out.push((loan, String::from_utf8(bytes.to_vec()).unwrap()));
        Ok(())
    })
    .unwrap();
    out
}

fn loose_key(loan: &Uuid) -> Vec<u8> {
    [&b"s"[..], loan.as_bytes()].concat()
}

#[test]
fn loose_snapshots_of_older_builds_are_read_then_moved_into_pages() {
    let (_dir, path) = temp_store();
    let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let text = |v: &[(Uuid, &str)]| -> Vec<(Uuid, String)> {
        v.iter().map(|(l, s)| (*l, s.to_string())).collect()
    };
    {
        let s = create(&path);
        s.append(vec![disbursed(&a)], &mut OpenGate, store_now())
            .unwrap();
        s.put_snapshots(vec![(b, b"page-b".to_vec())]).unwrap();
        // As builds before snapshot pages wrote them: one value per loan. `b`'s was written
        // after its page entry (by an older build), so it is the newer and wins.
        let t = s.backend().raw_tree();
        for (loan, v) in [(a, "loose-a"), (b, "loose-b"), (c, "loose-c")] {
            t.insert(loose_key(&loan), v.as_bytes()).unwrap();
        }
        s.backend().flush().unwrap();
        assert_eq!(
            snapshots(&s),
            text(&[(a, "loose-a"), (b, "loose-b"), (c, "loose-c")])
        );
        assert_eq!(&*s.snapshot(b).unwrap().unwrap(), b"loose-b");
        // Writing a loan's snapshot puts it in a page and removes its loose value.
        s.put_snapshots(vec![(c, b"page-c".to_vec())]).unwrap();
        assert!(t.get(loose_key(&c)).unwrap().is_none());
        assert_eq!(
            snapshots(&s),
            text(&[(a, "loose-a"), (b, "loose-b"), (c, "page-c")])
        );
    }
    // `upgrade` packs the rest into pages.
    let done = upgrade(&path).unwrap();
    assert_eq!((done.segments, done.snapshots), (0, 2));
    let s = existing(&path).unwrap();
    let t = s.backend().raw_tree();
    assert_eq!(t.scan_prefix(b"s").count(), 0);
    assert_eq!(
        snapshots(&s),
        text(&[(a, "loose-a"), (b, "loose-b"), (c, "page-c")])
    );
    // A damaged page is a lost cache: its loans have no snapshot (they are replayed from their
    // events), and the next write over it replaces it.
    // Pages now: {a} (packed before the first page) and {b, c}; the second is damaged.
    assert_eq!(t.scan_prefix(b"p").count(), 2);
    let (k, _) = t.scan_prefix(b"p").next_back().unwrap().unwrap();
    t.insert(k, &[9u8][..]).unwrap();
    assert_eq!(snapshots(&s), text(&[(a, "loose-a")]));
    assert!(s.snapshot(c).unwrap().is_none());
    s.put_snapshots(vec![(b, b"again".to_vec())]).unwrap();
    assert_eq!(snapshots(&s), text(&[(a, "loose-a"), (b, "again")]));
    drop(s);
    let e = upgrade(&path).unwrap_err().to_string();
    assert!(e.contains("nothing to upgrade"), "{e}");
}
