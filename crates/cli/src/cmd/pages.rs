//! `arrears reference`, `completions` and `man`: pages built into the binary.

use std::io;

use arrears_cli::ledger::Failure;
use arrears_cli::reference;
use arrears_core::Policy;

use crate::args::{self, CompletionsArgs, ReferenceArgs, Topic};

pub fn reference(args: ReferenceArgs) -> Result<(), Failure> {
    let page = match args.topic {
        Topic::Events => reference::EVENTS.to_owned(),
        Topic::Policy => reference::policy_page(&Policy::default()),
    };
    print!("{page}");
    Ok(())
}

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    clap_complete::generate(
        args.shell,
        &mut args::command(),
        "arrears",
        &mut io::stdout(),
    );
    Ok(())
}

pub fn man() -> Result<(), Failure> {
    clap_mangen::Man::new(args::command()).render(&mut io::stdout())?;
    Ok(())
}
