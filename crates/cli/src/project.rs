//! `arrears project`: projections from events, with no store — the unit of work a distributed
//! engine runs (docs/scale.md).
//!
//! Two kinds of input, told apart by the first event:
//! - **stored events** (envelope included: `event_id`, `seq`, `recorded_at`, `prev_hash`, `hash`),
//!   as `arrears events`, `export --events --format jsonl` and the events Parquet file's `json`
//!   column give them. Each loan's hash chain is re-checked (seq 1, 2, … without gaps, each
//!   `prev_hash` the previous `hash`, each `hash` recomputed, `recorded_at` non-decreasing) and
//!   a stream that does not verify is rejected naming the loan and seq. Then each loan is
//!   replayed with the same pure function `replay` uses. Streaming: loans must come sorted by
//!   `loan_id`, each loan's events together and in seq order (how `export --events` writes them
//!   and how the Spark job sorts its partitions), or with `--any-order` the whole input is read
//!   first.
//! - **input events** (no `hash`, as `append` takes them): sealed in a throw-away in-memory store
//!   through the normal append path (validation, `decide`, the hash chain), then replayed with
//!   `replay_all` — the same output as `append` + `replay` by construction. Any order `append`
//!   accepts (a loan's `disbursed` first); memory grows with the input.
//!
//! Output: one §7 object per line, sorted by `loan_id`, byte-identical to `arrears replay` over
//! the same loans.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use arrears_core::id::LoanId;
use arrears_core::Date;
use chrono::Utc;
use rayon::prelude::*;

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Event, Timestamp};
use arrears_core::parse::{parse_event, parse_stored, Invalid};
use arrears_core::Policy;
use arrears_projection::replay;
use arrears_store::Mode;

use crate::ledger::{AppendOptions, Failure, Ledger, Location, MAX_ATOMIC_EVENTS};

/// What `project` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// JSON lines: stored events, or input events as `append` takes them.
    Jsonl,
    /// The events Parquet file of `export --events --format parquet` (its `json` column).
    Parquet,
}

/// The options of one run.
#[derive(Debug, Clone)]
pub struct ProjectArgs {
    pub as_of: Date,
    pub known_at: Option<Timestamp>,
    pub format: InputFormat,
    /// Accept loans in any order, interleaved (reads the whole input before projecting).
    pub any_order: bool,
    /// Worker threads (None: all cores).
    pub jobs: Option<usize>,
}

/// What a run did, for the closing line on stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectReport {
    pub loans: u64,
    pub events: u64,
    /// The input had no envelopes and was sealed in a memory store.
    pub sealed: bool,
}

impl fmt::Display for ProjectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events == 0 {
            // Not an error (an empty partition is a partition), but never silent.
            write!(f, "no events in the input: nothing projected")
        } else if self.sealed {
            write!(
                f,
                "projected {} loans from {} input events (sealed in memory: validated and hash-chained)",
                self.loans, self.events
            )
        } else {
            write!(
                f,
                "projected {} loans from {} stored events (every hash chain verified)",
                self.loans, self.events
            )
        }
    }
}

/// Lines parsed together on every core.
const CHUNK_LINES: usize = 8192;

/// Where an event came from: source index and line (JSON lines) or row (Parquet), from 1.
#[derive(Debug, Clone, Copy)]
struct Loc {
    src: u32,
    n: usize,
}

/// Names the input positions in messages.
struct Names {
    names: Vec<String>,
    unit: &'static str,
}

impl Names {
    fn at(&self, loc: Loc) -> String {
        match self.names.get(loc.src as usize) {
            Some(name) if name != "standard input" => format!("{name}: {} {}", self.unit, loc.n),
            _ => format!("{} {}", self.unit, loc.n),
        }
    }
}

/// One loan's events in input order.
struct Group {
    loan: LoanId,
    locs: Vec<Loc>,
    events: Vec<Event>,
}

