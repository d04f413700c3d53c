//! `porledger sample`: a realistic, deterministic input set of any size.
//!
//! `porledger sample --out DIR [--rows N] [--seed S] [--files K]` writes
//!
//! - `DIR/billing/invoice-reconciliation-0001.csv ...`: Partner Center new-commerce
//!   invoice reconciliation exports with all 46 documented columns, in the
//!   documented order, with the header spellings, BOMs, quoting, line endings and
//!   date formats that real exports have used (one style per file, see `billing::FileStyle`);
//! - `DIR/designations.csv`: who holds DPOR, POR, PAL or CPOR for each customer;
//! - `DIR/rules.toml`: the programs `por-core`, `pal` and `reseller`.
//!
//! # Determinism
//! Same `--rows`, `--seed` and `--files` give byte-identical files. Every value
//! comes from a [`SplitMix64`] stream keyed by the seed and by *what* is being
//! generated (a partner, a customer, a subscription slot, a billing row), so a
//! row does not depend on the rows before it, on the thread that writes it or
//! on the clock (this module never reads it: the billing timeline always ends
//! in [`LAST_MONTH`]).
//!
//! # The model
//! - `customers = clamp(N / 250, 5, 20,000)`, `partners = clamp(customers / 8, 4, 50)`;
//! - about five subscription *slots* per customer (more when N exceeds
//!   `5 x customers x 120`); a slot holds one subscription, or two when the
//!   first is cancelled (`cancelImmediate`) and replaced by a new one;
//! - every slot is billed once a month: row `r` is slot `r % slots` in month
//!   `r / slots` of a timeline of `ceil(N / slots)` months ending in October 2026;
//! - the charge type follows the subscription's life (`new` in its first month,
//!   `renew` on each anniversary, otherwise mostly `cycleCharge`, sometimes
//!   `addQuantity`, `removeQuantity` or `customerCredit`; the last three and
//!   `cancelImmediate` are negative or positive as in real exports);
//! - amounts are integer cents: `Subtotal = UnitPrice x Quantity` exactly,
//!   `TaxTotal` is the customer country's VAT rounded half-up to the cent,
//!   `Total = Subtotal + TaxTotal`.
//!
//! # Files
//! `rng` (the PRNG and random IDs), `catalogue` (products, names, countries),
//! `world` (partners, customers, subscription slots), `charges` (what a slot
//! is charged in a month), `billing` (file styles and billing rows), `rowbuf`
//! (the CSV record writer), `designations` and `rules`. Dates are
//! [`chrono::NaiveDate`] and months [`crate::dates::Month`], as everywhere in
//! porledger.

mod billing;
mod calendar;
mod catalogue;
mod charges;
mod designations;
mod rng;
mod rowbuf;
mod rules;
mod style;
mod world;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dates::Month;
use crate::error::Fatal;
use crate::render::publish::{self, Kind, Staging};

pub use rng::{mix, SplitMix64};
pub use rules::RULES_TOML;
use world::World;

/// The last billed month: October 2026.
pub const LAST_MONTH: Month = Month::from_ym(2026, 10);
/// The timeline never reaches back further than this many months.
const MAX_MONTHS: u64 = 120;
/// Default rows per billing file.
const ROWS_PER_FILE: u64 = 500_000;

/// How big the generated world is, derived from `--rows`, `--seed` and `--files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub rows: u64,
    pub seed: u64,
    pub files: usize,
    pub partners: usize,
    pub customers: usize,
    pub slots: usize,
    pub months: u64,
}

impl Plan {
    /// Derives the sizes; `files` = `None` means one file per 500,000 rows.
    pub fn new(rows: u64, seed: u64, files: Option<usize>) -> Result<Plan, Fatal> {
        if rows > MAX_ROWS {
            return Err(Fatal::Input(format!(
                "--rows {rows}: at most {MAX_ROWS} (about {} GB of billing files); a larger \
                 set would outgrow the disk, and its subscriptions the memory, before \
                 it was written",
                MAX_ROWS * BYTES_PER_ROW / 1_000_000_000
            )));
        }
        let files = match files {
            Some(0) => return Err(Fatal::Input("--files must be at least 1".into())),
            Some(k) if k as u64 > rows.max(1) => {
                return Err(Fatal::Input(format!(
                    "--files {k} is more than --rows {rows}: every file needs a row"
                )))
            }
            Some(k) => k,
            None => rows.div_ceil(ROWS_PER_FILE).max(1) as usize,
        };
        let customers = (rows / 250).clamp(5, 20_000) as usize;
        let partners = (customers / 8).clamp(4, 50);
        let slots = (customers as u64 * 5).max(rows.div_ceil(MAX_MONTHS)) as usize;
        let months = rows.div_ceil(slots as u64).max(1);
        Ok(Plan {
            rows,
            seed,
            files,
            partners,
            customers,
            slots,
            months,
        })
    }

