//! Human-readable output: the `show` and `explain` tables and the replay summary.

use std::fmt::Write;

use arrears_core::money::fmt_amount;
use arrears_projection::explain::Explain;
use arrears_projection::Projection;

use crate::ledger::Summary;

/// `show` without `--json`: stage and DPD at a glance, amounts right-aligned.
pub fn projection_table(p: &Projection) -> String {
    let mut s = String::new();
    let known = p
        .known_at
        .map(|t| format!(" as known at {}", arrears_core::event::fmt_timestamp(&t)))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "loan {}  as of {}{}  (policy {}, version {})",
        p.loan_id, p.as_of, known, p.policy, p.version
    );
    let _ = writeln!(
        s,
        "status {}  stage {}{}  DPD {}  class {}  bucket {}  extensions {}",
        p.status,
        p.stage.as_str(),
        if p.broken_promise {
            " (broken promise)"
        } else {
            ""
        },
        p.days_past_due,
        p.class,
        p.bucket,
        p.extensions
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<14}{:>16}{:>16}{:>16}{:>16}",
        p.currency, "principal", "interest", "penalty", "total"
    );
    let row = |s: &mut String, name: &str, a: [Option<rust_decimal::Decimal>; 4]| {
        let cell = |d: Option<rust_decimal::Decimal>| d.map(fmt_amount).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<14}{:>16}{:>16}{:>16}{:>16}",
            name,
            cell(a[0]),
            cell(a[1]),
            cell(a[2]),
            cell(a[3])
        );
    };
    row(
        &mut s,
        "outstanding",
        [
            Some(p.outstanding.principal.decimal()),
            Some(p.outstanding.interest.decimal()),
            Some(p.outstanding.penalty.decimal()),
            Some(p.outstanding.total.decimal()),
        ],
    );
    row(
        &mut s,
        "overdue",
        [
            Some(p.overdue.principal.decimal()),
            Some(p.overdue.interest.decimal()),
            None,
            None,
        ],
    );
    row(
        &mut s,
        "paid",
        [
            Some(p.paid.principal.decimal()),
            Some(p.paid.interest.decimal()),
            Some(p.paid.penalty.decimal()),
            None,
        ],
    );
    row(
        &mut s,
        "waived",
        [
            None,
            Some(p.waived.interest.decimal()),
            Some(p.waived.penalty.decimal()),
            None,
        ],
    );
    row(
        &mut s,
        "accrued",
        [None, None, Some(p.penalty_accrued.decimal()), None],
    );
    if !p.overpaid.is_zero() {
        row(
            &mut s,
            "overpaid",
            [None, None, None, Some(p.overpaid.decimal())],
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>4}  {:<10}{:>14}{:>12}{:>14}{:>12}  status",
        "n", "due on", "principal", "interest", "paid princ.", "paid int."
    );
    for i in &p.installments {
        let status = serde_json::to_value(i.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:>4}  {:<10}{:>14}{:>12}{:>14}{:>12}  {}",
            i.n,
            i.due_on,
            fmt_amount(i.principal),
            fmt_amount(i.interest),
            fmt_amount(i.paid_principal),
            fmt_amount(i.paid_interest),
            status
        );
    }
    if !p.anomalies.is_empty() {
        let _ = writeln!(s);
        for a in &p.anomalies {
            let kind = serde_json::to_value(a.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(s, "anomaly: {kind} (installment {})", a.installment);
        }
    }
    s
}

