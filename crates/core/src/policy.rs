//! The collection policy: stage thresholds, the extension limit and the APR cap (SPEC §4), the
//! business time zone (SPEC §10), and the lender's rules of docs/rules.md: contact rules, credit
//! report tolerances and the cost cap (sources in docs/regulation.md).
//!
//! The default is SPEC §4's table, named `default-v1`; a JSON file can replace it. The policy's
//! name is printed in every projection, so two outputs computed under different policies can
//! never be mistaken for each other. Every field added after the first version has a default, so
//! older policy files still load.

use chrono::NaiveTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Days-past-due thresholds: the first DPD of each stage. `reminder` starts at DPD 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageThresholds {
    pub phone_from_dpd: u32,
    pub written_notice_from_dpd: u32,
    pub outsourced_from_dpd: u32,
    pub legal_from_dpd: u32,
}

/// A collection policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Printed in every output (`"policy":"default-v1"`).
    pub name: String,
    /// The largest penalty APR (`daily_rate × penalty_multiplier × 365`), inclusive.
    #[serde(with = "rust_decimal::serde::str")]
    pub apr_cap: Decimal,
    /// Extensions allowed per loan; the next one is rejected.
    pub max_extensions: u32,
    pub stages: StageThresholds,
    /// The business time zone (IANA name, SPEC §10): wherever a business date is taken from the
    /// clock (`--as-of` left out, a sweep from cron) it is today's date here, and the contact
    /// rules' local hours are read here. Optional in a policy file: `Asia/Shanghai`.
    #[serde(default = "default_time_zone")]
    pub time_zone: chrono_tz::Tz,
    /// What collection may do, and when (docs/rules.md §R2).
    #[serde(default)]
    pub contact: ContactRules,
    /// Reporting tolerances of the credit-report history (docs/rules.md §R4).
    #[serde(default)]
    pub credit_report: CreditReport,
    /// The annualised total-cost cap (docs/rules.md §R5).
    #[serde(default)]
    pub cost_cap: CostCap,
}

/// A lender in mainland China closes its books on Beijing dates.
pub fn default_time_zone() -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}

/// A collection stage a rule may name as the first one in which an action is allowed. The stages
/// below `reminder` (current, negotiated, settled, grace) never allow escalated actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalation {
    Reminder,
    Phone,
    WrittenNotice,
    Outsourced,
    Legal,
}

impl Escalation {
    /// The wire name (also a stage name).
    pub fn as_str(self) -> &'static str {
        match self {
            Escalation::Reminder => "reminder",
            Escalation::Phone => "phone",
            Escalation::WrittenNotice => "written_notice",
            Escalation::Outsourced => "outsourced",
            Escalation::Legal => "legal",
        }
    }
}

/// Local clock hours `from` (inclusive) to `to` (exclusive), written `"HH:MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    #[serde(with = "hhmm")]
    pub from: NaiveTime,
    #[serde(with = "hhmm")]
    pub to: NaiveTime,
}

mod hhmm {
    use super::*;

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.len() == 5 && s.as_bytes()[2] == b':';
        ok.then(|| NaiveTime::parse_from_str(&s, "%H:%M").ok())
            .flatten()
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a time (HH:MM)")))
    }
}

/// The contact rules of docs/rules.md §R2; each default's source is in docs/regulation.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactRules {
    /// When calls, messages (sms, app, email) and visits are allowed, local time.
    pub hours: Hours,
    /// The most calls to the borrower on one local day (per loan).
    pub max_calls_per_day: u32,
    /// A third party (or emergency contact) may be contacted, to locate the borrower, only after
    /// this many failed calls to the borrower since the borrower was last reached.
    pub third_party_after_failed_calls: u32,
    /// The first stage in which a visit (上门) is allowed.
    pub visit_from: Escalation,
    /// The first stage in which the loan may be handed to an outside agency (委外).
    pub agency_handover_from: Escalation,
    /// The first stage in which a lawsuit may be filed (起诉).
    pub legal_filing_from: Escalation,
}

