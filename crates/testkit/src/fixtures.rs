//! The golden-fixture runner: every case directory under a root is checked, all differences are
//! reported together, and `ARREARS_REGEN=1` rewrites the expected answers instead.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};

/// The golden fixtures' clock, 2024-06-01T00:00:00Z: the `recorded_at` of every fixture event
/// that gives none (their `known_at` queries are written against it).
pub fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap()
}

/// True when `ARREARS_REGEN` is set: rewrite the expected files from the program's output.
pub fn regen() -> bool {
    std::env::var_os("ARREARS_REGEN").is_some()
}

/// `dir` under the workspace root (`crate_dir` is the calling crate's `CARGO_MANIFEST_DIR`).
pub fn workspace_dir(crate_dir: &str, dir: &str) -> PathBuf {
    Path::new(crate_dir).join("../..").join(dir)
}

/// What [`check_all`] found: how many cases ran and how many queries they answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub cases: usize,
    pub queries: usize,
}

/// Run `case(dir, regen)` on every directory below `root` holding an `events.jsonl`, in name
/// order. `case` returns the number of queries it checked, or the differences. Panics naming
/// every failing case (`what` says which fixtures, e.g. "rule fixture").
pub fn check_all(
    root: &Path,
    what: &str,
    case: impl Fn(&Path, bool) -> Result<usize, String>,
) -> Checked {
    let regen = regen();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("events.jsonl").exists())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut queries = 0;
    for dir in &cases {
        match case(dir, regen) {
            Ok(n) => queries += n,
            Err(e) => failures.push(format!(
                "{}:\n{e}",
                dir.file_name().unwrap().to_string_lossy()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {what} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    Checked {
        cases: cases.len(),
        queries,
    }
}

/// Write `answers` as a pretty JSON array with a final newline (a regenerated `expected.json`).
pub fn write_expected(path: &Path, answers: &[serde_json::Value]) -> Result<(), String> {
    let mut out = serde_json::to_string_pretty(answers).unwrap();
    out.push('\n');
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read an `expected.json` array.
pub fn read_expected(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("expected.json: {e}"))
}

/// The end of a case: with `regen`, `answers` are written to `path`; otherwise any `diffs` fail
/// the case. The number of queries checked.
pub fn finish(
    path: &Path,
    answers: &[serde_json::Value],
    diffs: &[String],
    regen: bool,
) -> Result<usize, String> {
    if regen {
        write_expected(path, answers)?;
    } else if !diffs.is_empty() {
        return Err(diffs.join("\n"));
    }
    Ok(answers.len())
}
