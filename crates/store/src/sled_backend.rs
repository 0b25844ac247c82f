//! The embedded default backend, on sled 0.34. One process at a time (a lock file, then sled's
//! own lock); every commit is one `apply_batch`, which sled applies atomically across a crash,
//! then a `flush`.
//!
//! Layout, on-disk format 3 (format 2 with segments of chunk encoding 4; one tree, `arrears`, with one-byte key prefixes; `docs/storage.md`
//! has the whole story and format 1):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | `m` + name | metadata: `format` = u32 BE; `fpruns` = u32 BE, the number of `f` runs |
//! | `e` | `e` + loan (16) + first seq (u64 BE) | a segment: consecutive events of the loan ([`crate::chunk`], encoding 4; 3 in format 2). The loan's last segment is rewritten by each append until it reaches [`SEGMENT_LIMIT`] bytes; its header is the loan's head. |
//! | `l` | `l` + first position of the batch (u64 BE) | the batch's log runs: loan (16) + first seq (u64 BE) + count (u32 BE) |
//! | `f` | `f` + first position of the batch (u64 BE) | the batch's event-id fingerprints, sorted u64 BE ([`fingerprint`]); merged into one run when there are more than [`MAX_FP_RUNS`] |
//! | `p` | `p` + the first loan (16) | a snapshot page: consecutive loans' projection snapshots (opaque to the store), `crates/store/src/pages.rs` |
//! | `s` | `s` + loan (16) | a loose snapshot, as builds before snapshot pages wrote them: read, and moved into a page when the loan's snapshot is next written (or by `upgrade`) |
//!
//! Why: sled's cost is per value written (~10 µs), so an append writes one value per loan it
//! touches plus two per batch, not one per event. An event id is found in its own loan's stream
//! (read anyway to check the new events); the fingerprints answer "is this id stored under any
//! other loan?" from memory, and only a match (a real reuse, or a 1-in-2^64 collision) pays for
//! a scan.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fs2::FileExt;
use uuid::Uuid;

use crate::backend::{Backend, SealedBatch};
use crate::{chunk, pages, Head, LogEntry, RawChunk, RawStream, StoreError};

/// The on-disk format this build writes: segments of chunk encoding 4 (decision S1). Format 2
/// (segments of encoding 3) is read and appended to; its first commit marks it format 3 in the
/// same atomic batch, so an older build refuses it ("upgrade arrears") rather than misreading
/// encoding 4. Format 1 (one value per event in an id index, heads apart, a chunk per append) is
/// read only by `upgrade` and `copy`.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest on-disk format this build appends to (its layout is format 3's; only its segments'
/// encoding differs).
pub const FORMAT_APPENDABLE: u32 = 2;
/// A loan's last segment is rewritten by appends until it holds this many bytes; then a new
/// segment starts. Bounds the bytes rewritten per append (a micro-loan's whole life is usually
/// well under it: ~100–300 bytes an event).
pub const SEGMENT_LIMIT: usize = 16 * 1024;
/// More fingerprint runs than this are merged into one by the next commit. Lookups use the
/// in-memory set, so the runs only cost the first cross-loan lookup's read of them; a merge holds
/// every fingerprint twice over (the set, the merged run, its encoding, sled's copy) and rewrites
/// them all. 1,024 runs (a batch each) keep a merge rare: with 32, a 1M-loan `append --batch
/// 5000` merged 23 times, each a ~100 MB spike of resident memory (docs/benchmarks.md).
pub const MAX_FP_RUNS: u32 = 1024;
/// sled's page cache, in MiB, unless `ARREARS_CACHE_MB` or [`set_default_cache_mb`] says
/// otherwise.
pub const DEFAULT_CACHE_MB: u64 = 256;
/// sled's page cache for a bulk load (`arrears append`): a load writes new values and reads
/// each loan's last segment once, so a large cache only fills (a 1M-loan load: 508 MiB resident
/// with 256 MiB of cache, ~240 MiB with 40 and no huge pages; docs/benchmarks.md, decision S10).
pub const BULK_CACHE_MB: u64 = 40;
static CACHE_MB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(DEFAULT_CACHE_MB);

/// The cache size, in MiB, of the sled stores this process opens from now on when
/// `ARREARS_CACHE_MB` is not set ([`BULK_CACHE_MB`] for a bulk load).
pub fn set_default_cache_mb(mb: u64) {
    CACHE_MB.store(mb, std::sync::atomic::Ordering::Relaxed);
}
const TREE: &str = "arrears";
const LOCK_FILE: &str = "lock";

/// How a store path is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create the store when the path holds none (commands that append).
    Create,
    /// The store must exist (read-only commands never create one).
    Existing,
    /// The store must exist, and an older on-disk format is opened too, for reading only: the
    /// source of `arrears copy`, the migration path off an old format. Writes are refused.
    ReadAnyFormat,
}

/// The 64-bit fingerprint of an event id kept in the `f` runs (splitmix64 over both halves).
/// Part of the on-disk format: changing it is a format change.
pub fn fingerprint(id: &Uuid) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let (hi, lo) = id.as_u64_pair();
    mix(hi ^ mix(lo))
}

/// A hasher for fingerprints, which are already uniformly distributed: the value is the hash.
#[derive(Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The fingerprint runs, loaded on first use: which runs are on disk, and every fingerprint.
#[derive(Default)]
struct Fingerprints {
    /// Position keys of the runs on disk.
    runs: Vec<u64>,
    set: FpSet,
}

impl Fingerprints {
    fn contains(&self, fp: u64) -> bool {
        self.set.contains(fp)
    }
}

/// Every stored event-id fingerprint, in memory at about 8 bytes each: one sorted `Vec`, and
/// the newest in a small hash set merged into it (in place, from the back) once it outgrows an
/// eighth of it. A single hash set took 9–18 bytes a fingerprint, and twice that while it grew:
/// at 3.67M events (a 1M-loan book) its resize alone was a ~110 MB spike of resident memory.
/// A lookup searches the window of the sorted `Vec` that a uniform hash predicts (fingerprints
/// are splitmix64 outputs), and the whole `Vec` when the window does not hold it.
#[derive(Default)]
struct FpSet {
    sorted: Vec<u64>,
    recent: std::collections::HashSet<u64, std::hash::BuildHasherDefault<Identity>>,
}

impl FpSet {
    /// The recent set is merged once it holds more than this many, or an eighth of the sorted.
    const MERGE_AT: usize = 1 << 16;

    fn contains(&self, fp: u64) -> bool {
        self.recent.contains(&fp) || Self::search(&self.sorted, fp)
    }

