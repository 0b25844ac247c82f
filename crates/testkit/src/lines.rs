//! Event lines (the JSON-lines input form) for tests: the SPEC §7 loan and payments.

use std::fmt;

/// The terms of SPEC §7's example: 0.05 %/day, penalty ×1.5, no grace, compound, a 30-day bullet.
pub const BULLET_TERMS: &str = r#""terms":{"daily_rate":"0.0005","penalty_multiplier":"1.5","grace_days":0,"compound":true,"repayment":{"kind":"bullet","days":30}}"#;

/// A `disbursed` line, SPEC §7's example unless changed: 1,000.00 on 2024-01-01 at 0.05 %/day,
/// penalty ×1.5, no grace, compound, a 30-day bullet. `Display` writes the line.
#[derive(Clone, Debug)]
pub struct Disbursed {
    loan: String,
    on: String,
    principal: String,
    daily_rate: String,
    penalty_multiplier: String,
    repayment: String,
    extra: String,
}

impl Disbursed {
    pub fn new(loan: impl fmt::Display) -> Disbursed {
        Disbursed {
            loan: loan.to_string(),
            on: "2024-01-01".into(),
            principal: "1000.00".into(),
            daily_rate: "0.0005".into(),
            penalty_multiplier: "1.5".into(),
            repayment: r#"{"kind":"bullet","days":30}"#.into(),
            extra: String::new(),
        }
    }

    /// The disbursement date (`on`).
    pub fn on(mut self, date: &str) -> Disbursed {
        self.on = date.into();
        self
    }

    pub fn principal(mut self, amount: &str) -> Disbursed {
        self.principal = amount.into();
        self
    }

    pub fn daily_rate(mut self, rate: &str) -> Disbursed {
        self.daily_rate = rate.into();
        self
    }

    pub fn penalty_multiplier(mut self, m: &str) -> Disbursed {
        self.penalty_multiplier = m.into();
        self
    }

    /// The `repayment` object, as JSON.
    pub fn repayment(mut self, json: &str) -> Disbursed {
        self.repayment = json.into();
        self
    }

    /// More fields, appended inside the object: e.g. `,"currency":"CNY"`.
    pub fn extra(mut self, fields: &str) -> Disbursed {
        self.extra.push_str(fields);
        self
    }
}

impl fmt::Display for Disbursed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Disbursed {
            loan,
            on,
            principal,
            daily_rate,
            penalty_multiplier,
            repayment,
            extra,
        } = self;
        write!(
            f,
            r#"{{"loan_id":"{loan}","type":"disbursed","on":"{on}","principal":"{principal}","terms":{{"daily_rate":"{daily_rate}","penalty_multiplier":"{penalty_multiplier}","grace_days":0,"compound":true,"repayment":{repayment}}}{extra}}}"#
        )
    }
}

/// SPEC §7's loan: 1,000.00 bullet over 30 days at 0.05 %/day, disbursed 2024-01-01.
pub fn disbursed(loan: impl fmt::Display) -> String {
    Disbursed::new(loan).to_string()
}

/// A payment line; `extra` is appended inside the object (e.g. `,"event_id":"…"`).
pub fn payment(loan: impl fmt::Display, on: &str, amount: &str, extra: &str) -> String {
    format!(r#"{{"loan_id":"{loan}","type":"payment","on":"{on}","amount":"{amount}"{extra}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_spec_example_and_builders_change_one_field() {
        let l = "0f000000-0000-4000-8000-000000000001";
        assert_eq!(
            disbursed(l),
            format!(
                r#"{{"loan_id":"{l}","type":"disbursed","on":"2024-01-01","principal":"1000.00",{BULLET_TERMS}}}"#
            )
        );
        let d = Disbursed::new(l)
            .principal("5.00")
            .daily_rate("0")
            .penalty_multiplier("1")
            .extra(r#","currency":"CNY""#)
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(v["principal"], "5.00");
        assert_eq!(v["terms"]["daily_rate"], "0");
        assert_eq!(v["terms"]["penalty_multiplier"], "1");
        assert_eq!(v["terms"]["repayment"]["days"], 30);
        assert_eq!(v["currency"], "CNY");
        let p: serde_json::Value =
            serde_json::from_str(&payment(l, "2024-02-05", "1.00", r#","seq":2"#)).unwrap();
        assert_eq!(
            (p["amount"].as_str(), p["seq"].as_u64()),
            (Some("1.00"), Some(2))
        );
    }
}
