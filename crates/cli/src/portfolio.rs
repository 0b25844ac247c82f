//! Portfolio summaries over already-computed projections (SPEC §10): the portfolio as of D, roll
//! rates from D0 to D, and the filter and table of `arrears loans`.
//!
//! Pure: everything here is computed from [`Projection`]s the caller has already replayed. No
//! store, no clock, no I/O. Money is `Decimal` throughout; the only rounding is the 4-place
//! roll rate of SPEC §10 ([`roll_rate`]). Stage, bucket and class names and their order come from
//! [`arrears_projection::stage`] ([`Stage::ALL`], [`BUCKETS`], [`CLASSES`]).
//!
//! **Which loans count.** A projection as of D exists only for a loan whose `disbursed` event is
//! dated on or before D (and known at `known_at`): `arrears_projection::replay` returns `None`
//! otherwise. So "loans disbursed on or before D" is exactly "loans that have a projection as of
//! D", and the summaries take the projections alone; they check that every projection is as of
//! the date (and known-at time) they summarise.

use std::fmt::Write;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::{fmt_timestamp, Date, Timestamp};
use arrears_core::money::fmt_amount;
use arrears_projection::stage::{BUCKETS, CLASSES};
use arrears_projection::view::Outstanding;
use arrears_projection::{Projection, Stage};

/// Why a projection cannot be added to a summary, or a summary cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortfolioError {
    /// The projection is as of another day than the summary (or the roll-rate end it belongs to).
    #[error("loan {loan}: projected as of {got}, but the {what} is as of {want}")]
    AsOf {
        loan: Uuid,
        what: &'static str,
        got: Date,
        want: Date,
    },
    /// The projection was computed with another `known_at`.
    #[error("loan {loan}: projected as known at {got}, but the {what} is as known at {want}")]
    KnownAt {
        loan: Uuid,
        what: &'static str,
        got: String,
        want: String,
    },
    /// The projection was computed under another policy.
    #[error("loan {loan}: projected under policy `{got}`, but the portfolio is under `{want}`")]
    Policy {
        loan: Uuid,
        got: String,
        want: String,
    },
    /// Amounts in different currencies are never added up.
    #[error(
        "loan {loan} is in {got}, the loans before it in {want}: amounts in different currencies are not added up"
    )]
    Currency {
        loan: Uuid,
        got: String,
        want: String,
    },
    /// A roll-rate pair whose two projections are of different loans.
    #[error("roll rates: loan {from} at the start is paired with loan {to} at the end")]
    Pair { from: Uuid, to: Uuid },
    /// Roll rates need D0 < D (SPEC §10).
    #[error("roll rates: the start {from} (--vs) must be before the end {to} (--as-of)")]
    Order { from: Date, to: Date },
    /// A projection with a bucket or class name this build does not know.
    #[error("loan {loan}: unknown {what} `{name}`")]
    Unknown {
        loan: Uuid,
        what: &'static str,
        name: String,
    },
}

fn fmt_known_at(t: Option<Timestamp>) -> String {
    t.map(|t| fmt_timestamp(&t))
        .unwrap_or_else(|| "now (latest)".into())
}

/// ` as known at T` for a table's title, or nothing.
fn known_at_suffix(known_at: Option<Timestamp>) -> String {
    known_at
        .map(|t| format!(" as known at {}", fmt_timestamp(&t)))
        .unwrap_or_default()
}

fn stage_index(s: Stage) -> usize {
    Stage::ALL
        .iter()
        .position(|x| *x == s)
        .expect("Stage::ALL lists every stage")
}

fn bucket_index(p: &Projection) -> Result<usize, PortfolioError> {
    BUCKETS
        .iter()
        .position(|b| *b == p.bucket)
        .ok_or_else(|| PortfolioError::Unknown {
            loan: p.loan_id.uuid(),
            what: "bucket",
            name: p.bucket.into(),
        })
}

fn class_index(p: &Projection) -> Result<usize, PortfolioError> {
    CLASSES
        .iter()
        .position(|c| *c == p.class)
        .ok_or_else(|| PortfolioError::Unknown {
            loan: p.loan_id.uuid(),
            what: "class",
            name: p.class.into(),
        })
}

/// Serialize an amount as a JSON string with exactly two decimals.
struct Amt(Decimal);

impl Serialize for Amt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        arrears_core::money::amount_str::serialize(&self.0, s)
    }
}

// ---------------------------------------------------------------------------------------------
// Portfolio
// ---------------------------------------------------------------------------------------------

/// A loan count and the sums of the loans' `outstanding` amounts (exact, unrounded sums of
/// 2-place amounts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub loans: u64,
    pub principal: Decimal,
    pub interest: Decimal,
    pub penalty: Decimal,
    pub total: Decimal,
}

impl Sums {
    fn add(&mut self, o: &Outstanding) {
        self.loans += 1;
        self.principal += o.principal.decimal();
        self.interest += o.interest.decimal();
        self.penalty += o.penalty.decimal();
        self.total += o.total.decimal();
    }

    fn serialize_group<S: Serializer>(
        &self,
        key: &'static str,
        name: &str,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry(key, name)?;
        m.serialize_entry("loans", &self.loans)?;
        m.serialize_entry("principal", &Amt(self.principal))?;
        m.serialize_entry("interest", &Amt(self.interest))?;
        m.serialize_entry("penalty", &Amt(self.penalty))?;
        m.serialize_entry("total", &Amt(self.total))?;
        m.end()
    }
}

/// One grouping of a portfolio for output: its JSON key (`by_stage`), the key naming each group
/// (`stage`), and the non-empty groups in order.
struct Grouping<'a> {
    name: &'static str,
    key: &'static str,
    groups: Vec<(&'static str, &'a Sums)>,
}

/// The portfolio as of D (SPEC §10): every loan disbursed on or before D, grouped by stage, by
/// bucket and by class, each group with its loan count and the sums of `outstanding.principal`,
/// `.interest`, `.penalty` and `.total`. Settled loans count (stage `settled`, amounts 0).
///
/// **Groups listed:** only groups with at least one loan, in the fixed order of
/// [`Stage::ALL`] (current, negotiated, settled, grace, reminder, phone, written_notice,
/// outsourced, legal), [`BUCKETS`] (M0 … M7+) and [`CLASSES`] (normal … loss). The same rule holds
/// for the JSON and the text table. Every grouping partitions the loans, so each grouping's
/// counts and sums add up to [`Portfolio::totals`].
///
/// Built incrementally with [`Portfolio::add`]; all loans must share one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portfolio {
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: String,
    currency: Option<String>,
    totals: Sums,
    stages: [Sums; Stage::ALL.len()],
    buckets: [Sums; BUCKETS.len()],
    classes: [Sums; CLASSES.len()],
}

