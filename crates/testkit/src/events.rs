//! Lines into `arrears-core` events (feature `core`): parsed and validated the way `append`
//! takes them, or sealed into a stream the way the store would.

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::{Event, NewEvent};
use arrears_core::{parse_event, validate::validate, Policy};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

/// A line parsed and validated under the default policy; panics naming the line otherwise.
pub fn event(line: &str) -> NewEvent {
    let (mut e, _) = parse_event(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    validate(&mut e, &Policy::default()).unwrap_or_else(|e| panic!("{e}: {line}"));
    e
}

/// Lines with `loan` filled in: write `{"type":…}` bodies without a `loan_id`.
pub fn with_loan(loan: impl std::fmt::Display, bodies: &[&str]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| format!("{{\"loan_id\":\"{loan}\",{}", &b[1..]))
        .collect()
}

/// One loan's lines sealed into stored events the way the store would, without a store: seq in
/// order, the hash chain, `event_id` = `id_base + seq`, `recorded_at` the line's own or else one
/// second apart from 2023-11-14T22:13:20Z. Panics naming the line if one is refused.
pub fn seal(lines: &[String], id_base: u128) -> Vec<Event> {
    let policy = Policy::default();
    let mut prev = GENESIS;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (mut ev, _) = parse_event(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        validate(&mut ev, &policy).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let seq = i as u64 + 1;
        let mut e = Event {
            event_id: arrears_core::id::EventId(Uuid::from_u128(id_base + seq as u128)),
            loan_id: ev.loan_id,
            seq: arrears_core::id::Seq(seq),
            recorded_at: ev
                .recorded_at
                .unwrap_or_else(|| Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap()),
            body: ev.body,
            prev_hash: prev,
            hash: GENESIS,
        };
        e.hash = compute_hash(&e);
        prev = e.hash;
        out.push(e);
    }
    out
}
