//! `arrears report LOAN --as-of D --html FILE` and the server's `/loans/{id}/report`: one
//! self-contained HTML page about one loan (no script, no network: inline CSS and SVG).
//!
//! Pure: [`render`] takes the loan's events, its projection at D, its `explain` trail and its
//! projections at the chart's dates, and returns the page. [`build`] computes those from the
//! events (the projection is a pure function, so each chart point is one `replay`). Every number
//! shown is the projection's own, formatted as in the §7 JSON; the key figures sit in elements
//! with a `data-field` attribute named after their JSON path (`outstanding.total`), so a test can
//! read them back from the rendered DOM. Every text is HTML-escaped.

use std::collections::BTreeSet;
use std::fmt::Write;

use chrono::Days;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use arrears_core::event::{fmt_timestamp, Body, Date, Event, Repayment, Timestamp};
use arrears_core::money::fmt_amount;
use arrears_core::Policy;
use arrears_projection::explain::Explain;
use arrears_projection::view::InstallmentStatus;
use arrears_projection::{replay, Projection, Stage};

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The days the chart is computed on, ascending, within [disbursement, `as_of`]: the
/// disbursement, each counted event's business date and the day before it, each due date (of the
/// schedule in force at any of those days) with the end of its grace window, the first day its
/// default is visible and the first day of each escalation stage, and `as_of`. Between two of
/// these days nothing but the daily penalty changes, and it changes linearly, so straight lines
/// between the points are the exact curve.
pub fn chart_dates(
    events: &[Event],
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: &Policy,
) -> Vec<Date> {
    let counted = arrears_projection::counted(events, as_of, known_at);
    let Some(start) = counted.first().map(|e| e.business_date()) else {
        return Vec::new();
    };
    let grace = counted
        .iter()
        .find_map(|e| match &e.body {
            Body::Disbursed(d) => Some(d.terms.grace_days),
            _ => None,
        })
        .unwrap_or(0);
    let mut days: BTreeSet<Date> = BTreeSet::new();
    days.insert(start);
    days.insert(as_of);
    for e in &counted {
        let d = e.business_date();
        days.insert(d);
        if let Some(prev) = d.prev_day() {
            days.insert(prev);
        }
    }
    // Due dates as scheduled at each of those days (an extension moves them).
    let mut dues: BTreeSet<Date> = BTreeSet::new();
    for d in days.clone() {
        if let Some(p) = replay(events, d, known_at, policy) {
            dues.extend(p.installments.iter().map(|i| i.due_on));
        }
    }
    let t = &policy.stages;
    let offsets = [
        0,
        grace as u64,
        grace as u64 + 1,
        1,
        t.phone_from_dpd as u64,
        t.written_notice_from_dpd as u64,
        t.outsourced_from_dpd as u64,
        t.legal_from_dpd as u64,
    ];
    for due in dues {
        for k in offsets {
            if let Some(d) = due.naive().checked_add_days(Days::new(k)).map(Date::new) {
                days.insert(d);
            }
        }
    }
    days.into_iter()
        .filter(|d| *d >= start && *d <= as_of)
        .collect()
}

