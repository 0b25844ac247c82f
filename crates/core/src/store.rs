//! The durable event store: the [`EventStore`] trait and its sled 0.34 implementation.
//!
//! Layout (see `docs/storage.md`): one sled tree, `arrears`, with one-byte key prefixes so that a
//! whole append — events, id index, global log entries and heads of many loans — is a single
//! `apply_batch`, which sled applies atomically, even across a crash.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | `m` + name | store metadata (`format` = u32 BE) |
//! | `e` | `e` + loan (16) + first seq (u64 BE) | a chunk: the loan's events from one append ([`encode_chunk`]) |
//! | `h` | `h` + loan (16) | head: seq (u64 BE) + hash (32) + recorded_at (i64 BE µs) |
//! | `i` | `i` + event_id (16) | loan (16) + seq (u64 BE) |
//! | `l` | `l` + first position of the batch (u64 BE) | runs: loan (16) + first seq (u64 BE) + count (u32 BE) |
//! | `s` | `s` + loan (16) | projection snapshot (opaque to the store) |

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::DateTime;
use uuid::Uuid;

use crate::chain::{compute_hash, GENESIS};
use crate::event::{Event, NewEvent, Timestamp};
use crate::parse::parse_stored;

/// sled's page cache, in MiB, unless `ARREARS_CACHE_MB` says otherwise.
pub const DEFAULT_CACHE_MB: u64 = 256;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const TREE: &str = "arrears";
/// First byte of every stored event value: the encoding. 1 = the JSON line (still read),
/// 2 = the compact binary form of [`crate::codec`] (written).
const EVENT_ENCODING_JSON: u8 = 1;
const EVENT_ENCODING_BINARY: u8 = 2;

/// Failures of the storage layer itself (never a business rule).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no arrears store at {path} (append creates one)")]
    NoStore { path: String },
    #[error("no arrears store at {path}: it was left half-made by an interrupted first append and holds no events (`arrears --store {path} append` finishes it)")]
    HalfMade { path: String },
    #[error("the store at {path} is in use by another process (sled holds an exclusive lock)")]
    Locked { path: String },
    #[error("{path} is not an arrears store ({why})")]
    NotAStore { path: String, why: String },
    #[error("the store at {path} has on-disk format {found}; this build reads format {FORMAT_VERSION} — upgrade arrears")]
    FormatTooNew { path: String, found: u32 },
    #[error("storage I/O: {0}")]
    Io(#[from] sled::Error),
    #[error("{path}: {why}")]
    Path { path: String, why: String },
    #[error("corrupt store at {at}: {why}")]
    Corrupt { at: String, why: String },
}

