//! Test helper: turn input JSON lines into sealed events the way the store would (seq in order,
//! recorded_at defaulted to one second apart), without a store — testkit's `events::seal`.
#![allow(dead_code)]

use arrears_core::event::Event;

pub const LOAN: &str = "00000000-0000-0000-0000-000000000001";

/// Sealed with `event_id` = seq.
pub fn seal(lines: &[String]) -> Vec<Event> {
    arrears_testkit::events::seal(lines, 0)
}

/// Lines with the loan id filled in: write `{"type":...}` bodies without it.
pub fn lines(bodies: &[&str]) -> Vec<String> {
    arrears_testkit::events::with_loan(LOAN, bodies)
}
