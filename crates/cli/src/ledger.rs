//! The composing type: a store, a policy, and the projection's `decide` wired in as the store's
//! gate. Everything the CLI does goes through here, so tests and benches drive the same code.

use std::io::BufRead;

use chrono::NaiveDate;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Body, Event, Missed, NewEvent, Timestamp};
use arrears_core::store::{decode_chunk, Appended, EventStore, Head, SledStore};
use arrears_core::validate::validate;
use arrears_core::{parse_event, AppendError, InputError, Policy, StoreError};
use arrears_projection::{replay, DecideGate, Projection, Snapshot};

/// A CLI-level failure with its exit code: 2 for rejected input, 1 for anything else.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Rejected input: the message names the line or field and the reason. Exit 2.
    #[error("{0}")]
    Input(String),
    /// Anything else (storage, I/O). Exit 1.
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Input(_) => 2,
            Failure::Other(_) => 1,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Other(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(format!("I/O: {e}"))
    }
}

/// Parse and validate one input line (1-based `line` for messages).
pub fn parse_line(text: &str, line: usize, policy: &Policy) -> Result<NewEvent, Failure> {
    let wrap = |e: InputError| Failure::Input(format!("line {line}: {e}"));
    let (mut ev, _) = parse_event(text).map_err(wrap)?;
    validate(&mut ev, policy).map_err(wrap)?;
    Ok(ev)
}

/// Map an append error to a CLI failure naming the input line; `lines[i]` is the line number of
/// batch entry i.
pub fn append_failure(e: AppendError, lines: &[usize]) -> Failure {
    match e.index() {
        Some(i) => Failure::Input(format!(
            "line {}: {e}",
            lines.get(i).copied().unwrap_or(i + 1)
        )),
        None => Failure::Other(e.to_string()),
    }
}

/// Totals of a batch replay, for the closing summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub loans: u64,
    pub events: u64,
    pub by_stage: std::collections::BTreeMap<&'static str, u64>,
    pub outstanding: rust_decimal::Decimal,
    pub penalty_accrued: rust_decimal::Decimal,
    pub from_snapshots: u64,
}

impl Summary {
    fn add(&mut self, p: &Projection, events: u64) {
        self.loans += 1;
        self.events += events;
        *self.by_stage.entry(p.stage.as_str()).or_default() += 1;
        self.outstanding += p.outstanding.total;
        self.penalty_accrued += p.penalty_accrued;
    }
}

/// Receives each replayed loan, in `loan_id` order, with its JSON line when one was asked for.
pub type Emit<'a> = &'a mut dyn FnMut(&Projection, Option<&str>) -> Result<(), Failure>;

/// What one unit of replay work yields: the projection, its JSON line, the events read (0 when it
/// came from a snapshot) and a refreshed snapshot to store.
type Replayed = Option<(Projection, Option<String>, u64, Option<Vec<u8>>)>;

/// A projection from events: the projection, the events read, a refreshed snapshot.
type FromEvents = Option<(Projection, u64, Option<Vec<u8>>)>;

/// One unit of replay work: a loan and its raw stored values, or its snapshot.
enum Work {
    Events(Uuid, Vec<sled::IVec>),
    /// A loan, its head seq and its stored snapshot bytes, if any: decoded and checked by the
    /// worker, which falls back to the events when the snapshot does not serve.
    Snap(Uuid, u64, Option<sled::IVec>),
}

/// A first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub at: String,
    pub why: String,
}

pub struct Ledger {
    pub store: SledStore,
    pub policy: Policy,
}

impl Ledger {
    /// Open the store at `dir`, creating it when absent (for commands that write events).
    pub fn open(dir: &std::path::Path, policy: Policy) -> Result<Ledger, Failure> {
        Ok(Ledger {
            store: SledStore::open(dir)?,
            policy,
        })
    }

    /// Open an existing store; a path with no store is an error (read-only commands never
    /// create one).
    pub fn open_existing(dir: &std::path::Path, policy: Policy) -> Result<Ledger, Failure> {
        Ok(Ledger {
            store: SledStore::open_existing(dir)?,
            policy,
        })
    }

