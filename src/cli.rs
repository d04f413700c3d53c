//! Command-line flags (clap derive). Raw flags are turned into settings by the
//! commands through [`crate::settings`]; nothing here does work.
//!
//! The doc comments below are the `--help` text, where `<VALUE>` placeholders
//! are literal, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dates::Period;

/// porledger: Partner-of-Record incentive accruals and statements from
/// Microsoft Partner Center billing exports.
///
/// Each month: `porledger run` reads the billing exports, joins every charge with
/// who gets credit for the customer (POR/DPOR, CPOR, PAL from your designations
/// file; the reseller and Tier 1 partner from the billing line), applies the
/// incentive rules and writes per-partner statements, customer transparency
/// statements, a ledger with provenance for every amount, and the rows that did
/// not earn (with the reason) or could not be read (with file, line and column).
#[derive(Parser, Debug)]
#[command(
    name = "porledger",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Start with the committed sample:\n  \
porledger run --period 2025-11..2026-10 --billing sample-data/billing \\\n    \
--designations sample-data/designations.csv --rules sample-data/rules.toml --out out\n\n\
Exit codes: 0 done, no row rejected; 1 done, some rows rejected (see rejects.csv);\n\
2 fatal (bad arguments or rules, unreadable file, too many rejects): nothing published.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compute accruals for a period and publish statements into --out.
    ///
    /// Outputs are written to a temporary directory beside --out and moved into
    /// place only when complete: a failed run never leaves half a set of
    /// statements and never destroys the previous good output.
    Run(RunArgs),
    /// Check the inputs and print a data-quality report; writes nothing.
    ///
    /// Exit code 0 when every row is usable, 1 when some rows would be rejected
    /// or the designations have problems, 2 when an input cannot be read at all.
    Validate(ValidateArgs),
    /// Show how each amount of a finished run came about.
    ///
    /// Prints every ledger line of the partner (optionally one customer or
    /// program) with its source file and line, designation row, rule, basis,
    /// rate, share and proration days, then the sums and the rounding step that
    /// give each statement line, so one statement line can be checked by hand.
    Explain(ExplainArgs),
    /// Re-render the PDF statements of a finished run from its statements.json.
    ///
    /// Nothing is recomputed: the amounts are those of the run. Use it to
    /// change the locale or template. The output directory is updated
    /// atomically and its manifest.json lists the new PDFs. A run that
    /// `porledger close` issued (closed.json) is refused: render a copy.
    Render(RenderArgs),
    /// Record a published run as the issued statements of its period.
    ///
    /// Reads the run in --out (manifest.json, statements.json, ledger.csv,
    /// attainment.csv, each checked against its SHA-256 in the manifest) and
    /// stores, in one transaction, the statements, the accruals at ledger
    /// grain, the input files' SHA-256s and the usage of the period. The
    /// history file is created on first use.
    ///
    /// Issued is issued: closing a period that is already closed is refused
    /// (exit 2), unless the run in --out is a restatement (the period run again
    /// with --history, which publishes adjustment statements): that run is
    /// recorded as the next version. A period that shares a month with a
    /// closed period of another label (2026-09..2026-10 once 2026-10 is
    /// closed) is refused: correct the closed period under its own label. A
    /// close that fails or is killed leaves the history as it was. A run is
    /// closed only into the history it read: once an earlier period is
    /// closed, a run made without --history (or before that close) is
    /// refused; run it again with --history. A recorded run's directory gets
    /// closed.json: run and render then refuse to replace its issued
    /// statements.
    ///
    /// The monthly routine:
    ///   porledger run --period 2026-10 ... --history history.db --out out/2026-10
    ///   (check the statements)
    ///   porledger close --out out/2026-10 --history history.db
    Close(CloseArgs),
    /// Show what the history holds: closed periods, versions, totals.
    ///
    /// One line per issued version (period, version, what it restates,
    /// accruals, partners), then the issued totals per partner and currency;
    /// with --partner, that partner's statement lines per customer, program
    /// and currency. Reads the history only.
    History(HistoryArgs),
    /// Write a realistic, deterministic input set (billing, designations, rules).
    ///
    /// Same --rows and --seed give the same bytes. Billing files use the real
    /// Partner Center header layouts with a mix of header spellings and quoting,
    /// and are split into several files for large --rows.
    Sample(SampleArgs),
    /// Tie a finished run out against Microsoft's earnings export: was every
    /// partner paid what it earned?
    ///
    /// Reads the run's ledger.csv and not-eligible.csv and Microsoft's earnings
    /// export(s) (Partner Center: Earnings > Reports, Default, Summarized or
    /// Growth report, .csv or .tsv), sums both sides per partner, program,
    /// customer, subscription, month of the transaction and currency, and
    /// gives every such grain a class: matched, underpaid, overpaid,
    /// rate-differs, expected-not-paid (overdue or not-yet-due),
    /// paid-not-expected (with porledger's closest reason) or adjustment
    /// (Microsoft's corrections, listed per month). Earnings map to porledger
    /// programs through the rules' [[program.earnings]] tables
    /// (docs/rules.md); an earning no table maps is reported, never dropped.
    ///
    /// Writes tieout.csv, tieout.json, rejects.csv and partners/<id>/tieout.csv
    /// and .pdf into --tieout-out, atomically, like a run.
    #[command(after_help = "Example, on the committed sample:\n  \
