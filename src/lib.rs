//! porledger: Partner-of-Record incentive accruals from Partner Center billing
//! and Microsoft 365 usage.
//!
//! One path for every record to be paid, a billing line or a usage observation:
//!
//! ```text
//!  billing / usage files ──ingest──▶ typed records ──attribute──▶ credits ──accrue──▶ accruals
//!  (parallel chunks, header        (rejects with     (designations,      (config: rates,
//!   aliases, bounded reads)         file:line:col)    one share split)    windows, tiers, units)
//!                                                                               │
//!   files in --out ◀──publish── render ◀── statements ◀──(round once)── fold ◀──┘
//!   (atomic, only its own)     (CSV, PDF,   (per partner,              (exact, order-free,
//!                               Parquet)     per customer)              sharded)
//! ```
//!
//! The layers, top to bottom (a module uses modules below it; the core also
//! takes ingest's typed records, `BillingLine`, `Designation`, `UsageObs`, and
//! its ID normalisation, as its input types):
//! - **commands**: [`cli`] (flags) -> [`settings`] (validated once) -> [`cmd`]
//!   (one module per subcommand, thin glue) and [`console`] (every line printed
//!   to the terminal). `main.rs` picks every exit code.
//! - **I/O at the edges**: [`ingest`] reads every input (billing, designations,
//!   rules, usage, FX); [`render`] writes every output (CSV, PDF, Parquet, JSON)
//!   and [`render::publish`] moves a finished run into place; [`pipeline`] is
//!   the engine that streams chunks from ingest through the stages on worker
//!   threads and hands rows to a sink, in input order; [`spill`] sorts the
//!   groups into run files once they pass a budget, and merges them back one
//!   partner at a time.
//! - **the pure core**: [`config`] (validated rules, program kinds),
//!   [`attribute`] (who gets credit), [`accrue`] (one accrual type, one reason
//!   enum), [`attain`] (usage attainment, tiers), [`fold`] (exact sums per
//!   group), [`statements`] (the statement model, rounded once), [`explain`],
//!   [`quality`] (designation checks), [`model`] (shared attainment types),
//!   [`tieout`] (a finished run against Microsoft's earnings export).
//! - **foundations**: [`money`] (the one rounding function), [`dates`] (one
//!   `Month`, one `Period`), [`ledger`] (the row files' columns, writers and
//!   reader), [`csv_text`], [`text`], [`error`], [`util`].
//!
//! Only the command layer, [`ingest`], [`render`] and [`spill`] (its run
//! files, in the run's staging directory) touch the file system
//! (the engine calls ingest's chunk reader; [`cmd::sample`], the generator of
//! realistic inputs, writes the files it generates); no stage reads the clock; there is no global mutable state.
//! Money is [`rust_decimal::Decimal`], rounded only by [`money::round_money`].
//! The reference for users is `docs/`; the design notes are `docs/design.md`.

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
pub mod history;
pub mod ingest;
pub mod ledger;
pub mod model;
pub mod money;
pub mod pipeline;
pub mod quality;
pub mod render;
pub mod settings;
pub mod spill;
pub mod statements;
pub mod text;
pub mod tieout;
pub mod util;
