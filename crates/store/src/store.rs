//! [`Store`]: the backend-independent half of the event store.

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;

use arrears_core::chain::{compute_hash, Digest32, GENESIS};
use arrears_core::event::{fmt_timestamp, Event, NewEvent, Timestamp};
use arrears_core::id::{EventId, Seq};
use uuid::Uuid;

use crate::backend::{Backend, SealedBatch, SealedLoan};
use crate::{chunk, AppendError, Appended, Gate, Head, LogEntry, RawChunk, RawStream, StoreError};

/// How far ahead of the store's clock a caller-supplied `recorded_at` may be (SPEC §10: 5
/// minutes): enough for ordinary clock skew between machines, too little to stamp a loan's
/// future (a `recorded_at` in 2099 would otherwise make every later event of the loan 2099).
pub const RECORDED_AT_SKEW_SECONDS: i64 = 300;

/// How many times [`Store::append`] seals and commits a batch that keeps losing races to other
/// processes before it gives up with [`StoreError::Raced`].
pub const RACE_ATTEMPTS: u32 = 10;

/// The pause before attempt `attempt + 1`: exponential from 1 ms, capped at 256 ms, with jitter
/// so that two writers that raced do not collide again in lockstep.
fn backoff(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 1u64 << attempt.min(8);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % base.max(1);
    std::time::Duration::from_millis(base / 2 + jitter)
}

/// The event store over a backend: seals, checks and commits appends; reads streams.
pub struct Store<B: Backend> {
    backend: B,
    /// Serialises appends within this process (read streams → seal → commit). Backends shared by
    /// several processes also refuse a commit whose heads moved ([`StoreError::Raced`]).
    writer: Mutex<()>,
}

/// Per-loan working state during one append.
struct LoanWork {
    head_seq: u64,
    head_hash: Digest32,
    last_recorded_at: Option<Timestamp>,
    /// The stored stream followed by this batch's new events (their hashes filled in by
    /// [`LoanWork::seal`]).
    history: Vec<Event>,
    /// How many of `history` were stored before this batch.
    stored: usize,
    /// The input index of each new event.
    indices: Vec<usize>,
    /// The new events' length-prefixed codec bodies, encoded once as they are sealed, and where
    /// each starts (one more offset than events: the end).
    bodies: Vec<u8>,
    body_at: Vec<usize>,
}

/// A gate's rejection of the event at an input index.
type Refused<G> = (usize, <G as Gate>::Rejection);

/// What the input event at one index became.
enum Slot {
    /// A new event: the loan and its position in that loan's history.
    New(Uuid, usize),
    /// An `event_id` already given earlier in this batch (loan, position).
    Again(Uuid, usize),
    /// An `event_id` already stored.
    Stored(Box<Event>),
}

impl LoanWork {
    /// Pass 2 of sealing one loan: chain, hash, check and encode its new events in seq order.
    /// The first rejection stops it, with the event's input index.
    fn seal<G: Gate>(&mut self, gate: &mut G) -> Option<(usize, G::Rejection)> {
        let mut prev = self.head_hash;
        self.body_at.clear();
        self.body_at.push(0);
        for (k, &index) in self.indices.iter().enumerate() {
            let at = self.stored + k;
            let ev = &mut self.history[at];
            ev.prev_hash = prev;
            ev.hash = compute_hash(ev);
            prev = ev.hash;
            if let Err(reason) = gate.check(&self.history[..at], &self.history[at]) {
                return Some((index, reason));
            }
            chunk::encode_event(&self.history[at], &mut self.bodies);
            self.body_at.push(self.bodies.len());
        }
        None
    }
}

/// "Identical" for a re-appended `event_id` (SPEC §8): same loan, type and body after defaults;
/// a supplied `seq` or `recorded_at` must equal the stored one.
fn same_content(stored: &Event, new: &NewEvent) -> Result<(), String> {
    if stored.loan_id != new.loan_id {
        return Err(format!("stored for loan {}", stored.loan_id));
    }
    if stored.body != new.body {
        return Err(format!(
            "stored as a different {} event",
            stored.body.kind()
        ));
    }
    if new.seq.is_some_and(|s| s != stored.seq) {
        return Err(format!("stored at seq {}", stored.seq));
    }
    if new.recorded_at.is_some_and(|t| t != stored.recorded_at) {
        return Err(format!(
            "stored with recorded_at {}",
            fmt_timestamp(&stored.recorded_at)
        ));
    }
    Ok(())
}

