//! The command line's arguments: the clap definitions of every command and option, with typed
//! values. Dates, timestamps and loan ids are parsed here, by clap value parsers over
//! `arrears_core::parse`, so the commands receive a `Date`, a `Timestamp` or a `Uuid`; a bad
//! value is refused before anything runs, naming the option (exit 2, see [`value_error`]).
//! Options with the same meaning are one group ([`Query`], [`AsOf`], [`LoanArg`], [`Batch`]),
//! flattened into each command that takes them.

use std::path::PathBuf;

use arrears_core::Date;
use chrono::Utc;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use arrears_core::event::Timestamp;
use arrears_core::parse::{parse_date, parse_timestamp};
use arrears_core::Policy;

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
pub struct Cli {
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
    pub store: String,
    /// When another process holds the store, wait up to this many seconds for it instead of
    /// failing at once.
    #[arg(long, global = true, value_name = "SECONDS")]
    pub wait: Option<f64>,
    /// A collection policy JSON file replacing the default `default-v1`
    /// (see docs/decisions.md for its fields).
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The business time zone (an IANA name such as Asia/Shanghai), overriding the policy's:
    /// dates left out (`--as-of`) are today's date there.
    #[arg(long, global = true, value_name = "ZONE")]
    pub tz: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Topic {
    /// Every event kind, with examples.
    Events,
    /// The policy file's fields and defaults.
    Policy,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    /// JSON lines: the §7 objects (as `replay`), or with --events the stored events.
    Jsonl,
    /// Typed columns (decimals, dates, UTC timestamps); needs --out or a pipe.
    Parquet,
}

/// The global options each command ignores: accepted anywhere as before (`arrears --store DIR
/// generate` still parses), but left out of that command's help, man page and completions.
const IGNORED: [(&str, &[&str]); 7] = [
    ("generate", &["store", "wait", "tz"]),
    ("project", &["store", "wait"]),
    ("copy", &["store", "policy", "tz"]),
    ("upgrade", &["wait", "policy", "tz"]),
    ("reference", &["store", "wait", "policy", "tz"]),
    ("completions", &["store", "wait", "policy", "tz"]),
    ("man", &["store", "wait", "policy", "tz"]),
];

/// The command line: [`Cli`]'s definition, with each global option a command ignores hidden
/// from it. clap propagates a global option to every subcommand unless the subcommand has an
/// option of that id already, so those commands get a hidden copy; its value still lands in the
/// one `Cli` field, from wherever it was given.
pub fn command() -> clap::Command {
    let cli = Cli::command();
    let globals: Vec<clap::Arg> = cli
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    // `mut_subcommand` moves the command it changes to the end: going through all of them in
    // order keeps the order (completions list them that way).
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names.iter().fold(cli, |cli, name| {
        let ids = IGNORED
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[][..], |(_, ids)| *ids);
        cli.mut_subcommand(name, |sub| {
            globals
                .iter()
                .filter(|g| ids.contains(&g.get_id().as_str()))
                .fold(sub, |sub, g| sub.arg(g.clone().global(false).hide(true)))
        })
    })
}

/// Parse the process's arguments with [`command`].
pub fn parse() -> Result<Cli, clap::Error> {
    Cli::from_arg_matches(&command().try_get_matches()?)
}

/// The business date a read is for: `--as-of`, flattened into every command that takes one.
#[derive(Args, Clone, Copy, Debug)]
pub struct AsOf {
    /// Business date (YYYY-MM-DD); default today in the policy's time zone.
    #[arg(long = "as-of", value_name = "DATE", value_parser = date)]
    pub as_of: Option<Date>,
}

impl AsOf {
    /// Whether `--as-of` was given.
    pub fn given(&self) -> bool {
        self.as_of.is_some()
    }

    /// The date given, or today in the policy's business time zone (SPEC §10).
    pub fn or_today(&self, policy: &Policy) -> Date {
        self.as_of
            .unwrap_or_else(|| policy.business_date(Utc::now()))
    }
}

/// A bitemporal read: the business date (`--as-of`) and what was known (`--known-at`).
#[derive(Args, Clone, Copy, Debug)]
pub struct Query {
    #[command(flatten)]
    pub as_of: AsOf,
    /// Count only events recorded at or before this RFC 3339 time (default: all known).
    #[arg(long = "known-at", value_name = "TIME", value_parser = timestamp)]
    pub known_at: Option<Timestamp>,
}

