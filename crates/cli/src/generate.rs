//! A deterministic synthetic book: realistic loans and behaviours, only valid streams.
//!
//! Every loan draws from its own ChaCha stream seeded by (seed, loan index), so a book is the
//! same whatever the number of threads, and loan k is the same whatever `--loans` is. Each
//! candidate event is put through the projection's real `decide` before it is emitted; one that
//! would be rejected is dropped, so `append` always accepts the output.

use arrears_core::Date;
use chrono::{DateTime, NaiveTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use arrears_core::event::*;
use arrears_core::gate::Gate;
use arrears_core::id::{EventId, LoanId, Seq};
use arrears_core::money::{round_cents, Money, Rate};
use arrears_core::schedule;
use arrears_core::Policy;
use arrears_projection::{fold, project, DecideGate};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub loans: u64,
    pub seed: u64,
    /// First possible disbursement date.
    pub start: Date,
    /// Disbursements spread over `days`; no event is dated after `start + days`.
    pub days: u32,
}

/// The behaviour a synthetic borrower follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    OnTime,
    Late,
    Partial,
    Legal,
    Extension,
    Restructure,
    Overpay,
    BackDated,
    Prepay,
}

#[derive(Serialize)]
struct Out<'a> {
    event_id: EventId,
    loan_id: LoanId,
    #[serde(serialize_with = "ser_ts")]
    recorded_at: &'a Timestamp,
    #[serde(flatten)]
    body: &'a Body,
}

fn ser_ts<S: serde::Serializer>(t: &&Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_timestamp(t))
}

fn uuid_from(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// One loan under construction: its accepted events and the gate that checks candidates.
struct Builder<'p> {
    loan_id: LoanId,
    policy: &'p Policy,
    gate: DecideGate<'p>,
    history: Vec<Event>,
    last_recorded: Option<Timestamp>,
    end: Date,
    rng: ChaCha8Rng,
}

impl<'p> Builder<'p> {
    /// Offer an event recorded no earlier than the end of its business day (or later, for
    /// back-dated facts); it is kept only if `decide` accepts it.
    fn offer(&mut self, body: Body) -> bool {
        let day = body.business_date();
        if day > self.end {
            return false;
        }
        let at_day: Timestamp = DateTime::from_naive_utc_and_offset(
            day.naive()
                .and_time(NaiveTime::from_hms_opt(18, 0, 0).expect("valid")),
            Utc,
        );
        let recorded_at = match self.last_recorded {
            Some(prev) if prev >= at_day => prev + chrono::Duration::minutes(7),
            _ => at_day + chrono::Duration::seconds(self.rng.gen_range(0..3600)),
        };
        let ev = Event {
            event_id: EventId(uuid_from(&mut self.rng)),
            loan_id: self.loan_id,
            seq: Seq(self.history.len() as u64 + 1),
            recorded_at,
            body,
            prev_hash: arrears_core::chain::GENESIS,
            hash: arrears_core::chain::GENESIS,
        };
        if self.gate.check(&self.history, &ev).is_err() {
            return false;
        }
        self.last_recorded = Some(recorded_at);
        self.history.push(ev);
        true
    }

    fn projection(&self, day: Date) -> Option<arrears_projection::Projection> {
        let loan = fold(&self.history, day, None, self.policy)?;
        Some(project(&loan, day, None, self.policy))
    }

    /// Everything owed on `day` for installments due by `through` (penalty first).
    fn owed_through(&self, day: Date, through: Date) -> Decimal {
        let Some(p) = self.projection(day) else {
            return Decimal::ZERO;
        };
        let insts: Money = p
            .installments
            .iter()
            .filter(|i| i.due_on <= through)
            .map(|i| i.principal + i.interest - i.paid_principal - i.paid_interest)
            .sum();
        (p.outstanding.penalty + insts).decimal()
    }

    fn pay(&mut self, on: Date, amount: Decimal) -> bool {
        let amount = Money::round(amount);
        if amount.decimal() <= Decimal::ZERO {
            return false;
        }
        let reference = format!("bank-{}", self.rng.gen_range(1000..999_999));
        self.offer(Body::Payment(Payment {
            on,
            amount,
            reference: Some(reference),
        }))
    }

