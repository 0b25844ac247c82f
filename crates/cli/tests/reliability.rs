//! Concurrent writers, hostile input, overflow safety, tamper evidence and store misuse.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use arrears_cli::ledger::{parse_line, AppendOptions, AppendReport, Failure, Ledger};
use arrears_core::chain::compute_hash;
use arrears_core::Policy;
use arrears_store::{chunk, AppendError};
use arrears_testkit::{command, err, now, payment, temp_store, Disbursed};
use proptest::prelude::*;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");
const LOAN: &str = "0f000000-0000-4000-8000-000000000001";

fn disbursed(loan: &str, principal: &str, rate: &str) -> String {
    Disbursed::new(loan)
        .principal(principal)
        .daily_rate(rate)
        .penalty_multiplier("1")
        .to_string()
}

fn ledger(dir: &Path) -> Ledger {
    Ledger::open_sled(dir, Policy::default()).unwrap()
}

/// Append JSON lines as one all-or-nothing batch.
fn append_text(l: &Ledger, text: &str) -> Result<AppendReport, Failure> {
    let opts = AppendOptions {
        batch: None,
        skip_lines: 0,
        now: now(),
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    l.append_reader(text.as_bytes(), &opts, &never, &mut |_, _| Ok(()))
}

/// The raw sled tree of a store directory whose ledger has been dropped (for tampering).
fn raw_tree(store: &Path) -> (sled::Db, sled::Tree) {
    let db = arrears_store::sled_backend::open_raw(store).unwrap();
    let tree = db.open_tree("arrears").unwrap();
    (db, tree)
}

#[test]
fn concurrent_writers_never_leave_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(ledger(dir.path()));
    let p = Policy::default();
    let loans: Vec<String> = (1..=3).map(|i| Uuid::from_u128(i).to_string()).collect();
    let first: Vec<_> = loans
        .iter()
        .map(|loan| parse_line(&disbursed(loan, "1000.00", "0.0005"), 1, &p).unwrap())
        .collect();
    l.append(first, now()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = Arc::clone(&l);
            let loans = loans.clone();
            std::thread::spawn(move || {
                let p = Policy::default();
                let (mut won, mut lost) = (0u64, 0u64);
                for k in 0..40 {
                    let loan = &loans[(t + k) % loans.len()];
                    let head = l.store().stream(loan.parse().unwrap(), None).unwrap().len() as u64;
                    let line = payment(
                        loan,
                        "2024-01-15",
                        "0.01",
                        &format!(r#","seq":{}"#, head + 1),
                    );
                    match l.append(vec![parse_line(&line, 1, &p).unwrap()], now()) {
                        Ok(_) => won += 1,
                        Err(AppendError::Conflict {
                            expected, head: h, ..
                        }) => {
                            assert_eq!(expected, head + 1);
                            assert!(h > head, "a conflict means someone else appended");
                            lost += 1;
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                (won, lost)
            })
        })
        .collect();
    let (mut won, mut lost) = (0, 0);
    for t in threads {
        let (w, x) = t.join().unwrap();
        won += w;
        lost += x;
    }
    assert_eq!(won + lost, 320);
    assert!(lost > 0, "8 threads on 3 loans must collide");
    let mut total = 0;
    for loan in &loans {
        let s = l.store().stream(loan.parse().unwrap(), None).unwrap();
        let seqs: Vec<u64> = s.iter().map(|e| e.seq.get()).collect();
        assert_eq!(
            seqs,
            (1..=s.len() as u64).collect::<Vec<_>>(),
            "no gap, no duplicate"
        );
        total += s.len() as u64 - 1;
    }
    assert_eq!(total, won, "every winner is stored, no loser is");
    assert_eq!(l.verify().unwrap(), None);
}

/// Feed one line through parse, validate and append; it must be refused without a panic, and
/// the store must not change.
fn refused(l: &Ledger, line: &str) -> String {
    let before = l.store().log_len().unwrap();
    let input = format!("{}\n{line}\n", disbursed(LOAN, "1000.00", "0.0005"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| append_text(l, &input)));
    let e = match r {
        Err(_) => panic!("panicked on {line:.200}"),
        Ok(Ok(_)) => panic!("accepted {line:.200}"),
        Ok(Err(e)) => e,
    };
    assert_eq!(e.exit_code(), 2, "{e}");
    assert_eq!(l.store().log_len().unwrap(), before, "the store changed");
    let msg = e.to_string();
    assert!(msg.starts_with("line 2: "), "{msg:.200}");
    msg
}

#[test]
fn hostile_lines_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let pay = |amount: &str| {
        format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":{amount}}}"#)
    };
    let cases: Vec<(String, &str)> = vec![
        (pay("1e400"), "not valid JSON"),
        (
            pay("18446744073709551616000"),
            "amount: expected a string, got a JSON number",
        ),
        (
            pay(r#""0.000000000000000000000000000001""#),
            "more than 2 decimal places",
        ),
        (
            pay(r#""99999999999999999999999999999999""#),
            "more digits than the ledger accepts",
        ),
        (pay(r#""١٠٠""#), "is not a decimal number"),
        (
            pay(&format!("\"{}\"", "9".repeat(1_000_000))),
            "more digits than the ledger accepts",
        ),
        (
            pay(&("{\"a\":".repeat(200) + "1" + &"}".repeat(200))),
            "not valid JSON",
        ),
        (
            format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"0000-00-00","amount":"1.00"}}"#),
            "on: `0000-00-00` is not a date",
        ),
        (
            format!(
                r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","reference":"{}"}}"#,
                "x".repeat(1_000_000)
            ),
            "reference: is longer than 256 characters",
        ),
        (
            format!(
                r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"1.00","type":"payment"}}"#
            ),
            "type: appears twice",
        ),
        (
            format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"2023-12-31","amount":"1.00"}}"#),
            "on: payment on 2023-12-31 is before the disbursement on 2024-01-01",
        ),
        (
            format!(
                r#"{{"loan_id":"{LOAN}","type":"missed","installment":4294967296,"observed_on":"2024-02-05"}}"#
            ),
            "installment: must be between 1 and 4294967295",
        ),
        (
            format!(
                r#"{{"loan_id":"{LOAN}","type":"missed","installment":2,"observed_on":"2024-02-05"}}"#
            ),
            "installment: the loan has no installment 2",
        ),
        (
            format!(
                r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"2024-02-05","new_due_on":"9999-12-31","waive_penalty":"1000.00"}}"#
            ),
            "waive_penalty: 1000.00 is more than the unpaid penalty",
        ),
        ("\u{feff}{}".to_owned(), "not valid JSON"),
        ("null".to_owned(), "an event must be a JSON object"),
        ("\"💥\"".to_owned(), "an event must be a JSON object"),
        (
            disbursed(LOAN, "1000.00", "0.0005"),
            "type: the loan is already disbursed",
        ),
        (
            disbursed(
                "0f000000-0000-4000-8000-000000000002",
                "1000000000000000.00",
                "1",
            ),
            "exceeds the policy cap",
        ),
    ];
    for (line, want) in cases {
        let msg = refused(&l, &line);
        assert!(msg.contains(want), "{want:?} not in {msg:.300}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Random mutations of valid lines: never a panic; either stored whole or refused with a
    /// message that names the line, leaving the store unchanged.
    #[test]
    fn mutated_lines_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400, which in 0usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let lines = [
            disbursed(LOAN, "1000.00", "0.0005"),
            format!(r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"500.00","reference":"银行-1"}}"#),
            format!(r#"{{"loan_id":"{LOAN}","type":"missed","installment":1,"observed_on":"2024-02-10"}}"#),
            format!(r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"2024-02-20","new_due_on":"2024-03-20","waive_penalty":"all","waive_interest":"1.00"}}"#),
        ];
        let mut bytes = lines[which].clone().into_bytes();
        let p = pos % bytes.len();
        bytes[p] = byte;
        bytes.truncate(bytes.len().min(cut.max(1) + 200));
        let mutated = String::from_utf8_lossy(&bytes).into_owned().replace('\n', " ");
        let input = if which == 0 { format!("{mutated}\n") } else { format!("{}\n{mutated}\n", lines[0]) };
        let before = l.store().log_len().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| append_text(&l, &input)));
        prop_assert!(r.is_ok(), "panic on {mutated}");
        match r.unwrap() {
            Ok(r) => prop_assert_eq!(l.store().log_len().unwrap(), before + r.new),
            Err(e) => {
                prop_assert_eq!(e.exit_code(), 2, "{}", e);
                prop_assert!(e.to_string().starts_with("line "), "{}", e);
                prop_assert_eq!(l.store().log_len().unwrap(), before);
            }
        }
    }
}

