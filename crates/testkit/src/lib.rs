//! Test support shared by the workspace's tests and benches (a dev-dependency only): run the
//! real `arrears` binary, generate books, build event lines. One copy of each helper.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, TimeZone, Utc};

/// A fixed "now" for stores in tests: later than every generated event's `recorded_at`.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
}

/// Run `bin --store STORE ARGS…` with `stdin` (empty when None), `$ARREARS_STORE` unset.
pub fn run(bin: &str, store: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ARREARS_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            // A command that fails early may close its stdin: that is its answer, not ours.
            let _ = input.write_all(s.as_bytes());
        }
    }
    child.wait_with_output().unwrap()
}

/// Standard output as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whitespace folded, so table checks do not depend on column widths.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `arrears generate --loans N --seed S` as JSON lines.
pub fn generate(bin: &str, loans: u64, seed: u64) -> String {
    let o = Command::new(bin)
        .args([
            "generate",
            "--loans",
            &loans.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

/// A 1,000.00 bullet loan over 30 days at 0.05 %/day, disbursed 2024-01-01 (SPEC §7's example).
pub fn disbursed(loan: &str) -> String {
    format!(
        r#"{{"loan_id":"{loan}","type":"disbursed","on":"2024-01-01","principal":"1000.00","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{{"kind":"bullet","days":30}}}}}}"#
    )
}

/// A payment line; `extra` is appended inside the object (e.g. `,"event_id":"…"`).
pub fn payment(loan: &str, on: &str, amount: &str, extra: &str) -> String {
    format!(r#"{{"loan_id":"{loan}","type":"payment","on":"{on}","amount":"{amount}"{extra}}}"#)
}
