//! The application's use cases over a [`Ledger`], shared by the command line (`main.rs` and its
//! `cmd` modules) and the HTTP server (`serve`): the demo, replay to a writer, the `loans`
//! filter, the portfolio and roll rates, the rules' reports, a loan's stored events. The callers
//! only turn arguments into values and results into text; what is computed, and in what order,
//! is decided here.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use arrears_core::Date;
use chrono::Utc;
use uuid::Uuid;

use arrears_core::event::{fmt_timestamp, Event, Timestamp};

use crate::generate::{generate, GenConfig};
use crate::ledger::{AppendOptions, AppendReport, Emit, Failure, Ledger, Summary};
use crate::portfolio::{LoanFilter, Portfolio, PortfolioError, RollRates};
use crate::rules::{CreditHistory, Report};

/// How a long computation shows its progress: the CLI draws bars on a terminal, the server and
/// tests draw nothing ([`Quiet`]).
pub trait Progress: Sync {
    /// Whether anything is drawn (counting the loans first costs a scan: only worth it then).
    fn shown(&self) -> bool;
    /// A new stage of `len` steps (None: not known) called `what`; ends the one before.
    fn stage(&self, what: &str, len: Option<u64>);
    /// Steps done in the current stage.
    fn set(&self, done: u64);
    /// `n` more steps done.
    fn inc(&self, n: u64);
    /// Ends the current stage and clears what was drawn.
    fn finish(&self);
}

/// No progress shown.
pub struct Quiet;

impl Progress for Quiet {
    fn shown(&self) -> bool {
        false
    }
    fn stage(&self, _: &str, _: Option<u64>) {}
    fn set(&self, _: u64) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

/// What `demo` did.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The date the book was replayed to: the end of its disbursement window.
    pub as_of: Date,
    pub summary: Summary,
    /// The replay's wall time.
    pub replay_time: Duration,
    /// A loan to suggest to `show`.
    pub first_loan: Option<Uuid>,
}

/// The demo's book: disbursements from this date over [`DEMO_DAYS`] days.
pub const DEMO_START: Date = match chrono::NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => Date::new(d),
    None => panic!("a valid date"),
};

/// The demo's disbursement window, in days.
pub const DEMO_DAYS: u32 = 180;

/// The demo appends in atomic batches of this many events.
const DEMO_BATCH: usize = 20_000;

impl Ledger {
    /// Where the store lives, for messages (a PostgreSQL password is never shown).
    pub fn describe(&self) -> String {
        self.store().describe()
    }

    /// One loan's stored events (those recorded by `known_at`); an `Input` failure naming the
    /// loan when there are none.
    pub fn stored_events(
        &self,
        loan: Uuid,
        known_at: Option<Timestamp>,
    ) -> Result<Vec<Event>, Failure> {
        let events = self.events(loan, known_at)?;
        if events.is_empty() {
            return Err(Failure::Input(format!(
                "loan {loan} has no stored events{}",
                known_at
                    .map(|t| format!(" recorded by {}", fmt_timestamp(&t)))
                    .unwrap_or_default()
            )));
        }
        Ok(events)
    }

    /// Generate a book of `loans` loans (`seed`), append it in batches, replay it to the end of
    /// its window. `log` receives the lines that say what is happening.
    pub fn demo(
        &self,
        loans: u64,
        seed: u64,
        progress: &dyn Progress,
        log: &mut dyn FnMut(String),
    ) -> Result<DemoOutcome, Failure> {
        let cfg = GenConfig {
            loans,
            seed,
            start: DEMO_START,
            days: DEMO_DAYS,
        };
        let as_of = DEMO_START.add_days(DEMO_DAYS);
        log(format!(
            "demo: generating {loans} loans (seed {seed}) into {}",
            self.describe()
        ));
        let t0 = Instant::now();
        let mut book = Vec::new();
        progress.stage("generated", Some(loans));
        generate(&cfg, &self.policy, &|n| progress.set(n), &mut |l| {
            book.extend_from_slice(l.as_bytes());
            book.push(b'\n');
            Ok(())
        })?;
        progress.finish();
        let t1 = Instant::now();
        progress.stage("appended", None);
        let opts = AppendOptions {
            batch: Some(DEMO_BATCH),
            skip_lines: 0,
            now: Utc::now(),
        };
        let never = AtomicBool::new(false);
        let report: AppendReport = self.append_reader(&book[..], &opts, &never, &mut |d, _| {
            progress.inc(d.new + d.existed);
            Ok(())
        })?;
        progress.finish();
        let t2 = Instant::now();
        log(format!(
            "generated {} events in {:.2}s; appended durably in {:.2}s ({} new, {} already stored)",
            report.events_read,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            report.new,
            report.existed
        ));
        progress.stage("replayed", Some(loans));
        let summary = self.replay_all(
            as_of,
            None,
            false,
            false,
            &|n| progress.set(n),
            &mut |_, _| Ok(()),
        )?;
        progress.finish();
        let replay_time = t2.elapsed();
        Ok(DemoOutcome {
            as_of,
            summary,
            replay_time,
            first_loan: self.first_loan()?,
        })
    }

