//! Test support shared by the workspace's tests and benches (a dev-dependency only): run the
//! real `arrears` binary, generate books, build event lines, fixed clocks, the golden-fixture
//! runner. One copy of each helper.
//!
//! Without features it depends on no workspace crate, so `arrears-core`'s own tests can use it;
//! the `core` feature adds [`events`] (lines parsed and validated into `arrears-core` events).

pub mod fixtures;
pub mod lines;
pub mod process;

#[cfg(feature = "core")]
pub mod events;

pub use lines::{disbursed, payment, Disbursed, BULLET_TERMS};
pub use process::{
    book, booked, command, err, export_events_parquet, export_parquet, exported_events, generate,
    generate_to, ok, out, run, signal, squash, success, temp_store,
};

use chrono::{DateTime, TimeZone, Utc};

/// A fixed "now" for stores in tests: later than every generated event's `recorded_at`.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
}

/// The store tests' clock, 2024-03-01T12:00:00Z: their expected messages name it ("the store's
/// clock is …"), and the lines they append are dated before it.
pub fn store_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
}