/// A computation over every loan: the query, where its lines go, and on how many threads.
#[derive(Args, Clone, Debug)]
pub struct Batch {
    #[command(flatten)]
    pub query: Query,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

/// The one loan a command is about (a positional argument).
#[derive(Args, Clone, Copy, Debug)]
pub struct LoanArg {
    /// The loan's id (a UUID; `arrears loans` lists them).
    #[arg(value_name = "LOAN", value_parser = uuid)]
    pub loan: Uuid,
}

/// The value parser of every date option.
pub fn date(s: &str) -> Result<Date, String> {
    parse_date(s)
        .map(Date::new)
        .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

/// The value parser of every timestamp option.
pub fn timestamp(s: &str) -> Result<Timestamp, String> {
    parse_timestamp(s).ok_or_else(|| format!("`{s}` is not an RFC 3339 timestamp"))
}

/// The value parser of every loan id.
pub fn uuid(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|_| format!("`{s}` is not a UUID"))
}

/// The options and arguments parsed by [`date`], [`timestamp`] and [`uuid`].
const TYPED: [&str; 5] = ["--as-of", "--known-at", "--vs", "--start", "LOAN"];

/// A value one of the parsers above refused, as `--as-of: `x` is not a date (YYYY-MM-DD)` or
/// `LOAN: `x` is not a UUID`: the option or argument named, then why (the words the commands
/// used before clap parsed these values). Any other clap error (an unknown option, a missing
/// value, --help) is None and clap reports it.
pub fn value_error(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    // clap names an option `--as-of <DATE>`, a positional `<LOAN>` (`[LOAN]` when optional).
    let name = match arg.split_once(' ') {
        Some((long, _)) if long.starts_with("--") => long,
        _ => arg.trim_matches(['<', '>', '[', ']']),
    };
    if !TYPED.contains(&name) {
        return None;
    }
    let why = std::error::Error::source(e)?;
    Some(format!("{name}: {why}"))
}

#[derive(Subcommand)]
pub enum Cmd {
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
    Append(AppendArgs),
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
    Copy(CopyArgs),
    /// One loan on a day: balances, penalty, DPD, stage (a table; `--json` for the exact object).
    ///
    /// Example: arrears show 6f1c2a0e-… --as-of 2024-02-10 --known-at 2024-02-11T00:00:00Z
    Show(ShowArgs),
    /// The audit trail: every penalty accrual stretch and every payment's allocation.
    ///
    /// Example: arrears explain 6f1c2a0e-… --as-of 2024-06-29
    #[command(mut_arg("json", |a| a.help("JSON instead of tables")))]
    Explain(ShowArgs),
    /// Batch recomputation: every loan's projection as JSON lines, sorted by loan_id.
    ///
    /// Output is byte-identical across runs and across --jobs values. A summary goes to stderr.
    ///
    /// Example: arrears replay --as-of 2024-06-29 --out owed.jsonl
    Replay(ReplayArgs),
    /// The end-of-day job: record a `missed` (observed on the date) for every unrecorded miss.
    ///
    /// Running it twice for the same date adds nothing the second time.
    ///
    /// Example (cron, after midnight Beijing time): arrears sweep
    #[command(mut_arg("as_of", |a| a.help(
        "The business date observed (YYYY-MM-DD); default today in the policy's time zone, so \
         a sweep run from cron after midnight Beijing time sweeps the Beijing date",
    )))]
    Sweep(SweepArgs),
    /// Re-check every hash chain, seq and head; exit 1 naming the first broken event.
    ///
    /// Example: arrears verify --digest "$(cat digest-2024-06-29.txt)"
    Verify(VerifyArgs),
    /// Print a root hash over every loan's chain head, to keep outside the system.
    ///
    /// Example: arrears digest > digest-$(date +%F).txt
    Digest,
    /// A deterministic synthetic book of realistic loans, as JSON lines for `append`.
    ///
    /// Example: arrears generate --loans 1000 --seed 7 > book.jsonl
    Generate(GenerateArgs),
    /// The replay table for analysts: one flat row per loan (or, with --events, per event).
    ///
    /// Example: arrears export --format parquet --as-of 2024-06-30 --out owed.parquet
    /// Example: arrears export --events --format parquet --out events.parquet
    Export(ExportArgs),
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
    Project(ProjectArgs),
    /// A loan's stored events, envelope included (JSON lines; a timeline table on a terminal).
    ///
    /// Example: arrears events 6f1c2a0e-… --known-at 2024-03-01T00:00:00Z
    ///
    /// Every field as stored: event_id, seq, recorded_at, prev_hash and hash, and the body
    /// (missed events and extension terms included). Also the way to salvage what is intact from
    /// a damaged store, loan by loan.
    Events(EventsArgs),
    /// The loans that match a filter on a day, with their key figures, sorted by loan_id.
    ///
    /// Example: arrears loans --as-of 2024-06-30 --stage phone --min-dpd 10 --limit 20
    Loans(LoansArgs),
    /// Counts and amounts by stage, bucket and class on a day; with --vs, the roll-rate matrix.
    ///
    /// Example: arrears portfolio --as-of 2024-06-30 --vs 2024-05-31
    ///
    /// Amounts are exact (outstanding principal, interest, penalty, total); each grouping's
    /// totals equal the sums over all loans. With --vs D0 (before the as-of date D): for the
    /// loans open at D0, the share of each D0 bucket's principal that is in each bucket (or
    /// settled) at D — how collection teams measure themselves.
    Portfolio(PortfolioArgs),
    /// Generate a book, append it to the store, replay it and print a summary.
    ///
    /// Example: arrears --store /tmp/demo.db demo --loans 5000
    Demo(DemoArgs),
    /// Reference pages built into the binary: `events` (every event kind, with examples) and
    /// `policy` (the policy file's fields and defaults).
    ///
    /// Example: arrears reference events
    Reference(ReferenceArgs),
    /// Shell completions for bash, zsh, fish, elvish or powershell, on standard output.
    ///
    /// Example: arrears completions bash > /etc/bash_completion.d/arrears
    Completions(CompletionsArgs),
    /// The manual page (roff), generated from the same definitions as --help.
    ///
    /// Example: arrears man > arrears.1 && man ./arrears.1
    Man,
    /// Contacts that broke the policy's collection rules (hours, calls a day, third parties,
    /// stage, settlement), and loans over the cost cap: the rule, the event and why
    /// (docs/rules.md §R2).
    ///
    /// Example: arrears compliance --as-of 2024-06-29 --json > findings.jsonl
    Compliance(ComplianceArgs),
    /// The monthly credit-report (征信) history of one loan: one status a month (docs/rules.md §R4).
    ///
    /// Example: arrears credit-history 6f1c2a0e-… --as-of 2024-12-31
    CreditHistory(CreditHistoryArgs),
    /// One loan as a self-contained HTML page: facts, schedule, a chart over time, the penalty
    /// stretches and allocations of `explain`, and the anomalies.
    ///
    /// Example: arrears report 6f1c2a0e-… --as-of 2024-06-30 --html loan.html
    Report(ReportArgs),
    /// Serve the store over HTTP/JSON to many clients (this process owns the store).
    ///
    /// Example: arrears --store book.db serve --listen 127.0.0.1:8080
    ///
    /// POST /events, GET /loans/{id}[/explain|/events|/report], /loans, /portfolio, /verify,
    /// /digest, /health (see docs/serve.md). Stops gracefully on SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct AppendArgs {
    /// The file of JSON lines to read; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    /// Commit every N events as its own atomic batch, streaming (bounded memory for any
    /// input size). The trade: a failure or interruption leaves the earlier batches stored;
    /// the closing line says which input lines are, and `--skip-lines` resumes. By default
    /// the whole input is one all-or-nothing batch (at most 50,000 events).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Skip the first N input lines (resume an interrupted `--batch` run).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip_lines: usize,
    /// Print nothing on success (no stored events, no summary).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct CopyArgs {
    /// The store to read (a sled directory or a postgres:// URL).
    #[arg(long, value_name = "STORE")]
    pub from: String,
    /// The store to create and fill (it must hold no events).
    #[arg(long, value_name = "STORE")]
    pub to: String,
}

