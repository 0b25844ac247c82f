//! Lines into `arrears-core` events (feature `core`), the way `append` takes them.

use arrears_core::event::NewEvent;
use arrears_core::{parse_event, validate::validate, Policy};

/// A line parsed and validated under the default policy; panics naming the line otherwise.
pub fn event(line: &str) -> NewEvent {
    let (mut e, _) = parse_event(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    validate(&mut e, &Policy::default()).unwrap_or_else(|e| panic!("{e}: {line}"));
    e
}
