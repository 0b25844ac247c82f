//! Parquet, the analysts' format: `export --format parquet` (one row per loan),
//! `export --events --format parquet` (one row per stored event, envelope included), and reading
//! the events file back for `arrears project`.
//!
//! Types (docs/scale.md lists every column):
//! - amounts: `DECIMAL(38, 2)` ([`AMOUNT`]); rates (`daily_rate`, `penalty_multiplier`):
//!   `DECIMAL(24, 18)` ([`RATE`]) — the widest rate the parser accepts (6 integer and 18
//!   fractional digits, docs/decisions.md 9–10), so every stored rate is exact;
//! - business dates: `DATE`; `recorded_at`: `TIMESTAMP(MICROS, UTC)`;
//! - ids and hashes: strings (lowercase hyphenated UUIDs, 64 hex digits).
//!
//! The events file also carries `json`, each event exactly as `Event::to_json` writes it, so a
//! reader can rebuild the events losslessly and re-check the hash chain (`project` does).
//!
//! Output is deterministic: the same store gives the same bytes. Rows come in `loan_id`, then
//! `seq` order; the writer's properties are fixed here (Snappy, row groups of
//! [`ROW_GROUP_ROWS`], record batches of [`BATCH_ROWS`], `created_by` = the parquet crate's
//! version string, no timestamps anywhere in the file).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrears_core::money::{Money, Rate};
use arrears_core::Date;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterVersion};
use rust_decimal::Decimal;

use arrears_core::event::{Body, Event, Repayment, Reschedule, Waiver};
use arrears_projection::view::InstallmentStatus;
use arrears_projection::{replay, Projection};

use crate::export::HEADER;
use crate::ledger::{Failure, Ledger};

/// This build writes and reads Parquet (the `parquet` feature is on).
pub const AVAILABLE: bool = true;

/// Rows per record batch handed to the writer.
pub const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group (a reader such as Spark splits its work by row groups).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// `(precision, scale)` of amounts.
pub const AMOUNT: (u8, i8) = (38, 2);
/// `(precision, scale)` of rates.
pub const RATE: (u8, i8) = (24, 18);

fn pq(e: impl std::fmt::Display) -> Failure {
    Failure::Other(format!("parquet: {e}"))
}

fn amount_type() -> DataType {
    DataType::Decimal128(AMOUNT.0, AMOUNT.1)
}

fn rate_type() -> DataType {
    DataType::Decimal128(RATE.0, RATE.1)
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The writer properties every file is written with.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// `d` as an integer of `scale` decimal places, exactly (an error rather than rounding).
fn scaled(d: Decimal, scale: i8, what: &str) -> Result<i128, Failure> {
    let scale = scale as u32;
    let d = if d.scale() > scale { d.normalize() } else { d };
    if d.scale() > scale {
        return Err(Failure::Other(format!(
            "parquet: {what} = {d} has more than {scale} decimal places"
        )));
    }
    Ok(d.mantissa() * 10i128.pow(scale - d.scale()))
}

/// Days since 1970-01-01, as Parquet `DATE` counts them.
fn days(d: Date) -> i32 {
    const EPOCH_CE_DAYS: i32 = 719_163; // NaiveDate::from_ymd(1970, 1, 1).num_days_from_ce()
    arrears_core::date::days_from_ce(d.naive()) - EPOCH_CE_DAYS
}

fn int32(v: u32, what: &str) -> Result<i32, Failure> {
    i32::try_from(v).map_err(|_| Failure::Other(format!("parquet: {what} = {v} exceeds INT32")))
}

fn amount_builder() -> Decimal128Builder {
    Decimal128Builder::new().with_data_type(amount_type())
}

fn rate_builder() -> Decimal128Builder {
    Decimal128Builder::new().with_data_type(rate_type())
}

fn field(name: &str, t: DataType, nullable: bool) -> Field {
    Field::new(name, t, nullable)
}

/// A list column of structs built from flattened children and per-row lengths (None: null row).
fn list_of(item: Fields, children: Vec<ArrayRef>, lengths: &[Option<usize>]) -> ArrayRef {
    let values = StructArray::new(item.clone(), children, None);
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths.iter().map(|l| l.unwrap_or(0)));
    let nulls = lengths
        .iter()
        .any(Option::is_none)
        .then(|| lengths.iter().map(Option::is_some).collect());
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(item), false)),
        offsets,
        Arc::new(values),
        nulls,
    ))
}

