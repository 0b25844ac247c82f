//! Integration tests: the built `arrears` binary, each command's happy path and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use arrears_testkit::{disbursed, err, generate, out as text, squash, temp_store};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");
const LOAN: &str = "0f000000-0000-4000-8000-000000000001";

fn arrears(store: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    arrears_testkit::run(BIN, store, args, stdin)
}

fn book(store: &Path, loans: u64, seed: u64) -> String {
    arrears_testkit::book(BIN, store, loans, seed)
}

#[test]
fn append_then_show_the_spec_example() {
    let (_dir, s) = temp_store();
    let out = arrears(&s, &["append"], Some(&(disbursed(LOAN) + "\n")));
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let stored: serde_json::Value =
        serde_json::from_str(text(&out).lines().next().unwrap()).unwrap();
    assert_eq!(stored["seq"], 1);
    assert_eq!(stored["prev_hash"], "0".repeat(64));
    assert_eq!(stored["schedule"][0]["interest"], "15.00");
    let show = arrears(&s, &["show", LOAN, "--as-of", "2024-02-10", "--json"], None);
    assert_eq!(show.status.code(), Some(0));
    let p: serde_json::Value = serde_json::from_str(&text(&show)).unwrap();
    assert_eq!(
        (
            p["penalty_accrued"].as_str(),
            p["days_past_due"].as_i64(),
            p["stage"].as_str()
        ),
        (Some("7.60"), Some(10), Some("phone"))
    );
    // The readable table shows stage and DPD at a glance, amounts right-aligned.
    let table = text(&arrears(&s, &["show", LOAN, "--as-of", "2024-02-10"], None));
    assert!(squash(&table).contains("stage phone DPD 10"), "{table}");
    assert!(
        squash(&table).contains("outstanding 1000.00 15.00 7.60 1022.60"),
        "{table}"
    );
    assert!(
        table.contains("   1022.60\n"),
        "amounts are right-aligned: {table}"
    );
}

