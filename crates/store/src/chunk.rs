//! The byte format of a stored chunk: some consecutive events of one loan. Backend-independent:
//! every backend stores these bytes as they are, so `verify`, replay and `copy` decode one format.
//!
//! ```text
//! encoding 4 (sled):     encoding 3's header ‖ loan_id:[u8;16] ‖ flags:u8 ‖ [first prev_hash]
//!                        ‖ events, raw or one LZ4 block; each event's codec body without its
//!                        loan_id and prev_hash, varint-length-prefixed (see [`segment`])
//! encoding 3 (others):   [3] last_seq:u64 BE  last_hash:[u8;32]  last_recorded_at:i64 BE µs
//!                        then per event: len:u32 BE ‖ codec body (arrears_core::codec)
//! encoding 2 (format 1): [2] then per event: len:u32 BE ‖ codec body
//! encoding 1 (format 1): [1] one event's JSON line
//! ```
//!
//! The header of encodings 3 and 4 repeats the last event's seq, hash and `recorded_at`, so a loan's
//! head is read from its last chunk without decoding any event. Readers check the header against
//! the events (a paired assertion with the writer's: see [`seal`]).

use arrears_core::event::Event;
use arrears_core::parse::parse_stored;
use chrono::DateTime;

use crate::Head;

const ENCODING_JSON: u8 = 1;
const ENCODING_BINARY: u8 = 2;
const ENCODING_SEGMENT: u8 = 3;
const ENCODING_COMPACT: u8 = 4;
/// Bytes before the first event in encoding 3, and the head every encoding ≥ 3 starts with.
pub const HEADER_LEN: usize = 1 + 8 + 32 + 8;
/// Encoding 4's flags: the first event's `prev_hash` follows (else it is 64 zeros: seq 1).
const FLAG_PREV: u8 = 1;
/// Encoding 4's flags: the events are one LZ4 block (its decompressed length first).
const FLAG_LZ4: u8 = 2;
/// The most event bytes a segment of encoding 4 may say it decompresses to (a bound for hostile
/// input; segments are cut near [`crate::sled_backend::SEGMENT_LIMIT`], one event at a time).
const MAX_PAYLOAD: usize = 16 << 20;
/// What encoding 4 elides from each codec body: `loan_id` at bytes 16..32 and `prev_hash`, the
/// 32 bytes before the trailing `hash`. The codec body starts `event_id(16) ‖ loan_id(16)` and
/// ends `prev_hash(32) ‖ hash(32)` (fixed-size postcard arrays); the shortest body holds both.
const ELIDED: usize = 16 + 32;

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

/// Encode `events` (consecutive, of one loan) as one segment of encoding 4.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let last = events.last().expect("a chunk holds at least one event");
    segment(
        None,
        &last.loan_id.uuid(),
        &head_of(last),
        &encode_events(events),
    )
    .expect("no old segment to read")
}

fn put_varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 length of at most 32 bits, and the bytes after it.
fn take_varint(b: &[u8]) -> Result<(usize, &[u8]), String> {
    let mut n: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err("a length is not in its shortest form".into());
            }
            let n = u32::try_from(n).map_err(|_| "a length exceeds 32 bits")?;
            return Ok((n as usize, &b[i + 1..]));
        }
    }
    Err(if b.len() < 5 {
        "truncated chunk (a length is cut off)".into()
    } else {
        "a length exceeds 32 bits".into()
    })
}

/// Append `bodies` (length-prefixed codec bodies of `loan`, as [`encode_events`] writes them)
/// to `out` in encoding 4's elided form, `prev` being the hash the first one must chain from;
/// `prev` ends as the last one's hash. Err (naming the event) when an elided `loan_id` or
/// `prev_hash` is not exactly what the reader will put back: the writer's half of the paired
/// assertion, which panics on new events ([`segment`]) and refuses stored ones.
fn elide(
    loan: &[u8; 16],
    prev: &mut [u8; 32],
    mut bodies: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut i = 0;
    while !bodies.is_empty() {
        i += 1;
        let n = bodies
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or("truncated chunk")?;
        let body = bodies.get(4..4 + n).ok_or("truncated chunk")?;
        if n < ELIDED + 32 {
            return Err(format!("event {i} is shorter than its ids and hashes"));
        }
        if &body[16..32] != loan {
            return Err(format!("event {i} is of another loan"));
        }
        if &body[n - 64..n - 32] != prev {
            return Err(format!("event {i}'s prev_hash is not the previous hash"));
        }
        put_varint(n - ELIDED, out);
        out.extend_from_slice(&body[..16]);
        out.extend_from_slice(&body[32..n - 64]);
        out.extend_from_slice(&body[n - 32..]);
        prev.copy_from_slice(&body[n - 32..]);
        bodies = &bodies[4 + n..];
    }
    Ok(())
}