impl Portfolio {
    /// An empty portfolio as of `as_of` (as known at `known_at`) under the policy named `policy`.
    pub fn new(as_of: Date, known_at: Option<Timestamp>, policy: impl Into<String>) -> Portfolio {
        Portfolio {
            as_of,
            known_at,
            policy: policy.into(),
            currency: None,
            totals: Sums::default(),
            stages: Default::default(),
            buckets: Default::default(),
            classes: Default::default(),
        }
    }

    /// Count one loan. `p` must be the loan's projection as of this portfolio's date, known-at
    /// time and policy (a projection as of D exists only for a loan disbursed on or before D),
    /// and in the currency of the loans added before it. On error nothing is counted.
    pub fn add(&mut self, p: &Projection) -> Result<(), PortfolioError> {
        if p.as_of != self.as_of {
            return Err(PortfolioError::AsOf {
                loan: p.loan_id.uuid(),
                what: "portfolio",
                got: p.as_of,
                want: self.as_of,
            });
        }
        if p.known_at != self.known_at {
            return Err(PortfolioError::KnownAt {
                loan: p.loan_id.uuid(),
                what: "portfolio",
                got: fmt_known_at(p.known_at),
                want: fmt_known_at(self.known_at),
            });
        }
        if p.policy != self.policy {
            return Err(PortfolioError::Policy {
                loan: p.loan_id.uuid(),
                got: p.policy.clone(),
                want: self.policy.clone(),
            });
        }
        if let Some(c) = &self.currency {
            if *c != p.currency {
                return Err(PortfolioError::Currency {
                    loan: p.loan_id.uuid(),
                    got: p.currency.clone(),
                    want: c.clone(),
                });
            }
        }
        let b = bucket_index(p)?;
        let c = class_index(p)?;
        if self.currency.is_none() {
            self.currency = Some(p.currency.clone());
        }
        let o = &p.outstanding;
        self.totals.add(o);
        self.stages[stage_index(p.stage)].add(o);
        self.buckets[b].add(o);
        self.classes[c].add(o);
        Ok(())
    }

    pub fn as_of(&self) -> Date {
        self.as_of
    }

    pub fn known_at(&self) -> Option<Timestamp> {
        self.known_at
    }

    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The loans' currency; `None` while the portfolio is empty.
    pub fn currency(&self) -> Option<&str> {
        self.currency.as_deref()
    }

    /// The number of loans counted.
    pub fn loans(&self) -> u64 {
        self.totals.loans
    }

    /// The sums over all loans.
    pub fn totals(&self) -> &Sums {
        &self.totals
    }

    /// Stages with at least one loan, in [`Stage::ALL`] order.
    pub fn by_stage(&self) -> impl Iterator<Item = (Stage, &Sums)> + '_ {
        Stage::ALL
            .into_iter()
            .zip(&self.stages)
            .filter(|(_, s)| s.loans > 0)
    }

    /// Buckets with at least one loan, `M0` … `M7+`.
    pub fn by_bucket(&self) -> impl Iterator<Item = (&'static str, &Sums)> + '_ {
        BUCKETS
            .into_iter()
            .zip(&self.buckets)
            .filter(|(_, s)| s.loans > 0)
    }

    /// Classes with at least one loan, `normal` … `loss`.
    pub fn by_class(&self) -> impl Iterator<Item = (&'static str, &Sums)> + '_ {
        CLASSES
            .into_iter()
            .zip(&self.classes)
            .filter(|(_, s)| s.loans > 0)
    }

    /// The three groupings, for output.
    fn groupings(&self) -> [Grouping<'_>; 3] {
        [
            Grouping {
                name: "by_stage",
                key: "stage",
                groups: self.by_stage().map(|(s, g)| (s.as_str(), g)).collect(),
            },
            Grouping {
                name: "by_bucket",
                key: "bucket",
                groups: self.by_bucket().collect(),
            },
            Grouping {
                name: "by_class",
                key: "class",
                groups: self.by_class().collect(),
            },
        ]
    }

    /// One JSON object, keys in this order, amounts as strings with 2 decimals:
    ///
    /// ```text
    /// {"as_of":"2024-02-10","known_at":null,"policy":"default-v1","currency":"CNY","loans":5,
    ///  "totals":{"principal":"…","interest":"…","penalty":"…","total":"…"},
    ///  "by_stage":[{"stage":"current","loans":1,"principal":"…","interest":"…","penalty":"…","total":"…"},…],
    ///  "by_bucket":[{"bucket":"M0","loans":3,…},…],
    ///  "by_class":[{"class":"normal","loans":2,…},…]}
    /// ```
    /// `known_at` is echoed as in SPEC §7; `currency` is `null` for an empty portfolio.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("portfolios always serialise")
    }

    /// A readable table: one block per grouping, each closed by its total line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let known = known_at_suffix(self.known_at);
        let _ = writeln!(
            s,
            "portfolio as of {}{}  (policy {})",
            self.as_of, known, self.policy
        );
        if self.loans() == 0 {
            let _ = writeln!(s, "no loans disbursed on or before {}", self.as_of);
            return s;
        }
        let _ = writeln!(
            s,
            "{} loans, amounts outstanding in {}",
            self.loans(),
            self.currency.as_deref().unwrap_or("-")
        );
        let line = |s: &mut String, name: &str, g: &Sums| {
            let share = if self.totals.loans > 0 {
                100.0 * g.loans as f64 / self.totals.loans as f64
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "{:<16}{:>9}{:>8.1}%{:>18}{:>16}{:>14}{:>18}",
                name,
                g.loans,
                share,
                fmt_amount(g.principal),
                fmt_amount(g.interest),
                fmt_amount(g.penalty),
                fmt_amount(g.total)
            );
        };
        for g in self.groupings() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<16}{:>9}{:>9}{:>18}{:>16}{:>14}{:>18}",
                g.name.replace('_', " "),
                "loans",
                "share",
                "principal",
                "interest",
                "penalty",
                "total"
            );
            for (name, sums) in g.groups {
                line(&mut s, name, sums);
            }
            line(&mut s, "all loans", &self.totals);
        }
        s
    }
}

impl Serialize for Portfolio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Totals<'a>(&'a Sums);
        impl Serialize for Totals<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("principal", &Amt(self.0.principal))?;
                m.serialize_entry("interest", &Amt(self.0.interest))?;
                m.serialize_entry("penalty", &Amt(self.0.penalty))?;
                m.serialize_entry("total", &Amt(self.0.total))?;
                m.end()
            }
        }
        struct Group<'a>(&'static str, &'static str, &'a Sums);
        impl Serialize for Group<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.2.serialize_group(self.0, self.1, s)
            }
        }
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("as_of", &self.as_of)?;
        m.serialize_entry("known_at", &self.known_at.map(|t| fmt_timestamp(&t)))?;
        m.serialize_entry("policy", &self.policy)?;
        m.serialize_entry("currency", &self.currency)?;
        m.serialize_entry("loans", &self.totals.loans)?;
        m.serialize_entry("totals", &Totals(&self.totals))?;
        for g in self.groupings() {
            let v: Vec<Group> = g.groups.iter().map(|(n, s)| Group(g.key, n, s)).collect();
            m.serialize_entry(g.name, &v)?;
        }
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Roll rates
// ---------------------------------------------------------------------------------------------

