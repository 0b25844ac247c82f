//! The stored encoding of events (format byte 2): postcard over mirror types with fixed-size
//! fields — UUIDs as 16 bytes, `Decimal` as its 16-byte `serialize()` form, dates as days from
//! 0001-01-01 (CE), timestamps as microseconds since the Unix epoch. Decoding it costs a fraction
//! of parsing the JSON wire form, which matters when a nightly replay reads millions of events.
//!
//! The JSON form stays the contract for input, output and the hash chain; this is only how bytes
//! sit on disk. Format byte 1 (the JSON line) is still decoded, so older values stay readable.

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::*;

type Dec = [u8; 16];

fn dec(d: &Decimal) -> Dec {
    d.serialize()
}
fn undec(b: &Dec) -> Decimal {
    Decimal::deserialize(*b)
}
fn day(d: &NaiveDate) -> i32 {
    crate::date::days_from_ce(*d)
}
fn unday(n: i32) -> Option<NaiveDate> {
    crate::date::from_days_from_ce(n)
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
        seq: ev.seq,
        recorded_at_us: ev.recorded_at.timestamp_micros(),
        body,
        prev_hash: ev.prev_hash.0,
        hash: ev.hash.0,
    };
    *out = postcard::to_extend(&v, std::mem::take(out)).expect("events always encode");
}

/// Decode the compact stored form; `Err` names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Event, String> {
    let v = wire::event(bytes).map_err(|e| format!("does not decode: {e}"))?;
    from_v2(v)
}

/// [`decode`] through postcard's serde deserializer instead of the hand-written [`wire`] reader:
/// the reference the reader is tested and fuzzed against (they must agree on every input).
#[doc(hidden)]
pub fn decode_with_postcard(bytes: &[u8]) -> Result<Event, String> {
    let v: EventV2 = postcard::from_bytes(bytes).map_err(|e| format!("does not decode: {e}"))?;
    from_v2(v)
}