/// The parts of a segment of encoding 4, its events still compressed (or stored raw).
struct Compact<'a> {
    loan: [u8; 16],
    first_prev: [u8; 32],
    /// The events as stored: raw, or (`lz4`) one LZ4 block of `len` bytes once decompressed.
    stored: &'a [u8],
    lz4: Option<usize>,
}

impl Compact<'_> {
    /// Append the events (decompressed) to `out`.
    fn events_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        match self.lz4 {
            None => out.extend_from_slice(self.stored),
            Some(n) => {
                out.resize(start + n, 0);
                self.decompress(&mut out[start..])?;
            }
        }
        Ok(())
    }

    /// The events, decompressed into `scratch` when compressed. `scratch` is only grown, never
    /// cleared, so a reused one is not zeroed again for every segment.
    fn events<'s>(&'s self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], String> {
        match self.lz4 {
            None => Ok(self.stored),
            Some(n) => {
                if scratch.len() < n {
                    scratch.resize(n, 0);
                }
                self.decompress(&mut scratch[..n])?;
                Ok(&scratch[..n])
            }
        }
    }

    fn decompress(&self, out: &mut [u8]) -> Result<(), String> {
        let got = lz4_flex::block::decompress_into(self.stored, out)
            .map_err(|e| format!("the compressed events do not decompress: {e}"))?;
        if got != out.len() {
            return Err(format!(
                "the compressed events are {got} bytes, not the {} the segment says",
                out.len()
            ));
        }
        Ok(())
    }
}

fn compact(bytes: &[u8]) -> Result<Compact<'_>, String> {
    debug_assert_eq!(bytes.first(), Some(&ENCODING_COMPACT));
    let rest = bytes
        .get(HEADER_LEN..HEADER_LEN + 17)
        .ok_or("chunk header is truncated")?;
    let loan: [u8; 16] = rest[..16].try_into().expect("16 bytes");
    let flags = rest[16];
    if flags & !(FLAG_PREV | FLAG_LZ4) != 0 {
        return Err(format!("unknown segment flags {flags:#04x}"));
    }
    let mut rest = &bytes[HEADER_LEN + 17..];
    let mut first_prev = [0u8; 32];
    if flags & FLAG_PREV != 0 {
        let p = rest.get(..32).ok_or("chunk header is truncated")?;
        if p == [0u8; 32] {
            return Err("a stored first prev_hash of zeros (the flag says it is elided)".into());
        }
        first_prev.copy_from_slice(p);
        rest = &rest[32..];
    }
    let (stored, lz4) = if flags & FLAG_LZ4 != 0 {
        let (n, block) = take_varint(rest)?;
        if n > MAX_PAYLOAD {
            return Err(format!("a segment says it holds {n} bytes of events"));
        }
        (block, Some(n))
    } else {
        (rest, None)
    };
    Ok(Compact {
        loan,
        first_prev,
        stored,
        lz4,
    })
}

/// The bytes of events a segment holds before compression (what [`crate::sled_backend`] cuts
/// segments by), for encodings 3 and 4.
pub fn events_len(bytes: &[u8]) -> Result<usize, String> {
    match bytes.first() {
        Some(&ENCODING_SEGMENT) => Ok(bytes.len().saturating_sub(HEADER_LEN)),
        Some(&ENCODING_COMPACT) => {
            // Read from the header: no decompression (the append checks it per loan touched).
            let flags = *bytes
                .get(HEADER_LEN + 16)
                .ok_or("chunk header is truncated")?;
            let at = HEADER_LEN + 17 + if flags & FLAG_PREV != 0 { 32 } else { 0 };
            let rest = bytes.get(at..).ok_or("chunk header is truncated")?;
            if flags & FLAG_LZ4 != 0 {
                Ok(take_varint(rest)?.0)
            } else {
                Ok(rest.len())
            }
        }
        Some(v) => Err(format!("a segment of encoding {v}")),
        None => Err("empty chunk".into()),
    }
}

