//! The composing type: a store, a policy, and the projection's `decide` wired in as the store's
//! gate. Everything the CLI does goes through here, so tests and benches drive the same code.

use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrears_core::Date;
use rayon::prelude::*;
use uuid::Uuid;

use arrears_core::event::{Body, Event, Missed, NewEvent, Timestamp};
use arrears_core::parse::Invalid;
use arrears_core::validate::validate;
use arrears_core::{parse_event, InputError, Policy};
use arrears_projection::decide::Rejection;
use arrears_projection::{replay, DecideGate, Projection, Snapshot};
use arrears_store::{
    AppendError, Appended, Backend, Broken, MemoryBackend, Mode, PgUrl, PostgresBackend, RawChunk,
    RawStream, SledBackend, Store, StoreError,
};

/// A CLI-level failure with its exit code: 2 for rejected input, 1 for anything else.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Rejected input: the message names the line or field and the reason. Exit 2.
    #[error("{0}")]
    Input(String),
    /// Anything else (storage, I/O). Exit 1.
    #[error("{0}")]
    Other(String),
    /// The reader of our output went away (`| head`): not an error worth a message. Exit 0.
    #[error("broken pipe")]
    BrokenPipe,
    /// Stopped by SIGINT/SIGTERM at a batch boundary; the message says what is stored. Exit 130.
    #[error("{0}")]
    Interrupted(String),
}

/// The process exit codes of `arrears` (and of a signal handler that ends it).
pub mod exit {
    /// Success (also a reader that went away: `| head`).
    pub const SUCCESS: i32 = 0;
    /// Any failure other than rejected input: storage, I/O, a broken chain.
    pub const FAILURE: i32 = 1;
    /// Rejected input; the message names the line or field.
    pub const REJECTED: i32 = 2;
    /// Stopped by SIGINT or SIGTERM (128 + SIGINT, as a shell reports it).
    pub const INTERRUPTED: i32 = 130;
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Input(_) => exit::REJECTED,
            Failure::Other(_) => exit::FAILURE,
            Failure::BrokenPipe => exit::SUCCESS,
            Failure::Interrupted(_) => exit::INTERRUPTED,
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
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Other(format!("I/O: {e}"))
        }
    }
}

/// The store the ledger runs on.
pub type LedgerStore = Store<Box<dyn Backend>>;

/// Where a store is: a sled directory, a PostgreSQL database (`postgres://…`; its password is
/// never printed), or `memory:` (a store that lives as long as the process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sled(std::path::PathBuf),
    Postgres(PgUrl),
    Memory,
}

impl Location {
    pub fn parse(s: &str) -> Result<Location, Failure> {
        if s == "memory:" {
            return Ok(Location::Memory);
        }
        if arrears_store::postgres::is_url(s) {
            return Ok(Location::Postgres(PgUrl::new(s)));
        }
        Ok(Location::Sled(s.into()))
    }
}

/// Parse and validate one input line (1-based `line` for messages).
pub fn parse_line(text: &str, line: usize, policy: &Policy) -> Result<NewEvent, Failure> {
    let wrap = |e: InputError| Failure::Input(format!("line {line}: {e}"));
    // A UTF-8 byte-order mark (some editors write one) is not part of the first event.
    let text = if line == 1 {
        text.strip_prefix('\u{feff}').unwrap_or(text)
    } else {
        text
    };
    let (mut ev, _) = parse_event(text).map_err(|e| match &e.kind {
        Invalid::Json(_) if !text.trim_end().ends_with('}') => Failure::Input(format!(
            "line {line}: {e} (each event must be one JSON object on one line; pretty-printed JSON is not accepted)"
        )),
        _ => wrap(e),
    })?;
    validate(&mut ev, policy).map_err(wrap)?;
    Ok(ev)
}

/// Map an append error to a CLI failure naming the input line; `lines[i]` is the line number of
/// batch entry i.
pub fn append_failure(e: AppendError<Rejection>, lines: &[usize], store: &str) -> Failure {
    let line = |i: usize| lines.get(i).copied().unwrap_or(i + 1);
    match &e {
        AppendError::Rejected {
            index,
            reason: Rejection::NotDisbursed,
        } => Failure::Input(format!(
            "line {}: loan_id: the loan is not in the store at {store} (its `disbursed` event must come first)",
            line(*index)
        )),
        _ => match e.index() {
            Some(i) => Failure::Input(format!("line {}: {e}", line(i))),
            None => Failure::Other(e.to_string()),
        },
    }
}