/// Re-check a loan's chain: seq 1.. in order, `prev_hash` links, recomputed hashes,
/// `recorded_at` non-decreasing.
fn verify(g: &Group, names: &Names) -> Result<(), Failure> {
    let mut prev = GENESIS;
    let mut prev_at: Option<Timestamp> = None;
    for (i, (e, loc)) in g.events.iter().zip(&g.locs).enumerate() {
        let want = i as u64 + 1;
        let at = || format!("{}: loan {} seq {}", names.at(*loc), g.loan, e.seq);
        let bad = |why: String| Err(Failure::Input(format!("{}: {why}", at())));
        if e.seq.get() != want {
            return bad(format!(
                "expected seq {want}: a loan's events must start at seq 1 and follow each other without gaps or repeats (an event is missing, repeated or out of order)"
            ));
        }
        if e.prev_hash != prev {
            return bad(format!(
                "prev_hash does not match the hash of seq {} (an event was removed, inserted or reordered)",
                e.seq.get() - 1
            ));
        }
        if compute_hash(e) != e.hash {
            return bad("hash does not match the event's content (the event was edited)".into());
        }
        if prev_at.is_some_and(|t| e.recorded_at < t) {
            return bad(format!(
                "recorded_at is earlier than seq {}'s",
                e.seq.get() - 1
            ));
        }
        prev = e.hash;
        prev_at = Some(e.recorded_at);
    }
    Ok(())
}

/// The stored-events pipeline: parse chunks of lines in parallel, group by loan, verify and
/// project groups in parallel, write in order.
struct Stored<'a> {
    args: &'a ProjectArgs,
    policy: &'a Policy,
    out: &'a mut (dyn Write + Send),
    names: Names,
    lines: Vec<(Loc, String)>,
    current: Option<Group>,
    all: BTreeMap<LoanId, Group>,
    report: ProjectReport,
}

