//! The storage seam: what a backend must do, and nothing of what the ledger means.

use arrears_core::event::Event;
use uuid::Uuid;

use crate::{Head, LogEntry, RawChunk, RawStream, StoreError};

/// One loan's part of a sealed batch.
#[derive(Debug)]
pub struct SealedLoan {
    pub loan: Uuid,
    /// The loan's head seq before this batch (0 for a new loan). A backend shared by several
    /// processes must refuse the commit ([`StoreError::Raced`]) when the stored head differs.
    pub prev_seq: u64,
    /// The new events, seqs `prev_seq + 1 ..`, chained.
    pub events: Vec<Event>,
    /// The same events as length-prefixed codec bodies ([`crate::chunk::encode_events`]).
    pub bodies: Vec<u8>,
    /// The head after this batch (the last new event's).
    pub head: Head,
}

/// A batch ready to store: every envelope filled in, every rule checked. Committing it is
/// all or nothing.
#[derive(Debug, Default)]
pub struct SealedBatch {
    /// Loans in the order their first new event appeared in the batch.
    pub loans: Vec<SealedLoan>,
    /// The global log entries of this batch, in append order: runs of (loan, first seq, count).
    pub runs: Vec<(Uuid, u64, u32)>,
    /// Every new event id (for the backend's cross-loan id lookup).
    pub ids: Vec<(Uuid, Uuid, u64)>,
}