/// `explain` without `--json`: every stretch and allocation, re-addable by hand.
pub fn explain_table(e: &Explain) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "loan {}  as of {}  penalty rate {} per day",
        e.loan_id, e.as_of, e.penalty_rate_daily
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "penalty accrual (each day charged on the overdue base at the end of the day before)"
    );
    let _ = writeln!(
        s,
        "{:<12}{:<12}{:>6}{:>16}{:>12}{:>14}",
        "from", "to", "days", "base", "daily", "subtotal"
    );
    for st in &e.accrual {
        let _ = writeln!(
            s,
            "{:<12}{:<12}{:>6}{:>16}{:>12}{:>14}",
            st.from.to_string(),
            st.to.to_string(),
            st.days,
            fmt_amount(st.base),
            fmt_amount(st.daily_penalty),
            fmt_amount(st.subtotal)
        );
    }
    let _ = writeln!(
        s,
        "{:<30}{:>60}",
        "penalty accrued",
        fmt_amount(e.penalty_accrued)
    );
    if !e.payments.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "payments (penalty first, then installments by due date: interest, then principal)"
        );
        for p in &e.payments {
            let _ = writeln!(
                s,
                "  seq {:<5} {}  amount {:>12}",
                p.seq,
                p.on,
                fmt_amount(p.amount)
            );
            if !p.penalty.is_zero() {
                let _ = writeln!(s, "      penalty {:>28}", fmt_amount(p.penalty));
            }
            for part in &p.installments {
                let _ = writeln!(
                    s,
                    "      installment {:<4} interest {:>12}  principal {:>12}",
                    part.installment,
                    fmt_amount(part.interest),
                    fmt_amount(part.principal)
                );
            }
            if !p.overpaid.is_zero() {
                let _ = writeln!(s, "      overpaid {:>27}", fmt_amount(p.overpaid));
            }
        }
    }
    if !e.extensions.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "extensions");
        for x in &e.extensions {
            let _ = writeln!(
                s,
                "  seq {:<5} {}  waived penalty {}  waived interest {}  stage before {}",
                x.seq,
                x.agreed_on,
                fmt_amount(x.waived_penalty),
                fmt_amount(x.waived_interest),
                x.stage_before.as_str()
            );
        }
    }
    s
}

/// The closing summary of `replay` and `demo`.
pub fn summary_table(sum: &Summary, elapsed: std::time::Duration) -> String {
    let mut s = String::new();
    let secs = elapsed.as_secs_f64();
    let _ = writeln!(s, "loans       {:>14}", sum.loans);
    let _ = writeln!(s, "events      {:>14}", sum.events);
    if sum.from_snapshots > 0 {
        let _ = writeln!(s, "from snapshots {:>11}", sum.from_snapshots);
    }
    let _ = writeln!(
        s,
        "outstanding {:>14}  (total owed)",
        fmt_amount(sum.outstanding)
    );
    let _ = writeln!(
        s,
        "  penalty   {:>14}  (penalty owed)",
        fmt_amount(sum.penalty_owed)
    );
    let _ = writeln!(
        s,
        "accrued     {:>14}  (all penalty ever accrued, paid and waived included)",
        fmt_amount(sum.penalty_accrued)
    );
    let _ = writeln!(s, "by stage:");
    for st in arrears_projection::Stage::ALL {
        let n = sum.loans_in(st);
        if n > 0 {
            let _ = writeln!(
                s,
                "  {:<16}{:>9}  {:>5.1}%",
                st.as_str(),
                n,
                100.0 * n as f64 / sum.loans.max(1) as f64
            );
        }
    }
    let per_second = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    // From snapshots a loan's events are not read: the rate that means something is loans.
    let rate = if sum.from_snapshots > 0 {
        format!("{:.0} loans/s", per_second(sum.loans))
    } else {
        format!("{:.0} events/s", per_second(sum.events))
    };
    let _ = writeln!(s, "elapsed     {:>13.3}s  ({rate})", secs);
    s
}

/// What an event says in brief: its own fields other than the envelope, `key=value`, lists
/// shown as their length. Kind-agnostic (read from the event's JSON), so a new event kind needs
/// nothing here.
pub fn event_details(ev: &arrears_core::Event) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ev.to_json()).unwrap_or(serde_json::Value::Null);
    let mut details = Vec::new();
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if matches!(
                k.as_str(),
                "event_id" | "loan_id" | "seq" | "recorded_at" | "type" | "prev_hash" | "hash"
            ) {
                continue;
            }
            let text = match val {
                serde_json::Value::String(t) => t.clone(),
                serde_json::Value::Array(a) => format!("[{} items]", a.len()),
                other => other.to_string(),
            };
            details.push(format!("{k}={text}"));
        }
    }
    details.join(" ")
}

/// `events` on a terminal: one row per stored event, oldest first, with what it says in brief.
/// Kind-agnostic: the details are the event's own fields (from its JSON), so a new event kind
/// needs nothing here.
pub fn events_table(events: &[arrears_core::Event]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>4}  {:<20}  {:<10}  {:<20}  details",
        "seq", "recorded_at", "date", "type"
    );
    for ev in events {
        let details = event_details(ev);
        let _ = writeln!(
            s,
            "{:>4}  {:<20}  {:<10}  {:<20}  {}",
            ev.seq,
            arrears_core::event::fmt_timestamp(&ev.recorded_at),
            ev.business_date(),
            ev.body.kind(),
            details
        );
    }
    s
}
