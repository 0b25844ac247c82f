//! `arrears project` (no store) against `arrears replay` (the store): byte-identical §7 lines over
//! the exported events (JSON lines and Parquet), over sealed input events, over a partition of
//! the loans; broken chains and unsorted input rejected; Parquet export deterministic.

use std::path::Path;
use std::process::Output;

use arrears_testkit::{
    err, export_events_parquet, export_parquet, exported_events, generate, out, run, success,
};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

/// `arrears ARGS…` with no store involved (the `--store` given is never created).
fn project(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all = vec!["project"];
    all.extend_from_slice(args);
    run(BIN, dir.join("no-store"), &all, stdin)
}

fn ok(o: Output) -> String {
    success(&o)
}

/// A generated book appended to a store in `dir`; returns (store, book).
fn stored_book(dir: &Path, loans: u64, seed: u64) -> (std::path::PathBuf, String) {
    let store = dir.join("store");
    let book = generate(BIN, loans, seed);
    ok(run(
        BIN,
        &store,
        &["append", "--quiet", "--batch", "20000"],
        Some(&book),
    ));
    (store, book)
}

fn replay(store: &Path, extra: &[&str]) -> String {
    let mut args = vec!["replay"];
    args.extend_from_slice(extra);
    ok(run(BIN, store, &args, None))
}

#[test]
fn project_over_exported_events_equals_replay_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (store, book) = stored_book(dir.path(), 1500, 21);
    let events = exported_events(BIN, &store);
    let parquet = dir.path().join("events.parquet");
    export_events_parquet(BIN, &store, &parquet);
    assert_eq!(events.lines().count(), book.lines().count());
    for when in [
        vec!["--as-of", "2024-06-29"],
        vec!["--as-of", "2024-03-31"],
        vec![
            "--as-of",
            "2024-05-15",
            "--known-at",
            "2024-04-01T00:00:00Z",
        ],
    ] {
        let want = replay(&store, &when);
        assert!(want.lines().count() > 500, "{when:?}");
        let got = ok(project(dir.path(), &when, Some(&events)));
        assert!(
            got == want,
            "project over JSON lines differs from replay {when:?}"
        );
        let mut args = when.clone();
        args.extend(["--format", "parquet", parquet.to_str().unwrap()]);
        let got = ok(project(dir.path(), &args, None));
        assert!(
            got == want,
            "project over Parquet differs from replay {when:?}"
        );
        // One thread gives the same bytes.
        let mut args = when.clone();
        args.extend(["--jobs", "1"]);
        assert!(ok(project(dir.path(), &args, Some(&events))) == want);
    }
}

#[test]
fn project_of_input_events_equals_append_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, book) = stored_book(dir.path(), 800, 22);
    let want = replay(&store, &["--as-of", "2024-06-29"]);
    let o = project(dir.path(), &["--as-of", "2024-06-29"], Some(&book));
    assert!(ok(o.clone()) == want);
    assert!(err(&o).contains("sealed"), "{}", err(&o));
    // A file argument and standard input give the same.
    let file = dir.path().join("book.jsonl");
    std::fs::write(&file, &book).unwrap();
    let got = ok(project(
        dir.path(),
        &["--as-of", "2024-06-29", file.to_str().unwrap()],
        None,
    ));
    assert!(got == want);
    // Invalid input events are rejected as `append` rejects them, naming the line.
    let bad = book.replacen("\"principal\":\"", "\"principal\":\"-", 1);
    let o = project(dir.path(), &["--as-of", "2024-06-29"], Some(&bad));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("line 1: principal"), "{}", err(&o));
}

#[test]
fn project_over_a_partition_of_the_loans_equals_the_matching_replay_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = stored_book(dir.path(), 1200, 23);
    let events = exported_events(BIN, &store);
    let want = replay(&store, &["--as-of", "2024-06-29"]);
    let loan_of = |line: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["loan_id"].as_str().unwrap().to_owned()
    };
    // Two partitions by the loan id's first hex digit, as a hash partitioner would split them.
    let low = |loan: &str| loan.as_bytes()[0] < b'8';
    for side in [true, false] {
        let part: String = events
            .lines()
            .filter(|l| low(&loan_of(l)) == side)
            .map(|l| format!("{l}\n"))
            .collect();
        let expect: String = want
            .lines()
            .filter(|l| low(&loan_of(l)) == side)
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!expect.is_empty());
        let got = ok(project(dir.path(), &["--as-of", "2024-06-29"], Some(&part)));
        assert!(got == expect, "partition {side} differs");
    }
}

