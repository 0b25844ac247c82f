//! The business check the store runs before an event is written. Defined here, beside the event
//! model, so the projection (which implements it with `decide`) and the store (which calls it)
//! need not depend on each other, and the projection builds without any storage engine.

use crate::event::Event;

/// The business check run before an event is written: the projection crate's `decide`, wired in
/// by the caller.
pub trait Gate {
    /// The typed reason a candidate is refused.
    type Rejection: std::error::Error + Send + Sync + 'static;
    /// `history` is the loan's stream so far (stored, plus accepted earlier in this batch) in
    /// `seq` order; `candidate` has its envelope filled in.
    ///
    /// The store may call `check` again for the same batch against a different history (it
    /// re-seals a batch that lost a race to another process), so a gate that caches state
    /// between calls must key it on the history it was given (e.g. the last event's hash), not
    /// only on the loan or the seq.
    fn check(&mut self, history: &[Event], candidate: &Event) -> Result<(), Self::Rejection>;

    /// A gate judging as this one does, for other loans on another thread: the store checks
    /// the loans of a batch in parallel, each loan's candidates in order on one fork.
    fn fork(&self) -> Self
    where
        Self: Sized;
}

/// A gate that accepts everything (for tests of the store itself).
pub struct OpenGate;

impl Gate for OpenGate {
    type Rejection = std::convert::Infallible;
    fn check(&mut self, _: &[Event], _: &Event) -> Result<(), Self::Rejection> {
        Ok(())
    }
    fn fork(&self) -> Self {
        OpenGate
    }
}