/// Everything the page needs, computed from one loan's events (as stored, or as known at
/// `known_at`). `None` when no disbursement counts at `as_of`.
pub fn build(
    events: &[Event],
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: &Policy,
) -> Option<String> {
    let loan = arrears_projection::fold(events, as_of, known_at, policy)?;
    let projection = arrears_projection::project(&loan, as_of, known_at, policy);
    let explain = arrears_projection::explain::explain(&loan, as_of);
    let points: Vec<Projection> = chart_dates(events, as_of, known_at, policy)
        .into_iter()
        .filter_map(|d| replay(events, d, known_at, policy))
        .collect();
    Some(render(events, &projection, &explain, &points))
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;color:#1d2430;margin:24px auto;max-width:1120px;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d7dce3;padding-bottom:4px}
.sub{color:#5a6474;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid #d7dce3;border-radius:6px;padding:8px 10px;background:#f8f9fb}
.card .k{font-size:12px;color:#5a6474}.card .v{font-size:18px;font-weight:600;font-variant-numeric:tabular-nums}
.stage{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e6e9ee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;font-size:13px}
td.n,th.n{text-align:right}
td{white-space:nowrap}td.w{white-space:normal;overflow-wrap:anywhere}
.facts td:first-child{color:#5a6474;width:220px}
.st-paid{color:#2e7d32}.st-overdue{color:#c62828;font-weight:600}.st-due{color:#ef6c00}.st-future{color:#5a6474}
.none{color:#5a6474;font-style:italic}
.anom{color:#c62828;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#1d2430}
.legend span{display:inline-block;margin-right:16px;font-size:13px}
.sw{display:inline-block;width:12px;height:12px;vertical-align:-1px;margin-right:4px;border-radius:2px}
footer{margin-top:32px;color:#5a6474;font-size:12px}
"#;

const C_PRINCIPAL: &str = "#4e79a7";
const C_INTEREST: &str = "#f28e2b";
const C_PENALTY: &str = "#e15759";
const C_PAYMENT: &str = "#2e7d32";
const C_DEFAULT: &str = "#c62828";
const C_MISSED: &str = "#ef6c00";
const C_EXTENSION: &str = "#7b1fa2";
const C_DUE: &str = "#5a6474";

fn stage_colour(s: Stage) -> &'static str {
    match s {
        Stage::Current => "#4e79a7",
        Stage::Negotiated => "#7b1fa2",
        Stage::Settled => "#2e7d32",
        Stage::Grace => "#9e9d24",
        Stage::Reminder => "#f9a825",
        Stage::Phone => "#ef6c00",
        Stage::WrittenNotice => "#e64a19",
        Stage::Outsourced => "#c62828",
        Stage::Legal => "#6a1b1b",
    }
}

fn amt(d: impl Into<Decimal>) -> String {
    fmt_amount(d)
}

/// A key figure: `<div class="card"><div class="k">label</div><div class="v" data-field=…>`.
fn card(s: &mut String, label: &str, field: &str, value: &str) {
    let _ = write!(
        s,
        r#"<div class="card"><div class="k">{}</div><div class="v" data-field="{}">{}</div></div>"#,
        esc(label),
        esc(field),
        esc(value)
    );
}

/// The page.
pub fn render(events: &[Event], p: &Projection, e: &Explain, points: &[Projection]) -> String {
    let counted: Vec<&Event> = arrears_projection::counted(events, p.as_of, p.known_at);
    let later = events
        .iter()
        .filter(|ev| p.known_at.is_none_or(|t| ev.recorded_at <= t))
        .count()
        - counted.len();
    let known = p
        .known_at
        .map(|t| format!(", as known at {}", fmt_timestamp(&t)))
        .unwrap_or_default();
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Loan {id} as of {asof}</title><style>{CSS}</style></head><body>\n",
        id = esc(&p.loan_id.to_string()),
        asof = p.as_of,
    );
    let _ = write!(
        s,
        "<h1>Loan <span data-field=\"loan_id\">{}</span></h1>\n<p class=\"sub\">As of \
         <span data-field=\"as_of\">{}</span>{} &middot; policy <span data-field=\"policy\">{}</span> \
         &middot; version <span data-field=\"version\">{}</span> (events through seq {})</p>\n",
        esc(&p.loan_id.to_string()),
        p.as_of,
        esc(&known),
        esc(&p.policy),
        p.version,
        p.version
    );

    // Key figures.
    s.push_str("<h2>Position</h2>\n<div class=\"cards\">");
    let total = format!("outstanding total ({})", esc(&p.currency));
    for (label, field, value) in [
        (
            total.as_str(),
            "outstanding.total",
            amt(p.outstanding.total),
        ),
        (
            "outstanding principal",
            "outstanding.principal",
            amt(p.outstanding.principal),
        ),
        (
            "outstanding interest",
            "outstanding.interest",
            amt(p.outstanding.interest),
        ),
        (
            "outstanding penalty",
            "outstanding.penalty",
            amt(p.outstanding.penalty),
        ),
        (
            "days past due",
            "days_past_due",
            p.days_past_due.to_string(),
        ),
    ] {
        card(&mut s, label, field, &value);
    }
    let _ = write!(
        s,
        r#"<div class="card"><div class="k">stage</div><div class="v"><span class="stage" style="background:{}" data-field="stage">{}</span>{}</div></div>"#,
        stage_colour(p.stage),
        esc(p.stage.as_str()),
        if p.broken_promise {
            " <small>(broken promise)</small>"
        } else {
            ""
        }
    );
    for (label, field, value) in [
        ("status", "status", p.status.to_string()),
        ("class", "class", p.class.to_string()),
        ("bucket", "bucket", p.bucket.to_string()),
        ("extensions", "extensions", p.extensions.to_string()),
        (
            "overdue principal",
            "overdue.principal",
            amt(p.overdue.principal),
        ),
        (
            "overdue interest",
            "overdue.interest",
            amt(p.overdue.interest),
        ),
        ("paid principal", "paid.principal", amt(p.paid.principal)),
        ("paid interest", "paid.interest", amt(p.paid.interest)),
        ("paid penalty", "paid.penalty", amt(p.paid.penalty)),
        ("penalty accrued", "penalty_accrued", amt(p.penalty_accrued)),
        ("waived penalty", "waived.penalty", amt(p.waived.penalty)),
        ("waived interest", "waived.interest", amt(p.waived.interest)),
        ("overpaid (refund owed)", "overpaid", amt(p.overpaid)),
        (
            "broken promise",
            "broken_promise",
            if p.broken_promise { "true" } else { "false" }.to_string(),
        ),
    ] {
        card(&mut s, label, field, &value);
    }
    s.push_str("</div>\n");

    facts(&mut s, p, &counted, later);
    schedule(&mut s, p);
    s.push_str("<h2>Over time</h2>\n");
    chart(&mut s, p, e, &counted, points);
    events_table(&mut s, &counted);
    accrual(&mut s, e);
    allocations(&mut s, e);
    extensions(&mut s, e);
    anomalies(&mut s, p);
    let _ = write!(
        s,
        "<footer>Generated by arrears {} from the loan's stored events; every figure is recomputed \
         by replaying them (SPEC §3) and equals <code>arrears show {} --as-of {}{} --json</code>.</footer>\n\
         </body></html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&p.loan_id.to_string()),
        p.as_of,
        p.known_at
            .map(|t| format!(" --known-at {}", esc(&fmt_timestamp(&t))))
            .unwrap_or_default()
    );
    s
}

fn facts(s: &mut String, p: &Projection, counted: &[&Event], later: usize) {
    s.push_str("<h2>Facts</h2>\n<table class=\"facts\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"w\">{}</td></tr>",
            esc(k),
            esc(&v)
        );
    };
    if let Some((ev, d)) = counted.iter().find_map(|ev| match &ev.body {
        Body::Disbursed(d) => Some((ev, d)),
        _ => None,
    }) {
        row("disbursed on", d.on.to_string());
        row("principal", format!("{} {}", amt(d.principal), d.currency));
        row("borrower", d.borrower.clone().unwrap_or_else(|| "—".into()));
        row(
            "daily rate",
            d.terms.daily_rate.decimal().normalize().to_string(),
        );
        row(
            "penalty multiplier",
            format!(
                "{} (penalty rate {} per day)",
                d.terms.penalty_multiplier.decimal().normalize(),
                d.terms.penalty_rate_daily().decimal().normalize()
            ),
        );
        row("grace days", d.terms.grace_days.to_string());
        row(
            "compound",
            if d.terms.compound {
                "yes: overdue interest bears penalty".into()
            } else {
                "no: only overdue principal bears penalty".into()
            },
        );
        row(
            "repayment",
            match &d.terms.repayment {
                Repayment::Bullet { days } => format!("bullet, {days} days"),
                Repayment::Installments { count, method } => format!(
                    "{count} monthly installments, {}",
                    serde_json::to_value(method)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            },
        );
        row(
            "disbursement event",
            format!("{} (seq {})", ev.event_id, ev.seq),
        );
    }
    row("currency", p.currency.clone());
    row(
        "events counted",
        format!(
            "{}{}",
            counted.len(),
            if later > 0 {
                format!(" ({later} more dated after the as-of date are not counted)")
            } else {
                String::new()
            }
        ),
    );
    s.push_str("</table>\n");
}

fn schedule(s: &mut String, p: &Projection) {
    s.push_str(
        "<h2>Schedule</h2>\n<table id=\"schedule\"><tr><th class=\"n\">n</th><th>due on</th>\
         <th class=\"n\">principal</th><th class=\"n\">interest</th><th class=\"n\">paid principal</th>\
         <th class=\"n\">paid interest</th><th>status</th></tr>",
    );
    for i in &p.installments {
        let st = i.status.as_str();
        let _ = write!(
            s,
            "<tr data-installment=\"{n}\"><td class=\"n\">{n}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"st-{st}\">{st}</td></tr>",
            i.due_on,
            amt(i.principal),
            amt(i.interest),
            amt(i.paid_principal),
            amt(i.paid_interest),
            n = i.n,
        );
    }
    s.push_str("</table>\n");
}

fn events_table(s: &mut String, counted: &[&Event]) {
    let _ = write!(
        s,
        "<h2>Events</h2>\n<table id=\"events\"><tr><th class=\"n\">seq</th><th>date</th><th>type</th>\
         <th>recorded at</th><th>details</th></tr>"
    );
    for ev in counted {
        let details = crate::render::event_details(ev);
        let _ = write!(
            s,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"w\">{}</td></tr>",
            ev.seq,
            ev.business_date(),
            esc(ev.body.kind()),
            esc(&fmt_timestamp(&ev.recorded_at)),
            esc(&details)
        );
    }
    s.push_str("</table>\n");
}

fn accrual(s: &mut String, e: &Explain) {
    let _ = write!(
        s,
        "<h2>Penalty accrual</h2>\n<p class=\"sub\">Each day's penalty is round(base × {}), \
         the base being what was overdue at the end of the day before.</p>",
        esc(&e.penalty_rate_daily)
    );
    if e.accrual.is_empty() {
        s.push_str("<p class=\"none\">No penalty has accrued.</p>\n");
        return;
    }
    s.push_str(
        "<table id=\"accrual\"><tr><th>from</th><th>to</th><th class=\"n\">days</th>\
         <th class=\"n\">base</th><th class=\"n\">daily penalty</th><th class=\"n\">subtotal</th></tr>",
    );
    for st in &e.accrual {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            st.from,
            st.to,
            st.days,
            amt(st.base),
            amt(st.daily_penalty),
            amt(st.subtotal)
        );
    }
    let _ = writeln!(
        s,
        "<tr><th colspan=\"5\">penalty accrued</th><th class=\"n\" data-field=\"explain.penalty_accrued\">{}</th></tr></table>",
        amt(e.penalty_accrued)
    );
}

fn allocations(s: &mut String, e: &Explain) {
    s.push_str(
        "<h2>Payments and their allocation</h2>\n<p class=\"sub\">Penalty first, then \
         installments by due date: interest, then principal; what is left is overpaid.</p>",
    );
    if e.payments.is_empty() {
        s.push_str("<p class=\"none\">No payments.</p>\n");
        return;
    }
    s.push_str(
        "<table id=\"allocations\"><tr><th class=\"n\">seq</th><th>on</th><th class=\"n\">amount</th>\
         <th class=\"n\">to penalty</th><th>to installments (interest / principal)</th>\
         <th class=\"n\">overpaid</th></tr>",
    );
    for p in &e.payments {
        let parts = p
            .installments
            .iter()
            .map(|x| {
                format!(
                    "#{}: {} / {}",
                    x.installment,
                    amt(x.interest),
                    amt(x.principal)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = write!(
            s,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"w\">{}</td><td class=\"n\">{}</td></tr>",
            p.seq,
            p.on,
            amt(p.amount),
            amt(p.penalty),
            esc(&parts),
            amt(p.overpaid)
        );
    }
    s.push_str("</table>\n");
}

fn extensions(s: &mut String, e: &Explain) {
    if e.extensions.is_empty() {
        return;
    }
    s.push_str(
        "<h2>Negotiated extensions</h2>\n<table id=\"extensions\"><tr><th class=\"n\">seq</th>\
         <th>agreed on</th><th class=\"n\">waived penalty</th><th class=\"n\">waived interest</th>\
         <th>stage before</th></tr>",
    );
    for x in &e.extensions {
        let _ = write!(
            s,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            x.seq,
            x.agreed_on,
            amt(x.waived_penalty),
            amt(x.waived_interest),
            esc(x.stage_before.as_str())
        );
    }
    s.push_str("</table>\n");
}

fn anomalies(s: &mut String, p: &Projection) {
    s.push_str("<h2>Anomalies</h2>\n");
    if p.anomalies.is_empty() {
        s.push_str("<p class=\"none\" id=\"anomalies\" data-count=\"0\">None: every recorded miss and every default agree with the payments.</p>\n");
        return;
    }
    let _ = write!(
        s,
        "<table id=\"anomalies\" data-count=\"{}\"><tr><th>kind</th><th class=\"n\">installment</th><th>meaning</th></tr>",
        p.anomalies.len()
    );
    for a in &p.anomalies {
        let meaning = match a.kind {
            arrears_projection::view::AnomalyKind::MissedButPaid => {
                "a missed event was recorded, but the installment was paid in time (a late-recorded payment)"
            }
            arrears_projection::view::AnomalyKind::UnrecordedMiss => {
                "the installment is in default and no missed event is recorded for it (sweep records one)"
            }
        };
        let _ = write!(
            s,
            "<tr><td class=\"anom\">{}</td><td class=\"n\">{}</td><td class=\"w\">{}</td></tr>",
            a.kind.as_str(),
            a.installment,
            esc(meaning)
        );
    }
    s.push_str("</table>\n");
}

/// A chart marker: a day, its lane, a label.
struct Marker {
    day: Date,
    kind: &'static str,
    title: String,
}

fn f2(x: f64) -> String {
    format!("{x:.1}")
}

/// A round step for about `n` gridlines up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(0.01);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let k = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

fn chart(s: &mut String, p: &Projection, e: &Explain, counted: &[&Event], points: &[Projection]) {
    if points.is_empty() {
        s.push_str("<p class=\"none\">Nothing to chart.</p>\n");
        return;
    }
    const W: f64 = 1060.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 44.0; // below the stage ribbon
    const PLOT_H: f64 = 260.0;
    const LANES: [(&str, &str); 5] = [
        ("due", "due dates"),
        ("payment", "payments"),
        ("default", "defaults"),
        ("missed", "missed"),
        ("extension", "extensions"),
    ];
    const LANE_H: f64 = 20.0;
    let bottom = TOP + PLOT_H;
    let lanes_top = bottom + 34.0;
    let h = lanes_top + LANE_H * LANES.len() as f64 + 10.0;
    let start = points[0].as_of;
    let end = p.as_of;
    let span = (start.days_until(end).max(1)) as f64;
    let x = |d: Date| LEFT + (W - LEFT - RIGHT) * (start.days_until(d) as f64 / span);
    let tot = |q: &Projection| {
        (q.outstanding.principal + q.outstanding.interest + q.outstanding.penalty).decimal()
    };
    let max = points
        .iter()
        .map(tot)
        .max()
        .unwrap_or(Decimal::ZERO)
        .to_f64()
        .unwrap_or(0.0)
        .max(1.0);
    let step = nice_step(max, 5.0);
    let ymax = (max / step).ceil() * step;
    let y = |v: f64| bottom - PLOT_H * (v / ymax);
    let f = |d: Decimal| d.to_f64().unwrap_or(0.0);

    let _ = write!(
        s,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" width=\"100%\" \
         role=\"img\" aria-label=\"outstanding principal, interest and penalty over time\" \
         data-points=\"{}\">",
        points.len()
    );
    // Gridlines and amount labels.
    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e6e9ee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&format!("{:.2}", v))
        );
        v += step;
    }
    // Date ticks: about eight, at the chart's first and last day and evenly between.
    let ticks = 8.min(span as i64).max(1);
    for k in 0..=ticks {
        let d = start.plus_days((span as i64) * k / ticks);
        let xx = x(d);
        let _ = write!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{bottom}\" y2=\"{}\" stroke=\"#8a94a3\"/>\
             <text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"{}\">{d}</text>",
            bottom + 5.0,
            bottom + 18.0,
            if k == 0 {
                "start"
            } else if k == ticks {
                "end"
            } else {
                "middle"
            }
        );
    }
    // Stacked areas: principal, interest on top, penalty on top of both.
    fn num(d: Decimal) -> f64 {
        d.to_f64().unwrap_or(0.0)
    }
    type Band = fn(&Projection) -> (f64, f64);
    let layers: [(&str, &str, Band); 3] = [
        ("principal", C_PRINCIPAL, |q| {
            (0.0, num(q.outstanding.principal.decimal()))
        }),
        ("interest", C_INTEREST, |q| {
            let lo = num(q.outstanding.principal.decimal());
            (lo, lo + num(q.outstanding.interest.decimal()))
        }),
        ("penalty", C_PENALTY, |q| {
            let lo = num((q.outstanding.principal + q.outstanding.interest).decimal());
            (lo, lo + num(q.outstanding.penalty.decimal()))
        }),
    ];
    for (name, colour, band) in &layers {
        let mut pts: Vec<String> = points
            .iter()
            .map(|q| format!("{},{}", f2(x(q.as_of)), f2(y(band(q).1))))
            .collect();
        pts.extend(
            points
                .iter()
                .rev()
                .map(|q| format!("{},{}", f2(x(q.as_of)), f2(y(band(q).0)))),
        );
        let _ = write!(
            s,
            "<polygon data-series=\"{name}\" points=\"{}\" fill=\"{colour}\" fill-opacity=\"0.55\" \
             stroke=\"{colour}\" stroke-width=\"1\"/>",
            pts.join(" ")
        );
    }
    let total: Vec<String> = points
        .iter()
        .map(|q| format!("{},{}", f2(x(q.as_of)), f2(y(f(tot(q))))))
        .collect();
    let _ = write!(
        s,
        "<polyline data-series=\"total\" points=\"{}\" fill=\"none\" stroke=\"#1d2430\" stroke-width=\"1.5\"/>",
        total.join(" ")
    );
    // Invisible hit targets with the figures at each point, for hovering.
    for q in points {
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"#1d2430\" fill-opacity=\"0.6\"><title>{}</title></circle>",
            f2(x(q.as_of)),
            f2(y(f(tot(q)))),
            esc(&format!(
                "{}: principal {}, interest {}, penalty {}, total {}; DPD {}, {}",
                q.as_of,
                amt(q.outstanding.principal),
                amt(q.outstanding.interest),
                amt(q.outstanding.penalty),
                amt(q.outstanding.total),
                q.days_past_due,
                q.stage.as_str()
            ))
        );
    }
    // Stage ribbon along the top: one segment per run of equal stage; a change is marked.
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">stage</text>",
        LEFT - 6.0,
        TOP - 22.0
    );
    let mut k = 0;
    while k < points.len() {
        let st = points[k].stage;
        let mut j = k;
        while j + 1 < points.len() && points[j + 1].stage == st {
            j += 1;
        }
        let x0 = x(points[k].as_of);
        let x1 = if j + 1 < points.len() {
            x(points[j + 1].as_of)
        } else {
            W - RIGHT
        };
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"14\" fill=\"{}\"><title>{}</title></rect>",
            f2(x0),
            TOP - 34.0,
            f2((x1 - x0).max(1.0)),
            stage_colour(st),
            esc(&format!("{} from {}", st.as_str(), points[k].as_of))
        );
        if k > 0 {
            let _ = write!(
                s,
                "<line data-marker=\"stage\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{bottom}\" \
                 stroke=\"{}\" stroke-dasharray=\"2,3\"><title>{}</title></line>",
                TOP - 34.0,
                stage_colour(st),
                esc(&format!("{}: stage {}", points[k].as_of, st.as_str())),
                x = x0
            );
        }
        if x1 - x0 > 7.0 * st.as_str().len() as f64 {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" style=\"fill:#fff;font-weight:600\">{}</text>",
                f2(x0 + 3.0),
                TOP - 23.5,
                esc(st.as_str())
            );
        }
        k = j + 1;
    }

    // Markers.
    let mut marks: Vec<Marker> = Vec::new();
    // A due date in force on its own day (every due date is a chart day); one an extension
    // moved or a restructure replaced before it came is not marked.
    for q in points {
        for i in q.installments.iter().filter(|i| i.due_on == q.as_of) {
            marks.push(Marker {
                day: q.as_of,
                kind: "due",
                title: format!("{}: installment {} due", q.as_of, i.n),
            });
        }
    }
    // A default: an installment that was not overdue at the point before and is at this one.
    for w in points.windows(2) {
        for i in &w[1].installments {
            let was = w[0]
                .installments
                .iter()
                .find(|o| o.n == i.n)
                .map(|o| o.status == InstallmentStatus::Overdue && o.due_on == i.due_on)
                .unwrap_or(false);
            if i.status == InstallmentStatus::Overdue && !was {
                marks.push(Marker {
                    day: w[1].as_of,
                    kind: "default",
                    title: format!(
                        "{}: installment {} (due {}) in default",
                        w[1].as_of, i.n, i.due_on
                    ),
                });
            }
        }
    }
    for pay in &e.payments {
        marks.push(Marker {
            day: pay.on,
            kind: "payment",
            title: format!(
                "{}: payment {} {} (seq {}; penalty {}, overpaid {})",
                pay.on,
                amt(pay.amount),
                p.currency,
                pay.seq,
                amt(pay.penalty),
                amt(pay.overpaid)
            ),
        });
    }
    for ev in counted {
        if let Body::Missed(m) = &ev.body {
            marks.push(Marker {
                day: m.observed_on,
                kind: "missed",
                title: format!(
                    "{}: missed recorded for installment {} (seq {})",
                    m.observed_on, m.installment, ev.seq
                ),
            });
        }
    }
    for x in &e.extensions {
        marks.push(Marker {
            day: x.agreed_on,
            kind: "extension",
            title: format!(
                "{}: extension agreed (seq {}; waived penalty {}, interest {}; stage before {})",
                x.agreed_on,
                x.seq,
                amt(x.waived_penalty),
                amt(x.waived_interest),
                x.stage_before.as_str()
            ),
        });
    }
    for (lane, (kind, label)) in LANES.iter().enumerate() {
        let yy = lanes_top + LANE_H * lane as f64 + LANE_H / 2.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#eef0f3\"/>",
            LEFT - 6.0,
            yy + 4.0,
            esc(label),
            W - RIGHT
        );
        for m in marks.iter().filter(|m| m.kind == *kind) {
            let xx = x(m.day);
            let title = format!("<title>{}</title>", esc(&m.title));
            let shape = match m.kind {
                "due" => format!(
                    "<path d=\"M{a},{b} L{c},{b} L{xx:.1},{d} Z\" fill=\"{C_DUE}\"/>",
                    a = f2(xx - 5.0),
                    c = f2(xx + 5.0),
                    b = f2(yy - 5.0),
                    d = f2(yy + 5.0)
                ),
                "payment" => {
                    format!("<circle cx=\"{xx:.1}\" cy=\"{yy}\" r=\"5\" fill=\"{C_PAYMENT}\"/>")
                }
                "default" => format!(
                    "<path d=\"M{a},{b} L{c},{b} L{xx:.1},{d} Z\" fill=\"{C_DEFAULT}\"/>",
                    a = f2(xx - 6.0),
                    c = f2(xx + 6.0),
                    b = f2(yy + 5.0),
                    d = f2(yy - 6.0)
                ),
                "missed" => format!(
                    "<path d=\"M{a},{b} L{c},{d} M{a},{d} L{c},{b}\" stroke=\"{C_MISSED}\" stroke-width=\"2.5\"/>",
                    a = f2(xx - 5.0),
                    c = f2(xx + 5.0),
                    b = f2(yy - 5.0),
                    d = f2(yy + 5.0)
                ),
                _ => format!(
                    "<path d=\"M{xx:.1},{a} L{b},{yy} L{xx:.1},{c} L{d},{yy} Z\" fill=\"{C_EXTENSION}\"/>",
                    a = f2(yy - 6.0),
                    b = f2(xx + 6.0),
                    c = f2(yy + 6.0),
                    d = f2(xx - 6.0)
                ),
            };
            let _ = write!(s, "<g data-marker=\"{}\">{shape}{title}</g>", m.kind);
            // Due dates and defaults also get a guide line through the plot.
            let guide = match m.kind {
                "due" => Some(C_DUE),
                "default" => Some(C_DEFAULT),
                "extension" => Some(C_EXTENSION),
                _ => None,
            };
            if let Some(c) = guide {
                let _ = write!(
                    s,
                    "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{bottom}\" stroke=\"{c}\" \
                     stroke-opacity=\"0.5\" stroke-dasharray=\"4,3\"/>"
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{bottom}\" stroke=\"#8a94a3\"/>\
         <line x1=\"{LEFT}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#8a94a3\"/></svg>",
        W - RIGHT
    );
    let _ = writeln!(
        s,
        "<div class=\"legend\"><span><i class=\"sw\" style=\"background:{C_PRINCIPAL}\"></i>principal</span>\
         <span><i class=\"sw\" style=\"background:{C_INTEREST}\"></i>interest</span>\
         <span><i class=\"sw\" style=\"background:{C_PENALTY}\"></i>penalty</span>\
         <span><i class=\"sw\" style=\"background:#1d2430;height:3px;vertical-align:3px\"></i>total outstanding ({})</span>\
         <span>▼ due date · ● payment · ▲ default · ✕ missed recorded · ◆ extension · ribbon: collection stage</span></div>",
        esc(&p.currency)
    );
}

/// The page for one loan in a ledger (reads its events; the rest is [`build`]). An unknown loan
/// is the same rejected-input failure as `show`'s.
pub fn for_loan(
    ledger: &crate::ledger::Ledger,
    loan: uuid::Uuid,
    as_of: Date,
    known_at: Option<Timestamp>,
) -> Result<String, crate::ledger::Failure> {
    let events = ledger.events(loan, known_at)?;
    match build(&events, as_of, known_at, &ledger.policy) {
        Some(page) => Ok(page),
        // The same message as `show` (it fails the same way on these events).
        None => Err(ledger.show(loan, as_of, known_at).err().unwrap_or_else(|| {
            crate::ledger::Failure::Input(format!("loan {loan} is unknown as of {as_of}"))
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{parse_line, Ledger, Location};

    const LOAN: &str = "6f1c2a0e-5d3b-4c1e-9a7f-0b8e2d4c6a10";

    /// SPEC §7's worked example: 1,000.00 bullet over 30 days, unpaid.
    fn example() -> (Ledger, Vec<Event>) {
        let ledger = Ledger::open(
            &Location::Memory,
            arrears_store::Mode::Create,
            None,
            Policy::default(),
        )
        .unwrap();
        let line = format!(
            r#"{{"loan_id":"{LOAN}","type":"disbursed","on":"2024-01-01","principal":"1000.00","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{{"kind":"bullet","days":30}}}}}}"#
        );
        let ev = parse_line(&line, 1, &ledger.policy).unwrap();
        ledger
            .append(vec![ev], "2024-01-01T00:00:00Z".parse().unwrap())
            .unwrap();
        let events = ledger.events(LOAN.parse().unwrap(), None).unwrap();
        (ledger, events)
    }

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn chart_days_are_the_days_the_state_changes_on() {
        let (ledger, events) = example();
        let days = chart_dates(&events, day("2024-02-10"), None, &ledger.policy);
        // Disbursement and the day before it (clipped), the due date, its default, the first
        // day of phone collection, the as-of date; nothing outside [disbursement, as-of].
        for d in [
            "2024-01-01",
            "2024-01-31",
            "2024-02-01",
            "2024-02-04",
            "2024-02-10",
        ] {
            assert!(days.contains(&day(d)), "{d} in {days:?}");
        }
        assert_eq!(days.first(), Some(&day("2024-01-01")));
        assert_eq!(days.last(), Some(&day("2024-02-10")));
        assert!(days.windows(2).all(|w| w[0] < w[1]));
        // 2024-02-16 (written notice) is after the as-of date.
        assert!(!days.contains(&day("2024-02-16")));
    }

    #[test]
    fn the_page_shows_the_projection_figures() {
        let (ledger, events) = example();
        let page = build(&events, day("2024-02-10"), None, &ledger.policy).unwrap();
        for (field, value) in [
            ("outstanding.total", "1022.60"),
            ("outstanding.penalty", "7.60"),
            ("days_past_due", "10"),
            ("stage", "phone"),
            ("explain.penalty_accrued", "7.60"),
        ] {
            assert!(
                page.contains(&format!("data-field=\"{field}\">{value}<")),
                "{field} = {value}"
            );
        }
        assert_eq!(page.matches("data-marker=\"due\"").count(), 1);
        assert_eq!(page.matches("data-marker=\"default\"").count(), 1);
        assert!(page.contains("id=\"anomalies\" data-count=\"1\""));
        // Not yet disbursed: no page.
        assert!(build(&events, day("2023-12-31"), None, &ledger.policy).is_none());
    }
}
