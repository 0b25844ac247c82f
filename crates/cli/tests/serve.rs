//! `arrears serve`, driven through the real binary over loopback HTTP: every endpoint's status
//! and body against the CLI's own output, errors with their status codes and messages,
//! idempotent re-POSTs, and SIGTERM during writes losing no acknowledged event.
//!
//! No sleeps: the server prints its bound address as its first line and the tests wait on
//! that, on answers, and on the process's exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;

use arrears_testkit::{command, disbursed, err, payment, run, signal, temp_store};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_arrears");

fn ok(store: &Path, args: &[&str], stdin: Option<&str>) -> String {
    arrears_testkit::ok(BIN, store, args, stdin)
}

/// A running `arrears serve`; killed on drop if a test failed before stopping it.
struct Server {
    child: Child,
    addr: String,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(store: &Path) -> Server {
        let mut child = command(BIN, store)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        Server {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, b"")
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        request(&self.addr, "POST", path, body.as_bytes())
    }

    /// How many events `GET /loans/LOAN/events` lists.
    fn stored_events(&self, loan: &str) -> usize {
        let events = self.get(&format!("/loans/{loan}/events")).json();
        events.as_array().unwrap().len()
    }

    /// SIGTERM, then wait for the exit: (exit code, standard error).
    fn terminate(mut self) -> (Option<i32>, String) {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        let mut e = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut e)
            .unwrap();
        (status.code(), e)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// An error answer: (status, kind, message).
    fn error(&self) -> (u16, String, String) {
        let v = self.json();
        (
            self.status,
            v["kind"].as_str().unwrap().to_owned(),
            v["error"].as_str().unwrap().to_owned(),
        )
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`): status, type, body.
fn try_request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete answer")
    })?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "answers carry a Content-Length"
    );
    Ok(Reply {
        status,
        content_type,
        body: body.to_owned(),
    })
}

fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Reply {
    try_request(addr, method, path, body).unwrap()
}

fn booked(loans: u64, seed: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    arrears_testkit::booked(BIN, loans, seed)
}

#[test]
fn every_read_endpoint_answers_what_the_cli_prints() {
    let (_dir, s) = booked(80, 5);
    let d = "2024-06-30";
    // The CLI's answers first: the server holds the store's lock while it runs.
    let replay = ok(&s, &["replay", "--as-of", d], None);
    let ids: Vec<String> = replay
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["loan_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let some: Vec<&String> = ids.iter().step_by(9).collect();
    let shown: Vec<String> = some
        .iter()
        .map(|id| ok(&s, &["show", id, "--as-of", d, "--json"], None))
        .collect();
    let known = "2024-03-01T00:00:00Z";
    let early: Value = serde_json::from_str(
        ok(&s, &["replay", "--as-of", d, "--known-at", known], None)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let early = early["loan_id"].as_str().unwrap().to_owned();
    let shown_known = ok(
        &s,
        &["show", &early, "--as-of", d, "--known-at", known, "--json"],
        None,
    );
    let explained = ok(&s, &["explain", some[1], "--as-of", d, "--json"], None);
    let events = ok(&s, &["events", some[2], "--json"], None);
    let loans = ok(
        &s,
        &[
            "loans", "--as-of", d, "--bucket", "M1", "--limit", "5", "--json",
        ],
        None,
    );
    let portfolio = ok(&s, &["portfolio", "--as-of", d, "--json"], None);
    let rolls = ok(
        &s,
        &["portfolio", "--as-of", d, "--vs", "2024-05-31", "--json"],
        None,
    );
    let report = ok(&s, &["report", some[3], "--as-of", d], None);
    let digest = ok(&s, &["digest"], None);

    let srv = Server::start(&s);
    for (id, want) in some.iter().zip(&shown) {
        let r = srv.get(&format!("/loans/{id}?as_of={d}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json; charset=utf-8");
        assert_eq!(
            &r.body, want,
            "GET /loans/{id} is `show --json` byte for byte"
        );
    }
    let r = srv.get(&format!("/loans/{early}?as_of={d}&known_at={known}"));
    assert_eq!((r.status, r.body.as_str()), (200, shown_known.as_str()));
    let r = srv.get(&format!("/loans/{}/explain?as_of={d}", some[1]));
    assert_eq!((r.status, r.body.as_str()), (200, explained.as_str()));
    // Events: a JSON array of exactly the lines `events --json` prints.
    let r = srv.get(&format!("/loans/{}/events", some[2]));
    assert_eq!(r.status, 200);
    let want: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(r.json(), Value::Array(want));
    assert_eq!(
        r.body,
        format!("[{}]\n", events.lines().collect::<Vec<_>>().join(","))
    );
    let r = srv.get(&format!("/loans?as_of={d}&bucket=M1&limit=5"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!("[{}]\n", loans.lines().collect::<Vec<_>>().join(","))
    );
    assert_eq!(r.json().as_array().unwrap().len(), loans.lines().count());
    let r = srv.get(&format!("/portfolio?as_of={d}"));
    assert_eq!((r.status, r.body.as_str()), (200, portfolio.as_str()));
    let r = srv.get(&format!("/portfolio?as_of={d}&vs=2024-05-31"));
    assert_eq!((r.status, r.body.as_str()), (200, rolls.as_str()));
    let r = srv.get(&format!("/loans/{}/report?as_of={d}", some[3]));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/html; charset=utf-8");
    assert_eq!(
        r.body, report,
        "the page is the CLI's `report`, byte for byte"
    );
    let r = srv.get("/digest");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["digest"].as_str().unwrap(), digest.trim());
    let r = srv.get("/verify");
    assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)));
    let r = srv.get(&format!("/verify?digest={}", digest.trim()));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv.get("/health");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let (code, stderr) = srv.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    // The CLI still works on the store without the server.
    assert_eq!(
        ok(&s, &["show", some[0], "--as-of", d, "--json"], None),
        shown[0]
    );
}

#[test]
fn errors_are_json_with_status_codes_and_the_cli_messages() {
    let (dir, s) = temp_store();
    let loan = "5e000000-0000-4000-8000-000000000001";
    let bad_amount = format!(
        "{}\n{}\n",
        payment(loan, "2024-01-10", "10.00", ""),
        payment(loan, "2024-01-11", "1.001", "")
    );
    // The CLI's words for the same bad input, on a store of its own.
    let other = dir.path().join("cli");
    ok(&other, &["append", "--quiet"], Some(&disbursed(loan)));
    let o = run(BIN, &other, &["append"], Some(&bad_amount));
    assert_eq!(o.status.code(), Some(2));
    let cli_message = err(&o).trim().trim_start_matches("arrears: ").to_owned();
    assert!(cli_message.starts_with("line 2: amount: "), "{cli_message}");

    let srv = Server::start(&s);
    let r = srv.post("/events", &(disbursed(loan) + "\n"));
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = r.json();
    assert_eq!(stored.as_array().unwrap().len(), 1);
    assert_eq!(stored[0]["seq"], 1);

    // Rejected input: 400 with the CLI's message, and nothing of the batch is stored.
    let r = srv.post("/events", &bad_amount);
    assert_eq!(
        r.error(),
        (400, "rejected_input".into(), cli_message.clone())
    );
    let r = srv.get(&format!("/loans/{loan}/events"));
    assert_eq!(r.json().as_array().unwrap().len(), 1, "all or nothing");
    // A later line's business rule: the first line was fine, the whole batch is refused.
    let early = format!(
        "{}\n{}\n",
        payment(loan, "2024-01-10", "10.00", ""),
        payment(loan, "2023-12-31", "10.00", "")
    );
    let (status, kind, msg) = srv.post("/events", &early).error();
    assert_eq!((status, kind.as_str()), (400, "rejected_input"));
    assert!(msg.starts_with("line 2: "), "{msg}");
    assert_eq!(srv.stored_events(loan), 1);
    // A seq conflict is 409.
    let (status, kind, msg) = srv
        .post(
            "/events",
            &payment(loan, "2024-01-10", "10.00", r#","seq":5"#),
        )
        .error();
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    assert!(
        msg.starts_with("line 1: seq: conflict: expected seq 5 but loan"),
        "{msg}"
    );
    // A reused event_id with other content is a conflict too.
    let id = r#","event_id":"5e000000-0000-4000-8000-00000000e001""#;
    assert_eq!(
        srv.post("/events", &payment(loan, "2024-01-10", "10.00", id))
            .status,
        201
    );
    let (status, kind, msg) = srv
        .post("/events", &payment(loan, "2024-01-10", "11.00", id))
        .error();
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    assert!(msg.contains("event_id: "), "{msg}");
    // A payment for a loan the store does not know: 404.
    let stranger = "5e000000-0000-4000-8000-0000000000ff";
    let (status, kind, msg) = srv
        .post("/events", &payment(stranger, "2024-01-10", "1.00", ""))
        .error();
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    assert!(
        msg.starts_with("line 1: loan_id: the loan is not in the store"),
        "{msg}"
    );
    // Reads: unknown loan 404, bad ids and parameters 400, naming the parameter.
    let (status, kind, msg) = srv
        .get(&format!("/loans/{stranger}?as_of=2024-02-01"))
        .error();
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    assert_eq!(
        msg,
        format!("loan {stranger} is unknown as of 2024-02-01 (no disbursement counts)")
    );
    let (status, _, msg) = srv.get(&format!("/loans/{loan}?as_of=2023-12-01")).error();
    assert_eq!(status, 404, "not yet disbursed on that day: {msg}");
    for (path, want) in [
        ("/loans/nope".to_owned(), "loan_id: `nope` is not a UUID"),
        (
            format!("/loans/{loan}?as_of=2024-13-01"),
            "as_of: `2024-13-01` is not a date (YYYY-MM-DD)",
        ),
        (
            format!("/loans/{loan}?known_at=yesterday"),
            "known_at: `yesterday` is not an RFC 3339 timestamp",
        ),
        (
            format!("/loans/{loan}?asof=2024-01-01"),
            "asof: unknown parameter (this endpoint takes as_of, known_at)",
        ),
        (
            format!("/loans/{loan}?as_of=2024-01-01&as_of=2024-01-02"),
            "as_of: given more than once",
        ),
        (
            "/loans?stage=sleeping".to_owned(),
            "stage: `sleeping` is not a stage (one of current, negotiated, settled, grace, reminder, phone, written_notice, outsourced, legal)",
        ),
        (
            "/loans?min_dpd=-1".to_owned(),
            "min_dpd: `-1` must not be negative",
        ),
        (
            "/verify?digest=xyz".to_owned(),
            "digest: `xyz` is not POSITION-HEX (as `arrears digest` prints it)",
        ),
    ] {
        assert_eq!(
            srv.get(&path).error(),
            (400, "rejected_input".into(), want.into()),
            "{path}"
        );
    }
    let (status, kind, _) = srv.get("/portfolio?as_of=2024-03-01&vs=2024-04-01").error();
    assert_eq!((status, kind.as_str()), (400, "rejected_input"));
    let (status, kind, msg) = srv
        .get(&format!("/verify?digest=1-{}", "0".repeat(64)))
        .error();
    assert_eq!((status, kind.as_str()), (409, "digest_mismatch"), "{msg}");
    // Paths and methods.
    assert_eq!(
        srv.get("/nothing/here").error(),
        (
            404,
            "not_found".into(),
            "no such endpoint: GET /nothing/here".into()
        )
    );
    assert_eq!(
        srv.post("/loans", "").error(),
        (
            405,
            "method_not_allowed".into(),
            "POST is not allowed on /loans".into()
        )
    );
    assert_eq!(srv.get(&format!("/loans/{stranger}/events")).error().0, 404);
    // An empty body appends nothing, as `append` on empty input.
    let r = srv.post("/events", "\n\n");
    assert_eq!((r.status, r.body.as_str()), (200, "[]\n"));
    // Too many events for one all-or-nothing batch: refused before anything is parsed.
    let r = srv.post("/events", &"x\n".repeat(50_001));
    let (status, kind, msg) = r.error();
    assert_eq!((status, kind.as_str()), (413, "too_large"));
    assert!(
        msg.starts_with("line 50001: the body holds more than 50000 events"),
        "{msg}"
    );
    let (code, stderr) = srv.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_re_post_is_idempotent_and_sigterm_loses_no_acknowledged_write() {
    let (_dir, s) = temp_store();
    let loan = "5e000000-0000-4000-8000-000000000002";
    let srv = Server::start(&s);
    let first = format!(
        "{}\n{}\n",
        disbursed(loan).replace(
            r#""type""#,
            r#""event_id":"5e000000-0000-4000-8000-00000000d001","type""#
        ),
        payment(
            loan,
            "2024-01-05",
            "10.00",
            r#","event_id":"5e000000-0000-4000-8000-00000000d002""#
        )
    );
    let a = srv.post("/events", &first);
    assert_eq!(a.status, 201, "{}", a.body);
    let b = srv.post("/events", &first);
    assert_eq!(b.status, 200, "all already stored");
    assert_eq!(a.body, b.body, "a re-POST returns the stored events");
    assert_eq!(srv.stored_events(loan), 2);

    // A client keeps posting payments (each with its own event_id) and records what was
    // acknowledged; after 30 acknowledgements the server gets SIGTERM while it goes on.
    let addr = srv.addr.clone();
    let (tx, rx) = mpsc::channel::<usize>();
    let writer = std::thread::spawn(move || {
        let mut acked: Vec<Value> = Vec::new();
        for k in 0..100_000u32 {
            let line = payment(
                loan,
                "2024-01-06",
                "0.01",
                &format!(r#","event_id":"5e000000-0000-4000-8000-{k:012x}""#),
            );
            match try_request(&addr, "POST", "/events", line.as_bytes()) {
                Ok(r) if r.status == 201 => {
                    acked.push(r.json()[0].clone());
                    let _ = tx.send(acked.len());
                }
                // Refused, cut off or not answered: not acknowledged; the server is stopping.
                _ => break,
            }
        }
        acked
    });
    for n in rx.iter() {
        if n >= 30 {
            break;
        }
    }
    let (code, stderr) = srv.terminate();
    assert_eq!(code, Some(0), "graceful stop exits 0: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let acked = writer.join().unwrap();
    assert!(acked.len() >= 30);

    // Reopened without the server: every acknowledged event is stored, exactly as answered.
    let stored: Vec<Value> = ok(&s, &["events", loan, "--json"], None)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for a in &acked {
        assert!(stored.contains(a), "acknowledged but not stored: {a}");
    }
    assert!(stored.len() >= 2 + acked.len());
    ok(&s, &["verify"], None);

    // And a new server on the same store answers the re-POST as already stored.
    let srv = Server::start(&s);
    let again = srv.post("/events", &first);
    assert_eq!((again.status, again.body.as_str()), (200, a.body.as_str()));
    let (code, _) = srv.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn a_stop_is_not_held_up_by_idle_or_unfinished_connections() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("db"));
    // A kept-alive connection after one answer, and one whose request never finishes.
    let mut idle = TcpStream::connect(&srv.addr).unwrap();
    write!(idle, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut half = TcpStream::connect(&srv.addr).unwrap();
    write!(
        half,
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    assert_eq!(srv.get("/health").status, 200);
    // The stop ends: idle connections are closed at once, the unfinished request after the
    // grace period (or at once, if the server had not begun reading it).
    let (code, stderr) = srv.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let mut rest = Vec::new();
    let _ = half.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || !rest.starts_with(b"HTTP/1.1 2"),
        "never acknowledged"
    );
}
