//! `arrears events`: a loan's stored events, envelope included.

use std::io::{self, IsTerminal, Write};

use arrears_cli::ledger::Failure;
use arrears_cli::render;

use super::{writer, Ctx};
use crate::args::EventsArgs;

pub fn run(args: EventsArgs, ctx: &Ctx) -> Result<(), Failure> {
    let events = ctx.open()?.stored_events(args.loan.loan, args.known_at)?;
    let mut out = writer(None)?;
    if args.json || !io::stdout().is_terminal() {
        for ev in &events {
            writeln!(out, "{}", ev.to_json())?;
        }
    } else {
        write!(out, "{}", render::events_table(&events))?;
    }
    out.flush()?;
    Ok(())
}