    fn miss(&mut self, n: u32, observed_on: Date) -> bool {
        self.offer(Body::Missed(Missed {
            installment: n,
            observed_on,
        }))
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

/// Generate loan number `index` of the book.
fn generate_loan(cfg: &GenConfig, index: u64, policy: &Policy) -> Vec<Event> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&cfg.seed.to_le_bytes());
    seed[8..16].copy_from_slice(&index.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(seed);
    let loan_id = LoanId(uuid_from(&mut rng));
    let end = cfg.start.plus_days(cfg.days as i64);
    let on = cfg
        .start
        .plus_days(rng.gen_range(0..cfg.days.max(1)) as i64);
    let installments = rng.gen_bool(0.4);
    let repayment = if installments {
        Repayment::Installments {
            count: rng.gen_range(3..=12),
            method: if rng.gen_bool(0.5) {
                Method::EqualInstallment
            } else {
                Method::EqualPrincipal
            },
        }
    } else {
        Repayment::Bullet {
            days: pick(&mut rng, &[7, 14, 30]),
        }
    };
    // Whole yuan drawn as `i32` (the draw must not change: it seeds the rest of the loan).
    let yuan: i32 = if installments {
        rng.gen_range(10..500) * 100
    } else {
        rng.gen_range(5..200) * 100
    };
    let principal = Money::from_cents(i64::from(yuan) * 100);
    let daily_rate = Rate::new(pick(
        &mut rng,
        &[
            Decimal::new(2, 4),
            Decimal::new(3, 4),
            Decimal::new(5, 4),
            Decimal::new(6, 4),
        ],
    ));
    let terms = Terms {
        daily_rate,
        penalty_multiplier: Rate::new(Decimal::new(15, 1)),
        grace_days: pick(&mut rng, &[0, 0, 0, 3]),
        compound: rng.gen_bool(0.7),
        repayment,
    };
    let sched = schedule::compute(on, principal, &terms).expect("generated terms are valid");
    let grace = terms.grace_days as i64;
    let mut b = Builder {
        loan_id,
        policy,
        gate: DecideGate::new(policy),
        history: Vec::new(),
        last_recorded: None,
        end,
        rng,
    };
    b.offer(Body::Disbursed(Disbursed {
        on,
        principal,
        currency: "CNY".into(),
        borrower: Some(format!("b-{}", index)),
        terms,
        schedule: sched.clone(),
    }));
    let roll = b.rng.gen_range(0..100);
    let profile = match roll {
        0..=34 => Profile::OnTime,
        35..=49 => Profile::Late,
        50..=59 => Profile::Partial,
        60..=67 => Profile::Legal,
        68..=77 => Profile::Extension,
        78..=83 => Profile::Restructure,
        84..=89 => Profile::Overpay,
        90..=94 => Profile::BackDated,
        _ => Profile::Prepay,
    };
    let first = &sched[0];
    let miss_day = |due: Date| due.plus_days(grace + 1);
    match profile {
        Profile::OnTime => {
            for s in &sched {
                let day = s.due_on.plus_days(-b.rng.gen_range(0..3)).max(on);
                b.pay(day, (s.principal + s.interest).decimal());
            }
        }
        Profile::Late | Profile::Partial => {
            for s in &sched {
                let late = b.rng.gen_range(1..45);
                if b.rng.gen_bool(0.7) {
                    b.miss(s.n, miss_day(s.due_on));
                }
                let day = s.due_on.plus_days(grace + late);
                let owed = b.owed_through(day, s.due_on);
                let amount = if profile == Profile::Partial {
                    owed * Decimal::new(b.rng.gen_range(30..70), 2)
                } else {
                    owed
                };
                b.pay(day, amount);
            }
        }
        Profile::Legal => {
            for s in &sched {
                b.miss(s.n, miss_day(s.due_on));
            }
        }
        Profile::Extension | Profile::Restructure => {
            b.miss(first.n, miss_day(first.due_on));
            let agreed = first.due_on.plus_days(grace + b.rng.gen_range(5..25));
            let p = b.projection(agreed);
            let (penalty, interest, principal_left) = p
                .as_ref()
                .map(|p| {
                    (
                        p.outstanding.penalty.decimal(),
                        p.outstanding.interest.decimal(),
                        p.outstanding.principal.decimal(),
                    )
                })
                .unwrap_or_default();
            let waive_penalty = if b.rng.gen_bool(0.5) {
                Some(Waiver::All)
            } else {
                Some(Waiver::Amount(Money::round(penalty / Decimal::TWO)))
            };
            let waive_interest = b
                .rng
                .gen_bool(0.4)
                .then(|| Money::round(interest / Decimal::from(4)));
            let reschedule = if profile == Profile::Extension {
                Reschedule::NewDueOn(agreed.plus_days(30))
            } else {
                let parts = b.rng.gen_range(2..=3u32);
                let each = round_cents(principal_left / Decimal::from(parts));
                (1..=parts)
                    .map(|k| {
                        let principal = if k == parts {
                            principal_left - each * Decimal::from(parts - 1)
                        } else {
                            each
                        };
                        PlanInstallment {
                            due_on: agreed.add_months(k).unwrap_or(agreed),
                            principal: Money::round(principal),
                            interest: Money::round(principal * Decimal::new(1, 2)),
                        }
                    })
                    .collect::<Vec<_>>()
                    .pipe(Reschedule::Restructure)
            };
            let agreed_ok = b.offer(Body::NegotiatedExtension(Extension {
                agreed_on: agreed,
                waive_penalty,
                waive_interest,
                reschedule,
            }));
            if agreed_ok && b.rng.gen_bool(0.6) {
                // Keeps the promise: pays everything due under the new terms on each due date.
                let p = b.projection(agreed);
                let dues: Vec<Date> = p
                    .map(|p| {
                        p.installments
                            .iter()
                            .filter(|i| {
                                i.status != arrears_projection::view::InstallmentStatus::Paid
                            })
                            .map(|i| i.due_on)
                            .collect()
                    })
                    .unwrap_or_default();
                for due in dues {
                    let owed = b.owed_through(due, due);
                    b.pay(due, owed);
                }
            } else if agreed_ok {
                // Broken promise: nothing paid; the servicer records the miss again.
                if let Some(p) = b.projection(b.end) {
                    let overdue: Vec<(u32, Date)> = p
                        .installments
                        .iter()
                        .filter(|i| {
                            i.status == arrears_projection::view::InstallmentStatus::Overdue
                        })
                        .map(|i| (i.n, i.due_on))
                        .collect();
                    for (n, due) in overdue {
                        b.miss(n, miss_day(due));
                    }
                }
            }
        }
        Profile::Overpay => {
            let day = first.due_on.plus_days(-1).max(on);
            let total: Money = sched.iter().map(|s| s.principal + s.interest).sum();
            let extra = Decimal::from(b.rng.gen_range(10..100));
            b.pay(day, total.decimal() + extra);
        }
        Profile::BackDated => {
            b.miss(first.n, miss_day(first.due_on));
            // The bank file arrives late: the borrower had paid on the due date.
            b.pay(first.due_on, (first.principal + first.interest).decimal());
        }
        Profile::Prepay => {
            let day = on.plus_days(b.rng.gen_range(1..5));
            let total: Money = sched.iter().map(|s| s.principal + s.interest).sum();
            b.pay(day, total.decimal());
        }
    }
    b.history
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Statistics of a generated book.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GenStats {
    pub loans: u64,
    pub events: u64,
}

/// Generate the book, calling `write` with each JSON line (no newline) in loan order.
pub fn generate(
    cfg: &GenConfig,
    policy: &Policy,
    progress: &dyn Fn(u64),
    write: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> std::io::Result<GenStats> {
    const CHUNK: u64 = 4096;
    let mut stats = GenStats::default();
    let mut next = 0u64;
    while next < cfg.loans {
        let hi = (next + CHUNK).min(cfg.loans);
        let lines: Vec<Vec<String>> = (next..hi)
            .into_par_iter()
            .map(|i| {
                generate_loan(cfg, i, policy)
                    .iter()
                    .map(|e| {
                        serde_json::to_string(&Out {
                            event_id: e.event_id,
                            loan_id: e.loan_id,
                            recorded_at: &e.recorded_at,
                            body: &e.body,
                        })
                        .expect("events serialise")
                    })
                    .collect()
            })
            .collect();
        for loan in lines {
            stats.loans += 1;
            for l in loan {
                stats.events += 1;
                write(&l)?;
            }
        }
        next = hi;
        progress(stats.loans);
    }
    Ok(stats)
}