    /// Append a batch atomically, with `decide` as the gate.
    pub fn append(
        &self,
        batch: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Appended>, AppendError> {
        let mut gate = DecideGate::new(&self.policy);
        self.store.append(batch, &mut gate, now)
    }

    /// Read JSON lines, validate them all, then append them as one atomic batch (or in atomic
    /// batches of `batch_size` when given). `on_stored` sees each stored event.
    pub fn append_reader(
        &self,
        input: impl BufRead,
        now: Timestamp,
        batch_size: Option<usize>,
        progress: &dyn Fn(u64),
        on_stored: &mut dyn FnMut(&Appended) -> Result<(), Failure>,
    ) -> Result<u64, Failure> {
        let mut batch = Vec::new();
        let mut line_nos = Vec::new();
        let mut stored = 0u64;
        for (i, line) in input.lines().enumerate() {
            let line =
                line.map_err(|e| Failure::Input(format!("line {}: not UTF-8 text ({e})", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            batch.push(parse_line(&line, i + 1, &self.policy)?);
            line_nos.push(i + 1);
            if batch_size.is_some_and(|n| batch.len() >= n) {
                stored += self.flush_batch(&mut batch, &mut line_nos, now, on_stored)?;
                progress(stored);
            }
        }
        stored += self.flush_batch(&mut batch, &mut line_nos, now, on_stored)?;
        progress(stored);
        Ok(stored)
    }

    fn flush_batch(
        &self,
        batch: &mut Vec<NewEvent>,
        line_nos: &mut Vec<usize>,
        now: Timestamp,
        on_stored: &mut dyn FnMut(&Appended) -> Result<(), Failure>,
    ) -> Result<u64, Failure> {
        if batch.is_empty() {
            return Ok(0);
        }
        let out = self
            .append(std::mem::take(batch), now)
            .map_err(|e| append_failure(e, line_nos))?;
        line_nos.clear();
        for a in &out {
            on_stored(a)?;
        }
        Ok(out.len() as u64)
    }

    /// One loan's projection; `Input` error when the loan is unknown at that time.
    pub fn show(
        &self,
        loan: Uuid,
        as_of: NaiveDate,
        known_at: Option<Timestamp>,
    ) -> Result<Projection, Failure> {
        let events = self.store.stream(loan, known_at)?;
        replay(&events, as_of, known_at, &self.policy).ok_or_else(|| unknown(loan, as_of, known_at))
    }

    /// One loan's audit trail.
    pub fn explain(
        &self,
        loan: Uuid,
        as_of: NaiveDate,
        known_at: Option<Timestamp>,
    ) -> Result<arrears_projection::explain::Explain, Failure> {
        let events = self.store.stream(loan, known_at)?;
        let folded = arrears_projection::fold(&events, as_of, known_at, &self.policy)
            .ok_or_else(|| unknown(loan, as_of, known_at))?;
        Ok(arrears_projection::explain::explain(&folded, as_of))
    }

    /// Replay every loan to `as_of`, calling `emit` with each projection (and its JSON line when
    /// `with_json`) in `loan_id` order. A reader thread scans the store while the current rayon
    /// pool folds, projects and serialises loans in chunks; the output order does not depend on
    /// the number of threads. With `incremental`, loans whose stored snapshot is current are
    /// projected from it without reading their events, and stale snapshots are rewritten.
    pub fn replay_all(
        &self,
        as_of: NaiveDate,
        known_at: Option<Timestamp>,
        incremental: bool,
        with_json: bool,
        progress: &dyn Fn(u64),
        emit: Emit<'_>,
    ) -> Result<Summary, Failure> {
        const CHUNK: usize = 2048;
        let policy = &self.policy;
        let use_snapshots = incremental && known_at.is_none();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Work>, StoreError>>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut chunk: Vec<Work> = Vec::with_capacity(CHUNK);
                let push = |w: Work, chunk: &mut Vec<Work>| -> Result<(), StoreError> {
                    chunk.push(w);
                    if chunk.len() >= CHUNK {
                        let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
                        // A closed channel means the consumer stopped on an error: stop too.
                        tx.send(Ok(full)).map_err(|_| StoreError::Corrupt {
                            at: "replay".into(),
                            why: "stopped".into(),
                        })?;
                    }
                    Ok(())
                };
                let scanned = if use_snapshots {
                    (|| {
                        // Heads and snapshots are both in loan_id order: merge them in one pass
                        // each, with no per-loan lookups. Snapshots are decoded by the workers.
                        let heads = self.store.heads()?;
                        let mut snaps = self.store.snapshots().peekable();
                        for (loan, head) in heads {
                            while let Some(Ok((l, _))) = snaps.peek() {
                                if *l >= loan {
                                    break;
                                }
                                snaps.next();
                            }
                            let snap = match snaps.peek() {
                                Some(Ok((l, _))) if *l == loan => {
                                    snaps.next().and_then(|r| r.ok()).map(|(_, v)| v)
                                }
                                Some(Err(_)) => {
                                    return Err(snaps
                                        .next()
                                        .and_then(|r| r.err())
                                        .expect("peeked an error"))
                                }
                                _ => None,
                            };
                            push(Work::Snap(loan, head.seq, snap), &mut chunk)?;
                        }
                        Ok(())
                    })()
                } else {
                    self.store.for_each_stream_raw(&mut |loan, raw| {
                        push(Work::Events(loan, raw), &mut chunk)
                    })
                };
                let _ = match scanned {
                    Ok(()) => tx.send(Ok(chunk)),
                    Err(e) => tx.send(Err(e)),
                };
            });
            let mut summary = Summary::default();
            for chunk in rx {
                let chunk = chunk?;
                let results: Vec<Result<Replayed, StoreError>> = chunk
                    .into_par_iter()
                    .map(|w| {
                        let from_events =
                            |loan: Uuid, raw: &[sled::IVec]| -> Result<FromEvents, StoreError> {
                                let events = decode_all(loan, raw)?;
                                let n = events.len() as u64;
                                let Some(p) = replay(&events, as_of, known_at, policy) else {
                                    return Ok(None);
                                };
                                let snap = incremental
                                    .then(|| Snapshot::build(&events, policy).map(|s| s.encode()))
                                    .flatten();
                                Ok(Some((p, n, snap)))
                            };
                        let done = match w {
                            Work::Snap(loan, seq, bytes) => {
                                let snap = bytes
                                    .and_then(|b| Snapshot::decode(&b))
                                    .filter(|s| s.version() == seq && s.serves(as_of, policy));
                                match snap {
                                    Some(s) => Some((
                                        arrears_projection::project(&s.loan, as_of, None, policy),
                                        0,
                                        None,
                                    )),
                                    None => from_events(loan, &self.store.raw_stream(loan)?)?,
                                }
                            }
                            Work::Events(loan, raw) => from_events(loan, &raw)?,
                        };
                        let Some((p, n, snap)) = done else {
                            return Ok(None);
                        };
                        let json = with_json.then(|| p.to_json());
                        Ok(Some((p, json, n, snap)))
                    })
                    .collect();
                let mut snaps = Vec::new();
                for r in results {
                    if let Some((p, json, n, snap)) = r? {
                        if n == 0 {
                            summary.from_snapshots += 1;
                        }
                        summary.add(&p, n);
                        emit(&p, json.as_deref())?;
                        if let Some(s) = snap {
                            snaps.push((p.loan_id, s));
                        }
                    }
                }
                if !snaps.is_empty() {
                    self.store.put_snapshots(snaps)?;
                }
                progress(summary.loans);
            }
            Ok(summary)
        })
    }