/// Totals of a batch replay, for the closing summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub loans: u64,
    pub events: u64,
    /// Loans per stage, indexed by `Stage as usize` (see [`Summary::loans_in`]): a replay
    /// counts every loan here, serially, so a map lookup per loan would be a cost of its own.
    by_stage: [u64; arrears_projection::Stage::ALL.len()],
    pub outstanding: rust_decimal::Decimal,
    /// Σ outstanding penalty: what is owed.
    pub penalty_owed: rust_decimal::Decimal,
    /// Σ penalty ever accrued (paid and waived included).
    pub penalty_accrued: rust_decimal::Decimal,
    pub from_snapshots: u64,
}

impl Summary {
    /// How many of the loans replayed are in stage `s`.
    pub fn loans_in(&self, s: arrears_projection::Stage) -> u64 {
        self.by_stage[s as usize]
    }

    fn add(&mut self, p: &Projection, events: u64) {
        self.loans += 1;
        self.events += events;
        self.by_stage[p.stage as usize] += 1;
        self.outstanding += p.outstanding.total.decimal();
        self.penalty_owed += p.outstanding.penalty.decimal();
        self.penalty_accrued += p.penalty_accrued.decimal();
    }
}

/// Receives each replayed loan, in `loan_id` order, with its §7 line (newline included) when
/// one was asked for.
pub type Emit<'a> = &'a mut dyn FnMut(&Projection, Option<&[u8]>) -> Result<(), Failure>;

/// One unit of replay work: a loan and its raw stored values, or its snapshot.
enum Work {
    Events(Uuid, RawStream),
    /// A loan, its head seq and its stored snapshot bytes, if any: decoded and checked by the
    /// worker, which falls back to the events when the snapshot does not serve.
    Snap(Uuid, u64, Option<RawChunk>),
}

/// How `append` reads and commits its input.
#[derive(Debug, Clone)]
pub struct AppendOptions {
    /// Commit every N events as its own atomic batch; None: the whole input is one batch.
    pub batch: Option<usize>,
    /// Skip this many input lines first (to resume an interrupted `--batch` run).
    pub skip_lines: usize,
    /// The store's clock for this run.
    pub now: Timestamp,
}

/// The most events one atomic batch may hold: the bound that keeps `append` within its memory
/// budget (docs/benchmarks.md measures the bytes per event). A larger input without `--batch`
/// is refused before anything is written.
pub const MAX_ATOMIC_EVENTS: usize = 50_000;

/// Sees each committed batch of an append and its stored events, before the next is read.
pub type OnBatch<'a> = &'a mut dyn FnMut(&BatchDone, &[Appended]) -> Result<(), Failure>;

/// One committed batch of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDone {
    pub number: u64,
    /// Input lines (1-based, inclusive) the batch covered.
    pub first_line: usize,
    pub last_line: usize,
    pub new: u64,
    pub existed: u64,
}

/// What an append did in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReport {
    pub batches: u64,
    pub new: u64,
    pub existed: u64,
    /// Every input line up to this one (1-based) is stored; 0 when nothing was.
    pub stored_through_line: usize,
    /// Lines that held an event (not blank, not skipped).
    pub events_read: u64,
}

pub struct Ledger {
    store: LedgerStore,
    pub policy: Policy,
}

impl Ledger {
    /// Open the store at `location`. `Mode::Create` creates a missing store (commands that write
    /// events); `wait` is how long to wait for another process holding a sled store.
    pub fn open(
        location: &Location,
        mode: Mode,
        wait: Option<Duration>,
        policy: Policy,
    ) -> Result<Ledger, Failure> {
        let backend: Box<dyn Backend> = match location {
            Location::Sled(dir) => Box::new(SledBackend::open(dir, mode, wait)?),
            Location::Postgres(url) => Box::new(PostgresBackend::open(url, mode)?),
            Location::Memory => Box::new(MemoryBackend::new()),
        };
        Ok(Ledger::on(Store::new(backend), policy))
    }

    /// Open (or create) the sled store in `dir`.
    pub fn open_sled(dir: &Path, policy: Policy) -> Result<Ledger, Failure> {
        Ledger::open(&Location::Sled(dir.into()), Mode::Create, None, policy)
    }

    /// A ledger over an already-open store.
    pub fn on(store: LedgerStore, policy: Policy) -> Ledger {
        Ledger { store, policy }
    }

