//! The collection desk's views, driven through the real binary: `events`, `loans`, `portfolio`
//! (with totals checked against `replay`) and roll rates (recomputed here from two replays,
//! independently of the program's own code, per SPEC §10).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use arrears_testkit::{disbursed, err, payment, run, squash, temp_store};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

fn ok(store: &Path, args: &[&str], stdin: Option<&str>) -> String {
    arrears_testkit::ok(BIN, store, args, stdin)
}

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

fn booked(loans: u64, seed: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    arrears_testkit::booked(BIN, loans, seed)
}

#[test]
fn events_prints_every_stored_envelope_and_honours_known_at() {
    let (_dir, s) = temp_store();
    let loan = "0f000000-0000-4000-8000-000000000001";
    let d = disbursed(loan);
    let missed = format!(
        r#"{{"loan_id":"{loan}","type":"missed","installment":1,"observed_on":"2024-02-02","recorded_at":"2024-02-02T08:00:00Z"}}"#
    );
    let input = format!(
        "{},\"recorded_at\":\"2024-01-01T00:00:00Z\"}}\n{}\n{missed}\n",
        &d[..d.len() - 1],
        payment(
            loan,
            "2024-01-20",
            "100.00",
            r#","recorded_at":"2024-01-20T08:00:00Z""#
        ),
    );
    ok(&s, &["append", "--quiet"], Some(&input));
    let all = lines(&ok(&s, &["events", loan], None));
    assert_eq!(all.len(), 3);
    assert_eq!(all[2]["type"], "missed");
    assert_eq!(all[2]["observed_on"], "2024-02-02");
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        for k in ["event_id", "recorded_at", "prev_hash", "hash"] {
            assert!(e.get(k).is_some(), "{k} missing");
        }
    }
    assert_eq!(all[1]["prev_hash"], all[0]["hash"]);
    let before = lines(&ok(
        &s,
        &["events", loan, "--known-at", "2024-01-31T00:00:00Z"],
        None,
    ));
    assert_eq!(before.len(), 2);
    // An unknown loan is rejected input.
    let o = run(
        BIN,
        &s,
        &["events", "0f000000-0000-4000-8000-000000000009"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("has no stored events"), "{}", err(&o));
}

