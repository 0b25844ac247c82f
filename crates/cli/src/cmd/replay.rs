//! `arrears replay`: every loan's §7 line, sorted by loan_id; a summary on standard error.

use arrears_cli::ledger::Failure;
use arrears_cli::render;

use super::{writer, Bars, Ctx};
use crate::args::ReplayArgs;

pub fn run(args: ReplayArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.run.query.as_of.or_today(&ctx.policy);
    if args.incremental {
        super::no_huge_pages();
    }
    let ledger = ctx.open()?;
    let mut w = writer(args.run.out.as_ref())?;
    let (summary, took) = ledger.replay_to(
        as_of,
        args.run.query.known_at,
        args.incremental,
        args.run.jobs,
        &Bars::new(),
        &mut w,
    )?;
    eprint!("{}", render::summary_table(&summary, took));
    Ok(())
}