#[test]
fn a_huge_principal_over_a_century_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    // 10^15 at 0.000986 per day (APR 0.35989, under the cap), bullet 30 days, never paid.
    let line = disbursed(LOAN, "1000000000000000.00", "0.000986");
    l.append(
        vec![parse_line(&line, 1, &Policy::default()).unwrap()],
        now(),
    )
    .unwrap();
    let as_of = arrears_core::Date::from_ymd(2124, 1, 31).unwrap();
    let p = l.show(LOAN.parse().unwrap(), as_of, None).unwrap();
    // Interest 10^15 × 0.000986 × 30 = 29,580,000,000,000.00; B = 1,029,580,000,000,000.00;
    // daily penalty (multiplier 1) = 1,015,165,880,000.00 exactly; days from 2024-02-01 to
    // 2124-01-31 inclusive.
    let days = arrears_core::Date::from_ymd(2024, 1, 31)
        .unwrap()
        .days_until(as_of);
    assert_eq!(days, 36_524);
    assert_eq!(
        arrears_core::money::fmt_amount(p.outstanding.interest),
        "29580000000000.00"
    );
    let want =
        rust_decimal::Decimal::new(101_516_588_000_000, 2) * rust_decimal::Decimal::from(days);
    assert_eq!(
        arrears_core::money::fmt_amount(p.penalty_accrued),
        arrears_core::money::fmt_amount(want)
    );
    assert_eq!(
        arrears_core::money::fmt_amount(p.penalty_accrued),
        "37077918601120000.00"
    );
    assert_eq!(p.stage.as_str(), "legal");
    assert_eq!(p.class, "loss");
}

