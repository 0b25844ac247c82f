//! The folded state of one loan and the infallible `apply` of SPEC §2–§3.
//!
//! Events are applied in business-date order, ties by `seq`. Each installment keeps a short
//! history of its end-of-day state ([`DayState`]), written only on days an event touches it.
//! From that history the overdue base B(x) is piecewise constant, and the penalty over a stretch
//! of n days is `n × round(B × rate)`: accrual costs O(events + installments), never O(days).
//!
//! Grace retroactivity: an installment in its grace window joins B only once its default is
//! visible (day `due_on + grace + 1`), then counts back to `due_on`. So B(x) is final once the
//! day being accrued reaches `x + grace + 1`; [`Penalty`] caches the sum over final days and
//! recomputes only the last `grace` days (≤ 30) when asked.

use arrears_core::id::{LoanId, Seq};
use arrears_core::money::{Money, Rate};
use rust_decimal::Decimal;
use serde::Serialize;

use arrears_core::event::{Body, Date, Disbursed, Event, Extension, Reschedule, Waiver};

use crate::stage::{Stage, StageInput};

/// A short list kept on the stack, moving to the heap past `N` items: the fold's scratch lists
/// (stretch boundaries, allocation order) without an allocation per call for typical loans.
struct Short<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy, const N: usize> Short<T, N> {
    fn new(fill: T) -> Self {
        Short {
            inline: [fill; N],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, x: T) {
        if self.len < N {
            self.inline[self.len] = x;
            self.len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline);
            }
            self.heap.push(x);
        }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.heap.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }
}

/// The state of an installment at the end of day `from`, and on every day after it until the
/// next entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayState {
    pub from: Date,
    /// The due date in force.
    pub due_on: Date,
    /// Unpaid principal, plus unpaid interest when the loan compounds: what B counts.
    pub base: Decimal,
    /// Anything unpaid at all (principal or interest), whatever `compound` says.
    pub unpaid: bool,
    /// Unpaid principal (the cost cap's principal-days, docs/rules.md §R5).
    pub principal: Decimal,
    /// Scheduled interest (after waivers) and interest paid: the interest charged on day x is
    /// `interest` once x ≥ `due_on`, `paid_interest` before.
    pub interest: Decimal,
    pub paid_interest: Decimal,
}

impl DayState {
    /// Interest charged at the end of day x under this state.
    pub fn interest_charged(&self, x: Date) -> Decimal {
        if x >= self.due_on {
            self.interest
        } else {
            self.paid_interest
        }
    }
}

/// One installment, as it stands after the events applied so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installment {
    pub n: u32,
    pub due_on: Date,
    pub principal: Decimal,
    pub interest: Decimal,
    pub paid_principal: Decimal,
    pub paid_interest: Decimal,
    /// Replaced by a restructure while fully unpaid: no longer part of the schedule.
    pub removed: bool,
    /// The day it became fully paid (or was cut down to what was paid).
    pub paid_on: Option<Date>,
    pub history: Vec<DayState>,
}

impl Installment {
    pub fn unpaid_principal(&self) -> Decimal {
        self.principal - self.paid_principal
    }
    pub fn unpaid_interest(&self) -> Decimal {
        self.interest - self.paid_interest
    }
    pub fn is_unpaid(&self) -> bool {
        !self.removed
            && (self.unpaid_principal() > Decimal::ZERO || self.unpaid_interest() > Decimal::ZERO)
    }

    /// Record the end-of-day state for `day` (events arrive in date order, so `day` is never
    /// before the last entry).
    fn record(&mut self, day: Date, compound: bool) {
        // `is_unpaid`, `unpaid_principal` and `unpaid_interest`, each computed once.
        let positive = |d: &Decimal| !d.is_zero() && d.is_sign_positive();
        let (owed_principal, owed_interest) = (self.unpaid_principal(), self.unpaid_interest());
        let unpaid = !self.removed && (positive(&owed_principal) || positive(&owed_interest));
        debug_assert_eq!(unpaid, self.is_unpaid());
        if !unpaid && self.paid_on.is_none() && !self.removed {
            self.paid_on = Some(day);
        }
        let base = if self.removed {
            Decimal::ZERO
        } else if compound {
            owed_principal + owed_interest
        } else {
            owed_principal
        };
        let (principal, interest, paid_interest) = if self.removed {
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
        } else {
            (owed_principal, self.interest, self.paid_interest)
        };
        let st = DayState {
            from: day,
            due_on: self.due_on,
            base,
            unpaid,
            principal,
            interest,
            paid_interest,
        };
        match self.history.last_mut() {
            Some(last) if last.from == day => *last = st,
            Some(last)
                if last.due_on == st.due_on
                    && last.base == st.base
                    && last.unpaid == st.unpaid
                    && last.principal == st.principal
                    && last.interest == st.interest
                    && last.paid_interest == st.paid_interest => {}
            _ => self.history.push(st),
        }
    }