impl Stored<'_> {
    fn push(&mut self, loc: Loc, text: String) -> Result<(), Failure> {
        self.lines.push((loc, text));
        if self.lines.len() >= CHUNK_LINES {
            self.flush_lines()?;
        }
        Ok(())
    }

    fn flush_lines(&mut self) -> Result<(), Failure> {
        let names = &self.names;
        let parsed: Vec<Result<(Loc, Event), Failure>> = std::mem::take(&mut self.lines)
            .into_par_iter()
            .map(|(loc, text)| {
                parse_stored(&text).map(|e| (loc, e)).map_err(|e| {
                    let hint = match (&e.kind, e.field.as_str()) {
                        (Invalid::Missing, "event_id" | "seq" | "recorded_at" | "prev_hash" | "hash") => {
                            " (the input began with a stored event, so every event must carry its envelope, as `export --events` writes them)"
                        }
                        _ => "",
                    };
                    Failure::Input(format!("{}: {e}{hint}", names.at(loc)))
                })
            })
            .collect();
        let mut done = Vec::new();
        for p in parsed {
            let (loc, e) = p?;
            self.report.events += 1;
            if self.args.any_order {
                let g = self.all.entry(e.loan_id).or_insert_with(|| Group {
                    loan: e.loan_id,
                    locs: Vec::new(),
                    events: Vec::new(),
                });
                g.locs.push(loc);
                g.events.push(e);
                continue;
            }
            match &mut self.current {
                Some(g) if g.loan == e.loan_id => {
                    g.locs.push(loc);
                    g.events.push(e);
                    continue;
                }
                Some(g) if e.loan_id < g.loan => {
                    return Err(Failure::Input(format!(
                        "{}: loan {} comes after loan {}: the input must be sorted by loan_id, each loan's events together and in seq order (as `export --events` writes them); pass --any-order to read all of it first",
                        self.names.at(loc),
                        e.loan_id,
                        g.loan
                    )));
                }
                _ => {}
            }
            let next = Group {
                loan: e.loan_id,
                locs: vec![loc],
                events: vec![e],
            };
            if let Some(g) = self.current.replace(next) {
                done.push(g);
            }
        }
        self.run(done)
    }

    /// Verify and project complete loans in parallel; write their lines in order.
    fn run(&mut self, groups: Vec<Group>) -> Result<(), Failure> {
        let (as_of, known_at, policy, names) = (
            self.args.as_of,
            self.args.known_at,
            self.policy,
            &self.names,
        );
        let any_order = self.args.any_order;
        let lines: Vec<Result<Option<String>, Failure>> = groups
            .into_par_iter()
            .map(|mut g| {
                if any_order {
                    // Interleaved input: put each loan's events in seq order (a stable sort, so
                    // a repeated seq stays in input order for `verify` to report).
                    let mut both: Vec<(Loc, Event)> =
                        g.locs.drain(..).zip(g.events.drain(..)).collect();
                    both.sort_by_key(|(_, e)| e.seq);
                    (g.locs, g.events) = both.into_iter().unzip();
                }
                verify(&g, names)?;
                Ok(replay(&g.events, as_of, known_at, policy).map(|p| p.to_json()))
            })
            .collect();
        for line in lines {
            if let Some(line) = line? {
                self.out.write_all(line.as_bytes())?;
                self.out.write_all(b"\n")?;
                self.report.loans += 1;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ProjectReport, Failure> {
        self.flush_lines()?;
        if let Some(g) = self.current.take() {
            self.run(vec![g])?;
        }
        let all = std::mem::take(&mut self.all);
        let mut chunk = Vec::new();
        for (_, g) in all {
            chunk.push(g);
            if chunk.len() >= CHUNK_LINES / 4 {
                self.run(std::mem::take(&mut chunk))?;
            }
        }
        self.run(chunk)?;
        Ok(self.report)
    }
}

fn open(path: &Path) -> Result<File, Failure> {
    if path.is_dir() {
        return Err(Failure::Other(format!(
            "{}: is a directory, not a file of events",
            path.display()
        )));
    }
    File::open(path).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))
}

/// Project the events in `files` (standard input when empty or `-`), writing §7 lines to `out`.
pub fn run(
    files: &[PathBuf],
    args: &ProjectArgs,
    policy: &Policy,
    out: &mut (dyn Write + Send),
) -> Result<ProjectReport, Failure> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
        .map_err(|e| Failure::Other(e.to_string()))?;
    pool.install(|| run_here(files, args, policy, out))
}