/// One loan as of a query: `show` and `explain` (which words its `--json` help its own way).
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub loan: LoanArg,
    #[command(flatten)]
    pub query: Query,
    /// The exact SPEC §7 JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub run: Batch,
    /// Reuse stored snapshots for loans without new events (and refresh stale ones).
    #[arg(long)]
    pub incremental: bool,
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub as_of: AsOf,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Also check the store still extends the state this digest (POSITION-HEX, from
    /// `arrears digest`) covered.
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// How many loans.
    #[arg(long, value_name = "N")]
    pub loans: u64,
    /// The random seed: the same seed gives the same book, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First disbursement date (YYYY-MM-DD).
    #[arg(long, default_value = "2024-01-01", value_name = "DATE", value_parser = date)]
    pub start: Date,
    /// Disbursements spread over this many days; no event is dated later than start + days.
    #[arg(long, default_value_t = 180)]
    pub days: u32,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The file format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    #[command(flatten)]
    pub as_of: AsOf,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Every stored event, envelope included, one row each (parquet or jsonl), in loan_id
    /// then seq order: the input of `arrears project` and of scale/spark_replay.py.
    #[arg(long)]
    pub events: bool,
}

#[derive(Args)]
pub struct ProjectArgs {
    /// Files to read, one after the other; standard input when none (or `-`).
    pub files: Vec<PathBuf>,
    /// The input format: JSON lines, or the events Parquet of `export --events`.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: arrears_cli::project::InputFormat,
    #[command(flatten)]
    pub run: Batch,
    /// Accept stored events in any order, loans interleaved (reads the whole input first).
    #[arg(long)]
    pub any_order: bool,
}