fn list_type(item: &Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(item.clone()),
        false,
    )))
}

// ---------------------------------------------------------------------------------------------
// Projections: one row per loan.

/// The columns the CSV export lacks, appended after [`HEADER`]'s.
pub const EXTRA_COLUMNS: [&str; 6] = [
    "broken_promise",
    "disbursed_principal",
    "disbursed_on",
    "next_due_on",
    "next_due_amount",
    "anomalies",
];

fn anomaly_fields() -> Fields {
    Fields::from(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("installment", DataType::Int32, false),
    ])
}

/// The projections file's schema: the CSV columns, typed, then [`EXTRA_COLUMNS`].
pub fn projection_schema() -> SchemaRef {
    let mut fields: Vec<Field> = HEADER
        .iter()
        .map(|&name| {
            let t = match name {
                "loan_id" | "policy" | "currency" | "status" | "stage" | "class" | "bucket" => {
                    DataType::Utf8
                }
                "as_of" => DataType::Date32,
                "version" | "days_past_due" => DataType::Int64,
                "extensions" => DataType::Int32,
                _ => amount_type(),
            };
            field(name, t, false)
        })
        .collect();
    fields.push(field("broken_promise", DataType::Boolean, false));
    fields.push(field("disbursed_principal", amount_type(), false));
    fields.push(field("disbursed_on", DataType::Date32, false));
    fields.push(field("next_due_on", DataType::Date32, true));
    fields.push(field("next_due_amount", amount_type(), true));
    fields.push(field("anomalies", list_type(&anomaly_fields()), false));
    Arc::new(Schema::new(fields))
}

/// The next installment to fall due: the earliest (by due date, then `n`) with something unpaid
/// and a due date on or after the as-of date; its unpaid principal plus interest.
pub fn next_due(p: &Projection) -> Option<(Date, Decimal)> {
    p.installments
        .iter()
        .filter(|i| i.status != InstallmentStatus::Paid && i.due_on >= p.as_of)
        .map(|i| {
            let unpaid = i.principal - i.paid_principal + i.interest - i.paid_interest;
            (i.due_on, i.n, unpaid.decimal())
        })
        .filter(|(_, _, unpaid)| *unpaid > Decimal::ZERO)
        .min_by_key(|(d, n, _)| (*d, *n))
        .map(|(d, _, unpaid)| (d, unpaid))
}

/// A loan's projection with the disbursement facts the §7 object does not carry.
pub struct LoanRow {
    pub projection: Projection,
    pub disbursed_principal: Decimal,
    pub disbursed_on: Date,
}

impl LoanRow {
    /// The row for one loan's stored events, `None` when no disbursement counts (as `replay`).
    pub fn of(events: &[Event], as_of: Date, policy: &arrears_core::Policy) -> Option<LoanRow> {
        let projection = replay(events, as_of, None, policy)?;
        let (disbursed_principal, disbursed_on) = events.iter().find_map(|e| match &e.body {
            Body::Disbursed(d) => Some((d.principal.decimal(), d.on)),
            _ => None,
        })?;
        Some(LoanRow {
            projection,
            disbursed_principal,
            disbursed_on,
        })
    }
}

#[derive(Default)]
struct ProjectionCols {
    rows: Vec<LoanRow>,
}

