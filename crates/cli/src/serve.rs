//! `arrears serve --listen ADDR`: one process owns the store and serves many clients over
//! HTTP/JSON (axum on tokio).
//!
//! Every store call runs on tokio's blocking pool (`spawn_blocking`), so a long append never
//! holds up the async workers: reads go straight to the store while the store itself
//! serialises appends. A read waits for a write only while sled applies a batch atomically (its
//! process-wide batch lock, about 40 µs per event: nothing for the usual one-payment POST, about
//! 2 s for a 50,000-event one); parsing, validation, `decide` and the flush of an append do not
//! hold reads up (docs/benchmarks.md, "Serve"). An append returns only after its batch is
//! flushed, so every `2xx` answer to `POST /events` is durable. On SIGTERM or SIGINT the server
//! stops accepting connections, lets the requests in flight finish (appends included; a client
//! still sending its request after [`SHUTDOWN_GRACE`] is cut off), closes the store and exits 0;
//! a second signal exits at once with 130 (acknowledged writes are durable either way).
//!
//! Endpoints (every JSON body ends with a newline; a single projection is byte for byte what
//! `arrears show --json` prints):
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /events` | body: JSON lines, as `append` reads them, all or nothing; the stored events as a JSON array (201 when any is new, 200 when all were already stored) |
//! | `GET /loans/{id}?as_of&known_at` | the §7 projection |
//! | `GET /loans/{id}/explain?as_of&known_at` | the audit trail, as `explain --json` |
//! | `GET /loans/{id}/events?known_at` | the stored events, a JSON array |
//! | `GET /loans/{id}/report?as_of&known_at` | the HTML report page |
//! | `GET /loans?as_of&known_at&stage&bucket&class&min_dpd&limit` | matching §7 objects, a JSON array in `loan_id` order |
//! | `GET /portfolio?as_of&known_at&vs` | as `portfolio --json` (roll rates with `vs`) |
//! | `GET /verify?digest` | `{"ok":true,…}`, or an error naming the first broken event |
//! | `GET /digest` | `{"digest":"POSITION-HEX"}` |
//! | `GET /health` | `{"status":"ok",…}` |
//!
//! Errors are `{"error":"<message naming the field or line>","kind":"<kind>"}` with status 400
//! (`rejected_input`), 404 (`not_found`: unknown loan or path), 405, 409 (`conflict`: a `seq`
//! that is not the head + 1, an `event_id` stored with other content; `digest_mismatch`), 413
//! (`too_large`) or 500 (`storage`, `corrupt`, `internal`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use arrears_core::Date;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use rayon::prelude::*;
use uuid::Uuid;

use arrears_core::event::{NewEvent, Timestamp};
use arrears_core::parse::{parse_date, parse_timestamp};
use arrears_projection::decide::Rejection;
use arrears_store::{AppendError, StoreError};

use crate::ledger::{append_failure, parse_line, Failure, Ledger, MAX_ATOMIC_EVENTS};
use crate::portfolio::{LoanFilter, RollRates};

/// How long a stop waits for the requests in flight (reads, or a client still sending its
/// request) before closing their connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest request body accepted: room for [`MAX_ATOMIC_EVENTS`] events of ordinary size.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// An error answer: status, a stable `kind`, and the message (the same words as the CLI's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "rejected_input", message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A read's failure: rejected input there means the loan is unknown (404); anything else
    /// is the store's (500).
    fn read(f: Failure) -> ApiError {
        match f {
            Failure::Input(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            other => ApiError::storage(other),
        }
    }

    fn storage(f: Failure) -> ApiError {
        let m = f.to_string();
        let kind = if m.contains("is damaged at") {
            "corrupt"
        } else {
            "storage"
        };
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, kind, m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "kind": self.kind}).to_string() + "\n";
        json(self.status, body)
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A JSON array of already-serialised JSON values.
fn array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::from("[");
    for (k, it) in items.into_iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(it);
    }
    s.push_str("]\n");
    s
}

#[derive(Clone)]
struct App {
    ledger: Arc<Ledger>,
}

/// Run `f` on the blocking pool (every store call does: sled I/O must not stall the async
/// workers, and a long append must not hold up the reads beside it).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::internal(format!(
            "the request's worker failed: {e}"
        )))
    })
}

/// Query parameters, each at most once, from a fixed list.
struct Params(BTreeMap<String, String>);

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl Params {
    fn parse(q: RawQuery, allowed: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) =
            q.map_err(|e| ApiError::bad(format!("the query string is not valid: {e}")))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad(format!(
                    "{k}: unknown parameter (this endpoint takes {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad(format!("{k}: given more than once")));
            }
        }
        Ok(Params(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A business date; left out, today in the policy's time zone (SPEC §10).
    fn date(&self, k: &str, ledger: &Ledger) -> Result<Date, ApiError> {
        match self.get(k) {
            None => Ok(ledger.policy.business_date(Utc::now())),
            Some(s) => parse_date(s)
                .map(Date::new)
                .ok_or_else(|| ApiError::bad(format!("{k}: `{s}` is not a date (YYYY-MM-DD)"))),
        }
    }

    fn known_at(&self) -> Result<Option<Timestamp>, ApiError> {
        self.get("known_at")
            .map(|s| {
                parse_timestamp(s).ok_or_else(|| {
                    let hint = if s.contains(' ') {
                        " (in a URL a `+` must be written %2B)"
                    } else {
                        ""
                    };
                    ApiError::bad(format!(
                        "known_at: `{s}` is not an RFC 3339 timestamp{hint}"
                    ))
                })
            })
            .transpose()
    }
}

fn loan_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad(format!("loan_id: `{s}` is not a UUID")))
}

/// The router over a ledger (public for in-process tests).
/// A per-loan query's loan id and its `as_of` / `known_at` parameters (the only ones allowed),
/// checked in that order.
fn loan_query(
    app: &App,
    id: &str,
    q: RawQuery,
) -> Result<(Uuid, Date, Option<Timestamp>), ApiError> {
    let q = Params::parse(q, &["as_of", "known_at"])?;
    let loan = loan_id(id)?;
    Ok((loan, q.date("as_of", &app.ledger)?, q.known_at()?))
}

pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route("/events", post(post_events))
        .route("/loans", get(loans))
        .route("/loans/{id}", get(loan))
        .route("/loans/{id}/explain", get(explain))
        .route("/loans/{id}/events", get(loan_events))
        .route("/loans/{id}/report", get(report))
        .route("/portfolio", get(portfolio))
        .route("/verify", get(verify))
        .route("/digest", get(digest))
        .route("/health", get(health))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(App { ledger })
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// `POST /events`: the body's JSON lines appended as one all-or-nothing batch, with the same
/// parsing, rules and messages as `arrears append`.
async fn post_events(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the request body is larger than {} MiB; nothing was written. Send at most {MAX_ATOMIC_EVENTS} events per request",
                    MAX_BODY_BYTES >> 20
                ),
            )
        } else {
            ApiError::bad(format!("reading the request body: {e}"))
        }
    })?;
    let ledger = app.ledger.clone();
    let (created, text) = blocking(move || append_body(&ledger, &body)).await?;
    Ok(json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        text,
    ))
}

/// Parse and append one request body; (whether anything new was stored, the JSON answer).
pub fn append_body(ledger: &Ledger, body: &[u8]) -> Result<(bool, String), ApiError> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|_| ApiError::bad(format!("line {n}: not UTF-8 text")))?;
        if line.trim().is_empty() {
            continue;
        }
        if lines.len() >= MAX_ATOMIC_EVENTS {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "line {n}: the body holds more than {MAX_ATOMIC_EVENTS} events, too many for one all-or-nothing append; nothing was written. Send at most {MAX_ATOMIC_EVENTS} events per request"
                ),
            ));
        }
        lines.push((n, line));
    }
    if lines.is_empty() {
        return Ok((false, "[]\n".into()));
    }
    let policy = &ledger.policy;
    let parse = |(n, l): &(usize, String)| parse_line(l, *n, policy);
    // Small bodies (the usual one payment) are parsed here; big ones on every core.
    let parsed: Vec<Result<NewEvent, Failure>> = if lines.len() > 256 {
        lines.par_iter().map(parse).collect()
    } else {
        lines.iter().map(parse).collect()
    };
    let mut batch = Vec::with_capacity(parsed.len());
    for p in parsed {
        batch.push(p.map_err(|f| ApiError::bad(f.to_string()))?);
    }
    let line_nos: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
    drop(lines);
    match ledger.append(batch, Utc::now()) {
        Ok(stored) => {
            let created = stored.iter().any(|a| !a.existed);
            let jsons: Vec<String> = stored.iter().map(|a| a.event.to_json()).collect();
            Ok((created, array(jsons.iter().map(String::as_str))))
        }
        Err(e) => {
            let (status, kind) = match &e {
                AppendError::Conflict { .. }
                | AppendError::EventIdReused { .. }
                | AppendError::Store(StoreError::Raced { .. }) => {
                    (StatusCode::CONFLICT, "conflict")
                }
                AppendError::Rejected {
                    reason: Rejection::NotDisbursed,
                    ..
                } => (StatusCode::NOT_FOUND, "not_found"),
                AppendError::Store(StoreError::Corrupt { .. }) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "corrupt")
                }
                AppendError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
                _ => (StatusCode::BAD_REQUEST, "rejected_input"),
            };
            let message = append_failure(e, &line_nos, &ledger.describe()).to_string();
            Err(ApiError::new(status, kind, message))
        }
    }
}

async fn loan(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let (loan, as_of, known_at) = loan_query(&app, &id, q)?;
    let ledger = app.ledger.clone();
    let p = blocking(move || ledger.show(loan, as_of, known_at).map_err(ApiError::read)).await?;
    let mut body = p.to_json();
    body.push('\n');
    Ok(json(StatusCode::OK, body))
}

async fn explain(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let (loan, as_of, known_at) = loan_query(&app, &id, q)?;
    let ledger = app.ledger.clone();
    let e = blocking(move || {
        ledger
            .explain(loan, as_of, known_at)
            .map_err(ApiError::read)
    })
    .await?;
    let body = serde_json::to_string(&e).map_err(|e| ApiError::internal(e.to_string()))? + "\n";
    Ok(json(StatusCode::OK, body))
}

async fn loan_events(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let q = Params::parse(q, &["known_at"])?;
    let loan = loan_id(&id)?;
    let known_at = q.known_at()?;
    let ledger = app.ledger.clone();
    let events =
        blocking(move || ledger.stored_events(loan, known_at).map_err(ApiError::read)).await?;
    let jsons: Vec<String> = events.iter().map(|e| e.to_json()).collect();
    Ok(json(
        StatusCode::OK,
        array(jsons.iter().map(String::as_str)),
    ))
}

async fn report(
    State(app): State<App>,
    Path(id): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let (loan, as_of, known_at) = loan_query(&app, &id, q)?;
    let ledger = app.ledger.clone();
    let page = blocking(move || {
        crate::report::for_loan(&ledger, loan, as_of, known_at).map_err(ApiError::read)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response())
}

/// A `loans` filter option's error, named as the query parameter (`min_dpd`, not `--min-dpd`).
fn filter_error(e: crate::portfolio::FilterError) -> ApiError {
    let name = e.option.trim_start_matches("--").replace('-', "_");
    ApiError::bad(format!("{name}: `{}` {}", e.value, e.why))
}

async fn loans(State(app): State<App>, q: RawQuery) -> Result<Response, ApiError> {
    let q = Params::parse(
        q,
        &[
            "as_of", "known_at", "stage", "bucket", "class", "min_dpd", "limit",
        ],
    )?;
    let filter = LoanFilter::parse(
        q.get("stage"),
        q.get("bucket"),
        q.get("class"),
        q.get("min_dpd"),
        q.get("limit"),
    )
    .map_err(filter_error)?;
    let (as_of, known_at) = (q.date("as_of", &app.ledger)?, q.known_at()?);
    let ledger = app.ledger.clone();
    let body = blocking(move || {
        let mut body = String::from("[");
        ledger
            .list_loans(as_of, known_at, &filter, true, &mut |_, line| {
                // Past the `[`: an earlier loan was listed (a §7 line is never empty).
                if body.len() > 1 {
                    body.push(',');
                }
                body.push_str(
                    std::str::from_utf8(line.unwrap_or_default())
                        .expect("the §7 writer writes UTF-8")
                        .trim_end_matches('\n'),
                );
                Ok(())
            })
            .map_err(ApiError::storage)?;
        body.push_str("]\n");
        Ok(body)
    })
    .await?;
    Ok(json(StatusCode::OK, body))
}

async fn portfolio(State(app): State<App>, q: RawQuery) -> Result<Response, ApiError> {
    let q = Params::parse(q, &["as_of", "known_at", "vs"])?;
    let (as_of, known_at) = (q.date("as_of", &app.ledger)?, q.known_at()?);
    let vs = q.get("vs").map(|_| q.date("vs", &app.ledger)).transpose()?;
    let ledger = app.ledger.clone();
    let body = blocking(move || match vs {
        None => {
            let pf = ledger
                .portfolio(as_of, known_at)
                .map_err(ApiError::storage)?;
            Ok(pf.to_json() + "\n")
        }
        Some(d0) => {
            let rr = RollRates::new(d0, as_of, known_at)
                .map_err(|e| ApiError::bad(format!("vs: {e}")))?;
            let rr = ledger.roll_rates(rr).map_err(ApiError::storage)?;
            Ok(rr.to_json() + "\n")
        }
    })
    .await?;
    Ok(json(StatusCode::OK, body))
}

async fn verify(State(app): State<App>, q: RawQuery) -> Result<Response, ApiError> {
    let q = Params::parse(q, &["digest"])?;
    let digest = q.get("digest").map(str::to_owned);
    let ledger = app.ledger.clone();
    blocking(move || {
        if let Some(b) = ledger.verify().map_err(ApiError::storage)? {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt",
                format!("verify: broken at {}: {}", b.at, b.why),
            ));
        }
        if let Some(d) = digest {
            let checked = ledger.check_digest(&d).map_err(|f| match f {
                Failure::Input(m) => ApiError::bad(m.replacen("--digest", "digest", 1)),
                other => ApiError::storage(other),
            })?;
            if let Err(why) = checked {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "digest_mismatch",
                    format!("verify: the store does not extend digest {d}: {why}"),
                ));
            }
        }
        Ok(())
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        "{\"ok\":true,\"message\":\"every chain, seq and head verifies\"}\n".into(),
    ))
}

async fn digest(State(app): State<App>, q: RawQuery) -> Result<Response, ApiError> {
    Params::parse(q, &[])?;
    let ledger = app.ledger.clone();
    let d = blocking(move || ledger.digest().map_err(ApiError::storage)).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "digest": d }).to_string() + "\n",
    ))
}

async fn health(State(app): State<App>, q: RawQuery) -> Result<Response, ApiError> {
    Params::parse(q, &[])?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "policy": app.ledger.policy.name,
            "store": app.ledger.describe(),
        })
        .to_string()
            + "\n",
    ))
}

/// Serve `ledger` on `listen` (`HOST:PORT`; port 0 picks a free one) until SIGTERM or SIGINT.
/// The first line on standard output is `listening on http://ADDR` with the bound address.
pub fn run(ledger: Ledger, listen: &str) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arrears-serve")
        .build()
        .map_err(|e| Failure::Other(format!("starting the server runtime: {e}")))?;
    let ledger = Arc::new(ledger);
    let served = rt.block_on(serve(ledger.clone(), listen));
    // Dropping the runtime waits for every blocking task that started (an append whose client
    // went away still finishes); then the store is closed and flushed.
    drop(rt);
    drop(ledger);
    served?;
    eprintln!("arrears serve: stopped; every acknowledged write is stored");
    Ok(())
}