/// Why an append was refused. Nothing of the batch was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
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
    #[error("event_id: {event_id} is already stored with different content ({what})")]
    EventIdReused {
        index: usize,
        event_id: Uuid,
        what: String,
    },
    #[error("{reason}")]
    Rejected {
        index: usize,
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for AppendError {
    fn from(e: sled::Error) -> Self {
        AppendError::Store(StoreError::Io(e))
    }
}

impl AppendError {
    /// The position in the batch of the event that was refused (None for storage failures).
    pub fn index(&self) -> Option<usize> {
        match self {
            AppendError::Conflict { index, .. }
            | AppendError::RecordedAtBeforePrevious { index, .. }
            | AppendError::EventIdReused { index, .. }
            | AppendError::Rejected { index, .. } => Some(*index),
            AppendError::Store(_) => None,
        }
    }
}

/// The business check run before an event is written: the projection crate's `decide`, wired in
/// by the caller so that this crate does not depend on it.
pub trait Gate {
    /// `history` is the loan's stream so far (stored, plus accepted earlier in this batch) in
    /// `seq` order; `candidate` has its envelope filled in.
    fn check(
        &mut self,
        history: &[Event],
        candidate: &Event,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A gate that accepts everything (for tests of the store itself).
pub struct OpenGate;

impl Gate for OpenGate {
    fn check(
        &mut self,
        _: &[Event],
        _: &Event,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// One result of an append: the stored event and whether it was already there (idempotent
/// re-append of the same `event_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event: Event,
    pub existed: bool,
}

/// The head of one loan's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub recorded_at: Timestamp,
}

/// One entry of the global, recorded-order log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub position: u64,
    pub loan_id: Uuid,
    pub seq: u64,
}

/// The storage interface the domain needs. A PostgreSQL backend implements the same trait.
pub trait EventStore: Send + Sync {
    /// Append a batch, all or nothing; returns after the batch is durable.
    fn append(
        &self,
        batch: Vec<NewEvent>,
        gate: &mut dyn Gate,
        now: Timestamp,
    ) -> Result<Vec<Appended>, AppendError>;
    /// One loan's stream in `seq` order; with `known_at`, only events recorded at or before it.
    fn stream(&self, loan: Uuid, known_at: Option<Timestamp>) -> Result<Vec<Event>, StoreError>;
    /// Every loan's head, in `loan_id` order.
    fn heads(&self) -> Result<Vec<(Uuid, Head)>, StoreError>;
    /// The global log from `from` (inclusive), at most `limit` entries.
    fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError>;
    /// Visit every loan's stream in `loan_id` order (events in `seq` order).
    fn for_each_stream(
        &self,
        f: &mut dyn FnMut(Uuid, Vec<Event>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// A stored snapshot of a loan's folded state (opaque bytes).
    fn snapshot(&self, loan: Uuid) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store snapshots for many loans atomically and durably.
    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError>;
}

/// The embedded store on sled 0.34.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    path: String,
    /// Serialises appends (read head → decide → write). Also holds the next log position.
    writer: Mutex<u64>,
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn event_key(loan: &Uuid, seq: u64) -> Vec<u8> {
    key(b'e', &[loan.as_bytes(), &seq.to_be_bytes()])
}

fn loan_seq(loan: &Uuid, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(loan.as_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn corrupt(at: impl Into<String>, why: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        at: at.into(),
        why: why.into(),
    }
}

fn uuid_at(b: &[u8], at: &str) -> Result<Uuid, StoreError> {
    Uuid::from_slice(b).map_err(|_| corrupt(at, "key is not a UUID"))
}

fn u64_at(b: &[u8], at: &str) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(
        b.try_into().map_err(|_| corrupt(at, "expected 8 bytes"))?,
    ))
}

/// Encode a chunk — one loan's consecutive events from one append — as a stored value:
/// encoding byte 2, then for each event a u32 BE length and its compact binary form
/// ([`crate::codec`]). Packing a loan's events into one value divides the number of sled writes
/// (sled's cost is per value) by the events per loan in a batch.
pub fn encode_chunk(events: &[Event]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + events.len() * 160);
    v.push(EVENT_ENCODING_BINARY);
    for ev in events {
        let body = crate::codec::encode(ev);
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(&body);
    }
    v
}

/// Decode a stored value into its events; `at` names it in errors. Encoding byte 1 (a single
/// event's JSON line) is still read.
pub fn decode_chunk(bytes: &[u8], at: &str) -> Result<Vec<Event>, StoreError> {
    match bytes.split_first() {
        Some((&EVENT_ENCODING_JSON, rest)) => {
            let s = std::str::from_utf8(rest).map_err(|_| corrupt(at, "event is not UTF-8"))?;
            Ok(vec![parse_stored(s).map_err(|e| {
                corrupt(at, format!("event does not decode: {e}"))
            })?])
        }
        Some((&EVENT_ENCODING_BINARY, mut rest)) => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(corrupt(at, "truncated chunk"));
                }
                let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                let body = rest
                    .get(4..4 + n)
                    .ok_or_else(|| corrupt(at, "truncated chunk"))?;
                out.push(
                    crate::codec::decode(body).map_err(|e| corrupt(at, format!("event {e}")))?,
                );
                rest = &rest[4 + n..];
            }
            if out.is_empty() {
                return Err(corrupt(at, "empty chunk"));
            }
            Ok(out)
        }
        Some((v, _)) => Err(corrupt(at, format!("unknown event encoding {v}"))),
        None => Err(corrupt(at, "empty event value")),
    }
}

