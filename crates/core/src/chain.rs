//! The hash chain of SPEC §2: `hash` = SHA-256 (hex) over `prev_hash` followed by the event's
//! canonical JSON without `hash`.
//!
//! Canonical JSON here is the event object (envelope, body, `prev_hash`; not `hash`) with keys
//! sorted by code point at every level, no whitespace, amounts with two decimals, rates as
//! written, timestamps RFC 3339 UTC with `Z` — the RFC 8785 (JCS) form for the value types events
//! contain (strings, integers, booleans). serde_json's `Value` map is a `BTreeMap`, which gives
//! the sorted order.

use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// A SHA-256 digest; written as 64 lowercase hex digits wherever it leaves the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    /// The 64 hex digits, without allocating.
    pub fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 = 2 × 32");
        out
    }

    /// Parse 64 hex digits.
    pub fn parse(s: &str) -> Option<Digest32> {
        let mut out = [0u8; 32];
        (s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok()).then_some(Digest32(out))
    }
}

impl fmt::Display for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.hex()).expect("hex is ASCII"))
    }
}

/// `prev_hash` of seq 1: 64 zeros.
pub const GENESIS: Digest32 = Digest32([0; 32]);

/// The canonical JSON of an event, without its `hash`.
pub fn canonical_json(ev: &Event) -> String {
    let mut v = serde_json::to_value(ev).expect("events always serialise");
    if let serde_json::Value::Object(m) = &mut v {
        m.remove("hash");
    }
    v.to_string()
}

/// The hash an event must carry given its fields and `prev_hash`.
pub fn compute_hash(ev: &Event) -> Digest32 {
    let mut h = Sha256::new();
    h.update(ev.prev_hash.hex());
    h.update(canonical_json(ev).as_bytes());
    Digest32(h.finalize().into())
}
