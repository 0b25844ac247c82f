//! `scale/spark.sh` end to end on a small book: installs what it needs (a Java 17 runtime, a
//! venv with pyspark and pyarrow; cached after the first run), starts a standalone Spark cluster
//! (a master and two workers on 127.0.0.1), replays the book there through `arrears project`,
//! compares with a local `arrears replay` byte for byte, and stops the cluster.
//!
//! Takes about a minute (JVM start-ups dominate: the cluster ~15 s, the job ~30–40 s); the first
//! run also downloads pyspark (~320 MB). It never skips itself: on a machine without the package
//! registries, leave it out by name (`cargo test -- --skip spark`), which the test summary shows.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

#[test]
fn spark_cluster_replay_equals_local_replay() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book.jsonl");
    arrears_testkit::generate_to(BIN, 300, 11, 365, &book);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scale/spark.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .arg(&book)
        .arg("2024-12-31")
        .env("ARREARS_BIN", BIN)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads so a chatty run cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    // Bounded: a stuck run is stopped (SIGTERM lets the script stop its cluster).
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let s = child.wait().unwrap();
            panic!(
                "spark.sh took over 20 minutes ({s}): {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!("{err}");
    assert!(
        status.success(),
        "spark.sh failed ({status}):\n{out}\n{err}"
    );
    assert!(
        err.contains("equal: 300 projections from Spark = 300 from local replay"),
        "{err}"
    );
}
