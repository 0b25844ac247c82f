//! `arrears report`: one loan as a self-contained HTML page.

use std::io::Write;

use arrears_cli::ledger::Failure;

use super::{writer, Ctx};
use crate::args::ReportArgs;

pub fn run(args: ReportArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.query.as_of.or_today(&ctx.policy);
    let page =
        arrears_cli::report::for_loan(&ctx.open()?, args.loan.loan, as_of, args.query.known_at)?;
    let mut w = writer(args.html.as_ref())?;
    w.write_all(page.as_bytes())?;
    w.flush()?;
    Ok(())
}
