//! `arrears project`: projections from events with no store (a distributed replay's unit).

use std::io::Write;

use arrears_cli::ledger::Failure;
use arrears_cli::project;

use super::{writer, Ctx};
use crate::args::ProjectArgs;

pub fn run(args: ProjectArgs, ctx: &Ctx) -> Result<(), Failure> {
    let how = project::ProjectArgs {
        as_of: args.run.query.as_of.or_today(&ctx.policy),
        known_at: args.run.query.known_at,
        format: args.format,
        any_order: args.any_order,
        jobs: args.run.jobs,
    };
    let mut w = writer(args.run.out.as_ref())?;
    let report = project::run(&args.files, &how, &ctx.policy, &mut w)?;
    w.flush()?;
    eprintln!("{report}");
    Ok(())
}