impl<B: Backend> Store<B> {
    pub fn new(backend: B) -> Store<B> {
        Store {
            backend,
            writer: Mutex::new(()),
        }
    }

    /// The backend (for backend-specific operations such as tests' tampering).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Where the store lives, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    pub(crate) fn corrupt(&self, at: impl Into<String>, why: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            store: self.backend.describe(),
            at: at.into(),
            why: why.into(),
        }
    }

    /// Decode a raw stream (all its chunks, in order).
    pub fn decode(&self, loan: &Uuid, raw: &[RawChunk]) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(raw.len() * 4);
        for c in raw {
            let first = out.len() + 1;
            chunk::decode_into(c, &mut out)
                .map_err(|why| self.corrupt(format!("loan {loan} seq {first}"), why))?;
        }
        for (i, ev) in out.iter().enumerate() {
            if ev.loan_id.uuid() != *loan || ev.seq.get() != i as u64 + 1 {
                return Err(self.corrupt(
                    format!("loan {loan} seq {}", i + 1),
                    format!(
                        "the stored event says loan {} seq {} (an event was removed, inserted or reordered)",
                        ev.loan_id, ev.seq
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Append a batch, all or nothing; returns after the batch is durable. Events without an
    /// `event_id` get a UUIDv7 from their `recorded_at`; without a `recorded_at` they get `now`
    /// (never earlier than the loan's last event).
    ///
    /// When the backend refuses the commit because another process wrote to one of the loans
    /// first ([`StoreError::Raced`], only backends shared by several processes), the batch is
    /// read and sealed again from the new heads, up to `RACE_ATTEMPTS` times. A batch whose
    /// events carry an expected `seq` therefore ends in [`AppendError::Conflict`] (the head moved
    /// past it), exactly as if the other writer had committed before this one started; a batch
    /// without one is simply appended after the other writer's events. The gate sees the batch
    /// again: it must judge each candidate by the history it is given (see [`Gate`]).
    pub fn append<G: Gate + Sync>(
        &self,
        batch: Vec<NewEvent>,
        gate: &mut G,
        now: Timestamp,
    ) -> Result<Vec<Appended>, AppendError<G::Rejection>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A backend whose commit refuses a stored id by itself is not asked about new ids
            // before the first attempt; a retry (which that refusal causes) asks.
            let lookup = attempt > 1 || !self.backend.refuses_stored_ids();
            match self.try_append(&batch, gate, now, lookup) {
                Err(AppendError::Store(StoreError::Raced { .. })) if attempt < RACE_ATTEMPTS => {
                    std::thread::sleep(backoff(attempt));
                }
                done => return done,
            }
        }
    }

    fn try_append<G: Gate + Sync>(
        &self,
        batch: &[NewEvent],
        gate: &mut G,
        now: Timestamp,
        lookup: bool,
    ) -> Result<Vec<Appended>, AppendError<G::Rejection>> {
        let now = arrears_core::parse::truncate_to_micros(now);
        let latest_allowed = now + chrono::Duration::seconds(RECORDED_AT_SKEW_SECONDS);
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut loans: HashMap<Uuid, LoanWork> = HashMap::new();
        let mut order: Vec<Uuid> = Vec::new();
        let mut batch_ids: HashMap<Uuid, (Uuid, usize)> = HashMap::new();
        let mut runs: Vec<(Uuid, u64, u32)> = Vec::new();
        let mut ids: Vec<(Uuid, Uuid, u64)> = Vec::new();
        // Read every touched loan at once (one round trip on a server backend), then look up,
        // also at once, the explicit event ids their own streams do not hold (new ids, or ids
        // reused under another loan).
        let mut touched: Vec<Uuid> = Vec::new();
        for new in batch {
            if let std::collections::hash_map::Entry::Vacant(slot) = loans.entry(new.loan_id.uuid())
            {
                touched.push(new.loan_id.uuid());
                slot.insert(LoanWork {
                    head_seq: 0,
                    head_hash: GENESIS,
                    last_recorded_at: None,
                    stored: 0,
                    history: Vec::new(),
                    indices: Vec::new(),
                    bodies: Vec::new(),
                    body_at: Vec::new(),
                });
            }
        }
        let raws = self.backend.read_streams(&touched)?;
        let histories: Vec<Result<Vec<Event>, StoreError>> = touched
            .par_iter()
            .zip(raws.par_iter())
            .map(|(loan, raw)| self.decode(loan, raw))
            .collect();
        drop(raws);
        for (loan, history) in touched.iter().zip(histories) {
            let history = history?;
            let last = history.last();
            let work = loans.get_mut(loan).expect("inserted above");
            work.head_seq = last.map_or(0, |e| e.seq.get());
            work.head_hash = last.map_or(GENESIS, |e| e.hash);
            work.last_recorded_at = last.map(|e| e.recorded_at);
            work.stored = history.len();
            work.history = history;
        }
        let mut unknown: Vec<Uuid> = Vec::new();
        let mut asked: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        for new in batch.iter().filter(|_| lookup) {
            if let Some(id) = new.event_id.map(EventId::uuid) {
                let own = &loans[&new.loan_id.uuid()];
                if !own.history.iter().any(|e| e.event_id.uuid() == id) && asked.insert(id) {
                    unknown.push(id);
                }
            }
        }
        let located: HashMap<Uuid, (Uuid, u64)> = unknown
            .iter()
            .zip(self.backend.locate_many(&unknown)?)
            .filter_map(|(id, at)| at.map(|at| (*id, at)))
            .collect();

        // Sealing runs in two passes so that loans are hashed and checked on every core, with
        // the outcome of sealing the events one by one in input order:
        // 1. in input order: idempotency, the expected seq, recorded_at, the envelope (seq,
        //    recorded_at, event_id). The first failure stops the pass at its index.
        // 2. per loan, in parallel: prev_hash, hash, the gate, the codec body, each loan's events
        //    in seq order (a loan's events depend only on its own earlier ones).
        // The failure returned is the first by input index: pass 2 only sees events before pass
        // 1's failure, so a rejection there comes first.
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let mut failure: Option<AppendError<G::Rejection>> = None;
        for (index, new) in batch.iter().enumerate() {
            match self.envelope(
                index,
                new,
                &mut loans,
                &batch_ids,
                &located,
                now,
                latest_allowed,
            ) {
                Err(e) => {
                    failure = Some(e);
                    break;
                }
                Ok(Some(slot)) => slots.push(slot),
                Ok(None) => {
                    let loan = new.loan_id.uuid();
                    let work = loans.get_mut(&loan).expect("loaded above");
                    let ev = work.history.last().expect("just sealed");
                    let seq = ev.seq.get();
                    match runs.last_mut() {
                        Some((l, first, n)) if *l == loan && *first + *n as u64 == seq => *n += 1,
                        _ => runs.push((loan, seq, 1)),
                    }
                    if work.history.len() == work.stored + 1 {
                        order.push(loan);
                    }
                    batch_ids.insert(ev.event_id.uuid(), (loan, work.history.len() - 1));
                    ids.push((ev.event_id.uuid(), loan, seq));
                    work.indices.push(index);
                    slots.push(Slot::New(loan, work.history.len() - 1));
                }
            }
        }
        // A server backend may store each loan's new events as soon as that loan is sealed (not
        // when pass 1 failed: the batch fails whatever pass 2 finds).
        let streaming = match failure {
            None => self.backend.begin(batch.len())?.map(Mutex::new),
            Some(_) => None,
        };
        let sealed_loans: Vec<Result<Option<Refused<G>>, StoreError>> = loans
            .par_iter_mut()
            .filter(|(_, w)| w.history.len() > w.stored)
            .map_init(
                || gate.fork(),
                |g, (_, w)| {
                    if let Some(rejected) = w.seal(g) {
                        return Ok(Some(rejected));
                    }
                    if let Some(s) = &streaming {
                        let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
                        for (k, ev) in w.history[w.stored..].iter().enumerate() {
                            s.event(ev, &w.bodies[w.body_at[k]..w.body_at[k + 1]])?;
                        }
                    }
                    Ok(None)
                },
            )
            .collect();
        let mut rejected: Option<Refused<G>> = None;
        for r in sealed_loans {
            if let Some((index, reason)) = r? {
                if rejected.as_ref().is_none_or(|(first, _)| index < *first) {
                    rejected = Some((index, reason));
                }
            }
        }
        if let Some((index, reason)) = rejected {
            return Err(AppendError::Rejected { index, reason });
        }
        if let Some(e) = failure {
            return Err(e);
        }

        let out: Vec<Appended> = slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Stored(event) => Appended {
                    event: *event,
                    existed: true,
                },
                Slot::New(loan, at) => Appended {
                    event: loans[&loan].history[at].clone(),
                    existed: false,
                },
                Slot::Again(loan, at) => Appended {
                    event: loans[&loan].history[at].clone(),
                    existed: true,
                },
            })
            .collect();
        let mut sealed = SealedBatch {
            loans: Vec::with_capacity(order.len()),
            runs,
            ids,
        };
        for loan in order {
            let mut w = loans.remove(&loan).expect("ordered loans have work");
            let events = w.history.split_off(w.stored);
            let head = chunk::head_of(events.last().expect("touched loans have new events"));
            sealed.loans.push(SealedLoan {
                loan,
                prev_seq: w.stored as u64,
                bodies: std::mem::take(&mut w.bodies),
                events,
                head,
            });
        }
        if sealed.is_empty() {
            return Ok(out);
        }
        sealed.assert_sealed();
        match streaming {
            Some(s) => s
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .commit(&sealed)?,
            None => self.backend.commit(&sealed)?,
        }
        drop(guard);
        // Durability outside the writer lock, so concurrent writers share one fsync.
        self.backend.sync()?;
        Ok(out)
    }

    /// Pass 1 of sealing for the event at `index`: None when it is new (its envelope, without
    /// prev_hash and hash, is pushed on its loan's history), or the slot of the stored event
    /// its `event_id` names.
    #[allow(clippy::too_many_arguments)]
    fn envelope<R: std::error::Error + 'static>(
        &self,
        index: usize,
        new: &NewEvent,
        loans: &mut HashMap<Uuid, LoanWork>,
        batch_ids: &HashMap<Uuid, (Uuid, usize)>,
        located: &HashMap<Uuid, (Uuid, u64)>,
        now: Timestamp,
        latest_allowed: Timestamp,
    ) -> Result<Option<Slot>, AppendError<R>> {
        if let Some(t) = new.recorded_at {
            if t > latest_allowed {
                return Err(AppendError::RecordedAtInFuture {
                    index,
                    recorded_at: fmt_timestamp(&t),
                    now: fmt_timestamp(&now),
                });
            }
        }
        if let Some(id) = new.event_id.map(EventId::uuid) {
            // Idempotency: this batch, then the loan's own stream (read anyway), then any
            // other loan (the backend's cross-loan lookup; rare).
            let reused = |stored: &Event| {
                same_content(stored, new).map_err(|what| AppendError::EventIdReused {
                    index,
                    event_id: id,
                    what,
                })
            };
            if let Some(&(loan, at)) = batch_ids.get(&id) {
                reused(&loans[&loan].history[at])?;
                return Ok(Some(Slot::Again(loan, at)));
            }
            let own = &loans[&new.loan_id.uuid()];
            if let Some(e) = own.history[..own.stored]
                .iter()
                .find(|e| e.event_id.uuid() == id)
            {
                reused(e)?;
                return Ok(Some(Slot::Stored(Box::new(e.clone()))));
            }
            if let Some((loan, seq)) = located.get(&id).copied() {
                let stored = self.event_at(&loan, seq)?.ok_or_else(|| {
                    self.corrupt(
                        format!("event {id}"),
                        format!("located at loan {loan} seq {seq}, which is missing"),
                    )
                })?;
                reused(&stored)?;
                return Ok(Some(Slot::Stored(Box::new(stored))));
            }
        }
        let work = loans.get_mut(&new.loan_id.uuid()).expect("loaded above");
        let seq = work.head_seq + 1;
        if let Some(expected) = new.seq.map(Seq::get) {
            if expected != seq {
                return Err(AppendError::Conflict {
                    index,
                    loan: new.loan_id.uuid(),
                    expected,
                    head: work.head_seq,
                });
            }
        }
        let recorded_at = match (new.recorded_at, work.last_recorded_at) {
            (Some(t), Some(prev)) if t < prev => {
                return Err(AppendError::RecordedAtBeforePrevious {
                    index,
                    recorded_at: fmt_timestamp(&t),
                    previous: fmt_timestamp(&prev),
                })
            }
            (Some(t), _) => t,
            // The store's clock, but never behind the loan's last event: a clock step back
            // must not make an append fail or the chain go backwards in time.
            (None, Some(prev)) => now.max(prev),
            (None, None) => now,
        };
        let event_id = new.event_id.map_or_else(
            || {
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    recorded_at.timestamp().max(0) as u64,
                    recorded_at.timestamp_subsec_nanos(),
                );
                Uuid::new_v7(ts)
            },
            EventId::uuid,
        );
        work.head_seq = seq;
        work.last_recorded_at = Some(recorded_at);
        work.history.push(Event {
            event_id: EventId(event_id),
            loan_id: new.loan_id,
            seq: Seq(seq),
            recorded_at,
            body: new.body.clone(),
            // Filled in by pass 2 ([`LoanWork::seal`]).
            prev_hash: GENESIS,
            hash: GENESIS,
        });
        Ok(None)
    }

    /// One loan's stream in `seq` order; with `known_at`, only events recorded at or before it
    /// (`recorded_at` is non-decreasing along a stream, so that is a prefix).
    pub fn stream(
        &self,
        loan: Uuid,
        known_at: Option<Timestamp>,
    ) -> Result<Vec<Event>, StoreError> {
        let raw = self.backend.read_stream(&loan)?;
        let mut events = self.decode(&loan, &raw)?;
        if let Some(t) = known_at {
            let keep = events.partition_point(|e| e.recorded_at <= t);
            events.truncate(keep);
        }
        Ok(events)
    }

    /// One loan's stored chunks, undecoded (batch replay decodes on worker threads).
    pub fn raw_stream(&self, loan: Uuid) -> Result<RawStream, StoreError> {
        self.backend.read_stream(&loan)
    }

    /// Several loans' stored chunks at once, in the order of `loans`, undecoded.
    pub fn raw_streams(&self, loans: &[Uuid]) -> Result<Vec<RawStream>, StoreError> {
        self.backend.read_streams(loans)
    }

    /// Visit every loan's stored chunks in `loan_id` order, undecoded.
    pub fn for_each_stream_raw(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.scan_streams(f)
    }

    /// Visit every loan's stream in `loan_id` order (events in `seq` order).
    pub fn for_each_stream(
        &self,
        f: &mut dyn FnMut(Uuid, Vec<Event>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.scan_streams(&mut |loan, raw| {
            let events = self.decode(&loan, &raw)?;
            f(loan, events)
        })
    }

    /// Every loan's head, in `loan_id` order.
    pub fn heads(&self) -> Result<Vec<(Uuid, Head)>, StoreError> {
        let mut out = Vec::new();
        self.backend.scan_heads(&mut |l, h| {
            out.push((l, h));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every loan's head seq, in `loan_id` order ([`Backend::head_seqs`]: sled answers from the
    /// log without reading a segment).
    pub fn head_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.backend.head_seqs()
    }

    /// The stored event at `seq` of `loan`, if any.
    pub fn event_at(&self, loan: &Uuid, seq: u64) -> Result<Option<Event>, StoreError> {
        let raw = self.backend.read_stream(loan)?;
        let events = self.decode(loan, &raw)?;
        Ok(events.into_iter().find(|e| e.seq.get() == seq))
    }

    /// Visit the global log from `from` in commit order until `f` returns false.
    pub fn visit_log(
        &self,
        from: u64,
        f: &mut dyn FnMut(LogEntry) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan_log(from, f)
    }

    /// The global log from `from` (inclusive), at most `limit` entries.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.backend.scan_log(from, &mut |e| {
                out.push(e);
                out.len() < limit
            })?;
        }
        Ok(out)
    }

    /// The number of events in the global log.
    pub fn log_len(&self) -> Result<u64, StoreError> {
        self.backend.log_len()
    }

    /// A stored snapshot of a loan's folded state (opaque bytes).
    pub fn snapshot(&self, loan: Uuid) -> Result<Option<RawChunk>, StoreError> {
        self.backend.snapshot(&loan)
    }

    /// Every stored snapshot in `loan_id` order.
    pub fn for_each_snapshot(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.scan_snapshots(f)
    }

    /// Store snapshots for many loans atomically and durably; for a loan given more than once,
    /// the last. The backend receives them in strictly increasing loan order.
    pub fn put_snapshots(&self, mut snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        snaps.sort_by_key(|s| s.0); // stable: a loan's entries keep their order
        let mut one_each: Vec<(Uuid, Vec<u8>)> = Vec::with_capacity(snaps.len());
        for snap in snaps {
            match one_each.last_mut() {
                Some(last) if last.0 == snap.0 => *last = snap,
                _ => one_each.push(snap),
            }
        }
        self.backend.put_snapshots(one_each)
    }
}
