//! The `arrears` command line as a library: the [`ledger::Ledger`] that composes store, policy
//! and `decide`, the synthetic book generator, and output formatting. `main.rs` only parses
//! arguments and prints errors.

pub mod export;
pub mod generate;
pub mod ledger;
pub mod render;
pub mod rules;