    /// The first billed month.
    fn first_month(&self) -> Month {
        LAST_MONTH.next().minus(self.months as u32)
    }

    /// Rows `[start, end)` of file `k`.
    fn file_rows(&self, k: usize) -> (u64, u64) {
        let part = |i: usize| (self.rows as u128 * i as u128 / self.files as u128) as u64;
        (part(k), part(k + 1))
    }

    /// `billing/invoice-reconciliation-0001.csv`: zero-padded so that name
    /// order (the order porledger reads a directory in) is row order.
    fn file_name(&self, k: usize) -> String {
        let width = self.files.to_string().len().max(4);
        format!("invoice-reconciliation-{:0width$}.csv", k + 1)
    }
}

/// The largest `--rows`: ~680 GB of billing files, ~8M subscription slots.
pub const MAX_ROWS: u64 = 1_000_000_000;

/// About how many bytes a generated billing row takes (5,000,000 rows: 3.4 GB).
const BYTES_PER_ROW: u64 = 680;

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub plan: Plan,
    pub billing_files: Vec<PathBuf>,
    /// Bytes of all files written (billing, designations, rules).
    pub bytes: u64,
    /// First and last billed month, `YYYY-MM`.
    pub first_month: String,
    pub last_month: String,
}

fn write_file(files: &publish::Written, path: &Path, bytes: &[u8]) -> Result<u64, Fatal> {
    publish::write_file(files, path, bytes)?;
    Ok(bytes.len() as u64)
}

/// Writes the whole sample into `out` (a new directory: see [`sample`]), each
/// file's digest recorded in `files`. Billing files are written in parallel.
pub fn generate(out: &Path, plan: Plan, files: &publish::Written) -> Result<Written, Fatal> {
    let billing = out.join("billing");
    std::fs::create_dir_all(&billing).map_err(|e| Fatal::io(&billing, e))?;
    let world = World::new(plan);
    let plan = &world.plan;
    let (designations, sizes) = rayon::join(
        || world.designations_csv(),
        || {
            (0..plan.files)
                .into_par_iter()
                .map(|k| world.write_billing_file(&billing, k, files))
                .collect::<Result<Vec<u64>, Fatal>>()
        },
    );
    let mut bytes: u64 = sizes?.iter().sum();
    bytes += write_file(files, &out.join("designations.csv"), &designations)?;
    bytes += write_file(files, &out.join("rules.toml"), RULES_TOML.as_bytes())?;
    Ok(Written {
        billing_files: (0..plan.files)
            .map(|k| billing.join(plan.file_name(k)))
            .collect(),
        bytes,
        first_month: plan.first_month().to_string(),
        last_month: LAST_MONTH.to_string(),
        plan: plan.clone(),
    })
}

/// `porledger sample`: writes the input set and says what it wrote.
///
/// Published like a run's output ([`publish`]): written beside `--out`, with
/// a `manifest.json` (kind `sample`) listing every file, then swapped into
/// place. An existing `--out` is replaced only when it is empty or an earlier
/// sample whose every file its manifest lists: never a directory that holds
/// files of yours (a `rules.toml` of your own, other billing files).
pub fn sample(args: &crate::cli::SampleArgs) -> Result<crate::cmd::Finish, Fatal> {
    let plan = Plan::new(args.rows, args.seed, args.files)?;
    let staging = Staging::new(&args.out, Kind::Sample)?;
    let w = generate(&staging.dir, plan, &staging.files)?;
    let manifest = serde_json::json!({
        "tool": "porledger",
        "version": env!("CARGO_PKG_VERSION"),
        "kind": "sample",
        "rows": w.plan.rows,
        "seed": w.plan.seed,
        "outputs": publish::hash_outputs(&staging.dir, &staging.files)?,
    });
    publish::write_json(
        &staging.files,
        &staging.dir.join("manifest.json"),
        &manifest,
    )?;
    staging.commit()?;
    let line = crate::console::SampleWritten {
        files: w.plan.files,
        rows: w.plan.rows,
        customers: w.plan.customers as u64,
        slots: w.plan.slots as u64,
        partners: w.plan.partners,
        first_month: &w.first_month,
        last_month: &w.last_month,
        bytes: w.bytes,
    };
    crate::console::print_sample(&line, &args.out);
    Ok(crate::cmd::Finish::Clean)
}

#[cfg(test)]
mod tests;
