//! Golden fixtures: `fixtures/<case>/events.jsonl` is appended through the real pipeline (parse,
//! validate, decide, sled store) and every object of `expected.json` — each names its own
//! `as_of` and `known_at` — must equal `show --json` for that query, byte for byte.
//!
//! `ARREARS_REGEN=1 cargo test -p arrears-cli --test fixtures` rewrites the expected files from
//! the program's output; review the diff like code (the amounts were computed by hand, with the
//! arithmetic in each case's README).

use std::path::Path;

use arrears_cli::ledger::{AppendOptions, Ledger};
use arrears_core::parse::parse_timestamp;
use arrears_core::Policy;
use arrears_testkit::fixtures::{check_all, clock, finish, read_expected, workspace_dir};

fn run_case(dir: &Path, regen: bool) -> Result<usize, String> {
    let store = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_sled(&store.path().join("db"), Policy::default())
        .map_err(|e| e.to_string())?;
    let events = std::fs::read(dir.join("events.jsonl")).map_err(|e| e.to_string())?;
    let opts = AppendOptions {
        batch: None,
        skip_lines: 0,
        now: clock(),
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    ledger
        .append_reader(&events[..], &opts, &never, &mut |_, _| Ok(()))
        .map_err(|e| format!("append: {e}"))?;
    let expected_path = dir.join("expected.json");
    let expected = read_expected(&expected_path)?;
    let mut actual = Vec::new();
    let mut diffs = Vec::new();
    for (i, exp) in expected.iter().enumerate() {
        let loan = exp["loan_id"]
            .as_str()
            .ok_or("loan_id")?
            .parse()
            .map_err(|_| "loan_id")?;
        let as_of: arrears_core::Date = exp["as_of"]
            .as_str()
            .ok_or("as_of")?
            .parse()
            .map_err(|_| "as_of")?;
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
    finish(&expected_path, &actual, &diffs, regen)
}

#[test]
fn check() {
    let root = workspace_dir(env!("CARGO_MANIFEST_DIR"), "fixtures");
    let checked = check_all(&root, "fixture", run_case);
    assert!(
        checked.cases >= 15,
        "expected at least 15 fixture cases, found {}",
        checked.cases
    );
    assert!(checked.queries >= 40, "only {} queries", checked.queries);
}
