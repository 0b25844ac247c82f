//! Parsing JSON lines into events, naming the offending field in every error.
//!
//! The parser is strict on purpose: duplicate keys, unknown fields, numbers where strings are
//! expected and amounts outside the SPEC §8 grammar are all rejected. It does only what needs no
//! policy; [`crate::validate`] checks the rules that depend on the policy (APR cap) and computes
//! the schedule.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::*;
use crate::money::{parse_amount, parse_rate, NumberError};

/// The longest free-text field (`borrower`, `reference`) the ledger stores.
pub const MAX_TEXT_CHARS: usize = 256;
/// The most installments a schedule or plan may have.
pub const MAX_INSTALLMENTS: usize = 600;
/// The longest bullet term in days (100 years).
pub const MAX_BULLET_DAYS: u32 = 36_500;

/// What is wrong with one field of an input event. Every stateless rule has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("is required")]
    Missing,
    #[error("is not a field of this event")]
    UnknownField,
    #[error("appears twice in the object")]
    DuplicateKey,
    #[error(
        "`{0}` is not an event type (disbursed, payment, missed, negotiated_extension, contact)"
    )]
    UnknownType(String),
    #[error("expected {expected}, got {got}")]
    WrongType {
        expected: &'static str,
        got: &'static str,
    },
    #[error("`{value}` {reason}")]
    Number { value: String, reason: NumberError },
    #[error("must be greater than zero")]
    NotPositive,
    #[error("`{0}` is not a date (YYYY-MM-DD)")]
    BadDate(String),
    #[error("`{0}` is not an RFC 3339 timestamp")]
    BadTimestamp(String),
    #[error("`{0}` is not a UUID")]
    BadUuid(String),
    #[error("`{0}` is not a currency code (3 capital letters)")]
    BadCurrency(String),
    #[error("is longer than {MAX_TEXT_CHARS} characters")]
    TextTooLong,
    #[error("must be between {min} and {max}, got {got}")]
    OutOfRange { min: u64, max: u64, got: String },
    #[error("`{0}` is not one of {1}")]
    NotOneOf(String, &'static str),
    #[error("must be at least 1, got {0}")]
    MultiplierBelowOne(Decimal),
    #[error(
        "penalty APR daily_rate × penalty_multiplier × 365 = {apr} exceeds the policy cap {cap}"
    )]
    AprAboveCap { apr: Decimal, cap: Decimal },
    #[error("{0}")]
    BadSchedule(String),
    #[error("give exactly one of `new_due_on` and `installments`")]
    RescheduleShape,
    #[error("must not be empty")]
    Empty,
    #[error("{0}")]
    BadDateRange(String),
    #[error("is only given with outcome `promise_to_pay`")]
    PromiseWithoutPromiseToPay,
}

/// A rejected input event: the field (a path such as `terms.daily_rate` or
/// `schedule[1].principal`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub field: String,
    pub kind: Invalid,
}

impl InputError {
    pub fn new(field: impl Into<String>, kind: Invalid) -> Self {
        InputError {
            field: field.into(),
            kind,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.field, self.kind)
        }
    }
}

impl std::error::Error for InputError {}

type Parsed<T> = Result<T, InputError>;

/// A JSON value parsed with duplicate keys rejected (serde_json keeps the last one silently).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(k) = m.next_key::<String>()? {
            let Strict(v) = m.next_value()?;
            if map.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key `{k}`")));
            }
            map.insert(k, v);
        }
        Ok(Value::Object(map))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a JSON number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being taken apart field by field; `finish` rejects what is left over.
struct Obj {
    map: Map<String, Value>,
    path: String,
}