impl ProjectionCols {
    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch, Failure> {
        let rows = std::mem::take(&mut self.rows);
        let n = rows.len();
        let text = |f: &dyn Fn(&Projection) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| f(&r.projection)),
            ))
        };
        let amount = |f: &dyn Fn(&LoanRow) -> Decimal, what: &str| -> Result<ArrayRef, Failure> {
            let mut b = amount_builder();
            for r in &rows {
                b.append_value(scaled(f(r), AMOUNT.1, what)?);
            }
            Ok(Arc::new(b.finish()))
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(HEADER.len() + EXTRA_COLUMNS.len());
        for name in HEADER {
            let col: ArrayRef = match name {
                "loan_id" => {
                    let mut b = StringBuilder::with_capacity(n, 36 * n);
                    for r in &rows {
                        let mut buf = uuid::Uuid::encode_buffer();
                        b.append_value(
                            r.projection
                                .loan_id
                                .uuid()
                                .hyphenated()
                                .encode_lower(&mut buf),
                        );
                    }
                    Arc::new(b.finish())
                }
                "as_of" => {
                    let mut b = Date32Builder::with_capacity(n);
                    for r in &rows {
                        b.append_value(days(r.projection.as_of));
                    }
                    Arc::new(b.finish())
                }
                "version" => {
                    let mut b = Int64Builder::with_capacity(n);
                    for r in &rows {
                        b.append_value(r.projection.version.get() as i64);
                    }
                    Arc::new(b.finish())
                }
                "days_past_due" => {
                    let mut b = Int64Builder::with_capacity(n);
                    for r in &rows {
                        b.append_value(r.projection.days_past_due);
                    }
                    Arc::new(b.finish())
                }
                "extensions" => {
                    let mut b = Int32Builder::with_capacity(n);
                    for r in &rows {
                        b.append_value(int32(r.projection.extensions, "extensions")?);
                    }
                    Arc::new(b.finish())
                }
                "policy" => text(&|p| &p.policy),
                "currency" => text(&|p| &p.currency),
                "status" => text(&|p| p.status),
                "stage" => text(&|p| p.stage.as_str()),
                "class" => text(&|p| p.class),
                "bucket" => text(&|p| p.bucket),
                "outstanding_principal" => {
                    amount(&|r| r.projection.outstanding.principal.decimal(), name)?
                }
                "outstanding_interest" => {
                    amount(&|r| r.projection.outstanding.interest.decimal(), name)?
                }
                "outstanding_penalty" => {
                    amount(&|r| r.projection.outstanding.penalty.decimal(), name)?
                }
                "outstanding_total" => amount(&|r| r.projection.outstanding.total.decimal(), name)?,
                "overdue_principal" => amount(&|r| r.projection.overdue.principal.decimal(), name)?,
                "overdue_interest" => amount(&|r| r.projection.overdue.interest.decimal(), name)?,
                "paid_principal" => amount(&|r| r.projection.paid.principal.decimal(), name)?,
                "paid_interest" => amount(&|r| r.projection.paid.interest.decimal(), name)?,
                "paid_penalty" => amount(&|r| r.projection.paid.penalty.decimal(), name)?,
                "waived_penalty" => amount(&|r| r.projection.waived.penalty.decimal(), name)?,
                "waived_interest" => amount(&|r| r.projection.waived.interest.decimal(), name)?,
                "penalty_accrued" => amount(&|r| r.projection.penalty_accrued.decimal(), name)?,
                "overpaid" => amount(&|r| r.projection.overpaid.decimal(), name)?,
                other => return Err(pq(format!("no Parquet type for CSV column {other}"))),
            };
            cols.push(col);
        }
        let mut broken = BooleanBuilder::with_capacity(n);
        let mut next_on = Date32Builder::with_capacity(n);
        let mut next_amount = amount_builder();
        let mut disbursed_on = Date32Builder::with_capacity(n);
        let (mut kinds, mut insts, mut lengths) = (
            StringBuilder::new(),
            Int32Builder::new(),
            Vec::with_capacity(n),
        );
        for r in &rows {
            let p = &r.projection;
            broken.append_value(p.broken_promise);
            disbursed_on.append_value(days(r.disbursed_on));
            match next_due(p) {
                Some((d, a)) => {
                    next_on.append_value(days(d));
                    next_amount.append_value(scaled(a, AMOUNT.1, "next_due_amount")?);
                }
                None => {
                    next_on.append_null();
                    next_amount.append_null();
                }
            }
            for a in &p.anomalies {
                kinds.append_value(a.kind.as_str());
                insts.append_value(int32(a.installment, "anomalies.installment")?);
            }
            lengths.push(Some(p.anomalies.len()));
        }
        cols.push(Arc::new(broken.finish()));
        cols.push(amount(&|r| r.disbursed_principal, "disbursed_principal")?);
        cols.push(Arc::new(disbursed_on.finish()));
        cols.push(Arc::new(next_on.finish()));
        cols.push(Arc::new(next_amount.finish()));
        cols.push(list_of(
            anomaly_fields(),
            vec![Arc::new(kinds.finish()), Arc::new(insts.finish())],
            &lengths,
        ));
        RecordBatch::try_new(schema.clone(), cols).map_err(pq)
    }
}

