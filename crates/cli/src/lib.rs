//! The `arrears` application as a library: the [`ledger::Ledger`] that composes store, policy
//! and `decide`; the use cases over it in [`app`] (demo, replay to a writer, the `loans` filter,
//! portfolio and roll rates, the rules' reports), which the command line and the HTTP server
//! ([`serve`]) both call; the synthetic book generator, the portfolio summaries, the reports and
//! output formatting.
//!
//! The binary is `main.rs` (parse, dispatch, print the error, exit with its code), `args.rs`
//! (the clap definitions, typed values) and `cmd/` (one module per command: arguments in,
//! application calls, text out).

pub use ledger::exit;

pub mod app;
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
