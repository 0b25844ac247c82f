//! Test helper: turn input JSON lines into sealed events the way the store would (seq in order,
//! recorded_at defaulted to one second apart), without a store.
#![allow(dead_code)]

use arrears_core::chain::{compute_hash, GENESIS};
use arrears_core::event::Event;
use arrears_core::{parse_event, validate::validate, Policy};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

pub const LOAN: &str = "00000000-0000-0000-0000-000000000001";

pub fn seal(lines: &[String]) -> Vec<Event> {
    let policy = Policy::default();
    let mut prev = GENESIS;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (mut ev, _) = parse_event(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        validate(&mut ev, &policy).unwrap();
        let seq = i as u64 + 1;
        let mut e = Event {
            event_id: Uuid::from_u128(seq as u128),
            loan_id: ev.loan_id,
            seq,
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

/// Lines with the loan id filled in: write `{"type":...}` bodies without it.
pub fn lines(bodies: &[&str]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| format!("{{\"loan_id\":\"{LOAN}\",{}", &b[1..]))
        .collect()
}