/// A log entry's value: runs of loan (16) ‖ first seq (u64 BE) ‖ count (u32 BE).
fn encode_runs(runs: &[(Uuid, u64, u32)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(runs.len() * 28);
    for (loan, first, n) in runs {
        v.extend_from_slice(loan.as_bytes());
        v.extend_from_slice(&first.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

fn decode_runs(b: &[u8], position: u64) -> Result<Vec<(Uuid, u64, u32)>, StoreError> {
    let at = format!("log position {position}");
    if b.is_empty() || !b.len().is_multiple_of(28) {
        return Err(corrupt(at, "log entry is not a list of 28-byte runs"));
    }
    b.chunks_exact(28)
        .map(|c| {
            Ok((
                uuid_at(&c[..16], &at)?,
                u64_at(&c[16..24], &at)?,
                u32::from_be_bytes(c[24..28].try_into().expect("4 bytes")),
            ))
        })
        .collect()
}

fn encode_head(h: &Head) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    v.extend_from_slice(&h.seq.to_be_bytes());
    v.extend_from_slice(&h.hash);
    v.extend_from_slice(&h.recorded_at.timestamp_micros().to_be_bytes());
    v
}

fn decode_head(b: &[u8], at: &str) -> Result<Head, StoreError> {
    if b.len() != 48 {
        return Err(corrupt(at, "head is not 48 bytes"));
    }
    let micros = i64::from_be_bytes(b[40..48].try_into().expect("8 bytes"));
    Ok(Head {
        seq: u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
        hash: b[8..40].try_into().expect("32 bytes"),
        recorded_at: DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| corrupt(at, "head timestamp out of range"))?,
    })
}

/// What a store path holds.
enum OnDisk {
    Absent,
    /// sled's files without its `conf` (sled writes `blobs/`, then `conf`, then `db`; arrears
    /// writes nothing before sled's open returns), or an empty directory: no event can be in it.
    HalfMade,
    Store,
}

/// The names sled 0.34 creates in a database directory.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "blobs" | "db" | "conf") || name.starts_with("snap.")
}

fn io_at(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Path {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn inspect(dir: &Path) -> Result<OnDisk, StoreError> {
    let path = dir.display().to_string();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OnDisk::Absent),
        Err(e) => return Err(io_at(dir, e)),
    };
    if !meta.is_dir() {
        return Err(StoreError::NotAStore {
            path,
            why: "it is not a directory".into(),
        });
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let entry = entry.map_err(|e| io_at(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        // An empty directory (made by hand, or by a crash of an older version right after
        // `mkdir`): creating the store replaces it.
        return Ok(OnDisk::Absent);
    }
    if names.iter().any(|n| n == "conf") {
        return Ok(OnDisk::Store);
    }
    if names.iter().all(|n| is_sled_file(n)) {
        return Ok(OnDisk::HalfMade);
    }
    Err(StoreError::NotAStore {
        path,
        why: "the directory has other files and no sled database".into(),
    })
}

/// Remove what an interrupted creation by an older version left: only sled's own files, and
/// only when `conf` is absent (checked again here).
fn remove_half_made(dir: &Path) -> Result<(), StoreError> {
    if dir.join("conf").exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let entry = entry.map_err(|e| io_at(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(is_sled_file(&name), "only sled's files are removed");
        let p = entry.path();
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| io_at(&p, e))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_at(dir, e))
}

/// Build a new, empty store in a temporary sibling of `dir`, make it durable, and rename it into
/// place. The rename is atomic: `dir` is never seen half-made. A leftover sibling of a killed
/// creator is removed by the next creator (its pid is gone).
fn create(dir: &Path) -> Result<(), StoreError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| StoreError::NotAStore {
            path: dir.display().to_string(),
            why: "the path has no final component".into(),
        })?
        .to_string_lossy()
        .into_owned();
    if !parent.is_dir() {
        return Err(StoreError::Path {
            path: dir.display().to_string(),
            why: format!("the parent directory {} does not exist", parent.display()),
        });
    }
    let prefix = format!(".{name}.creating.");
    // Leftovers of creators that were killed (their process is gone).
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix(&prefix) {
                let alive = pid
                    .parse::<u32>()
                    .map(|pid| Path::new(&format!("/proc/{pid}")).exists())
                    .unwrap_or(false);
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let tmp = parent.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    {
        let db = sled::Config::new().path(&tmp).open()?;
        let tree = db.open_tree(TREE)?;
        tree.insert(key(b'm', &[b"format"]), &FORMAT_VERSION.to_be_bytes())?;
        db.flush()?;
    }
    sync_dir(&tmp)?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => {}
        // Another process created the store first (rename onto a non-empty directory fails):
        // use theirs.
        Err(_) if dir.join("conf").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io_at(dir, e));
        }
    }
    sync_dir(&parent)
}

