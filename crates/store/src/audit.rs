//! Audit reads over any backend: re-check every chain (`verify`), and the root digest an auditor
//! keeps outside the system.

use std::collections::BTreeMap;

use arrears_core::chain::{compute_hash, GENESIS};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{chunk, Backend, Head, RawChunk, Store, StoreError};

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub at: String,
    pub why: String,
}

fn broken(at: String, why: impl Into<String>) -> Option<Broken> {
    Some(Broken {
        at,
        why: why.into(),
    })
}

/// Check one loan's raw stream: seq 1.. without gaps, each `prev_hash` the previous `hash`, each
/// `hash` recomputed, the head matching the last event. Also counts the events.
fn check_chain(loan: Uuid, raw: &[RawChunk], head: Option<&Head>, seq: &mut u64) -> Option<Broken> {
    let mut prev = GENESIS;
    for bytes in raw {
        let mut events = Vec::new();
        if let Err(why) = chunk::decode_into(bytes, &mut events) {
            return broken(
                format!("loan {loan} seq {}", *seq + 1),
                format!("the stored chunk is corrupt: {why}"),
            );
        }
        for ev in events {
            *seq += 1;
            let at = format!("loan {loan} seq {seq}");
            if ev.loan_id.uuid() != loan || ev.seq.get() != *seq {
                return broken(at, format!("expected loan {loan} seq {seq} but the stored event says loan {} seq {} (an event was removed, inserted or reordered)", ev.loan_id, ev.seq));
            }
            if ev.prev_hash != prev {
                return broken(at, "prev_hash does not match the previous event's hash (an event was removed, inserted or reordered)");
            }
            if compute_hash(&ev) != ev.hash {
                return broken(
                    at,
                    "hash does not match the event's content (the event was edited)",
                );
            }
            prev = ev.hash;
        }
    }
    let last = *seq;
    match head {
        None => broken(format!("loan {loan}"), "events without a head entry"),
        Some(h) if h.seq != last || h.hash != prev.0 => broken(
            format!("loan {loan} seq {}", last.min(h.seq).max(1)),
            format!("the loan's head says seq {} but the stream ends at seq {last} (events were removed or added)", h.seq),
        ),
        Some(_) => None,
    }
}

impl<B: Backend> Store<B> {
    /// Re-check every hash chain, `seq` run and head, and that the global log covers every
    /// event once; the first problem found, if any.
    pub fn verify(&self) -> Result<Option<Broken>, StoreError> {
        // One sorted Vec (backends scan in loan order), searched by loan: a million loans' heads
        // take ~72 MB here, not a BTreeMap's copy beside the scan's Vec (issue 10's memory).
        let mut heads = self.heads()?;
        if !heads.is_sorted_by_key(|(l, _)| *l) {
            heads.sort_unstable_by_key(|(l, _)| *l);
        }
        let index = |loan: &Uuid| heads.binary_search_by(|(l, _)| l.cmp(loan)).ok();
        let mut seen = 0usize;
        let mut found: Option<Broken> = None;
        let mut events_total = 0u64;
        self.for_each_stream_raw(&mut |loan, raw| {
            if found.is_some() {
                return Ok(());
            }
            seen += 1;
            let mut n = 0;
            found = check_chain(loan, &raw, index(&loan).map(|i| &heads[i].1), &mut n);
            events_total += n;
            Ok(())
        })?;
        if found.is_none() && seen != heads.len() {
            found = broken(
                "heads".to_owned(),
                format!("{} loan heads but {seen} loan streams", heads.len()),
            );
        }
        if found.is_none() {
            // The last seq logged per loan: by the heads' index (every stream has a head, checked
            // above); a logged loan without a stream apart, so the count names it below.
            let mut per_loan = vec![0u64; heads.len()];
            let mut strays: BTreeMap<Uuid, u64> = BTreeMap::new();
            let mut logged = 0u64;
            let mut out_of_order = None;
            self.visit_log(1, &mut |e| {
                logged += 1;
                let s = match index(&e.loan_id) {
                    Some(i) => &mut per_loan[i],
                    None => strays.entry(e.loan_id).or_default(),
                };
                if e.seq != *s + 1 && out_of_order.is_none() {
                    out_of_order = Some(e);
                }
                *s = e.seq;
                true
            })?;
            if let Some(e) = out_of_order {
                found = broken(
                    format!("global log position {}", e.position),
                    format!("loan {} seq {} is logged out of order", e.loan_id, e.seq),
                );
            } else if logged != events_total {
                found = broken(
                    "global log".into(),
                    format!("{logged} log entries for {events_total} events"),
                );
            }
        }
        Ok(found)
    }

    /// The root hash over every loan's chain head: `POSITION-HEX`, where POSITION is the last
    /// global log position it covers. An auditor keeps it outside the system.
    pub fn digest(&self) -> Result<String, StoreError> {
        let position = self.log_len()?;
        let mut h = Sha256::new();
        for (loan, head) in self.heads()? {
            h.update(loan.as_bytes());
            h.update(head.seq.to_be_bytes());
            h.update(head.hash);
        }
        Ok(format!("{position}-{}", hex::encode(h.finalize())))
    }

    /// Whether the store still extends the state a digest was taken of: every loan's event at the
    /// seq it had at that log position still carries the hash the digest covered. `Err(why)`
    /// when it does not (including a digest from beyond this store's log).
    pub fn check_digest(
        &self,
        position: u64,
        hex_hash: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let len = self.log_len()?;
        if position > len {
            return Ok(Err(format!(
                "the digest covers log position {position} but this store's log ends at {len}"
            )));
        }
        let mut seqs: BTreeMap<Uuid, u64> = BTreeMap::new();
        self.visit_log(1, &mut |e| {
            if e.position > position {
                return false;
            }
            let s = seqs.entry(e.loan_id).or_default();
            *s = (*s).max(e.seq);
            true
        })?;
        let mut h = Sha256::new();
        for (loan, seq) in &seqs {
            let Some(ev) = self.event_at(loan, *seq)? else {
                return Ok(Err(format!("loan {loan} seq {seq} is gone")));
            };
            h.update(loan.as_bytes());
            h.update(seq.to_be_bytes());
            h.update(ev.hash.0);
        }
        if hex::encode(h.finalize()) == hex_hash {
            Ok(Ok(()))
        } else {
            Ok(Err(format!(
                "the chain heads at log position {position} do not hash to the digest"
            )))
        }
    }
}