    /// The end-of-day job: a `missed` (observed on `as_of`) for every unrecorded miss, appended
    /// as one atomic batch. Idempotent: a second run finds nothing to record.
    pub fn sweep(&self, as_of: NaiveDate, now: Timestamp) -> Result<Vec<Appended>, Failure> {
        let mut batch = Vec::new();
        self.replay_all(as_of, None, false, false, &|_| {}, &mut |p, _| {
            for a in &p.anomalies {
                if a.kind == arrears_projection::view::AnomalyKind::UnrecordedMiss {
                    batch.push(NewEvent {
                        event_id: None,
                        loan_id: p.loan_id,
                        seq: None,
                        recorded_at: None,
                        body: Body::Missed(Missed {
                            installment: a.installment,
                            observed_on: as_of,
                        }),
                    });
                }
            }
            Ok(())
        })?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.append(batch, now).map_err(|e| match e {
            AppendError::Store(s) => Failure::Other(s.to_string()),
            other => Failure::Other(format!("sweep: {other}")),
        })
    }

    /// Re-check every hash chain, `seq` run and head; the first problem found, if any.
    pub fn verify(&self) -> Result<Option<Broken>, Failure> {
        let heads: std::collections::BTreeMap<Uuid, Head> =
            self.store.heads()?.into_iter().collect();
        let mut seen = 0usize;
        let mut broken: Option<Broken> = None;
        let mut events_total = 0u64;
        self.store.for_each_stream_raw(&mut |loan, raw| {
            if broken.is_some() {
                return Ok(());
            }
            seen += 1;
            let (b, n) = check_chain(loan, &raw, heads.get(&loan));
            events_total += n;
            broken = b;
            Ok(())
        })?;
        if broken.is_none() && seen != heads.len() {
            let missing = heads.keys().find(|l| {
                self.store
                    .raw_stream(**l)
                    .map(|r| r.is_empty())
                    .unwrap_or(true)
            });
            broken = Some(Broken {
                at: missing.map_or_else(|| "heads".to_owned(), |l| format!("loan {l} seq 1")),
                why: "a loan head exists but the loan has no events".into(),
            });
        }
        if broken.is_none() {
            let mut logged = 0u64;
            self.store.visit_log(1, &mut |_| {
                logged += 1;
                true
            })?;
            if logged != events_total {
                broken = Some(Broken {
                    at: "global log".into(),
                    why: format!("{logged} log entries for {events_total} events"),
                });
            }
        }
        Ok(broken)
    }

