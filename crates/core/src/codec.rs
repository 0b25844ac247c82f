//! The stored encoding of events (format byte 2): postcard over mirror types with fixed-size
//! fields — UUIDs as 16 bytes, `Decimal` as its 16-byte `serialize()` form, dates as days from
//! 0001-01-01 (CE), timestamps as microseconds since the Unix epoch. Decoding it costs a fraction
//! of parsing the JSON wire form, which matters when a nightly replay reads millions of events.
//!
//! The JSON form stays the contract for input, output and the hash chain; this is only how bytes
//! sit on disk. Format byte 1 (the JSON line) is still decoded, so older values stay readable.

use chrono::DateTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::*;
use crate::id::{EventId, LoanId, Seq};
use crate::money::{Money, Rate};

type Dec = [u8; 16];

fn dec<T: Copy + Into<Decimal>>(d: &T) -> Dec {
    (*d).into().serialize()
}
fn undec(b: &Dec) -> Decimal {
    Decimal::deserialize(*b)
}
/// A stored amount: whole cents (every amount was parsed or rounded to cents before storing, so
/// its scale is 2; anything else is checked on the cold path).
#[inline]
fn money(b: &Dec) -> Result<Money, String> {
    let d = undec(b);
    if d.scale() == 2 {
        return Ok(Money::new(d));
    }
    odd_money(d)
}
#[cold]
fn odd_money(d: Decimal) -> Result<Money, String> {
    Money::try_from(d).map_err(|e| format!("stored amount {d}: {e}"))
}
fn rate(b: &Dec) -> Rate {
    Rate::new(undec(b))
}
fn day(d: &BusinessDate) -> i32 {
    crate::date::days_from_ce(d.naive())
}
fn unday(n: i32) -> Option<BusinessDate> {
    crate::date::from_days_from_ce(n).map(BusinessDate::new)
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct InstV2 {
    n: u32,
    due_on: i32,
    principal: Dec,
    interest: Dec,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct PlanV2 {
    due_on: i32,
    principal: Dec,
    interest: Dec,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum BodyV2 {
    Disbursed {
        on: i32,
        principal: Dec,
        currency: String,
        borrower: Option<String>,
        daily_rate: Dec,
        penalty_multiplier: Dec,
        grace_days: u32,
        compound: bool,
        /// 0 = bullet (`term` = days), 1 = equal_installment, 2 = equal_principal (`term` = count)
        repayment: u8,
        term: u32,
        schedule: Vec<InstV2>,
    },
    Payment {
        on: i32,
        amount: Dec,
        reference: Option<String>,
    },
    Missed {
        installment: u32,
        observed_on: i32,
    },
    Extension {
        agreed_on: i32,
        /// None, Some(None) = "all", Some(Some(x)) = an amount
        waive_penalty: Option<Option<Dec>>,
        waive_interest: Option<Dec>,
        new_due_on: Option<i32>,
        plan: Option<Vec<PlanV2>>,
    },
    /// Added after the first stored data: a new variant at the end keeps every older tag.
    Contact {
        at_us: i64,
        /// Indexes into `Channel::ALL`, `Party::ALL`, `Outcome::ALL`.
        channel: u8,
        party: u8,
        outcome: u8,
        agent: String,
        /// (on, amount)
        promise: Option<(i32, Dec)>,
    },
}

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter()
        .position(|x| x == v)
        .expect("every value is listed") as u8
}

fn nth<T: Copy>(all: &[T], i: u8, what: &str) -> Result<T, String> {
    all.get(i as usize)
        .copied()
        .ok_or_else(|| format!("unknown {what} {i}"))
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct EventV2 {
    event_id: [u8; 16],
    loan_id: [u8; 16],
    seq: u64,
    recorded_at_us: i64,
    body: BodyV2,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

/// Encode an event in the compact stored form (without the format byte).
pub fn encode(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(ev, &mut out);
    out
}

/// Append the compact stored form of an event to `out` (the append path reuses one buffer).
pub fn encode_into(ev: &Event, out: &mut Vec<u8>) {
    let body = match &ev.body {
        Body::Disbursed(d) => {
            let (repayment, term) = match d.terms.repayment {
                Repayment::Bullet { days } => (0, days),
                Repayment::Installments {
                    count,
                    method: Method::EqualInstallment,
                } => (1, count),
                Repayment::Installments {
                    count,
                    method: Method::EqualPrincipal,
                } => (2, count),
            };
            BodyV2::Disbursed {
                on: day(&d.on),
                principal: dec(&d.principal),
                currency: d.currency.clone(),
                borrower: d.borrower.clone(),
                daily_rate: dec(&d.terms.daily_rate),
                penalty_multiplier: dec(&d.terms.penalty_multiplier),
                grace_days: d.terms.grace_days,
                compound: d.terms.compound,
                repayment,
                term,
                schedule: d
                    .schedule
                    .iter()
                    .map(|s| InstV2 {
                        n: s.n,
                        due_on: day(&s.due_on),
                        principal: dec(&s.principal),
                        interest: dec(&s.interest),
                    })
                    .collect(),
            }
        }
        Body::Payment(p) => BodyV2::Payment {
            on: day(&p.on),
            amount: dec(&p.amount),
            reference: p.reference.clone(),
        },
        Body::Missed(m) => BodyV2::Missed {
            installment: m.installment,
            observed_on: day(&m.observed_on),
        },
        Body::NegotiatedExtension(x) => BodyV2::Extension {
            agreed_on: day(&x.agreed_on),
            waive_penalty: x.waive_penalty.map(|w| match w {
                Waiver::All => None,
                Waiver::Amount(a) => Some(dec(&a)),
            }),
            waive_interest: x.waive_interest.as_ref().map(dec),
            new_due_on: match &x.reschedule {
                Reschedule::NewDueOn(d) => Some(day(d)),
                Reschedule::Restructure(_) => None,
            },
            plan: match &x.reschedule {
                Reschedule::NewDueOn(_) => None,
                Reschedule::Restructure(p) => Some(
                    p.iter()
                        .map(|i| PlanV2 {
                            due_on: day(&i.due_on),
                            principal: dec(&i.principal),
                            interest: dec(&i.interest),
                        })
                        .collect(),
                ),
            },
        },
        Body::Contact(c) => BodyV2::Contact {
            at_us: c.at.timestamp_micros(),
            channel: index_of(Channel::ALL, &c.channel),
            party: index_of(Party::ALL, &c.party),
            outcome: index_of(Outcome::ALL, &c.outcome),
            agent: c.agent.clone(),
            promise: c.promise.as_ref().map(|p| (day(&p.on), dec(&p.amount))),
        },
    };
    let v = EventV2 {
        event_id: *ev.event_id.as_bytes(),
        loan_id: *ev.loan_id.as_bytes(),
        seq: ev.seq.get(),
        recorded_at_us: ev.recorded_at.timestamp_micros(),
        body,
        prev_hash: ev.prev_hash.0,
        hash: ev.hash.0,
    };
    *out = postcard::to_extend(&v, std::mem::take(out)).expect("events always encode");
}

/// Decode the compact stored form; `Err` names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Event, String> {
    wire::event(bytes).map_err(|e| format!("does not decode: {e}"))
}

/// [`decode`] of an event kept in pieces, as a compact chunk keeps it (the loan id once per
/// chunk, each previous hash as the event before's hash): `middle` is the stored form between
/// the loan id and the previous hash (seq, `recorded_at` and body), and must be read to its end.
/// The same event as [`decode`] of the joined bytes, without joining them: replay decodes
/// every stored event this way.
pub fn decode_split(
    event_id: &[u8; 16],
    loan_id: &[u8; 16],
    middle: &[u8],
    prev_hash: &[u8; 32],
    hash: &[u8; 32],
) -> Result<Event, String> {
    wire::split(event_id, loan_id, middle, prev_hash, hash)
        .map_err(|e| format!("does not decode: {e}"))
}

/// [`decode`] through postcard's serde deserializer instead of the hand-written [`wire`] reader:
/// the reference the reader is tested and fuzzed against (they must agree on every input).
#[doc(hidden)]
pub fn decode_with_postcard(bytes: &[u8]) -> Result<Event, String> {
    let v: EventV2 = postcard::from_bytes(bytes).map_err(|e| format!("does not decode: {e}"))?;
    from_v2(v)
}

/// The postcard reference's conversion of the mirror types (the [`wire`] reader makes the same
/// [`Event`] straight from the bytes).
fn from_v2(v: EventV2) -> Result<Event, String> {
    Ok(Event {
        event_id: EventId(Uuid::from_bytes(v.event_id)),
        loan_id: LoanId(Uuid::from_bytes(v.loan_id)),
        seq: Seq(v.seq),
        recorded_at: timestamp(v.recorded_at_us)?,
        body: body_from_v2(v.body)?,
        prev_hash: crate::chain::Digest32(v.prev_hash),
        hash: crate::chain::Digest32(v.hash),
    })
}

/// The stored day number as a date.
#[inline]
fn date(n: i32) -> Result<BusinessDate, String> {
    unday(n).ok_or_else(|| format!("day number {n} is out of range"))
}

/// A stored `recorded_at`.
#[inline]
fn timestamp(micros: i64) -> Result<Timestamp, String> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| "recorded_at out of range".into())
}

/// A stored contact's `at`.
fn contact_at(micros: i64) -> Result<Timestamp, String> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| "contact `at` out of range".into())
}