porledger run --period 2025-11..2026-10 --billing sample-data/billing \\\n    \
--designations sample-data/designations.csv --rules sample-data/rules.toml --out out\n  \
porledger tieout --out out --earnings sample-data/earnings --as-of 2026-11-20\n\n\
An export that also covers closed months: add --history FILE (what was issued for\n\
them is expected too).\n\n\
Exit codes: 0 everything ties out within --tolerance; 1 differences found (or\n\
unreadable earnings rows), published; 2 fatal: nothing published.\n\
Details: docs/tieout.md")]
    Tieout(TieoutArgs),
}

/// Inputs shared by `run` and `validate`.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Billing exports: files, or directories (every *.csv, *.tsv and *.parquet
    /// inside). Repeatable.
    ///
    /// Partner Center new-commerce invoice reconciliation, legacy license-based
    /// or daily rated usage, or FOCUS cost and usage (x_CustomerId, BilledCost),
    /// recognised from the header. *.parquet files need the `parquet` feature.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub billing: Vec<PathBuf>,
    /// Designations CSV: customer_id,partner_id,partner_name,association,
    /// workload,subscription_id,share,valid_from,valid_to.
    #[arg(long, value_name = "FILE")]
    pub designations: PathBuf,
    /// Incentive rules (TOML): programs, rates, windows, exclusions, rounding.
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    /// Worker threads [default: number of CPUs]. Output is identical for any value.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Bytes per chunk of billing input handed to a worker.
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024, hide = true, allow_negative_numbers = true)]
    pub chunk_bytes: usize,
    /// Usage files: Partner Center CPOR / Microsoft 365 usage reports, or Graph
    /// getOffice365ServicesUserCounts exports (one per tenant). Files or
    /// directories (every *.csv and *.tsv inside). Repeatable.
    #[arg(long, num_args = 1.., value_name = "FILE|DIR")]
    pub usage: Vec<PathBuf>,
    /// CSV `file,customer_id` naming the tenant of each Graph export (otherwise
    /// the file must be named <tenant-guid>.csv).
    #[arg(long, value_name = "FILE")]
    pub usage_tenant_map: Option<PathBuf>,
    /// Accept billing or usage files with identical content (by default an
    /// error: the same export under two names would be counted twice).
    #[arg(long)]
    pub allow_duplicate_inputs: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The statement period: a month (2026-10) or an inclusive range of months
    /// (2025-11..2026-10). Statements are dated on its last day.
    #[arg(long, value_name = "YYYY-MM[..YYYY-MM]")]
    pub period: Period,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Output directory; replaced atomically when the run succeeds.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Statement groups held in memory before they are sorted into a file in
    /// the output's staging directory, to be merged back at the end (and
    /// removed). A group is one partner, customer, program, accrual month,
    /// currency, association, subscription, rate and share: about 140 bytes
    /// in memory, 70 on disk. With the default, a run of 5M generated rows
    /// peaked at 0.6 GB and one of 20M at 0.7 GB; the output is the same for
    /// any value.
    #[arg(
        long,
        value_name = "GROUPS",
        default_value_t = 2_500_000,
        allow_negative_numbers = true
    )]
    pub spill_after: usize,
    /// Statement groups built and written as one batch of partners (at least
    /// one partner per thread). For tests: the output is the same for any value.
    #[arg(long, value_name = "GROUPS", default_value_t = crate::statements::BATCH_GROUPS, hide = true, allow_negative_numbers = true)]
    pub batch_groups: usize,
    /// Fail (exit 2, publish nothing) when more rows than this are rejected.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        allow_negative_numbers = true
    )]
    pub max_rejects: u64,
    /// No progress bar and no run summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// FX table (CSV: date,from,to,rate). Adds to each statement a total
    /// converted into the reporting currency, with the rate and its date; the
    /// rate used is the latest published on or before the statement date.
    #[arg(long, value_name = "FILE")]
    pub fx: Option<PathBuf>,
    /// Reporting currency for --fx [default: the rules' reporting_currency].
    #[arg(long, value_name = "CUR", requires = "fx")]
    pub reporting_currency: Option<String>,
    /// Do not render PDF statements (CSV and statements.json only).
    #[arg(long)]
    pub no_pdf: bool,
    #[command(flatten)]
    pub pdf: PdfArgs,
    /// Format of the ledger: csv (ledger.csv) or parquet (ledger.parquet with
    /// typed columns, for BI tools, DuckDB, Spark, DataFusion; needs the
    /// `parquet` feature).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LedgerFormat::Csv)]
    pub ledger_format: LedgerFormat,
    /// The history database of closed periods (see `porledger close`); read
    /// only, never written by `run`. A --period that shares a month with a
    /// closed period of another label is refused (it could never be
    /// closed). When --period is already closed, the
    /// run is a restatement: it publishes adjustment statements
    /// (partners/<id>/adjustment.csv) with what was issued, what it is now,
    /// the difference and why, and `close` records it as the next version.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

