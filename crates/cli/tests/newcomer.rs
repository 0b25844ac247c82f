//! What a newcomer meets first, with the exact messages: dates in the lender's time zone, a
//! `recorded_at` from the future, a BOM, pretty-printed JSON, unknown loans, file-system
//! mistakes, empty input, quiet and re-run summaries, and digests from beyond the log.

use std::path::Path;

use arrears_testkit::{command, disbursed, err, generate, out, payment, run, signal, temp_store};
use chrono::Utc;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");
const LOAN: &str = "0f000000-0000-4000-8000-000000000001";

fn code(store: &Path, args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let o = run(BIN, store, args, stdin);
    (o.status.code(), out(&o), err(&o))
}

#[test]
fn dates_left_out_are_today_in_the_business_time_zone() {
    let (_d, s) = temp_store();
    assert_eq!(
        code(&s, &["append", "--quiet"], Some(&disbursed(LOAN))).0,
        Some(0)
    );
    let today_in = |tz: chrono_tz::Tz| Utc::now().with_timezone(&tz).date_naive().to_string();
    for (args, tz) in [
        (vec!["show", LOAN, "--json"], chrono_tz::Asia::Shanghai),
        (
            vec!["--tz", "America/Los_Angeles", "show", LOAN, "--json"],
            chrono_tz::America::Los_Angeles,
        ),
    ] {
        let before = today_in(tz);
        let (c, o, e) = code(&s, &args, None);
        let after = today_in(tz);
        assert_eq!(c, Some(0), "{e}");
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        let as_of = v["as_of"].as_str().unwrap();
        assert!(as_of == before || as_of == after, "{as_of} vs {before}");
    }
    let (c, _, e) = code(&s, &["--tz", "Mars/Olympus", "show", LOAN], None);
    assert_eq!(c, Some(2));
    assert!(
        e.contains("--tz: `Mars/Olympus` is not an IANA time zone name"),
        "{e}"
    );
}