/// A stored repayment kind and term.
fn repayment_of(kind: u8, term: u32) -> Result<Repayment, String> {
    Ok(match kind {
        0 => Repayment::Bullet { days: term },
        1 => Repayment::Installments {
            count: term,
            method: Method::EqualInstallment,
        },
        2 => Repayment::Installments {
            count: term,
            method: Method::EqualPrincipal,
        },
        other => return Err(format!("unknown repayment kind {other}")),
    })
}

/// A stored extension's waiver of penalty: absent, all of it, or an amount.
fn waiver(w: Option<Option<Dec>>) -> Result<Option<Waiver>, String> {
    Ok(match w {
        None => None,
        Some(None) => Some(Waiver::All),
        Some(Some(a)) => Some(Waiver::Amount(money(&a)?)),
    })
}

fn body_from_v2(body: BodyV2) -> Result<Body, String> {
    Ok(match body {
        BodyV2::Disbursed {
            on,
            principal,
            currency,
            borrower,
            daily_rate,
            penalty_multiplier,
            grace_days,
            compound,
            repayment,
            term,
            schedule,
        } => Body::Disbursed(Disbursed {
            on: date(on)?,
            principal: money(&principal)?,
            currency,
            borrower,
            terms: Terms {
                daily_rate: rate(&daily_rate),
                penalty_multiplier: rate(&penalty_multiplier),
                grace_days,
                compound,
                repayment: repayment_of(repayment, term)?,
            },
            schedule: schedule
                .into_iter()
                .map(|s| {
                    Ok(ScheduledInstallment {
                        n: s.n,
                        due_on: date(s.due_on)?,
                        principal: money(&s.principal)?,
                        interest: money(&s.interest)?,
                    })
                })
                .collect::<Result<_, String>>()?,
        }),
        BodyV2::Payment {
            on,
            amount,
            reference,
        } => Body::Payment(Payment {
            on: date(on)?,
            amount: money(&amount)?,
            reference,
        }),
        BodyV2::Missed {
            installment,
            observed_on,
        } => Body::Missed(Missed {
            installment,
            observed_on: date(observed_on)?,
        }),
        BodyV2::Extension {
            agreed_on,
            waive_penalty,
            waive_interest,
            new_due_on,
            plan,
        } => Body::NegotiatedExtension(Extension {
            agreed_on: date(agreed_on)?,
            waive_penalty: waiver(waive_penalty)?,
            waive_interest: waive_interest.as_ref().map(money).transpose()?,
            reschedule: match (new_due_on, plan) {
                (Some(d), None) => Reschedule::NewDueOn(date(d)?),
                (None, Some(p)) => Reschedule::Restructure(
                    p.into_iter()
                        .map(|i| {
                            Ok(PlanInstallment {
                                due_on: date(i.due_on)?,
                                principal: money(&i.principal)?,
                                interest: money(&i.interest)?,
                            })
                        })
                        .collect::<Result<_, String>>()?,
                ),
                _ => return Err("extension has neither or both of new_due_on and a plan".into()),
            },
        }),
        BodyV2::Contact {
            at_us,
            channel,
            party,
            outcome,
            agent,
            promise,
        } => Body::Contact(Contact {
            at: contact_at(at_us)?,
            channel: nth(Channel::ALL, channel, "channel")?,
            party: nth(Party::ALL, party, "party")?,
            outcome: nth(Outcome::ALL, outcome, "outcome")?,
            agent,
            promise: match promise {
                None => None,
                Some((on, amount)) => Some(Promise {
                    on: date(on)?,
                    amount: money(&amount)?,
                }),
            },
        }),
    })
}