/// A segment of encoding 4 holding the events of `old` (a segment of encoding 3 or 4 of `loan`,
/// if any) followed by `bodies` (length-prefixed codec bodies, at least one, the last making
/// `head`). Err when `old` does not decode.
///
/// ```text
/// [4] last_seq:u64 BE ‖ last_hash:[u8;32] ‖ last_recorded_at:i64 BE µs   (encoding 3's head)
///     ‖ loan_id:[u8;16] ‖ flags:u8 ‖ first prev_hash:[u8;32] (flag 1; else 64 zeros)
///     ‖ events, or (flag 2) their length as a varint ‖ the events as one LZ4 block
/// events: per event: len:varint ‖ event_id(16) ‖ codec body without its ids and hashes ‖ hash(32)
/// ```
pub fn segment(
    old: Option<&[u8]>,
    loan: &uuid::Uuid,
    head: &Head,
    bodies: &[u8],
) -> Result<Vec<u8>, String> {
    assert!(!bodies.is_empty(), "a chunk holds at least one event");
    let loan = *loan.as_bytes();
    let mut events = Vec::new();
    let (first_prev, mut prev) = match old {
        None => {
            let n = u32::from_be_bytes(bodies[..4].try_into().expect("4 bytes")) as usize;
            let p: [u8; 32] = bodies[4 + n - 64..4 + n - 32].try_into().expect("32 bytes");
            (p, p)
        }
        Some(old) => match old.first() {
            Some(&ENCODING_COMPACT) => {
                let c = compact(old)?;
                if c.loan != loan {
                    return Err("the segment is of another loan".into());
                }
                // Decompressed straight into the new segment's events; stored raw: copied.
                c.events_into(&mut events)?;
                let last = header(old)?.expect("encoding 4 has a header").hash;
                (c.first_prev, last)
            }
            Some(&ENCODING_SEGMENT) => {
                let b = bodies_of(old)?;
                let n = u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as usize;
                if n < ELIDED + 32 || b.len() < 4 + n {
                    return Err("truncated chunk".into());
                }
                let first: [u8; 32] = b[4 + n - 64..4 + n - 32].try_into().expect("32 bytes");
                // The stored events are checked in full before they are elided.
                let mut check = Vec::new();
                decode_into(old, &mut check)?;
                let mut p = first;
                elide(&loan, &mut p, b, &mut events)?;
                (first, p)
            }
            Some(v) => return Err(format!("a segment of encoding {v}")),
            None => return Err("empty chunk".into()),
        },
    };
    events.reserve(bodies.len());
    if let Err(why) = elide(&loan, &mut prev, bodies, &mut events) {
        panic!("new events do not continue the segment: {why}");
    }
    assert_eq!(prev, head.hash, "the head is the last event's");
    let bound = lz4_flex::block::get_maximum_output_size(events.len());
    let mut v = Vec::with_capacity(HEADER_LEN + 17 + 32 + 5 + bound);
    v.push(ENCODING_COMPACT);
    v.extend_from_slice(&head.seq.to_be_bytes());
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.recorded_at.timestamp_micros().to_be_bytes());
    v.extend_from_slice(&loan);
    let flags_at = v.len();
    v.push(0);
    if first_prev != [0u8; 32] {
        v[flags_at] |= FLAG_PREV;
        v.extend_from_slice(&first_prev);
    }
    // Compressed straight into the value; kept only when smaller than the raw events.
    let base = v.len();
    put_varint(events.len(), &mut v);
    let start = v.len();
    v.resize(start + bound, 0);
    match lz4_flex::block::compress_into(&events, &mut v[start..]) {
        Ok(n) if start + n - base < events.len() => {
            v[flags_at] |= FLAG_LZ4;
            v.truncate(start + n);
        }
        _ => {
            v.truncate(base);
            v.extend_from_slice(&events);
        }
    }
    Ok(v)
}

