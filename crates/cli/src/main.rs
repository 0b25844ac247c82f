//! `arrears`: the command line. One `main` that prints the error; exit 0 on success, 2 on
//! rejected input, 1 on any other failure.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use arrears_cli::generate::{generate, GenConfig};
use arrears_cli::ledger::{AppendOptions, Failure, Ledger, Location};
use arrears_cli::render;
use arrears_core::event::Timestamp;
use arrears_core::parse::{parse_date, parse_timestamp};
use arrears_core::Policy;
use arrears_store::Mode;

// The projection allocates many small, short-lived objects per loan; mimalloc handles that
// pattern markedly better than glibc malloc (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str =
    "An event-sourced ledger for consumer micro-loans: what a borrower owes on any day.

Events (disbursed, payment, missed, negotiated_extension) are appended as JSON lines to an
embedded store; every balance, penalty (罚息) and collection stage (催收阶段) is recomputed by
replaying them.";

const AFTER: &str = "Quick start:
  arrears demo                                    generate a book, append, replay, summarise
  arrears generate --loans 100 --seed 7 > book.jsonl
  arrears append book.jsonl --quiet
  arrears replay --as-of 2024-06-30 > owed.jsonl

Exit codes: 0 success, 2 rejected input (the message names the line or field), 1 other failure.";

#[derive(Parser)]
#[command(name = "arrears", version, about = ABOUT, after_help = AFTER)]
struct Cli {
    /// The store: a directory holding the embedded sled database (created by the first
    /// `append`), a PostgreSQL database `postgres://USER:PASSWORD@HOST:PORT/DB` (shared by many
    /// processes; the first `append` creates the schema), or `memory:` for a store that lives as
    /// long as the command.
    #[arg(
        long,
        global = true,
        env = "ARREARS_STORE",
        hide_env_values = true,
        default_value = "./arrears.db",
        value_name = "STORE"
    )]
    store: String,
    /// When another process holds the store, wait up to this many seconds for it instead of
    /// failing at once.
    #[arg(long, global = true, value_name = "SECONDS")]
    wait: Option<f64>,
    /// A collection policy JSON file replacing the default `default-v1`
    /// (see docs/decisions.md for its fields).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
}