/// Per-loan working state during one append.
struct LoanWork {
    head_seq: u64,
    head_hash: crate::chain::Digest32,
    last_recorded_at: Option<Timestamp>,
    history: Vec<Event>,
    touched: bool,
    /// Events of this batch (the tail of `history`).
    fresh: usize,
}

impl SledStore {
    /// Open the store in `dir`, creating it when absent. Creation is crash-safe: the store is
    /// built in a temporary sibling and renamed into place, so `dir` is either absent or a
    /// complete, openable store whatever moment a crash hits. A directory left half-made by an
    /// older version (sled's files without its `conf`, so no event can be in it) is finished.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        match inspect(dir)? {
            OnDisk::Absent => create(dir)?,
            OnDisk::HalfMade => {
                remove_half_made(dir)?;
                create(dir)?;
            }
            OnDisk::Store => {}
        }
        Self::open_dir(dir)
    }

    /// Open the store in `dir`, which must exist: read-only commands never create a store.
    pub fn open_existing(dir: &Path) -> Result<SledStore, StoreError> {
        let path = dir.display().to_string();
        match inspect(dir)? {
            OnDisk::Absent => Err(StoreError::NoStore { path }),
            OnDisk::HalfMade => Err(StoreError::HalfMade { path }),
            OnDisk::Store => Self::open_dir(dir),
        }
    }

    fn open_dir(dir: &Path) -> Result<SledStore, StoreError> {
        let path = dir.display().to_string();
        // sled's page cache defaults to 1 GiB; a streamed replay gains little from a large
        // cache, so keep the process small. ARREARS_CACHE_MB overrides it.
        let cache_mb: u64 = std::env::var("ARREARS_CACHE_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CACHE_MB);
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb * 1024 * 1024)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked { path: path.clone() }
                }
                _ => StoreError::Io(e),
            })?;
        let tree = db.open_tree(TREE)?;
        let fmt_key = key(b'm', &[b"format"]);
        match tree.get(&fmt_key)? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| corrupt("metadata", "format version is not 4 bytes"))?,
                );
                if found > FORMAT_VERSION {
                    return Err(StoreError::FormatTooNew { path, found });
                }
            }
            None => {
                let others = db
                    .tree_names()
                    .into_iter()
                    .any(|n| n.as_ref() != TREE.as_bytes() && n.as_ref() != b"__sled__default");
                if !tree.is_empty() || others || !db.is_empty() {
                    return Err(StoreError::NotAStore {
                        path,
                        why: "a sled database without arrears metadata".into(),
                    });
                }
                tree.insert(fmt_key, &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let next_pos = match tree.scan_prefix([b'l']).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = u64_at(&k[1..], "log key")?;
                first
                    + decode_runs(&v, first)?
                        .iter()
                        .map(|r| r.2 as u64)
                        .sum::<u64>()
            }
            None => 1,
        };
        Ok(SledStore {
            db,
            tree,
            path,
            writer: Mutex::new(next_pos),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw sled tree (for verification and for tamper tests).
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn head(&self, loan: &Uuid) -> Result<Option<Head>, StoreError> {
        match self.tree.get(key(b'h', &[loan.as_bytes()]))? {
            Some(v) => Ok(Some(decode_head(&v, &format!("head of loan {loan}"))?)),
            None => Ok(None),
        }
    }

    /// The stored event at `seq` of `loan`, if any.
    pub fn event_at(&self, loan: &Uuid, seq: u64) -> Result<Option<Event>, StoreError> {
        // The chunk holding `seq` is the last one whose first seq is ≤ seq.
        let lo = event_key(loan, 0);
        match self.tree.range(lo..=event_key(loan, seq)).next_back() {
            Some(kv) => {
                let (_, v) = kv?;
                let events = decode_chunk(&v, &format!("loan {loan} seq {seq}"))?;
                Ok(events.into_iter().find(|e| e.seq == seq))
            }
            None => Ok(None),
        }
    }

    fn load_work(&self, loan: &Uuid) -> Result<LoanWork, StoreError> {
        let head = self.head(loan)?;
        let history = if head.is_some() {
            self.stream(*loan, None)?
        } else {
            Vec::new()
        };
        Ok(LoanWork {
            head_seq: head.map_or(0, |h| h.seq),
            head_hash: head.map_or(GENESIS, |h| crate::chain::Digest32(h.hash)),
            last_recorded_at: head.map(|h| h.recorded_at),
            history,
            touched: false,
            fresh: 0,
        })
    }

    /// One loan's stored chunks in `seq` order, undecoded (decoding is left to the caller, so
    /// batch replay can decode on worker threads; see [`decode_chunk`]).
    pub fn raw_stream(&self, loan: Uuid) -> Result<Vec<sled::IVec>, StoreError> {
        self.tree
            .scan_prefix(key(b'e', &[loan.as_bytes()]))
            .values()
            .map(|v| v.map_err(StoreError::from))
            .collect()
    }

    /// Visit every loan's stored chunks in `loan_id` order, undecoded.
    pub fn for_each_stream_raw(
        &self,
        f: &mut dyn FnMut(Uuid, Vec<sled::IVec>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut current: Option<Uuid> = None;
        let mut values = Vec::new();
        for kv in self.tree.scan_prefix([b'e']) {
            let (k, v) = kv?;
            if k.len() != 25 {
                return Err(corrupt("event key", "is not 25 bytes"));
            }
            let loan = uuid_at(&k[1..17], "event key")?;
            if current != Some(loan) {
                if let Some(prev) = current.take() {
                    f(prev, std::mem::take(&mut values))?;
                }
                current = Some(loan);
            }
            values.push(v);
        }
        if let Some(prev) = current {
            f(prev, values)?;
        }
        Ok(())
    }

    /// Visit the global log from position `from` in order until `f` returns false, without
    /// holding it in memory.
    pub fn visit_log(
        &self,
        from: u64,
        f: &mut dyn FnMut(LogEntry) -> bool,
    ) -> Result<(), StoreError> {
        let start = match self
            .tree
            .range(key(b'l', &[&0u64.to_be_bytes()])..=key(b'l', &[&from.to_be_bytes()]))
            .next_back()
        {
            Some(kv) => kv?.0.to_vec(),
            None => key(b'l', &[&from.to_be_bytes()]),
        };
        for kv in self.tree.range(start..[b'm'].to_vec()) {
            let (k, v) = kv?;
            let mut position = u64_at(&k[1..], "log key")?;
            for (loan_id, first, n) in decode_runs(&v, position)? {
                for seq in first..first + n as u64 {
                    if position >= from
                        && !f(LogEntry {
                            position,
                            loan_id,
                            seq,
                        })
                    {
                        return Ok(());
                    }
                    position += 1;
                }
            }
        }
        Ok(())
    }

    /// The number of events in the global log (= the last position).
    pub fn log_len(&self) -> Result<u64, StoreError> {
        Ok(*self.writer.lock().unwrap_or_else(|p| p.into_inner()) - 1)
    }

    /// Every stored snapshot in `loan_id` order (one sequential scan).
    pub fn snapshots(&self) -> impl Iterator<Item = Result<(Uuid, sled::IVec), StoreError>> + '_ {
        self.tree.scan_prefix([b's']).map(|kv| {
            let (k, v) = kv?;
            Ok((uuid_at(&k[1..], "snapshot key")?, v))
        })
    }

    /// Flush everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
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
            crate::event::fmt_timestamp(&stored.recorded_at)
        ));
    }
    Ok(())
}