impl SealedBatch {
    /// The number of new events.
    pub fn len(&self) -> usize {
        self.loans.iter().map(|l| l.events.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.loans.is_empty()
    }

    /// The invariants a backend relies on, checked before anything is written (the writer's
    /// half of the paired assertions; readers check chunks in [`crate::chunk::decode_into`]).
    pub fn assert_sealed(&self) {
        let mut logged = 0u64;
        for l in &self.loans {
            assert!(
                !l.events.is_empty(),
                "loan {} sealed without events",
                l.loan
            );
            let mut prev: Option<&Event> = None;
            for (i, ev) in l.events.iter().enumerate() {
                assert_eq!(
                    ev.loan_id.uuid(),
                    l.loan,
                    "event of another loan in a sealed loan"
                );
                assert_eq!(
                    ev.seq.get(),
                    l.prev_seq + 1 + i as u64,
                    "seqs are contiguous"
                );
                if let Some(p) = prev {
                    assert_eq!(ev.prev_hash, p.hash, "each prev_hash is the previous hash");
                }
                prev = Some(ev);
            }
            let last = prev.expect("non-empty");
            assert_eq!(
                l.head,
                crate::chunk::head_of(last),
                "the head is the last event"
            );
            logged += l.events.len() as u64;
        }
        let in_runs: u64 = self.runs.iter().map(|r| r.2 as u64).sum();
        assert_eq!(in_runs, logged, "the log covers every new event once");
        assert_eq!(
            self.ids.len() as u64,
            logged,
            "every new event id is listed"
        );
    }
}

/// A commit that is written while its batch is still being sealed ([`Backend::begin`]): a
/// server can store the first events while the client seals the rest. Nothing is visible until
/// [`StreamingCommit::commit`]; dropping it instead rolls everything back.
pub trait StreamingCommit {
    /// A new event of the batch, as soon as it is sealed and accepted by the gate, and its
    /// length-prefixed codec body ([`crate::chunk::encode_event`]). Loans are sealed in
    /// parallel: each loan's events come in seq order, but loans interleave in any order.
    fn event(&mut self, ev: &Event, body: &[u8]) -> Result<(), StoreError>;
    /// Every new event was given, in order: write the rest of `batch` (the log) and commit it
    /// atomically, as [`Backend::commit`] would have. `batch` is the same events, sealed.
    fn commit(self: Box<Self>, batch: &SealedBatch) -> Result<(), StoreError>;
}

/// Every loan's head seq from [`Backend::scan_heads`] (the default [`Backend::head_seqs`]).
pub(crate) fn seqs_of_heads<B: Backend + ?Sized>(b: &B) -> Result<Vec<(Uuid, u64)>, StoreError> {
    let mut out = Vec::new();
    b.scan_heads(&mut |l, h| {
        out.push((l, h.seq));
        Ok(())
    })?;
    Ok(out)
}

/// Storage-only operations. Everything else (sealing, idempotency, concurrency, business rules)
/// is [`crate::Store`]'s, so a new backend only has to pass `tests/conformance.rs`.
pub trait Backend: Send + Sync {
    /// Where the store lives, for messages (a path; a URL without its password).
    fn describe(&self) -> String;
    /// One loan's chunks in seq order (empty for an unknown loan).
    fn read_stream(&self, loan: &Uuid) -> Result<RawStream, StoreError>;
    /// Several loans' chunks at once, in the order of `loans` (an append reads every loan it
    /// touches before sealing; a server backend answers in one round trip).
    fn read_streams(&self, loans: &[Uuid]) -> Result<Vec<RawStream>, StoreError> {
        loans.iter().map(|l| self.read_stream(l)).collect()
    }
    /// Every loan's chunks, in `loan_id` order.
    fn scan_streams(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Every loan's head, in `loan_id` order.
    fn scan_heads(
        &self,
        f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Every loan's head seq, in `loan_id` order: what reprojection needs to tell a current
    /// snapshot from a stale one. The default reads [`Backend::scan_heads`]; a backend that can
    /// answer without reading the streams (sled: from the log) should.
    fn head_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        seqs_of_heads(self)
    }
    /// Which loan and seq hold `event_id`, if any store does.
    fn locate(&self, event_id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError>;
    /// [`Backend::locate`] for many ids, answers in the order of `ids`.
    fn locate_many(&self, ids: &[Uuid]) -> Result<Vec<Option<(Uuid, u64)>>, StoreError> {
        ids.iter().map(|id| self.locate(id)).collect()
    }
    /// Whether [`Backend::commit`] itself refuses a batch holding an event id that is already
    /// stored (a unique index), with [`StoreError::Raced`]. Then [`crate::Store::append`] skips
    /// looking up new ids before its first attempt (the commit's index probe does it anyway) and
    /// looks them up only when it retries.
    fn refuses_stored_ids(&self) -> bool {
        false
    }
    /// Visit the global log from `from` (inclusive) in commit order until `f` returns false.
    fn scan_log(&self, from: u64, f: &mut dyn FnMut(LogEntry) -> bool) -> Result<(), StoreError>;
    /// The number of events in the global log (= its last position).
    fn log_len(&self) -> Result<u64, StoreError>;
    /// Write a sealed batch atomically: afterwards all of it is visible, or (on error or crash)
    /// none of it. Not necessarily durable until [`Backend::sync`] returns.
    fn commit(&self, batch: &SealedBatch) -> Result<(), StoreError>;
    /// Start a commit of a batch of about `events` new events that receives them while they
    /// are sealed ([`StreamingCommit`]), or None (the default) to be given the whole batch by
    /// [`Backend::commit`].
    fn begin(
        &self,
        events: usize,
    ) -> Result<Option<Box<dyn StreamingCommit + Send + '_>>, StoreError> {
        let _ = events;
        Ok(None)
    }
    /// Make every committed batch durable. Called outside the store's writer lock, so concurrent
    /// writers can share one fsync.
    fn sync(&self) -> Result<(), StoreError>;
    /// A loan's stored snapshot (opaque bytes).
    fn snapshot(&self, loan: &Uuid) -> Result<Option<RawChunk>, StoreError>;
    /// Every stored snapshot, in `loan_id` order.
    fn scan_snapshots(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Store snapshots for many loans atomically and durably. `snaps` is in strictly increasing
    /// loan order, one per loan ([`crate::Store::put_snapshots`] sees to it).
    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError>;
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn read_stream(&self, loan: &Uuid) -> Result<RawStream, StoreError> {
        (**self).read_stream(loan)
    }
    fn read_streams(&self, loans: &[Uuid]) -> Result<Vec<RawStream>, StoreError> {
        (**self).read_streams(loans)
    }
    fn scan_streams(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        (**self).scan_streams(f)
    }
    fn scan_heads(
        &self,
        f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        (**self).scan_heads(f)
    }
    fn head_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        (**self).head_seqs()
    }
    fn locate(&self, event_id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError> {
        (**self).locate(event_id)
    }
    fn locate_many(&self, ids: &[Uuid]) -> Result<Vec<Option<(Uuid, u64)>>, StoreError> {
        (**self).locate_many(ids)
    }
    fn refuses_stored_ids(&self) -> bool {
        (**self).refuses_stored_ids()
    }
    fn scan_log(&self, from: u64, f: &mut dyn FnMut(LogEntry) -> bool) -> Result<(), StoreError> {
        (**self).scan_log(from, f)
    }
    fn log_len(&self) -> Result<u64, StoreError> {
        (**self).log_len()
    }
    fn commit(&self, batch: &SealedBatch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
    fn begin(
        &self,
        events: usize,
    ) -> Result<Option<Box<dyn StreamingCommit + Send + '_>>, StoreError> {
        (**self).begin(events)
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn snapshot(&self, loan: &Uuid) -> Result<Option<RawChunk>, StoreError> {
        (**self).snapshot(loan)
    }
    fn scan_snapshots(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        (**self).scan_snapshots(f)
    }
    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        (**self).put_snapshots(snaps)
    }
}