#[test]
fn project_rejects_a_broken_chain_naming_loan_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = stored_book(dir.path(), 200, 24);
    let events = exported_events(BIN, &store);
    let lines: Vec<&str> = events.lines().collect();
    let (i, payment) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("\"type\":\"payment\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(payment).unwrap();
    let (loan, seq, amount) = (
        v["loan_id"].as_str().unwrap(),
        v["seq"].as_u64().unwrap(),
        v["amount"].as_str().unwrap(),
    );
    let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut all: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    // An edited amount: the recomputed hash does not match.
    all[i] = payment.replace(
        &format!("\"amount\":\"{amount}\""),
        "\"amount\":\"999999.00\"",
    );
    let o = project(dir.path(), &["--as-of", "2024-06-29"], Some(&join(&all)));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!(
            "line {}: loan {loan} seq {seq}: hash does not match",
            i + 1
        )),
        "{e}"
    );

    // A removed event: the next one's seq does not follow.
    all[i] = payment.to_string();
    let removed: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, l)| l.clone())
        .collect();
    if lines.get(i + 1).is_some_and(|l| l.contains(loan)) {
        let o = project(
            dir.path(),
            &["--as-of", "2024-06-29"],
            Some(&join(&removed)),
        );
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            err(&o).contains(&format!("loan {loan} seq {}: expected seq {seq}", seq + 1)),
            "{}",
            err(&o)
        );
    }

    // Loans out of order: rejected when streaming, accepted with --any-order.
    let reversed: Vec<String> = all.iter().rev().cloned().collect();
    let o = project(
        dir.path(),
        &["--as-of", "2024-06-29"],
        Some(&join(&reversed)),
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("must be sorted by loan_id"), "{}", err(&o));
    let got = ok(project(
        dir.path(),
        &["--as-of", "2024-06-29", "--any-order"],
        Some(&join(&reversed)),
    ));
    assert!(got == replay(&store, &["--as-of", "2024-06-29"]));

    // A stored stream that turns into input events half way is named.
    let mut mixed = all.clone();
    mixed[1] = generate(BIN, 1, 99).lines().next().unwrap().to_owned();
    let o = project(dir.path(), &["--as-of", "2024-06-29"], Some(&join(&mixed)));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("line 2: "), "{}", err(&o));
}

#[test]
fn parquet_input_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = stored_book(dir.path(), 50, 25);
    let proj = dir.path().join("proj.parquet");
    let p = proj.to_str().unwrap();
    export_parquet(BIN, &store, "2024-06-29", &proj);
    // A projections file is not an events file.
    let o = project(
        dir.path(),
        &["--as-of", "2024-06-29", "--format", "parquet", p],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no `json` column"), "{}", err(&o));
    // A Parquet file read as JSON lines.
    let o = project(dir.path(), &["--as-of", "2024-06-29", p], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("pass --format parquet"), "{}", err(&o));
    // --events takes no date; CSV has no events form.
    let o = run(
        BIN,
        &store,
        &[
            "export",
            "--events",
            "--format",
            "parquet",
            "--as-of",
            "2024-06-29",
            "--out",
            p,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = run(BIN, &store, &["export", "--events"], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn parquet_export_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (store, book) = stored_book(dir.path(), 600, 26);
    // A second store from the same book (same ids and recorded_at) must give the same files.
    let store2 = dir.path().join("store2");
    ok(run(BIN, &store2, &["append", "--quiet"], Some(&book)));
    let mut files = Vec::new();
    for (k, s) in [&store, &store, &store2].iter().enumerate() {
        let ev = dir.path().join(format!("ev{k}.parquet"));
        let pr = dir.path().join(format!("pr{k}.parquet"));
        export_events_parquet(BIN, s, &ev);
        export_parquet(BIN, s, "2024-06-29", &pr);
        files.push((std::fs::read(ev).unwrap(), std::fs::read(pr).unwrap()));
    }
    assert!(files[0].0.starts_with(b"PAR1") && files[0].1.starts_with(b"PAR1"));
    assert!(files[0] == files[1], "two exports of one store differ");
    assert!(
        files[0] == files[2],
        "exports of two stores of one book differ"
    );
}

#[test]
fn empty_input_projects_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for input in ["", "\n\n"] {
        let o = project(dir.path(), &["--as-of", "2024-06-29"], Some(input));
        assert!(o.status.success(), "{}", err(&o));
        assert!(out(&o).is_empty());
        assert!(err(&o).contains("no events"), "{}", err(&o));
    }
}
