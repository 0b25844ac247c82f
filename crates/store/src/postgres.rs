//! The PostgreSQL backend: one ledger shared by many processes on many machines.
//!
//! Schema: `sql/schema_v1.sql` (one row per event; `docs/storage.md` says why each index exists).
//! What the database does, not this process:
//!
//! - **Optimistic concurrency**: `PRIMARY KEY (loan_id, seq)`. A commit inserts its events at
//!   `prev_seq + 1 ..`; if another transaction holds one of those positions the insert fails
//!   (after waiting for that transaction when it is still open) and the commit is refused with
//!   [`StoreError::Raced`]; [`crate::Store::append`] then re-reads and seals again.
//! - **Idempotency**: `UNIQUE (event_id)`.
//! - **The global log in commit order**: every commit takes the single-row counter
//!   `arrears_log_head` as its last statement and holds its row lock until COMMIT, so positions
//!   are handed out in commit order, densely (a rollback gives them back).
//! - **Atomicity and durability**: one transaction per commit, `synchronous_commit = on` for the
//!   session (whatever the server's default), so COMMIT returns after the WAL is flushed;
//!   [`Backend::sync`] has nothing left to do.
//!
//! Commits use `COPY … FROM STDIN (FORMAT binary)` inside the commit transaction (batches of
//! [`STREAM_MIN_EVENTS`] or more are streamed to a COPY thread while they are still sealed); whole-
//! ledger scans (replay, verify, copy) stream through a portal (a server-side cursor) in a
//! read-only repeatable-read transaction, fetching [`FETCH_ROWS`] rows at a time.
//!
//! A password in the URL is never printed: [`PgUrl`] redacts it in `Display`/`Debug` and
//! `describe()`, and error texts are scrubbed of it.

use std::sync::Mutex;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use uuid::Uuid;

use crate::backend::{Backend, SealedBatch, StreamingCommit};
use crate::sled_backend::Mode;
use crate::{chunk, Head, LogEntry, RawChunk, RawStream, StoreError};

/// The schema version this build creates and reads (`sql/schema_v{N}.sql`).
pub const SCHEMA_VERSION: i64 = 1;
/// The schema, applied in one transaction to an empty database by the first append.
pub const SCHEMA_SQL: &str = include_str!("../sql/schema_v1.sql");
/// Rows fetched per round trip by the streaming scans.
pub const FETCH_ROWS: i32 = 10_000;
/// The advisory lock key that serialises schema creation (two first appends at once).
const CREATE_LOCK: i64 = 0x6172_7265_6172_7331; // "arrears1"

/// Whether a `--store` value names a PostgreSQL store.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A PostgreSQL URL whose password is never shown: `Display` and `Debug` print it with the
/// password (in the user info or a `password=` parameter) replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    pub fn new(url: impl Into<String>) -> PgUrl {
        PgUrl(url.into())
    }
    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL without its password, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
    /// The password the URL carries, if any (percent-decoded), so messages can be scrubbed of it.
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (userinfo, query) = split_url(&self.0);
        if let Some(pw) = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p) {
            out.push(pw.to_owned());
            out.push(percent_decode(pw));
        }
        for kv in query.unwrap_or_default().split('&') {
            if let Some(v) = kv.strip_prefix("password=") {
                out.push(v.to_owned());
                out.push(percent_decode(v));
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({})", self.redacted())
    }
}

/// (user info, query) of a URL, when present.
fn split_url(url: &str) -> (Option<&str>, Option<&str>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    (userinfo, query)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with the password (user info and `password=` parameters) replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}{authority}{path}?{q}"),
        None => format!("{scheme}{authority}{path}"),
    }
}

/// The PostgreSQL backend. Connections are pooled (opened on demand, kept when idle), so a scan
/// holding one does not block a worker that reads a stream meanwhile.
pub struct PostgresBackend {
    url: PgUrl,
    described: String,
    secrets: Vec<String>,
    config: postgres::Config,
    idle: Mutex<Vec<Client>>,
}

/// A pooled connection; returned to the pool on drop unless it broke.
pub struct Conn<'a> {
    client: Option<Client>,
    backend: &'a PostgresBackend,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("held until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.backend.give_back(c);
        }
    }
}