    /// The state at the end of day `x`, if the installment existed then.
    pub fn state_at(&self, x: Date) -> Option<&DayState> {
        let i = self.history.partition_point(|s| s.from <= x);
        i.checked_sub(1).map(|i| &self.history[i])
    }
}

/// Penalty accrued, with the sum over days whose base can no longer change cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalty {
    /// Σ round(B(x) × rate) for x < `final_upto` (penalty days ≤ `final_upto`).
    pub final_sum: Decimal,
    pub final_upto: Date,
    /// Principal-days Σ P(y) for y < `final_upto` (cost cap only).
    pub final_pd: Decimal,
    /// The penalty day the cost cap stopped accrual on, if within the final part.
    pub final_stopped: Option<Date>,
    pub paid: Decimal,
    pub waived: Decimal,
}

/// Where the capped accrual stands (docs/rules.md §R5): penalty so far, principal-days so far,
/// and the penalty day accrual stopped on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapState {
    pub pen: Decimal,
    pub pd: Decimal,
    pub stopped: Option<Date>,
}

/// One stretch of penalty accrual, for the audit trail: penalty days `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stretch {
    pub from: Date,
    pub to: Date,
    pub days: i64,
    pub base: Decimal,
    pub daily: Decimal,
    pub subtotal: Decimal,
}

/// What one payment paid of one installment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub n: u32,
    pub interest: Decimal,
    pub principal: Decimal,
}

/// How one payment was allocated (SPEC §3), for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub seq: Seq,
    pub on: Date,
    pub amount: Decimal,
    pub penalty: Decimal,
    /// What went to each installment, in the order paid.
    pub installments: Vec<Part>,
    pub overpaid: Decimal,
}

/// A recorded `missed`, with the due date in force for its installment when it was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissRecord {
    pub installment: u32,
    pub due_on: Option<Date>,
    pub observed_on: Date,
}

/// A counted extension and the stage the loan had at the end of the day before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionRecord {
    pub seq: Seq,
    pub agreed_on: Date,
    pub stage_before: Stage,
    pub waived_penalty: Decimal,
    pub waived_interest: Decimal,
}

/// A promise to pay (docs/rules.md §R3), and the payments counted towards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseRecord {
    pub seq: Seq,
    /// The contact's business date.
    pub made_on: Date,
    /// Promised by the end of this day.
    pub on: Date,
    pub amount: Decimal,
    /// Payments dated `made_on ..= on` counted so far (until kept).
    pub paid: Decimal,
    /// The day the counted payments reached `amount`.
    pub kept_on: Option<Date>,
    /// The stage at the end of the day before the promise (for the broken-promise rule).
    pub stage_before: Stage,
}

/// Where a promise stands at the end of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiseStatus {
    Open,
    Kept,
    Broken,
}

impl PromiseStatus {
    /// The wire name (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            PromiseStatus::Open => "open",
            PromiseStatus::Kept => "kept",
            PromiseStatus::Broken => "broken",
        }
    }
}

impl PromiseRecord {
    /// Kept once the counted payments reach the amount; broken from the day after `on`
    /// otherwise; open until then.
    pub fn status_at(&self, x: Date) -> PromiseStatus {
        if self.kept_on.is_some_and(|k| k <= x) {
            PromiseStatus::Kept
        } else if x > self.on {
            PromiseStatus::Broken
        } else {
            PromiseStatus::Open
        }
    }
}

