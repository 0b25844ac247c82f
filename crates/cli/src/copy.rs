//! `arrears copy --from STORE --to STORE`: move a whole ledger between backends (sled ↔
//! PostgreSQL ↔ a new sled), or off an old on-disk format.
//!
//! The global log is copied window by window in log order: each window of the source's log is
//! one [`SealedBatch`] of the events it lists, committed to the destination through
//! [`Backend::commit`] (or streamed, [`Backend::begin`]) exactly as stored — ids, seqs, `recorded_at`, `prev_hash` and `hash`
//! untouched, no gate, no re-sealing. The destination must be empty, so every event lands at
//! the log position it had: `digest` is equal, and a digest taken of the source at any earlier
//! position still checks (`verify --digest`) on the copy. Each copied event's hash is
//! recomputed on the way (a broken source is refused, not copied), and the two digests are
//! compared at the end. Snapshots (a cache) are copied as they are.

use std::collections::HashMap;

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::Policy;
use arrears_store::{chunk, Backend, Mode, SealedBatch, SealedLoan};
use uuid::Uuid;

use crate::ledger::{Failure, Ledger, Location};

/// Log entries per committed window (bounds memory: the window's loans are decoded whole).
pub const WINDOW: usize = 50_000;

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub loans: u64,
    pub events: u64,
    pub snapshots: u64,
    /// The digest both stores now have.
    pub digest: String,
    pub from: String,
    pub to: String,
}

/// Copy every event (and snapshot) of the store at `from` into the empty (or absent) store at
/// `to`. `progress` is told the number of events copied so far.
pub fn copy(
    from: &Location,
    to: &Location,
    wait: Option<std::time::Duration>,
    progress: &dyn Fn(u64, u64),
) -> Result<Copied, Failure> {
    if from == to {
        return Err(Failure::Input(
            "copy: --from and --to name the same store".into(),
        ));
    }
    // An older on-disk format is read too: copy is the migration path off it.
    let src = Ledger::open(from, Mode::ReadAnyFormat, wait, Policy::default())?;
    let dst = Ledger::open(to, Mode::Create, wait, Policy::default())?;
    let (src, dst) = (src.store(), dst.store());
    let (from_name, to_name) = (src.describe(), dst.describe());
    let already = dst.log_len()?;
    let loans_there = dst.heads()?.len();
    if already != 0 || loans_there != 0 {
        return Err(Failure::Input(format!(
            "copy: --to {to_name} already holds {already} events of {loans_there} loans; copy writes only into an empty store (or a path with no store yet)"
        )));
    }
    let total = src.log_len()?;
    let mut position = 1u64;
    let mut loans_seen: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    while position <= total {
        let entries = src.log(position, WINDOW)?;
        if entries.is_empty() {
            return Err(Failure::Other(format!(
                "copy: the log of {from_name} ends at position {} but says it holds {total} events",
                position - 1
            )));
        }
        // The window's loans, in first-appearance order, and each one's seq range.
        let mut order: Vec<Uuid> = Vec::new();
        let mut range: HashMap<Uuid, (u64, u64)> = HashMap::new();
        let mut runs: Vec<(Uuid, u64, u32)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.position != position + i as u64 {
                return Err(Failure::Other(format!(
                    "copy: the log of {from_name} skips from position {} to {}",
                    position + i as u64 - 1,
                    e.position
                )));
            }
            match range.get_mut(&e.loan_id) {
                Some(r) => {
                    if e.seq != r.1 + 1 {
                        return Err(Failure::Other(format!(
                            "copy: the log of {from_name} lists loan {} seq {} after seq {} (run `arrears verify`)",
                            e.loan_id, e.seq, r.1
                        )));
                    }
                    r.1 = e.seq;
                }
                None => {
                    order.push(e.loan_id);
                    range.insert(e.loan_id, (e.seq, e.seq));
                }
            }
            match runs.last_mut() {
                Some((l, first, n)) if *l == e.loan_id && *first + *n as u64 == e.seq => *n += 1,
                _ => runs.push((e.loan_id, e.seq, 1)),
            }
        }
        let raws = src.raw_streams(&order)?;
        // A server destination stores the window's events while the rest are decoded and checked.
        let mut streaming = dst.backend().begin(entries.len())?;
        let mut batch = SealedBatch {
            loans: Vec::with_capacity(order.len()),
            runs,
            ids: Vec::with_capacity(entries.len()),
        };
        for (loan, raw) in order.iter().zip(raws) {
            let stream = src.decode(loan, &raw)?;
            let (first, last) = range[loan];
            let events = stream
                .get(first as usize - 1..last as usize)
                .ok_or_else(|| {
                    Failure::Other(format!(
                        "copy: the log of {from_name} lists loan {loan} seq {last} but its stream ends at seq {}",
                        stream.len()
                    ))
                })?
                .to_vec();
            let mut prev = match first {
                1 => GENESIS,
                s => stream[s as usize - 2].hash,
            };
            let mut bodies = Vec::with_capacity(events.len() * 200);
            for ev in &events {
                if ev.prev_hash != prev || compute_hash(ev) != ev.hash {
                    return Err(Failure::Other(format!(
                        "copy: loan {loan} seq {} of {from_name} does not verify; nothing after log position {} was copied (run `arrears --store … verify` on the source)",
                        ev.seq,
                        position - 1
                    )));
                }
                prev = ev.hash;
                batch.ids.push((ev.event_id.uuid(), *loan, ev.seq.get()));
                let at = bodies.len();
                chunk::encode_event(ev, &mut bodies);
                if let Some(s) = streaming.as_mut() {
                    s.event(ev, &bodies[at..])?;
                }
            }
            loans_seen.insert(*loan);
            let head = chunk::head_of(events.last().expect("a window lists at least one seq"));
            batch.loans.push(SealedLoan {
                loan: *loan,
                prev_seq: first - 1,
                bodies,
                events,
                head,
            });
        }
        batch.assert_sealed();
        match streaming {
            Some(s) => s.commit(&batch)?,
            None => dst.backend().commit(&batch)?,
        }
        dst.backend().sync()?;
        position += entries.len() as u64;
        progress(position - 1, total);
    }
    let mut snapshots = 0u64;
    let mut pending: Vec<(Uuid, Vec<u8>)> = Vec::new();
    src.for_each_snapshot(&mut |loan, bytes| {
        pending.push((loan, bytes.to_vec()));
        if pending.len() >= 10_000 {
            snapshots += pending.len() as u64;
            dst.put_snapshots(std::mem::take(&mut pending))?;
        }
        Ok(())
    })?;
    snapshots += pending.len() as u64;
    dst.put_snapshots(pending)?;
    let (a, b) = (src.digest()?, dst.digest()?);
    if a != b {
        return Err(Failure::Other(format!(
            "copy: the digest of {to_name} ({b}) differs from {from_name}'s ({a}); do not use the copy"
        )));
    }
    Ok(Copied {
        loans: loans_seen.len() as u64,
        events: total,
        snapshots,
        digest: a,
        from: from_name,
        to: to_name,
    })
}