#[derive(Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub loan: LoanArg,
    /// Only events recorded at or before this RFC 3339 time (default: all).
    #[arg(long, value_name = "TIME", value_parser = timestamp)]
    pub known_at: Option<Timestamp>,
    /// JSON lines even on a terminal.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LoansArgs {
    #[command(flatten)]
    pub query: Query,
    /// Collection stage: current, negotiated, settled, grace, reminder, phone,
    /// written_notice, outsourced or legal.
    #[arg(long)]
    pub stage: Option<String>,
    /// DPD bucket: M0 … M7+.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Five-level class: normal, special_mention, substandard, doubtful or loss.
    #[arg(long)]
    pub class: Option<String>,
    /// Days past due at least this.
    #[arg(long, value_name = "N")]
    pub min_dpd: Option<String>,
    /// List at most K loans.
    #[arg(long, value_name = "K")]
    pub limit: Option<String>,
    /// One §7 object per line, exactly as `replay` prints it.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PortfolioArgs {
    #[command(flatten)]
    pub query: Query,
    /// The roll-rate start date D0 (YYYY-MM-DD), before --as-of.
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub vs: Option<Date>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// How many loans to generate.
    #[arg(long, default_value_t = 20_000)]
    pub loans: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args)]
pub struct ReferenceArgs {
    /// The page: events or policy.
    #[arg(value_enum)]
    pub topic: Topic,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ComplianceArgs {
    /// One loan; every loan when absent.
    #[arg(value_parser = uuid)]
    pub loan: Option<Uuid>,
    #[command(flatten)]
    pub as_of: AsOf,
    /// JSON lines, one finding per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CreditHistoryArgs {
    #[command(flatten)]
    pub loan: LoanArg,
    #[command(flatten)]
    pub as_of: AsOf,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub loan: LoanArg,
    #[command(flatten)]
    pub query: Query,
    /// Write the page to this file (standard output when absent).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// HOST:PORT to listen on (port 0 picks a free one; the first line printed names it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(argv: &[&str]) -> Option<String> {
        let e = command().try_get_matches_from(argv).expect_err("refused");
        value_error(&e)
    }

    /// A refused date, time or loan id is named as the commands named it before clap parsed
    /// them; clap's own errors (a bad number, a missing value) are left to clap.
    #[test]
    fn typed_values_are_refused_naming_the_option() {
        let loan = "0f000000-0000-4000-8000-000000000001";
        for (argv, want) in [
            (
                &["arrears", "show", loan, "--as-of", "2024-13-01"][..],
                Some("--as-of: `2024-13-01` is not a date (YYYY-MM-DD)"),
            ),
            (
                &["arrears", "replay", "--known-at", "noon"],
                Some("--known-at: `noon` is not an RFC 3339 timestamp"),
            ),
            (
                &["arrears", "portfolio", "--vs", "May"],
                Some("--vs: `May` is not a date (YYYY-MM-DD)"),
            ),
            (
                &["arrears", "generate", "--loans", "1", "--start", "x"],
                Some("--start: `x` is not a date (YYYY-MM-DD)"),
            ),
            (
                &["arrears", "explain", "nope"],
                Some("LOAN: `nope` is not a UUID"),
            ),
            (
                &["arrears", "compliance", "nope"],
                Some("LOAN: `nope` is not a UUID"),
            ),
            (&["arrears", "--wait", "abc", "digest"], None),
            (&["arrears", "replay", "--jobs", "x"], None),
            (&["arrears", "show", loan, "--as-of"], None),
        ] {
            assert_eq!(refused(argv).as_deref(), want, "{argv:?}");
        }
    }

    /// A global option a command ignores is out of its help, but still accepted before or
    /// after the command's name, its value in `Cli` either way.
    #[test]
    fn ignored_global_options_are_hidden_but_accepted() {
        let mut cli = command();
        cli.build();
        let shown = |sub: &str, id: &str| {
            let sub = cli.find_subcommand(sub).expect("a command");
            let arg = sub.get_arguments().find(|a| a.get_id() == id);
            arg.is_some_and(|a| !a.is_hide_set())
        };
        assert!(!shown("generate", "store") && shown("generate", "policy"));
        assert!(!shown("man", "tz") && !shown("copy", "store") && shown("copy", "wait"));
        assert!(shown("show", "store") && shown("upgrade", "store") && !shown("upgrade", "wait"));
        for argv in [
            &["arrears", "--store", "x.db", "generate", "--loans", "1"][..],
            &["arrears", "generate", "--loans", "1", "--store", "x.db"],
        ] {
            let parsed = Cli::from_arg_matches(&command().try_get_matches_from(argv).unwrap());
            assert_eq!(parsed.unwrap().store, "x.db", "{argv:?}");
        }
    }

    /// Help that teaches: every option and argument of every command says what it is, and every
    /// command that does something shows an example.
    #[test]
    fn every_option_is_described_and_every_command_has_an_example() {
        let cli = command();
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
