//! `arrears sweep`: the end-of-day job recording every unrecorded miss.

use std::io::Write;

use chrono::Utc;

use arrears_cli::ledger::Failure;

use super::{writer, Ctx};
use crate::args::SweepArgs;

pub fn run(args: SweepArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.as_of.or_today(&ctx.policy);
    let stored = ctx.open()?.sweep(as_of, Utc::now())?;
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
    Ok(())
}