/// The folded state of one loan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    pub loan_id: LoanId,
    pub disbursed_on: Date,
    pub currency: String,
    pub principal: Decimal,
    pub grace_days: u32,
    pub compound: bool,
    pub penalty_rate_daily: Rate,
    /// The cost cap's annual rate when the policy stops penalty at the cap (docs/rules.md §R5).
    pub stop_at_cost_cap: Option<Decimal>,
    pub installments: Vec<Installment>,
    pub penalty: Penalty,
    pub waived_interest: Decimal,
    pub overpaid: Decimal,
    pub extensions: Vec<ExtensionRecord>,
    pub misses: Vec<MissRecord>,
    pub allocations: Vec<Allocation>,
    /// Promises to pay, in the order made; the last one made by a day is the one in force.
    pub promises: Vec<PromiseRecord>,
    /// The highest `seq` applied.
    pub version: Seq,
    /// (business date, seq) of the last event applied: the next must sort after it.
    pub cursor: (Date, Seq),
}

impl Loan {
    /// Start a loan from its `disbursed` event under `policy` (its cost-cap switch is part of
    /// how penalty accrues).
    pub fn open_under(ev: &Event, d: &Disbursed, policy: &arrears_core::Policy) -> Loan {
        let mut loan = Loan::open(ev, d);
        loan.stop_at_cost_cap = policy
            .cost_cap
            .stop_penalty
            .then_some(policy.cost_cap.annual_rate);
        loan
    }

    /// Start a loan from its `disbursed` event (no cost-cap stop).
    pub fn open(ev: &Event, d: &Disbursed) -> Loan {
        let compound = d.terms.compound;
        let installments = d
            .schedule
            .iter()
            .map(|s| {
                let mut i = Installment {
                    n: s.n,
                    due_on: s.due_on,
                    principal: s.principal.decimal(),
                    interest: s.interest.decimal(),
                    paid_principal: Decimal::ZERO,
                    paid_interest: Decimal::ZERO,
                    removed: false,
                    paid_on: None,
                    history: Vec::new(),
                };
                i.record(d.on, compound);
                i
            })
            .collect();
        Loan {
            loan_id: ev.loan_id,
            disbursed_on: d.on,
            currency: d.currency.clone(),
            principal: d.principal.decimal(),
            grace_days: d.terms.grace_days,
            compound,
            penalty_rate_daily: d.terms.penalty_rate_daily(),
            stop_at_cost_cap: None,
            installments,
            penalty: Penalty {
                final_sum: Decimal::ZERO,
                final_upto: d.on,
                final_pd: Decimal::ZERO,
                final_stopped: None,
                paid: Decimal::ZERO,
                waived: Decimal::ZERO,
            },
            waived_interest: Decimal::ZERO,
            overpaid: Decimal::ZERO,
            extensions: Vec::new(),
            misses: Vec::new(),
            allocations: Vec::new(),
            promises: Vec::new(),
            version: ev.seq,
            cursor: (d.on, ev.seq),
        }
    }

    /// Whether installment `i`, due on `u`, defaulted under that due date: still unpaid at the end
    /// of `u + grace` with `u` still in force then.
    fn defaulted(&self, i: &Installment, u: Date) -> bool {
        i.state_at(u.add_days(self.grace_days))
            .is_some_and(|s| s.due_on == u && s.unpaid)
    }

    /// B(x) as seen on day `t`: defaults become visible on `due_on + grace + 1`.
    pub fn base_at(&self, x: Date, t: Date) -> Decimal {
        let mut b = Decimal::ZERO;
        for i in &self.installments {
            if let Some(s) = i.state_at(x) {
                if s.unpaid
                    && x >= s.due_on
                    && s.due_on.add_days(self.grace_days + 1) <= t
                    && self.defaulted(i, s.due_on)
                {
                    b += s.base;
                }
            }
        }
        b
    }

    /// Visit the stretches of constant B over x in `[a, b)` as seen on day `t`.
    fn stretches(&self, a: Date, b: Date, t: Date, f: &mut dyn FnMut(Date, Date, Decimal)) {
        if a >= b {
            return;
        }
        let mut points: Short<Date, 32> = Short::new(a);
        points.push(a);
        points.push(b);
        for i in &self.installments {
            for s in &i.history {
                if s.from > a && s.from < b {
                    points.push(s.from);
                }
                if s.due_on > a && s.due_on < b {
                    points.push(s.due_on);
                }
            }
        }
        let points = points.as_mut_slice();
        points.sort_unstable();
        // Dedup in place: `points[..n]` are the distinct dates, ascending.
        let mut n = 1;
        for k in 1..points.len() {
            if points[k] != points[n - 1] {
                points[n] = points[k];
                n += 1;
            }
        }
        for w in points[..n].windows(2) {
            f(w[0], w[1], self.base_at(w[0], t));
        }
    }