/// Which loan a unique violation on `(loan_id, seq)` names (`Key (loan_id, seq)=(…, 5) …`).
fn loan_in_detail(detail: Option<&str>) -> Option<Uuid> {
    let d = detail?;
    let start = d.find("=(")? + 2;
    d.get(start..start + 36)?.parse().ok()
}

impl PostgresBackend {
    /// Connect to the database at `url`. With [`Mode::Create`] an empty database gets the
    /// schema; with [`Mode::Existing`] it must already hold an arrears ledger. A database of
    /// another schema version is refused ([`StoreError::SchemaVersion`]).
    pub fn open(url: &PgUrl, mode: Mode) -> Result<PostgresBackend, StoreError> {
        let described = url.redacted();
        let secrets = url.secrets();
        let scrub = |s: String| {
            secrets
                .iter()
                .fold(s, |acc, sec| acc.replace(sec.as_str(), "***"))
        };
        let mut config: postgres::Config =
            url.expose()
                .parse()
                .map_err(|e: postgres::Error| StoreError::Path {
                    path: described.clone(),
                    why: scrub(format!("not a PostgreSQL URL: {e}")),
                })?;
        if config.get_password().is_none() {
            if let Ok(pw) = std::env::var("PGPASSWORD") {
                config.password(pw);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("arrears");
        }
        let backend = PostgresBackend {
            url: url.clone(),
            described,
            secrets,
            config,
            idle: Mutex::new(Vec::new()),
        };
        let mut c = backend.conn()?;
        let found = backend.schema_version(&mut c)?;
        match (found, mode) {
            (Some(v), _) if v == SCHEMA_VERSION => {}
            (Some(found), _) => {
                return Err(StoreError::SchemaVersion {
                    store: backend.described.clone(),
                    found,
                    expected: SCHEMA_VERSION,
                })
            }
            (None, Mode::Existing | Mode::ReadAnyFormat) => {
                return Err(StoreError::NoStore {
                    path: backend.described.clone(),
                })
            }
            (None, Mode::Create) => backend.create_schema(&mut c)?,
        }
        drop(c);
        Ok(backend)
    }

    /// The URL (password included) this backend connects to.
    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    fn schema_version(&self, c: &mut Client) -> Result<Option<i64>, StoreError> {
        let exists: bool = c
            .query_one("SELECT to_regclass('arrears_meta') IS NOT NULL", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = c
            .query_opt(
                "SELECT value FROM arrears_meta WHERE name = 'schema_version'",
                &[],
            )
            .map_err(|e| self.err(e))?;
        match row {
            Some(r) => Ok(Some(r.get(0))),
            None => Err(StoreError::NotAStore {
                path: self.described.clone(),
                why: "it has an arrears_meta table without a schema_version".into(),
            }),
        }
    }

    fn create_schema(&self, c: &mut Client) -> Result<(), StoreError> {
        let mut tx = c.transaction().map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
            .map_err(|e| self.err(e))?;
        // Another process may have created it while we waited for the lock.
        let exists: bool = tx
            .query_one("SELECT to_regclass('arrears_meta') IS NOT NULL", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        if !exists {
            tx.batch_execute(SCHEMA_SQL).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        if exists {
            // Check the version the other process created.
            if let Some(found) = self.schema_version(c)? {
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion {
                        store: self.described.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(())
    }

    /// A connection from the pool, or a new one.
    pub fn conn(&self) -> Result<Conn<'_>, StoreError> {
        Ok(Conn {
            client: Some(self.take_client()?),
            backend: self,
        })
    }

    fn take_client(&self) -> Result<Client, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => {
                let mut c = self.config.connect(NoTls).map_err(|e| self.err(e))?;
                // Durable on COMMIT whatever the server's default.
                c.batch_execute("SET synchronous_commit = on")
                    .map_err(|e| self.err(e))?;
                Ok(c)
            }
        }
    }

    fn give_back(&self, c: Client) {
        if !c.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
    }

    fn scrub(&self, s: String) -> String {
        self.secrets
            .iter()
            .fold(s, |acc, sec| acc.replace(sec.as_str(), "***"))
    }

    fn err(&self, e: postgres::Error) -> StoreError {
        let why = match e.as_db_error() {
            Some(db) => {
                let mut s = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    s.push_str(&format!(" ({d})"));
                }
                s
            }
            None => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    s.push_str(&format!(": {c}"));
                    src = c.source();
                }
                s
            }
        };
        StoreError::Io {
            store: self.described.clone(),
            why: self.scrub(why),
        }
    }

    fn corrupt(&self, at: impl Into<String>, why: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            store: self.described.clone(),
            at: at.into(),
            why: why.into(),
        }
    }