impl EventStore for SledStore {
    fn append(
        &self,
        batch: Vec<NewEvent>,
        gate: &mut dyn Gate,
        now: Timestamp,
    ) -> Result<Vec<Appended>, AppendError> {
        let now = crate::parse::truncate_to_micros(now);
        let mut next_pos = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // The global log gets one entry per batch: runs of (loan, first seq, count) in append
        // order, at the batch's first position. Positions stay per event.
        let mut runs: Vec<(Uuid, u64, u32)> = Vec::new();
        let mut loans: HashMap<Uuid, LoanWork> = HashMap::new();
        let mut order: Vec<Uuid> = Vec::new();
        let mut batch_ids: HashMap<Uuid, (Uuid, usize)> = HashMap::new();
        let mut out: Vec<Appended> = Vec::with_capacity(batch.len());
        let mut sled_batch = sled::Batch::default();
        let mut pos = *next_pos;

        for (index, new) in batch.into_iter().enumerate() {
            if let Some(id) = new.event_id {
                // Idempotency: in this batch first, then in the store.
                let existing = match batch_ids.get(&id) {
                    Some((loan, i)) => Some(loans[loan].history[*i].clone()),
                    None => match self.tree.get(key(b'i', &[id.as_bytes()]))? {
                        Some(v) => {
                            let at = format!("index of event {id}");
                            if v.len() != 24 {
                                return Err(corrupt(at, "index entry is not 24 bytes").into());
                            }
                            let loan = uuid_at(&v[..16], &at)?;
                            let seq = u64_at(&v[16..], &at)?;
                            Some(self.event_at(&loan, seq)?.ok_or_else(|| {
                                corrupt(at, format!("points at missing loan {loan} seq {seq}"))
                            })?)
                        }
                        None => None,
                    },
                };
                if let Some(stored) = existing {
                    same_content(&stored, &new).map_err(|what| AppendError::EventIdReused {
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
            let work = match loans.entry(new.loan_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.load_work(&new.loan_id)?)
                }
            };
            let seq = work.head_seq + 1;
            if let Some(expected) = new.seq {
                if expected != seq {
                    return Err(AppendError::Conflict {
                        index,
                        loan: new.loan_id,
                        expected,
                        head: work.head_seq,
                    });
                }
            }
            let recorded_at = match (new.recorded_at, work.last_recorded_at) {
                (Some(t), Some(prev)) if t < prev => {
                    return Err(AppendError::RecordedAtBeforePrevious {
                        index,
                        recorded_at: crate::event::fmt_timestamp(&t),
                        previous: crate::event::fmt_timestamp(&prev),
                    })
                }
                (Some(t), _) => t,
                // The store's clock, but never behind the loan's last event: a clock step back
                // must not make an append fail or the chain go backwards in time.
                (None, Some(prev)) => now.max(prev),
                (None, None) => now,
            };
            let event_id = new.event_id.unwrap_or_else(|| {
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    recorded_at.timestamp().max(0) as u64,
                    recorded_at.timestamp_subsec_nanos(),
                );
                Uuid::new_v7(ts)
            });
            let mut ev = Event {
                event_id,
                loan_id: new.loan_id,
                seq,
                recorded_at,
                body: new.body,
                prev_hash: work.head_hash,
                hash: GENESIS,
            };
            ev.hash = compute_hash(&ev);
            gate.check(&work.history, &ev)
                .map_err(|reason| AppendError::Rejected { index, reason })?;

            work.fresh += 1;
            sled_batch.insert(
                key(b'i', &[event_id.as_bytes()]),
                loan_seq(&ev.loan_id, seq),
            );
            match runs.last_mut() {
                Some((l, first, n)) if *l == ev.loan_id && *first + *n as u64 == seq => *n += 1,
                _ => runs.push((ev.loan_id, seq, 1)),
            }
            pos += 1;
            work.head_seq = seq;
            work.head_hash = ev.hash;
            work.last_recorded_at = Some(recorded_at);
            if !work.touched {
                work.touched = true;
                order.push(ev.loan_id);
            }
            batch_ids.insert(event_id, (ev.loan_id, work.history.len()));
            work.history.push(ev.clone());
            out.push(Appended {
                event: ev,
                existed: false,
            });
        }
        for loan in &order {
            let w = &loans[loan];
            let head = Head {
                seq: w.head_seq,
                hash: w.head_hash.0,
                recorded_at: w.last_recorded_at.expect("touched loans have events"),
            };
            sled_batch.insert(key(b'h', &[loan.as_bytes()]), encode_head(&head));
            let new = &w.history[w.history.len() - w.fresh..];
            sled_batch.insert(event_key(loan, new[0].seq), encode_chunk(new));
        }
        if pos != *next_pos {
            sled_batch.insert(key(b'l', &[&next_pos.to_be_bytes()]), encode_runs(&runs));
            self.tree.apply_batch(sled_batch)?;
            *next_pos = pos;
        }
        drop(next_pos);
        // Durability: flush outside the writer lock so concurrent writers share one fsync
        // (sled's flush returns at once when a concurrent flush already covered our writes).
        self.db.flush().map_err(StoreError::from)?;
        Ok(out)
    }

    fn stream(&self, loan: Uuid, known_at: Option<Timestamp>) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(key(b'e', &[loan.as_bytes()])) {
            let (k, v) = kv?;
            let first = u64_at(&k[17..], "event key")?;
            for ev in decode_chunk(&v, &format!("loan {loan} seq {first}"))? {
                // recorded_at is non-decreasing along the stream: known_at selects a prefix.
                if known_at.is_some_and(|t| ev.recorded_at > t) {
                    return Ok(out);
                }
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn heads(&self) -> Result<Vec<(Uuid, Head)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([b'h']) {
            let (k, v) = kv?;
            let loan = uuid_at(&k[1..], "head key")?;
            out.push((loan, decode_head(&v, &format!("head of loan {loan}"))?));
        }
        Ok(out)
    }

    fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.visit_log(from, &mut |e| {
                out.push(e);
                out.len() < limit
            })?;
        }
        Ok(out)
    }

    fn for_each_stream(
        &self,
        f: &mut dyn FnMut(Uuid, Vec<Event>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_stream_raw(&mut |loan, chunks| {
            let mut events = Vec::with_capacity(chunks.len() * 4);
            for c in &chunks {
                events.extend(decode_chunk(
                    c,
                    &format!("loan {loan} seq {}", events.len() + 1),
                )?);
            }
            f(loan, events)
        })
    }

    fn snapshot(&self, loan: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(key(b's', &[loan.as_bytes()]))?
            .map(|v| v.to_vec()))
    }

    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (loan, bytes) in snaps {
            b.insert(key(b's', &[loan.as_bytes()]), bytes);
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }
}