impl Obj {
    fn new(v: Value, path: &str) -> Parsed<Obj> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_owned(),
            }),
            other => Err(InputError::new(
                path,
                if path.is_empty() {
                    Invalid::NotAnObject
                } else {
                    Invalid::WrongType {
                        expected: "an object",
                        got: type_name(&other),
                    }
                },
            )),
        }
    }

    fn field(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    fn err(&self, name: &str, kind: Invalid) -> InputError {
        InputError::new(self.field(name), kind)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn req(&mut self, name: &str) -> Parsed<Value> {
        self.take(name)
            .ok_or_else(|| self.err(name, Invalid::Missing))
    }

    fn string_of(&self, name: &str, v: Value) -> Parsed<String> {
        match v {
            Value::String(s) => Ok(s),
            other => Err(self.err(
                name,
                Invalid::WrongType {
                    expected: "a string",
                    got: type_name(&other),
                },
            )),
        }
    }

    fn req_str(&mut self, name: &str) -> Parsed<String> {
        let v = self.req(name)?;
        self.string_of(name, v)
    }

    fn opt_str(&mut self, name: &str) -> Parsed<Option<String>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => self.string_of(name, v).map(Some),
        }
    }

    fn amount_of(&self, name: &str, s: String) -> Parsed<Decimal> {
        parse_amount(&s).map_err(|reason| self.err(name, Invalid::Number { value: s, reason }))
    }

    fn req_amount(&mut self, name: &str) -> Parsed<Decimal> {
        let s = self.req_str(name)?;
        self.amount_of(name, s)
    }

    fn req_rate(&mut self, name: &str) -> Parsed<Decimal> {
        let s = self.req_str(name)?;
        parse_rate(&s).map_err(|reason| self.err(name, Invalid::Number { value: s, reason }))
    }

    fn date_of(&self, name: &str, s: String) -> Parsed<Date> {
        parse_date(&s).ok_or_else(|| self.err(name, Invalid::BadDate(s)))
    }

    fn req_date(&mut self, name: &str) -> Parsed<Date> {
        let s = self.req_str(name)?;
        self.date_of(name, s)
    }

    fn opt_date(&mut self, name: &str) -> Parsed<Option<Date>> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(s) => self.date_of(name, s).map(Some),
        }
    }

    fn uint_of(&self, name: &str, v: Value, min: u64, max: u64) -> Parsed<u64> {
        match &v {
            Value::Number(n) => match n.as_u64() {
                Some(x) if (min..=max).contains(&x) => Ok(x),
                _ => Err(self.err(
                    name,
                    Invalid::OutOfRange {
                        min,
                        max,
                        got: n.to_string(),
                    },
                )),
            },
            other => Err(self.err(
                name,
                Invalid::WrongType {
                    expected: "a whole number",
                    got: type_name(other),
                },
            )),
        }
    }

    fn req_uint(&mut self, name: &str, min: u64, max: u64) -> Parsed<u64> {
        let v = self.req(name)?;
        self.uint_of(name, v, min, max)
    }

    fn req_bool(&mut self, name: &str) -> Parsed<bool> {
        match self.req(name)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.err(
                name,
                Invalid::WrongType {
                    expected: "true or false",
                    got: type_name(&other),
                },
            )),
        }
    }

    fn text(&mut self, name: &str) -> Parsed<Option<String>> {
        let s = self.opt_str(name)?;
        if s.as_ref()
            .is_some_and(|s| s.chars().count() > MAX_TEXT_CHARS)
        {
            return Err(self.err(name, Invalid::TextTooLong));
        }
        Ok(s)
    }

    fn array(&mut self, name: &str, v: Value) -> Parsed<Vec<Value>> {
        match v {
            Value::Array(a) => Ok(a),
            other => Err(self.err(
                name,
                Invalid::WrongType {
                    expected: "an array",
                    got: type_name(&other),
                },
            )),
        }
    }

    fn finish(self) -> Parsed<()> {
        // BTreeMap order: the first unknown field alphabetically, deterministic.
        match self.map.into_iter().next() {
            None => Ok(()),
            Some((k, _)) => Err(InputError::new(
                if self.path.is_empty() {
                    k
                } else {
                    format!("{}.{}", self.path, k)
                },
                Invalid::UnknownField,
            )),
        }
    }
}

/// Parse `YYYY-MM-DD` exactly (the date grammar lives in [`crate::date`]).
pub use crate::date::parse as parse_date;

/// Parse an RFC 3339 timestamp (any offset, stored as UTC, kept to the microsecond).
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| truncate_to_micros(t.with_timezone(&Utc)))
}