/// The roll-rate column of loans settled at D.
pub const SETTLED: &str = "settled";

const COLUMNS: usize = BUCKETS.len() + 1;

/// The name of roll-rate column `j`: the buckets, then [`SETTLED`].
fn column_name(j: usize) -> &'static str {
    BUCKETS.get(j).copied().unwrap_or(SETTLED)
}

/// `part / whole` rounded half away from zero to 4 places, scale exactly 4 (`"0.0313"` for
/// 1/32); `0.0000` when `whole` is zero (SPEC §10: "0 when the row is empty").
pub fn roll_rate(part: Decimal, whole: Decimal) -> Decimal {
    let mut r = if whole.is_zero() {
        Decimal::ZERO
    } else {
        (part / whole).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
    };
    r.rescale(4);
    r
}

/// One cell of the roll-rate matrix: the loans in bucket b0 at D0 that are in column b1 at D.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollCell {
    /// The column: a bucket at D, or [`SETTLED`].
    pub column: &'static str,
    pub count: u64,
    /// Σ `outstanding.principal` **at D0**.
    pub principal: Decimal,
    /// `principal / row principal`, 4 places ([`roll_rate`]).
    pub rate: Decimal,
}

/// One row: the loans in one bucket at D0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollRow {
    pub bucket: &'static str,
    pub count: u64,
    /// Σ `outstanding.principal` at D0 over the row (= Σ of its cells).
    pub principal: Decimal,
    /// Every column, in order `M0` … `M7+`, `settled`.
    pub to: Vec<RollCell>,
}

/// Roll rates from D0 to D (SPEC §10) over the loans disbursed on or before D0 and not settled
/// at D0.
///
/// **Rows and columns:** rows are the buckets with at least one loan at D0, in bucket order (a
/// row whose loans have no principal left at D0 is listed, with every rate `0.0000`); columns are
/// always all of `M0` … `M7+` and `settled`, so the matrix is rectangular. A loan settled at D is
/// in the `settled` column, never in `M0`. Rates are each rounded on their own, so a row's rates
/// may add up to 0.9999 or 1.0001.
///
/// Buckets and settlement depend on DPD and amounts only, not on the policy, so the output names
/// no policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollRates {
    from: Date,
    to: Date,
    known_at: Option<Timestamp>,
    currency: Option<String>,
    settled_at_start: u64,
    cells: [[(u64, Decimal); COLUMNS]; BUCKETS.len()],
}

impl RollRates {
    /// An empty matrix from `from` (D0) to `to` (D), both read as known at `known_at`.
    /// `from` must be before `to`.
    pub fn new(
        from: Date,
        to: Date,
        known_at: Option<Timestamp>,
    ) -> Result<RollRates, PortfolioError> {
        if from >= to {
            return Err(PortfolioError::Order { from, to });
        }
        Ok(RollRates {
            from,
            to,
            known_at,
            currency: None,
            settled_at_start: 0,
            cells: [[(0, Decimal::ZERO); COLUMNS]; BUCKETS.len()],
        })
    }

    /// The dates it is for: D0, D, and what was known.
    pub fn dates(&self) -> (Date, Date, Option<Timestamp>) {
        (self.from, self.to, self.known_at)
    }

    /// Add one loan: its projection as of D0 and as of D. Call it for every loan that has a
    /// projection as of D0 (those are the loans disbursed on or before D0). Returns whether the
    /// loan counted: `false` when it is settled at D0 (left out by SPEC §10). On error nothing is
    /// counted.
    pub fn add(
        &mut self,
        at_from: &Projection,
        at_to: &Projection,
    ) -> Result<bool, PortfolioError> {
        if at_from.loan_id != at_to.loan_id {
            return Err(PortfolioError::Pair {
                from: at_from.loan_id.uuid(),
                to: at_to.loan_id.uuid(),
            });
        }
        for (p, want, what) in [
            (at_from, self.from, "roll-rate start"),
            (at_to, self.to, "roll-rate end"),
        ] {
            if p.as_of != want {
                return Err(PortfolioError::AsOf {
                    loan: p.loan_id.uuid(),
                    what,
                    got: p.as_of,
                    want,
                });
            }
            if p.known_at != self.known_at {
                return Err(PortfolioError::KnownAt {
                    loan: p.loan_id.uuid(),
                    what,
                    got: fmt_known_at(p.known_at),
                    want: fmt_known_at(self.known_at),
                });
            }
        }
        if at_from.stage == Stage::Settled {
            self.settled_at_start += 1;
            return Ok(false);
        }
        if let Some(c) = &self.currency {
            if *c != at_from.currency {
                return Err(PortfolioError::Currency {
                    loan: at_from.loan_id.uuid(),
                    got: at_from.currency.clone(),
                    want: c.clone(),
                });
            }
        }
        let row = bucket_index(at_from)?;
        let col = if at_to.stage == Stage::Settled {
            BUCKETS.len()
        } else {
            bucket_index(at_to)?
        };
        if self.currency.is_none() {
            self.currency = Some(at_from.currency.clone());
        }
        let cell = &mut self.cells[row][col];
        cell.0 += 1;
        cell.1 += at_from.outstanding.principal.decimal();
        Ok(true)
    }

    pub fn from(&self) -> Date {
        self.from
    }

    pub fn to(&self) -> Date {
        self.to
    }

    /// The loans counted (not settled at D0).
    pub fn loans(&self) -> u64 {
        self.cells.iter().flatten().map(|c| c.0).sum()
    }

    /// The loans left out because they were settled at D0.
    pub fn settled_at_start(&self) -> u64 {
        self.settled_at_start
    }

