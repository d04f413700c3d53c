//! The integration tests: one test crate (one link of the binary's test
//! harness instead of one per file), one module per area, shared helpers in
//! [`common`]. See `tests/README.md` for how to run them and review snapshots.

// Tests fail by panicking: unwrap is how a test says "this must work".
#![allow(clippy::unwrap_used)]
// A test may say on stderr what it skipped or measured.
#![allow(clippy::print_stderr)]

mod common;

mod arithmetic;
mod cli;
mod cmd_settings;
mod credit_cases;
mod focus;
mod history;
mod hostile_inputs;
mod ledger_roundtrip;
mod month_close;
mod months;
#[cfg(feature = "parquet")]
mod parquet;
mod partner_case;
mod pdf;
mod pdf_parity;
mod properties;
mod publish_faults;
mod reversal;
mod sample_data;
mod snapshots;
mod terminal_lines;
mod tieout;
mod tieout_history;
mod usage;
