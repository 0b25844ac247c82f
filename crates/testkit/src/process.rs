//! Driving the real `arrears` binary: commands, their output, generated books, signals. Every
//! function takes the binary's path (`env!("CARGO_BIN_EXE_arrears")` in the calling test).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `bin --store STORE` with `$ARREARS_STORE` unset, ready for arguments and pipes. `store` is a
/// path or a `postgres://` URL.
pub fn command(bin: &str, store: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(bin);
    c.arg("--store").arg(store).env_remove("ARREARS_STORE");
    c
}

/// Run `bin --store STORE ARGS…` with `stdin` (empty when None), `$ARREARS_STORE` unset.
pub fn run(bin: &str, store: impl AsRef<OsStr>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command(bin, store)
        .args(args)
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

/// Standard output of a command that must have succeeded (else: its exit code and stderr).
pub fn success(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), err(o));
    out(o)
}

/// [`run`] that must succeed: its standard output (else: the arguments and stderr).
pub fn ok(bin: &str, store: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = run(bin, store, args, stdin);
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    out(&o)
}

/// Whitespace folded, so table checks do not depend on column widths.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `arrears generate --loans N --seed S` as JSON lines.
pub fn generate(bin: &str, loans: u64, seed: u64) -> String {
    let o = Command::new(bin)
        .args(["generate", "--loans", &loans.to_string()])
        .args(["--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

/// `arrears generate --loans N --seed S --days D --out FILE`.
pub fn generate_to(bin: &str, loans: u64, seed: u64, days: u32, file: &Path) {
    let o = Command::new(bin)
        .args(["generate", "--loans", &loans.to_string()])
        .args(["--seed", &seed.to_string(), "--days", &days.to_string()])
        .arg("--out")
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
}

/// A store path (`…/db`, not created) in a fresh temporary directory; keep the directory alive.
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    (dir, store)
}

/// A generated book (`loans`, `seed`) appended to `store` with `append --quiet`; the book.
pub fn book(bin: &str, store: &Path, loans: u64, seed: u64) -> String {
    let book = generate(bin, loans, seed);
    ok(bin, store, &["append", "--quiet"], Some(&book));
    book
}

/// A new store in a temporary directory holding a generated book.
pub fn booked(bin: &str, loans: u64, seed: u64) -> (tempfile::TempDir, PathBuf) {
    let (dir, store) = temp_store();
    book(bin, &store, loans, seed);
    (dir, store)
}

/// Send signal `sig` (`"INT"`, `"TERM"`, …) to process `pid` with the `kill` command (no
/// `unsafe` needed).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// `export --events --format jsonl`: every stored event as a JSON line (must succeed).
pub fn exported_events(bin: &str, store: &Path) -> String {
    ok(
        bin,
        store,
        &["export", "--events", "--format", "jsonl"],
        None,
    )
}

/// `export --events --format parquet --out FILE` (must succeed).
pub fn export_events_parquet(bin: &str, store: &Path, file: &Path) {
    let file = file.to_str().expect("a UTF-8 path");
    let args = ["export", "--events", "--format", "parquet", "--out", file];
    ok(bin, store, &args, None);
}

/// `export --format parquet --as-of DATE --out FILE`: the projections (must succeed).
pub fn export_parquet(bin: &str, store: &Path, as_of: &str, file: &Path) {
    let file = file.to_str().expect("a UTF-8 path");
    let args = [
        "export", "--format", "parquet", "--as-of", as_of, "--out", file,
    ];
    ok(bin, store, &args, None);
}
