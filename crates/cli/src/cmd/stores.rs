//! `arrears upgrade` and `arrears copy`: whole stores, converted or copied.

use arrears_cli::ledger::{Failure, Location};

use super::{bar, Ctx};
use crate::args::CopyArgs;

pub fn upgrade(ctx: &Ctx) -> Result<(), Failure> {
    let Location::Sled(dir) = &ctx.location else {
        return Err(Failure::Input(
            "upgrade: only a sled directory has an on-disk format".into(),
        ));
    };
    let done = arrears_store::sled_backend::upgrade(dir)?;
    match &done.kept {
        Some(kept) => println!(
            "upgraded {}: {} loans, {} events; the original is kept at {}",
            dir.display(),
            done.loans,
            done.events,
            kept.display()
        ),
        None => println!(
            "upgraded {} in place: {} loans, {} events; {} segments rewritten, {} snapshots packed into pages",
            dir.display(),
            done.loans,
            done.events,
            done.segments,
            done.snapshots
        ),
    }
    Ok(())
}

pub fn copy(args: CopyArgs, ctx: &Ctx) -> Result<(), Failure> {
    let (from, to) = (Location::parse(&args.from)?, Location::parse(&args.to)?);
    let pb = bar(None, "events copied");
    let done = arrears_cli::copy::copy(&from, &to, ctx.wait, &|n, total| {
        pb.set_length(total);
        pb.set_position(n)
    })?;
    pb.finish_and_clear();
    println!(
        "copied {} loans, {} events and {} snapshots from {} to {}; digest {} on both",
        done.loans, done.events, done.snapshots, done.from, done.to, done.digest
    );
    Ok(())
}
