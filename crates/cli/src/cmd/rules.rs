//! `arrears compliance` and `arrears credit-history`: the lender's rules (docs/rules.md).

use arrears_cli::ledger::Failure;
use arrears_cli::rules::render_credit_history;

use super::Ctx;
use crate::args::{ComplianceArgs, CreditHistoryArgs};

pub fn compliance(args: ComplianceArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.as_of.or_today(&ctx.policy);
    let ledger = ctx.open()?;
    print!("{}", ledger.compliance(args.loan, as_of)?.render(args.json));
    Ok(())
}

pub fn credit_history(args: CreditHistoryArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.as_of.or_today(&ctx.policy);
    let h = ctx.open()?.credit_history(args.loan.loan, as_of)?;
    print!("{}", render_credit_history(&h, args.json));
    Ok(())
}