    /// The daily penalty on `base`: SPEC §3's one rounded product, `round(B × rate)`.
    fn daily(&self, base: Decimal) -> Decimal {
        if base.is_zero() {
            // Most stretches: nothing overdue (a base summed from no amounts has scale 0).
            return Money::ZERO.decimal();
        }
        Money::new(base).charge(self.penalty_rate_daily).decimal()
    }

    /// Unpaid principal P(x) and interest charged I(x) at the end of day x.
    pub fn principal_and_interest_at(&self, x: Date) -> (Decimal, Decimal) {
        let (mut p, mut i) = (Decimal::ZERO, Decimal::ZERO);
        for inst in &self.installments {
            if let Some(s) = inst.state_at(x) {
                p += s.principal;
                i += s.interest_charged(x);
            }
        }
        (p, i)
    }

    /// Walk penalty days a + 1 ..= b (B(x) for x in `[a, b)`) as seen on day `t`, from `st`,
    /// calling `emit(x0, x1, base, daily)` for each run of days x in `[x0, x1)` charged `daily`.
    /// Without the cost-cap stop each day is charged round(B × rate). With it (docs/rules.md §R5)
    /// penalty day d is charged in full only while 365 × (I(d − 1) + Pen(d − 1) + full) ≤
    /// cap × PD(d), PD(d) = Σ_{y < d} P(y); the first day it would not be, it is charged the
    /// whole cents left under the cap, and no later day is charged. Closed form: the first such
    /// day of a stretch is solved for, not searched.
    fn walk(
        &self,
        a: Date,
        b: Date,
        t: Date,
        st: &mut CapState,
        emit: &mut dyn FnMut(Date, Date, Decimal, Decimal),
    ) {
        let days365 = Decimal::from(365);
        self.stretches(a, b, t, &mut |x0, x1, base| {
            let full = self.daily(base);
            let n = x0.days_until(x1);
            let Some(cap) = self.stop_at_cost_cap else {
                st.pen += full * Decimal::from(n);
                emit(x0, x1, base, full);
                return;
            };
            if st.stopped.is_some() {
                return;
            }
            let (p, i) = self.principal_and_interest_at(x0);
            // Day x0 + k is charged in full iff k × delta ≤ room.
            let delta = days365 * full - cap * p;
            let room = cap * st.pd - days365 * (i + st.pen);
            let ok = |k: i64| Decimal::from(k) * delta <= room;
            let first_bad = if !ok(1) {
                Some(1)
            } else if ok(n) {
                // ok(1) and ok(n): with delta ≤ 0 every k is fine; with delta > 0 every k ≤ n.
                None
            } else {
                // delta > 0 and room ≥ delta: the last good k is ⌊room / delta⌋ (checked).
                let mut k = (room / delta)
                    .floor()
                    .to_string()
                    .parse::<i64>()
                    .unwrap_or(n)
                    .clamp(1, n);
                while k > 1 && !ok(k) {
                    k -= 1;
                }
                while k < n && ok(k + 1) {
                    k += 1;
                }
                Some(k + 1)
            };
            match first_bad {
                None => {
                    st.pen += full * Decimal::from(n);
                    st.pd += p * Decimal::from(n);
                    emit(x0, x1, base, full);
                }
                Some(k) => {
                    let stop_x = x0.plus_days(k - 1);
                    if k > 1 {
                        st.pen += full * Decimal::from(k - 1);
                        emit(x0, stop_x, base, full);
                    }
                    st.pd += p * Decimal::from(k);
                    let part =
                        arrears_core::money::cents_within(cap * st.pd - days365 * (i + st.pen))
                            .min(full);
                    st.pen += part;
                    emit(stop_x, stop_x.next_day(), base, part);
                    st.stopped = Some(stop_x.next_day());
                }
            }
        });
    }

    /// The first day x whose B is still open to a retroactive default as seen on day `t`.
    fn open_from(&self, t: Date) -> Date {
        t.sub_days(self.grace_days)
            .unwrap_or(t)
            .max(self.disbursed_on)
    }

