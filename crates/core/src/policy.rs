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
            r#"{"name":"default-v1","apr_cap":"0.36","max_extensions":3,"stages":{"phone_from_dpd":4,"written_notice_from_dpd":16,"outsourced_from_dpd":31,"legal_from_dpd":61}}"#
        );
        assert_eq!(Policy::from_json(&json).unwrap(), p);
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