/// `export --format parquet`: every loan's projection as of `as_of`, in `loan_id` order.
pub fn export_projections<W: Write + Send>(
    ledger: &Ledger,
    as_of: Date,
    out: W,
) -> Result<W, Failure> {
    let schema = projection_schema();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties())).map_err(pq)?;
    let mut cols = ProjectionCols::default();
    let policy = &ledger.policy;
    ledger.map_loans(
        &|_, events| LoanRow::of(&events, as_of, policy),
        &mut |row| {
            cols.rows.push(row);
            if cols.rows.len() >= BATCH_ROWS {
                writer.write(&cols.batch(&schema)?).map_err(pq)?;
            }
            Ok(())
        },
    )?;
    if !cols.rows.is_empty() {
        writer.write(&cols.batch(&schema)?).map_err(pq)?;
    }
    writer.into_inner().map_err(pq)
}

// ---------------------------------------------------------------------------------------------
// Events: one row per stored event.

fn schedule_fields() -> Fields {
    Fields::from(vec![
        Field::new("n", DataType::Int32, false),
        Field::new("due_on", DataType::Date32, false),
        Field::new("principal", amount_type(), false),
        Field::new("interest", amount_type(), false),
    ])
}

fn plan_fields() -> Fields {
    Fields::from(vec![
        Field::new("due_on", DataType::Date32, false),
        Field::new("principal", amount_type(), false),
        Field::new("interest", amount_type(), false),
    ])
}

/// The events file's schema: the envelope, the body columns of each kind (null for the other
/// kinds), and `json`.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("event_id", DataType::Utf8, false),
        field("loan_id", DataType::Utf8, false),
        field("seq", DataType::Int64, false),
        field("recorded_at", timestamp_type(), false),
        field("type", DataType::Utf8, false),
        // on / observed_on / agreed_on
        field("business_date", DataType::Date32, false),
        field("prev_hash", DataType::Utf8, false),
        field("hash", DataType::Utf8, false),
        // disbursed
        field("principal", amount_type(), true),
        field("currency", DataType::Utf8, true),
        field("borrower", DataType::Utf8, true),
        field("daily_rate", rate_type(), true),
        field("penalty_multiplier", rate_type(), true),
        field("grace_days", DataType::Int32, true),
        field("compound", DataType::Boolean, true),
        field("repayment_kind", DataType::Utf8, true),
        field("repayment_days", DataType::Int32, true),
        field("repayment_count", DataType::Int32, true),
        field("repayment_method", DataType::Utf8, true),
        field("schedule", list_type(&schedule_fields()), true),
        // payment
        field("amount", amount_type(), true),
        field("reference", DataType::Utf8, true),
        // missed
        field("installment", DataType::Int32, true),
        // negotiated_extension
        field("new_due_on", DataType::Date32, true),
        field("waive_penalty_all", DataType::Boolean, true),
        field("waive_penalty", amount_type(), true),
        field("waive_interest", amount_type(), true),
        field("installments", list_type(&plan_fields()), true),
        // the event exactly as `Event::to_json` writes it
        field("json", DataType::Utf8, false),
    ]))
}

