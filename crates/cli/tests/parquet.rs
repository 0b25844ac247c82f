//! The Parquet exports read back by another implementation (pyarrow, Arrow C++) with the exact
//! values: every projection column against `replay`'s §7 line, every event column against the
//! stored event. Needs a Python with pyarrow: `$ARREARS_PYTHON` (set by `.ci/run`), else
//! `python3` if it has pyarrow, else the venv of `scale/install.sh`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use arrears_testkit::{
    err, export_events_parquet, export_parquet, exported_events, generate, out, run, success,
};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

/// Prints the schema (name → Arrow type) on the first line, then each row as JSON: decimals as
/// their exact text, dates ISO, timestamps as microseconds since the epoch (checked to be UTC).
const DUMP: &str = r#"
import sys, json, datetime, decimal
import pyarrow.parquet as pq
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def conv(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        assert v.tzinfo is not None and v.utcoffset() == datetime.timedelta(0), v
        return (v - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return [conv(x) for x in v]
    if isinstance(v, dict):
        return {k: conv(x) for k, x in v.items()}
    return v
t = pq.read_table(sys.argv[1])
out = sys.stdout
out.write(json.dumps({f.name: str(f.type) for f in t.schema}, ensure_ascii=False) + "\n")
for batch in t.to_batches():
    for row in batch.to_pylist():
        out.write(json.dumps({k: conv(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
"#;

/// `$ARREARS_PYTHON`, else `python3` if it has pyarrow, else the venv `scale/install.sh` keeps
/// (installing it if missing, as the Spark test does).
fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Ok(p) = std::env::var("ARREARS_PYTHON") {
                return p;
            }
            let has_pyarrow = Command::new("python3")
                .args(["-c", "import pyarrow"])
                .output()
                .is_ok_and(|o| o.status.success());
            if has_pyarrow {
                return "python3".into();
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scale/install.sh");
            let o = Command::new("bash").arg(script).output().unwrap();
            assert!(o.status.success(), "scale/install.sh: {}", err(&o));
            format!("{}/bin/python", out(&o).trim())
        })
        .clone()
}

/// (schema, rows) of a Parquet file as pyarrow reads it.
fn dump(file: &Path) -> (Value, Vec<Value>) {
    let o = Command::new(python())
        .args(["-c", DUMP])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set $ARREARS_PYTHON to a Python with pyarrow)",
                python()
            )
        });
    assert!(
        o.status.success(),
        "pyarrow could not read {}: {}\n(needs `pip install pyarrow`, as .ci/run does)",
        file.display(),
        err(&o)
    );
    let text = out(&o);
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let schema = lines.next().unwrap();
    (schema, lines.collect())
}

fn ok(o: std::process::Output) -> String {
    success(&o)
}

/// A loan with the widest values the parser accepts: 16-digit amount, an 18-digit rate, a
/// non-ASCII borrower.
const WIDE: &str = r#"{"loan_id":"7f000000-0000-4000-8000-0000000000aa","event_id":"7f000000-0000-4000-8000-0000000000ab","recorded_at":"2024-01-02T03:04:05.123456Z","type":"disbursed","on":"2024-01-02","principal":"9999999999999999.99","currency":"USD","borrower":"借款人-α \"q\"","terms":{"daily_rate":"0.000123456789012345","penalty_multiplier":"1.000000000000000001","grace_days":3,"compound":false,"repayment":{"kind":"installments","count":3,"method":"equal_principal"}}}
{"loan_id":"7f000000-0000-4000-8000-0000000000aa","type":"payment","on":"2024-02-10","amount":"0.01","reference":"ref ✓","recorded_at":"2024-02-10T00:00:00Z"}
{"loan_id":"7f000000-0000-4000-8000-0000000000aa","type":"negotiated_extension","agreed_on":"2024-02-20","waive_penalty":"all","new_due_on":"2024-03-20","recorded_at":"2024-02-20T00:00:00Z"}
"#;

fn rate(s: &Value) -> Value {
    let mut d = Decimal::from_str(s.as_str().unwrap()).unwrap();
    d.rescale(18);
    json!(d.to_string())
}