/// Apply `edit` to the raw chunks of one loan (decoded), write them back under the original
/// chunk header (as a naive edit of the events' bytes would leave it), and return what `verify`
/// says.
fn tamper(edit: impl FnOnce(&mut Vec<arrears_core::Event>)) -> String {
    tamper_with(edit, false)
}

/// As [`tamper`]; with `fix_header` the chunk's header is rewritten to match the edited events
/// too (a careful forger).
fn tamper_with(edit: impl FnOnce(&mut Vec<arrears_core::Event>), fix_header: bool) -> String {
    let (_dir, store) = temp_store();
    {
        let l = ledger(&store);
        let p = Policy::default();
        for line in [
            disbursed(LOAN, "1000.00", "0.0005"),
            format!(
                r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-05","amount":"10.00"}}"#
            ),
            format!(
                r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-06","amount":"20.00"}}"#
            ),
            format!(
                r#"{{"loan_id":"{LOAN}","type":"payment","on":"2024-02-07","amount":"30.00"}}"#
            ),
        ] {
            l.append(vec![parse_line(&line, 1, &p).unwrap()], now())
                .unwrap();
        }
        // Rewrite the loan as one chunk after the edit.
        let mut events = l.store().stream(LOAN.parse().unwrap(), None).unwrap();
        drop(l);
        let (db, tree) = raw_tree(&store);
        let original = chunk::head_of(events.last().unwrap());
        for k in tree.scan_prefix([b'e']).keys() {
            tree.remove(k.unwrap()).unwrap();
        }
        edit(&mut events);
        let head = if fix_header {
            chunk::head_of(events.last().unwrap())
        } else {
            original
        };
        let mut key = vec![b'e'];
        key.extend_from_slice(Uuid::parse_str(LOAN).unwrap().as_bytes());
        key.extend_from_slice(&1u64.to_be_bytes());
        tree.insert(key, chunk::seal(&head, &chunk::encode_events(&events)))
            .unwrap();
        db.flush().unwrap();
    }
    let out = command(BIN, &store).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "tampering went unnoticed");
    err(&out)
}

