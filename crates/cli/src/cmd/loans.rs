//! `arrears loans`: the loans that match a filter on a day.

use std::io::Write;

use arrears_cli::ledger::Failure;
use arrears_cli::portfolio::{loan_row, loans_header, LoanFilter};

use super::{writer, Ctx};
use crate::args::LoansArgs;

pub fn run(args: LoansArgs, ctx: &Ctx) -> Result<(), Failure> {
    let filter = LoanFilter::parse(
        args.stage.as_deref(),
        args.bucket.as_deref(),
        args.class.as_deref(),
        args.min_dpd.as_deref(),
        args.limit.as_deref(),
    )
    .map_err(|e| Failure::Input(e.to_string()))?;
    let as_of = args.query.as_of.or_today(&ctx.policy);
    let ledger = ctx.open()?;
    let mut out = writer(None)?;
    if !args.json {
        write!(out, "{}", loans_header())?;
    }
    let listed = ledger.list_loans(
        as_of,
        args.query.known_at,
        &filter,
        args.json,
        &mut |p, line| {
            match line {
                Some(l) => out.write_all(l)?,
                None => write!(out, "{}", loan_row(p))?,
            }
            Ok(())
        },
    )?;
    out.flush()?;
    if !args.json {
        eprintln!(
            "{listed} {} as of {as_of}",
            if listed == 1 { "loan" } else { "loans" }
        );
    }
    Ok(())
}
