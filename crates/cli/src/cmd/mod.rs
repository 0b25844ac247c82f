//! One module per command. Each takes its parsed arguments and the [`Ctx`] (policy and store
//! location from the global options), calls the application layer (`Ledger`, `app`) and writes
//! the result; a failure is returned, never printed, so `main` prints it once and exits with
//! its code.

mod append;
mod demo;
mod events;
mod export;
mod generate;
mod loans;
mod pages;
mod portfolio;
mod project;
mod replay;
mod report;
mod rules;
mod serve;
mod show;
mod stores;
mod sweep;
mod verify;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use arrears_cli::app::Progress;
use arrears_cli::ledger::{Failure, Ledger, Location};
use arrears_core::Policy;
use arrears_store::Mode;

use crate::args::{Cli, Cmd};

/// What every command gets from the global options: the policy (with `--tz` applied), where
/// the store is, and how long to wait for it.
pub struct Ctx {
    pub policy: Policy,
    pub location: Location,
    pub wait: Option<Duration>,
}

impl Ctx {
    fn new(cli: &Cli) -> Result<Ctx, Failure> {
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
                Duration::try_from_secs_f64(s).map_err(|_| {
                    Failure::Input(format!("--wait: `{s}` is not a number of seconds"))
                })
            })
            .transpose()?;
        Ok(Ctx {
            policy,
            location,
            wait,
        })
    }

    /// The ledger over an existing store (read-only commands never create one).
    pub fn open(&self) -> Result<Ledger, Failure> {
        Ledger::open(
            &self.location,
            Mode::Existing,
            self.wait,
            self.policy.clone(),
        )
    }

    /// The ledger over the store, created when missing (commands that write events).
    pub fn create(&self) -> Result<Ledger, Failure> {
        Ledger::open(&self.location, Mode::Create, self.wait, self.policy.clone())
    }
}

/// Run the command `cli` names.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Ctx::new(&cli)?;
    match cli.cmd {
        Cmd::Append(a) => append::run(a, &ctx),
        Cmd::Upgrade => stores::upgrade(&ctx),
        Cmd::Copy(a) => stores::copy(a, &ctx),
        Cmd::Show(a) => show::show(a, &ctx),
        Cmd::Explain(a) => show::explain(a, &ctx),
        Cmd::Replay(a) => replay::run(a, &ctx),
        Cmd::Sweep(a) => sweep::run(a, &ctx),
        Cmd::Verify(a) => verify::verify(a, &ctx),
        Cmd::Digest => verify::digest(&ctx),
        Cmd::Generate(a) => generate::run(a, &ctx),
        Cmd::Export(a) => export::run(a, &ctx),
        Cmd::Project(a) => project::run(a, &ctx),
        Cmd::Events(a) => events::run(a, &ctx),
        Cmd::Loans(a) => loans::run(a, &ctx),
        Cmd::Portfolio(a) => portfolio::run(a, &ctx),
        Cmd::Demo(a) => demo::run(a, &ctx),
        Cmd::Reference(a) => pages::reference(a),
        Cmd::Completions(a) => pages::completions(a),
        Cmd::Man => pages::man(),
        Cmd::Compliance(a) => rules::compliance(a, &ctx),
        Cmd::CreditHistory(a) => rules::credit_history(a, &ctx),
        Cmd::Report(a) => report::run(a, &ctx),
        Cmd::Serve(a) => serve::run(a, &ctx),
    }
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

/// Standard output, or the file `out` (created), buffered.
pub fn writer(out: Option<&PathBuf>) -> Result<Box<dyn Write + Send>, Failure> {
    Ok(match out {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    })
}

/// A progress bar on standard error when it is a terminal (hidden otherwise): `len` steps, or a
/// spinner when the length is not known.
pub fn bar(len: Option<u64>, what: &str) -> ProgressBar {
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

/// The application's [`Progress`] as bars on standard error, one per stage.
pub struct Bars(Mutex<Option<ProgressBar>>);

impl Bars {
    pub fn new() -> Bars {
        Bars(Mutex::new(None))
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(pb) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(pb)
        }
    }
}

impl Progress for Bars {
    fn shown(&self) -> bool {
        io::stderr().is_terminal()
    }

    fn stage(&self, what: &str, len: Option<u64>) {
        let old = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(bar(len, what));
        if let Some(pb) = old {
            pb.finish_and_clear();
        }
    }

    fn set(&self, done: u64) {
        self.with(|pb| pb.set_position(done))
    }

    fn inc(&self, n: u64) {
        self.with(|pb| pb.inc(n))
    }

    fn finish(&self) {
        self.with(|pb| pb.finish_and_clear())
    }
}

/// No transparent huge pages for this process from now on (decision S10), for the commands
/// whose memory churns: a bulk load and a reprojection from snapshots. A huge page is resident
/// whole however little of it is used, and on a host whose THP mode is `madvise` each fault
/// zeroes 2 MiB and may wait for the kernel to compact memory: a 1M-loan load peaked 40–90 MiB
/// higher with them, a 1M-loan reprojection ran 11 % slower. Replay from events keeps them
/// (~10 % faster with them: its heap is small and hot). Best effort: a kernel without the flag
/// runs as before.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