    /// The column names, in order: `M0` … `M7+`, `settled`.
    pub fn columns() -> impl Iterator<Item = &'static str> {
        (0..COLUMNS).map(column_name)
    }

    /// The rows with at least one loan, in bucket order, each with every column.
    pub fn rows(&self) -> Vec<RollRow> {
        BUCKETS
            .iter()
            .zip(&self.cells)
            .filter_map(|(bucket, cells)| {
                let count: u64 = cells.iter().map(|c| c.0).sum();
                if count == 0 {
                    return None;
                }
                let principal: Decimal = cells.iter().map(|c| c.1).sum();
                let to = cells
                    .iter()
                    .enumerate()
                    .map(|(j, &(count, p))| RollCell {
                        column: column_name(j),
                        count,
                        principal: p,
                        rate: roll_rate(p, principal),
                    })
                    .collect();
                Some(RollRow {
                    bucket,
                    count,
                    principal,
                    to,
                })
            })
            .collect()
    }

    /// SPEC §10's object, keys in this order, amounts with 2 decimals and rates with exactly 4:
    ///
    /// ```text
    /// {"from":"2024-02-10","to":"2024-03-10","rows":[{"bucket":"M0","principal":"3600.00",
    ///  "to":{"M0":{"count":0,"principal":"0.00","rate":"0.0000"},"M1":{"count":2,
    ///  "principal":"1600.00","rate":"0.4444"},…,"settled":{"count":1,"principal":"2000.00",
    ///  "rate":"0.5556"}}},…]}
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("roll rates always serialise")
    }

    /// A readable matrix: per row its loans and principal at D0, then each column's share of the
    /// row's principal as a percentage (`-` where no loan moved).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let known = known_at_suffix(self.known_at);
        let _ = writeln!(
            s,
            "roll rates from {} to {}{}  (share of principal outstanding at {})",
            self.from, self.to, known, self.from
        );
        let _ = writeln!(
            s,
            "{} loans not settled at {}{}{}",
            self.loans(),
            self.from,
            self.currency
                .as_deref()
                .map(|c| format!(", amounts in {c}"))
                .unwrap_or_default(),
            if self.settled_at_start > 0 {
                format!(
                    "; {} settled at {} left out",
                    self.settled_at_start, self.from
                )
            } else {
                String::new()
            }
        );
        let rows = self.rows();
        if rows.is_empty() {
            return s;
        }
        let _ = writeln!(s);
        let _ = write!(s, "{:<6}{:>9}{:>18}", "from", "loans", "principal");
        for c in Self::columns() {
            let _ = write!(s, "{:>9}", c);
        }
        let _ = writeln!(s);
        for r in &rows {
            let _ = write!(
                s,
                "{:<6}{:>9}{:>18}",
                r.bucket,
                r.count,
                fmt_amount(r.principal)
            );
            for c in &r.to {
                let cell = if c.count == 0 {
                    "-".to_owned()
                } else {
                    // Display only: the exact 4-place rate as a percentage with 2 places.
                    let mut pct = c.rate * Decimal::ONE_HUNDRED;
                    pct.rescale(2);
                    format!("{pct}%")
                };
                let _ = write!(s, "{cell:>9}");
            }
            let _ = writeln!(s);
        }
        s
    }
}

impl Serialize for RollRates {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Cell<'a>(&'a RollCell);
        impl Serialize for Cell<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("count", &self.0.count)?;
                m.serialize_entry("principal", &Amt(self.0.principal))?;
                m.serialize_entry("rate", &self.0.rate.to_string())?;
                m.end()
            }
        }
        struct To<'a>(&'a [RollCell]);
        impl Serialize for To<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for c in self.0 {
                    m.serialize_entry(c.column, &Cell(c))?;
                }
                m.end()
            }
        }
        struct Row<'a>(&'a RollRow);
        impl Serialize for Row<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("bucket", self.0.bucket)?;
                m.serialize_entry("principal", &Amt(self.0.principal))?;
                m.serialize_entry("to", &To(&self.0.to))?;
                m.end()
            }
        }
        let rows = self.rows();
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("from", &self.from)?;
        m.serialize_entry("to", &self.to)?;
        m.serialize_entry("rows", &rows.iter().map(Row).collect::<Vec<_>>())?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// `arrears loans`: filter and table
// ---------------------------------------------------------------------------------------------

/// A rejected `loans` option: `--stage: \`foo\` is not a stage (one of current, …)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: `{value}` {why}")]
pub struct FilterError {
    /// The option as typed on the command line (`--stage`).
    pub option: &'static str,
    pub value: String,
    pub why: String,
}

fn one_of<'a>(
    option: &'static str,
    what: &str,
    value: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> FilterError {
    FilterError {
        option,
        value: value.into(),
        why: format!(
            "is not a {what} (one of {})",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `--stage`: a stage name as in the projection (`written_notice`), ASCII case ignored.
pub fn parse_stage(s: &str) -> Result<Stage, FilterError> {
    Stage::ALL
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| one_of("--stage", "stage", s, Stage::ALL.map(Stage::as_str)))
}

/// `--bucket`: `M0` … `M7+`, ASCII case ignored (`m2` is `M2`).
pub fn parse_bucket(s: &str) -> Result<&'static str, FilterError> {
    BUCKETS
        .into_iter()
        .find(|b| b.eq_ignore_ascii_case(s))
        .ok_or_else(|| one_of("--bucket", "bucket", s, BUCKETS))
}

/// `--class`: `normal` … `loss`, ASCII case ignored.
pub fn parse_class(s: &str) -> Result<&'static str, FilterError> {
    CLASSES
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(s))
        .ok_or_else(|| one_of("--class", "class", s, CLASSES))
}

/// `--min-dpd`: a number of days, at least 0.
pub fn parse_min_dpd(s: &str) -> Result<i64, FilterError> {
    let bad = |why: &str| FilterError {
        option: "--min-dpd",
        value: s.into(),
        why: why.into(),
    };
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(_) => Err(bad("must not be negative")),
        Err(_) => Err(bad("is not a whole number of days")),
    }
}

/// `--limit`: the most loans to list, at least 0.
pub fn parse_limit(s: &str) -> Result<usize, FilterError> {
    s.trim().parse::<usize>().map_err(|_| FilterError {
        option: "--limit",
        value: s.into(),
        why: "is not a whole number of loans (0 or more)".into(),
    })
}

/// `arrears loans --as-of D [--stage S] [--bucket B] [--class C] [--min-dpd N] [--limit K]`:
/// which loans to list. Every condition given must hold; `limit` caps how many are listed (the
/// first K in the order the caller supplies them, `loan_id` order for a replay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoanFilter {
    pub stage: Option<Stage>,
    /// One of [`BUCKETS`].
    pub bucket: Option<&'static str>,
    /// One of [`CLASSES`].
    pub class: Option<&'static str>,
    /// DPD at least this.
    pub min_dpd: Option<i64>,
    pub limit: Option<usize>,
}

impl LoanFilter {
    /// Build from the options as typed; the error names the first bad option.
    pub fn parse(
        stage: Option<&str>,
        bucket: Option<&str>,
        class: Option<&str>,
        min_dpd: Option<&str>,
        limit: Option<&str>,
    ) -> Result<LoanFilter, FilterError> {
        Ok(LoanFilter {
            stage: stage.map(parse_stage).transpose()?,
            bucket: bucket.map(parse_bucket).transpose()?,
            class: class.map(parse_class).transpose()?,
            min_dpd: min_dpd.map(parse_min_dpd).transpose()?,
            limit: limit.map(parse_limit).transpose()?,
        })
    }

