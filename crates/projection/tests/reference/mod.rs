//! A deliberately naive day-by-day reference of SPEC §3–§8, written separately from the
//! closed-form projection. It walks every calendar day from the disbursement to the as-of date,
//! records every installment's end-of-day state in a per-day table, and recomputes the penalty
//! accrued from scratch (Σ over every past day) whenever it is needed. Slow on purpose: O(days²).
//! It builds the SPEC §7 object as a `serde_json::Value` so that no output type is shared.

use std::collections::BTreeMap;

use arrears_core::event::{Body, Event, Reschedule, Waiver};
use arrears_core::money::fmt_amount;
use chrono::{Days, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

type D = NaiveDate;

fn r2(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[derive(Clone, Debug)]
struct Inst {
    n: u32,
    due: D,
    principal: Decimal,
    interest: Decimal,
    paid_p: Decimal,
    paid_i: Decimal,
    removed: bool,
}

impl Inst {
    fn unpaid(&self) -> bool {
        !self.removed && (self.principal > self.paid_p || self.interest > self.paid_i)
    }
}

/// End-of-day state of one installment.
#[derive(Clone, Copy, Debug)]
struct Eod {
    due: D,
    base: Decimal,
    unpaid: bool,
    /// Unpaid principal; interest charged if x ≥ due; interest paid (docs/rules.md §R5).
    principal: Decimal,
    interest: Decimal,
    paid_interest: Decimal,
}

struct World {
    on: D,
    grace: i64,
    compound: bool,
    rate: Decimal,
    /// The cost cap's annual rate when penalty stops at the cap.
    cap: Option<Decimal>,
    insts: Vec<Inst>,
    /// table[day index][installment index] (None: did not exist yet)
    table: Vec<Vec<Option<Eod>>>,
    pen_paid: Decimal,
    pen_waived: Decimal,
    int_waived: Decimal,
    overpaid: Decimal,
    /// (agreed_on, stage before as a rank + name)
    exts: Vec<(D, (u8, &'static str))>,
    misses: Vec<(u32, Option<D>)>,
    paid_on: BTreeMap<u32, D>,
    /// Every payment applied so far: (date, amount).
    payments: Vec<(D, Decimal)>,
    /// Promises to pay in the order made: (made_on, on, amount, stage before).
    promises: Vec<(D, D, Decimal, (u8, &'static str))>,
}

fn plus(d: D, n: i64) -> D {
    if n >= 0 {
        d.checked_add_days(Days::new(n as u64)).unwrap()
    } else {
        d.checked_sub_days(Days::new((-n) as u64)).unwrap()
    }
}

impl World {
    fn idx(&self, d: D) -> usize {
        (d - self.on).num_days() as usize
    }

    fn eod(&self, i: usize, x: D) -> Option<Eod> {
        if x < self.on {
            return None;
        }
        self.table
            .get(self.idx(x))
            .and_then(|row| row.get(i).copied().flatten())
    }

    /// B(x) as seen on day t, straight from the definition.
    fn b(&self, x: D, t: D) -> Decimal {
        let mut sum = Decimal::ZERO;
        for i in 0..self.insts.len() {
            let Some(s) = self.eod(i, x) else { continue };
            if !s.unpaid || x < s.due {
                continue;
            }
            let last_grace = plus(s.due, self.grace);
            if plus(last_grace, 1) > t {
                continue; // default not visible yet
            }
            let defaulted = self
                .eod(i, last_grace)
                .map(|g| g.due == s.due && g.unpaid)
                .unwrap_or(false);
            if defaulted {
                sum += s.base;
            }
        }
        sum
    }

    /// Penalty accrued through day t: Σ_{d = on+1}^{t} round(B(d − 1) × rate), each day checked
    /// against the cost cap when it stops penalty: day d is charged in full while
    /// 365 × (I(d − 1) + Pen(d − 1) + full) ≤ cap × Σ_{y < d} P(y), else the whole cents left
    /// and nothing from then on.
    fn accrued(&self, t: D) -> Decimal {
        let mut total = Decimal::ZERO;
        let mut pd = Decimal::ZERO;
        let mut stopped = false;
        let mut d = plus(self.on, 1);
        while d <= t {
            let x = plus(d, -1);
            let full = r2(self.b(x, t) * self.rate);
            match self.cap {
                None => total += full,
                Some(cap) => {
                    let (mut p, mut i) = (Decimal::ZERO, Decimal::ZERO);
                    for k in 0..self.insts.len() {
                        if let Some(s) = self.eod(k, x) {
                            p += s.principal;
                            i += if x >= s.due {
                                s.interest
                            } else {
                                s.paid_interest
                            };
                        }
                    }
                    pd += p;
                    if !stopped {
                        let h = cap * pd - Decimal::from(365) * (i + total);
                        if Decimal::from(365) * full <= h {
                            total += full;
                        } else {
                            // The largest whole cents c with 365 × c ≤ h, by counting down.
                            let mut c = full;
                            while c > Decimal::ZERO && Decimal::from(365) * c > h {
                                c -= Decimal::new(1, 2);
                            }
                            total += c.max(Decimal::ZERO);
                            stopped = true;
                        }
                    }
                }
            }
            d = plus(d, 1);
        }
        total
    }

    fn record_day(&mut self, d: D) {
        let row: Vec<Option<Eod>> = self
            .insts
            .iter()
            .map(|i| {
                let unpaid = i.unpaid();
                let base = if i.removed {
                    Decimal::ZERO
                } else if self.compound {
                    (i.principal - i.paid_p) + (i.interest - i.paid_i)
                } else {
                    i.principal - i.paid_p
                };
                Some(Eod {
                    due: i.due,
                    base,
                    unpaid,
                    principal: if i.removed {
                        Decimal::ZERO
                    } else {
                        i.principal - i.paid_p
                    },
                    interest: if i.removed { Decimal::ZERO } else { i.interest },
                    paid_interest: if i.removed { Decimal::ZERO } else { i.paid_i },
                })
            })
            .collect();
        let k = self.idx(d);
        if self.table.len() == k {
            self.table.push(row);
        } else {
            self.table[k] = row;
        }
        for i in &self.insts {
            if !i.removed && !i.unpaid() {
                self.paid_on.entry(i.n).or_insert(d);
            }
        }
    }

    fn order(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.insts.len())
            .filter(|&i| !self.insts[i].removed)
            .collect();
        v.sort_by_key(|&i| (self.insts[i].due, self.insts[i].n));
        v
    }

    /// The stage before the promise in force at the end of day x, if it is broken then: the
    /// last promise made by x, with the payments dated from its day to min(on, x) summed again.
    fn promise_broken(&self, x: D) -> Option<(u8, &'static str)> {
        let (made, on, amount, before) = *self.promises.iter().rev().find(|p| p.0 <= x)?;
        let upto = if on < x { on } else { x };
        let paid: Decimal = self
            .payments
            .iter()
            .filter(|(d, _)| *d >= made && *d <= upto)
            .map(|(_, a)| *a)
            .sum();
        (paid < amount && x > on).then_some(before)
    }

    /// The stage at the end of day x (before any event of the next day).
    fn stage_eod(&self, x: D) -> (u8, &'static str) {
        if x < self.on {
            return (0, "current");
        }
        let last = self
            .exts
            .iter()
            .rev()
            .find(|(d, _)| *d <= x)
            .map(|(_, s)| *s);
        stage_of(
            self.dpd_eod(x),
            self.grace,
            false,
            last,
            self.promise_broken(x),
        )
        .0
    }

    fn dpd_eod(&self, d: D) -> i64 {
        let mut dpd = 0;
        for i in 0..self.insts.len() {
            if let Some(s) = self.eod(i, d) {
                if s.unpaid && s.due < d {
                    dpd = dpd.max((d - s.due).num_days());
                }
            }
        }
        dpd
    }
}

fn stage_by_dpd(dpd: i64) -> (u8, &'static str) {
    match dpd {
        1..=3 => (2, "reminder"),
        4..=15 => (3, "phone"),
        16..=30 => (4, "written_notice"),
        31..=60 => (5, "outsourced"),
        _ => (6, "legal"),
    }
}

/// Stage from DPD, grace, settled, extensions: returns ((rank, name), broken_promise).
fn stage_of(
    dpd: i64,
    grace: i64,
    settled: bool,
    ext_before: Option<(u8, &'static str)>,
    promise_before: Option<(u8, &'static str)>,
) -> ((u8, &'static str), bool) {
    if settled {
        return ((0, "settled"), false);
    }
    if dpd == 0 {
        return (
            if ext_before.is_some() {
                (0, "negotiated")
            } else {
                (0, "current")
            },
            false,
        );
    }
    if dpd <= grace {
        return ((1, "grace"), false);
    }
    let mut s = stage_by_dpd(dpd);
    for b in [ext_before, promise_before].into_iter().flatten() {
        if b.0 > s.0 {
            s = b;
        }
    }
    (s, ext_before.is_some() || promise_before.is_some())
}

fn a(x: Decimal) -> Value {
    Value::String(fmt_amount(x))
}

/// The reference projection; `None` when no disbursement counts.
pub fn project(
    events: &[Event],
    as_of: D,
    known_at: Option<chrono::DateTime<chrono::Utc>>,
    policy_name: &str,
) -> Option<Value> {
    project_capped(events, as_of, known_at, policy_name, None)
}

/// The reference projection under a policy whose penalty stops at the cost cap `cap`.
pub fn project_capped(
    events: &[Event],
    as_of: D,
    known_at: Option<chrono::DateTime<chrono::Utc>>,
    policy_name: &str,
    cap: Option<Decimal>,
) -> Option<Value> {
    let mut evs: Vec<&Event> = events
        .iter()
        .filter(|e| known_at.is_none_or(|t| e.recorded_at <= t))
        .filter(|e| e.business_date().naive() <= as_of)
        .collect();
    // recorded_at is monotone along seq, but filter rather than assume it.
    evs.sort_by_key(|e| (e.business_date(), e.seq));
    let first = evs.first()?;
    let Body::Disbursed(dis) = &first.body else {
        return None;
    };
    if first.seq.get() != 1 {
        return None;
    }
    let mut w = World {
        on: dis.on.naive(),
        grace: dis.terms.grace_days as i64,
        compound: dis.terms.compound,
        rate: dis.terms.penalty_rate_daily().decimal(),
        cap,
        insts: dis
            .schedule
            .iter()
            .map(|s| Inst {
                n: s.n,
                due: s.due_on.naive(),
                principal: s.principal.decimal(),
                interest: s.interest.decimal(),
                paid_p: Decimal::ZERO,
                paid_i: Decimal::ZERO,
                removed: false,
            })
            .collect(),
        table: Vec::new(),
        pen_paid: Decimal::ZERO,
        pen_waived: Decimal::ZERO,
        int_waived: Decimal::ZERO,
        overpaid: Decimal::ZERO,
        exts: Vec::new(),
        misses: Vec::new(),
        paid_on: BTreeMap::new(),
        payments: Vec::new(),
        promises: Vec::new(),
    };
    let version = evs.iter().map(|e| e.seq.get()).max().unwrap();
    let mut day = w.on;
    let mut k = 1; // next event (the disbursement is index 0)
    loop {
        while k < evs.len() && evs[k].business_date().naive() == day {
            let e = evs[k];
            k += 1;
            match &e.body {
                Body::Disbursed(_) => {}
                Body::Contact(c) => {
                    if let Some(p) = &c.promise {
                        let before = w.stage_eod(plus(day, -1));
                        w.promises
                            .push((day, p.on.naive(), p.amount.decimal(), before));
                    }
                }
                Body::Payment(p) => {
                    w.payments.push((day, p.amount.decimal()));
                    let unpaid_pen = w.accrued(day) - w.pen_paid - w.pen_waived;
                    let mut left = p.amount.decimal();
                    let to_pen = left.min(unpaid_pen.max(Decimal::ZERO));
                    w.pen_paid += to_pen;
                    left -= to_pen;
                    for i in w.order() {
                        let inst = &mut w.insts[i];
                        let x = left.min(inst.interest - inst.paid_i);
                        inst.paid_i += x;
                        left -= x;
                        let y = left.min(inst.principal - inst.paid_p);
                        inst.paid_p += y;
                        left -= y;
                    }
                    w.overpaid += left;
                }
                Body::Missed(m) => {
                    let due = w
                        .insts
                        .iter()
                        .find(|i| i.n == m.installment && !i.removed)
                        .map(|i| i.due);
                    w.misses.push((m.installment, due));
                }
                Body::NegotiatedExtension(x) => {
                    // Stage at the end of the previous day, from the per-day table.
                    let before = w.stage_eod(plus(day, -1));
                    let unpaid_pen =
                        (w.accrued(day) - w.pen_paid - w.pen_waived).max(Decimal::ZERO);
                    w.pen_waived += match x.waive_penalty {
                        None => Decimal::ZERO,
                        Some(Waiver::All) => unpaid_pen,
                        Some(Waiver::Amount(v)) => v.decimal().min(unpaid_pen),
                    };
                    let mut left = x.waive_interest.map_or(Decimal::ZERO, |m| m.decimal());
                    for i in w.order() {
                        let inst = &mut w.insts[i];
                        let t = left.min(inst.interest - inst.paid_i);
                        inst.interest -= t;
                        left -= t;
                        w.int_waived += t;
                    }
                    match &x.reschedule {
                        Reschedule::NewDueOn(nd) => {
                            for inst in w.insts.iter_mut() {
                                if inst.unpaid() && inst.due < nd.naive() {
                                    inst.due = nd.naive();
                                }
                            }
                        }
                        Reschedule::Restructure(plan) => {
                            let mut n = w.insts.iter().map(|i| i.n).max().unwrap_or(0);
                            for inst in w.insts.iter_mut() {
                                if inst.unpaid() {
                                    if inst.paid_p.is_zero() && inst.paid_i.is_zero() {
                                        inst.removed = true;
                                    } else {
                                        inst.principal = inst.paid_p;
                                        inst.interest = inst.paid_i;
                                    }
                                }
                            }
                            for p in plan {
                                n += 1;
                                w.insts.push(Inst {
                                    n,
                                    due: p.due_on.naive(),
                                    principal: p.principal.decimal(),
                                    interest: p.interest.decimal(),
                                    paid_p: Decimal::ZERO,
                                    paid_i: Decimal::ZERO,
                                    removed: false,
                                });
                                // Rows recorded before this day have no entry for it: pad.
                                for row in w.table.iter_mut() {
                                    row.push(None);
                                }
                            }
                        }
                    }
                    w.exts.push((day, before));
                }
            }
            // Intermediate end-of-day state (overwritten by later same-day events).
            w.record_day(day);
        }
        w.record_day(day);
        if day >= as_of {
            break;
        }
        day = plus(day, 1);
    }

    let d = as_of;
    let accrued = w.accrued(d);
    let out_pen = accrued - w.pen_paid - w.pen_waived;
    let (mut op, mut oi, mut vp, mut vi, mut pp, mut pi) = (
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
    );
    let mut dpd = 0i64;
    let mut insts = Vec::new();
    let mut anomalies: Vec<(u32, &'static str)> = Vec::new();
    let mut live: Vec<&Inst> = w.insts.iter().filter(|i| !i.removed).collect();
    live.sort_by_key(|i| i.n);
    for i in &live {
        pp += i.paid_p;
        pi += i.paid_i;
        let status = if !i.unpaid() {
            "paid"
        } else if i.due > d {
            "future"
        } else if d <= plus(i.due, w.grace) {
            "due"
        } else {
            "overdue"
        };
        if i.unpaid() {
            op += i.principal - i.paid_p;
            oi += i.interest - i.paid_i;
            if i.due < d {
                dpd = dpd.max((d - i.due).num_days());
            }
        }
        if status == "overdue" {
            vp += i.principal - i.paid_p;
            vi += i.interest - i.paid_i;
            if !w
                .misses
                .iter()
                .any(|(n, due)| *n == i.n && *due == Some(i.due))
            {
                anomalies.push((i.n, "unrecorded_miss"));
            }
        }
        insts.push(json!({"n": i.n, "due_on": i.due.to_string(), "principal": a(i.principal), "interest": a(i.interest),
            "paid_principal": a(i.paid_p), "paid_interest": a(i.paid_i), "status": status}));
    }
    for (n, due) in &w.misses {
        if let (Some(due), Some(p)) = (due, w.paid_on.get(n)) {
            if *p <= plus(*due, w.grace) {
                anomalies.push((*n, "missed_but_paid"));
            }
        }
    }
    anomalies.sort();
    anomalies.dedup();
    let settled = op.is_zero() && oi.is_zero() && out_pen.is_zero();
    let ext_before = w.exts.last().map(|(_, s)| *s);
    let ((_, stage), broken) = stage_of(dpd, w.grace, settled, ext_before, w.promise_broken(d));
    let mut class = match dpd {
        0 => 0,
        1..=90 => 1,
        91..=270 => 2,
        271..=360 => 3,
        _ => 4,
    };
    if !w.exts.is_empty() && !settled && class == 0 {
        class = 1;
    }
    let class = [
        "normal",
        "special_mention",
        "substandard",
        "doubtful",
        "loss",
    ][class];
    let bucket = if dpd == 0 {
        "M0".to_owned()
    } else if dpd > 180 {
        "M7+".to_owned()
    } else {
        format!("M{}", (dpd + 29) / 30)
    };
    let mut out = json!({
        "loan_id": first.loan_id.to_string(),
        "as_of": as_of.to_string(),
        "known_at": known_at.map(|t| arrears_core::event::fmt_timestamp(&t)),
        "version": version,
        "policy": policy_name,
        "currency": dis.currency,
        "status": if settled { "settled" } else { "active" },
        "outstanding": {"principal": a(op), "interest": a(oi), "penalty": a(out_pen), "total": a(op + oi + out_pen)},
        "overdue": {"principal": a(vp), "interest": a(vi)},
        "paid": {"principal": a(pp), "interest": a(pi), "penalty": a(w.pen_paid)},
        "waived": {"penalty": a(w.pen_waived), "interest": a(w.int_waived)},
        "penalty_accrued": a(accrued),
        "overpaid": a(w.overpaid),
        "days_past_due": dpd,
        "stage": stage,
        "class": class,
        "bucket": bucket,
        "extensions": w.exts.len(),
        "broken_promise": broken,
        "installments": insts,
        "anomalies": anomalies.iter().map(|(n, k)| json!({"kind": k, "installment": n})).collect::<Vec<_>>(),
    });
    if let Some(&(made, on, amount, _)) = w.promises.last() {
        // Kept: the running sum of payments dated made ..= min(on, d) reached the amount; the
        // shown `paid` stops at the payment that kept it.
        let upto = if on < d { on } else { d };
        let mut run = Decimal::ZERO;
        for (_, x) in w.payments.iter().filter(|(x, _)| *x >= made && *x <= upto) {
            if run >= amount {
                break;
            }
            run += *x;
        }
        let status = if run >= amount {
            "kept"
        } else if d > on {
            "broken"
        } else {
            "open"
        };
        out["promise"] = json!({"made_on": made.to_string(), "on": on.to_string(), "amount": a(amount), "paid": a(run), "status": status});
    }
    Some(out)
}

/// The naive compliance reference (docs/rules.md §R2): for each contact with a local date ≤
/// `as_of`, the rules it breaks as (seq, rule name), in (at, seq) then rule order. Written from
/// the reference's own day-by-day projection, re-scanning the contacts for every contact.
pub fn compliance(
    events: &[Event],
    as_of: D,
    policy: &arrears_core::Policy,
) -> Vec<(u64, &'static str)> {
    use arrears_core::event::{Channel, Outcome, Party};
    let tz = policy.time_zone;
    let r = &policy.contact;
    let mut cs: Vec<(&Event, &arrears_core::event::Contact)> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Contact(c) => Some((e, c)),
            _ => None,
        })
        .collect();
    cs.sort_by_key(|(e, c)| (c.at, e.seq));
    let local = |c: &arrears_core::event::Contact| c.at.with_timezone(&tz).naive_local();
    let rank = |s: &str| match s {
        "grace" => 1,
        "reminder" => 2,
        "phone" => 3,
        "written_notice" => 4,
        "outsourced" => 5,
        "legal" => 6,
        _ => 0,
    };
    let mut out = Vec::new();
    for (k, (e, c)) in cs.iter().enumerate() {
        let lt = local(c);
        let day = lt.date();
        if day > as_of {
            continue;
        }
        let minutes = |t: chrono::NaiveTime| {
            use chrono::Timelike;
            t.hour() * 3600 + t.minute() * 60 + t.second()
        };
        let (from, to, now) = (
            minutes(r.hours.from),
            minutes(r.hours.to),
            minutes(lt.time()),
        );
        let timed = !matches!(
            c.channel,
            Channel::Letter | Channel::AgencyHandover | Channel::LegalFiling
        );
        if timed && (now < from || now >= to) {
            out.push((e.seq.get(), "contact_hours"));
        }
        let is_borrower_call = |c: &arrears_core::event::Contact| {
            c.channel == Channel::Call && c.party == Party::Borrower
        };
        if is_borrower_call(c) {
            let nth = cs[..=k]
                .iter()
                .filter(|(_, o)| is_borrower_call(o) && local(o).date() == day)
                .count();
            if nth > r.max_calls_per_day as usize {
                out.push((e.seq.get(), "calls_per_day"));
            }
        }
        if c.party != Party::Borrower {
            if c.outcome == Outcome::PromiseToPay
                || !matches!(c.channel, Channel::Call | Channel::Visit)
            {
                out.push((e.seq.get(), "third_party_disclosure"));
            }
            let mut failed = 0;
            for (_, o) in cs[..k].iter().rev() {
                if o.party != Party::Borrower {
                    continue;
                }
                if matches!(
                    o.outcome,
                    Outcome::Reached | Outcome::PromiseToPay | Outcome::Refused
                ) {
                    break;
                }
                if o.channel == Channel::Call {
                    failed += 1;
                }
            }
            if failed < r.third_party_after_failed_calls {
                out.push((e.seq.get(), "third_party_contact"));
            }
        }
        let before: Vec<Event> = events
            .iter()
            .filter(|x| x.business_date().naive() < day)
            .cloned()
            .collect();
        let Some(p) = project(&before, day, None, &policy.name) else {
            continue;
        };
        if p["status"] == "settled" {
            out.push((e.seq.get(), "contact_after_settlement"));
            continue;
        }
        let stage = rank(p["stage"].as_str().unwrap());
        let need = |x: arrears_core::policy::Escalation| rank(x.as_str());
        match c.channel {
            Channel::Visit if stage < need(r.visit_from) => {
                out.push((e.seq.get(), "visit_before_stage"))
            }
            Channel::AgencyHandover if stage < need(r.agency_handover_from) => {
                out.push((e.seq.get(), "agency_before_stage"))
            }
            Channel::LegalFiling if stage < need(r.legal_filing_from) => {
                out.push((e.seq.get(), "legal_filing_before_stage"))
            }
            _ => {}
        }
    }
    out
}
