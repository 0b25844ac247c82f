//! Golden fixtures of the lender's rules (docs/rules.md): `fixtures/rules/<case>/` holds
//! `events.jsonl`, an optional `policy.json`, and `expected.json` — an array of queries, each with
//! its answer:
//!
//! - `{"query":"compliance","as_of":D,"findings":[…]}` — `arrears compliance --as-of D --json`
//!   over every loan of the case, one finding object per line;
//! - `{"query":"show","as_of":D,"projection":{…}}` — `show --json` of the case's loan;
//! - `{"query":"credit_history","as_of":D,"history":{…}}` — `credit-history --json`.
//!
//! Events go through parse, validate (under the case's policy), `decide` and the hash chain as
//! the store would seal them (seq per loan in input order, `event_id` = the line number when not
//! given, `recorded_at` 2024-06-01T00:00:00Z when not given), without a sled store, so this runner
//! depends on no storage API. `ARREARS_REGEN=1` rewrites the answers from the program's output:
//! review the diff like code — the answers were computed by hand first (each case's README).

use std::collections::BTreeMap;
use std::path::Path;

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::Event;
use arrears_core::gate::Gate;
use arrears_core::parse::parse_date;
use arrears_core::validate::validate;
use arrears_core::{parse_event, Policy};
use arrears_projection::DecideGate;
use arrears_testkit::fixtures::{check_all, clock, finish, read_expected, workspace_dir};
use serde_json::Value;
use uuid::Uuid;

/// The case's events, sealed per loan, grouped by loan (in loan_id order).
fn load(dir: &Path, policy: &Policy) -> Result<BTreeMap<Uuid, Vec<Event>>, String> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).map_err(|e| e.to_string())?;
    let mut loans: BTreeMap<Uuid, Vec<Event>> = BTreeMap::new();
    let mut gate = DecideGate::new(policy);
    let now = clock();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |e: String| format!("line {}: {e}", i + 1);
        let (mut new, _) = parse_event(line).map_err(|e| at(e.to_string()))?;
        validate(&mut new, policy).map_err(|e| at(e.to_string()))?;
        let stream = loans.entry(new.loan_id.uuid()).or_default();
        let mut ev = Event {
            event_id: new
                .event_id
                .unwrap_or(Uuid::from_u128(i as u128 + 1).into()),
            loan_id: new.loan_id,
            seq: (stream.len() as u64 + 1).into(),
            recorded_at: new.recorded_at.unwrap_or(now),
            body: new.body,
            prev_hash: stream.last().map_or(GENESIS, |e| e.hash),
            hash: GENESIS,
        };
        ev.hash = compute_hash(&ev);
        gate.check(stream, &ev).map_err(|e| at(e.to_string()))?;
        stream.push(ev);
    }
    Ok(loans)
}

fn answer(
    q: &Value,
    loans: &BTreeMap<Uuid, Vec<Event>>,
    policy: &Policy,
) -> Result<(&'static str, Value), String> {
    let as_of = q["as_of"]
        .as_str()
        .and_then(parse_date)
        .map(arrears_core::Date::new)
        .ok_or("query: as_of")?;
    let only = || -> Result<&Vec<Event>, String> {
        match q["loan_id"].as_str() {
            Some(id) => loans
                .get(&id.parse::<Uuid>().map_err(|e| e.to_string())?)
                .ok_or_else(|| format!("no loan {id}")),
            None if loans.len() == 1 => Ok(loans.values().next().unwrap()),
            None => Err("query: several loans, give loan_id".into()),
        }
    };
    match q["query"].as_str() {
        Some("compliance") => {
            let mut report = arrears_cli::rules::Report::new(as_of, policy);
            for events in loans.values() {
                report.add(events);
            }
            let findings = report
                .json_lines()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            Ok(("findings", Value::Array(findings)))
        }
        Some("show") => {
            let p = arrears_projection::replay(only()?, as_of, None, policy)
                .ok_or("show: the loan is unknown")?;
            Ok(("projection", serde_json::from_str(&p.to_json()).unwrap()))
        }
        Some("credit_history") => {
            let h = arrears_cli::rules::credit_history(only()?, as_of, policy)
                .ok_or("credit_history: the loan is unknown")?;
            let json = arrears_cli::rules::render_credit_history(&h, true);
            Ok(("history", serde_json::from_str(&json).unwrap()))
        }
        Some("cost") => {
            let c = arrears_cli::rules::cost(only()?, as_of, policy)
                .ok_or("cost: the loan is unknown")?;
            Ok(("cost", serde_json::to_value(&c).unwrap()))
        }
        other => Err(format!("unknown query {other:?}")),
    }
}

fn run_case(dir: &Path, regen: bool) -> Result<usize, String> {
    let policy = match std::fs::read_to_string(dir.join("policy.json")) {
        Ok(text) => Policy::from_json(&text).map_err(|e| e.to_string())?,
        Err(_) => Policy::default(),
    };
    let loans = load(dir, &policy)?;
    let path = dir.join("expected.json");
    let mut queries = read_expected(&path)?;
    let mut diffs = Vec::new();
    for (i, q) in queries.iter_mut().enumerate() {
        let (key, got) = answer(q, &loans, &policy).map_err(|e| format!("query {i}: {e}"))?;
        if q[key] != got {
            diffs.push(format!(
                "query {i} ({} as of {}):\n  expected {}\n  got      {}",
                q["query"], q["as_of"], q[key], got
            ));
        }
        q[key] = got;
    }
    finish(&path, &queries, &diffs, regen)
}

#[test]
fn rules_fixtures() {
    let root = workspace_dir(env!("CARGO_MANIFEST_DIR"), "fixtures/rules");
    let checked = check_all(&root, "rule fixture", run_case);
    assert!(
        checked.cases >= 5,
        "only {} rule fixture cases",
        checked.cases
    );
    assert!(
        checked.queries >= checked.cases,
        "only {} queries",
        checked.queries
    );
}
