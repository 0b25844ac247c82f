//! Collection stage, 五级分类 class and bucket (SPEC §4, §8).

use serde::{Deserialize, Serialize};

use arrears_core::Policy;

/// The collection stage (催收阶段).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Current,
    Negotiated,
    Settled,
    Grace,
    Reminder,
    Phone,
    WrittenNotice,
    Outsourced,
    Legal,
}

impl Stage {
    /// Escalation rank; `current`, `negotiated` and `settled` rank below `grace` (SPEC §8).
    pub fn rank(self) -> u8 {
        match self {
            Stage::Current | Stage::Negotiated | Stage::Settled => 0,
            Stage::Grace => 1,
            Stage::Reminder => 2,
            Stage::Phone => 3,
            Stage::WrittenNotice => 4,
            Stage::Outsourced => 5,
            Stage::Legal => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Negotiated => "negotiated",
            Stage::Settled => "settled",
            Stage::Grace => "grace",
            Stage::Reminder => "reminder",
            Stage::Phone => "phone",
            Stage::WrittenNotice => "written_notice",
            Stage::Outsourced => "outsourced",
            Stage::Legal => "legal",
        }
    }

    /// Every stage, in escalation order (for summaries). Snapshots store the index: append only.
    pub const ALL: [Stage; 9] = [
        Stage::Current,
        Stage::Negotiated,
        Stage::Settled,
        Stage::Grace,
        Stage::Reminder,
        Stage::Phone,
        Stage::WrittenNotice,
        Stage::Outsourced,
        Stage::Legal,
    ];
}

/// What the stage depends on.
pub struct StageInput {
    pub dpd: i64,
    pub grace_days: u32,
    pub settled: bool,
    /// At least one extension was agreed (on or before the day in question).
    pub extended: bool,
    /// The stage at the end of the day before the most recent extension.
    pub stage_before_last_extension: Option<Stage>,
    /// When the most recent promise to pay is broken on the day: the stage at the end of the
    /// day before it was made (docs/rules.md §R3).
    pub broken_promise_to_pay: Option<Stage>,
}

/// The stage by DPD alone, for DPD beyond grace. Thresholds are absolute (SPEC §8).
fn by_dpd(dpd: i64, policy: &Policy) -> Stage {
    let t = &policy.stages;
    if dpd >= t.legal_from_dpd as i64 {
        Stage::Legal
    } else if dpd >= t.outsourced_from_dpd as i64 {
        Stage::Outsourced
    } else if dpd >= t.written_notice_from_dpd as i64 {
        Stage::WrittenNotice
    } else if dpd >= t.phone_from_dpd as i64 {
        Stage::Phone
    } else {
        Stage::Reminder
    }
}

/// The stage and whether it is a broken promise.
pub fn stage(s: &StageInput, policy: &Policy) -> (Stage, bool) {
    if s.settled {
        return (Stage::Settled, false);
    }
    if s.dpd == 0 {
        return (
            if s.extended {
                Stage::Negotiated
            } else {
                Stage::Current
            },
            false,
        );
    }
    if s.dpd <= s.grace_days as i64 {
        return (Stage::Grace, false);
    }
    let st = by_dpd(s.dpd, policy);
    let later = |a: Stage, b: Stage| if b.rank() > a.rank() { b } else { a };
    let mut worst = st;
    if s.extended {
        // Broken promise: overdue beyond grace again after an extension.
        worst = later(
            worst,
            s.stage_before_last_extension.unwrap_or(Stage::Current),
        );
    }
    if let Some(before) = s.broken_promise_to_pay {
        // A broken promise to pay escalates exactly like a broken extension.
        worst = later(worst, before);
    }
    (worst, s.extended || s.broken_promise_to_pay.is_some())
}

/// 五级分类 by DPD; a loan with an extension is at least `special_mention` until settled.
pub fn class(dpd: i64, extended: bool, settled: bool) -> &'static str {
    let c = match dpd {
        i64::MIN..=0 => 0,
        1..=90 => 1,
        91..=270 => 2,
        271..=360 => 3,
        _ => 4,
    };
    let c = if extended && !settled { c.max(1) } else { c };
    CLASSES[c]
}

/// Every 五级分类 class, from the best (`normal`) to the worst (`loss`).
pub const CLASSES: [&str; 5] = [
    "normal",
    "special_mention",
    "substandard",
    "doubtful",
    "loss",
];