    /// The store (for tests, benches and audits that need its raw reads).
    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    /// Append a batch atomically, with `decide` as the gate.
    pub fn append(
        &self,
        batch: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Appended>, AppendError<Rejection>> {
        let mut gate = DecideGate::new(&self.policy);
        self.store.append(batch, &mut gate, now)
    }

    /// Read JSON lines and append them: the whole input as one atomic batch (at most
    /// [`MAX_ATOMIC_EVENTS`]), or with `batch` set, streaming, each N events an atomic batch.
    /// `on_batch` sees each committed batch and its stored events (to acknowledge them) before
    /// the next is read. When `stop` becomes true (SIGINT/SIGTERM) the append ends at the next
    /// batch boundary with [`Failure::Interrupted`] saying what is stored and how to resume.
    pub fn append_reader(
        &self,
        input: impl BufRead,
        opts: &AppendOptions,
        stop: &AtomicBool,
        on_batch: OnBatch<'_>,
    ) -> Result<AppendReport, Failure> {
        let limit = opts.batch.unwrap_or(MAX_ATOMIC_EVENTS).max(1);
        // Lines of the batch being read, parsed together (on every core) when it is full.
        let mut lines: Vec<(usize, String)> = Vec::new();
        let mut report = AppendReport::default();
        let mut first_line = opts.skip_lines + 1;
        let mut last_line = opts.skip_lines;
        let interrupted = |report: &AppendReport| {
            let what = if report.stored_through_line == 0 {
                "nothing of this input is stored".to_owned()
            } else {
                format!(
                    "input lines 1–{} are stored; resume with --skip-lines {}",
                    report.stored_through_line, report.stored_through_line
                )
            };
            Failure::Interrupted(format!("interrupted: {what}"))
        };
        for (i, line) in input.lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Failure::Input(format!("line {n}: not UTF-8 text"))
                } else {
                    Failure::Other(format!("reading line {n}: {e}"))
                }
            })?;
            if n <= opts.skip_lines {
                continue;
            }
            last_line = n;
            if stop.load(Ordering::Relaxed) {
                return Err(interrupted(&report));
            }
            if line.trim().is_empty() {
                continue;
            }
            if lines.len() >= limit {
                if opts.batch.is_none() {
                    return Err(Failure::Input(format!(
                        "line {n}: the input holds more than {MAX_ATOMIC_EVENTS} events, too many for one all-or-nothing batch within append's memory bound; nothing was written. Pass --batch N to commit every N events atomically (an interrupted run is resumed with --skip-lines)"
                    )));
                }
                self.commit_lines(
                    &mut lines,
                    first_line,
                    n - 1,
                    opts.now,
                    &mut report,
                    on_batch,
                )?;
                first_line = n;
                if stop.load(Ordering::Relaxed) {
                    return Err(interrupted(&report));
                }
            }
            lines.push((n, line));
            report.events_read += 1;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(interrupted(&report));
        }
        self.commit_lines(
            &mut lines,
            first_line,
            last_line,
            opts.now,
            &mut report,
            on_batch,
        )?;
        Ok(report)
    }

    /// Parse a batch's lines in parallel (the first bad line, in input order, is the error),
    /// then commit them as one atomic batch.
    fn commit_lines(
        &self,
        lines: &mut Vec<(usize, String)>,
        first_line: usize,
        last_line: usize,
        now: Timestamp,
        report: &mut AppendReport,
        on_batch: OnBatch<'_>,
    ) -> Result<(), Failure> {
        let parsed: Vec<Result<NewEvent, Failure>> = lines
            .par_iter()
            .map(|(n, l)| parse_line(l, *n, &self.policy))
            .collect();
        let mut batch = Vec::with_capacity(parsed.len());
        for p in parsed {
            batch.push(p?);
        }
        let mut line_nos: Vec<usize> = lines.drain(..).map(|(n, _)| n).collect();
        self.commit_batch(
            &mut batch,
            &mut line_nos,
            first_line,
            last_line,
            now,
            report,
            on_batch,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_batch(
        &self,
        batch: &mut Vec<NewEvent>,
        line_nos: &mut Vec<usize>,
        first_line: usize,
        last_line: usize,
        now: Timestamp,
        report: &mut AppendReport,
        on_batch: OnBatch<'_>,
    ) -> Result<(), Failure> {
        if batch.is_empty() {
            return Ok(());
        }
        let out = self
            .append(std::mem::take(batch), now)
            .map_err(|e| append_failure(e, line_nos, &self.store.describe()))?;
        line_nos.clear();
        let existed = out.iter().filter(|a| a.existed).count() as u64;
        report.batches += 1;
        report.new += out.len() as u64 - existed;
        report.existed += existed;
        report.stored_through_line = last_line;
        let done = BatchDone {
            number: report.batches,
            first_line,
            last_line,
            new: out.len() as u64 - existed,
            existed,
        };
        on_batch(&done, &out)
    }

    /// One loan's projection; `Input` error when the loan is unknown at that time.
    pub fn show(
        &self,
        loan: Uuid,
        as_of: Date,
        known_at: Option<Timestamp>,
    ) -> Result<Projection, Failure> {
        let events = self.store.stream(loan, known_at)?;
        replay(&events, as_of, known_at, &self.policy).ok_or_else(|| unknown(loan, as_of, known_at))
    }

    /// One loan's audit trail.
    pub fn explain(
        &self,
        loan: Uuid,
        as_of: Date,
        known_at: Option<Timestamp>,
    ) -> Result<arrears_projection::explain::Explain, Failure> {
        let events = self.store.stream(loan, known_at)?;
        let folded = arrears_projection::fold(&events, as_of, known_at, &self.policy)
            .ok_or_else(|| unknown(loan, as_of, known_at))?;
        Ok(arrears_projection::explain::explain(&folded, as_of))
    }

    /// The number of loans in the store.
    pub fn loan_count(&self) -> Result<u64, Failure> {
        Ok(self.store.head_seqs()?.len() as u64)
    }

    /// The first loan id in the store, if any (for hints).
    pub fn first_loan(&self) -> Result<Option<Uuid>, Failure> {
        Ok(self.store.head_seqs()?.first().map(|h| h.0))
    }

    /// Replay every loan to `as_of`, calling `emit` with each projection (and its §7 line, newline
    /// included, when `with_json`) in `loan_id` order. A reader thread scans the store while the current rayon
    /// pool folds, projects and serialises loans in chunks; the output order does not depend on
    /// the number of threads. With `incremental`, loans whose stored snapshot is current are
    /// projected from it without reading their events, and stale snapshots are rewritten.
    pub fn replay_all(
        &self,
        as_of: Date,
        known_at: Option<Timestamp>,
        incremental: bool,
        with_json: bool,
        progress: &dyn Fn(u64),
        emit: Emit<'_>,
    ) -> Result<Summary, Failure> {
        const CHUNK: usize = 2048;
        let use_snapshots = incremental && known_at.is_none();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Work>, StoreError>>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut out = Chunks::new(tx, CHUNK, "replay");
                let mut push = |w: Work| out.push(w);
                let scanned = if use_snapshots {
                    (|| {
                        // Heads and snapshots are both in loan_id order: merge them in one pass
                        // each, with no per-loan lookups. Snapshots are decoded by the workers.
                        let heads = self.store.head_seqs()?;
                        let mut next = 0;
                        self.store.for_each_snapshot(&mut |loan, snap| {
                            while next < heads.len() && heads[next].0 < loan {
                                push(Work::Snap(heads[next].0, heads[next].1, None))?;
                                next += 1;
                            }
                            if next < heads.len() && heads[next].0 == loan {
                                push(Work::Snap(loan, heads[next].1, Some(snap)))?;
                                next += 1;
                            }
                            Ok(())
                        })?;
                        for (loan, seq) in &heads[next..] {
                            push(Work::Snap(*loan, *seq, None))?;
                        }
                        Ok(())
                    })()
                } else {
                    self.store
                        .for_each_stream_raw(&mut |loan, raw| push(Work::Events(loan, raw)))
                };
                out.finish(scanned);
            });
            // From snapshots, each chunk is projected on every core while the previous one is
            // emitted (the emitting is serial: the output is in loan order). Loans are projected
            // in blocks whose §7 lines share one buffer: no allocation per line.
            let project_chunk = |chunk: Vec<Work>| -> Vec<Block> {
                chunk
                    .into_par_iter()
                    .chunks(BLOCK)
                    .map(|works| {
                        let mut block = Block {
                            done: Vec::with_capacity(works.len()),
                            // A micro-loan's §7 line is ~1.1 KB; longer ones reserve below.
                            json: Vec::with_capacity(if with_json {
                                works.len() * 1280
                            } else {
                                0
                            }),
                        };
                        for w in works {
                            let mut done = self.replay_one(w, as_of, known_at, incremental);
                            if let (true, Ok(Some(r))) = (with_json, &mut done) {
                                let start = block.json.len();
                                block.json.reserve(r.projection.json_len_hint());
                                r.projection.write_json(&mut block.json);
                                block.json.push(b'\n');
                                r.json = Some(start..block.json.len());
                            }
                            block.done.push(done);
                        }
                        block
                    })
                    .collect()
            };
            let mut summary = Summary::default();
            let mut finish = |blocks: Vec<Block>| -> Result<(), Failure> {
                let mut snaps = Vec::new();
                for Block { done, json } in blocks {
                    for r in done {
                        let Some(r) = r? else { continue };
                        if r.events == 0 {
                            summary.from_snapshots += 1;
                        }
                        summary.add(&r.projection, r.events);
                        emit(&r.projection, r.json.map(|line| &json[line]))?;
                        if let Some(s) = r.snapshot {
                            snaps.push((r.projection.loan_id.uuid(), s));
                        }
                    }
                }
                if !snaps.is_empty() {
                    self.store.put_snapshots(snaps)?;
                }
                progress(summary.loans);
                Ok(())
            };
            let mut pending = None;
            for chunk in rx {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        if let Some(done) = pending.take() {
                            finish(done)?;
                        }
                        return Err(e.into());
                    }
                };
                let mut projected = None;
                let mut finished = Ok(());
                if use_snapshots {
                    rayon::in_place_scope(|scope| {
                        scope.spawn(|_| projected = Some(project_chunk(chunk)));
                        if let Some(done) = pending.take() {
                            finished = finish(done);
                        }
                    });
                } else {
                    // From events the reader thread is the limit: emitting beside the workers
                    // would take its core (decision R1).
                    if let Some(done) = pending.take() {
                        finish(done)?;
                    }
                    projected = Some(project_chunk(chunk));
                }
                finished?;
                pending = projected;
            }
            if let Some(done) = pending {
                finish(done)?;
            }
            Ok(summary)
        })
    }

    /// One unit of replay work: a loan from its stored snapshot when that is current and serves
    /// `as_of`, else from its events (with a fresh snapshot when `incremental`).
    fn replay_one(
        &self,
        w: Work,
        as_of: Date,
        known_at: Option<Timestamp>,
        incremental: bool,
    ) -> Result<Option<Replayed>, StoreError> {
        let policy = &self.policy;
        let from_events = |loan: Uuid, raw: &[RawChunk]| -> Result<Option<Replayed>, StoreError> {
            let events = self.store.decode(&loan, raw)?;
            let Some(projection) = replay(&events, as_of, known_at, policy) else {
                return Ok(None);
            };
            let snapshot = incremental
                .then(|| Snapshot::build(&events, policy).map(|s| s.encode()))
                .flatten();
            Ok(Some(Replayed {
                projection,
                json: None,
                events: events.len() as u64,
                snapshot,
            }))
        };
        match w {
            Work::Snap(loan, seq, bytes) => {
                let snap = bytes
                    .and_then(|b| Snapshot::decode(&b))
                    .filter(|s| s.version() == seq && s.serves(as_of, policy));
                match snap {
                    Some(s) => Ok(Some(Replayed {
                        projection: arrears_projection::project(&s.loan, as_of, None, policy),
                        json: None,
                        events: 0,
                        snapshot: None,
                    })),
                    None => from_events(loan, &self.store.raw_stream(loan)?),
                }
            }
            Work::Events(loan, raw) => from_events(loan, &raw),
        }
    }

    /// The end-of-day job: a `missed` (observed on `as_of`) for every unrecorded miss, appended
    /// as one atomic batch. Idempotent: a second run finds nothing to record.
    pub fn sweep(&self, as_of: Date, now: Timestamp) -> Result<Vec<Appended>, Failure> {
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

    /// Re-check every hash chain, `seq` run, head and the global log; the first problem found.
    pub fn verify(&self) -> Result<Option<Broken>, Failure> {
        Ok(self.store.verify()?)
    }

    /// The root hash over every loan's chain head: `POSITION-HEX`.
    pub fn digest(&self) -> Result<String, Failure> {
        Ok(self.store.digest()?)
    }

    /// Whether the store still extends the state a digest (`POSITION-HEX`) was taken of.
    pub fn check_digest(&self, digest: &str) -> Result<Result<(), String>, Failure> {
        let (pos, want) = digest
            .split_once('-')
            .and_then(|(p, h)| Some((p.parse::<u64>().ok()?, h)))
            .filter(|(_, h)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                Failure::Input(format!(
                    "--digest: `{digest}` is not POSITION-HEX (as `arrears digest` prints it)"
                ))
            })?;
        Ok(self.store.check_digest(pos, &want.to_ascii_lowercase())?)
    }

    /// Apply `work` to every loan's decoded stream, in parallel on the current rayon pool, and
    /// hand the results to `emit` in `loan_id` order (a reader thread scans the store meanwhile).
    pub fn map_loans<T: Send>(
        &self,
        work: &(dyn Fn(Uuid, Vec<Event>) -> Option<T> + Sync),
        emit: &mut dyn FnMut(T) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        const CHUNK: usize = 2048;
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Result<Vec<(Uuid, RawStream)>, StoreError>>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut out = Chunks::new(tx, CHUNK, "scan");
                let scanned = self
                    .store
                    .for_each_stream_raw(&mut |loan, raw| out.push((loan, raw)));
                out.finish(scanned);
            });
            for chunk in rx {
                let results: Vec<Result<Option<T>, StoreError>> = chunk?
                    .into_par_iter()
                    .map(|(loan, raw)| Ok(work(loan, self.store.decode(&loan, &raw)?)))
                    .collect();
                for r in results {
                    if let Some(t) = r? {
                        emit(t)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Every loan's projections at two dates `from` < `to` (for roll rates), in `loan_id`
    /// order; loans with no projection at `to` are left out.
    pub fn replay_pairs(
        &self,
        from: Date,
        to: Date,
        known_at: Option<Timestamp>,
        emit: &mut dyn FnMut(Option<Projection>, Projection) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let policy = &self.policy;
        self.map_loans(
            &|_, events| {
                let end = replay(&events, to, known_at, policy)?;
                Some((replay(&events, from, known_at, policy), end))
            },
            &mut |(a, b)| emit(a, b),
        )
    }

    /// One loan's stored events (all of them, or those recorded by `known_at`).
    pub fn events(&self, loan: Uuid, known_at: Option<Timestamp>) -> Result<Vec<Event>, Failure> {
        Ok(self.store.stream(loan, known_at)?)
    }
}

/// Loans projected together: their results, in loan order, and their §7 lines in one buffer.
struct Block {
    done: Vec<Result<Option<Replayed>, StoreError>>,
    json: Vec<u8>,
}

/// Loans a [`Block`] holds: ~70 KB of §7 lines, a few thousandths of a chunk's work each.
const BLOCK: usize = 64;

/// What one unit of replay work yields.
struct Replayed {
    projection: Projection,
    /// Where its §7 JSON line is in its block's buffer, when asked for.
    json: Option<std::ops::Range<usize>>,
    /// Events read (0 when it came from a snapshot).
    events: u64,
    /// A refreshed snapshot to store.
    snapshot: Option<Vec<u8>>,
}

fn unknown(loan: Uuid, as_of: Date, known_at: Option<Timestamp>) -> Failure {
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

/// A scan's items sent to the workers in chunks of `size`, over a bounded channel.
struct Chunks<T> {
    tx: std::sync::mpsc::SyncSender<Result<Vec<T>, StoreError>>,
    chunk: Vec<T>,
    size: usize,
    /// Names the scan in the error that stops it.
    what: &'static str,
}

impl<T> Chunks<T> {
    fn new(
        tx: std::sync::mpsc::SyncSender<Result<Vec<T>, StoreError>>,
        size: usize,
        what: &'static str,
    ) -> Chunks<T> {
        Chunks {
            tx,
            chunk: Vec::with_capacity(size),
            size,
            what,
        }
    }

    /// Add one item, sending the chunk when it is full. A closed channel means the consumer
    /// stopped on an error: the scan stops too.
    fn push(&mut self, item: T) -> Result<(), StoreError> {
        self.chunk.push(item);
        if self.chunk.len() >= self.size {
            let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.size));
            self.tx.send(Ok(full)).map_err(|_| StoreError::Io {
                store: self.what.into(),
                why: "stopped".into(),
            })?;
        }
        Ok(())
    }

    /// The last, partial chunk, or the scan's error.
    fn finish(self, scanned: Result<(), StoreError>) {
        let _ = match scanned {
            Ok(()) => self.tx.send(Ok(self.chunk)),
            Err(e) => self.tx.send(Err(e)),
        };
    }
}