impl Default for ContactRules {
    fn default() -> Self {
        ContactRules {
            hours: Hours {
                from: NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
                to: NaiveTime::from_hms_opt(21, 0, 0).expect("valid"),
            },
            max_calls_per_day: 3,
            third_party_after_failed_calls: 3,
            visit_from: Escalation::Outsourced,
            agency_handover_from: Escalation::Outsourced,
            legal_filing_from: Escalation::Legal,
        }
    }
}

/// Reporting tolerances of the monthly credit-report history (docs/rules.md §R4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditReport {
    /// An installment is reported overdue only when more than this many days past its due date
    /// (and past the loan's own grace days).
    pub grace_days: u32,
    /// An overdue unpaid amount (principal + interest) at or below this is not reported.
    #[serde(with = "rust_decimal::serde::str")]
    pub tolerance: Decimal,
}

impl Default for CreditReport {
    fn default() -> Self {
        CreditReport {
            grace_days: 3,
            tolerance: Decimal::new(1000, 2),
        }
    }
}

/// The annualised total-cost cap (docs/rules.md §R5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostCap {
    /// The cap on (interest + penalty) × 365 / principal-days, inclusive.
    #[serde(with = "rust_decimal::serde::str")]
    pub annual_rate: Decimal,
    /// Stop penalty accrual on the day the cap is reached (docs/rules.md §R5).
    pub stop_penalty: bool,
}

