//! Crash safety: `arrears append`, `sweep` and `replay --incremental` are killed with SIGKILL at
//! random moments; after each kill the store must reopen, `verify` must pass, every batch must be
//! wholly present or wholly absent, and every event the killed process had acknowledged (printed
//! after its durable append) must be there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use arrears_store::{Mode, SledBackend, Store};
use arrears_testkit::{command, err, generate, temp_store};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

fn spawn(store: &Path, args: &[&str]) -> Child {
    command(BIN, store)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kill `child` after `delay` unless it finished first. Returns how long it ran when it finished
/// successfully (None when it was killed or failed) and the stdout lines it printed.
fn kill_after(mut child: Child, delay: Duration) -> (Option<Duration>, Vec<String>) {
    let started = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let deadline = started + delay;
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
    let ran = started.elapsed();
    (ok.then_some(ran), reader.join().unwrap())
}

fn verify(store: &Path) {
    let out = command(BIN, store).arg("verify").output().unwrap();
    assert!(
        out.status.success(),
        "verify failed after a kill: {}",
        err(&out)
    );
}

/// Events stored per loan.
fn counts(store: &Path) -> BTreeMap<uuid::Uuid, u64> {
    let s = Store::new(SledBackend::open(store, Mode::Existing, None).unwrap());
    s.heads()
        .unwrap()
        .into_iter()
        .map(|(l, h)| (l, h.seq))
        .collect()
}

fn generated(loans: u64, seed: u64) -> Vec<String> {
    generate(BIN, loans, seed)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Run `args` to completion (no kill) and return how long it took; panics unless it succeeds.
fn timed_run(store: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = command(BIN, store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", err(&out));
    t.elapsed()
}

/// A kill delay drawn uniformly from [0, span]: `span` is how long the same command took
/// unkilled on this machine, measured by the test itself, so the kills land across the whole
/// run of the command however fast or slow the machine is.
fn delay_within(rng: &mut impl Rng, span: Duration) -> Duration {
    let micros = span.as_micros().max(1) as u64;
    Duration::from_micros(rng.gen_range(0..=micros))
}

/// Every loan of a batch is wholly stored, or none is.
fn batch_state(
    stored: &BTreeMap<uuid::Uuid, u64>,
    batch: &[(String, Vec<String>)],
) -> (bool, bool) {
    let whole = batch.iter().all(|(loan, ls)| {
        stored.get(&loan.parse().unwrap()).copied().unwrap_or(0) == ls.len() as u64
    });
    let absent = batch
        .iter()
        .all(|(loan, _)| !stored.contains_key(&loan.parse().unwrap()));
    (whole, absent)
}

/// Every acknowledged event (a whole line printed after the durable append) is stored.
fn acknowledged_are_stored(printed: &[String], stored: &BTreeMap<uuid::Uuid, u64>) {
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
}

fn batch_file(dir: &Path, i: usize, batch: &[(String, Vec<String>)]) -> std::path::PathBuf {
    let file = dir.join(format!("batch{i}.jsonl"));
    let text: String = batch
        .iter()
        .flat_map(|(_, ls)| ls.iter().map(|l| format!("{l}\n")))
        .collect();
    std::fs::write(&file, text).unwrap();
    file
}

const KILLS: usize = 30;
const CREATION_KILLS: usize = 10;

#[test]
fn killed_appends_are_all_or_nothing_and_acknowledged_events_survive() {
    let dir = tempfile::tempdir().unwrap();
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
    let files: Vec<_> = batches
        .iter()
        .enumerate()
        .map(|(i, b)| batch_file(dir.path(), i, b))
        .collect();
    let file = |i: usize| files[i].to_str().unwrap().to_owned();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    // Calibrate on this machine: one append that creates a store, then appends into an
    // existing store (the fastest of three). During the kill phase the span follows what it
    // sees: it grows a little after each kill and becomes the measured duration after each
    // completion, so the delays keep covering a whole append, its commit and its exit, however
    // fast or loaded the machine is.
    let scratch = dir.path().join("scratch");
    let create_span = timed_run(&scratch, &["append", "--quiet", &file(0)]);
    let mut append_span = (1..4)
        .map(|i| timed_run(&scratch, &["append", "--quiet", &file(i)]))
        .min()
        .unwrap();

    // Kills while the first append is creating the store: afterwards the path is either absent
    // or a complete store holding the batch wholly or not at all; the next append always works.
    for k in 0..CREATION_KILLS {
        let store = dir.path().join(format!("fresh{k}"));
        let child = spawn(&store, &["append", &file(0)]);
        let (ran, printed) = kill_after(child, delay_within(&mut rng, create_span));
        let ok = ran.is_some();
        if store.exists() {
            verify(&store);
            let stored = counts(&store);
            let (whole, absent) = batch_state(&stored, &batches[0]);
            assert!(whole || absent, "creation kill {k}: batch partly stored");
            assert!(!ok || whole, "creation kill {k}: succeeded but not stored");
            acknowledged_are_stored(&printed, &stored);
        } else {
            assert!(!ok, "the append succeeded but left no store");
            assert!(printed.is_empty(), "acknowledged events without a store");
        }
        timed_run(&store, &["append", "--quiet", &file(0)]);
        verify(&store);
        let (whole, _) = batch_state(&counts(&store), &batches[0]);
        assert!(whole, "creation kill {k}: a re-run did not store the batch");
        // No temporary sibling is left behind once a creator has finished.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".creating."))
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }

    // Kills during appends into an existing store.
    let store = dir.path().join("db");
    timed_run(&store, &["append", "--quiet", &file(0)]);
    let mut done: BTreeSet<usize> = [0].into();
    let mut pending: Vec<usize> = (1..batches.len()).collect();
    let (mut kills, mut completed, mut attempts, mut stored_by_killed) = (0, 0, 0, 0);
    while kills < KILLS {
        attempts += 1;
        // Every attempt either kills or completes; a completion means the delay outlived the
        // append, so this bound is reached only if kills never land, which is a harness bug.
        assert!(
            attempts < 20 * KILLS,
            "{kills} kills in {attempts} attempts"
        );
        let i = match pending.first() {
            Some(&i) => i,
            None => rng.gen_range(0..batches.len()),
        };
        let child = spawn(&store, &["append", &file(i)]);
        // A quarter beyond the fastest whole append, so some kills land after the commit, while
        // the acknowledgements are printed or the process exits.
        let (ran, printed) = kill_after(child, delay_within(&mut rng, append_span * 5 / 4));
        let ok = ran.is_some();
        match ran {
            Some(ran) => {
                completed += 1;
                append_span = ran;
            }
            None => {
                kills += 1;
                append_span = append_span * 21 / 20;
            }
        }
        verify(&store);
        let stored = counts(&store);
        let (whole, absent) = batch_state(&stored, &batches[i]);
        assert!(whole || absent, "batch {i} is partly stored after a kill");
        assert!(
            whole || !done.contains(&i),
            "batch {i} was acknowledged earlier and is gone"
        );
        acknowledged_are_stored(&printed, &stored);
        assert!(
            !ok || whole,
            "batch {i}: the process succeeded but the batch is not stored"
        );
        if whole && !ok && !done.contains(&i) {
            stored_by_killed += 1;
        }
        if whole {
            done.insert(i);
            pending.retain(|&p| p != i);
        }
    }
    eprintln!(
        "{CREATION_KILLS} kills during creation; {kills} kills and {completed} completions in \
         {attempts} appends (calibrated: create {create_span:?}, append {append_span:?}); \
         {stored_by_killed} killed appends had committed; {} of {} batches stored before the \
         catch-up",
        done.len(),
        batches.len()
    );
    // Catch-up without kills: every pending batch is appended, then every batch must be stored
    // exactly once (re-appending a stored batch is a no-op, so nothing is doubled).
    for &i in &pending {
        timed_run(&store, &["append", "--quiet", &file(i)]);
    }
    verify(&store);
    let stored = counts(&store);
    for (i, b) in batches.iter().enumerate() {
        for (loan, ls) in b {
            assert_eq!(
                stored.get(&loan.parse().unwrap()).copied(),
                Some(ls.len() as u64),
                "batch {i}"
            );
        }
    }
    assert_eq!(stored.len(), loans.len(), "no loan beyond the batches");
}

#[test]
fn killed_sweeps_and_incremental_replays_leave_a_consistent_store() {
    let (dir, store) = temp_store();
    let book = dir.path().join("book.jsonl");
    std::fs::write(&book, generated(1_500, 5).join("\n") + "\n").unwrap();
    assert!(command(BIN, &store)
        .args(["append", "--quiet", book.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let replay = |args: &[&str]| {
        let out = command(BIN, &store)
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
    let replay_span = timed_run(
        &store,
        &["replay", "--as-of", "2024-06-29", "--incremental"],
    );
    for _ in 0..6 {
        let child = spawn(
            &store,
            &["replay", "--as-of", "2024-06-29", "--incremental"],
        );
        kill_after(child, delay_within(&mut rng, replay_span));
        verify(&store);
        assert_eq!(replay(&["--as-of", "2024-06-29", "--incremental"]), full);
    }
    // Sweep killed at random: its one batch is all or nothing; a final sweep completes the day.
    let misses = |store: &Path| -> u64 {
        let s = Store::new(SledBackend::open(store, Mode::Existing, None).unwrap());
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
    // A sweep of a date with nothing to record reads as much as one that records: its time
    // bounds the kill delays.
    let sweep_span = timed_run(&store, &["sweep", "--as-of", "2024-01-01"]);
    assert_eq!(
        misses(&store),
        before,
        "nothing is unrecorded on the first day"
    );
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let child = spawn(&store, &["sweep", "--as-of", "2024-06-29"]);
        kill_after(child, delay_within(&mut rng, sweep_span * 2));
        verify(&store);
        seen.insert(misses(&store));
    }
    assert!(command(BIN, &store)
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
    let again = command(BIN, &store)
        .args(["sweep", "--as-of", "2024-06-29"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("recorded 0 misses"));
}
