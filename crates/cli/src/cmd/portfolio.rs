//! `arrears portfolio`: the book by stage, bucket and class; with `--vs`, roll rates.

use std::io::Write;

use arrears_cli::ledger::Failure;
use arrears_cli::portfolio::RollRates;

use super::{writer, Ctx};
use crate::args::PortfolioArgs;

pub fn run(args: PortfolioArgs, ctx: &Ctx) -> Result<(), Failure> {
    let as_of = args.query.as_of.or_today(&ctx.policy);
    let known_at = args.query.known_at;
    let text = match args.vs {
        None => {
            let pf = ctx.open()?.portfolio(as_of, known_at)?;
            match args.json {
                true => pf.to_json() + "\n",
                false => pf.render(),
            }
        }
        Some(d0) => {
            let rr = RollRates::new(d0, as_of, known_at)
                .map_err(|e| Failure::Input(format!("--vs: {e}")))?;
            let rr = ctx.open()?.roll_rates(rr)?;
            match args.json {
                true => rr.to_json() + "\n",
                false => rr.render(),
            }
        }
    };
    let mut out = writer(None)?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