/// A reader for exactly the postcard encoding of [`EventV2`] (postcard 1.x wire format:
/// unsigned integers as LEB128 varints, signed ones zigzag-encoded first, `u8` and the bytes of
/// fixed-size arrays raw, `bool` and `Option` tags as one byte 0/1, strings and sequences
/// prefixed by a varint length, enum variants by a varint index), read straight into an
/// [`Event`]: going through the mirror type cost replay ~13 % of its decoding in moves and a
/// second schedule vector.
///
/// Why by hand: serde's derived visitor reads a `[u8; 16]` or `[u8; 32]` one element at a time
/// through `SeqAccess`, and an event carries 96 such bytes in ids and hashes plus 16 per amount;
/// replay decodes every stored event, and this reader takes a fraction of the instructions
/// (docs/benchmarks.md). It accepts and refuses exactly what postcard and `from_v2` do (tested
/// against them below and fuzzed in `fuzz/fuzz_targets/codec.rs`); like `postcard::from_bytes`,
/// `event` ignores bytes after the event (a chunk frames each body with its length), while
/// `split` refuses a middle it does not read to its end.
mod wire {
    use super::*;

    pub(super) struct Wire<'a>(&'a [u8]);

    type WireResult<T> = Result<T, &'static str>;

    impl<'a> Wire<'a> {
        fn byte(&mut self) -> WireResult<u8> {
            let (&b, rest) = self.0.split_first().ok_or("truncated")?;
            self.0 = rest;
            Ok(b)
        }

        fn array<const N: usize>(&mut self) -> WireResult<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>().ok_or("truncated")?;
            self.0 = rest;
            Ok(*head)
        }

        /// A varint of at most `max` bytes whose last byte holds at most `last` (postcard's
        /// `DeserializeBadVarint` otherwise).
        fn varint(&mut self, max: u32, last: u8) -> WireResult<u64> {
            let mut out = 0u64;
            for i in 0..max {
                let b = self.byte()?;
                out |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == max - 1 && b > last {
                        return Err("bad varint");
                    }
                    return Ok(out);
                }
            }
            Err("bad varint")
        }

        fn u32(&mut self) -> WireResult<u32> {
            // 5 bytes; the fifth carries 32 − 28 = 4 bits.
            self.varint(5, 0x0f).map(|v| v as u32)
        }

        fn u64(&mut self) -> WireResult<u64> {
            // 10 bytes; the tenth carries 64 − 63 = 1 bit.
            self.varint(10, 0x01)
        }

        fn i32(&mut self) -> WireResult<i32> {
            let n = self.u32()?;
            Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
        }

        fn i64(&mut self) -> WireResult<i64> {
            let n = self.u64()?;
            Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
        }

        fn bool(&mut self) -> WireResult<bool> {
            match self.byte()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err("bad bool"),
            }
        }

        fn len(&mut self) -> WireResult<usize> {
            usize::try_from(self.u64()?).map_err(|_| "bad length")
        }

        fn string(&mut self) -> WireResult<String> {
            let n = self.len()?;
            if n > self.0.len() {
                return Err("truncated");
            }
            let (s, rest) = self.0.split_at(n);
            self.0 = rest;
            std::str::from_utf8(s)
                .map(str::to_owned)
                .map_err(|_| "bad utf-8")
        }

        fn option<T, E: From<&'static str>>(
            &mut self,
            f: impl FnOnce(&mut Self) -> Result<T, E>,
        ) -> Result<Option<T>, E> {
            match self.byte()? {
                0 => Ok(None),
                1 => f(self).map(Some),
                _ => Err("bad option".into()),
            }
        }

        fn vec<T, E: From<&'static str>>(
            &mut self,
            mut f: impl FnMut(&mut Self) -> Result<T, E>,
        ) -> Result<Vec<T>, E> {
            let n = self.len()?;
            // Every element takes at least one byte: a length beyond the input is refused
            // before anything is allocated for it.
            let mut v = Vec::with_capacity(n.min(self.0.len()));
            for _ in 0..n {
                v.push(f(self)?);
            }
            Ok(v)
        }
    }

    /// An event's whole stored form, read straight into an [`Event`] (bytes after it ignored,
    /// as postcard does).
    pub(super) fn event(bytes: &[u8]) -> Result<Event, String> {
        let w = &mut Wire(bytes);
        let event_id = w.array()?;
        let loan_id = w.array()?;
        let (seq, recorded_at, body) = (w.u64()?, w.i64()?, body(w)?);
        let prev_hash = w.array()?;
        envelope(
            &event_id,
            &loan_id,
            seq,
            recorded_at,
            body,
            &prev_hash,
            &w.array()?,
        )
    }

    /// An event kept in pieces ([`decode_split`]); `middle` must be read to its end.
    pub(super) fn split(
        event_id: &[u8; 16],
        loan_id: &[u8; 16],
        middle: &[u8],
        prev_hash: &[u8; 32],
        hash: &[u8; 32],
    ) -> Result<Event, String> {
        let w = &mut Wire(middle);
        let (seq, recorded_at, body) = (w.u64()?, w.i64()?, body(w)?);
        if !w.0.is_empty() {
            return Err("bytes after the body".into());
        }
        envelope(event_id, loan_id, seq, recorded_at, body, prev_hash, hash)
    }

    #[inline]
    fn envelope(
        event_id: &[u8; 16],
        loan_id: &[u8; 16],
        seq: u64,
        recorded_at: i64,
        body: Body,
        prev_hash: &[u8; 32],
        hash: &[u8; 32],
    ) -> Result<Event, String> {
        Ok(Event {
            event_id: EventId(Uuid::from_bytes(*event_id)),
            loan_id: LoanId(Uuid::from_bytes(*loan_id)),
            seq: Seq(seq),
            recorded_at: timestamp(recorded_at)?,
            body,
            prev_hash: crate::chain::Digest32(*prev_hash),
            hash: crate::chain::Digest32(*hash),
        })
    }

    /// The body, read straight into a [`Body`]: what [`body_from_v2`] makes of [`BodyV2`],
    /// without the mirror type in between (no second schedule vector, no moves of it).
    fn body(w: &mut Wire) -> Result<Body, String> {
        Ok(match w.u32()? {
            0 => {
                let on = date(w.i32()?)?;
                let principal = money(&w.array()?)?;
                let currency = w.string()?;
                let borrower = w.option(Wire::string)?;
                let daily_rate = rate(&w.array()?);
                let penalty_multiplier = rate(&w.array()?);
                let grace_days = w.u32()?;
                let compound = w.bool()?;
                let kind = w.byte()?;
                let term = w.u32()?;
                let schedule = w.vec(|w| {
                    Ok::<_, String>(ScheduledInstallment {
                        n: w.u32()?,
                        due_on: date(w.i32()?)?,
                        principal: money(&w.array()?)?,
                        interest: money(&w.array()?)?,
                    })
                })?;
                Body::Disbursed(Disbursed {
                    on,
                    principal,
                    currency,
                    borrower,
                    terms: Terms {
                        daily_rate,
                        penalty_multiplier,
                        grace_days,
                        compound,
                        repayment: repayment_of(kind, term)?,
                    },
                    schedule,
                })
            }
            1 => Body::Payment(Payment {
                on: date(w.i32()?)?,
                amount: money(&w.array()?)?,
                reference: w.option(Wire::string)?,
            }),
            2 => Body::Missed(Missed {
                installment: w.u32()?,
                observed_on: date(w.i32()?)?,
            }),
            3 => {
                let agreed_on = date(w.i32()?)?;
                let waive_penalty = waiver(w.option(|w| w.option(Wire::array))?)?;
                let waive_interest = w.option(|w| money(&w.array()?))?;
                let new_due_on = w.option(|w| date(w.i32()?))?;
                let plan = w.option(|w| {
                    w.vec(|w| {
                        Ok::<_, String>(PlanInstallment {
                            due_on: date(w.i32()?)?,
                            principal: money(&w.array()?)?,
                            interest: money(&w.array()?)?,
                        })
                    })
                })?;
                Body::NegotiatedExtension(Extension {
                    agreed_on,
                    waive_penalty,
                    waive_interest,
                    reschedule: match (new_due_on, plan) {
                        (Some(d), None) => Reschedule::NewDueOn(d),
                        (None, Some(p)) => Reschedule::Restructure(p),
                        _ => {
                            return Err(
                                "extension has neither or both of new_due_on and a plan".into()
                            )
                        }
                    },
                })
            }
            4 => {
                let at = contact_at(w.i64()?)?;
                let channel = nth(Channel::ALL, w.byte()?, "channel")?;
                let party = nth(Party::ALL, w.byte()?, "party")?;
                let outcome = nth(Outcome::ALL, w.byte()?, "outcome")?;
                let agent = w.string()?;
                let promise = w.option(|w| {
                    Ok::<_, String>(Promise {
                        on: date(w.i32()?)?,
                        amount: money(&w.array()?)?,
                    })
                })?;
                Body::Contact(Contact {
                    at,
                    channel,
                    party,
                    outcome,
                    agent,
                    promise,
                })
            }
            _ => return Err("unknown event body tag".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{compute_hash, GENESIS};

    fn event(line: &str, seq: u64) -> Event {
        let (new, _) = crate::parse::parse_event(line).unwrap();
        let mut e = Event {
            event_id: EventId(Uuid::from_u128(seq as u128)),
            loan_id: new.loan_id,
            seq: Seq(seq),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            body: new.body,
            prev_hash: GENESIS,
            hash: GENESIS,
        };
        e.hash = compute_hash(&e);
        e
    }

    #[test]
    fn contact_round_trips_with_every_channel_party_and_outcome() {
        let loan = "00000000-0000-0000-0000-0000000000aa";
        let mut seq = 0;
        for ch in Channel::ALL {
            for pa in Party::ALL {
                for oc in Outcome::ALL {
                    seq += 1;
                    let promise = if *oc == Outcome::PromiseToPay {
                        r#","promise":{"on":"2024-02-10","amount":"200.5"}"#
                    } else {
                        ""
                    };
                    let line = format!(
                        r#"{{"loan_id":"{loan}","type":"contact","at":"2024-02-03T23:59:59.123456+08:00","channel":"{}","party":"{}","outcome":"{}","agent":"催收员-7"{promise}}}"#,
                        ch.as_str(),
                        pa.as_str(),
                        oc.as_str()
                    );
                    let e = event(&line, seq);
                    let back = decode(&encode(&e)).unwrap();
                    assert_eq!(back, e);
                    assert_eq!(back.to_json(), e.to_json());
                    assert_eq!(compute_hash(&back), e.hash);
                }
            }
        }
    }

    /// Bytes written before `contact` existed (format byte 2 bodies with tags 0–3) still decode:
    /// the new variant is appended, so every older tag keeps its meaning.
    #[test]
    fn older_tags_are_unchanged() {
        let loan = "00000000-0000-0000-0000-0000000000aa";
        let pay = event(
            &format!(
                r#"{{"loan_id":"{loan}","type":"payment","on":"2024-02-05","amount":"1.00"}}"#
            ),
            2,
        );
        let bytes = encode(&pay);
        // The body tag follows event_id (16), loan_id (16), seq (varint 1 byte), recorded_at
        // (zigzag varint): payment is variant 1.
        let mut body_tag_at = 16 + 16 + 1;
        while bytes[body_tag_at] & 0x80 != 0 {
            body_tag_at += 1;
        }
        assert_eq!(bytes[body_tag_at + 1], 1);
        let contact = event(
            &format!(
                r#"{{"loan_id":"{loan}","type":"contact","at":"2024-02-03T10:00:00Z","channel":"sms","party":"borrower","outcome":"reached","agent":"a"}}"#
            ),
            3,
        );
        let bytes = encode(&contact);
        assert_eq!(bytes[body_tag_at + 1], 4);
    }

    /// One event of every body shape (and every optional part present and absent).
    fn every_shape() -> Vec<Event> {
        let loan = "00000000-0000-0000-0000-0000000000aa";
        let lines = [
            r#""type":"disbursed","on":"2024-01-01","principal":"1000","currency":"CNY","terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":3,"compound":false,"repayment":{"kind":"bullet","days":30}}"#.to_string(),
            r#""type":"disbursed","on":"2024-01-01","principal":"1200.50","currency":"CNY","borrower":"王小明","terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":3,"compound":true,"repayment":{"kind":"installments","count":3,"method":"equal_principal"}}"#.to_string(),
            r#""type":"payment","on":"2024-02-05","amount":"1.00""#.to_string(),
            r#""type":"payment","on":"2024-02-05","amount":"99999999.99","reference":"ref-1"#.to_string() + "\"",
            r#""type":"missed","installment":2,"observed_on":"2024-03-01""#.to_string(),
            r#""type":"negotiated_extension","agreed_on":"2024-02-10","new_due_on":"2024-04-01""#.to_string(),
            r#""type":"negotiated_extension","agreed_on":"2024-02-10","waive_penalty":"all","waive_interest":"5.00","new_due_on":"2024-04-01""#.to_string(),
            r#""type":"negotiated_extension","agreed_on":"2024-02-10","waive_penalty":"12.34","installments":[{"due_on":"2024-03-10","principal":"500","interest":"10"},{"due_on":"2024-04-10","principal":"500","interest":"5"}]"#.to_string(),
            r#""type":"contact","at":"2024-02-03T10:00:00Z","channel":"sms","party":"borrower","outcome":"reached","agent":"a""#.to_string(),
            r#""type":"contact","at":"2024-02-03T10:15:00+08:00","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a-7","promise":{"on":"2024-02-10","amount":"200"}"#.to_string(),
        ];
        lines
            .iter()
            .enumerate()
            .map(|(i, body)| {
                event(
                    &format!(r#"{{"loan_id":"{loan}",{body}}}"#),
                    (i as u64 + 1) * 1_000_003,
                )
            })
            .collect()
    }

    /// [`decode_split`] of an event's stored form cut where a compact chunk cuts it.
    fn split(b: &[u8]) -> Result<Event, String> {
        let (id, rest) = b.split_first_chunk::<16>().unwrap();
        let (loan, rest) = rest.split_first_chunk::<16>().unwrap();
        let (rest, hash) = rest.split_last_chunk::<32>().unwrap();
        let (middle, prev) = rest.split_last_chunk::<32>().unwrap();
        decode_split(id, loan, middle, prev, hash)
    }

    /// The hand-written reader against postcard's own deserializer: every event of every shape,
    /// every truncation of it and every single-byte change of it (to 0, 1, 0x7f, 0x80, 0xff and
    /// its bit complement) decode to the same value or are refused by both.
    #[test]
    fn the_wire_reader_agrees_with_postcard() {
        let mut compared = 0;
        for ev in every_shape() {
            let bytes = encode(&ev);
            assert_eq!(decode(&bytes).unwrap(), ev);
            assert_eq!(split(&bytes).unwrap(), ev);
            // A middle with a byte more than its body is refused, not read around.
            let mut padded = bytes.clone();
            padded.insert(bytes.len() - 64, 0);
            assert!(split(&padded).unwrap_err().contains("bytes after the body"));
            let same = |b: &[u8]| {
                let ours = decode(b).ok();
                assert_eq!(ours, decode_with_postcard(b).ok(), "bytes {b:02x?}");
                // Kept in pieces, the event must read to the end of its middle: whatever decodes
                // so is what the joined bytes decode to.
                if b.len() == bytes.len() {
                    if let Ok(ev) = split(b) {
                        assert_eq!(Some(ev), ours, "bytes {b:02x?}");
                    }
                }
            };
            for n in 0..=bytes.len() {
                same(&bytes[..n]);
                compared += 1;
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xff, 0, 1]);
            same(&longer);
            for i in 0..bytes.len() {
                for v in [0, 1, 0x7f, 0x80, 0xff, !bytes[i]] {
                    let mut b = bytes.clone();
                    b[i] = v;
                    same(&b);
                    compared += 1;
                }
            }
        }
        assert!(compared > 5_000, "{compared}");
    }

    #[test]
    fn canonical_json_of_a_contact() {
        let loan = "00000000-0000-0000-0000-0000000000aa";
        let e = event(
            &format!(
                r#"{{"loan_id":"{loan}","type":"contact","at":"2024-02-03T10:15:00+08:00","channel":"call","party":"borrower","outcome":"promise_to_pay","agent":"a-7","promise":{{"on":"2024-02-10","amount":"200"}}}}"#
            ),
            1,
        );
        assert_eq!(
            crate::chain::canonical_json(&e),
            r#"{"agent":"a-7","at":"2024-02-03T02:15:00Z","channel":"call","event_id":"00000000-0000-0000-0000-000000000001","loan_id":"00000000-0000-0000-0000-0000000000aa","outcome":"promise_to_pay","party":"borrower","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","promise":{"amount":"200.00","on":"2024-02-10"},"recorded_at":"2023-11-14T22:13:20.123456Z","seq":1,"type":"contact"}"#
        );
    }
}
