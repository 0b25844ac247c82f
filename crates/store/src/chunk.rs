//! The byte format of a stored chunk: some consecutive events of one loan. Backend-independent:
//! every backend stores these bytes as they are, so `verify`, replay and `copy` decode one format.
//!
//! ```text
//! encoding 3 (written):  [3] last_seq:u64 BE  last_hash:[u8;32]  last_recorded_at:i64 BE µs
//!                        then per event: len:u32 BE ‖ codec body (arrears_core::codec)
//! encoding 2 (format 1): [2] then per event: len:u32 BE ‖ codec body
//! encoding 1 (format 1): [1] one event's JSON line
//! ```
//!
//! The header of encoding 3 repeats the last event's seq, hash and `recorded_at`, so a loan's
//! head is read from its last chunk without decoding any event. Readers check the header against
//! the events (a paired assertion with the writer's: see [`seal`]).

use arrears_core::event::Event;
use arrears_core::parse::parse_stored;
use chrono::DateTime;

use crate::Head;

const ENCODING_JSON: u8 = 1;
const ENCODING_BINARY: u8 = 2;
const ENCODING_SEGMENT: u8 = 3;
/// Bytes before the first event in encoding 3.
pub const HEADER_LEN: usize = 1 + 8 + 32 + 8;

/// Append one event's length-prefixed codec body to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    // The length is patched in after the body is written in place (no buffer per event).
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    arrears_core::codec::encode_into(ev, out);
    let len = u32::try_from(out.len() - at - 4).expect("an event body is far below 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The length-prefixed bodies of `events` (what [`seal`] puts after a header).
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 200);
    for ev in events {
        encode_event(ev, &mut out);
    }
    out
}

/// A chunk of encoding 3: `head` (the last event's) followed by `bodies` (from
/// [`encode_events`]), which must hold at least one event ending at `head`.
pub fn seal(head: &Head, bodies: &[u8]) -> Vec<u8> {
    assert!(!bodies.is_empty(), "a chunk holds at least one event");
    let mut v = Vec::with_capacity(HEADER_LEN + bodies.len());
    v.push(ENCODING_SEGMENT);
    v.extend_from_slice(&head.seq.to_be_bytes());
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.recorded_at.timestamp_micros().to_be_bytes());
    v.extend_from_slice(bodies);
    v
}

/// Encode `events` (consecutive, of one loan) as one chunk of encoding 3.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let last = events.last().expect("a chunk holds at least one event");
    seal(&head_of(last), &encode_events(events))
}

/// The head an event makes when it is the last of its loan.
pub fn head_of(ev: &Event) -> Head {
    Head {
        seq: ev.seq.get(),
        hash: ev.hash.0,
        recorded_at: ev.recorded_at,
    }
}

/// The head in a chunk's header (encoding 3 only; None for older encodings).
pub fn header(bytes: &[u8]) -> Result<Option<Head>, String> {
    match bytes.first() {
        Some(&ENCODING_SEGMENT) => {
            if bytes.len() < HEADER_LEN {
                return Err("chunk header is truncated".into());
            }
            let micros = i64::from_be_bytes(bytes[41..49].try_into().expect("8 bytes"));
            Ok(Some(Head {
                seq: u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes")),
                hash: bytes[9..41].try_into().expect("32 bytes"),
                recorded_at: DateTime::from_timestamp_micros(micros)
                    .ok_or("chunk header timestamp out of range")?,
            }))
        }
        Some(_) => Ok(None),
        None => Err("empty chunk".into()),
    }
}

/// The events after a chunk's header, still encoded (encoding 3 only).
pub fn bodies(bytes: &[u8]) -> &[u8] {
    debug_assert_eq!(bytes.first(), Some(&ENCODING_SEGMENT));
    &bytes[HEADER_LEN..]
}

fn decode_bodies(mut rest: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
    if rest.is_empty() {
        return Err("empty chunk".into());
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("truncated chunk".into());
        }
        let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let body = rest.get(4..4 + n).ok_or("truncated chunk")?;
        out.push(arrears_core::codec::decode(body).map_err(|e| format!("event {e}"))?);
        rest = &rest[4 + n..];
    }
    Ok(())
}

/// Decode a chunk into its events, appending them to `out`. For encoding 3 the header must
/// name the last event decoded.
pub fn decode_into(bytes: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
    let start = out.len();
    match bytes.split_first() {
        Some((&ENCODING_JSON, rest)) => {
            let s = std::str::from_utf8(rest).map_err(|_| "event is not UTF-8")?;
            out.push(parse_stored(s).map_err(|e| format!("event does not decode: {e}"))?);
        }
        Some((&ENCODING_BINARY, rest)) => decode_bodies(rest, out)?,
        Some((&ENCODING_SEGMENT, _)) => {
            let head = header(bytes)?.expect("encoding 3 has a header");
            decode_bodies(bodies(bytes), out)?;
            let last = out.last().expect("decode_bodies yields at least one event");
            if head_of(last) != head {
                return Err(format!(
                    "the chunk header says seq {} but its last event is seq {} (or its hash or time differ)",
                    head.seq, last.seq
                ));
            }
        }
        Some((v, _)) => return Err(format!("unknown chunk encoding {v}")),
        None => return Err("empty chunk".into()),
    }
    // Seq contiguity within and across chunks is the caller's to check (`Store::decode`,
    // `verify`), so that a broken run is named at the exact event.
    let _ = start;
    Ok(())
}

/// Decode one chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    decode_into(bytes, &mut out)?;
    Ok(out)
}