#[test]
fn a_bad_line_in_the_middle_writes_nothing_and_exits_2() {
    let (_dir, s) = temp_store();
    let input = format!(
        "{}\n{{\"loan_id\":\"{LOAN}\",\"type\":\"payment\",\"on\":\"2024-02-05\",\"amount\":\"10.000\"}}\n{{\"loan_id\":\"{LOAN}\",\"type\":\"payment\",\"on\":\"2024-02-06\",\"amount\":\"1.00\"}}\n",
        disbursed(LOAN)
    );
    let out = arrears(&s, &["append"], Some(&input));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        err(&out).trim(),
        "arrears: line 2: amount: `10.000` has more than 2 decimal places (amounts are in cents)"
    );
    assert_eq!(text(&out), "");
    let show = arrears(&s, &["show", LOAN, "--as-of", "2024-02-10"], None);
    assert_eq!(show.status.code(), Some(2));
    assert!(
        err(&show).contains(&format!("loan {LOAN} is unknown as of 2024-02-10")),
        "{}",
        err(&show)
    );
    // A stateful rejection (decide) is named by line too, and also writes nothing.
    let input = format!("{}\n{{\"loan_id\":\"{LOAN}\",\"type\":\"missed\",\"installment\":1,\"observed_on\":\"2024-01-31\"}}\n", disbursed(LOAN));
    let out = arrears(&s, &["append"], Some(&input));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        err(&out).trim(),
        "arrears: line 2: observed_on: installment 1 is due 2024-01-31 with 0 grace days; a miss can be observed from 2024-02-01, not 2024-01-31"
    );
    assert_eq!(
        arrears(&s, &["show", LOAN, "--as-of", "2024-02-10"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn replay_is_sorted_and_identical_across_jobs_runs_and_incremental() {
    let (dir, s) = temp_store();
    book(&s, 300, 5);
    let run = |args: &[&str]| {
        let o = arrears(&s, args, None);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        (text(&o), err(&o))
    };
    let (one, summary) = run(&["replay", "--as-of", "2024-07-01", "--jobs", "1"]);
    let (two, _) = run(&["replay", "--as-of", "2024-07-01", "--jobs", "2"]);
    let (again, _) = run(&["replay", "--as-of", "2024-07-01"]);
    assert_eq!(one, two);
    assert_eq!(one, again);
    assert!(squash(&summary).contains("loans 300"), "{summary}");
    let ids: Vec<String> = one
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loan_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 300);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Incremental: the first run builds snapshots, the second projects from them.
    let (inc1, _) = run(&["replay", "--as-of", "2024-07-01", "--incremental"]);
    let (inc2, sum2) = run(&["replay", "--as-of", "2024-07-01", "--incremental"]);
    assert_eq!(inc1, one);
    assert_eq!(inc2, one);
    assert!(squash(&sum2).contains("from snapshots 300"), "{sum2}");
    let (later, _) = run(&["replay", "--as-of", "2024-09-01", "--incremental"]);
    let (later_full, _) = run(&["replay", "--as-of", "2024-09-01"]);
    assert_eq!(later, later_full);
    // --out writes the same bytes to a file.
    let f = dir.path().join("out.jsonl");
    run(&[
        "replay",
        "--as-of",
        "2024-07-01",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(f).unwrap(), one);
}

#[test]
fn sweep_records_misses_once() {
    let (_dir, s) = temp_store();
    arrears(&s, &["append"], Some(&(disbursed(LOAN) + "\n")));
    let first = arrears(&s, &["sweep", "--as-of", "2024-02-03"], None);
    assert_eq!(first.status.code(), Some(0), "{}", err(&first));
    let out = text(&first);
    assert_eq!(out.lines().count(), 1);
    let ev: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["installment"].as_u64(),
            ev["observed_on"].as_str()
        ),
        (Some("missed"), Some(1), Some("2024-02-03"))
    );
    let second = arrears(&s, &["sweep", "--as-of", "2024-02-03"], None);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(text(&second), "");
    assert!(err(&second).contains("recorded 0 misses"));
    let p: serde_json::Value = serde_json::from_str(&text(&arrears(
        &s,
        &["show", LOAN, "--as-of", "2024-02-05", "--json"],
        None,
    )))
    .unwrap();
    assert_eq!(p["anomalies"], serde_json::json!([]));
    assert_eq!(p["version"], 2);
}

#[test]
fn verify_and_digest_catch_tampering() {
    let (_dir, s) = temp_store();
    book(&s, 50, 9);
    let ok = arrears(&s, &["verify"], None);
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    let digest = text(&arrears(&s, &["digest"], None)).trim().to_owned();
    assert_eq!(
        arrears(&s, &["verify", "--digest", &digest], None)
            .status
            .code(),
        Some(0)
    );
    // More events keep extending the digest.
    book(&s, 60, 9);
    let ok = arrears(&s, &["verify", "--digest", &digest], None);
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    // Edit one stored event directly in sled.
    let (loan, seq) = {
        let db = sled::open(&s).unwrap();
        let tree = db.open_tree("arrears").unwrap();
        // Edit the fourth stored event: move its recorded_at by a second, keep its old hash.
        let (k, v) = tree.scan_prefix([b'e']).nth(3).unwrap().unwrap();
        let mut events = arrears_store::chunk::decode(&v).unwrap();
        events[0].recorded_at += chrono::Duration::seconds(1);
        let bytes = arrears_store::chunk::encode(&events);
        tree.insert(&k, bytes).unwrap();
        db.flush().unwrap();
        (
            uuid::Uuid::from_slice(&k[1..17]).unwrap(),
            u64::from_be_bytes(k[17..25].try_into().unwrap()),
        )
    };
    let bad = arrears(&s, &["verify"], None);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        err(&bad).contains(&format!(
            "broken at loan {loan} seq {seq}: hash does not match"
        )),
        "{}",
        err(&bad)
    );
    let bad = arrears(&s, &["verify", "--digest", &digest], None);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn generate_is_deterministic_and_appendable() {
    let a = generate(BIN, 200, 3);
    let b = generate(BIN, 200, 3);
    let c = generate(BIN, 100, 3);
    assert_eq!(a, b);
    // Loan k is the same whatever --loans is.
    assert!(a.starts_with(&c));
    let kinds: std::collections::BTreeSet<String> = a
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["disbursed", "missed", "negotiated_extension", "payment"]
    );
    let dir = tempfile::tempdir().unwrap();
    let out = arrears(&dir.path().join("db"), &["append", "--quiet"], Some(&a));
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    // Appending the same book again is idempotent (same event ids).
    let out = arrears(&dir.path().join("db"), &["append", "--quiet"], Some(&a));
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let replay = arrears(
        &dir.path().join("db"),
        &["replay", "--as-of", "2024-06-29"],
        None,
    );
    let stages: std::collections::BTreeSet<String> = text(&replay)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["stage"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for want in ["settled", "legal", "negotiated", "current"] {
        assert!(stages.contains(want), "{want} missing from {stages:?}");
    }
}

#[test]
fn explain_adds_up() {
    let (_dir, s) = temp_store();
    let input = format!("{}\n{{\"loan_id\":\"{LOAN}\",\"type\":\"payment\",\"on\":\"2024-02-05\",\"amount\":\"500.00\"}}\n", disbursed(LOAN));
    arrears(&s, &["append"], Some(&input));
    let e: serde_json::Value = serde_json::from_str(&text(&arrears(
        &s,
        &["explain", LOAN, "--as-of", "2024-02-10", "--json"],
        None,
    )))
    .unwrap();
    let stretches = e["accrual"].as_array().unwrap();
    assert_eq!(stretches.len(), 2);
    assert_eq!(
        stretches[0],
        serde_json::json!({"from":"2024-02-01","to":"2024-02-05","days":5,"base":"1015.00","daily_penalty":"0.76","subtotal":"3.80"})
    );
    assert_eq!(
        stretches[1],
        serde_json::json!({"from":"2024-02-06","to":"2024-02-10","days":5,"base":"518.80","daily_penalty":"0.39","subtotal":"1.95"})
    );
    assert_eq!(e["penalty_accrued"], "5.75");
    assert_eq!(e["payments"][0]["penalty"], "3.80");
    assert_eq!(
        e["payments"][0]["installments"][0],
        serde_json::json!({"installment":1,"interest":"15.00","principal":"481.20"})
    );
    let table = text(&arrears(
        &s,
        &["explain", LOAN, "--as-of", "2024-02-10"],
        None,
    ));
    assert!(
        squash(&table).contains("2024-02-06 2024-02-10 5 518.80 0.39 1.95"),
        "{table}"
    );
    assert!(squash(&table).contains("penalty accrued 5.75"), "{table}");
}

#[test]
fn export_csv_has_one_row_per_loan() {
    let (_dir, s) = temp_store();
    arrears(&s, &["append"], Some(&(disbursed(LOAN) + "\n")));
    let out = text(&arrears(
        &s,
        &["export", "--format", "csv", "--as-of", "2024-02-10"],
        None,
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("loan_id,as_of,version,policy,currency,status,outstanding_principal")
    );
    assert_eq!(lines[1], format!("{LOAN},2024-02-10,1,default-v1,CNY,active,1000.00,15.00,7.60,1022.60,1000.00,15.00,0.00,0.00,0.00,0.00,0.00,7.60,0.00,10,phone,special_mention,M1,0"));
}

#[test]
fn every_subcommand_explains_itself() {
    let top = Command::new(BIN).arg("--help").output().unwrap();
    assert!(text(&top).contains("arrears demo"), "{}", text(&top));
    for sub in [
        "append", "show", "explain", "replay", "sweep", "verify", "digest", "generate", "export",
        "demo",
    ] {
        let o = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(text(&o).contains("Usage: arrears"), "{sub}");
    }
    let append = text(
        &Command::new(BIN)
            .args(["append", "--help"])
            .output()
            .unwrap(),
    );
    assert!(
        squash(&append).contains("arrears reference events"),
        "{append}"
    );
    // The event schema is one command away, with a `missed` and an extension among the examples.
    let events = text(
        &Command::new(BIN)
            .args(["reference", "events"])
            .output()
            .unwrap(),
    );
    for kind in [
        r#""type":"payment""#,
        r#""type":"missed""#,
        r#""type":"negotiated_extension""#,
        r#""type":"contact""#,
    ] {
        assert!(events.contains(kind), "{kind}");
    }
    let policy = text(
        &Command::new(BIN)
            .args(["reference", "policy"])
            .output()
            .unwrap(),
    );
    assert!(policy.contains("time_zone") && policy.contains("Asia/Shanghai"));
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(text(&man).starts_with(".ie") && text(&man).contains(".TH arrears 1"));
    let completions = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(text(&completions).contains("complete -F _arrears"));
}

#[test]
fn bad_arguments_and_unknown_loans_exit_2() {
    let (dir, s) = temp_store();
    assert_eq!(
        arrears(&s, &["show", "not-a-uuid"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        arrears(&s, &["show", LOAN, "--as-of", "2024-13-01"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        arrears(&s, &["replay", "--known-at", "noon"], None)
            .status
            .code(),
        Some(2)
    );
    // No store at the path: read-only commands never create one (exit 1, the path named).
    for args in [
        &["show", LOAN][..],
        &["explain", LOAN],
        &["replay"],
        &["sweep", "--as-of", "2024-06-29"],
        &["verify"],
        &["digest"],
        &["export"],
    ] {
        let o = arrears(&s, args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            err(&o).contains(&format!(
                "no arrears store at {} (append creates one)",
                s.display()
            )),
            "{args:?}: {}",
            err(&o)
        );
        assert!(!s.exists(), "{args:?} created a store");
    }
    // An unknown loan in an existing store: rejected input.
    arrears(
        &s,
        &["append", "--quiet"],
        Some(&disbursed("0f000000-0000-4000-8000-000000000002")),
    );
    let o = arrears(&s, &["show", LOAN], None);
    assert_eq!(o.status.code(), Some(2));
    // A directory that is not a store: exit 1 with a clear message.
    let not_store = dir.path().join("photos");
    std::fs::create_dir(&not_store).unwrap();
    std::fs::write(not_store.join("cat.jpg"), "meow").unwrap();
    let o = arrears(&not_store, &["verify"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is not an arrears store"), "{}", err(&o));
}

#[test]
fn a_policy_file_replaces_the_default_and_is_named_in_the_output() {
    let (dir, s) = temp_store();
    let policy = dir.path().join("strict.json");
    std::fs::write(
        &policy,
        r#"{"name":"strict-v2","apr_cap":"0.30","max_extensions":1,"stages":{"phone_from_dpd":2,"written_notice_from_dpd":8,"outsourced_from_dpd":20,"legal_from_dpd":45}}"#,
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    // 0.0005 × 1.5 × 365 = 0.27375 ≤ 0.30: accepted.
    let out = arrears(
        &s,
        &["--policy", p, "append"],
        Some(&(disbursed(LOAN) + "\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let show: serde_json::Value = serde_json::from_str(&text(&arrears(
        &s,
        &[
            "--policy",
            p,
            "show",
            LOAN,
            "--as-of",
            "2024-02-10",
            "--json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(
        (show["policy"].as_str(), show["stage"].as_str()),
        (Some("strict-v2"), Some("written_notice"))
    );
    // The default policy names itself and uses SPEC §4's thresholds.
    let show: serde_json::Value = serde_json::from_str(&text(&arrears(
        &s,
        &["show", LOAN, "--as-of", "2024-02-10", "--json"],
        None,
    )))
    .unwrap();
    assert_eq!(
        (show["policy"].as_str(), show["stage"].as_str()),
        (Some("default-v1"), Some("phone"))
    );
    // The extension limit comes from the policy too: the second extension is refused.
    let ext = |d: &str, n: &str| {
        format!(
            r#"{{"loan_id":"{LOAN}","type":"negotiated_extension","agreed_on":"{d}","new_due_on":"{n}"}}"#
        )
    };
    assert_eq!(
        arrears(
            &s,
            &["--policy", p, "append"],
            Some(&ext("2024-02-10", "2024-03-10"))
        )
        .status
        .code(),
        Some(0)
    );
    let out = arrears(
        &s,
        &["--policy", p, "append"],
        Some(&ext("2024-03-20", "2024-04-10")),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err(&out).contains("line 1: type: the loan already has 1 extensions; the policy allows 1"),
        "{}",
        err(&out)
    );
    // A malformed policy is rejected input.
    std::fs::write(&policy, r#"{"name":"x"}"#).unwrap();
    assert_eq!(
        arrears(&s, &["--policy", p, "show", LOAN], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn progress_bars_stay_out_of_pipes() {
    let (_dir, s) = temp_store();
    book(&s, 50, 4);
    let out = arrears(&s, &["replay", "--as-of", "2024-06-29"], None);
    let e = err(&out);
    assert!(
        !e.contains('\r') && !e.contains('\u{1b}'),
        "terminal control characters in a pipe: {e:?}"
    );
    assert!(
        e.starts_with("loans"),
        "only the summary goes to stderr: {e}"
    );
}
