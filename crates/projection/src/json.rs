//! Allocation-free JSON building blocks for the direct §7 writer ([`crate::Projection::write_json`]).
//!
//! Each function appends exactly the bytes `serde_json` writes for the same value through the
//! serde impls the projection types use (`amount_str`, chrono's `NaiveDate`, `fmt_timestamp`,
//! uuid's hyphenated form, serde_json's string escaping). `tests` and `tests/model.rs` check
//! them against serde_json.

use std::fmt::Write as _;

use chrono::{Datelike, Timelike};
use rust_decimal::Decimal;
use uuid::Uuid;

use arrears_core::event::{Date, Timestamp};

/// Append ASCII bytes (digits, punctuation) to `out`.
#[inline]
fn push_ascii(out: &mut String, bytes: &[u8]) {
    debug_assert!(bytes.is_ascii());
    out.extend(bytes.iter().map(|&b| char::from(b)));
}

/// Digits of `v` into the end of `buf`, left-padded with zeros to at least `min` digits; the
/// index of the first digit. `buf` must hold the digits (39 for a `u128`).
#[inline]
fn digits(buf: &mut [u8; 40], mut v: u128, min: usize) -> usize {
    let mut i = buf.len();
    // Most values fit a u64, whose division is far cheaper than a u128's.
    while v > u64::MAX as u128 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let mut w = v as u64;
    while w != 0 {
        i -= 1;
        buf[i] = b'0' + (w % 10) as u8;
        w /= 10;
    }
    while buf.len() - i < min {
        i -= 1;
        buf[i] = b'0';
    }
    i
}

/// An unsigned integer, as serde_json writes it.
#[inline]
pub fn uint(out: &mut String, v: u64) {
    let mut buf = [0u8; 40];
    let i = digits(&mut buf, v as u128, 1);
    push_ascii(out, &buf[i..]);
}

/// A signed integer, as serde_json writes it.
#[inline]
pub fn int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    uint(out, v.unsigned_abs());
}

/// An amount as a JSON string with two decimals: the bytes of `amount_str::serialize`
/// (`rescale(2)`, then `Decimal`'s `Display`, which writes a `-` for any negative sign, zero
/// included).
pub fn amount(out: &mut String, d: Decimal) {
    let mut d = d;
    d.rescale(2);
    let scale = d.scale() as usize;
    out.push('"');
    if d.is_sign_negative() {
        out.push('-');
    }
    let mut buf = [0u8; 40];
    // At least one digit before the point: "0.05", and "0" for zero at scale 0.
    let i = digits(&mut buf, d.mantissa().unsigned_abs(), scale + 1);
    let point = buf.len() - scale;
    push_ascii(out, &buf[i..point]);
    if scale > 0 {
        out.push('.');
        push_ascii(out, &buf[point..]);
    }
    out.push('"');
}

/// Two digits, zero-padded.
#[inline]
fn two(out: &mut String, v: u32) {
    debug_assert!(v < 100);
    push_ascii(out, &[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// `YYYY-MM-DD` as chrono writes it (an explicit sign and at least four digits outside
/// 0000..=9999).
fn date_body(out: &mut String, d: Date) {
    let year = d.year();
    if (0..=9999).contains(&year) {
        two(out, year as u32 / 100);
        two(out, year as u32 % 100);
    } else {
        let _ = write!(out, "{year:+05}");
    }
    out.push('-');
    two(out, d.month());
    out.push('-');
    two(out, d.day());
}

/// A date as a JSON string.
pub fn date(out: &mut String, d: Date) {
    out.push('"');
    date_body(out, d);
    out.push('"');
}

/// A timestamp as a JSON string: the bytes of `fmt_timestamp` (RFC 3339, `AutoSi` fractional
/// seconds, `Z`).
pub fn timestamp(out: &mut String, t: &Timestamp) {
    let dt = t.naive_utc();
    out.push('"');
    date_body(out, dt.date());
    out.push('T');
    let (hour, min, mut sec) = (dt.hour(), dt.minute(), dt.second());
    let mut nano = dt.nanosecond();
    if nano >= 1_000_000_000 {
        // A leap second: chrono prints it as second 60.
        sec += 1;
        nano -= 1_000_000_000;
    }
    two(out, hour);
    out.push(':');
    two(out, min);
    out.push(':');
    two(out, sec);
    if nano != 0 {
        let (v, width) = if nano.is_multiple_of(1_000_000) {
            (nano / 1_000_000, 3)
        } else if nano.is_multiple_of(1_000) {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        let mut buf = [0u8; 40];
        let i = digits(&mut buf, v as u128, width);
        out.push('.');
        push_ascii(out, &buf[i..]);
    }
    out.push_str("Z\"");
}

/// A UUID as a JSON string, hyphenated lower-case.
pub fn uuid(out: &mut String, id: &Uuid) {
    let mut buf = Uuid::encode_buffer();
    out.push('"');
    out.push_str(id.hyphenated().encode_lower(&mut buf));
    out.push('"');
}

/// A JSON string, escaped exactly as serde_json does: `"` and `\` backslashed, `\b \t \n \f \r`
/// by name, other control characters below U+0020 as `\u00xx` (lower-case hex); everything else,
/// DEL and non-ASCII included, as is.
pub fn string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes end a run, so `start..i` is on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            push_ascii(
                out,
                &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ],
            );
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A boolean.
#[inline]
pub fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use std::str::FromStr;

    fn via<F: Fn(&mut String)>(f: F) -> String {
        let mut s = String::new();
        f(&mut s);
        s
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
            "-0",
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
            assert_eq!(via(|o| date(o, day)), serde_json::to_string(&day).unwrap());
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
