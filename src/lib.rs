//! porledger: Partner-of-Record incentive accruals from Partner Center billing.
//!
//! ```text
//!  billing CSVs ──ingest──▶ typed lines ──attribute──▶ credits ──accrue──▶ accruals
//!  (parallel chunks,        (rejects with     (designations,     (rules: rate,
//!   header aliases)          file:line:col)    reseller, Tier 1)  window, dating)
//!                                                                      │
//!        CSV files ◀──render── statements ◀──(round once)── fold ◀─────┘
//!        manifest,              (per partner,                (mergeable, exact
//!        atomic publish          per customer)                decimal sums)
//! ```
//!
//! Only [`ingest`] and [`render`] touch the file system; every other stage takes
//! and returns typed values. No stage reads the clock. Money is
//! [`rust_decimal::Decimal`], rounded only by [`money::round_money`].

pub mod accrue;
pub mod attain;
pub mod attribute;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod console;
pub mod csv_text;
pub mod dates;
pub mod error;
pub mod explain;
pub mod fold;
pub mod ingest;
pub mod ledger;
pub mod model;
pub mod money;
pub mod pipeline;
pub mod quality;
pub mod render;
pub mod rules;
pub mod sample;
pub mod settings;
pub mod statements;
pub mod text;
pub mod usage_rules;
pub mod util;