#[test]
fn a_recorded_at_in_the_future_is_refused_naming_the_field() {
    let (_d, s) = temp_store();
    let line = format!("{}\n", disbursed(LOAN));
    assert_eq!(code(&s, &["append", "--quiet"], Some(&line)).0, Some(0));
    let future = payment(
        LOAN,
        "2024-01-10",
        "5.00",
        r#","recorded_at":"2099-01-01T00:00:00Z""#,
    );
    let (c, o, e) = code(&s, &["append"], Some(&future));
    assert_eq!(c, Some(2), "{e}");
    assert!(o.is_empty());
    assert!(
        e.contains("line 1: recorded_at: 2099-01-01T00:00:00Z is in the future"),
        "{e}"
    );
    // Nothing was written: the loan still has one event.
    assert_eq!(
        code(&s, &["events", LOAN, "--json"], None)
            .1
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_byte_order_mark_is_skipped_and_pretty_json_is_explained() {
    let (_d, s) = temp_store();
    let bom = format!("\u{feff}{}\n", disbursed(LOAN));
    let (c, _, e) = code(&s, &["append", "--quiet"], Some(&bom));
    assert_eq!(c, Some(0), "{e}");
    let pretty =
        "{\n  \"loan_id\": \"0f000000-0000-4000-8000-000000000001\",\n  \"type\": \"payment\"\n}\n";
    let (c, _, e) = code(&s, &["append"], Some(pretty));
    assert_eq!(c, Some(2));
    assert!(
        e.contains("line 1: ") && e.contains("each event must be one JSON object on one line"),
        "{e}"
    );
}

#[test]
fn a_payment_for_a_loan_not_in_the_store_says_so() {
    let (_d, s) = temp_store();
    assert_eq!(
        code(&s, &["append", "--quiet"], Some(&disbursed(LOAN))).0,
        Some(0)
    );
    let other = "0f000000-0000-4000-8000-0000000000ff";
    let (c, _, e) = code(
        &s,
        &["append"],
        Some(&payment(other, "2024-01-10", "5.00", "")),
    );
    assert_eq!(c, Some(2));
    assert!(
        e.contains(&format!(
            "line 1: loan_id: the loan is not in the store at {} (its `disbursed` event must come first)",
            s.display()
        )),
        "{e}"
    );
}

#[test]
fn file_system_mistakes_are_exit_1_naming_the_path() {
    let (d, s) = temp_store();
    let missing = d.path().join("nope.jsonl");
    let (c, _, e) = code(&s, &["append", missing.to_str().unwrap()], None);
    assert_eq!(c, Some(1));
    assert!(
        e.contains(&format!("{}: No such file", missing.display())),
        "{e}"
    );
    let (c, _, e) = code(&s, &["append", d.path().to_str().unwrap()], None);
    assert_eq!(c, Some(1));
    assert!(e.contains("is a directory, not a file of events"), "{e}");
    // --store under a regular file.
    let file = d.path().join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    let under = file.join("db");
    let (c, _, e) = code(&under, &["append"], Some(&disbursed(LOAN)));
    assert_eq!(c, Some(1));
    assert!(
        e.contains(&format!(
            "{}: a parent of this path is a file, not a directory",
            under.display()
        )),
        "{e}"
    );
    assert!(!s.exists());
}

#[test]
fn empty_input_quiet_runs_and_re_runs_say_what_happened() {
    let (_d, s) = temp_store();
    let (c, o, e) = code(&s, &["append"], Some(""));
    assert_eq!(c, Some(0));
    assert!(o.is_empty());
    assert_eq!(e.trim(), "no events in standard input: nothing appended");
    let book = generate(BIN, 20, 4);
    let (c, o, e) = code(&s, &["append", "--quiet"], Some(&book));
    assert_eq!(
        (c, o.as_str(), e.as_str()),
        (Some(0), "", ""),
        "--quiet is quiet"
    );
    let n = book.lines().count();
    let (c, o, e) = code(&s, &["append"], Some(&book));
    assert_eq!(c, Some(0));
    assert_eq!(o.lines().count(), n, "each stored event is acknowledged");
    assert_eq!(
        e.trim(),
        format!("appended standard input: 0 new, {n} already stored")
    );
}

#[test]
fn sweep_counts_in_words_and_a_digest_from_beyond_the_log_fails() {
    let (_d, s) = temp_store();
    assert_eq!(
        code(&s, &["append", "--quiet"], Some(&disbursed(LOAN))).0,
        Some(0)
    );
    let (c, _, e) = code(&s, &["sweep", "--as-of", "2024-02-05"], None);
    assert_eq!(c, Some(0));
    assert_eq!(e.trim(), "sweep 2024-02-05: recorded 1 miss");
    let (_, d, _) = code(&s, &["digest"], None);
    let (_, hash) = d.trim().split_once('-').unwrap();
    let (c, _, e) = code(&s, &["verify", "--digest", &format!("99999-{hash}")], None);
    assert_eq!(c, Some(1));
    assert!(
        e.contains("the digest covers log position 99999 but this store's log ends at 2"),
        "{e}"
    );
}

#[test]
fn interrupted_batches_report_what_is_stored_and_a_re_run_with_ids_stores_nothing_twice() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let (_d, s) = temp_store();
    let book = generate(BIN, 200, 8);
    let total = book.lines().count();
    // Feed two batches, wait until the first is acknowledged, then interrupt.
    let mut child = command(BIN, &s)
        .args(["append", "--batch", "100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<&str> = book.lines().collect();
    for l in &lines[..150] {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();
    // The first batch's acknowledgements arrive (flushed per batch) before we interrupt.
    let mut acks = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..100 {
        let mut l = String::new();
        acks.read_line(&mut l).unwrap();
        assert!(l.contains("\"hash\""), "{l}");
    }
    signal(child.id(), "INT");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("interrupted: input lines 1–100 are stored; resume with --skip-lines 100"),
        "{e}"
    );
    // Resume: the rest goes in once; re-running the whole book adds nothing (ids are in it).
    let (c, _, e) = code(
        &s,
        &["append", "--quiet", "--skip-lines", "100"],
        Some(&book),
    );
    assert_eq!(c, Some(0), "{e}");
    let (c, _, e) = code(&s, &["append"], Some(&book));
    assert_eq!(c, Some(0));
    assert_eq!(
        e.trim(),
        format!("appended standard input: 0 new, {total} already stored")
    );
}
