//! append_bulk: durable batched append of a generated book, against raw sled
//! `apply_batch` + `flush` of the same stored bytes under the same keys, in the same run.
//! append_single: one durable append at a time (latency).

use std::time::{Duration, Instant};

use arrears_benches::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 10_000;

fn append_bulk(c: &mut Criterion) {
    let lines = book_lines(loans(), 1);
    let events = book_events(&lines);
    // The same bytes the store writes for each event, under the same keys.
    let stored: Vec<(Vec<u8>, Vec<u8>)> = {
        let dir = tempfile::tempdir().unwrap();
        drop(fill(dir.path(), &events, BATCH));
        // Every stored value (segments, log runs, fingerprint runs), exactly as the store wrote
        // it. The generated book holds each loan's events together, so each loan is written by
        // one batch and the final values are the values written.
        let db = arrears_store::sled_backend::open_raw(dir.path()).unwrap();
        let tree = db.open_tree("arrears").unwrap();
        tree.iter()
            .map(|kv| kv.unwrap())
            .filter(|(k, _)| k[0] != b'm')
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect::<Vec<_>>()
    };
    let batches = events.len().div_ceil(BATCH);
    let per_batch = stored.len().div_ceil(batches);
    let mut g = c.benchmark_group("append_bulk");
    g.sample_size(10)
        .throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("arrears", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let ledger = arrears_cli::ledger::Ledger::open_sled(
                    dir.path(),
                    arrears_core::Policy::default(),
                )
                .unwrap();
                let batches: Vec<_> = events.chunks(BATCH).map(|c| c.to_vec()).collect();
                let t = Instant::now();
                for batch in batches {
                    ledger.append(batch, now()).unwrap();
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("raw_sled_same_bytes", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let db = sled::open(dir.path()).unwrap();
                let tree = db.open_tree("arrears").unwrap();
                let t = Instant::now();
                for chunk in stored.chunks(per_batch) {
                    let mut batch = sled::Batch::default();
                    for (k, v) in chunk {
                        batch.insert(k.as_slice(), v.as_slice());
                    }
                    tree.apply_batch(batch).unwrap();
                    db.flush().unwrap();
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn append_single(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let lines = book_lines(2_000, 2);
    let events = book_events(&lines);
    let ledger = fill(dir.path(), &events, BATCH);
    // One payment at a time, rotating over the book's loans, as a servicer's online writes do.
    let loans: Vec<_> = {
        let mut v: Vec<_> = events.iter().map(|e| e.loan_id).collect();
        v.dedup();
        v
    };
    let mut k = 0usize;
    let mut payment = move || {
        k += 1;
        let loan = loans[k % loans.len()];
        let line = format!(
            r#"{{"loan_id":"{loan}","type":"payment","on":"2024-12-31","amount":"0.01","reference":"r{k}"}}"#
        );
        arrears_cli::ledger::parse_line(&line, 1, &arrears_core::Policy::default()).unwrap()
    };
    // p50/p99 of single durable appends, printed once (criterion reports mean and median).
    if full() {
        let mut lat: Vec<Duration> = (0..500)
            .map(|_| {
                let ev = payment();
                let t = Instant::now();
                ledger.append(vec![ev], now()).unwrap();
                t.elapsed()
            })
            .collect();
        lat.sort();
        eprintln!(
            "append_single latency over 500 appends: p50 {:?}, p99 {:?}",
            lat[250], lat[495]
        );
    }
    let mut g = c.benchmark_group("append_single");
    g.sample_size(20).throughput(Throughput::Elements(1));
    g.bench_function("one_durable_append", |b| {
        b.iter(|| ledger.append(vec![payment()], now()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, append_bulk, append_single);
criterion_main!(benches);
