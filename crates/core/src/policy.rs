//! The collection policy: stage thresholds, the extension limit and the APR cap (SPEC §4).
//!
//! The default is SPEC §4's table, named `default-v1`; a JSON file can replace it. The policy's
//! name is printed in every projection, so two outputs computed under different policies can
//! never be mistaken for each other.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
    /// clock (`--as-of` left out, a sweep from cron) it is today's date here. Optional in a
    /// policy file (older files have none): `Asia/Shanghai`.
    #[serde(default = "default_time_zone")]
    pub time_zone: chrono_tz::Tz,
}

/// A lender in mainland China closes its books on Beijing dates.
pub fn default_time_zone() -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
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
}

impl Policy {
    /// Today's business date in the policy's time zone, at the instant `now`.
    pub fn business_date(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        now.with_timezone(&self.time_zone).date_naive()
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
            r#"{"name":"default-v1","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61},"time_zone":"Asia/Shanghai"}"#
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
    fn rejects_non_increasing_thresholds() {
        let json = r#"{"name":"x","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":4,"outsourced_from_dpd":31,"legal_from_dpd":61}}"#;
        assert!(matches!(
            Policy::from_json(json),
            Err(PolicyError::Thresholds)
        ));
    }
}