/// What pyarrow must read for one stored event line.
fn event_row(line: &str) -> Value {
    let e: Value = serde_json::from_str(line).unwrap();
    let kind = e["type"].as_str().unwrap();
    let date = match kind {
        "disbursed" | "payment" => &e["on"],
        "missed" => &e["observed_on"],
        _ => &e["agreed_on"],
    };
    let micros = chrono::DateTime::parse_from_rfc3339(e["recorded_at"].as_str().unwrap())
        .unwrap()
        .timestamp_micros();
    let mut r = json!({
        "event_id": e["event_id"], "loan_id": e["loan_id"], "seq": e["seq"], "recorded_at": micros,
        "type": kind, "business_date": date, "prev_hash": e["prev_hash"], "hash": e["hash"],
        "principal": null, "currency": null, "borrower": null, "daily_rate": null,
        "penalty_multiplier": null, "grace_days": null, "compound": null, "repayment_kind": null,
        "repayment_days": null, "repayment_count": null, "repayment_method": null, "schedule": null,
        "amount": null, "reference": null, "installment": null, "new_due_on": null,
        "waive_penalty_all": null, "waive_penalty": null, "waive_interest": null,
        "installments": null, "json": line,
    });
    let or_null = |v: &Value| if v.is_null() { Value::Null } else { v.clone() };
    match kind {
        "disbursed" => {
            let t = &e["terms"];
            let rp = &t["repayment"];
            r["principal"] = e["principal"].clone();
            r["currency"] = e["currency"].clone();
            r["borrower"] = or_null(&e["borrower"]);
            r["daily_rate"] = rate(&t["daily_rate"]);
            r["penalty_multiplier"] = rate(&t["penalty_multiplier"]);
            r["grace_days"] = t["grace_days"].clone();
            r["compound"] = t["compound"].clone();
            r["repayment_kind"] = rp["kind"].clone();
            r["repayment_days"] = or_null(&rp["days"]);
            r["repayment_count"] = or_null(&rp["count"]);
            r["repayment_method"] = or_null(&rp["method"]);
            r["schedule"] = e["schedule"].clone();
        }
        "payment" => {
            r["amount"] = e["amount"].clone();
            r["reference"] = or_null(&e["reference"]);
        }
        "missed" => r["installment"] = e["installment"].clone(),
        _ => {
            r["new_due_on"] = or_null(&e["new_due_on"]);
            match &e["waive_penalty"] {
                Value::Null => {}
                Value::String(s) if s == "all" => r["waive_penalty_all"] = json!(true),
                amount => {
                    r["waive_penalty_all"] = json!(false);
                    r["waive_penalty"] = amount.clone();
                }
            }
            r["waive_interest"] = or_null(&e["waive_interest"]);
            r["installments"] = or_null(&e["installments"]);
        }
    }
    r
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

/// What pyarrow must read for one loan: its §7 line and its disbursement event.
fn projection_row(line: &str, disbursed: &Value) -> Value {
    let p: Value = serde_json::from_str(line).unwrap();
    let as_of = p["as_of"].as_str().unwrap();
    // The next installment to fall due (on or after as_of, something unpaid), by (due_on, n).
    let next = p["installments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] != "paid" && i["due_on"].as_str().unwrap() >= as_of)
        .map(|i| {
            let unpaid = dec(&i["principal"]) - dec(&i["paid_principal"]) + dec(&i["interest"])
                - dec(&i["paid_interest"]);
            (
                i["due_on"].as_str().unwrap(),
                i["n"].as_u64().unwrap(),
                unpaid,
            )
        })
        .filter(|(_, _, u)| *u > Decimal::ZERO)
        .min_by_key(|(d, n, _)| (d.to_string(), *n));
    json!({
        "loan_id": p["loan_id"], "as_of": p["as_of"], "version": p["version"],
        "policy": p["policy"], "currency": p["currency"], "status": p["status"],
        "outstanding_principal": p["outstanding"]["principal"],
        "outstanding_interest": p["outstanding"]["interest"],
        "outstanding_penalty": p["outstanding"]["penalty"],
        "outstanding_total": p["outstanding"]["total"],
        "overdue_principal": p["overdue"]["principal"],
        "overdue_interest": p["overdue"]["interest"],
        "paid_principal": p["paid"]["principal"], "paid_interest": p["paid"]["interest"],
        "paid_penalty": p["paid"]["penalty"],
        "waived_penalty": p["waived"]["penalty"], "waived_interest": p["waived"]["interest"],
        "penalty_accrued": p["penalty_accrued"], "overpaid": p["overpaid"],
        "days_past_due": p["days_past_due"], "stage": p["stage"], "class": p["class"],
        "bucket": p["bucket"], "extensions": p["extensions"],
        "broken_promise": p["broken_promise"],
        "disbursed_principal": disbursed["principal"], "disbursed_on": disbursed["on"],
        "next_due_on": next.as_ref().map(|n| json!(n.0)).unwrap_or(Value::Null),
        "next_due_amount": next.as_ref().map(|n| json!(n.2.to_string())).unwrap_or(Value::Null),
        "anomalies": p["anomalies"],
    })
}

#[test]
fn pyarrow_reads_both_exports_back_with_the_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let book = generate(BIN, 1000, 31) + WIDE;
    ok(run(BIN, &store, &["append", "--quiet"], Some(&book)));
    let as_of = "2024-06-29";
    let replayed = ok(run(BIN, &store, &["replay", "--as-of", as_of], None));
    let events = exported_events(BIN, &store);

    // Events.
    let file = dir.path().join("events.parquet");
    export_events_parquet(BIN, &store, &file);
    let (schema, rows) = dump(&file);
    assert_eq!(schema["recorded_at"], "timestamp[us, tz=UTC]");
    assert_eq!(schema["business_date"], "date32[day]");
    assert_eq!(schema["principal"], "decimal128(38, 2)");
    assert_eq!(schema["daily_rate"], "decimal128(24, 18)");
    assert_eq!(schema["seq"], "int64");
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(rows.len(), lines.len());
    let mut disbursed: HashMap<String, Value> = HashMap::new();
    for (row, line) in rows.iter().zip(&lines) {
        assert_eq!(row, &event_row(line), "event {line}");
        let e: Value = serde_json::from_str(line).unwrap();
        if e["type"] == "disbursed" {
            disbursed.insert(e["loan_id"].as_str().unwrap().to_owned(), e);
        }
    }
    assert!(rows.iter().any(|r| r["borrower"] == "借款人-α \"q\""));
    assert!(rows
        .iter()
        .any(|r| r["daily_rate"] == "0.000123456789012345"));
    assert!(rows.iter().any(|r| r["principal"] == "9999999999999999.99"));
    assert!(rows
        .iter()
        .any(|r| r["recorded_at"] == 1_704_164_645_123_456i64));
    for kind in ["disbursed", "payment", "missed", "negotiated_extension"] {
        assert!(rows.iter().any(|r| r["type"] == kind), "{kind}");
    }

    // Projections.
    let file = dir.path().join("owed.parquet");
    export_parquet(BIN, &store, as_of, &file);
    let (schema, rows) = dump(&file);
    assert_eq!(schema["as_of"], "date32[day]");
    assert_eq!(schema["outstanding_total"], "decimal128(38, 2)");
    assert_eq!(schema["next_due_on"], "date32[day]");
    let lines: Vec<&str> = replayed.lines().collect();
    assert_eq!(rows.len(), lines.len());
    for (row, line) in rows.iter().zip(&lines) {
        let loan = row["loan_id"].as_str().unwrap();
        assert_eq!(row, &projection_row(line, &disbursed[loan]), "loan {loan}");
    }
    assert!(rows
        .iter()
        .any(|r| !r["anomalies"].as_array().unwrap().is_empty()));
    assert!(rows.iter().any(|r| r["next_due_on"].is_null()));
    assert!(rows.iter().any(|r| !r["next_due_amount"].is_null()));
    assert!(rows.iter().any(|r| r["broken_promise"] == true));
    // Every CSV column is there, in the CSV's order, before the new ones.
    let csv = ok(run(BIN, &store, &["export", "--as-of", as_of], None));
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let names: Vec<&str> = schema
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for h in &header {
        assert!(names.contains(h), "{h}");
    }
}
