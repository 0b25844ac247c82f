-- arrears PostgreSQL schema, version 1 (docs/storage.md, "PostgreSQL").
--
-- Applied once, in one transaction, by the first `arrears append` against an empty database.
-- A database holding another version is refused: this file is never edited once released; a
-- new version is a new file (schema_v2.sql) and `arrears copy` moves a ledger across.
-- Every table name starts with `arrears_`, so the ledger can share a database (or, with
-- `?options=-csearch_path%3D…` in the URL, a schema) with other tables.

-- The schema version; one row.
CREATE TABLE arrears_meta (
    name  text   PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO arrears_meta (name, value) VALUES ('schema_version', 1);

-- One row per event. `chunk` is the event in the backend-independent chunk format
-- (crates/store/src/chunk.rs, encoding 3: a 49-byte header with the event's seq, hash and
-- recorded_at, then its length-prefixed codec body), exactly the bytes `verify` and replay
-- decode for every backend.
--   PRIMARY KEY (loan_id, seq): no two events at one position of a loan. Optimistic
--     concurrency is this constraint: a writer that read a stale head inserts a (loan_id, seq)
--     another transaction already holds and fails (unique violation, after waiting for that
--     transaction if it is still open). It is also the order of a loan's stream and of replay.
--   UNIQUE (event_id): global event_id idempotency (the SPEC compares the loan too, so an id
--     reused under another loan must be found), and `locate`.
CREATE TABLE arrears_events (
    loan_id  uuid   NOT NULL,
    seq      bigint NOT NULL CHECK (seq >= 1),
    event_id uuid   NOT NULL,
    chunk    bytea  NOT NULL,
    PRIMARY KEY (loan_id, seq),
    UNIQUE (event_id)
);

-- The global log in commit order: one row per run of consecutive events of one loan within a
-- commit, covering positions [position, position + count).
--   PRIMARY KEY (position): `scan_log(from)` starts at the run holding `from`.
CREATE TABLE arrears_log (
    position  bigint  PRIMARY KEY CHECK (position >= 1),
    loan_id   uuid    NOT NULL,
    first_seq bigint  NOT NULL CHECK (first_seq >= 1),
    count     integer NOT NULL CHECK (count >= 1)
);

-- The next free log position; one row. Every commit takes it as its last statement
-- (UPDATE … RETURNING), so its row lock is held from then until COMMIT: commits get their
-- positions one after another in commit order, and a rolled-back commit gives its positions
-- back. Positions are therefore dense and a reader never sees position p + 1 without p.
CREATE TABLE arrears_log_head (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_position bigint  NOT NULL CHECK (next_position >= 1)
);
INSERT INTO arrears_log_head (singleton, next_position) VALUES (true, 1);

-- Projection snapshots (a cache; opaque bytes).
--   PRIMARY KEY (loan_id): one per loan, upserted; scanned in loan order.
CREATE TABLE arrears_snapshots (
    loan_id uuid  PRIMARY KEY,
    bytes   bytea NOT NULL
);