#[test]
fn loans_filters_and_json_rows_are_exactly_replays() {
    let (_dir, s) = booked(300, 3);
    let replay = ok(&s, &["replay", "--as-of", "2024-06-30"], None);
    let by_id: BTreeMap<String, &str> = replay
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["loan_id"].as_str().unwrap().to_owned(), l)
        })
        .collect();
    let listed = ok(
        &s,
        &[
            "loans",
            "--as-of",
            "2024-06-30",
            "--stage",
            "phone",
            "--json",
        ],
        None,
    );
    let want: Vec<&str> = replay
        .lines()
        .filter(|l| l.contains(r#""stage":"phone""#))
        .collect();
    assert!(!want.is_empty(), "the book has loans in phone collection");
    assert_eq!(listed.lines().collect::<Vec<_>>(), want);
    // Combined filters and a limit, checked against the replay.
    let listed = ok(
        &s,
        &[
            "loans",
            "--as-of",
            "2024-06-30",
            "--min-dpd",
            "31",
            "--limit",
            "5",
            "--json",
        ],
        None,
    );
    let want: Vec<&str> = by_id
        .values()
        .copied()
        .filter(|l| {
            serde_json::from_str::<Value>(l).unwrap()["days_past_due"]
                .as_i64()
                .unwrap()
                >= 31
        })
        .take(5)
        .collect();
    assert_eq!(want.len(), 5, "the book has loans 31+ days past due");
    assert_eq!(listed.lines().collect::<Vec<_>>(), want);
    // The table has a header and one row per loan.
    let table = ok(
        &s,
        &["loans", "--as-of", "2024-06-30", "--bucket", "m2"],
        None,
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        replay
            .lines()
            .filter(|l| l.contains(r#""bucket":"M2""#))
            .count()
    );
    assert!(squash(table.lines().next().unwrap()).starts_with("loan_id stage bucket class"));
    // A bad filter names the option.
    let o = run(BIN, &s, &["loans", "--stage", "nagging"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("--stage: `nagging` is not a stage"),
        "{}",
        err(&o)
    );
}

#[test]
fn portfolio_totals_equal_the_replay_and_the_groups_add_up() {
    let (_dir, s) = booked(400, 5);
    let replay = lines(&ok(&s, &["replay", "--as-of", "2024-06-30"], None));
    let pf: Value = serde_json::from_str(&ok(
        &s,
        &["portfolio", "--as-of", "2024-06-30", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(pf["loans"], replay.len() as u64);
    for field in ["principal", "interest", "penalty", "total"] {
        let sum: Decimal = replay.iter().map(|p| dec(&p["outstanding"][field])).sum();
        assert_eq!(dec(&pf["totals"][field]), sum, "{field}");
        for grouping in ["by_stage", "by_bucket", "by_class"] {
            let groups = pf[grouping].as_array().unwrap();
            let s: Decimal = groups.iter().map(|g| dec(&g[field])).sum();
            assert_eq!(s, sum, "{grouping} {field}");
            let n: u64 = groups.iter().map(|g| g["loans"].as_u64().unwrap()).sum();
            assert_eq!(n, replay.len() as u64);
        }
    }
    // Each stage group is exactly the loans of that stage.
    for g in pf["by_stage"].as_array().unwrap() {
        let stage = g["stage"].as_str().unwrap();
        let mine: Vec<&Value> = replay.iter().filter(|p| p["stage"] == stage).collect();
        assert_eq!(g["loans"], mine.len() as u64, "{stage}");
        let pen: Decimal = mine.iter().map(|p| dec(&p["outstanding"]["penalty"])).sum();
        assert_eq!(dec(&g["penalty"]), pen, "{stage}");
    }
    // The table shows the same totals.
    let table = ok(&s, &["portfolio", "--as-of", "2024-06-30"], None);
    assert!(
        squash(&table).contains(&format!(
            "all loans {} 100.0% {}",
            replay.len(),
            pf["totals"]["principal"].as_str().unwrap()
        )),
        "{table}"
    );
}

#[test]
fn roll_rates_match_an_independent_computation_from_two_replays() {
    let (_dir, s) = booked(400, 9);
    let (d0, d) = ("2024-05-31", "2024-06-30");
    let at0 = lines(&ok(&s, &["replay", "--as-of", d0], None));
    let at1: BTreeMap<String, Value> = lines(&ok(&s, &["replay", "--as-of", d], None))
        .into_iter()
        .map(|v| (v["loan_id"].as_str().unwrap().to_owned(), v))
        .collect();
    // SPEC §10: loans disbursed by D0 and not settled at D0; principal at D0.
    let mut cells: BTreeMap<(String, String), (u64, Decimal)> = BTreeMap::new();
    for p in at0.iter().filter(|p| p["status"] != "settled") {
        let b0 = p["bucket"].as_str().unwrap().to_owned();
        let end = &at1[p["loan_id"].as_str().unwrap()];
        let b1 = if end["status"] == "settled" {
            "settled".to_owned()
        } else {
            end["bucket"].as_str().unwrap().to_owned()
        };
        let c = cells.entry((b0, b1)).or_default();
        c.0 += 1;
        c.1 += dec(&p["outstanding"]["principal"]);
    }
    let rr: Value = serde_json::from_str(&ok(
        &s,
        &["portfolio", "--as-of", d, "--vs", d0, "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(rr["from"], d0);
    assert_eq!(rr["to"], d);
    let rows = rr["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    let mut seen = 0;
    for row in rows {
        let b0 = row["bucket"].as_str().unwrap();
        let row_sum: Decimal = cells
            .iter()
            .filter(|((a, _), _)| a == b0)
            .map(|(_, c)| c.1)
            .sum();
        assert_eq!(dec(&row["principal"]), row_sum, "row {b0}");
        for (b1, cell) in row["to"].as_object().unwrap() {
            let (n, p) = cells
                .get(&(b0.to_owned(), b1.clone()))
                .copied()
                .unwrap_or_default();
            seen += n;
            assert_eq!(cell["count"], n, "{b0}→{b1}");
            assert_eq!(dec(&cell["principal"]), p, "{b0}→{b1}");
            let rate = if row_sum.is_zero() {
                Decimal::ZERO
            } else {
                (p / row_sum).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
            };
            assert_eq!(dec(&cell["rate"]), rate, "{b0}→{b1}");
            assert_eq!(
                cell["rate"]
                    .as_str()
                    .unwrap()
                    .split('.')
                    .nth(1)
                    .unwrap()
                    .len(),
                4
            );
        }
    }
    assert_eq!(
        seen,
        cells.values().map(|c| c.0).sum::<u64>(),
        "every loan in one cell"
    );
    // D0 must come before D.
    let o = run(BIN, &s, &["portfolio", "--as-of", d0, "--vs", d], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}
