//! Allocation-free JSON building blocks for the direct §7 writer ([`crate::Projection::write_json`]).
//!
//! Each function appends to a byte buffer exactly the bytes `serde_json` writes for the same
//! value through the serde impls the projection types use (`amount_str`, chrono's `NaiveDate`,
//! `fmt_timestamp`, uuid's hyphenated form, serde_json's string escaping); every byte written
//! is ASCII or comes from a `&str`, so the buffer stays UTF-8. `tests` here, `tests/json.rs` and
//! `tests/model.rs` check them against serde_json.

use std::io::Write as _;

use chrono::{Datelike, Timelike};
use rust_decimal::Decimal;
use uuid::Uuid;

use arrears_core::event::{Date, Timestamp};

/// "00" "01" … "99": two digits per division.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Room for the digits of any `u128` (39).
const DIGITS: usize = 40;

/// The decimal digits of `w` (at least one: "0" for zero) written right to left so that they
/// end just before `buf[end]`; the index of the first digit. Two digits per division.
#[inline]
fn u64_digits(buf: &mut [u8], end: usize, mut w: u64) -> usize {
    let mut i = end;
    while w >= 100 {
        let r = (w % 100) as usize * 2;
        w /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    }
    if w >= 10 {
        let r = w as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + w as u8;
    }
    i
}

