//! The stored snapshot of a loan's folded state: its own type and its own versioned binary
//! format, separate from the in-memory [`Loan`] (docs/storage.md, "Snapshot format 5").
//!
//! The layout is written and read field by field here, so a change to `Loan` cannot silently
//! change what sits on disk: adding a field to the fold means a new format byte. Byte 0 is the
//! format; [`FORMAT`] is the only one this build reads. Older snapshots (formats 1–4 were
//! postcard of the `Loan` struct, whose first byte was its `format` field) are refused with
//! [`SnapshotError::Format`], and the caller rebuilds them from the events: snapshots are a
//! cache, never the record.
//!
//! Encoding: unsigned integers as LEB128 varints; dates as varints of days from 0001-01-01;
//! decimals as one byte (scale in bits 0–4, sign in bit 7) then the varint magnitude, so the
//! scale and sign are kept exactly (output depends on scale); options as a 0/1 byte then the
//! value; strings as a varint length then UTF-8. Decoding allocates only the loan's own lists.

use arrears_core::date::{days_from_ce, from_days_from_ce};
use arrears_core::id::{LoanId, Seq};
use arrears_core::money::Rate;
use rust_decimal::Decimal;
use uuid::Uuid;

use arrears_core::event::{Date, Event};
use arrears_core::Policy;

use crate::fold::{
    Allocation, DayState, ExtensionRecord, Installment, Loan, MissRecord, Part, Penalty,
    PromiseRecord,
};
use crate::stage::Stage;

/// The snapshot format this build writes and reads (the first byte of every snapshot).
pub const FORMAT: u8 = 5;

/// The folded state after every event of a loan, from which any later as-of date is projected
/// without reading the events again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Stage history depends on the policy: a snapshot is used only under the same one.
    pub policy: String,
    pub loan: Loan,
}

