//! arrears-core: loan events (SPEC §1–§2), their stateless validation, schedules, the hash
//! chain and the compact binary codec. No storage: that is `arrears-store`.
//!
//! This crate knows nothing of balances or penalties: business rules that need a loan's state
//! live in `arrears-projection`.

pub mod chain;
pub mod codec;
pub mod date;
pub mod event;
pub mod gate;
pub mod id;
pub mod money;
pub mod parse;
pub mod policy;
pub mod schedule;
pub mod validate;

pub use event::{Body, Date, Event, NewEvent, Timestamp};
pub use parse::{parse_event, InputError, Invalid};
pub use policy::Policy;