async fn serve(ledger: Arc<Ledger>, listen: &str) -> Result<(), Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a signal that arrives once the address is printed is a graceful stop.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::Other(format!("installing the signal handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Other(format!("installing the signal handler: {e}")))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Other(format!("--listen {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Other(format!("--listen {listen}: {e}")))?;
    println!("listening on http://{addr}");
    eprintln!(
        "arrears serve: store {}, policy {}; stop with SIGTERM or Ctrl-C",
        ledger.describe(),
        ledger.policy.describe()
    );
    let (fired, mut fired_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("arrears serve: {name}: finishing the requests in flight");
        let _ = fired.send(true);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            eprintln!("arrears serve: second signal: exiting now (acknowledged writes are stored)");
            std::process::exit(crate::exit::INTERRUPTED);
        });
    };
    let server = axum::serve(listener, router(ledger)).with_graceful_shutdown(stop);
    // A client that never finishes sending its request would hold the stop up for ever: after
    // the grace period its connection is closed. Appends already running still finish (the
    // runtime waits for them) and are stored; their clients just get no answer.
    let deadline = async move {
        let _ = fired_rx.wait_for(|f| *f).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| Failure::Other(format!("serving on {addr}: {e}"))),
        _ = deadline => {
            eprintln!(
                "arrears serve: requests still open after {} s: closing their connections",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    }
}
