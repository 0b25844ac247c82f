//! Test support shared by this crate's tests and the CLI's (hidden from the docs, like
//! `postgres::testing`): building stores of older on-disk formats, which this build no longer
//! writes, to test that they are read, upgraded and copied.

use std::path::Path;

use arrears_core::event::Event;
use uuid::Uuid;

use crate::{chunk, Backend, Store};

/// Write `streams` (one loan's events each, in seq order) as a sled store of on-disk format 1:
/// encoding-2 chunks (one per loan), `h` heads, an `i` id index value per event, one `l` log run
/// per loan.
pub fn write_sled_format1(path: &Path, streams: &[Vec<Event>]) {
    let db = sled::open(path).unwrap();
    let t = db.open_tree("arrears").unwrap();
    t.insert(b"mformat", &1u32.to_be_bytes()).unwrap();
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut pos = 1u64;
    for evs in streams {
        let (l, last) = (evs[0].loan_id.as_bytes(), evs.last().unwrap());
        let mut chunk2 = vec![2u8];
        chunk2.extend_from_slice(&chunk::encode_events(evs));
        t.insert(cat(&[b"e", l, &1u64.to_be_bytes()]), chunk2)
            .unwrap();
        let head = cat(&[
            &last.seq.get().to_be_bytes(),
            &last.hash.0,
            &last.recorded_at.timestamp_micros().to_be_bytes(),
        ]);
        t.insert(cat(&[b"h", l]), head).unwrap();
        for e in evs {
            t.insert(
                cat(&[b"i", e.event_id.as_bytes()]),
                cat(&[l, &e.seq.get().to_be_bytes()]),
            )
            .unwrap();
        }
        let run = cat(&[l, &1u64.to_be_bytes(), &(evs.len() as u32).to_be_bytes()]);
        t.insert(cat(&[b"l", &pos.to_be_bytes()]), run).unwrap();
        pos += evs.len() as u64;
    }
    db.flush().unwrap();
}

/// The first `limit` entries of the store's log as (position, loan, seq).
pub fn log_entries<B: Backend>(s: &Store<B>, limit: usize) -> Vec<(u64, Uuid, u64)> {
    let log = s.log(1, limit).unwrap();
    log.iter().map(|e| (e.position, e.loan_id, e.seq)).collect()
}