impl Default for CostCap {
    fn default() -> Self {
        CostCap {
            annual_rate: Decimal::new(24, 2),
            stop_penalty: false,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            name: "default-v1".to_owned(),
            apr_cap: Decimal::new(36, 2),
            max_extensions: 3,
            stages: StageThresholds {
                phone_from_dpd: 4,
                written_notice_from_dpd: 16,
                outsourced_from_dpd: 31,
                legal_from_dpd: 61,
            },
            time_zone: default_time_zone(),
            contact: ContactRules::default(),
            credit_report: CreditReport::default(),
            cost_cap: CostCap::default(),
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("policy file: stage thresholds must increase: 1 < phone < written_notice < outsourced < legal")]
    Thresholds,
    #[error("policy file: apr_cap must not be negative")]
    NegativeCap,
    #[error("policy file: contact.hours.from must be before contact.hours.to")]
    Hours,
    #[error("policy file: {0} must not be negative")]
    Negative(&'static str),
}

impl Policy {
    /// Today's business date in the policy's time zone, at the instant `now`.
    pub fn business_date(&self, now: chrono::DateTime<chrono::Utc>) -> crate::Date {
        crate::Date::new(now.with_timezone(&self.time_zone).date_naive())
    }

    /// The policy as people read it: its name and time zone.
    pub fn describe(&self) -> String {
        format!("{}, business dates in {}", self.name, self.time_zone)
    }

    /// Parse and check a policy from JSON.
    pub fn from_json(s: &str) -> Result<Policy, PolicyError> {
        let p: Policy = serde_json::from_str(s)?;
        let t = &p.stages;
        if !(1 < t.phone_from_dpd
            && t.phone_from_dpd < t.written_notice_from_dpd
            && t.written_notice_from_dpd < t.outsourced_from_dpd
            && t.outsourced_from_dpd < t.legal_from_dpd)
        {
            return Err(PolicyError::Thresholds);
        }
        if p.apr_cap.is_sign_negative() {
            return Err(PolicyError::NegativeCap);
        }
        if p.contact.hours.from >= p.contact.hours.to {
            return Err(PolicyError::Hours);
        }
        if p.credit_report.tolerance.is_sign_negative() {
            return Err(PolicyError::Negative("credit_report.tolerance"));
        }
        if p.cost_cap.annual_rate.is_sign_negative() {
            return Err(PolicyError::Negative("cost_cap.annual_rate"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_json() {
        let p = Policy::default();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"name":"default-v1","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61},"time_zone":"Asia/Shanghai","contact":{"hours":{"from":"08:00","to":"21:00"},"max_calls_per_day":3,"third_party_after_failed_calls":3,"visit_from":"outsourced","agency_handover_from":"outsourced","legal_filing_from":"legal"},"credit_report":{"grace_days":3,"tolerance":"10.00"},"cost_cap":{"annual_rate":"0.24","stop_penalty":false}}"#
        );
        assert_eq!(Policy::from_json(&json).unwrap(), p);
    }

    #[test]
    fn the_business_date_is_the_date_in_the_policy_zone() {
        use chrono::TimeZone;
        let p = Policy::default();
        // 2024-03-01 20:30 UTC is already 2024-03-02 in Beijing (UTC+8).
        let t = chrono::Utc.with_ymd_and_hms(2024, 3, 1, 20, 30, 0).unwrap();
        assert_eq!(p.business_date(t).to_string(), "2024-03-02");
        let t = chrono::Utc
            .with_ymd_and_hms(2024, 3, 1, 15, 59, 59)
            .unwrap();
        assert_eq!(p.business_date(t).to_string(), "2024-03-01");
        // A file without a time zone gets the default; an unknown zone is refused.
        let old = r#"{"name":"x","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61}}"#;
        assert_eq!(
            Policy::from_json(old).unwrap().time_zone,
            chrono_tz::Asia::Shanghai
        );
        let bad = old.replace("}}", r#"},"time_zone":"Mars/Olympus"}"#);
        assert!(Policy::from_json(&bad).is_err());
        let ny = old.replace("}}", r#"},"time_zone":"America/New_York"}"#);
        let p = Policy::from_json(&ny).unwrap();
        assert_eq!(p.business_date(t).to_string(), "2024-03-01");
        assert_eq!(p.describe(), "x, business dates in America/New_York");
    }

    #[test]
    fn a_policy_file_of_the_first_version_still_loads_with_the_new_defaults() {
        let json = r#"{"name":"default-v1","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61}}"#;
        assert_eq!(Policy::from_json(json).unwrap(), Policy::default());
    }

    #[test]
    fn new_sections_are_partial_and_checked() {
        let base = r#""name":"x","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61}"#;
        let p = Policy::from_json(&format!(
            r#"{{{base},"time_zone":"Europe/London","contact":{{"max_calls_per_day":5}},"cost_cap":{{"stop_penalty":true}}}}"#
        ))
        .unwrap();
        assert_eq!(p.time_zone, chrono_tz::Europe::London);
        assert_eq!(p.contact.max_calls_per_day, 5);
        assert_eq!(p.contact.hours, ContactRules::default().hours);
        assert!(p.cost_cap.stop_penalty);
        assert_eq!(p.cost_cap.annual_rate, Decimal::new(24, 2));
        for (bad, want) in [
            (r#""time_zone":"Mars/Olympus""#, "Mars/Olympus"),
            (
                r#""contact":{"hours":{"from":"8:00","to":"21:00"}}"#,
                "HH:MM",
            ),
            (
                r#""contact":{"hours":{"from":"21:00","to":"08:00"}}"#,
                "before",
            ),
            (r#""contact":{"visit_from":"current"}"#, "unknown variant"),
            (r#""contact":{"calls":3}"#, "unknown field"),
            (r#""credit_report":{"tolerance":"-1"}"#, "negative"),
            (r#""cost_cap":{"annual_rate":"-0.1"}"#, "negative"),
        ] {
            let e = Policy::from_json(&format!("{{{base},{bad}}}")).unwrap_err();
            assert!(e.to_string().contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_non_increasing_thresholds() {
        let json = r#"{"name":"x","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":4,"outsourced_from_dpd":31,"legal_from_dpd":61}}"#;
        assert!(matches!(
            Policy::from_json(json),
            Err(PolicyError::Thresholds)
        ));
    }
}
