//! `arrears show` and `arrears explain`: one loan on a day, as a table or JSON. The two share
//! their plumbing; only what is computed and how it is printed differ.

use arrears_cli::ledger::{Failure, Ledger};
use arrears_cli::render;
use arrears_core::event::Timestamp;
use arrears_core::Date;
use uuid::Uuid;

use super::Ctx;
use crate::args::{LoanArg, Query, ShowArgs};

pub fn show(args: ShowArgs, ctx: &Ctx) -> Result<(), Failure> {
    one_loan(args.loan, args.query, ctx, Ledger::show, |p| {
        match args.json {
            true => Ok(format!("{}\n", p.to_json())),
            false => Ok(render::projection_table(p)),
        }
    })
}

pub fn explain(args: ShowArgs, ctx: &Ctx) -> Result<(), Failure> {
    one_loan(
        args.loan,
        args.query,
        ctx,
        Ledger::explain,
        |e| match args.json {
            true => serde_json::to_string(e)
                .map(|s| s + "\n")
                .map_err(|e| Failure::Other(e.to_string())),
            false => Ok(render::explain_table(e)),
        },
    )
}

/// Resolve the query, open the store, compute one loan's `T` and print it.
fn one_loan<T>(
    loan: LoanArg,
    query: Query,
    ctx: &Ctx,
    compute: fn(&Ledger, Uuid, Date, Option<Timestamp>) -> Result<T, Failure>,
    text: impl FnOnce(&T) -> Result<String, Failure>,
) -> Result<(), Failure> {
    let as_of = query.as_of.or_today(&ctx.policy);
    let found = compute(&ctx.open()?, loan.loan, as_of, query.known_at)?;
    print!("{}", text(&found)?);
    Ok(())
}
