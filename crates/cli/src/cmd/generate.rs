//! `arrears generate`: a deterministic synthetic book as JSON lines.

use std::io::Write;

use arrears_cli::generate::{generate, GenConfig};
use arrears_cli::ledger::Failure;

use super::{bar, writer, Ctx};
use crate::args::GenerateArgs;

pub fn run(args: GenerateArgs, ctx: &Ctx) -> Result<(), Failure> {
    let cfg = GenConfig {
        loans: args.loans,
        seed: args.seed,
        start: args.start,
        days: args.days,
    };
    let pb = bar(Some(args.loans), "loans");
    let mut w = writer(args.out.as_ref())?;
    let stats = generate(&cfg, &ctx.policy, &|n| pb.set_position(n), &mut |line| {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")
    })?;
    w.flush()?;
    pb.finish_and_clear();
    eprintln!("generated {} loans, {} events", stats.loans, stats.events);
    Ok(())
}
