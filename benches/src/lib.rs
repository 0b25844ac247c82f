//! Shared set-up for the criterion benchmarks: synthetic books and stores.
//!
//! Sizes: under `cargo bench` (criterion passes `--bench`) the full sizes are used, scaled by
//! `ARREARS_BENCH_LOANS` (default 100,000 loans); under `cargo test --benches` each benchmark
//! runs once on a tiny book, as a smoke test.

use std::path::Path;

use arrears_cli::generate::{generate, GenConfig};
use arrears_cli::ledger::Ledger;
use arrears_core::event::NewEvent;
use arrears_core::Date;
use arrears_core::Policy;

// The benchmarks measure the library as the `arrears` binary runs it, with the binary's
// allocator (crates/cli/src/main.rs): the projection allocates many small, short-lived objects,
// and glibc malloc would add a cost the product never pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// True under `cargo bench`; false when `cargo test` smoke-runs the bench binary.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Loans in the book: `ARREARS_BENCH_LOANS` under `cargo bench`, 200 in smoke runs.
pub fn loans() -> u64 {
    if !full() {
        return 200;
    }
    std::env::var("ARREARS_BENCH_LOANS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

pub fn start() -> Date {
    Date::from_ymd(2024, 1, 1).unwrap()
}

/// The as-of date the generated books describe.
pub fn horizon() -> Date {
    Date::from_ymd(2024, 12, 31).unwrap()
}

/// A generated book as JSON lines.
pub fn book_lines(loans: u64, seed: u64) -> Vec<String> {
    let cfg = GenConfig {
        loans,
        seed,
        start: start(),
        days: start().days_until(horizon()) as u32,
    };
    let mut out = Vec::new();
    generate(&cfg, &Policy::default(), &|_| {}, &mut |l| {
        out.push(l.to_owned());
        Ok(())
    })
    .unwrap();
    out
}

/// Parsed and validated events of a book.
pub fn book_events(lines: &[String]) -> Vec<NewEvent> {
    let p = Policy::default();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| arrears_cli::ledger::parse_line(l, i + 1, &p).unwrap())
        .collect()
}

/// The store's clock for every append: after every generated event (testkit's fixed "now").
pub use arrears_testkit::now;

/// The store at `dir` opened afresh, as every `arrears` command opens it: a nightly `replay` is a
/// new process reading a store that earlier processes wrote. (Read in the process that just
/// wrote it, the same store replays ~20 % slower: sled's cache then holds the nodes as the
/// appends built them, not as they are read from disk. docs/benchmarks.md, "Fourth pass".)
pub fn reopen(dir: &Path, written: Ledger) -> Ledger {
    drop(written);
    Ledger::open_sled(dir, Policy::default()).unwrap()
}

/// A store at `dir` holding the book, appended in batches of `batch` events.
pub fn fill(dir: &Path, events: &[NewEvent], batch: usize) -> Ledger {
    let ledger = Ledger::open_sled(dir, Policy::default()).unwrap();
    for chunk in events.chunks(batch) {
        ledger.append(chunk.to_vec(), now()).unwrap();
    }
    ledger
}
