//! `export --format csv`: one flat row per loan, for pandas, polars or DuckDB without code.

use arrears_core::money::fmt_amount;
use arrears_projection::Projection;

/// Column names, in order.
pub const HEADER: [&str; 24] = [
    "loan_id",
    "as_of",
    "version",
    "policy",
    "currency",
    "status",
    "outstanding_principal",
    "outstanding_interest",
    "outstanding_penalty",
    "outstanding_total",
    "overdue_principal",
    "overdue_interest",
    "paid_principal",
    "paid_interest",
    "paid_penalty",
    "waived_penalty",
    "waived_interest",
    "penalty_accrued",
    "overpaid",
    "days_past_due",
    "stage",
    "class",
    "bucket",
    "extensions",
];

/// One row, matching [`HEADER`].
pub fn row(p: &Projection) -> Vec<String> {
    vec![
        p.loan_id.to_string(),
        p.as_of.to_string(),
        p.version.to_string(),
        p.policy.clone(),
        p.currency.clone(),
        p.status.to_owned(),
        fmt_amount(p.outstanding.principal),
        fmt_amount(p.outstanding.interest),
        fmt_amount(p.outstanding.penalty),
        fmt_amount(p.outstanding.total),
        fmt_amount(p.overdue.principal),
        fmt_amount(p.overdue.interest),
        fmt_amount(p.paid.principal),
        fmt_amount(p.paid.interest),
        fmt_amount(p.paid.penalty),
        fmt_amount(p.waived.penalty),
        fmt_amount(p.waived.interest),
        fmt_amount(p.penalty_accrued),
        fmt_amount(p.overpaid),
        p.days_past_due.to_string(),
        p.stage.as_str().to_owned(),
        p.class.to_owned(),
        p.bucket.to_owned(),
        p.extensions.to_string(),
    ]
}

/// `export --events --format jsonl`: every stored event, envelope included, one JSON line each
/// (`Event::to_json`), in `loan_id` then `seq` order — the input `arrears project` reads.
pub fn events_jsonl(
    ledger: &crate::ledger::Ledger,
    out: &mut dyn std::io::Write,
) -> Result<(), crate::ledger::Failure> {
    ledger.map_loans(
        &|_, events| {
            let mut text = String::with_capacity(events.len() * 640);
            for e in &events {
                text.push_str(&e.to_json());
                text.push('\n');
            }
            Some(text)
        },
        &mut |text| Ok(out.write_all(text.as_bytes())?),
    )
}

/// The exports besides CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    /// JSON lines: `replay`'s §7 lines, or with `events` the stored events.
    Jsonl,
    /// Parquet (`crate::parquet_export`).
    Parquet,
}

/// `export --format jsonl|parquet [--events]`: projections as of `as_of`, or every stored event.
/// Parquet is refused when `out` is a terminal.
pub fn write_other(
    ledger: &crate::ledger::Ledger,
    kind: Other,
    events: bool,
    as_of: arrears_core::Date,
    terminal: bool,
    out: &dyn Fn() -> Result<Box<dyn std::io::Write + Send>, crate::ledger::Failure>,
) -> Result<(), crate::ledger::Failure> {
    use crate::parquet_export as pq;
    if kind == Other::Parquet {
        if !pq::AVAILABLE {
            // Said before the output file is created.
            return pq::export_events(ledger, std::io::sink()).map(|_| ());
        }
        if terminal {
            return Err(crate::ledger::Failure::Input(
                "--format parquet: pass --out FILE (Parquet is binary)".into(),
            ));
        }
    }
    let mut out = out()?;
    match (kind, events) {
        (Other::Jsonl, true) => events_jsonl(ledger, &mut out)?,
        (Other::Parquet, true) => out = pq::export_events(ledger, out)?,
        (Other::Jsonl, false) => {
            ledger.replay_all(as_of, None, false, true, &|_| {}, &mut |_, json| {
                out.write_all(json.unwrap_or_default())?;
                Ok(())
            })?;
        }
        (Other::Parquet, false) => out = pq::export_projections(ledger, as_of, out)?,
    }
    Ok(out.flush()?)
}