/// Timestamps are kept to the microsecond (the store's resolution); finer digits are dropped.
pub fn truncate_to_micros(t: Timestamp) -> Timestamp {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn parse_json(line: &str) -> Parsed<Value> {
    serde_json::from_str::<Strict>(line)
        .map(|s| s.0)
        .map_err(|e| {
            let msg = e.to_string();
            // Our duplicate-key message names the key; lift it into the field position.
            if let Some(rest) = msg.strip_prefix("duplicate key `") {
                if let Some((key, _)) = rest.split_once('`') {
                    return InputError::new(key, Invalid::DuplicateKey);
                }
            }
            InputError::new("", Invalid::Json(msg))
        })
}

/// The envelope fields a stored or exported event may also carry.
#[derive(Debug, Clone, Default)]
pub struct ChainFields {
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Parse one JSON line into a [`NewEvent`] (stateless: grammar, types, unknown fields).
/// `prev_hash` and `hash` are accepted (so `append`'s own output can be re-imported) and
/// returned separately; the store recomputes them.
pub fn parse_event(line: &str) -> Parsed<(NewEvent, ChainFields)> {
    let v = parse_json(line)?;
    parse_event_value(v)
}

fn uuid_of(o: &Obj, name: &str, s: String) -> Parsed<Uuid> {
    Uuid::parse_str(&s).map_err(|_| o.err(name, Invalid::BadUuid(s)))
}

fn parse_event_value(v: Value) -> Parsed<(NewEvent, ChainFields)> {
    let mut o = Obj::new(v, "")?;
    let loan_id = {
        let s = o.req_str("loan_id")?;
        uuid_of(&o, "loan_id", s)?
    };
    let event_id = match o.opt_str("event_id")? {
        None => None,
        Some(s) => Some(uuid_of(&o, "event_id", s)?),
    };
    let seq = match o.take("seq") {
        None => None,
        Some(v) => Some(o.uint_of("seq", v, 1, u64::MAX >> 1)?),
    };
    let recorded_at = match o.opt_str("recorded_at")? {
        None => None,
        Some(s) => Some(
            parse_timestamp(&s).ok_or_else(|| o.err("recorded_at", Invalid::BadTimestamp(s)))?,
        ),
    };
    let chain = ChainFields {
        prev_hash: o.opt_str("prev_hash")?,
        hash: o.opt_str("hash")?,
    };
    let kind = o.req_str("type")?;
    let body = match kind.as_str() {
        "disbursed" => Body::Disbursed(parse_disbursed(&mut o)?),
        "payment" => {
            let on = o.req_date("on")?;
            let amount = o.req_amount("amount")?;
            if amount.is_zero() {
                return Err(o.err("amount", Invalid::NotPositive));
            }
            let reference = o.text("reference")?;
            Body::Payment(Payment {
                on,
                amount,
                reference,
            })
        }
        "missed" => Body::Missed(Missed {
            installment: o.req_uint("installment", 1, u32::MAX as u64)? as u32,
            observed_on: o.req_date("observed_on")?,
        }),
        "negotiated_extension" => Body::NegotiatedExtension(parse_extension(&mut o)?),
        "contact" => Body::Contact(parse_contact(&mut o)?),
        _ => return Err(InputError::new("type", Invalid::UnknownType(kind))),
    };
    o.finish()?;
    Ok((
        NewEvent {
            event_id,
            loan_id,
            seq,
            recorded_at,
            body,
        },
        chain,
    ))
}

fn parse_disbursed(o: &mut Obj) -> Parsed<Disbursed> {
    let on = o.req_date("on")?;
    let principal = o.req_amount("principal")?;
    if principal.is_zero() {
        return Err(o.err("principal", Invalid::NotPositive));
    }
    let currency = match o.opt_str("currency")? {
        None => "CNY".to_owned(),
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => c,
        Some(c) => return Err(o.err("currency", Invalid::BadCurrency(c))),
    };
    let borrower = o.text("borrower")?;
    let terms_v = o.req("terms")?;
    let mut t = Obj::new(terms_v, "terms")?;
    let daily_rate = t.req_rate("daily_rate")?;
    let penalty_multiplier = t.req_rate("penalty_multiplier")?;
    if penalty_multiplier < Decimal::ONE {
        return Err(t.err(
            "penalty_multiplier",
            Invalid::MultiplierBelowOne(penalty_multiplier),
        ));
    }
    let grace_days = t.req_uint("grace_days", 0, 30)? as u32;
    let compound = t.req_bool("compound")?;
    let rep_v = t.req("repayment")?;
    let mut r = Obj::new(rep_v, "terms.repayment")?;
    let kind = r.req_str("kind")?;
    let repayment = match kind.as_str() {
        "bullet" => Repayment::Bullet {
            days: r.req_uint("days", 1, MAX_BULLET_DAYS as u64)? as u32,
        },
        "installments" => {
            let count = r.req_uint("count", 1, MAX_INSTALLMENTS as u64)? as u32;
            let m = r.req_str("method")?;
            let method = match m.as_str() {
                "equal_installment" => Method::EqualInstallment,
                "equal_principal" => Method::EqualPrincipal,
                _ => {
                    return Err(r.err(
                        "method",
                        Invalid::NotOneOf(m, "equal_installment, equal_principal"),
                    ))
                }
            };
            Repayment::Installments { count, method }
        }
        _ => return Err(r.err("kind", Invalid::NotOneOf(kind, "bullet, installments"))),
    };
    r.finish()?;
    t.finish()?;
    let schedule = match o.take("schedule") {
        None => Vec::new(),
        Some(v) => {
            let items = o.array("schedule", v)?;
            if items.is_empty() {
                return Err(o.err("schedule", Invalid::Empty));
            }
            if items.len() > MAX_INSTALLMENTS {
                return Err(o.err(
                    "schedule",
                    Invalid::BadSchedule(format!("has more than {MAX_INSTALLMENTS} installments")),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let mut s = Obj::new(item, &format!("schedule[{i}]"))?;
                let n = s.req_uint("n", 1, u32::MAX as u64)? as u32;
                let due_on = s.req_date("due_on")?;
                let principal = s.req_amount("principal")?;
                let interest = s.req_amount("interest")?;
                s.finish()?;
                out.push(ScheduledInstallment {
                    n,
                    due_on,
                    principal,
                    interest,
                });
            }
            out
        }
    };
    Ok(Disbursed {
        on,
        principal,
        currency,
        borrower,
        terms: Terms {
            daily_rate,
            penalty_multiplier,
            grace_days,
            compound,
            repayment,
        },
        schedule,
    })
}

fn parse_contact(o: &mut Obj) -> Parsed<Contact> {
    let at = {
        let s = o.req_str("at")?;
        parse_timestamp(&s).ok_or_else(|| o.err("at", Invalid::BadTimestamp(s)))?
    };
    let channel = {
        let s = o.req_str("channel")?;
        Channel::from_name(&s).ok_or_else(|| {
            o.err(
                "channel",
                Invalid::NotOneOf(
                    s,
                    "sms, app, call, email, letter, visit, agency_handover, legal_filing",
                ),
            )
        })?
    };
    let party = {
        let s = o.req_str("party")?;
        Party::from_name(&s).ok_or_else(|| {
            o.err(
                "party",
                Invalid::NotOneOf(s, "borrower, emergency_contact, third_party"),
            )
        })?
    };
    let outcome = {
        let s = o.req_str("outcome")?;
        Outcome::from_name(&s).ok_or_else(|| {
            o.err(
                "outcome",
                Invalid::NotOneOf(
                    s,
                    "reached, no_answer, promise_to_pay, refused, wrong_number",
                ),
            )
        })?
    };
    let agent = o
        .text("agent")?
        .ok_or_else(|| o.err("agent", Invalid::Missing))?;
    if agent.trim().is_empty() {
        return Err(o.err("agent", Invalid::Empty));
    }
    let promise = match o.take("promise") {
        None => None,
        Some(v) => {
            if outcome != Outcome::PromiseToPay {
                return Err(o.err("promise", Invalid::PromiseWithoutPromiseToPay));
            }
            let mut p = Obj::new(v, "promise")?;
            let on = p.req_date("on")?;
            let amount = p.req_amount("amount")?;
            if amount.is_zero() {
                return Err(p.err("amount", Invalid::NotPositive));
            }
            p.finish()?;
            let day = at.date_naive();
            if on < day {
                return Err(InputError::new(
                    "promise.on",
                    Invalid::BadDateRange(format!(
                        "{on} is before the contact's date {day} (UTC date of `at`)"
                    )),
                ));
            }
            Some(Promise { on, amount })
        }
    };
    if outcome == Outcome::PromiseToPay && promise.is_none() {
        return Err(o.err("promise", Invalid::Missing));
    }
    Ok(Contact {
        at,
        channel,
        party,
        outcome,
        agent,
        promise,
    })
}

fn parse_extension(o: &mut Obj) -> Parsed<Extension> {
    let agreed_on = o.req_date("agreed_on")?;
    let new_due_on = o.opt_date("new_due_on")?;
    let waive_penalty = match o.opt_str("waive_penalty")? {
        None => None,
        Some(s) if s == "all" => Some(Waiver::All),
        Some(s) => Some(Waiver::Amount(o.amount_of("waive_penalty", s)?)),
    };
    let waive_interest = match o.opt_str("waive_interest")? {
        None => None,
        Some(s) => Some(o.amount_of("waive_interest", s)?),
    };
    let plan = match o.take("installments") {
        None => None,
        Some(v) => {
            let items = o.array("installments", v)?;
            if items.is_empty() {
                return Err(o.err("installments", Invalid::Empty));
            }
            if items.len() > MAX_INSTALLMENTS {
                return Err(o.err(
                    "installments",
                    Invalid::BadSchedule(format!("has more than {MAX_INSTALLMENTS} installments")),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let mut s = Obj::new(item, &format!("installments[{i}]"))?;
                let due_on = s.req_date("due_on")?;
                let principal = s.req_amount("principal")?;
                let interest = s.req_amount("interest")?;
                s.finish()?;
                if due_on <= agreed_on {
                    return Err(InputError::new(
                        format!("installments[{i}].due_on"),
                        Invalid::BadDateRange(format!(
                            "{due_on} is not after agreed_on {agreed_on}"
                        )),
                    ));
                }
                out.push(PlanInstallment {
                    due_on,
                    principal,
                    interest,
                });
            }
            Some(out)
        }
    };
    let reschedule = match (new_due_on, plan) {
        (Some(d), None) => {
            if d <= agreed_on {
                return Err(o.err(
                    "new_due_on",
                    Invalid::BadDateRange(format!("{d} is not after agreed_on {agreed_on}")),
                ));
            }
            Reschedule::NewDueOn(d)
        }
        (None, Some(p)) => Reschedule::Restructure(p),
        _ => return Err(o.err("new_due_on", Invalid::RescheduleShape)),
    };
    Ok(Extension {
        agreed_on,
        waive_penalty,
        waive_interest,
        reschedule,
    })
}

/// Decode a stored event (the JSON written by the store). Stored events passed validation when
/// they were appended, so only the grammar is checked here; the policy is not consulted, so a
/// later policy change never makes stored history unreadable.
fn digest(s: Option<String>, field: &str) -> Parsed<crate::chain::Digest32> {
    let s = s.ok_or_else(|| InputError::new(field, Invalid::Missing))?;
    crate::chain::Digest32::parse(&s)
        .ok_or_else(|| InputError::new(field, Invalid::Json(format!("`{s}` is not 64 hex digits"))))
}

pub fn parse_stored(json: &str) -> Parsed<Event> {
    let (ev, chain) = parse_event(json)?;
    let missing = |f: &str| InputError::new(f, Invalid::Missing);
    Ok(Event {
        event_id: ev.event_id.ok_or_else(|| missing("event_id"))?,
        loan_id: ev.loan_id,
        seq: ev.seq.ok_or_else(|| missing("seq"))?,
        recorded_at: ev.recorded_at.ok_or_else(|| missing("recorded_at"))?,
        body: ev.body,
        prev_hash: digest(chain.prev_hash, "prev_hash")?,
        hash: digest(chain.hash, "hash")?,
    })
}