#[derive(Subcommand)]
enum Cmd {
    /// Append events from JSON lines, all or nothing, and print each stored event.
    ///
    /// Each line is one event; envelope fields other than `loan_id` and `type` are optional
    /// (`event_id`, `seq` as the expected position, `recorded_at`). Example line:
    ///
    ///   {"loan_id":"6f1c…","type":"payment","on":"2024-02-05","amount":"120.00"}
    ///
    /// A rejected line is reported as `line N: <field>: <reason>` (exit 2) and nothing is written.
    Append {
        /// The file to read; standard input when absent or `-`.
        file: Option<PathBuf>,
        /// Commit every N events as its own atomic batch, streaming (bounded memory for any
        /// input size). The trade: a failure or interruption leaves the earlier batches stored;
        /// the closing line says which input lines are, and `--skip-lines` resumes. By default
        /// the whole input is one all-or-nothing batch (at most 50,000 events).
        #[arg(long, value_name = "N")]
        batch: Option<usize>,
        /// Skip the first N input lines (resume an interrupted `--batch` run).
        #[arg(long, value_name = "N", default_value_t = 0)]
        skip_lines: usize,
        /// Print nothing on success (no stored events, no summary).
        #[arg(long)]
        quiet: bool,
    },
    /// Convert a store written by an older arrears (on-disk format 1) to the current format.
    ///
    /// Ids, seqs, recorded_at, hashes and the global log are kept, so `digest` is the same
    /// before and after. The original is renamed to DIR.format1 and kept until you remove it.
    Upgrade,
    /// Copy a whole ledger into a new store: sled ↔ PostgreSQL ↔ a new sled.
    ///
    /// Every event keeps its id, seq, recorded_at, hashes and global log position, so `digest`
    /// is equal before and after (checked). The destination must be empty or absent; the
    /// global --store is not used. Example:
    ///
    ///   arrears copy --from ./arrears.db --to postgres://arrears@db.internal/ledger
    Copy {
        /// The store to read (a sled directory or a postgres:// URL).
        #[arg(long, value_name = "STORE")]
        from: String,
        /// The store to create and fill (it must hold no events).
        #[arg(long, value_name = "STORE")]
        to: String,
    },
    /// One loan on a day: balances, penalty, DPD, stage (a table; `--json` for the exact object).
    ///
    /// Example: arrears show 6f1c2a0e-… --as-of 2024-02-10 --known-at 2024-02-11T00:00:00Z
    Show {
        loan: String,
        /// Business date (YYYY-MM-DD); today (UTC) by default.
        #[arg(long)]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time.
        #[arg(long)]
        known_at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: every penalty accrual stretch and every payment's allocation.
    Explain {
        loan: String,
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        known_at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Batch recomputation: every loan's projection as JSON lines, sorted by loan_id.
    ///
    /// Output is byte-identical across runs and across --jobs values. A summary goes to stderr.
    Replay {
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        known_at: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Reuse stored snapshots for loans without new events (and refresh stale ones).
        #[arg(long)]
        incremental: bool,
    },
    /// The end-of-day job: record a `missed` (observed on the date) for every unrecorded miss.
    ///
    /// Running it twice for the same date adds nothing the second time.
    Sweep {
        #[arg(long)]
        as_of: String,
    },
    /// Re-check every hash chain, seq and head; exit 1 naming the first broken event.
    Verify {
        /// Also check the store still extends the state this digest (from `arrears digest`) covered.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Print a root hash over every loan's chain head, to keep outside the system.
    Digest,
    /// A deterministic synthetic book of realistic loans, as JSON lines for `append`.
    Generate {
        #[arg(long)]
        loans: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First disbursement date.
        #[arg(long, default_value = "2024-01-01")]
        start: String,
        /// Disbursements spread over this many days; no event is dated later than start + days.
        #[arg(long, default_value_t = 180)]
        days: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The replay table for analysts: one flat row per loan.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate a book, append it to the store, replay it and print a summary.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        loans: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn date_arg(name: &str, v: Option<&str>) -> Result<NaiveDate, Failure> {
    match v {
        None => Ok(Utc::now().date_naive()),
        Some(s) => parse_date(s)
            .ok_or_else(|| Failure::Input(format!("--{name}: `{s}` is not a date (YYYY-MM-DD)"))),
    }
}

fn known_at_arg(v: Option<&str>) -> Result<Option<Timestamp>, Failure> {
    v.map(|s| {
        parse_timestamp(s).ok_or_else(|| {
            Failure::Input(format!("--known-at: `{s}` is not an RFC 3339 timestamp"))
        })
    })
    .transpose()
}

fn loan_arg(s: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(s).map_err(|_| Failure::Input(format!("LOAN: `{s}` is not a UUID")))
}

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed_precise}}] {{per_sec}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb
}

fn writer(out: Option<&PathBuf>) -> Result<Box<dyn Write + Send>, Failure> {
    Ok(match out {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    })
}

fn load_policy(path: Option<&PathBuf>) -> Result<Policy, Failure> {
    match path {
        None => Ok(Policy::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::Input(format!("--policy: {}: {e}", p.display())))?;
            Policy::from_json(&text)
                .map_err(|e| Failure::Input(format!("--policy: {}: {e}", p.display())))
        }
    }
}

/// SIGINT and SIGTERM set this flag (a second signal exits at once with 130); `append` stops
/// at the next batch boundary.
fn stop_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| Failure::Other(format!("installing the signal handler: {e}")))?;
    }
    Ok(flag)
}

