//! The hash chain of SPEC §2: `hash` = SHA-256 (hex) over `prev_hash` followed by the event's
//! canonical JSON without `hash`.
//!
//! Canonical JSON here is the event object (envelope, body, `prev_hash`; not `hash`) with keys
//! sorted by code point at every level, no whitespace, amounts with two decimals, rates as
//! written, timestamps RFC 3339 UTC with `Z` — the RFC 8785 (JCS) form for the value types events
//! contain (strings, integers, booleans). serde_json's `Value` map is a `BTreeMap`, which gives
//! the sorted order.

use sha2::{Digest, Sha256};

use crate::event::Event;

/// `prev_hash` of seq 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical JSON of an event, without its `hash`.
pub fn canonical_json(ev: &Event) -> String {
    let mut v = serde_json::to_value(ev).expect("events always serialise");
    if let serde_json::Value::Object(m) = &mut v {
        m.remove("hash");
    }
    v.to_string()
}

/// The hash an event must carry given its fields and `prev_hash`.
pub fn compute_hash(ev: &Event) -> String {
    let mut h = Sha256::new();
    h.update(ev.prev_hash.as_bytes());
    h.update(canonical_json(ev).as_bytes());
    hex::encode(h.finalize())
}
