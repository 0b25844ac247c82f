//! `arrears`: the command line. Parse the arguments (`args`), run the command (`cmd`), print
//! the error if any and exit with its code: 0 success, 1 failure, 2 rejected input, 130
//! interrupted.

mod args;
mod cmd;

use arrears_cli::exit;
use arrears_cli::ledger::Failure;

// The projection allocates many small, short-lived objects per loan; mimalloc handles that
// pattern markedly better than glibc malloc (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match args::parse() {
        Ok(cli) => cli,
        Err(e) => match args::value_error(&e) {
            Some(why) => fail(&Failure::Input(why)),
            // --help, --version, and usage errors: clap prints them (exit 0 or 2).
            None => e.exit(),
        },
    };
    if let Err(e) = cmd::run(cli) {
        fail(&e)
    }
    std::process::exit(exit::SUCCESS)
}

fn fail(e: &Failure) -> ! {
    // A closed pipe (e.g. `| head`) is not an error worth a message.
    if !matches!(e, Failure::BrokenPipe) {
        eprintln!("arrears: {e}");
    }
    std::process::exit(e.exit_code())
}