    /// Principal-days Σ P(y) over days y in `[disbursed_on, t)` (docs/rules.md §R5), over the
    /// stretches of constant principal: O(events), not O(days).
    pub fn principal_days(&self, t: Date) -> Decimal {
        let mut pd = Decimal::ZERO;
        self.stretches(self.disbursed_on, t, t, &mut |x0, x1, _| {
            pd += self.principal_and_interest_at(x0).0 * Decimal::from(x0.days_until(x1));
        });
        pd
    }

    /// The cap state after the final (cached) part of the accrual.
    fn cached(&self) -> CapState {
        CapState {
            pen: self.penalty.final_sum,
            pd: self.penalty.final_pd,
            stopped: self.penalty.final_stopped,
        }
    }

    /// Penalty accrued through day `t` (penalty days ≤ t), without touching the cache, and the
    /// day the cost cap stopped it (if it did by `t`).
    pub fn accrual(&self, t: Date) -> CapState {
        let mut st = self.cached();
        if t > self.penalty.final_upto {
            self.walk(self.penalty.final_upto, t, t, &mut st, &mut |_, _, _, _| {});
        }
        st
    }

    /// Penalty accrued through day `t` (penalty days ≤ t), without touching the cache.
    pub fn accrued(&self, t: Date) -> Decimal {
        self.accrual(t).pen
    }

    /// Penalty accrued through day `t`, moving the final part of the sum into the cache. Only
    /// valid while every event dated before `t` has been applied.
    fn accrue(&mut self, t: Date) -> Decimal {
        let target = self.open_from(t);
        if target > self.penalty.final_upto {
            let mut st = self.cached();
            self.walk(
                self.penalty.final_upto,
                target,
                t,
                &mut st,
                &mut |_, _, _, _| {},
            );
            self.penalty.final_sum = st.pen;
            self.penalty.final_pd = st.pd;
            self.penalty.final_stopped = st.stopped;
            self.penalty.final_upto = target;
        }
        self.accrued(t)
    }

    /// Unpaid penalty through day `t`.
    pub fn unpaid_penalty(&self, t: Date) -> Decimal {
        self.accrued(t) - self.penalty.paid - self.penalty.waived
    }

    /// How many constant-base stretches the accrual through day `t` is computed over: the cost of
    /// the closed form, which depends on events and due dates, not on the number of days.
    pub fn accrual_steps(&self, t: Date) -> usize {
        let mut n = 0;
        self.stretches(self.disbursed_on, t, t, &mut |_, _, _| n += 1);
        n
    }

    /// Penalty accrual stretches through day `t` with B as seen on `t` (for `explain`),
    /// adjacent stretches of equal base merged.
    pub fn accrual_trail(&self, t: Date) -> Vec<Stretch> {
        let mut out: Vec<Stretch> = Vec::new();
        let mut st = CapState {
            pen: Decimal::ZERO,
            pd: Decimal::ZERO,
            stopped: None,
        };
        self.walk(
            self.disbursed_on,
            t,
            t,
            &mut st,
            &mut |x0, x1, base, daily| {
                if base.is_zero() {
                    return;
                }
                let days = x0.days_until(x1);
                // Penalty day d is charged on B(d − 1): x in [x0, x1) are days x0+1 ..= x1.
                let (from, to) = (x0.next_day(), x1);
                match out.last_mut() {
                    Some(last)
                        if last.base == base
                            && last.daily == daily
                            && last.to.next_day() == from =>
                    {
                        last.to = to;
                        last.days += days;
                        last.subtotal += daily * Decimal::from(days);
                    }
                    _ => out.push(Stretch {
                        from,
                        to,
                        days,
                        base,
                        daily,
                        subtotal: daily * Decimal::from(days),
                    }),
                }
            },
        );
        out
    }

    /// Installments still part of the schedule, in allocation order (due date, then n).
    fn allocation_order(&self) -> Short<usize, 16> {
        let mut idx = Short::new(0);
        for (i, inst) in self.installments.iter().enumerate() {
            if !inst.removed {
                idx.push(i);
            }
        }
        idx.as_mut_slice()
            .sort_by_key(|&i| (self.installments[i].due_on, self.installments[i].n));
        idx
    }

    /// Days past due at the end of day `d`, from the recorded history (used for the stage
    /// before an extension, after same-day events may already have been applied).
    pub fn dpd_at_end_of(&self, d: Date) -> i64 {
        self.installments
            .iter()
            .filter_map(|i| i.state_at(d))
            .filter(|s| s.unpaid && s.due_on < d)
            .map(|s| s.due_on.days_until(d))
            .max()
            .unwrap_or(0)
    }

