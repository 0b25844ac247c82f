//! Stand-in for `parquet_export` when arrears-cli is built without its `parquet` feature: the
//! same functions, each saying so.

use std::io::Write;
use std::path::Path;

use arrears_core::Date;

use crate::ledger::{Failure, Ledger};

/// This build has no Parquet support.
pub const AVAILABLE: bool = false;

fn off() -> Failure {
    Failure::Other(
        "this arrears was built without Parquet support (cargo feature `parquet` of arrears-cli)"
            .into(),
    )
}

pub fn export_projections<W: Write + Send>(_: &Ledger, _: Date, _: W) -> Result<W, Failure> {
    Err(off())
}

pub fn export_events<W: Write + Send>(_: &Ledger, _: W) -> Result<W, Failure> {
    Err(off())
}

pub fn read_event_json(
    _: &Path,
    _: &mut dyn FnMut(Vec<(usize, String)>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    Err(off())
}