fn run(cli: Cli) -> Result<(), Failure> {
    let policy = load_policy(cli.policy.as_ref())?;
    let location = Location::parse(&cli.store)?;
    let wait = cli
        .wait
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s)
                .map_err(|_| Failure::Input(format!("--wait: `{s}` is not a number of seconds")))
        })
        .transpose()?;
    let create = || Ledger::open(&location, Mode::Create, wait, policy.clone());
    let open = || Ledger::open(&location, Mode::Existing, wait, policy.clone());
    match cli.cmd {
        Cmd::Append {
            file,
            batch,
            skip_lines,
            quiet,
        } => {
            if batch == Some(0) {
                return Err(Failure::Input("--batch: must be at least 1".into()));
            }
            let (input, name): (Box<dyn BufRead>, String) =
                match file.as_ref().filter(|p| p.as_os_str() != "-") {
                    Some(p) => {
                        if p.is_dir() {
                            return Err(Failure::Other(format!(
                                "{}: is a directory, not a file of events",
                                p.display()
                            )));
                        }
                        let f = File::open(p)
                            .map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?;
                        (Box::new(BufReader::new(f)), p.display().to_string())
                    }
                    None => (
                        Box::new(BufReader::new(io::stdin().lock())),
                        "standard input".into(),
                    ),
                };
            let stop = stop_flag()?;
            let ledger = create()?;
            let pb = bar(None, "appended");
            let mut out = writer(None)?;
            let opts = AppendOptions {
                batch,
                skip_lines,
                now: Utc::now(),
            };
            let streaming = batch.is_some();
            let result = ledger.append_reader(input, &opts, &stop, &mut |done, stored| {
                if !quiet {
                    for a in stored {
                        writeln!(out, "{}", a.event.to_json())?;
                    }
                    // Acknowledge each committed batch before reading the next.
                    out.flush()?;
                    if streaming {
                        pb.suspend(|| {
                            eprintln!(
                                "batch {}: lines {}–{} stored ({} new, {} already stored)",
                                done.number,
                                done.first_line,
                                done.last_line,
                                done.new,
                                done.existed
                            )
                        });
                    }
                }
                pb.set_position(pb.position() + done.new + done.existed);
                Ok(())
            });
            pb.finish_and_clear();
            let report = result?;
            out.flush()?;
            if report.events_read == 0 {
                return Err(Failure::Input(format!("no events in {name}")));
            }
            if !quiet {
                eprintln!(
                    "stored {} events ({} new, {} already stored)",
                    report.new + report.existed,
                    report.new,
                    report.existed
                );
            }
        }
        Cmd::Upgrade => {
            let Location::Sled(dir) = &location else {
                return Err(Failure::Input(
                    "upgrade: only a sled directory has an on-disk format".into(),
                ));
            };
            let done = arrears_store::sled_backend::upgrade(dir)?;
            println!(
                "upgraded {}: {} loans, {} events; the original is kept at {}",
                dir.display(),
                done.loans,
                done.events,
                done.kept.display()
            );
        }
        Cmd::Copy { from, to } => {
            let (from, to) = (Location::parse(&from)?, Location::parse(&to)?);
            let pb = bar(None, "events copied");
            let done = arrears_cli::copy::copy(&from, &to, wait, &|n, total| {
                pb.set_length(total);
                pb.set_position(n)
            })?;
            pb.finish_and_clear();
            println!(
                "copied {} loans, {} events and {} snapshots from {} to {}; digest {} on both",
                done.loans, done.events, done.snapshots, done.from, done.to, done.digest
            );
        }
        Cmd::Show {
            loan,
            as_of,
            known_at,
            json,
        } => {
            let (loan, as_of, known_at) = (
                loan_arg(&loan)?,
                date_arg("as-of", as_of.as_deref())?,
                known_at_arg(known_at.as_deref())?,
            );
            let p = open()?.show(loan, as_of, known_at)?;
            if json {
                println!("{}", p.to_json());
            } else {
                print!("{}", render::projection_table(&p));
            }
        }
        Cmd::Explain {
            loan,
            as_of,
            known_at,
            json,
        } => {
            let (loan, as_of, known_at) = (
                loan_arg(&loan)?,
                date_arg("as-of", as_of.as_deref())?,
                known_at_arg(known_at.as_deref())?,
            );
            let e = open()?.explain(loan, as_of, known_at)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&e).map_err(|e| Failure::Other(e.to_string()))?
                );
            } else {
                print!("{}", render::explain_table(&e));
            }
        }
        Cmd::Replay {
            as_of,
            known_at,
            out,
            jobs,
            incremental,
        } => {
            let as_of = date_arg("as-of", as_of.as_deref())?;
            let known_at = known_at_arg(known_at.as_deref())?;
            let ledger = open()?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(jobs.unwrap_or(0))
                .build()
                .map_err(|e| Failure::Other(e.to_string()))?;
            let started = Instant::now();
            // The loan count is a scan of every head (on PostgreSQL a query over every event):
            // only worth it when a progress bar is drawn.
            let total = match io::stderr().is_terminal() {
                true => Some(ledger.loan_count()?),
                false => None,
            };
            let pb = bar(total, "loans");
            let mut w = writer(out.as_ref())?;
            let summary = pool.install(|| {
                ledger.replay_all(
                    as_of,
                    known_at,
                    incremental,
                    true,
                    &|n| pb.set_position(n),
                    &mut |_, json| {
                        w.write_all(json.unwrap_or_default().as_bytes())?;
                        w.write_all(b"\n")?;
                        Ok(())
                    },
                )
            })?;
            w.flush()?;
            pb.finish_and_clear();
            eprint!("{}", render::summary_table(&summary, started.elapsed()));
        }
        Cmd::Sweep { as_of } => {
            let as_of = date_arg("as-of", Some(&as_of))?;
            let ledger = open()?;
            let stored = ledger.sweep(as_of, Utc::now())?;
            let mut out = writer(None)?;
            for a in &stored {
                writeln!(out, "{}", a.event.to_json())?;
            }
            out.flush()?;
            eprintln!(
                "sweep {as_of}: recorded {} {}",
                stored.len(),
                if stored.len() == 1 { "miss" } else { "misses" }
            );
        }
        Cmd::Verify { digest } => {
            let ledger = open()?;
            if let Some(b) = ledger.verify()? {
                return Err(Failure::Other(format!(
                    "verify: broken at {}: {}",
                    b.at, b.why
                )));
            }
            if let Some(d) = digest {
                if let Err(why) = ledger.check_digest(&d)? {
                    return Err(Failure::Other(format!(
                        "verify: the store does not extend digest {d}: {why}"
                    )));
                }
            }
            println!("ok: every chain, seq and head verifies");
        }
        Cmd::Digest => {
            let ledger = open()?;
            println!("{}", ledger.digest()?);
        }
        Cmd::Generate {
            loans,
            seed,
            start,
            days,
            out,
        } => {
            let start = date_arg("start", Some(&start))?;
            let cfg = GenConfig {
                loans,
                seed,
                start,
                days,
            };
            let pb = bar(Some(loans), "loans");
            let mut w = writer(out.as_ref())?;
            let stats = generate(&cfg, &policy, &|n| pb.set_position(n), &mut |line| {
                w.write_all(line.as_bytes())?;
                w.write_all(b"\n")
            })?;
            w.flush()?;
            pb.finish_and_clear();
            eprintln!("generated {} loans, {} events", stats.loans, stats.events);
        }
        Cmd::Export {
            format: ExportFormat::Csv,
            as_of,
            out,
        } => {
            let as_of = date_arg("as-of", as_of.as_deref())?;
            let ledger = open()?;
            let w = writer(out.as_ref())?;
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record(arrears_cli::export::HEADER)
                .map_err(|e| Failure::Other(e.to_string()))?;
            ledger.replay_all(as_of, None, false, false, &|_| {}, &mut |p, _| {
                csv.write_record(arrears_cli::export::row(p))
                    .map_err(|e| Failure::Other(e.to_string()))
            })?;
            csv.flush()?;
        }
        Cmd::Demo { loans, seed } => {
            let ledger = create()?;
            let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid");
            let cfg = GenConfig {
                loans,
                seed,
                start,
                days: 180,
            };
            let as_of = start + chrono::Days::new(cfg.days as u64);
            eprintln!(
                "demo: generating {loans} loans (seed {seed}) into {}",
                ledger.store().describe()
            );
            let t0 = Instant::now();
            let mut book = Vec::new();
            let pb = bar(Some(loans), "generated");
            generate(&cfg, &policy, &|n| pb.set_position(n), &mut |l| {
                book.extend_from_slice(l.as_bytes());
                book.push(b'\n');
                Ok(())
            })?;
            pb.finish_and_clear();
            let t1 = Instant::now();
            let pb = bar(None, "appended");
            let opts = AppendOptions {
                batch: Some(20_000),
                skip_lines: 0,
                now: Utc::now(),
            };
            let never = std::sync::atomic::AtomicBool::new(false);
            let report = ledger.append_reader(&book[..], &opts, &never, &mut |d, _| {
                pb.set_position(pb.position() + d.new + d.existed);
                Ok(())
            })?;
            pb.finish_and_clear();
            let t2 = Instant::now();
            eprintln!(
                "generated {} events in {:.2}s; appended durably in {:.2}s ({} new, {} already stored)",
                report.events_read,
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                report.new,
                report.existed
            );
            let pb = bar(Some(loans), "replayed");
            let summary = ledger.replay_all(
                as_of,
                None,
                false,
                false,
                &|n| pb.set_position(n),
                &mut |_, _| Ok(()),
            )?;
            pb.finish_and_clear();
            println!("replay as of {as_of} (policy {})", policy.name);
            print!("{}", render::summary_table(&summary, t2.elapsed()));
            println!(
                "\ntry: arrears show {} --as-of {as_of}",
                ledger
                    .first_loan()?
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // A closed pipe (e.g. `| head`) is not an error worth a message.
        if !matches!(e, Failure::BrokenPipe) {
            eprintln!("arrears: {e}");
        }
        std::process::exit(e.exit_code());
    }
}