    /// Every loan's §7 line to `out`, sorted by loan_id, on `jobs` worker threads (None: one per
    /// core); the summary and the wall time. With `incremental`, current snapshots are used
    /// and stale ones refreshed.
    pub fn replay_to(
        &self,
        as_of: Date,
        known_at: Option<Timestamp>,
        incremental: bool,
        jobs: Option<usize>,
        progress: &dyn Progress,
        out: &mut (dyn Write + Send),
    ) -> Result<(Summary, Duration), Failure> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.unwrap_or(0))
            .build()
            .map_err(|e| Failure::Other(e.to_string()))?;
        let started = Instant::now();
        // The loan count is a scan of every head (on PostgreSQL a query over every event):
        // only worth it when progress is shown.
        let total = match progress.shown() {
            true => Some(self.loan_count()?),
            false => None,
        };
        progress.stage("loans", total);
        let summary = pool.install(|| {
            self.replay_all(
                as_of,
                known_at,
                incremental,
                true,
                &|n| progress.set(n),
                &mut |_, json| {
                    out.write_all(json.unwrap_or_default())?;
                    Ok(())
                },
            )
        })?;
        out.flush()?;
        progress.finish();
        Ok((summary, started.elapsed()))
    }

    /// The loans that match `filter` on `as_of`, in loan_id order, each handed to `emit` (with
    /// its §7 line when `with_json`); how many were listed.
    pub fn list_loans(
        &self,
        as_of: Date,
        known_at: Option<Timestamp>,
        filter: &LoanFilter,
        with_json: bool,
        emit: Emit<'_>,
    ) -> Result<usize, Failure> {
        let mut listed = 0usize;
        self.replay_all(
            as_of,
            known_at,
            false,
            with_json,
            &|_| {},
            &mut |p, line| {
                if filter.is_full(listed) || !filter.matches(p) {
                    return Ok(());
                }
                listed += 1;
                emit(p, line)
            },
        )?;
        Ok(listed)
    }

    /// Counts and amounts by stage, bucket and class on `as_of`.
    pub fn portfolio(
        &self,
        as_of: Date,
        known_at: Option<Timestamp>,
    ) -> Result<Portfolio, Failure> {
        let mut pf = Portfolio::new(as_of, known_at, self.policy.name.clone());
        self.replay_all(as_of, known_at, false, false, &|_| {}, &mut |p, _| {
            pf.add(p).map_err(portfolio_failure)
        })?;
        Ok(pf)
    }

    /// Fill an empty roll-rate matrix (its dates are the ones it was made for).
    pub fn roll_rates(&self, mut rr: RollRates) -> Result<RollRates, Failure> {
        let (from, to, known_at) = rr.dates();
        self.replay_pairs(from, to, known_at, &mut |a, b| {
            if let Some(a) = a {
                rr.add(&a, &b).map_err(portfolio_failure)?;
            }
            Ok(())
        })?;
        Ok(rr)
    }

    /// The compliance findings of one loan (an `Input` failure when it is unknown) or of every
    /// loan, on `as_of`.
    pub fn compliance(&self, loan: Option<Uuid>, as_of: Date) -> Result<Report<'_>, Failure> {
        let mut report = Report::new(as_of, &self.policy);
        match loan {
            Some(id) if !report.add(&self.events(id, None)?) => {
                return Err(Failure::Input(format!("loan {id} is unknown")))
            }
            Some(_) => {}
            None => self.store().for_each_stream(&mut |_, evs| {
                report.add(&evs);
                Ok(())
            })?,
        }
        Ok(report)
    }

    /// One loan's monthly credit-report history up to `as_of` (an `Input` failure when the loan
    /// is unknown then).
    pub fn credit_history(&self, loan: Uuid, as_of: Date) -> Result<CreditHistory, Failure> {
        let events = self.events(loan, None)?;
        crate::rules::credit_history(&events, as_of, &self.policy)
            .ok_or_else(|| Failure::Input(format!("loan {loan} is unknown on {as_of}")))
    }
}

/// A portfolio's inconsistency is a bug, not bad input.
fn portfolio_failure(e: PortfolioError) -> Failure {
    Failure::Other(e.to_string())
}