/// Why stored snapshot bytes were not read. The loan is then replayed from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// No bytes at all.
    Empty,
    /// Written in another format (an older build's, or a newer one's).
    Format(u8),
    /// The bytes end inside the named field.
    Truncated(&'static str),
    /// The named field holds a value no snapshot of this format contains.
    Invalid(&'static str),
    /// Bytes left over after the last field.
    Trailing(usize),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Empty => write!(f, "snapshot is empty"),
            SnapshotError::Format(v) => write!(
                f,
                "snapshot format {v} is not read by this build (it reads and writes format \
                 {FORMAT}); the loan is replayed from its events"
            ),
            SnapshotError::Truncated(field) => write!(f, "snapshot ends inside `{field}`"),
            SnapshotError::Invalid(field) => write!(f, "snapshot field `{field}` is invalid"),
            SnapshotError::Trailing(n) => write!(f, "snapshot has {n} bytes after its last field"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl Snapshot {
    /// Fold every event of a loan (full knowledge, every date).
    pub fn build(events: &[Event], policy: &Policy) -> Option<Snapshot> {
        let mut v: Vec<&Event> = events.iter().collect();
        v.sort_by_key(|e| (e.business_date(), e.seq));
        Some(Snapshot {
            policy: policy.name.clone(),
            loan: crate::fold_counted(&v, policy)?,
        })
    }

    /// The head seq this snapshot reflects.
    pub fn version(&self) -> u64 {
        self.loan.version.get()
    }

    /// Whether it answers for `as_of` (no event is dated after it) under `policy`.
    pub fn serves(&self, as_of: Date, policy: &Policy) -> bool {
        self.policy == policy.name && as_of >= self.loan.cursor.0
    }

    /// The stored bytes: the format byte, then the fields (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(256));
        w.byte(FORMAT);
        w.str(&self.policy);
        write_loan(&mut w, &self.loan);
        w.0
    }

    /// Read stored bytes, saying why when they are not a snapshot of this format.
    pub fn read(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let (&format, rest) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if format != FORMAT {
            return Err(SnapshotError::Format(format));
        }
        let mut r = Reader(rest);
        let policy = r.str("policy")?;
        let loan = read_loan(&mut r)?;
        if !r.0.is_empty() {
            return Err(SnapshotError::Trailing(r.0.len()));
        }
        Ok(Snapshot { policy, loan })
    }

    /// [`Snapshot::read`] for the cache's callers: `None` for bytes of another format (the
    /// snapshot is then rebuilt from events).
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        Snapshot::read(bytes).ok()
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    fn bool(&mut self, b: bool) {
        self.0.push(b as u8);
    }
    fn uint(&mut self, mut x: u128) {
        while x >= 0x80 {
            self.0.push((x as u8) | 0x80);
            x >>= 7;
        }
        self.0.push(x as u8);
    }
    fn u64(&mut self, x: u64) {
        self.uint(x as u128);
    }
    fn seq(&mut self, x: Seq) {
        self.u64(x.get());
    }
    fn u32(&mut self, x: u32) {
        self.uint(x as u128);
    }
    fn len(&mut self, n: usize) {
        self.uint(n as u128);
    }
    fn date(&mut self, d: Date) {
        // Days from 0001-01-01 are positive for every date the ledger accepts; a date before
        // it is refused by the wire grammar, so the value is never negative here.
        self.uint(days_from_ce(d.naive()).max(0) as u128);
    }
    fn dec(&mut self, d: Decimal) {
        self.0
            .push(d.scale() as u8 | if d.is_sign_negative() { 0x80 } else { 0 });
        self.uint(d.mantissa().unsigned_abs());
    }
    fn opt_date(&mut self, d: Option<Date>) {
        match d {
            None => self.byte(0),
            Some(d) => {
                self.byte(1);
                self.date(d);
            }
        }
    }
    fn opt_dec(&mut self, d: Option<Decimal>) {
        match d {
            None => self.byte(0),
            Some(d) => {
                self.byte(1);
                self.dec(d);
            }
        }
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn stage(&mut self, s: Stage) {
        let i = Stage::ALL
            .iter()
            .position(|x| *x == s)
            .expect("every stage is listed");
        self.byte(i as u8);
    }
}

struct Reader<'a>(&'a [u8]);

type Decoded<T> = Result<T, SnapshotError>;

impl<'a> Reader<'a> {
    #[inline(always)]
    fn byte(&mut self, field: &'static str) -> Decoded<u8> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or(SnapshotError::Truncated(field))?;
        self.0 = rest;
        Ok(b)
    }
    fn bool(&mut self, field: &'static str) -> Decoded<bool> {
        match self.byte(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::Invalid(field)),
        }
    }
    /// A varint's first nine bytes (63 bits: every count, date and seq, and any amount below
    /// 2^63 minor units) in u64, and whether more bytes follow. Inlined, so the checks against
    /// the constant `bits` fold away.
    #[inline(always)]
    fn first63(&mut self, field: &'static str, bits: u32) -> Decoded<(u64, bool)> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte(field)?;
            if shift >= bits {
                return Err(SnapshotError::Invalid(field));
            }
            x |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok((x, false));
            }
            shift += 7;
            if shift == 63 {
                return Ok((x, true));
            }
        }
    }
    /// A varint of at most `bits` bits, `bits` ≤ 63.
    #[inline(always)]
    fn small(&mut self, field: &'static str, bits: u32) -> Decoded<u64> {
        debug_assert!((7..=63).contains(&bits));
        let (x, more) = self.first63(field, bits)?;
        if more {
            // A tenth byte: past `bits` (or missing).
            self.byte(field)?;
            return Err(SnapshotError::Invalid(field));
        }
        if x >> bits != 0 {
            return Err(SnapshotError::Invalid(field));
        }
        Ok(x)
    }
    /// A varint of at most `bits` bits, up to 128 (a decimal's 96-bit mantissa): past nine
    /// bytes it carries on in u128.
    fn uint(&mut self, field: &'static str, bits: u32) -> Decoded<u128> {
        let (x, mut more) = self.first63(field, bits)?;
        if !more && bits >= 63 {
            // Nine bytes or fewer: below 2^63, within any width this is asked for.
            return Ok(x as u128);
        }
        let mut x = x as u128;
        let mut shift = 63u32;
        while more {
            let b = self.byte(field)?;
            if shift >= bits {
                return Err(SnapshotError::Invalid(field));
            }
            x |= ((b & 0x7f) as u128) << shift;
            more = b & 0x80 != 0;
            shift += 7;
        }
        if bits < 128 && x >> bits != 0 {
            return Err(SnapshotError::Invalid(field));
        }
        Ok(x)
    }
    fn u64(&mut self, field: &'static str) -> Decoded<u64> {
        Ok(self.uint(field, 64)? as u64)
    }
    fn seq(&mut self, field: &'static str) -> Decoded<Seq> {
        self.u64(field).map(Seq)
    }
    fn u32(&mut self, field: &'static str) -> Decoded<u32> {
        Ok(self.small(field, 32)? as u32)
    }
    /// A list length, bounded by the bytes left (every item takes at least one byte).
    fn len(&mut self, field: &'static str) -> Decoded<usize> {
        let n = self.small(field, 32)? as usize;
        if n > self.0.len() {
            return Err(SnapshotError::Truncated(field));
        }
        Ok(n)
    }
    #[inline(always)]
    fn date(&mut self, field: &'static str) -> Decoded<Date> {
        let n = self.small(field, 31)? as i32;
        from_days_from_ce(n)
            .map(Date::new)
            .ok_or(SnapshotError::Invalid(field))
    }
    #[inline(always)]
    fn dec(&mut self, field: &'static str) -> Decoded<Decimal> {
        let head = self.byte(field)?;
        let (negative, scale) = (head & 0x80 != 0, (head & 0x7f) as u32);
        if scale > 28 {
            return Err(SnapshotError::Invalid(field));
        }
        let m = self.uint(field, 96)?;
        Ok(Decimal::from_parts(
            m as u32,
            (m >> 32) as u32,
            (m >> 64) as u32,
            negative,
            scale,
        ))
    }
    fn opt_date(&mut self, field: &'static str) -> Decoded<Option<Date>> {
        Ok(if self.bool(field)? {
            Some(self.date(field)?)
        } else {
            None
        })
    }
    fn opt_dec(&mut self, field: &'static str) -> Decoded<Option<Decimal>> {
        Ok(if self.bool(field)? {
            Some(self.dec(field)?)
        } else {
            None
        })
    }
    fn str(&mut self, field: &'static str) -> Decoded<String> {
        let n = self.len(field)?;
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| SnapshotError::Invalid(field))
    }
    fn stage(&mut self, field: &'static str) -> Decoded<Stage> {
        let i = self.byte(field)?;
        Stage::ALL
            .get(i as usize)
            .copied()
            .ok_or(SnapshotError::Invalid(field))
    }
    fn list<T>(
        &mut self,
        field: &'static str,
        mut item: impl FnMut(&mut Self) -> Decoded<T>,
    ) -> Decoded<Vec<T>> {
        let n = self.len(field)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
}