    /// Whether the loan meets every condition (the limit is not a condition).
    pub fn matches(&self, p: &Projection) -> bool {
        self.stage.is_none_or(|s| p.stage == s)
            && self.bucket.is_none_or(|b| p.bucket == b)
            && self.class.is_none_or(|c| p.class == c)
            && self.min_dpd.is_none_or(|n| p.days_past_due >= n)
    }

    /// Whether `listed` loans already reach the limit (for streaming: stop when true).
    pub fn is_full(&self, listed: usize) -> bool {
        self.limit.is_some_and(|k| listed >= k)
    }

    /// The matching loans, in the order given, at most `limit` of them.
    pub fn select<'a>(&self, ps: impl IntoIterator<Item = &'a Projection>) -> Vec<&'a Projection> {
        ps.into_iter()
            .filter(|p| self.matches(p))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }
}

/// The header line of the loans table (with its newline). Columns have fixed widths, so rows
/// can be printed as they are computed ([`loan_row`]).
pub fn loans_header() -> String {
    format!(
        "{:<36}  {:<14}  {:<6}  {:<15}  {:>6}  {:>16}  {:>14}  {}\n",
        "loan_id", "stage", "bucket", "class", "DPD", "outstanding", "penalty", "cur"
    )
}

/// One loan of the table (with its newline): loan id, stage, bucket, class, DPD, outstanding
/// total, outstanding penalty, currency.
pub fn loan_row(p: &Projection) -> String {
    format!(
        "{:<36}  {:<14}  {:<6}  {:<15}  {:>6}  {:>16}  {:>14}  {}\n",
        p.loan_id.to_string(),
        p.stage.as_str(),
        p.bucket,
        p.class,
        p.days_past_due,
        fmt_amount(p.outstanding.total),
        fmt_amount(p.outstanding.penalty),
        p.currency
    )
}

