//! `arrears append`: JSON lines into the store, all or nothing (or in `--batch`es), each stored
//! event echoed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::Utc;

use arrears_cli::exit;
use arrears_cli::ledger::{AppendOptions, Failure};

use super::{bar, writer, Ctx};
use crate::args::AppendArgs;

pub fn run(args: AppendArgs, ctx: &Ctx) -> Result<(), Failure> {
    let AppendArgs {
        file,
        batch,
        skip_lines,
        quiet,
    } = args;
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
                let f =
                    File::open(p).map_err(|e| Failure::Other(format!("{}: {e}", p.display())))?;
                (Box::new(BufReader::new(f)), p.display().to_string())
            }
            None => (
                Box::new(BufReader::new(io::stdin().lock())),
                "standard input".into(),
            ),
        };
    let stop = stop_flag()?;
    bulk_load_memory();
    let ledger = ctx.create()?;
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
                        done.number, done.first_line, done.last_line, done.new, done.existed
                    )
                });
            }
        }
        pb.inc(done.new + done.existed);
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
    Ok(())
}

/// SIGINT and SIGTERM set this flag (a second signal exits at once with 130); `append` stops
/// at the next batch boundary.
fn stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, exit::INTERRUPTED, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| Failure::Other(format!("installing the signal handler: {e}")))?;
    }
    Ok(flag)
}

/// A bulk load's memory (decision S10): sled's cache at [`BULK_CACHE_MB`] unless
/// `ARREARS_CACHE_MB` says otherwise, and no transparent huge pages.
///
/// [`BULK_CACHE_MB`]: arrears_store::sled_backend::BULK_CACHE_MB
fn bulk_load_memory() {
    arrears_store::sled_backend::set_default_cache_mb(arrears_store::sled_backend::BULK_CACHE_MB);
    super::no_huge_pages();
}
