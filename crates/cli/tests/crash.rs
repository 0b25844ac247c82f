//! Crash safety: `arrears append`, `sweep` and `replay --incremental` are killed with SIGKILL at
//! random moments; after each kill the store must reopen, `verify` must pass, every batch must be
//! wholly present or wholly absent, and every event the killed process had acknowledged (printed
//! after its durable append) must be there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrears_core::store::{EventStore, SledStore};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

fn spawn(store: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ARREARS_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kill `child` after `delay` unless it finished; returns (finished successfully, stdout lines).
fn kill_after(mut child: Child, delay: Duration) -> (bool, Vec<String>) {
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let deadline = Instant::now() + delay;
    let mut finished = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            finished = Some(status.success());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ok = match finished {
        Some(ok) => ok,
        None => {
            let _ = child.kill(); // SIGKILL on Unix
            let status = child.wait().unwrap();
            status.success()
        }
    };
    (ok, reader.join().unwrap())
}

fn verify(store: &Path) {
    let out = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .arg("verify")
        .env_remove("ARREARS_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed after a kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Events stored per loan.
fn counts(store: &Path) -> BTreeMap<uuid::Uuid, u64> {
    let s = SledStore::open(store).unwrap();
    s.heads()
        .unwrap()
        .into_iter()
        .map(|(l, h)| (l, h.seq))
        .collect()
}

fn generated(loans: u64, seed: u64) -> Vec<String> {
    let out = Command::new(BIN)
        .args([
            "generate",
            "--loans",
            &loans.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn killed_appends_are_all_or_nothing_and_acknowledged_events_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    // Batches of whole loans, so each batch is independent of the others.
    let lines = generated(3_000, 21);
    let mut by_loan: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        by_loan
            .entry(v["loan_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(l.clone());
    }
    let loans: Vec<(String, Vec<String>)> = by_loan.into_iter().collect();
    let batches: Vec<Vec<(String, Vec<String>)>> = loans.chunks(100).map(|c| c.to_vec()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let (mut kills, mut completed, mut stored_after_kill) = (0, 0, 0);
    let mut pending: Vec<usize> = (0..batches.len()).collect();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    while (kills < 30 || !pending.is_empty()) && started.elapsed() < Duration::from_secs(60) {
        let i = if pending.is_empty() {
            rng.gen_range(0..batches.len())
        } else {
            pending[0]
        };
        let file = dir.path().join(format!("batch{i}.jsonl"));
        let text: String = batches[i]
            .iter()
            .flat_map(|(_, ls)| ls.iter().map(|l| format!("{l}\n")))
            .collect();
        std::fs::write(&file, text).unwrap();
        let child = spawn(&store, &["append", file.to_str().unwrap()]);
        // Kill anywhere from process start-up to the end of the append.
        let delay = Duration::from_millis(rng.gen_range(0..120));
        let (ok, printed) = kill_after(child, delay);
        if ok {
            completed += 1;
        } else {
            kills += 1;
        }
        verify(&store);
        let was_done = done.contains(&i);
        let stored = counts(&store);
        // All or nothing for this batch.
        let present: Vec<bool> = batches[i]
            .iter()
            .map(|(loan, ls)| {
                stored.get(&loan.parse().unwrap()).copied().unwrap_or(0) == ls.len() as u64
            })
            .collect();
        let absent = batches[i]
            .iter()
            .all(|(loan, _)| !stored.contains_key(&loan.parse().unwrap()));
        let whole = present.iter().all(|p| *p);
        assert!(whole || absent, "batch {i} is partly stored after a kill");
        assert!(
            whole || !done.contains(&i),
            "batch {i} was acknowledged earlier and is gone"
        );
        // Every acknowledged event (printed after the durable append) is stored.
        for (k, line) in printed.iter().enumerate() {
            // A kill while printing can cut the last line short; that line was not fully
            // acknowledged. Any earlier line must be whole.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                assert_eq!(
                    k + 1,
                    printed.len(),
                    "a cut line that is not the last: {line}"
                );
                continue;
            };
            let loan: uuid::Uuid = v["loan_id"].as_str().unwrap().parse().unwrap();
            assert!(
                stored.get(&loan).copied().unwrap_or(0) >= v["seq"].as_u64().unwrap(),
                "acknowledged event lost"
            );
        }
        if ok {
            assert!(
                whole,
                "batch {i}: the process succeeded but the batch is not stored"
            );
        }
        if whole && !ok && !was_done {
            stored_after_kill += 1;
        }
        if whole {
            done.insert(i);
            pending.retain(|&p| p != i);
        }
    }
    eprintln!("{kills} kills, {completed} appends finished, {} of {} batches stored, {} kills left a batch wholly stored", done.len(), batches.len(), stored_after_kill);
    assert!(kills >= 30, "only {kills} kills in the time allowed");
    assert!(completed + done.len() > 0);
    // Every batch is eventually stored exactly once.
    for (i, b) in batches.iter().enumerate() {
        let stored = counts(&store);
        for (loan, ls) in b {
            assert_eq!(
                stored.get(&loan.parse().unwrap()).copied(),
                Some(ls.len() as u64),
                "batch {i}"
            );
        }
    }
}

#[test]
fn killed_sweeps_and_incremental_replays_leave_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let book = dir.path().join("book.jsonl");
    std::fs::write(&book, generated(1_500, 5).join("\n") + "\n").unwrap();
    assert!(Command::new(BIN)
        .arg("--store")
        .arg(&store)
        .args(["append", "--quiet", book.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let replay = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--store")
            .arg(&store)
            .arg("replay")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // Incremental replay killed while writing snapshots: a later run must still print exactly the
    // full replay (snapshots are version-checked and written atomically per chunk).
    let full = replay(&["--as-of", "2024-06-29"]);
    for _ in 0..6 {
        let child = spawn(
            &store,
            &["replay", "--as-of", "2024-06-29", "--incremental"],
        );
        kill_after(child, Duration::from_millis(rng.gen_range(0..150)));
        verify(&store);
        assert_eq!(replay(&["--as-of", "2024-06-29", "--incremental"]), full);
    }
    // Sweep killed at random: its one batch is all or nothing; a final sweep completes the day.
    let misses = |store: &Path| -> u64 {
        let s = SledStore::open(store).unwrap();
        let mut n = 0;
        s.for_each_stream(&mut |_, evs| {
            n += evs
                .iter()
                .filter(|e| matches!(e.body, arrears_core::Body::Missed(_)))
                .count() as u64;
            Ok(())
        })
        .unwrap();
        n
    };
    let before = misses(&store);
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let child = spawn(&store, &["sweep", "--as-of", "2024-06-29"]);
        kill_after(child, Duration::from_millis(rng.gen_range(0..150)));
        verify(&store);
        seen.insert(misses(&store));
    }
    assert!(Command::new(BIN)
        .arg("--store")
        .arg(&store)
        .args(["sweep", "--as-of", "2024-06-29"])
        .status()
        .unwrap()
        .success());
    let after = misses(&store);
    assert!(
        after > before,
        "the book has unrecorded misses on 2024-06-29"
    );
    // Only "none of the sweep" or "all of it" was ever observed.
    assert!(
        seen.iter().all(|n| *n == before || *n == after),
        "a partial sweep was visible: {seen:?} (before {before}, after {after})"
    );
    let again = Command::new(BIN)
        .arg("--store")
        .arg(&store)
        .args(["sweep", "--as-of", "2024-06-29"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("recorded 0 misses"));
}