/// Column builders for a batch of event rows.
struct EventCols {
    rows: usize,
    event_id: StringBuilder,
    loan_id: StringBuilder,
    seq: Int64Builder,
    recorded_at: TimestampMicrosecondBuilder,
    kind: StringBuilder,
    business_date: Date32Builder,
    prev_hash: StringBuilder,
    hash: StringBuilder,
    principal: Decimal128Builder,
    currency: StringBuilder,
    borrower: StringBuilder,
    daily_rate: Decimal128Builder,
    penalty_multiplier: Decimal128Builder,
    grace_days: Int32Builder,
    compound: BooleanBuilder,
    repayment_kind: StringBuilder,
    repayment_days: Int32Builder,
    repayment_count: Int32Builder,
    repayment_method: StringBuilder,
    schedule: (
        Int32Builder,
        Date32Builder,
        Decimal128Builder,
        Decimal128Builder,
        Vec<Option<usize>>,
    ),
    amount: Decimal128Builder,
    reference: StringBuilder,
    installment: Int32Builder,
    new_due_on: Date32Builder,
    waive_penalty_all: BooleanBuilder,
    waive_penalty: Decimal128Builder,
    waive_interest: Decimal128Builder,
    plan: (
        Date32Builder,
        Decimal128Builder,
        Decimal128Builder,
        Vec<Option<usize>>,
    ),
    json: StringBuilder,
}

impl EventCols {
    fn new() -> EventCols {
        EventCols {
            rows: 0,
            event_id: StringBuilder::new(),
            loan_id: StringBuilder::new(),
            seq: Int64Builder::new(),
            recorded_at: TimestampMicrosecondBuilder::new().with_data_type(timestamp_type()),
            kind: StringBuilder::new(),
            business_date: Date32Builder::new(),
            prev_hash: StringBuilder::new(),
            hash: StringBuilder::new(),
            principal: amount_builder(),
            currency: StringBuilder::new(),
            borrower: StringBuilder::new(),
            daily_rate: rate_builder(),
            penalty_multiplier: rate_builder(),
            grace_days: Int32Builder::new(),
            compound: BooleanBuilder::new(),
            repayment_kind: StringBuilder::new(),
            repayment_days: Int32Builder::new(),
            repayment_count: Int32Builder::new(),
            repayment_method: StringBuilder::new(),
            schedule: (
                Int32Builder::new(),
                Date32Builder::new(),
                amount_builder(),
                amount_builder(),
                Vec::new(),
            ),
            amount: amount_builder(),
            reference: StringBuilder::new(),
            installment: Int32Builder::new(),
            new_due_on: Date32Builder::new(),
            waive_penalty_all: BooleanBuilder::new(),
            waive_penalty: amount_builder(),
            waive_interest: amount_builder(),
            plan: (
                Date32Builder::new(),
                amount_builder(),
                amount_builder(),
                Vec::new(),
            ),
            json: StringBuilder::new(),
        }
    }