    /// A commit error: a race when another transaction holds a position or an id we insert.
    fn commit_err(&self, e: postgres::Error, batch: &SealedBatch) -> StoreError {
        let first = batch.loans.first().map(|l| l.loan).unwrap_or_default();
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                let db = e.as_db_error();
                let loan = db
                    .filter(|d| d.constraint() == Some("arrears_events_pkey"))
                    .and_then(|d| loan_in_detail(d.detail()));
                StoreError::Raced {
                    loan: loan.unwrap_or(first),
                }
            }
            Some(c)
                if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                StoreError::Raced { loan: first }
            }
            _ => self.err(e),
        }
    }

    /// Stream the rows of `query` through a portal (a server-side cursor) in a read-only
    /// repeatable-read transaction (one consistent snapshot), [`FETCH_ROWS`] at a time. A
    /// second thread fetches the next rows while `f` handles the last ones, so the server is not
    /// idle while the client works (and memory stays bounded: at most two fetches in hand).
    fn stream_rows(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
        f: &mut dyn FnMut(postgres::Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let (tx_rows, rx_rows) =
            std::sync::mpsc::sync_channel::<Result<Vec<postgres::Row>, StoreError>>(1);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let stop = &stop;
            let fetcher = scope.spawn(move || -> Result<(), StoreError> {
                let mut tx = c
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(|e| self.err(e))?;
                let portal = tx.bind(query, params).map_err(|e| self.err(e))?;
                loop {
                    let rows = match tx.query_portal(&portal, FETCH_ROWS) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx_rows.send(Err(self.err(e)));
                            return Ok(());
                        }
                    };
                    let last = rows.len() < FETCH_ROWS as usize;
                    if tx_rows.send(Ok(rows)).is_err()
                        || last
                        || stop.load(std::sync::atomic::Ordering::Relaxed)
                    {
                        break;
                    }
                }
                drop(portal);
                tx.commit().map_err(|e| self.err(e))
            });
            let mut result = Ok(());
            'consume: for rows in rx_rows.iter() {
                match rows {
                    Ok(rows) => {
                        for r in rows {
                            match f(r) {
                                Ok(true) => {}
                                Ok(false) => break 'consume,
                                Err(e) => {
                                    result = Err(e);
                                    break 'consume;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            drop(rx_rows);
            let fetched = fetcher
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            result.and(fetched)
        })
    }

    fn head_of_header(&self, loan: Uuid, bytes: &[u8]) -> Result<Head, StoreError> {
        chunk::header(bytes)
            .map_err(|why| self.corrupt(format!("loan {loan}"), why))?
            .ok_or_else(|| self.corrupt(format!("loan {loan}"), "an event row without a header"))
    }
}

fn seq_of(v: i64) -> u64 {
    v as u64
}

impl Backend for PostgresBackend {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn read_stream(&self, loan: &Uuid) -> Result<RawStream, StoreError> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT chunk FROM arrears_events WHERE loan_id = $1 ORDER BY seq",
                &[loan],
            )
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| RawChunk::new(r.get::<_, Vec<u8>>(0)))
            .collect())
    }

    fn read_streams(&self, loans: &[Uuid]) -> Result<Vec<RawStream>, StoreError> {
        if loans.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let rows = c
            .query(
                // LATERAL: one index probe per loan whatever the table's size (`= ANY($1)` with a
                // large array is planned as a sequential scan).
                "SELECT q.loan_id, e.chunk FROM unnest($1::uuid[]) AS q(loan_id) \
                 CROSS JOIN LATERAL (SELECT seq, chunk FROM arrears_events \
                 WHERE arrears_events.loan_id = q.loan_id ORDER BY seq) AS e",
                &[&loans],
            )
            .map_err(|e| self.err(e))?;
        let mut by_loan: std::collections::HashMap<Uuid, RawStream> =
            std::collections::HashMap::new();
        for r in rows {
            by_loan
                .entry(r.get(0))
                .or_default()
                .push(RawChunk::new(r.get::<_, Vec<u8>>(1)));
        }
        Ok(loans
            .iter()
            .map(|l| by_loan.remove(l).unwrap_or_default())
            .collect())
    }

    fn scan_streams(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut current: Option<Uuid> = None;
        let mut chunks: RawStream = Vec::new();
        self.stream_rows(
            "SELECT loan_id, chunk FROM arrears_events ORDER BY loan_id, seq",
            &[],
            &mut |r| {
                let loan: Uuid = r.get(0);
                if current != Some(loan) {
                    if let Some(prev) = current.take() {
                        f(prev, std::mem::take(&mut chunks))?;
                    }
                    current = Some(loan);
                }
                chunks.push(RawChunk::new(r.get::<_, Vec<u8>>(1)));
                Ok(true)
            },
        )?;
        if let Some(prev) = current {
            f(prev, chunks)?;
        }
        Ok(())
    }

    fn scan_heads(
        &self,
        f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The last event's chunk header is the head: read only those 49 bytes.
        self.stream_rows(
            "SELECT DISTINCT ON (loan_id) loan_id, substring(chunk FROM 1 FOR 49) \
             FROM arrears_events ORDER BY loan_id, seq DESC",
            &[],
            &mut |r| {
                let loan: Uuid = r.get(0);
                let head = self.head_of_header(loan, r.get::<_, &[u8]>(1))?;
                f(loan, head)?;
                Ok(true)
            },
        )
    }

    fn locate(&self, event_id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError> {
        let mut c = self.conn()?;
        let row = c
            .query_opt(
                "SELECT loan_id, seq FROM arrears_events WHERE event_id = $1",
                &[event_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| (r.get(0), seq_of(r.get(1)))))
    }

    fn locate_many(&self, ids: &[Uuid]) -> Result<Vec<Option<(Uuid, u64)>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT e.event_id, e.loan_id, e.seq FROM unnest($1::uuid[]) AS q(event_id) \
                 CROSS JOIN LATERAL (SELECT event_id, loan_id, seq FROM arrears_events \
                 WHERE arrears_events.event_id = q.event_id) AS e",
                &[&ids],
            )
            .map_err(|e| self.err(e))?;
        let found: std::collections::HashMap<Uuid, (Uuid, u64)> = rows
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), seq_of(r.get(2)))))
            .collect();
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    fn refuses_stored_ids(&self) -> bool {
        // UNIQUE (event_id): the COPY probes the index anyway.
        true
    }

    fn scan_log(&self, from: u64, f: &mut dyn FnMut(LogEntry) -> bool) -> Result<(), StoreError> {
        let from_i = from.min(i64::MAX as u64) as i64;
        self.stream_rows(
            "SELECT position, loan_id, first_seq, count FROM arrears_log \
             WHERE position >= coalesce((SELECT max(position) FROM arrears_log WHERE position <= $1), 0) \
             ORDER BY position",
            &[&from_i],
            &mut |r| {
                let start = seq_of(r.get(0));
                let loan_id: Uuid = r.get(1);
                let first = seq_of(r.get(2));
                let n: i32 = r.get(3);
                for i in 0..n as u64 {
                    let position = start + i;
                    if position >= from
                        && !f(LogEntry {
                            position,
                            loan_id,
                            seq: first + i,
                        })
                    {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
    }

    fn log_len(&self) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        let next: i64 = c
            .query_one("SELECT next_position FROM arrears_log_head", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        Ok(seq_of(next) - 1)
    }

    fn commit(&self, batch: &SealedBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rows in (loan_id, seq) order: concurrent writers then wait for each other's keys in
        // one order and cannot deadlock on them.
        let mut loans: Vec<&crate::backend::SealedLoan> = batch.loans.iter().collect();
        loans.sort_by_key(|l| l.loan);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.err(e))?;
        let mut rows = Vec::with_capacity(COPY_HEADER.len() + batch.len() * 400);
        rows.extend_from_slice(COPY_HEADER);
        for l in &loans {
            let mut rest: &[u8] = &l.bodies;
            for ev in &l.events {
                let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                copy_row(&mut rows, ev, &rest[..4 + n]);
                rest = &rest[4 + n..];
            }
            debug_assert!(rest.is_empty(), "bodies hold exactly the events");
        }
        rows.extend_from_slice(&(-1i16).to_be_bytes());
        {
            use std::io::Write;
            let mut w = tx
                .copy_in(
                    "COPY arrears_events (loan_id, seq, event_id, chunk) FROM STDIN (FORMAT binary)",
                )
                .map_err(|e| self.err(e))?;
            // A write error means the server ended the COPY; `finish` returns its error.
            let _ = w.write_all(&rows);
            w.finish().map_err(|e| self.commit_err(e, batch))?;
        }
        log_and_commit(tx, batch.len() as i64, &batch.runs).map_err(|e| self.commit_err(e, batch))
    }

    fn begin(
        &self,
        events: usize,
    ) -> Result<Option<Box<dyn StreamingCommit + Send + '_>>, StoreError> {
        // ARREARS_PG_STREAM_MIN overrides the threshold (benchmarks compare the two paths).
        let min = std::env::var("ARREARS_PG_STREAM_MIN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(STREAM_MIN_EVENTS);
        if events < min {
            return Ok(None);
        }
        let client = self.take_client()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
        let writer = std::thread::Builder::new()
            .name("arrears-pg-copy".into())
            .spawn(move || stream_copy(client, rx))
            .map_err(|e| StoreError::Io {
                store: self.described.clone(),
                why: format!("starting the COPY thread: {e}"),
            })?;
        Ok(Some(Box::new(Streaming {
            backend: self,
            to_writer: Some(tx),
            writer: Some(writer),
            rows: Vec::with_capacity(STREAM_BYTES_PER_MESSAGE),
            sent: 0,
        })))
    }

    fn sync(&self) -> Result<(), StoreError> {
        // COMMIT returned after the WAL flush (synchronous_commit = on).
        Ok(())
    }

    fn snapshot(&self, loan: &Uuid) -> Result<Option<RawChunk>, StoreError> {
        let mut c = self.conn()?;
        let row = c
            .query_opt(
                "SELECT bytes FROM arrears_snapshots WHERE loan_id = $1",
                &[loan],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| RawChunk::new(r.get::<_, Vec<u8>>(0))))
    }

    fn scan_snapshots(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.stream_rows(
            "SELECT loan_id, bytes FROM arrears_snapshots ORDER BY loan_id",
            &[],
            &mut |r| {
                f(r.get(0), RawChunk::new(r.get::<_, Vec<u8>>(1)))?;
                Ok(true)
            },
        )
    }

    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        if snaps.is_empty() {
            return Ok(());
        }
        let (loans, bytes): (Vec<Uuid>, Vec<Vec<u8>>) = snaps.into_iter().unzip();
        let mut c = self.conn()?;
        c.execute(
            "INSERT INTO arrears_snapshots (loan_id, bytes) \
             SELECT * FROM unnest($1::uuid[], $2::bytea[]) \
             ON CONFLICT (loan_id) DO UPDATE SET bytes = EXCLUDED.bytes",
            &[&loans, &bytes],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Batches of at least this many events are streamed to the server while they are sealed
/// ([`Backend::begin`]); smaller ones are written in one go, sorted by `(loan_id, seq)`.
pub const STREAM_MIN_EVENTS: usize = 1_000;
/// Bytes of rows handed to the COPY thread per message.
const STREAM_BYTES_PER_MESSAGE: usize = 128 * 1024;

/// The last statements of every commit: take the log counter (its row lock is held until
/// COMMIT, so positions follow commit order and stay dense), insert the batch's log runs, and
/// COMMIT (durable: `synchronous_commit = on`).
fn log_and_commit(
    mut tx: postgres::Transaction<'_>,
    n: i64,
    runs: &[(Uuid, u64, u32)],
) -> Result<(), postgres::Error> {
    let first: i64 = tx
        .query_one(
            "UPDATE arrears_log_head SET next_position = next_position + $1 RETURNING next_position - $1",
            &[&n],
        )?
        .get(0);
    let mut positions = Vec::with_capacity(runs.len());
    let mut run_loans = Vec::with_capacity(runs.len());
    let mut firsts = Vec::with_capacity(runs.len());
    let mut counts = Vec::with_capacity(runs.len());
    let mut p = first;
    for (loan, first_seq, count) in runs {
        positions.push(p);
        run_loans.push(*loan);
        firsts.push(*first_seq as i64);
        counts.push(*count as i32);
        p += *count as i64;
    }
    tx.execute(
        "INSERT INTO arrears_log (position, loan_id, first_seq, count) \
         SELECT * FROM unnest($1::int8[], $2::uuid[], $3::int8[], $4::int4[])",
        &[&positions, &run_loans, &firsts, &counts],
    )?;
    tx.commit()
}

/// The signature and header of PostgreSQL's binary COPY format.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Append one `arrears_events` row (loan_id, seq, event_id, chunk) in binary COPY format; the
/// chunk is the event's header (`head`) followed by its length-prefixed `body`.
fn copy_row(out: &mut Vec<u8>, ev: &arrears_core::event::Event, body: &[u8]) {
    let chunk_len = chunk::HEADER_LEN + body.len();
    out.reserve(2 + 4 + 16 + 4 + 8 + 4 + 16 + 4 + chunk_len);
    out.extend_from_slice(&4i16.to_be_bytes());
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(ev.loan_id.as_bytes());
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&(ev.seq.get() as i64).to_be_bytes());
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(ev.event_id.as_bytes());
    out.extend_from_slice(&(chunk_len as i32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&chunk::seal(&chunk::head_of(ev), body));
    debug_assert_eq!(out.len() - start, chunk_len);
}

/// What the sealing thread tells the COPY thread.
enum Msg {
    /// Rows in binary COPY format (no header, no trailer).
    Rows(Vec<u8>),
    /// Every row was sent: finish the COPY, write the log, commit.
    Commit { n: i64, runs: Vec<(Uuid, u64, u32)> },
}

/// The COPY thread of a streaming commit: BEGIN, COPY the rows as they come, and on `Commit`
/// the log and COMMIT. A closed channel without `Commit` rolls back. Returns the connection for
/// the pool (None when it broke) and the outcome.
fn stream_copy(
    mut client: Client,
    rx: std::sync::mpsc::Receiver<Msg>,
) -> (Option<Client>, Option<Result<(), postgres::Error>>) {
    let outcome = (|| -> Option<Result<(), postgres::Error>> {
        let mut tx = match client.transaction() {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let mut w = match tx.copy_in(
            "COPY arrears_events (loan_id, seq, event_id, chunk) FROM STDIN (FORMAT binary)",
        ) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        use std::io::Write;
        // A write error means the server ended the COPY (e.g. a unique violation); `finish`
        // then returns the server's error.
        let mut failed = w.write_all(COPY_HEADER).is_err();
        loop {
            match rx.recv() {
                Ok(Msg::Rows(rows)) => {
                    if !failed {
                        failed = w.write_all(&rows).is_err();
                    }
                }
                Ok(Msg::Commit { n, runs }) => {
                    if !failed {
                        // The trailer: a field count of -1.
                        let _ = w.write_all(&(-1i16).to_be_bytes());
                    }
                    if let Err(e) = w.finish() {
                        return Some(Err(e));
                    }
                    return Some(log_and_commit(tx, n, &runs));
                }
                // The batch was abandoned (a rejected event, an error): roll back.
                Err(_) => return None,
            }
        }
    })();
    let keep = !client.is_closed();
    (keep.then_some(client), outcome)
}

type CopyThread = std::thread::JoinHandle<(Option<Client>, Option<Result<(), postgres::Error>>)>;

/// A streaming commit on PostgreSQL: the sealed events go to a COPY thread (the server stores
/// them while the rest of the batch is sealed); `commit` sends the log and waits for COMMIT.
/// Rows arrive in batch order rather than sorted, so two such batches on overlapping loans in
/// different orders can deadlock; PostgreSQL then aborts one, which is retried as a race.
struct Streaming<'a> {
    backend: &'a PostgresBackend,
    to_writer: Option<std::sync::mpsc::SyncSender<Msg>>,
    writer: Option<CopyThread>,
    /// Rows not yet handed to the COPY thread, in binary COPY format.
    rows: Vec<u8>,
    sent: usize,
}

impl Streaming<'_> {
    fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(STREAM_BYTES_PER_MESSAGE));
        if let Some(tx) = &self.to_writer {
            // A closed channel means the COPY thread ended; `commit` reports why.
            let _ = tx.send(Msg::Rows(rows));
        }
    }

    /// Wait for the COPY thread; the connection goes back to the pool.
    fn join(&mut self) -> Option<Result<(), postgres::Error>> {
        self.to_writer.take();
        let (client, outcome) = self
            .writer
            .take()?
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let Some(c) = client {
            self.backend.give_back(c);
        }
        outcome
    }
}