/// The same chunk with its events stored uncompressed (for tests that edit stored bytes).
#[doc(hidden)]
pub fn uncompressed(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.first() != Some(&ENCODING_COMPACT) {
        return Ok(bytes.to_vec());
    }
    let c = compact(bytes)?;
    let mut v = bytes[..HEADER_LEN + 17].to_vec();
    v[HEADER_LEN + 16] &= !FLAG_LZ4;
    if c.first_prev != [0u8; 32] {
        v.extend_from_slice(&c.first_prev);
    }
    c.events_into(&mut v)?;
    Ok(v)
}

fn decode_compact(bytes: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
    // A per-thread buffer for the decompressed events. Replay decodes every segment of the
    // store; a fresh zeroed buffer each time cost ~2 % of it.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| decode_compact_with(bytes, out, &mut s.borrow_mut()))
}

fn decode_compact_with(
    bytes: &[u8],
    out: &mut Vec<Event>,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    let c = compact(bytes)?;
    let mut rest: &[u8] = c.events(scratch)?;
    if rest.is_empty() {
        return Err("empty chunk".into());
    }
    let mut prev = c.first_prev;
    while !rest.is_empty() {
        let (n, after) = take_varint(rest)?;
        let body = after.get(..n).ok_or("truncated chunk")?;
        if n < 16 + 32 {
            return Err("an event is shorter than its id and hash".into());
        }
        let (id, tail) = body.split_first_chunk::<16>().expect("n >= 48");
        let (middle, hash) = tail.split_last_chunk::<32>().expect("n >= 48");
        out.push(
            arrears_core::codec::decode_split(id, &c.loan, middle, &prev, hash)
                .map_err(|e| format!("event {e}"))?,
        );
        prev = *hash;
        rest = &after[n..];
    }
    Ok(())
}

/// The head an event makes when it is the last of its loan.
pub fn head_of(ev: &Event) -> Head {
    Head {
        seq: ev.seq.get(),
        hash: ev.hash.0,
        recorded_at: ev.recorded_at,
    }
}