#[test]
fn verify_names_the_first_broken_event() {
    let at = |seq: u64| format!("broken at loan {LOAN} seq {seq}:");
    // Edited: an amount changed, the hash kept.
    let e = tamper(|evs| {
        if let arrears_core::Body::Payment(p) = &mut evs[2].body {
            p.amount += arrears_core::money::Money::from_cents(100);
        }
    });
    assert!(
        e.contains(&at(3)) && e.contains("hash does not match"),
        "{e}"
    );
    // Edited and re-hashed: the next event's prev_hash no longer matches.
    let e = tamper(|evs| {
        evs[1].recorded_at += chrono::Duration::seconds(1);
        evs[1].hash = compute_hash(&evs[1]);
    });
    assert!(
        e.contains(&at(3)) && e.contains("prev_hash does not match"),
        "{e}"
    );
    // Deleted from the middle.
    let e = tamper(|evs| {
        evs.remove(1);
    });
    assert!(e.contains(&at(2)), "{e}");
    // Reordered.
    let e = tamper(|evs| evs.swap(1, 2));
    assert!(e.contains(&at(2)), "{e}");
    // Inserted: a forged event with a correct-looking seq and hash.
    let e = tamper(|evs| {
        let mut forged = evs[1].clone();
        forged.event_id = Uuid::from_u128(99).into();
        forged.hash = compute_hash(&forged);
        evs.insert(2, forged);
    });
    assert!(e.contains(&at(3)), "{e}");
    // Deleted at the end: the chunk header still remembers seq 4.
    let e = tamper(|evs| {
        evs.pop();
    });
    assert!(
        e.contains("the chunk header says seq 4 but its last event is seq 3"),
        "{e}"
    );
    // Deleted at the end by a forger who also rewrote the header: the global log still counts
    // four events of the loan (and `verify --digest` catches it too: cli.rs).
    let e = tamper_with(
        |evs| {
            evs.pop();
        },
        true,
    );
    assert!(e.contains("4 log entries for 3 events"), "{e}");
    // Undecodable bytes are corruption with a position.
    let e = {
        let (_dir, store) = temp_store();
        {
            let l = ledger(&store);
            l.append(
                vec![
                    parse_line(&disbursed(LOAN, "1000.00", "0.0005"), 1, &Policy::default())
                        .unwrap(),
                ],
                now(),
            )
            .unwrap();
            drop(l);
            let (db, tree) = raw_tree(&store);
            let (k, v) = tree.scan_prefix([b'e']).next().unwrap().unwrap();
            tree.insert(k, &v[..v.len() / 2]).unwrap();
            db.flush().unwrap();
            assert!(chunk::decode(&tree.scan_prefix([b'e']).next().unwrap().unwrap().1).is_err());
        }
        let out = command(BIN, &store).arg("verify").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        err(&out)
    };
    assert!(e.contains(&at(1)) && e.contains("corrupt"), "{e}");
}

#[test]
fn a_store_held_by_another_process_is_refused_at_once() {
    let (_dir, store) = temp_store();
    // `append` from a stdin that never closes holds the store open.
    let mut holder = command(BIN, &store)
        .arg("append")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it holds sled's lock: the kernel lists the flock on the store's `db` file in
    // /proc/locks. No timing is assumed: we wait for the fact itself (or for the holder to die).
    loop {
        if let Some(status) = holder.try_wait().unwrap() {
            panic!("the holder exited early: {status}");
        }
        if let Ok(meta) = std::fs::metadata(store.join("db")) {
            use std::os::unix::fs::MetadataExt;
            let suffix = format!(":{} ", meta.ino());
            let locks = std::fs::read_to_string("/proc/locks").unwrap();
            if locks
                .lines()
                .any(|l| l.contains("FLOCK") && format!("{l} ").contains(&suffix))
            {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let started = std::time::Instant::now();
    let out = command(BIN, &store).arg("verify").output().unwrap();
    let elapsed = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("is in use by another process"),
        "{}",
        err(&out)
    );
    // A guard against waiting on the lock, not a speed check: a refusal is one failed
    // `flock`, so even a very slow machine stays far below this.
    assert!(
        elapsed < std::time::Duration::from_secs(60),
        "it hung for {elapsed:?}"
    );
}

#[test]
fn a_newer_on_disk_format_is_refused_by_the_cli() {
    let (_dir, store) = temp_store();
    {
        drop(ledger(&store));
        let (db, tree) = raw_tree(&store);
        tree.insert(b"mformat", &7u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let out = command(BIN, &store).args(["show", LOAN]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("has on-disk format 7; this build reads format 3 — upgrade arrears"));
}