/// Every bucket, in DPD order (`M0` … `M7+`).
pub const BUCKETS: [&str; 8] = ["M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7+"];

/// `M0` for DPD 0, `M1` for 1–30, … `M6` for 151–180, `M7+` beyond.
pub fn bucket(dpd: i64) -> &'static str {
    BUCKETS[match dpd {
        i64::MIN..=0 => 0,
        1..=30 => 1,
        31..=60 => 2,
        61..=90 => 3,
        91..=120 => 4,
        121..=150 => 5,
        151..=180 => 6,
        _ => 7,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Stage::ALL` lists every stage in declaration order: `ALL[s as usize] == s`, which
    /// tables indexed by `Stage as usize` (the replay summary's counts) rely on.
    #[test]
    fn all_lists_the_stages_in_declaration_order() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{}", s.as_str());
        }
    }

    fn st(dpd: i64, grace: u32) -> &'static str {
        let p = Policy::default();
        stage(
            &StageInput {
                dpd,
                grace_days: grace,
                settled: false,
                extended: false,
                stage_before_last_extension: None,
                broken_promise_to_pay: None,
            },
            &p,
        )
        .0
        .as_str()
    }

    #[test]
    fn stage_boundaries() {
        let cases = [
            (0, "current"),
            (1, "reminder"),
            (3, "reminder"),
            (4, "phone"),
            (15, "phone"),
            (16, "written_notice"),
            (30, "written_notice"),
            (31, "outsourced"),
            (60, "outsourced"),
            (61, "legal"),
            (4000, "legal"),
        ];
        for (dpd, want) in cases {
            assert_eq!(st(dpd, 0), want, "dpd {dpd}");
        }
        assert_eq!(st(5, 5), "grace");
        assert_eq!(st(6, 5), "phone");
        assert_eq!(st(3, 5), "grace");
    }

    #[test]
    fn class_and_bucket_boundaries() {
        let c = |d| class(d, false, false);
        assert_eq!(
            [c(0), c(1), c(90), c(91), c(270), c(271), c(360), c(361)],
            [
                "normal",
                "special_mention",
                "special_mention",
                "substandard",
                "substandard",
                "doubtful",
                "doubtful",
                "loss"
            ]
        );
        assert_eq!(class(0, true, false), "special_mention");
        assert_eq!(class(0, true, true), "normal");
        let b: Vec<_> = [0, 1, 30, 31, 60, 61, 150, 151, 180, 181]
            .iter()
            .map(|&d| bucket(d))
            .collect();
        assert_eq!(
            b,
            ["M0", "M1", "M1", "M2", "M2", "M3", "M5", "M6", "M6", "M7+"]
        );
    }

    #[test]
    fn broken_promise_takes_the_later_stage() {
        let p = Policy::default();
        let s = StageInput {
            dpd: 2,
            grace_days: 0,
            settled: false,
            extended: true,
            stage_before_last_extension: Some(Stage::Outsourced),
            broken_promise_to_pay: None,
        };
        assert_eq!(stage(&s, &p), (Stage::Outsourced, true));
        let s = StageInput {
            dpd: 20,
            grace_days: 0,
            settled: false,
            extended: true,
            stage_before_last_extension: Some(Stage::Phone),
            broken_promise_to_pay: None,
        };
        assert_eq!(stage(&s, &p), (Stage::WrittenNotice, true));
        let s = StageInput {
            dpd: 0,
            grace_days: 0,
            settled: false,
            extended: true,
            stage_before_last_extension: Some(Stage::Legal),
            broken_promise_to_pay: None,
        };
        assert_eq!(stage(&s, &p), (Stage::Negotiated, false));
        // A broken promise to pay, without any extension.
        let s = StageInput {
            dpd: 20,
            grace_days: 0,
            settled: false,
            extended: false,
            stage_before_last_extension: None,
            broken_promise_to_pay: Some(Stage::Outsourced),
        };
        assert_eq!(stage(&s, &p), (Stage::Outsourced, true));
        let s = StageInput {
            dpd: 3,
            grace_days: 5,
            settled: false,
            extended: false,
            stage_before_last_extension: None,
            broken_promise_to_pay: Some(Stage::Outsourced),
        };
        assert_eq!(stage(&s, &p), (Stage::Grace, false));
    }
}