/// The head in a chunk's header (encodings 3 and 4; None for older encodings).
pub fn header(bytes: &[u8]) -> Result<Option<Head>, String> {
    match bytes.first() {
        Some(&ENCODING_SEGMENT | &ENCODING_COMPACT) => {
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
fn bodies_of(bytes: &[u8]) -> Result<&[u8], String> {
    bytes
        .get(HEADER_LEN..)
        .ok_or_else(|| "chunk header is truncated".into())
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
        Some((&ENCODING_SEGMENT | &ENCODING_COMPACT, _)) => {
            let head = header(bytes)?.expect("encodings 3 and 4 have a header");
            if bytes[0] == ENCODING_SEGMENT {
                decode_bodies(bodies_of(bytes)?, out)?;
            } else {
                decode_compact(bytes, out)?;
            }
            let last = &out[out.len() - 1];
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_testkit::events::seal as chain;
    use arrears_testkit::lines::{disbursed, payment};

    const LOAN: &str = "0190a0b0-0000-7000-8000-00000000000a";

    /// A loan's hash-chained stream: the disbursement, then `n` payments.
    fn stream(n: usize) -> Vec<Event> {
        let mut lines = vec![disbursed(LOAN)];
        for i in 0..n {
            lines.push(payment(LOAN, "2024-01-20", &format!("{}.00", i + 1), ""));
        }
        chain(&lines, 1)
    }

    #[test]
    fn encoding_4_round_trips_and_keeps_the_head() {
        for n in [0, 1, 5, 60] {
            let events = stream(n);
            let bytes = encode(&events);
            assert_eq!(bytes[0], ENCODING_COMPACT);
            assert_eq!(decode(&bytes).unwrap(), events, "{n} payments");
            assert_eq!(
                header(&bytes).unwrap(),
                Some(head_of(events.last().unwrap()))
            );
            let raw = uncompressed(&bytes).unwrap();
            assert_eq!(decode(&raw).unwrap(), events);
            for b in [&bytes, &raw] {
                assert_eq!(events_len(b).unwrap(), {
                    let mut v = Vec::new();
                    compact(b).unwrap().events_into(&mut v).unwrap();
                    v.len()
                });
            }
            // Smaller than encoding 3 of the same events.
            let old = seal(&head_of(events.last().unwrap()), &encode_events(&events));
            assert!(bytes.len() < old.len(), "{} vs {}", bytes.len(), old.len());
        }
    }

    #[test]
    fn a_segment_continues_from_either_encoding_and_from_a_later_seq() {
        let events = stream(30);
        let (a, b) = events.split_at(10);
        let loan = events[0].loan_id.uuid();
        let whole = encode(&events);
        // From encoding 4, and from encoding 3: the same bytes as encoding all at once.
        let four = encode(a);
        let three = seal(&head_of(a.last().unwrap()), &encode_events(a));
        let head = head_of(events.last().unwrap());
        for old in [&four, &three] {
            let grown = segment(Some(old), &loan, &head, &encode_events(b)).unwrap();
            assert_eq!(grown, whole);
            assert_eq!(events_len(&grown).unwrap(), events_len(&whole).unwrap());
        }
        // A segment that starts after seq 1 keeps its first prev_hash.
        let later = encode(b);
        assert_eq!(later[HEADER_LEN + 16] & FLAG_PREV, FLAG_PREV);
        assert_eq!(decode(&later).unwrap(), b);
        assert_eq!(whole[HEADER_LEN + 16] & FLAG_PREV, 0);
    }

    #[test]
    fn both_event_forms_are_written_and_read() {
        // Many events compress; one short event may not.
        let many = encode(&stream(60));
        assert_eq!(many[HEADER_LEN + 16] & FLAG_LZ4, FLAG_LZ4);
        let raw = {
            let evs = stream(0);
            let mut events = Vec::new();
            let mut prev = [0u8; 32];
            elide(
                evs[0].loan_id.as_bytes(),
                &mut prev,
                &encode_events(&evs),
                &mut events,
            )
            .unwrap();
            let mut v = encode(&evs);
            v.truncate(HEADER_LEN + 16);
            v.push(0);
            v.extend_from_slice(&events);
            v
        };
        assert_eq!(decode(&raw).unwrap(), stream(0));
    }

    #[test]
    fn every_truncation_is_refused() {
        for bytes in [
            encode(&stream(0)),
            encode(&stream(40)),
            encode(&stream(40)[7..]),
        ] {
            for cut in 0..bytes.len() {
                assert!(
                    decode(&bytes[..cut]).is_err(),
                    "cut at {cut} of {}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn a_header_that_is_not_the_last_event_is_refused() {
        let events = stream(3);
        let bytes = encode(&events);
        // seq, hash and recorded_at in turn.
        for at in [8, 20, 48] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(
                decode(&bad).unwrap_err().contains("chunk header says"),
                "byte {at}"
            );
        }
        // A header naming an earlier event of the segment.
        let mut wrong = bytes.clone();
        wrong[1..9].copy_from_slice(&2u64.to_be_bytes());
        assert!(decode(&wrong)
            .unwrap_err()
            .contains("seq 2 but its last event is seq 4"));
    }

    #[test]
    fn damage_to_the_elided_parts_is_refused_or_breaks_the_chain() {
        let events = stream(2);
        let bytes = encode(&events);
        // Unknown flags.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 16] |= 0x80;
        assert!(decode(&bad).unwrap_err().contains("flags"));
        // Another loan in the header: the events decode under it, so the stream's key check
        // (`Store::decode`) and `verify`'s hashes name it; the chunk itself still decodes.
        let mut other = bytes.clone();
        other[HEADER_LEN] ^= 1;
        let evs = decode(&other).unwrap();
        assert_ne!(evs[0].loan_id, events[0].loan_id);
        // A stated length beyond the bound.
        let mut huge = bytes[..HEADER_LEN + 17].to_vec();
        huge[HEADER_LEN + 16] = FLAG_LZ4;
        put_varint(MAX_PAYLOAD + 1, &mut huge);
        huge.extend_from_slice(&[0; 8]);
        assert!(decode(&huge).unwrap_err().contains("holds"));
    }

    #[test]
    #[should_panic(expected = "prev_hash is not the previous hash")]
    fn the_writer_refuses_events_that_do_not_chain() {
        let events = stream(3);
        let mut broken = events.clone();
        broken.remove(1);
        encode(&broken);
    }

    #[test]
    fn varints_round_trip_and_refuse_long_forms() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as usize] {
            let mut v = Vec::new();
            put_varint(n, &mut v);
            v.push(9);
            assert_eq!(take_varint(&v).unwrap(), (n, &[9u8][..]));
        }
        assert!(take_varint(&[0x80, 0x00]).is_err());
        assert!(take_varint(&[0x80]).is_err());
        assert!(take_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
