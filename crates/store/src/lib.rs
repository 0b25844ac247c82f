//! arrears-store: durable, hash-chained loan event streams.
//!
//! Two layers (see `docs/storage.md`):
//!
//! - [`Backend`]: storage-only operations — read a loan's raw stream, scan every stream or head
//!   in loan order, locate an event id, scan the global log, commit one sealed batch atomically
//!   and durably, snapshots. Implemented by [`sled_backend::SledBackend`] (the embedded
//!   default), `postgres::PostgresBackend` (a shared server, many processes; feature
//!   `postgres`) and [`memory::MemoryBackend`]; `tests/conformance.rs` holds every backend to the
//!   same contract.
//! - [`Store`]: everything that does not depend on where bytes live — sealing (seq,
//!   `recorded_at`, UUIDv7 ids, the hash chain), idempotency, optimistic concurrency, the
//!   business [`Gate`], and the audit reads (`verify`, `digest`).
//!
//! No backend type crosses this crate's boundary: raw streams are [`RawChunk`]s, decoded by
//! [`chunk::decode`].

pub mod audit;
pub mod backend;
pub mod chunk;
pub mod memory;
mod pages;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sled_backend;
mod store;
#[doc(hidden)]
pub mod testing;

use arrears_core::event::{Event, Timestamp};
use uuid::Uuid;

pub use arrears_core::gate::{Gate, OpenGate};
pub use audit::Broken;
pub use backend::{Backend, SealedBatch, SealedLoan, StreamingCommit};
pub use memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use postgres::{PgUrl, PostgresBackend};
pub use sled_backend::{Mode, SledBackend};
pub use store::{Store, RECORDED_AT_SKEW_SECONDS};

/// The head of one loan's stream: its last seq, hash and `recorded_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub recorded_at: Timestamp,
}

/// One entry of the global, commit-ordered log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub position: u64,
    pub loan_id: Uuid,
    pub seq: u64,
}

/// One result of an append: the stored event and whether it was already there (an idempotent
/// re-append of the same `event_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event: Event,
    pub existed: bool,
}

/// Stored bytes handed out by a backend without copying (a sled page, an `Arc` in memory).
/// Opaque to callers: decode with [`chunk::decode`].
pub struct RawChunk(Box<dyn AsRef<[u8]> + Send + Sync>);

impl RawChunk {
    pub fn new(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> RawChunk {
        RawChunk(Box::new(bytes))
    }
}

impl std::ops::Deref for RawChunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for RawChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawChunk({} bytes)", self.len())
    }
}

/// A loan's stored stream, undecoded: its chunks in seq order.
pub type RawStream = Vec<RawChunk>;

/// Failures of the storage layer itself (never a business rule).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no arrears store at {path} (append creates one)")]
    NoStore { path: String },
    #[error("no arrears store at {path}: it was left half-made by an interrupted first append and holds no events (`arrears --store {path} append` finishes it)")]
    HalfMade { path: String },
    #[error("the store at {path} is in use by another process{} (sled allows one process at a time; retry, or pass --wait SECONDS)", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        path: String,
        holder: Option<String>,
    },
    #[error("{path} is not an arrears store ({why})")]
    NotAStore { path: String, why: String },
    #[error("the store at {path} has on-disk format {found}; this build reads format {} — upgrade arrears", sled_backend::FORMAT_VERSION)]
    FormatTooNew { path: String, found: u32 },
    #[error("the store at {path} has the older on-disk format {found}; convert it once with `arrears --store {path} upgrade` (the original is kept beside it)")]
    FormatTooOld { path: String, found: u32 },
    #[error("{path}: {why}")]
    Path { path: String, why: String },
    #[error("storage I/O on {store}: {why}")]
    Io { store: String, why: String },
    #[error("the store at {store} is damaged at {at}: {why}. Run `arrears --store {store} verify` to find the first broken event; `arrears --store {store} upgrade` is not a repair — restore from a copy")]
    Corrupt {
        store: String,
        at: String,
        why: String,
    },
    #[error("the database at {store} holds arrears schema version {found}; this build reads and writes schema version {expected} only (use an arrears build of schema version {found}, or `arrears copy` the ledger into a store of this build)")]
    SchemaVersion {
        store: String,
        found: i64,
        expected: i64,
    },
    #[error("loan {loan}: another writer appended to it at the same time (its head moved); retry")]
    Raced { loan: Uuid },
}

/// Why an append was refused. Nothing of the batch was written. `R` is the gate's own typed
/// rejection (the projection's `Rejection` in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum AppendError<R: std::error::Error + 'static> {
    #[error("seq: conflict: expected seq {expected} but loan {loan} is at seq {head} (next is {})", head + 1)]
    Conflict {
        index: usize,
        loan: Uuid,
        expected: u64,
        head: u64,
    },
    #[error("recorded_at: {recorded_at} is earlier than the loan's previous event ({previous})")]
    RecordedAtBeforePrevious {
        index: usize,
        recorded_at: String,
        previous: String,
    },
    #[error("recorded_at: {recorded_at} is in the future (the store's clock is {now}; at most {RECORDED_AT_SKEW_SECONDS} s of clock skew is accepted)")]
    RecordedAtInFuture {
        index: usize,
        recorded_at: String,
        now: String,
    },
    #[error("event_id: {event_id} is already stored with different content ({what})")]
    EventIdReused {
        index: usize,
        event_id: Uuid,
        what: String,
    },
    #[error("{reason}")]
    Rejected { index: usize, reason: R },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<R: std::error::Error + 'static> AppendError<R> {
    /// The position in the batch of the event that was refused (None for storage failures).
    pub fn index(&self) -> Option<usize> {
        match self {
            AppendError::Conflict { index, .. }
            | AppendError::RecordedAtBeforePrevious { index, .. }
            | AppendError::RecordedAtInFuture { index, .. }
            | AppendError::EventIdReused { index, .. }
            | AppendError::Rejected { index, .. } => Some(*index),
            AppendError::Store(_) => None,
        }
    }
}
