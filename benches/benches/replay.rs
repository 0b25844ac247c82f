//! replay_full: every loan from the store to one as-of date, JSON lines out, on 1 and 2 threads.
//! replay_floor: the same scan and decode of every event with no projection (1 thread), the
//! floor replay is measured against.
//! reproject_snapshots: every loan from its stored snapshot to a new as-of date.
//! All on the store reopened after it is written, as the `replay` command reads it.

use arrears_benches::*;
use arrears_cli::ledger::Ledger;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn replay(c: &mut Criterion) {
    let n = loans();
    let dir = tempfile::tempdir().unwrap();
    let lines = book_lines(n, 3);
    let events = book_events(&lines);
    let mut ledger = reopen(dir.path(), fill(dir.path(), &events, 10_000));
    drop(events);
    let as_of = horizon();
    let run =
        |ledger: &Ledger, threads: usize, incremental: bool, new_as_of: arrears_core::Date| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut bytes = 0usize;
                let s = ledger
                    .replay_all(
                        new_as_of,
                        None,
                        incremental,
                        true,
                        &|_| {},
                        &mut |_, json| {
                            bytes += json.map_or(0, <[u8]>::len);
                            Ok(())
                        },
                    )
                    .unwrap();
                (s, bytes)
            })
        };
    let (summary, _) = run(&ledger, 2, false, as_of);
    let mut g = c.benchmark_group("replay_full");
    g.sample_size(10)
        .throughput(Throughput::Elements(summary.events));
    g.bench_function(format!("{n}_loans_1_thread"), |b| {
        b.iter(|| run(&ledger, 1, false, as_of))
    });
    g.bench_function(format!("{n}_loans_2_threads"), |b| {
        b.iter(|| run(&ledger, 2, false, as_of))
    });
    g.finish();

    // The floor: scan and decode every stored event, no fold, no projection, no output.
    let mut g = c.benchmark_group("replay_floor");
    g.sample_size(10)
        .throughput(Throughput::Elements(summary.events));
    g.bench_function(format!("{n}_loans_scan_decode_1_thread"), |b| {
        b.iter(|| {
            let mut events = 0u64;
            ledger
                .store()
                .for_each_stream(&mut |_, evs| {
                    events += evs.len() as u64;
                    Ok(())
                })
                .unwrap();
            assert_eq!(events, summary.events);
        })
    });
    g.finish();

    // Build every snapshot once; then every loan is projected from its snapshot.
    let (built, _) = run(&ledger, 2, true, as_of);
    assert_eq!(built.from_snapshots, 0);
    // Reopened again: a reprojection is a later process reading the pages this one wrote.
    ledger = reopen(dir.path(), ledger);
    let later = as_of.add_days(30);
    let (check, _) = run(&ledger, 2, true, later);
    assert_eq!(
        check.from_snapshots, check.loans,
        "all loans must come from snapshots"
    );
    let mut g = c.benchmark_group("reproject_snapshots");
    g.sample_size(10)
        .throughput(Throughput::Elements(check.loans));
    g.bench_function(format!("{n}_loans_2_threads"), |b| {
        b.iter(|| run(&ledger, 2, true, later))
    });
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
