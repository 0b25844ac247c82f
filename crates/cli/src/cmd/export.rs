//! `arrears export`: the replay table (CSV, JSON lines, Parquet), or every stored event.

use std::io::{self, IsTerminal};

use arrears_cli::export::{self, Other};
use arrears_cli::ledger::Failure;

use super::{writer, Ctx};
use crate::args::{ExportArgs, ExportFormat};

pub fn run(args: ExportArgs, ctx: &Ctx) -> Result<(), Failure> {
    let ExportArgs {
        format,
        as_of,
        out,
        events,
    } = args;
    let kind = match (format, events) {
        (ExportFormat::Csv, false) => return csv(as_of.or_today(&ctx.policy), out, ctx),
        (ExportFormat::Csv, true) => {
            return Err(Failure::Input(
                "--events: use --format parquet or --format jsonl".into(),
            ))
        }
        (ExportFormat::Jsonl, _) => Other::Jsonl,
        (ExportFormat::Parquet, _) => Other::Parquet,
    };
    if events && as_of.given() {
        return Err(Failure::Input(
            "--as-of: export --events writes every stored event; it takes no date".into(),
        ));
    }
    let as_of = as_of.or_today(&ctx.policy);
    let terminal = out.is_none() && io::stdout().is_terminal();
    let w = || writer(out.as_ref());
    export::write_other(&ctx.open()?, kind, events, as_of, terminal, &w)
}

fn csv(
    as_of: arrears_core::Date,
    out: Option<std::path::PathBuf>,
    ctx: &Ctx,
) -> Result<(), Failure> {
    let ledger = ctx.open()?;
    let mut csv = csv::Writer::from_writer(writer(out.as_ref())?);
    let bad = |e: csv::Error| Failure::Other(e.to_string());
    csv.write_record(export::HEADER).map_err(bad)?;
    ledger.replay_all(as_of, None, false, false, &|_| {}, &mut |p, _| {
        csv.write_record(export::row(p)).map_err(bad)
    })?;
    csv.flush()?;
    Ok(())
}