    fn search(v: &[u64], fp: u64) -> bool {
        const WINDOW: usize = 4096;
        let Some(&last) = v.last() else {
            return false;
        };
        if fp > last {
            return false;
        }
        let guess = ((fp as u128 * v.len() as u128) >> 64) as usize;
        let (lo, hi) = (guess.saturating_sub(WINDOW), (guess + WINDOW).min(v.len()));
        let within = if v[lo] <= fp && fp <= v[hi - 1] {
            &v[lo..hi]
        } else {
            v
        };
        within.binary_search(&fp).is_ok()
    }

    fn extend(&mut self, fps: impl IntoIterator<Item = u64>) {
        for fp in fps {
            self.recent.insert(fp);
            if self.recent.len() > Self::MERGE_AT.max(self.sorted.len() / 8) {
                self.merge();
            }
        }
    }

    /// Move the recent set into the sorted `Vec`: grown by exactly what it takes (one
    /// reallocation at most), then merged in place from the back, with no merged copy beside it.
    fn merge(&mut self) {
        let mut add: Vec<u64> = self.recent.drain().collect();
        add.sort_unstable();
        let old = self.sorted.len();
        self.sorted.reserve_exact(add.len());
        self.sorted.resize(old + add.len(), 0);
        let (mut i, mut j, mut k) = (old, add.len(), old + add.len());
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1] > add[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = add[j - 1];
                j -= 1;
            }
        }
        self.sorted.dedup();
        debug_assert!(self.sorted.windows(2).all(|w| w[0] < w[1]));
    }

    /// Every fingerprint, sorted and without repeats.
    fn all(&self) -> Vec<u64> {
        let mut all = Vec::with_capacity(self.sorted.len() + self.recent.len());
        all.extend_from_slice(&self.sorted);
        all.extend(self.recent.iter().copied());
        all.sort_unstable();
        all.dedup();
        all
    }
}

struct State {
    /// The next global log position.
    next_pos: u64,
    /// The number of `f` runs on disk.
    fp_runs: u32,
    /// More runs than this are merged by the next commit ([`MAX_FP_RUNS`]; tests lower it).
    fp_run_limit: u32,
    /// Loaded on the first cross-loan lookup or merge; kept current by commits afterwards.
    fps: Option<Fingerprints>,
}

/// The sled backend.
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
    path: String,
    /// The on-disk format of the store opened: [`FORMAT_VERSION`], or older with
    /// [`Mode::ReadAnyFormat`] (then it is read only).
    format: std::sync::atomic::AtomicU32,
    state: Mutex<State>,
    /// Held while snapshot pages are read, merged and rewritten.
    pages: Mutex<()>,
    /// Held for the life of the backend: one process per store.
    _lock: std::fs::File,
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A sled key and value to write.
type KeyValue = (Vec<u8>, Vec<u8>);

fn event_key(loan: &Uuid, seq: u64) -> Vec<u8> {
    key(b'e', &[loan.as_bytes(), &seq.to_be_bytes()])
}

fn fmt_key() -> Vec<u8> {
    key(b'm', &[b"format"])
}

