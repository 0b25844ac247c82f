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
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The business time zone (an IANA name such as Asia/Shanghai), overriding the policy's:
    /// dates left out (`--as-of`) are today's date there.
    #[arg(long, global = true, value_name = "ZONE")]
    tz: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Topic {
    /// Every event kind, with examples.
    Events,
    /// The policy file's fields and defaults.
    Policy,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    /// JSON lines: the §7 objects (as `replay`), or with --events the stored events.
    Jsonl,
    /// Typed columns (decimals, dates, UTC timestamps); needs --out or a pipe.
    Parquet,
}

#[derive(Subcommand)]
enum Cmd {
    /// Append events from JSON lines, all or nothing, and print each stored event.
    ///
    /// Each line is one event; envelope fields other than `loan_id` and `type` are optional
    /// (`event_id`, `seq` as the expected position, `recorded_at`). Every kind, with examples:
    /// `arrears reference events`. Example:
    ///
    ///   arrears append payments-2024-06-29.jsonl --quiet
    ///
    /// A rejected line is reported as `line N: <field>: <reason>` (exit 2) and nothing is written.
    /// Give events an `event_id` and a re-run of the same file stores nothing twice.
    Append {
        /// The file of JSON lines to read; standard input when absent or `-`.
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
    /// Example: arrears --store ./arrears.db upgrade
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
        /// The loan's id (a UUID; `arrears loans` lists them).
        loan: String,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time (default: all known).
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// The exact SPEC §7 JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: every penalty accrual stretch and every payment's allocation.
    ///
    /// Example: arrears explain 6f1c2a0e-… --as-of 2024-06-29
    Explain {
        /// The loan's id (a UUID; `arrears loans` lists them).
        loan: String,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time (default: all known).
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Batch recomputation: every loan's projection as JSON lines, sorted by loan_id.
    ///
    /// Output is byte-identical across runs and across --jobs values. A summary goes to stderr.
    ///
    /// Example: arrears replay --as-of 2024-06-29 --out owed.jsonl
    Replay {
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time (default: all known).
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Reuse stored snapshots for loans without new events (and refresh stale ones).
        #[arg(long)]
        incremental: bool,
    },
    /// The end-of-day job: record a `missed` (observed on the date) for every unrecorded miss.
    ///
    /// Running it twice for the same date adds nothing the second time.
    ///
    /// Example (cron, after midnight Beijing time): arrears sweep
    Sweep {
        /// The business date observed (YYYY-MM-DD); default today in the policy's time zone,
        /// so a sweep run from cron after midnight Beijing time sweeps the Beijing date.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
    /// Re-check every hash chain, seq and head; exit 1 naming the first broken event.
    ///
    /// Example: arrears verify --digest "$(cat digest-2024-06-29.txt)"
    Verify {
        /// Also check the store still extends the state this digest (POSITION-HEX, from
        /// `arrears digest`) covered.
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
    },
    /// Print a root hash over every loan's chain head, to keep outside the system.
    ///
    /// Example: arrears digest > digest-$(date +%F).txt
    Digest,
    /// A deterministic synthetic book of realistic loans, as JSON lines for `append`.
    ///
    /// Example: arrears generate --loans 1000 --seed 7 > book.jsonl
    Generate {
        /// How many loans.
        #[arg(long, value_name = "N")]
        loans: u64,
        /// The random seed: the same seed gives the same book, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First disbursement date (YYYY-MM-DD).
        #[arg(long, default_value = "2024-01-01", value_name = "DATE")]
        start: String,
        /// Disbursements spread over this many days; no event is dated later than start + days.
        #[arg(long, default_value_t = 180)]
        days: u32,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The replay table for analysts: one flat row per loan (or, with --events, per event).
    ///
    /// Example: arrears export --format parquet --as-of 2024-06-30 --out owed.parquet
    /// Example: arrears export --events --format parquet --out events.parquet
    Export {
        /// The file format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Every stored event, envelope included, one row each (parquet or jsonl), in loan_id
        /// then seq order: the input of `arrears project` and of scale/spark_replay.py.
        #[arg(long)]
        events: bool,
    },
    /// Projections from events, with no store: the unit of work a distributed engine runs.
    ///
    /// Example: arrears project --as-of 2024-06-30 < events.jsonl
    ///
    /// Reads stored events (envelope included, as `export --events` writes them; JSON lines or,
    /// with --format parquet, the events Parquet file), re-checks each loan's hash chain, and
    /// prints every loan's §7 object exactly as `replay` would, sorted by loan_id. Stored events
    /// must come sorted by loan_id, each loan's events together in seq order (--any-order reads
    /// all of it first). Events without an envelope (as `append` takes them) are sealed in a
    /// throw-away in-memory store first. See docs/scale.md.
    Project {
        /// Files to read, one after the other; standard input when none (or `-`).
        files: Vec<PathBuf>,
        /// The input format: JSON lines, or the events Parquet of `export --events`.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: arrears_cli::project::InputFormat,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Accept stored events in any order, loans interleaved (reads the whole input first).
        #[arg(long)]
        any_order: bool,
    },
    /// A loan's stored events, envelope included (JSON lines; a timeline table on a terminal).
    ///
    /// Example: arrears events 6f1c2a0e-… --known-at 2024-03-01T00:00:00Z
    ///
    /// Every field as stored: event_id, seq, recorded_at, prev_hash and hash, and the body
    /// (missed events and extension terms included). Also the way to salvage what is intact from
    /// a damaged store, loan by loan.
    Events {
        /// The loan's id (a UUID; `arrears loans` lists them).
        loan: String,
        /// Only events recorded at or before this RFC 3339 time (default: all).
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// JSON lines even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// The loans that match a filter on a day, with their key figures, sorted by loan_id.
    ///
    /// Example: arrears loans --as-of 2024-06-30 --stage phone --min-dpd 10 --limit 20
    Loans {
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// Collection stage: current, negotiated, settled, grace, reminder, phone,
        /// written_notice, outsourced or legal.
        #[arg(long)]
        stage: Option<String>,
        /// DPD bucket: M0 … M7+.
        #[arg(long)]
        bucket: Option<String>,
        /// Five-level class: normal, special_mention, substandard, doubtful or loss.
        #[arg(long)]
        class: Option<String>,
        /// Days past due at least this.
        #[arg(long, value_name = "N")]
        min_dpd: Option<String>,
        /// List at most K loans.
        #[arg(long, value_name = "K")]
        limit: Option<String>,
        /// One §7 object per line, exactly as `replay` prints it.
        #[arg(long)]
        json: bool,
    },
    /// Counts and amounts by stage, bucket and class on a day; with --vs, the roll-rate matrix.
    ///
    /// Example: arrears portfolio --as-of 2024-06-30 --vs 2024-05-31
    ///
    /// Amounts are exact (outstanding principal, interest, penalty, total); each grouping's
    /// totals equal the sums over all loans. With --vs D0 (before the as-of date D): for the
    /// loans open at D0, the share of each D0 bucket's principal that is in each bucket (or
    /// settled) at D — how collection teams measure themselves.
    Portfolio {
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// The roll-rate start date D0 (YYYY-MM-DD), before --as-of.
        #[arg(long, value_name = "DATE")]
        vs: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generate a book, append it to the store, replay it and print a summary.
    ///
    /// Example: arrears --store /tmp/demo.db demo --loans 5000
    Demo {
        /// How many loans to generate.
        #[arg(long, default_value_t = 20_000)]
        loans: u64,
        /// The generator's seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Reference pages built into the binary: `events` (every event kind, with examples) and
    /// `policy` (the policy file's fields and defaults).
    ///
    /// Example: arrears reference events
    Reference {
        /// The page: events or policy.
        #[arg(value_enum)]
        topic: Topic,
    },
    /// Shell completions for bash, zsh, fish, elvish or powershell, on standard output.
    ///
    /// Example: arrears completions bash > /etc/bash_completion.d/arrears
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), generated from the same definitions as --help.
    ///
    /// Example: arrears man > arrears.1 && man ./arrears.1
    Man,
    /// Contacts that broke the policy's collection rules (hours, calls a day, third parties,
    /// stage, settlement), and loans over the cost cap: the rule, the event and why
    /// (docs/rules.md §R2).
    ///
    /// Example: arrears compliance --as-of 2024-06-29 --json > findings.jsonl
    Compliance {
        /// One loan; every loan when absent.
        loan: Option<String>,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// JSON lines, one finding per line.
        #[arg(long)]
        json: bool,
    },
    /// The monthly credit-report (征信) history of one loan: one status a month (docs/rules.md §R4).
    ///
    /// Example: arrears credit-history 6f1c2a0e-… --as-of 2024-12-31
    CreditHistory {
        /// The loan's id (a UUID; `arrears loans` lists them).
        loan: String,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One loan as a self-contained HTML page: facts, schedule, a chart over time, the penalty
    /// stretches and allocations of `explain`, and the anomalies.
    ///
    /// Example: arrears report 6f1c2a0e-… --as-of 2024-06-30 --html loan.html
    Report {
        /// The loan's id (a UUID; `arrears loans` lists them).
        loan: String,
        /// Business date (YYYY-MM-DD); default today in the policy's time zone.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Count only events recorded at or before this RFC 3339 time (default: all known).
        #[arg(long, value_name = "TIME")]
        known_at: Option<String>,
        /// Write the page to this file (standard output when absent).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Serve the store over HTTP/JSON to many clients (this process owns the store).
    ///
    /// Example: arrears --store book.db serve --listen 127.0.0.1:8080
    ///
    /// POST /events, GET /loans/{id}[/explain|/events|/report], /loans, /portfolio, /verify,
    /// /digest, /health (see docs/serve.md). Stops gracefully on SIGTERM or Ctrl-C.
    Serve {
        /// HOST:PORT to listen on (port 0 picks a free one; the first line printed names it).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: String,
    },
}

/// A business date option; left out, today in the policy's business time zone (SPEC §10).
fn date_arg(name: &str, v: Option<&str>, policy: &Policy) -> Result<NaiveDate, Failure> {
    match v {
        None => Ok(policy.business_date(Utc::now())),
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
            "{{spinner}} {what} {{human_pos}}/{{human_len}} [{{elapsed_precise}}] {{rate}}"
        ))
        .map(|s| {
            s.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
        })
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
    let mut policy = load_policy(cli.policy.as_ref())?;
    if let Some(tz) = &cli.tz {
        policy.time_zone = tz.parse().map_err(|_| {
            Failure::Input(format!(
                "--tz: `{tz}` is not an IANA time zone name (for example Asia/Shanghai)"
            ))
        })?;
    }
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
                // Not an error (a day with no payments is a day), but never silent.
                eprintln!("no events in {name}: nothing appended");
                return Ok(());
            }
            if !quiet {
                eprintln!(
                    "appended {name}: {} new, {} already stored",
                    report.new, report.existed
                );
            }
        }
        Cmd::Events {
            loan,
            known_at,
            json,
        } => {
            let (loan, known_at) = (loan_arg(&loan)?, known_at_arg(known_at.as_deref())?);
            let events = open()?.events(loan, known_at)?;
            if events.is_empty() {
                return Err(Failure::Input(format!(
                    "loan {loan} has no stored events{}",
                    known_at
                        .map(|t| format!(" recorded by {}", arrears_core::event::fmt_timestamp(&t)))
                        .unwrap_or_default()
                )));
            }
            let mut out = writer(None)?;
            if json || !io::stdout().is_terminal() {
                for ev in &events {
                    writeln!(out, "{}", ev.to_json())?;
                }
            } else {
                write!(out, "{}", render::events_table(&events))?;
            }
            out.flush()?;
        }
        Cmd::Loans {
            as_of,
            known_at,
            stage,
            bucket,
            class,
            min_dpd,
            limit,
            json,
        } => {
            let filter = arrears_cli::portfolio::LoanFilter::parse(
                stage.as_deref(),
                bucket.as_deref(),
                class.as_deref(),
                min_dpd.as_deref(),
                limit.as_deref(),
            )
            .map_err(|e| Failure::Input(e.to_string()))?;
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
            let known_at = known_at_arg(known_at.as_deref())?;
            let ledger = open()?;
            let mut out = writer(None)?;
            if !json {
                write!(out, "{}", arrears_cli::portfolio::loans_header())?;
            }
            let mut listed = 0usize;
            ledger.replay_all(as_of, known_at, false, json, &|_| {}, &mut |p, line| {
                if filter.is_full(listed) || !filter.matches(p) {
                    return Ok(());
                }
                listed += 1;
                match line {
                    Some(l) => writeln!(out, "{l}")?,
                    None => write!(out, "{}", arrears_cli::portfolio::loan_row(p))?,
                }
                Ok(())
            })?;
            out.flush()?;
            if !json {
                eprintln!(
                    "{listed} {} as of {as_of}",
                    if listed == 1 { "loan" } else { "loans" }
                );
            }
        }
        Cmd::Portfolio {
            as_of,
            known_at,
            vs,
            json,
        } => {
            use arrears_cli::portfolio::{Portfolio, RollRates};
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
            let known_at = known_at_arg(known_at.as_deref())?;
            let bad = |e: arrears_cli::portfolio::PortfolioError| Failure::Other(e.to_string());
            let text = match vs {
                None => {
                    let ledger = open()?;
                    let mut pf = Portfolio::new(as_of, known_at, policy.name.clone());
                    ledger.replay_all(as_of, known_at, false, false, &|_| {}, &mut |p, _| {
                        pf.add(p).map_err(bad)
                    })?;
                    if json {
                        pf.to_json() + "\n"
                    } else {
                        pf.render()
                    }
                }
                Some(d0) => {
                    let d0 = date_arg("vs", Some(&d0), &policy)?;
                    let mut rr = RollRates::new(d0, as_of, known_at)
                        .map_err(|e| Failure::Input(format!("--vs: {e}")))?;
                    open()?.replay_pairs(d0, as_of, known_at, &mut |a, b| {
                        if let Some(a) = a {
                            rr.add(&a, &b).map_err(bad)?;
                        }
                        Ok(())
                    })?;
                    if json {
                        rr.to_json() + "\n"
                    } else {
                        rr.render()
                    }
                }
            };
            let mut out = writer(None)?;
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Cmd::Reference { topic } => {
            let page = match topic {
                Topic::Events => arrears_cli::reference::EVENTS.to_owned(),
                Topic::Policy => arrears_cli::reference::policy_page(&Policy::default()),
            };
            print!("{page}");
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "arrears", &mut io::stdout());
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut io::stdout())?;
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
                date_arg("as-of", as_of.as_deref(), &policy)?,
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
                date_arg("as-of", as_of.as_deref(), &policy)?,
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
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
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
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
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
            let start = date_arg("start", Some(&start), &policy)?;
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
            events: false,
        } => {
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
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
        Cmd::Export {
            format,
            as_of,
            out,
            events,
        } => {
            use arrears_cli::export::Other;
            let kind = match format {
                ExportFormat::Csv => {
                    return Err(Failure::Input(
                        "--events: use --format parquet or --format jsonl".into(),
                    ))
                }
                ExportFormat::Jsonl => Other::Jsonl,
                ExportFormat::Parquet => Other::Parquet,
            };
            if events && as_of.is_some() {
                return Err(Failure::Input(
                    "--as-of: export --events writes every stored event; it takes no date".into(),
                ));
            }
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
            let terminal = out.is_none() && io::stdout().is_terminal();
            let w = || writer(out.as_ref());
            arrears_cli::export::write_other(&open()?, kind, events, as_of, terminal, &w)?;
        }
        Cmd::Project {
            files,
            format,
            as_of,
            known_at,
            out,
            jobs,
            any_order,
        } => {
            let args = arrears_cli::project::ProjectArgs {
                as_of: date_arg("as-of", as_of.as_deref(), &policy)?,
                known_at: known_at_arg(known_at.as_deref())?,
                format,
                any_order,
                jobs,
            };
            let mut w = writer(out.as_ref())?;
            let report = arrears_cli::project::run(&files, &args, &policy, &mut w)?;
            w.flush()?;
            eprintln!("{report}");
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
            println!("replay as of {as_of} (policy {})", policy.describe());
            print!("{}", render::summary_table(&summary, t2.elapsed()));
            println!(
                "\ntry: arrears show {} --as-of {as_of}",
                ledger
                    .first_loan()?
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            );
        }
        Cmd::Compliance { loan, as_of, json } => {
            let as_of = date_arg("as-of", as_of.as_deref(), &policy)?;
            let loan = loan.as_deref().map(loan_arg).transpose()?;
            let ledger = open()?;
            let mut report = arrears_cli::rules::Report::new(as_of, &policy);
            match loan {
                Some(id) if !report.add(&ledger.events(id, None)?) => {
                    return Err(Failure::Input(format!("loan {id} is unknown")))
                }
                Some(_) => {}
                None => ledger.store().for_each_stream(&mut |_, evs| {
                    report.add(&evs);
                    Ok(())
                })?,
            }
            print!("{}", report.render(json));
        }
        Cmd::CreditHistory { loan, as_of, json } => {
            let (id, as_of) = (
                loan_arg(&loan)?,
                date_arg("as-of", as_of.as_deref(), &policy)?,
            );
            let events = open()?.events(id, None)?;
            let h = arrears_cli::rules::credit_history(&events, as_of, &policy)
                .ok_or_else(|| Failure::Input(format!("loan {id} is unknown on {as_of}")))?;
            print!("{}", arrears_cli::rules::render_credit_history(&h, json));
        }
        Cmd::Report {
            loan,
            as_of,
            known_at,
            html,
        } => {
            let (loan, as_of, known_at) = (
                loan_arg(&loan)?,
                date_arg("as-of", as_of.as_deref(), &policy)?,
                known_at_arg(known_at.as_deref())?,
            );
            let page = arrears_cli::report::for_loan(&open()?, loan, as_of, known_at)?;
            let mut w = writer(html.as_ref())?;
            w.write_all(page.as_bytes())?;
            w.flush()?;
        }
        Cmd::Serve { listen } => arrears_cli::serve::run(create()?, &listen)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Help that teaches: every option and argument of every command says what it is, and every
    /// command that does something shows an example.
    #[test]
    fn every_option_is_described_and_every_command_has_an_example() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for arg in cli.get_arguments() {
            assert!(arg.get_help().is_some(), "global --{}", arg.get_id());
        }
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "{name}: {} has no description",
                    arg.get_id()
                );
            }
            let long = sub
                .get_long_about()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(long.contains("Example"), "{name} has no example");
        }
    }
}