    /// Apply one event. Infallible: stored events are replayed whatever later-recorded,
    /// back-dated events did to the state they were checked against (SPEC §8 "Replay is total").
    pub fn apply(&mut self, ev: &Event, policy: &arrears_core::Policy) {
        let day = ev.business_date();
        let seq = ev.seq;
        debug_assert!(
            (day, seq) >= self.cursor,
            "events must be applied in (date, seq) order"
        );
        self.cursor = (day, seq);
        self.version = self.version.max(seq);
        match &ev.body {
            // A second disbursement never passes `decide`; replay ignores one if it is there.
            Body::Disbursed(_) => {}
            Body::Payment(p) => self.apply_payment(seq, day, p.amount.decimal()),
            Body::Missed(m) => {
                let due_on = self
                    .installments
                    .iter()
                    .find(|i| i.n == m.installment && !i.removed)
                    .map(|i| i.due_on);
                self.misses.push(MissRecord {
                    installment: m.installment,
                    due_on,
                    observed_on: m.observed_on,
                });
            }
            Body::NegotiatedExtension(x) => self.apply_extension(seq, x, policy),
            // A contact moves no money; a promise to pay is recorded.
            Body::Contact(c) => {
                if let Some(p) = &c.promise {
                    let stage_before = self.stage_at_end_of(day.prev_day().unwrap_or(day), policy);
                    // Payments of the same day applied before it count too.
                    let paid: Decimal = self
                        .allocations
                        .iter()
                        .filter(|a| a.on >= day)
                        .map(|a| a.amount)
                        .sum();
                    self.promises.push(PromiseRecord {
                        seq,
                        made_on: day,
                        on: p.on,
                        amount: p.amount.decimal(),
                        paid,
                        kept_on: (paid >= p.amount.decimal()).then_some(day),
                        stage_before,
                    });
                }
            }
        }
    }

    fn apply_payment(&mut self, seq: Seq, day: Date, amount: Decimal) {
        let unpaid_penalty = self.accrue(day) - self.penalty.paid - self.penalty.waived;
        let mut left = amount;
        let to_penalty = left.min(unpaid_penalty.max(Decimal::ZERO));
        self.penalty.paid += to_penalty;
        left -= to_penalty;
        let mut parts = Vec::new();
        for &i in self.allocation_order().as_mut_slice().iter() {
            if left.is_zero() {
                break;
            }
            let inst = &mut self.installments[i];
            let to_interest = left.min(inst.unpaid_interest());
            inst.paid_interest += to_interest;
            left -= to_interest;
            let to_principal = left.min(inst.unpaid_principal());
            inst.paid_principal += to_principal;
            left -= to_principal;
            if !to_interest.is_zero() || !to_principal.is_zero() {
                parts.push(Part {
                    n: inst.n,
                    interest: to_interest,
                    principal: to_principal,
                });
                inst.record(day, self.compound);
            }
        }
        self.overpaid += left;
        // The promise in force counts payments dated from its day to its date, until kept.
        if let Some(pr) = self.promises.last_mut() {
            if pr.kept_on.is_none() && pr.made_on <= day && day <= pr.on {
                pr.paid += amount;
                if pr.paid >= pr.amount {
                    pr.kept_on = Some(day);
                }
            }
        }
        // Money is conserved: every cent of the payment went to penalty, an installment's
        // interest or principal, or overpaid (a few additions per payment; on in release).
        let allocated: Decimal = to_penalty
            + parts
                .iter()
                .map(|p| p.interest + p.principal)
                .sum::<Decimal>()
            + left;
        assert_eq!(
            allocated, amount,
            "payment seq {seq} allocated {allocated} of {amount}"
        );
        self.allocations.push(Allocation {
            seq,
            on: day,
            amount,
            penalty: to_penalty,
            installments: parts,
            overpaid: left,
        });
    }