fn write_loan(w: &mut Writer, loan: &Loan) {
    w.0.extend_from_slice(loan.loan_id.as_bytes());
    w.date(loan.disbursed_on);
    w.str(&loan.currency);
    w.dec(loan.principal);
    w.u32(loan.grace_days);
    w.bool(loan.compound);
    w.dec(loan.penalty_rate_daily.decimal());
    w.opt_dec(loan.stop_at_cost_cap);
    w.len(loan.installments.len());
    for i in &loan.installments {
        w.u32(i.n);
        w.date(i.due_on);
        w.dec(i.principal);
        w.dec(i.interest);
        w.dec(i.paid_principal);
        w.dec(i.paid_interest);
        w.bool(i.removed);
        w.opt_date(i.paid_on);
        w.len(i.history.len());
        for s in &i.history {
            w.date(s.from);
            w.date(s.due_on);
            w.dec(s.base);
            w.bool(s.unpaid);
            w.dec(s.principal);
            w.dec(s.interest);
            w.dec(s.paid_interest);
        }
    }
    let p = &loan.penalty;
    w.dec(p.final_sum);
    w.date(p.final_upto);
    w.dec(p.final_pd);
    w.opt_date(p.final_stopped);
    w.dec(p.paid);
    w.dec(p.waived);
    w.dec(loan.waived_interest);
    w.dec(loan.overpaid);
    w.len(loan.extensions.len());
    for x in &loan.extensions {
        w.seq(x.seq);
        w.date(x.agreed_on);
        w.stage(x.stage_before);
        w.dec(x.waived_penalty);
        w.dec(x.waived_interest);
    }
    w.len(loan.misses.len());
    for m in &loan.misses {
        w.u32(m.installment);
        w.opt_date(m.due_on);
        w.date(m.observed_on);
    }
    w.len(loan.allocations.len());
    for a in &loan.allocations {
        w.seq(a.seq);
        w.date(a.on);
        w.dec(a.amount);
        w.dec(a.penalty);
        w.len(a.installments.len());
        for part in &a.installments {
            w.u32(part.n);
            w.dec(part.interest);
            w.dec(part.principal);
        }
        w.dec(a.overpaid);
    }
    w.len(loan.promises.len());
    for p in &loan.promises {
        w.seq(p.seq);
        w.date(p.made_on);
        w.date(p.on);
        w.dec(p.amount);
        w.dec(p.paid);
        w.opt_date(p.kept_on);
        w.stage(p.stage_before);
    }
    w.seq(loan.version);
    w.date(loan.cursor.0);
    w.seq(loan.cursor.1);
}