fn fpruns_key() -> Vec<u8> {
    key(b'm', &[b"fpruns"])
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

fn decode_runs(b: &[u8]) -> Result<Vec<(Uuid, u64, u32)>, String> {
    if b.is_empty() || !b.len().is_multiple_of(28) {
        return Err("log entry is not a list of 28-byte runs".into());
    }
    Ok(b.chunks_exact(28)
        .map(|c| {
            (
                Uuid::from_slice(&c[..16]).expect("16 bytes"),
                u64::from_be_bytes(c[16..24].try_into().expect("8 bytes")),
                u32::from_be_bytes(c[24..28].try_into().expect("4 bytes")),
            )
        })
        .collect())
}

/// How many log runs `head_seqs` gathers beyond twice the loans it has seen before it sorts
/// them down to one a loan: 1M runs (24 MB) makes a 1M-loan book loaded in one pass one sort, not
/// five growing ones (~190 → ~60 ms, decision S8).
const HEADS_SLACK: usize = 1 << 20;

/// Each loan's highest seq from the log's runs: a list sorted by (loan, seq) and cut to each
/// loan's last entry whenever it has grown by more than it held after the last cut plus `slack`,
/// so it holds at most about twice one entry per loan however many batches touched each loan.
/// Loans are kept as `u128` (big-endian, so in `loan_id` order): integers sort ~3× faster than
/// 16-byte arrays compared byte by byte.
#[derive(Default)]
struct LastSeqs {
    list: Vec<(u128, u64)>,
    kept: usize,
}

impl LastSeqs {
    fn push(&mut self, loan: Uuid, seq: u64, slack: usize) {
        self.list.push((loan.as_u128(), seq));
        if self.list.len() > 2 * self.kept + slack {
            self.squeeze();
        }
    }

    /// Take in another list's runs (from another part of the log).
    fn append(&mut self, mut other: LastSeqs) {
        self.list.append(&mut other.list);
        self.kept += other.kept;
    }

    fn squeeze(&mut self) {
        use rayon::slice::ParallelSliceMut;
        let v = &mut self.list;
        v.par_sort_unstable();
        let mut w = 0;
        for r in 0..v.len() {
            if r + 1 < v.len() && v[r + 1].0 == v[r].0 {
                continue;
            }
            v[w] = v[r];
            w += 1;
        }
        v.truncate(w);
        self.kept = w;
    }

    fn finish(mut self) -> Vec<(Uuid, u64)> {
        self.squeeze();
        self.list
            .into_iter()
            .map(|(loan, seq)| (Uuid::from_u128(loan), seq))
            .collect()
    }
}

fn encode_fps(fps: &[u64]) -> Vec<u8> {
    fps.iter().flat_map(|f| f.to_be_bytes()).collect()
}

fn decode_fps(b: &[u8]) -> Result<Vec<u64>, String> {
    if !b.len().is_multiple_of(8) {
        return Err("fingerprint run is not a list of u64".into());
    }
    let v: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if v.windows(2).any(|w| w[0] > w[1]) {
        return Err("fingerprint run is not sorted".into());
    }
    Ok(v)
}

fn u64_at(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// What a store path holds.
enum OnDisk {
    Absent,
    /// sled's files without its `conf` (sled writes `blobs/`, then `conf`, then `db`; arrears
    /// writes nothing before sled's open returns): no event can be in it.
    HalfMade,
    Store,
}

/// The names sled 0.34 (and our lock file) create in a store directory.
fn is_store_file(name: &str) -> bool {
    matches!(name, "blobs" | "db" | "conf" | LOCK_FILE) || name.starts_with("snap.")
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
        Err(e) if e.raw_os_error() == Some(20) => {
            // ENOTDIR: a parent of the path is a regular file.
            return Err(StoreError::Path {
                path,
                why: "a parent of this path is a file, not a directory".into(),
            });
        }
        Err(e) => return Err(io_at(dir, e)),
    };
    if !meta.is_dir() {
        return Err(StoreError::NotAStore {
            path,
            why: "it is a file, not a directory".into(),
        });
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let entry = entry.map_err(|e| io_at(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        // An empty directory (made by hand): creating the store replaces it.
        return Ok(OnDisk::Absent);
    }
    if names.iter().any(|n| n == "conf") {
        return Ok(OnDisk::Store);
    }
    if names.iter().all(|n| is_store_file(n)) {
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
        assert!(
            is_store_file(&name),
            "only the store's own files are removed"
        );
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

fn parent_and_name(dir: &Path) -> Result<(PathBuf, String), StoreError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
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
    Ok((parent, name))
}

/// A fresh temporary sibling of `dir` for building a store, after removing the leftovers of
/// builders that were killed (their process is gone).
fn temp_sibling(dir: &Path, what: &str) -> Result<PathBuf, StoreError> {
    let (parent, name) = parent_and_name(dir)?;
    let prefix = format!(".{name}.{what}.");
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
    Ok(tmp)
}

fn sled_err(store: &str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            store: store.to_owned(),
            at: format!("file offset {at:?}"),
            why: "sled found corrupted data".into(),
        },
        sled::Error::Io(io) => StoreError::Io {
            store: store.to_owned(),
            why: io.to_string(),
        },
        other => StoreError::Io {
            store: store.to_owned(),
            why: other.to_string(),
        },
    }
}

fn open_sled(dir: &Path) -> Result<sled::Db, sled::Error> {
    // sled's page cache defaults to 1 GiB; a streamed replay gains little from a large cache,
    // so keep the process small. ARREARS_CACHE_MB overrides it.
    let cache_mb: u64 = std::env::var("ARREARS_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| CACHE_MB.load(std::sync::atomic::Ordering::Relaxed));
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_mb * 1024 * 1024)
        .open()
}

/// Open sled once this process holds the store's lock file. sled takes its own lock on `db`
/// too; a handle this process dropped a moment ago can still hold that one while sled's
/// background threads wind down, so a contended sled lock is retried (no other arrears process
/// can hold it: they need our lock file first). Bounded: after `SLED_LOCK_RETRY` it is an error.
fn open_sled_locked(dir: &Path) -> Result<sled::Db, sled::Error> {
    const SLED_LOCK_RETRY: Duration = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        match open_sled(dir) {
            Err(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::Other
                    && io.to_string().starts_with("could not acquire lock")
                    && started.elapsed() < SLED_LOCK_RETRY =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The raw sled database of a store directory, bypassing every check (for tamper tests and
/// benchmarks). Waits, bounded, for a handle this process just dropped to let go.
pub fn open_raw(dir: &Path) -> Result<sled::Db, StoreError> {
    open_sled_locked(dir).map_err(|e| sled_err(&dir.display().to_string(), e))
}

/// Build a new, empty store in a temporary sibling of `dir`, make it durable, and rename it into
/// place. The rename is atomic: `dir` is never seen half-made. A leftover sibling of a killed
/// creator is removed by the next creator.
fn create(dir: &Path) -> Result<(), StoreError> {
    let tmp = temp_sibling(dir, "creating")?;
    let desc = dir.display().to_string();
    {
        let db = open_sled(&tmp).map_err(|e| sled_err(&desc, e))?;
        let tree = db.open_tree(TREE).map_err(|e| sled_err(&desc, e))?;
        tree.insert(fmt_key(), &FORMAT_VERSION.to_be_bytes())
            .map_err(|e| sled_err(&desc, e))?;
        db.flush().map_err(|e| sled_err(&desc, e))?;
    }
    sync_dir(&tmp)?;
    let (parent, _) = parent_and_name(dir)?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => {}
        // Another process created the store first (a rename onto a non-empty directory fails):
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

/// This process, for the lock file: pid and command line.
fn whoami() -> String {
    let cmd = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let cmd: String = cmd.chars().take(200).collect();
    format!("pid {}: {cmd}", std::process::id())
}

/// Take the store's lock file, waiting up to `wait` for another process to let go.
fn lock(dir: &Path, wait: Option<Duration>) -> Result<std::fs::File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_at(&path, e))?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        match f.try_lock_exclusive() {
            Ok(()) => break,
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim().to_owned();
                return Err(StoreError::Locked {
                    path: dir.display().to_string(),
                    holder: (!holder.is_empty()).then_some(holder),
                });
            }
            Err(e) => return Err(io_at(&path, e)),
        }
    }
    // Say who holds it, for the next process's message. Best effort: the lock is what counts.
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = f.write_all(whoami().as_bytes());
    let _ = f.flush();
    Ok(f)
}

impl SledBackend {
    /// Open the store at `dir`. With [`Mode::Create`] a path with no store gets one; creation is
    /// crash-safe (built in a temporary sibling and renamed into place), and a directory left
    /// half-made by an older version is finished. `wait` is how long to wait for another process
    /// holding the store.
    pub fn open(dir: &Path, mode: Mode, wait: Option<Duration>) -> Result<SledBackend, StoreError> {
        let path = dir.display().to_string();
        match (inspect(dir)?, mode) {
            (OnDisk::Absent, Mode::Create) => create(dir)?,
            (OnDisk::HalfMade, Mode::Create) => {
                remove_half_made(dir)?;
                create(dir)?;
            }
            (OnDisk::Absent, Mode::Existing | Mode::ReadAnyFormat) => {
                return Err(StoreError::NoStore { path })
            }
            (OnDisk::HalfMade, Mode::Existing | Mode::ReadAnyFormat) => {
                return Err(StoreError::HalfMade { path })
            }
            (OnDisk::Store, _) => {}
        }
        let lock = lock(dir, wait)?;
        let db = open_sled_locked(dir).map_err(|e| sled_err(&path, e))?;
        let tree = db.open_tree(TREE).map_err(|e| sled_err(&path, e))?;
        let found = match tree.get(fmt_key()).map_err(|e| sled_err(&path, e))? {
            Some(v) => {
                u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    store: path.clone(),
                    at: "metadata".into(),
                    why: "the format version is not 4 bytes".into(),
                })?)
            }
            None => {
                return Err(StoreError::NotAStore {
                    path,
                    why: "a sled database without arrears metadata".into(),
                })
            }
        };
        if found > FORMAT_VERSION {
            return Err(StoreError::FormatTooNew { path, found });
        }
        if found < FORMAT_APPENDABLE && mode != Mode::ReadAnyFormat {
            return Err(StoreError::FormatTooOld { path, found });
        }
        let mut backend = SledBackend {
            db,
            tree,
            path,
            format: found.into(),
            state: Mutex::new(State {
                next_pos: 1,
                fp_runs: 0,
                fp_run_limit: MAX_FP_RUNS,
                fps: None,
            }),
            pages: Mutex::new(()),
            _lock: lock,
        };
        let next_pos = backend.read_next_pos()?;
        let fp_runs = match backend.get(&fpruns_key())? {
            Some(v) => u32::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| backend.corrupt("metadata", "fpruns is not 4 bytes"))?,
            ),
            None => 0,
        };
        *backend.state.get_mut().unwrap_or_else(|p| p.into_inner()) = State {
            next_pos,
            fp_runs,
            fp_run_limit: MAX_FP_RUNS,
            fps: None,
        };
        Ok(backend)
    }

    fn corrupt(&self, at: impl Into<String>, why: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            store: self.path.clone(),
            at: at.into(),
            why: why.into(),
        }
    }

    /// The key and value of `l`'s last segment after this batch: its stored last segment with
    /// the new events added while it has room, else a new segment. Raced when the stored head is
    /// not the one the batch was sealed from.
    fn next_segment(
        &self,
        l: &crate::backend::SealedLoan,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        // The loan's last segment: its header is the stored head.
        let last = self
            .tree
            .range(event_key(&l.loan, 0)..=event_key(&l.loan, u64::MAX))
            .next_back()
            .transpose()
            .map_err(|e| self.err(e))?;
        let stored_head = match &last {
            Some((_, v)) => {
                chunk::header(v)
                    .map_err(|why| self.corrupt(format!("loan {}", l.loan), why))?
                    .ok_or_else(|| {
                        self.corrupt(format!("loan {}", l.loan), "a segment without a header")
                    })?
                    .seq
            }
            None => 0,
        };
        if stored_head != l.prev_seq {
            return Err(StoreError::Raced { loan: l.loan });
        }
        // Segments are cut by their events' bytes before compression (the new ones are
        // counted with their ids and hashes, so a little early), bounding what an append
        // rewrites and what a read decompresses.
        let room = match &last {
            Some((_, v)) => {
                chunk::events_len(v).map_err(|why| self.corrupt(format!("loan {}", l.loan), why))?
                    + l.bodies.len()
                    <= SEGMENT_LIMIT
            }
            None => false,
        };
        Ok(match last {
            Some((k, v)) if room => {
                let seg = chunk::segment(Some(&v), &l.loan, &l.head, &l.bodies)
                    .map_err(|why| self.corrupt(format!("loan {}", l.loan), why))?;
                (k.to_vec(), seg)
            }
            _ => (
                event_key(&l.loan, l.prev_seq + 1),
                chunk::segment(None, &l.loan, &l.head, &l.bodies).expect("no old segment"),
            ),
        })
    }

    fn format(&self) -> u32 {
        self.format.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes go only to a store of format 2 or 3.
    fn writable(&self) -> Result<(), StoreError> {
        if self.format() < FORMAT_APPENDABLE {
            return Err(StoreError::FormatTooOld {
                path: self.path.clone(),
                found: self.format(),
            });
        }
        Ok(())
    }

    fn err(&self, e: sled::Error) -> StoreError {
        sled_err(&self.path, e)
    }

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.tree.get(k).map_err(|e| self.err(e))
    }

    fn read_next_pos(&self) -> Result<u64, StoreError> {
        match self.tree.scan_prefix([b'l']).next_back() {
            Some(kv) => {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                let first =
                    u64_at(&k[1..]).ok_or_else(|| self.corrupt("log key", "not 9 bytes"))?;
                let runs = decode_runs(&v)
                    .map_err(|why| self.corrupt(format!("log position {first}"), why))?;
                Ok(first + runs.iter().map(|r| r.2 as u64).sum::<u64>())
            }
            None => Ok(1),
        }
    }

    /// Merge the fingerprint runs past `limit` instead of [`MAX_FP_RUNS`] (tests of the merge).
    #[doc(hidden)]
    pub fn set_fp_run_limit(&self, limit: u32) {
        self.state().fp_run_limit = limit.max(1);
    }

    /// The raw sled tree (for tamper tests and `upgrade`).
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_fps(&self, st: &mut State) -> Result<(), StoreError> {
        if st.fps.is_some() {
            return Ok(());
        }
        let mut fps = Fingerprints::default();
        for kv in self.tree.scan_prefix([b'f']) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let pos =
                u64_at(&k[1..]).ok_or_else(|| self.corrupt("fingerprint key", "not 9 bytes"))?;
            let run = decode_fps(&v)
                .map_err(|why| self.corrupt(format!("fingerprints at {pos}"), why))?;
            fps.runs.push(pos);
            fps.set.extend(run);
        }
        if fps.runs.len() as u32 != st.fp_runs {
            return Err(self.corrupt(
                "fingerprints",
                format!(
                    "metadata counts {} runs but {} are stored",
                    st.fp_runs,
                    fps.runs.len()
                ),
            ));
        }
        st.fps = Some(fps);
        Ok(())
    }

    /// Find an event id by scanning every stream (the slow path behind a fingerprint match).
    fn scan_for_id(&self, id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError> {
        let mut found = None;
        self.scan_streams(&mut |loan, raw| {
            if found.is_some() {
                return Ok(());
            }
            for c in &raw {
                let evs =
                    chunk::decode(c).map_err(|why| self.corrupt(format!("loan {loan}"), why))?;
                if let Some(e) = evs.iter().find(|e| e.event_id.uuid() == *id) {
                    found = Some((loan, e.seq.get()));
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Flush everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl Backend for SledBackend {
    fn describe(&self) -> String {
        self.path.clone()
    }

    fn read_stream(&self, loan: &Uuid) -> Result<RawStream, StoreError> {
        self.tree
            .scan_prefix(key(b'e', &[loan.as_bytes()]))
            .values()
            .map(|v| v.map(RawChunk::new).map_err(|e| self.err(e)))
            .collect()
    }

    /// Each loan is its own sled range read, and sled reads from several threads at once: an
    /// append of a batch touching thousands of loans reads them on every core.
    fn read_streams(&self, loans: &[Uuid]) -> Result<Vec<RawStream>, StoreError> {
        use rayon::prelude::*;
        let read: Vec<Result<RawStream, StoreError>> =
            loans.par_iter().map(|l| self.read_stream(l)).collect();
        read.into_iter().collect()
    }

    fn scan_streams(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut current: Option<Uuid> = None;
        let mut values = Vec::new();
        for kv in self.tree.scan_prefix([b'e']) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if k.len() != 25 {
                return Err(self.corrupt("event key", "is not 25 bytes"));
            }
            let loan = Uuid::from_slice(&k[1..17]).expect("16 bytes");
            if current != Some(loan) {
                if let Some(prev) = current.take() {
                    f(prev, std::mem::take(&mut values))?;
                }
                current = Some(loan);
            }
            values.push(RawChunk::new(v));
        }
        if let Some(prev) = current {
            f(prev, values)?;
        }
        Ok(())
    }

    fn scan_heads(
        &self,
        f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut last: Option<(Uuid, sled::IVec)> = None;
        let emit = |l: Uuid,
                    v: &sled::IVec,
                    f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>| {
            let head = match chunk::header(v)
                .map_err(|why| self.corrupt(format!("loan {l}"), why))?
            {
                Some(h) => h,
                // Format 1 (read for `copy`): chunks carry no header; the last event is the head.
                None if self.format() < FORMAT_APPENDABLE => chunk::head_of(
                    chunk::decode(v)
                        .map_err(|why| self.corrupt(format!("loan {l}"), why))?
                        .last()
                        .ok_or_else(|| self.corrupt(format!("loan {l}"), "an empty chunk"))?,
                ),
                None => return Err(self.corrupt(format!("loan {l}"), "a segment without a header")),
            };
            f(l, head)
        };
        for kv in self.tree.scan_prefix([b'e']) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if k.len() != 25 {
                return Err(self.corrupt("event key", "is not 25 bytes"));
            }
            let loan = Uuid::from_slice(&k[1..17]).expect("16 bytes");
            if let Some((l, prev)) = last.take() {
                if l != loan {
                    emit(l, &prev, f)?;
                }
            }
            last = Some((loan, v));
        }
        if let Some((l, v)) = last {
            emit(l, &v, f)?;
        }
        Ok(())
    }

    fn locate(&self, event_id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError> {
        let fp = fingerprint(event_id);
        let hit = {
            let mut st = self.state();
            self.load_fps(&mut st)?;
            st.fps.as_ref().expect("loaded").contains(fp)
        };
        if hit {
            self.scan_for_id(event_id)
        } else {
            Ok(None)
        }
    }

    /// From the log, not the segments: the runs are 28 bytes a loan per batch against a
    /// segment's hundreds, and the log is written in the same atomic batch as the segments, so
    /// the last run of a loan ends at its head. (1M loans: 28 MB read instead of 454 MB.)
    fn head_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        if self.format() < FORMAT_APPENDABLE {
            return crate::backend::seqs_of_heads(self);
        }
        // The log's two halves (by position) are read on two threads: a reprojection waits for
        // the heads before its workers start. Either half may hold a loan's highest seq; the
        // sort by (loan, seq) keeps it whichever half it came from.
        let mid = key(b'l', &[&(self.state().next_pos / 2).to_be_bytes()]);
        let half = |range: (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>)| {
            let mut last = LastSeqs::default();
            for kv in self.tree.range(range) {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                let position =
                    u64_at(&k[1..]).ok_or_else(|| self.corrupt("log key", "not 9 bytes"))?;
                let runs = decode_runs(&v)
                    .map_err(|why| self.corrupt(format!("log position {position}"), why))?;
                for (loan, first, n) in runs {
                    if n == 0 || first == 0 {
                        return Err(
                            self.corrupt(format!("log position {position}"), "an empty run")
                        );
                    }
                    last.push(loan, first + n as u64 - 1, HEADS_SLACK);
                }
            }
            Ok(last)
        };
        use std::ops::Bound::{Excluded, Included};
        let (low, high) = rayon::join(
            || half((Included(vec![b'l']), Excluded(mid.clone()))),
            || half((Included(mid.clone()), Excluded(vec![b'm']))),
        );
        let mut last = low?;
        last.append(high?);
        Ok(last.finish())
    }

    fn scan_log(&self, from: u64, f: &mut dyn FnMut(LogEntry) -> bool) -> Result<(), StoreError> {
        let start = match self
            .tree
            .range(key(b'l', &[&0u64.to_be_bytes()])..=key(b'l', &[&from.to_be_bytes()]))
            .next_back()
        {
            Some(kv) => kv.map_err(|e| self.err(e))?.0.to_vec(),
            None => key(b'l', &[&from.to_be_bytes()]),
        };
        for kv in self.tree.range(start..[b'm'].to_vec()) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let mut position =
                u64_at(&k[1..]).ok_or_else(|| self.corrupt("log key", "not 9 bytes"))?;
            let runs = decode_runs(&v)
                .map_err(|why| self.corrupt(format!("log position {position}"), why))?;
            for (loan_id, first, n) in runs {
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

    fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.state().next_pos - 1)
    }

    fn commit(&self, batch: &SealedBatch) -> Result<(), StoreError> {
        self.writable()?;
        let mut st = self.state();
        let mut b = sled::Batch::default();
        // Each loan's new last segment (a sled read, then elision and LZ4) is built on every
        // core; the batch is then filled in loan order, and the first failure in that order is
        // the one reported.
        let segments: Vec<Result<KeyValue, StoreError>> = {
            use rayon::prelude::*;
            batch
                .loans
                .par_iter()
                .map(|l| self.next_segment(l))
                .collect()
        };
        for seg in segments {
            let (k, v) = seg?;
            b.insert(k, v);
        }
        let pos = st.next_pos;
        b.insert(key(b'l', &[&pos.to_be_bytes()]), encode_runs(&batch.runs));
        let mut fps: Vec<u64> = batch.ids.iter().map(|(id, _, _)| fingerprint(id)).collect();
        fps.sort_unstable();
        let mut fp_runs = st.fp_runs + 1;
        let mut merged = false;
        if fp_runs > st.fp_run_limit {
            // Merge every run (and this batch's) into one at this position.
            self.load_fps(&mut st)?;
            let loaded = st.fps.as_ref().expect("loaded");
            let mut all: Vec<u64> = loaded.set.all();
            all.extend_from_slice(&fps);
            all.sort_unstable();
            all.dedup();
            for p in &loaded.runs {
                b.remove(key(b'f', &[&p.to_be_bytes()]));
            }
            b.insert(key(b'f', &[&pos.to_be_bytes()]), encode_fps(&all));
            fp_runs = 1;
            merged = true;
        } else {
            b.insert(key(b'f', &[&pos.to_be_bytes()]), encode_fps(&fps));
        }
        b.insert(fpruns_key(), &fp_runs.to_be_bytes());
        let bumped = self.format() < FORMAT_VERSION;
        if bumped {
            // A format-2 store gets its first segment of encoding 4 in this batch.
            b.insert(fmt_key(), &FORMAT_VERSION.to_be_bytes());
        }
        self.tree.apply_batch(b).map_err(|e| self.err(e))?;
        if bumped {
            self.format
                .store(FORMAT_VERSION, std::sync::atomic::Ordering::Relaxed);
        }
        // The batch is applied: bring the in-memory state up to date.
        st.next_pos = pos + batch.len() as u64;
        st.fp_runs = fp_runs;
        if let Some(loaded) = st.fps.as_mut() {
            if merged {
                loaded.runs = vec![pos];
            } else {
                loaded.runs.push(pos);
            }
            loaded.set.extend(fps);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush()
    }

    fn snapshot(&self, loan: &Uuid) -> Result<Option<RawChunk>, StoreError> {
        // A loose value is newer than a page's entry for the same loan (page writes remove it).
        if let Some(v) = self.get(&key(b's', &[loan.as_bytes()]))? {
            return Ok(Some(RawChunk::new(v)));
        }
        let Some((k, page)) = page_floor(&self.tree, loan).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let ents = page_entries(&k, &page);
        Ok(ents
            .binary_search_by(|(l, _)| l.cmp(loan))
            .ok()
            .map(|i| RawChunk::new(PageSlice(page.clone(), ents[i].1.clone()))))
    }

    fn scan_snapshots(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Pages, merged with the loose values older builds wrote (a loose value wins: writing
        // a page entry removes the loan's loose value, so one still there is newer).
        let mut loose = self.tree.scan_prefix([b's']);
        let mut next_loose = || -> Result<Option<(Uuid, sled::IVec)>, StoreError> {
            match loose.next() {
                None => Ok(None),
                Some(kv) => {
                    let (k, v) = kv.map_err(|e| self.err(e))?;
                    let loan = Uuid::from_slice(&k[1..])
                        .map_err(|_| self.corrupt("snapshot key", "not a UUID"))?;
                    Ok(Some((loan, v)))
                }
            }
        };
        let mut held = next_loose()?;
        for kv in self.tree.scan_prefix([b'p']) {
            let (k, page) = kv.map_err(|e| self.err(e))?;
            // A damaged page is a lost cache: its loans are replayed from their events.
            for (loan, range) in page_entries(&k, &page) {
                let mut from_page = true;
                while let Some((l, _)) = &held {
                    if *l > loan {
                        break;
                    }
                    let (l, bytes) = held.take().expect("held");
                    held = next_loose()?;
                    from_page &= l != loan;
                    f(l, RawChunk::new(bytes))?;
                }
                if from_page {
                    f(loan, RawChunk::new(PageSlice(page.clone(), range)))?;
                }
            }
        }
        while let Some((l, bytes)) = held.take() {
            f(l, RawChunk::new(bytes))?;
            held = next_loose()?;
        }
        Ok(())
    }

    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        self.writable()?;
        // Pages are read, merged and rewritten: one writer at a time.
        let _pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            snaps.windows(2).all(|w| w[0].0 < w[1].0),
            "snapshots come in strictly increasing loan order (Store::put_snapshots)"
        );
        let one_each: Vec<(Uuid, &[u8])> = snaps.iter().map(|(l, b)| (*l, &b[..])).collect();
        let loose = match self.tree.scan_prefix([b's']).next() {
            Some(kv) => kv.map(|_| true).map_err(|e| self.err(e))?,
            None => false,
        };
        let mut b = sled::Batch::default();
        stage_snapshots(&self.tree, &one_each, loose, &mut b).map_err(|e| self.err(e))?;
        self.tree.apply_batch(b).map_err(|e| self.err(e))?;
        self.flush()
    }
}

/// A loan's snapshot inside a page: the page's bytes (shared, not copied) and its range.
struct PageSlice(sled::IVec, std::ops::Range<usize>);

impl AsRef<[u8]> for PageSlice {
    fn as_ref(&self) -> &[u8] {
        &self.0[self.1.clone()]
    }
}

fn page_key(first: &Uuid) -> Vec<u8> {
    key(b'p', &[first.as_bytes()])
}

/// The entries of the page stored under `k`, or none when the page is damaged or its first entry
/// is not the loan its key names (snapshots are a cache: a damaged page's loans are replayed from
/// their events, and the page is replaced when one of them is written again).
fn page_entries(k: &[u8], page: &[u8]) -> Vec<(Uuid, std::ops::Range<usize>)> {
    match pages::entries(page) {
        Ok(ents) if ents[0].0.as_bytes()[..] == k[1..] => ents,
        _ => Vec::new(),
    }
}

/// The page that holds, or would hold, `loan`'s snapshot: the one with the greatest key not
/// above `p` + loan.
fn page_floor(tree: &sled::Tree, loan: &Uuid) -> sled::Result<Option<(sled::IVec, sled::IVec)>> {
    let mut probe = page_key(loan);
    probe.push(0);
    Ok(tree
        .get_lt(probe)?
        .filter(|(k, _)| k.first() == Some(&b'p')))
}

/// The first loan of the page after key `k`.
fn page_after(tree: &sled::Tree, k: &[u8]) -> sled::Result<Option<Uuid>> {
    Ok(tree
        .get_gt(k)?
        .filter(|(k, _)| k.len() == 17 && k[0] == b'p')
        .map(|(k, _)| Uuid::from_slice(&k[1..]).expect("16 bytes")))
}

/// Stage `snaps` (in strictly increasing loan order) into `b`: each page they fall in is read,
/// merged with them and rewritten, split into pages of at most [`pages::PAGE_LIMIT`] bytes;
/// with `loose`, the loans' loose values are removed. Pages already staged in `b` are not seen:
/// one call per batch.
fn stage_snapshots(
    tree: &sled::Tree,
    snaps: &[(Uuid, &[u8])],
    loose: bool,
    b: &mut sled::Batch,
) -> sled::Result<()> {
    debug_assert!(snaps.windows(2).all(|w| w[0].0 < w[1].0));
    let mut i = 0;
    while i < snaps.len() {
        let floor = page_floor(tree, &snaps[i].0)?;
        let next = match &floor {
            Some((k, _)) => page_after(tree, k)?,
            None => page_after(tree, &page_key(&snaps[i].0))?,
        };
        let n = snaps[i..]
            .iter()
            .take_while(|(l, _)| next.is_none_or(|next| *l < next))
            .count();
        let old: Vec<(Uuid, &[u8])> = match &floor {
            Some((k, page)) => page_entries(k, page)
                .into_iter()
                .map(|(l, r)| (l, &page[r]))
                .collect(),
            None => Vec::new(),
        };
        let merged = pages::merge(&old, &snaps[i..i + n]);
        if let Some((k, _)) = &floor {
            b.remove(k.clone());
        }
        for page in pages::paginate(&merged) {
            b.insert(page_key(&page[0].0), pages::encode(page));
        }
        if loose {
            for (l, _) in &snaps[i..i + n] {
                b.remove(key(b's', &[l.as_bytes()]));
            }
        }
        i += n;
    }
    Ok(())
}

/// Move `from`'s loose snapshots (one `s` value per loan, as builds before snapshot pages wrote
/// them) into `to`'s pages, 10,000 loans an atomic batch; how many were moved.
fn pack_loose(from: &sled::Tree, to: &sled::Tree, path: &str) -> Result<u64, StoreError> {
    let mut moved = 0u64;
    let mut group: Vec<(Uuid, sled::IVec)> = Vec::new();
    let write = |group: &mut Vec<(Uuid, sled::IVec)>| -> Result<(), StoreError> {
        let ents: Vec<(Uuid, &[u8])> = group.iter().map(|(l, v)| (*l, &v[..])).collect();
        let mut b = sled::Batch::default();
        stage_snapshots(to, &ents, true, &mut b).map_err(|e| sled_err(path, e))?;
        to.apply_batch(b).map_err(|e| sled_err(path, e))?;
        group.clear();
        Ok(())
    };
    for kv in from.scan_prefix([b's']) {
        let (k, v) = kv.map_err(|e| sled_err(path, e))?;
        let Ok(loan) = Uuid::from_slice(&k[1..]) else {
            continue; // not a snapshot key: left as it is
        };
        group.push((loan, v));
        moved += 1;
        if group.len() >= 10_000 {
            write(&mut group)?;
        }
    }
    write(&mut group)?;
    Ok(moved)
}

/// What `upgrade` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    pub loans: u64,
    pub events: u64,
    /// Where the original store now is (format 1, rebuilt beside it), or None: converted in
    /// place (format 2, whose segments are rewritten one atomic batch at a time).
    pub kept: Option<PathBuf>,
    /// Segments rewritten to the current encoding.
    pub segments: u64,
    /// Loose snapshots (one value per loan) packed into snapshot pages.
    pub snapshots: u64,
}

/// Rewrite in place the segments of encoding 3 a format-3 store still holds (a format-2 store
/// that this build appended to), in atomic batches of at most 10,000: each rewrite holds the
/// same events, so a store interrupted half-way holds both encodings and reads the same.
fn upgrade_in_place(tree: &sled::Tree, db: &sled::Db, path: &str) -> Result<Upgraded, StoreError> {
    let (mut loans, mut events, mut segments) = (0u64, 0u64, 0u64);
    let mut b = sled::Batch::default();
    b.insert(fmt_key(), &FORMAT_VERSION.to_be_bytes());
    let mut pending = 1usize;
    let mut current = None;
    let mut buf = Vec::new();
    for kv in tree.scan_prefix([b'e']) {
        let (k, v) = kv.map_err(|e| sled_err(path, e))?;
        let loan = Uuid::from_slice(k.get(1..17).unwrap_or_default()).map_err(|_| {
            StoreError::Corrupt {
                store: path.to_owned(),
                at: "event key".into(),
                why: "not a UUID".into(),
            }
        })?;
        let corrupt = |why: String| StoreError::Corrupt {
            store: path.to_owned(),
            at: format!("loan {loan}"),
            why,
        };
        if current != Some(loan) {
            loans += 1;
            current = Some(loan);
        }
        buf.clear();
        chunk::decode_into(&v, &mut buf).map_err(corrupt)?;
        events += buf.len() as u64;
        if v.first() == Some(&4) {
            continue;
        }
        // What encoding 4 elides must be what the chain says (else `verify` names the damage).
        if buf.iter().any(|e| e.loan_id.uuid() != loan)
            || buf.windows(2).any(|w| w[1].prev_hash != w[0].hash)
        {
            return Err(corrupt(
                "a segment's loan or hash chain is broken; run `arrears verify`".into(),
            ));
        }
        b.insert(k, chunk::encode(&buf));
        segments += 1;
        pending += 1;
        if pending >= 10_000 {
            tree.apply_batch(std::mem::take(&mut b))
                .map_err(|e| sled_err(path, e))?;
            pending = 0;
        }
    }
    tree.apply_batch(b).map_err(|e| sled_err(path, e))?;
    let snapshots = pack_loose(tree, tree, path)?;
    db.flush().map_err(|e| sled_err(path, e))?;
    Ok(Upgraded {
        loans,
        events,
        kept: None,
        segments,
        snapshots,
    })
}

/// Convert a format-1 or format-2 store at `dir` to the current format: the streams are
/// rewritten as segments of encoding 4, the log is kept as it is (so positions, seqs, ids,
/// `recorded_at` and hashes are unchanged and `digest` is equal), the fingerprints become one
/// run, and snapshots (a cache) are copied from format 2 and dropped from format 1. Built in a
/// temporary sibling; the original is renamed to `DIR.format1` / `DIR.format2` and kept. A
/// format-3 store holding segments of encoding 3 has them rewritten in place.
pub fn upgrade(dir: &Path) -> Result<Upgraded, StoreError> {
    let path = dir.display().to_string();
    if !matches!(inspect(dir)?, OnDisk::Store) {
        return Err(StoreError::NoStore { path });
    }
    let _lock = lock(dir, None)?;
    let old = open_sled_locked(dir).map_err(|e| sled_err(&path, e))?;
    let old_tree = old.open_tree(TREE).map_err(|e| sled_err(&path, e))?;
    let found = old_tree
        .get(fmt_key())
        .map_err(|e| sled_err(&path, e))?
        .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes));
    match found {
        // Rebuilt beside: a compact new store (rewriting every value in place would leave the
        // old ones as sled garbage: the 100k-loan store grew from 176 to 243 MB that way).
        Some(1 | FORMAT_APPENDABLE) => {}
        // Format 3 may still hold segments of encoding 3 that appends did not rewrite.
        Some(FORMAT_VERSION) => {
            let done = upgrade_in_place(&old_tree, &old, &path)?;
            if done.segments == 0 && done.snapshots == 0 {
                return Err(StoreError::Path {
                    path,
                    why: format!("already in format {FORMAT_VERSION}; nothing to upgrade"),
                });
            }
            return Ok(done);
        }
        Some(found) => return Err(StoreError::FormatTooNew { path, found }),
        None => {
            return Err(StoreError::NotAStore {
                path,
                why: "a sled database without arrears metadata".into(),
            })
        }
    }
    let corrupt = |at: String, why: String| StoreError::Corrupt {
        store: path.clone(),
        at,
        why,
    };
    let tmp = temp_sibling(dir, "upgrading")?;
    let (mut loans, mut events, mut segments) = (0u64, 0u64, 0u64);
    let mut snapshots = 0u64;
    {
        let db = open_sled(&tmp).map_err(|e| sled_err(&path, e))?;
        let tree = db.open_tree(TREE).map_err(|e| sled_err(&path, e))?;
        let mut b = sled::Batch::default();
        let mut pending = 0usize;
        let mut fps = Vec::new();
        let flush_batch = |b: &mut sled::Batch, pending: &mut usize| -> Result<(), StoreError> {
            tree.apply_batch(std::mem::take(b))
                .map_err(|e| sled_err(&path, e))?;
            *pending = 0;
            Ok(())
        };
        let mut current: Option<Uuid> = None;
        let mut stream = Vec::new();
        let write_loan = |loan: Uuid,
                          stream: &mut Vec<arrears_core::event::Event>,
                          b: &mut sled::Batch,
                          segments: &mut u64| {
            // Segments of at most SEGMENT_LIMIT bytes (at least one event each).
            let mut start = 0;
            let mut bytes = 0;
            for i in 0..stream.len() {
                let n = arrears_core::codec::encode(&stream[i]).len() + 4;
                if i > start && bytes + n + chunk::HEADER_LEN > SEGMENT_LIMIT {
                    b.insert(
                        event_key(&loan, stream[start].seq.get()),
                        chunk::encode(&stream[start..i]),
                    );
                    *segments += 1;
                    start = i;
                    bytes = 0;
                }
                bytes += n;
            }
            b.insert(
                event_key(&loan, stream[start].seq.get()),
                chunk::encode(&stream[start..]),
            );
            *segments += 1;
            stream.clear();
        };
        for kv in old_tree.scan_prefix([b'e']) {
            let (k, v) = kv.map_err(|e| sled_err(&path, e))?;
            let loan = Uuid::from_slice(&k[1..17])
                .map_err(|_| corrupt("event key".into(), "not a UUID".into()))?;
            if current.is_some_and(|c| c != loan) {
                write_loan(current.expect("some"), &mut stream, &mut b, &mut segments);
                pending += 1;
                if pending >= 10_000 {
                    flush_batch(&mut b, &mut pending)?;
                }
            }
            if current != Some(loan) {
                loans += 1;
                current = Some(loan);
            }
            let before = stream.len();
            chunk::decode_into(&v, &mut stream)
                .map_err(|why| corrupt(format!("loan {loan}"), why))?;
            for (i, ev) in stream[before..].iter().enumerate() {
                if ev.loan_id.uuid() != loan || ev.seq.get() != (before + i) as u64 + 1 {
                    return Err(corrupt(
                        format!("loan {loan} seq {}", before + i + 1),
                        "not contiguous; run `arrears verify` on the original".into(),
                    ));
                }
                fps.push(fingerprint(&ev.event_id.uuid()));
            }
            events += (stream.len() - before) as u64;
        }
        if let Some(loan) = current {
            write_loan(loan, &mut stream, &mut b, &mut segments);
        }
        for kv in old_tree.scan_prefix([b'l']) {
            let (k, v) = kv.map_err(|e| sled_err(&path, e))?;
            b.insert(k, v);
        }
        fps.sort_unstable();
        let last_pos = 1;
        b.insert(
            key(b'f', &[&(last_pos as u64).to_be_bytes()]),
            encode_fps(&fps),
        );
        b.insert(fpruns_key(), &1u32.to_be_bytes());
        b.insert(fmt_key(), &FORMAT_VERSION.to_be_bytes());
        flush_batch(&mut b, &mut pending)?;
        // Format 2's snapshots are current (packed into pages); format 1's are of an older
        // layout (dropped).
        if found == Some(FORMAT_APPENDABLE) {
            snapshots = pack_loose(&old_tree, &tree, &path)?;
        }
        db.flush().map_err(|e| sled_err(&path, e))?;
    }
    sync_dir(&tmp)?;
    drop(old_tree);
    drop(old);
    let kept = PathBuf::from(format!("{path}.format{}", found.expect("matched above")));
    if kept.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(StoreError::Path {
            path: kept.display().to_string(),
            why: "is in the way of the original (move it away and run upgrade again)".into(),
        });
    }
    std::fs::rename(dir, &kept).map_err(|e| io_at(dir, e))?;
    std::fs::rename(&tmp, dir).map_err(|e| io_at(dir, e))?;
    let (parent, _) = parent_and_name(dir)?;
    sync_dir(&parent)?;
    Ok(Upgraded {
        loans,
        events,
        kept: Some(kept),
        segments,
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use super::LastSeqs;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    #[test]
    fn last_seqs_keeps_each_loans_highest_seq_in_loan_order() {
        // Runs as a log holds them: every loan's seqs rise from batch to batch; loans repeat.
        let mut model = BTreeMap::new();
        let mut last = LastSeqs::default();
        let mut x: u64 = 7;
        for batch in 0..50u64 {
            for _ in 0..40 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let loan = Uuid::from_u128((x >> 58) as u128); // 64 loans
                let seq = batch * 10 + (x & 7);
                let seq = seq.max(model.get(&loan).copied().unwrap_or(0) + 1);
                model.insert(loan, seq);
                last.push(loan, seq, 3); // a tiny slack: squeezed many times
            }
        }
        assert!(last.kept > 0, "the list was cut along the way");
        assert_eq!(last.finish(), model.into_iter().collect::<Vec<_>>());
        assert!(LastSeqs::default().finish().is_empty());
    }
}

#[cfg(test)]
mod fp_tests {
    use super::FpSet;
    use std::collections::HashSet;

    /// The set against a `HashSet` model: uniform fingerprints (what `fingerprint` gives),
    /// clustered ones (the window misses, the whole search must answer), repeats, and the edges.
    #[test]
    fn fp_set_answers_as_a_hash_set_does() {
        let mut x: u64 = 1;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut set = FpSet::default();
        let mut model = HashSet::new();
        let mut probes = Vec::new();
        for round in 0..12u64 {
            let batch: Vec<u64> = (0..40_000)
                .map(|i| match (round % 3, i % 4) {
                    (1, _) => round << 40 | i, // clustered
                    (_, 0) => next() | 1,
                    _ => next(),
                })
                .collect();
            for &fp in batch.iter().step_by(1_000) {
                probes.push(fp);
                probes.push(fp ^ 1);
                probes.push(fp.wrapping_add(1));
            }
            set.extend(batch.iter().copied().chain(batch.iter().take(100).copied()));
            model.extend(batch);
            for &p in probes.iter().chain(&[0, 1, u64::MAX, u64::MAX - 1]) {
                assert_eq!(
                    set.contains(p),
                    model.contains(&p),
                    "{p:#x} after round {round}"
                );
            }
        }
        assert!(set.sorted.len() > set.recent.len(), "merged along the way");
        let mut all: Vec<u64> = model.into_iter().collect();
        all.sort_unstable();
        assert_eq!(set.all(), all);
        assert!(!FpSet::default().contains(0));
    }
}