fn run_here(
    files: &[PathBuf],
    args: &ProjectArgs,
    policy: &Policy,
    out: &mut (dyn Write + Send),
) -> Result<ProjectReport, Failure> {
    let stdin = [PathBuf::from("-")];
    let files = if files.is_empty() { &stdin[..] } else { files };
    let is_stdin = |p: &Path| p.as_os_str() == "-";
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            if is_stdin(p) {
                "standard input".to_owned()
            } else {
                p.display().to_string()
            }
        })
        .collect();
    if args.format == InputFormat::Parquet {
        return parquet_input(files, names, args, policy, out);
    }
    let mut readers = files.iter().map(|p| -> Result<Box<dyn BufRead>, Failure> {
        if is_stdin(p) {
            Ok(Box::new(BufReader::new(io::stdin().lock())))
        } else {
            let mut f = BufReader::with_capacity(1 << 20, open(p)?);
            if f.fill_buf()?.starts_with(b"PAR1") {
                return Err(Failure::Input(format!(
                    "{}: is a Parquet file: pass --format parquet",
                    p.display()
                )));
            }
            Ok(Box::new(f))
        }
    });
    // Find the first event to tell stored events from input events.
    let mut src = 0u32;
    let mut current = readers.next().expect("at least one input")?;
    let mut n = 0usize;
    let mut skipped = String::new();
    let first = loop {
        let mut line = String::new();
        let read = current
            .read_line(&mut line)
            .map_err(|e| read_error(&names[src as usize], n + 1, e))?;
        if read == 0 {
            match readers.next() {
                Some(r) => {
                    current = r?;
                    src += 1;
                    n = 0;
                    continue;
                }
                None => break None,
            }
        }
        n += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        let text = if n == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            skipped.push_str(&line);
            continue;
        }
        let text = text.to_owned();
        break Some((line, text));
    };
    let Some((raw_first, first)) = first else {
        return Ok(ProjectReport::default());
    };
    let stored = match parse_event(&first) {
        Ok((_, chain)) => chain.hash.is_some(),
        Err(_) => true, // let the stored-event parser name the problem
    };
    if !stored {
        // Input events: seal them in a memory store through the append path, then replay.
        let prefix = std::io::Cursor::new(skipped + &raw_first);
        let mut rest: Box<dyn Read> = Box::new(prefix.chain(current));
        for r in readers {
            rest = Box::new(rest.chain(r?));
        }
        return sealed(BufReader::new(rest), args, policy, out);
    }
    let mut p = Stored {
        args,
        policy,
        out,
        names: Names {
            names: names.clone(),
            unit: "line",
        },
        lines: Vec::new(),
        current: None,
        all: BTreeMap::new(),
        report: ProjectReport::default(),
    };
    p.push(Loc { src, n }, first)?;
    loop {
        for line in current.lines() {
            n += 1;
            let line = line.map_err(|e| read_error(&names[src as usize], n, e))?;
            if line.trim().is_empty() {
                continue;
            }
            p.push(Loc { src, n }, line)?;
        }
        match readers.next() {
            Some(r) => {
                current = r?;
                src += 1;
                n = 0;
            }
            None => break,
        }
    }
    p.finish()
}

fn read_error(name: &str, n: usize, e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::InvalidData {
        Failure::Input(format!("{name}: line {n}: not UTF-8 text"))
    } else {
        Failure::Other(format!("{name}: reading line {n}: {e}"))
    }
}

fn sealed(
    input: impl BufRead,
    args: &ProjectArgs,
    policy: &Policy,
    out: &mut (dyn Write + Send),
) -> Result<ProjectReport, Failure> {
    let ledger = Ledger::open(&Location::Memory, Mode::Create, None, policy.clone())?;
    let opts = AppendOptions {
        batch: Some(MAX_ATOMIC_EVENTS),
        skip_lines: 0,
        now: Utc::now(),
    };
    let never = AtomicBool::new(false);
    let appended = ledger.append_reader(input, &opts, &never, &mut |_, _| Ok(()))?;
    let mut report = ProjectReport {
        loans: 0,
        events: appended.events_read,
        sealed: true,
    };
    ledger.replay_all(
        args.as_of,
        args.known_at,
        false,
        true,
        &|_| {},
        &mut |_, json| {
            out.write_all(json.unwrap_or_default())?;
            report.loans += 1;
            Ok(())
        },
    )?;
    Ok(report)
}

fn parquet_input(
    files: &[PathBuf],
    names: Vec<String>,
    args: &ProjectArgs,
    policy: &Policy,
    out: &mut (dyn Write + Send),
) -> Result<ProjectReport, Failure> {
    let mut p = Stored {
        args,
        policy,
        out,
        names: Names { names, unit: "row" },
        lines: Vec::new(),
        current: None,
        all: BTreeMap::new(),
        report: ProjectReport::default(),
    };
    for (src, path) in files.iter().enumerate() {
        if path.as_os_str() == "-" {
            return Err(Failure::Input(
                "--format parquet reads files (Parquet needs to seek): name them".into(),
            ));
        }
        open(path)?;
        crate::parquet_export::read_event_json(path, &mut |rows| {
            for (n, json) in rows {
                p.push(Loc { src: src as u32, n }, json)?;
            }
            Ok(())
        })?;
    }
    p.finish()
}
