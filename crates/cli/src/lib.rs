//! The `arrears` command line as a library: the [`ledger::Ledger`] that composes store, policy
//! and `decide`, the synthetic book generator, the portfolio summaries (groups by stage, bucket
//! and class; roll rates; the `loans` filter) and output formatting. `main.rs` only parses
//! arguments and prints errors.

pub mod copy;
pub mod export;
pub mod generate;
pub mod ledger;
#[cfg(feature = "parquet")]
pub mod parquet_export;
#[cfg(not(feature = "parquet"))]
#[path = "parquet_off.rs"]
pub mod parquet_export;
pub mod portfolio;
pub mod project;
pub mod reference;
pub mod render;
pub mod report;
pub mod rules;
pub mod serve;