fn read_loan(r: &mut Reader) -> Decoded<Loan> {
    let id: [u8; 16] =
        r.0.get(..16)
            .ok_or(SnapshotError::Truncated("loan_id"))?
            .try_into()
            .expect("16 bytes");
    r.0 = &r.0[16..];
    Ok(Loan {
        loan_id: LoanId(Uuid::from_bytes(id)),
        disbursed_on: r.date("disbursed_on")?,
        currency: r.str("currency")?,
        principal: r.dec("principal")?,
        grace_days: r.u32("grace_days")?,
        compound: r.bool("compound")?,
        penalty_rate_daily: Rate::new(r.dec("penalty_rate_daily")?),
        stop_at_cost_cap: r.opt_dec("stop_at_cost_cap")?,
        installments: r.list("installments", |r| {
            Ok(Installment {
                n: r.u32("installments.n")?,
                due_on: r.date("installments.due_on")?,
                principal: r.dec("installments.principal")?,
                interest: r.dec("installments.interest")?,
                paid_principal: r.dec("installments.paid_principal")?,
                paid_interest: r.dec("installments.paid_interest")?,
                removed: r.bool("installments.removed")?,
                paid_on: r.opt_date("installments.paid_on")?,
                history: r.list("installments.history", |r| {
                    Ok(DayState {
                        from: r.date("history.from")?,
                        due_on: r.date("history.due_on")?,
                        base: r.dec("history.base")?,
                        unpaid: r.bool("history.unpaid")?,
                        principal: r.dec("history.principal")?,
                        interest: r.dec("history.interest")?,
                        paid_interest: r.dec("history.paid_interest")?,
                    })
                })?,
            })
        })?,
        penalty: Penalty {
            final_sum: r.dec("penalty.final_sum")?,
            final_upto: r.date("penalty.final_upto")?,
            final_pd: r.dec("penalty.final_pd")?,
            final_stopped: r.opt_date("penalty.final_stopped")?,
            paid: r.dec("penalty.paid")?,
            waived: r.dec("penalty.waived")?,
        },
        waived_interest: r.dec("waived_interest")?,
        overpaid: r.dec("overpaid")?,
        extensions: r.list("extensions", |r| {
            Ok(ExtensionRecord {
                seq: r.seq("extensions.seq")?,
                agreed_on: r.date("extensions.agreed_on")?,
                stage_before: r.stage("extensions.stage_before")?,
                waived_penalty: r.dec("extensions.waived_penalty")?,
                waived_interest: r.dec("extensions.waived_interest")?,
            })
        })?,
        misses: r.list("misses", |r| {
            Ok(MissRecord {
                installment: r.u32("misses.installment")?,
                due_on: r.opt_date("misses.due_on")?,
                observed_on: r.date("misses.observed_on")?,
            })
        })?,
        allocations: r.list("allocations", |r| {
            Ok(Allocation {
                seq: r.seq("allocations.seq")?,
                on: r.date("allocations.on")?,
                amount: r.dec("allocations.amount")?,
                penalty: r.dec("allocations.penalty")?,
                installments: r.list("allocations.installments", |r| {
                    Ok(Part {
                        n: r.u32("parts.n")?,
                        interest: r.dec("parts.interest")?,
                        principal: r.dec("parts.principal")?,
                    })
                })?,
                overpaid: r.dec("allocations.overpaid")?,
            })
        })?,
        promises: r.list("promises", |r| {
            Ok(PromiseRecord {
                seq: r.seq("promises.seq")?,
                made_on: r.date("promises.made_on")?,
                on: r.date("promises.on")?,
                amount: r.dec("promises.amount")?,
                paid: r.dec("promises.paid")?,
                kept_on: r.opt_date("promises.kept_on")?,
                stage_before: r.stage("promises.stage_before")?,
            })
        })?,
        version: r.seq("version")?,
        cursor: (r.date("cursor.date")?, r.seq("cursor.seq")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// The reader's varints against the plainest loop (the format's definition): the same
    /// value, or the same refusal, for every input of up to two bytes and for longer ones built
    /// from the bytes that matter (continuations, the last bits of a width, missing bytes).
    #[test]
    fn varints_agree_with_the_plain_loop() {
        fn plain(mut b: &[u8], bits: u32) -> (Decoded<u128>, usize) {
            let (mut x, mut shift, start) = (0u128, 0u32, b.len());
            loop {
                let Some((&c, rest)) = b.split_first() else {
                    return (Err(SnapshotError::Truncated("f")), start - b.len());
                };
                b = rest;
                if shift >= bits {
                    return (Err(SnapshotError::Invalid("f")), start - b.len());
                }
                x |= ((c & 0x7f) as u128) << shift;
                if c & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            if bits < 128 && x >> bits != 0 {
                return (Err(SnapshotError::Invalid("f")), start - b.len());
            }
            (Ok(x), start - b.len())
        }
        let mut inputs: Vec<Vec<u8>> = (0..=255u8).map(|a| vec![a]).collect();
        for a in 0..=255u8 {
            for b in [0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0xff] {
                inputs.push(vec![a, b]);
            }
        }
        for n in 3..=20 {
            for last in [0x00, 0x01, 0x03, 0x07, 0x0f, 0x1f, 0x7f, 0x80, 0xff] {
                let mut v = vec![0xffu8; n - 1];
                v.push(last);
                inputs.push(v.clone());
                v[0] = 0x80;
                inputs.push(v);
            }
        }
        for input in &inputs {
            for bits in [31u32, 32, 63] {
                let mut r = Reader(input);
                let got = r.small("f", bits).map(u128::from);
                let (want, used) = plain(input, bits);
                assert_eq!(got, want, "small {input:02x?} bits {bits}");
                if want.is_ok() {
                    assert_eq!(input.len() - r.0.len(), used);
                }
            }
            for bits in [64u32, 96, 128] {
                let mut r = Reader(input);
                let got = r.uint("f", bits);
                let (want, used) = plain(input, bits);
                assert_eq!(got, want, "uint {input:02x?} bits {bits}");
                if want.is_ok() {
                    assert_eq!(input.len() - r.0.len(), used);
                }
            }
        }
    }

    fn writer_then_reader(f: impl Fn(&mut Writer)) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        f(&mut w);
        w.0
    }

    #[test]
    fn decimals_keep_scale_and_sign() {
        for s in [
            "0",
            "0.00",
            "-0.00",
            "1015.00",
            "0.0005",
            "-0.77",
            "0.00075",
            "79228162514264337593543950335",
            "-7.9228162514264337593543950335",
        ] {
            let d = Decimal::from_str(s).unwrap();
            let bytes = writer_then_reader(|w| w.dec(d));
            let back = Reader(&bytes).dec("x").unwrap();
            assert_eq!(back.to_string(), d.to_string(), "{s}");
            assert_eq!(back.scale(), d.scale(), "{s}");
            assert_eq!(back.is_sign_negative(), d.is_sign_negative(), "{s}");
        }
    }

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for x in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let bytes = writer_then_reader(|w| w.u64(x));
            assert_eq!(Reader(&bytes).u64("x").unwrap(), x);
        }
        let too_big = writer_then_reader(|w| w.u64(u32::MAX as u64 + 1));
        assert_eq!(Reader(&too_big).u32("n"), Err(SnapshotError::Invalid("n")));
        assert_eq!(Reader(&[0x80]).u64("n"), Err(SnapshotError::Truncated("n")));
    }

    /// The stored stage code is the index in `Stage::ALL`: reordering that list would change
    /// what old snapshots of this format mean.
    #[test]
    fn stage_codes_are_fixed() {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        let fixed =
            "current negotiated settled grace reminder phone written_notice outsourced legal";
        assert_eq!(names.join(" "), fixed);
    }

    #[test]
    fn other_formats_are_refused_by_number() {
        assert_eq!(Snapshot::read(&[]), Err(SnapshotError::Empty));
        // Format 4 was postcard of a struct whose first field was `format: u32 = 4`.
        let err = Snapshot::read(&[4, 10, b'd']).unwrap_err();
        assert_eq!(err, SnapshotError::Format(4));
        assert!(err.to_string().contains("format 4"), "{err}");
        assert!(err.to_string().contains("format 5"), "{err}");
        assert_eq!(Snapshot::decode(&[4, 0]), None);
    }
}
