//! `arrears report`: the HTML page rendered in a real headless Chromium (Debian's `chromium`
//! package). The numbers in the rendered DOM must equal `show --json`'s, the chart must carry a
//! marker for every counted payment, miss, extension and default, the page must be
//! self-contained and escape what it shows, and the screenshot must be a real picture.
//!
//! Chromium is required: CI installs it (`.ci/run`); without it this test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrears_testkit::{err, generate, run, temp_store};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");
const CHROMIUM: &str = "/usr/bin/chromium";

fn ok(store: &Path, args: &[&str], stdin: Option<&str>) -> String {
    arrears_testkit::ok(BIN, store, args, stdin)
}

fn chromium(args: &[&str], url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the report test renders the page in a real headless Chromium. \
         Install it with `apt-get install -y chromium` (Debian's package; .ci/run does this)"
    );
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new("timeout")
        .arg("300")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chromium {args:?} failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every `data-field="NAME"` in the DOM with the text that follows its tag.
fn fields(dom: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("data-field=\"") {
        rest = &rest[i + 12..];
        let name_end = rest.find('"').unwrap();
        let name = rest[..name_end].to_owned();
        let text_start = rest.find('>').unwrap() + 1;
        let text_end = text_start + rest[text_start..].find('<').unwrap();
        v.push((name, rest[text_start..text_end].to_owned()));
        rest = &rest[text_end..];
    }
    v
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

/// The JSON value at a dotted path, as the page prints it.
fn at(v: &Value, path: &str) -> String {
    let mut x = v;
    for k in path.split('.') {
        x = &x[k];
    }
    match x {
        Value::String(s) => s.clone(),
        Value::Null => panic!("{path} is not in the projection"),
        other => other.to_string(),
    }
}

/// A three-month loan with a partial payment, a recorded miss, an extension and a broken
/// promise, for a borrower whose name needs escaping.
fn eventful(loan: &str) -> String {
    [
        format!(
            r#"{{"loan_id":"{loan}","type":"disbursed","on":"2024-01-15","principal":"3000.00","borrower":"<b>Zhang & Co</b>","terms":{{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":3,"compound":true,"repayment":{{"kind":"installments","count":3,"method":"equal_principal"}}}}}}"#
        ),
        format!(r#"{{"loan_id":"{loan}","type":"payment","on":"2024-02-10","amount":"500.00"}}"#),
        format!(
            r#"{{"loan_id":"{loan}","type":"missed","installment":1,"observed_on":"2024-02-19"}}"#
        ),
        format!(
            r#"{{"loan_id":"{loan}","type":"negotiated_extension","agreed_on":"2024-03-01","new_due_on":"2024-03-30","waive_penalty":"all"}}"#
        ),
        format!(r#"{{"loan_id":"{loan}","type":"payment","on":"2024-04-02","amount":"100.00"}}"#),
        // Dated after the as-of date: not counted.
        format!(r#"{{"loan_id":"{loan}","type":"payment","on":"2024-08-01","amount":"100.00"}}"#),
    ]
    .join("\n")
        + "\n"
}

struct Rendered {
    dom: String,
    html: String,
    png: PathBuf,
}

fn render(store: &Path, dir: &Path, loan: &str, as_of: &str) -> Rendered {
    let file = dir.join(format!("{loan}.html"));
    let png = dir.join(format!("{loan}.png"));
    ok(
        store,
        &[
            "report",
            loan,
            "--as-of",
            as_of,
            "--html",
            file.to_str().unwrap(),
        ],
        None,
    );
    let url = format!("file://{}", file.display());
    let dom = chromium(&["--dump-dom"], &url);
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,2000",
        ],
        &url,
    );
    Rendered {
        dom,
        html: std::fs::read_to_string(&file).unwrap(),
        png,
    }
}

/// The rendered numbers are `show --json`'s and `explain --json`'s; the chart has its series.
fn check_numbers(store: &Path, r: &Rendered, loan: &str, as_of: &str) -> (Value, Value) {
    let shown: Value = serde_json::from_str(&ok(
        store,
        &["show", loan, "--as-of", as_of, "--json"],
        None,
    ))
    .unwrap();
    let explained: Value = serde_json::from_str(&ok(
        store,
        &["explain", loan, "--as-of", as_of, "--json"],
        None,
    ))
    .unwrap();
    let got = fields(&r.dom);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "loan_id",
        "as_of",
        "policy",
        "version",
        "status",
        "outstanding.total",
        "outstanding.principal",
        "outstanding.interest",
        "outstanding.penalty",
        "overdue.principal",
        "overdue.interest",
        "paid.principal",
        "paid.interest",
        "paid.penalty",
        "waived.penalty",
        "waived.interest",
        "penalty_accrued",
        "overpaid",
        "days_past_due",
        "stage",
        "class",
        "bucket",
        "extensions",
        "broken_promise",
    ] {
        assert!(names.contains(&want), "{want} is not on the page");
    }
    for (name, text) in &got {
        let want = match name.strip_prefix("explain.") {
            Some(path) => at(&explained, path),
            None => at(&shown, name),
        };
        assert_eq!(text, &want, "{loan}: {name} on the page");
    }
    let installments = shown["installments"].as_array().unwrap().len();
    assert_eq!(count(&r.dom, "data-installment=\""), installments);
    for series in ["principal", "interest", "penalty", "total"] {
        assert_eq!(
            count(&r.dom, &format!("data-series=\"{series}\"")),
            1,
            "{series}"
        );
    }
    assert_eq!(
        count(&r.dom, "data-marker=\"payment\""),
        explained["payments"].as_array().unwrap().len()
    );
    assert_eq!(
        count(&r.dom, "data-marker=\"extension\""),
        explained["extensions"].as_array().unwrap().len()
    );
    assert_eq!(
        count(&r.dom, "id=\"accrual\""),
        usize::from(!explained["accrual"].as_array().unwrap().is_empty())
    );
    let anomalies = shown["anomalies"].as_array().unwrap().len();
    assert!(
        r.dom
            .contains(&format!("id=\"anomalies\" data-count=\"{anomalies}\"")),
        "anomalies count"
    );
    (shown, explained)
}

/// The PNG is a real picture of the window's size, not an empty page.
fn check_png(path: &Path) {
    let png = std::fs::read(path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1200, 2000));
    // A blank 1200×2000 page compresses to a few kilobytes; text, tables and a chart do not.
    assert!(png.len() > 40_000, "the screenshot is {} bytes", png.len());
}

#[test]
fn the_report_renders_in_chromium_with_the_projection_numbers() {
    let (dir, s) = temp_store();
    let loan = "7e000000-0000-4000-8000-000000000001";
    ok(&s, &["append", "--quiet"], Some(&eventful(loan)));
    let as_of = "2024-06-30";
    let r = render(&s, dir.path(), loan, as_of);
    let (shown, _) = check_numbers(&s, &r, loan, as_of);
    // The loan did what the events say: overdue again after the extension, in legal collection.
    assert_eq!(shown["stage"], "legal");
    assert_eq!(shown["broken_promise"], true);
    assert_eq!(
        count(&r.dom, "data-marker=\"payment\""),
        2,
        "the August payment is after D"
    );
    assert_eq!(count(&r.dom, "data-marker=\"missed\""), 1);
    assert_eq!(count(&r.dom, "data-marker=\"extension\""), 1);
    assert!(
        count(&r.dom, "data-marker=\"default\"") >= 2,
        "before and after the extension"
    );
    assert!(count(&r.dom, "data-marker=\"due\"") >= 2);
    assert!(
        count(&r.dom, "data-marker=\"stage\"") >= 3,
        "stage changes are marked"
    );
    assert!(r
        .dom
        .contains("1 more dated after the as-of date are not counted"));
    // Escaped: the borrower's name is text, not markup.
    assert!(r.html.contains("&lt;b&gt;Zhang &amp; Co&lt;/b&gt;"));
    assert!(!r.html.contains("<b>Zhang"));
    assert!(r.dom.contains("&lt;b&gt;Zhang &amp; Co&lt;/b&gt;"));
    // Self-contained: no script, no link, no external resource of any kind.
    for banned in [
        "<script", "<link", "src=", "href=", "url(", "@import", "<img", "<iframe",
    ] {
        assert!(!r.html.contains(banned), "the page contains {banned}");
    }
    assert_eq!(
        r.html.matches("http").count(),
        1,
        "only the SVG namespace names a URL"
    );
    check_png(&r.png);
}

#[test]
fn generated_loans_render_with_their_numbers() {
    let (dir, s) = temp_store();
    ok(&s, &["append", "--quiet"], Some(&generate(BIN, 40, 11)));
    let as_of = "2024-05-31";
    let replay = ok(&s, &["replay", "--as-of", as_of], None);
    let ps: Vec<Value> = replay
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The loan with the most installments and one that is overdue (or the first, if none is).
    let most = ps
        .iter()
        .max_by_key(|p| p["installments"].as_array().unwrap().len())
        .unwrap();
    let overdue = ps
        .iter()
        .find(|p| p["days_past_due"].as_i64().unwrap() > 0)
        .unwrap_or(&ps[0]);
    for p in [most, overdue] {
        let loan = p["loan_id"].as_str().unwrap();
        let r = render(&s, dir.path(), loan, as_of);
        check_numbers(&s, &r, loan, as_of);
        check_png(&r.png);
    }
    // An unknown loan is the same error as `show`'s.
    let o = run(
        BIN,
        &s,
        &[
            "report",
            "7e000000-0000-4000-8000-0000000000ff",
            "--as-of",
            as_of,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("is unknown as of"), "{}", err(&o));
}
