//! `arrears serve`: the store over HTTP/JSON (`arrears_cli::serve`).

use arrears_cli::ledger::Failure;

use super::Ctx;
use crate::args::ServeArgs;

pub fn run(args: ServeArgs, ctx: &Ctx) -> Result<(), Failure> {
    arrears_cli::serve::run(ctx.create()?, &args.listen)
}
