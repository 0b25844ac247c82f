//! Golden fixtures: `fixtures/<case>/events.jsonl` is appended through the real pipeline (parse,
//! validate, decide, sled store) and every object of `expected.json` — each names its own
//! `as_of` and `known_at` — must equal `show --json` for that query, byte for byte.
//!
//! `ARREARS_REGEN=1 cargo test -p arrears-cli --test fixtures` rewrites the expected files from
//! the program's output; review the diff like code (the amounts were computed by hand, with the
//! arithmetic in each case's README).

use std::path::{Path, PathBuf};

use arrears_cli::ledger::{AppendOptions, Ledger};
use arrears_core::parse::{parse_date, parse_timestamp};
use arrears_core::Policy;
use chrono::{TimeZone, Utc};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn run_case(dir: &Path, regen: bool) -> Result<usize, String> {
    let store = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_sled(&store.path().join("db"), Policy::default())
        .map_err(|e| e.to_string())?;
    let events = std::fs::read(dir.join("events.jsonl")).map_err(|e| e.to_string())?;
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
    let opts = AppendOptions {
        batch: None,
        skip_lines: 0,
        now,
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    ledger
        .append_reader(&events[..], &opts, &never, &mut |_, _| Ok(()))
        .map_err(|e| format!("append: {e}"))?;
    let expected_path = dir.join("expected.json");
    let text = std::fs::read_to_string(&expected_path).map_err(|e| e.to_string())?;
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("expected.json: {e}"))?;
    let mut actual = Vec::new();
    let mut diffs = Vec::new();
    for (i, exp) in expected.iter().enumerate() {
        let loan = exp["loan_id"]
            .as_str()
            .ok_or("loan_id")?
            .parse()
            .map_err(|_| "loan_id")?;
        let as_of = parse_date(exp["as_of"].as_str().ok_or("as_of")?).ok_or("as_of")?;
        let known_at = exp["known_at"]
            .as_str()
            .map(|s| parse_timestamp(s).ok_or("known_at"))
            .transpose()?;
        let p = ledger
            .show(loan, as_of, known_at)
            .map_err(|e| format!("query {i}: {e}"))?;
        let got: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        if &got != exp {
            diffs.push(format!(
                "query {i} (as_of {as_of}, known_at {:?}):\n  expected {}\n  got      {}",
                exp["known_at"],
                serde_json::to_string(exp).unwrap(),
                p.to_json()
            ));
        }
        actual.push(got);
    }
    if regen {
        let mut out = serde_json::to_string_pretty(&actual).unwrap();
        out.push('\n');
        std::fs::write(&expected_path, out).map_err(|e| e.to_string())?;
        return Ok(expected.len());
    }
    if diffs.is_empty() {
        Ok(expected.len())
    } else {
        Err(diffs.join("\n"))
    }
}

#[test]
fn check() {
    let regen = std::env::var_os("ARREARS_REGEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("events.jsonl").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected at least 15 fixture cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut queries = 0;
    for case in &cases {
        match run_case(case, regen) {
            Ok(n) => queries += n,
            Err(e) => failures.push(format!(
                "{}:\n{e}",
                case.file_name().unwrap().to_string_lossy()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(queries >= 40, "only {queries} queries");
}