/// How PDF statements are rendered (shared by `run` and `render`).
#[derive(Args, Debug, Clone)]
pub struct PdfArgs {
    /// Language and formats of the PDF statements: a file locales/<LOCALE>.toml
    /// of the template (built in: de, en).
    #[arg(long, value_name = "LOCALE", default_value = "en")]
    pub locale: String,
    /// Template directory (template.toml, locales/, fonts/) [default: the
    /// built-in template, a copy of the repository's templates/].
    #[arg(long, value_name = "DIR")]
    pub template: Option<PathBuf>,
    /// Also write customers/<customer_id>.pdf: one transparency statement per
    /// customer listing every partner that earned on it.
    #[arg(long)]
    pub transparency_by_customer: bool,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Output directory of a finished `porledger run` (with statements.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub pdf: PdfArgs,
    /// Worker threads [default: number of CPUs]. Output is identical for any value.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The file format of the ledger output.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LedgerFormat {
    /// ledger.csv
    #[default]
    Csv,
    /// ledger.parquet (cargo feature `parquet`)
    Parquet,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Period to check charge dates against (optional).
    #[arg(long, value_name = "YYYY-MM[..YYYY-MM]")]
    pub period: Option<Period>,
    /// How many problems to list in the report (all are counted).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        allow_negative_numbers = true
    )]
    pub show: usize,
    /// The history of closed periods (read only): also count the credit
    /// lines that refer to a charge of a closed period and those that do
    /// not, as `run --history` would treat them.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CloseArgs {
    /// Output directory of a finished `porledger run` (the run to issue).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The history database (SQLite); created on first use. A file that is
    /// not a porledger history is refused and left unchanged.
    #[arg(long, value_name = "FILE")]
    pub history: PathBuf,
    /// Seconds to wait for another process that is writing the history
    /// before failing.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        allow_negative_numbers = true
    )]
    pub wait: u64,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The history database (SQLite), as given to `close`.
    #[arg(long, value_name = "FILE")]
    pub history: PathBuf,
    /// Only this period (as it was run: 2026-10 or 2025-11..2026-10; read
    /// like `run --period`, so 2026-10..2026-10 is 2026-10).
    #[arg(long, value_name = "YYYY-MM[..YYYY-MM]")]
    pub period: Option<Period>,
    /// Only this partner; also lists its issued statement lines.
    #[arg(long, value_name = "ID")]
    pub partner: Option<String>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Directory to write billing/, designations.csv, rules.toml and a
    /// manifest.json into. Published atomically like a run's output: an
    /// existing DIR is replaced only when empty or an earlier sample, never
    /// when it holds files of yours.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of billing lines (at most 1,000,000,000: ~680 GB).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    pub rows: u64,
    /// Seed of the generator; same seed, same bytes.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub seed: u64,
    /// Number of billing files [default: one per 500,000 rows, at least 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub files: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TieoutArgs {
    /// Output directory of a finished `porledger run` (ledger.csv, summary.json,
    /// manifest.json, not-eligible.csv).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Earnings exports: files, or directories (every *.csv and *.tsv inside).
    /// Repeatable. Columns are read by name (camelCase, any order, extra
    /// columns ignored); rows repeating an earningId are counted once.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub earnings: Vec<PathBuf>,
    /// Accept earnings files with identical content (by default an error: the
    /// same export under two names, without earningIds to tell its rows
    /// apart, would be counted twice).
    #[arg(long)]
    pub allow_duplicate_inputs: bool,
    /// Largest difference, in the currency, that still ties out (inclusive).
    #[arg(
        long,
        value_name = "AMOUNT",
        default_value = "0.01",
        allow_negative_numbers = true
    )]
    pub tolerance: String,
    /// Where the tie-out is published [default: <RUN_DIR>-tieout beside the run].
    /// Replaced atomically, and only when it holds an earlier tie-out: never a
    /// run's output, never the run directory or a directory inside it.
    #[arg(long, value_name = "DIR")]
    pub tieout_out: Option<PathBuf>,
    /// The history of closed periods (`porledger close`), read only: what was
    /// issued for every other closed period (its latest version) is expected
    /// too, for the months the earnings cover. The run's own period comes
    /// from the run.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Rules file with the [[program.earnings]] tables [default: the rules file
    /// the run's manifest names, which must be unchanged since the run].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// The day of the tie-out: an accrual whose payment date (month of the
    /// transaction + the program's earnings_due_months, on earnings_due_day) is
    /// after it is `not-yet-due` rather than overdue [default: today, UTC].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<chrono::NaiveDate>,
    /// Do not render the partners' tieout.pdf.
    #[arg(long)]
    pub no_pdf: bool,
    /// Language of number and date formats in the PDFs (see `run --locale`).
    #[arg(long, value_name = "LOCALE", default_value = "en")]
    pub locale: String,
    /// Template directory for the PDFs (see `run --template`).
    #[arg(long, value_name = "DIR")]
    pub template: Option<PathBuf>,
    /// Worker threads [default: number of CPUs]. With 1, everything runs in
    /// turn on one thread; with more, the earnings are read on one thread and
    /// added on another while the ledger is read. Output is identical for any
    /// value.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Output directory of a finished `porledger run`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Partner ID to explain.
    #[arg(long, value_name = "ID", required_unless_present = "tieout_row")]
    pub partner: Option<String>,
    /// Only this customer (tenant ID).
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Only this program.
    #[arg(long, value_name = "ID")]
    pub program: Option<String>,
    /// Explain one row of a tie-out (`porledger tieout`) of this run instead:
    /// its class and explanation, every ledger line behind it with its billing
    /// source, and the earnings rows behind it.
    #[arg(long, value_name = "ROW", conflicts_with_all = ["partner", "customer", "program"])]
    pub tieout_row: Option<String>,
    /// The tie-out directory of --tieout-row [default: <DIR>-tieout].
    #[arg(long, value_name = "DIR", requires = "tieout_row")]
    pub tieout_out: Option<PathBuf>,
    /// The history of closed periods (`porledger close`): also show, per
    /// customer, program and accrual month, what was issued for this period
    /// against this run, and the issued computation of every line that
    /// differs (the version this run restates, else the latest). Read only.
    /// With --tieout-row: the history the tie-out read [default: the one
    /// its tieout.json names].
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A negative number given to a numeric option is its value (for
    /// porledger's own check to refuse), not taken for a flag: `--tolerance
    /// -0.01` must say what `--tolerance=-0.01` says.
    #[test]
    fn negative_numbers_are_values_of_numeric_options() {
        let tieout = ["porledger", "tieout", "--out", "o", "--earnings", "e.csv"];
        let cli = Cli::try_parse_from(tieout.iter().chain(&["--tolerance", "-0.01"])).unwrap();
        match cli.command {
            Command::Tieout(a) => {
                assert_eq!(a.tolerance, "-0.01");
                let e = crate::cmd::tieout::parse_tolerance(&a.tolerance).unwrap_err();
                assert!(e.to_string().contains("--tolerance -0.01"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // An unsigned option names the value it cannot read.
        let e = Cli::try_parse_from(tieout.iter().chain(&["--threads", "-1"])).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("invalid value '-1' for '--threads"), "{e}");
        // A flag after an option is still a flag.
        let e =
            Cli::try_parse_from(tieout.iter().chain(&["--tolerance", "--threads"])).unwrap_err();
        assert!(!e.to_string().contains("tolerance -"), "{e}");
    }
}