impl StreamingCommit for Streaming<'_> {
    fn event(&mut self, ev: &arrears_core::event::Event, body: &[u8]) -> Result<(), StoreError> {
        copy_row(&mut self.rows, ev, body);
        self.sent += 1;
        if self.rows.len() >= STREAM_BYTES_PER_MESSAGE {
            self.flush();
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>, batch: &SealedBatch) -> Result<(), StoreError> {
        assert_eq!(self.sent, batch.len(), "every sealed event was streamed");
        self.flush();
        if let Some(tx) = self.to_writer.take() {
            let _ = tx.send(Msg::Commit {
                n: batch.len() as i64,
                runs: batch.runs.clone(),
            });
        }
        match self.join() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(self.backend.commit_err(e, batch)),
            None => Err(StoreError::Io {
                store: self.backend.described.clone(),
                why: "the COPY thread ended before the commit".into(),
            }),
        }
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        // Not committed: closing the channel makes the COPY thread roll back.
        let _ = self.join();
    }
}

/// Test support: a PostgreSQL server for the test suites, and a fresh database per test.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// The server the PostgreSQL tests use: `$ARREARS_TEST_PG` (CI sets it from
    /// `scripts/postgres.sh start`), or else the throwaway cluster `scripts/postgres.sh start`
    /// starts (or reuses). Panics, never skips, when neither works.
    pub fn server_url() -> PgUrl {
        static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let url = URL.get_or_init(|| {
            if let Ok(u) = std::env::var("ARREARS_TEST_PG") {
                if !u.trim().is_empty() {
                    return u.trim().to_owned();
                }
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");
            let out = std::process::Command::new("bash")
                .arg(script)
                .arg("start")
                .stderr(std::process::Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("the PostgreSQL tests need a server: ARREARS_TEST_PG is unset and `{script} start` could not run ({e}). Run `scripts/postgres.sh start` and export ARREARS_TEST_PG=<the URL it prints>"));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout.lines().last().unwrap_or("").trim().to_owned();
            assert!(
                out.status.success() && is_url(&last),
                "the PostgreSQL tests need a server: ARREARS_TEST_PG is unset and `scripts/postgres.sh start` failed ({}). Run it yourself and export ARREARS_TEST_PG=<the URL it prints>",
                out.status
            );
            eprintln!("PostgreSQL tests: using the throwaway cluster of scripts/postgres.sh (`scripts/postgres.sh stop` removes it)");
            last
        });
        PgUrl::new(url.clone())
    }

    /// `url` with its database replaced by `db`.
    pub fn with_database(url: &PgUrl, db: &str) -> PgUrl {
        let u = url.expose();
        let (base, query) = match u.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (u, None),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[scheme_end..].find('/') {
            Some(i) => &base[..scheme_end + i],
            None => base,
        };
        PgUrl::new(match query {
            Some(q) => format!("{base}/{db}?{q}"),
            None => format!("{base}/{db}"),
        })
    }

    /// A new, empty database on the test server, dropped when the guard is.
    pub struct TempDb {
        pub url: PgUrl,
        admin: PgUrl,
        name: String,
    }

    impl TempDb {
        pub fn new() -> TempDb {
            let admin = server_url();
            let name = format!(
                "t_{}_{}",
                std::process::id(),
                Uuid::new_v4().simple().to_string().get(..12).unwrap_or("x")
            );
            let mut c = postgres::Client::connect(admin.expose(), NoTls)
                .unwrap_or_else(|e| panic!("connecting to the test server {admin}: {e}"));
            c.batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|e| panic!("CREATE DATABASE on {admin}: {e}"));
            TempDb {
                url: with_database(&admin, &name),
                admin,
                name,
            }
        }
    }

    impl Default for TempDb {
        fn default() -> Self {
            TempDb::new()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Ok(mut c) = postgres::Client::connect(self.admin.expose(), NoTls) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }
}