fn from_v2(v: EventV2) -> Result<Event, String> {
    let date = |n: i32| unday(n).ok_or_else(|| format!("day number {n} is out of range"));
    let body = match v.body {
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
            principal: undec(&principal),
            currency,
            borrower,
            terms: Terms {
                daily_rate: undec(&daily_rate),
                penalty_multiplier: undec(&penalty_multiplier),
                grace_days,
                compound,
                repayment: match repayment {
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
                },
            },
            schedule: schedule
                .into_iter()
                .map(|s| {
                    Ok(ScheduledInstallment {
                        n: s.n,
                        due_on: date(s.due_on)?,
                        principal: undec(&s.principal),
                        interest: undec(&s.interest),
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
            amount: undec(&amount),
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
            waive_penalty: waive_penalty.map(|w| match w {
                None => Waiver::All,
                Some(a) => Waiver::Amount(undec(&a)),
            }),
            waive_interest: waive_interest.as_ref().map(undec),
            reschedule: match (new_due_on, plan) {
                (Some(d), None) => Reschedule::NewDueOn(date(d)?),
                (None, Some(p)) => Reschedule::Restructure(
                    p.into_iter()
                        .map(|i| {
                            Ok(PlanInstallment {
                                due_on: date(i.due_on)?,
                                principal: undec(&i.principal),
                                interest: undec(&i.interest),
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
            at: DateTime::from_timestamp_micros(at_us).ok_or("contact `at` out of range")?,
            channel: nth(Channel::ALL, channel, "channel")?,
            party: nth(Party::ALL, party, "party")?,
            outcome: nth(Outcome::ALL, outcome, "outcome")?,
            agent,
            promise: match promise {
                None => None,
                Some((on, amount)) => Some(Promise {
                    on: date(on)?,
                    amount: undec(&amount),
                }),
            },
        }),
    };
    Ok(Event {
        event_id: Uuid::from_bytes(v.event_id),
        loan_id: Uuid::from_bytes(v.loan_id),
        seq: v.seq,
        recorded_at: DateTime::from_timestamp_micros(v.recorded_at_us)
            .ok_or("recorded_at out of range")?,
        body,
        prev_hash: crate::chain::Digest32(v.prev_hash),
        hash: crate::chain::Digest32(v.hash),
    })
}

/// A reader for exactly the postcard encoding of [`EventV2`] (postcard 1.x wire format:
/// unsigned integers as LEB128 varints, signed ones zigzag-encoded first, `u8` and the bytes of
/// fixed-size arrays raw, `bool` and `Option` tags as one byte 0/1, strings and sequences
/// prefixed by a varint length, enum variants by a varint index).
///
/// Why by hand: serde's derived visitor reads a `[u8; 16]` or `[u8; 32]` one element at a time
/// through `SeqAccess`, and an event carries 96 such bytes in ids and hashes plus 16 per amount;
/// replay decodes every stored event, and this reader takes a fraction of the instructions
/// (docs/benchmarks.md). It accepts and refuses exactly what postcard does (tested against it
/// below and fuzzed in `fuzz/fuzz_targets/codec.rs`); like `postcard::from_bytes`, it ignores
/// bytes after the event (a chunk frames each body with its length).
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

        fn option<T>(
            &mut self,
            f: impl FnOnce(&mut Self) -> WireResult<T>,
        ) -> WireResult<Option<T>> {
            match self.byte()? {
                0 => Ok(None),
                1 => f(self).map(Some),
                _ => Err("bad option"),
            }
        }

        fn vec<T>(&mut self, mut f: impl FnMut(&mut Self) -> WireResult<T>) -> WireResult<Vec<T>> {
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

    pub(super) fn event(bytes: &[u8]) -> WireResult<EventV2> {
        let w = &mut Wire(bytes);
        Ok(EventV2 {
            event_id: w.array()?,
            loan_id: w.array()?,
            seq: w.u64()?,
            recorded_at_us: w.i64()?,
            body: body(w)?,
            prev_hash: w.array()?,
            hash: w.array()?,
        })
    }

    fn body(w: &mut Wire) -> WireResult<BodyV2> {
        Ok(match w.u32()? {
            0 => BodyV2::Disbursed {
                on: w.i32()?,
                principal: w.array()?,
                currency: w.string()?,
                borrower: w.option(Wire::string)?,
                daily_rate: w.array()?,
                penalty_multiplier: w.array()?,
                grace_days: w.u32()?,
                compound: w.bool()?,
                repayment: w.byte()?,
                term: w.u32()?,
                schedule: w.vec(|w| {
                    Ok(InstV2 {
                        n: w.u32()?,
                        due_on: w.i32()?,
                        principal: w.array()?,
                        interest: w.array()?,
                    })
                })?,
            },
            1 => BodyV2::Payment {
                on: w.i32()?,
                amount: w.array()?,
                reference: w.option(Wire::string)?,
            },
            2 => BodyV2::Missed {
                installment: w.u32()?,
                observed_on: w.i32()?,
            },
            3 => BodyV2::Extension {
                agreed_on: w.i32()?,
                waive_penalty: w.option(|w| w.option(Wire::array))?,
                waive_interest: w.option(Wire::array)?,
                new_due_on: w.option(Wire::i32)?,
                plan: w.option(|w| {
                    w.vec(|w| {
                        Ok(PlanV2 {
                            due_on: w.i32()?,
                            principal: w.array()?,
                            interest: w.array()?,
                        })
                    })
                })?,
            },
            4 => BodyV2::Contact {
                at_us: w.i64()?,
                channel: w.byte()?,
                party: w.byte()?,
                outcome: w.byte()?,
                agent: w.string()?,
                promise: w.option(|w| Ok((w.i32()?, w.array()?)))?,
            },
            _ => return Err("unknown event body tag"),
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
            event_id: Uuid::from_u128(seq as u128),
            loan_id: new.loan_id,
            seq,
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

    /// The hand-written reader against postcard's own deserializer: every event of every shape,
    /// every truncation of it and every single-byte change of it (to 0, 1, 0x7f, 0x80, 0xff and
    /// its bit complement) decode to the same value or are refused by both.
    #[test]
    fn the_wire_reader_agrees_with_postcard() {
        let mut compared = 0;
        for ev in every_shape() {
            let bytes = encode(&ev);
            assert_eq!(decode(&bytes).unwrap(), ev);
            let same = |b: &[u8]| {
                let ours = wire::event(b).ok();
                let theirs = postcard::from_bytes::<EventV2>(b).ok();
                assert_eq!(ours, theirs, "bytes {b:02x?}");
                assert_eq!(
                    decode(b).ok(),
                    decode_with_postcard(b).ok(),
                    "bytes {b:02x?}"
                );
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
