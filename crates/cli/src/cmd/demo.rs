//! `arrears demo`: generate, append, replay and summarise a book (`Ledger::demo`).

use arrears_cli::ledger::Failure;
use arrears_cli::render;

use super::{Bars, Ctx};
use crate::args::DemoArgs;

pub fn run(args: DemoArgs, ctx: &Ctx) -> Result<(), Failure> {
    let ledger = ctx.create()?;
    let done = ledger.demo(args.loans, args.seed, &Bars::new(), &mut |line| {
        eprintln!("{line}")
    })?;
    let as_of = done.as_of;
    println!("replay as of {as_of} (policy {})", ctx.policy.describe());
    print!("{}", render::summary_table(&done.summary, done.replay_time));
    println!(
        "\ntry: arrears show {} --as-of {as_of}",
        done.first_loan.map(|l| l.to_string()).unwrap_or_default()
    );
    Ok(())
}