    fn push(&mut self, e: &Event, json: &str) -> Result<(), Failure> {
        let mut buf = uuid::Uuid::encode_buffer();
        self.event_id
            .append_value(e.event_id.uuid().hyphenated().encode_lower(&mut buf));
        self.loan_id
            .append_value(e.loan_id.uuid().hyphenated().encode_lower(&mut buf));
        self.seq.append_value(
            i64::try_from(e.seq.get()).map_err(|_| pq(format!("seq {} exceeds INT64", e.seq)))?,
        );
        self.recorded_at
            .append_value(e.recorded_at.timestamp_micros());
        self.kind.append_value(e.body.kind());
        self.business_date.append_value(days(e.business_date()));
        self.prev_hash
            .append_value(std::str::from_utf8(&e.prev_hash.hex()).expect("hex"));
        self.hash
            .append_value(std::str::from_utf8(&e.hash.hex()).expect("hex"));

        let d = match &e.body {
            Body::Disbursed(d) => Some(d),
            _ => None,
        };
        let amount = |v: Money, what: &str| scaled(v.decimal(), AMOUNT.1, what);
        let rate = |v: Rate, what: &str| scaled(v.decimal(), RATE.1, what);
        match d {
            Some(d) => {
                self.principal
                    .append_value(amount(d.principal, "principal")?);
                self.currency.append_value(&d.currency);
                self.borrower.append_option(d.borrower.as_deref());
                self.daily_rate
                    .append_value(rate(d.terms.daily_rate, "daily_rate")?);
                self.penalty_multiplier
                    .append_value(rate(d.terms.penalty_multiplier, "penalty_multiplier")?);
                self.grace_days
                    .append_value(int32(d.terms.grace_days, "grace_days")?);
                self.compound.append_value(d.terms.compound);
                match &d.terms.repayment {
                    Repayment::Bullet { days } => {
                        self.repayment_kind.append_value("bullet");
                        self.repayment_days
                            .append_value(int32(*days, "repayment_days")?);
                        self.repayment_count.append_null();
                        self.repayment_method.append_null();
                    }
                    Repayment::Installments { count, method } => {
                        self.repayment_kind.append_value("installments");
                        self.repayment_days.append_null();
                        self.repayment_count
                            .append_value(int32(*count, "repayment_count")?);
                        self.repayment_method.append_value(match method {
                            arrears_core::event::Method::EqualInstallment => "equal_installment",
                            arrears_core::event::Method::EqualPrincipal => "equal_principal",
                        });
                    }
                }
                let s = &mut self.schedule;
                for i in &d.schedule {
                    s.0.append_value(int32(i.n, "schedule.n")?);
                    s.1.append_value(days(i.due_on));
                    s.2.append_value(amount(i.principal, "schedule.principal")?);
                    s.3.append_value(amount(i.interest, "schedule.interest")?);
                }
                s.4.push(Some(d.schedule.len()));
            }
            None => {
                self.principal.append_null();
                self.currency.append_null();
                self.borrower.append_null();
                self.daily_rate.append_null();
                self.penalty_multiplier.append_null();
                self.grace_days.append_null();
                self.compound.append_null();
                self.repayment_kind.append_null();
                self.repayment_days.append_null();
                self.repayment_count.append_null();
                self.repayment_method.append_null();
                self.schedule.4.push(None);
            }
        }
        match &e.body {
            Body::Payment(p) => {
                self.amount.append_value(amount(p.amount, "amount")?);
                self.reference.append_option(p.reference.as_deref());
            }
            _ => {
                self.amount.append_null();
                self.reference.append_null();
            }
        }
        match &e.body {
            Body::Missed(m) => self
                .installment
                .append_value(int32(m.installment, "installment")?),
            _ => self.installment.append_null(),
        }
        match &e.body {
            Body::NegotiatedExtension(x) => {
                match &x.waive_penalty {
                    None => {
                        self.waive_penalty_all.append_null();
                        self.waive_penalty.append_null();
                    }
                    Some(Waiver::All) => {
                        self.waive_penalty_all.append_value(true);
                        self.waive_penalty.append_null();
                    }
                    Some(Waiver::Amount(a)) => {
                        self.waive_penalty_all.append_value(false);
                        self.waive_penalty
                            .append_value(amount(*a, "waive_penalty")?);
                    }
                }
                match x.waive_interest {
                    Some(a) => self
                        .waive_interest
                        .append_value(amount(a, "waive_interest")?),
                    None => self.waive_interest.append_null(),
                }
                match &x.reschedule {
                    Reschedule::NewDueOn(d) => {
                        self.new_due_on.append_value(days(*d));
                        self.plan.3.push(None);
                    }
                    Reschedule::Restructure(plan) => {
                        self.new_due_on.append_null();
                        for i in plan {
                            self.plan.0.append_value(days(i.due_on));
                            self.plan
                                .1
                                .append_value(amount(i.principal, "installments.principal")?);
                            self.plan
                                .2
                                .append_value(amount(i.interest, "installments.interest")?);
                        }
                        self.plan.3.push(Some(plan.len()));
                    }
                }
            }
            _ => {
                self.new_due_on.append_null();
                self.waive_penalty_all.append_null();
                self.waive_penalty.append_null();
                self.waive_interest.append_null();
                self.plan.3.push(None);
            }
        }
        self.json.append_value(json);
        self.rows += 1;
        Ok(())
    }

    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch, Failure> {
        let mut s = std::mem::replace(
            &mut self.schedule,
            (
                Int32Builder::new(),
                Date32Builder::new(),
                amount_builder(),
                amount_builder(),
                Vec::new(),
            ),
        );
        let schedule = list_of(
            schedule_fields(),
            vec![
                Arc::new(s.0.finish()),
                Arc::new(s.1.finish()),
                Arc::new(s.2.finish()),
                Arc::new(s.3.finish()),
            ],
            &s.4,
        );
        let mut p = std::mem::replace(
            &mut self.plan,
            (
                Date32Builder::new(),
                amount_builder(),
                amount_builder(),
                Vec::new(),
            ),
        );
        let plan = list_of(
            plan_fields(),
            vec![
                Arc::new(p.0.finish()),
                Arc::new(p.1.finish()),
                Arc::new(p.2.finish()),
            ],
            &p.3,
        );
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.loan_id.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.recorded_at.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.business_date.finish()),
            Arc::new(self.prev_hash.finish()),
            Arc::new(self.hash.finish()),
            Arc::new(self.principal.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.borrower.finish()),
            Arc::new(self.daily_rate.finish()),
            Arc::new(self.penalty_multiplier.finish()),
            Arc::new(self.grace_days.finish()),
            Arc::new(self.compound.finish()),
            Arc::new(self.repayment_kind.finish()),
            Arc::new(self.repayment_days.finish()),
            Arc::new(self.repayment_count.finish()),
            Arc::new(self.repayment_method.finish()),
            schedule,
            Arc::new(self.amount.finish()),
            Arc::new(self.reference.finish()),
            Arc::new(self.installment.finish()),
            Arc::new(self.new_due_on.finish()),
            Arc::new(self.waive_penalty_all.finish()),
            Arc::new(self.waive_penalty.finish()),
            Arc::new(self.waive_interest.finish()),
            plan,
            Arc::new(self.json.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), cols).map_err(pq)
    }
}