    /// The root hash over every loan's chain head: `POSITION-HEX`, where POSITION is the last
    /// global log position it covers. An auditor keeps it outside the system.
    pub fn digest(&self) -> Result<String, Failure> {
        let position = self.store.log_len()?;
        let mut h = Sha256::new();
        for (loan, head) in self.store.heads()? {
            h.update(loan.as_bytes());
            h.update(head.seq.to_be_bytes());
            h.update(head.hash);
        }
        Ok(format!("{position}-{}", hex::encode(h.finalize())))
    }

    /// Whether the store still extends the state a digest was taken of: every loan's event at
    /// the seq it had at that log position still carries the hash the digest covered.
    pub fn check_digest(&self, digest: &str) -> Result<Result<(), String>, Failure> {
        let (pos, want) = digest
            .split_once('-')
            .and_then(|(p, h)| Some((p.parse::<u64>().ok()?, h)))
            .ok_or_else(|| Failure::Input(format!("--digest: `{digest}` is not POSITION-HEX")))?;
        let mut seqs: std::collections::BTreeMap<Uuid, u64> = std::collections::BTreeMap::new();
        self.store.visit_log(1, &mut |e| {
            if e.position > pos {
                return false;
            }
            let s = seqs.entry(e.loan_id).or_default();
            *s = (*s).max(e.seq);
            true
        })?;
        let mut h = Sha256::new();
        for (loan, seq) in &seqs {
            let Some(ev) = self.store.event_at(loan, *seq)? else {
                return Ok(Err(format!("loan {loan} seq {seq} is gone")));
            };
            h.update(loan.as_bytes());
            h.update(seq.to_be_bytes());
            h.update(ev.hash.0);
        }
        if hex::encode(h.finalize()) == want {
            Ok(Ok(()))
        } else {
            Ok(Err(format!(
                "the chain heads at log position {pos} do not hash to the digest"
            )))
        }
    }
}

fn unknown(loan: Uuid, as_of: NaiveDate, known_at: Option<Timestamp>) -> Failure {
    let when = match known_at {
        Some(t) => format!(
            "as of {as_of} as known at {}",
            arrears_core::event::fmt_timestamp(&t)
        ),
        None => format!("as of {as_of}"),
    };
    Failure::Input(format!(
        "loan {loan} is unknown {when} (no disbursement counts)"
    ))
}

fn decode_all(loan: Uuid, raw: &[sled::IVec]) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::with_capacity(raw.len() * 4);
    for (i, b) in raw.iter().enumerate() {
        out.extend(decode_chunk(b, &format!("loan {loan} chunk {}", i + 1))?);
    }
    Ok(out)
}

/// Check one loan's raw stream: seq 1.. without gaps, each `prev_hash` the previous `hash`, each
/// `hash` recomputed, the head matching the last event. Also returns the events counted.
fn check_chain(loan: Uuid, raw: &[sled::IVec], head: Option<&Head>) -> (Option<Broken>, u64) {
    let mut seq = 0u64;
    (check_chain_inner(loan, raw, head, &mut seq), seq)
}

fn check_chain_inner(
    loan: Uuid,
    raw: &[sled::IVec],
    head: Option<&Head>,
    seq: &mut u64,
) -> Option<Broken> {
    let mut prev = GENESIS;
    for bytes in raw {
        let events = match decode_chunk(bytes, &format!("loan {loan} seq {}", *seq + 1)) {
            Ok(evs) => evs,
            Err(e) => {
                return Some(Broken {
                    at: format!("loan {loan} seq {}", *seq + 1),
                    why: e.to_string(),
                })
            }
        };
        for ev in events {
            *seq += 1;
            let at = format!("loan {loan} seq {seq}");
            if ev.loan_id != loan || ev.seq != *seq {
                return Some(Broken {
                    at,
                    why: format!("expected loan {loan} seq {seq} but the stored event says loan {} seq {} (an event was removed, inserted or reordered)", ev.loan_id, ev.seq),
                });
            }
            if ev.prev_hash != prev {
                return Some(Broken {
                    at,
                    why: "prev_hash does not match the previous event's hash (an event was removed, inserted or reordered)".into(),
                });
            }
            if compute_hash(&ev) != ev.hash {
                return Some(Broken {
                    at,
                    why: "hash does not match the event's content (the event was edited)".into(),
                });
            }
            prev = ev.hash;
        }
    }
    let last = *seq;
    match head {
        None => Some(Broken {
            at: format!("loan {loan}"),
            why: "events without a head entry".into(),
        }),
        Some(h) if h.seq != last || h.hash != prev.0 => Some(Broken {
            at: format!("loan {loan} seq {}", last.min(h.seq).max(1)),
            why: format!("the loan's head says seq {} but the stream ends at seq {last} (events were removed or added)", h.seq),
        }),
        Some(_) => None,
    }
}
