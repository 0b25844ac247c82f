//! `arrears verify` and `arrears digest`: the store's audit.

use arrears_cli::ledger::Failure;

use super::Ctx;
use crate::args::VerifyArgs;

pub fn verify(args: VerifyArgs, ctx: &Ctx) -> Result<(), Failure> {
    let ledger = ctx.open()?;
    if let Some(b) = ledger.verify()? {
        return Err(Failure::Other(format!(
            "verify: broken at {}: {}",
            b.at, b.why
        )));
    }
    if let Some(d) = args.digest {
        if let Err(why) = ledger.check_digest(&d)? {
            return Err(Failure::Other(format!(
                "verify: the store does not extend digest {d}: {why}"
            )));
        }
    }
    println!("ok: every chain, seq and head verifies");
    Ok(())
}

pub fn digest(ctx: &Ctx) -> Result<(), Failure> {
    println!("{}", ctx.open()?.digest()?);
    Ok(())
}
