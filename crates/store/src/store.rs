//! [`Store`]: the backend-independent half of the event store.

use std::collections::HashMap;
use std::sync::Mutex;

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
    /// The stored stream followed by the events accepted earlier in this batch.
    history: Vec<Event>,
    /// How many of `history` were stored before this batch.
    stored: usize,
    /// The new events' length-prefixed codec bodies, encoded once as they are sealed.
    bodies: Vec<u8>,
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
    /// read and sealed again from the new heads, up to [`RACE_ATTEMPTS`] times. A batch whose
    /// events carry an expected `seq` therefore ends in [`AppendError::Conflict`] (the head moved
    /// past it), exactly as if the other writer had committed before this one started; a batch
    /// without one is simply appended after the other writer's events. The gate sees the batch
    /// again: it must judge each candidate by the history it is given (see [`Gate`]).
    pub fn append<G: Gate>(
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

    fn try_append<G: Gate>(
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
        let mut out: Vec<Appended> = Vec::with_capacity(batch.len());

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
                    bodies: Vec::new(),
                });
            }
        }
        for (loan, raw) in touched.iter().zip(self.backend.read_streams(&touched)?) {
            let history = self.decode(loan, &raw)?;
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

        // A server backend may start storing the new events while the rest are sealed.
        let mut streaming = self.backend.begin(batch.len())?;
        for (index, new) in batch.iter().enumerate() {
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
                let own = &loans[&new.loan_id.uuid()];
                let existing = match batch_ids.get(&id) {
                    Some((loan, i)) => Some(loans[loan].history[*i].clone()),
                    None => match own.history[..own.stored]
                        .iter()
                        .find(|e| e.event_id.uuid() == id)
                    {
                        Some(e) => Some(e.clone()),
                        None => match located.get(&id).copied() {
                            Some((loan, seq)) => {
                                Some(self.event_at(&loan, seq)?.ok_or_else(|| {
                                    self.corrupt(
                                        format!("event {id}"),
                                        format!(
                                            "located at loan {loan} seq {seq}, which is missing"
                                        ),
                                    )
                                })?)
                            }
                            None => None,
                        },
                    },
                };
                if let Some(stored) = existing {
                    same_content(&stored, new).map_err(|what| AppendError::EventIdReused {
                        index,
                        event_id: id,
                        what,
                    })?;
                    out.push(Appended {
                        event: stored,
                        existed: true,
                    });
                    continue;
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
            let mut ev = Event {
                event_id: EventId(event_id),
                loan_id: new.loan_id,
                seq: Seq(seq),
                recorded_at,
                body: new.body.clone(),
                prev_hash: work.head_hash,
                hash: GENESIS,
            };
            ev.hash = compute_hash(&ev);
            gate.check(&work.history, &ev)
                .map_err(|reason| AppendError::Rejected { index, reason })?;
            match runs.last_mut() {
                Some((l, first, n)) if *l == ev.loan_id.uuid() && *first + *n as u64 == seq => {
                    *n += 1
                }
                _ => runs.push((ev.loan_id.uuid(), seq, 1)),
            }
            if work.history.len() == work.stored {
                order.push(ev.loan_id.uuid());
            }
            work.head_seq = seq;
            work.head_hash = ev.hash;
            work.last_recorded_at = Some(recorded_at);
            batch_ids.insert(event_id, (ev.loan_id.uuid(), work.history.len()));
            ids.push((event_id, ev.loan_id.uuid(), seq));
            let at = work.bodies.len();
            chunk::encode_event(&ev, &mut work.bodies);
            if let Some(s) = streaming.as_mut() {
                s.event(&ev, &work.bodies[at..])?;
            }
            work.history.push(ev.clone());
            out.push(Appended {
                event: ev,
                existed: false,
            });
        }
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
            Some(s) => s.commit(&sealed)?,
            None => self.backend.commit(&sealed)?,
        }
        drop(guard);
        // Durability outside the writer lock, so concurrent writers share one fsync.
        self.backend.sync()?;
        Ok(out)
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

    /// Store snapshots for many loans atomically and durably.
    pub fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        self.backend.put_snapshots(snaps)
    }
}
