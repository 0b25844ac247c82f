//! arrears-projection: a pure function from a loan's events to what is owed on a day.
//!
//! Reads no clock and touches no storage: the as-of date and known-at time are arguments, the
//! events are a slice. The same events give the same [`Projection`], byte for byte.

use std::collections::HashMap;

use arrears_core::id::{LoanId, Seq};

use arrears_core::event::{Body, Date, Event, Timestamp};
use arrears_core::gate::Gate;
use arrears_core::Policy;

pub mod compliance;
pub mod cost;
pub mod credit;
pub mod decide;
pub mod explain;
pub mod fold;
pub mod json;
pub mod snapshot;
pub mod stage;
pub mod view;

pub use decide::Rejection;
pub use fold::Loan;
pub use snapshot::{Snapshot, SnapshotError};
pub use stage::Stage;
pub use view::{project, Projection};

/// The events that count for (`as_of`, `known_at`), in application order: business date, then
/// seq. `events` is one loan's stream in seq order.
pub fn counted(events: &[Event], as_of: Date, known_at: Option<Timestamp>) -> Vec<&Event> {
    // Each event's business date is read once. Streams are nearly always already in application
    // order (events are mostly recorded in business-date order), so the sort is skipped then.
    let mut v: Vec<&Event> = Vec::with_capacity(events.len());
    let mut in_order = true;
    let mut last = None;
    for e in events
        .iter()
        .take_while(|e| known_at.is_none_or(|t| e.recorded_at <= t))
    {
        let key = (e.business_date(), e.seq);
        if key.0 > as_of {
            continue;
        }
        in_order &= last.is_none_or(|l| l <= key);
        last = Some(key);
        v.push(e);
    }
    if !in_order {
        v.sort_by_cached_key(|e| (e.business_date(), e.seq));
    }
    v
}

/// Fold the counted events; `None` when no `disbursed` counts (the loan is unknown then).
pub fn fold_counted(events: &[&Event], policy: &Policy) -> Option<Loan> {
    let (first, rest) = events.split_first()?;
    let Body::Disbursed(d) = &first.body else {
        return None;
    };
    let mut loan = Loan::open_under(first, d, policy);
    for e in rest {
        loan.apply(e, policy);
    }
    Some(loan)
}

/// Fold a loan's events as of the end of `as_of`, as known at `known_at`.
pub fn fold(
    events: &[Event],
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: &Policy,
) -> Option<Loan> {
    fold_counted(&counted(events, as_of, known_at), policy)
}

/// The SPEC §7 projection of one loan, or `None` if no disbursement counts.
pub fn replay(
    events: &[Event],
    as_of: Date,
    known_at: Option<Timestamp>,
    policy: &Policy,
) -> Option<Projection> {
    let loan = fold(events, as_of, known_at, policy)?;
    Some(project(&loan, as_of, known_at, policy))
}

/// The store's gate: runs [`decide::decide`] on each candidate, keeping each loan's folded
/// state between events of one batch so a bulk import costs O(events), not O(events²).
pub struct DecideGate<'p> {
    policy: &'p Policy,
    /// Per loan: the hash of the last event folded (the history's own last hash, which names
    /// the whole history through the chain) and the fold.
    cache: HashMap<LoanId, (arrears_core::chain::Digest32, Loan)>,
}

impl<'p> DecideGate<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        DecideGate {
            policy,
            cache: HashMap::new(),
        }
    }

    fn check_event(&mut self, history: &[Event], ev: &Event) -> Result<(), Rejection> {
        if history.is_empty() {
            decide::decide_first(ev)?;
            if let Body::Disbursed(d) = &ev.body {
                self.cache
                    .insert(ev.loan_id, (ev.hash, Loan::open_under(ev, d, self.policy)));
            }
            return Ok(());
        }
        if !matches!(history[0].body, Body::Disbursed(_)) {
            return Err(Rejection::NotDisbursed);
        }
        let known_extensions = history
            .iter()
            .filter(|e| matches!(e.body, Body::NegotiatedExtension(_)))
            .count();
        let key = (ev.business_date(), ev.seq);
        let head = history.last().map_or(Seq(0), |e| e.seq);
        // Fast path: the cached fold covers the whole history and the candidate sorts last.
        // The cache is used only for exactly this history: a batch sealed again after a race
        // brings a history with the same head seq but other events.
        if let Some((hash, loan)) = self.cache.get_mut(&ev.loan_id) {
            if loan.version == head
                && history.last().map(|e| e.hash) == Some(*hash)
                && key > loan.cursor
            {
                decide::decide(loan, ev, known_extensions, self.policy)?;
                loan.apply(ev, self.policy);
                *hash = ev.hash;
                return Ok(());
            }
        }
        // Back-dated candidate: fold up to its position, decide, then fold the rest to check it
        // does not duplicate a later-dated miss and to refresh the cache.
        let mut all: Vec<&Event> = history.iter().collect();
        all.sort_by_key(|e| (e.business_date(), e.seq));
        // An event dated before the disbursement is decided against the disbursement alone, so
        // it gets the rule it breaks (e.g. "payment before the disbursement").
        let split = all
            .partition_point(|e| (e.business_date(), e.seq) < key)
            .max(1);
        let mut loan = fold_counted(&all[..split], self.policy).ok_or(Rejection::NotDisbursed)?;
        decide::decide(&loan, ev, known_extensions, self.policy)?;
        let misses_before = loan.misses.len();
        loan.apply(ev, self.policy);
        let mine = loan.misses.get(misses_before).cloned();
        for e in &all[split..] {
            loan.apply(e, self.policy);
        }
        if let Some(m) = mine.filter(|_| matches!(ev.body, Body::Missed(_))) {
            let later = &loan.misses[misses_before + 1..];
            if let Some(due_on) = m.due_on {
                if later
                    .iter()
                    .any(|r| r.installment == m.installment && r.due_on == Some(due_on))
                {
                    return Err(Rejection::DuplicateMiss {
                        n: m.installment,
                        due_on,
                    });
                }
            }
        }
        self.cache.insert(ev.loan_id, (ev.hash, loan));
        Ok(())
    }
}

impl Gate for DecideGate<'_> {
    type Rejection = Rejection;
    fn check(&mut self, history: &[Event], candidate: &Event) -> Result<(), Rejection> {
        self.check_event(history, candidate).inspect_err(|_| {
            // A rejected candidate must not linger in the cache.
            self.cache.remove(&candidate.loan_id);
        })
    }
    fn fork(&self) -> Self {
        DecideGate::new(self.policy)
    }
}
