//! Many `arrears` processes on one PostgreSQL ledger, as a lender runs them: real processes, not
//! threads. The server is `$ARREARS_TEST_PG` (set by `.ci/run` from `scripts/postgres.sh
//! start`) or else the throwaway cluster that script starts; each test gets its own database.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};

use arrears_store::postgres::testing::TempDb;
use arrears_store::testing::write_sled_format1;
use arrears_store::{Mode, PostgresBackend, Store};
use arrears_testkit::{command, disbursed, generate_to, run};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

fn payment(loan: &Uuid, seq: Option<u64>, reference: &str) -> String {
    let seq = seq.map(|s| format!(r#","seq":{s}"#)).unwrap_or_default();
    arrears_testkit::payment(
        loan,
        "2024-02-05",
        "1.00",
        &format!(r#","reference":"{reference}"{seq}"#),
    )
}

/// `arrears --store STORE ARGS…` with `input` on standard input.
fn arrears(store: &str, args: &[&str], input: &str) -> Output {
    run(BIN, store, args, Some(input))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The event ids `append` printed (its acknowledgement: printed only once durable).
fn acknowledged(out: &Output) -> Vec<Uuid> {
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event_id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

/// Every stored event: loan → event ids in seq order (none before the first append).
fn stored(db: &TempDb) -> BTreeMap<Uuid, Vec<Uuid>> {
    let s = Store::new(PostgresBackend::open(&db.url, Mode::Create).unwrap());
    let mut out = BTreeMap::new();
    s.for_each_stream(&mut |loan, evs| {
        out.insert(loan, evs.iter().map(|e| e.event_id.uuid()).collect());
        Ok(())
    })
    .unwrap();
    out
}

fn conflict_head(stderr: &str, loan: &Uuid, expected: u64) -> u64 {
    // The message sled gives too: `arrears: line 1: seq: conflict: expected seq E but loan L is
    // at seq H (next is H+1)`.
    let prefix = format!(
        "arrears: line 1: seq: conflict: expected seq {expected} but loan {loan} is at seq "
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("not a seq conflict: {stderr}"));
    let rest = &line[prefix.len()..];
    let (head, next) = rest.split_once(" (next is ").unwrap();
    let head: u64 = head.parse().unwrap();
    assert_eq!(next, format!("{})", head + 1));
    head
}

/// N processes append to overlapping loans with an expected `seq`, each starting from the same
/// guess, so they conflict: every acknowledged event is stored exactly once, no seq has a gap,
/// `verify` passes, and each conflict is exit 2 with sled's message, writing nothing.
#[test]
fn processes_with_expected_seqs_conflict_cleanly() {
    let db = TempDb::new();
    let url = db.url.expose().to_owned();
    let loans: Vec<Uuid> = (1..=3).map(|i| Uuid::from_u128(0xabc0 + i)).collect();
    let setup: String = loans.iter().map(|l| disbursed(l) + "\n").collect();
    let out = arrears(&url, &["append"], &setup);
    assert!(out.status.success(), "{}", text(&out.stderr));

    const WORKERS: usize = 4;
    const ATTEMPTS: usize = 12;
    let results: Vec<(Vec<Uuid>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (url, loans) = (&url, &loans);
                scope.spawn(move || {
                    // What this worker believes each loan's next seq is: all start at 2, so the
                    // first attempts on a loan collide.
                    let mut next: HashMap<Uuid, u64> = loans.iter().map(|l| (*l, 2)).collect();
                    let mut acked = Vec::new();
                    let mut conflicts = 0;
                    for i in 0..ATTEMPTS {
                        let loan = loans[i % loans.len()];
                        let seq = next[&loan];
                        let line = payment(&loan, Some(seq), &format!("w{w}-{i}")) + "\n";
                        let out = arrears(url, &["append"], &line);
                        match out.status.code() {
                            Some(0) => {
                                let ids = acknowledged(&out);
                                assert_eq!(ids.len(), 1);
                                acked.extend(ids);
                                next.insert(loan, seq + 1);
                            }
                            Some(2) => {
                                let stderr = text(&out.stderr);
                                let head = conflict_head(&stderr, &loan, seq);
                                assert!(head >= seq, "a conflict means someone else got there");
                                assert!(out.stdout.is_empty(), "a conflict acknowledges nothing");
                                conflicts += 1;
                                next.insert(loan, head + 1);
                            }
                            other => panic!("exit {other:?}: {}", text(&out.stderr)),
                        }
                    }
                    (acked, conflicts)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let acked: Vec<Uuid> = results.iter().flat_map(|r| r.0.clone()).collect();
    let conflicts: usize = results.iter().map(|r| r.1).sum();
    assert!(
        conflicts >= WORKERS - 1,
        "the first attempts collide: {conflicts} conflicts"
    );
    assert_eq!(acked.len() + conflicts, WORKERS * ATTEMPTS);

    let streams = stored(&db);
    let all: Vec<Uuid> = streams.values().flat_map(|v| v[1..].to_vec()).collect();
    let mut sorted_all = all.clone();
    sorted_all.sort();
    let mut sorted_acked = acked.clone();
    sorted_acked.sort();
    assert_eq!(
        sorted_all, sorted_acked,
        "stored payments = acknowledged payments, each once"
    );
    let out = arrears(&url, &["verify"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = arrears(&url, &["digest"], "");
    assert!(
        text(&out.stdout).starts_with(&format!("{}-", 3 + acked.len())),
        "the log has one position per event: {}",
        text(&out.stdout)
    );
}

/// Without an expected `seq`, writers that race are re-sealed after the winner: every process
/// succeeds, every event is stored once, the log is dense and in commit order.
#[test]
fn processes_without_seqs_all_succeed() {
    let db = TempDb::new();
    let url = db.url.expose().to_owned();
    let loans: Vec<Uuid> = (1..=2).map(|i| Uuid::from_u128(0xdef0 + i)).collect();
    let setup: String = loans.iter().map(|l| disbursed(l) + "\n").collect();
    assert!(arrears(&url, &["append"], &setup).status.success());

    const WORKERS: usize = 4;
    const RUNS: usize = 8;
    let acked: Vec<Uuid> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (url, loans) = (&url, &loans);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..RUNS {
                        // Both loans in one batch, in a worker-dependent order.
                        let (a, b) = if w % 2 == 0 {
                            (loans[0], loans[1])
                        } else {
                            (loans[1], loans[0])
                        };
                        let input = format!(
                            "{}\n{}\n",
                            payment(&a, None, &format!("w{w}-{i}-a")),
                            payment(&b, None, &format!("w{w}-{i}-b"))
                        );
                        let out = arrears(url, &["append"], &input);
                        assert!(out.status.success(), "{}", text(&out.stderr));
                        acked.extend(acknowledged(&out));
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), WORKERS * RUNS * 2);
    let streams = stored(&db);
    let mut all: Vec<Uuid> = streams.values().flat_map(|v| v[1..].to_vec()).collect();
    all.sort();
    let mut acked = acked;
    acked.sort();
    assert_eq!(all, acked);
    let out = arrears(&url, &["verify"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The conflict message is sled's, word for word.
#[test]
fn a_conflict_reads_the_same_as_on_sled() {
    let db = TempDb::new();
    let dir = tempfile::tempdir().unwrap();
    let sled = dir.path().join("s.db");
    let loan = Uuid::from_u128(0x77);
    let mut messages = Vec::new();
    for store in [db.url.expose().to_owned(), sled.display().to_string()] {
        assert!(arrears(&store, &["append"], &(disbursed(loan) + "\n"))
            .status
            .success());
        let out = arrears(&store, &["append"], &(payment(&loan, Some(5), "x") + "\n"));
        assert_eq!(out.status.code(), Some(2));
        messages.push(text(&out.stderr));
    }
    assert_eq!(messages[0], messages[1]);
    assert_eq!(
        messages[0].trim_end(),
        format!("arrears: line 1: seq: conflict: expected seq 5 but loan {loan} is at seq 1 (next is 2)")
    );
}

/// A password in the URL never appears in what arrears prints: errors, `--help`.
#[test]
fn the_password_is_never_printed() {
    let db = TempDb::new();
    let url = db.url.expose().to_owned();
    let password = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .expect("the test server's URL has a password");
    // No store yet: the error names the database, without the password.
    let out = arrears(&url, &["digest"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no arrears store at postgres://"), "{err}");
    assert!(err.contains(":***@"), "{err}");
    assert!(!err.contains(&password), "{err}");
    // A wrong password: the server's refusal, without the password we sent.
    let wrong = url.replace(&password, "not-the-password-4242");
    let out = arrears(&wrong, &["digest"], "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("not-the-password-4242"), "{err}");
    // --help with the URL in $ARREARS_STORE shows the variable, not its value.
    let out = Command::new(BIN)
        .arg("--help")
        .env("ARREARS_STORE", &url)
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("ARREARS_STORE"), "{help}");
    assert!(!help.contains(&password), "{help}");
    // The demo's banner names the store without the password.
    let out = Command::new(BIN)
        .args(["demo", "--loans", "20"])
        .env("ARREARS_STORE", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains(":***@"), "{all}");
    assert!(!all.contains(&password), "{all}");
}

/// A database holding another schema version is refused, naming both versions.
#[test]
fn another_schema_version_is_refused() {
    let db = TempDb::new();
    let url = db.url.expose().to_owned();
    let loan = Uuid::from_u128(0x99);
    assert!(arrears(&url, &["append"], &(disbursed(loan) + "\n"))
        .status
        .success());
    {
        let s = PostgresBackend::open(&db.url, Mode::Existing).unwrap();
        s.conn()
            .unwrap()
            .execute(
                "UPDATE arrears_meta SET value = 2 WHERE name = 'schema_version'",
                &[],
            )
            .unwrap();
    }
    let out = arrears(&url, &["digest"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "holds arrears schema version 2; this build reads and writes schema version 1 only"
        ),
        "{err}"
    );
}

/// `copy` moves a ledger sled → PostgreSQL → a new sled keeping ids, seqs, `recorded_at`,
/// hashes and log positions: `digest` is equal, a digest taken half-way still checks on the
/// copies (so the log order is the source's), and `replay` prints the same bytes.
#[test]
fn copy_sled_to_postgres_to_a_new_sled_keeps_everything() {
    let db = TempDb::new();
    let pg = db.url.expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let book = dir.path().join("book.jsonl");
    generate_to(BIN, 300, 3, 120, &book);
    let lines: Vec<String> = std::fs::read_to_string(&book)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let half = lines.len() / 2;
    let first: String = lines[..half].iter().map(|l| l.clone() + "\n").collect();
    let second: String = lines[half..].iter().map(|l| l.clone() + "\n").collect();
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    ok(arrears(&a, &["append", "--quiet", "--batch", "97"], &first));
    let midway = ok(arrears(&a, &["digest"], "")).trim().to_owned();
    ok(arrears(
        &a,
        &["append", "--quiet", "--batch", "113"],
        &second,
    ));
    ok(arrears(&a, &["sweep", "--as-of", "2024-04-20"], ""));
    let digest = ok(arrears(&a, &["digest"], ""));
    let replay = ok(arrears(&a, &["replay", "--as-of", "2024-06-01"], ""));
    assert!(replay.lines().count() == 300);

    let copied = ok(arrears(&a, &["copy", "--from", &a, "--to", &pg], ""));
    assert!(copied.starts_with("copied 300 loans, "), "{copied}");
    assert!(!copied.contains(db.url.expose()), "no password: {copied}");
    ok(arrears(&pg, &["copy", "--from", &pg, "--to", &b], ""));
    for store in [&pg, &b] {
        assert_eq!(ok(arrears(store, &["digest"], "")), digest, "{store}");
        ok(arrears(store, &["verify", "--digest", &midway], ""));
        assert_eq!(
            ok(arrears(store, &["replay", "--as-of", "2024-06-01"], "")),
            replay
        );
    }
    // Into a store that holds events: refused, nothing written.
    let out = arrears(&a, &["copy", "--from", &b, "--to", &pg], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("copy writes only into an empty store"));
    assert_eq!(ok(arrears(&pg, &["digest"], "")), digest);
}

/// `copy` is also the way off an old on-disk format: a format-1 sled store (which this build
/// opens only to read) is copied to PostgreSQL with the same digest.
#[test]
fn copy_reads_a_format_1_store() {
    let db = TempDb::new();
    let pg = db.url.expose().to_owned();
    let mem = Store::new(arrears_store::MemoryBackend::new());
    let loans: Vec<Uuid> = (1..=3).map(|i| Uuid::from_u128(0xf100 + i)).collect();
    let mut streams = Vec::new();
    for (i, loan) in loans.iter().enumerate() {
        let mut batch = vec![disbursed(loan)];
        for k in 0..i {
            batch.push(payment(loan, None, &format!("p{k}")));
        }
        let events = batch
            .iter()
            .enumerate()
            .map(|(n, l)| arrears_cli::ledger::parse_line(l, n + 1, &Default::default()).unwrap())
            .collect();
        mem.append(events, &mut arrears_store::OpenGate, chrono::Utc::now())
            .unwrap();
        streams.push(mem.stream(*loan, None).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    write_sled_format1(&old, &streams);
    let old = old.display().to_string();
    let out = arrears(&old, &["digest"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("older on-disk format 1"));
    let out = arrears(&old, &["copy", "--from", &old, "--to", &pg], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = arrears(&pg, &["digest"], "");
    assert_eq!(text(&out.stdout).trim(), mem.digest().unwrap());
    assert!(arrears(&pg, &["verify"], "").status.success());
}

/// SIGKILL during a PostgreSQL append: the server rolls the open transaction back, so every
/// batch is wholly stored or absent, every event the killed process acknowledged (printed after
/// COMMIT) is stored, and `verify` passes. Kills land at spread-out moments of one long append,
/// resumed each time with `--skip-lines`.
#[test]
fn killed_appends_leave_whole_batches_and_keep_acknowledged_events() {
    use std::io::{BufRead, BufReader};
    let db = TempDb::new();
    let url = db.url.expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book.jsonl");
    generate_to(BIN, 1500, 5, 90, &book);
    let lines = std::fs::read_to_string(&book).unwrap().lines().count();
    const BATCH: usize = 100;
    let mut acked: Vec<Uuid> = Vec::new();
    let mut kills = 0;
    // Kill each append right after it has acknowledged 1–5 batches, while the next batch is
    // being parsed, sealed or committed. The moment is chosen by the process's own output, not by
    // a clock, so this holds however fast or loaded the machine is.
    for round in 0..12usize {
        // Resume from what is stored (every batch is whole, so it is a multiple of BATCH).
        let stored: usize = stored(&db).values().map(|v| v.len()).sum();
        if stored == lines {
            break;
        }
        assert_eq!(stored % BATCH, 0, "a partial batch is stored: {stored}");
        let mut child = command(BIN, &url)
            .args(["append", "--batch", &BATCH.to_string()])
            .args(["--skip-lines", &stored.to_string()])
            .arg(&book)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let wait_for = BATCH * (1 + round % 5);
        let mut seen = Vec::new();
        let mut line = String::new();
        while seen.len() < wait_for {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break; // the append finished first
            }
            seen.push(line.clone());
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            kills += 1;
        }
        child.wait().unwrap();
        // Whatever else it printed before the kill counts as acknowledged too.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        seen.extend(rest.lines().map(|l| format!("{l}\n")));
        for l in &seen {
            let v: serde_json::Value = match serde_json::from_str(l.trim_end()) {
                Ok(v) => v,
                Err(_) => continue, // a line cut by the kill acknowledges nothing
            };
            acked.push(v["event_id"].as_str().unwrap().parse().unwrap());
        }
    }
    // Catch up without kills, then the whole book must be stored exactly once.
    let before: usize = stored(&db).values().map(|v| v.len()).sum();
    assert_eq!(before % BATCH, 0, "a partial batch is stored: {before}");
    let out = command(BIN, &url)
        .args(["append", "--quiet", "--batch", &BATCH.to_string()])
        .args(["--skip-lines", &before.to_string()])
        .arg(&book)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(kills >= 3, "the kills landed during appends: {kills}");
    let all: std::collections::HashSet<Uuid> = stored(&db).into_values().flatten().collect();
    assert_eq!(all.len(), lines, "the whole book is stored once in the end");
    for id in &acked {
        assert!(all.contains(id), "acknowledged {id} is stored");
    }
    let out = arrears(&url, &["verify"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
}