/// `export --events --format parquet`: every stored event, in `loan_id` then `seq` order.
pub fn export_events<W: Write + Send>(ledger: &Ledger, out: W) -> Result<W, Failure> {
    let schema = events_schema();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties())).map_err(pq)?;
    let mut cols = EventCols::new();
    ledger.map_loans(
        &|_, events| {
            Some(
                events
                    .into_iter()
                    .map(|e| {
                        let json = e.to_json();
                        (e, json)
                    })
                    .collect::<Vec<_>>(),
            )
        },
        &mut |events| {
            for (e, json) in &events {
                cols.push(e, json)?;
                if cols.rows >= BATCH_ROWS {
                    writer.write(&cols.batch(&schema)?).map_err(pq)?;
                }
            }
            Ok(())
        },
    )?;
    if cols.rows > 0 {
        writer.write(&cols.batch(&schema)?).map_err(pq)?;
    }
    writer.into_inner().map_err(pq)
}

// ---------------------------------------------------------------------------------------------
// Reading the events file back.

/// Read the `json` column of an events Parquet file (as `export --events --format parquet`
/// writes it) in row order, handing `each` batches of (row number from 1, json).
pub fn read_event_json(
    path: &Path,
    each: &mut dyn FnMut(Vec<(usize, String)>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| Failure::Other(format!("{name}: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Failure::Input(format!("{name}: not a Parquet file ({e})")))?;
    let schema = builder.parquet_schema();
    let Some(index) =
        (0..schema.num_columns()).find(|&i| schema.column(i).path().string() == "json")
    else {
        return Err(Failure::Input(format!(
            "{name}: no `json` column: not an events file written by `arrears export --events --format parquet`"
        )));
    };
    let mask = ProjectionMask::leaves(schema, [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(pq)?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| Failure::Other(format!("{name}: {e}")))?;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Failure::Input(format!("{name}: the `json` column is not text")))?;
        let mut out = Vec::with_capacity(col.len());
        for i in 0..col.len() {
            row += 1;
            if col.is_null(i) {
                return Err(Failure::Input(format!("{name}: row {row}: json: is null")));
            }
            out.push((row, col.value(i).to_owned()));
        }
        each(out)?;
    }
    Ok(())
}