/// Digits of `v` into the end of `buf`, left-padded with zeros to at least `min` digits
/// (`min` ≤ 40); the index of the first digit.
#[inline]
fn digits(buf: &mut [u8; DIGITS], v: u128, min: usize) -> usize {
    let mut i = DIGITS;
    // Decimal mantissas reach 96 bits; most values fit a u64, whose division is far cheaper.
    let w = if v > u64::MAX as u128 {
        let mut v = v;
        while v > u64::MAX as u128 {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        v as u64
    } else {
        v as u64
    };
    // Every caller asks for at least one digit, so a zero written here is a pad it needed.
    debug_assert!(min >= 1);
    i = u64_digits(buf, i, w);
    while DIGITS - i < min {
        i -= 1;
        buf[i] = b'0';
    }
    i
}

/// An unsigned integer, as serde_json writes it.
#[inline]
pub fn uint(out: &mut Vec<u8>, v: u64) {
    // 20 digits at most, built right to left to end at index 24.
    let mut buf = [0u8; 48];
    let i = u64_digits(&mut buf, 24, v);
    tail(out, &buf, i);
}

/// Append `buf[i..24]` (`i` ≤ 24) by copying a fixed 24 bytes and cutting the slack: a copy of a
/// known length is a few moves, where one of a varying length is a call to `memmove` (4 % of a
/// reprojection's samples went to that call for amounts of a few bytes).
#[inline(always)]
fn tail(out: &mut Vec<u8>, buf: &[u8; 48], i: usize) {
    debug_assert!(i <= 24);
    out.extend_from_slice(&buf[i..i + 24]);
    out.truncate(out.len() - i);
}

/// A JSON string that needs no escaping: one of the view's fixed names (a stage, a status, a
/// class, a bucket such as `M3+`, an anomaly kind), none with a quote, a backslash or a control
/// character.
#[inline]
pub fn name(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(
        s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'),
        "{s:?} needs escaping"
    );
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A signed integer, as serde_json writes it.
#[inline]
pub fn int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    uint(out, v.unsigned_abs());
}

/// An amount as a JSON string with two decimals: the bytes of `amount_str::serialize`
/// (`rescale(2)`, then `Decimal`'s `Display`, which writes a `-` for any negative sign bit).
pub fn amount(out: &mut Vec<u8>, d: Decimal) {
    // Zero, at any scale and not negative: four in ten of the amounts in a §7 line.
    if d.mantissa() == 0 && !d.is_sign_negative() {
        out.extend_from_slice(b"\"0.00\"");
        return;
    }
    // The common case, every amount the ledger computes: scale 2 and a mantissa that fits a u64.
    // The quoted string is built right to left in one stack buffer and appended at once.
    if d.scale() == 2 {
        if let Ok(m) = u64::try_from(d.mantissa().unsigned_abs()) {
            // '"' + '-' + 18 integer digits at most (u64 / 100 < 10^18) + '.' + 2 + '"', built
            // right to left to end at index 24; the 24 bytes after are slack for `tail`.
            let mut buf = [0u8; 48];
            let mut i = 24 - 1;
            buf[i] = b'"';
            let r = (m % 100) as usize * 2;
            i -= 2;
            buf[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
            i -= 1;
            buf[i] = b'.';
            i = u64_digits(&mut buf, i, m / 100);
            if d.is_sign_negative() {
                i -= 1;
                buf[i] = b'-';
            }
            i -= 1;
            buf[i] = b'"';
            tail(out, &buf, i);
            return;
        }
    }
    let mut d = d;
    if d.scale() != 2 {
        d.rescale(2);
    }
    // Scale 2 except for values too large to carry two decimals (rescale keeps what fits).
    let scale = d.scale() as usize;
    let mut buf = [0u8; DIGITS];
    // At least one digit before the point: "0.05", and "0" for zero at scale 0.
    let i = digits(&mut buf, d.mantissa().unsigned_abs(), scale + 1);
    let point = DIGITS - scale;
    out.push(b'"');
    if d.is_sign_negative() {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..point]);
    if scale > 0 {
        out.push(b'.');
        out.extend_from_slice(&buf[point..]);
    }
    out.push(b'"');
}

/// Two digits, zero-padded.
#[inline]
fn two(out: &mut Vec<u8>, v: u32) {
    debug_assert!(v < 100);
    let r = v as usize * 2;
    out.extend_from_slice(&PAIRS[r..r + 2]);
}

/// `YYYY-MM-DD` as chrono writes it (an explicit sign and at least four digits outside
/// 0000..=9999).
fn date_body(out: &mut Vec<u8>, d: chrono::NaiveDate) {
    let year = d.year();
    if (0..=9999).contains(&year) {
        two(out, year as u32 / 100);
        two(out, year as u32 % 100);
    } else {
        write!(out, "{year:+05}").expect("writing to a Vec never fails");
    }
    out.push(b'-');
    two(out, d.month());
    out.push(b'-');
    two(out, d.day());
}

/// A date as a JSON string.
pub fn date(out: &mut Vec<u8>, d: Date) {
    out.push(b'"');
    date_body(out, d.naive());
    out.push(b'"');
}

/// A timestamp as a JSON string: the bytes of `fmt_timestamp` (RFC 3339, `AutoSi` fractional
/// seconds, `Z`).
pub fn timestamp(out: &mut Vec<u8>, t: &Timestamp) {
    let dt = t.naive_utc();
    out.push(b'"');
    date_body(out, dt.date());
    out.push(b'T');
    let (hour, min, mut sec) = (dt.hour(), dt.minute(), dt.second());
    let mut nano = dt.nanosecond();
    if nano >= 1_000_000_000 {
        // A leap second: chrono prints it as second 60.
        sec += 1;
        nano -= 1_000_000_000;
    }
    two(out, hour);
    out.push(b':');
    two(out, min);
    out.push(b':');
    two(out, sec);
    if nano != 0 {
        let (v, width) = if nano.is_multiple_of(1_000_000) {
            (nano / 1_000_000, 3)
        } else if nano.is_multiple_of(1_000) {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        let mut buf = [0u8; DIGITS];
        let i = digits(&mut buf, v as u128, width);
        out.push(b'.');
        out.extend_from_slice(&buf[i..]);
    }
    out.extend_from_slice(b"Z\"");
}

/// A UUID as a JSON string, hyphenated lower-case.
pub fn uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// A JSON string, escaped exactly as serde_json does: `"` and `\` backslashed, `\b \t \n \f \r`
/// by name, other control characters below U+0020 as `\u00xx` (lower-case hex); everything else,
/// DEL and non-ASCII included, as is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let hex = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ];
            out.extend_from_slice(&hex);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A boolean.
#[inline]
pub fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use std::str::FromStr;

    fn via<F: Fn(&mut Vec<u8>)>(f: F) -> String {
        let mut s = Vec::new();
        f(&mut s);
        String::from_utf8(s).unwrap()
    }

    fn serde_amount(d: Decimal) -> String {
        struct A(Decimal);
        impl serde::Serialize for A {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                arrears_core::money::amount_str::serialize(&self.0, s)
            }
        }
        serde_json::to_string(&A(d)).unwrap()
    }

    #[test]
    fn amounts_match_amount_str() {
        let cases = [
            "0",
            "0.0",
            "0.00",
            "0.000",
            "-0",
            "-0.00",
            "-0.001",
            "0.05",
            "0.5",
            "5",
            "7.6",
            "7.60",
            "1000",
            "1000.00",
            "1022.6",
            "0.001",
            "0.005",
            "12.345",
            "9999999999999999.99",
            "370000000000000000.00",
            "18446744073709551615",
            "18446744073709551616",
            "184467440737095516.16",
            "79228162514264337593543950335",
            "7922816251426433759354395033.5",
            "0.0000000000000000000000000001",
            "-1.5",
            "-0.01",
        ];
        for c in cases {
            let d = Decimal::from_str(c).unwrap();
            assert_eq!(via(|o| amount(o, d)), serde_amount(d), "{c}");
        }
        // A negative zero (sign bit set, mantissa zero) prints as `Display` prints it.
        let mut neg_zero = Decimal::new(0, 2);
        neg_zero.set_sign_negative(true);
        assert!(neg_zero.is_sign_negative());
        assert_eq!(via(|o| amount(o, neg_zero)), serde_amount(neg_zero));
        // Every mantissa/scale combination around the digit and u64 boundaries.
        for scale in 0..=28u32 {
            for m in [
                0i128,
                1,
                9,
                10,
                99,
                100,
                101,
                12345,
                u64::MAX as i128,
                u64::MAX as i128 + 1,
                (1i128 << 96) - 1,
            ] {
                for m in [m, -m] {
                    let d = Decimal::from_i128_with_scale(m, scale);
                    assert_eq!(via(|o| amount(o, d)), serde_amount(d), "{m} e-{scale}");
                }
            }
        }
    }

    #[test]
    fn integers_match_serde() {
        for v in [0u64, 1, 9, 10, 42, 1_000_000, u64::MAX] {
            assert_eq!(via(|o| uint(o, v)), serde_json::to_string(&v).unwrap());
        }
        for v in [0i64, -1, 1, -10, 3650, i64::MIN, i64::MAX] {
            assert_eq!(via(|o| int(o, v)), serde_json::to_string(&v).unwrap());
        }
    }

    #[test]
    fn dates_match_chrono() {
        for (y, m, d) in [
            (2024, 1, 1),
            (2024, 2, 29),
            (1, 1, 1),
            (0, 12, 31),
            (999, 9, 9),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 1, 1),
            (-12345, 6, 7),
            (262142, 12, 31),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(
                via(|o| date(o, Date::new(day))),
                serde_json::to_string(&day).unwrap()
            );
        }
    }

    #[test]
    fn timestamps_match_fmt_timestamp() {
        let base = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap();
        for nanos in [
            0u32,
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            5_000_000,
            100_000_000,
            123_456_789,
            999_999_999,
            // Leap second (chrono's representation).
            1_000_000_000,
            1_500_000_000,
            1_999_999_999,
        ] {
            let t = base.with_nanosecond(nanos).unwrap();
            let want = format!("\"{}\"", arrears_core::event::fmt_timestamp(&t));
            assert_eq!(via(|o| timestamp(o, &t)), want, "{nanos}");
        }
        for t in [
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap(),
        ] {
            let want = format!("\"{}\"", arrears_core::event::fmt_timestamp(&t));
            assert_eq!(via(|o| timestamp(o, &t)), want);
        }
    }

    #[test]
    fn uuids_match_serde() {
        for id in [
            Uuid::nil(),
            Uuid::max(),
            Uuid::from_u128(0x0123_4567_89ab_cdef),
        ] {
            assert_eq!(via(|o| uuid(o, &id)), serde_json::to_string(&id).unwrap());
        }
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all_ascii = String::new();
        for b in 0u8..=0x7f {
            all_ascii.push(char::from(b));
        }
        for s in [
            "",
            "default-v1",
            "say \"hi\"",
            "back\\slash",
            "tab\there\nnew\rline\u{8}\u{c}",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "政策-v2 ✓ 🚀",
            "\"",
            "\\",
            "é\"ü\u{1}ß",
            "</script>",
            "\u{2028}\u{2029}",
            all_ascii.as_str(),
        ] {
            assert_eq!(
                via(|o| string(o, s)),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }
}