/// The whole table: header and one row per loan.
pub fn loans_table<'a>(ps: impl IntoIterator<Item = &'a Projection>) -> String {
    let mut s = loans_header();
    for p in ps {
        s.push_str(&loan_row(p));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrears_core::event::Event;
    use arrears_core::Policy;
    use arrears_projection::replay;
    use arrears_testkit::events::with_loan;
    use chrono::{TimeZone, Utc};

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn loan_id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// One loan's events from `{"type":…}` bodies, sealed as the store would.
    fn loan(n: u128, bodies: &[&str]) -> Vec<Event> {
        arrears_testkit::events::seal(&with_loan(loan_id(n), bodies), n << 32)
    }

    fn bullet(on: &str, principal: &str, days: u32, currency: &str) -> String {
        format!(
            r#"{{"type":"disbursed","on":"{on}","principal":"{principal}","currency":"{currency}","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{{"kind":"bullet","days":{days}}}}}}}"#
        )
    }

    /// The book used throughout (D = 2024-02-10, D0 for roll rates = 2024-02-10, D = 2024-03-10).
    fn book() -> Vec<Vec<Event>> {
        vec![
            // 1: the SPEC §7 example: phone, M1, special_mention at 02-10.
            loan(1, &[&bullet("2024-01-01", "1000.00", 30, "CNY")]),
            // 2: repaid early: settled.
            loan(
                2,
                &[
                    &bullet("2024-01-01", "500.00", 30, "CNY"),
                    r#"{"type":"payment","on":"2024-01-20","amount":"507.50"}"#,
                ],
            ),
            // 3: current at 02-10, repaid on 03-01.
            loan(
                3,
                &[
                    &bullet("2024-02-01", "2000.00", 30, "CNY"),
                    r#"{"type":"payment","on":"2024-03-01","amount":"2030.00"}"#,
                ],
            ),
            // 4: due 2023-09-08, never paid: DPD 155 at 02-10 (legal, M6, substandard).
            loan(4, &[&bullet("2023-09-01", "300.00", 7, "CNY")]),
            // 5: extended on 02-05 to 03-05: negotiated at 02-10, broken promise at 03-10.
            loan(
                5,
                &[
                    &bullet("2024-01-01", "1000.00", 30, "CNY"),
                    r#"{"type":"negotiated_extension","agreed_on":"2024-02-05","new_due_on":"2024-03-05"}"#,
                ],
            ),
            // 6: due 03-06: current at 02-10, M1 at 03-10.
            loan(6, &[&bullet("2024-02-05", "600.00", 30, "CNY")]),
            // 7: disbursed after 02-10: not in the portfolio as of 02-10.
            loan(7, &[&bullet("2024-02-20", "800.00", 30, "CNY")]),
        ]
    }

    fn project_all(book: &[Vec<Event>], as_of: Date) -> Vec<Projection> {
        book.iter()
            .filter_map(|evs| replay(evs, as_of, None, &Policy::default()))
            .collect()
    }

    fn portfolio(ps: &[Projection], as_of: Date) -> Portfolio {
        let mut pf = Portfolio::new(as_of, None, "default-v1");
        for p in ps {
            pf.add(p).unwrap();
        }
        pf
    }

    fn sum_of<'a>(groups: impl Iterator<Item = &'a Sums>) -> Sums {
        let mut t = Sums::default();
        for g in groups {
            t.loans += g.loans;
            t.principal += g.principal;
            t.interest += g.interest;
            t.penalty += g.penalty;
            t.total += g.total;
        }
        t
    }

    #[test]
    fn fixture_projections_are_what_the_tests_assume() {
        let ps = project_all(&book(), date("2024-02-10"));
        // Loan 7 is disbursed after D: replay gives no projection, so it cannot be added.
        assert_eq!(ps.len(), 6);
        let got: Vec<_> = ps
            .iter()
            .map(|p| (p.stage.as_str(), p.bucket, p.class, p.days_past_due))
            .collect();
        assert_eq!(
            got,
            [
                ("phone", "M1", "special_mention", 10),
                ("settled", "M0", "normal", 0),
                ("current", "M0", "normal", 0),
                ("legal", "M6", "substandard", 155),
                ("negotiated", "M0", "special_mention", 0),
                ("current", "M0", "normal", 0),
            ]
        );
        // Loan 4: base 301.05 × 0.00075 = 0.2257875 → 0.23 a day for 155 days.
        assert_eq!(fmt_amount(ps[3].outstanding.penalty), "35.65");
        // Loan 5: 02-01 … 02-05 at 0.76 a day.
        assert_eq!(fmt_amount(ps[4].outstanding.penalty), "3.80");
    }

    #[test]
    fn portfolio_groups_and_totals() {
        let d = date("2024-02-10");
        let ps = project_all(&book(), d);
        let pf = portfolio(&ps, d);
        assert_eq!(pf.loans(), 6);
        assert_eq!(pf.currency(), Some("CNY"));

        // Totals are the plain sums over the loans.
        let t = pf.totals();
        let by_hand = |f: fn(&Projection) -> Decimal| ps.iter().map(f).sum::<Decimal>();
        assert_eq!(t.principal, by_hand(|p| p.outstanding.principal.decimal()));
        assert_eq!(t.interest, by_hand(|p| p.outstanding.interest.decimal()));
        assert_eq!(t.penalty, by_hand(|p| p.outstanding.penalty.decimal()));
        assert_eq!(t.total, by_hand(|p| p.outstanding.total.decimal()));
        // 1000 + 0 + 2000 + 300 + 1000 + 600; 15 + 0 + 30 + 1.05 + 15 + 9; 7.60 + 35.65 + 3.80.
        assert_eq!(fmt_amount(t.principal), "4900.00");
        assert_eq!(fmt_amount(t.interest), "70.05");
        assert_eq!(fmt_amount(t.penalty), "47.05");
        assert_eq!(fmt_amount(t.total), "5017.10");

        // Every grouping adds up to the totals.
        assert_eq!(sum_of(pf.by_stage().map(|g| g.1)), *t);
        assert_eq!(sum_of(pf.by_bucket().map(|g| g.1)), *t);
        assert_eq!(sum_of(pf.by_class().map(|g| g.1)), *t);

        // Only non-empty groups, in the fixed order.
        assert_eq!(
            pf.by_stage()
                .map(|(s, g)| (s.as_str(), g.loans))
                .collect::<Vec<_>>(),
            [
                ("current", 2),
                ("negotiated", 1),
                ("settled", 1),
                ("phone", 1),
                ("legal", 1)
            ]
        );
        assert_eq!(
            pf.by_bucket()
                .map(|(b, g)| (b, g.loans))
                .collect::<Vec<_>>(),
            [("M0", 4), ("M1", 1), ("M6", 1)]
        );
        assert_eq!(
            pf.by_class().map(|(c, g)| (c, g.loans)).collect::<Vec<_>>(),
            [("normal", 3), ("special_mention", 2), ("substandard", 1)]
        );
        let m0 = pf.by_bucket().next().unwrap().1;
        assert_eq!(
            [m0.principal, m0.interest, m0.penalty, m0.total].map(fmt_amount),
            ["3600.00", "54.00", "3.80", "3657.80"]
        );
    }

    #[test]
    fn portfolio_json_is_exact() {
        let d = date("2024-02-10");
        let b = book();
        // Loans 1 and 4 only.
        let ps = project_all(&[b[0].clone(), b[3].clone()], d);
        let pf = portfolio(&ps, d);
        let row = |k: &str, n: &str, loans: u32, a: [&str; 4]| {
            format!(
                r#"{{"{k}":"{n}","loans":{loans},"principal":"{}","interest":"{}","penalty":"{}","total":"{}"}}"#,
                a[0], a[1], a[2], a[3]
            )
        };
        let l1 = ["1000.00", "15.00", "7.60", "1022.60"];
        let l4 = ["300.00", "1.05", "35.65", "336.70"];
        let want = format!(
            r#"{{"as_of":"2024-02-10","known_at":null,"policy":"default-v1","currency":"CNY","loans":2,"totals":{{"principal":"1300.00","interest":"16.05","penalty":"43.25","total":"1359.30"}},"by_stage":[{},{}],"by_bucket":[{},{}],"by_class":[{},{}]}}"#,
            row("stage", "phone", 1, l1),
            row("stage", "legal", 1, l4),
            row("bucket", "M1", 1, l1),
            row("bucket", "M6", 1, l4),
            row("class", "special_mention", 1, l1),
            row("class", "substandard", 1, l4),
        );
        assert_eq!(pf.to_json(), want);
        // And it parses, with every grouping's total equal to the totals.
        let v: serde_json::Value = serde_json::from_str(&pf.to_json()).unwrap();
        for g in ["by_stage", "by_bucket", "by_class"] {
            let s: Decimal = v[g]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| dec(r["total"].as_str().unwrap()))
                .sum();
            assert_eq!(fmt_amount(s), v["totals"]["total"].as_str().unwrap());
        }
    }

    #[test]
    fn empty_portfolio() {
        let pf = Portfolio::new(date("2024-02-10"), None, "default-v1");
        assert_eq!(
            pf.to_json(),
            r#"{"as_of":"2024-02-10","known_at":null,"policy":"default-v1","currency":null,"loans":0,"totals":{"principal":"0.00","interest":"0.00","penalty":"0.00","total":"0.00"},"by_stage":[],"by_bucket":[],"by_class":[]}"#
        );
        assert!(pf
            .render()
            .contains("no loans disbursed on or before 2024-02-10"));
    }

    #[test]
    fn portfolio_refuses_mismatched_projections_and_counts_nothing() {
        let d = date("2024-02-10");
        let mut pf = portfolio(&project_all(&book()[..1], d), d);
        let before = pf.clone();

        let usd = replay(
            &loan(9, &[&bullet("2024-01-01", "10.00", 30, "USD")]),
            d,
            None,
            &Policy::default(),
        )
        .unwrap();
        let e = pf.add(&usd).unwrap_err();
        assert!(matches!(e, PortfolioError::Currency { .. }));
        assert!(e.to_string().contains("is in USD"), "{e}");

        let other_day = project_all(&book()[..1], date("2024-02-11"));
        assert!(matches!(
            pf.add(&other_day[0]).unwrap_err(),
            PortfolioError::AsOf { .. }
        ));

        let mut other_policy = project_all(&book()[..1], d).remove(0);
        other_policy.policy = "strict-v2".into();
        assert!(matches!(
            pf.add(&other_policy).unwrap_err(),
            PortfolioError::Policy { .. }
        ));

        let known = Some(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
        let mut later = project_all(&book()[..1], d).remove(0);
        later.known_at = known;
        assert!(matches!(
            pf.add(&later).unwrap_err(),
            PortfolioError::KnownAt { .. }
        ));

        let mut odd = project_all(&book()[..1], d).remove(0);
        odd.bucket = "M9";
        assert!(matches!(
            pf.add(&odd).unwrap_err(),
            PortfolioError::Unknown { what: "bucket", .. }
        ));
        assert_eq!(pf, before);
    }

    #[test]
    fn portfolio_table_lists_groups_and_totals() {
        let d = date("2024-02-10");
        let pf = portfolio(&project_all(&book(), d), d);
        let t = pf.render();
        assert!(t.starts_with("portfolio as of 2024-02-10  (policy default-v1)\n"));
        assert!(t.contains("6 loans, amounts outstanding in CNY"));
        for h in ["by stage", "by bucket", "by class"] {
            assert!(t.contains(h), "{t}");
        }
        let m0 = t.lines().find(|l| l.starts_with("M0 ")).unwrap();
        assert!(m0.contains("3600.00") && m0.contains("3657.80"), "{m0}");
        assert_eq!(t.matches("5017.10").count(), 3, "{t}");
        assert!(!t.contains("grace"), "empty groups are not listed: {t}");
    }

    fn roll(book: &[Vec<Event>], from: Date, to: Date) -> RollRates {
        let policy = Policy::default();
        let mut rr = RollRates::new(from, to, None).unwrap();
        for evs in book {
            if let Some(p0) = replay(evs, from, None, &policy) {
                let p1 = replay(evs, to, None, &policy).unwrap();
                rr.add(&p0, &p1).unwrap();
            }
        }
        rr
    }

    #[test]
    fn roll_rate_rounds_half_away_from_zero_to_four_places() {
        let r = |a: &str, b: &str| roll_rate(dec(a), dec(b)).to_string();
        assert_eq!(r("1.00", "32.00"), "0.0313"); // 0.03125; banker's would give 0.0312
        assert_eq!(r("5.00", "32.00"), "0.1563"); // 0.15625
        assert_eq!(r("1600.00", "3600.00"), "0.4444");
        assert_eq!(r("2000.00", "3600.00"), "0.5556");
        assert_eq!(r("3.00", "3.00"), "1.0000");
        assert_eq!(r("0.00", "3.00"), "0.0000");
        assert_eq!(r("0.00", "0.00"), "0.0000");
        assert_eq!(r("1.00", "3.00"), "0.3333");
    }

    #[test]
    fn roll_rates_from_d0_to_d() {
        let (d0, d) = (date("2024-02-10"), date("2024-03-10"));
        let b = book();
        let rr = roll(&b, d0, d);
        // Loan 2 is settled at D0 (left out); loan 7 has no projection at D0.
        assert_eq!(rr.loans(), 5);
        assert_eq!(rr.settled_at_start(), 1);

        let rows = rr.rows();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.bucket, r.count, fmt_amount(r.principal)))
            .collect();
        assert_eq!(
            got,
            [
                ("M0", 3, "3600.00".into()),
                ("M1", 1, "1000.00".into()),
                ("M6", 1, "300.00".into())
            ]
        );
        for r in &rows {
            // Rectangular: every column, in order.
            let cols: Vec<_> = r.to.iter().map(|c| c.column).collect();
            assert_eq!(cols, RollRates::columns().collect::<Vec<_>>());
            assert_eq!(cols.len(), 9);
            assert_eq!(r.to.iter().map(|c| c.count).sum::<u64>(), r.count);
            assert_eq!(
                r.to.iter().map(|c| c.principal).sum::<Decimal>(),
                r.principal
            );
        }
        // M0 at D0: loan 3 (2000) settles, loans 5 (1000) and 6 (600) roll to M1.
        let cell = |row: usize, col: &str| *rows[row].to.iter().find(|c| c.column == col).unwrap();
        let m1 = cell(0, "M1");
        assert_eq!(
            (m1.count, fmt_amount(m1.principal), m1.rate.to_string()),
            (2, "1600.00".into(), "0.4444".into())
        );
        let st = cell(0, SETTLED);
        assert_eq!(
            (st.count, fmt_amount(st.principal), st.rate.to_string()),
            (1, "2000.00".into(), "0.5556".into())
        );
        // Settled at D goes to `settled`, never to M0 (its bucket at D).
        assert_eq!(cell(0, "M0").count, 0);
        assert_eq!(cell(1, "M2").rate.to_string(), "1.0000");
        assert_eq!(cell(2, "M7+").rate.to_string(), "1.0000");
        assert_eq!(cell(2, "M6").rate.to_string(), "0.0000");
    }

    #[test]
    fn roll_rates_json_is_exact() {
        let rr = roll(&book(), date("2024-02-10"), date("2024-03-10"));
        let z = r#"{"count":0,"principal":"0.00","rate":"0.0000"}"#;
        let want = [
            r#"{"from":"2024-02-10","to":"2024-03-10","rows":["#,
            r#"{"bucket":"M0","principal":"3600.00","to":{"#,
            &format!(r#""M0":{z},"#),
            r#""M1":{"count":2,"principal":"1600.00","rate":"0.4444"},"#,
            &format!(r#""M2":{z},"M3":{z},"M4":{z},"M5":{z},"M6":{z},"M7+":{z},"#),
            r#""settled":{"count":1,"principal":"2000.00","rate":"0.5556"}}},"#,
            r#"{"bucket":"M1","principal":"1000.00","to":{"#,
            &format!(r#""M0":{z},"M1":{z},"#),
            r#""M2":{"count":1,"principal":"1000.00","rate":"1.0000"},"#,
            &format!(r#""M3":{z},"M4":{z},"M5":{z},"M6":{z},"M7+":{z},"settled":{z}}}}},"#),
            r#"{"bucket":"M6","principal":"300.00","to":{"#,
            &format!(r#""M0":{z},"M1":{z},"M2":{z},"M3":{z},"M4":{z},"M5":{z},"M6":{z},"#),
            r#""M7+":{"count":1,"principal":"300.00","rate":"1.0000"},"#,
            &format!(r#""settled":{z}}}}}]}}"#),
        ]
        .concat();
        assert_eq!(rr.to_json(), want);
    }

    #[test]
    fn roll_rate_rounding_through_loans() {
        // Two M0 loans of 1.00 and 31.00 at D0: one rolls to M1, the other settles.
        let b = vec![
            loan(1, &[&bullet("2024-01-01", "1.00", 30, "CNY")]),
            loan(
                2,
                &[
                    &bullet("2024-01-01", "31.00", 30, "CNY"),
                    r#"{"type":"payment","on":"2024-01-31","amount":"31.47"}"#,
                ],
            ),
        ];
        let rr = roll(&b, date("2024-01-15"), date("2024-02-15"));
        let json: serde_json::Value = serde_json::from_str(&rr.to_json()).unwrap();
        let to = &json["rows"][0]["to"];
        assert_eq!(to["M1"]["rate"], "0.0313");
        assert_eq!(to["settled"]["rate"], "0.9688"); // 0.96875
        assert_eq!(json["rows"][0]["principal"], "32.00");
    }

    #[test]
    fn roll_rates_empty_and_invalid() {
        let (d0, d) = (date("2024-02-10"), date("2024-03-10"));
        let rr = RollRates::new(d0, d, None).unwrap();
        assert_eq!(
            rr.to_json(),
            r#"{"from":"2024-02-10","to":"2024-03-10","rows":[]}"#
        );
        assert!(matches!(
            RollRates::new(d, d, None).unwrap_err(),
            PortfolioError::Order { .. }
        ));
        assert!(matches!(
            RollRates::new(d, d0, None).unwrap_err(),
            PortfolioError::Order { .. }
        ));

        let b = book();
        let policy = Policy::default();
        let mut rr = RollRates::new(d0, d, None).unwrap();
        let p0 = replay(&b[0], d0, None, &policy).unwrap();
        let p1 = replay(&b[0], d, None, &policy).unwrap();
        let other = replay(&b[2], d, None, &policy).unwrap();
        assert!(matches!(
            rr.add(&p0, &other).unwrap_err(),
            PortfolioError::Pair { .. }
        ));
        assert!(matches!(
            rr.add(&p1, &p0).unwrap_err(),
            PortfolioError::AsOf { .. }
        ));
        assert_eq!(rr.loans(), 0);
        assert!(rr.add(&p0, &p1).unwrap());
        let settled0 = replay(&b[1], d0, None, &policy).unwrap();
        let settled1 = replay(&b[1], d, None, &policy).unwrap();
        assert!(!rr.add(&settled0, &settled1).unwrap());
        assert_eq!((rr.loans(), rr.settled_at_start()), (1, 1));
    }

    #[test]
    fn roll_rates_table_shows_percentages() {
        let rr = roll(&book(), date("2024-02-10"), date("2024-03-10"));
        let t = rr.render();
        assert!(
            t.starts_with("roll rates from 2024-02-10 to 2024-03-10"),
            "{t}"
        );
        assert!(t.contains("1 settled at 2024-02-10 left out"), "{t}");
        let header = t.lines().find(|l| l.starts_with("from")).unwrap();
        assert!(header.trim_end().ends_with("M7+  settled"), "{header}");
        let m0 = t.lines().find(|l| l.starts_with("M0 ")).unwrap();
        assert!(m0.contains("44.44%") && m0.contains("55.56%"), "{m0}");
        assert!(m0.contains("3600.00"), "{m0}");
    }

    #[test]
    fn filter_options_are_validated_with_the_option_named() {
        assert_eq!(parse_stage("phone"), Ok(Stage::Phone));
        assert_eq!(parse_stage("Written_Notice"), Ok(Stage::WrittenNotice));
        assert_eq!(
            parse_stage("foo").unwrap_err().to_string(),
            "--stage: `foo` is not a stage (one of current, negotiated, settled, grace, \
             reminder, phone, written_notice, outsourced, legal)"
        );
        assert_eq!(parse_bucket("m2"), Ok("M2"));
        assert_eq!(parse_bucket("M7+"), Ok("M7+"));
        assert_eq!(
            parse_bucket("M8").unwrap_err().to_string(),
            "--bucket: `M8` is not a bucket (one of M0, M1, M2, M3, M4, M5, M6, M7+)"
        );
        assert_eq!(parse_class("loss"), Ok("loss"));
        assert_eq!(
            parse_class("bad").unwrap_err().to_string(),
            "--class: `bad` is not a class (one of normal, special_mention, substandard, \
             doubtful, loss)"
        );
        assert_eq!(parse_min_dpd("30"), Ok(30));
        assert_eq!(
            parse_min_dpd("-1").unwrap_err().to_string(),
            "--min-dpd: `-1` must not be negative"
        );
        assert_eq!(parse_min_dpd("x").unwrap_err().option, "--min-dpd");
        assert_eq!(parse_limit("0"), Ok(0));
        assert_eq!(parse_limit("-5").unwrap_err().option, "--limit");

        let f = LoanFilter::parse(Some("legal"), Some("m6"), None, Some("90"), Some("10")).unwrap();
        assert_eq!(
            f,
            LoanFilter {
                stage: Some(Stage::Legal),
                bucket: Some("M6"),
                class: None,
                min_dpd: Some(90),
                limit: Some(10),
            }
        );
        let e = LoanFilter::parse(None, Some("M2"), Some("worst"), None, None).unwrap_err();
        assert_eq!(e.option, "--class");
    }

    #[test]
    fn filter_matches_and_limits() {
        let ps = project_all(&book(), date("2024-02-10"));
        let ids = |v: Vec<&Projection>| {
            v.iter()
                .map(|p| p.loan_id.uuid().as_u128())
                .collect::<Vec<_>>()
        };
        let all = LoanFilter::default();
        assert_eq!(ids(all.select(&ps)), [1, 2, 3, 4, 5, 6]);
        let f = |s: Option<&str>,
                 b: Option<&str>,
                 c: Option<&str>,
                 d: Option<&str>,
                 l: Option<&str>| { LoanFilter::parse(s, b, c, d, l).unwrap() };
        assert_eq!(
            ids(f(Some("current"), None, None, None, None).select(&ps)),
            [3, 6]
        );
        assert_eq!(
            ids(f(None, Some("M0"), None, None, None).select(&ps)),
            [2, 3, 5, 6]
        );
        assert_eq!(
            ids(f(None, Some("M0"), None, None, Some("2")).select(&ps)),
            [2, 3]
        );
        assert_eq!(
            ids(f(None, Some("M0"), Some("special_mention"), None, None).select(&ps)),
            [5]
        );
        assert_eq!(
            ids(f(None, None, None, Some("10"), None).select(&ps)),
            [1, 4]
        );
        assert_eq!(ids(f(None, None, None, Some("11"), None).select(&ps)), [4]);
        assert_eq!(
            ids(f(Some("phone"), Some("M6"), None, None, None).select(&ps)),
            Vec::<u128>::new()
        );
        assert_eq!(
            ids(f(None, None, None, None, Some("0")).select(&ps)),
            Vec::<u128>::new()
        );
        let lim = f(None, None, None, None, Some("2"));
        assert!(!lim.is_full(1) && lim.is_full(2));
        assert!(!all.is_full(usize::MAX));
    }

    #[test]
    fn loans_table_has_a_header_and_one_row_per_loan() {
        let ps = project_all(&book(), date("2024-02-10"));
        let t = loans_table(&ps[..2]);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "loan_id",
                "stage",
                "bucket",
                "class",
                "DPD",
                "outstanding",
                "penalty",
                "cur"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000-0000-0000-0000-000000000001",
                "phone",
                "M1",
                "special_mention",
                "10",
                "1022.60",
                "7.60",
                "CNY"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000-0000-0000-0000-000000000002",
                "settled",
                "M0",
                "normal",
                "0",
                "0.00",
                "0.00",
                "CNY"
            ]
        );
        // Fixed widths: every line is as wide as the header, up to the currency.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
        assert_eq!(loans_table(std::iter::empty()), loans_header());
    }
}