    fn apply_extension(&mut self, seq: Seq, x: &Extension, policy: &arrears_core::Policy) {
        let day = x.agreed_on;
        let stage_before = self.stage_at_end_of(day.prev_day().unwrap_or(day), policy);
        // 1. Penalty waiver, against what is unpaid through `agreed_on` (capped: replay is total).
        let unpaid_penalty =
            (self.accrue(day) - self.penalty.paid - self.penalty.waived).max(Decimal::ZERO);
        let waived_penalty = match x.waive_penalty {
            None => Decimal::ZERO,
            Some(Waiver::All) => unpaid_penalty,
            Some(Waiver::Amount(a)) => a.decimal().min(unpaid_penalty),
        };
        self.penalty.waived += waived_penalty;
        // 2. Interest waiver, oldest installment first.
        let mut left = x.waive_interest.map_or(Decimal::ZERO, Money::decimal);
        let mut waived_interest = Decimal::ZERO;
        for &i in self.allocation_order().as_mut_slice().iter() {
            if left.is_zero() {
                break;
            }
            let inst = &mut self.installments[i];
            let take = left.min(inst.unpaid_interest());
            inst.interest -= take;
            left -= take;
            waived_interest += take;
        }
        self.waived_interest += waived_interest;
        // 3. Reschedule.
        match &x.reschedule {
            Reschedule::NewDueOn(new_due) => {
                for inst in self.installments.iter_mut() {
                    if inst.is_unpaid() && inst.due_on < *new_due {
                        inst.due_on = *new_due;
                    }
                }
            }
            Reschedule::Restructure(plan) => {
                let mut next_n = self.installments.iter().map(|i| i.n).max().unwrap_or(0);
                for inst in self.installments.iter_mut() {
                    if !inst.is_unpaid() {
                        continue;
                    }
                    if inst.paid_principal.is_zero() && inst.paid_interest.is_zero() {
                        inst.removed = true;
                    } else {
                        // Cut down to what was paid; its unpaid interest is dropped, not waived.
                        inst.principal = inst.paid_principal;
                        inst.interest = inst.paid_interest;
                    }
                }
                for p in plan {
                    next_n += 1;
                    self.installments.push(Installment {
                        n: next_n,
                        due_on: p.due_on,
                        principal: p.principal.decimal(),
                        interest: p.interest.decimal(),
                        paid_principal: Decimal::ZERO,
                        paid_interest: Decimal::ZERO,
                        removed: false,
                        paid_on: None,
                        history: Vec::new(),
                    });
                }
            }
        }
        let compound = self.compound;
        for inst in self.installments.iter_mut() {
            inst.record(day, compound);
        }
        self.extensions.push(ExtensionRecord {
            seq,
            agreed_on: day,
            stage_before,
            waived_penalty,
            waived_interest,
        });
    }

    /// The promise in force at the end of day `x`: the last one made on or before it.
    pub fn promise_at(&self, x: Date) -> Option<&PromiseRecord> {
        self.promises.iter().rev().find(|p| p.made_on <= x)
    }

    /// The stage before the promise in force at the end of day `x`, when it is broken then.
    pub fn broken_promise_at(&self, x: Date) -> Option<Stage> {
        self.promise_at(x)
            .filter(|p| p.status_at(x) == PromiseStatus::Broken)
            .map(|p| p.stage_before)
    }

    /// The stage at the end of day `d`, from the recorded history. Used for the stage before an
    /// extension; `current`, `negotiated` and `settled` all rank below `grace`, so which of them
    /// it was does not matter to the broken-promise rule and is not distinguished here.
    fn stage_at_end_of(&self, d: Date, policy: &arrears_core::Policy) -> Stage {
        let dpd = self.dpd_at_end_of(d);
        let prior = self.extensions.iter().rev().find(|e| e.agreed_on <= d);
        crate::stage::stage(
            &StageInput {
                dpd,
                grace_days: self.grace_days,
                settled: false,
                extended: prior.is_some(),
                stage_before_last_extension: prior.map(|e| e.stage_before),
                broken_promise_to_pay: self.broken_promise_at(d),
            },
            policy,
        )
        .0
    }
}

#[cfg(test)]
mod tests {
    use super::Short;

    #[test]
    fn short_lists_spill_to_the_heap_in_order() {
        for n in [0usize, 1, 3, 4, 5, 9, 40] {
            let mut s: Short<usize, 4> = Short::new(0);
            for x in 0..n {
                s.push(x * 7 % 11);
            }
            let want: Vec<usize> = (0..n).map(|x| x * 7 % 11).collect();
            assert_eq!(s.as_mut_slice(), &want[..], "{n}");
            s.as_mut_slice().sort_unstable();
            let mut sorted = want.clone();
            sorted.sort_unstable();
            assert_eq!(s.as_mut_slice(), &sorted[..]);
        }
    }
}
